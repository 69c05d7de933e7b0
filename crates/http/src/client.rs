//! The client's network address: the socket peer, or `X-Forwarded-For` behind trusted proxies.

use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::AppState;

/// An IP network in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    address: IpAddr,
    prefix: u8,
}

/// Why a string is not a CIDR network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpNetworkError(String);

impl fmt::Display for IpNetworkError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "'{}' is not an IP address or CIDR network",
            self.0
        )
    }
}

impl std::error::Error for IpNetworkError {}

impl FromStr for IpNetwork {
    type Err = IpNetworkError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let invalid = || IpNetworkError(raw.to_owned());
        let (address, prefix) = match raw.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (raw, None),
        };
        let address: IpAddr = address.trim().parse().map_err(|_| invalid())?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix.trim().parse::<u8>().map_err(|_| invalid())?,
            None => max,
        };
        if prefix > max {
            return Err(invalid());
        }
        Ok(Self { address, prefix })
    }
}

impl IpNetwork {
    /// Whether `candidate` is inside this network.
    #[must_use]
    pub fn contains(&self, candidate: IpAddr) -> bool {
        match (self.address, candidate) {
            (IpAddr::V4(network), IpAddr::V4(candidate)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(candidate) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(candidate)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(candidate) & mask
            }
            _ => false,
        }
    }
}

/// The address a request came from, as a throttling subject (IPv6 per /64); `None` when the server was not started
/// with connection info (in-process tests).
///
/// Behind a reverse proxy every request would come from the proxy, so when the socket peer is
/// in `--trusted-proxies`, the rightmost `X-Forwarded-For` entry that is not itself a trusted
/// proxy is taken instead: entries left of it could have been written by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddress(pub(crate) Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        let client = peer.map(|peer| client_ip(peer, parts, &state.config.trusted_proxies));
        Ok(Self(client.map(throttling_key)))
    }
}

/// The address as one throttling subject: an IPv6 client usually controls a whole /64
/// (RFC 6177), so counting single addresses would give it 2^64 budgets.
fn throttling_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

fn client_ip(peer: IpAddr, parts: &Parts, trusted: &[IpNetwork]) -> IpAddr {
    let is_trusted = |address: IpAddr| trusted.iter().any(|network| network.contains(address));
    if !is_trusted(peer) {
        return peer;
    }
    let forwarded = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|entry| entry.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    forwarded
        .into_iter()
        .rev()
        .find(|address| !is_trusted(*address))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(raw: &str) -> IpNetwork {
        raw.parse().expect("valid network")
    }

    fn parts_with(forwarded: &[&str]) -> Parts {
        let mut request = axum::http::Request::builder();
        for value in forwarded {
            request = request.header("x-forwarded-for", *value);
        }
        request.body(()).expect("request").into_parts().0
    }

    #[test]
    fn networks_parse_and_match() {
        assert!(network("10.0.0.0/8").contains("10.1.2.3".parse().expect("ip")));
        assert!(!network("10.0.0.0/8").contains("11.0.0.1".parse().expect("ip")));
        assert!(network("::1").contains("::1".parse().expect("ip")));
        assert!(network("0.0.0.0/0").contains("192.0.2.1".parse().expect("ip")));
        assert!(!network("::/0").contains("192.0.2.1".parse().expect("ip")));
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0.0/x", "::1/129"] {
            assert!(bad.parse::<IpNetwork>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv6_clients_are_counted_per_slash_64_and_mapped_ipv4_as_ipv4() {
        let first: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let second: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");

        assert_eq!(throttling_key(first), throttling_key(second));
        assert_eq!(
            throttling_key(first),
            "2001:db8:1:2::".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(
            throttling_key(mapped),
            "192.0.2.1".parse::<IpAddr>().expect("ip")
        );
        assert_ne!(
            throttling_key(first),
            throttling_key("2001:db8:1:3::1".parse().expect("ip"))
        );
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let peer: IpAddr = "198.51.100.9".parse().expect("ip");

        let client = client_ip(
            peer,
            &parts_with(&["203.0.113.5"]),
            &[network("10.0.0.0/8")],
        );

        assert_eq!(client, peer);
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let proxy: IpAddr = "10.0.0.2".parse().expect("ip");
        let trusted = [network("10.0.0.0/8")];

        let client = client_ip(
            proxy,
            &parts_with(&["6.6.6.6, 203.0.113.5", "10.0.0.7"]),
            &trusted,
        );
        let no_header = client_ip(proxy, &parts_with(&[]), &trusted);

        assert_eq!(client, "203.0.113.5".parse::<IpAddr>().expect("ip"));
        assert_eq!(no_header, proxy);
    }
}

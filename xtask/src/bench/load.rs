//! The in-repo load generator: HTTP/1.1 keep-alive connections over hyper's per-connection
//! client, driven closed-loop (each connection sends its next request as soon as the last
//! one is answered) or open-loop (requests at a fixed rate, latency measured from the
//! scheduled send time so that a stalled server cannot hide its own slowness).
//!
//! Every loop is bounded by the measured window's end and every request by
//! [`REQUEST_TIMEOUT`]; only loopback addresses are ever dialled.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;
use tokio::task::JoinSet;

use super::stats::{Outcome, Tally};

/// The longest one request may take; beyond it the request counts as an I/O error and the
/// connection is replaced.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before dialling again after a failed connect, so a dead server is not spun on.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

/// The server under test: a loopback socket address.
#[derive(Debug, Clone)]
pub struct Target {
    addr: SocketAddr,
    host: HeaderValue,
}

impl Target {
    /// A target; refuses anything but a loopback address.
    ///
    /// # Errors
    ///
    /// When `addr` is not a loopback address.
    pub fn new(addr: SocketAddr) -> anyhow::Result<Self> {
        if !addr.ip().is_loopback() {
            bail!("the load generator only dials loopback addresses, not {addr}");
        }
        let host = HeaderValue::from_str(&addr.to_string()).context("a Host header")?;
        Ok(Self { addr, host })
    }

    /// Opens a keep-alive HTTP/1.1 connection from `source` (a loopback address: the server
    /// throttles logins per client address, and a storm comes from many).
    ///
    /// # Errors
    ///
    /// Socket, bind, connect or handshake failures.
    pub async fn connect(&self, source: IpAddr) -> anyhow::Result<Connection> {
        if !source.is_loopback() {
            bail!("connections only start from loopback addresses, not {source}");
        }
        let socket = if source.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .context("creating a socket")?;
        socket
            .bind(SocketAddr::new(source, 0))
            .with_context(|| format!("binding {source}"))?;
        let stream = tokio::time::timeout(REQUEST_TIMEOUT, socket.connect(self.addr))
            .await
            .context("connecting timed out")?
            .with_context(|| format!("connecting to {}", self.addr))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        // The driver ends when the sender is dropped or the server closes the connection.
        tokio::spawn(async move {
            let _ = driver.await;
        });
        Ok(Connection {
            sender,
            host: self.host.clone(),
        })
    }
}

/// One keep-alive connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: HeaderValue,
}

/// A response: its status and whole body.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: Bytes,
}

impl Connection {
    /// `GET path`, with `Authorization` when given.
    ///
    /// # Errors
    ///
    /// I/O failures and timeouts.
    pub async fn get(
        &mut self,
        path: &'static str,
        authorization: Option<&HeaderValue>,
    ) -> anyhow::Result<Reply> {
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(HOST, self.host.clone());
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value.clone());
        }
        self.send(request.body(Full::new(Bytes::new()))?).await
    }

    /// `POST path` with a body of the given content type and `Authorization` when given.
    ///
    /// # Errors
    ///
    /// I/O failures and timeouts.
    pub async fn post(
        &mut self,
        path: &'static str,
        content_type: &'static str,
        body: Bytes,
        authorization: Option<&HeaderValue>,
    ) -> anyhow::Result<Reply> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value.clone());
        }
        self.send(request.body(Full::new(body))?).await
    }

    /// `POST /token` with a form body.
    ///
    /// # Errors
    ///
    /// I/O failures and timeouts.
    pub async fn token(&mut self, form: Bytes) -> anyhow::Result<Reply> {
        self.post("/token", "application/x-www-form-urlencoded", form, None)
            .await
    }

    async fn send(&mut self, request: Request<Full<Bytes>>) -> anyhow::Result<Reply> {
        let exchange = async {
            self.sender.ready().await.context("connection closed")?;
            let response = self
                .sender
                .send_request(request)
                .await
                .context("sending the request")?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .context("reading the body")?
                .to_bytes();
            anyhow::Ok(Reply { status, body })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .context("the request timed out")?
    }
}

/// `application/x-www-form-urlencoded` encoding of `pairs`.
#[must_use]
pub fn form(pairs: &[(&str, &str)]) -> Bytes {
    let mut out = String::new();
    for (index, (name, value)) in pairs.iter().enumerate() {
        if index > 0 {
            out.push('&');
        }
        encode_into(&mut out, name);
        out.push('=');
        encode_into(&mut out, value);
    }
    Bytes::from(out)
}

fn encode_into(out: &mut String, text: &str) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

/// The `refresh_token` of a token response.
///
/// # Errors
///
/// When the body is not a token response.
pub fn refresh_token_of(body: &[u8]) -> anyhow::Result<String> {
    let value: serde_json::Value = serde_json::from_slice(body).context("a JSON token response")?;
    value["refresh_token"]
        .as_str()
        .map(str::to_owned)
        .context("the token response has no refresh_token")
}

/// The `access_token` of a token response.
///
/// # Errors
///
/// When the body is not a token response.
pub fn access_token_of(body: &[u8]) -> anyhow::Result<String> {
    let value: serde_json::Value = serde_json::from_slice(body).context("a JSON token response")?;
    value["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("the token response has no access_token")
}

/// What one connection of a workload sends, request after request.
#[derive(Debug, Clone)]
pub enum Call {
    /// `GET path`, with this `Authorization` value or none.
    Get {
        /// The path.
        path: &'static str,
        /// `Bearer <token>`, when the endpoint needs one.
        authorization: Option<HeaderValue>,
    },
    /// `POST /token` with this password-grant form.
    PasswordGrant {
        /// The form body.
        form: Bytes,
    },
    /// `POST /token` refresh grant, always with the newest refresh token of this
    /// connection's own chain (rotation makes any older one a reuse). The chain starts
    /// with a password login with `login`, made outside the measurement, and starts again
    /// the same way if the server ever breaks it.
    RefreshChain {
        /// The password-grant form that starts a chain.
        login: Bytes,
    },
}

/// The measured window: requests that finish between `start` and `end` count (completions
/// per second, as wrk counts them: no bias from requests that straddle either edge).
/// Workers start at once; the time before `start` is the warm-up.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// End of the warm-up.
    pub start: Instant,
    /// End of the run.
    pub end: Instant,
}

impl Window {
    /// A window that opens after `warmup` and lasts `duration`, from now.
    #[must_use]
    pub fn after(warmup: Duration, duration: Duration) -> Self {
        let start = Instant::now() + warmup;
        Self {
            start,
            end: start + duration,
        }
    }

    fn counts(&self, finished: Instant) -> bool {
        self.start <= finished && finished <= self.end
    }
}

/// One connection, ready to be driven: the connection, what it sends, and its state.
pub struct Worker {
    target: Target,
    source: IpAddr,
    connection: Option<Connection>,
    call: Call,
    chain: Option<String>,
}

/// Opens one connection per `(call, source)` pair, concurrently, and starts refresh chains.
///
/// # Errors
///
/// When any connection or chain-starting login fails: a workload whose setup fails would
/// measure nothing meaningful.
pub async fn prepare(target: &Target, plan: Vec<(Call, IpAddr)>) -> anyhow::Result<Vec<Worker>> {
    let mut set = JoinSet::new();
    for (call, source) in plan {
        let target = target.clone();
        set.spawn(async move {
            let mut connection = target.connect(source).await?;
            let chain = match &call {
                Call::RefreshChain { login } => Some(start_chain(&mut connection, login).await?),
                _ => None,
            };
            anyhow::Ok(Worker {
                target,
                source,
                connection: Some(connection),
                call,
                chain,
            })
        });
    }
    let mut workers = Vec::new();
    while let Some(joined) = set.join_next().await {
        workers.push(joined.context("a setup task panicked")??);
    }
    Ok(workers)
}

async fn start_chain(connection: &mut Connection, login: &Bytes) -> anyhow::Result<String> {
    let reply = connection.token(login.clone()).await?;
    if !reply.status.is_success() {
        bail!(
            "starting a refresh chain: POST /token answered {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    }
    refresh_token_of(&reply.body)
}

impl Worker {
    /// Sends the next request and classifies the answer; `None` when there was nothing to
    /// measure (a reconnect or a chain restart happened instead).
    async fn step(&mut self) -> Option<Outcome> {
        let Some(connection) = self.connection.as_mut() else {
            match self.target.connect(self.source).await {
                Ok(connection) => self.connection = Some(connection),
                Err(_) => tokio::time::sleep(RECONNECT_PAUSE).await,
            }
            return None;
        };
        let result = match &self.call {
            Call::Get {
                path,
                authorization,
            } => connection.get(path, authorization.as_ref()).await,
            Call::PasswordGrant { form } => connection.token(form.clone()).await,
            Call::RefreshChain { login } => {
                let Some(token) = self.chain.take() else {
                    self.chain = start_chain(connection, login).await.ok();
                    if self.chain.is_none() {
                        // Reconnect before trying again, in case the connection is the cause.
                        self.connection = None;
                    }
                    return None;
                };
                let reply = connection
                    .token(form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", &token),
                    ]))
                    .await;
                if let Ok(reply) = &reply
                    && reply.status.is_success()
                {
                    self.chain = refresh_token_of(&reply.body).ok();
                }
                reply
            }
        };
        match result {
            Ok(reply) => Some(Outcome::of(reply.status)),
            Err(_) => {
                self.connection = None;
                Some(Outcome::Io)
            }
        }
    }

    /// Closed loop: the next request goes as soon as the last one is answered, until the
    /// window ends.
    async fn closed_loop(mut self, window: Window) -> Tally {
        let mut tally = Tally::default();
        while Instant::now() < window.end {
            let started = Instant::now();
            let Some(outcome) = self.step().await else {
                continue;
            };
            let finished = Instant::now();
            if window.counts(finished) {
                tally.record(outcome, finished - started);
            }
        }
        tally
    }

    /// Open loop: one request every `period` from `first`, until the window ends. Returns
    /// two tallies of the same requests: latency from the scheduled instant (what a caller
    /// arriving on schedule experiences: a late answer delays the requests queued behind it
    /// on this connection, and their latency includes that delay), and latency from the
    /// actual send (the server's service time alone).
    async fn open_loop(mut self, window: Window, first: Instant, period: Duration) -> OpenTally {
        let mut tally = OpenTally::default();
        let mut ticks = tokio::time::interval_at(first.into(), period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        loop {
            let scheduled = ticks.tick().await.into_std();
            if scheduled >= window.end {
                break;
            }
            let sent = Instant::now();
            let Some(outcome) = self.step().await else {
                continue;
            };
            let finished = Instant::now();
            if window.counts(finished) {
                tally.scheduled.record(outcome, finished - scheduled);
                tally.service.record(outcome, finished - sent);
            }
        }
        tally
    }
}

/// The two views of an open-loop run (see [`Worker::open_loop`]).
#[derive(Debug, Default)]
pub struct OpenTally {
    /// Latency from the scheduled send instant.
    pub scheduled: Tally,
    /// Latency from the actual send.
    pub service: Tally,
}

/// Starts every worker closed-loop on `window`.
pub fn spawn_closed(workers: Vec<Worker>, window: Window) -> JoinSet<Tally> {
    let mut set = JoinSet::new();
    for worker in workers {
        set.spawn(worker.closed_loop(window));
    }
    set
}

/// Starts every worker open-loop, together sending `rate` requests per second, staggered
/// evenly, from now until the window ends.
pub fn spawn_open(workers: Vec<Worker>, window: Window, rate: f64) -> JoinSet<OpenTally> {
    let mut set = JoinSet::new();
    let count = workers.len().max(1);
    let period = Duration::from_secs_f64(count as f64 / rate.max(f64::EPSILON));
    let now = Instant::now();
    for (index, worker) in workers.into_iter().enumerate() {
        let offset = period.mul_f64(index as f64 / count as f64);
        set.spawn(worker.open_loop(window, now + offset, period));
    }
    set
}

/// Waits for every open-loop worker and merges their tallies.
///
/// # Errors
///
/// When a worker panicked.
pub async fn gather_open(mut set: JoinSet<OpenTally>) -> anyhow::Result<OpenTally> {
    let mut total = OpenTally::default();
    while let Some(joined) = set.join_next().await {
        let tally = joined.context("a load worker panicked")?;
        total.scheduled.merge(tally.scheduled);
        total.service.merge(tally.service);
    }
    Ok(total)
}

/// Waits for every worker and merges their tallies.
///
/// # Errors
///
/// When a worker panicked.
pub async fn gather(mut set: JoinSet<Tally>) -> anyhow::Result<Tally> {
    let mut total = Tally::default();
    while let Some(joined) = set.join_next().await {
        total.merge(joined.context("a load worker panicked")?);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_percent_encoded() {
        let body = form(&[("grant_type", "password"), ("password", "a b&c=d/é")]);

        assert_eq!(
            &body[..],
            b"grant_type=password&password=a%20b%26c%3Dd%2F%C3%A9"
        );
    }

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert!(Target::new(SocketAddr::from(([127, 0, 0, 1], 8080))).is_ok());
        assert!(Target::new(SocketAddr::from(([10, 0, 0, 1], 8080))).is_err());
    }

    #[test]
    fn token_fields_are_read_from_the_response() {
        let body = br#"{"access_token":"a.b.c","token_type":"bearer","refresh_token":"r1"}"#;

        assert_eq!(access_token_of(body).unwrap(), "a.b.c");
        assert_eq!(refresh_token_of(body).unwrap(), "r1");
        assert!(refresh_token_of(b"{}").is_err());
    }
}

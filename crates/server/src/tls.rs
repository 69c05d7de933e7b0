//! TLS termination with rustls (ring provider): PEM loading and a listener that handshakes off the accept loop.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;

/// How long a client may take to complete the TLS handshake. Honest clients need one or two
/// round trips; a client that stalls longer is cut off so it cannot hold a handshake slot.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once, counting finished ones not yet taken by the server. At
/// the limit the accept loop waits, and further connections queue in the kernel's backlog
/// instead of costing memory here.
const MAX_PENDING_HANDSHAKES: usize = 1024;
/// Finished handshakes waiting for the server to pick them up.
const HANDSHAKED_QUEUE: usize = 64;
/// The only application protocol served: axum is built with HTTP/1.1 alone.
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Reads a PEM certificate chain and private key and builds the rustls server configuration.
///
/// The key may be PKCS#8, PKCS#1 (RSA) or SEC1 (EC); TLS 1.2 and 1.3 are offered with rustls'
/// safe defaults, and only HTTP/1.1 is negotiated through ALPN.
///
/// # Errors
///
/// A message naming the file and what is wrong with it: unreadable, not PEM, no certificate
/// or key in it, or a key that does not belong to the first certificate. The key's contents
/// are never part of the message.
pub fn load_server_config(cert_path: &Path, key_path: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let cert_pem = std::fs::read(cert_path).with_context(|| {
        format!(
            "reading the TLS certificate chain {} (--tls-cert)",
            cert_path.display()
        )
    })?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!(
                "parsing the TLS certificate chain {} as PEM",
                cert_path.display()
            )
        })?;
    if chain.is_empty() {
        bail!(
            "{} holds no PEM certificate ('-----BEGIN CERTIFICATE-----'); --tls-cert needs the certificate chain, leaf first",
            cert_path.display()
        );
    }

    let key_pem = std::fs::read(key_path).with_context(|| {
        format!(
            "reading the TLS private key {} (--tls-key)",
            key_path.display()
        )
    })?;
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        Err(tokio_rustls::rustls::pki_types::pem::Error::NoItemsFound) => bail!(
            "{} holds no PEM private key; --tls-key needs a PKCS#8, PKCS#1 (RSA) or SEC1 (EC) key",
            key_path.display()
        ),
        Err(error) => {
            return Err(error).with_context(|| {
                format!("parsing the TLS private key {} as PEM", key_path.display())
            });
        }
    };

    // The provider is named explicitly rather than taken from the process default, so no
    // other crate's feature choice can swap the TLS implementation under us.
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("configuring TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "the TLS certificate {} and key {} cannot be used together",
                cert_path.display(),
                key_path.display()
            )
        })?;
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

/// A TLS listener for the server's accept loop (an axum [`Listener`](axum::serve::Listener)):
/// accepts TCP connections, completes each handshake in its own task, and hands finished
/// streams to the server.
///
/// Invariant: the accept loop never awaits a handshake, so a client that connects and then
/// stalls (slowloris on the handshake) delays nobody else; it is dropped after
/// [`HANDSHAKE_TIMEOUT`], and at most [`MAX_PENDING_HANDSHAKES`] handshakes are in progress
/// or waiting at once, which bounds the memory a flood of connections can take. While the
/// server is at its connection cap it takes no streams, so finished handshakes wait here
/// and, once those slots are full, new connections wait in the kernel's backlog.
pub struct TlsListener {
    handshaked: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    accept_loop: JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting TLS connections on `listener` (which must be inside a tokio runtime).
    ///
    /// # Errors
    ///
    /// The bound address of `listener` cannot be read.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (sender, handshaked) = mpsc::channel(HANDSHAKED_QUEUE);
        let accept_loop = tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), sender));
        Ok(Self {
            handshaked,
            local_addr,
            accept_loop,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // The server drops the listener when shutdown begins: stop accepting at once.
        self.accept_loop.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaked.recv().await {
            Some(connection) => connection,
            // The accept loop only ends when this listener is dropped, so this never happens
            // while anyone is waiting; never completing is the honest answer if it does.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// Accepts TCP connections and spawns one bounded handshake task per connection.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshaked: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        // Take the slot before accepting, so that at the limit connections wait in the kernel.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                handle_accept_error(error).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let handshaked = handshaked.clone();
        tokio::spawn(async move {
            // TLS records are small and latency-bound; Nagle's algorithm only delays them.
            let _ = stream.set_nodelay(true);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    // An error means the server is shutting down; the connection just closes.
                    let _ = handshaked.send((stream, peer)).await;
                }
                // A failed handshake is the client's problem (plain HTTP, an untrusted
                // certificate, a scanner); debug level keeps floods out of the default log.
                Ok(Err(error)) => {
                    tracing::debug!(client.address = %peer, error = %error, "TLS handshake failed");
                }
                Err(_) => {
                    tracing::debug!(client.address = %peer, "TLS handshake timed out");
                }
            }
            drop(slot);
        });
    }
}

/// Errors of one connection are skipped; others (out of file descriptors) get a pause so the
/// loop does not spin, as axum's `Listener` for `TcpListener` does for plain TCP.
async fn handle_accept_error(error: io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %error, "accepting a TCP connection failed; pausing for a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, contents: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn error_of(cert: &Path, key: &Path) -> String {
        format!("{:#}", load_server_config(cert, key).unwrap_err())
    }

    fn self_signed(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        (
            write(dir, &format!("{name}.crt"), generated.cert.pem().as_bytes()),
            write(
                dir,
                &format!("{name}.key"),
                generated.signing_key.serialize_pem().as_bytes(),
            ),
        )
    }

    #[test]
    fn a_certificate_and_its_key_load_offering_http_1_1() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path(), "server");

        let config = load_server_config(&cert, &key).unwrap();

        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = self_signed(dir.path(), "one");
        let (_, other_key) = self_signed(dir.path(), "two");

        let error = error_of(&cert, &other_key);

        assert!(error.contains("cannot be used together"), "{error}");
        assert!(
            error.contains("one.crt") && error.contains("two.key"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_file_is_named_with_its_flag() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");

        let error = error_of(&missing, &missing);

        assert!(error.contains("missing.pem"), "{error}");
        assert!(error.contains("--tls-cert"), "{error}");
    }

    #[test]
    fn a_file_without_pem_certificates_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let cert = write(dir.path(), "cert.pem", b"this is not PEM at all\n");
        let key = write(dir.path(), "key.pem", b"neither is this\n");

        let error = error_of(&cert, &key);

        assert!(error.contains("holds no PEM certificate"), "{error}");
    }

    #[test]
    fn a_broken_pem_section_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cert = write(
            dir.path(),
            "cert.pem",
            b"-----BEGIN CERTIFICATE-----\nnot base64 !!!\n-----END CERTIFICATE-----\n",
        );

        let error = error_of(&cert, &cert);

        assert!(
            error.contains("parsing the TLS certificate chain"),
            "{error}"
        );
    }

    #[test]
    fn a_certificate_that_is_not_x509_is_refused_without_echoing_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let cert = write(
            dir.path(),
            "cert.pem",
            b"-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n",
        );
        let key = write(
            dir.path(),
            "key.pem",
            b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n",
        );

        let error = error_of(&cert, &key);

        assert!(error.contains("cannot be used together"), "{error}");
        assert!(!error.contains("c2VjcmV0"), "{error}");
    }

    #[test]
    fn a_key_file_without_a_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cert = write(
            dir.path(),
            "cert.pem",
            b"-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n",
        );

        let error = error_of(&cert, &cert);

        assert!(error.contains("holds no PEM private key"), "{error}");
    }
}

//! Hand-written HTTP/1.1 over any byte stream, for requests no well-behaved client would send
//! (NUL bytes, non-UTF-8 headers, bad framing) and for speaking HTTPS through tokio-rustls.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// How long one raw exchange may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// Header fields in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The value of the first header called `name` (lower case), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
    }

    /// The body as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The status and the body as text, for assertion messages.
    pub fn describe(&self) -> String {
        format!("{} {}", self.status, String::from_utf8_lossy(&self.body))
    }
}

/// What came back for one raw request.
#[derive(Debug)]
pub enum Exchange {
    /// An HTTP response.
    Response(RawResponse),
    /// The server closed the connection without an HTTP response (or reset it).
    Closed(Vec<u8>),
}

impl Exchange {
    /// The response, failing the test if there was none.
    #[track_caller]
    pub fn response(self) -> RawResponse {
        match self {
            Self::Response(response) => response,
            Self::Closed(bytes) => panic!(
                "no HTTP response, only {:?}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }

    /// The status, if there was a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Response(response) => Some(response.status),
            Self::Closed(_) => None,
        }
    }
}

/// Sends `request` over a new TCP connection to `address` and reads until the server closes.
pub async fn send(address: &str, request: &[u8]) -> Exchange {
    let stream = TcpStream::connect(address).await.expect("connect");
    exchange(stream, request).await
}

/// Writes `request` while reading the answer, so a server that answers before reading the
/// whole request (a 413 on the declared length) is heard, then parses what it sent before
/// closing. Write errors are ignored: the server may close as soon as it has answered.
pub async fn exchange<S>(stream: S, request: &[u8]) -> Exchange
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let write = async {
        let _ = writer.write_all(request).await;
        let _ = writer.flush().await;
    };
    let read = async {
        let mut received = Vec::new();
        let mut buffer = [0_u8; 16 * 1024];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => received.extend_from_slice(&buffer[..read]),
            }
        }
        received
    };
    let ((), received) = tokio::time::timeout(PATIENCE, async { tokio::join!(write, read) })
        .await
        .expect("the server answers and closes in time");
    match parse(&received) {
        Some(response) => Exchange::Response(response),
        None => Exchange::Closed(received),
    }
}

/// Parses one HTTP/1.1 response, skipping interim `1xx` ones; `None` if `bytes` is not one.
fn parse(bytes: &[u8]) -> Option<RawResponse> {
    let response = parse_one(bytes)?;
    if (100..200).contains(&response.status) {
        let head_end = bytes.windows(4).position(|window| window == b"\r\n\r\n")?;
        return parse(&bytes[head_end + 4..]);
    }
    Some(response)
}

fn parse_one(bytes: &[u8]) -> Option<RawResponse> {
    let head_end = bytes.windows(4).position(|window| window == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let rest = &bytes[head_end + 4..];
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        let length = headers
            .iter()
            .find(|(name, _)| name == "content-length")
            .and_then(|(_, value)| value.parse::<usize>().ok())
            .unwrap_or(rest.len());
        // A HEAD response declares a length but carries no body.
        rest[..length.min(rest.len())].to_vec()
    };
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|window| window == b"\r\n")?;
        let size_field = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_field.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// A request with `Connection: close`: the method and target, extra header lines (each
/// without CRLF), and a body sent with `Content-Length`.
pub fn request(method: &str, target: &str, headers: &[&[u8]], body: &[u8]) -> Vec<u8> {
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: authgate.test\r\nConnection: close\r\n")
            .into_bytes();
    for header in headers {
        request.extend_from_slice(header);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    request.extend_from_slice(body);
    request
}

/// Like [`request`], but the body goes `Transfer-Encoding: chunked`, in chunks of `chunk` bytes.
pub fn chunked_request(
    method: &str,
    target: &str,
    headers: &[&[u8]],
    body: &[u8],
    chunk: usize,
) -> Vec<u8> {
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: authgate.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n"
    )
    .into_bytes();
    for header in headers {
        request.extend_from_slice(header);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    for piece in body.chunks(chunk) {
        request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}

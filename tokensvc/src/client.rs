//! A small plain-HTTP client for `POST /v1/token`, used by the tests and the demo (the firmware has its own HTTPS
//! client). Bounded response, one overall timeout, the device key never in an error.

use std::time::Duration;

use callbox_calling::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_RESPONSE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid token URL {url}: {reason}")]
    InvalidUrl { url: String, reason: &'static str },
    #[error("cannot reach token service {url}: {source}")]
    Connect { url: String, source: std::io::Error },
    #[error("token service {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("token service {url} refused the device key (401)")]
    Unauthorized { url: String },
    #[error("token service {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("bad answer from token service {url}: {reason}")]
    Protocol { url: String, reason: String },
}

struct Target<'a> {
    host_port: &'a str,
    path: &'a str,
}

fn parse_url(url: &str) -> Result<Target<'_>, FetchError> {
    let bad = |reason| FetchError::InvalidUrl { url: url.to_string(), reason };
    let rest = url.strip_prefix("http://").ok_or_else(|| bad("only http:// is supported"))?;
    let (host_port, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/v1/token"),
    };
    if host_port.is_empty() || !host_port.contains(':') {
        return Err(bad("the URL needs host:port"));
    }
    Ok(Target { host_port, path })
}

/// `POST <url>` with `Authorization: Bearer <device_key>`; returns the JWT of a 200 answer.
/// `url` is `http://host:port/v1/token` (a bare `http://host:port` means `/v1/token`).
pub async fn fetch_token(url: &str, device_key: &Secret, timeout: Duration) -> Result<String, FetchError> {
    let target = parse_url(url)?;
    match tokio::time::timeout(timeout, exchange(url, &target, device_key)).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout { url: url.to_string(), timeout }),
    }
}

async fn exchange(url: &str, target: &Target<'_>, device_key: &Secret) -> Result<String, FetchError> {
    let io_err = |source| FetchError::Connect { url: url.to_string(), source };
    let proto = |reason: String| FetchError::Protocol { url: url.to_string(), reason };
    let mut stream = TcpStream::connect(target.host_port).await.map_err(io_err)?;
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        target.path,
        target.host_port,
        device_key.expose()
    );
    stream.write_all(request.as_bytes()).await.map_err(io_err)?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.map_err(io_err)?;
        if n == 0 {
            break;
        }
        if buf.len() + n > MAX_RESPONSE {
            return Err(proto(format!("response larger than {MAX_RESPONSE} bytes")));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8(buf).map_err(|_| proto("response is not UTF-8".into()))?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| proto("no end of headers".into()))?;
    let status_line = head.lines().next().unwrap_or("");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| proto("no status code".into()))?;
    match status {
        200 => {}
        401 => return Err(FetchError::Unauthorized { url: url.to_string() }),
        s => return Err(FetchError::Status { url: url.to_string(), status: s }),
    }
    let v: serde_json::Value =
        serde_json::from_str(body.trim()).map_err(|e| proto(format!("body is not JSON: {e}")))?;
    v.get("token").and_then(|t| t.as_str()).map(str::to_string).ok_or_else(|| proto("no \"token\" in the body".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing() {
        let t = parse_url("http://127.0.0.1:8090/v1/token").unwrap();
        assert_eq!(t.host_port, "127.0.0.1:8090");
        assert_eq!(t.path, "/v1/token");
        assert_eq!(parse_url("http://127.0.0.1:8090").unwrap().path, "/v1/token");
        assert!(parse_url("https://x:1/").is_err());
        assert!(parse_url("http:///v1").is_err());
    }
}

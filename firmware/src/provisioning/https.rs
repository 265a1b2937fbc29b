//! The HTTPS client of the token endpoint: `POST <url>` with `Authorization: Bearer <device key>`, answered by
//! `200 {"token":"<jwt>",...}` (the request and answer of `callbox_tokensvc`). TLS by rustls (ring) through
//! tokio-rustls, with either a pinned CA (then only that CA is trusted) or the system's roots; the host name is
//! verified (SNI on). Timeouts on connect, handshake and the whole exchange; the answer is bounded. Plain
//! `http://` only when the configuration explicitly allows it (a development stack on 127.0.0.1).
//! `token_credential` wraps an endpoint and a device key into the client's refreshing `TokenCredential`, which
//! already retries each refresh with backoff (so no retry loop here). The device key and tokens never reach a
//! log line or an error.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::calling::{RefreshPolicy, Secret};
use crate::client::TokenCredential;

/// The largest answer read from the token endpoint (head and body).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The largest CA file read.
const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;
/// The path asked when the URL names none (that of `callbox_tokensvc`).
pub const DEFAULT_TOKEN_PATH: &str = "/v1/token";

/// Time limits of one token fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Name resolution and TCP connect.
    pub connect: Duration,
    /// The TLS handshake.
    pub handshake: Duration,
    /// The whole exchange, from connect to the last byte of the answer.
    pub exchange: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            handshake: Duration::from_secs(5),
            exchange: Duration::from_secs(15),
        }
    }
}

/// How to reach the token endpoint, as the configuration gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// `https://host[:port][/path]` (the path defaults to `/v1/token`).
    pub url: String,
    /// A PEM file of the CA(s) to trust instead of the system roots (pinning).
    pub ca_file: Option<PathBuf>,
    /// Accept an `http://` URL (development only: the device key then crosses the network in clear).
    pub allow_insecure_http: bool,
    pub timeouts: Timeouts,
}

impl EndpointConfig {
    /// An endpoint trusting the system roots, HTTPS only, default timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        EndpointConfig { url: url.into(), ca_file: None, allow_insecure_http: false, timeouts: Timeouts::default() }
    }
}

/// Why a token could not be fetched. Never carries the device key or a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenClientError {
    #[error("invalid token endpoint URL {url}: {reason}")]
    InvalidUrl { url: String, reason: &'static str },
    #[error(
        "token endpoint {url} is plain http://, which would send the device key in clear; use https:// (plain \
         HTTP is accepted only when the configuration allows insecure HTTP, for a development stack)"
    )]
    InsecureHttp { url: String },
    #[error("cannot use the CA file {path} of the token endpoint: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("no usable system root certificates for the token endpoint ({reason}); install ca-certificates or pin a CA file")]
    NoSystemRoots { reason: String },
    #[error("the device key is unusable: {0}")]
    BadDeviceKey(&'static str),
    #[error("cannot connect to token endpoint {url}: {source}")]
    Connect { url: String, source: std::io::Error },
    #[error("token endpoint {url}: {stage} timed out after {timeout:?}")]
    Timeout { url: String, stage: &'static str, timeout: Duration },
    #[error("TLS with token endpoint {url} failed: {reason}")]
    Tls { url: String, reason: String },
    #[error("token endpoint {url}: connection failed during {stage}: {source}")]
    Io { url: String, stage: &'static str, source: std::io::Error },
    #[error("token endpoint {url} refused the device key (HTTP {status}): device key refused")]
    Unauthorized { url: String, status: u16 },
    #[error("token endpoint {url} is unavailable (HTTP {status})")]
    Unavailable { url: String, status: u16 },
    #[error("token endpoint {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("bad answer from token endpoint {url}: {reason}")]
    Protocol { url: String, reason: String },
}

impl TokenClientError {
    /// Whether trying again later may succeed (outages, timeouts, 5xx), as opposed to a configuration problem
    /// (refused key, untrusted certificate, bad URL).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            TokenClientError::Connect { .. }
                | TokenClientError::Timeout { .. }
                | TokenClientError::Io { .. }
                | TokenClientError::Unavailable { .. }
        )
    }
}

/// Where the parsed URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    tls: bool,
    /// Host name or IP address, without IPv6 brackets.
    host: String,
    port: u16,
    /// `Host:` header value (the URL's authority).
    authority: String,
    /// Path and query.
    path: String,
}

fn parse_url(url: &str) -> Result<Target, &'static str> {
    let lower = url.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
    let (tls, rest) = if lower.starts_with("https://") {
        (true, &url[8..])
    } else if lower.starts_with("http://") {
        (false, &url[7..])
    } else {
        return Err("the URL must start with https://");
    };
    if url.chars().any(|c| c.is_ascii_whitespace() || c.is_ascii_control() || !c.is_ascii()) {
        return Err("the URL contains spaces, control or non-ASCII characters");
    }
    let rest = rest.split('#').next().unwrap_or("");
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let path = match path {
        "" => DEFAULT_TOKEN_PATH.to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    if authority.contains('@') {
        return Err("credentials in the URL are not supported");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed '[' in the host")?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or("junk after the IPv6 address")?)),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("the URL has no host");
    }
    let port = match port {
        None => {
            if tls {
                443
            } else {
                80
            }
        }
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err("the port is not a number in 1..=65535"),
        },
    };
    Ok(Target { tls, host: host.to_string(), port, authority: authority.to_string(), path })
}

struct Inner {
    url: String,
    target: Target,
    /// TLS connector and the name the certificate must match; `None` for plain HTTP.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// "the pinned CA FILE" or "the system roots", for error messages.
    trust: String,
    timeouts: Timeouts,
}

/// A validated token endpoint, ready to fetch tokens. Cheap to clone.
#[derive(Clone)]
pub struct TokenEndpoint {
    inner: Arc<Inner>,
}

impl fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("url", &self.inner.url)
            .field("tls", &self.inner.tls.is_some())
            .field("trust", &self.inner.trust)
            .finish()
    }
}

fn read_ca_roots(path: &Path) -> Result<rustls::RootCertStore, TokenClientError> {
    let fail = |reason: String| TokenClientError::CaFile { path: path.to_path_buf(), reason };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let mut pem = Vec::new();
    file.take(MAX_CA_FILE_BYTES + 1).read_to_end(&mut pem).map_err(|e| fail(e.to_string()))?;
    if pem.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(fail(format!("larger than {MAX_CA_FILE_BYTES} bytes")));
    }
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(fail("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|e| fail(format!("certificate {} is not usable as a trust anchor: {e}", i + 1)))?;
    }
    Ok(roots)
}

fn system_roots() -> Result<rustls::RootCertStore, TokenClientError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let reason = match found.errors.first() {
            Some(e) => format!("none found: {e}"),
            None => "none found".to_string(),
        };
        return Err(TokenClientError::NoSystemRoots { reason });
    }
    for e in &found.errors {
        log::warn!("token endpoint: problem loading system root certificates: {e}");
    }
    log::debug!("token endpoint: {added} system root certificates ({ignored} unusable)");
    Ok(roots)
}

/// A TLS client configuration (ring, safe protocol versions, HTTP/1.1 by ALPN) trusting only the pinned CA in
/// `ca_file`, or the system roots: for the token endpoint and for `wss://` to Janus. `url` is for messages.
pub fn tls_client_config(ca_file: Option<&Path>, url: &str) -> Result<Arc<rustls::ClientConfig>, TokenClientError> {
    let roots = match ca_file {
        Some(path) => read_ca_roots(path)?,
        None => system_roots()?,
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TokenClientError::Tls { url: url.to_owned(), reason: e.to_string() })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

impl TokenEndpoint {
    /// Checks the URL and builds the TLS client (reading the pinned CA file or the system roots).
    pub fn new(config: &EndpointConfig) -> Result<Self, TokenClientError> {
        let url = config.url.trim().to_string();
        let target = parse_url(&url).map_err(|reason| TokenClientError::InvalidUrl { url: url.clone(), reason })?;
        if !target.tls {
            if !config.allow_insecure_http {
                return Err(TokenClientError::InsecureHttp { url });
            }
            log::warn!("token endpoint {url} is plain HTTP (insecure HTTP allowed by the configuration)");
            return Ok(TokenEndpoint {
                inner: Arc::new(Inner {
                    url,
                    target,
                    tls: None,
                    trust: "none (plain HTTP)".into(),
                    timeouts: config.timeouts,
                }),
            });
        }
        let trust = match &config.ca_file {
            Some(path) => format!("the pinned CA {}", path.display()),
            None => "the system roots".to_string(),
        };
        let server_name = ServerName::try_from(target.host.clone())
            .map_err(|_| TokenClientError::InvalidUrl { url: url.clone(), reason: "the host is not a valid name" })?;
        let tls = tls_client_config(config.ca_file.as_deref(), &url)?;
        Ok(TokenEndpoint {
            inner: Arc::new(Inner {
                url,
                target,
                tls: Some((TlsConnector::from(tls), server_name)),
                trust,
                timeouts: config.timeouts,
            }),
        })
    }

    pub fn url(&self) -> &str {
        &self.inner.url
    }

    pub fn is_tls(&self) -> bool {
        self.inner.tls.is_some()
    }

    /// Fetches a user access token (the raw JWT) with the device key.
    pub async fn fetch(&self, device_key: &Secret) -> Result<Secret, TokenClientError> {
        let key = device_key.expose();
        if key.is_empty() {
            return Err(TokenClientError::BadDeviceKey("it is empty"));
        }
        if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(TokenClientError::BadDeviceKey("it contains spaces or control characters"));
        }
        let limit = self.inner.timeouts.exchange;
        match tokio::time::timeout(limit, self.exchange(device_key)).await {
            Ok(r) => r,
            Err(_) => Err(self.timeout("the exchange", limit)),
        }
    }

    fn timeout(&self, stage: &'static str, timeout: Duration) -> TokenClientError {
        TokenClientError::Timeout { url: self.inner.url.clone(), stage, timeout }
    }

    async fn exchange(&self, device_key: &Secret) -> Result<Secret, TokenClientError> {
        let inner = &*self.inner;
        let t = &inner.target;
        let connect = TcpStream::connect((t.host.as_str(), t.port));
        let tcp = match tokio::time::timeout(inner.timeouts.connect, connect).await {
            Err(_) => return Err(self.timeout("connect", inner.timeouts.connect)),
            Ok(Err(source)) => return Err(TokenClientError::Connect { url: inner.url.clone(), source }),
            Ok(Ok(s)) => s,
        };
        match &inner.tls {
            None => self.request(tcp, device_key).await,
            Some((connector, name)) => {
                let handshake = connector.connect(name.clone(), tcp);
                let stream = match tokio::time::timeout(inner.timeouts.handshake, handshake).await {
                    Err(_) => return Err(self.timeout("the TLS handshake", inner.timeouts.handshake)),
                    Ok(Err(e)) => return Err(self.tls_error(e, "the TLS handshake")),
                    Ok(Ok(s)) => s,
                };
                self.request(stream, device_key).await
            }
        }
    }

    /// A rustls error (untrusted or mismatched certificate, protocol) as `Tls`, other I/O failures as `Io`.
    fn tls_error(&self, e: std::io::Error, stage: &'static str) -> TokenClientError {
        let url = self.inner.url.clone();
        let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
            return TokenClientError::Io { url, stage, source: e };
        };
        use rustls::CertificateError as C;
        let reason = match tls {
            rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
                format!("the server's certificate is not trusted by {} ({tls})", self.inner.trust)
            }
            rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
                format!("the server's certificate is not valid for the host {} ({tls})", self.inner.target.host)
            }
            rustls::Error::InvalidCertificate(_) => format!("the server's certificate is refused ({tls})"),
            other => other.to_string(),
        };
        TokenClientError::Tls { url, reason }
    }

    async fn request<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
        device_key: &Secret,
    ) -> Result<Secret, TokenClientError> {
        let inner = &*self.inner;
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nAccept: application/json\r\n\
             User-Agent: callbox/{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            inner.target.path,
            inner.target.authority,
            device_key.expose(),
            env!("CARGO_PKG_VERSION"),
        );
        let sent = async {
            stream.write_all(request.as_bytes()).await?;
            stream.flush().await
        };
        sent.await.map_err(|e| self.tls_error(e, "sending the request"))?;
        drop(request);
        let raw = self.read_response(&mut stream).await?;
        let proto = |reason: String| TokenClientError::Protocol { url: inner.url.clone(), reason };
        let (status, body) = parse_response(&raw).map_err(proto)?;
        match status {
            200..=299 => {}
            401 | 403 => return Err(TokenClientError::Unauthorized { url: inner.url.clone(), status }),
            429 | 500..=599 => return Err(TokenClientError::Unavailable { url: inner.url.clone(), status }),
            _ => return Err(TokenClientError::Status { url: inner.url.clone(), status }),
        }
        // No serde detail in the message: it could quote part of the body.
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| proto("the body is not JSON".to_string()))?;
        match v.get("token").and_then(|t| t.as_str()) {
            Some(t) if !t.trim().is_empty() => Ok(Secret::new(t.trim())),
            _ => Err(proto("no \"token\" string in the body".to_string())),
        }
    }

    /// Reads the answer up to `MAX_RESPONSE_BYTES`: until the end of the body when its length is known, else
    /// until the server closes.
    async fn read_response<S: AsyncRead + Unpin>(&self, stream: &mut S) -> Result<Vec<u8>, TokenClientError> {
        let mut buf = Vec::with_capacity(2048);
        let mut chunk = [0u8; 4096];
        loop {
            let n = match stream.read(&mut chunk).await {
                Ok(n) => n,
                // A server that closes without TLS close_notify: what arrived is checked by the parser.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => 0,
                Err(e) => return Err(self.tls_error(e, "reading the answer")),
            };
            if n == 0 {
                return Ok(buf);
            }
            if buf.len() + n > MAX_RESPONSE_BYTES {
                return Err(TokenClientError::Protocol {
                    url: self.inner.url.clone(),
                    reason: format!("the answer is larger than {MAX_RESPONSE_BYTES} bytes"),
                });
            }
            buf.extend_from_slice(&chunk[..n]);
            if response_complete(&buf) {
                return Ok(buf);
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The status line's code and the headers that frame the body.
struct Head {
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
    body_start: usize,
}

fn parse_head(raw: &[u8]) -> Result<Option<Head>, String> {
    let Some(end) = find(raw, b"\r\n\r\n") else { return Ok(None) };
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "the headers are not text".to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split(' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err("no status line".into());
    };
    if !version.starts_with("HTTP/1.") {
        return Err("not an HTTP/1.x answer".into());
    }
    let status = code.parse::<u16>().map_err(|_| "no status code".to_string())?;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse::<usize>().map_err(|_| "bad Content-Length".to_string())?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().split(',').any(|v| v.trim() == "chunked");
        }
    }
    Ok(Some(Head { status, content_length, chunked, body_start: end + 4 }))
}

fn response_complete(raw: &[u8]) -> bool {
    match parse_head(raw) {
        Ok(Some(h)) if !h.chunked => h.content_length.is_some_and(|n| raw.len() >= h.body_start + n),
        Ok(Some(h)) => decode_chunked(&raw[h.body_start..]).is_ok(),
        _ => false,
    }
}

/// The status and the body of a complete answer.
pub(crate) fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let head = parse_head(raw)?.ok_or_else(|| "the answer ended before the end of its headers".to_string())?;
    let rest = &raw[head.body_start..];
    if head.chunked {
        return Ok((head.status, decode_chunked(rest)?));
    }
    match head.content_length {
        Some(n) if rest.len() < n => Err("the answer's body is truncated".into()),
        Some(n) => Ok((head.status, rest[..n].to_vec())),
        None => Ok((head.status, rest.to_vec())),
    }
}

/// The data of a chunked body (no larger than the input); an error when incomplete or malformed.
pub(crate) fn decode_chunked(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut pos = 0;
    let mut data = Vec::new();
    loop {
        let line_end = find(&body[pos..], b"\r\n").ok_or_else(|| "incomplete chunk".to_string())? + pos;
        let size_text = std::str::from_utf8(&body[pos..line_end]).map_err(|_| "bad chunk size".to_string())?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size".to_string())?;
        let start = line_end + 2;
        if size == 0 {
            return Ok(data);
        }
        let end = start.checked_add(size).ok_or_else(|| "bad chunk size".to_string())?;
        if body.len() < end.saturating_add(2) {
            return Err("incomplete chunk".into());
        }
        if &body[end..end + 2] != b"\r\n" {
            return Err("malformed chunk".into());
        }
        data.extend_from_slice(&body[start..end]);
        pos = end + 2;
    }
}

/// The client's refreshing credential: tokens fetched from `endpoint` with `device_key` on first use and before
/// each expiry. Each refresh is retried by `TokenCredential` per `policy.retry` (backoff with jitter); failures are
/// reported without the key or a token.
pub fn token_credential(endpoint: TokenEndpoint, device_key: Secret, policy: RefreshPolicy) -> TokenCredential {
    TokenCredential::with_refresher(
        move || {
            let endpoint = endpoint.clone();
            let key = device_key.clone();
            async move { endpoint.fetch(&key).await.map(|jwt| jwt.expose().to_string()).map_err(|e| e.to_string()) }
        },
        policy,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn url_parsing() {
        let t = parse_url("https://tokens.example.com/v1/token").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.port, t.path.as_str()), (true, "tokens.example.com", 443, "/v1/token"));
        let t = parse_url("HTTPS://127.0.0.1:8443").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str(), t.authority.as_str()),
            ("127.0.0.1", 8443, "/v1/token", "127.0.0.1:8443")
        );
        let t = parse_url("https://[::1]:9/x?y=1#frag").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("::1", 9, "/x?y=1"));
        let t = parse_url("http://localhost").unwrap();
        assert_eq!((t.tls, t.port), (false, 80));
        for bad in [
            "ftp://x",
            "https://",
            "https://:80/",
            "https://u:p@host/",
            "https://h:0/",
            "https://h:99999/",
            "https://h/a b",
            "https://[::1/",
            "https://[::1]x/",
            "tokens.example.com",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn response_parsing_and_framing() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{\"token\":\"a\"}";
        assert!(response_complete(ok));
        assert!(!response_complete(&ok[..ok.len() - 1]));
        assert_eq!(parse_response(ok).unwrap(), (200, b"{\"token\":\"a\"}".to_vec()));
        assert!(parse_response(&ok[..ok.len() - 1]).unwrap_err().contains("truncated"));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nd\r\n{\"token\":\"a\"}\r\n0\r\n\r\n";
        assert!(response_complete(chunked));
        assert_eq!(parse_response(chunked).unwrap(), (200, b"{\"token\":\"a\"}".to_vec()));
        assert!(!response_complete(&chunked[..chunked.len() - 5]));
        let two = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n1\r\n}\r\n0\r\n\r\n";
        assert_eq!(parse_response(two).unwrap(), (200, b"{}".to_vec()));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
        let close = b"HTTP/1.0 503 Service Unavailable\r\n\r\nbusy";
        assert!(!response_complete(close));
        assert_eq!(parse_response(close).unwrap(), (503, b"busy".to_vec()));
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    /// A one-shot plain-HTTP server answering `answer` to the first connection; returns its URL.
    async fn canned(answer: Vec<u8>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(&answer).await;
            let _ = s.shutdown().await;
        });
        format!("http://{addr}/v1/token")
    }

    fn insecure(url: &str) -> TokenEndpoint {
        TokenEndpoint::new(&EndpointConfig { allow_insecure_http: true, ..EndpointConfig::new(url) }).unwrap()
    }

    #[tokio::test]
    async fn status_codes_map_to_typed_errors_without_the_key() {
        let key = Secret::new("very-secret-device-key");
        for (status, retryable) in [(401u16, false), (403, false), (500, true), (503, true), (429, true), (404, false)]
        {
            let ep = insecure(&canned(format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n").into_bytes()).await);
            let e = ep.fetch(&key).await.unwrap_err();
            match status {
                401 | 403 => assert!(matches!(e, TokenClientError::Unauthorized { .. }), "{e}"),
                500 | 503 | 429 => assert!(matches!(e, TokenClientError::Unavailable { .. }), "{e}"),
                _ => assert!(matches!(e, TokenClientError::Status { status: 404, .. }), "{e}"),
            }
            assert_eq!(e.is_retryable(), retryable, "{e}");
            assert!(!e.to_string().contains("very-secret"), "{e}");
        }
        let ep = insecure(&canned(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_vec()).await);
        assert!(ep.fetch(&key).await.unwrap_err().to_string().contains("device key refused"));
    }

    #[tokio::test]
    async fn oversized_or_malformed_answers_are_refused() {
        let key = Secret::new("k");
        let mut huge = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        huge.resize(MAX_RESPONSE_BYTES + 10, b'x');
        let e = insecure(&canned(huge).await).fetch(&key).await.unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        let e = insecure(&canned(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!".to_vec()).await)
            .fetch(&key)
            .await
            .unwrap_err();
        assert!(matches!(e, TokenClientError::Protocol { .. }) && e.to_string().contains("not JSON"), "{e}");
        let e = insecure(&canned(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{\"token\":1}\n".to_vec()).await)
            .fetch(&key)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no \"token\""), "{e}");
        let body = br#"{"token":"a.b.c","expires_in":600}"#;
        let mut ok = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        ok.extend_from_slice(body);
        assert_eq!(insecure(&canned(ok).await).fetch(&key).await.unwrap().expose(), "a.b.c");
    }

    #[tokio::test]
    async fn bad_device_keys_are_not_sent() {
        let ep = insecure("http://127.0.0.1:9/v1/token");
        for bad in ["", "two words", "line\r\nX-Injected: 1"] {
            let e = ep.fetch(&Secret::new(bad)).await.unwrap_err();
            assert!(matches!(e, TokenClientError::BadDeviceKey(_)), "{e}");
        }
    }

    #[tokio::test]
    async fn silent_servers_time_out_per_stage() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts and never answers (held open until the test ends).
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let timeouts = Timeouts {
            connect: Duration::from_secs(5),
            handshake: Duration::from_millis(300),
            exchange: Duration::from_secs(20),
        };
        let dir = std::env::temp_dir().join(format!("callbox-https-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
        std::fs::write(&ca, cert.pem()).unwrap();
        let tls = TokenEndpoint::new(&EndpointConfig {
            url: format!("https://localhost:{}/v1/token", addr.port()),
            ca_file: Some(ca),
            allow_insecure_http: false,
            timeouts,
        })
        .unwrap();
        let e = tls.fetch(&Secret::new("k")).await.unwrap_err();
        assert!(matches!(e, TokenClientError::Timeout { stage: "the TLS handshake", .. }), "{e}");
        assert!(e.is_retryable());

        let plain = TokenEndpoint::new(&EndpointConfig {
            url: format!("http://{addr}/v1/token"),
            ca_file: None,
            allow_insecure_http: true,
            timeouts: Timeouts { exchange: Duration::from_millis(300), ..timeouts },
        })
        .unwrap();
        let e = plain.fetch(&Secret::new("k")).await.unwrap_err();
        assert!(matches!(e, TokenClientError::Timeout { stage: "the exchange", .. }), "{e}");
        hold.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ca_file_problems_name_the_file() {
        let dir = std::env::temp_dir().join(format!("callbox-https-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "hello").unwrap();
        for path in [missing, junk] {
            let cfg = EndpointConfig { ca_file: Some(path.clone()), ..EndpointConfig::new("https://localhost:1/") };
            let e = TokenEndpoint::new(&cfg).unwrap_err();
            assert!(matches!(e, TokenClientError::CaFile { .. }), "{e}");
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

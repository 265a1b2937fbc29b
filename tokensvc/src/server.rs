//! The HTTP/1.1 token endpoint: `POST /v1/token` with `Authorization: Bearer <device key>` answers
//! `200 {"token":"<jwt>","expires_in":<ttl>}`; an unknown key gets 401, other paths 404, other methods 405,
//! malformed requests 400. Minimal hand-rolled parsing with bounded sizes and timeouts. Tests start it on an
//! ephemeral 127.0.0.1 port, stop it and start it again on the same port, and change the TTL or the devices.
//! `start_tls` serves the same endpoint over HTTPS (rustls, ring) with a PEM certificate chain and key, so that
//! the firmware's HTTPS client is tested against a private CA.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use callbox_calling::Secret;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use crate::config::ServiceConfig;
use crate::token::{mint, now_unix, MintParams};

const MAX_HEAD: usize = 8 * 1024;
const MAX_BODY: usize = 4 * 1024;
const MAX_CONNECTIONS: usize = 64;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("token service cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("token service TLS setup failed: {reason}")]
    Tls { reason: String },
}

/// A running (or stopped) token endpoint. Dropping it stops it.
pub struct TokenService {
    config: Arc<Mutex<ServiceConfig>>,
    addr: SocketAddr,
    accept: Mutex<Option<JoinHandle<()>>>,
    /// Present in TLS mode: every accepted connection does a TLS handshake first.
    tls: Option<TlsAcceptor>,
}

fn lock(c: &Mutex<ServiceConfig>) -> MutexGuard<'_, ServiceConfig> {
    c.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn lock_task(m: &Mutex<Option<JoinHandle<()>>>) -> MutexGuard<'_, Option<JoinHandle<()>>> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let err = |source| ServerError::Bind { addr, source };
    let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(err)?;
    // Lets a restarted service take its old port while closed connections linger in TIME_WAIT.
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(64).map_err(err)
}

impl TokenService {
    /// Listen on `listen` (port 0 picks a free port) and serve.
    pub async fn start(config: ServiceConfig, listen: SocketAddr) -> Result<Self, ServerError> {
        Self::start_with(config, listen, None).await
    }

    /// Like `start`, over HTTPS: `cert_chain_pem` holds the server certificate then its intermediates (PEM),
    /// `key_pem` its private key (PKCS#8, PKCS#1 or SEC1 PEM).
    pub async fn start_tls(
        config: ServiceConfig,
        listen: SocketAddr,
        cert_chain_pem: &str,
        key_pem: &str,
    ) -> Result<Self, ServerError> {
        let acceptor = tls_acceptor(cert_chain_pem, key_pem)?;
        Self::start_with(config, listen, Some(acceptor)).await
    }

    async fn start_with(
        config: ServiceConfig,
        listen: SocketAddr,
        tls: Option<TlsAcceptor>,
    ) -> Result<Self, ServerError> {
        let listener = bind(listen)?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: listen, source })?;
        let config = Arc::new(Mutex::new(config));
        let accept = Mutex::new(Some(tokio::spawn(accept_loop(listener, config.clone(), tls.clone()))));
        let scheme = if tls.is_some() { "https" } else { "http" };
        log::info!("token service listening on {scheme}://{addr}/v1/token");
        Ok(TokenService { config, addr, accept, tls })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>/v1/token` (`https://` in TLS mode).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}/v1/token", self.addr)
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn is_running(&self) -> bool {
        lock_task(&self.accept).is_some()
    }

    /// Stop listening and drop every open connection (the port is free when this returns).
    pub async fn stop(&self) {
        let task = lock_task(&self.accept).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
            log::info!("token service on {} stopped", self.addr);
        }
    }

    /// Listen again on the same address after `stop` (no-op when running).
    pub async fn restart(&self) -> Result<(), ServerError> {
        let mut accept = lock_task(&self.accept);
        if accept.is_none() {
            let listener = bind(self.addr)?;
            *accept = Some(tokio::spawn(accept_loop(listener, self.config.clone(), self.tls.clone())));
            log::info!("token service on {} started again", self.addr);
        }
        Ok(())
    }

    /// Lifetime of the tokens minted from now on.
    pub fn set_ttl(&self, ttl: Duration) {
        lock(&self.config).ttl_secs = ttl.as_secs().max(1);
    }

    /// Map a device key to a user (replaces an existing mapping of that key).
    pub fn add_device(&self, device_key: Secret, user: impl Into<String>) {
        let mut c = lock(&self.config);
        c.devices.retain(|(k, _)| !k.ct_eq(device_key.expose()));
        c.devices.push((device_key, user.into()));
    }

    /// Mint a token for `user` with the service's secrets and the given lifetime (no HTTP involved).
    pub fn mint_for(&self, user: &str, ttl: Duration) -> String {
        let c = lock(&self.config);
        let params = MintParams {
            user: user.to_string(),
            ttl_secs: ttl.as_secs(),
            realm: c.realm.clone(),
            sip_proxy: c.sip_proxy.clone(),
            plugins: c.plugins.clone(),
        };
        mint(&c.secrets, &params, now_unix())
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        if let Some(task) = lock_task(&self.accept).take() {
            task.abort();
        }
    }
}

/// A TLS acceptor (ring provider, TLS 1.2 and 1.3) for the given PEM chain and key.
fn tls_acceptor(cert_chain_pem: &str, key_pem: &str) -> Result<TlsAcceptor, ServerError> {
    let err = |reason: String| ServerError::Tls { reason };
    let certs = rustls_pemfile::certs(&mut cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("cannot read the certificate chain PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err("the certificate chain PEM holds no certificate".into()));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| err(format!("cannot read the private key PEM: {e}")))?
        .ok_or_else(|| err("the private key PEM holds no private key".into()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err(format!("certificate and key do not make a usable server identity: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn accept_loop(listener: TcpListener, config: Arc<Mutex<ServiceConfig>>, tls: Option<TlsAcceptor>) {
    // Connections live in this JoinSet: aborting the accept task drops it, which aborts them all.
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, peer)) => {
                if conns.len() >= MAX_CONNECTIONS {
                    log::warn!("token service: too many connections, dropping one from {peer}");
                    continue;
                }
                let config = config.clone();
                let tls = tls.clone();
                conns.spawn(async move {
                    let work = async {
                        match tls {
                            None => serve(stream, &config).await,
                            Some(acceptor) => match acceptor.accept(stream).await {
                                Ok(stream) => serve(stream, &config).await,
                                Err(e) => log::info!("token service: TLS handshake with {peer} failed: {e}"),
                            },
                        }
                    };
                    if tokio::time::timeout(REQUEST_TIMEOUT, work).await.is_err() {
                        log::debug!("token service: request from {peer} timed out");
                    }
                });
            }
            Err(e) => {
                log::warn!("token service: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

struct Response {
    status: u16,
    reason: &'static str,
    body: String,
}

fn error(status: u16, reason: &'static str) -> Response {
    Response { status, reason, body: serde_json::json!({ "error": reason }).to_string() }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, config: &Mutex<ServiceConfig>) {
    let response = match read_request(&mut stream).await {
        Ok(req) => route(&req, config),
        Err(r) => r,
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        response.status,
        response.reason,
        response.body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(response.body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

struct Request {
    method: String,
    path: String,
    authorization: Option<String>,
}

async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Request, Response> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(error(431, "Request Header Fields Too Large"));
        }
        let n = stream.read(&mut chunk).await.map_err(|_| error(400, "Bad Request"))?;
        if n == 0 {
            return Err(error(400, "Bad Request"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| error(400, "Bad Request"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if !m.is_empty() && t.starts_with('/') => (m, t, v),
        _ => return Err(error(400, "Bad Request")),
    };
    if !version.starts_with("HTTP/1.") {
        return Err(error(400, "Bad Request"));
    }
    let mut authorization = None;
    let mut content_length = 0usize;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| error(400, "Bad Request"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().map_err(|_| error(400, "Bad Request"))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(error(400, "Bad Request"));
        }
    }
    if content_length > MAX_BODY {
        return Err(error(413, "Payload Too Large"));
    }
    // Read and ignore the body so the client sees a clean close.
    let mut have = buf.len() - head_end - 4;
    while have < content_length {
        let n = stream.read(&mut chunk).await.map_err(|_| error(400, "Bad Request"))?;
        if n == 0 {
            break;
        }
        have += n;
    }
    let path = target.split('?').next().unwrap_or(target).to_string();
    Ok(Request { method: method.to_string(), path, authorization })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn route(req: &Request, config: &Mutex<ServiceConfig>) -> Response {
    if req.path != "/v1/token" {
        return error(404, "Not Found");
    }
    if req.method != "POST" {
        return error(405, "Method Not Allowed");
    }
    let key = match req.authorization.as_deref().and_then(|a| {
        let (scheme, key) = a.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
    }) {
        Some(k) if !k.is_empty() => k,
        _ => return error(401, "Unauthorized"),
    };
    let c = lock(config);
    let Some(user) = c.user_for(key) else {
        log::info!("token service: unknown device key refused");
        return error(401, "Unauthorized");
    };
    let params = MintParams {
        user: user.to_string(),
        ttl_secs: c.ttl_secs,
        realm: c.realm.clone(),
        sip_proxy: c.sip_proxy.clone(),
        plugins: c.plugins.clone(),
    };
    let token = mint(&c.secrets, &params, now_unix());
    log::info!("token service: minted a token for {user} (ttl {} s)", c.ttl_secs);
    Response {
        status: 200,
        reason: "OK",
        body: serde_json::json!({ "token": token, "expires_in": c.ttl_secs }).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{fetch_token, FetchError};
    use crate::token::Secrets;
    use base64::Engine as _;
    use tokio::net::TcpStream;

    fn config() -> ServiceConfig {
        let mut c = ServiceConfig::new(
            Secrets {
                jwt_secret: Secret::new("j"),
                janus_secret: Secret::new("janus"),
                sip_secret: Secret::new("sip"),
            },
            "callbox.test",
            "sip:127.0.0.1:5060",
        );
        c.devices.push((Secret::new("device-key-1"), "alice".into()));
        c
    }

    async fn raw(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    fn claims(jwt: &str) -> serde_json::Value {
        let payload = jwt.split('.').nth(1).unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    }

    const T: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn endpoint_200_401_404_405_400() {
        let svc = TokenService::start(config(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let jwt = fetch_token(&svc.url(), &Secret::new("device-key-1"), T).await.unwrap();
        assert_eq!(claims(&jwt)["sub"], "alice");

        let ok = raw(
            svc.local_addr(),
            "POST /v1/token HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer device-key-1\r\nContent-Length: 2\r\n\r\n{}",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200 "), "{ok}");
        assert!(ok.contains("\"expires_in\":600"), "{ok}");

        let e = fetch_token(&svc.url(), &Secret::new("wrong"), T).await;
        assert!(matches!(e, Err(FetchError::Unauthorized { .. })), "{e:?}");
        let no_auth = raw(svc.local_addr(), "POST /v1/token HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(no_auth.starts_with("HTTP/1.1 401 "), "{no_auth}");

        let nf = raw(svc.local_addr(), "POST /v2/x HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(nf.starts_with("HTTP/1.1 404 "), "{nf}");
        let na = raw(svc.local_addr(), "GET /v1/token HTTP/1.1\r\nAuthorization: Bearer device-key-1\r\n\r\n").await;
        assert!(na.starts_with("HTTP/1.1 405 "), "{na}");
        let bad = raw(svc.local_addr(), "garbage\r\n\r\n").await;
        assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");
    }

    #[tokio::test]
    async fn stop_start_same_port_ttl_and_devices() {
        let svc = TokenService::start(config(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let url = svc.url();
        let key = Secret::new("device-key-1");
        fetch_token(&url, &key, T).await.unwrap();
        svc.stop().await;
        assert!(!svc.is_running());
        let e = fetch_token(&url, &key, T).await;
        assert!(matches!(e, Err(FetchError::Connect { .. })), "{e:?}");
        svc.restart().await.unwrap();
        assert_eq!(svc.url(), url);
        svc.set_ttl(Duration::from_secs(42));
        let jwt = fetch_token(&url, &key, T).await.unwrap();
        let c = claims(&jwt);
        assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 42);
        svc.add_device(Secret::new("k2"), "bob");
        let jwt = fetch_token(&url, &Secret::new("k2"), T).await.unwrap();
        assert_eq!(claims(&jwt)["sub"], "bob");
    }

    #[tokio::test]
    async fn tls_mode_serves_https_and_refuses_bad_pem() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
        let svc = TokenService::start_tls(config(), "127.0.0.1:0".parse().unwrap(), &cert.pem(), &key.serialize_pem())
            .await
            .unwrap();
        assert!(svc.is_tls());
        assert!(svc.url().starts_with("https://127.0.0.1:"), "{}", svc.url());

        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = TcpStream::connect(svc.local_addr()).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"POST /v1/token HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer device-key-1\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        tls.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
        let body = out.split_once("\r\n\r\n").unwrap().1;
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(claims(v["token"].as_str().unwrap())["sub"], "alice");

        // Plain HTTP to the TLS port does not get a token.
        let e = fetch_token(&svc.url().replace("https://", "http://"), &Secret::new("device-key-1"), T).await;
        assert!(e.is_err(), "{e:?}");

        // Stop and restart keep TLS mode.
        svc.stop().await;
        svc.restart().await.unwrap();
        let tcp = TcpStream::connect(svc.local_addr()).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        assert!(connector.connect(name, tcp).await.is_ok());

        let bad =
            TokenService::start_tls(config(), "127.0.0.1:0".parse().unwrap(), "not pem", &key.serialize_pem()).await;
        assert!(matches!(bad, Err(ServerError::Tls { .. })));
        let bad = TokenService::start_tls(config(), "127.0.0.1:0".parse().unwrap(), &cert.pem(), "").await;
        assert!(matches!(bad, Err(ServerError::Tls { .. })));
    }
}

//! The HTTP/1.1 token endpoint: `POST /v1/token` with `Authorization: Bearer <device key>` answers
//! `200 {"token":"<jwt>","expires_in":<ttl>}`; an unknown key gets 401, other paths 404, other methods 405,
//! malformed requests 400. Minimal hand-rolled parsing with bounded sizes and timeouts. Tests start it on an
//! ephemeral 127.0.0.1 port, stop it and start it again on the same port, and change the TTL or the devices.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use callbox_calling::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

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
}

/// A running (or stopped) token endpoint. Dropping it stops it.
pub struct TokenService {
    config: Arc<Mutex<ServiceConfig>>,
    addr: SocketAddr,
    accept: Mutex<Option<JoinHandle<()>>>,
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
        let listener = bind(listen)?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: listen, source })?;
        let config = Arc::new(Mutex::new(config));
        let accept = Mutex::new(Some(tokio::spawn(accept_loop(listener, config.clone()))));
        log::info!("token service listening on http://{addr}/v1/token");
        Ok(TokenService { config, addr, accept })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>/v1/token`.
    pub fn url(&self) -> String {
        format!("http://{}/v1/token", self.addr)
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
            *accept = Some(tokio::spawn(accept_loop(listener, self.config.clone())));
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

async fn accept_loop(listener: TcpListener, config: Arc<Mutex<ServiceConfig>>) {
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
                conns.spawn(async move {
                    if tokio::time::timeout(REQUEST_TIMEOUT, serve(stream, &config)).await.is_err() {
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

async fn serve(mut stream: TcpStream, config: &Mutex<ServiceConfig>) {
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

async fn read_request(stream: &mut TcpStream) -> Result<Request, Response> {
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
}

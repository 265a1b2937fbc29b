//! The HTTP/1.1 token endpoint: `POST /v1/token` with `Authorization: Bearer <device key>` answers
//! `200 {"token":"<jwt>","expires_in":<ttl>}`; an unknown key gets 401, other paths 404, other methods 405,
//! malformed requests 400. Minimal hand-rolled parsing with bounded sizes. Tests start it on an ephemeral
//! 127.0.0.1 port, stop it and start it again on the same port, and change the TTL or the devices.
//! `start_tls` serves the same endpoint over HTTPS (rustls, ring) with a PEM certificate chain and key, so that
//! the firmware's HTTPS client is tested against a private CA.
//!
//! Against guessing and slow clients (`Limits`): wrong device keys lock their source out (`lockout`: 429 with
//! `Retry-After`, the key not even looked at); each connection must deliver its TLS handshake and whole request
//! within `read_deadline` (else 408 and close) and take the answer within `write_deadline`; at most
//! `max_connections` are served at once, a connection over the cap gets 503 (plain HTTP) or is closed (TLS).
//! No log line or error carries a device key or a token.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use callbox_calling::Secret;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use crate::config::{Device, ServiceConfig};
use crate::lockout::{Admission, LockoutPolicy, Lockouts};
use crate::token::{mint, now_unix, MintParams};

const MAX_HEAD: usize = 8 * 1024;
const MAX_BODY: usize = 4 * 1024;
/// What a connection over the cap is told (plain HTTP).
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 31\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{\"error\":\"Service Unavailable\"}";
/// At most one "over the cap" warning this often (a flood would fill the log otherwise).
const BUSY_LOG_EVERY: Duration = Duration::from_secs(10);
/// Connections over the cap that are told 503 at once; any more are closed without a word.
const BUSY_SLOTS: usize = 16;
/// How long a connection over the cap has to send its request head before it is told 503 and closed.
const BUSY_DEADLINE: Duration = Duration::from_secs(1);

/// Bounds on connections, requests and device-key guesses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; the next ones get 503 (plain HTTP) or are closed (TLS).
    pub max_connections: usize,
    /// From accepting a connection to the end of its request (TLS handshake, head and body).
    pub read_deadline: Duration,
    /// For writing the answer.
    pub write_deadline: Duration,
    /// Wrong device keys per source.
    pub lockout: LockoutPolicy,
}

impl Default for Limits {
    /// 64 connections, 5 s to send a request, 5 s to take the answer, the default lockout policy.
    fn default() -> Self {
        Limits {
            max_connections: 64,
            read_deadline: Duration::from_secs(5),
            write_deadline: Duration::from_secs(5),
            lockout: LockoutPolicy::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("token service cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("token service TLS setup failed: {reason}")]
    Tls { reason: String },
}

/// A running (or stopped) token endpoint. Dropping it stops it.
pub struct TokenService {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Mutex<Option<JoinHandle<()>>>,
    /// Present in TLS mode: every accepted connection does a TLS handshake first.
    tls: Option<TlsAcceptor>,
}

/// What every connection of a service shares: the configuration, the wrong-key counts (kept across `stop` and
/// `restart`) and the limits.
pub(crate) struct Shared {
    config: Mutex<ServiceConfig>,
    lockouts: Mutex<Lockouts>,
    limits: Limits,
}

impl Shared {
    pub(crate) fn new(config: ServiceConfig, limits: Limits) -> Self {
        Shared { config: Mutex::new(config), lockouts: Mutex::new(Lockouts::new(limits.lockout.clone())), limits }
    }
}

/// A lock that a panicking holder did not make unusable (the data stays consistent between statements).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
    /// Listen on `listen` (port 0 picks a free port) and serve, with the default `Limits`.
    pub async fn start(config: ServiceConfig, listen: SocketAddr) -> Result<Self, ServerError> {
        Self::start_with(config, listen, None, Limits::default()).await
    }

    /// Like `start`, with other limits (tests use short deadlines).
    pub async fn start_with_limits(
        config: ServiceConfig,
        listen: SocketAddr,
        limits: Limits,
    ) -> Result<Self, ServerError> {
        Self::start_with(config, listen, None, limits).await
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
        Self::start_with(config, listen, Some(acceptor), Limits::default()).await
    }

    async fn start_with(
        config: ServiceConfig,
        listen: SocketAddr,
        tls: Option<TlsAcceptor>,
        limits: Limits,
    ) -> Result<Self, ServerError> {
        let listener = bind(listen)?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: listen, source })?;
        let shared = Arc::new(Shared::new(config, limits));
        let accept = Mutex::new(Some(tokio::spawn(accept_loop(listener, shared.clone(), tls.clone()))));
        let scheme = if tls.is_some() { "https" } else { "http" };
        log::info!("token service listening on {scheme}://{addr}/v1/token");
        Ok(TokenService { shared, addr, accept, tls })
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
        lock(&self.accept).is_some()
    }

    /// Stop listening and drop every open connection (the port is free when this returns).
    pub async fn stop(&self) {
        let task = lock(&self.accept).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
            log::info!("token service on {} stopped", self.addr);
        }
    }

    /// Listen again on the same address after `stop` (no-op when running). Lockouts carry over.
    pub async fn restart(&self) -> Result<(), ServerError> {
        let mut accept = lock(&self.accept);
        if accept.is_none() {
            let listener = bind(self.addr)?;
            *accept = Some(tokio::spawn(accept_loop(listener, self.shared.clone(), self.tls.clone())));
            log::info!("token service on {} started again", self.addr);
        }
        Ok(())
    }

    /// Lifetime of the tokens minted from now on.
    pub fn set_ttl(&self, ttl: Duration) {
        lock(&self.shared.config).ttl_secs = ttl.as_secs().max(1);
    }

    /// Map a device key to a device (`"alice".into()`: no room grant; replaces an existing mapping of that key).
    pub fn add_device(&self, device_key: Secret, device: impl Into<Device>) {
        let mut c = lock(&self.shared.config);
        c.devices.retain(|(k, _)| !k.ct_eq(device_key.expose()));
        c.devices.push((device_key, device.into()));
    }

    /// Mint a token for `user` with the service's secrets and the given lifetime (no HTTP involved), with the
    /// room grant if `rooms` (and the service has a videoroom admin key).
    pub fn mint_for(&self, user: &str, ttl: Duration, rooms: bool) -> String {
        let c = lock(&self.shared.config);
        let params = MintParams {
            user: user.to_string(),
            ttl_secs: ttl.as_secs(),
            realm: c.realm.clone(),
            sip_proxy: c.sip_proxy.clone(),
            plugins: c.plugins.clone(),
            room_admin_key: c.room_admin_key.clone().filter(|_| rooms),
        };
        mint(&c.secrets, &params, now_unix())
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.accept).take() {
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

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    // Connections live in this JoinSet: aborting the accept task drops it, which aborts them all.
    let mut conns = JoinSet::new();
    let slots = Arc::new(Semaphore::new(shared.limits.max_connections));
    let busy_slots = Arc::new(Semaphore::new(BUSY_SLOTS));
    let mut busy_logged: Option<Instant> = None;
    loop {
        while conns.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    if busy_logged.is_none_or(|t| t.elapsed() >= BUSY_LOG_EVERY) {
                        let open = shared.limits.max_connections;
                        log::warn!("token service: {open} connections open, turning away {peer} (and more)");
                        busy_logged = Some(Instant::now());
                    }
                    // Plain HTTP: 503 after the request head (closing with the request unread would reset the
                    // connection before the client reads the answer), in a few slots of their own.
                    if tls.is_none() {
                        if let Ok(permit) = busy_slots.clone().try_acquire_owned() {
                            conns.spawn(async move {
                                let _permit = permit;
                                turn_away(stream).await;
                            });
                        }
                    }
                    continue;
                };
                let shared = shared.clone();
                let tls = tls.clone();
                conns.spawn(async move {
                    let _permit = permit;
                    connection(stream, peer, &shared, tls).await;
                });
            }
            Err(e) => {
                log::warn!("token service: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A connection over the cap: read (and drop) its request head for at most `BUSY_DEADLINE`, answer 503, close.
async fn turn_away(mut stream: TcpStream) {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 1024];
    let _ = tokio::time::timeout(BUSY_DEADLINE, async {
        while find(&seen, b"\r\n\r\n").is_none() && seen.len() <= MAX_HEAD {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = stream.write_all(BUSY).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// One connection: the TLS handshake (if any) and the request within the read deadline, the answer within the
/// write deadline.
async fn connection(stream: TcpStream, peer: SocketAddr, shared: &Shared, tls: Option<TlsAcceptor>) {
    let deadline = tokio::time::Instant::now() + shared.limits.read_deadline;
    match tls {
        None => serve(stream, peer, shared, deadline).await,
        Some(acceptor) => match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => serve(stream, peer, shared, deadline).await,
            Ok(Err(e)) => log::info!("token service: TLS handshake with {peer} failed: {e}"),
            Err(_) => log::debug!("token service: no TLS handshake from {peer} in time, closed"),
        },
    }
}

struct Response {
    status: u16,
    reason: &'static str,
    body: String,
    /// Seconds, for 429.
    retry_after: Option<u64>,
}

fn error(status: u16, reason: &'static str) -> Response {
    Response { status, reason, body: serde_json::json!({ "error": reason }).to_string(), retry_after: None }
}

/// How many sources the lockout table remembers (the fuzz target checks its bound).
#[cfg(test)]
pub(crate) fn lock_count(shared: &Shared) -> usize {
    lock(&shared.lockouts).len()
}

/// Reads one request from `stream` (by `deadline`), answers it and closes.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    shared: &Shared,
    deadline: tokio::time::Instant,
) {
    let response = match tokio::time::timeout_at(deadline, read_request(&mut stream)).await {
        Ok(Ok(req)) => route(&req, shared, peer.ip()),
        Ok(Err(r)) => r,
        Err(_) => {
            log::debug!("token service: no whole request from {peer} in time, closed");
            error(408, "Request Timeout")
        }
    };
    let retry_after = response.retry_after.map(|s| format!("Retry-After: {s}\r\n")).unwrap_or_default();
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{retry_after}Connection: close\r\n\r\n",
        response.status,
        response.reason,
        response.body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(response.body.as_bytes()).await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(shared.limits.write_deadline, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::debug!("token service: cannot answer {peer}: {e}"),
        Err(_) => log::debug!("token service: {peer} did not take its answer in time, closed"),
    }
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

fn route(req: &Request, shared: &Shared, peer: IpAddr) -> Response {
    if req.path != "/v1/token" {
        return error(404, "Not Found");
    }
    if req.method != "POST" {
        return error(405, "Method Not Allowed");
    }
    // Check, compare and count under one lock: parallel connections of one source cannot slip guesses past the
    // count (nothing below waits).
    let mut lockouts = lock(&shared.lockouts);
    let now = Instant::now();
    if let Admission::Locked { retry_after } = lockouts.check(peer, now) {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        return Response { retry_after: Some(secs.max(1)), ..error(429, "Too Many Requests") };
    }
    let key = match req.authorization.as_deref().and_then(|a| {
        let (scheme, key) = a.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
    }) {
        Some(k) if !k.is_empty() => k,
        _ => return error(401, "Unauthorized"),
    };
    let c = lock(&shared.config);
    let Some(device) = c.device_for(key) else {
        match lockouts.failed(peer, now) {
            Some(l) => log::warn!(
                "token service: {} locked out for {} s after {} wrong device keys",
                l.source,
                l.duration.as_secs_f32(),
                l.failures
            ),
            None => log::info!("token service: unknown device key from {peer} refused"),
        }
        return error(401, "Unauthorized");
    };
    lockouts.succeeded(peer);
    drop(lockouts);
    let params = MintParams {
        user: device.user.clone(),
        ttl_secs: c.ttl_secs,
        realm: c.realm.clone(),
        sip_proxy: c.sip_proxy.clone(),
        plugins: c.plugins.clone(),
        room_admin_key: c.room_admin_key_for(device),
    };
    let token = mint(&c.secrets, &params, now_unix());
    let grant = if params.room_admin_key.is_some() { ", room grant" } else { "" };
    log::info!("token service: minted a token for {} (ttl {} s{grant})", device.user, c.ttl_secs);
    Response {
        status: 200,
        reason: "OK",
        body: serde_json::json!({ "token": token, "expires_in": c.ttl_secs }).to_string(),
        retry_after: None,
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
    async fn only_devices_with_a_room_grant_get_the_admin_key() {
        let mut c = config();
        c.room_admin_key = Some(Secret::new("room-admin-key-0042"));
        c.devices.push((Secret::new("device-key-2"), Device::new("bob").with_rooms()));
        let svc = TokenService::start(c, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let janus = |jwt: &str| claims(jwt)["grants"]["janus"].clone();
        let alice = fetch_token(&svc.url(), &Secret::new("device-key-1"), T).await.unwrap();
        assert!(janus(&alice).get("room_admin_key").is_none(), "{}", janus(&alice));
        let bob = fetch_token(&svc.url(), &Secret::new("device-key-2"), T).await.unwrap();
        assert_eq!(janus(&bob)["room_admin_key"], "room-admin-key-0042");
        assert_eq!(janus(&svc.mint_for("carol", T, true))["room_admin_key"], "room-admin-key-0042");
        assert!(janus(&svc.mint_for("carol", T, false)).get("room_admin_key").is_none());
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
        assert!(claims(&jwt)["grants"]["janus"].get("room_admin_key").is_none(), "no room grant, no key");
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

    async fn post(addr: SocketAddr, key: &str) -> String {
        raw(addr, &format!("POST /v1/token HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n")).await
    }

    #[tokio::test]
    async fn wrong_keys_lock_the_source_out_with_429_and_retry_after() {
        let limits = Limits {
            lockout: LockoutPolicy { initial: Duration::from_secs(60), ..LockoutPolicy::default() },
            ..Limits::default()
        };
        let svc = TokenService::start_with_limits(config(), "127.0.0.1:0".parse().unwrap(), limits).await.unwrap();
        // A right key in between clears the count.
        for _ in 0..4 {
            assert!(post(svc.local_addr(), "guess").await.starts_with("HTTP/1.1 401 "));
        }
        assert!(post(svc.local_addr(), "device-key-1").await.starts_with("HTTP/1.1 200 "));
        for _ in 0..4 {
            assert!(post(svc.local_addr(), "guess").await.starts_with("HTTP/1.1 401 "));
        }
        // The fifth wrong key in a row is still answered, and locks the source out.
        assert!(post(svc.local_addr(), "guess").await.starts_with("HTTP/1.1 401 "));
        // Locked out: even the right key is not looked at.
        let locked = post(svc.local_addr(), "device-key-1").await;
        assert!(locked.starts_with("HTTP/1.1 429 Too Many Requests\r\n"), "{locked}");
        let retry: u64 =
            locked.lines().find_map(|l| l.strip_prefix("Retry-After: ")).expect("Retry-After").trim().parse().unwrap();
        assert!((59..=60).contains(&retry), "{retry}");
        let e = fetch_token(&svc.url(), &Secret::new("device-key-1"), T).await;
        assert!(matches!(e, Err(FetchError::Status { status: 429, .. })), "{e:?}");
        // The lockout holds across a restart of the service.
        svc.stop().await;
        svc.restart().await.unwrap();
        assert!(post(svc.local_addr(), "device-key-1").await.starts_with("HTTP/1.1 429 "));
    }

    fn slow_limits() -> Limits {
        Limits { read_deadline: Duration::from_secs(1), ..Limits::default() }
    }

    #[tokio::test]
    async fn fifty_idle_connections_do_not_hold_up_a_token_fetch() {
        let svc =
            TokenService::start_with_limits(config(), "127.0.0.1:0".parse().unwrap(), slow_limits()).await.unwrap();
        let mut idle = Vec::new();
        for _ in 0..50 {
            idle.push(TcpStream::connect(svc.local_addr()).await.unwrap());
        }
        // Some of them sent half a request.
        for s in idle.iter_mut().take(10) {
            s.write_all(b"POST /v1/token HTTP/1.1\r\nAuthor").await.unwrap();
        }
        let started = std::time::Instant::now();
        let jwt = fetch_token(&svc.url(), &Secret::new("device-key-1"), T).await.unwrap();
        let took = started.elapsed();
        eprintln!("token fetch with 50 idle connections open: {took:?}");
        assert_eq!(claims(&jwt)["sub"], "alice");
        assert!(took < Duration::from_millis(500), "{took:?}");
        // The idle ones are answered 408 and closed at the read deadline.
        let started = std::time::Instant::now();
        for s in idle.iter_mut() {
            let mut out = String::new();
            tokio::time::timeout(T, s.read_to_string(&mut out)).await.unwrap().unwrap();
            assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
        }
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_slowloris_is_closed_at_the_read_deadline() {
        let svc =
            TokenService::start_with_limits(config(), "127.0.0.1:0".parse().unwrap(), slow_limits()).await.unwrap();
        let mut s = TcpStream::connect(svc.local_addr()).await.unwrap();
        let started = std::time::Instant::now();
        let request = b"POST /v1/token HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer device-key-1\r\n\r\n";
        let mut answer = Vec::new();
        // One byte every 100 ms: the whole request would take 7 s.
        for b in request {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
                Err(_) => continue,
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            }
        }
        let took = started.elapsed();
        eprintln!("slowloris closed after {took:?}");
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "{took:?}");
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408 "), "{answer:?}");
        // A normal request meanwhile and after: served.
        fetch_token(&svc.url(), &Secret::new("device-key-1"), T).await.unwrap();
    }

    #[tokio::test]
    async fn over_the_connection_cap_503_and_served_again_once_they_go() {
        let limits = Limits { max_connections: 8, ..slow_limits() };
        let svc = TokenService::start_with_limits(config(), "127.0.0.1:0".parse().unwrap(), limits).await.unwrap();
        let mut idle = Vec::new();
        for _ in 0..8 {
            idle.push(TcpStream::connect(svc.local_addr()).await.unwrap());
        }
        let busy = post(svc.local_addr(), "device-key-1").await;
        assert!(busy.starts_with("HTTP/1.1 503 "), "{busy}");
        assert!(busy.contains("Retry-After: 1\r\n"), "{busy}");
        let body = busy.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(serde_json::from_str::<serde_json::Value>(body).unwrap()["error"], "Service Unavailable");
        drop(idle);
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            match fetch_token(&svc.url(), &Secret::new("device-key-1"), T).await {
                Ok(_) => break,
                Err(e) => assert!(std::time::Instant::now() < deadline, "{e:?}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

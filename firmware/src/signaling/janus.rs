//! The Janus API client over one WebSocket (`janus-protocol`): server failover, the session (create,
//! keepalive, destroy), transactions with timeouts, the signed-token swap, and reconnect with backoff
//! plus `claim` of the existing session. One driver task owns the socket; callers talk to it through a
//! bounded command channel and get answers on oneshot channels.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use callbox_calling::{Backoff, Secret};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use log::{debug, error, info, trace, warn};
use rand::Rng;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{interval, interval_at, timeout, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::error::{codes, Result, SignalingError};
use super::event::{HandleEvent, JanusEvent};

/// The WebSocket subprotocol of the Janus API.
pub const JANUS_SUBPROTOCOL: &str = "janus-protocol";

/// How the client connects and keeps its session.
#[derive(Clone, Debug)]
pub struct JanusConfig {
    /// WebSocket URLs of the Janus servers, tried in order when the session is created.
    pub urls: Vec<String>,
    /// The Janus signed token sent with every request (swap it with `JanusSession::set_token`).
    pub token: Secret,
    /// How long a request may wait for its answer (for plugin messages: the event after the ack).
    pub request_timeout: Duration,
    /// How long opening one WebSocket may take.
    pub connect_timeout: Duration,
    /// For wss://: trust this TLS configuration (a pinned CA) instead of the system roots.
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    /// Keepalive period; keep it well inside the server's `session_timeout` (60 s on ours).
    pub keepalive_interval: Duration,
    /// How long after a drop the client keeps trying to `claim` its session; keep it inside the server's
    /// `reclaim_session_timeout` (30 s on ours).
    pub reclaim_window: Duration,
    /// First reconnect delay; doubled on each attempt up to `backoff_max`, with jitter.
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// Capacity of each handle's event queue.
    pub event_buffer: usize,
    /// Capacity of the command queue to the driver task.
    pub command_buffer: usize,
}

impl JanusConfig {
    /// How long a dropped connection's session is tried for by default: below our Janus's
    /// `reclaim_session_timeout` (30 s).
    pub const DEFAULT_RECLAIM_WINDOW: Duration = Duration::from_secs(25);

    /// Defaults matched to our Janus configuration (session_timeout 60 s, reclaim_session_timeout 30 s).
    pub fn new(urls: Vec<String>, token: Secret) -> Self {
        JanusConfig {
            urls,
            token,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            tls: None,
            keepalive_interval: Duration::from_secs(15),
            reclaim_window: Self::DEFAULT_RECLAIM_WINDOW,
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(4),
            event_buffer: 64,
            command_buffer: 32,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.urls.is_empty() {
            return Err(SignalingError::Config("no Janus URL given".into()));
        }
        if self.request_timeout.is_zero() || self.keepalive_interval.is_zero() {
            return Err(SignalingError::Config("request_timeout and keepalive_interval must be positive".into()));
        }
        if self.event_buffer == 0 || self.command_buffer == 0 {
            return Err(SignalingError::Config("queue capacities must be positive".into()));
        }
        Ok(())
    }
}

/// State changes of the connection, on the stream returned by `JanusSession::connect`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// The session was created on this server.
    Connected { url: String, session_id: u64 },
    /// The WebSocket dropped; attempt `attempt` to get back is about to start.
    Reconnecting { attempt: u32, reason: String },
    /// A new WebSocket claimed the existing session: handles and calls survived.
    Reclaimed { url: String, session_id: u64 },
    /// Janus answered 403 to a request the client sent on its own (keepalive, claim): refresh the token.
    Unauthorized { request: String },
    /// The session is gone (claim failed, reclaim window elapsed, or server timeout): create a new
    /// session and new handles. Every stream of this session ends.
    Lost { reason: String },
}

/// A bidirectional stream of WebSocket messages (a real socket, or an in-memory one in tests).
pub trait WsTransport:
    Stream<Item = std::result::Result<Message, WsError>> + Sink<Message, Error = WsError> + Send + Unpin
{
}

impl<T> WsTransport for T where
    T: Stream<Item = std::result::Result<Message, WsError>> + Sink<Message, Error = WsError> + Send + Unpin
{
}

/// A boxed transport.
pub type BoxedTransport = Box<dyn WsTransport>;

/// Opens a transport to a URL.
pub type Connector = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<BoxedTransport>> + Send>> + Send + Sync>;

/// The real connector: a WebSocket (ws://, or wss:// trusting the system roots) asking for the
/// `janus-protocol` subprotocol.
pub fn websocket_connector() -> Connector {
    websocket_connector_with_tls(None)
}

/// The real connector, with wss:// trusting what `tls` trusts (a pinned CA) instead of the system roots.
pub fn websocket_connector_with_tls(tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>) -> Connector {
    Arc::new(move |url: String| {
        let tls = tls.clone();
        Box::pin(async move {
            let mut request = url
                .as_str()
                .into_client_request()
                .map_err(|e| SignalingError::Connect { url: url.clone(), reason: e.to_string() })?;
            request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(JANUS_SUBPROTOCOL));
            let connector = tls.map(tokio_tungstenite::Connector::Rustls);
            let (ws, _response) = tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector)
                .await
                .map_err(|e| SignalingError::Connect { url: url.clone(), reason: e.to_string() })?;
            Ok(Box::new(ws) as BoxedTransport)
        })
    })
}

/// A Janus session on one server. Cheap to clone; all clones share one driver task. The session is
/// destroyed on the server by `destroy()`, or (best effort) when the last clone and handle are dropped.
#[derive(Clone)]
pub struct JanusSession {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) session_id: u64,
    pub(crate) url: String,
    pub(crate) cmd_tx: mpsc::Sender<Command>,
    pub(crate) token: Arc<RwLock<Secret>>,
    pub(crate) request_timeout: Duration,
    pub(crate) event_buffer: usize,
    /// Set by the driver when it ends because the session was lost.
    pub(crate) lost: Arc<RwLock<Option<String>>>,
}

impl std::fmt::Debug for JanusSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JanusSession")
            .field("session_id", &self.shared.session_id)
            .field("url", &self.shared.url)
            .finish()
    }
}

/// A request to the driver task.
pub(crate) enum Command {
    Request {
        /// Request name for errors and logs (`attach`, `message:call`...).
        name: String,
        /// The request without transaction, token, session_id and handle_id.
        body: Map<String, Value>,
        handle_id: Option<u64>,
        /// Wait past the `ack` for the `event` with the same transaction (plugin messages).
        wait_event: bool,
        /// For `attach`: the queue of the new handle's events, registered before the answer is passed on.
        attach: Option<mpsc::Sender<HandleEvent>>,
        reply: oneshot::Sender<Result<Value>>,
    },
    /// Stop routing events to this handle.
    Forget { handle_id: u64 },
    /// Destroy the session and end the driver.
    Destroy { reply: oneshot::Sender<Result<()>> },
}

impl JanusSession {
    /// Connects to the first reachable server of `config.urls` and creates a session there.
    pub async fn connect(config: JanusConfig) -> Result<(JanusSession, mpsc::Receiver<ConnectionEvent>)> {
        let connector = websocket_connector_with_tls(config.tls.clone());
        Self::connect_with(config, connector).await
    }

    /// As `connect`, with a custom transport (tests use an in-memory one).
    pub async fn connect_with(
        config: JanusConfig,
        connector: Connector,
    ) -> Result<(JanusSession, mpsc::Receiver<ConnectionEvent>)> {
        config.validate()?;
        let (cmd_tx, cmd_rx) = mpsc::channel(config.command_buffer);
        let (events_tx, events_rx) = mpsc::channel(32);
        let token = Arc::new(RwLock::new(config.token.clone()));
        let lost = Arc::new(RwLock::new(None));
        let mut driver = Driver {
            cfg: config.clone(),
            token: token.clone(),
            connector: connector.clone(),
            cmd_rx,
            events_tx,
            session_id: 0,
            url_index: 0,
            pending: HashMap::new(),
            handles: HashMap::new(),
            lost: lost.clone(),
        };
        let mut last = String::from("none tried");
        for (index, url) in config.urls.iter().enumerate() {
            let mut ws = match timeout(config.connect_timeout, connector(url.clone())).await {
                Ok(Ok(ws)) => ws,
                Ok(Err(e)) => {
                    warn!("Janus server {url} unreachable: {e}");
                    last = e.to_string();
                    continue;
                }
                Err(_) => {
                    warn!("Janus server {url}: connect timed out");
                    last = format!("connect to {url} timed out");
                    continue;
                }
            };
            match driver.create_session(&mut ws).await {
                Ok(session_id) => {
                    info!("Janus session {session_id} created on {url}");
                    driver.session_id = session_id;
                    driver.url_index = index;
                    driver.emit(ConnectionEvent::Connected { url: url.clone(), session_id });
                    tokio::spawn(driver.run(ws));
                    let shared = Shared {
                        session_id,
                        url: url.clone(),
                        cmd_tx,
                        token,
                        request_timeout: config.request_timeout,
                        event_buffer: config.event_buffer,
                        lost,
                    };
                    return Ok((JanusSession { shared: Arc::new(shared) }, events_rx));
                }
                Err(e @ SignalingError::Unauthorized { .. }) => {
                    let _ = timeout(Duration::from_secs(1), ws.close()).await;
                    return Err(e);
                }
                Err(e) => {
                    warn!("Janus server {url}: session not created: {e}");
                    let _ = timeout(Duration::from_secs(1), ws.close()).await;
                    last = format!("{url}: {e}");
                }
            }
        }
        Err(SignalingError::AllServersFailed { tried: config.urls.len(), last })
    }

    /// The server's id of this session.
    pub fn session_id(&self) -> u64 {
        self.shared.session_id
    }

    /// The URL of the server holding the session.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// Replaces the signed token; every later request (keepalives and claims included) carries it.
    pub fn set_token(&self, token: Secret) {
        let mut guard = self.shared.token.write().unwrap_or_else(|e| e.into_inner());
        *guard = token;
        debug!("Janus session {}: token swapped", self.shared.session_id);
    }

    /// Destroys the session on the server and stops the driver; every stream ends.
    pub async fn destroy(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send_command(Command::Destroy { reply }).await?;
        match timeout(self.shared.request_timeout * 2, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Ok(()),
            Err(_) => Err(SignalingError::Timeout {
                request: "destroy".into(),
                timeout_ms: duration_ms(self.shared.request_timeout * 2),
            }),
        }
    }

    pub(crate) async fn send_command(&self, cmd: Command) -> Result<()> {
        let sent = timeout(self.shared.request_timeout, self.shared.cmd_tx.send(cmd)).await;
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.ended_error()),
            Err(_) => Err(SignalingError::Timeout {
                request: "queue command".into(),
                timeout_ms: duration_ms(self.shared.request_timeout),
            }),
        }
    }

    /// Why the session was lost, once it is: every handle's event stream then ends too.
    pub fn lost_reason(&self) -> Option<String> {
        self.shared.lost.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The error for a request made after the driver ended.
    pub(crate) fn ended_error(&self) -> SignalingError {
        let lost = self.shared.lost.read().unwrap_or_else(|e| e.into_inner());
        match lost.as_ref() {
            Some(reason) => SignalingError::SessionLost { reason: reason.clone() },
            None => SignalingError::Closed,
        }
    }

    /// Sends one request and waits for its answer (the raw Janus message).
    pub(crate) async fn request(
        &self,
        name: &str,
        body: Map<String, Value>,
        handle_id: Option<u64>,
        wait_event: bool,
        attach: Option<mpsc::Sender<HandleEvent>>,
    ) -> Result<Value> {
        let (reply, rx) = oneshot::channel();
        self.send_command(Command::Request { name: name.to_owned(), body, handle_id, wait_event, attach, reply })
            .await?;
        // The driver answers Timeout itself at request_timeout; this outer bound only guards against a
        // stalled driver.
        let bound = self.shared.request_timeout * 2 + Duration::from_secs(1);
        match timeout(bound, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.ended_error()),
            Err(_) => Err(SignalingError::Timeout { request: name.to_owned(), timeout_ms: duration_ms(bound) }),
        }
    }
}

pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Random transaction id.
fn transaction_id() -> String {
    rand::rng().sample_iter(&rand::distr::Alphanumeric).take(16).map(char::from).collect()
}

/// Exponential backoff with jitter (the calling core's `Backoff`): attempt 1 waits about `min`, each next one
/// doubles up to `max`; the actual delay is uniform in [delay/2, delay].
pub(crate) fn backoff_delay(attempt: u32, min: Duration, max: Duration) -> Duration {
    let backoff = Backoff { initial: min.max(Duration::from_millis(1)), max, max_attempts: None };
    backoff.delay(attempt.saturating_sub(1), rand::random::<f64>()).unwrap_or(max)
}

enum PendingKind {
    External(oneshot::Sender<Result<Value>>),
    Keepalive,
    Destroy(oneshot::Sender<Result<()>>),
}

struct Pending {
    name: String,
    handle_id: Option<u64>,
    wait_event: bool,
    deadline: Instant,
    attach: Option<mpsc::Sender<HandleEvent>>,
    kind: PendingKind,
}

/// What the connected loop should do next.
enum Flow {
    Continue,
    Disconnected(String),
    SessionLost(String),
    Closed,
}

struct Driver {
    cfg: JanusConfig,
    token: Arc<RwLock<Secret>>,
    connector: Connector,
    cmd_rx: mpsc::Receiver<Command>,
    events_tx: mpsc::Sender<ConnectionEvent>,
    session_id: u64,
    url_index: usize,
    pending: HashMap<String, Pending>,
    handles: HashMap<u64, mpsc::Sender<HandleEvent>>,
    lost: Arc<RwLock<Option<String>>>,
}

impl Driver {
    fn emit(&self, event: ConnectionEvent) {
        if let Err(mpsc::error::TrySendError::Full(event)) = self.events_tx.try_send(event) {
            warn!("connection event queue full, dropping {event:?}");
        }
    }

    /// Serialises a request with its transaction, session, handle and the current token.
    fn stamp(&self, mut body: Map<String, Value>, transaction: &str, handle_id: Option<u64>) -> String {
        body.insert("transaction".into(), json!(transaction));
        if self.session_id != 0 {
            body.insert("session_id".into(), json!(self.session_id));
        }
        if let Some(h) = handle_id {
            body.insert("handle_id".into(), json!(h));
        }
        let token = self.token.read().unwrap_or_else(|e| e.into_inner());
        if !token.is_empty() {
            body.insert("token".into(), json!(token.expose()));
        }
        Value::Object(body).to_string()
    }

    async fn send_text(&self, ws: &mut BoxedTransport, text: String) -> std::result::Result<(), String> {
        match timeout(self.cfg.request_timeout, ws.send(Message::text(text))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("send failed: {e}")),
            Err(_) => Err("send timed out".into()),
        }
    }

    /// Sends a request outside the driver loop (create, claim) and reads until its answer, dispatching
    /// anything else that arrives meanwhile.
    async fn exchange(&mut self, ws: &mut BoxedTransport, name: &str, body: Map<String, Value>) -> Result<Value> {
        let transaction = transaction_id();
        let text = self.stamp(body, &transaction, None);
        let url = self.current_url();
        self.send_text(ws, text).await.map_err(|reason| SignalingError::Connect { url: url.clone(), reason })?;
        let deadline = Instant::now() + self.cfg.request_timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, ws.next()).await;
            let msg = match next {
                Err(_) => {
                    return Err(SignalingError::Timeout {
                        request: name.into(),
                        timeout_ms: duration_ms(self.cfg.request_timeout),
                    })
                }
                Ok(None) | Ok(Some(Ok(Message::Close(_)))) => {
                    return Err(SignalingError::Connect { url, reason: "closed by server".into() })
                }
                Ok(Some(Err(e))) => return Err(SignalingError::Connect { url, reason: e.to_string() }),
                Ok(Some(Ok(Message::Text(t)))) => parse_message(t.as_bytes()),
                Ok(Some(Ok(Message::Binary(b)))) => parse_message(&b),
                Ok(Some(Ok(_))) => continue,
            };
            let Some(msg) = msg else { continue };
            if msg.get("transaction").and_then(Value::as_str) == Some(transaction.as_str()) {
                match msg.get("janus").and_then(Value::as_str) {
                    Some("success") => return Ok(msg),
                    Some("error") => {
                        return Err(self.map_error(name, None, &msg));
                    }
                    other => {
                        debug!("ignoring {other:?} for '{name}' while waiting for its answer");
                        continue;
                    }
                }
            }
            // Not ours: events for the session (after a claim) go their usual way.
            if let Flow::SessionLost(reason) = self.dispatch(msg) {
                return Err(SignalingError::SessionLost { reason });
            }
        }
    }

    fn current_url(&self) -> String {
        self.cfg.urls.get(self.url_index).cloned().unwrap_or_default()
    }

    async fn create_session(&mut self, ws: &mut BoxedTransport) -> Result<u64> {
        let mut body = Map::new();
        body.insert("janus".into(), json!("create"));
        let answer = self.exchange(ws, "create", body).await?;
        answer.get("data").and_then(|d| d.get("id")).and_then(Value::as_u64).ok_or_else(|| SignalingError::Protocol {
            request: "create".into(),
            what: "success without data.id".into(),
        })
    }

    fn map_error(&self, name: &str, handle_id: Option<u64>, msg: &Value) -> SignalingError {
        let error = msg.get("error");
        let code = error.and_then(|e| e.get("code")).and_then(Value::as_i64);
        let reason = error.and_then(|e| e.get("reason")).and_then(Value::as_str).unwrap_or("").to_owned();
        let request = name.to_owned();
        match code {
            Some(codes::UNAUTHORIZED) => SignalingError::Unauthorized { request },
            Some(codes::UNAUTHORIZED_PLUGIN) => SignalingError::UnauthorizedPlugin { request },
            Some(codes::SESSION_NOT_FOUND) => SignalingError::SessionNotFound { session_id: self.session_id, request },
            Some(codes::HANDLE_NOT_FOUND) => {
                SignalingError::HandleNotFound { handle_id: handle_id.unwrap_or(0), request }
            }
            Some(code) => SignalingError::Janus { request, code, reason },
            None => SignalingError::Protocol { request, what: "error without error.code".into() },
        }
    }

    /// The driver task: serve the connection, reconnect and reclaim when it drops, until closed or lost.
    async fn run(mut self, mut ws: BoxedTransport) {
        let lost_reason = loop {
            match self.run_connected(&mut ws).await {
                Flow::Continue => continue,
                Flow::Closed => break None,
                Flow::SessionLost(reason) => break Some(reason),
                Flow::Disconnected(reason) => {
                    warn!("Janus session {}: connection dropped: {reason}", self.session_id);
                    self.fail_pending(|name| SignalingError::Disconnected { request: name.into() });
                    let _ = timeout(Duration::from_millis(200), ws.close()).await;
                    match self.reconnect(reason).await {
                        Ok(new_ws) => ws = new_ws,
                        Err(Flow::SessionLost(reason)) => break Some(reason),
                        Err(_) => break None,
                    }
                }
            }
        };
        let _ = timeout(Duration::from_secs(1), ws.close()).await;
        match lost_reason {
            Some(reason) => {
                warn!("Janus session {} lost: {reason}", self.session_id);
                {
                    let mut lost = self.lost.write().unwrap_or_else(|e| e.into_inner());
                    *lost = Some(reason.clone());
                }
                self.fail_pending(|_| SignalingError::SessionLost { reason: reason.clone() });
                self.emit(ConnectionEvent::Lost { reason });
            }
            None => {
                info!("Janus session {} closed", self.session_id);
                self.fail_pending(|_| SignalingError::Closed);
            }
        }
        self.handles.clear();
        self.cmd_rx.close();
        while let Ok(cmd) = self.cmd_rx.try_recv() {
            let err = self.ended_error();
            match cmd {
                Command::Request { reply, .. } => {
                    let _ = reply.send(Err(err));
                }
                Command::Destroy { reply } => {
                    let _ = reply.send(Ok(()));
                }
                Command::Forget { .. } => {}
            }
        }
    }

    fn ended_error(&self) -> SignalingError {
        let lost = self.lost.read().unwrap_or_else(|e| e.into_inner());
        match lost.as_ref() {
            Some(reason) => SignalingError::SessionLost { reason: reason.clone() },
            None => SignalingError::Closed,
        }
    }

    fn fail_pending(&mut self, make: impl Fn(&str) -> SignalingError) {
        for (_, p) in self.pending.drain() {
            match p.kind {
                PendingKind::External(tx) => {
                    let _ = tx.send(Err(make(&p.name)));
                }
                PendingKind::Destroy(tx) => {
                    let _ = tx.send(Ok(()));
                }
                PendingKind::Keepalive => {}
            }
        }
    }

    async fn run_connected(&mut self, ws: &mut BoxedTransport) -> Flow {
        let period = self.cfg.keepalive_interval;
        let mut keepalive = interval_at(Instant::now() + period, period);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let sweep_period = (self.cfg.request_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut sweep = interval(sweep_period);
        sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let flow = tokio::select! {
                cmd = self.cmd_rx.recv() => match cmd {
                    None => {
                        // Every owner is gone: destroy the session, best effort.
                        let mut body = Map::new();
                        body.insert("janus".into(), json!("destroy"));
                        let text = self.stamp(body, &transaction_id(), None);
                        let _ = self.send_text(ws, text).await;
                        Flow::Closed
                    }
                    Some(cmd) => self.on_command(cmd, ws).await,
                },
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(t))) => match parse_message(t.as_bytes()) {
                        Some(v) => self.dispatch(v),
                        None => Flow::Continue,
                    },
                    Some(Ok(Message::Binary(b))) => match parse_message(&b) {
                        Some(v) => self.dispatch(v),
                        None => Flow::Continue,
                    },
                    Some(Ok(Message::Close(frame))) => Flow::Disconnected(format!("closed by server ({frame:?})")),
                    Some(Ok(_)) => Flow::Continue,
                    Some(Err(e)) => Flow::Disconnected(e.to_string()),
                    None => Flow::Disconnected("connection ended".into()),
                },
                _ = keepalive.tick() => {
                    let transaction = transaction_id();
                    let mut body = Map::new();
                    body.insert("janus".into(), json!("keepalive"));
                    let text = self.stamp(body, &transaction, None);
                    self.pending.insert(transaction, Pending {
                        name: "keepalive".into(),
                        handle_id: None,
                        wait_event: false,
                        deadline: Instant::now() + self.cfg.request_timeout,
                        attach: None,
                        kind: PendingKind::Keepalive,
                    });
                    trace!("Janus session {}: keepalive", self.session_id);
                    match self.send_text(ws, text).await {
                        Ok(()) => Flow::Continue,
                        Err(e) => Flow::Disconnected(e),
                    }
                },
                _ = sweep.tick() => self.expire_pending(),
            };
            match flow {
                Flow::Continue => {}
                other => return other,
            }
        }
    }

    async fn on_command(&mut self, cmd: Command, ws: &mut BoxedTransport) -> Flow {
        match cmd {
            Command::Forget { handle_id } => {
                self.handles.remove(&handle_id);
                Flow::Continue
            }
            Command::Destroy { reply } => {
                let transaction = transaction_id();
                let mut body = Map::new();
                body.insert("janus".into(), json!("destroy"));
                let text = self.stamp(body, &transaction, None);
                self.pending.insert(
                    transaction,
                    Pending {
                        name: "destroy".into(),
                        handle_id: None,
                        wait_event: false,
                        deadline: Instant::now() + self.cfg.request_timeout,
                        attach: None,
                        kind: PendingKind::Destroy(reply),
                    },
                );
                match self.send_text(ws, text).await {
                    Ok(()) => Flow::Continue,
                    // The session is being destroyed anyway: do not reconnect for it.
                    Err(_) => {
                        self.fail_pending(|_| SignalingError::Closed);
                        Flow::Closed
                    }
                }
            }
            Command::Request { name, body, handle_id, wait_event, attach, reply } => {
                let transaction = transaction_id();
                let text = self.stamp(body, &transaction, handle_id);
                debug!("Janus session {}: request '{name}' ({transaction})", self.session_id);
                self.pending.insert(
                    transaction,
                    Pending {
                        name,
                        handle_id,
                        wait_event,
                        deadline: Instant::now() + self.cfg.request_timeout,
                        attach,
                        kind: PendingKind::External(reply),
                    },
                );
                match self.send_text(ws, text).await {
                    Ok(()) => Flow::Continue,
                    Err(e) => Flow::Disconnected(e),
                }
            }
        }
    }

    fn expire_pending(&mut self) -> Flow {
        let now = Instant::now();
        let expired: Vec<String> =
            self.pending.iter().filter(|(_, p)| p.deadline <= now).map(|(t, _)| t.clone()).collect();
        let mut flow = Flow::Continue;
        for transaction in expired {
            let Some(p) = self.pending.remove(&transaction) else { continue };
            let timeout_ms = duration_ms(self.cfg.request_timeout);
            match p.kind {
                PendingKind::External(tx) => {
                    warn!("Janus request '{}' ({transaction}) timed out", p.name);
                    let _ = tx.send(Err(SignalingError::Timeout { request: p.name, timeout_ms }));
                }
                PendingKind::Keepalive => {
                    // An unanswered keepalive means a dead (half-open) connection.
                    flow = Flow::Disconnected("keepalive unanswered".into());
                }
                PendingKind::Destroy(tx) => {
                    let _ = tx.send(Err(SignalingError::Timeout { request: p.name, timeout_ms }));
                    return Flow::Closed;
                }
            }
        }
        flow
    }

    /// Handles one message from the server: answers pending requests, routes handle events.
    fn dispatch(&mut self, msg: Value) -> Flow {
        let kind = msg.get("janus").and_then(Value::as_str).unwrap_or("").to_owned();
        let transaction = msg.get("transaction").and_then(Value::as_str).map(str::to_owned);
        let pending = transaction.as_ref().and_then(|t| self.pending.get(t).map(|p| p.wait_event));
        match kind.as_str() {
            "ack" => match (transaction, pending) {
                (Some(t), Some(false)) => self.complete(&t, Ok(msg)),
                (_, Some(true)) => Flow::Continue,
                _ => {
                    trace!("ack for unknown transaction");
                    Flow::Continue
                }
            },
            "success" | "server_info" | "pong" => match (transaction, pending) {
                (Some(t), Some(_)) => self.complete(&t, Ok(msg)),
                _ => {
                    debug!("'{kind}' for unknown transaction skipped");
                    Flow::Continue
                }
            },
            "error" => match (transaction, pending) {
                (Some(t), Some(_)) => {
                    let (name, handle_id) = match self.pending.get(&t) {
                        Some(p) => (p.name.clone(), p.handle_id),
                        None => (String::new(), None),
                    };
                    let err = self.map_error(&name, handle_id, &msg);
                    self.complete(&t, Err(err))
                }
                _ => {
                    warn!("Janus error for unknown transaction: {}", msg.get("error").unwrap_or(&Value::Null));
                    Flow::Continue
                }
            },
            "event" => match (transaction, pending) {
                (Some(t), Some(true)) => self.complete(&t, Ok(msg)),
                _ => {
                    self.route(&kind, msg);
                    Flow::Continue
                }
            },
            "webrtcup" | "media" | "slowlink" | "hangup" | "detached" | "trickle" => {
                self.route(&kind, msg);
                Flow::Continue
            }
            "timeout" => {
                if msg.get("session_id").and_then(Value::as_u64) == Some(self.session_id) {
                    Flow::SessionLost("session timed out on the server".into())
                } else {
                    Flow::Continue
                }
            }
            _ => {
                debug!("unexpected Janus message '{kind}' skipped");
                Flow::Continue
            }
        }
    }

    fn complete(&mut self, transaction: &str, result: Result<Value>) -> Flow {
        let Some(p) = self.pending.remove(transaction) else { return Flow::Continue };
        if let (Ok(answer), Some(events)) = (&result, p.attach) {
            if let Some(id) = answer.get("data").and_then(|d| d.get("id")).and_then(Value::as_u64) {
                self.handles.insert(id, events);
            }
        }
        let session_gone = matches!(result, Err(SignalingError::SessionNotFound { .. }));
        match p.kind {
            PendingKind::External(tx) => {
                if let Err(SignalingError::Unauthorized { request }) = &result {
                    self.emit(ConnectionEvent::Unauthorized { request: request.clone() });
                }
                let _ = tx.send(result);
            }
            PendingKind::Keepalive => match &result {
                Err(SignalingError::Unauthorized { request }) => {
                    warn!("Janus keepalive refused: token expired or invalid");
                    self.emit(ConnectionEvent::Unauthorized { request: request.clone() });
                }
                Err(e) => warn!("Janus keepalive failed: {e}"),
                Ok(_) => {}
            },
            PendingKind::Destroy(tx) => {
                let _ = tx.send(result.map(|_| ()));
                return Flow::Closed;
            }
        }
        if session_gone {
            Flow::SessionLost("session not found on the server".into())
        } else {
            Flow::Continue
        }
    }

    fn route(&mut self, kind: &str, msg: Value) {
        let Some(sender) = msg.get("sender").and_then(Value::as_u64) else {
            debug!("'{kind}' without sender skipped");
            return;
        };
        let Some(tx) = self.handles.get(&sender) else {
            debug!("'{kind}' for unknown handle {sender} skipped");
            return;
        };
        let event = HandleEvent::from_message(kind, msg);
        let detached = matches!(event, HandleEvent::Janus(JanusEvent::Detached));
        match tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(ev)) => {
                error!("handle {sender}: event queue full, dropping {}", ev.name());
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.handles.remove(&sender);
            }
        }
        if detached {
            self.handles.remove(&sender);
        }
    }

    /// Waits `delay` while answering commands (requests fail at once: the connection is down).
    async fn idle(&mut self, delay: Duration) -> std::result::Result<(), Flow> {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return Ok(()),
                cmd = self.cmd_rx.recv() => match cmd {
                    None => return Err(Flow::Closed),
                    Some(Command::Forget { handle_id }) => { self.handles.remove(&handle_id); }
                    Some(Command::Destroy { reply }) => {
                        let _ = reply.send(Ok(()));
                        return Err(Flow::Closed);
                    }
                    Some(Command::Request { name, reply, .. }) => {
                        let _ = reply.send(Err(SignalingError::Disconnected { request: name }));
                    }
                },
            }
        }
    }

    /// Reconnects to the server holding the session and claims it, within the reclaim window.
    async fn reconnect(&mut self, mut reason: String) -> std::result::Result<BoxedTransport, Flow> {
        let deadline = Instant::now() + self.cfg.reclaim_window;
        let url = self.current_url();
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            let delay = backoff_delay(attempt, self.cfg.backoff_min, self.cfg.backoff_max);
            if Instant::now() + delay >= deadline {
                return Err(Flow::SessionLost(format!(
                    "not reclaimed within {} ms (last error: {reason})",
                    duration_ms(self.cfg.reclaim_window)
                )));
            }
            self.emit(ConnectionEvent::Reconnecting { attempt, reason: reason.clone() });
            self.idle(delay).await?;
            let mut ws = match timeout(self.cfg.connect_timeout, (self.connector)(url.clone())).await {
                Ok(Ok(ws)) => ws,
                Ok(Err(e)) => {
                    reason = e.to_string();
                    continue;
                }
                Err(_) => {
                    reason = format!("connect to {url} timed out");
                    continue;
                }
            };
            let mut body = Map::new();
            body.insert("janus".into(), json!("claim"));
            match self.exchange(&mut ws, "claim", body).await {
                Ok(_) => {
                    info!("Janus session {} reclaimed on {url}", self.session_id);
                    self.emit(ConnectionEvent::Reclaimed { url, session_id: self.session_id });
                    return Ok(ws);
                }
                Err(e @ SignalingError::SessionNotFound { .. }) | Err(e @ SignalingError::SessionLost { .. }) => {
                    return Err(Flow::SessionLost(e.to_string()));
                }
                Err(SignalingError::Unauthorized { request }) => {
                    warn!("Janus claim refused: token expired or invalid");
                    self.emit(ConnectionEvent::Unauthorized { request });
                    reason = "claim unauthorized (403)".into();
                }
                Err(e) => reason = e.to_string(),
            }
            let _ = timeout(Duration::from_millis(200), ws.close()).await;
        }
    }
}

/// Parses one server message; anything but a JSON object is logged and skipped.
pub(crate) fn parse_message(bytes: &[u8]) -> Option<Value> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) if v.is_object() => Some(v),
        Ok(_) => {
            warn!("Janus sent a non-object JSON message ({} bytes), skipped", bytes.len());
            None
        }
        Err(e) => {
            warn!("Janus sent malformed JSON ({} bytes: {e}), skipped", bytes.len());
            None
        }
    }
}

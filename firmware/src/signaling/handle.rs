//! Plugin handles of a Janus session: `message` (synchronous `success` with plugindata, or `ack` then
//! the `event` with the same transaction), `trickle`, `hangup`, `detach`, and the typed events Janus
//! sends for a handle (`HandleEvent`), plus the `Jsep` (SDP offer/answer) that rides along.

use log::debug;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::error::{Result, SignalingError};
use super::janus::{Command, JanusSession};

/// An SDP offer or answer as Janus carries it (`{"type": "offer", "sdp": "..."}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jsep {
    /// `offer` or `answer`.
    pub kind: String,
    pub sdp: String,
}

impl Jsep {
    pub fn offer(sdp: impl Into<String>) -> Self {
        Jsep { kind: "offer".into(), sdp: sdp.into() }
    }

    pub fn answer(sdp: impl Into<String>) -> Self {
        Jsep { kind: "answer".into(), sdp: sdp.into() }
    }

    pub fn is_offer(&self) -> bool {
        self.kind == "offer"
    }

    pub fn to_json(&self) -> Value {
        json!({ "type": self.kind, "sdp": self.sdp })
    }

    /// Reads a `jsep` object; `None` when absent or malformed.
    pub fn from_json(value: &Value) -> Option<Jsep> {
        let kind = value.get("type")?.as_str()?;
        let sdp = value.get("sdp")?.as_str()?;
        Some(Jsep { kind: kind.to_owned(), sdp: sdp.to_owned() })
    }
}

/// What Janus itself (not the plugin) says about a handle: its PeerConnection, and the handle's end. The same for
/// every plugin, so the plugins' typed events carry it as it is.
#[derive(Clone, Debug, PartialEq)]
pub enum JanusEvent {
    /// The PeerConnection is up (ICE and DTLS done).
    WebrtcUp,
    /// Janus started or stopped receiving a medium (`type` audio/video, `mid`).
    Media { mid: Option<String>, kind: String, receiving: bool },
    /// Janus sees losses (`uplink` true: on what it receives from us).
    SlowLink { mid: Option<String>, media: String, uplink: bool, lost: u64 },
    /// The PeerConnection is closed (`reason`, e.g. "DTLS alert" or "Janus API"); not a SIP dialog's end.
    Hangup { reason: String },
    /// The handle is gone on the server; the stream ends after this.
    Detached,
}

impl JanusEvent {
    /// A short name for logs (never the content).
    pub fn name(&self) -> &'static str {
        match self {
            JanusEvent::WebrtcUp => "webrtcup",
            JanusEvent::Media { .. } => "media",
            JanusEvent::SlowLink { .. } => "slowlink",
            JanusEvent::Hangup { .. } => "hangup",
            JanusEvent::Detached => "detached",
        }
    }
}

/// What Janus tells about one handle.
#[derive(Clone, Debug, PartialEq)]
pub enum HandleEvent {
    /// A plugin event not answering one of our requests (`plugindata.data`, with an optional JSEP).
    Plugin { data: Value, jsep: Option<Jsep> },
    /// Janus's own event about the handle.
    Janus(JanusEvent),
    /// Anything else addressed to the handle (e.g. server trickle), kept raw.
    Other(Value),
}

impl HandleEvent {
    /// Builds the event from a Janus message of kind `kind` (never fails: unknown shapes become `Other`).
    pub fn from_message(kind: &str, msg: Value) -> HandleEvent {
        let mid = msg.get("mid").and_then(Value::as_str).map(str::to_owned);
        let janus = match kind {
            "event" => {
                return match msg.get("plugindata").and_then(|p| p.get("data")) {
                    Some(data) => {
                        HandleEvent::Plugin { data: data.clone(), jsep: msg.get("jsep").and_then(Jsep::from_json) }
                    }
                    None => HandleEvent::Other(msg),
                }
            }
            "webrtcup" => JanusEvent::WebrtcUp,
            "media" => match (msg.get("type").and_then(Value::as_str), msg.get("receiving").and_then(Value::as_bool)) {
                (Some(kind), Some(receiving)) => JanusEvent::Media { mid, kind: kind.to_owned(), receiving },
                _ => return HandleEvent::Other(msg),
            },
            "slowlink" => JanusEvent::SlowLink {
                media: msg.get("media").and_then(Value::as_str).unwrap_or("").to_owned(),
                uplink: msg.get("uplink").and_then(Value::as_bool).unwrap_or(false),
                lost: msg.get("lost").and_then(Value::as_u64).unwrap_or(0),
                mid,
            },
            "hangup" => {
                JanusEvent::Hangup { reason: msg.get("reason").and_then(Value::as_str).unwrap_or("").to_owned() }
            }
            "detached" => JanusEvent::Detached,
            _ => return HandleEvent::Other(msg),
        };
        HandleEvent::Janus(janus)
    }

    /// A short name for logs (never the content).
    pub fn name(&self) -> &'static str {
        match self {
            HandleEvent::Plugin { .. } => "plugin event",
            HandleEvent::Janus(e) => e.name(),
            HandleEvent::Other(_) => "other",
        }
    }
}

/// The plugin's answer to a `message`.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginReply {
    /// `plugindata.data`.
    pub data: Value,
    pub jsep: Option<Jsep>,
    /// True for a synchronous `success`, false for the asynchronous `event` after the `ack`.
    pub synchronous: bool,
}

/// A handle attached to a plugin. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PluginHandle {
    id: u64,
    plugin: String,
    session: JanusSession,
}

impl PluginHandle {
    pub(crate) fn new(id: u64, plugin: String, session: JanusSession) -> Self {
        PluginHandle { id, plugin, session }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    pub fn session(&self) -> &JanusSession {
        &self.session
    }

    /// Sends a plugin message (`body` is the plugin request, e.g. `{"request": "call", ...}`) with an
    /// optional JSEP; returns the plugin's answer. A plugin-level error (`error_code` in the data)
    /// becomes `SignalingError::Plugin`.
    pub async fn message(&self, body: Value, jsep: Option<Jsep>) -> Result<PluginReply> {
        let name = match body.get("request").and_then(Value::as_str) {
            Some(r) => format!("message:{r}"),
            None => "message".to_owned(),
        };
        let mut request = Map::new();
        request.insert("janus".into(), json!("message"));
        request.insert("body".into(), body);
        if let Some(jsep) = &jsep {
            request.insert("jsep".into(), jsep.to_json());
        }
        let answer = self.session.request(&name, request, Some(self.id), true, None).await?;
        let synchronous = match answer.get("janus").and_then(Value::as_str) {
            Some("success") => true,
            Some("event") => false,
            other => return Err(SignalingError::Protocol { request: name, what: format!("answer of kind {other:?}") }),
        };
        let data = answer.get("plugindata").and_then(|p| p.get("data")).cloned().ok_or_else(|| {
            SignalingError::Protocol { request: name.clone(), what: "answer without plugindata.data".into() }
        })?;
        if let Some(code) = data.get("error_code").and_then(Value::as_i64) {
            let reason = data.get("error").and_then(Value::as_str).unwrap_or("").to_owned();
            return Err(SignalingError::Plugin { plugin: self.plugin.clone(), request: name, code, reason });
        }
        let jsep = answer.get("jsep").and_then(Jsep::from_json);
        debug!("handle {}: '{name}' answered ({})", self.id, if synchronous { "sync" } else { "async" });
        Ok(PluginReply { data, jsep, synchronous })
    }

    /// Sends one trickle candidate (`{"candidate": ..., "sdpMid": ..., "sdpMLineIndex": ...}`).
    pub async fn trickle(&self, candidate: Value) -> Result<()> {
        let mut request = Map::new();
        request.insert("janus".into(), json!("trickle"));
        request.insert("candidate".into(), candidate);
        self.session.request("trickle", request, Some(self.id), false, None).await?;
        Ok(())
    }

    /// Tells Janus that no more candidates will come.
    pub async fn trickle_complete(&self) -> Result<()> {
        self.trickle(json!({ "completed": true })).await
    }

    /// Closes the handle's PeerConnection (the handle stays attached).
    pub async fn hangup(&self) -> Result<()> {
        let mut request = Map::new();
        request.insert("janus".into(), json!("hangup"));
        self.session.request("hangup", request, Some(self.id), false, None).await?;
        Ok(())
    }

    /// Detaches the handle; its event stream ends.
    pub async fn detach(&self) -> Result<()> {
        let mut request = Map::new();
        request.insert("janus".into(), json!("detach"));
        let result = self.session.request("detach", request, Some(self.id), false, None).await;
        // Stop routing to this handle whatever the answer (best effort: a closed session is fine).
        let _ = self.session.send_command(Command::Forget { handle_id: self.id }).await;
        result.map(|_| ())
    }
}

/// A plugin's typed event, made from what its handle receives.
pub trait FromHandleEvent {
    fn from_handle_event(event: HandleEvent) -> Self;
}

/// The typed event stream of a plugin handle (`SipEvents`, `VideoRoomEvents`). Ends when the handle is detached
/// or the session ends.
#[derive(Debug)]
pub struct PluginEvents<E> {
    rx: mpsc::Receiver<HandleEvent>,
    kind: std::marker::PhantomData<fn() -> E>,
}

impl<E: FromHandleEvent> PluginEvents<E> {
    /// Wraps a handle's raw event queue.
    pub fn new(rx: mpsc::Receiver<HandleEvent>) -> Self {
        PluginEvents { rx, kind: std::marker::PhantomData }
    }

    /// The next event; `None` when the stream has ended.
    pub async fn recv(&mut self) -> Option<E> {
        self.rx.recv().await.map(E::from_handle_event)
    }

    /// The next event if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<E> {
        self.rx.try_recv().ok().map(E::from_handle_event)
    }

    /// The raw handle event queue.
    pub fn into_inner(self) -> mpsc::Receiver<HandleEvent> {
        self.rx
    }
}

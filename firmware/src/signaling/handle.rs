//! Plugin handles of a Janus session: `attach` (on [`JanusSession`], here because it makes a handle), `message`
//! (synchronous `success` with plugindata, or `ack` then the `event` with the same transaction), `trickle`,
//! `hangup`, `detach`. The events a handle receives are in [`super::event`]. A handle depends
//! on its session (`janus`), never the other way round.

use log::debug;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::error::{Result, SignalingError};
use super::event::{HandleEvent, Jsep};
use super::janus::{Command, JanusSession};

impl JanusSession {
    /// Attaches a plugin (e.g. `janus.plugin.sip`); returns the handle and its bounded event stream.
    pub async fn attach(&self, plugin: &str) -> Result<(PluginHandle, mpsc::Receiver<HandleEvent>)> {
        let (tx, rx) = mpsc::channel(self.shared.event_buffer);
        let mut body = Map::new();
        body.insert("janus".into(), json!("attach"));
        body.insert("plugin".into(), json!(plugin));
        let answer = self.request("attach", body, None, false, Some(tx)).await?;
        let id = answer.get("data").and_then(|d| d.get("id")).and_then(Value::as_u64).ok_or_else(|| {
            SignalingError::Protocol { request: "attach".into(), what: "success without data.id".into() }
        })?;
        debug!("Janus session {}: attached {plugin} as handle {id}", self.shared.session_id);
        Ok((PluginHandle::new(id, plugin.to_owned(), self.clone()), rx))
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

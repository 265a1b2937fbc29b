//! The events Janus sends about one plugin handle ([`HandleEvent`]: the plugin's own, or Janus's
//! [`JanusEvent`] about the handle's PeerConnection) and the [`Jsep`] (SDP offer/answer) that rides along.
//! A leaf of `signaling`: the session driver (`janus`) routes these to the handles (`handle`) without either
//! knowing the other's internals.

use serde_json::{json, Value};

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

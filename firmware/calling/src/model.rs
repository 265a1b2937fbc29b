//! The object model's values: ids, call and participant states, end reasons, video stream kinds. Plain data,
//! shared by the state machines (`core`), the events and the asynchronous API handles.

use crate::identifier::Identifier;
use std::fmt;

/// A call, unique within one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// A remote participant, unique within one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(pub u64);

/// A renderer of a remote video stream, unique within one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RendererId(pub u64);

/// A remote video stream, unique within one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call-{}", self.0)
    }
}

/// The state of a call, as the local user sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallState {
    None,
    /// An incoming call that has not been accepted or rejected yet.
    Incoming,
    Connecting,
    Ringing,
    EarlyMedia,
    Connected,
    LocalHold,
    RemoteHold,
    Disconnecting,
    Disconnected,
}

impl CallState {
    pub fn is_active(self) -> bool {
        !matches!(self, CallState::Disconnected | CallState::None)
    }

    /// Established: media flows (or is held).
    pub fn is_established(self) -> bool {
        matches!(self, CallState::Connected | CallState::LocalHold | CallState::RemoteHold)
    }
}

/// The state of a remote participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParticipantState {
    Idle,
    Connecting,
    Ringing,
    EarlyMedia,
    Connected,
    OnHold,
    InLobby,
    Disconnected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallDirection {
    Outgoing,
    Incoming,
}

/// Why a call or a participant ended. `code` is a SIP status code where SIP gave one (486 busy, 603 declined,
/// 487 cancelled, 480 unavailable, 408 no answer, 403 forbidden, ...), 0 for a normal end; `subcode`
/// tells the cases of one code apart (see `docs/calling.md`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallEndReason {
    pub code: u16,
    pub subcode: u16,
    pub message: String,
}

impl CallEndReason {
    pub fn new(code: u16, subcode: u16, message: impl Into<String>) -> Self {
        CallEndReason { code, subcode, message: message.into() }
    }

    /// The local user hung up.
    pub fn local_hang_up() -> Self {
        Self::new(0, subcode::LOCAL_HANG_UP, "ended by the local user")
    }

    /// The remote party hung up an established call.
    pub fn remote_hang_up() -> Self {
        Self::new(0, subcode::REMOTE_HANG_UP, "ended by the remote party")
    }

    /// A SIP final response or hangup code from the far side.
    pub fn sip(code: u16, reason: &str) -> Self {
        let message = if reason.is_empty() { sip_reason_phrase(code).to_string() } else { reason.to_string() };
        Self::new(code, 0, message)
    }
}

/// Subcodes of `CallEndReason`.
pub mod subcode {
    pub const LOCAL_HANG_UP: u16 = 0;
    pub const REMOTE_HANG_UP: u16 = 1;
    /// 408: nobody answered before the ring timeout.
    pub const NO_ANSWER_TIMEOUT: u16 = 1;
    /// 500: the media connection failed (ICE or DTLS).
    pub const MEDIA_FAILED: u16 = 1;
    /// 500: the signaling connection was lost and the session could not be reclaimed.
    pub const SIGNALING_LOST: u16 = 2;
    /// 500: the call could not be set up locally (media or signaling error before the call left the device).
    pub const SETUP_FAILED: u16 = 3;
    /// 486: rejected locally because another call is in progress.
    pub const BUSY_LOCALLY: u16 = 1;
    /// 0: a group call's participant was removed by the call's owner (or this client was).
    pub const REMOVED: u16 = 4;
    /// 403: this device may not start a group call (its token has no room grant: it cannot create a room).
    pub const NO_ROOM_GRANT: u16 = 5;
}

/// The standard reason phrase of the SIP status codes a call can end with.
pub fn sip_reason_phrase(code: u16) -> &'static str {
    match code {
        0 => "call ended",
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "call failed",
    }
}

/// The media type of an RTP stream: what a session sends or receives, whatever the call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
}

/// What a remote video stream of a participant carries: its camera, or a shared screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoStreamKind {
    /// A camera.
    Video,
    /// A shared screen.
    ScreenSharing,
}

/// A remote participant as the model holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantInfo {
    pub id: ParticipantId,
    pub identifier: Identifier,
    pub display_name: Option<String>,
    pub state: ParticipantState,
    pub call_end_reason: Option<CallEndReason>,
    pub is_muted: bool,
    pub is_speaking: bool,
    pub streams: Vec<StreamInfo>,
}

/// A remote video stream as the model holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamInfo {
    pub id: StreamId,
    pub kind: VideoStreamKind,
    pub is_available: bool,
}

/// How a video of one aspect ratio fills a tile of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ScalingMode {
    /// Fill the tile, distorting the picture.
    Stretch,
    /// Fill the tile keeping the aspect ratio; the overflow is cut, centred.
    Crop,
    /// Show the whole picture keeping the aspect ratio; black bars fill the rest, centred.
    #[default]
    Fit,
}

/// A renderer of a remote video stream onto a tile of the display, as the model holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RendererInfo {
    pub id: RendererId,
    pub call: CallId,
    pub participant: ParticipantId,
    pub stream: StreamId,
    pub scaling_mode: ScalingMode,
    pub is_paused: bool,
    /// Not paused, and the stream is available.
    pub is_rendering: bool,
}

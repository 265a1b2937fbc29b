//! The calling API's object handles: `CallClient`, `Call`, `IncomingCall`, `RemoteParticipant` and
//! `RemoteVideoStream`. Each is a cheap handle onto the client's shared state: reads come from the calling core
//! (`peek`), actions go into it as inputs (`with_core`, which wakes the engine), and the engine task carries out
//! the commands they produce.

use super::events::{EventStream, Filter};
use super::render::{Screen, VideoRenderer};
use super::shared::{GuestAccess, Shared};
use super::ClientError;
use crate::calling::{
    CallDirection, CallEndReason, CallId, CallState, ConnectionState, Event, Identifier, ParticipantId,
    ParticipantState, RendererId, ScalingMode, StreamId, VideoStreamKind,
};
use crate::display::Framebuffer;
use crate::frame::VideoFrame;
use crate::media::MediaStats;
use std::sync::Arc;
use std::time::Duration;

/// The calling client: one identity, one connection to the servers, its calls. Cheap to clone; when the last
/// clone is dropped without `shutdown()`, the client shuts down on its own (hangs up, un-REGISTERs).
#[derive(Clone)]
pub struct CallClient {
    pub(crate) shared: Arc<Shared>,
    _lifetime: Arc<ClientLifetime>,
}

/// Held by every `CallClient` clone: the last one to go asks the engine to shut down.
struct ClientLifetime {
    shared: Arc<Shared>,
}

impl Drop for ClientLifetime {
    fn drop(&mut self) {
        self.shared.request_shutdown();
    }
}

impl CallClient {
    /// The handle of a client whose engine runs (`engine::start`).
    pub(super) fn with_engine(shared: Arc<Shared>) -> CallClient {
        let lifetime = Arc::new(ClientLifetime { shared: shared.clone() });
        CallClient { shared, _lifetime: lifetime }
    }

    /// The identity this client is registered as.
    pub fn identity(&self) -> &Identifier {
        &self.shared.local_user
    }

    /// The engine's heartbeat: it stops when the engine's loop is stuck or its task has ended.
    pub fn heartbeat(&self) -> crate::client::Heartbeat {
        self.shared.heartbeat.clone()
    }

    pub fn connection_state(&self) -> ConnectionState {
        self.shared.peek(|core| core.connection_state())
    }

    /// The device manager: cameras, microphones and speakers, their permissions and defaults, hot-plug
    /// events, and the local preview (`PreviewRenderer::start`). Calls use its devices.
    pub fn device_manager(&self) -> crate::devices::DeviceManager {
        self.shared.config.media.devices.clone()
    }

    /// Places a call. The call starts in `Connecting`. One target is a 1:1 call (SIP through Janus); several are
    /// a group call: a private room on Janus's videoroom plugin, each target invited into it (its participant
    /// rings, then joins).
    pub fn call(&self, targets: &[Identifier]) -> Result<Call, ClientError> {
        // The same target twice is one target (a 1:1 call), not a room with one invitee.
        let mut unique: Vec<Identifier> = Vec::with_capacity(targets.len());
        for t in targets {
            if !unique.contains(t) {
                unique.push(t.clone());
            }
        }
        let targets = &unique[..];
        let id = self.shared.with_core(|core, now| core.start_call(targets, now))?;
        Ok(Call { id, shared: self.shared.clone() })
    }

    /// The handle of a call of this client by id (`None` if there is no such call).
    pub fn call_by_id(&self, id: CallId) -> Option<Call> {
        self.shared.peek(|core| core.call(id).map(|_| ())).map(|()| Call { id, shared: self.shared.clone() })
    }

    /// Calls that are not over.
    pub fn calls(&self) -> Vec<Call> {
        let ids: Vec<CallId> = self.shared.peek(|core| core.active_calls().map(|c| c.id).collect());
        ids.into_iter().map(|id| Call { id, shared: self.shared.clone() }).collect()
    }

    /// Every event of this client (`on`); drop the stream or call `off()` to unsubscribe.
    pub fn events(&self) -> EventStream {
        self.shared.bus.subscribe(Filter::All)
    }

    /// Waits for the next incoming call (accept or reject it through the handle).
    pub async fn next_incoming_call(&self, events: &mut EventStream) -> Option<IncomingCall> {
        while let Some(e) = events.next_event().await {
            if let Event::IncomingCall { call, from, display_name } = e {
                let handle = Call { id: call, shared: self.shared.clone() };
                if handle.state() == CallState::Incoming {
                    return Some(IncomingCall { call: handle, from, display_name });
                }
            }
        }
        None
    }

    /// Waits until the connection reaches `state` (or `timeout`).
    pub async fn wait_for_connection(&self, state: ConnectionState, timeout: Duration) -> Result<(), ClientError> {
        let mut events = self.events();
        let wait = async {
            loop {
                if self.connection_state() == state {
                    return;
                }
                if events.next().await.is_none() {
                    return;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| ClientError::Timeout("connection state"))?;
        if self.connection_state() == state {
            Ok(())
        } else {
            Err(ClientError::Closed)
        }
    }

    /// Hangs up every call, unregisters from the registrar and closes the connection.
    pub async fn shutdown(&self) {
        self.shared.shutdown().await;
    }
}

/// A call.
#[derive(Clone)]
pub struct Call {
    pub(crate) id: CallId,
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call").field("id", &self.id).field("state", &self.state()).finish()
    }
}

impl Call {
    pub fn id(&self) -> CallId {
        self.id
    }

    fn read<R>(&self, default: R, f: impl FnOnce(&crate::calling::CallInfo) -> R) -> R {
        self.shared.peek(|core| core.call(self.id).map(f)).unwrap_or(default)
    }

    pub fn state(&self) -> CallState {
        self.read(CallState::Disconnected, |c| c.state)
    }

    pub fn direction(&self) -> Option<CallDirection> {
        self.read(None, |c| Some(c.direction))
    }

    pub fn end_reason(&self) -> Option<CallEndReason> {
        self.read(None, |c| c.end_reason.clone())
    }

    pub fn is_muted(&self) -> bool {
        self.read(false, |c| c.is_muted)
    }

    pub fn is_video_on(&self) -> bool {
        self.read(false, |c| c.is_video_on)
    }

    pub fn remote_participants(&self) -> Vec<RemoteParticipant> {
        self.read(Vec::new(), |c| c.participants.clone())
            .into_iter()
            .map(|id| RemoteParticipant { call: self.id, id, shared: self.shared.clone() })
            .collect()
    }

    /// Events of this call, its participants and their streams.
    pub fn events(&self) -> EventStream {
        self.shared.bus.subscribe(Filter::Call(self.id))
    }

    pub async fn mute(&self) -> Result<(), ClientError> {
        self.shared.with_core(|core, _| core.set_muted(self.id, true))?;
        Ok(())
    }

    pub async fn unmute(&self) -> Result<(), ClientError> {
        self.shared.with_core(|core, _| core.set_muted(self.id, false))?;
        Ok(())
    }

    /// Starts sending video (the camera of the device manager; the test pattern on simulated devices).
    pub async fn start_video(&self) -> Result<(), ClientError> {
        self.shared.with_core(|core, _| core.set_video(self.id, true))?;
        Ok(())
    }

    pub async fn stop_video(&self) -> Result<(), ClientError> {
        self.shared.with_core(|core, _| core.set_video(self.id, false))?;
        Ok(())
    }

    /// Ends the call and waits until it is `Disconnected`.
    /// Answers this call while it rings (`Incoming`).
    pub async fn accept(&self) -> Result<(), ClientError> {
        Ok(self.shared.with_core(|core, _| core.accept(self.id))?)
    }

    /// While this incoming call rings, receives the caller's media as early media (SIP 183): the caller's video
    /// becomes a stream to render before anyone answers; our microphone stays muted and our camera off until
    /// `accept`. An indoor monitor shows the door this way while it rings.
    pub async fn answer_early(&self) -> Result<(), ClientError> {
        Ok(self.shared.with_core(|core, _| core.answer_early(self.id))?)
    }

    /// Declines this call while it rings, with a SIP code (603 Decline, 486 Busy Here, ...).
    pub async fn reject(&self, code: u16) -> Result<(), ClientError> {
        Ok(self.shared.with_core(|core, _| core.reject(self.id, code))?)
    }

    pub async fn hang_up(&self) -> Result<(), ClientError> {
        let mut events = self.events();
        self.shared.with_core(|core, now| core.hang_up(self.id, now))?;
        let limit = self.shared.peek(|core| core.config().hang_up_timeout) + Duration::from_secs(2);
        self.wait_state(&mut events, |s| s == CallState::Disconnected, limit).await
    }

    /// Puts the far end on hold and waits until the hold took effect (`LocalHold`).
    pub async fn hold(&self) -> Result<(), ClientError> {
        let mut events = self.events();
        self.shared.with_core(|core, _| core.hold(self.id))?;
        self.wait_state(&mut events, |s| s == CallState::LocalHold, self.shared.config.request_timeout).await
    }

    pub async fn resume(&self) -> Result<(), ClientError> {
        let mut events = self.events();
        self.shared.with_core(|core, _| core.resume(self.id))?;
        self.wait_state(&mut events, |s| s == CallState::Connected, self.shared.config.request_timeout).await
    }

    pub async fn send_dtmf(&self, digit: char) -> Result<(), ClientError> {
        self.shared.with_core(|core, _| core.send_dtmf(self.id, digit))?;
        Ok(())
    }

    /// Waits until the call's state satisfies `done` (or the call ends, or `timeout`).
    pub async fn wait_state(
        &self,
        events: &mut EventStream,
        done: impl Fn(CallState) -> bool,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let wait = async {
            loop {
                let s = self.state();
                if done(s) {
                    return Ok(());
                }
                if s == CallState::Disconnected {
                    return Err(ClientError::CallEnded(self.end_reason()));
                }
                if events.next().await.is_none() {
                    return Err(ClientError::Closed);
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| ClientError::Timeout("call state"))?
    }

    /// Plays `tone` to the far end, mixed into the call's outgoing audio (muted or not). Fails when the call has
    /// no media (not answered yet, or ended).
    pub fn play_tone(&self, tone: crate::media::CallTone) -> Result<(), ClientError> {
        if self.shared.play_tone(self.id, tone) {
            Ok(())
        } else {
            Err(ClientError::Media(crate::media::MediaError::Closed))
        }
    }

    /// Figures of this call's media (packets, frames, levels): live while it has media, then its last figures.
    /// In a group call: what we send, and the mixed voices of the room.
    pub fn media_stats(&self) -> Option<MediaStats> {
        self.shared.media_stats(self.id)
    }

    /// The last remote frames whose test-pattern counter was read, with when each was decoded (see
    /// [`crate::media::MediaSession::decoded_counters`]); empty without media.
    pub fn decoded_counters(&self) -> Vec<crate::media::DecodedCounter> {
        self.shared.media(self.id).map(|m| m.decoded_counters()).unwrap_or_default()
    }

    /// Starts `max_audio_gap_ms` of [`Call::media_stats`] over (the start of a measured stretch).
    pub fn reset_max_audio_gap(&self) {
        if let Some(media) = self.shared.media(self.id) {
            media.reset_max_audio_gap();
        }
    }

    /// What each stream received from the room delivered (a group call; empty otherwise).
    pub fn received_streams(&self) -> Vec<crate::media::RemoteStreamStats> {
        self.shared.group_subscriber(self.id).map(|m| m.remote_streams()).unwrap_or_default()
    }

    /// Whether this is a group call (held in a room).
    pub fn is_group_call(&self) -> bool {
        self.shared.peek(|core| core.is_group_call(self.id))
    }

    /// Invites `target` into this call; the participant is returned at once, in `Connecting`. A 1:1 call becomes
    /// a group call: both parties move into a room, and the call goes on for both.
    pub fn add_participant(&self, target: &Identifier) -> Result<RemoteParticipant, ClientError> {
        let id = self.shared.with_core(|core, _| core.add_participant(self.id, target.clone()))?;
        Ok(RemoteParticipant { call: self.id, id, shared: self.shared.clone() })
    }

    /// Removes a participant from this group call (only its owner may): a member is taken out of the room, an
    /// invitation not answered yet is withdrawn. The removed side's call ends with subcode `REMOVED`.
    pub fn remove_participant(&self, participant: &RemoteParticipant) -> Result<(), ClientError> {
        Ok(self.shared.with_core(|core, _| core.remove_participant(self.id, participant.id))?)
    }

    /// How a guest (a browser on janus.js, say) joins this group call's room: what an invitation carries. Only
    /// while this client is in the room.
    pub fn guest_access(&self) -> Option<GuestAccess> {
        self.shared.guest_access(self.id)
    }
}

/// A call ringing on this client.
pub struct IncomingCall {
    call: Call,
    from: Identifier,
    display_name: Option<String>,
}

impl IncomingCall {
    pub fn from(&self) -> &Identifier {
        &self.from
    }

    pub fn display_name(&self) -> Option<&str> {
        self.display_name.as_deref()
    }

    pub fn call(&self) -> &Call {
        &self.call
    }

    /// Early media while it rings (see `Call::answer_early`); answer or decline later.
    pub async fn answer_early(&self) -> Result<(), ClientError> {
        self.call.answer_early().await
    }

    /// Answers; the call goes Connecting, then Connected.
    pub async fn accept(self) -> Result<Call, ClientError> {
        self.call.accept().await?;
        Ok(self.call)
    }

    /// Declines with a SIP code (603 Decline, 486 Busy Here, ...).
    pub async fn reject(self, code: u16) -> Result<(), ClientError> {
        self.call.reject(code).await
    }
}

/// A remote participant of a call.
#[derive(Clone)]
pub struct RemoteParticipant {
    call: CallId,
    id: ParticipantId,
    shared: Arc<Shared>,
}

impl RemoteParticipant {
    pub fn id(&self) -> ParticipantId {
        self.id
    }

    fn read<R>(&self, default: R, f: impl FnOnce(&crate::calling::ParticipantInfo) -> R) -> R {
        self.shared.peek(|core| core.participant(self.id).map(f)).unwrap_or(default)
    }

    pub fn identifier(&self) -> Option<Identifier> {
        self.read(None, |p| Some(p.identifier.clone()))
    }

    pub fn display_name(&self) -> Option<String> {
        self.read(None, |p| p.display_name.clone())
    }

    pub fn state(&self) -> ParticipantState {
        self.read(ParticipantState::Disconnected, |p| p.state)
    }

    pub fn call_end_reason(&self) -> Option<CallEndReason> {
        self.read(None, |p| p.call_end_reason.clone())
    }

    pub fn is_muted(&self) -> bool {
        self.read(false, |p| p.is_muted)
    }

    pub fn is_speaking(&self) -> bool {
        self.read(false, |p| p.is_speaking)
    }

    fn streams(&self, kind: VideoStreamKind) -> Vec<RemoteVideoStream> {
        self.read(Vec::new(), |p| p.streams.iter().filter(|s| s.kind == kind).map(|s| s.id).collect())
            .into_iter()
            .map(|id| RemoteVideoStream { call: self.call, id, shared: self.shared.clone() })
            .collect()
    }

    pub fn video_streams(&self) -> Vec<RemoteVideoStream> {
        self.streams(VideoStreamKind::Video)
    }

    pub fn screen_sharing_streams(&self) -> Vec<RemoteVideoStream> {
        self.streams(VideoStreamKind::ScreenSharing)
    }

    /// Events of this participant and its streams.
    pub fn events(&self) -> EventStream {
        self.shared.bus.subscribe(Filter::Participant(self.call, self.id))
    }
}

/// A video stream of a remote participant.
#[derive(Clone)]
pub struct RemoteVideoStream {
    call: CallId,
    id: StreamId,
    shared: Arc<Shared>,
}

impl RemoteVideoStream {
    pub fn id(&self) -> StreamId {
        self.id
    }

    pub fn kind(&self) -> Option<VideoStreamKind> {
        self.shared.peek(|core| core.stream(self.id).map(|(_, s)| s.kind))
    }

    pub fn is_available(&self) -> bool {
        self.shared.peek(|core| core.stream(self.id).map(|(_, s)| s.is_available)).unwrap_or(false)
    }

    /// The latest decoded frame of this stream.
    pub fn latest_frame(&self) -> Option<VideoFrame> {
        self.shared.remote_video(self.call, self.id).1
    }

    /// Renders this stream into a new tile of `screen`.
    pub fn render(&self, screen: &Screen, mode: ScalingMode) -> Result<VideoRenderer, ClientError> {
        VideoRenderer::start(screen, self.id, mode)
    }

    /// The renderers drawing this stream.
    pub fn active_renderers(&self) -> Vec<RendererId> {
        self.shared.peek(|core| core.stream_renderers(self.id))
    }
}

impl Screen {
    /// A screen on `framebuffer` showing `client`'s calls, redrawn `fps` times a second (at most) while it exists.
    /// Needs a tokio runtime.
    pub fn new(client: &CallClient, framebuffer: Box<dyn Framebuffer + Send>, fps: u32) -> Screen {
        Screen::on(client.shared.clone(), framebuffer, fps)
    }
}

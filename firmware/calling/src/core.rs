//! `CallingCore`: the call and participant state machines of a calling client, sans-IO. The API, the signaling
//! client and the media engine feed it inputs (`start_call`, `on_signal`, `on_media`, `handle_timeout`, ...), with
//! the current `Instant` where time matters; it answers with `Command`s for the engine to carry out and `Event`s for
//! subscribers (`poll_command`, `poll_event`). It never blocks, sleeps or touches a socket, so every transition is
//! unit-tested below.

use crate::events::{ConnectionState, Event};
use crate::identifier::Identifier;
use crate::model::{
    subcode, CallDirection, CallEndReason, CallId, CallState, ParticipantId, ParticipantInfo, ParticipantState,
    RendererId, RendererInfo, ScalingMode, StreamId, StreamInfo, VideoStreamKind,
};
use crate::redact::Loggable;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

mod group;
pub use group::{
    GroupSignal, RoomMember, RoomStream, RoomStreamKind, MAX_INVITEES, MAX_MEMBERS, MAX_SCREEN_SUBSCRIPTIONS,
    MAX_VIDEO_SUBSCRIPTIONS,
};

/// Tunables of the state machines.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// An outgoing call that is not answered within this time ends with 408 (no answer).
    pub ring_timeout: Duration,
    /// A hang-up that the network does not confirm within this time ends the call anyway.
    pub hang_up_timeout: Duration,
    /// The far end is speaking when its audio level rises above this (dBFS)...
    pub speaking_on_dbfs: f32,
    /// ...and stops when it stays below this for `speaking_hangover`.
    pub speaking_off_dbfs: f32,
    pub speaking_hangover: Duration,
    /// Ended calls kept readable through their handles (the oldest are forgotten first).
    pub ended_calls_kept: usize,
    /// While an outgoing call is in early media (the far end's 183: ringback, or a resident's monitor watching
    /// the door before answering), our microphone is muted until the far end answers; our video goes on.
    pub mute_microphone_in_early_media: bool,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            ring_timeout: Duration::from_secs(45),
            hang_up_timeout: Duration::from_secs(5),
            speaking_on_dbfs: -38.0,
            speaking_off_dbfs: -48.0,
            speaking_hangover: Duration::from_millis(600),
            ended_calls_kept: 16,
            mute_microphone_in_early_media: true,
        }
    }
}

/// Why an API request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallingError {
    #[error("there is no {0}")]
    NoSuchCall(CallId),
    #[error("cannot {action} {call} while it is {state:?}")]
    InvalidState { call: CallId, state: CallState, action: &'static str },
    #[error("another call is in progress")]
    Busy,
    #[error("'{0}' is not a DTMF digit (0-9, *, #, A-D)")]
    InvalidDtmf(char),
    #[error("a call needs at least one target")]
    NoTargets,
    /// Refused by the client (not the core) while its engine cannot carry group calls.
    #[error("calls with several targets (group calls) are not supported by this firmware version")]
    GroupCallsUnsupported,
    #[error("a group call takes at most {0} participants")]
    TooManyTargets(usize),
    #[error("{0} is not a group call")]
    NotAGroupCall(CallId),
    #[error("only the owner of {0} (who started it) can change who is in it")]
    NotTheOwner(CallId),
    #[error("there is no participant {0:?} in that call")]
    NoSuchParticipant(ParticipantId),
    #[error("not connected to the calling service (state {0:?})")]
    NotReady(ConnectionState),
    #[error("there is no video stream {0:?} (it ended, or its participant left)")]
    NoSuchStream(StreamId),
    #[error("there is no renderer {0:?} (it was disposed, or its stream ended)")]
    NoSuchRenderer(RendererId),
}

/// What the engine must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Set up media and send the call to `target`.
    PlaceCall {
        call: CallId,
        target: Identifier,
    },
    /// Answer the incoming call (with the media of an earlier `AnswerEarly`, if any).
    Answer {
        call: CallId,
    },
    /// Set up media for the incoming call and send it as early media (SIP 183 with our answer) without answering:
    /// the caller's video reaches us while the call rings. The media starts with our microphone muted and our
    /// camera off (nothing of the resident leaves before they answer); the core gives back the user's own choice
    /// when the call connects (`SetMicrophoneMuted`, `SetVideoEnabled`). Report `SignalEvent::EarlyMedia` once
    /// the 183 went out.
    AnswerEarly {
        call: CallId,
    },
    /// Refuse the incoming call with a SIP code.
    Decline {
        call: CallId,
        code: u16,
    },
    /// End the call (cancel while ringing, bye when established).
    HangUp {
        call: CallId,
    },
    Hold {
        call: CallId,
    },
    Resume {
        call: CallId,
    },
    SendDtmf {
        call: CallId,
        digit: char,
    },
    SetMicrophoneMuted {
        call: CallId,
        muted: bool,
    },
    SetVideoEnabled {
        call: CallId,
        enabled: bool,
    },
    /// Tell the far end our microphone and camera state (peers that understand it show `is_muted`).
    SendState {
        call: CallId,
        muted: bool,
        video_on: bool,
    },
    /// The call is over: close its media.
    ReleaseMedia {
        call: CallId,
    },
    /// Group call: create a private room (secret, PIN, talk detection), join it and publish; report
    /// `GroupSignal::Joined`. (An invitee's `Answer` joins the room of its invitation instead.)
    CreateRoom {
        call: CallId,
    },
    /// Group call: invite `target` into the room (an invitation message); report delivery or failure for
    /// `participant`.
    Invite {
        call: CallId,
        participant: ParticipantId,
        target: Identifier,
    },
    /// Group call: withdraw the invitation sent to `target`.
    CancelInvitation {
        call: CallId,
        target: Identifier,
    },
    /// Group call: receive these streams (mids) of a room member.
    Subscribe {
        call: CallId,
        feed: u64,
        mids: Vec<String>,
    },
    /// Group call: stop receiving these streams of a room member.
    Unsubscribe {
        call: CallId,
        feed: u64,
        mids: Vec<String>,
    },
    /// Group call: remove a member from the room (the owner's moderation).
    Kick {
        call: CallId,
        feed: u64,
    },
    /// The call's 1:1 SIP leg is no longer needed (both sides are in the room): hang it up and close its media
    /// without ending the call. Emitted once per escalated call (a 1:1 call moved into a room), on both sides.
    DropSipLeg {
        call: CallId,
    },
}

impl Command {
    /// The call the command is about.
    pub fn call(&self) -> CallId {
        match self {
            Command::PlaceCall { call, .. }
            | Command::Answer { call }
            | Command::AnswerEarly { call }
            | Command::Decline { call, .. }
            | Command::HangUp { call }
            | Command::Hold { call }
            | Command::Resume { call }
            | Command::SendDtmf { call, .. }
            | Command::SetMicrophoneMuted { call, .. }
            | Command::SetVideoEnabled { call, .. }
            | Command::SendState { call, .. }
            | Command::ReleaseMedia { call }
            | Command::CreateRoom { call }
            | Command::Invite { call, .. }
            | Command::CancelInvitation { call, .. }
            | Command::Subscribe { call, .. }
            | Command::Unsubscribe { call, .. }
            | Command::Kick { call, .. }
            | Command::DropSipLeg { call } => *call,
        }
    }
}

/// What the signaling layer reports about a call, normalised from the plugin's events.
#[derive(Debug, Clone, PartialEq)]
pub enum SignalEvent {
    /// The far end is alerting (SIP 180).
    Ringing,
    /// Early media: the far end sends media before answering (SIP 183 with a session description).
    EarlyMedia,
    /// The call was answered (ours or theirs) and the session is established.
    Accepted,
    /// Our hold (true) or resume (false) took effect.
    LocalHold(bool),
    /// The far end put us on hold (true) or resumed (false).
    RemoteHold(bool),
    Dtmf(char),
    /// A callbox peer told us its microphone / camera state.
    PeerState {
        muted: Option<bool>,
        video_on: Option<bool>,
    },
    /// The call ended on the network side with a SIP code (200 for a BYE) and reason phrase.
    Hangup {
        code: u16,
        reason: String,
    },
    /// The call failed locally or could not be set up.
    Failed(CallEndReason),
}

/// What the media engine reports about a call.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaSignal {
    /// Whether the negotiated session carries video from the far end.
    VideoNegotiated(bool),
    /// Decoded video from the far end started (true) or stopped (false).
    RemoteVideo(bool),
    /// The far end's decoded audio level, over a short window.
    AudioLevel { dbfs: f32 },
    /// ICE/DTLS failed: the call cannot carry media.
    Failed(String),
}

/// A call as the model holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallInfo {
    pub id: CallId,
    pub direction: CallDirection,
    pub state: CallState,
    pub end_reason: Option<CallEndReason>,
    pub is_muted: bool,
    pub is_video_on: bool,
    pub participants: Vec<ParticipantId>,
    pub started_at: Instant,
    pub connected_at: Option<Instant>,
}

#[derive(Debug)]
struct CallEntry {
    info: CallInfo,
    /// Set for a group call.
    group: Option<Box<group::GroupEntry>>,
    ring_deadline: Option<Instant>,
    hang_up_deadline: Option<Instant>,
    video_negotiated: bool,
    remote_video_flowing: bool,
    remote_video_on: bool,
    quiet_since: Option<Instant>,
    /// Media flows before the call is answered (an outgoing call's EarlyMedia, or an incoming call we answered
    /// early); what early media held back of our own is given back when the call connects.
    early_media: bool,
}

/// The calling core.
#[derive(Debug)]
pub struct CallingCore {
    config: CoreConfig,
    connection: ConnectionState,
    calls: BTreeMap<CallId, CallEntry>,
    participants: BTreeMap<ParticipantId, (CallId, ParticipantInfo)>,
    renderers: BTreeMap<RendererId, RendererInfo>,
    ended: VecDeque<CallId>,
    next_id: u64,
    commands: VecDeque<Command>,
    events: VecDeque<Event>,
}

const DTMF_DIGITS: &str = "0123456789*#ABCD";

impl CallingCore {
    pub fn new(config: CoreConfig) -> Self {
        CallingCore {
            config,
            connection: ConnectionState::Disconnected,
            calls: BTreeMap::new(),
            participants: BTreeMap::new(),
            renderers: BTreeMap::new(),
            ended: VecDeque::new(),
            next_id: 1,
            commands: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    // ----- outputs -----

    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest instant at which `handle_timeout` has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.calls
            .values()
            .filter(|c| c.info.state.is_active())
            .flat_map(|c| {
                [
                    c.ring_deadline,
                    c.hang_up_deadline,
                    c.quiet_since.map(|q| q + self.config.speaking_hangover),
                    c.group.as_ref().and_then(|g| g.next_deadline()),
                ]
            })
            .flatten()
            .min()
    }

    // ----- reads -----

    pub fn connection_state(&self) -> ConnectionState {
        self.connection
    }

    pub fn call(&self, id: CallId) -> Option<&CallInfo> {
        self.calls.get(&id).map(|c| &c.info)
    }

    /// Calls that are not over yet.
    pub fn active_calls(&self) -> impl Iterator<Item = &CallInfo> {
        self.calls.values().map(|c| &c.info).filter(|c| c.state.is_active())
    }

    pub fn participant(&self, id: ParticipantId) -> Option<&ParticipantInfo> {
        self.participants.get(&id).map(|(_, p)| p)
    }

    pub fn stream(&self, id: StreamId) -> Option<(ParticipantId, &StreamInfo)> {
        self.participants.values().find_map(|(_, p)| p.streams.iter().find(|s| s.id == id).map(|s| (p.id, s)))
    }

    pub fn renderer(&self, id: RendererId) -> Option<&RendererInfo> {
        self.renderers.get(&id)
    }

    /// Every renderer, of every stream.
    pub fn renderers(&self) -> impl Iterator<Item = &RendererInfo> {
        self.renderers.values()
    }

    /// The renderers of one stream (its `active_renderers`).
    pub fn stream_renderers(&self, stream: StreamId) -> Vec<RendererId> {
        self.renderers.values().filter(|r| r.stream == stream).map(|r| r.id).collect()
    }

    // ----- rendering -----

    /// Starts rendering a remote video stream onto a tile of the display.
    pub fn add_renderer(&mut self, stream: StreamId, scaling_mode: ScalingMode) -> Result<RendererId, CallingError> {
        let (participant, info) = self.stream(stream).ok_or(CallingError::NoSuchStream(stream))?;
        let is_rendering = info.is_available;
        let call = self.participants.get(&participant).map(|(c, _)| *c).ok_or(CallingError::NoSuchStream(stream))?;
        let id = RendererId(self.take_id());
        self.renderers
            .insert(id, RendererInfo { id, call, participant, stream, scaling_mode, is_paused: false, is_rendering });
        self.events.push_back(Event::ActiveRenderersUpdated {
            call,
            participant,
            stream,
            added: vec![id],
            removed: vec![],
        });
        Ok(id)
    }

    pub fn set_renderer_scaling_mode(&mut self, id: RendererId, mode: ScalingMode) -> Result<(), CallingError> {
        let r = self.renderers.get_mut(&id).ok_or(CallingError::NoSuchRenderer(id))?;
        if r.scaling_mode != mode {
            r.scaling_mode = mode;
            self.events.push_back(Event::RendererScalingModeChanged {
                call: r.call,
                participant: r.participant,
                renderer: id,
                scaling_mode: mode,
            });
        }
        Ok(())
    }

    /// Pauses (the tile keeps its last picture) or resumes a renderer.
    pub fn set_renderer_paused(&mut self, id: RendererId, paused: bool) -> Result<(), CallingError> {
        let r = self.renderers.get_mut(&id).ok_or(CallingError::NoSuchRenderer(id))?;
        r.is_paused = paused;
        self.refresh_renderers();
        Ok(())
    }

    /// Stops a renderer and frees its tile.
    pub fn remove_renderer(&mut self, id: RendererId) -> Result<(), CallingError> {
        let r = self.renderers.remove(&id).ok_or(CallingError::NoSuchRenderer(id))?;
        self.events.push_back(Event::ActiveRenderersUpdated {
            call: r.call,
            participant: r.participant,
            stream: r.stream,
            added: vec![],
            removed: vec![id],
        });
        Ok(())
    }

    /// Brings the renderers in line with their streams: a renderer whose stream ended is disposed, and
    /// `is_rendering` follows pause and the stream's availability.
    fn refresh_renderers(&mut self) {
        let ids: Vec<RendererId> = self.renderers.keys().copied().collect();
        for id in ids {
            let Some(r) = self.renderers.get(&id).copied() else { continue };
            match self.stream(r.stream).map(|(_, s)| s.is_available) {
                None => {
                    let _ = self.remove_renderer(id);
                }
                Some(available) => {
                    let rendering = available && !r.is_paused;
                    if rendering != r.is_rendering {
                        if let Some(r) = self.renderers.get_mut(&id) {
                            r.is_rendering = rendering;
                        }
                        self.events.push_back(Event::RendererIsRenderingChanged {
                            call: r.call,
                            participant: r.participant,
                            renderer: id,
                            is_rendering: rendering,
                        });
                    }
                }
            }
        }
    }

    // ----- connection -----

    pub fn set_connection_state(&mut self, state: ConnectionState) {
        if self.connection != state {
            self.connection = state;
            self.events.push_back(Event::ConnectionStateChanged { state });
        }
    }

    /// The signaling session is gone for good: every active call ends.
    pub fn on_session_lost(&mut self) {
        let active: Vec<CallId> = self.active_calls().map(|c| c.id).collect();
        for id in active {
            self.end_call(id, CallEndReason::new(500, subcode::SIGNALING_LOST, "the signaling connection was lost"));
        }
    }

    // ----- API inputs -----

    /// Starts an outgoing call. One target is a 1:1 call; several are a group call (see `group.rs`).
    pub fn start_call(&mut self, targets: &[Identifier], now: Instant) -> Result<CallId, CallingError> {
        if targets.is_empty() {
            return Err(CallingError::NoTargets);
        }
        if self.connection != ConnectionState::Ready {
            return Err(CallingError::NotReady(self.connection));
        }
        if self.active_calls().next().is_some() {
            return Err(CallingError::Busy);
        }
        let target = match targets {
            [one] => one.clone(),
            _ => return self.start_group_call(targets, now),
        };
        let id = self.new_call(CallDirection::Outgoing, CallState::Connecting, target.clone(), None, now);
        if let Some(c) = self.calls.get_mut(&id) {
            c.ring_deadline = Some(now + self.config.ring_timeout);
        }
        self.commands.push_back(Command::PlaceCall { call: id, target });
        Ok(id)
    }

    /// The network offers an incoming call. When another call is active it is declined with 486 at once (the
    /// returned call is then already Disconnected); otherwise an `IncomingCall` event announces it.
    pub fn incoming_call(&mut self, from: Identifier, display_name: Option<String>, now: Instant) -> CallId {
        let busy = self.active_calls().next().is_some();
        let id = self.new_call(CallDirection::Incoming, CallState::Incoming, from.clone(), display_name.clone(), now);
        if busy {
            self.commands.push_back(Command::Decline { call: id, code: 486 });
            self.end_call(id, CallEndReason::new(486, subcode::BUSY_LOCALLY, "busy: another call is in progress"));
        } else {
            self.events.push_back(Event::IncomingCall { call: id, from, display_name });
        }
        id
    }

    /// Sends early media for an incoming call while it keeps ringing (SIP 183): the caller's media (a door's
    /// camera) reaches us before the resident answers; our microphone stays muted and our camera off until
    /// `accept`. Once per call.
    pub fn answer_early(&mut self, call: CallId) -> Result<(), CallingError> {
        self.require(call, "answer early", |s| s == CallState::Incoming)?;
        let Some(c) = self.calls.get_mut(&call) else {
            return Err(CallingError::NoSuchCall(call));
        };
        if c.group.is_some() || c.early_media {
            return Err(CallingError::InvalidState { call, action: "answer early", state: CallState::Incoming });
        }
        c.early_media = true;
        self.commands.push_back(Command::AnswerEarly { call });
        Ok(())
    }

    pub fn accept(&mut self, call: CallId) -> Result<(), CallingError> {
        self.require(call, "accept", |s| s == CallState::Incoming)?;
        self.stop_invitation_lapse(call);
        self.set_call_state(call, CallState::Connecting);
        self.commands.push_back(Command::Answer { call });
        Ok(())
    }

    /// Refuses an incoming call (603 Decline by default; 486 for busy).
    pub fn reject(&mut self, call: CallId, code: u16) -> Result<(), CallingError> {
        self.require(call, "reject", |s| s == CallState::Incoming)?;
        self.commands.push_back(Command::Decline { call, code });
        self.end_call(call, CallEndReason::new(code, subcode::LOCAL_HANG_UP, "declined by the local user"));
        Ok(())
    }

    pub fn hang_up(&mut self, call: CallId, now: Instant) -> Result<(), CallingError> {
        let state = self.require(call, "hang up", |s| s.is_active())?;
        if state == CallState::Incoming {
            return self.reject(call, 603);
        }
        if state == CallState::Disconnecting {
            return Ok(());
        }
        self.set_call_state(call, CallState::Disconnecting);
        if let Some(c) = self.calls.get_mut(&call) {
            c.hang_up_deadline = Some(now + self.config.hang_up_timeout);
            c.ring_deadline = None;
        }
        self.cancel_pending_invitations(call);
        self.drop_sip_leg(call, false);
        self.commands.push_back(Command::HangUp { call });
        Ok(())
    }

    pub fn set_muted(&mut self, call: CallId, muted: bool) -> Result<(), CallingError> {
        self.require(call, "mute", |s| s.is_active() && s != CallState::Disconnecting)?;
        let Some(c) = self.calls.get_mut(&call) else {
            return Err(CallingError::NoSuchCall(call));
        };
        if c.info.is_muted != muted {
            c.info.is_muted = muted;
            let video_on = c.info.is_video_on;
            self.events.push_back(Event::CallIsMutedChanged { call, is_muted: muted });
            self.commands.push_back(Command::SetMicrophoneMuted { call, muted });
            self.commands.push_back(Command::SendState { call, muted, video_on });
        }
        Ok(())
    }

    pub fn set_video(&mut self, call: CallId, on: bool) -> Result<(), CallingError> {
        self.require(call, "switch video of", |s| s.is_active() && s != CallState::Disconnecting)?;
        let Some(c) = self.calls.get_mut(&call) else {
            return Err(CallingError::NoSuchCall(call));
        };
        if c.info.is_video_on != on {
            c.info.is_video_on = on;
            let muted = c.info.is_muted;
            self.events.push_back(Event::CallIsVideoOnChanged { call, is_video_on: on });
            self.commands.push_back(Command::SetVideoEnabled { call, enabled: on });
            self.commands.push_back(Command::SendState { call, muted, video_on: on });
        }
        Ok(())
    }

    pub fn hold(&mut self, call: CallId) -> Result<(), CallingError> {
        self.require(call, "hold", |s| matches!(s, CallState::Connected | CallState::RemoteHold))?;
        self.commands.push_back(Command::Hold { call });
        Ok(())
    }

    pub fn resume(&mut self, call: CallId) -> Result<(), CallingError> {
        self.require(call, "resume", |s| s == CallState::LocalHold)?;
        self.commands.push_back(Command::Resume { call });
        Ok(())
    }

    pub fn send_dtmf(&mut self, call: CallId, digit: char) -> Result<(), CallingError> {
        let digit = digit.to_ascii_uppercase();
        if !DTMF_DIGITS.contains(digit) {
            return Err(CallingError::InvalidDtmf(digit));
        }
        self.require(call, "send DTMF on", |s| s.is_established() || s == CallState::EarlyMedia)?;
        self.commands.push_back(Command::SendDtmf { call, digit });
        Ok(())
    }

    // ----- network inputs -----

    pub fn on_signal(&mut self, call: CallId, event: SignalEvent, now: Instant) {
        let Some(state) = self.call(call).map(|c| c.state) else {
            log::debug!("signal {:?} for unknown {call} ignored", Loggable(&event));
            return;
        };
        if !state.is_active() {
            log::debug!("signal {:?} for ended {call} ignored", Loggable(&event));
            return;
        }
        if !self.sip_signal_applies(call, state, &event) {
            return;
        }
        match event {
            SignalEvent::Ringing if matches!(state, CallState::Connecting) => {
                self.set_call_state(call, CallState::Ringing);
                self.set_participants_state(call, ParticipantState::Ringing);
            }
            SignalEvent::EarlyMedia if matches!(state, CallState::Connecting | CallState::Ringing) => {
                let mute = self.config.mute_microphone_in_early_media;
                if let Some(c) = self.calls.get_mut(&call) {
                    c.early_media = true;
                }
                if mute {
                    self.commands.push_back(Command::SetMicrophoneMuted { call, muted: true });
                }
                self.set_call_state(call, CallState::EarlyMedia);
                self.set_participants_state(call, ParticipantState::EarlyMedia);
                self.refresh_streams(call);
            }
            // Our own early media is up (the 183 went out): the call rings on, the caller is in early media.
            SignalEvent::EarlyMedia
                if state == CallState::Incoming && self.calls.get(&call).is_some_and(|c| c.early_media) =>
            {
                self.set_participants_state(call, ParticipantState::EarlyMedia);
                self.refresh_streams(call);
            }
            SignalEvent::Accepted
                if matches!(state, CallState::Connecting | CallState::Ringing | CallState::EarlyMedia) =>
            {
                let mut restore = None;
                if let Some(c) = self.calls.get_mut(&call) {
                    c.ring_deadline = None;
                    c.info.connected_at = Some(now);
                    if std::mem::take(&mut c.early_media) {
                        restore = Some((c.info.is_muted, c.info.is_video_on));
                    }
                }
                // What early media held back is the user's own choice again.
                if let Some((muted, video_on)) = restore {
                    self.commands.push_back(Command::SetMicrophoneMuted { call, muted });
                    self.commands.push_back(Command::SetVideoEnabled { call, enabled: video_on });
                }
                self.set_call_state(call, CallState::Connected);
                self.set_participants_state(call, ParticipantState::Connected);
                self.refresh_streams(call);
            }
            SignalEvent::LocalHold(held) => {
                let next = match (held, state) {
                    (true, CallState::Connected | CallState::RemoteHold) => CallState::LocalHold,
                    (false, CallState::LocalHold) => CallState::Connected,
                    _ => return,
                };
                self.set_call_state(call, next);
                self.refresh_streams(call);
            }
            SignalEvent::RemoteHold(held) => {
                let (next, p) = match (held, state) {
                    (true, CallState::Connected) => (CallState::RemoteHold, ParticipantState::OnHold),
                    (true, CallState::LocalHold) => (CallState::LocalHold, ParticipantState::OnHold),
                    (false, CallState::RemoteHold) => (CallState::Connected, ParticipantState::Connected),
                    (false, CallState::LocalHold) => (CallState::LocalHold, ParticipantState::Connected),
                    _ => return,
                };
                self.set_call_state(call, next);
                for pid in self.sip_leg_participants(call) {
                    self.set_participant_state(call, pid, p);
                }
                self.refresh_streams(call);
            }
            SignalEvent::Dtmf(digit) => self.events.push_back(Event::DtmfReceived { call, digit }),
            SignalEvent::PeerState { muted, video_on } => {
                for pid in self.sip_leg_participants(call) {
                    if let Some(m) = muted {
                        self.set_participant_muted(call, pid, m);
                    }
                }
                if let (Some(v), Some(c)) = (video_on, self.calls.get_mut(&call)) {
                    c.remote_video_on = v;
                    self.refresh_streams(call);
                }
            }
            SignalEvent::Hangup { code, reason } => {
                let reason = if state == CallState::Disconnecting {
                    CallEndReason::local_hang_up()
                } else if code < 300 && state.is_established() {
                    CallEndReason::remote_hang_up()
                } else if code < 300 {
                    // Ended before it was answered without an error status: the far end gave up.
                    CallEndReason::sip(487, &reason)
                } else {
                    CallEndReason::sip(code, &reason)
                };
                self.end_call(call, reason);
            }
            SignalEvent::Failed(reason) => {
                if state != CallState::Disconnecting {
                    self.commands.push_back(Command::HangUp { call });
                }
                self.end_call(call, reason);
            }
            other => log::debug!("signal {:?} ignored for {call} in state {state:?}", Loggable(&other)),
        }
    }

    pub fn on_media(&mut self, call: CallId, signal: MediaSignal, now: Instant) {
        let Some(state) = self.call(call).map(|c| c.state) else {
            return;
        };
        if !state.is_active() {
            return;
        }
        match signal {
            MediaSignal::VideoNegotiated(v) => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.video_negotiated = v;
                }
                self.refresh_streams(call);
            }
            MediaSignal::RemoteVideo(flowing) => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.remote_video_flowing = flowing;
                }
                self.refresh_streams(call);
            }
            MediaSignal::AudioLevel { dbfs } => self.on_audio_level(call, dbfs, now),
            MediaSignal::Failed(why) => {
                if state != CallState::Disconnecting {
                    self.commands.push_back(Command::HangUp { call });
                }
                self.end_call(call, CallEndReason::new(500, subcode::MEDIA_FAILED, format!("media failed: {why}")));
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.handle_group_timeouts(now);
        let due: Vec<(CallId, &'static str)> = self
            .calls
            .values()
            .filter(|c| c.info.state.is_active())
            .filter_map(|c| {
                if c.hang_up_deadline.is_some_and(|d| d <= now) {
                    Some((c.info.id, "hang-up"))
                } else if c.ring_deadline.is_some_and(|d| d <= now) {
                    Some((c.info.id, "ring"))
                } else if c.quiet_since.is_some_and(|q| q + self.config.speaking_hangover <= now) {
                    Some((c.info.id, "quiet"))
                } else {
                    None
                }
            })
            .collect();
        for (call, what) in due {
            match what {
                "hang-up" => self.end_call(call, CallEndReason::local_hang_up()),
                "ring" => {
                    self.commands.push_back(Command::HangUp { call });
                    self.end_call(call, CallEndReason::new(408, subcode::NO_ANSWER_TIMEOUT, "no answer"));
                }
                _ => {
                    if let Some(c) = self.calls.get_mut(&call) {
                        c.quiet_since = None;
                    }
                    for pid in self.sip_leg_participants(call) {
                        self.set_participant_speaking(call, pid, false);
                    }
                }
            }
        }
    }

    // ----- internals -----

    fn new_call(
        &mut self,
        direction: CallDirection,
        state: CallState,
        peer: Identifier,
        display_name: Option<String>,
        now: Instant,
    ) -> CallId {
        let id = CallId(self.take_id());
        let pid = ParticipantId(self.take_id());
        let pstate = match direction {
            CallDirection::Outgoing | CallDirection::Incoming => ParticipantState::Connecting,
        };
        let participant = ParticipantInfo {
            id: pid,
            identifier: peer,
            display_name,
            state: pstate,
            call_end_reason: None,
            is_muted: false,
            is_speaking: false,
            streams: Vec::new(),
        };
        self.participants.insert(pid, (id, participant));
        let info = CallInfo {
            id,
            direction,
            state,
            end_reason: None,
            is_muted: false,
            is_video_on: true,
            participants: vec![pid],
            started_at: now,
            connected_at: None,
        };
        self.calls.insert(
            id,
            CallEntry {
                info,
                group: None,
                ring_deadline: None,
                hang_up_deadline: None,
                video_negotiated: false,
                remote_video_flowing: false,
                remote_video_on: true,
                quiet_since: None,
                early_media: false,
            },
        );
        self.events.push_back(Event::CallsUpdated { added: vec![id], removed: vec![] });
        self.events.push_back(Event::CallStateChanged { call: id, state });
        self.events.push_back(Event::RemoteParticipantsUpdated { call: id, added: vec![pid], removed: vec![] });
        id
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn require(
        &self,
        call: CallId,
        action: &'static str,
        ok: impl Fn(CallState) -> bool,
    ) -> Result<CallState, CallingError> {
        let state = self.call(call).ok_or(CallingError::NoSuchCall(call))?.state;
        if ok(state) {
            Ok(state)
        } else {
            Err(CallingError::InvalidState { call, state, action })
        }
    }

    fn participant_ids(&self, call: CallId) -> Vec<ParticipantId> {
        self.call(call).map(|c| c.participants.clone()).unwrap_or_default()
    }

    fn set_call_state(&mut self, call: CallId, state: CallState) {
        if let Some(c) = self.calls.get_mut(&call) {
            if c.info.state != state {
                log::debug!("{call}: {:?} -> {state:?}", c.info.state);
                c.info.state = state;
                self.events.push_back(Event::CallStateChanged { call, state });
            }
        }
    }

    fn set_participants_state(&mut self, call: CallId, state: ParticipantState) {
        for pid in self.participant_ids(call) {
            self.set_participant_state(call, pid, state);
        }
    }

    fn set_participant_state(&mut self, call: CallId, pid: ParticipantId, state: ParticipantState) {
        if let Some((_, p)) = self.participants.get_mut(&pid) {
            if p.state != state {
                p.state = state;
                self.events.push_back(Event::ParticipantStateChanged { call, participant: pid, state });
            }
        }
    }

    /// A participant's part in the call is over: it stops speaking and keeps the first reason it was given.
    fn end_participant(&mut self, call: CallId, pid: ParticipantId, reason: CallEndReason) {
        self.set_participant_speaking(call, pid, false);
        if let Some((_, p)) = self.participants.get_mut(&pid) {
            if p.call_end_reason.is_none() {
                p.call_end_reason = Some(reason.clone());
                self.events.push_back(Event::ParticipantCallEndReasonChanged { call, participant: pid, reason });
            }
        }
    }

    fn set_participant_muted(&mut self, call: CallId, pid: ParticipantId, muted: bool) {
        if let Some((_, p)) = self.participants.get_mut(&pid) {
            if p.is_muted != muted {
                p.is_muted = muted;
                self.events.push_back(Event::ParticipantIsMutedChanged { call, participant: pid, is_muted: muted });
            }
        }
    }

    fn set_participant_speaking(&mut self, call: CallId, pid: ParticipantId, speaking: bool) {
        if let Some((_, p)) = self.participants.get_mut(&pid) {
            if p.is_speaking != speaking {
                p.is_speaking = speaking;
                self.events.push_back(Event::ParticipantIsSpeakingChanged {
                    call,
                    participant: pid,
                    is_speaking: speaking,
                });
            }
        }
    }

    fn on_audio_level(&mut self, call: CallId, dbfs: f32, now: Instant) {
        let (on, off) = (self.config.speaking_on_dbfs, self.config.speaking_off_dbfs);
        let leg = self.sip_leg_participants(call);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        // Only a 1:1 leg's audio is metered here (a room's talking comes from the room).
        if !c.info.state.is_established() || leg.is_empty() {
            return;
        }
        if dbfs >= on {
            c.quiet_since = None;
            for pid in leg {
                self.set_participant_speaking(call, pid, true);
            }
        } else if dbfs < off {
            if c.quiet_since.is_none() {
                c.quiet_since = Some(now);
            }
        } else {
            c.quiet_since = None;
        }
    }

    /// Brings the video stream of each participant of the 1:1 SIP leg (see `sip_leg_participants`) in line with
    /// what is negotiated and flowing. A group call's room streams are `group.rs`'s.
    fn refresh_streams(&mut self, call: CallId) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let established = c.info.state.is_established() || c.early_media;
        let has_stream = established && c.video_negotiated;
        let available = has_stream
            && c.remote_video_flowing
            && c.remote_video_on
            && !matches!(c.info.state, CallState::LocalHold | CallState::RemoteHold);
        let room_streams = self.room_stream_ids(call);
        for pid in self.sip_leg_participants(call) {
            let next_id = StreamId(self.next_id);
            let Some((_, p)) = self.participants.get_mut(&pid) else {
                continue;
            };
            let existing =
                p.streams.iter().position(|s| s.kind == VideoStreamKind::Video && !room_streams.contains(&s.id));
            match (has_stream, existing) {
                (true, None) => {
                    self.next_id += 1;
                    p.streams.push(StreamInfo { id: next_id, kind: VideoStreamKind::Video, is_available: available });
                    self.events.push_back(Event::VideoStreamsUpdated {
                        call,
                        participant: pid,
                        added: vec![next_id],
                        removed: vec![],
                    });
                }
                (true, Some(i)) => {
                    let s = &mut p.streams[i];
                    if s.is_available != available {
                        s.is_available = available;
                        self.events.push_back(Event::StreamIsAvailableChanged {
                            call,
                            participant: pid,
                            stream: s.id,
                            is_available: available,
                        });
                    }
                }
                (false, Some(i)) => {
                    let sid = p.streams[i].id;
                    self.remove_stream(call, pid, sid);
                }
                (false, None) => {}
            }
        }
        self.refresh_renderers();
    }

    /// Removes one video or screen stream of a participant: unavailable first (if it was), then out of its
    /// collection. The caller refreshes the renderers.
    fn remove_stream(&mut self, call: CallId, pid: ParticipantId, sid: StreamId) {
        let Some((_, p)) = self.participants.get_mut(&pid) else { return };
        let Some(i) = p.streams.iter().position(|s| s.id == sid) else { return };
        let s = p.streams.remove(i);
        if s.is_available {
            self.events.push_back(Event::StreamIsAvailableChanged {
                call,
                participant: pid,
                stream: sid,
                is_available: false,
            });
        }
        let (added, removed) = (vec![], vec![sid]);
        self.events.push_back(match s.kind {
            VideoStreamKind::Video => Event::VideoStreamsUpdated { call, participant: pid, added, removed },
            VideoStreamKind::ScreenSharing => {
                Event::ScreenSharingStreamsUpdated { call, participant: pid, added, removed }
            }
        });
    }

    fn end_call(&mut self, call: CallId, reason: CallEndReason) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if !c.info.state.is_active() {
            return;
        }
        log::info!("{call} ended: {} / {} ({})", reason.code, reason.subcode, reason.message);
        c.ring_deadline = None;
        c.hang_up_deadline = None;
        c.quiet_since = None;
        c.video_negotiated = false;
        c.info.end_reason = Some(reason.clone());
        // An escalated call whose 1:1 leg is still up: that leg goes too.
        self.drop_sip_leg(call, false);
        // However the owner's group call ends (hang-up, lost session, failed room), nobody keeps ringing for it.
        self.cancel_pending_invitations(call);
        // Every stream ends with the call: the 1:1 video, a group call's cameras and screen shares.
        for pid in self.participant_ids(call) {
            let streams: Vec<StreamId> =
                self.participants.get(&pid).map(|(_, p)| p.streams.iter().map(|s| s.id).collect()).unwrap_or_default();
            for sid in streams {
                self.remove_stream(call, pid, sid);
            }
        }
        self.forget_room_streams(call);
        self.refresh_renderers();
        for pid in self.participant_ids(call) {
            self.end_participant(call, pid, reason.clone());
        }
        self.set_participants_state(call, ParticipantState::Disconnected);
        self.events.push_back(Event::CallEndReasonChanged { call, reason });
        self.set_call_state(call, CallState::Disconnected);
        self.commands.push_back(Command::ReleaseMedia { call });
        self.events.push_back(Event::CallsUpdated { added: vec![], removed: vec![call] });
        self.ended.push_back(call);
        while self.ended.len() > self.config.ended_calls_kept {
            if let Some(old) = self.ended.pop_front() {
                if let Some(entry) = self.calls.remove(&old) {
                    for pid in entry.info.participants {
                        self.participants.remove(&pid);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! Group calls in the calling core: a call held in a video room (Janus's videoroom plugin, one room per call),
//! with invitations sent to its targets (`crate::invitation`). Sans-IO like the rest of the core: the engine
//! reports what the room and the invitations do (`on_group`), the core keeps the roster (who is invited, ringing,
//! in the room; their streams, mute and speaking states), decides which streams to receive, and asks the engine
//! for what it must do (`Command::CreateRoom`, `Invite`, `Subscribe`, `Kick`, ...).
//!
//! The call's owner created the room: it invites, removes (kicks) and ends the room. An invitee rings like an
//! incoming 1:1 call and joins the room when it accepts. A member is known by its room feed id; members who
//! name a callbox user (their publisher display) are matched with the invitations, others join as guests.
//!
//! Escalation: `add_participant` on a connected 1:1 call turns it into a group call (same `CallId`) that this
//! client owns. Its peer is invited too, with an invitation marked `escalate` ([`CallingCore::invite_escalates`]);
//! the peer's device finds the 1:1 call with the inviter and joins the room at once, without ringing
//! (`incoming_invitation`). The peer stays Connected throughout; each side drops the 1:1 SIP leg
//! (`Command::DropSipLeg`) once both are in the room, and until then the leg carries the conversation.

use super::{CallEntry, CallingCore, CallingError, Command, SignalEvent};
use crate::events::Event;
use crate::identifier::Identifier;
use crate::invitation::{GroupCallId, Invitation};
use crate::model::{
    subcode, CallDirection, CallEndReason, CallId, CallState, ParticipantId, ParticipantInfo, ParticipantState,
    StreamId, StreamInfo, VideoStreamKind,
};
use crate::redact::Loggable;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// At most this many camera streams are received (the display's grid holds 9 tiles) ...
pub const MAX_VIDEO_SUBSCRIPTIONS: usize = 9;
/// ... and one screen share (the large tile). Audio is always received from everyone.
pub const MAX_SCREEN_SUBSCRIPTIONS: usize = 1;
/// Members of one room the core keeps track of (a bound against a flood of fake joins).
pub const MAX_MEMBERS: usize = 32;
/// Invitations of one call.
pub const MAX_INVITEES: usize = 16;
/// An invitee whose inviter never says `cancel` stops ringing this long after the invitation's own ring time.
const INVITEE_RING_GRACE: Duration = Duration::from_secs(5);
/// The longest an invitation rings here, whatever ring time its sender asks for (up to the 600 s the format
/// allows): a long invitation must not hold the appliance (its doorbell button answers a ringing call).
pub const MAX_INVITEE_RING: Duration = Duration::from_secs(60);

/// How long an invitation may ring: its ring time, at most `MAX_INVITEE_RING`, plus the grace period.
fn invitee_ring(invitation: &Invitation) -> Duration {
    Duration::from_secs(u64::from(invitation.ring_secs)).min(MAX_INVITEE_RING) + INVITEE_RING_GRACE
}

/// What a member of the room sends, as the room describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoomStreamKind {
    Audio,
    /// A camera.
    Video,
    /// A second video described as a screen share.
    ScreenShare,
}

/// One stream of a member: its room-wide identity is (feed, mid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomStream {
    pub mid: String,
    pub kind: RoomStreamKind,
    /// Sent and not disabled or muted by a moderator.
    pub active: bool,
}

/// A member of the room: a publisher or attendee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomMember {
    pub feed: u64,
    /// The callbox user it says it is (its display), `None` for a guest (a browser, say).
    pub identifier: Option<Identifier>,
    pub display_name: Option<String>,
}

/// What the engine reports about a group call.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupSignal {
    /// This client is in the room and publishing.
    Joined,
    /// The invitation of a participant reached a device (it rings).
    InvitationDelivered {
        participant: ParticipantId,
    },
    /// The invitation could not be delivered (404 unknown, 480 not registered, ...).
    InvitationFailed {
        participant: ParticipantId,
        code: u16,
    },
    /// An invitee declined (603, 486, 488).
    Declined {
        from: Identifier,
        code: u16,
    },
    /// The inviter withdrew the invitation this (incoming) call came from.
    InvitationCancelled,
    /// A member is in the room (joined or published).
    MemberJoined(RoomMember),
    /// A member's complete list of streams (new, changed, disabled).
    MemberStreams {
        feed: u64,
        streams: Vec<RoomStream>,
    },
    MemberTalking {
        feed: u64,
        talking: bool,
    },
    /// A member left the room, or was removed from it by the owner.
    MemberLeft {
        feed: u64,
        kicked: bool,
    },
    /// This client was removed from the room by its owner.
    Removed,
    /// The room was closed by its owner.
    RoomClosed,
    /// Setting up or keeping the room failed.
    Failed(CallEndReason),
}

/// A 1:1 call moved into the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Escalation {
    /// The remote participant of the 1:1 call: for the owner the peer it moves into the room, for the invitee
    /// the owner.
    peer: ParticipantId,
    /// The 1:1 SIP leg is still up (until `Command::DropSipLeg`); its media, audio level and SIP INFO state are
    /// the peer's.
    leg_up: bool,
    /// The peer's video stream of the 1:1 leg, kept (unavailable) after the leg dropped, until the peer's camera
    /// in the room takes it over: its renderers live on.
    carried_stream: Option<StreamId>,
}

/// Which side of the room this client is on.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Role {
    /// It created the room and invites.
    Owner,
    /// It was invited.
    Invitee(Box<Invitation>),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct GroupEntry {
    pub(super) role: Role,
    joined: bool,
    /// Invitations not answered yet: the participant, and until when it may ring.
    pending: BTreeMap<ParticipantId, Option<Instant>>,
    /// Room members and the participant each is.
    members: BTreeMap<u64, ParticipantId>,
    /// Each member's streams, as last reported.
    streams: BTreeMap<u64, Vec<RoomStream>>,
    /// The video and screen streams of the model, by (feed, mid).
    stream_ids: BTreeMap<(u64, String), StreamId>,
    /// What is subscribed, by feed.
    subscribed: BTreeMap<u64, Vec<String>>,
    /// An incoming invitation stops ringing by itself at this instant.
    invitee_deadline: Option<Instant>,
    /// Why the participant who left last left (the call's reason when nobody ever joined).
    last_gone: Option<CallEndReason>,
    /// Set when the call began as a 1:1 call and was moved into the room.
    escalation: Option<Escalation>,
}

impl GroupEntry {
    fn new(role: Role) -> Self {
        GroupEntry {
            role,
            joined: false,
            pending: BTreeMap::new(),
            members: BTreeMap::new(),
            streams: BTreeMap::new(),
            stream_ids: BTreeMap::new(),
            subscribed: BTreeMap::new(),
            invitee_deadline: None,
            last_gone: None,
            escalation: None,
        }
    }

    /// The earliest deadline of the group's own timers.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().flatten().copied().chain(self.invitee_deadline).min()
    }

    pub(super) fn is_owner(&self) -> bool {
        self.role == Role::Owner
    }

    /// The invitation an incoming group call came from.
    pub(super) fn invitation(&self) -> Option<&Invitation> {
        match &self.role {
            Role::Invitee(i) => Some(i),
            Role::Owner => None,
        }
    }

    /// The peer moved from the 1:1 call, if this is an escalated call.
    fn escalated_peer(&self) -> Option<ParticipantId> {
        self.escalation.map(|e| e.peer)
    }
}

fn participant(id: ParticipantId, identifier: Identifier, display_name: Option<String>) -> ParticipantInfo {
    ParticipantInfo {
        id,
        identifier,
        display_name,
        state: ParticipantState::Connecting,
        call_end_reason: None,
        is_muted: false,
        is_speaking: false,
        streams: Vec::new(),
    }
}

/// A guest's identifier: `guest-<feed>` (a valid user id, never one a callbox user is given by the service,
/// whose ids come from the token).
fn guest_identifier(feed: u64) -> Option<Identifier> {
    Identifier::user(&format!("guest-{feed}")).ok()
}

impl CallingCore {
    /// Starts a group call: every target becomes a participant in Connecting, the engine creates and joins the
    /// room (`CreateRoom`), and once this client is in it (`GroupSignal::Joined`) each target is invited.
    pub(super) fn start_group_call(&mut self, targets: &[Identifier], now: Instant) -> Result<CallId, CallingError> {
        let mut unique: Vec<Identifier> = Vec::new();
        for t in targets {
            if !unique.contains(t) {
                unique.push(t.clone());
            }
        }
        if unique.len() > MAX_INVITEES {
            return Err(CallingError::TooManyTargets(MAX_INVITEES));
        }
        let Some((first, rest)) = unique.split_first() else {
            return Err(CallingError::NoTargets);
        };
        let call = self.new_call(CallDirection::Outgoing, CallState::Connecting, first.clone(), None, now);
        let mut added = Vec::new();
        for target in rest {
            let pid = ParticipantId(self.take_id());
            self.participants.insert(pid, (call, participant(pid, target.clone(), None)));
            added.push(pid);
        }
        let mut group = GroupEntry::new(Role::Owner);
        if let Some(c) = self.calls.get_mut(&call) {
            c.info.participants.extend(added.iter().copied());
            c.ring_deadline = Some(now + self.config.ring_timeout);
            for pid in &c.info.participants {
                group.pending.insert(*pid, None);
            }
            c.group = Some(Box::new(group));
        }
        if !added.is_empty() {
            self.events.push_back(Event::RemoteParticipantsUpdated { call, added, removed: vec![] });
        }
        self.commands.push_back(Command::CreateRoom { call });
        Ok(call)
    }

    /// An invitation into a group call arrived. Like `incoming_call`: declined with 486 when another call is
    /// active, otherwise announced with `IncomingCall`; it rings until accepted, rejected or cancelled, and at
    /// most its ring time (plus a grace period) when the inviter's cancel is lost.
    ///
    /// An invitation marked `escalate` moves the connected 1:1 call with its caller into the room instead: that
    /// call (same id) becomes a group call, answered at once (`Command::Answer`: join the room), with no ringing
    /// and no `IncomingCall`; its 1:1 leg is dropped (`Command::DropSipLeg`) once this client is in the room.
    /// Without such a call the invitation is ignored (`None`: no call, no ringing, no reply): it reached another
    /// device of the user (invitations fork to every device), or the call ended before it arrived.
    ///
    /// The caller is the invitation's own word: the engine must pass only invitations whose SIP MESSAGE came
    /// (authenticated by the registrar) from `invitation.caller`, since an escalation joins the room unasked.
    pub fn incoming_invitation(&mut self, invitation: Invitation, now: Instant) -> Option<CallId> {
        // The same invitation delivered twice (a retransmitted or forked MESSAGE): nothing more to do.
        if let Some(call) = self.invited_call(&invitation.call_id) {
            log::debug!("{call}: invitation {} received again", invitation.call_id);
            return Some(call);
        }
        if invitation.escalate {
            return self.incoming_escalation(invitation, now);
        }
        let busy = self.active_calls().next().is_some();
        let from = invitation.caller.clone();
        let display_name = invitation.caller_display_name.clone();
        let ring = invitee_ring(&invitation);
        let call = self.new_call(CallDirection::Incoming, CallState::Incoming, from.clone(), display_name.clone(), now);
        let mut group = GroupEntry::new(Role::Invitee(Box::new(invitation)));
        group.invitee_deadline = Some(now + ring);
        if let Some(c) = self.calls.get_mut(&call) {
            c.group = Some(Box::new(group));
        }
        if busy {
            self.commands.push_back(Command::Decline { call, code: 486 });
            self.end_call(call, CallEndReason::new(486, subcode::BUSY_LOCALLY, "busy: another call is in progress"));
        } else {
            self.events.push_back(Event::IncomingCall { call, from, display_name });
        }
        Some(call)
    }

    /// The invitee's side of an escalation (see `incoming_invitation`).
    fn incoming_escalation(&mut self, invitation: Invitation, now: Instant) -> Option<CallId> {
        let found = self.calls.values().find_map(|c| {
            if c.group.is_some() || c.info.state != CallState::Connected {
                return None;
            }
            let peer = c.info.participants.first().copied()?;
            let (_, p) = self.participants.get(&peer)?;
            (p.identifier == invitation.caller).then_some((c.info.id, peer))
        });
        let Some((call, peer)) = found else {
            log::info!("escalation {} ignored: no connected 1:1 call with its caller", invitation.call_id);
            return None;
        };
        log::info!("{call}: moved into the room of {} by the peer", invitation.call_id);
        // Bounded like a ringing invitation: the room must be joined within its ring time (plus the grace).
        let join_by = now + invitee_ring(&invitation);
        let mut group = GroupEntry::new(Role::Invitee(Box::new(invitation)));
        group.escalation = Some(Escalation { peer, leg_up: true, carried_stream: None });
        group.invitee_deadline = Some(join_by);
        if let Some(c) = self.calls.get_mut(&call) {
            c.group = Some(Box::new(group));
        }
        self.commands.push_back(Command::Answer { call });
        Some(call)
    }

    /// The active call that came from the invitation `call_id` (what a withdrawal or a repeated delivery is about).
    pub fn invited_call(&self, call_id: &GroupCallId) -> Option<CallId> {
        self.calls
            .values()
            .find(|c| {
                c.info.state.is_active()
                    && c.group.as_ref().and_then(|g| g.invitation()).is_some_and(|i| &i.call_id == call_id)
            })
            .map(|c| c.info.id)
    }

    /// The invitation an incoming group call came from (what the engine needs to join the room or decline).
    pub fn invitation(&self, call: CallId) -> Option<&Invitation> {
        self.calls.get(&call)?.group.as_ref()?.invitation()
    }

    /// Whether the call is a group call (held in a room).
    pub fn is_group_call(&self, call: CallId) -> bool {
        self.calls.get(&call).is_some_and(|c| c.group.is_some())
    }

    /// Whether the invitation of `participant` moves it from this client's 1:1 call into the room (an escalation):
    /// the engine then marks it `escalate`. True for the peer of the 1:1 call this client escalated.
    pub fn invite_escalates(&self, call: CallId, participant: ParticipantId) -> bool {
        self.calls
            .get(&call)
            .and_then(|c| c.group.as_ref())
            .is_some_and(|g| g.is_owner() && g.escalated_peer() == Some(participant))
    }

    /// The room source of a group call's video or screen stream: the member's feed and the mid of the stream in
    /// its publication. `None` for a stream of a 1:1 call (or of an escalated call's 1:1 leg), or one unknown.
    pub fn group_stream_source(&self, call: CallId, stream: StreamId) -> Option<(u64, String)> {
        let g = self.calls.get(&call)?.group.as_ref()?;
        g.stream_ids.iter().find(|(_, s)| **s == stream).map(|(key, _)| key.clone())
    }

    /// The room feed of a participant of a group call, while it is a member of the room.
    pub fn group_member_feed(&self, call: CallId, participant: ParticipantId) -> Option<u64> {
        let g = self.calls.get(&call)?.group.as_ref()?;
        g.members.iter().find(|(_, p)| **p == participant).map(|(feed, _)| *feed)
    }

    /// Invites one more target into a group call this client owns. The participant is returned at once, in
    /// Connecting; it is invited as soon as this client is in the room.
    ///
    /// On a connected 1:1 call this is an escalation: the call (same id) becomes a group call this client owns,
    /// the room is created (`Command::CreateRoom`), and once this client is in it the target and the 1:1 peer
    /// are invited, the peer's invitation marked as an escalation ([`CallingCore::invite_escalates`]). The peer
    /// stays Connected (the 1:1 leg carries the conversation meanwhile); when it appears in the room the leg is
    /// dropped (`Command::DropSipLeg`). If it declines, cannot be reached or does not join within the ring
    /// timeout, it is Disconnected with that code like any invitee, and the leg is dropped too. A 1:1 call that
    /// is not Connected (ringing, on hold) cannot be escalated.
    pub fn add_participant(&mut self, call: CallId, target: Identifier) -> Result<ParticipantId, CallingError> {
        let state = self.require(call, "add a participant to", |s| s.is_active() && s != CallState::Disconnecting)?;
        if state == CallState::Incoming {
            return Err(CallingError::InvalidState { call, state, action: "add a participant to" });
        }
        let group = self.calls.get(&call).and_then(|c| c.group.as_ref());
        match group {
            None => return self.escalate(call, state, target),
            Some(g) if !g.is_owner() => return Err(CallingError::NotTheOwner(call)),
            Some(g) if g.pending.len() + g.members.len() >= MAX_INVITEES => {
                return Err(CallingError::TooManyTargets(MAX_INVITEES))
            }
            Some(_) => {}
        }
        let pid = ParticipantId(self.take_id());
        self.participants.insert(pid, (call, participant(pid, target.clone(), None)));
        let mut joined = false;
        if let Some(c) = self.calls.get_mut(&call) {
            c.info.participants.push(pid);
            if let Some(g) = c.group.as_mut() {
                g.pending.insert(pid, None);
                joined = g.joined;
            }
        }
        self.events.push_back(Event::RemoteParticipantsUpdated { call, added: vec![pid], removed: vec![] });
        if joined {
            self.commands.push_back(Command::Invite { call, participant: pid, target });
        }
        Ok(pid)
    }

    /// The owner's side of an escalation (see `add_participant`).
    fn escalate(&mut self, call: CallId, state: CallState, target: Identifier) -> Result<ParticipantId, CallingError> {
        if state != CallState::Connected {
            return Err(CallingError::InvalidState { call, state, action: "add a participant to" });
        }
        let peer = self.call(call).and_then(|c| c.participants.first().copied()).ok_or(CallingError::InvalidState {
            call,
            state,
            action: "add a participant to",
        })?;
        log::info!("{call}: escalated into a group call");
        let pid = ParticipantId(self.take_id());
        self.participants.insert(pid, (call, participant(pid, target, None)));
        let mut group = GroupEntry::new(Role::Owner);
        group.pending.insert(peer, None);
        group.pending.insert(pid, None);
        group.escalation = Some(Escalation { peer, leg_up: true, carried_stream: None });
        if let Some(c) = self.calls.get_mut(&call) {
            c.info.participants.push(pid);
            c.group = Some(Box::new(group));
        }
        self.events.push_back(Event::RemoteParticipantsUpdated { call, added: vec![pid], removed: vec![] });
        self.commands.push_back(Command::CreateRoom { call });
        Ok(pid)
    }

    /// Removes a participant from a group call this client owns: a member is kicked out of the room (it sees its
    /// call end as removed), a pending invitation is withdrawn.
    pub fn remove_participant(&mut self, call: CallId, pid: ParticipantId) -> Result<(), CallingError> {
        self.require(call, "remove a participant from", |s| s.is_active() && s != CallState::Disconnecting)?;
        let Some(group) = self.calls.get(&call).and_then(|c| c.group.as_ref()) else {
            return Err(CallingError::NotAGroupCall(call));
        };
        if !group.is_owner() {
            return Err(CallingError::NotTheOwner(call));
        }
        let feed = group.members.iter().find(|(_, p)| **p == pid).map(|(f, _)| *f);
        let pending = group.pending.contains_key(&pid);
        let target = match self.participants.get(&pid) {
            Some((c, p)) if *c == call && p.state != ParticipantState::Disconnected => p.identifier.clone(),
            _ => return Err(CallingError::NoSuchParticipant(pid)),
        };
        if let Some(feed) = feed {
            self.commands.push_back(Command::Kick { call, feed });
        } else if pending {
            if let Some(g) = self.calls.get_mut(&call).and_then(|c| c.group.as_mut()) {
                g.pending.remove(&pid);
            }
            self.commands.push_back(Command::CancelInvitation { call, target });
            self.participant_gone(call, pid, CallEndReason::new(0, subcode::REMOVED, "removed from the call"));
            self.end_if_alone(call);
        }
        Ok(())
    }

    /// What the room and the invitations did.
    pub fn on_group(&mut self, call: CallId, signal: GroupSignal, now: Instant) {
        let Some(state) = self.call(call).map(|c| c.state) else {
            log::debug!("group signal {signal:?} for unknown {call} ignored");
            return;
        };
        if !state.is_active() || !self.is_group_call(call) {
            log::debug!("group signal {signal:?} for {call} ({state:?}) ignored");
            return;
        }
        match signal {
            GroupSignal::Joined => self.on_joined(call, state, now),
            GroupSignal::InvitationDelivered { participant } => {
                let ring = now + self.config.ring_timeout;
                let escalated = self.escalated_peer(call) == Some(participant);
                let pending = self.group_mut(call).and_then(|g| g.pending.get_mut(&participant));
                if let Some(deadline) = pending {
                    *deadline = Some(ring);
                    if escalated {
                        // The peer does not ring: its device joins at once, still talking over the 1:1 leg.
                        return;
                    }
                    self.set_participant_state(call, participant, ParticipantState::Ringing);
                    if state == CallState::Connecting {
                        self.set_call_state(call, CallState::Ringing);
                    }
                }
            }
            GroupSignal::InvitationFailed { participant, code } => {
                if self.group_mut(call).and_then(|g| g.pending.remove(&participant)).is_some() {
                    self.participant_gone(call, participant, CallEndReason::sip(code, ""));
                    self.end_if_alone(call);
                }
            }
            GroupSignal::Declined { from, code } => {
                let pid = self.pending_of(call, &from);
                if let Some(pid) = pid {
                    if let Some(g) = self.group_mut(call) {
                        g.pending.remove(&pid);
                    }
                    self.participant_gone(call, pid, CallEndReason::sip(code, ""));
                    self.end_if_alone(call);
                }
            }
            GroupSignal::InvitationCancelled => {
                if state == CallState::Incoming {
                    self.end_call(call, CallEndReason::sip(487, "the invitation was withdrawn"));
                } else if self.escalation_in_progress(call) {
                    // The owner gave up moving this call (it hung up, removed us, or we were too slow to join).
                    self.commands.push_back(Command::HangUp { call });
                    self.end_call(call, CallEndReason::remote_hang_up());
                }
            }
            GroupSignal::MemberJoined(member) => self.on_member_joined(call, state, member, now),
            GroupSignal::MemberStreams { feed, streams } => self.on_member_streams(call, feed, streams),
            GroupSignal::MemberTalking { feed, talking } => {
                if let Some(pid) = self.member(call, feed) {
                    self.set_participant_speaking(call, pid, talking);
                }
            }
            GroupSignal::MemberLeft { feed, kicked } => {
                let Some(pid) = self.group_mut(call).and_then(|g| g.members.remove(&feed)) else {
                    return;
                };
                if let Some(g) = self.group_mut(call) {
                    g.streams.remove(&feed);
                    g.subscribed.remove(&feed);
                }
                let reason = if kicked {
                    CallEndReason::new(0, subcode::REMOVED, "removed from the call")
                } else {
                    CallEndReason::remote_hang_up()
                };
                self.sync_member_streams(call, feed, pid, &[]);
                self.participant_gone(call, pid, reason);
                self.resubscribe(call);
                self.end_if_alone(call);
            }
            GroupSignal::Removed => {
                self.end_call(call, CallEndReason::new(0, subcode::REMOVED, "removed from the call by its owner"))
            }
            GroupSignal::RoomClosed => self.end_call(call, CallEndReason::remote_hang_up()),
            GroupSignal::Failed(reason) if self.escalation_revertible(call) => self.revert_escalation(call, reason),
            GroupSignal::Failed(reason) => {
                if state != CallState::Disconnecting {
                    self.commands.push_back(Command::HangUp { call });
                }
                self.end_call(call, reason);
            }
        }
    }

    /// Group timers: an invitee who did not join in time (408), an invitation whose inviter never cancelled.
    pub(super) fn handle_group_timeouts(&mut self, now: Instant) {
        let calls: Vec<CallId> = self
            .calls
            .values()
            .filter(|c| c.info.state.is_active() && c.group.as_ref().and_then(|g| g.next_deadline()).is_some())
            .map(|c| c.info.id)
            .collect();
        for call in calls {
            let Some(g) = self.group_mut(call) else { continue };
            if g.invitee_deadline.is_some_and(|d| d <= now) {
                g.invitee_deadline = None;
                if self.call(call).is_some_and(|c| c.state == CallState::Incoming) {
                    self.end_call(call, CallEndReason::new(408, subcode::NO_ANSWER_TIMEOUT, "the invitation lapsed"));
                } else {
                    // An escalated call whose room was not joined in time.
                    self.commands.push_back(Command::HangUp { call });
                    let reason = CallEndReason::new(408, subcode::NO_ANSWER_TIMEOUT, "the room was not joined in time");
                    self.end_call(call, reason);
                }
                continue;
            }
            let lapsed: Vec<ParticipantId> =
                g.pending.iter().filter(|(_, d)| d.is_some_and(|d| d <= now)).map(|(p, _)| *p).collect();
            for pid in lapsed {
                if let Some(g) = self.group_mut(call) {
                    g.pending.remove(&pid);
                }
                if let Some(target) = self.participants.get(&pid).map(|(_, p)| p.identifier.clone()) {
                    self.commands.push_back(Command::CancelInvitation { call, target });
                }
                self.participant_gone(call, pid, CallEndReason::new(408, subcode::NO_ANSWER_TIMEOUT, "no answer"));
            }
            self.end_if_alone(call);
        }
    }

    /// An accepted invitation no longer lapses (it stopped ringing; joining the room is the engine's to report).
    pub(super) fn stop_invitation_lapse(&mut self, call: CallId) {
        if let Some(g) = self.group_mut(call) {
            g.invitee_deadline = None;
        }
    }

    /// The participants whose media and SIP INFO the call's 1:1 SIP leg carries: every participant of a 1:1
    /// call; the peer of an escalated call while its leg is up; nobody otherwise (a room's streams, talking and
    /// mute states come from the room).
    pub(super) fn sip_leg_participants(&self, call: CallId) -> Vec<ParticipantId> {
        let Some(c) = self.calls.get(&call) else { return Vec::new() };
        match &c.group {
            // Once Disconnected, a participant is no longer on the leg (one added to an escalation that reverted).
            None => c
                .info
                .participants
                .iter()
                .copied()
                .filter(|p| self.participants.get(p).is_some_and(|(_, p)| p.state != ParticipantState::Disconnected))
                .collect(),
            Some(g) => g.escalation.filter(|e| e.leg_up).map(|e| vec![e.peer]).unwrap_or_default(),
        }
    }

    /// The streams of a group call that come from the room (not from a 1:1 leg).
    pub(super) fn room_stream_ids(&self, call: CallId) -> Vec<StreamId> {
        let g = self.calls.get(&call).and_then(|c| c.group.as_ref());
        g.map(|g| g.stream_ids.values().copied().collect()).unwrap_or_default()
    }

    /// The call ended and its streams were removed: the room's map of them goes too.
    pub(super) fn forget_room_streams(&mut self, call: CallId) {
        if let Some(g) = self.group_mut(call) {
            g.stream_ids.clear();
            if let Some(e) = g.escalation.as_mut() {
                e.carried_stream = None;
            }
        }
    }

    /// Whether a SIP signal of the call's 1:1 leg is for the state machines of `core.rs`. A 1:1 call and a group
    /// call that never was one: yes. An escalated call: its leg's end (a BYE: the peer dropped it after moving,
    /// or hung up; a failure) only drops the leg, never the call, which lives on in the room; the peer stays
    /// invited until it joins or its invitation fails or lapses. Only on the owner's side before any invitation
    /// is out can the leg's end be nothing but the peer leaving: the peer is then out of the call at once. DTMF
    /// and the peer's state still count while the leg is up; hold and everything after the leg dropped are
    /// ignored. The confirmation of our own hang-up (the call Disconnecting) ends the call as usual.
    pub(super) fn sip_signal_applies(&mut self, call: CallId, state: CallState, event: &SignalEvent) -> bool {
        let Some(e) = self.calls.get(&call).and_then(|c| c.group.as_ref()).and_then(|g| g.escalation) else {
            return true;
        };
        match event {
            SignalEvent::Hangup { .. } | SignalEvent::Failed(_) if state == CallState::Disconnecting => true,
            SignalEvent::Hangup { code, reason } if self.escalation_revertible(call) => {
                // No invitation is out yet, so this is no move: the peer hung up.
                let reason =
                    if *code < 300 { CallEndReason::remote_hang_up() } else { CallEndReason::sip(*code, reason) };
                self.peer_left_before_the_move(call, e.peer, reason);
                false
            }
            SignalEvent::Failed(reason) if self.escalation_revertible(call) => {
                self.peer_left_before_the_move(call, e.peer, reason.clone());
                false
            }
            SignalEvent::Hangup { .. } | SignalEvent::Failed(_) => {
                log::info!("{call}: the 1:1 leg ended ({:?}); the call goes on in the room", Loggable(event));
                self.drop_sip_leg(call, true);
                false
            }
            SignalEvent::Dtmf(_) | SignalEvent::PeerState { .. } if e.leg_up => true,
            other => {
                log::debug!("signal {:?} of the 1:1 leg of escalated {call} ignored", Loggable(other));
                false
            }
        }
    }

    /// The owner's peer ended the 1:1 leg before it was invited into the room: it is out of the call (and is not
    /// invited); the call goes on with the others, if any.
    fn peer_left_before_the_move(&mut self, call: CallId, peer: ParticipantId, reason: CallEndReason) {
        log::info!("{call}: the peer ended the 1:1 leg before the move ({})", reason.message);
        if let Some(g) = self.group_mut(call) {
            g.pending.remove(&peer);
        }
        self.participant_gone(call, peer, reason);
        self.end_if_alone(call);
    }

    /// Drops the 1:1 SIP leg of an escalated call, once (`Command::DropSipLeg`): its video stream goes, or with
    /// `carry` is kept unavailable for the peer's camera in the room to take over (unless that camera is already
    /// there); the leg's speaking state and level meter stop.
    pub(super) fn drop_sip_leg(&mut self, call: CallId, carry: bool) {
        let Some(e) = self.group_mut(call).and_then(|g| g.escalation.as_mut()) else { return };
        if !e.leg_up {
            return;
        }
        e.leg_up = false;
        let peer = e.peer;
        let room_streams = self.room_stream_ids(call);
        let (leg_stream, room_camera) = match self.participants.get(&peer) {
            Some((_, p)) => (
                p.streams.iter().find(|s| s.kind == VideoStreamKind::Video && !room_streams.contains(&s.id)).copied(),
                p.streams.iter().any(|s| s.kind == VideoStreamKind::Video && room_streams.contains(&s.id)),
            ),
            None => (None, false),
        };
        if let Some(s) = leg_stream {
            if carry && !room_camera {
                if let Some(e) = self.group_mut(call).and_then(|g| g.escalation.as_mut()) {
                    e.carried_stream = Some(s.id);
                }
                self.set_stream_available(call, peer, s.id, false);
            } else {
                self.remove_stream(call, peer, s.id);
            }
        }
        if let Some(c) = self.calls.get_mut(&call) {
            c.video_negotiated = false;
            c.remote_video_flowing = false;
            c.quiet_since = None;
        }
        self.set_participant_speaking(call, peer, false);
        self.refresh_renderers();
        self.commands.push_back(Command::DropSipLeg { call });
    }

    /// The end of a group call this client owns (its hang-up, a lost session, a failed room) withdraws the
    /// invitations still ringing.
    pub(super) fn cancel_pending_invitations(&mut self, call: CallId) {
        let Some(g) = self.group_mut(call) else { return };
        let pending: Vec<ParticipantId> = std::mem::take(&mut g.pending).into_keys().collect();
        for pid in pending {
            if let Some(target) = self.participants.get(&pid).map(|(_, p)| p.identifier.clone()) {
                self.commands.push_back(Command::CancelInvitation { call, target });
            }
        }
    }

    // ----- internals -----

    fn group_mut(&mut self, call: CallId) -> Option<&mut GroupEntry> {
        self.calls.get_mut(&call).and_then(|c: &mut CallEntry| c.group.as_deref_mut())
    }

    fn escalated_peer(&self, call: CallId) -> Option<ParticipantId> {
        self.calls.get(&call)?.group.as_ref()?.escalated_peer()
    }

    /// An escalated call whose 1:1 leg is still up, or that this client has not joined the room of yet.
    fn escalation_in_progress(&self, call: CallId) -> bool {
        let g = self.calls.get(&call).and_then(|c| c.group.as_ref());
        g.is_some_and(|g| g.escalation.is_some_and(|e| e.leg_up) || (g.escalation.is_some() && !g.joined))
    }

    /// An escalation this client owns whose room failed before anyone was invited: the 1:1 call is untouched.
    fn escalation_revertible(&self, call: CallId) -> bool {
        let g = self.calls.get(&call).and_then(|c| c.group.as_ref());
        g.is_some_and(|g| g.is_owner() && !g.joined && g.escalation.is_some_and(|e| e.leg_up))
    }

    /// The room of an escalation could not be set up: the call goes back to the 1:1 call it was (the peer never
    /// heard of the move), and the participants added meanwhile are Disconnected with the failure's reason.
    fn revert_escalation(&mut self, call: CallId, reason: CallEndReason) {
        log::warn!("{call}: the room failed ({}); back to the 1:1 call", reason.message);
        let Some(peer) = self.escalated_peer(call) else { return };
        let added: Vec<ParticipantId> = self.participant_ids(call).into_iter().filter(|p| *p != peer).collect();
        for pid in added {
            if self.participants.get(&pid).is_some_and(|(_, p)| p.state != ParticipantState::Disconnected) {
                self.participant_gone(call, pid, reason.clone());
            }
        }
        if let Some(c) = self.calls.get_mut(&call) {
            c.group = None;
        }
    }

    fn set_stream_available(&mut self, call: CallId, pid: ParticipantId, sid: StreamId, available: bool) {
        let Some((_, p)) = self.participants.get_mut(&pid) else { return };
        if let Some(s) = p.streams.iter_mut().find(|s| s.id == sid) {
            if s.is_available != available {
                s.is_available = available;
                self.events.push_back(Event::StreamIsAvailableChanged {
                    call,
                    participant: pid,
                    stream: sid,
                    is_available: available,
                });
            }
        }
    }

    /// The stream the escalated `pid` brought from the 1:1 leg, handed over (once) to its camera in the room.
    fn take_carried_stream(&mut self, call: CallId, pid: ParticipantId) -> Option<StreamId> {
        let e = self.group_mut(call)?.escalation.as_mut()?;
        if e.peer == pid {
            e.carried_stream.take()
        } else {
            None
        }
    }

    fn member(&self, call: CallId, feed: u64) -> Option<ParticipantId> {
        self.calls.get(&call)?.group.as_ref()?.members.get(&feed).copied()
    }

    /// The participant still waiting for `who` to join.
    fn pending_of(&self, call: CallId, who: &Identifier) -> Option<ParticipantId> {
        let g = self.calls.get(&call)?.group.as_ref()?;
        g.pending.keys().copied().find(|pid| self.participants.get(pid).is_some_and(|(_, p)| &p.identifier == who))
    }

    fn on_joined(&mut self, call: CallId, state: CallState, now: Instant) {
        let Some(g) = self.group_mut(call) else { return };
        if g.joined {
            return;
        }
        g.joined = true;
        g.invitee_deadline = None;
        if g.is_owner() {
            let escalated = g.escalated_peer();
            let pending: Vec<ParticipantId> = g.pending.keys().copied().collect();
            let ring = now + self.config.ring_timeout;
            for pid in pending {
                if Some(pid) == escalated {
                    // The escalated peer joins by itself, without ringing: bounded from now, delivered or not.
                    if let Some(deadline) = self.group_mut(call).and_then(|g| g.pending.get_mut(&pid)) {
                        *deadline = Some(ring);
                    }
                }
                if let Some(target) = self.participants.get(&pid).map(|(_, p)| p.identifier.clone()) {
                    self.commands.push_back(Command::Invite { call, participant: pid, target });
                }
            }
        } else if self.escalation_in_progress(call) {
            // The invitee of an escalation is in the room, where the owner already is: the 1:1 leg can go.
            self.drop_sip_leg(call, true);
        } else if state == CallState::Connecting {
            // An invitee is in the call once it is in the room.
            if let Some(c) = self.calls.get_mut(&call) {
                c.info.connected_at = Some(now);
                c.ring_deadline = None;
            }
            self.set_call_state(call, CallState::Connected);
        }
    }

    fn on_member_joined(&mut self, call: CallId, state: CallState, member: RoomMember, now: Instant) {
        let Some(g) = self.calls.get(&call).and_then(|c| c.group.as_ref()) else { return };
        if g.members.contains_key(&member.feed) {
            return;
        }
        if g.members.len() >= MAX_MEMBERS {
            log::warn!("{call}: room member {} ignored: already {MAX_MEMBERS} members", member.feed);
            return;
        }
        // An invitee (or, for an invitee, the inviter and the others it already knows) by its user id; else a
        // newcomer: another invitee of the owner, or a guest.
        let known = member.identifier.as_ref().and_then(|who| {
            self.pending_of(call, who).or_else(|| {
                self.participant_ids(call).into_iter().find(|pid| {
                    self.participants.get(pid).is_some_and(|(_, p)| {
                        &p.identifier == who
                            && p.state != ParticipantState::Disconnected
                            && !g.members.values().any(|m| m == pid)
                    })
                })
            })
        });
        let pid = match known {
            Some(pid) => {
                if let Some(g) = self.group_mut(call) {
                    g.pending.remove(&pid);
                }
                if let (Some(name), Some((_, p))) = (member.display_name.clone(), self.participants.get_mut(&pid)) {
                    p.display_name.get_or_insert(name);
                }
                pid
            }
            None => {
                let Some(identifier) = member.identifier.clone().or_else(|| guest_identifier(member.feed)) else {
                    return;
                };
                let pid = ParticipantId(self.take_id());
                self.participants.insert(pid, (call, participant(pid, identifier, member.display_name.clone())));
                if let Some(c) = self.calls.get_mut(&call) {
                    c.info.participants.push(pid);
                }
                self.events.push_back(Event::RemoteParticipantsUpdated { call, added: vec![pid], removed: vec![] });
                pid
            }
        };
        if let Some(g) = self.group_mut(call) {
            g.members.insert(member.feed, pid);
        }
        self.set_participant_state(call, pid, ParticipantState::Connected);
        if self.escalated_peer(call) == Some(pid) && self.group_is_owner(call) {
            // The peer of the escalated 1:1 call is in the room with us: the 1:1 leg can go.
            self.drop_sip_leg(call, true);
        }
        // The owner's call is connected once somebody is in the room with it.
        if matches!(state, CallState::Connecting | CallState::Ringing) && self.group_is_owner(call) {
            if let Some(c) = self.calls.get_mut(&call) {
                c.ring_deadline = None;
                c.info.connected_at = Some(now);
            }
            self.set_call_state(call, CallState::Connected);
        }
    }

    fn group_is_owner(&self, call: CallId) -> bool {
        self.calls.get(&call).and_then(|c| c.group.as_ref()).is_some_and(|g| g.is_owner())
    }

    fn on_member_streams(&mut self, call: CallId, feed: u64, streams: Vec<RoomStream>) {
        let Some(pid) = self.member(call, feed) else {
            log::debug!("{call}: streams of unknown member {feed} ignored");
            return;
        };
        let streams: Vec<RoomStream> = streams.into_iter().take(8).collect();
        let muted = !streams.iter().any(|s| s.kind == RoomStreamKind::Audio && s.active);
        self.set_participant_muted(call, pid, muted);
        self.sync_member_streams(call, feed, pid, &streams);
        if let Some(g) = self.group_mut(call) {
            g.streams.insert(feed, streams);
        }
        self.resubscribe(call);
    }

    /// Brings a participant's video and screen streams in line with the member's room streams.
    fn sync_member_streams(&mut self, call: CallId, feed: u64, pid: ParticipantId, streams: &[RoomStream]) {
        let wanted: Vec<(String, VideoStreamKind, bool)> = streams
            .iter()
            .filter_map(|s| match s.kind {
                RoomStreamKind::Audio => None,
                RoomStreamKind::Video => Some((s.mid.clone(), VideoStreamKind::Video, s.active)),
                RoomStreamKind::ScreenShare => Some((s.mid.clone(), VideoStreamKind::ScreenSharing, s.active)),
            })
            .collect();
        // Streams that went away.
        let gone: Vec<((u64, String), StreamId)> = self
            .calls
            .get(&call)
            .and_then(|c| c.group.as_ref())
            .map(|g| {
                g.stream_ids
                    .iter()
                    .filter(|((f, mid), _)| *f == feed && !wanted.iter().any(|(m, _, _)| m == mid))
                    .map(|(k, v)| (k.clone(), *v))
                    .collect()
            })
            .unwrap_or_default();
        for (key, sid) in gone {
            if let Some(g) = self.group_mut(call) {
                g.stream_ids.remove(&key);
            }
            self.remove_stream(call, pid, sid);
        }
        // New streams, and availability.
        for (mid, kind, active) in wanted {
            let key = (feed, mid);
            let existing =
                self.calls.get(&call).and_then(|c| c.group.as_ref()).and_then(|g| g.stream_ids.get(&key)).copied();
            let carried = match (existing, kind) {
                (None, VideoStreamKind::Video) => self.take_carried_stream(call, pid),
                _ => None,
            };
            if let Some(sid) = carried {
                // The escalated peer's camera in the room continues the 1:1 leg's video stream.
                if let Some(g) = self.group_mut(call) {
                    g.stream_ids.insert(key.clone(), sid);
                }
            }
            match existing.or(carried) {
                Some(sid) => self.set_stream_available(call, pid, sid, active),
                None => {
                    let sid = StreamId(self.take_id());
                    if let Some(g) = self.group_mut(call) {
                        g.stream_ids.insert(key, sid);
                    }
                    if let Some((_, p)) = self.participants.get_mut(&pid) {
                        p.streams.push(StreamInfo { id: sid, kind, is_available: active });
                    }
                    self.push_streams_updated(call, pid, kind, vec![sid], vec![]);
                }
            }
        }
        // The escalated peer has no camera in the room: the 1:1 leg's stream it brought ends.
        if let Some(sid) = self.take_carried_stream(call, pid) {
            self.remove_stream(call, pid, sid);
        }
        self.refresh_renderers();
    }

    fn push_streams_updated(
        &mut self,
        call: CallId,
        participant: ParticipantId,
        kind: VideoStreamKind,
        added: Vec<StreamId>,
        removed: Vec<StreamId>,
    ) {
        self.events.push_back(match kind {
            VideoStreamKind::Video => Event::VideoStreamsUpdated { call, participant, added, removed },
            VideoStreamKind::ScreenSharing => Event::ScreenSharingStreamsUpdated { call, participant, added, removed },
        });
    }

    /// Subscribes to every member's audio, to the first [`MAX_VIDEO_SUBSCRIPTIONS`] active cameras (in order of
    /// joining) and to [`MAX_SCREEN_SUBSCRIPTIONS`] active screen share; unsubscribes from the rest.
    fn resubscribe(&mut self, call: CallId) {
        let Some(g) = self.calls.get(&call).and_then(|c| c.group.as_ref()) else { return };
        let (mut videos, mut screens) = (0, 0);
        let mut want: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        // Members in order of joining: feed ids are not ordered, participant ids are.
        let mut members: Vec<(u64, ParticipantId)> = g.members.iter().map(|(f, p)| (*f, *p)).collect();
        members.sort_by_key(|(_, p)| *p);
        for (feed, _) in members {
            for s in g.streams.get(&feed).into_iter().flatten() {
                let take = match s.kind {
                    RoomStreamKind::Audio => true,
                    RoomStreamKind::Video if s.active && videos < MAX_VIDEO_SUBSCRIPTIONS => {
                        videos += 1;
                        true
                    }
                    RoomStreamKind::ScreenShare if s.active && screens < MAX_SCREEN_SUBSCRIPTIONS => {
                        screens += 1;
                        true
                    }
                    _ => false,
                };
                if take {
                    want.entry(feed).or_default().push(s.mid.clone());
                }
            }
        }
        let mut commands = Vec::new();
        for (feed, mids) in &want {
            let have = g.subscribed.get(feed).cloned().unwrap_or_default();
            let add: Vec<String> = mids.iter().filter(|m| !have.contains(m)).cloned().collect();
            let drop: Vec<String> = have.iter().filter(|m| !mids.contains(m)).cloned().collect();
            if !add.is_empty() {
                commands.push(Command::Subscribe { call, feed: *feed, mids: add });
            }
            if !drop.is_empty() {
                commands.push(Command::Unsubscribe { call, feed: *feed, mids: drop });
            }
        }
        for (feed, have) in &g.subscribed {
            if !want.contains_key(feed) && !have.is_empty() && g.members.contains_key(feed) {
                commands.push(Command::Unsubscribe { call, feed: *feed, mids: have.clone() });
            }
        }
        self.commands.extend(commands);
        if let Some(g) = self.group_mut(call) {
            g.subscribed = want;
        }
    }

    /// A participant is out of the call: Disconnected with its reason, and no longer among the remote participants.
    fn participant_gone(&mut self, call: CallId, pid: ParticipantId, reason: CallEndReason) {
        if let Some(g) = self.group_mut(call) {
            g.last_gone = Some(reason.clone());
        }
        if self.escalated_peer(call) == Some(pid) {
            // The peer of the escalated 1:1 call is out (declined, unreachable, lapsed, removed, left): so is the
            // 1:1 leg, and the video stream it brought.
            self.drop_sip_leg(call, false);
            if let Some(sid) = self.take_carried_stream(call, pid) {
                self.remove_stream(call, pid, sid);
                self.refresh_renderers();
            }
        }
        self.end_participant(call, pid, reason);
        self.set_participant_state(call, pid, ParticipantState::Disconnected);
        self.events.push_back(Event::RemoteParticipantsUpdated { call, added: vec![], removed: vec![pid] });
    }

    /// A group call with nobody left in it or on the way ends: for the owner when every invitation failed or
    /// lapsed and every member left; for an invitee when every other member left.
    fn end_if_alone(&mut self, call: CallId) {
        let Some(c) = self.calls.get(&call) else { return };
        let Some(g) = c.group.as_ref() else { return };
        if !c.info.state.is_active() || c.info.state == CallState::Incoming {
            return;
        }
        let anyone = !g.pending.is_empty() || !g.members.is_empty();
        // An invitee waits for the room until it has joined: the owner is its first member.
        if anyone || (!g.is_owner() && !g.joined) {
            return;
        }
        let connected_before = c.info.connected_at.is_some();
        let reason = if connected_before {
            CallEndReason::remote_hang_up()
        } else {
            // Nobody ever joined: the reason of the last invitee (all declined, unreachable or lapsed).
            g.last_gone.clone().unwrap_or_else(|| CallEndReason::new(408, subcode::NO_ANSWER_TIMEOUT, "no answer"))
        };
        self.commands.push_back(Command::HangUp { call });
        self.end_call(call, reason);
    }
}

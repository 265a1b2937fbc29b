//! Group calls in the calling core: a call held in a video room (Janus's videoroom plugin, one room per call),
//! with invitations sent to its targets (`crate::invitation`). Sans-IO like the rest of the core: the engine
//! reports what the room and the invitations do (`on_group`), the core keeps the roster (who is invited, ringing,
//! in the room; their streams, mute and speaking states), decides which streams to receive, and asks the engine
//! for what it must do (`Command::CreateRoom`, `Invite`, `Subscribe`, `Kick`, ...).
//!
//! The call's owner created the room: it invites, removes (kicks) and ends the room. An invitee rings like an
//! incoming 1:1 call and joins the room when it accepts. A member is known by its room feed id; members who
//! name a callbox user (their publisher display) are matched with the invitations, others join as guests.

use super::{CallEntry, CallingCore, CallingError, Command};
use crate::events::Event;
use crate::identifier::Identifier;
use crate::invitation::Invitation;
use crate::model::{
    subcode, CallDirection, CallEndReason, CallId, CallState, ParticipantId, ParticipantInfo, ParticipantState,
    StreamId, StreamInfo, StreamKind,
};
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
    pub fn incoming_invitation(&mut self, invitation: Invitation, now: Instant) -> CallId {
        let busy = self.active_calls().next().is_some();
        let from = invitation.caller.clone();
        let display_name = invitation.caller_display_name.clone();
        let ring = Duration::from_secs(u64::from(invitation.ring_secs)) + INVITEE_RING_GRACE;
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
        call
    }

    /// The invitation an incoming group call came from (what the engine needs to join the room or decline).
    pub fn invitation(&self, call: CallId) -> Option<&Invitation> {
        self.calls.get(&call)?.group.as_ref()?.invitation()
    }

    /// Whether the call is a group call (held in a room).
    pub fn is_group_call(&self, call: CallId) -> bool {
        self.calls.get(&call).is_some_and(|c| c.group.is_some())
    }

    /// Invites one more target into a group call this client owns. The participant is returned at once, in
    /// Connecting; it is invited as soon as this client is in the room.
    pub fn add_participant(&mut self, call: CallId, target: Identifier) -> Result<ParticipantId, CallingError> {
        let state = self.require(call, "add a participant to", |s| s.is_active() && s != CallState::Disconnecting)?;
        if state == CallState::Incoming {
            return Err(CallingError::InvalidState { call, state, action: "add a participant to" });
        }
        let group = self.calls.get(&call).and_then(|c| c.group.as_ref());
        match group {
            None => return Err(CallingError::NotAGroupCall(call)),
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
                let pending = self.group_mut(call).and_then(|g| g.pending.get_mut(&participant));
                if let Some(deadline) = pending {
                    *deadline = Some(ring);
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
                self.end_call(call, CallEndReason::new(408, subcode::NO_ANSWER_TIMEOUT, "the invitation lapsed"));
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

    /// Hanging up a group call this client owns withdraws the invitations still ringing.
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
        if g.is_owner() {
            let pending: Vec<ParticipantId> = g.pending.keys().copied().collect();
            for pid in pending {
                if let Some(target) = self.participants.get(&pid).map(|(_, p)| p.identifier.clone()) {
                    self.commands.push_back(Command::Invite { call, participant: pid, target });
                }
            }
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
        let wanted: Vec<(String, StreamKind, bool)> = streams
            .iter()
            .filter_map(|s| match s.kind {
                RoomStreamKind::Audio => None,
                RoomStreamKind::Video => Some((s.mid.clone(), StreamKind::Video, s.active)),
                RoomStreamKind::ScreenShare => Some((s.mid.clone(), StreamKind::ScreenSharing, s.active)),
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
            let Some((_, p)) = self.participants.get_mut(&pid) else { continue };
            let Some(i) = p.streams.iter().position(|s| s.id == sid) else { continue };
            let s = p.streams.remove(i);
            if s.is_available {
                self.events.push_back(Event::StreamIsAvailableChanged {
                    call,
                    participant: pid,
                    stream: sid,
                    is_available: false,
                });
            }
            self.push_streams_updated(call, pid, s.kind, vec![], vec![sid]);
        }
        // New streams, and availability.
        for (mid, kind, active) in wanted {
            let key = (feed, mid);
            let existing = self.calls.get(&call).and_then(|c| c.group.as_ref()).and_then(|g| g.stream_ids.get(&key));
            match existing.copied() {
                Some(sid) => {
                    let Some((_, p)) = self.participants.get_mut(&pid) else { continue };
                    if let Some(s) = p.streams.iter_mut().find(|s| s.id == sid) {
                        if s.is_available != active {
                            s.is_available = active;
                            self.events.push_back(Event::StreamIsAvailableChanged {
                                call,
                                participant: pid,
                                stream: sid,
                                is_available: active,
                            });
                        }
                    }
                }
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
        self.refresh_renderers();
    }

    fn push_streams_updated(
        &mut self,
        call: CallId,
        participant: ParticipantId,
        kind: StreamKind,
        added: Vec<StreamId>,
        removed: Vec<StreamId>,
    ) {
        self.events.push_back(match kind {
            StreamKind::Video => Event::VideoStreamsUpdated { call, participant, added, removed },
            StreamKind::ScreenSharing => Event::ScreenSharingStreamsUpdated { call, participant, added, removed },
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

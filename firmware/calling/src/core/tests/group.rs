//! Unit tests of group calls in the calling core: the owner's invitations and roster, the invitee's side,
//! streams and subscriptions, mute and speaking, removal, timeouts.

use crate::core::*;
use crate::invitation::{GroupCallId, Invitation};
use crate::secret::Secret;

fn user(name: &str) -> Identifier {
    Identifier::user(name).unwrap()
}

fn ready() -> (CallingCore, Instant) {
    let mut core = CallingCore::new(CoreConfig::default());
    core.set_connection_state(ConnectionState::Ready);
    drain(&mut core);
    (core, Instant::now())
}

fn drain(core: &mut CallingCore) -> (Vec<Command>, Vec<Event>) {
    (std::iter::from_fn(|| core.poll_command()).collect(), std::iter::from_fn(|| core.poll_event()).collect())
}

fn member(feed: u64, name: &str) -> GroupSignal {
    GroupSignal::MemberJoined(RoomMember { feed, identifier: Some(user(name)), display_name: Some(name.into()) })
}

fn av(active_audio: bool) -> Vec<RoomStream> {
    vec![
        RoomStream { mid: "0".into(), kind: RoomStreamKind::Audio, active: active_audio },
        RoomStream { mid: "1".into(), kind: RoomStreamKind::Video, active: true },
    ]
}

fn participant_named(core: &CallingCore, call: CallId, name: &str) -> ParticipantInfo {
    let info = core.call(call).unwrap();
    info.participants
        .iter()
        .filter_map(|p| core.participant(*p))
        .find(|p| p.identifier == user(name))
        .cloned()
        .unwrap_or_else(|| panic!("no participant {name}"))
}

/// An owner's call to bob and carol, in the room, both invitations delivered.
fn owner_call(core: &mut CallingCore, now: Instant) -> CallId {
    let call = core.start_call(&[user("bob"), user("carol")], now).unwrap();
    core.on_group(call, GroupSignal::Joined, now);
    let (commands, _) = drain(core);
    for c in commands {
        if let Command::Invite { participant, .. } = c {
            core.on_group(call, GroupSignal::InvitationDelivered { participant }, now);
        }
    }
    drain(core);
    call
}

#[test]
fn the_owner_creates_the_room_and_invites_each_target_once_in_it() {
    let (mut core, now) = ready();
    let call = core.start_call(&[user("bob"), user("carol"), user("bob")], now).unwrap();
    assert!(core.is_group_call(call));
    let (commands, events) = drain(&mut core);
    assert_eq!(commands, vec![Command::CreateRoom { call }]);
    assert_eq!(core.call(call).unwrap().participants.len(), 2, "a target named twice is invited once");
    assert!(events.iter().any(|e| matches!(e, Event::RemoteParticipantsUpdated { added, .. } if added.len() == 1)));
    for name in ["bob", "carol"] {
        assert_eq!(participant_named(&core, call, name).state, ParticipantState::Connecting);
    }

    core.on_group(call, GroupSignal::Joined, now);
    let (commands, _) = drain(&mut core);
    let invited: Vec<&Identifier> = commands
        .iter()
        .filter_map(|c| match c {
            Command::Invite { target, .. } => Some(target),
            _ => None,
        })
        .collect();
    assert_eq!(invited, vec![&user("bob"), &user("carol")]);
    core.on_group(call, GroupSignal::Joined, now);
    assert!(drain(&mut core).0.is_empty(), "joining twice invites nobody twice");

    let bob = participant_named(&core, call, "bob").id;
    core.on_group(call, GroupSignal::InvitationDelivered { participant: bob }, now);
    assert_eq!(core.participant(bob).unwrap().state, ParticipantState::Ringing);
    assert_eq!(core.call(call).unwrap().state, CallState::Ringing);
}

#[test]
fn members_are_matched_to_invitations_and_connect_the_call() {
    let (mut core, now) = ready();
    let call = owner_call(&mut core, now);
    core.on_group(call, member(11, "bob"), now);
    let bob = participant_named(&core, call, "bob");
    assert_eq!(bob.state, ParticipantState::Connected);
    assert_eq!(core.call(call).unwrap().state, CallState::Connected);
    assert_eq!(core.call(call).unwrap().participants.len(), 2, "no new participant for an invitee");

    // Its streams: a camera (a video stream of the model) and audio; both subscribed.
    core.on_group(call, GroupSignal::MemberStreams { feed: 11, streams: av(true) }, now);
    let (commands, events) = drain(&mut core);
    assert_eq!(commands, vec![Command::Subscribe { call, feed: 11, mids: vec!["0".into(), "1".into()] }]);
    assert!(events.iter().any(|e| matches!(e, Event::VideoStreamsUpdated { participant, added, .. }
        if *participant == bob.id && added.len() == 1)));
    let streams = core.participant(bob.id).unwrap().streams.clone();
    assert_eq!(streams.len(), 1);
    assert!(streams[0].is_available && streams[0].kind == VideoStreamKind::Video);
    assert!(!core.participant(bob.id).unwrap().is_muted);

    // Talking, and muting (its audio stream inactive).
    core.on_group(call, GroupSignal::MemberTalking { feed: 11, talking: true }, now);
    assert!(core.participant(bob.id).unwrap().is_speaking);
    core.on_group(call, GroupSignal::MemberTalking { feed: 11, talking: false }, now);
    assert!(!core.participant(bob.id).unwrap().is_speaking);
    core.on_group(call, GroupSignal::MemberStreams { feed: 11, streams: av(false) }, now);
    assert!(core.participant(bob.id).unwrap().is_muted);
    core.on_group(call, GroupSignal::MemberStreams { feed: 11, streams: av(true) }, now);
    assert!(!core.participant(bob.id).unwrap().is_muted);
    assert!(drain(&mut core).0.is_empty(), "unchanged streams are not subscribed again");
}

#[test]
fn a_screen_share_is_a_stream_of_its_own_and_streams_come_and_go() {
    let (mut core, now) = ready();
    let call = owner_call(&mut core, now);
    core.on_group(call, member(11, "bob"), now);
    let bob = participant_named(&core, call, "bob").id;
    let mut streams = av(true);
    streams.push(RoomStream { mid: "2".into(), kind: RoomStreamKind::ScreenShare, active: true });
    core.on_group(call, GroupSignal::MemberStreams { feed: 11, streams: streams.clone() }, now);
    let (_, events) = drain(&mut core);
    assert!(events.iter().any(|e| matches!(e, Event::ScreenSharingStreamsUpdated { added, .. } if added.len() == 1)));
    let kinds: Vec<VideoStreamKind> = core.participant(bob).unwrap().streams.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, vec![VideoStreamKind::Video, VideoStreamKind::ScreenSharing]);

    // The share stops: its stream is removed and unsubscribed; the camera pauses: not available.
    streams.pop();
    streams[1].active = false;
    core.on_group(call, GroupSignal::MemberStreams { feed: 11, streams }, now);
    let (commands, events) = drain(&mut core);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::ScreenSharingStreamsUpdated { removed, .. } if removed.len() == 1)));
    assert!(events.iter().any(|e| matches!(e, Event::StreamIsAvailableChanged { is_available: false, .. })));
    assert_eq!(commands, vec![Command::Unsubscribe { call, feed: 11, mids: vec!["1".into(), "2".into()] }]);
    assert_eq!(core.participant(bob).unwrap().streams.len(), 1);
}

#[test]
fn only_nine_cameras_and_one_screen_are_received_but_every_voice_is() {
    let (mut core, now) = ready();
    let call = core.start_call(&[user("bob"), user("carol")], now).unwrap();
    core.on_group(call, GroupSignal::Joined, now);
    for feed in 1..=11u64 {
        core.on_group(
            call,
            GroupSignal::MemberJoined(RoomMember { feed, identifier: None, display_name: Some(format!("web {feed}")) }),
            now,
        );
        let mut streams = av(true);
        streams.push(RoomStream { mid: "2".into(), kind: RoomStreamKind::ScreenShare, active: true });
        core.on_group(call, GroupSignal::MemberStreams { feed, streams }, now);
    }
    let (commands, _) = drain(&mut core);
    let mut subscribed: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for c in commands {
        match c {
            Command::Subscribe { feed, mids, .. } => subscribed.entry(feed).or_default().extend(mids),
            Command::Unsubscribe { feed, mids, .. } => {
                subscribed.entry(feed).or_default().retain(|m| !mids.contains(m))
            }
            _ => {}
        }
    }
    let count = |mid: &str| subscribed.values().filter(|m| m.contains(&mid.to_string())).count();
    assert_eq!((count("0"), count("1"), count("2")), (11, MAX_VIDEO_SUBSCRIPTIONS, MAX_SCREEN_SUBSCRIPTIONS));
    // Guests are participants named after their feed, with their display name.
    let guest = participant_named(&core, call, "guest-3");
    assert_eq!(guest.display_name.as_deref(), Some("web 3"));

    // A camera subscriber leaves: the tenth camera takes its place.
    core.on_group(call, GroupSignal::MemberLeft { feed: 1, kicked: false }, now);
    let (commands, _) = drain(&mut core);
    assert!(commands.contains(&Command::Subscribe { call, feed: 10, mids: vec!["1".into()] }), "{commands:?}");
}

#[test]
fn declines_failures_and_lapsed_invitations_end_the_participant_then_the_call() {
    let (mut core, now) = ready();
    let call = owner_call(&mut core, now);
    core.on_group(call, GroupSignal::Declined { from: user("carol"), code: 603 }, now);
    let carol = participant_named(&core, call, "carol");
    assert_eq!(carol.state, ParticipantState::Disconnected);
    assert_eq!(carol.call_end_reason.map(|r| r.code), Some(603));
    assert!(core.call(call).unwrap().state.is_active(), "bob still rings");
    assert_eq!(core.poll_timeout(), Some(now + CoreConfig::default().ring_timeout));

    // Bob does not answer: his invitation is withdrawn (408) and the call ends with nobody in it.
    drain(&mut core);
    core.handle_timeout(now + CoreConfig::default().ring_timeout);
    let (commands, _) = drain(&mut core);
    assert!(commands.contains(&Command::CancelInvitation { call, target: user("bob") }));
    assert!(commands.contains(&Command::HangUp { call }));
    let info = core.call(call).unwrap();
    assert_eq!(info.state, CallState::Disconnected);
    assert_eq!(info.end_reason.as_ref().map(|r| r.code), Some(408));

    // An invitation that cannot be delivered: 480 for that participant.
    let (mut core, now) = ready();
    let call = core.start_call(&[user("bob"), user("dave")], now).unwrap();
    core.on_group(call, GroupSignal::Joined, now);
    let dave = participant_named(&core, call, "dave").id;
    core.on_group(call, GroupSignal::InvitationFailed { participant: dave, code: 480 }, now);
    assert_eq!(core.participant(dave).unwrap().call_end_reason.as_ref().map(|r| r.code), Some(480));
    core.on_group(call, member(5, "bob"), now);
    assert_eq!(core.call(call).unwrap().state, CallState::Connected);
}

#[test]
fn members_leave_and_the_owner_removes_participants() {
    let (mut core, now) = ready();
    let call = owner_call(&mut core, now);
    core.on_group(call, member(11, "bob"), now);
    core.on_group(call, member(12, "carol"), now);
    core.on_group(call, GroupSignal::MemberStreams { feed: 12, streams: av(true) }, now);
    drain(&mut core);
    let (bob, carol) = (participant_named(&core, call, "bob").id, participant_named(&core, call, "carol").id);

    // Removing a member is the room's kick; the member leaves as kicked.
    core.remove_participant(call, carol).unwrap();
    assert_eq!(drain(&mut core).0, vec![Command::Kick { call, feed: 12 }]);
    core.on_group(call, GroupSignal::MemberLeft { feed: 12, kicked: true }, now);
    let (_, events) = drain(&mut core);
    let p = core.participant(carol).unwrap();
    assert_eq!(p.state, ParticipantState::Disconnected);
    assert_eq!(p.call_end_reason.as_ref().map(|r| (r.code, r.subcode)), Some((0, subcode::REMOVED)));
    assert!(p.streams.is_empty());
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::RemoteParticipantsUpdated { removed, .. } if removed == &[carol])));
    assert_eq!(core.remove_participant(call, carol), Err(CallingError::NoSuchParticipant(carol)));

    // The last member leaves: the call is over.
    core.on_group(call, GroupSignal::MemberLeft { feed: 11, kicked: false }, now);
    let info = core.call(call).unwrap();
    assert_eq!(info.state, CallState::Disconnected);
    assert_eq!(info.end_reason, Some(CallEndReason::remote_hang_up()));
    assert_eq!(core.participant(bob).unwrap().state, ParticipantState::Disconnected);
}

#[test]
fn participants_are_added_and_pending_ones_withdrawn() {
    let (mut core, now) = ready();
    let call = core.start_call(&[user("bob"), user("carol")], now).unwrap();
    // Before the room is joined: the participant exists at once, its invitation waits.
    let dave = core.add_participant(call, user("dave")).unwrap();
    assert_eq!(core.participant(dave).unwrap().state, ParticipantState::Connecting);
    assert_eq!(drain(&mut core).0, vec![Command::CreateRoom { call }]);
    core.on_group(call, GroupSignal::Joined, now);
    let (commands, _) = drain(&mut core);
    assert!(commands.contains(&Command::Invite { call, participant: dave, target: user("dave") }));
    // After: invited at once.
    let erin = core.add_participant(call, user("erin")).unwrap();
    assert_eq!(drain(&mut core).0, vec![Command::Invite { call, participant: erin, target: user("erin") }]);

    // Withdrawing a pending invitation.
    core.remove_participant(call, erin).unwrap();
    assert_eq!(drain(&mut core).0, vec![Command::CancelInvitation { call, target: user("erin") }]);
    assert_eq!(core.participant(erin).unwrap().state, ParticipantState::Disconnected);

    // Hanging up withdraws what still rings.
    core.hang_up(call, now).unwrap();
    let (commands, _) = drain(&mut core);
    let cancelled = commands.iter().filter(|c| matches!(c, Command::CancelInvitation { .. })).count();
    assert_eq!(cancelled, 3);
    assert_eq!(commands.last(), Some(&Command::HangUp { call }));
}

#[test]
fn group_operations_need_a_group_call_its_owner_and_bounds() {
    let (mut core, now) = ready();
    let one = core.start_call(&[user("bob")], now).unwrap();
    assert!(!core.is_group_call(one));
    assert_eq!(
        core.add_participant(one, user("carol")),
        Err(CallingError::InvalidState { call: one, state: CallState::Connecting, action: "add a participant to" }),
        "only a connected 1:1 call can be escalated"
    );
    assert_eq!(
        core.remove_participant(one, core.call(one).unwrap().participants[0]),
        Err(CallingError::NotAGroupCall(one))
    );
    core.hang_up(one, now).unwrap();
    core.on_signal(one, SignalEvent::Hangup { code: 200, reason: String::new() }, now);

    let many: Vec<Identifier> = (0..17).map(|i| user(&format!("u{i}"))).collect();
    assert_eq!(core.start_call(&many, now), Err(CallingError::TooManyTargets(MAX_INVITEES)));

    let call = core.incoming_invitation(invitation(), now).unwrap();
    let caller = core.call(call).unwrap().participants[0];
    assert_eq!(
        core.add_participant(call, user("x")),
        Err(CallingError::InvalidState { call, state: CallState::Incoming, action: "add a participant to" })
    );
    assert_eq!(core.remove_participant(call, caller), Err(CallingError::NotTheOwner(call)));
}

fn invitation() -> Invitation {
    Invitation {
        call_id: GroupCallId::new("door-4711").unwrap(),
        room: 4711,
        pin: Secret::new("pin-1234"),
        server: String::new(),
        caller: user("door"),
        caller_display_name: Some("Front door".into()),
        video: true,
        ring_secs: 30,
        escalate: false,
    }
}

#[test]
fn an_invitee_rings_joins_and_sees_the_room() {
    let (mut core, now) = ready();
    let call = core.incoming_invitation(invitation(), now).unwrap();
    let (_, events) = drain(&mut core);
    assert!(events.contains(&Event::IncomingCall {
        call,
        from: user("door"),
        display_name: Some("Front door".into())
    }));
    assert!(core.is_group_call(call));
    assert_eq!(core.invitation(call).map(|i| i.room), Some(4711));
    assert_eq!(core.invited_call(&invitation().call_id), Some(call));
    // The same invitation delivered again (forked or retransmitted): the same call, not a second one declined busy.
    assert_eq!(core.incoming_invitation(invitation(), now), Some(call));
    assert_eq!(drain(&mut core), (vec![], vec![]));
    assert_eq!(core.invited_call(&GroupCallId::new("other").unwrap()), None);

    core.accept(call).unwrap();
    assert_eq!(drain(&mut core).0, vec![Command::Answer { call }]);
    core.on_group(call, GroupSignal::Joined, now);
    assert_eq!(core.call(call).unwrap().state, CallState::Connected);
    // The inviter is matched to the participant the call started with; another invitee is added.
    core.on_group(call, member(1, "door"), now);
    core.on_group(call, member(2, "carol"), now);
    let info = core.call(call).unwrap().clone();
    assert_eq!(info.participants.len(), 2);
    assert_eq!(participant_named(&core, call, "door").state, ParticipantState::Connected);
    // Everyone else leaves: the call ends.
    core.on_group(call, GroupSignal::MemberLeft { feed: 1, kicked: false }, now);
    assert!(core.call(call).unwrap().state.is_active());
    core.on_group(call, GroupSignal::MemberLeft { feed: 2, kicked: false }, now);
    assert_eq!(core.call(call).unwrap().end_reason, Some(CallEndReason::remote_hang_up()));
}

#[test]
fn an_invitee_is_declined_when_busy_stops_when_cancelled_or_lapsed_and_can_be_removed() {
    // Busy.
    let (mut core, now) = ready();
    core.start_call(&[user("bob")], now).unwrap();
    let call = core.incoming_invitation(invitation(), now).unwrap();
    assert!(drain(&mut core).0.contains(&Command::Decline { call, code: 486 }));
    assert_eq!(core.call(call).unwrap().state, CallState::Disconnected);

    // Cancelled while ringing: 487.
    let (mut core, now) = ready();
    let call = core.incoming_invitation(invitation(), now).unwrap();
    core.on_group(call, GroupSignal::InvitationCancelled, now);
    assert_eq!(core.call(call).unwrap().end_reason.as_ref().map(|r| r.code), Some(487));

    // Never cancelled: it lapses after its ring time and a grace period.
    let (mut core, now) = ready();
    let call = core.incoming_invitation(invitation(), now).unwrap();
    let deadline = core.poll_timeout().unwrap();
    assert!(deadline > now + Duration::from_secs(30) && deadline <= now + Duration::from_secs(40));
    core.handle_timeout(deadline);
    assert_eq!(core.call(call).unwrap().end_reason.as_ref().map(|r| r.code), Some(408));

    // An invitation asking to ring 600 s rings at most a minute here (and the grace).
    let (mut core, now) = ready();
    let long = Invitation { ring_secs: 600, ..invitation() };
    let call = core.incoming_invitation(long, now).unwrap();
    let deadline = core.poll_timeout().unwrap();
    assert!(deadline <= now + Duration::from_secs(65), "{:?}", deadline - now);
    core.handle_timeout(deadline);
    assert_eq!(core.call(call).unwrap().end_reason.as_ref().map(|r| r.code), Some(408));

    // Rejected: a decline goes back.
    let (mut core, now) = ready();
    let call = core.incoming_invitation(invitation(), now).unwrap();
    core.reject(call, 603).unwrap();
    assert!(drain(&mut core).0.contains(&Command::Decline { call, code: 603 }));

    // Removed by the owner, or the room closed.
    for (signal, subcode) in
        [(GroupSignal::Removed, subcode::REMOVED), (GroupSignal::RoomClosed, subcode::REMOTE_HANG_UP)]
    {
        let (mut core, now) = ready();
        let call = core.incoming_invitation(invitation(), now).unwrap();
        core.accept(call).unwrap();
        core.on_group(call, GroupSignal::Joined, now);
        core.on_group(call, signal, now);
        assert_eq!(core.call(call).unwrap().end_reason.as_ref().map(|r| r.subcode), Some(subcode));
    }
}

#[test]
fn signals_for_other_calls_or_after_the_end_are_ignored() {
    let (mut core, now) = ready();
    core.on_group(CallId(99), GroupSignal::Joined, now);
    let one = core.start_call(&[user("bob")], now).unwrap();
    core.on_group(one, member(1, "bob"), now);
    assert!(core.call(one).unwrap().participants.len() == 1, "a 1:1 call takes no room signals");
    let (mut core, now) = ready();
    let call = owner_call(&mut core, now);
    core.on_group(call, GroupSignal::Failed(CallEndReason::new(500, subcode::SETUP_FAILED, "room")), now);
    assert_eq!(core.call(call).unwrap().state, CallState::Disconnected);
    core.on_group(call, member(1, "bob"), now);
    assert_eq!(participant_named(&core, call, "bob").state, ParticipantState::Disconnected);
    // A member's streams before it joined are ignored; so are too many members.
    let (mut core, now) = ready();
    let call = owner_call(&mut core, now);
    core.on_group(call, GroupSignal::MemberStreams { feed: 7, streams: av(true) }, now);
    for feed in 0..(MAX_MEMBERS as u64 + 5) {
        core.on_group(call, GroupSignal::MemberJoined(RoomMember { feed, identifier: None, display_name: None }), now);
    }
    assert!(core.call(call).unwrap().participants.len() <= MAX_MEMBERS + 2);
}

// ----- escalation: a 1:1 call moved into a room -----

fn escalation() -> Invitation {
    Invitation { escalate: true, ..invitation() }
}

/// A connected 1:1 call with `peer` whose video flows, rendered on a tile.
fn one_to_one(core: &mut CallingCore, now: Instant, peer: &str) -> (CallId, ParticipantId, StreamId, RendererId) {
    let call = core.start_call(&[user(peer)], now).unwrap();
    core.on_signal(call, SignalEvent::Accepted, now);
    core.on_media(call, MediaSignal::VideoNegotiated(true), now);
    core.on_media(call, MediaSignal::RemoteVideo(true), now);
    let p = core.call(call).unwrap().participants[0];
    let stream = core.participant(p).unwrap().streams[0].id;
    let renderer = core.add_renderer(stream, ScalingMode::Fit).unwrap();
    drain(core);
    (call, p, stream, renderer)
}

/// The same, answered on this side: `door` called.
fn answered_one_to_one(core: &mut CallingCore, now: Instant) -> (CallId, ParticipantId) {
    let call = core.incoming_call(user("door"), Some("Front door".into()), now);
    core.accept(call).unwrap();
    core.on_signal(call, SignalEvent::Accepted, now);
    drain(core);
    (call, core.call(call).unwrap().participants[0])
}

fn invites(commands: &[Command]) -> Vec<ParticipantId> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Invite { participant, .. } => Some(*participant),
            _ => None,
        })
        .collect()
}

/// Events that would tell a subscriber something happened to `p` (it should not, while it moves).
fn about(events: &[Event], p: ParticipantId) -> Vec<Event> {
    events
        .iter()
        .filter(|e| match e {
            Event::ParticipantStateChanged { participant, .. }
            | Event::ParticipantCallEndReasonChanged { participant, .. } => *participant == p,
            Event::RemoteParticipantsUpdated { added, removed, .. } => added.contains(&p) || removed.contains(&p),
            _ => false,
        })
        .cloned()
        .collect()
}

#[test]
fn the_owner_escalates_a_connected_call_into_a_room_without_dropping_its_peer() {
    let (mut core, now) = ready();
    let (call, bob, stream, renderer) = one_to_one(&mut core, now, "bob");
    let mut seen = Vec::new();

    // add_participant on the 1:1 call: same call, same peer, the new target at once in Connecting.
    let carol = core.add_participant(call, user("carol")).unwrap();
    let (commands, events) = drain(&mut core);
    assert_eq!(commands, vec![Command::CreateRoom { call }]);
    assert_eq!(events, vec![Event::RemoteParticipantsUpdated { call, added: vec![carol], removed: vec![] }]);
    assert!(core.is_group_call(call));
    let info = core.call(call).unwrap();
    assert_eq!((info.state, info.participants.clone()), (CallState::Connected, vec![bob, carol]));
    assert_eq!(core.participant(carol).unwrap().state, ParticipantState::Connecting);
    assert_eq!(core.participant(bob).unwrap().state, ParticipantState::Connected);
    assert!(core.invite_escalates(call, bob));
    assert!(!core.invite_escalates(call, carol));
    assert!(!core.invite_escalates(CallId(999), bob));

    // In the room: both are invited, the peer marked as an escalation; only carol rings.
    core.on_group(call, GroupSignal::Joined, now);
    let (commands, events) = drain(&mut core);
    assert_eq!(invites(&commands), vec![bob, carol]);
    assert!(commands.contains(&Command::Invite { call, participant: bob, target: user("bob") }));
    seen.extend(events);
    for participant in [bob, carol] {
        core.on_group(call, GroupSignal::InvitationDelivered { participant }, now);
    }
    assert_eq!(core.participant(carol).unwrap().state, ParticipantState::Ringing);
    assert_eq!(core.participant(bob).unwrap().state, ParticipantState::Connected);
    assert_eq!(core.call(call).unwrap().state, CallState::Connected);

    // The peer appears in the room: a member, and the 1:1 leg goes (once). Its video stream is carried over.
    core.on_group(call, member(11, "bob"), now);
    let (commands, events) = drain(&mut core);
    assert_eq!(commands, vec![Command::DropSipLeg { call }]);
    seen.extend(events);
    assert_eq!(core.group_member_feed(call, bob), Some(11));
    assert_eq!(core.group_member_feed(call, carol), None, "carol is not in the room yet");
    assert_eq!(core.participant(bob).unwrap().streams.len(), 1);
    assert!(!core.participant(bob).unwrap().streams[0].is_available, "no frames between the leg and the room");
    assert_eq!(core.group_stream_source(call, stream), None, "still the leg's stream");
    core.on_group(call, GroupSignal::MemberStreams { feed: 11, streams: av(true) }, now);
    let (commands, events) = drain(&mut core);
    assert_eq!(commands, vec![Command::Subscribe { call, feed: 11, mids: vec!["0".into(), "1".into()] }]);
    assert!(!events.iter().any(|e| matches!(e, Event::VideoStreamsUpdated { .. })), "the same stream: {events:?}");
    seen.extend(events);
    let streams = core.participant(bob).unwrap().streams.clone();
    assert_eq!(streams, vec![StreamInfo { id: stream, kind: VideoStreamKind::Video, is_available: true }]);
    assert_eq!(core.group_stream_source(call, stream), Some((11, "1".to_string())));
    assert!(core.renderer(renderer).is_some_and(|r| r.is_rendering), "its renderer lives on");

    // The peer's BYE of the dropped leg does not end the call; nor does any later SIP signal.
    core.on_signal(call, SignalEvent::Hangup { code: 200, reason: String::new() }, now);
    core.on_signal(call, SignalEvent::RemoteHold(true), now);
    let (commands, events) = drain(&mut core);
    assert!(commands.is_empty(), "{commands:?}");
    seen.extend(events);
    assert_eq!(core.call(call).unwrap().state, CallState::Connected);

    core.on_group(call, member(12, "carol"), now);
    assert_eq!(core.participant(carol).unwrap().state, ParticipantState::Connected);
    assert_eq!(core.poll_timeout(), None, "nobody is pending");
    seen.extend(drain(&mut core).1);
    assert_eq!(about(&seen, bob), vec![], "the peer never left, rang or reconnected");
    assert!(!seen.iter().any(|e| matches!(e, Event::CallStateChanged { .. } | Event::CallsUpdated { .. })));
}

#[test]
fn the_invitee_side_moves_its_call_into_the_room_without_ringing() {
    let (mut core, now) = ready();
    let (call, door) = answered_one_to_one(&mut core, now);

    // The escalation from the peer of the connected call: that call, answered at once, no ringing.
    assert_eq!(core.incoming_invitation(escalation(), now), Some(call));
    let (commands, events) = drain(&mut core);
    assert_eq!(commands, vec![Command::Answer { call }]);
    assert_eq!(events, vec![], "no IncomingCall, no new call, no state change");
    assert!(core.is_group_call(call));
    assert_eq!(core.invitation(call).map(|i| (i.room, i.escalate)), Some((4711, true)));
    assert!(!core.invite_escalates(call, door), "an invitee invites nobody");
    assert_eq!(core.call(call).unwrap().state, CallState::Connected);
    // The same MESSAGE again: nothing more.
    assert_eq!(core.incoming_invitation(escalation(), now), Some(call));
    assert_eq!(drain(&mut core), (vec![], vec![]));

    // In the room, where the owner is: the leg goes; the owner is matched to the participant it was.
    core.on_group(call, GroupSignal::Joined, now);
    assert_eq!(drain(&mut core).0, vec![Command::DropSipLeg { call }]);
    core.on_group(call, member(1, "door"), now);
    core.on_group(call, member(2, "carol"), now);
    let (commands, events) = drain(&mut core);
    assert!(!commands.contains(&Command::DropSipLeg { call }), "dropped once");
    let info = core.call(call).unwrap().clone();
    assert_eq!(info.participants.len(), 2);
    assert_eq!(info.participants[0], door);
    assert_eq!(core.group_member_feed(call, door), Some(1));
    assert_eq!(about(&events, door), vec![]);
    assert_eq!(info.state, CallState::Connected);

    // The owner's BYE of the leg; much later: still in the call (the invitation's lapse is over).
    core.on_signal(call, SignalEvent::Hangup { code: 200, reason: String::new() }, now);
    core.handle_timeout(now + Duration::from_secs(600));
    assert_eq!(core.call(call).unwrap().state, CallState::Connected);
    assert!(drain(&mut core).0.is_empty());
}

#[test]
fn an_escalation_without_a_connected_call_with_its_caller_is_ignored_and_ordinary_invitations_are_unaffected() {
    // No call at all: another device of the user, or the call ended before the invitation arrived.
    let (mut core, now) = ready();
    assert_eq!(core.incoming_invitation(escalation(), now), None);
    assert_eq!(drain(&mut core), (vec![], vec![]));
    assert_eq!(core.active_calls().count(), 0);

    // A connected call with someone else, or with the caller but not connected yet: not that call.
    let (call, ..) = one_to_one(&mut core, now, "bob");
    assert_eq!(core.incoming_invitation(escalation(), now), None);
    assert!(!core.is_group_call(call));
    let (mut core, now) = ready();
    let ringing = core.start_call(&[user("door")], now).unwrap();
    core.on_signal(ringing, SignalEvent::Ringing, now);
    drain(&mut core);
    assert_eq!(core.incoming_invitation(escalation(), now), None);
    assert!(!core.is_group_call(ringing));
    assert_eq!(drain(&mut core), (vec![], vec![]));

    // An ordinary invitation from the peer of a connected call: busy, as before.
    let (mut core, now) = ready();
    let (one, _) = answered_one_to_one(&mut core, now);
    let call = core.incoming_invitation(invitation(), now).unwrap();
    assert_ne!(call, one);
    assert!(drain(&mut core).0.contains(&Command::Decline { call, code: 486 }));
    assert!(!core.is_group_call(one));
    // And one to an idle device rings.
    let (mut core, now) = ready();
    let call = core.incoming_invitation(invitation(), now).unwrap();
    assert!(drain(&mut core).1.iter().any(|e| matches!(e, Event::IncomingCall { .. })));
    assert_eq!(core.call(call).unwrap().state, CallState::Incoming);
}

#[test]
fn an_escalated_peer_that_does_not_join_in_time_is_disconnected_and_its_leg_dropped() {
    let (mut core, now) = ready();
    let (call, bob, stream, renderer) = one_to_one(&mut core, now, "bob");
    let carol = core.add_participant(call, user("carol")).unwrap();
    core.on_group(call, GroupSignal::Joined, now);
    drain(&mut core);
    // The peer's invitation is bounded from the room's joining, delivered or not.
    let ring = CoreConfig::default().ring_timeout;
    assert_eq!(core.poll_timeout(), Some(now + ring));
    core.handle_timeout(now + ring - Duration::from_millis(1));
    assert_eq!(core.participant(bob).unwrap().state, ParticipantState::Connected);

    core.handle_timeout(now + ring);
    let (commands, events) = drain(&mut core);
    assert_eq!(
        commands,
        vec![Command::CancelInvitation { call, target: user("bob") }, Command::DropSipLeg { call }],
        "carol still rings: the call goes on"
    );
    let p = core.participant(bob).unwrap();
    assert_eq!(p.state, ParticipantState::Disconnected);
    assert_eq!(p.call_end_reason.as_ref().map(|r| (r.code, r.subcode)), Some((408, subcode::NO_ANSWER_TIMEOUT)));
    assert!(p.streams.is_empty(), "the leg's stream ended with it");
    assert!(events.contains(&Event::RemoteParticipantsUpdated { call, added: vec![], removed: vec![bob] }));
    assert!(events.contains(&Event::VideoStreamsUpdated {
        call,
        participant: bob,
        added: vec![],
        removed: vec![stream]
    }));
    assert!(core.renderer(renderer).is_none());
    assert_eq!(core.call(call).unwrap().state, CallState::Connected);

    // Carol declines: nobody is left, the call ends; the leg is not dropped twice.
    core.on_group(call, GroupSignal::Declined { from: user("carol"), code: 603 }, now);
    let (commands, _) = drain(&mut core);
    assert_eq!(commands, vec![Command::HangUp { call }, Command::ReleaseMedia { call }]);
    assert_eq!(core.participant(carol).unwrap().call_end_reason.as_ref().map(|r| r.code), Some(603));
    assert_eq!(core.call(call).unwrap().state, CallState::Disconnected);
}

#[test]
fn an_escalated_peer_that_declines_or_cannot_be_reached_is_disconnected_with_its_code() {
    for (signal, code) in [
        (GroupSignal::Declined { from: user("bob"), code: 486 }, 486),
        (GroupSignal::InvitationFailed { participant: ParticipantId(2), code: 480 }, 480),
    ] {
        let (mut core, now) = ready();
        let (call, bob, ..) = one_to_one(&mut core, now, "bob");
        assert_eq!(bob, ParticipantId(2), "the fixture's participant id");
        core.add_participant(call, user("carol")).unwrap();
        core.on_group(call, GroupSignal::Joined, now);
        core.on_group(call, member(12, "carol"), now);
        drain(&mut core);
        core.on_group(call, signal, now);
        let (commands, _) = drain(&mut core);
        assert_eq!(commands, vec![Command::DropSipLeg { call }]);
        let p = core.participant(bob).unwrap();
        assert_eq!((p.state, p.call_end_reason.as_ref().map(|r| r.code)), (ParticipantState::Disconnected, Some(code)));
        assert_eq!(core.call(call).unwrap().state, CallState::Connected, "carol is in the room");
    }
}

#[test]
fn a_sip_hangup_during_the_move_drops_only_the_leg() {
    // Owner: the peer's BYE (it joined and dropped its leg) before the room says it joined.
    let (mut core, now) = ready();
    let (call, bob, stream, _) = one_to_one(&mut core, now, "bob");
    core.add_participant(call, user("carol")).unwrap();
    core.on_group(call, GroupSignal::Joined, now);
    drain(&mut core);
    core.on_signal(call, SignalEvent::Hangup { code: 200, reason: String::new() }, now);
    let (commands, events) = drain(&mut core);
    assert_eq!(commands, vec![Command::DropSipLeg { call }]);
    assert_eq!(about(&events, bob), vec![]);
    assert_eq!(core.call(call).unwrap().state, CallState::Connected);
    assert_eq!(core.participant(bob).unwrap().state, ParticipantState::Connected);
    core.on_group(call, member(11, "bob"), now);
    core.on_group(call, GroupSignal::MemberStreams { feed: 11, streams: av(true) }, now);
    let (commands, _) = drain(&mut core);
    assert!(!commands.contains(&Command::DropSipLeg { call }), "dropped once: {commands:?}");
    assert_eq!(core.participant(bob).unwrap().streams[0].id, stream, "carried over all the same");

    // Our own hang-up is still confirmed by the network as usual.
    core.hang_up(call, now).unwrap();
    core.on_signal(call, SignalEvent::Hangup { code: 200, reason: String::new() }, now);
    assert_eq!(core.call(call).unwrap().end_reason, Some(CallEndReason::local_hang_up()));

    // Owner: the peer hangs up before anyone is invited: it is out, and not invited; carol is.
    let (mut core, now) = ready();
    let (call, bob, ..) = one_to_one(&mut core, now, "bob");
    let carol = core.add_participant(call, user("carol")).unwrap();
    drain(&mut core);
    core.on_signal(call, SignalEvent::Hangup { code: 200, reason: String::new() }, now);
    let (commands, _) = drain(&mut core);
    assert_eq!(commands, vec![Command::DropSipLeg { call }]);
    let p = core.participant(bob).unwrap();
    assert_eq!(
        (p.state, p.call_end_reason.clone()),
        (ParticipantState::Disconnected, Some(CallEndReason::remote_hang_up()))
    );
    assert_eq!(core.call(call).unwrap().state, CallState::Connected);
    core.on_group(call, GroupSignal::Joined, now);
    assert_eq!(invites(&drain(&mut core).0), vec![carol]);
    // ... and when nobody else is left, the call ends.
    let (mut core, now) = ready();
    let (call, ..) = one_to_one(&mut core, now, "bob");
    let carol = core.add_participant(call, user("carol")).unwrap();
    core.remove_participant(call, carol).unwrap();
    drain(&mut core);
    core.on_signal(call, SignalEvent::Failed(CallEndReason::new(500, subcode::MEDIA_FAILED, "leg")), now);
    let (commands, _) = drain(&mut core);
    assert_eq!(commands, vec![Command::DropSipLeg { call }, Command::HangUp { call }, Command::ReleaseMedia { call }]);
    assert_eq!(core.call(call).unwrap().state, CallState::Disconnected);

    // Invitee: the owner's BYE (or a failure of the leg) before this side is in the room.
    let (mut core, now) = ready();
    let (call, _) = answered_one_to_one(&mut core, now);
    core.incoming_invitation(escalation(), now);
    drain(&mut core);
    core.on_signal(call, SignalEvent::Failed(CallEndReason::new(500, subcode::MEDIA_FAILED, "leg")), now);
    assert_eq!(drain(&mut core).0, vec![Command::DropSipLeg { call }]);
    assert_eq!(core.call(call).unwrap().state, CallState::Connected);
    core.on_group(call, GroupSignal::Joined, now);
    assert!(drain(&mut core).0.is_empty(), "dropped once");
}

#[test]
fn while_the_leg_is_up_its_audio_and_state_are_the_peers_only() {
    let (mut core, now) = ready();
    let (call, bob, ..) = one_to_one(&mut core, now, "bob");
    let carol = core.add_participant(call, user("carol")).unwrap();
    core.on_media(call, MediaSignal::AudioLevel { dbfs: -20.0 }, now);
    core.on_signal(call, SignalEvent::PeerState { muted: Some(true), video_on: None }, now);
    core.on_signal(call, SignalEvent::Dtmf('5'), now);
    core.on_media(call, MediaSignal::VideoNegotiated(true), now);
    let (_, events) = drain(&mut core);
    assert!(events.contains(&Event::DtmfReceived { call, digit: '5' }));
    assert!(core.participant(bob).unwrap().is_speaking && core.participant(bob).unwrap().is_muted);
    let c = core.participant(carol).unwrap();
    assert!(!c.is_speaking && !c.is_muted && c.streams.is_empty(), "carol is not on the leg: {c:?}");
    // Hold is not for a call on its way into a room.
    core.on_signal(call, SignalEvent::RemoteHold(true), now);
    assert_eq!(core.call(call).unwrap().state, CallState::Connected);
    assert_eq!(core.participant(bob).unwrap().state, ParticipantState::Connected);

    // The leg dropped: the peer stops speaking until the room says otherwise; the leg's meter is off.
    core.on_group(call, GroupSignal::Joined, now);
    core.on_group(call, member(11, "bob"), now);
    assert!(!core.participant(bob).unwrap().is_speaking);
    core.on_media(call, MediaSignal::AudioLevel { dbfs: -20.0 }, now);
    assert!(!core.participant(bob).unwrap().is_speaking && !core.participant(carol).unwrap().is_speaking);
    core.on_group(call, GroupSignal::MemberTalking { feed: 11, talking: true }, now);
    assert!(core.participant(bob).unwrap().is_speaking);
}

#[test]
fn a_room_that_fails_before_anyone_is_invited_leaves_the_one_to_one_call_as_it_was() {
    let (mut core, now) = ready();
    let (call, bob, stream, _) = one_to_one(&mut core, now, "bob");
    let carol = core.add_participant(call, user("carol")).unwrap();
    drain(&mut core);
    let reason = CallEndReason::new(500, subcode::SETUP_FAILED, "no videoroom");
    core.on_group(call, GroupSignal::Failed(reason.clone()), now);
    let (commands, events) = drain(&mut core);
    assert!(commands.is_empty(), "no hang-up: {commands:?}");
    assert_eq!(about(&events, bob), vec![]);
    assert!(events.contains(&Event::RemoteParticipantsUpdated { call, added: vec![], removed: vec![carol] }));
    assert!(!core.is_group_call(call));
    assert_eq!(core.call(call).unwrap().state, CallState::Connected);
    assert_eq!(core.participant(carol).unwrap().call_end_reason, Some(reason));
    assert_eq!(core.participant(bob).unwrap().streams[0].id, stream);
    // A 1:1 call again: the leg's signals count, and it can be escalated anew.
    core.on_signal(call, SignalEvent::RemoteHold(true), now);
    assert_eq!(core.call(call).unwrap().state, CallState::RemoteHold);
    assert_eq!(core.participant(carol).unwrap().state, ParticipantState::Disconnected, "not on hold: gone");
    core.on_signal(call, SignalEvent::RemoteHold(false), now);
    core.add_participant(call, user("dave")).unwrap();
    assert_eq!(drain(&mut core).0, vec![Command::CreateRoom { call }]);

    // Once invitations are out, a failed room ends the call, its leg with it, and withdraws them.
    core.on_group(call, GroupSignal::Joined, now);
    drain(&mut core);
    core.on_group(call, GroupSignal::Failed(CallEndReason::new(500, subcode::SETUP_FAILED, "gone")), now);
    let (commands, _) = drain(&mut core);
    assert_eq!(
        commands,
        vec![
            Command::HangUp { call },
            Command::DropSipLeg { call },
            Command::CancelInvitation { call, target: user("bob") },
            Command::CancelInvitation { call, target: user("dave") },
            Command::ReleaseMedia { call }
        ]
    );
    assert_eq!(core.call(call).unwrap().state, CallState::Disconnected);
}

#[test]
fn removing_the_moving_peer_or_hanging_up_drops_the_leg() {
    // Removing the peer before it is in the room: its invitation withdrawn, the leg dropped.
    let (mut core, now) = ready();
    let (call, bob, ..) = one_to_one(&mut core, now, "bob");
    let carol = core.add_participant(call, user("carol")).unwrap();
    core.on_group(call, GroupSignal::Joined, now);
    drain(&mut core);
    core.remove_participant(call, bob).unwrap();
    let (commands, _) = drain(&mut core);
    assert_eq!(commands, vec![Command::CancelInvitation { call, target: user("bob") }, Command::DropSipLeg { call }]);
    assert_eq!(core.participant(bob).unwrap().call_end_reason.as_ref().map(|r| r.subcode), Some(subcode::REMOVED));
    assert_eq!(core.call(call).unwrap().state, CallState::Connected, "carol still rings");
    core.remove_participant(call, carol).unwrap();
    let (commands, _) = drain(&mut core);
    assert_eq!(
        commands,
        vec![
            Command::CancelInvitation { call, target: user("carol") },
            Command::HangUp { call },
            Command::ReleaseMedia { call }
        ],
        "nobody left: the call ends"
    );

    // Once the peer is in the room it is kicked like any member.
    let (mut core, now) = ready();
    let (call, bob, ..) = one_to_one(&mut core, now, "bob");
    core.add_participant(call, user("carol")).unwrap();
    core.on_group(call, GroupSignal::Joined, now);
    core.on_group(call, member(11, "bob"), now);
    drain(&mut core);
    core.remove_participant(call, bob).unwrap();
    assert_eq!(drain(&mut core).0, vec![Command::Kick { call, feed: 11 }]);

    // Hanging up while the peer moves: invitations withdrawn, the leg dropped, then the room left.
    let (mut core, now) = ready();
    let (call, ..) = one_to_one(&mut core, now, "bob");
    core.add_participant(call, user("carol")).unwrap();
    core.on_group(call, GroupSignal::Joined, now);
    drain(&mut core);
    core.hang_up(call, now).unwrap();
    let (commands, _) = drain(&mut core);
    assert_eq!(
        commands,
        vec![
            Command::CancelInvitation { call, target: user("bob") },
            Command::CancelInvitation { call, target: user("carol") },
            Command::DropSipLeg { call },
            Command::HangUp { call }
        ]
    );
    core.handle_timeout(now + CoreConfig::default().hang_up_timeout);
    assert_eq!(drain(&mut core).0, vec![Command::ReleaseMedia { call }], "no second DropSipLeg");
}

#[test]
fn the_invitee_of_an_escalation_gives_up_when_cancelled_or_not_in_the_room_in_time() {
    // The owner withdraws the move (it hung up, or gave up on us): the call ends, the leg with it.
    let (mut core, now) = ready();
    let (call, _) = answered_one_to_one(&mut core, now);
    core.incoming_invitation(escalation(), now);
    drain(&mut core);
    core.on_group(call, GroupSignal::InvitationCancelled, now);
    let (commands, _) = drain(&mut core);
    assert_eq!(commands, vec![Command::HangUp { call }, Command::DropSipLeg { call }, Command::ReleaseMedia { call }]);
    assert_eq!(core.call(call).unwrap().end_reason, Some(CallEndReason::remote_hang_up()));

    // The room is not joined within the invitation's ring time (and grace): 408.
    let (mut core, now) = ready();
    let (call, _) = answered_one_to_one(&mut core, now);
    core.incoming_invitation(escalation(), now);
    drain(&mut core);
    let deadline = core.poll_timeout().unwrap();
    assert!(deadline > now + Duration::from_secs(30) && deadline <= now + Duration::from_secs(40));
    core.handle_timeout(deadline);
    let (commands, _) = drain(&mut core);
    assert_eq!(commands, vec![Command::HangUp { call }, Command::DropSipLeg { call }, Command::ReleaseMedia { call }]);
    assert_eq!(core.call(call).unwrap().end_reason.as_ref().map(|r| r.code), Some(408));

    // A cancel after this side is in the room is the room's business, not the invitation's.
    let (mut core, now) = ready();
    let (call, _) = answered_one_to_one(&mut core, now);
    core.incoming_invitation(escalation(), now);
    core.on_group(call, GroupSignal::Joined, now);
    core.on_group(call, GroupSignal::InvitationCancelled, now);
    assert_eq!(core.call(call).unwrap().state, CallState::Connected);
}

#[test]
fn escalation_needs_a_connected_call_and_the_escalated_call_is_a_group_call_like_any() {
    let (mut core, now) = ready();
    let (call, bob, ..) = one_to_one(&mut core, now, "bob");
    core.on_signal(call, SignalEvent::LocalHold(true), now);
    assert_eq!(
        core.add_participant(call, user("carol")),
        Err(CallingError::InvalidState { call, state: CallState::LocalHold, action: "add a participant to" })
    );
    core.on_signal(call, SignalEvent::LocalHold(false), now);
    core.add_participant(call, user("carol")).unwrap();
    core.on_group(call, GroupSignal::Joined, now);
    drain(&mut core);
    // More participants: ordinary invitations.
    let dave = core.add_participant(call, user("dave")).unwrap();
    assert_eq!(drain(&mut core).0, vec![Command::Invite { call, participant: dave, target: user("dave") }]);
    assert!(!core.invite_escalates(call, dave) && core.invite_escalates(call, bob));

    // The invitee of an escalation does not own the room.
    let (mut core, now) = ready();
    let (call, door) = answered_one_to_one(&mut core, now);
    core.incoming_invitation(escalation(), now);
    assert_eq!(core.add_participant(call, user("x")), Err(CallingError::NotTheOwner(call)));
    assert_eq!(core.remove_participant(call, door), Err(CallingError::NotTheOwner(call)));
}

#[test]
fn an_accepted_invitation_no_longer_lapses() {
    let (mut core, now) = ready();
    let call = core.incoming_invitation(invitation(), now).unwrap();
    core.accept(call).unwrap();
    // Joining the room may take a while: the engine reports success or failure, the ring time is over.
    assert_eq!(core.poll_timeout(), None);
    core.handle_timeout(now + Duration::from_secs(36));
    assert_eq!(core.call(call).unwrap().state, CallState::Connecting);
    core.on_group(call, GroupSignal::Joined, now);
    core.on_group(call, member(1, "door"), now);
    assert_eq!(core.poll_timeout(), None);
    core.handle_timeout(now + Duration::from_secs(120));
    assert_eq!(core.call(call).unwrap().state, CallState::Connected);
}

#[test]
fn stream_sources_and_member_feeds_of_a_group_call() {
    let (mut core, now) = ready();
    let call = owner_call(&mut core, now);
    core.on_group(call, member(11, "bob"), now);
    let mut streams = av(true);
    streams.push(RoomStream { mid: "2".into(), kind: RoomStreamKind::ScreenShare, active: true });
    core.on_group(call, GroupSignal::MemberStreams { feed: 11, streams }, now);
    let bob = participant_named(&core, call, "bob");
    let carol = participant_named(&core, call, "carol").id;
    let sources: Vec<Option<(u64, String)>> =
        bob.streams.iter().map(|s| core.group_stream_source(call, s.id)).collect();
    assert_eq!(sources, vec![Some((11, "1".into())), Some((11, "2".into()))]);
    assert_eq!(core.group_stream_source(CallId(999), bob.streams[0].id), None);
    assert_eq!(core.group_stream_source(call, StreamId(999)), None);
    assert_eq!((core.group_member_feed(call, bob.id), core.group_member_feed(call, carol)), (Some(11), None));

    // A 1:1 call's stream has no room source.
    let (mut core, now) = ready();
    let (one, p, stream, _) = one_to_one(&mut core, now, "bob");
    assert_eq!((core.group_stream_source(one, stream), core.group_member_feed(one, p)), (None, None));

    // The member leaves: no feed, no source; the call's end takes every stream with it.
    let (mut core, now) = ready();
    let call = owner_call(&mut core, now);
    core.on_group(call, member(11, "bob"), now);
    core.on_group(call, member(12, "carol"), now);
    let mut streams = av(true);
    streams.push(RoomStream { mid: "2".into(), kind: RoomStreamKind::ScreenShare, active: true });
    core.on_group(call, GroupSignal::MemberStreams { feed: 12, streams }, now);
    let carol = participant_named(&core, call, "carol");
    core.on_group(call, GroupSignal::MemberLeft { feed: 11, kicked: false }, now);
    assert_eq!(core.group_member_feed(call, participant_named(&core, call, "bob").id), None);
    core.hang_up(call, now).unwrap();
    core.on_signal(call, SignalEvent::Hangup { code: 200, reason: String::new() }, now);
    assert!(core.participant(carol.id).unwrap().streams.is_empty(), "camera and screen share end with the call");
    assert_eq!(core.group_stream_source(call, carol.streams[1].id), None);
}

#[test]
fn a_peer_without_a_camera_in_the_room_loses_the_legs_stream_and_a_room_is_not_metered_as_a_leg() {
    let (mut core, now) = ready();
    let (call, bob, stream, renderer) = one_to_one(&mut core, now, "bob");
    core.add_participant(call, user("carol")).unwrap();
    core.on_group(call, GroupSignal::Joined, now);
    core.on_group(call, member(11, "bob"), now);
    drain(&mut core);
    assert!(core.renderer(renderer).is_some(), "kept while the room's streams are unknown");
    let audio_only = vec![RoomStream { mid: "0".into(), kind: RoomStreamKind::Audio, active: true }];
    core.on_group(call, GroupSignal::MemberStreams { feed: 11, streams: audio_only }, now);
    let (_, events) = drain(&mut core);
    assert!(events.contains(&Event::VideoStreamsUpdated {
        call,
        participant: bob,
        added: vec![],
        removed: vec![stream]
    }));
    assert!(core.participant(bob).unwrap().streams.is_empty());
    assert!(core.renderer(renderer).is_none());

    // The call's audio level is the leg's: with the leg gone nothing is metered, and no quiet timer runs.
    core.on_group(call, member(12, "carol"), now);
    assert_eq!(core.poll_timeout(), None);
    core.on_media(call, MediaSignal::AudioLevel { dbfs: -60.0 }, now);
    assert_eq!(core.poll_timeout(), None);
}

#[test]
fn a_lost_session_or_a_failed_room_withdraws_the_invitations_still_ringing() {
    for end in ["session", "room"] {
        let (mut core, now) = ready();
        let call = owner_call(&mut core, now);
        // bob joined; carol still rings.
        core.on_group(call, member(11, "bob"), now);
        drain(&mut core);
        match end {
            "session" => core.on_session_lost(),
            _ => core.on_group(call, GroupSignal::Failed(CallEndReason::new(500, subcode::MEDIA_FAILED, "x")), now),
        }
        let (commands, _) = drain(&mut core);
        let cancelled: Vec<&Identifier> = commands
            .iter()
            .filter_map(|c| match c {
                Command::CancelInvitation { target, .. } => Some(target),
                _ => None,
            })
            .collect();
        assert_eq!(cancelled, vec![&user("carol")], "{end}: {commands:?}");
        assert_eq!(core.call(call).unwrap().state, CallState::Disconnected, "{end}");
    }
}

//! Unit tests of group calls in the calling core: the owner's invitations and roster, the invitee's side,
//! streams and subscriptions, mute and speaking, removal, timeouts.

use super::*;
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
    assert!(streams[0].is_available && streams[0].kind == StreamKind::Video);
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
    let kinds: Vec<StreamKind> = core.participant(bob).unwrap().streams.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, vec![StreamKind::Video, StreamKind::ScreenSharing]);

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
    assert_eq!(core.add_participant(one, user("carol")), Err(CallingError::NotAGroupCall(one)));
    core.hang_up(one, now).unwrap();
    core.on_signal(one, SignalEvent::Hangup { code: 200, reason: String::new() }, now);

    let many: Vec<Identifier> = (0..17).map(|i| user(&format!("u{i}"))).collect();
    assert_eq!(core.start_call(&many, now), Err(CallingError::TooManyTargets(MAX_INVITEES)));

    let call = core.incoming_invitation(invitation(), now);
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
    }
}

#[test]
fn an_invitee_rings_joins_and_sees_the_room() {
    let (mut core, now) = ready();
    let call = core.incoming_invitation(invitation(), now);
    let (_, events) = drain(&mut core);
    assert!(events.contains(&Event::IncomingCall {
        call,
        from: user("door"),
        display_name: Some("Front door".into())
    }));
    assert!(core.is_group_call(call));
    assert_eq!(core.invitation(call).map(|i| i.room), Some(4711));

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
    let call = core.incoming_invitation(invitation(), now);
    assert!(drain(&mut core).0.contains(&Command::Decline { call, code: 486 }));
    assert_eq!(core.call(call).unwrap().state, CallState::Disconnected);

    // Cancelled while ringing: 487.
    let (mut core, now) = ready();
    let call = core.incoming_invitation(invitation(), now);
    core.on_group(call, GroupSignal::InvitationCancelled, now);
    assert_eq!(core.call(call).unwrap().end_reason.as_ref().map(|r| r.code), Some(487));

    // Never cancelled: it lapses after its ring time and a grace period.
    let (mut core, now) = ready();
    let call = core.incoming_invitation(invitation(), now);
    let deadline = core.poll_timeout().unwrap();
    assert!(deadline > now + Duration::from_secs(30) && deadline <= now + Duration::from_secs(40));
    core.handle_timeout(deadline);
    assert_eq!(core.call(call).unwrap().end_reason.as_ref().map(|r| r.code), Some(408));

    // Rejected: a decline goes back.
    let (mut core, now) = ready();
    let call = core.incoming_invitation(invitation(), now);
    core.reject(call, 603).unwrap();
    assert!(drain(&mut core).0.contains(&Command::Decline { call, code: 603 }));

    // Removed by the owner, or the room closed.
    for (signal, subcode) in
        [(GroupSignal::Removed, subcode::REMOVED), (GroupSignal::RoomClosed, subcode::REMOTE_HANG_UP)]
    {
        let (mut core, now) = ready();
        let call = core.incoming_invitation(invitation(), now);
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

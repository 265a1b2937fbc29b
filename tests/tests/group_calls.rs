//! Group calls between callbox appliances on the real local stack (Janus videoroom, Kamailio carrying the
//! invitation messages), inside the test namespace: invitations ring, joins connect, every member sees the others
//! (roster, speaking, mute), decodes every other member's camera and hears them; removal, leaving, the room closing;
//! a 1:1 call escalated to three; a device without a room grant cannot start one.

mod common;

use callbox::calling::MediaKind;
use callbox::calling::{subcode, CallEndReason, CallState, ParticipantState};
use callbox::client::{Call, CallClient};
use callbox::frame::read_frame_counter;
use callbox::signaling::videoroom::VideoRoomHandle;
use callbox::signaling::SignalingError;
use callbox_tests::{Stack, StackOptions};
use common::*;

/// The identifiers of a call's remote participants in `state`, sorted.
fn in_state(call: &Call, state: ParticipantState) -> Vec<String> {
    let mut ids: Vec<String> = call
        .remote_participants()
        .into_iter()
        .filter(|p| p.state() == state)
        .filter_map(|p| p.identifier().map(|i| i.as_str().to_owned()))
        .collect();
    ids.sort();
    ids
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

async fn wait_connected_with(call: &Call, who: &str, others: &[&str]) {
    let want = sorted(others);
    eventually(&format!("{who} is connected with {want:?}"), || {
        call.state() == CallState::Connected && in_state(call, ParticipantState::Connected) == want
    })
    .await;
}

/// Each connected remote participant's camera decodes at `who`, its test pattern's counter moving on; and the
/// room's voices arrive, one audio stream per other member.
async fn assert_media_from_everyone(call: &Call, who: &str, others: usize) {
    for p in call.remote_participants().into_iter().filter(|p| p.state() == ParticipantState::Connected) {
        let name = p.identifier().map(|i| i.as_str().to_owned()).unwrap_or_default();
        let counter =
            || p.video_streams().into_iter().find_map(|s| s.latest_frame().and_then(|f| read_frame_counter(&f)));
        eventually(&format!("{who} decodes {name}'s camera"), || counter().is_some()).await;
        let first = counter().unwrap_or(0);
        eventually(&format!("{who} sees {name}'s frame counter move past {first}"), || {
            counter().is_some_and(|c| c > first)
        })
        .await;
    }
    eventually(&format!("{who} decodes {others} videos and receives {others} voices, each in its own stream"), || {
        let streams = call.received_streams();
        distinct_mids(&streams, MediaKind::Video, true) >= others
            && distinct_mids(&streams, MediaKind::Audio, false) >= others
    })
    .await;
    eventually(&format!("{who} hears the room, and its call's figures count what the room sent"), || {
        call.media_stats().is_some_and(|s| {
            s.remote_audio_level_dbfs > -40.0 && s.audio_packets_received > 0 && s.video_frames_decoded > 0
        })
    })
    .await;
}

fn participant(call: &Call, name: &str) -> callbox::client::RemoteParticipant {
    call.remote_participants()
        .into_iter()
        .find(|p| p.identifier().is_some_and(|i| i.as_str() == name) && p.state() != ParticipantState::Disconnected)
        .unwrap_or_else(|| panic!("no participant {name}"))
}

/// Whether Janus still has the room (asked on a session of the test's own).
async fn room_exists(stack: &Stack, room: u64) -> bool {
    let (session, _events) = stack.janus_session().await.expect("Janus session");
    let (handle, _) = VideoRoomHandle::attach(&session).await.expect("videoroom handle");
    let exists = handle.exists(room).await.expect("exists");
    let _ = session.destroy().await;
    exists
}

/// Every room Janus holds, private ones too (listed with the admin key, on a session of the test's own).
async fn all_rooms(stack: &Stack) -> Vec<u64> {
    let (session, _events) = stack.janus_session().await.expect("Janus session");
    let (handle, _) = VideoRoomHandle::attach(&session).await.expect("videoroom handle");
    let body = serde_json::json!({"request": "list", "admin_key": stack.room_admin_key().expose()});
    let reply = handle.handle().message(body, None).await.expect("list");
    let _ = session.destroy().await;
    let list = reply.data["list"].as_array().cloned().unwrap_or_else(|| panic!("no list in {}", reply.data));
    list.iter().filter_map(|r| r["room"].as_u64()).collect()
}

async fn accept_next(client: &CallClient, events: &mut callbox::client::EventStream, from: &str) -> Call {
    let incoming = next_incoming(client, events).await;
    assert_eq!(incoming.from(), &user(from));
    incoming.accept().await.expect("accept")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_appliances_ring_join_see_hear_mute_remove_and_leave() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let door = appliance(&stack, "g3-door").await;
    let a = appliance(&stack, "g3-a").await;
    let b = appliance(&stack, "g3-b").await;
    let (mut a_events, mut b_events) = (a.events(), b.events());

    let call = door.call(&[user("g3-a"), user("g3-b")]).expect("group call placed");
    assert!(call.is_group_call());
    assert_eq!(call.remote_participants().len(), 2);
    assert!(call.remote_participants().iter().all(|p| p.state() == ParticipantState::Connecting));

    // Both invitations ring, with the same incoming-call API as a 1:1 call.
    let a_in = next_incoming(&a, &mut a_events).await;
    let b_in = next_incoming(&b, &mut b_events).await;
    assert_eq!(a_in.from(), &user("g3-door"));
    assert!(a_in.call().is_group_call());
    eventually("both invitees ring at the door", || {
        in_state(&call, ParticipantState::Ringing) == sorted(&["g3-a", "g3-b"])
    })
    .await;
    let a_call = a_in.accept().await.expect("a accepts");
    let b_call = b_in.accept().await.expect("b accepts");

    // Everyone sees everyone.
    wait_connected_with(&call, "door", &["g3-a", "g3-b"]).await;
    wait_connected_with(&a_call, "a", &["g3-door", "g3-b"]).await;
    wait_connected_with(&b_call, "b", &["g3-door", "g3-a"]).await;

    // Media from every other member, at every member.
    assert_media_from_everyone(&call, "door", 2).await;
    assert_media_from_everyone(&a_call, "a", 2).await;
    assert_media_from_everyone(&b_call, "b", 2).await;

    // Every microphone plays a tone: the room's talk detection says everyone is speaking.
    for (c, who) in [(&call, "door"), (&a_call, "a"), (&b_call, "b")] {
        eventually(&format!("{who} sees both others speaking"), || {
            c.remote_participants().iter().filter(|p| p.is_speaking()).count() == 2
        })
        .await;
    }

    // a mutes: the door and b see it; then unmutes.
    a_call.mute().await.expect("mute");
    eventually("the door sees a muted", || participant(&call, "g3-a").is_muted()).await;
    eventually("b sees a muted", || participant(&b_call, "g3-a").is_muted()).await;
    assert!(!participant(&call, "g3-b").is_muted());
    a_call.unmute().await.expect("unmute");
    eventually("the door sees a unmuted", || !participant(&call, "g3-a").is_muted()).await;

    // The door removes b: b's call ends as removed; the others see b go.
    let b_at_door = participant(&call, "g3-b");
    call.remove_participant(&b_at_door).expect("remove b");
    let mut b_call_events = b_call.events();
    wait_state(&b_call, &mut b_call_events, CallState::Disconnected).await;
    assert_eq!(b_call.end_reason().map(|r| r.subcode), Some(subcode::REMOVED), "{:?}", b_call.end_reason());
    eventually("the door sees b disconnected", || b_at_door.state() == ParticipantState::Disconnected).await;
    eventually("a sees b gone", || in_state(&a_call, ParticipantState::Connected) == sorted(&["g3-door"])).await;
    assert_eq!(call.state(), CallState::Connected);

    // a leaves: the door is alone and its call ends.
    a_call.hang_up().await.expect("a hangs up");
    let mut door_events = call.events();
    wait_state(&call, &mut door_events, CallState::Disconnected).await;
    assert!(door.calls().is_empty() && a.calls().is_empty() && b.calls().is_empty());
    for c in [&door, &a, &b] {
        c.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_appliances_each_decode_the_three_others_until_the_owner_ends_it() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let door = appliance(&stack, "g4-door").await;
    let names = ["g4-a", "g4-b", "g4-c"];
    let mut members = Vec::new();
    for n in names {
        let client = appliance(&stack, n).await;
        let events = client.events();
        members.push((client, events));
    }
    let call = door.call(&names.iter().map(|n| user(n)).collect::<Vec<_>>()).expect("group call placed");
    let mut calls = Vec::new();
    for (client, events) in members.iter_mut() {
        calls.push(accept_next(client, events, "g4-door").await);
    }
    wait_connected_with(&call, "door", &names).await;
    assert_media_from_everyone(&call, "door", 3).await;
    for (i, c) in calls.iter().enumerate() {
        let mut others: Vec<&str> = names.iter().copied().filter(|n| *n != names[i]).collect();
        others.push("g4-door");
        wait_connected_with(c, names[i], &others).await;
        assert_media_from_everyone(c, names[i], 3).await;
    }
    // The owner hangs up: the room closes on Janus and every member's call ends as hung up by the far end.
    let room = call.guest_access().expect("the door is in its room").room;
    assert!(room_exists(&stack, room).await);
    call.hang_up().await.expect("hang up");
    for (i, c) in calls.iter().enumerate() {
        let mut events = c.events();
        if c.state() != CallState::Disconnected {
            wait_state(c, &mut events, CallState::Disconnected).await;
        }
        assert_eq!(c.end_reason(), Some(CallEndReason::remote_hang_up()), "{}", names[i]);
    }
    assert!(!room_exists(&stack, room).await, "the owner's hang-up closed the room");
    door.shutdown().await;
    for (client, _) in &members {
        client.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_declined_invitation_disconnects_that_participant_with_603_and_the_call_goes_on() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let door = appliance(&stack, "gd-door").await;
    let a = appliance(&stack, "gd-a").await;
    let b = appliance(&stack, "gd-b").await;
    let (mut a_events, mut b_events) = (a.events(), b.events());
    let call = door.call(&[user("gd-a"), user("gd-b"), user("gd-nobody")]).expect("group call placed");
    // a mutes while it rings, then joins: muted in the room too (the door sees it and hears silence).
    let a_in = next_incoming(&a, &mut a_events).await;
    a_in.call().mute().await.expect("mute while ringing");
    let a_call = a_in.accept().await.expect("a accepts");
    next_incoming(&b, &mut b_events).await.reject(603).await.expect("b declines");
    let of = |name: &str| {
        call.remote_participants().into_iter().find(|p| p.identifier().is_some_and(|i| i.as_str() == name))
    };
    eventually("b is disconnected with 603 at the door", || {
        of("gd-b").is_some_and(|p| {
            p.state() == ParticipantState::Disconnected && p.call_end_reason().is_some_and(|r| r.code == 603)
        })
    })
    .await;
    // Nobody is registered as gd-nobody: the invitation cannot be delivered.
    eventually("the unknown user is disconnected with a 4xx at the door", || {
        of("gd-nobody").is_some_and(|p| {
            p.state() == ParticipantState::Disconnected
                && p.call_end_reason().is_some_and(|r| (400..500).contains(&r.code))
        })
    })
    .await;
    wait_connected_with(&call, "door", &["gd-a"]).await;
    wait_connected_with(&a_call, "a", &["gd-door"]).await;
    eventually("the door sees a muted", || participant(&call, "gd-a").is_muted()).await;
    eventually("the door receives a's (silent) audio", || {
        distinct_mids(&call.received_streams(), MediaKind::Audio, false) == 1
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let level = call.media_stats().map(|s| s.remote_audio_level_dbfs).unwrap_or(0.0);
    assert!(level < -60.0, "the door hears a's muted microphone at {level} dBFS");
    a_call.unmute().await.expect("unmute");
    eventually("the door sees a unmuted", || !participant(&call, "gd-a").is_muted()).await;
    assert_media_from_everyone(&call, "door", 1).await;
    assert_media_from_everyone(&a_call, "a", 1).await;
    call.hang_up().await.expect("hang up");
    let mut a_call_events = a_call.events();
    wait_state(&a_call, &mut a_call_events, CallState::Disconnected).await;
    assert_eq!(a_call.end_reason(), Some(CallEndReason::remote_hang_up()));
    for c in [&door, &a, &b] {
        c.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_one_to_one_call_gets_a_third_participant_and_goes_on_in_a_room() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let door = appliance(&stack, "ge-door").await;
    let a = appliance(&stack, "ge-a").await;
    let b = appliance(&stack, "ge-b").await;
    let (mut a_events, mut b_events) = (a.events(), b.events());
    let call = door.call(&[user("ge-a")]).expect("1:1 call placed");
    let a_call = accept_next(&a, &mut a_events, "ge-door").await;
    wait_connected_with(&call, "door", &["ge-a"]).await;
    assert!(!call.is_group_call() && !a_call.is_group_call());
    assert_video_advances(&a_call, "a (1:1)").await;
    let mut a_call_events = a_call.events();

    // The door adds b: b rings, a is moved into the room without ringing, and nobody's call drops.
    let added = call.add_participant(&user("ge-b")).expect("add b");
    assert_eq!(added.state(), ParticipantState::Connecting);
    let b_call = accept_next(&b, &mut b_events, "ge-door").await;
    wait_connected_with(&call, "door", &["ge-a", "ge-b"]).await;
    wait_connected_with(&a_call, "a", &["ge-door", "ge-b"]).await;
    wait_connected_with(&b_call, "b", &["ge-door", "ge-a"]).await;
    assert!(call.is_group_call() && a_call.is_group_call());
    assert_eq!(a.calls().len(), 1, "a's call is the same call, moved");
    assert_media_from_everyone(&call, "door", 2).await;
    assert_media_from_everyone(&a_call, "a", 2).await;
    assert_media_from_everyone(&b_call, "b", 2).await;
    // a's call never left Connected on the way.
    while let Some(delivery) = a_call_events.try_next() {
        if let callbox::calling::Delivery::Event(callbox::calling::Event::CallStateChanged { state, .. }) = delivery {
            assert_eq!(state, CallState::Connected, "a's call changed state during the move");
        }
    }
    call.hang_up().await.expect("hang up");
    for c in [&door, &a, &b] {
        c.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_owners_dropped_janus_connection_is_reclaimed_and_the_group_call_goes_on() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let janus = stack.janus_ws_url().trim_start_matches("ws://").parse().expect("Janus address");
    let proxy = callbox_tests::CuttableProxy::start(janus).await.expect("proxy");
    let mut config = client_config(&stack);
    config.janus_urls = vec![proxy.ws_url()];
    let door = appliance_with(&stack, "gr-door", config).await;
    let a = appliance(&stack, "gr-a").await;
    let b = appliance(&stack, "gr-b").await;
    let (mut a_events, mut b_events) = (a.events(), b.events());
    let call = door.call(&[user("gr-a"), user("gr-b")]).expect("group call placed");
    let a_call = accept_next(&a, &mut a_events, "gr-door").await;
    let b_call = accept_next(&b, &mut b_events, "gr-door").await;
    wait_connected_with(&call, "door", &["gr-a", "gr-b"]).await;
    assert_media_from_everyone(&call, "door", 2).await;

    // The door's WebSocket to Janus is cut; it reconnects and claims its session: the rooms' handles live on.
    let mut door_events = door.events();
    assert_eq!(proxy.cut(), 1);
    // b mutes while the door's socket is down: the room's event for it cannot reach the door; the door asks the
    // room who is there once it is back.
    b_call.mute().await.expect("mute");
    tokio::time::timeout(WAIT, async {
        while let Some(delivery) = door_events.next().await {
            if let callbox::calling::Delivery::Event(callbox::calling::Event::ConnectionStateChanged {
                state: callbox::calling::ConnectionState::Ready,
            }) = delivery
            {
                return;
            }
        }
    })
    .await
    .expect("the door is back within the bound");
    eventually("the door sees b muted after the reconnection", || participant(&call, "gr-b").is_muted()).await;
    // The room still works through the new socket: b unmutes (its event reaches the door), the door removes a.
    b_call.unmute().await.expect("unmute");
    eventually("the door sees b unmuted", || !participant(&call, "gr-b").is_muted()).await;
    let a_at_door = participant(&call, "gr-a");
    call.remove_participant(&a_at_door).expect("remove a");
    let mut a_call_events = a_call.events();
    wait_state(&a_call, &mut a_call_events, CallState::Disconnected).await;
    assert_eq!(a_call.end_reason().map(|r| r.subcode), Some(subcode::REMOVED));
    eventually("the door sees a disconnected", || a_at_door.state() == ParticipantState::Disconnected).await;
    assert_media_from_everyone(&call, "door", 1).await;
    assert_eq!(call.state(), CallState::Connected);
    let room = call.guest_access().expect("in the room").room;
    call.hang_up().await.expect("hang up");
    assert!(!room_exists(&stack, room).await, "the room is closed");
    for c in [&door, &a, &b] {
        c.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unanswered_invitation_ends_with_408_and_stops_ringing_at_the_invitee() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let mut config = client_config(&stack);
    config.core.ring_timeout = std::time::Duration::from_secs(3);
    let door = appliance_with(&stack, "gt-door", config).await;
    let a = appliance(&stack, "gt-a").await;
    let b = appliance(&stack, "gt-b").await;
    let (mut a_events, mut b_events) = (a.events(), b.events());
    let call = door.call(&[user("gt-a"), user("gt-b")]).expect("group call placed");
    let a_call = accept_next(&a, &mut a_events, "gt-door").await;
    // b rings and never answers: 408 at the door, and the invitation is withdrawn (b's call ends, 487).
    let b_ringing = next_incoming(&b, &mut b_events).await;
    let b_call = b_ringing.call().clone();
    let of_b = || call.remote_participants().into_iter().find(|p| p.identifier() == Some(user("gt-b")));
    eventually("b is disconnected with 408 at the door", || {
        of_b().is_some_and(|p| {
            p.state() == ParticipantState::Disconnected && p.call_end_reason().is_some_and(|r| r.code == 408)
        })
    })
    .await;
    let mut b_call_events = b_call.events();
    wait_state(&b_call, &mut b_call_events, CallState::Disconnected).await;
    assert_eq!(b_call.end_reason().map(|r| r.code), Some(487), "{:?}", b_call.end_reason());
    wait_connected_with(&call, "door", &["gt-a"]).await;
    wait_connected_with(&a_call, "a", &["gt-door"]).await;
    call.hang_up().await.expect("hang up");
    for c in [&door, &a, &b] {
        c.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_owners_lost_session_ends_its_call_and_once_back_it_closes_the_room_and_withdraws_invitations() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let janus = stack.janus_ws_url().trim_start_matches("ws://").parse().expect("Janus address");
    let proxy = callbox_tests::CuttableProxy::start(janus).await.expect("proxy");
    let mut config = client_config(&stack);
    config.janus_urls = vec![proxy.ws_url()];
    // The session counts as lost after 2 s without it (Janus itself would keep it 30 s).
    config.reclaim_window = std::time::Duration::from_secs(2);
    let door = appliance_with(&stack, "gl-door", config).await;
    let a = appliance(&stack, "gl-a").await;
    let b = appliance(&stack, "gl-b").await;
    let (mut a_events, mut b_events) = (a.events(), b.events());
    let call = door.call(&[user("gl-a"), user("gl-b")]).expect("group call placed");
    let a_call = accept_next(&a, &mut a_events, "gl-door").await;
    // b rings and is left ringing; its invitation lapses only after the door's 45 s ring time.
    let b_call = next_incoming(&b, &mut b_events).await.call().clone();
    wait_connected_with(&call, "door", &["gl-a"]).await;
    let room = call.guest_access().expect("in the room").room;

    // The door loses its session: the way to Janus held closed past its reclaim window.
    proxy.hold_closed(true);
    assert_eq!(proxy.cut(), 1);
    let mut call_events = call.events();
    wait_state(&call, &mut call_events, CallState::Disconnected).await;
    assert_eq!(call.end_reason().map(|r| r.subcode), Some(subcode::SIGNALING_LOST), "{:?}", call.end_reason());
    proxy.hold_closed(false);

    // Once connected again, the door closes the room (a's call ends) and withdraws b's invitation (487 at b).
    let mut b_call_events = b_call.events();
    wait_state(&b_call, &mut b_call_events, CallState::Disconnected).await;
    assert_eq!(b_call.end_reason().map(|r| r.code), Some(487), "{:?}", b_call.end_reason());
    let mut a_call_events = a_call.events();
    wait_state(&a_call, &mut a_call_events, CallState::Disconnected).await;
    assert_eq!(a_call.end_reason(), Some(CallEndReason::remote_hang_up()));
    assert!(!room_exists(&stack, room).await, "the room is closed");
    for c in [&door, &a, &b] {
        c.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_without_a_room_grant_cannot_start_a_group_call_but_joins_one() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let door = callbox_tests::appliance::appliance_without_rooms(&stack, "gr-door", client_config(&stack))
        .await
        .expect("the door starts");
    let a = appliance(&stack, "gr-a").await;
    let b = appliance(&stack, "gr-b").await;
    let mut door_events = door.events();
    assert!(all_rooms(&stack).await.is_empty());

    // The door's token has no room grant: its group call ends at once with 403, nobody rings.
    let call = door.call(&[user("gr-a"), user("gr-b")]).expect("group call placed");
    let mut call_events = call.events();
    wait_state(&call, &mut call_events, CallState::Disconnected).await;
    let reason = call.end_reason().expect("an end reason");
    assert_eq!((reason.code, reason.subcode), (403, subcode::NO_ROOM_GRANT), "{reason:?}");
    assert!(reason.message.contains("room grant"), "{reason:?}");
    // Janus never got a room, and no invitation went out.
    assert!(all_rooms(&stack).await.is_empty(), "a room was created");
    // Nor can a device without the grant go around its firmware: a `create` of its own with a Janus token like
    // its (both plugins) and no admin key is refused by Janus (429: admin_key missing).
    let (session, _connection) = stack.janus_session().await.expect("Janus session");
    let (raw, _) = VideoRoomHandle::attach(&session).await.expect("videoroom handle");
    let create = serde_json::json!({"request": "create", "room": 4711, "permanent": false, "is_private": true});
    match raw.handle().message(create, None).await {
        Err(SignalingError::Plugin { code, .. }) => assert_eq!(code, 429),
        other => panic!("a create without the admin key was not refused: {other:?}"),
    }
    let _ = session.destroy().await;
    assert!(all_rooms(&stack).await.is_empty(), "a room was created");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(a.calls().is_empty() && b.calls().is_empty(), "an invitee rings");

    // Invited into a room, the same door joins it: the grant limits creating rooms, nothing else.
    let a_call = a.call(&[user("gr-door"), user("gr-b")]).expect("a's group call");
    let door_call = accept_next(&door, &mut door_events, "gr-a").await;
    wait_connected_with(&door_call, "door", &["gr-a"]).await;
    assert_eq!(all_rooms(&stack).await.len(), 1);
    a_call.hang_up().await.expect("a hangs up");
    let mut door_call_events = door_call.events();
    wait_state(&door_call, &mut door_call_events, CallState::Disconnected).await;
    for c in [&door, &a, &b] {
        c.shutdown().await;
    }
}

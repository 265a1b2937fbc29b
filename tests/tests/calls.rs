//! 1:1 calls between two callbox appliances through the real Janus sip plugin and Kamailio, inside the test
//! network namespace: ringing, accept, media both ways, hang-up, decline, busy, cancel, hold, DTMF, mute.

mod common;

use callbox::calling::{subcode, CallEndReason, CallState, Event, ParticipantState, VideoStreamKind};
use callbox::media::VideoCodec;
use callbox_tests::{Stack, StackOptions};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_calls_b_both_connect_exchange_media_and_a_hangs_up() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let a = appliance(&stack, "front-door").await;
    let b = appliance(&stack, "monitor").await;
    let mut b_events = b.events();

    let call = a.call(&[user("monitor")]).expect("call placed");
    assert_eq!(call.state(), CallState::Connecting);
    let mut a_events = call.events();
    let incoming = next_incoming(&b, &mut b_events).await;
    assert_eq!(incoming.from(), &user("front-door"));
    wait_state(&call, &mut a_events, CallState::Ringing).await;
    let participant = &call.remote_participants()[0];
    assert_eq!(participant.identifier(), Some(user("monitor")));
    assert_eq!(participant.state(), ParticipantState::Ringing);

    let b_call = incoming.accept().await.expect("accept");
    let mut b_call_events = b_call.events();
    wait_state(&call, &mut a_events, CallState::Connected).await;
    wait_state(&b_call, &mut b_call_events, CallState::Connected).await;
    assert_eq!(participant.state(), ParticipantState::Connected);

    // Real media both ways: each decodes the other's moving test pattern and hears its tone.
    assert_video_advances(&call, "front-door").await;
    assert_video_advances(&b_call, "monitor").await;
    assert_audio_level(&call, "front-door", -30.0).await;
    assert_audio_level(&b_call, "monitor", -30.0).await;
    // The tone makes the far end count as speaking, and its video stream available.
    let b_side = b_call.remote_participants().remove(0);
    eventually("the front door is speaking at the monitor", || b_side.is_speaking()).await;
    eventually("the front door's video is available at the monitor", || {
        b_side.video_streams().first().is_some_and(|s| s.is_available() && s.kind() == Some(VideoStreamKind::Video))
    })
    .await;
    assert_eq!(call.media_stats().and_then(|s| s.video_codec), Some(VideoCodec::H264));

    call.hang_up().await.expect("hang up");
    assert_eq!(call.end_reason(), Some(CallEndReason::local_hang_up()));
    wait_state(&b_call, &mut b_call_events, CallState::Disconnected).await;
    assert_eq!(b_call.end_reason(), Some(CallEndReason::remote_hang_up()));
    assert_eq!(b_side.state(), ParticipantState::Disconnected);
    assert!(a.calls().is_empty() && b.calls().is_empty());
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vp8_preferred_by_the_caller_is_used_both_ways() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let a = appliance_with(&stack, "door-vp8", prefer(VideoCodec::Vp8, client_config(&stack))).await;
    let b = appliance(&stack, "monitor-vp8").await;
    let mut b_events = b.events();
    let call = a.call(&[user("monitor-vp8")]).expect("call placed");
    let b_call = next_incoming(&b, &mut b_events).await.accept().await.expect("accept");
    let mut a_events = call.events();
    wait_state(&call, &mut a_events, CallState::Connected).await;
    assert_video_advances(&call, "door").await;
    assert_video_advances(&b_call, "monitor").await;
    assert_eq!(call.media_stats().and_then(|s| s.video_codec), Some(VideoCodec::Vp8));
    assert_eq!(b_call.media_stats().and_then(|s| s.remote_video_codec), Some(VideoCodec::Vp8));
    call.hang_up().await.expect("hang up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn declined_busy_and_cancelled_calls_end_with_their_sip_codes() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let a = appliance(&stack, "caller").await;
    let b = appliance(&stack, "callee").await;
    let c = appliance(&stack, "other").await;
    let mut b_events = b.events();

    // B declines: A's participant ends with 603.
    let call = a.call(&[user("callee")]).expect("call");
    next_incoming(&b, &mut b_events).await.reject(603).await.expect("reject");
    let mut a_events = call.events();
    wait_state(&call, &mut a_events, CallState::Disconnected).await;
    let p = &call.remote_participants()[0];
    assert_eq!(p.state(), ParticipantState::Disconnected);
    assert_eq!(p.call_end_reason().map(|r| r.code), Some(603));
    assert_eq!(call.end_reason().map(|r| r.code), Some(603));

    // B busy in a call with C: A gets 486 (B's second handle takes the INVITE, and B's core declines it busy).
    let c_call = c.call(&[user("callee")]).expect("call");
    let b_call = next_incoming(&b, &mut b_events).await.accept().await.expect("accept");
    let mut c_events = c_call.events();
    wait_state(&c_call, &mut c_events, CallState::Connected).await;
    let call = a.call(&[user("callee")]).expect("call");
    let mut a_events = call.events();
    wait_state(&call, &mut a_events, CallState::Disconnected).await;
    assert_eq!(call.end_reason().map(|r| r.code), Some(486));
    assert_eq!(b_call.state(), CallState::Connected, "the busy callee's call goes on");
    c_call.hang_up().await.expect("hang up");

    // A cancels while B rings: B sees 487.
    let call = a.call(&[user("callee")]).expect("call");
    let incoming = next_incoming(&b, &mut b_events).await;
    let mut a_events = call.events();
    wait_state(&call, &mut a_events, CallState::Ringing).await;
    let b_ringing = incoming.call().clone();
    let mut b_ring_events = b_ringing.events();
    call.hang_up().await.expect("cancel");
    wait_state(&b_ringing, &mut b_ring_events, CallState::Disconnected).await;
    assert_eq!(b_ringing.end_reason().map(|r| r.code), Some(487));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_user_ends_with_480_or_404() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let a = appliance(&stack, "lonely").await;
    let call = a.call(&[user("nobody-registered")]).expect("call");
    let mut events = call.events();
    wait_state(&call, &mut events, CallState::Disconnected).await;
    let code = call.end_reason().map(|r| r.code);
    assert!(matches!(code, Some(404) | Some(480)), "end reason {:?}", call.end_reason());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hold_resume_dtmf_mute_and_video_reach_the_far_end() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let a = appliance(&stack, "door-h").await;
    let b = appliance(&stack, "monitor-h").await;
    let mut b_events = b.events();
    let call = a.call(&[user("monitor-h")]).expect("call");
    let b_call = next_incoming(&b, &mut b_events).await.accept().await.expect("accept");
    let mut a_events = call.events();
    let mut b_call_events = b_call.events();
    wait_state(&call, &mut a_events, CallState::Connected).await;
    wait_state(&b_call, &mut b_call_events, CallState::Connected).await;
    let a_at_b = b_call.remote_participants().remove(0);

    // Hold from A: B sees A OnHold, then Connected again on resume.
    call.hold().await.expect("hold");
    assert_eq!(call.state(), CallState::LocalHold);
    eventually("B sees A on hold", || a_at_b.state() == ParticipantState::OnHold).await;
    assert_eq!(b_call.state(), CallState::RemoteHold);
    call.resume().await.expect("resume");
    assert_eq!(call.state(), CallState::Connected);
    eventually("B sees A connected again", || a_at_b.state() == ParticipantState::Connected).await;
    assert_eq!(b_call.state(), CallState::Connected);

    // DTMF from A arrives at B, digit by digit, in order.
    for d in ['1', '#', '9'] {
        call.send_dtmf(d).await.expect("dtmf");
    }
    let mut digits = String::new();
    while digits.len() < 3 {
        match tokio::time::timeout(WAIT, b_call_events.next_event()).await.expect("DTMF within the bound") {
            Some(Event::DtmfReceived { digit, .. }) => digits.push(digit),
            Some(_) => {}
            None => panic!("event stream ended"),
        }
    }
    assert_eq!(digits, "1#9");

    // Mute and video off from A are seen by B.
    eventually("A's video is available at B", || a_at_b.video_streams().first().is_some_and(|s| s.is_available()))
        .await;
    call.mute().await.expect("mute");
    call.stop_video().await.expect("video off");
    eventually("B sees A muted", || a_at_b.is_muted()).await;
    eventually("B sees A's video unavailable", || a_at_b.video_streams().first().is_some_and(|s| !s.is_available()))
        .await;
    call.unmute().await.expect("unmute");
    call.start_video().await.expect("video on");
    eventually("B sees A unmuted", || !a_at_b.is_muted()).await;
    eventually("B sees A's video again", || a_at_b.video_streams().first().is_some_and(|s| s.is_available())).await;

    b_call.hang_up().await.expect("hang up from B");
    wait_state(&call, &mut a_events, CallState::Disconnected).await;
    let reason = call.end_reason().expect("end reason");
    assert_eq!((reason.code, reason.subcode), (0, subcode::REMOTE_HANG_UP));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calling_again_right_after_a_call_ended_rings_again() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let a = appliance(&stack, "door-again").await;
    let b = appliance(&stack, "monitor-again").await;
    let mut b_events = b.events();
    let call = a.call(&[user("monitor-again")]).expect("call");
    next_incoming(&b, &mut b_events).await.reject(603).await.expect("reject");
    let mut a_events = call.events();
    wait_state(&call, &mut a_events, CallState::Disconnected).await;
    // At once again (the doorbell pressed twice), after a decline and after a hang-up: it rings and connects
    // every time, although Janus may still be tearing the previous call down on the handle that carried it.
    for round in 0..3 {
        let call = a.call(&[user("monitor-again")]).expect("call again");
        let mut a_events = call.events();
        let b_call = next_incoming(&b, &mut b_events).await.accept().await.expect("accept");
        wait_state(&call, &mut a_events, CallState::Connected).await;
        assert_audio_level(&b_call, "monitor", -30.0).await;
        if round % 2 == 0 {
            call.hang_up().await.expect("hang up");
        } else {
            b_call.hang_up().await.expect("hang up from the monitor");
            wait_state(&call, &mut a_events, CallState::Disconnected).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unanswered_call_ends_with_408_and_the_callee_sees_it_cancelled() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let mut config = client_config(&stack);
    config.core.ring_timeout = std::time::Duration::from_secs(3);
    let a = appliance_with(&stack, "door-408", config).await;
    let b = appliance(&stack, "monitor-408").await;
    let mut b_events = b.events();
    let call = a.call(&[user("monitor-408")]).expect("call");
    let ringing = next_incoming(&b, &mut b_events).await;
    let b_call = ringing.call().clone();
    let mut b_call_events = b_call.events();
    let mut a_events = call.events();
    wait_state(&call, &mut a_events, CallState::Disconnected).await;
    let reason = call.end_reason().expect("end reason");
    assert_eq!((reason.code, reason.subcode), (408, subcode::NO_ANSWER_TIMEOUT));
    wait_state(&b_call, &mut b_call_events, CallState::Disconnected).await;
    assert_eq!(b_call.end_reason().map(|r| r.code), Some(487));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropping_the_client_hangs_up_and_unregisters() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let a = appliance(&stack, "door-drop").await;
    let b = appliance(&stack, "monitor-drop").await;
    let mut b_events = b.events();
    let call = a.call(&[user("monitor-drop")]).expect("call");
    let b_call = next_incoming(&b, &mut b_events).await.accept().await.expect("accept");
    let mut b_call_events = b_call.events();
    wait_state(&b_call, &mut b_call_events, CallState::Connected).await;
    drop(call);
    drop(a);
    // The far end sees the call end, and the dropped appliance is no longer registered.
    wait_state(&b_call, &mut b_call_events, CallState::Disconnected).await;
    assert_eq!(b_call.end_reason(), Some(CallEndReason::remote_hang_up()));
    let again = b.call(&[user("door-drop")]).expect("call back");
    let mut again_events = again.events();
    wait_state(&again, &mut again_events, CallState::Disconnected).await;
    let code = again.end_reason().map(|r| r.code);
    assert!(matches!(code, Some(404) | Some(480)), "end reason {:?}", again.end_reason());
}

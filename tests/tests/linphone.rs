//! linphone (Debian's `linphonec`, liblinphone 5.1) as a resident's SIP phone against a running appliance: a second
//! foreign SIP stack besides baresip, checked at the linphone end. The door rings it and it answers: it records the
//! door's 440 Hz tone, decodes the door's video (a snapshot of the test pattern) while the door decodes its static
//! picture, types the door code as RFC 4733 telephone-events (the relay pulses once), holds and resumes the call
//! (the door's call goes RemoteHold and back), and hears the door again after the resume. It also calls the
//! auto-answering door itself and hears it.

mod common;

use std::time::Duration;

use callbox::appliance::Behaviour;
use callbox::calling::CallState;
use callbox::client::Call;
use callbox::media::VideoCodec;
use callbox_tests::compat::{Direction, Verified};
use callbox_tests::linphone::{decode_jpeg, Linphone, LinphoneEvent, LinphoneOptions};
use callbox_tests::{Stack, StackOptions};
use common::*;

const ENDPOINT: &str = "linphonec (liblinphone 5.1)";
/// linphone's own tone, distinct from the appliance's so that nothing it sends can pass for what it heard.
const LINPHONE_TONE_HZ: u32 = 1000;

async fn linphone(stack: &Stack, user: &str) -> Linphone {
    Linphone::start(stack, LinphoneOptions::registered_user(user).tone_hz(LINPHONE_TONE_HZ)).await.unwrap_or_else(|e| {
        stack.dump_logs();
        panic!("linphone {user} did not start: {e}")
    })
}

/// Both ways of video: linphone decodes the door's test pattern (a snapshot, 320x240, not flat) and the door
/// decodes linphone's static picture (VP8 frames decoded).
async fn assert_video_both_ways(stack: &Stack, phone: &Linphone, call: &Call, name: &str) {
    phone.static_picture_fps(10).expect("staticpic fps");
    let jpeg = stack.dir().join(format!("{name}-linphone-frame.jpg"));
    phone.snapshot_received(&jpeg, WAIT).await.expect("linphone decodes the door's video");
    let picture = decode_jpeg(&jpeg).expect("the snapshot decodes");
    eprintln!(
        "linphone decoded the door's video: {}x{}, spread {:.1}",
        picture.width,
        picture.height,
        picture.spread()
    );
    assert_eq!((picture.width, picture.height), (320, 240), "linphone decoded another size");
    assert!(picture.spread() > 20.0, "linphone's snapshot is flat (spread {:.1})", picture.spread());
    eventually("the door decodes linphone's video", || {
        call.media_stats().is_some_and(|s| s.video_frames_decoded >= 5 && s.remote_video_codec == Some(VideoCodec::Vp8))
    })
    .await;
    let first = call.media_stats().map(|s| s.video_frames_decoded).unwrap_or(0);
    eventually("the door keeps decoding linphone's video", || {
        call.media_stats().is_some_and(|s| s.video_frames_decoded >= first + 20)
    })
    .await;
    let decoded = call.media_stats().map(|s| s.video_frames_decoded).unwrap_or(0);
    eprintln!("the door decoded {decoded} VP8 frames of linphone's static picture");
}

/// The DTMF went as telephone-events: liblinphone logged each digit's RFC 2833 events as sent, and no SIP INFO
/// with a dtmf-relay body left it (its log holds every SIP message it sent).
fn assert_dtmf_was_rfc4733(phone: &Linphone, digits: usize) {
    let log = phone.debug_log();
    let sent = log.matches("Finished sending RFC2833 dtmf").count();
    assert_eq!(sent, digits, "linphone logged {sent} RFC 2833 digits sent");
    assert!(!log.contains("application/dtmf-relay"), "linphone sent DTMF as SIP INFO");
}

/// linphone's SIP and media sockets are all on 127.0.0.1 (SIP, and RTP and RTCP of audio and video in a call).
fn assert_only_loopback(phone: &Linphone) {
    let sockets = phone.sockets().expect("linphone's sockets");
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    assert!(sockets.len() >= 5, "linphone holds {sockets:?}");
    assert!(sockets.iter().all(|s| s.local.ip() == loopback), "linphone binds elsewhere than 127.0.0.1: {sockets:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_door_rings_linphone_which_hears_it_opens_it_with_rfc4733_and_holds() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let phone = linphone(&stack, "resident-l").await;
    let door =
        door_with_code(&stack, "door-l", Behaviour { targets: vec![user("resident-l")], ..Behaviour::default() });
    let client = door.client(WAIT).await.expect("the door registers");

    // The doorbell rings linphone, which answers.
    door.buttons.press("call").expect("press");
    let incoming = phone.wait_for(LinphoneEvent::IncomingCall, WAIT).await.expect("linphone rings");
    assert!(incoming.peer.as_deref().is_some_and(|p| p.contains("door-l@")), "the caller: {incoming:?}");
    phone.answer().expect("answer");
    let (_, call) = the_call(&door).await;
    let mut events = call.events();
    wait_state(&call, &mut events, CallState::Connected).await;
    let streams = phone.wait_for(LinphoneEvent::StreamsRunning, WAIT).await.expect("media at linphone");
    assert_eq!(streams.param.as_deref(), Some("video"), "linphone's streams: {streams:?}");

    assert_video_both_ways(&stack, &phone, &call, "door-l").await;
    assert_only_loopback(&phone);
    // The door hears linphone's tone.
    assert_audio_level(&call, "the door", -30.0).await;

    // The resident types the code: the relay pulses once.
    phone.send_digits(&format!("{CODE}#")).expect("digits");
    let took = wait_pulses(&door.outputs, 1).await;
    eprintln!("the relay pulsed {took:?} after linphone began typing {CODE}#");
    assert_dtmf_was_rfc4733(&phone, CODE.len() + 1);

    // Hold: the door's call goes RemoteHold; resumed, back to Connected.
    tokio::time::sleep(Duration::from_secs(1)).await;
    phone.pause().expect("pause");
    phone.wait_for(LinphoneEvent::Paused, WAIT).await.expect("paused at linphone");
    wait_state(&call, &mut events, CallState::RemoteHold).await;
    eprintln!("linphone holds: the door's call is {:?}", call.state());
    let before_hold = phone.dir().join("received-0.wav");
    // The next stream start (the resume) records into a file of its own.
    let after_resume = phone.record_to("after-resume.wav").expect("record");
    tokio::time::sleep(Duration::from_secs(1)).await;
    phone.resume().expect("resume");
    phone.wait_for(LinphoneEvent::StreamsRunning, WAIT).await.expect("resumed at linphone");
    wait_state(&call, &mut events, CallState::Connected).await;
    eprintln!("linphone resumes: the door's call is {:?}", call.state());
    tokio::time::sleep(Duration::from_secs(3)).await;

    door.buttons.press("hang_up").expect("press");
    let ended = phone.wait_for(LinphoneEvent::Ended, WAIT).await.expect("linphone sees the hang-up");
    eprintln!("linphone: {}", ended.line);
    wait_state(&call, &mut events, CallState::Disconnected).await;
    assert_heard_the_appliance("linphone before the hold", &phone.recording(&before_hold).expect("recording"));
    assert_heard_the_appliance("linphone after the resume", &phone.recording(&after_resume).expect("recording"));
    assert_eq!(door.outputs.pulses("relay").len(), 1);
    Verified::new(ENDPOINT, Direction::ApplianceCalls, "linphone::the_door_rings_linphone")
        .audio("both ways (the door's tone recorded at linphone, before the hold and after the resume)")
        .video("both ways, VP8 (the door's pattern decoded at linphone)")
        .dtmf("RFC 4733 from linphone opens the door")
        .hold("from linphone: the door's call RemoteHold, then Connected with audio again")
        .record();
    drop(client);
    door.stop().await.expect("the door stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn linphone_calls_the_door_and_hears_it() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let phone = linphone(&stack, "resident-m").await;
    let door =
        door_with_code(&stack, "door-m", Behaviour { auto_answer_after: Some(Duration::ZERO), ..Behaviour::default() });
    let client = door.client(WAIT).await.expect("the door registers");

    phone.call(&format!("sip:door-m@{}", stack.sip_domain())).expect("call");
    phone.wait_for(LinphoneEvent::Connected, WAIT).await.expect("the door answers");
    let streams = phone.wait_for(LinphoneEvent::StreamsRunning, WAIT).await.expect("media at linphone");
    assert_eq!(streams.param.as_deref(), Some("video"), "linphone's streams: {streams:?}");
    let (_, call) = the_call(&door).await;
    let mut events = call.events();
    wait_state(&call, &mut events, CallState::Connected).await;
    assert_video_both_ways(&stack, &phone, &call, "door-m").await;
    assert_only_loopback(&phone);
    assert_audio_level(&call, "the door", -30.0).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    phone.terminate().expect("terminate");
    wait_state(&call, &mut events, CallState::Disconnected).await;
    phone.wait_for(LinphoneEvent::Ended, WAIT).await.expect("ended at linphone");
    assert_heard_the_appliance(
        "linphone calling the door",
        &phone.recording(&phone.dir().join("received-0.wav")).expect("recording"),
    );
    Verified::new(ENDPOINT, Direction::ItCallsTheAppliance, "linphone::linphone_calls_the_door")
        .audio("both ways (the door's tone recorded at linphone); linphone's default codecs, PCMA and G729 by number")
        .video("both ways, VP8 (decoded at linphone)")
        .record();
    drop(client);
    door.stop().await.expect("the door stops");
}

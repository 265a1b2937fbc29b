//! Foreign SIP endpoints against a running appliance, each checked at the foreign end: baresip as a resident's
//! registered SIP phone and as the PSTN trunk. The foreign end records what it decoded (its `sndfile` module: the
//! appliance's 440 Hz tone, at a level), saves a decoded video frame (its `snapshot` module: the appliance's test
//! pattern), receives the appliance's DTMF as RFC 4733 events, and its RFC 4733 digits open the door relay.

mod common;

use std::path::Path;
use std::time::Duration;

use callbox::appliance::Behaviour;
use callbox::calling::{CallState, Identifier};
use callbox_tests::compat::{Direction, Verified};
use callbox_tests::{Baresip, BaresipEvent, BaresipOptions, Stack, StackOptions};
use common::*;

const PHONE: &str = "baresip 1.0 (registered SIP phone)";
const TRUNK: &str = "baresip 1.0 (PSTN trunk stand-in)";
/// The foreign end's own tone, distinct from the appliance's so that nothing it sends can pass for what it heard.
const FOREIGN_TONE_HZ: u32 = 1000;

/// What the foreign end heard in its latest call (see `common::assert_heard_the_appliance`).
fn assert_heard_in_its_last_call(phone: &Baresip) {
    let recordings = phone.received_audio().expect("the foreign end's recordings");
    let rec = recordings.last().unwrap_or_else(|| panic!("{} recorded no call", phone.name()));
    assert_heard_the_appliance(phone.name(), rec);
}

/// A frame the foreign end decoded: the appliance's test pattern at the size it sends (320x240 in the tests),
/// not a flat picture.
fn assert_decoded_the_appliance(png_path: &Path) -> (u32, u32) {
    let file = std::fs::File::open(png_path).expect("the snapshot");
    let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let pixels = &buf[..info.buffer_size()];
    let mean = pixels.iter().map(|&p| f64::from(p)).sum::<f64>() / pixels.len() as f64;
    let spread = (pixels.iter().map(|&p| (f64::from(p) - mean).powi(2)).sum::<f64>() / pixels.len() as f64).sqrt();
    assert_eq!((info.width, info.height), (320, 240), "the foreign end decoded another size");
    assert!(spread > 20.0, "the decoded frame is flat (spread {spread:.1})");
    (info.width, info.height)
}

/// Digits the foreign end received (CALL_DTMF_START events), until `n` arrived.
async fn digits_received(phone: &Baresip, n: usize) -> String {
    let mut got = String::new();
    while got.len() < n {
        let e = phone.wait_for(BaresipEvent::DtmfReceived, WAIT).await.expect("a DTMF digit at the foreign end");
        got.push_str(e.param.as_deref().unwrap_or("?"));
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_residents_sip_phone_hears_and_sees_the_door_and_its_digits_open_it() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let phone = stack
        .start_baresip(BaresipOptions::registered_user("resident-p").tone_hz(FOREIGN_TONE_HZ))
        .await
        .expect("the resident's phone");
    let door =
        door_with_code(&stack, "door-p", Behaviour { targets: vec![user("resident-p")], ..Behaviour::default() });
    let client = door.client(WAIT).await.expect("the door registers");

    // The doorbell rings the resident's phone, which answers.
    door.buttons.press("call").expect("press");
    phone.wait_for(BaresipEvent::CallIncoming, WAIT).await.expect("the phone rings");
    phone.accept().await.expect("the resident answers");
    let (_, call) = the_call(&door).await;
    let mut events = call.events();
    wait_state(&call, &mut events, CallState::Connected).await;
    phone.wait_for(BaresipEvent::CallEstablished, WAIT).await.expect("established at the phone");

    // The phone decodes the door's camera; the door hears and decodes the phone.
    let png = stack.dir().join("resident-p-frame.png");
    phone.snapshot_received(&png, WAIT).await.expect("the phone decodes the door's video");
    assert_decoded_the_appliance(&png);
    assert_audio_level(&call, "the door", -40.0).await;
    eventually("the door decodes the phone's video", || call.media_stats().is_some_and(|s| s.video_frames_decoded > 5))
        .await;

    // The resident types the code (RFC 4733 from baresip): the relay pulses once.
    phone.send_digits(&format!("{CODE}#")).await.expect("digits");
    wait_pulses(&door.outputs, 1).await;

    // The appliance's digits reach the phone as telephone-events.
    for d in "19#".chars() {
        call.send_dtmf(d).await.expect("dtmf");
    }
    assert_eq!(digits_received(&phone, 3).await, "19#");
    // Each digit: 5 tone packets and 3 end packets, counted as they left.
    eventually("the digits' telephone-events on the wire", || {
        call.media_stats().is_some_and(|s| s.telephone_events_sent == 3 * 8)
    })
    .await;

    tokio::time::sleep(Duration::from_secs(1)).await;
    door.buttons.press("hang_up").expect("press");
    phone.wait_for(BaresipEvent::CallClosed, WAIT).await.expect("the phone sees the hang-up");
    assert_heard_in_its_last_call(&phone);
    assert_eq!(door.outputs.pulses("relay").len(), 1);
    Verified::new(PHONE, Direction::ApplianceCalls, "foreign_phones::a_residents_sip_phone_hears_and_sees_the_door")
        .audio("both ways (the door's tone recorded at the phone)")
        .video("both ways, VP8 (the door's test pattern decoded at the phone)")
        .dtmf("RFC 4733 both ways; the phone's code opens the door")
        .record();
    drop(client);
    door.stop().await.expect("the door stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_residents_sip_phone_calls_the_door_and_hears_it() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let phone = stack
        .start_baresip(BaresipOptions::registered_user("resident-q").tone_hz(FOREIGN_TONE_HZ))
        .await
        .expect("the resident's phone");
    let door =
        door_with_code(&stack, "door-q", Behaviour { auto_answer_after: Some(Duration::ZERO), ..Behaviour::default() });
    let client = door.client(WAIT).await.expect("the door registers");
    phone.dial(&format!("sip:door-q@{}", stack.sip_domain())).await.expect("dial");
    phone.wait_for(BaresipEvent::CallEstablished, WAIT).await.expect("the door answers");
    let (_, call) = the_call(&door).await;
    let mut events = call.events();
    wait_state(&call, &mut events, CallState::Connected).await;
    let png = stack.dir().join("resident-q-frame.png");
    phone.snapshot_received(&png, WAIT).await.expect("the phone decodes the door's video");
    assert_decoded_the_appliance(&png);
    phone.send_digits(&format!("{CODE}#")).await.expect("digits");
    wait_pulses(&door.outputs, 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    phone.hangup().await.expect("the resident hangs up");
    wait_state(&call, &mut events, CallState::Disconnected).await;
    phone.wait_for(BaresipEvent::CallClosed, WAIT).await.expect("closed at the phone");
    assert_heard_in_its_last_call(&phone);
    Verified::new(PHONE, Direction::ItCallsTheAppliance, "foreign_phones::a_residents_sip_phone_calls_the_door")
        .audio("appliance → phone (recorded at the phone)")
        .video("appliance → phone, VP8 (decoded at the phone)")
        .dtmf("RFC 4733 from the phone opens the door")
        .record();
    drop(client);
    door.stop().await.expect("the door stops");
}

/// Groups of 100 ms windows of `rec` that a `hz` tone dominates (over half the window's power), groups split by a
/// gap of at least `gap` windows: how many separate times the tone was heard.
fn tone_bursts(rec: &callbox_tests::Recording, hz: f64, gap: usize) -> usize {
    let window = (rec.rate / 10).max(1) as usize;
    let hz = hz * 48_000.0 / f64::from(rec.rate.max(1));
    let hits: Vec<usize> = rec
        .samples
        .chunks_exact(window)
        .enumerate()
        .filter(|(_, w)| callbox::devices::audio::tone_share(w, hz) > 0.5)
        .map(|(i, _)| i)
        .collect();
    hits.windows(2).filter(|p| p[1] - p[0] >= gap).count() + usize::from(!hits.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_wrong_code_is_answered_with_its_tone_and_the_third_ends_the_call_after_it() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let phone = stack
        .start_baresip(BaresipOptions::registered_user("resident-w").tone_hz(FOREIGN_TONE_HZ))
        .await
        .expect("the resident's phone");
    let door =
        door_with_code(&stack, "door-w", Behaviour { auto_answer_after: Some(Duration::ZERO), ..Behaviour::default() });
    let client = door.client(WAIT).await.expect("the door registers");
    phone.dial(&format!("sip:door-w@{}", stack.sip_domain())).await.expect("dial");
    phone.wait_for(BaresipEvent::CallEstablished, WAIT).await.expect("the door answers");
    let (_, call) = the_call(&door).await;
    let mut events = call.events();
    wait_state(&call, &mut events, CallState::Connected).await;
    // Media flows both ways before the first digit (RFC 4733 sent at once after the answer can be lost).
    let png = stack.dir().join("resident-w-frame.png");
    phone.snapshot_received(&png, WAIT).await.expect("the phone decodes the door's video");
    for code in ["1111#", "2222#", "3333#"] {
        phone.send_digits(code).await.expect("digits");
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    // The third wrong code in the call ends it, from the door's side.
    wait_state(&call, &mut events, CallState::Disconnected).await;
    phone.wait_for(BaresipEvent::CallClosed, WAIT).await.expect("closed at the phone");
    assert!(door.outputs.pulses("relay").is_empty(), "a wrong code moved the relay");
    let recordings = phone.received_audio().expect("the phone's recordings");
    let rec = recordings.last().expect("a recording of the call");
    // The tone is 400 Hz over the door's 440 Hz microphone tone; three codes 1.5 s apart: three separate bursts,
    // the last one heard before the hang-up.
    let bursts = tone_bursts(rec, 400.0, 6);
    assert_eq!(bursts, 3, "wrong-code tones heard at the phone ({:.1} s recorded)", rec.seconds());
    drop(client);
    door.stop().await.expect("the door stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pstn_trunk_hears_the_door_and_digits_from_the_trunk_open_it() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let trunk = stack
        .start_baresip(BaresipOptions::pstn_trunk("+15551234567").tone_hz(FOREIGN_TONE_HZ))
        .await
        .expect("the trunk");
    let number = Identifier::parse("+15551234567", None).expect("a phone number");
    let door = door_with_code(&stack, "door-t", Behaviour { targets: vec![number], ..Behaviour::default() });
    let client = door.client(WAIT).await.expect("the door registers");
    door.buttons.press("call").expect("press");
    trunk.wait_for(BaresipEvent::CallEstablished, WAIT).await.expect("the trunk answers");
    let (_, call) = the_call(&door).await;
    let mut events = call.events();
    wait_state(&call, &mut events, CallState::Connected).await;
    // A mobile's keypad, through the gateway: RFC 4733.
    trunk.send_digits(&format!("{CODE}#")).await.expect("digits");
    wait_pulses(&door.outputs, 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    door.buttons.press("hang_up").expect("press");
    trunk.wait_for(BaresipEvent::CallClosed, WAIT).await.expect("the trunk sees the hang-up");
    assert_heard_in_its_last_call(&trunk);
    Verified::new(TRUNK, Direction::ApplianceCalls, "foreign_phones::the_pstn_trunk_hears_the_door")
        .audio("appliance → trunk (recorded at the trunk)")
        .dtmf("RFC 4733 from the trunk opens the door")
        .record();
    drop(client);
    door.stop().await.expect("the door stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_from_the_pstn_reaches_the_door_which_the_caller_hears_and_opens() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let trunk = stack
        .start_baresip(BaresipOptions::pstn_trunk("+15557654321").tone_hz(FOREIGN_TONE_HZ))
        .await
        .expect("the trunk");
    let door =
        door_with_code(&stack, "door-i", Behaviour { auto_answer_after: Some(Duration::ZERO), ..Behaviour::default() });
    let client = door.client(WAIT).await.expect("the door registers");
    // A mobile calls in through the gateway: the trunk is trusted by Kamailio without credentials.
    trunk.dial(&format!("sip:door-i@{}", stack.sip_domain())).await.expect("dial");
    trunk.wait_for(BaresipEvent::CallEstablished, WAIT).await.expect("the door answers");
    let (_, call) = the_call(&door).await;
    let mut events = call.events();
    wait_state(&call, &mut events, CallState::Connected).await;
    assert_eq!(
        call.remote_participants()[0].identifier(),
        Some(Identifier::parse("+15557654321", None).expect("a number")),
        "the caller is known by its E.164 number"
    );
    trunk.send_digits(&format!("{CODE}#")).await.expect("digits");
    wait_pulses(&door.outputs, 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    trunk.hangup().await.expect("the caller hangs up");
    wait_state(&call, &mut events, CallState::Disconnected).await;
    trunk.wait_for(BaresipEvent::CallClosed, WAIT).await.expect("closed at the trunk");
    assert_heard_in_its_last_call(&trunk);
    Verified::new(TRUNK, Direction::ItCallsTheAppliance, "foreign_phones::a_call_from_the_pstn_reaches_the_door")
        .audio("appliance → trunk (recorded at the trunk)")
        .dtmf("RFC 4733 from the trunk opens the door")
        .record();
    drop(client);
    door.stop().await.expect("the door stops");
}

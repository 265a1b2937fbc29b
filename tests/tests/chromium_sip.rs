//! A browser as a SIP phone: headless Chromium on a janus.js page that uses Janus's SIP plugin
//! (`tests/chromium/sip.html`, shaped like Janus's own siptest demo; driven by `callbox_tests::ChromiumPage`)
//! registers at the test stack's Kamailio as `browser-user` and
//! 1. calls the appliance `door-b` with its camera on, offering what Chromium offers by default (H.264 in several
//!    formats, VP8, ...: nothing is filtered); the appliance accepts; then the browser hangs up;
//! 2. is called by the appliance and answers from the page; then the appliance hangs up.
//!
//! Each way, media is checked at both ends: at the browser through getStats (audio packets and energy rising,
//! video frames decoded rising, and which codec, payload type and fmtp it really receives and sends), at the
//! appliance through its media stats (video frames decoded rising, the browser's tone heard). The far end of each
//! hang-up sees the call end. Asserts on what the page and the appliance report, never on elapsed time.
//!
//! The camera-on call from the browser is the case of a known bug: the appliance answered the second H.264 format of
//! Chromium's offer (PT 108, 42e01f) while Janus's 200 OK to the browser carried it as the first one (PT 102), so
//! the browser refused the answer, its ICE never connected and nothing flowed.

mod common;

use std::time::{Duration, Instant};

use callbox::calling::CallState;
use callbox::client::{Call, CallClient, EventStream};
use callbox::media::VideoCodec;
use callbox_tests::chromium::{SipCall, SipCallState};
use callbox_tests::compat::{Direction, Verified};
use callbox_tests::{ChromiumError, ChromiumOptions, ChromiumPage, PageMediaKind, PageStats, Stack, StackOptions};
use common::*;

/// Bound on each wait for the browser: a cold Chromium start on a loaded 2-core machine is slow; only there so
/// that a broken test fails instead of hanging.
const BROWSER_WAIT: Duration = Duration::from_secs(90);

const BROWSER: &str = "browser-user";
const ENDPOINT: &str = "Chromium (Debian) on janus.js SIP page";
const DOOR: &str = "door-b";

fn must<T>(result: Result<T, ChromiumError>) -> T {
    result.unwrap_or_else(|e| panic!("{BROWSER}: {e}"))
}

/// The appliance decodes the browser's video: its decoded-frame count rises between two readings.
async fn assert_frames_decoded_advance(call: &Call, who: &str) {
    let decoded = || call.media_stats().map(|s| s.video_frames_decoded).unwrap_or(0);
    eventually(&format!("{who} decodes the browser's video"), || decoded() > 0).await;
    let first = decoded();
    eventually(&format!("{who}'s decoded video frames advance past {first}"), || decoded() > first).await;
}

/// The video codec of a getStats codec MIME type.
fn video_codec(mime: Option<&str>) -> Option<VideoCodec> {
    mime.and_then(VideoCodec::from_mime_type)
}

/// At the browser, during call `seq`: the appliance's video decodes (frames rising, with a size) and its tone is
/// heard (packets, samples and energy rising); the browser sends its own video and audio; the ICE pair is on
/// 127.0.0.1. Returns the video codec the browser receives and the one it sends (H.264 or VP8, as getStats says).
async fn assert_browser_media(page: &ChromiumPage, seq: u64) -> (VideoCodec, VideoCodec) {
    let flow = must(page.wait_media_from(DOOR, BROWSER_WAIT).await);
    let after = &flow.after;
    eprintln!("browser, call {seq}: {}", after.summary());
    let call = after.sip_call(seq).unwrap_or_else(|| panic!("the snapshot is of call {seq}: {}", after.summary()));
    assert!(call.pc_up && call.state == SipCallState::Accepted, "{}", after.summary());

    let video = flow.video().expect("video in the later snapshot");
    let before = flow.before.video_from(DOOR).and_then(|v| v.frames_decoded).unwrap_or(0);
    assert!(video.frames_decoded.unwrap_or(0) > before, "frames decoded did not rise: {video:?}");
    assert!(video.frame_width.unwrap_or(0) > 0 && video.frame_height.unwrap_or(0) > 0, "{video:?}");
    let received = video_codec(video.rtp_codec.mime_type.as_deref())
        .unwrap_or_else(|| panic!("the browser decodes H.264 or VP8 from {DOOR}: {:?}", video.rtp_codec));

    let audio = flow.audio().expect("audio in the later snapshot");
    assert_eq!(audio.rtp_codec.mime_type.as_deref().map(str::to_ascii_lowercase).as_deref(), Some("audio/opus"));
    let energy = |s: &PageStats| s.audio_from(DOOR).and_then(|a| a.total_audio_energy).unwrap_or(0.0);
    let energy_then = energy(after);
    let louder = must(
        page.wait_until(&format!("{DOOR}'s audio energy rising past {energy_then}"), BROWSER_WAIT, |s| {
            energy(s) > energy_then && s.sip_call(seq).is_some()
        })
        .await,
    );
    assert!(louder.audio_from(DOOR).and_then(|a| a.audio_level).unwrap_or(0.0) > 0.0, "{}", louder.summary());

    let sent = after.outbound(PageMediaKind::Video).expect("the browser sends video");
    assert!(sent.packets_sent > 0 && sent.frames_encoded.unwrap_or(0) > 0, "{sent:?}");
    let sending = video_codec(sent.rtp_codec.mime_type.as_deref())
        .unwrap_or_else(|| panic!("the browser sends H.264 or VP8: {:?}", sent.rtp_codec));
    assert!(after.outbound(PageMediaKind::Audio).is_some_and(|a| a.packets_sent > 0), "{}", after.summary());
    assert!(after.ice_on_loopback(), "{}", after.summary());
    eprintln!(
        "browser, call {seq}: receives {} ({} frames decoded {}x{}, {} packets, decoder {:?}), sends {} ({} frames \
         encoded, {} packets, encoder {:?}); audio {} packets, energy {:.3} -> {:.3}; local SDP video [{}], remote \
         SDP video [{}]",
        video.rtp_codec.describe(),
        video.frames_decoded.unwrap_or(0),
        video.frame_width.unwrap_or(0),
        video.frame_height.unwrap_or(0),
        video.packets_received,
        video.decoder_implementation,
        sent.rtp_codec.describe(),
        sent.frames_encoded.unwrap_or(0),
        sent.packets_sent,
        sent.encoder_implementation,
        audio.packets_received,
        energy_then,
        energy(&louder),
        call.local_video.as_deref().unwrap_or("-"),
        call.remote_video.as_deref().unwrap_or("-"),
    );
    (received, sending)
}

/// Every video format of the answer of call `seq`, as the page saw it, is one of the offer with the same payload
/// type, H.264 profile and packetization mode (the page lists them as `"PT NAME[ profile-level-id][ pmN]"`). The
/// H.264 bug broke exactly this: Janus's 200 OK to the browser carried PT 102 with the profile the browser had
/// offered as 108.
fn assert_answer_within_offer(stats: &PageStats, seq: u64) {
    let call = stats.sip_call(seq).expect("the call");
    let (offer, answer) =
        if call.outgoing { (&call.local_video, &call.remote_video) } else { (&call.remote_video, &call.local_video) };
    let list = |s: &Option<String>| -> Vec<String> {
        s.as_deref().unwrap_or("").split(", ").filter(|f| !f.is_empty()).map(str::to_string).collect()
    };
    let (offer, answer) = (list(offer), list(answer));
    assert!(!answer.is_empty(), "call {seq}: no video in the answer: {}", stats.summary());
    for format in &answer {
        assert!(
            offer.contains(format),
            "call {seq}: the answer's video format {format:?} is not in the offer {offer:?}"
        );
    }
}

/// At the appliance: the browser's video decodes (frame count rising), its tone is heard, and the codecs agree
/// with what the browser reports (`received`/`sent` by the browser).
async fn assert_appliance_media(call: &Call, received: VideoCodec, sent: VideoCodec) {
    assert_frames_decoded_advance(call, DOOR).await;
    assert_audio_level(call, DOOR, -30.0).await;
    let stats = call.media_stats().expect("media stats");
    eprintln!(
        "appliance: sends {:?} ({:?}, {} frames), decodes {:?} ({} frames, {} packets), hears {:.1} dBFS",
        stats.video_codec,
        stats.video_encoder,
        stats.video_frames_sent,
        stats.remote_video_codec,
        stats.video_frames_decoded,
        stats.video_packets_received,
        stats.remote_audio_level_dbfs
    );
    assert!(stats.ice_connected, "{stats:?}");
    assert_eq!(stats.video_codec, Some(received), "what the appliance sends is what the browser decodes");
    assert_eq!(stats.remote_video_codec, Some(sent), "what the browser sends is what the appliance decodes");
}

/// Call `seq` is over at the page: hung up, its PeerConnection gone (no streams any more).
async fn wait_call_over(page: &ChromiumPage, seq: u64) -> SipCall {
    let over = must(
        page.wait_until(&format!("call {seq} over"), BROWSER_WAIT, |s| {
            s.sip_call(seq).is_some_and(|c| c.state == SipCallState::HungUp && !c.pc_up)
                && s.inbound.is_empty()
                && s.outbound.is_empty()
        })
        .await,
    );
    over.sip_call(seq).cloned().expect("the call")
}

/// The appliance calls the browser until the page rings with call `seq`; returns the call, its events and the page's
/// snapshot. Janus's SIP plugin turns an INVITE away itself (486 to the caller, `missed_call` to the page) while
/// the browser's handle is still busy with the previous call: its media relay thread, which polls once a second,
/// ends up to about a second after the hang-up. Such a call ends busy, and the appliance calls again.
async fn call_until_the_page_rings(door: &CallClient, page: &ChromiumPage, seq: u64) -> (Call, EventStream, PageStats) {
    const ATTEMPTS: u32 = 5;
    for attempt in 1..=ATTEMPTS {
        let call = door.call(&[user(BROWSER)]).expect("call the browser");
        let events = call.events();
        let deadline = Instant::now() + BROWSER_WAIT;
        loop {
            must(page.check());
            if let Some(s) = page.latest() {
                if s.sip_call(seq).is_some_and(|c| !c.outgoing && c.state == SipCallState::Incoming) {
                    return (call, events, s);
                }
            }
            if call.state() == CallState::Disconnected {
                let reason = call.end_reason();
                assert!(
                    reason.as_ref().is_some_and(|r| r.code == 486) && attempt < ATTEMPTS,
                    "call {seq} to the browser, attempt {attempt}, ended: {reason:?}"
                );
                eprintln!("call {seq} to the browser, attempt {attempt}: busy (486), calling again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                break;
            }
            assert!(Instant::now() < deadline, "call {seq}: the page never rang ({:?})", call.state());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    unreachable!("the last attempt returns or panics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_browser_on_janus_sip_calls_the_appliance_with_its_camera_on_and_is_called_by_it() {
    callbox_tests::init_logging();
    let started = Instant::now();
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let door = appliance(&stack, DOOR).await;
    let mut door_events = door.events();

    let page = must(ChromiumPage::start(must(ChromiumOptions::sip_for_stack(&stack, BROWSER))));
    let registered = must(page.wait_registered(BROWSER_WAIT).await);
    eprintln!("browser registered: {}", registered.summary());

    // 1. The browser calls the appliance with its camera on; the appliance accepts.
    must(page.request_call(&format!("sip:{DOOR}@{}", stack.sip_domain())));
    let incoming = next_incoming(&door, &mut door_events).await;
    assert_eq!(incoming.from(), &user(BROWSER));
    let call = incoming.accept().await.expect("accept");
    let mut call_events = call.events();
    wait_state(&call, &mut call_events, CallState::Connected).await;
    let up = must(
        page.wait_sip_call(1, "accepted, PeerConnection up", BROWSER_WAIT, |c| {
            c.outgoing && c.state == SipCallState::Accepted && c.pc_up
        })
        .await,
    );
    eprintln!("browser, call 1 up: {}", up.summary());
    assert_answer_within_offer(&up, 1);
    let (received, sent) = assert_browser_media(&page, 1).await;
    assert_appliance_media(&call, received, sent).await;
    eprintln!("call 1 (browser -> appliance, camera on): the browser receives {received:?} and sends {sent:?}");
    let verified_1 = Verified::new(ENDPOINT, Direction::ItCallsTheAppliance, "chromium_sip::a_browser_on_janus_sip")
        .audio("both ways (getStats at the browser)")
        .video(format!("both ways, camera on, {} (getStats at the browser)", received.mime_type()));

    // The browser hangs up; the appliance sees the call end.
    must(page.request_hangup());
    wait_state(&call, &mut call_events, CallState::Disconnected).await;
    eprintln!("appliance: call 1 ended, {:?}", call.end_reason());
    let over = wait_call_over(&page, 1).await;
    eprintln!("browser: call 1 over, {:?} {:?}", over.hangup_code, over.hangup_reason);
    must(page.check());

    // 2. The appliance calls the browser; the page answers.
    let (call, mut call_events, ringing) = call_until_the_page_rings(&door, &page, 2).await;
    let peer = ringing.sip_call(2).map(|c| c.peer.clone()).unwrap_or_default();
    assert!(callbox_tests::chromium::display_names(&peer, DOOR), "the caller as the page sees it: {peer}");
    wait_state(&call, &mut call_events, CallState::Ringing).await;
    must(page.request_answer());
    wait_state(&call, &mut call_events, CallState::Connected).await;
    let up = must(
        page.wait_sip_call(2, "accepted, PeerConnection up", BROWSER_WAIT, |c| {
            c.state == SipCallState::Accepted && c.pc_up
        })
        .await,
    );
    assert_answer_within_offer(&up, 2);
    let (received, sent) = assert_browser_media(&page, 2).await;
    assert_appliance_media(&call, received, sent).await;
    eprintln!("call 2 (appliance -> browser): the browser receives {received:?} and sends {sent:?}");
    let verified_2 = Verified::new(ENDPOINT, Direction::ApplianceCalls, "chromium_sip::a_browser_on_janus_sip")
        .audio("both ways (getStats at the browser)")
        .video(format!("both ways, {} (getStats at the browser)", received.mime_type()));

    // The appliance hangs up; the browser sees the call end.
    call.hang_up().await.expect("hang up");
    wait_state(&call, &mut call_events, CallState::Disconnected).await;
    let over = wait_call_over(&page, 2).await;
    eprintln!("browser: call 2 over, {:?} {:?}", over.hangup_code, over.hangup_reason);

    must(page.check());
    must(page.leave(BROWSER_WAIT).await);
    page.stop_async().await;
    stack.check_health().expect("stack healthy");
    verified_1.record();
    verified_2.record();
    eprintln!("chromium_sip test ran in {:?}", started.elapsed());
}

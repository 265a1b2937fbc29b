//! End-to-end tests of `MediaSession`: two sessions in one process on 127.0.0.1, real RTP both ways.

use std::time::{Duration, Instant};

use super::*;

const LONG: Duration = Duration::from_secs(30);

/// Two sessions on the simulated devices. The tone microphone is a measurement signal: noise
/// suppression would (rightly) treat a steady tone as noise, so audio processing is off here.
fn config(codecs: Vec<VideoCodec>) -> MediaConfig {
    MediaConfig {
        audio: AudioConfig { processing: None, ..AudioConfig::default() },
        video: Some(VideoConfig {
            width: 320,
            height: 240,
            fps: 15,
            bitrate_kbps: 400,
            codecs,
            ..VideoConfig::default()
        }),
        ..MediaConfig::default()
    }
}

/// Polls `cond` on the stats until it holds (generous deadline only to avoid hanging).
async fn wait_for(session: &MediaSession, what: &str, cond: impl Fn(&MediaStats) -> bool) -> MediaStats {
    let deadline = Instant::now() + LONG;
    loop {
        let stats = session.stats();
        if cond(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {stats:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connected_pair(offerer: MediaConfig, answerer: MediaConfig) -> (MediaSession, MediaSession) {
    let a = MediaSession::new(offerer).await.unwrap();
    let b = MediaSession::new(answerer).await.unwrap();
    let offer = a.create_offer().await.unwrap();
    assert!(offer.contains("a=candidate:"), "offer has no candidates:\n{offer}");
    assert!(offer.contains("127.0.0.1"), "offer has no loopback candidate:\n{offer}");
    let answer = b.accept_offer(&offer).await.unwrap();
    assert!(answer.contains("a=candidate:"), "answer has no candidates:\n{answer}");
    a.accept_answer(&answer).await.unwrap();
    wait_for(&a, "A connected", |s| s.ice_connected).await;
    wait_for(&b, "B connected", |s| s.ice_connected).await;
    (a, b)
}

/// Each side decodes the other's video (counter advancing) and hears the other's tone.
async fn assert_media_flows(a: &MediaSession, b: &MediaSession, codec: VideoCodec) {
    for (me, name) in [(a, "A"), (b, "B")] {
        let first = wait_for(me, &format!("{name} decodes video"), |s| s.last_remote_frame_counter.is_some()).await;
        let c1 = first.last_remote_frame_counter.unwrap();
        let later =
            wait_for(me, &format!("{name} counter advances"), |s| s.last_remote_frame_counter.is_some_and(|c| c > c1))
                .await;
        assert_eq!(later.remote_video_codec, Some(codec), "{name}");
        assert_eq!(later.video_codec, Some(codec), "{name}");
        let frame = me.last_remote_frame().unwrap();
        assert_eq!((frame.width, frame.height), (320, 240));
        assert!(later.first_remote_frame_at.is_some());
        // Two counters read at least: both counted intact, and no intact frame without a decoded one.
        assert!(later.video_frames_intact >= 2, "{name}: {later:?}");
        assert!(later.video_frames_intact <= later.video_frames_decoded, "{name}: {later:?}");
        wait_for(me, &format!("{name} hears the tone"), |s| {
            s.audio_packets_received > 20 && s.remote_audio_level_dbfs > -30.0
        })
        .await;
    }
    assert!(!b.take_remote_audio().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_call_between_two_sessions() {
    let _ = env_logger::builder().is_test(true).try_init();
    let (a, b) = connected_pair(
        config(vec![VideoCodec::H264, VideoCodec::Vp8]),
        config(vec![VideoCodec::H264, VideoCodec::Vp8]),
    )
    .await;
    let mut events = a.events();
    assert_media_flows(&a, &b, VideoCodec::H264).await;
    assert!(a.stats().keyframes_sent >= 1 && b.stats().keyframes_sent >= 1);
    // The broadcast carried level events.
    let mut saw_level = false;
    while let Ok(ev) = events.try_recv() {
        saw_level |= matches!(ev, MediaEvent::RemoteAudioLevel { .. });
    }
    assert!(saw_level);
    a.close().await;
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vp8_when_the_offerer_prefers_it() {
    let _ = env_logger::builder().is_test(true).try_init();
    let (a, b) = connected_pair(
        config(vec![VideoCodec::Vp8, VideoCodec::H264]),
        config(vec![VideoCodec::H264, VideoCodec::Vp8]),
    )
    .await;
    assert_media_flows(&a, &b, VideoCodec::Vp8).await;
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vp8_when_the_answerer_only_has_vp8() {
    let _ = env_logger::builder().is_test(true).try_init();
    let (a, b) = connected_pair(config(vec![VideoCodec::H264, VideoCodec::Vp8]), config(vec![VideoCodec::Vp8])).await;
    assert_media_flows(&a, &b, VideoCodec::Vp8).await;
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pli_produces_a_keyframe_and_mute_and_video_off_stop_media() {
    let _ = env_logger::builder().is_test(true).try_init();
    // No periodic keyframes during the test: only the start-up one and those asked for.
    let quiet = |codecs| MediaConfig {
        keyframe_interval: Duration::from_secs(3600),
        startup_keyframe_window: Duration::from_millis(1),
        ..config(codecs)
    };
    let (a, b) = connected_pair(quiet(vec![VideoCodec::H264]), quiet(vec![VideoCodec::H264])).await;
    wait_for(&a, "A decodes video", |s| s.last_remote_frame_counter.is_some()).await;
    wait_for(&b, "B decodes video", |s| s.last_remote_frame_counter.is_some()).await;

    // A asks B for a keyframe: B counts the PLI and produces one more keyframe.
    let before = b.stats();
    a.request_remote_keyframe().await.unwrap();
    wait_for(&b, "B receives the PLI", |s| s.plis_received > before.plis_received).await;
    wait_for(&b, "B sends a keyframe", |s| s.keyframes_sent > before.keyframes_sent).await;

    // B mutes: A's level falls to silence (packets keep flowing, as silence).
    wait_for(&a, "A hears the tone", |s| s.remote_audio_level_dbfs > -30.0).await;
    b.set_audio_muted(true);
    wait_for(&a, "A hears silence", |s| s.remote_audio_level_dbfs < -60.0).await;
    b.set_audio_muted(false);
    wait_for(&a, "A hears the tone again", |s| s.remote_audio_level_dbfs > -30.0).await;

    // B turns video off: A's decoded frame count stops growing; back on, it grows again.
    b.set_video_enabled(false);
    let sent = b.stats().video_frames_sent;
    // Let frames already in flight drain, then the count must hold still.
    wait_for(&b, "B stops encoding", |s| s.video_frames_sent == sent).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let decoded = a.stats().video_frames_decoded;
    let sent = b.stats().video_frames_sent;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(b.stats().video_frames_sent, sent, "B still encodes with video off");
    assert_eq!(a.stats().video_frames_decoded, decoded, "A still decodes with B's video off");
    b.set_video_enabled(true);
    wait_for(&a, "A decodes again", |s| s.video_frames_decoded > decoded).await;
    a.close().await;
    b.close().await;
}

/// A microphone and a speaker that fail mid-call (a driver reset) are reopened; the far end keeps
/// hearing the tone, and what the speaker plays keeps reaching the simulated device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_devices_that_fail_mid_call_are_reopened() {
    use crate::devices::audio::sim::{SimAudioBackend, DEFAULT_MICROPHONE_ID, DEFAULT_SPEAKER_ID};
    use crate::devices::video::sim::SimVideoBackend;
    use crate::devices::{DeviceManager, DevicePreferences};
    let _ = env_logger::builder().is_test(true).try_init();
    let audio = SimAudioBackend::new();
    let devices = DeviceManager::new(
        std::sync::Arc::new(audio.clone()),
        std::sync::Arc::new(SimVideoBackend::new()),
        DevicePreferences::in_memory(),
    );
    let a_config = MediaConfig { devices, video: None, ..config(vec![VideoCodec::H264]) };
    let (a, b) = connected_pair(a_config, MediaConfig { video: None, ..config(vec![VideoCodec::H264]) }).await;
    wait_for(&b, "B hears A", |s| s.audio_packets_received > 20 && s.remote_audio_level_dbfs > -30.0).await;
    let tap = audio.speaker_tap(DEFAULT_SPEAKER_ID).expect("A's speaker tap");
    assert!(audio.mark_gone(DEFAULT_MICROPHONE_ID) && audio.mark_gone(DEFAULT_SPEAKER_ID));
    wait_for(&a, "A reopens both devices", |s| s.audio_device_reopens >= 2).await;
    let received = b.stats().audio_packets_received;
    wait_for(&b, "B keeps hearing A", |s| {
        s.audio_packets_received > received + 50 && s.remote_audio_level_dbfs > -30.0
    })
    .await;
    let written = tap.total_written();
    wait_for(&a, "A's speaker plays again", |_| tap.total_written() > written + 4_800).await;
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn bad_config_and_bad_sdp_are_errors_not_panics() {
    let bad =
        MediaConfig { video: Some(VideoConfig { width: 64, ..VideoConfig::default() }), ..MediaConfig::default() };
    assert!(matches!(MediaSession::new(bad).await, Err(MediaError::Config(_))));
    let s = MediaSession::new(MediaConfig { video: None, ..MediaConfig::default() }).await.unwrap();
    assert!(s.accept_offer("this is not sdp").await.is_err());
    s.close().await;
    assert!(matches!(s.create_offer().await, Err(MediaError::Closed)));
}

/// The offer carries the ssrc-audio-level extension on its audio section (Janus's videoroom tells who is talking
/// from the level in each packet), and an answer that accepts it keeps the offered id.
#[tokio::test]
async fn the_offer_negotiates_the_audio_level_extension() {
    let offerer = MediaSession::new(config(vec![VideoCodec::Vp8])).await.unwrap();
    let offer = offerer.create_offer().await.unwrap();
    let audio = offer.split("m=").find(|m| m.starts_with("audio")).expect("an audio section");
    let extmap = audio
        .lines()
        .find(|l| l.starts_with("a=extmap:") && l.contains("urn:ietf:params:rtp-hdrext:ssrc-audio-level"))
        .unwrap_or_else(|| panic!("no audio level extmap in\n{audio}"));
    let answerer = MediaSession::new(config(vec![VideoCodec::Vp8])).await.unwrap();
    let answer = answerer.accept_offer(&offer).await.unwrap();
    assert!(answer.contains(extmap.trim()), "the answer keeps {extmap}");
    offerer.close().await;
    answerer.close().await;
}

/// Drops the lines of `sdp` that contain `what` (a far end that does not offer or answer it).
fn without_lines(sdp: &str, what: &str) -> String {
    sdp.split("\r\n").filter(|l| !l.contains(what)).collect::<Vec<_>>().join("\r\n")
}

/// A plain SIP endpoint (behind Janus's sip plugin) negotiates no audio level extension: audio must still leave,
/// and "sent" must count what left. Before the fix every audio packet of the side that answered such an offer
/// was dropped inside webrtc-rs while the session counted it as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_flows_where_the_audio_level_extension_is_not_negotiated() {
    let a = MediaSession::new(config(vec![VideoCodec::Vp8])).await.unwrap();
    let b = MediaSession::new(config(vec![VideoCodec::Vp8])).await.unwrap();
    let offer = without_lines(&a.create_offer().await.unwrap(), "ssrc-audio-level");
    let answer = b.accept_offer(&offer).await.unwrap();
    assert!(!answer.contains("ssrc-audio-level"), "nothing to answer it with:\n{answer}");
    a.accept_answer(&answer).await.unwrap();
    // B answered without the extension: what B sends must reach A.
    let heard =
        wait_for(&a, "A hears B's tone", |s| s.audio_packets_received > 50 && s.remote_audio_level_dbfs > -30.0).await;
    let sent = b.stats().audio_packets_sent;
    assert!(sent >= heard.audio_packets_received, "B sent {sent}, A received {}", heard.audio_packets_received);
    a.close().await;
    b.close().await;
}

/// Collects the DTMF digits a session reports until `n` arrived.
async fn digits(events: &mut tokio::sync::broadcast::Receiver<MediaEvent>, n: usize) -> (String, Vec<DtmfKind>) {
    let mut got = String::new();
    let mut kinds = Vec::new();
    tokio::time::timeout(LONG, async {
        while got.len() < n {
            match events.recv().await {
                Ok(MediaEvent::Dtmf { digit, kind }) => {
                    got.push(digit);
                    kinds.push(kind);
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("events ended: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {got:?} of {n} digits arrived"));
    (got, kinds)
}

/// RFC 4733 both ways: digits queued on one side arrive once each, in order, at the other, at the Opus clock
/// (the offer lists telephone-event at 48 and 8 kHz; the answer keeps one), and they count as sent on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_digits_travel_as_telephone_events_both_ways() {
    let (a, b) = connected_pair(config(vec![VideoCodec::Vp8]), config(vec![VideoCodec::Vp8])).await;
    let (mut a_events, mut b_events) = (a.events(), b.events());
    assert!(a.has_telephone_events() && b.has_telephone_events());
    for d in "1234#".chars() {
        a.send_dtmf(d).unwrap();
    }
    let (got, kinds) = digits(&mut b_events, 5).await;
    assert_eq!(got, "1234#");
    assert!(kinds.iter().all(|k| *k == DtmfKind::TelephoneEvent));
    b.send_dtmf('*').unwrap();
    assert_eq!(digits(&mut a_events, 1).await.0, "*");
    // 5 digits of 5 tone + 3 end packets each.
    wait_for(&a, "A's events on the wire", |s| s.telephone_events_sent == 40).await;
    assert!(matches!(a.send_dtmf('x'), Err(MediaError::Dtmf(_))));
    a.close().await;
    b.close().await;
}

/// A far end without telephone-event: sending a digit in the stream is refused (the caller falls back to SIP
/// INFO), and in-band detection, when configured, hears the tones of a far end that sends DTMF as sound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_telephone_events_digits_are_refused_and_tones_are_detected_in_band() {
    let mut listener = config(vec![VideoCodec::Vp8]);
    listener.dtmf.detect_in_band = true;
    let mut tones = config(vec![VideoCodec::Vp8]);
    // The far end's microphone plays DTMF '5' (770 + 1336 Hz, 100 ms, then 400 ms of silence) as audio.
    let rate = audio::SAMPLE_RATE as f32;
    let samples: Vec<i16> = (0..audio::SAMPLE_RATE as usize / 2)
        .map(|i| {
            let t = i as f32 / rate;
            if t >= 0.1 {
                return 0;
            }
            let w = |f: f32| (2.0 * std::f32::consts::PI * f * t).sin();
            (6000.0 * (w(770.0) + w(1336.0))) as i16
        })
        .collect();
    let backend = std::sync::Arc::new(crate::devices::audio::sim::SimAudioBackend::new());
    assert!(backend.add_microphone(
        "sim:dtmf",
        "DTMF 5",
        crate::devices::audio::sim::SimSource::Samples(samples.into())
    ));
    tones.devices = crate::devices::DeviceManager::new(
        backend,
        std::sync::Arc::new(crate::devices::video::sim::SimVideoBackend::new()),
        crate::devices::DevicePreferences::in_memory(),
    );
    tones.microphone = Some("sim:dtmf".into());
    let a = MediaSession::new(listener).await.unwrap();
    let b = MediaSession::new(tones).await.unwrap();
    let offer = without_lines(&a.create_offer().await.unwrap(), "telephone-event");
    let answer = b.accept_offer(&offer).await.unwrap();
    a.accept_answer(&answer).await.unwrap();
    wait_for(&a, "A connected", |s| s.ice_connected).await;
    assert!(!a.has_telephone_events());
    assert!(matches!(b.send_dtmf('1'), Err(MediaError::Dtmf(_))));
    let mut events = a.events();
    let (got, kinds) = digits(&mut events, 1).await;
    assert_eq!((got.as_str(), kinds[0]), ("5", DtmfKind::InBand));
    a.close().await;
    b.close().await;
}

//! Shared pieces of the integration tests: appliances (callbox clients with simulated media) provisioned at a
//! test stack's token endpoint, and waiting helpers with generous bounds (they only stop a hung test; nothing
//! here asserts on timing).

#![allow(dead_code)]

use callbox::calling::MediaKind;
use callbox::calling::{CallState, Identifier, ParticipantState};
use callbox::client::{Call, CallClient, ClientConfig, EventStream, IncomingCall};
use callbox::media::{AudioConfig, MediaConfig, RemoteStreamStats, VideoCodec, VideoConfig};
use callbox_tests::Stack;
use std::time::{Duration, Instant};

/// Long enough for a loaded 2-core machine; only there so that a broken test fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(30);

pub fn user(name: &str) -> Identifier {
    Identifier::user(name).expect("valid user id")
}

/// Small video so that several appliances encode and decode at once on 2 cores. The simulated
/// microphone's tone is a measurement signal (the far end checks its level), so audio processing is
/// off: noise suppression rightly treats a steady tone as noise.
pub fn test_media() -> MediaConfig {
    MediaConfig {
        audio: AudioConfig { processing: None, ..AudioConfig::default() },
        video: Some(VideoConfig { width: 320, height: 240, fps: 15, bitrate_kbps: 300, ..VideoConfig::default() }),
        ..MediaConfig::default()
    }
}

pub fn client_config(stack: &Stack) -> ClientConfig {
    callbox_tests::init_logging();
    ClientConfig { janus_urls: vec![stack.janus_ws_url()], media: test_media(), ..ClientConfig::default() }
}

/// An appliance registered as `name`, provisioned with a device key at the stack's token endpoint.
pub async fn appliance(stack: &Stack, name: &str) -> CallClient {
    appliance_with(stack, name, client_config(stack)).await
}

pub async fn appliance_with(stack: &Stack, name: &str, config: ClientConfig) -> CallClient {
    callbox_tests::appliance::appliance(stack, name, config).await.unwrap_or_else(|e| {
        stack.dump_logs();
        panic!("appliance {name} could not start: {e}")
    })
}

pub async fn wait_state(call: &Call, events: &mut EventStream, want: CallState) {
    if let Err(e) = call.wait_state(events, |s| s == want, WAIT).await {
        panic!("call never reached {want:?} (now {:?}, end reason {:?}): {e}", call.state(), call.end_reason());
    }
}

pub async fn next_incoming(client: &CallClient, events: &mut EventStream) -> IncomingCall {
    tokio::time::timeout(WAIT, client.next_incoming_call(events))
        .await
        .expect("an incoming call within the wait bound")
        .expect("the client is running")
}

/// Polls `check` every 100 ms until it is true (panics with `what` after `WAIT`).
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        if start.elapsed() > WAIT {
            panic!("never happened: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn wait_participant_state(call: &Call, want: ParticipantState) {
    let p = call.remote_participants().into_iter().next().expect("a remote participant");
    eventually(&format!("participant {want:?}"), || p.state() == want).await;
}

/// Asserts the far end's video decodes and moves on: two frame counters read apart, the second larger.
pub async fn assert_video_advances(call: &Call, who: &str) {
    eventually(&format!("{who} decodes a frame counter"), || {
        call.media_stats().and_then(|s| s.last_remote_frame_counter).is_some()
    })
    .await;
    let first = call.media_stats().and_then(|s| s.last_remote_frame_counter).unwrap_or(0);
    eventually(&format!("{who}'s decoded frame counter advances past {first}"), || {
        call.media_stats().and_then(|s| s.last_remote_frame_counter).is_some_and(|c| c > first)
    })
    .await;
}

/// Asserts the far end's audio decodes with a level above `min_dbfs`.
pub async fn assert_audio_level(call: &Call, who: &str, min_dbfs: f32) {
    eventually(&format!("{who} hears audio above {min_dbfs} dBFS"), || {
        call.media_stats().is_some_and(|s| s.audio_packets_received > 0 && s.remote_audio_level_dbfs > min_dbfs)
    })
    .await;
}

pub fn prefer(codec: VideoCodec, mut config: ClientConfig) -> ClientConfig {
    if let Some(v) = config.media.video.as_mut() {
        v.codecs = codec.preferred_first();
    }
    config
}

/// How many distinct media sections of a group call's subscription carry `kind` with packets (and decoded frames,
/// with `decoded`): one per member stream, however many SSRCs a section saw.
pub fn distinct_mids(streams: &[RemoteStreamStats], kind: MediaKind, decoded: bool) -> usize {
    let mut mids: Vec<&str> = streams
        .iter()
        .filter(|s| s.kind == kind && s.packets > 0 && (!decoded || s.frames_decoded > 0))
        .filter_map(|s| s.mid.as_deref())
        .collect();
    mids.sort_unstable();
    mids.dedup();
    mids.len()
}

/// The appliance's simulated microphone tone (`SimAudioBackend::new`), what foreign ends must hear.
pub const APPLIANCE_TONE_HZ: f64 = 440.0;

/// What a foreign end recorded of a call (`who`, `what` for the message): the appliance's tone must dominate at least
/// 80 % of its 100 ms windows (the first packets may not, nor a window where a digit replaced the audio or the phone
/// played its own key tones into the file), above -40 dBFS, over at least a second.
pub fn assert_heard_the_appliance(who: &str, rec: &callbox_tests::Recording) {
    let (toned, windows) = rec.tone_windows(APPLIANCE_TONE_HZ);
    let (level, seconds) = (rec.level_dbfs(), rec.seconds());
    eprintln!(
        "{who}: {seconds:.1} s at {} Hz, {level:.1} dBFS; the {APPLIANCE_TONE_HZ} Hz tone dominates {toned} of {windows} \
         windows of 100 ms",
        rec.rate
    );
    assert!(seconds >= 1.0, "{who} recorded only {seconds:.2} s");
    assert!(
        level > -40.0 && toned * 5 >= windows * 4,
        "{who} heard {level:.1} dBFS over {seconds:.1} s; the appliance's {APPLIANCE_TONE_HZ} Hz tone dominates only \
         {toned} of {windows} windows of 100 ms"
    );
}

/// Waits for the `n`th pulse of a running appliance's relay; how long it took.
pub async fn wait_pulses(outputs: &callbox::input::SimOutputs, n: usize) -> Duration {
    let start = Instant::now();
    eventually(&format!("{n} relay pulse(s)"), || outputs.pulses("relay").len() >= n).await;
    start.elapsed()
}

/// A running appliance's client and its one call, once it has one.
pub async fn the_call(door: &callbox_tests::appliance::RunningAppliance) -> (CallClient, Call) {
    let client = door.client(WAIT).await.expect("the appliance registers");
    eventually("the door is in a call", || client.calls().len() == 1).await;
    let call = client.calls().remove(0);
    (client, call)
}

/// The door code of the door appliances the interop tests run.
pub const CODE: &str = "2468";

/// One user as the admission policy names it.
pub fn only(id: &str) -> callbox::appliance::Parties {
    callbox::appliance::Parties::of(vec![callbox::appliance::Party::Exactly(user(id))])
}

/// Every user and every phone number: the foreign phones and the trunk of the interop tests.
pub fn everyone() -> callbox::appliance::Parties {
    use callbox::appliance::{Parties, Party};
    Parties::of(vec![Party::AnyUser, Party::NumberPrefix("+".into())])
}

/// A door appliance's main loop for `user` on the stack, with the door code `CODE` and a 500 ms relay pulse; it
/// admits everyone (users and the trunk's numbers), and everyone may open its door with the code.
pub fn door_with_code(
    stack: &Stack,
    user: &str,
    behaviour: callbox::appliance::Behaviour,
) -> callbox_tests::appliance::RunningAppliance {
    callbox_tests::appliance::RunningAppliance::start(
        stack,
        user,
        client_config(stack),
        callbox::appliance::Behaviour {
            door_code: Some(callbox::calling::Secret::new(CODE)),
            relay_pulse: Duration::from_millis(500),
            admission: callbox::appliance::Admission {
                callers: everyone(),
                auto_answer: everyone(),
                door_openers_calling_in: everyone(),
                door_openers_called: everyone(),
                ..callbox::appliance::Admission::default()
            },
            ..behaviour
        },
        None,
    )
    .expect("sim buttons")
}

/// `from` calls `to` (a user) and `to` answers: the caller's call, Connected, with its events, and the callee's.
pub async fn connected_call(from: &CallClient, to: &CallClient, to_user: &str) -> (Call, EventStream, Call) {
    let mut to_events = to.events();
    let call = from.call(&[user(to_user)]).expect("call");
    let answered = next_incoming(to, &mut to_events).await.accept().await.expect("accept");
    let mut events = call.events();
    wait_state(&call, &mut events, CallState::Connected).await;
    (call, events, answered)
}

/// `from` calls `to` (a user), `to` answers: both connected, audio flowing at the callee; then `from` hangs up.
/// What the fault tests check after each recovery.
pub async fn a_call_works(from: &CallClient, to: &CallClient, to_user: &str) {
    let (call, _, answered) = connected_call(from, to, to_user).await;
    assert_audio_level(&answered, "the callee", -40.0).await;
    call.hang_up().await.expect("hang up");
}

/// Waits up to `bound` until `client` is registered again; returns how long that took since `since`.
pub async fn back_within(client: &CallClient, since: Instant, who: &str, bound: Duration) -> Duration {
    if let Err(e) = client.wait_for_connection(callbox::calling::ConnectionState::Ready, bound).await {
        panic!("{who} did not come back within {bound:?}: {e} (now {:?})", client.connection_state());
    }
    since.elapsed()
}

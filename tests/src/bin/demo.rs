//! The `demo` program (the README's main job, launched by `scripts/demo` inside `tests/netns-run`): starts the
//! local stack and two appliance main loops on simulated devices, a "front-door" and an auto-answering indoor
//! "monitor"; presses the front door's doorbell button, lets the call run with real media, types the door code at
//! the monitor (the door's relay pulses), saves both screens as PNG, presses the hang-up button and prints a
//! summary of setup times, media figures and end reasons. Optionally also calls a phone number through a baresip
//! PSTN trunk.

use callbox::appliance::{Admission, Behaviour, Parties, Party};
use callbox::calling::Secret;
use callbox::calling::{CallEndReason, CallState, Event, Identifier};
use callbox::client::{Call, CallClient, ClientConfig, ClientError, Screen};
use callbox::media::{MediaStats, VideoCodec};
use callbox_tests::appliance::RunningAppliance;
use callbox_tests::{BaresipEvent, BaresipOptions, HarnessError, Stack, StackOptions};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: demo [--seconds N] [--answer-after S] [--codec h264|vp8] [--video WxH@FPS] [--pstn] [--screens DIR]
  --seconds N        how long the call runs with media before the door code and hang-up (default 8)
  --answer-after S   the monitor answers S seconds after its incoming call (default 1, fractions allowed)
  --codec h264|vp8   the front door's preferred video codec (default h264; both are offered)
  --video WxH@FPS    test-pattern video of both appliances (default 640x480@30)
  --pstn             also call +15551234567 through a baresip PSTN trunk
  --screens DIR      where both appliances' screens are saved as PNG during the call (default target/demo)
  --help             this text
environment: RUST_LOG (default warn,callbox=info)
Runs inside the test network namespace: launch it through scripts/demo (or tests/netns-run).";

/// Bound on every wait for the far end or the servers (only there so that a broken run fails instead of hanging).
const WAIT: Duration = Duration::from_secs(30);
/// The simulated microphone's tone (`SimAudioBackend::new`).
const DOOR_TONE_HZ: f64 = 440.0;
const DOOR_CODE: &str = "1234";
const PSTN_NUMBER: &str = "+15551234567";

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
enum DemoError {
    #[error("test stack: {0}")]
    Stack(#[from] HarnessError),
    #[error("{who}: {what}: {source}")]
    Client { who: &'static str, what: &'static str, source: ClientError },
    #[error("{0}")]
    Failed(String),
}

fn client_err(who: &'static str, what: &'static str) -> impl FnOnce(ClientError) -> DemoError {
    move |source| DemoError::Client { who, what, source }
}

#[derive(Debug, Clone)]
struct Options {
    seconds: u64,
    answer_after: Duration,
    codec: VideoCodec,
    width: u32,
    height: u32,
    fps: u32,
    pstn: bool,
    screens: std::path::PathBuf,
}

fn parse_video(spec: &str) -> Result<(u32, u32, u32), String> {
    let bad = || format!("--video: '{spec}' is not WxH@FPS");
    let (size, fps) = spec.split_once('@').ok_or_else(bad)?;
    let (w, h) = size.split_once('x').ok_or_else(bad)?;
    let (w, h, fps) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?, fps.parse().map_err(|_| bad())?);
    if w == 0 || h == 0 || fps == 0 {
        return Err(bad());
    }
    Ok((w, h, fps))
}

/// `Ok(None)` for `--help`.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut o = Options {
        seconds: 8,
        answer_after: Duration::from_secs(1),
        codec: VideoCodec::H264,
        width: 640,
        height: 480,
        fps: 30,
        pstn: false,
        screens: std::path::PathBuf::from("target/demo"),
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--help" | "-h" => return Ok(None),
            "--seconds" => {
                let v = value("--seconds")?;
                o.seconds = v.parse().map_err(|_| format!("--seconds: '{v}' is not a whole number"))?;
            }
            "--answer-after" => {
                let v = value("--answer-after")?;
                let s: f64 = v.parse().map_err(|_| format!("--answer-after: '{v}' is not a number"))?;
                o.answer_after = Duration::try_from_secs_f64(s)
                    .ok()
                    .filter(|d| *d <= Duration::from_secs(20))
                    .ok_or(format!("--answer-after: '{v}' must be between 0 and 20 seconds"))?;
            }
            "--codec" => {
                o.codec = match value("--codec")?.as_str() {
                    "h264" => VideoCodec::H264,
                    "vp8" => VideoCodec::Vp8,
                    other => return Err(format!("--codec: '{other}' is not h264 or vp8")),
                }
            }
            "--video" => (o.width, o.height, o.fps) = parse_video(&value("--video")?)?,
            "--pstn" => o.pstn = true,
            "--screens" => o.screens = value("--screens")?.into(),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(Some(o))
}

fn client_config(stack: &Stack, o: &Options) -> ClientConfig {
    let mut config = ClientConfig { janus_urls: vec![stack.janus_ws_url()], ..ClientConfig::default() };
    // The simulated microphone's tone is what each side measures: noise suppression would (rightly)
    // take a steady tone for noise, so the demo's audio processing is off (echo cancellation on real
    // devices is measured by `bench_audio` and tested in `media::echo`).
    config.media.audio.processing = None;
    if let Some(v) = config.media.video.as_mut() {
        (v.width, v.height, v.fps) = (o.width, o.height, o.fps);
        v.codecs = o.codec.preferred_first();
    }
    config
}

/// What a call went through: when it first reached each state, and the DTMF digits it received.
#[derive(Default)]
struct CallLog {
    states: Vec<(CallState, Instant)>,
    digits: String,
}

impl CallLog {
    fn first(&self, state: CallState) -> Option<Instant> {
        self.states.iter().find(|(s, _)| *s == state).map(|(_, t)| *t)
    }
}

type SharedLog = Arc<Mutex<CallLog>>;

fn lock(log: &SharedLog) -> std::sync::MutexGuard<'_, CallLog> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records the call's states and received digits until it is Disconnected.
fn watch(call: &Call) -> (SharedLog, tokio::task::JoinHandle<()>) {
    let log: SharedLog = Arc::default();
    let mut events = call.events();
    let (call, out) = (call.clone(), log.clone());
    let task = tokio::spawn(async move {
        lock(&out).states.push((call.state(), Instant::now()));
        while let Some(e) = events.next_event().await {
            match e {
                Event::CallStateChanged { state, .. } => {
                    lock(&out).states.push((state, Instant::now()));
                    if state == CallState::Disconnected {
                        break;
                    }
                }
                Event::DtmfReceived { digit, .. } => lock(&out).digits.push(digit),
                _ => {}
            }
        }
    });
    (log, task)
}

fn ms(d: Option<Duration>) -> String {
    d.map(|d| format!("{:>6} ms", d.as_millis())).unwrap_or_else(|| "     -   (never)".into())
}

fn since(later: Option<Instant>, earlier: Instant) -> Option<Duration> {
    later.and_then(|t| t.checked_duration_since(earlier))
}

fn reason(r: Option<CallEndReason>) -> String {
    r.map(|r| format!("{} (code {}, subcode {})", r.message, r.code, r.subcode)).unwrap_or_else(|| "none".into())
}

fn frames(s: &Option<MediaStats>) -> String {
    match s {
        Some(s) => format!(
            "{} decoded, last frame counter {}",
            s.video_frames_decoded,
            s.last_remote_frame_counter.map(|c| format!("#{c}")).unwrap_or_else(|| "none".into())
        ),
        None => "no media".into(),
    }
}

fn level(s: &Option<MediaStats>) -> String {
    match s {
        Some(s) => {
            format!("{:.1} dBFS ({} Opus packets received)", s.remote_audio_level_dbfs, s.audio_packets_received)
        }
        None => "no media".into(),
    }
}

fn codec(s: &Option<MediaStats>) -> String {
    match s {
        Some(s) => format!(
            "sends {} ({}), decodes {}",
            s.video_codec.map(|c| c.mime_type()).unwrap_or("none"),
            s.video_encoder.as_deref().unwrap_or("no encoder"),
            s.remote_video_codec.map(|c| c.mime_type()).unwrap_or("none")
        ),
        None => "no media".into(),
    }
}

fn row(label: &str, value: impl std::fmt::Display) {
    println!("  {label:<44} {value}");
}

/// What the trunk recorded of the door: (seconds, level dBFS, 100 ms windows the door's tone dominates, windows).
type TrunkHeard = (f64, f64, usize, usize);

/// The phone call through the trunk: (connected, level heard in dBFS, what the trunk heard of the door).
async fn pstn_call(stack: &Stack, door: &CallClient) -> Result<(bool, f32, Option<TrunkHeard>), DemoError> {
    let trunk = stack.start_baresip(BaresipOptions::pstn_trunk(PSTN_NUMBER)).await?;
    let number = Identifier::parse(PSTN_NUMBER, None).map_err(|e| DemoError::Failed(format!("{PSTN_NUMBER}: {e}")))?;
    println!("front-door calls {number} (baresip PSTN trunk)");
    let placed = Instant::now();
    let call = door.call(&[number]).map_err(client_err("front-door", "cannot call the PSTN number"))?;
    let mut events = call.events();
    if let Err(e) = call.wait_state(&mut events, |s| s == CallState::Connected, WAIT).await {
        println!("  PSTN call did not connect: {e}; end reason {}", reason(call.end_reason()));
        return Ok((false, -100.0, None));
    }
    println!("  connected after {} ms", placed.elapsed().as_millis());
    if let Err(e) = trunk.wait_for(BaresipEvent::CallEstablished, WAIT).await {
        log::warn!("the trunk did not report the call established: {e}");
    }
    // Listen for a few seconds and keep the loudest 100 ms window heard.
    let mut best = -100.0f32;
    let listen = Instant::now();
    while listen.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(s) = call.media_stats() {
            best = best.max(s.remote_audio_level_dbfs);
        }
    }
    call.hang_up().await.map_err(client_err("front-door", "cannot hang up the PSTN call"))?;
    if let Err(e) = trunk.wait_for(BaresipEvent::CallClosed, WAIT).await {
        log::warn!("the trunk did not report the hang-up: {e}");
    }
    // What the far end heard: the trunk's own recording of the call (baresip's sndfile module).
    let heard = match trunk.received_audio() {
        Ok(recordings) => recordings.last().map(|r| {
            let (toned, windows) = r.tone_windows(DOOR_TONE_HZ);
            (r.seconds(), r.level_dbfs(), toned, windows)
        }),
        Err(e) => {
            log::warn!("the trunk's recording cannot be read: {e}");
            None
        }
    };
    Ok((true, best, heard))
}

async fn run(o: Options) -> Result<(), DemoError> {
    println!(
        "callbox demo: front-door calls monitor; {}x{}@{} video, {} preferred; monitor answers after {:.1} s; \
         {} s of media",
        o.width,
        o.height,
        o.fps,
        o.codec.mime_type(),
        o.answer_after.as_secs_f64(),
        o.seconds
    );
    let t = Instant::now();
    let stack = Stack::start(StackOptions::default()).await?;
    println!(
        "stack up in {} ms: Janus {}, token endpoint {}, Kamailio {}",
        t.elapsed().as_millis(),
        stack.janus_ws_url(),
        stack.token_url(),
        stack.sip_proxy_uri()
    );
    let result = demo_calls(&stack, &o).await;
    if result.is_err() {
        stack.dump_logs();
    }
    result
}

async fn demo_calls(stack: &Stack, o: &Options) -> Result<(), DemoError> {
    let t = Instant::now();
    let start = |name: &str, behaviour: Behaviour| {
        RunningAppliance::start(stack, name, client_config(stack, o), behaviour, Some((800, 480)))
            .map_err(|e| DemoError::Failed(format!("{name}: {e}")))
    };
    let monitor_id = Identifier::user("monitor").map_err(|e| DemoError::Failed(format!("monitor: {e}")))?;
    let door = start(
        "front-door",
        Behaviour {
            targets: vec![monitor_id.clone()],
            door_code: Some(Secret::new(DOOR_CODE)),
            relay_pulse: Duration::from_secs(1),
            // The monitor the door calls may open it with the code; the monitor answers the door on its own.
            admission: Admission {
                door_openers_called: Parties::of(vec![Party::Exactly(monitor_id)]),
                ..Admission::default()
            },
            ..Behaviour::default()
        },
    )?;
    let door_id = Identifier::user("front-door").map_err(|e| DemoError::Failed(format!("front-door: {e}")))?;
    let monitor = start(
        "monitor",
        Behaviour {
            auto_answer_after: Some(o.answer_after),
            admission: Admission { auto_answer: Parties::of(vec![Party::Exactly(door_id)]), ..Admission::default() },
            ..Behaviour::default()
        },
    )?;
    let (Some(door_client), Some(_)) = (door.client(WAIT).await, monitor.client(WAIT).await) else {
        return Err(DemoError::Failed("the appliances did not register".into()));
    };
    println!("appliances front-door and monitor running and registered in {} ms", t.elapsed().as_millis());
    let outcome = main_call(&door, &monitor, o).await;
    let pstn = if o.pstn {
        // Janus's sip handle stays busy for a moment after a call ended.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Some(pstn_call(stack, &door_client).await)
    } else {
        None
    };
    let (a, b) = tokio::join!(door.stop(), monitor.stop());
    for (who, r) in [("front-door", a), ("monitor", b)] {
        if let Err(e) = r {
            log::warn!("{who}: {e}");
        }
    }
    outcome?;
    match pstn {
        None => Ok(()),
        Some(Ok((true, level, heard))) => {
            println!("PSTN call to {PSTN_NUMBER}: connected, the door heard the trunk at {level:.1} dBFS");
            let trunk_heard_the_door = match heard {
                Some((seconds, dbfs, toned, windows)) => {
                    println!(
                        "  the trunk recorded {seconds:.1} s at {dbfs:.1} dBFS; the door's {DOOR_TONE_HZ} Hz tone \
                         dominates {toned} of {windows} windows of 100 ms"
                    );
                    dbfs > -40.0 && toned * 5 >= windows * 4 && windows > 0
                }
                None => {
                    println!("  the trunk recorded nothing");
                    false
                }
            };
            if level <= -60.0 {
                Err(DemoError::Failed(format!("PSTN call: no audio heard from the trunk ({level:.1} dBFS)")))
            } else if !trunk_heard_the_door {
                Err(DemoError::Failed("PSTN call: the trunk did not hear the door".into()))
            } else {
                Ok(())
            }
        }
        Some(Ok((false, _, _))) => Err(DemoError::Failed(format!("the PSTN call to {PSTN_NUMBER} did not connect"))),
        Some(Err(e)) => Err(e),
    }
}

/// Saves each appliance's screen as `<dir>/<name>.png`.
fn save_screens(screens: &[(&str, Option<Screen>)], dir: &std::path::Path) {
    if let Err(e) = std::fs::create_dir_all(dir) {
        log::warn!("cannot create {}: {e}", dir.display());
        return;
    }
    for (name, screen) in screens {
        let Some(screen) = screen else {
            println!("{name}: no screen");
            continue;
        };
        let path = dir.join(format!("{name}.png"));
        match screen.redraw().and_then(|_| screen.snapshot_png(&path)) {
            Ok(()) => println!("{name}'s screen saved as {}", path.display()),
            Err(e) => log::warn!("{name}: screen not saved: {e}"),
        }
    }
}

/// Waits (bounded) for `client`'s next incoming call; returns it and when it arrived.
async fn next_incoming(client: &CallClient, events: &mut callbox::client::EventStream) -> Option<(Call, Instant)> {
    let incoming = tokio::time::timeout(WAIT, client.next_incoming_call(events)).await.ok()??;
    Some((incoming.call().clone(), Instant::now()))
}

/// The doorbell: the front door's call button is pressed; the monitor answers on its own; media runs; the
/// resident types the door code at the monitor and the door's relay opens; the front door's hang-up button ends it.
async fn main_call(door: &RunningAppliance, monitor: &RunningAppliance, o: &Options) -> Result<(), DemoError> {
    let (Some(door_client), Some(monitor_client)) = (door.client(WAIT).await, monitor.client(WAIT).await) else {
        return Err(DemoError::Failed("the appliances did not register".into()));
    };
    let mut monitor_events = monitor_client.events();
    println!("front-door: the doorbell button is pressed");
    let placed = Instant::now();
    door.buttons.press("call").map_err(|e| DemoError::Failed(format!("doorbell: {e}")))?;
    let Some((m_call, incoming_at)) = next_incoming(&monitor_client, &mut monitor_events).await else {
        return Err(DemoError::Failed("the monitor never rang".into()));
    };
    let (monitor_log, _monitor_watch) = watch(&m_call);
    let Some(call) = door_client.calls().into_iter().next() else {
        return Err(DemoError::Failed("the front door has no call".into()));
    };
    let (door_log, door_watch) = watch(&call);
    let mut door_events = call.events();
    if let Err(e) = call.wait_state(&mut door_events, |s| s == CallState::Connected, WAIT + o.answer_after).await {
        let _ = call.hang_up().await;
        return Err(DemoError::Failed(format!(
            "the call did not connect: {e}; front door end reason: {}",
            reason(call.end_reason())
        )));
    }
    // The monitor's auto-answer: its call left Incoming when it answered.
    let accepted_at = lock(&monitor_log).first(CallState::Connecting).unwrap_or(incoming_at);
    println!(
        "monitor answered on its own after {} ms; media for {} s",
        accepted_at.duration_since(incoming_at).as_millis(),
        o.seconds
    );

    // Media runs; keep the latest figures of both sides (they go away with the call's media).
    let (mut door_stats, mut mon_stats) = (None, None);
    let talk_until = Instant::now() + Duration::from_secs(o.seconds);
    while Instant::now() < talk_until && call.state() != CallState::Disconnected {
        tokio::time::sleep(Duration::from_millis(200)).await;
        door_stats = call.media_stats().or(door_stats);
        mon_stats = m_call.media_stats().or(mon_stats);
    }

    // The resident types the door code at the monitor: the front door's relay opens the door.
    println!("monitor sends the door code {DOOR_CODE}#");
    for d in format!("{DOOR_CODE}#").chars() {
        if let Err(e) = m_call.send_dtmf(d).await {
            log::warn!("monitor: DTMF {d} failed: {e}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let relay_deadline = Instant::now() + Duration::from_secs(5);
    while door.outputs.pulses("relay").is_empty() && Instant::now() < relay_deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    door_stats = call.media_stats().or(door_stats);
    mon_stats = m_call.media_stats().or(mon_stats);
    save_screens(&[("front-door", door.handle.screen()), ("monitor", monitor.handle.screen())], &o.screens);

    println!("front-door: the hang-up button is pressed");
    let hang_up = door.buttons.press("hang_up").map_err(|e| e.to_string());
    let mut m_events = m_call.events();
    let monitor_ended = m_call.wait_state(&mut m_events, |s| s == CallState::Disconnected, WAIT).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), door_watch).await;
    let relay = door.outputs.pulses("relay");

    let (dl, ml) = (lock(&door_log), lock(&monitor_log));
    let first_frame = |s: &Option<MediaStats>| since(s.as_ref().and_then(|s| s.first_remote_frame_at), accepted_at);
    println!("\n== summary ==");
    row("doorbell pressed -> monitor's incoming call", ms(Some(incoming_at.duration_since(placed))));
    row("doorbell pressed -> front door's Ringing", ms(since(dl.first(CallState::Ringing), placed)));
    row("monitor auto-answer delay (configured)", format!("{:>6} ms", o.answer_after.as_millis()));
    row("accept -> Connected at front door", ms(since(dl.first(CallState::Connected), accepted_at)));
    row("accept -> Connected at monitor", ms(since(ml.first(CallState::Connected), accepted_at)));
    row("accept -> first video frame at front door", ms(first_frame(&door_stats)));
    row("accept -> first video frame at monitor", ms(first_frame(&mon_stats)));
    row("video frames monitor -> front door", frames(&door_stats));
    row("video frames front door -> monitor", frames(&mon_stats));
    row("audio level heard at front door", level(&door_stats));
    row("audio level heard at monitor", level(&mon_stats));
    row("video codec at front door", codec(&door_stats));
    row("video codec at monitor", codec(&mon_stats));
    row("door code typed at the monitor", format!("{DOOR_CODE}# -> relay pulses {relay:?}"));
    row("front door end reason", reason(call.end_reason()));
    row("monitor end reason", reason(m_call.end_reason()));

    let mut problems = Vec::new();
    if dl.first(CallState::Connected).is_none() {
        problems.push("the front door never connected".to_string());
    }
    for (who, s) in [("front door", &door_stats), ("monitor", &mon_stats)] {
        match s {
            Some(s) if s.video_frames_decoded > 0 && s.audio_packets_received > 0 => {}
            Some(s) => problems.push(format!(
                "no media decoded at the {who} ({} video frames, {} audio packets)",
                s.video_frames_decoded, s.audio_packets_received
            )),
            None => problems.push(format!("the {who} never had media")),
        }
    }
    if relay.len() != 1 {
        problems.push(format!("the door code opened the door {} times (relay pulses {relay:?})", relay.len()));
    }
    let _ = &ml.digits;
    if let Err(e) = hang_up {
        log::warn!("front-door hang-up: {e}");
    }
    if let Err(e) = monitor_ended {
        log::warn!("the monitor's call did not end: {e}");
    }
    if problems.is_empty() {
        println!("result: OK, the call connected and carried audio and video both ways");
        Ok(())
    } else {
        Err(DemoError::Failed(problems.join("; ")))
    }
}

fn main() -> ExitCode {
    callbox_tests::appliance::program_main("demo", USAGE, parse_args, run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_parse_and_default() {
        let o = parse_args(args(&[])).unwrap().unwrap();
        assert_eq!(
            (o.seconds, o.answer_after, o.codec, o.width, o.height, o.fps, o.pstn),
            (8, Duration::from_secs(1), VideoCodec::H264, 640, 480, 30, false)
        );
        let o = parse_args(args(&[
            "--seconds",
            "3",
            "--answer-after",
            "0.5",
            "--codec",
            "vp8",
            "--video",
            "320x240@15",
            "--pstn",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (o.seconds, o.answer_after, o.codec, o.width, o.height, o.fps, o.pstn),
            (3, Duration::from_millis(500), VideoCodec::Vp8, 320, 240, 15, true)
        );
        assert!(parse_args(args(&["--help"])).unwrap().is_none());
        for bad in
            [&["--video", "640x480"][..], &["--codec", "av1"], &["--seconds"], &["--answer-after", "-1"], &["--bogus"]]
        {
            assert!(parse_args(args(bad)).is_err(), "{bad:?}");
        }
    }
}

//! The `callbox` command: `call` places a call and reports what happened, `answer` waits for calls and answers
//! them, both as a real appliance would (Janus + SIP registration, media from the board's devices, or the
//! simulated ones with `--sim`); `devices` lists what the device manager sees. The appliance's main loop
//! (`run --config`) comes with the appliance subsystem.

use callbox::calling::ScalingMode;
use callbox::calling::{CallState, Event, Identifier, RefreshPolicy, Secret};
use callbox::client::{CallClient, ClientConfig, Screen, TokenCredential};
use callbox::devices::audio::alsa::{AlsaBackend, AlsaConfig, Pacing};
use callbox::devices::video::v4l2::V4l2Backend;
use callbox::devices::{DeviceManager, DevicePreferences};
use callbox::display::{Framebuffer, LinuxFramebuffer, MemoryFramebuffer, PixelFormat};
use callbox::media::video::{available_decoders, available_encoders, GstRegistry};
use callbox::media::VideoCodec;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "usage:
  callbox call TARGET [options] [--talk SECS] [--dtmf DIGITS] [--hold-for SECS]
  callbox answer [options] [--calls N] [--after SECS] [--fb /dev/fbN | --screen WxH] [--snapshot FILE.png]
  callbox run --config FILE [--sim] [--board-dir DIR] [--snapshot FILE.png]
                           the appliance (buttons, calls, ringing, door relay, LEDs, screen) until SIGTERM;
                           with --sim, keys on stdin press buttons: c call, m mute, v video, h hang up
  callbox check-config FILE [--board-dir DIR]
  callbox devices [--sim] [--watch SECS] [--alsa-clock] [--dev-dir DIR] [--config FILE]
  callbox version
device options:
  --sim                    simulated devices (tone microphone, capturing speaker, test-pattern camera)
  --camera ID --microphone ID --speaker ID
                           devices to use (default: the defaults kept in --config, else the first found)
  --config FILE            callbox.toml whose [devices] table keeps the default devices
  --alsa-clock             pace ALSA devices by our clock (PCMs without a hardware clock: file, null)
  --dev-dir DIR            where to look for V4L2 cameras (default /dev)
  --no-audio-processing    no echo cancellation / noise suppression (headsets, measurements)
  --encoder ELEMENT        force a GStreamer encoder element; --software-codecs: never the hardware ones
call options:
  --janus URL              Janus WebSocket URL (repeat for fail-over; default ws://127.0.0.1:8188)
  --token-url URL          token endpoint (http://host:port/v1/token) ...
  --device-key-file PATH   ... and the device key to present to it
  --token-file PATH        or a static user access token (JWT) instead
  --bind-ip IP             local address for media (default 127.0.0.1)
  --video WxH@FPS          video size and rate asked of the camera (default 640x480@30), or 'off'
  --codec h264|vp8         preferred video codec (default h264, both offered)
  --country-code CC        default country code for phone numbers without one
  --fb DEVICE              show the far end's video on this framebuffer (answer)
  --screen WxH             ... or on an in-memory screen of that size (measurements, snapshots)
  --snapshot FILE.png      save the screen 2 s into each answered call, and whenever SIGUSR1 arrives
environment: RUST_LOG=info|debug|... (log filter)";

#[derive(Default)]
struct Args {
    command: String,
    target: Option<String>,
    janus: Vec<String>,
    token_url: Option<String>,
    device_key_file: Option<String>,
    token_file: Option<String>,
    bind_ip: Option<String>,
    video: Option<String>,
    codec: Option<String>,
    country_code: Option<String>,
    talk_secs: u64,
    dtmf: Option<String>,
    hold_for: Option<u64>,
    calls: u32,
    after_secs: u64,
    fb: Option<String>,
    screen: Option<String>,
    snapshot: Option<String>,
    sim: bool,
    camera: Option<String>,
    microphone: Option<String>,
    speaker: Option<String>,
    config: Option<String>,
    alsa_clock: bool,
    dev_dir: Option<String>,
    no_audio_processing: bool,
    encoder: Option<String>,
    software_codecs: bool,
    watch_secs: Option<u64>,
    board_dir: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args { talk_secs: 5, calls: 1, ..Args::default() };
    a.command = it.next().ok_or("no command given")?;
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let num = |name: &str, v: String| v.parse::<u64>().map_err(|_| format!("{name}: '{v}' is not a number"));
        match arg.as_str() {
            "--janus" => a.janus.push(value("--janus")?),
            "--token-url" => a.token_url = Some(value("--token-url")?),
            "--device-key-file" => a.device_key_file = Some(value("--device-key-file")?),
            "--token-file" => a.token_file = Some(value("--token-file")?),
            "--bind-ip" => a.bind_ip = Some(value("--bind-ip")?),
            "--video" => a.video = Some(value("--video")?),
            "--codec" => a.codec = Some(value("--codec")?),
            "--country-code" => a.country_code = Some(value("--country-code")?),
            "--talk" => a.talk_secs = num("--talk", value("--talk")?)?,
            "--dtmf" => a.dtmf = Some(value("--dtmf")?),
            "--hold-for" => a.hold_for = Some(num("--hold-for", value("--hold-for")?)?),
            "--calls" => a.calls = u32::try_from(num("--calls", value("--calls")?)?).unwrap_or(u32::MAX),
            "--after" => a.after_secs = num("--after", value("--after")?)?,
            "--fb" => a.fb = Some(value("--fb")?),
            "--screen" => a.screen = Some(value("--screen")?),
            "--snapshot" => a.snapshot = Some(value("--snapshot")?),
            "--sim" => a.sim = true,
            "--camera" => a.camera = Some(value("--camera")?),
            "--microphone" => a.microphone = Some(value("--microphone")?),
            "--speaker" => a.speaker = Some(value("--speaker")?),
            "--config" => a.config = Some(value("--config")?),
            "--alsa-clock" => a.alsa_clock = true,
            "--dev-dir" => a.dev_dir = Some(value("--dev-dir")?),
            "--no-audio-processing" => a.no_audio_processing = true,
            "--encoder" => a.encoder = Some(value("--encoder")?),
            "--software-codecs" => a.software_codecs = true,
            "--board-dir" => a.board_dir = Some(value("--board-dir")?),
            "--watch" => a.watch_secs = Some(num("--watch", value("--watch")?)?),
            other if !other.starts_with("--") && a.target.is_none() => a.target = Some(other.to_string()),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(a)
}

fn read_secret_file(path: &str) -> Result<Secret, String> {
    std::fs::read_to_string(path).map(|s| Secret::new(s.trim())).map_err(|e| format!("cannot read {path}: {e}"))
}

fn credential(a: &Args) -> Result<TokenCredential, String> {
    if let Some(path) = &a.token_file {
        let token = read_secret_file(path)?;
        return TokenCredential::from_static(token.expose()).map_err(|e| format!("{path}: {e}"));
    }
    let url = a.token_url.clone().ok_or("give --token-url with --device-key-file, or --token-file")?;
    let path = a.device_key_file.as_deref().ok_or("--token-url needs --device-key-file")?;
    let key = read_secret_file(path)?;
    Ok(TokenCredential::with_refresher(
        move || {
            let (url, key) = (url.clone(), key.clone());
            async move { callbox_tokensvc::fetch_token(&url, &key, Duration::from_secs(5)).await.map_err(|e| e.to_string()) }
        },
        RefreshPolicy::default(),
    ))
}

/// The device manager: simulated devices, or ALSA + V4L2, with the defaults kept in `--config`.
fn device_manager(a: &Args) -> Result<DeviceManager, String> {
    let prefs = match &a.config {
        Some(path) => DevicePreferences::load(std::path::Path::new(path)).map_err(|e| e.to_string())?,
        None => DevicePreferences::in_memory(),
    };
    if a.sim {
        return Ok(DeviceManager::simulated_with(prefs));
    }
    let pacing = if a.alsa_clock { Pacing::Clock } else { Pacing::Device };
    let alsa = AlsaBackend::new(AlsaConfig { pacing, ..AlsaConfig::default() });
    let v4l2 = match &a.dev_dir {
        Some(dir) => V4l2Backend::with_dev_dir(dir),
        None => V4l2Backend::new(),
    };
    Ok(DeviceManager::new(Arc::new(alsa), Arc::new(v4l2), prefs))
}

fn client_config(a: &Args) -> Result<ClientConfig, String> {
    let mut config = ClientConfig::default();
    config.media.devices = device_manager(a)?;
    config.media.camera = a.camera.clone();
    config.media.microphone = a.microphone.clone();
    config.media.speaker = a.speaker.clone();
    if a.no_audio_processing {
        config.media.audio.processing = None;
    }
    if !a.janus.is_empty() {
        config.janus_urls = a.janus.clone();
    }
    if let Some(ip) = &a.bind_ip {
        config.media.bind_ip = ip.parse().map_err(|_| format!("--bind-ip: '{ip}' is not an IP address"))?;
    }
    match a.video.as_deref() {
        None => {}
        Some("off") => config.media.video = None,
        Some(spec) => {
            let bad = || format!("--video: '{spec}' is not WxH@FPS");
            let (size, fps) = spec.split_once('@').ok_or_else(bad)?;
            let (w, h) = size.split_once('x').ok_or_else(bad)?;
            if let Some(v) = config.media.video.as_mut() {
                v.width = w.parse().map_err(|_| bad())?;
                v.height = h.parse().map_err(|_| bad())?;
                v.fps = fps.parse().map_err(|_| bad())?;
            }
        }
    }
    if let Some(v) = config.media.video.as_mut() {
        v.codec_policy.forced_encoder = a.encoder.clone();
        v.codec_policy.allow_hardware = !a.software_codecs;
    }
    if let (Some(codec), Some(v)) = (a.codec.as_deref(), config.media.video.as_mut()) {
        v.codecs = match codec {
            "h264" => VideoCodec::H264.preferred_first(),
            "vp8" => VideoCodec::Vp8.preferred_first(),
            other => return Err(format!("--codec: '{other}' is not h264 or vp8")),
        };
    }
    Ok(config)
}

fn print_stats(client_call: &callbox::client::Call) {
    if let Some(s) = client_call.media_stats() {
        println!(
            "media: codec {:?}, audio {} sent / {} received (far-end level {:.1} dBFS, longest gap {} ms), \
             video {} frames sent / {} decoded, last far-end frame #{:?}",
            s.video_codec,
            s.audio_packets_sent,
            s.audio_packets_received,
            s.remote_audio_level_dbfs,
            s.max_audio_gap_ms,
            s.video_frames_sent,
            s.video_frames_decoded,
            s.last_remote_frame_counter
        );
    }
}

async fn run_call(a: &Args, client: &CallClient) -> Result<(), String> {
    let target = a.target.as_deref().ok_or("call needs a TARGET")?;
    let target = Identifier::parse(target, a.country_code.as_deref()).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let call = client.call(std::slice::from_ref(&target)).map_err(|e| e.to_string())?;
    let mut events = call.events();
    println!("calling {target}");
    let connected = call.wait_state(&mut events, |s| s == CallState::Connected, Duration::from_secs(60)).await;
    if let Err(e) = connected {
        let reason = call.end_reason();
        return Err(format!("call not connected: {e} {reason:?}"));
    }
    println!("connected after {} ms", started.elapsed().as_millis());
    if let Some(digits) = &a.dtmf {
        for d in digits.chars() {
            call.send_dtmf(d).await.map_err(|e| e.to_string())?;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    if let Some(secs) = a.hold_for {
        call.hold().await.map_err(|e| e.to_string())?;
        println!("on hold for {secs} s");
        tokio::time::sleep(Duration::from_secs(secs)).await;
        call.resume().await.map_err(|e| e.to_string())?;
    }
    let talk = tokio::time::sleep(Duration::from_secs(a.talk_secs));
    tokio::pin!(talk);
    loop {
        tokio::select! {
            _ = &mut talk => break,
            ev = events.next_event() => match ev {
                Some(Event::CallStateChanged { state: CallState::Disconnected, .. }) | None => break,
                Some(e) => log::debug!("{e:?}"),
            },
        }
    }
    print_stats(&call);
    if call.state() != CallState::Disconnected {
        call.hang_up().await.map_err(|e| e.to_string())?;
    }
    println!("ended: {:?}", call.end_reason());
    Ok(())
}

/// The screen the far end's video is shown on, if any.
fn open_screen(a: &Args, client: &CallClient) -> Result<Option<Screen>, String> {
    let framebuffer: Box<dyn Framebuffer + Send> = match (&a.fb, &a.screen) {
        (Some(dev), _) => Box::new(LinuxFramebuffer::open(dev).map_err(|e| e.to_string())?),
        (None, Some(spec)) => {
            let bad = || format!("--screen: '{spec}' is not WxH");
            let (w, h) = spec.split_once('x').ok_or_else(bad)?;
            let (w, h) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
            Box::new(MemoryFramebuffer::new(w, h, PixelFormat::Xrgb8888))
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(Screen::new(client, framebuffer, 30)))
}

async fn run_answer(a: &Args, client: &CallClient) -> Result<(), String> {
    let screen = open_screen(a, client)?;
    if let (Some(screen), Some(path)) = (&screen, &a.snapshot) {
        callbox::client::snapshot_on_sigusr1(screen.clone(), path.into());
    }
    let mut events = client.events();
    for _ in 0..a.calls {
        let incoming = client.next_incoming_call(&mut events).await.ok_or("client closed")?;
        println!("incoming call from {}", incoming.from());
        if a.after_secs > 0 {
            tokio::time::sleep(Duration::from_secs(a.after_secs)).await;
        }
        let call = incoming.accept().await.map_err(|e| e.to_string())?;
        let mut call_events = call.events();
        let _ = call.wait_state(&mut call_events, |s| s == CallState::Connected, Duration::from_secs(30)).await;
        let shown = screen.as_ref().and_then(|screen| {
            let stream = call.remote_participants().first()?.video_streams().into_iter().next()?;
            stream.render(screen, ScalingMode::Fit).map_err(|e| log::warn!("far-end video not shown: {e}")).ok()
        });
        if let (Some(screen), Some(path), Some(_)) = (&screen, &a.snapshot, &shown) {
            // Two seconds into the call, when the far end's picture is on the screen.
            let (screen, path, call) = (screen.clone(), path.clone(), call.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if call.state() == CallState::Connected {
                    match screen.redraw().and_then(|_| screen.snapshot_png(std::path::Path::new(&path))) {
                        Ok(()) => println!("screen saved as {path}"),
                        Err(e) => log::warn!("screen not saved: {e}"),
                    }
                }
            });
        }
        let _ =
            call.wait_state(&mut call_events, |s| s == CallState::Disconnected, Duration::from_secs(24 * 3600)).await;
        if let Some(screen) = &screen {
            let (submitted, dropped) = screen.frame_counts();
            println!("screen: {submitted} frames drawn, {dropped} dropped (far end shown: {})", shown.is_some());
        }
        print_stats(&call);
        println!("ended: {:?}", call.end_reason());
    }
    Ok(())
}

/// `callbox devices`: what the device manager sees, the codecs GStreamer offers, and (with `--watch`)
/// hot-plug events for a while.
async fn run_devices(a: &Args) -> Result<(), String> {
    let manager = device_manager(a)?;
    print!("{}", callbox::devices::report::describe(&manager));
    let registry = GstRegistry;
    if callbox::media::video::init_gstreamer().is_ok() {
        for codec in [VideoCodec::H264, VideoCodec::Vp8] {
            let list = |names: Vec<&str>| if names.is_empty() { "none".to_owned() } else { names.join(", ") };
            println!(
                "{codec:?}: encoders {} (of {}); decoders {}",
                list(available_encoders(&registry, codec)),
                callbox::media::video::encoder_candidates(codec).join(", "),
                list(available_decoders(&registry, codec))
            );
        }
    } else {
        println!("GStreamer: not available");
    }
    if let Some(secs) = a.watch_secs {
        let mut events = manager.events();
        let _watcher = manager.watch(Duration::from_secs(1));
        println!("watching for {secs} s (devices plugged in or out are shown)");
        let deadline = tokio::time::sleep(Duration::from_secs(secs));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                ev = events.recv() => match ev {
                    Ok(e) => println!("{e:?}"),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => println!("({n} events missed)"),
                    Err(_) => break,
                },
            }
        }
    }
    Ok(())
}

fn board_dir(a: &Args) -> std::path::PathBuf {
    a.board_dir
        .clone()
        .or_else(|| std::env::var("CALLBOX_BOARD_DIR").ok())
        .unwrap_or_else(|| callbox::config::DEFAULT_BOARD_DIR.to_owned())
        .into()
}

fn load_config(a: &Args) -> Result<(callbox::config::Config, callbox::config::BoardProfile), String> {
    let path = a.config.as_deref().or(a.target.as_deref()).ok_or("give the configuration file (--config FILE)")?;
    let config = callbox::config::Config::load(std::path::Path::new(path)).map_err(|e| e.to_string())?;
    let board = config.load_board(&board_dir(a)).map_err(|e| e.to_string())?;
    Ok((config, board))
}

/// `callbox check-config FILE`: the effective settings and every problem found.
fn run_check_config(a: &Args) -> Result<(), String> {
    let (config, board) = load_config(a)?;
    let report = callbox::config::check_report(&config, &board);
    print!("{report}");
    // The code file must be the service user's own: checked for real when `callbox run` starts as that user.
    if let Err(e) = config.door_code() {
        println!("warning: {e}");
    }
    if report.contains("result: OK") {
        Ok(())
    } else {
        Err("the configuration has problems".into())
    }
}

/// Keys typed on stdin press the simulated buttons (`callbox run --sim`).
fn keyboard_buttons(buttons: callbox::input::SimButtonHandle) {
    let spawned = std::thread::Builder::new().name("cbx-keyboard".into()).spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            for c in line.chars() {
                match callbox::input::parse_key(c) {
                    Some((name, gesture)) => {
                        if let Err(e) = buttons.gesture(name, gesture) {
                            eprintln!("{e}");
                        }
                    }
                    None => eprintln!("keys: c call, m mute, v video, h hang up (upper case: long press)"),
                }
            }
        }
    });
    if let Err(e) = spawned {
        log::warn!("no keyboard buttons: {e}");
    }
}

/// `callbox run`: the appliance until SIGTERM or Ctrl-C.
async fn run_appliance(a: &Args) -> Result<(), String> {
    let started = Instant::now();
    let (config, board) = load_config(a)?;
    for warning in config.warnings(&board) {
        log::warn!("{warning}");
    }
    let snapshot = a.snapshot.clone().map(Into::into);
    let (setup, controls) = callbox::appliance::setup(&config, &board, a.sim, snapshot).map_err(|e| e.to_string())?;
    if let Some(controls) = controls {
        keyboard_buttons(controls.buttons);
    }
    let handle = callbox::appliance::ApplianceHandle::default();
    let shutdown = async {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(e) => {
                log::warn!("no SIGTERM handler: {e}");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => log::info!("SIGTERM"),
            _ = tokio::signal::ctrl_c() => log::info!("interrupted"),
        }
    };
    log::info!("callbox {} starting ({} ms to set up)", env!("CARGO_PKG_VERSION"), started.elapsed().as_millis());
    callbox::appliance::run(setup, handle, shutdown).await.map_err(|e| e.to_string())
}

async fn run(a: Args) -> Result<(), String> {
    if a.command == "run" {
        return run_appliance(&a).await;
    }
    if a.command == "check-config" {
        return run_check_config(&a);
    }
    if a.command == "version" {
        println!("callbox {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    if a.command == "devices" {
        return run_devices(&a).await;
    }
    if a.command != "call" && a.command != "answer" {
        return Err(format!("unknown command '{}'", a.command));
    }
    let client = CallClient::create(credential(&a)?, client_config(&a)?).await.map_err(|e| e.to_string())?;
    println!("ready as {}", client.identity());
    let result = tokio::select! {
        r = async { if a.command == "call" { run_call(&a, &client).await } else { run_answer(&a, &client).await } } => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    client.shutdown().await;
    result
}

/// Logs through `log`, filtered by `RUST_LOG` (default `info`). Under systemd (`JOURNAL_STREAM` set) each line
/// starts with its syslog priority (`<3>` error ... `<7>` trace) and carries no timestamp: journald adds its
/// own, and `journalctl -p warning` then filters by level.
fn init_logging() {
    use std::io::Write;
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.format(|buf, record| {
            let priority = match record.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            writeln!(buf, "<{priority}>{}: {}", record.target(), record.args())
        });
    }
    builder.init();
}

fn main() -> ExitCode {
    init_logging();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("callbox: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("callbox: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callbox: {e}");
            ExitCode::FAILURE
        }
    }
}

//! The `callbox` command: `run --config FILE` is the appliance's main loop (what the systemd service starts) and
//! `check-config` checks its configuration; `call` places a call and reports what happened, `answer` waits for
//! calls and answers them, both as a real appliance would (Janus + SIP registration, media from the board's
//! devices, or the simulated ones with `--sim`); `devices` lists what the device manager sees; `version`. The
//! command line itself (options, help, parsing) is [`cli`]'s; this file carries the commands out. Exit codes:
//! 0 done, 1 the command failed (printed on stderr), 2 a usage error (clap's).

mod cli;

use callbox::calling::ScalingMode;
use callbox::calling::{CallState, Event, Identifier, RefreshPolicy, Secret};
use callbox::client::{CallClient, ClientConfig, Screen, TokenCredential};
use callbox::devices::audio::alsa::{AlsaBackend, AlsaConfig, Pacing};
use callbox::devices::video::v4l2::V4l2Backend;
use callbox::devices::{DeviceManager, DevicePreferences};
use callbox::display::{Framebuffer, FramebufferFormat, LinuxFramebuffer, MemoryFramebuffer};
use callbox::media::video::{available_decoders, available_encoders, GstRegistry};
use callbox::media::VideoCodec;
use callbox::provisioning::CredentialSource;
use clap::Parser;
use cli::{
    AnswerArgs, CallArgs, CheckConfigArgs, Cli, ClientArgs, Codec, Command, DeviceArgs, DevicesArgs, DtmfInputError,
    DtmfSource, RunArgs,
};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The digits of `--dtmf-file` (a file, or stdin for `-`), read up to [`cli::MAX_DTMF_INPUT_BYTES`] and checked.
/// They stay in `Secret`s: the file may hold a door code.
fn read_dtmf(source: &DtmfSource) -> Result<Secret, DtmfInputError> {
    use std::io::Read;
    let read_err = |source_name: &DtmfSource| {
        let source_name = source_name.clone();
        move |source| DtmfInputError::Read { source_name, source }
    };
    let reader: Box<dyn Read> = match source {
        DtmfSource::Stdin => Box::new(std::io::stdin().lock()),
        DtmfSource::File(path) => Box::new(std::fs::File::open(path).map_err(read_err(source))?),
    };
    let mut bytes = Vec::new();
    // One byte past the cap tells an input at the cap from a longer one.
    reader.take(cli::MAX_DTMF_INPUT_BYTES + 1).read_to_end(&mut bytes).map_err(read_err(source))?;
    let too_long = bytes.len() as u64 > cli::MAX_DTMF_INPUT_BYTES;
    let text = Secret::new(String::from_utf8_lossy(&bytes));
    bytes.fill(0);
    if too_long {
        return Err(DtmfInputError::TooLong { source_name: source.clone() });
    }
    cli::parse_dtmf_digits(text.expose(), source)
}

/// The credential of `call` and `answer`. Their key and token files are read as the appliance reads its own
/// (`provisioning::read_secret_file`): a regular file of mode 0600 or 0400 owned by the user running `callbox`,
/// else refused with an error naming the file, its mode and owner and the fix, never its contents.
fn credential(a: &cli::ServerArgs) -> Result<TokenCredential, String> {
    if let Some(path) = &a.token_file {
        let source = CredentialSource::File { path: path.clone() };
        return callbox::provisioning::static_token(&source).map_err(|e| e.to_string());
    }
    // clap makes sure of both; these errors are for the impossible case.
    let url = a.token_url.clone().ok_or("give --token-url with --device-key-file, or --token-file")?;
    let path = a.device_key_file.as_deref().ok_or("--token-url needs --device-key-file")?;
    let key = callbox::provisioning::read_secret_file(path).map_err(|e| e.to_string())?;
    Ok(TokenCredential::with_refresher(
        move || {
            let (url, key) = (url.clone(), key.clone());
            async move { callbox_tokensvc::fetch_token(&url, &key, Duration::from_secs(5)).await.map_err(|e| e.to_string()) }
        },
        RefreshPolicy::default(),
    ))
}

/// The device manager: simulated devices, or ALSA + V4L2, with the defaults kept in `--config`.
fn device_manager(a: &DeviceArgs) -> Result<DeviceManager, String> {
    let prefs = match &a.config {
        Some(path) => DevicePreferences::load(path).map_err(|e| e.to_string())?,
        None => DevicePreferences::in_memory(),
    };
    if a.sim {
        return Ok(DeviceManager::simulated_showing(prefs, a.sim_picture));
    }
    let pacing = if a.alsa_clock { Pacing::Clock } else { Pacing::Device };
    let alsa = AlsaBackend::new(AlsaConfig { pacing, ..AlsaConfig::default() });
    let v4l2 = match &a.dev_dir {
        Some(dir) => V4l2Backend::with_dev_dir(dir),
        None => V4l2Backend::new(),
    };
    Ok(DeviceManager::new(Arc::new(alsa), Arc::new(v4l2), prefs))
}

fn client_config(a: &ClientArgs) -> Result<ClientConfig, String> {
    let (server, media) = (&a.server, &a.media);
    let mut config = ClientConfig::default();
    config.media.devices = device_manager(&a.devices)?;
    config.media.camera = media.camera.clone();
    config.media.microphone = media.microphone.clone();
    config.media.speaker = media.speaker.clone();
    if media.no_audio_processing {
        config.media.audio.processing = None;
    }
    if !server.janus.is_empty() {
        config.janus_urls = server.janus.clone();
    }
    if let Some(ip) = media.bind_ip {
        config.media.bind_ip = ip;
    }
    match media.video {
        None => {}
        Some(cli::Video::Off) => config.media.video = None,
        Some(cli::Video::Mode { size, fps }) => {
            if let Some(v) = config.media.video.as_mut() {
                (v.width, v.height, v.fps) = (size.width, size.height, fps);
            }
        }
    }
    if let Some(v) = config.media.video.as_mut() {
        v.codec_policy.forced_encoder = media.encoder.clone();
        v.codec_policy.allow_hardware = !media.software_codecs;
    }
    if let (Some(codec), Some(v)) = (media.codec, config.media.video.as_mut()) {
        v.codecs = match codec {
            Codec::H264 => VideoCodec::H264.preferred_first(),
            Codec::Vp8 => VideoCodec::Vp8.preferred_first(),
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

/// `callbox call`; `dtmf`: the digits of `--dtmf-file`, read before the client registered.
async fn run_call(a: &CallArgs, dtmf: Option<Secret>, client: &CallClient) -> Result<(), String> {
    let target = Identifier::parse(&a.target, a.country_code.as_deref()).map_err(|e| e.to_string())?;
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
    if let Some(digits) = &dtmf {
        for d in digits.expose().chars() {
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
                Some(e) => log::debug!("{:?}", callbox::calling::redact::Loggable(&e)),
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
fn open_screen(a: &AnswerArgs, client: &CallClient) -> Result<Option<Screen>, String> {
    let framebuffer: Box<dyn Framebuffer + Send> = match (&a.fb, a.screen) {
        (Some(dev), _) => Box::new(LinuxFramebuffer::open(dev).map_err(|e| e.to_string())?),
        (None, Some(size)) => Box::new(MemoryFramebuffer::new(size.width, size.height, FramebufferFormat::Xrgb8888)),
        (None, None) => return Ok(None),
    };
    Ok(Some(Screen::new(client, framebuffer, 30)))
}

async fn run_answer(a: &AnswerArgs, client: &CallClient) -> Result<(), String> {
    let screen = open_screen(a, client)?;
    if let (Some(screen), Some(path)) = (&screen, &a.snapshot) {
        callbox::client::snapshot_on_sigusr1(screen.clone(), path.clone());
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
                    match screen.redraw().and_then(|_| screen.snapshot_png(&path)) {
                        Ok(()) => println!("screen saved as {}", path.display()),
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
async fn run_devices(a: &DevicesArgs) -> Result<(), String> {
    let manager = device_manager(&a.devices)?;
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

/// The configuration file and the board profile it names, from `board_dir` (`--board-dir`, `CALLBOX_BOARD_DIR`
/// or the default: clap resolves that).
fn load_config(
    path: &Path,
    board_dir: &Path,
) -> Result<(callbox::config::Config, callbox::config::BoardProfile), String> {
    let config = callbox::config::Config::load(path).map_err(|e| e.to_string())?;
    let board = config.load_board(board_dir).map_err(|e| e.to_string())?;
    Ok((config, board))
}

/// `callbox check-config FILE`: the effective settings and every problem found.
fn run_check_config(a: &CheckConfigArgs) -> Result<(), String> {
    // clap requires FILE or --config; the error is for the impossible case.
    let path = a.path().ok_or("give the configuration file (FILE or --config FILE)")?;
    let (config, board) = load_config(path, &a.board.board_dir)?;
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
async fn run_appliance(a: &RunArgs) -> Result<(), String> {
    let started = Instant::now();
    callbox::appliance::health::report_on_sigusr2();
    let (config, board) = load_config(&a.config, &a.board.board_dir)?;
    for warning in config.warnings(&board) {
        log::warn!("{warning}");
    }
    let snapshot = a.snapshot.clone();
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

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Run(a) => run_appliance(&a).await,
        Command::CheckConfig(a) => run_check_config(&a),
        Command::Version => {
            println!("callbox {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Devices(a) => run_devices(&a).await,
        Command::Call(a) => {
            // Read first: a bad file fails at once, not after registering and the far end answering.
            let dtmf = a.dtmf_file.as_ref().map(read_dtmf).transpose().map_err(|e| e.to_string())?;
            with_client(&a.client, async |client| run_call(&a, dtmf, client).await).await
        }
        Command::Answer(a) => with_client(&a.client, async |client| run_answer(&a, client).await).await,
    }
}

/// `call` and `answer`: registers, runs `command` until it ends or Ctrl-C, then shuts the client down.
async fn with_client(
    a: &ClientArgs,
    command: impl AsyncFnOnce(&CallClient) -> Result<(), String>,
) -> Result<(), String> {
    a.server.check_cleartext()?;
    callbox::appliance::health::report_on_sigusr2();
    let client = CallClient::create(credential(&a.server)?, client_config(a)?).await.map_err(|e| e.to_string())?;
    println!("ready as {}", client.identity());
    let result = tokio::select! {
        r = command(&client) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    client.shutdown().await;
    result
}

/// Logs through `log`, filtered by `RUST_LOG` (default `info`). Under systemd (`JOURNAL_STREAM` set) each line
/// starts with its syslog priority (`<3>` error ... `<7>` trace) and carries no timestamp: journald adds its
/// own, and `journalctl -p warning` then filters by level. What goes over the wire is never logged
/// (`callbox::logging`).
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
    let logger = builder.build();
    let max_level = logger.filter();
    // Set once, first thing in main: nothing else installs a logger.
    let _ = callbox::logging::SecretSafeLogger::new(logger).install(max_level);
}

/// No core dump of this process, ever: its memory holds the device key, tokens, SIP credentials and door codes.
/// (The unit also sets `LimitCORE=0`; this covers a start by hand.) Not dumpable also keeps other processes of
/// the same user from attaching to it.
fn forbid_core_dumps() -> std::io::Result<()> {
    let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system calls on this process with a valid, initialised argument.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above; PR_SET_DUMPABLE takes an integer argument.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A panic anywhere (any thread, any task) ends the process at once, after the default hook has printed it: a
/// panicking tokio task would otherwise unwind that task alone and leave a doorbell that looks alive (its LED
/// idle, its watchdog fed) but no longer rings. systemd restarts the service (`Restart=always`). Set here rather
/// than as `panic = "abort"` in the release profile, which would build every dependency twice in CI (the test
/// harness needs unwinding).
fn abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        std::process::abort();
    }));
}

fn main() -> ExitCode {
    abort_on_panic();
    // Help, --version and usage errors: printed by clap, which exits (0, or 2 for an error).
    let cli = Cli::parse();
    init_logging();
    if let Err(e) = forbid_core_dumps() {
        log::warn!("core dumps could not be switched off: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("callbox: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callbox: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs itself again as a child that panics in another thread: the child must die of SIGABRT, having printed
    /// the panic. (x86_64 only: under qemu-aarch64 the test cannot exec its own binary.)
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn a_panic_in_any_thread_aborts_the_process() {
        use std::os::unix::process::ExitStatusExt;
        const CHILD: &str = "CALLBOX_TEST_PANIC_CHILD";
        if std::env::var_os(CHILD).is_some() {
            abort_on_panic();
            let _ = std::thread::spawn(|| panic!("a task went wrong")).join();
            std::process::exit(0);
        }
        let exe = std::env::current_exe().expect("the test binary");
        let out = std::process::Command::new(exe)
            .args(["--exact", "tests::a_panic_in_any_thread_aborts_the_process", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .expect("the child runs");
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "the child ended {:?}", out.status);
        assert!(String::from_utf8_lossy(&out.stderr).contains("a task went wrong"));
    }

    /// A file in a fresh folder of the test's own, with `contents` and `mode`.
    fn secret_file(test: &str, contents: &str, mode: u32) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("callbox-main-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("secret");
        std::fs::write(&path, contents).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    fn server_args(token_file: Option<&Path>, key_file: Option<&Path>) -> cli::ServerArgs {
        cli::ServerArgs {
            janus: Vec::new(),
            token_url: key_file.map(|_| "http://127.0.0.1:1/v1/token".to_owned()),
            device_key_file: key_file.map(Path::to_path_buf),
            token_file: token_file.map(Path::to_path_buf),
            allow_insecure_http: false,
        }
    }

    #[test]
    fn the_cli_refuses_key_and_token_files_others_can_read_without_showing_them() {
        let key = "device-key-value-5177";
        for mode in [0o644, 0o640, 0o604, 0o660] {
            let path = secret_file(&format!("key-{mode:o}"), key, mode);
            let err = credential(&server_args(None, Some(&path))).unwrap_err();
            assert!(err.contains(&path.display().to_string()), "the file is named: {err}");
            assert!(err.contains("refused") && err.contains("chmod 600"), "{err}");
            assert!(!err.contains(key), "the key is shown: {err}");
        }
        // The same rules, the same error, as the appliance's own files.
        let path = secret_file("key-same", key, 0o644);
        let appliance = callbox::provisioning::read_secret_file(&path).unwrap_err().to_string();
        assert_eq!(credential(&server_args(None, Some(&path))).unwrap_err(), appliance);
        let token = "eyJhbGciOiJIUzI1NiJ9.token-value-8008.c2ln";
        let path = secret_file("token-0644", token, 0o644);
        let err = credential(&server_args(Some(&path), None)).unwrap_err();
        assert!(err.contains(&path.display().to_string()) && err.contains("refused"), "{err}");
        assert!(!err.contains("token-value-8008"), "{err}");
    }

    #[test]
    fn the_cli_takes_key_and_token_files_only_the_user_can_read() {
        for mode in [0o600, 0o400] {
            let path = secret_file(&format!("key-ok-{mode:o}"), "k\n", mode);
            assert!(credential(&server_args(None, Some(&path))).is_ok(), "{mode:o}");
        }
        // A readable token file that is no JWT: refused by name, without its contents.
        let path = secret_file("token-bad", "not-a-jwt-value-3131", 0o600);
        let err = credential(&server_args(Some(&path), None)).unwrap_err();
        assert!(err.contains(&path.display().to_string()) && !err.contains("not-a-jwt-value-3131"), "{err}");
        // A directory, a missing file: refused with the file named.
        let dir = path.parent().expect("dir").to_path_buf();
        assert!(credential(&server_args(None, Some(&dir))).unwrap_err().contains("not a regular file"));
        let missing = dir.join("missing");
        assert!(credential(&server_args(Some(&missing), None)).unwrap_err().contains(&missing.display().to_string()));
    }

    #[test]
    fn the_process_leaves_no_core_dump() {
        forbid_core_dumps().expect("switched off");
        // SAFETY: reads of this process's settings into a valid, initialised out-argument.
        let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
        let mut limit = libc::rlimit { rlim_cur: 1, rlim_max: 1 };
        let rc = unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut limit) };
        assert_eq!((dumpable, rc, limit.rlim_cur, limit.rlim_max), (0, 0, 0, 0));
    }
}

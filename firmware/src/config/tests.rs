//! Unit tests of the configuration and board profiles: parsing, defaults, every kind of error naming its key,
//! the cross-check, the conversions (client configuration, display, ALSA, credential) and the report.

use std::path::{Path, PathBuf};

use super::*;
use crate::calling::Identifier;
use crate::input::LedState;
use crate::media::VideoCodec;

const MINIMAL: &str = r#"
[servers]
janus_urls = ["wss://127.0.0.1:8188"]
token_url = "https://tokens.example.com/v1/token"

[credentials]
device_key = "device-key"

[board]
profile = "testboard"
"#;

const BOARD: &str = r#"
name = "testboard"
description = "a test board"

[gpio]
chip = "/dev/gpiochip0"
lines = 32

[buttons.call]
line = 17

[buttons.mute]
line = 27
chip = "expander"
active_low = false
debounce_ms = 10
long_press_ms = 800

[leds.idle]
line = 24

[leds.fault]
line = 26
active_low = true

[relays.door]
line = 5
active_low = true

[display]
framebuffer = "/dev/fb0"

[audio]
capture = "hw:CARD=Device,DEV=0"
playback = "callbox_speaker"
period_us = 5000
buffer_us = 30000

[camera]
device = "/dev/video0"

[video]
codecs = "software"
max_width = 1280
max_height = 720
max_fps = 30
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/callbox/callbox.toml"))
}

fn board() -> BoardProfile {
    BoardProfile::parse(BOARD, Path::new("/usr/share/callbox/board/testboard.toml")).unwrap()
}

/// The single problem of a refused configuration: (key, message).
fn problem(text: &str) -> (String, String) {
    let e = parse(text).unwrap_err();
    let problems = e.problems();
    assert_eq!(problems.len(), 1, "expected one problem, got: {e}");
    (problems[0].key.clone(), problems[0].message.clone())
}

fn with(extra: &str) -> String {
    format!("{MINIMAL}\n{extra}")
}

#[test]
fn a_minimal_file_takes_the_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.servers.janus_urls, ["wss://127.0.0.1:8188"]);
    assert_eq!(c.call.ring_timeout_secs, 45);
    assert!(c.call.video);
    assert!(c.targets().is_empty());
    assert!(c.door.is_none());
    assert!(c.buttons.is_empty());
    assert_eq!(c.video.width, 640);
    assert_eq!(c.video.codec, CodecName::H264);
    assert!(c.audio.processing && c.audio.fec && !c.audio.dtx);
    assert!(c.display.enabled);
    assert_eq!(c.display.fps, 30);
    assert_eq!(c.media_ip(), None);
    assert_eq!(
        c.credential(),
        ConfiguredCredential::DeviceKey(CredentialSource::Systemd { name: "device-key".into() })
    );
    assert_eq!(c.path(), Path::new("/etc/callbox/callbox.toml"));
}

#[test]
fn every_key_is_read() {
    let text = r#"
[identity]
display_name = "Front door"
[servers]
janus_urls = ["wss://a.example.com/janus", "wss://b.example.com/janus"]
token_url = "http://127.0.0.1:8090/v1/token"
allow_insecure_http = true
[credentials]
device_key_file = "keys/device-key"
ca_file = "/etc/callbox/ca.pem"
[call]
targets = ["Reception", "(555) 123-4567"]
country_code = "1"
ring_timeout_secs = 30
auto_answer_after_secs = 0
video = false
[door]
relay = "door"
code_file = "door-code"
pulse_ms = 1500
max_attempts_per_minute = 3
[buttons]
call = "call"
mute = "mute"
[leds]
idle = "idle"
ringing = "idle"
in_call = "idle"
muted = "fault"
fault = "fault"
[devices]
camera = "/dev/video2"
microphone = "default"
speaker = "plughw:CARD=Device,DEV=0"
alsa_clock = true
sim = true
[video]
width = 1280
height = 720
fps = 15
codec = "vp8"
encoder = "vp8enc"
software_codecs = true
[audio]
processing = false
fec = false
dtx = true
[display]
enabled = true
screen = "800x480"
fps = 20
[network]
media_ip = "192.0.2.10"
[board]
profile = "boards/custom.toml"
"#;
    let c = parse(text).unwrap();
    assert_eq!(c.identity.display_name.as_deref(), Some("Front door"));
    assert_eq!(c.targets(), [Identifier::User("reception".into()), Identifier::Phone("+15551234567".into())]);
    assert_eq!(c.auto_answer_after(), Some(std::time::Duration::ZERO));
    assert_eq!(c.ring_timeout(), std::time::Duration::from_secs(30));
    // Relative paths are taken from the file's directory.
    assert_eq!(
        c.credential(),
        ConfiguredCredential::DeviceKey(CredentialSource::File { path: "/etc/callbox/keys/device-key".into() })
    );
    assert_eq!(c.door.as_ref().unwrap().code_file.as_deref(), Some(Path::new("/etc/callbox/door-code")));
    assert_eq!(
        c.board_profile_path(Path::new("/usr/share/callbox/board")),
        Path::new("/etc/callbox/boards/custom.toml")
    );
    assert_eq!(c.buttons.get("mute"), Some(&ButtonAction::Mute));
    assert_eq!(c.leds.get(LedState::Muted), Some("fault"));
    assert_eq!(c.media_ip(), Some("192.0.2.10".parse().unwrap()));
    assert_eq!(c.display_target(None), DisplayTarget::Memory(ScreenSize { width: 800, height: 480 }));
    let ep = c.token_endpoint().unwrap();
    assert!(ep.allow_insecure_http);
    assert_eq!(ep.ca_file.as_deref(), Some(Path::new("/etc/callbox/ca.pem")));
    let alsa = c.alsa_config(None);
    assert_eq!(alsa.pacing, crate::devices::audio::alsa::Pacing::Clock);

    let client = c.client_config(None);
    assert_eq!(client.janus_urls.len(), 2);
    assert!(client.media.video.is_none(), "call.video = false: audio only");
    assert!(client.media.audio.processing.is_none());
    assert!(!client.media.audio.fec && client.media.audio.dtx);
    assert_eq!(client.media.bind_ip, "192.0.2.10".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(client.media.camera.as_deref(), Some("/dev/video2"));
}

#[test]
fn client_config_takes_the_board_where_the_file_is_silent() {
    let c = parse(&with("[call]\nring_timeout_secs = 20\n[identity]\ndisplay_name = \"Gate\"\n")).unwrap();
    let b = board();
    let client = c.client_config(Some(&b));
    assert_eq!(client.janus_urls, ["wss://127.0.0.1:8188"]);
    assert_eq!(client.display_name.as_deref(), Some("Gate"));
    assert_eq!(client.core.ring_timeout, std::time::Duration::from_secs(20));
    let video = client.media.video.as_ref().unwrap();
    assert_eq!((video.width, video.height, video.fps), (640, 480, 30));
    assert_eq!(video.codecs, [VideoCodec::H264, VideoCodec::Vp8]);
    assert!(!video.codec_policy.allow_hardware, "the board says software");
    assert_eq!(video.codec_policy.forced_encoder, None);
    assert!(client.media.audio.processing.is_some());
    assert_eq!(client.media.camera.as_deref(), Some("/dev/video0"));
    assert_eq!(client.media.microphone.as_deref(), Some("hw:CARD=Device,DEV=0"));
    assert_eq!(client.media.speaker.as_deref(), Some("callbox_speaker"));
    // Without a board, hardware is allowed unless the file forbids it.
    assert!(c.client_config(None).media.video.unwrap().codec_policy.allow_hardware);
    // The file's own devices win; simulated devices ignore the board's.
    let sim = parse(&with("[devices]\nsim = true\nspeaker = \"sim-speaker\"\n")).unwrap();
    let client = sim.client_config(Some(&b));
    assert_eq!(client.media.camera, None);
    assert_eq!(client.media.speaker.as_deref(), Some("sim-speaker"));
    assert_eq!(sim.display_target(Some(&b)), DisplayTarget::None);
    use crate::devices::video::sim::SimPicture;
    assert_eq!(sim.devices.sim_camera_picture, SimPicture::Pattern, "the moving pattern by default");
    let still = parse(&with("[devices]\nsim = true\nsim_camera_picture = \"bars\"\n")).unwrap();
    assert_eq!(still.devices.sim_camera_picture, SimPicture::Bars);
    assert!(parse(&with("[devices]\nsim_camera_picture = \"plaid\"\n")).is_err());
}

#[test]
fn display_precedence() {
    let b = board();
    assert_eq!(parse(MINIMAL).unwrap().display_target(Some(&b)), DisplayTarget::Framebuffer("/dev/fb0".into()));
    assert_eq!(parse(MINIMAL).unwrap().display_target(None), DisplayTarget::None);
    let off = parse(&with("[display]\nenabled = false\n")).unwrap();
    assert_eq!(off.display_target(Some(&b)), DisplayTarget::None);
    let fb1 = parse(&with("[display]\nframebuffer = \"/dev/fb1\"\n")).unwrap();
    assert_eq!(fb1.display_target(Some(&b)), DisplayTarget::Framebuffer("/dev/fb1".into()));
}

#[test]
fn board_alsa_and_timing() {
    let b = board();
    let c = parse(MINIMAL).unwrap();
    let alsa = c.alsa_config(Some(&b));
    assert_eq!((alsa.period_us, alsa.buffer_us), (5000, 30000));
    assert_eq!(alsa.pacing, crate::devices::audio::alsa::Pacing::Device);
    let (debounce, long) = b.button_timing("call").unwrap();
    assert_eq!((debounce.as_millis(), long.as_millis()), (30, 1500));
    let (debounce, long) = b.button_timing("mute").unwrap();
    assert_eq!((debounce.as_millis(), long.as_millis()), (10, 800));
    let call = b.button_spec("call").unwrap();
    assert_eq!((call.chip.as_path(), call.line, call.active_low), (Path::new("/dev/gpiochip0"), 17, true));
    let relay = b.relay_spec("door").unwrap();
    assert!(relay.active_low);
    assert_eq!(relay.line, 5);
    assert!(b.led_spec("ringing").unwrap_err().contains("no LED 'ringing'"));
    // The expander is named by label; no such chip here: the error names it.
    let e = b.button_spec("mute").unwrap_err();
    assert!(e.contains("button 'mute'") && e.contains("'expander'"), "{e}");
}

#[test]
fn type_errors_name_the_key_and_line() {
    let (key, msg) = problem(&with("[door]\nrelay = 3\n"));
    assert_eq!(key, "door.relay");
    assert!(msg.contains("invalid type"), "{msg}");
    let e = parse(&with("[door]\nrelay = 3\n")).unwrap_err().to_string();
    assert!(e.starts_with("/etc/callbox/callbox.toml: door.relay: "), "{e}");
    assert!(e.ends_with("(line 13)"), "{e}");

    assert_eq!(problem(&with("[call]\ntargets = [\"a\", 7]\n")).0, "call.targets[1]");
    assert_eq!(problem(&with("[video]\nfps = -1\n")).0, "video.fps");
    assert_eq!(problem(&with("[audio]\nfec = \"yes\"\n")).0, "audio.fec");
    let (key, msg) = problem(&with("[display]\nscreen = \"big\"\n"));
    assert_eq!(key, "display.screen");
    assert!(msg.contains("WxH"), "{msg}");
    let (key, msg) = problem(&with("[buttons]\ndoorbell = \"ring\"\n"));
    assert_eq!(key, "buttons.doorbell");
    assert!(msg.contains("unknown value `ring`") && msg.contains("hang_up"), "{msg}");
    let (key, msg) = problem(&with("[video]\ncodec = \"av1\"\n"));
    assert_eq!(key, "video.codec");
    assert!(msg.contains("h264"), "{msg}");
}

#[test]
fn unknown_and_missing_keys_are_named() {
    let (key, msg) = problem(&with("[door]\nrelay = \"door\"\npulse = 5\n"));
    assert_eq!(key, "door.pulse");
    assert!(msg.starts_with("unknown key") && msg.contains("pulse_ms"), "{msg}");
    assert_eq!(problem(&with("[leds]\nbusy = \"x\"\n")).0, "leds.busy");
    assert_eq!(problem(&with("[camera]\ndevice = \"x\"\n")).0, "camera");
    let (key, msg) = problem(&with("[door]\npulse_ms = 100\n"));
    assert_eq!((key.as_str(), msg.as_str()), ("door.relay", "missing (required)"));
    let no_servers = MINIMAL.replace("[servers]", "[unused]");
    assert_eq!(problem(&no_servers).0, "unused");
    let no_board = MINIMAL.replace("[board]\nprofile = \"testboard\"\n", "");
    let (key, msg) = problem(&no_board);
    assert_eq!((key.as_str(), msg.as_str()), ("board", "missing (required)"));
}

#[test]
fn syntax_errors_give_line_and_column() {
    let e = parse("[servers\njanus_urls = []\n").unwrap_err();
    match &e {
        ConfigError::Syntax { file, line, .. } => {
            assert_eq!(file, "/etc/callbox/callbox.toml");
            assert_eq!(*line, 1);
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    assert!(e.to_string().starts_with("/etc/callbox/callbox.toml:1:"), "{e}");
    let e = parse(&format!("{MINIMAL}\n[servers]\n")).unwrap_err();
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
}

#[test]
fn servers_are_checked() {
    let (key, msg) = problem(&MINIMAL.replace("wss://127.0.0.1:8188", "http://127.0.0.1:8188"));
    assert_eq!(key, "servers.janus_urls[0]");
    assert!(msg.contains("ws://"), "{msg}");
    let (key, msg) = problem(&MINIMAL.replace("https://tokens", "http://tokens"));
    assert_eq!(key, "servers.token_url");
    assert!(msg.contains("allow_insecure_http"), "{msg}");
    let ok = MINIMAL
        .replace("https://tokens", "http://tokens")
        .replace("[credentials]", "allow_insecure_http = true\n[credentials]");
    assert!(parse(&ok).is_ok());
    assert_eq!(problem(&MINIMAL.replace("[\"wss://127.0.0.1:8188\"]", "[]")).0, "servers.janus_urls");
    // Cleartext signaling only when asked for.
    let (key, msg) = problem(&MINIMAL.replace("wss://127.0.0.1:8188", "ws://127.0.0.1:8188"));
    assert_eq!(key, "servers.janus_urls[0]");
    assert!(msg.contains("unencrypted") && msg.contains("allow_insecure_http"), "{msg}");
    let dev = MINIMAL
        .replace("wss://127.0.0.1:8188", "ws://127.0.0.1:8188")
        .replace("[credentials]", "allow_insecure_http = true\n[credentials]");
    assert!(parse(&dev).is_ok());
    let (key, msg) = problem(&MINIMAL.replace("https://tokens.example.com", "https://user:pw@tokens.example.com"));
    assert_eq!(key, "servers.token_url");
    assert!(msg.contains("credentials") && !msg.contains("expected"), "{msg}");
    let no_url = MINIMAL.replace("token_url = \"https://tokens.example.com/v1/token\"\n", "");
    let (key, msg) = problem(&no_url);
    assert_eq!(key, "servers.token_url");
    assert!(msg.contains("device key"), "{msg}");
}

#[test]
fn exactly_one_credential() {
    let none = MINIMAL.replace("device_key = \"device-key\"", "");
    let (key, msg) = problem(&none);
    assert_eq!(key, "credentials");
    assert!(msg.contains("device_key") && msg.contains("static_token_file"), "{msg}");
    let two = MINIMAL.replace("device_key = \"device-key\"", "device_key = \"k\"\nstatic_token_file = \"/t\"");
    let (key, msg) = problem(&two);
    assert_eq!(key, "credentials.static_token_file");
    assert!(msg.contains("only one"), "{msg}");
    let (key, _) = problem(&MINIMAL.replace("\"device-key\"", "\"/etc/callbox/device-key\""));
    assert_eq!(key, "credentials.device_key");
    let token = MINIMAL.replace("device_key = \"device-key\"", "static_token_file = \"/etc/callbox/token\"");
    let c = parse(&token).unwrap();
    assert_eq!(
        c.credential(),
        ConfiguredCredential::StaticToken(CredentialSource::File { path: "/etc/callbox/token".into() })
    );
}

#[test]
fn call_targets_and_ranges() {
    let (key, msg) = problem(&with("[call]\ntargets = [\"alice\", \"5551234567\"]\n"));
    assert_eq!(key, "call.targets[1]");
    assert!(msg.contains("country code"), "{msg}");
    assert!(parse(&with("[call]\ntargets = [\"alice\", \"5551234567\"]\ncountry_code = \"1\"\n")).is_ok());
    let (key, msg) = problem(&with("[call]\ntargets = [\"Alice\", \"alice\"]\n"));
    assert_eq!(key, "call.targets[1]");
    assert!(msg.contains("same target"), "{msg}");
    assert_eq!(problem(&with("[call]\ntargets = [\"-bad\"]\n")).0, "call.targets[0]");
    assert_eq!(problem(&with("[call]\ncountry_code = \"+44\"\n")).0, "call.country_code");
    assert_eq!(problem(&with("[call]\nring_timeout_secs = 1\n")).0, "call.ring_timeout_secs");
    assert_eq!(problem(&with("[call]\nauto_answer_after_secs = 3600\n")).0, "call.auto_answer_after_secs");
    assert_eq!(problem(&with("[door]\nrelay = \"door\"\npulse_ms = 20\n")).0, "door.pulse_ms");
    assert_eq!(problem(&with("[door]\nrelay = \"Door 1\"\n")).0, "door.relay");
    assert_eq!(problem(&with("[video]\nwidth = 641\n")).0, "video.width");
    assert_eq!(problem(&with("[display]\nfps = 0\n")).0, "display.fps");
    assert_eq!(problem(&with("[network]\nmedia_ip = \"0.0.0.0\"\n")).0, "network.media_ip");
    assert_eq!(problem(&with("[network]\nmedia_ip = \"eth0\"\n")).0, "network.media_ip");
    assert_eq!(problem(&with("[devices]\ncamera = \"\"\n")).0, "devices.camera");
    assert_eq!(problem(&MINIMAL.replace("\"testboard\"", "\"Pi 4\"")).0, "board.profile");
    let (key, msg) = problem(&with("[video]\nencoder = \"v4l2h264enc\"\nsoftware_codecs = true\n"));
    assert_eq!(key, "video.encoder");
    assert!(msg.contains("hardware"), "{msg}");
    let (key, _) = problem(&with("[display]\nframebuffer = \"/dev/fb0\"\nscreen = \"800x480\"\n"));
    assert_eq!(key, "display.screen");
}

#[test]
fn several_problems_are_all_reported() {
    let text = with("[call]\nring_timeout_secs = 1\n[video]\nfps = 0\n[door]\nrelay = \"door\"\npulse_ms = 1\n");
    let e = parse(&text).unwrap_err();
    let mut keys = e.keys();
    keys.sort_unstable();
    assert_eq!(keys, ["call.ring_timeout_secs", "door.pulse_ms", "video.fps"]);
    assert_eq!(e.to_string().lines().count(), 3);
}

#[test]
fn cross_check_names_the_missing_lines() {
    let b = board();
    let good = parse(&with("[buttons]\ncall = \"call\"\n[leds]\nidle = \"idle\"\n[door]\nrelay = \"door\"\n")).unwrap();
    good.check_against(&b).unwrap();
    let bad = parse(&with(
        "[buttons]\ndoorbell = \"call\"\n[leds]\nringing = \"blue\"\n[door]\nrelay = \"gate\"\n[video]\nencoder = \"v4l2h264enc\"\n",
    ))
    .unwrap();
    let e = bad.check_against(&b).unwrap_err();
    let mut keys = e.keys();
    keys.sort_unstable();
    assert_eq!(keys, ["buttons.doorbell", "door.relay", "leds.ringing", "video.encoder"]);
    let text = e.to_string();
    assert!(text.contains("/etc/callbox/callbox.toml: buttons.doorbell: board profile testboard"), "{text}");
    assert!(text.contains("it has: call, mute"), "{text}");
    assert!(text.contains("(line "), "{text}");
}

#[test]
fn the_report_shows_settings_problems_and_warnings() {
    let b = board();
    let c =
        parse(&with("[buttons]\ncall = \"call\"\n[door]\nrelay = \"door\"\n[video]\nwidth = 1920\nheight = 1080\n"))
            .unwrap();
    let report = check_report(&c, &b);
    assert!(report.contains("button 'call' → call (/dev/gpiochip0 line 17, active low, debounce 30 ms"), "{report}");
    assert!(report.contains("door: relay 'door' (/dev/gpiochip0 line 5, active low), pulse 1000 ms"), "{report}");
    assert!(report.contains("software codecs only"), "{report}");
    assert!(report.contains("warning: video 1920x1080@30 exceeds"), "{report}");
    assert!(report.contains("warning: call.targets is empty"), "{report}");
    assert!(report.contains("warning: board button 'mute' has no action"), "{report}");
    assert!(report.contains("warning: door.code_file is not set"), "{report}");
    assert!(report.trim_end().ends_with("result: OK"), "{report}");

    let bad = parse(&with("[buttons]\nbell = \"call\"\n[leds]\nfault = \"red\"\n")).unwrap();
    let report = check_report(&bad, &b);
    assert_eq!(report.matches("problem: ").count(), 2, "{report}");
    assert!(report.contains("button 'bell' → call ((missing))"), "{report}");
    assert!(report.trim_end().ends_with("result: 2 problems"), "{report}");
}

#[test]
fn board_profiles_are_validated() {
    let path = Path::new("/b/testboard.toml");
    let bad = |from: &str, to: &str| {
        let text = BOARD.replacen(from, to, 1);
        assert_ne!(text, BOARD, "replacement of {from:?} did nothing");
        let e = BoardProfile::parse(&text, path).unwrap_err();
        assert!(e.to_string().starts_with("/b/testboard.toml: "), "{e}");
        e.keys().into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(bad("line = 24", "line = 17"), ["leds.idle.line"]);
    assert_eq!(bad("line = 24", "line = 40"), ["leds.idle.line"]);
    assert_eq!(bad("name = \"testboard\"", "name = \"other\""), ["name"]);
    assert_eq!(bad("long_press_ms = 800", "long_press_ms = 5"), ["buttons.mute.long_press_ms", "buttons.mute"]);
    assert_eq!(bad("buffer_us = 30000", "buffer_us = 6000"), ["audio.buffer_us"]);
    assert_eq!(bad("codecs = \"software\"", "codecs = \"fast\""), ["video.codecs"]);
    assert_eq!(bad("[relays.door]\nline = 5", "[relays.door]\nline = 5\npolarity = 1"), ["relays.door.polarity"]);
    assert_eq!(bad("[video]\n", "[video]\nencoder = \"v4l2h264enc\"\n"), ["video.encoder"]);
    // The same offset on another chip is another line.
    let other_chip = BOARD.replace("line = 27\nchip = \"expander\"", "line = 17\nchip = \"expander\"");
    BoardProfile::parse(&other_chip, path).unwrap();
    let e = BoardProfile::load("no-such-board", Path::new("/nonexistent")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/no-such-board.toml: cannot read"), "{e}");
    let e = BoardProfile::load("Bad Name", Path::new("/b")).unwrap_err();
    assert!(e.to_string().contains("board profile name"), "{e}");
}

#[test]
fn chip_refs() {
    assert_eq!(ChipRef::parse("/dev/gpiochip4"), ChipRef::Path(PathBuf::from("/dev/gpiochip4")));
    assert_eq!(ChipRef::parse("pinctrl-rp1"), ChipRef::Label("pinctrl-rp1".into()));
    assert_eq!(ChipRef::parse("/dev/gpiochip4").resolve().unwrap(), Path::new("/dev/gpiochip4"));
    let e = ChipRef::parse("no-such-label").resolve().unwrap_err();
    assert!(e.contains("no-such-label"), "{e}");
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cbx-config-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_door_code_is_read_from_a_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("door");
    let code = dir.join("door-code");
    std::fs::write(&code, "4711\n").unwrap();
    std::fs::set_permissions(&code, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = dir.join("callbox.toml");
    std::fs::write(&cfg, with("[door]\nrelay = \"door\"\ncode_file = \"door-code\"\n")).unwrap();
    let c = Config::load(&cfg).unwrap();
    let secret = c.door_code().unwrap().unwrap();
    assert!(secret.ct_eq("4711"));

    std::fs::set_permissions(&code, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = c.door_code().unwrap_err();
    assert_eq!(e.keys(), ["door.code_file"]);
    assert!(e.to_string().contains("door-code"), "{e}");

    std::fs::write(&code, "12ab").unwrap();
    std::fs::set_permissions(&code, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = c.door_code().unwrap_err().to_string();
    assert!(e.contains("door.code_file") && e.contains("4 to 12 digits") && !e.contains("12ab"), "{e}");

    assert!(parse(MINIMAL).unwrap().door_code().unwrap().is_none());
    let e = Config::load(&dir.join("missing.toml")).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn oversized_files_are_refused() {
    let big = format!("{MINIMAL}\n#{}\n", "x".repeat(MAX_FILE_BYTES as usize));
    assert!(matches!(parse(&big), Err(ConfigError::Read { .. })));
}

#[test]
fn dtmf_is_sent_as_rfc4733_and_in_band_detection_follows_the_board_unless_the_file_says() {
    use crate::media::DtmfSendMode;
    let b = board();
    let default = parse(MINIMAL).unwrap().client_config(Some(&b));
    assert_eq!(default.media.dtmf.send, DtmfSendMode::TelephoneEvent);
    assert!(!default.media.dtmf.detect_in_band);
    let info = parse(&with("[audio]\ndtmf_send = \"sip-info\"\ndtmf_in_band = true\n")).unwrap();
    let client = info.client_config(Some(&b));
    assert_eq!(client.media.dtmf.send, DtmfSendMode::SipInfo);
    assert!(client.media.dtmf.detect_in_band);
    // A board whose installations get in-band DTMF turns detection on; the file can still turn it off.
    let tones = BoardProfile::parse(
        &BOARD.replace("[audio]\n", "[audio]\ndtmf_in_band = true\n"),
        Path::new("/usr/share/callbox/board/testboard.toml"),
    )
    .unwrap();
    assert!(parse(MINIMAL).unwrap().client_config(Some(&tones)).media.dtmf.detect_in_band);
    let off = parse(&with("[audio]\ndtmf_in_band = false\n")).unwrap();
    assert!(!off.client_config(Some(&tones)).media.dtmf.detect_in_band);
    // A mode that does not exist names the key.
    let (key, message) = problem(&with("[audio]\ndtmf_send = \"inband\"\n"));
    assert_eq!(key, "audio.dtmf_send");
    assert!(message.contains("rfc4733") && message.contains("sip-info"), "{message}");
}

#[test]
fn the_admission_policy_is_read_with_groups_and_safe_defaults() {
    use crate::calling::admission::{Admit, Direction};
    let c = parse(MINIMAL).unwrap();
    let alice = Identifier::user("alice").unwrap();
    assert_eq!(c.admission.incoming(&alice), Admit::Ring { auto_answer: false }, "users ring, nobody auto-answered");
    assert!(!c.admission.may_open(&alice, Direction::CallIn) && !c.admission.may_open(&alice, Direction::CallOut));
    let c = parse(&with(
        r#"
[call]
country_code = "49"
[groups]
residents = ["alice", "bob", "030 1234567"]
[admission]
callers = ["group:residents", "door-1", "+4989*"]
refuse_code = 480
auto_answer = ["door-1"]
door_openers_called = ["group:residents"]
"#,
    ))
    .unwrap();
    let a = &c.admission;
    assert_eq!(a.incoming(&Identifier::user("mallory").unwrap()), Admit::Refuse(480));
    assert_eq!(a.incoming(&Identifier::user("door-1").unwrap()), Admit::Ring { auto_answer: true });
    assert_eq!(a.incoming(&Identifier::phone("+49301234567", None).unwrap()), Admit::Ring { auto_answer: false });
    assert_eq!(a.incoming(&Identifier::phone("+4989555555", None).unwrap()), Admit::Ring { auto_answer: false });
    assert!(a.may_open(&Identifier::user("bob").unwrap(), Direction::CallOut));
    assert!(!a.may_open(&Identifier::user("bob").unwrap(), Direction::CallIn));
}

#[test]
fn admission_mistakes_name_their_key() {
    assert_eq!(
        problem(&with("[admission]\ncallers = [\"group:nobody\"]\n")),
        ("admission.callers[0]".into(), "'group:nobody': there is no group 'nobody' in [groups]".into())
    );
    assert_eq!(
        problem(&with("[admission]\nrefuse_code = 404\n")),
        ("admission.refuse_code".into(), "404 is not one of 403, 480, 486, 603".into())
    );
    let (key, message) =
        problem(&with("[groups]\nstaff = [\"ok\", \"not valid!\"]\n[admission]\nauto_answer = [\"group:staff\"]\n"));
    assert_eq!(key, "groups.staff[1]", "{message}");
    let (key, _) = problem(&with("[admission]\ndoor_openers_calling_in = [\"4930*\"]\n"));
    assert_eq!(key, "admission.door_openers_calling_in[0]");
    let (key, message) = problem(&with("[door]\nrelay = \"door\"\nlockout_max_secs = 10\n"));
    assert_eq!((key.as_str(), message.as_str()), ("door.lockout_max_secs", "10 is out of range (60 to 604800)"));
}

#[test]
fn check_config_warns_about_risky_admission() {
    let b = board();
    let risky = with(
        "[call]\nauto_answer_after_secs = 0\n[door]\nrelay = \"door\"\ncode_file = \"code\"\n[admission]\nauto_answer = [\"any-user\"]\ndoor_openers_calling_in = [\"any-user\"]\n",
    );
    let report = check_report(&parse(&risky).unwrap(), &b);
    assert!(report.contains("warning: admission.auto_answer lets in callers not named one by one"), "{report}");
    assert!(report.contains("warning: admission.door_openers_calling_in lets in parties not named"), "{report}");
    let silent = with("[call]\nauto_answer_after_secs = 3\n[door]\nrelay = \"door\"\ncode_file = \"code\"\n");
    let report = check_report(&parse(&silent).unwrap(), &b);
    assert!(report.contains("warning: call.auto_answer_after_secs is set but admission.auto_answer names nobody"));
    assert!(report.contains("warning: admission names no door openers"), "{report}");
}

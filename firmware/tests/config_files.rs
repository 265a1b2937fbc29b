//! The shipped configuration files: `config/callbox.toml` (the documented default) parses, validates and
//! cross-checks with every board profile in `board/`; a dozen broken variants of it each name the right key;
//! the systemd unit has the keys the appliance relies on (and `systemd-analyze verify` accepts it when
//! installed); the sysusers, udev and ALSA files are well formed; the `[devices]` table stays compatible with
//! `DevicePreferences`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use callbox::config::{check_report, BoardProfile, Config, ConfigError};
use callbox::devices::{DeviceKind, DevicePreferences};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn board_dir() -> PathBuf {
    repo().join("board")
}

fn default_text() -> String {
    std::fs::read_to_string(repo().join("config/callbox.toml")).unwrap()
}

fn profiles() -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(board_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    all.sort();
    all
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cbx-config-files-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_default_config_parses_validates_and_fits_its_board() {
    let path = repo().join("config/callbox.toml");
    let config = Config::load(&path).unwrap();
    assert_eq!(config.board.profile, "pi4");
    assert_eq!(config.targets().len(), 1);
    assert_eq!(config.buttons.len(), 4);
    assert!(config.door.is_some());
    let board = config.load_board(&board_dir()).unwrap();
    assert_eq!(board.name, "pi4");
    let report = check_report(&config, &board);
    println!("{report}");
    assert!(report.trim_end().ends_with("result: OK"), "{report}");
    assert!(report.contains("button 'call' → call (/dev/gpiochip0 line 17, active low"), "{report}");
    assert!(report.contains("hardware codecs first"), "{report}");
}

#[test]
fn every_key_of_the_default_config_is_documented() {
    // Every key line (set or commented out) is preceded by a comment line.
    let text = default_text();
    let lines: Vec<&str> = text.lines().collect();
    let is_key = |l: &str| {
        let l = l.trim_start_matches("# ").trim();
        !l.starts_with('#')
            && l.contains(" = ")
            && l.split(" = ").next().is_some_and(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
    };
    let mut keys = 0;
    for (i, line) in lines.iter().enumerate() {
        if !is_key(line) {
            continue;
        }
        keys += 1;
        let mut j = i;
        // Walk up over other keys of the same group (e.g. width/height/fps under one comment).
        while j > 0 && is_key(lines[j - 1]) {
            j -= 1;
        }
        let above = if j == 0 { "" } else { lines[j - 1] };
        assert!(above.starts_with('#') || above.starts_with('['), "line {}: '{line}' has no comment above it", i + 1);
    }
    assert!(keys >= 40, "only {keys} keys found in the default config");
}

#[test]
fn every_board_profile_parses_validates_and_cross_checks_with_the_default_config() {
    let config = Config::load(&repo().join("config/callbox.toml")).unwrap();
    let mut names = Vec::new();
    for path in profiles() {
        let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let board = BoardProfile::load(&stem, &board_dir()).unwrap_or_else(|e| panic!("{e}"));
        let by_path = BoardProfile::load(path.to_str().unwrap(), Path::new("/nonexistent")).unwrap();
        assert_eq!(board.name, by_path.name);
        config.check_against(&board).unwrap_or_else(|e| panic!("default config on {stem}: {e}"));
        for name in ["call", "mute", "video", "hang_up"] {
            assert!(board.button_timing(name).is_some(), "{stem}: no button {name}");
        }
        if let Some(conf) = &board.audio.alsa_config {
            assert!(board_dir().join("alsa").join(conf).is_file(), "{stem}: board/alsa/{conf} is missing");
        }
        let report = check_report(&config, &board);
        assert!(report.trim_end().ends_with("result: OK"), "{stem}:\n{report}");
        for w in config.warnings(&board) {
            println!("{stem}: warning: {w}");
        }
        names.push(stem);
    }
    for expected in ["cm4", "pi-zero-2w", "pi4", "pi5", "qemu-virt"] {
        assert!(names.iter().any(|n| n == expected), "board/{expected}.toml is missing (found {names:?})");
    }
}

#[test]
fn board_encoder_preferences() {
    let load = |name: &str| BoardProfile::load(name, &board_dir()).unwrap();
    assert!(load("pi4").allows_hardware_codecs());
    assert!(load("cm4").allows_hardware_codecs());
    assert!(!load("pi5").allows_hardware_codecs(), "the Pi 5 has no H.264 encoder");
    assert!(!load("pi-zero-2w").allows_hardware_codecs());
    assert!(!load("qemu-virt").allows_hardware_codecs());
    let config = Config::load(&repo().join("config/callbox.toml")).unwrap();
    let pi5 = config.client_config(Some(&load("pi5")));
    assert!(!pi5.media.video.unwrap().codec_policy.allow_hardware);
    assert_eq!(load("pi5").gpio.chip, "pinctrl-rp1", "the Pi 5's chip is found by label");
    assert_eq!(load("qemu-virt").gpio.chip, "callbox-sim");
}

/// The default config with `from` replaced by `to` (which must change it) must fail naming `key`.
fn assert_names_key(from: &str, to: &str, key: &str) {
    assert_edit_names_key(&default_text(), from, to, key);
}

fn assert_edit_names_key(text: &str, from: &str, to: &str, key: &str) {
    assert!(text.contains(from), "the default config has no {from:?}");
    let broken = text.replacen(from, to, 1);
    let path = Path::new("/etc/callbox/callbox.toml");
    let result = Config::parse(&broken, path).and_then(|c| {
        let board = BoardProfile::load(&c.board.profile, &board_dir())?;
        c.check_against(&board)
    });
    let e: ConfigError = match result {
        Ok(()) => panic!("{from:?} → {to:?} was accepted"),
        Err(e) => e,
    };
    let text = e.to_string();
    assert!(e.keys().contains(&key), "{from:?} → {to:?}: expected key {key}, got: {text}");
    assert!(text.contains(&format!("/etc/callbox/callbox.toml: {key}: ")), "{text}");
}

#[test]
fn broken_variants_of_the_default_config_name_the_key() {
    // Wrong type.
    assert_names_key("ring_timeout_secs = 45", "ring_timeout_secs = \"45\"", "call.ring_timeout_secs");
    assert_names_key("video = true", "video = \"yes\"", "call.video");
    // Unknown keys.
    assert_names_key("pulse_ms = 1000", "pulse_ms = 1000\npulse_length = 3", "door.pulse_length");
    assert_names_key("[network]", "[networking]", "networking");
    // Missing credential; two credentials.
    assert_names_key("device_key = \"device-key\"", "", "credentials");
    assert_names_key("# static_token_file = \"/etc", "static_token_file = \"/etc", "credentials.static_token_file");
    // Bad URL schemes.
    assert_names_key(
        "\"wss://calls.example.com/janus\"",
        "\"https://calls.example.com/janus\"",
        "servers.janus_urls[0]",
    );
    assert_names_key(
        "\"https://calls.example.com/v1/token\"",
        "\"http://calls.example.com/v1/token\"",
        "servers.token_url",
    );
    // Bad identifier, bad country code.
    assert_names_key("targets = [\"reception\"]", "targets = [\"reception\", \"front desk\"]", "call.targets[1]");
    assert_names_key("# country_code = \"1\"", "country_code = \"001\"", "call.country_code");
    // Bad values.
    assert_names_key("max_attempts_per_minute = 5", "max_attempts_per_minute = 0", "door.max_attempts_per_minute");
    assert_names_key("codec = \"h264\"", "codec = \"h265\"", "video.codec");
    assert_names_key("hang_up = \"hang_up\"", "hang_up = \"hangup\"", "buttons.hang_up");
    // Names the board profile does not have.
    assert_names_key("call = \"call\"", "doorbell = \"call\"", "buttons.doorbell");
    assert_names_key("fault = \"fault\"", "fault = \"red\"", "leds.fault");
    assert_names_key("relay = \"door\"", "relay = \"gate\"", "door.relay");
    let on_pi5 = default_text().replacen("profile = \"pi4\"", "profile = \"pi5\"", 1);
    assert_edit_names_key(&on_pi5, "# encoder = \"x264enc\"\n", "encoder = \"v4l2h264enc\"\n", "video.encoder");
    // A board profile that does not exist.
    let broken = default_text().replacen("profile = \"pi4\"", "profile = \"pi6\"", 1);
    let config = Config::parse(&broken, Path::new("callbox.toml")).unwrap();
    let e = config.load_board(&board_dir()).unwrap_err().to_string();
    assert!(e.contains("pi6.toml: cannot read"), "{e}");
}

#[test]
fn the_devices_table_stays_compatible_with_device_preferences() {
    let dir = temp_dir("prefs");
    let path = dir.join("callbox.toml");
    std::fs::write(&path, default_text()).unwrap();
    let mut prefs = DevicePreferences::load(&path).unwrap();
    assert_eq!(prefs.get(DeviceKind::Camera), None, "the default leaves the camera to the board");
    prefs.set(DeviceKind::Camera, "/dev/video4").unwrap();
    prefs.set(DeviceKind::Speaker, "hw:CARD=Headphones,DEV=0").unwrap();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("after DevicePreferences rewrote it: {e}"));
    assert_eq!(config.devices.camera.as_deref(), Some("/dev/video4"));
    assert_eq!(config.devices.speaker.as_deref(), Some("hw:CARD=Headphones,DEV=0"));
    assert!(!config.devices.sim);
    let board = BoardProfile::load("pi4", &board_dir()).unwrap();
    let client = config.client_config(Some(&board));
    assert_eq!(client.media.camera.as_deref(), Some("/dev/video4"));
    assert_eq!(client.media.microphone.as_deref(), Some("callbox_mic"), "the board's, still");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `[Section]` → key → values (a key may repeat), from systemd's ini syntax.
fn parse_unit(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut sections: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut current = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_owned();
            sections.entry(current.clone()).or_default();
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("line {}: not key=value: {raw}", i + 1));
        assert!(!current.is_empty(), "line {}: key outside a section", i + 1);
        assert!(!raw.ends_with('\\'), "line {}: continuation lines are not expected", i + 1);
        sections
            .entry(current.clone())
            .or_default()
            .entry(key.trim().to_owned())
            .or_default()
            .push(value.trim().to_owned());
    }
    sections
}

#[test]
fn the_systemd_unit_has_what_the_appliance_relies_on() {
    let path = board_dir().join("systemd/callbox.service");
    let text = std::fs::read_to_string(&path).unwrap();
    let unit = parse_unit(&text);
    let service = &unit["Service"];
    let one = |key: &str| -> &str {
        let values = service.get(key).unwrap_or_else(|| panic!("[Service] has no {key}"));
        assert_eq!(values.len(), 1, "{key} is set {} times", values.len());
        &values[0]
    };
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("WatchdogSec"), "30");
    assert_eq!(one("ExecStart"), "/usr/bin/callbox run --config /etc/callbox/callbox.toml");
    assert_eq!(one("LoadCredential"), "device-key:/etc/callbox/device-key");
    assert_eq!(one("User"), "callbox");
    // A doorbell never gives up (docs/unattended.md): restarted whatever ended it, no start rate limit, and a stop
    // timeout above the firmware's own shutdown bound (5 s of hang-ups, then the client's 8 s and 1 s).
    assert_eq!(one("Restart"), "always");
    assert_eq!(unit["Unit"]["StartLimitIntervalSec"], ["0"]);
    assert!(!unit["Unit"].contains_key("StartLimitBurst"));
    let stop: u64 = one("TimeoutStopSec").parse().expect("TimeoutStopSec in seconds");
    assert!(stop >= 5 + 8 + 1 + 5, "TimeoutStopSec={stop} leaves no room for the firmware's shutdown");
    assert!(unit["Unit"]["Wants"].iter().any(|w| w.split_whitespace().any(|t| t == "time-sync.target")));
    let mut groups: Vec<&str> = one("SupplementaryGroups").split_whitespace().collect();
    groups.sort_unstable();
    assert_eq!(groups, ["audio", "gpio", "render", "video"]);
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("DevicePolicy", "closed"),
    ] {
        assert_eq!(one(key), value, "{key}");
    }
    let families: Vec<&str> = one("RestrictAddressFamilies").split_whitespace().collect();
    assert!(families.contains(&"AF_INET") && families.contains(&"AF_UNIX") && !families.contains(&"AF_PACKET"));
    let allowed = &service["DeviceAllow"];
    for group in ["char-video4linux", "char-alsa", "char-gpiochip", "char-fb"] {
        assert!(allowed.iter().any(|a| a.starts_with(&format!("{group} "))), "DeviceAllow lacks {group}: {allowed:?}");
    }
    assert_eq!(unit["Install"]["WantedBy"], ["multi-user.target"]);
    // The credential the unit loads is the one the default config names.
    let config = Config::load(&repo().join("config/callbox.toml")).unwrap();
    assert_eq!(config.credentials.device_key.as_deref(), Some("device-key"));

    // systemd's own verdict, when systemd-analyze is installed. ExecStart must point at an existing binary:
    // the test's own build of callbox.
    let analyze = Command::new("systemd-analyze").arg("--version").output();
    if analyze.is_err() {
        println!("note: systemd-analyze is not installed: unit not verified by systemd");
        return;
    }
    let dir = temp_dir("unit");
    let copy = dir.join("callbox.service");
    std::fs::write(&copy, text.replace("/usr/bin/callbox", env!("CARGO_BIN_EXE_callbox"))).unwrap();
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&copy).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("callbox.service")).collect();
    assert!(out.status.success() && ours.is_empty(), "systemd-analyze verify: {stderr}");
    let out =
        Command::new("systemd-analyze").args(["security", "--offline=yes", "--no-pager"]).arg(&copy).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if let Some(line) = stdout.lines().find(|l| l.contains("Overall exposure level")) {
        println!("systemd-analyze security: {}", line.trim());
        let level: f32 = line
            .split("level for callbox.service: ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(level < 4.0, "the unit is not hardened enough: {line}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sysusers_creates_the_user_and_the_groups_the_unit_needs() {
    let text = std::fs::read_to_string(board_dir().join("systemd/callbox.sysusers.conf")).unwrap();
    let entries: Vec<Vec<&str>> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(entries.iter().all(|e| matches!(e[0], "u" | "g" | "m") && e.len() >= 3), "{entries:?}");
    assert!(entries.iter().any(|e| e[0] == "u" && e[1] == "callbox"));
    for group in ["video", "audio", "gpio", "render"] {
        assert!(entries.iter().any(|e| e == &["m", "callbox", group]), "callbox is not put in {group}");
    }
}

#[test]
fn udev_rules_are_well_formed() {
    let text = std::fs::read_to_string(board_dir().join("udev/99-callbox.rules")).unwrap();
    let mut rules = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        rules += 1;
        for pair in line.split(", ") {
            let op = ["==", "!=", "+=", ":=", "="].into_iter().find(|op| pair.contains(op));
            let op = op.unwrap_or_else(|| panic!("line {}: no operator in '{pair}'", i + 1));
            let (key, value) = pair.split_once(op).unwrap();
            assert!(
                key.chars().all(|c| c.is_ascii_uppercase()
                    || c.is_ascii_digit()
                    || "_{}".contains(c)
                    || c.is_ascii_lowercase()),
                "line {}: bad key '{key}'",
                i + 1
            );
            assert!(
                value.len() >= 2 && value.starts_with('"') && value.ends_with('"'),
                "line {}: '{value}' is not quoted",
                i + 1
            );
        }
    }
    assert_eq!(rules, 2);
    assert!(text.contains("SUBSYSTEM==\"gpio\", KERNEL==\"gpiochip[0-9]*\", GROUP=\"gpio\", MODE=\"0660\""));
    assert!(text.contains("SYMLINK+=\"callbox-camera\""), "the Pi 5 profile's camera name");
}

#[test]
fn the_pi4_alsa_configuration_defines_the_profile_pcms() {
    let conf = board_dir().join("alsa/pi4.conf");
    let board = BoardProfile::load("pi4", &board_dir()).unwrap();
    let text = std::fs::read_to_string(&conf).unwrap();
    for pcm in [board.audio.playback.as_deref().unwrap(), board.audio.capture.as_deref().unwrap()] {
        assert!(text.contains(&format!("pcm.{pcm} {{")), "pi4.conf does not define {pcm}");
    }
    // alsa-lib's own parser: a top-level configuration that loads the system's and then ours; `aplay -L` lists
    // the PCMs with hints.
    let system = Path::new("/usr/share/alsa/alsa.conf");
    if Command::new("aplay").arg("--version").output().is_err() || !system.exists() {
        println!("note: aplay or alsa-lib's configuration is not installed: pi4.conf not parsed by alsa-lib");
        return;
    }
    let dir = temp_dir("alsa");
    let top = dir.join("asound.conf");
    std::fs::write(&top, format!("<{}>\n<{}>\n", system.display(), conf.canonicalize().unwrap().display())).unwrap();
    let out = Command::new("aplay").arg("-L").env("ALSA_CONFIG_PATH", &top).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("error") && !stderr.contains("Parse"), "alsa-lib: {stderr}");
    for pcm in ["callbox_speaker", "callbox_mic"] {
        assert!(stdout.lines().any(|l| l == pcm), "aplay -L does not list {pcm}:\n{stdout}\n{stderr}");
    }
    // A broken copy is refused by the same parser (the check can fail).
    let broken = dir.join("broken.conf");
    std::fs::write(&broken, text.replacen("}", "", 1)).unwrap();
    std::fs::write(&top, format!("<{}>\n<{}>\n", system.display(), broken.display())).unwrap();
    let out = Command::new("aplay").arg("-L").env("ALSA_CONFIG_PATH", &top).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.lines().any(|l| l == "callbox_speaker"), "a broken file still listed callbox_speaker");
    std::fs::remove_dir_all(&dir).unwrap();
}

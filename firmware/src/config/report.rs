//! `callbox check-config`'s text: what a configuration does on its board (every effective setting, with
//! where it came from), the cross-check's problems and the warnings. Pure: it reads no file and no device.

use std::fmt::Write;

use super::board::{BoardProfile, ChipRef};
use super::{Config, ConfiguredCredential, DisplayTarget};
use crate::devices::audio::alsa::Pacing;
use crate::input::LedState;
use crate::provisioning::CredentialSource;

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn line_text(chip: &ChipRef, line: u32, active_low: bool) -> String {
    format!("{chip} line {line}{}", if active_low { ", active low" } else { "" })
}

fn describe(source: &CredentialSource) -> String {
    match source {
        CredentialSource::Systemd { name } => format!("systemd credential '{name}'"),
        CredentialSource::File { path } => path.display().to_string(),
    }
}

/// Warnings of `config` on `board`: settings that work but are probably not what was meant.
pub(crate) fn warnings(config: &Config, board: &BoardProfile) -> Vec<String> {
    let mut w = Vec::new();
    let v = &config.video;
    let bv = &board.video;
    if config.call.video && (v.width > bv.max_width || v.height > bv.max_height || v.fps > bv.max_fps) {
        w.push(format!(
            "video {}x{}@{} exceeds what {} encodes in real time ({}x{}@{}): expect dropped frames",
            v.width, v.height, v.fps, board.name, bv.max_width, bv.max_height, bv.max_fps
        ));
    }
    if config.targets().is_empty() && config.buttons.values().any(|a| *a == super::ButtonAction::Call) {
        w.push("call.targets is empty: the call button only answers ringing calls".to_owned());
    }
    if let Some(door) = &config.door {
        if door.code_file.is_none() {
            w.push("door.code_file is not set: the door relay is never pulsed".to_owned());
        }
    }
    let admission = &config.admission;
    if config.call.auto_answer_after_secs.is_some() && admission.auto_answer.is_empty() {
        w.push(
            "call.auto_answer_after_secs is set but admission.auto_answer names nobody: no call is answered on its own"
                .to_owned(),
        );
    }
    let door_code = config.door.as_ref().is_some_and(|d| d.code_file.is_some());
    if door_code && admission.auto_answer.is_broad() {
        w.push(
            "admission.auto_answer lets in callers not named one by one while the door has a relay: any of them is \
             answered into the camera and microphone and can try door codes"
                .to_owned(),
        );
    }
    if door_code && admission.door_openers_calling_in.is_empty() && admission.door_openers_called.is_empty() {
        w.push("admission names no door openers: the door code is never accepted".to_owned());
    }
    for (key, parties) in [
        ("door_openers_calling_in", &admission.door_openers_calling_in),
        ("door_openers_called", &admission.door_openers_called),
    ] {
        if door_code && parties.is_broad() {
            w.push(format!(
                "admission.{key} lets in parties not named one by one: the door code alone stands between them and \
                 the door"
            ));
        }
    }
    if config.servers.allow_insecure_http {
        w.push("servers.allow_insecure_http = true: for a local development stack only".to_owned());
    }
    if matches!(config.credential(), ConfiguredCredential::StaticToken(_)) && config.servers.token_url.is_some() {
        w.push("servers.token_url is unused: credentials use a static token".to_owned());
    }
    for name in board.buttons.keys() {
        if !config.buttons.contains_key(name) {
            w.push(format!("board button '{name}' has no action in [buttons]: presses are ignored"));
        }
    }
    if config.devices.alsa_clock && !config.devices.sim {
        w.push("devices.alsa_clock = true paces real sound cards by our clock: only for file/null PCMs".to_owned());
    }
    w
}

/// The report `callbox check-config` prints for `config` on `board`: effective settings, problems of the
/// cross-check (if any), warnings, and a last line `result: OK` or `result: N problem(s)`.
pub fn check_report(config: &Config, board: &BoardProfile) -> String {
    let mut r = String::new();
    // Writing to a String cannot fail: the results are ignored with `let _`.
    let _ = writeln!(r, "config: {}", config.path().display());
    let _ = writeln!(r, "board: {} — {} ({})", board.name, board.description, board.path().display());
    let _ = writeln!(r, "identity: display name {}", config.identity.display_name.as_deref().unwrap_or("(none)"));
    let _ = writeln!(r, "janus: {}", config.servers.janus_urls.join(", "));
    let credential = match config.credential() {
        ConfiguredCredential::DeviceKey(source) => format!("device key from {}", describe(&source)),
        ConfiguredCredential::StaticToken(source) => format!("static token from {}", describe(&source)),
    };
    let ca = match &config.credentials.ca_file {
        Some(ca) => format!("pinned CA {}", ca.display()),
        None => "system CA roots".to_owned(),
    };
    match &config.servers.token_url {
        Some(url) => {
            let _ = writeln!(r, "credentials: {credential}; token endpoint {url}; {ca}");
        }
        None => {
            let _ = writeln!(r, "credentials: {credential}; {ca}");
        }
    }
    let targets: Vec<String> = config.targets().iter().map(ToString::to_string).collect();
    let _ = writeln!(
        r,
        "call: targets {}; ring timeout {} s; auto-answer {}; video {}",
        if targets.is_empty() { "(none)".to_owned() } else { targets.join(", ") },
        config.call.ring_timeout_secs,
        config.call.auto_answer_after_secs.map_or("off".to_owned(), |s| format!("after {s} s")),
        on_off(config.call.video),
    );
    match &config.door {
        Some(door) => {
            let relay = board
                .relays
                .get(&door.relay)
                .map_or("(missing)".to_owned(), |o| line_text(&board.chip_of(o.chip.as_deref()), o.line, o.active_low));
            let code =
                door.code_file.as_ref().map_or("no code file".to_owned(), |p| format!("code from {}", p.display()));
            let _ = writeln!(
                r,
                "door: relay '{}' ({relay}), pulse {} ms, {} attempts/min, {code}",
                door.relay, door.pulse_ms, door.max_attempts_per_minute
            );
        }
        None => {
            let _ = writeln!(r, "door: no relay");
        }
    }
    for (name, action) in &config.buttons {
        let line = match (board.buttons.get(name), board.button_timing(name)) {
            (Some(b), Some((debounce, long_press))) => format!(
                "{}, debounce {} ms, long press {} ms",
                line_text(&board.chip_of(b.chip.as_deref()), b.line, b.active_low),
                debounce.as_millis(),
                long_press.as_millis()
            ),
            _ => "(missing)".to_owned(),
        };
        let _ = writeln!(r, "button '{name}' → {action} ({line})");
    }
    for state in LedState::ALL {
        if let Some(led) = config.leds.get(state) {
            let line = board
                .leds
                .get(led)
                .map_or("(missing)".to_owned(), |o| line_text(&board.chip_of(o.chip.as_deref()), o.line, o.active_low));
            let _ = writeln!(r, "led {state} → '{led}' ({line})");
        }
    }
    let (camera, microphone, speaker) = config.device_ids(Some(board));
    let shown = |id: Option<String>| id.unwrap_or_else(|| "(first found)".to_owned());
    let alsa = config.alsa_config(Some(board));
    let _ = writeln!(
        r,
        "devices: {}camera {}, microphone {}, speaker {}; ALSA period {} µs, buffer {} µs, paced by {}",
        if config.devices.sim { "SIMULATED; " } else { "" },
        shown(camera),
        shown(microphone),
        shown(speaker),
        alsa.period_us,
        alsa.buffer_us,
        if alsa.pacing == Pacing::Clock { "our clock" } else { "the device" },
    );
    if config.call.video {
        let policy = config.codec_policy(Some(board));
        let encoder = match &policy.forced_encoder {
            Some(e) => format!("encoder {e} (forced)"),
            None if policy.allow_hardware => "hardware codecs first, software fallback".to_owned(),
            None => "software codecs only".to_owned(),
        };
        let _ = writeln!(
            r,
            "video: {}x{}@{} {} first; {encoder}",
            config.video.width,
            config.video.height,
            config.video.fps,
            config.video.codec.as_str()
        );
    } else {
        let _ = writeln!(r, "video: off (audio-only calls)");
    }
    let _ = writeln!(
        r,
        "audio: processing {}, FEC {}, DTX {}",
        on_off(config.audio.processing),
        on_off(config.audio.fec),
        on_off(config.audio.dtx)
    );
    let display = match config.display_target(Some(board)) {
        DisplayTarget::Framebuffer(p) => format!("framebuffer {} at {} fps", p.display(), config.display.fps),
        DisplayTarget::Memory(size) => format!("in-memory screen {size} at {} fps", config.display.fps),
        DisplayTarget::None => "none".to_owned(),
    };
    let _ = writeln!(r, "display: {display}");
    let _ = writeln!(
        r,
        "media address: {}",
        config.media_ip().map_or("auto (the interface routing to Janus)".to_owned(), |ip| ip.to_string())
    );
    let problems = match config.check_against(board) {
        Ok(()) => Vec::new(),
        Err(e) => e.problems().to_vec(),
    };
    for p in &problems {
        let _ = writeln!(r, "problem: {p}");
    }
    for w in warnings(config, board) {
        let _ = writeln!(r, "warning: {w}");
    }
    match problems.len() {
        0 => {
            let _ = writeln!(r, "result: OK");
        }
        1 => {
            let _ = writeln!(r, "result: 1 problem");
        }
        n => {
            let _ = writeln!(r, "result: {n} problems");
        }
    }
    r
}

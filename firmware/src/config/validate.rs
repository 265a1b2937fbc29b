//! The checks of `callbox.toml` that serde cannot express: ranges, URL schemes, exclusive keys, call targets
//! (through `Identifier::parse`), names that must be simple identifiers, whether a board profile is given by name
//! or path. Every problem names its key. The board profile loader (`board`) uses these checks; this module does
//! not depend on it.

use std::net::IpAddr;
use std::path::Path;

use super::schema::RawConfig;
use super::spans::{join, SpanIndex};
use super::Problem;
use crate::calling::admission::{Admission, Parties, Party, REFUSE_CODES};
use crate::calling::Identifier;
use crate::media::video::{is_hardware, H264_ENCODERS, VP8_ENCODERS};

/// Most Janus URLs (fail-over list).
pub const MAX_JANUS_URLS: usize = 8;
/// Most call targets (a group call).
pub const MAX_TARGETS: usize = 16;
/// Most buttons mapped.
pub const MAX_BUTTONS: usize = 32;
/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 64;
/// Longest name of a button, LED, relay or board profile.
pub const MAX_NAME: usize = 32;

/// Collects problems of one file, each with the line of its key when the key is written.
pub(crate) struct Problems<'a> {
    file: String,
    spans: &'a SpanIndex,
    pub(crate) list: Vec<Problem>,
}

impl<'a> Problems<'a> {
    pub(crate) fn new(file: &str, spans: &'a SpanIndex) -> Self {
        Problems { file: file.to_owned(), spans, list: Vec::new() }
    }

    /// Records that `key` is wrong. The line is that of `key`, else of its closest written parent.
    pub(crate) fn push(&mut self, key: &str, message: impl Into<String>) {
        let mut probe = key;
        let line = loop {
            if let Some(line) = self.spans.line_of(probe) {
                break Some(line);
            }
            match probe.rfind(['.', '[']) {
                Some(i) => probe = &probe[..i],
                None => break None,
            }
        };
        self.list.push(Problem { file: self.file.clone(), key: key.to_owned(), line, message: message.into() });
    }
}

/// Whether a `[board] profile` value is a path rather than a name.
pub fn is_profile_path(s: &str) -> bool {
    s.contains('/') || s.ends_with(".toml")
}

/// A name of a button, LED, relay or board: 1 to 32 of `a-z 0-9 _ -`, starting with a letter or digit.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a valid name (1 to {MAX_NAME} of a-z, 0-9, '_', '-', starting with a letter or digit)"
        ))
    }
}

/// A URL's scheme and authority: `scheme://host[:port]/...`, no credentials, no blanks.
fn check_url(url: &str, schemes: &[&str]) -> Result<(), String> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("'{url}' contains blanks or control characters"));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("'{url}' is not a URL (expected {}://host...)", schemes.join("://, ")));
    };
    if !schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
        return Err(format!("'{url}': scheme {scheme}:// is not accepted here (expected {})", list_schemes(schemes)));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(format!("'{url}' carries credentials: secrets belong in [credentials] files, not in URLs"));
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').unwrap_or((v6, ""));
            (host, after.strip_prefix(':'))
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err(format!("'{url}' has no host"));
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("'{url}': '{port}' is not a port number"));
        }
    }
    Ok(())
}

fn list_schemes(schemes: &[&str]) -> String {
    schemes.iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(" or ")
}

/// Checks what serde could not; returns the call targets parsed and the media address (None: auto).
pub(crate) fn validate(raw: &RawConfig, p: &mut Problems<'_>) -> (Vec<Identifier>, Option<IpAddr>) {
    if let Some(name) = &raw.identity.display_name {
        if name.trim().is_empty() {
            p.push("identity.display_name", "is empty (leave the key out for none)");
        } else if name.chars().count() > MAX_DISPLAY_NAME {
            p.push("identity.display_name", format!("is longer than {MAX_DISPLAY_NAME} characters"));
        } else if name.chars().any(char::is_control) {
            p.push("identity.display_name", "contains control characters");
        }
    }

    servers(raw, p);
    credentials(raw, p);
    let targets = call(raw, p);

    if raw.buttons.len() > MAX_BUTTONS {
        p.push("buttons", format!("more than {MAX_BUTTONS} buttons"));
    }
    for name in raw.buttons.keys() {
        if let Err(e) = check_name(name) {
            p.push(&join("buttons", name), e);
        }
    }
    for state in crate::input::LedState::ALL {
        if let Some(led) = raw.leds.get(state) {
            if let Err(e) = check_name(led) {
                p.push(&format!("leds.{state}"), e);
            }
        }
    }

    if let Some(door) = &raw.door {
        if let Err(e) = check_name(&door.relay) {
            p.push("door.relay", e);
        }
        if door.code_file.as_deref().is_some_and(|f| f.as_os_str().is_empty()) {
            p.push("door.code_file", "is empty (leave the key out for no code)");
        }
        if !(50..=30_000).contains(&door.pulse_ms) {
            p.push("door.pulse_ms", format!("{} is out of range (50 to 30000 ms)", door.pulse_ms));
        }
        for (key, value, range) in [
            ("door.lockout_after", door.lockout_after, 0..=10),
            ("door.wrong_codes_per_call", door.wrong_codes_per_call, 1..=10),
            ("door.lockout_initial_secs", door.lockout_initial_secs, 1..=3600),
            ("door.lockout_max_secs", door.lockout_max_secs, 60..=7 * 86_400),
        ] {
            if !range.contains(&value) {
                p.push(key, format!("{value} is out of range ({} to {})", range.start(), range.end()));
            }
        }
        // (Said once: an out-of-range value is reported above.)
        if (60..=7 * 86_400).contains(&door.lockout_max_secs) && door.lockout_max_secs < door.lockout_initial_secs {
            p.push("door.lockout_max_secs", "is shorter than door.lockout_initial_secs");
        }
        if !(1..=60).contains(&door.max_attempts_per_minute) {
            p.push(
                "door.max_attempts_per_minute",
                format!("{} is out of range (1 to 60)", door.max_attempts_per_minute),
            );
        }
    }

    for (key, value) in
        [("camera", &raw.devices.camera), ("microphone", &raw.devices.microphone), ("speaker", &raw.devices.speaker)]
    {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            p.push(&format!("devices.{key}"), "is empty (leave the key out for the board's default)");
        }
    }

    video(raw, p);

    let d = &raw.display;
    if d.framebuffer.is_some() && d.screen.is_some() {
        p.push("display.screen", "set display.framebuffer or display.screen, not both");
    }
    if d.framebuffer.as_deref().is_some_and(|f| f.as_os_str().is_empty()) {
        p.push("display.framebuffer", "is empty");
    }
    if !(1..=60).contains(&d.fps) {
        p.push("display.fps", format!("{} is out of range (1 to 60)", d.fps));
    }

    let media_ip = match raw.network.media_ip.as_deref().map(str::trim) {
        None | Some("auto") => None,
        Some(text) => match text.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() => {
                p.push("network.media_ip", format!("{ip} is not an address the far end can reach (use \"auto\")"));
                None
            }
            Ok(ip) => Some(ip),
            Err(_) => {
                p.push("network.media_ip", format!("'{text}' is neither an IP address nor \"auto\""));
                None
            }
        },
    };

    let profile = raw.board.profile.trim();
    if profile.is_empty() {
        p.push("board.profile", "is empty");
    } else if !is_profile_path(profile) {
        if let Err(e) = check_name(profile) {
            p.push("board.profile", format!("{e}; or give a path to a .toml file"));
        }
    }
    (targets, media_ip)
}

fn servers(raw: &RawConfig, p: &mut Problems<'_>) {
    let s = &raw.servers;
    if s.janus_urls.is_empty() {
        p.push("servers.janus_urls", "is empty: at least one ws:// or wss:// URL is needed");
    } else if s.janus_urls.len() > MAX_JANUS_URLS {
        p.push("servers.janus_urls", format!("more than {MAX_JANUS_URLS} URLs"));
    }
    for (i, url) in s.janus_urls.iter().enumerate() {
        if let Err(e) = check_url(url, &["ws", "wss"]) {
            p.push(&format!("servers.janus_urls[{i}]"), e);
        } else if !s.allow_insecure_http && url.to_ascii_lowercase().starts_with("ws://") {
            // Cleartext signaling carries the Janus token and the SIP credentials: only when asked for.
            p.push(
                &format!("servers.janus_urls[{i}]"),
                format!(
                    "'{url}' is unencrypted signaling: use wss://, or set servers.allow_insecure_http = true for a \
                     local development stack"
                ),
            );
        }
    }
    if let Some(url) = &s.token_url {
        let schemes: &[&str] = if s.allow_insecure_http { &["https", "http"] } else { &["https"] };
        if let Err(e) = check_url(url, schemes) {
            let hint = if !s.allow_insecure_http && url.to_ascii_lowercase().starts_with("http://") {
                " (http:// only with servers.allow_insecure_http = true, for a local development stack)"
            } else {
                ""
            };
            p.push("servers.token_url", format!("{e}{hint}"));
        }
    }
}

fn credentials(raw: &RawConfig, p: &mut Problems<'_>) {
    let c = &raw.credentials;
    let given: Vec<&str> = [
        ("device_key", c.device_key.is_some()),
        ("device_key_file", c.device_key_file.is_some()),
        ("static_token_file", c.static_token_file.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    match given.as_slice() {
        [] => p.push(
            "credentials",
            "missing: set one of device_key (a systemd credential name), device_key_file or static_token_file",
        ),
        [_] => {}
        many => p.push(&format!("credentials.{}", many[1]), format!("set only one of {}", many.join(", "))),
    }
    if let Some(name) = &c.device_key {
        let ok = !name.is_empty()
            && name.len() <= 255
            && !name.starts_with('.')
            && name.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.' | '@' | ':'));
        if !ok {
            p.push(
                "credentials.device_key",
                format!("'{name}' is not a systemd credential name (the name in LoadCredential=NAME:FILE; for a path use device_key_file)"),
            );
        }
    }
    for (key, path) in
        [("device_key_file", &c.device_key_file), ("static_token_file", &c.static_token_file), ("ca_file", &c.ca_file)]
    {
        if path.as_deref().is_some_and(|f: &Path| f.as_os_str().is_empty()) {
            p.push(&format!("credentials.{key}"), "is empty");
        }
    }
    let uses_device_key = c.device_key.is_some() || c.device_key_file.is_some();
    if uses_device_key && raw.servers.token_url.is_none() {
        p.push("servers.token_url", "missing: a device key is traded for access tokens at the token endpoint");
    }
}

fn call(raw: &RawConfig, p: &mut Problems<'_>) -> Vec<Identifier> {
    let c = &raw.call;
    let cc = c.country_code.as_deref().map(str::trim);
    if let Some(cc) = cc {
        if cc.is_empty() || cc.len() > 3 || !cc.chars().all(|ch| ch.is_ascii_digit()) || cc.starts_with('0') {
            p.push("call.country_code", format!("'{cc}' is not a country code (1 to 3 digits, no leading 0, no '+')"));
        }
    }
    if c.targets.len() > MAX_TARGETS {
        p.push("call.targets", format!("more than {MAX_TARGETS} targets"));
    }
    let mut targets: Vec<Identifier> = Vec::with_capacity(c.targets.len().min(MAX_TARGETS));
    for (i, text) in c.targets.iter().enumerate().take(MAX_TARGETS) {
        let key = format!("call.targets[{i}]");
        match Identifier::parse(text, cc) {
            Ok(id) => match targets.iter().position(|t| *t == id) {
                Some(j) => p.push(&key, format!("'{text}' is the same target as call.targets[{j}] ({id})")),
                None => targets.push(id),
            },
            Err(e) => p.push(&key, e.to_string()),
        }
    }
    if !(5..=600).contains(&c.ring_timeout_secs) {
        p.push("call.ring_timeout_secs", format!("{} is out of range (5 to 600 s)", c.ring_timeout_secs));
    }
    if let Some(after) = c.auto_answer_after_secs {
        if after > 300 {
            p.push("call.auto_answer_after_secs", format!("{after} is out of range (0 to 300 s)"));
        }
    }
    targets
}

fn video(raw: &RawConfig, p: &mut Problems<'_>) {
    let v = &raw.video;
    if !(16..=1920).contains(&v.width) || !v.width.is_multiple_of(2) {
        p.push("video.width", format!("{} is not an even number from 16 to 1920", v.width));
    }
    if !(16..=1080).contains(&v.height) || !v.height.is_multiple_of(2) {
        p.push("video.height", format!("{} is not an even number from 16 to 1080", v.height));
    }
    if !(1..=60).contains(&v.fps) {
        p.push("video.fps", format!("{} is out of range (1 to 60)", v.fps));
    }
    if let Some(element) = &v.encoder {
        let ok = !element.is_empty()
            && element.len() <= 64
            && element.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            p.push("video.encoder", format!("'{element}' is not a GStreamer element name"));
        } else if v.software_codecs && is_hardware(element) {
            p.push("video.encoder", format!("{element} is a hardware encoder but video.software_codecs = true"));
        } else {
            let codec_encoders = match v.codec.codec() {
                crate::media::VideoCodec::H264 => H264_ENCODERS,
                crate::media::VideoCodec::Vp8 => VP8_ENCODERS,
            };
            let other = if codec_encoders == H264_ENCODERS { VP8_ENCODERS } else { H264_ENCODERS };
            if other.contains(&element.as_str()) && !codec_encoders.contains(&element.as_str()) {
                p.push(
                    "video.encoder",
                    format!("{element} does not encode {} (video.codec); it would be ignored", v.codec.as_str()),
                );
            }
        }
    }
}

/// Most entries in one `[admission]` list or `[groups]` group, and most groups.
pub const MAX_PARTIES: usize = 64;

/// The `[admission]` lists read, with `group:<name>` expanded from `[groups]`.
pub(crate) fn admission(raw: &RawConfig, p: &mut Problems<'_>) -> Admission {
    let a = &raw.admission;
    let cc = raw.call.country_code.as_deref().map(str::trim);
    if raw.groups.len() > MAX_PARTIES {
        p.push("groups", format!("more than {MAX_PARTIES} groups"));
    }
    for name in raw.groups.keys() {
        if let Err(e) = check_name(name) {
            p.push(&format!("groups.{name}"), e);
        }
    }
    let mut list = |key: &str, entries: &[String]| -> Parties {
        if entries.len() > MAX_PARTIES {
            p.push(key, format!("more than {MAX_PARTIES} entries"));
        }
        let mut parties = Vec::new();
        for (i, text) in entries.iter().enumerate().take(MAX_PARTIES) {
            let entry = format!("{key}[{i}]");
            match text.trim().strip_prefix("group:") {
                Some(group) => match raw.groups.get(group) {
                    Some(members) => {
                        for (j, member) in members.iter().enumerate().take(MAX_PARTIES) {
                            match Party::parse(member, cc) {
                                Ok(party) => parties.push(party),
                                Err(e) => p.push(&format!("groups.{group}[{j}]"), e),
                            }
                        }
                        if members.len() > MAX_PARTIES {
                            p.push(&format!("groups.{group}"), format!("more than {MAX_PARTIES} members"));
                        }
                    }
                    None => p.push(&entry, format!("'{text}': there is no group '{group}' in [groups]")),
                },
                None => match Party::parse(text, cc) {
                    Ok(party) => parties.push(party),
                    Err(e) => p.push(&entry, e),
                },
            }
        }
        Parties::of(parties)
    };
    let callers = list("admission.callers", &a.callers);
    let auto_answer = list("admission.auto_answer", &a.auto_answer);
    let door_openers_calling_in = list("admission.door_openers_calling_in", &a.door_openers_calling_in);
    let door_openers_called = list("admission.door_openers_called", &a.door_openers_called);
    if !REFUSE_CODES.contains(&a.refuse_code) {
        p.push("admission.refuse_code", format!("{} is not one of 403, 480, 486, 603", a.refuse_code));
    }
    Admission { callers, refuse_code: a.refuse_code, auto_answer, door_openers_calling_in, door_openers_called }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("wss://janus.example.org/janus", &["ws", "wss"]).is_ok());
        assert!(check_url("ws://127.0.0.1:8188", &["ws", "wss"]).is_ok());
        assert!(check_url("ws://[::1]:8188/x", &["ws", "wss"]).is_ok());
        assert!(check_url("http://x", &["ws", "wss"]).unwrap_err().contains("scheme http://"));
        assert!(check_url("ws://:8188", &["ws"]).unwrap_err().contains("no host"));
        assert!(check_url("https://u:pw@h/t", &["https"]).unwrap_err().contains("credentials"));
        assert!(check_url("https://h:99999/t", &["https"]).unwrap_err().contains("port"));
        assert!(check_url("https://h t", &["https"]).unwrap_err().contains("blanks"));
        assert!(check_url("janus.example.org", &["wss"]).unwrap_err().contains("not a URL"));
    }

    #[test]
    fn names() {
        assert!(check_name("hang_up").is_ok());
        assert!(check_name("pi-zero-2w").is_ok());
        assert!(check_name("Call").is_err());
        assert!(check_name("_x").is_err());
        assert!(check_name("").is_err());
        assert!(check_name(&"a".repeat(33)).is_err());
    }
}

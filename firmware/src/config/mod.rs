//! The appliance configuration (`callbox.toml`, documented in `config/callbox.toml`) and the board profiles
//! (`board/*.toml`): loading, validation whose every error names the file, the key and what is wrong, the
//! cross-check of a configuration against its board, and the conversions the appliance starts from
//! (`ClientConfig`, display target, ALSA buffering, credential source, door code).
//!
//! Errors: a serde error's span is mapped back to its key path (`door.relay`, `call.targets[1]`) through
//! toml's spanned parse tree; validation names its keys itself. Relative paths in the file are taken from
//! the file's own directory.

mod board;
mod report;
mod schema;
mod spans;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::DeTable;

pub use board::{
    BoardAudio, BoardCamera, BoardDisplay, BoardProfile, BoardVideo, ButtonLine, ChipRef, CodecPreference, GpioSection,
    OutputLineConfig, DEFAULT_BOARD_DIR,
};
pub use report::check_report;
pub use schema::{
    AudioSection, BoardSection, CallSection, CodecName, CredentialsSection, DevicesSection, DisplaySection,
    DoorSection, IdentitySection, LedsSection, NetworkSection, ScreenSize, ServersSection, VideoSection,
};
pub use validate::is_profile_path;

use crate::calling::{Identifier, Secret};
use crate::client::ClientConfig;
use crate::devices::audio::alsa::{AlsaConfig, Pacing};
use crate::input::ButtonAction;
use crate::media::video::DecodeCap;
use crate::media::{CodecPolicy, DtmfConfig, VideoConfig};
use crate::provisioning::{read_secret_file, CredentialSource, EndpointConfig};
use spans::SpanIndex;

/// Where the service reads its configuration.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/callbox/callbox.toml";
/// Largest configuration or profile file read.
pub const MAX_FILE_BYTES: u64 = 256 * 1024;

/// One thing wrong in a file: `file: key: message (line N)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, as it was named.
    pub file: String,
    /// The dotted key path (`door.relay`, `call.targets[1]`); empty for the document as a whole.
    pub key: String,
    /// The line of the key, when it is written in the file.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)?;
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.message)?;
        }
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

/// Why a configuration or a board profile was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {reason}")]
    Read { file: String, reason: String },
    /// The file is not TOML.
    #[error("{file}:{line}:{column}: not valid TOML: {message}")]
    Syntax { file: String, line: usize, column: usize, message: String },
    /// Keys are missing, unknown or wrong (at least one problem; one per line when shown).
    #[error("{}", join_problems(.0))]
    Invalid(Vec<Problem>),
}

fn join_problems(problems: &[Problem]) -> String {
    problems.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n")
}

impl ConfigError {
    /// The problems found (none for a read or syntax error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(list) => list,
            _ => &[],
        }
    }

    /// The key paths named by the problems.
    pub fn keys(&self) -> Vec<&str> {
        self.problems().iter().map(|p| p.key.as_str()).collect()
    }
}

pub(crate) fn syntax_error(file: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map_or(0, |s| s.start);
    let before = text.get(..offset.min(text.len())).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(1, |l| l.chars().count() + 1);
    ConfigError::Syntax { file: file.to_owned(), line, column, message: e.message().trim().to_owned() }
}

/// Reads a whole text file of at most [`MAX_FILE_BYTES`].
pub(crate) fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    let file = path.display().to_string();
    let err = |reason: String| ConfigError::Read { file: file.clone(), reason };
    let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut text = String::new();
    f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text).map_err(|e| err(e.to_string()))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(err(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    Ok(text)
}

/// The device's credential as configured (exactly one, checked at load).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfiguredCredential {
    /// A device key (systemd credential or file), traded for access tokens at `servers.token_url`.
    DeviceKey(CredentialSource),
    /// A static user access token (no token endpoint).
    StaticToken(CredentialSource),
}

/// Where the far end's video is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisplayTarget {
    /// A Linux framebuffer device.
    Framebuffer(PathBuf),
    /// An in-memory screen of this size.
    Memory(ScreenSize),
    /// No display.
    None,
}

/// A validated `callbox.toml`. Built only by [`Config::parse`] / [`Config::load`]; the tables are public to
/// read. Relative paths have been made relative to the file's directory.
#[derive(Debug, Clone)]
pub struct Config {
    pub identity: IdentitySection,
    pub servers: ServersSection,
    pub credentials: CredentialsSection,
    pub call: CallSection,
    /// The door relay; none: the appliance has no door relay.
    pub door: Option<DoorSection>,
    /// Who may ring, who is answered on their own, who may open the door (`[admission]`, groups expanded).
    pub admission: crate::calling::admission::Admission,
    /// Board button name → action.
    pub buttons: std::collections::BTreeMap<String, ButtonAction>,
    pub leds: LedsSection,
    pub devices: DevicesSection,
    pub video: VideoSection,
    pub audio: AudioSection,
    pub display: DisplaySection,
    pub network: NetworkSection,
    pub board: BoardSection,
    path: PathBuf,
    targets: Vec<Identifier>,
    media_ip: Option<IpAddr>,
    spans: SpanIndex,
}

fn relative_to(base: Option<&Path>, path: &mut PathBuf) {
    if let Some(base) = base.filter(|b| !b.as_os_str().is_empty()) {
        if path.is_relative() && !path.as_os_str().is_empty() {
            *path = base.join(&*path);
        }
    }
}

impl Config {
    /// Reads and validates `path` (at most [`MAX_FILE_BYTES`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_bounded(path)?;
        Self::parse(&text, path)
    }

    /// Parses and validates `text`; `path_for_errors` names the file in errors and is the base of relative
    /// paths.
    pub fn parse(text: &str, path_for_errors: &Path) -> Result<Config, ConfigError> {
        let file = path_for_errors.display().to_string();
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(ConfigError::Read { file, reason: format!("larger than {MAX_FILE_BYTES} bytes") });
        }
        let root = DeTable::parse(text).map_err(|e| syntax_error(&file, text, &e))?;
        let spans = SpanIndex::new(text, &root);
        let raw: schema::RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::Invalid(vec![spans.problem_from(&file, &e)]))?;
        let mut problems = validate::Problems::new(&file, &spans);
        let (targets, media_ip) = validate::validate(&raw, &mut problems);
        let admission = validate::admission(&raw, &mut problems);
        if !problems.list.is_empty() {
            return Err(ConfigError::Invalid(problems.list));
        }
        let mut raw = raw;
        let base = path_for_errors.parent();
        for path in [
            raw.credentials.device_key_file.as_mut(),
            raw.credentials.static_token_file.as_mut(),
            raw.credentials.ca_file.as_mut(),
            raw.door.as_mut().and_then(|d| d.code_file.as_mut()),
            raw.display.framebuffer.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            relative_to(base, path);
        }
        Ok(Config {
            identity: raw.identity,
            servers: raw.servers,
            credentials: raw.credentials,
            call: raw.call,
            door: raw.door,
            admission,
            buttons: raw.buttons,
            leds: raw.leds,
            devices: raw.devices,
            video: raw.video,
            audio: raw.audio,
            display: raw.display,
            network: raw.network,
            board: raw.board,
            path: path_for_errors.to_owned(),
            targets,
            media_ip,
            spans,
        })
    }

    /// The file this configuration was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn spans(&self) -> &SpanIndex {
        &self.spans
    }

    /// The call targets, parsed (phone numbers in E.164).
    pub fn targets(&self) -> &[Identifier] {
        &self.targets
    }

    /// The device credential: where it is and what it is (load it with `CredentialSource::load`).
    pub fn credential(&self) -> ConfiguredCredential {
        let c = &self.credentials;
        match (&c.device_key, &c.device_key_file, &c.static_token_file) {
            (Some(name), _, _) => ConfiguredCredential::DeviceKey(CredentialSource::Systemd { name: name.clone() }),
            (None, Some(path), _) => ConfiguredCredential::DeviceKey(CredentialSource::File { path: path.clone() }),
            (None, None, Some(path)) => {
                ConfiguredCredential::StaticToken(CredentialSource::File { path: path.clone() })
            }
            // Validation guarantees one of them; an empty name fails with a clear error where it is loaded.
            (None, None, None) => ConfiguredCredential::DeviceKey(CredentialSource::Systemd { name: String::new() }),
        }
    }

    /// The token endpoint (URL, pinned CA, insecure-HTTP permission, default timeouts), when a URL is set.
    pub fn token_endpoint(&self) -> Option<EndpointConfig> {
        self.servers.token_url.as_ref().map(|url| EndpointConfig {
            ca_file: self.credentials.ca_file.clone(),
            allow_insecure_http: self.servers.allow_insecure_http,
            ..EndpointConfig::new(url.clone())
        })
    }

    /// The address media binds, or none for "auto" (the caller finds the interface that routes to Janus).
    pub fn media_ip(&self) -> Option<IpAddr> {
        self.media_ip
    }

    /// How long an outgoing call may ring.
    pub fn ring_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.call.ring_timeout_secs))
    }

    /// After how long an incoming call is answered by itself (none: never).
    pub fn auto_answer_after(&self) -> Option<Duration> {
        self.call.auto_answer_after_secs.map(|s| Duration::from_secs(u64::from(s)))
    }

    /// The board profile file this configuration names: `<board_dir>/<name>.toml`, or its path (relative
    /// to the configuration file's directory).
    pub fn board_profile_path(&self, board_dir: &Path) -> PathBuf {
        let profile = self.board.profile.trim();
        if is_profile_path(profile) {
            let mut path = PathBuf::from(profile);
            relative_to(self.path.parent(), &mut path);
            path
        } else {
            board_dir.join(format!("{profile}.toml"))
        }
    }

    /// Loads the board profile this configuration names and cross-checks the two.
    pub fn load_board(&self, board_dir: &Path) -> Result<BoardProfile, ConfigError> {
        let path = self.board_profile_path(board_dir);
        let board = BoardProfile::load(&path.display().to_string(), board_dir)?;
        self.check_against(&board)?;
        Ok(board)
    }

    /// Every button, LED and relay this configuration names exists in `board`, and a forced hardware
    /// encoder is one the board may use. Problems are keyed in this configuration's file.
    pub fn check_against(&self, board: &BoardProfile) -> Result<(), ConfigError> {
        let problems = board::cross_check(self, board);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Things that work but are probably not meant, for `check-config` and the start-up log.
    pub fn warnings(&self, board: &BoardProfile) -> Vec<String> {
        report::warnings(self, board)
    }

    /// Where the far end is shown: `[display]`, else the board's framebuffer, else nowhere.
    pub fn display_target(&self, board: Option<&BoardProfile>) -> DisplayTarget {
        if !self.display.enabled {
            return DisplayTarget::None;
        }
        if let Some(fb) = &self.display.framebuffer {
            return DisplayTarget::Framebuffer(fb.clone());
        }
        if let Some(size) = self.display.screen {
            return DisplayTarget::Memory(size);
        }
        match board.and_then(|b| b.display.as_ref()) {
            Some(d) if !self.devices.sim => DisplayTarget::Framebuffer(d.framebuffer.clone()),
            _ => DisplayTarget::None,
        }
    }

    /// ALSA buffering: the board's period and buffer (defaults without a board), paced by our clock when
    /// `[devices] alsa_clock` is set.
    pub fn alsa_config(&self, board: Option<&BoardProfile>) -> AlsaConfig {
        match board {
            Some(b) => b.alsa_config(self.devices.alsa_clock),
            None => AlsaConfig {
                pacing: if self.devices.alsa_clock { Pacing::Clock } else { Pacing::Device },
                ..AlsaConfig::default()
            },
        }
    }

    /// The camera, microphone and speaker ids: `[devices]`, else the board's (not with simulated devices).
    pub fn device_ids(&self, board: Option<&BoardProfile>) -> (Option<String>, Option<String>, Option<String>) {
        let board = board.filter(|_| !self.devices.sim);
        let d = &self.devices;
        (
            d.camera.clone().or_else(|| board.and_then(|b| b.camera.as_ref()).map(|c| c.device.clone())),
            d.microphone.clone().or_else(|| board.and_then(|b| b.audio.capture.clone())),
            d.speaker.clone().or_else(|| board.and_then(|b| b.audio.playback.clone())),
        )
    }

    /// How encoders and decoders are chosen: `video.encoder`, else the board's forced encoder; hardware codecs
    /// unless `video.software_codecs` or the board says software.
    pub fn codec_policy(&self, board: Option<&BoardProfile>) -> CodecPolicy {
        CodecPolicy {
            forced_encoder: self.video.encoder.clone().or_else(|| board.and_then(|b| b.video.encoder.clone())),
            forced_decoder: None,
            allow_hardware: !self.video.software_codecs && board.is_none_or(BoardProfile::allows_hardware_codecs),
        }
    }

    /// The calling client's configuration: Janus URLs, display name, ring timeout, media address (when not
    /// "auto"), video (size, rate, codec order, encoder policy from `[video]` and the board) or none when
    /// `call.video = false`, audio (processing, FEC, DTX) and device ids. `media.devices` is left as the
    /// default: the caller builds the `DeviceManager` (from `devices.sim`, [`Config::alsa_config`]).
    pub fn client_config(&self, board: Option<&BoardProfile>) -> ClientConfig {
        let mut c = ClientConfig {
            janus_urls: self.servers.janus_urls.clone(),
            display_name: self.identity.display_name.clone(),
            ..ClientConfig::default()
        };
        c.core.ring_timeout = self.ring_timeout();
        c.core.mute_microphone_in_early_media = self.call.mute_in_early_media;
        if let Some(ip) = self.media_ip {
            c.media.bind_ip = ip;
        }
        c.media.video = self.call.video.then(|| VideoConfig {
            width: self.video.width,
            height: self.video.height,
            fps: self.video.fps,
            codecs: self.video.codec.codec().preferred_first(),
            codec_policy: self.codec_policy(board),
            max_decode: board.map_or_else(DecodeCap::default, |b| {
                DecodeCap::new(b.video.max_decode_width, b.video.max_decode_height)
            }),
            ..VideoConfig::default()
        });
        c.media.audio.fec = self.audio.fec;
        c.media.audio.dtx = self.audio.dtx;
        c.media.dtmf = DtmfConfig {
            send: self.audio.dtmf_send.mode(),
            detect_in_band: self.audio.dtmf_in_band.or(board.map(|b| b.audio.dtmf_in_band)).unwrap_or(false),
        };
        if !self.audio.processing {
            c.media.audio.processing = None;
        }
        let (camera, microphone, speaker) = self.device_ids(board);
        c.media.camera = camera;
        c.media.microphone = microphone;
        c.media.speaker = speaker;
        c
    }

    /// The door code (4 to 12 digits) from `door.code_file`, or none when there is no door or no code file.
    /// The file must be the service user's own and private (`provisioning::read_secret_file`).
    pub fn door_code(&self) -> Result<Option<Secret>, ConfigError> {
        let Some(path) = self.door.as_ref().and_then(|d| d.code_file.as_ref()) else {
            return Ok(None);
        };
        let problem = |message: String| {
            ConfigError::Invalid(vec![Problem {
                file: self.path.display().to_string(),
                key: "door.code_file".into(),
                line: self.spans.line_of("door.code_file"),
                message,
            }])
        };
        let code = read_secret_file(path).map_err(|e| problem(e.to_string()))?;
        let digits = code.expose();
        if !(4..=12).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(problem(format!("the code in {} must be 4 to 12 digits", path.display())));
        }
        Ok(Some(code))
    }
}

//! Board profiles (`board/<name>.toml`): the hardware of one board model. GPIO chip and line offsets of the
//! buttons, LEDs and relays (polarity, debounce, long press), the framebuffer, the ALSA devices and buffer
//! sizes, the camera, and the video encoder preference. Loading, validation (names, ranges, one use per
//! line of a chip) and the resolved line descriptions the input and output code opens.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::de::DeTable;

use super::spans::{join, SpanIndex};
use super::validate::{check_name, is_profile_path, Problems};
use super::{ConfigError, Problem};
use crate::devices::audio::alsa::{AlsaConfig, Pacing};
use crate::input::{ButtonSpec, OutputSpec};

/// Where installed profiles live on a device (the repository's `board/`).
pub const DEFAULT_BOARD_DIR: &str = "/usr/share/callbox/board";
/// Most lines one profile may describe (buttons, LEDs and relays together).
pub const MAX_LINES: usize = 64;
/// Most GPIO chips examined when looking a chip up by its label.
const MAX_CHIPS: usize = 64;

/// `[gpio]`: the chip most lines are on, and the button timing defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioSection {
    /// The chip: a device path (`/dev/gpiochip0`) or, anything not starting with `/`, the chip's label
    /// (`pinctrl-rp1`), looked up among `/dev/gpiochip*` when the lines are opened.
    pub chip: String,
    /// Lines the chip has (offsets must be below it); none: not checked.
    pub lines: Option<u32>,
    /// Default debounce of the buttons, in milliseconds.
    #[serde(default = "default_debounce")]
    pub debounce_ms: u32,
    /// Default long-press threshold of the buttons, in milliseconds.
    #[serde(default = "default_long_press")]
    pub long_press_ms: u32,
}

/// `[buttons.<name>]`: one push button.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ButtonLine {
    /// Line offset on the chip.
    pub line: u32,
    /// Another chip than `gpio.chip` (path or label).
    pub chip: Option<String>,
    /// Pressed reads low (a button to ground with a pull-up): the usual wiring.
    #[serde(default = "yes")]
    pub active_low: bool,
    /// Debounce of this button (default `gpio.debounce_ms`).
    pub debounce_ms: Option<u32>,
    /// Long-press threshold of this button (default `gpio.long_press_ms`).
    pub long_press_ms: Option<u32>,
}

/// `[leds.<name>]` or `[relays.<name>]`: where one output line is wired (the line itself is
/// `input::OutputLine`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputLineConfig {
    /// Line offset on the chip.
    pub line: u32,
    /// Another chip than `gpio.chip` (path or label).
    pub chip: Option<String>,
    /// On drives the line low (relay boards that switch on a low input, LEDs wired to 3.3 V).
    #[serde(default)]
    pub active_low: bool,
}

/// `[display]`: the board's screen.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardDisplay {
    /// The framebuffer device.
    pub framebuffer: PathBuf,
}

/// `[audio]`: the board's sound devices and ALSA buffering.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardAudio {
    /// Microphone PCM (`hw:CARD=Device,DEV=0`, or one the board's ALSA configuration defines).
    pub capture: Option<String>,
    /// Speaker PCM.
    pub playback: Option<String>,
    /// ALSA period asked of the devices, in microseconds.
    #[serde(default = "default_period_us")]
    pub period_us: u32,
    /// ALSA ring buffer asked of the devices, in microseconds.
    #[serde(default = "default_buffer_us")]
    pub buffer_us: u32,
    /// The ALSA configuration this profile's PCM names need (a file under `board/alsa/`, installed as
    /// `/etc/alsa/conf.d/50-callbox.conf`).
    pub alsa_config: Option<String>,
    /// Detect DTMF tones in received audio (installations behind gateways that send DTMF as sound rather than
    /// RFC 4733 events); `callbox.toml`'s `audio.dtmf_in_band` overrides it.
    #[serde(default)]
    pub dtmf_in_band: bool,
}

/// `[camera]`: the board's camera.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardCamera {
    /// The V4L2 capture node (or a udev symlink to it).
    pub device: String,
}

/// Which video codecs a board should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodecPreference {
    /// The board's hardware codecs (`v4l2h264enc`/`v4l2h264dec`) first, software as the fallback.
    Hardware,
    /// Software codecs only (no hardware encoder, or one not worth its cost).
    Software,
}

/// `[video]`: the board's encoder preference and what it can sustain.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardVideo {
    /// Hardware or software codecs.
    pub codecs: CodecPreference,
    /// Force this encoder element on this board (none: the best available under `codecs`).
    pub encoder: Option<String>,
    /// Largest frame the board encodes in real time with its preferred encoder.
    pub max_width: u32,
    pub max_height: u32,
    pub max_fps: u32,
    /// Largest remote picture the board decodes (either way round); a peer's bigger stream is not decoded
    /// (`media::video::DecodeCap`). Default 1920x1080.
    #[serde(default = "default_max_decode_width")]
    pub max_decode_width: u32,
    #[serde(default = "default_max_decode_height")]
    pub max_decode_height: u32,
}

fn default_max_decode_width() -> u32 {
    1920
}

fn default_max_decode_height() -> u32 {
    1080
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    description: String,
    gpio: GpioSection,
    #[serde(default)]
    buttons: BTreeMap<String, ButtonLine>,
    #[serde(default)]
    leds: BTreeMap<String, OutputLineConfig>,
    #[serde(default)]
    relays: BTreeMap<String, OutputLineConfig>,
    display: Option<BoardDisplay>,
    audio: BoardAudio,
    camera: Option<BoardCamera>,
    video: BoardVideo,
}

/// A GPIO chip as a profile names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChipRef {
    /// A device node path.
    Path(PathBuf),
    /// A chip label (`pinctrl-bcm2711`, `pinctrl-rp1`, a gpio-sim bank's label).
    Label(String),
}

impl ChipRef {
    /// A value starting with `/` is a path, anything else a label.
    pub fn parse(s: &str) -> Self {
        if s.starts_with('/') {
            ChipRef::Path(PathBuf::from(s))
        } else {
            ChipRef::Label(s.to_owned())
        }
    }

    /// The device node: the path itself, or the `/dev/gpiochip*` whose label matches (the first of at
    /// most 64 examined). The error names the label and the chips seen.
    pub fn resolve(&self) -> Result<PathBuf, String> {
        match self {
            ChipRef::Path(p) => Ok(p.clone()),
            ChipRef::Label(label) => {
                let chips = gpio_cdev::chips().map_err(|e| format!("cannot list GPIO chips: {e}"))?;
                let mut seen = Vec::new();
                for chip in chips.take(MAX_CHIPS) {
                    match chip {
                        Ok(chip) if chip.label() == label => return Ok(chip.path().to_owned()),
                        Ok(chip) => seen.push(format!("{} ({})", chip.path().display(), chip.label())),
                        Err(e) => seen.push(format!("unreadable: {e}")),
                    }
                }
                let seen = if seen.is_empty() { "none".to_owned() } else { seen.join(", ") };
                Err(format!("no GPIO chip labelled '{label}' (chips: {seen})"))
            }
        }
    }
}

impl fmt::Display for ChipRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChipRef::Path(p) => write!(f, "{}", p.display()),
            ChipRef::Label(l) => write!(f, "label:{l}"),
        }
    }
}

/// A validated board profile.
#[derive(Debug, Clone)]
pub struct BoardProfile {
    /// The profile's name (its file name without `.toml`).
    pub name: String,
    /// What board it is, for people.
    pub description: String,
    pub gpio: GpioSection,
    pub buttons: BTreeMap<String, ButtonLine>,
    pub leds: BTreeMap<String, OutputLineConfig>,
    pub relays: BTreeMap<String, OutputLineConfig>,
    pub display: Option<BoardDisplay>,
    pub audio: BoardAudio,
    pub camera: Option<BoardCamera>,
    pub video: BoardVideo,
    path: PathBuf,
}

impl BoardProfile {
    /// Loads a profile by name (`pi4` → `<board_dir>/pi4.toml`) or by path (anything with a `/` or ending in
    /// `.toml`), and validates it.
    pub fn load(name_or_path: &str, board_dir: &Path) -> Result<BoardProfile, ConfigError> {
        let path = if is_profile_path(name_or_path) {
            PathBuf::from(name_or_path)
        } else {
            check_name(name_or_path).map_err(|reason| ConfigError::Read {
                file: board_dir.display().to_string(),
                reason: format!("board profile name: {reason}"),
            })?;
            board_dir.join(format!("{name_or_path}.toml"))
        };
        let text = super::read_bounded(&path)?;
        Self::parse(&text, &path)
    }

    /// Parses and validates a profile's text; `path` names it in errors and gives the expected name.
    pub fn parse(text: &str, path: &Path) -> Result<BoardProfile, ConfigError> {
        let file = path.display().to_string();
        let root = DeTable::parse(text).map_err(|e| super::syntax_error(&file, text, &e))?;
        let spans = SpanIndex::new(text, &root);
        let raw: RawProfile =
            toml::from_str(text).map_err(|e| ConfigError::Invalid(vec![spans.problem_from(&file, &e)]))?;
        let mut p = Problems::new(&file, &spans);
        validate(&raw, path, &mut p);
        if !p.list.is_empty() {
            return Err(ConfigError::Invalid(p.list));
        }
        Ok(BoardProfile {
            name: raw.name,
            description: raw.description,
            gpio: raw.gpio,
            buttons: raw.buttons,
            leds: raw.leds,
            relays: raw.relays,
            display: raw.display,
            audio: raw.audio,
            camera: raw.camera,
            video: raw.video,
            path: path.to_owned(),
        })
    }

    /// The file the profile was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The chip of a line: its own `chip`, else `gpio.chip`.
    pub fn chip_of(&self, own: Option<&str>) -> ChipRef {
        ChipRef::parse(own.unwrap_or(&self.gpio.chip))
    }

    /// The debounce and long-press thresholds of the button `name` (its own, else `[gpio]`'s).
    pub fn button_timing(&self, name: &str) -> Option<(Duration, Duration)> {
        self.buttons.get(name).map(|b| {
            let ms = |v: u32| Duration::from_millis(u64::from(v));
            (ms(b.debounce_ms.unwrap_or(self.gpio.debounce_ms)), ms(b.long_press_ms.unwrap_or(self.gpio.long_press_ms)))
        })
    }

    fn missing(&self, what: &str, name: &str) -> String {
        format!("board profile {} ({}) has no {what} '{name}'", self.name, self.path.display())
    }

    /// The button `name` as the input code opens it, its chip resolved (a label is looked up among
    /// `/dev/gpiochip*`). Errors name the profile, the button and the chip.
    pub fn button_spec(&self, name: &str) -> Result<ButtonSpec, String> {
        let b = self.buttons.get(name).ok_or_else(|| self.missing("button", name))?;
        let chip = self.chip_of(b.chip.as_deref()).resolve().map_err(|e| format!("button '{name}': {e}"))?;
        let (debounce, long_press) = self.button_timing(name).ok_or_else(|| self.missing("button", name))?;
        Ok(ButtonSpec { name: name.to_owned(), chip, line: b.line, active_low: b.active_low, debounce, long_press })
    }

    fn output_spec(
        &self,
        what: &str,
        map: &BTreeMap<String, OutputLineConfig>,
        name: &str,
    ) -> Result<OutputSpec, String> {
        let o = map.get(name).ok_or_else(|| self.missing(what, name))?;
        let chip = self.chip_of(o.chip.as_deref()).resolve().map_err(|e| format!("{what} '{name}': {e}"))?;
        Ok(OutputSpec { name: name.to_owned(), chip, line: o.line, active_low: o.active_low })
    }

    /// The LED `name` as the output code opens it, its chip resolved.
    pub fn led_spec(&self, name: &str) -> Result<OutputSpec, String> {
        self.output_spec("LED", &self.leds, name)
    }

    /// The relay `name` as the output code opens it, its chip resolved.
    pub fn relay_spec(&self, name: &str) -> Result<OutputSpec, String> {
        self.output_spec("relay", &self.relays, name)
    }

    /// ALSA buffering of this board; `clock_paced`: pace by our clock (`[devices] alsa_clock`).
    pub fn alsa_config(&self, clock_paced: bool) -> AlsaConfig {
        AlsaConfig {
            period_us: self.audio.period_us,
            buffer_us: self.audio.buffer_us,
            pacing: if clock_paced { Pacing::Clock } else { Pacing::Device },
        }
    }

    /// Whether hardware codecs may be used on this board.
    pub fn allows_hardware_codecs(&self) -> bool {
        self.video.codecs == CodecPreference::Hardware
    }
}

fn validate(raw: &RawProfile, path: &Path, p: &mut Problems<'_>) {
    match check_name(&raw.name) {
        Err(e) => p.push("name", e),
        Ok(()) => {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if stem != raw.name {
                p.push("name", format!("'{}' differs from the file name '{stem}.toml'", raw.name));
            }
        }
    }
    if raw.description.trim().is_empty() {
        p.push("description", "is empty");
    }
    if raw.gpio.chip.trim().is_empty() {
        p.push("gpio.chip", "is empty");
    }
    if raw.gpio.lines == Some(0) || raw.gpio.lines.is_some_and(|n| n > 1024) {
        p.push("gpio.lines", "must be 1 to 1024");
    }
    let debounce_ok = |ms: u32| (1..=500).contains(&ms);
    let long_ok = |ms: u32| (200..=10_000).contains(&ms);
    if !debounce_ok(raw.gpio.debounce_ms) {
        p.push("gpio.debounce_ms", format!("{} is out of range (1 to 500 ms)", raw.gpio.debounce_ms));
    }
    if !long_ok(raw.gpio.long_press_ms) {
        p.push("gpio.long_press_ms", format!("{} is out of range (200 to 10000 ms)", raw.gpio.long_press_ms));
    }

    let total = raw.buttons.len() + raw.leds.len() + raw.relays.len();
    if total > MAX_LINES {
        p.push("gpio", format!("{total} lines described; at most {MAX_LINES}"));
    }
    // (chip, line) → the key that uses it first.
    let mut used: BTreeMap<(ChipRef, u32), String> = BTreeMap::new();
    let mut claim = |p: &mut Problems<'_>, key: String, chip: &Option<String>, line: u32| {
        if let Some(c) = chip {
            if c.trim().is_empty() {
                p.push(&join(&key, "chip"), "is empty");
            }
        }
        let own_chip = chip.is_some();
        let chip = ChipRef::parse(chip.as_deref().unwrap_or(&raw.gpio.chip));
        if !own_chip {
            if let Some(n) = raw.gpio.lines.filter(|n| line >= *n) {
                p.push(&join(&key, "line"), format!("{line} is beyond the chip's {n} lines (0 to {})", n - 1));
            }
        }
        match used.get(&(chip.clone(), line)) {
            Some(first) => p.push(&join(&key, "line"), format!("line {line} of {chip} is already used by {first}")),
            None => {
                used.insert((chip, line), key);
            }
        }
    };
    for (name, b) in &raw.buttons {
        let key = join("buttons", name);
        if let Err(e) = check_name(name) {
            p.push(&key, e);
        }
        claim(p, key.clone(), &b.chip, b.line);
        if let Some(ms) = b.debounce_ms.filter(|ms| !debounce_ok(*ms)) {
            p.push(&join(&key, "debounce_ms"), format!("{ms} is out of range (1 to 500 ms)"));
        }
        if let Some(ms) = b.long_press_ms.filter(|ms| !long_ok(*ms)) {
            p.push(&join(&key, "long_press_ms"), format!("{ms} is out of range (200 to 10000 ms)"));
        }
        let debounce = b.debounce_ms.unwrap_or(raw.gpio.debounce_ms);
        let long = b.long_press_ms.unwrap_or(raw.gpio.long_press_ms);
        if long <= debounce {
            p.push(&key, format!("long press ({long} ms) must be longer than the debounce ({debounce} ms)"));
        }
    }
    for (table, map) in [("leds", &raw.leds), ("relays", &raw.relays)] {
        for (name, o) in map {
            let key = join(table, name);
            if let Err(e) = check_name(name) {
                p.push(&key, e);
            }
            claim(p, key, &o.chip, o.line);
        }
    }

    if let Some(d) = &raw.display {
        if d.framebuffer.as_os_str().is_empty() {
            p.push("display.framebuffer", "is empty");
        }
    }
    let a = &raw.audio;
    for (key, v) in [("audio.capture", &a.capture), ("audio.playback", &a.playback)] {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            p.push(key, "is empty (leave the key out for the first device found)");
        }
    }
    if !(1_000..=100_000).contains(&a.period_us) {
        p.push("audio.period_us", format!("{} is out of range (1000 to 100000 µs)", a.period_us));
    }
    if a.buffer_us < a.period_us.saturating_mul(2) || a.buffer_us > 500_000 {
        p.push("audio.buffer_us", format!("{} must hold at least two periods and at most 500000 µs", a.buffer_us));
    }
    if let Some(conf) = &a.alsa_config {
        let ok = !conf.is_empty() && !conf.contains('/') && conf.ends_with(".conf");
        if !ok {
            p.push("audio.alsa_config", format!("'{conf}' is not a file name under board/alsa/ ending in .conf"));
        }
    }
    if raw.camera.as_ref().is_some_and(|c| c.device.trim().is_empty()) {
        p.push("camera.device", "is empty");
    }
    let v = &raw.video;
    if let Some(e) = &v.encoder {
        if v.codecs == CodecPreference::Software && crate::media::video::is_hardware(e) {
            p.push("video.encoder", format!("{e} is a hardware encoder but video.codecs = \"software\""));
        }
    }
    if !(16..=3840).contains(&v.max_width) || !(16..=2160).contains(&v.max_height) || !(1..=120).contains(&v.max_fps) {
        p.push("video", "max_width, max_height, max_fps out of range (16x16 to 3840x2160, 1 to 120 fps)");
    }
    if !(16..=7680).contains(&v.max_decode_width) || !(16..=4320).contains(&v.max_decode_height) {
        p.push("video", "max_decode_width, max_decode_height out of range (16x16 to 7680x4320)");
    }
}

/// Problems of `config` against `board`, keyed in the configuration file.
pub(crate) fn cross_check(config: &super::Config, board: &BoardProfile) -> Vec<Problem> {
    let mut p = Problems::new(&config.path().display().to_string(), config.spans());
    let which = format!("board profile {} ({})", board.name, board.path.display());
    let names = |map: &dyn Fn() -> Vec<String>| {
        let all = map();
        if all.is_empty() {
            "none".to_owned()
        } else {
            all.join(", ")
        }
    };
    for name in config.buttons.keys() {
        if !board.buttons.contains_key(name) {
            let has = names(&|| board.buttons.keys().cloned().collect());
            p.push(&join("buttons", name), format!("{which} has no button '{name}' (it has: {has})"));
        }
    }
    for state in crate::input::LedState::ALL {
        if let Some(led) = config.leds.get(state) {
            if !board.leds.contains_key(led) {
                let has = names(&|| board.leds.keys().cloned().collect());
                p.push(&format!("leds.{state}"), format!("{which} has no LED '{led}' (it has: {has})"));
            }
        }
    }
    if let Some(door) = &config.door {
        if !board.relays.contains_key(&door.relay) {
            let has = names(&|| board.relays.keys().cloned().collect());
            p.push("door.relay", format!("{which} has no relay '{}' (it has: {has})", door.relay));
        }
    }
    if let Some(e) = &config.video.encoder {
        if crate::media::video::is_hardware(e) && !board.allows_hardware_codecs() {
            p.push("video.encoder", format!("{e} is a hardware encoder, but {which} uses software codecs"));
        }
    }
    p.list
}

fn yes() -> bool {
    true
}
fn default_debounce() -> u32 {
    30
}
fn default_long_press() -> u32 {
    1_500
}
fn default_period_us() -> u32 {
    10_000
}
fn default_buffer_us() -> u32 {
    40_000
}

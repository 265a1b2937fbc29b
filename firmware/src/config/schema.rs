//! The tables of `callbox.toml` as serde types (`deny_unknown_fields` everywhere): what each key is, its
//! type and its default. Checks that serde cannot express (ranges, URL schemes, identifiers, exclusive
//! keys) are in `validate.rs`; the documented example of every key is `config/callbox.toml`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use crate::input::{ButtonAction, LedState};
use crate::media::VideoCodec;

/// `[identity]`: who the appliance is to the people it calls. The user id itself comes from the token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    /// Display name sent with calls ("Front door").
    pub display_name: Option<String>,
}

/// `[servers]`: where the calling service is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServersSection {
    /// Janus WebSocket URLs (`ws://` or `wss://`), tried in order (fail-over).
    pub janus_urls: Vec<String>,
    /// The token endpoint (`https://`) that trades the device key for user access tokens. Needed with a
    /// device key, unused with a static token.
    pub token_url: Option<String>,
    /// Accept `ws://` Janus URLs and an `http://` token URL (cleartext): for a local development stack only,
    /// never on a deployed device. Without it both are refused.
    #[serde(default)]
    pub allow_insecure_http: bool,
}

/// `[credentials]`: where the secrets are. Paths and names only, never secret values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsSection {
    /// Name of a systemd credential (`LoadCredential=<name>:<file>` in the unit), read from
    /// `$CREDENTIALS_DIRECTORY/<name>`.
    pub device_key: Option<String>,
    /// Or a file holding the device key (0600, owned by the service user).
    pub device_key_file: Option<PathBuf>,
    /// Or a file holding a static user access token (simple deployments; no token endpoint).
    pub static_token_file: Option<PathBuf>,
    /// A pinned CA certificate (PEM) for the token endpoint (and `wss://`); default: the system roots.
    pub ca_file: Option<PathBuf>,
}

/// Default ring timeout of an outgoing call, in seconds.
pub const DEFAULT_RING_TIMEOUT_SECS: u32 = 45;

/// `[call]`: what the call button does and how incoming calls are treated.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallSection {
    /// Who the call button calls: user ids or phone numbers (several: a group call).
    #[serde(default)]
    pub targets: Vec<String>,
    /// Country code (digits, e.g. "1", "44") for phone numbers written without one.
    pub country_code: Option<String>,
    /// An outgoing call nobody answers ends after this many seconds.
    #[serde(default = "default_ring_timeout")]
    pub ring_timeout_secs: u32,
    /// Answer incoming calls by themselves after this many seconds (indoor monitors); none: never.
    pub auto_answer_after_secs: Option<u32>,
    /// Offer video in calls (false: an audio-only appliance).
    #[serde(default = "yes")]
    pub video: bool,
    /// Show an incoming call's video while it rings (early media; indoor monitors).
    #[serde(default)]
    pub early_video: bool,
    /// Keep the microphone muted while an outgoing call is in early media (until the far end answers).
    #[serde(default = "yes")]
    pub mute_in_early_media: bool,
}

impl Default for CallSection {
    fn default() -> Self {
        CallSection {
            targets: Vec::new(),
            country_code: None,
            ring_timeout_secs: DEFAULT_RING_TIMEOUT_SECS,
            auto_answer_after_secs: None,
            video: true,
            early_video: false,
            mute_in_early_media: true,
        }
    }
}

/// `[door]`: the door relay, pulsed when the right DTMF code arrives in a call.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoorSection {
    /// The relay output of the board profile (`[relays.<name>]`).
    pub relay: String,
    /// File holding the DTMF code (4 to 12 digits); none: the relay is never pulsed.
    pub code_file: Option<PathBuf>,
    /// How long the relay is held closed, in milliseconds.
    #[serde(default = "default_pulse_ms")]
    pub pulse_ms: u32,
    /// Code attempts accepted per minute (wrong or right); the rest are ignored.
    #[serde(default = "default_attempts")]
    pub max_attempts_per_minute: u32,
    /// Wrong codes a caller may type before it is locked out (counted per caller, kept across restarts).
    #[serde(default = "default_free_attempts")]
    pub lockout_after: u32,
    /// The first lockout, in seconds; each further wrong code doubles it.
    #[serde(default = "default_lockout_initial")]
    pub lockout_initial_secs: u32,
    /// The longest lockout, in seconds.
    #[serde(default = "default_lockout_max")]
    pub lockout_max_secs: u32,
    /// A call is hung up after this many wrong codes in it.
    #[serde(default = "default_free_attempts")]
    pub wrong_codes_per_call: u32,
}

/// `[admission]`: who may ring the appliance, whose calls it answers on its own, who may open the door with the
/// code. Each list holds user ids, `group:<name>` (from `[groups]`), phone numbers, number prefixes (`"+4930*"`)
/// or `"any-user"` (every user of the service, never a phone number).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionSection {
    /// Who may ring the appliance; anyone else is refused with `refuse_code`, without ringing.
    #[serde(default = "any_user")]
    pub callers: Vec<String>,
    /// The SIP code a caller outside `callers` is refused with: 403, 480, 486 or 603.
    #[serde(default = "default_refuse_code")]
    pub refuse_code: u16,
    /// Whose calls are answered on their own (after `call.auto_answer_after_secs`).
    #[serde(default)]
    pub auto_answer: Vec<String>,
    /// Who may open the door with the code in calls they place to the appliance.
    #[serde(default)]
    pub door_openers_calling_in: Vec<String>,
    /// Who may open the door with the code in calls the appliance places to them (the doorbell's call).
    #[serde(default)]
    pub door_openers_called: Vec<String>,
}

impl Default for AdmissionSection {
    fn default() -> Self {
        AdmissionSection {
            callers: any_user(),
            refuse_code: default_refuse_code(),
            auto_answer: Vec::new(),
            door_openers_calling_in: Vec::new(),
            door_openers_called: Vec::new(),
        }
    }
}

/// `[leds]`: state → LED output of the board profile (`[leds.<name>]`). A state without a key has no LED.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedsSection {
    pub idle: Option<String>,
    pub ringing: Option<String>,
    pub in_call: Option<String>,
    pub muted: Option<String>,
    pub fault: Option<String>,
    /// After a lockout for wrong door codes; unset: the `fault` LED shows it.
    pub alert: Option<String>,
}

impl LedsSection {
    /// The LED output showing `state`.
    pub fn get(&self, state: LedState) -> Option<&str> {
        match state {
            LedState::Idle => self.idle.as_deref(),
            LedState::Ringing => self.ringing.as_deref(),
            LedState::InCall => self.in_call.as_deref(),
            LedState::Muted => self.muted.as_deref(),
            LedState::Fault => self.fault.as_deref(),
            LedState::Alert => self.alert.as_deref(),
        }
    }
}

/// `[devices]`: the devices to use. The same table `DevicePreferences` reads and rewrites (camera,
/// microphone, speaker), plus how to drive them. An unset device is the board profile's, else the first found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesSection {
    /// Camera id (a V4L2 node path, `/dev/video0`).
    pub camera: Option<String>,
    /// Microphone id (an ALSA PCM, `hw:CARD=Device,DEV=0`).
    pub microphone: Option<String>,
    /// Speaker id (an ALSA PCM).
    pub speaker: Option<String>,
    /// Pace ALSA streams by our clock (PCMs without a hardware clock: `file`, `null`); never on a real card.
    #[serde(default)]
    pub alsa_clock: bool,
    /// Simulated devices (tone microphone, capturing speaker, test-pattern camera, scripted buttons).
    #[serde(default)]
    pub sim: bool,
    /// What the simulated camera shows: `pattern` (moving, the default) or `bars` (a still picture).
    #[serde(default)]
    pub sim_camera_picture: crate::devices::video::sim::SimPicture,
}

/// A video codec name in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodecName {
    /// H.264 constrained baseline.
    #[default]
    H264,
    /// VP8.
    Vp8,
}

impl CodecName {
    /// The media layer's codec.
    pub fn codec(self) -> VideoCodec {
        match self {
            CodecName::H264 => VideoCodec::H264,
            CodecName::Vp8 => VideoCodec::Vp8,
        }
    }

    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            CodecName::H264 => "h264",
            CodecName::Vp8 => "vp8",
        }
    }
}

/// `[video]`: what is asked of the camera and the encoder.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoSection {
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    #[serde(default = "default_fps")]
    pub fps: u32,
    /// Preferred codec (both are offered; this one first).
    #[serde(default)]
    pub codec: CodecName,
    /// Force this GStreamer encoder element (it must exist); none: the board's preference.
    pub encoder: Option<String>,
    /// Never use hardware (`v4l2*`) codecs, whatever the board has.
    #[serde(default)]
    pub software_codecs: bool,
}

impl Default for VideoSection {
    fn default() -> Self {
        VideoSection {
            width: default_width(),
            height: default_height(),
            fps: default_fps(),
            codec: CodecName::default(),
            encoder: None,
            software_codecs: false,
        }
    }
}

/// `[audio]`: microphone processing and the Opus encoder.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioSection {
    /// Echo cancellation, noise suppression, high-pass filter on the microphone.
    #[serde(default = "yes")]
    pub processing: bool,
    /// Opus in-band forward error correction.
    #[serde(default = "yes")]
    pub fec: bool,
    /// Opus discontinuous transmission.
    #[serde(default)]
    pub dtx: bool,
    /// How DTMF digits are sent.
    #[serde(default)]
    pub dtmf_send: DtmfSendName,
    /// Detect DTMF tones in the received audio; unset: the board profile's `audio.dtmf_in_band`.
    pub dtmf_in_band: Option<bool>,
}

impl Default for AudioSection {
    fn default() -> Self {
        AudioSection { processing: true, fec: true, dtx: false, dtmf_send: DtmfSendName::default(), dtmf_in_band: None }
    }
}

/// `audio.dtmf_send`: how the appliance sends DTMF digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum DtmfSendName {
    /// RFC 4733 telephone-events in the audio stream where the far end negotiated them, else SIP INFO.
    #[default]
    #[serde(rename = "rfc4733")]
    Rfc4733,
    /// SIP INFO (`application/dtmf-relay`) always.
    #[serde(rename = "sip-info")]
    SipInfo,
}

impl DtmfSendName {
    /// The media layer's mode.
    pub fn mode(self) -> crate::media::DtmfSendMode {
        match self {
            DtmfSendName::Rfc4733 => crate::media::DtmfSendMode::TelephoneEvent,
            DtmfSendName::SipInfo => crate::media::DtmfSendMode::SipInfo,
        }
    }
}

/// A screen size written `WxH` (`"800x480"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScreenSize {
    pub width: u32,
    pub height: u32,
}

impl ScreenSize {
    /// Parses `WxH` (16 to 7680 by 16 to 4320).
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not a screen size WxH (e.g. 800x480)");
        let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
        let width: u32 = w.trim().parse().map_err(|_| bad())?;
        let height: u32 = h.trim().parse().map_err(|_| bad())?;
        if !(16..=7680).contains(&width) || !(16..=4320).contains(&height) {
            return Err(format!("{width}x{height} is out of range (16x16 to 7680x4320)"));
        }
        Ok(ScreenSize { width, height })
    }
}

impl fmt::Display for ScreenSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl<'de> Deserialize<'de> for ScreenSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ScreenSize::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `[display]`: where the far end is shown. Unset: the board profile's framebuffer, if it has one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisplaySection {
    /// false: no display at all (headless), whatever the board has.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A framebuffer device (`/dev/fb0`).
    pub framebuffer: Option<PathBuf>,
    /// Or an in-memory screen of this size (simulation, snapshots).
    pub screen: Option<ScreenSize>,
    /// Redraws per second.
    #[serde(default = "default_display_fps")]
    pub fps: u32,
}

impl Default for DisplaySection {
    fn default() -> Self {
        DisplaySection { enabled: true, framebuffer: None, screen: None, fps: default_display_fps() }
    }
}

/// `[network]`: the local side of the media.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// The address media sockets bind (its host candidate is what the far end reaches): an IP address,
    /// or `"auto"` (the default): the address of the interface that routes to the first Janus server.
    pub media_ip: Option<String>,
}

/// `[board]`: which board profile describes the hardware.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardSection {
    /// A profile name from the board directory (`pi4`, `pi5`, `pi-zero-2w`, `cm4`, `qemu-virt`, `sim`) or a
    /// path to a profile file (relative paths: from the configuration file's directory).
    pub profile: String,
}

/// The raw document: every table as written (see `Config` for the checked whole).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub identity: IdentitySection,
    pub servers: ServersSection,
    pub credentials: CredentialsSection,
    #[serde(default)]
    pub call: CallSection,
    pub door: Option<DoorSection>,
    #[serde(default)]
    pub admission: AdmissionSection,
    /// Named groups of parties, for the `[admission]` lists (`group:<name>`).
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub buttons: BTreeMap<String, ButtonAction>,
    #[serde(default)]
    pub leds: LedsSection,
    #[serde(default)]
    pub devices: DevicesSection,
    #[serde(default)]
    pub video: VideoSection,
    #[serde(default)]
    pub audio: AudioSection,
    #[serde(default)]
    pub display: DisplaySection,
    #[serde(default)]
    pub network: NetworkSection,
    pub board: BoardSection,
}

fn yes() -> bool {
    true
}
fn default_ring_timeout() -> u32 {
    DEFAULT_RING_TIMEOUT_SECS
}
fn default_pulse_ms() -> u32 {
    1_000
}
fn default_attempts() -> u32 {
    5
}
fn default_free_attempts() -> u32 {
    3
}
fn default_lockout_initial() -> u32 {
    60
}
fn default_lockout_max() -> u32 {
    86_400
}
fn any_user() -> Vec<String> {
    vec!["any-user".to_owned()]
}
fn default_refuse_code() -> u16 {
    603
}
fn default_width() -> u32 {
    640
}
fn default_height() -> u32 {
    480
}
fn default_fps() -> u32 {
    30
}
fn default_display_fps() -> u32 {
    30
}

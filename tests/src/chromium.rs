//! `ChromiumPage`: a foreign WebRTC client of a test stack — headless Chromium (Debian's `/usr/bin/chromium`) on a
//! janus.js page: `tests/chromium/room.html` + `room.js`, a participant of a videoroom, or (`PageKind::Sip`)
//! `sip.html` + `sip.js`, a SIP user registered at the stack's Kamailio through Janus's SIP plugin that calls and
//! answers (the recipe and its pitfalls: `tests/chromium/NOTES.md`). A page owns its temp dir (a copy of the page
//! with Debian's janus.js and adapter.js, a fresh profile and home, the generated fake media, Chromium's log),
//! Chromium's process group (killed on `stop` and on drop, also in a panicking test; the harness's reaper kills it
//! if the test process dies), and a reader thread that turns the page's `CALLBOX_STATS {json}` console lines on
//! Chromium's stderr into typed `PageStats` snapshots, keeping the page's own event lines and a bounded tail of the
//! rest for failure messages. Commands reach the page through a control file beside it (`request_leave`, and for
//! the SIP page `request_call`, `request_answer`, `request_hangup`).

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callbox::signaling::SipRegister;
use callbox_calling::Secret;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::Value;

use crate::error::HarnessError;
use crate::process::ServerProcess;
use crate::stack::Stack;

/// Debian's Chromium (package `chromium`; a shell wrapper that execs `/usr/lib/chromium/chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// janus.js 1.1 (package `libjs-janus-gateway`, the server's own version).
pub const JANUS_JS: &str = "/usr/share/javascript/janus-gateway/janus.js";
/// webrtc-adapter with the global `adapter` janus.js uses (package `libjs-webrtc-adapter`).
pub const ADAPTER_JS: &str = "/usr/share/javascript/webrtc-adapter/adapter.js";

/// The flags of the recipe (NOTES.md "Chromium flags"), plus `--allow-file-access-from-files` for the page's
/// control file. Every one of them was needed or is harmless; see NOTES.md for what each absence breaks.
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
    "--enable-logging=stderr",
    "--allow-file-access-from-files",
];

/// The 75 % colour bars of `colour_bars_y4m` as the far end decodes them (RGB, left to right: white, yellow,
/// cyan, green, magenta, red, blue, black), what `VideoProbe::shows_colour_bars` compares with.
pub const COLOUR_BARS_RGB: [[u8; 3]; 8] =
    [[191, 191, 191], [191, 191, 0], [0, 191, 191], [0, 191, 0], [191, 0, 191], [191, 0, 0], [0, 0, 191], [0, 0, 0]];

/// Chromium is killed when its log passes this (a runaway); a stats line is ~2 KB a second.
const LOG_LIMIT: u64 = 64 * 1024 * 1024;
/// The page's `CALLBOX ...` event lines kept for failure messages.
const EVENTS_KEPT: usize = 120;
/// Other stderr lines kept (each cut to `TAIL_LINE_MAX` bytes).
const TAIL_LINES_KEPT: usize = 120;
const TAIL_LINE_MAX: usize = 600;
/// Lifetime of the Janus token `ChromiumOptions::for_stack` mints (janus.js sends it with every request,
/// keepalives included, so it must outlive the test).
const PAGE_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// How long `stop` lets Chromium exit on SIGTERM before the group gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(100);

static PAGE_COUNT: AtomicU32 = AtomicU32::new(0);

/// The folder holding the pages (`room.html`, `room.js`, `sip.html`, `sip.js`) in the repository.
pub fn page_source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("chromium")
}

/// What a page fails with: always its display name, and for failures of the page itself the last stats, the
/// page's event lines and Chromium's stderr tail.
#[derive(Debug, thiserror::Error)]
pub enum ChromiumError {
    #[error("chromium page {name}: {source}")]
    Harness { name: String, source: HarnessError },
    #[error("chromium page {name}: {path} is missing (Debian package {package}; scripts/install-deps installs it)")]
    Missing { name: String, path: PathBuf, package: &'static str },
    #[error("chromium page {name}: no SIP registration for the page: {reason}")]
    Registration { name: String, reason: String },
    #[error("chromium page {name}: must start inside a tokio runtime (its log watchdog is a tokio task)")]
    NoRuntime { name: String },
    #[error("chromium page {name}: the page failed: {error}\n{context}")]
    PageFailed { name: String, error: String, context: String },
    #[error("chromium page {name}: Chromium is not running ({status})\n{context}")]
    Exited { name: String, status: String, context: String },
    #[error("chromium page {name}: not {what} within {timeout:?}\n{context}")]
    Timeout { name: String, what: String, timeout: Duration, context: String },
}

/// The fake camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FakeVideo {
    /// 320x240 at 15 fps, 75 % colour bars with a white block moving along the bottom (`colour_bars_y4m`),
    /// generated into the page's dir; the far end's probe can recognise it (`VideoProbe::shows_colour_bars`).
    ColourBars,
    /// Chromium's built-in fake camera (a moving pattern, 640x480 at 20 fps unless the page's constraints win).
    Builtin,
    /// Publish no video.
    Off,
}

/// The fake microphone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FakeAudio {
    /// A steady sine at `hz` (-6 dBFS, 48 kHz mono, looped: `tone_wav`): the far end's audio energy rises
    /// steadily. The page turns the browser's noise suppression off, which would remove it.
    Tone { hz: u32 },
    /// Chromium's built-in fake microphone: it beeps irregularly, so energy rises in steps (NOTES.md pitfall 3).
    Builtin,
    /// Publish no audio.
    Off,
}

/// Which page a `ChromiumPage` runs.
#[derive(Clone, Debug, PartialEq)]
pub enum PageKind {
    /// `room.html`: a publisher and subscriber in the videoroom `ChromiumOptions::room`.
    Room,
    /// `sip.html`: a SIP user on Janus's SIP plugin, registered with this account; it calls
    /// (`ChromiumPage::request_call`) and answers (`ChromiumPage::request_answer`) with one PeerConnection.
    Sip(SipAccount),
}

/// The `register` request of a SIP page: what Janus's SIP plugin needs to register a user at the stack's Kamailio.
#[derive(Clone, Debug, PartialEq)]
pub struct SipAccount {
    /// The SIP URI registered (`sip:browser-user@callbox.test`).
    pub uri: String,
    /// The digest user when it is not the URI's (callbox's ephemeral `<expiry>:<user>`, with the `:` as `%3A`:
    /// sofia-sip takes no `:` there).
    pub authuser: Option<String>,
    /// Hex MD5 of `<auth user>:<realm>:<password>` (`ha1_secret`).
    pub ha1: Secret,
    /// Registrar, `sip:127.0.0.1:PORT`.
    pub proxy: String,
    /// Outbound proxy: always sent (without it Janus's SIP plugin resolves the domain and spins).
    pub outbound_proxy: String,
    /// Registration expiry (s).
    pub register_ttl: Option<u32>,
    /// The page answers incoming calls at once (default false: the test answers with `request_answer`).
    pub auto_answer: bool,
}

impl SipAccount {
    /// The account of a `register` request as callbox builds it (`Stack::janus_sip_registration`). `None` when it
    /// has no pre-hashed password, registrar or outbound proxy.
    pub fn from_register(register: &SipRegister) -> Option<SipAccount> {
        Some(SipAccount {
            uri: register.username.clone(),
            authuser: register.authuser.clone(),
            ha1: register.ha1_secret.clone()?,
            proxy: register.proxy.clone()?,
            outbound_proxy: register.outbound_proxy.clone()?,
            register_ttl: register.register_ttl,
            auto_answer: false,
        })
    }
}

/// How to start a page. `ChromiumOptions::for_stack` fills in the stack's Janus URL and a fresh Janus token.
#[derive(Clone, Debug)]
pub struct ChromiumOptions {
    /// Janus WebSocket URL, `ws://127.0.0.1:PORT` (`Stack::janus_ws_url`).
    pub janus_url: String,
    /// Janus signed token (`Stack::janus_token`); empty: none.
    pub token: Secret,
    /// Numeric room id.
    pub room: u64,
    /// Room PIN (sent with both joins; empty: none).
    pub pin: Secret,
    /// The display the page publishes (a browser is a guest: any plain name; appliances publish JSON there).
    pub display: String,
    /// The page leaves the room (the SIP page: its Janus session) by itself this long after loading (rounded up
    /// to whole seconds).
    pub leave_after: Option<Duration>,
    /// The page `create`s the room first (427 "already exists" is fine). Default false: the test creates it.
    pub create_room: bool,
    /// The videoroom admin key the page's `create` carries (empty: none; `for_stack` gives the stack's).
    pub room_admin_key: Secret,
    pub video: FakeVideo,
    pub audio: FakeAudio,
    /// How often the page prints a stats line (default 1 s).
    pub stats_interval: Duration,
    /// Where the page's temp dir goes (default: the system temp dir).
    pub parent_dir: Option<PathBuf>,
    /// Keep the page's temp dir after drop (default: `CALLBOX_KEEP_STACK=1`; always kept when panicking).
    pub keep_dir: bool,
    /// More Chromium flags, after the standard ones.
    pub extra_args: Vec<String>,
    /// Also publish a second video (the fake camera again) described as a screen share (`"screen"`).
    pub screen_share: bool,
    /// The page: the videoroom page (`new`, `for_stack`) or the SIP page (`sip_for_stack`).
    pub page: PageKind,
}

impl ChromiumOptions {
    /// A page joining `room` (PIN `pin`) at `janus_url` as `display`: colour bars and a 700 Hz tone, stats each
    /// second, no room creation, no automatic leave.
    pub fn new(
        janus_url: impl Into<String>,
        token: Secret,
        room: u64,
        pin: Secret,
        display: impl Into<String>,
    ) -> Self {
        ChromiumOptions {
            janus_url: janus_url.into(),
            token,
            room,
            pin,
            display: display.into(),
            leave_after: None,
            create_room: false,
            room_admin_key: Secret::default(),
            video: FakeVideo::ColourBars,
            audio: FakeAudio::Tone { hz: 700 },
            stats_interval: Duration::from_secs(1),
            parent_dir: None,
            keep_dir: std::env::var("CALLBOX_KEEP_STACK").as_deref() == Ok("1"),
            extra_args: Vec::new(),
            screen_share: false,
            page: PageKind::Room,
        }
    }

    /// `new` for `stack`'s Janus with a Janus token of the stack valid for an hour.
    pub fn for_stack(stack: &Stack, room: u64, pin: &Secret, display: impl Into<String>) -> Self {
        let mut opts = ChromiumOptions::new(
            stack.janus_ws_url(),
            Secret::new(stack.janus_token(PAGE_TOKEN_TTL)),
            room,
            pin.clone(),
            display,
        );
        opts.room_admin_key = stack.room_admin_key().clone();
        opts
    }

    /// A SIP page for `stack`: `user` registered at its Kamailio with ephemeral credentials valid for an hour
    /// (derived as callbox derives them: `Stack::janus_sip_registration`), colour bars and a 700 Hz tone, stats
    /// each second; `display` (the page's name in logs) is `user`.
    pub fn sip_for_stack(stack: &Stack, user: &str) -> Result<Self, ChromiumError> {
        let registration = |reason: String| ChromiumError::Registration { name: user.to_string(), reason };
        let register = stack.janus_sip_registration(user, PAGE_TOKEN_TTL).map_err(|e| registration(e.to_string()))?;
        let account = SipAccount::from_register(&register)
            .ok_or_else(|| registration("no ha1_secret, proxy or outbound_proxy in the register request".into()))?;
        let mut opts = ChromiumOptions::for_stack(stack, 0, &Secret::new(""), user);
        opts.page = PageKind::Sip(account);
        Ok(opts)
    }

    /// The page's HTML and script file names.
    fn page_files(&self) -> (&'static str, &'static str) {
        match self.page {
            PageKind::Room => ("room.html", "room.js"),
            PageKind::Sip(_) => ("sip.html", "sip.js"),
        }
    }

    /// The page's `file://` URL for a page folder `dir` (contains the token, PIN or SIP secret: do not log it).
    fn page_url(&self, dir: &Path) -> String {
        if let PageKind::Sip(account) = &self.page {
            return self.sip_page_url(dir, account);
        }
        let mut query: Vec<(&str, String)> = vec![
            ("server", self.janus_url.clone()),
            ("room", self.room.to_string()),
            ("display", self.display.clone()),
            ("create", if self.create_room { "1" } else { "0" }.into()),
            ("logstats", self.stats_interval.as_millis().max(100).to_string()),
            ("control", CONTROL_FILE.into()),
        ];
        if !self.token.is_empty() {
            query.push(("token", self.token.expose().to_string()));
        }
        if !self.pin.is_empty() {
            query.push(("pin", self.pin.expose().to_string()));
        }
        if self.create_room && !self.room_admin_key.is_empty() {
            query.push(("adminkey", self.room_admin_key.expose().to_string()));
        }
        if let Some(after) = self.leave_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            query.push(("leaveafter", secs.max(1).to_string()));
        }
        if self.video == FakeVideo::Off {
            query.push(("video", "0".into()));
        }
        if self.audio == FakeAudio::Off {
            query.push(("audio", "0".into()));
        }
        if self.screen_share {
            query.push(("screen", "1".into()));
        }
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", percent_encode(v, false))).collect();
        format!("file://{}?{}", percent_encode(&dir.join("room.html").display().to_string(), true), query.join("&"))
    }

    /// `page_url` of the SIP page (see sip.js's header for the parameters).
    fn sip_page_url(&self, dir: &Path, account: &SipAccount) -> String {
        let mut query: Vec<(&str, String)> = vec![
            ("server", self.janus_url.clone()),
            ("display", self.display.clone()),
            ("logstats", self.stats_interval.as_millis().max(100).to_string()),
            ("control", CONTROL_FILE.into()),
            ("sipuser", account.uri.clone()),
            ("ha1", account.ha1.expose().to_string()),
            ("proxy", account.proxy.clone()),
            ("outboundproxy", account.outbound_proxy.clone()),
        ];
        if let Some(authuser) = &account.authuser {
            query.push(("authuser", authuser.clone()));
        }
        if let Some(ttl) = account.register_ttl {
            query.push(("regttl", ttl.to_string()));
        }
        if account.auto_answer {
            query.push(("autoanswer", "1".into()));
        }
        if !self.token.is_empty() {
            query.push(("token", self.token.expose().to_string()));
        }
        if let Some(after) = self.leave_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            query.push(("leaveafter", secs.max(1).to_string()));
        }
        if self.video == FakeVideo::Off {
            query.push(("video", "0".into()));
        }
        if self.audio == FakeAudio::Off {
            query.push(("audio", "0".into()));
        }
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", percent_encode(v, false))).collect();
        format!("file://{}?{}", percent_encode(&dir.join("sip.html").display().to_string(), true), query.join("&"))
    }
}

/// The control file beside the page (see room.js `control`).
const CONTROL_FILE: &str = "control.json";

/// Percent-encodes everything but RFC 3986 unreserved characters (and `/` when `keep_slash`).
fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where the page is (`phase` of room.js and sip.js).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PagePhase {
    Init,
    /// Janus session up.
    Connected,
    /// SIP page: the `register` request is out.
    Registering,
    /// SIP page: registered (calls are in `PageStats::sip`).
    Registered,
    /// Joined the room as a publisher.
    Joined,
    /// Offer sent, publisher PeerConnection not up yet.
    Publishing,
    /// Publisher PeerConnection up.
    Published,
    /// Left the room (session destroyed).
    Left,
    /// Failed: `PageStats::error` says why.
    Error,
    Other(String),
}

impl PagePhase {
    fn parse(s: &str) -> PagePhase {
        match s {
            "init" => PagePhase::Init,
            "connected" => PagePhase::Connected,
            "registering" => PagePhase::Registering,
            "registered" => PagePhase::Registered,
            "joined" => PagePhase::Joined,
            "publishing" => PagePhase::Publishing,
            "published" => PagePhase::Published,
            "left" => PagePhase::Left,
            "error" => PagePhase::Error,
            other => PagePhase::Other(other.to_string()),
        }
    }
}

/// The `kind` of a media stream as the page's statistics report it (anything else kept as text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageMediaKind {
    Audio,
    Video,
    Other(String),
}

impl PageMediaKind {
    fn parse(s: &str) -> PageMediaKind {
        match s {
            "audio" => PageMediaKind::Audio,
            "video" => PageMediaKind::Video,
            other => PageMediaKind::Other(other.to_string()),
        }
    }
}

/// One of the other publishers the page knows from the room's events.
#[derive(Clone, Debug, PartialEq)]
pub struct RoomPublisher {
    pub id: u64,
    pub display: Option<String>,
    /// Number of streams it publishes.
    pub streams: u64,
}

impl RoomPublisher {
    /// See `display_names`.
    pub fn is_from(&self, who: &str) -> bool {
        self.display.as_deref().is_some_and(|d| display_names(d, who))
    }
}

/// `outbound-rtp` of one of the page's own published tracks.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboundStats {
    pub mid: String,
    pub kind: PageMediaKind,
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub frames_encoded: Option<u64>,
    pub frame_width: Option<u64>,
    pub frame_height: Option<u64>,
    pub frames_per_second: Option<f64>,
    pub encoder_implementation: Option<String>,
    pub quality_limitation_reason: Option<String>,
    /// The codec getStats reports for it (SIP page only): `mimeType`, `payloadType`, `sdpFmtpLine`.
    pub rtp_codec: RtpCodec,
}

/// A getStats `codec` entry: what an RTP stream is really sent or received with.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RtpCodec {
    /// `video/H264`, `video/VP8`, `audio/opus`.
    pub mime_type: Option<String>,
    pub payload_type: Option<u64>,
    /// `level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f`.
    pub sdp_fmtp_line: Option<String>,
}

impl RtpCodec {
    fn parse(v: &Value) -> RtpCodec {
        RtpCodec {
            mime_type: text(v, "codecMime"),
            payload_type: uint(v, "payloadType"),
            sdp_fmtp_line: text(v, "sdpFmtpLine"),
        }
    }

    /// The H.264 `profile-level-id` of the fmtp line, lower case.
    pub fn profile_level_id(&self) -> Option<String> {
        self.sdp_fmtp_line
            .as_deref()?
            .split(';')
            .find_map(|p| p.trim().strip_prefix("profile-level-id=").map(|id| id.trim().to_ascii_lowercase()))
    }

    /// `video/H264 PT 102 42e01f` (what a failure message or the test's log shows).
    pub fn describe(&self) -> String {
        let mut s = self.mime_type.clone().unwrap_or_else(|| "?".into());
        if let Some(pt) = self.payload_type {
            s.push_str(&format!(" PT {pt}"));
        }
        if let Some(fmtp) = &self.sdp_fmtp_line {
            s.push_str(&format!(" [{fmtp}]"));
        }
        s
    }
}

/// `inbound-rtp` of one subscribed remote track, labelled with its feed (from the subscriber's stream list).
#[derive(Clone, Debug, PartialEq)]
pub struct InboundStats {
    pub mid: String,
    pub kind: PageMediaKind,
    /// The publisher's id in the room.
    pub feed: Option<u64>,
    /// The publisher's display (`feed_display`).
    pub display: Option<String>,
    /// False once Janus marked the stream inactive (its publisher left).
    pub active: bool,
    pub codec: Option<String>,
    pub packets_received: u64,
    pub packets_lost: i64,
    pub bytes_received: u64,
    pub jitter: Option<f64>,
    pub frames_decoded: Option<u64>,
    pub frames_dropped: Option<u64>,
    pub key_frames_decoded: Option<u64>,
    pub frame_width: Option<u64>,
    pub frame_height: Option<u64>,
    pub frames_per_second: Option<f64>,
    pub audio_level: Option<f64>,
    pub total_audio_energy: Option<f64>,
    pub total_samples_received: Option<u64>,
    pub concealed_samples: Option<u64>,
    pub decoder_implementation: Option<String>,
    /// The codec getStats reports for it (SIP page only; the room page labels `codec` from Janus's stream list).
    pub rtp_codec: RtpCodec,
}

impl InboundStats {
    /// See `display_names`.
    pub fn is_from(&self, who: &str) -> bool {
        self.display.as_deref().is_some_and(|d| display_names(d, who))
    }
}

/// What one remote `<video>` shows: its size and `row.len()` pixels spread evenly along its middle row.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoProbe {
    pub mid: String,
    pub feed: Option<u64>,
    pub display: Option<String>,
    pub width: u64,
    pub height: u64,
    pub row: Vec<[u8; 3]>,
}

impl VideoProbe {
    /// See `display_names`.
    pub fn is_from(&self, who: &str) -> bool {
        self.display.as_deref().is_some_and(|d| display_names(d, who))
    }

    /// The row shows `COLOUR_BARS_RGB` (8 points, each channel within `tolerance`).
    pub fn shows_colour_bars(&self, tolerance: u8) -> bool {
        self.row.len() == COLOUR_BARS_RGB.len()
            && self
                .row
                .iter()
                .zip(COLOUR_BARS_RGB)
                .all(|(px, want)| px.iter().zip(want).all(|(a, b)| a.abs_diff(b) <= tolerance))
    }
}

/// Where a SIP page's call is (`call.state` of sip.js).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SipCallState {
    /// Our INVITE is out (made by `request_call`).
    Calling,
    /// 180 from the far end.
    Ringing,
    /// A call came in and waits for `request_answer`.
    Incoming,
    /// Our answer is being made and sent.
    Answering,
    /// 200 OK: the SIP dialog is up (the PeerConnection is up when `SipCall::pc_up`).
    Accepted,
    /// Our hang-up (or decline) is out.
    HangingUp,
    /// The call is over (`SipCall::hangup_code` says how).
    HungUp,
    Other(String),
}

impl SipCallState {
    fn parse(s: &str) -> SipCallState {
        match s {
            "calling" => SipCallState::Calling,
            "ringing" => SipCallState::Ringing,
            "incoming" => SipCallState::Incoming,
            "answering" => SipCallState::Answering,
            "accepted" => SipCallState::Accepted,
            "hangingup" | "declining" => SipCallState::HangingUp,
            "hungup" => SipCallState::HungUp,
            other => SipCallState::Other(other.to_string()),
        }
    }
}

/// A SIP page's current or last call.
#[derive(Clone, Debug, PartialEq)]
pub struct SipCall {
    /// 1 for the page's first call (made or received), then 2, ...
    pub seq: u64,
    /// True when the page made it.
    pub outgoing: bool,
    /// The far end's URI: what the page called, or the caller as the plugin reports it.
    pub peer: String,
    pub state: SipCallState,
    /// The PeerConnection to Janus is up (ICE and DTLS).
    pub pc_up: bool,
    /// The PeerConnection's last ICE state.
    pub ice: Option<String>,
    pub hangup_code: Option<u64>,
    pub hangup_reason: Option<String>,
    /// The video formats of the page's own SDP (offer or answer), `"PT NAME[ profile-level-id][ pmN]"` joined by
    /// `, ` (no rtx, red, FEC).
    pub local_video: Option<String>,
    /// The same of the far end's SDP (as Janus gave it to the page).
    pub remote_video: Option<String>,
}

/// The SIP page's registration and call (`sip` of sip.js's stats).
#[derive(Clone, Debug, PartialEq)]
pub struct SipPageState {
    pub registered: bool,
    /// The registered URI as the plugin reports it.
    pub username: Option<String>,
    /// Calls started so far (made or received).
    pub calls: u64,
    /// Calls Janus's SIP plugin turned away itself (486) because the page's handle was still busy: the plugin
    /// stays busy for up to about a second after a call ended (its media relay thread polls once a second).
    pub missed_calls: u64,
    pub call: Option<SipCall>,
    /// Selected ICE pair of the call's PeerConnection, `"addr:port type -> addr:port type"`.
    pub path: Option<String>,
}

impl SipPageState {
    fn parse(v: &Value) -> SipPageState {
        let call = v.get("call").filter(|c| c.is_object()).map(|c| SipCall {
            seq: uint(c, "seq").unwrap_or(0),
            outgoing: text(c, "direction").as_deref() == Some("outgoing"),
            peer: text(c, "peer").unwrap_or_default(),
            state: SipCallState::parse(&text(c, "state").unwrap_or_default()),
            pc_up: flag(c, "pcUp"),
            ice: text(c, "ice"),
            hangup_code: uint(c, "hangupCode"),
            hangup_reason: text(c, "hangupReason"),
            local_video: text(c, "localVideo"),
            remote_video: text(c, "remoteVideo"),
        });
        SipPageState {
            registered: flag(v, "registered"),
            username: text(v, "username"),
            calls: uint(v, "calls").unwrap_or(0),
            missed_calls: uint(v, "missedCalls").unwrap_or(0),
            call,
            path: text(v, "path"),
        }
    }

    /// Call number `seq`, when it is the page's current or last call.
    pub fn call_number(&self, seq: u64) -> Option<&SipCall> {
        self.call.as_ref().filter(|c| c.seq == seq)
    }

    /// The call's PeerConnection is up on a selected pair whose addresses are both in 127.0.0.0/8.
    pub fn ice_on_loopback(&self) -> bool {
        pair_on_loopback(self.path.as_deref())
    }
}

/// A selected pair `"addr:port type -> addr:port type"` joins two addresses in 127.0.0.0/8.
fn pair_on_loopback(path: Option<&str>) -> bool {
    path.is_some_and(|p| {
        let addrs: Vec<&str> = p
            .split_whitespace()
            .filter(|w| w.contains(':'))
            .filter_map(|w| w.rsplit_once(':'))
            .map(|(a, _)| a)
            .collect();
        addrs.len() == 2 && addrs.iter().all(|a| a.starts_with("127."))
    })
}

/// One `CALLBOX_STATS` line of the page (room.js's or sip.js's `callboxStats()` plus `probe`).
#[derive(Clone, Debug, PartialEq)]
pub struct PageStats {
    /// The page's clock (ms since the epoch).
    pub t_ms: u64,
    pub phase: PagePhase,
    pub error: Option<String>,
    pub room: Option<u64>,
    pub display: String,
    /// The page's own publisher id in the room.
    pub my_id: Option<u64>,
    pub publisher_up: bool,
    pub subscriber_up: bool,
    pub publishers: Vec<RoomPublisher>,
    pub outbound: Vec<OutboundStats>,
    pub inbound: Vec<InboundStats>,
    /// Selected ICE pair of the publisher PeerConnection, `"addr:port type -> addr:port type"`.
    pub publisher_path: Option<String>,
    pub subscriber_path: Option<String>,
    pub probe: Vec<VideoProbe>,
    /// The SIP page's registration and call (`None` for the room page).
    pub sip: Option<SipPageState>,
}

/// Whether a videoroom display names `who`: the plain display (a browser's), or the `id` or `name` of the JSON
/// display callbox appliances publish (`{"id":"<user>","name":"<display>"}`); for the SIP page's streams, labelled
/// with the far end's URI, the URI's user (`sip:door-b@callbox.test`, also `"Door" <sip:door-b@...>`).
pub fn display_names(display: &str, who: &str) -> bool {
    if display == who {
        return true;
    }
    if let Some(user) = sip_uri_user(display) {
        return user == who;
    }
    match serde_json::from_str::<Value>(display) {
        Ok(v) => [v.get("id"), v.get("name")].into_iter().flatten().any(|x| x.as_str() == Some(who)),
        Err(_) => false,
    }
}

/// The user part of a SIP URI, also inside `<...>` with a display name before it.
fn sip_uri_user(s: &str) -> Option<&str> {
    let uri = match (s.find('<'), s.rfind('>')) {
        (Some(open), Some(close)) if open < close => &s[open + 1..close],
        _ => s.trim(),
    };
    let rest = uri.strip_prefix("sip:").or_else(|| uri.strip_prefix("sips:"))?;
    rest.split_once('@').map(|(user, _)| user)
}

impl PageStats {
    /// The active inbound video from `who` (the one with the most decoded frames if several).
    pub fn video_from(&self, who: &str) -> Option<&InboundStats> {
        self.inbound_from(who, PageMediaKind::Video).into_iter().max_by_key(|s| s.frames_decoded.unwrap_or(0))
    }

    /// The active inbound audio from `who` (the one with the most samples if several).
    pub fn audio_from(&self, who: &str) -> Option<&InboundStats> {
        self.inbound_from(who, PageMediaKind::Audio).into_iter().max_by_key(|s| s.total_samples_received.unwrap_or(0))
    }

    fn inbound_from<'a>(&'a self, who: &str, kind: PageMediaKind) -> Vec<&'a InboundStats> {
        self.inbound.iter().filter(|s| s.active && s.kind == kind && s.is_from(who)).collect()
    }

    /// The room publisher `who`, if the page knows it.
    pub fn publisher(&self, who: &str) -> Option<&RoomPublisher> {
        self.publishers.iter().find(|p| p.is_from(who))
    }

    /// `who` is in the page's publisher list or one of its active inbound streams is.
    pub fn has_feed_from(&self, who: &str) -> bool {
        self.publisher(who).is_some() || self.inbound.iter().any(|s| s.active && s.is_from(who))
    }

    /// The probe of the remote video from `who`.
    pub fn probe_from(&self, who: &str) -> Option<&VideoProbe> {
        self.probe.iter().find(|p| p.is_from(who) && p.width > 0)
    }

    /// The outbound stats of the page's own `kind` track.
    pub fn outbound(&self, kind: PageMediaKind) -> Option<&OutboundStats> {
        self.outbound.iter().find(|s| s.kind == kind)
    }

    /// Both PeerConnections are up and every address of their selected ICE pairs is in 127.0.0.0/8 (the SIP
    /// page: its one PeerConnection).
    pub fn ice_on_loopback(&self) -> bool {
        match &self.sip {
            Some(sip) => sip.ice_on_loopback(),
            None => {
                pair_on_loopback(self.publisher_path.as_deref()) && pair_on_loopback(self.subscriber_path.as_deref())
            }
        }
    }

    /// The SIP page's call number `seq`, when it is its current or last call.
    pub fn sip_call(&self, seq: u64) -> Option<&SipCall> {
        self.sip.as_ref().and_then(|s| s.call_number(seq))
    }

    /// One line for failure messages: phase, publishers (SIP page: registration and call), and per inbound stream
    /// its counters.
    pub fn summary(&self) -> String {
        if let Some(sip) = &self.sip {
            return self.sip_summary(sip);
        }
        let mut s = format!(
            "phase {:?}{} my_id {:?} publisher_up {} subscriber_up {}; publishers [{}]; inbound [",
            self.phase,
            self.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default(),
            self.my_id,
            self.publisher_up,
            self.subscriber_up,
            self.publishers
                .iter()
                .map(|p| format!("{} {:?}", p.id, p.display.as_deref().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let inbound: Vec<String> = self
            .inbound
            .iter()
            .map(|i| {
                let who = i.display.as_deref().unwrap_or("?");
                let active = if i.active { "" } else { " inactive" };
                match i.kind {
                    PageMediaKind::Video => format!(
                        "{who:?} video{active} {} frames {}x{} {} pkts",
                        i.frames_decoded.unwrap_or(0),
                        i.frame_width.unwrap_or(0),
                        i.frame_height.unwrap_or(0),
                        i.packets_received
                    ),
                    _ => format!(
                        "{who:?} {:?}{active} {} pkts {} samples energy {:.3}",
                        i.kind,
                        i.packets_received,
                        i.total_samples_received.unwrap_or(0),
                        i.total_audio_energy.unwrap_or(0.0)
                    ),
                }
            })
            .collect();
        s.push_str(&inbound.join(", "));
        s.push(']');
        s
    }

    fn sip_summary(&self, sip: &SipPageState) -> String {
        let call = sip
            .call
            .as_ref()
            .map(|c| {
                format!(
                    "call {} {} {:?} {:?} pc_up {} ice {:?} hangup {:?} {:?}; local video [{}]; remote video [{}]",
                    c.seq,
                    if c.outgoing { "to" } else { "from" },
                    c.peer,
                    c.state,
                    c.pc_up,
                    c.ice,
                    c.hangup_code,
                    c.hangup_reason,
                    c.local_video.as_deref().unwrap_or("-"),
                    c.remote_video.as_deref().unwrap_or("-"),
                )
            })
            .unwrap_or_else(|| "no call".into());
        let streams = |dir: &str, list: Vec<String>| format!("{dir} [{}]", list.join(", "));
        let outbound = self
            .outbound
            .iter()
            .map(|o| {
                format!(
                    "{:?} {} pkts {} frames {}",
                    o.kind,
                    o.packets_sent,
                    o.frames_encoded.unwrap_or(0),
                    o.rtp_codec.describe()
                )
            })
            .collect();
        let inbound = self
            .inbound
            .iter()
            .map(|i| match i.kind {
                PageMediaKind::Video => format!(
                    "video {} pkts {} frames {}x{} {}",
                    i.packets_received,
                    i.frames_decoded.unwrap_or(0),
                    i.frame_width.unwrap_or(0),
                    i.frame_height.unwrap_or(0),
                    i.rtp_codec.describe()
                ),
                _ => format!(
                    "{:?} {} pkts {} samples energy {:.3} {}",
                    i.kind,
                    i.packets_received,
                    i.total_samples_received.unwrap_or(0),
                    i.total_audio_energy.unwrap_or(0.0),
                    i.rtp_codec.describe()
                ),
            })
            .collect();
        format!(
            "phase {:?}{} registered {} ({} calls, {} missed); {call}; {}; {}; path {:?}",
            self.phase,
            self.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default(),
            sip.registered,
            sip.calls,
            sip.missed_calls,
            streams("outbound", outbound),
            streams("inbound", inbound),
            sip.path
        )
    }

    /// Parses the JSON of a stats line (`None` if it is not one: no `phase`).
    pub fn from_json(v: &Value) -> Option<PageStats> {
        let phase = PagePhase::parse(v.get("phase")?.as_str()?);
        let list = |key: &str| v.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        Some(PageStats {
            t_ms: uint(v, "t").unwrap_or(0),
            phase,
            error: text(v, "error"),
            room: uint(v, "room"),
            display: text(v, "display").unwrap_or_default(),
            my_id: uint(v, "myId"),
            publisher_up: flag(v, "publisherUp"),
            subscriber_up: flag(v, "subscriberUp"),
            publishers: list("publishers")
                .iter()
                .filter_map(|p| {
                    Some(RoomPublisher {
                        id: uint(p, "id")?,
                        display: text(p, "display"),
                        streams: uint(p, "streams").unwrap_or(0),
                    })
                })
                .collect(),
            outbound: list("outbound")
                .iter()
                .map(|o| OutboundStats {
                    mid: text(o, "mid").unwrap_or_default(),
                    kind: PageMediaKind::parse(&text(o, "kind").unwrap_or_default()),
                    packets_sent: uint(o, "packetsSent").unwrap_or(0),
                    bytes_sent: uint(o, "bytesSent").unwrap_or(0),
                    frames_encoded: uint(o, "framesEncoded"),
                    frame_width: uint(o, "frameWidth"),
                    frame_height: uint(o, "frameHeight"),
                    frames_per_second: float(o, "framesPerSecond"),
                    encoder_implementation: text(o, "encoderImplementation"),
                    quality_limitation_reason: text(o, "qualityLimitationReason"),
                    rtp_codec: RtpCodec::parse(o),
                })
                .collect(),
            inbound: list("inbound")
                .iter()
                .map(|i| InboundStats {
                    mid: text(i, "mid").unwrap_or_default(),
                    kind: PageMediaKind::parse(&text(i, "kind").unwrap_or_default()),
                    feed: uint(i, "feed"),
                    display: text(i, "display"),
                    active: i.get("active").and_then(Value::as_bool).unwrap_or(true),
                    codec: text(i, "codec"),
                    packets_received: uint(i, "packetsReceived").unwrap_or(0),
                    packets_lost: i.get("packetsLost").and_then(Value::as_i64).unwrap_or(0),
                    bytes_received: uint(i, "bytesReceived").unwrap_or(0),
                    jitter: float(i, "jitter"),
                    frames_decoded: uint(i, "framesDecoded"),
                    frames_dropped: uint(i, "framesDropped"),
                    key_frames_decoded: uint(i, "keyFramesDecoded"),
                    frame_width: uint(i, "frameWidth"),
                    frame_height: uint(i, "frameHeight"),
                    frames_per_second: float(i, "framesPerSecond"),
                    audio_level: float(i, "audioLevel"),
                    total_audio_energy: float(i, "totalAudioEnergy"),
                    total_samples_received: uint(i, "totalSamplesReceived"),
                    concealed_samples: uint(i, "concealedSamples"),
                    decoder_implementation: text(i, "decoderImplementation"),
                    rtp_codec: RtpCodec::parse(i),
                })
                .collect(),
            publisher_path: text(v, "publisherPath"),
            subscriber_path: text(v, "subscriberPath"),
            probe: list("probe")
                .iter()
                .map(|p| VideoProbe {
                    mid: text(p, "mid").unwrap_or_default(),
                    feed: uint(p, "feed"),
                    display: text(p, "display"),
                    width: uint(p, "width").unwrap_or(0),
                    height: uint(p, "height").unwrap_or(0),
                    row: p
                        .get("row")
                        .and_then(Value::as_array)
                        .map(|row| row.iter().map(pixel).collect())
                        .unwrap_or_default(),
                })
                .collect(),
            sip: v.get("sip").filter(|x| x.is_object()).map(SipPageState::parse),
        })
    }
}

/// A non-negative integer field (a float is truncated: some counters come as doubles).
fn uint(v: &Value, key: &str) -> Option<u64> {
    let x = v.get(key)?;
    x.as_u64().or_else(|| x.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64))
}

fn float(v: &Value, key: &str) -> Option<f64> {
    v.get(key)?.as_f64()
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)?.as_str().map(str::to_string)
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn pixel(v: &Value) -> [u8; 3] {
    let c = |i: usize| v.get(i).and_then(Value::as_u64).map(|x| u8::try_from(x.min(255)).unwrap_or(255)).unwrap_or(0);
    [c(0), c(1), c(2)]
}

/// Two snapshots showing media from one publisher flowing: the later one has more decoded video frames, audio
/// packets and audio samples than the earlier.
#[derive(Clone, Debug)]
pub struct MediaFlow {
    pub who: String,
    pub before: PageStats,
    pub after: PageStats,
}

impl MediaFlow {
    /// The inbound video from `who` in `after` (present by construction).
    pub fn video(&self) -> Option<&InboundStats> {
        self.after.video_from(&self.who)
    }

    /// The inbound audio from `who` in `after` (present by construction).
    pub fn audio(&self) -> Option<&InboundStats> {
        self.after.audio_from(&self.who)
    }
}

/// What the log reader saw.
#[derive(Default)]
struct Seen {
    latest: Option<PageStats>,
    /// Stats lines parsed so far.
    snapshots: u64,
    /// `CALLBOX ...` lines of the page.
    events: VecDeque<String>,
    /// Other lines (and stats lines that did not parse).
    tail: VecDeque<String>,
}

impl Seen {
    fn line(&mut self, line: &str) {
        if let Some(json) = console_payload(line, "CALLBOX_STATS ") {
            match serde_json::from_str::<Value>(json).ok().as_ref().and_then(PageStats::from_json) {
                Some(stats) => {
                    self.latest = Some(stats);
                    self.snapshots += 1;
                }
                None => push_bounded(&mut self.tail, cut(line), TAIL_LINES_KEPT),
            }
        } else if let Some(event) = console_payload(line, "CALLBOX ") {
            push_bounded(&mut self.events, event.to_string(), EVENTS_KEPT);
        } else if !line.trim().is_empty() {
            push_bounded(&mut self.tail, cut(line), TAIL_LINES_KEPT);
        }
    }
}

/// The console message after `marker` in a Chromium log line
/// `[pid:tid:MMDD/HHMMSS.us:INFO:CONSOLE:63] "MARKER...", source: file:///.../room.js (63)`.
fn console_payload<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let quoted = format!("\"{marker}");
    let start = line.find(&quoted)? + quoted.len();
    let rest = &line[start..];
    Some(rest.rfind("\", source: ").map(|end| &rest[..end]).unwrap_or_else(|| rest.trim_end().trim_end_matches('"')))
}

fn cut(line: &str) -> String {
    if line.len() <= TAIL_LINE_MAX {
        return line.to_string();
    }
    let mut end = TAIL_LINE_MAX;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

fn push_bounded(q: &mut VecDeque<String>, line: String, max: usize) {
    if q.len() >= max {
        q.pop_front();
    }
    q.push_back(line);
}

/// Follows Chromium's log file line by line into `seen` until `stop` is set, then reads what is left.
fn follow_log(path: &Path, seen: &Mutex<Seen>, stop: &AtomicBool) {
    let mut file: Option<File> = None;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        if file.is_none() {
            file = File::open(path).ok();
        }
        let mut got = 0;
        if let Some(f) = file.as_mut() {
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got += n;
                pending.extend_from_slice(&buf[..n]);
                while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=nl).collect();
                    crate::baresip_lock(seen).line(String::from_utf8_lossy(&line).trim_end());
                }
            }
        }
        if stopping {
            if !pending.is_empty() {
                crate::baresip_lock(seen).line(String::from_utf8_lossy(&pending).trim_end());
            }
            return;
        }
        if got == 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A headless Chromium on the test page, joined to a videoroom. See the module comment.
pub struct ChromiumPage {
    name: String,
    dir: PathBuf,
    keep_dir: bool,
    process: ServerProcess,
    seen: Arc<Mutex<Seen>>,
    stop_reader: Arc<AtomicBool>,
    reader: Mutex<Option<std::thread::JoinHandle<()>>>,
    control_seq: AtomicU64,
    stopped: AtomicBool,
}

impl ChromiumPage {
    /// Makes the page's temp dir (page files, profile, fake media) and starts Chromium on the page in its own
    /// process group. Returns at once: wait with `wait_until` / `wait_published`. Must be called inside a tokio
    /// runtime, on a thread that lives as long as the page (not in `spawn_blocking`): Chromium gets SIGKILL when
    /// the thread that started it ends.
    pub fn start(opts: ChromiumOptions) -> Result<ChromiumPage, ChromiumError> {
        let name = opts.display.clone();
        let harness = |source| ChromiumError::Harness { name: name.clone(), source };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ChromiumError::NoRuntime { name });
        }
        let src = page_source_dir();
        let (html, script) = opts.page_files();
        for (path, package) in [
            (PathBuf::from(CHROMIUM), "chromium"),
            (PathBuf::from(JANUS_JS), "libjs-janus-gateway"),
            (PathBuf::from(ADAPTER_JS), "libjs-webrtc-adapter"),
            (src.join(html), "(this repository)"),
            (src.join(script), "(this repository)"),
        ] {
            if !path.exists() {
                return Err(ChromiumError::Missing { name, path, package });
            }
        }

        let n = PAGE_COUNT.fetch_add(1, Ordering::Relaxed);
        let parent = opts.parent_dir.clone().unwrap_or_else(std::env::temp_dir);
        let dir = parent.join(format!(
            "callbox-chromium-{}-{n}-{}",
            std::process::id(),
            Alphanumeric.sample_string(&mut rand::rng(), 6)
        ));
        let home = dir.join("home");
        let profile = dir.join("profile");
        for d in [&dir, &home, &profile] {
            std::fs::create_dir_all(d)
                .map_err(|source| harness(HarnessError::Io { what: "cannot create", path: d.clone(), source }))?;
        }
        let copy = |from: PathBuf, to: &str| {
            std::fs::copy(&from, dir.join(to))
                .map(|_| ())
                .map_err(|source| harness(HarnessError::Io { what: "cannot copy", path: from, source }))
        };
        copy(src.join(html), html)?;
        copy(src.join(script), script)?;
        copy(PathBuf::from(JANUS_JS), "janus.js")?;
        copy(PathBuf::from(ADAPTER_JS), "adapter.js")?;
        write_file(&dir.join(CONTROL_FILE), br#"{"seq":0}"#).map_err(harness)?;

        let mut args: Vec<String> = vec![
            // Nothing of Chromium's (crash reports, caches, NSS db, dconf) lands in the real home.
            format!("HOME={}", home.display()),
            format!("XDG_CONFIG_HOME={}", home.join(".config").display()),
            format!("XDG_CACHE_HOME={}", home.join(".cache").display()),
            CHROMIUM.to_string(),
        ];
        args.extend(CHROMIUM_FLAGS.iter().map(|f| f.to_string()));
        args.push(format!("--user-data-dir={}", profile.display()));
        if opts.video == FakeVideo::ColourBars {
            let y4m = dir.join("bars.y4m");
            write_file(&y4m, &colour_bars_y4m(320, 240, 30, 15)).map_err(harness)?;
            args.push(format!("--use-file-for-fake-video-capture={}", y4m.display()));
        }
        if let FakeAudio::Tone { hz } = opts.audio {
            let wav = dir.join("tone.wav");
            write_file(&wav, &tone_wav(hz, 2, 48_000)).map_err(harness)?;
            args.push(format!("--use-file-for-fake-audio-capture={}", wav.display()));
        }
        args.extend(opts.extra_args.iter().cloned());
        args.push(opts.page_url(&dir));

        let log = dir.join("chromium.log");
        let process = ServerProcess::spawn(&format!("chromium-{name}"), "env", &args, &dir, log.clone(), LOG_LIMIT)
            .map_err(harness)?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop_reader = Arc::new(AtomicBool::new(false));
        let reader = {
            let (seen, stop, path) = (seen.clone(), stop_reader.clone(), log.clone());
            std::thread::Builder::new()
                .name(format!("chromium-log-{n}"))
                .spawn(move || follow_log(&path, &seen, &stop))
                .map_err(|source| harness(HarnessError::Io { what: "cannot start the reader of", path: log, source }))?
        };
        let on = match &opts.page {
            PageKind::Room => format!("room {}", opts.room),
            PageKind::Sip(account) => format!("SIP user {}", account.uri),
        };
        log::info!("chromium page {name}: pid {}, {on}, dir {}", process.pid(), dir.display());
        Ok(ChromiumPage {
            name,
            dir,
            keep_dir: opts.keep_dir,
            process,
            seen,
            stop_reader,
            reader: Mutex::new(Some(reader)),
            control_seq: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        })
    }

    /// The display it joined with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its temp dir (page, profile, media, `chromium.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Chromium's log (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// Chromium's pid, also its process group id.
    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// The latest stats snapshot, if any arrived.
    pub fn latest(&self) -> Option<PageStats> {
        crate::baresip_lock(&self.seen).latest.clone()
    }

    /// How many stats snapshots arrived.
    pub fn snapshot_count(&self) -> u64 {
        crate::baresip_lock(&self.seen).snapshots
    }

    /// The page's last event lines (`CALLBOX ...`: joins, subscriptions, failures).
    pub fn page_events(&self) -> Vec<String> {
        crate::baresip_lock(&self.seen).events.iter().cloned().collect()
    }

    /// The last lines of Chromium's stderr other than the page's stats and events.
    pub fn stderr_tail(&self) -> String {
        crate::baresip_lock(&self.seen).tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// For failure messages: the last stats, the page's events and Chromium's stderr tail.
    pub fn context(&self) -> String {
        let seen = crate::baresip_lock(&self.seen);
        let latest = seen.latest.as_ref().map(PageStats::summary).unwrap_or_else(|| "none".into());
        let events = seen.events.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n");
        let tail = seen.tail.iter().rev().take(40).rev().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n");
        format!(
            "last stats ({} snapshots): {latest}\npage events:\n{events}\nchromium stderr (tail):\n{tail}\nlog {}",
            seen.snapshots,
            self.process.log_path().display()
        )
    }

    /// Ok while Chromium runs and the page has not failed.
    pub fn check(&self) -> Result<(), ChromiumError> {
        self.check_process()?;
        match self.latest() {
            Some(s) if s.phase == PagePhase::Error => Err(ChromiumError::PageFailed {
                name: self.name.clone(),
                error: s.error.unwrap_or_default(),
                context: self.context(),
            }),
            _ => Ok(()),
        }
    }

    fn check_process(&self) -> Result<(), ChromiumError> {
        if self.stopped.load(Ordering::SeqCst) {
            return Err(ChromiumError::Exited {
                name: self.name.clone(),
                status: "stopped by the test".into(),
                context: self.context(),
            });
        }
        match self.process.check() {
            Ok(()) => Ok(()),
            Err(HarnessError::Exited { status, .. }) => {
                Err(ChromiumError::Exited { name: self.name.clone(), status, context: self.context() })
            }
            Err(source) => Err(ChromiumError::Harness { name: self.name.clone(), source }),
        }
    }

    /// Waits for a stats snapshot that `pred` accepts and returns it. Fails at once when Chromium exits or the
    /// page fails (a snapshot in phase `Error` that `pred` rejects), and after `timeout`; the error names `what`
    /// (`"decoding bob's video"`) and carries the context.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&PageStats) -> bool,
    ) -> Result<PageStats, ChromiumError> {
        let deadline = Instant::now() + timeout;
        let mut checked = None;
        loop {
            let fresh = {
                let seen = crate::baresip_lock(&self.seen);
                if checked == Some(seen.snapshots) {
                    None
                } else {
                    checked = Some(seen.snapshots);
                    seen.latest.clone()
                }
            };
            if let Some(stats) = fresh {
                if pred(&stats) {
                    return Ok(stats);
                }
                if stats.phase == PagePhase::Error {
                    return Err(ChromiumError::PageFailed {
                        name: self.name.clone(),
                        error: stats.error.unwrap_or_default(),
                        context: self.context(),
                    });
                }
            }
            self.check_process()?;
            if Instant::now() >= deadline {
                return Err(ChromiumError::Timeout {
                    name: self.name.clone(),
                    what: what.to_string(),
                    timeout,
                    context: self.context(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the page publishes: publisher PeerConnection up and packets sent on every published track.
    pub async fn wait_published(&self, timeout: Duration) -> Result<PageStats, ChromiumError> {
        self.wait_until("published (publisher PeerConnection up, packets sent)", timeout, |s| {
            s.phase == PagePhase::Published
                && s.publisher_up
                && !s.outbound.is_empty()
                && s.outbound.iter().all(|o| o.packets_sent > 0)
        })
        .await
    }

    /// Waits until the page decodes `who`'s video (frames with a size) and receives its audio, then until a later
    /// snapshot shows more decoded frames, audio packets and audio samples from `who` than that one.
    pub async fn wait_media_from(&self, who: &str, timeout: Duration) -> Result<MediaFlow, ChromiumError> {
        let deadline = Instant::now() + timeout;
        let before = self
            .wait_until(&format!("decoding video and receiving audio from {who}"), timeout, |s| {
                let video = s.video_from(who).is_some_and(|v| {
                    v.frames_decoded.unwrap_or(0) > 0
                        && v.frame_width.unwrap_or(0) > 0
                        && v.frame_height.unwrap_or(0) > 0
                });
                video && s.audio_from(who).is_some_and(|a| a.packets_received > 0)
            })
            .await?;
        let counters = |s: &PageStats| {
            (
                s.video_from(who).and_then(|v| v.frames_decoded).unwrap_or(0),
                s.audio_from(who).map(|a| a.packets_received).unwrap_or(0),
                s.audio_from(who).and_then(|a| a.total_samples_received).unwrap_or(0),
            )
        };
        let (frames, packets, samples) = counters(&before);
        let what = format!(
            "seeing {who}'s media advance past {frames} decoded frames, {packets} audio packets, {samples} samples"
        );
        let after = self
            .wait_until(&what, deadline.saturating_duration_since(Instant::now()), |s| {
                let (f, p, n) = counters(s);
                f > frames && p > packets && n > samples
            })
            .await?;
        Ok(MediaFlow { who: who.to_string(), before, after })
    }

    /// Waits until `who` is neither among the page's room publishers nor behind an active inbound stream (true
    /// at once for a feed never seen).
    pub async fn wait_feed_gone(&self, who: &str, timeout: Duration) -> Result<PageStats, ChromiumError> {
        self.wait_until(&format!("seeing {who}'s feed gone"), timeout, |s| !s.has_feed_from(who)).await
    }

    /// Asks the page to leave the room (destroy its Janus session) through its control file; returns at once.
    pub fn request_leave(&self) -> Result<(), ChromiumError> {
        self.command(serde_json::json!({ "command": "leave" }))
    }

    /// SIP page: asks it to call `uri` (a SIP URI) with its camera and microphone; returns at once. See
    /// `wait_sip_call`.
    pub fn request_call(&self, uri: &str) -> Result<(), ChromiumError> {
        self.command(serde_json::json!({ "command": "call", "uri": uri }))
    }

    /// SIP page: asks it to answer its incoming call with its camera and microphone; returns at once.
    pub fn request_answer(&self) -> Result<(), ChromiumError> {
        self.command(serde_json::json!({ "command": "answer" }))
    }

    /// SIP page: asks it to hang up (or decline) its call; returns at once.
    pub fn request_hangup(&self) -> Result<(), ChromiumError> {
        self.command(serde_json::json!({ "command": "hangup" }))
    }

    /// SIP page: waits until it is registered.
    pub async fn wait_registered(&self, timeout: Duration) -> Result<PageStats, ChromiumError> {
        self.wait_until("registered at the SIP registrar", timeout, |s| {
            s.phase == PagePhase::Registered && s.sip.as_ref().is_some_and(|sip| sip.registered)
        })
        .await
    }

    /// SIP page: waits until its call number `seq` exists and `pred` accepts it (`what` names the wait).
    pub async fn wait_sip_call(
        &self,
        seq: u64,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&SipCall) -> bool,
    ) -> Result<PageStats, ChromiumError> {
        self.wait_until(&format!("call {seq}: {what}"), timeout, |s| s.sip_call(seq).is_some_and(&mut pred)).await
    }

    /// Writes a command (`body` plus the next `seq`) into the page's control file, atomically (see room.js and
    /// sip.js `control`). The page reads the file every 250 ms: a command written before it read the previous
    /// one replaces it, so wait for a command's effect before sending the next.
    fn command(&self, mut body: Value) -> Result<(), ChromiumError> {
        let seq = self.control_seq.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(map) = body.as_object_mut() {
            map.insert("seq".into(), Value::from(seq));
        }
        let body = body.to_string();
        let tmp = self.dir.join(format!("{CONTROL_FILE}.tmp"));
        write_file(&tmp, body.as_bytes())
            .and_then(|()| {
                std::fs::rename(&tmp, self.dir.join(CONTROL_FILE)).map_err(|source| HarnessError::Io {
                    what: "cannot rename into place",
                    path: tmp.clone(),
                    source,
                })
            })
            .map_err(|source| ChromiumError::Harness { name: self.name.clone(), source })
    }

    /// Leaves the room (the room drops the publisher at once) and waits until the page reports it left.
    /// Chromium keeps running; `stop` ends it.
    pub async fn leave(&self, timeout: Duration) -> Result<PageStats, ChromiumError> {
        self.request_leave()?;
        self.wait_until("left the room", timeout, |s| s.phase == PagePhase::Left).await
    }

    /// Ends Chromium: SIGTERM to its process group, up to 2 s for it to exit, then SIGKILL to the group; reaps
    /// it. Blocks (up to ~2 s); idempotent. A page that did not `leave` stays in the room until Janus's
    /// `reclaim_session_timeout` has passed (NOTES.md pitfall 5).
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.process.terminate();
        self.process.finish(Instant::now() + STOP_GRACE);
        log::info!("chromium page {}: stopped", self.name);
    }

    /// `stop` without blocking the runtime while Chromium exits.
    pub async fn stop_async(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.process.terminate();
        let deadline = Instant::now() + STOP_GRACE;
        while self.process.check().is_ok() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // SIGKILL to the group (helpers that outlive the browser process) and reap.
        self.process.finish(Instant::now());
        log::info!("chromium page {}: stopped", self.name);
    }
}

impl Drop for ChromiumPage {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        self.stop();
        self.stop_reader.store(true, Ordering::SeqCst);
        if let Some(reader) = crate::baresip_lock(&self.reader).take() {
            let _ = reader.join();
        }
        if panicking {
            eprintln!("===== chromium page {} =====\n{}", self.name, self.context());
        }
        if self.keep_dir || panicking {
            eprintln!("chromium page {}: kept {}", self.name, self.dir.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            log::warn!("cannot remove {}: {e}", self.dir.display());
        }
    }
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), HarnessError> {
    std::fs::write(path, data).map_err(|source| HarnessError::Io {
        what: "cannot write",
        path: path.to_path_buf(),
        source,
    })
}

/// A Y4M clip (I420, `C420jpeg`, `fps` frames a second, `frames` frames, looped by Chromium) of 75 % colour bars
/// in BT.601 studio range with a 16x24 white block moving along the bottom edge, so that frames differ.
pub fn colour_bars_y4m(width: u32, height: u32, frames: u32, fps: u32) -> Vec<u8> {
    // Y, Cb, Cr of white, yellow, cyan, green, magenta, red, blue, black
    const BARS: [(u8, u8, u8); 8] = [
        (180, 128, 128),
        (162, 44, 142),
        (131, 156, 44),
        (112, 72, 58),
        (84, 184, 198),
        (65, 100, 212),
        (35, 212, 114),
        (16, 128, 128),
    ];
    const BLOCK: (u8, u8, u8) = (235, 128, 128);
    let (w, h) = (width as usize & !1, height as usize & !1);
    let mut out = format!("YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n").into_bytes();
    let frames = frames.max(1) as usize;
    for n in 0..frames {
        let block_x = n * w / frames;
        let colour = |x: usize, y: usize| {
            if y + 24 >= h && (block_x..block_x + 16).contains(&x) {
                BLOCK
            } else {
                BARS[x * 8 / w.max(1)]
            }
        };
        out.extend_from_slice(b"FRAME\n");
        for y in 0..h {
            out.extend((0..w).map(|x| colour(x, y).0));
        }
        for y in (0..h).step_by(2) {
            out.extend((0..w).step_by(2).map(|x| colour(x, y).1));
        }
        for y in (0..h).step_by(2) {
            out.extend((0..w).step_by(2).map(|x| colour(x, y).2));
        }
    }
    out
}

/// A WAV file (PCM s16le, mono, `rate` Hz) of `secs` seconds of a sine at `hz`, -6 dBFS; whole seconds of a
/// whole-hertz tone loop without a click.
pub fn tone_wav(hz: u32, secs: u32, rate: u32) -> Vec<u8> {
    let samples = rate as usize * secs as usize;
    let data_len = u32::try_from(samples * 2).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(44 + samples * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..samples {
        let phase = 2.0 * std::f64::consts::PI * f64::from(hz) * i as f64 / f64::from(rate);
        let s = (16383.0 * phase.sin()).round() as i16;
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"[123:123:1128/064240.570355:INFO:CONSOLE:405] "CALLBOX_STATS {"t":1764312160570,"phase":"published","error":null,"room":77,"display":"alice","myId":42,"publisherUp":true,"subscriberUp":true,"outbound":[{"mid":"0","kind":"audio","packetsSent":50,"bytesSent":4000},{"mid":"1","kind":"video","packetsSent":80,"bytesSent":90000,"framesEncoded":15,"frameWidth":320,"frameHeight":240,"framesPerSecond":15,"encoderImplementation":"libvpx","qualityLimitationReason":"none"}],"inbound":[{"mid":"0","kind":"audio","feed":7,"display":"{\"id\":\"door\",\"name\":\"Front door\"}","active":true,"codec":"opus","packetsReceived":49,"packetsLost":-1,"bytesReceived":3900,"jitter":0.001,"audioLevel":0.5,"totalAudioEnergy":0.27,"totalSamplesReceived":48000,"concealedSamples":10},{"mid":"1","kind":"video","feed":7,"display":"{\"id\":\"door\",\"name\":\"Front door\"}","active":true,"codec":"vp8","packetsReceived":70,"packetsLost":0,"bytesReceived":80000,"framesDecoded":14.0,"keyFramesDecoded":1,"frameWidth":320,"frameHeight":240,"decoderImplementation":"libvpx"}],"publishers":[{"id":7,"display":"{\"id\":\"door\",\"name\":\"Front door\"}","streams":2}],"publisherPath":"127.0.0.1:40000 host -> 127.0.0.1:31000 host","subscriberPath":"127.0.0.1:40002 host -> 127.0.0.1:31002 host","probe":[{"mid":"1","feed":7,"display":"{\"id\":\"door\",\"name\":\"Front door\"}","width":320,"height":240,"row":[[191,191,191],[192,191,2],[0,191,190],[0,190,0],[191,0,191],[191,0,1],[0,1,190],[0,0,0]]}]}", source: file:///tmp/x/room.js (405)"#;

    #[test]
    fn a_stats_line_parses_into_typed_stats() {
        let mut seen = Seen::default();
        seen.line(LINE);
        seen.line(r#"[1:1:1128/064240.1:INFO:CONSOLE:60] "CALLBOX 06:42:40.100 joined room 77 as 42", source: file:///tmp/x/room.js (60)"#);
        seen.line("[1:1:1128/064240.2:ERROR:bus.cc(407)] Failed to connect to the bus");
        assert_eq!(seen.snapshots, 1);
        assert_eq!(seen.events, ["06:42:40.100 joined room 77 as 42"]);
        assert_eq!(seen.tail.len(), 1);
        let s = seen.latest.expect("parsed");
        assert_eq!(
            (s.phase.clone(), s.room, s.my_id, s.display.as_str()),
            (PagePhase::Published, Some(77), Some(42), "alice")
        );
        let v = s.video_from("door").expect("video from the door (JSON display id)");
        assert_eq!((v.frames_decoded, v.frame_width, v.frame_height), (Some(14), Some(320), Some(240)));
        assert_eq!(v.codec.as_deref(), Some("vp8"));
        let a = s.audio_from("Front door").expect("audio from the door (JSON display name)");
        assert_eq!((a.packets_received, a.packets_lost, a.total_samples_received), (49, -1, Some(48000)));
        assert!(s.video_from("someone else").is_none());
        assert!(s.has_feed_from("door") && s.publisher("door").is_some_and(|p| p.id == 7 && p.streams == 2));
        assert_eq!(s.outbound(PageMediaKind::Video).and_then(|o| o.frames_encoded), Some(15));
        assert!(s.ice_on_loopback());
        assert!(s.probe_from("door").expect("probe").shows_colour_bars(8));
        assert!(s.summary().contains("14 frames 320x240"), "{}", s.summary());
    }

    #[test]
    fn non_stats_lines_and_broken_json_do_not_count() {
        let mut seen = Seen::default();
        seen.line(r#"[1:1:1:INFO:CONSOLE:1] "CALLBOX_STATS {"error":"boom"}", source: file:///r.js (1)"#);
        seen.line(r#"[1:1:1:INFO:CONSOLE:1] "CALLBOX_STATS {"phase":", source: file:///r.js (1)"#);
        assert_eq!(seen.snapshots, 0);
        assert_eq!(seen.tail.len(), 2);
        assert!(seen.latest.is_none());
    }

    #[test]
    fn displays_match_plain_names_and_appliance_json() {
        assert!(display_names("alice", "alice"));
        assert!(!display_names("alice", "bob"));
        assert!(display_names(r#"{"id":"door-1","name":"Front door"}"#, "door-1"));
        assert!(display_names(r#"{"id":"door-1","name":"Front door"}"#, "Front door"));
        assert!(!display_names(r#"{"id":"door-1"}"#, "door"));
    }

    #[test]
    fn the_page_url_encodes_token_pin_and_display() {
        let mut o = ChromiumOptions::new(
            "ws://127.0.0.1:18188",
            Secret::new("1700000000,janus,janus.plugin.videoroom:ab+c/d="),
            77,
            Secret::new("12 34"),
            "Zoë & co",
        );
        o.leave_after = Some(Duration::from_millis(2500));
        let url = o.page_url(Path::new("/tmp/a b"));
        assert!(url.starts_with("file:///tmp/a%20b/room.html?server=ws%3A%2F%2F127.0.0.1%3A18188&room=77&"), "{url}");
        assert!(url.contains("&display=Zo%C3%AB%20%26%20co&create=0&logstats=1000&control=control.json"), "{url}");
        assert!(url.contains("&token=1700000000%2Cjanus%2Cjanus.plugin.videoroom%3Aab%2Bc%2Fd%3D"), "{url}");
        assert!(url.contains("&pin=12%2034") && url.contains("&leaveafter=3"), "{url}");
        assert!(!url.contains("video=0") && !url.contains("audio=0"), "{url}");
        assert!(!format!("{o:?}").contains("ab+c"), "the token must not show in Debug");
    }

    const SIP_LINE: &str = r#"[1:1:1207/111049.5:INFO:CONSOLE:380] "CALLBOX_STATS {"t":1765105849500,"phase":"registered","error":null,"display":"browser-user","outbound":[{"mid":"1","kind":"video","packetsSent":46,"bytesSent":40000,"framesEncoded":24,"encoderImplementation":"OpenH264","codecMime":"video/H264","payloadType":102,"sdpFmtpLine":"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}],"inbound":[{"mid":"0","kind":"audio","display":"sip:door-b@callbox.test","active":true,"codec":"opus","packetsReceived":82,"totalAudioEnergy":0.017,"totalSamplesReceived":78240,"codecMime":"audio/opus","payloadType":111,"sdpFmtpLine":"minptime=10;useinbandfec=1"},{"mid":"1","kind":"video","display":"sip:door-b@callbox.test","active":true,"codec":"h264","packetsReceived":103,"framesDecoded":21,"frameWidth":320,"frameHeight":240,"codecMime":"video/H264","payloadType":102,"sdpFmtpLine":"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42E01F"}],"sip":{"registered":true,"username":"sip:browser-user@callbox.test","calls":2,"missedCalls":1,"path":"127.0.0.1:46584 host -> 127.0.0.1:20122 host","call":{"seq":2,"direction":"incoming","peer":"sip:door-b@callbox.test","state":"accepted","pcUp":true,"ice":"connected","hangupCode":null,"hangupReason":null,"localVideo":"102 H264 42e01f pm1, 96 VP8","remoteVideo":"102 H264 42e01f pm1, 100 H264 42001f pm1, 96 VP8"}},"probe":[]}", source: file:///tmp/x/sip.js (380)"#;

    #[test]
    fn a_sip_stats_line_parses_with_its_call_and_codecs() {
        let mut seen = Seen::default();
        seen.line(SIP_LINE);
        let s = seen.latest.expect("parsed");
        assert_eq!(s.phase, PagePhase::Registered);
        let sip = s.sip.as_ref().expect("sip state");
        assert!(sip.registered && sip.calls == 2 && sip.missed_calls == 1 && sip.ice_on_loopback());
        assert!(s.ice_on_loopback());
        let call = s.sip_call(2).expect("call 2");
        assert!(s.sip_call(1).is_none());
        assert_eq!((call.outgoing, call.state.clone(), call.pc_up), (false, SipCallState::Accepted, true));
        assert_eq!(call.local_video.as_deref(), Some("102 H264 42e01f pm1, 96 VP8"));
        let v = s.video_from("door-b").expect("video labelled with the caller's URI");
        assert_eq!((v.frames_decoded, v.rtp_codec.payload_type), (Some(21), Some(102)));
        assert_eq!(v.rtp_codec.mime_type.as_deref(), Some("video/H264"));
        assert_eq!(v.rtp_codec.profile_level_id().as_deref(), Some("42e01f"));
        assert!(s.audio_from("door-b").is_some_and(|a| a.packets_received == 82));
        let out = s.outbound(PageMediaKind::Video).expect("outbound video");
        assert!(out.rtp_codec.describe().starts_with("video/H264 PT 102 ["), "{}", out.rtp_codec.describe());
        assert!(s.summary().contains("call 2 from \"sip:door-b@callbox.test\" Accepted"), "{}", s.summary());
    }

    #[test]
    fn sip_uris_name_their_user() {
        assert!(display_names("sip:door-b@callbox.test", "door-b"));
        assert!(display_names("\"Front door\" <sip:door-b@callbox.test;transport=udp>", "door-b"));
        assert!(!display_names("sip:door-b@callbox.test", "door"));
        assert!(!display_names("sip:callbox.test", "callbox.test"));
    }

    #[test]
    fn the_sip_page_url_carries_the_account() {
        let mut o =
            ChromiumOptions::new("ws://127.0.0.1:18188", Secret::new("tok"), 0, Secret::new(""), "browser-user");
        o.page = PageKind::Sip(SipAccount {
            uri: "sip:browser-user@callbox.test".into(),
            authuser: Some("1765109999%3Abrowser-user".into()),
            ha1: Secret::new("0123abcd"),
            proxy: "sip:127.0.0.1:5060".into(),
            outbound_proxy: "sip:127.0.0.1:5060".into(),
            register_ttl: Some(3600),
            auto_answer: false,
        });
        assert_eq!(o.page_files(), ("sip.html", "sip.js"));
        let url = o.page_url(Path::new("/tmp/p"));
        assert!(
            url.starts_with("file:///tmp/p/sip.html?server=ws%3A%2F%2F127.0.0.1%3A18188&display=browser-user&"),
            "{url}"
        );
        assert!(url.contains("&sipuser=sip%3Abrowser-user%40callbox.test&ha1=0123abcd&"), "{url}");
        assert!(url.contains("&outboundproxy=sip%3A127.0.0.1%3A5060&"), "{url}");
        // the page gets the literal "%3A" the plugin needs (URLSearchParams decodes one level)
        assert!(url.contains("&authuser=1765109999%253Abrowser-user&regttl=3600&token=tok"), "{url}");
        assert!(!url.contains("room=") && !url.contains("autoanswer"), "{url}");
        assert!(!format!("{o:?}").contains("0123abcd"), "the HA1 must not show in Debug");
    }

    #[test]
    fn fake_media_has_the_expected_layout() {
        let y4m = colour_bars_y4m(320, 240, 30, 15);
        let header = b"YUV4MPEG2 W320 H240 F15:1 Ip A1:1 C420jpeg\n";
        assert!(y4m.starts_with(header));
        let frame = 6 + 320 * 240 * 3 / 2;
        assert_eq!(y4m.len(), header.len() + 30 * frame);
        // middle row, centre of the second bar (yellow): Y 162; its chroma rows Cb 44, Cr 142
        let f0 = header.len() + 6;
        assert_eq!(y4m[f0 + 120 * 320 + 60], 162);
        assert_eq!(y4m[f0 + 320 * 240 + 60 * 160 + 30], 44);
        assert_eq!(y4m[f0 + 320 * 240 * 5 / 4 + 60 * 160 + 30], 142);
        // the moving block: white at the bottom left of frame 0, not of frame 15
        assert_eq!(y4m[f0 + 239 * 320 + 4], 235);
        assert_eq!(y4m[f0 + 15 * frame + 239 * 320 + 4], 180);

        let wav = tone_wav(700, 2, 48_000);
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(wav.len(), 44 + 2 * 96_000);
        let sample = |i: usize| i16::from_le_bytes([wav[44 + 2 * i], wav[45 + 2 * i]]);
        let peak = (0..96_000).map(|i| sample(i).unsigned_abs()).max().unwrap();
        assert!((16_300..=16_383).contains(&peak), "{peak}");
        assert_eq!(sample(0), 0);
    }
}

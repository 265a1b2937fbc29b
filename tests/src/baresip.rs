//! baresip as a test peer: a PSTN trunk stand-in (answers E.164 calls that Kamailio routes to it, sends a sine
//! tone and fake video) or a SIP phone registered at Kamailio with ephemeral credentials. Driven through its
//! `ctrl_tcp` module (JSON in netstrings): commands `uanew`, `dial`, `accept`, `hangup`, `sndcode` (RFC 4733
//! digits), `snapshot_recv` (the next decoded video frame as PNG), `video_debug` (its video frame counts); events
//! kept in a bounded log that `wait_for` consumes. What it hears is checked at its end: its `sndfile` module
//! records each call's decoded audio ([`Baresip::received_audio`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::error::HarnessError;
use crate::event_log::EventLog;
use crate::process::ServerProcess;

const MAX_NETSTRING: usize = 1 << 20;
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// What the baresip instance plays.
#[derive(Clone, Debug)]
pub enum BaresipRole {
    /// Listens on the stack's trunk port as `<sip:NUMBER@127.0.0.1:port>`, does not register, auto-answers.
    PstnTrunk { number: String },
    /// Registers at Kamailio as `sip:USER@<domain>`.
    RegisteredUser { user: String },
}

#[derive(Clone, Debug)]
pub struct BaresipOptions {
    pub role: BaresipRole,
    /// Answer incoming calls at once (`answermode=auto`); otherwise call `accept()`.
    pub auto_answer: bool,
    /// Frequency of the sine tone it sends (Hz).
    pub tone_hz: u32,
    /// Use the ephemeral credentials of this user instead of the role's own (refused by Kamailio).
    pub credentials_of: Option<String>,
    /// Register with a wrong password (refused by Kamailio).
    pub forged_password: bool,
    /// `start_baresip` waits for REGISTER_OK (registered users with genuine credentials only).
    pub wait_registered: bool,
    /// Lifetime of the ephemeral SIP credentials.
    pub credential_ttl: Duration,
    /// The video it sends (`fakevideo`'s still colour bars): width, height, frames per second and the encoder's
    /// bitrate in bit/s; `None`: baresip's defaults.
    pub video: Option<BaresipVideo>,
    /// Only the modules a call needs: without the `sndfile` recorder (it writes every call's audio to disk) and
    /// the `snapshot` module, so that a measurement of the process counts the call alone.
    pub lean: bool,
}

/// The video a baresip sends: its `video_size`, `video_fps` and `video_bitrate`, and the Opus bitrate beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaresipVideo {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_bps: u32,
    pub opus_bitrate_bps: u32,
}

impl BaresipOptions {
    pub fn pstn_trunk(number: impl Into<String>) -> Self {
        BaresipOptions {
            role: BaresipRole::PstnTrunk { number: number.into() },
            auto_answer: true,
            tone_hz: 440,
            credentials_of: None,
            forged_password: false,
            wait_registered: false,
            credential_ttl: Duration::from_secs(3600),
            video: None,
            lean: false,
        }
    }

    pub fn registered_user(user: impl Into<String>) -> Self {
        BaresipOptions {
            role: BaresipRole::RegisteredUser { user: user.into() },
            auto_answer: false,
            tone_hz: 440,
            credentials_of: None,
            forged_password: false,
            wait_registered: true,
            credential_ttl: Duration::from_secs(3600),
            video: None,
            lean: false,
        }
    }

    pub fn auto_answer(mut self, yes: bool) -> Self {
        self.auto_answer = yes;
        self
    }

    /// Sends video of this size, rate and bitrate (and Opus at the given bitrate).
    pub fn video(mut self, video: BaresipVideo) -> Self {
        self.video = Some(video);
        self
    }

    /// Without the recorder and snapshot modules (see [`BaresipOptions::lean`]).
    pub fn lean(mut self) -> Self {
        self.lean = true;
        self
    }

    pub fn tone_hz(mut self, hz: u32) -> Self {
        self.tone_hz = hz;
        self
    }

    /// Register with a forged password; `start_baresip` does not wait for registration
    /// (wait for `BaresipEvent::RegisterFailed`).
    pub fn forged_password(mut self) -> Self {
        self.forged_password = true;
        self.wait_registered = false;
        self
    }

    /// Register with `other_user`'s genuine credentials; `start_baresip` does not wait for registration.
    pub fn credentials_of(mut self, other_user: impl Into<String>) -> Self {
        self.credentials_of = Some(other_user.into());
        self.wait_registered = false;
        self
    }

    pub(crate) fn name(&self) -> String {
        match &self.role {
            BaresipRole::PstnTrunk { number } => format!("trunk{number}"),
            BaresipRole::RegisteredUser { user } => user.clone(),
        }
    }
}

/// Event kinds reported by baresip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BaresipEvent {
    RegisterOk,
    RegisterFailed,
    CallIncoming,
    CallRinging,
    CallProgress,
    CallEstablished,
    /// The call ended; the record's `param` carries the reason (e.g. "Connection reset by peer", a SIP status).
    CallClosed,
    /// A DTMF digit received (`param` is the digit), when baresip reports it.
    DtmfReceived,
    Other,
}

impl BaresipEvent {
    fn from_type(t: &str) -> Self {
        match t {
            "REGISTER_OK" => BaresipEvent::RegisterOk,
            "REGISTER_FAIL" => BaresipEvent::RegisterFailed,
            "CALL_INCOMING" => BaresipEvent::CallIncoming,
            "CALL_RINGING" => BaresipEvent::CallRinging,
            "CALL_PROGRESS" => BaresipEvent::CallProgress,
            "CALL_ESTABLISHED" => BaresipEvent::CallEstablished,
            "CALL_CLOSED" => BaresipEvent::CallClosed,
            "CALL_DTMF_START" => BaresipEvent::DtmfReceived,
            _ => BaresipEvent::Other,
        }
    }
}

/// One event as reported.
#[derive(Clone, Debug)]
pub struct BaresipEventRecord {
    pub kind: BaresipEvent,
    /// baresip's event type (`CALL_ESTABLISHED`, ...).
    pub kind_name: String,
    pub peer_uri: Option<String>,
    pub param: Option<String>,
    pub raw: Value,
}

#[derive(Default)]
struct Shared {
    events: EventLog<BaresipEventRecord>,
    pending: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    closed: Mutex<Option<String>>,
}

/// A running baresip. Dropping it kills the process.
pub struct Baresip {
    name: String,
    aor: String,
    process: Arc<ServerProcess>,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    shared: Arc<Shared>,
    next_token: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
}

pub(crate) struct Launch<'a> {
    pub dir: PathBuf,
    pub sip_port: u16,
    pub ctrl_port: u16,
    pub rtp_range: (u16, u16),
    pub kamailio_port: u16,
    pub domain: &'a str,
    /// The account's auth user and password (`None` for the trunk).
    pub auth: Option<(String, String)>,
    pub log_limit: u64,
    pub timeout: Duration,
}

fn write_config(opts: &BaresipOptions, l: &Launch<'_>) -> Result<(), HarnessError> {
    std::fs::create_dir_all(&l.dir).map_err(|source| HarnessError::Io {
        what: "cannot create",
        path: l.dir.clone(),
        source,
    })?;
    let mut config = format!(
        "poll_method\tepoll\n\
         net_interface\t127.0.0.1\n\
         sip_listen\t127.0.0.1:{sip}\n\
         rtp_ports\t{lo}-{hi}\n\
         call_local_timeout\t60\n\
         audio_player\taubridge,none\n\
         audio_alert\taubridge,none\n\
         audio_source\tausine,{tone}\n\
         video_source\tfakevideo,nil\n\
         video_display\tfakevideo,nil\n\
         module_path\t/usr/lib/baresip/modules\n\
         module\tg711.so\n\
         module\topus.so\n\
         module\tvp8.so\n\
         module\tausine.so\n\
         module\taubridge.so\n\
         module\tfakevideo.so\n\
         {recorder}\
         module_app\tmenu.so\n\
         module_app\tctrl_tcp.so\n\
         ctrl_tcp_listen\t127.0.0.1:{ctrl}\n",
        sip = l.sip_port,
        lo = l.rtp_range.0,
        hi = l.rtp_range.1,
        tone = opts.tone_hz,
        ctrl = l.ctrl_port,
        recorder = if opts.lean {
            String::new()
        } else {
            format!("module\tsndfile.so\nmodule\tsnapshot.so\nsnd_path\t{}\n", l.dir.display())
        },
    );
    if let Some(v) = opts.video {
        config.push_str(&format!(
            "video_size\t{}x{}\nvideo_fps\t{}\nvideo_bitrate\t{}\nopus_bitrate\t{}\n",
            v.width, v.height, v.fps, v.bitrate_bps, v.opus_bitrate_bps
        ));
    }
    for (name, text) in [("config", config.as_str()), ("accounts", ""), ("contacts", "")] {
        let p = l.dir.join(name);
        std::fs::write(&p, text).map_err(|source| HarnessError::Io { what: "cannot write", path: p, source })?;
    }
    Ok(())
}

fn account_line(opts: &BaresipOptions, l: &Launch<'_>) -> (String, String) {
    let answer = if opts.auto_answer { "auto" } else { "manual" };
    let media = "audio_codecs=opus/48000/2,pcmu,pcma;video_codecs=vp8";
    let outbound = format!("outbound=\"sip:127.0.0.1:{}\"", l.kamailio_port);
    match &opts.role {
        BaresipRole::PstnTrunk { number } => {
            let aor = format!("sip:{number}@127.0.0.1:{}", l.sip_port);
            (format!("<{aor}>;{outbound};regint=0;answermode={answer};{media}"), aor)
        }
        BaresipRole::RegisteredUser { user } => {
            let aor = format!("sip:{user}@{}", l.domain);
            let (auth_user, pass) = l.auth.clone().unwrap_or_default();
            (
                format!(
                    "<{aor}>;auth_user={auth_user};auth_pass={pass};{outbound};regint=60;answermode={answer};{media}"
                ),
                aor,
            )
        }
    }
}

impl Baresip {
    pub(crate) async fn launch(
        opts: &BaresipOptions,
        l: Launch<'_>,
    ) -> Result<(Self, Arc<ServerProcess>), HarnessError> {
        let name = format!("baresip-{}", opts.name());
        write_config(opts, &l)?;
        let args = vec!["-f".to_string(), l.dir.display().to_string()];
        let log = l.dir.join("baresip.log");
        let process = Arc::new(ServerProcess::spawn(&name, "baresip", &args, &l.dir, log, l.log_limit)?);
        let deadline = Instant::now() + l.timeout;
        let stream = loop {
            process.check()?;
            if let Ok(s) = TcpStream::connect(("127.0.0.1", l.ctrl_port)).await {
                break s;
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::NotReady {
                    name: name.clone(),
                    timeout: l.timeout,
                    reason: format!("ctrl_tcp not listening on 127.0.0.1:{}", l.ctrl_port),
                    log: process.log_path().to_path_buf(),
                });
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        };
        let (read, write) = stream.into_split();
        let shared = Arc::new(Shared::default());
        let reader = tokio::spawn(read_loop(BufReader::new(read), shared.clone(), name.clone()));
        let (account, aor) = account_line(opts, &l);
        let b = Baresip {
            name,
            aor,
            process: process.clone(),
            writer: tokio::sync::Mutex::new(write),
            shared,
            next_token: AtomicU64::new(1),
            reader,
        };
        b.command("uanew", Some(&account)).await?;
        if opts.wait_registered {
            b.wait_for(BaresipEvent::RegisterOk, l.timeout).await?;
        }
        Ok((b, process))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The account's address of record (`sip:carol@callbox.test`, `sip:+1555...@127.0.0.1:port`).
    pub fn aor(&self) -> &str {
        &self.aor
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The process id of the baresip process (to read its CPU time and peak RSS in /proc).
    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    pub fn log_tail(&self, max_bytes: u64) -> String {
        self.process.log_tail(max_bytes)
    }

    /// Send a `ctrl_tcp` command; returns its `data` when `ok`.
    pub async fn command(&self, command: &str, params: Option<&str>) -> Result<String, HarnessError> {
        let token = format!("t{}", self.next_token.fetch_add(1, Ordering::Relaxed));
        let mut msg = json!({ "command": command, "token": token });
        if let Some(p) = params {
            msg["params"] = json!(p);
        }
        let body = msg.to_string();
        let frame = format!("{}:{},", body.len(), body);
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.pending).insert(token.clone(), tx);
        let cmd_err =
            |reason: String| HarnessError::Command { name: self.name.clone(), command: command.to_string(), reason };
        {
            let mut w = self.writer.lock().await;
            if let Err(e) = w.write_all(frame.as_bytes()).await {
                lock(&self.shared.pending).remove(&token);
                return Err(cmd_err(format!("write: {e}")));
            }
        }
        let answer = match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
            Ok(Ok(v)) => v,
            Ok(Err(_)) => return Err(cmd_err("control connection closed".into())),
            Err(_) => {
                lock(&self.shared.pending).remove(&token);
                return Err(cmd_err(format!("no answer within {COMMAND_TIMEOUT:?}")));
            }
        };
        let data = answer.get("data").and_then(Value::as_str).unwrap_or("").to_string();
        if answer.get("ok").and_then(Value::as_bool) == Some(true) {
            Ok(data)
        } else {
            Err(cmd_err(data.trim().to_string()))
        }
    }

    /// Dial a SIP URI (through Kamailio).
    pub async fn dial(&self, uri: &str) -> Result<(), HarnessError> {
        self.command("dial", Some(uri)).await.map(|_| ())
    }

    /// Answer the current incoming call.
    pub async fn accept(&self) -> Result<(), HarnessError> {
        self.command("accept", None).await.map(|_| ())
    }

    /// Hang up the current call.
    pub async fn hangup(&self) -> Result<(), HarnessError> {
        self.command("hangup", None).await.map(|_| ())
    }

    /// Sends DTMF digits in the current call, as RFC 4733 telephone-events (baresip's way when negotiated).
    pub async fn send_digits(&self, digits: &str) -> Result<(), HarnessError> {
        self.command("sndcode", Some(digits)).await.map(|_| ())
    }

    /// The video frames of the current call so far, from its `video_debug` report: (frames its source produced,
    /// frames it decoded and displayed). A count it does not report is `None`.
    pub async fn video_frames(&self) -> Result<VideoFrames, HarnessError> {
        Ok(VideoFrames::parse(&self.command("video_debug", None).await?))
    }

    /// Saves the next video frame baresip decodes as a PNG at `path` and waits for the file (up to `timeout`).
    pub async fn snapshot_received(&self, path: &Path, timeout: Duration) -> Result<(), HarnessError> {
        let _ = std::fs::remove_file(path);
        self.command("snapshot_recv", Some(&path.display().to_string())).await?;
        let deadline = Instant::now() + timeout;
        // The module writes the file from its video thread once a frame is decoded; a non-empty file is complete
        // once its size stops changing.
        let mut last = 0;
        loop {
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            if size > 0 && size == last {
                return Ok(());
            }
            last = size;
            if Instant::now() >= deadline {
                return Err(HarnessError::Command {
                    name: self.name.clone(),
                    command: "snapshot_recv".into(),
                    reason: format!("no decoded frame saved at {} within {timeout:?}", path.display()),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The audio baresip decoded in its calls so far (its `sndfile` recordings, `dump-*-dec.wav`), newest call
    /// last, as mono samples with their rate. Read after the call ended: the recorder writes as it goes.
    pub fn received_audio(&self) -> Result<Vec<Recording>, HarnessError> {
        let dir = self.process.log_path().parent().map(Path::to_path_buf).unwrap_or_default();
        let io = |source| HarnessError::Io { what: "cannot read", path: dir.clone(), source };
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("dump-") && n.ends_with("-dec.wav"))
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|path| {
                let bytes = std::fs::read(&path).map_err(|source| HarnessError::Io {
                    what: "cannot read",
                    path: path.clone(),
                    source,
                })?;
                Recording::from_wav(&bytes).ok_or_else(|| HarnessError::Command {
                    name: self.name.clone(),
                    command: "sndfile".into(),
                    reason: format!("{} is not 16-bit PCM WAV", path.display()),
                })
            })
            .collect()
    }

    /// Wait for an event of `kind`, consuming it and every event before it. Events that arrived before the call
    /// count (nothing is missed between a command and the wait).
    pub async fn wait_for(&self, kind: BaresipEvent, timeout: Duration) -> Result<BaresipEventRecord, HarnessError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let alive = || match lock(&self.shared.closed).clone() {
            Some(reason) => {
                self.process.check()?;
                Err(HarnessError::Control { name: self.name.clone(), reason })
            }
            None => Ok(()),
        };
        // The reader wakes the wait when the control connection ends: no need to look more often.
        match self.shared.events.wait_for(|e| e.kind == kind, deadline, timeout, alive).await? {
            Some(found) => Ok(found),
            None => Err(HarnessError::EventTimeout {
                name: self.name.clone(),
                wanted: format!("{kind:?}"),
                timeout,
                recent: self.recent_events(12),
            }),
        }
    }

    /// The events not consumed yet.
    pub fn pending_events(&self) -> Vec<BaresipEventRecord> {
        self.shared.events.pending()
    }

    fn recent_events(&self, n: usize) -> String {
        self.shared
            .events
            .recent(n)
            .iter()
            .map(|e| match &e.param {
                Some(p) => format!("{}({p})", e.kind_name),
                None => e.kind_name.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Video frame counts of a call, as baresip's `video_debug` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VideoFrames {
    /// `source: fakevideo 640 x 480, fps=30.00 frames=N`: frames captured for sending.
    pub sent: Option<u64>,
    /// `vidisp: fakevideo 640 x 480 frames=N`: frames decoded and handed to the display.
    pub displayed: Option<u64>,
}

impl VideoFrames {
    fn parse(report: &str) -> Self {
        let frames = |tag: &str| {
            report.lines().find(|l| l.trim_start().starts_with(tag)).and_then(|l| {
                let (_, n) = l.rsplit_once("frames=")?;
                n.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
            })
        };
        VideoFrames { sent: frames("source:"), displayed: frames("vidisp:") }
    }
}

/// Audio a foreign endpoint recorded: mono (the first channel), 16-bit.
#[derive(Debug, Clone)]
pub struct Recording {
    pub rate: u32,
    pub samples: Vec<i16>,
}

impl Recording {
    /// Its length in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.rate.max(1))
    }

    /// RMS level of the whole recording, dBFS (-120 for silence or nothing).
    pub fn level_dbfs(&self) -> f64 {
        let n = self.samples.len().max(1) as f64;
        let mean_square = self.samples.iter().map(|&v| (f64::from(v) / 32_768.0).powi(2)).sum::<f64>() / n;
        10.0 * mean_square.max(1e-12).log10()
    }

    /// Of its 100 ms windows, how many a tone of `hz` dominates (over 80 % of the window's power): (dominated,
    /// windows). Whole-recording measures would punish the phase jumps of a real call (a concealed packet, a digit
    /// sent in place of audio); windows judge what was heard most of the time.
    pub fn tone_windows(&self, hz: f64) -> (usize, usize) {
        let window = (self.rate / 10).max(1) as usize;
        // tone_share measures at 48 kHz: at another rate the same normalised frequency is asked for.
        let hz = hz * 48_000.0 / f64::from(self.rate.max(1));
        let shares: Vec<f64> =
            self.samples.chunks_exact(window).map(|w| callbox::devices::audio::tone_share(w, hz)).collect();
        (shares.iter().filter(|s| **s > 0.8).count(), shares.len())
    }

    /// Reads a RIFF/WAVE file of 16-bit PCM (any chunk order; a data chunk still being written, whose size field
    /// is not final, is read to the end of the file).
    pub fn from_wav(bytes: &[u8]) -> Option<Recording> {
        if bytes.get(0..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
            return None;
        }
        let mut pos = 12;
        let (mut channels, mut rate, mut bits) = (0u16, 0u32, 0u16);
        while pos + 8 <= bytes.len() {
            let id = &bytes[pos..pos + 4];
            let size = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().ok()?) as usize;
            let body = pos + 8;
            if id == b"fmt " {
                let f = bytes.get(body..body + 16)?;
                let format = u16::from_le_bytes([f[0], f[1]]);
                channels = u16::from_le_bytes([f[2], f[3]]);
                rate = u32::from_le_bytes([f[4], f[5], f[6], f[7]]);
                bits = u16::from_le_bytes([f[14], f[15]]);
                if format != 1 && format != 0xfffe {
                    return None;
                }
            } else if id == b"data" {
                if channels == 0 || bits != 16 {
                    return None;
                }
                let end = if size == 0 || body + size > bytes.len() { bytes.len() } else { body + size };
                let frame = 2 * usize::from(channels);
                let samples = bytes[body..end].chunks_exact(frame).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
                return Some(Recording { rate, samples });
            }
            pos = body + size + (size & 1);
        }
        None
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        self.reader.abort();
        // The process (shared with the stack) is terminated by the last owner's drop.
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn read_netstring<R: AsyncReadExt + Unpin>(r: &mut R) -> Result<Vec<u8>, String> {
    let mut len: usize = 0;
    let mut digits = 0;
    loop {
        let b = r.read_u8().await.map_err(|e| format!("read: {e}"))?;
        match b {
            b'0'..=b'9' => {
                len = len
                    .checked_mul(10)
                    .and_then(|l| l.checked_add(usize::from(b - b'0')))
                    .ok_or("netstring length overflow")?;
                digits += 1;
            }
            b':' if digits > 0 => break,
            _ => return Err(format!("bad netstring byte {b:#04x}")),
        }
    }
    if len > MAX_NETSTRING {
        return Err(format!("netstring of {len} bytes is too large"));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await.map_err(|e| format!("read: {e}"))?;
    if r.read_u8().await.map_err(|e| format!("read: {e}"))? != b',' {
        return Err("netstring without trailing comma".into());
    }
    Ok(buf)
}

async fn read_loop<R: AsyncReadExt + Unpin>(mut r: R, shared: Arc<Shared>, name: String) {
    let reason = loop {
        let frame = match read_netstring(&mut r).await {
            Ok(f) => f,
            Err(e) => break e,
        };
        let Ok(v) = serde_json::from_slice::<Value>(&frame) else {
            log::warn!("{name}: ignoring a non-JSON control message");
            continue;
        };
        if v.get("response").and_then(Value::as_bool) == Some(true) {
            let token = v.get("token").and_then(Value::as_str).unwrap_or("").to_string();
            if let Some(tx) = lock(&shared.pending).remove(&token) {
                let _ = tx.send(v);
            }
        } else if v.get("event").and_then(Value::as_bool) == Some(true) {
            let kind_name = v.get("type").and_then(Value::as_str).unwrap_or("").to_string();
            if kind_name == "CALL_RTCP" {
                continue; // periodic statistics: would flood the log
            }
            let record = BaresipEventRecord {
                kind: BaresipEvent::from_type(&kind_name),
                peer_uri: v.get("peeruri").and_then(Value::as_str).map(str::to_string),
                param: v.get("param").and_then(Value::as_str).map(str::to_string),
                kind_name,
                raw: v,
            };
            log::info!("{name}: event {} {:?}", record.kind_name, record.param);
            shared.events.push([record]);
        }
    };
    log::info!("{name}: control connection ended: {reason}");
    *lock(&shared.closed) = Some(reason);
    lock(&shared.pending).clear();
    shared.events.wake();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_recordings_are_read_as_mono() {
        let mut wav = Vec::new();
        wav.extend_from_slice(b"RIFF\0\0\0\0WAVE");
        wav.extend_from_slice(b"fmt \x10\0\0\0");
        wav.extend_from_slice(&[1, 0, 2, 0]); // PCM, 2 channels
        wav.extend_from_slice(&48_000u32.to_le_bytes());
        wav.extend_from_slice(&[0; 6]);
        wav.extend_from_slice(&[16, 0]);
        wav.extend_from_slice(b"data\0\0\0\0"); // size not written yet
        for (l, r) in [(1i16, -1i16), (2, -2), (3, -3)] {
            wav.extend_from_slice(&l.to_le_bytes());
            wav.extend_from_slice(&r.to_le_bytes());
        }
        let rec = Recording::from_wav(&wav).expect("a recording");
        assert_eq!((rec.rate, rec.samples), (48_000, vec![1, 2, 3]));
        assert!(Recording::from_wav(b"RIFF....WAVEjunk").is_none());
        assert!(Recording::from_wav(b"not a wav").is_none());
    }

    #[test]
    fn video_debug_frame_counts_are_read() {
        let report = "video RTP: ...\n     source: fakevideo 640 x 480, fps=30.00 frames=1801\n     \
                      vidisp: fakevideo 640 x 480 frames=1795\n     n_keyframes=3, n_picup=1\n";
        assert_eq!(VideoFrames::parse(report), VideoFrames { sent: Some(1801), displayed: Some(1795) });
        assert_eq!(VideoFrames::parse("no video\n"), VideoFrames::default());
    }

    #[tokio::test]
    async fn netstrings_parse_and_reject_garbage() {
        let mut ok: &[u8] = b"5:hello,0:,";
        assert_eq!(read_netstring(&mut ok).await.unwrap(), b"hello");
        assert_eq!(read_netstring(&mut ok).await.unwrap(), b"");
        let mut bad: &[u8] = b"x:";
        assert!(read_netstring(&mut bad).await.is_err());
        let mut huge: &[u8] = b"99999999999:";
        assert!(read_netstring(&mut huge).await.is_err());
        let mut no_comma: &[u8] = b"2:hi;";
        assert!(read_netstring(&mut no_comma).await.is_err());
    }
}

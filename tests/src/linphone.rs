//! linphone as a second, independent foreign SIP phone (besides baresip): Debian's `linphonec` (liblinphone 5.1),
//! headless, with its own config and home in the stack's temp dir, registered at the stack's Kamailio with
//! ephemeral credentials, SIP and RTP bound to 127.0.0.1 only.
//!
//! It is driven through its command interface: the harness holds a FIFO that is linphonec's stdin and writes
//! commands there (`call`, `answer`, `terminate`, `pause`, `resume`, DTMF digits typed as a line, `snapshot`,
//! `status register`). Events are parsed from what linphonec prints on stdout (its log file): incoming call,
//! connected, streams running, paused, ended, DTMF received ("Receiving tone 5 from ..."), registered.
//!
//! Media: its sound card is "files" (`soundcard use files`): it sends a WAV tone the harness wrote as its
//! microphone (`play`) and records what it decodes into a WAV (`record`), so what it heard is checked at its end
//! ([`Linphone::recording`]). With video, its camera is mediastreamer's `StaticImage` (the `nowebcamCIF.jpg`
//! picture, or one set with `staticpic set`), its display the `MSExtDisplay` filter (no window, no X server), and
//! `snapshot FILE` saves the next decoded frame as JPEG ([`Linphone::snapshot_received`]).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::baresip::Recording;
use crate::error::HarnessError;
use crate::event_log::EventLog;
use crate::ports;
use crate::process::ServerProcess;
use crate::stack::Stack;

/// linphonec's stdout (its events) is killed past this size (a runaway loop).
const LOG_LIMIT: u64 = 20 * 1024 * 1024;
const START_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);
/// linphonec's prompt, printed before each command is read (also at the start of lines it prints later).
const PROMPT: &str = "linphonec> ";
/// Seconds of tone in the file linphone plays as its microphone (it loops the file with a 500 ms pause).
const TONE_SECONDS: u32 = 120;
const TONE_RATE: u32 = 48_000;

static INSTANCES: AtomicU32 = AtomicU32::new(0);

/// How linphone sends DTMF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinphoneDtmf {
    /// RFC 2833/4733 telephone-events in the audio stream (`use_rfc2833=1`, `use_info=0`).
    Rfc4733,
    /// SIP INFO `application/dtmf-relay` only (`use_rfc2833=0`, `use_info=1`).
    SipInfo,
}

#[derive(Clone, Debug)]
pub struct LinphoneOptions {
    /// Registers at Kamailio as `sip:USER@<domain>`.
    pub user: String,
    /// Frequency of the tone it sends as its microphone (Hz).
    pub tone_hz: u32,
    /// Sends the static picture and decodes received video (`-C -D`); audio only otherwise.
    pub video: bool,
    /// Answer incoming calls at once (`autoanswer enable`); otherwise call [`Linphone::answer`].
    pub auto_answer: bool,
    pub dtmf: LinphoneDtmf,
    /// Lifetime of the ephemeral SIP credentials.
    pub credential_ttl: Duration,
    /// liblinphone's log level (`-d`, 0 none .. 6 everything, SIP messages from 5) into `linphone-debug.log`.
    pub debug_level: u8,
}

impl LinphoneOptions {
    pub fn registered_user(user: impl Into<String>) -> Self {
        LinphoneOptions {
            user: user.into(),
            tone_hz: 1000,
            video: true,
            auto_answer: false,
            dtmf: LinphoneDtmf::Rfc4733,
            credential_ttl: Duration::from_secs(3600),
            debug_level: 5,
        }
    }

    pub fn tone_hz(mut self, hz: u32) -> Self {
        self.tone_hz = hz;
        self
    }

    pub fn video(mut self, yes: bool) -> Self {
        self.video = yes;
        self
    }

    pub fn auto_answer(mut self, yes: bool) -> Self {
        self.auto_answer = yes;
        self
    }

    pub fn dtmf(mut self, mode: LinphoneDtmf) -> Self {
        self.dtmf = mode;
        self
    }
}

/// What linphonec reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinphoneEvent {
    /// `status register` answered "registered, identity=...".
    Registered,
    /// "Receiving new incoming call from X, assigned id N".
    IncomingCall,
    /// "Establishing call id to X, assigned id N".
    OutgoingInit,
    /// "Call N to X in progress."
    OutgoingProgress,
    /// "Call N to X ringing."
    Ringing,
    /// "Call N with X connected."
    Connected,
    /// "Media streams established with X for call N (audio|video)." (`param`: audio or video); also after a
    /// resume.
    StreamsRunning,
    /// "Pausing call N with X."
    Pausing,
    /// "Call N with X is now paused." (paused by linphone)
    Paused,
    /// "Call N has been paused by X."
    PausedByRemote,
    /// "Resuming call N with X."
    Resuming,
    /// "Call N with X ended (reason)." (`param`: liblinphone's reason, e.g. "None", "Declined")
    Ended,
    /// "Call N with X error."
    Error,
    /// "Receiving tone D from X" (`param`: the digit).
    DtmfReceived,
}

/// One event as printed.
#[derive(Clone, Debug)]
pub struct LinphoneEventRecord {
    pub kind: LinphoneEvent,
    /// linphonec's call id (1, 2, ... in the order calls appeared).
    pub call_id: Option<u32>,
    pub peer: Option<String>,
    pub param: Option<String>,
    pub line: String,
}

/// Parses one line of linphonec's stdout (prompts stripped) into an event, if it is one.
pub fn parse_line(raw: &str) -> Option<LinphoneEventRecord> {
    let line = raw.rsplit(PROMPT).next().unwrap_or(raw).trim();
    let rec = |kind, call_id: Option<&str>, peer: Option<&str>, param: Option<&str>| LinphoneEventRecord {
        kind,
        call_id: call_id.and_then(|s| s.trim().parse().ok()),
        peer: peer.map(|s| s.trim().to_string()),
        param: param.map(|s| s.trim().to_string()),
        line: line.to_string(),
    };
    if let Some(rest) = line.strip_prefix("Receiving new incoming call from ") {
        let (from, id) = rest.rsplit_once(", assigned id ")?;
        return Some(rec(LinphoneEvent::IncomingCall, Some(id), Some(from), None));
    }
    if let Some(rest) = line.strip_prefix("Establishing call id to ") {
        let (to, id) = rest.rsplit_once(", assigned id ")?;
        return Some(rec(LinphoneEvent::OutgoingInit, Some(id), Some(to), None));
    }
    if let Some(rest) = line.strip_prefix("Receiving tone ") {
        let (digit, from) = rest.split_once(" from ")?;
        return Some(rec(LinphoneEvent::DtmfReceived, None, Some(from), Some(digit)));
    }
    if let Some(rest) = line.strip_prefix("Media streams established with ") {
        let (peer, rest) = rest.rsplit_once(" for call ")?;
        let (id, kind) = rest.split_once(' ')?;
        let kind = kind.trim_end_matches('.').trim_start_matches('(').trim_end_matches(')');
        return Some(rec(LinphoneEvent::StreamsRunning, Some(id), Some(peer), Some(kind)));
    }
    if let Some(rest) = line.strip_prefix("Pausing call ") {
        let (id, peer) = rest.trim_end_matches('.').split_once(" with ")?;
        return Some(rec(LinphoneEvent::Pausing, Some(id), Some(peer), None));
    }
    if let Some(rest) = line.strip_prefix("Resuming call ") {
        let (id, peer) = rest.trim_end_matches('.').split_once(" with ")?;
        return Some(rec(LinphoneEvent::Resuming, Some(id), Some(peer), None));
    }
    if let Some(rest) = line.strip_prefix("registered, identity=") {
        let identity = rest.split(" duration=").next().unwrap_or(rest);
        return Some(rec(LinphoneEvent::Registered, None, Some(identity), None));
    }
    let rest = line.strip_prefix("Call ")?;
    let (id, rest) = rest.split_once(' ')?;
    id.parse::<u32>().ok()?;
    if let Some(rest) = rest.strip_prefix("has been paused by ") {
        return Some(rec(LinphoneEvent::PausedByRemote, Some(id), Some(rest.trim_end_matches('.')), None));
    }
    if let Some(rest) = rest.strip_prefix("to ") {
        if let Some(peer) = rest.strip_suffix(" ringing.") {
            return Some(rec(LinphoneEvent::Ringing, Some(id), Some(peer), None));
        }
        if let Some(peer) = rest.strip_suffix(" in progress.") {
            return Some(rec(LinphoneEvent::OutgoingProgress, Some(id), Some(peer), None));
        }
        return None;
    }
    let rest = rest.strip_prefix("with ")?;
    if let Some(peer) = rest.strip_suffix(" connected.") {
        return Some(rec(LinphoneEvent::Connected, Some(id), Some(peer), None));
    }
    if let Some(peer) = rest.strip_suffix(" is now paused.") {
        return Some(rec(LinphoneEvent::Paused, Some(id), Some(peer), None));
    }
    if let Some(peer) = rest.strip_suffix(" error.") {
        return Some(rec(LinphoneEvent::Error, Some(id), Some(peer), None));
    }
    if let Some(rest) = rest.strip_suffix(").") {
        let (peer, reason) = rest.rsplit_once(" ended (")?;
        return Some(rec(LinphoneEvent::Ended, Some(id), Some(peer), Some(reason)));
    }
    None
}

#[derive(Default)]
struct Shared {
    events: EventLog<LinphoneEventRecord>,
}

/// A running linphonec. Dropping it kills the process (its files stay in the stack's dir).
pub struct Linphone {
    name: String,
    aor: String,
    dir: PathBuf,
    debug_log: PathBuf,
    process: ServerProcess,
    stdin: Mutex<File>,
    shared: Arc<Shared>,
    reader: tokio::task::JoinHandle<()>,
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> HarnessError + 'a {
    move |source| HarnessError::Io { what, path: path.to_path_buf(), source }
}

/// A mono 16-bit WAV of a sine at `hz`, -12 dBFS peak.
fn write_tone_wav(path: &Path, hz: u32, seconds: u32, rate: u32) -> Result<(), HarnessError> {
    let n = (seconds * rate) as usize;
    let data_len = u32::try_from(n * 2).unwrap_or(u32::MAX);
    let mut wav = Vec::with_capacity(44 + n * 2);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    let w = 2.0 * std::f64::consts::PI * f64::from(hz) / f64::from(rate);
    for i in 0..n {
        let v = (8_192.0 * (w * i as f64).sin()).round() as i16;
        wav.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, wav).map_err(io_err("cannot write", path))
}

struct Launch<'a> {
    sip_port: u16,
    rtp_range: (u16, u16),
    kamailio_port: u16,
    domain: &'a str,
    auth_user: &'a str,
    password: &'a str,
}

/// linphonec's configuration. Notes: `supported` leaves out `gruu`: with it Kamailio hands out a public GRUU,
/// linphone puts it in its Contact, and the stack's Kamailio cannot route in-dialog requests to it (the ACK of
/// linphone's 200 OK never arrives: the dialog times out after 32 s and liblinphone aborts on the next re-INVITE).
/// `auto_net_state_mon=0`: the namespace has no default route, which liblinphone would take for "network down".
fn linphonerc(opts: &LinphoneOptions, l: &Launch<'_>) -> String {
    let (lo, hi) = l.rtp_range;
    let mid = lo + (hi - lo) / 2;
    let (use_rfc2833, use_info) = match opts.dtmf {
        LinphoneDtmf::Rfc4733 => (1, 0),
        LinphoneDtmf::SipInfo => (0, 1),
    };
    let video = u8::from(opts.video);
    format!(
        "[sip]\n\
         sip_port={sip}\n\
         supported=replaces, outbound\n\
         sip_tcp_port=0\n\
         sip_tls_port=0\n\
         bind_address=127.0.0.1\n\
         use_ipv6=0\n\
         ipv6_migration_done=1\n\
         auto_net_state_mon=0\n\
         register_only_when_network_is_up=0\n\
         guess_hostname=1\n\
         inc_timeout=60\n\
         use_rfc2833={use_rfc2833}\n\
         use_info={use_info}\n\
         media_encryption=none\n\
         default_proxy=0\n\
         \n\
         [net]\n\
         dns_srv_enabled=0\n\
         firewall_policy=0\n\
         mtu=1300\n\
         \n\
         [rtp]\n\
         bind_address=127.0.0.1\n\
         audio_rtp_port={lo}-{mid}\n\
         video_rtp_port={vlo}-{hi}\n\
         nortp_timeout=30\n\
         \n\
         [sound]\n\
         echocancellation=0\n\
         echolimiter=0\n\
         agc=0\n\
         \n\
         [video]\n\
         enabled={video}\n\
         capture={video}\n\
         display={video}\n\
         show_local=0\n\
         self_view=0\n\
         automatically_initiate={video}\n\
         automatically_accept={video}\n\
         device=StaticImage: Static picture\n\
         displaytype=MSExtDisplay\n\
         size=qvga\n\
         \n\
         [proxy_0]\n\
         reg_proxy=<sip:127.0.0.1:{kam};transport=udp>\n\
         reg_route=<sip:127.0.0.1:{kam};transport=udp;lr>\n\
         reg_identity=\"{user}\" <sip:{user}@{domain}>\n\
         realm={domain}\n\
         reg_expires=600\n\
         reg_sendregister=1\n\
         publish=0\n\
         dial_escape_plus=0\n\
         quality_reporting_enabled=0\n\
         avpf=0\n\
         \n\
         [auth_info_0]\n\
         username={user}\n\
         userid={auth_user}\n\
         passwd={password}\n\
         realm={domain}\n\
         domain={domain}\n",
        sip = l.sip_port,
        vlo = mid + 1,
        kam = l.kamailio_port,
        user = opts.user,
        domain = l.domain,
        auth_user = l.auth_user,
        password = l.password,
    )
}

impl Linphone {
    /// Starts linphonec for `opts.user` on `stack` and waits until it is registered at Kamailio.
    pub async fn start(stack: &Stack, opts: LinphoneOptions) -> Result<Self, HarnessError> {
        stack.check_health()?;
        let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let name = format!("linphone-{}", opts.user);
        let dir = stack.dir().join(format!("linphone-{}-{n}", opts.user));
        let home = dir.join("home");
        let data = home.join(".local/share/linphone");
        std::fs::create_dir_all(&data).map_err(io_err("cannot create", &data))?;
        let tone = dir.join(format!("tone-{}hz.wav", opts.tone_hz));
        write_tone_wav(&tone, opts.tone_hz, TONE_SECONDS, TONE_RATE)?;

        let creds = stack.sip_credentials(&opts.user, opts.credential_ttl);
        let launch = Launch {
            sip_port: ports::reserve()?,
            rtp_range: ports::media_range(),
            kamailio_port: stack.kamailio_addr().port(),
            domain: stack.sip_domain(),
            auth_user: &creds.username,
            password: creds.password.expose(),
        };
        let rc = dir.join("linphonerc");
        // It holds the SIP password: owner-only, as linphonec itself rewrites it.
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&rc)
            .and_then(|mut f| f.write_all(linphonerc(&opts, &launch).as_bytes()))
            .map_err(io_err("cannot write", &rc))?;

        // linphonec's stdin: a FIFO the harness holds open read-write (so opening it never blocks and linphonec
        // never sees end-of-file while the harness lives).
        let fifo = dir.join("stdin.fifo");
        let c_path =
            std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(fifo.as_os_str())).map_err(|_| {
                HarnessError::Io {
                    what: "bad path for",
                    path: fifo.clone(),
                    source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
                }
            })?;
        // SAFETY: mkfifo on a NUL-terminated path this function owns.
        if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } != 0 {
            return Err(HarnessError::Io {
                what: "cannot mkfifo",
                path: fifo,
                source: std::io::Error::last_os_error(),
            });
        }
        let stdin = OpenOptions::new().read(true).write(true).open(&fifo).map_err(io_err("cannot open", &fifo))?;

        let debug_log = dir.join("linphone-debug.log");
        let mut args = vec![
            "-c".to_string(),
            // HOME: linphonec keeps its history, ZRTP cache and database there.
            "HOME=$1; export HOME; f=$2; shift 2; exec \"$@\" <\"$f\"".to_string(),
            "sh".to_string(),
            home.display().to_string(),
            fifo.display().to_string(),
            "linphonec".to_string(),
            "-c".to_string(),
            rc.display().to_string(),
        ];
        if opts.debug_level > 0 {
            args.extend(["-d".into(), opts.debug_level.to_string(), "-l".into(), debug_log.display().to_string()]);
        }
        if opts.video {
            // Capture and display, not -V: that also opens a preview window.
            args.extend(["-C".into(), "-D".into()]);
        }
        let log = dir.join("linphonec.log");
        let process = ServerProcess::spawn(&name, "sh", &args, &dir, log.clone(), LOG_LIMIT)?;
        let shared = Arc::new(Shared::default());
        let reader = tokio::spawn(read_loop(log, shared.clone(), name.clone()));
        let phone = Linphone {
            name,
            aor: format!("sip:{}@{}", opts.user, stack.sip_domain()),
            dir,
            debug_log,
            process,
            stdin: Mutex::new(stdin),
            shared,
            reader,
        };
        phone.command("soundcard use files")?;
        phone.command(&format!("play {}", tone.display()))?;
        phone.record_to("received-0.wav")?;
        if opts.auto_answer {
            phone.command("autoanswer enable")?;
        }
        phone.wait_registered(START_TIMEOUT).await?;
        Ok(phone)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `sip:USER@<domain>`.
    pub fn aor(&self) -> &str {
        &self.aor
    }

    /// Its own folder in the stack's dir (config, home, tone, recordings, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// linphonec's stdout and stderr (the events, the command echo).
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// liblinphone's own log (`-d`/`-l`), with the SIP messages at level 5 and above.
    pub fn debug_log_path(&self) -> &Path {
        &self.debug_log
    }

    pub fn log_tail(&self, max_bytes: u64) -> String {
        self.process.log_tail(max_bytes)
    }

    /// The whole of liblinphone's log (lossy UTF-8; empty if it has none).
    pub fn debug_log(&self) -> String {
        std::fs::read(&self.debug_log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// The internet sockets linphonec holds (from `/proc`: its descriptors matched against its namespace's socket
    /// tables), with their local addresses.
    pub fn sockets(&self) -> Result<Vec<LocalSocket>, HarnessError> {
        self.process.check()?;
        let pid = self.process.pid();
        let fd_dir = PathBuf::from(format!("/proc/{pid}/fd"));
        let inodes: std::collections::HashSet<u64> = std::fs::read_dir(&fd_dir)
            .map_err(io_err("cannot list", &fd_dir))?
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter_map(|link| {
                let link = link.to_str()?.to_string();
                link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
            })
            .collect();
        let mut found = Vec::new();
        for protocol in ["udp", "udp6", "tcp", "tcp6"] {
            let table = PathBuf::from(format!("/proc/{pid}/net/{protocol}"));
            let text = std::fs::read_to_string(&table).map_err(io_err("cannot read", &table))?;
            found.extend(
                parse_socket_table(protocol, &text)
                    .into_iter()
                    .filter(|(inode, _)| inodes.contains(inode))
                    .map(|(_, s)| s),
            );
        }
        Ok(found)
    }

    /// Writes one command line to linphonec's stdin.
    pub fn command(&self, line: &str) -> Result<(), HarnessError> {
        self.process.check()?;
        if line.contains('\n') {
            return Err(self.cmd_err(line, "a command is one line".into()));
        }
        let mut stdin = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| self.cmd_err(line, format!("write to stdin: {e}")))
    }

    fn cmd_err(&self, command: &str, reason: String) -> HarnessError {
        let command = command.split_whitespace().next().unwrap_or("").to_string();
        HarnessError::Command { name: self.name.clone(), command, reason }
    }

    /// Calls a SIP URI (through Kamailio, the account's proxy).
    pub fn call(&self, uri: &str) -> Result<(), HarnessError> {
        self.command(&format!("call {uri}"))
    }

    /// Answers the (single) incoming call.
    pub fn answer(&self) -> Result<(), HarnessError> {
        self.command("answer")
    }

    /// Hangs up the current call.
    pub fn terminate(&self) -> Result<(), HarnessError> {
        self.command("terminate")
    }

    /// Puts the current call on hold (a re-INVITE with `a=sendonly`; linphone then plays its file as music).
    pub fn pause(&self) -> Result<(), HarnessError> {
        self.command("pause")
    }

    /// Resumes the single paused call.
    pub fn resume(&self) -> Result<(), HarnessError> {
        self.command("resume")
    }

    /// Sends DTMF digits in the current call the way [`LinphoneOptions::dtmf`] says. linphonec sends one digit a
    /// second and does nothing else meanwhile; wait for what the digits cause, not for this.
    pub fn send_digits(&self, digits: &str) -> Result<(), HarnessError> {
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit() || c == '#' || c == '*') {
            return Err(self.cmd_err("dtmf", "linphonec sends only 0-9, * and #".into()));
        }
        self.command(digits)
    }

    /// How often the static picture is sent in the running call (once a second by default; liblinphone applies
    /// it to a running video stream only).
    pub fn static_picture_fps(&self, fps: u32) -> Result<(), HarnessError> {
        self.command(&format!("staticpic fps {fps}"))
    }

    /// Where the audio decoded from the next stream start (the next call, or a resume) is recorded: `name` in its
    /// folder. Returns the path.
    pub fn record_to(&self, name: &str) -> Result<PathBuf, HarnessError> {
        let path = self.dir.join(name);
        self.command(&format!("record {}", path.display()))?;
        Ok(path)
    }

    /// A recording linphone made (16-bit WAV; a file still being written is read to its end).
    pub fn recording(&self, path: &Path) -> Result<Recording, HarnessError> {
        let bytes = std::fs::read(path).map_err(io_err("cannot read", path))?;
        Recording::from_wav(&bytes).ok_or_else(|| {
            self.cmd_err("record", format!("{} is not 16-bit PCM WAV ({} bytes)", path.display(), bytes.len()))
        })
    }

    /// Saves the next video frame linphone decodes as a JPEG at `path` and waits for the file (up to `timeout`).
    pub async fn snapshot_received(&self, path: &Path, timeout: Duration) -> Result<(), HarnessError> {
        let _ = std::fs::remove_file(path);
        let deadline = Instant::now() + timeout;
        let mut asked: Option<Instant> = None;
        let mut last = 0;
        loop {
            // Asked again now and then: a request made before the first frame may be dropped.
            if asked.is_none_or(|t| t.elapsed() >= Duration::from_secs(3)) {
                self.command(&format!("snapshot {}", path.display()))?;
                asked = Some(Instant::now());
            }
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            if size > 0 && size == last {
                return Ok(());
            }
            last = size;
            if Instant::now() >= deadline {
                return Err(self
                    .cmd_err("snapshot", format!("no decoded frame saved at {} within {timeout:?}", path.display())));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Asks `status register` until linphonec says it is registered.
    async fn wait_registered(&self, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.command("status register")?;
            match self.wait_for(LinphoneEvent::Registered, Duration::from_millis(500)).await {
                Ok(_) => return Ok(()),
                Err(HarnessError::EventTimeout { .. }) if Instant::now() < deadline => {}
                Err(HarnessError::EventTimeout { .. }) => {
                    return Err(HarnessError::NotReady {
                        name: self.name.clone(),
                        timeout,
                        reason: "not registered at Kamailio".into(),
                        log: self.process.log_path().to_path_buf(),
                    })
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits for an event of `kind`, consuming it and every event before it. Events that arrived before the call
    /// count (nothing is missed between a command and the wait).
    pub async fn wait_for(&self, kind: LinphoneEvent, timeout: Duration) -> Result<LinphoneEventRecord, HarnessError> {
        let deadline = tokio::time::Instant::now() + timeout;
        // The reader polls the log: look at least that often whether the process ended.
        let alive = || self.process.check();
        match self.shared.events.wait_for(|e| e.kind == kind, deadline, Duration::from_millis(500), alive).await? {
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
    pub fn pending_events(&self) -> Vec<LinphoneEventRecord> {
        self.shared.events.pending()
    }

    fn recent_events(&self, n: usize) -> String {
        let list: Vec<String> = self.shared.events.recent(n).into_iter().map(|e| e.line).collect();
        if list.is_empty() {
            format!("none pending; stdout tail: {}", self.log_tail(600).replace('\n', " | "))
        } else {
            list.join(" | ")
        }
    }
}

impl Drop for Linphone {
    fn drop(&mut self) {
        self.reader.abort();
        if std::thread::panicking() {
            eprintln!(
                "===== {} ({}) =====\n{}\n===== {} liblinphone log: {} =====",
                self.name,
                self.process.log_path().display(),
                self.process.log_tail(6 * 1024),
                self.name,
                self.debug_log.display()
            );
        }
        // `process` is dropped next: SIGTERM to its group, then SIGKILL.
    }
}

/// Follows linphonec's stdout log, turning complete lines into events.
async fn read_loop(log: PathBuf, shared: Arc<Shared>, name: String) {
    let mut offset = 0u64;
    let mut partial = String::new();
    loop {
        tokio::time::sleep(POLL).await;
        let Ok(mut f) = File::open(&log) else { continue };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len <= offset || f.seek(SeekFrom::Start(offset)).is_err() {
            continue;
        }
        let mut buf = Vec::new();
        if f.take(len - offset).read_to_end(&mut buf).is_err() {
            continue;
        }
        offset += buf.len() as u64;
        partial.push_str(&String::from_utf8_lossy(&buf));
        let Some(end) = partial.rfind('\n') else { continue };
        let complete: String = partial.drain(..=end).collect();
        let records: Vec<LinphoneEventRecord> = complete.lines().filter_map(parse_line).collect();
        for record in &records {
            log::info!("{name}: {:?} {}", record.kind, record.line);
        }
        shared.events.push(records);
    }
}

/// An internet socket of linphonec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalSocket {
    /// `udp`, `udp6`, `tcp` or `tcp6`.
    pub protocol: &'static str,
    pub local: std::net::SocketAddr,
}

/// The rows of a `/proc/PID/net/{udp,tcp}[6]` table as (inode, socket).
fn parse_socket_table(protocol: &'static str, text: &str) -> Vec<(u64, LocalSocket)> {
    let addr = |hex: &str| -> Option<std::net::SocketAddr> {
        let (ip, port) = hex.split_once(':')?;
        let port = u16::from_str_radix(port, 16).ok()?;
        // The address is printed as the in-memory words, each in host (little-endian) order.
        let mut bytes = Vec::with_capacity(16);
        for i in (0..ip.len()).step_by(8) {
            bytes.extend(u32::from_str_radix(ip.get(i..i + 8)?, 16).ok()?.to_le_bytes());
        }
        let ip = match bytes.len() {
            4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
            16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
            _ => return None,
        };
        Some(std::net::SocketAddr::new(ip, port))
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = addr(fields.get(1)?)?;
            let inode = fields.get(9)?.parse().ok()?;
            Some((inode, LocalSocket { protocol, local }))
        })
        .collect()
}

/// A decoded picture as 8-bit grey levels.
#[derive(Clone, Debug)]
pub struct GrayImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl GrayImage {
    /// The standard deviation of the grey levels (a flat picture: near 0).
    pub fn spread(&self) -> f64 {
        let n = self.pixels.len().max(1) as f64;
        let mean = self.pixels.iter().map(|&p| f64::from(p)).sum::<f64>() / n;
        (self.pixels.iter().map(|&p| (f64::from(p) - mean).powi(2)).sum::<f64>() / n).sqrt()
    }
}

/// The width and height in a JPEG's start-of-frame segment.
pub fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.get(0..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut pos = 2;
    while pos + 4 <= bytes.len() {
        if bytes[pos] != 0xFF {
            return None;
        }
        let marker = bytes[pos + 1];
        if marker == 0xFF {
            pos += 1;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
            let s = bytes.get(pos + 5..pos + 9)?;
            let height = u32::from(u16::from_be_bytes([s[0], s[1]]));
            let width = u32::from(u16::from_be_bytes([s[2], s[3]]));
            return Some((width, height));
        }
        pos += 2 + len;
    }
    None
}

/// Decodes a JPEG (linphone's snapshot) to grey levels with GStreamer's `jpegdec` (`gst-launch-1.0`).
pub fn decode_jpeg(path: &Path) -> Result<GrayImage, HarnessError> {
    let bytes = std::fs::read(path).map_err(io_err("cannot read", path))?;
    let bad = |reason: String| HarnessError::Command { name: "jpeg".into(), command: "decode".into(), reason };
    let (width, height) = jpeg_size(&bytes).ok_or_else(|| bad(format!("{} is not a JPEG", path.display())))?;
    let raw = path.with_extension("gray");
    let out = Command::new("gst-launch-1.0")
        .args(["-q", "filesrc"])
        .arg(format!("location={}", path.display()))
        .args(["!", "jpegdec", "!", "videoconvert", "!", "video/x-raw,format=GRAY8", "!", "filesink"])
        .arg(format!("location={}", raw.display()))
        .output()
        .map_err(|source| HarnessError::Spawn { name: "jpegdec".into(), program: "gst-launch-1.0", source })?;
    if !out.status.success() {
        return Err(bad(format!("gst-launch-1.0 failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    let data = std::fs::read(&raw).map_err(io_err("cannot read", &raw))?;
    // GRAY8 rows are padded to 4 bytes.
    let stride = (width as usize).div_ceil(4) * 4;
    if data.len() < stride * height as usize {
        return Err(bad(format!("{} bytes of GRAY8 for {width}x{height}", data.len())));
    }
    let pixels = data.chunks(stride).take(height as usize).flat_map(|row| &row[..width as usize]).copied().collect();
    Ok(GrayImage { width, height, pixels })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linphonec_lines_parse_into_events() {
        let e =
            parse_line("linphonec> Receiving new incoming call from \"door\" <sip:door-l@callbox.test>, assigned id 1")
                .expect("incoming");
        assert_eq!(e.kind, LinphoneEvent::IncomingCall);
        assert_eq!(e.call_id, Some(1));
        assert_eq!(e.peer.as_deref(), Some("\"door\" <sip:door-l@callbox.test>"));
        let e = parse_line("Call 1 with sip:door-l@callbox.test connected.").expect("connected");
        assert_eq!((e.kind, e.call_id), (LinphoneEvent::Connected, Some(1)));
        let e = parse_line("linphonec> linphonec> Media streams established with sip:a@b for call 2 (video).")
            .expect("streams");
        assert_eq!((e.kind, e.call_id, e.param.as_deref()), (LinphoneEvent::StreamsRunning, Some(2), Some("video")));
        let e = parse_line("Receiving tone 5 from sip:door-l@callbox.test").expect("dtmf");
        assert_eq!((e.kind, e.param.as_deref()), (LinphoneEvent::DtmfReceived, Some("5")));
        let e = parse_line("Call 1 with sip:x@y ended (Declined).").expect("ended");
        assert_eq!(
            (e.kind, e.param.as_deref(), e.peer.as_deref()),
            (LinphoneEvent::Ended, Some("Declined"), Some("sip:x@y"))
        );
        assert_eq!(parse_line("Call 3 with sip:x@y is now paused.").map(|e| e.kind), Some(LinphoneEvent::Paused));
        assert_eq!(
            parse_line("Call 3 has been paused by sip:x@y.").map(|e| e.kind),
            Some(LinphoneEvent::PausedByRemote)
        );
        assert_eq!(parse_line("Pausing call 3 with sip:x@y.").map(|e| e.kind), Some(LinphoneEvent::Pausing));
        assert_eq!(parse_line("Resuming call 3 with sip:x@y.").map(|e| e.kind), Some(LinphoneEvent::Resuming));
        assert_eq!(parse_line("Call 4 to sip:x@y ringing.").map(|e| e.kind), Some(LinphoneEvent::Ringing));
        assert_eq!(parse_line("Call 4 to sip:x@y in progress.").map(|e| e.kind), Some(LinphoneEvent::OutgoingProgress));
        assert_eq!(parse_line("Call 4 with sip:x@y error.").map(|e| e.kind), Some(LinphoneEvent::Error));
        let e = parse_line("Establishing call id to sip:x@y, assigned id 4").expect("outgoing");
        assert_eq!((e.kind, e.call_id), (LinphoneEvent::OutgoingInit, Some(4)));
        let e = parse_line("linphonec> registered, identity=\"r\" <sip:r@d> duration=600").expect("registered");
        assert_eq!(e.kind, LinphoneEvent::Registered);
        assert!(parse_line("registered=-1").is_none());
        assert!(parse_line("linphonec> Call history").is_none());
        assert!(parse_line("Using wav files instead of soundcard.").is_none());
    }

    #[test]
    fn socket_tables_parse() {
        let udp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n \
                   3240: 0100007F:A144 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 145655 2 00000000fe8ee89b 0\n";
        let rows = parse_socket_table("udp", udp);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0, 145_655);
        assert_eq!(rows[0].1.local, "127.0.0.1:41284".parse::<std::net::SocketAddr>().unwrap());
        let udp6 = "header\n 1: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 07 0:0 0:0 0 0 0 777 2\n";
        assert_eq!(parse_socket_table("udp6", udp6)[0].1.local, "[::1]:8080".parse::<std::net::SocketAddr>().unwrap());
    }

    #[test]
    fn jpeg_sizes_come_from_the_frame_header() {
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0];
        jpeg.extend_from_slice(&[0xFF, 0xC0, 0, 11, 8, 0, 240, 1, 64, 3]);
        assert_eq!(jpeg_size(&jpeg), Some((320, 240)));
        assert_eq!(jpeg_size(b"not a jpeg"), None);
    }
}

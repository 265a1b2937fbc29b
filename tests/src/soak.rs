//! The soak run (`scripts/soak`, the `soak` program; a short one in `tests/tests/soak.rs`): one appliance, `callbox
//! run` on simulated devices as its own process, through many consecutive calls on the real local stack — 1:1 calls
//! it places (its call button, the `c` key on its stdin) and receives (auto-answered), group calls it is invited to
//! (auto-answered) — with short-lived tokens, hang-ups by a random side at a random moment (the seed is printed: a
//! run is reproduced with `--seed`), and Janus killed and started again in the middle of a call. Its resident
//! memory, open file descriptors and threads are read from /proc/PID (the harness's own are not counted), its tokio
//! tasks from the line it logs on SIGUSR2 (`appliance::health`); all four at the start (after a warm-up), every
//! `sample_every` calls and at the end, each time with the appliance idle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use callbox::calling::{CallState, Identifier, ParticipantState};
use callbox::client::{Call, CallClient, EventStream};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::AsyncWriteExt;

use crate::{HarnessError, Stack};

/// Bound on every wait for a party or the servers.
const WAIT: Duration = Duration::from_secs(30);
/// Between two calls: Janus's sip handle stays busy for a moment after its call ended.
const SETTLE: Duration = Duration::from_millis(500);
/// The appliance idle this long before its figures are read: longer than tokio's blocking threads live idle (10 s),
/// so that the threads of the last call's blocking work are not counted as grown.
const QUIET: Duration = Duration::from_secs(12);

/// The appliance under test and the parties in this process.
const DOOR: &str = "soak-door";
const MONITOR: &str = "soak-monitor";
const HOST: &str = "soak-host";
const GUEST: &str = "soak-guest";

/// Why a soak could not run (a failed call is not an error: it is counted, with its reason).
#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    #[error("test stack: {0}")]
    Stack(#[from] HarnessError),
    #[error("{who}: {what}: {source}")]
    Client { who: &'static str, what: &'static str, source: callbox::client::ClientError },
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("the appliance: {0}")]
    Appliance(String),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SoakError {
    let path = path.to_path_buf();
    move |source| SoakError::Io { what, path, source }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Calls counted (after the warm-up).
    pub calls: u32,
    /// The seed of every random choice (kind of call, hang-up side and moment).
    pub seed: u64,
    /// The `callbox` binary run as the appliance.
    pub callbox: PathBuf,
    /// The repository's `board/` (board profiles).
    pub board_dir: PathBuf,
    /// Longest talk before a hang-up (drawn in [0.3 s, this]).
    pub max_talk: Duration,
    /// Kill and restart Janus during the call in the middle of the run.
    pub janus_restart: bool,
    /// Figures every this many calls (0: only at the start and the end).
    pub sample_every: u32,
    /// Video of every party (width, height, fps).
    pub video: (u32, u32, u32),
}

/// The appliance's resource figures at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    /// Calls counted so far.
    pub after_calls: u32,
    /// `VmRSS` of /proc/PID/status, kB.
    pub rss_kb: u64,
    /// Entries of /proc/PID/fd.
    pub fds: u64,
    /// `Threads` of /proc/PID/status.
    pub threads: u64,
    /// Tokio tasks alive, from the appliance's `health:` line.
    pub tasks: u64,
    /// What its allocator has handed out and not had back, kB (from the same line; `None` without glibc).
    pub heap_kb: Option<u64>,
}

/// The kinds of call the soak mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CallKind {
    /// The appliance's call button: it calls the monitor, which answers.
    DoorbellToMonitor,
    /// The monitor calls the appliance, which answers on its own.
    MonitorToDoor,
    /// The host calls the appliance and a guest: a group call in a videoroom; the appliance answers on its own.
    Group,
}

/// Who ends a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    /// The appliance (its hang-up button, the `h` key).
    Appliance,
    /// The party in this process (the monitor, the host or the guest).
    FarEnd,
    /// Nobody: Janus was killed and started again during the call.
    JanusRestart,
}

/// What a soak measured.
#[derive(Debug, Clone)]
pub struct SoakReport {
    pub seed: u64,
    pub pid: u32,
    pub placed: BTreeMap<CallKind, u32>,
    pub connected: BTreeMap<CallKind, u32>,
    /// Calls hung up while still ringing, on purpose (not failures).
    pub cancelled_ringing: u32,
    pub hang_ups: BTreeMap<Side, u32>,
    /// Why calls failed, and how often.
    pub failed: BTreeMap<String, u32>,
    /// Janus killed -> the appliance registered again.
    pub janus_recovery: Option<Duration>,
    /// `token swapped in` lines of the appliance's log: tokens its client refreshed (or fetched after the restart).
    pub token_fetches: Option<u64>,
    pub samples: Vec<Figures>,
    pub elapsed: Duration,
}

impl SoakReport {
    pub fn start(&self) -> Option<Figures> {
        self.samples.first().copied()
    }
    pub fn end(&self) -> Option<Figures> {
        self.samples.last().copied()
    }
    pub fn failures(&self) -> u32 {
        self.failed.values().sum()
    }
}

/// The appliance's log (its stderr, in a file), read on from where the last look stopped, and what it counted.
struct ApplianceLog {
    path: PathBuf,
    seen: std::cell::RefCell<LogCounts>,
}

/// What the appliance's log said so far.
#[derive(Debug, Default)]
struct LogCounts {
    /// Bytes read (up to the end of the last whole line).
    offset: u64,
    /// Calls it placed or that rang it.
    started: usize,
    /// Calls it saw end.
    ended: usize,
    /// `connection: Ready` lines (registered, at start and after each reconnection).
    ready: usize,
    /// Tokens its client swapped in.
    tokens: usize,
    /// Its `health:` lines.
    health: Vec<String>,
    /// It said `appliance ready` (registered after its start).
    up: bool,
}

impl ApplianceLog {
    fn new(path: PathBuf) -> ApplianceLog {
        ApplianceLog { path, seen: Default::default() }
    }

    /// Reads what was written since the last look and returns the counts.
    fn counts(&self) -> std::cell::RefMut<'_, LogCounts> {
        use std::io::{Read, Seek};
        let mut seen = self.seen.borrow_mut();
        let mut new = Vec::new();
        if let Ok(mut file) = std::fs::File::open(&self.path) {
            if file.seek(std::io::SeekFrom::Start(seen.offset)).is_ok() {
                let _ = file.read_to_end(&mut new);
            }
        }
        let whole = new.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        seen.offset += whole as u64;
        for line in String::from_utf8_lossy(&new[..whole]).lines() {
            let Some((_, msg)) = line.split_once("] ") else { continue };
            if line.contains("callbox::appliance::run]") {
                if msg.starts_with("calling ") || msg.starts_with("incoming call from ") {
                    seen.started += 1;
                } else if msg.starts_with("call ended: ") {
                    seen.ended += 1;
                } else if msg == "connection: Ready" {
                    seen.ready += 1;
                } else if msg.starts_with("appliance ready as ") {
                    seen.up = true;
                }
            } else if msg.starts_with("token swapped in") {
                seen.tokens += 1;
            } else if msg.starts_with("health: ") {
                seen.health.push(msg.to_owned());
            }
        }
        seen
    }

    fn appliance_ready(&self) -> bool {
        self.counts().up
    }
}

/// The appliance process.
struct Appliance {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    pid: u32,
    log: ApplianceLog,
}

impl Appliance {
    async fn key(&mut self, key: &str) -> Result<(), SoakError> {
        let write = async {
            self.stdin.write_all(format!("{key}\n").as_bytes()).await?;
            self.stdin.flush().await
        };
        write.await.map_err(|e| SoakError::Appliance(format!("cannot press '{key}': {e}")))
    }

    fn check_alive(&mut self) -> Result<(), SoakError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                Err(SoakError::Appliance(format!("exited ({status}); log {}", self.log.path.display())))
            }
            Err(e) => Err(SoakError::Appliance(format!("cannot wait for it: {e}"))),
        }
    }

    /// Waits until every call the appliance started has ended (`WAIT` at most).
    async fn idle(&self) -> bool {
        until(WAIT, || {
            let c = self.log.counts();
            c.started == c.ended
        })
        .await
    }

    /// Its figures, read once it has been idle for [`QUIET`].
    async fn figures(&self, after_calls: u32) -> Result<Figures, SoakError> {
        self.idle().await;
        tokio::time::sleep(QUIET).await;
        let before = self.log.counts().health.len();
        // SAFETY: sending a signal to our own child process.
        if unsafe { libc::kill(self.pid as i32, libc::SIGUSR2) } != 0 {
            return Err(SoakError::Appliance("cannot signal it".into()));
        }
        let mut line = None;
        until(Duration::from_secs(10), || {
            line = self.log.counts().health.get(before).cloned();
            line.is_some()
        })
        .await;
        let line = line.ok_or_else(|| SoakError::Appliance("no health line after SIGUSR2".into()))?;
        let tasks =
            number_after(&line, "tasks ").ok_or_else(|| SoakError::Appliance(format!("no task count in '{line}'")))?;
        let status_path = PathBuf::from(format!("/proc/{}/status", self.pid));
        let status = std::fs::read_to_string(&status_path).map_err(io_err("cannot read", &status_path))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        };
        let fd_dir = PathBuf::from(format!("/proc/{}/fd", self.pid));
        let fds = std::fs::read_dir(&fd_dir).map_err(io_err("cannot list", &fd_dir))?.count() as u64;
        match (field("VmRSS:"), field("Threads:")) {
            (Some(rss_kb), Some(threads)) => {
                Ok(Figures { after_calls, rss_kb, fds, threads, tasks, heap_kb: number_after(&line, "heap ") })
            }
            _ => Err(SoakError::Appliance(format!("no VmRSS or Threads in {}", status_path.display()))),
        }
    }
}

/// The number right after `prefix` in `line` (`"health: tasks 42, ..."`, `"tasks "` -> 42).
fn number_after(line: &str, prefix: &str) -> Option<u64> {
    let (_, rest) = line.split_once(prefix)?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Polls `check` every 100 ms until it holds (true) or `timeout` passes (false).
async fn until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn user(name: &str) -> Identifier {
    // The names are constants of this file, valid user ids.
    Identifier::user(name).unwrap_or_else(|e| panic!("user id {name}: {e}"))
}

/// Writes the appliance's `callbox.toml` (its key provisioned at the stack, in a 0600 file).
fn write_config(stack: &Stack, dir: &Path, video: (u32, u32, u32)) -> Result<PathBuf, SoakError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(io_err("cannot create", dir))?;
    let key_file = dir.join("device-key");
    std::fs::write(&key_file, crate::appliance::provision_device(stack, DOOR).expose())
        .map_err(io_err("cannot write", &key_file))?;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err("cannot chmod", &key_file))?;
    let config = dir.join("callbox.toml");
    let (w, h, fps) = video;
    std::fs::write(
        &config,
        format!(
            "[identity]\ndisplay_name = \"Soak door\"\n\
             [servers]\njanus_urls = [\"{janus}\"]\ntoken_url = \"{token}\"\nallow_insecure_http = true\n\
             [credentials]\ndevice_key_file = \"{key}\"\n\
             [call]\ntargets = [\"{MONITOR}\"]\nauto_answer_after_secs = 0\n\
             [admission]\ncallers = [\"any-user\"]\nauto_answer = [\"{MONITOR}\", \"{HOST}\"]\n\
             [buttons]\ncall = \"call\"\nhang_up = \"hang_up\"\n\
             [leds]\nidle = \"idle\"\nringing = \"ringing\"\nin_call = \"in_call\"\nfault = \"fault\"\n\
             [devices]\nsim = true\n\
             [video]\nwidth = {w}\nheight = {h}\nfps = {fps}\n\
             [display]\nenabled = true\nscreen = \"{w}x{h}\"\nfps = {fps}\n\
             [network]\nmedia_ip = \"127.0.0.1\"\n\
             [board]\nprofile = \"sim\"\n",
            janus = stack.janus_ws_url(),
            token = stack.token_url(),
            key = key_file.display()
        ),
    )
    .map_err(io_err("cannot write", &config))?;
    Ok(config)
}

/// Checks the configuration (`callbox check-config`), then starts `callbox run` and waits until it registered.
async fn start_appliance(stack: &Stack, o: &SoakOptions) -> Result<Appliance, SoakError> {
    let dir = stack.dir().join("soak-door");
    let config = write_config(stack, &dir, o.video)?;
    let check = tokio::process::Command::new(&o.callbox)
        .arg("check-config")
        .arg(&config)
        .arg("--board-dir")
        .arg(&o.board_dir)
        .output()
        .await
        .map_err(io_err("cannot run", &o.callbox))?;
    let report = String::from_utf8_lossy(&check.stdout);
    if !check.status.success() || !report.contains("result: OK") {
        return Err(SoakError::Appliance(format!("check-config refused its configuration:\n{report}")));
    }
    let log_path = dir.join("callbox.log");
    let log_file = std::fs::File::create(&log_path).map_err(io_err("cannot create", &log_path))?;
    let mut child = tokio::process::Command::new(&o.callbox)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--board-dir")
        .arg(&o.board_dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .map_err(io_err("cannot start", &o.callbox))?;
    let (Some(pid), Some(stdin)) = (child.id(), child.stdin.take()) else {
        return Err(SoakError::Appliance("exited at once".into()));
    };
    let mut door = Appliance { child, stdin, pid, log: ApplianceLog::new(log_path) };
    let ready = until(WAIT, || door.log.appliance_ready()).await;
    door.check_alive()?;
    if !ready {
        return Err(SoakError::Appliance(format!("not ready within {WAIT:?}; log {}", door.log.path.display())));
    }
    Ok(door)
}

/// The parties in this process.
struct Parties {
    monitor: CallClient,
    host: CallClient,
    guest: CallClient,
    monitor_events: EventStream,
    guest_events: EventStream,
}

impl Parties {
    fn all(&self) -> [&CallClient; 3] {
        [&self.monitor, &self.host, &self.guest]
    }

    async fn hang_up_everything(&self) {
        for client in self.all() {
            for call in client.calls() {
                let _ = call.hang_up().await;
            }
        }
    }

    async fn shutdown(&self) {
        for client in self.all() {
            client.shutdown().await;
        }
    }

    /// Drops incoming calls left over from an earlier call (a failure's leftovers).
    fn drain_incoming(&mut self) {
        while self.monitor_events.try_next().is_some() {}
        while self.guest_events.try_next().is_some() {}
    }
}

/// What one call came to.
enum Outcome {
    Connected(Side),
    CancelledRinging,
    Failed(String),
}

/// The plan of one call, drawn from the seed.
#[derive(Debug, Clone, Copy)]
struct Plan {
    kind: CallKind,
    side: Side,
    /// Hang up while it still rings (1:1 calls the appliance places only).
    while_ringing: bool,
    talk: Duration,
}

fn draw(rng: &mut StdRng, max_talk: Duration) -> Plan {
    let kind = match rng.random_range(0..20) {
        0..7 => CallKind::DoorbellToMonitor,
        7..13 => CallKind::MonitorToDoor,
        _ => CallKind::Group,
    };
    let side = if rng.random_bool(0.5) { Side::Appliance } else { Side::FarEnd };
    let while_ringing = kind == CallKind::DoorbellToMonitor && rng.random_bool(0.1);
    let max = max_talk.as_millis().max(301) as u64;
    let talk = Duration::from_millis(rng.random_range(300..=max));
    Plan { kind, side, while_ringing, talk }
}

/// The plans of the first `calls` calls of `seed` (what `soak --plan` prints), one line each.
pub fn plans(seed: u64, calls: u32, max_talk: Duration) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    (1..=calls)
        .map(|n| {
            let p = draw(&mut rng, max_talk);
            let ringing = if p.while_ringing { ", hung up while ringing" } else { "" };
            format!("call {n}: {:?}, ended by {:?} after {} ms{ringing}", p.kind, p.side, p.talk.as_millis())
        })
        .collect()
}

async fn wait_call(call: &Call, want: CallState) -> Result<(), String> {
    let mut events = call.events();
    call.wait_state(&mut events, |s| s == want, WAIT).await.map_err(|e| {
        let reason = call.end_reason().map(|r| format!("{} {}", r.code, r.message));
        format!("never {want:?}: {e}{}", reason.map(|r| format!(" ({r})")).unwrap_or_default())
    })
}

/// The far end heard and saw the appliance during the call (checked for calls of 2 s or more).
fn media_from_door(call: &Call) -> Result<(), String> {
    match call.media_stats() {
        Some(s) if s.audio_packets_received > 0 && s.video_frames_decoded > 0 => Ok(()),
        Some(s) => Err(format!(
            "no media from the appliance ({} audio packets, {} video frames)",
            s.audio_packets_received, s.video_frames_decoded
        )),
        None => Err("no media figures at the far end".into()),
    }
}

/// Places one call according to `plan` and ends it; `restart` kills Janus instead of a hang-up.
async fn one_call(
    stack: &Stack,
    door: &mut Appliance,
    p: &mut Parties,
    plan: Plan,
    restart: bool,
) -> Result<(Outcome, Option<Duration>), SoakError> {
    p.drain_incoming();
    // The call the far end holds, and (for a group call) the guest's.
    let (far, guest_call) = match plan.kind {
        CallKind::DoorbellToMonitor => {
            door.key("c").await?;
            let incoming = match tokio::time::timeout(WAIT, p.monitor.next_incoming_call(&mut p.monitor_events)).await {
                Ok(Some(i)) => i,
                _ => return Ok((Outcome::Failed("the monitor did not ring".into()), None)),
            };
            if plan.while_ringing {
                tokio::time::sleep(plan.talk.min(Duration::from_secs(2))).await;
                let call = incoming.call().clone();
                match plan.side {
                    Side::Appliance => door.key("h").await?,
                    _ => incoming.reject(486).await.map_err(|source| SoakError::Client {
                        who: "monitor",
                        what: "cannot decline",
                        source,
                    })?,
                }
                return Ok(match wait_call(&call, CallState::Disconnected).await {
                    Ok(()) => (Outcome::CancelledRinging, None),
                    Err(e) => (Outcome::Failed(format!("cancelled while ringing: {e}")), None),
                });
            }
            match incoming.accept().await {
                Ok(call) => (call, None),
                Err(e) => return Ok((Outcome::Failed(format!("the monitor could not accept: {e}")), None)),
            }
        }
        CallKind::MonitorToDoor => match p.monitor.call(&[user(DOOR)]) {
            Ok(call) => (call, None),
            Err(e) => return Ok((Outcome::Failed(format!("the monitor could not call: {e}")), None)),
        },
        CallKind::Group => {
            let call = match p.host.call(&[user(DOOR), user(GUEST)]) {
                Ok(call) => call,
                Err(e) => return Ok((Outcome::Failed(format!("the host could not call: {e}")), None)),
            };
            let incoming = match tokio::time::timeout(WAIT, p.guest.next_incoming_call(&mut p.guest_events)).await {
                Ok(Some(i)) => i,
                _ => return Ok((Outcome::Failed("the guest did not ring".into()), None)),
            };
            match incoming.accept().await {
                Ok(g) => (call, Some(g)),
                Err(e) => return Ok((Outcome::Failed(format!("the guest could not accept: {e}")), None)),
            }
        }
    };
    if let Err(e) = wait_call(&far, CallState::Connected).await {
        return Ok((Outcome::Failed(format!("{:?}: {e}", plan.kind)), None));
    }
    if plan.kind == CallKind::Group {
        let door_in = || {
            far.remote_participants()
                .into_iter()
                .any(|r| r.identifier().is_some_and(|i| i.as_str() == DOOR) && r.state() == ParticipantState::Connected)
        };
        if !until(WAIT, door_in).await {
            return Ok((Outcome::Failed("the appliance never joined the group call".into()), None));
        }
    }
    tokio::time::sleep(plan.talk).await;
    if far.state() == CallState::Disconnected {
        return Ok((Outcome::Failed(format!("ended early: {:?}", far.end_reason())), None));
    }
    let media = if plan.talk >= Duration::from_secs(2) { media_from_door(&far) } else { Ok(()) };

    let mut recovery = None;
    let side = if restart {
        let killed = Instant::now();
        let ready_lines = door.log.counts().ready;
        stack.restart_janus().await?;
        if let Err(e) = wait_call(&far, CallState::Disconnected).await {
            return Ok((Outcome::Failed(format!("the call outlived the Janus restart: {e}")), None));
        }
        let back = until(Duration::from_secs(60), || door.log.counts().ready > ready_lines).await;
        if !back {
            return Err(SoakError::Appliance("not registered again within 60 s of the Janus restart".into()));
        }
        recovery = Some(killed.elapsed());
        // The parties in this process noticed the lost session too (their calls ended); give them a moment to
        // have started their reconnection before asking whether they are back.
        tokio::time::sleep(Duration::from_secs(2)).await;
        for (client, who) in [(&p.monitor, "monitor"), (&p.host, "host"), (&p.guest, "guest")] {
            client
                .wait_for_connection(callbox::calling::ConnectionState::Ready, Duration::from_secs(60))
                .await
                .map_err(|source| SoakError::Client { who, what: "not back after the Janus restart", source })?;
        }
        Side::JanusRestart
    } else {
        match plan.side {
            Side::Appliance => door.key("h").await?,
            _ => {
                let ender = guest_call.as_ref().unwrap_or(&far);
                let _ = ender.hang_up().await;
            }
        }
        if plan.kind == CallKind::Group {
            // Whoever left first, the host ends what is left of the room.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let _ = far.hang_up().await;
        }
        if let Err(e) = wait_call(&far, CallState::Disconnected).await {
            return Ok((Outcome::Failed(format!("the hang-up did not end the call: {e}")), None));
        }
        plan.side
    };
    if let Some(g) = &guest_call {
        if let Err(e) = wait_call(g, CallState::Disconnected).await {
            return Ok((Outcome::Failed(format!("the guest's call did not end: {e}")), recovery));
        }
    }
    if !door.idle().await {
        return Ok((Outcome::Failed("the appliance did not end its call".into()), recovery));
    }
    Ok((
        match media {
            Ok(()) => Outcome::Connected(side),
            Err(e) => Outcome::Failed(e),
        },
        recovery,
    ))
}

/// Runs the soak on `stack` (its tokens should be short-lived: `StackOptions::token_ttl`). `progress` is told each
/// call's number and outcome as it ends.
pub async fn run(stack: &Stack, o: &SoakOptions, mut progress: impl FnMut(&str)) -> Result<SoakReport, SoakError> {
    let started = Instant::now();
    let mut door = start_appliance(stack, o).await?;
    let client = |name: &'static str| async move {
        crate::bench::appliance(stack, name, o.video, false).await.map_err(|source| SoakError::Client {
            who: name,
            what: "could not start",
            source,
        })
    };
    let (monitor, host, guest) = tokio::join!(client(MONITOR), client(HOST), client(GUEST));
    let (monitor, host, guest) = (monitor?, host?, guest?);
    let (monitor_events, guest_events) = (monitor.events(), guest.events());
    let mut parties = Parties { monitor, host, guest, monitor_events, guest_events };
    let result = soak(stack, o, &mut door, &mut parties, &mut progress).await;
    parties.shutdown().await;
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(door.pid as i32, libc::SIGTERM) };
    if tokio::time::timeout(Duration::from_secs(30), door.child.wait()).await.is_err() {
        let _ = door.child.kill().await;
    }
    result.map(|mut r| {
        r.elapsed = started.elapsed();
        r
    })
}

async fn soak(
    stack: &Stack,
    o: &SoakOptions,
    door: &mut Appliance,
    p: &mut Parties,
    progress: &mut impl FnMut(&str),
) -> Result<SoakReport, SoakError> {
    let mut rng = StdRng::seed_from_u64(o.seed);
    let mut report = SoakReport {
        seed: o.seed,
        pid: door.pid,
        placed: BTreeMap::new(),
        connected: BTreeMap::new(),
        cancelled_ringing: 0,
        hang_ups: BTreeMap::new(),
        failed: BTreeMap::new(),
        janus_recovery: None,
        token_fetches: None,
        samples: Vec::new(),
        elapsed: Duration::ZERO,
    };
    // Warm-up: one call of each kind, not counted, so that what is made once (GStreamer's registry, the codecs'
    // tables, the allocator's arenas) is in the start figures.
    for kind in [CallKind::DoorbellToMonitor, CallKind::MonitorToDoor, CallKind::Group] {
        let plan = Plan { kind, side: Side::FarEnd, while_ringing: false, talk: Duration::from_secs(2) };
        match one_call(stack, door, p, plan, false).await? {
            (Outcome::Connected(_), _) => progress(&format!("warm-up {kind:?}: connected")),
            (Outcome::Failed(why), _) => return Err(SoakError::Appliance(format!("warm-up {kind:?} failed: {why}"))),
            (Outcome::CancelledRinging, _) => {}
        }
        tokio::time::sleep(SETTLE).await;
    }
    report.samples.push(door.figures(0).await?);
    progress(&format!("start: {}", describe(&report.samples[0])));
    let restart_at = o.janus_restart.then_some(o.calls.div_ceil(2));
    for n in 1..=o.calls {
        door.check_alive()?;
        let mut plan = draw(&mut rng, o.max_talk);
        let restart = restart_at == Some(n);
        if restart {
            plan.while_ringing = false;
            plan.talk = plan.talk.max(Duration::from_secs(2));
        }
        *report.placed.entry(plan.kind).or_default() += 1;
        let (outcome, recovery) = one_call(stack, door, p, plan, restart).await?;
        report.janus_recovery = report.janus_recovery.or(recovery);
        let line = match outcome {
            Outcome::Connected(side) => {
                *report.connected.entry(plan.kind).or_default() += 1;
                *report.hang_ups.entry(side).or_default() += 1;
                format!("connected, {:.1} s, ended by {side:?}", plan.talk.as_secs_f64())
            }
            Outcome::CancelledRinging => {
                report.cancelled_ringing += 1;
                format!("hung up while ringing by {:?}", plan.side)
            }
            Outcome::Failed(why) => {
                *report.failed.entry(why.clone()).or_default() += 1;
                p.hang_up_everything().await;
                let _ = door.key("h").await;
                door.idle().await;
                format!("FAILED: {why}")
            }
        };
        let restart_note = recovery.map(|d| format!(" (Janus restarted; registered again after {d:.1?})"));
        progress(&format!("call {n}/{} {:?}: {line}{}", o.calls, plan.kind, restart_note.unwrap_or_default()));
        tokio::time::sleep(SETTLE).await;
        if n < o.calls && o.sample_every > 0 && n % o.sample_every == 0 {
            let f = door.figures(n).await?;
            progress(&format!("after {n} calls: {}", describe(&f)));
            report.samples.push(f);
        }
    }
    let end = door.figures(o.calls).await?;
    progress(&format!("end: {}", describe(&end)));
    report.samples.push(end);
    report.token_fetches = Some(door.log.counts().tokens as u64).filter(|n| *n > 0);
    Ok(report)
}

fn describe(f: &Figures) -> String {
    let heap = f.heap_kb.map(|k| format!(", heap {k} kB in use")).unwrap_or_default();
    format!("RSS {} kB, {} fds, {} threads, {} tokio tasks{heap}", f.rss_kb, f.fds, f.threads, f.tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_line_is_read() {
        let line = "health: tasks 42, threads 31, fds 57, rss 90000 kB, heap 30000 kB in use of 60000 kB held";
        assert_eq!(number_after(line, "tasks "), Some(42));
        assert_eq!(number_after(line, "fds "), Some(57));
        assert_eq!(number_after(line, "heap "), Some(30000));
        assert_eq!(number_after("health: tasks 1, heap ? kB", "heap "), None);
    }

    #[test]
    fn a_seed_gives_the_same_plans() {
        let plans = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..50).map(|_| format!("{:?}", draw(&mut rng, Duration::from_secs(6)))).collect::<Vec<_>>()
        };
        assert_eq!(plans(7), plans(7));
        assert_ne!(plans(7), plans(8));
        let mut rng = StdRng::seed_from_u64(1);
        let drawn: Vec<Plan> = (0..300).map(|_| draw(&mut rng, Duration::from_secs(6))).collect();
        for kind in [CallKind::DoorbellToMonitor, CallKind::MonitorToDoor, CallKind::Group] {
            assert!(drawn.iter().filter(|p| p.kind == kind).count() > 50, "{kind:?} drawn too rarely");
        }
        assert!(drawn.iter().any(|p| p.while_ringing) && drawn.iter().any(|p| p.side == Side::Appliance));
        assert!(drawn.iter().all(|p| (300..=6000).contains(&(p.talk.as_millis() as u64))));
    }
}

//! `callbox run` as the process a board starts, for the tests that need the real binary (its `main`, signal
//! handling, systemd notifications, an `LD_PRELOAD`ed clock): a `callbox.toml` for a test stack (device key in a
//! 0600 file, the `sim` board profile, simulated devices), the child with its log (stderr) and what it sends to
//! its `$NOTIFY_SOCKET` collected with their arrival times, its stdin for the simulated buttons, and its CPU time.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::appliance::provision_device;
use crate::stack::Stack;

/// The `callbox` binary of this build, beside the test binary (`cargo build -p callbox --bin callbox` first).
pub fn callbox_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/callbox
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = profile_dir.join("callbox");
    assert!(bin.exists(), "{} not built (cargo build -p callbox --bin callbox first)", bin.display());
    bin
}

/// The repository's root (for `board/`).
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("repo").to_path_buf()
}

/// A `callbox.toml` in `stack`'s dir for the appliance `user` (its device key provisioned at the stack, in a 0600
/// file) with these Janus and token URLs, calling `target` on the doorbell: the config file and the key file.
pub fn write_config(stack: &Stack, user: &str, janus: &str, token: &str, target: &str) -> (PathBuf, PathBuf) {
    let dir = stack.dir().join(user);
    std::fs::create_dir_all(&dir).expect("dir");
    let key_file = dir.join("device-key");
    std::fs::write(&key_file, provision_device(stack, user).expose()).expect("key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let config = dir.join("callbox.toml");
    std::fs::write(
        &config,
        format!(
            "[identity]\ndisplay_name = \"Gate\"\n\
             [servers]\njanus_urls = [\"{janus}\"]\ntoken_url = \"{token}\"\nallow_insecure_http = true\n\
             [credentials]\ndevice_key_file = \"{key}\"\n\
             [call]\ntargets = [\"{target}\"]\n\
             [buttons]\ncall = \"call\"\nhang_up = \"hang_up\"\n\
             [leds]\nidle = \"idle\"\nin_call = \"in_call\"\nfault = \"fault\"\n\
             [devices]\nsim = true\n\
             [video]\nwidth = 320\nheight = 240\nfps = 15\n\
             [display]\nenabled = false\n\
             [network]\nmedia_ip = \"127.0.0.1\"\n\
             [board]\nprofile = \"sim\"\n",
            key = key_file.display()
        ),
    )
    .expect("config");
    (config, key_file)
}

/// Lines with the time they arrived.
pub type Timed = Vec<(Instant, String)>;

/// A running `callbox run --config CONFIG`: killed when dropped.
pub struct CallboxProcess {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    log: Arc<Mutex<Timed>>,
    notes: Arc<Mutex<Timed>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

fn lock(m: &Mutex<Timed>) -> std::sync::MutexGuard<'_, Timed> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CallboxProcess {
    /// Starts `callbox run` with the repo's board profiles and `env` (`RUST_LOG` included: `info` unless given),
    /// with a `$NOTIFY_SOCKET` of its own in `dir` (what it tells systemd is collected) when `notify` is set.
    pub fn start(config: &Path, dir: &Path, env: &[(&str, &str)], notify: bool) -> CallboxProcess {
        CallboxProcess::start_program(&callbox_binary(), config, dir, env, notify)
    }

    /// [`CallboxProcess::start`] with another `callbox` binary (a benchmark's release build).
    pub fn start_program(
        program: &Path,
        config: &Path,
        dir: &Path,
        env: &[(&str, &str)],
        notify: bool,
    ) -> CallboxProcess {
        let board_dir = repo_dir().join("board");
        let mut cmd = tokio::process::Command::new(program);
        cmd.args([
            "run",
            "--config",
            config.to_str().expect("utf-8"),
            "--board-dir",
            board_dir.to_str().expect("utf-8"),
        ])
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let notes: Arc<Mutex<Timed>> = Arc::default();
        let mut readers = Vec::new();
        if notify {
            let path = dir.join(format!("notify-{}.sock", rand::random::<u32>()));
            let sock = tokio::net::UnixDatagram::bind(&path).expect("notify socket");
            cmd.env("NOTIFY_SOCKET", &path);
            let notes = notes.clone();
            readers.push(tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = sock.recv(&mut buf).await {
                    lock(&notes).push((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned()));
                }
            }));
        }
        let mut child = cmd.spawn().expect("callbox run starts");
        let stdin = child.stdin.take();
        let log: Arc<Mutex<Timed>> = Arc::default();
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let sink = log.clone();
        readers.push(tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                lock(&sink).push((Instant::now(), line));
            }
        }));
        CallboxProcess { child, stdin, log, notes, readers }
    }

    pub fn pid(&self) -> i32 {
        self.child.id().and_then(|p| i32::try_from(p).ok()).expect("running")
    }

    /// Every log line so far.
    pub fn log(&self) -> Timed {
        lock(&self.log).clone()
    }

    /// The log lines that arrived at or after `since`.
    pub fn log_since(&self, since: Instant) -> Vec<String> {
        lock(&self.log).iter().filter(|(t, _)| *t >= since).map(|(_, l)| l.clone()).collect()
    }

    /// Everything sent to `$NOTIFY_SOCKET` so far.
    pub fn notifications(&self) -> Timed {
        lock(&self.notes).clone()
    }

    /// The notifications that arrived at or after `since`.
    pub fn notifications_since(&self, since: Instant) -> Vec<String> {
        lock(&self.notes).iter().filter(|(t, _)| *t >= since).map(|(_, l)| l.clone()).collect()
    }

    /// Waits up to `timeout` for a log line, arrived at or after `since`, that satisfies `pred`.
    pub async fn wait_log(&self, since: Instant, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let end = Instant::now() + timeout;
        loop {
            if let Some((_, l)) = lock(&self.log).iter().find(|(t, l)| *t >= since && pred(l)) {
                return Some(l.clone());
            }
            if Instant::now() >= end {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// User and system CPU time the process has used so far (`/proc/PID/stat`).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("stat");
        // The fields after the command name (which may hold spaces) in parentheses: utime and stime are 14 and 15.
        let after = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        // SAFETY: sysconf has no preconditions.
        let per_sec = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100).max(1);
        Duration::from_millis(ticks * 1000 / per_sec)
    }

    /// Types `keys` (and Enter) on its stdin: `c` presses the simulated doorbell.
    pub async fn keys(&mut self, keys: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin.write_all(format!("{keys}\n").as_bytes()).await.expect("keys");
        stdin.flush().await.expect("flush");
    }

    /// SIGTERM, then its exit status (within 30 s).
    pub async fn stop(mut self) -> ExitStatus {
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(self.pid(), libc::SIGTERM) }, 0);
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits within 30 s of SIGTERM")
            .expect("status");
        // Its last lines.
        tokio::time::sleep(Duration::from_millis(200)).await;
        status
    }
}

impl Drop for CallboxProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = lock(&self.log);
            let from = log.len().saturating_sub(60);
            eprintln!("===== callbox run: the last {} log lines =====", log.len() - from);
            for (_, l) in &log[from..] {
                eprintln!("{l}");
            }
        }
        for r in &self.readers {
            r.abort();
        }
    }
}

//! A server process started by the harness: its own process group (so forked workers die with it), stdout and
//! stderr captured into a log file in the stack's temp dir, a watchdog that kills it when the log grows past a
//! bound (a runaway server), and termination on drop (SIGTERM to the group, then SIGKILL).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::HarnessError;

const WATCHDOG_PERIOD: Duration = Duration::from_millis(250);

pub struct ServerProcess {
    name: String,
    child: Mutex<Child>,
    pgid: i32,
    log: PathBuf,
    limit: u64,
    overflow: Arc<AtomicBool>,
    finished: AtomicBool,
    /// `sh` waiting on a pipe whose write end only this process holds: if the test process dies without
    /// dropping us (abort, SIGKILL), the pipe closes and the reaper SIGKILLs the whole group, forked workers
    /// included (PR_SET_PDEATHSIG alone reaches only the group leader).
    reaper: Mutex<Option<(Child, std::process::ChildStdin)>>,
    watchdog: tokio::task::JoinHandle<()>,
}

fn killpg(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: plain syscall on a process group this harness created; no memory is touched.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

impl ServerProcess {
    /// Start `program args` in `dir`, output to `log`; the watchdog kills it if `log` exceeds `log_limit` bytes.
    /// Must be called inside a tokio runtime.
    pub fn spawn(
        name: &str,
        program: &'static str,
        args: &[String],
        dir: &Path,
        log: PathBuf,
        log_limit: u64,
    ) -> Result<Self, HarnessError> {
        let io = |source| HarnessError::Io { what: "cannot create log file", path: log.clone(), source };
        let out = File::create(&log).map_err(io)?;
        let err = out.try_clone().map_err(io)?;
        let mut cmd = Command::new(program);
        cmd.args(args).current_dir(dir).stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        // SAFETY: prctl is async-signal-safe; it makes the server die with the test process.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| HarnessError::Spawn { name: name.to_string(), program, source })?;
        let pgid = i32::try_from(child.id()).unwrap_or(0);
        let reaper = spawn_reaper(pgid);
        log::info!("started {name} ({program}, pid {pgid}), log {}", log.display());
        let overflow = Arc::new(AtomicBool::new(false));
        let watchdog = {
            let overflow = overflow.clone();
            let log = log.clone();
            let name = name.to_string();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(WATCHDOG_PERIOD).await;
                    let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
                    if size > log_limit {
                        log::error!("{name}: log {} passed {log_limit} bytes: killing it", log.display());
                        overflow.store(true, Ordering::SeqCst);
                        killpg(pgid, libc::SIGKILL);
                        return;
                    }
                }
            })
        };
        Ok(ServerProcess {
            name: name.to_string(),
            child: Mutex::new(child),
            pgid,
            log,
            limit: log_limit,
            overflow,
            finished: AtomicBool::new(false),
            reaper: Mutex::new(reaper),
            watchdog,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> i32 {
        self.pgid
    }

    /// Ok while the process runs and its log is within bounds.
    pub fn check(&self) -> Result<(), HarnessError> {
        if self.overflow.load(Ordering::SeqCst) {
            return Err(HarnessError::LogOverflow {
                name: self.name.clone(),
                limit: self.limit,
                log: self.log.clone(),
            });
        }
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                Err(HarnessError::Exited { name: self.name.clone(), status: status.to_string(), log: self.log.clone() })
            }
            Err(e) => Err(HarnessError::Exited {
                name: self.name.clone(),
                status: format!("unknown ({e})"),
                log: self.log.clone(),
            }),
        }
    }

    /// The exit status once the process ended by itself (`None` while it runs).
    pub fn exit_status(&self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        child.try_wait().ok().flatten()
    }

    /// The last `max_bytes` of the log (lossy UTF-8).
    pub fn log_tail(&self, max_bytes: u64) -> String {
        tail(&self.log, max_bytes)
    }

    /// Ask the process group to stop (SIGTERM); `finish` waits and kills.
    pub fn terminate(&self) {
        if self.finished.load(Ordering::SeqCst) {
            return;
        }
        killpg(self.pgid, libc::SIGTERM);
    }

    /// Wait for the process until `deadline`, then SIGKILL the group and reap it.
    pub fn finish(&self, deadline: Instant) {
        // Once reaped, the pid may be reused: never signal it again.
        if self.finished.swap(true, Ordering::SeqCst) {
            return;
        }
        self.watchdog.abort();
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                _ => break,
            }
        }
        // Also reaches workers that outlived the leader (Kamailio's children).
        killpg(self.pgid, libc::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
        // The group is gone: stop the reaper before its pipe closes, so it never signals a reused id.
        if let Some((mut reaper, stdin)) = self.reaper.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = reaper.kill();
            let _ = reaper.wait();
            drop(stdin);
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.terminate();
        self.finish(Instant::now() + Duration::from_secs(2));
    }
}

/// Start the reaper of process group `pgid` (see `ServerProcess::reaper`); `None` if `sh` cannot start.
fn spawn_reaper(pgid: i32) -> Option<(Child, std::process::ChildStdin)> {
    if pgid <= 1 {
        return None;
    }
    let mut child = Command::new("sh")
        .args(["-c", &format!("read _eof; kill -KILL -- -{pgid} 2>/dev/null")])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| log::warn!("no reaper for process group {pgid}: {e}"))
        .ok()?;
    let stdin = child.stdin.take()?;
    Some((child, stdin))
}

/// The last `max_bytes` of a file (lossy UTF-8); empty if unreadable.
pub fn tail(path: &Path, max_bytes: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max_bytes)));
    let mut buf = Vec::new();
    let _ = f.take(max_bytes).read_to_end(&mut buf);
    collapse_carriage_returns(&String::from_utf8_lossy(&buf))
}

/// Status lines redrawn with '\r' (baresip's call statistics) keep only their last state.
fn collapse_carriage_returns(text: &str) -> String {
    text.split('\n')
        .map(|line| line.trim_end_matches('\r').rsplit('\r').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_runaway_log_gets_the_process_killed_and_reported() {
        let dir = std::env::temp_dir().join(format!("callbox-proc-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = ServerProcess::spawn(
            "yes",
            "sh",
            &["-c".into(), "exec yes callbox".into()],
            &dir,
            dir.join("yes.log"),
            64 * 1024,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let err = loop {
            match p.check() {
                Ok(()) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                Ok(()) => panic!("the watchdog never fired"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, HarnessError::LogOverflow { .. }), "{err}");
        drop(p);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn status_lines_collapse() {
        assert_eq!(collapse_carriage_returns("a\n[0:01] x\r[0:02] y\r[0:03] z\nb"), "a\n[0:03] z\nb");
    }
}

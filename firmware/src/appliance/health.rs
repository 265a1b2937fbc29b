//! The process's own resource figures, on request: on SIGUSR2 `callbox` logs one line with the tokio tasks alive,
//! its threads, open file descriptors and resident memory (read from /proc/self), and the heap the allocator has
//! handed out and holds (glibc's `mallinfo2`: a leak grows the first, a fragmented heap only the second). What a
//! soak run (`scripts/soak`) compares between its start and its end, and what an operator reads on a device
//! suspected of a leak (`systemctl kill -s USR2 callbox`, then the journal). Tasks can only be counted inside the
//! process: tokio's `RuntimeMetrics::num_alive_tasks` (stable), the tasks spawned and not yet finished on this
//! runtime. Also [`trim_heap`], which gives the allocator's free pages back to the system once the last call ended.

use std::fmt;

/// The figures of one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Tokio tasks spawned on this runtime and not yet finished (`None` outside a runtime).
    pub tasks: Option<usize>,
    /// Threads of the process (tokio's workers and blocking threads, GStreamer's, the devices').
    pub threads: Option<u64>,
    /// Open file descriptors (sockets, pipes, devices, files).
    pub fds: Option<u64>,
    /// Resident set size, in kB (`VmRSS`).
    pub rss_kb: Option<u64>,
    /// Bytes the C allocator (glibc's malloc, which Rust's allocations go through) has handed out and not had back,
    /// in kB: with `rss_kb`, tells a leak (this grows) from memory the allocator keeps for reuse (only RSS grows).
    pub heap_in_use_kb: Option<u64>,
    /// What the allocator holds from the system (its arenas and mmapped blocks), in kB.
    pub heap_held_kb: Option<u64>,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "?".into());
        write!(
            f,
            "health: tasks {}, threads {}, fds {}, rss {} kB, heap {} kB in use of {} kB held",
            n(self.tasks.map(|t| t as u64)),
            n(self.threads),
            n(self.fds),
            n(self.rss_kb),
            n(self.heap_in_use_kb),
            n(self.heap_held_kb)
        )
    }
}

/// A `kB` or count field of /proc/self/status (`VmRSS:   48123 kB`, `Threads:  31`).
fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The allocator's figures: (in use, held from the system), in kB.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_kb() -> (Option<u64>, Option<u64>) {
    // SAFETY: mallinfo2 only reads the allocator's own counters (taking its arena locks).
    let info = unsafe { libc::mallinfo2() };
    let kb = |bytes: usize| Some(bytes as u64 / 1024);
    (kb(info.uordblks + info.hblkhd), kb(info.arena + info.hblkhd))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap_kb() -> (Option<u64>, Option<u64>) {
    (None, None)
}

/// How long after its last call ended the appliance trims its heap ([`trim_heap`]): the call's media threads and
/// pipelines have wound down by then.
pub const TRIM_AFTER_LAST_CALL: std::time::Duration = std::time::Duration::from_secs(5);

/// Hands the allocator's free pages back to the system (glibc's `malloc_trim`, every arena): called
/// [`TRIM_AFTER_LAST_CALL`] after the appliance's last call ended. A call's media threads each get an allocator
/// arena, and what they free stays there: without this, 200 calls grew RSS by 38 MB (84 -> 122 MB, flat from about
/// 75 calls on) while the heap in use stayed at 6 MB (docs/benchmarks.md, "Soak").
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim_heap() {
    let started = std::time::Instant::now();
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    let released = unsafe { libc::malloc_trim(0) } == 1;
    log::debug!("free heap memory returned to the system: {released} ({} ms)", started.elapsed().as_millis());
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim_heap() {}

/// The figures now (each `None` where it cannot be read).
pub fn current() -> Health {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let fds = std::fs::read_dir("/proc/self/fd").ok().map(|dir| dir.count() as u64);
    let tasks = tokio::runtime::Handle::try_current().ok().map(|h| h.metrics().num_alive_tasks());
    let (heap_in_use_kb, heap_held_kb) = heap_kb();
    Health {
        tasks,
        threads: status_field(&status, "Threads"),
        fds,
        rss_kb: status_field(&status, "VmRSS"),
        heap_in_use_kb,
        heap_held_kb,
    }
}

/// Logs [`current`] on every SIGUSR2, on a task of the current runtime, for the life of the process. Without a
/// signal handler (it cannot be installed) a warning, and nothing else changes.
pub fn report_on_sigusr2() {
    let mut usr2 = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2()) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("no SIGUSR2 handler (health reports): {e}");
            return;
        }
    };
    tokio::spawn(async move {
        while usr2.recv().await.is_some() {
            log::info!("{}", current());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read() {
        let status = "Name:\tcallbox\nVmHWM:\t   50000 kB\nVmRSS:\t   48123 kB\nThreads:\t31\n";
        assert_eq!(status_field(status, "VmRSS"), Some(48123));
        assert_eq!(status_field(status, "Threads"), Some(31));
        assert_eq!(status_field(status, "VmSwap"), None);
        assert_eq!(status_field("VmRSS: lots", "VmRSS"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_figures_count_this_process_and_its_tasks() {
        let before = current();
        assert!(before.threads.is_some_and(|t| t >= 3), "{before}");
        assert!(before.fds.is_some_and(|f| f >= 3) && before.rss_kb.is_some_and(|r| r > 0), "{before}");
        #[cfg(target_env = "gnu")]
        {
            // black_box: a release build (the aarch64 tests) would otherwise leave the unused block out.
            let block = std::hint::black_box(vec![1u8; 4 << 20]);
            let with = current();
            assert!(with.heap_in_use_kb.is_some_and(|k| k >= 4096), "{with}");
            assert!(with.heap_held_kb >= with.heap_in_use_kb, "{with}");
            drop(block);
        }
        let base = before.tasks.expect("inside a runtime");
        let pending: Vec<_> = (0..5).map(|_| tokio::spawn(std::future::pending::<()>())).collect();
        assert_eq!(current().tasks, Some(base + 5));
        for task in &pending {
            task.abort();
        }
        for task in pending {
            let _ = task.await;
        }
        assert_eq!(current().tasks, Some(base));
        assert!(current().to_string().starts_with(&format!("health: tasks {base}, threads ")));
    }
}

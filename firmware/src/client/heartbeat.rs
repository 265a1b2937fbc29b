//! A loop's sign of life: the engine beats its [`Heartbeat`] on every turn of its loop (at least four times a
//! second, its timer sees to that), and a supervisor (the appliance's watchdog) asks how long ago the last beat
//! was. A loop that is stuck in an await, or a task that died, stops beating.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A shared beat counter: cheap to clone, to beat and to read.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    epoch: Instant,
    /// Milliseconds from `epoch` to the last beat.
    last_ms: Arc<AtomicU64>,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new()
    }
}

impl Heartbeat {
    /// A heartbeat that has just beaten.
    pub fn new() -> Self {
        Heartbeat { epoch: Instant::now(), last_ms: Arc::new(AtomicU64::new(0)) }
    }

    /// The loop is alive now.
    pub fn beat(&self) {
        self.last_ms.store(millis(self.epoch.elapsed()), Ordering::Relaxed);
    }

    /// How long ago the last beat was, at `now`.
    pub fn silent_for(&self, now: Instant) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(self.epoch).saturating_sub(last)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_counts_from_the_last_beat_on_every_clone() {
        let h = Heartbeat::new();
        let reader = h.clone();
        let t0 = Instant::now();
        assert!(reader.silent_for(t0) < Duration::from_secs(1));
        assert!(reader.silent_for(t0 + Duration::from_secs(5)) >= Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(20));
        h.beat();
        let after = Instant::now();
        assert!(reader.silent_for(after) < Duration::from_millis(20));
        // A time before the epoch or the beat reads as no silence, not as an overflow.
        assert_eq!(reader.silent_for(t0 - Duration::from_secs(1)), Duration::ZERO);
    }
}

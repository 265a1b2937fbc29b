//! The systemd watchdog, fed from the process's start and, once the appliance runs, only while its loops make
//! progress. [`Watch`] is the decision, pure: given how long each watched loop has been silent, feed or withhold
//! (and say so once in the log when that changes). [`spawn_watchdog`] applies it: a task pinging `WATCHDOG=1` at
//! half of `WatchdogSec`, checking the loops registered with it — the appliance's own loop and the calling
//! engine's (`CallClient::heartbeat`). Until they are registered (the servers are still being reached at boot),
//! the watchdog is fed: a long outage of the servers is not a hang. A loop silent for longer than the ping
//! interval stops the pings, and systemd restarts the service `WatchdogSec` after the last one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::notify::Notifier;
use crate::client::Heartbeat;

/// What the watchdog does this time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Feed,
    /// `name`'s loop has been silent for `silent_for`: no ping.
    Withhold {
        name: &'static str,
        silent_for: Duration,
    },
}

/// The decision, with the memory of the last one (to log changes, not every tick).
#[derive(Debug)]
pub struct Watch {
    stall_after: Duration,
    withholding: bool,
}

impl Watch {
    /// A loop silent for longer than `stall_after` is stuck.
    pub fn new(stall_after: Duration) -> Self {
        Watch { stall_after, withholding: false }
    }

    /// The verdict for loops silent for these durations (named), logging when it changes.
    pub fn judge(&mut self, silences: &[(&'static str, Duration)]) -> Verdict {
        let stuck = silences.iter().filter(|(_, s)| *s > self.stall_after).max_by_key(|(_, s)| *s);
        match stuck {
            Some(&(name, silent_for)) => {
                if !self.withholding {
                    log::error!(
                        "the {name} loop has made no progress for {} ms: the watchdog is no longer fed, systemd will \
                         restart the service",
                        silent_for.as_millis()
                    );
                }
                self.withholding = true;
                Verdict::Withhold { name, silent_for }
            }
            None => {
                if self.withholding {
                    log::warn!("every loop makes progress again: the watchdog is fed again");
                }
                self.withholding = false;
                Verdict::Feed
            }
        }
    }
}

/// The loops the watchdog checks, registered as they start.
#[derive(Clone, Default)]
pub struct Watched {
    loops: Arc<Mutex<Vec<(&'static str, Heartbeat)>>>,
}

impl Watched {
    /// From now on, `name`'s heartbeat must keep beating.
    pub fn add(&self, name: &'static str, heartbeat: Heartbeat) {
        heartbeat.beat();
        self.loops.lock().unwrap_or_else(|p| p.into_inner()).push((name, heartbeat));
    }

    fn silences(&self, now: Instant) -> Vec<(&'static str, Duration)> {
        let loops = self.loops.lock().unwrap_or_else(|p| p.into_inner());
        loops.iter().map(|(name, h)| (*name, h.silent_for(now))).collect()
    }
}

/// Starts pinging the watchdog (when systemd asked for one: `$WATCHDOG_USEC`) every `interval`, while the loops
/// in `watched` make progress. Returns the task (aborted when the appliance ends).
pub fn spawn_watchdog(notifier: Arc<Notifier>, interval: Duration, watched: Watched) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut watch = Watch::new(interval);
        let mut ticks = tokio::time::interval(interval);
        loop {
            ticks.tick().await;
            if watch.judge(&watched.silences(Instant::now())) == Verdict::Feed {
                notifier.watchdog();
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn fed_while_every_loop_beats_withheld_while_one_is_stuck_and_fed_again_after() {
        let mut w = Watch::new(10 * S);
        assert_eq!(w.judge(&[]), Verdict::Feed, "nothing registered yet (starting): fed");
        assert_eq!(w.judge(&[("appliance", S), ("engine", 10 * S)]), Verdict::Feed);
        assert_eq!(
            w.judge(&[("appliance", S), ("engine", 11 * S)]),
            Verdict::Withhold { name: "engine", silent_for: 11 * S }
        );
        assert_eq!(
            w.judge(&[("appliance", 12 * S), ("engine", 20 * S)]),
            Verdict::Withhold { name: "engine", silent_for: 20 * S },
            "the longest silence is named"
        );
        assert_eq!(w.judge(&[("appliance", S), ("engine", S)]), Verdict::Feed);
    }

    #[test]
    fn registered_loops_are_read_from_their_heartbeats() {
        let watched = Watched::default();
        let engine = Heartbeat::new();
        watched.add("engine", engine.clone());
        let later = Instant::now() + 30 * S;
        let silences = watched.silences(later);
        assert_eq!(silences.len(), 1);
        assert!(silences[0].1 >= 29 * S);
        let mut w = Watch::new(10 * S);
        assert!(matches!(w.judge(&silences), Verdict::Withhold { name: "engine", .. }));
        engine.beat();
        assert_eq!(w.judge(&watched.silences(Instant::now())), Verdict::Feed);
    }
}

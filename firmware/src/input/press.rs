//! Press detection for one button, sans-IO: raw line edges in (with the caller's timestamps), debounced
//! gestures out ([`Gesture::Short`] on release, [`Gesture::Long`] as soon as the hold reaches the
//! threshold). No clock, no threads: the caller feeds [`PressDetector::edge`], asks
//! [`PressDetector::poll_timeout`] when to call [`PressDetector::handle_timeout`] next, and gets
//! [`Detected`] gestures back from both.
//!
//! Rules:
//! - a level counts once it has held for `debounce` (exactly `debounce` is enough); an edge back to the
//!   previous level inside that window cancels it (a bounce);
//! - a hold is measured from the press edge to the release edge (raw edge times, not the debounced ones);
//! - hold < `long_press` → `Short` (at the release edge); hold ≥ `long_press` → `Long` (at press +
//!   `long_press`), emitted when the threshold passes without waiting for the release, and nothing more
//!   for that hold;
//! - a line already active when the detector is created ([`PressDetector::with_level`]) yields nothing
//!   until it has been released;
//! - timestamps that go backwards are treated as "now" (the latest seen); arithmetic saturates: no input
//!   can make it panic.

use std::time::Duration;

/// A level must hold this long to count, unless configured otherwise.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(30);
/// A hold this long is a long press, unless configured otherwise.
pub const DEFAULT_LONG_PRESS: Duration = Duration::from_millis(1500);

/// Gestures queued inside one detector at most (two is the most one call can produce); past it the oldest
/// gives way to the newest.
const MAX_QUEUED: usize = 4;

/// What the user did with a button.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gesture {
    /// Pressed and released before the long-press threshold.
    Short,
    /// Held until the long-press threshold (reported when reached, not on release).
    Long,
}

impl Gesture {
    /// Lower-case name (`short`, `long`).
    pub fn as_str(self) -> &'static str {
        match self {
            Gesture::Short => "short",
            Gesture::Long => "long",
        }
    }
}

impl std::fmt::Display for Gesture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Timing and polarity of one button.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PressConfig {
    /// How long a level must hold to count.
    pub debounce: Duration,
    /// How long a hold must last to be a long press.
    pub long_press: Duration,
    /// The line reads low when the button is pressed (pull-up wiring).
    pub active_low: bool,
}

impl Default for PressConfig {
    fn default() -> Self {
        PressConfig { debounce: DEFAULT_DEBOUNCE, long_press: DEFAULT_LONG_PRESS, active_low: false }
    }
}

impl PressConfig {
    /// Whether a raw line level means "pressed" for this button.
    pub fn is_pressed_level(&self, level: bool) -> bool {
        level != self.active_low
    }

    /// The raw line level that means `pressed` for this button.
    pub fn level_for(&self, pressed: bool) -> bool {
        pressed != self.active_low
    }
}

/// A gesture and the instant it happened: the release edge for [`Gesture::Short`], press + `long_press`
/// for [`Gesture::Long`] (on the caller's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detected {
    /// What was done.
    pub gesture: Gesture,
    /// When (caller's clock).
    pub at: Duration,
}

/// A level seen on the line that has not held for `debounce` yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    pressed: bool,
    at: Duration,
}

/// Turns one button's raw edges into gestures. See the module documentation for the rules.
#[derive(Debug, Clone)]
pub struct PressDetector {
    config: PressConfig,
    /// Debounced state.
    pressed: bool,
    /// Edge time at which the debounced state began.
    since: Duration,
    /// Candidate change (always the opposite of `pressed`).
    pending: Option<Pending>,
    /// The current hold has already produced its `Long`.
    long_sent: bool,
    /// The current hold began before the detector existed: no gesture for it.
    ignore_hold: bool,
    /// Latest time seen.
    now: Duration,
    /// Gestures detected but not yet returned.
    queued: heapless::Deque<Detected, MAX_QUEUED>,
}

impl PressDetector {
    /// A detector for a released button, at time zero.
    pub fn new(config: PressConfig) -> Self {
        Self::with_level(config, config.level_for(false), Duration::ZERO)
    }

    /// A detector whose line reads `level` (raw) at `at`. A line already active counts as a hold that
    /// began before us: it yields no gesture until released.
    pub fn with_level(config: PressConfig, level: bool, at: Duration) -> Self {
        let pressed = config.is_pressed_level(level);
        PressDetector {
            config,
            pressed,
            since: at,
            pending: None,
            long_sent: false,
            ignore_hold: pressed,
            now: at,
            queued: heapless::Deque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PressConfig {
        &self.config
    }

    /// The debounced state: is the button held down?
    pub fn is_pressed(&self) -> bool {
        self.pressed
    }

    /// The latest time seen (edges and timeouts never move it backwards).
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The line changed to raw `level` at `at`. Returns a gesture completed by this edge or by time
    /// passing up to it (a late caller still gets the right gestures, in order).
    pub fn edge(&mut self, level: bool, at: Duration) -> Option<Detected> {
        let at = self.advance_clock(at);
        // Whatever matured before this edge happened first.
        self.settle(at);
        let pressed = self.config.is_pressed_level(level);
        match self.pending {
            // Same level again: an opposite edge was missed; the level is only certain from now.
            Some(p) if p.pressed == pressed => self.pending = Some(Pending { pressed, at }),
            // Back to the debounced level inside the window: a bounce.
            Some(_) => self.pending = None,
            None if pressed != self.pressed => self.pending = Some(Pending { pressed, at }),
            // Repeat of the debounced level: nothing changes.
            None => {}
        }
        // A zero debounce commits at once; a cancelled release may reveal a passed long-press threshold.
        self.settle(at);
        self.queued.pop_front()
    }

    /// Time has reached `now` (normally the instant [`poll_timeout`](Self::poll_timeout) returned).
    pub fn handle_timeout(&mut self, now: Duration) -> Option<Detected> {
        let now = self.advance_clock(now);
        self.settle(now);
        self.queued.pop_front()
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) must be called: the end of a
    /// debounce window, the long-press threshold, or "now" when a gesture is waiting to be returned.
    /// `None`: nothing will happen until the next edge.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if !self.queued.is_empty() {
            return Some(self.now);
        }
        if let Some(p) = self.pending {
            return Some(p.at.saturating_add(self.config.debounce));
        }
        if self.pressed && !self.long_sent && !self.ignore_hold {
            return Some(self.since.saturating_add(self.config.long_press));
        }
        None
    }

    fn advance_clock(&mut self, at: Duration) -> Duration {
        if at > self.now {
            self.now = at;
        }
        self.now
    }

    /// Commits a matured pending level and fires a passed long-press threshold, as of `now`.
    fn settle(&mut self, now: Duration) {
        if let Some(p) = self.pending {
            if now >= p.at.saturating_add(self.config.debounce) {
                self.pending = None;
                self.commit(p);
            }
        }
        self.check_long(now);
    }

    fn commit(&mut self, p: Pending) {
        let started = self.since;
        self.pressed = p.pressed;
        self.since = p.at;
        if p.pressed {
            self.long_sent = false;
            return;
        }
        if self.ignore_hold {
            self.ignore_hold = false;
            return;
        }
        if self.long_sent {
            return;
        }
        let held = p.at.saturating_sub(started);
        if held >= self.config.long_press {
            // The threshold passed without a timeout call: report it now, at its own instant.
            self.push(Gesture::Long, started.saturating_add(self.config.long_press));
        } else {
            self.push(Gesture::Short, p.at);
        }
    }

    fn check_long(&mut self, now: Duration) {
        if !self.pressed || self.long_sent || self.ignore_hold {
            return;
        }
        // The button is known to be held until the pending release edge, if any, else until now.
        let held_until = match self.pending {
            Some(p) => p.at.min(now),
            None => now,
        };
        let threshold = self.since.saturating_add(self.config.long_press);
        if held_until >= threshold {
            self.long_sent = true;
            self.push(Gesture::Long, threshold);
        }
    }

    fn push(&mut self, gesture: Gesture, at: Duration) {
        if self.queued.is_full() {
            // Unreachable with the callers draining after every call; keep the newest anyway.
            self.queued.pop_front();
        }
        if let Err(lost) = self.queued.push_back(Detected { gesture, at }) {
            log::warn!("press detector: gesture queue full ({MAX_QUEUED}); {lost:?} dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn det() -> PressDetector {
        PressDetector::new(PressConfig::default())
    }

    fn short(at: u64) -> Option<Detected> {
        Some(Detected { gesture: Gesture::Short, at: ms(at) })
    }

    fn long(at: u64) -> Option<Detected> {
        Some(Detected { gesture: Gesture::Long, at: ms(at) })
    }

    #[test]
    fn the_gesture_queue_is_bounded_and_keeps_the_newest() {
        let mut d = det();
        for i in 0..(MAX_QUEUED as u64 + 2) {
            d.push(Gesture::Short, ms(i));
        }
        assert_eq!(d.poll_timeout(), Some(Duration::ZERO), "gestures waiting: due now");
        let kept: Vec<Detected> = std::iter::from_fn(|| d.handle_timeout(ms(0))).collect();
        let want: Vec<Detected> =
            (2..(MAX_QUEUED as u64 + 2)).map(|i| Detected { gesture: Gesture::Short, at: ms(i) }).collect();
        assert_eq!(kept, want);
        assert_eq!(d.poll_timeout(), None);
    }

    /// Runs every timeout due up to `until`, collecting what they produce.
    fn run_until(d: &mut PressDetector, until: Duration) -> Vec<Detected> {
        let mut out = Vec::new();
        for _ in 0..100 {
            match d.poll_timeout() {
                Some(t) if t <= until => out.extend(d.handle_timeout(t)),
                _ => break,
            }
        }
        out
    }

    /// Feeds (level, ms) edges with all timeouts in between, then runs timeouts to `end` ms.
    fn script(d: &mut PressDetector, edges: &[(bool, u64)], end: u64) -> Vec<Detected> {
        let mut out = Vec::new();
        for &(level, t) in edges {
            out.extend(run_until(d, ms(t)));
            out.extend(d.edge(level, ms(t)));
        }
        out.extend(run_until(d, ms(end)));
        out
    }

    #[test]
    fn clean_short_press() {
        let mut d = det();
        assert_eq!(d.poll_timeout(), None);
        assert_eq!(d.edge(true, ms(100)), None);
        assert_eq!(d.poll_timeout(), Some(ms(130)));
        assert_eq!(d.handle_timeout(ms(130)), None);
        assert!(d.is_pressed());
        assert_eq!(d.poll_timeout(), Some(ms(1600)), "long-press threshold from the press edge");
        assert_eq!(d.edge(false, ms(300)), None);
        assert_eq!(d.poll_timeout(), Some(ms(330)));
        assert_eq!(d.handle_timeout(ms(330)), short(300));
        assert!(!d.is_pressed());
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn bounces_on_press_and_release_give_one_short() {
        let mut d = det();
        let edges = [
            (true, 100),
            (false, 103),
            (true, 105),
            (false, 109),
            (true, 112), // holds from here
            (false, 400),
            (true, 404),
            (false, 410), // release holds from here
        ];
        assert_eq!(script(&mut d, &edges, 5000), vec![short(410).unwrap()]);
    }

    #[test]
    fn glitch_shorter_than_debounce_is_ignored() {
        let mut d = det();
        assert_eq!(script(&mut d, &[(true, 100), (false, 129)], 5000), vec![]);
        assert!(!d.is_pressed());
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn exactly_debounce_counts() {
        let mut d = det();
        // Pressed for exactly 30 ms, then released for good.
        let out = script(&mut d, &[(true, 100), (false, 130)], 5000);
        assert_eq!(out, vec![short(130).unwrap()]);
    }

    #[test]
    fn one_ms_short_of_debounce_does_not_count() {
        let mut d = det();
        assert_eq!(script(&mut d, &[(true, 100), (false, 129)], 5000), vec![]);
        let mut d = det();
        // Release lasting 29 ms inside a hold: the hold continues and becomes long.
        let out = script(&mut d, &[(true, 0), (false, 500), (true, 529)], 1600);
        assert_eq!(out, vec![long(1500).unwrap()]);
    }

    #[test]
    fn long_press_fires_at_threshold_without_release() {
        let mut d = det();
        d.edge(true, ms(0));
        assert_eq!(run_until(&mut d, ms(1499)), vec![]);
        assert_eq!(d.poll_timeout(), Some(ms(1500)));
        assert_eq!(d.handle_timeout(ms(1500)), long(1500));
        assert_eq!(d.poll_timeout(), None, "nothing more while held");
        // The release after a long press produces nothing.
        assert_eq!(d.edge(false, ms(4000)), None);
        assert_eq!(run_until(&mut d, ms(10_000)), vec![]);
        assert!(!d.is_pressed());
    }

    #[test]
    fn hold_of_exactly_long_press_is_long() {
        let mut d = det();
        // Caller never polls: the release edge arrives exactly at the threshold.
        assert_eq!(d.edge(true, ms(0)), None);
        assert_eq!(d.edge(false, ms(1500)), long(1500));
        assert_eq!(run_until(&mut d, ms(5000)), vec![]);
    }

    #[test]
    fn hold_one_ms_short_of_long_press_is_short() {
        let mut d = det();
        let out = script(&mut d, &[(true, 0), (false, 1499)], 5000);
        assert_eq!(out, vec![short(1499).unwrap()]);
    }

    #[test]
    fn release_pending_across_threshold_is_decided_by_the_release_edge() {
        // Release edge at 1490 (before the threshold), still debouncing at 1500: a short press.
        let mut d = det();
        let out = script(&mut d, &[(true, 0), (false, 1490)], 5000);
        assert_eq!(out, vec![short(1490).unwrap()]);
        // Same, but the release turns out to be a bounce ending after the threshold: long.
        let mut d = det();
        let out = script(&mut d, &[(true, 0), (false, 1490), (true, 1510)], 5000);
        assert_eq!(out, vec![long(1500).unwrap()]);
        let mut d = det();
        let out = script(&mut d, &[(true, 0), (false, 1490), (true, 1495)], 5000);
        assert_eq!(out, vec![long(1500).unwrap()]);
    }

    #[test]
    fn stale_deadline_during_release_debounce_does_not_fire_long() {
        let mut d = det();
        d.edge(true, ms(0));
        assert_eq!(d.handle_timeout(ms(30)), None);
        let stale = d.poll_timeout();
        assert_eq!(stale, Some(ms(1500)));
        assert_eq!(d.edge(false, ms(1490)), None);
        // The caller wakes at the deadline it computed before the release edge came in.
        assert_eq!(d.handle_timeout(ms(1500)), None, "release at 1490 may be real: not a long press yet");
        assert_eq!(d.poll_timeout(), Some(ms(1520)));
        assert_eq!(d.handle_timeout(ms(1520)), short(1490));
    }

    #[test]
    fn press_during_release_debounce_continues_the_hold() {
        let mut d = det();
        let out = script(&mut d, &[(true, 0), (false, 200), (true, 220), (false, 600)], 5000);
        assert_eq!(out, vec![short(600).unwrap()]);
    }

    #[test]
    fn quick_presses_after_debounce_are_separate() {
        let mut d = det();
        let edges = [(true, 0), (false, 100), (true, 140), (false, 240), (true, 280), (false, 380)];
        let out = script(&mut d, &edges, 5000);
        assert_eq!(out, vec![short(100).unwrap(), short(240).unwrap(), short(380).unwrap()]);
    }

    #[test]
    fn press_during_press_debounce_restarts_nothing_extra() {
        let mut d = det();
        // A duplicate press edge (missed release) restarts the window; still one short press.
        d.edge(true, ms(0));
        d.edge(true, ms(20));
        assert_eq!(d.poll_timeout(), Some(ms(50)), "the level is only certain from the second edge");
        let mut d = det();
        let out = script(&mut d, &[(true, 0), (true, 20), (false, 300)], 5000);
        assert_eq!(out, vec![short(300).unwrap()]);
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn stuck_line_gives_one_long_and_then_silence() {
        let mut d = det();
        d.edge(true, ms(0));
        let out = run_until(&mut d, Duration::from_secs(3600));
        assert_eq!(out, vec![long(1500).unwrap()]);
        assert_eq!(d.poll_timeout(), None);
        for s in 0..100 {
            assert_eq!(d.handle_timeout(Duration::from_secs(3600 + s)), None);
        }
        assert_eq!(script(&mut d, &[(false, 4_000_000)], 5_000_000), vec![]);
        // And it works normally afterwards.
        assert_eq!(
            script(&mut d, &[(true, 5_000_100), (false, 5_000_200)], 6_000_000),
            vec![short(5_000_200).unwrap()]
        );
    }

    #[test]
    fn line_active_at_start_is_ignored_until_released() {
        let cfg = PressConfig::default();
        let mut d = PressDetector::with_level(cfg, true, ms(1000));
        assert!(d.is_pressed());
        assert_eq!(d.poll_timeout(), None, "no long press for a hold we did not see begin");
        assert_eq!(run_until(&mut d, ms(60_000)), vec![]);
        assert_eq!(script(&mut d, &[(false, 70_000)], 80_000), vec![]);
        assert_eq!(script(&mut d, &[(true, 80_100), (false, 80_200)], 90_000), vec![short(80_200).unwrap()]);
    }

    #[test]
    fn active_low_inverts_levels() {
        let cfg = PressConfig { active_low: true, ..PressConfig::default() };
        assert!(cfg.is_pressed_level(false));
        assert!(!cfg.level_for(true));
        let mut d = PressDetector::with_level(cfg, true, ms(0));
        assert!(!d.is_pressed());
        let out = script(&mut d, &[(false, 100), (true, 300)], 5000);
        assert_eq!(out, vec![short(300).unwrap()]);
        let out = script(&mut d, &[(false, 6000)], 9000);
        assert_eq!(out, vec![long(7500).unwrap()]);
        // An active-high edge stream on an active-low detector is "released" first: nothing.
        let mut d = PressDetector::new(cfg);
        assert!(!d.is_pressed());
        assert_eq!(script(&mut d, &[(true, 10)], 5000), vec![]);
    }

    #[test]
    fn late_caller_still_gets_gestures_in_order() {
        // The caller never calls handle_timeout; edges alone must produce everything.
        let mut d = det();
        assert_eq!(d.edge(true, ms(0)), None);
        assert_eq!(d.edge(false, ms(100)), None);
        // The next press edge arrives long after: the pending release committed first.
        assert_eq!(d.edge(true, ms(5000)), short(100));
        // Then a hold far past the threshold, reported at the threshold instant.
        assert_eq!(d.edge(false, ms(9000)), long(6500));
        assert_eq!(d.handle_timeout(ms(20_000)), None);
    }

    #[test]
    fn one_timeout_far_in_the_future_commits_and_fires_long() {
        let mut d = det();
        d.edge(true, ms(0));
        assert_eq!(d.handle_timeout(ms(100_000)), long(1500));
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn zero_debounce_and_zero_long_press_do_not_lose_gestures() {
        let cfg = PressConfig { debounce: Duration::ZERO, long_press: Duration::ZERO, active_low: false };
        let mut d = PressDetector::new(cfg);
        assert_eq!(d.edge(true, ms(10)), long(10));
        assert_eq!(d.edge(false, ms(20)), None);
        let cfg = PressConfig { debounce: Duration::ZERO, ..PressConfig::default() };
        let mut d = PressDetector::new(cfg);
        assert_eq!(d.edge(true, ms(10)), None);
        assert!(d.is_pressed());
        assert_eq!(d.edge(false, ms(20)), short(20));
    }

    #[test]
    fn out_of_order_timestamps_are_clamped() {
        let mut d = det();
        d.edge(true, ms(1000));
        // An edge "before" the previous one is taken as happening now (1000): a bounce.
        assert_eq!(d.edge(false, ms(10)), None);
        assert!(!d.is_pressed());
        assert_eq!(d.now(), ms(1000));
        assert_eq!(d.handle_timeout(ms(5)), None);
        assert_eq!(d.now(), ms(1000));
        let out = script(&mut d, &[(true, 2000), (false, 500)], 9000);
        assert_eq!(out, vec![], "release clamped to 2000 is a bounce");
    }

    #[test]
    fn extreme_timestamps_never_panic() {
        let mut d = det();
        // Deadlines saturate at the end of time, where everything has matured: the press commits and
        // the threshold passes at once.
        assert_eq!(d.edge(true, Duration::MAX), Some(Detected { gesture: Gesture::Long, at: Duration::MAX }));
        assert_eq!(d.poll_timeout(), None);
        let _ = d.handle_timeout(Duration::MAX);
        let _ = d.edge(false, Duration::ZERO);
        let _ = d.handle_timeout(Duration::MAX);
        let mut d = det();
        d.edge(true, Duration::MAX - ms(1));
        let _ = run_until(&mut d, Duration::MAX);
        let _ = d.edge(false, Duration::MAX);
        let _ = run_until(&mut d, Duration::MAX);
        let cfg = PressConfig { debounce: Duration::MAX, long_press: Duration::MAX, active_low: false };
        let mut d = PressDetector::new(cfg);
        d.edge(true, ms(5));
        assert_eq!(d.poll_timeout(), Some(Duration::MAX));
        let _ = d.handle_timeout(Duration::MAX);
    }

    /// Random edges and timeouts (including backwards and duplicate timestamps): never panics, always
    /// makes progress at poll_timeout, and gestures respect one-per-hold.
    #[test]
    fn random_sequences_hold_invariants() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        for round in 0..200 {
            let cfg = PressConfig {
                debounce: ms(rng.random_range(0..50)),
                long_press: ms(rng.random_range(0..2000)),
                active_low: rng.random_bool(0.5),
            };
            let mut d = PressDetector::with_level(cfg, rng.random_bool(0.5), ms(rng.random_range(0..100)));
            let mut t: u64 = 0;
            let mut gestures = Vec::new();
            for _ in 0..500 {
                t = match rng.random_range(0..10) {
                    0 => t.saturating_sub(rng.random_range(0..100)),
                    1 => t,
                    _ => t + rng.random_range(0..400),
                };
                if rng.random_bool(0.7) {
                    gestures.extend(d.edge(rng.random_bool(0.5), ms(t)));
                } else {
                    gestures.extend(d.handle_timeout(ms(t)));
                }
                if let Some(p) = d.poll_timeout() {
                    assert!(p >= d.now(), "round {round}: deadline {p:?} before now {:?}", d.now());
                }
            }
            // Draining all deadlines terminates.
            let mut steps = 0;
            while let Some(p) = d.poll_timeout() {
                gestures.extend(d.handle_timeout(p));
                steps += 1;
                assert!(steps < 10, "round {round}: poll_timeout does not make progress");
            }
            // Gesture instants never go backwards.
            for w in gestures.windows(2) {
                assert!(w[0].at <= w[1].at, "round {round}: {w:?}");
            }
        }
    }
}

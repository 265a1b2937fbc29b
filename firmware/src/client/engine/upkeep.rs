//! The schedule that keeps a client reachable, as pure state: when the token is fetched again (on its refresh
//! policy, at once when Janus calls a request unauthorized, soon after the registrar refused the registration,
//! with backoff after a failed fetch), and when a lost connection is rebuilt (at once, then with backoff after
//! each failed attempt). The engine runs what falls due as tasks beside its loop and reports their outcome back;
//! this module decides only the times, and never lets a second fetch or attempt start while one runs. Connection
//! generations tell an attempt's report from that of an attempt that was overtaken.

use crate::calling::Backoff;
use std::time::{Duration, Instant};

/// How soon the token is fetched again after the registrar refused the registration (the credentials in the
/// REGISTER may be the ones it no longer takes); each further refusal in a row waits longer (the backoff, jittered,
/// never less than this), until a registration succeeds.
pub(super) const REGISTRATION_RETRY: Duration = Duration::from_secs(1);

/// What has fallen due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    /// Fetch a new token.
    Refresh,
    /// Build a new connection; its report must carry this generation.
    Reconnect { generation: u64 },
}

/// The refresh and reconnection schedule of one client.
#[derive(Debug)]
pub(super) struct Upkeep {
    backoff: Backoff,
    connected: bool,
    generation: u64,
    next_refresh: Option<Instant>,
    refresh_failures: u32,
    /// Registrations refused in a row (a successful token fetch does not reset it: the registrar may refuse the
    /// new credentials too).
    registration_failures: u32,
    refreshing: bool,
    next_reconnect: Option<Instant>,
    reconnect_failures: u32,
    reconnecting: bool,
}

impl Upkeep {
    /// A client connected with its first connection (generation 1); `refresh_due_in` from the token's policy.
    pub(super) fn connected(backoff: Backoff, refresh_due_in: Option<Duration>, now: Instant) -> Self {
        Upkeep {
            backoff,
            connected: true,
            generation: 1,
            next_refresh: refresh_due_in.and_then(|d| now.checked_add(d)),
            refresh_failures: 0,
            registration_failures: 0,
            refreshing: false,
            next_reconnect: None,
            reconnect_failures: 0,
            reconnecting: false,
        }
    }

    /// The generation of the connection the client holds or is building.
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    /// The earliest time something falls due.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        [self.next_refresh, self.next_reconnect].into_iter().flatten().min()
    }

    /// What is due at `now`, one at a time (a reconnection before a refresh); the caller starts it and reports
    /// its outcome with `refreshed` / `reconnected`.
    pub(super) fn poll_due(&mut self, now: Instant) -> Option<Due> {
        if self.next_reconnect.is_some_and(|at| at <= now) {
            self.next_reconnect = None;
            self.reconnecting = true;
            self.generation += 1;
            return Some(Due::Reconnect { generation: self.generation });
        }
        if self.next_refresh.is_some_and(|at| at <= now) {
            self.next_refresh = None;
            // One fetch at a time: the one running schedules the next when it reports.
            if !self.refreshing {
                self.refreshing = true;
                return Some(Due::Refresh);
            }
        }
        None
    }

    /// Janus refused a request as unauthorized: the token is fetched again now.
    pub(super) fn unauthorized(&mut self, now: Instant) {
        if self.connected {
            self.next_refresh = Some(now);
        }
    }

    /// The registrar refused the registration: a fresh token is fetched after the returned delay,
    /// `REGISTRATION_RETRY` the first time, then growing with the backoff (`jitter` in 0..=1) while refusals go on.
    pub(super) fn registration_failed(&mut self, jitter: f64, now: Instant) -> Duration {
        let delay = match self.registration_failures {
            0 => REGISTRATION_RETRY,
            n => self.backoff.delay(n.saturating_add(1), jitter).unwrap_or(self.backoff.max).max(REGISTRATION_RETRY),
        };
        self.registration_failures = self.registration_failures.saturating_add(1);
        if self.connected {
            self.next_refresh = now.checked_add(delay);
        }
        delay
    }

    /// The registrar took a registration: the next refusal is retried soon again.
    pub(super) fn registered(&mut self) {
        self.registration_failures = 0;
    }

    /// A token fetch brought a new token; `due_in`: when the next is due, from its refresh policy.
    pub(super) fn refresh_succeeded(&mut self, due_in: Option<Duration>, now: Instant) {
        self.refreshing = false;
        self.refresh_failures = 0;
        if self.connected {
            self.next_refresh = due_in.and_then(|d| now.checked_add(d));
        }
    }

    /// A token fetch failed: the next one is due after the returned delay (backoff with `jitter` in 0..=1).
    /// While the connection is being rebuilt nothing is scheduled: each attempt fetches its own token.
    pub(super) fn refresh_failed(&mut self, jitter: f64, now: Instant) -> Duration {
        self.refreshing = false;
        let delay = self.backoff.delay(self.refresh_failures, jitter).unwrap_or(self.backoff.max);
        self.refresh_failures = self.refresh_failures.saturating_add(1);
        if self.connected {
            self.next_refresh = now.checked_add(delay);
        }
        delay
    }

    /// The session is gone: no refresh until connected again; the first attempt at a new connection is due now.
    pub(super) fn session_lost(&mut self, now: Instant) {
        self.connected = false;
        self.next_refresh = None;
        self.reconnect_failures = 0;
        self.next_reconnect = Some(now);
    }

    /// The attempt of `generation` built a connection; `refresh_due_in` from its token. `false`: the report is
    /// stale (an overtaken attempt, or one no longer needed) and what it built is dropped.
    pub(super) fn reconnect_succeeded(
        &mut self,
        generation: u64,
        refresh_due_in: Option<Duration>,
        now: Instant,
    ) -> bool {
        if !self.is_current(generation) {
            return false;
        }
        self.reconnecting = false;
        self.connected = true;
        self.reconnect_failures = 0;
        self.next_reconnect = None;
        self.next_refresh = refresh_due_in.and_then(|d| now.checked_add(d));
        true
    }

    /// The attempt of `generation` failed: the next starts after the returned delay (`None`: a stale report).
    pub(super) fn reconnect_failed(&mut self, generation: u64, jitter: f64, now: Instant) -> Option<Duration> {
        if !self.is_current(generation) {
            return None;
        }
        self.reconnecting = false;
        let delay = self.backoff.delay(self.reconnect_failures, jitter).unwrap_or(self.backoff.max);
        self.reconnect_failures = self.reconnect_failures.saturating_add(1);
        self.next_reconnect = now.checked_add(delay);
        Some(delay)
    }

    /// The attempt whose report counts: the latest one, while there is no connection.
    fn is_current(&self, generation: u64) -> bool {
        self.reconnecting && !self.connected && generation == self.generation
    }
}

#[cfg(test)]
mod tests;

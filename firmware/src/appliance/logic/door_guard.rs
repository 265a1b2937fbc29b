//! The door code's defence against guessing, as pure logic (times come in as wall-clock seconds, so that the
//! state survives a restart): each caller has a count of wrong codes; past `free_attempts` every further wrong
//! code locks that caller out for a time that doubles, up to `lockout_max`, and the right code clears the count.
//! Counting per caller keeps an attacker from locking the residents out. Phone callers share one count: their
//! caller id comes through the trunk unauthenticated, so a guesser could otherwise make up a fresh number for
//! every try. The state is what the appliance keeps in `$STATE_DIRECTORY`; it is bounded (`MAX_CALLERS`).

use crate::calling::Identifier;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Most callers with a count kept; beyond, the one whose last wrong code is the oldest is forgotten.
pub const MAX_CALLERS: usize = 256;

/// A count with no wrong code for this long is forgotten (unless its lockout still runs).
const FORGET_AFTER_SECS: u64 = 30 * 24 * 3600;

/// The key of every phone caller's shared count.
const PHONE_CALLERS: &str = "phone";

/// How hard guessing is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardPolicy {
    /// Wrong codes a caller may type before the first lockout.
    pub free_attempts: u32,
    /// The first lockout; each further wrong code doubles it.
    pub lockout_initial: Duration,
    /// The longest lockout.
    pub lockout_max: Duration,
    /// A call is hung up after this many wrong codes in it.
    pub wrong_codes_per_call: u32,
}

impl Default for GuardPolicy {
    fn default() -> Self {
        GuardPolicy {
            free_attempts: 3,
            lockout_initial: Duration::from_secs(60),
            lockout_max: Duration::from_secs(24 * 3600),
            wrong_codes_per_call: 3,
        }
    }
}

impl GuardPolicy {
    /// The lockout after a caller's `failures`-th wrong code (`None`: none yet).
    pub fn lockout_after(&self, failures: u32) -> Option<Duration> {
        if failures <= self.free_attempts {
            return None;
        }
        let doublings = (failures - self.free_attempts - 1).min(40);
        Some(self.lockout_initial.saturating_mul(2u32.saturating_pow(doublings)).min(self.lockout_max))
    }

    /// How long a guesser with one identity needs to try every code of `digits` digits, in seconds: the
    /// lockout after each wrong code is served before the next try (the free attempts cost nothing).
    pub fn seconds_to_exhaust(&self, digits: u32) -> u64 {
        let codes = 10u64.saturating_pow(digits);
        let longest = self.lockout_max.as_secs();
        let mut total = 0u64;
        let mut tried = 1u64;
        // Served after attempts 1 ..= codes - 1; once lockouts reach the longest, each one costs that.
        while tried < codes {
            let lockout = self.lockout_after(u32::try_from(tried).unwrap_or(u32::MAX)).map_or(0, |d| d.as_secs());
            if lockout >= longest {
                return total.saturating_add((codes - tried).saturating_mul(longest));
            }
            total = total.saturating_add(lockout);
            tried += 1;
        }
        total
    }
}

/// One caller's count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Wrong codes since the last right one.
    pub failures: u32,
    /// Locked out until this time (unix seconds).
    pub locked_until: u64,
    /// The last wrong code (unix seconds).
    pub last_failure: u64,
}

/// What is kept across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardState {
    /// Counts by caller key (a user id, or `"phone"`).
    #[serde(default)]
    pub callers: BTreeMap<String, Record>,
    /// The count a caller without one starts from: the free attempts when the kept state could not be read
    /// (a damaged file must not be a way to start over).
    #[serde(default)]
    pub default_failures: u32,
}

impl GuardState {
    /// The state to start from when the kept one is lost (damaged or unreadable): every caller at the end of its
    /// free attempts, since a damaged file must not be a way to start over.
    pub fn distrusted(policy: &GuardPolicy) -> Self {
        GuardState { default_failures: policy.free_attempts, ..GuardState::default() }
    }
}

/// A code attempt's verdict before the code is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Compare it.
    Open,
    /// The caller is locked out for this long still: the attempt is not compared.
    Locked(Duration),
}

/// See the module comment.
#[derive(Debug, Clone)]
pub struct DoorGuard {
    policy: GuardPolicy,
    state: GuardState,
}

impl DoorGuard {
    /// The guard with what was kept. A lockout longer than the policy allows (a clock set back) is cut to it.
    pub fn new(policy: GuardPolicy, mut state: GuardState, now: u64) -> Self {
        let longest = policy.lockout_max.as_secs();
        for record in state.callers.values_mut() {
            record.locked_until = record.locked_until.min(now.saturating_add(longest));
        }
        DoorGuard { policy, state }
    }

    /// What is kept across restarts.
    pub fn state(&self) -> &GuardState {
        &self.state
    }

    /// The policy.
    pub fn policy(&self) -> &GuardPolicy {
        &self.policy
    }

    fn key(caller: &Identifier) -> &str {
        if caller.is_phone() {
            PHONE_CALLERS
        } else {
            caller.as_str()
        }
    }

    /// Whether an attempt of `caller` at `now` may be compared.
    pub fn gate(&self, caller: &Identifier, now: u64) -> Gate {
        match self.state.callers.get(Self::key(caller)) {
            Some(r) if r.locked_until > now => Gate::Locked(Duration::from_secs(r.locked_until - now)),
            _ => Gate::Open,
        }
    }

    /// A wrong code from `caller` at `now`: the lockout it starts, if any.
    pub fn wrong(&mut self, caller: &Identifier, now: u64) -> Option<Duration> {
        self.forget_old(now);
        let key = Self::key(caller).to_owned();
        if !self.state.callers.contains_key(&key) && self.state.callers.len() >= MAX_CALLERS {
            let oldest = self.state.callers.iter().min_by_key(|(_, r)| r.last_failure).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.state.callers.remove(&oldest);
            }
        }
        let start = Record { failures: self.state.default_failures, ..Record::default() };
        let record = self.state.callers.entry(key).or_insert(start);
        record.failures = record.failures.saturating_add(1);
        record.last_failure = now;
        let lockout = self.policy.lockout_after(record.failures)?;
        record.locked_until = now.saturating_add(lockout.as_secs());
        Some(lockout)
    }

    /// The right code from `caller`: its count is cleared (`true` if it had one).
    pub fn right(&mut self, caller: &Identifier) -> bool {
        self.state.callers.remove(Self::key(caller)).is_some()
    }

    fn forget_old(&mut self, now: u64) {
        self.state
            .callers
            .retain(|_, r| r.locked_until > now || now.saturating_sub(r.last_failure) < FORGET_AFTER_SECS);
    }
}

#[cfg(test)]
mod tests;

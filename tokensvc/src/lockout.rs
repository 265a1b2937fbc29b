//! Device-key guessing, slowed down per source address: the `lock_after`-th wrong key from one source (an IPv4
//! address, or an IPv6 /64, which one client can fill on its own) and every one after it lock that source out,
//! for `initial` first, doubling each time up to `max`; while locked out its requests are answered 429 without the key
//! being looked at. A right key clears the source's count; a source with no wrong key for `forget_after` starts
//! over. At most `max_sources` sources are remembered (the one whose last wrong key is oldest is forgotten first).
//! Pure logic: the caller passes the time in, so that the tests need no sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How guesses are slowed down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// The wrong key that starts the first lockout (the ones before it are free).
    pub lock_after: u32,
    /// The first lockout; each further wrong key doubles it.
    pub initial: Duration,
    /// The longest lockout.
    pub max: Duration,
    /// A source with no wrong key for this long (and no lockout running) is forgotten.
    pub forget_after: Duration,
    /// Most sources remembered at once.
    pub max_sources: usize,
}

impl Default for LockoutPolicy {
    /// Locked out from the 5th wrong key: 1 s doubling to 15 min; forgotten after an hour without a wrong key; 4096 sources.
    fn default() -> Self {
        LockoutPolicy {
            lock_after: 5,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(60 * 60),
            max_sources: 4096,
        }
    }
}

impl LockoutPolicy {
    /// The lockout after the `n`-th lockout-causing wrong key (n = 0 for the first): `initial * 2^n`, at most `max`.
    fn lockout(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Whether a source may try a key now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Locked out for this much longer.
    Locked {
        retry_after: Duration,
    },
}

/// A lockout that a wrong key has just started (for the log line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lockout {
    pub source: IpAddr,
    /// Wrong keys counted from this source.
    pub failures: u32,
    pub duration: Duration,
}

#[derive(Clone, Debug)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

/// The wrong-key counts of the sources, bounded.
#[derive(Debug)]
pub struct Lockouts {
    policy: LockoutPolicy,
    entries: HashMap<IpAddr, Entry>,
}

/// The address a count is kept for: IPv4 (also IPv4-mapped IPv6) as is, IPv6 cut to its /64.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
    }
}

impl Lockouts {
    pub fn new(policy: LockoutPolicy) -> Self {
        Lockouts { policy, entries: HashMap::new() }
    }

    pub fn policy(&self) -> &LockoutPolicy {
        &self.policy
    }

    /// Sources remembered now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// May `ip` try a key at `now`?
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Admission {
        let source = source_of(ip);
        let Some(e) = self.entries.get(&source) else {
            return Admission::Allowed;
        };
        match e.locked_until {
            Some(until) if until > now => Admission::Locked { retry_after: until - now },
            _ if self.is_stale(e, now) => {
                self.entries.remove(&source);
                Admission::Allowed
            }
            _ => Admission::Allowed,
        }
    }

    /// A wrong key from `ip` at `now` (only call it after `check` allowed the attempt). Returns the lockout it
    /// starts, if any.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) -> Option<Lockout> {
        let source = source_of(ip);
        if let Some(e) = self.entries.get(&source) {
            if self.is_stale(e, now) {
                self.entries.remove(&source);
            }
        }
        if !self.entries.contains_key(&source) {
            self.make_room(now);
        }
        let policy = &self.policy;
        let e = self.entries.entry(source).or_insert(Entry { failures: 0, last_failure: now, locked_until: None });
        e.failures = e.failures.saturating_add(1);
        e.last_failure = now;
        let n = e.failures.checked_sub(policy.lock_after.max(1))?;
        let duration = policy.lockout(n);
        e.locked_until = Some(now + duration);
        Some(Lockout { source, failures: e.failures, duration })
    }

    /// A right key from `ip`: its count starts over.
    pub fn succeeded(&mut self, ip: IpAddr) {
        self.entries.remove(&source_of(ip));
    }

    fn is_stale(&self, e: &Entry, now: Instant) -> bool {
        let lock_over = e.locked_until.is_none_or(|until| until <= now);
        lock_over && now.saturating_duration_since(e.last_failure) >= self.policy.forget_after
    }

    /// Before a new source is added: forget the stale ones, then, while full, the one with the oldest wrong key.
    fn make_room(&mut self, now: Instant) {
        if self.entries.len() < self.policy.max_sources {
            return;
        }
        let forget_after = self.policy.forget_after;
        self.entries.retain(|_, e| {
            let lock_over = e.locked_until.is_none_or(|until| until <= now);
            !(lock_over && now.saturating_duration_since(e.last_failure) >= forget_after)
        });
        while self.entries.len() >= self.policy.max_sources.max(1) {
            let oldest = self.entries.iter().min_by_key(|(_, e)| e.last_failure).map(|(ip, _)| *ip);
            match oldest {
                Some(ip) => {
                    self.entries.remove(&ip);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    const S: Duration = Duration::from_secs(1);

    fn locked(l: &mut Lockouts, ip: IpAddr, now: Instant) -> Option<Duration> {
        match l.check(ip, now) {
            Admission::Allowed => None,
            Admission::Locked { retry_after } => Some(retry_after),
        }
    }

    #[test]
    fn locked_out_from_the_fifth_wrong_key_one_second_doubling_to_fifteen_minutes() {
        let mut l = Lockouts::new(LockoutPolicy::default());
        let mut now = Instant::now();
        for _ in 0..4 {
            assert_eq!(l.check(A, now), Admission::Allowed);
            assert_eq!(l.failed(A, now), None);
        }
        let mut expected = Vec::new();
        let mut seen = Vec::new();
        for n in 0..13u32 {
            assert_eq!(l.check(A, now), Admission::Allowed);
            let lock = l.failed(A, now).expect("locks");
            assert_eq!(lock.source, A);
            assert_eq!(lock.failures, 5 + n);
            seen.push(lock.duration.as_secs());
            expected.push((1u64 << n).min(900));
            // Locked out for exactly that long, then allowed again.
            assert_eq!(locked(&mut l, A, now), Some(lock.duration));
            assert_eq!(
                locked(&mut l, A, now + lock.duration - Duration::from_millis(1)),
                Some(Duration::from_millis(1))
            );
            now += lock.duration;
        }
        assert_eq!(seen, expected);
        assert_eq!(*seen.last().unwrap(), 900);
    }

    #[test]
    fn counted_per_source_and_a_success_clears_the_count() {
        let mut l = Lockouts::new(LockoutPolicy::default());
        let now = Instant::now();
        for _ in 0..5 {
            l.failed(A, now);
        }
        assert!(locked(&mut l, A, now).is_some());
        assert_eq!(l.check(B, now), Admission::Allowed, "another source is not locked out");
        for _ in 0..4 {
            l.failed(B, now);
        }
        l.succeeded(B);
        for _ in 0..4 {
            assert_eq!(l.failed(B, now), None, "B starts over after its right key");
        }
        l.succeeded(A);
        assert_eq!(l.check(A, now), Admission::Allowed);
    }

    #[test]
    fn a_quiet_source_is_forgotten_but_not_while_locked_out() {
        let policy =
            LockoutPolicy { initial: Duration::from_secs(7200), max: Duration::from_secs(7200), ..Default::default() };
        let mut l = Lockouts::new(policy);
        let t0 = Instant::now();
        for _ in 0..4 {
            l.failed(A, t0);
        }
        // An hour without a wrong key: A starts over (4 free again).
        let t1 = t0 + Duration::from_secs(3600);
        for _ in 0..4 {
            assert_eq!(l.failed(A, t1), None);
        }
        // A two-hour lockout outlasts the hour of forgetting.
        assert!(l.failed(A, t1).is_some());
        let t2 = t1 + Duration::from_secs(3601);
        assert!(locked(&mut l, A, t2).is_some());
        let t3 = t1 + Duration::from_secs(7200);
        assert_eq!(l.check(A, t3), Admission::Allowed);
        assert!(l.is_empty(), "forgotten once the lockout is over and an hour has passed");
    }

    #[test]
    fn bounded_the_oldest_forgotten_first() {
        let policy = LockoutPolicy { max_sources: 3, initial: Duration::from_secs(60), ..Default::default() };
        let mut l = Lockouts::new(policy);
        let t = Instant::now();
        let ip = |n: u8| IpAddr::V4(Ipv4Addr::new(198, 51, 100, n));
        for _ in 0..5 {
            l.failed(ip(1), t);
        }
        l.failed(ip(2), t + S);
        l.failed(ip(3), t + 2 * S);
        assert!(locked(&mut l, ip(1), t + 2 * S).is_some());
        // A fourth source: ip(1), whose last wrong key is oldest, is forgotten.
        l.failed(ip(4), t + 3 * S);
        assert_eq!(l.len(), 3);
        assert_eq!(l.check(ip(1), t + 3 * S), Admission::Allowed);
        for n in 5..=200 {
            l.failed(ip(n), t + 4 * S);
        }
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn ipv6_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let mut l = Lockouts::new(LockoutPolicy::default());
        let now = Instant::now();
        let a1: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let a2: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        for _ in 0..3 {
            l.failed(a1, now);
        }
        for _ in 0..3 {
            l.failed(a2, now);
        }
        assert!(locked(&mut l, a1, now).is_some(), "one /64 shares one count");
        assert_eq!(l.check(other, now), Admission::Allowed);
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(source_of(mapped), A);
        assert_eq!(source_of(IpAddr::V6(Ipv6Addr::LOCALHOST)), IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    }
}

//! Exponential backoff with full jitter, as pure arithmetic: the caller supplies the randomness, so retries of
//! token refreshes, reconnects and registrations are bounded, spread out and unit-tested.

use std::time::Duration;

/// Backoff bounds: the first delay, the cap, and how many attempts before giving up (`None`: never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(250), max: Duration::from_secs(30), max_attempts: None }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based), or `None` once `max_attempts` is spent. The delay is drawn
    /// in [ceiling/2, ceiling] where ceiling = min(max, initial * 2^attempt); `unit` in [0, 1) is the caller's
    /// random draw.
    pub fn delay(&self, attempt: u32, unit: f64) -> Option<Duration> {
        if self.max_attempts.is_some_and(|m| attempt >= m) {
            return None;
        }
        let factor = 2u32.saturating_pow(attempt.min(30));
        let ceiling = self.initial.saturating_mul(factor).min(self.max);
        let unit = if unit.is_finite() { unit.clamp(0.0, 1.0) } else { 0.5 };
        Some(ceiling.mul_f64(0.5 + 0.5 * unit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_and_stays_within_jitter_bounds() {
        let b = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(2), max_attempts: None };
        assert_eq!(b.delay(0, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(b.delay(0, 0.0), Some(Duration::from_millis(50)));
        assert_eq!(b.delay(3, 1.0), Some(Duration::from_millis(800)));
        assert_eq!(b.delay(10, 1.0), Some(Duration::from_secs(2)));
        assert_eq!(b.delay(1000, 0.0), Some(Duration::from_secs(1)));
        assert_eq!(b.delay(1, f64::NAN), Some(Duration::from_millis(150)));
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let b = Backoff { max_attempts: Some(2), ..Backoff::default() };
        assert!(b.delay(1, 0.5).is_some());
        assert_eq!(b.delay(2, 0.5), None);
    }
}

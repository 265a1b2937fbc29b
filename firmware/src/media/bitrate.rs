//! Sender-side video bitrate control: a pure, clock-injected controller that turns the receiver's
//! feedback (REMB, the receiver's estimated maximum bitrate; and the fraction of our video lost from
//! RTCP receiver reports) into an encoder target, in the manner of the loss-based half of Google
//! Congestion Control: heavy loss backs off, light loss probes upwards, REMB and the configured
//! maximum cap the result, the configured minimum floors it. No I/O, no GStreamer: the session feeds
//! it and applies what it returns with `VideoEncoder::set_bitrate`.

use std::time::{Duration, Instant};

/// Loss above this fraction reduces the target.
pub const LOSS_HIGH: f64 = 0.10;
/// Loss below this fraction lets the target grow.
pub const LOSS_LOW: f64 = 0.02;
/// The smallest reduction on heavy loss (15 %); heavier loss reduces by `loss / 2` as GCC does.
pub const DECREASE_FACTOR: f64 = 0.85;
/// Growth per report on light loss (5 %).
pub const INCREASE_FACTOR: f64 = 1.05;
/// Default least spacing of two changes driven by loss reports.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// See the module comment. All rates are in bit/s internally; the public interface speaks kbit/s
/// (what the encoders are configured in) except for REMB, which arrives in bit/s.
#[derive(Debug, Clone)]
pub struct BitrateController {
    min_bps: u64,
    max_bps: u64,
    /// The loss-based estimate; never above the cap that was in force when it last grew.
    loss_bps: u64,
    /// The latest REMB, if any.
    remb_bps: Option<u64>,
    /// When a loss report last changed `loss_bps`.
    last_change: Option<Instant>,
    min_interval: Duration,
    /// The target last returned (kbit/s), to report changes only.
    reported_kbps: u32,
}

impl BitrateController {
    /// A controller starting at `start_kbps`, kept within `min_kbps..=max_kbps` (swapped if given in
    /// the wrong order; a zero minimum is taken as 1 kbit/s).
    pub fn new(start_kbps: u32, min_kbps: u32, max_kbps: u32) -> Self {
        let (lo, hi) = if min_kbps <= max_kbps { (min_kbps, max_kbps) } else { (max_kbps, min_kbps) };
        let min_bps = u64::from(lo.max(1)) * 1000;
        let max_bps = (u64::from(hi) * 1000).max(min_bps);
        let loss_bps = (u64::from(start_kbps) * 1000).clamp(min_bps, max_bps);
        let mut ctl = Self {
            min_bps,
            max_bps,
            loss_bps,
            remb_bps: None,
            last_change: None,
            min_interval: DEFAULT_MIN_INTERVAL,
            reported_kbps: 0,
        };
        ctl.reported_kbps = ctl.target_kbps();
        ctl
    }

    /// Sets the least spacing of two loss-driven changes (reports arriving faster are ignored).
    pub fn with_min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }

    /// The configured floor, kbit/s.
    pub fn min_kbps(&self) -> u32 {
        to_kbps(self.min_bps)
    }

    /// The configured ceiling, kbit/s.
    pub fn max_kbps(&self) -> u32 {
        to_kbps(self.max_bps)
    }

    /// The latest REMB received, bit/s.
    pub fn remb_bps(&self) -> Option<u64> {
        self.remb_bps
    }

    /// The current upper bound: the smaller of REMB and the configured maximum.
    fn cap_bps(&self) -> u64 {
        self.remb_bps.map_or(self.max_bps, |r| r.min(self.max_bps)).max(self.min_bps)
    }

    /// The target the encoder should run at now, kbit/s.
    pub fn target_kbps(&self) -> u32 {
        to_kbps(self.loss_bps.min(self.cap_bps()).clamp(self.min_bps, self.max_bps))
    }

    fn changed(&mut self) -> Option<u32> {
        let now = self.target_kbps();
        if now == self.reported_kbps {
            None
        } else {
            self.reported_kbps = now;
            Some(now)
        }
    }

    /// A REMB arrived (`bps`: the receiver's estimate). Returns the new target if it changed. A REMB
    /// below the target lowers it at once; a higher one only lifts the cap (growth stays gradual).
    pub fn on_remb(&mut self, bps: u64) -> Option<u32> {
        self.remb_bps = Some(bps);
        self.changed()
    }

    /// A receiver report arrived with `fraction_lost` (RTCP's 8-bit fixed point: lost/256) for our
    /// video. Returns the new target if it changed.
    pub fn on_loss_report(&mut self, fraction_lost: u8, now: Instant) -> Option<u32> {
        if self.last_change.is_some_and(|t| now.saturating_duration_since(t) < self.min_interval) {
            return None;
        }
        let loss = f64::from(fraction_lost) / 256.0;
        let current = self.loss_bps.min(self.cap_bps());
        let next = if loss > LOSS_HIGH {
            let factor = DECREASE_FACTOR.min(1.0 - 0.5 * loss);
            scale(current, factor).max(self.min_bps)
        } else if loss < LOSS_LOW {
            // Grow from what is actually being sent, never past the cap in force now.
            scale(current, INCREASE_FACTOR).max(current + 1000).min(self.cap_bps())
        } else {
            return None;
        };
        if next != self.loss_bps {
            self.loss_bps = next;
            self.last_change = Some(now);
        }
        self.changed()
    }
}

fn scale(bps: u64, factor: f64) -> u64 {
    // Rates are far below 2^53: the float round trip is exact enough.
    (bps as f64 * factor).round() as u64
}

fn to_kbps(bps: u64) -> u32 {
    u32::try_from(bps / 1000).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost(percent: u32) -> u8 {
        u8::try_from(percent * 256 / 100).unwrap()
    }

    #[test]
    fn starts_at_the_start_rate_within_bounds() {
        assert_eq!(BitrateController::new(800, 100, 2000).target_kbps(), 800);
        assert_eq!(BitrateController::new(5000, 100, 2000).target_kbps(), 2000);
        assert_eq!(BitrateController::new(10, 100, 2000).target_kbps(), 100);
        // Bounds given the wrong way round are swapped.
        let c = BitrateController::new(800, 2000, 100);
        assert_eq!((c.min_kbps(), c.max_kbps(), c.target_kbps()), (100, 2000, 800));
    }

    #[test]
    fn heavy_loss_decreases_by_15_percent() {
        let t0 = Instant::now();
        let mut c = BitrateController::new(1000, 100, 2000);
        assert_eq!(c.on_loss_report(lost(12), t0), Some(850));
        assert_eq!(c.on_loss_report(lost(12), t0 + Duration::from_secs(1)), Some(722));
    }

    #[test]
    fn very_heavy_loss_decreases_by_half_the_loss() {
        let mut c = BitrateController::new(1000, 100, 2000);
        // 50 % loss: GCC's 1 - 0.5 * 0.5 = 0.75 is stronger than 0.85.
        assert_eq!(c.on_loss_report(128, Instant::now()), Some(750));
    }

    #[test]
    fn light_loss_increases_by_5_percent_up_to_max() {
        let t0 = Instant::now();
        let mut c = BitrateController::new(1000, 100, 1100);
        assert_eq!(c.on_loss_report(0, t0), Some(1050));
        assert_eq!(c.on_loss_report(lost(1), t0 + Duration::from_secs(1)), Some(1100));
        assert_eq!(c.on_loss_report(0, t0 + Duration::from_secs(2)), None, "already at max");
        assert_eq!(c.target_kbps(), 1100);
    }

    #[test]
    fn moderate_loss_holds() {
        let mut c = BitrateController::new(1000, 100, 2000);
        assert_eq!(c.on_loss_report(lost(5), Instant::now()), None);
        assert_eq!(c.target_kbps(), 1000);
    }

    #[test]
    fn never_below_min() {
        let t0 = Instant::now();
        let mut c = BitrateController::new(200, 150, 2000);
        for i in 0..20 {
            c.on_loss_report(200, t0 + Duration::from_secs(i));
        }
        assert_eq!(c.target_kbps(), 150);
    }

    #[test]
    fn reports_faster_than_the_interval_are_ignored() {
        let t0 = Instant::now();
        let mut c = BitrateController::new(1000, 100, 2000);
        assert_eq!(c.on_loss_report(lost(20), t0), Some(850));
        assert_eq!(c.on_loss_report(lost(20), t0 + Duration::from_millis(300)), None);
        assert_eq!(c.target_kbps(), 850);
        let mut fast = BitrateController::new(1000, 100, 2000).with_min_interval(Duration::ZERO);
        fast.on_loss_report(lost(20), t0);
        assert_eq!(fast.on_loss_report(lost(20), t0), Some(722));
    }

    #[test]
    fn remb_caps_the_target_and_growth() {
        let t0 = Instant::now();
        let mut c = BitrateController::new(1000, 100, 2000);
        assert_eq!(c.on_remb(600_000), Some(600));
        assert_eq!(c.remb_bps(), Some(600_000));
        // Light loss cannot grow past REMB.
        assert_eq!(c.on_loss_report(0, t0), None);
        assert_eq!(c.target_kbps(), 600);
        // A higher REMB lifts the cap, but growth is gradual: 5 % per report from what was sent.
        assert_eq!(c.on_remb(1_500_000), None);
        assert_eq!(c.on_loss_report(0, t0 + Duration::from_secs(1)), Some(630));
        assert_eq!(c.on_loss_report(0, t0 + Duration::from_secs(2)), Some(661));
        // A REMB above max is capped by max; one below min is floored by min.
        assert_eq!(c.on_remb(100_000_000), None);
        assert_eq!(c.on_remb(1_000), Some(100));
    }

    #[test]
    fn loss_decrease_applies_to_the_remb_capped_rate() {
        let mut c = BitrateController::new(1000, 100, 2000);
        c.on_remb(500_000);
        // 15 % off the 500 actually sent, not off the 1000 loss estimate.
        assert_eq!(c.on_loss_report(lost(15), Instant::now()), Some(425));
    }
}

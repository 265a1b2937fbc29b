//! Audio devices: the [`AudioCapture`] (microphone) and [`AudioPlayback`] (speaker) traits, the
//! [`AudioBackend`] that lists and opens them, and the backends: `alsa` (Linux, alsa-lib) and `sim`
//! (tone microphone, capturing speaker).

pub mod alsa;
pub mod sim;

use super::{AudioFrame, DeviceError, DeviceKind};
use std::path::PathBuf;

/// A microphone delivering 10 ms frames of 48 kHz mono.
pub trait AudioCapture: Send {
    /// Blocks until the next 10 ms frame has been captured and copies it into `frame`.
    /// [`DeviceError::Gone`] means the device disappeared: drop this and reopen through the backend.
    fn read(&mut self, frame: &mut AudioFrame) -> Result<(), DeviceError>;
    /// The device's id (what [`AudioBackend::open_capture`] was given).
    fn id(&self) -> &str;
}

/// A speaker taking 10 ms frames of 48 kHz mono.
pub trait AudioPlayback: Send {
    /// Queues one frame, blocking while the device's buffer is full (the device paces the caller).
    fn write(&mut self, frame: &AudioFrame) -> Result<(), DeviceError>;
    /// Samples queued in the device and not yet heard, when the device can tell.
    fn delay_samples(&mut self) -> Option<u32>;
    /// The device's id.
    fn id(&self) -> &str;
}

/// An audio device as listed by a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioDeviceInfo {
    /// Microphone or speaker.
    pub kind: DeviceKind,
    /// Stable id to open it by (an ALSA PCM name such as `hw:CARD=Device,DEV=0` or `default`).
    pub id: String,
    /// Human-readable name (the card's description).
    pub name: String,
    /// The device node whose access decides the permission (`/dev/snd/pcmC0D0c`), when there is one.
    pub node: Option<PathBuf>,
}

/// Lists and opens audio devices.
pub trait AudioBackend: Send + Sync {
    /// Microphones and speakers present now.
    fn list(&self) -> Vec<AudioDeviceInfo>;
    /// Opens a microphone by id.
    fn open_capture(&self, id: &str) -> Result<Box<dyn AudioCapture>, DeviceError>;
    /// Opens a speaker by id.
    fn open_playback(&self, id: &str) -> Result<Box<dyn AudioPlayback>, DeviceError>;
}

/// Duration of one [`AudioFrame`].
pub const FRAME_DURATION: std::time::Duration = std::time::Duration::from_millis(10);

/// Paces a stream at one 10 ms frame per tick of the monotonic clock, for devices that have no clock of
/// their own (the simulated backend, alsa-lib's `null`/`file` PCMs).
///
/// Deadline-based: tick `n` is due at `start + (n + 1) × 10 ms`, so sleeping late on one tick is made up
/// on the next ones and the long-run rate does not drift. A caller that falls behind by more than
/// [`FramePacer::MAX_LAG`] (it stalled, or the machine was suspended) is resynchronised to now instead
/// of being handed a burst of frames, as a real device would have overrun.
#[derive(Debug, Clone)]
pub struct FramePacer {
    start: std::time::Instant,
    ticks: u64,
}

impl Default for FramePacer {
    fn default() -> Self {
        Self::new()
    }
}

impl FramePacer {
    /// Largest lag that is caught up on rather than skipped.
    pub const MAX_LAG: std::time::Duration = std::time::Duration::from_millis(200);

    /// A pacer whose first tick is due 10 ms from now.
    pub fn new() -> Self {
        FramePacer { start: std::time::Instant::now(), ticks: 0 }
    }

    /// When the next tick is due.
    pub fn next_due(&self) -> std::time::Instant {
        self.start + std::time::Duration::from_millis(self.ticks.saturating_add(1).saturating_mul(10))
    }

    /// Sleeps until the next tick is due (at most 10 ms), then counts it.
    pub fn wait_next(&mut self) {
        let now = std::time::Instant::now();
        let due = self.next_due();
        if now > due + Self::MAX_LAG {
            // Behind by more than we catch up on: start afresh from now (frames are "lost").
            log::debug!("frame pacer resynchronised after {:?} of lag", now - due);
            self.start = now;
            self.ticks = 0;
        } else if due > now {
            std::thread::sleep(due - now);
        }
        self.ticks += 1;
    }

    /// Ticks counted since the pacer was created or last resynchronised.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// When the last counted tick was due (the end of the frame it paced); `None` before the first.
    pub fn last_due(&self) -> Option<std::time::Instant> {
        (self.ticks > 0).then(|| self.start + std::time::Duration::from_millis(self.ticks.saturating_mul(10)))
    }
}

/// The power of the `freq` component of `samples` (Goertzel), normalised so that a full-scale sine at that
/// frequency gives about 0.25: for checking what a microphone captured or a speaker played.
pub fn tone_power(samples: &[i16], freq: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(super::SAMPLE_RATE);
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in samples {
        let s = f64::from(v) / 32_768.0 + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let n = samples.len() as f64;
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (n * n)
}

/// Window of [`tone_onsets`]: 2 ms, in steps of half of it.
const ONSET_WINDOW: usize = super::SAMPLE_RATE as usize / 500;

/// Where a tone at `freq` starts in `samples`: in each 2 ms window (stepped by 1 ms) whose [`tone_power`] rises
/// to `min_power` or more after at least `min_quiet` samples below it, the first sample as loud as a sine of
/// that power. For locating tone bursts in what a speaker played (the mouth-to-ear latency benchmark); the first
/// window counts as an onset only if it follows `min_quiet` quiet samples, so a tone already playing at the start
/// is not one.
pub fn tone_onsets(samples: &[i16], freq: f64, min_power: f64, min_quiet: usize) -> Vec<usize> {
    let step = ONSET_WINDOW / 2;
    let mut onsets = Vec::new();
    let mut quiet = 0usize;
    let mut pos = 0usize;
    while pos + ONSET_WINDOW <= samples.len() {
        let window = &samples[pos..pos + ONSET_WINDOW];
        if tone_power(window, freq) >= min_power {
            if quiet >= min_quiet {
                // Within the window, the first sample as loud as a sine of that power.
                let amplitude = 32_768.0 * (4.0 * min_power).sqrt();
                let first = window.iter().position(|&v| f64::from(v).abs() >= amplitude).unwrap_or(0);
                onsets.push(pos + first);
            }
            quiet = 0;
        } else {
            quiet += step;
        }
        pos += step;
    }
    onsets
}

/// The share of the power of `samples` that is at `freq` (1.0: a pure tone at that frequency).
pub fn tone_share(samples: &[i16], freq: f64) -> f64 {
    let mean_square =
        samples.iter().map(|&v| (f64::from(v) / 32_768.0).powi(2)).sum::<f64>() / samples.len().max(1) as f64;
    if mean_square == 0.0 {
        0.0
    } else {
        2.0 * tone_power(samples, freq) / mean_square
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Silence with 1 kHz bursts of `len` samples at -20 dBFS starting at `starts`.
    fn bursts(total: usize, starts: &[usize], len: usize) -> Vec<i16> {
        let mut x = vec![0i16; total];
        for &s in starts {
            for (i, v) in x[s..(s + len).min(total)].iter_mut().enumerate() {
                *v = (3_277.0 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 48_000.0).sin()) as i16;
            }
        }
        x
    }

    #[test]
    fn tone_onsets_are_found_within_a_millisecond() {
        let starts = [4_800, 30_000, 55_555];
        let x = bursts(80_000, &starts, 4_800);
        // -40 dBFS amplitude as the threshold; 50 ms of quiet needed before an onset.
        let got = tone_onsets(&x, 1000.0, 0.01f64.powi(2) / 4.0, 2_400);
        assert_eq!(got.len(), starts.len(), "{got:?}");
        for (g, s) in got.iter().zip(starts) {
            assert!(g.abs_diff(s) <= 48, "onset at {g}, burst at {s}");
        }
    }

    #[test]
    fn tone_onsets_ignore_other_frequencies_short_gaps_and_a_tone_already_on() {
        let x = bursts(20_000, &[0], 20_000);
        assert!(tone_onsets(&x, 1000.0, 1e-5, 480).is_empty(), "a tone playing from the start is no onset");
        assert!(tone_onsets(&bursts(20_000, &[5_000], 4_800), 5000.0, 1e-4, 480).is_empty());
        // A 5 ms dropout inside a burst is not a new onset when 10 ms of quiet are asked.
        let mut x = bursts(20_000, &[2_000], 9_600);
        x[6_000..6_240].fill(0);
        assert_eq!(tone_onsets(&x, 1000.0, 1e-5, 480).len(), 1);
    }

    #[test]
    fn pacer_ticks_at_ten_ms_without_drift() {
        let mut pacer = FramePacer::new();
        let start = Instant::now();
        for _ in 0..30 {
            pacer.wait_next();
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(295), "30 ticks took {took:?}");
        assert_eq!(pacer.ticks(), 30);
    }

    #[test]
    fn pacer_catches_up_small_lags_and_resyncs_after_long_ones() {
        let mut pacer = FramePacer::new();
        std::thread::sleep(Duration::from_millis(60));
        // 60 ms late: the next ticks are due already and come at once (catching up).
        let due = pacer.next_due();
        assert!(due <= Instant::now());
        pacer.wait_next();
        assert_eq!(pacer.ticks(), 1);
        std::thread::sleep(FramePacer::MAX_LAG + Duration::from_millis(50));
        // Too late: start afresh, the next tick is 10 ms after the resync.
        pacer.wait_next();
        assert_eq!(pacer.ticks(), 1);
        assert!(pacer.next_due() > Instant::now());
    }
}

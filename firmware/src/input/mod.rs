//! Input and output lines of the appliance: buttons in (debounced gestures: short and long presses), relay
//! and LEDs out. The traits here ([`ButtonInput`], [`OutputLine`]) are what the appliance loop uses; the
//! backends are Linux character-device GPIO ([`gpio`]) and a simulation for tests and `--sim` ([`sim`]).
//! Lines are embedded-hal 1.0 digital pins where the crate serves: outputs are [`PinOutput`]s over an
//! `OutputPin` ([`pin`]; linux-embedded-hal's `CdevPin` on Linux), button levels read through `InputPin`;
//! button edges come from gpio-cdev's event lines, which embedded-hal has no trait for.
//! Press detection itself is pure and lives in [`press`]; what a button does and which state an LED shows, the
//! vocabulary the configuration and the appliance logic share, is [`controls`].
//!
//! All timestamps ([`ButtonEvent::at`], output histories) are on the CLOCK_MONOTONIC clock
//! ([`monotonic_now`]): the clock of the kernel's GPIO event timestamps.

pub mod controls;
pub mod gpio;
pub mod pin;
pub mod press;
pub mod sim;

pub use controls::{ButtonAction, LedState};
pub use gpio::{GpioButtons, GpioOutput};
pub use pin::PinOutput;
pub use press::{Detected, Gesture, PressConfig, PressDetector, DEFAULT_DEBOUNCE, DEFAULT_LONG_PRESS};
pub use sim::{parse_key, SimButtonHandle, SimButtons, SimOutputLine, SimOutputs, KEYMAP};

use std::path::PathBuf;
use std::time::Duration;

/// Button events waiting to be read, at most (both backends drop and log beyond this).
pub const EVENT_QUEUE: usize = 64;

/// Hands the detected gestures of a backend (`source`: "button", "sim button") to the reader's queue, dropping
/// and logging what does not fit; false when nobody reads any more.
pub(crate) fn forward_presses(
    source: &str,
    out: &mut Vec<ButtonEvent>,
    tx: &std::sync::mpsc::SyncSender<ButtonEvent>,
) -> bool {
    use std::sync::mpsc::TrySendError;
    for ev in out.drain(..) {
        log::debug!("{source} {}: {} press", ev.button, ev.gesture);
        match tx.try_send(ev) {
            Ok(()) => {}
            Err(TrySendError::Full(ev)) => {
                log::warn!("{source} queue full ({EVENT_QUEUE}): dropped {} {} press", ev.button, ev.gesture)
            }
            Err(TrySendError::Disconnected(_)) => return false,
        }
    }
    true
}

/// A gesture on a named button.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ButtonEvent {
    /// The button's configured name (e.g. `call`).
    pub button: String,
    /// What was done.
    pub gesture: Gesture,
    /// When (CLOCK_MONOTONIC): the release edge of a short press, press + threshold of a long one.
    pub at: Duration,
}

/// A source of button gestures.
pub trait ButtonInput: Send {
    /// Waits up to `timeout` for the next gesture. `Ok(None)`: nothing happened in time.
    /// An error means the input is gone for good (every line failed).
    fn next_event(&mut self, timeout: Duration) -> Result<Option<ButtonEvent>, InputError>;
}

/// An output line: the door relay or a status LED.
pub trait OutputLine: Send {
    /// Drives the line active (`true`) or inactive; polarity is handled by the backend.
    fn set(&mut self, on: bool) -> Result<(), InputError>;
    /// The line's configured name (e.g. `relay`, `led_call`).
    fn name(&self) -> &str;
}

/// One button: where it is and how to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ButtonSpec {
    /// Name used in events and in the configuration (`call`, `mute`, `video`, `hangup`, ...).
    pub name: String,
    /// GPIO character device, e.g. `/dev/gpiochip0`.
    pub chip: PathBuf,
    /// Line offset on that chip.
    pub line: u32,
    /// Pressed reads low (pull-up wiring).
    pub active_low: bool,
    /// How long a level must hold to count.
    pub debounce: Duration,
    /// How long a hold must last to be a long press.
    pub long_press: Duration,
}

impl ButtonSpec {
    /// A button with the default timings, active high.
    pub fn new(name: impl Into<String>, chip: impl Into<PathBuf>, line: u32) -> Self {
        ButtonSpec {
            name: name.into(),
            chip: chip.into(),
            line,
            active_low: false,
            debounce: DEFAULT_DEBOUNCE,
            long_press: DEFAULT_LONG_PRESS,
        }
    }

    /// The press detector configuration of this button.
    pub fn press_config(&self) -> PressConfig {
        PressConfig { debounce: self.debounce, long_press: self.long_press, active_low: self.active_low }
    }

    /// Checks the name and timings (non-empty name, 0 < debounce < long_press).
    pub fn validate(&self) -> Result<(), InputError> {
        let invalid = |reason: String| Err(InputError::InvalidSpec { name: self.name.clone(), reason });
        if self.name.trim().is_empty() {
            return invalid(format!("{} line {}: empty button name", self.chip.display(), self.line));
        }
        if self.debounce.is_zero() {
            return invalid("debounce must be more than 0".into());
        }
        if self.long_press <= self.debounce {
            return invalid(format!(
                "long_press ({:?}) must be longer than debounce ({:?})",
                self.long_press, self.debounce
            ));
        }
        Ok(())
    }
}

/// One output line: where it is and its polarity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    /// Name (`relay`, `led_idle`, ...).
    pub name: String,
    /// GPIO character device, e.g. `/dev/gpiochip0`.
    pub chip: PathBuf,
    /// Line offset on that chip.
    pub line: u32,
    /// Active drives the line low.
    pub active_low: bool,
}

impl OutputSpec {
    /// An active-high output.
    pub fn new(name: impl Into<String>, chip: impl Into<PathBuf>, line: u32) -> Self {
        OutputSpec { name: name.into(), chip: chip.into(), line, active_low: false }
    }
}

/// Errors of the input/output lines; each names the chip and line (or the button) concerned.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The GPIO chip could not be opened.
    #[error("{}: {reason}", .chip.display())]
    Chip {
        /// Character device path.
        chip: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A line could not be requested, read or driven.
    #[error("{} line {line} ({name}): {reason}", .chip.display())]
    Line {
        /// Character device path.
        chip: PathBuf,
        /// Line offset.
        line: u32,
        /// The configured name of the button or output.
        name: String,
        /// What went wrong (e.g. `busy (used by "foo")`).
        reason: String,
    },
    /// A button or output specification is unusable.
    #[error("button {name:?}: {reason}")]
    InvalidSpec {
        /// The button's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// No button or output of that name.
    #[error("no button or output named {0:?}")]
    Unknown(String),
    /// The input stopped for good (reader threads gone).
    #[error("button input closed: {0}")]
    Closed(String),
    /// A simulated failure or a full simulation queue.
    #[error("simulated {name}: {reason}")]
    Sim {
        /// Button or output name.
        name: String,
        /// What happened.
        reason: String,
    },
}

/// The error of the simulated pins (embedded-hal's digital traits need its kind).
impl embedded_hal::digital::Error for InputError {
    fn kind(&self) -> embedded_hal::digital::ErrorKind {
        embedded_hal::digital::ErrorKind::Other
    }
}

/// Now, on CLOCK_MONOTONIC (the clock of kernel GPIO event timestamps and of every `at` here).
pub fn monotonic_now() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0))
}

/// Checks a set of button specs (each valid, names unique).
pub fn validate_buttons(specs: &[ButtonSpec]) -> Result<(), InputError> {
    for (i, spec) in specs.iter().enumerate() {
        spec.validate()?;
        if specs[..i].iter().any(|s| s.name == spec.name) {
            return Err(InputError::InvalidSpec { name: spec.name.clone(), reason: "name used twice".into() });
        }
        if let Some(other) = specs[..i].iter().find(|s| s.chip == spec.chip && s.line == spec.line) {
            return Err(InputError::InvalidSpec {
                name: spec.name.clone(),
                reason: format!("{} line {} is also button {:?}", spec.chip.display(), spec.line, other.name),
            });
        }
    }
    Ok(())
}

/// Named press detectors with the loop both backends run: edges in, due timeouts, events out.
#[derive(Debug)]
pub(crate) struct DetectorBank {
    entries: Vec<(String, PressDetector)>,
}

impl DetectorBank {
    pub(crate) fn new(entries: Vec<(String, PressDetector)>) -> Self {
        DetectorBank { entries }
    }

    pub(crate) fn name(&self, idx: usize) -> &str {
        self.entries.get(idx).map(|(n, _)| n.as_str()).unwrap_or("")
    }

    pub(crate) fn config(&self, idx: usize) -> Option<PressConfig> {
        self.entries.get(idx).map(|(_, d)| *d.config())
    }

    /// Feeds an edge; the gestures completed go to `out`.
    pub(crate) fn edge(&mut self, idx: usize, level: bool, at: Duration, out: &mut Vec<ButtonEvent>) {
        if let Some((name, det)) = self.entries.get_mut(idx) {
            if let Some(d) = det.edge(level, at) {
                out.push(ButtonEvent { button: name.clone(), gesture: d.gesture, at: d.at });
            }
        }
    }

    /// The earliest deadline of any detector.
    pub(crate) fn next_deadline(&self) -> Option<Duration> {
        self.entries.iter().filter_map(|(_, d)| d.poll_timeout()).min()
    }

    /// The earliest deadline of any detector and whose it is.
    fn earliest(&self) -> Option<(usize, Duration)> {
        self.entries.iter().enumerate().filter_map(|(i, (_, d))| d.poll_timeout().map(|t| (i, t))).min_by_key(|x| x.1)
    }

    /// Runs every deadline up to `now`, in time order, each at its own instant; gestures go to `out`.
    pub(crate) fn run_until(&mut self, now: Duration, out: &mut Vec<ButtonEvent>) {
        // Each detector needs at most a few steps per deadline; the bound only guards against a bug.
        for _ in 0..(8 * self.entries.len().max(1)) {
            let Some((idx, t)) = self.earliest() else { return };
            if t > now {
                return;
            }
            if let Some((name, det)) = self.entries.get_mut(idx) {
                if let Some(d) = det.handle_timeout(t) {
                    out.push(ButtonEvent { button: name.clone(), gesture: d.gesture, at: d.at });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_validation_names_the_button() {
        let ok = ButtonSpec::new("call", "/dev/gpiochip0", 17);
        ok.validate().unwrap();
        assert_eq!(ok.press_config(), PressConfig::default());
        let bad = ButtonSpec { long_press: Duration::from_millis(20), ..ok.clone() };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("\"call\"") && err.contains("long_press"), "{err}");
        let bad = ButtonSpec { debounce: Duration::ZERO, ..ok.clone() };
        assert!(bad.validate().unwrap_err().to_string().contains("debounce"));
        let bad = ButtonSpec::new(" ", "/dev/gpiochip0", 3);
        assert!(bad.validate().unwrap_err().to_string().contains("/dev/gpiochip0 line 3"));
    }

    #[test]
    fn duplicate_names_and_lines_are_refused() {
        let a = ButtonSpec::new("call", "/dev/gpiochip0", 17);
        let b = ButtonSpec::new("call", "/dev/gpiochip0", 18);
        let err = validate_buttons(&[a.clone(), b]).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
        let c = ButtonSpec::new("mute", "/dev/gpiochip0", 17);
        let err = validate_buttons(&[a.clone(), c]).unwrap_err().to_string();
        assert!(err.contains("line 17") && err.contains("\"call\""), "{err}");
        let d = ButtonSpec::new("mute", "/dev/gpiochip1", 17);
        validate_buttons(&[a, d]).unwrap();
    }

    #[test]
    fn errors_name_chip_and_line() {
        let e =
            InputError::Line { chip: "/dev/gpiochip0".into(), line: 17, name: "call".into(), reason: "busy".into() };
        assert_eq!(e.to_string(), "/dev/gpiochip0 line 17 (call): busy");
        let e = InputError::Chip { chip: "/dev/gpiochip9".into(), reason: "no such device".into() };
        assert_eq!(e.to_string(), "/dev/gpiochip9: no such device");
    }

    #[test]
    fn monotonic_clock_advances() {
        let a = monotonic_now();
        std::thread::sleep(Duration::from_millis(5));
        let b = monotonic_now();
        assert!(a > Duration::ZERO);
        assert!(b > a);
    }

    #[test]
    fn bank_runs_deadlines_in_time_order() {
        let cfg = PressConfig::default();
        let mut bank = DetectorBank::new(vec![
            ("a".into(), PressDetector::new(cfg)),
            ("b".into(), PressDetector::new(PressConfig { long_press: Duration::from_millis(500), ..cfg })),
        ]);
        assert_eq!(bank.name(1), "b");
        assert_eq!(bank.name(7), "");
        let mut out = Vec::new();
        let ms = Duration::from_millis;
        bank.edge(0, true, ms(0), &mut out);
        bank.edge(1, true, ms(100), &mut out);
        assert_eq!(bank.next_deadline(), Some(ms(30)));
        bank.run_until(ms(10_000), &mut out);
        let got: Vec<_> = out.iter().map(|e| (e.button.as_str(), e.gesture, e.at)).collect();
        assert_eq!(got, vec![("b", Gesture::Long, ms(600)), ("a", Gesture::Long, ms(1500))]);
        assert_eq!(bank.next_deadline(), None);
    }
}

//! Linux GPIO backend (character device): relay and LEDs as linux-embedded-hal `CdevPin`s, embedded-hal 1.0
//! `OutputPin`s driven through [`PinOutput`]; buttons as gpio-cdev edge-event lines read by one thread per chip
//! that poll(2)s the event descriptors and runs the press detectors on the kernel's CLOCK_MONOTONIC event
//! timestamps. The buttons stay on gpio-cdev's `LineEventHandle` because `CdevPin` (a plain line handle) has no
//! edge events and a line cannot be requested twice; their level is read through embedded-hal's `InputPin` on
//! that handle. Raw levels are requested from the kernel (never its ACTIVE_LOW flag), so events, values and pin
//! states are electrical levels; active-low polarity is handled by the press detectors and by [`PinOutput`].

use super::{
    monotonic_now, validate_buttons, ButtonEvent, ButtonInput, ButtonSpec, DetectorBank, InputError, OutputSpec,
    PinOutput, PressDetector, EVENT_QUEUE,
};
use embedded_hal::digital::{ErrorType, InputPin};
use gpio_cdev::{Chip, EventRequestFlags, EventType, Line, LineEventHandle, LineRequestFlags};
use linux_embedded_hal::{CdevPin, CdevPinError};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Consumer label shown by `gpioinfo` for the lines we hold.
const CONSUMER: &str = "callbox";
/// Longest poll(2) wait, so a stop request is seen promptly.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// Kernel timestamps further than this from our CLOCK_MONOTONIC are not trusted (kernels before 5.7
/// stamp events with CLOCK_REALTIME).
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(10);

/// Buttons on GPIO lines, read through kernel edge events.
pub struct GpioButtons {
    rx: Receiver<ButtonEvent>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    lines: usize,
}

impl std::fmt::Debug for GpioButtons {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpioButtons").field("lines", &self.lines).field("threads", &self.threads.len()).finish()
    }
}

/// One requested button line inside a chip reader.
struct ButtonLine {
    name: String,
    offset: u32,
    events: EdgeLine,
    alive: bool,
    warned_clock: bool,
}

/// A line requested for edge events (both edges, raw level): its events are gpio-cdev's, its level an
/// embedded-hal [`InputPin`] (high: the line is electrically high).
struct EdgeLine(LineEventHandle);

impl ErrorType for EdgeLine {
    type Error = CdevPinError;
}

impl InputPin for EdgeLine {
    fn is_high(&mut self) -> Result<bool, CdevPinError> {
        Ok(self.0.get_value()? != 0)
    }

    fn is_low(&mut self) -> Result<bool, CdevPinError> {
        self.is_high().map(|high| !high)
    }
}

impl GpioButtons {
    /// Requests every button line (input, both edges) and starts the readers. Fails, naming the chip
    /// and line, if any chip cannot be opened or any line cannot be requested.
    pub fn open(specs: &[ButtonSpec]) -> Result<Self, InputError> {
        validate_buttons(specs)?;
        // Group by chip, keeping the configuration order.
        let mut chips: Vec<(PathBuf, Vec<&ButtonSpec>)> = Vec::new();
        for spec in specs {
            match chips.iter_mut().find(|(p, _)| *p == spec.chip) {
                Some((_, list)) => list.push(spec),
                None => chips.push((spec.chip.clone(), vec![spec])),
            }
        }
        // Request everything before starting any thread: a config error leaves nothing running.
        let mut readers = Vec::new();
        for (path, list) in &chips {
            let mut chip = open_chip(path)?;
            let now = monotonic_now();
            let mut lines = Vec::new();
            let mut detectors = Vec::new();
            for spec in list {
                let line = get_line(&mut chip, path, spec.line, &spec.name)?;
                let mut events = line
                    .events(LineRequestFlags::INPUT, EventRequestFlags::BOTH_EDGES, CONSUMER)
                    .map(EdgeLine)
                    .map_err(|e| line_error(path, spec.line, &spec.name, request_reason(&line, "request input", &e)))?;
                let level = events
                    .is_high()
                    .map_err(|e| line_error(path, spec.line, &spec.name, format!("read initial level: {e}")))?;
                let cfg = spec.press_config();
                if cfg.is_pressed_level(level) {
                    log::warn!(
                        "{} line {} ({}): pressed at start; ignored until released",
                        path.display(),
                        spec.line,
                        spec.name
                    );
                }
                log::info!(
                    "button {}: {} line {}{}",
                    spec.name,
                    path.display(),
                    spec.line,
                    if spec.active_low { " (active low)" } else { "" }
                );
                detectors.push((spec.name.clone(), PressDetector::with_level(cfg, level, now)));
                lines.push(ButtonLine {
                    name: spec.name.clone(),
                    offset: spec.line,
                    events,
                    alive: true,
                    warned_clock: false,
                });
            }
            readers.push(ChipReader { chip: path.clone(), lines, bank: DetectorBank::new(detectors) });
        }
        let (tx, rx) = sync_channel(EVENT_QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for reader in readers {
            let (thread_tx, thread_stop) = (tx.clone(), stop.clone());
            let label = reader.chip.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let spawned = std::thread::Builder::new()
                .name(format!("gpio-{label}"))
                .spawn(move || reader.run(&thread_tx, &thread_stop));
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    stop.store(true, Ordering::SeqCst);
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(InputError::Closed(format!("cannot start a GPIO reader thread: {e}")));
                }
            }
        }
        Ok(GpioButtons { rx, stop, threads, lines: specs.len() })
    }

    /// How many button lines are held.
    pub fn line_count(&self) -> usize {
        self.lines
    }
}

impl ButtonInput for GpioButtons {
    fn next_event(&mut self, timeout: Duration) -> Result<Option<ButtonEvent>, InputError> {
        match self.rx.recv_timeout(timeout) {
            Ok(ev) => Ok(Some(ev)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) if self.lines == 0 => {
                // No buttons configured: nothing will ever come.
                std::thread::sleep(timeout);
                Ok(None)
            }
            Err(RecvTimeoutError::Disconnected) => {
                Err(InputError::Closed("every GPIO button line failed (see the log)".into()))
            }
        }
    }
}

impl Drop for GpioButtons {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The lines of one chip and their detectors, run by one thread.
struct ChipReader {
    chip: PathBuf,
    lines: Vec<ButtonLine>,
    bank: DetectorBank,
}

impl ChipReader {
    fn run(mut self, tx: &SyncSender<ButtonEvent>, stop: &AtomicBool) {
        let mut out = Vec::new();
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(self.lines.len());
        while !stop.load(Ordering::SeqCst) {
            let now = monotonic_now();
            self.bank.run_until(now, &mut out);
            if !super::forward_presses("button", &mut out, tx) {
                return;
            }
            let wait = self.bank.next_deadline().map(|t| t.saturating_sub(now)).unwrap_or(MAX_WAIT).min(MAX_WAIT);
            fds.clear();
            fds.extend(self.lines.iter().map(|l| libc::pollfd {
                fd: if l.alive { l.events.0.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            }));
            // Round up so we do not wake just before a deadline and spin.
            let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
            // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfd structs.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
            if rc < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("{}: poll failed: {err}; buttons on this chip stop", self.chip.display());
                return;
            }
            for (idx, pfd) in fds.iter().enumerate() {
                if pfd.revents == 0 {
                    continue;
                }
                self.service(idx, pfd.revents, &mut out);
            }
            if !super::forward_presses("button", &mut out, tx) {
                return;
            }
            if self.lines.iter().all(|l| !l.alive) {
                log::error!("{}: every button line failed; reader stops", self.chip.display());
                return;
            }
        }
    }

    /// Handles poll results for line `idx`: reads one event, or retires the line on error.
    fn service(&mut self, idx: usize, revents: libc::c_short, out: &mut Vec<ButtonEvent>) {
        let Some(line) = self.lines.get_mut(idx) else { return };
        if revents & libc::POLLIN != 0 {
            match line.events.0.get_event() {
                Ok(ev) => {
                    let now = monotonic_now();
                    let (at, trusted) = event_time(ev.timestamp(), now);
                    if !trusted && !line.warned_clock {
                        line.warned_clock = true;
                        log::warn!(
                            "{} line {} ({}): kernel event timestamps are not CLOCK_MONOTONIC (kernel < 5.7?); \
                             using read time",
                            self.chip.display(),
                            line.offset,
                            line.name
                        );
                    }
                    let level = ev.event_type() == EventType::RisingEdge;
                    log::trace!("{} line {}: level {} at {at:?}", self.chip.display(), line.offset, level as u8);
                    self.bank.edge(idx, level, at, out);
                }
                Err(e) => {
                    line.alive = false;
                    log::error!(
                        "{} line {} ({}): reading events failed: {e}; button disabled",
                        self.chip.display(),
                        line.offset,
                        line.name
                    );
                }
            }
        } else if revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
            line.alive = false;
            log::error!(
                "{} line {} ({}): event descriptor failed (poll revents {revents:#x}); button disabled",
                self.chip.display(),
                line.offset,
                line.name
            );
        }
    }
}

/// The time of a kernel event: its CLOCK_MONOTONIC timestamp when plausible, else `now` (and false).
pub(crate) fn event_time(kernel_ns: u64, now: Duration) -> (Duration, bool) {
    let ts = Duration::from_nanos(kernel_ns);
    let skew = ts.abs_diff(now);
    if skew > MAX_CLOCK_SKEW {
        (now, false)
    } else {
        (ts, true)
    }
}

/// An output line (relay, LED) on the GPIO character device: a [`PinOutput`] over linux-embedded-hal's
/// [`CdevPin`]; released inactive when dropped.
pub type GpioOutput = PinOutput<CdevPin>;

impl PinOutput<CdevPin> {
    /// Requests the line as an output, driven inactive.
    pub fn open(spec: &OutputSpec) -> Result<Self, InputError> {
        let mut chip = open_chip(&spec.chip)?;
        let line = get_line(&mut chip, &spec.chip, spec.line, &spec.name)?;
        let handle = line
            .request(LineRequestFlags::OUTPUT, raw_value(false, spec.active_low), CONSUMER)
            .map_err(|e| line_error(&spec.chip, spec.line, &spec.name, request_reason(&line, "request output", &e)))?;
        // Requested without ACTIVE_LOW, the line reads as active high: the pin's levels are electrical.
        let pin = CdevPin::new(handle)
            .map_err(|e| line_error(&spec.chip, spec.line, &spec.name, format!("read line info: {e}")))?;
        log::info!(
            "output {}: {} line {}{}",
            spec.name,
            spec.chip.display(),
            spec.line,
            if spec.active_low { " (active low)" } else { "" }
        );
        Ok(PinOutput::new(spec, pin))
    }

    /// Opens every output, failing on the first that cannot be requested.
    pub fn open_all(specs: &[OutputSpec]) -> Result<Vec<Self>, InputError> {
        specs.iter().map(Self::open).collect()
    }
}

/// The raw line value for a logical state.
pub(crate) fn raw_value(on: bool, active_low: bool) -> u8 {
    u8::from(on != active_low)
}

fn open_chip(path: &Path) -> Result<Chip, InputError> {
    Chip::new(path).map_err(|e| {
        let reason = match std::error::Error::source(&e).and_then(|s| s.downcast_ref::<std::io::Error>()) {
            Some(io) if io.kind() == std::io::ErrorKind::NotFound => "no such GPIO chip".to_string(),
            Some(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
                "permission denied (is the service in the gpio group?)".to_string()
            }
            _ => format!("cannot open as a GPIO chip: {e}"),
        };
        InputError::Chip { chip: path.to_path_buf(), reason }
    })
}

fn get_line(chip: &mut Chip, path: &Path, offset: u32, name: &str) -> Result<Line, InputError> {
    let count = chip.num_lines();
    if offset >= count {
        return Err(line_error(path, offset, name, format!("no such line (the chip has {count} lines)")));
    }
    chip.get_line(offset).map_err(|e| line_error(path, offset, name, e.to_string()))
}

/// Why a request failed: "busy (used by X)" when another consumer holds the line, else the kernel error.
fn request_reason(line: &Line, what: &str, err: &gpio_cdev::Error) -> String {
    if let Ok(info) = line.info() {
        if info.is_used() {
            return match info.consumer() {
                Some(c) if !c.is_empty() => format!("busy (used by {c:?})"),
                _ => "busy (used by the kernel or another process)".to_string(),
            };
        }
    }
    format!("{what}: {err}")
}

fn line_error(chip: &Path, line: u32, name: &str, reason: String) -> InputError {
    InputError::Line { chip: chip.to_path_buf(), line, name: name.to_string(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonexistent_chip_is_a_clear_error() {
        let spec = ButtonSpec::new("call", "/dev/gpiochip-does-not-exist", 17);
        let err = GpioButtons::open(&[spec]).unwrap_err();
        assert!(matches!(err, InputError::Chip { .. }), "{err:?}");
        assert_eq!(err.to_string(), "/dev/gpiochip-does-not-exist: no such GPIO chip");
        let err = GpioOutput::open(&OutputSpec::new("relay", "/dev/gpiochip-does-not-exist", 4)).unwrap_err();
        assert_eq!(err.to_string(), "/dev/gpiochip-does-not-exist: no such GPIO chip");
    }

    #[test]
    fn a_file_that_is_not_a_chip_is_refused() {
        let err = GpioButtons::open(&[ButtonSpec::new("call", "/dev/null", 0)]).unwrap_err().to_string();
        assert!(err.starts_with("/dev/null: cannot open as a GPIO chip"), "{err}");
        let err = GpioOutput::open(&OutputSpec::new("led", "/dev/null", 0)).unwrap_err().to_string();
        assert!(err.starts_with("/dev/null: "), "{err}");
    }

    #[test]
    fn invalid_specs_are_refused_before_touching_hardware() {
        let mut spec = ButtonSpec::new("call", "/dev/gpiochip-does-not-exist", 17);
        spec.long_press = spec.debounce;
        let err = GpioButtons::open(&[spec]).unwrap_err();
        assert!(matches!(err, InputError::InvalidSpec { .. }), "{err:?}");
    }

    #[test]
    fn no_buttons_just_times_out() {
        let mut b = GpioButtons::open(&[]).unwrap();
        assert_eq!(b.line_count(), 0);
        assert_eq!(b.next_event(Duration::from_millis(10)).unwrap(), None);
    }

    #[test]
    fn output_polarity() {
        assert_eq!(raw_value(true, false), 1);
        assert_eq!(raw_value(false, false), 0);
        assert_eq!(raw_value(true, true), 0);
        assert_eq!(raw_value(false, true), 1);
    }

    #[test]
    fn kernel_timestamps_are_used_unless_implausible() {
        let now = Duration::from_secs(1000);
        assert_eq!(event_time(999_500_000_000, now), (Duration::from_millis(999_500), true));
        assert_eq!(event_time(1_000_001_000_000, now), (Duration::from_millis(1_000_001), true));
        // A CLOCK_REALTIME stamp (old kernels) is decades away from the monotonic clock.
        assert_eq!(event_time(1_700_000_000_000_000_000, now), (now, false));
        assert_eq!(event_time(0, now), (now, false));
    }
}

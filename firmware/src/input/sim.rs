//! Simulated buttons and output lines, for tests and `callbox run --sim`. [`SimButtons`] runs the same
//! press detectors as the GPIO backend, on real (CLOCK_MONOTONIC) time, fed by a [`SimButtonHandle`] that
//! scripts presses, holds or raw edges; [`SimOutputs`] records every change of the relay and LED lines
//! with its timestamp so tests can check a pulse (a [`SimOutputLine`] is also an embedded-hal
//! `StatefulOutputPin`, as a GPIO line is an `OutputPin`); [`parse_key`] maps keyboard keys to gestures.

use super::{
    monotonic_now, validate_buttons, ButtonEvent, ButtonInput, ButtonSpec, DetectorBank, Gesture, InputError,
    OutputLine, PressConfig, PressDetector, EVENT_QUEUE,
};
use embedded_hal::digital::{ErrorType, OutputPin, StatefulOutputPin};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Commands waiting for the simulation thread, at most.
const COMMAND_QUEUE: usize = 64;
/// Scheduled edges, at most (a press is two).
const MAX_SCHEDULED: usize = 256;
/// Longest wait of the simulation thread, so a stop is seen promptly.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// Changes kept per simulated output line (oldest dropped first).
const HISTORY_CAP: usize = 4096;

/// Keyboard keys of `--sim`: lower case is a short press, upper case a long one.
pub const KEYMAP: &[(char, &str)] = &[('c', "call"), ('m', "mute"), ('v', "video"), ('h', "hang_up")];

/// The button and gesture of a key (`c` call, `m` mute, `v` video, `h` hang up; upper case: long press).
pub fn parse_key(c: char) -> Option<(&'static str, Gesture)> {
    let gesture = if c.is_ascii_uppercase() { Gesture::Long } else { Gesture::Short };
    let lower = c.to_ascii_lowercase();
    KEYMAP.iter().find(|(k, _)| *k == lower).map(|(_, name)| (*name, gesture))
}

enum Command {
    /// Press (at `at`), hold for `hold`, release; queued after the button's previous scripted gesture.
    Hold {
        idx: usize,
        at: Duration,
        hold: Duration,
    },
    /// A raw level at `at`.
    Edge {
        idx: usize,
        level: bool,
        at: Duration,
    },
    Stop,
}

/// Buttons driven from a [`SimButtonHandle`] (tests, keyboard), through the real press detectors.
pub struct SimButtons {
    rx: Receiver<ButtonEvent>,
    handle: SimButtonHandle,
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SimButtons {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimButtons").field("buttons", &self.handle.names()).finish()
    }
}

/// Scripts the simulated buttons; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct SimButtonHandle {
    tx: SyncSender<Command>,
    buttons: Arc<[(String, PressConfig)]>,
}

impl std::fmt::Debug for SimButtonHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimButtonHandle").field("buttons", &self.names()).finish()
    }
}

impl SimButtons {
    /// Simulated buttons with the names, polarity and timings of `specs` (chip and line are ignored).
    pub fn new(specs: &[ButtonSpec]) -> Result<Self, InputError> {
        validate_buttons(specs)?;
        let now = monotonic_now();
        let buttons: Arc<[(String, PressConfig)]> = specs.iter().map(|s| (s.name.clone(), s.press_config())).collect();
        let bank = DetectorBank::new(
            buttons.iter().map(|(n, c)| (n.clone(), PressDetector::with_level(*c, c.level_for(false), now))).collect(),
        );
        let (cmd_tx, cmd_rx) = sync_channel(COMMAND_QUEUE);
        let (ev_tx, ev_rx) = sync_channel(EVENT_QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let stop = stop.clone();
            let mut sim =
                Simulation { bank, schedule: Vec::new(), busy_until: vec![Duration::ZERO; specs.len()], seq: 0 };
            std::thread::Builder::new()
                .name("sim-buttons".into())
                .spawn(move || sim.run(&cmd_rx, &ev_tx, &stop))
                .map_err(|e| InputError::Closed(format!("cannot start the simulated buttons: {e}")))?
        };
        Ok(SimButtons { rx: ev_rx, handle: SimButtonHandle { tx: cmd_tx, buttons }, stop, worker: Some(worker) })
    }

    /// Simulated active-high buttons with the default timings.
    pub fn with_names(names: &[&str]) -> Result<Self, InputError> {
        let specs: Vec<ButtonSpec> = names.iter().zip(0u32..).map(|(n, i)| ButtonSpec::new(*n, "sim", i)).collect();
        Self::new(&specs)
    }

    /// A handle to script presses.
    pub fn handle(&self) -> SimButtonHandle {
        self.handle.clone()
    }
}

impl ButtonInput for SimButtons {
    fn next_event(&mut self, timeout: Duration) -> Result<Option<ButtonEvent>, InputError> {
        match self.rx.recv_timeout(timeout) {
            Ok(ev) => Ok(Some(ev)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(InputError::Closed("simulated buttons stopped".into())),
        }
    }
}

impl Drop for SimButtons {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.handle.tx.try_send(Command::Stop);
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl SimButtonHandle {
    /// The simulated buttons' names.
    pub fn names(&self) -> Vec<&str> {
        self.buttons.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// A short press: pressed now (or after the button's previous scripted gesture), released after a
    /// hold well inside the short range (debounce + min(80 ms, half the gap to the long-press threshold)).
    pub fn press(&self, name: &str) -> Result<(), InputError> {
        let (idx, cfg) = self.lookup(name)?;
        let hold = cfg.debounce + Duration::from_millis(80).min(cfg.long_press.saturating_sub(cfg.debounce) / 2);
        self.send(name, Command::Hold { idx, at: monotonic_now(), hold })
    }

    /// Pressed now (or after the button's previous scripted gesture) and released after `hold`: a long
    /// press when `hold` reaches the button's long-press threshold, else a short one.
    pub fn hold(&self, name: &str, hold: Duration) -> Result<(), InputError> {
        let (idx, _) = self.lookup(name)?;
        self.send(name, Command::Hold { idx, at: monotonic_now(), hold })
    }

    /// A long press: held 200 ms past the button's threshold.
    pub fn long_press(&self, name: &str) -> Result<(), InputError> {
        let (_, cfg) = self.lookup(name)?;
        self.hold(name, cfg.long_press + Duration::from_millis(200))
    }

    /// The gesture `g` ([`press`](Self::press) or [`long_press`](Self::long_press)), e.g. from [`parse_key`].
    pub fn gesture(&self, name: &str, g: Gesture) -> Result<(), InputError> {
        match g {
            Gesture::Short => self.press(name),
            Gesture::Long => self.long_press(name),
        }
    }

    /// The raw line of `name` goes to `level` now (electrical level: for an active-low button, `false`
    /// is pressed). Debounce and long press apply as on hardware.
    pub fn edge(&self, name: &str, level: bool) -> Result<(), InputError> {
        self.edge_at(name, level, monotonic_now())
    }

    /// Like [`edge`](Self::edge), at the CLOCK_MONOTONIC instant `at` (applied when real time reaches it;
    /// an instant already past is applied at once). For scripts that must not depend on scheduling.
    pub fn edge_at(&self, name: &str, level: bool, at: Duration) -> Result<(), InputError> {
        let (idx, _) = self.lookup(name)?;
        self.send(name, Command::Edge { idx, level, at })
    }

    fn lookup(&self, name: &str) -> Result<(usize, PressConfig), InputError> {
        self.buttons
            .iter()
            .position(|(n, _)| n == name)
            .and_then(|i| self.buttons.get(i).map(|(_, c)| (i, *c)))
            .ok_or_else(|| InputError::Unknown(name.to_string()))
    }

    fn send(&self, name: &str, cmd: Command) -> Result<(), InputError> {
        self.tx.try_send(cmd).map_err(|e| {
            let reason = match e {
                TrySendError::Full(_) => "command queue full",
                TrySendError::Disconnected(_) => "simulated buttons stopped",
            };
            InputError::Sim { name: name.to_string(), reason: reason.into() }
        })
    }
}

/// The simulation thread's state: detectors, edges scheduled in the (near) future.
struct Simulation {
    bank: DetectorBank,
    /// (due, sequence, button, raw level), unordered; small.
    schedule: Vec<(Duration, u64, usize, bool)>,
    /// Per button: when the next scripted gesture may start.
    busy_until: Vec<Duration>,
    seq: u64,
}

impl Simulation {
    fn run(&mut self, rx: &Receiver<Command>, tx: &SyncSender<ButtonEvent>, stop: &AtomicBool) {
        let mut out = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let now = monotonic_now();
            self.step(now, &mut out);
            if !super::forward_presses("sim button", &mut out, tx) {
                return;
            }
            let next = [self.next_edge().map(|(_, t)| t), self.bank.next_deadline()].into_iter().flatten().min();
            let wait = next.map(|t| t.saturating_sub(now)).unwrap_or(MAX_WAIT).min(MAX_WAIT);
            match rx.recv_timeout(wait) {
                Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(cmd) => {
                    self.accept(cmd);
                    // Take whatever else is queued without waiting.
                    while let Ok(cmd) = rx.try_recv() {
                        if matches!(cmd, Command::Stop) {
                            return;
                        }
                        self.accept(cmd);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn accept(&mut self, cmd: Command) {
        match cmd {
            Command::Hold { idx, at, hold } => {
                let Some(cfg) = self.bank.config(idx) else { return };
                let busy = self.busy_until.get(idx).copied().unwrap_or_default();
                let start = at.max(busy);
                let release = start.saturating_add(hold);
                self.push(start, idx, cfg.level_for(true));
                self.push(release, idx, cfg.level_for(false));
                // The release must settle before the next scripted press begins.
                let next = release.saturating_add(cfg.debounce * 2 + Duration::from_millis(10));
                if let Some(b) = self.busy_until.get_mut(idx) {
                    *b = next;
                }
            }
            Command::Edge { idx, level, at } => self.push(at, idx, level),
            Command::Stop => {}
        }
    }

    fn push(&mut self, due: Duration, idx: usize, level: bool) {
        if self.schedule.len() >= MAX_SCHEDULED {
            log::warn!("sim buttons: {MAX_SCHEDULED} edges already scheduled; dropped one for {}", self.bank.name(idx));
            return;
        }
        self.seq += 1;
        self.schedule.push((due, self.seq, idx, level));
    }

    /// Position and due time of the earliest scheduled edge.
    fn next_edge(&self) -> Option<(usize, Duration)> {
        self.schedule.iter().enumerate().min_by_key(|(_, e)| (e.0, e.1)).map(|(i, e)| (i, e.0))
    }

    /// Replays, in time order, every scheduled edge and detector deadline up to `now`, each at its own
    /// instant, so a late wake-up gives the same gestures as a punctual one.
    fn step(&mut self, now: Duration, out: &mut Vec<ButtonEvent>) {
        loop {
            let edge = self.next_edge().filter(|(_, t)| *t <= now);
            let deadline = self.bank.next_deadline().filter(|t| *t <= now);
            match (edge, deadline) {
                (Some((pos, t)), d) if d.is_none_or(|d| t <= d) => {
                    let (due, _, idx, level) = self.schedule.swap_remove(pos);
                    self.bank.edge(idx, level, due, out);
                }
                (_, Some(d)) => self.bank.run_until(d, out),
                _ => return,
            }
        }
    }
}

/// Simulated output lines (relay, LEDs): every change recorded with its CLOCK_MONOTONIC time.
#[derive(Debug, Clone, Default)]
pub struct SimOutputs {
    lines: Arc<Mutex<HashMap<String, SimLineState>>>,
}

#[derive(Debug, Default)]
struct SimLineState {
    on: bool,
    failing: bool,
    history: VecDeque<(Duration, bool)>,
}

/// One simulated output line; see [`SimOutputs`].
#[derive(Debug, Clone)]
pub struct SimOutputLine {
    name: String,
    outputs: SimOutputs,
}

impl SimOutputs {
    /// No lines yet; [`line`](Self::line) creates them.
    pub fn new() -> Self {
        Self::default()
    }

    /// The line named `name` (created off on first use; further calls share it).
    pub fn line(&self, name: &str) -> SimOutputLine {
        self.lock().entry(name.to_string()).or_default();
        SimOutputLine { name: name.to_string(), outputs: self.clone() }
    }

    /// Every change of `name`: (time, new state), oldest first. Empty if never changed or unknown.
    pub fn history(&self, name: &str) -> Vec<(Duration, bool)> {
        self.lock().get(name).map(|s| s.history.iter().copied().collect()).unwrap_or_default()
    }

    /// The current state of `name` (false if unknown).
    pub fn is_on(&self, name: &str) -> bool {
        self.lock().get(name).is_some_and(|s| s.on)
    }

    /// The lengths of the completed on-periods of `name` (a relay pulse is one), oldest first.
    pub fn pulses(&self, name: &str) -> Vec<Duration> {
        let history = self.history(name);
        let mut pulses = Vec::new();
        let mut since = None;
        for (t, on) in history {
            match (on, since) {
                (true, _) => since = Some(t),
                (false, Some(s)) => {
                    pulses.push(t.saturating_sub(s));
                    since = None;
                }
                (false, None) => {}
            }
        }
        pulses
    }

    /// Makes `set` on `name` fail (to exercise fault handling) until called again with `false`.
    pub fn set_failing(&self, name: &str, failing: bool) {
        self.lock().entry(name.to_string()).or_default().failing = failing;
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, SimLineState>> {
        self.lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl OutputLine for SimOutputLine {
    fn set(&mut self, on: bool) -> Result<(), InputError> {
        let mut lines = self.outputs.lock();
        let state = lines.entry(self.name.clone()).or_default();
        if state.failing {
            return Err(InputError::Sim { name: self.name.clone(), reason: "set failed (simulated fault)".into() });
        }
        if state.on != on {
            state.on = on;
            if state.history.len() >= HISTORY_CAP {
                state.history.pop_front();
            }
            state.history.push_back((monotonic_now(), on));
        }
        Ok(())
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// As a pin a simulated line has no polarity: high is on (what [`SimOutputs`] records), low is off.
impl ErrorType for SimOutputLine {
    type Error = InputError;
}

impl OutputPin for SimOutputLine {
    fn set_low(&mut self) -> Result<(), InputError> {
        OutputLine::set(self, false)
    }

    fn set_high(&mut self) -> Result<(), InputError> {
        OutputLine::set(self, true)
    }
}

impl StatefulOutputPin for SimOutputLine {
    fn is_set_high(&mut self) -> Result<bool, InputError> {
        Ok(self.outputs.is_on(&self.name))
    }

    fn is_set_low(&mut self) -> Result<bool, InputError> {
        Ok(!self.outputs.is_on(&self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generous: the machine is slow and shared; nothing asserts how fast events come.
    const WAIT: Duration = Duration::from_secs(10);

    fn next(b: &mut SimButtons) -> ButtonEvent {
        b.next_event(WAIT).unwrap().expect("an event within the deadline")
    }

    #[test]
    fn press_gives_a_short_gesture() {
        let mut b = SimButtons::with_names(&["call", "mute"]).unwrap();
        let h = b.handle();
        let before = monotonic_now();
        h.press("call").unwrap();
        let ev = next(&mut b);
        assert_eq!(ev.button, "call");
        assert_eq!(ev.gesture, Gesture::Short);
        assert!(ev.at >= before && ev.at <= monotonic_now(), "{:?} not in [{before:?}, now]", ev.at);
        assert_eq!(b.next_event(Duration::from_millis(300)).unwrap(), None, "one gesture per press");
    }

    #[test]
    fn hold_past_threshold_gives_long_before_release() {
        let spec = ButtonSpec { long_press: Duration::from_millis(300), ..ButtonSpec::new("hangup", "sim", 0) };
        let mut b = SimButtons::new(&[spec]).unwrap();
        let h = b.handle();
        let start = monotonic_now();
        h.hold("hangup", Duration::from_secs(1)).unwrap();
        let ev = next(&mut b);
        assert_eq!((ev.button.as_str(), ev.gesture), ("hangup", Gesture::Long));
        // Long is stamped at press + threshold: before the 1 s release.
        assert!(ev.at >= start + Duration::from_millis(300));
        assert!(ev.at < start + Duration::from_secs(1));
        // Nothing on the release.
        assert_eq!(b.next_event(Duration::from_millis(1500)).unwrap(), None);
    }

    #[test]
    fn script_of_gestures_on_several_buttons() {
        let specs = [
            ButtonSpec::new("call", "sim", 0),
            ButtonSpec { long_press: Duration::from_millis(250), ..ButtonSpec::new("mute", "sim", 1) },
            ButtonSpec::new("video", "sim", 2),
        ];
        let mut b = SimButtons::new(&specs).unwrap();
        let h = b.handle();
        // Two presses of the same button in a row are queued, not merged.
        h.press("call").unwrap();
        h.press("call").unwrap();
        h.gesture("mute", Gesture::Long).unwrap();
        let mut got: Vec<(String, Gesture)> = (0..3).map(|_| next(&mut b)).map(|e| (e.button, e.gesture)).collect();
        h.press("video").unwrap();
        got.push({
            let e = next(&mut b);
            (e.button, e.gesture)
        });
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let want =
            [("call", Gesture::Short), ("call", Gesture::Short), ("mute", Gesture::Long), ("video", Gesture::Short)];
        let got: Vec<(&str, Gesture)> = got.iter().map(|(n, g)| (n.as_str(), *g)).collect();
        assert_eq!(got, want);
        assert_eq!(b.next_event(Duration::from_millis(300)).unwrap(), None);
    }

    #[test]
    fn raw_edges_go_through_debounce_and_polarity() {
        let spec = ButtonSpec { active_low: true, ..ButtonSpec::new("call", "sim", 0) };
        let mut b = SimButtons::new(&[spec]).unwrap();
        let h = b.handle();
        // Active low: high is released. A 5 ms glitch low, then back high: no gesture.
        let t = monotonic_now();
        h.edge_at("call", false, t).unwrap();
        h.edge_at("call", true, t + Duration::from_millis(5)).unwrap();
        assert_eq!(b.next_event(Duration::from_millis(300)).unwrap(), None);
        // A real press: low for 200 ms, with a bounce at the start.
        let t = monotonic_now() + Duration::from_millis(20);
        h.edge_at("call", false, t).unwrap();
        h.edge_at("call", true, t + Duration::from_millis(3)).unwrap();
        h.edge_at("call", false, t + Duration::from_millis(6)).unwrap();
        h.edge_at("call", true, t + Duration::from_millis(206)).unwrap();
        let ev = next(&mut b);
        assert_eq!((ev.gesture, ev.at), (Gesture::Short, t + Duration::from_millis(206)));
        // Immediate edges work too (wide margins: no timing assumption).
        h.edge("call", false).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        h.edge("call", true).unwrap();
        assert_eq!(next(&mut b).gesture, Gesture::Short);
        // Scripted presses on an active-low button work too.
        h.press("call").unwrap();
        assert_eq!(next(&mut b).gesture, Gesture::Short);
    }

    #[test]
    fn unknown_button_is_an_error() {
        let b = SimButtons::with_names(&["call"]).unwrap();
        let err = b.handle().press("doorbell").unwrap_err();
        assert!(matches!(err, InputError::Unknown(ref n) if n == "doorbell"), "{err:?}");
        assert_eq!(b.handle().names(), vec!["call"]);
    }

    #[test]
    fn handle_outliving_the_buttons_gets_an_error() {
        let b = SimButtons::with_names(&["call"]).unwrap();
        let h = b.handle();
        drop(b);
        let err = h.press("call").unwrap_err().to_string();
        assert!(err.contains("stopped") || err.contains("full"), "{err}");
    }

    #[test]
    fn invalid_specs_are_refused() {
        assert!(SimButtons::with_names(&["call", "call"]).is_err());
        assert!(SimButtons::with_names(&[""]).is_err());
    }

    #[test]
    fn keys_map_to_buttons_and_gestures() {
        assert_eq!(parse_key('c'), Some(("call", Gesture::Short)));
        assert_eq!(parse_key('C'), Some(("call", Gesture::Long)));
        assert_eq!(parse_key('m'), Some(("mute", Gesture::Short)));
        assert_eq!(parse_key('v'), Some(("video", Gesture::Short)));
        assert_eq!(parse_key('H'), Some(("hang_up", Gesture::Long)));
        assert_eq!(parse_key('x'), None);
        assert_eq!(parse_key('é'), None);
    }

    #[test]
    fn outputs_record_changes_with_times() {
        let outs = SimOutputs::new();
        let mut relay = outs.line("relay");
        let mut led = outs.line("led_call");
        assert_eq!(relay.name(), "relay");
        assert!(!outs.is_on("relay"));
        assert!(outs.history("relay").is_empty());
        let t0 = monotonic_now();
        relay.set(true).unwrap();
        relay.set(true).unwrap(); // not a change
        std::thread::sleep(Duration::from_millis(50));
        assert!(outs.is_on("relay"));
        relay.set(false).unwrap();
        led.set(true).unwrap();
        let h = outs.history("relay");
        assert_eq!(h.iter().map(|x| x.1).collect::<Vec<_>>(), vec![true, false]);
        assert!(h[0].0 >= t0 && h[1].0 >= h[0].0);
        let pulses = outs.pulses("relay");
        assert_eq!(pulses.len(), 1);
        assert!(pulses[0] >= Duration::from_millis(50), "{pulses:?}");
        assert!(outs.is_on("led_call"));
        assert!(outs.pulses("led_call").is_empty(), "still on: not a completed pulse");
        assert!(!outs.is_on("unknown"));
    }

    #[test]
    fn outputs_can_fail_on_demand_and_history_is_bounded() {
        let outs = SimOutputs::new();
        let mut led = outs.line("led_fault");
        outs.set_failing("led_fault", true);
        let err = led.set(true).unwrap_err().to_string();
        assert!(err.contains("led_fault"), "{err}");
        assert!(!outs.is_on("led_fault"));
        outs.set_failing("led_fault", false);
        for i in 0..(HISTORY_CAP + 10) {
            led.set(i % 2 == 0).unwrap();
        }
        assert_eq!(outs.history("led_fault").len(), HISTORY_CAP);
        // Lines from clones share the state.
        let mut again = outs.clone().line("led_fault");
        again.set(true).unwrap();
        assert!(outs.is_on("led_fault"));
    }

    #[test]
    fn output_lines_are_stateful_embedded_hal_pins() {
        let outs = SimOutputs::new();
        let mut led = outs.line("led_call");
        assert!(led.is_set_low().unwrap());
        led.set_high().unwrap();
        assert!(outs.is_on("led_call"));
        assert!(led.is_set_high().unwrap());
        led.toggle().unwrap();
        assert!(!outs.is_on("led_call"));
        led.set_state(embedded_hal::digital::PinState::High).unwrap();
        assert_eq!(outs.history("led_call").iter().map(|h| h.1).collect::<Vec<_>>(), vec![true, false, true]);
        // The simulated fault comes through the pin traits too, naming the line.
        outs.set_failing("led_call", true);
        let err = led.set_low().unwrap_err().to_string();
        assert!(err.contains("led_call"), "{err}");
        assert!(outs.is_on("led_call"));
    }

    #[test]
    fn trait_objects_work() {
        let b = SimButtons::with_names(&["call"]).unwrap();
        let mut input: Box<dyn ButtonInput> = Box::new(b);
        assert_eq!(input.next_event(Duration::from_millis(1)).unwrap(), None);
        let outs = SimOutputs::new();
        let mut lines: Vec<Box<dyn OutputLine>> = vec![Box::new(outs.line("relay"))];
        lines[0].set(true).unwrap();
        assert!(outs.is_on("relay"));
    }
}

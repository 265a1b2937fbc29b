//! Output lines over embedded-hal 1.0 digital pins: [`PinOutput`] gives any [`OutputPin`] a name, a place (chip
//! and line, for the errors) and a polarity, and is the [`OutputLine`] the appliance drives. Pins are electrical
//! (`set_high` drives the line high whatever the wiring); active-low is handled here, once for every backend.
//! The GPIO backend gives linux-embedded-hal's `CdevPin`; simulated lines implement the same traits.

use super::{InputError, OutputLine, OutputSpec};
use embedded_hal::digital::{OutputPin, PinState};
use std::fmt::Display;
use std::path::PathBuf;

/// The electrical level of a logical state: active (`on`) is low on an active-low line.
pub fn level(on: bool, active_low: bool) -> PinState {
    PinState::from(on != active_low)
}

/// An output line (relay, LED) on an embedded-hal pin; driven inactive when dropped.
pub struct PinOutput<P>
where
    P: OutputPin,
    P::Error: Display,
{
    name: String,
    chip: PathBuf,
    offset: u32,
    active_low: bool,
    pin: P,
}

impl<P> std::fmt::Debug for PinOutput<P>
where
    P: OutputPin,
    P::Error: Display,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinOutput")
            .field("name", &self.name)
            .field("chip", &self.chip)
            .field("line", &self.offset)
            .field("active_low", &self.active_low)
            .finish_non_exhaustive()
    }
}

impl<P> PinOutput<P>
where
    P: OutputPin,
    P::Error: Display,
{
    /// The output `spec` (name, chip and line for the errors, polarity) on `pin`, which the caller has already
    /// driven to the inactive level ([`level`]`(false, spec.active_low)`), e.g. when requesting the line.
    pub fn new(spec: &OutputSpec, pin: P) -> Self {
        PinOutput {
            name: spec.name.clone(),
            chip: spec.chip.clone(),
            offset: spec.line,
            active_low: spec.active_low,
            pin,
        }
    }

    /// The pin (e.g. to read back what a stateful pin drives).
    pub fn pin_mut(&mut self) -> &mut P {
        &mut self.pin
    }
}

impl<P> OutputLine for PinOutput<P>
where
    P: OutputPin + Send,
    P::Error: Display,
{
    fn set(&mut self, on: bool) -> Result<(), InputError> {
        self.pin.set_state(level(on, self.active_low)).map_err(|e| InputError::Line {
            chip: self.chip.clone(),
            line: self.offset,
            name: self.name.clone(),
            reason: format!("set {}: {e}", if on { "on" } else { "off" }),
        })
    }

    fn name(&self) -> &str {
        &self.name
    }
}

impl<P> Drop for PinOutput<P>
where
    P: OutputPin,
    P::Error: Display,
{
    fn drop(&mut self) {
        if let Err(e) = self.pin.set_state(level(false, self.active_low)) {
            log::debug!("{} line {} ({}): off on release: {e}", self.chip.display(), self.offset, self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{gpio::raw_value, SimOutputLine, SimOutputs};
    use embedded_hal::digital::StatefulOutputPin;

    fn sim(outs: &SimOutputs, name: &str, line: u32, active_low: bool) -> PinOutput<SimOutputLine> {
        let spec = OutputSpec { active_low, ..OutputSpec::new(name, "sim", line) };
        let mut pin = outs.line(name);
        pin.set_state(level(false, active_low)).unwrap();
        PinOutput::new(&spec, pin)
    }

    #[test]
    fn levels_follow_the_polarity_like_the_raw_values() {
        for (on, active_low) in [(true, false), (false, false), (true, true), (false, true)] {
            let want = if raw_value(on, active_low) == 1 { PinState::High } else { PinState::Low };
            assert_eq!(level(on, active_low), want, "on {on}, active low {active_low}");
        }
    }

    #[test]
    fn an_active_high_line_drives_high_when_on() {
        let outs = SimOutputs::new();
        let mut relay = sim(&outs, "relay", 4, false);
        assert_eq!(relay.name(), "relay");
        relay.set(true).unwrap();
        assert!(outs.is_on("relay"));
        assert!(relay.pin_mut().is_set_high().unwrap());
        relay.set(false).unwrap();
        assert_eq!(outs.history("relay").iter().map(|h| h.1).collect::<Vec<_>>(), vec![true, false]);
    }

    #[test]
    fn an_active_low_line_is_inverted_and_released_high() {
        let outs = SimOutputs::new();
        let mut led = sim(&outs, "led_call", 5, true);
        // Inactive: the line is high.
        assert!(outs.is_on("led_call"));
        led.set(true).unwrap();
        assert!(led.pin_mut().is_set_low().unwrap());
        assert!(!outs.is_on("led_call"));
        drop(led);
        // Released inactive: high again.
        assert!(outs.is_on("led_call"));
        assert_eq!(outs.history("led_call").iter().map(|h| h.1).collect::<Vec<_>>(), vec![true, false, true]);
    }

    #[test]
    fn a_failing_pin_names_the_chip_line_and_output() {
        let outs = SimOutputs::new();
        let mut relay = sim(&outs, "relay", 4, false);
        outs.set_failing("relay", true);
        let err = relay.set(true).unwrap_err();
        assert!(matches!(err, InputError::Line { line: 4, .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.starts_with("sim line 4 (relay): set on: "), "{text}");
        assert!(text.contains("simulated fault"), "{text}");
        // Dropping a failing pin only logs.
        drop(relay);
        assert!(!outs.is_on("relay"));
    }

    #[test]
    fn pin_outputs_are_output_lines_for_the_appliance() {
        let outs = SimOutputs::new();
        let mut lines: Vec<Box<dyn OutputLine>> = vec![Box::new(sim(&outs, "relay", 4, false))];
        lines[0].set(true).unwrap();
        assert!(outs.is_on("relay"));
        let debug = format!("{:?}", sim(&outs, "led_idle", 6, true));
        assert!(debug.contains("led_idle") && debug.contains("active_low: true"), "{debug}");
    }
}

//! Log forms of the core's signals, commands and events that never show a DTMF digit: digits typed in a call may
//! be a door code, so no log level may carry them. Everything else prints as its `Debug`.

use crate::core::{Command, SignalEvent};
use crate::events::Event;
use std::fmt;

/// `Debug` of the wrapped value with any DTMF digit shown as `_`.
pub struct Loggable<'a, T>(pub &'a T);

impl fmt::Debug for Loggable<'_, SignalEvent> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SignalEvent::Dtmf(_) => f.write_str("Dtmf(_)"),
            other => fmt::Debug::fmt(other, f),
        }
    }
}

impl fmt::Debug for Loggable<'_, Command> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Command::SendDtmf { call, .. } => write!(f, "SendDtmf {{ call: {call:?}, digit: _ }}"),
            other => fmt::Debug::fmt(other, f),
        }
    }
}

impl fmt::Debug for Loggable<'_, Event> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Event::DtmfReceived { call, .. } => write!(f, "DtmfReceived {{ call: {call:?}, digit: _ }}"),
            other => fmt::Debug::fmt(other, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CallId;

    #[test]
    fn no_digit_is_shown_and_the_rest_is_plain_debug() {
        let shown = [
            format!("{:?}", Loggable(&SignalEvent::Dtmf('7'))),
            format!("{:?}", Loggable(&Command::SendDtmf { call: CallId(3), digit: '7' })),
            format!("{:?}", Loggable(&Event::DtmfReceived { call: CallId(3), digit: '7' })),
        ];
        for s in &shown {
            assert!(!s.contains('7'), "{s}");
        }
        assert!(shown[1].contains("SendDtmf") && shown[1].contains("CallId(3)"), "{}", shown[1]);
        let hang_up = Command::HangUp { call: CallId(4) };
        assert_eq!(format!("{:?}", Loggable(&hang_up)), format!("{hang_up:?}"));
    }
}

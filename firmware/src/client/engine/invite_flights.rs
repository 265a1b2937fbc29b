//! Invitations sent and not yet known delivered, as pure state. An invitation goes out as a SIP MESSAGE with a
//! SIP Call-ID of our choosing; Janus's sip plugin later reports its fate (`messagedelivery` with that Call-ID):
//! delivered to a device (2xx) or not (any other code). Janus may never report it (the MESSAGE lost on the way),
//! so the table is bounded: the oldest flight is given up (as 408) when a new one needs its place.

use crate::calling::{CallId, ParticipantId};
use std::collections::VecDeque;

/// At most this many invitations wait for their delivery report.
pub(super) const MAX_INVITES_IN_FLIGHT: usize = 64;

/// What became of an invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    Delivered,
    /// Not delivered, with the SIP code to report (408: never reported, given up).
    Failed(u16),
}

/// One invitation's outcome, for the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Outcome {
    pub call: CallId,
    pub participant: ParticipantId,
    pub fate: Fate,
}

struct Flight {
    sip_call_id: String,
    call: CallId,
    participant: ParticipantId,
}

/// The invitations in flight, oldest first.
#[derive(Default)]
pub(super) struct InviteFlights {
    flights: VecDeque<Flight>,
}

impl InviteFlights {
    /// An invitation went out; when the table is full the oldest flight is given up and returned (report it).
    pub(super) fn sent(&mut self, sip_call_id: String, call: CallId, participant: ParticipantId) -> Option<Outcome> {
        let given_up = if self.flights.len() >= MAX_INVITES_IN_FLIGHT {
            self.flights.pop_front().map(|f| Outcome {
                call: f.call,
                participant: f.participant,
                fate: Fate::Failed(408),
            })
        } else {
            None
        };
        self.flights.push_back(Flight { sip_call_id, call, participant });
        given_up
    }

    /// Janus reported a MESSAGE's fate: the invitation's outcome, if the Call-ID is one of ours in flight (the
    /// reports of other MESSAGEs, or repeated ones, give `None`).
    pub(super) fn reported(&mut self, sip_call_id: Option<&str>, code: i64) -> Option<Outcome> {
        let id = sip_call_id?;
        let index = self.flights.iter().position(|f| f.sip_call_id == id)?;
        let flight = self.flights.remove(index)?;
        let fate =
            if (200..300).contains(&code) { Fate::Delivered } else { Fate::Failed(u16::try_from(code).unwrap_or(500)) };
        Some(Outcome { call: flight.call, participant: flight.participant, fate })
    }

    /// The call left its room: its invitations' fates no longer matter.
    pub(super) fn forget_call(&mut self, call: CallId) {
        self.flights.retain(|f| f.call != call);
    }

    /// The session is lost: no report will come.
    pub(super) fn clear(&mut self) {
        self.flights.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.flights.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u64) -> ParticipantId {
        ParticipantId(n)
    }

    #[test]
    fn a_2xx_report_is_delivered_and_anything_else_failed_with_its_code() {
        let mut f = InviteFlights::default();
        assert_eq!(f.sent("a".into(), CallId(1), p(1)), None);
        assert_eq!(f.sent("b".into(), CallId(1), p(2)), None);
        assert_eq!(
            f.reported(Some("b"), 404),
            Some(Outcome { call: CallId(1), participant: p(2), fate: Fate::Failed(404) })
        );
        assert_eq!(
            f.reported(Some("a"), 202),
            Some(Outcome { call: CallId(1), participant: p(1), fate: Fate::Delivered })
        );
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn reports_of_other_or_repeated_messages_are_skipped() {
        let mut f = InviteFlights::default();
        f.sent("a".into(), CallId(1), p(1));
        assert_eq!(f.reported(None, 200), None);
        assert_eq!(f.reported(Some("other"), 200), None);
        assert!(f.reported(Some("a"), 200).is_some());
        assert_eq!(f.reported(Some("a"), 200), None, "a repeated report");
    }

    #[test]
    fn a_code_out_of_range_is_reported_as_500() {
        let mut f = InviteFlights::default();
        for (i, code) in [-1i64, 99_999].into_iter().enumerate() {
            let id = format!("m{i}");
            f.sent(id.clone(), CallId(1), p(1));
            assert_eq!(f.reported(Some(&id), code).map(|o| o.fate), Some(Fate::Failed(500)), "{code}");
        }
    }

    #[test]
    fn when_full_the_oldest_flight_is_given_up_as_408() {
        let mut f = InviteFlights::default();
        for n in 0..MAX_INVITES_IN_FLIGHT as u64 {
            assert_eq!(f.sent(format!("m{n}"), CallId(n), p(n)), None);
        }
        let given_up = f.sent("new".into(), CallId(99), p(99));
        assert_eq!(given_up, Some(Outcome { call: CallId(0), participant: p(0), fate: Fate::Failed(408) }));
        assert_eq!(f.len(), MAX_INVITES_IN_FLIGHT);
        assert_eq!(f.reported(Some("m0"), 200), None, "the given-up flight is gone");
        assert!(f.reported(Some("new"), 200).is_some());
    }

    #[test]
    fn a_call_that_left_or_a_lost_session_drops_its_flights() {
        let mut f = InviteFlights::default();
        f.sent("a".into(), CallId(1), p(1));
        f.sent("b".into(), CallId(2), p(1));
        f.forget_call(CallId(1));
        assert_eq!(f.reported(Some("a"), 200), None);
        f.clear();
        assert_eq!(f.reported(Some("b"), 200), None);
    }
}

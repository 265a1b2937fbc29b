//! Which call each sip-plugin handle carries, and when it may act or take the next call, as pure state (no clock
//! inside: `now` comes in). Three behaviours of Janus 1.1.2's sip plugin, seen in tests and read in `janus_sip.c`,
//! are pinned here (docs/architecture.md, "SIP handles"):
//!
//! - **handle reuse** (`HANDLE_REUSE_DELAY`): after a call the handle's SIP-side relay thread lingers up to about a
//!   second; a new call placed on the handle meanwhile has its RTP sockets closed under it (the far end gets
//!   "connection refused"). An outgoing call takes the free handle released the longest ago (one never used
//!   first) and waits until it has been free this long.
//! - **invite settle** (`JANUS_INVITE_SETTLE`): `incomingcall` reaches us before the plugin stores the INVITE's
//!   handle, so an answer or a decline sent within that instant is lost (the caller rings until it times out).
//! - **leg drop** (`SIP_LEG_DROP_LIMIT`): an escalated call's 1:1 leg is hung up beside the engine; its handle is
//!   not reused before that hang-up is done or given up (plus the reuse delay).

use crate::calling::CallId;
use std::time::{Duration, Instant};

/// See the module comment: how long a handle rests after its call before it places another.
pub(super) const HANDLE_REUSE_DELAY: Duration = Duration::from_millis(1200);

/// See the module comment: how long after an incoming call's announcement it may be answered or declined.
pub(super) const JANUS_INVITE_SETTLE: Duration = Duration::from_millis(50);

/// How long dropping an escalated call's 1:1 leg may take (its handle is not reused before).
pub(super) const SIP_LEG_DROP_LIMIT: Duration = Duration::from_secs(3);

/// One handle's call and its timing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Binding {
    /// The call the handle carries (ringing, in progress, being released, or waiting for the handle).
    call: Option<CallId>,
    /// When the incoming call on it was announced, until it is answered or declined.
    offered_at: Option<Instant>,
    /// When its last call was released (or, after a leg drop, when that drop is given up).
    released_at: Option<Instant>,
}

impl Binding {
    pub(super) fn call(&self) -> Option<CallId> {
        self.call
    }

    /// An incoming call was announced on the handle.
    pub(super) fn offered(&mut self, call: CallId, now: Instant) {
        self.call = Some(call);
        self.offered_at = Some(now);
    }

    /// The handle carries an outgoing call (placed now, or waiting for the handle's reuse delay).
    pub(super) fn bind(&mut self, call: CallId) {
        self.call = Some(call);
    }

    /// The incoming call was answered or declined: the settle rule no longer applies.
    pub(super) fn acted_on(&mut self) {
        self.offered_at = None;
    }

    /// When the incoming call may be answered or declined (`None`: at once).
    pub(super) fn settled_at(&self) -> Option<Instant> {
        self.offered_at.map(|at| at + JANUS_INVITE_SETTLE)
    }

    /// When an outgoing call may be placed on the handle (`None`: at once, it was never used).
    pub(super) fn reusable_at(&self) -> Option<Instant> {
        self.released_at.map(|at| at + HANDLE_REUSE_DELAY)
    }

    /// The call is over and Janus's side of it hung up.
    pub(super) fn released(&mut self, now: Instant) {
        *self = Binding { call: None, offered_at: None, released_at: Some(now) };
    }

    /// An escalated call's 1:1 leg is being hung up beside the engine.
    pub(super) fn leg_dropped(&mut self, now: Instant) {
        *self = Binding { call: None, offered_at: None, released_at: Some(now + SIP_LEG_DROP_LIMIT) };
    }
}

/// The handle for a new outgoing call: the free one released the longest ago, one never used first.
pub(super) fn pick_for_outgoing<'a>(bindings: impl Iterator<Item = &'a Binding>) -> Option<usize> {
    bindings.enumerate().filter(|(_, b)| b.call.is_none()).min_by_key(|(_, b)| b.released_at).map(|(i, _)| i)
}

/// The handle carrying `call`.
pub(super) fn of_call<'a>(mut bindings: impl Iterator<Item = &'a Binding>, call: CallId) -> Option<usize> {
    bindings.position(|b| b.call == Some(call))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn janus_handle_reuse_a_never_used_handle_is_taken_first_then_the_one_free_the_longest() {
        let t0 = Instant::now();
        let mut hs = [Binding::default(), Binding::default(), Binding::default()];
        hs[0].released(t0 + ms(100));
        hs[2].released(t0);
        assert_eq!(pick_for_outgoing(hs.iter()), Some(1), "never used");
        hs[1].bind(CallId(7));
        assert_eq!(pick_for_outgoing(hs.iter()), Some(2), "released the longest ago");
        hs[2].bind(CallId(8));
        hs[0].bind(CallId(9));
        assert_eq!(pick_for_outgoing(hs.iter()), None, "every handle busy");
        assert_eq!(of_call(hs.iter(), CallId(8)), Some(2));
        assert_eq!(of_call(hs.iter(), CallId(1)), None);
    }

    #[test]
    fn janus_handle_reuse_a_released_handle_places_its_next_call_1200_ms_later() {
        let t0 = Instant::now();
        let mut h = Binding::default();
        assert_eq!(h.reusable_at(), None, "never used: at once");
        h.bind(CallId(1));
        h.released(t0);
        assert_eq!((h.call(), h.reusable_at()), (None, Some(t0 + ms(1200))));
    }

    #[test]
    fn janus_handle_reuse_a_handle_waiting_for_its_delay_is_reserved_for_its_call() {
        let t0 = Instant::now();
        let mut hs = [Binding::default()];
        hs[0].released(t0);
        hs[0].bind(CallId(3));
        assert_eq!(pick_for_outgoing(hs.iter()), None, "no other call takes it meanwhile");
        assert_eq!(hs[0].reusable_at(), Some(t0 + ms(1200)), "the delay still runs from the release");
    }

    #[test]
    fn janus_invite_settle_an_incoming_call_is_acted_on_50_ms_after_its_announcement() {
        let t0 = Instant::now();
        let mut h = Binding::default();
        h.offered(CallId(4), t0);
        assert_eq!((h.call(), h.settled_at()), (Some(CallId(4)), Some(t0 + ms(50))));
        h.acted_on();
        assert_eq!(h.settled_at(), None);
        assert_eq!(h.call(), Some(CallId(4)), "still the call's handle");
    }

    #[test]
    fn janus_leg_drop_an_escalated_calls_handle_rests_until_its_hang_up_is_given_up() {
        let t0 = Instant::now();
        let mut h = Binding::default();
        h.offered(CallId(5), t0);
        h.leg_dropped(t0);
        assert_eq!(h.call(), None);
        assert_eq!(h.reusable_at(), Some(t0 + ms(3000) + ms(1200)));
        assert_eq!(h.settled_at(), None);
    }

    #[test]
    fn janus_keeps_the_peerconnection_a_handle_stays_taken_after_its_call_until_it_is_hung_up() {
        // After a call or a decline the handle keeps its PeerConnection until it is sent `hangup`: a `call` on it
        // fails and INVITEs get 486. Only `released` (after that hangup) frees it, and then after the reuse delay.
        let t0 = Instant::now();
        let mut hs = [Binding::default(), Binding::default()];
        hs[0].bind(CallId(1));
        hs[1].offered(CallId(2), t0);
        hs[1].acted_on();
        assert_eq!(pick_for_outgoing(hs.iter()), None, "both still hold their calls' PeerConnections");
        hs[1].released(t0 + ms(500));
        assert_eq!(pick_for_outgoing(hs.iter()), Some(1));
        assert_eq!(hs[1].reusable_at(), Some(t0 + ms(1700)));
    }

    #[test]
    fn janus_busy_on_a_helper_a_second_incoming_call_lands_on_a_helper_and_is_declined_there() {
        // Janus gives an INVITE to a free handle of the account: with the master in a call, a second caller rings
        // on a helper, where the core's 486 (busy) must go, after the settle.
        let t0 = Instant::now();
        let mut hs = [Binding::default(), Binding::default(), Binding::default()];
        hs[0].offered(CallId(1), t0);
        hs[0].acted_on();
        hs[1].offered(CallId(2), t0 + ms(10_000));
        assert_eq!(of_call(hs.iter(), CallId(2)), Some(1));
        assert_eq!(hs[1].settled_at(), Some(t0 + ms(10_050)));
        assert_eq!(pick_for_outgoing(hs.iter()), Some(2), "the one free helper is left for an outgoing call");
        hs[1].acted_on();
        hs[1].released(t0 + ms(10_060));
        assert_eq!(of_call(hs.iter(), CallId(2)), None);
        assert_eq!(of_call(hs.iter(), CallId(1)), Some(0), "the first call is not disturbed");
    }
}

//! The appliance's behaviour as pure logic (sans-IO, no clock: times are passed in): what a button gesture
//! does in the current call state, who may ring it and who is answered on their own (`calling::admission`),
//! busy, the door code typed as DTMF (into a fixed buffer, compared in constant time, only from parties allowed to
//! open, attempts rate-limited and guarded against guessing by `door_guard`), the relay pulse, and the status LED.
//! A code that does not open (wrong, locked out, over the rate limit: the caller cannot tell which) plays the
//! wrong-code tone to the caller; a lockout is an operator event: a warning and the alert LED for a while.
//! `run.rs` feeds it the client's events, the buttons and the time, and carries out the [`Action`]s it returns.

mod door_guard;

pub use crate::calling::admission::{Admission, Admit, Direction, Parties, Party, REFUSE_CODES};
pub use door_guard::{DoorGuard, Gate, GuardPolicy, GuardState};

use std::collections::VecDeque;
use std::time::Duration;

use crate::calling::{CallId, CallState, Identifier, Secret};
use crate::input::{ButtonAction, LedState};
use crate::media::CallTone;

/// What the appliance must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Place a call to these targets.
    PlaceCall(Vec<Identifier>),
    /// Answer the ringing incoming call.
    Answer(CallId),
    /// Receive the ringing incoming call's media before answering (early media: the caller's video shows).
    AnswerEarly(CallId),
    /// Decline the ringing incoming call (486 when busy, 603 when the user rejects).
    Reject(CallId, u16),
    /// Hang up the call.
    HangUp(CallId),
    /// Mute (`true`) or unmute the microphone of the call.
    SetMuted(CallId, bool),
    /// Camera on (`true`) or off in the call.
    SetVideo(CallId, bool),
    /// Start (`true`) or stop the ring chime on the speaker.
    Chime(bool),
    /// Play a tone to the far end of the call, in the call's audio.
    PlayTone(CallId, CallTone),
    /// Energise the door relay for this long.
    PulseRelay(Duration),
    /// Keep the door code's guard state (wrong-code counts and lockouts) across restarts.
    SaveDoorGuard(GuardState),
    /// Show this LED state.
    Led(LedState),
}

/// The behaviour's settings (from the configuration).
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Whom the doorbell calls.
    pub targets: Vec<Identifier>,
    /// Who may ring, who is answered on their own, who may open the door.
    pub admission: Admission,
    /// Answer the incoming calls of `admission.auto_answer` on our own after this long (indoor monitors);
    /// `None`: never.
    pub auto_answer_after: Option<Duration>,
    /// Show an incoming call's video while it rings (early media; our microphone and camera stay off until
    /// answered): an indoor monitor shows who is at the door before the resident answers.
    pub early_video: bool,
    /// The door code (digits), if the door relay is configured.
    pub door_code: Option<Secret>,
    /// How long the relay is energised.
    pub relay_pulse: Duration,
    /// Door-code attempts allowed per minute (further ones are ignored until the window frees).
    pub max_code_attempts_per_minute: u32,
    /// Lockouts after wrong codes, and the hang-up after too many in one call.
    pub guard: GuardPolicy,
    /// Typed digits are forgotten after this long without a new one.
    pub digit_timeout: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            targets: Vec::new(),
            admission: Admission::default(),
            auto_answer_after: None,
            early_video: false,
            door_code: None,
            relay_pulse: Duration::from_secs(3),
            max_code_attempts_per_minute: 3,
            guard: GuardPolicy::default(),
            digit_timeout: Duration::from_secs(5),
        }
    }
}

/// After a tone that ends a call, the time its last packets need to be played at the far end (network and jitter
/// buffer) before the hang-up cuts the call.
pub const TONE_PLAY_OUT: Duration = Duration::from_millis(500);

/// Most digits kept while a code is typed: more than the longest door code (12 digits, `Config::door_code`).
/// A digit past it makes the entry over-long: `#` then counts it as a wrong code without comparing it.
pub(super) const MAX_DIGITS: usize = 16;
const CODE_WINDOW: Duration = Duration::from_secs(60);
/// How long the alert LED shows after a caller was locked out.
pub const ALERT_LED_FOR: Duration = Duration::from_secs(60);

/// The digits typed toward the door code since the last `#`, `*` or pause, in a buffer of [`MAX_DIGITS`].
#[derive(Default)]
pub(super) struct TypedDigits {
    digits: heapless::String<MAX_DIGITS>,
    /// A digit came past the bound (and was dropped): the entry cannot be the code.
    overflowed: bool,
}

impl TypedDigits {
    /// Adds a digit; past [`MAX_DIGITS`] it is dropped and the entry marked over-long.
    pub(super) fn push(&mut self, digit: char) {
        if self.digits.push(digit).is_err() && !self.overflowed {
            self.overflowed = true;
            log::debug!("more than {MAX_DIGITS} digits typed: the entry cannot be the door code");
        }
    }

    /// Forgets the entry.
    pub(super) fn clear(&mut self) {
        self.digits.clear();
        self.overflowed = false;
    }

    /// The entry, forgotten here: `None` when it was over-long.
    pub(super) fn take(&mut self) -> Option<heapless::String<MAX_DIGITS>> {
        let overflowed = std::mem::take(&mut self.overflowed);
        let digits = std::mem::take(&mut self.digits);
        (!overflowed).then_some(digits)
    }

    /// How many digits are kept.
    pub(super) fn len(&self) -> usize {
        self.digits.len()
    }
}

/// Never shows the digits: they may be (part of) the door code.
impl std::fmt::Debug for TypedDigits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedDigits").field("len", &self.len()).field("overflowed", &self.overflowed).finish()
    }
}

/// The calls as the appliance sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Current {
    call: CallId,
    direction: Direction,
    /// Who is at the other end: the caller, or whom our call reached once it connected.
    peer: Option<Identifier>,
    incoming_ringing: bool,
    /// The caller is one the admission policy answers on its own.
    auto_answer: bool,
    connected: bool,
    muted: bool,
    video: bool,
    /// When an incoming call started ringing (for auto-answer).
    rang_at: Option<Duration>,
    /// Wrong door codes typed in this call.
    wrong_codes: u32,
}

impl Current {
    fn new(call: CallId, direction: Direction, peer: Option<Identifier>) -> Self {
        Current {
            call,
            direction,
            peer,
            incoming_ringing: false,
            auto_answer: false,
            connected: false,
            muted: false,
            video: true,
            rang_at: None,
            wrong_codes: 0,
        }
    }
}

/// See the module comment.
#[derive(Debug)]
pub struct ApplianceLogic {
    behaviour: Behaviour,
    ready: bool,
    current: Option<Current>,
    digits: TypedDigits,
    last_digit_at: Option<Duration>,
    attempts: VecDeque<Duration>,
    guard: DoorGuard,
    led: Option<LedState>,
    /// The alert LED shows until then (a caller was locked out).
    alert_until: Option<Duration>,
    /// A call to hang up then: after its last wrong code, once the wrong-code tone has been heard.
    hang_up_at: Option<(CallId, Duration)>,
    chiming: bool,
    actions: VecDeque<Action>,
    /// Codes refused because of the rate limit (for the log and tests).
    pub rate_limited: u64,
    /// Wrong codes entered.
    pub wrong_codes: u64,
    /// Code attempts not compared because their caller was locked out.
    pub locked_out: u64,
    /// Lockouts started by wrong codes.
    pub lockouts: u64,
    /// Calls refused by the admission policy.
    pub refused_calls: u64,
    /// Relay pulses given.
    pub door_openings: u64,
}

impl ApplianceLogic {
    /// The behaviour, not yet connected (LED: fault).
    pub fn new(behaviour: Behaviour) -> Self {
        let guard = DoorGuard::new(behaviour.guard, GuardState::default(), 0);
        let mut logic = ApplianceLogic {
            behaviour,
            ready: false,
            current: None,
            digits: TypedDigits::default(),
            last_digit_at: None,
            attempts: VecDeque::new(),
            guard,
            led: None,
            alert_until: None,
            hang_up_at: None,
            chiming: false,
            actions: VecDeque::new(),
            rate_limited: 0,
            wrong_codes: 0,
            locked_out: 0,
            lockouts: 0,
            refused_calls: 0,
            door_openings: 0,
        };
        logic.update_outputs();
        logic
    }

    /// Takes in the door code's guard state kept before a restart (`wall_now`: unix seconds).
    pub fn restore_door_guard(&mut self, state: GuardState, wall_now: u64) {
        self.guard = DoorGuard::new(self.behaviour.guard, state, wall_now);
    }

    /// The door code's guard policy.
    pub fn guard_policy(&self) -> &GuardPolicy {
        self.guard.policy()
    }

    /// The next action to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`ApplianceLogic::handle_timeout`] must be called next (auto-answer, forgetting digits, the alert LED, a
    /// hang-up after too many wrong codes).
    pub fn poll_timeout(&self) -> Option<Duration> {
        let answer = match (&self.current, self.behaviour.auto_answer_after) {
            (Some(Current { incoming_ringing: true, auto_answer: true, rang_at: Some(t), .. }), Some(after)) => {
                Some(*t + after)
            }
            _ => None,
        };
        let digits = self.last_digit_at.map(|t| t + self.behaviour.digit_timeout);
        let hang_up = self.hang_up_at.map(|(_, t)| t);
        [answer, digits, self.alert_until, hang_up].into_iter().flatten().min()
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Duration) {
        if let (Some(c), Some(after)) = (self.current.clone(), self.behaviour.auto_answer_after) {
            if c.incoming_ringing && c.auto_answer && c.rang_at.is_some_and(|t| now >= t + after) {
                log::info!("auto-answering the incoming call");
                self.answer(c.call);
            }
        }
        if self.last_digit_at.is_some_and(|t| now >= t + self.behaviour.digit_timeout) {
            self.digits.clear();
            self.last_digit_at = None;
        }
        if self.alert_until.is_some_and(|t| now >= t) {
            self.alert_until = None;
            self.update_outputs();
        }
        if let Some((call, at)) = self.hang_up_at {
            if now >= at {
                self.hang_up_at = None;
                if self.current_call() == Some(call) {
                    self.actions.push_back(Action::HangUp(call));
                }
            }
        }
    }

    /// Answers the ringing call: it stops ringing at once (the chime stops before the call's audio opens the
    /// speaker; the hang-up button now hangs up instead of rejecting).
    fn answer(&mut self, call: CallId) {
        if let Some(cur) = self.current.as_mut().filter(|c| c.call == call) {
            cur.incoming_ringing = false;
            cur.rang_at = None;
        }
        self.update_outputs();
        self.actions.push_back(Action::Answer(call));
    }

    /// The call the appliance is busy with, if any.
    pub fn current_call(&self) -> Option<CallId> {
        self.current.as_ref().map(|c| c.call)
    }

    /// The connection to the servers came up (`true`) or went down.
    pub fn on_ready(&mut self, ready: bool) {
        self.ready = ready;
        self.update_outputs();
    }

    /// A button gesture was recognised and mapped to `action`.
    pub fn on_button(&mut self, action: ButtonAction) {
        let current = self.current.clone();
        match (action, current) {
            (ButtonAction::Call, None) => {
                if self.behaviour.targets.is_empty() {
                    log::warn!("doorbell pressed but no call targets are configured");
                } else {
                    self.actions.push_back(Action::PlaceCall(self.behaviour.targets.clone()));
                }
            }
            (ButtonAction::Call, Some(c)) if c.incoming_ringing => self.answer(c.call),
            (ButtonAction::Call, Some(_)) => log::debug!("doorbell pressed during a call: ignored"),
            (ButtonAction::HangUp, Some(c)) if c.incoming_ringing => {
                self.actions.push_back(Action::Reject(c.call, 603))
            }
            (ButtonAction::HangUp, Some(c)) => self.actions.push_back(Action::HangUp(c.call)),
            (ButtonAction::Mute, Some(c)) if c.connected => self.actions.push_back(Action::SetMuted(c.call, !c.muted)),
            (ButtonAction::Video, Some(c)) if c.connected => self.actions.push_back(Action::SetVideo(c.call, !c.video)),
            (a, _) => log::debug!("{a:?} button: nothing to act on"),
        }
    }

    /// We placed a call.
    pub fn on_outgoing_call(&mut self, call: CallId) {
        self.make_current(Current::new(call, Direction::CallOut, None));
        self.update_outputs();
    }

    /// `call` is the call the appliance is busy with now. Digits typed in another call never count toward a code
    /// typed in this one.
    fn make_current(&mut self, call: Current) {
        if self.current_call() != Some(call.call) {
            self.digits.clear();
            self.last_digit_at = None;
        }
        self.current = Some(call);
    }

    /// Our call reached `peer` (it answered).
    pub fn on_call_peer(&mut self, call: CallId, peer: Identifier) {
        if let Some(c) = self.current.as_mut().filter(|c| c.call == call && c.direction == Direction::CallOut) {
            c.peer = Some(peer);
        }
    }

    /// A call from `from` came in at `now`. A caller the admission policy does not let in is refused with its
    /// code, without ringing; busy (another call going on): declined with 486.
    pub fn on_incoming_call(&mut self, call: CallId, from: &Identifier, now: Duration) {
        let auto_answer = match self.behaviour.admission.incoming(from) {
            Admit::Refuse(code) => {
                self.refused_calls += 1;
                log::info!("call from {from} refused ({code}): not among the callers the appliance admits");
                self.actions.push_back(Action::Reject(call, code));
                return;
            }
            Admit::Ring { auto_answer } => auto_answer,
        };
        if let Some(c) = &self.current {
            if c.call != call {
                log::info!("incoming call while busy: declined");
                self.actions.push_back(Action::Reject(call, 486));
                return;
            }
        }
        self.make_current(Current {
            incoming_ringing: true,
            auto_answer,
            rang_at: Some(now),
            ..Current::new(call, Direction::CallIn, Some(from.clone()))
        });
        if self.behaviour.early_video {
            self.actions.push_back(Action::AnswerEarly(call));
        }
        self.update_outputs();
    }

    /// A call's state changed.
    pub fn on_call_state(&mut self, call: CallId, state: CallState) {
        let Some(c) = self.current.as_mut().filter(|c| c.call == call) else {
            return;
        };
        if state != CallState::Incoming {
            c.incoming_ringing = false;
            c.rang_at = None;
        }
        match state {
            CallState::Connected => {
                c.connected = true;
                c.incoming_ringing = false;
                c.rang_at = None;
            }
            CallState::Disconnected => {
                self.current = None;
                self.digits.clear();
                self.last_digit_at = None;
            }
            _ => {}
        }
        self.update_outputs();
    }

    /// The call's microphone was muted or unmuted (by us or the API).
    pub fn on_muted(&mut self, call: CallId, muted: bool) {
        if let Some(c) = self.current.as_mut().filter(|c| c.call == call) {
            c.muted = muted;
        }
        self.update_outputs();
    }

    /// The call's camera was switched on or off.
    pub fn on_video(&mut self, call: CallId, on: bool) {
        if let Some(c) = self.current.as_mut().filter(|c| c.call == call) {
            c.video = on;
        }
    }

    /// A DTMF digit arrived in `call` at `now` (`wall_now`: unix seconds, for the guard's lockouts). In a
    /// connected call with a party the admission policy lets open the door (its identity authenticated by the
    /// SIP server), `#` submits the digits typed so far as the door code, `*` clears them.
    pub fn on_dtmf(&mut self, call: CallId, digit: char, now: Duration, wall_now: u64) {
        let Some(c) = self.current.as_ref().filter(|c| c.call == call && c.connected) else { return };
        if self.behaviour.door_code.is_none() {
            return;
        }
        let may_open = c.peer.as_ref().is_some_and(|p| self.behaviour.admission.may_open(p, c.direction));
        if !may_open {
            if digit == '#' {
                log::info!("{call}: a door code from a party not allowed to open the door: ignored");
            }
            return;
        }
        self.last_digit_at = Some(now);
        match digit {
            '*' => self.digits.clear(),
            '#' => {
                let typed = self.digits.take();
                self.submit_code(typed.as_deref(), now, wall_now);
            }
            d if d.is_ascii_digit() => self.digits.push(d),
            _ => {}
        }
    }

    /// Checks an entry (`None`: over-long, wrong whatever the code) against the code, within the rate limit and
    /// unless the caller is locked out; a wrong one counts toward the caller's lockout and the call's hang-up.
    fn submit_code(&mut self, typed: Option<&str>, now: Duration, wall_now: u64) {
        let Some((call, peer)) = self.current.as_ref().and_then(|c| Some((c.call, c.peer.clone()?))) else { return };
        while self.attempts.front().is_some_and(|t| now.saturating_sub(*t) >= CODE_WINDOW) {
            self.attempts.pop_front();
        }
        if self.attempts.len() >= self.behaviour.max_code_attempts_per_minute as usize {
            self.rate_limited += 1;
            log::warn!("door code attempt ignored: more than {} a minute", self.behaviour.max_code_attempts_per_minute);
            self.actions.push_back(Action::PlayTone(call, CallTone::WrongCode));
            return;
        }
        self.attempts.push_back(now);
        if let Gate::Locked(left) = self.guard.gate(&peer, wall_now) {
            self.locked_out += 1;
            log::warn!("{call}: door code of {peer} ignored: locked out for {} s more", left.as_secs());
            self.actions.push_back(Action::PlayTone(call, CallTone::WrongCode));
            return;
        }
        let Some(code) = &self.behaviour.door_code else { return };
        if typed.is_some_and(|typed| code.ct_eq(typed)) {
            self.door_openings += 1;
            log::info!("{call}: door code accepted from {peer}: opening the door");
            self.actions.push_back(Action::PulseRelay(self.behaviour.relay_pulse));
            if self.guard.right(&peer) {
                self.actions.push_back(Action::SaveDoorGuard(self.guard.state().clone()));
            }
            return;
        }
        self.wrong_codes += 1;
        let lockout = self.guard.wrong(&peer, wall_now);
        self.actions.push_back(Action::SaveDoorGuard(self.guard.state().clone()));
        self.actions.push_back(Action::PlayTone(call, CallTone::WrongCode));
        match lockout {
            Some(lockout) => {
                // The operator event: who, for how long (never what was typed), and the alert LED for a while.
                log::warn!(
                    "{call}: door code guessing? {peer} locked out for {} s after a wrong door code",
                    lockout.as_secs()
                );
                self.lockouts += 1;
                self.alert_until = Some(now + ALERT_LED_FOR);
                self.update_outputs();
            }
            None => log::warn!("{call}: wrong door code from {peer}"),
        }
        let in_call = self.current.as_mut().map(|c| {
            c.wrong_codes += 1;
            c.wrong_codes
        });
        if in_call.is_some_and(|n| n >= self.behaviour.guard.wrong_codes_per_call) && self.hang_up_at.is_none() {
            log::warn!(
                "{call}: {} wrong door codes in the call: hanging up",
                self.behaviour.guard.wrong_codes_per_call
            );
            // Once the caller has heard the tone of that last wrong code.
            self.hang_up_at = Some((call, now + CallTone::WrongCode.duration() + TONE_PLAY_OUT));
        }
    }

    fn update_outputs(&mut self) {
        let ringing = self.current.as_ref().is_some_and(|c| c.incoming_ringing);
        let led = match &self.current {
            _ if !self.ready => LedState::Fault,
            _ if self.alert_until.is_some() => LedState::Alert,
            None => LedState::Idle,
            Some(c) if c.connected && c.muted => LedState::Muted,
            Some(c) if c.connected => LedState::InCall,
            Some(_) => LedState::Ringing,
        };
        if self.led != Some(led) {
            self.led = Some(led);
            self.actions.push_back(Action::Led(led));
        }
        if self.chiming != ringing {
            self.chiming = ringing;
            self.actions.push_back(Action::Chime(ringing));
        }
    }
}

#[cfg(test)]
mod tests;

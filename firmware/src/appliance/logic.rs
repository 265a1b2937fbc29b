//! The appliance's behaviour as pure logic (sans-IO, no clock: times are passed in): what a button gesture
//! does in the current call state, ringing and auto-answer, busy, the door code typed as DTMF (into a fixed buffer,
//! compared in constant time, attempts rate-limited), the relay pulse, and the status LED. `run.rs` feeds it the
//! client's events, the buttons and the time, and carries out the [`Action`]s it returns.

use std::collections::VecDeque;
use std::time::Duration;

use crate::calling::{CallId, CallState, Identifier, Secret};
use crate::input::{ButtonAction, LedState};

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
    /// Energise the door relay for this long.
    PulseRelay(Duration),
    /// Show this LED state.
    Led(LedState),
}

/// The behaviour's settings (from the configuration).
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Whom the doorbell calls.
    pub targets: Vec<Identifier>,
    /// Answer incoming calls on our own after this long (indoor monitors); `None`: never.
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
    /// Typed digits are forgotten after this long without a new one.
    pub digit_timeout: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            targets: Vec::new(),
            auto_answer_after: None,
            early_video: false,
            door_code: None,
            relay_pulse: Duration::from_secs(3),
            max_code_attempts_per_minute: 3,
            digit_timeout: Duration::from_secs(5),
        }
    }
}

/// Most digits kept while a code is typed: more than the longest door code (12 digits, `Config::door_code`).
/// A digit past it makes the entry over-long: `#` then counts it as a wrong code without comparing it.
pub(super) const MAX_DIGITS: usize = 16;
const CODE_WINDOW: Duration = Duration::from_secs(60);

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Current {
    call: CallId,
    incoming_ringing: bool,
    connected: bool,
    muted: bool,
    video: bool,
    /// When an incoming call started ringing (for auto-answer).
    rang_at: Option<Duration>,
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
    led: Option<LedState>,
    chiming: bool,
    actions: VecDeque<Action>,
    /// Codes refused because of the rate limit (for the log and tests).
    pub rate_limited: u64,
    /// Wrong codes entered.
    pub wrong_codes: u64,
    /// Relay pulses given.
    pub door_openings: u64,
}

impl ApplianceLogic {
    /// The behaviour, not yet connected (LED: fault).
    pub fn new(behaviour: Behaviour) -> Self {
        let mut logic = ApplianceLogic {
            behaviour,
            ready: false,
            current: None,
            digits: TypedDigits::default(),
            last_digit_at: None,
            attempts: VecDeque::new(),
            led: None,
            chiming: false,
            actions: VecDeque::new(),
            rate_limited: 0,
            wrong_codes: 0,
            door_openings: 0,
        };
        logic.update_outputs();
        logic
    }

    /// The next action to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`ApplianceLogic::handle_timeout`] must be called next (auto-answer, forgetting digits).
    pub fn poll_timeout(&self) -> Option<Duration> {
        let answer = match (self.current, self.behaviour.auto_answer_after) {
            (Some(Current { incoming_ringing: true, rang_at: Some(t), .. }), Some(after)) => Some(t + after),
            _ => None,
        };
        let digits = self.last_digit_at.map(|t| t + self.behaviour.digit_timeout);
        match (answer, digits) {
            (Some(a), Some(d)) => Some(a.min(d)),
            (a, d) => a.or(d),
        }
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Duration) {
        if let (Some(c), Some(after)) = (self.current, self.behaviour.auto_answer_after) {
            if c.incoming_ringing && c.rang_at.is_some_and(|t| now >= t + after) {
                log::info!("auto-answering the incoming call");
                self.answer(c.call);
            }
        }
        if self.last_digit_at.is_some_and(|t| now >= t + self.behaviour.digit_timeout) {
            self.digits.clear();
            self.last_digit_at = None;
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
        self.current.map(|c| c.call)
    }

    /// The connection to the servers came up (`true`) or went down.
    pub fn on_ready(&mut self, ready: bool) {
        self.ready = ready;
        self.update_outputs();
    }

    /// A button gesture was recognised and mapped to `action`.
    pub fn on_button(&mut self, action: ButtonAction) {
        let current = self.current;
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
        self.current =
            Some(Current { call, incoming_ringing: false, connected: false, muted: false, video: true, rang_at: None });
        self.update_outputs();
    }

    /// A call came in at `now`. Busy (another call going on): declined with 486.
    pub fn on_incoming_call(&mut self, call: CallId, now: Duration) {
        if let Some(c) = self.current {
            if c.call != call {
                log::info!("incoming call while busy: declined");
                self.actions.push_back(Action::Reject(call, 486));
                return;
            }
        }
        self.current = Some(Current {
            call,
            incoming_ringing: true,
            connected: false,
            muted: false,
            video: true,
            rang_at: Some(now),
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

    /// A DTMF digit arrived in `call` at `now`. In a connected call (its far end authenticated by the SIP
    /// server), `#` submits the digits typed so far as the door code, `*` clears them.
    pub fn on_dtmf(&mut self, call: CallId, digit: char, now: Duration) {
        let connected = self.current.is_some_and(|c| c.call == call && c.connected);
        if !connected || self.behaviour.door_code.is_none() {
            return;
        }
        self.last_digit_at = Some(now);
        match digit {
            '*' => self.digits.clear(),
            '#' => {
                let typed = self.digits.take();
                self.submit_code(typed.as_deref(), now);
            }
            d if d.is_ascii_digit() => self.digits.push(d),
            _ => {}
        }
    }

    /// Checks an entry (`None`: over-long, wrong whatever the code) against the code, within the rate limit.
    fn submit_code(&mut self, typed: Option<&str>, now: Duration) {
        while self.attempts.front().is_some_and(|t| now.saturating_sub(*t) >= CODE_WINDOW) {
            self.attempts.pop_front();
        }
        if self.attempts.len() >= self.behaviour.max_code_attempts_per_minute as usize {
            self.rate_limited += 1;
            log::warn!("door code attempt ignored: more than {} a minute", self.behaviour.max_code_attempts_per_minute);
            return;
        }
        self.attempts.push_back(now);
        let Some(code) = &self.behaviour.door_code else { return };
        if typed.is_some_and(|typed| code.ct_eq(typed)) {
            self.door_openings += 1;
            log::info!("door code accepted: opening the door");
            self.actions.push_back(Action::PulseRelay(self.behaviour.relay_pulse));
        } else {
            self.wrong_codes += 1;
            log::warn!("wrong door code entered");
        }
    }

    fn update_outputs(&mut self) {
        let ringing = self.current.is_some_and(|c| c.incoming_ringing);
        let led = match self.current {
            _ if !self.ready => LedState::Fault,
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

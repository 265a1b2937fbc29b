//! Unit tests of the appliance's behaviour: buttons in each call state, ringing, auto-answer, busy, the door
//! code (right, wrong, rate-limited, only in a connected call) and the LED.

use std::time::Duration;

use super::*;
use crate::calling::{CallId, CallState, Identifier, Secret};
use crate::input::{ButtonAction, LedState};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn drain(l: &mut ApplianceLogic) -> Vec<Action> {
    std::iter::from_fn(|| l.poll_action()).collect()
}

fn door() -> ApplianceLogic {
    let behaviour = Behaviour {
        targets: vec![Identifier::user("monitor").unwrap()],
        door_code: Some(Secret::new("2468")),
        relay_pulse: ms(1500),
        max_code_attempts_per_minute: 3,
        ..Behaviour::default()
    };
    let mut l = ApplianceLogic::new(behaviour);
    assert_eq!(drain(&mut l), vec![Action::Led(LedState::Fault)]);
    l.on_ready(true);
    assert_eq!(drain(&mut l), vec![Action::Led(LedState::Idle)]);
    l
}

fn connected(l: &mut ApplianceLogic, call: CallId) {
    l.on_outgoing_call(call);
    l.on_call_state(call, CallState::Connected);
    drain(l);
}

fn type_code(l: &mut ApplianceLogic, call: CallId, code: &str, now: Duration) {
    for d in code.chars() {
        l.on_dtmf(call, d, now);
    }
}

#[test]
fn the_doorbell_calls_the_targets_and_the_buttons_act_on_the_call() {
    let mut l = door();
    l.on_button(ButtonAction::Mute);
    l.on_button(ButtonAction::HangUp);
    assert!(drain(&mut l).is_empty(), "nothing to act on when idle");
    l.on_button(ButtonAction::Call);
    assert_eq!(drain(&mut l), vec![Action::PlaceCall(vec![Identifier::user("monitor").unwrap()])]);
    let call = CallId(7);
    l.on_outgoing_call(call);
    assert_eq!(drain(&mut l), vec![Action::Led(LedState::Ringing)]);
    l.on_button(ButtonAction::Call);
    assert!(drain(&mut l).is_empty(), "the doorbell again during the call does nothing");
    l.on_call_state(call, CallState::Connected);
    assert_eq!(drain(&mut l), vec![Action::Led(LedState::InCall)]);
    l.on_button(ButtonAction::Mute);
    assert_eq!(drain(&mut l), vec![Action::SetMuted(call, true)]);
    l.on_muted(call, true);
    assert_eq!(drain(&mut l), vec![Action::Led(LedState::Muted)]);
    l.on_button(ButtonAction::Mute);
    assert_eq!(drain(&mut l), vec![Action::SetMuted(call, false)]);
    l.on_button(ButtonAction::Video);
    assert_eq!(drain(&mut l), vec![Action::SetVideo(call, false)]);
    l.on_video(call, false);
    l.on_button(ButtonAction::Video);
    assert_eq!(drain(&mut l), vec![Action::SetVideo(call, true)]);
    l.on_button(ButtonAction::HangUp);
    assert_eq!(drain(&mut l), vec![Action::HangUp(call)]);
    l.on_call_state(call, CallState::Disconnected);
    assert_eq!(drain(&mut l), vec![Action::Led(LedState::Idle)]);
}

#[test]
fn incoming_calls_ring_answer_reject_and_busy() {
    let mut l = door();
    let call = CallId(1);
    l.on_incoming_call(call, ms(0));
    assert_eq!(drain(&mut l), vec![Action::Led(LedState::Ringing), Action::Chime(true)]);
    assert_eq!(l.poll_timeout(), None, "no auto-answer configured");
    // A second call while this one rings: busy.
    l.on_incoming_call(CallId(2), ms(10));
    assert_eq!(drain(&mut l), vec![Action::Reject(CallId(2), 486)]);
    l.on_button(ButtonAction::HangUp);
    assert_eq!(drain(&mut l), vec![Action::Reject(call, 603)]);
    l.on_call_state(call, CallState::Disconnected);
    assert_eq!(drain(&mut l), vec![Action::Led(LedState::Idle), Action::Chime(false)]);
    // The call button answers a ringing call.
    l.on_incoming_call(CallId(3), ms(100));
    drain(&mut l);
    l.on_button(ButtonAction::Call);
    // The chime stops before the answer (the call's audio then opens the speaker).
    assert_eq!(drain(&mut l), vec![Action::Chime(false), Action::Answer(CallId(3))]);
    // While it connects, the hang-up button hangs up (it no longer rejects).
    l.on_button(ButtonAction::HangUp);
    assert_eq!(drain(&mut l), vec![Action::HangUp(CallId(3))]);
    l.on_call_state(CallId(3), CallState::Connected);
    assert_eq!(drain(&mut l), vec![Action::Led(LedState::InCall)]);
}

#[test]
fn an_indoor_monitor_answers_on_its_own_after_the_delay() {
    let mut l = ApplianceLogic::new(Behaviour { auto_answer_after: Some(ms(2000)), ..Behaviour::default() });
    l.on_ready(true);
    drain(&mut l);
    l.on_incoming_call(CallId(5), ms(1000));
    drain(&mut l);
    assert_eq!(l.poll_timeout(), Some(ms(3000)));
    l.handle_timeout(ms(2999));
    assert!(drain(&mut l).is_empty());
    l.handle_timeout(ms(3000));
    assert_eq!(drain(&mut l), vec![Action::Chime(false), Action::Answer(CallId(5))]);
    l.handle_timeout(ms(4000));
    assert!(drain(&mut l).is_empty(), "answered once");
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn the_right_code_opens_the_door_once_and_wrong_ones_do_not() {
    let mut l = door();
    let call = CallId(9);
    // Not in a call: ignored.
    type_code(&mut l, call, "2468#", ms(0));
    assert!(drain(&mut l).is_empty());
    connected(&mut l, call);
    type_code(&mut l, call, "1111#", ms(100));
    assert!(drain(&mut l).is_empty());
    assert_eq!(l.wrong_codes, 1);
    // '*' clears what was typed.
    type_code(&mut l, call, "99*2468#", ms(200));
    assert_eq!(drain(&mut l), vec![Action::PulseRelay(ms(1500))]);
    assert_eq!(l.door_openings, 1);
    // A prefix or a longer code is wrong (constant-time comparison of the whole).
    type_code(&mut l, call, "246#", ms(300));
    assert!(drain(&mut l).is_empty());
    // Digits of another call don't count.
    type_code(&mut l, CallId(10), "2468#", ms(400));
    assert!(drain(&mut l).is_empty());
}

#[test]
fn code_attempts_beyond_the_limit_are_ignored_until_the_minute_passes() {
    let mut l = door();
    let call = CallId(9);
    connected(&mut l, call);
    for i in 0..3 {
        type_code(&mut l, call, "0000#", ms(i * 1000));
    }
    assert_eq!(l.wrong_codes, 3);
    // The right code, but over the limit: ignored.
    type_code(&mut l, call, "2468#", ms(5000));
    assert!(drain(&mut l).is_empty());
    assert_eq!(l.rate_limited, 1);
    // A minute after the first attempt, one more is allowed.
    type_code(&mut l, call, "2468#", ms(60_000));
    assert_eq!(drain(&mut l), vec![Action::PulseRelay(ms(1500))]);
}

#[test]
fn typed_digits_are_forgotten_after_a_pause_and_bounded() {
    let mut l = door();
    let call = CallId(9);
    connected(&mut l, call);
    type_code(&mut l, call, "24", ms(0));
    assert_eq!(l.poll_timeout(), Some(ms(5000)));
    l.handle_timeout(ms(5000));
    type_code(&mut l, call, "68#", ms(5100));
    assert!(drain(&mut l).is_empty(), "the first half was forgotten");
    // A flood of digits stays bounded and never matches.
    type_code(&mut l, call, &"7".repeat(10_000), ms(6000));
    l.on_dtmf(call, '#', ms(6000));
    assert!(drain(&mut l).is_empty());
    // Not connected to the servers: the LED shows the fault.
    l.on_ready(false);
    assert_eq!(drain(&mut l), vec![Action::Led(LedState::Fault)]);
}

#[test]
fn the_digit_buffer_keeps_its_bound_and_an_over_long_entry_is_refused_whole() {
    let mut typed = TypedDigits::default();
    for _ in 0..MAX_DIGITS {
        typed.push('1');
    }
    assert_eq!(typed.take().as_deref(), Some("1".repeat(MAX_DIGITS).as_str()), "the bound itself fits");
    for _ in 0..=MAX_DIGITS {
        typed.push('7');
    }
    assert_eq!(typed.len(), MAX_DIGITS, "the digit past the bound is dropped");
    let debug = format!("{typed:?}");
    assert!(!debug.contains('7') && debug.contains("overflowed: true"), "no digit shown: {debug}");
    assert_eq!(typed.take(), None, "over-long");
    assert_eq!(typed.len(), 0);
    typed.push('2');
    assert_eq!(typed.take().as_deref(), Some("2"), "taking the entry resets the overflow");
    for _ in 0..(MAX_DIGITS + 3) {
        typed.push('3');
    }
    typed.clear();
    typed.push('4');
    assert_eq!(typed.take().as_deref(), Some("4"), "clearing resets it too");
}

#[test]
fn an_entry_past_the_bound_is_a_wrong_code_even_when_the_code_is_in_it() {
    let mut l = door();
    let call = CallId(9);
    connected(&mut l, call);
    // The code, then digits up to and past the bound: one wrong attempt.
    let long = format!("2468{}", "0".repeat(MAX_DIGITS - 4 + 1));
    type_code(&mut l, call, &format!("{long}#"), ms(0));
    assert!(drain(&mut l).is_empty());
    assert_eq!((l.wrong_codes, l.door_openings), (1, 0));
    // The next entry starts afresh.
    type_code(&mut l, call, "2468#", ms(100));
    assert_eq!(drain(&mut l), vec![Action::PulseRelay(ms(1500))]);
    // '*' forgets an over-long entry.
    type_code(&mut l, call, &format!("{long}*2468#"), ms(200));
    assert_eq!(drain(&mut l), vec![Action::PulseRelay(ms(1500))]);
    assert_eq!((l.wrong_codes, l.door_openings), (1, 2));
}

#[test]
fn a_monitor_with_early_video_shows_a_ringing_call_but_not_a_busy_one() {
    let mut l = ApplianceLogic::new(Behaviour { early_video: true, ..Behaviour::default() });
    l.on_ready(true);
    drain(&mut l);
    let call = CallId(3);
    l.on_incoming_call(call, ms(0));
    let actions = drain(&mut l);
    assert!(actions.contains(&Action::AnswerEarly(call)), "{actions:?}");
    assert!(!actions.contains(&Action::Answer(call)), "early media is not an answer");
    // A second call while busy is declined, not shown.
    l.on_incoming_call(CallId(4), ms(10));
    assert_eq!(drain(&mut l), vec![Action::Reject(CallId(4), 486)]);
    // Without the setting, a ringing call is not shown early.
    let mut plain = ApplianceLogic::new(Behaviour::default());
    plain.on_ready(true);
    drain(&mut plain);
    plain.on_incoming_call(call, ms(0));
    assert!(!drain(&mut plain).contains(&Action::AnswerEarly(call)));
}

//! Unit tests of the appliance's behaviour: buttons in each call state, ringing, admission and auto-answer, busy,
//! the door code (right, wrong, rate-limited, only in a connected call with a party allowed to open, lockouts
//! kept across a restart, the hang-up after too many wrong codes, the wrong-code tone, the alert after a lockout)
//! and the LED.

use std::time::Duration;

use super::*;
use crate::calling::{CallId, CallState, Identifier, Secret};
use crate::input::{ButtonAction, LedState};
use crate::media::CallTone;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn drain(l: &mut ApplianceLogic) -> Vec<Action> {
    std::iter::from_fn(|| l.poll_action()).collect()
}

/// The actions without the guard state being kept and the wrong-code tone (each asserted on its own where it
/// matters).
fn acts(l: &mut ApplianceLogic) -> Vec<Action> {
    drain(l).into_iter().filter(|a| !matches!(a, Action::SaveDoorGuard(_) | Action::PlayTone(..))).collect()
}

/// The tones played to callers among the actions.
fn tones(actions: &[Action]) -> Vec<Action> {
    actions.iter().filter(|a| matches!(a, Action::PlayTone(..))).cloned().collect()
}

fn user(id: &str) -> Identifier {
    Identifier::user(id).unwrap()
}

/// Unix seconds of the tests' "now = 0".
const T0: u64 = 1_800_000_000;

fn door_behaviour() -> Behaviour {
    Behaviour {
        targets: vec![user("monitor")],
        door_code: Some(Secret::new("2468")),
        relay_pulse: ms(1500),
        max_code_attempts_per_minute: 3,
        admission: Admission {
            door_openers_called: Parties::of(vec![Party::Exactly(user("monitor"))]),
            ..Admission::default()
        },
        ..Behaviour::default()
    }
}

fn door() -> ApplianceLogic {
    let mut l = ApplianceLogic::new(door_behaviour());
    assert_eq!(drain(&mut l), vec![Action::Led(LedState::Fault)]);
    l.on_ready(true);
    assert_eq!(drain(&mut l), vec![Action::Led(LedState::Idle)]);
    l
}

/// The door's call to the monitor, answered.
fn connected(l: &mut ApplianceLogic, call: CallId) {
    l.on_outgoing_call(call);
    l.on_call_peer(call, user("monitor"));
    l.on_call_state(call, CallState::Connected);
    drain(l);
}

fn type_code(l: &mut ApplianceLogic, call: CallId, code: &str, now: Duration) {
    for d in code.chars() {
        l.on_dtmf(call, d, now, T0 + now.as_secs());
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
    l.on_incoming_call(call, &user("caller"), ms(0));
    assert_eq!(drain(&mut l), vec![Action::Led(LedState::Ringing), Action::Chime(true)]);
    assert_eq!(l.poll_timeout(), None, "no auto-answer configured");
    // A second call while this one rings: busy.
    l.on_incoming_call(CallId(2), &user("caller2"), ms(10));
    assert_eq!(drain(&mut l), vec![Action::Reject(CallId(2), 486)]);
    l.on_button(ButtonAction::HangUp);
    assert_eq!(drain(&mut l), vec![Action::Reject(call, 603)]);
    l.on_call_state(call, CallState::Disconnected);
    assert_eq!(drain(&mut l), vec![Action::Led(LedState::Idle), Action::Chime(false)]);
    // The call button answers a ringing call.
    l.on_incoming_call(CallId(3), &user("caller"), ms(100));
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
    let admission =
        Admission { auto_answer: Parties::of(vec![Party::Exactly(user("door-1"))]), ..Admission::default() };
    let mut l = ApplianceLogic::new(Behaviour { auto_answer_after: Some(ms(2000)), admission, ..Behaviour::default() });
    l.on_ready(true);
    drain(&mut l);
    l.on_incoming_call(CallId(5), &user("door-1"), ms(1000));
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
    assert!(acts(&mut l).is_empty());
    assert_eq!(l.wrong_codes, 1);
    // '*' clears what was typed.
    type_code(&mut l, call, "99*2468#", ms(200));
    assert_eq!(acts(&mut l), vec![Action::PulseRelay(ms(1500))]);
    assert_eq!(l.door_openings, 1);
    // A prefix or a longer code is wrong (constant-time comparison of the whole).
    type_code(&mut l, call, "246#", ms(300));
    assert!(acts(&mut l).is_empty());
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
    // Three wrong codes in one call end it, once the last wrong-code tone has played out at the far end.
    assert!(acts(&mut l).is_empty());
    let tone_end = ms(2000) + CallTone::WrongCode.duration() + TONE_PLAY_OUT;
    assert_eq!(l.poll_timeout(), Some(tone_end));
    l.handle_timeout(tone_end - ms(1));
    assert!(acts(&mut l).is_empty());
    l.handle_timeout(tone_end);
    assert_eq!(acts(&mut l), vec![Action::HangUp(call)], "three wrong codes in one call end it");
    // The right code, but over the limit: ignored.
    type_code(&mut l, call, "2468#", ms(5000));
    assert!(acts(&mut l).is_empty());
    assert_eq!(l.rate_limited, 1);
    // A minute after the first attempt, one more is allowed.
    type_code(&mut l, call, "2468#", ms(60_000));
    assert_eq!(acts(&mut l), vec![Action::PulseRelay(ms(1500))]);
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
    assert!(acts(&mut l).is_empty(), "the first half was forgotten");
    // A flood of digits stays bounded and never matches.
    type_code(&mut l, call, &"7".repeat(10_000), ms(6000));
    l.on_dtmf(call, '#', ms(6000), T0 + 6);
    assert!(acts(&mut l).is_empty());
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
    assert!(acts(&mut l).is_empty());
    assert_eq!((l.wrong_codes, l.door_openings), (1, 0));
    // The next entry starts afresh.
    type_code(&mut l, call, "2468#", ms(100));
    assert_eq!(acts(&mut l), vec![Action::PulseRelay(ms(1500))]);
    // '*' forgets an over-long entry.
    type_code(&mut l, call, &format!("{long}*2468#"), ms(200));
    assert_eq!(acts(&mut l), vec![Action::PulseRelay(ms(1500))]);
    assert_eq!((l.wrong_codes, l.door_openings), (1, 2));
}

#[test]
fn a_monitor_with_early_video_shows_a_ringing_call_but_not_a_busy_one() {
    let mut l = ApplianceLogic::new(Behaviour { early_video: true, ..Behaviour::default() });
    l.on_ready(true);
    drain(&mut l);
    let call = CallId(3);
    l.on_incoming_call(call, &user("caller"), ms(0));
    let actions = drain(&mut l);
    assert!(actions.contains(&Action::AnswerEarly(call)), "{actions:?}");
    assert!(!actions.contains(&Action::Answer(call)), "early media is not an answer");
    // A second call while busy is declined, not shown.
    l.on_incoming_call(CallId(4), &user("caller2"), ms(10));
    assert_eq!(drain(&mut l), vec![Action::Reject(CallId(4), 486)]);
    // Without the setting, a ringing call is not shown early.
    let mut plain = ApplianceLogic::new(Behaviour::default());
    plain.on_ready(true);
    drain(&mut plain);
    plain.on_incoming_call(call, &user("caller"), ms(0));
    assert!(!drain(&mut plain).contains(&Action::AnswerEarly(call)));
}

#[test]
fn a_caller_outside_the_admission_policy_is_refused_without_ringing() {
    let admission = Admission {
        callers: Parties::of(vec![Party::Exactly(user("door-1"))]),
        refuse_code: 403,
        ..Admission::default()
    };
    let mut l = ApplianceLogic::new(Behaviour { admission, ..Behaviour::default() });
    l.on_ready(true);
    drain(&mut l);
    l.on_incoming_call(CallId(1), &user("mallory"), ms(0));
    assert_eq!(drain(&mut l), vec![Action::Reject(CallId(1), 403)], "no LED, no chime");
    assert_eq!((l.refused_calls, l.current_call()), (1, None));
    l.on_incoming_call(CallId(2), &user("door-1"), ms(10));
    assert_eq!(drain(&mut l), vec![Action::Led(LedState::Ringing), Action::Chime(true)]);
}

#[test]
fn auto_answer_is_only_for_the_callers_the_policy_names() {
    let admission =
        Admission { auto_answer: Parties::of(vec![Party::Exactly(user("door-1"))]), ..Admission::default() };
    let mut l = ApplianceLogic::new(Behaviour { auto_answer_after: Some(ms(0)), admission, ..Behaviour::default() });
    l.on_ready(true);
    drain(&mut l);
    l.on_incoming_call(CallId(1), &user("stranger"), ms(0));
    drain(&mut l);
    assert_eq!(l.poll_timeout(), None, "a caller not named rings until someone answers");
    l.handle_timeout(ms(60_000));
    assert!(!drain(&mut l).contains(&Action::Answer(CallId(1))));
}

#[test]
fn a_door_code_from_a_party_not_allowed_to_open_never_pulses_the_relay() {
    let mut l = door();
    // A call in from the monitor: the monitor may open only in the door's own calls to it.
    let call = CallId(4);
    l.on_incoming_call(call, &user("monitor"), ms(0));
    l.on_call_state(call, CallState::Connected);
    drain(&mut l);
    type_code(&mut l, call, "2468#", ms(100));
    assert!(drain(&mut l).is_empty(), "not compared, not counted");
    assert_eq!((l.wrong_codes, l.door_openings), (0, 0));
    l.on_call_state(call, CallState::Disconnected);
    // The door's call answered by someone else than the monitor (a forked call picked up elsewhere).
    let call = CallId(5);
    l.on_outgoing_call(call);
    l.on_call_peer(call, user("someone-else"));
    l.on_call_state(call, CallState::Connected);
    drain(&mut l);
    type_code(&mut l, call, "2468#", ms(200));
    assert!(drain(&mut l).is_empty());
    assert_eq!(l.door_openings, 0);
}

#[test]
fn wrong_codes_lock_the_caller_out_with_growing_delays_that_survive_a_restart() {
    let mut l = door();
    let mut saved = None;
    // Three wrong codes are free (a minute apart: the rate limit is another matter); the fourth, at 183 s, locks
    // the monitor out for 60 s.
    for (n, call) in (0u64..4).map(|n| (n, CallId(100 + n))) {
        connected(&mut l, call);
        type_code(&mut l, call, "0000#", ms(n * 61_000));
        for a in drain(&mut l) {
            if let Action::SaveDoorGuard(state) = a {
                saved = Some(state);
            }
        }
        l.on_call_state(call, CallState::Disconnected);
        drain(&mut l);
    }
    let saved = saved.expect("every wrong code is kept");
    assert_eq!(saved.callers.get("monitor").map(|r| r.failures), Some(4));
    // The right code within the lockout is not even compared.
    let call = CallId(200);
    connected(&mut l, call);
    type_code(&mut l, call, "2468#", ms(200_000));
    assert!(acts(&mut l).is_empty());
    assert_eq!(l.locked_out, 1);
    // A restart: the kept state still locks the monitor out.
    let mut restarted = ApplianceLogic::new(door_behaviour());
    restarted.restore_door_guard(saved, T0 + 210);
    restarted.on_ready(true);
    drain(&mut restarted);
    connected(&mut restarted, call);
    type_code(&mut restarted, call, "2468#", ms(220_000));
    assert!(acts(&mut restarted).is_empty(), "still locked after the restart");
    // After the lockout the right code opens, and clears the count.
    type_code(&mut restarted, call, "2468#", ms(250_000));
    let actions = drain(&mut restarted);
    assert!(actions.contains(&Action::PulseRelay(ms(1500))), "{actions:?}");
    assert!(
        actions.iter().any(|a| matches!(a, Action::SaveDoorGuard(s) if s.callers.is_empty())),
        "the cleared count is kept"
    );
}

#[test]
fn every_code_that_does_not_open_plays_the_wrong_code_tone_to_the_caller() {
    let mut l = door();
    let call = CallId(9);
    connected(&mut l, call);
    let tone = vec![Action::PlayTone(call, CallTone::WrongCode)];
    // Wrong: the tone (with the kept count), no relay.
    type_code(&mut l, call, "1111#", ms(0));
    let actions = drain(&mut l);
    assert_eq!(tones(&actions), tone, "{actions:?}");
    assert!(!actions.contains(&Action::PulseRelay(ms(1500))));
    // Right: the relay, no tone.
    type_code(&mut l, call, "2468#", ms(100));
    let actions = drain(&mut l);
    assert!(tones(&actions).is_empty() && actions.contains(&Action::PulseRelay(ms(1500))), "{actions:?}");
    // Over the rate limit (3 a minute), even the right code: the same tone, so that the caller cannot tell.
    type_code(&mut l, call, "0000#", ms(200));
    drain(&mut l);
    type_code(&mut l, call, "2468#", ms(300));
    assert_eq!(tones(&drain(&mut l)), tone);
    assert_eq!(l.rate_limited, 1);
    // Digits from a party not allowed to open: not compared, no tone.
    let other = CallId(10);
    l.on_call_state(call, CallState::Disconnected);
    l.on_incoming_call(other, &user("stranger"), ms(400));
    l.on_call_state(other, CallState::Connected);
    drain(&mut l);
    type_code(&mut l, other, "1111#", ms(500));
    assert!(drain(&mut l).is_empty());
}

#[test]
fn a_lockout_is_an_operator_event_with_the_alert_led_for_a_while() {
    let guard = GuardPolicy { free_attempts: 1, ..GuardPolicy::default() };
    let mut l = ApplianceLogic::new(Behaviour { guard, ..door_behaviour() });
    l.on_ready(true);
    drain(&mut l);
    let call = CallId(9);
    connected(&mut l, call);
    // The free attempt: the tone, no alert.
    type_code(&mut l, call, "1111#", ms(1000));
    assert_eq!(acts(&mut l), vec![]);
    assert_eq!((l.lockouts, l.poll_timeout()), (0, Some(ms(6000))), "only the digit timeout");
    // The second wrong code locks the monitor out: the alert LED, the tone, and a deadline to end the alert.
    type_code(&mut l, call, "2222#", ms(2000));
    let actions = drain(&mut l);
    assert_eq!(tones(&actions), vec![Action::PlayTone(call, CallTone::WrongCode)], "{actions:?}");
    assert!(actions.contains(&Action::Led(LedState::Alert)), "{actions:?}");
    assert_eq!(l.lockouts, 1);
    // A locked-out attempt: the tone again, no new lockout, the alert goes on.
    type_code(&mut l, call, "2468#", ms(3000));
    assert_eq!(acts(&mut l), vec![]);
    assert_eq!((l.lockouts, l.locked_out), (1, 1));
    // Once the typed digits are forgotten, the alert's end is the next deadline.
    l.handle_timeout(ms(8000));
    assert!(drain(&mut l).is_empty());
    assert_eq!(l.poll_timeout(), Some(ms(2000) + ALERT_LED_FOR));
    // The alert ends after its time: the LED shows the call again.
    l.handle_timeout(ms(2000) + ALERT_LED_FOR - ms(1));
    assert!(!drain(&mut l).iter().any(|a| matches!(a, Action::Led(_))));
    l.handle_timeout(ms(2000) + ALERT_LED_FOR);
    assert_eq!(drain(&mut l), vec![Action::Led(LedState::InCall)]);
    assert_eq!(l.poll_timeout(), None);
    l.on_call_state(call, CallState::Disconnected);
    assert_eq!(drain(&mut l), vec![Action::Led(LedState::Idle)]);
}

#[test]
fn the_alert_led_is_a_configurable_state() {
    assert_eq!(LedState::Alert.as_str(), "alert");
    assert!(LedState::ALL.contains(&LedState::Alert));
}

mod properties;

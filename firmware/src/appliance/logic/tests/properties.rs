//! Properties of the appliance's behaviour over any sequence of events, driven by `callbox-fuzz`: each input is a
//! script (buttons, calls placed, answered and ended, callers, DTMF digits, time passing, the servers coming and
//! going, in any order and from any party), played into [`ApplianceLogic`] beside a small model of what the events
//! said. After every event:
//! - the relay fires only on a `#` in a call the events said is connected, from a party the policy lets open the
//!   door in that direction (the monitor we called, the concierge calling in), after the right code typed in that
//!   same call since its last `*` or `#`;
//! - the typed digits, the rate limit's window and the guard's callers stay within their bounds, and one event
//!   makes a bounded number of actions;
//! - the LED shows a fault whenever the servers are down, and the chime sounds only while a call rings.

use std::collections::HashMap;

use callbox_fuzz::fuzz;

use super::*;
use crate::appliance::logic::door_guard::MAX_CALLERS;

const CODE: &str = "2468";

fn behaviour() -> Behaviour {
    Behaviour {
        targets: vec![user("monitor")],
        door_code: Some(Secret::new(CODE)),
        relay_pulse: ms(1500),
        max_code_attempts_per_minute: 3,
        admission: Admission {
            callers: Parties::of(vec![Party::AnyUser, Party::NumberPrefix("+49".into())]),
            door_openers_called: Parties::of(vec![Party::Exactly(user("monitor"))]),
            door_openers_calling_in: Parties::of(vec![Party::Exactly(user("concierge"))]),
            ..Admission::default()
        },
        auto_answer_after: Some(ms(2000)),
        ..Behaviour::default()
    }
}

/// What the events said about one call.
#[derive(Debug, Default)]
struct CallModel {
    outgoing: bool,
    peer: Option<Identifier>,
    connected: bool,
    /// Digits typed in this call since its last `*` or `#` (a pause that makes the logic forget them is not
    /// modelled: the right code must end them).
    typed: String,
}

impl CallModel {
    fn may_open(&self) -> bool {
        match (&self.peer, self.outgoing) {
            (Some(p), true) => *p == user("monitor"),
            (Some(p), false) => *p == user("concierge"),
            (None, _) => false,
        }
    }
}

/// Reads a script from fuzzer bytes.
struct Script<'a> {
    bytes: &'a [u8],
}

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(*first)
    }
}

fn party(n: u8) -> Identifier {
    match n % 5 {
        0 => user("monitor"),
        1 => user("concierge"),
        2 => user("stranger"),
        3 => Identifier::phone("+4930123456", None).unwrap(),
        _ => Identifier::phone("+15551234567", None).unwrap(),
    }
}

/// Plays one script; panics when a property does not hold. Returns the relay pulses seen.
fn play(input: &[u8]) -> u32 {
    let mut logic = ApplianceLogic::new(behaviour());
    let mut script = Script { bytes: input };
    let mut calls: HashMap<CallId, CallModel> = HashMap::new();
    let mut next_call = 1u64;
    let mut now = Duration::ZERO;
    let mut ready = false;
    let mut pulses = 0;
    // A call the events name: one of the known ones, or one never seen (ids are never reused).
    let pick = |n: u8, calls: &HashMap<CallId, CallModel>, next_call: u64| -> CallId {
        let mut known: Vec<CallId> = calls.keys().copied().collect();
        known.sort();
        match known.get(usize::from(n) % (known.len() + 1)) {
            Some(id) => *id,
            None => CallId(next_call + 1000),
        }
    };
    while let Some(op) = script.byte() {
        let arg = script.byte().unwrap_or(0);
        let mut hash_in: Option<CallId> = None;
        match op % 10 {
            0 => logic.on_button(match arg % 4 {
                0 => ButtonAction::Call,
                1 => ButtonAction::HangUp,
                2 => ButtonAction::Mute,
                _ => ButtonAction::Video,
            }),
            1 => {
                let id = CallId(next_call);
                next_call += 1;
                calls.insert(id, CallModel { outgoing: true, ..CallModel::default() });
                logic.on_outgoing_call(id);
            }
            2 => {
                let id = CallId(next_call);
                next_call += 1;
                let from = party(arg);
                calls.insert(id, CallModel { outgoing: false, peer: Some(from.clone()), ..CallModel::default() });
                logic.on_incoming_call(id, &from, now);
            }
            3 => {
                let id = pick(arg, &calls, next_call);
                let peer = party(script.byte().unwrap_or(0));
                if let Some(c) = calls.get_mut(&id).filter(|c| c.outgoing) {
                    c.peer = Some(peer.clone());
                }
                logic.on_call_peer(id, peer);
            }
            4 => {
                let id = pick(arg, &calls, next_call);
                let state = match script.byte().unwrap_or(0) % 6 {
                    0 => CallState::Connected,
                    1 => CallState::Disconnected,
                    2 => CallState::Ringing,
                    3 => CallState::RemoteHold,
                    4 => CallState::EarlyMedia,
                    _ => CallState::Connecting,
                };
                match state {
                    CallState::Connected => {
                        if let Some(c) = calls.get_mut(&id) {
                            c.connected = true;
                        }
                    }
                    CallState::Disconnected => {
                        calls.remove(&id);
                    }
                    _ => {}
                }
                logic.on_call_state(id, state);
            }
            5..=7 => {
                // Digits, weighted toward the code's and the keys that end an entry.
                let id = pick(arg, &calls, next_call);
                let digit = b"2468#*0123456789#"[usize::from(script.byte().unwrap_or(0)) % 17] as char;
                if let Some(c) = calls.get_mut(&id) {
                    match digit {
                        '*' => c.typed.clear(),
                        // Checked below against the actions, then forgotten.
                        '#' => hash_in = Some(id),
                        d => c.typed.push(d),
                    }
                }
                logic.on_dtmf(id, digit, now, T0 + now.as_secs());
            }
            8 => {
                // Time passes: up to 25.5 s, or (rarely) up to 4 h; timeouts fire as the run loop would.
                let step = if arg >= 250 { Duration::from_secs(u64::from(arg) * 60) } else { ms(u64::from(arg) * 100) };
                let until = now + step;
                while let Some(t) = logic.poll_timeout().filter(|t| *t <= until) {
                    now = t.max(now);
                    logic.handle_timeout(now);
                }
                now = until;
                logic.handle_timeout(now);
            }
            _ => {
                if arg.is_multiple_of(3) {
                    ready = !ready;
                    logic.on_ready(ready);
                } else if let Some(call) = logic.current_call() {
                    logic.on_muted(call, arg & 2 == 0);
                    logic.on_video(call, arg & 4 == 0);
                }
            }
        }

        let actions: Vec<Action> = std::iter::from_fn(|| logic.poll_action()).collect();
        assert!(actions.len() <= 8, "one event made {} actions: {actions:?}", actions.len());
        for action in &actions {
            match action {
                Action::PulseRelay(_) => {
                    pulses += 1;
                    let id = hash_in.unwrap_or_else(|| panic!("the relay fired without a #: {actions:?}"));
                    let c = calls.get(&id).unwrap_or_else(|| panic!("the relay fired for {id}, a call not going on"));
                    assert!(c.connected, "the relay fired in {id}, not connected: {c:?}");
                    assert!(c.may_open(), "the relay fired for a party not allowed to open: {c:?}");
                    // Ends with: the logic also forgets digits after a pause, which the model does not.
                    assert!(c.typed.ends_with(CODE), "the relay fired for digits typed in {id} that are not the code");
                }
                Action::Chime(true) => {
                    let ringing = logic.current.as_ref().is_some_and(|c| c.incoming_ringing);
                    assert!(ringing, "the chime sounds with no call ringing");
                }
                _ => {}
            }
        }
        if let Some(id) = hash_in {
            if let Some(c) = calls.get_mut(&id) {
                c.typed.clear();
            }
        }
        if !ready {
            assert_eq!(logic.led, Some(LedState::Fault), "the servers are down but the LED says {:?}", logic.led);
        }
        assert!(logic.digits.len() <= MAX_DIGITS);
        assert!(logic.attempts.len() <= logic.behaviour.max_code_attempts_per_minute as usize);
        assert!(logic.guard.state().callers.len() <= MAX_CALLERS);
    }
    pulses
}

/// Seeds: the door's call to the monitor answered and the code typed (opens), the concierge calling in and
/// typing it (opens), a stranger typing it, and the code split across two calls (must not open).
fn seeds() -> Vec<Vec<u8>> {
    // [op, arg, ...]: 9/0 ready; 1 place; 3/0/0 peer monitor; 4/0/0 connected; 5/0/d digit (d: index in
    // "2468#*0123456789#": 0 '2', 1 '4', 2 '6', 3 '8', 4 '#', 5 '*').
    let code = |call: u8| -> Vec<u8> { [0u8, 1, 2, 3, 4].iter().flat_map(|d| [5, call, *d]).collect() };
    let mut out = Vec::new();
    let mut door = vec![9, 0, 1, 0, 3, 0, 0, 4, 0, 0];
    door.extend(code(0));
    out.push(door);
    let mut concierge = vec![9, 0, 2, 1, 4, 0, 0];
    concierge.extend(code(0));
    out.push(concierge);
    let mut stranger = vec![9, 0, 2, 2, 4, 0, 0];
    stranger.extend(code(0));
    out.push(stranger);
    // Two digits in the monitor's call, a second call placed while it goes on, the rest typed there.
    let mut split = vec![9, 0, 1, 0, 3, 0, 0, 4, 0, 0, 5, 0, 0, 5, 0, 1, 1, 0, 3, 1, 0, 4, 1, 0];
    split.extend([5, 1, 2, 5, 1, 3, 5, 1, 4]);
    out.push(split);
    out
}

#[test]
fn the_relay_fires_only_for_the_right_code_from_an_allowed_party_in_a_connected_call() {
    let seeds = seeds();
    assert_eq!(play(&seeds[0]), 1, "the monitor's code opens");
    assert_eq!(play(&seeds[1]), 1, "the concierge's code opens");
    assert_eq!(play(&seeds[2]), 0, "a stranger's does not");
    // Found by this test: digits of one call counted toward a code typed in the next.
    assert_eq!(play(&seeds[3]), 0, "a code split across two calls does not");
    let seeds: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
    fuzz("appliance::logic properties", &seeds, &[], |input| {
        play(input);
    });
}

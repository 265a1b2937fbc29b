//! Call admission and the door code's defence against guessing, against the real stack, checked at the far end
//! and at the door's relay: a caller outside the policy is refused with the configured code without ringing or
//! media; auto-answer and the door code are for the parties the policy names; a guesser is locked out with
//! growing delays that a restart does not reset, while a resident still gets in.

mod common;

use callbox::appliance::{Admission, Behaviour, GuardPolicy, GuardState, Parties, Party};
use callbox::calling::{CallState, Secret};
use callbox::client::{Call, CallClient};
use callbox_tests::appliance::RunningAppliance;
use callbox_tests::{Stack, StackOptions};
use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Long enough for the digits typed to reach the door (RFC 4733 events are paced, about 200 ms a digit) and a
/// pulse they caused to show: how long a "the relay stays still" check waits.
const DIGITS_ARRIVE: Duration = Duration::from_secs(4);

fn parties(ids: &[&str]) -> Parties {
    Parties::of(ids.iter().map(|id| Party::Exactly(user(id))).collect())
}

/// Calls the door from `client`, waits until the door has answered it on its own (both ends connected), types
/// `codes`.
async fn call_and_type(client: &CallClient, door: &RunningAppliance, codes: &[&str]) -> Call {
    let door_client = door.client(WAIT).await.expect("the door registers");
    let call = client.call(&[door_client.identity().clone()]).expect("call");
    let mut events = call.events();
    wait_state(&call, &mut events, CallState::Connected).await;
    // Digits go as RFC 4733 events in the media: typed once the door receives the caller's media (an event sent
    // before the path is up is lost, as a tone would be).
    eventually("the door receives the caller's media", || {
        door_client
            .calls()
            .iter()
            .any(|c| c.state() == CallState::Connected && c.media_stats().is_some_and(|s| s.audio_packets_received > 0))
    })
    .await;
    for code in codes {
        for d in code.chars() {
            call.send_dtmf(d).await.expect("dtmf");
        }
    }
    call
}

/// Ends `call` and waits until it is over.
async fn hang_up(call: Call) {
    let mut events = call.events();
    call.hang_up().await.expect("hang up");
    wait_state(&call, &mut events, CallState::Disconnected).await;
}

/// Waits until the digits typed have reached the door, then asserts its relay never moved (`why` if it did).
async fn assert_relay_still(outputs: &callbox::input::SimOutputs, why: &str) {
    tokio::time::sleep(DIGITS_ARRIVE).await;
    assert!(outputs.history("relay").is_empty(), "{why}");
}

/// The kept guard state of the door (what `$STATE_DIRECTORY/door-guard.json` holds).
fn kept(path: &Path) -> GuardState {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the guard state is kept")).expect("it reads back")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_admitted_callers_ring_and_only_named_parties_open_the_door() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let door = RunningAppliance::start(
        &stack,
        "door-a",
        client_config(&stack),
        Behaviour {
            door_code: Some(Secret::new(CODE)),
            relay_pulse: Duration::from_millis(300),
            auto_answer_after: Some(Duration::ZERO),
            admission: Admission {
                callers: parties(&["resident-a", "guest-a", "neighbour-a"]),
                refuse_code: 403,
                auto_answer: parties(&["resident-a", "guest-a"]),
                door_openers_calling_in: parties(&["resident-a"]),
                ..Admission::default()
            },
            ..Behaviour::default()
        },
        None,
    )
    .expect("sim buttons");
    door.client(WAIT).await.expect("the door registers");
    let outputs = door.outputs.clone();

    // A caller outside the policy: refused with the configured code, never rung, never answered, no media.
    let mallory = appliance(&stack, "mallory-a").await;
    let call = mallory.call(&[user("door-a")]).expect("call");
    let mut events = call.events();
    wait_state(&call, &mut events, CallState::Disconnected).await;
    assert_eq!(call.end_reason().map(|r| r.code), Some(403), "{:?}", call.end_reason());
    assert!(call.media_stats().is_none_or(|s| s.audio_packets_received == 0), "no media reached the refused caller");
    assert!(outputs.history("led_ringing").iter().all(|(_, on)| !on), "the door never rang");

    // An admitted caller not answered on its own: the door rings (and the caller hears it ringing).
    let neighbour = appliance(&stack, "neighbour-a").await;
    let call = neighbour.call(&[user("door-a")]).expect("call");
    let mut events = call.events();
    wait_state(&call, &mut events, CallState::Ringing).await;
    eventually("the door rings", || outputs.is_on("led_ringing")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(call.state(), CallState::Ringing, "not answered on its own");
    hang_up(call).await;

    // A guest answered on its own types the right code: not a party allowed to open, the relay stays still.
    let guest = appliance(&stack, "guest-a").await;
    let call = call_and_type(&guest, &door, &[&format!("{CODE}#")]).await;
    assert_relay_still(&outputs, "a code from a party not allowed to open never pulses the relay").await;
    hang_up(call).await;

    // The resident's code opens the door.
    let resident = appliance(&stack, "resident-a").await;
    let call = call_and_type(&resident, &door, &[&format!("{CODE}#")]).await;
    wait_pulses(&outputs, 1).await;
    hang_up(call).await;
    door.stop().await.expect("the door stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_guesser_is_locked_out_with_growing_delays_across_a_restart_and_a_resident_is_not() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let dir = std::env::temp_dir().join(format!("callbox-admission-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("state directory");
    let state: PathBuf = dir.join("door-guard.json");
    let _ = std::fs::remove_file(&state);
    let behaviour = || Behaviour {
        door_code: Some(Secret::new(CODE)),
        relay_pulse: Duration::from_millis(300),
        auto_answer_after: Some(Duration::ZERO),
        max_code_attempts_per_minute: 60,
        guard: GuardPolicy {
            free_attempts: 1,
            lockout_initial: Duration::from_secs(30),
            lockout_max: Duration::from_secs(3600),
            wrong_codes_per_call: 10,
        },
        admission: Admission {
            auto_answer: parties(&["guesser-g", "resident-g"]),
            door_openers_calling_in: parties(&["guesser-g", "resident-g"]),
            ..Admission::default()
        },
        ..Behaviour::default()
    };
    let start = |state: &PathBuf| {
        RunningAppliance::start_keeping(&stack, "door-g", client_config(&stack), behaviour(), None, Some(state.clone()))
            .expect("sim buttons")
    };
    let door = start(&state);
    door.client(WAIT).await.expect("the door registers");
    let outputs = door.outputs.clone();

    // One wrong code is free; the second locks the guesser out for 30 s, and the right code then is not compared.
    let guesser = appliance(&stack, "guesser-g").await;
    let call = call_and_type(&guesser, &door, &["1111#", "2222#", &format!("{CODE}#")]).await;
    eventually("both wrong codes are kept", || {
        std::fs::read_to_string(&state).is_ok_and(|t| t.contains("\"failures\":2"))
    })
    .await;
    assert_relay_still(&outputs, "the right code within the lockout does not open").await;
    let first = kept(&state).callers["guesser-g"];
    assert_eq!(first.locked_until - first.last_failure, 30);
    hang_up(call).await;

    // The door restarts: the lockout is still there.
    door.stop().await.expect("the door stops");
    let door = start(&state);
    let door_client = door.client(WAIT).await.expect("the door registers again");
    eventually("the door is ready again", || {
        door_client.connection_state() == callbox::calling::ConnectionState::Ready
    })
    .await;
    let outputs = door.outputs.clone();
    let call = call_and_type(&guesser, &door, &[&format!("{CODE}#")]).await;
    assert_relay_still(&outputs, "a restart does not lift the lockout").await;
    hang_up(call).await;

    // The resident is not locked out by the guesser.
    let resident = appliance(&stack, "resident-g").await;
    let call = call_and_type(&resident, &door, &[&format!("{CODE}#")]).await;
    wait_pulses(&outputs, 1).await;
    hang_up(call).await;

    // Once the lockout is over, the guesser's next wrong code locks it out twice as long.
    let wait = first.locked_until.saturating_sub(unix_now()) + 1;
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let call = call_and_type(&guesser, &door, &["3333#"]).await;
    eventually("the third wrong code is kept", || {
        std::fs::read_to_string(&state).is_ok_and(|t| t.contains("\"failures\":3"))
    })
    .await;
    let second = kept(&state).callers["guesser-g"];
    assert_eq!(second.locked_until - second.last_failure, 60, "the lockout doubled");
    hang_up(call).await;
    door.stop().await.expect("the door stops");
    let _ = std::fs::remove_dir_all(&dir);
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

//! The appliance's main loop (`callbox::appliance::run`) on simulated devices, against the real stack: a
//! scripted press of the front door's call button rings the indoor monitor, which answers on its own; the
//! mute, video and hang-up buttons act on the call and the monitor sees each; the door code typed as DTMF at
//! the monitor pulses the door's relay, wrong codes and attempts beyond the limit do not; the LEDs follow.

mod common;

use std::time::Duration;

use callbox::appliance::{Admission, Behaviour};
use callbox::calling::{CallState, ParticipantState, Secret};
use callbox::client::CallClient;
use callbox_tests::appliance::RunningAppliance;
use callbox_tests::{Stack, StackOptions};
use common::*;

const CODE: &str = "2468";

fn start(stack: &Stack, user: &str, behaviour: Behaviour) -> RunningAppliance {
    RunningAppliance::start(stack, user, client_config(stack), behaviour, None).expect("sim buttons")
}

async fn client(a: &RunningAppliance) -> CallClient {
    a.client(WAIT).await.expect("the appliance registers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_doorbell_button_calls_the_monitor_and_the_buttons_and_door_code_act() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let door = start(
        &stack,
        "front-door-x",
        Behaviour {
            targets: vec![user("monitor-x")],
            door_code: Some(Secret::new(CODE)),
            relay_pulse: Duration::from_millis(800),
            max_code_attempts_per_minute: 3,
            admission: Admission { door_openers_called: only("monitor-x"), ..Admission::default() },
            ..Behaviour::default()
        },
    );
    let monitor = RunningAppliance::start(
        &stack,
        "monitor-x",
        client_config(&stack),
        Behaviour {
            auto_answer_after: Some(Duration::from_millis(1500)),
            admission: Admission { auto_answer: only("front-door-x"), ..Admission::default() },
            ..Behaviour::default()
        },
        Some((800, 480)),
    )
    .expect("sim buttons");
    let (press, door_outputs) = (door.buttons.clone(), door.outputs.clone());
    let door_client = client(&door).await;
    let monitor_client = client(&monitor).await;
    eventually("the door's idle LED is on", || door_outputs.is_on("led_idle")).await;
    assert!(!door_outputs.is_on("led_fault"));

    // The doorbell: a call rings at the monitor, which answers on its own.
    press.press("call").expect("press");
    eventually("the door is in a call", || door_client.calls().len() == 1).await;
    let call = door_client.calls().remove(0);
    let mut call_events = call.events();
    // While it rings (the monitor answers after 1.5 s), the monitor's screen says who is calling.
    eventually("the monitor's screen shows the caller", || {
        monitor.handle.screen().and_then(|s| s.banner()).is_some_and(|b| b.contains("front-door-x"))
    })
    .await;
    wait_state(&call, &mut call_events, CallState::Connected).await;
    eventually("the monitor has the call", || monitor_client.calls().len() == 1).await;
    let monitor_screen = monitor.handle.screen().expect("the monitor's screen");
    let banner = || monitor_screen.banner().unwrap_or_default();
    let at_monitor = monitor_client.calls().remove(0);
    eventually("the monitor's call is connected", || at_monitor.state() == CallState::Connected).await;
    eventually("the door's in-call LED is on", || door_outputs.is_on("led_in_call")).await;
    let door_seen = at_monitor.remote_participants().remove(0);
    assert_video_advances(&at_monitor, "monitor").await;

    // Mute, video and their undoing are seen by the monitor.
    press.press("mute").expect("press");
    eventually("the monitor sees the door muted", || door_seen.is_muted()).await;
    eventually("the door's muted LED is on", || door_outputs.is_on("led_muted")).await;
    press.press("mute").expect("press");
    eventually("the monitor sees the door unmuted", || !door_seen.is_muted()).await;
    press.press("video").expect("press");
    eventually("the door's video is unavailable at the monitor", || {
        door_seen.video_streams().first().is_none_or(|s| !s.is_available())
    })
    .await;
    press.press("video").expect("press");
    eventually("the door's video is back", || door_seen.video_streams().first().is_some_and(|s| s.is_available()))
        .await;

    // The door code, typed at the monitor: the right one pulses the relay once, for about its length.
    for d in format!("{CODE}#").chars() {
        at_monitor.send_dtmf(d).await.expect("dtmf");
    }
    eventually("the relay pulsed", || door_outputs.pulses("relay").len() == 1).await;
    let pulse = door_outputs.pulses("relay")[0];
    assert!(pulse >= Duration::from_millis(700), "relay pulse {pulse:?}");
    // Wrong codes, then the right one beyond the limit of three attempts a minute: no more pulses.
    for code in ["1111#", "2222#", CODE] {
        for d in code.chars() {
            at_monitor.send_dtmf(d).await.expect("dtmf");
        }
    }
    at_monitor.send_dtmf('#').await.expect("dtmf");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(door_outputs.pulses("relay").len(), 1, "wrong codes and excess attempts must not open the door");
    assert!(!door_outputs.is_on("relay"));

    // The hang-up button ends the call on both sides.
    press.press("hang_up").expect("press");
    wait_state(&call, &mut call_events, CallState::Disconnected).await;
    eventually("the monitor sees the end", || door_seen.state() == ParticipantState::Disconnected).await;
    eventually("the door's idle LED is on again", || door_outputs.is_on("led_idle")).await;
    eventually("the monitor's screen says the call ended", || banner().starts_with("Call ended")).await;
    door.stop().await.expect("the door stops cleanly");
    monitor.stop().await.expect("the monitor stops cleanly");
}

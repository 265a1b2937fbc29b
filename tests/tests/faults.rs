//! Faults injected into the real stack (issue 16), each checked from the appliances' side and then by a call that
//! must work again, with the recovery time printed (`--nocapture`):
//! - Janus killed (SIGKILL) and started again while idle: both appliances build new sessions and register, and the
//!   next call connects with media;
//! - Janus killed mid-call: the call ends with a reason at both ends, both recover, the next call connects;
//! - Kamailio killed and started again (its registrations, in memory, are lost): the appliances register again on
//!   their next refresh (a 12 s registration here) without a restart of their own, and the next call connects.

mod common;

use std::time::{Duration, Instant};

use callbox::calling::{CallState, ConnectionState};
use callbox::client::{CallClient, ClientConfig};
use callbox_tests::{Stack, StackOptions};
use common::*;

/// How long an appliance may take to come back after a server restart; far above what it takes (printed).
const RECOVERY: Duration = Duration::from_secs(60);

/// Waits until `client` is registered again; returns how long that took since `since`.
async fn back(client: &CallClient, since: Instant, who: &str) -> Duration {
    back_within(client, since, who, RECOVERY).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn janus_killed_while_idle_the_appliances_come_back_and_the_next_call_works() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let door = appliance(&stack, "door-f1").await;
    let monitor = appliance(&stack, "monitor-f1").await;
    let mut door_events = door.events();
    let killed = Instant::now();
    stack.restart_janus().await.expect("Janus starts again");
    // The appliances notice the lost session (not Ready), then build a new one.
    tokio::time::timeout(WAIT, async {
        while door.connection_state() == ConnectionState::Ready {
            if door_events.next().await.is_none() {
                return;
            }
        }
    })
    .await
    .expect("the door notices Janus is gone");
    let (d, m) = (back(&door, killed, "the door").await, back(&monitor, killed, "the monitor").await);
    println!("Janus killed while idle: door back in {} ms, monitor in {} ms", d.as_millis(), m.as_millis());
    a_call_works(&door, &monitor, "monitor-f1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn janus_killed_mid_call_ends_the_call_with_a_reason_and_both_recover() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let door = appliance(&stack, "door-f2").await;
    let monitor = appliance(&stack, "monitor-f2").await;
    let (call, mut events, answered) = connected_call(&door, &monitor, "monitor-f2").await;
    let killed = Instant::now();
    stack.restart_janus().await.expect("Janus starts again");
    wait_state(&call, &mut events, CallState::Disconnected).await;
    let mut answered_events = answered.events();
    wait_state(&answered, &mut answered_events, CallState::Disconnected).await;
    let ended_in = killed.elapsed();
    let reason = call.end_reason().expect("the call ended with a reason");
    assert!(reason.code >= 400, "{reason:?}");
    assert!(answered.end_reason().is_some());
    let (d, m) = (back(&door, killed, "the door").await, back(&monitor, killed, "the monitor").await);
    println!(
        "Janus killed mid-call: the call ended in {} ms ({} {}), door back in {} ms, monitor in {} ms",
        ended_in.as_millis(),
        reason.code,
        reason.message,
        d.as_millis(),
        m.as_millis()
    );
    a_call_works(&door, &monitor, "monitor-f2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kamailio_restarted_registrations_come_back_without_restarting_the_appliances() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let short = |stack: &Stack| ClientConfig { register_ttl: Duration::from_secs(12), ..client_config(stack) };
    let door = appliance_with(&stack, "door-f3", short(&stack)).await;
    let monitor = appliance_with(&stack, "monitor-f3", short(&stack)).await;
    let restarted = Instant::now();
    stack.restart_kamailio().await.expect("Kamailio starts again");
    // Until the monitor registers again, calls to it fail (404 at the registrar); the next REGISTER refresh (at most
    // the 12 s registration) brings it back.
    let mut attempts = 0;
    loop {
        attempts += 1;
        for (client, who) in [(&door, "the door"), (&monitor, "the monitor")] {
            back(client, restarted, who).await;
        }
        let mut monitor_events = monitor.events();
        let call = door.call(&[user("monitor-f3")]).expect("call");
        let mut events = call.events();
        let rang = tokio::time::timeout(Duration::from_secs(3), next_incoming(&monitor, &mut monitor_events)).await;
        match rang {
            Ok(incoming) => {
                let _answered = incoming.accept().await.expect("accept");
                wait_state(&call, &mut events, CallState::Connected).await;
                call.hang_up().await.expect("hang up");
                break;
            }
            Err(_) => {
                let _ = call.hang_up().await;
                assert!(restarted.elapsed() < RECOVERY, "no call got through within {RECOVERY:?}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    println!(
        "Kamailio restarted: calls get through again after {} ms ({attempts} attempts)",
        restarted.elapsed().as_millis()
    );
    assert_eq!(door.connection_state(), ConnectionState::Ready);
}

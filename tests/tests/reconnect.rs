//! The Janus WebSocket dropped under a live call: the client reconnects with backoff, claims its session within
//! Janus's `reclaim_session_timeout`, and the call (whose media never went through the WebSocket) goes on; a Janus
//! that answers slowly holds up no more than the requests waiting for it.

mod common;

use callbox::calling::{subcode, CallState, ConnectionState, Delivery, Event};
use callbox_tests::{CuttableProxy, Stack, StackOptions};
use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_janus_connection_is_reclaimed_and_the_call_goes_on() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let janus = stack.janus_ws_url().trim_start_matches("ws://").parse().expect("Janus address");
    let proxy = CuttableProxy::start(janus).await.expect("proxy");
    let mut config = client_config(&stack);
    config.janus_urls = vec![proxy.ws_url()];
    let a = appliance_with(&stack, "door-r", config).await;
    let b = appliance(&stack, "monitor-r").await;
    let mut b_events = b.events();
    let call = a.call(&[user("monitor-r")]).expect("call");
    let b_call = next_incoming(&b, &mut b_events).await.accept().await.expect("accept");
    let mut a_call_events = call.events();
    wait_state(&call, &mut a_call_events, CallState::Connected).await;
    assert_video_advances(&b_call, "monitor").await;

    let mut a_events = a.events();
    assert_eq!(proxy.cut(), 1, "the appliance's one WebSocket is cut");
    let mut states = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(Delivery::Event(e)) = a_events.next().await {
            if let Event::ConnectionStateChanged { state } = e {
                states.push(state);
                if state == ConnectionState::Ready {
                    return;
                }
            }
        }
    })
    .await
    .expect("the appliance is back within the bound");
    assert_eq!(states, vec![ConnectionState::Reconnecting, ConnectionState::Ready]);

    // Same session, same call: media went on, and the call is still controlled through the new socket.
    assert_eq!(call.state(), CallState::Connected);
    assert_video_advances(&b_call, "monitor").await;
    assert_video_advances(&call, "door").await;
    let mut events = b_call.events();
    call.send_dtmf('5').await.expect("dtmf");
    let digit = tokio::time::timeout(WAIT, async {
        loop {
            match events.next_event().await {
                Some(Event::DtmfReceived { digit, .. }) => return digit,
                Some(_) => {}
                None => panic!("events ended"),
            }
        }
    })
    .await
    .expect("DTMF after the reconnect");
    assert_eq!(digit, '5');
    call.hang_up().await.expect("hang up");
    let mut b_call_events = b_call.events();
    wait_state(&b_call, &mut b_call_events, CallState::Disconnected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn while_a_lost_connection_is_rebuilt_shutdown_is_served() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let janus = stack.janus_ws_url().trim_start_matches("ws://").parse().expect("Janus address");
    let proxy = CuttableProxy::start(janus).await.expect("proxy");
    let mut config = client_config(&stack);
    config.janus_urls = vec![proxy.ws_url()];
    config.reclaim_window = std::time::Duration::from_secs(2);
    let door = appliance_with(&stack, "door-w", config).await;
    let monitor = appliance(&stack, "monitor-w").await;
    let mut monitor_events = monitor.events();
    let call = door.call(&[user("monitor-w")]).expect("call");
    let _monitor_call = next_incoming(&monitor, &mut monitor_events).await.accept().await.expect("accept");
    let mut call_events = call.events();
    wait_state(&call, &mut call_events, CallState::Connected).await;

    // The way to Janus stays closed: the session is lost (the call ends with it) and every attempt at a new one
    // fails, with backoff.
    proxy.hold_closed(true);
    assert_eq!(proxy.cut(), 1);
    wait_state(&call, &mut call_events, CallState::Disconnected).await;
    assert_eq!(call.end_reason().map(|r| r.subcode), Some(subcode::SIGNALING_LOST), "{:?}", call.end_reason());
    assert_eq!(door.connection_state(), ConnectionState::Reconnecting);
    assert!(door.call(&[user("monitor-w")]).is_err(), "no call is placed without a connection");

    // The engine is not stuck in its reconnect loop: it shuts down and says so.
    door.shutdown().await;
    assert_eq!(door.connection_state(), ConnectionState::Disconnected);
    monitor.shutdown().await;
}

/// A Janus that answers slowly holds up only the requests that wait for it, never the engine: A's hold request
/// waits for a stalled Janus while A mutes, and B (the far end) hears the silence at once; the held request then
/// completes. (With Janus requests awaited inside the engine's loop, the mute waited for the stall to end.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_janus_holds_up_neither_the_engine_nor_a_calls_media() {
    const STALL: Duration = Duration::from_secs(6);
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let janus = stack.janus_ws_url().trim_start_matches("ws://").parse().expect("Janus address");
    let proxy = CuttableProxy::start(janus).await.expect("proxy");
    let mut config = client_config(&stack);
    config.janus_urls = vec![proxy.ws_url()];
    let door = appliance_with(&stack, "door-s", config).await;
    let monitor = appliance(&stack, "monitor-s").await;
    let mut monitor_events = monitor.events();
    let call = door.call(&[user("monitor-s")]).expect("call");
    let monitor_call = next_incoming(&monitor, &mut monitor_events).await.accept().await.expect("accept");
    let mut call_events = call.events();
    wait_state(&call, &mut call_events, CallState::Connected).await;
    assert_audio_level(&monitor_call, "the monitor", -30.0).await;

    proxy.stall(true);
    let stalled_at = Instant::now();
    let holding = tokio::spawn({
        let call = call.clone();
        async move { call.hold().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    call.mute().await.expect("mute");
    let mut heard_silence = None;
    while stalled_at.elapsed() < STALL - Duration::from_secs(1) {
        let level = monitor_call.media_stats().map(|s| s.remote_audio_level_dbfs).unwrap_or(0.0);
        if level < -60.0 {
            heard_silence = Some(stalled_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let heard_silence = heard_silence.expect("the monitor hears the door's silence while Janus stalls");
    assert!(!holding.is_finished(), "the hold request waits for Janus");
    tokio::time::sleep(STALL.saturating_sub(stalled_at.elapsed())).await;
    proxy.stall(false);
    holding.await.expect("hold task").expect("hold completes once Janus answers");
    assert_eq!(call.state(), CallState::LocalHold);
    eprintln!("silence heard at the far end {} ms after the stall began", heard_silence.as_millis());
    call.hang_up().await.expect("hang up");
    door.shutdown().await;
    monitor.shutdown().await;
}

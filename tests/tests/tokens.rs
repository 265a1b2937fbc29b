//! Token credentials against the real stack: short-lived tokens refreshed and swapped into a live call, and the
//! failures: expired, forged, and a token endpoint that is down (then back).

mod common;

use callbox::calling::{Backoff, CallState, ConnectionState, RefreshPolicy, Secret, TokenError};
use callbox::client::{CallClient, ClientError, TokenCredential};
use callbox_tests::appliance::{endpoint_credential, provision_device};
use callbox_tests::{Stack, StackOptions};
use common::*;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_minute_long_call_survives_refreshes_of_15_second_tokens_without_media_gaps() {
    let stack = Stack::start(StackOptions { token_ttl: Duration::from_secs(15), ..StackOptions::default() })
        .await
        .expect("stack");
    let policy = RefreshPolicy { margin: Duration::from_secs(5), ..RefreshPolicy::default() };
    let (key_a, key_b) = (provision_device(&stack, "door-t"), provision_device(&stack, "monitor-t"));
    let (cred_a, fetches_a) = endpoint_credential(&stack, &key_a, policy);
    let (cred_b, fetches_b) = endpoint_credential(&stack, &key_b, policy);
    let a = CallClient::create(cred_a, client_config(&stack)).await.expect("A starts");
    let b = CallClient::create(cred_b, client_config(&stack)).await.expect("B starts");
    let mut b_events = b.events();
    let call = a.call(&[user("monitor-t")]).expect("call");
    let b_call = next_incoming(&b, &mut b_events).await.accept().await.expect("accept");
    let mut a_events = call.events();
    wait_state(&call, &mut a_events, CallState::Connected).await;
    assert_audio_level(&call, "A", -30.0).await;
    assert_audio_level(&b_call, "B", -30.0).await;
    let fetched_before = (fetches_a.load(Ordering::SeqCst), fetches_b.load(Ordering::SeqCst));

    tokio::time::sleep(Duration::from_secs(60)).await;

    let (fa, fb) = (fetches_a.load(Ordering::SeqCst), fetches_b.load(Ordering::SeqCst));
    assert!(fa >= fetched_before.0 + 3 && fb >= fetched_before.1 + 3, "refreshes during the call: A {fa}, B {fb}");
    assert_eq!(call.state(), CallState::Connected);
    assert_eq!(b_call.state(), CallState::Connected);
    for (who, c) in [("A", &call), ("B", &b_call)] {
        let s = c.media_stats().expect("media");
        assert!(s.max_audio_gap_ms <= 200, "{who}: longest audio gap {} ms", s.max_audio_gap_ms);
    }
    assert_video_advances(&call, "A").await;
    call.hang_up().await.expect("hang up");

    // The registrations stayed up with the refreshed credentials: B can still be called, and call back.
    assert_eq!(a.connection_state(), ConnectionState::Ready);
    let again = a.call(&[user("monitor-t")]).expect("second call");
    next_incoming(&b, &mut b_events).await.reject(486).await.expect("reject");
    let mut again_events = again.events();
    wait_state(&again, &mut again_events, CallState::Disconnected).await;
    assert_eq!(again.end_reason().map(|r| r.code), Some(486));
}

fn quick_retry(attempts: u32) -> RefreshPolicy {
    RefreshPolicy {
        retry: Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(400),
            max_attempts: Some(attempts),
        },
        ..RefreshPolicy::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_and_forged_tokens_are_refused_with_clear_errors() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");

    // A token that expired: refused before anything is sent, and the message never shows the token.
    let expired = stack.mint_token("door-e", Duration::ZERO);
    let cred = TokenCredential::from_static(&expired).expect("readable");
    let err = CallClient::create(cred, client_config(&stack)).await.err().expect("refused");
    assert!(matches!(err, ClientError::Token(TokenError::NoRefresher)), "{err}");
    assert!(!err.to_string().contains(&expired));

    // A token whose Janus grant was signed with the wrong secret: Janus answers 403.
    let genuine = stack.mint_token("door-f", Duration::from_secs(600));
    let forged = forge_janus_grant(&genuine);
    let cred = TokenCredential::from_static(&forged).expect("readable");
    let err = CallClient::create(cred, client_config(&stack)).await.err().expect("refused");
    assert!(matches!(&err, ClientError::Signaling(e) if e.is_unauthorized()), "{err}");
    assert!(!err.to_string().contains(&forged));
}

/// The same JWT with the signature of its Janus token altered.
fn forge_janus_grant(jwt: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = jwt.split('.').collect();
    let mut claims: serde_json::Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    let token = claims["grants"]["janus"]["token"].as_str().unwrap().to_string();
    let (data, _sig) = token.split_once(':').unwrap();
    claims["grants"]["janus"]["token"] = format!("{data}:AAAAAAAAAAAAAAAAAAAAAAAAAAA=").into();
    format!("{}.{}.{}", parts[0], b64.encode(claims.to_string()), parts[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_endpoint_outage_is_retried_with_backoff_and_survived() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let key = provision_device(&stack, "door-o");

    // Down for good: the client gives up after its bounded retries with the cause, and nothing crashed.
    stack.stop_token_service().await;
    let (cred, fetches) = endpoint_credential(&stack, &key, quick_retry(3));
    let err = CallClient::create(cred, client_config(&stack)).await.err().expect("no token, no client");
    assert!(matches!(err, ClientError::Token(TokenError::RefreshFailed(_))), "{err}");
    assert_eq!(fetches.load(Ordering::SeqCst), 3, "three attempts, then a clear error");

    // Down, then back while the client is retrying: it gets its token and starts.
    let (cred, fetches) = endpoint_credential(&stack, &key, quick_retry(30));
    let starting = tokio::spawn({
        let config = client_config(&stack);
        async move { CallClient::create(cred, config).await }
    });
    eventually("the client retries", || fetches.load(Ordering::SeqCst) >= 2).await;
    stack.start_token_service().await.expect("endpoint back");
    let client = tokio::time::timeout(WAIT, starting).await.expect("starts within the bound").expect("task");
    let client = client.expect("the client recovers once the endpoint is back");
    assert_eq!(client.connection_state(), ConnectionState::Ready);

    // A wrong device key is refused by the endpoint: a clear error, not a crash.
    let (cred, _) = endpoint_credential(&stack, &Secret::new("not-a-provisioned-key"), quick_retry(2));
    let err = CallClient::create(cred, client_config(&stack)).await.err().expect("refused");
    assert!(err.to_string().contains("401") || err.to_string().contains("refused"), "{err}");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalling_token_endpoint_freezes_neither_calling_nor_shutdown() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let key = provision_device(&stack, "door-s");
    let url = stack.token_url();
    let fetches = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = fetches.clone();
    // The first fetch gets a token; every later one is accepted by the endpoint and never answered.
    let stalling = TokenCredential::with_refresher(
        move || {
            let (url, key, n) = (url.clone(), key.clone(), counter.fetch_add(1, Ordering::SeqCst));
            async move {
                if n > 0 {
                    std::future::pending::<()>().await;
                }
                callbox_tokensvc::fetch_token(&url, &key, Duration::from_secs(5)).await.map_err(|e| e.to_string())
            }
        },
        // Due at once: the refresh is under way from the client's first moment.
        RefreshPolicy { margin: Duration::from_secs(3600), min_lifetime_fraction: 0.0, ..RefreshPolicy::default() },
    );
    let door = CallClient::create(stalling, client_config(&stack)).await.expect("door starts");
    let monitor = appliance(&stack, "monitor-s").await;
    let mut monitor_events = monitor.events();

    let call = door.call(&[user("monitor-s")]).expect("call placed");
    let monitor_call = next_incoming(&monitor, &mut monitor_events).await.accept().await.expect("accept");
    let mut call_events = call.events();
    wait_state(&call, &mut call_events, CallState::Connected).await;
    assert_eq!(fetches.load(Ordering::SeqCst), 2, "the refresh was under way (and stalled) during the call");
    // What the far end received: the door's video, decoded at the monitor.
    assert_video_advances(&monitor_call, "monitor").await;
    call.hang_up().await.expect("hang up");

    // Shutdown is served too: the engine unregisters and reports itself disconnected.
    door.shutdown().await;
    assert_eq!(door.connection_state(), ConnectionState::Disconnected);
    monitor.shutdown().await;
}

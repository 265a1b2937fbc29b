//! Smoke test of the development stack itself (run through `tests/netns-run`): Janus token auth over WebSocket,
//! SIP registration, calls through Kamailio between baresips, E.164 routing to the trunk, forged credentials.

use std::time::Duration;

use base64::Engine as _;
use callbox_tests::{BaresipEvent, BaresipOptions, Stack, StackOptions};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(20);

fn janus_grant(jwt: &str) -> String {
    let payload = jwt.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["grants"]["janus"]["token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Send a Janus `create` with `token` and return the reply.
async fn janus_create(url: &str, token: &str) -> serde_json::Value {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("janus-protocol"),
    );
    let (mut ws, resp) = tokio::time::timeout(T, tokio_tungstenite::connect_async(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "janus-protocol"
    );
    let msg = serde_json::json!({"janus": "create", "transaction": "tx-1", "token": token});
    ws.send(Message::text(msg.to_string())).await.unwrap();
    loop {
        let m = tokio::time::timeout(T, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["transaction"] == "tx-1" {
                return v;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janus_accepts_minted_tokens_and_refuses_forged_or_expired() {
    callbox_tests::init_logging();
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let url = stack.janus_ws_url();

    let good = janus_grant(&stack.mint_token("alice", Duration::from_secs(600)));
    let ok = janus_create(&url, &good).await;
    assert_eq!(ok["janus"], "success", "{ok}");
    assert!(ok["data"]["id"].as_u64().is_some(), "{ok}");

    // Same data, signature of another secret.
    let (data, _) = good.split_once(':').unwrap();
    let forged = callbox_tokensvc::janus_signed_token(
        &callbox_calling::Secret::new("not-the-secret"),
        data.split(',').next().unwrap().parse().unwrap(),
        &["janus.plugin.sip".into(), "janus.plugin.videoroom".into()],
    );
    assert_ne!(forged, good);
    let refused = janus_create(&url, &forged).await;
    assert_eq!(refused["janus"], "error", "{refused}");
    assert_eq!(refused["error"]["code"], 403, "{refused}");

    // Genuine signature, expiry in the past.
    let expired = callbox_tokensvc::janus_signed_token(
        &stack.secrets().janus_secret,
        callbox_tokensvc::token::now_unix() - 60,
        &["janus.plugin.sip".into()],
    );
    let refused = janus_create(&url, &expired).await;
    assert_eq!(refused["error"]["code"], 403, "{refused}");

    stack.check_health().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_calls_through_kamailio_and_forged_credentials_refused() {
    callbox_tests::init_logging();
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let result = async {
        let carol = stack
            .start_baresip(BaresipOptions::registered_user("carol"))
            .await?;
        let dave = stack
            .start_baresip(BaresipOptions::registered_user("dave"))
            .await?;
        let trunk = stack
            .start_baresip(BaresipOptions::pstn_trunk("+15551234567"))
            .await?;

        // dave -> carol through Kamailio: carol rings, answers, both see the call established.
        dave.dial(&format!("sip:carol@{}", stack.sip_domain()))
            .await?;
        let incoming = carol.wait_for(BaresipEvent::CallIncoming, T).await?;
        assert_eq!(
            incoming.peer_uri.as_deref(),
            Some(format!("sip:dave@{}", stack.sip_domain()).as_str())
        );
        dave.wait_for(BaresipEvent::CallRinging, T).await?;
        carol.accept().await?;
        dave.wait_for(BaresipEvent::CallEstablished, T).await?;
        carol.wait_for(BaresipEvent::CallEstablished, T).await?;
        dave.hangup().await?;
        dave.wait_for(BaresipEvent::CallClosed, T).await?;
        carol.wait_for(BaresipEvent::CallClosed, T).await?;

        // An E.164 number goes to the trunk, which answers.
        dave.dial(&format!("sip:+15551234567@{}", stack.sip_domain()))
            .await?;
        // (An auto-answering baresip reports no CALL_INCOMING, only CALL_ESTABLISHED.)
        trunk.wait_for(BaresipEvent::CallEstablished, T).await?;
        let est = dave.wait_for(BaresipEvent::CallEstablished, T).await?;
        assert!(
            est.peer_uri
                .as_deref()
                .unwrap_or("")
                .contains("+15551234567"),
            "{est:?}"
        );
        dave.hangup().await?;
        trunk.wait_for(BaresipEvent::CallClosed, T).await?;

        // A user that is not registered: 404 from Kamailio.
        dave.dial(&format!("sip:nobody@{}", stack.sip_domain()))
            .await?;
        let closed = dave.wait_for(BaresipEvent::CallClosed, T).await?;
        assert!(
            closed.param.as_deref().unwrap_or("").contains("404"),
            "{closed:?}"
        );

        // A forged password and another user's credential are both refused.
        let mallory = stack
            .start_baresip(BaresipOptions::registered_user("mallory").forged_password())
            .await?;
        let failed = mallory.wait_for(BaresipEvent::RegisterFailed, T).await?;
        assert!(
            failed.param.as_deref().unwrap_or("").contains("403"),
            "{failed:?}"
        );
        let eve = stack
            .start_baresip(BaresipOptions::registered_user("eve").credentials_of("carol"))
            .await?;
        let failed = eve.wait_for(BaresipEvent::RegisterFailed, T).await?;
        assert!(
            failed.param.as_deref().unwrap_or("").contains("403"),
            "{failed:?}"
        );
        stack.check_health()?;
        Ok::<_, callbox_tests::HarnessError>(())
    }
    .await;
    if let Err(e) = result {
        stack.dump_logs();
        panic!("{e}");
    }
}

#[tokio::test]
async fn token_endpoint_serves_device_keys_and_survives_an_outage() {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    stack.add_device("device-key-1", "alice");
    let key = callbox_calling::Secret::new("device-key-1");
    let jwt = callbox_tokensvc::fetch_token(&stack.token_url(), &key, T)
        .await
        .unwrap();
    assert!(janus_grant(&jwt).ends_with('='));
    stack.stop_token_service().await;
    assert!(callbox_tokensvc::fetch_token(&stack.token_url(), &key, T)
        .await
        .is_err());
    stack.start_token_service().await.unwrap();
    callbox_tokensvc::fetch_token(&stack.token_url(), &key, T)
        .await
        .unwrap();
}

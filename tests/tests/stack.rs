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
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["grants"]["janus"]["token"].as_str().unwrap().to_string()
}

/// Send a Janus `create` with `token` and return the reply.
async fn janus_create(url: &str, token: &str) -> serde_json::Value {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("janus-protocol"));
    let (mut ws, resp) = tokio::time::timeout(T, tokio_tungstenite::connect_async(req)).await.unwrap().unwrap();
    assert_eq!(resp.headers().get("sec-websocket-protocol").unwrap(), "janus-protocol");
    let msg = serde_json::json!({"janus": "create", "transaction": "tx-1", "token": token});
    ws.send(Message::text(msg.to_string())).await.unwrap();
    loop {
        let m = tokio::time::timeout(T, ws.next()).await.unwrap().unwrap().unwrap();
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

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn janus_connect(url: &str) -> Ws {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("janus-protocol"));
    tokio::time::timeout(T, tokio_tungstenite::connect_async(req)).await.unwrap().unwrap().0
}

/// Send `msg` and return the first message for which `pick` is true.
async fn janus_send_until(
    ws: &mut Ws,
    msg: serde_json::Value,
    pick: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    ws.send(Message::text(msg.to_string())).await.unwrap();
    loop {
        let m = tokio::time::timeout(T, ws.next()).await.expect("no answer from Janus").unwrap().unwrap();
        if let Message::Text(t) = m {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if pick(&v) {
                return v;
            }
        }
    }
}

/// A Janus session with one sip plugin handle.
struct SipHandle {
    ws: Ws,
    token: String,
    session: u64,
    handle: u64,
}

impl SipHandle {
    /// Send a sip plugin request and wait for the plugin event `pick` selects.
    async fn request(
        &mut self,
        tx: &str,
        body: serde_json::Value,
        pick: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let msg = serde_json::json!({"janus":"message","body":body,"transaction":tx,
            "token":self.token,"session_id":self.session,"handle_id":self.handle});
        janus_send_until(&mut self.ws, msg, |v| pick(&v["plugindata"]["data"])).await["plugindata"]["data"].clone()
    }

    /// Wait (without sending) for a plugin event `pick` selects.
    async fn next_event(&mut self, pick: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        loop {
            let m = tokio::time::timeout(T, self.ws.next()).await.expect("no event from Janus").unwrap().unwrap();
            if let Message::Text(t) = m {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if pick(&v["plugindata"]["data"]) {
                    return v["plugindata"]["data"].clone();
                }
            }
        }
    }
}

/// Register through Janus's sip plugin with `body`; returns the handle and the final register event.
async fn janus_sip_register(url: &str, token: &str, body: serde_json::Value) -> (SipHandle, serde_json::Value) {
    let mut ws = janus_connect(url).await;
    let created =
        janus_send_until(&mut ws, serde_json::json!({"janus":"create","transaction":"c","token":token}), |v| {
            v["transaction"] == "c"
        })
        .await;
    let session = created["data"]["id"].as_u64().unwrap();
    let attached = janus_send_until(
        &mut ws,
        serde_json::json!({"janus":"attach","plugin":"janus.plugin.sip","transaction":"a",
                           "token":token,"session_id":session}),
        |v| v["transaction"] == "a",
    )
    .await;
    let handle = attached["data"]["id"].as_u64().unwrap();
    let mut h = SipHandle { ws, token: token.to_string(), session, handle };
    let result = h
        .request("r", body, |d| {
            let e = &d["result"]["event"];
            e == "registered" || e == "registration_failed"
        })
        .await["result"]
        .clone();
    (h, result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janus_sip_plugin_registers_at_kamailio_with_ephemeral_credentials() {
    callbox_tests::init_logging();
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let token = stack.janus_token(Duration::from_secs(600));
    let reg = stack.janus_sip_registration("alice", Duration::from_secs(600)).unwrap();
    assert!(reg.authuser.as_deref().is_some_and(|a| a.ends_with("%3Aalice")));
    let (mut alice, ok) = janus_sip_register(&stack.janus_ws_url(), &token, reg.to_body()).await;
    if ok["event"] != "registered" {
        stack.dump_logs();
    }
    assert_eq!(ok["event"], "registered", "{ok}");
    assert_eq!(ok["register_sent"], true, "{ok}");

    // A wrong HA1 is refused by Kamailio (403).
    let mut bad = stack.janus_sip_registration("bob", Duration::from_secs(600)).unwrap();
    bad.ha1_secret = Some(callbox_calling::Secret::new("0123456789abcdef0123456789abcdef"));
    let (_, refused) = janus_sip_register(&stack.janus_ws_url(), &token, bad.to_body()).await;
    assert_eq!(refused["event"], "registration_failed", "{refused}");
    assert_eq!(refused["code"], 403, "{refused}");

    // SIP MESSAGE (authenticated with a 407 challenge) relayed by Kamailio to carol's registered contact.
    let carol_reg = stack.janus_sip_registration("carol", Duration::from_secs(600)).unwrap();
    let (mut carol, ok) = janus_sip_register(&stack.janus_ws_url(), &token, carol_reg.to_body()).await;
    assert_eq!(ok["event"], "registered", "{ok}");
    let invite = r#"{"type":"group-call","room":1234}"#;
    let sent = alice
        .request(
            "m",
            serde_json::json!({"request":"message","uri":format!("sip:carol@{}", stack.sip_domain()),
                               "content_type":"application/json","content":invite}),
            |d| {
                d["result"]["event"] == "messagesent"
                    || d["result"]["event"] == "messagedeliveryfailed"
                    || d.get("error").is_some()
            },
        )
        .await;
    assert_eq!(sent["result"]["event"], "messagesent", "{sent}");
    let got = carol.next_event(|d| d["result"]["event"] == "message").await;
    assert_eq!(got["result"]["content"], invite, "{got}");
    assert!(got["result"]["sender"].as_str().unwrap_or("").contains("alice"), "{got}");
    stack.check_health().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_calls_through_kamailio_and_forged_credentials_refused() {
    callbox_tests::init_logging();
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let result = async {
        let carol = stack.start_baresip(BaresipOptions::registered_user("carol")).await?;
        let dave = stack.start_baresip(BaresipOptions::registered_user("dave")).await?;
        let trunk = stack.start_baresip(BaresipOptions::pstn_trunk("+15551234567")).await?;

        // dave -> carol through Kamailio: carol rings, answers, both see the call established.
        dave.dial(&format!("sip:carol@{}", stack.sip_domain())).await?;
        let incoming = carol.wait_for(BaresipEvent::CallIncoming, T).await?;
        assert_eq!(incoming.peer_uri.as_deref(), Some(format!("sip:dave@{}", stack.sip_domain()).as_str()));
        dave.wait_for(BaresipEvent::CallRinging, T).await?;
        carol.accept().await?;
        dave.wait_for(BaresipEvent::CallEstablished, T).await?;
        carol.wait_for(BaresipEvent::CallEstablished, T).await?;
        dave.hangup().await?;
        dave.wait_for(BaresipEvent::CallClosed, T).await?;
        carol.wait_for(BaresipEvent::CallClosed, T).await?;

        // An E.164 number goes to the trunk, which answers.
        dave.dial(&format!("sip:+15551234567@{}", stack.sip_domain())).await?;
        // (An auto-answering baresip reports no CALL_INCOMING, only CALL_ESTABLISHED.)
        trunk.wait_for(BaresipEvent::CallEstablished, T).await?;
        let est = dave.wait_for(BaresipEvent::CallEstablished, T).await?;
        assert!(est.peer_uri.as_deref().unwrap_or("").contains("+15551234567"), "{est:?}");
        dave.hangup().await?;
        dave.wait_for(BaresipEvent::CallClosed, T).await?;
        trunk.wait_for(BaresipEvent::CallClosed, T).await?;

        // A user that is not registered: 404 from Kamailio.
        dave.dial(&format!("sip:nobody@{}", stack.sip_domain())).await?;
        let closed = dave.wait_for(BaresipEvent::CallClosed, T).await?;
        assert!(closed.param.as_deref().unwrap_or("").contains("404"), "{closed:?}");

        // The trunk (trusted by address, no credentials) calls in to carol.
        trunk.dial(&format!("sip:carol@{}", stack.sip_domain())).await?;
        carol.wait_for(BaresipEvent::CallIncoming, T).await?;
        carol.accept().await?;
        trunk.wait_for(BaresipEvent::CallEstablished, T).await?;
        carol.hangup().await?;
        carol.wait_for(BaresipEvent::CallClosed, T).await?;
        trunk.wait_for(BaresipEvent::CallClosed, T).await?;

        // Forking: a second device of carol; both ring, the one that answers gets the call, the other stops.
        let carol2 = stack.start_baresip(BaresipOptions::registered_user("carol")).await?;
        dave.dial(&format!("sip:carol@{}", stack.sip_domain())).await?;
        carol.wait_for(BaresipEvent::CallIncoming, T).await?;
        carol2.wait_for(BaresipEvent::CallIncoming, T).await?;
        carol2.accept().await?;
        dave.wait_for(BaresipEvent::CallEstablished, T).await?;
        carol.wait_for(BaresipEvent::CallClosed, T).await?;
        dave.hangup().await?;
        carol2.wait_for(BaresipEvent::CallClosed, T).await?;
        dave.wait_for(BaresipEvent::CallClosed, T).await?;

        // A forged password and another user's credential are both refused.
        let mallory = stack.start_baresip(BaresipOptions::registered_user("mallory").forged_password()).await?;
        let failed = mallory.wait_for(BaresipEvent::RegisterFailed, T).await?;
        assert!(failed.param.as_deref().unwrap_or("").contains("403"), "{failed:?}");
        let eve = stack.start_baresip(BaresipOptions::registered_user("eve").credentials_of("carol")).await?;
        let failed = eve.wait_for(BaresipEvent::RegisterFailed, T).await?;
        assert!(failed.param.as_deref().unwrap_or("").contains("403"), "{failed:?}");
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
    let jwt = callbox_tokensvc::fetch_token(&stack.token_url(), &key, T).await.unwrap();
    assert!(janus_grant(&jwt).ends_with('='));
    stack.stop_token_service().await;
    assert!(callbox_tokensvc::fetch_token(&stack.token_url(), &key, T).await.is_err());
    stack.start_token_service().await.unwrap();
    callbox_tokensvc::fetch_token(&stack.token_url(), &key, T).await.unwrap();
}

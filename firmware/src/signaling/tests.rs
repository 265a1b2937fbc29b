//! Tests of the signaling client against an in-process scripted Janus (tokio-tungstenite server on
//! 127.0.0.1:0, or an in-memory duplex for paused-time tests), plus pure tests of the SIP types.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callbox_calling::Secret;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use super::janus::{BoxedTransport, Connector};
use super::*;

const SESSION: u64 = 1234;
const HANDLE: u64 = 77;

#[derive(Default)]
struct State {
    tokens: HashSet<String>,
    sessions: HashSet<u64>,
    log: Vec<Value>,
    /// Forget sessions when a connection drops (claim then fails with 458).
    forget_on_drop: bool,
    keepalive_times: Vec<tokio::time::Instant>,
}

type Shared = Arc<Mutex<State>>;

fn state(tokens: &[&str]) -> Shared {
    Arc::new(Mutex::new(State { tokens: tokens.iter().map(|t| t.to_string()).collect(), ..State::default() }))
}

fn success(txn: &Value, data: Value) -> String {
    json!({"janus": "success", "transaction": txn, "session_id": SESSION, "data": data}).to_string()
}

fn plugin_event(txn: Option<&Value>, data: Value) -> String {
    let mut ev = json!({"janus": "event", "session_id": SESSION, "sender": HANDLE,
        "plugindata": {"plugin": "janus.plugin.sip", "data": data}});
    if let Some(t) = txn {
        ev["transaction"] = t.clone();
    }
    ev.to_string()
}

enum Action {
    Reply(Vec<String>),
    Drop,
}

fn respond(st: &Shared, req: &Value) -> Action {
    let mut s = st.lock().unwrap();
    s.log.push(req.clone());
    let txn = req.get("transaction").cloned().unwrap_or(Value::Null);
    let janus = req.get("janus").and_then(Value::as_str).unwrap_or("");
    let token = req.get("token").and_then(Value::as_str).unwrap_or("");
    if !s.tokens.contains(token) {
        return Action::Reply(vec![json!({"janus": "error", "transaction": txn,
            "error": {"code": 403, "reason": "Unauthorized request (wrong or missing secret/token)"}})
        .to_string()]);
    }
    let session_known = req.get("session_id").and_then(Value::as_u64).is_some_and(|id| s.sessions.contains(&id));
    if janus != "create" && !session_known {
        return Action::Reply(vec![json!({"janus": "error", "transaction": txn,
            "error": {"code": 458, "reason": "No such session"}})
        .to_string()]);
    }
    let ack = json!({"janus": "ack", "session_id": SESSION, "transaction": txn}).to_string();
    match janus {
        "create" => {
            s.sessions.insert(SESSION);
            Action::Reply(vec![success(&txn, json!({"id": SESSION}))])
        }
        "keepalive" => {
            s.keepalive_times.push(tokio::time::Instant::now());
            Action::Reply(vec![ack])
        }
        "claim" => Action::Reply(vec![success(&txn, Value::Null)]),
        "attach" => Action::Reply(vec![success(&txn, json!({"id": HANDLE}))]),
        "detach" | "hangup" => Action::Reply(vec![success(&txn, Value::Null)]),
        "destroy" => {
            s.sessions.remove(&SESSION);
            Action::Reply(vec![success(&txn, Value::Null)])
        }
        "message" => {
            let request = req.pointer("/body/request").and_then(Value::as_str).unwrap_or("");
            match request {
                "sync" => Action::Reply(vec![json!({"janus": "success", "transaction": txn,
                    "session_id": SESSION, "sender": HANDLE,
                    "plugindata": {"plugin": "janus.plugin.x", "data": {"ok": true}}})
                .to_string()]),
                "call" => Action::Reply(vec![
                    ack,
                    plugin_event(Some(&txn), json!({"sip": "event", "call_id": "c1", "result": {"event": "calling"}})),
                    // Later events of the call reuse the call's transaction (janus_sip does this).
                    plugin_event(Some(&txn), json!({"sip": "event", "call_id": "c1", "result": {"event": "ringing"}})),
                ]),
                "silent" => Action::Reply(vec![ack]),
                "hold" => Action::Reply(vec![
                    ack,
                    plugin_event(
                        Some(&txn),
                        json!({"sip": "event", "error_code": 447, "error": "Wrong state (not in a call?)"}),
                    ),
                ]),
                "push" => Action::Reply(vec![
                    "garbage{".into(),
                    "[1,2]".into(),
                    json!({"janus": "mystery", "foo": 1}).to_string(),
                    json!({"janus": "event", "sender": 999, "plugindata": {"data": {}}}).to_string(),
                    plugin_event(
                        None,
                        json!({"sip": "event", "call_id": "c2", "result": {"event": "incomingcall",
                        "username": "sip:bob@x"}}),
                    ),
                    json!({"janus": "webrtcup", "session_id": SESSION, "sender": HANDLE}).to_string(),
                    json!({"janus": "media", "session_id": SESSION, "sender": HANDLE, "mid": "0",
                        "type": "audio", "receiving": true})
                    .to_string(),
                    json!({"janus": "success", "transaction": txn, "session_id": SESSION, "sender": HANDLE,
                        "plugindata": {"plugin": "janus.plugin.x", "data": {"pushed": true}}})
                    .to_string(),
                ]),
                "drop_me" => {
                    if s.forget_on_drop {
                        s.sessions.clear();
                    }
                    Action::Drop
                }
                _ => Action::Reply(vec![ack]),
            }
        }
        _ => Action::Reply(vec![json!({"janus": "error", "transaction": txn,
            "error": {"code": 453, "reason": "Unknown request"}})
        .to_string()]),
    }
}

#[allow(clippy::result_large_err)] // the handshake callback's error type is tungstenite's
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(io: S, st: Shared) {
    let callback = |req: &Request, mut resp: Response| {
        let asked = req.headers().get("Sec-WebSocket-Protocol").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(asked, "janus-protocol");
        resp.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("janus-protocol"));
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(io, callback).await else { return };
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let req: Value = serde_json::from_str(text.as_str()).unwrap();
        match respond(&st, &req) {
            Action::Reply(replies) => {
                for r in replies {
                    if ws.send(Message::text(r)).await.is_err() {
                        return;
                    }
                }
            }
            Action::Drop => return,
        }
    }
}

/// A fake Janus on 127.0.0.1:0; returns its ws:// URL.
async fn start_server(st: Shared) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve(tcp, st.clone()));
        }
    });
    format!("ws://{addr}/janus")
}

/// An in-memory connector: each connection gets a fresh fake Janus task on a duplex pipe.
fn duplex_connector(st: Shared) -> Connector {
    Arc::new(move |url: String| {
        let st = st.clone();
        Box::pin(async move {
            let (client_io, server_io) = tokio::io::duplex(64 * 1024);
            tokio::spawn(serve(server_io, st));
            let mut request =
                tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).unwrap();
            request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("janus-protocol"));
            let (ws, _) = tokio_tungstenite::client_async(request, client_io)
                .await
                .map_err(|e| SignalingError::Connect { url, reason: e.to_string() })?;
            Ok(Box::new(ws) as BoxedTransport)
        })
    })
}

fn config(urls: Vec<String>, token: &str) -> JanusConfig {
    let mut c = JanusConfig::new(urls, Secret::new(token));
    c.backoff_min = Duration::from_millis(10);
    c.backoff_max = Duration::from_millis(100);
    c
}

/// Waits (bounded, only to avoid hanging) for a connection event matching `pred`.
async fn wait_event(
    rx: &mut mpsc::Receiver<ConnectionEvent>,
    pred: impl Fn(&ConnectionEvent) -> bool,
) -> ConnectionEvent {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let ev = rx.recv().await.expect("connection events ended");
            if pred(&ev) {
                return ev;
            }
        }
    })
    .await
    .expect("connection event not seen")
}

async fn next_handle_event(rx: &mut mpsc::Receiver<HandleEvent>) -> HandleEvent {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("no handle event")
        .expect("handle events ended")
}

#[tokio::test]
async fn creates_session_attaches_and_matches_transactions() {
    let st = state(&["t1"]);
    let url = start_server(st.clone()).await;
    let (session, mut events) = JanusSession::connect(config(vec![url.clone()], "t1")).await.unwrap();
    assert_eq!(session.session_id(), SESSION);
    assert_eq!(wait_event(&mut events, |_| true).await, ConnectionEvent::Connected { url, session_id: SESSION });
    let (handle, _handle_events) = session.attach("janus.plugin.sip").await.unwrap();
    assert_eq!(handle.id(), HANDLE);

    // Synchronous plugin answer.
    let reply = handle.message(json!({"request": "sync"}), None).await.unwrap();
    assert!(reply.synchronous);
    assert_eq!(reply.data, json!({"ok": true}));

    // ack then event with the same transaction: the first event answers; the next goes to the stream.
    // (The fake server gives every handle the same id, so this attach takes over the event routing.)
    let (sip, mut sip_events) = SipHandle::attach(&session).await.unwrap();
    let answer = sip.call("sip:bob@example.org", "v=0\r\n").await.unwrap();
    assert_eq!(answer, SipEvent::Calling { call_id: Some("c1".into()) });
    let ringing = tokio::time::timeout(Duration::from_secs(20), sip_events.recv()).await.unwrap();
    assert_eq!(ringing, Some(SipEvent::Ringing { call_id: Some("c1".into()) }));

    // Every request carried session, handle, token and a transaction; the call carried its offer.
    let log = st.lock().unwrap().log.clone();
    let call = log.iter().find(|r| r.pointer("/body/request") == Some(&json!("call"))).unwrap();
    assert_eq!(call["session_id"], SESSION);
    assert_eq!(call["handle_id"], HANDLE);
    assert_eq!(call["token"], "t1");
    assert_eq!(call["jsep"]["type"], "offer");
    assert_eq!(call["body"]["uri"], "sip:bob@example.org");
    let txns: HashSet<&str> = log.iter().filter_map(|r| r["transaction"].as_str()).collect();
    assert_eq!(txns.len(), log.len(), "transaction ids must be unique");

    // A plugin error event becomes a typed error.
    let err = sip.hold().await.unwrap_err();
    assert!(matches!(err, SignalingError::Plugin { code: 447, .. }), "{err}");

    session.destroy().await.unwrap();
    assert!(st.lock().unwrap().sessions.is_empty());
    let after = handle.message(json!({"request": "sync"}), None).await.unwrap_err();
    assert!(matches!(after, SignalingError::Closed), "{after}");
}

#[tokio::test]
async fn malformed_and_unexpected_messages_are_skipped() {
    let st = state(&["t1"]);
    let url = start_server(st.clone()).await;
    let (session, _events) = JanusSession::connect(config(vec![url], "t1")).await.unwrap();
    let (handle, rx) = session.attach("janus.plugin.sip").await.unwrap();
    let reply = handle.message(json!({"request": "push"}), None).await.unwrap();
    assert_eq!(reply.data, json!({"pushed": true}));
    let mut sip = SipEvents::new(rx);
    let first = tokio::time::timeout(Duration::from_secs(20), sip.recv()).await.unwrap().unwrap();
    assert!(matches!(first, SipEvent::IncomingCall { ref username, .. } if username == "sip:bob@x"), "{first:?}");
    let second = tokio::time::timeout(Duration::from_secs(20), sip.recv()).await.unwrap().unwrap();
    assert_eq!(second, SipEvent::WebrtcUp);
    let third = tokio::time::timeout(Duration::from_secs(20), sip.recv()).await.unwrap().unwrap();
    assert_eq!(third, SipEvent::Media { mid: Some("0".into()), kind: "audio".into(), receiving: true });
    // The session still works.
    assert!(handle.message(json!({"request": "sync"}), None).await.is_ok());
}

#[tokio::test]
async fn token_swap_is_used_by_every_later_request() {
    let st = state(&["t1"]);
    let url = start_server(st.clone()).await;
    let (session, mut events) = JanusSession::connect(config(vec![url], "t1")).await.unwrap();
    let (handle, _rx) = session.attach("janus.plugin.sip").await.unwrap();
    // t1 expires on the server.
    st.lock().unwrap().tokens = ["t2".to_string()].into_iter().collect();
    let err = handle.message(json!({"request": "sync"}), None).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    assert!(matches!(
        wait_event(&mut events, |e| matches!(e, ConnectionEvent::Unauthorized { .. })).await,
        ConnectionEvent::Unauthorized { .. }
    ));
    session.set_token(Secret::new("t2"));
    handle.message(json!({"request": "sync"}), None).await.unwrap();
    let log = st.lock().unwrap().log.clone();
    assert_eq!(log.last().unwrap()["token"], "t2");
}

#[tokio::test]
async fn expired_token_at_create_is_unauthorized() {
    let st = state(&["good"]);
    let url = start_server(st).await;
    let err = JanusSession::connect(config(vec![url], "expired")).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
}

#[tokio::test]
async fn fails_over_to_the_second_url() {
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("ws://{}/janus", dead.local_addr().unwrap());
    drop(dead);
    let st = state(&["t1"]);
    let url = start_server(st).await;
    let (session, mut events) = JanusSession::connect(config(vec![dead_url, url.clone()], "t1")).await.unwrap();
    assert_eq!(session.url(), url);
    assert_eq!(wait_event(&mut events, |_| true).await, ConnectionEvent::Connected { url, session_id: SESSION });
}

#[tokio::test]
async fn all_urls_dead_is_an_error() {
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("ws://{}/janus", dead.local_addr().unwrap());
    drop(dead);
    let err = JanusSession::connect(config(vec![dead_url], "t1")).await.unwrap_err();
    assert!(matches!(err, SignalingError::AllServersFailed { tried: 1, .. }), "{err}");
}

#[tokio::test]
async fn reconnects_and_claims_the_session_after_a_drop() {
    let st = state(&["t1"]);
    let url = start_server(st.clone()).await;
    let (session, mut events) = JanusSession::connect(config(vec![url.clone()], "t1")).await.unwrap();
    let (handle, mut rx) = session.attach("janus.plugin.sip").await.unwrap();
    let err = handle.message(json!({"request": "drop_me"}), None).await.unwrap_err();
    assert!(matches!(err, SignalingError::Disconnected { .. }), "{err}");
    wait_event(&mut events, |e| matches!(e, ConnectionEvent::Reconnecting { .. })).await;
    assert_eq!(
        wait_event(&mut events, |e| matches!(e, ConnectionEvent::Reclaimed { .. })).await,
        ConnectionEvent::Reclaimed { url, session_id: SESSION }
    );
    let claim = st.lock().unwrap().log.iter().find(|r| r["janus"] == "claim").cloned().unwrap();
    assert_eq!(claim["session_id"], SESSION);
    assert_eq!(claim["token"], "t1");
    // The handle survived: requests and its events work on the new socket.
    handle.message(json!({"request": "push"}), None).await.unwrap();
    assert!(matches!(next_handle_event(&mut rx).await, HandleEvent::Plugin { .. }));
}

#[tokio::test]
async fn failed_claim_reports_session_lost() {
    let st = state(&["t1"]);
    st.lock().unwrap().forget_on_drop = true;
    let url = start_server(st.clone()).await;
    let (session, mut events) = JanusSession::connect(config(vec![url], "t1")).await.unwrap();
    let (handle, mut rx) = session.attach("janus.plugin.sip").await.unwrap();
    let _ = handle.message(json!({"request": "drop_me"}), None).await;
    assert!(matches!(
        wait_event(&mut events, |e| matches!(e, ConnectionEvent::Lost { .. })).await,
        ConnectionEvent::Lost { .. }
    ));
    let err = handle.message(json!({"request": "sync"}), None).await.unwrap_err();
    assert!(err.is_session_lost(), "{err}");
    // The handle's stream ends.
    let end = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.unwrap();
    assert!(end.is_none());
}

#[tokio::test(start_paused = true)]
async fn keepalives_every_interval_and_requests_time_out() {
    let st = state(&["t1"]);
    let mut cfg = config(vec!["ws://fake/janus".into()], "t1");
    cfg.keepalive_interval = Duration::from_secs(15);
    cfg.request_timeout = Duration::from_secs(10);
    let (session, _events) = JanusSession::connect_with(cfg, duplex_connector(st.clone())).await.unwrap();
    let start = tokio::time::Instant::now();
    let (handle, _rx) = session.attach("janus.plugin.sip").await.unwrap();

    // A message the plugin only acks times out at request_timeout (virtual time).
    let err = handle.message(json!({"request": "silent"}), None).await.unwrap_err();
    assert!(matches!(err, SignalingError::Timeout { .. }), "{err}");
    let waited = tokio::time::Instant::now() - start;
    assert!(waited >= Duration::from_secs(10) && waited < Duration::from_secs(12), "{waited:?}");

    tokio::time::sleep(Duration::from_secs(61)).await;
    let times = st.lock().unwrap().keepalive_times.clone();
    assert!(times.len() >= 4, "only {} keepalives in 71 s", times.len());
    let mut prev = start;
    for t in times {
        let gap = t - prev;
        assert!(gap >= Duration::from_secs(14) && gap <= Duration::from_secs(16), "gap {gap:?}");
        prev = t;
    }
    // The session is still usable after a minute of keepalives.
    assert!(handle.message(json!({"request": "sync"}), None).await.is_ok());
}

#[test]
fn backoff_grows_with_jitter_and_is_bounded() {
    let min = Duration::from_millis(100);
    let max = Duration::from_secs(2);
    for attempt in 1..40 {
        let d = janus::backoff_delay(attempt, min, max);
        let base = (min * 2u32.pow((attempt - 1).min(10))).min(max);
        assert!(d >= base / 2 && d <= base, "attempt {attempt}: {d:?} not in [{:?}, {base:?}]", base / 2);
    }
}

#[test]
fn sip_registration_from_ephemeral_grant() {
    let creds = SipCredentials {
        uri: "sip:alice@callbox".into(),
        username: "1700000000:alice".into(),
        password: Secret::new("pw123"),
        realm: "callbox".into(),
        proxy: "sip:127.0.0.1:5060".into(),
    };
    let reg = creds.registration(60).unwrap();
    let body = reg.to_body();
    assert_eq!(body["request"], "register");
    assert_eq!(body["username"], "sip:alice@callbox");
    assert_eq!(body["authuser"], "1700000000%3Aalice");
    assert_eq!(body["ha1_secret"], "0f04ea0e2fcdc734013afb9d0afed78b");
    assert_eq!(body["proxy"], "sip:127.0.0.1:5060");
    assert_eq!(body["outbound_proxy"], "sip:127.0.0.1:5060");
    assert_eq!(body["register_ttl"], 60);
    assert!(body.get("secret").is_none());
    let debug = format!("{reg:?} {creds:?}");
    assert!(!debug.contains("0f04ea0e") && !debug.contains("pw123"), "{debug}");

    let bad = SipCredentials { username: "alice".into(), ..creds };
    assert!(bad.registration(60).is_err());
}

#[test]
fn sip_events_parse_and_unknown_ones_are_other() {
    let dtmf = json!({"sip": "event", "call_id": "c", "result": {"event": "info", "sender": "sip:bob@x",
        "type": "application/dtmf-relay", "content": "Signal=5\r\nDuration=160"}});
    assert_eq!(
        SipEvent::from_plugin_data(&dtmf, None),
        SipEvent::Dtmf { sender: "sip:bob@x".into(), digit: "5".into(), duration_ms: Some(160) }
    );
    let info =
        json!({"sip": "event", "result": {"event": "info", "sender": "s", "type": "text/plain", "content": "hi"}});
    assert!(matches!(SipEvent::from_plugin_data(&info, None), SipEvent::Info { .. }));

    let incoming = json!({"sip": "event", "call_id": "abc", "result": {"event": "incomingcall",
        "username": "sip:bob@x", "displayname": "Bob", "callee": "sip:alice@x"}});
    let offer = Jsep::offer("v=0");
    assert_eq!(
        SipEvent::from_plugin_data(&incoming, Some(offer.clone())),
        SipEvent::IncomingCall {
            username: "sip:bob@x".into(),
            displayname: Some("Bob".into()),
            callee: Some("sip:alice@x".into()),
            call_id: Some("abc".into()),
            srtp: None,
            jsep: Some(offer),
        }
    );
    let hangup =
        json!({"sip": "event", "call_id": "abc", "result": {"event": "hangup", "code": 486, "reason": "Busy Here"}});
    assert!(matches!(SipEvent::from_plugin_data(&hangup, None), SipEvent::Hangup { code: 486, .. }));
    let failed =
        json!({"sip": "event", "result": {"event": "registration_failed", "code": 403, "reason": "Forbidden"}});
    assert_eq!(
        SipEvent::from_plugin_data(&failed, None),
        SipEvent::RegistrationFailed { code: 403, reason: "Forbidden".into() }
    );
    let err = json!({"sip": "event", "error_code": 445, "error": "Already registered"});
    assert_eq!(
        SipEvent::from_plugin_data(&err, None),
        SipEvent::Error { code: 445, reason: "Already registered".into() }
    );
    let unknown = json!({"sip": "event", "result": {"event": "brand_new_thing"}});
    assert_eq!(SipEvent::from_plugin_data(&unknown, None), SipEvent::Other(unknown.clone()));
    let shapeless = json!([1, 2]);
    assert_eq!(SipEvent::from_plugin_data(&shapeless, None), SipEvent::Other(shapeless.clone()));
}

/// Manual check against a real Janus with `token_auth_secret` (run by hand, see the report):
/// `JANUS_URL`, `JANUS_TOKEN_A`, `JANUS_TOKEN_B` (valid, granting janus.plugin.sip) and
/// `JANUS_TOKEN_EXPIRED`.
#[tokio::test]
#[ignore]
async fn live_janus_session_token_swap() {
    let _ = env_logger::builder().is_test(true).try_init();
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let mut cfg = JanusConfig::new(vec![env("JANUS_URL")], Secret::new(env("JANUS_TOKEN_A")));
    cfg.keepalive_interval = Duration::from_secs(1);
    let (session, mut events) = JanusSession::connect(cfg).await.unwrap();
    println!("session {} on {}", session.session_id(), session.url());
    let (sip, _sip_events) = SipHandle::attach(&session).await.unwrap();
    println!("attached janus.plugin.sip as handle {}", sip.handle().id());

    session.set_token(Secret::new(env("JANUS_TOKEN_B")));
    tokio::time::sleep(Duration::from_secs(3)).await;
    while let Ok(ev) = events.try_recv() {
        println!("connection event: {ev:?}");
        assert!(!matches!(ev, ConnectionEvent::Unauthorized { .. }));
    }
    let (second, _) = session.attach(SIP_PLUGIN).await.unwrap();
    println!("after swap to token B: attached handle {} (keepalives with B accepted)", second.id());

    session.set_token(Secret::new(env("JANUS_TOKEN_EXPIRED")));
    // The next keepalive (1 s) carries the expired token: Janus answers 403.
    let ev = wait_event(&mut events, |e| matches!(e, ConnectionEvent::Unauthorized { .. })).await;
    println!("connection event: {ev:?}");
    assert_eq!(ev, ConnectionEvent::Unauthorized { request: "keepalive".into() });
    let err = session.attach(SIP_PLUGIN).await.unwrap_err();
    println!("expired token: {err}");
    assert!(err.is_unauthorized());

    session.set_token(Secret::new(env("JANUS_TOKEN_B")));
    session.destroy().await.unwrap();
    println!("destroyed");
}

/// A TCP forwarder whose connections can be cut, to drop the WebSocket under a live client.
async fn cuttable_proxy(target: String) -> (String, Arc<Mutex<Vec<tokio::task::AbortHandle>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
    let registry = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            let task = tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
            registry.lock().unwrap().push(task.abort_handle());
        }
    });
    (format!("ws://{addr}/"), conns)
}

/// Manual check against a real Janus: the socket is cut under the client, which reconnects and
/// claims its session; the sip handle still answers. Needs `JANUS_ADDR` (host:port) and `JANUS_TOKEN_A`.
#[tokio::test]
#[ignore]
async fn live_janus_reclaim_after_drop() {
    let _ = env_logger::builder().is_test(true).try_init();
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let (url, conns) = cuttable_proxy(env("JANUS_ADDR")).await;
    let cfg = config(vec![url], &env("JANUS_TOKEN_A"));
    let (session, mut events) = JanusSession::connect(cfg).await.unwrap();
    let (sip, mut sip_events) = SipHandle::attach(&session).await.unwrap();
    let guest = SipRegister {
        username: "sip:doorbell@127.0.0.1".into(),
        register_type: Some("guest".into()),
        ..SipRegister::default()
    };
    println!("guest register answered: {:?}", sip.register(&guest).await.unwrap());

    for c in conns.lock().unwrap().drain(..) {
        c.abort();
    }
    println!("socket cut");
    let ev = wait_event(&mut events, |e| {
        println!("connection event: {e:?}");
        matches!(e, ConnectionEvent::Reclaimed { .. } | ConnectionEvent::Lost { .. })
    })
    .await;
    assert!(matches!(ev, ConnectionEvent::Reclaimed { .. }), "{ev:?}");
    // The handle survived the reconnect (a lost session or handle would answer 458/459).
    let again = sip.register(&guest).await;
    println!("register on the reclaimed session: {again:?}");
    assert!(matches!(again, Ok(SipEvent::Registered { register_sent: false, .. })), "{again:?}");
    println!("unregister: {:?}", sip.unregister().await);
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(300), sip_events.recv()).await {
        println!("sip event: {ev:?}");
    }
    session.destroy().await.unwrap();
}

/// A syntactically valid WebRTC audio offer (no real ICE agent behind it: signaling only).
const FAKE_OFFER: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0\r\na=msid-semantic: WMS\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:Wb3q\r\na=ice-pwd:pWfSQ6qCwLzaXv6nvx8H3Ogs\r\n\
a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n\
a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n";

/// Answers a Janus offer with the same fake credentials (signaling only).
fn fake_answer(offer: &str) -> String {
    let mut out = String::new();
    for line in offer.lines() {
        let line = line.trim_end();
        if line.starts_with("a=candidate")
            || line.starts_with("a=end-of-candidates")
            || line.starts_with("a=ice-options")
        {
            continue;
        }
        let line = if line.starts_with("a=setup:") {
            "a=setup:active".to_string()
        } else if line.starts_with("a=ice-ufrag:") {
            "a=ice-ufrag:Wb3q".to_string()
        } else if line.starts_with("a=ice-pwd:") {
            "a=ice-pwd:pWfSQ6qCwLzaXv6nvx8H3Ogs".to_string()
        } else if line.starts_with("a=fingerprint:") {
            "a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08".to_string()
        } else {
            line.to_string()
        };
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out
}

async fn next_sip(events: &mut SipEvents, who: &str) -> SipEvent {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(15), events.recv())
            .await
            .unwrap_or_else(|_| panic!("{who}: no SIP event"))
            .unwrap_or_else(|| panic!("{who}: stream ended"));
        println!("{who} <- {ev:?}");
        if !matches!(ev, SipEvent::Media { .. } | SipEvent::SlowLink { .. } | SipEvent::Proceeding { .. }) {
            return ev;
        }
    }
}

/// Manual check of SIP event flows through a real Janus and a plain Kamailio registrar (`SIP_PROXY`,
/// e.g. `sip:127.0.0.1:5060`): call, ringing, accept, hold (what the far end sees, with
/// `autoaccept_reinvites` false), DTMF via INFO, hangup. Signaling only (fake SDP credentials).
#[tokio::test]
#[ignore]
async fn live_janus_sip_call_hold_dtmf() {
    let _ = env_logger::builder().is_test(true).try_init();
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let proxy = env("SIP_PROXY");
    let cfg = JanusConfig::new(vec![env("JANUS_URL")], Secret::new(env("JANUS_TOKEN_A")));
    let (session, _events) = JanusSession::connect(cfg).await.unwrap();
    let (alice, mut alice_ev) = SipHandle::attach(&session).await.unwrap();
    let (bob, mut bob_ev) = SipHandle::attach(&session).await.unwrap();
    for (h, ev, user) in [(&alice, &mut alice_ev, "alice"), (&bob, &mut bob_ev, "bob")] {
        let reg = SipRegister {
            username: format!("sip:{user}@127.0.0.1"),
            secret: Some(Secret::new("unused-no-auth")),
            proxy: Some(proxy.clone()),
            outbound_proxy: Some(proxy.clone()),
            register_ttl: Some(60),
            ..SipRegister::default()
        };
        println!("{user} register -> {:?}", h.register(&reg).await.unwrap());
        assert!(matches!(next_sip(ev, user).await, SipEvent::Registered { .. }));
    }

    let opts = CallOptions { autoaccept_reinvites: Some(false), ..CallOptions::default() };
    println!("alice call -> {:?}", alice.call_with("sip:bob@127.0.0.1", FAKE_OFFER, &opts).await.unwrap());
    let offer = match next_sip(&mut bob_ev, "bob").await {
        SipEvent::IncomingCall { jsep: Some(jsep), .. } => jsep,
        other => panic!("bob expected incomingcall, got {other:?}"),
    };
    assert!(offer.is_offer());
    assert!(matches!(next_sip(&mut alice_ev, "alice").await, SipEvent::Ringing { .. }));
    let policy = if std::env::var("SIP_AUTOACCEPT").is_ok() { None } else { Some(false) };
    let answer = bob.accept_with(Jsep::answer(fake_answer(&offer.sdp)), policy).await.unwrap();
    println!("bob accept -> {answer:?}");
    match next_sip(&mut alice_ev, "alice").await {
        SipEvent::Accepted { jsep, .. } => assert!(jsep.is_some(), "accepted without an answer"),
        other => panic!("alice expected accepted, got {other:?}"),
    }

    let autoaccept = std::env::var("SIP_AUTOACCEPT").is_ok();
    println!("alice hold -> {:?}", alice.hold().await.unwrap());
    for step in ["hold", "unhold"] {
        if step == "unhold" {
            println!("alice unhold -> {:?}", alice.unhold().await.unwrap());
        }
        if autoaccept {
            // Janus answers the re-INVITE itself: bob's application hears nothing.
            let quiet = tokio::time::timeout(Duration::from_secs(1), bob_ev.recv()).await;
            println!("bob after {step} (autoaccept_reinvites default): {quiet:?}");
            assert!(quiet.is_err(), "bob got an event");
            continue;
        }
        match next_sip(&mut bob_ev, "bob").await {
            SipEvent::UpdatingCall { jsep: Some(jsep), .. } => {
                let dirs: Vec<&str> = jsep
                    .sdp
                    .lines()
                    .filter(|l| ["a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"].contains(&l.trim()))
                    .collect();
                println!("bob's {step} re-INVITE offer directions: {dirs:?}");
                let answer = fake_answer(&jsep.sdp).replace("a=sendonly", "a=recvonly");
                println!("bob update -> {:?}", bob.update(Jsep::answer(answer)).await);
            }
            other => panic!("bob expected updatingcall, got {other:?}"),
        }
    }

    println!("alice dtmf -> {:?}", alice.dtmf_info('5', None).await.unwrap());
    let dtmf = next_sip(&mut bob_ev, "bob").await;
    assert!(matches!(dtmf, SipEvent::Dtmf { ref digit, .. } if digit == "5"), "{dtmf:?}");

    println!("alice hangup -> {:?}", alice.hangup().await.unwrap());
    assert!(matches!(next_sip(&mut bob_ev, "bob").await, SipEvent::Hangup { .. }));
    assert!(matches!(next_sip(&mut alice_ev, "alice").await, SipEvent::Hangup { .. }));
    for h in [&alice, &bob] {
        let _ = h.unregister().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    session.destroy().await.unwrap();
}

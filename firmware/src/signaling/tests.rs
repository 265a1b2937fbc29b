//! Tests of the signaling client against an in-process scripted Janus (tokio-tungstenite server on
//! 127.0.0.1:0, or an in-memory duplex for paused-time tests), plus pure tests of the SIP types.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callbox_calling::token::SipGrant;
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
    assert_eq!(second, SipEvent::Janus(JanusEvent::WebrtcUp));
    let third = tokio::time::timeout(Duration::from_secs(20), sip.recv()).await.unwrap().unwrap();
    assert_eq!(
        third,
        SipEvent::Janus(JanusEvent::Media { mid: Some("0".into()), kind: "audio".into(), receiving: true })
    );
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
    let creds = SipGrant {
        uri: "sip:alice@callbox".into(),
        username: "1700000000:alice".into(),
        password: Secret::new("pw123"),
        realm: "callbox".into(),
        proxy: "sip:127.0.0.1:5060".into(),
    };
    let reg = registration(&creds, 60).unwrap();
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

    let refresh = SipRegister { refresh: Some(true), ..reg.clone() }.to_body();
    assert_eq!(refresh["refresh"], true);
    assert!(body.get("refresh").is_none() && body.get("master_id").is_none() && body.get("type").is_none());

    let bad = SipGrant { username: "alice".into(), ..creds };
    assert!(registration(&bad, 60).is_err());
}

#[test]
fn a_helper_registers_by_its_masters_handle_id() {
    let body = helper_registration("sip:alice@callbox", 4711).to_body();
    assert_eq!(
        body,
        json!({"request": "register", "username": "sip:alice@callbox", "type": "helper", "master_id": 4711})
    );
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

/// A self-signed certificate for `localhost` (its own trust anchor) and its key.
fn localhost_cert() -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
    (cert, key)
}

#[tokio::test]
async fn wss_trusts_the_pinned_ca_and_refuses_another() {
    use tokio_rustls::rustls;
    let (cert, key) = localhost_cert();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let st = state(&["t1"]);
    let server_state = st.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, st) = (acceptor.clone(), server_state.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve(tls, st).await;
                }
            });
        }
    });
    let dir = std::env::temp_dir().join(format!("cbx-wss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pinned = dir.join("ca.pem");
    std::fs::write(&pinned, cert.pem()).unwrap();
    let other = dir.join("other-ca.pem");
    std::fs::write(&other, localhost_cert().0.pem()).unwrap();
    let url = format!("wss://localhost:{port}/janus");

    let mut trusted = config(vec![url.clone()], "t1");
    trusted.tls = Some(crate::provisioning::tls_client_config(Some(&pinned), &url).unwrap());
    let (session, _events) = JanusSession::connect(trusted).await.expect("wss with the pinned CA");
    assert_eq!(session.session_id(), SESSION);
    session.destroy().await.unwrap();

    let mut untrusted = config(vec![url.clone()], "t1");
    untrusted.tls = Some(crate::provisioning::tls_client_config(Some(&other), &url).unwrap());
    let err = JanusSession::connect(untrusted).await.map(|_| ()).expect_err("another CA is refused");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

//! Typed requests and events of Janus's SIP plugin (`janus.plugin.sip`, names and fields checked against
//! Janus 1.1.2 `src/plugins/janus_sip.c`), the `SipHandle` wrapper with typed async methods, and the
//! registration parameters derived from the token's ephemeral SIP grant.

use callbox_calling::token::SipGrant;
use callbox_calling::Secret;
use md5::{Digest, Md5};
use serde_json::{json, Map, Value};

use super::error::{Result, SignalingError};
use super::event::{HandleEvent, JanusEvent, Jsep};
use super::handle::{FromHandleEvent, PluginEvents, PluginHandle};
use super::janus::JanusSession;

/// The SIP plugin's package name.
pub const SIP_PLUGIN: &str = "janus.plugin.sip";

/// The `register` request. Secrets are `Secret`s: `Debug` never shows them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SipRegister {
    /// SIP URI to register (`sip:alice@example.org`).
    pub username: String,
    /// User to authenticate as, overriding the URI's user.
    pub authuser: Option<String>,
    /// Plain password.
    pub secret: Option<Secret>,
    /// Pre-hashed password: hex MD5(`authuser:realm:password`).
    pub ha1_secret: Option<Secret>,
    pub display_name: Option<String>,
    pub user_agent: Option<String>,
    /// Registrar (`sip:127.0.0.1:5060`).
    pub proxy: Option<String>,
    /// Outbound proxy. ALWAYS set it: without it Janus resolves the SIP domain and, with no resolver,
    /// loops at full CPU.
    pub outbound_proxy: Option<String>,
    /// Registration expiry in seconds.
    pub register_ttl: Option<u32>,
    pub force_udp: Option<bool>,
    pub force_tcp: Option<bool>,
    /// `guest` or `helper`: no REGISTER is sent.
    pub register_type: Option<String>,
    /// For a `helper`: the handle id of the registered account it helps (Janus's `master_id`).
    pub master_id: Option<u64>,
    /// New credentials for a live registration (Janus re-REGISTERs the account, even during a call).
    pub refresh: Option<bool>,
    pub send_register: Option<bool>,
    /// Header name prefixes to report back in events' `headers`.
    pub incoming_header_prefixes: Vec<String>,
}

impl SipRegister {
    /// The plugin request body (contains the secrets: never log it).
    pub fn to_body(&self) -> Value {
        let mut body = Map::new();
        body.insert("request".into(), json!("register"));
        body.insert("username".into(), json!(self.username));
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(v) = value {
                body.insert(key.into(), v);
            }
        };
        put("authuser", self.authuser.as_ref().map(|v| json!(v)));
        put("secret", self.secret.as_ref().map(|v| json!(v.expose())));
        put("ha1_secret", self.ha1_secret.as_ref().map(|v| json!(v.expose())));
        put("display_name", self.display_name.as_ref().map(|v| json!(v)));
        put("user_agent", self.user_agent.as_ref().map(|v| json!(v)));
        put("proxy", self.proxy.as_ref().map(|v| json!(v)));
        put("outbound_proxy", self.outbound_proxy.as_ref().map(|v| json!(v)));
        put("register_ttl", self.register_ttl.map(|v| json!(v)));
        put("force_udp", self.force_udp.map(|v| json!(v)));
        put("force_tcp", self.force_tcp.map(|v| json!(v)));
        put("type", self.register_type.as_ref().map(|v| json!(v)));
        put("master_id", self.master_id.map(|v| json!(v)));
        put("refresh", self.refresh.map(|v| json!(v)));
        put("send_register", self.send_register.map(|v| json!(v)));
        if !self.incoming_header_prefixes.is_empty() {
            put("incoming_header_prefixes", Some(json!(self.incoming_header_prefixes)));
        }
        Value::Object(body)
    }
}

/// The `register` request for the token's SIP grant (Kamailio `auth_ephemeral` credentials). sofia-sip cannot
/// take `:` in the auth user, so `authuser` = `<exp>%3A<user>` (Kamailio turns it back), and `ha1_secret` =
/// hex MD5(`<exp>:<user>:<realm>:<password>`); `proxy` and `outbound_proxy` are the grant's registrar.
pub fn registration(grant: &SipGrant, register_ttl: u32) -> Result<SipRegister> {
    if !grant.username.contains(':') {
        return Err(SignalingError::Config("SIP grant username is not '<expiry>:<user>'".into()));
    }
    if grant.uri.is_empty() || grant.proxy.is_empty() || grant.realm.is_empty() {
        return Err(SignalingError::Config("SIP grant lacks uri, realm or proxy".into()));
    }
    let authuser = grant.username.replace(':', "%3A");
    let ha1 = md5_hex(&format!("{}:{}:{}", grant.username, grant.realm, grant.password.expose()));
    Ok(SipRegister {
        username: grant.uri.clone(),
        authuser: Some(authuser),
        ha1_secret: Some(Secret::new(ha1)),
        proxy: Some(grant.proxy.clone()),
        outbound_proxy: Some(grant.proxy.clone()),
        register_ttl: Some(register_ttl),
        ..SipRegister::default()
    })
}

/// The `register` request of a helper handle of the account registered on handle `master_id` (`username`: the
/// account's SIP URI). A helper is registered at once, in the reply itself: no REGISTER is sent.
pub fn helper_registration(username: &str, master_id: u64) -> SipRegister {
    SipRegister {
        username: username.to_owned(),
        register_type: Some("helper".into()),
        master_id: Some(master_id),
        ..SipRegister::default()
    }
}

fn md5_hex(input: &str) -> String {
    Md5::digest(input.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Options of the `call` request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallOptions {
    /// Call-ID to use (random when absent).
    pub call_id: Option<String>,
    /// Extra SIP headers on the INVITE.
    pub headers: Option<Map<String, Value>>,
    /// `sdes_optional` or `sdes_mandatory` (SDES-SRTP on the SIP side).
    pub srtp: Option<String>,
    /// false: re-INVITEs from the far end come as `UpdatingCall` with an offer to answer with `update`.
    /// Janus's default (true) answers them itself and tells nothing.
    pub autoaccept_reinvites: Option<bool>,
}

/// Media direction of `hold` (Janus default: sendonly).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldDirection {
    SendOnly,
    RecvOnly,
    Inactive,
}

impl HoldDirection {
    fn as_str(self) -> &'static str {
        match self {
            HoldDirection::SendOnly => "sendonly",
            HoldDirection::RecvOnly => "recvonly",
            HoldDirection::Inactive => "inactive",
        }
    }
}

/// Everything the SIP plugin (and Janus, for this handle) reports. Total: unknown events are `Other`.
#[derive(Clone, Debug, PartialEq)]
pub enum SipEvent {
    Registering,
    /// `register_sent` false for guests and helpers (no REGISTER sent); `master_id` names a registered account
    /// that helper handles (`"type": "helper"`) can attach to, so that one identity takes several calls.
    Registered {
        username: String,
        register_sent: bool,
        master_id: Option<u64>,
    },
    RegistrationFailed {
        code: i64,
        reason: String,
    },
    Unregistering,
    Unregistered {
        username: String,
    },
    /// Our INVITE is out.
    Calling {
        call_id: Option<String>,
    },
    /// 180.
    Ringing {
        call_id: Option<String>,
    },
    /// A 1xx other than 180/183 (only when the INVITE is ours or answered by us).
    Proceeding {
        code: i64,
        call_id: Option<String>,
    },
    /// 183 with SDP: early media; `jsep` is the answer to apply.
    Progress {
        username: String,
        call_id: Option<String>,
        jsep: Option<Jsep>,
    },
    /// Our `accept` of an offerless INVITE is out; `Accepted` follows.
    Accepting {
        call_id: Option<String>,
    },
    /// Our `progress` is out: the caller got 183 Session Progress with our answer (early media).
    Progressed {
        call_id: Option<String>,
    },
    /// 200 OK: the call is up. `jsep` is the answer unless a `Progress` already carried it.
    Accepted {
        username: Option<String>,
        call_id: Option<String>,
        jsep: Option<Jsep>,
    },
    IncomingCall {
        username: String,
        displayname: Option<String>,
        callee: Option<String>,
        call_id: Option<String>,
        srtp: Option<String>,
        jsep: Option<Jsep>,
    },
    /// A call arrived while busy: the plugin answered 486 itself.
    MissedCall {
        caller: String,
        displayname: Option<String>,
        callee: Option<String>,
        call_id: Option<String>,
    },
    /// A re-INVITE from the far end (only with `autoaccept_reinvites: false`); answer with `update`.
    UpdatingCall {
        call_id: Option<String>,
        jsep: Option<Jsep>,
    },
    Updating,
    Updated,
    /// Our `hold` re-INVITE is out.
    Holding,
    /// Our `unhold` re-INVITE is out.
    Resuming,
    Declining,
    HangingUp,
    /// The call ended; `code` is the SIP status (200 for a BYE, 486 busy, 487 cancelled...).
    Hangup {
        code: i64,
        reason: String,
        reason_header: Option<String>,
        call_id: Option<String>,
    },
    /// A SIP INFO that is not DTMF.
    Info {
        sender: String,
        displayname: Option<String>,
        content_type: String,
        content: String,
    },
    /// A SIP INFO `application/dtmf-relay` (what `dtmf_info` sends): `Signal=<digit>\r\nDuration=<ms>`.
    Dtmf {
        sender: String,
        digit: String,
        duration_ms: Option<u32>,
    },
    InfoSent,
    DtmfSent,
    Message {
        sender: String,
        displayname: Option<String>,
        content_type: Option<String>,
        content: String,
        call_id: Option<String>,
    },
    /// A MESSAGE left (not yet delivered: see `MessageDelivery`); its SIP Call-ID.
    MessageSent {
        call_id: Option<String>,
    },
    MessageDelivery {
        code: i64,
        reason: String,
        call_id: Option<String>,
    },
    Notify {
        notify: String,
        substate: Option<String>,
        content_type: Option<String>,
        content: Option<String>,
        call_id: Option<String>,
    },
    /// An asynchronous plugin error (`error_code`: 440-454, see janus_sip.c).
    Error {
        code: i64,
        reason: String,
    },
    /// Janus's own event about the handle: its PeerConnection (a `Hangup` there is not the SIP dialog's: see
    /// `SipEvent::Hangup`), or the handle's end.
    Janus(JanusEvent),
    /// Anything else, raw.
    Other(Value),
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn int(v: &Value, key: &str) -> i64 {
    match v.get(key) {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(t)) => t.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// Parses `Signal=5\r\nDuration=160` (keys case-insensitive).
pub(crate) fn parse_dtmf_relay(content: &str) -> Option<(String, Option<u32>)> {
    let mut digit = None;
    let mut duration = None;
    for line in content.lines() {
        let Some((key, value)) = line.split_once('=') else { continue };
        match key.trim().to_ascii_lowercase().as_str() {
            "signal" => digit = Some(value.trim().to_owned()),
            "duration" => duration = value.trim().parse().ok(),
            _ => {}
        }
    }
    digit.filter(|d| !d.is_empty()).map(|d| (d, duration))
}

impl SipEvent {
    /// Reads the plugin's `data` (`{"sip": "event", "result": {...}, "call_id": ...}`) and its JSEP.
    pub fn from_plugin_data(data: &Value, jsep: Option<Jsep>) -> SipEvent {
        if let Some(code) = data.get("error_code").and_then(Value::as_i64) {
            return SipEvent::Error { code, reason: s(data, "error").unwrap_or_default() };
        }
        let Some(result) = data.get("result") else { return SipEvent::Other(data.clone()) };
        let Some(event) = result.get("event").and_then(Value::as_str) else {
            return SipEvent::Other(data.clone());
        };
        let call_id = s(data, "call_id").or_else(|| s(result, "call_id"));
        match event {
            "registering" => SipEvent::Registering,
            "registered" => SipEvent::Registered {
                username: s(result, "username").unwrap_or_default(),
                register_sent: result.get("register_sent").and_then(Value::as_bool).unwrap_or(true),
                master_id: result.get("master_id").and_then(Value::as_u64),
            },
            "registration_failed" => SipEvent::RegistrationFailed {
                code: int(result, "code"),
                reason: s(result, "reason").unwrap_or_default(),
            },
            "unregistering" => SipEvent::Unregistering,
            "unregistered" => SipEvent::Unregistered { username: s(result, "username").unwrap_or_default() },
            "calling" => SipEvent::Calling { call_id },
            "ringing" => SipEvent::Ringing { call_id },
            "proceeding" => SipEvent::Proceeding { code: int(result, "code"), call_id },
            "progress" => SipEvent::Progress { username: s(result, "username").unwrap_or_default(), call_id, jsep },
            "accepting" => SipEvent::Accepting { call_id },
            "progressed" => SipEvent::Progressed { call_id },
            "accepted" => SipEvent::Accepted { username: s(result, "username"), call_id, jsep },
            "incomingcall" => SipEvent::IncomingCall {
                username: s(result, "username").unwrap_or_default(),
                displayname: s(result, "displayname"),
                callee: s(result, "callee"),
                call_id,
                srtp: s(result, "srtp"),
                jsep,
            },
            "missed_call" => SipEvent::MissedCall {
                caller: s(result, "caller").unwrap_or_default(),
                displayname: s(result, "displayname"),
                callee: s(result, "callee"),
                call_id,
            },
            "updatingcall" => SipEvent::UpdatingCall { call_id, jsep },
            "updating" => SipEvent::Updating,
            "updated" => SipEvent::Updated,
            "holding" => SipEvent::Holding,
            "resuming" => SipEvent::Resuming,
            "declining" => SipEvent::Declining,
            "hangingup" => SipEvent::HangingUp,
            "hangup" => SipEvent::Hangup {
                code: int(result, "code"),
                reason: s(result, "reason").unwrap_or_default(),
                reason_header: s(result, "reason_header"),
                call_id,
            },
            "info" => {
                let sender = s(result, "sender").unwrap_or_default();
                let content_type = s(result, "type").unwrap_or_default();
                let content = s(result, "content").unwrap_or_default();
                if content_type.eq_ignore_ascii_case("application/dtmf-relay") {
                    if let Some((digit, duration_ms)) = parse_dtmf_relay(&content) {
                        return SipEvent::Dtmf { sender, digit, duration_ms };
                    }
                }
                SipEvent::Info { sender, displayname: s(result, "displayname"), content_type, content }
            }
            "infosent" => SipEvent::InfoSent,
            "dtmfsent" => SipEvent::DtmfSent,
            "message" => SipEvent::Message {
                sender: s(result, "sender").unwrap_or_default(),
                displayname: s(result, "displayname"),
                content_type: s(result, "content_type"),
                content: s(result, "content").unwrap_or_default(),
                call_id,
            },
            "messagesent" => SipEvent::MessageSent { call_id },
            "messagedelivery" => SipEvent::MessageDelivery {
                code: int(result, "code"),
                reason: s(result, "reason").unwrap_or_default(),
                call_id,
            },
            "notify" => SipEvent::Notify {
                notify: s(result, "notify").unwrap_or_default(),
                substate: s(result, "substate"),
                content_type: s(result, "content-type"),
                content: s(result, "content"),
                call_id,
            },
            _ => SipEvent::Other(data.clone()),
        }
    }

    /// Converts a handle event.
    pub fn from_handle_event(event: HandleEvent) -> SipEvent {
        match event {
            HandleEvent::Plugin { data, jsep } => SipEvent::from_plugin_data(&data, jsep),
            HandleEvent::Janus(e) => SipEvent::Janus(e),
            HandleEvent::Other(v) => SipEvent::Other(v),
        }
    }
}

/// The typed event stream of a `SipHandle`. Ends when the handle is detached or the session ends.
pub type SipEvents = PluginEvents<SipEvent>;

impl FromHandleEvent for SipEvent {
    fn from_handle_event(event: HandleEvent) -> Self {
        SipEvent::from_handle_event(event)
    }
}

/// A handle on the SIP plugin with typed requests. Each method returns the plugin's event answering it
/// (same transaction: `registering`, `calling`, `accepted`, `holding`...); everything after that
/// (`registered`, `ringing`, `hangup`...) arrives on the `SipEvents` stream. A plugin error becomes
/// `SignalingError::Plugin`.
#[derive(Clone, Debug)]
pub struct SipHandle {
    handle: PluginHandle,
}

impl SipHandle {
    /// Attaches `janus.plugin.sip` on the session.
    pub async fn attach(session: &JanusSession) -> Result<(SipHandle, SipEvents)> {
        let (handle, rx) = session.attach(SIP_PLUGIN).await?;
        Ok((SipHandle { handle }, SipEvents::new(rx)))
    }

    /// Wraps a handle already attached to `janus.plugin.sip`.
    pub fn from_handle(handle: PluginHandle) -> SipHandle {
        SipHandle { handle }
    }

    /// The generic handle (for `hangup` of the PeerConnection, trickle...).
    pub fn handle(&self) -> &PluginHandle {
        &self.handle
    }

    /// Sends any sip request and parses the answering event.
    pub async fn send(&self, body: Value, jsep: Option<Jsep>) -> Result<SipEvent> {
        let reply = self.handle.message(body, jsep).await?;
        Ok(SipEvent::from_plugin_data(&reply.data, reply.jsep))
    }

    pub async fn register(&self, params: &SipRegister) -> Result<SipEvent> {
        self.send(params.to_body(), None).await
    }

    pub async fn unregister(&self) -> Result<SipEvent> {
        self.send(json!({ "request": "unregister" }), None).await
    }

    /// INVITE `uri` with our SDP offer.
    pub async fn call(&self, uri: &str, offer_sdp: &str) -> Result<SipEvent> {
        self.call_with(uri, offer_sdp, &CallOptions::default()).await
    }

    pub async fn call_with(&self, uri: &str, offer_sdp: &str, options: &CallOptions) -> Result<SipEvent> {
        let mut body = Map::new();
        body.insert("request".into(), json!("call"));
        body.insert("uri".into(), json!(uri));
        if let Some(v) = &options.call_id {
            body.insert("call_id".into(), json!(v));
        }
        if let Some(v) = &options.headers {
            body.insert("headers".into(), Value::Object(v.clone()));
        }
        if let Some(v) = &options.srtp {
            body.insert("srtp".into(), json!(v));
        }
        if let Some(v) = options.autoaccept_reinvites {
            body.insert("autoaccept_reinvites".into(), json!(v));
        }
        self.send(Value::Object(body), Some(Jsep::offer(offer_sdp))).await
    }

    /// Accepts the incoming call with our SDP answer (to the `IncomingCall` offer).
    pub async fn accept(&self, answer_sdp: &str) -> Result<SipEvent> {
        self.accept_with(Jsep::answer(answer_sdp), None).await
    }

    /// Accepts with any JSEP (an offer for an offerless INVITE) and the re-INVITE policy.
    pub async fn accept_with(&self, jsep: Jsep, autoaccept_reinvites: Option<bool>) -> Result<SipEvent> {
        let mut body = json!({ "request": "accept" });
        if let (Some(v), Some(obj)) = (autoaccept_reinvites, body.as_object_mut()) {
            obj.insert("autoaccept_reinvites".into(), json!(v));
        }
        self.send(body, Some(jsep)).await
    }

    /// Sends early media for the incoming call without answering it: 183 Session Progress with our answer. The
    /// call is answered later with `accept_with` and the same answer (Janus's sip plugin wants the SDP again).
    pub async fn progress(&self, jsep: Jsep) -> Result<SipEvent> {
        self.send(json!({ "request": "progress" }), Some(jsep)).await
    }

    /// Declines the incoming call with a SIP code (Janus default 486).
    pub async fn decline(&self, code: Option<u16>) -> Result<SipEvent> {
        let body = match code {
            Some(code) => json!({ "request": "decline", "code": code }),
            None => json!({ "request": "decline" }),
        };
        self.send(body, None).await
    }

    /// Ends the call (BYE, or CANCEL while ringing).
    pub async fn hangup(&self) -> Result<SipEvent> {
        self.send(json!({ "request": "hangup" }), None).await
    }

    /// Puts the call on hold (re-INVITE sendonly; no WebRTC renegotiation on our side).
    pub async fn hold(&self) -> Result<SipEvent> {
        self.hold_with(HoldDirection::SendOnly).await
    }

    pub async fn hold_with(&self, direction: HoldDirection) -> Result<SipEvent> {
        self.send(json!({ "request": "hold", "direction": direction.as_str() }), None).await
    }

    pub async fn unhold(&self) -> Result<SipEvent> {
        self.send(json!({ "request": "unhold" }), None).await
    }

    /// Sends one DTMF digit as SIP INFO `application/dtmf-relay` (Janus default duration 160 ms).
    pub async fn dtmf_info(&self, digit: char, duration_ms: Option<u32>) -> Result<SipEvent> {
        if !matches!(digit, '0'..='9' | '*' | '#' | 'A'..='D' | 'a'..='d') {
            return Err(SignalingError::Config(format!("not a DTMF digit: {digit:?}")));
        }
        let body = match duration_ms {
            Some(d) => json!({ "request": "dtmf_info", "digit": digit.to_string(), "duration": d }),
            None => json!({ "request": "dtmf_info", "digit": digit.to_string() }),
        };
        self.send(body, None).await
    }

    /// Renegotiates (our re-INVITE with an offer) or answers an `UpdatingCall` offer.
    pub async fn update(&self, jsep: Jsep) -> Result<SipEvent> {
        self.send(json!({ "request": "update" }), Some(jsep)).await
    }

    /// SIP MESSAGE: in dialog without `uri`, out of dialog (registered) with it.
    pub async fn message(&self, content_type: Option<&str>, content: &str, uri: Option<&str>) -> Result<SipEvent> {
        self.message_with_call_id(content_type, content, uri, None).await
    }

    /// As `message`, with our own SIP Call-ID for it (the `messagedelivery` event names it: how replies are told
    /// apart when several messages are out).
    pub async fn message_with_call_id(
        &self,
        content_type: Option<&str>,
        content: &str,
        uri: Option<&str>,
        call_id: Option<&str>,
    ) -> Result<SipEvent> {
        let mut body = Map::new();
        body.insert("request".into(), json!("message"));
        body.insert("content".into(), json!(content));
        if let Some(id) = call_id {
            body.insert("call_id".into(), json!(id));
        }
        if let Some(t) = content_type {
            body.insert("content_type".into(), json!(t));
        }
        if let Some(u) = uri {
            body.insert("uri".into(), json!(u));
        }
        self.send(Value::Object(body), None).await
    }

    /// SIP INFO in the dialog.
    pub async fn info(&self, content_type: &str, content: &str) -> Result<SipEvent> {
        self.send(json!({ "request": "info", "type": content_type, "content": content }), None).await
    }

    /// Detaches the handle (unregister first on a clean shutdown: destroying does not un-REGISTER).
    pub async fn detach(&self) -> Result<()> {
        self.handle.detach().await
    }
}

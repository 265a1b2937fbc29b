//! The engine task of a `CallClient`: it owns the Janus session and SIP handle, the media session of the current
//! call and the token refresh schedule, feeds what they report into the calling core, and carries out the core's
//! commands. `Shared` is the state the API handles and the engine both reach: the core (behind a mutex, never
//! held across an await), the event bus and the media sessions.

use super::credential::{unix_now, TokenCredential};
use super::events::EventBus;
use super::{ClientConfig, ClientError};
use crate::calling::credential::{AccessToken, SipGrant};
use crate::calling::{
    subcode, CallEndReason, CallId, CallingCore, Command, ConnectionState, Identifier, MediaSignal, SignalEvent,
};
use crate::media::{MediaEvent, MediaSession, MediaStats, VideoFrame};
use crate::signaling::{
    CallOptions, ConnectionEvent, JanusConfig, JanusSession, Jsep, SipCredentials, SipEvent, SipEvents, SipHandle,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::pending;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot, Notify};

/// Content type of the INFO that tells a callbox peer our microphone and camera state.
pub(crate) const STATE_INFO_TYPE: &str = "application/vnd.callbox.state+json";

/// Remote video counts as stopped when no frame was decoded for this long.
const VIDEO_STALL: Duration = Duration::from_millis(1500);

pub(crate) struct Shared {
    core: Mutex<CallingCore>,
    pub(crate) bus: Arc<EventBus>,
    wake: Notify,
    pub(crate) config: ClientConfig,
    pub(crate) local_user: Identifier,
    media: Mutex<HashMap<CallId, MediaSession>>,
    shutdown_tx: mpsc::Sender<oneshot::Sender<()>>,
}

impl Shared {
    /// Runs `f` on the core, publishes the events it produced and wakes the engine for its commands (API side).
    pub(crate) fn with_core<R>(&self, f: impl FnOnce(&mut CallingCore, Instant) -> R) -> R {
        let result = self.engine_core(f);
        self.wake.notify_one();
        result
    }

    /// As `with_core`, without waking the engine: the engine's own calls, whose commands it drains at the top of
    /// its loop (waking itself would make the loop spin).
    fn engine_core<R>(&self, f: impl FnOnce(&mut CallingCore, Instant) -> R) -> R {
        let mut core = self.core.lock().unwrap_or_else(|p| p.into_inner());
        let result = f(&mut core, Instant::now());
        while let Some(event) = core.poll_event() {
            self.bus.publish(event);
        }
        result
    }

    fn media(&self, call: CallId) -> Option<MediaSession> {
        self.media.lock().unwrap_or_else(|p| p.into_inner()).get(&call).cloned()
    }

    pub(crate) fn media_stats(&self, call: CallId) -> Option<MediaStats> {
        self.media(call).map(|m| m.stats())
    }

    pub(crate) fn latest_frame(&self, call: CallId) -> Option<VideoFrame> {
        self.media(call).and_then(|m| m.last_remote_frame())
    }

    pub(crate) async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.shutdown_tx.send(tx).await.is_ok() {
            let _ = tokio::time::timeout(self.config.request_timeout * 2, rx).await;
        }
    }
}

/// The connection to the servers: a Janus session with one SIP handle, registered.
struct Connection {
    session: JanusSession,
    sip: SipHandle,
    sip_events: SipEvents,
    conn_events: mpsc::Receiver<ConnectionEvent>,
}

/// The media and signaling state of the call on the SIP handle.
struct Leg {
    call: CallId,
    media: MediaSession,
    media_events: broadcast::Receiver<MediaEvent>,
    /// The far end's session description has been applied.
    remote_sdp_applied: bool,
    established: bool,
    remote_video_flowing: bool,
    frames_seen: u64,
    frames_changed_at: Instant,
    sent_state: (bool, bool),
}

pub(crate) async fn create_client(
    credential: TokenCredential,
    config: ClientConfig,
) -> Result<super::CallClient, ClientError> {
    let token = credential.get().await?;
    let local_user = Identifier::user(token.user())
        .map_err(|e| ClientError::Token(crate::calling::TokenError::BadClaims(e.to_string())))?;
    let (shutdown_tx, shutdown_rx) = mpsc::channel(1);
    let shared = Arc::new(Shared {
        core: Mutex::new(CallingCore::new(config.core.clone())),
        bus: EventBus::new(config.event_queue_capacity),
        wake: Notify::new(),
        config: config.clone(),
        local_user,
        media: Mutex::new(HashMap::new()),
        shutdown_tx,
    });
    shared.with_core(|core, _| core.set_connection_state(ConnectionState::Connecting));
    let conn = match open_connection(&config, &token).await {
        Ok(c) => c,
        Err(e) => {
            shared.with_core(|core, _| core.set_connection_state(ConnectionState::Disconnected));
            return Err(e);
        }
    };
    shared.with_core(|core, _| core.set_connection_state(ConnectionState::Ready));
    let engine = Engine {
        shared: shared.clone(),
        credential,
        token,
        conn: Some(conn),
        leg: None,
        pending_offer: None,
        refresh_attempt: 0,
        next_refresh: None,
        lost: None,
    };
    tokio::spawn(engine.run(shutdown_rx));
    Ok(super::CallClient { shared })
}

fn sip_credentials(grant: &SipGrant) -> SipCredentials {
    SipCredentials {
        uri: grant.uri.clone(),
        username: grant.username.clone(),
        password: grant.password.clone(),
        realm: grant.realm.clone(),
        proxy: grant.proxy.clone(),
    }
}

/// The `register` request body for the token's SIP grant (`refresh`: new credentials on a live registration).
fn register_body(config: &ClientConfig, token: &AccessToken, refresh: bool) -> Result<Value, ClientError> {
    let grant = token.sip()?;
    let ttl = u32::try_from(config.register_ttl.as_secs()).unwrap_or(u32::MAX);
    let mut params = sip_credentials(grant).registration(ttl)?;
    params.display_name = config.display_name.clone();
    params.user_agent = Some(format!("callbox/{}", env!("CARGO_PKG_VERSION")));
    let mut body = params.to_body();
    if refresh {
        if let Some(obj) = body.as_object_mut() {
            obj.insert("refresh".into(), json!(true));
        }
    }
    Ok(body)
}

async fn open_connection(config: &ClientConfig, token: &AccessToken) -> Result<Connection, ClientError> {
    let janus = token.janus()?;
    let mut jc = JanusConfig::new(config.janus_urls.clone(), janus.token.clone());
    jc.request_timeout = config.request_timeout;
    jc.keepalive_interval = config.keepalive_interval;
    let (session, conn_events) = JanusSession::connect(jc).await?;
    let (sip, mut sip_events) = SipHandle::attach(&session).await?;
    let body = register_body(config, token, false)?;
    let user = token.sip()?.uri.clone();
    sip.send(body, None).await?;
    let wait = async {
        loop {
            match sip_events.recv().await {
                Some(SipEvent::Registered { .. }) => return Ok(()),
                Some(SipEvent::RegistrationFailed { code, reason }) => {
                    return Err(ClientError::Registration { user: user.clone(), code, reason })
                }
                Some(other) => log::debug!("while registering: {other:?}"),
                None => return Err(ClientError::Closed),
            }
        }
    };
    match tokio::time::timeout(config.request_timeout, wait).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = session.destroy().await;
            return Err(e);
        }
        Err(_) => {
            let _ = session.destroy().await;
            return Err(ClientError::Timeout("SIP registration"));
        }
    }
    log::info!("registered as {user} through {} (session {})", session.url(), session.session_id());
    Ok(Connection { session, sip, sip_events, conn_events })
}

/// The SDP direction of the first audio section: the far end holds us when it only receives or is inactive.
fn offer_holds_us(sdp: &str) -> bool {
    let mut in_audio = false;
    for line in sdp.lines() {
        let line = line.trim();
        if let Some(m) = line.strip_prefix("m=") {
            if in_audio {
                break;
            }
            in_audio = m.starts_with("audio");
        } else if in_audio {
            match line {
                "a=sendonly" | "a=inactive" => return true,
                "a=sendrecv" | "a=recvonly" => return false,
                _ => {}
            }
        }
    }
    false
}

/// Whether a session description carries video (a video section with a non-zero port).
fn sdp_has_video(sdp: &str) -> bool {
    sdp.lines().any(|l| {
        l.trim()
            .strip_prefix("m=video ")
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|port| port != "0")
    })
}

async fn next_media_event(leg: &mut Option<Leg>) -> Option<MediaEvent> {
    match leg {
        Some(l) => loop {
            match l.media_events.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    log::debug!("media events lagged by {n}")
                }
                Err(broadcast::error::RecvError::Closed) => return pending().await,
            }
        },
        None => pending().await,
    }
}

/// What the connection reports next: a SIP event, a connection event, or that one of its streams ended.
enum ConnInput {
    Sip(SipEvent),
    Connection(ConnectionEvent),
    Ended(&'static str),
}

async fn next_conn_input(conn: &mut Option<Connection>) -> ConnInput {
    let Some(c) = conn else {
        return pending().await;
    };
    tokio::select! {
        ev = c.sip_events.recv() => ev.map(ConnInput::Sip).unwrap_or(ConnInput::Ended("the SIP handle's event stream ended")),
        ev = c.conn_events.recv() => ev.map(ConnInput::Connection).unwrap_or(ConnInput::Ended("the Janus connection ended")),
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => pending().await,
    }
}

struct Engine {
    shared: Arc<Shared>,
    credential: TokenCredential,
    token: AccessToken,
    conn: Option<Connection>,
    leg: Option<Leg>,
    /// The offer of the incoming call that rings now.
    pending_offer: Option<(CallId, Option<String>)>,
    refresh_attempt: u32,
    next_refresh: Option<Instant>,
    /// Set when the session is found gone; the main loop then rebuilds the connection.
    lost: Option<String>,
}

impl Engine {
    fn config(&self) -> &ClientConfig {
        &self.shared.config
    }

    async fn schedule_refresh(&mut self) {
        self.next_refresh = self.credential.refresh_due_in().await.map(|d| Instant::now() + d);
    }

    async fn run(mut self, mut shutdown_rx: mpsc::Receiver<oneshot::Sender<()>>) {
        self.schedule_refresh().await;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while let Some(cmd) = self.shared.engine_core(|core, _| core.poll_command()) {
                self.execute(cmd).await;
            }
            let core_deadline = self.shared.engine_core(|core, _| core.poll_timeout());
            tokio::select! {
                _ = self.shared.wake.notified() => {}
                ack = shutdown_rx.recv() => {
                    self.shutdown().await;
                    if let Some(ack) = ack {
                        let _ = ack.send(());
                    }
                    return;
                }
                input = next_conn_input(&mut self.conn) => match input {
                    ConnInput::Sip(ev) => self.on_sip(ev).await,
                    ConnInput::Connection(ev) => self.on_connection(ev).await,
                    ConnInput::Ended(why) => self.lost = Some(why.to_string()),
                },
                ev = next_media_event(&mut self.leg) => {
                    if let Some(ev) = ev {
                        self.on_media(ev);
                    }
                }
                _ = sleep_until_opt(core_deadline) => {
                    self.shared.engine_core(|core, now| core.handle_timeout(now));
                }
                _ = sleep_until_opt(self.next_refresh) => self.refresh_token().await,
                _ = tick.tick() => self.watch_video(),
            }
            if let Some(reason) = self.lost.take() {
                self.on_session_lost(&reason).await;
            }
        }
    }

    // ----- commands of the core -----

    async fn execute(&mut self, cmd: Command) {
        log::debug!("command {cmd:?}");
        match cmd {
            Command::PlaceCall { call, target } => {
                if let Err(e) = self.place_call(call, &target).await {
                    log::warn!("{call}: call to {target} could not be placed: {e}");
                    let reason = CallEndReason::new(500, subcode::SETUP_FAILED, format!("call setup failed: {e}"));
                    self.signal(call, SignalEvent::Failed(reason));
                }
            }
            Command::Answer { call } => {
                if let Err(e) = self.answer(call).await {
                    log::warn!("{call}: answering failed: {e}");
                    let reason = CallEndReason::new(500, subcode::SETUP_FAILED, format!("answer failed: {e}"));
                    self.signal(call, SignalEvent::Failed(reason));
                }
            }
            Command::Decline { call, code } => {
                if self.pending_offer.as_ref().is_some_and(|(c, _)| *c == call) {
                    self.pending_offer = None;
                    if let Some(conn) = &self.conn {
                        if let Err(e) = conn.sip.decline(Some(code)).await {
                            log::warn!("{call}: decline failed: {e}");
                        }
                        // Janus prepared a PeerConnection for the offer it sent us: close it, or the handle
                        // stays busy (486 to the next caller) until it times out.
                        if let Err(e) = conn.sip.handle().hangup().await {
                            log::debug!("{call}: PeerConnection hangup: {e}");
                        }
                    }
                } else {
                    log::debug!("{call}: nothing to decline on the SIP handle");
                }
            }
            Command::HangUp { call } => {
                let on_handle = self.leg.as_ref().is_some_and(|l| l.call == call);
                if let (true, Some(conn)) = (on_handle, &self.conn) {
                    if let Err(e) = conn.sip.hangup().await {
                        // No SIP call to end (it never left, or it already ended): the call is over here.
                        log::info!("{call}: hangup: {e}");
                        self.signal(call, SignalEvent::Hangup { code: 200, reason: "hung up".into() });
                    }
                }
            }
            Command::Hold { call } | Command::Resume { call } => {
                let hold = matches!(cmd, Command::Hold { .. });
                let Some(conn) = &self.conn else { return };
                let result = if hold { conn.sip.hold().await } else { conn.sip.unhold().await };
                match result {
                    Ok(_) => self.signal(call, SignalEvent::LocalHold(hold)),
                    Err(e) => log::warn!("{call}: {} failed: {e}", if hold { "hold" } else { "resume" }),
                }
            }
            Command::SendDtmf { call, digit } => {
                if let Some(conn) = &self.conn {
                    if let Err(e) = conn.sip.dtmf_info(digit, None).await {
                        log::warn!("{call}: DTMF '{digit}' not sent: {e}");
                    }
                }
            }
            Command::SetMicrophoneMuted { call, muted } => {
                if let Some(leg) = self.leg.as_ref().filter(|l| l.call == call) {
                    leg.media.set_audio_muted(muted);
                }
            }
            Command::SetVideoEnabled { call, enabled } => {
                if let Some(leg) = self.leg.as_ref().filter(|l| l.call == call) {
                    leg.media.set_video_enabled(enabled);
                }
            }
            Command::SendState { call, muted, video_on } => self.send_state(call, muted, video_on).await,
            Command::ReleaseMedia { call } => self.release(call).await,
        }
    }

    async fn new_leg(&mut self, call: CallId) -> Result<MediaSession, ClientError> {
        let media = MediaSession::new(self.config().media.clone()).await?;
        let media_events = media.events();
        self.shared.media.lock().unwrap_or_else(|p| p.into_inner()).insert(call, media.clone());
        self.leg = Some(Leg {
            call,
            media: media.clone(),
            media_events,
            remote_sdp_applied: false,
            established: false,
            remote_video_flowing: false,
            frames_seen: 0,
            frames_changed_at: Instant::now(),
            sent_state: (false, true),
        });
        Ok(media)
    }

    async fn place_call(&mut self, call: CallId, target: &Identifier) -> Result<(), String> {
        let domain = self.token.sip().map_err(|e| e.to_string())?.realm.clone();
        let uri = target.sip_uri(&domain);
        let media = self.new_leg(call).await.map_err(|e| e.to_string())?;
        let offer = media.create_offer().await.map_err(|e| e.to_string())?;
        let conn = self.conn.as_ref().ok_or("not connected")?;
        let options = CallOptions { autoaccept_reinvites: Some(false), ..CallOptions::default() };
        log::info!("{call}: calling {uri}");
        let reply = conn.sip.call_with(&uri, &offer, &options).await.map_err(|e| e.to_string())?;
        self.on_sip(reply).await;
        Ok(())
    }

    async fn answer(&mut self, call: CallId) -> Result<(), String> {
        let offer = match self.pending_offer.take() {
            Some((c, offer)) if c == call => offer.ok_or("the INVITE carried no offer")?,
            _ => return Err("the incoming call is no longer offered".into()),
        };
        let media = self.new_leg(call).await.map_err(|e| e.to_string())?;
        let answer = media.accept_offer(&offer).await.map_err(|e| e.to_string())?;
        if let Some(leg) = self.leg.as_mut() {
            leg.remote_sdp_applied = true;
        }
        let has_video = sdp_has_video(&offer) && sdp_has_video(&answer);
        let conn = self.conn.as_ref().ok_or("not connected")?;
        let reply = conn.sip.accept_with(Jsep::answer(answer), Some(false)).await.map_err(|e| e.to_string())?;
        self.media_signal(call, MediaSignal::VideoNegotiated(has_video));
        self.on_sip(reply).await;
        Ok(())
    }

    async fn send_state(&mut self, call: CallId, muted: bool, video_on: bool) {
        let Some(leg) = self.leg.as_mut().filter(|l| l.call == call) else {
            return;
        };
        if !leg.established || leg.sent_state == (muted, video_on) {
            return;
        }
        leg.sent_state = (muted, video_on);
        let body = json!({ "v": 1, "muted": muted, "video": video_on }).to_string();
        if let Some(conn) = &self.conn {
            if let Err(e) = conn.sip.info(STATE_INFO_TYPE, &body).await {
                log::warn!("{call}: state INFO not sent: {e}");
            }
        }
    }

    async fn release(&mut self, call: CallId) {
        let media = self.shared.media.lock().unwrap_or_else(|p| p.into_inner()).remove(&call);
        if let Some(media) = media {
            let s = media.stats();
            log::info!(
                "{call}: media closed: audio {} sent / {} received, video {} sent / {} decoded ({:?})",
                s.audio_packets_sent,
                s.audio_packets_received,
                s.video_frames_sent,
                s.video_frames_decoded,
                s.video_codec
            );
            media.close().await;
        }
        if self.leg.as_ref().is_some_and(|l| l.call == call) {
            self.leg = None;
            // Close Janus's side of the PeerConnection now: until it is gone the handle refuses a new call
            // ("Error setting ICE locally") and answers incoming ones 486.
            if let Some(conn) = &self.conn {
                if let Err(e) = conn.sip.handle().hangup().await {
                    log::debug!("{call}: PeerConnection hangup: {e}");
                }
            }
        }
        if self.pending_offer.as_ref().is_some_and(|(c, _)| *c == call) {
            self.pending_offer = None;
        }
    }

    // ----- inputs -----

    fn signal(&self, call: CallId, event: SignalEvent) {
        self.shared.engine_core(|core, now| core.on_signal(call, event, now));
    }

    fn media_signal(&self, call: CallId, signal: MediaSignal) {
        self.shared.engine_core(|core, now| core.on_media(call, signal, now));
    }

    /// The call the SIP handle's call events are about.
    fn current_call(&self) -> Option<CallId> {
        self.leg.as_ref().map(|l| l.call).or(self.pending_offer.as_ref().map(|(c, _)| *c))
    }

    async fn apply_remote_sdp(&mut self, jsep: Option<Jsep>) {
        let Some(leg) = self.leg.as_mut() else { return };
        let Some(jsep) = jsep else { return };
        if leg.remote_sdp_applied || jsep.is_offer() {
            return;
        }
        let call = leg.call;
        match leg.media.accept_answer(&jsep.sdp).await {
            Ok(()) => {
                leg.remote_sdp_applied = true;
                let video = sdp_has_video(&jsep.sdp);
                self.media_signal(call, MediaSignal::VideoNegotiated(video));
            }
            Err(e) => {
                log::warn!("{call}: the far end's answer is unusable: {e}");
                let reason = CallEndReason::new(488, 0, format!("unusable answer: {e}"));
                self.signal(call, SignalEvent::Failed(reason));
            }
        }
    }

    async fn on_sip(&mut self, ev: SipEvent) {
        let call = self.current_call();
        match ev {
            SipEvent::Ringing { .. } => {
                if let Some(call) = call {
                    self.signal(call, SignalEvent::Ringing);
                }
            }
            SipEvent::Progress { jsep, .. } => {
                if let Some(call) = call {
                    let had_sdp = jsep.is_some();
                    self.apply_remote_sdp(jsep).await;
                    self.signal(call, if had_sdp { SignalEvent::EarlyMedia } else { SignalEvent::Ringing });
                }
            }
            SipEvent::Accepted { jsep, .. } => {
                if let Some(call) = call {
                    self.apply_remote_sdp(jsep).await;
                    if let Some(leg) = self.leg.as_mut() {
                        leg.established = true;
                    }
                    self.signal(call, SignalEvent::Accepted);
                    let (muted, video_on) = self
                        .shared
                        .engine_core(|core, _| core.call(call).map(|c| (c.is_muted, c.is_video_on)))
                        .unwrap_or((false, true));
                    self.send_state(call, muted, video_on).await;
                }
            }
            SipEvent::IncomingCall { username, displayname, jsep, .. } => {
                self.on_incoming(username, displayname, jsep).await
            }
            SipEvent::MissedCall { caller, .. } => log::info!("missed call from {caller} (busy)"),
            SipEvent::UpdatingCall { jsep, .. } => self.on_reinvite(jsep).await,
            SipEvent::Hangup { code, reason, .. } => {
                if let Some(call) = call {
                    log::info!("{call}: SIP hangup {code} {reason}");
                    let code = u16::try_from(code).unwrap_or(500);
                    self.signal(call, SignalEvent::Hangup { code, reason });
                }
            }
            SipEvent::Dtmf { digit, .. } => {
                if let (Some(call), Some(d)) = (call, digit.chars().next()) {
                    log::info!("{call}: DTMF '{d}' received");
                    self.signal(call, SignalEvent::Dtmf(d));
                }
            }
            SipEvent::Info { content_type, content, .. } if content_type.eq_ignore_ascii_case(STATE_INFO_TYPE) => {
                let Some(call) = call else { return };
                match serde_json::from_str::<Value>(&content) {
                    Ok(v) => {
                        let muted = v.get("muted").and_then(Value::as_bool);
                        let video_on = v.get("video").and_then(Value::as_bool);
                        self.signal(call, SignalEvent::PeerState { muted, video_on });
                    }
                    Err(e) => log::warn!("{call}: malformed state INFO skipped: {e}"),
                }
            }
            SipEvent::Registered { .. } => {
                log::info!("SIP registration refreshed");
                self.shared.engine_core(|core, _| core.set_connection_state(ConnectionState::Ready));
            }
            SipEvent::RegistrationFailed { code, reason } => {
                log::error!("SIP registration failed: {code} {reason}");
                // Retried at the next token refresh, which comes soon.
                self.next_refresh = Some(Instant::now() + Duration::from_secs(1));
            }
            SipEvent::Error { code, reason } => log::warn!("SIP plugin error {code}: {reason}"),
            SipEvent::WebrtcHangup { reason } => {
                log::debug!("PeerConnection closed by Janus: {reason}")
            }
            SipEvent::Detached => self.lost = Some("the SIP handle was detached".into()),
            other => log::debug!("SIP event {other:?}"),
        }
    }

    async fn on_incoming(&mut self, username: String, displayname: Option<String>, jsep: Option<Jsep>) {
        let from = match Identifier::from_sip_uri(&username) {
            Ok(id) => id,
            Err(e) => {
                log::warn!("incoming call from an unusable identity declined: {e}");
                if let Some(conn) = &self.conn {
                    let _ = conn.sip.decline(Some(603)).await;
                }
                return;
            }
        };
        let displayname = displayname.map(|d| d.trim_matches('"').to_string()).filter(|d| !d.is_empty());
        log::info!("incoming call from {from}");
        let offer = jsep.filter(|j| j.is_offer()).map(|j| j.sdp);
        let call = self.shared.engine_core(|core, now| {
            let call = core.incoming_call(from, displayname, now);
            (core.call(call).map(|c| c.state.is_active()).unwrap_or(false), call)
        });
        if let (true, id) = call {
            self.pending_offer = Some((id, offer));
        }
    }

    /// A re-INVITE from the far end (hold, resume, renegotiation): answer it and report hold changes.
    async fn on_reinvite(&mut self, jsep: Option<Jsep>) {
        let (Some(leg), Some(jsep)) = (self.leg.as_ref(), jsep) else {
            return;
        };
        if !jsep.is_offer() {
            return;
        }
        let call = leg.call;
        let held = offer_holds_us(&jsep.sdp);
        match leg.media.accept_offer(&jsep.sdp).await {
            Ok(answer) => {
                if let Some(conn) = &self.conn {
                    if let Err(e) = conn.sip.update(Jsep::answer(answer)).await {
                        log::warn!("{call}: answering the re-INVITE failed: {e}");
                    }
                }
                log::info!("{call}: far end {}", if held { "put us on hold" } else { "resumed" });
                self.signal(call, SignalEvent::RemoteHold(held));
            }
            Err(e) => log::warn!("{call}: re-INVITE offer unusable: {e}"),
        }
    }

    fn on_media(&mut self, ev: MediaEvent) {
        let Some(leg) = self.leg.as_mut() else { return };
        let call = leg.call;
        match ev {
            MediaEvent::RemoteAudioLevel { dbfs } => self.media_signal(call, MediaSignal::AudioLevel { dbfs }),
            MediaEvent::FirstRemoteVideoFrame => {
                leg.remote_video_flowing = true;
                leg.frames_changed_at = Instant::now();
                self.media_signal(call, MediaSignal::RemoteVideo(true));
            }
            MediaEvent::Failed(why) => self.media_signal(call, MediaSignal::Failed(why)),
            MediaEvent::Connected => log::info!("{call}: media connected"),
            other => log::debug!("{call}: media {other:?}"),
        }
    }

    /// Remote video counts as available while frames keep being decoded.
    fn watch_video(&mut self) {
        let Some(leg) = self.leg.as_mut() else { return };
        let frames = leg.media.stats().video_frames_decoded;
        let now = Instant::now();
        if frames != leg.frames_seen {
            leg.frames_seen = frames;
            leg.frames_changed_at = now;
        }
        let flowing = frames > 0 && now.duration_since(leg.frames_changed_at) < VIDEO_STALL;
        if flowing != leg.remote_video_flowing {
            leg.remote_video_flowing = flowing;
            let call = leg.call;
            self.media_signal(call, MediaSignal::RemoteVideo(flowing));
        }
    }

    async fn on_connection(&mut self, ev: ConnectionEvent) {
        match ev {
            ConnectionEvent::Connected { .. } => {}
            ConnectionEvent::Reconnecting { attempt, reason } => {
                log::warn!("Janus connection lost ({reason}); reconnecting (attempt {attempt})");
                self.shared.engine_core(|core, _| core.set_connection_state(ConnectionState::Reconnecting));
            }
            ConnectionEvent::Reclaimed { url, session_id } => {
                log::info!("Janus session {session_id} reclaimed on {url}");
                self.shared.engine_core(|core, _| core.set_connection_state(ConnectionState::Ready));
            }
            ConnectionEvent::Unauthorized { request } => {
                log::warn!("Janus refused '{request}' as unauthorized: refreshing the token now");
                self.next_refresh = Some(Instant::now());
            }
            ConnectionEvent::Lost { reason } => self.lost = Some(reason),
        }
    }

    /// The session is gone: end the calls and build a new connection, with backoff.
    async fn on_session_lost(&mut self, reason: &str) {
        log::error!("Janus session lost: {reason}");
        self.conn = None;
        self.shared.engine_core(|core, _| {
            core.on_session_lost();
            core.set_connection_state(ConnectionState::Reconnecting);
        });
        while let Some(cmd) = self.shared.engine_core(|core, _| core.poll_command()) {
            self.execute(cmd).await;
        }
        let backoff = self.config().refresh.retry;
        let mut attempt = 0u32;
        loop {
            let token = match self.credential.get().await {
                Ok(t) => t,
                Err(e) => {
                    log::warn!("reconnect: no token ({e})");
                    self.token.clone()
                }
            };
            match open_connection(self.config(), &token).await {
                Ok(conn) => {
                    self.token = token;
                    self.conn = Some(conn);
                    self.shared.engine_core(|core, _| core.set_connection_state(ConnectionState::Ready));
                    self.schedule_refresh().await;
                    return;
                }
                Err(e) => {
                    let delay = backoff.delay(attempt, rand::random::<f64>()).unwrap_or(backoff.max);
                    log::warn!("reconnect attempt {attempt} failed ({e}); next in {} ms", delay.as_millis());
                    attempt = attempt.saturating_add(1);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Fetches a new token and swaps its grants into the live connection: the Janus token for every later
    /// request, the SIP credentials by refreshing the registration.
    async fn refresh_token(&mut self) {
        self.next_refresh = None;
        match self.credential.refresh().await {
            Ok(token) => {
                self.refresh_attempt = 0;
                if let Some(conn) = &self.conn {
                    match token.janus() {
                        Ok(grant) => conn.session.set_token(grant.token.clone()),
                        Err(e) => log::error!("refreshed token unusable for Janus: {e}"),
                    }
                    match register_body(self.config(), &token, true) {
                        Ok(body) => {
                            if let Err(e) = conn.sip.send(body, None).await {
                                log::warn!("SIP re-registration with the new credentials failed: {e}");
                            }
                        }
                        Err(e) => log::error!("refreshed token unusable for SIP: {e}"),
                    }
                }
                log::info!("token swapped in (valid for {} s)", token.expires_at().saturating_sub(unix_now()));
                self.token = token;
                self.schedule_refresh().await;
            }
            Err(e) => {
                let retry = self.config().refresh.retry;
                let delay = retry.delay(self.refresh_attempt, rand::random::<f64>()).unwrap_or(retry.max);
                self.refresh_attempt = self.refresh_attempt.saturating_add(1);
                log::warn!("token refresh failed ({e}); next attempt in {} ms", delay.as_millis());
                self.next_refresh = Some(Instant::now() + delay);
            }
        }
    }

    async fn shutdown(&mut self) {
        log::info!("shutting down: hanging up, unregistering");
        let active: Vec<CallId> = self.shared.engine_core(|core, _| core.active_calls().map(|c| c.id).collect());
        for call in active {
            let _ = self.shared.engine_core(|core, now| core.hang_up(call, now));
        }
        while let Some(cmd) = self.shared.engine_core(|core, _| core.poll_command()) {
            self.execute(cmd).await;
        }
        let with_media: Vec<CallId> =
            self.shared.media.lock().unwrap_or_else(|p| p.into_inner()).keys().copied().collect();
        for call in with_media {
            self.release(call).await;
        }
        if let Some(mut conn) = self.conn.take() {
            if conn.sip.unregister().await.is_ok() {
                let wait = async {
                    while let Some(ev) = conn.sip_events.recv().await {
                        if matches!(ev, SipEvent::Unregistered { .. }) {
                            return;
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(2), wait).await;
            }
            let _ = conn.session.destroy().await;
        }
        self.shared.engine_core(|core, _| {
            core.on_session_lost();
            core.set_connection_state(ConnectionState::Disconnected);
        });
        self.shared.bus.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_is_read_from_the_audio_direction_of_an_offer() {
        let held = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\nm=video 9 UDP 96\r\na=sendrecv\r\n";
        // Janus relays the far end's sendonly as what it offers us: we would only receive.
        let sendonly = "v=0\r\nm=audio 9 RTP 111\r\na=sendonly\r\n";
        let resumed = "v=0\r\nm=audio 9 RTP 111\r\na=sendrecv\r\n";
        let inactive = "v=0\r\nm=audio 9 RTP 111\r\na=inactive\r\n";
        assert!(!offer_holds_us(held));
        assert!(offer_holds_us(sendonly));
        assert!(offer_holds_us(inactive));
        assert!(!offer_holds_us(resumed));
    }

    #[test]
    fn video_is_read_from_the_video_section_port() {
        assert!(sdp_has_video("m=audio 5000 RTP 0\r\nm=video 5002 RTP 96\r\n"));
        assert!(!sdp_has_video("m=audio 5000 RTP 0\r\nm=video 0 RTP 96\r\n"));
        assert!(!sdp_has_video("m=audio 5000 RTP 0\r\n"));
    }
}

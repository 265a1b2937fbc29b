//! The engine task of a `CallClient`: it owns the Janus session and its SIP handles (the registered account and
//! helper handles), the media session of each call and the token refresh schedule, feeds what they report into
//! the calling core, and carries out the core's commands. It never sleeps: a Janus timing rule is a deadline
//! (`handles`, `deferred`, `upkeep`); token fetches and reconnection attempts run beside it and report back; a
//! request to a SIP handle is queued on that handle's lane (`sip_lane`) and its outcome comes back as an input,
//! so a slow Janus holds up no more than the requests waiting for it. What the API handles reach too is in
//! `client::shared`.

mod deferred;
mod group;
mod handles;
mod invite_flights;
mod orphans;
mod sip_lane;
mod upkeep;

use super::credential::TokenCredential;
use super::shared::Shared;
use super::{ClientConfig, ClientError};
use crate::calling::redact::Loggable;
use crate::calling::state_info::{self, PeerStateInfo};
use crate::calling::token::AccessToken;
use crate::calling::{subcode, CallEndReason, CallId, Command, ConnectionState, Identifier, MediaSignal, SignalEvent};
use crate::media::{sdp, DtmfSendMode, MediaEvent, MediaSession};
use crate::signaling::{
    helper_registration, registration, ConnectionEvent, JanusConfig, JanusEvent, JanusSession, Jsep, SignalingError,
    SipEvent, SipEvents, SipHandle, SipRegister,
};
use sip_lane::{LaneError, Sent, SipDone, SipLane, SipRequest};
use std::collections::HashMap;
use std::future::pending;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Remote video counts as stopped when no frame was decoded for this long.
const VIDEO_STALL: Duration = Duration::from_millis(1500);

/// One sip-plugin handle and the call bound to it. The first is the registered account (the master); the others
/// are its helpers, so that one identity can hold a call on one handle while another rings, or while Janus tears
/// the previous call down (a busy handle answers 486 by itself).
struct Slot {
    sip: SipHandle,
    /// The handle's requests, sent in order beside the engine.
    lane: SipLane,
    /// The call this handle carries and the handle's timing rules (`handles`).
    binding: handles::Binding,
    /// The offer of the incoming call that rings on this handle.
    pending_offer: Option<String>,
    leg: Option<Leg>,
}

/// The connection to the servers: a Janus session with a registered SIP handle and its helpers.
struct Connection {
    session: JanusSession,
    slots: Vec<Slot>,
    conn_events: mpsc::Receiver<ConnectionEvent>,
    /// Tells the events of this connection's handles from those of a connection that was replaced.
    generation: u64,
}

/// The media state of the call on a handle.
struct Leg {
    media: MediaSession,
    forwarder: tokio::task::JoinHandle<()>,
    /// The far end's session description has been applied.
    remote_sdp_applied: bool,
    /// Our answer, sent as early media (183) and not yet in a 200 OK.
    early_answer: Option<String>,
    established: bool,
    remote_video_flowing: bool,
    frames_seen: u64,
    frames_changed_at: Instant,
    sent_state: (bool, bool),
}

/// An event of a handle, tagged with its connection generation and slot.
struct SlotEvent {
    generation: u64,
    slot: usize,
    event: Option<SipEvent>,
}

/// Starts a client's engine: the token, the connection (session, registration, helper handles), then the engine
/// task; returns the state the API shares with it once calls can be placed and received.
pub(super) async fn start(credential: TokenCredential, config: ClientConfig) -> Result<Arc<Shared>, ClientError> {
    let token = credential.get().await?;
    // The error names the claim, never the user name it holds.
    let local_user = token.user_id()?;
    let (shutdown_tx, shutdown_rx) = mpsc::channel(1);
    let shared = Arc::new(Shared::new(config.clone(), local_user, shutdown_tx));
    let (sip_tx, sip_rx) = mpsc::channel(64);
    let (done_tx, done_rx) = mpsc::channel(64);
    let channels = Channels { sip_tx, done_tx };
    let (media_tx, media_rx) = mpsc::channel(64);
    let (room_tx, room_rx) = mpsc::channel(group::ROOM_EVENT_QUEUE);
    let (refreshed_tx, refreshed_rx) = mpsc::channel(1);
    let (reconnected_tx, reconnected_rx) = mpsc::channel(1);
    shared.with_core(|core, _| core.set_connection_state(ConnectionState::Connecting));
    let conn = match open_connection(&config, &token, &channels, 1).await {
        Ok(c) => c,
        Err(e) => {
            shared.with_core(|core, _| core.set_connection_state(ConnectionState::Disconnected));
            return Err(e);
        }
    };
    shared.with_core(|core, _| core.set_connection_state(ConnectionState::Ready));
    let upkeep = upkeep::Upkeep::connected(config.refresh.retry, credential.refresh_due_in().await, Instant::now());
    let engine = Engine {
        shared: shared.clone(),
        credential,
        token,
        conn: Some(conn),
        channels,
        sip_rx,
        done_rx,
        media_tx,
        media_rx,
        upkeep,
        lost: None,
        groups: HashMap::new(),
        room_tx,
        room_rx,
        next_serial: 0,
        invites_in_flight: invite_flights::InviteFlights::default(),
        orphans: orphans::Orphans::default(),
        early_media_unsupported: false,
        deferred: deferred::Deferred::default(),
        refreshing: None,
        refreshed_tx,
        refreshed_rx,
        reconnecting: None,
        reconnected_tx,
        reconnected_rx,
    };
    tokio::spawn(engine.run(shutdown_rx));
    Ok(shared)
}

/// The `register` request for the token's SIP grant (`refresh`: new credentials on a live registration).
fn register_request(config: &ClientConfig, token: &AccessToken, refresh: bool) -> Result<SipRegister, ClientError> {
    let grant = token.sip()?;
    let ttl = u32::try_from(config.register_ttl.as_secs()).unwrap_or(u32::MAX);
    let mut params = registration(grant, ttl)?;
    params.display_name = config.display_name.clone();
    params.user_agent = Some(format!("callbox/{}", env!("CARGO_PKG_VERSION")));
    params.refresh = refresh.then_some(true);
    Ok(params)
}

/// Forwards one handle's events to the engine's single queue, tagged; `None` when the handle's stream ended.
fn forward_sip_events(mut events: SipEvents, tx: mpsc::Sender<SlotEvent>, generation: u64, slot: usize) {
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if tx.send(SlotEvent { generation, slot, event: Some(event) }).await.is_err() {
                return;
            }
        }
        let _ = tx.send(SlotEvent { generation, slot, event: None }).await;
    });
}

/// Waits for `Registered` (or the failure) on a handle's own stream, before it is handed to the forwarder.
async fn wait_registered(events: &mut SipEvents, user: &str, limit: Duration) -> Result<Option<u64>, ClientError> {
    let wait = async {
        loop {
            match events.recv().await {
                Some(SipEvent::Registered { master_id, .. }) => return Ok(master_id),
                Some(SipEvent::RegistrationFailed { code, reason }) => {
                    return Err(ClientError::Registration { user: user.to_string(), code, reason })
                }
                // Never its content: a MESSAGE may carry an invitation's PIN.
                Some(SipEvent::Message { .. }) => log::info!("a MESSAGE arrived while registering: not taken in"),
                Some(other) => log::debug!("while registering: {other:?}"),
                None => return Err(ClientError::Closed),
            }
        }
    };
    tokio::time::timeout(limit, wait).await.map_err(|_| ClientError::Timeout("SIP registration"))?
}

/// Where a connection's handles report: their events, and the outcomes of the requests sent them.
#[derive(Clone)]
struct Channels {
    sip_tx: mpsc::Sender<SlotEvent>,
    done_tx: mpsc::Sender<SipDone>,
}

async fn open_connection(
    config: &ClientConfig,
    token: &AccessToken,
    channels: &Channels,
    generation: u64,
) -> Result<Connection, ClientError> {
    let janus = token.janus()?;
    let mut jc = JanusConfig::new(config.janus_urls.clone(), janus.token.clone());
    jc.request_timeout = config.request_timeout;
    jc.tls = config.janus_tls.clone();
    jc.keepalive_interval = config.keepalive_interval;
    jc.reclaim_window = config.reclaim_window;
    let (session, conn_events) = JanusSession::connect(jc).await?;
    let result = async {
        let user = token.sip()?.uri.clone();
        let (master, mut master_events) = SipHandle::attach(&session).await?;
        let master_id = match master.register(&register_request(config, token, false)?).await? {
            SipEvent::Registered { master_id, .. } => master_id,
            _ => wait_registered(&mut master_events, &user, config.request_timeout).await?,
        };
        let mut handles = vec![(master, master_events)];
        match master_id {
            Some(master_id) => {
                for _ in 0..config.helper_handles {
                    let (helper, mut helper_events) = SipHandle::attach(&session).await?;
                    // A helper is "registered" at once, in the reply itself (no REGISTER is sent).
                    let request = helper_registration(&user, master_id);
                    if !matches!(helper.register(&request).await?, SipEvent::Registered { .. }) {
                        wait_registered(&mut helper_events, &user, config.request_timeout).await?;
                    }
                    handles.push((helper, helper_events));
                }
            }
            None => log::warn!("Janus gave no master id: one call at a time, no helper handles"),
        }
        log::info!(
            "registered as {user} through {} (session {}, {} handles)",
            session.url(),
            session.session_id(),
            handles.len()
        );
        let slots = handles
            .into_iter()
            .enumerate()
            .map(|(i, (sip, events))| {
                forward_sip_events(events, channels.sip_tx.clone(), generation, i);
                let lane = SipLane::start(sip.clone(), generation, i, channels.done_tx.clone());
                Slot { sip, lane, binding: handles::Binding::default(), pending_offer: None, leg: None }
            })
            .collect();
        Ok::<_, ClientError>(slots)
    }
    .await;
    match result {
        Ok(slots) => Ok(Connection { session, slots, conn_events, generation }),
        Err(e) => {
            let _ = session.destroy().await;
            Err(e)
        }
    }
}

/// Forwards a media session's events to the engine's queue, tagged with its call.
fn forward_media_events(
    call: CallId,
    media: &MediaSession,
    tx: mpsc::Sender<(CallId, MediaEvent)>,
) -> tokio::task::JoinHandle<()> {
    let mut events = media.events();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if tx.send((call, e)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => log::debug!("{call}: media events lagged by {n}"),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

async fn next_conn_event(conn: &mut Option<Connection>) -> Option<ConnectionEvent> {
    match conn {
        Some(c) => c.conn_events.recv().await,
        None => pending().await,
    }
}

/// Waits for the engine's next deadline of one kind (never, without one).
async fn deadline(at: Option<Instant>) {
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
    channels: Channels,
    sip_rx: mpsc::Receiver<SlotEvent>,
    /// The outcomes of the requests the handles' lanes sent.
    done_rx: mpsc::Receiver<SipDone>,
    media_tx: mpsc::Sender<(CallId, MediaEvent)>,
    media_rx: mpsc::Receiver<(CallId, MediaEvent)>,
    /// When the token is fetched again and a lost connection rebuilt, and the current connection generation.
    upkeep: upkeep::Upkeep,
    /// Set when the session is found gone; the main loop then rebuilds the connection.
    lost: Option<String>,
    /// Group calls in their rooms.
    groups: HashMap<CallId, group::GroupLeg>,
    room_tx: mpsc::Sender<group::RoomEvent>,
    room_rx: mpsc::Receiver<group::RoomEvent>,
    /// Tells the events of a group call's handles from those of an earlier leg.
    next_serial: u64,
    /// Invitations sent, until their delivery is known.
    invites_in_flight: invite_flights::InviteFlights,
    /// Rooms of ours a lost session left open.
    orphans: orphans::Orphans,
    /// Janus answered a `progress` request as unknown (older than 1.3.1): incoming calls get no early media.
    early_media_unsupported: bool,
    /// Commands waiting for a Janus timing rule (handle reuse, invite settle), each call's in order.
    deferred: deferred::Deferred,
    /// The token fetch running beside the engine (a slow token endpoint must not freeze calling).
    refreshing: Option<tokio::task::JoinHandle<()>>,
    refreshed_tx: mpsc::Sender<Refreshed>,
    refreshed_rx: mpsc::Receiver<Refreshed>,
    /// The attempt at rebuilding a lost connection running beside the engine.
    reconnecting: Option<tokio::task::JoinHandle<()>>,
    reconnected_tx: mpsc::Sender<Reconnected>,
    reconnected_rx: mpsc::Receiver<Reconnected>,
}

/// What a token fetch beside the engine brought back, and when the next one is due.
struct Refreshed {
    result: Result<AccessToken, crate::calling::TokenError>,
    due_in: Option<Duration>,
}

/// What a reconnection attempt beside the engine brought back.
struct Reconnected {
    generation: u64,
    result: Result<(Connection, AccessToken), ClientError>,
    refresh_due_in: Option<Duration>,
}

/// The longest the engine's shutdown takes (unregister, hang-ups, queued requests), plus a second for the session's
/// destroy: `TimeoutStopSec=` in board/systemd/callbox.service is set above it.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(8);

impl Engine {
    fn config(&self) -> &ClientConfig {
        &self.shared.config
    }

    async fn run(mut self, mut shutdown_rx: mpsc::Receiver<oneshot::Sender<()>>) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // A sign of life for the watchdog: the tick below makes this loop turn at least four times a second.
            self.shared.heartbeat.beat();
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
                Some(ev) = self.sip_rx.recv() => {
                    if ev.generation == self.upkeep.generation() {
                        match ev.event {
                            Some(event) => self.on_sip(ev.slot, event).await,
                            None => self.lost = Some(format!("the event stream of SIP handle {} ended", ev.slot)),
                        }
                    }
                }
                Some(done) = self.done_rx.recv() => {
                    if done.generation == self.upkeep.generation() {
                        self.on_sip_done(done).await;
                    }
                }
                ev = next_conn_event(&mut self.conn) => match ev {
                    Some(ev) => self.on_connection(ev).await,
                    None => self.lost = Some("the Janus connection ended".into()),
                },
                Some((call, ev)) = self.media_rx.recv() => self.on_media(call, ev),
                Some(ev) = self.room_rx.recv() => self.on_room(ev).await,
                _ = deadline(core_deadline) => {
                    self.shared.engine_core(|core, now| core.handle_timeout(now));
                }
                _ = deadline(self.deferred.poll_timeout()) => self.run_due_commands().await,
                _ = deadline(self.upkeep.poll_timeout()) => self.run_due_upkeep(),
                Some(refreshed) = self.refreshed_rx.recv() => self.on_refreshed(refreshed).await,
                Some(reconnected) = self.reconnected_rx.recv() => self.on_reconnected(reconnected).await,
                _ = tick.tick() => self.watch_video(),
            }
            // While reconnecting there is no connection: the loss is already being dealt with.
            if self.conn.is_some() {
                if let Some(reason) = self.lost.clone() {
                    self.on_session_lost(&reason).await;
                }
            }
        }
    }

    // ----- handles -----

    fn slot_of(&self, call: CallId) -> Option<usize> {
        handles::of_call(self.conn.as_ref()?.slots.iter().map(|s| &s.binding), call)
    }

    fn slot(&mut self, index: usize) -> Option<&mut Slot> {
        self.conn.as_mut()?.slots.get_mut(index)
    }

    fn slot_for_call(&mut self, call: CallId) -> Option<&mut Slot> {
        let i = self.slot_of(call)?;
        self.slot(i)
    }

    /// Queues a request on the lane of handle `index`; its outcome comes back as a `SipDone`. One that cannot be
    /// queued fails at once.
    fn request(&mut self, index: usize, call: Option<CallId>, request: SipRequest) {
        let queued = match self.slot(index) {
            Some(slot) => slot.lane.send(call, request),
            None => Err((Sent::from(&request), LaneError::NotSent("not connected"))),
        };
        if let Err((sent, e)) = queued {
            self.request_failed(index, call, sent, &e);
        }
    }

    /// Queues a request about `call` on its handle (nothing when the call has none: it is over there).
    fn request_for(&mut self, call: CallId, request: SipRequest) {
        if let Some(index) = self.slot_of(call) {
            self.request(index, Some(call), request);
        }
    }

    // ----- commands of the core -----

    /// A command of the core: run now, or kept until a Janus timing rule lets it go (`deferred`); a command of a
    /// call that has one waiting queues behind it.
    async fn execute(&mut self, cmd: Command) {
        let now = Instant::now();
        let wait_until = if self.deferred.holds(cmd.call()) { Some(now) } else { self.must_wait_until(&cmd, now) };
        let Some(at) = wait_until else { return self.run_command(cmd).await };
        log::debug!("{}: command deferred {} ms", cmd.call(), at.saturating_duration_since(now).as_millis());
        if let Err(cmd) = self.deferred.push(at, cmd) {
            log::warn!("{}: too many commands waiting ({}): this one runs now", cmd.call(), self.deferred.len());
            self.run_command(cmd).await;
        }
    }

    /// The deferred commands whose time has come. One whose rule still says wait (its handle was taken meanwhile)
    /// goes back to the head of its call's queue.
    async fn run_due_commands(&mut self) {
        while let Some(cmd) = self.deferred.poll_due(Instant::now()) {
            match self.must_wait_until(&cmd, Instant::now()) {
                Some(at) => {
                    self.deferred.requeue(at, cmd);
                    return;
                }
                None => self.run_command(cmd).await,
            }
        }
    }

    /// When a Janus timing rule lets `cmd` go, if that is later than `now`. An outgoing call that must wait has
    /// its handle reserved meanwhile (bound to the call, with no media yet).
    fn must_wait_until(&mut self, cmd: &Command, now: Instant) -> Option<Instant> {
        let at = match cmd {
            Command::PlaceCall { call, .. } => {
                let index = match self.slot_of(*call) {
                    Some(index) => index,
                    None => self.free_slot_for_outgoing()?,
                };
                let slot = self.slot(index)?;
                let at = slot.binding.reusable_at().filter(|&at| at > now)?;
                slot.binding.bind(*call);
                at
            }
            Command::Answer { call } | Command::AnswerEarly { call } | Command::Decline { call, .. } => {
                let slot = self.slot_for_call(*call)?;
                slot.binding.settled_at()?
            }
            _ => return None,
        };
        (at > now).then_some(at)
    }

    /// The free handle released the longest ago (one never used first): Janus lets go of a handle's previous
    /// call slowly (`handles::HANDLE_REUSE_DELAY`).
    fn free_slot_for_outgoing(&self) -> Option<usize> {
        handles::pick_for_outgoing(self.conn.as_ref()?.slots.iter().map(|s| &s.binding))
    }

    async fn run_command(&mut self, cmd: Command) {
        log::debug!("command {:?}", Loggable(&cmd));
        if self.execute_group(&cmd).await {
            return;
        }
        match cmd {
            Command::PlaceCall { call, target } => {
                if let Err(e) = self.place_call(call, &target).await {
                    log::warn!("{call}: call to {target} could not be placed: {e}");
                    self.setup_failed(call, &format!("call setup failed: {e}"));
                }
            }
            Command::Answer { call } => {
                if let Err(e) = self.answer(call).await {
                    log::warn!("{call}: answering failed: {e}");
                    self.setup_failed(call, &format!("answer failed: {e}"));
                }
            }
            Command::AnswerEarly { call } => {
                // Without early media the call simply rings on; answering builds the media then (the session built
                // for it is kept and answered with).
                if let Err(e) = self.answer_early(call).await {
                    log::warn!("{call}: early media not sent: {e}");
                }
            }
            Command::Decline { call, code } => {
                let Some(index) = self.slot_of(call) else { return };
                if let Some(slot) = self.slot(index) {
                    slot.pending_offer = None;
                    slot.binding.acted_on();
                }
                self.request(index, Some(call), SipRequest::Decline { code });
            }
            Command::HangUp { call } => self.request_for(call, SipRequest::HangUp),
            Command::Hold { call } => self.request_for(call, SipRequest::Hold(true)),
            Command::Resume { call } => self.request_for(call, SipRequest::Hold(false)),
            Command::SendDtmf { call, digit } => {
                // RFC 4733 in the audio stream where the far end negotiated it (what PSTN gateways and SIP phones
                // understand), else, or when configured so, SIP INFO. Digits are door codes: never logged, at any
                // level.
                if self.config().media.dtmf.send == DtmfSendMode::TelephoneEvent {
                    if let Some(leg) = self.slot_for_call(call).and_then(|s| s.leg.as_ref()) {
                        match leg.media.send_dtmf(digit) {
                            Ok(()) => {
                                log::debug!("{call}: DTMF digit queued as a telephone-event");
                                return;
                            }
                            Err(e) => log::debug!("{call}: DTMF digit goes as SIP INFO ({e})"),
                        }
                    }
                }
                self.request_for(call, SipRequest::DtmfInfo(digit));
            }
            Command::SetMicrophoneMuted { call, muted } => {
                if let Some(leg) = self.slot_for_call(call).and_then(|s| s.leg.as_ref()) {
                    leg.media.set_audio_muted(muted);
                }
            }
            Command::SetVideoEnabled { call, enabled } => {
                if let Some(leg) = self.slot_for_call(call).and_then(|s| s.leg.as_ref()) {
                    leg.media.set_video_enabled(enabled);
                }
            }
            Command::SendState { call, muted, video_on } => self.send_state(call, muted, video_on),
            Command::ReleaseMedia { call } => self.release(call).await,
            Command::DropSipLeg { call } => self.drop_sip_leg(call).await,
            // The group commands are `execute_group`'s; one about a call that is not in a room has nothing to do.
            Command::CreateRoom { call }
            | Command::Invite { call, .. }
            | Command::CancelInvitation { call, .. }
            | Command::Subscribe { call, .. }
            | Command::Unsubscribe { call, .. }
            | Command::Kick { call, .. } => log::debug!("{call}: group command for a call not in a room skipped"),
        }
    }

    /// Creates the media session of `call` on handle `index`.
    async fn new_leg(&mut self, index: usize, call: CallId) -> Result<MediaSession, ClientError> {
        let media = MediaSession::new(self.config().media.clone()).await?;
        let forwarder = forward_media_events(call, &media, self.media_tx.clone());
        self.shared.media.lock().unwrap_or_else(|p| p.into_inner()).insert(call, media.clone());
        let leg = Leg {
            media: media.clone(),
            forwarder,
            remote_sdp_applied: false,
            early_answer: None,
            established: false,
            remote_video_flowing: false,
            frames_seen: 0,
            frames_changed_at: Instant::now(),
            sent_state: (false, true),
        };
        match self.slot(index) {
            Some(slot) => {
                slot.binding.bind(call);
                slot.leg = Some(leg);
                Ok(media)
            }
            None => {
                leg.forwarder.abort();
                media.close().await;
                Err(ClientError::Closed)
            }
        }
    }

    async fn place_call(&mut self, call: CallId, target: &Identifier) -> Result<(), String> {
        let domain = self.token.sip().map_err(|e| e.to_string())?.realm.clone();
        let uri = target.sip_uri(&domain);
        if self.conn.is_none() {
            return Err("not connected".into());
        }
        // The handle reserved while the call waited for it, else the free one released the longest ago.
        let index = self.slot_of(call).or_else(|| self.free_slot_for_outgoing()).ok_or("every SIP handle is busy")?;
        let media = self.new_leg(index, call).await.map_err(|e| e.to_string())?;
        let offer = media.create_offer().await.map_err(|e| e.to_string())?;
        log::info!("{call}: calling {uri} (handle {index})");
        self.request(index, Some(call), SipRequest::Call { uri, offer });
        Ok(())
    }

    /// Early media for an incoming call: its media is built (microphone muted, camera off: nothing of ours leaves
    /// before the user answers) and the answer goes out as 183 Session Progress; `answer` later reuses it.
    async fn answer_early(&mut self, call: CallId) -> Result<(), String> {
        if self.early_media_unsupported {
            return Ok(());
        }
        let index = self.slot_of(call).ok_or("the incoming call is no longer offered")?;
        let slot = self.slot(index).ok_or("not connected")?;
        let offer = slot.pending_offer.clone().ok_or("the INVITE carried no offer")?;
        slot.binding.acted_on();
        let media = self.new_leg(index, call).await.map_err(|e| e.to_string())?;
        media.set_audio_muted(true);
        media.set_video_enabled(false);
        let answer = media.accept_offer(&offer).await.map_err(|e| e.to_string())?;
        let video = sdp::has_video(&offer) && sdp::has_video(&answer);
        if let Some(leg) = self.slot(index).and_then(|s| s.leg.as_mut()) {
            leg.remote_sdp_applied = true;
            leg.early_answer = Some(answer.clone());
        }
        // Janus 1.1.2 (Debian 12) answers 442 "Unknown request (progress)": the media built stays for `answer`.
        self.request(index, Some(call), SipRequest::Progress { answer, video });
        Ok(())
    }

    async fn answer(&mut self, call: CallId) -> Result<(), String> {
        let index = self.slot_of(call).ok_or("the incoming call is no longer offered")?;
        let slot = self.slot(index).ok_or("not connected")?;
        if let Some(answer) = slot.leg.as_mut().and_then(|l| l.early_answer.take()) {
            // Answered after early media: the same session, the same answer, now in the 200 OK.
            slot.pending_offer = None;
            self.request(index, Some(call), SipRequest::Accept { jsep: Jsep::answer(answer), video: None });
            return Ok(());
        }
        let Some(offer) = slot.pending_offer.take() else {
            // An offerless INVITE (late offer, what some PBXs and gateways send): our offer goes in the 200 OK,
            // and the far end's answer comes in the ACK, which Janus reports as `accepted` with it (`on_sip`).
            slot.binding.acted_on();
            let media = self.new_leg(index, call).await.map_err(|e| e.to_string())?;
            let offer = media.create_offer().await.map_err(|e| e.to_string())?;
            log::info!("{call}: answering an offerless INVITE with our offer");
            self.request(index, Some(call), SipRequest::Accept { jsep: Jsep::offer(offer), video: None });
            return Ok(());
        };
        slot.binding.acted_on();
        let media = self.new_leg(index, call).await.map_err(|e| e.to_string())?;
        let answer = media.accept_offer(&offer).await.map_err(|e| e.to_string())?;
        if let Some(leg) = self.slot(index).and_then(|s| s.leg.as_mut()) {
            leg.remote_sdp_applied = true;
        }
        let video = sdp::has_video(&offer) && sdp::has_video(&answer);
        self.request(index, Some(call), SipRequest::Accept { jsep: Jsep::answer(answer), video: Some(video) });
        Ok(())
    }

    fn send_state(&mut self, call: CallId, muted: bool, video_on: bool) {
        let Some(leg) = self.slot_for_call(call).and_then(|s| s.leg.as_mut()) else { return };
        if !leg.established || leg.sent_state == (muted, video_on) {
            return;
        }
        leg.sent_state = (muted, video_on);
        let body = state_info::encode(muted, video_on);
        self.request_for(call, SipRequest::StateInfo { content_type: state_info::CONTENT_TYPE, body });
    }

    /// The call is over: close its media and free its handle (hanging up Janus's side of the PeerConnection:
    /// until it is gone the handle refuses a new call and answers incoming ones 486).
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
            self.shared.keep_final_stats(call, s);
            media.close().await;
        }
        let Some(index) = self.slot_of(call) else { return };
        let Some(slot) = self.slot(index) else { return };
        if let Some(leg) = slot.leg.take() {
            leg.forwarder.abort();
        }
        slot.pending_offer = None;
        // Free from now: the lane sends a next call on this handle only after this hangup, and the reuse delay
        // counts from here.
        slot.binding.released(Instant::now());
        self.request(index, Some(call), SipRequest::ReleasePeerConnection);
    }

    /// A call escalated into a room no longer needs its 1:1 SIP leg: hang it up and close its media, without
    /// telling the core (the call goes on in the room; the leg's events are no longer the call's).
    async fn drop_sip_leg(&mut self, call: CallId) {
        let Some(index) = self.slot_of(call) else { return };
        let Some(slot) = self.slot(index) else { return };
        slot.pending_offer = None;
        // Not reused before the hang-up below is done or given up (plus the usual delay after a call).
        slot.binding.leg_dropped(Instant::now());
        let leg = slot.leg.take();
        let sip = slot.sip.clone();
        if let Some(leg) = leg {
            leg.forwarder.abort();
            leg.media.close().await;
        }
        // The room's publisher now stands for the call's media.
        if let Some(media) = self.groups.get(&call).map(|g| g.media()) {
            self.shared.media.lock().unwrap_or_else(|p| p.into_inner()).insert(call, media);
        }
        // Both sides drop the leg at about the same time: a BYE crossing the other's may go unanswered, which must
        // not hold up the engine (the room's own setup is waiting behind it). Bounded, so that the handle is free
        // for the next call by `released_at`.
        tokio::spawn(async move {
            let hang_up = async {
                if let Err(e) = sip.hangup().await {
                    log::debug!("{call}: SIP leg hangup: {e}");
                }
                if let Err(e) = sip.handle().hangup().await {
                    log::debug!("{call}: SIP leg PeerConnection hangup: {e}");
                }
            };
            if tokio::time::timeout(handles::SIP_LEG_DROP_LIMIT, hang_up).await.is_err() {
                log::debug!("{call}: SIP leg hangup unanswered within {:?}", handles::SIP_LEG_DROP_LIMIT);
            }
        });
        log::info!("{call}: the 1:1 leg is closed; the call goes on in its room");
    }

    // ----- outcomes of requests -----

    /// A request sent on a handle's lane was answered (or failed).
    async fn on_sip_done(&mut self, done: SipDone) {
        let SipDone { slot: index, call, sent, result, .. } = done;
        let reply = match result {
            Ok(reply) => reply,
            Err(e) => return self.request_failed(index, call, sent, &e),
        };
        let Some(call) = call else { return };
        match sent {
            Sent::Call | Sent::Accept { .. } => {
                if let Sent::Accept { video: Some(video) } = sent {
                    self.media_signal(call, MediaSignal::VideoNegotiated(video));
                }
                if let Some(reply) = reply {
                    self.on_sip(index, reply).await;
                }
            }
            Sent::Progress { video } => {
                log::info!("{call}: early media sent (183 Session Progress)");
                self.media_signal(call, MediaSignal::VideoNegotiated(video));
                self.signal(call, SignalEvent::EarlyMedia);
            }
            Sent::Hold(hold) => self.signal(call, SignalEvent::LocalHold(hold)),
            _ => {}
        }
    }

    /// A request failed (or could not be queued): what that means for its call.
    fn request_failed(&mut self, index: usize, call: Option<CallId>, sent: Sent, e: &LaneError) {
        let Some(call) = call else {
            match sent {
                Sent::Register => log::warn!("SIP re-registration with the new credentials failed: {e}"),
                _ => log::debug!("handle {index}: {sent:?} failed: {e}"),
            }
            return;
        };
        match sent {
            Sent::Call => {
                log::warn!("{call}: the call could not be placed: {e}");
                self.setup_failed(call, &format!("call setup failed: {e}"));
            }
            Sent::Accept { .. } => {
                log::warn!("{call}: answering failed: {e}");
                self.setup_failed(call, &format!("answer failed: {e}"));
            }
            Sent::Progress { .. } => {
                if let LaneError::Janus(SignalingError::Plugin { code: 442, .. }) = e {
                    if !self.early_media_unsupported {
                        log::warn!(
                            "Janus's sip plugin has no 'progress' request (Janus older than 1.3.1): incoming calls \
                             ring without early video"
                        );
                    }
                    self.early_media_unsupported = true;
                } else {
                    log::warn!("{call}: early media not sent: {e}");
                }
            }
            Sent::HangUp => {
                // No SIP call to end (it never left, or it already ended): the call is over here.
                log::info!("{call}: hangup: {e}");
                self.signal(call, SignalEvent::Hangup { code: 200, reason: "hung up".into() });
            }
            Sent::Hold(hold) => log::warn!("{call}: {} failed: {e}", if hold { "hold" } else { "resume" }),
            Sent::Decline => log::warn!("{call}: decline failed: {e}"),
            Sent::DtmfInfo => log::warn!("{call}: DTMF digit not sent: {e}"),
            Sent::StateInfo => log::warn!("{call}: state INFO not sent: {e}"),
            Sent::Update => log::warn!("{call}: answering the re-INVITE failed: {e}"),
            Sent::ReleasePeerConnection => log::debug!("{call}: PeerConnection hangup: {e}"),
            Sent::Register | Sent::Refuse => log::debug!("{call}: {sent:?} failed: {e}"),
        }
    }

    /// The call cannot be set up: it fails with 500 and the reason.
    fn setup_failed(&self, call: CallId, why: &str) {
        self.signal(call, SignalEvent::Failed(CallEndReason::new(500, subcode::SETUP_FAILED, why)));
    }

    // ----- inputs -----

    fn signal(&self, call: CallId, event: SignalEvent) {
        self.shared.engine_core(|core, now| core.on_signal(call, event, now));
    }

    fn media_signal(&self, call: CallId, signal: MediaSignal) {
        self.shared.engine_core(|core, now| core.on_media(call, signal, now));
    }

    async fn apply_remote_sdp(&mut self, index: usize, jsep: Option<Jsep>) {
        let Some(slot) = self.slot(index) else { return };
        let (Some(call), Some(leg), Some(jsep)) = (slot.binding.call(), slot.leg.as_mut(), jsep) else { return };
        if leg.remote_sdp_applied || jsep.is_offer() {
            return;
        }
        match leg.media.accept_answer(&jsep.sdp).await {
            Ok(()) => {
                leg.remote_sdp_applied = true;
                self.media_signal(call, MediaSignal::VideoNegotiated(sdp::has_video(&jsep.sdp)));
            }
            Err(e) => {
                log::warn!("{call}: the far end's answer is unusable: {e}");
                let reason = CallEndReason::new(488, 0, format!("unusable answer: {e}"));
                self.signal(call, SignalEvent::Failed(reason));
            }
        }
    }

    async fn on_sip(&mut self, index: usize, ev: SipEvent) {
        let call = self.slot(index).and_then(|s| s.binding.call());
        match ev {
            SipEvent::Ringing { .. } => {
                if let Some(call) = call {
                    self.signal(call, SignalEvent::Ringing);
                }
            }
            SipEvent::Progress { jsep, .. } => {
                if let Some(call) = call {
                    let had_sdp = jsep.is_some();
                    self.apply_remote_sdp(index, jsep).await;
                    self.signal(call, if had_sdp { SignalEvent::EarlyMedia } else { SignalEvent::Ringing });
                }
            }
            SipEvent::Accepted { jsep, .. } => {
                if let Some(call) = call {
                    self.apply_remote_sdp(index, jsep).await;
                    if let Some(leg) = self.slot(index).and_then(|s| s.leg.as_mut()) {
                        leg.established = true;
                    }
                    self.signal(call, SignalEvent::Accepted);
                    let (muted, video_on) = self
                        .shared
                        .engine_core(|core, _| core.call(call).map(|c| (c.is_muted, c.is_video_on)))
                        .unwrap_or((false, true));
                    self.send_state(call, muted, video_on);
                }
            }
            SipEvent::IncomingCall { username, displayname, jsep, .. } => {
                self.on_incoming(index, username, displayname, jsep).await
            }
            SipEvent::MissedCall { caller, .. } => log::info!("missed call from {caller}: every handle busy"),
            SipEvent::UpdatingCall { jsep, .. } => self.on_reinvite(index, jsep).await,
            SipEvent::Hangup { code, reason, .. } => {
                if let Some(call) = call {
                    log::info!("{call}: SIP hangup {code} {reason}");
                    let code = u16::try_from(code).unwrap_or(500);
                    self.signal(call, SignalEvent::Hangup { code, reason });
                }
            }
            SipEvent::Dtmf { digit, .. } => {
                if let (Some(call), Some(d)) = (call, digit.chars().next()) {
                    // Never the digit itself, at any level: the digits may be a door code.
                    log::debug!("{call}: DTMF digit received");
                    self.signal(call, SignalEvent::Dtmf(d));
                }
            }
            SipEvent::Info { content_type, content, .. }
                if content_type.eq_ignore_ascii_case(state_info::CONTENT_TYPE) =>
            {
                let Some(call) = call else { return };
                match state_info::decode(&content) {
                    Ok(PeerStateInfo { muted, video_on }) => {
                        self.signal(call, SignalEvent::PeerState { muted, video_on })
                    }
                    Err(e) => log::warn!("{call}: state INFO skipped: {e}"),
                }
            }
            SipEvent::Registered { .. } => {
                log::info!("SIP registration refreshed");
                self.upkeep.registered();
                self.shared.engine_core(|core, _| core.set_connection_state(ConnectionState::Ready));
            }
            SipEvent::RegistrationFailed { code, reason } => {
                // Not reachable until registered again: not Ready (the appliance shows its fault LED and status).
                self.shared.engine_core(|core, _| core.set_connection_state(ConnectionState::Connecting));
                let delay = self.upkeep.registration_failed(rand::random::<f64>(), Instant::now());
                log::error!(
                    "SIP registration failed: {code} {reason}; again with a fresh token in {} ms",
                    delay.as_millis()
                );
            }
            SipEvent::Error { code, reason } => log::warn!("SIP plugin error {code}: {reason}"),
            SipEvent::Message { sender, content_type, content, .. } => {
                self.on_message(&sender, content_type.as_deref(), &content)
            }
            SipEvent::MessageDelivery { code, call_id, .. } => self.on_message_delivery(code, call_id.as_deref()),
            SipEvent::Janus(JanusEvent::Hangup { reason }) => {
                log::debug!("handle {index}: PeerConnection closed: {reason}")
            }
            SipEvent::Janus(JanusEvent::Detached) => self.lost = Some(format!("SIP handle {index} was detached")),
            other => log::debug!("handle {index}: SIP event {other:?}"),
        }
    }

    async fn on_incoming(&mut self, index: usize, username: String, displayname: Option<String>, jsep: Option<Jsep>) {
        let from = match Identifier::from_sip_uri(&username) {
            Ok(id) => id,
            Err(e) => {
                log::warn!("incoming call from an unusable identity declined: {e}");
                self.request(index, None, SipRequest::Refuse);
                return;
            }
        };
        if !self.of_our_service(&from, &username) {
            log::warn!("incoming call from {username} declined: not a user of this service");
            self.request(index, None, SipRequest::Refuse);
            return;
        }
        let displayname = displayname.map(|d| d.trim_matches('"').to_string()).filter(|d| !d.is_empty());
        log::info!("incoming call from {from} (handle {index})");
        let offer = jsep.filter(|j| j.is_offer()).map(|j| j.sdp);
        // Bind the call to the handle before the core decides (it may decline at once: busy).
        let call = self.shared.engine_core(|core, now| core.incoming_call(from, displayname, now));
        if let Some(slot) = self.slot(index) {
            slot.binding.offered(call, Instant::now());
            slot.pending_offer = offer;
        }
    }

    /// Whether `from` (named by `uri`) is a party of this service: a user of our SIP domain (a user id alone
    /// does not say which service it belongs to), or a phone number (they come through the trunk, whatever host
    /// the gateway puts in the URI).
    fn of_our_service(&self, from: &Identifier, uri: &str) -> bool {
        from.is_phone() || self.token.sip().is_ok_and(|grant| Identifier::sip_uri_in_domain(uri, &grant.realm))
    }

    /// A re-INVITE from the far end (hold, resume, renegotiation): answer it and report hold changes.
    async fn on_reinvite(&mut self, index: usize, jsep: Option<Jsep>) {
        let Some(slot) = self.slot(index) else { return };
        let (Some(call), Some(leg), Some(jsep)) = (slot.binding.call(), slot.leg.as_ref(), jsep) else { return };
        if !jsep.is_offer() {
            return;
        }
        let held = sdp::holds_us(&jsep.sdp);
        match leg.media.accept_offer(&jsep.sdp).await {
            Ok(answer) => {
                self.request(index, Some(call), SipRequest::Update(Jsep::answer(answer)));
                log::info!("{call}: far end {}", if held { "put us on hold" } else { "resumed" });
                self.signal(call, SignalEvent::RemoteHold(held));
            }
            Err(e) => log::warn!("{call}: re-INVITE offer unusable: {e}"),
        }
    }

    fn on_media(&mut self, call: CallId, ev: MediaEvent) {
        if self.groups.contains_key(&call) {
            // A room's members are told apart by the room's events, not by the media of the call.
            match ev {
                MediaEvent::Failed(why) => self.room_media_lost(call, None, &why),
                MediaEvent::Connected => log::info!("{call}: room media connected"),
                other => log::trace!("{call}: room media {other:?}"),
            }
            return;
        }
        match ev {
            MediaEvent::RemoteAudioLevel { dbfs } => self.media_signal(call, MediaSignal::AudioLevel { dbfs }),
            MediaEvent::FirstRemoteVideoFrame => {
                if let Some(leg) = self.slot_for_call(call).and_then(|s| s.leg.as_mut()) {
                    leg.remote_video_flowing = true;
                    leg.frames_changed_at = Instant::now();
                }
                self.media_signal(call, MediaSignal::RemoteVideo(true));
            }
            MediaEvent::Failed(why) => self.media_signal(call, MediaSignal::Failed(why)),
            MediaEvent::Connected => log::info!("{call}: media connected"),
            MediaEvent::Dtmf { digit, kind } => {
                log::debug!("{call}: DTMF digit received ({kind:?})");
                self.signal(call, SignalEvent::Dtmf(digit));
            }
            other => log::debug!("{call}: media {other:?}"),
        }
    }

    /// Remote video counts as available while frames keep being decoded.
    fn watch_video(&mut self) {
        let Some(conn) = self.conn.as_mut() else { return };
        let now = Instant::now();
        let mut changes = Vec::new();
        for slot in &mut conn.slots {
            let (Some(call), Some(leg)) = (slot.binding.call(), slot.leg.as_mut()) else { continue };
            let frames = leg.media.stats().video_frames_decoded;
            if frames != leg.frames_seen {
                leg.frames_seen = frames;
                leg.frames_changed_at = now;
            }
            let flowing = frames > 0 && now.duration_since(leg.frames_changed_at) < VIDEO_STALL;
            if flowing != leg.remote_video_flowing {
                leg.remote_video_flowing = flowing;
                changes.push((call, flowing));
            }
        }
        for (call, flowing) in changes {
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
                // Room events sent while the socket was down are lost: ask the rooms who is there now.
                self.resync_rooms().await;
            }
            ConnectionEvent::Unauthorized { request } => {
                log::warn!("Janus refused '{request}' as unauthorized: refreshing the token now");
                self.upkeep.unauthorized(Instant::now());
            }
            ConnectionEvent::Lost { reason } => self.lost = Some(reason),
        }
    }

    /// The session is gone: end the calls, close their media, and start building a new connection (beside the
    /// engine, with backoff: the API and shutdown are served meanwhile).
    async fn on_session_lost(&mut self, reason: &str) {
        log::error!("Janus session lost: {reason}");
        self.shared.engine_core(|core, _| {
            core.on_session_lost();
            core.set_connection_state(ConnectionState::Reconnecting);
        });
        // The rooms' handles died with the session: close their media without asking Janus (`lost` is set).
        self.lost.get_or_insert_with(|| reason.to_string());
        // The calls that waited for a handle or a settle ended with the session.
        let dropped = self.deferred.clear();
        if dropped > 0 {
            log::debug!("{dropped} waiting commands dropped with the session");
        }
        self.drop_rooms_with_session().await;
        while let Some(cmd) = self.shared.engine_core(|core, _| core.poll_command()) {
            self.run_command(cmd).await;
        }
        if let Some(conn) = self.conn.take() {
            for slot in conn.slots {
                if let Some(leg) = slot.leg {
                    leg.forwarder.abort();
                    leg.media.close().await;
                }
            }
        }
        self.shared.media.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.upkeep.session_lost(Instant::now());
    }

    /// Starts what the refresh and reconnection schedule says is due.
    fn run_due_upkeep(&mut self) {
        while let Some(due) = self.upkeep.poll_due(Instant::now()) {
            match due {
                upkeep::Due::Refresh => self.start_refresh(),
                upkeep::Due::Reconnect { generation } => self.start_reconnect(generation),
            }
        }
    }

    /// One attempt at a new connection, beside the engine: a token (the held one while it is valid), a session,
    /// the registration and the helper handles.
    fn start_reconnect(&mut self, generation: u64) {
        let (config, credential, held) = (self.config().clone(), self.credential.clone(), self.token.clone());
        let (channels, tx) = (self.channels.clone(), self.reconnected_tx.clone());
        self.reconnecting = Some(tokio::spawn(async move {
            let token = match credential.get().await {
                Ok(t) => t,
                Err(e) => {
                    log::warn!("reconnect: no token ({e})");
                    held
                }
            };
            let result = open_connection(&config, &token, &channels, generation).await.map(|conn| (conn, token));
            let refresh_due_in = if result.is_ok() { credential.refresh_due_in().await } else { None };
            let _ = tx.send(Reconnected { generation, result, refresh_due_in }).await;
        }));
    }

    async fn on_reconnected(&mut self, reconnected: Reconnected) {
        let Reconnected { generation, result, refresh_due_in } = reconnected;
        self.reconnecting = None;
        let now = Instant::now();
        match result {
            Ok((conn, token)) => {
                if !self.upkeep.reconnect_succeeded(generation, refresh_due_in, now) {
                    return;
                }
                self.token = token;
                self.conn = Some(conn);
                self.lost = None;
                self.shared.engine_core(|core, _| core.set_connection_state(ConnectionState::Ready));
                self.close_orphans().await;
            }
            Err(e) => {
                if let Some(delay) = self.upkeep.reconnect_failed(generation, rand::random::<f64>(), now) {
                    log::warn!("reconnect attempt failed ({e}); next in {} ms", delay.as_millis());
                }
            }
        }
    }

    /// Starts fetching a new token beside the engine (the schedule lets one run at a time); `on_refreshed` swaps
    /// it in.
    fn start_refresh(&mut self) {
        let (credential, tx) = (self.credential.clone(), self.refreshed_tx.clone());
        self.refreshing = Some(tokio::spawn(async move {
            let result = credential.refresh().await;
            let due_in = if result.is_ok() { credential.refresh_due_in().await } else { None };
            let _ = tx.send(Refreshed { result, due_in }).await;
        }));
    }

    /// A token fetch ended: its grants go into the live connection (the Janus token for every later request, the
    /// SIP credentials by refreshing the registration, beside the engine), or the next attempt is scheduled.
    async fn on_refreshed(&mut self, refreshed: Refreshed) {
        self.refreshing = None;
        match refreshed.result {
            Ok(token) => {
                if let Some(conn) = &self.conn {
                    match token.janus() {
                        Ok(grant) => conn.session.set_token(grant.token.clone()),
                        Err(e) => log::error!("refreshed token unusable for Janus: {e}"),
                    }
                }
                match register_request(self.config(), &token, true) {
                    // On the account's lane; its outcome also arrives as the handle's `registered` /
                    // `registration_failed` event.
                    Ok(request) if self.conn.is_some() => {
                        self.request(0, None, SipRequest::Register(Box::new(request)))
                    }
                    Ok(_) => {}
                    Err(e) => log::error!("refreshed token unusable for SIP: {e}"),
                }
                log::info!("token swapped in (valid for {} s)", super::credential::lifetime_on_arrival(&token));
                self.token = token;
                self.upkeep.refresh_succeeded(refreshed.due_in, Instant::now());
            }
            Err(e) => {
                let delay = self.upkeep.refresh_failed(rand::random::<f64>(), Instant::now());
                log::warn!("token refresh failed ({e}); next attempt in {} ms", delay.as_millis());
            }
        }
    }

    async fn shutdown(&mut self) {
        log::info!("shutting down: unregistering, hanging up");
        // One bound for all of it, however slow Janus is: systemd's stop timeout is set above it.
        let deadline = Instant::now() + SHUTDOWN_BOUND;
        let by = |d: Instant| tokio::time::Instant::from_std(d);
        // A token fetch or a reconnection under way is given up: nothing is left to use it.
        for task in [self.refreshing.take(), self.reconnecting.take()].into_iter().flatten() {
            task.abort();
        }
        self.deferred.clear();
        // Unreachable first: no new call reaches a client that is going away, and a far end that sees our hang-up
        // can no longer ring us (its call back ends 404/480 at the registrar, not at a handle being torn down).
        let account = self.conn.as_ref().map(|c| (c.slots[0].sip.clone(), c.generation));
        if let Some((sip, generation)) = account {
            if matches!(tokio::time::timeout_at(by(deadline), sip.unregister()).await, Ok(Ok(_))) {
                let wait = async {
                    while let Some(ev) = self.sip_rx.recv().await {
                        if ev.generation == generation && matches!(ev.event, Some(SipEvent::Unregistered { .. })) {
                            return;
                        }
                    }
                };
                let until = (Instant::now() + Duration::from_secs(2)).min(deadline);
                let _ = tokio::time::timeout_at(by(until), wait).await;
            }
        }
        let active: Vec<CallId> = self.shared.engine_core(|core, _| core.active_calls().map(|c| c.id).collect());
        for call in active {
            let _ = self.shared.engine_core(|core, now| core.hang_up(call, now));
        }
        let hang_ups = async {
            while let Some(cmd) = self.shared.engine_core(|core, _| core.poll_command()) {
                self.run_command(cmd).await;
            }
            let with_media: Vec<CallId> =
                self.shared.media.lock().unwrap_or_else(|p| p.into_inner()).keys().copied().collect();
            for call in with_media {
                self.release(call).await;
            }
        };
        if tokio::time::timeout_at(by(deadline), hang_ups).await.is_err() {
            log::warn!("hanging up at shutdown took longer than {} s: given up", SHUTDOWN_BOUND.as_secs());
        }
        if let Some(conn) = self.conn.take() {
            // The hang-ups and releases queued above go out first (bounded), then the session goes.
            let lanes_until = (Instant::now() + self.config().request_timeout).min(deadline);
            for slot in conn.slots {
                slot.lane.drain(lanes_until).await;
            }
            let destroy_until = by(deadline + Duration::from_secs(1));
            let _ = tokio::time::timeout_at(destroy_until, conn.session.destroy()).await;
        }
        self.shared.engine_core(|core, _| {
            core.on_session_lost();
            core.set_connection_state(ConnectionState::Disconnected);
        });
        self.shared.bus.close();
    }
}

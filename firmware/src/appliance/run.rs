//! The appliance's main loop: starts the calling client (retrying with backoff while the servers are away),
//! reads the buttons on a thread of their own, and drives [`ApplianceLogic`] with the client's events, the
//! button gestures and the time; carries out its actions (calls, answers, mute, video, hang-up, the relay
//! pulse, the LEDs, the chime on the speaker while a call rings, tones to the caller in the call's audio),
//! shows the far end on the screen, pings systemd's watchdog, and on shutdown hangs up and un-registers. While
//! the client connects at start, `warm_up` readies what the first call would otherwise wait for.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::logic::{Action, ApplianceLogic, GuardState};
use super::notify::Notifier;
use super::setup::{route_ip, ApplianceSetup};
use crate::calling::{
    Backoff, CallId, CallState, ConnectionState, Delivery, Event, Identifier, ParticipantState, ScalingMode, StreamId,
};
use crate::client::credential::unix_now;
use crate::client::{Call, CallClient, ClientConfig, ClientError, Screen, TokenCredential, VideoRenderer};
use crate::devices::{AudioFrame, DeviceManager, AUDIO_FRAME_SAMPLES, SAMPLE_RATE};
use crate::input::{ButtonAction, ButtonInput, Gesture, LedState, OutputLine};

/// How long the lookup of the route to Janus (its host name through the system resolver) may take before the
/// attempt to start is given up and retried.
const ROUTE_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Start-up retries: the appliance waits for its servers as long as it takes.
const START_BACKOFF: Backoff =
    Backoff { initial: Duration::from_millis(500), max: Duration::from_secs(30), max_attempts: None };
/// Button gestures waiting for the loop.
const BUTTON_QUEUE: usize = 32;

/// Why the appliance stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApplianceError {
    /// The calling client failed in a way retrying cannot mend.
    #[error("calling client: {0}")]
    Client(#[from] ClientError),
    /// The button input is gone for good.
    #[error("buttons: {0}")]
    Input(String),
}

/// What the running appliance exposes (for the caller's logs and the tests).
#[derive(Clone, Default)]
pub struct ApplianceHandle {
    inner: Arc<Mutex<HandleState>>,
}

#[derive(Default)]
struct HandleState {
    client: Option<CallClient>,
    screen: Option<Screen>,
}

impl ApplianceHandle {
    /// The calling client, once started.
    pub fn client(&self) -> Option<CallClient> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).client.clone()
    }

    /// The screen, once started.
    pub fn screen(&self) -> Option<Screen> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).screen.clone()
    }
}

/// Starts the client, retrying with backoff (and jitter) until it is up or `shutdown` completes.
async fn start_client(
    setup_client: &ClientConfig,
    credential: &TokenCredential,
    route_to: Option<&str>,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
    notifier: &Notifier,
) -> Option<CallClient> {
    let mut attempt = 0u32;
    loop {
        let mut config = setup_client.clone();
        let attempt_result = async {
            // The media address: the interface that routes to Janus now (the network may come up late).
            if let Some(url) = route_to {
                let url = url.to_owned();
                // The system resolver blocks (and may wait long for an unreachable DNS server): on a blocking
                // thread, given up after ROUTE_LOOKUP_TIMEOUT (the thread ends when the resolver does).
                let lookup = tokio::task::spawn_blocking(move || route_ip(&url));
                let routed = tokio::time::timeout(ROUTE_LOOKUP_TIMEOUT, lookup)
                    .await
                    .map_err(|_| format!("the Janus host did not resolve within {} s", ROUTE_LOOKUP_TIMEOUT.as_secs()))?
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))?;
                log::info!("media address {routed} (the route to the Janus server)");
                config.media.bind_ip = routed;
            }
            CallClient::create(credential.clone(), config).await.map_err(|e| e.to_string())
        };
        let result = tokio::select! {
            r = attempt_result => r,
            _ = &mut *shutdown => return None,
        };
        match result {
            Ok(client) => return Some(client),
            Err(e) => {
                let delay = START_BACKOFF.delay(attempt, rand::random()).unwrap_or(START_BACKOFF.max);
                log::warn!("cannot start the calling client: {e}; retrying in {delay:?}");
                notifier.status(&format!("waiting for the servers: {e}"));
                attempt = attempt.saturating_add(1);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = &mut *shutdown => return None,
                }
            }
        }
    }
}

/// Plays a two-tone chime on the speaker until stopped (the speaker is free while a call rings: its media
/// starts with the answer).
struct Chime {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Chime {
    fn start(devices: DeviceManager, speaker: Option<String>) -> Chime {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name("cbx-chime".into()).spawn(move || {
            let mut out = match devices.open_speaker(speaker.as_deref()) {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("no chime: {e}");
                    return;
                }
            };
            let mut frame: AudioFrame = [0; AUDIO_FRAME_SAMPLES];
            let mut n: u64 = 0;
            // 0.4 s at 660 Hz, 0.4 s at 550 Hz, 1.2 s of silence; -12 dBFS.
            while !flag.load(Ordering::SeqCst) {
                for s in frame.iter_mut() {
                    let t = (n % (2 * u64::from(SAMPLE_RATE))) as f64 / f64::from(SAMPLE_RATE);
                    let hz = if t < 0.4 {
                        660.0
                    } else if t < 0.8 {
                        550.0
                    } else {
                        0.0
                    };
                    *s = (8_000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16;
                    n += 1;
                }
                if let Err(e) = out.write(&frame) {
                    log::warn!("chime stopped: {e}");
                    return;
                }
            }
        });
        let thread = thread.map_err(|e| log::warn!("no chime: {e}")).ok();
        Chime { stop, thread }
    }

    /// Stops the chime and waits (bounded) until its thread has closed the speaker, so that the call's
    /// audio can open it.
    async fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let joined = tokio::task::spawn_blocking(move || {
                let _ = thread.join();
            });
            if tokio::time::timeout(Duration::from_secs(1), joined).await.is_err() {
                log::warn!("the chime did not stop within 1 s");
            }
        }
    }
}

impl Drop for Chime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Reads gestures on a thread (the backends block) and forwards them; ends when the loop is gone.
fn spawn_button_reader(mut buttons: Box<dyn ButtonInput>, tx: mpsc::Sender<Result<(String, Gesture), String>>) {
    let spawned = std::thread::Builder::new().name("cbx-buttons".into()).spawn(move || loop {
        if tx.is_closed() {
            return;
        }
        match buttons.next_event(Duration::from_millis(200)) {
            Ok(Some(e)) => {
                if tx.try_send(Ok((e.button, e.gesture))).is_err() {
                    log::warn!("button gesture dropped: the appliance is busy");
                }
            }
            Ok(None) => {}
            Err(e) => {
                let _ = tx.blocking_send(Err(e.to_string()));
                return;
            }
        }
    });
    if let Err(e) = spawned {
        log::error!("button reader not started: {e}");
    }
}

struct Outputs {
    lines: HashMap<String, Box<dyn OutputLine>>,
}

impl Outputs {
    fn set(&mut self, name: &str, on: bool) {
        match self.lines.get_mut(name) {
            Some(line) => {
                if let Err(e) = line.set(on) {
                    log::warn!("output {name}: {e}");
                }
            }
            None => log::debug!("output {name} is not configured"),
        }
    }
}

/// Runs the appliance until `shutdown` completes (SIGTERM) or a fatal error. `handle` is filled in as parts start.
pub async fn run(
    setup: ApplianceSetup,
    handle: ApplianceHandle,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ApplianceError> {
    let started = Instant::now();
    let notifier = Arc::new(Notifier::from_env());
    // The watchdog is fed from here on: while the servers are reached, then while the loops make progress.
    let watched = super::supervision::Watched::default();
    let _watchdog = Notifier::watchdog_interval()
        .map(|interval| AbortOnDrop(super::supervision::spawn_watchdog(notifier.clone(), interval, watched.clone())));
    let mut shutdown = Box::pin(shutdown);
    let ApplianceSetup {
        client: client_config,
        credential,
        behaviour,
        buttons,
        button_actions,
        outputs,
        relay,
        leds,
        screen,
        screen_fps,
        snapshot,
        route_to,
        door_guard_file,
    } = setup;
    let outputs = Arc::new(Mutex::new(Outputs { lines: outputs }));
    let devices = client_config.media.devices.clone();
    let speaker = client_config.media.speaker.clone();
    let mut logic = ApplianceLogic::new(behaviour);
    if let Some(path) = &door_guard_file {
        restore_door_guard(&mut logic, path);
    }
    let (button_tx, mut button_rx) = mpsc::channel(BUTTON_QUEUE);
    spawn_button_reader(buttons, button_tx);
    let _hotplug = devices.watch(Duration::from_secs(2));

    // Outputs first: the LED shows the fault until registered.
    let relay_pulses = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut fx = Effects { outputs, relay_pulses, leds, relay, chime: None, devices, speaker, door_guard_file };
    fx.outputs_off();
    apply(&mut logic, &mut fx, None, None, &mut HashMap::new()).await;
    // Started: systemd's start job ends here (the LED shows the fault and STATUS the wait while the servers are
    // away), so a long outage of the servers does not make systemd kill the service at its start timeout.
    notifier.ready();
    notifier.status("connecting to the servers");
    // Warmed while the client connects, so that the first press after the start rings as fast as the others.
    let warm_up = super::warm_up::WarmUp::start(client_config.media.video.is_some());
    let Some(client) = start_client(&client_config, &credential, route_to.as_deref(), &mut shutdown, &notifier).await
    else {
        fx.outputs_off();
        return Ok(());
    };
    warm_up.finish(super::warm_up::WARM_UP_BOUND).await;
    log::info!("appliance ready as {} after {} ms", client.identity(), started.elapsed().as_millis());
    notifier.status(&format!("registered as {}", client.identity()));
    let screen = screen.map(|fb| Screen::new(&client, fb, screen_fps));
    if let (Some(screen), Some(path)) = (&screen, &snapshot) {
        crate::client::snapshot_on_sigusr1(screen.clone(), path.clone());
    }
    {
        let mut h = handle.inner.lock().unwrap_or_else(|p| p.into_inner());
        h.client = Some(client.clone());
        h.screen = screen.clone();
    }
    logic.on_ready(true);
    let appliance_beat = crate::client::Heartbeat::new();
    watched.add("appliance", appliance_beat.clone());
    watched.add("calling engine", client.heartbeat());
    let mut events = client.events();
    let mut calls: HashMap<CallId, Call> = HashMap::new();
    let mut renderers: Renderers = HashMap::new();
    let epoch = Instant::now();
    let mut failure = None;
    loop {
        appliance_beat.beat();
        apply(&mut logic, &mut fx, Some(&client), screen.as_ref(), &mut calls).await;
        // Show the far end of connected calls on the screen: every camera and screen share of every participant
        // still in the call (a group call's members come and go).
        if let Some(screen) = &screen {
            show_remote_streams(screen, &calls, &mut renderers);
        }
        let next = logic.poll_timeout().map(|t| epoch + t);
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => break,
            _ = sleep => logic.handle_timeout(epoch.elapsed()),
            // The stream sleeps briefly when idle so renderers appear soon after a call connects.
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            gesture = button_rx.recv() => match gesture {
                Some(Ok((name, gesture))) => match button_actions.get(&name) {
                    Some(ButtonAction::Call) if gesture == Gesture::Long => log::debug!("long press on the call button: ignored"),
                    Some(action) => {
                        log::info!("button {name}: {action:?}");
                        logic.on_button(*action);
                    }
                    None => log::debug!("button {name} has no action"),
                },
                Some(Err(e)) => {
                    failure = Some(ApplianceError::Input(e));
                    break;
                }
                None => {
                    failure = Some(ApplianceError::Input("button reader ended".into()));
                    break;
                }
            },
            delivery = events.next() => match delivery {
                Some(Delivery::Event(e)) => {
                    if let Event::ConnectionStateChanged { state } = &e {
                        notifier.status(&connection_status(*state, client.identity()));
                    }
                    on_event(&mut logic, &client, screen.as_ref(), &mut calls, &mut renderers, e, epoch.elapsed())
                }
                Some(Delivery::Lagged(n)) => {
                    log::warn!("{n} client events were lost: resynchronising from the calls");
                    resync(&mut logic, &client, &mut calls, &mut renderers, epoch.elapsed());
                }
                None => break,
            },
        }
    }
    log::info!("shutting down: hanging up and un-registering");
    notifier.stopping();
    // The relay and the LEDs go to their safe state first: nothing that follows may leave the door open.
    fx.outputs_off();
    if let Some(chime) = fx.chime.take() {
        chime.stop().await;
    }
    let hang_ups = async {
        for call in calls.values() {
            if call.state() != CallState::Disconnected {
                let _ = call.hang_up().await;
            }
        }
    };
    // Bounded: the client's own shutdown hangs up whatever is left (within its SHUTDOWN_BOUND).
    if tokio::time::timeout(HANG_UP_AT_STOP, hang_ups).await.is_err() {
        log::warn!("calls not ended within {} s at shutdown: the client ends them", HANG_UP_AT_STOP.as_secs());
    }
    client.shutdown().await;
    fx.outputs_off();
    failure.map_or(Ok(()), Err)
}

/// The `STATUS=` line for systemd (`systemctl status`) in a connection state.
fn connection_status(state: ConnectionState, identity: &Identifier) -> String {
    match state {
        ConnectionState::Ready => format!("registered as {identity}"),
        ConnectionState::Connecting => format!("not registered as {identity}: the registrar refused, retrying"),
        ConnectionState::Reconnecting => "the connection to the servers was lost: reconnecting".to_owned(),
        ConnectionState::Disconnected => "disconnected".to_owned(),
    }
}

/// How long the appliance waits for its calls to end at shutdown before the client's shutdown takes over. With
/// the client's bound (8 s, and 1 s for the session) this stays under the unit's `TimeoutStopSec=30`.
const HANG_UP_AT_STOP: Duration = Duration::from_secs(5);

/// A task that ends with the appliance.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The renderers of the remote streams shown, by call and stream.
type Renderers = HashMap<(CallId, StreamId), VideoRenderer>;

/// Renders each stream of the connected calls' participants (and early video of calls still ringing) not
/// rendered yet, and drops the renderers of streams that went away.
fn show_remote_streams(screen: &Screen, calls: &HashMap<CallId, Call>, renderers: &mut Renderers) {
    let mut wanted = Vec::new();
    for (id, call) in calls {
        if !matches!(call.state(), CallState::Connected | CallState::EarlyMedia | CallState::Incoming) {
            continue;
        }
        for p in call.remote_participants() {
            if p.state() == ParticipantState::Disconnected {
                continue;
            }
            wanted.extend(p.video_streams().into_iter().chain(p.screen_sharing_streams()).map(|s| (*id, s)));
        }
    }
    renderers.retain(|key, _| wanted.iter().any(|(call, s)| (*call, s.id()) == *key));
    for (call, stream) in wanted {
        if renderers.contains_key(&(call, stream.id())) {
            continue;
        }
        match stream.render(screen, ScalingMode::Fit) {
            Ok(r) => {
                renderers.insert((call, stream.id()), r);
            }
            Err(e) => log::debug!("{call}: a remote stream cannot be rendered: {e}"),
        }
    }
}

/// After lost events: the logic's call and the call handles brought back in line with the client's calls.
fn resync(
    logic: &mut ApplianceLogic,
    client: &CallClient,
    calls: &mut HashMap<CallId, Call>,
    renderers: &mut Renderers,
    now: Duration,
) {
    let live: HashMap<CallId, Call> = client.calls().into_iter().map(|c| (c.id(), c)).collect();
    if let Some(current) = logic.current_call() {
        match live.get(&current) {
            Some(call) => logic.on_call_state(current, call.state()),
            None => logic.on_call_state(current, CallState::Disconnected),
        }
    }
    for (id, call) in &live {
        if call.state() == CallState::Incoming && logic.current_call() != Some(*id) {
            if let Some(from) = peer_of(call) {
                logic.on_incoming_call(*id, &from, now);
            }
        }
    }
    renderers.retain(|(id, _), _| live.contains_key(id));
    *calls = live;
    logic.on_ready(client.connection_state() == ConnectionState::Ready);
}

fn on_event(
    logic: &mut ApplianceLogic,
    client: &CallClient,
    screen: Option<&Screen>,
    calls: &mut HashMap<CallId, Call>,
    renderers: &mut Renderers,
    event: Event,
    now: Duration,
) {
    match event {
        Event::ConnectionStateChanged { state } => {
            log::info!("connection: {state:?}");
            logic.on_ready(state == ConnectionState::Ready);
        }
        Event::IncomingCall { call, from, .. } => {
            log::info!("incoming call from {from}");
            if let Some(handle) = client.call_by_id(call) {
                calls.insert(call, handle);
            }
            logic.on_incoming_call(call, &from, now);
            // The screen shows it only if it is the appliance's call now (not one declined busy).
            if let (Some(screen), true) = (screen, logic.current_call() == Some(call)) {
                screen.follow_call(Some(call));
            }
        }
        Event::CallStateChanged { call, state } => {
            if state == CallState::Disconnected {
                if let Some(c) = calls.remove(&call) {
                    log::info!("call ended: {:?}", c.end_reason());
                    if calls.is_empty() {
                        // Once the call's media threads and pipelines are gone too.
                        tokio::spawn(async {
                            tokio::time::sleep(super::health::TRIM_AFTER_LAST_CALL).await;
                            super::health::trim_heap();
                        });
                    }
                }
                renderers.retain(|(c, _), _| *c != call);
            }
            if state == CallState::Connected {
                if let Some(peer) = calls.get(&call).and_then(peer_of) {
                    logic.on_call_peer(call, peer);
                }
            }
            logic.on_call_state(call, state);
        }
        Event::CallIsMutedChanged { call, is_muted } => logic.on_muted(call, is_muted),
        Event::CallIsVideoOnChanged { call, is_video_on } => logic.on_video(call, is_video_on),
        Event::DtmfReceived { call, digit } => logic.on_dtmf(call, digit, now, unix_now()),
        _ => {}
    }
}

/// What the logic's actions act on besides the client: the output lines, the chime, the speaker it plays on.
struct Effects {
    outputs: Arc<Mutex<Outputs>>,
    /// Relay pulses given so far (the newest pulse's timer ends it).
    relay_pulses: Arc<std::sync::atomic::AtomicU64>,
    leds: HashMap<LedState, String>,
    relay: Option<String>,
    chime: Option<Chime>,
    devices: DeviceManager,
    speaker: Option<String>,
    /// Where the door code's guard state is kept (`$STATE_DIRECTORY`); `None`: in memory only.
    door_guard_file: Option<PathBuf>,
}

impl Effects {
    /// The relay and every LED off: the safe state, at start and on the way out.
    fn outputs_off(&self) {
        let mut outs = self.outputs.lock().unwrap_or_else(|p| p.into_inner());
        for name in self.leds.values().chain(self.relay.iter()) {
            outs.set(name, false);
        }
    }
}

/// The identity at the other end of a 1:1 call (the first participant of a group call).
fn peer_of(call: &Call) -> Option<Identifier> {
    call.remote_participants().first().and_then(|p| p.identifier())
}

/// Takes in the door code's guard state kept before a restart. A damaged file must not be a way to start over:
/// every caller then starts at the end of its free attempts.
fn restore_door_guard(logic: &mut ApplianceLogic, path: &Path) {
    let kept = match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => Err(format!("unreadable: {e}")),
        Ok(text) => serde_json::from_str::<GuardState>(&text).map_err(|e| format!("damaged: {e}")),
    };
    let state = kept.unwrap_or_else(|why| {
        log::error!("door code guard state {} {why}: callers start locked closer", path.display());
        GuardState::distrusted(logic.guard_policy())
    });
    logic.restore_door_guard(state, unix_now());
}

/// Keeps the door code's guard state: written beside the file, then renamed over it (never half written).
fn save_door_guard(path: &Path, state: &GuardState) -> std::io::Result<()> {
    let text = serde_json::to_string(state).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Carries out the logic's pending actions.
async fn apply(
    logic: &mut ApplianceLogic,
    fx: &mut Effects,
    client: Option<&CallClient>,
    screen: Option<&Screen>,
    calls: &mut HashMap<CallId, Call>,
) {
    let Effects { outputs, relay_pulses, leds, relay, chime, devices, speaker, door_guard_file } = fx;
    let relay = relay.as_deref();
    while let Some(action) = logic.poll_action() {
        let call_of = |id: CallId| calls.get(&id).cloned();
        let result: Result<(), ClientError> = match action {
            Action::Led(state) => {
                // A board without an alert LED shows the alert on its fault LED.
                let state = if state == LedState::Alert && !leds.contains_key(&LedState::Alert) {
                    LedState::Fault
                } else {
                    state
                };
                log::debug!("LED {}", state.as_str());
                let mut outs = outputs.lock().unwrap_or_else(|p| p.into_inner());
                for (s, name) in leds.iter() {
                    outs.set(name, *s == state);
                }
                Ok(())
            }
            Action::PlayTone(id, tone) => match call_of(id) {
                Some(call) => call.play_tone(tone),
                None => Ok(()),
            },
            Action::Chime(on) => {
                if let Some(old) = chime.take() {
                    old.stop().await;
                }
                *chime = on.then(|| Chime::start(devices.clone(), speaker.clone()));
                Ok(())
            }
            Action::SaveDoorGuard(state) => {
                if let Some(path) = door_guard_file.as_deref() {
                    if let Err(e) = save_door_guard(path, &state) {
                        log::error!("door code guard state not kept in {}: {e}", path.display());
                    }
                }
                Ok(())
            }
            Action::PulseRelay(length) => {
                if let Some(name) = relay.map(str::to_owned) {
                    // A pulse given during another extends it: only the latest pulse's timer switches it off.
                    let generation = relay_pulses.fetch_add(1, Ordering::SeqCst) + 1;
                    outputs.lock().unwrap_or_else(|p| p.into_inner()).set(&name, true);
                    let (outputs, pulses) = (Arc::clone(outputs), Arc::clone(relay_pulses));
                    tokio::spawn(async move {
                        tokio::time::sleep(length).await;
                        if pulses.load(Ordering::SeqCst) == generation {
                            outputs.lock().unwrap_or_else(|p| p.into_inner()).set(&name, false);
                        }
                    });
                }
                Ok(())
            }
            Action::PlaceCall(targets) => match client {
                Some(client) => client.call(&targets).map(|call| {
                    log::info!("calling {}", targets.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "));
                    if let Some(screen) = screen {
                        screen.follow_call(Some(call.id()));
                    }
                    logic.on_outgoing_call(call.id());
                    calls.insert(call.id(), call);
                }),
                None => Ok(()),
            },
            Action::Answer(id) => match call_of(id) {
                Some(call) => call.accept().await,
                None => Ok(()),
            },
            Action::AnswerEarly(id) => match call_of(id) {
                Some(call) => call.answer_early().await,
                None => Ok(()),
            },
            Action::Reject(id, code) => match (call_of(id), client.and_then(|c| c.call_by_id(id))) {
                (Some(call), _) | (None, Some(call)) => call.reject(code).await,
                _ => Ok(()),
            },
            Action::HangUp(id) => match call_of(id) {
                Some(call) => call.hang_up().await,
                None => Ok(()),
            },
            Action::SetMuted(id, muted) => match call_of(id) {
                Some(call) if muted => call.mute().await,
                Some(call) => call.unmute().await,
                None => Ok(()),
            },
            Action::SetVideo(id, on) => match call_of(id) {
                Some(call) if on => call.start_video().await,
                Some(call) => call.stop_video().await,
                None => Ok(()),
            },
        };
        if let Err(e) = result {
            log::warn!("appliance action failed: {e}");
        }
    }
}

//! Appliances for the integration tests, the demo and the benchmark: callbox clients provisioned at a stack's token
//! endpoint with a device key, as a deployed device is; and the `main` that the harness's programs share.

use crate::stack::Stack;
use callbox::calling::{RefreshPolicy, Secret};
use callbox::client::{CallClient, ClientConfig, ClientError, TokenCredential};
use rand::distr::{Alphanumeric, SampleString};
use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A fresh random device key, mapped to `user` (with a room grant) at the stack's token endpoint.
pub fn provision_device(stack: &Stack, user: &str) -> Secret {
    let key = Secret::new(Alphanumeric.sample_string(&mut rand::rng(), 32));
    stack.add_device(key.expose(), user);
    key
}

/// As `provision_device`, without a room grant: the device cannot start group calls.
pub fn provision_device_without_rooms(stack: &Stack, user: &str) -> Secret {
    let key = Secret::new(Alphanumeric.sample_string(&mut rand::rng(), 32));
    stack.add_device_without_rooms(key.expose(), user);
    key
}

/// A credential that fetches tokens from the stack's endpoint with `device_key`, and how many fetches it made.
pub fn endpoint_credential(
    stack: &Stack,
    device_key: &Secret,
    policy: RefreshPolicy,
) -> (TokenCredential, Arc<AtomicU32>) {
    let url = stack.token_url();
    let key = device_key.clone();
    let fetches = Arc::new(AtomicU32::new(0));
    let counter = fetches.clone();
    let credential = TokenCredential::with_refresher(
        move || {
            let (url, key, counter) = (url.clone(), key.clone(), counter.clone());
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                callbox_tokensvc::fetch_token(&url, &key, Duration::from_secs(5)).await.map_err(|e| e.to_string())
            }
        },
        policy,
    );
    (credential, fetches)
}

/// Provisions `user` with a fresh device key and starts its client (registered, `Ready`).
pub async fn appliance(stack: &Stack, user: &str, config: ClientConfig) -> Result<CallClient, ClientError> {
    let key = provision_device(stack, user);
    let (credential, _) = endpoint_credential(stack, &key, RefreshPolicy::default());
    CallClient::create(credential, config).await
}

/// As `appliance`, provisioned without a room grant.
pub async fn appliance_without_rooms(
    stack: &Stack,
    user: &str,
    config: ClientConfig,
) -> Result<CallClient, ClientError> {
    let key = provision_device_without_rooms(stack, user);
    let (credential, _) = endpoint_credential(stack, &key, RefreshPolicy::default());
    CallClient::create(credential, config).await
}

/// The `main` of the harness's programs: logs (`warn,callbox=info` unless `RUST_LOG` says otherwise), arguments
/// (`Ok(None)`: print the usage), a runtime, and the exit code (2: bad arguments, 1: failed).
pub fn program_main<O, E, F>(
    name: &str,
    usage: &str,
    parse: impl FnOnce(Vec<String>) -> Result<Option<O>, String>,
    run: impl FnOnce(O) -> F,
) -> ExitCode
where
    E: Display,
    F: Future<Output = Result<(), E>>,
{
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn,callbox=info")).init();
    let options = match parse(std::env::args().skip(1).collect()) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{usage}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{name}: {e}\n{usage}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// An appliance main loop (`callbox::appliance::run`) on simulated devices, buttons and outputs, provisioned at
/// the stack's token endpoint: what the appliance test and the demo drive.
pub struct RunningAppliance {
    /// The loop's handle (its client and screen once started).
    pub handle: callbox::appliance::ApplianceHandle,
    /// Presses its buttons.
    pub buttons: callbox::input::SimButtonHandle,
    /// Reads its relay (`relay`) and LEDs (`led_<state>`).
    pub outputs: callbox::input::SimOutputs,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), callbox::appliance::ApplianceError>>,
}

/// Where a running appliance's four buttons map.
pub const BUTTONS: [(&str, callbox::input::ButtonAction); 4] = [
    ("call", callbox::input::ButtonAction::Call),
    ("mute", callbox::input::ButtonAction::Mute),
    ("video", callbox::input::ButtonAction::Video),
    ("hang_up", callbox::input::ButtonAction::HangUp),
];

impl RunningAppliance {
    /// Provisions `user` and starts its main loop with `behaviour`, the four buttons of [`BUTTONS`], a relay and
    /// one LED per state, and (if `screen` is given) an in-memory screen of that size.
    pub fn start(
        stack: &Stack,
        user: &str,
        config: ClientConfig,
        behaviour: callbox::appliance::Behaviour,
        screen: Option<(u32, u32)>,
    ) -> Result<RunningAppliance, callbox::input::InputError> {
        Self::start_keeping(stack, user, config, behaviour, screen, None)
    }

    /// As [`RunningAppliance::start`], keeping the door code's guard state in `door_guard_file` (what
    /// `$STATE_DIRECTORY/door-guard.json` is on a device), so that a restart can be tested.
    pub fn start_keeping(
        stack: &Stack,
        user: &str,
        config: ClientConfig,
        behaviour: callbox::appliance::Behaviour,
        screen: Option<(u32, u32)>,
        door_guard_file: Option<std::path::PathBuf>,
    ) -> Result<RunningAppliance, callbox::input::InputError> {
        use callbox::appliance::{ApplianceHandle, ApplianceSetup};
        use callbox::input::LedState;
        use callbox::input::{OutputLine, SimButtons, SimOutputs};
        use std::collections::HashMap;
        if let Some(code) = &behaviour.door_code {
            crate::log_capture::note_secret(code.expose());
        }
        let key = provision_device(stack, user);
        let (credential, _) = endpoint_credential(stack, &key, RefreshPolicy::default());
        let leds: HashMap<LedState, String> =
            LedState::ALL.iter().map(|s| (*s, format!("led_{}", s.as_str()))).collect();
        let outputs = SimOutputs::new();
        let mut lines: HashMap<String, Box<dyn OutputLine>> = HashMap::new();
        for name in leds.values().cloned().chain(["relay".to_owned()]) {
            lines.insert(name.clone(), Box::new(outputs.line(&name)));
        }
        let buttons = SimButtons::with_names(&BUTTONS.map(|(n, _)| n))?;
        let press = buttons.handle();
        let screen: Option<Box<dyn callbox::display::Framebuffer + Send>> = screen.map(|(w, h)| {
            Box::new(callbox::display::MemoryFramebuffer::new(w, h, callbox::display::FramebufferFormat::Xrgb8888)) as _
        });
        let setup = ApplianceSetup {
            client: config,
            credential,
            behaviour,
            buttons: Box::new(buttons),
            button_actions: BUTTONS.iter().map(|(n, a)| (n.to_string(), *a)).collect(),
            outputs: lines,
            relay: Some("relay".into()),
            leds,
            screen,
            screen_fps: 15,
            snapshot: None,
            route_to: None,
            door_guard_file,
        };
        let handle = ApplianceHandle::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(callbox::appliance::run(setup, handle.clone(), async move {
            let _ = stopped.await;
        }));
        Ok(RunningAppliance { handle, buttons: press, outputs, stop, task })
    }

    /// Its client, once registered (waits up to `timeout`).
    pub async fn client(&self, timeout: Duration) -> Option<CallClient> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(c) = self.handle.client() {
                return Some(c);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the loop (as SIGTERM does: hang up, un-register) and returns how it ended.
    pub async fn stop(self) -> Result<(), String> {
        let _ = self.stop.send(());
        match tokio::time::timeout(Duration::from_secs(30), self.task).await {
            Ok(Ok(r)) => r.map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(format!("the appliance task failed: {e}")),
            Err(_) => Err("the appliance did not stop within 30 s".into()),
        }
    }
}

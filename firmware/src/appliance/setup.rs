//! [`ApplianceSetup`], everything the main loop (`run`) needs, and how it is built from a validated
//! configuration and its board profile: the device manager (ALSA + V4L2, or simulated), the media address
//! ("auto": the interface that routes to Janus, [`route_ip`], which `run` calls again at each start), the token
//! credential (device key traded over HTTPS, or a static token), the behaviour, the buttons and output lines
//! (GPIO, or simulated with a handle to script them), the screen. `run` depends on this module, not the reverse.

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::logic::{Behaviour, GuardPolicy};
use crate::calling::RefreshPolicy;
use crate::client::{ClientConfig, TokenCredential};
use crate::config::{BoardProfile, Config, ConfigError, ConfiguredCredential, DisplayTarget};
use crate::devices::audio::alsa::AlsaBackend;
use crate::devices::video::v4l2::V4l2Backend;
use crate::devices::{DeviceManager, DevicePreferences};
use crate::display::{Framebuffer, FramebufferFormat, LinuxFramebuffer, MemoryFramebuffer};
use crate::input::{
    ButtonAction, ButtonInput, ButtonSpec, GpioButtons, GpioOutput, InputError, LedState, OutputLine, SimButtonHandle,
    SimButtons, SimOutputs,
};
use crate::provisioning::{self, CredentialError, TokenClientError, TokenEndpoint};

/// Everything the loop needs, built from the configuration and the board profile by the caller.
pub struct ApplianceSetup {
    /// The client's configuration (servers, media, devices).
    pub client: ClientConfig,
    /// The user access token source (from the provisioned device credential, or a static token).
    pub credential: TokenCredential,
    /// The behaviour: call targets, auto-answer, door code, relay pulse.
    pub behaviour: Behaviour,
    /// The buttons.
    pub buttons: Box<dyn ButtonInput>,
    /// Button name → what it does on a short press; a long press on the call button is ignored, on any
    /// other button it acts as the short press.
    pub button_actions: HashMap<String, ButtonAction>,
    /// Output lines by name (relay, LEDs).
    pub outputs: HashMap<String, Box<dyn OutputLine>>,
    /// The relay's output name.
    pub relay: Option<String>,
    /// LED state → output name (each state lights its line; the others are off).
    pub leds: HashMap<LedState, String>,
    /// The screen the far end is shown on, if the board has one.
    pub screen: Option<Box<dyn crate::display::Framebuffer + Send>>,
    /// Screen refresh rate.
    pub screen_fps: u32,
    /// Save the screen here on SIGUSR1.
    pub snapshot: Option<std::path::PathBuf>,
    /// Bind media to the local address of the route to this (Janus) URL, found when the client starts (and
    /// again at each retry); `None`: `client.media.bind_ip` as configured.
    pub route_to: Option<String>,
    /// Where the door code's wrong-code counts and lockouts are kept across restarts (`$STATE_DIRECTORY`);
    /// `None`: in memory only.
    pub door_guard_file: Option<PathBuf>,
}

/// Why the appliance cannot be set up. Names the file, the device or the key; never a secret.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("credential: {0}")]
    Credential(#[from] CredentialError),
    #[error("token endpoint: {0}")]
    TokenEndpoint(#[from] TokenClientError),
    #[error("buttons and outputs: {0}")]
    Input(#[from] InputError),
    #[error("display: {0}")]
    Display(#[from] crate::display::DisplayError),
    #[error("media address: {0}")]
    MediaAddress(String),
    #[error("{0}")]
    Other(String),
}

/// What `setup` built besides the setup itself: the simulated inputs and outputs, when simulated.
pub struct SimControls {
    /// Presses the simulated buttons.
    pub buttons: SimButtonHandle,
    /// Reads the simulated relay and LEDs.
    pub outputs: SimOutputs,
}

/// systemd's `$STATE_DIRECTORY`, where the appliance keeps what must outlast a restart (the configuration is
/// read-only under the service's sandbox); `None` without one.
fn state_directory() -> Option<PathBuf> {
    let dirs = std::env::var_os("STATE_DIRECTORY")?;
    // systemd may list several directories separated by ':'; the first is ours.
    let first = dirs.to_string_lossy().split(':').next().unwrap_or_default().to_owned();
    (!first.is_empty()).then(|| PathBuf::from(first))
}

/// Where the default-device choices persist: `$STATE_DIRECTORY`, else nowhere (kept in memory).
fn preferences() -> DevicePreferences {
    match state_directory() {
        Some(dir) => {
            let path = dir.join("devices.toml");
            // A damaged preferences file must not keep the appliance from starting: the defaults apply.
            DevicePreferences::load(&path).unwrap_or_else(|e| {
                log::warn!("{e}; using the default devices");
                DevicePreferences::in_memory()
            })
        }
        None => DevicePreferences::in_memory(),
    }
}

/// The door code's guard against guessing, from `[door]`.
fn guard_policy(door: &crate::config::DoorSection) -> GuardPolicy {
    GuardPolicy {
        free_attempts: door.lockout_after,
        lockout_initial: Duration::from_secs(u64::from(door.lockout_initial_secs)),
        lockout_max: Duration::from_secs(u64::from(door.lockout_max_secs)),
        wrong_codes_per_call: door.wrong_codes_per_call,
    }
}

/// The local address of the interface that routes to the first Janus URL's host (no packet is sent: a UDP
/// socket is only connected, which makes the kernel pick the route).
pub fn route_ip(janus_url: &str) -> Result<IpAddr, SetupError> {
    let err = |m: String| SetupError::MediaAddress(format!("{janus_url}: {m}"));
    let rest = janus_url.split_once("://").map(|(_, r)| r).ok_or_else(|| err("not a URL".into()))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let default_port = if janus_url.starts_with("wss://") { 443 } else { 80 };
    let target =
        if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !authority.ends_with(']') {
            authority.to_owned()
        } else {
            format!("{authority}:{default_port}")
        };
    let addr = target
        .to_socket_addrs()
        .map_err(|e| err(format!("cannot resolve {target}: {e}")))?
        .next()
        .ok_or_else(|| err(format!("{target} resolves to nothing")))?;
    let bind = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let socket = UdpSocket::bind(bind).map_err(|e| err(e.to_string()))?;
    socket.connect(addr).map_err(|e| err(format!("no route to {addr}: {e}")))?;
    Ok(socket.local_addr().map_err(|e| err(e.to_string()))?.ip())
}

/// Builds the setup. `sim` (or `devices.sim` in the configuration) uses simulated devices, buttons and outputs.
pub fn setup(
    config: &Config,
    board: &BoardProfile,
    sim: bool,
    snapshot: Option<PathBuf>,
) -> Result<(ApplianceSetup, Option<SimControls>), SetupError> {
    let sim = sim || config.devices.sim;
    let mut client = config.client_config(Some(board));
    if sim {
        // The board's device ids name real hardware.
        client.media.camera = config.devices.camera.clone();
        client.media.microphone = config.devices.microphone.clone();
        client.media.speaker = config.devices.speaker.clone();
    }
    client.media.devices = if sim {
        DeviceManager::simulated_showing(preferences(), config.devices.sim_camera_picture)
    } else {
        let alsa = AlsaBackend::new(config.alsa_config(Some(board)));
        DeviceManager::new(Arc::new(alsa), Arc::new(V4l2Backend::new()), preferences())
    };
    if client.janus_urls.iter().any(|u| u.starts_with("wss://")) {
        if let Some(ca) = config.credentials.ca_file.as_deref() {
            client.janus_tls = Some(provisioning::tls_client_config(Some(ca), "the Janus server")?);
        }
    }
    // "auto": the route to the first Janus server, found when the client starts (the network may be late).
    let route_to = if config.media_ip().is_none() { config.servers.janus_urls.first().cloned() } else { None };

    let credential = match config.credential() {
        ConfiguredCredential::DeviceKey(source) => {
            let endpoint = config
                .token_endpoint()
                .ok_or_else(|| SetupError::Other("servers.token_url is needed with a device key".into()))?;
            let key = source.load()?;
            provisioning::token_credential(TokenEndpoint::new(&endpoint)?, key, RefreshPolicy::default())
        }
        ConfiguredCredential::StaticToken(source) => provisioning::static_token(&source)?,
    };

    let door = config.door.as_ref();
    let behaviour = Behaviour {
        targets: config.targets().to_vec(),
        auto_answer_after: config.auto_answer_after(),
        early_video: config.call.early_video,
        door_code: config.door_code()?,
        relay_pulse: door.map(|d| Duration::from_millis(u64::from(d.pulse_ms))).unwrap_or(Duration::from_secs(1)),
        max_code_attempts_per_minute: door.map(|d| d.max_attempts_per_minute).unwrap_or(5),
        admission: config.admission.clone(),
        guard: door.map(guard_policy).unwrap_or_default(),
        ..Behaviour::default()
    };

    let button_actions: HashMap<String, _> = config.buttons.iter().map(|(n, a)| (n.clone(), *a)).collect();
    let leds: HashMap<LedState, String> =
        LedState::ALL.iter().filter_map(|s| config.leds.get(*s).map(|n| (*s, n.to_owned()))).collect();
    let relay = door.map(|d| d.relay.clone());
    let output_names: Vec<String> = leds.values().cloned().chain(relay.iter().cloned()).collect();
    let mut outputs: HashMap<String, Box<dyn OutputLine>> = HashMap::new();
    let (buttons, controls): (Box<dyn ButtonInput>, Option<SimControls>) = if sim {
        // Simulated lines are addressed by name: no chip is opened or looked up; the board's timings hold.
        let specs: Vec<ButtonSpec> = config
            .buttons
            .keys()
            .zip(0u32..)
            .map(|(name, line)| {
                let mut spec = ButtonSpec::new(name.as_str(), "sim", line);
                if let Some((debounce, long_press)) = board.button_timing(name) {
                    (spec.debounce, spec.long_press) = (debounce, long_press);
                }
                spec
            })
            .collect();
        let buttons = SimButtons::new(&specs)?;
        let sim_outputs = SimOutputs::new();
        for name in &output_names {
            outputs.insert(name.clone(), Box::new(sim_outputs.line(name)));
        }
        let controls = SimControls { buttons: buttons.handle(), outputs: sim_outputs };
        (Box::new(buttons), Some(controls))
    } else {
        let specs = config.buttons.keys().map(|n| board.button_spec(n)).collect::<Result<Vec<_>, String>>();
        let specs = specs.map_err(SetupError::Other)?;
        for name in leds.values() {
            let spec = board.led_spec(name).map_err(SetupError::Other)?;
            outputs.insert(name.clone(), Box::new(GpioOutput::open(&spec)?));
        }
        if let Some(r) = &relay {
            let spec = board.relay_spec(r).map_err(SetupError::Other)?;
            outputs.insert(r.clone(), Box::new(GpioOutput::open(&spec)?));
        }
        (Box::new(GpioButtons::open(&specs)?), None)
    };

    let screen: Option<Box<dyn Framebuffer + Send>> = match config.display_target(Some(board)) {
        DisplayTarget::Framebuffer(path) if !sim => Some(Box::new(LinuxFramebuffer::open(&path)?)),
        DisplayTarget::Framebuffer(_) => Some(Box::new(MemoryFramebuffer::new(800, 480, FramebufferFormat::Xrgb8888))),
        DisplayTarget::Memory(size) => {
            Some(Box::new(MemoryFramebuffer::new(size.width, size.height, FramebufferFormat::Xrgb8888)))
        }
        DisplayTarget::None => None,
    };

    let setup = ApplianceSetup {
        client,
        credential,
        behaviour,
        buttons,
        button_actions,
        outputs,
        relay,
        leds,
        screen,
        screen_fps: config.display.fps,
        snapshot,
        route_to,
        door_guard_file: state_directory().map(|dir| dir.join("door-guard.json")),
    };
    Ok((setup, controls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_to_a_loopback_janus_is_loopback_and_bad_urls_are_errors() {
        assert_eq!(route_ip("ws://127.0.0.1:8188").unwrap(), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(route_ip("ws://127.0.0.1").unwrap(), IpAddr::from([127, 0, 0, 1]));
        assert!(route_ip("not a url").is_err());
        assert!(route_ip("ws://no-such-host.invalid:8188").is_err());
    }
}

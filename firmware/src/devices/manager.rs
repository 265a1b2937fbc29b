//! The device manager of the calling API: the camera, microphone and speaker lists (with formats and
//! permission state), the default device of each kind (persisted through [`DevicePreferences`]),
//! hot-plug as `<kind>sUpdated { added, removed }` events found by rescanning the backends, and the
//! shared camera feeds that the call's encoder and the local preview read.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::broadcast;

use super::audio::{AudioBackend, AudioCapture, AudioPlayback};
use super::feed::{CameraFeed, WeakCameraFeed};
use super::permission::check_node;
use super::preferences::DevicePreferences;
use super::video::{VideoBackend, VideoRequest};
use super::{CaptureFormat, DeviceError, DeviceKind, Permission};

/// Subscriber queue of device events (a slow subscriber loses the oldest: it can re-read the lists).
const EVENT_CAPACITY: usize = 64;

/// A device as the manager shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Camera, microphone or speaker.
    pub kind: DeviceKind,
    /// The id to select or open it by.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// The device node whose access decides the permission.
    pub node: Option<PathBuf>,
    /// Capture formats (cameras only).
    pub formats: Vec<CaptureFormat>,
    /// Whether this process may open it (checked when the list was made).
    pub permission: Permission,
}

/// What changed among the devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceEvent {
    /// Cameras appeared or left.
    CamerasUpdated {
        /// New cameras.
        added: Vec<DeviceInfo>,
        /// Cameras gone.
        removed: Vec<DeviceInfo>,
    },
    /// Microphones appeared or left.
    MicrophonesUpdated {
        /// New microphones.
        added: Vec<DeviceInfo>,
        /// Microphones gone.
        removed: Vec<DeviceInfo>,
    },
    /// Speakers appeared or left.
    SpeakersUpdated {
        /// New speakers.
        added: Vec<DeviceInfo>,
        /// Speakers gone.
        removed: Vec<DeviceInfo>,
    },
    /// The default device of a kind changed (set by the user, or because the default left or came back).
    DefaultDeviceChanged {
        /// Which kind.
        kind: DeviceKind,
        /// The new default (`None`: no device of that kind).
        id: Option<String>,
    },
    /// A device's permission state changed.
    PermissionChanged {
        /// Which kind.
        kind: DeviceKind,
        /// Which device.
        id: String,
        /// The new state.
        permission: Permission,
    },
}

struct State {
    devices: Vec<DeviceInfo>,
    /// A scan has been made (later additions are hot-plug).
    scanned: bool,
    defaults: HashMap<DeviceKind, Option<String>>,
    prefs: DevicePreferences,
    /// Running feeds, kept weakly so a camera closes when its last subscriber goes.
    feeds: HashMap<String, WeakCameraFeed>,
}

struct Inner {
    audio: Arc<dyn AudioBackend>,
    video: Arc<dyn VideoBackend>,
    state: Mutex<State>,
    events: broadcast::Sender<DeviceEvent>,
}

/// Lists, selects and opens the board's devices. Cheap to clone.
#[derive(Clone)]
pub struct DeviceManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DeviceManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceManager").field("devices", &self.state().devices.len()).finish()
    }
}

const KINDS: [DeviceKind; 3] = [DeviceKind::Camera, DeviceKind::Microphone, DeviceKind::Speaker];

impl DeviceManager {
    /// A manager over these backends with these preferences; scans the devices once.
    pub fn new(audio: Arc<dyn AudioBackend>, video: Arc<dyn VideoBackend>, prefs: DevicePreferences) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let manager = DeviceManager {
            inner: Arc::new(Inner {
                audio,
                video,
                state: Mutex::new(State {
                    devices: Vec::new(),
                    scanned: false,
                    defaults: HashMap::new(),
                    prefs,
                    feeds: HashMap::new(),
                }),
                events,
            }),
        };
        manager.refresh();
        manager
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A manager over the simulated devices (tone microphone, capturing speaker, test-pattern camera),
    /// with in-memory preferences: what `--sim` and the host tests use.
    pub fn simulated() -> Self {
        Self::simulated_with(DevicePreferences::in_memory())
    }

    /// A manager over the simulated devices whose defaults persist through `prefs`.
    pub fn simulated_with(prefs: DevicePreferences) -> Self {
        Self::simulated_showing(prefs, super::video::sim::SimPicture::default())
    }

    /// A manager over the simulated devices whose camera shows `picture`.
    pub fn simulated_showing(prefs: DevicePreferences, picture: super::video::sim::SimPicture) -> Self {
        Self::new(
            Arc::new(super::audio::sim::SimAudioBackend::new()),
            Arc::new(super::video::sim::SimVideoBackend::new().with_picture(picture)),
            prefs,
        )
    }

    /// The audio backend (to reach backend-specific controls, e.g. a simulated speaker's tap).
    pub fn audio_backend(&self) -> &Arc<dyn AudioBackend> {
        &self.inner.audio
    }

    /// Device events (hot-plug, default and permission changes) from now on.
    pub fn events(&self) -> broadcast::Receiver<DeviceEvent> {
        self.inner.events.subscribe()
    }

    fn scan(&self) -> Vec<DeviceInfo> {
        let mut devices = Vec::new();
        for cam in self.inner.video.list() {
            let permission = permission_of(cam.node.as_deref());
            devices.push(DeviceInfo {
                kind: DeviceKind::Camera,
                id: cam.id,
                name: cam.name,
                node: cam.node,
                formats: cam.formats,
                permission,
            });
        }
        for dev in self.inner.audio.list() {
            let permission = permission_of(dev.node.as_deref());
            devices.push(DeviceInfo {
                kind: dev.kind,
                id: dev.id,
                name: dev.name,
                node: dev.node,
                formats: Vec::new(),
                permission,
            });
        }
        devices
    }

    /// Rescans the backends now; returns (and publishes) what changed. The hot-plug watcher calls this
    /// periodically.
    pub fn refresh(&self) -> Vec<DeviceEvent> {
        let scanned = self.scan();
        let mut state = self.state();
        let mut events = Vec::new();
        for kind in KINDS {
            let old: Vec<&DeviceInfo> = state.devices.iter().filter(|d| d.kind == kind).collect();
            let new: Vec<&DeviceInfo> = scanned.iter().filter(|d| d.kind == kind).collect();
            let added: Vec<DeviceInfo> =
                new.iter().filter(|n| !old.iter().any(|o| o.id == n.id)).map(|d| (*d).clone()).collect();
            let removed: Vec<DeviceInfo> =
                old.iter().filter(|o| !new.iter().any(|n| n.id == o.id)).map(|d| (*d).clone()).collect();
            for n in &new {
                if let Some(o) = old.iter().find(|o| o.id == n.id) {
                    if o.permission != n.permission {
                        events.push(DeviceEvent::PermissionChanged {
                            kind,
                            id: n.id.clone(),
                            permission: n.permission.clone(),
                        });
                    }
                }
            }
            if !added.is_empty() || !removed.is_empty() {
                // The first scan finds what was there at start: not news for the operator.
                let level = if state.scanned { log::Level::Info } else { log::Level::Debug };
                for d in &added {
                    log::log!(level, "{} added: {} ({})", kind.as_str(), d.id, d.name);
                }
                for d in &removed {
                    log::log!(level, "{} removed: {} ({})", kind.as_str(), d.id, d.name);
                }
                events.push(match kind {
                    DeviceKind::Camera => DeviceEvent::CamerasUpdated { added, removed },
                    DeviceKind::Microphone => DeviceEvent::MicrophonesUpdated { added, removed },
                    DeviceKind::Speaker => DeviceEvent::SpeakersUpdated { added, removed },
                });
            }
        }
        state.devices = scanned;
        state.scanned = true;
        for kind in KINDS {
            let resolved = resolve_default(&state, kind);
            let previous = state.defaults.insert(kind, resolved.clone());
            if previous.as_ref() != Some(&resolved) {
                if previous.is_some() {
                    log::info!("default {} is now {}", kind.as_str(), resolved.as_deref().unwrap_or("none"));
                }
                if previous.is_some() || resolved.is_some() {
                    events.push(DeviceEvent::DefaultDeviceChanged { kind, id: resolved });
                }
            }
        }
        drop(state);
        for e in &events {
            let _ = self.inner.events.send(e.clone());
        }
        events
    }

    fn list(&self, kind: DeviceKind) -> Vec<DeviceInfo> {
        self.state().devices.iter().filter(|d| d.kind == kind).cloned().collect()
    }

    /// The cameras present at the last scan.
    pub fn cameras(&self) -> Vec<DeviceInfo> {
        self.list(DeviceKind::Camera)
    }

    /// The microphones present at the last scan.
    pub fn microphones(&self) -> Vec<DeviceInfo> {
        self.list(DeviceKind::Microphone)
    }

    /// The speakers present at the last scan.
    pub fn speakers(&self) -> Vec<DeviceInfo> {
        self.list(DeviceKind::Speaker)
    }

    /// A device by kind and id, from the last scan.
    pub fn device(&self, kind: DeviceKind, id: &str) -> Option<DeviceInfo> {
        self.state().devices.iter().find(|d| d.kind == kind && d.id == id).cloned()
    }

    /// The permission state of a device, checked now.
    pub fn permission(&self, kind: DeviceKind, id: &str) -> Result<Permission, DeviceError> {
        let device = self.device(kind, id).ok_or_else(|| not_found(kind, id))?;
        Ok(permission_of(device.node.as_deref()))
    }

    /// Asks for access to a device. Linux has no prompt: access is granted by the system (udev rules,
    /// the service user's groups), so this checks again, publishes a change, and returns the state.
    pub fn request_permission(&self, kind: DeviceKind, id: &str) -> Result<Permission, DeviceError> {
        let now = self.permission(kind, id)?;
        let changed = {
            let mut state = self.state();
            match state.devices.iter_mut().find(|d| d.kind == kind && d.id == id) {
                Some(d) if d.permission != now => {
                    d.permission = now.clone();
                    true
                }
                _ => false,
            }
        };
        if changed {
            let _ = self.inner.events.send(DeviceEvent::PermissionChanged {
                kind,
                id: id.to_owned(),
                permission: now.clone(),
            });
        }
        if let Permission::Denied { reason } = &now {
            log::warn!("{} {id}: access denied: {reason}", kind.as_str());
        }
        Ok(now)
    }

    /// The default device of `kind`: the preference when that device is present, else the first listed.
    pub fn default_device(&self, kind: DeviceKind) -> Option<DeviceInfo> {
        let state = self.state();
        let id = state.defaults.get(&kind).cloned().flatten()?;
        state.devices.iter().find(|d| d.kind == kind && d.id == id).cloned()
    }

    /// Makes `id` the default of its kind and persists the choice.
    pub fn set_default_device(&self, kind: DeviceKind, id: &str) -> Result<(), DeviceError> {
        let changed = {
            let mut state = self.state();
            if !state.devices.iter().any(|d| d.kind == kind && d.id == id) {
                return Err(not_found(kind, id));
            }
            state.prefs.set(kind, id)?;
            let previous = state.defaults.insert(kind, Some(id.to_owned()));
            previous != Some(Some(id.to_owned()))
        };
        if changed {
            log::info!("default {} set to {id}", kind.as_str());
            let _ = self.inner.events.send(DeviceEvent::DefaultDeviceChanged { kind, id: Some(id.to_owned()) });
        }
        Ok(())
    }

    fn pick(&self, kind: DeviceKind, id: Option<&str>) -> Result<String, DeviceError> {
        match id {
            Some(id) => Ok(id.to_owned()),
            None => self.default_device(kind).map(|d| d.id).ok_or_else(|| not_found(kind, "(default)")),
        }
    }

    /// Opens a microphone (`None`: the default).
    pub fn open_microphone(&self, id: Option<&str>) -> Result<Box<dyn AudioCapture>, DeviceError> {
        self.inner.audio.open_capture(&self.pick(DeviceKind::Microphone, id)?)
    }

    /// Opens a speaker (`None`: the default).
    pub fn open_speaker(&self, id: Option<&str>) -> Result<Box<dyn AudioPlayback>, DeviceError> {
        self.inner.audio.open_playback(&self.pick(DeviceKind::Speaker, id)?)
    }

    /// The feed of a camera (`None`: the default), shared with whoever already watches it (the first
    /// subscriber's request decides the format); the camera closes when the last subscriber goes.
    pub fn camera_feed(&self, id: Option<&str>, request: &VideoRequest) -> Result<CameraFeed, DeviceError> {
        let id = self.pick(DeviceKind::Camera, id)?;
        let mut state = self.state();
        state.feeds.retain(|_, w| w.upgrade().is_some());
        if let Some(feed) = state.feeds.get(&id).and_then(WeakCameraFeed::upgrade) {
            return Ok(feed);
        }
        let feed = CameraFeed::start(Arc::clone(&self.inner.video), &id, request.clone())?;
        state.feeds.insert(id, feed.downgrade());
        Ok(feed)
    }

    /// Rescans every `interval` on a thread of its own until the returned watcher is dropped.
    pub fn watch(&self, interval: Duration) -> HotplugWatcher {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = Arc::downgrade(&self.inner);
        let thread_stop = Arc::clone(&stop);
        let spawned = std::thread::Builder::new().name("cbx-hotplug".into()).spawn(move || {
            let step = Duration::from_millis(50).min(interval);
            let mut waited = Duration::ZERO;
            while !thread_stop.load(Ordering::SeqCst) {
                std::thread::sleep(step);
                waited += step;
                if waited < interval {
                    continue;
                }
                waited = Duration::ZERO;
                let Some(inner) = weak.upgrade() else { return };
                DeviceManager { inner }.refresh();
            }
        });
        if let Err(e) = spawned {
            log::error!("hot-plug watcher not started: {e}");
        }
        HotplugWatcher { stop }
    }
}

/// Stops the hot-plug rescans when dropped.
pub struct HotplugWatcher {
    stop: Arc<AtomicBool>,
}

impl Drop for HotplugWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn permission_of(node: Option<&std::path::Path>) -> Permission {
    match node {
        Some(node) => check_node(node),
        None => Permission::Granted,
    }
}

fn not_found(kind: DeviceKind, id: &str) -> DeviceError {
    DeviceError::NotFound { kind: kind.as_str(), name: id.to_owned() }
}

fn resolve_default(state: &State, kind: DeviceKind) -> Option<String> {
    let present = |id: &str| state.devices.iter().any(|d| d.kind == kind && d.id == id);
    if let Some(p) = state.prefs.get(kind) {
        if present(p) {
            return Some(p.to_owned());
        }
    }
    if let Some(Some(current)) = state.defaults.get(&kind) {
        if present(current) {
            return Some(current.clone());
        }
    }
    state.devices.iter().find(|d| d.kind == kind).map(|d| d.id.clone())
}

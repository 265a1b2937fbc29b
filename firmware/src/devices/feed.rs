//! A camera shared by everyone who wants its pictures (the call's encoder, the local preview): one
//! capture thread per open camera, the newest frame published to every subscriber (a slow subscriber
//! skips frames, nothing queues), reopening with backoff when the camera stalls or disappears, and
//! closing the camera when the last subscriber goes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::video::{VideoBackend, VideoRequest};
use super::CapturedFrame;
use crate::calling::Backoff;

/// How long one wait for a frame may take before the camera counts as stalled.
const FRAME_TIMEOUT: Duration = Duration::from_secs(2);
/// Reopen backoff after a camera failed.
const REOPEN: Backoff =
    Backoff { initial: Duration::from_millis(200), max: Duration::from_secs(5), max_attempts: None };

/// The state of a feed's camera.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedState {
    /// Opening the camera.
    Starting,
    /// Frames are flowing.
    Live,
    /// The camera failed; reopening (the reason is the last error).
    Reopening {
        /// The error that stopped the camera.
        reason: String,
    },
}

struct FeedShared {
    id: String,
    stop: AtomicBool,
    frames: AtomicU64,
    reopens: AtomicU64,
    state: Mutex<FeedState>,
}

/// Ends the capture thread when the last subscriber is dropped.
struct StopOnDrop(Arc<FeedShared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::SeqCst);
    }
}

/// A subscription to a camera's frames. Cheap to clone; the camera closes when the last clone is dropped.
#[derive(Clone)]
pub struct CameraFeed {
    frames: watch::Receiver<Option<Arc<CapturedFrame>>>,
    shared: Arc<FeedShared>,
    _stop: Arc<StopOnDrop>,
}

impl std::fmt::Debug for CameraFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraFeed").field("camera", &self.shared.id).finish()
    }
}

impl CameraFeed {
    /// Opens `id` through `backend` and starts capturing on a thread of its own.
    pub(crate) fn start(
        backend: Arc<dyn VideoBackend>,
        id: &str,
        request: VideoRequest,
    ) -> Result<CameraFeed, super::DeviceError> {
        let shared = Arc::new(FeedShared {
            id: id.to_owned(),
            stop: AtomicBool::new(false),
            frames: AtomicU64::new(0),
            reopens: AtomicU64::new(0),
            state: Mutex::new(FeedState::Starting),
        });
        let (tx, rx) = watch::channel(None);
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("cbx-camera".into())
            .spawn(move || capture_loop(backend, request, thread_shared, tx))
            .map_err(|e| super::DeviceError::Io { device: id.to_owned(), reason: format!("capture thread: {e}") })?;
        let stop = Arc::new(StopOnDrop(Arc::clone(&shared)));
        Ok(CameraFeed { frames: rx, shared, _stop: stop })
    }

    /// A handle that does not keep the camera open.
    pub(crate) fn downgrade(&self) -> WeakCameraFeed {
        WeakCameraFeed {
            frames: self.frames.clone(),
            shared: Arc::clone(&self.shared),
            stop: Arc::downgrade(&self._stop),
        }
    }

    /// The camera's id.
    pub fn camera_id(&self) -> &str {
        &self.shared.id
    }

    /// Whether this feed is still capturing (a feed whose subscribers all went is stopped).
    pub fn is_running(&self) -> bool {
        !self.shared.stop.load(Ordering::SeqCst)
    }

    /// The newest frame, if any arrived yet.
    pub fn latest(&self) -> Option<Arc<CapturedFrame>> {
        self.frames.borrow().clone()
    }

    /// Waits for a frame newer than the last one this subscriber saw; `None` when the feed ended.
    pub async fn next(&mut self) -> Option<Arc<CapturedFrame>> {
        loop {
            self.frames.changed().await.ok()?;
            if let Some(frame) = self.frames.borrow_and_update().clone() {
                return Some(frame);
            }
        }
    }

    /// Frames captured so far.
    pub fn frames_captured(&self) -> u64 {
        self.shared.frames.load(Ordering::Relaxed)
    }

    /// Times the camera was reopened after a failure.
    pub fn reopens(&self) -> u64 {
        self.shared.reopens.load(Ordering::Relaxed)
    }

    /// The camera's state.
    pub fn state(&self) -> FeedState {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A feed handle that does not keep the camera open (the device manager's registry of running feeds).
pub(crate) struct WeakCameraFeed {
    frames: watch::Receiver<Option<Arc<CapturedFrame>>>,
    shared: Arc<FeedShared>,
    stop: std::sync::Weak<StopOnDrop>,
}

impl WeakCameraFeed {
    /// The feed, while some subscriber still holds it and its thread runs.
    pub(crate) fn upgrade(&self) -> Option<CameraFeed> {
        let stop = self.stop.upgrade()?;
        if self.shared.stop.load(Ordering::SeqCst) {
            return None;
        }
        Some(CameraFeed { frames: self.frames.clone(), shared: Arc::clone(&self.shared), _stop: stop })
    }
}

fn set_state(shared: &FeedShared, state: FeedState) {
    *shared.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
}

/// Sleeps `total` in short steps so a stop request is seen quickly; false when stopped.
fn sleep_unless_stopped(shared: &FeedShared, total: Duration) -> bool {
    let step = Duration::from_millis(50);
    let mut slept = Duration::ZERO;
    while slept < total {
        if shared.stop.load(Ordering::SeqCst) {
            return false;
        }
        let d = step.min(total - slept);
        std::thread::sleep(d);
        slept += d;
    }
    !shared.stop.load(Ordering::SeqCst)
}

fn capture_loop(
    backend: Arc<dyn VideoBackend>,
    request: VideoRequest,
    shared: Arc<FeedShared>,
    tx: watch::Sender<Option<Arc<CapturedFrame>>>,
) {
    let mut failures: u32 = 0;
    'reopen: while !shared.stop.load(Ordering::SeqCst) {
        let mut camera = match backend.open(&shared.id, &request) {
            Ok(c) => c,
            Err(e) => {
                if failures == 0 {
                    log::warn!("camera {}: {e}; retrying", shared.id);
                }
                set_state(&shared, FeedState::Reopening { reason: e.to_string() });
                let delay = REOPEN.delay(failures, rand::random()).unwrap_or(REOPEN.max);
                failures = failures.saturating_add(1);
                if !sleep_unless_stopped(&shared, delay) {
                    break;
                }
                continue;
            }
        };
        log::info!("camera {} capturing {}", shared.id, camera.format());
        while !shared.stop.load(Ordering::SeqCst) {
            match camera.next_frame(FRAME_TIMEOUT) {
                Ok(frame) => {
                    if failures > 0 {
                        log::info!("camera {} recovered after {failures} failed attempts", shared.id);
                        failures = 0;
                    }
                    shared.frames.fetch_add(1, Ordering::Relaxed);
                    let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
                    if *state != FeedState::Live {
                        *state = FeedState::Live;
                    }
                    drop(state);
                    if tx.send(Some(Arc::new(frame))).is_err() {
                        break 'reopen; // every subscriber is gone
                    }
                }
                Err(e) => {
                    log::warn!("camera {}: {e}; reopening", shared.id);
                    set_state(&shared, FeedState::Reopening { reason: e.to_string() });
                    shared.reopens.fetch_add(1, Ordering::Relaxed);
                    drop(camera);
                    let delay = REOPEN.delay(failures, rand::random()).unwrap_or(REOPEN.max);
                    failures = failures.saturating_add(1);
                    if !sleep_unless_stopped(&shared, delay) {
                        break 'reopen;
                    }
                    continue 'reopen;
                }
            }
        }
    }
    log::debug!("camera {} closed", shared.id);
}

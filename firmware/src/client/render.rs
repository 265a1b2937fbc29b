//! The display side of the calling API: a `Screen` (a framebuffer, its compositor, and a task that redraws it at
//! the display's frame rate) and `VideoRenderer` (a remote video stream drawn into a tile of a screen, with its
//! scaling mode, pause and resume). The renderers' state lives in the calling core; the screen reads it, takes the
//! newest decoded frame of each rendered stream on every tick (frames the screen is too slow for are dropped,
//! never queued) and draws the overlays (name, muted, speaking, placeholder, call state).

use super::shared::Shared;
use super::ClientError;
use crate::calling::{CallId, CallState, RendererId, ScalingMode, StreamId, VideoStreamKind};
use crate::devices::convert::FrameConverter;
use crate::devices::video::VideoRequest;
use crate::devices::{CameraFeed, DeviceKind, DeviceManager, FeedState};
use crate::display::{Compositor, DisplayError, Framebuffer, Rect, TileInfo, TileSlot, VideoState};
use crate::frame::VideoFrame;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

struct ScreenState {
    compositor: Compositor,
    fb: Box<dyn Framebuffer + Send>,
    /// The renderers drawn on this screen, with the decoded-frame count of the frame last submitted.
    renderers: HashMap<RendererId, u64>,
    frames_submitted: u64,
    /// The local camera preview (picture-in-picture), when one is started.
    preview: Option<PreviewSlot>,
    /// The call whose state the banner shows when no rendered stream names one (a ringing call, an ended one).
    followed: Option<CallId>,
    /// The renderer of a screen share, drawn in the large tile (a second share gets an ordinary tile).
    share: Option<RendererId>,
}

impl ScreenState {
    /// The compositor slot a renderer draws into.
    fn slot_of(&self, id: RendererId) -> TileSlot {
        if self.share == Some(id) {
            TileSlot::Share
        } else {
            TileSlot::Participant(id.0)
        }
    }

    fn forget(&mut self, id: RendererId) {
        if self.share == Some(id) {
            self.share = None;
            self.compositor.set_share(None);
        } else {
            self.compositor.remove_participant(id.0);
        }
        self.renderers.remove(&id);
    }
}

/// The preview drawn on a screen: a camera feed, its scaling, and the last frame shown.
struct PreviewSlot {
    /// The renderer that started it (another renderer's `stop` or drop leaves it alone).
    owner: u64,
    feed: CameraFeed,
    name: String,
    scaling_mode: ScalingMode,
    last_sequence: Option<u32>,
    converter: FrameConverter,
}

/// How long tiles take to glide to their new place when participants come and go.
const RELAYOUT_GLIDE: Duration = Duration::from_millis(250);

struct ScreenInner {
    shared: Arc<Shared>,
    /// The compositor's clock starts here.
    epoch: std::time::Instant,
    state: Mutex<ScreenState>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for ScreenInner {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}

/// A display: tiles for the rendered remote videos, with overlays. Cheap to clone.
#[derive(Clone)]
pub struct Screen {
    inner: Arc<ScreenInner>,
}

impl Screen {
    /// A screen on `framebuffer` for the client sharing `shared` (`Screen::new` takes the client itself).
    pub(super) fn on(shared: Arc<Shared>, framebuffer: Box<dyn Framebuffer + Send>, fps: u32) -> Screen {
        let (width, height) = framebuffer.size();
        let inner = Arc::new(ScreenInner {
            shared,
            epoch: std::time::Instant::now(),
            state: Mutex::new(ScreenState {
                compositor: {
                    let mut c = Compositor::new(width, height);
                    c.set_animation(Some(RELAYOUT_GLIDE));
                    c
                },
                fb: framebuffer,
                renderers: HashMap::new(),
                frames_submitted: 0,
                preview: None,
                followed: None,
                share: None,
            }),
            task: Mutex::new(None),
        });
        let weak = Arc::downgrade(&inner);
        let period = Duration::from_micros(1_000_000 / u64::from(fps.clamp(1, 120)));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let screen = Screen { inner };
                if let Err(e) = screen.redraw() {
                    log::warn!("screen redraw failed: {e}");
                }
            }
        });
        *inner.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Screen { inner }
    }

    fn state(&self) -> MutexGuard<'_, ScreenState> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn size(&self) -> (u32, u32) {
        self.state().fb.size()
    }

    /// Brings the screen up to date: tiles for this screen's renderers, their newest frames, overlays, the call
    /// state; draws what changed. The screen's task calls it at its frame rate.
    pub fn redraw(&self) -> Result<Vec<Rect>, DisplayError> {
        let shared = &self.inner.shared;
        let mut state = self.state();
        let ids: Vec<RendererId> = state.renderers.keys().copied().collect();
        let mut banner: Option<(CallState, Option<crate::calling::CallEndReason>)> = None;
        for id in ids {
            let view = shared.peek(|core| {
                let r = *core.renderer(id)?;
                let p = core.participant(r.participant)?;
                let call = core.call(r.call)?;
                let name = p.display_name.clone().unwrap_or_else(|| p.identifier.to_string());
                let video = if r.is_paused {
                    VideoState::Paused
                } else if r.is_rendering {
                    VideoState::Live
                } else {
                    VideoState::Unavailable
                };
                let tile =
                    TileInfo { name, muted: p.is_muted, speaking: p.is_speaking, video, scaling_mode: r.scaling_mode };
                let is_share = core.stream(r.stream).is_some_and(|(_, s)| s.kind == VideoStreamKind::ScreenSharing);
                Some((r.call, r.stream, tile, is_share, call.state, call.end_reason.clone()))
            });
            let Some((call, stream, tile, is_share, call_state, reason)) = view else {
                state.forget(id);
                continue;
            };
            banner.get_or_insert((call_state, reason));
            let live = tile.video == VideoState::Live;
            if is_share && state.share.is_none() {
                // Promoted to the large tile (a second share, once the first is gone): off the grid.
                state.compositor.remove_participant(id.0);
                state.share = Some(id);
            }
            if state.share == Some(id) {
                state.compositor.set_share(Some(tile));
            } else {
                state.compositor.set_participant(id.0, tile);
            }
            if !live {
                continue;
            }
            let (decoded, frame) = shared.remote_video(call, stream);
            if state.renderers.get(&id).is_some_and(|seen| *seen != decoded) {
                if let Some(frame) = frame {
                    let slot = state.slot_of(id);
                    state.compositor.submit_frame(slot, frame);
                    state.frames_submitted += 1;
                    state.renderers.insert(id, decoded);
                }
            }
        }
        if let Some((call_state, reason)) = banner {
            state.compositor.set_call_state(call_state, reason.as_ref());
        } else if let Some(id) = state.followed {
            let view = shared.peek(|core| {
                let call = core.call(id)?;
                let caller = call
                    .participants
                    .first()
                    .and_then(|p| core.participant(*p))
                    .map(|p| p.display_name.clone().unwrap_or_else(|| p.identifier.to_string()));
                Some((call.state, call.end_reason.clone(), caller))
            });
            let text = view.and_then(|(call_state, reason, caller)| {
                let text = crate::display::overlay::call_banner_text(call_state, reason.as_ref())?;
                Some(match (call_state, caller) {
                    (CallState::Incoming, Some(who)) => format!("Incoming call from {who}"),
                    (CallState::Ringing | CallState::Connecting, Some(who)) => format!("Calling {who}..."),
                    _ => text,
                })
            });
            state.compositor.set_banner(text);
        }
        let ScreenState { compositor, fb, preview, .. } = &mut *state;
        compositor.set_clock(self.inner.epoch.elapsed());
        if let Some(p) = preview.as_mut() {
            let live = p.feed.state() == FeedState::Live;
            let video = if live { VideoState::Live } else { VideoState::Unavailable };
            compositor.set_preview(Some(TileInfo {
                name: p.name.clone(),
                video,
                scaling_mode: p.scaling_mode,
                ..TileInfo::default()
            }));
            if let Some(frame) = p.feed.latest().filter(|f| Some(f.sequence) != p.last_sequence) {
                p.last_sequence = Some(frame.sequence);
                match p.converter.to_i420(&frame) {
                    Ok(i420) => {
                        compositor.submit_frame(TileSlot::Preview, i420);
                    }
                    Err(e) => log::debug!("preview frame skipped: {e}"),
                }
            }
        }
        compositor.render(fb.as_mut())
    }

    /// The tile of a renderer on this screen, once laid out.
    pub fn tile(&self, renderer: RendererId) -> Option<Rect> {
        let state = self.state();
        state.compositor.tile_rect(state.slot_of(renderer))
    }

    /// The text of the banner on the screen (the call's state: who is calling, ringing, ended...), if any.
    pub fn banner(&self) -> Option<String> {
        self.state().compositor.banner_text().map(str::to_owned)
    }

    /// The local preview's tile, while a preview is shown and laid out.
    pub fn tile_of_preview(&self) -> Option<Rect> {
        self.state().compositor.tile_rect(TileSlot::Preview)
    }

    /// The screen as composed, as a PNG file.
    pub fn snapshot_png(&self, path: &Path) -> Result<(), DisplayError> {
        let state = self.state();
        let canvas = state.compositor.canvas();
        let rgb: Vec<u8> = canvas.pixels().iter().flat_map(|p| [(p >> 16) as u8, (p >> 8) as u8, *p as u8]).collect();
        crate::display::memory::write_png(path, canvas.width(), canvas.height(), &rgb)
    }

    /// The luma of a region of the composed screen, as a frame (to read a test pattern's counter in a tile).
    pub fn capture_luma(&self, rect: Rect) -> Option<VideoFrame> {
        self.state().compositor.canvas().luma_frame(rect)
    }

    /// How many decoded frames were handed to the compositor, and how many of those it dropped (screen slower).
    pub fn frame_counts(&self) -> (u64, u64) {
        let state = self.state();
        (state.frames_submitted, state.compositor.dropped_frames())
    }

    /// Shows `call`'s state in the banner (who is calling while it rings, the end reason after it) whenever no
    /// rendered stream's call does; `None` stops.
    pub fn follow_call(&self, call: Option<CallId>) {
        self.state().followed = call;
    }

    fn set_preview(&self, slot: Option<PreviewSlot>) {
        let mut state = self.state();
        if slot.is_none() {
            state.compositor.set_preview(None);
        }
        state.preview = slot;
    }

    fn attach(&self, id: RendererId) {
        self.state().renderers.insert(id, u64::MAX);
    }
}

/// Saves the screen as `path` each time the process gets SIGUSR1 (`kill -USR1 <pid>`): a snapshot of the
/// running appliance's display at any moment.
pub fn snapshot_on_sigusr1(screen: Screen, path: std::path::PathBuf) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut usr1 = match signal(SignalKind::user_defined1()) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("no snapshots on SIGUSR1: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            match screen.redraw().and_then(|_| screen.snapshot_png(&path)) {
                Ok(()) => log::info!("screen saved as {} (SIGUSR1)", path.display()),
                Err(e) => log::warn!("screen not saved: {e}"),
            }
        }
    });
}

/// A remote video stream rendered into a tile of a `Screen`.
#[derive(Clone)]
pub struct VideoRenderer {
    id: RendererId,
    screen: Screen,
}

impl VideoRenderer {
    pub(crate) fn start(screen: &Screen, stream: StreamId, mode: ScalingMode) -> Result<VideoRenderer, ClientError> {
        let id = screen.inner.shared.with_core(|core, _| core.add_renderer(stream, mode))?;
        screen.attach(id);
        Ok(VideoRenderer { id, screen: screen.clone() })
    }

    pub fn id(&self) -> RendererId {
        self.id
    }

    fn read<R>(&self, f: impl FnOnce(&crate::calling::RendererInfo) -> R) -> Option<R> {
        self.screen.inner.shared.peek(|core| core.renderer(self.id).map(f))
    }

    /// Drawing frames: not paused, and the stream is available.
    pub fn is_rendering(&self) -> bool {
        self.read(|r| r.is_rendering).unwrap_or(false)
    }

    pub fn is_paused(&self) -> bool {
        self.read(|r| r.is_paused).unwrap_or(false)
    }

    pub fn scaling_mode(&self) -> Option<ScalingMode> {
        self.read(|r| r.scaling_mode)
    }

    pub fn set_scaling_mode(&self, mode: ScalingMode) -> Result<(), ClientError> {
        Ok(self.screen.inner.shared.with_core(|core, _| core.set_renderer_scaling_mode(self.id, mode))?)
    }

    /// Freezes the tile on its last picture (with a "paused" badge).
    pub fn pause(&self) -> Result<(), ClientError> {
        Ok(self.screen.inner.shared.with_core(|core, _| core.set_renderer_paused(self.id, true))?)
    }

    pub fn resume(&self) -> Result<(), ClientError> {
        Ok(self.screen.inner.shared.with_core(|core, _| core.set_renderer_paused(self.id, false))?)
    }

    /// The tile this renderer draws into (its target on the screen), once laid out.
    pub fn target(&self) -> Option<Rect> {
        self.screen.tile(self.id)
    }

    /// Stops rendering and frees the tile.
    pub fn dispose(self) -> Result<(), ClientError> {
        Ok(self.screen.inner.shared.with_core(|core, _| core.remove_renderer(self.id))?)
    }
}

/// The local camera preview drawn picture-in-picture on a `Screen` (the device manager's preview renderer).
/// Shares the camera with a call's video: both read the same feed.
pub struct PreviewRenderer {
    id: u64,
    screen: Screen,
    manager: DeviceManager,
    request: VideoRequest,
}

/// Preview renderer ids.
static NEXT_PREVIEW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl PreviewRenderer {
    /// Starts previewing `camera` (`None`: the default camera) on `screen`.
    pub fn start(
        screen: &Screen,
        manager: &DeviceManager,
        camera: Option<&str>,
        request: VideoRequest,
        scaling_mode: ScalingMode,
    ) -> Result<PreviewRenderer, ClientError> {
        let id = NEXT_PREVIEW.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let renderer = PreviewRenderer { id, screen: screen.clone(), manager: manager.clone(), request };
        renderer.show(camera, scaling_mode)?;
        Ok(renderer)
    }

    fn show(&self, camera: Option<&str>, scaling_mode: ScalingMode) -> Result<(), ClientError> {
        let feed = self.manager.camera_feed(camera, &self.request)?;
        let name = self
            .manager
            .device(DeviceKind::Camera, feed.camera_id())
            .map(|d| d.name)
            .unwrap_or_else(|| feed.camera_id().to_owned());
        log::info!("local preview of {} started", feed.camera_id());
        self.screen.set_preview(Some(PreviewSlot {
            owner: self.id,
            feed,
            name,
            scaling_mode,
            last_sequence: None,
            converter: FrameConverter::new(),
        }));
        Ok(())
    }

    fn with<R>(&self, f: impl FnOnce(&mut PreviewSlot) -> R) -> Option<R> {
        self.screen.state().preview.as_mut().filter(|p| p.owner == self.id).map(f)
    }

    /// The camera being previewed (`None` once stopped).
    pub fn camera_id(&self) -> Option<String> {
        self.with(|p| p.feed.camera_id().to_owned())
    }

    /// Frames are arriving from the camera and being drawn.
    pub fn is_rendering(&self) -> bool {
        self.with(|p| p.feed.state() == FeedState::Live).unwrap_or(false)
    }

    pub fn scaling_mode(&self) -> Option<ScalingMode> {
        self.with(|p| p.scaling_mode)
    }

    pub fn set_scaling_mode(&self, mode: ScalingMode) {
        self.with(|p| p.scaling_mode = mode);
    }

    /// Previews another camera instead (the previous one closes unless a call still sends it).
    pub fn switch_camera(&self, camera: &str) -> Result<(), ClientError> {
        let mode = self.scaling_mode().unwrap_or_default();
        self.show(Some(camera), mode)
    }

    /// The picture-in-picture tile, once laid out (while this renderer's preview is shown).
    pub fn target(&self) -> Option<Rect> {
        self.with(|_| ()).and_then(|()| self.screen.tile_of_preview())
    }

    /// Frames captured by the previewed camera so far.
    pub fn frames_captured(&self) -> u64 {
        self.with(|p| p.feed.frames_captured()).unwrap_or(0)
    }

    /// Stops the preview and frees its tile (as dropping the renderer does).
    pub fn stop(self) {}
}

impl Drop for PreviewRenderer {
    fn drop(&mut self) {
        let mine = self.screen.state().preview.as_ref().is_some_and(|p| p.owner == self.id);
        if mine {
            self.screen.set_preview(None);
        }
    }
}

//! The display side of the calling API: a `Screen` (a framebuffer, its compositor, and a task that redraws it at
//! the display's frame rate) and `VideoRenderer` (a remote video stream drawn into a tile of a screen, with its
//! scaling mode, pause and resume). The renderers' state lives in the calling core; the screen reads it, takes the
//! newest decoded frame of each rendered stream on every tick (frames the screen is too slow for are dropped,
//! never queued) and draws the overlays (name, muted, speaking, placeholder, call state).

use super::engine::Shared;
use super::{CallClient, ClientError};
use crate::calling::{CallState, RendererId, ScalingMode, StreamId};
use crate::display::{Compositor, DisplayError, Framebuffer, Rect, Slot, TileInfo, VideoState};
use crate::media::VideoFrame;
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
}

struct ScreenInner {
    shared: Arc<Shared>,
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
    /// A screen on `framebuffer`, redrawn `fps` times a second (at most) while it exists. Needs a tokio runtime.
    pub fn new(client: &CallClient, framebuffer: Box<dyn Framebuffer + Send>, fps: u32) -> Screen {
        let (width, height) = framebuffer.size();
        let inner = Arc::new(ScreenInner {
            shared: client.shared.clone(),
            state: Mutex::new(ScreenState {
                compositor: Compositor::new(width, height),
                fb: framebuffer,
                renderers: HashMap::new(),
                frames_submitted: 0,
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
                Some((r.call, tile, call.state, call.end_reason.clone()))
            });
            let Some((call, tile, call_state, reason)) = view else {
                state.compositor.remove_participant(id.0);
                state.renderers.remove(&id);
                continue;
            };
            banner.get_or_insert((call_state, reason));
            let live = tile.video == VideoState::Live;
            state.compositor.set_participant(id.0, tile);
            if !live {
                continue;
            }
            let decoded = shared.media_stats(call).map(|s| s.video_frames_decoded).unwrap_or(0);
            if state.renderers.get(&id).is_some_and(|seen| *seen != decoded) {
                if let Some(frame) = shared.latest_frame(call) {
                    state.compositor.submit_frame(Slot::Participant(id.0), frame);
                    state.frames_submitted += 1;
                    state.renderers.insert(id, decoded);
                }
            }
        }
        if let Some((call_state, reason)) = banner {
            state.compositor.set_call_state(call_state, reason.as_ref());
        }
        let ScreenState { compositor, fb, .. } = &mut *state;
        compositor.render(fb.as_mut())
    }

    /// The tile of a renderer on this screen, once laid out.
    pub fn tile(&self, renderer: RendererId) -> Option<Rect> {
        self.state().compositor.tile_rect(Slot::Participant(renderer.0))
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

    fn attach(&self, id: RendererId) {
        self.state().renderers.insert(id, u64::MAX);
    }
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

//! The screen compositor: keeps the layout, the newest frame and overlay information of every tile, and
//! composes the screen on a [`Canvas`] redrawing only what changed, then writes the damaged rectangles to a
//! [`Framebuffer`]. Frames that arrive faster than the screen composes are dropped, never queued: each tile
//! holds at most one pending frame, the newest. When participants come and go, tiles glide from their old
//! place to the new layout over a short animation (driven by the clock the caller passes in, so it is
//! tested without waiting; off unless enabled, as in the golden-image tests).

use std::time::{Duration, Instant};

use super::framebuffer::{Framebuffer, FramebufferFormat};
use super::layout::{compute_layout, Layout};
use super::memory::MemoryFramebuffer;
use super::overlay;
use super::scale::{Scaler, ScalingMode};
use super::{Canvas, DisplayError, Rect};
use crate::calling::{CallEndReason, CallState};
use crate::frame::{draw_test_frame, VideoFrame};

/// A place on the screen that shows one video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TileSlot {
    /// A remote participant's camera, by the caller's id for it.
    Participant(u64),
    /// The screen share.
    Share,
    /// The local preview (picture-in-picture).
    Preview,
}

/// Whether a tile's video is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VideoState {
    /// Frames are shown as they come (a placeholder until the first one).
    #[default]
    Live,
    /// The last frame stays, marked "PAUSED"; new frames are dropped.
    Paused,
    /// No video: a placeholder.
    Unavailable,
}

/// What a tile shows besides its frames.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TileInfo {
    pub name: String,
    pub muted: bool,
    pub speaking: bool,
    pub video: VideoState,
    pub scaling_mode: ScalingMode,
}

impl TileInfo {
    /// A live tile with a name, fitted.
    pub fn named(name: impl Into<String>) -> Self {
        TileInfo { name: name.into(), ..TileInfo::default() }
    }
}

#[derive(Debug)]
struct Tile {
    slot: TileSlot,
    info: TileInfo,
    rect: Rect,
    /// Where the tile was when the layout last changed (the start of its glide), and where it goes.
    glide: Option<(Rect, Rect)>,
    current: Option<VideoFrame>,
    pending: Option<VideoFrame>,
    scaler: Option<Scaler>,
    dirty: bool,
}

impl Tile {
    fn new(slot: TileSlot, info: TileInfo) -> Self {
        Tile { slot, info, rect: Rect::default(), glide: None, current: None, pending: None, scaler: None, dirty: true }
    }
}

/// Background colour between tiles.
pub const BACKGROUND: u32 = 0x101010;

/// Composes the screen; see the module documentation.
#[derive(Debug)]
pub struct Compositor {
    canvas: Canvas,
    layout: Layout,
    participants: Vec<Tile>,
    share: Option<Tile>,
    preview: Option<Tile>,
    banner: Option<(String, Rect)>,
    relayout: bool,
    full_redraw: bool,
    dropped: u64,
    shown: u64,
    /// The caller's clock (see [`Compositor::set_clock`]).
    clock: Duration,
    /// Length of the re-layout glide (`None`: tiles jump to their new place).
    animation: Option<Duration>,
    /// When the current glide started.
    glide_start: Option<Duration>,
}

/// Eases a glide: slow start and end (smoothstep).
fn ease(p: f64) -> f64 {
    let p = p.clamp(0.0, 1.0);
    p * p * (3.0 - 2.0 * p)
}

fn lerp_rect(from: Rect, to: Rect, p: f64) -> Rect {
    let l = |a: u32, b: u32| (f64::from(a) + (f64::from(b) - f64::from(a)) * p).round().max(0.0) as u32;
    Rect::new(l(from.x, to.x), l(from.y, to.y), l(from.width, to.width), l(from.height, to.height))
}

impl Compositor {
    /// A compositor for a `width`x`height` screen, with nothing on it.
    pub fn new(width: u32, height: u32) -> Self {
        Compositor {
            canvas: Canvas::new(width, height),
            layout: compute_layout(width, height, 0, false, false),
            participants: Vec::new(),
            share: None,
            preview: None,
            banner: None,
            relayout: true,
            full_redraw: true,
            dropped: 0,
            shown: 0,
            clock: Duration::ZERO,
            animation: None,
            glide_start: None,
        }
    }

    /// Enables (`Some(length)`) or disables the re-layout glide.
    pub fn set_animation(&mut self, length: Option<Duration>) {
        self.animation = length.filter(|d| !d.is_zero());
    }

    /// Sets the time of the next composition (any monotonic clock; only differences matter).
    pub fn set_clock(&mut self, now: Duration) {
        self.clock = now;
    }

    /// A re-layout glide is in progress (the caller should keep composing at its frame rate).
    pub fn is_animating(&self) -> bool {
        self.glide_start.is_some()
    }

    /// Adds a participant's tile (at the end) or updates its overlay information.
    pub fn set_participant(&mut self, id: u64, info: TileInfo) {
        match self.participants.iter_mut().find(|t| t.slot == TileSlot::Participant(id)) {
            Some(t) => update_info(t, info),
            None => {
                self.participants.push(Tile::new(TileSlot::Participant(id), info));
                self.relayout = true;
            }
        }
    }

    /// Removes a participant's tile; the others are laid out again.
    pub fn remove_participant(&mut self, id: u64) {
        let before = self.participants.len();
        self.participants.retain(|t| t.slot != TileSlot::Participant(id));
        self.relayout |= self.participants.len() != before;
    }

    /// Shows (`Some`) or removes the screen share tile.
    pub fn set_share(&mut self, info: Option<TileInfo>) {
        set_optional(&mut self.share, TileSlot::Share, info, &mut self.relayout);
    }

    /// Shows (`Some`) or removes the local preview.
    pub fn set_preview(&mut self, info: Option<TileInfo>) {
        set_optional(&mut self.preview, TileSlot::Preview, info, &mut self.relayout);
    }

    /// The call state banner (none when connected).
    pub fn set_call_state(&mut self, state: CallState, reason: Option<&CallEndReason>) {
        self.set_banner(overlay::call_banner_text(state, reason));
    }

    /// The banner's text, if one is shown.
    pub fn banner_text(&self) -> Option<&str> {
        self.banner.as_ref().map(|(t, _)| t.as_str())
    }

    /// Shows a banner with this text near the top of the screen (`None`: no banner).
    pub fn set_banner(&mut self, text: Option<String>) {
        if text.as_deref() != self.banner.as_ref().map(|(t, _)| t.as_str()) {
            self.banner = text.map(|t| {
                let r = overlay::banner_rect(self.canvas.width(), self.canvas.height(), &t);
                (t, r)
            });
            self.full_redraw = true;
        }
    }

    /// Hands over the newest frame of a slot. It replaces a frame not yet composed (that one is dropped and
    /// counted). Returns false if the slot is not on the screen (the frame is dropped too).
    pub fn submit_frame(&mut self, slot: TileSlot, frame: VideoFrame) -> bool {
        match self.tile_mut(slot) {
            Some(tile) => {
                let replaced = tile.pending.replace(frame).is_some();
                self.dropped += u64::from(replaced);
                true
            }
            None => {
                self.dropped += 1;
                false
            }
        }
    }

    /// Frames dropped so far (replaced before being shown, submitted while paused or to an unknown slot).
    pub fn dropped_frames(&self) -> u64 {
        self.dropped
    }

    /// Frames shown so far.
    pub fn shown_frames(&self) -> u64 {
        self.shown
    }

    /// The current layout (as of the last compose).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Where a slot is on the screen (as of the last compose); `None` if it is not shown.
    pub fn tile_rect(&self, slot: TileSlot) -> Option<Rect> {
        self.tiles().find(|t| t.slot == slot).map(|t| t.rect).filter(|r| !r.is_empty())
    }

    /// The composed screen.
    pub fn canvas(&self) -> &Canvas {
        &self.canvas
    }

    /// Composes what changed since the last call and returns the damaged rectangles.
    pub fn compose(&mut self) -> Vec<Rect> {
        let (width, height) = (self.canvas.width(), self.canvas.height());
        if self.relayout {
            self.layout =
                compute_layout(width, height, self.participants.len(), self.share.is_some(), self.preview.is_some());
            let mut targets: Vec<Rect> =
                (0..self.participants.len()).map(|i| self.layout.tiles.get(i).copied().unwrap_or_default()).collect();
            let share = self.layout.share.unwrap_or_default();
            let preview = self.layout.preview.unwrap_or_default();
            let animate = self.animation.is_some();
            let mut gliding = false;
            let place = |t: &mut Tile, target: Rect, gliding: &mut bool| {
                // A tile already on screen glides from where it is; a new one appears in place.
                if animate && !t.rect.is_empty() && t.rect != target {
                    t.glide = Some((t.rect, target));
                    *gliding = true;
                } else {
                    t.glide = None;
                    t.rect = target;
                }
            };
            for (t, target) in self.participants.iter_mut().zip(targets.drain(..)) {
                place(t, target, &mut gliding);
            }
            if let Some(t) = self.share.as_mut() {
                place(t, share, &mut gliding);
            }
            if let Some(t) = self.preview.as_mut() {
                place(t, preview, &mut gliding);
            }
            self.glide_start = gliding.then_some(self.clock);
            self.relayout = false;
            self.full_redraw = true;
        }
        if let (Some(start), Some(length)) = (self.glide_start, self.animation) {
            let p = ease(self.clock.saturating_sub(start).as_secs_f64() / length.as_secs_f64());
            for t in self.tiles_mut() {
                if let Some((from, to)) = t.glide {
                    t.rect = if p >= 1.0 { to } else { lerp_rect(from, to, p) };
                    if p >= 1.0 {
                        t.glide = None;
                    }
                }
            }
            if p >= 1.0 {
                self.glide_start = None;
            }
            self.full_redraw = true;
        }
        let full = std::mem::take(&mut self.full_redraw);
        if full {
            self.canvas.fill(Rect::new(0, 0, width, height), BACKGROUND);
        }
        // Take the pending frames: the newest wins, paused or hidden tiles drop them.
        let mut dropped = 0;
        for t in self.tiles_mut() {
            if let Some(frame) = t.pending.take() {
                if t.info.video == VideoState::Live && !t.rect.is_empty() {
                    t.current = Some(frame);
                    t.dirty = true;
                } else {
                    dropped += 1;
                }
            }
            t.dirty |= full;
        }
        self.dropped += dropped;
        // Layers bottom to top; a redrawn layer forces those above it that overlap it to be redrawn too.
        let mut layers: Vec<(Rect, bool)> = self.tiles().map(|t| (t.rect, t.dirty)).collect();
        if let Some((_, r)) = &self.banner {
            layers.push((*r, full));
        }
        for i in 0..layers.len() {
            if layers[i].1 {
                let below = layers[i].0;
                for layer in &mut layers[i + 1..] {
                    layer.1 |= layer.0.intersects(&below);
                }
            }
        }
        let mut damage = Vec::new();
        let mut shown = 0;
        let canvas = &mut self.canvas;
        let tiles = self.share.iter_mut().chain(self.participants.iter_mut()).chain(self.preview.iter_mut());
        for (t, &(_, dirty)) in tiles.zip(&layers) {
            t.dirty = false;
            if dirty && !t.rect.is_empty() {
                shown += u64::from(draw_tile(canvas, t));
                damage.push(t.rect);
            }
        }
        self.shown += shown;
        if let (Some((text, r)), Some(&(_, true))) = (&self.banner, layers.last()) {
            overlay::draw_banner(&mut self.canvas, *r, text);
            damage.push(*r);
        }
        if full {
            return vec![Rect::new(0, 0, width, height)];
        }
        damage
    }

    /// Composes and shows the result on `fb` (which must have the compositor's size); returns the damage.
    pub fn render(&mut self, fb: &mut dyn Framebuffer) -> Result<Vec<Rect>, DisplayError> {
        let size = (self.canvas.width(), self.canvas.height());
        if fb.size() != size {
            return Err(DisplayError::Geometry {
                reason: format!("framebuffer is {:?} but the compositor composes {:?}", fb.size(), size),
            });
        }
        let damage = self.compose();
        if damage.is_empty() {
            return Ok(damage);
        }
        for r in &damage {
            fb.write_rect(*r, self.canvas.region(*r), size.0 as usize)?;
        }
        fb.present(&damage)?;
        Ok(damage)
    }

    fn tiles(&self) -> impl Iterator<Item = &Tile> {
        self.share.iter().chain(&self.participants).chain(&self.preview)
    }

    fn tiles_mut(&mut self) -> impl Iterator<Item = &mut Tile> {
        self.share.iter_mut().chain(self.participants.iter_mut()).chain(self.preview.iter_mut())
    }

    fn tile_mut(&mut self, slot: TileSlot) -> Option<&mut Tile> {
        self.tiles_mut().find(|t| t.slot == slot)
    }
}

fn update_info(tile: &mut Tile, info: TileInfo) {
    if tile.info != info {
        tile.info = info;
        tile.dirty = true;
    }
}

fn set_optional(tile: &mut Option<Tile>, slot: TileSlot, info: Option<TileInfo>, relayout: &mut bool) {
    match (tile.as_mut(), info) {
        (Some(t), Some(info)) => update_info(t, info),
        (None, Some(info)) => {
            *tile = Some(Tile::new(slot, info));
            *relayout = true;
        }
        (Some(_), None) => {
            *tile = None;
            *relayout = true;
        }
        (None, None) => {}
    }
}

/// Draws one tile: its video (or a placeholder) and overlays. Returns whether a frame was shown.
fn draw_tile(canvas: &mut Canvas, t: &mut Tile) -> bool {
    let r = t.rect;
    let mut shown = false;
    let frame = if t.info.video == VideoState::Unavailable { None } else { t.current.as_ref() };
    match frame {
        Some(frame) => {
            let mode = t.info.scaling_mode;
            if !t.scaler.as_ref().is_some_and(|s| s.matches(mode, frame.width, frame.height, r.width, r.height)) {
                t.scaler = Some(Scaler::new(mode, frame.width, frame.height, r.width, r.height));
            }
            let stride = canvas.width() as usize;
            let start = r.y as usize * stride + r.x as usize;
            let converted = match (&t.scaler, canvas.pixels_mut().get_mut(start..)) {
                (Some(s), Some(out)) => s.convert(frame, out, stride),
                _ => Ok(()),
            };
            match converted {
                Ok(()) => shown = true,
                Err(e) => {
                    log::warn!("tile {:?}: {e}", t.slot);
                    overlay::draw_placeholder(canvas, r, &t.info.name, "Bad video");
                }
            }
            if t.info.video == VideoState::Paused {
                overlay::draw_badge(canvas, r, "PAUSED");
            }
        }
        None => {
            let text = match t.info.video {
                VideoState::Live => "Waiting for video",
                VideoState::Paused => "Video paused",
                VideoState::Unavailable => "No video",
            };
            overlay::draw_placeholder(canvas, r, &t.info.name, text);
        }
    }
    overlay::draw_tile_overlay(canvas, r, &t.info.name, t.info.muted, t.info.speaking);
    shown
}

/// Mean time to compose and show one `width`x`height` screen with `tiles` live 640x480 test-pattern tiles
/// (every tile gets a new frame every time), over `frames` screens, into an XRGB8888 memory framebuffer.
pub fn bench_compose(width: u32, height: u32, tiles: usize, frames: u32) -> Duration {
    let mut compositor = Compositor::new(width, height);
    let mut fb = MemoryFramebuffer::new(width, height, FramebufferFormat::Xrgb8888);
    for i in 0..tiles {
        compositor.set_participant(i as u64, TileInfo::named(format!("Participant {i}")));
    }
    let sources: Vec<VideoFrame> = (0..4).map(|n| draw_test_frame(640, 480, n)).collect();
    let _ = compositor.render(&mut fb);
    let start = Instant::now();
    for n in 0..frames {
        for i in 0..tiles {
            compositor.submit_frame(TileSlot::Participant(i as u64), sources[(n as usize + i) % sources.len()].clone());
        }
        if let Err(e) = compositor.render(&mut fb) {
            log::warn!("bench_compose: {e}");
        }
    }
    start.elapsed() / frames.max(1)
}

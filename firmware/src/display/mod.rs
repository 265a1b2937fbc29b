//! The appliance's screen: participant tiles, the local preview, the call state, composed into a framebuffer.
//!
//! - [`framebuffer`]: the [`Framebuffer`] trait (size, pixel format, stride, rectangle writes, damage presents);
//! - [`memory`]: the in-memory backend (tests, hosts, PNG screenshots); [`linux`]: the `/dev/fbN` backend;
//! - [`layout`]: where the tiles go; [`scale`]: scaling modes and I420 to RGB conversion at the tile's size;
//! - [`canvas`]: the RGB working surface; [`overlay`]: names, icons, call state drawn with embedded-graphics;
//! - [`compositor`]: puts it together, keeps only the newest frame per tile, reports damaged rectangles.

pub mod canvas;
pub mod compositor;
pub mod framebuffer;
pub mod layout;
pub mod linux;
pub mod memory;
pub mod overlay;
pub mod scale;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use canvas::Canvas;
pub use compositor::{bench_compose, Compositor, TileInfo, TileSlot, VideoState};
pub use framebuffer::{Framebuffer, FramebufferFormat, PixelPacking};
pub use layout::{compute_layout, Layout};
pub use linux::LinuxFramebuffer;
pub use memory::MemoryFramebuffer;
pub use scale::{Placement, Scaler, ScalingMode};

/// Errors of the display subsystem; each names the device, file or buffer involved.
#[derive(Debug, thiserror::Error)]
pub enum DisplayError {
    #[error("cannot open framebuffer {device}: {source}")]
    Open { device: PathBuf, source: std::io::Error },
    #[error("ioctl {request} failed on framebuffer {device}: {source}")]
    Ioctl { device: PathBuf, request: &'static str, source: std::io::Error },
    #[error("cannot mmap framebuffer {device} ({len} bytes): {source}")]
    Mmap { device: PathBuf, len: usize, source: std::io::Error },
    #[error("framebuffer {device} is not supported: {reason}")]
    Unsupported { device: PathBuf, reason: String },
    #[error("invalid framebuffer geometry: {reason}")]
    Geometry { reason: String },
    #[error("pixel buffer too short for {rect:?}: need {needed} pixels, got {got}")]
    ShortBuffer { rect: Rect, needed: usize, got: usize },
    #[error("video frame {width}x{height} is truncated or empty: {len} bytes, need {needed}")]
    BadFrame { width: u32, height: u32, len: usize, needed: usize },
    #[error("cannot write PNG snapshot {path}: {source}")]
    Png { path: PathBuf, source: png::EncodingError },
    #[error("cannot create PNG snapshot {path}: {source}")]
    SnapshotIo { path: PathBuf, source: std::io::Error },
}

/// An axis-aligned rectangle in screen pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    pub const fn new(x: u32, y: u32, width: u32, height: u32) -> Self {
        Rect { x, y, width, height }
    }

    /// One past the last column.
    pub fn right(&self) -> u32 {
        self.x.saturating_add(self.width)
    }

    /// One past the last row.
    pub fn bottom(&self) -> u32 {
        self.y.saturating_add(self.height)
    }

    pub fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }

    pub fn area(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// The common part of two rectangles, `None` if they do not overlap.
    pub fn intersect(&self, other: &Rect) -> Option<Rect> {
        let (x0, y0) = (self.x.max(other.x), self.y.max(other.y));
        let (x1, y1) = (self.right().min(other.right()), self.bottom().min(other.bottom()));
        (x1 > x0 && y1 > y0).then(|| Rect::new(x0, y0, x1 - x0, y1 - y0))
    }

    pub fn intersects(&self, other: &Rect) -> bool {
        self.intersect(other).is_some()
    }

    /// Whether `other` lies entirely inside `self`.
    pub fn contains_rect(&self, other: &Rect) -> bool {
        other.x >= self.x && other.y >= self.y && other.right() <= self.right() && other.bottom() <= self.bottom()
    }

    pub fn contains(&self, x: u32, y: u32) -> bool {
        x >= self.x && y >= self.y && x < self.right() && y < self.bottom()
    }

    /// This rectangle clipped to a `width`x`height` screen (may become empty).
    pub fn clip(&self, width: u32, height: u32) -> Rect {
        self.intersect(&Rect::new(0, 0, width, height)).unwrap_or_default()
    }

    /// The rectangle `t` (0..=256) of the way from `self` to `to`, for smooth re-layouts.
    pub fn lerp(&self, to: &Rect, t: u32) -> Rect {
        let t = i64::from(t.min(256));
        let mix = |a: u32, b: u32| (i64::from(a) + (i64::from(b) - i64::from(a)) * t / 256) as u32;
        Rect::new(mix(self.x, to.x), mix(self.y, to.y), mix(self.width, to.width), mix(self.height, to.height))
    }
}

//! The compositor's working surface: a screen-sized array of 0x00RRGGBB pixels that tiles and overlays are
//! drawn into before damaged rectangles go to the framebuffer.

use super::scale::rgb_to_luma;
use super::Rect;
use crate::frame::VideoFrame;

/// An RGB image, one 0x00RRGGBB word per pixel, rows of `width` pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<u32>,
}

impl Canvas {
    /// A black canvas.
    pub fn new(width: u32, height: u32) -> Self {
        Canvas { width, height, pixels: vec![0; width as usize * height as usize] }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// All pixels, row-major.
    pub fn pixels(&self) -> &[u32] {
        &self.pixels
    }

    /// All pixels, row-major, writable.
    pub fn pixels_mut(&mut self) -> &mut [u32] {
        &mut self.pixels
    }

    /// The pixel at (x, y), `None` outside.
    pub fn get(&self, x: u32, y: u32) -> Option<u32> {
        (x < self.width && y < self.height).then(|| self.pixels[y as usize * self.width as usize + x as usize])
    }

    /// Sets the pixel at (x, y); ignored outside.
    #[inline]
    pub fn set(&mut self, x: u32, y: u32, rgb: u32) {
        if x < self.width && y < self.height {
            self.pixels[y as usize * self.width as usize + x as usize] = rgb;
        }
    }

    /// Fills `rect` (clipped) with one colour.
    /// The luma of `rect` as an I420 frame with neutral chroma (`None` when `rect` leaves the canvas): reads a
    /// test pattern's frame counter back from a tile.
    pub fn luma_frame(&self, rect: Rect) -> Option<VideoFrame> {
        if rect.is_empty() || rect.right() > self.width() || rect.bottom() > self.height() {
            return None;
        }
        let mut data: Vec<u8> = Vec::with_capacity(VideoFrame::i420_len(rect.width, rect.height));
        for y in rect.y..rect.bottom() {
            for x in rect.x..rect.right() {
                data.push(rgb_to_luma(self.get(x, y)?));
            }
        }
        data.resize(VideoFrame::i420_len(rect.width, rect.height), 128);
        Some(VideoFrame { width: rect.width, height: rect.height, data: bytes::Bytes::from(data) })
    }

    pub fn fill(&mut self, rect: Rect, rgb: u32) {
        let r = rect.clip(self.width, self.height);
        for y in r.y..r.bottom() {
            let start = y as usize * self.width as usize + r.x as usize;
            self.pixels[start..start + r.width as usize].fill(rgb);
        }
    }

    /// The pixels from `rect`'s top-left on, for [`Framebuffer::write_rect`](super::Framebuffer::write_rect) with
    /// a source stride of [`width`](Self::width).
    pub fn region(&self, rect: Rect) -> &[u32] {
        let start = (rect.y as usize * self.width as usize + rect.x as usize).min(self.pixels.len());
        &self.pixels[start..]
    }

    /// The pixels of `rect` (clipped) copied out as a tightly packed image: (width, height, pixels).
    pub fn crop(&self, rect: Rect) -> (u32, u32, Vec<u32>) {
        let r = rect.clip(self.width, self.height);
        let mut out = Vec::with_capacity(r.area() as usize);
        for y in r.y..r.bottom() {
            let start = y as usize * self.width as usize + r.x as usize;
            out.extend_from_slice(&self.pixels[start..start + r.width as usize]);
        }
        (r.width, r.height, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_clips_and_crop_reads_back() {
        let mut c = Canvas::new(4, 3);
        c.fill(Rect::new(2, 1, 10, 10), 0x123456);
        assert_eq!(c.get(1, 1), Some(0));
        assert_eq!(c.get(3, 2), Some(0x123456));
        assert_eq!(c.get(4, 0), None);
        let (w, h, px) = c.crop(Rect::new(1, 1, 2, 2));
        assert_eq!((w, h), (2, 2));
        assert_eq!(px, vec![0, 0x123456, 0, 0x123456]);
        assert_eq!(c.region(Rect::new(2, 1, 1, 1))[0], 0x123456);
    }
}

//! The framebuffer abstraction: a screen of some size, pixel format and line stride that accepts rectangles
//! of RGB pixels (converted to its format) and presents damaged rectangles. Also owns the pixel packing
//! arithmetic (channel bitfields, as the kernel's `fb_bitfield`) shared by the memory and Linux backends.

use super::{DisplayError, Rect};

/// The pixel layouts a framebuffer can have (RGB packings; a camera's formats are `devices::CameraPixelFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FramebufferFormat {
    /// 16 bits: 5 red, 6 green, 5 blue (red in the high bits).
    Rgb565,
    /// 24 bits, little-endian word 0xRRGGBB (bytes B, G, R in memory).
    Rgb888,
    /// 32 bits, little-endian word 0x00RRGGBB (bytes B, G, R, X in memory).
    Xrgb8888,
}

impl FramebufferFormat {
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            FramebufferFormat::Rgb565 => 2,
            FramebufferFormat::Rgb888 => 3,
            FramebufferFormat::Xrgb8888 => 4,
        }
    }

    /// The standard channel layout of this format.
    pub fn packing(self) -> PixelPacking {
        let c = |offset, length| Channel { offset, length };
        match self {
            FramebufferFormat::Rgb565 => {
                PixelPacking { bytes_per_pixel: 2, red: c(11, 5), green: c(5, 6), blue: c(0, 5) }
            }
            FramebufferFormat::Rgb888 => {
                PixelPacking { bytes_per_pixel: 3, red: c(16, 8), green: c(8, 8), blue: c(0, 8) }
            }
            FramebufferFormat::Xrgb8888 => {
                PixelPacking { bytes_per_pixel: 4, red: c(16, 8), green: c(8, 8), blue: c(0, 8) }
            }
        }
    }
}

/// Where one colour channel lives in a little-endian pixel word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Channel {
    pub offset: u32,
    pub length: u32,
}

/// How an RGB colour is packed into a pixel of `bytes_per_pixel` little-endian bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PixelPacking {
    pub bytes_per_pixel: usize,
    pub red: Channel,
    pub green: Channel,
    pub blue: Channel,
}

impl PixelPacking {
    /// Whether every channel is 1..=8 bits wide and fits in the pixel.
    pub fn is_valid(&self) -> bool {
        let bits = self.bytes_per_pixel as u32 * 8;
        (2..=4).contains(&self.bytes_per_pixel)
            && [self.red, self.green, self.blue]
                .iter()
                .all(|c| (1..=8).contains(&c.length) && c.offset + c.length <= bits)
    }

    /// Packs a 0x00RRGGBB colour (requires [`is_valid`](Self::is_valid)).
    #[inline]
    pub fn pack(&self, rgb: u32) -> u32 {
        let chan = |v: u32, c: Channel| ((v & 0xff) >> (8 - c.length)) << c.offset;
        chan(rgb >> 16, self.red) | chan(rgb >> 8, self.green) | chan(rgb, self.blue)
    }

    /// Unpacks a pixel word to 0x00RRGGBB, widening narrow channels by repeating their high bits.
    pub fn unpack(&self, word: u32) -> u32 {
        let chan = |c: Channel| {
            let v = (word >> c.offset) & ((1u32 << c.length) - 1);
            let mut out = v << (8 - c.length);
            let mut filled = c.length;
            while filled < 8 {
                out |= out >> filled;
                filled *= 2;
            }
            out & 0xff
        };
        (chan(self.red) << 16) | (chan(self.green) << 8) | chan(self.blue)
    }

    fn is_standard_xrgb(&self) -> bool {
        *self == FramebufferFormat::Xrgb8888.packing()
    }
}

/// A screen. Pixels given to it are 0x00RRGGBB words; the backend converts them to its format.
pub trait Framebuffer {
    /// Visible size in pixels (width, height).
    fn size(&self) -> (u32, u32);
    /// The nearest standard description of the pixel format.
    fn format(&self) -> FramebufferFormat;
    /// Bytes per line of the backend's memory.
    fn stride(&self) -> usize;
    /// Converts and writes `rect` (clipped to the screen); `src[0]` is its top-left pixel and row `i` starts at
    /// `src[i * src_stride]`. Not visible until [`present`](Self::present).
    fn write_rect(&mut self, rect: Rect, src: &[u32], src_stride: usize) -> Result<(), DisplayError>;
    /// Makes the rectangles written since the last present visible (`damage` lists them).
    fn present(&mut self, damage: &[Rect]) -> Result<(), DisplayError>;
}

/// Checks that `src` holds `rect` at `src_stride` and returns the rectangle clipped to the screen.
pub(crate) fn check_source(
    rect: Rect,
    src: &[u32],
    src_stride: usize,
    width: u32,
    height: u32,
) -> Result<Rect, DisplayError> {
    let clipped = rect.clip(width, height);
    if clipped.is_empty() {
        return Ok(clipped);
    }
    let needed = (clipped.height as usize - 1) * src_stride + clipped.width as usize;
    if src.len() < needed || src_stride < clipped.width as usize {
        return Err(DisplayError::ShortBuffer { rect, needed, got: src.len() });
    }
    // Clipping only trims the right and bottom edges, so `src[0]` is still the top-left pixel.
    Ok(clipped)
}

/// Converts `rect` (already clipped, checked by [`check_source`]) into `dst`, a buffer of `dst_stride` bytes
/// per line in `packing`.
pub(crate) fn convert_into(
    packing: &PixelPacking,
    dst: &mut [u8],
    dst_stride: usize,
    rect: Rect,
    src: &[u32],
    src_stride: usize,
) {
    let bpp = packing.bytes_per_pixel;
    let (w, h) = (rect.width as usize, rect.height as usize);
    let standard = packing.is_standard_xrgb();
    for row in 0..h {
        let start = (rect.y as usize + row) * dst_stride + rect.x as usize * bpp;
        let Some(line) = dst.get_mut(start..start + w * bpp) else { return };
        let src_row = &src[row * src_stride..row * src_stride + w];
        if standard {
            for (out, &px) in line.chunks_exact_mut(4).zip(src_row) {
                out.copy_from_slice(&(px & 0x00ff_ffff).to_le_bytes());
            }
        } else {
            for (out, &px) in line.chunks_exact_mut(bpp).zip(src_row) {
                let word = packing.pack(px).to_le_bytes();
                out.copy_from_slice(&word[..bpp]);
            }
        }
    }
}

/// Copies the bytes of `rect` (pixels of `bpp` bytes) from one buffer to another of possibly different strides.
/// Rows that would fall outside either buffer are skipped.
pub(crate) fn copy_rect_bytes(
    src: &[u8],
    src_stride: usize,
    dst: &mut [u8],
    dst_stride: usize,
    rect: Rect,
    bpp: usize,
) {
    let len = rect.width as usize * bpp;
    for row in rect.y as usize..rect.bottom() as usize {
        let (s, d) = (row * src_stride + rect.x as usize * bpp, row * dst_stride + rect.x as usize * bpp);
        if let (Some(from), Some(to)) = (src.get(s..s + len), dst.get_mut(d..d + len)) {
            to.copy_from_slice(from);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_packings_round_trip() {
        for format in [FramebufferFormat::Rgb565, FramebufferFormat::Rgb888, FramebufferFormat::Xrgb8888] {
            let p = format.packing();
            assert!(p.is_valid());
            assert_eq!(p.bytes_per_pixel, format.bytes_per_pixel());
            for rgb in [0x000000u32, 0xffffff, 0xff0000, 0x00ff00, 0x0000ff] {
                assert_eq!(p.unpack(p.pack(rgb)), rgb, "{format:?} {rgb:06x}");
            }
        }
        let p = FramebufferFormat::Rgb565.packing();
        assert_eq!(p.pack(0xff0000), 0xf800);
        assert_eq!(p.pack(0x00ff00), 0x07e0);
        assert_eq!(p.pack(0x0000ff), 0x001f);
        // 0x84 = 1000_0100: red keeps 10000, widened back to 1000_0100.
        assert_eq!(p.unpack(p.pack(0x840000)), 0x840000);
    }

    #[test]
    fn convert_respects_stride_and_position() {
        let p = FramebufferFormat::Rgb565.packing();
        let stride = 10; // 5 pixels of 2 bytes, only 4 visible
        let mut dst = vec![0u8; stride * 3];
        let src = [0xff0000u32, 0x0000ff, 0x00ff00, 0xffffff];
        convert_into(&p, &mut dst, stride, Rect::new(1, 1, 2, 2), &src, 2);
        assert_eq!(&dst[..stride], &[0u8; 10]);
        assert_eq!(u16::from_le_bytes([dst[12], dst[13]]), 0xf800);
        assert_eq!(u16::from_le_bytes([dst[14], dst[15]]), 0x001f);
        assert_eq!(u16::from_le_bytes([dst[22], dst[23]]), 0x07e0);
        assert_eq!(u16::from_le_bytes([dst[24], dst[25]]), 0xffff);
        assert_eq!(&dst[10..12], &[0, 0]);
    }

    #[test]
    fn source_checks_clip_and_reject_short_buffers() {
        let src = vec![0u32; 100];
        assert_eq!(check_source(Rect::new(5, 5, 10, 10), &src, 10, 8, 8).unwrap(), Rect::new(5, 5, 3, 3));
        assert!(check_source(Rect::new(0, 0, 10, 11), &src, 10, 100, 100).is_err());
        assert!(check_source(Rect::new(0, 0, 10, 2), &src, 5, 100, 100).is_err());
        assert!(check_source(Rect::new(50, 50, 10, 10), &[], 10, 20, 20).unwrap().is_empty());
    }
}

//! The in-memory framebuffer: any of the three pixel formats and any line stride, for hosts and tests, with
//! read-back (`pixel`, `to_rgb`) and PNG snapshots (the appliance's screenshot).

use std::path::Path;

use super::framebuffer::{check_source, convert_into, Framebuffer, FramebufferFormat};
use super::{DisplayError, Rect};

/// A framebuffer held in memory.
#[derive(Debug, Clone)]
pub struct MemoryFramebuffer {
    width: u32,
    height: u32,
    format: FramebufferFormat,
    stride: usize,
    data: Vec<u8>,
    presents: u64,
    last_damage: Vec<Rect>,
}

impl MemoryFramebuffer {
    /// A black screen with tightly packed lines.
    pub fn new(width: u32, height: u32, format: FramebufferFormat) -> Self {
        let stride = width as usize * format.bytes_per_pixel();
        MemoryFramebuffer {
            width,
            height,
            format,
            stride,
            data: vec![0; stride * height as usize],
            presents: 0,
            last_damage: Vec::new(),
        }
    }

    /// A black screen with `stride` bytes per line (at least a line's pixels).
    pub fn with_stride(
        width: u32,
        height: u32,
        format: FramebufferFormat,
        stride: usize,
    ) -> Result<Self, DisplayError> {
        if stride < width as usize * format.bytes_per_pixel() {
            return Err(DisplayError::Geometry {
                reason: format!("stride {stride} is shorter than {width} pixels of {format:?}"),
            });
        }
        let mut fb = MemoryFramebuffer::new(width, height, format);
        fb.stride = stride;
        fb.data = vec![0; stride * height as usize];
        Ok(fb)
    }

    /// The raw memory, `stride` bytes per line.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The colour at (x, y) as [r, g, b], `None` outside the screen.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let bpp = self.format.bytes_per_pixel();
        let at = y as usize * self.stride + x as usize * bpp;
        let mut word = [0u8; 4];
        word[..bpp].copy_from_slice(self.data.get(at..at + bpp)?);
        let rgb = self.format.packing().unpack(u32::from_le_bytes(word));
        Some([(rgb >> 16) as u8, (rgb >> 8) as u8, rgb as u8])
    }

    /// The whole screen as tightly packed RGB bytes, row by row.
    pub fn to_rgb(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.width as usize * self.height as usize * 3);
        for y in 0..self.height {
            for x in 0..self.width {
                out.extend_from_slice(&self.pixel(x, y).unwrap_or_default());
            }
        }
        out
    }

    /// Writes the screen to `path` as an 8-bit RGB PNG.
    pub fn snapshot_png(&self, path: impl AsRef<Path>) -> Result<(), DisplayError> {
        write_png(path.as_ref(), self.width, self.height, &self.to_rgb())
    }

    /// How many times [`Framebuffer::present`] was called.
    pub fn presents(&self) -> u64 {
        self.presents
    }

    /// The damage given to the last present.
    pub fn last_damage(&self) -> &[Rect] {
        &self.last_damage
    }
}

/// Writes tightly packed RGB bytes as a PNG file.
pub fn write_png(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<(), DisplayError> {
    let io_err = |source| DisplayError::SnapshotIo { path: path.to_path_buf(), source };
    let png_err = |source| DisplayError::Png { path: path.to_path_buf(), source };
    let file = std::fs::File::create(path).map_err(io_err)?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(png_err)?;
    writer.write_image_data(rgb).map_err(png_err)?;
    writer.finish().map_err(png_err)
}

impl Framebuffer for MemoryFramebuffer {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn format(&self) -> FramebufferFormat {
        self.format
    }

    fn stride(&self) -> usize {
        self.stride
    }

    fn write_rect(&mut self, rect: Rect, src: &[u32], src_stride: usize) -> Result<(), DisplayError> {
        let clipped = check_source(rect, src, src_stride, self.width, self.height)?;
        if !clipped.is_empty() {
            convert_into(&self.format.packing(), &mut self.data, self.stride, clipped, src, src_stride);
        }
        Ok(())
    }

    fn present(&mut self, damage: &[Rect]) -> Result<(), DisplayError> {
        self.presents += 1;
        self.last_damage = damage.to_vec();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_and_stride_reads_back() {
        for format in [FramebufferFormat::Rgb565, FramebufferFormat::Rgb888, FramebufferFormat::Xrgb8888] {
            let stride = 7 * format.bytes_per_pixel() + 5;
            let mut fb = MemoryFramebuffer::with_stride(6, 4, format, stride).unwrap();
            let src = [0xff0000u32, 0x00ff00, 0x0000ff, 0xffffff, 0x000000, 0xff00ff];
            fb.write_rect(Rect::new(4, 2, 3, 2), &src, 3).unwrap();
            assert_eq!(fb.pixel(4, 2), Some([255, 0, 0]), "{format:?}");
            assert_eq!(fb.pixel(5, 2), Some([0, 255, 0]), "{format:?}");
            assert_eq!(fb.pixel(4, 3), Some([255, 255, 255]), "{format:?}");
            assert_eq!(fb.pixel(5, 3), Some([0, 0, 0]), "{format:?}");
            assert_eq!(fb.pixel(3, 2), Some([0, 0, 0]), "{format:?}");
            assert_eq!(fb.pixel(6, 0), None);
            let rgb = fb.to_rgb();
            assert_eq!(rgb.len(), 6 * 4 * 3);
            assert_eq!(&rgb[(2 * 6 + 4) * 3..(2 * 6 + 5) * 3], &[255, 0, 0]);
        }
        assert!(MemoryFramebuffer::with_stride(10, 2, FramebufferFormat::Xrgb8888, 39).is_err());
    }

    #[test]
    fn snapshot_is_a_decodable_png_of_the_screen() {
        let mut fb = MemoryFramebuffer::new(3, 2, FramebufferFormat::Rgb565);
        fb.write_rect(Rect::new(0, 0, 1, 1), &[0xff0000], 1).unwrap();
        let path = std::env::temp_dir().join(format!("callbox-display-{}.png", std::process::id()));
        fb.snapshot_png(&path).unwrap();
        let decoder = png::Decoder::new(std::fs::File::open(&path).unwrap());
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!((info.width, info.height), (3, 2));
        assert_eq!(&buf[..6], &[255, 0, 0, 0, 0, 0]);
        let missing = fb.snapshot_png("/nonexistent-dir/x.png").unwrap_err();
        assert!(missing.to_string().contains("/nonexistent-dir/x.png"));
    }
}

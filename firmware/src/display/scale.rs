//! Scaling modes with exact aspect arithmetic (Stretch, Crop centred, Fit letterboxed) and the conversion of
//! an I420 [`VideoFrame`] to RGB at a tile's size: the source index of every output column and row is
//! computed once per geometry ([`Scaler`]), so the per-pixel loop is table look-ups and integer YUV to RGB.

use super::{DisplayError, Rect};
use crate::frame::VideoFrame;

pub use crate::calling::ScalingMode;

/// Which part of the source goes to which part of the tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The region of the source that is shown.
    pub src: Rect,
    /// Where it goes, relative to the tile's top-left; the rest of the tile is black (Fit).
    pub dst: Rect,
}

/// `a * b / c` rounded to nearest, at least 1 and at most `max`.
fn ratio(a: u32, b: u32, c: u32, max: u32) -> u32 {
    let v = (2 * u64::from(a) * u64::from(b) + u64::from(c)) / (2 * u64::from(c).max(1));
    (v as u32).clamp(1, max.max(1))
}

/// The placement of a `src_w`x`src_h` source in a `dst_w`x`dst_h` tile. Empty rectangles if either is empty.
pub fn placement(mode: ScalingMode, src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> Placement {
    let full_src = Rect::new(0, 0, src_w, src_h);
    let full_dst = Rect::new(0, 0, dst_w, dst_h);
    if full_src.is_empty() || full_dst.is_empty() {
        return Placement { src: Rect::default(), dst: Rect::default() };
    }
    // Compare src_w/src_h with dst_w/dst_h exactly.
    let (lhs, rhs) = (u64::from(src_w) * u64::from(dst_h), u64::from(dst_w) * u64::from(src_h));
    let source_wider = lhs > rhs;
    match mode {
        ScalingMode::Stretch => Placement { src: full_src, dst: full_dst },
        _ if lhs == rhs => Placement { src: full_src, dst: full_dst },
        ScalingMode::Crop if source_wider => {
            let w = ratio(src_h, dst_w, dst_h, src_w);
            Placement { src: Rect::new((src_w - w) / 2, 0, w, src_h), dst: full_dst }
        }
        ScalingMode::Crop => {
            let h = ratio(src_w, dst_h, dst_w, src_h);
            Placement { src: Rect::new(0, (src_h - h) / 2, src_w, h), dst: full_dst }
        }
        ScalingMode::Fit if source_wider => {
            let h = ratio(src_h, dst_w, src_w, dst_h);
            Placement { src: full_src, dst: Rect::new(0, (dst_h - h) / 2, dst_w, h) }
        }
        ScalingMode::Fit => {
            let w = ratio(src_w, dst_h, src_h, dst_w);
            Placement { src: full_src, dst: Rect::new((dst_w - w) / 2, 0, w, dst_h) }
        }
    }
}

/// Converts frames of one size to one tile size in one mode; build it once per geometry and reuse it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaler {
    mode: ScalingMode,
    src_size: (u32, u32),
    dst_size: (u32, u32),
    placement: Placement,
    /// Luma column and chroma column of each output column of `placement.dst`.
    xs: Vec<(u32, u32)>,
    /// Luma row and chroma row of each output row of `placement.dst`.
    ys: Vec<(u32, u32)>,
}

/// Nearest source sample for each of `out` outputs covering `len` source samples from `start` (centre mapping).
fn index_table(start: u32, len: u32, out: u32) -> Vec<(u32, u32)> {
    (0..u64::from(out))
        .map(|i| {
            let s = u64::from(start) + (2 * i + 1) * u64::from(len) / (2 * u64::from(out).max(1));
            (s as u32, (s / 2) as u32)
        })
        .collect()
}

impl Scaler {
    pub fn new(mode: ScalingMode, src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> Self {
        let placement = placement(mode, src_w, src_h, dst_w, dst_h);
        let xs = index_table(placement.src.x, placement.src.width, placement.dst.width);
        let ys = index_table(placement.src.y, placement.src.height, placement.dst.height);
        Scaler { mode, src_size: (src_w, src_h), dst_size: (dst_w, dst_h), placement, xs, ys }
    }

    /// Whether this scaler is the one for this geometry.
    pub fn matches(&self, mode: ScalingMode, src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> bool {
        self.mode == mode && self.src_size == (src_w, src_h) && self.dst_size == (dst_w, dst_h)
    }

    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// Writes `frame` converted to the tile: `out[0]` is the tile's top-left, rows `out_stride` pixels apart.
    /// Bars outside the placement are black.
    pub fn convert(&self, frame: &VideoFrame, out: &mut [u32], out_stride: usize) -> Result<(), DisplayError> {
        let (sw, sh) = self.src_size;
        let (dw, dh) = (self.dst_size.0 as usize, self.dst_size.1 as usize);
        let needed = VideoFrame::i420_len(sw, sh);
        if (frame.width, frame.height) != self.src_size || frame.data.len() < needed {
            return Err(DisplayError::BadFrame {
                width: frame.width,
                height: frame.height,
                len: frame.data.len(),
                needed,
            });
        }
        if dw == 0 || dh == 0 {
            return Ok(());
        }
        let out_needed = (dh - 1) * out_stride + dw;
        if out.len() < out_needed || out_stride < dw {
            let rect = Rect::new(0, 0, dw as u32, dh as u32);
            return Err(DisplayError::ShortBuffer { rect, needed: out_needed, got: out.len() });
        }
        let (w, cw) = (sw as usize, (sw as usize).div_ceil(2));
        let ch = (sh as usize).div_ceil(2);
        let (y_plane, chroma) = frame.data.split_at(w * sh as usize);
        let (u_plane, v_plane) = chroma.split_at(cw * ch);
        let p = self.placement.dst;
        let (px, pw) = (p.x as usize, p.width as usize);
        let mut previous: Option<((u32, u32), usize)> = None;
        for row in 0..dh {
            let line_start = row * out_stride;
            let inside = row >= p.y as usize && row < p.bottom() as usize;
            if !inside {
                out[line_start..line_start + dw].fill(0);
                continue;
            }
            let (sy, scy) = self.ys[row - p.y as usize];
            // Upscaling repeats source rows: copy the line already converted.
            if let Some((prev, prev_start)) = previous {
                if prev == (sy, scy) {
                    out.copy_within(prev_start..prev_start + dw, line_start);
                    continue;
                }
            }
            let line = &mut out[line_start..line_start + dw];
            line[..px].fill(0);
            line[px + pw..].fill(0);
            let y_row = &y_plane[sy as usize * w..(sy as usize + 1) * w];
            let u_row = &u_plane[scy as usize * cw..(scy as usize + 1) * cw];
            let v_row = &v_plane[scy as usize * cw..(scy as usize + 1) * cw];
            for (dst, &(sx, scx)) in line[px..px + pw].iter_mut().zip(&self.xs) {
                *dst = yuv_to_rgb(y_row[sx as usize], u_row[scx as usize], v_row[scx as usize]);
            }
            previous = Some(((sy, scy), line_start));
        }
        Ok(())
    }
}

/// BT.601 limited-range YUV to 0x00RRGGBB, integer only.
#[inline]
pub fn yuv_to_rgb(y: u8, u: u8, v: u8) -> u32 {
    let c = 298 * (i32::from(y) - 16);
    let (d, e) = (i32::from(u) - 128, i32::from(v) - 128);
    let r = ((c + 409 * e + 128) >> 8).clamp(0, 255) as u32;
    let g = ((c - 100 * d - 208 * e + 128) >> 8).clamp(0, 255) as u32;
    let b = ((c + 516 * d + 128) >> 8).clamp(0, 255) as u32;
    (r << 16) | (g << 8) | b
}

/// BT.601 limited-range luma of a 0x00RRGGBB colour (the inverse of [`yuv_to_rgb`] for greys).
pub fn rgb_to_luma(rgb: u32) -> u8 {
    let (r, g, b) = ((rgb >> 16) & 0xff, (rgb >> 8) & 0xff, rgb & 0xff);
    (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stretch_uses_everything() {
        let p = placement(ScalingMode::Stretch, 640, 480, 300, 300);
        assert_eq!(p, Placement { src: Rect::new(0, 0, 640, 480), dst: Rect::new(0, 0, 300, 300) });
    }

    #[test]
    fn crop_cuts_the_overflow_centred() {
        // 16:9 into 4:3: keep 480*4/3 = 640 of 1280 columns... of a 1280x720 source: 960 columns, 160 cut each side.
        let p = placement(ScalingMode::Crop, 1280, 720, 400, 300);
        assert_eq!(p.src, Rect::new(160, 0, 960, 720));
        assert_eq!(p.dst, Rect::new(0, 0, 400, 300));
        // 4:3 into 16:9: keep 640*9/16 = 360 of 480 rows, 60 cut top and bottom.
        let p = placement(ScalingMode::Crop, 640, 480, 320, 180);
        assert_eq!(p.src, Rect::new(0, 60, 640, 360));
        // Portrait into square: keep the middle 9 rows... of 9x16: 9x9 at y 3.
        let p = placement(ScalingMode::Crop, 9, 16, 50, 50);
        assert_eq!(p.src, Rect::new(0, 3, 9, 9));
    }

    #[test]
    fn fit_letterboxes_centred() {
        // 16:9 into 4:3 tile 400x300: 400x225, bars of 37 and 38 rows.
        let p = placement(ScalingMode::Fit, 1280, 720, 400, 300);
        assert_eq!(p.src, Rect::new(0, 0, 1280, 720));
        assert_eq!(p.dst, Rect::new(0, 37, 400, 225));
        // 4:3 into 16:9 tile 320x180: 240x180, pillars of 40 columns.
        let p = placement(ScalingMode::Fit, 640, 480, 320, 180);
        assert_eq!(p.dst, Rect::new(40, 0, 240, 180));
        // Same aspect ratio: no bars.
        assert_eq!(placement(ScalingMode::Fit, 640, 480, 320, 240).dst, Rect::new(0, 0, 320, 240));
        // Degenerate sizes.
        assert!(placement(ScalingMode::Fit, 0, 480, 320, 240).dst.is_empty());
        assert_eq!(placement(ScalingMode::Fit, 1000, 1, 10, 10).dst, Rect::new(0, 4, 10, 1));
    }

    #[test]
    fn index_tables_sample_centres() {
        assert_eq!(index_table(0, 4, 2), vec![(1, 0), (3, 1)]);
        assert_eq!(index_table(10, 2, 4), vec![(10, 5), (10, 5), (11, 5), (11, 5)]);
        let same = index_table(0, 7, 7);
        assert!(same.iter().enumerate().all(|(i, &(s, _))| s == i as u32));
    }

    #[test]
    fn yuv_conversion_hits_primaries_and_greys() {
        assert_eq!(yuv_to_rgb(16, 128, 128), 0x000000);
        assert_eq!(yuv_to_rgb(235, 128, 128), 0xffffff);
        let red = yuv_to_rgb(81, 90, 240);
        assert!((red >> 16) > 0xf0 && (red >> 8 & 0xff) < 0x10 && (red & 0xff) < 0x10, "{red:06x}");
        for y in [16u8, 100, 200, 235] {
            assert!(rgb_to_luma(yuv_to_rgb(y, 128, 128)).abs_diff(y) <= 1);
        }
    }

    #[test]
    fn convert_rejects_mismatched_or_truncated_frames() {
        let s = Scaler::new(ScalingMode::Fit, 4, 4, 2, 2);
        let mut out = vec![0u32; 4];
        let short = VideoFrame { width: 4, height: 4, data: bytes::Bytes::from(vec![0u8; 10]) };
        assert!(s.convert(&short, &mut out, 2).is_err());
        let other = VideoFrame { width: 2, height: 2, data: bytes::Bytes::from(vec![0u8; 6]) };
        assert!(s.convert(&other, &mut out, 2).is_err());
        let ok = VideoFrame { width: 4, height: 4, data: bytes::Bytes::from(vec![128u8; 24]) };
        assert!(s.convert(&ok, &mut out[..3], 2).is_err());
        s.convert(&ok, &mut out, 2).unwrap();
        assert!(out.iter().all(|&p| p == yuv_to_rgb(128, 128, 128)));
    }
}

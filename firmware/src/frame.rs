//! Raw video frames: [`VideoFrame`] (tightly packed I420), the type shared by the cameras (`devices`), the encoder
//! and decoder (`media`) and the screen (`display`); and synthetic video: a moving I420 test pattern whose top band
//! carries a frame counter drawn as large black/white blocks (robust to H.264/VP8 compression), and the reader
//! that recovers the counter from a decoded frame. A leaf: it depends on no other module of the crate, so that
//! `media` can use `devices` without `devices` reaching back into `media`.

use bytes::Bytes;

/// A raw video frame in tightly packed I420 (Y plane `width*height`, then U and V planes of
/// `ceil(width/2)*ceil(height/2)` each).
#[derive(Clone, PartialEq, Eq)]
pub struct VideoFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The three planes, packed without padding.
    pub data: Bytes,
}

impl std::fmt::Debug for VideoFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoFrame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("bytes", &self.data.len())
            .finish()
    }
}

impl VideoFrame {
    /// Size in bytes of a packed I420 frame of this size.
    pub fn i420_len(width: u32, height: u32) -> usize {
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        w * h + 2 * cw * ch
    }

    /// The luma plane, or `None` if the buffer is too short for the declared size.
    pub fn y_plane(&self) -> Option<&[u8]> {
        let n = self.width as usize * self.height as usize;
        self.data.get(..n)
    }
}

/// Columns of counter blocks per row.
const COLS: u32 = 16;
/// Rows of counter blocks: 32 counter bits and 16 check bits.
const ROWS: u32 = 3;
/// Smallest frame the counter layout supports.
pub const MIN_WIDTH: u32 = 128;
/// Smallest frame height the counter layout supports.
pub const MIN_HEIGHT: u32 = 96;

const WHITE: u8 = 235;
const BLACK: u8 = 16;

fn block_size(width: u32, height: u32) -> (u32, u32) {
    let bw = width / COLS;
    let bh = (height / 4 / ROWS).max(1).min(bw);
    (bw, bh)
}

fn check_bits(counter: u32) -> u16 {
    let mixed = counter ^ (counter >> 16) ^ 0xA5C3;
    (mixed as u16) ^ 0x5A5A
}

fn bits_of(counter: u32) -> [bool; (COLS * ROWS) as usize] {
    let mut bits = [false; (COLS * ROWS) as usize];
    let check = check_bits(counter);
    for (i, bit) in bits.iter_mut().enumerate() {
        *bit = if i < 32 { (counter >> (31 - i)) & 1 == 1 } else { (check >> (15 - (i - 32))) & 1 == 1 };
    }
    bits
}

/// Draws frame `counter` of the test pattern into a new packed I420 frame. The pattern below the counter
/// band moves with the counter (a scrolling gradient and a bouncing box) so the encoder has real work.
pub fn draw_test_frame(width: u32, height: u32, counter: u32) -> VideoFrame {
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let mut buf = vec![0u8; VideoFrame::i420_len(width, height)];
    let (y_plane, chroma) = buf.split_at_mut(w * h);
    let (u_plane, v_plane) = chroma.split_at_mut(cw * ch);

    let (bw, bh) = block_size(width, height);
    let band = (bh * ROWS) as usize;
    let shift = counter as usize * 4;
    // Moving background.
    for y in 0..h {
        let row = &mut y_plane[y * w..(y + 1) * w];
        if y < band {
            continue;
        }
        for (x, px) in row.iter_mut().enumerate() {
            *px = (48 + ((x + y + shift) % 160)) as u8;
        }
    }
    // Bouncing box.
    let box_size = (w.min(h) / 6).max(8);
    let span_x = w.saturating_sub(box_size).max(1);
    let span_y = h.saturating_sub(band + box_size).max(1);
    let bx = (counter as usize * 7) % (2 * span_x);
    let bx = if bx >= span_x { 2 * span_x - bx - 1 } else { bx };
    let by = (counter as usize * 5) % (2 * span_y);
    let by = band + if by >= span_y { 2 * span_y - by - 1 } else { by };
    for y in by..(by + box_size).min(h) {
        for x in bx..(bx + box_size).min(w) {
            y_plane[y * w + x] = 220;
        }
    }
    // Counter band.
    let bits = bits_of(counter);
    for (i, bit) in bits.iter().enumerate() {
        let (col, row) = (i as u32 % COLS, i as u32 / COLS);
        let value = if *bit { WHITE } else { BLACK };
        for y in (row * bh)..((row + 1) * bh) {
            let start = (y * width + col * bw) as usize;
            y_plane[start..start + bw as usize].fill(value);
        }
    }
    // Chroma: neutral in the band, a slow hue drift elsewhere.
    let band_c = band.div_ceil(2);
    for y in 0..ch {
        for x in 0..cw {
            let (u, v) = if y < band_c {
                (128, 128)
            } else {
                ((96 + ((x + shift / 2) % 64)) as u8, (96 + ((y + shift / 2) % 64)) as u8)
            };
            u_plane[y * cw + x] = u;
            v_plane[y * cw + x] = v;
        }
    }
    VideoFrame { width, height, data: Bytes::from(buf) }
}

/// Reads the frame counter drawn by [`draw_test_frame`] from a (decoded) frame. Returns `None` if the
/// frame is too small, truncated, or the check bits do not match (not our pattern, or too damaged).
pub fn read_frame_counter(frame: &VideoFrame) -> Option<u32> {
    if frame.width < MIN_WIDTH || frame.height < MIN_HEIGHT {
        return None;
    }
    let y_plane = frame.y_plane()?;
    let (bw, bh) = block_size(frame.width, frame.height);
    let mut counter: u32 = 0;
    let mut check: u16 = 0;
    for i in 0..(COLS * ROWS) {
        let (col, row) = (i % COLS, i / COLS);
        // Average the inner half of the block, away from edges where ringing lives.
        let (x0, x1) = (col * bw + bw / 4, col * bw + bw - bw / 4);
        let (y0, y1) = (row * bh + bh / 4, row * bh + bh - bh / 4);
        let mut sum: u64 = 0;
        let mut n: u64 = 0;
        for y in y0..y1.max(y0 + 1) {
            for x in x0..x1.max(x0 + 1) {
                sum += u64::from(*y_plane.get((y * frame.width + x) as usize)?);
                n += 1;
            }
        }
        let bit = sum / n.max(1) > u64::from((WHITE as u16 + BLACK as u16) / 2);
        if i < 32 {
            counter = (counter << 1) | u32::from(bit);
        } else {
            check = (check << 1) | u16::from(bit);
        }
    }
    (check == check_bits(counter)).then_some(counter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_round_trips_on_raw_frames() {
        for &(w, h) in &[(640u32, 480u32), (320, 240), (1280, 720), (176, 144), (130, 98)] {
            for counter in [0u32, 1, 2, 255, 256, 65_535, 1_000_003, u32::MAX] {
                let frame = draw_test_frame(w, h, counter);
                assert_eq!(frame.data.len(), VideoFrame::i420_len(w, h));
                assert_eq!(read_frame_counter(&frame), Some(counter), "{w}x{h} #{counter}");
            }
        }
    }

    #[test]
    fn foreign_or_damaged_frames_are_rejected() {
        let grey =
            VideoFrame { width: 640, height: 480, data: Bytes::from(vec![128u8; VideoFrame::i420_len(640, 480)]) };
        assert_eq!(read_frame_counter(&grey), None);
        let short = VideoFrame { width: 640, height: 480, data: Bytes::from(vec![0u8; 100]) };
        assert_eq!(read_frame_counter(&short), None);
        let tiny = draw_test_frame(64, 48, 5);
        assert_eq!(read_frame_counter(&tiny), None);
        // Flip one counter block: the check bits no longer match.
        let frame = draw_test_frame(640, 480, 12345);
        let mut data = frame.data.to_vec();
        let (bw, bh) = block_size(640, 480);
        for y in 0..bh {
            for x in 0..bw {
                let p = (y * 640 + x) as usize;
                data[p] = if data[p] > 128 { BLACK } else { WHITE };
            }
        }
        let damaged = VideoFrame { data: Bytes::from(data), ..frame };
        assert_eq!(read_frame_counter(&damaged), None);
    }
}

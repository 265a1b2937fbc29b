//! Golden-image tests of the display: layouts for 1, 2, 4, 9 participants and a screen share, each scaling
//! mode on sources of another aspect ratio, overlays, placeholders, frame dropping, damage, and the test
//! pattern's frame counter read back from a tile. Pixels are checked against expected regions with a
//! tolerance (RGB565 quantisation), through the in-memory framebuffer.

use bytes::Bytes;
use std::time::Duration;

use super::compositor::BACKGROUND;
use super::overlay::{LABEL_BG, MUTED, PLACEHOLDER_BG, SPEAKING};
use super::scale::{rgb_to_luma, yuv_to_rgb};
use super::*;
use crate::calling::{CallEndReason, CallState};
use crate::frame::{draw_test_frame, read_frame_counter, VideoFrame};

/// Distinct colours as (Y, U, V): red, green, blue, yellow, cyan, magenta, white, grey.
const PALETTE: [(u8, u8, u8); 8] = [
    (81, 90, 240),
    (145, 54, 34),
    (41, 240, 110),
    (210, 16, 146),
    (170, 166, 16),
    (106, 202, 222),
    (235, 128, 128),
    (126, 128, 128),
];

fn rgb_of(i: usize) -> u32 {
    let (y, u, v) = PALETTE[i];
    yuv_to_rgb(y, u, v)
}

/// An I420 frame whose colour at (x, y) is `f(x, y)` (chroma sampled at even positions).
fn yuv_frame(w: u32, h: u32, f: impl Fn(u32, u32) -> (u8, u8, u8)) -> VideoFrame {
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let mut data = Vec::with_capacity(VideoFrame::i420_len(w, h));
    data.extend((0..h).flat_map(|y| (0..w).map(move |x| (x, y))).map(|(x, y)| f(x, y).0));
    let chroma: Vec<(u8, u8, u8)> =
        (0..ch).flat_map(|y| (0..cw).map(move |x| (x, y))).map(|(x, y)| f(2 * x, 2 * y)).collect();
    data.extend(chroma.iter().map(|c| c.1));
    data.extend(chroma.iter().map(|c| c.2));
    VideoFrame { width: w, height: h, data: Bytes::from(data) }
}

fn solid(w: u32, h: u32, colour: usize) -> VideoFrame {
    yuv_frame(w, h, |_, _| PALETTE[colour])
}

/// Eight stripes of palette colours, 1/8 of the frame each: vertical (along x) or horizontal (along y).
fn stripes(w: u32, h: u32, along_x: bool) -> VideoFrame {
    yuv_frame(w, h, |x, y| PALETTE[if along_x { (x * 8 / w) as usize } else { (y * 8 / h) as usize }])
}

fn close(px: [u8; 3], rgb: u32, tol: u8) -> bool {
    let want = [(rgb >> 16) as u8, (rgb >> 8) as u8, rgb as u8];
    px.iter().zip(want).all(|(a, b)| a.abs_diff(b) <= tol)
}

const TOL: u8 = 10;

/// Every pixel of `r` on the screen is `rgb` (within the tolerance).
#[track_caller]
fn assert_region(fb: &MemoryFramebuffer, r: Rect, rgb: u32) {
    assert!(!r.is_empty(), "empty region");
    for y in r.y..r.bottom() {
        for x in r.x..r.right() {
            let px = fb.pixel(x, y).unwrap();
            assert!(close(px, rgb, TOL), "({x},{y}) in {r:?} is {px:?}, expected {rgb:06x}");
        }
    }
}

/// How many pixels of `r` are `rgb` (within the tolerance).
fn count(fb: &MemoryFramebuffer, r: Rect, rgb: u32) -> usize {
    (r.y..r.bottom())
        .flat_map(|y| (r.x..r.right()).map(move |x| (x, y)))
        .filter(|&(x, y)| close(fb.pixel(x, y).unwrap(), rgb, TOL))
        .count()
}

/// The middle of a tile, clear of the name label, icons and border.
fn middle(r: Rect) -> Rect {
    Rect::new(r.x + r.width / 4, r.y + r.height / 4, r.width / 2, r.height / 3)
}

/// A region of the screen read back as an I420 frame (luma from RGB, neutral chroma).
fn read_back(fb: &MemoryFramebuffer, r: Rect) -> VideoFrame {
    let mut data: Vec<u8> = (r.y..r.bottom())
        .flat_map(|y| (r.x..r.right()).map(move |x| (x, y)))
        .map(|(x, y)| {
            let [cr, cg, cb] = fb.pixel(x, y).unwrap();
            rgb_to_luma((u32::from(cr) << 16) | (u32::from(cg) << 8) | u32::from(cb))
        })
        .collect();
    data.resize(VideoFrame::i420_len(r.width, r.height), 128);
    VideoFrame { width: r.width, height: r.height, data: Bytes::from(data) }
}

fn info(name: &str, mode: ScalingMode) -> TileInfo {
    TileInfo { scaling_mode: mode, ..TileInfo::named(name) }
}

#[test]
fn grids_of_1_2_4_9_show_each_participant_in_its_tile() {
    for n in [1usize, 2, 4, 9] {
        let mut c = Compositor::new(800, 480);
        let mut fb = MemoryFramebuffer::new(800, 480, FramebufferFormat::Rgb565);
        for i in 0..n {
            c.set_participant(i as u64, info(&format!("P{i}"), ScalingMode::Crop));
            // Sources of another aspect ratio than the tiles (16:9 and portrait).
            let frame = if i % 2 == 0 { solid(320, 180, i % 8) } else { solid(120, 160, i % 8) };
            assert!(c.submit_frame(TileSlot::Participant(i as u64), frame));
        }
        let damage = c.render(&mut fb).unwrap();
        assert_eq!(damage, vec![Rect::new(0, 0, 800, 480)], "first compose is a full redraw");
        let rects: Vec<Rect> = (0..n).map(|i| c.tile_rect(TileSlot::Participant(i as u64)).unwrap()).collect();
        assert_eq!(rects, c.layout().tiles);
        for (i, r) in rects.iter().enumerate() {
            assert_region(&fb, middle(*r), rgb_of(i % 8));
            // Crop fills the tile: the corners away from overlays are the source colour too.
            assert!(close(fb.pixel(r.right() - 1, r.y).unwrap(), rgb_of(i % 8), TOL), "{n} tiles, tile {i}");
            // The name label is at the bottom left.
            let label = Rect::new(r.x + overlay::PAD, r.bottom() - overlay::PAD - 10, 12, 8);
            assert!(count(&fb, label, LABEL_BG) > 0, "no label on tile {i} of {n}");
        }
        // Outside the tiles: background.
        let tiles_area: u64 = rects.iter().map(Rect::area).sum();
        let bg = count(&fb, Rect::new(0, 0, 800, 480), BACKGROUND) as u64;
        assert!(bg >= 800 * 480 - tiles_area, "{n} tiles: {bg} background pixels");
        assert_eq!(c.shown_frames(), n as u64);
    }
}

#[test]
fn screen_share_is_large_with_cameras_in_a_strip() {
    let mut c = Compositor::new(1280, 720);
    let mut fb = MemoryFramebuffer::new(1280, 720, FramebufferFormat::Xrgb8888);
    c.set_share(Some(info("Slides", ScalingMode::Fit)));
    for i in 0..3u64 {
        c.set_participant(i, info("cam", ScalingMode::Crop));
        c.submit_frame(TileSlot::Participant(i), solid(640, 480, i as usize));
    }
    // A 4:3 share in a wider area: pillarboxed, stripes along x.
    c.submit_frame(TileSlot::Share, stripes(800, 600, true));
    c.render(&mut fb).unwrap();
    let share = c.tile_rect(TileSlot::Share).unwrap();
    assert!(share.area() > 1280 * 720 / 2);
    let p = scale::placement(ScalingMode::Fit, 800, 600, share.width, share.height);
    assert!(p.dst.x > 0 && p.dst.y == 0);
    // Pillars are black, the stripes in order across the picture.
    assert_region(&fb, Rect::new(share.x, share.y + 10, p.dst.x, share.height - 60), 0);
    assert_region(
        &fb,
        Rect::new(share.x + p.dst.right(), share.y + 10, share.width - p.dst.right(), share.height - 60),
        0,
    );
    let stripe_w = p.dst.width / 8;
    for k in 0..8 {
        let x = share.x + p.dst.x + k * stripe_w + stripe_w / 4;
        assert_region(
            &fb,
            Rect::new(x, share.y + share.height / 3, stripe_w / 2, share.height / 4),
            rgb_of(k as usize),
        );
    }
    for i in 0..3u64 {
        let t = c.tile_rect(TileSlot::Participant(i)).unwrap();
        assert!(t.y >= share.bottom());
        assert_region(&fb, middle(t), rgb_of(i as usize));
    }
}

/// One participant on a 404x304 screen: a 400x300 (4:3) tile at (2, 2).
fn single_tile(mode: ScalingMode, frame: VideoFrame) -> (MemoryFramebuffer, Rect) {
    let mut c = Compositor::new(404, 304);
    let mut fb = MemoryFramebuffer::new(404, 304, FramebufferFormat::Rgb888);
    c.set_participant(1, info("", mode));
    c.submit_frame(TileSlot::Participant(1), frame);
    c.render(&mut fb).unwrap();
    let t = c.tile_rect(TileSlot::Participant(1)).unwrap();
    assert_eq!(t, Rect::new(2, 2, 400, 300));
    (fb, t)
}

#[test]
fn stretch_fills_the_tile_with_the_whole_source() {
    // 16:9 source, stripes along x: 8 stripes of 50 columns over the whole 300 rows.
    let (fb, t) = single_tile(ScalingMode::Stretch, stripes(320, 180, true));
    for k in 0..8u32 {
        assert_region(&fb, Rect::new(t.x + k * 50 + 5, t.y, 40, 300 - 40), rgb_of(k as usize));
    }
}

#[test]
fn crop_cuts_the_overflow_centred() {
    // 16:9 (320x180) into 4:3: 240 of 320 columns kept, 40 cut on each side: stripes 1..=6 remain, each
    // 40 source columns = 66.7 tile columns.
    let (fb, t) = single_tile(ScalingMode::Crop, stripes(320, 180, true));
    for k in 1..7u32 {
        let x0 = t.x + (k - 1) * 400 / 6;
        assert_region(&fb, Rect::new(x0 + 8, t.y, 50, 250), rgb_of(k as usize));
    }
    let whole = Rect::new(t.x, t.y, t.width, t.height);
    assert_eq!(count(&fb, whole, rgb_of(0)), 0, "the left stripe is cut");
    assert_eq!(count(&fb, whole, rgb_of(7)), 0, "the right stripe is cut");
    assert_eq!(count(&fb, whole, 0), 0, "no bars in Crop");
    // Portrait (240x320, stripes along y, 40 rows each) into 4:3: 180 of 320 rows kept from row 70: the top
    // of the tile shows stripe 1 (rows 70..80), then stripes 2..=5, the bottom stripe 6 (rows 240..250, from
    // tile row 284).
    let (fb, t) = single_tile(ScalingMode::Crop, stripes(240, 320, false));
    assert_region(&fb, Rect::new(t.x + 20, t.y, 360, 10), rgb_of(1));
    for k in 2..6u32 {
        let y0 = t.y + (10 + (k - 2) * 40) * 300 / 180;
        assert_region(&fb, Rect::new(t.x + 20, y0 + 6, 360, 50), rgb_of(k as usize));
    }
    assert_region(&fb, Rect::new(t.x + 20, t.y + 286, 360, 14), rgb_of(6));
}

#[test]
fn fit_letterboxes_with_black_bars() {
    // 16:9 into 400x300: picture 400x225 at row 37, bars of 37 and 38 rows.
    let (fb, t) = single_tile(ScalingMode::Fit, stripes(320, 180, true));
    assert_region(&fb, Rect::new(t.x, t.y, 400, 37), 0);
    assert_region(&fb, Rect::new(t.x + 60, t.y + 262, 340, 38), 0);
    for k in 0..8u32 {
        assert_region(&fb, Rect::new(t.x + k * 50 + 5, t.y + 37, 40, 225), rgb_of(k as usize));
    }
    // Portrait 3:4 into 4:3: picture 225x300 at column 87, pillars either side.
    let (fb, t) = single_tile(ScalingMode::Fit, stripes(240, 320, false));
    assert_region(&fb, Rect::new(t.x, t.y, 87, 250), 0);
    assert_region(&fb, Rect::new(t.x + 312, t.y, 88, 250), 0);
    for k in 0..8u32 {
        assert_region(&fb, Rect::new(t.x + 87, t.y + k * 300 / 8 + 4, 225, 28), rgb_of(k as usize));
    }
}

#[test]
fn frame_counter_survives_a_tile_of_the_same_size() {
    // 644x484 screen, one tile of exactly 640x480.
    let mut c = Compositor::new(644, 484);
    let mut fb = MemoryFramebuffer::new(644, 484, FramebufferFormat::Xrgb8888);
    c.set_participant(7, TileInfo::named("Door"));
    for n in [3u32, 1_000_001] {
        c.submit_frame(TileSlot::Participant(7), draw_test_frame(640, 480, n));
        c.render(&mut fb).unwrap();
        let t = c.tile_rect(TileSlot::Participant(7)).unwrap();
        assert_eq!((t.width, t.height), (640, 480));
        assert_eq!(read_frame_counter(&read_back(&fb, t)), Some(n));
    }
}

#[test]
fn newest_frame_wins_and_paused_tiles_freeze() {
    let mut c = Compositor::new(644, 484);
    let mut fb = MemoryFramebuffer::new(644, 484, FramebufferFormat::Rgb565);
    c.set_participant(1, TileInfo::named("A"));
    // Three frames before the screen composes: two are dropped, the newest is shown.
    for n in 10..13 {
        c.submit_frame(TileSlot::Participant(1), draw_test_frame(640, 480, n));
    }
    c.render(&mut fb).unwrap();
    let t = c.tile_rect(TileSlot::Participant(1)).unwrap();
    assert_eq!(read_frame_counter(&read_back(&fb, t)), Some(12));
    assert_eq!(c.dropped_frames(), 2);
    // Paused: frames are dropped and the picture stays.
    c.set_participant(1, TileInfo { video: VideoState::Paused, ..TileInfo::named("A") });
    c.submit_frame(TileSlot::Participant(1), draw_test_frame(640, 480, 13));
    c.render(&mut fb).unwrap();
    assert_eq!(read_frame_counter(&read_back(&fb, t)), Some(12));
    assert_eq!(c.dropped_frames(), 3);
    let badge = Rect::new(t.x + overlay::PAD, t.y + t.height / 2, 40, 14);
    assert!(count(&fb, badge, LABEL_BG) > 100, "PAUSED badge");
    // Resumed: it moves on.
    c.set_participant(1, TileInfo::named("A"));
    c.submit_frame(TileSlot::Participant(1), draw_test_frame(640, 480, 14));
    c.render(&mut fb).unwrap();
    assert_eq!(read_frame_counter(&read_back(&fb, t)), Some(14));
    // Unknown slots drop too.
    assert!(!c.submit_frame(TileSlot::Participant(99), draw_test_frame(640, 480, 1)));
    assert!(!c.submit_frame(TileSlot::Share, draw_test_frame(640, 480, 1)));
    assert_eq!(c.dropped_frames(), 5);
}

#[test]
fn overlays_and_placeholders_change_the_expected_pixels() {
    let mut c = Compositor::new(800, 480);
    let mut fb = MemoryFramebuffer::new(800, 480, FramebufferFormat::Xrgb8888);
    for i in 0..4u64 {
        c.set_participant(i, info(&format!("Participant {i}"), ScalingMode::Crop));
        c.submit_frame(TileSlot::Participant(i), solid(320, 240, 6)); // white
    }
    c.render(&mut fb).unwrap();
    let t0 = c.tile_rect(TileSlot::Participant(0)).unwrap();
    let icon = Rect::new(t0.right() - overlay::PAD - overlay::ICON, t0.bottom() - overlay::PAD - overlay::ICON, 20, 20);
    assert_eq!(count(&fb, icon, MUTED), 0);
    assert!(close(fb.pixel(t0.x, t0.y + 50).unwrap(), rgb_of(6), TOL));
    // Speaking and muted: a green border inside the tile and a red icon, and only that tile is damaged.
    c.set_participant(0, TileInfo { muted: true, speaking: true, ..info("Participant 0", ScalingMode::Crop) });
    let damage = c.render(&mut fb).unwrap();
    assert_eq!(damage, vec![t0]);
    assert_region(&fb, Rect::new(t0.x, t0.y, t0.width, overlay::SPEAKING_WIDTH), SPEAKING);
    assert_region(&fb, Rect::new(t0.x, t0.y, overlay::SPEAKING_WIDTH, t0.height), SPEAKING);
    assert!(count(&fb, icon, MUTED) > 150);
    let t1 = c.tile_rect(TileSlot::Participant(1)).unwrap();
    assert!(close(fb.pixel(t1.x, t1.y + 50).unwrap(), rgb_of(6), TOL), "the neighbour has no border");
    // Unavailable video: a placeholder.
    c.set_participant(2, TileInfo { video: VideoState::Unavailable, ..TileInfo::named("Gate") });
    c.render(&mut fb).unwrap();
    let t2 = c.tile_rect(TileSlot::Participant(2)).unwrap();
    assert_region(&fb, Rect::new(t2.x, t2.y, t2.width, 20), PLACEHOLDER_BG);
    assert_eq!(count(&fb, middle(t2), rgb_of(6)) as u64, count_text_pixels(&fb, middle(t2)));
    // The call state banner appears at the top centre, and goes again.
    let centre = Rect::new(390, 20, 20, 10);
    assert!(count(&fb, centre, LABEL_BG) < 10);
    c.set_call_state(CallState::Disconnected, Some(&CallEndReason::new(486, 0, "Busy")));
    c.render(&mut fb).unwrap();
    let banner = overlay::banner_rect(800, 480, "Call ended: Busy (486)");
    assert!(count(&fb, banner, LABEL_BG) > banner.area() as usize / 2);
    assert!(count(&fb, banner, 0xffffff) > 100, "banner text");
    c.set_call_state(CallState::Connected, None);
    c.render(&mut fb).unwrap();
    assert_eq!(count(&fb, centre, LABEL_BG), 0);
}

/// White pixels in a placeholder can only be its text: there are some, but far fewer than the region.
fn count_text_pixels(fb: &MemoryFramebuffer, r: Rect) -> u64 {
    let n = count(fb, r, 0xffffff) as u64;
    assert!(n < r.area() / 10, "{n} white pixels in a placeholder");
    n
}

#[test]
fn damage_covers_changed_tiles_and_what_lies_above_them() {
    let mut c = Compositor::new(800, 480);
    let mut fb = MemoryFramebuffer::new(800, 480, FramebufferFormat::Rgb888);
    for i in 0..4u64 {
        c.set_participant(i, TileInfo::named("x"));
        c.submit_frame(TileSlot::Participant(i), solid(320, 240, i as usize));
    }
    c.set_preview(Some(TileInfo::named("me")));
    c.submit_frame(TileSlot::Preview, solid(320, 240, 5));
    c.render(&mut fb).unwrap();
    assert!(c.render(&mut fb).unwrap().is_empty(), "nothing changed");
    let presents = fb.presents();
    let (t0, t3) = (c.tile_rect(TileSlot::Participant(0)).unwrap(), c.tile_rect(TileSlot::Participant(3)).unwrap());
    let preview = c.tile_rect(TileSlot::Preview).unwrap();
    assert!(preview.intersects(&t3) && !preview.intersects(&t0));
    c.submit_frame(TileSlot::Participant(0), solid(320, 240, 4));
    assert_eq!(c.render(&mut fb).unwrap(), vec![t0]);
    assert_eq!(fb.last_damage(), &[t0]);
    assert_eq!(fb.presents(), presents + 1);
    assert_region(&fb, middle(t0), rgb_of(4));
    // Tile 3 lies under the preview: the preview is drawn again on top of it.
    c.submit_frame(TileSlot::Participant(3), solid(320, 240, 4));
    assert_eq!(c.render(&mut fb).unwrap(), vec![t3, preview]);
    assert_region(&fb, middle(preview), rgb_of(5));
    // (Fit: the 4:3 source is pillarboxed in the wider tile, the picture starts 40 columns in.)
    assert_region(&fb, Rect::new(t3.x + 50, t3.y + 10, 50, 50), rgb_of(4));
    assert_region(&fb, Rect::new(t3.x, t3.y + 10, 30, 50), 0);
    // A participant leaving re-lays out the screen: a full redraw with three tiles.
    c.remove_participant(1);
    assert_eq!(c.render(&mut fb).unwrap(), vec![Rect::new(0, 0, 800, 480)]);
    assert_eq!(c.layout().tiles.len(), 3);
    assert!(c.tile_rect(TileSlot::Participant(1)).is_none());
    // A framebuffer of another size is refused.
    let mut small = MemoryFramebuffer::new(100, 100, FramebufferFormat::Rgb888);
    assert!(c.render(&mut small).is_err());
}

#[test]
fn bench_compose_runs() {
    // No timing assertion: it only has to compose (the figures come from a release build).
    let _ = bench_compose(320, 240, 4, 2);
}

#[test]
fn tiles_glide_to_their_new_place_when_a_participant_joins() {
    let mut c = Compositor::new(800, 480);
    c.set_animation(Some(Duration::from_millis(200)));
    let mut fb = MemoryFramebuffer::new(800, 480, FramebufferFormat::Rgb565);
    c.set_clock(Duration::ZERO);
    c.set_participant(1, info("P1", ScalingMode::Fit));
    c.submit_frame(TileSlot::Participant(1), solid(320, 240, 1));
    c.render(&mut fb).unwrap();
    let alone = c.tile_rect(TileSlot::Participant(1)).unwrap();
    assert!(!c.is_animating(), "the first tile appears in place");

    // A second participant: the first tile glides from full screen to its half.
    c.set_participant(2, info("P2", ScalingMode::Fit));
    c.render(&mut fb).unwrap();
    let target = c.layout().tiles[0];
    assert_ne!(alone, target);
    assert!(c.is_animating());
    assert_eq!(c.tile_rect(TileSlot::Participant(1)), Some(alone), "starts where it was");
    assert_eq!(c.tile_rect(TileSlot::Participant(2)), Some(c.layout().tiles[1]), "a new tile appears in place");
    c.set_clock(Duration::from_millis(100));
    c.render(&mut fb).unwrap();
    let mid = c.tile_rect(TileSlot::Participant(1)).unwrap();
    let between = |a: u32, m: u32, b: u32| (a.min(b)..=a.max(b)).contains(&m);
    assert!(mid != alone && mid != target, "half-way: {mid:?}");
    assert!(between(alone.width, mid.width, target.width) && between(alone.x, mid.x, target.x), "{mid:?}");
    // The tile is drawn where it is now (its left part: the new tile already covers the right half).
    assert_region(
        &fb,
        Rect::new(mid.x + mid.width / 8, mid.y + mid.height / 3, mid.width / 8, mid.height / 4),
        rgb_of(1),
    );
    c.set_clock(Duration::from_millis(250));
    c.render(&mut fb).unwrap();
    assert_eq!(c.tile_rect(TileSlot::Participant(1)), Some(target));
    assert!(!c.is_animating());
    assert_region(&fb, middle(target), rgb_of(1));
}

//! Where things go on the screen: a grid of 1..=9 remote camera tiles, or a large screen share with the
//! cameras in a strip below it, and the local preview as picture-in-picture. A pure function of the screen
//! size and what is shown; [`Rect::lerp`](super::Rect::lerp) moves between two layouts smoothly.

use super::Rect;

/// Most remote camera tiles shown at once.
pub const MAX_TILES: usize = 9;
/// Pixels between tiles and around the edge.
pub const GAP: u32 = 4;

/// The rectangles of one screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The whole screen.
    pub screen: Rect,
    /// The screen share, if any.
    pub share: Option<Rect>,
    /// One rectangle per remote camera, in participant order (at most [`MAX_TILES`]).
    pub tiles: Vec<Rect>,
    /// The local preview, drawn above the others.
    pub preview: Option<Rect>,
}

/// Lays out `participants` camera tiles (capped at [`MAX_TILES`]), an optional screen share and an optional
/// local preview on a `width`x`height` screen. Tiles and share never overlap and stay inside the screen (on a
/// screen too small for them, some tiles are empty rectangles).
pub fn compute_layout(width: u32, height: u32, participants: usize, has_share: bool, has_preview: bool) -> Layout {
    let screen = Rect::new(0, 0, width, height);
    let n = participants.min(MAX_TILES) as u32;
    let (share, tiles) =
        if has_share { share_layout(width, height, n) } else { (None, grid(Rect::new(0, 0, width, height), n)) };
    let preview = has_preview.then(|| {
        // A quarter of the width, 4:3, in a corner: bottom-right, or top-right of the share when there is one
        // (the strip of cameras is at the bottom then).
        let pw = (width / 4).max(1);
        let ph = (pw * 3 / 4).clamp(1, height.max(1));
        let x = width.saturating_sub(pw + 2 * GAP);
        let y = match share {
            Some(s) => s.y + 2 * GAP,
            None => height.saturating_sub(ph + 2 * GAP),
        };
        Rect::new(x, y, pw.min(width), ph).clip(width, height)
    });
    Layout { screen, share, tiles, preview }
}

fn share_layout(width: u32, height: u32, n: u32) -> (Option<Rect>, Vec<Rect>) {
    if n == 0 {
        return (Some(inset(Rect::new(0, 0, width, height))), Vec::new());
    }
    let strip_h = (height / 5).max(1).min(height);
    let share = inset(Rect::new(0, 0, width, height - strip_h));
    // Cameras side by side in the strip, 4:3 when there is room, centred.
    let cell_w = (width / n).min(strip_h * 4 / 3).max(1);
    let total = cell_w * n;
    let x0 = width.saturating_sub(total) / 2;
    let tiles = (0..n)
        .map(|i| inset(Rect::new(x0 + i * cell_w, height - strip_h, cell_w, strip_h)).clip(width, height))
        .collect();
    (Some(share), tiles)
}

/// `n` tiles in the grid (columns x rows) that gives the largest 4:3 picture per tile; a short last row is
/// centred.
fn grid(area: Rect, n: u32) -> Vec<Rect> {
    if n == 0 {
        return Vec::new();
    }
    let score = |cols: u32| {
        let rows = n.div_ceil(cols);
        let (cw, ch) = (u64::from(area.width / cols), u64::from(area.height / rows));
        let (w, h) = if cw * 3 > ch * 4 { (ch * 4 / 3, ch) } else { (cw, cw * 3 / 4) };
        w * h
    };
    let cols = (1..=n).max_by_key(|&c| (score(c), std::cmp::Reverse(c))).unwrap_or(1);
    let rows = n.div_ceil(cols);
    let (cw, ch) = (area.width / cols, area.height / rows);
    let y0 = area.y + (area.height - ch * rows) / 2;
    (0..n)
        .map(|i| {
            let (row, col) = (i / cols, i % cols);
            let in_row = if row == rows - 1 { n - row * cols } else { cols };
            let x0 = area.x + (area.width - cw * in_row) / 2;
            inset(Rect::new(x0 + col * cw, y0 + row * ch, cw, ch))
        })
        .collect()
}

/// A cell shrunk by half a gap on each side, so neighbours are a full gap apart.
fn inset(r: Rect) -> Rect {
    let g = GAP / 2;
    if r.width <= 2 * g || r.height <= 2 * g {
        return r;
    }
    Rect::new(r.x + g, r.y + g, r.width - 2 * g, r.height - 2 * g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_sane(l: &Layout) {
        let mut all: Vec<Rect> = l.tiles.clone();
        all.extend(l.share);
        for (i, a) in all.iter().enumerate() {
            assert!(!a.is_empty(), "{a:?}");
            assert!(l.screen.contains_rect(a), "{a:?} outside {:?}", l.screen);
            for b in &all[i + 1..] {
                assert!(!a.intersects(b), "{a:?} overlaps {b:?}");
            }
        }
        if let Some(p) = l.preview {
            assert!(l.screen.contains_rect(&p));
        }
    }

    #[test]
    fn grids_for_1_2_4_9_fill_the_screen_sensibly() {
        for &(w, h) in &[(800u32, 480u32), (1280, 720), (480, 800)] {
            for n in 0..=12 {
                let l = compute_layout(w, h, n, false, true);
                check_sane(&l);
                assert_eq!(l.tiles.len(), n.min(MAX_TILES));
            }
        }
        let one = compute_layout(800, 480, 1, false, false);
        assert_eq!(one.tiles, vec![Rect::new(2, 2, 796, 476)]);
        // Two on a landscape screen: side by side, each half the width.
        let two = compute_layout(800, 480, 2, false, false);
        assert_eq!(two.tiles[0].y, two.tiles[1].y);
        assert!(two.tiles[0].width >= 390 && two.tiles[0].height >= 470, "{:?}", two.tiles);
        // Four: 2x2 quarters.
        let four = compute_layout(800, 480, 4, false, false);
        assert_eq!(four.tiles[0], Rect::new(2, 2, 396, 236));
        assert_eq!(four.tiles[3], Rect::new(402, 242, 396, 236));
        // Nine: 3x3, all the same size, about a ninth of the screen each.
        let nine = compute_layout(1280, 720, 9, false, false);
        assert!(nine.tiles.iter().all(|t| t.width == nine.tiles[0].width && t.height == nine.tiles[0].height));
        assert!(nine.tiles[0].area() * 9 > 1280 * 720 * 9 / 10);
        // Three: a centred short last row.
        let three = compute_layout(800, 480, 3, false, false);
        assert_eq!(three.tiles[2].x + three.tiles[2].width / 2, 400);
    }

    #[test]
    fn share_is_large_and_cameras_form_a_strip() {
        for n in 0..=9 {
            let l = compute_layout(1280, 720, n, true, true);
            check_sane(&l);
            let share = l.share.unwrap();
            assert!(share.area() * 10 >= 1280 * 720 * 7, "share {share:?} with {n}");
            for t in &l.tiles {
                assert!(t.y >= share.bottom(), "{t:?} not below {share:?}");
                assert!(t.area() * 4 < share.area());
            }
            // The preview sits at the top right of the share, clear of the strip.
            let p = l.preview.unwrap();
            assert!(l.tiles.iter().all(|t| !t.intersects(&p)));
            assert!(p.x > 1280 / 2 && p.y < 720 / 2);
        }
    }

    #[test]
    fn preview_is_a_small_bottom_right_picture_in_picture() {
        let l = compute_layout(800, 480, 4, false, true);
        let p = l.preview.unwrap();
        assert_eq!(p.width, 200);
        assert_eq!(p.height, 150);
        assert!(p.right() <= 800 && p.right() > 780 && p.bottom() > 460);
        assert!(compute_layout(800, 480, 4, false, false).preview.is_none());
        // Degenerate screens do not panic.
        for (w, h, share) in [(3, 2, true), (1, 1, false), (0, 0, true), (0, 0, false)] {
            let l = compute_layout(w, h, 9, share, true);
            assert!(l.tiles.iter().chain(&l.share).chain(&l.preview).all(|r| l.screen.contains_rect(r)), "{l:?}");
        }
    }

    #[test]
    fn lerp_moves_between_layouts() {
        let (a, b) = (Rect::new(0, 0, 100, 100), Rect::new(100, 50, 200, 50));
        assert_eq!(a.lerp(&b, 0), a);
        assert_eq!(a.lerp(&b, 256), b);
        assert_eq!(a.lerp(&b, 128), Rect::new(50, 25, 150, 75));
        assert_eq!(b.lerp(&a, 128), Rect::new(50, 25, 150, 75));
    }
}

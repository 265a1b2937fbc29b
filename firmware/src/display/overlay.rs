//! What is drawn over and instead of video, with embedded-graphics on the [`Canvas`]: the participant's name,
//! a muted icon, a speaking highlight (border), a badge (paused), the placeholder of a tile without video, and
//! the call state banner (ringing, connecting, on hold, ended with its reason). Built-in mono fonts only.

use std::convert::Infallible;

use embedded_graphics::mono_font::ascii::{FONT_10X20, FONT_6X10};
use embedded_graphics::mono_font::{MonoFont, MonoTextStyle};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Circle, Line, PrimitiveStyle, PrimitiveStyleBuilder, Rectangle, StrokeAlignment};
use embedded_graphics::text::{Baseline, Text};

use super::{Canvas, Rect};
use crate::calling::{CallEndReason, CallState};

/// Background of the name label and the banner.
pub const LABEL_BG: u32 = 0x000000;
/// Text colour.
pub const TEXT: u32 = 0xffffff;
/// The muted icon's disc.
pub const MUTED: u32 = 0xe53935;
/// The speaking highlight.
pub const SPEAKING: u32 = 0x43a047;
/// Width of the speaking highlight, inside the tile.
pub const SPEAKING_WIDTH: u32 = 3;
/// Background of a tile without video.
pub const PLACEHOLDER_BG: u32 = 0x2b2b2b;
/// The avatar disc of a placeholder.
pub const AVATAR: u32 = 0x5a5a5a;
/// Margin of labels and icons inside a tile.
pub const PAD: u32 = 6;
/// Diameter of the muted icon.
pub const ICON: u32 = 20;

fn rgb(c: u32) -> Rgb888 {
    Rgb888::new((c >> 16) as u8, (c >> 8) as u8, c as u8)
}

fn eg_rect(r: Rect) -> Rectangle {
    Rectangle::new(Point::new(r.x as i32, r.y as i32), Size::new(r.width, r.height))
}

impl OriginDimensions for Canvas {
    fn size(&self) -> Size {
        Size::new(self.width(), self.height())
    }
}

impl DrawTarget for Canvas {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<Rgb888>>>(&mut self, pixels: I) -> Result<(), Infallible> {
        for Pixel(p, c) in pixels {
            if p.x >= 0 && p.y >= 0 {
                self.set(p.x as u32, p.y as u32, (u32::from(c.r()) << 16) | (u32::from(c.g()) << 8) | u32::from(c.b()));
            }
        }
        Ok(())
    }

    fn fill_solid(&mut self, area: &Rectangle, color: Rgb888) -> Result<(), Infallible> {
        let (x, y) = (area.top_left.x.max(0) as u32, area.top_left.y.max(0) as u32);
        let right = (i64::from(area.top_left.x) + i64::from(area.size.width)).max(0) as u32;
        let bottom = (i64::from(area.top_left.y) + i64::from(area.size.height)).max(0) as u32;
        let c = (u32::from(color.r()) << 16) | (u32::from(color.g()) << 8) | u32::from(color.b());
        self.fill(Rect::new(x, y, right.saturating_sub(x), bottom.saturating_sub(y)), c);
        Ok(())
    }
}

/// The font for a tile of this width.
fn font_for(width: u32) -> &'static MonoFont<'static> {
    if width >= 320 {
        &FONT_10X20
    } else {
        &FONT_6X10
    }
}

/// `text` cut to `max_chars` characters, with "..." when cut.
fn fit_text(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    if max_chars <= 3 {
        return text.chars().take(max_chars).collect();
    }
    text.chars().take(max_chars - 3).chain("...".chars()).collect()
}

/// Text in a black box with its top-left at (x, y), clipped to `clip`; returns the box.
fn label(canvas: &mut Canvas, clip: Rect, x: u32, y: u32, text: &str, font: &MonoFont<'_>) -> Rect {
    let (cw, chh) = (font.character_size.width, font.character_size.height);
    let max_chars = (clip.right().saturating_sub(x + 4) / cw.max(1)) as usize;
    let text = fit_text(text, max_chars);
    if text.is_empty() {
        return Rect::default();
    }
    let bx = Rect::new(x, y, text.chars().count() as u32 * cw + 4, chh + 4);
    let mut target = canvas.clipped(&eg_rect(clip));
    let _ = eg_rect(bx).into_styled(PrimitiveStyle::with_fill(rgb(LABEL_BG))).draw(&mut target);
    let style = MonoTextStyle::new(font, rgb(TEXT));
    let _ = Text::with_baseline(&text, Point::new(x as i32 + 2, y as i32 + 2), style, Baseline::Top).draw(&mut target);
    bx
}

/// The participant's overlays on a tile: name at the bottom left, muted icon at the bottom right, a border
/// when speaking.
pub fn draw_tile_overlay(canvas: &mut Canvas, tile: Rect, name: &str, muted: bool, speaking: bool) {
    let font = font_for(tile.width);
    let text_h = font.character_size.height + 4;
    let bottom = tile.bottom().saturating_sub(PAD);
    let mut name_clip = tile;
    if muted {
        name_clip.width = name_clip.width.saturating_sub(ICON + 2 * PAD);
    }
    if !name.is_empty() {
        label(canvas, name_clip, tile.x + PAD, bottom.saturating_sub(text_h), name, font);
    }
    if muted {
        draw_muted_icon(canvas, tile, tile.right().saturating_sub(PAD + ICON), bottom.saturating_sub(ICON));
    }
    if speaking {
        let style = PrimitiveStyleBuilder::new()
            .stroke_color(rgb(SPEAKING))
            .stroke_width(SPEAKING_WIDTH)
            .stroke_alignment(StrokeAlignment::Inside)
            .build();
        let _ = eg_rect(tile).into_styled(style).draw(canvas);
    }
}

/// A red disc with a white microphone crossed out, top-left at (x, y), clipped to `clip`.
pub fn draw_muted_icon(canvas: &mut Canvas, clip: Rect, x: u32, y: u32) {
    let mut target = canvas.clipped(&eg_rect(clip));
    let (x, y, d) = (x as i32, y as i32, ICON as i32);
    let _ = Circle::new(Point::new(x, y), ICON).into_styled(PrimitiveStyle::with_fill(rgb(MUTED))).draw(&mut target);
    let white = PrimitiveStyle::with_fill(rgb(TEXT));
    let _ = Rectangle::new(Point::new(x + d / 2 - 2, y + 4), Size::new(5, 8)).into_styled(white).draw(&mut target);
    let stroke = PrimitiveStyle::with_stroke(rgb(TEXT), 2);
    let _ =
        Line::new(Point::new(x + d / 2, y + 12), Point::new(x + d / 2, y + 16)).into_styled(stroke).draw(&mut target);
    let _ = Line::new(Point::new(x + 4, y + 4), Point::new(x + d - 5, y + d - 5)).into_styled(stroke).draw(&mut target);
}

/// A tile without video: a dark background, an avatar disc with the name's initial, and `text` below it.
pub fn draw_placeholder(canvas: &mut Canvas, tile: Rect, name: &str, text: &str) {
    canvas.fill(tile, PLACEHOLDER_BG);
    let d = (tile.width.min(tile.height) / 3).max(2);
    let (cx, cy) = (tile.x + tile.width / 2, tile.y + tile.height / 2);
    let top = cy.saturating_sub(d * 2 / 3);
    let mut target = canvas.clipped(&eg_rect(tile));
    let _ = Circle::new(Point::new(cx.saturating_sub(d / 2) as i32, top as i32), d)
        .into_styled(PrimitiveStyle::with_fill(rgb(AVATAR)))
        .draw(&mut target);
    let font = font_for(tile.width);
    let (cw, chh) = (font.character_size.width, font.character_size.height);
    if let Some(initial) = name.chars().find(|c| c.is_ascii_alphanumeric()) {
        let s = initial.to_ascii_uppercase().to_string();
        let p = Point::new(cx.saturating_sub(cw / 2) as i32, (top + d / 2).saturating_sub(chh / 2) as i32);
        let _ = Text::with_baseline(&s, p, MonoTextStyle::new(font, rgb(TEXT)), Baseline::Top).draw(&mut target);
    }
    let max_chars = (tile.width.saturating_sub(2 * PAD) / cw) as usize;
    let text = fit_text(text, max_chars);
    let tw = text.chars().count() as u32 * cw;
    let p = Point::new(cx.saturating_sub(tw / 2) as i32, (top + d + PAD) as i32);
    let _ = Text::with_baseline(&text, p, MonoTextStyle::new(font, rgb(TEXT)), Baseline::Top).draw(&mut target);
}

/// A small label at the left of a tile, half-way down (for instance "PAUSED"), clear of the test pattern's
/// counter band at the top and the name at the bottom.
pub fn draw_badge(canvas: &mut Canvas, tile: Rect, text: &str) -> Rect {
    label(canvas, tile, tile.x + PAD, tile.y + tile.height / 2, text, &FONT_6X10)
}

/// The banner text of a call state, `None` when the call needs none (connected, or no call).
pub fn call_banner_text(state: CallState, reason: Option<&CallEndReason>) -> Option<String> {
    let text = match state {
        CallState::None | CallState::Connected => return None,
        CallState::Incoming => "Incoming call".to_string(),
        CallState::Connecting => "Connecting...".to_string(),
        CallState::Ringing | CallState::EarlyMedia => "Ringing...".to_string(),
        CallState::LocalHold => "On hold".to_string(),
        CallState::RemoteHold => "On hold by the other side".to_string(),
        CallState::Disconnecting => "Ending call...".to_string(),
        CallState::Disconnected => match reason {
            Some(r) if !r.message.is_empty() && r.code != 0 => format!("Call ended: {} ({})", r.message, r.code),
            Some(r) if !r.message.is_empty() => format!("Call ended: {}", r.message),
            Some(r) if r.code != 0 => format!("Call ended ({})", r.code),
            _ => "Call ended".to_string(),
        },
    };
    Some(text)
}

/// Where the banner for `text` goes on a `width`x`height` screen: centred near the top.
pub fn banner_rect(width: u32, height: u32, text: &str) -> Rect {
    let font = &FONT_10X20;
    let w = (text.chars().count() as u32 * font.character_size.width + 2 * PAD).min(width);
    let h = (font.character_size.height + 2 * PAD).min(height);
    Rect::new((width - w) / 2, (2 * PAD).min(height - h), w, h)
}

/// Draws the banner box and its text.
pub fn draw_banner(canvas: &mut Canvas, rect: Rect, text: &str) {
    canvas.fill(rect, LABEL_BG);
    let font = &FONT_10X20;
    let max_chars = (rect.width.saturating_sub(2 * PAD) / font.character_size.width) as usize;
    let text = fit_text(text, max_chars);
    let mut target = canvas.clipped(&eg_rect(rect));
    let p = Point::new((rect.x + PAD) as i32, (rect.y + PAD) as i32);
    let _ = Text::with_baseline(&text, p, MonoTextStyle::new(font, rgb(TEXT)), Baseline::Top).draw(&mut target);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(canvas: &Canvas, r: Rect, colour: u32) -> usize {
        canvas.crop(r).2.iter().filter(|&&p| p == colour).count()
    }

    #[test]
    fn banner_texts_name_the_state_and_reason() {
        assert_eq!(call_banner_text(CallState::Connected, None), None);
        assert_eq!(call_banner_text(CallState::Ringing, None).unwrap(), "Ringing...");
        assert_eq!(call_banner_text(CallState::Connecting, None).unwrap(), "Connecting...");
        assert_eq!(call_banner_text(CallState::LocalHold, None).unwrap(), "On hold");
        let busy = CallEndReason::new(486, 0, "Busy");
        assert_eq!(call_banner_text(CallState::Disconnected, Some(&busy)).unwrap(), "Call ended: Busy (486)");
        assert_eq!(call_banner_text(CallState::Disconnected, None).unwrap(), "Call ended");
        assert_eq!(
            call_banner_text(CallState::Disconnected, Some(&CallEndReason::new(0, 0, ""))).unwrap(),
            "Call ended"
        );
    }

    #[test]
    fn overlays_draw_where_expected_and_stay_in_the_tile() {
        let mut c = Canvas::new(200, 100);
        c.fill(Rect::new(0, 0, 200, 100), 0x808080);
        let tile = Rect::new(10, 10, 160, 80);
        draw_tile_overlay(&mut c, tile, "Front door", true, true);
        // Border on all four sides, inside the tile.
        assert_eq!(c.get(10, 50), Some(SPEAKING));
        assert_eq!(c.get(169, 50), Some(SPEAKING));
        assert_eq!(c.get(90, 10 + SPEAKING_WIDTH - 1), Some(SPEAKING));
        assert_eq!(c.get(90, 10 + SPEAKING_WIDTH), Some(0x808080));
        // Name label: black box with white text, bottom left.
        let name_area = Rect::new(10 + PAD, 90 - PAD - 14, 60, 14);
        assert!(count(&c, name_area, TEXT) > 20 && count(&c, name_area, LABEL_BG) > 100);
        // Muted icon: red, bottom right.
        let icon = Rect::new(170 - PAD - ICON, 90 - PAD - ICON, ICON, ICON);
        assert!(count(&c, icon, MUTED) > 100);
        // Nothing outside the tile changed.
        for r in [Rect::new(0, 0, 200, 10), Rect::new(0, 90, 200, 10), Rect::new(170, 0, 30, 100)] {
            assert_eq!(count(&c, r, 0x808080), r.area() as usize);
        }
    }

    #[test]
    fn placeholder_and_banner_fill_their_rectangles() {
        let mut c = Canvas::new(320, 240);
        let tile = Rect::new(0, 0, 160, 120);
        draw_placeholder(&mut c, tile, "bob", "No video");
        assert_eq!(c.get(2, 2), Some(PLACEHOLDER_BG));
        assert!(count(&c, tile, AVATAR) > 200);
        assert!(count(&c, tile, TEXT) > 30);
        assert_eq!(c.get(200, 200), Some(0));
        let r = banner_rect(320, 240, "Ringing...");
        assert_eq!(r.width, 10 * 10 + 2 * PAD);
        assert_eq!(r.x + r.width / 2, 160);
        draw_banner(&mut c, r, "Ringing...");
        assert!(count(&c, r, TEXT) > 50 && count(&c, r, LABEL_BG) > 500);
        // A banner wider than the screen is cut.
        let long = banner_rect(100, 240, "a very long banner text that does not fit");
        assert_eq!(long.width, 100);
        assert_eq!(fit_text("abcdefgh", 6), "abc...");
        assert_eq!(fit_text("abc", 6), "abc");
    }
}

//! [`DecodeCap`]: the largest remote picture this board decodes (pure). A peer may send any size its encoder
//! makes; a 4K stream would make a Pi Zero allocate frames it has no memory for and decode slower than real time.
//! The decoder pipeline asks the cap about each stream's size (from the parser's caps, before the decoder sees a
//! byte) and does not decode a stream above it: the call goes on with its audio, the picture stays away until the
//! peer sends a size that fits. Portrait pictures count as their landscape twin.

/// See the module comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeCap {
    long_side: u32,
    short_side: u32,
}

impl DecodeCap {
    /// Pictures up to `width` x `height`, either way round.
    pub fn new(width: u32, height: u32) -> Self {
        DecodeCap { long_side: width.max(height), short_side: width.min(height) }
    }

    /// Whether a `width` x `height` picture is decoded.
    pub fn admits(&self, width: u32, height: u32) -> bool {
        width.max(height) <= self.long_side && width.min(height) <= self.short_side
    }

    /// The cap as `WxH` (for log lines).
    pub fn describe(&self) -> String {
        format!("{}x{}", self.long_side, self.short_side)
    }
}

impl Default for DecodeCap {
    /// 1920x1080: what every supported board's decoder sustains.
    fn default() -> Self {
        DecodeCap::new(1920, 1080)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_up_to_the_cap_either_way_round() {
        let cap = DecodeCap::new(1280, 720);
        assert!(cap.admits(1280, 720));
        assert!(cap.admits(720, 1280), "a phone held upright");
        assert!(cap.admits(640, 480));
        assert!(!cap.admits(1281, 720));
        assert!(!cap.admits(1280, 721));
        assert!(!cap.admits(3840, 2160));
        assert!(!cap.admits(1000, 1000), "square: its short side is over 720");
        assert!(!cap.admits(u32::MAX, 1));
        assert_eq!(DecodeCap::new(720, 1280), cap);
        assert_eq!(cap.describe(), "1280x720");
        assert!(DecodeCap::default().admits(1920, 1080) && !DecodeCap::default().admits(2560, 1440));
    }
}

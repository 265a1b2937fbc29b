//! How often a remote video stream may make the appliance build a new decoder. A peer that changes payload types
//! packet by packet (each one a codec) would otherwise have it tear down and build a GStreamer pipeline per
//! packet. [`DecoderSwitches`] allows the first decoder at once and each switch after that only once
//! `min_interval` has passed since the last; packets of another payload type in between are dropped (the current
//! decoder goes on with the stream it decodes). Pure: the time is passed in.

use std::time::{Duration, Instant};

/// The least time between two decoders of one stream.
pub const DECODER_SWITCH_INTERVAL: Duration = Duration::from_secs(2);

/// The switches of one remote video stream.
#[derive(Debug)]
pub struct DecoderSwitches {
    min_interval: Duration,
    last: Option<Instant>,
    refused: u64,
}

impl DecoderSwitches {
    pub fn new(min_interval: Duration) -> Self {
        DecoderSwitches { min_interval, last: None, refused: 0 }
    }

    /// Whether a decoder may be built at `now` (and if so, counts it as built).
    pub fn allow(&mut self, now: Instant) -> bool {
        if self.last.is_some_and(|t| now.saturating_duration_since(t) < self.min_interval) {
            self.refused += 1;
            return false;
        }
        self.last = Some(now);
        true
    }

    /// Switches refused so far (packets dropped because of them).
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_flipping_codecs_gets_one_decoder_per_interval() {
        let mut s = DecoderSwitches::new(Duration::from_secs(2));
        let t0 = Instant::now();
        assert!(s.allow(t0), "the first decoder at once");
        // A payload type per packet for 10 s at 500 packets a second: five more decoders, not 5,000.
        let built = (1..5_000u64).filter(|i| s.allow(t0 + Duration::from_millis(i * 2))).count();
        assert_eq!(built, 4);
        assert_eq!(s.refused(), 4_999 - 4);
        assert!(s.allow(t0 + Duration::from_secs(10)));
    }
}

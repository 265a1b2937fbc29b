//! The speaker's mixer: one playout (jitter) buffer per remote audio stream, told apart by SSRC, summed into the
//! one 10 ms frame the speaker plays. A 1:1 call has one stream; a group call one per member who speaks. Pure
//! logic like [`Playout`]: the caller passes monotonic times. Bounded: at most [`MAX_SOURCES`] streams; a stream
//! that has sent nothing for [`SOURCE_IDLE`] is dropped (its buffer has long faded to silence), which also makes
//! room for a new one.

use std::time::Duration;

use super::playout::{FrameSource, Playout, PlayoutConfig, PlayoutStats};
use super::MediaError;
use crate::devices::{AudioFrame, AUDIO_FRAME_SAMPLES};

/// Remote audio streams mixed at once (a room's members, with room to spare).
pub const MAX_SOURCES: usize = 16;
/// A stream without packets for this long is dropped.
pub const SOURCE_IDLE: Duration = Duration::from_secs(5);

struct Source {
    ssrc: u32,
    playout: Playout,
    last_packet: Duration,
}

/// Several remote Opus streams into one speaker.
pub struct Mixer {
    config: PlayoutConfig,
    sources: Vec<Source>,
    /// Counters of the streams dropped so far (so the totals never go backwards).
    retired: PlayoutStats,
    scratch: AudioFrame,
    /// Packets refused because every stream slot was taken by a live stream.
    pub refused: u64,
}

/// Adds the counters of `b` into `a` (delays: the larger). Destructured, so that a counter added to
/// `PlayoutStats` cannot be left out of the totals.
fn accumulate(a: &mut PlayoutStats, b: &PlayoutStats) {
    let PlayoutStats {
        target_delay_ms,
        playout_delay_ms,
        buffered_ms,
        decoded,
        fec_recovered,
        concealed,
        silence,
        frames_inserted,
        frames_dropped,
        late_dropped,
        duplicates,
        future_dropped,
        overflow_dropped,
        invalid,
        resyncs,
    } = b;
    a.target_delay_ms = a.target_delay_ms.max(*target_delay_ms);
    a.playout_delay_ms = a.playout_delay_ms.max(*playout_delay_ms);
    a.buffered_ms = a.buffered_ms.max(*buffered_ms);
    a.decoded += decoded;
    a.fec_recovered += fec_recovered;
    a.concealed += concealed;
    a.silence += silence;
    a.frames_inserted += frames_inserted;
    a.frames_dropped += frames_dropped;
    a.late_dropped += late_dropped;
    a.duplicates += duplicates;
    a.future_dropped += future_dropped;
    a.overflow_dropped += overflow_dropped;
    a.invalid += invalid;
    a.resyncs += resyncs;
}

impl Mixer {
    /// An empty mixer whose streams get buffers of `config` (checked here, once).
    pub fn new(config: PlayoutConfig) -> Result<Self, MediaError> {
        Playout::new(config.clone())?;
        Ok(Mixer {
            config,
            sources: Vec::new(),
            retired: PlayoutStats::default(),
            scratch: [0; AUDIO_FRAME_SAMPLES],
            refused: 0,
        })
    }

    /// Takes one received RTP packet of stream `ssrc`.
    pub fn push(&mut self, ssrc: u32, seq: u16, rtp_timestamp: u32, payload: &[u8], arrival: Duration) {
        self.retire_idle(arrival);
        let index = match self.sources.iter().position(|s| s.ssrc == ssrc) {
            Some(i) => i,
            None => {
                if self.sources.len() >= MAX_SOURCES {
                    self.refused += 1;
                    if self.refused.is_power_of_two() {
                        log::warn!(
                            "mixer: {MAX_SOURCES} remote voices already mixed: {} packets refused",
                            self.refused
                        );
                    }
                    return;
                }
                let playout = match Playout::new(self.config.clone()) {
                    Ok(p) => p,
                    Err(e) => {
                        // The configuration was checked in `new`; only the Opus decoder can fail here.
                        log::warn!("mixer: no buffer for a new remote audio stream: {e}");
                        self.refused += 1;
                        return;
                    }
                };
                log::debug!("mixer: remote audio stream {ssrc:#010x} added ({} in all)", self.sources.len() + 1);
                self.sources.push(Source { ssrc, playout, last_packet: arrival });
                self.sources.len() - 1
            }
        };
        let source = &mut self.sources[index];
        source.last_packet = arrival;
        source.playout.push(seq, rtp_timestamp, payload, arrival);
    }

    fn retire_idle(&mut self, now: Duration) {
        let retired = &mut self.retired;
        self.sources.retain(|s| {
            let keep = now.saturating_sub(s.last_packet) < SOURCE_IDLE;
            if !keep {
                log::debug!("mixer: remote audio stream {:#010x} idle, dropped", s.ssrc);
                accumulate(retired, &s.playout.stats());
            }
            keep
        });
    }

    /// The next 10 ms for the speaker at `now`: the sum of every stream's frame (saturating). With one stream
    /// this is exactly that stream's buffer. Returns the "best" source of the mix (decoded over recovered over
    /// concealed over silence).
    pub fn next_frame(&mut self, now: Duration, out: &mut AudioFrame) -> FrameSource {
        self.retire_idle(now);
        out.fill(0);
        let mut best = FrameSource::Silence;
        for source in &mut self.sources {
            let kind = source.playout.next_frame(now, &mut self.scratch);
            for (o, s) in out.iter_mut().zip(self.scratch.iter()) {
                *o = o.saturating_add(*s);
            }
            best = match (best, kind) {
                (FrameSource::Decoded, _) | (_, FrameSource::Decoded) => FrameSource::Decoded,
                (FrameSource::FecRecovered, _) | (_, FrameSource::FecRecovered) => FrameSource::FecRecovered,
                (FrameSource::Concealed, _) | (_, FrameSource::Concealed) => FrameSource::Concealed,
                _ => FrameSource::Silence,
            };
        }
        best
    }

    /// The counters of every stream so far, summed (delays: the largest current one).
    pub fn stats(&self) -> PlayoutStats {
        let mut total = self.retired.clone();
        total.target_delay_ms = 0;
        total.playout_delay_ms = 0;
        total.buffered_ms = 0;
        for s in &self.sources {
            accumulate(&mut total, &s.playout.stats());
        }
        total
    }

    /// Remote audio streams being mixed now.
    pub fn streams(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::playout::OpusTestSource;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feeds `packets` 20 ms packets of each source at real-time pace and plays 10 ms frames; returns the last
    /// frame's peak.
    fn run(mixer: &mut Mixer, sources: &mut [(u32, OpusTestSource)], packets: u64, start: u64) -> i16 {
        let mut frame = [0i16; AUDIO_FRAME_SAMPLES];
        let mut peak = 0i16;
        for p in 0..packets {
            let t = start + p * 20;
            for (ssrc, src) in sources.iter_mut() {
                let pkt = src.next_packet().unwrap();
                mixer.push(*ssrc, pkt.seq, pkt.timestamp, &pkt.payload, ms(t));
            }
            for half in 0..2 {
                mixer.next_frame(ms(t + half * 10), &mut frame);
                peak = frame.iter().map(|s| s.saturating_abs()).max().unwrap_or(0);
            }
        }
        peak
    }

    #[test]
    fn two_streams_are_summed_and_each_has_its_own_buffer() {
        let mut one = Mixer::new(PlayoutConfig::default()).unwrap();
        let mut alone = [(1u32, OpusTestSource::new(440.0, -6.0, 32_000, 1, 1).unwrap())];
        let peak_one = run(&mut one, &mut alone, 100, 0);
        assert!(peak_one > 1000, "one stream plays: peak {peak_one}");

        let mut two = Mixer::new(PlayoutConfig::default()).unwrap();
        // Two far ends with unrelated sequence numbers and timestamps: a single buffer would drop one as
        // duplicates or late packets.
        let mut both = [
            (1u32, OpusTestSource::new(440.0, -6.0, 32_000, 1, 1).unwrap()),
            (2u32, OpusTestSource::new(440.0, -6.0, 32_000, 30_000, 2_000_000_000).unwrap()),
        ];
        run(&mut two, &mut both, 100, 0);
        assert_eq!(two.streams(), 2);
        let stats = two.stats();
        assert_eq!(stats.late_dropped + stats.duplicates + stats.future_dropped, 0, "{stats:?}");
        assert!(stats.decoded >= 2 * 150, "both streams decoded: {stats:?}");
    }

    #[test]
    fn an_idle_stream_is_dropped_and_its_counters_kept() {
        let mut mixer = Mixer::new(PlayoutConfig::default()).unwrap();
        let mut a = [(7u32, OpusTestSource::new(300.0, -6.0, 32_000, 1, 1).unwrap())];
        run(&mut mixer, &mut a, 50, 0);
        let before = mixer.stats().decoded;
        assert!(before > 0);
        let mut frame = [0i16; AUDIO_FRAME_SAMPLES];
        mixer.next_frame(ms(1000) + SOURCE_IDLE + ms(10), &mut frame);
        assert_eq!(mixer.streams(), 0);
        assert!(mixer.stats().decoded >= before, "counters never go backwards");
        assert!(frame.iter().all(|s| *s == 0), "nothing left to play");
    }

    #[test]
    fn streams_beyond_the_bound_are_refused_not_stored() {
        let mut mixer = Mixer::new(PlayoutConfig::default()).unwrap();
        let mut src = OpusTestSource::new(300.0, -6.0, 32_000, 1, 1).unwrap();
        let pkt = src.next_packet().unwrap();
        for ssrc in 0..(MAX_SOURCES as u32 + 4) {
            mixer.push(ssrc, pkt.seq, pkt.timestamp, &pkt.payload, ms(0));
        }
        assert_eq!(mixer.streams(), MAX_SOURCES);
        assert_eq!(mixer.refused, 4);
    }
}

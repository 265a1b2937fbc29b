//! Playout (jitter) buffer for Opus over RTP: reorders packets, decodes them into the speaker's 10 ms
//! frames, recovers single losses with Opus in-band FEC, conceals the rest (then fades to silence), and
//! adapts its delay to the observed network jitter. Pure logic: the caller passes monotonic times, the
//! speaker's clock drives [`Playout::next_frame`]. Also the synthetic Opus far end the tests and the
//! benchmark feed it with ([`OpusTestSource`]).
//!
//! # Timing model
//!
//! Every packet has a *transit* `arrival - timestamp / 48 kHz`. The *base* is the smallest transit of the
//! last [`JITTER_WINDOW`] packets (the fastest path; it follows clock drift and route changes), a
//! packet's *jitter* is its transit minus the base. The *target delay* is the 95th percentile of those
//! jitters plus [`JITTER_MARGIN`] (the 10 ms granularity of the speaker clock), bounded by the
//! configured `min_delay` and `max_delay`.
//!
//! The *playout delay* is `now - position / 48 kHz - base`, where `position` is the RTP time of the next
//! sample the speaker gets: how long before it is needed a packet on the fastest path arrived. Playback
//! starts once it reaches the target. Each call to `next_frame` advances the position by 10 ms whether
//! or not audio was there (a packet that misses its time is late and dropped, its time concealed), so
//! the delay only changes by these rules:
//!
//! - **Grow by waiting**: when the delay is below the target, one 10 ms frame is inserted (concealment,
//!   or silence in a pause) without advancing the position, at a packet boundary; in speech at most one
//!   every [`GROW_INTERVAL`] frames, in silence every frame.
//! - **Shrink by dropping**: when the delay exceeds the target by [`SHRINK_HYSTERESIS`] or more, one
//!   10 ms frame is decoded and discarded; in silence (a gap, or a frame below [`QUIET_DBFS`]) every
//!   frame, in speech at most one every [`SHRINK_INTERVAL`] frames.
//!
//! # Losses, pauses, resets
//!
//! A packet is missing when the next packet in sequence has not arrived by its time. If the packet
//! after it is there and starts exactly one of its own frame durations later, the missing audio is
//! decoded from that packet's FEC data; otherwise 10 ms are concealed (Opus PLC). Gaps without any
//! packet (a loss burst, the far end's DTX, a stopped stream) are concealed for [`CONCEAL_FRAMES`]
//! frames, the last [`FADE_FRAMES`] of them fading out, then played as silence. Timestamp gaps with
//! contiguous sequence numbers are pauses (DTX), not losses.
//!
//! Duplicates, late packets (all of their audio before the position), far-future packets (more than
//! `max_delay` + [`FUTURE_SLACK`] ahead) and undecodable payloads are dropped and counted. After a run
//! of [`RESYNC_FAR_AFTER`] packets far off in time, or [`RESYNC_AFTER`] late ones, all with consecutive
//! sequence numbers (the far end restarted its timestamps, or paused its clock), the buffer starts over
//! from the latest of them; scattered garbage never does that. A full buffer drops the packet
//! furthest in the future. Nothing here panics on network input.

use std::time::Duration;

use super::audio::{OpusEncoder, ToneSource, FRAME_SAMPLES, SAMPLE_RATE};
use super::MediaError;
use crate::devices::{AudioFrame, AUDIO_FRAME_SAMPLES};

/// Samples of one 20 ms Opus packet (what [`OpusTestSource`] sends).
pub const PACKET_SAMPLES: usize = FRAME_SAMPLES;
/// Largest payload kept (one Ethernet MTU; Opus packets of a call are far smaller).
pub const MAX_PAYLOAD: usize = 1500;
/// Largest capacity accepted by [`Playout::new`].
pub const MAX_CAPACITY: usize = 1024;
/// Packets the jitter estimate looks back over (2 s of 20 ms packets).
pub const JITTER_WINDOW: usize = 100;
/// Added to the 95th-percentile jitter for the target delay.
pub const JITTER_MARGIN: Duration = Duration::from_millis(10);
/// In speech, at most one inserted frame per this many frames.
pub const GROW_INTERVAL: u32 = 3;
/// In speech, at most one dropped frame per this many frames.
pub const SHRINK_INTERVAL: u32 = 20;
/// The delay must exceed the target by this much before a frame is dropped.
pub const SHRINK_HYSTERESIS: Duration = Duration::from_millis(15);
/// Frames at or below this RMS level count as silence for shrinking.
pub const QUIET_DBFS: f64 = -55.0;
/// Frames concealed in a gap before silence (including the fade).
pub const CONCEAL_FRAMES: u32 = 6;
/// The last frames of the concealment fade out linearly.
pub const FADE_FRAMES: u32 = 3;
/// How far beyond `max_delay` a packet may be ahead of the position.
pub const FUTURE_SLACK: Duration = Duration::from_secs(1);
/// Consecutive late packets (0.5 s of 20 ms packets; consecutive sequence numbers) that make the
/// buffer start over.
pub const RESYNC_AFTER: u32 = 25;
/// Consecutive packets more than `max_delay` + [`FUTURE_SLACK`] off (consecutive sequence numbers) that
/// make the buffer start over.
pub const RESYNC_FAR_AFTER: u32 = 8;

/// The largest Opus packet: 120 ms.
const MAX_PACKET_SAMPLES: usize = SAMPLE_RATE as usize * 120 / 1000;
/// PLC and FEC durations must be multiples of 2.5 ms.
const OPUS_GRANULE: i64 = SAMPLE_RATE as i64 / 400;
const SAMPLES_PER_MS: i64 = SAMPLE_RATE as i64 / 1000;
const FRAME: i64 = AUDIO_FRAME_SAMPLES as i64;

/// Playout buffer configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayoutConfig {
    /// Smallest target delay.
    pub min_delay: Duration,
    /// Largest target delay.
    pub max_delay: Duration,
    /// Packets held at most (1..=[`MAX_CAPACITY`]).
    pub capacity: usize,
}

impl Default for PlayoutConfig {
    fn default() -> Self {
        Self { min_delay: Duration::from_millis(20), max_delay: Duration::from_millis(200), capacity: 64 }
    }
}

/// Where the samples of a frame from [`Playout::next_frame`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameSource {
    /// Decoded from received packets.
    Decoded,
    /// Recovered from the next packet's in-band FEC.
    FecRecovered,
    /// Concealed (Opus PLC: a loss, a pause, or a frame inserted to grow the delay).
    Concealed,
    /// Silence: before the first packet, while buffering, or after a long gap.
    Silence,
}

/// Playout statistics. Frame counts are of 10 ms output frames, drop counts are of packets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlayoutStats {
    /// The delay the buffer aims for, ms.
    pub target_delay_ms: u32,
    /// The playout delay of the latest frame (see the module documentation): how long before it was
    /// played the audio arrived on the fastest path, i.e. the latency the buffer adds; 0 before playing.
    pub playout_delay_ms: u32,
    /// Audio buffered ahead of the speaker (decoded and not yet decoded), ms.
    pub buffered_ms: u32,
    /// Frames decoded from packets.
    pub decoded: u64,
    /// Frames recovered by FEC.
    pub fec_recovered: u64,
    /// Frames concealed.
    pub concealed: u64,
    /// Frames of silence.
    pub silence: u64,
    /// Frames inserted to grow the delay (also counted as concealed or silence).
    pub frames_inserted: u64,
    /// Frames dropped to shrink the delay.
    pub frames_dropped: u64,
    /// Packets arriving after their time.
    pub late_dropped: u64,
    /// Packets received twice.
    pub duplicates: u64,
    /// Packets too far ahead of the playout position.
    pub future_dropped: u64,
    /// Packets dropped because the buffer was full.
    pub overflow_dropped: u64,
    /// Payloads that are not Opus packets, or failed to decode.
    pub invalid: u64,
    /// Times the buffer started over.
    pub resyncs: u64,
}

/// One buffered packet: a preallocated slot of the playout buffer.
struct PacketSlot {
    used: bool,
    seq: i64,
    ts: i64,
    samples: i64,
    len: usize,
    data: Box<[u8; MAX_PAYLOAD]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No packet yet (or starting over).
    Idle,
    /// Packets arriving, delay not yet reached.
    Buffering,
    /// Feeding the speaker.
    Playing,
}

/// The playout buffer of one remote Opus stream (48 kHz mono).
pub struct Playout {
    config: PlayoutConfig,
    decoder: opus::Decoder,
    slots: Vec<PacketSlot>,
    phase: Phase,
    /// Extended sequence number of the last packet played (or skipped past by FEC).
    last_seq: i64,
    /// Bit i set: packet `last_seq - i` was played (to tell duplicates from late packets).
    played: u64,
    /// Extended RTP time of the next sample to decode (the end of `pcm`).
    decode_ts: i64,
    /// Decoded samples not yet output.
    pcm: Box<[i16]>,
    pcm_start: usize,
    pcm_end: usize,
    pcm_source: FrameSource,
    /// Scratch for the decoder.
    scratch: Box<[i16]>,
    /// Transits (µs) of the last packets, a ring.
    transits: Box<[i64; JITTER_WINDOW]>,
    transit_count: usize,
    transit_next: usize,
    base_us: i64,
    target: Duration,
    /// Consecutive frames without received audio.
    gap_frames: u32,
    frames_since_grow: u32,
    frames_since_shrink: u32,
    /// Consecutive late or far-future packets.
    bad_run: u32,
    bad_seq: u16,
    bad_ts: u32,
    bad_misses: u32,
    last_frame_quiet: bool,
    stats: PlayoutStats,
}

impl Playout {
    /// An empty buffer.
    pub fn new(config: PlayoutConfig) -> Result<Self, MediaError> {
        if config.capacity == 0 || config.capacity > MAX_CAPACITY {
            return Err(MediaError::Config(format!(
                "playout capacity {} packets is outside 1..={MAX_CAPACITY}",
                config.capacity
            )));
        }
        if config.min_delay > config.max_delay || config.max_delay > Duration::from_secs(2) {
            return Err(MediaError::Config(format!(
                "playout delays: min {:?} must not exceed max {:?}, max at most 2 s",
                config.min_delay, config.max_delay
            )));
        }
        let decoder = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)
            .map_err(|e| MediaError::Audio(format!("playout opus decoder create: {e}")))?;
        let slots = (0..config.capacity)
            .map(|_| PacketSlot { used: false, seq: 0, ts: 0, samples: 0, len: 0, data: Box::new([0u8; MAX_PAYLOAD]) })
            .collect();
        let target = config.min_delay;
        Ok(Self {
            config,
            decoder,
            slots,
            phase: Phase::Idle,
            last_seq: 0,
            played: 0,
            decode_ts: 0,
            pcm: vec![0i16; MAX_PACKET_SAMPLES + AUDIO_FRAME_SAMPLES].into_boxed_slice(),
            pcm_start: 0,
            pcm_end: 0,
            pcm_source: FrameSource::Silence,
            scratch: vec![0i16; MAX_PACKET_SAMPLES].into_boxed_slice(),
            transits: Box::new([0; JITTER_WINDOW]),
            transit_count: 0,
            transit_next: 0,
            base_us: 0,
            target,
            gap_frames: CONCEAL_FRAMES,
            frames_since_grow: 0,
            frames_since_shrink: 0,
            bad_run: 0,
            bad_seq: 0,
            bad_ts: 0,
            bad_misses: 0,
            last_frame_quiet: true,
            stats: PlayoutStats { target_delay_ms: duration_ms(target), ..PlayoutStats::default() },
        })
    }

    /// Takes one received RTP packet (its sequence number, timestamp, Opus payload and arrival time).
    /// Duplicates, late, far-future and malformed packets are dropped and counted.
    pub fn push(&mut self, seq: u16, rtp_timestamp: u32, payload: &[u8], arrival: Duration) {
        let samples = match opus::packet::get_nb_samples(payload, SAMPLE_RATE) {
            Ok(n) if n > 0 && n <= MAX_PACKET_SAMPLES && payload.len() <= MAX_PAYLOAD => n as i64,
            _ => {
                self.stats.invalid += 1;
                log::trace!("playout: dropped a {}-byte payload that is not an Opus packet", payload.len());
                return;
            }
        };
        if self.phase == Phase::Idle {
            self.start_over(seq, rtp_timestamp, arrival);
        }
        let ext_seq = extend(self.last_seq, u64::from(seq), 16);
        let ext_ts = extend(self.decode_ts, u64::from(rtp_timestamp), 32);
        let arrival_us = duration_us(arrival);

        // Duplicates.
        let behind = self.last_seq - ext_seq;
        if ((0..64).contains(&behind) && self.played & (1u64 << behind) != 0)
            || self.slots.iter().any(|s| s.used && s.seq == ext_seq)
        {
            self.stats.duplicates += 1;
            return;
        }

        // Before playback, an earlier packet moves the start back (reordering at the start).
        if self.phase == Phase::Buffering
            && ext_seq <= self.last_seq
            && ext_ts < self.decode_ts
            && self.decode_ts - ext_ts <= self.max_delay_samples()
        {
            self.decode_ts = ext_ts;
            self.last_seq = ext_seq - 1;
            self.played = 0;
        }

        let late = ext_seq <= self.last_seq || ext_ts + samples <= self.decode_ts;
        let future = ext_ts - self.position() > self.max_delay_samples() + duration_samples(FUTURE_SLACK);
        if late || future {
            let far_off =
                future || self.position() - ext_ts > self.max_delay_samples() + duration_samples(FUTURE_SLACK);
            if late {
                self.stats.late_dropped += 1;
                // A little late informs the jitter estimate; far off in time would only poison it.
                if !far_off {
                    self.record_transit(arrival_us, ext_ts);
                }
            } else {
                self.stats.future_dropped += 1;
            }
            // Only a run of packets consistent among themselves (sequence numbers and time moving
            // forward together) is a far end on another timeline; scattered garbage is not, and does
            // not break such a run unless it is all there is for a while.
            let seq_step = seq.wrapping_sub(self.bad_seq);
            let ts_step = rtp_timestamp.wrapping_sub(self.bad_ts);
            let continues = self.bad_run > 0
                && (1..=8).contains(&seq_step)
                && ts_step <= u32::from(seq_step) * MAX_PACKET_SAMPLES as u32;
            if continues {
                self.bad_run += 1;
                self.bad_misses = 0;
                (self.bad_seq, self.bad_ts) = (seq, rtp_timestamp);
            } else {
                self.bad_misses += 1;
                if self.bad_run == 0 || self.bad_misses > 16 {
                    // A new candidate run starts with this packet.
                    self.bad_run = 1;
                    self.bad_misses = 0;
                    (self.bad_seq, self.bad_ts) = (seq, rtp_timestamp);
                }
            }
            if self.bad_run >= if far_off { RESYNC_FAR_AFTER } else { RESYNC_AFTER } {
                log::info!("playout: far end's timing jumped ({} packets off), starting over", self.bad_run);
                self.stats.resyncs += 1;
                self.start_over(seq, rtp_timestamp, arrival);
                self.store(self.last_seq + 1, self.decode_ts, samples, payload);
                self.record_transit(arrival_us, self.decode_ts);
            }
            return;
        }
        self.bad_run = 0;
        self.bad_misses = 0;
        self.record_transit(arrival_us, ext_ts);
        self.store(ext_seq, ext_ts, samples, payload);
    }

    /// The next 10 ms for the speaker at `now` (called every 10 ms by the speaker's clock); always fills
    /// `out`.
    pub fn next_frame(&mut self, now: Duration, out: &mut AudioFrame) -> FrameSource {
        let delay = self.delay_us(now);
        let source = self.frame(now, out);
        match source {
            FrameSource::Decoded => self.stats.decoded += 1,
            FrameSource::FecRecovered => self.stats.fec_recovered += 1,
            FrameSource::Concealed => self.stats.concealed += 1,
            FrameSource::Silence => self.stats.silence += 1,
        }
        self.last_frame_quiet = source == FrameSource::Silence || rms_dbfs(out) <= QUIET_DBFS;
        self.stats.playout_delay_ms =
            if self.phase == Phase::Playing { duration_ms(Duration::from_micros(delay.max(0) as u64)) } else { 0 };
        source
    }

    /// Current statistics.
    pub fn stats(&self) -> PlayoutStats {
        let mut stats = self.stats.clone();
        stats.target_delay_ms = duration_ms(self.target);
        let newest_end = self.slots.iter().filter(|s| s.used).map(|s| s.ts + s.samples).max();
        let buffered = newest_end.map_or(self.pcm_end as i64 - self.pcm_start as i64, |end| end - self.position());
        stats.buffered_ms = if self.phase == Phase::Idle { 0 } else { (buffered.max(0) / SAMPLES_PER_MS) as u32 };
        stats
    }

    /// The configuration.
    pub fn config(&self) -> &PlayoutConfig {
        &self.config
    }

    // --- output -------------------------------------------------------------------------------------

    fn frame(&mut self, now: Duration, out: &mut AudioFrame) -> FrameSource {
        match self.phase {
            Phase::Idle => return silence(out),
            Phase::Buffering => {
                if self.delay_us(now) < duration_us(self.target) {
                    return silence(out);
                }
                log::debug!("playout: buffered {} ms, playing", duration_ms(self.target));
                self.phase = Phase::Playing;
                self.frames_since_grow = 0;
                self.frames_since_shrink = 0;
            }
            Phase::Playing => {}
        }
        self.frames_since_grow = self.frames_since_grow.saturating_add(1);
        self.frames_since_shrink = self.frames_since_shrink.saturating_add(1);
        let delay = self.delay_us(now);
        let target = duration_us(self.target);
        let in_pause = self.gap_frames > 0 || self.last_frame_quiet;

        // Grow by waiting: insert a frame at a packet boundary.
        if delay < target && self.pcm_len() == 0 && (in_pause || self.frames_since_grow >= GROW_INTERVAL) {
            self.frames_since_grow = 0;
            self.stats.frames_inserted += 1;
            return if self.gap_frames >= CONCEAL_FRAMES - FADE_FRAMES || self.last_frame_quiet {
                silence(out)
            } else {
                self.conceal_into(out)
            };
        }

        // Shrink by dropping a frame: any quiet frame, a loud one at most every SHRINK_INTERVAL frames.
        if delay >= target + duration_us(SHRINK_HYSTERESIS) {
            let candidate = self.produce(out);
            let quiet = candidate == FrameSource::Silence || rms_dbfs(out) <= QUIET_DBFS;
            if quiet || self.frames_since_shrink >= SHRINK_INTERVAL {
                self.frames_since_shrink = 0;
                self.stats.frames_dropped += 1;
                return self.produce(out);
            }
            return candidate;
        }
        self.produce(out)
    }

    /// Outputs the next 10 ms of the stream, decoding, recovering or concealing as needed.
    fn produce(&mut self, out: &mut AudioFrame) -> FrameSource {
        let mut source: Option<FrameSource> = None;
        let mut filled = 0usize;
        // Each fill adds at least 2.5 ms, so this ends; the bound only guards against a logic slip.
        for _ in 0..16 {
            if self.pcm_len() > 0 {
                let n = self.pcm_len().min(AUDIO_FRAME_SAMPLES - filled);
                out[filled..filled + n].copy_from_slice(&self.pcm[self.pcm_start..self.pcm_start + n]);
                self.pcm_start += n;
                filled += n;
                source = Some(merge(source, self.pcm_source));
            }
            if filled == AUDIO_FRAME_SAMPLES {
                break;
            }
            self.fill();
        }
        if filled < AUDIO_FRAME_SAMPLES {
            out[filled..].fill(0);
        }
        source.unwrap_or(FrameSource::Silence)
    }

    /// Decodes the next piece of the stream into `pcm` (which is empty).
    fn fill(&mut self) {
        self.pcm_start = 0;
        self.pcm_end = 0;
        self.drop_stale();
        let next = self.next_slot();
        if let Some(i) = next {
            let (seq, ts, samples) = (self.slots[i].seq, self.slots[i].ts, self.slots[i].samples);
            if ts <= self.decode_ts {
                self.decode_slot(i);
                return;
            }
            let gap = ts - self.decode_ts;
            if seq > self.last_seq + 1 && gap == samples && gap % OPUS_GRANULE == 0 {
                // Exactly the previous packet is missing: recover it from this one's FEC data.
                let len = self.slots[i].len;
                let n = gap as usize;
                match self.decoder.decode(&self.slots[i].data[..len], &mut self.scratch[..n], true) {
                    Ok(got) if got > 0 => {
                        let got = got.min(n);
                        self.pcm[..got].copy_from_slice(&self.scratch[..got]);
                        self.pcm_end = got;
                        self.pcm_source = FrameSource::FecRecovered;
                        self.decode_ts += got as i64;
                        self.advance_last_seq(seq - 1, false);
                        self.gap_frames = 0;
                        return;
                    }
                    Ok(_) | Err(_) => log::trace!("playout: FEC decode failed, concealing"),
                }
            }
            // A gap before the next packet: conceal up to it (at most 10 ms at a time).
            let n = if gap < FRAME && gap % OPUS_GRANULE == 0 { gap } else { FRAME };
            self.gap_fill(n as usize);
        } else {
            self.gap_fill(AUDIO_FRAME_SAMPLES);
        }
    }

    fn decode_slot(&mut self, i: usize) {
        let (seq, ts, len) = (self.slots[i].seq, self.slots[i].ts, self.slots[i].len);
        self.slots[i].used = false;
        let result = self.decoder.decode(&self.slots[i].data[..len], &mut self.scratch[..], false);
        let decoded = matches!(result, Ok(n) if n > 0);
        self.advance_last_seq(seq, decoded);
        match result {
            Ok(n) if n > 0 => {
                let n = n.min(MAX_PACKET_SAMPLES);
                // Skip what overlaps audio already played (a packet whose start is behind the position).
                let skip = ((self.decode_ts - ts).max(0) as usize).min(n);
                self.pcm[..n - skip].copy_from_slice(&self.scratch[skip..n]);
                self.pcm_end = n - skip;
                self.pcm_source = FrameSource::Decoded;
                self.decode_ts = ts + n as i64;
                self.gap_frames = 0;
            }
            Ok(_) | Err(_) => {
                self.stats.invalid += 1;
                log::trace!("playout: undecodable Opus packet {seq}, concealing");
                self.gap_fill(AUDIO_FRAME_SAMPLES);
            }
        }
    }

    /// Moves `last_seq` forward to `seq`, remembering whether `seq` itself was played.
    fn advance_last_seq(&mut self, seq: i64, played: bool) {
        let shift = seq - self.last_seq;
        self.played = if !(0..64).contains(&shift) { 0 } else { self.played << shift };
        self.played |= u64::from(played);
        self.last_seq = seq.max(self.last_seq);
    }

    /// `n` samples of concealment (fading out) or silence, advancing the position.
    fn gap_fill(&mut self, n: usize) {
        let n = n.min(MAX_PACKET_SAMPLES);
        if self.gap_frames < CONCEAL_FRAMES {
            let got = match self.decoder.decode(&[], &mut self.scratch[..n], false) {
                Ok(got) => got.min(n),
                Err(_) => 0,
            };
            self.scratch[got..n].fill(0);
            self.fade(n);
            self.pcm[..n].copy_from_slice(&self.scratch[..n]);
            self.pcm_source = FrameSource::Concealed;
        } else {
            self.pcm[..n].fill(0);
            self.pcm_source = FrameSource::Silence;
        }
        self.pcm_end = n;
        self.decode_ts += n as i64;
        self.gap_frames = self.gap_frames.saturating_add(1);
    }

    /// Applies the concealment fade to the first `n` scratch samples.
    fn fade(&mut self, n: usize) {
        let fade_start = CONCEAL_FRAMES - FADE_FRAMES;
        if self.gap_frames < fade_start {
            return;
        }
        let step = 1.0 / f64::from(FADE_FRAMES) / n.max(1) as f64;
        let start = f64::from(CONCEAL_FRAMES - self.gap_frames) / f64::from(FADE_FRAMES);
        for (k, s) in self.scratch[..n].iter_mut().enumerate() {
            let gain = (start - step * k as f64).clamp(0.0, 1.0);
            *s = (f64::from(*s) * gain) as i16;
        }
    }

    /// A concealed frame that does not advance the position (growing the delay).
    fn conceal_into(&mut self, out: &mut AudioFrame) -> FrameSource {
        match self.decoder.decode(&[], &mut out[..], false) {
            Ok(n) if n >= AUDIO_FRAME_SAMPLES => FrameSource::Concealed,
            _ => silence(out),
        }
    }

    // --- buffer ---------------------------------------------------------------------------------

    fn store(&mut self, seq: i64, ts: i64, samples: i64, payload: &[u8]) {
        let index = match self.slots.iter().position(|s| !s.used) {
            Some(i) => i,
            None => {
                // Full: drop whichever is furthest in the future, the newcomer or a buffered packet.
                self.stats.overflow_dropped += 1;
                let furthest = self.slots.iter().enumerate().max_by_key(|(_, s)| s.seq).map(|(i, s)| (i, s.seq));
                match furthest {
                    Some((i, furthest_seq)) if furthest_seq > seq => i,
                    _ => return,
                }
            }
        };
        let slot = &mut self.slots[index];
        slot.used = true;
        slot.seq = seq;
        slot.ts = ts;
        slot.samples = samples;
        slot.len = payload.len();
        slot.data[..payload.len()].copy_from_slice(payload);
    }

    /// The buffered packet with the lowest sequence number after the last one played.
    fn next_slot(&self) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.used && s.seq > self.last_seq)
            .min_by_key(|(_, s)| s.seq)
            .map(|(i, _)| i)
    }

    /// Drops buffered packets whose audio lies entirely behind the decode position.
    fn drop_stale(&mut self) {
        for slot in self.slots.iter_mut().filter(|s| s.used) {
            if slot.seq <= self.last_seq || slot.ts + slot.samples <= self.decode_ts {
                slot.used = false;
                self.stats.late_dropped += 1;
            }
        }
    }

    fn start_over(&mut self, seq: u16, rtp_timestamp: u32, arrival: Duration) {
        for slot in &mut self.slots {
            slot.used = false;
        }
        // Extended values start far from zero so that reordering around the start never goes negative.
        self.last_seq = (1i64 << 20) + i64::from(seq) - 1;
        self.decode_ts = (1i64 << 40) + i64::from(rtp_timestamp);
        self.played = 0;
        self.pcm_start = 0;
        self.pcm_end = 0;
        self.transit_count = 0;
        self.transit_next = 0;
        self.base_us = duration_us(arrival) - samples_to_us(self.decode_ts);
        self.target = self.config.min_delay;
        self.gap_frames = CONCEAL_FRAMES;
        self.bad_run = 0;
        self.phase = Phase::Buffering;
    }

    // --- timing ---------------------------------------------------------------------------------

    fn record_transit(&mut self, arrival_us: i64, ts: i64) {
        let transit = arrival_us - samples_to_us(ts);
        self.transits[self.transit_next] = transit;
        self.transit_next = (self.transit_next + 1) % JITTER_WINDOW;
        self.transit_count = (self.transit_count + 1).min(JITTER_WINDOW);
        let window = &self.transits[..self.transit_count];
        self.base_us = window.iter().copied().min().unwrap_or(transit);
        let mut sorted = [0i64; JITTER_WINDOW];
        let sorted = &mut sorted[..window.len()];
        sorted.copy_from_slice(window);
        sorted.sort_unstable();
        let p95 = sorted[(sorted.len() * 95 / 100).min(sorted.len() - 1)] - self.base_us;
        let target = Duration::from_micros(p95.max(0) as u64) + JITTER_MARGIN;
        self.target = target.clamp(self.config.min_delay, self.config.max_delay);
    }

    /// Extended RTP time of the next sample the speaker gets.
    fn position(&self) -> i64 {
        self.decode_ts - self.pcm_len() as i64
    }

    /// The playout delay at `now`, µs.
    fn delay_us(&self, now: Duration) -> i64 {
        duration_us(now) - samples_to_us(self.position()) - self.base_us
    }

    fn pcm_len(&self) -> usize {
        self.pcm_end - self.pcm_start
    }

    fn max_delay_samples(&self) -> i64 {
        duration_samples(self.config.max_delay)
    }
}

/// Unwraps an RTP counter of `bits` bits to the value nearest to `reference`.
fn extend(reference: i64, value: u64, bits: u32) -> i64 {
    let modulus = 1i64 << bits;
    let delta = (value as i64 - reference).rem_euclid(modulus);
    if delta >= modulus / 2 {
        reference + delta - modulus
    } else {
        reference + delta
    }
}

/// The more telling of two sources for a frame made of both.
fn merge(a: Option<FrameSource>, b: FrameSource) -> FrameSource {
    let rank = |s: FrameSource| match s {
        FrameSource::Silence => 0,
        FrameSource::Decoded => 1,
        FrameSource::FecRecovered => 2,
        FrameSource::Concealed => 3,
    };
    match a {
        Some(a) if rank(a) >= rank(b) => a,
        _ => b,
    }
}

fn silence(out: &mut AudioFrame) -> FrameSource {
    out.fill(0);
    FrameSource::Silence
}

fn rms_dbfs(pcm: &[i16]) -> f64 {
    let sum: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (sum / pcm.len().max(1) as f64).sqrt() / 32768.0;
    if rms <= 1e-6 {
        -120.0
    } else {
        20.0 * rms.log10()
    }
}

fn duration_us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 4)
}

fn duration_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// µs to 48 kHz samples (1 µs = 6/125 samples).
fn duration_samples(d: Duration) -> i64 {
    let us = duration_us(d);
    us / 125 * 6 + us % 125 * 6 / 125
}

/// 48 kHz samples to µs (1 sample = 125/6 µs).
fn samples_to_us(samples: i64) -> i64 {
    samples * 125 / 6
}

// ---------------------------------------------------------------------------------------------------

/// One packet of [`OpusTestSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestPacket {
    /// RTP sequence number.
    pub seq: u16,
    /// RTP timestamp (48 kHz).
    pub timestamp: u32,
    /// The Opus payload.
    pub payload: Vec<u8>,
}

/// A synthetic far end for tests and benchmarks: 20 ms Opus packets (in-band FEC on) of a tone, or of
/// PCM the caller gives, with RTP sequence numbers and timestamps.
pub struct OpusTestSource {
    tone: ToneSource,
    encoder: OpusEncoder,
    seq: u16,
    timestamp: u32,
    pcm: Box<[i16; PACKET_SAMPLES]>,
}

impl OpusTestSource {
    /// A tone of `tone_hz` at `level_dbfs` peak, encoded at `bitrate_bps`; the first packet has
    /// sequence number `first_seq` and timestamp `first_timestamp`.
    pub fn new(
        tone_hz: f32,
        level_dbfs: f32,
        bitrate_bps: i32,
        first_seq: u16,
        first_timestamp: u32,
    ) -> Result<Self, MediaError> {
        Ok(Self {
            tone: ToneSource::new(tone_hz, level_dbfs),
            encoder: OpusEncoder::with_options(bitrate_bps, true, false)?,
            seq: first_seq,
            timestamp: first_timestamp,
            pcm: Box::new([0; PACKET_SAMPLES]),
        })
    }

    /// The next 20 ms of the tone as a packet.
    pub fn next_packet(&mut self) -> Result<TestPacket, MediaError> {
        self.tone.next_frame(&mut self.pcm);
        let pcm = *self.pcm;
        self.encode(&pcm)
    }

    /// Encodes 20 ms of the caller's PCM as the next packet.
    pub fn encode(&mut self, pcm: &[i16; PACKET_SAMPLES]) -> Result<TestPacket, MediaError> {
        *self.pcm = *pcm;
        let payload = self.encoder.encode(pcm)?.to_vec();
        let packet = TestPacket { seq: self.seq, timestamp: self.timestamp, payload };
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(PACKET_SAMPLES as u32);
        Ok(packet)
    }

    /// The PCM of the latest packet.
    pub fn last_pcm(&self) -> &[i16; PACKET_SAMPLES] {
        &self.pcm
    }

    /// Skips `packets` packets' worth of sequence numbers and time (a pause in sending, as DTX).
    pub fn skip(&mut self, packets: u16, advance_seq: bool) {
        if advance_seq {
            self.seq = self.seq.wrapping_add(packets);
        }
        self.timestamp = self.timestamp.wrapping_add(u32::from(packets) * PACKET_SAMPLES as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    struct Arrival {
        at: Duration,
        seq: u16,
        ts: u32,
        payload: Vec<u8>,
    }

    fn tone_packets(n: usize, first_seq: u16, first_ts: u32) -> Vec<TestPacket> {
        let mut source = OpusTestSource::new(440.0, -12.0, 32_000, first_seq, first_ts).unwrap();
        (0..n).map(|_| source.next_packet().unwrap()).collect()
    }

    /// Packets whose tone hops frequency every packet (concealment cannot guess the next one).
    fn hopping_packets(n: usize) -> Vec<TestPacket> {
        let mut source = OpusTestSource::new(440.0, -12.0, 32_000, 100, 5_000).unwrap();
        let mut phase = 0.0f64;
        (0..n)
            .map(|k| {
                let f = [300.0, 520.0, 760.0, 410.0, 980.0, 640.0][k % 6];
                let mut pcm = [0i16; PACKET_SAMPLES];
                for s in pcm.iter_mut() {
                    phase += 2.0 * std::f64::consts::PI * f / 48_000.0;
                    *s = (phase.sin() * 8000.0) as i16;
                }
                source.encode(&pcm).unwrap()
            })
            .collect()
    }

    /// Sent at the end of its 20 ms, arriving `network` later.
    fn on_time(packets: &[TestPacket], network: Duration) -> Vec<Arrival> {
        packets
            .iter()
            .enumerate()
            .map(|(k, p)| Arrival {
                at: MS * 20 * (k as u32 + 1) + network,
                seq: p.seq,
                ts: p.timestamp,
                payload: p.payload.clone(),
            })
            .collect()
    }

    /// Plays `frames` frames (the speaker ticking every 10 ms from `start`), pushing each packet once
    /// its arrival time has come. Returns the sources and the concatenated samples.
    fn play(
        p: &mut Playout,
        mut arrivals: Vec<Arrival>,
        start: Duration,
        frames: usize,
    ) -> (Vec<FrameSource>, Vec<i16>) {
        arrivals.sort_by_key(|a| a.at);
        let mut next = 0;
        let mut sources = Vec::new();
        let mut pcm = Vec::new();
        let mut frame = [0i16; AUDIO_FRAME_SAMPLES];
        for j in 0..frames {
            let now = start + MS * 10 * j as u32;
            while next < arrivals.len() && arrivals[next].at <= now {
                let a = &arrivals[next];
                p.push(a.seq, a.ts, &a.payload, a.at);
                next += 1;
            }
            sources.push(p.next_frame(now, &mut frame));
            pcm.extend_from_slice(&frame);
        }
        (sources, pcm)
    }

    fn reference(packets: &[TestPacket]) -> Vec<i16> {
        let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut out = Vec::new();
        let mut buf = [0i16; MAX_PACKET_SAMPLES];
        for p in packets {
            let n = decoder.decode(&p.payload, &mut buf, false).unwrap();
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    fn first_audio(sources: &[FrameSource]) -> usize {
        sources.iter().position(|s| *s != FrameSource::Silence).unwrap()
    }

    fn count(sources: &[FrameSource], kind: FrameSource) -> usize {
        sources.iter().filter(|s| **s == kind).count()
    }

    #[test]
    fn in_order_stream_plays_back_sample_continuous() {
        let packets = tone_packets(100, 1000, 90_000);
        let mut p = Playout::new(PlayoutConfig::default()).unwrap();
        let (sources, pcm) = play(&mut p, on_time(&packets, MS * 5), MS * 3, 230);
        let start = first_audio(&sources);
        let expected = reference(&packets);
        assert_eq!(count(&sources, FrameSource::Decoded), 200, "{:?}", p.stats());
        // Exactly the decoded stream, without a gap, a repeat or a dropped sample.
        assert!(pcm[start * AUDIO_FRAME_SAMPLES..(start + 200) * AUDIO_FRAME_SAMPLES] == expected[..]);
        // And the tone itself is continuous across every frame boundary (after the codec's warm-up).
        let tone = &pcm[(start + 4) * AUDIO_FRAME_SAMPLES..(start + 200) * AUDIO_FRAME_SAMPLES];
        let max_step = tone.windows(2).map(|w| (i32::from(w[1]) - i32::from(w[0])).abs()).max().unwrap();
        assert!(max_step < 800, "discontinuity of {max_step}");
        let stats = p.stats();
        // The only concealment is after the stream ended.
        assert!(sources[start..start + 200].iter().all(|s| *s == FrameSource::Decoded));
        assert_eq!(stats.concealed, u64::from(CONCEAL_FRAMES), "{stats:?}");
        assert_eq!((stats.late_dropped, stats.fec_recovered, stats.frames_dropped), (0, 0, 0), "{stats:?}");
        assert_eq!(stats.target_delay_ms, 20);
        // Playback starts one target delay after the first packet arrived (25 ms), at the next tick.
        assert_eq!(start, 5, "first audio frame");
    }

    #[test]
    fn a_single_lost_packet_is_recovered_by_fec() {
        let packets = hopping_packets(60);
        let mut arrivals = on_time(&packets, MS * 5);
        arrivals.remove(30);
        let mut p = Playout::new(PlayoutConfig::default()).unwrap();
        let (sources, pcm) = play(&mut p, arrivals, MS * 3, 140);
        let stats = p.stats();
        assert_eq!(stats.fec_recovered, 2, "{stats:?}");
        assert_eq!(stats.concealed, u64::from(CONCEAL_FRAMES), "only after the stream: {stats:?}");
        assert_eq!(stats.decoded, 118, "{stats:?}");

        // Bit-exact with a decoder that took packet 30 from packet 31's FEC data.
        let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut expected = Vec::new();
        let mut buf = [0i16; MAX_PACKET_SAMPLES];
        for (k, packet) in packets.iter().enumerate() {
            if k == 30 {
                let n = decoder.decode(&packets[31].payload, &mut buf[..PACKET_SAMPLES], true).unwrap();
                expected.extend_from_slice(&buf[..n]);
                continue;
            }
            let n = decoder.decode(&packet.payload, &mut buf, false).unwrap();
            expected.extend_from_slice(&buf[..n]);
        }
        let start = first_audio(&sources) * AUDIO_FRAME_SAMPLES;
        assert!(pcm[start..start + expected.len()] == expected[..]);

        // The recovered 20 ms resemble what was sent far better than concealment would.
        let lossless = reference(&packets);
        let mut plc = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut concealed = Vec::new();
        for (k, packet) in packets.iter().enumerate().take(31) {
            let n = if k == 30 {
                plc.decode(&[], &mut buf[..PACKET_SAMPLES], false).unwrap()
            } else {
                plc.decode(&packet.payload, &mut buf, false).unwrap()
            };
            concealed.extend_from_slice(&buf[..n]);
        }
        let range = 30 * PACKET_SAMPLES..31 * PACKET_SAMPLES;
        let snr_fec = snr_db(&lossless[range.clone()], &expected[range.clone()]);
        let snr_plc = snr_db(&lossless[range.clone()], &concealed[range]);
        assert!(snr_fec > snr_plc + 3.0, "FEC {snr_fec:.1} dB vs PLC {snr_plc:.1} dB");
    }

    fn snr_db(reference: &[i16], test: &[i16]) -> f64 {
        let signal: f64 = reference.iter().map(|&s| f64::from(s).powi(2)).sum();
        let noise: f64 = reference.iter().zip(test).map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2)).sum();
        10.0 * (signal / noise.max(1.0)).log10()
    }

    fn rms(pcm: &[i16]) -> f64 {
        (pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt()
    }

    #[test]
    fn a_burst_loss_is_concealed_faded_and_recovered() {
        let packets = tone_packets(80, 7, 0);
        let mut arrivals = on_time(&packets, MS * 5);
        arrivals.drain(30..35); // 100 ms lost
        let mut p = Playout::new(PlayoutConfig::default()).unwrap();
        let (sources, pcm) = play(&mut p, arrivals, MS * 3, 180);
        let start = first_audio(&sources);
        let burst = &sources[start + 60..start + 70];
        let stats = p.stats();
        assert_eq!(stats.concealed, 2 * u64::from(CONCEAL_FRAMES), "burst and end: {burst:?} {stats:?}");
        assert_eq!(burst[..CONCEAL_FRAMES as usize], [FrameSource::Concealed; CONCEAL_FRAMES as usize]);
        // After the concealment, silence; then the last lost packet comes back from FEC.
        assert!(burst.contains(&FrameSource::Silence), "{burst:?}");
        assert_eq!(&burst[8..], &[FrameSource::FecRecovered; 2], "{burst:?}");
        // The concealment fades: its last frame is much quieter than its first.
        let frame = |j: usize| &pcm[(start + j) * AUDIO_FRAME_SAMPLES..(start + j + 1) * AUDIO_FRAME_SAMPLES];
        assert!(rms(frame(65)) < rms(frame(60)) * 0.5, "{} vs {}", rms(frame(65)), rms(frame(60)));
        assert_eq!(rms(frame(66)), 0.0);
        // Then decoding resumes at full level.
        assert!(sources[start + 70..start + 160].iter().all(|s| *s == FrameSource::Decoded), "{sources:?}");
        assert!(rms(frame(100)) > 4000.0, "{}", rms(frame(100)));
    }

    #[test]
    fn reordering_within_the_delay_is_put_right() {
        let packets = tone_packets(100, 65_000, 1);
        let mut arrivals = on_time(&packets, MS * 5);
        // Every other pair arrives swapped, the first one 15 ms late.
        for k in (0..100).step_by(4) {
            arrivals[k].at += MS * 25;
        }
        let config = PlayoutConfig { min_delay: MS * 40, ..PlayoutConfig::default() };
        let mut p = Playout::new(config).unwrap();
        let (sources, pcm) = play(&mut p, arrivals, MS * 3, 240);
        let start = first_audio(&sources) * AUDIO_FRAME_SAMPLES;
        let expected = reference(&packets);
        assert!(pcm[start..start + expected.len()] == expected[..], "{:?}", p.stats());
        let stats = p.stats();
        assert_eq!((stats.late_dropped, stats.decoded), (0, 200), "{stats:?}");
        assert_eq!(stats.concealed, u64::from(CONCEAL_FRAMES), "only after the stream: {stats:?}");
    }

    #[test]
    fn duplicates_are_ignored() {
        let packets = tone_packets(60, 10, 10);
        let mut arrivals = on_time(&packets, MS * 5);
        let copies: Vec<Arrival> = arrivals
            .iter()
            .map(|a| Arrival { at: a.at + MS * 2, seq: a.seq, ts: a.ts, payload: a.payload.clone() })
            .collect();
        // And once more long after they were played.
        let stale: Vec<Arrival> = arrivals
            .iter()
            .take(10)
            .map(|a| Arrival { at: MS * 1000, seq: a.seq, ts: a.ts, payload: a.payload.clone() })
            .collect();
        arrivals.extend(copies);
        arrivals.extend(stale);
        let mut p = Playout::new(PlayoutConfig::default()).unwrap();
        let (sources, pcm) = play(&mut p, arrivals, MS * 3, 140);
        let start = first_audio(&sources) * AUDIO_FRAME_SAMPLES;
        let expected = reference(&packets);
        assert!(pcm[start..start + expected.len()] == expected[..]);
        let stats = p.stats();
        assert_eq!(stats.duplicates, 70, "{stats:?}");
        assert_eq!((stats.decoded, stats.late_dropped), (120, 0), "{stats:?}");
        assert_eq!(stats.concealed, u64::from(CONCEAL_FRAMES), "only after the stream: {stats:?}");
    }

    /// A deterministic generator for the tests' jitter and garbage.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
    }

    #[test]
    fn jitter_raises_the_target_delay_and_it_comes_down_again() {
        let packets = tone_packets(600, 0, 0); // 12 s
        let mut arrivals = on_time(&packets, MS * 5);
        let mut rng = Lcg(42);
        // 60 ms of jitter (uniform) during the first 4 s.
        for a in arrivals.iter_mut().take(200) {
            a.at += Duration::from_micros(rng.next() % 60_000);
        }
        let mut p = Playout::new(PlayoutConfig::default()).unwrap();
        let jittery: Vec<Arrival> = arrivals.into_iter().filter(|a| a.at < MS * 4000).collect();
        let (_, _) = play(&mut p, jittery, MS * 3, 400);
        let during = p.stats();
        println!("during jitter: {during:?}");
        assert!(during.target_delay_ms >= 50, "{during:?}");
        assert!(during.playout_delay_ms >= 45, "{during:?}");
        // Once the delay has grown, few packets miss their time.
        assert!(during.late_dropped <= 20, "{during:?}");

        let rest: Vec<Arrival> =
            on_time(&packets, MS * 5).into_iter().skip(200).filter(|a| a.at >= MS * 4000).collect();
        let (sources, _) = play(&mut p, rest, MS * 4003, 790);
        let after = p.stats();
        println!("after: {after:?}");
        assert!(after.target_delay_ms <= 25, "{after:?}");
        assert!(
            after.playout_delay_ms <= after.target_delay_ms + u32::try_from(SHRINK_HYSTERESIS.as_millis()).unwrap(),
            "{after:?}"
        );
        // The delay came down by dropping frames, at most one per SHRINK_INTERVAL in this tone.
        let dropped_after = after.frames_dropped - during.frames_dropped;
        assert!(dropped_after >= 2, "{after:?}");
        assert!(dropped_after <= 790 / u64::from(SHRINK_INTERVAL) + 1, "{after:?}");
        assert!(count(&sources, FrameSource::Decoded) >= 760, "{after:?}");
    }

    #[test]
    fn a_stopped_stream_is_concealed_then_silent_and_resumes() {
        let mut source = OpusTestSource::new(440.0, -12.0, 32_000, 500, 0).unwrap();
        let first: Vec<TestPacket> = (0..50).map(|_| source.next_packet().unwrap()).collect();
        source.skip(100, false); // 2 s of DTX: time moves on, sequence numbers do not
        let second: Vec<TestPacket> = (0..50).map(|_| source.next_packet().unwrap()).collect();
        let mut arrivals = on_time(&first, MS * 5);
        arrivals.extend(on_time(&second, MS * 5).into_iter().map(|mut a| {
            a.at += MS * 3000;
            a
        }));
        let mut p = Playout::new(PlayoutConfig::default()).unwrap();
        let (sources, pcm) = play(&mut p, arrivals, MS * 3, 450);
        let start = first_audio(&sources);
        let gap = &sources[start + 100..start + 100 + CONCEAL_FRAMES as usize + 10];
        assert!(gap[..CONCEAL_FRAMES as usize].iter().all(|s| *s == FrameSource::Concealed), "{gap:?}");
        assert!(gap[CONCEAL_FRAMES as usize..].iter().all(|s| *s == FrameSource::Silence), "{gap:?}");
        let silent =
            &pcm[(start + 100 + CONCEAL_FRAMES as usize) * AUDIO_FRAME_SAMPLES..(start + 290) * AUDIO_FRAME_SAMPLES];
        assert!(silent.iter().all(|&s| s == 0));
        let stats = p.stats();
        assert_eq!(stats.decoded, 200, "{stats:?}");
        assert_eq!((stats.late_dropped, stats.resyncs, stats.fec_recovered), (0, 0, 0), "{stats:?}");
    }

    #[test]
    fn a_far_end_that_restarts_its_timestamps_is_followed() {
        let mut packets = tone_packets(50, 100, 1_000_000);
        packets.extend(tone_packets(100, 150, 7)); // timestamps start over
        let mut p = Playout::new(PlayoutConfig::default()).unwrap();
        let (sources, _) = play(&mut p, on_time(&packets, MS * 5), MS * 3, 320);
        let stats = p.stats();
        assert_eq!(stats.resyncs, 1, "{stats:?}");
        assert!(stats.decoded >= 100 + 2 * (100 - u64::from(RESYNC_AFTER)) - 4, "{stats:?}");
        assert!(sources[200..290].iter().all(|s| *s == FrameSource::Decoded), "{stats:?}");
    }

    #[test]
    fn garbage_and_wraparound_do_not_panic() {
        // Sequence numbers wrap (65535 -> 0) and so do timestamps.
        let packets = tone_packets(100, 65_500, u32::MAX - 20_000);
        let mut arrivals = on_time(&packets, MS * 5);
        let mut rng = Lcg(7);
        for k in 0..600 {
            let len = match k % 5 {
                0 => 0,
                1 => 1,
                2 => (rng.next() % 200) as usize,
                3 => 1600,
                _ => (rng.next() % 1500) as usize,
            };
            let mut payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if k % 7 == 0 && !payload.is_empty() {
                payload[0] = 0x78; // a valid 20 ms TOC before junk
            }
            arrivals.push(Arrival {
                at: Duration::from_micros(100_000 + rng.next() % 2_400_000),
                seq: rng.next() as u16,
                ts: rng.next() as u32,
                payload,
            });
        }
        let mut p = Playout::new(PlayoutConfig::default()).unwrap();
        let (sources, _) = play(&mut p, arrivals, MS * 3, 260);
        let stats = p.stats();
        assert!(stats.invalid > 100, "{stats:?}");
        assert!(count(&sources, FrameSource::Decoded) >= 190, "{stats:?}");
        assert_eq!(stats.resyncs, 0, "{stats:?}");

        // A stray packet before the stream: the buffer starts on it, then follows the real stream.
        let mut arrivals = on_time(&packets, MS * 5);
        arrivals.push(Arrival { at: MS, seq: 12_345, ts: 3_000_000_000, payload: packets[0].payload.clone() });
        let mut p = Playout::new(PlayoutConfig::default()).unwrap();
        let (sources, _) = play(&mut p, arrivals, MS * 3, 260);
        let stats = p.stats();
        assert_eq!(stats.resyncs, 1, "{stats:?}");
        assert!(count(&sources, FrameSource::Decoded) >= 2 * (100 - RESYNC_FAR_AFTER as usize), "{stats:?}");

        // Pathological times and values.
        let mut p = Playout::new(PlayoutConfig { capacity: 4, ..PlayoutConfig::default() }).unwrap();
        let mut frame = [0i16; AUDIO_FRAME_SAMPLES];
        for (i, packet) in tone_packets(10, 0, 0).iter().enumerate() {
            p.push(packet.seq, packet.timestamp, &packet.payload, Duration::MAX);
            p.push(u16::MAX - i as u16, u32::MAX, &packet.payload, Duration::ZERO);
            p.next_frame(Duration::ZERO, &mut frame);
            p.next_frame(Duration::MAX, &mut frame);
        }
        let _ = p.stats();
    }

    #[test]
    fn the_capacity_bound_holds_under_a_flood() {
        let config = PlayoutConfig { capacity: 16, ..PlayoutConfig::default() };
        let mut p = Playout::new(config).unwrap();
        let packets = tone_packets(40, 0, 0);
        for round in 0..250u32 {
            for packet in &packets {
                p.push(packet.seq, packet.timestamp, &packet.payload, MS * (20 + round));
            }
        }
        assert_eq!(p.slots.len(), 16);
        assert_eq!(p.slots.iter().filter(|s| s.used).count(), 16);
        let stats = p.stats();
        assert_eq!(stats.overflow_dropped, 250 * 24, "{stats:?}");
        assert_eq!(stats.duplicates, 249 * 16, "{stats:?}");
        // The earliest packets were kept, and play.
        assert!(p.slots.iter().filter(|s| s.used).all(|s| s.seq - p.last_seq <= 16));
        let (sources, _) = play(&mut p, Vec::new(), MS * 60, 40);
        assert!(count(&sources, FrameSource::Decoded) >= 16, "{:?}", p.stats());
    }

    #[test]
    fn other_packet_durations_play_continuously() {
        for ms in [10usize, 60] {
            let samples = ms * 48;
            let mut encoder = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
            let mut tone = ToneSource::new(300.0, -12.0);
            let mut pcm = Vec::new();
            let mut chunk = [0i16; FRAME_SAMPLES];
            while pcm.len() < samples * 60 {
                tone.next_frame(&mut chunk);
                pcm.extend_from_slice(&chunk);
            }
            let packets: Vec<TestPacket> = (0..60)
                .map(|k| TestPacket {
                    seq: k as u16,
                    timestamp: (k * samples) as u32,
                    payload: encoder.encode_vec(&pcm[k * samples..(k + 1) * samples], 1500).unwrap(),
                })
                .collect();
            let arrivals = packets
                .iter()
                .enumerate()
                .map(|(k, p)| Arrival {
                    at: MS * ((k + 1) * ms) as u32 + MS * 5,
                    seq: p.seq,
                    ts: p.timestamp,
                    payload: p.payload.clone(),
                })
                .collect();
            let mut p = Playout::new(PlayoutConfig::default()).unwrap();
            let frames = 60 * ms / 10;
            let (sources, out) = play(&mut p, arrivals, MS * 3, frames + 20);
            let start = first_audio(&sources) * AUDIO_FRAME_SAMPLES;
            let expected = reference(&packets);
            assert!(out[start..start + expected.len()] == expected[..], "{ms} ms: {:?}", p.stats());
            assert_eq!(p.stats().concealed, u64::from(CONCEAL_FRAMES), "{ms} ms: {:?}", p.stats());
        }
    }

    #[test]
    fn bad_configurations_are_refused() {
        for config in [
            PlayoutConfig { capacity: 0, ..PlayoutConfig::default() },
            PlayoutConfig { capacity: MAX_CAPACITY + 1, ..PlayoutConfig::default() },
            PlayoutConfig { min_delay: MS * 300, ..PlayoutConfig::default() },
        ] {
            assert!(matches!(Playout::new(config), Err(MediaError::Config(_))));
        }
    }
}

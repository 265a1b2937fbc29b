//! The simulated audio backend: tone (or sample-loop, or tone-burst) microphones and capturing speakers whose
//! last seconds of output are readable through a [`SimSpeakerTap`], both paced at real time by a
//! [`FramePacer`] (10 ms per frame against a monotonic deadline, no drift). Devices can be added and
//! removed at run time (hot-plug tests) and marked gone (their open handles return
//! [`DeviceError::Gone`]). For the mouth-to-ear latency benchmark, a microphone records when each of its
//! tone bursts started ([`SimAudioBackend::burst_onsets`]) and a speaker when it played each sample
//! ([`SimSpeakerTap::played_at`]); both in bounded rings.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{AudioBackend, AudioCapture, AudioDeviceInfo, AudioPlayback, FramePacer};
use crate::devices::{AudioFrame, DeviceError, DeviceKind, AUDIO_FRAME_SAMPLES, SAMPLE_RATE};

/// Id of the microphone a [`SimAudioBackend::new`] backend starts with (a 440 Hz tone at -20 dBFS).
pub const DEFAULT_MICROPHONE_ID: &str = "sim:tone";
/// Id of the speaker a [`SimAudioBackend::new`] backend starts with.
pub const DEFAULT_SPEAKER_ID: &str = "sim:speaker";
/// How much a speaker added by [`SimAudioBackend::new`] keeps.
pub const DEFAULT_SPEAKER_KEEP: Duration = Duration::from_secs(10);
/// Most a speaker tap keeps, whatever is asked.
pub const MAX_SPEAKER_KEEP: Duration = Duration::from_secs(120);
/// Most devices one simulated backend holds.
pub const MAX_DEVICES: usize = 32;
/// Longest sample loop a microphone takes (60 s); longer buffers are cut.
pub const MAX_LOOP_SAMPLES: usize = 60 * SAMPLE_RATE as usize;
/// Burst onsets a microphone remembers (the oldest fall out).
pub const MAX_BURST_ONSETS: usize = 256;

/// A microphone's burst onsets, shared by the backend and the handles opened on it.
type OnsetLog = Arc<Mutex<heapless::HistoryBuf<Instant, MAX_BURST_ONSETS>>>;

/// What a simulated microphone hears.
#[derive(Debug, Clone, PartialEq)]
pub enum SimSource {
    /// A sine tone: frequency in Hz (0..24 000), peak level in dBFS (0 = full scale).
    Tone {
        /// Frequency in Hz.
        frequency_hz: f32,
        /// Peak level in dBFS.
        level_dbfs: f32,
    },
    /// These samples (48 kHz mono), played in a loop; an empty buffer is silence.
    Samples(Arc<[i16]>),
    /// Digital silence.
    Silence,
    /// Silence with a sine burst every `period`, `length` long, each starting at the first sample of a
    /// 10 ms frame with phase zero (a sharp onset); the first burst starts with the first frame. Periods
    /// and lengths are rounded to whole frames (a period of at least 2 frames, a length of at least 1 and
    /// less than the period). When each burst started is kept ([`SimAudioBackend::burst_onsets`]).
    Bursts {
        /// Frequency in Hz.
        frequency_hz: f32,
        /// Peak level in dBFS.
        level_dbfs: f32,
        /// From one onset to the next.
        period: Duration,
        /// How long each burst lasts.
        length: Duration,
    },
}

/// Reads back what a simulated speaker played: the last N seconds (a bounded ring; older samples fall
/// out). Cheap to clone; clones and every handle opened on the speaker share the ring.
#[derive(Debug, Clone)]
pub struct SimSpeakerTap {
    ring: Arc<Mutex<Ring>>,
}

#[derive(Debug)]
struct Ring {
    samples: VecDeque<i16>,
    capacity: usize,
    written: u64,
    /// When each frame still held began to play: (index of its first sample, instant), oldest first.
    played: VecDeque<(u64, Instant)>,
}

impl SimSpeakerTap {
    /// A tap keeping the last `keep` (capped at [`MAX_SPEAKER_KEEP`], at least one frame).
    pub fn new(keep: Duration) -> Self {
        let keep = keep.min(MAX_SPEAKER_KEEP);
        let capacity = ((keep.as_micros() * u128::from(SAMPLE_RATE) / 1_000_000) as usize).max(AUDIO_FRAME_SAMPLES);
        let frames = capacity.div_ceil(AUDIO_FRAME_SAMPLES) + 1;
        SimSpeakerTap {
            ring: Arc::new(Mutex::new(Ring {
                samples: VecDeque::with_capacity(capacity),
                capacity,
                written: 0,
                played: VecDeque::with_capacity(frames),
            })),
        }
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        // Poisoned only if a holder panicked mid-copy of samples: the ring is still usable.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes and returns what the ring holds, oldest first.
    pub fn take_samples(&self) -> Vec<i16> {
        self.ring().samples.drain(..).collect()
    }

    /// Removes and returns what the ring holds, oldest first, with the index of its first sample among all
    /// samples ever written (for [`SimSpeakerTap::played_at`]).
    pub fn take_samples_indexed(&self) -> (u64, Vec<i16>) {
        let mut ring = self.ring();
        let first = ring.written - ring.samples.len() as u64;
        (first, ring.samples.drain(..).collect())
    }

    /// When the sample of index `index` (counted over all samples ever written) began to play: the instant
    /// its frame was handed to the speaker plus its offset in the frame. `None` for a sample not written yet
    /// or whose frame fell out of the ring.
    pub fn played_at(&self, index: u64) -> Option<Instant> {
        let ring = self.ring();
        let pos = ring.played.partition_point(|(first, _)| *first <= index);
        let (first, at) = *ring.played.get(pos.checked_sub(1)?)?;
        let offset = index - first;
        (offset < AUDIO_FRAME_SAMPLES as u64)
            .then(|| at + Duration::from_nanos(offset * 1_000_000_000 / u64::from(SAMPLE_RATE)))
    }

    /// Samples held now.
    pub fn len(&self) -> usize {
        self.ring().samples.len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most samples the ring holds.
    pub fn capacity(&self) -> usize {
        self.ring().capacity
    }

    /// Samples ever written, including those that fell out of the ring or were taken.
    pub fn total_written(&self) -> u64 {
        self.ring().written
    }

    /// Empties the ring.
    pub fn clear(&self) {
        self.ring().samples.clear();
    }

    fn push(&self, frame: &AudioFrame) {
        let now = Instant::now();
        let mut ring = self.ring();
        let frames = ring.capacity.div_ceil(AUDIO_FRAME_SAMPLES) + 1;
        if ring.played.len() >= frames {
            ring.played.pop_front();
        }
        let first = ring.written;
        ring.played.push_back((first, now));
        let overflow = (ring.samples.len() + frame.len()).saturating_sub(ring.capacity);
        let held = ring.samples.len();
        ring.samples.drain(..overflow.min(held));
        let skip = frame.len().saturating_sub(ring.capacity);
        ring.samples.extend(frame[skip..].iter().copied());
        ring.written += frame.len() as u64;
    }
}

/// One simulated device.
#[derive(Debug)]
struct SimDevice {
    info: AudioDeviceInfo,
    /// Microphones: what they hear.
    source: SimSource,
    /// Speakers: where what they play goes.
    tap: Option<SimSpeakerTap>,
    /// Shared with the handles opened since the last [`SimAudioBackend::mark_gone`]; set → they are gone.
    gone: Arc<AtomicBool>,
    /// Microphones: when their bursts ([`SimSource::Bursts`]) started.
    onsets: OnsetLog,
}

/// Simulated microphones and speakers. Cheap to clone; clones share the same devices.
#[derive(Debug, Clone)]
pub struct SimAudioBackend {
    devices: Arc<Mutex<Vec<SimDevice>>>,
}

impl Default for SimAudioBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl SimAudioBackend {
    /// A backend with [`DEFAULT_MICROPHONE_ID`] (440 Hz at -20 dBFS) and [`DEFAULT_SPEAKER_ID`] (keeping
    /// [`DEFAULT_SPEAKER_KEEP`]).
    pub fn new() -> Self {
        let backend = Self::empty();
        backend.add_microphone(
            DEFAULT_MICROPHONE_ID,
            "Simulated microphone (440 Hz tone)",
            SimSource::Tone { frequency_hz: 440.0, level_dbfs: -20.0 },
        );
        backend.add_speaker(DEFAULT_SPEAKER_ID, "Simulated speaker", DEFAULT_SPEAKER_KEEP);
        backend
    }

    /// A backend without devices.
    pub fn empty() -> Self {
        SimAudioBackend { devices: Arc::new(Mutex::new(Vec::new())) }
    }

    fn devices(&self) -> MutexGuard<'_, Vec<SimDevice>> {
        self.devices.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, kind: DeviceKind, id: &str, name: &str, source: SimSource, tap: Option<SimSpeakerTap>) -> bool {
        let mut devices = self.devices();
        if devices.len() >= MAX_DEVICES || devices.iter().any(|d| d.info.kind == kind && d.info.id == id) {
            return false;
        }
        let info = AudioDeviceInfo { kind, id: id.to_string(), name: name.to_string(), node: None };
        let onsets = Arc::new(Mutex::new(heapless::HistoryBuf::new()));
        devices.push(SimDevice { info, source, tap, gone: Arc::new(AtomicBool::new(false)), onsets });
        log::debug!("sim {} {id} ({name}) plugged in", kind.as_str());
        true
    }

    /// Plugs in a microphone hearing `source`. `false` (nothing changes) when a microphone `id` exists or
    /// the backend holds [`MAX_DEVICES`].
    pub fn add_microphone(&self, id: &str, name: &str, source: SimSource) -> bool {
        let source = match source {
            SimSource::Samples(s) if s.len() > MAX_LOOP_SAMPLES => SimSource::Samples(s[..MAX_LOOP_SAMPLES].into()),
            other => other,
        };
        self.add(DeviceKind::Microphone, id, name, source, None)
    }

    /// Plugs in a speaker keeping the last `keep` of what it plays; returns its tap (`None`, nothing
    /// changed, when a speaker `id` exists or the backend holds [`MAX_DEVICES`]).
    pub fn add_speaker(&self, id: &str, name: &str, keep: Duration) -> Option<SimSpeakerTap> {
        let tap = SimSpeakerTap::new(keep);
        self.add(DeviceKind::Speaker, id, name, SimSource::Silence, Some(tap.clone())).then_some(tap)
    }

    /// The tap of speaker `id`.
    pub fn speaker_tap(&self, id: &str) -> Option<SimSpeakerTap> {
        self.devices()
            .iter()
            .find(|d| d.info.kind == DeviceKind::Speaker && d.info.id == id)
            .and_then(|d| d.tap.clone())
    }

    /// When the bursts of microphone `id` ([`SimSource::Bursts`]) started, oldest first: the instant the first
    /// sample of each burst was "captured" (the start of its 10 ms frame), across all its handles; the last
    /// [`MAX_BURST_ONSETS`]. `None` when there is no such microphone.
    pub fn burst_onsets(&self, id: &str) -> Option<Vec<Instant>> {
        let devices = self.devices();
        let mic = devices.iter().find(|d| d.info.kind == DeviceKind::Microphone && d.info.id == id)?;
        let log = mic.onsets.lock().unwrap_or_else(|e| e.into_inner());
        Some(log.oldest_ordered().copied().collect())
    }

    /// Unplugs every device named `id` (microphone and speaker): they leave the list and their open
    /// handles return [`DeviceError::Gone`]. `false` when there was none.
    pub fn remove_device(&self, id: &str) -> bool {
        let mut devices = self.devices();
        let before = devices.len();
        devices.retain(|d| {
            if d.info.id != id {
                return true;
            }
            d.gone.store(true, Ordering::Release);
            log::info!("sim {} {id} unplugged", d.info.kind.as_str());
            false
        });
        devices.len() != before
    }

    /// Makes the open handles of every device named `id` return [`DeviceError::Gone`] (a driver reset),
    /// while the device stays listed: opening it again gives a working handle. `false` when there is none.
    pub fn mark_gone(&self, id: &str) -> bool {
        let mut found = false;
        for d in self.devices().iter_mut().filter(|d| d.info.id == id) {
            d.gone.store(true, Ordering::Release);
            d.gone = Arc::new(AtomicBool::new(false));
            log::info!("sim {} {id}: open handles marked gone", d.info.kind.as_str());
            found = true;
        }
        found
    }

    /// Finds a device and hands out what a new handle needs.
    fn lookup(
        &self,
        kind: DeviceKind,
        id: &str,
    ) -> Result<(SimSource, Option<SimSpeakerTap>, Arc<AtomicBool>, OnsetLog), DeviceError> {
        self.devices()
            .iter()
            .find(|d| d.info.kind == kind && d.info.id == id)
            .map(|d| (d.source.clone(), d.tap.clone(), d.gone.clone(), d.onsets.clone()))
            .ok_or_else(|| DeviceError::NotFound { kind: kind.as_str(), name: id.to_string() })
    }
}

impl AudioBackend for SimAudioBackend {
    fn list(&self) -> Vec<AudioDeviceInfo> {
        self.devices().iter().map(|d| d.info.clone()).collect()
    }

    fn open_capture(&self, id: &str) -> Result<Box<dyn AudioCapture>, DeviceError> {
        let (source, _, gone, onsets) = self.lookup(DeviceKind::Microphone, id)?;
        log::info!("sim microphone {id} opened: {SAMPLE_RATE} Hz, 10 ms frames");
        Ok(Box::new(SimCapture { id: id.to_string(), generator: Generator::new(source), pacer: None, gone, onsets }))
    }

    fn open_playback(&self, id: &str) -> Result<Box<dyn AudioPlayback>, DeviceError> {
        let (_, tap, gone, _) = self.lookup(DeviceKind::Speaker, id)?;
        let tap = tap.ok_or_else(|| DeviceError::NotFound { kind: "speaker", name: id.to_string() })?;
        log::info!("sim speaker {id} opened: {SAMPLE_RATE} Hz, 10 ms frames");
        Ok(Box::new(SimPlayback { id: id.to_string(), tap, pacer: None, gone }))
    }
}

fn gone_error(id: &str) -> DeviceError {
    DeviceError::Gone { device: id.to_string(), reason: "simulated device removed".to_string() }
}

/// Produces a microphone's samples.
#[derive(Debug)]
enum Generator {
    Tone {
        amplitude: f64,
        step: f64,
        phase: f64,
    },
    Samples {
        samples: Arc<[i16]>,
        pos: usize,
    },
    Silence,
    /// `length` frames of tone every `period` frames; `frame` counts the frames produced.
    Bursts {
        amplitude: f64,
        step: f64,
        phase: f64,
        period: u64,
        length: u64,
        frame: u64,
    },
}

/// Amplitude and phase step of a sine at `frequency_hz` and `level_dbfs` (clamped to what is meaningful).
fn sine(frequency_hz: f32, level_dbfs: f32) -> (f64, f64) {
    let f = if frequency_hz.is_finite() { f64::from(frequency_hz).clamp(0.0, 24_000.0) } else { 0.0 };
    let level = if level_dbfs.is_finite() { f64::from(level_dbfs).min(0.0) } else { f64::NEG_INFINITY };
    (32_767.0 * 10f64.powf(level / 20.0), 2.0 * std::f64::consts::PI * f / f64::from(SAMPLE_RATE))
}

fn fill_sine(frame: &mut AudioFrame, amplitude: f64, step: f64, phase: &mut f64) {
    for s in frame.iter_mut() {
        *s = (amplitude * phase.sin()).round().clamp(-32_768.0, 32_767.0) as i16;
        *phase = (*phase + step) % (2.0 * std::f64::consts::PI);
    }
}

impl Generator {
    fn new(source: SimSource) -> Self {
        match source {
            SimSource::Tone { frequency_hz, level_dbfs } => {
                let (amplitude, step) = sine(frequency_hz, level_dbfs);
                Generator::Tone { amplitude, step, phase: 0.0 }
            }
            SimSource::Bursts { frequency_hz, level_dbfs, period, length } => {
                let (amplitude, step) = sine(frequency_hz, level_dbfs);
                let frames = |d: Duration| u64::try_from(d.as_millis().div_ceil(10)).unwrap_or(u64::MAX);
                let period = frames(period).max(2);
                let length = frames(length).clamp(1, period - 1);
                Generator::Bursts { amplitude, step, phase: 0.0, period, length, frame: 0 }
            }
            SimSource::Samples(samples) if !samples.is_empty() => Generator::Samples { samples, pos: 0 },
            SimSource::Samples(_) | SimSource::Silence => Generator::Silence,
        }
    }

    /// Fills the next frame; `true` when a burst starts with it.
    fn fill(&mut self, frame: &mut AudioFrame) -> bool {
        match self {
            Generator::Tone { amplitude, step, phase } => fill_sine(frame, *amplitude, *step, phase),
            Generator::Bursts { amplitude, step, phase, period, length, frame: n } => {
                let at = *n % *period;
                *n += 1;
                if at == 0 {
                    *phase = 0.0;
                }
                if at < *length {
                    fill_sine(frame, *amplitude, *step, phase);
                } else {
                    frame.fill(0);
                }
                return at == 0;
            }
            Generator::Samples { samples, pos } => {
                for s in frame.iter_mut() {
                    *s = samples.get(*pos).copied().unwrap_or(0);
                    *pos = (*pos + 1) % samples.len();
                }
            }
            Generator::Silence => frame.fill(0),
        }
        false
    }
}

/// An open simulated microphone.
struct SimCapture {
    id: String,
    generator: Generator,
    pacer: Option<FramePacer>,
    gone: Arc<AtomicBool>,
    onsets: OnsetLog,
}

impl AudioCapture for SimCapture {
    fn read(&mut self, frame: &mut AudioFrame) -> Result<(), DeviceError> {
        if self.gone.load(Ordering::Acquire) {
            return Err(gone_error(&self.id));
        }
        // A frame is there once its 10 ms have been "captured".
        let pacer = self.pacer.get_or_insert_with(FramePacer::new);
        pacer.wait_next();
        if self.gone.load(Ordering::Acquire) {
            return Err(gone_error(&self.id));
        }
        if self.generator.fill(frame) {
            // Its first sample entered the microphone a frame before the frame was complete.
            let now = Instant::now();
            let end = pacer.last_due().map_or(now, |due| due.min(now));
            let onset = end.checked_sub(Duration::from_millis(10)).unwrap_or(end);
            self.onsets.lock().unwrap_or_else(|e| e.into_inner()).write(onset);
        }
        Ok(())
    }

    fn id(&self) -> &str {
        &self.id
    }
}

/// An open simulated speaker.
struct SimPlayback {
    id: String,
    tap: SimSpeakerTap,
    pacer: Option<FramePacer>,
    gone: Arc<AtomicBool>,
}

impl AudioPlayback for SimPlayback {
    fn write(&mut self, frame: &AudioFrame) -> Result<(), DeviceError> {
        if self.gone.load(Ordering::Acquire) {
            return Err(gone_error(&self.id));
        }
        self.tap.push(frame);
        // The frame takes its 10 ms to play.
        self.pacer.get_or_insert_with(FramePacer::new).wait_next();
        Ok(())
    }

    /// The simulated speaker plays what it is given at once: nothing is queued.
    fn delay_samples(&mut self) -> Option<u32> {
        Some(0)
    }

    fn id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_microphone_has_its_frequency_and_level() {
        let b = SimAudioBackend::empty();
        assert!(b.add_microphone("m", "mic", SimSource::Tone { frequency_hz: 1000.0, level_dbfs: -12.0 }));
        let mut mic = b.open_capture("m").unwrap();
        let mut all = Vec::new();
        let mut frame = [0i16; AUDIO_FRAME_SAMPLES];
        for _ in 0..10 {
            mic.read(&mut frame).unwrap();
            all.extend_from_slice(&frame);
        }
        let peak = all.iter().map(|s| i32::from(*s).abs()).max().unwrap();
        let expected = 32_767.0 * 10f64.powf(-12.0 / 20.0);
        assert!((f64::from(peak) - expected).abs() < 0.01 * expected, "peak {peak}, expected {expected:.0}");
        let on = super::super::tone_power(&all, 1000.0);
        let off = super::super::tone_power(&all, 1300.0);
        assert!(on > 1000.0 * off, "1 kHz {on}, 1.3 kHz {off}");
    }

    #[test]
    fn burst_microphone_records_its_onsets_and_a_speaker_when_it_played_them() {
        let b = SimAudioBackend::empty();
        let bursts = SimSource::Bursts {
            frequency_hz: 1000.0,
            level_dbfs: -20.0,
            period: Duration::from_millis(100),
            length: Duration::from_millis(30),
        };
        assert!(b.add_microphone("m", "bursts", bursts));
        let tap = b.add_speaker("s", "speaker", Duration::from_secs(2)).unwrap();
        let mut mic = b.open_capture("m").unwrap();
        let mut spk = b.open_playback("s").unwrap();
        let mut frame = [0i16; AUDIO_FRAME_SAMPLES];
        // Mouth straight to ear: each captured frame played at once.
        for n in 0..50 {
            mic.read(&mut frame).unwrap();
            let loud = frame.iter().any(|&s| s != 0);
            assert_eq!(loud, n % 10 < 3, "frame {n}");
            spk.write(&frame).unwrap();
        }
        let onsets = b.burst_onsets("m").unwrap();
        assert_eq!(onsets.len(), 5);
        for w in onsets.windows(2) {
            assert_eq!(w[1] - w[0], Duration::from_millis(100));
        }
        let (first, played) = tap.take_samples_indexed();
        assert_eq!(first, 0);
        let found = crate::devices::audio::tone_onsets(&played, 1000.0, 1e-4, 2_400);
        // The first burst starts at sample 0, with no quiet before it: not an onset.
        assert_eq!(found.len(), 4, "{found:?}");
        for (at, want) in found.iter().zip([4_800, 9_600, 14_400, 19_200]) {
            // A sine from phase zero: its first samples are below the threshold's amplitude.
            assert!((want..want + 8).contains(at), "{found:?}");
        }
        for (at, onset) in found.iter().zip(&onsets[1..]) {
            let heard = tap.played_at(first + *at as u64).unwrap();
            // One frame of capture, then played at once; wide bounds for a loaded machine.
            let latency = heard.saturating_duration_since(*onset);
            assert!(heard > *onset && latency < Duration::from_millis(500), "{latency:?}");
        }
        assert_eq!(tap.played_at(1_000_000), None);
        assert_eq!(b.burst_onsets("s"), None);
    }

    #[test]
    fn speaker_remembers_play_instants_only_for_what_it_holds() {
        let tap = SimSpeakerTap::new(Duration::from_millis(25));
        let before = Instant::now();
        for n in 0..10i16 {
            tap.push(&[n; AUDIO_FRAME_SAMPLES]);
        }
        let last = tap.played_at(9 * 480).unwrap();
        assert!(last >= before);
        assert_eq!(tap.played_at(9 * 480 + 48).unwrap() - last, Duration::from_millis(1));
        assert!(tap.played_at(0).is_none(), "frame 0 fell out of the ring");
        assert!(tap.played_at(10 * 480).is_none(), "not written yet");
        let (first, samples) = tap.take_samples_indexed();
        assert_eq!((first, samples.len()), (4_800 - 1_200, 1_200));
    }

    #[test]
    fn sample_loop_microphone_repeats_its_buffer() {
        let b = SimAudioBackend::empty();
        let samples: Arc<[i16]> = (0..700).map(|i| i as i16).collect::<Vec<_>>().into();
        assert!(b.add_microphone("loop", "loop", SimSource::Samples(samples)));
        let mut mic = b.open_capture("loop").unwrap();
        let mut frame = [0i16; AUDIO_FRAME_SAMPLES];
        mic.read(&mut frame).unwrap();
        assert_eq!(frame[479], 479);
        mic.read(&mut frame).unwrap();
        assert_eq!(frame[0], 480);
        assert_eq!(frame[219], 699);
        assert_eq!(frame[220], 0);
    }

    #[test]
    fn microphone_is_paced_at_real_time() {
        let b = SimAudioBackend::new();
        let mut mic = b.open_capture(DEFAULT_MICROPHONE_ID).unwrap();
        let mut frame = [0i16; AUDIO_FRAME_SAMPLES];
        let start = Instant::now();
        for _ in 0..50 {
            mic.read(&mut frame).unwrap();
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(400), "50 frames took {took:?}");
    }

    #[test]
    fn speaker_is_paced_and_keeps_what_it_played() {
        let b = SimAudioBackend::new();
        let tap = b.speaker_tap(DEFAULT_SPEAKER_ID).unwrap();
        let mut spk = b.open_playback(DEFAULT_SPEAKER_ID).unwrap();
        let start = Instant::now();
        for n in 0..50i16 {
            spk.write(&[n; AUDIO_FRAME_SAMPLES]).unwrap();
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(400), "50 frames took {took:?}");
        let got = tap.take_samples();
        assert_eq!(got.len(), 50 * AUDIO_FRAME_SAMPLES);
        for (n, chunk) in got.chunks(AUDIO_FRAME_SAMPLES).enumerate() {
            assert!(chunk.iter().all(|&s| s == n as i16), "frame {n}");
        }
        assert!(tap.is_empty());
        assert_eq!(tap.total_written(), 50 * AUDIO_FRAME_SAMPLES as u64);
    }

    #[test]
    fn speaker_ring_is_bounded_to_the_last_samples() {
        let tap = SimSpeakerTap::new(Duration::from_millis(25));
        assert_eq!(tap.capacity(), 1200);
        for n in 0..10i16 {
            tap.push(&[n; AUDIO_FRAME_SAMPLES]);
        }
        let got = tap.take_samples();
        assert_eq!(got.len(), 1200);
        // The last 2.5 frames: 240 samples of frame 7, then frames 8 and 9.
        assert!(got[..240].iter().all(|&s| s == 7));
        assert!(got[240..720].iter().all(|&s| s == 8));
        assert!(got[720..].iter().all(|&s| s == 9));
        assert_eq!(tap.total_written(), 4800);
        assert_eq!(SimSpeakerTap::new(Duration::from_secs(3600)).capacity(), 120 * SAMPLE_RATE as usize);
    }

    #[test]
    fn removed_device_leaves_the_list_and_its_handles_are_gone() {
        let b = SimAudioBackend::new();
        let mut mic = b.open_capture(DEFAULT_MICROPHONE_ID).unwrap();
        let mut spk = b.open_playback(DEFAULT_SPEAKER_ID).unwrap();
        let mut frame = [0i16; AUDIO_FRAME_SAMPLES];
        mic.read(&mut frame).unwrap();
        assert!(b.remove_device(DEFAULT_MICROPHONE_ID));
        assert!(b.remove_device(DEFAULT_SPEAKER_ID));
        assert!(!b.remove_device(DEFAULT_SPEAKER_ID));
        match mic.read(&mut frame) {
            Err(DeviceError::Gone { device, .. }) => assert_eq!(device, DEFAULT_MICROPHONE_ID),
            other => panic!("expected Gone, got {other:?}"),
        }
        assert!(matches!(spk.write(&frame), Err(DeviceError::Gone { .. })));
        assert!(b.list().is_empty());
        assert!(matches!(b.open_capture(DEFAULT_MICROPHONE_ID), Err(DeviceError::NotFound { .. })));
    }

    #[test]
    fn marked_gone_handles_fail_but_reopening_works() {
        let b = SimAudioBackend::new();
        let mut old = b.open_capture(DEFAULT_MICROPHONE_ID).unwrap();
        assert!(b.mark_gone(DEFAULT_MICROPHONE_ID));
        let mut frame = [0i16; AUDIO_FRAME_SAMPLES];
        assert!(matches!(old.read(&mut frame), Err(DeviceError::Gone { .. })));
        assert_eq!(b.list().len(), 2);
        let mut new = b.open_capture(DEFAULT_MICROPHONE_ID).unwrap();
        new.read(&mut frame).unwrap();
        assert!(!b.mark_gone("nosuch"));
    }

    #[test]
    fn added_devices_appear_in_the_list() {
        let b = SimAudioBackend::empty();
        assert!(b.list().is_empty());
        assert!(b.add_microphone("usb", "USB mic", SimSource::Silence));
        assert!(!b.add_microphone("usb", "again", SimSource::Silence));
        let tap = b.add_speaker("usb", "USB speaker", Duration::from_secs(1));
        assert!(tap.is_some());
        let list = b.list();
        assert_eq!(list.len(), 2);
        assert!(list.iter().any(|d| d.kind == DeviceKind::Microphone && d.id == "usb" && d.name == "USB mic"));
        assert!(list.iter().any(|d| d.kind == DeviceKind::Speaker && d.id == "usb"));
        assert!(b.open_playback("usb").is_ok());
        for i in 0..MAX_DEVICES {
            b.add_microphone(&format!("m{i}"), "m", SimSource::Silence);
        }
        assert_eq!(b.list().len(), MAX_DEVICES);
    }
}

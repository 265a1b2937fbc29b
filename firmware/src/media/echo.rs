//! Echo cancellation and noise suppression of the microphone signal: WebRTC's AudioProcessing module
//! (`webrtc-audio-processing` 0.5 over Debian's libwebrtc-audio-processing 0.3) fed with what the speaker
//! plays (the far-end reference, "render") and the microphone's 10 ms frames ("capture"), plus the ERLE
//! measurement helper used by the tests and the benchmark.
//!
//! Threading: [`AudioProcessor::split`] gives a [`RenderHalf`] for the playout thread and a
//! [`CaptureHalf`] for the capture thread (both `Send`). Both hold a clone of the crate's `Processor`,
//! which shares one native AudioProcessing instance through an `Arc`; the 0.3 native module takes one
//! internal lock around each render and each capture call, so the halves need no lock of ours (the calls
//! serialise there; each takes well under a millisecond, see `bench_audio`). Configuration changes are
//! only offered on the capture half: the crate's wrapper stores the delay hint without that lock and reads
//! it in capture processing, so they must not run concurrently with it (`&mut self` on the same half
//! guarantees that).

use webrtc_audio_processing as wap;

use super::MediaError;
use crate::devices::{AudioFrame, AUDIO_FRAME_SAMPLES};

/// How hard the echo canceller's non-linear processor suppresses residual echo (more suppression
/// trades off double-talk transparency).
///
/// libwebrtc-audio-processing 0.3 has three levels while the 0.5 crate names five (it was written for a
/// newer library): the crate's `Lowest`, `Lower` and `Low` are the library's low, moderate and high,
/// and the crate's `Moderate` and `High` are rejected by the library, which then silently keeps its
/// previous level. This enum maps to the values the installed library understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoSuppressionLevel {
    /// The library's `kLowSuppression` (conservative non-linear processing).
    Low,
    /// The library's `kModerateSuppression` (its default).
    Moderate,
    /// The library's `kHighSuppression` (aggressive non-linear processing).
    High,
}

impl From<EchoSuppressionLevel> for wap::EchoCancellationSuppressionLevel {
    fn from(level: EchoSuppressionLevel) -> Self {
        // The crate's enum values are passed through by number; see the type's documentation.
        match level {
            EchoSuppressionLevel::Low => wap::EchoCancellationSuppressionLevel::Lowest,
            EchoSuppressionLevel::Moderate => wap::EchoCancellationSuppressionLevel::Lower,
            EchoSuppressionLevel::High => wap::EchoCancellationSuppressionLevel::Low,
        }
    }
}

/// Noise suppression strength.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseSuppressionLevel {
    /// Low.
    Low,
    /// Moderate.
    Moderate,
    /// High.
    High,
    /// Very high (more speech distortion).
    VeryHigh,
}

impl From<NoiseSuppressionLevel> for wap::NoiseSuppressionLevel {
    fn from(level: NoiseSuppressionLevel) -> Self {
        match level {
            NoiseSuppressionLevel::Low => wap::NoiseSuppressionLevel::Low,
            NoiseSuppressionLevel::Moderate => wap::NoiseSuppressionLevel::Moderate,
            NoiseSuppressionLevel::High => wap::NoiseSuppressionLevel::High,
            NoiseSuppressionLevel::VeryHigh => wap::NoiseSuppressionLevel::VeryHigh,
        }
    }
}

/// What the audio processor does to the microphone signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioProcessingConfig {
    /// Cancel the speaker's echo (needs every played frame passed to `process_render`).
    pub echo_cancellation: bool,
    /// Residual echo suppression of the canceller.
    pub echo_suppression: EchoSuppressionLevel,
    /// Noise suppression, or `None` for none.
    pub noise_suppression: Option<NoiseSuppressionLevel>,
    /// Remove DC and rumble below ~80 Hz.
    pub high_pass: bool,
    /// The board's echo path delay hint: playback buffering + capture buffering (ms between a frame
    /// passed to `process_render` and its echo reaching `process_capture`). `None` lets the canceller
    /// estimate the delay itself (with `delay_agnostic`); a hint disables the estimator.
    pub stream_delay_ms: Option<u32>,
    /// The canceller's extended filter (128 ms instead of 48 ms of echo tail; more CPU, robust to a
    /// wrong delay hint).
    pub extended_filter: bool,
    /// Estimate the echo delay from the signals instead of trusting `stream_delay_ms`.
    pub delay_agnostic: bool,
}

impl Default for AudioProcessingConfig {
    /// The settings measured to cancel best on an intercom (speaker next to the microphone, unknown
    /// device latency): see `bench_audio`.
    fn default() -> Self {
        Self {
            echo_cancellation: true,
            echo_suppression: EchoSuppressionLevel::High,
            noise_suppression: Some(NoiseSuppressionLevel::Moderate),
            high_pass: true,
            stream_delay_ms: None,
            extended_filter: true,
            delay_agnostic: true,
        }
    }
}

impl AudioProcessingConfig {
    fn to_wap(&self) -> Result<wap::Config, MediaError> {
        let stream_delay_ms = match self.stream_delay_ms {
            None => None,
            Some(ms) if ms <= MAX_STREAM_DELAY_MS => Some(ms as i32),
            Some(ms) => {
                return Err(MediaError::Audio(format!(
                    "echo canceller: stream delay hint {ms} ms exceeds {MAX_STREAM_DELAY_MS} ms"
                )))
            }
        };
        Ok(wap::Config {
            echo_cancellation: self.echo_cancellation.then(|| wap::EchoCancellation {
                suppression_level: self.echo_suppression.into(),
                enable_extended_filter: self.extended_filter,
                enable_delay_agnostic: self.delay_agnostic,
                stream_delay_ms,
            }),
            noise_suppression: self
                .noise_suppression
                .map(|level| wap::NoiseSuppression { suppression_level: level.into() }),
            enable_high_pass_filter: self.high_pass,
            ..wap::Config::default()
        })
    }
}

/// Largest accepted delay hint (the native module's own limit is 500 ms).
pub const MAX_STREAM_DELAY_MS: u32 = 500;

/// The canceller's own view of how it is doing (from the native module; `None` until measured).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EchoStats {
    /// Echo return loss (far-end level over echo level), dB.
    pub erl_db: Option<f64>,
    /// Echo return loss enhancement (echo level over residual), dB.
    pub erle_db: Option<f64>,
    /// Median of the estimated echo delay, ms.
    pub delay_median_ms: Option<i32>,
    /// The current capture frame might contain echo.
    pub has_echo: Option<bool>,
}

/// The echo canceller and noise suppressor of one microphone/speaker pair (48 kHz mono, 10 ms frames).
pub struct AudioProcessor {
    render: RenderHalf,
    capture: CaptureHalf,
}

impl AudioProcessor {
    /// Creates the native module and applies `config`.
    pub fn new(config: &AudioProcessingConfig) -> Result<Self, MediaError> {
        let native = config.to_wap()?;
        let init = wap::InitializationConfig {
            num_capture_channels: 1,
            num_render_channels: 1,
            enable_experimental_agc: false,
            enable_intelligibility_enhancer: false,
        };
        if wap::NUM_SAMPLES_PER_FRAME as usize != AUDIO_FRAME_SAMPLES {
            return Err(MediaError::Audio(format!(
                "echo canceller frames are {} samples, devices deliver {AUDIO_FRAME_SAMPLES}",
                wap::NUM_SAMPLES_PER_FRAME
            )));
        }
        let mut processor =
            wap::Processor::new(&init).map_err(|e| MediaError::Audio(format!("echo canceller create: {e}")))?;
        processor.set_config(native);
        log::info!(
            "audio processing: echo cancellation {} (suppression {:?}, delay {}, extended filter {}), noise \
             suppression {:?}, high-pass {}",
            config.echo_cancellation,
            config.echo_suppression,
            config.stream_delay_ms.map_or("estimated".to_string(), |ms| format!("{ms} ms")),
            config.extended_filter,
            config.noise_suppression,
            config.high_pass
        );
        Ok(Self {
            render: RenderHalf { processor: processor.clone(), buf: Box::new([0.0; AUDIO_FRAME_SAMPLES]) },
            capture: CaptureHalf { processor, buf: Box::new([0.0; AUDIO_FRAME_SAMPLES]) },
        })
    }

    /// Feeds one frame the speaker plays (the far-end reference). Unchanged.
    pub fn process_render(&mut self, far: &AudioFrame) -> Result<(), MediaError> {
        self.render.process_render(far)
    }

    /// Cancels echo and suppresses noise in one microphone frame, in place.
    pub fn process_capture(&mut self, near: &mut AudioFrame) -> Result<(), MediaError> {
        self.capture.process_capture(near)
    }

    /// Replaces the configuration (takes effect from the next capture frame).
    pub fn set_config(&mut self, config: &AudioProcessingConfig) -> Result<(), MediaError> {
        self.capture.set_config(config)
    }

    /// The canceller's statistics after the latest capture frame.
    pub fn stats(&self) -> EchoStats {
        self.capture.stats()
    }

    /// Splits into the playout thread's half and the capture thread's half (both `Send`).
    pub fn split(self) -> (RenderHalf, CaptureHalf) {
        (self.render, self.capture)
    }
}

/// The render (speaker) half: give it every frame the speaker plays, from the playout thread.
pub struct RenderHalf {
    processor: wap::Processor,
    buf: Box<[f32; AUDIO_FRAME_SAMPLES]>,
}

impl RenderHalf {
    /// Feeds one frame the speaker plays (the far-end reference).
    pub fn process_render(&mut self, far: &AudioFrame) -> Result<(), MediaError> {
        to_float(far, &mut self.buf);
        self.processor
            .process_render_frame(&mut self.buf[..])
            .map_err(|e| MediaError::Audio(format!("echo canceller render frame: {e}")))
    }
}

/// The capture (microphone) half: processes microphone frames in place, from the capture thread.
pub struct CaptureHalf {
    processor: wap::Processor,
    buf: Box<[f32; AUDIO_FRAME_SAMPLES]>,
}

impl CaptureHalf {
    /// Cancels echo and suppresses noise in one microphone frame, in place. On error the frame is left
    /// unprocessed.
    pub fn process_capture(&mut self, near: &mut AudioFrame) -> Result<(), MediaError> {
        to_float(near, &mut self.buf);
        self.processor
            .process_capture_frame(&mut self.buf[..])
            .map_err(|e| MediaError::Audio(format!("echo canceller capture frame: {e}")))?;
        for (out, &v) in near.iter_mut().zip(self.buf.iter()) {
            *out = (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        }
        Ok(())
    }

    /// Replaces the configuration (takes effect from the next capture frame).
    pub fn set_config(&mut self, config: &AudioProcessingConfig) -> Result<(), MediaError> {
        self.processor.set_config(config.to_wap()?);
        Ok(())
    }

    /// The canceller's statistics after the latest capture frame.
    pub fn stats(&self) -> EchoStats {
        let s = self.processor.get_stats();
        EchoStats {
            erl_db: s.echo_return_loss,
            erle_db: s.echo_return_loss_enhancement,
            delay_median_ms: s.delay_median_ms,
            has_echo: s.has_echo,
        }
    }
}

fn to_float(frame: &AudioFrame, out: &mut [f32; AUDIO_FRAME_SAMPLES]) {
    for (o, &s) in out.iter_mut().zip(frame.iter()) {
        *o = f32::from(s) / 32768.0;
    }
}

/// Echo return loss enhancement in dB: the energy of `echo` (the microphone signal with echo only)
/// over the energy of `residual` (what the canceller left of it). A residual of digital silence counts
/// as [`ERLE_CAP_DB`].
pub fn erle_db(echo: &[i16], residual: &[i16]) -> f64 {
    let e = energy(echo);
    let r = energy(residual);
    if e <= 0.0 {
        return 0.0;
    }
    if r <= 0.0 {
        return ERLE_CAP_DB;
    }
    (10.0 * (e / r).log10()).min(ERLE_CAP_DB)
}

/// The largest ERLE [`erle_db`] reports.
pub const ERLE_CAP_DB: f64 = 100.0;

fn energy(pcm: &[i16]) -> f64 {
    pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum()
}

// ---------------------------------------------------------------------------------------------------
// Measurement: a synthetic intercom echo scenario (used by the tests and by `bench_audio`).

/// A synthetic echo scenario: a speech-like far-end signal is played, the microphone hears its echo
/// (delayed, attenuated, smeared by a short decaying impulse response) plus a near-end talker in some
/// segments plus a faint noise floor. Timeline (seconds): far only 0–9, near only 9–11, double talk
/// 11–14, far only 14–18, near only 18–20.
#[derive(Debug, Clone)]
pub struct EchoScenario {
    /// Acoustic echo delay (speaker to microphone, plus device buffering).
    pub echo_delay_ms: u32,
    /// Echo level relative to the far-end signal (negative: attenuation).
    pub echo_gain_db: f64,
    /// Noise floor of the microphone, dBFS RMS.
    pub noise_dbfs: f64,
    /// Seed of the deterministic generators.
    pub seed: u64,
}

impl Default for EchoScenario {
    fn default() -> Self {
        Self { echo_delay_ms: 40, echo_gain_db: -8.0, noise_dbfs: -70.0, seed: 0x00C0_FFEE }
    }
}

/// What [`run_echo_scenario`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct EchoMeasurement {
    /// ERLE over the echo-only segments after convergence (5–9 s and 15–18 s), dB.
    pub erle_db: f64,
    /// ERLE over the first echo-only second (0–1 s, before convergence), dB.
    pub erle_first_second_db: f64,
    /// ERLE over the echo-only segment after double talk (15–18 s), dB.
    pub erle_after_double_talk_db: f64,
    /// Output energy over near-end input energy in the near-only segments, dB (0 = kept intact).
    pub near_kept_db: f64,
    /// Best normalised cross-correlation of output and near-end input in the near-only segments
    /// (over lags 0–20 ms).
    pub near_correlation: f64,
    /// Output energy over near-end input energy during double talk, dB (how much of the near end
    /// survives while the far end talks; echo residue included).
    pub double_talk_kept_db: f64,
    /// Seconds of audio processed.
    pub audio_seconds: f64,
    /// CPU time this thread spent in `process_render` + `process_capture`.
    pub processing_cpu: std::time::Duration,
}

const SCENARIO_SECONDS: usize = 20;
const FRAMES_PER_SECOND: usize = 100;

/// Segment kinds of the scenario timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    FarOnly,
    NearOnly,
    DoubleTalk,
}

fn segment_at(second: f64) -> Segment {
    match second {
        s if s < 9.0 => Segment::FarOnly,
        s if s < 11.0 => Segment::NearOnly,
        s if s < 14.0 => Segment::DoubleTalk,
        s if s < 18.0 => Segment::FarOnly,
        _ => Segment::NearOnly,
    }
}

/// Runs the synthetic scenario through a fresh [`AudioProcessor`] made with `config` (render then
/// capture, frame by frame, on this thread) and measures it.
pub fn run_echo_scenario(
    config: &AudioProcessingConfig,
    scenario: &EchoScenario,
) -> Result<EchoMeasurement, MediaError> {
    let mut processor = AudioProcessor::new(config)?;
    let sr = crate::devices::SAMPLE_RATE as f64;
    let total = SCENARIO_SECONDS * FRAMES_PER_SECOND;
    let mut far_talker = SpeechLike::new(scenario.seed, 110.0, -18.0);
    let mut near_talker = SpeechLike::new(scenario.seed ^ 0x5EED_0001, 190.0, -20.0);
    let mut rng = Rng::new(scenario.seed ^ 0xA5A5_5A5A);
    let path = EchoPath::new(&mut rng, scenario.echo_delay_ms, scenario.echo_gain_db);
    let mut history = vec![0.0f64; path.len()];
    let mut hist_pos = 0usize;
    let noise_amp = 10f64.powf(scenario.noise_dbfs / 20.0) * 32768.0 * 3f64.sqrt();

    let mut segs = SegmentSums::default();
    let mut near_in: Vec<i16> = Vec::new();
    let mut near_out: Vec<i16> = Vec::new();
    let mut cpu = std::time::Duration::ZERO;
    let mut far = [0i16; AUDIO_FRAME_SAMPLES];
    let mut mic = [0i16; AUDIO_FRAME_SAMPLES];
    let mut near = [0f64; AUDIO_FRAME_SAMPLES];
    for frame in 0..total {
        let second = frame as f64 / FRAMES_PER_SECOND as f64;
        let segment = segment_at(second);
        let far_on = segment != Segment::NearOnly;
        let near_on = segment != Segment::FarOnly;
        for i in 0..AUDIO_FRAME_SAMPLES {
            let f = far_talker.next_sample(sr);
            let n = near_talker.next_sample(sr);
            let f = if far_on { f } else { 0.0 };
            far[i] = f.round().clamp(-32768.0, 32767.0) as i16;
            near[i] = if near_on { n } else { 0.0 };
            history[hist_pos] = f64::from(far[i]);
            let echo = path.output(&history, hist_pos);
            hist_pos = (hist_pos + 1) % history.len();
            let noise = rng.uniform() * noise_amp;
            mic[i] = (echo + near[i] + noise).round().clamp(-32768.0, 32767.0) as i16;
        }
        let input = mic;
        let started = thread_cpu_time();
        processor.process_render(&far)?;
        processor.process_capture(&mut mic)?;
        cpu += thread_cpu_time().saturating_sub(started);

        let in_erle_window = (5.0..9.0).contains(&second) || (15.0..18.0).contains(&second);
        if in_erle_window {
            segs.echo_in += energy(&input);
            segs.echo_out += energy(&mic);
        }
        if (15.0..18.0).contains(&second) {
            segs.after_dt_in += energy(&input);
            segs.after_dt_out += energy(&mic);
        }
        if second < 1.0 {
            segs.first_in += energy(&input);
            segs.first_out += energy(&mic);
        }
        let near_i16: Vec<i16> = near.iter().map(|v| v.round().clamp(-32768.0, 32767.0) as i16).collect();
        // Near-only segments, skipping the first 200 ms after the far end stops (echo tail).
        if segment == Segment::NearOnly && !(9.0..9.2).contains(&second) && !(18.0..18.2).contains(&second) {
            near_in.extend_from_slice(&near_i16);
            near_out.extend_from_slice(&mic);
        }
        if segment == Segment::DoubleTalk {
            segs.dt_near += energy(&near_i16);
            segs.dt_out += energy(&mic);
        }
    }
    Ok(EchoMeasurement {
        erle_db: ratio_db(segs.echo_in, segs.echo_out),
        erle_first_second_db: ratio_db(segs.first_in, segs.first_out),
        erle_after_double_talk_db: ratio_db(segs.after_dt_in, segs.after_dt_out),
        near_kept_db: ratio_db(energy(&near_out), energy(&near_in)),
        near_correlation: best_correlation(&near_in, &near_out, AUDIO_FRAME_SAMPLES * 2),
        double_talk_kept_db: ratio_db(segs.dt_out, segs.dt_near),
        audio_seconds: total as f64 / FRAMES_PER_SECOND as f64,
        processing_cpu: cpu,
    })
}

#[derive(Default)]
struct SegmentSums {
    echo_in: f64,
    echo_out: f64,
    after_dt_in: f64,
    after_dt_out: f64,
    first_in: f64,
    first_out: f64,
    dt_near: f64,
    dt_out: f64,
}

fn ratio_db(num: f64, den: f64) -> f64 {
    if den <= 0.0 {
        return ERLE_CAP_DB;
    }
    if num <= 0.0 {
        return -ERLE_CAP_DB;
    }
    (10.0 * (num / den).log10()).clamp(-ERLE_CAP_DB, ERLE_CAP_DB)
}

/// Largest normalised cross-correlation of `b` delayed by 0..=`max_lag` samples against `a`.
fn best_correlation(a: &[i16], b: &[i16], max_lag: usize) -> f64 {
    let mut best = 0.0f64;
    for lag in (0..=max_lag).step_by(8) {
        best = best.max(correlation_at(a, b, lag));
    }
    // Refine around the best coarse lag.
    let coarse = (0..=max_lag).step_by(8).max_by(|&x, &y| correlation_at(a, b, x).total_cmp(&correlation_at(a, b, y)));
    if let Some(c) = coarse {
        for lag in c.saturating_sub(8)..=(c + 8).min(max_lag) {
            best = best.max(correlation_at(a, b, lag));
        }
    }
    best
}

fn correlation_at(a: &[i16], b: &[i16], lag: usize) -> f64 {
    if lag >= b.len() {
        return 0.0;
    }
    let n = a.len().min(b.len() - lag);
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for i in 0..n {
        let x = f64::from(a[i]);
        let y = f64::from(b[i + lag]);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa <= 0.0 || bb <= 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}

fn thread_cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// xorshift64*: a small deterministic generator (the scenario must be identical on every run).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f64 {
        self.unit() * 2.0 - 1.0
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// The loudspeaker-to-microphone path: a delay, then a sparse impulse response decaying over 10 ms.
struct EchoPath {
    taps: Vec<(usize, f64)>,
    len: usize,
}

impl EchoPath {
    fn new(rng: &mut Rng, delay_ms: u32, gain_db: f64) -> Self {
        let delay = delay_ms as usize * 48;
        let mut taps = vec![(delay, 1.0)];
        for _ in 0..24 {
            let offset = 1 + (rng.unit() * 480.0) as usize;
            let amp = 0.5 * (-(offset as f64) / 120.0).exp() * if rng.unit() < 0.5 { -1.0 } else { 1.0 };
            taps.push((delay + offset, amp));
        }
        // Scale so that the path's power gain is `gain_db`.
        let power: f64 = taps.iter().map(|(_, a)| a * a).sum();
        let scale = 10f64.powf(gain_db / 20.0) / power.sqrt();
        for tap in &mut taps {
            tap.1 *= scale;
        }
        let len = taps.iter().map(|(d, _)| d + 1).max().unwrap_or(1);
        Self { taps, len }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// The echo sample for the newest history entry at `pos` (history is a ring of `len` samples).
    fn output(&self, history: &[f64], pos: usize) -> f64 {
        let n = history.len();
        self.taps.iter().map(|&(d, a)| a * history[(pos + n - d % n) % n]).sum()
    }
}

/// A speech-like signal: syllables (raised-cosine envelopes at a syllabic rate of ~4 Hz with pauses)
/// that are either voiced (harmonics of a gliding pitch with a falling spectral tilt, up to 4 kHz) or
/// unvoiced (band-limited noise, 2–6 kHz).
struct SpeechLike {
    rng: Rng,
    base_f0: f64,
    amplitude: f64,
    phase: f64,
    t: f64,
    syllable_left: usize,
    syllable_len: usize,
    gap_left: usize,
    voiced: bool,
    f0_offset: f64,
    lp_fast: f64,
    lp_slow: f64,
}

impl SpeechLike {
    fn new(seed: u64, base_f0: f64, rms_dbfs: f64) -> Self {
        Self {
            rng: Rng::new(seed),
            base_f0,
            amplitude: 10f64.powf(rms_dbfs / 20.0) * 32768.0,
            phase: 0.0,
            t: 0.0,
            syllable_left: 0,
            syllable_len: 1,
            gap_left: 0,
            voiced: true,
            f0_offset: 0.0,
            lp_fast: 0.0,
            lp_slow: 0.0,
        }
    }

    fn next_sample(&mut self, sr: f64) -> f64 {
        self.t += 1.0 / sr;
        if self.syllable_left == 0 {
            if self.gap_left > 0 {
                self.gap_left -= 1;
                return 0.0;
            }
            self.syllable_len = (self.rng.range(0.12, 0.30) * sr) as usize;
            self.syllable_left = self.syllable_len;
            self.voiced = self.rng.unit() < 0.8;
            self.f0_offset = self.rng.range(-0.15, 0.15);
            let pause = if self.rng.unit() < 0.2 { self.rng.range(0.2, 0.5) } else { self.rng.range(0.04, 0.12) };
            self.gap_left = (pause * sr) as usize;
        }
        self.syllable_left -= 1;
        let progress = 1.0 - self.syllable_left as f64 / self.syllable_len as f64;
        let envelope = (std::f64::consts::PI * progress).sin();
        let value = if self.voiced {
            let f0 = self.base_f0 * (1.0 + self.f0_offset + 0.1 * (2.0 * std::f64::consts::PI * 0.7 * self.t).sin());
            self.phase = (self.phase + f0 / sr).fract();
            let mut v = 0.0;
            let mut k = 1.0f64;
            while k * f0 < 4000.0 {
                v += (2.0 * std::f64::consts::PI * k * self.phase).sin() / k;
                k += 1.0;
            }
            v * 0.6
        } else {
            // Band-pass white noise: difference of two one-pole low-passes (~6 kHz and ~2 kHz).
            let white = self.rng.uniform();
            self.lp_fast += 0.55 * (white - self.lp_fast);
            self.lp_slow += 0.23 * (white - self.lp_slow);
            (self.lp_fast - self.lp_slow) * 4.0
        };
        value * envelope * self.amplitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erle_of_known_signals() {
        let echo = [1000i16; 480];
        let residual = [100i16; 480];
        assert!((erle_db(&echo, &residual) - 20.0).abs() < 1e-9);
        assert_eq!(erle_db(&echo, &[0; 480]), ERLE_CAP_DB);
        assert_eq!(erle_db(&[0; 480], &residual), 0.0);
    }

    #[test]
    fn bad_delay_hint_is_a_typed_error() {
        let config = AudioProcessingConfig { stream_delay_ms: Some(10_000), ..AudioProcessingConfig::default() };
        assert!(matches!(AudioProcessor::new(&config), Err(MediaError::Audio(_))));
    }

    #[test]
    fn cancels_echo_and_keeps_the_near_end() {
        let scenario = EchoScenario::default();
        let m = run_echo_scenario(&AudioProcessingConfig::default(), &scenario).unwrap();
        println!("{m:?}");
        assert!(m.erle_db >= 20.0, "ERLE after convergence {:.1} dB", m.erle_db);
        assert!(m.erle_after_double_talk_db >= 20.0, "ERLE after double talk {:.1} dB", m.erle_after_double_talk_db);
        assert!(m.near_kept_db.abs() <= 6.0, "near-end level changed by {:.1} dB", m.near_kept_db);
        assert!(m.near_correlation >= 0.7, "near-end correlation {:.2}", m.near_correlation);

        // The same scenario without the canceller: the measurement does see the echo.
        let off = AudioProcessingConfig { echo_cancellation: false, ..AudioProcessingConfig::default() };
        let m = run_echo_scenario(&off, &scenario).unwrap();
        assert!(m.erle_db < 6.0, "ERLE without cancellation {:.1} dB", m.erle_db);
        assert!(m.near_kept_db.abs() <= 6.0, "near-end level changed by {:.1} dB", m.near_kept_db);
    }

    #[test]
    fn a_delay_hint_and_the_plain_filter_also_cancel() {
        let scenario = EchoScenario { echo_delay_ms: 30, echo_gain_db: -6.0, ..EchoScenario::default() };
        for config in [
            AudioProcessingConfig { stream_delay_ms: Some(30), ..AudioProcessingConfig::default() },
            AudioProcessingConfig {
                extended_filter: false,
                delay_agnostic: false,
                echo_suppression: EchoSuppressionLevel::Moderate,
                noise_suppression: None,
                ..AudioProcessingConfig::default()
            },
        ] {
            let m = run_echo_scenario(&config, &scenario).unwrap();
            assert!(m.erle_db >= 20.0, "{config:?}: ERLE {:.1} dB", m.erle_db);
            assert!(m.near_kept_db.abs() <= 6.0, "{config:?}: near-end level changed by {:.1} dB", m.near_kept_db);
        }
    }

    #[test]
    fn halves_run_on_two_threads() {
        use std::sync::mpsc::sync_channel;
        let (mut render, mut capture) = AudioProcessor::new(&AudioProcessingConfig::default()).unwrap().split();
        let (far_tx, far_rx) = sync_channel::<AudioFrame>(8);
        let (mic_tx, mic_rx) = sync_channel::<AudioFrame>(8);
        let (out_tx, out_rx) = sync_channel::<AudioFrame>(8);
        let render_thread = std::thread::spawn(move || {
            let mut n = 0usize;
            while let Ok(frame) = far_rx.recv() {
                render.process_render(&frame).unwrap();
                n += 1;
            }
            n
        });
        let capture_thread = std::thread::spawn(move || {
            while let Ok(mut frame) = mic_rx.recv() {
                capture.process_capture(&mut frame).unwrap();
                if out_tx.send(frame).is_err() {
                    break;
                }
            }
            capture.stats()
        });
        let mut rng = Rng::new(7);
        let mut delayed = std::collections::VecDeque::from(vec![0i16; 48 * 20]);
        let mut outputs = Vec::new();
        for _ in 0..300 {
            let mut far = [0i16; AUDIO_FRAME_SAMPLES];
            let mut mic = [0i16; AUDIO_FRAME_SAMPLES];
            for (f, m) in far.iter_mut().zip(mic.iter_mut()) {
                *f = (rng.uniform() * 8000.0) as i16;
                delayed.push_back(*f);
                *m = delayed.pop_front().unwrap_or(0) / 3;
            }
            far_tx.send(far).unwrap();
            mic_tx.send(mic).unwrap();
            outputs.push(out_rx.recv().unwrap());
        }
        drop(far_tx);
        drop(mic_tx);
        assert_eq!(render_thread.join().unwrap(), 300);
        let stats = capture_thread.join().unwrap();
        assert_eq!(outputs.len(), 300);
        assert!(stats.erle_db.is_some(), "{stats:?}");
    }
}

//! Audio building blocks: a sine tone generator (test signals), the Opus encoder (48 kHz mono, 20 ms
//! frames, in-band FEC and DTX configurable) and the RMS level meter (dBFS over ~100 ms windows).

use super::MediaError;

/// Sample rate of everything audio here.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples per 20 ms frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;
/// Level reported for digital silence.
pub const SILENCE_DBFS: f32 = -100.0;
/// Samples per level-meter window (100 ms).
const LEVEL_WINDOW: usize = 4_800;

/// A sine tone generator with a continuous phase across frames.
pub(crate) struct ToneSource {
    phase: f64,
    step: f64,
    amplitude: f64,
}

impl ToneSource {
    /// `frequency_hz` at a peak of `level_dbfs` (0 dBFS = full scale).
    pub(crate) fn new(frequency_hz: f32, level_dbfs: f32) -> Self {
        Self {
            phase: 0.0,
            step: 2.0 * std::f64::consts::PI * f64::from(frequency_hz) / f64::from(SAMPLE_RATE),
            amplitude: 10f64.powf(f64::from(level_dbfs) / 20.0).clamp(0.0, 1.0) * f64::from(i16::MAX),
        }
    }

    /// The next 20 ms frame.
    pub(crate) fn next_frame(&mut self, out: &mut [i16; FRAME_SAMPLES]) {
        for sample in out.iter_mut() {
            *sample = (self.phase.sin() * self.amplitude) as i16;
            self.phase = (self.phase + self.step) % (2.0 * std::f64::consts::PI);
        }
    }
}

/// Opus encoder for 48 kHz mono 20 ms frames (in-band FEC and DTX configurable).
pub(crate) struct OpusEncoder {
    inner: opus::Encoder,
    out: Vec<u8>,
}

impl OpusEncoder {
    #[cfg(test)]
    pub(crate) fn new(bitrate_bps: i32) -> Result<Self, MediaError> {
        Self::with_options(bitrate_bps, true, false)
    }

    /// An encoder at `bitrate_bps`; `fec`: in-band forward error correction (the receiver rebuilds a
    /// lost packet from the next one); `dtx`: discontinuous transmission (near-silent packets during
    /// silence).
    pub(crate) fn with_options(bitrate_bps: i32, fec: bool, dtx: bool) -> Result<Self, MediaError> {
        let err = |what: &str, e: opus::Error| MediaError::Audio(format!("opus encoder {what}: {e}"));
        let mut inner = opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)
            .map_err(|e| err("create", e))?;
        inner.set_inband_fec(fec).map_err(|e| err("in-band FEC", e))?;
        inner.set_packet_loss_perc(if fec { 10 } else { 0 }).map_err(|e| err("loss percentage", e))?;
        inner.set_dtx(dtx).map_err(|e| err("DTX", e))?;
        inner.set_bitrate(opus::Bitrate::Bits(bitrate_bps)).map_err(|e| err("bitrate", e))?;
        Ok(Self { inner, out: vec![0u8; 1500] })
    }

    /// Encodes one 20 ms frame into an Opus packet.
    pub(crate) fn encode(&mut self, pcm: &[i16; FRAME_SAMPLES]) -> Result<&[u8], MediaError> {
        let n = self.inner.encode(pcm, &mut self.out).map_err(|e| MediaError::Audio(format!("opus encode: {e}")))?;
        Ok(&self.out[..n])
    }
}

/// RMS level meter over fixed windows.
#[derive(Default)]
pub(crate) struct LevelMeter {
    sum_squares: f64,
    count: usize,
}

impl LevelMeter {
    /// Adds samples; returns the level in dBFS each time a 100 ms window completes.
    pub(crate) fn push(&mut self, pcm: &[i16]) -> Option<f32> {
        let mut level = None;
        for &s in pcm {
            let v = f64::from(s) / 32768.0;
            self.sum_squares += v * v;
            self.count += 1;
            if self.count == LEVEL_WINDOW {
                level = Some(rms_dbfs(self.sum_squares, self.count));
                self.sum_squares = 0.0;
                self.count = 0;
            }
        }
        level
    }
}

/// The RFC 6464 audio level of a packet's samples: its RMS in -dBov, 0 (loudest) to 127 (silence). Janus's
/// videoroom reads it from each packet's ssrc-audio-level header extension to tell who is talking.
pub fn rtp_audio_level(samples: &[i16]) -> u8 {
    let sum_squares: f64 = samples.iter().map(|&v| (f64::from(v) / 32_768.0).powi(2)).sum();
    let dbfs = rms_dbfs(sum_squares, samples.len());
    if dbfs <= SILENCE_DBFS {
        return 127;
    }
    (-dbfs).round().clamp(0.0, 127.0) as u8
}

fn rms_dbfs(sum_squares: f64, count: usize) -> f32 {
    if count == 0 {
        return SILENCE_DBFS;
    }
    let rms = (sum_squares / count as f64).sqrt();
    if rms <= 1e-5 {
        SILENCE_DBFS
    } else {
        ((20.0 * rms.log10()) as f32).max(SILENCE_DBFS)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rtp_audio_levels_follow_rfc_6464() {
        use super::rtp_audio_level;
        assert_eq!(rtp_audio_level(&[0; 960]), 127, "digital silence");
        assert_eq!(rtp_audio_level(&[]), 127);
        // A full-scale square wave is 0 dBov; half scale -6.
        let full: Vec<i16> = (0..960).map(|i| if i % 2 == 0 { i16::MAX } else { -i16::MAX }).collect();
        assert_eq!(rtp_audio_level(&full), 0);
        let half: Vec<i16> = full.iter().map(|v| v / 2).collect();
        assert_eq!(rtp_audio_level(&half), 6);
        assert_eq!(rtp_audio_level(&[1; 960]), 90, "a faint hum");
    }

    use super::*;

    #[test]
    fn tone_round_trips_through_opus_at_the_expected_level() {
        let mut tone = ToneSource::new(440.0, -12.0);
        let mut enc = OpusEncoder::new(32_000).unwrap();
        let mut dec = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono).unwrap();
        let mut meter = LevelMeter::default();
        let mut frame = [0i16; FRAME_SAMPLES];
        let mut pcm = [0i16; FRAME_SAMPLES];
        let mut levels = Vec::new();
        for _ in 0..50 {
            tone.next_frame(&mut frame);
            let packet = enc.encode(&frame).unwrap().to_vec();
            let n = dec.decode(&packet, &mut pcm, false).unwrap();
            levels.extend(meter.push(&pcm[..n]));
        }
        assert_eq!(levels.len(), 10);
        // A sine of -12 dBFS peak has an RMS of about -15 dBFS; skip the codec's warm-up window.
        for level in &levels[2..] {
            assert!((-17.0..=-13.0).contains(level), "level {level}");
        }
    }

    #[test]
    fn silence_meters_as_silence_and_dtx_shrinks_silent_packets() {
        let mut meter = LevelMeter::default();
        let silence = [0i16; FRAME_SAMPLES];
        let levels: Vec<f32> = (0..10).filter_map(|_| meter.push(&silence)).collect();
        assert_eq!(levels, vec![SILENCE_DBFS; 2]);
        let mut plain = OpusEncoder::with_options(32_000, true, false).unwrap();
        let mut dtx = OpusEncoder::with_options(32_000, true, true).unwrap();
        let (mut plain_bytes, mut dtx_bytes) = (0, 0);
        for _ in 0..50 {
            plain_bytes += plain.encode(&silence).unwrap().len();
            dtx_bytes += dtx.encode(&silence).unwrap().len();
        }
        assert!(dtx_bytes < plain_bytes, "DTX {dtx_bytes} bytes, without {plain_bytes}");
    }
}

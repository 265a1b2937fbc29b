//! Audio: the synthetic tone source (48 kHz mono, 20 ms frames), the Opus encoder (in-band FEC on) and
//! decoder, the RMS level meter (dBFS over ~100 ms windows) and the bounded in-memory PCM sink.

use std::collections::VecDeque;

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

/// Opus decoder with FEC recovery of a single lost packet, feeding a level meter and a bounded PCM
/// buffer (the in-memory speaker).
pub(crate) struct AudioReceiver {
    decoder: opus::Decoder,
    pcm: Vec<i16>,
    meter: LevelMeter,
    last_seq: Option<u16>,
    buffered: VecDeque<i16>,
    max_buffered: usize,
}

impl AudioReceiver {
    pub(crate) fn new(max_buffered_samples: usize) -> Result<Self, MediaError> {
        Ok(Self {
            decoder: opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)
                .map_err(|e| MediaError::Audio(format!("opus decoder create: {e}")))?,
            // Opus packets carry at most 120 ms.
            pcm: vec![0i16; SAMPLE_RATE as usize * 120 / 1000],
            meter: LevelMeter::default(),
            last_seq: None,
            buffered: VecDeque::new(),
            max_buffered: max_buffered_samples,
        })
    }

    /// Decodes one RTP payload; returns completed level-meter windows (dBFS). Undecodable payloads are
    /// logged and skipped (never panics on network input).
    pub(crate) fn receive(&mut self, seq: u16, payload: &[u8]) -> Vec<f32> {
        let mut levels = Vec::new();
        if let Some(last) = self.last_seq {
            let delta = seq.wrapping_sub(last);
            if delta == 0 || delta > 0x8000 {
                return levels; // duplicate or late packet
            }
            if delta == 2 {
                // Exactly one packet lost: recover it from this packet's FEC data.
                if let Ok(n) = self.decoder.decode(payload, &mut self.pcm[..FRAME_SAMPLES], true) {
                    let frame = self.pcm[..n].to_vec();
                    self.sink(&frame, &mut levels);
                }
            }
        }
        self.last_seq = Some(seq);
        match self.decoder.decode(payload, &mut self.pcm, false) {
            Ok(n) => {
                let frame = self.pcm[..n].to_vec();
                self.sink(&frame, &mut levels);
            }
            Err(e) => log::debug!("undecodable opus payload ({} bytes): {e}", payload.len()),
        }
        levels
    }

    fn sink(&mut self, frame: &[i16], levels: &mut Vec<f32>) {
        if let Some(level) = self.meter.push(frame) {
            levels.push(level);
        }
        self.buffered.extend(frame.iter().copied());
        while self.buffered.len() > self.max_buffered {
            self.buffered.pop_front();
        }
    }

    /// Drains the buffered decoded PCM.
    pub(crate) fn take_pcm(&mut self) -> Vec<i16> {
        self.buffered.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_round_trips_through_opus_at_the_expected_level() {
        let mut tone = ToneSource::new(440.0, -12.0);
        let mut enc = OpusEncoder::new(32_000).unwrap();
        let mut rx = AudioReceiver::new(48_000).unwrap();
        let mut frame = [0i16; FRAME_SAMPLES];
        let mut levels = Vec::new();
        for seq in 0..50u16 {
            tone.next_frame(&mut frame);
            let packet = enc.encode(&frame).unwrap().to_vec();
            levels.extend(rx.receive(seq, &packet));
        }
        assert_eq!(levels.len(), 10);
        // A sine of -12 dBFS peak has an RMS of about -15 dBFS; skip the codec's warm-up window.
        for level in &levels[2..] {
            assert!((-17.0..=-13.0).contains(level), "level {level}");
        }
        assert_eq!(rx.take_pcm().len(), 48_000);
        assert!(rx.take_pcm().is_empty());
    }

    #[test]
    fn silence_meters_as_silence_and_garbage_is_skipped() {
        let mut enc = OpusEncoder::new(32_000).unwrap();
        let mut rx = AudioReceiver::new(1_000).unwrap();
        let silence = [0i16; FRAME_SAMPLES];
        let mut levels = Vec::new();
        for seq in 0..10u16 {
            let packet = enc.encode(&silence).unwrap().to_vec();
            levels.extend(rx.receive(seq, &packet));
        }
        assert!(levels.iter().all(|l| *l < -80.0), "{levels:?}");
        // Garbage, duplicates and reordering from the network do not panic.
        let _ = rx.receive(10, &[0xff; 3]);
        let _ = rx.receive(10, &[0x00]);
        let _ = rx.receive(5, &[]);
        assert!(rx.take_pcm().len() <= 1_000);
    }
}

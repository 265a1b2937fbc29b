//! Tones the appliance plays to the far end of a call, mixed into the call's outgoing audio (after the echo
//! canceller and mute: the tone is the appliance's, not the microphone's). Pure: a [`TonePlayer`] yields the
//! samples of one [`CallTone`] as it is mixed into each packet, so the patterns are unit-tested without a call.

use crate::devices::SAMPLE_RATE;

/// A tone for the far end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallTone {
    /// The door code was not accepted (wrong, or not compared): two short low beeps, unlike the ring chime
    /// (660/550 Hz) and every DTMF tone (697 Hz and up), so that it cannot be mistaken for either.
    WrongCode,
}

/// One beep of a pattern: its pitch and how long it sounds, then the silence after it.
struct Beep {
    hz: f64,
    on_ms: u32,
    off_ms: u32,
}

/// The wrong-code pattern: 400 Hz, 150 ms on, 100 ms off, twice.
const WRONG_CODE: [Beep; 2] =
    [Beep { hz: 400.0, on_ms: 150, off_ms: 100 }, Beep { hz: 400.0, on_ms: 150, off_ms: 100 }];

/// Peak level of the tones: -12 dBFS, as the chime.
const AMPLITUDE: f64 = 8_000.0;

impl CallTone {
    fn pattern(self) -> &'static [Beep] {
        match self {
            CallTone::WrongCode => &WRONG_CODE,
        }
    }

    /// How long the tone lasts.
    pub fn duration(self) -> std::time::Duration {
        let ms: u32 = self.pattern().iter().map(|b| b.on_ms + b.off_ms).sum();
        std::time::Duration::from_millis(u64::from(ms))
    }
}

/// Plays one tone into the outgoing audio, packet by packet.
#[derive(Debug, Clone)]
pub struct TonePlayer {
    tone: CallTone,
    /// Samples of the tone played so far.
    played: u64,
}

impl TonePlayer {
    pub fn new(tone: CallTone) -> Self {
        TonePlayer { tone, played: 0 }
    }

    /// The sample at `n` samples into the tone (`None` past its end).
    fn sample(&self, n: u64) -> Option<i16> {
        let per_ms = u64::from(SAMPLE_RATE) / 1000;
        let mut start = 0u64;
        for beep in self.tone.pattern() {
            let on = u64::from(beep.on_ms) * per_ms;
            let end = start + on + u64::from(beep.off_ms) * per_ms;
            if n < start + on {
                let t = (n - start) as f64 / f64::from(SAMPLE_RATE);
                // A 5 ms ramp at each edge: no click.
                let ramp_samples = 5 * per_ms;
                let into = n - start;
                let edge = into.min(on - 1 - into).min(ramp_samples) as f64 / ramp_samples as f64;
                return Some((AMPLITUDE * edge * (2.0 * std::f64::consts::PI * beep.hz * t).sin()) as i16);
            }
            if n < end {
                return Some(0);
            }
            start = end;
        }
        None
    }

    /// Adds the next samples of the tone to `pcm` (48 kHz mono), saturating; `false` once the tone has ended
    /// (the player can then be dropped).
    pub fn mix_into(&mut self, pcm: &mut [i16]) -> bool {
        for s in pcm.iter_mut() {
            let Some(tone) = self.sample(self.played) else { return false };
            *s = s.saturating_add(tone);
            self.played += 1;
        }
        self.sample(self.played).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole tone, mixed into silence.
    fn render(tone: CallTone) -> Vec<i16> {
        let mut player = TonePlayer::new(tone);
        let mut out = Vec::new();
        loop {
            let mut packet = [0i16; 960];
            let more = player.mix_into(&mut packet);
            out.extend_from_slice(&packet);
            if !more {
                return out;
            }
        }
    }

    /// RMS of a stretch of samples.
    fn rms(s: &[i16]) -> f64 {
        (s.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
    }

    #[test]
    fn the_wrong_code_tone_is_two_short_low_beeps() {
        let tone = CallTone::WrongCode;
        assert_eq!(tone.duration().as_millis(), 500);
        let pcm = render(tone);
        let ms = |n: usize| n * 48;
        assert!(pcm.len() >= ms(500) && pcm.len() < ms(520), "{}", pcm.len());
        // Sound, silence, sound, silence.
        assert!(rms(&pcm[ms(10)..ms(140)]) > 4_000.0);
        assert!(rms(&pcm[ms(155)..ms(245)]) == 0.0);
        assert!(rms(&pcm[ms(260)..ms(390)]) > 4_000.0);
        assert!(rms(&pcm[ms(405)..]) == 0.0);
        // 400 Hz: 60 zero crossings in 75 ms (two a period).
        let beep = &pcm[ms(20)..ms(95)];
        let crossings = beep.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        assert!((58..=62).contains(&crossings), "{crossings}");
        // No click: the first and last samples of a beep are near zero.
        assert!(pcm[0].abs() < 100 && pcm[ms(150) - 1].abs() < 400, "{} {}", pcm[0], pcm[ms(150) - 1]);
    }

    #[test]
    fn the_tone_is_mixed_into_what_is_sent_and_saturates() {
        let mut player = TonePlayer::new(CallTone::WrongCode);
        let mut loud = [i16::MAX - 10; 960];
        assert!(player.mix_into(&mut loud));
        assert!(loud.iter().all(|&s| s >= i16::MAX - 10 - 8_000), "added, not replaced");
        assert!(loud.contains(&i16::MAX), "saturated, not wrapped");
        // The end: false, and nothing more is added.
        let mut player = TonePlayer::new(CallTone::WrongCode);
        let mut sink = vec![0i16; 48 * 500];
        assert!(!player.mix_into(&mut sink));
        let mut after = [7i16; 960];
        assert!(!player.mix_into(&mut after));
        assert!(after.iter().all(|&s| s == 7));
    }
}

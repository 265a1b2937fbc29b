//! DTMF carried in the audio stream, as pure logic over RTP payloads and PCM (no sockets, no clock): RFC 4733
//! telephone-events received ([`EventReceiver`]: one digit per event, whatever the redundant end packets, the
//! packets of a long event, reordering and loss) and sent ([`EventSender`]: the packets of queued digits, one per
//! 20 ms audio frame), and in-band tones detected with the Goertzel algorithm ([`ToneDetector`], for gateways that
//! send DTMF as audio).

/// The sixteen DTMF digits, by RFC 4733 event code (0-9, `*` 10, `#` 11, A-D 12-15).
const DIGITS: &[u8; 16] = b"0123456789*#ABCD";

/// The RFC 4733 event code of a DTMF digit (`None` for anything else).
pub fn event_code(digit: char) -> Option<u8> {
    let upper = digit.to_ascii_uppercase();
    DIGITS.iter().position(|d| char::from(*d) == upper).and_then(|i| u8::try_from(i).ok())
}

/// The DTMF digit of an RFC 4733 event code (`None` for other events: flash, fax tones, ...).
pub fn digit_of(code: u8) -> Option<char> {
    DIGITS.get(usize::from(code)).map(|d| char::from(*d))
}

/// One RFC 4733 telephone-event payload (the first 4 bytes of an RTP payload of the telephone-event type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub code: u8,
    /// The E bit: this packet ends the event (sent three times).
    pub end: bool,
    /// Power level, 0 to -63 dBm0 as 0..=63.
    pub volume: u8,
    /// Duration so far, in units of the telephone-event clock rate.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses a payload; `None` when it is shorter than 4 bytes.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let [code, flags, d0, d1, ..] = *payload else { return None };
        Some(TelephoneEvent {
            code,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// The 4-byte payload.
    pub fn to_bytes(self) -> [u8; 4] {
        let flags = if self.end { 0x80 } else { 0 } | (self.volume & 0x3f);
        let [d0, d1] = self.duration.to_be_bytes();
        [self.code, flags, d0, d1]
    }
}

/// Events remembered as reported (their RTP timestamps), so that the redundant packets and late copies of an event
/// never report it twice. The newest overwrites the oldest: a packet of an event older than the newest one is
/// dropped anyway.
const REMEMBERED_EVENTS: usize = 8;

/// Turns received telephone-event packets into digits: an event is reported once, on its first packet that
/// arrives (so a lost start packet or lost end packets lose nothing); the packets of one event share its RTP
/// timestamp (RFC 4733 §2.5.1.2, a long event's later segments included). A packet of an event older than the
/// newest one reported (reordered behind a later digit) is dropped rather than reported out of order.
#[derive(Debug, Default)]
pub struct EventReceiver {
    /// RTP timestamps of the latest events reported.
    reported: heapless::HistoryBuf<u32, REMEMBERED_EVENTS>,
}

impl EventReceiver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one telephone-event RTP packet (its timestamp and payload); returns the digit when it starts a new
    /// DTMF event.
    pub fn on_packet(&mut self, timestamp: u32, payload: &[u8]) -> Option<char> {
        let event = TelephoneEvent::parse(payload)?;
        if self.reported.contains(&timestamp) {
            return None;
        }
        if let Some(&newest) = self.reported.recent() {
            // RTP timestamps wrap: "older" is a negative serial-number distance.
            if (timestamp.wrapping_sub(newest) as i32) < 0 {
                return None;
            }
        }
        let digit = digit_of(event.code)?;
        self.reported.write(timestamp);
        Some(digit)
    }
}

/// The duration of a digit sent as telephone-events.
pub const TONE_MS: u32 = 100;
/// The silence between two digits sent (audio frames go on in between).
pub const GAP_MS: u32 = 60;
/// The packet interval, one audio frame.
const PACKET_MS: u32 = 20;
/// Power level sent (-10 dBm0).
const VOLUME: u8 = 10;
/// Digits waiting to be sent, at most (one call's queue, fixed: a further digit is refused with
/// [`DtmfQueueError::Full`], those queued still go out).
pub const MAX_QUEUED_DIGITS: usize = 32;

/// One packet to send in place of an audio frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    /// The RTP marker bit: the first packet of an event.
    pub marker: bool,
    /// The RTP timestamp: the stream's timestamp when the event began (the same for all its packets).
    pub timestamp: u32,
    pub payload: [u8; 4],
}

#[derive(Debug, Clone, Copy)]
enum Sending {
    /// Tone packets sent so far (of `TONE_MS / PACKET_MS`), the event's start timestamp.
    Tone { code: u8, packets: u32, start: u32 },
    /// End packets sent so far (of 3).
    End { code: u8, sent: u32, start: u32 },
    /// Audio frames left before the next digit.
    Gap { frames: u32 },
}

/// Sends queued digits as RFC 4733 events at the negotiated clock rate, one packet per 20 ms audio frame: a
/// 100 ms tone (the first packet marked, the duration growing), three end packets, a 60 ms gap of audio.
#[derive(Debug)]
pub struct EventSender {
    clock_rate: u32,
    queue: heapless::Deque<u8, MAX_QUEUED_DIGITS>,
    state: Option<Sending>,
}

/// Why a digit was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtmfQueueError {
    #[error("not a DTMF digit")]
    NotADigit,
    #[error("{MAX_QUEUED_DIGITS} digits are already waiting to be sent")]
    Full,
}

impl EventSender {
    /// A sender for the negotiated telephone-event clock rate (8000 or 48000 Hz).
    pub fn new(clock_rate: u32) -> Self {
        EventSender { clock_rate: clock_rate.max(1000), queue: heapless::Deque::new(), state: None }
    }

    /// The clock rate the durations are counted in.
    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// Queues a digit; refused when [`MAX_QUEUED_DIGITS`] are already waiting.
    pub fn push(&mut self, digit: char) -> Result<(), DtmfQueueError> {
        let code = event_code(digit).ok_or(DtmfQueueError::NotADigit)?;
        self.queue.push_back(code).map_err(|_| DtmfQueueError::Full)
    }

    /// Whether a digit is being sent or waiting.
    pub fn is_busy(&self) -> bool {
        self.state.is_some() || !self.queue.is_empty()
    }

    fn duration(&self, packets: u32) -> u16 {
        let units = u64::from(packets * PACKET_MS) * u64::from(self.clock_rate) / 1000;
        u16::try_from(units).unwrap_or(u16::MAX)
    }

    /// Called once per 20 ms audio frame with the stream's timestamp of that frame: the packet to send instead of
    /// the audio frame, or `None` to send the audio frame.
    pub fn next_frame(&mut self, timestamp: u32) -> Option<EventPacket> {
        let tone_packets = TONE_MS / PACKET_MS;
        let state = match self.state {
            None | Some(Sending::Gap { frames: 0 }) => {
                let code = self.queue.pop_front();
                match code {
                    Some(code) => Sending::Tone { code, packets: 0, start: timestamp },
                    None => {
                        self.state = None;
                        return None;
                    }
                }
            }
            Some(Sending::Gap { frames }) => {
                self.state = Some(Sending::Gap { frames: frames - 1 });
                return None;
            }
            Some(s) => s,
        };
        let (packet, next) = match state {
            Sending::Tone { code, packets, start } => {
                let packets = packets + 1;
                let event = TelephoneEvent { code, end: false, volume: VOLUME, duration: self.duration(packets) };
                let next = if packets >= tone_packets {
                    Sending::End { code, sent: 0, start }
                } else {
                    Sending::Tone { code, packets, start }
                };
                (EventPacket { marker: packets == 1, timestamp: start, payload: event.to_bytes() }, next)
            }
            Sending::End { code, sent, start } => {
                let event = TelephoneEvent { code, end: true, volume: VOLUME, duration: self.duration(tone_packets) };
                let next = if sent + 1 >= 3 {
                    Sending::Gap { frames: GAP_MS / PACKET_MS }
                } else {
                    Sending::End { code, sent: sent + 1, start }
                };
                (EventPacket { marker: false, timestamp: start, payload: event.to_bytes() }, next)
            }
            Sending::Gap { .. } => return None,
        };
        self.state = Some(next);
        Some(packet)
    }
}

/// Row (low group) and column (high group) frequencies of the DTMF keypad.
const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COLUMNS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYPAD: [[char; 4]; 4] = [['1', '2', '3', 'A'], ['4', '5', '6', 'B'], ['7', '8', '9', 'C'], ['*', '0', '#', 'D']];
/// Detection block: 10 ms at 8 kHz is too short for the 697/770 Hz rows; 205 samples at 8 kHz (25.6 ms) is the
/// classic choice, here scaled to the input rate.
const BLOCK_MS: f32 = 25.6;
/// A digit is reported after this many consecutive blocks agree (ITU-T Q.24: a tone of 40 ms must be detected).
const BLOCKS_TO_REPORT: u32 = 2;
/// The two tones together must carry this share of the block's energy (rejects speech and music).
const MIN_TONE_SHARE: f32 = 0.6;
/// Neither tone may be weaker than the other by more than this factor (twist, about 8 dB).
const MAX_TWIST: f32 = 6.3;
/// Blocks quieter than this mean square (about -50 dBFS for full-scale i16) never hold a digit.
const MIN_POWER: f32 = 32768.0 * 32768.0 * 1e-5;

/// Detects DTMF tones in PCM (in-band DTMF from gateways that do not send telephone-events): the Goertzel power of
/// the eight keypad frequencies per 25.6 ms block; a digit is reported once when one row and one column tone
/// dominate for two blocks in a row, and again only after a block without it.
#[derive(Debug)]
pub struct ToneDetector {
    block: usize,
    coefficients: [f32; 8],
    samples: Vec<f32>,
    candidate: Option<char>,
    agreeing: u32,
    reported: Option<char>,
}

impl ToneDetector {
    /// A detector for mono PCM at `sample_rate` Hz.
    pub fn new(sample_rate: u32) -> Self {
        let rate = sample_rate.max(8000) as f32;
        let block = (rate * BLOCK_MS / 1000.0).round() as usize;
        let mut coefficients = [0f32; 8];
        for (c, f) in coefficients.iter_mut().zip(ROWS.iter().chain(COLUMNS.iter())) {
            // The bin nearest the frequency, as the Goertzel algorithm evaluates whole bins of the block.
            let k = (block as f32 * f / rate).round();
            *c = 2.0 * (2.0 * std::f32::consts::PI * k / block as f32).cos();
        }
        ToneDetector {
            block,
            coefficients,
            samples: Vec::with_capacity(block),
            candidate: None,
            agreeing: 0,
            reported: None,
        }
    }

    /// Feeds PCM; returns the digits recognised in it (at most one per block).
    pub fn push(&mut self, pcm: &[i16]) -> Vec<char> {
        let mut out = Vec::new();
        for &s in pcm {
            self.samples.push(f32::from(s));
            if self.samples.len() == self.block {
                if let Some(d) = self.on_block() {
                    out.push(d);
                }
                self.samples.clear();
            }
        }
        out
    }

    fn on_block(&mut self) -> Option<char> {
        let found = self.classify();
        if found.is_some() && found == self.candidate {
            self.agreeing += 1;
        } else {
            self.candidate = found;
            self.agreeing = u32::from(found.is_some());
        }
        match found {
            None => {
                self.reported = None;
                None
            }
            Some(d) if self.agreeing >= BLOCKS_TO_REPORT && self.reported != Some(d) => {
                self.reported = Some(d);
                Some(d)
            }
            Some(_) => None,
        }
    }

    /// The digit whose two tones dominate this block, if any.
    fn classify(&self) -> Option<char> {
        let n = self.samples.len() as f32;
        let energy: f32 = self.samples.iter().map(|s| s * s).sum::<f32>();
        if energy / n < MIN_POWER {
            return None;
        }
        let mut power = [0f32; 8];
        for (p, c) in power.iter_mut().zip(self.coefficients) {
            let (mut s1, mut s2) = (0f32, 0f32);
            for x in &self.samples {
                let s0 = x + c * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            // |X(k)|^2 scaled to the energy of a sinusoid in the block (N/2 * A^2/2 ... as a share of `energy`).
            *p = (s1 * s1 + s2 * s2 - c * s1 * s2) * 2.0 / n;
        }
        let strongest = |range: std::ops::Range<usize>| {
            range.clone().max_by(|a, b| power[*a].total_cmp(&power[*b])).map(|i| (i - range.start, power[i]))
        };
        let (row, row_power) = strongest(0..4)?;
        let (column, column_power) = strongest(4..8)?;
        if (row_power + column_power) < MIN_TONE_SHARE * energy {
            return None;
        }
        if row_power > MAX_TWIST * column_power || column_power > MAX_TWIST * row_power {
            return None;
        }
        // Each must stand clear of the other tones of its group.
        let clear =
            |group: &[f32], winner: usize, p: f32| group.iter().enumerate().all(|(i, q)| i == winner || *q * 4.0 < p);
        if !clear(&power[0..4], row, row_power) || !clear(&power[4..8], column, column_power) {
            return None;
        }
        Some(KEYPAD[row][column])
    }
}

#[cfg(test)]
mod tests;

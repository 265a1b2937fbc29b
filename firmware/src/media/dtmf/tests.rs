//! Unit tests of `media::dtmf`: RFC 4733 events read and written, the receiver's dedup of repeated and end
//! packets, the sender's queue and timing, and the in-band tone detector on synthesized tones.

use super::*;

fn event(code: u8, end: bool, duration: u16) -> [u8; 4] {
    TelephoneEvent { code, end, volume: 10, duration }.to_bytes()
}

#[test]
fn digits_and_event_codes_map_both_ways() {
    for (i, d) in "0123456789*#ABCD".chars().enumerate() {
        assert_eq!(event_code(d), Some(i as u8));
        assert_eq!(digit_of(i as u8), Some(d));
    }
    assert_eq!(event_code('a'), Some(12), "lower-case A-D are the same keys");
    assert_eq!(event_code('x'), None);
    assert_eq!(digit_of(16), None, "flash is no digit");
}

#[test]
fn a_payload_round_trips_and_a_short_one_is_refused() {
    let e = TelephoneEvent { code: 11, end: true, volume: 63, duration: 0xabcd };
    assert_eq!(TelephoneEvent::parse(&e.to_bytes()), Some(e));
    assert_eq!(e.to_bytes(), [11, 0x80 | 63, 0xab, 0xcd]);
    assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), None);
    // Extra bytes (a redundant RFC 2198 block would be another payload type) are ignored.
    assert_eq!(TelephoneEvent::parse(&[5, 0, 0, 160, 9, 9]).map(|e| e.code), Some(5));
}

#[test]
fn one_event_is_one_digit_whatever_its_packets() {
    let mut r = EventReceiver::new();
    // Start, continuation, three redundant end packets: one digit.
    assert_eq!(r.on_packet(1000, &event(1, false, 160)), Some('1'));
    assert_eq!(r.on_packet(1000, &event(1, false, 320)), None);
    for _ in 0..3 {
        assert_eq!(r.on_packet(1000, &event(1, true, 800)), None);
    }
    // The same digit again is a new event (a new timestamp).
    assert_eq!(r.on_packet(5000, &event(1, false, 160)), Some('1'));
}

#[test]
fn a_lost_start_or_lost_end_loses_no_digit() {
    let mut r = EventReceiver::new();
    // Only the end packets arrive.
    assert_eq!(r.on_packet(1000, &event(2, true, 800)), Some('2'));
    // Only the start arrives; the next digit still counts.
    assert_eq!(r.on_packet(3000, &event(3, false, 160)), Some('3'));
    assert_eq!(r.on_packet(6000, &event(4, false, 160)), Some('4'));
}

#[test]
fn a_long_event_in_segments_is_one_digit() {
    // RFC 4733 §2.5.1.3: past the 16-bit duration the event goes on in segments with the same timestamp.
    let mut r = EventReceiver::new();
    assert_eq!(r.on_packet(7, &event(9, false, 65535)), Some('9'));
    assert_eq!(r.on_packet(7, &event(9, false, 800)), None);
    assert_eq!(r.on_packet(7, &event(9, true, 1600)), None);
}

#[test]
fn reordered_packets_keep_the_digit_order() {
    let mut r = EventReceiver::new();
    assert_eq!(r.on_packet(2000, &event(5, false, 160)), Some('5'));
    // A late packet of an earlier event, overtaken by a later one: dropped, not reported after '5'.
    assert_eq!(r.on_packet(1000, &event(4, true, 800)), None);
    // A late redundant end of the reported event: nothing.
    assert_eq!(r.on_packet(2000, &event(5, true, 800)), None);
    assert_eq!(r.on_packet(3000, &event(6, false, 160)), Some('6'));
}

#[test]
fn timestamps_that_wrap_are_still_newer() {
    let mut r = EventReceiver::new();
    assert_eq!(r.on_packet(u32::MAX - 100, &event(1, false, 160)), Some('1'));
    assert_eq!(r.on_packet(200, &event(2, false, 160)), Some('2'));
}

#[test]
fn non_digit_events_and_garbage_are_ignored() {
    let mut r = EventReceiver::new();
    assert_eq!(r.on_packet(1, &event(16, false, 160)), None, "flash");
    assert_eq!(r.on_packet(2, &[0xff]), None);
    assert_eq!(r.on_packet(3, &event(0, false, 160)), Some('0'));
}

/// Runs a sender for `frames` audio frames of 20 ms at a 48 kHz stream clock.
fn run(s: &mut EventSender, frames: u32) -> Vec<Option<EventPacket>> {
    (0..frames).map(|i| s.next_frame(10_000 + i * 960)).collect()
}

#[test]
fn a_digit_is_a_marked_tone_three_ends_and_a_gap() {
    let mut s = EventSender::new(8000);
    s.push('#').unwrap();
    let out = run(&mut s, 12);
    let packets: Vec<EventPacket> = out.iter().take(8).map(|p| p.expect("an event packet")).collect();
    // 5 tone packets of growing duration (20 ms = 160 units at 8 kHz), then 3 end packets.
    for (i, p) in packets.iter().enumerate() {
        let e = TelephoneEvent::parse(&p.payload).unwrap();
        assert_eq!(e.code, 11);
        assert_eq!(p.timestamp, 10_000, "every packet carries the event's start");
        assert_eq!(p.marker, i == 0);
        if i < 5 {
            assert!(!e.end);
            assert_eq!(e.duration, 160 * (i as u16 + 1));
        } else {
            assert!(e.end);
            assert_eq!(e.duration, 800);
        }
    }
    // Then audio again: the gap, and nothing more queued.
    assert!(out[8..].iter().all(Option::is_none));
    assert!(!s.is_busy());
}

#[test]
fn durations_follow_the_negotiated_clock() {
    let mut s = EventSender::new(48_000);
    s.push('1').unwrap();
    let first = s.next_frame(0).unwrap();
    assert_eq!(TelephoneEvent::parse(&first.payload).unwrap().duration, 960);
}

#[test]
fn queued_digits_follow_each_other_after_a_gap_and_a_receiver_reads_them_back() {
    let mut s = EventSender::new(8000);
    for d in "1234".chars() {
        s.push(d).unwrap();
    }
    let mut r = EventReceiver::new();
    let mut got = String::new();
    let mut audio_frames = 0;
    for (i, p) in run(&mut s, 60).into_iter().enumerate() {
        match p {
            Some(p) => got.extend(r.on_packet(p.timestamp, &p.payload)),
            None if i < 41 => audio_frames += 1,
            None => {}
        }
    }
    assert_eq!(got, "1234");
    assert_eq!(audio_frames, 3 * 3, "a 60 ms gap of audio between digits");
}

#[test]
fn the_queue_is_bounded_and_refuses_non_digits() {
    let mut s = EventSender::new(8000);
    assert_eq!(s.push('x'), Err(DtmfQueueError::NotADigit));
    for _ in 0..MAX_QUEUED_DIGITS {
        s.push('5').unwrap();
    }
    assert_eq!(s.push('5'), Err(DtmfQueueError::Full));
}

#[test]
fn a_full_queue_still_sends_every_digit_queued_in_order_and_takes_more_after() {
    let mut s = EventSender::new(8000);
    let digits: String = "0123456789*#ABCD".repeat(2);
    assert_eq!(digits.len(), MAX_QUEUED_DIGITS);
    for d in digits.chars() {
        s.push(d).unwrap();
    }
    assert_eq!(s.push('1'), Err(DtmfQueueError::Full), "the refused digit is not queued");
    let mut r = EventReceiver::new();
    let mut got = String::new();
    for frame in 0..(12 * (MAX_QUEUED_DIGITS as u32 + 1)) {
        if let Some(p) = s.next_frame(frame * 160) {
            got.extend(r.on_packet(p.timestamp, &p.payload));
        }
        if frame == 0 {
            // The first frame took the first digit off the queue: room for one more.
            s.push('9').unwrap();
            assert_eq!(s.push('9'), Err(DtmfQueueError::Full));
        }
    }
    assert!(!s.is_busy());
    assert_eq!(got, format!("{digits}9"));
}

/// PCM of a DTMF digit (both tones at `amplitude` each) for `ms`, at `rate`.
fn tone(digit: char, ms: u32, rate: u32, amplitude: f32) -> Vec<i16> {
    let (r, c) = KEYPAD
        .iter()
        .enumerate()
        .find_map(|(r, row)| row.iter().position(|d| *d == digit).map(|c| (r, c)))
        .expect("a keypad digit");
    let n = (rate * ms / 1000) as usize;
    (0..n)
        .map(|i| {
            let t = i as f32 / rate as f32;
            let v = amplitude
                * ((2.0 * std::f32::consts::PI * ROWS[r] * t).sin()
                    + (2.0 * std::f32::consts::PI * COLUMNS[c] * t).sin());
            v as i16
        })
        .collect()
}

fn silence(ms: u32, rate: u32) -> Vec<i16> {
    vec![0; (rate * ms / 1000) as usize]
}

#[test]
fn in_band_tones_are_detected_once_each_at_both_rates() {
    for rate in [8000, 48_000] {
        let mut d = ToneDetector::new(rate);
        let mut pcm = Vec::new();
        for digit in "159#0*D".chars() {
            pcm.extend(tone(digit, 100, rate, 8000.0));
            pcm.extend(silence(60, rate));
        }
        assert_eq!(d.push(&pcm).into_iter().collect::<String>(), "159#0*D", "at {rate} Hz");
    }
}

#[test]
fn a_held_key_is_one_digit_and_fed_in_pieces_is_the_same() {
    let mut d = ToneDetector::new(48_000);
    let pcm: Vec<i16> = tone('7', 600, 48_000, 6000.0);
    let mut got = String::new();
    for chunk in pcm.chunks(480) {
        got.extend(d.push(chunk));
    }
    assert_eq!(got, "7");
}

#[test]
fn speech_like_sound_silence_and_a_single_tone_are_no_digit() {
    let rate = 48_000;
    let mut d = ToneDetector::new(rate);
    // One keypad frequency alone (a dial tone of 697 Hz is not a digit).
    let single: Vec<i16> = (0..rate / 2)
        .map(|i| (8000.0 * (2.0 * std::f32::consts::PI * 697.0 * i as f32 / rate as f32).sin()) as i16)
        .collect();
    assert!(d.push(&single).is_empty());
    // A chord of non-keypad frequencies with noise (voice-like energy spread).
    let mut seed = 1u32;
    let chord: Vec<i16> = (0..rate / 2)
        .map(|i| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let noise = ((seed >> 16) as f32 / 32768.0 - 1.0) * 3000.0;
            let t = i as f32 / rate as f32;
            (noise
                + 5000.0 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()
                + 4000.0 * (2.0 * std::f32::consts::PI * 1100.0 * t).sin()) as i16
        })
        .collect();
    assert!(d.push(&chord).is_empty());
    assert!(d.push(&silence(500, rate)).is_empty());
    // A tone too short for two blocks (30 ms) is not reported.
    assert!(d.push(&tone('3', 30, rate, 8000.0)).is_empty());
}

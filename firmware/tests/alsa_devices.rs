//! The ALSA audio backend through real alsa-lib without sound hardware: `file` PCMs over `null` defined
//! in an asoundrc (tests/fixtures/alsa/asoundrc.in) that this test writes to a temporary directory and
//! loads with ALSA_CONFIG_PATH. That variable is process-wide and read at alsa-lib's first use, so
//! these tests live in their own test binary and every one calls [`setup`] before touching ALSA.

use callbox::devices::audio::alsa::{AlsaBackend, AlsaConfig, Pacing};
use callbox::devices::audio::{tone_power, AudioBackend, AudioCapture, AudioPlayback};
use callbox::devices::{AudioFrame, DeviceError, DeviceKind, AUDIO_FRAME_SAMPLES, SAMPLE_RATE};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TONE_HZ: f64 = 1000.0;
const TONE_DBFS: f64 = -12.0;
/// Length of the tone file: more than any test reads.
const TONE_SECONDS: usize = 3;

/// The tone the capture PCM plays: 1 kHz at -12 dBFS peak.
fn tone() -> Vec<i16> {
    let amplitude = 32_767.0 * 10f64.powf(TONE_DBFS / 20.0);
    (0..TONE_SECONDS * SAMPLE_RATE as usize)
        .map(|i| {
            (amplitude * (2.0 * std::f64::consts::PI * TONE_HZ * i as f64 / f64::from(SAMPLE_RATE)).sin()).round()
                as i16
        })
        .collect()
}

fn to_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

fn from_bytes(bytes: &[u8]) -> Vec<i16> {
    bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

/// Writes the tone and the asoundrc, points ALSA_CONFIG_PATH at it (once, before any ALSA call);
/// returns the directory.
fn setup() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let _ = env_logger::builder().is_test(true).try_init();
        // Leftovers of earlier runs (their process gone) are removed; this run's stays for inspection.
        if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("callbox-alsa-test-") {
                    if !Path::new("/proc").join(pid).exists() {
                        let _ = std::fs::remove_dir_all(entry.path());
                    }
                }
            }
        }
        let dir = std::env::temp_dir().join(format!("callbox-alsa-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tone.raw"), to_bytes(&tone())).unwrap();
        let template = include_str!("fixtures/alsa/asoundrc.in");
        let rc = dir.join("asoundrc");
        std::fs::write(&rc, template.replace("@DIR@", dir.to_str().unwrap())).unwrap();
        std::env::set_var("ALSA_CONFIG_PATH", format!("/usr/share/alsa/alsa.conf:{}", rc.display()));
        dir
    })
}

fn clock_backend() -> AlsaBackend {
    AlsaBackend::new(AlsaConfig { pacing: Pacing::Clock, ..AlsaConfig::default() })
}

fn read_frames(mic: &mut dyn AudioCapture, frames: usize) -> Vec<i16> {
    let mut out = Vec::with_capacity(frames * AUDIO_FRAME_SAMPLES);
    let mut frame: AudioFrame = [0; AUDIO_FRAME_SAMPLES];
    for _ in 0..frames {
        mic.read(&mut frame).unwrap();
        out.extend_from_slice(&frame);
    }
    out
}

/// Deterministic test signal (LCG noise), different for every seed.
fn noise(len: usize, seed: u32) -> Vec<i16> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 16) as i16
        })
        .collect()
}

#[test]
fn tone_is_captured_with_its_frequency_level_and_samples() {
    setup();
    let backend = clock_backend();
    let mut mic = backend.open_microphone("callbox_tone").unwrap();
    let params = mic.params();
    assert_eq!((params.rate, params.channels), (SAMPLE_RATE, 1));
    assert!(params.period_frames > 0 && params.buffer_frames >= params.period_frames, "{params:?}");
    let got = read_frames(&mut mic, 50);

    // Frequency: all the energy at 1 kHz, nothing at 800 Hz or 1.25 kHz.
    let on = tone_power(&got, TONE_HZ);
    for off_hz in [800.0, 1250.0] {
        let off = tone_power(&got, off_hz);
        assert!(on > 1000.0 * off, "1 kHz power {on:e}, {off_hz} Hz power {off:e}");
    }
    // Zero crossings: two per period, 1000 periods per second, 0.5 s read.
    let crossings = got.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    assert!((990..=1010).contains(&crossings), "{crossings} zero crossings in 0.5 s");
    // Level: -12 dBFS peak (8231), RMS 3 dB below.
    let peak = got.iter().map(|s| i32::from(*s).abs()).max().unwrap();
    let rms = (got.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / got.len() as f64).sqrt();
    let rms_dbfs = 20.0 * (rms / 32_767.0).log10();
    assert!((8150..=8300).contains(&peak), "peak {peak}");
    assert!((rms_dbfs - (TONE_DBFS - 3.01)).abs() < 0.2, "rms {rms_dbfs:.2} dBFS");
    // And sample-exact: what the file holds, from its start.
    assert_eq!(got, tone()[..got.len()]);
    assert_eq!(mic.xruns(), 0);
}

#[test]
fn played_frames_land_in_the_output_file_sample_exact() {
    let dir = setup();
    let backend = clock_backend();
    let sent = noise(30 * AUDIO_FRAME_SAMPLES, 7);
    {
        let mut speaker = backend.open_playback("callbox_out").unwrap();
        assert_eq!(speaker.id(), "callbox_out");
        for chunk in sent.chunks_exact(AUDIO_FRAME_SAMPLES) {
            let frame: &AudioFrame = chunk.try_into().unwrap();
            speaker.write(frame).unwrap();
        }
        assert!(speaker.delay_samples().is_some());
    } // closing flushes the file
    let written = from_bytes(&std::fs::read(dir.join("out.raw")).unwrap());
    assert!(written.len() >= sent.len(), "{} samples in the file, {} sent", written.len(), sent.len());
    assert_eq!(written[..sent.len()], sent[..]);
    // Anything after is padding of silence up to a period.
    assert!(written[sent.len()..].iter().all(|&s| s == 0));
}

#[test]
fn clock_pacing_takes_real_time() {
    setup();
    let backend = clock_backend();
    let mut mic = backend.open_capture("callbox_tone").unwrap();
    let start = Instant::now();
    let got = read_frames(mic.as_mut(), 100);
    let capture = start.elapsed();
    assert_eq!(got.len(), 100 * AUDIO_FRAME_SAMPLES);

    let mut speaker = backend.open_playback("callbox_pace_out").unwrap();
    let frame: AudioFrame = [100; AUDIO_FRAME_SAMPLES];
    let start = Instant::now();
    for _ in 0..100 {
        speaker.write(&frame).unwrap();
    }
    let playback = start.elapsed();
    println!("100 frames: capture {capture:?}, playback {playback:?}");
    assert!(capture >= Duration::from_millis(800), "capture of 100 frames took {capture:?}");
    assert!(playback >= Duration::from_millis(800), "playback of 100 frames took {playback:?}");
}

#[test]
fn device_pacing_on_a_clockless_pcm_still_delivers() {
    setup();
    // Without our clock a `file` PCM completes at once: data is right, just not paced.
    let backend = AlsaBackend::new(AlsaConfig::default());
    let mut mic = backend.open_microphone("callbox_tone").unwrap();
    let got = read_frames(&mut mic, 20);
    assert_eq!(got, tone()[..got.len()]);
}

#[test]
fn nonexistent_pcm_is_an_open_error_naming_it() {
    setup();
    let backend = clock_backend();
    for result in [backend.open_capture("callbox_nosuch").err(), backend.open_playback("callbox_nosuch").err()] {
        match result {
            Some(e @ DeviceError::Open { .. }) => {
                let DeviceError::Open { device, reason } = &e else { unreachable!() };
                assert_eq!(device, "callbox_nosuch");
                assert!(!reason.is_empty());
                assert!(e.to_string().contains("callbox_nosuch"), "{e}");
                println!("{e}");
            }
            other => panic!("expected DeviceError::Open, got {other:?}"),
        }
    }
}

#[test]
fn stereo_only_pcm_gets_mono_duplicated() {
    let dir = setup();
    let backend = clock_backend();
    let sent = noise(10 * AUDIO_FRAME_SAMPLES, 11);
    {
        let mut speaker = backend.open_speaker("callbox_stereo").unwrap();
        assert_eq!(speaker.params().channels, 2);
        for chunk in sent.chunks_exact(AUDIO_FRAME_SAMPLES) {
            speaker.write(chunk.try_into().unwrap()).unwrap();
        }
    }
    for side in ["left.raw", "right.raw"] {
        let written = from_bytes(&std::fs::read(dir.join(side)).unwrap());
        assert!(written.len() >= sent.len(), "{side}: {} samples", written.len());
        assert_eq!(written[..sent.len()], sent[..], "{side}");
    }
    // Capture opens too (downmixed); a `multi` of `file` PCMs captures silence.
    let mut mic = backend.open_microphone("callbox_stereo").unwrap();
    assert_eq!(mic.params().channels, 2);
    let got = read_frames(&mut mic, 3);
    assert!(got.iter().all(|&s| s == 0));
}

#[test]
fn list_shows_the_configured_pcms() {
    setup();
    let backend = clock_backend();
    let list = backend.list();
    for d in &list {
        println!("{:?} {} ({}) {:?}", d.kind, d.id, d.name, d.node);
    }
    let find = |kind: DeviceKind, id: &str| list.iter().find(|d| d.kind == kind && d.id == id);
    let tone = find(DeviceKind::Microphone, "callbox_tone").expect("callbox_tone listed as a microphone");
    assert_eq!(tone.name, "callbox test tone");
    assert_eq!(tone.node, None);
    assert!(find(DeviceKind::Speaker, "callbox_out").is_some());
    assert!(find(DeviceKind::Speaker, "callbox_tone").is_none(), "hinted as input only");
    assert!(find(DeviceKind::Microphone, "callbox_out").is_none(), "hinted as output only");
    // Unhinted PCMs are listed both ways; `null` is left out.
    assert!(find(DeviceKind::Speaker, "callbox_pace_out").is_some());
    assert!(!list.iter().any(|d| d.id == "null"));
}

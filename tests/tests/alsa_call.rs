//! Audio through real alsa-lib in a real call: the front door's microphone is an ALSA `file` PCM
//! reading a 1 kHz tone, the monitor's speaker an ALSA `file` PCM writing what it plays to a file;
//! between them the whole path (capture thread, Opus, WebRTC through Janus and Kamailio, jitter
//! buffer, playout thread). The played file is checked: the tone's frequency dominates and its level
//! arrives within the codec's tolerance. ALSA_CONFIG_PATH is process-wide, hence a test binary of its own.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use callbox::calling::CallState;
use callbox::devices::audio::alsa::{AlsaBackend, AlsaConfig, Pacing};
use callbox::devices::audio::tone_share;
use callbox::devices::video::sim::SimVideoBackend;
use callbox::devices::{DeviceManager, DevicePreferences, SAMPLE_RATE};
use callbox_tests::{Stack, StackOptions};
use common::*;

/// The door's microphone plays 1 kHz, the monitor's 600 Hz: each speaker must play the other's.
const DOOR_HZ: f64 = 1000.0;
const MONITOR_HZ: f64 = 600.0;
/// Peak level of the tone files; their RMS is 3 dB lower.
const TONE_DBFS: f64 = -12.0;
const TONE_SECONDS: usize = 60;

fn tone_file(path: &Path, hz: f64) {
    let amplitude = 32_767.0 * 10f64.powf(TONE_DBFS / 20.0);
    let tone: Vec<u8> = (0..TONE_SECONDS * SAMPLE_RATE as usize)
        .flat_map(|i| {
            let x = amplitude * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(SAMPLE_RATE)).sin();
            (x.round() as i16).to_le_bytes()
        })
        .collect();
    std::fs::write(path, tone).unwrap();
}

/// Tone files and an asoundrc with each appliance's microphone (a `file` PCM reading its tone) and
/// speaker (a `file` PCM writing what it plays), loaded through ALSA_CONFIG_PATH.
fn write_setup() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callbox-alsa-call-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    tone_file(&dir.join("door-tone.raw"), DOOR_HZ);
    tone_file(&dir.join("monitor-tone.raw"), MONITOR_HZ);
    let mut rc = String::new();
    for who in ["door", "monitor"] {
        rc += &format!(
            "pcm.{who}_mic {{ type file slave.pcm null infile \"{d}/{who}-tone.raw\" file \"{d}/{who}-mic-copy.raw\" \
             format raw hint {{ show on description \"{who} microphone|IOIDInput\" }} }}\n\
             pcm.{who}_speaker {{ type file slave.pcm null file \"{d}/{who}-played.raw\" format raw \
             hint {{ show on description \"{who} speaker|IOIDOutput\" }} }}\n",
            d = dir.display()
        );
    }
    std::fs::write(dir.join("asoundrc"), rc).unwrap();
    std::env::set_var("ALSA_CONFIG_PATH", format!("/usr/share/alsa/alsa.conf:{}", dir.join("asoundrc").display()));
    dir
}

/// ALSA audio (clockless `file` PCMs: the backend paces them) and a simulated camera.
fn alsa_devices(microphone: &str, speaker: &str) -> DeviceManager {
    let alsa = AlsaBackend::new(AlsaConfig { pacing: Pacing::Clock, ..AlsaConfig::default() });
    let manager = DeviceManager::new(Arc::new(alsa), Arc::new(SimVideoBackend::new()), DevicePreferences::in_memory());
    let ids = |list: Vec<callbox::devices::DeviceInfo>| list.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert!(ids(manager.microphones()).contains(&microphone.to_owned()), "{:?}", manager.microphones());
    assert!(ids(manager.speakers()).contains(&speaker.to_owned()), "{:?}", manager.speakers());
    manager
}

fn samples(path: &Path) -> Vec<i16> {
    std::fs::read(path).unwrap().chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

fn rms_dbfs(x: &[i16]) -> f64 {
    let mean = x.iter().map(|&v| (f64::from(v) / 32768.0).powi(2)).sum::<f64>() / x.len().max(1) as f64;
    10.0 * mean.max(1e-12).log10()
}

/// What a speaker played, after the call: the far end's tone dominates and arrives at about its level.
fn assert_played(path: &Path, hz: f64, who: &str) {
    let played = samples(path);
    // The last 2 s before the hang-up (the start holds silence until the call connected).
    let n = 2 * SAMPLE_RATE as usize;
    assert!(played.len() > n, "{who} played only {} samples", played.len());
    let tail = &played[played.len() - n..];
    let share = tone_share(tail, hz);
    let level = rms_dbfs(tail);
    log::info!("{who} played {} samples; last 2 s: {hz} Hz share {share:.3}, level {level:.1} dBFS", played.len());
    assert!(share > 0.8, "{who}: {hz} Hz is {share:.3} of what was played");
    // -12 dBFS peak is -15 dBFS RMS; Opus and the jitter buffer keep it within a few dB.
    assert!((-19.0..=-12.0).contains(&level), "{who}: played at {level:.1} dBFS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tones_from_alsa_microphones_are_played_on_the_far_end_alsa_speakers() {
    let dir = write_setup();
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let config = |who: &str| {
        let mut config = client_config(&stack);
        config.media.devices = alsa_devices(&format!("{who}_mic"), &format!("{who}_speaker"));
        config.media.microphone = Some(format!("{who}_mic"));
        config.media.speaker = Some(format!("{who}_speaker"));
        config
    };
    let door = appliance_with(&stack, "front-door", config("door")).await;
    let monitor = appliance_with(&stack, "monitor", config("monitor")).await;
    let mut monitor_events = monitor.events();
    let call = door.call(&[user("monitor")]).expect("call placed");
    let mut call_events = call.events();
    let incoming = next_incoming(&monitor, &mut monitor_events).await;
    let answered = incoming.accept().await.expect("accept");
    wait_state(&call, &mut call_events, CallState::Connected).await;
    assert_audio_level(&answered, "monitor", -30.0).await;
    assert_audio_level(&call, "front-door", -30.0).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = answered.media_stats().expect("stats");
    log::info!(
        "monitor: capture to send {:.1} ms, network to speaker {} ms, {} frames concealed",
        stats.audio_capture_to_send_ms,
        stats.audio_playout_delay_ms,
        stats.audio_concealed_frames
    );
    call.hang_up().await.expect("hang up");
    door.shutdown().await;
    monitor.shutdown().await;
    assert_played(&dir.join("monitor-played.raw"), DOOR_HZ, "monitor");
    assert_played(&dir.join("door-played.raw"), MONITOR_HZ, "front door");
    let _ = std::fs::remove_dir_all(&dir);
}

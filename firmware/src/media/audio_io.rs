//! The call's audio between the devices and the network, on two threads of their own (ALSA calls
//! block): the capture thread reads 10 ms microphone frames, cancels the echo, encodes 20 ms Opus
//! packets and hands them to the RTP writer; the playout thread pulls 10 ms frames from the jitter
//! buffer at the speaker's pace, gives them to the echo canceller as the far-end reference, meters
//! them and writes them to the speaker. A device that fails is reopened with backoff while the other
//! side goes on; the threads end when the session closes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::audio::{LevelMeter, OpusEncoder};
use super::call_tone::TonePlayer;
use super::echo::{CaptureHalf, RenderHalf};
use super::mixer::Mixer;
use super::{AudioConfig, MediaError};
use crate::calling::Backoff;
use crate::devices::audio::{AudioCapture, AudioPlayback};
use crate::devices::{AudioFrame, DeviceKind, DeviceManager, AUDIO_FRAME_SAMPLES};

/// Reopen backoff of a failed microphone or speaker.
const REOPEN: Backoff =
    Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5), max_attempts: None };
/// Encoded packets waiting for the RTP writer (a stuck writer loses the newest, never blocks capture).
pub(crate) const ENCODED_QUEUE: usize = 16;
/// Opus frame: two 10 ms device frames.
const FRAMES_PER_PACKET: usize = 2;

/// One encoded 20 ms packet, when its first sample was captured, and its RFC 6464 level (0 loudest, 127 silence).
pub(crate) struct EncodedAudio {
    pub payload: Bytes,
    pub captured_at: Instant,
    pub level: u8,
}

/// What the playout thread reports for each frame it plays.
pub(crate) trait PlayoutObserver: Send + Sync + 'static {
    /// A 100 ms level window completed (RMS dBFS of what was played).
    fn level(&self, dbfs: f32);
    /// A 10 ms frame was played (48 kHz mono).
    fn frame(&self, pcm: &[i16]);
}

/// State shared between the session and its audio threads.
pub(crate) struct AudioIoShared {
    pub stop: AtomicBool,
    pub muted: AtomicBool,
    /// The remote streams' jitter buffers, mixed for the speaker.
    pub playout: Mutex<Mixer>,
    /// What was played, newest last (bounded), for tests and measurements.
    pub played: Mutex<VecDeque<i16>>,
    pub max_played: usize,
    pub epoch: Instant,
    pub mic_frames: AtomicU64,
    pub mic_reopens: AtomicU64,
    pub speaker_frames: AtomicU64,
    pub speaker_reopens: AtomicU64,
    /// Speaker-side latency: jitter-buffer delay plus what the device holds, in ms (latest).
    pub playout_delay_ms: AtomicU64,
    /// A tone being mixed into what is sent (`MediaSession::play_tone`).
    pub tone: Mutex<Option<TonePlayer>>,
}

impl AudioIoShared {
    pub(crate) fn new(playout: Mixer, max_played: usize) -> Arc<Self> {
        Arc::new(AudioIoShared {
            stop: AtomicBool::new(false),
            muted: AtomicBool::new(false),
            playout: Mutex::new(playout),
            played: Mutex::new(VecDeque::new()),
            max_played,
            epoch: Instant::now(),
            mic_frames: AtomicU64::new(0),
            mic_reopens: AtomicU64::new(0),
            speaker_frames: AtomicU64::new(0),
            speaker_reopens: AtomicU64::new(0),
            playout_delay_ms: AtomicU64::new(0),
            tone: Mutex::new(None),
        })
    }

    /// Monotonic time since the session started (the jitter buffer's clock).
    pub(crate) fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    pub(crate) fn playout(&self) -> std::sync::MutexGuard<'_, Mixer> {
        self.playout.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drains what was played so far.
    pub(crate) fn take_played(&self) -> Vec<i16> {
        self.played.lock().unwrap_or_else(|p| p.into_inner()).drain(..).collect()
    }
}

/// The two audio threads of a session.
pub(crate) struct AudioIo {
    shared: Arc<AudioIoShared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl AudioIo {
    /// Opens the microphone and speaker (or keeps retrying) and starts both threads.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        shared: Arc<AudioIoShared>,
        devices: DeviceManager,
        microphone: Option<String>,
        speaker: Option<String>,
        config: &AudioConfig,
        capture_processing: Option<CaptureHalf>,
        render_processing: Option<RenderHalf>,
        encoded: mpsc::Sender<EncodedAudio>,
        observer: Arc<dyn PlayoutObserver>,
    ) -> Result<AudioIo, MediaError> {
        let encoder = OpusEncoder::with_options(config.bitrate_bps, config.fec, config.dtx)?;
        let spawn_err = |e: std::io::Error| MediaError::Audio(format!("cannot start an audio thread: {e}"));
        let capture = {
            let (shared, devices) = (Arc::clone(&shared), devices.clone());
            std::thread::Builder::new()
                .name("cbx-mic".into())
                .spawn(move || capture_loop(shared, devices, microphone, capture_processing, encoder, encoded))
                .map_err(spawn_err)?
        };
        let playout = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("cbx-speaker".into())
                .spawn(move || playout_loop(shared, devices, speaker, render_processing, observer))
                .map_err(spawn_err)?
        };
        Ok(AudioIo { shared, threads: vec![capture, playout] })
    }

    /// Stops both threads and waits for them to release the devices (bounded: a thread stuck in a
    /// driver call is left behind, logged).
    pub(crate) async fn stop(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let threads = std::mem::take(&mut self.threads);
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        });
        if tokio::time::timeout(Duration::from_secs(3), joined).await.is_err() {
            log::warn!("an audio thread did not stop within 3 s (device stuck?)");
        }
    }
}

impl Drop for AudioIo {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

/// Sleeps in short steps, returning false as soon as the session stops.
fn nap(shared: &AudioIoShared, total: Duration) -> bool {
    let deadline = Instant::now() + total;
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

/// Opens a device with backoff until it opens or the session stops.
fn open_with_backoff<D>(
    shared: &AudioIoShared,
    kind: DeviceKind,
    mut open: impl FnMut() -> Result<D, crate::devices::DeviceError>,
    failures: &mut u32,
) -> Option<D> {
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return None;
        }
        match open() {
            // `failures` is reset by the caller once the device has worked (opening is not enough).
            Ok(d) => return Some(d),
            Err(e) => {
                if failures.is_power_of_two() || *failures == 0 {
                    log::warn!("{} unavailable: {e} (retrying)", kind.as_str());
                }
                let delay = REOPEN.delay(*failures, rand::random()).unwrap_or(REOPEN.max);
                *failures = failures.saturating_add(1);
                if !nap(shared, delay) {
                    return None;
                }
            }
        }
    }
}

fn capture_loop(
    shared: Arc<AudioIoShared>,
    devices: DeviceManager,
    id: Option<String>,
    mut processor: Option<CaptureHalf>,
    mut encoder: OpusEncoder,
    encoded: mpsc::Sender<EncodedAudio>,
) {
    let mut failures = 0u32;
    let mut frame: AudioFrame = [0; AUDIO_FRAME_SAMPLES];
    let mut packet = [0i16; AUDIO_FRAME_SAMPLES * FRAMES_PER_PACKET];
    let mut filled = 0usize;
    let mut first_at = Instant::now();
    let mut dropped = 0u64;
    let mut opened_before = false;
    'device: while !shared.stop.load(Ordering::SeqCst) {
        let open = || devices.open_microphone(id.as_deref());
        let Some(mut mic): Option<Box<dyn AudioCapture>> =
            open_with_backoff(&shared, DeviceKind::Microphone, open, &mut failures)
        else {
            break;
        };
        if opened_before {
            shared.mic_reopens.fetch_add(1, Ordering::Relaxed);
            log::info!("microphone {} reopened", mic.id());
        } else {
            log::info!("microphone {} open for the call", mic.id());
        }
        opened_before = true;
        while !shared.stop.load(Ordering::SeqCst) {
            if let Err(e) = mic.read(&mut frame) {
                if failures == 0 || failures.is_power_of_two() {
                    log::warn!("microphone {}: {e}; reopening", mic.id());
                }
                filled = 0;
                drop(mic);
                // A device that opens but fails at once must not be reopened in a tight loop.
                let delay = REOPEN.delay(failures, rand::random()).unwrap_or(REOPEN.max);
                failures = failures.saturating_add(1);
                if !nap(&shared, delay) {
                    break 'device;
                }
                continue 'device;
            }
            failures = 0;
            let now = Instant::now();
            shared.mic_frames.fetch_add(1, Ordering::Relaxed);
            if let Some(p) = processor.as_mut() {
                if let Err(e) = p.process_capture(&mut frame) {
                    log::debug!("echo canceller (capture): {e}");
                }
            }
            if filled == 0 {
                first_at = now;
            }
            packet[filled * AUDIO_FRAME_SAMPLES..(filled + 1) * AUDIO_FRAME_SAMPLES].copy_from_slice(&frame);
            filled += 1;
            if filled < FRAMES_PER_PACKET {
                continue;
            }
            filled = 0;
            if shared.muted.load(Ordering::Relaxed) {
                packet.fill(0);
            }
            // A tone for the far end goes out muted or not: it is the appliance's, not the microphone's.
            {
                let mut tone = shared.tone.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(player) = tone.as_mut() {
                    if !player.mix_into(&mut packet) {
                        *tone = None;
                    }
                }
            }
            let payload = match encoder.encode(&packet) {
                Ok(p) => Bytes::copy_from_slice(p),
                Err(e) => {
                    log::warn!("{e}");
                    continue;
                }
            };
            let level = super::audio::rtp_audio_level(&packet);
            if encoded.try_send(EncodedAudio { payload, captured_at: first_at, level }).is_err() {
                if encoded.is_closed() {
                    break 'device;
                }
                dropped += 1;
                if dropped.is_power_of_two() {
                    log::warn!("audio send queue full: {dropped} packets dropped");
                }
            }
        }
    }
    log::debug!("capture thread ended");
}

fn playout_loop(
    shared: Arc<AudioIoShared>,
    devices: DeviceManager,
    id: Option<String>,
    mut processor: Option<RenderHalf>,
    observer: Arc<dyn PlayoutObserver>,
) {
    let mut failures = 0u32;
    let mut frame: AudioFrame = [0; AUDIO_FRAME_SAMPLES];
    let mut meter = LevelMeter::default();
    let frame_period = Duration::from_millis(10);
    // Without a speaker the jitter buffer is still drained at real time, so the call's audio state
    // (levels, speaking) goes on and nothing piles up.
    let mut speaker: Option<Box<dyn AudioPlayback>> = None;
    let mut opened_before = false;
    let mut retry_at = Instant::now();
    let mut next_tick = Instant::now();
    while !shared.stop.load(Ordering::SeqCst) {
        if speaker.is_none() && Instant::now() >= retry_at {
            match devices.open_speaker(id.as_deref()) {
                Ok(s) => {
                    if opened_before {
                        log::info!("speaker {} reopened", s.id());
                        shared.speaker_reopens.fetch_add(1, Ordering::Relaxed);
                    } else {
                        log::info!("speaker {} open for the call", s.id());
                    }
                    opened_before = true;
                    speaker = Some(s);
                }
                Err(e) => {
                    if failures == 0 || failures.is_power_of_two() {
                        log::warn!("speaker unavailable: {e} (retrying)");
                    }
                    retry_at = Instant::now() + REOPEN.delay(failures, rand::random()).unwrap_or(REOPEN.max);
                    failures = failures.saturating_add(1);
                }
            }
        }
        let buffered_ms = {
            let mut playout = shared.playout();
            playout.next_frame(shared.now(), &mut frame);
            playout.stats().buffered_ms
        };
        if let Some(p) = processor.as_mut() {
            if let Err(e) = p.process_render(&frame) {
                log::debug!("echo canceller (render): {e}");
            }
        }
        if let Some(dbfs) = meter.push(&frame) {
            observer.level(dbfs);
        }
        observer.frame(&frame);
        {
            let mut played = shared.played.lock().unwrap_or_else(|p| p.into_inner());
            played.extend(frame.iter().copied());
            let excess = played.len().saturating_sub(shared.max_played);
            played.drain(..excess);
        }
        shared.speaker_frames.fetch_add(1, Ordering::Relaxed);
        let written = match speaker.as_mut() {
            Some(s) => match s.write(&frame) {
                Ok(()) => {
                    failures = 0;
                    let device_ms = s.delay_samples().map(|d| u64::from(d) / 48).unwrap_or(0);
                    shared.playout_delay_ms.store(u64::from(buffered_ms) + device_ms, Ordering::Relaxed);
                    true
                }
                Err(e) => {
                    if failures == 0 || failures.is_power_of_two() {
                        log::warn!("speaker {}: {e}; reopening", s.id());
                    }
                    retry_at = Instant::now() + REOPEN.delay(failures, rand::random()).unwrap_or(REOPEN.max);
                    failures = failures.saturating_add(1);
                    false
                }
            },
            None => false,
        };
        if written {
            next_tick = Instant::now();
            continue;
        }
        speaker = None;
        next_tick += frame_period;
        let now = Instant::now();
        if next_tick > now {
            std::thread::sleep(next_tick - now);
        } else {
            next_tick = now;
        }
    }
    log::debug!("playout thread ended");
}

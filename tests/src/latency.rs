//! Glass-to-glass video and mouth-to-ear audio latency of a 1:1 call between two in-process appliances through
//! the local stack (issue 17): what `bench_latency` prints and the `latency` integration test checks. The
//! sender's simulated camera remembers when it captured each counter-stamped frame and its microphone when each
//! tone burst started; the receiver's session remembers when it decoded each counter, an optional in-memory
//! screen when it presented each counter, and its simulated speaker when it played each sample, in which the
//! bursts' onsets are found. Both appliances share this process, so their `Instant`s compare directly.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callbox::calling::{CallState, Identifier, ScalingMode};
use callbox::client::{Call, CallClient, ClientConfig, ClientError, Screen};
use callbox::devices::audio::sim::{SimAudioBackend, SimSource, SimSpeakerTap};
use callbox::devices::audio::tone_onsets;
use callbox::devices::video::sim::{SimVideoBackend, DEFAULT_CAMERA_ID};
use callbox::devices::{DeviceManager, DevicePreferences};
use callbox::display::{Framebuffer, FramebufferFormat, MemoryFramebuffer, Rect};
use callbox::frame::{read_frame_counter, VideoFrame};

use crate::Stack;

/// The sender's burst microphone.
pub const BURST_MIC: &str = "sim:bursts";
/// The receiver's silent microphone (nothing of it must be taken for a burst at the sender).
pub const SILENT_MIC: &str = "sim:silence";
/// The receiver's speaker.
pub const SPEAKER: &str = "sim:speaker";
/// The bursts' frequency: away from the speech band's low end, exactly 48 samples a period at 48 kHz.
pub const BURST_HZ: f32 = 1000.0;
/// Level of the bursts at the microphone.
pub const BURST_DBFS: f32 = -20.0;
/// From one burst to the next: longer than any plausible mouth-to-ear latency, so each heard onset belongs to
/// the last burst before it; an odd number of 10 ms frames, so onsets fall in turn on the first and the second
/// frame of a 20 ms Opus packet (which waits 20 or 10 ms for its packet to fill).
pub const BURST_PERIOD: Duration = Duration::from_millis(410);
/// How long a burst lasts.
pub const BURST_LENGTH: Duration = Duration::from_millis(80);
/// An onset heard: the tone's power in a 2 ms window at or above that of a -40 dBFS sine...
const ONSET_POWER: f64 = 0.01 * 0.01 / 4.0;
/// ... after at least 100 ms below it.
const ONSET_QUIET: usize = 4_800;
/// How often the figures are collected (well inside every ring's memory).
const POLL: Duration = Duration::from_millis(250);
/// Bound on every wait for the far end or the servers.
const WAIT: Duration = Duration::from_secs(30);

/// What to measure.
#[derive(Debug, Clone)]
pub struct LatencyOptions {
    /// The call's warm-up before the figures are collected (the first keyframe, the jitter buffer settling).
    pub warmup: Duration,
    /// How long the figures are collected.
    pub measure: Duration,
    /// The video both ways: width, height, frames per second.
    pub video: (u32, u32, u32),
    /// VP8 preferred (else H.264).
    pub vp8: bool,
    /// The receiver shows the sender's video on an in-memory screen (the video's size) redrawn at this rate.
    pub screen_fps: Option<u32>,
    /// Echo cancellation and noise suppression on both appliances, as shipped.
    pub audio_processing: bool,
}

impl Default for LatencyOptions {
    fn default() -> Self {
        LatencyOptions {
            warmup: Duration::from_secs(3),
            measure: Duration::from_secs(20),
            video: (640, 480, 30),
            vp8: false,
            screen_fps: Some(30),
            audio_processing: true,
        }
    }
}

/// The measured delays, one per frame or burst.
#[derive(Debug, Clone, Default)]
pub struct LatencyReport {
    /// Frames the sender's camera captured while the figures were collected.
    pub frames_captured: usize,
    /// Capture instant → the sender's media task took the frame from the camera.
    pub capture_to_delivered: Vec<Duration>,
    /// Capture instant → decoded at the receiver (glass to decoder).
    pub capture_to_decoded: Vec<Duration>,
    /// Decoded → presented on the receiver's screen.
    pub decoded_to_screen: Vec<Duration>,
    /// Capture instant → presented on the receiver's screen (glass to glass, without scan-out).
    pub capture_to_screen: Vec<Duration>,
    /// Bursts the sender's microphone started while the figures were collected.
    pub bursts_sent: usize,
    /// Burst onset at the sender's microphone → its onset in what the receiver's speaker played.
    pub mouth_to_ear: Vec<Duration>,
    /// Onsets heard that follow no burst by less than [`BURST_PERIOD`] (should be none).
    pub unmatched_onsets: usize,
    /// The sender's own figure, sampled at each collection: first sample of an Opus packet at the microphone →
    /// packet handed to the transport (`MediaStats::audio_capture_to_send_ms`).
    pub audio_capture_to_send: Vec<Duration>,
    /// The receiver's own figure, sampled likewise: the jitter buffer's delay plus the speaker device's
    /// (`MediaStats::audio_playout_delay_ms`).
    pub audio_playout_delay: Vec<Duration>,
}

/// Why the measurement failed.
#[derive(Debug, thiserror::Error)]
pub enum LatencyError {
    #[error("{who}: {what}: {source}")]
    Client { who: &'static str, what: &'static str, source: ClientError },
    #[error("{0}")]
    Failed(String),
}

fn client_err(who: &'static str, what: &'static str) -> impl FnOnce(ClientError) -> LatencyError {
    move |source| LatencyError::Client { who, what, source }
}

/// The sender's devices: the test-pattern camera and a microphone of tone bursts.
fn sender_devices() -> (DeviceManager, SimAudioBackend, SimVideoBackend) {
    let audio = SimAudioBackend::empty();
    let bursts = SimSource::Bursts {
        frequency_hz: BURST_HZ,
        level_dbfs: BURST_DBFS,
        period: BURST_PERIOD,
        length: BURST_LENGTH,
    };
    audio.add_microphone(BURST_MIC, "Tone bursts", bursts);
    audio.add_speaker(SPEAKER, "Simulated speaker", Duration::from_secs(1));
    let video = SimVideoBackend::new();
    let manager = DeviceManager::new(Arc::new(audio.clone()), Arc::new(video.clone()), DevicePreferences::in_memory());
    (manager, audio, video)
}

/// The receiver's devices: a silent microphone, a speaker whose output is kept, the test-pattern camera.
fn receiver_devices() -> Result<(DeviceManager, SimSpeakerTap), LatencyError> {
    let audio = SimAudioBackend::empty();
    audio.add_microphone(SILENT_MIC, "Silence", SimSource::Silence);
    let tap = audio
        .add_speaker(SPEAKER, "Simulated speaker", Duration::from_secs(10))
        .ok_or_else(|| LatencyError::Failed("cannot add the receiver's speaker".into()))?;
    let manager = DeviceManager::new(Arc::new(audio), Arc::new(SimVideoBackend::new()), DevicePreferences::in_memory());
    Ok((manager, tap))
}

fn config(stack: &Stack, o: &LatencyOptions, devices: DeviceManager, mic: &str) -> ClientConfig {
    let mut config = ClientConfig { janus_urls: vec![stack.janus_ws_url()], ..Default::default() };
    if let Some(v) = config.media.video.as_mut() {
        (v.width, v.height, v.fps) = o.video;
        if o.vp8 {
            v.codecs = callbox::media::VideoCodec::Vp8.preferred_first();
        }
    }
    if !o.audio_processing {
        config.media.audio.processing = None;
    }
    config.media.devices = devices;
    config.media.microphone = Some(mic.to_owned());
    config.media.speaker = Some(SPEAKER.to_owned());
    config
}

/// A framebuffer (in memory) that notes when each test-pattern counter in the tile `tile` was first presented.
struct TimingFramebuffer {
    fb: MemoryFramebuffer,
    tile: Arc<Mutex<Option<Rect>>>,
    presented: Arc<Mutex<BTreeMap<u32, Instant>>>,
}

/// Most presented counters kept between two collections.
const MAX_PRESENTED: usize = 1024;

impl TimingFramebuffer {
    /// The counter shown in the tile: the luma of its top quarter, where the counter band is.
    fn counter(&self, rect: Rect) -> Option<u32> {
        let (w, h) = (rect.width, rect.height);
        let mut data = vec![128u8; VideoFrame::i420_len(w, h)];
        for y in 0..(h / 4 + 1).min(h) {
            for x in 0..w {
                let [r, g, b] = self.fb.pixel(rect.x + x, rect.y + y)?;
                let rgb = (u32::from(r) << 16) | (u32::from(g) << 8) | u32::from(b);
                data[(y * w + x) as usize] = callbox::display::scale::rgb_to_luma(rgb);
            }
        }
        read_frame_counter(&VideoFrame { width: w, height: h, data: data.into() })
    }
}

impl Framebuffer for TimingFramebuffer {
    fn size(&self) -> (u32, u32) {
        self.fb.size()
    }

    fn format(&self) -> FramebufferFormat {
        self.fb.format()
    }

    fn stride(&self) -> usize {
        self.fb.stride()
    }

    fn write_rect(&mut self, rect: Rect, src: &[u32], src_stride: usize) -> Result<(), callbox::display::DisplayError> {
        self.fb.write_rect(rect, src, src_stride)
    }

    fn present(&mut self, damage: &[Rect]) -> Result<(), callbox::display::DisplayError> {
        self.fb.present(damage)?;
        let now = Instant::now();
        let tile = *self.tile.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(counter) = tile.and_then(|t| self.counter(t)) {
            let mut presented = self.presented.lock().unwrap_or_else(|e| e.into_inner());
            if presented.len() < MAX_PRESENTED {
                presented.entry(counter).or_insert(now);
            }
        }
        Ok(())
    }
}

/// The onsets found so far in what a speaker played, kept across collections.
struct OnsetFinder {
    tap: SimSpeakerTap,
    /// Samples not yet searched to the end, and the index of the first.
    pending: Vec<i16>,
    first: u64,
    /// The last onset reported (an onset is searched again while its samples stay pending).
    last: Option<u64>,
}

impl OnsetFinder {
    fn new(tap: SimSpeakerTap) -> Self {
        OnsetFinder { tap, pending: Vec::new(), first: 0, last: None }
    }

    /// Onsets played since the last call, as instants.
    fn collect(&mut self) -> Vec<Instant> {
        let (first, samples) = self.tap.take_samples_indexed();
        if self.pending.is_empty() || first != self.first + self.pending.len() as u64 {
            // A gap (the ring overflowed): start afresh.
            self.pending.clear();
            self.first = first;
        }
        self.pending.extend_from_slice(&samples);
        let mut heard = Vec::new();
        for at in tone_onsets(&self.pending, f64::from(BURST_HZ), ONSET_POWER, ONSET_QUIET) {
            let index = self.first + at as u64;
            if self.last.is_some_and(|last| index <= last) {
                continue;
            }
            self.last = Some(index);
            if let Some(played) = self.tap.played_at(index) {
                heard.push(played);
            }
        }
        // Keep enough for the quiet before an onset, and a window, to be seen again next time.
        let keep = (ONSET_QUIET + 960).min(self.pending.len());
        let drop = self.pending.len() - keep;
        self.pending.drain(..drop);
        self.first += drop as u64;
        heard
    }
}

/// Places a call from a burst-and-pattern sender to a receiver, warms up, collects the figures for
/// `o.measure`, hangs up. The receiver answers at once.
pub async fn measure(stack: &Stack, o: &LatencyOptions) -> Result<LatencyReport, LatencyError> {
    let (sender_manager, sender_audio, sender_video) = sender_devices();
    let (receiver_manager, tap) = receiver_devices()?;
    let sender_user = format!("lat-door-{}", std::process::id());
    let receiver_user = format!("lat-monitor-{}", std::process::id());
    let sender = crate::appliance::appliance(stack, &sender_user, config(stack, o, sender_manager, BURST_MIC))
        .await
        .map_err(client_err("sender", "could not start"))?;
    let receiver = crate::appliance::appliance(stack, &receiver_user, config(stack, o, receiver_manager, SILENT_MIC))
        .await
        .map_err(client_err("receiver", "could not start"))?;
    let result = measure_call(&sender, &receiver, &receiver_user, o, &sender_audio, &sender_video, tap).await;
    sender.shutdown().await;
    receiver.shutdown().await;
    result
}

async fn measure_call(
    sender: &CallClient,
    receiver: &CallClient,
    receiver_user: &str,
    o: &LatencyOptions,
    sender_audio: &SimAudioBackend,
    sender_video: &SimVideoBackend,
    tap: SimSpeakerTap,
) -> Result<LatencyReport, LatencyError> {
    let target = Identifier::user(receiver_user).map_err(|e| LatencyError::Failed(format!("user id: {e}")))?;
    let mut receiver_events = receiver.events();
    let call = sender.call(&[target]).map_err(client_err("sender", "cannot call"))?;
    let mut call_events = call.events();
    let incoming = tokio::time::timeout(WAIT, receiver.next_incoming_call(&mut receiver_events))
        .await
        .ok()
        .flatten()
        .ok_or_else(|| LatencyError::Failed("the receiver was not called".into()))?;
    let answered = incoming.accept().await.map_err(client_err("receiver", "cannot accept"))?;
    call.wait_state(&mut call_events, |s| s == CallState::Connected, WAIT)
        .await
        .map_err(|e| LatencyError::Failed(format!("the call did not connect: {e}")))?;

    let tile = Arc::new(Mutex::new(None));
    let presented = Arc::new(Mutex::new(BTreeMap::new()));
    let screen = match o.screen_fps {
        Some(fps) => Some(show(receiver, &answered, o, fps, &tile, &presented).await?),
        None => None,
    };

    tokio::time::sleep(o.warmup).await;
    let mut onsets = OnsetFinder::new(tap);
    onsets.collect();
    presented.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let start = Instant::now();
    let end = start + o.measure;
    let mut captured = BTreeMap::new();
    let mut decoded = BTreeMap::new();
    let mut shown = BTreeMap::new();
    let mut heard = Vec::new();
    let (mut capture_to_send, mut playout_delay) = (Vec::new(), Vec::new());
    loop {
        tokio::time::sleep(POLL).await;
        for r in sender_video.captured_frames(DEFAULT_CAMERA_ID).unwrap_or_default() {
            if r.captured >= start && r.captured < end {
                captured.insert(r.counter, r);
            }
        }
        for d in answered.decoded_counters() {
            decoded.entry(d.counter).or_insert(d.decoded_at);
        }
        shown.append(&mut presented.lock().unwrap_or_else(|e| e.into_inner()));
        heard.extend(onsets.collect());
        if let (Some(s), Some(r)) = (call.media_stats(), answered.media_stats()) {
            capture_to_send.push(Duration::from_secs_f64(s.audio_capture_to_send_ms.max(0.0) / 1000.0));
            playout_delay.push(Duration::from_millis(r.audio_playout_delay_ms));
        }
        if Instant::now() >= end + Duration::from_secs(1) {
            break;
        }
        if call.state() != CallState::Connected {
            return Err(LatencyError::Failed(format!("the call ended while measuring: {:?}", call.end_reason())));
        }
    }
    drop(screen);
    let _ = call.hang_up().await;

    let mut report = LatencyReport {
        frames_captured: captured.len(),
        audio_capture_to_send: capture_to_send,
        audio_playout_delay: playout_delay,
        ..Default::default()
    };
    for (counter, r) in &captured {
        report.capture_to_delivered.push(r.delivered.saturating_duration_since(r.captured));
        if let Some(at) = decoded.get(counter) {
            report.capture_to_decoded.push(at.saturating_duration_since(r.captured));
            if let Some(on_screen) = shown.get(counter) {
                report.decoded_to_screen.push(on_screen.saturating_duration_since(*at));
            }
        }
        if let Some(on_screen) = shown.get(counter) {
            report.capture_to_screen.push(on_screen.saturating_duration_since(r.captured));
        }
    }
    let sent: Vec<Instant> = sender_audio
        .burst_onsets(BURST_MIC)
        .unwrap_or_default()
        .into_iter()
        .filter(|t| *t >= start && *t < end)
        .collect();
    report.bursts_sent = sent.len();
    for h in heard {
        match sent.iter().rev().find(|s| **s <= h) {
            Some(s) if h - *s < BURST_PERIOD => report.mouth_to_ear.push(h - *s),
            // Heard before the first burst measured, or after the last one: outside the window.
            _ if sent.first().is_none_or(|s| h < *s) || sent.last().is_some_and(|s| h >= *s + BURST_PERIOD) => {}
            _ => report.unmatched_onsets += 1,
        }
    }
    Ok(report)
}

/// Shows the caller's video on an in-memory screen of the video's size, in its only tile.
async fn show(
    receiver: &CallClient,
    answered: &Call,
    o: &LatencyOptions,
    fps: u32,
    tile: &Arc<Mutex<Option<Rect>>>,
    presented: &Arc<Mutex<BTreeMap<u32, Instant>>>,
) -> Result<(Screen, callbox::client::VideoRenderer), LatencyError> {
    let (w, h, _) = o.video;
    let fb = TimingFramebuffer {
        fb: MemoryFramebuffer::new(w, h, FramebufferFormat::Xrgb8888),
        tile: Arc::clone(tile),
        presented: Arc::clone(presented),
    };
    let screen = Screen::new(receiver, Box::new(fb), fps);
    let deadline = Instant::now() + WAIT;
    let stream = loop {
        let stream =
            answered.remote_participants().into_iter().flat_map(|p| p.video_streams()).find(|s| s.is_available());
        if let Some(s) = stream {
            break s;
        }
        if Instant::now() >= deadline {
            return Err(LatencyError::Failed("the caller's video never became available".into()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let renderer = stream.render(&screen, ScalingMode::Stretch).map_err(client_err("receiver", "cannot render"))?;
    loop {
        if let Some(rect) = renderer.target() {
            *tile.lock().unwrap_or_else(|e| e.into_inner()) = Some(rect);
            break;
        }
        if Instant::now() >= deadline {
            return Err(LatencyError::Failed("the caller's tile was never laid out".into()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((screen, renderer))
}

/// Median, 95th percentile and maximum of `samples`, in milliseconds (`None` when empty).
pub fn percentiles(samples: &[Duration]) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return None;
    }
    let at = |q: f64| v[((q * (n - 1) as f64).round() as usize).min(n - 1)];
    Some((at(0.5), at(0.95), v[n - 1]))
}

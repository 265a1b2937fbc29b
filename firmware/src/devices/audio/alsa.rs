//! ALSA backend (alsa-lib through the `alsa` crate): lists the sound cards' PCMs and the PCMs the ALSA
//! configuration defines, opens microphones and speakers at 48 kHz S16 native-endian (mono, or stereo
//! downmixed on capture / duplicated on playback when the device refuses mono), with period and buffer
//! near [`AlsaConfig`]; recovers from xruns and suspends (counted, logged sparingly), reports a device
//! that went away as [`DeviceError::Gone`] and one that delivers nothing as [`DeviceError::Stalled`]:
//! reads and writes never block for longer than [`STALL_TIMEOUT`].

use super::{AudioBackend, AudioCapture, AudioDeviceInfo, AudioPlayback, FramePacer};
use crate::devices::{AudioFrame, DeviceError, DeviceKind, AUDIO_FRAME_SAMPLES, SAMPLE_RATE};
use alsa::pcm::{Access, Format, HwParams, State, PCM};
use alsa::{Direction, ValueOr};
use std::ffi::CString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a read or write waits for the device before giving up with [`DeviceError::Stalled`].
pub const STALL_TIMEOUT: Duration = Duration::from_millis(500);
/// Most channels a device may insist on (we downmix / duplicate to and from mono).
pub const MAX_CHANNELS: u32 = 8;
/// Xruns are logged at most once per this interval (with the running count).
const XRUN_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Caps on what [`AlsaBackend::list`] walks.
const MAX_CARDS: usize = 32;
const MAX_DEVICES_PER_CARD: usize = 32;
const MAX_HINTS: usize = 256;
const MAX_LISTED: usize = 128;
/// alsa-lib messages kept in an error text.
const MAX_ALSA_MESSAGE: usize = 400;
/// Attempts (50 ms apart) to resume a suspended device before preparing it afresh.
const RESUME_ATTEMPTS: u32 = 6;
/// Configuration PCMs that are converters or sinks, not devices a person would pick.
const SKIPPED_CONFIG_PCMS: &[&str] = &[
    "null",
    "lavrate",
    "samplerate",
    "samplerate_best",
    "samplerate_medium",
    "samplerate_order",
    "samplerate_linear",
    "speexrate",
    "speexrate_best",
    "speexrate_medium",
    "upmix",
    "vdownmix",
];

/// Who keeps time for a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pacing {
    /// The sound card's clock: reads and writes wait (in `snd_pcm_wait`, bounded) until the hardware has
    /// captured a period or made room for one. The normal setting for any real device.
    #[default]
    Device,
    /// Our own monotonic clock, one 10 ms frame per tick ([`FramePacer`]). For PCMs without a hardware
    /// clock, such as alsa-lib's `null` and `file` plugins: they complete every read and write at once,
    /// so without this a capture thread would spin producing audio as fast as the CPU goes and a playout
    /// thread would drain its jitter buffer in a burst. Do not use it on a real card: its clock and ours
    /// drift apart and the stream ends in xruns.
    Clock,
}

/// Buffering and pacing of ALSA streams (per board).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlsaConfig {
    /// Period (the wake-up granularity) asked of the device, in µs; the device grants the nearest it can.
    pub period_us: u32,
    /// Whole ring buffer asked of the device, in µs (latency added each way); granted nearest.
    pub buffer_us: u32,
    /// Who keeps time.
    pub pacing: Pacing,
}

impl Default for AlsaConfig {
    fn default() -> Self {
        AlsaConfig { period_us: 10_000, buffer_us: 20_000, pacing: Pacing::Device }
    }
}

/// What the device granted when it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantedParams {
    /// Sample rate (always [`SAMPLE_RATE`]: anything else is refused at open).
    pub rate: u32,
    /// Channels on the device side (1, or more when mono was refused).
    pub channels: u32,
    /// Period in frames.
    pub period_frames: u32,
    /// Ring buffer in frames.
    pub buffer_frames: u32,
}

/// The ALSA audio backend. Cheap to share; every stream it opens adds to its xrun count.
#[derive(Debug, Clone)]
pub struct AlsaBackend {
    config: AlsaConfig,
    xruns: Arc<AtomicU64>,
}

impl AlsaBackend {
    /// A backend opening streams with `config`.
    pub fn new(config: AlsaConfig) -> Self {
        AlsaBackend { config, xruns: Arc::new(AtomicU64::new(0)) }
    }

    /// The configuration streams are opened with.
    pub fn config(&self) -> &AlsaConfig {
        &self.config
    }

    /// Xruns and suspends recovered so far, over all streams this backend opened.
    pub fn xruns(&self) -> u64 {
        self.xruns.load(Ordering::Relaxed)
    }

    /// Opens a microphone (concrete type: gives access to [`AlsaCapture::xruns`] and the granted params).
    pub fn open_microphone(&self, id: &str) -> Result<AlsaCapture, DeviceError> {
        Stream::open(id, DeviceKind::Microphone, &self.config, self.xruns.clone()).map(|stream| AlsaCapture { stream })
    }

    /// Opens a speaker (concrete type: gives access to [`AlsaPlayback::xruns`] and the granted params).
    pub fn open_speaker(&self, id: &str) -> Result<AlsaPlayback, DeviceError> {
        Stream::open(id, DeviceKind::Speaker, &self.config, self.xruns.clone()).map(|stream| AlsaPlayback { stream })
    }
}

impl AudioBackend for AlsaBackend {
    /// Cards' PCMs first (`hw:CARD=<id>,DEV=<n>`, named after the card, with their `/dev/snd` node), then
    /// the PCMs the ALSA configuration defines (`default`, asoundrc entries; no node). Never fails: what
    /// cannot be read is skipped and logged at debug.
    fn list(&self) -> Vec<AudioDeviceInfo> {
        let (list, messages) = with_alsa_messages(|| {
            let mut out = Vec::new();
            list_cards(&mut out);
            list_config_pcms(&mut out);
            out.truncate(MAX_LISTED);
            out
        });
        if !messages.is_empty() {
            log::debug!("alsa-lib while listing devices: {messages}");
        }
        list
    }

    fn open_capture(&self, id: &str) -> Result<Box<dyn AudioCapture>, DeviceError> {
        Ok(Box::new(self.open_microphone(id)?))
    }

    fn open_playback(&self, id: &str) -> Result<Box<dyn AudioPlayback>, DeviceError> {
        Ok(Box::new(self.open_speaker(id)?))
    }
}

/// An open ALSA microphone.
#[derive(Debug)]
pub struct AlsaCapture {
    stream: Stream,
}

impl AlsaCapture {
    /// Xruns (overruns) and suspends recovered on this stream.
    pub fn xruns(&self) -> u64 {
        self.stream.xruns
    }

    /// What the device granted.
    pub fn params(&self) -> GrantedParams {
        self.stream.params
    }
}

impl AudioCapture for AlsaCapture {
    fn read(&mut self, frame: &mut AudioFrame) -> Result<(), DeviceError> {
        self.stream.read(frame)
    }

    fn id(&self) -> &str {
        &self.stream.id
    }
}

/// An open ALSA speaker.
#[derive(Debug)]
pub struct AlsaPlayback {
    stream: Stream,
}

impl AlsaPlayback {
    /// Xruns (underruns) and suspends recovered on this stream.
    pub fn xruns(&self) -> u64 {
        self.stream.xruns
    }

    /// What the device granted.
    pub fn params(&self) -> GrantedParams {
        self.stream.params
    }
}

impl AudioPlayback for AlsaPlayback {
    fn write(&mut self, frame: &AudioFrame) -> Result<(), DeviceError> {
        self.stream.write(frame)
    }

    /// `snd_pcm_delay`: frames written and not yet played (`None` when the device cannot tell).
    fn delay_samples(&mut self) -> Option<u32> {
        if self.stream.gone.is_some() {
            return None;
        }
        match self.stream.pcm.delay() {
            Ok(d) => Some(u32::try_from(d.max(0)).unwrap_or(u32::MAX)),
            Err(_) => None,
        }
    }

    fn id(&self) -> &str {
        &self.stream.id
    }
}

/// One open PCM and its bookkeeping, either direction.
struct Stream {
    pcm: PCM,
    id: String,
    kind: DeviceKind,
    params: GrantedParams,
    /// Own clock for [`Pacing::Clock`], started on the first read/write.
    clock: bool,
    pacer: Option<FramePacer>,
    /// One frame in the device's layout (480 × channels samples), allocated at open.
    buf: Vec<i16>,
    /// Set once the device is gone: every later call returns Gone with this reason.
    gone: Option<String>,
    xruns: u64,
    total_xruns: Arc<AtomicU64>,
    xruns_logged: u64,
    last_xrun_log: Option<Instant>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("params", &self.params)
            .field("clock", &self.clock)
            .field("gone", &self.gone)
            .field("xruns", &self.xruns)
            .finish()
    }
}

/// What to do about an error code from alsa-lib.
enum ErrorClass {
    /// Not ready yet (EAGAIN) or interrupted: wait and retry.
    Retry,
    /// Over/underrun (EPIPE).
    Xrun,
    /// Suspended (ESTRPIPE).
    Suspended,
    /// The device went away.
    Gone,
    /// Anything else.
    Other,
}

fn classify(errno: i32) -> ErrorClass {
    match errno {
        libc::EAGAIN | libc::EINTR => ErrorClass::Retry,
        libc::EPIPE => ErrorClass::Xrun,
        libc::ESTRPIPE => ErrorClass::Suspended,
        libc::ENODEV | libc::ENXIO | libc::EBADFD | libc::EIO | libc::ESHUTDOWN | libc::ENOENT => ErrorClass::Gone,
        _ => ErrorClass::Other,
    }
}

/// `strerror` text of an alsa-lib error, with the function that failed.
fn describe(e: &alsa::Error) -> String {
    format!("{} ({})", std::io::Error::from_raw_os_error(e.errno()), e.func())
}

impl Stream {
    fn open(
        id: &str,
        kind: DeviceKind,
        config: &AlsaConfig,
        total_xruns: Arc<AtomicU64>,
    ) -> Result<Stream, DeviceError> {
        let (result, messages) = with_alsa_messages(|| open_pcm(id, kind, config));
        let (pcm, params) = result.map_err(|e| match e {
            DeviceError::Open { device, reason } if !messages.is_empty() => {
                DeviceError::Open { device, reason: format!("{reason} (alsa-lib: {messages})") }
            }
            other => other,
        })?;
        let downmix = match (params.channels, kind) {
            (1, _) => String::new(),
            (n, DeviceKind::Microphone) => format!(", {n} channels downmixed to mono"),
            (n, _) => format!(", mono duplicated to {n} channels"),
        };
        let pacing = if config.pacing == Pacing::Clock { ", paced by our clock" } else { "" };
        log::info!(
            "{} {id} opened: {} Hz, period {}, buffer {}{downmix}{pacing}",
            kind.as_str(),
            params.rate,
            params.period_frames,
            params.buffer_frames
        );
        let samples = AUDIO_FRAME_SAMPLES * params.channels as usize;
        Ok(Stream {
            pcm,
            id: id.to_string(),
            kind,
            params,
            clock: config.pacing == Pacing::Clock,
            pacer: None,
            buf: vec![0; samples],
            gone: None,
            xruns: 0,
            total_xruns,
            xruns_logged: 0,
            last_xrun_log: None,
        })
    }

    fn check_gone(&self) -> Result<(), DeviceError> {
        match &self.gone {
            Some(reason) => Err(DeviceError::Gone { device: self.id.clone(), reason: reason.clone() }),
            None => Ok(()),
        }
    }

    fn pace(&mut self) {
        if self.clock {
            self.pacer.get_or_insert_with(FramePacer::new).wait_next();
        }
    }

    fn read(&mut self, frame: &mut AudioFrame) -> Result<(), DeviceError> {
        self.check_gone()?;
        // A real capture returns a frame once it has been captured: wait out its 10 ms first.
        self.pace();
        let channels = self.params.channels as usize;
        let deadline = Instant::now() + STALL_TIMEOUT;
        let mut got = 0usize; // frames
        self.ensure_running()?;
        while got < AUDIO_FRAME_SAMPLES {
            let result = {
                let pcm = &self.pcm;
                let buf = &mut self.buf[got * channels..];
                pcm.io_i16().and_then(|io| io.readi(buf))
            };
            match result {
                Ok(0) => self.wait_ready(deadline)?,
                Ok(n) => got += n,
                Err(e) => {
                    self.handle_error(e, deadline)?;
                    self.ensure_running()?;
                }
            }
        }
        if channels == 1 {
            frame.copy_from_slice(&self.buf[..AUDIO_FRAME_SAMPLES]);
        } else {
            for (out, chunk) in frame.iter_mut().zip(self.buf.chunks_exact(channels)) {
                let sum: i32 = chunk.iter().map(|&s| i32::from(s)).sum();
                *out = (sum / channels as i32) as i16;
            }
        }
        Ok(())
    }

    fn write(&mut self, frame: &AudioFrame) -> Result<(), DeviceError> {
        self.check_gone()?;
        let channels = self.params.channels as usize;
        if channels == 1 {
            self.buf.copy_from_slice(frame);
        } else {
            for (chunk, &s) in self.buf.chunks_exact_mut(channels).zip(frame.iter()) {
                chunk.fill(s);
            }
        }
        let deadline = Instant::now() + STALL_TIMEOUT;
        let mut done = 0usize; // frames
        while done < AUDIO_FRAME_SAMPLES {
            let result = {
                let pcm = &self.pcm;
                let buf = &self.buf[done * channels..];
                pcm.io_i16().and_then(|io| io.writei(buf))
            };
            match result {
                Ok(0) => self.wait_ready(deadline)?,
                Ok(n) => done += n,
                Err(e) => self.handle_error(e, deadline)?,
            }
        }
        // A clockless PCM took the frame at once: hold the caller for the frame's 10 ms.
        self.pace();
        Ok(())
    }

    /// A capture stream must be running to deliver anything (started here, at the first read and after
    /// a recovery, rather than at open so that a late first read does not begin with an overrun).
    fn ensure_running(&mut self) -> Result<(), DeviceError> {
        if self.kind != DeviceKind::Microphone {
            return Ok(());
        }
        let state = self.pcm.state_raw();
        if state == State::Prepared as i32 {
            if let Err(e) = self.pcm.start() {
                return Err(self.fail(&e));
            }
        } else if state == State::Disconnected as i32 {
            return Err(self.mark_gone("device disconnected".to_string()));
        }
        Ok(())
    }

    /// How long one `snd_pcm_wait` may take before `deadline` (1 ms to 1 s), or `Stalled` once it has passed.
    fn wait_ms(&self, deadline: Instant) -> Result<u32, DeviceError> {
        let now = Instant::now();
        if now >= deadline {
            return Err(DeviceError::Stalled { device: self.id.clone(), waited: STALL_TIMEOUT });
        }
        Ok(u32::try_from((deadline - now).as_millis()).unwrap_or(u32::MAX).clamp(1, 1_000))
    }

    /// Waits (bounded by `deadline`) until the device can take or give data.
    fn wait_ready(&mut self, deadline: Instant) -> Result<(), DeviceError> {
        let ms = self.wait_ms(deadline)?;
        match self.pcm.wait(Some(ms)) {
            Ok(_) => Ok(()),
            Err(e) => self.handle_error(e, deadline),
        }
    }

    /// Handles an error of readi/writei/wait: waits on EAGAIN, recovers xruns and suspends, turns the
    /// rest into Gone or Io. `Ok` means: try the transfer again.
    fn handle_error(&mut self, e: alsa::Error, deadline: Instant) -> Result<(), DeviceError> {
        match classify(e.errno()) {
            ErrorClass::Retry => {
                // Not ready: wait for the device (bounded). A wait that itself says EAGAIN is retried
                // after a short sleep rather than recursing.
                let ms = self.wait_ms(deadline)?;
                match self.pcm.wait(Some(ms)) {
                    Ok(_) => Ok(()),
                    Err(w) => match classify(w.errno()) {
                        ErrorClass::Retry => {
                            std::thread::sleep(Duration::from_millis(1));
                            Ok(())
                        }
                        ErrorClass::Xrun | ErrorClass::Suspended => self.recover(w),
                        _ => Err(self.fail(&w)),
                    },
                }
            }
            ErrorClass::Xrun | ErrorClass::Suspended => self.recover(e),
            ErrorClass::Gone | ErrorClass::Other => Err(self.fail(&e)),
        }
    }

    /// Recovers from an xrun (prepare) or a suspend (resume, bounded, else prepare); counts it.
    fn recover(&mut self, e: alsa::Error) -> Result<(), DeviceError> {
        self.count_xrun(matches!(classify(e.errno()), ErrorClass::Suspended));
        let result = if e.errno() == libc::ESTRPIPE {
            // snd_pcm_recover would retry resume once a second for as long as it says EAGAIN: bound it.
            let mut resumed = Err(e);
            for _ in 0..RESUME_ATTEMPTS {
                resumed = self.pcm.resume();
                match &resumed {
                    Err(r) if r.errno() == libc::EAGAIN => std::thread::sleep(Duration::from_millis(50)),
                    _ => break,
                }
            }
            match resumed {
                Ok(()) => Ok(()),
                Err(_) => self.pcm.prepare(),
            }
        } else {
            self.pcm.try_recover(e, true)
        };
        result.map_err(|r| self.fail(&r))
    }

    fn count_xrun(&mut self, suspend: bool) {
        self.xruns += 1;
        self.total_xruns.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let due = self.last_xrun_log.is_none_or(|t| now.duration_since(t) >= XRUN_LOG_INTERVAL);
        if due {
            let what = if suspend {
                "suspended"
            } else if self.kind == DeviceKind::Microphone {
                "overrun"
            } else {
                "underrun"
            };
            log::warn!(
                "{} {}: {what}, recovered ({} xruns so far, {} since the last report)",
                self.kind.as_str(),
                self.id,
                self.xruns,
                self.xruns - self.xruns_logged
            );
            self.xruns_logged = self.xruns;
            self.last_xrun_log = Some(now);
        }
    }

    /// Turns an unrecoverable error into Gone (remembered) or Io.
    fn fail(&mut self, e: &alsa::Error) -> DeviceError {
        match classify(e.errno()) {
            ErrorClass::Gone => self.mark_gone(describe(e)),
            _ => DeviceError::Io { device: self.id.clone(), reason: describe(e) },
        }
    }

    fn mark_gone(&mut self, reason: String) -> DeviceError {
        if self.gone.is_none() {
            log::warn!("{} {} disappeared: {reason}", self.kind.as_str(), self.id);
            self.gone = Some(reason.clone());
        }
        DeviceError::Gone { device: self.id.clone(), reason }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.gone.is_some() {
            return;
        }
        // Playback: let what was written reach the device (a `file` PCM flushes its buffer here). The PCM
        // is non-blocking, so drain returns at once (EAGAIN) on a card still playing; close then drops.
        if self.kind == DeviceKind::Speaker {
            let _ = self.pcm.drain();
        }
        if self.xruns > 0 {
            log::info!("{} {} closed after {} xruns", self.kind.as_str(), self.id, self.xruns);
        }
    }
}

/// Runs `f` with alsa-lib's error messages for this thread captured (instead of printed on stderr);
/// returns them joined on one line (bounded).
fn with_alsa_messages<T>(f: impl FnOnce() -> T) -> (T, String) {
    let output = alsa::Output::local_error_handler().ok();
    let value = f();
    let mut messages = output
        .map(|o| o.borrow().to_string().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; "))
        .unwrap_or_default();
    if messages.len() > MAX_ALSA_MESSAGE {
        let mut cut = MAX_ALSA_MESSAGE;
        while !messages.is_char_boundary(cut) {
            cut -= 1;
        }
        messages.truncate(cut);
        messages.push('…');
    }
    // Swap the filled buffer for an empty one so messages do not pile up on this thread.
    drop(alsa::Output::local_error_handler());
    (value, messages)
}

/// Opens and configures a PCM; errors name it.
fn open_pcm(id: &str, kind: DeviceKind, config: &AlsaConfig) -> Result<(PCM, GrantedParams), DeviceError> {
    let open_err = |reason: String| DeviceError::Open { device: id.to_string(), reason };
    let format_err = |reason: String| DeviceError::Format { device: id.to_string(), reason };
    let name = CString::new(id).map_err(|_| open_err("the name contains a NUL byte".into()))?;
    let dir = if kind == DeviceKind::Microphone { Direction::Capture } else { Direction::Playback };
    // Non-blocking: open fails at once on a busy device, and reads/writes wait only in snd_pcm_wait,
    // with a timeout.
    let pcm = PCM::open(&name, dir, true).map_err(|e| {
        open_err(match e.errno() {
            libc::ENOENT => format!("no such {} PCM in the ALSA configuration or no such card", kind.as_str()),
            libc::EBUSY => "busy (in use by another program)".to_string(),
            libc::EACCES | libc::EPERM => "permission denied".to_string(),
            _ => describe(&e),
        })
    })?;
    let params = {
        let hw = HwParams::any(&pcm).map_err(|e| open_err(describe(&e)))?;
        hw.set_access(Access::RWInterleaved)
            .map_err(|e| format_err(format!("no read/write interleaved access: {}", describe(&e))))?;
        hw.set_format(Format::s16()).map_err(|e| {
            format_err(format!("no S16 native-endian samples ({}); use a plughw: or plug PCM", describe(&e)))
        })?;
        let channels = if hw.test_channels(1).is_ok() {
            1
        } else if hw.test_channels(2).is_ok() {
            2
        } else {
            match hw.get_channels_min() {
                Ok(n) if (1..=MAX_CHANNELS).contains(&n) => n,
                Ok(n) => {
                    return Err(format_err(format!("needs at least {n} channels (we take at most {MAX_CHANNELS})")))
                }
                Err(e) => return Err(format_err(format!("channel count: {}", describe(&e)))),
            }
        };
        hw.set_channels(channels).map_err(|e| format_err(format!("{channels} channels: {}", describe(&e))))?;
        if hw.test_rate(SAMPLE_RATE).is_err() {
            let min = hw.get_rate_min().unwrap_or(0);
            let max = hw.get_rate_max().unwrap_or(0);
            return Err(format_err(format!(
                "no {SAMPLE_RATE} Hz (offers {min}..{max} Hz); use a plughw: or plug PCM to resample"
            )));
        }
        hw.set_rate(SAMPLE_RATE, ValueOr::Nearest).map_err(|e| format_err(format!("rate: {}", describe(&e))))?;
        // Best effort: a device that cannot come near keeps its own choice, reported below.
        let _ = hw.set_period_time_near(config.period_us, ValueOr::Nearest);
        let _ = hw.set_buffer_time_near(config.buffer_us.max(config.period_us), ValueOr::Nearest);
        pcm.hw_params(&hw).map_err(|e| format_err(format!("hardware parameters refused: {}", describe(&e))))?;
        let current = pcm.hw_params_current().map_err(|e| open_err(describe(&e)))?;
        let frames = |v: alsa::Result<alsa::pcm::Frames>| v.ok().and_then(|f| u32::try_from(f).ok()).unwrap_or(0);
        GrantedParams {
            rate: current.get_rate().unwrap_or(SAMPLE_RATE),
            channels: current.get_channels().unwrap_or(channels),
            period_frames: frames(current.get_period_size()),
            buffer_frames: frames(current.get_buffer_size()),
        }
    };
    if params.rate != SAMPLE_RATE || params.channels == 0 || params.channels > MAX_CHANNELS {
        return Err(format_err(format!("granted {} Hz, {} channels", params.rate, params.channels)));
    }
    {
        let sw = pcm.sw_params_current().map_err(|e| open_err(describe(&e)))?;
        let period = alsa::pcm::Frames::from(params.period_frames.max(1));
        let _ = sw.set_avail_min(period);
        if kind == DeviceKind::Speaker {
            // Start playing once the buffer is full, so the device begins with all the slack it has.
            let _ = sw.set_start_threshold(alsa::pcm::Frames::from(params.buffer_frames.max(1)));
        }
        pcm.sw_params(&sw).map_err(|e| open_err(format!("software parameters refused: {}", describe(&e))))?;
    }
    Ok((pcm, params))
}

/// Every card's capture and playback PCM devices as `hw:CARD=<id>,DEV=<n>`.
fn list_cards(out: &mut Vec<AudioDeviceInfo>) {
    for card in alsa::card::Iter::new().take(MAX_CARDS) {
        let card = match card {
            Ok(card) => card,
            Err(e) => {
                log::debug!("enumerating sound cards: {}", describe(&e));
                break;
            }
        };
        let index = card.get_index();
        let ctl = match alsa::Ctl::from_card(&card, false) {
            Ok(ctl) => ctl,
            Err(e) => {
                log::debug!("sound card {index}: control device: {}", describe(&e));
                continue;
            }
        };
        let (card_id, card_name) = match ctl.card_info() {
            Ok(info) => (
                info.get_id().map(str::to_string).unwrap_or_else(|_| index.to_string()),
                info.get_name().map(str::to_string).unwrap_or_else(|_| format!("card {index}")),
            ),
            Err(e) => {
                log::debug!("sound card {index}: card info: {}", describe(&e));
                (index.to_string(), format!("card {index}"))
            }
        };
        for dev in alsa::ctl::DeviceIter::new(&ctl).take(MAX_DEVICES_PER_CARD) {
            let Ok(dev) = u32::try_from(dev) else { continue };
            for (dir, kind, suffix) in
                [(Direction::Capture, DeviceKind::Microphone, 'c'), (Direction::Playback, DeviceKind::Speaker, 'p')]
            {
                let Ok(info) = ctl.pcm_info(dev, 0, dir) else { continue };
                let pcm_name = info.get_name().unwrap_or("").trim();
                let name = if pcm_name.is_empty() || pcm_name == card_name {
                    card_name.clone()
                } else {
                    format!("{card_name}: {pcm_name}")
                };
                out.push(AudioDeviceInfo {
                    kind,
                    id: format!("hw:CARD={card_id},DEV={dev}"),
                    name,
                    node: Some(PathBuf::from(format!("/dev/snd/pcmC{index}D{dev}{suffix}"))),
                });
            }
        }
    }
}

/// PCMs defined by the ALSA configuration (`default`, asoundrc entries) that are not bound to a card.
fn list_config_pcms(out: &mut Vec<AudioDeviceInfo>) {
    let mut names = Vec::new();
    match alsa::device_name::HintIter::new_str(None, "pcm") {
        Ok(hints) => {
            for hint in hints.take(MAX_HINTS) {
                let Some(name) = hint.name else { continue };
                // `hw:`, `plughw:`, `sysdefault:CARD=…`, `front:…`: card-bound, listed from the cards.
                if name.contains(':') || SKIPPED_CONFIG_PCMS.contains(&name.as_str()) {
                    continue;
                }
                let label = hint
                    .desc
                    .as_deref()
                    .and_then(|d| d.lines().map(str::trim).find(|l| !l.is_empty()))
                    .map(str::to_string)
                    .unwrap_or_else(|| name.clone());
                let kinds: &[DeviceKind] = match hint.direction {
                    Some(Direction::Capture) => &[DeviceKind::Microphone],
                    Some(Direction::Playback) => &[DeviceKind::Speaker],
                    None => &[DeviceKind::Microphone, DeviceKind::Speaker],
                };
                for &kind in kinds {
                    names.push((kind, name.clone(), label.clone()));
                }
            }
        }
        Err(e) => log::debug!("ALSA name hints: {}", describe(&e)),
    }
    // `default` is not always hinted (it is not when the configuration has no card): list it if it opens.
    for (kind, dir) in [(DeviceKind::Microphone, Direction::Capture), (DeviceKind::Speaker, Direction::Playback)] {
        if !names.iter().any(|(k, n, _)| *k == kind && n == "default") && PCM::new("default", dir, true).is_ok() {
            names.push((kind, "default".to_string(), "Default ALSA device".to_string()));
        }
    }
    for (kind, id, name) in names {
        if !out.iter().any(|d| d.kind == kind && d.id == id) {
            out.push(AudioDeviceInfo { kind, id, name, node: None });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_low_latency() {
        let c = AlsaConfig::default();
        assert_eq!((c.period_us, c.buffer_us, c.pacing), (10_000, 20_000, Pacing::Device));
    }

    #[test]
    fn errors_are_classified() {
        assert!(matches!(classify(libc::EAGAIN), ErrorClass::Retry));
        assert!(matches!(classify(libc::EPIPE), ErrorClass::Xrun));
        assert!(matches!(classify(libc::ESTRPIPE), ErrorClass::Suspended));
        assert!(matches!(classify(libc::ENODEV), ErrorClass::Gone));
        assert!(matches!(classify(libc::EBADFD), ErrorClass::Gone));
        assert!(matches!(classify(libc::EINVAL), ErrorClass::Other));
    }

    #[test]
    fn nul_in_name_is_an_open_error_not_a_panic() {
        let backend = AlsaBackend::new(AlsaConfig::default());
        match backend.open_microphone("bad\0name") {
            Err(DeviceError::Open { device, .. }) => assert_eq!(device, "bad\0name"),
            other => panic!("expected Open error, got {other:?}"),
        }
    }

    #[test]
    fn listing_without_sound_hardware_does_not_fail() {
        let backend = AlsaBackend::new(AlsaConfig::default());
        let list = backend.list();
        assert!(list.len() <= MAX_LISTED);
        for d in &list {
            assert!(!d.id.is_empty());
            if d.id.starts_with("hw:") {
                assert!(d.node.is_some(), "{d:?}");
            }
        }
    }
}

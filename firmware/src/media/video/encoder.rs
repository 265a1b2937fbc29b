//! [`VideoEncoder`]: camera frames in (I420, NV12, YUY2 or MJPEG), RTP packets out (H.264 constrained
//! baseline, packetization-mode 1, or VP8). Frames are checked against the format the encoder was started
//! for and timestamped from their capture times; an element that fails before its first frame is
//! replaced by the next candidate; the bitrate changes live (the congestion controller's output);
//! keyframes are forced on request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;

use super::pipeline::{kbps_to_bps_i32, EncoderPipeline, EncoderSpec, RtpCallback};
use super::pixel_layout::{gst_format, meta_layout};
use super::selection::{is_hardware, select_encoders, start_first, CodecPolicy, ElementRegistry};
use crate::devices::{CameraPixelFormat, CaptureFormat, CapturedFrame};
use crate::frame::VideoFrame;
use crate::media::{MediaError, VideoCodec};

/// Counters the encoder updates from GStreamer's streaming thread (and from the pushing thread for
/// skipped frames).
#[derive(Default)]
pub struct EncoderCounters {
    /// Frames out of the encoder element.
    pub frames_encoded: AtomicU64,
    /// Of those, keyframes.
    pub keyframes: AtomicU64,
    /// Input frames refused before encoding (short buffer, not a JPEG).
    pub frames_skipped: AtomicU64,
    /// RTP bytes handed to the callback.
    pub rtp_bytes: AtomicU64,
}

/// What an encoder is asked for, besides its input format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderSettings {
    /// The codec to produce.
    pub codec: VideoCodec,
    /// Encode at this size (scaled from the capture size); `None` encodes at the capture size. Odd
    /// sizes are rounded down to even (4:2:0).
    pub output_size: Option<(u32, u32)>,
    /// Starting bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// Floor of [`VideoEncoder::set_bitrate`], kbit/s.
    pub min_bitrate_kbps: u32,
    /// Ceiling of [`VideoEncoder::set_bitrate`], kbit/s.
    pub max_bitrate_kbps: u32,
    /// RTP payload type.
    pub pt: u8,
    /// RTP SSRC.
    pub ssrc: u32,
}

impl EncoderSettings {
    /// Settings at `bitrate_kbps`, with bounds of 100 kbit/s and the larger of 2500 kbit/s and the start.
    pub fn new(codec: VideoCodec, bitrate_kbps: u32, pt: u8, ssrc: u32) -> Self {
        Self {
            codec,
            output_size: None,
            bitrate_kbps,
            min_bitrate_kbps: 100.min(bitrate_kbps),
            max_bitrate_kbps: bitrate_kbps.max(2500),
            pt,
            ssrc,
        }
    }
}

/// Presentation timestamps from capture timestamps: relative to the first frame, strictly increasing
/// (a timestamp that does not advance — a driver restart, a duplicate — continues one frame on).
#[derive(Debug, Clone, Default)]
struct PtsClock {
    /// Capture timestamp at which `offset_ns` applies.
    base: Option<Duration>,
    offset_ns: u64,
    last_ns: Option<u64>,
}

impl PtsClock {
    fn next(&mut self, timestamp: Duration, frame_ns: u64) -> u64 {
        let since =
            |base: Duration| timestamp.checked_sub(base).map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let pts = match (self.base, self.last_ns) {
            (Some(base), Some(last)) => match since(base).map(|d| d.saturating_add(self.offset_ns)) {
                Some(p) if p > last => p,
                _ => {
                    self.base = Some(timestamp);
                    self.offset_ns = last.saturating_add(frame_ns);
                    self.offset_ns
                }
            },
            _ => {
                self.base = Some(timestamp);
                self.offset_ns = 0;
                0
            }
        };
        self.last_ns = Some(pts);
        pts
    }

    fn reset(&mut self) {
        *self = Self::default();
    }
}

/// Sets an integer rate property, clamped to what the property accepts. Returns the value set.
fn set_rate_property(element: &gst::Element, name: &str, value: u64) -> Result<u64, String> {
    let pspec = element.find_property(name).ok_or_else(|| format!("no property {name}"))?;
    if !pspec.flags().contains(glib::ParamFlags::WRITABLE) {
        return Err(format!("property {name} is not writable"));
    }
    if let Some(p) = pspec.downcast_ref::<glib::ParamSpecUInt>() {
        let v = value.clamp(u64::from(p.minimum()), u64::from(p.maximum()));
        element.set_property(name, u32::try_from(v).unwrap_or(p.maximum()));
        Ok(v)
    } else if let Some(p) = pspec.downcast_ref::<glib::ParamSpecInt>() {
        let v = i64::try_from(value).unwrap_or(i64::MAX).clamp(i64::from(p.minimum()), i64::from(p.maximum()));
        element.set_property(name, i32::try_from(v).unwrap_or(p.maximum()));
        Ok(u64::try_from(v).unwrap_or(0))
    } else if let Some(p) = pspec.downcast_ref::<glib::ParamSpecUInt64>() {
        let v = value.clamp(p.minimum(), p.maximum());
        element.set_property(name, v);
        Ok(v)
    } else if let Some(p) = pspec.downcast_ref::<glib::ParamSpecInt64>() {
        let v = i64::try_from(value).unwrap_or(i64::MAX).clamp(p.minimum(), p.maximum());
        element.set_property(name, v);
        Ok(u64::try_from(v).unwrap_or(0))
    } else {
        Err(format!("property {name} is of type {}", pspec.value_type()))
    }
}

/// Applies a bitrate to a running encoder element, in the unit its property takes.
fn apply_bitrate(encoder: &gst::Element, element: &str, kbps: u32) -> Result<(), String> {
    let bps = u64::from(kbps) * 1000;
    if is_hardware(element) {
        let pspec = encoder.find_property("extra-controls").ok_or("no extra-controls property")?;
        if pspec.value_type() != gst::Structure::static_type() {
            return Err(format!("extra-controls is of type {}", pspec.value_type()));
        }
        // Only the bitrate: the other controls are not changeable while streaming on every driver.
        let controls = gst::Structure::builder("controls").field("video_bitrate", kbps_to_bps_i32(kbps)).build();
        encoder.set_property("extra-controls", controls);
        return Ok(());
    }
    match element {
        "x264enc" => set_rate_property(encoder, "bitrate", u64::from(kbps)).map(drop),
        "openh264enc" => set_rate_property(encoder, "bitrate", bps).map(drop),
        "vp8enc" => set_rate_property(encoder, "target-bitrate", bps).map(drop),
        other => Err(format!("the bitrate unit of {other} is not known")),
    }
}

/// A running video encoder: push raw frames, receive RTP packets through the callback.
pub struct VideoEncoder {
    run: EncoderPipeline,
    spec: EncoderSpec,
    element: String,
    /// Candidates not yet tried, for an element that fails before its first frame.
    fallbacks: Vec<String>,
    frame_index: u64,
    clock: PtsClock,
    bitrate_kbps: u32,
    min_bitrate_kbps: u32,
    max_bitrate_kbps: u32,
}

impl VideoEncoder {
    /// Builds and starts an encoder for raw I420 frames of `width`x`height` with the given `element`
    /// (no fallback). `on_rtp` receives each RTP packet (marshalled) from a GStreamer thread; it must
    /// not block.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        codec: VideoCodec,
        element: &str,
        width: u32,
        height: u32,
        fps: u32,
        bitrate_kbps: u32,
        pt: u8,
        ssrc: u32,
        counters: Arc<EncoderCounters>,
        on_rtp: impl Fn(Bytes) + Send + Sync + 'static,
    ) -> Result<Self, MediaError> {
        let input = CaptureFormat { pixel_format: CameraPixelFormat::I420, width, height, fps };
        let mut settings = EncoderSettings::new(codec, bitrate_kbps, pt, ssrc);
        settings.output_size = Some((width, height));
        Self::start_inner(input, &settings, &[element.to_owned()], counters, Arc::new(on_rtp))
    }

    /// Builds and starts an encoder for frames in the camera's `format` (I420, NV12, YUY2 or MJPEG),
    /// converted and scaled to `settings.output_size` (default: the capture size). The encoder element
    /// is chosen under `policy` from `registry`; one that fails to start is skipped with a warning and
    /// the next tried (and so is one that fails before producing its first frame, at the next push).
    pub fn start_for_capture(
        format: CaptureFormat,
        settings: &EncoderSettings,
        policy: &CodecPolicy,
        registry: &dyn ElementRegistry,
        counters: Arc<EncoderCounters>,
        on_rtp: impl Fn(Bytes) + Send + Sync + 'static,
    ) -> Result<Self, MediaError> {
        let candidates = select_encoders(registry, settings.codec, policy)?;
        Self::start_inner(format, settings, &candidates, counters, Arc::new(on_rtp))
    }

    fn start_inner(
        input: CaptureFormat,
        settings: &EncoderSettings,
        candidates: &[String],
        counters: Arc<EncoderCounters>,
        on_rtp: RtpCallback,
    ) -> Result<Self, MediaError> {
        if input.width == 0 || input.height == 0 || input.fps == 0 {
            return Err(MediaError::Config(format!("video encoder: unusable capture format {input}")));
        }
        let (w, h) = settings.output_size.unwrap_or((input.width, input.height));
        let size = (w & !1, h & !1);
        if size.0 < 16 || size.1 < 16 {
            return Err(MediaError::Config(format!("video encoder: output size {w}x{h} is too small")));
        }
        let (lo, hi) = (settings.min_bitrate_kbps.max(1), settings.max_bitrate_kbps);
        if lo > hi {
            return Err(MediaError::Config(format!("video encoder: minimum bitrate {lo} above maximum {hi} kbit/s")));
        }
        let bitrate_kbps = settings.bitrate_kbps.clamp(lo, hi);
        let spec =
            EncoderSpec { codec: settings.codec, input, size, pt: settings.pt, ssrc: settings.ssrc, counters, on_rtp };
        let (run, element, fallbacks) = start_first("video encoder", candidates, |e| spec.build(e, bitrate_kbps))?;
        log::info!(
            "video encoder started: {:?} via {element}, {input} -> {}x{}, {bitrate_kbps} kbit/s, pt {}",
            settings.codec,
            size.0,
            size.1,
            settings.pt
        );
        Ok(Self {
            run,
            spec,
            element,
            fallbacks,
            frame_index: 0,
            clock: PtsClock::default(),
            bitrate_kbps,
            min_bitrate_kbps: lo,
            max_bitrate_kbps: hi,
        })
    }

    /// The codec produced.
    pub fn codec(&self) -> VideoCodec {
        self.spec.codec
    }

    /// The encoder element in use.
    pub fn element(&self) -> &str {
        &self.element
    }

    /// The capture format the encoder takes.
    pub fn input_format(&self) -> CaptureFormat {
        self.spec.input
    }

    /// The encoded size.
    pub fn output_size(&self) -> (u32, u32) {
        self.spec.size
    }

    /// The current target bitrate, kbit/s.
    pub fn bitrate_kbps(&self) -> u32 {
        self.bitrate_kbps
    }

    fn frame_ns(&self) -> u64 {
        1_000_000_000u64 / u64::from(self.spec.input.fps.max(1))
    }

    /// Sets the target bitrate while running (the congestion controller's output), clamped to the
    /// settings' bounds; returns the value applied. An element whose bitrate cannot be changed keeps
    /// its rate (logged).
    pub fn set_bitrate(&mut self, kbps: u32) -> u32 {
        let kbps = kbps.clamp(self.min_bitrate_kbps, self.max_bitrate_kbps);
        if kbps == self.bitrate_kbps {
            return kbps;
        }
        match apply_bitrate(&self.run.encoder, &self.element, kbps) {
            Ok(()) => {
                log::debug!("video encoder {}: bitrate {} -> {kbps} kbit/s", self.element, self.bitrate_kbps);
                self.bitrate_kbps = kbps;
            }
            Err(e) => log::warn!("video encoder {}: cannot change bitrate: {e}", self.element),
        }
        self.bitrate_kbps
    }

    /// Checks the pipeline; an element that failed before its first frame is replaced by the next
    /// candidate. Errors when the pipeline failed and cannot be replaced.
    fn ensure_healthy(&mut self) -> Result<(), MediaError> {
        let Some(error) = self.run.health.error() else {
            return Ok(());
        };
        if self.run.health.outputs.load(Ordering::Relaxed) > 0 || self.fallbacks.is_empty() {
            return Err(MediaError::Gstreamer(format!("video encoder {} failed: {error}", self.element)));
        }
        let failed = self.element.clone();
        let remaining = std::mem::take(&mut self.fallbacks);
        log::warn!("video encoder {failed} failed before its first frame ({error}); trying {}", remaining.join(", "));
        let (run, element, fallbacks) =
            start_first("video encoder", &remaining, |e| self.spec.build(e, self.bitrate_kbps))?;
        self.run = run;
        self.element = element;
        self.fallbacks = fallbacks;
        self.clock.reset();
        self.frame_index = 0;
        log::info!("video encoder now {} (after {failed} failed)", self.element);
        Ok(())
    }

    fn skip(&self, why: std::fmt::Arguments<'_>) {
        let n = self.spec.counters.frames_skipped.fetch_add(1, Ordering::Relaxed);
        if n == 0 {
            log::warn!("video encoder: skipping a frame: {why} (further skips are logged at debug)");
        } else {
            log::debug!("video encoder: skipping a frame: {why}");
        }
    }

    fn push(&mut self, data: Bytes, pts_ns: u64) -> Result<(), MediaError> {
        let input = self.spec.input;
        let meta = meta_layout(input.pixel_format, input.width, input.height);
        let mut buffer = gst::Buffer::from_slice(data);
        if let Some(buf) = buffer.get_mut() {
            buf.set_pts(gst::ClockTime::from_nseconds(pts_ns));
            buf.set_duration(gst::ClockTime::from_nseconds(self.frame_ns()));
            if let (Some((offsets, strides)), Some(format)) = (meta, gst_format(input.pixel_format)) {
                gst_video::VideoMeta::add_full(
                    buf,
                    gst_video::VideoFrameFlags::empty(),
                    format,
                    input.width,
                    input.height,
                    &offsets,
                    &strides,
                )
                .map_err(|e| MediaError::Gstreamer(format!("video encoder: cannot describe the frame layout: {e}")))?;
            }
        }
        self.run
            .appsrc
            .push_buffer(buffer)
            .map(|_| ())
            .map_err(|e| MediaError::Gstreamer(format!("video encoder {} refused a frame: {e:?}", self.element)))
    }

    /// Checks a raw frame's length against its format; returns the bytes to push (`None`: skipped).
    fn raw_payload(&self, data: &Bytes) -> Option<Bytes> {
        let input = self.spec.input;
        match input.pixel_format.frame_len(input.width, input.height) {
            Some(len) if data.len() >= len => Some(data.slice(..len)),
            Some(len) => {
                self.skip(format_args!("{} bytes for {input} (needs {len})", data.len()));
                None
            }
            None if data.len() >= 4 && data.starts_with(&[0xff, 0xd8]) => Some(data.clone()),
            None => {
                self.skip(format_args!("{} bytes for {input} are not a JPEG image", data.len()));
                None
            }
        }
    }

    /// Pushes one raw I420 frame of the size the encoder was started with (timestamps at the frame
    /// rate); a short frame is logged and skipped. Errors if the frame's size is not the encoder's or
    /// the pipeline refused it (flushing, error state).
    pub fn push_frame(&mut self, frame: &VideoFrame) -> Result<(), MediaError> {
        let input = self.spec.input;
        if input.pixel_format != CameraPixelFormat::I420 || (frame.width, frame.height) != (input.width, input.height) {
            return Err(MediaError::Config(format!(
                "video encoder takes {input}, not I420 {}x{}: restart it",
                frame.width, frame.height
            )));
        }
        self.ensure_healthy()?;
        let Some(data) = self.raw_payload(&frame.data) else {
            return Ok(());
        };
        let pts = self.frame_index.saturating_mul(self.frame_ns());
        self.frame_index += 1;
        self.push(data, pts)
    }

    /// Pushes one camera frame; its presentation time is its capture timestamp relative to the first
    /// frame's. A frame too short for its format (or MJPEG that is not a JPEG) is logged and skipped.
    /// Errors if the frame is not in the format the encoder was started for (the capture format changed:
    /// restart the encoder) or the pipeline refused it.
    pub fn push_capture(&mut self, frame: &CapturedFrame) -> Result<(), MediaError> {
        let input = self.spec.input;
        let got = frame.format;
        if (got.pixel_format, got.width, got.height) != (input.pixel_format, input.width, input.height) {
            return Err(MediaError::Config(format!(
                "video encoder takes {input}, the camera now sends {got}: restart it"
            )));
        }
        self.ensure_healthy()?;
        let Some(data) = self.raw_payload(&frame.data) else {
            return Ok(());
        };
        let frame_ns = self.frame_ns();
        let pts = self.clock.next(frame.timestamp, frame_ns);
        self.push(data, pts)
    }

    /// Asks the encoder for a keyframe (with SPS/PPS for H.264) as soon as possible: an upstream
    /// force-key-unit event on the encoder's source pad, as a downstream consumer would send it.
    pub fn force_keyframe(&self) {
        let event = gst_video::UpstreamForceKeyUnitEvent::builder().all_headers(true).build();
        match self.run.encoder.static_pad("src") {
            Some(pad) => {
                if !pad.send_event(event) {
                    log::debug!("video encoder did not accept a force-key-unit event");
                }
            }
            None => log::debug!("video encoder has no src pad"),
        }
    }

    /// The first error the running pipeline reported, if any.
    pub fn error(&self) -> Option<String> {
        self.run.health.error()
    }

    #[cfg(test)]
    fn encoder_element(&self) -> &gst::Element {
        &self.run.encoder
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{draw_test_frame, read_frame_counter};
    use crate::media::video::pipeline::{build_pipeline, by_name};
    use crate::media::video::{convert_i420, init_gstreamer, DecodeCap, GstRegistry, VideoDecoder};
    use gstreamer_app as gst_app;
    use std::sync::Mutex;
    use std::time::Instant;

    /// A fake that claims the named elements on top of what GStreamer really has.
    struct PlusRegistry(&'static [&'static str]);

    impl ElementRegistry for PlusRegistry {
        fn has(&self, name: &str) -> bool {
            self.0.contains(&name) || GstRegistry.has(name)
        }
    }

    #[test]
    fn pts_is_relative_and_strictly_increasing() {
        let mut c = PtsClock::default();
        let ms = Duration::from_millis;
        let f = 33_333_333;
        assert_eq!(c.next(ms(5_000), f), 0);
        assert_eq!(c.next(ms(5_033), f), 33_000_000);
        assert_eq!(c.next(ms(5_100), f), 100_000_000);
        // Duplicate and backwards timestamps continue one frame on, then follow the new base.
        assert_eq!(c.next(ms(5_100), f), 100_000_000 + f);
        assert_eq!(c.next(ms(10), f), 100_000_000 + 2 * f);
        assert_eq!(c.next(ms(43), f), 100_000_000 + 2 * f + 33_000_000);
        c.reset();
        assert_eq!(c.next(ms(1), f), 0);
    }

    // --- pipelines --------------------------------------------------------------------------------

    /// What a decoder received.
    #[derive(Default)]
    struct Decoded {
        sizes: Vec<(u32, u32)>,
        counters: Vec<u32>,
    }

    /// An encoder whose RTP goes straight into a decoder of the same codec.
    struct Loop {
        encoder: VideoEncoder,
        decoded: Arc<Mutex<Decoded>>,
        counters: Arc<EncoderCounters>,
        _decoder: Arc<VideoDecoder>,
    }

    impl Loop {
        fn decoded_frames(&self) -> usize {
            self.decoded.lock().unwrap().sizes.len()
        }
    }

    fn start_loop(
        format: CaptureFormat,
        settings: &EncoderSettings,
        policy: &CodecPolicy,
        registry: &dyn ElementRegistry,
    ) -> Loop {
        init_gstreamer().unwrap();
        let decoded: Arc<Mutex<Decoded>> = Arc::default();
        let sink = Arc::clone(&decoded);
        let decoder = Arc::new(
            VideoDecoder::start(settings.codec, settings.pt, move |frame| {
                let mut d = sink.lock().unwrap();
                d.sizes.push((frame.width, frame.height));
                if let Some(n) = read_frame_counter(&frame) {
                    d.counters.push(n);
                }
            })
            .unwrap(),
        );
        let to_decoder = Arc::clone(&decoder);
        let counters = Arc::new(EncoderCounters::default());
        let encoder =
            VideoEncoder::start_for_capture(format, settings, policy, registry, Arc::clone(&counters), move |rtp| {
                let _ = to_decoder.push_rtp(rtp);
            })
            .unwrap();
        Loop { encoder, decoded, counters, _decoder: decoder }
    }

    fn captured(format: CaptureFormat, n: u32, data: Bytes) -> CapturedFrame {
        // Timestamps far from zero: the encoder makes them relative to the first frame.
        let timestamp = Duration::from_secs(1_000) + Duration::from_millis(33) * n;
        CapturedFrame { format, data, timestamp, sequence: n }
    }

    /// Pushes frames made by `make` (counter values from 100) until `want` frames decoded or frames run
    /// out; returns the decoded record.
    fn run_loop(
        lp: &mut Loop,
        format: CaptureFormat,
        want: usize,
        mut make: impl FnMut(u32) -> Option<Bytes>,
    ) -> Decoded {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut n = 0u32;
        while lp.decoded_frames() < want && Instant::now() < deadline {
            let Some(data) = make(100 + n) else { break };
            lp.encoder.push_capture(&captured(format, n, data)).unwrap();
            n += 1;
            std::thread::sleep(Duration::from_millis(33));
        }
        // Let the last frames through.
        let settle = Instant::now() + Duration::from_secs(2);
        while lp.decoded_frames() < want && Instant::now() < settle {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::mem::take(&mut *lp.decoded.lock().unwrap())
    }

    fn assert_counters(got: &Decoded, what: &str) {
        assert!(got.counters.len() >= 5, "{what}: counters read from only {:?}", got.counters);
        assert!(got.counters.iter().all(|c| (100..1000).contains(c)), "{what}: {:?}", got.counters);
        assert!(got.counters.windows(2).all(|w| w[0] < w[1]), "{what}: not increasing: {:?}", got.counters);
    }

    fn raw_capture(pf: CameraPixelFormat, width: u32, height: u32, out: Option<(u32, u32)>) -> Decoded {
        let format = CaptureFormat { pixel_format: pf, width, height, fps: 30 };
        let mut settings = EncoderSettings::new(VideoCodec::H264, 800, 96, 0x1111);
        settings.output_size = out;
        let mut lp = start_loop(format, &settings, &CodecPolicy::default(), &GstRegistry);
        assert_eq!(lp.encoder.element(), "x264enc");
        assert_eq!(lp.encoder.input_format(), format);
        lp.encoder.force_keyframe();
        let got = run_loop(&mut lp, format, 10, |n| convert_i420(&draw_test_frame(width, height, n), pf));
        assert_eq!(lp.counters.frames_skipped.load(Ordering::Relaxed), 0);
        assert!(lp.counters.rtp_bytes.load(Ordering::Relaxed) > 0);
        got
    }

    #[test]
    fn yuy2_capture_encodes_and_decodes_at_the_capture_size() {
        let got = raw_capture(CameraPixelFormat::Yuyv, 640, 480, None);
        assert!(got.sizes.len() >= 10, "decoded {}", got.sizes.len());
        assert!(got.sizes.iter().all(|s| *s == (640, 480)), "{:?}", got.sizes);
        assert_counters(&got, "YUY2");
    }

    #[test]
    fn nv12_capture_encodes_and_decodes_at_the_capture_size() {
        let got = raw_capture(CameraPixelFormat::Nv12, 320, 240, None);
        assert!(got.sizes.len() >= 10, "decoded {}", got.sizes.len());
        assert!(got.sizes.iter().all(|s| *s == (320, 240)), "{:?}", got.sizes);
        assert_counters(&got, "NV12");
    }

    #[test]
    fn capture_is_scaled_to_the_requested_size() {
        let got = raw_capture(CameraPixelFormat::Yuyv, 640, 480, Some((320, 240)));
        assert!(got.sizes.len() >= 10, "decoded {}", got.sizes.len());
        assert!(got.sizes.iter().all(|s| *s == (320, 240)), "{:?}", got.sizes);
    }

    #[test]
    fn unaligned_rows_are_read_with_the_packed_layout() {
        // 330 pixels: GStreamer's default layout would pad rows to 332; a frame read that way is skewed
        // and its counter unreadable.
        for pf in [CameraPixelFormat::I420, CameraPixelFormat::Nv12] {
            let got = raw_capture(pf, 330, 250, None);
            assert!(got.sizes.iter().all(|s| *s == (330, 250)), "{pf:?}: {:?}", got.sizes);
            assert_counters(&got, &format!("{pf:?} 330x250"));
        }
    }

    /// JPEG images of the test pattern, made with GStreamer's jpegenc.
    fn jpegs(width: u32, height: u32, first: u32, count: u32) -> Vec<Bytes> {
        init_gstreamer().unwrap();
        let desc = format!(
            "appsrc name=src format=time caps=video/x-raw,format=I420,width={width},height={height},framerate=30/1 ! \
             jpegenc quality=90 ! appsink name=sink sync=false"
        );
        let pipeline = build_pipeline(&desc, "jpeg maker").unwrap();
        let src: gst_app::AppSrc = by_name(&pipeline, "src").unwrap();
        let sink: gst_app::AppSink = by_name(&pipeline, "sink").unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        for n in first..first + count {
            let mut buffer = gst::Buffer::from_slice(draw_test_frame(width, height, n).data);
            buffer.get_mut().unwrap().set_pts(gst::ClockTime::from_mseconds(u64::from(n) * 33));
            src.push_buffer(buffer).unwrap();
        }
        src.end_of_stream().unwrap();
        let mut out = Vec::new();
        while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(10)) {
            out.push(Bytes::copy_from_slice(&sample.buffer().unwrap().map_readable().unwrap()));
        }
        pipeline.set_state(gst::State::Null).unwrap();
        assert_eq!(out.len(), count as usize);
        out
    }

    #[test]
    fn mjpeg_capture_encodes() {
        let images = jpegs(320, 240, 100, 60);
        assert!(images.iter().all(|j| j.starts_with(&[0xff, 0xd8])));
        let format = CaptureFormat { pixel_format: CameraPixelFormat::Mjpeg, width: 320, height: 240, fps: 30 };
        let settings = EncoderSettings::new(VideoCodec::H264, 600, 96, 0x2222);
        let mut lp = start_loop(format, &settings, &CodecPolicy::default(), &GstRegistry);
        lp.encoder.force_keyframe();
        let got = run_loop(&mut lp, format, 10, |n| images.get((n - 100) as usize).cloned());
        assert!(lp.counters.frames_encoded.load(Ordering::Relaxed) >= 10);
        assert!(got.sizes.len() >= 10, "decoded {}", got.sizes.len());
        assert!(got.sizes.iter().all(|s| *s == (320, 240)), "{:?}", got.sizes);
        assert_counters(&got, "MJPEG");
    }

    #[test]
    fn bad_frames_are_skipped_not_fatal() {
        init_gstreamer().unwrap();
        let format = CaptureFormat { pixel_format: CameraPixelFormat::Yuyv, width: 320, height: 240, fps: 30 };
        let settings = EncoderSettings::new(VideoCodec::H264, 600, 96, 0x3333);
        let counters = Arc::new(EncoderCounters::default());
        let mut enc = VideoEncoder::start_for_capture(
            format,
            &settings,
            &CodecPolicy::default(),
            &GstRegistry,
            Arc::clone(&counters),
            |_| {},
        )
        .unwrap();
        enc.push_capture(&captured(format, 0, Bytes::from_static(&[0; 100]))).unwrap();
        enc.push_capture(&captured(format, 1, Bytes::new())).unwrap();
        assert_eq!(counters.frames_skipped.load(Ordering::Relaxed), 2);
        // A frame in another format means the capture changed: an error, not a misread.
        let other = CaptureFormat { width: 640, height: 480, ..format };
        let frame = captured(other, 2, convert_i420(&draw_test_frame(640, 480, 1), CameraPixelFormat::Yuyv).unwrap());
        assert!(matches!(enc.push_capture(&frame), Err(MediaError::Config(_))));
        // Well-formed frames still encode.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut n = 3;
        while counters.frames_encoded.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
            let data = convert_i420(&draw_test_frame(320, 240, n), CameraPixelFormat::Yuyv).unwrap();
            enc.push_capture(&captured(format, n, data)).unwrap();
            n += 1;
            std::thread::sleep(Duration::from_millis(33));
        }
        assert!(counters.frames_encoded.load(Ordering::Relaxed) > 0);

        // MJPEG that is not a JPEG is skipped too.
        let mjpeg = CaptureFormat { pixel_format: CameraPixelFormat::Mjpeg, ..format };
        let counters = Arc::new(EncoderCounters::default());
        let mut enc = VideoEncoder::start_for_capture(
            mjpeg,
            &settings,
            &CodecPolicy::default(),
            &GstRegistry,
            Arc::clone(&counters),
            |_| {},
        )
        .unwrap();
        enc.push_capture(&captured(mjpeg, 0, Bytes::from_static(b"not a jpeg"))).unwrap();
        assert_eq!(counters.frames_skipped.load(Ordering::Relaxed), 1);
        assert!(enc.error().is_none());
    }

    #[test]
    fn missing_hardware_element_falls_back_at_start() {
        // The fake claims a V4L2 encoder and decoder this machine does not have: building their
        // pipelines fails and the software elements are used.
        let reg = PlusRegistry(&["v4l2h264enc", "v4l2h264dec"]);
        let format = CaptureFormat { pixel_format: CameraPixelFormat::I420, width: 320, height: 240, fps: 30 };
        let settings = EncoderSettings::new(VideoCodec::H264, 600, 96, 0x4444);
        let mut lp = start_loop(format, &settings, &CodecPolicy::default(), &reg);
        assert_eq!(lp.encoder.element(), "x264enc");
        let dec =
            VideoDecoder::start_with(VideoCodec::H264, 96, &CodecPolicy::default(), &reg, DecodeCap::default(), |_| {})
                .unwrap();
        assert_eq!(dec.element(), "avdec_h264");
        let got = run_loop(&mut lp, format, 5, |n| Some(draw_test_frame(320, 240, n).data));
        assert!(got.sizes.len() >= 5);
    }

    #[test]
    fn element_failing_before_its_first_frame_is_replaced() {
        init_gstreamer().unwrap();
        // An encoder that starts, then fails to configure itself at the first frame.
        let format = CaptureFormat { pixel_format: CameraPixelFormat::I420, width: 320, height: 240, fps: 30 };
        let settings = EncoderSettings::new(VideoCodec::H264, 600, 96, 0x5555);
        let counters = Arc::new(EncoderCounters::default());
        // (The candidate name is put into the pipeline description as is: a misconfigured x264enc.)
        let broken = "x264enc option-string=no-such-option=1";
        let candidates = [broken, "x264enc"].map(String::from);
        let mut enc =
            VideoEncoder::start_inner(format, &settings, &candidates, Arc::clone(&counters), Arc::new(|_| {})).unwrap();
        assert_eq!(enc.element(), broken);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut n = 0;
        while counters.frames_encoded.load(Ordering::Relaxed) < 3 && Instant::now() < deadline {
            enc.push_capture(&captured(format, n, draw_test_frame(320, 240, n).data)).unwrap();
            n += 1;
            std::thread::sleep(Duration::from_millis(33));
        }
        assert_eq!(enc.element(), "x264enc");
        assert!(counters.frames_encoded.load(Ordering::Relaxed) >= 3);
        assert!(enc.error().is_none());
    }

    fn rate_property(enc: &VideoEncoder, name: &str) -> u64 {
        let e = enc.encoder_element();
        match e.find_property(name).unwrap().value_type() {
            t if t == u32::static_type() => u64::from(e.property::<u32>(name)),
            t if t == i32::static_type() => u64::try_from(e.property::<i32>(name)).unwrap(),
            t => panic!("unexpected type {t}"),
        }
    }

    #[test]
    fn set_bitrate_changes_the_element_property() {
        init_gstreamer().unwrap();
        for (codec, element, property, unit) in [
            (VideoCodec::H264, "x264enc", "bitrate", 1),
            (VideoCodec::H264, "openh264enc", "bitrate", 1000),
            (VideoCodec::Vp8, "vp8enc", "target-bitrate", 1000),
        ] {
            let format = CaptureFormat { pixel_format: CameraPixelFormat::I420, width: 320, height: 240, fps: 30 };
            let mut settings = EncoderSettings::new(codec, 800, 96, 1);
            (settings.min_bitrate_kbps, settings.max_bitrate_kbps) = (200, 1500);
            let policy = CodecPolicy { forced_encoder: Some(element.into()), ..CodecPolicy::default() };
            let mut enc =
                VideoEncoder::start_for_capture(format, &settings, &policy, &GstRegistry, Arc::default(), |_| {})
                    .unwrap();
            assert_eq!(enc.element(), element);
            assert_eq!(rate_property(&enc, property), 800 * unit, "{element} start");
            // Live, while frames flow.
            for n in 0..5 {
                enc.push_capture(&captured(format, n, draw_test_frame(320, 240, n).data)).unwrap();
            }
            assert_eq!(enc.set_bitrate(450), 450);
            assert_eq!(rate_property(&enc, property), 450 * unit, "{element}");
            assert_eq!(enc.bitrate_kbps(), 450);
            // Bounded by the settings.
            assert_eq!(enc.set_bitrate(5000), 1500);
            assert_eq!(rate_property(&enc, property), 1500 * unit, "{element} max");
            assert_eq!(enc.set_bitrate(10), 200);
            assert_eq!(rate_property(&enc, property), 200 * unit, "{element} min");
            assert!(enc.error().is_none(), "{element}: {:?}", enc.error());
        }
    }
}

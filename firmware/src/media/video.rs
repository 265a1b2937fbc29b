//! GStreamer video pipelines: the encoder (raw camera frames in — I420, NV12, YUY2 or MJPEG — RTP
//! packets out, H.264 constrained baseline packetization-mode 1 or VP8) and the decoder (RTP packets in,
//! raw I420 frames out); encoder/decoder element selection by probing the GStreamer registry in order of
//! preference (hardware `v4l2*` elements first), with fallback to the next candidate when one fails to
//! start; live bitrate changes for the congestion controller. Pipelines are driven through
//! `appsrc`/`appsink`; they own no sockets and know nothing of WebRTC.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::VideoFrameExt;

use super::pattern::VideoFrame;
use super::{MediaError, VideoCodec};
use crate::devices::{CaptureFormat, CapturedFrame, PixelFormat};

/// Initialises GStreamer (idempotent and cheap after the first call).
pub fn init_gstreamer() -> Result<(), MediaError> {
    gst::init().map_err(|e| MediaError::Gstreamer(format!("gst::init failed: {e}")))
}

// ---------------------------------------------------------------------------------------------------
// Selection

/// Which GStreamer elements exist: the real registry ([`GstRegistry`]) or a test double.
pub trait ElementRegistry {
    /// Whether an element factory of this name is installed.
    fn has(&self, name: &str) -> bool;
}

/// The GStreamer registry of this process (V4L2 codec elements are registered only where their
/// device exists, so probing it finds the board's hardware codecs).
#[derive(Debug, Clone, Copy, Default)]
pub struct GstRegistry;

impl ElementRegistry for GstRegistry {
    fn has(&self, name: &str) -> bool {
        init_gstreamer().is_ok() && gst::ElementFactory::find(name).is_some()
    }
}

/// H.264 encoders in order of preference: the V4L2 memory-to-memory encoder (Pi 4 hardware), then x264
/// (`tune=zerolatency speed-preset=ultrafast`: the encoder this firmware has been interop-tested with,
/// and the one whose rate control holds the target best at low bitrates), then OpenH264 (lighter on
/// CPU in `bench_codecs`, the fallback where x264 is not installed).
pub const H264_ENCODERS: &[&str] = &["v4l2h264enc", "x264enc", "openh264enc"];
/// VP8 encoders in order of preference (`v4l2vp8enc` exists on boards with a VP8 encoder, not a Pi 4).
pub const VP8_ENCODERS: &[&str] = &["v4l2vp8enc", "vp8enc"];
/// H.264 decoders in order of preference: the hardware decoder (registered only where the V4L2 device
/// exists), then libav, then OpenH264 (which did not decode x264's stream in our pipeline: left for a
/// later look, as libav maps libavfilter and its dependencies, about 20 MB of shared-library RSS).
pub const H264_DECODERS: &[&str] = &["v4l2h264dec", "avdec_h264", "openh264dec"];
/// VP8 decoders in order of preference.
pub const VP8_DECODERS: &[&str] = &["v4l2vp8dec", "vp8dec"];

/// The encoder candidates for `codec`, best first.
pub fn encoder_candidates(codec: VideoCodec) -> &'static [&'static str] {
    match codec {
        VideoCodec::H264 => H264_ENCODERS,
        VideoCodec::Vp8 => VP8_ENCODERS,
    }
}

/// The decoder candidates for `codec`, best first.
pub fn decoder_candidates(codec: VideoCodec) -> &'static [&'static str] {
    match codec {
        VideoCodec::H264 => H264_DECODERS,
        VideoCodec::Vp8 => VP8_DECODERS,
    }
}

/// Whether `element` is a hardware (V4L2 memory-to-memory) codec element.
pub fn is_hardware(element: &str) -> bool {
    element.starts_with("v4l2")
}

/// The encoders for `codec` that `registry` has, best first (for `callbox devices`).
pub fn available_encoders(registry: &dyn ElementRegistry, codec: VideoCodec) -> Vec<&'static str> {
    encoder_candidates(codec).iter().copied().filter(|e| registry.has(e)).collect()
}

/// The decoders for `codec` that `registry` has, best first (for `callbox devices`).
pub fn available_decoders(registry: &dyn ElementRegistry, codec: VideoCodec) -> Vec<&'static str> {
    decoder_candidates(codec).iter().copied().filter(|e| registry.has(e)).collect()
}

/// How codec elements are chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecPolicy {
    /// Use this encoder element and no other (it must exist). An element this module knows as an
    /// encoder of the *other* codec is ignored for this one, so forcing `openh264enc` still lets a VP8
    /// call pick its own encoder.
    pub forced_encoder: Option<String>,
    /// Use this decoder element and no other (same rules as `forced_encoder`).
    pub forced_decoder: Option<String>,
    /// Whether hardware (`v4l2*`) elements may be used; `false` forces the software fallback.
    pub allow_hardware: bool,
}

impl Default for CodecPolicy {
    fn default() -> Self {
        Self { forced_encoder: None, forced_decoder: None, allow_hardware: true }
    }
}

fn select(
    registry: &dyn ElementRegistry,
    kind: &str,
    codec: VideoCodec,
    candidates: &'static [&'static str],
    others: &'static [&'static str],
    forced: Option<&str>,
    allow_hardware: bool,
) -> Result<Vec<String>, MediaError> {
    if let Some(name) = forced.filter(|f| !others.contains(f)) {
        if is_hardware(name) && !allow_hardware {
            return Err(MediaError::Config(format!(
                "{kind} {name} is forced but hardware codecs are disallowed for {codec:?}"
            )));
        }
        return if registry.has(name) {
            Ok(vec![name.to_owned()])
        } else {
            Err(MediaError::MissingElement(name.into()))
        };
    }
    let considered: Vec<&str> = candidates.iter().copied().filter(|e| allow_hardware || !is_hardware(e)).collect();
    let present: Vec<String> = considered.iter().filter(|e| registry.has(e)).map(|e| (*e).to_owned()).collect();
    if present.is_empty() {
        return Err(MediaError::MissingElement(considered.join("|")));
    }
    Ok(present)
}

/// The encoders to try for `codec` under `policy`, best first: every candidate present (hardware only
/// if allowed), or just the forced one. Errors: the forced element is missing
/// ([`MediaError::MissingElement`] naming it), or none is present (`MissingElement` naming all the
/// candidates considered, `|`-separated).
pub fn select_encoders(
    registry: &dyn ElementRegistry,
    codec: VideoCodec,
    policy: &CodecPolicy,
) -> Result<Vec<String>, MediaError> {
    let others = match codec {
        VideoCodec::H264 => VP8_ENCODERS,
        VideoCodec::Vp8 => H264_ENCODERS,
    };
    let forced = policy.forced_encoder.as_deref();
    select(registry, "encoder", codec, encoder_candidates(codec), others, forced, policy.allow_hardware)
}

/// The decoders to try for `codec` under `policy`, best first (see [`select_encoders`]).
pub fn select_decoders(
    registry: &dyn ElementRegistry,
    codec: VideoCodec,
    policy: &CodecPolicy,
) -> Result<Vec<String>, MediaError> {
    let others = match codec {
        VideoCodec::H264 => VP8_DECODERS,
        VideoCodec::Vp8 => H264_DECODERS,
    };
    let forced = policy.forced_decoder.as_deref();
    select(registry, "decoder", codec, decoder_candidates(codec), others, forced, policy.allow_hardware)
}

/// Picks the encoder element for `codec` from this process's registry: `forced` if given (must exist),
/// else the first available, hardware included.
pub fn choose_encoder(codec: VideoCodec, forced: Option<&str>) -> Result<String, MediaError> {
    let policy = CodecPolicy { forced_encoder: forced.map(str::to_owned), ..CodecPolicy::default() };
    let mut all = select_encoders(&GstRegistry, codec, &policy)?;
    Ok(all.remove(0))
}

/// Starts the first candidate that starts: a failing one is logged and the next tried. Returns what
/// was started, its element and the candidates not yet tried (for a failure right after start).
fn start_first<T>(
    what: &str,
    candidates: &[String],
    mut start: impl FnMut(&str) -> Result<T, MediaError>,
) -> Result<(T, String, Vec<String>), MediaError> {
    let mut failures: Vec<String> = Vec::new();
    for (i, element) in candidates.iter().enumerate() {
        match start(element) {
            Ok(started) => return Ok((started, element.clone(), candidates[i + 1..].to_vec())),
            Err(e) if candidates.len() == 1 => return Err(e),
            Err(e) => {
                match candidates.get(i + 1) {
                    Some(next) => log::warn!("{what}: {element} did not start ({e}); trying {next}"),
                    None => log::warn!("{what}: {element} did not start ({e})"),
                }
                failures.push(format!("{element}: {e}"));
            }
        }
    }
    if failures.is_empty() {
        return Err(MediaError::MissingElement(format!("{what}: no candidate")));
    }
    Err(MediaError::Gstreamer(format!("{what}: no candidate started ({})", failures.join("; "))))
}

// ---------------------------------------------------------------------------------------------------
// Pipeline fragments

/// The H.264 level for a constrained-baseline stream of this size and rate (the V4L2 encoder needs
/// one in its caps): the lowest of 3, 3.1, 3.2, 4, 4.2, 5.1 whose macroblock limits fit.
pub fn h264_level(width: u32, height: u32, fps: u32) -> &'static str {
    let mbs = u64::from(width.div_ceil(16)) * u64::from(height.div_ceil(16));
    let rate = mbs * u64::from(fps.max(1));
    // (level, max frame size in macroblocks, max macroblocks per second), from the H.264 level table.
    const LEVELS: &[(&str, u64, u64)] = &[
        ("3", 1_620, 40_500),
        ("3.1", 3_600, 108_000),
        ("3.2", 5_120, 216_000),
        ("4", 8_192, 245_760),
        ("4.2", 8_704, 522_240),
        ("5.1", 36_864, 983_040),
    ];
    LEVELS.iter().find(|(_, fs, mbps)| mbs <= *fs && rate <= *mbps).map_or("5.1", |(l, _, _)| l)
}

/// The `extra-controls` structure of a V4L2 encoder (driver control names, normalised as GStreamer
/// does: lower case, non-alphanumerics as `_`): bitrate in bit/s, constant-bitrate mode (a driver
/// without it ignores the control with a warning), the I-frame period, and SPS/PPS repeated with every
/// IDR so a receiver joining late can decode.
pub fn v4l2_extra_controls(codec: VideoCodec, bitrate_kbps: u32, gop: u32) -> String {
    let bps = kbps_to_bps_i32(bitrate_kbps);
    let gop = i32::try_from(gop).unwrap_or(i32::MAX);
    match codec {
        VideoCodec::H264 => format!(
            "controls,video_bitrate={bps},video_bitrate_mode=1,h264_i_frame_period={gop},repeat_sequence_header=1"
        ),
        VideoCodec::Vp8 => format!("controls,video_bitrate={bps},video_bitrate_mode=1,video_gop_size={gop}"),
    }
}

fn kbps_to_bps_i32(kbps: u32) -> i32 {
    i32::try_from(u64::from(kbps) * 1000).unwrap_or(i32::MAX)
}

fn encoder_fragment(
    element: &str,
    codec: VideoCodec,
    bitrate_kbps: u32,
    gop: u32,
    size: (u32, u32),
    fps: u32,
) -> String {
    let bps = bitrate_kbps.saturating_mul(1000);
    let h264_caps = "video/x-h264,profile=constrained-baseline,stream-format=byte-stream,alignment=au";
    match (codec, element) {
        (VideoCodec::H264, "x264enc") => format!(
            "x264enc name=enc tune=zerolatency speed-preset=ultrafast bitrate={bitrate_kbps} \
             key-int-max={gop} threads=2 option-string=scenecut=0 ! {h264_caps}"
        ),
        (VideoCodec::H264, "openh264enc") => format!(
            "openh264enc name=enc bitrate={bps} gop-size={gop} usage-type=camera complexity=low \
             rate-control=bitrate scene-change-detection=false ! \
             video/x-h264,stream-format=byte-stream,alignment=au"
        ),
        (VideoCodec::H264, "v4l2h264enc") => format!(
            "v4l2h264enc name=enc extra-controls=\"{}\" ! \
             video/x-h264,profile=constrained-baseline,level=(string){},stream-format=byte-stream,alignment=au \
             ! h264parse",
            v4l2_extra_controls(codec, bitrate_kbps, gop),
            h264_level(size.0, size.1, fps)
        ),
        (VideoCodec::H264, other) => format!("{other} name=enc ! {h264_caps} ! h264parse"),
        // One thread: libvpx's VP8 worker threads cost more CPU than they save when frames arrive in
        // real time (bench_codecs: 0.23 vs 0.39 CPU s per s of 720p video on the CI machine).
        (VideoCodec::Vp8, "vp8enc") => format!(
            "vp8enc name=enc deadline=1 cpu-used=8 end-usage=cbr target-bitrate={bps} \
             keyframe-max-dist={gop} lag-in-frames=0 threads=1 error-resilient=default"
        ),
        (VideoCodec::Vp8, "v4l2vp8enc") => {
            format!("v4l2vp8enc name=enc extra-controls=\"{}\"", v4l2_extra_controls(codec, bitrate_kbps, gop))
        }
        (VideoCodec::Vp8, other) => format!("{other} name=enc"),
    }
}

fn payloader_fragment(codec: VideoCodec, pt: u8, ssrc: u32) -> String {
    match codec {
        VideoCodec::H264 => {
            format!("rtph264pay name=pay config-interval=-1 aggregate-mode=zero-latency mtu=1200 pt={pt} ssrc={ssrc}")
        }
        VideoCodec::Vp8 => {
            format!("rtpvp8pay name=pay picture-id-mode=15-bit mtu=1200 pt={pt} ssrc={ssrc}")
        }
    }
}

/// The GStreamer raw format of a raw pixel format (`None` for MJPEG).
fn gst_format(pixel_format: PixelFormat) -> Option<gst_video::VideoFormat> {
    match pixel_format {
        PixelFormat::I420 => Some(gst_video::VideoFormat::I420),
        PixelFormat::Nv12 => Some(gst_video::VideoFormat::Nv12),
        PixelFormat::Yuyv => Some(gst_video::VideoFormat::Yuy2),
        PixelFormat::Mjpeg => None,
    }
}

/// The appsrc caps for a capture format, and the decoding step MJPEG needs.
fn input_fragment(format: &CaptureFormat) -> (String, &'static str) {
    let CaptureFormat { width, height, fps, .. } = *format;
    match gst_format(format.pixel_format) {
        Some(f) => (format!("video/x-raw,format={},width={width},height={height},framerate={fps}/1", f.to_str()), ""),
        None => {
            (format!("image/jpeg,parsed=(boolean)true,width={width},height={height},framerate={fps}/1"), "jpegdec ! ")
        }
    }
}

/// Offsets and strides of a tightly packed raw frame (as [`CapturedFrame`] and [`VideoFrame`] carry
/// them), or `None` for MJPEG.
fn tight_layout(pixel_format: PixelFormat, width: u32, height: u32) -> Option<(Vec<usize>, Vec<i32>)> {
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let stride = |n: usize| i32::try_from(n).ok();
    match pixel_format {
        PixelFormat::I420 => Some((vec![0, w * h, w * h + cw * ch], vec![stride(w)?, stride(cw)?, stride(cw)?])),
        PixelFormat::Nv12 => Some((vec![0, w * h], vec![stride(w)?, stride(2 * cw)?])),
        PixelFormat::Yuyv => Some((vec![0], vec![stride(4 * cw)?])),
        PixelFormat::Mjpeg => None,
    }
}

/// The tight layout when it differs from GStreamer's default one (which pads rows to 4 bytes), so
/// frames need a `GstVideoMeta` to be read right; `None` when no meta is needed.
fn meta_layout(pixel_format: PixelFormat, width: u32, height: u32) -> Option<(Vec<usize>, Vec<i32>)> {
    let format = gst_format(pixel_format)?;
    let (offsets, strides) = tight_layout(pixel_format, width, height)?;
    let info = gst_video::VideoInfo::builder(format, width, height).build().ok()?;
    if info.offset() == offsets.as_slice() && info.stride() == strides.as_slice() {
        None
    } else {
        Some((offsets, strides))
    }
}

/// Converts a tightly packed I420 frame (the test pattern) to another tightly packed raw format, as a
/// camera would deliver it: NV12 interleaves the chroma planes, YUY2 repeats each chroma row for two
/// luma rows. `None` for MJPEG or a frame shorter than its size says.
pub fn convert_i420(frame: &VideoFrame, to: PixelFormat) -> Option<Bytes> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let data = frame.data.get(..VideoFrame::i420_len(frame.width, frame.height))?;
    let (y, chroma) = data.split_at(w * h);
    let (u, v) = chroma.split_at(cw * ch);
    match to {
        PixelFormat::I420 => Some(frame.data.slice(..data.len())),
        PixelFormat::Nv12 => {
            let mut out = Vec::with_capacity(data.len());
            out.extend_from_slice(y);
            for (cu, cv) in u.iter().zip(v) {
                out.extend_from_slice(&[*cu, *cv]);
            }
            Some(Bytes::from(out))
        }
        PixelFormat::Yuyv => {
            let mut out = Vec::with_capacity(cw * 4 * h);
            for row in 0..h {
                let luma = &y[row * w..(row + 1) * w];
                let crow = (row / 2) * cw;
                for pair in 0..cw {
                    let y0 = luma[2 * pair];
                    let y1 = luma.get(2 * pair + 1).copied().unwrap_or(y0);
                    out.extend_from_slice(&[y0, u[crow + pair], y1, v[crow + pair]]);
                }
            }
            Some(Bytes::from(out))
        }
        PixelFormat::Mjpeg => None,
    }
}

// ---------------------------------------------------------------------------------------------------
// Pipeline plumbing

/// What a pipeline's bus and output have shown: its first error, and how many outputs it produced (a
/// pipeline that fails before its first output may be replaced by the next candidate element).
#[derive(Default)]
struct Health {
    error: Mutex<Option<String>>,
    outputs: AtomicU64,
}

impl Health {
    fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn record(&self, message: String) {
        let mut slot = self.error.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(message);
        }
    }
}

fn watch_bus(pipeline: &gst::Pipeline, what: String, health: Arc<Health>) {
    if let Some(bus) = pipeline.bus() {
        bus.set_sync_handler(move |_, msg| {
            match msg.view() {
                gst::MessageView::Error(e) => {
                    let source = e.src().map(|s| s.name().to_string()).unwrap_or_default();
                    log::warn!("{what} pipeline error from {source}: {} ({:?})", e.error(), e.debug());
                    health.record(format!("{source}: {}", e.error()));
                }
                gst::MessageView::Warning(w) => {
                    log::debug!("{what} pipeline warning: {} ({:?})", w.error(), w.debug())
                }
                _ => {}
            }
            gst::BusSyncReply::Drop
        });
    }
}

fn build_pipeline(desc: &str, what: &str) -> Result<gst::Pipeline, MediaError> {
    let element =
        gst::parse::launch(desc).map_err(|e| MediaError::Gstreamer(format!("{what}: cannot build `{desc}`: {e}")))?;
    element.downcast::<gst::Pipeline>().map_err(|_| MediaError::Gstreamer(format!("{what}: not a pipeline")))
}

fn by_name<T: IsA<gst::Element>>(pipeline: &gst::Pipeline, name: &str) -> Result<T, MediaError> {
    pipeline
        .by_name(name)
        .and_then(|e| e.downcast::<T>().ok())
        .ok_or_else(|| MediaError::Gstreamer(format!("pipeline has no usable element `{name}`")))
}

/// Sets `pipeline` PLAYING, or reports why it cannot be. Devices are opened and configured during the
/// state change, so a hardware element that cannot be used fails here; a live pipeline then waits for
/// data to complete the change (ASYNC), and what fails only on data (caps negotiation) shows on the bus
/// at the first frame.
fn play(pipeline: &gst::Pipeline, health: &Health, what: &str) -> Result<(), MediaError> {
    let outcome = match (pipeline.set_state(gst::State::Playing), health.error()) {
        (Ok(_), None) => return Ok(()),
        (Ok(_), Some(err)) => err,
        (Err(e), Some(err)) => format!("{e}: {err}"),
        (Err(e), None) => format!("{e}"),
    };
    let _ = pipeline.set_state(gst::State::Null);
    Err(MediaError::Gstreamer(format!("{what} failed to start: {outcome}")))
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

// ---------------------------------------------------------------------------------------------------
// Encoder

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

/// One built encoder pipeline.
struct EncoderPipeline {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    encoder: gst::Element,
    health: Arc<Health>,
}

impl Drop for EncoderPipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

type RtpCallback = Arc<dyn Fn(Bytes) + Send + Sync>;

/// Everything needed to build an encoder pipeline (again, for a fallback).
struct EncoderSpec {
    codec: VideoCodec,
    input: CaptureFormat,
    size: (u32, u32),
    pt: u8,
    ssrc: u32,
    counters: Arc<EncoderCounters>,
    on_rtp: RtpCallback,
}

impl EncoderSpec {
    fn build(&self, element: &str, bitrate_kbps: u32) -> Result<EncoderPipeline, MediaError> {
        init_gstreamer()?;
        let fps = self.input.fps.max(1);
        // Keyframes are driven explicitly; the encoder's own GOP is only a safety net (60 s).
        let gop = fps.saturating_mul(60).max(1);
        let (caps, decode) = input_fragment(&self.input);
        let (w, h) = self.size;
        let desc = format!(
            "appsrc name=src is-live=true format=time do-timestamp=false block=false max-bytes=20000000 \
             caps=\"{caps}\" ! queue max-size-buffers=4 max-size-bytes=0 max-size-time=0 leaky=downstream ! \
             {decode}videoconvert ! videoscale ! \
             capsfilter caps=\"video/x-raw,format=(string){{I420,NV12}},width=(int){w},height=(int){h}\" ! {} ! {} ! \
             appsink name=sink sync=false max-buffers=256 drop=true",
            encoder_fragment(element, self.codec, bitrate_kbps, gop, self.size, fps),
            payloader_fragment(self.codec, self.pt, self.ssrc),
        );
        let what = format!("video encoder ({element})");
        let pipeline = build_pipeline(&desc, &what)?;
        let health = Arc::new(Health::default());
        watch_bus(&pipeline, what.clone(), Arc::clone(&health));
        let appsrc: gst_app::AppSrc = by_name(&pipeline, "src")?;
        let encoder: gst::Element = by_name(&pipeline, "enc")?;
        let appsink: gst_app::AppSink = by_name(&pipeline, "sink")?;

        if let Some(pad) = encoder.static_pad("src") {
            let counters = Arc::clone(&self.counters);
            let health = Arc::clone(&health);
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(buffer) = info.buffer() {
                    counters.frames_encoded.fetch_add(1, Ordering::Relaxed);
                    health.outputs.fetch_add(1, Ordering::Relaxed);
                    if !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                        counters.keyframes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                gst::PadProbeReturn::Ok
            });
        }
        let on_rtp = Arc::clone(&self.on_rtp);
        let counters = Arc::clone(&self.counters);
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(buffer) = sample.buffer() {
                        if let Ok(map) = buffer.map_readable() {
                            counters.rtp_bytes.fetch_add(map.len() as u64, Ordering::Relaxed);
                            on_rtp(Bytes::copy_from_slice(map.as_slice()));
                        }
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        play(&pipeline, &health, &what)?;
        Ok(EncoderPipeline { pipeline, appsrc, encoder, health })
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
        let input = CaptureFormat { pixel_format: PixelFormat::I420, width, height, fps };
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
        if input.pixel_format != PixelFormat::I420 || (frame.width, frame.height) != (input.width, input.height) {
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

// ---------------------------------------------------------------------------------------------------
// Decoder

type FrameCallback = Arc<dyn Fn(VideoFrame) + Send + Sync>;

/// One built decoder pipeline.
struct DecoderPipeline {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    health: Arc<Health>,
}

impl Drop for DecoderPipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn sample_to_frame(sample: &gst::Sample) -> Option<VideoFrame> {
    let caps = sample.caps()?;
    let info = gst_video::VideoInfo::from_caps(caps).ok()?;
    let buffer = sample.buffer()?;
    let vframe = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).ok()?;
    let (w, h) = (info.width() as usize, info.height() as usize);
    let mut out = Vec::with_capacity(VideoFrame::i420_len(info.width(), info.height()));
    for (plane, (pw, ph)) in
        [(w, h), (w.div_ceil(2), h.div_ceil(2)), (w.div_ceil(2), h.div_ceil(2))].into_iter().enumerate()
    {
        let data = vframe.plane_data(plane as u32).ok()?;
        let stride = usize::try_from(*vframe.plane_stride().get(plane)?).ok()?;
        for row in 0..ph {
            out.extend_from_slice(data.get(row * stride..row * stride + pw)?);
        }
    }
    Some(VideoFrame { width: info.width(), height: info.height(), data: Bytes::from(out) })
}

fn build_decoder(
    codec: VideoCodec,
    pt: u8,
    element: &str,
    on_frame: &FrameCallback,
) -> Result<DecoderPipeline, MediaError> {
    init_gstreamer()?;
    let (name, depay) = match codec {
        VideoCodec::H264 => ("H264", "rtph264depay ! h264parse"),
        VideoCodec::Vp8 => ("VP8", "rtpvp8depay"),
    };
    let desc = format!(
        "appsrc name=src is-live=true format=time do-timestamp=true block=false max-bytes=4000000 \
         caps=\"application/x-rtp,media=(string)video,clock-rate=(int)90000,encoding-name=(string){name},payload=(int){pt}\" ! \
         {depay} ! {element} ! videoconvert ! video/x-raw,format=I420 ! \
         appsink name=sink sync=false max-buffers=2 drop=true"
    );
    let what = format!("video decoder ({element})");
    let pipeline = build_pipeline(&desc, &what)?;
    let health = Arc::new(Health::default());
    watch_bus(&pipeline, what.clone(), Arc::clone(&health));
    let appsrc: gst_app::AppSrc = by_name(&pipeline, "src")?;
    let appsink: gst_app::AppSink = by_name(&pipeline, "sink")?;
    let on_frame = Arc::clone(on_frame);
    let outputs = Arc::clone(&health);
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                outputs.outputs.fetch_add(1, Ordering::Relaxed);
                match sample_to_frame(&sample) {
                    Some(frame) => on_frame(frame),
                    None => log::debug!("decoded video sample could not be read"),
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    play(&pipeline, &health, &what)?;
    Ok(DecoderPipeline { pipeline, appsrc, health })
}

struct DecoderState {
    run: DecoderPipeline,
    element: String,
    fallbacks: Vec<String>,
}

/// A running video decoder: push received RTP packets, decoded frames go to the callback.
pub struct VideoDecoder {
    codec: VideoCodec,
    pt: u8,
    on_frame: FrameCallback,
    state: Mutex<DecoderState>,
}

impl VideoDecoder {
    /// Builds and starts a decoder for `codec` with RTP payload type `pt`, with the best decoder this
    /// process has. `on_frame` runs on a GStreamer thread for every decoded frame; it must not block.
    pub fn start(
        codec: VideoCodec,
        pt: u8,
        on_frame: impl Fn(VideoFrame) + Send + Sync + 'static,
    ) -> Result<Self, MediaError> {
        Self::start_with(codec, pt, &CodecPolicy::default(), &GstRegistry, on_frame)
    }

    /// As [`VideoDecoder::start`], the decoder chosen under `policy` from `registry`; one that fails to
    /// start is skipped with a warning and the next tried (and so is one that fails before decoding its
    /// first frame, at the next push).
    pub fn start_with(
        codec: VideoCodec,
        pt: u8,
        policy: &CodecPolicy,
        registry: &dyn ElementRegistry,
        on_frame: impl Fn(VideoFrame) + Send + Sync + 'static,
    ) -> Result<Self, MediaError> {
        let candidates = select_decoders(registry, codec, policy)?;
        let on_frame: FrameCallback = Arc::new(on_frame);
        let (run, element, fallbacks) =
            start_first("video decoder", &candidates, |e| build_decoder(codec, pt, e, &on_frame))?;
        log::info!("video decoder started: {codec:?} via {element}, pt {pt}");
        Ok(Self { codec, pt, on_frame, state: Mutex::new(DecoderState { run, element, fallbacks }) })
    }

    /// The codec decoded.
    pub fn codec(&self) -> VideoCodec {
        self.codec
    }

    /// The decoder element in use.
    pub fn element(&self) -> String {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).element.clone()
    }

    /// Pushes one marshalled RTP packet.
    pub fn push_rtp(&self, packet: Bytes) -> Result<(), MediaError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(error) = state.run.health.error() {
            if state.run.health.outputs.load(Ordering::Relaxed) > 0 || state.fallbacks.is_empty() {
                return Err(MediaError::Gstreamer(format!("video decoder {} failed: {error}", state.element)));
            }
            let failed = state.element.clone();
            let remaining = std::mem::take(&mut state.fallbacks);
            log::warn!(
                "video decoder {failed} failed before its first frame ({error}); trying {}",
                remaining.join(", ")
            );
            let (run, element, fallbacks) =
                start_first("video decoder", &remaining, |e| build_decoder(self.codec, self.pt, e, &self.on_frame))?;
            *state = DecoderState { run, element, fallbacks };
        }
        state
            .run
            .appsrc
            .push_buffer(gst::Buffer::from_slice(packet))
            .map(|_| ())
            .map_err(|e| MediaError::Gstreamer(format!("video decoder {} refused a packet: {e:?}", state.element)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::pattern::{draw_test_frame, read_frame_counter};
    use std::collections::HashSet;
    use std::time::Instant;

    /// A registry that has exactly the named elements.
    struct FakeRegistry(HashSet<&'static str>);

    impl FakeRegistry {
        fn with(names: &[&'static str]) -> Self {
            Self(names.iter().copied().collect())
        }
    }

    impl ElementRegistry for FakeRegistry {
        fn has(&self, name: &str) -> bool {
            self.0.contains(name)
        }
    }

    /// A fake that claims the named elements on top of what GStreamer really has.
    struct PlusRegistry(&'static [&'static str]);

    impl ElementRegistry for PlusRegistry {
        fn has(&self, name: &str) -> bool {
            self.0.contains(&name) || GstRegistry.has(name)
        }
    }

    fn software_only() -> CodecPolicy {
        CodecPolicy { allow_hardware: false, ..CodecPolicy::default() }
    }

    // --- selection against a fake registry -------------------------------------------------------

    #[test]
    fn hardware_present_is_chosen_first() {
        let reg = FakeRegistry::with(&["v4l2h264enc", "x264enc", "openh264enc", "v4l2h264dec", "avdec_h264"]);
        let p = CodecPolicy::default();
        assert_eq!(select_encoders(&reg, VideoCodec::H264, &p).unwrap(), ["v4l2h264enc", "x264enc", "openh264enc"]);
        assert_eq!(select_decoders(&reg, VideoCodec::H264, &p).unwrap(), ["v4l2h264dec", "avdec_h264"]);
        let vp8 = FakeRegistry::with(&["v4l2vp8enc", "vp8enc", "v4l2vp8dec", "vp8dec"]);
        assert_eq!(select_encoders(&vp8, VideoCodec::Vp8, &p).unwrap()[0], "v4l2vp8enc");
        assert_eq!(select_decoders(&vp8, VideoCodec::Vp8, &p).unwrap()[0], "v4l2vp8dec");
    }

    #[test]
    fn hardware_disallowed_falls_back_to_software() {
        let reg = FakeRegistry::with(&["v4l2h264enc", "openh264enc", "v4l2h264dec", "avdec_h264"]);
        assert_eq!(select_encoders(&reg, VideoCodec::H264, &software_only()).unwrap(), ["openh264enc"]);
        assert_eq!(select_decoders(&reg, VideoCodec::H264, &software_only()).unwrap(), ["avdec_h264"]);
        // Forcing a hardware element while hardware is disallowed is a configuration error.
        let p = CodecPolicy { forced_encoder: Some("v4l2h264enc".into()), ..software_only() };
        assert!(matches!(select_encoders(&reg, VideoCodec::H264, &p), Err(MediaError::Config(_))));
    }

    #[test]
    fn forced_encoder_is_the_only_candidate_and_must_exist() {
        let reg = FakeRegistry::with(&["v4l2h264enc", "x264enc", "openh264enc", "vp8enc"]);
        let p = CodecPolicy { forced_encoder: Some("openh264enc".into()), ..CodecPolicy::default() };
        assert_eq!(select_encoders(&reg, VideoCodec::H264, &p).unwrap(), ["openh264enc"]);
        // An H.264 encoder forced does not constrain VP8.
        assert_eq!(select_encoders(&reg, VideoCodec::Vp8, &p).unwrap(), ["vp8enc"]);
        let p = CodecPolicy { forced_encoder: Some("nvh264enc".into()), ..CodecPolicy::default() };
        match select_encoders(&reg, VideoCodec::H264, &p) {
            Err(MediaError::MissingElement(name)) => assert_eq!(name, "nvh264enc"),
            other => panic!("expected MissingElement, got {other:?}"),
        }
        let p = CodecPolicy { forced_decoder: Some("openh264dec".into()), ..CodecPolicy::default() };
        assert!(
            matches!(select_decoders(&reg, VideoCodec::H264, &p), Err(MediaError::MissingElement(n)) if n == "openh264dec")
        );
    }

    #[test]
    fn nothing_present_names_the_candidates() {
        let reg = FakeRegistry::with(&[]);
        match select_encoders(&reg, VideoCodec::H264, &CodecPolicy::default()) {
            Err(MediaError::MissingElement(names)) => assert_eq!(names, "v4l2h264enc|x264enc|openh264enc"),
            other => panic!("expected MissingElement, got {other:?}"),
        }
        match select_decoders(&reg, VideoCodec::Vp8, &software_only()) {
            Err(MediaError::MissingElement(names)) => assert_eq!(names, "vp8dec"),
            other => panic!("expected MissingElement, got {other:?}"),
        }
        let e = select_encoders(&reg, VideoCodec::Vp8, &CodecPolicy::default()).unwrap_err();
        assert!(e.to_string().contains("v4l2vp8enc|vp8enc"), "{e}");
    }

    #[test]
    fn available_lists_follow_the_registry() {
        let reg = FakeRegistry::with(&["openh264enc", "vp8enc", "avdec_h264", "openh264dec"]);
        assert_eq!(available_encoders(&reg, VideoCodec::H264), ["openh264enc"]);
        assert_eq!(available_encoders(&reg, VideoCodec::Vp8), ["vp8enc"]);
        assert_eq!(available_decoders(&reg, VideoCodec::H264), ["avdec_h264", "openh264dec"]);
        assert!(available_decoders(&reg, VideoCodec::Vp8).is_empty());
    }

    #[test]
    fn start_first_skips_a_failing_element() {
        let candidates: Vec<String> = ["v4l2h264enc", "x264enc", "openh264enc"].map(String::from).to_vec();
        let mut tried = Vec::new();
        let (got, element, rest) = start_first("test", &candidates, |e| {
            tried.push(e.to_owned());
            if is_hardware(e) {
                Err(MediaError::Gstreamer("cannot open /dev/video11".into()))
            } else {
                Ok(e.len())
            }
        })
        .unwrap();
        assert_eq!((got, element.as_str(), rest), (7, "x264enc", vec!["openh264enc".to_owned()]));
        assert_eq!(tried, ["v4l2h264enc", "x264enc"]);
        // All failing: the error names each.
        let e =
            start_first::<()>("test", &candidates, |e| Err(MediaError::Gstreamer(format!("{e} broke")))).unwrap_err();
        let text = e.to_string();
        assert!(candidates.iter().all(|c| text.contains(&format!("{c}: GStreamer: {c} broke"))), "{text}");
        // A single candidate's own error comes back unchanged.
        let one = vec!["x264enc".to_owned()];
        assert!(matches!(
            start_first::<()>("test", &one, |e| Err(MediaError::MissingElement(e.into()))),
            Err(MediaError::MissingElement(n)) if n == "x264enc"
        ));
    }

    // --- selection against the real registry ------------------------------------------------------

    fn inspect_has(name: &str) -> bool {
        crate::test_support::target_command("gst-inspect-1.0")
            .arg(name)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    #[test]
    fn real_registry_choice_matches_gst_inspect() {
        init_gstreamer().unwrap();
        for codec in [VideoCodec::H264, VideoCodec::Vp8] {
            let enc: Vec<&str> = encoder_candidates(codec).iter().copied().filter(|e| inspect_has(e)).collect();
            let dec: Vec<&str> = decoder_candidates(codec).iter().copied().filter(|e| inspect_has(e)).collect();
            assert_eq!(available_encoders(&GstRegistry, codec), enc, "{codec:?}");
            assert_eq!(available_decoders(&GstRegistry, codec), dec, "{codec:?}");
            assert_eq!(choose_encoder(codec, None).unwrap(), enc[0]);
            let policy = CodecPolicy::default();
            assert_eq!(select_decoders(&GstRegistry, codec, &policy).unwrap()[0], dec[0]);
            let soft = select_encoders(&GstRegistry, codec, &software_only()).unwrap();
            assert_eq!(soft[0], *enc.iter().find(|e| !is_hardware(e)).unwrap());
        }
        // What a machine without V4L2 codec devices (CI) has.
        if !available_encoders(&GstRegistry, VideoCodec::H264).iter().any(|e| is_hardware(e)) {
            assert_eq!(choose_encoder(VideoCodec::H264, None).unwrap(), "x264enc");
            assert_eq!(choose_encoder(VideoCodec::Vp8, None).unwrap(), "vp8enc");
        }
        if !available_decoders(&GstRegistry, VideoCodec::H264).iter().any(|e| is_hardware(e)) {
            let policy = CodecPolicy::default();
            assert_eq!(select_decoders(&GstRegistry, VideoCodec::H264, &policy).unwrap()[0], "avdec_h264");
            assert_eq!(select_decoders(&GstRegistry, VideoCodec::Vp8, &policy).unwrap()[0], "vp8dec");
        }
    }

    #[test]
    fn forcing_a_missing_encoder_is_an_error() {
        init_gstreamer().unwrap();
        assert!(matches!(
            choose_encoder(VideoCodec::H264, Some("no-such-encoder")),
            Err(MediaError::MissingElement(_))
        ));
    }

    // --- pure helpers -----------------------------------------------------------------------------

    #[test]
    fn h264_levels() {
        assert_eq!(h264_level(640, 480, 30), "3");
        assert_eq!(h264_level(1280, 720, 30), "3.1");
        assert_eq!(h264_level(1280, 720, 60), "3.2");
        assert_eq!(h264_level(1920, 1080, 30), "4");
        assert_eq!(h264_level(1920, 1080, 60), "4.2");
        assert_eq!(h264_level(3840, 2160, 30), "5.1");
    }

    #[test]
    fn v4l2_controls_parse_as_int_fields() {
        init_gstreamer().unwrap();
        let s: gst::Structure = v4l2_extra_controls(VideoCodec::H264, 800, 1800).parse().unwrap();
        assert_eq!(s.name(), "controls");
        assert_eq!(s.get::<i32>("video_bitrate").unwrap(), 800_000);
        assert_eq!(s.get::<i32>("h264_i_frame_period").unwrap(), 1800);
        assert_eq!(s.get::<i32>("repeat_sequence_header").unwrap(), 1);
        let s: gst::Structure = v4l2_extra_controls(VideoCodec::Vp8, 3_000_000, 60).parse().unwrap();
        assert_eq!(s.get::<i32>("video_bitrate").unwrap(), i32::MAX, "saturates");
        assert_eq!(s.get::<i32>("video_gop_size").unwrap(), 60);
        let frag = encoder_fragment("v4l2h264enc", VideoCodec::H264, 800, 1800, (1280, 720), 30);
        assert!(frag.contains("level=(string)3.1") && frag.contains("profile=constrained-baseline"), "{frag}");
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

    #[test]
    fn layouts_need_meta_only_when_rows_are_not_4_byte_aligned() {
        init_gstreamer().unwrap();
        for pf in [PixelFormat::I420, PixelFormat::Nv12, PixelFormat::Yuyv] {
            assert_eq!(meta_layout(pf, 640, 480), None, "{pf:?}");
            let (offsets, strides) = tight_layout(pf, 330, 250).unwrap();
            let len = pf.frame_len(330, 250).unwrap();
            assert!(offsets.iter().all(|o| *o < len));
            assert!(strides[0] >= 330);
        }
        assert!(meta_layout(PixelFormat::I420, 330, 250).is_some());
        assert!(meta_layout(PixelFormat::Nv12, 330, 250).is_some());
        assert_eq!(meta_layout(PixelFormat::Mjpeg, 640, 480), None);
    }

    #[test]
    fn conversions_have_the_packed_sizes() {
        let frame = draw_test_frame(330, 250, 7);
        for pf in [PixelFormat::I420, PixelFormat::Nv12, PixelFormat::Yuyv] {
            assert_eq!(convert_i420(&frame, pf).unwrap().len(), pf.frame_len(330, 250).unwrap(), "{pf:?}");
        }
        assert!(convert_i420(&frame, PixelFormat::Mjpeg).is_none());
        let short = VideoFrame { width: 330, height: 250, data: Bytes::from_static(&[0; 10]) };
        assert!(convert_i420(&short, PixelFormat::Nv12).is_none());
        // NV12 interleaves U then V; YUY2 is Y0 U Y1 V.
        let tiny = VideoFrame { width: 2, height: 2, data: Bytes::from_static(&[1, 2, 3, 4, 50, 60]) };
        assert_eq!(&convert_i420(&tiny, PixelFormat::Nv12).unwrap()[..], &[1, 2, 3, 4, 50, 60]);
        assert_eq!(&convert_i420(&tiny, PixelFormat::Yuyv).unwrap()[..], &[1, 50, 2, 60, 3, 50, 4, 60]);
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

    fn raw_capture(pf: PixelFormat, width: u32, height: u32, out: Option<(u32, u32)>) -> Decoded {
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
        let got = raw_capture(PixelFormat::Yuyv, 640, 480, None);
        assert!(got.sizes.len() >= 10, "decoded {}", got.sizes.len());
        assert!(got.sizes.iter().all(|s| *s == (640, 480)), "{:?}", got.sizes);
        assert_counters(&got, "YUY2");
    }

    #[test]
    fn nv12_capture_encodes_and_decodes_at_the_capture_size() {
        let got = raw_capture(PixelFormat::Nv12, 320, 240, None);
        assert!(got.sizes.len() >= 10, "decoded {}", got.sizes.len());
        assert!(got.sizes.iter().all(|s| *s == (320, 240)), "{:?}", got.sizes);
        assert_counters(&got, "NV12");
    }

    #[test]
    fn capture_is_scaled_to_the_requested_size() {
        let got = raw_capture(PixelFormat::Yuyv, 640, 480, Some((320, 240)));
        assert!(got.sizes.len() >= 10, "decoded {}", got.sizes.len());
        assert!(got.sizes.iter().all(|s| *s == (320, 240)), "{:?}", got.sizes);
    }

    #[test]
    fn unaligned_rows_are_read_with_the_packed_layout() {
        // 330 pixels: GStreamer's default layout would pad rows to 332; a frame read that way is skewed
        // and its counter unreadable.
        for pf in [PixelFormat::I420, PixelFormat::Nv12] {
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
        let format = CaptureFormat { pixel_format: PixelFormat::Mjpeg, width: 320, height: 240, fps: 30 };
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
        let format = CaptureFormat { pixel_format: PixelFormat::Yuyv, width: 320, height: 240, fps: 30 };
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
        let frame = captured(other, 2, convert_i420(&draw_test_frame(640, 480, 1), PixelFormat::Yuyv).unwrap());
        assert!(matches!(enc.push_capture(&frame), Err(MediaError::Config(_))));
        // Well-formed frames still encode.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut n = 3;
        while counters.frames_encoded.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
            let data = convert_i420(&draw_test_frame(320, 240, n), PixelFormat::Yuyv).unwrap();
            enc.push_capture(&captured(format, n, data)).unwrap();
            n += 1;
            std::thread::sleep(Duration::from_millis(33));
        }
        assert!(counters.frames_encoded.load(Ordering::Relaxed) > 0);

        // MJPEG that is not a JPEG is skipped too.
        let mjpeg = CaptureFormat { pixel_format: PixelFormat::Mjpeg, ..format };
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
        let format = CaptureFormat { pixel_format: PixelFormat::I420, width: 320, height: 240, fps: 30 };
        let settings = EncoderSettings::new(VideoCodec::H264, 600, 96, 0x4444);
        let mut lp = start_loop(format, &settings, &CodecPolicy::default(), &reg);
        assert_eq!(lp.encoder.element(), "x264enc");
        let dec = VideoDecoder::start_with(VideoCodec::H264, 96, &CodecPolicy::default(), &reg, |_| {}).unwrap();
        assert_eq!(dec.element(), "avdec_h264");
        let got = run_loop(&mut lp, format, 5, |n| Some(draw_test_frame(320, 240, n).data));
        assert!(got.sizes.len() >= 5);
    }

    #[test]
    fn element_failing_before_its_first_frame_is_replaced() {
        init_gstreamer().unwrap();
        // An encoder that starts, then fails to configure itself at the first frame.
        let format = CaptureFormat { pixel_format: PixelFormat::I420, width: 320, height: 240, fps: 30 };
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
            let format = CaptureFormat { pixel_format: PixelFormat::I420, width: 320, height: 240, fps: 30 };
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

    /// Encodes test frames, feeds the RTP straight into a decoder and reads the counters back (through
    /// the I420 API the session uses).
    fn round_trip(codec: VideoCodec, element: Option<&str>) {
        init_gstreamer().unwrap();
        let element = choose_encoder(codec, element).unwrap();
        let decoded: Arc<Mutex<Vec<u32>>> = Arc::default();
        let sink = Arc::clone(&decoded);
        let decoder = Arc::new(
            VideoDecoder::start(codec, 96, move |frame| {
                assert_eq!((frame.width, frame.height), (320, 240));
                if let Some(n) = read_frame_counter(&frame) {
                    sink.lock().unwrap().push(n);
                }
            })
            .unwrap(),
        );
        let to_decoder = Arc::clone(&decoder);
        let counters = Arc::new(EncoderCounters::default());
        let mut encoder = VideoEncoder::start(
            codec,
            &element,
            320,
            240,
            30,
            600,
            96,
            0x1234_5678,
            Arc::clone(&counters),
            move |rtp| {
                let _ = to_decoder.push_rtp(rtp);
            },
        )
        .unwrap();
        encoder.force_keyframe();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut n = 100u32;
        while decoded.lock().unwrap().len() < 10 && Instant::now() < deadline {
            encoder.push_frame(&draw_test_frame(320, 240, n)).unwrap();
            n += 1;
            std::thread::sleep(Duration::from_millis(33));
        }
        // A forced keyframe shows up in the count (the encoder's own GOP is 60 s).
        let keyframes = counters.keyframes.load(Ordering::Relaxed);
        encoder.force_keyframe();
        let deadline = Instant::now() + Duration::from_secs(20);
        while counters.keyframes.load(Ordering::Relaxed) == keyframes && Instant::now() < deadline {
            encoder.push_frame(&draw_test_frame(320, 240, n)).unwrap();
            n += 1;
            std::thread::sleep(Duration::from_millis(33));
        }
        assert!(counters.keyframes.load(Ordering::Relaxed) > keyframes, "forced keyframe not seen");
        let got = decoded.lock().unwrap().clone();
        assert!(got.len() >= 10, "{codec:?}/{element}: decoded only {got:?}");
        assert!(got.iter().all(|c| (100..n).contains(c)), "{got:?}");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "not increasing: {got:?}");
        assert!(counters.keyframes.load(Ordering::Relaxed) >= 1);
        // A frame of another size is refused, not misread.
        assert!(matches!(encoder.push_frame(&draw_test_frame(640, 480, 1)), Err(MediaError::Config(_))));
    }

    #[test]
    fn frame_counter_survives_h264_x264() {
        round_trip(VideoCodec::H264, Some("x264enc"));
    }

    #[test]
    fn frame_counter_survives_h264_openh264() {
        round_trip(VideoCodec::H264, Some("openh264enc"));
    }

    #[test]
    fn frame_counter_survives_vp8() {
        round_trip(VideoCodec::Vp8, None);
    }
}

//! The GStreamer pipelines the encoder and decoder run: their descriptions (each encoder element's
//! settings, the payloader, the `appsrc` caps of a capture format), building and starting them, the
//! `appsrc`/`appsink` wiring, and the health their bus and outputs show. One pipeline per element
//! tried; replacing a failed one is the encoder's and the decoder's job.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::decode_cap::DecodeCap;
use super::encoder::EncoderCounters;
use super::init_gstreamer;
use super::pixel_layout::{gst_format, sample_to_frame};
use crate::devices::CaptureFormat;
use crate::frame::VideoFrame;
use crate::media::{MediaError, VideoCodec};

// ---------------------------------------------------------------------------------------------------
// Descriptions

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

pub(super) fn kbps_to_bps_i32(kbps: u32) -> i32 {
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

/// The RTP payloader after `element`. H.264 keyframes must carry SPS and PPS (a subscriber joining mid-call decodes
/// from the next keyframe on): the payloader inserts them before each IDR slice (`config-interval=-1`), except
/// after x264enc, which writes them itself at the start of every keyframe. With `tune=zerolatency` x264 cuts each
/// picture into one slice per thread, and the payloader's copies then land *between* the slices of one picture:
/// avdec_h264 shrugs, openh264dec fails every frame after (docs/benchmarks.md, "Memory of one call").
fn payloader_fragment(codec: VideoCodec, element: &str, pt: u8, ssrc: u32) -> String {
    match codec {
        VideoCodec::H264 => {
            let config_interval = if element == "x264enc" { 0 } else { -1 };
            format!(
                "rtph264pay name=pay config-interval={config_interval} aggregate-mode=zero-latency mtu=1200 pt={pt} \
                 ssrc={ssrc}"
            )
        }
        VideoCodec::Vp8 => {
            format!("rtpvp8pay name=pay picture-id-mode=15-bit mtu=1200 pt={pt} ssrc={ssrc}")
        }
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

// ---------------------------------------------------------------------------------------------------
// Plumbing

/// What a pipeline's bus and output have shown: its first error, and how many outputs it produced (a
/// pipeline that fails before its first output may be replaced by the next candidate element).
#[derive(Default)]
pub(super) struct Health {
    error: Mutex<Option<String>>,
    pub(super) outputs: AtomicU64,
}

impl Health {
    pub(super) fn error(&self) -> Option<String> {
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

pub(super) fn build_pipeline(desc: &str, what: &str) -> Result<gst::Pipeline, MediaError> {
    let element =
        gst::parse::launch(desc).map_err(|e| MediaError::Gstreamer(format!("{what}: cannot build `{desc}`: {e}")))?;
    element.downcast::<gst::Pipeline>().map_err(|_| MediaError::Gstreamer(format!("{what}: not a pipeline")))
}

pub(super) fn by_name<T: IsA<gst::Element>>(pipeline: &gst::Pipeline, name: &str) -> Result<T, MediaError> {
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

// ---------------------------------------------------------------------------------------------------
// Encoder pipeline

/// One built encoder pipeline.
pub(super) struct EncoderPipeline {
    pipeline: gst::Pipeline,
    pub(super) appsrc: gst_app::AppSrc,
    pub(super) encoder: gst::Element,
    pub(super) health: Arc<Health>,
}

impl Drop for EncoderPipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

pub(super) type RtpCallback = Arc<dyn Fn(Bytes) + Send + Sync>;

/// Everything needed to build an encoder pipeline (again, for a fallback).
pub(super) struct EncoderSpec {
    pub(super) codec: VideoCodec,
    pub(super) input: CaptureFormat,
    pub(super) size: (u32, u32),
    pub(super) pt: u8,
    pub(super) ssrc: u32,
    pub(super) counters: Arc<EncoderCounters>,
    pub(super) on_rtp: RtpCallback,
}

impl EncoderSpec {
    pub(super) fn build(&self, element: &str, bitrate_kbps: u32) -> Result<EncoderPipeline, MediaError> {
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
            payloader_fragment(self.codec, element, self.pt, self.ssrc),
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

// ---------------------------------------------------------------------------------------------------
// Decoder pipeline

pub(super) type FrameCallback = Arc<dyn Fn(VideoFrame) + Send + Sync>;

/// How long the decoder's jitter buffer waits for a missing video packet before it gives the packet up:
/// room for a NACK round (webrtc-rs's generator runs every 100 ms; Janus asks the sender on its own leg
/// too) and the retransmission to arrive and take its place in sequence. It is also the video's added
/// delay, so it stays well below what the audio's jitter buffer and a person's eye would notice.
pub const VIDEO_REORDER_MS: u32 = 200;

/// One built decoder pipeline.
pub(super) struct DecoderPipeline {
    pipeline: gst::Pipeline,
    pub(super) appsrc: gst_app::AppSrc,
    pub(super) health: Arc<Health>,
    /// Keyframes the depayloader asked for: a packet was given up for lost, so the pictures that follow
    /// reference one the decoder never had (answered by a PLI to the sender).
    pub(super) keyframe_requests: Arc<AtomicU64>,
}

impl Drop for DecoderPipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

pub(super) fn build_decoder(
    codec: VideoCodec,
    pt: u8,
    element: &str,
    cap: DecodeCap,
    on_frame: &FrameCallback,
) -> Result<DecoderPipeline, MediaError> {
    init_gstreamer()?;
    // The jitter buffer puts packets back in sequence and waits `VIDEO_REORDER_MS` for a missing one (a
    // NACKed retransmission arrives late and out of order); a packet it gives up makes the depayloader
    // ask upstream for a keyframe (`request-keyframe`), which the probe below counts.
    let (name, depay) = match codec {
        VideoCodec::H264 => ("H264", "rtph264depay request-keyframe=true ! h264parse"),
        VideoCodec::Vp8 => ("VP8", "rtpvp8depay request-keyframe=true"),
    };
    let desc = format!(
        "appsrc name=src is-live=true format=time do-timestamp=true block=false max-bytes=4000000 \
         caps=\"application/x-rtp,media=(string)video,clock-rate=(int)90000,encoding-name=(string){name},payload=(int){pt}\" ! \
         rtpjitterbuffer latency={VIDEO_REORDER_MS} do-lost=true ! \
         {depay} ! {element} name=dec ! videoconvert ! video/x-raw,format=I420 ! \
         appsink name=sink sync=false max-buffers=2 drop=true"
    );
    let what = format!("video decoder ({element})");
    let pipeline = build_pipeline(&desc, &what)?;
    let health = Arc::new(Health::default());
    watch_bus(&pipeline, what.clone(), Arc::clone(&health));
    let appsrc: gst_app::AppSrc = by_name(&pipeline, "src")?;
    let keyframe_requests = Arc::new(AtomicU64::new(0));
    if let Some(pad) = appsrc.static_pad("src") {
        let requests = Arc::clone(&keyframe_requests);
        pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
            if let Some(gst::PadProbeData::Event(event)) = &info.data {
                if event.structure().is_some_and(|s| s.name() == "GstForceKeyUnit") {
                    requests.fetch_add(1, Ordering::Relaxed);
                }
            }
            gst::PadProbeReturn::Ok
        });
    }
    let appsink: gst_app::AppSink = by_name(&pipeline, "sink")?;
    let decoder: gst::Element = by_name(&pipeline, "dec")?;
    let decoder_input =
        decoder.static_pad("sink").ok_or_else(|| MediaError::Gstreamer(format!("{what} has no sink pad")))?;
    keep_within(&decoder_input, cap);
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
    Ok(DecoderPipeline { pipeline, appsrc, health, keyframe_requests })
}

/// Keeps streams above `cap` from the decoder behind `decoder_input`: the parser's caps name each stream's size
/// before the decoder sees it; caps above the cap are dropped, and so is every buffer until caps that fit come.
/// (Caps without a size pass: the parsers used here always give one.)
fn keep_within(decoder_input: &gst::Pad, cap: DecodeCap) {
    let refusing = AtomicBool::new(false);
    decoder_input.add_probe(
        gst::PadProbeType::EVENT_DOWNSTREAM | gst::PadProbeType::BUFFER,
        move |_, info| match &info.data {
            Some(gst::PadProbeData::Event(event)) => {
                let gst::EventView::Caps(caps) = event.view() else { return gst::PadProbeReturn::Ok };
                let size = caps.caps().structure(0).and_then(|s| {
                    let w = s.get::<i32>("width").ok()?;
                    let h = s.get::<i32>("height").ok()?;
                    Some((u32::try_from(w).unwrap_or(u32::MAX), u32::try_from(h).unwrap_or(u32::MAX)))
                });
                let Some((w, h)) = size else { return gst::PadProbeReturn::Ok };
                if cap.admits(w, h) {
                    if refusing.swap(false, Ordering::Relaxed) {
                        log::info!("remote video is {w}x{h} now: decoded again");
                    }
                    return gst::PadProbeReturn::Ok;
                }
                if !refusing.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "remote video is {w}x{h}, above this board's decoding cap of {}: not decoded",
                        cap.describe()
                    );
                }
                gst::PadProbeReturn::Drop
            }
            Some(gst::PadProbeData::Buffer(_)) if refusing.load(Ordering::Relaxed) => gst::PadProbeReturn::Drop,
            _ => gst::PadProbeReturn::Ok,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

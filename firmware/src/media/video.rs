//! GStreamer video pipelines: the encoder (raw I420 frames in, RTP packets out, H.264 constrained
//! baseline packetization-mode 1 or VP8) and the decoder (RTP packets in, raw I420 frames out), plus
//! encoder/decoder element selection. Pipelines are driven through `appsrc`/`appsink`; they own no
//! sockets and know nothing of WebRTC.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use super::pattern::VideoFrame;
use super::{MediaError, VideoCodec};

/// Initialises GStreamer (idempotent and cheap after the first call).
pub(crate) fn init_gstreamer() -> Result<(), MediaError> {
    gst::init().map_err(|e| MediaError::Gstreamer(format!("gst::init failed: {e}")))
}

fn element_exists(name: &str) -> bool {
    gst::ElementFactory::find(name).is_some()
}

/// Software H.264 encoders in order of preference. A hardware encoder (`v4l2h264enc` on a Pi 4) is
/// chosen through the board profile with [`super::VideoConfig::encoder`], not probed here.
const H264_ENCODERS: &[&str] = &["x264enc", "openh264enc"];
/// H.264 decoders in order of preference: the board's hardware decoder (registered only where the V4L2 device
/// exists), then libav, then OpenH264 (which did not decode x264's stream in our pipeline: left for a later look,
/// as libav maps libavfilter and its dependencies, about 20 MB of shared-library RSS).
const H264_DECODERS: &[&str] = &["v4l2h264dec", "avdec_h264", "openh264dec"];

/// Picks the encoder element for `codec`: `forced` if given (must exist), else the first available.
pub(crate) fn choose_encoder(codec: VideoCodec, forced: Option<&str>) -> Result<String, MediaError> {
    if let Some(name) = forced {
        if element_exists(name) {
            return Ok(name.to_owned());
        }
        return Err(MediaError::MissingElement(name.to_owned()));
    }
    let candidates: &[&str] = match codec {
        VideoCodec::H264 => H264_ENCODERS,
        VideoCodec::Vp8 => &["vp8enc"],
    };
    candidates
        .iter()
        .find(|name| element_exists(name))
        .map(|name| (*name).to_owned())
        .ok_or_else(|| MediaError::MissingElement(candidates.join("|")))
}

fn choose_decoder(codec: VideoCodec) -> Result<&'static str, MediaError> {
    let candidates: &[&'static str] = match codec {
        VideoCodec::H264 => H264_DECODERS,
        VideoCodec::Vp8 => &["vp8dec"],
    };
    candidates
        .iter()
        .copied()
        .find(|name| element_exists(name))
        .ok_or_else(|| MediaError::MissingElement(candidates.join("|")))
}

fn encoder_fragment(element: &str, codec: VideoCodec, bitrate_kbps: u32, gop: u32) -> String {
    let bps = bitrate_kbps.saturating_mul(1000);
    match (codec, element) {
        (VideoCodec::H264, "x264enc") => format!(
            "x264enc name=enc tune=zerolatency speed-preset=ultrafast bitrate={bitrate_kbps} \
             key-int-max={gop} threads=2 option-string=scenecut=0 ! \
             video/x-h264,profile=constrained-baseline,stream-format=byte-stream,alignment=au"
        ),
        (VideoCodec::H264, "openh264enc") => format!(
            "openh264enc name=enc bitrate={bps} gop-size={gop} usage-type=camera complexity=low \
             rate-control=bitrate scene-change-detection=false ! \
             video/x-h264,stream-format=byte-stream,alignment=au"
        ),
        (VideoCodec::H264, other) => format!(
            "{other} name=enc ! video/x-h264,profile=constrained-baseline,stream-format=byte-stream,alignment=au \
             ! h264parse"
        ),
        (VideoCodec::Vp8, "vp8enc") => format!(
            "vp8enc name=enc deadline=1 cpu-used=8 end-usage=cbr target-bitrate={bps} \
             keyframe-max-dist={gop} lag-in-frames=0 threads=2 error-resilient=default"
        ),
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

fn log_bus(pipeline: &gst::Pipeline, what: &'static str) {
    if let Some(bus) = pipeline.bus() {
        bus.set_sync_handler(move |_, msg| {
            match msg.view() {
                gst::MessageView::Error(e) => {
                    log::warn!("{what} pipeline error: {} ({:?})", e.error(), e.debug())
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

/// Counters the encoder updates from GStreamer's streaming thread.
#[derive(Default)]
pub(crate) struct EncoderCounters {
    pub frames_encoded: AtomicU64,
    pub keyframes: AtomicU64,
}

/// A running video encoder: push raw frames, receive RTP packets through the callback.
pub(crate) struct VideoEncoder {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    encoder: gst::Element,
    codec: VideoCodec,
    element: String,
    fps: u32,
    frame_index: u64,
}

impl VideoEncoder {
    /// Builds and starts an encoder. `on_rtp` receives each RTP packet (marshalled) from a GStreamer
    /// thread; it must not block.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
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
        init_gstreamer()?;
        // Keyframes are driven explicitly; the encoder's own GOP is only a safety net (60 s).
        let gop = fps.saturating_mul(60).max(1);
        let desc = format!(
            "appsrc name=src is-live=true format=time do-timestamp=false block=false max-bytes=20000000 \
             caps=video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 ! \
             queue max-size-buffers=4 leaky=downstream ! videoconvert ! {} ! {} ! \
             appsink name=sink sync=false max-buffers=256 drop=true",
            encoder_fragment(element, codec, bitrate_kbps, gop),
            payloader_fragment(codec, pt, ssrc),
        );
        let pipeline = build_pipeline(&desc, "video encoder")?;
        log_bus(&pipeline, "video encoder");
        let appsrc: gst_app::AppSrc = by_name(&pipeline, "src")?;
        let encoder: gst::Element = by_name(&pipeline, "enc")?;
        let appsink: gst_app::AppSink = by_name(&pipeline, "sink")?;

        if let Some(pad) = encoder.static_pad("src") {
            let counters = Arc::clone(&counters);
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(buffer) = info.buffer() {
                    counters.frames_encoded.fetch_add(1, Ordering::Relaxed);
                    if !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                        counters.keyframes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                gst::PadProbeReturn::Ok
            });
        }
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(buffer) = sample.buffer() {
                        if let Ok(map) = buffer.map_readable() {
                            on_rtp(Bytes::copy_from_slice(map.as_slice()));
                        }
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| MediaError::Gstreamer(format!("video encoder ({element}) failed to start: {e}")))?;
        log::info!("video encoder started: {codec:?} via {element}, {width}x{height}@{fps}, pt {pt}");
        Ok(Self { pipeline, appsrc, encoder, codec, element: element.to_owned(), fps: fps.max(1), frame_index: 0 })
    }

    pub(crate) fn codec(&self) -> VideoCodec {
        self.codec
    }

    pub(crate) fn element(&self) -> &str {
        &self.element
    }

    /// Pushes one raw frame; returns an error if the pipeline refused it (flushing, error state).
    pub(crate) fn push_frame(&mut self, frame: &VideoFrame) -> Result<(), MediaError> {
        let mut buffer = gst::Buffer::from_slice(frame.data.clone());
        let frame_ns = 1_000_000_000u64 / u64::from(self.fps);
        if let Some(buf) = buffer.get_mut() {
            buf.set_pts(gst::ClockTime::from_nseconds(self.frame_index * frame_ns));
            buf.set_duration(gst::ClockTime::from_nseconds(frame_ns));
        }
        self.frame_index += 1;
        self.appsrc
            .push_buffer(buffer)
            .map(|_| ())
            .map_err(|e| MediaError::Gstreamer(format!("video encoder refused a frame: {e:?}")))
    }

    /// Asks the encoder for a keyframe (with SPS/PPS for H.264) as soon as possible: an upstream
    /// force-key-unit event on the encoder's source pad, as a downstream consumer would send it.
    pub(crate) fn force_keyframe(&self) {
        let event = gst_video::UpstreamForceKeyUnitEvent::builder().all_headers(true).build();
        match self.encoder.static_pad("src") {
            Some(pad) => {
                if !pad.send_event(event) {
                    log::debug!("video encoder did not accept a force-key-unit event");
                }
            }
            None => log::debug!("video encoder has no src pad"),
        }
    }
}

impl Drop for VideoEncoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// A running video decoder: push received RTP packets, decoded frames go to the callback.
pub(crate) struct VideoDecoder {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    codec: VideoCodec,
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
        let stride = usize::try_from(*info.stride().get(plane)?).ok()?;
        for row in 0..ph {
            out.extend_from_slice(data.get(row * stride..row * stride + pw)?);
        }
    }
    Some(VideoFrame { width: info.width(), height: info.height(), data: Bytes::from(out) })
}

impl VideoDecoder {
    /// Builds and starts a decoder for `codec` with RTP payload type `pt`. `on_frame` runs on a
    /// GStreamer thread for every decoded frame; it must not block.
    pub(crate) fn start(
        codec: VideoCodec,
        pt: u8,
        on_frame: impl Fn(VideoFrame) + Send + Sync + 'static,
    ) -> Result<Self, MediaError> {
        init_gstreamer()?;
        let decoder = choose_decoder(codec)?;
        let (name, depay) = match codec {
            VideoCodec::H264 => ("H264", "rtph264depay ! h264parse"),
            VideoCodec::Vp8 => ("VP8", "rtpvp8depay"),
        };
        let desc = format!(
            "appsrc name=src is-live=true format=time do-timestamp=true block=false max-bytes=4000000 \
             caps=\"application/x-rtp,media=(string)video,clock-rate=(int)90000,encoding-name=(string){name},payload=(int){pt}\" ! \
             {depay} ! {decoder} ! videoconvert ! video/x-raw,format=I420 ! \
             appsink name=sink sync=false max-buffers=2 drop=true"
        );
        let pipeline = build_pipeline(&desc, "video decoder")?;
        log_bus(&pipeline, "video decoder");
        let appsrc: gst_app::AppSrc = by_name(&pipeline, "src")?;
        let appsink: gst_app::AppSink = by_name(&pipeline, "sink")?;
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    match sample_to_frame(&sample) {
                        Some(frame) => on_frame(frame),
                        None => log::debug!("decoded video sample could not be read"),
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| MediaError::Gstreamer(format!("video decoder ({decoder}) failed to start: {e}")))?;
        log::info!("video decoder started: {codec:?} via {decoder}, pt {pt}");
        Ok(Self { pipeline, appsrc, codec })
    }

    pub(crate) fn codec(&self) -> VideoCodec {
        self.codec
    }

    /// Pushes one marshalled RTP packet.
    pub(crate) fn push_rtp(&self, packet: Bytes) -> Result<(), MediaError> {
        self.appsrc
            .push_buffer(gst::Buffer::from_slice(packet))
            .map(|_| ())
            .map_err(|e| MediaError::Gstreamer(format!("video decoder refused a packet: {e:?}")))
    }
}

impl Drop for VideoDecoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::pattern::{draw_test_frame, read_frame_counter};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    /// Encodes test frames, feeds the RTP straight into a decoder and reads the counters back.
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

    #[test]
    fn forcing_a_missing_encoder_is_an_error() {
        init_gstreamer().unwrap();
        assert!(matches!(
            choose_encoder(VideoCodec::H264, Some("no-such-encoder")),
            Err(MediaError::MissingElement(_))
        ));
    }
}

//! [`VideoDecoder`]: RTP packets in, I420 frames out to a callback; a decoder element that fails
//! before its first frame is replaced by the next candidate.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gstreamer as gst;

use super::decode_cap::DecodeCap;
use super::pipeline::{build_decoder, DecoderPipeline, FrameCallback};
use super::selection::{select_decoders, start_first, CodecPolicy, ElementRegistry, GstRegistry};
use crate::frame::VideoFrame;
use crate::media::{MediaError, VideoCodec};

struct DecoderState {
    run: DecoderPipeline,
    element: String,
    fallbacks: Vec<String>,
}

/// A running video decoder: push received RTP packets, decoded frames go to the callback.
pub struct VideoDecoder {
    codec: VideoCodec,
    pt: u8,
    cap: DecodeCap,
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
        Self::start_with(codec, pt, &CodecPolicy::default(), &GstRegistry, DecodeCap::default(), on_frame)
    }

    /// As [`VideoDecoder::start`], the decoder chosen under `policy` from `registry`; one that fails to
    /// start is skipped with a warning and the next tried (and so is one that fails before decoding its
    /// first frame, at the next push). Streams above `cap` are not decoded ([`DecodeCap`]).
    pub fn start_with(
        codec: VideoCodec,
        pt: u8,
        policy: &CodecPolicy,
        registry: &dyn ElementRegistry,
        cap: DecodeCap,
        on_frame: impl Fn(VideoFrame) + Send + Sync + 'static,
    ) -> Result<Self, MediaError> {
        let candidates = select_decoders(registry, codec, policy)?;
        let on_frame: FrameCallback = Arc::new(on_frame);
        let (run, element, fallbacks) =
            start_first("video decoder", &candidates, |e| build_decoder(codec, pt, e, cap, &on_frame))?;
        log::info!("video decoder started: {codec:?} via {element}, pt {pt}, up to {}", cap.describe());
        Ok(Self { codec, pt, cap, on_frame, state: Mutex::new(DecoderState { run, element, fallbacks }) })
    }

    /// The codec decoded.
    pub fn codec(&self) -> VideoCodec {
        self.codec
    }

    /// The decoder element in use.
    pub fn element(&self) -> String {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).element.clone()
    }

    /// Keyframes the decoder has asked for so far (a packet given up for lost: the pictures after it are
    /// broken until the next keyframe). The session answers a new request with a PLI.
    pub fn keyframe_requests(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).run.keyframe_requests.load(Ordering::Relaxed)
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
            let (run, element, fallbacks) = start_first("video decoder", &remaining, |e| {
                build_decoder(self.codec, self.pt, e, self.cap, &self.on_frame)
            })?;
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
    use crate::frame::{draw_test_frame, read_frame_counter};
    use crate::media::video::{choose_encoder, init_gstreamer, EncoderCounters, GstRegistry, VideoEncoder};
    use std::time::{Duration, Instant};

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

    /// Encodes `frames` test frames (counters from 100) at 15 fps and returns each frame's RTP packets.
    fn encode_frames(codec: VideoCodec, frames: u32) -> Vec<Vec<Bytes>> {
        init_gstreamer().unwrap();
        let element = choose_encoder(codec, None).unwrap();
        let packets: Arc<Mutex<Vec<Bytes>>> = Arc::default();
        let sink = Arc::clone(&packets);
        let mut encoder = VideoEncoder::start(
            codec,
            &element,
            320,
            240,
            15,
            300,
            96,
            0x1234_5678,
            Arc::new(EncoderCounters::default()),
            move |rtp| sink.lock().unwrap().push(rtp),
        )
        .unwrap();
        encoder.force_keyframe();
        for n in 0..frames {
            encoder.push_frame(&draw_test_frame(320, 240, 100 + n)).unwrap();
            // At the encoder's 15 fps: faster, a slow machine's encoder (the aarch64 tests under qemu-user)
            // drops frames to keep up.
            std::thread::sleep(Duration::from_millis(66));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let marked = |p: &Vec<Bytes>| p.iter().filter(|b| b.len() > 1 && b[1] & 0x80 != 0).count();
        while marked(&packets.lock().unwrap()) < frames as usize && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(encoder);
        // Split at the marker bit (the last packet of each frame).
        let mut out = vec![Vec::new()];
        for p in packets.lock().unwrap().iter() {
            out.last_mut().unwrap().push(p.clone());
            if p.len() > 1 && p[1] & 0x80 != 0 {
                out.push(Vec::new());
            }
        }
        out.retain(|f| !f.is_empty());
        out
    }

    /// Pushes `frames` into a new decoder at 15 fps (`arrange` may reorder or drop packets of frame 10 and
    /// 11); returns the counters decoded and the keyframe requests.
    fn decode_frames(
        codec: VideoCodec,
        mut frames: Vec<Vec<Bytes>>,
        arrange: impl FnOnce(&mut Vec<Vec<Bytes>>),
    ) -> (Vec<u32>, u64) {
        let decoded: Arc<Mutex<Vec<u32>>> = Arc::default();
        let sink = Arc::clone(&decoded);
        let decoder = VideoDecoder::start(codec, 96, move |frame| {
            if let Some(n) = read_frame_counter(&frame) {
                sink.lock().unwrap().push(n);
            }
        })
        .unwrap();
        arrange(&mut frames);
        for frame in frames {
            for p in frame {
                decoder.push_rtp(p).unwrap();
            }
            std::thread::sleep(Duration::from_millis(66));
        }
        // What the jitter buffer still holds comes out after its latency.
        std::thread::sleep(Duration::from_millis(u64::from(super::super::pipeline::VIDEO_REORDER_MS) + 500));
        let got = decoded.lock().unwrap().clone();
        (got, decoder.keyframe_requests())
    }

    #[test]
    fn packets_out_of_order_are_put_back_in_sequence() {
        for codec in [VideoCodec::H264, VideoCodec::Vp8] {
            let frames = encode_frames(codec, 20);
            assert!(frames.len() >= 20, "{codec:?}: {} frames", frames.len());
            // The decoder may ask for a keyframe as it starts (H.264 before its first parameter sets).
            let (_, at_start) = decode_frames(codec, frames.clone(), |_| {});
            // Frame 10's last packet arrives after frame 11's first, as a NACKed retransmission would.
            let (got, requests) = decode_frames(codec, frames, |f| {
                let late = f[10].pop().unwrap();
                f[11].insert(1, late);
            });
            for n in 100..120 {
                assert!(got.contains(&n), "{codec:?}: frame {n} missing: {got:?}");
            }
            assert_eq!(requests, at_start, "{codec:?}: nothing was lost");
        }
    }

    #[test]
    fn a_packet_lost_for_good_makes_the_decoder_ask_for_a_keyframe() {
        for codec in [VideoCodec::H264, VideoCodec::Vp8] {
            let frames = encode_frames(codec, 20);
            let (_, at_start) = decode_frames(codec, frames.clone(), |_| {});
            let (_, requests) = decode_frames(codec, frames, |f| {
                f[10].pop();
            });
            assert!(requests > at_start, "{codec:?}: no keyframe asked for ({requests}, {at_start} at the start)");
        }
    }

    #[test]
    fn frame_counter_survives_h264_x264() {
        round_trip(VideoCodec::H264, Some("x264enc"));
    }

    /// x264's stream decoded by OpenH264, the software decoder that needs no libav: it failed on every frame when
    /// the payloader inserted SPS/PPS between the slices of a keyframe.
    #[test]
    fn x264_is_decoded_by_openh264dec() {
        init_gstreamer().unwrap();
        assert_eq!(choose_encoder(VideoCodec::H264, None).unwrap(), "x264enc", "the sender this test is about");
        let policy = CodecPolicy { forced_decoder: Some("openh264dec".into()), ..CodecPolicy::default() };
        let decoded: Arc<Mutex<Vec<u32>>> = Arc::default();
        let sink = Arc::clone(&decoded);
        let on_frame = move |frame: VideoFrame| {
            if let Some(n) = read_frame_counter(&frame) {
                sink.lock().unwrap().push(n);
            }
        };
        let decoder = Arc::new(
            VideoDecoder::start_with(VideoCodec::H264, 96, &policy, &GstRegistry, DecodeCap::default(), on_frame)
                .unwrap(),
        );
        assert_eq!(decoder.element(), "openh264dec");
        assert_eq!(send(&decoder, VideoCodec::H264, (320, 240), 0x0264, 30), 0, "packets refused");
        let deadline = Instant::now() + Duration::from_secs(20);
        while decoded.lock().unwrap().len() < 20 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let got = decoded.lock().unwrap().clone();
        assert!(got.len() >= 20, "openh264dec read {} of 30 x264 frames back: {got:?}", got.len());
    }

    #[test]
    fn frame_counter_survives_h264_openh264() {
        round_trip(VideoCodec::H264, Some("openh264enc"));
    }

    #[test]
    fn frame_counter_survives_vp8() {
        round_trip(VideoCodec::Vp8, None);
    }

    /// Sends `frames` test frames of `w` x `h` from a fresh encoder into `decoder`, a keyframe every 10; returns
    /// how many packets the decoder refused with an error.
    fn send(decoder: &Arc<VideoDecoder>, codec: VideoCodec, (w, h): (u32, u32), ssrc: u32, frames: u32) -> u64 {
        let element = choose_encoder(codec, None).unwrap();
        let to_decoder = Arc::clone(decoder);
        let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = Arc::clone(&errors);
        let counters = Arc::new(EncoderCounters::default());
        let mut encoder = VideoEncoder::start(codec, &element, w, h, 30, 600, 96, ssrc, counters, move |rtp| {
            if to_decoder.push_rtp(rtp).is_err() {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        })
        .unwrap();
        for n in 0..frames {
            // A keyframe every 10 frames: the decoder's jitter buffer takes a few packets to follow a new
            // stream's sequence numbers, and may drop the first keyframe's packets while it does.
            if n.is_multiple_of(10) {
                encoder.force_keyframe();
            }
            encoder.push_frame(&draw_test_frame(w, h, n)).unwrap();
            std::thread::sleep(Duration::from_millis(33));
        }
        drop(encoder);
        errors.load(Ordering::Relaxed)
    }

    /// A stream above the board's cap is not decoded (no frame, no error: the call goes on without the picture);
    /// when the peer sends a size that fits, it is decoded again.
    fn cap_keeps_big_streams_out(codec: VideoCodec) {
        init_gstreamer().unwrap();
        let sizes: Arc<Mutex<Vec<(u32, u32)>>> = Arc::default();
        let sink = Arc::clone(&sizes);
        let policy = CodecPolicy::default();
        let cap = DecodeCap::new(240, 180);
        let decoder = Arc::new(
            VideoDecoder::start_with(codec, 96, &policy, &GstRegistry, cap, move |frame| {
                sink.lock().unwrap().push((frame.width, frame.height))
            })
            .unwrap(),
        );
        assert_eq!(send(&decoder, codec, (320, 240), 0x1111, 30), 0, "{codec:?}: the big stream made errors");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(sizes.lock().unwrap().len(), 0, "{codec:?}: 320x240 decoded under a 240x180 cap");
        assert_eq!(send(&decoder, codec, (160, 120), 0x2222, 30), 0, "{codec:?}: the small stream made errors");
        let deadline = Instant::now() + Duration::from_secs(10);
        while sizes.lock().unwrap().len() < 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let got = sizes.lock().unwrap().clone();
        assert!(got.len() >= 5, "{codec:?}: 160x120 not decoded after the big stream: {got:?}");
        assert!(got.iter().all(|s| *s == (160, 120)), "{got:?}");
    }

    #[test]
    fn streams_above_the_cap_are_not_decoded_vp8() {
        cap_keeps_big_streams_out(VideoCodec::Vp8);
    }

    #[test]
    fn streams_above_the_cap_are_not_decoded_h264() {
        cap_keeps_big_streams_out(VideoCodec::H264);
    }
}

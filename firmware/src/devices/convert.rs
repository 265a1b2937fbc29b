//! Camera frames to packed I420 (the format the compositor and the test-pattern reader take), at the
//! capture size: I420 passes through, NV12 and YUYV are rearranged row by row, MJPEG is decoded by a
//! small GStreamer pipeline (`jpegdec`) kept for the converter's lifetime. Used by the local preview;
//! the encoder pipeline does its own conversion inside GStreamer.

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::{CameraPixelFormat, CapturedFrame, DeviceError};
use crate::frame::VideoFrame;

/// How long the JPEG decoder may take for one frame.
const DECODE_TIMEOUT_MS: u64 = 200;

/// Converts camera frames to I420; keeps the JPEG decoder between frames.
#[derive(Default)]
pub struct FrameConverter {
    jpeg: Option<JpegDecoder>,
}

impl FrameConverter {
    /// A converter (the JPEG decoder starts on the first MJPEG frame).
    pub fn new() -> Self {
        Self::default()
    }

    /// The frame as packed I420. A frame whose buffer is shorter than its format needs is an error
    /// (never a panic).
    pub fn to_i420(&mut self, frame: &CapturedFrame) -> Result<VideoFrame, DeviceError> {
        let f = frame.format;
        let (w, h) = (f.width as usize, f.height as usize);
        let short = |need: usize| DeviceError::Io {
            device: "frame converter".into(),
            reason: format!("{f} frame of {} bytes, {need} needed", frame.data.len()),
        };
        let data = match f.pixel_format {
            CameraPixelFormat::I420 => {
                let need = VideoFrame::i420_len(f.width, f.height);
                if frame.data.len() < need {
                    return Err(short(need));
                }
                frame.data.slice(..need)
            }
            CameraPixelFormat::Nv12 => {
                let need = VideoFrame::i420_len(f.width, f.height);
                if frame.data.len() < need {
                    return Err(short(need));
                }
                Bytes::from(nv12_to_i420(&frame.data, w, h))
            }
            CameraPixelFormat::Yuyv => {
                let need = w.div_ceil(2) * 4 * h;
                if frame.data.len() < need {
                    return Err(short(need));
                }
                Bytes::from(yuyv_to_i420(&frame.data, w, h))
            }
            CameraPixelFormat::Mjpeg => {
                if self.jpeg.is_none() {
                    self.jpeg = Some(JpegDecoder::start()?);
                }
                let decoded = match self.jpeg.as_mut() {
                    Some(dec) => dec.decode(&frame.data, f.width, f.height),
                    None => Err(short(1)),
                };
                if decoded.is_err() {
                    // A decoder that failed is rebuilt for the next frame rather than left stuck.
                    self.jpeg = None;
                }
                return decoded;
            }
        };
        Ok(VideoFrame { width: f.width, height: f.height, data })
    }
}

fn nv12_to_i420(src: &[u8], w: usize, h: usize) -> Vec<u8> {
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let mut out = Vec::with_capacity(w * h + 2 * cw * ch);
    out.extend_from_slice(&src[..w * h]);
    let uv = &src[w * h..w * h + 2 * cw * ch];
    out.extend(uv.iter().step_by(2));
    out.extend(uv.iter().skip(1).step_by(2));
    out
}

fn yuyv_to_i420(src: &[u8], w: usize, h: usize) -> Vec<u8> {
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let row = cw * 4;
    let mut y = Vec::with_capacity(w * h);
    let mut u = Vec::with_capacity(cw * ch);
    let mut v = Vec::with_capacity(cw * ch);
    for (r, line) in src.chunks_exact(row).take(h).enumerate() {
        for px in line.chunks_exact(4) {
            y.push(px[0]);
            y.push(px[2]);
        }
        y.truncate((r + 1) * w);
        // 4:2:2 to 4:2:0: the chroma of even rows.
        if r % 2 == 0 {
            for px in line.chunks_exact(4) {
                u.push(px[1]);
                v.push(px[3]);
            }
        }
    }
    y.extend(u);
    y.extend(v);
    y
}

struct JpegDecoder {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    sink: gst_app::AppSink,
}

impl JpegDecoder {
    fn start() -> Result<Self, DeviceError> {
        let err = |reason: String| DeviceError::Io { device: "jpeg decoder".into(), reason };
        gst::init().map_err(|e| err(format!("GStreamer init: {e}")))?;
        let pipeline = gst::parse::launch(
            "appsrc name=src is-live=true format=time caps=image/jpeg ! jpegdec ! videoconvert ! \
             video/x-raw,format=I420 ! appsink name=sink max-buffers=1 drop=true sync=false",
        )
        .map_err(|e| err(format!("pipeline: {e}")))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| err("not a pipeline".into()))?;
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| err("no appsrc".into()))?;
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| err("no appsink".into()))?;
        pipeline.set_state(gst::State::Playing).map_err(|e| err(format!("cannot start: {e}")))?;
        Ok(Self { pipeline, src, sink })
    }

    fn decode(&mut self, jpeg: &[u8], width: u32, height: u32) -> Result<VideoFrame, DeviceError> {
        let err = |reason: String| DeviceError::Io { device: "jpeg decoder".into(), reason };
        self.src.push_buffer(gst::Buffer::from_slice(jpeg.to_vec())).map_err(|e| err(format!("push: {e}")))?;
        let sample = self
            .sink
            .try_pull_sample(gst::ClockTime::from_mseconds(DECODE_TIMEOUT_MS))
            .ok_or_else(|| err("no decoded frame (corrupt JPEG?)".into()))?;
        let buffer = sample.buffer().ok_or_else(|| err("empty sample".into()))?;
        let map = buffer.map_readable().map_err(|e| err(format!("map: {e}")))?;
        let need = VideoFrame::i420_len(width, height);
        if map.len() < need {
            return Err(err(format!("decoded {} bytes, {need} expected for {width}x{height}", map.len())));
        }
        Ok(VideoFrame { width, height, data: Bytes::copy_from_slice(&map[..need]) })
    }
}

impl Drop for JpegDecoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::CaptureFormat;
    use std::time::Duration;

    fn frame(pixel_format: CameraPixelFormat, w: u32, h: u32, data: Vec<u8>) -> CapturedFrame {
        CapturedFrame {
            format: CaptureFormat { pixel_format, width: w, height: h, fps: 30 },
            data: Bytes::from(data),
            timestamp: Duration::ZERO,
            sequence: 0,
        }
    }

    #[test]
    fn nv12_and_yuyv_become_the_same_i420() {
        let (w, h) = (4usize, 2usize);
        let y: Vec<u8> = (0..8).collect();
        let mut nv12 = y.clone();
        nv12.extend([100, 200, 101, 201]);
        let mut conv = FrameConverter::new();
        let a = conv.to_i420(&frame(CameraPixelFormat::Nv12, 4, 2, nv12)).unwrap();
        assert_eq!(&a.data[..], &[0, 1, 2, 3, 4, 5, 6, 7, 100, 101, 200, 201]);
        // YUYV rows: Y0 U Y1 V; chroma of row 0 is kept.
        let yuyv = vec![0, 100, 1, 200, 2, 101, 3, 201, 4, 9, 5, 9, 6, 9, 7, 9];
        let b = conv.to_i420(&frame(CameraPixelFormat::Yuyv, w as u32, h as u32, yuyv)).unwrap();
        assert_eq!(a.data, b.data);
    }

    #[test]
    fn short_buffers_are_errors_not_panics() {
        let mut conv = FrameConverter::new();
        for pf in [CameraPixelFormat::I420, CameraPixelFormat::Nv12, CameraPixelFormat::Yuyv] {
            let e = conv.to_i420(&frame(pf, 640, 480, vec![0; 100])).unwrap_err();
            assert!(e.to_string().contains("100 bytes"), "{e}");
        }
        assert!(conv.to_i420(&frame(CameraPixelFormat::Mjpeg, 64, 48, vec![1, 2, 3])).is_err());
    }
}

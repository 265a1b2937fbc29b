//! Raw frame memory layouts: the GStreamer format of each camera pixel format, the tight (unpadded)
//! offsets and strides captured frames have and the `GstVideoMeta` that describes them where GStreamer's
//! default layout pads rows, tightly packed I420 converted to NV12 and YUY2 (as a camera delivers them),
//! and decoded I420 read out of GStreamer's strided planes into a tight [`VideoFrame`].

use bytes::Bytes;
use gstreamer as gst;
use gstreamer_video as gst_video;
use gstreamer_video::VideoFrameExt;

use crate::devices::CameraPixelFormat;
use crate::frame::VideoFrame;

/// The GStreamer raw format of a raw pixel format (`None` for MJPEG).
pub(super) fn gst_format(pixel_format: CameraPixelFormat) -> Option<gst_video::VideoFormat> {
    match pixel_format {
        CameraPixelFormat::I420 => Some(gst_video::VideoFormat::I420),
        CameraPixelFormat::Nv12 => Some(gst_video::VideoFormat::Nv12),
        CameraPixelFormat::Yuyv => Some(gst_video::VideoFormat::Yuy2),
        CameraPixelFormat::Mjpeg => None,
    }
}

/// Offsets and strides of a tightly packed raw frame (as [`CapturedFrame`](crate::devices::CapturedFrame)
/// and [`VideoFrame`] carry them), or `None` for MJPEG.
fn tight_layout(pixel_format: CameraPixelFormat, width: u32, height: u32) -> Option<(Vec<usize>, Vec<i32>)> {
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let stride = |n: usize| i32::try_from(n).ok();
    match pixel_format {
        CameraPixelFormat::I420 => Some((vec![0, w * h, w * h + cw * ch], vec![stride(w)?, stride(cw)?, stride(cw)?])),
        CameraPixelFormat::Nv12 => Some((vec![0, w * h], vec![stride(w)?, stride(2 * cw)?])),
        CameraPixelFormat::Yuyv => Some((vec![0], vec![stride(4 * cw)?])),
        CameraPixelFormat::Mjpeg => None,
    }
}

/// The tight layout when it differs from GStreamer's default one (which pads rows to 4 bytes), so
/// frames need a `GstVideoMeta` to be read right; `None` when no meta is needed.
pub(super) fn meta_layout(pixel_format: CameraPixelFormat, width: u32, height: u32) -> Option<(Vec<usize>, Vec<i32>)> {
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
pub fn convert_i420(frame: &VideoFrame, to: CameraPixelFormat) -> Option<Bytes> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let data = frame.data.get(..VideoFrame::i420_len(frame.width, frame.height))?;
    let (y, chroma) = data.split_at(w * h);
    let (u, v) = chroma.split_at(cw * ch);
    match to {
        CameraPixelFormat::I420 => Some(frame.data.slice(..data.len())),
        CameraPixelFormat::Nv12 => {
            let mut out = Vec::with_capacity(data.len());
            out.extend_from_slice(y);
            for (cu, cv) in u.iter().zip(v) {
                out.extend_from_slice(&[*cu, *cv]);
            }
            Some(Bytes::from(out))
        }
        CameraPixelFormat::Yuyv => {
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
        CameraPixelFormat::Mjpeg => None,
    }
}

pub(super) fn sample_to_frame(sample: &gst::Sample) -> Option<VideoFrame> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::draw_test_frame;
    use crate::media::video::init_gstreamer;

    #[test]
    fn layouts_need_meta_only_when_rows_are_not_4_byte_aligned() {
        init_gstreamer().unwrap();
        for pf in [CameraPixelFormat::I420, CameraPixelFormat::Nv12, CameraPixelFormat::Yuyv] {
            assert_eq!(meta_layout(pf, 640, 480), None, "{pf:?}");
            let (offsets, strides) = tight_layout(pf, 330, 250).unwrap();
            let len = pf.frame_len(330, 250).unwrap();
            assert!(offsets.iter().all(|o| *o < len));
            assert!(strides[0] >= 330);
        }
        assert!(meta_layout(CameraPixelFormat::I420, 330, 250).is_some());
        assert!(meta_layout(CameraPixelFormat::Nv12, 330, 250).is_some());
        assert_eq!(meta_layout(CameraPixelFormat::Mjpeg, 640, 480), None);
    }

    #[test]
    fn conversions_have_the_packed_sizes() {
        let frame = draw_test_frame(330, 250, 7);
        for pf in [CameraPixelFormat::I420, CameraPixelFormat::Nv12, CameraPixelFormat::Yuyv] {
            assert_eq!(convert_i420(&frame, pf).unwrap().len(), pf.frame_len(330, 250).unwrap(), "{pf:?}");
        }
        assert!(convert_i420(&frame, CameraPixelFormat::Mjpeg).is_none());
        let short = VideoFrame { width: 330, height: 250, data: Bytes::from_static(&[0; 10]) };
        assert!(convert_i420(&short, CameraPixelFormat::Nv12).is_none());
        // NV12 interleaves U then V; YUY2 is Y0 U Y1 V.
        let tiny = VideoFrame { width: 2, height: 2, data: Bytes::from_static(&[1, 2, 3, 4, 50, 60]) };
        assert_eq!(&convert_i420(&tiny, CameraPixelFormat::Nv12).unwrap()[..], &[1, 2, 3, 4, 50, 60]);
        assert_eq!(&convert_i420(&tiny, CameraPixelFormat::Yuyv).unwrap()[..], &[1, 50, 2, 60, 3, 50, 4, 60]);
    }
}

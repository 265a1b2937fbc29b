//! Video devices: the [`VideoCapture`] trait (a camera delivering frames in its own format), the
//! [`VideoBackend`] that lists and opens cameras, format negotiation, and the backends: `v4l2` (Linux,
//! the v4l crate) and `sim` (test-pattern camera).

pub mod sim;
pub mod v4l2;

use std::path::PathBuf;
use std::time::Duration;

use super::{CameraPixelFormat, CaptureFormat, CapturedFrame, DeviceError};

/// A camera.
pub trait VideoCapture: Send {
    /// The format frames arrive in.
    fn format(&self) -> CaptureFormat;
    /// Blocks up to `timeout` for the next frame. [`DeviceError::Stalled`] when none came in time;
    /// [`DeviceError::Gone`] when the camera disappeared (drop this and reopen through the backend).
    fn next_frame(&mut self, timeout: Duration) -> Result<CapturedFrame, DeviceError>;
    /// The device's id.
    fn id(&self) -> &str;
}

/// What the configuration asks of a camera.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoRequest {
    /// Wanted width.
    pub width: u32,
    /// Wanted height.
    pub height: u32,
    /// Wanted frame rate.
    pub fps: u32,
    /// Acceptable pixel formats in order of preference.
    pub formats: Vec<CameraPixelFormat>,
}

impl Default for VideoRequest {
    fn default() -> Self {
        Self {
            width: 640,
            height: 480,
            fps: 30,
            formats: vec![
                CameraPixelFormat::I420,
                CameraPixelFormat::Nv12,
                CameraPixelFormat::Yuyv,
                CameraPixelFormat::Mjpeg,
            ],
        }
    }
}

/// A camera as listed by a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoDeviceInfo {
    /// Stable id to open it by (`/dev/video0` for V4L2, `sim:pattern` for the simulated camera).
    pub id: String,
    /// Human-readable name (the driver's card name).
    pub name: String,
    /// The device node whose access decides the permission.
    pub node: Option<PathBuf>,
    /// The formats it offers (every discrete size and rate).
    pub formats: Vec<CaptureFormat>,
}

/// Lists and opens cameras.
pub trait VideoBackend: Send + Sync {
    /// Cameras present now (capture devices only; a node that cannot be queried is left out and
    /// logged at debug level).
    fn list(&self) -> Vec<VideoDeviceInfo>;
    /// Opens a camera by id in the format [`choose_format`] picks for `request`.
    fn open(&self, id: &str, request: &VideoRequest) -> Result<Box<dyn VideoCapture>, DeviceError>;
}

/// Largest area, as a multiple of the requested area, that [`choose_format`] accepts for a size covering the
/// request before it prefers a nearer size (capturing more than 4x the pixels costs bus bandwidth and a
/// downscale on every frame).
pub const MAX_COVERING_AREA_RATIO: u64 = 4;

/// Picks the capture format to ask a camera for, from what it `offered`, for `request`. Pure; `None` when
/// no offered format is acceptable (its pixel format is not in `request.formats`, or the list is empty).
///
/// The rules, in order:
///
/// 1. Only formats whose pixel format is in `request.formats` count, and only with a non-zero size and rate.
/// 2. **Size first.** The exact requested size if offered; else the smallest size covering the request
///    (width and height both at least the requested ones) whose area is at most
///    [`MAX_COVERING_AREA_RATIO`] times the requested area (downscaling keeps quality); else the size
///    nearest by area ratio (`max(a/r, r/a)`), ties going to the smaller size. Sizes are compared across
///    all acceptable pixel formats.
/// 3. **Raw before MJPEG.** At that size, a raw format (I420, NV12, YUYV) is taken when one reaches the
///    requested rate (or more); MJPEG only when no raw format does, because every MJPEG frame costs a JPEG
///    decode before the encoder. MJPEG's place in `request.formats` only decides whether it is acceptable.
/// 4. **Rate.** Among those: the exact rate; else the lowest rate above it (the pipeline drops frames);
///    when nothing at that size reaches the requested rate, the highest rate offered there (a raw format
///    winning a tie with MJPEG).
/// 5. **Preference.** Remaining ties go to the pixel format listed first in `request.formats`.
pub fn choose_format(offered: &[CaptureFormat], request: &VideoRequest) -> Option<CaptureFormat> {
    let rank = |f: &CaptureFormat| request.formats.iter().position(|p| *p == f.pixel_format);
    let acceptable: Vec<CaptureFormat> =
        offered.iter().copied().filter(|f| f.width > 0 && f.height > 0 && f.fps > 0 && rank(f).is_some()).collect();
    let (width, height) = best_size(&acceptable, request)?;
    let at_size: Vec<CaptureFormat> =
        acceptable.into_iter().filter(|f| f.width == width && f.height == height).collect();
    let is_raw = |f: &CaptureFormat| f.pixel_format != CameraPixelFormat::Mjpeg;
    let fast_enough = |f: &CaptureFormat| f.fps >= request.fps;
    let key_rank = |f: &CaptureFormat| rank(f).unwrap_or(usize::MAX);
    let raw_fast = at_size.iter().filter(|f| is_raw(f) && fast_enough(f));
    let any_fast = at_size.iter().filter(|f| fast_enough(f));
    if raw_fast.clone().next().is_some() {
        return raw_fast.min_by_key(|f| (f.fps, key_rank(f))).copied();
    }
    if any_fast.clone().next().is_some() {
        return any_fast.min_by_key(|f| (f.fps, key_rank(f))).copied();
    }
    // Nothing reaches the rate: the fastest, raw before MJPEG, then preference.
    at_size.iter().min_by_key(|f| (std::cmp::Reverse(f.fps), !is_raw(f), key_rank(f))).copied()
}

/// Step 2 of [`choose_format`]: the size to capture at, among `candidates` (already filtered).
fn best_size(candidates: &[CaptureFormat], request: &VideoRequest) -> Option<(u32, u32)> {
    let area = |w: u32, h: u32| u64::from(w) * u64::from(h);
    let wanted = area(request.width, request.height).max(1);
    if candidates.iter().any(|f| f.width == request.width && f.height == request.height) {
        return Some((request.width, request.height));
    }
    let covering = candidates
        .iter()
        .filter(|f| f.width >= request.width && f.height >= request.height)
        .filter(|f| area(f.width, f.height) <= wanted.saturating_mul(MAX_COVERING_AREA_RATIO))
        .min_by_key(|f| (area(f.width, f.height), f.width, f.height));
    if let Some(f) = covering {
        return Some((f.width, f.height));
    }
    // Nearest by area ratio max(a/r, r/a), compared exactly as a fraction big/small; ties to the smaller.
    candidates
        .iter()
        .min_by(|a, b| {
            let ratio = |f: &CaptureFormat| {
                let got = area(f.width, f.height).max(1);
                (got.max(wanted), got.min(wanted))
            };
            let ((an, ad), (bn, bd)) = (ratio(a), ratio(b));
            (u128::from(an) * u128::from(bd))
                .cmp(&(u128::from(bn) * u128::from(ad)))
                .then(area(a.width, a.height).cmp(&area(b.width, b.height)))
                .then((a.width, a.height).cmp(&(b.width, b.height)))
        })
        .map(|f| (f.width, f.height))
}

/// Now on CLOCK_MONOTONIC (the clock V4L2 drivers stamp buffers with), as time since boot.
pub(crate) fn monotonic_now() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(pixel_format: CameraPixelFormat, width: u32, height: u32, fps: u32) -> CaptureFormat {
        CaptureFormat { pixel_format, width, height, fps }
    }

    fn req(width: u32, height: u32, fps: u32) -> VideoRequest {
        VideoRequest { width, height, fps, ..VideoRequest::default() }
    }

    use CameraPixelFormat::{Mjpeg, Nv12, Yuyv, I420};

    #[test]
    fn empty_offer_gives_none() {
        assert_eq!(choose_format(&[], &VideoRequest::default()), None);
    }

    #[test]
    fn nothing_acceptable_gives_none() {
        let offered = [f(Yuyv, 640, 480, 30), f(Mjpeg, 640, 480, 30)];
        let request = VideoRequest { formats: vec![I420, Nv12], ..VideoRequest::default() };
        assert_eq!(choose_format(&offered, &request), None);
        let none = VideoRequest { formats: vec![], ..VideoRequest::default() };
        assert_eq!(choose_format(&offered, &none), None);
    }

    #[test]
    fn degenerate_entries_are_ignored() {
        let offered = [f(I420, 0, 480, 30), f(I420, 640, 480, 0), f(Yuyv, 320, 240, 30)];
        assert_eq!(choose_format(&offered, &req(640, 480, 30)), Some(f(Yuyv, 320, 240, 30)));
        assert_eq!(choose_format(&offered[..2], &req(640, 480, 30)), None);
    }

    #[test]
    fn exact_match_in_most_preferred_format() {
        let offered = [
            f(Yuyv, 640, 480, 30),
            f(Nv12, 640, 480, 30),
            f(I420, 640, 480, 15),
            f(I420, 1280, 720, 30),
            f(Mjpeg, 640, 480, 30),
        ];
        assert_eq!(choose_format(&offered, &req(640, 480, 30)), Some(f(Nv12, 640, 480, 30)));
        let yuyv_first = VideoRequest { formats: vec![Yuyv, Nv12], ..req(640, 480, 30) };
        assert_eq!(choose_format(&offered, &yuyv_first), Some(f(Yuyv, 640, 480, 30)));
    }

    #[test]
    fn exact_rate_beats_format_preference() {
        let offered = [f(I420, 640, 480, 60), f(Yuyv, 640, 480, 30)];
        assert_eq!(choose_format(&offered, &req(640, 480, 30)), Some(f(Yuyv, 640, 480, 30)));
    }

    #[test]
    fn mjpeg_only_at_that_size() {
        let offered = [f(Yuyv, 640, 480, 30), f(Mjpeg, 1280, 720, 30), f(Yuyv, 320, 240, 30)];
        assert_eq!(choose_format(&offered, &req(1280, 720, 30)), Some(f(Mjpeg, 1280, 720, 30)));
        // Without MJPEG acceptable, the nearest raw size.
        let raw_only = VideoRequest { formats: vec![Yuyv], ..req(1280, 720, 30) };
        assert_eq!(choose_format(&offered, &raw_only), Some(f(Yuyv, 640, 480, 30)));
    }

    #[test]
    fn raw_beats_mjpeg_even_when_mjpeg_listed_first() {
        let offered = [f(Mjpeg, 640, 480, 30), f(Yuyv, 640, 480, 30)];
        let request = VideoRequest { formats: vec![Mjpeg, Yuyv], ..req(640, 480, 30) };
        assert_eq!(choose_format(&offered, &request), Some(f(Yuyv, 640, 480, 30)));
    }

    #[test]
    fn mjpeg_when_raw_cannot_reach_the_rate() {
        // A USB 2 webcam: YUYV 720p only at 10 fps, MJPEG at 30.
        let offered = [f(Yuyv, 1280, 720, 10), f(Yuyv, 1280, 720, 5), f(Mjpeg, 1280, 720, 30)];
        assert_eq!(choose_format(&offered, &req(1280, 720, 30)), Some(f(Mjpeg, 1280, 720, 30)));
        // Asking for 10 fps: raw reaches it.
        assert_eq!(choose_format(&offered, &req(1280, 720, 10)), Some(f(Yuyv, 1280, 720, 10)));
    }

    #[test]
    fn nobody_reaches_the_rate_takes_the_fastest_raw_on_ties() {
        let offered = [f(Yuyv, 640, 480, 15), f(Mjpeg, 640, 480, 15), f(Nv12, 640, 480, 10)];
        assert_eq!(choose_format(&offered, &req(640, 480, 30)), Some(f(Yuyv, 640, 480, 15)));
        let offered = [f(Yuyv, 640, 480, 10), f(Mjpeg, 640, 480, 20)];
        assert_eq!(choose_format(&offered, &req(640, 480, 30)), Some(f(Mjpeg, 640, 480, 20)));
    }

    #[test]
    fn nearest_rate_at_or_above_is_preferred() {
        let offered = [f(I420, 640, 480, 15), f(I420, 640, 480, 60), f(I420, 640, 480, 25), f(I420, 640, 480, 50)];
        assert_eq!(choose_format(&offered, &req(640, 480, 30)), Some(f(I420, 640, 480, 50)));
        assert_eq!(choose_format(&offered, &req(640, 480, 20)), Some(f(I420, 640, 480, 25)));
        assert_eq!(choose_format(&offered, &req(640, 480, 100)), Some(f(I420, 640, 480, 60)));
        assert_eq!(choose_format(&offered, &req(640, 480, 1)), Some(f(I420, 640, 480, 15)));
    }

    #[test]
    fn only_larger_sizes_takes_the_smallest_covering() {
        let offered = [f(Yuyv, 1920, 1080, 30), f(Yuyv, 1280, 720, 30), f(Yuyv, 2592, 1944, 15)];
        assert_eq!(choose_format(&offered, &req(640, 480, 30)), Some(f(Yuyv, 1280, 720, 30)));
        // 1920x1080 is more than 4x 640x480 but still the nearest by area ratio.
        assert_eq!(choose_format(&offered[..1], &req(640, 480, 30)), Some(f(Yuyv, 1920, 1080, 30)));
    }

    #[test]
    fn covering_within_four_times_beats_a_nearer_smaller_size() {
        let offered = [f(I420, 640, 360, 30), f(I420, 1280, 720, 30)];
        assert_eq!(choose_format(&offered, &req(640, 480, 30)), Some(f(I420, 1280, 720, 30)));
    }

    #[test]
    fn too_large_covering_loses_to_a_nearer_smaller_size() {
        let offered = [f(I420, 320, 240, 30), f(I420, 1920, 1080, 30)];
        assert_eq!(choose_format(&offered, &req(640, 480, 30)), Some(f(I420, 320, 240, 30)));
    }

    #[test]
    fn only_smaller_sizes_takes_the_largest() {
        let offered = [f(Nv12, 160, 120, 30), f(Nv12, 320, 240, 30), f(Nv12, 176, 144, 30)];
        assert_eq!(choose_format(&offered, &req(1280, 720, 30)), Some(f(Nv12, 320, 240, 30)));
    }

    #[test]
    fn size_comes_before_rate() {
        let offered = [f(I420, 640, 480, 5), f(I420, 800, 600, 30)];
        assert_eq!(choose_format(&offered, &req(640, 480, 30)), Some(f(I420, 640, 480, 5)));
    }

    #[test]
    fn nearest_by_area_ratio_when_nothing_covers() {
        // Neither covers 640x480: 1280x240 has the requested area (ratio 1), 320x240 a quarter of it.
        let offered = [f(I420, 320, 240, 30), f(I420, 1280, 240, 30)];
        assert_eq!(choose_format(&offered, &req(640, 480, 30)), Some(f(I420, 1280, 240, 30)));
    }

    #[test]
    fn ratio_ties_go_to_the_smaller_size() {
        // 2560x240 is twice the requested area and 320x480 half of it; neither covers 640x480.
        let offered = [f(I420, 2560, 240, 30), f(I420, 320, 480, 30)];
        assert_eq!(choose_format(&offered, &req(640, 480, 30)), Some(f(I420, 320, 480, 30)));
        let reversed = [offered[1], offered[0]];
        assert_eq!(choose_format(&reversed, &req(640, 480, 30)), Some(f(I420, 320, 480, 30)));
    }

    #[test]
    fn covering_at_exactly_four_times_is_allowed() {
        let offered = [f(I420, 1280, 960, 30), f(I420, 480, 360, 30)];
        assert_eq!(choose_format(&offered, &req(640, 480, 30)), Some(f(I420, 1280, 960, 30)));
    }

    #[test]
    fn monotonic_clock_advances() {
        let a = monotonic_now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(monotonic_now() > a);
        assert!(a > Duration::ZERO);
    }
}

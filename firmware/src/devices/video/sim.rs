//! The simulated camera backend: test-pattern cameras (`crate::frame::draw_test_frame`, I420, the frame
//! counter readable back with `crate::frame::read_frame_counter`) paced at the negotiated rate against a
//! monotonic deadline. Cameras can be added and removed at run time (hot-plug tests; an open handle of a
//! removed camera returns [`DeviceError::Gone`]) and told to stall (stall-recovery tests). A backend shows either
//! that moving pattern or a still picture ([`SimPicture`], `devices.sim_camera_picture`, `--sim-picture`). Each
//! camera remembers when its last frames were captured and handed out (a bounded ring,
//! [`SimVideoBackend::captured_frames`]), for the glass-to-glass latency benchmark, which finds the same
//! counters at the far end.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{choose_format, monotonic_now, VideoBackend, VideoCapture, VideoDeviceInfo, VideoRequest};
use crate::devices::{CameraPixelFormat, CaptureFormat, CapturedFrame, DeviceError};

/// Id of the camera a [`SimVideoBackend::new`] backend starts with.
pub const DEFAULT_CAMERA_ID: &str = "sim:pattern";
/// Name of that camera.
pub const DEFAULT_CAMERA_NAME: &str = "Test pattern camera";
/// Most cameras one simulated backend holds.
pub const MAX_CAMERAS: usize = 16;
/// A consumer later than this many frame periods loses the frames in between (like a driver with this
/// many buffers): the counter and sequence jump.
const QUEUE_FRAMES: u64 = 4;
/// Frames a camera remembers in [`SimVideoBackend::captured_frames`] (8.5 s at 30 fps).
pub const CAPTURE_RECORDS: usize = 256;

/// When a simulated camera's frame was captured and handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimFrameRecord {
    /// The counter drawn into the picture (`crate::frame::read_frame_counter` reads it back).
    pub counter: u32,
    /// Its capture instant: the frame's deadline at the camera's rate (its `timestamp`, on this clock).
    pub captured: Instant,
    /// When `next_frame` returned it (later than `captured` when the consumer was late).
    pub delivered: Instant,
}

/// The sizes every simulated camera offers (I420, at each of [`SIM_RATES`]).
pub const SIM_SIZES: [(u32, u32); 3] = [(320, 240), (640, 480), (1280, 720)];
/// The frame rates every simulated camera offers.
pub const SIM_RATES: [u32; 2] = [15, 30];

/// The formats a simulated camera offers.
pub fn sim_formats() -> Vec<CaptureFormat> {
    SIM_SIZES
        .iter()
        .flat_map(|&(width, height)| {
            SIM_RATES.iter().map(move |&fps| CaptureFormat {
                pixel_format: CameraPixelFormat::I420,
                width,
                height,
                fps,
            })
        })
        .collect()
}

/// What the simulated cameras show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SimPicture {
    /// The moving test pattern with its frame counter (`crate::frame::draw_test_frame`), drawn every frame.
    #[default]
    Pattern,
    /// A still picture, drawn once: three vertical bars, pure red, green and blue, each a third of the width —
    /// the picture of baresip's `fakevideo` source, converted to I420 with the same BT.601 formulas, so that a
    /// side-by-side benchmark feeds both programs the same frames.
    Bars,
}

impl std::str::FromStr for SimPicture {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pattern" => Ok(SimPicture::Pattern),
            "bars" => Ok(SimPicture::Bars),
            other => Err(format!("'{other}' is no simulated picture (pattern, bars)")),
        }
    }
}

/// The still [`SimPicture::Bars`] frame, I420: baresip's `fakevideo` picture (its `vidframe_draw_vline` per column,
/// with libre's `rgb2y`/`rgb2u`/`rgb2v`; a chroma sample takes the colour of its right-hand column, the one drawn last).
pub fn draw_bars_frame(width: u32, height: u32) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let colour = |x: usize| -> (i32, i32, i32) {
        if x < w / 3 {
            (255, 0, 0)
        } else if x < w * 2 / 3 {
            (0, 255, 0)
        } else {
            (0, 0, 255)
        }
    };
    let y_of = |(r, g, b): (i32, i32, i32)| (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8;
    let u_of = |(r, g, b): (i32, i32, i32)| (((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128) as u8;
    let v_of = |(r, g, b): (i32, i32, i32)| (((112 * r - 94 * g - 18 * b + 128) >> 8) + 128) as u8;
    let mut buf = Vec::with_capacity(w * h + 2 * cw * ch);
    let luma_row: Vec<u8> = (0..w).map(|x| y_of(colour(x))).collect();
    for _ in 0..h {
        buf.extend_from_slice(&luma_row);
    }
    for plane in [u_of, v_of] {
        let row: Vec<u8> = (0..cw).map(|cx| plane(colour((cx * 2 + 1).min(w.saturating_sub(1))))).collect();
        for _ in 0..ch {
            buf.extend_from_slice(&row);
        }
    }
    buf
}

/// What a camera's open handles watch.
#[derive(Debug, Default)]
struct Flags {
    removed: bool,
    stalled: bool,
}

/// One simulated camera; shared by the backend and the handles opened on it.
#[derive(Debug)]
struct SimCamera {
    name: String,
    node: Option<std::path::PathBuf>,
    flags: Mutex<Flags>,
    changed: Condvar,
    /// The last frames handed out, across the camera's handles.
    captures: Mutex<heapless::HistoryBuf<SimFrameRecord, CAPTURE_RECORDS>>,
}

impl SimCamera {
    fn new(name: &str, node: Option<std::path::PathBuf>) -> Self {
        SimCamera {
            name: name.to_string(),
            node,
            flags: Mutex::new(Flags::default()),
            changed: Condvar::new(),
            captures: Mutex::new(heapless::HistoryBuf::new()),
        }
    }

    fn flags(&self) -> MutexGuard<'_, Flags> {
        // A poisoned lock only means another thread panicked mid-update of two booleans: keep going.
        self.flags.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Flags)) {
        f(&mut self.flags());
        self.changed.notify_all();
    }
}

/// Simulated cameras. Cheap to clone; clones share the same cameras.
#[derive(Debug, Clone)]
pub struct SimVideoBackend {
    cameras: Arc<Mutex<BTreeMap<String, Arc<SimCamera>>>>,
    picture: SimPicture,
}

impl Default for SimVideoBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl SimVideoBackend {
    /// A backend with one camera, [`DEFAULT_CAMERA_ID`].
    pub fn new() -> Self {
        let backend = Self::empty();
        backend.add_camera(DEFAULT_CAMERA_ID, DEFAULT_CAMERA_NAME);
        backend
    }

    /// A backend without cameras.
    pub fn empty() -> Self {
        Self { cameras: Arc::new(Mutex::new(BTreeMap::new())), picture: SimPicture::Pattern }
    }

    /// The same backend, its cameras showing `picture` (handles opened from now on).
    pub fn with_picture(mut self, picture: SimPicture) -> Self {
        self.picture = picture;
        self
    }

    fn cameras(&self) -> MutexGuard<'_, BTreeMap<String, Arc<SimCamera>>> {
        self.cameras.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Plugs in a camera. `false` (and nothing changes) when `id` is already present or the backend
    /// holds [`MAX_CAMERAS`].
    pub fn add_camera(&self, id: &str, name: &str) -> bool {
        let mut cameras = self.cameras();
        if cameras.contains_key(id) || cameras.len() >= MAX_CAMERAS {
            return false;
        }
        cameras.insert(id.to_string(), Arc::new(SimCamera::new(name, None)));
        log::debug!("sim camera {id} ({name}) plugged in");
        true
    }

    /// Plugs in a camera standing for the device node `node` (a file the caller made): the device
    /// manager decides its permission by opening that file, as it does for a real `/dev/video*`.
    pub fn add_camera_with_node(&self, id: &str, name: &str, node: &std::path::Path) -> bool {
        let mut cameras = self.cameras();
        if cameras.contains_key(id) || cameras.len() >= MAX_CAMERAS {
            return false;
        }
        cameras.insert(id.to_string(), Arc::new(SimCamera::new(name, Some(node.to_owned()))));
        log::debug!("sim camera {id} ({name}, node {}) plugged in", node.display());
        true
    }

    /// Unplugs a camera: it leaves the list and its open handles return [`DeviceError::Gone`] (at once,
    /// even while waiting for a frame). `false` when there was no such camera. Adding it again makes a
    /// new camera; old handles stay gone.
    pub fn remove_camera(&self, id: &str) -> bool {
        let Some(camera) = self.cameras().remove(id) else {
            return false;
        };
        camera.update(|f| f.removed = true);
        log::info!("sim camera {id} unplugged");
        true
    }

    /// The last [`CAPTURE_RECORDS`] frames camera `id` handed out, oldest first (`None`: no such camera).
    pub fn captured_frames(&self, id: &str) -> Option<Vec<SimFrameRecord>> {
        let camera = self.cameras().get(id).cloned()?;
        let records = camera.captures.lock().unwrap_or_else(|e| e.into_inner());
        Some(records.oldest_ordered().copied().collect())
    }

    /// Makes a camera stop delivering frames (`true`) or resume (`false`). While stalled, its handles'
    /// `next_frame` waits out its timeout and returns [`DeviceError::Stalled`]; on resuming, the frames
    /// of the stall are lost (the counter jumps). `false` when there is no such camera.
    pub fn set_stalled(&self, id: &str, stalled: bool) -> bool {
        let Some(camera) = self.cameras().get(id).cloned() else {
            return false;
        };
        camera.update(|f| f.stalled = stalled);
        log::info!("sim camera {id} {}", if stalled { "stalled" } else { "resumed" });
        true
    }
}

impl VideoBackend for SimVideoBackend {
    fn list(&self) -> Vec<VideoDeviceInfo> {
        self.cameras()
            .iter()
            .map(|(id, camera)| VideoDeviceInfo {
                id: id.clone(),
                name: camera.name.clone(),
                node: camera.node.clone(),
                formats: sim_formats(),
            })
            .collect()
    }

    fn open(&self, id: &str, request: &VideoRequest) -> Result<Box<dyn VideoCapture>, DeviceError> {
        let camera = self
            .cameras()
            .get(id)
            .cloned()
            .ok_or_else(|| DeviceError::NotFound { kind: "camera", name: id.to_string() })?;
        let offered = sim_formats();
        let format = choose_format(&offered, request).ok_or_else(|| DeviceError::Format {
            device: id.to_string(),
            reason: format!(
                "asked {}x{}@{} in {:?}; offers {}",
                request.width,
                request.height,
                request.fps,
                request.formats,
                offered.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
        })?;
        log::info!("sim camera {id} opened at {format}");
        Ok(Box::new(SimCapture::new(id.to_string(), camera, format, self.picture)))
    }
}

/// An open simulated camera.
#[derive(Debug)]
pub struct SimCapture {
    id: String,
    camera: Arc<SimCamera>,
    format: CaptureFormat,
    /// Instant of frame 0 (its deadline), and the same instant on CLOCK_MONOTONIC.
    start: Instant,
    start_mono: Duration,
    /// The counter of the next frame to deliver.
    next: u64,
    /// The still picture, drawn once at open and shared by every frame ([`SimPicture::Bars`]); `None`: the
    /// moving pattern.
    still: Option<bytes::Bytes>,
}

impl SimCapture {
    fn new(id: String, camera: Arc<SimCamera>, format: CaptureFormat, picture: SimPicture) -> Self {
        let still = match picture {
            SimPicture::Pattern => None,
            SimPicture::Bars => Some(bytes::Bytes::from(draw_bars_frame(format.width, format.height))),
        };
        Self { id, camera, format, start: Instant::now(), start_mono: monotonic_now(), next: 0, still }
    }

    /// Offset of frame `n` from frame 0; computed from `n` each time, so rounding never accumulates.
    fn offset(&self, n: u64) -> Duration {
        let fps = u64::from(self.format.fps.max(1));
        let nanos = u128::from(n) * 1_000_000_000 / u128::from(fps);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The frame slot that is current at `elapsed` since frame 0.
    fn slot_at(&self, elapsed: Duration) -> u64 {
        let slot = elapsed.as_nanos() * u128::from(self.format.fps.max(1)) / 1_000_000_000;
        u64::try_from(slot).unwrap_or(u64::MAX)
    }

    fn frame(&mut self, n: u64) -> CapturedFrame {
        // The counter drawn into the picture is 32 bits; it wraps after 4.5 years at 30 fps.
        let counter = n as u32;
        let data = match &self.still {
            Some(still) => still.clone(),
            None => crate::frame::draw_test_frame(self.format.width, self.format.height, counter).data,
        };
        self.next = n.saturating_add(1);
        let record = SimFrameRecord { counter, captured: self.start + self.offset(n), delivered: Instant::now() };
        self.camera.captures.lock().unwrap_or_else(|e| e.into_inner()).write(record);
        CapturedFrame { format: self.format, data, timestamp: self.start_mono + self.offset(n), sequence: counter }
    }
}

impl VideoCapture for SimCapture {
    fn format(&self) -> CaptureFormat {
        self.format
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn next_frame(&mut self, timeout: Duration) -> Result<CapturedFrame, DeviceError> {
        let called = Instant::now();
        let give_up = called.checked_add(timeout).unwrap_or(called + Duration::from_secs(86_400));
        let camera = Arc::clone(&self.camera);
        let mut flags = camera.flags();
        loop {
            if flags.removed {
                return Err(DeviceError::Gone { device: self.id.clone(), reason: "camera unplugged".into() });
            }
            let now = Instant::now();
            if !flags.stalled {
                let elapsed = now.saturating_duration_since(self.start);
                let current = self.slot_at(elapsed);
                // Too late: the frames a 4-buffer driver would have overwritten are lost.
                if current > self.next.saturating_add(QUEUE_FRAMES) {
                    self.next = current;
                }
                let due = self.start + self.offset(self.next);
                if due <= now {
                    drop(flags);
                    return Ok(self.frame(self.next));
                }
                if due <= give_up {
                    flags = camera.changed.wait_timeout(flags, due - now).unwrap_or_else(|e| e.into_inner()).0;
                    continue;
                }
            }
            if now >= give_up {
                return Err(DeviceError::Stalled { device: self.id.clone(), waited: timeout });
            }
            flags = camera.changed.wait_timeout(flags, give_up - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{read_frame_counter, VideoFrame};

    fn counter_of(frame: &CapturedFrame) -> Option<u32> {
        let picture = VideoFrame { width: frame.format.width, height: frame.format.height, data: frame.data.clone() };
        read_frame_counter(&picture)
    }

    fn request(width: u32, height: u32, fps: u32) -> VideoRequest {
        VideoRequest { width, height, fps, ..VideoRequest::default() }
    }

    #[test]
    fn lists_the_default_camera_with_its_formats() {
        let backend = SimVideoBackend::new();
        let list = backend.list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].id, DEFAULT_CAMERA_ID);
        assert_eq!(list[0].node, None);
        assert_eq!(list[0].formats.len(), SIM_SIZES.len() * SIM_RATES.len());
        assert!(list[0].formats.iter().all(|f| f.pixel_format == CameraPixelFormat::I420));
        assert!(SimVideoBackend::empty().list().is_empty());
    }

    #[test]
    fn delivers_i420_frames_at_the_negotiated_size_with_readable_counters() {
        let backend = SimVideoBackend::new();
        let mut cam = backend.open(DEFAULT_CAMERA_ID, &request(640, 480, 30)).unwrap();
        let format = cam.format();
        assert_eq!(format, CaptureFormat { pixel_format: CameraPixelFormat::I420, width: 640, height: 480, fps: 30 });
        assert_eq!(cam.id(), DEFAULT_CAMERA_ID);
        let mut last: Option<CapturedFrame> = None;
        for _ in 0..5 {
            let frame = cam.next_frame(Duration::from_secs(5)).unwrap();
            assert_eq!(frame.format, format);
            assert_eq!(frame.data.len(), CameraPixelFormat::I420.frame_len(640, 480).unwrap());
            assert_eq!(counter_of(&frame), Some(frame.sequence));
            if let Some(prev) = &last {
                assert!(frame.sequence > prev.sequence);
                assert!(frame.timestamp > prev.timestamp);
            }
            last = Some(frame);
        }
    }

    #[test]
    fn handed_out_frames_are_remembered_with_their_capture_instants() {
        let backend = SimVideoBackend::new();
        let mut cam = backend.open(DEFAULT_CAMERA_ID, &request(320, 240, 30)).unwrap();
        let frames: Vec<CapturedFrame> = (0..5).map(|_| cam.next_frame(Duration::from_secs(5)).unwrap()).collect();
        let records = backend.captured_frames(DEFAULT_CAMERA_ID).unwrap();
        assert_eq!(
            records.iter().map(|r| r.counter).collect::<Vec<_>>(),
            frames.iter().map(|f| f.sequence).collect::<Vec<_>>()
        );
        for (r, w) in records.iter().zip(records.windows(2)) {
            assert!(r.delivered >= r.captured);
            let step = w[1].captured - w[0].captured;
            assert!(step.abs_diff(Duration::from_nanos(33_333_333)) <= Duration::from_micros(1), "{step:?}");
        }
        assert_eq!(backend.captured_frames("sim:none"), None);
    }

    #[test]
    fn nearest_offered_size_is_used() {
        let backend = SimVideoBackend::new();
        let mut cam = backend.open(DEFAULT_CAMERA_ID, &request(1920, 1080, 25)).unwrap();
        assert_eq!((cam.format().width, cam.format().height, cam.format().fps), (1280, 720, 30));
        let frame = cam.next_frame(Duration::from_secs(5)).unwrap();
        assert_eq!(counter_of(&frame), Some(frame.sequence));
    }

    #[test]
    fn pacing_is_not_faster_than_the_rate() {
        let backend = SimVideoBackend::new();
        let mut cam = backend.open(DEFAULT_CAMERA_ID, &request(320, 240, 30)).unwrap();
        let first = cam.next_frame(Duration::from_secs(5)).unwrap();
        let started = Instant::now();
        let mut frame = first.clone();
        for _ in 0..15 {
            frame = cam.next_frame(Duration::from_secs(5)).unwrap();
        }
        // 15 more frames at 30 fps take at least 0.5 s (minus a little for rounding); no upper bound.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(450), "15 frames in {took:?}");
        // Timestamps are the ideal deadlines: exactly 500 ms apart for 15 frames (no drift), whatever
        // the scheduling; sequence gaps would show dropped frames on a busy machine.
        let frames = u64::from(frame.sequence - first.sequence);
        assert!(frames >= 15);
        let expected = Duration::from_nanos(frames * 1_000_000_000 / 30);
        let got = frame.timestamp - first.timestamp;
        assert!(got.abs_diff(expected) <= Duration::from_micros(1), "{got:?} vs {expected:?}");
    }

    #[test]
    fn timestamps_are_on_the_monotonic_clock() {
        let backend = SimVideoBackend::new();
        let before = monotonic_now();
        let mut cam = backend.open(DEFAULT_CAMERA_ID, &request(320, 240, 15)).unwrap();
        let frame = cam.next_frame(Duration::from_secs(5)).unwrap();
        let after = monotonic_now();
        assert!(frame.timestamp >= before && frame.timestamp <= after, "{before:?} {:?} {after:?}", frame.timestamp);
    }

    #[test]
    fn removal_makes_open_handles_gone_and_leaves_the_list() {
        let backend = SimVideoBackend::empty();
        assert!(backend.add_camera("sim:door", "Door camera"));
        assert!(!backend.add_camera("sim:door", "Again"));
        assert_eq!(backend.list().len(), 1);
        let mut cam = backend.open("sim:door", &VideoRequest::default()).unwrap();
        cam.next_frame(Duration::from_secs(5)).unwrap();
        assert!(backend.remove_camera("sim:door"));
        assert!(!backend.remove_camera("sim:door"));
        assert!(backend.list().is_empty());
        match cam.next_frame(Duration::from_secs(5)) {
            Err(DeviceError::Gone { device, .. }) => assert_eq!(device, "sim:door"),
            other => panic!("expected Gone, got {other:?}"),
        }
        match backend.open("sim:door", &VideoRequest::default()) {
            Err(DeviceError::NotFound { kind: "camera", name }) => assert_eq!(name, "sim:door"),
            Err(other) => panic!("expected NotFound, got {other:?}"),
            Ok(_) => panic!("opened a removed camera"),
        }
        // Plugged in again: a new camera; the old handle stays gone.
        assert!(backend.add_camera("sim:door", "Door camera"));
        assert!(matches!(cam.next_frame(Duration::from_millis(10)), Err(DeviceError::Gone { .. })));
        let mut again = backend.open("sim:door", &VideoRequest::default()).unwrap();
        assert!(again.next_frame(Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn removal_wakes_a_waiting_handle() {
        let backend = SimVideoBackend::new();
        backend.set_stalled(DEFAULT_CAMERA_ID, true);
        let mut cam = backend.open(DEFAULT_CAMERA_ID, &VideoRequest::default()).unwrap();
        let remover = {
            let backend = backend.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                backend.remove_camera(DEFAULT_CAMERA_ID)
            })
        };
        // Would wait 60 s if the removal did not wake it.
        let started = Instant::now();
        assert!(matches!(cam.next_frame(Duration::from_secs(60)), Err(DeviceError::Gone { .. })));
        assert!(started.elapsed() < Duration::from_secs(50));
        assert!(remover.join().unwrap());
    }

    #[test]
    fn stall_then_resume() {
        let backend = SimVideoBackend::new();
        let mut cam = backend.open(DEFAULT_CAMERA_ID, &request(320, 240, 30)).unwrap();
        let before = cam.next_frame(Duration::from_secs(5)).unwrap();
        assert!(backend.set_stalled(DEFAULT_CAMERA_ID, true));
        match cam.next_frame(Duration::from_millis(300)) {
            Err(DeviceError::Stalled { device, waited }) => {
                assert_eq!(device, DEFAULT_CAMERA_ID);
                assert_eq!(waited, Duration::from_millis(300));
            }
            other => panic!("expected Stalled, got {other:?}"),
        }
        assert!(backend.set_stalled(DEFAULT_CAMERA_ID, false));
        let after = cam.next_frame(Duration::from_secs(5)).unwrap();
        // The 300 ms stall lost frames: the sequence jumped by more than one.
        assert!(after.sequence > before.sequence + 1, "{} -> {}", before.sequence, after.sequence);
        assert_eq!(counter_of(&after), Some(after.sequence));
        assert!(!backend.set_stalled("sim:nothing", true));
    }

    #[test]
    fn unacceptable_request_is_a_format_error_naming_the_camera() {
        let backend = SimVideoBackend::new();
        let request = VideoRequest { formats: vec![CameraPixelFormat::Mjpeg], ..VideoRequest::default() };
        match backend.open(DEFAULT_CAMERA_ID, &request) {
            Err(DeviceError::Format { device, reason }) => {
                assert_eq!(device, DEFAULT_CAMERA_ID);
                assert!(reason.contains("I420 640x480@30"), "{reason}");
                assert!(reason.contains("Mjpeg"), "{reason}");
            }
            Err(other) => panic!("expected Format, got {other:?}"),
            Ok(_) => panic!("opened with no acceptable format"),
        }
    }

    #[test]
    fn the_bars_picture_is_still_and_is_baresips_fakevideo() {
        let backend = SimVideoBackend::new().with_picture(SimPicture::Bars);
        let mut cam = backend.open(DEFAULT_CAMERA_ID, &request(640, 480, 30)).unwrap();
        let first = cam.next_frame(Duration::from_secs(2)).unwrap();
        let second = cam.next_frame(Duration::from_secs(2)).unwrap();
        assert_eq!(first.data.len(), VideoFrame::i420_len(640, 480));
        assert_eq!(first.data, second.data, "a still picture");
        assert_eq!((first.sequence, second.sequence), (0, 1), "frames are still counted");
        let (w, h) = (640usize, 480usize);
        let (y, u, v) = (&first.data[..w * h], &first.data[w * h..w * h + w * h / 4], &first.data[w * h + w * h / 4..]);
        // libre's rgb2yuv of pure red, green, blue at the middle of each bar, in every row.
        for (x, want) in [(100, (82, 90, 240)), (320, (144, 54, 34)), (540, (41, 240, 110))] {
            for row in [0, 239, 479] {
                assert_eq!(y[row * w + x], want.0, "luma at {x},{row}");
            }
            assert_eq!((u[100 * (w / 2) + x / 2], v[100 * (w / 2) + x / 2]), (want.1, want.2), "chroma at {x}");
        }
        // The pattern is the default and moves.
        let mut moving = SimVideoBackend::new().open(DEFAULT_CAMERA_ID, &request(640, 480, 30)).unwrap();
        let (a, b) =
            (moving.next_frame(Duration::from_secs(2)).unwrap(), moving.next_frame(Duration::from_secs(2)).unwrap());
        assert_ne!(a.data, b.data);
        assert_eq!("bars".parse::<SimPicture>(), Ok(SimPicture::Bars));
        assert_eq!("pattern".parse::<SimPicture>(), Ok(SimPicture::Pattern));
        assert!("plaid".parse::<SimPicture>().is_err());
    }

    #[test]
    fn camera_count_is_bounded() {
        let backend = SimVideoBackend::empty();
        for i in 0..MAX_CAMERAS {
            assert!(backend.add_camera(&format!("sim:{i}"), "cam"));
        }
        assert!(!backend.add_camera("sim:one-too-many", "cam"));
        assert_eq!(backend.list().len(), MAX_CAMERAS);
    }
}

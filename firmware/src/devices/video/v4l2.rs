//! The Linux camera backend: V4L2 single-planar capture devices (`/dev/video*`) through the `v4l` crate's
//! ioctl layer (`v4l::v4l2::ioctl`/`mmap`, its `vidioc` request codes and `v4l_sys` structures).
//!
//! It owns listing (capabilities, formats, frame sizes and intervals), format negotiation with
//! [`choose_format`] and verification of what the driver set, the frame rate (`VIDIOC_S_PARM`), and an
//! mmap stream of [`BUFFER_COUNT`] buffers read with `poll(2)` under a timeout, rows repacked when the
//! driver pads them, timestamps and sequence numbers from the driver.
//!
//! The crate's higher layers (`Device`, `io::mmap::Stream`, `Capabilities`, `Format`) are not used: they
//! panic on driver input (non-UTF-8 card names, unknown colorspaces), on close/munmap errors in `Drop`,
//! and their `Stream::next` re-queues a buffer twice after a timed-out wait.
//!
//! Recovery is the caller's job: on [`DeviceError::Stalled`] keep calling `next_frame` for a while, then
//! drop the handle and reopen; on [`DeviceError::Gone`] drop it and reopen through [`VideoBackend::open`]
//! with a backoff (e.g. 0.5 s doubling to 10 s) until the node is back, watching [`VideoBackend::list`]
//! for the camera to reappear. Multi-planar-only devices (`VIDEO_CAPTURE_MPLANE`) are not supported.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use v4l::v4l2 as sys;
use v4l::v4l2::vidioc;
use v4l::v4l_sys as raw;

use super::{choose_format, monotonic_now, VideoBackend, VideoCapture, VideoDeviceInfo, VideoRequest};
use crate::devices::{CameraPixelFormat, CaptureFormat, CapturedFrame, DeviceError};

/// Buffers in the mmap stream (what the driver is asked for; it may round up).
pub const BUFFER_COUNT: u32 = 4;
/// Most buffers accepted from a driver that rounds the count up.
const MAX_BUFFERS: u32 = 16;
/// Most `video*` nodes examined by one listing.
const MAX_NODES: usize = 64;
/// Most entries read from each enumeration ioctl (formats, sizes, intervals).
const MAX_ENUM: u32 = 64;
/// Most formats listed per device.
const MAX_OFFERED: usize = 512;
/// Offered formats named in an error message before "and N more".
const MAX_NAMED: usize = 24;
/// Retries of an ioctl or poll interrupted by a signal.
const EINTR_RETRIES: u32 = 8;

/// Sizes offered for a device that gives a stepwise or continuous size range (those inside the range that
/// the steps reach), or its largest size when none of these fits.
pub const STANDARD_SIZES: [(u32, u32); 10] = [
    (160, 120),
    (320, 240),
    (352, 288),
    (640, 360),
    (640, 480),
    (800, 600),
    (1024, 768),
    (1280, 720),
    (1280, 960),
    (1920, 1080),
];
/// Rates offered for a device that gives a stepwise or continuous frame-interval range.
pub const STANDARD_RATES: [u32; 8] = [5, 10, 15, 20, 24, 25, 30, 60];

/// Cameras on V4L2 device nodes named `video<N>` in a directory (`/dev` unless told otherwise).
#[derive(Debug, Clone)]
pub struct V4l2Backend {
    dev_dir: PathBuf,
}

impl Default for V4l2Backend {
    fn default() -> Self {
        Self::new()
    }
}

impl V4l2Backend {
    /// The backend over `/dev`.
    pub fn new() -> Self {
        Self::with_dev_dir("/dev")
    }

    /// The backend over another directory (tests).
    pub fn with_dev_dir(path: impl Into<PathBuf>) -> Self {
        Self { dev_dir: path.into() }
    }

    /// The directory scanned for `video*` nodes.
    pub fn dev_dir(&self) -> &Path {
        &self.dev_dir
    }

    /// The `video<N>` entries of the directory, by number (at most [`MAX_NODES`]).
    fn nodes(&self) -> Vec<PathBuf> {
        let entries = match std::fs::read_dir(&self.dev_dir) {
            Ok(entries) => entries,
            Err(e) => {
                log::debug!("v4l2: cannot read {}: {e}", self.dev_dir.display());
                return Vec::new();
            }
        };
        let mut numbered: Vec<(u32, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name();
                let number = name.to_str()?.strip_prefix("video")?.parse::<u32>().ok()?;
                Some((number, entry.path()))
            })
            .take(MAX_NODES * 4)
            .collect();
        numbered.sort();
        numbered.truncate(MAX_NODES);
        numbered.into_iter().map(|(_, path)| path).collect()
    }
}

impl VideoBackend for V4l2Backend {
    fn list(&self) -> Vec<VideoDeviceInfo> {
        self.nodes()
            .into_iter()
            .filter_map(|path| match probe_node(&path) {
                Ok(info) => Some(info),
                Err(e) => {
                    log::debug!("v4l2: {} left out: {e}", path.display());
                    None
                }
            })
            .collect()
    }

    fn open(&self, id: &str, request: &VideoRequest) -> Result<Box<dyn VideoCapture>, DeviceError> {
        Ok(Box::new(V4l2Capture::open(Path::new(id), request)?))
    }
}

/// Describes one device node: opens it, checks it is a streaming video-capture device and lists the
/// formats it offers that [`CameraPixelFormat`] knows. [`DeviceError::Open`] when it cannot be opened or is not
/// such a device (a regular file, a metadata or output node).
pub fn probe_node(path: &Path) -> Result<VideoDeviceInfo, DeviceError> {
    let node = Node::open(path)?;
    let formats = node.offered_formats();
    Ok(VideoDeviceInfo { id: node.device.clone(), name: node.card.clone(), node: Some(path.to_path_buf()), formats })
}

/// An open, checked capture node.
struct Node {
    file: File,
    /// The path, as used in messages and as the id.
    device: String,
    /// The driver's card name.
    card: String,
}

impl Node {
    fn open(path: &Path) -> Result<Self, DeviceError> {
        let device = path.display().to_string();
        let open_err = |reason: String| DeviceError::Open { device: device.clone(), reason };
        let meta = std::fs::metadata(path).map_err(|e| open_err(e.to_string()))?;
        if !meta.file_type().is_char_device() {
            return Err(open_err("not a V4L2 device (not a character device)".into()));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| open_err(e.to_string()))?;
        // SAFETY: v4l2_capability is plain old data; all-zero is a valid value.
        let mut caps: raw::v4l2_capability = unsafe { std::mem::zeroed() };
        ioctl(file.as_raw_fd(), vidioc::VIDIOC_QUERYCAP, &mut caps)
            .map_err(|e| open_err(format!("not a V4L2 device (VIDIOC_QUERYCAP: {e})")))?;
        let flags =
            if caps.capabilities & raw::V4L2_CAP_DEVICE_CAPS != 0 { caps.device_caps } else { caps.capabilities };
        if flags & raw::V4L2_CAP_VIDEO_CAPTURE == 0 {
            return Err(open_err(format!("not a video capture device (capabilities {flags:#010x})")));
        }
        if flags & raw::V4L2_CAP_STREAMING == 0 {
            return Err(open_err("capture device without streaming I/O".into()));
        }
        let card = c_string(&caps.card);
        let card = if card.is_empty() { c_string(&caps.driver) } else { card };
        Ok(Self { file, device, card })
    }

    fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Every (format, size, rate) the node offers in a format we take, without duplicates.
    fn offered_formats(&self) -> Vec<CaptureFormat> {
        let mut offered: Vec<CaptureFormat> = Vec::new();
        for (index, pixel_format) in self.pixel_formats() {
            let sizes = self.frame_sizes(pixel_format);
            if sizes.is_empty() {
                log::debug!("v4l2: {}: format #{index} {pixel_format:?} lists no frame sizes", self.device);
            }
            for (width, height) in sizes {
                for fps in self.frame_rates(pixel_format, width, height) {
                    let format = CaptureFormat { pixel_format, width, height, fps };
                    if !offered.contains(&format) && offered.len() < MAX_OFFERED {
                        offered.push(format);
                    }
                }
            }
        }
        offered
    }

    /// `VIDIOC_ENUM_FMT`: the pixel formats we know, with their index.
    fn pixel_formats(&self) -> Vec<(u32, CameraPixelFormat)> {
        let mut formats = Vec::new();
        for index in 0..MAX_ENUM {
            // SAFETY: v4l2_fmtdesc is plain old data; all-zero is a valid value.
            let mut desc: raw::v4l2_fmtdesc = unsafe { std::mem::zeroed() };
            desc.index = index;
            desc.type_ = raw::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
            if ioctl(self.fd(), vidioc::VIDIOC_ENUM_FMT, &mut desc).is_err() {
                break;
            }
            match CameraPixelFormat::from_fourcc(desc.pixelformat.to_le_bytes()) {
                Some(format) if !formats.iter().any(|(_, f)| *f == format) => formats.push((index, format)),
                Some(_) => {}
                None => log::trace!("v4l2: {}: skipping format {}", self.device, fourcc_text(desc.pixelformat)),
            }
        }
        formats
    }

    /// `VIDIOC_ENUM_FRAMESIZES`: discrete sizes as they are, ranges as [`STANDARD_SIZES`] inside them.
    fn frame_sizes(&self, pixel_format: CameraPixelFormat) -> Vec<(u32, u32)> {
        let mut sizes = Vec::new();
        for index in 0..MAX_ENUM {
            // SAFETY: v4l2_frmsizeenum is plain old data; all-zero is a valid value.
            let mut e: raw::v4l2_frmsizeenum = unsafe { std::mem::zeroed() };
            e.index = index;
            e.pixel_format = u32::from_le_bytes(pixel_format.fourcc());
            if ioctl(self.fd(), vidioc::VIDIOC_ENUM_FRAMESIZES, &mut e).is_err() {
                break;
            }
            match e.type_ {
                raw::v4l2_frmsizetypes_V4L2_FRMSIZE_TYPE_DISCRETE => {
                    // SAFETY: the driver filled the `discrete` member, as `type_` says.
                    let d = unsafe { e.__bindgen_anon_1.discrete };
                    sizes.push((d.width, d.height));
                }
                raw::v4l2_frmsizetypes_V4L2_FRMSIZE_TYPE_STEPWISE
                | raw::v4l2_frmsizetypes_V4L2_FRMSIZE_TYPE_CONTINUOUS => {
                    // SAFETY: the driver filled the `stepwise` member, as `type_` says.
                    let s = unsafe { e.__bindgen_anon_1.stepwise };
                    sizes.extend(sizes_in_range(
                        SizeRange { min: s.min_width, max: s.max_width, step: s.step_width },
                        SizeRange { min: s.min_height, max: s.max_height, step: s.step_height },
                    ));
                    break; // A range is the only entry.
                }
                other => log::debug!("v4l2: {}: unknown frame size type {other}", self.device),
            }
        }
        sizes.retain(|&(w, h)| w > 0 && h > 0);
        sizes.dedup();
        sizes
    }

    /// `VIDIOC_ENUM_FRAMEINTERVALS` as whole frame rates; the current rate (`VIDIOC_G_PARM`) when the
    /// driver does not enumerate intervals.
    fn frame_rates(&self, pixel_format: CameraPixelFormat, width: u32, height: u32) -> Vec<u32> {
        let mut rates = Vec::new();
        for index in 0..MAX_ENUM {
            // SAFETY: v4l2_frmivalenum is plain old data; all-zero is a valid value.
            let mut e: raw::v4l2_frmivalenum = unsafe { std::mem::zeroed() };
            e.index = index;
            e.pixel_format = u32::from_le_bytes(pixel_format.fourcc());
            e.width = width;
            e.height = height;
            if ioctl(self.fd(), vidioc::VIDIOC_ENUM_FRAMEINTERVALS, &mut e).is_err() {
                break;
            }
            match e.type_ {
                raw::v4l2_frmivaltypes_V4L2_FRMIVAL_TYPE_DISCRETE => {
                    // SAFETY: the driver filled the `discrete` member, as `type_` says.
                    let d = unsafe { e.__bindgen_anon_1.discrete };
                    rates.extend(fps_of(d.numerator, d.denominator));
                }
                raw::v4l2_frmivaltypes_V4L2_FRMIVAL_TYPE_STEPWISE
                | raw::v4l2_frmivaltypes_V4L2_FRMIVAL_TYPE_CONTINUOUS => {
                    // SAFETY: the driver filled the `stepwise` member, as `type_` says.
                    let s = unsafe { e.__bindgen_anon_1.stepwise };
                    rates.extend(rates_in_range(
                        (s.min.numerator, s.min.denominator),
                        (s.max.numerator, s.max.denominator),
                    ));
                    break;
                }
                other => log::debug!("v4l2: {}: unknown frame interval type {other}", self.device),
            }
        }
        if rates.is_empty() {
            rates.extend(self.current_rate());
        }
        rates.sort_unstable();
        rates.dedup();
        rates
    }

    /// The frame rate the driver runs at now (`VIDIOC_G_PARM`).
    fn current_rate(&self) -> Option<u32> {
        let parm = self.get_parm().ok()?;
        // SAFETY: for a VIDEO_CAPTURE stream the driver fills the `capture` member.
        let t = unsafe { parm.parm.capture.timeperframe };
        fps_of(t.numerator, t.denominator)
    }

    fn get_parm(&self) -> io::Result<raw::v4l2_streamparm> {
        // SAFETY: v4l2_streamparm is plain old data; all-zero is a valid value.
        let mut parm: raw::v4l2_streamparm = unsafe { std::mem::zeroed() };
        parm.type_ = raw::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
        ioctl(self.fd(), vidioc::VIDIOC_G_PARM, &mut parm)?;
        Ok(parm)
    }

    /// Sets the frame rate when the driver supports it; returns the rate it runs at afterwards.
    fn set_rate(&self, fps: u32) -> Option<u32> {
        let mut parm = self.get_parm().ok()?;
        // SAFETY: for a VIDEO_CAPTURE stream the driver fills the `capture` member.
        let capability = unsafe { parm.parm.capture.capability };
        if capability & raw::V4L2_CAP_TIMEPERFRAME != 0 {
            parm.parm.capture = raw::v4l2_captureparm {
                capability,
                timeperframe: raw::v4l2_fract { numerator: 1, denominator: fps },
                // SAFETY: v4l2_captureparm is plain old data; all-zero is a valid value.
                ..unsafe { std::mem::zeroed() }
            };
            if let Err(e) = ioctl(self.fd(), vidioc::VIDIOC_S_PARM, &mut parm) {
                log::debug!("v4l2: {}: VIDIOC_S_PARM {fps} fps: {e}", self.device);
            }
        } else {
            log::debug!("v4l2: {}: driver does not take a frame rate", self.device);
        }
        self.current_rate()
    }

    /// `VIDIOC_S_FMT`, returning what the driver actually set.
    fn set_format(&self, format: &CaptureFormat) -> io::Result<raw::v4l2_pix_format> {
        // SAFETY: v4l2_format is plain old data; all-zero is a valid value.
        let mut f: raw::v4l2_format = unsafe { std::mem::zeroed() };
        f.type_ = raw::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
        f.fmt.pix = raw::v4l2_pix_format {
            width: format.width,
            height: format.height,
            pixelformat: u32::from_le_bytes(format.pixel_format.fourcc()),
            field: raw::v4l2_field_V4L2_FIELD_NONE,
            // SAFETY: v4l2_pix_format is plain old data; all-zero is a valid value.
            ..unsafe { std::mem::zeroed() }
        };
        ioctl(self.fd(), vidioc::VIDIOC_S_FMT, &mut f)?;
        // SAFETY: the driver filled the `pix` member for a VIDEO_CAPTURE format.
        Ok(unsafe { f.fmt.pix })
    }
}

/// An open V4L2 camera streaming into mmap buffers.
pub struct V4l2Capture {
    node: Node,
    format: CaptureFormat,
    /// The driver's row pitch of the (first) plane.
    bytes_per_line: u32,
    buffers: Vec<Mapping>,
    streaming: bool,
}

impl std::fmt::Debug for V4l2Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V4l2Capture")
            .field("device", &self.node.device)
            .field("format", &self.format)
            .field("bytes_per_line", &self.bytes_per_line)
            .field("buffers", &self.buffers.len())
            .finish()
    }
}

impl V4l2Capture {
    /// Opens `path`, negotiates the format for `request`, maps [`BUFFER_COUNT`] buffers and starts
    /// streaming.
    pub fn open(path: &Path, request: &VideoRequest) -> Result<Self, DeviceError> {
        let node = Node::open(path)?;
        let device = node.device.clone();
        let offered = node.offered_formats();
        let format_err = |reason: String| DeviceError::Format { device: device.clone(), reason };
        let asked = format!("{}x{}@{} in {:?}", request.width, request.height, request.fps, request.formats);
        let chosen = choose_format(&offered, request)
            .ok_or_else(|| format_err(format!("asked {asked}; offers {}", describe(&offered))))?;

        let set = node.set_format(&chosen).map_err(|e| match errno_of(&e) {
            libc::EBUSY => {
                DeviceError::Open { device: device.clone(), reason: "busy (in use by another program)".into() }
            }
            _ => format_err(format!("VIDIOC_S_FMT {chosen}: {e}; asked {asked}")),
        })?;
        let got = (set.pixelformat.to_le_bytes(), set.width, set.height);
        if got != (chosen.pixel_format.fourcc(), chosen.width, chosen.height) {
            return Err(format_err(format!(
                "asked {asked}, chose {chosen}, driver set {} {}x{}; offers {}",
                fourcc_text(set.pixelformat),
                set.width,
                set.height,
                describe(&offered)
            )));
        }
        if set.field != raw::v4l2_field_V4L2_FIELD_NONE {
            log::warn!("v4l2: {device}: driver delivers field order {} (interlaced)", set.field);
        }
        let mut bytes_per_line = set.bytesperline;
        if chosen.pixel_format != CameraPixelFormat::Mjpeg {
            let layout = Layout::new(chosen.pixel_format, chosen.width, chosen.height, bytes_per_line);
            let Some(layout) = layout else {
                return Err(format_err(format!("driver set {chosen} with a row pitch of {bytes_per_line} bytes")));
            };
            if (set.sizeimage as usize) < layout.padded_len() {
                return Err(format_err(format!(
                    "driver set {chosen} with an image size of {} bytes, below {}",
                    set.sizeimage,
                    layout.padded_len()
                )));
            }
            bytes_per_line = layout.luma_stride;
        }

        let mut format = chosen;
        match node.set_rate(chosen.fps) {
            Some(fps) if fps != chosen.fps => {
                log::warn!("v4l2: {device}: asked {} fps, driver runs at {fps}", chosen.fps);
                format.fps = fps;
            }
            Some(_) => {}
            None => log::debug!("v4l2: {device}: frame rate unknown, assuming {}", chosen.fps),
        }

        let mut capture = Self { node, format, bytes_per_line, buffers: Vec::new(), streaming: false };
        capture.start().map_err(|e| match e {
            DeviceError::Io { device, reason } => DeviceError::Open { device, reason },
            other => other,
        })?;
        log::info!("camera {device} ({}) opened at {format}", capture.node.card);
        Ok(capture)
    }

    /// REQBUFS, QUERYBUF + mmap, QBUF every buffer, STREAMON.
    fn start(&mut self) -> Result<(), DeviceError> {
        let fd = self.node.fd();
        // SAFETY: v4l2_requestbuffers is plain old data; all-zero is a valid value.
        let mut req: raw::v4l2_requestbuffers = unsafe { std::mem::zeroed() };
        req.count = BUFFER_COUNT;
        req.type_ = raw::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
        req.memory = raw::v4l2_memory_V4L2_MEMORY_MMAP;
        ioctl(fd, vidioc::VIDIOC_REQBUFS, &mut req).map_err(|e| self.error("VIDIOC_REQBUFS", &e))?;
        if req.count < 2 || req.count > MAX_BUFFERS {
            return Err(self.io_error(format!("driver gave {} buffers", req.count)));
        }
        for index in 0..req.count {
            let mut buf = self.buffer_desc();
            buf.index = index;
            ioctl(fd, vidioc::VIDIOC_QUERYBUF, &mut buf).map_err(|e| self.error("VIDIOC_QUERYBUF", &e))?;
            // SAFETY: for MMAP buffers the driver fills `m.offset`.
            let offset = unsafe { buf.m.offset };
            let mapping = Mapping::new(fd, buf.length as usize, offset).map_err(|e| self.error("mmap", &e))?;
            self.buffers.push(mapping);
        }
        for index in 0..req.count {
            self.queue(index)?;
        }
        let mut kind = raw::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE as libc::c_int;
        ioctl(fd, vidioc::VIDIOC_STREAMON, &mut kind).map_err(|e| self.error("VIDIOC_STREAMON", &e))?;
        self.streaming = true;
        Ok(())
    }

    fn buffer_desc(&self) -> raw::v4l2_buffer {
        // SAFETY: v4l2_buffer is plain old data; all-zero is a valid value.
        let mut buf: raw::v4l2_buffer = unsafe { std::mem::zeroed() };
        buf.type_ = raw::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
        buf.memory = raw::v4l2_memory_V4L2_MEMORY_MMAP;
        buf
    }

    fn queue(&self, index: u32) -> Result<(), DeviceError> {
        let mut buf = self.buffer_desc();
        buf.index = index;
        ioctl(self.node.fd(), vidioc::VIDIOC_QBUF, &mut buf).map_err(|e| self.error("VIDIOC_QBUF", &e))
    }

    /// Maps an OS error: the device gone (ENODEV, EIO, ENXIO) or another I/O failure.
    fn error(&self, op: &str, e: &io::Error) -> DeviceError {
        let device = self.node.device.clone();
        match errno_of(e) {
            libc::ENODEV | libc::EIO | libc::ENXIO => DeviceError::Gone { device, reason: format!("{op}: {e}") },
            _ => DeviceError::Io { device, reason: format!("{op}: {e}") },
        }
    }

    fn io_error(&self, reason: String) -> DeviceError {
        DeviceError::Io { device: self.node.device.clone(), reason }
    }

    /// Waits for a filled buffer until `deadline`: `Ok(None)` on timeout.
    fn wait_readable(&self, deadline: Instant) -> Result<Option<libc::c_short>, DeviceError> {
        let mut interrupted = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Rounded up, so a wait never ends just before the deadline and spins.
            let ms = i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
            let mut pfd = libc::pollfd { fd: self.node.fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd, exclusively borrowed for the call.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            match rc {
                0 => return Ok(None),
                n if n > 0 => return Ok(Some(pfd.revents)),
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted && interrupted < EINTR_RETRIES {
                        interrupted += 1;
                        continue;
                    }
                    return Err(self.error("poll", &e));
                }
            }
        }
    }

    /// Copies a dequeued buffer into a packed frame; `None` when the buffer is too short (logged).
    fn pack(&self, buf: &raw::v4l2_buffer) -> Result<Option<Bytes>, DeviceError> {
        let Some(mapping) = self.buffers.get(buf.index as usize) else {
            return Err(self.io_error(format!("driver returned buffer #{} of {}", buf.index, self.buffers.len())));
        };
        let all = mapping.as_slice();
        let f = self.format;
        let used = match buf.bytesused as usize {
            // Some drivers leave bytesused unset for raw formats; an empty MJPEG buffer stays empty.
            0 if f.pixel_format != CameraPixelFormat::Mjpeg => all.len(),
            n => n.min(all.len()),
        };
        let data = &all[..used];
        if f.pixel_format == CameraPixelFormat::Mjpeg {
            return Ok((!data.is_empty()).then(|| Bytes::copy_from_slice(data)));
        }
        let packed = Layout::new(f.pixel_format, f.width, f.height, self.bytes_per_line).and_then(|l| l.pack(data));
        if packed.is_none() {
            log::debug!("v4l2: {}: short frame ({used} bytes) dropped", self.node.device);
        }
        Ok(packed.map(Bytes::from))
    }
}

impl VideoCapture for V4l2Capture {
    fn format(&self) -> CaptureFormat {
        self.format
    }

    fn id(&self) -> &str {
        &self.node.device
    }

    fn next_frame(&mut self, timeout: Duration) -> Result<CapturedFrame, DeviceError> {
        let started = Instant::now();
        let deadline = started.checked_add(timeout).unwrap_or(started + Duration::from_secs(86_400));
        loop {
            let Some(revents) = self.wait_readable(deadline)? else {
                return Err(DeviceError::Stalled { device: self.node.device.clone(), waited: started.elapsed() });
            };
            let mut buf = self.buffer_desc();
            if let Err(e) = ioctl(self.node.fd(), vidioc::VIDIOC_DQBUF, &mut buf) {
                if errno_of(&e) == libc::EAGAIN && revents & (libc::POLLERR | libc::POLLHUP) == 0 {
                    // Woken without a buffer: wait again, without spinning if the driver keeps doing it.
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                let err = match self.error("VIDIOC_DQBUF", &e) {
                    DeviceError::Io { device, reason } if revents & (libc::POLLERR | libc::POLLHUP) != 0 => {
                        DeviceError::Gone { device, reason: format!("{reason} (poll error)") }
                    }
                    other => other,
                };
                if matches!(err, DeviceError::Gone { .. }) {
                    log::warn!("camera {} disappeared: {err}", self.node.device);
                }
                return Err(err);
            }
            let packed = if buf.flags & raw::V4L2_BUF_FLAG_ERROR != 0 {
                log::debug!("v4l2: {}: corrupted frame #{} dropped", self.node.device, buf.sequence);
                None
            } else {
                self.pack(&buf)?
            };
            let timestamp = if buf.flags & raw::V4L2_BUF_FLAG_TIMESTAMP_MASK == raw::V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC {
                // `as`: time_t/suseconds_t are i32 on 32-bit targets and i64 on 64-bit ones.
                #[allow(clippy::unnecessary_cast)]
                timeval_to_duration(buf.timestamp.tv_sec as i64, buf.timestamp.tv_usec as i64)
            } else {
                None
            };
            self.queue(buf.index)?;
            if let Some(data) = packed {
                return Ok(CapturedFrame {
                    format: self.format,
                    data,
                    timestamp: timestamp.unwrap_or_else(monotonic_now),
                    sequence: buf.sequence,
                });
            }
            if Instant::now() >= deadline {
                return Err(DeviceError::Stalled { device: self.node.device.clone(), waited: started.elapsed() });
            }
        }
    }
}

impl Drop for V4l2Capture {
    fn drop(&mut self) {
        let fd = self.node.fd();
        if self.streaming {
            let mut kind = raw::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE as libc::c_int;
            if let Err(e) = ioctl(fd, vidioc::VIDIOC_STREAMOFF, &mut kind) {
                log::debug!("v4l2: {}: VIDIOC_STREAMOFF: {e}", self.node.device);
            }
        }
        // Unmap before freeing the buffers; the file closes after this.
        self.buffers.clear();
        // SAFETY: v4l2_requestbuffers is plain old data; all-zero is a valid value.
        let mut req: raw::v4l2_requestbuffers = unsafe { std::mem::zeroed() };
        req.type_ = raw::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
        req.memory = raw::v4l2_memory_V4L2_MEMORY_MMAP;
        if let Err(e) = ioctl(fd, vidioc::VIDIOC_REQBUFS, &mut req) {
            log::debug!("v4l2: {}: freeing buffers: {e}", self.node.device);
        }
        log::debug!("v4l2: {} closed", self.node.device);
    }
}

/// One driver buffer mapped read-only into this process.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is owned by exactly one `Mapping`, only read through `&self`, and unmapped once in
// `Drop`; moving it to another thread is as safe as moving a `Box<[u8]>`.
unsafe impl Send for Mapping {}

impl Mapping {
    fn new(fd: RawFd, len: usize, offset: u32) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "driver buffer of length 0"));
        }
        // SAFETY: a fresh shared read-only mapping of the driver buffer at `offset`; checked below.
        let ptr = unsafe {
            sys::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, fd, offset as libc::off_t)?
        };
        if ptr.is_null() {
            return Err(io::Error::other("mmap returned null"));
        }
        Ok(Self { ptr, len })
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for the lifetime of `self`. The driver writes into the
        // buffer only while it is queued; we read it only between DQBUF and the next QBUF.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region mapped in `new`, once.
        if let Err(e) = unsafe { sys::munmap(self.ptr, self.len) } {
            log::debug!("v4l2: munmap: {e}");
        }
    }
}

/// Where the planes of a raw frame lie in a driver buffer whose rows are `luma_stride` bytes apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    pixel_format: CameraPixelFormat,
    width: u32,
    height: u32,
    luma_stride: u32,
}

/// One plane: `rows` rows of `row_len` bytes, `stride` apart, starting at `offset`.
#[derive(Debug, Clone, Copy)]
struct Plane {
    offset: usize,
    stride: usize,
    row_len: usize,
    rows: usize,
}

impl Plane {
    fn end(&self) -> usize {
        if self.rows == 0 {
            self.offset
        } else {
            self.offset + (self.rows - 1) * self.stride + self.row_len
        }
    }
}

impl Layout {
    /// `None` for MJPEG or a pitch too small for the width. A pitch of 0 means packed.
    fn new(pixel_format: CameraPixelFormat, width: u32, height: u32, bytes_per_line: u32) -> Option<Self> {
        let packed_row = match pixel_format {
            CameraPixelFormat::I420 | CameraPixelFormat::Nv12 => width,
            CameraPixelFormat::Yuyv => width.div_ceil(2).checked_mul(4)?,
            CameraPixelFormat::Mjpeg => return None,
        };
        let luma_stride = if bytes_per_line == 0 { packed_row } else { bytes_per_line };
        let layout = Self { pixel_format, width, height, luma_stride };
        layout.planes().iter().all(|p| p.stride >= p.row_len).then_some(layout)
    }

    fn planes(&self) -> Vec<Plane> {
        let (w, h) = (self.width as usize, self.height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let stride = self.luma_stride as usize;
        match self.pixel_format {
            CameraPixelFormat::I420 => {
                let luma = Plane { offset: 0, stride, row_len: w, rows: h };
                // The chroma planes' pitch is half the luma pitch (V4L2 YU12).
                let c_stride = stride / 2;
                let u = Plane { offset: stride * h, stride: c_stride, row_len: cw, rows: ch };
                let v = Plane { offset: stride * h + c_stride * ch, ..u };
                vec![luma, u, v]
            }
            CameraPixelFormat::Nv12 => {
                let luma = Plane { offset: 0, stride, row_len: w, rows: h };
                vec![luma, Plane { offset: stride * h, stride, row_len: 2 * cw, rows: ch }]
            }
            CameraPixelFormat::Yuyv => vec![Plane { offset: 0, stride, row_len: 4 * cw, rows: h }],
            CameraPixelFormat::Mjpeg => Vec::new(),
        }
    }

    /// Bytes of the padded frame in the driver's buffer.
    fn padded_len(&self) -> usize {
        self.planes().iter().map(Plane::end).max().unwrap_or(0)
    }

    /// The tightly packed frame from a driver buffer; `None` when `data` is too short.
    fn pack(&self, data: &[u8]) -> Option<Vec<u8>> {
        let planes = self.planes();
        let packed_len = self.pixel_format.frame_len(self.width, self.height)?;
        if planes.iter().all(|p| p.stride == p.row_len) && planes.windows(2).all(|w| w[0].end() == w[1].offset) {
            return data.get(..packed_len).map(<[u8]>::to_vec);
        }
        let mut out = Vec::with_capacity(packed_len);
        for plane in &planes {
            for row in 0..plane.rows {
                let start = plane.offset + row * plane.stride;
                out.extend_from_slice(data.get(start..start + plane.row_len)?);
            }
        }
        Some(out)
    }
}

/// Standard sizes reachable in a size range, or the largest size when none is.
fn sizes_in_range(w: SizeRange, h: SizeRange) -> Vec<(u32, u32)> {
    let mut sizes: Vec<(u32, u32)> =
        STANDARD_SIZES.iter().copied().filter(|&(sw, sh)| w.reaches(sw) && h.reaches(sh)).collect();
    if sizes.is_empty() && w.max > 0 && h.max > 0 {
        sizes.push((w.max, h.max));
    }
    sizes
}

/// One dimension of a stepwise size range.
#[derive(Debug, Clone, Copy)]
struct SizeRange {
    min: u32,
    max: u32,
    step: u32,
}

impl SizeRange {
    fn reaches(&self, value: u32) -> bool {
        value >= self.min && value <= self.max && (value - self.min).is_multiple_of(self.step.max(1))
    }
}

/// Whole frame rate of an interval `numerator/denominator` seconds, rounded (1001/30000 → 30).
fn fps_of(numerator: u32, denominator: u32) -> Option<u32> {
    if numerator == 0 {
        return None;
    }
    let fps = (u64::from(denominator) + u64::from(numerator) / 2) / u64::from(numerator);
    u32::try_from(fps).ok().filter(|&fps| fps > 0)
}

/// Standard rates inside an interval range `min..=max` (as (numerator, denominator) seconds: the shortest
/// interval is the highest rate), or the highest whole rate when none is.
fn rates_in_range(min: (u32, u32), max: (u32, u32)) -> Vec<u32> {
    let (min_n, min_d) = (u64::from(min.0), u64::from(min.1));
    let (max_n, max_d) = (u64::from(max.0), u64::from(max.1));
    if min_n == 0 || max_n == 0 {
        return Vec::new();
    }
    // rate r is inside when 1/r >= min (r * min_n <= min_d) and 1/r <= max (r * max_n >= max_d).
    let mut rates: Vec<u32> = STANDARD_RATES
        .iter()
        .copied()
        .filter(|&r| u64::from(r) * min_n <= min_d && u64::from(r) * max_n >= max_d)
        .collect();
    if rates.is_empty() {
        rates.extend(u32::try_from(min_d / min_n).ok().filter(|&r| r > 0));
    }
    rates
}

/// The offered formats for an error message, at most [`MAX_NAMED`] of them.
fn describe(offered: &[CaptureFormat]) -> String {
    if offered.is_empty() {
        return "nothing we can use".into();
    }
    let mut text = offered.iter().take(MAX_NAMED).map(ToString::to_string).collect::<Vec<_>>().join(", ");
    if offered.len() > MAX_NAMED {
        text.push_str(&format!(" and {} more", offered.len() - MAX_NAMED));
    }
    text
}

fn fourcc_text(code: u32) -> String {
    code.to_le_bytes().iter().map(|&b| if b.is_ascii_graphic() { b as char } else { '?' }).collect()
}

/// A NUL-terminated byte string from the driver, lossily decoded.
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).trim().to_string()
}

fn timeval_to_duration(sec: i64, usec: i64) -> Option<Duration> {
    let sec = u64::try_from(sec).ok()?;
    let usec = u64::try_from(usec).ok().filter(|&u| u < 1_000_000)?;
    let d = Duration::from_secs(sec) + Duration::from_micros(usec);
    (d > Duration::ZERO).then_some(d)
}

fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// One ioctl on `fd` with `arg`, retried a few times when a signal interrupts it.
fn ioctl<T>(fd: RawFd, request: vidioc::_IOC_TYPE, arg: &mut T) -> io::Result<()> {
    let mut attempts = 0;
    loop {
        // SAFETY: `arg` is the exclusively borrowed structure that `request` reads and writes.
        let result = unsafe { sys::ioctl(fd, request, (arg as *mut T).cast::<libc::c_void>()) };
        match result {
            Err(e) if e.kind() == io::ErrorKind::Interrupted && attempts < EINTR_RETRIES => attempts += 1,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("callbox-v4l2-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn list_of_an_empty_dir_is_empty() {
        let dir = temp_dir("empty");
        assert!(V4l2Backend::with_dev_dir(&dir).list().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn list_of_a_missing_dir_is_empty() {
        let dir = temp_dir("missing").join("nope");
        assert!(V4l2Backend::with_dev_dir(&dir).list().is_empty());
    }

    #[test]
    fn list_on_this_machine_does_not_fail() {
        // No camera here; on a machine with one, whatever it lists must be a capture device we can name.
        for info in V4l2Backend::new().list() {
            assert!(info.node.is_some());
            assert!(info.id.starts_with("/dev/video"));
        }
    }

    #[test]
    fn regular_file_named_video0_is_left_out() {
        let dir = temp_dir("regular");
        std::fs::write(dir.join("video0"), b"not a camera").unwrap();
        std::fs::write(dir.join("videoX"), b"not numbered").unwrap();
        std::fs::create_dir(dir.join("video1")).unwrap();
        let backend = V4l2Backend::with_dev_dir(&dir);
        assert_eq!(backend.nodes(), vec![dir.join("video0"), dir.join("video1")]);
        assert!(backend.list().is_empty());
        match probe_node(&dir.join("video0")) {
            Err(DeviceError::Open { device, reason }) => {
                assert!(device.ends_with("video0"), "{device}");
                assert!(reason.contains("not a V4L2 device"), "{reason}");
            }
            other => panic!("expected Open, got {other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn char_device_that_is_not_v4l2_is_refused() {
        // /dev/null is a character device without VIDIOC_QUERYCAP.
        match probe_node(Path::new("/dev/null")) {
            Err(DeviceError::Open { device, reason }) => {
                assert_eq!(device, "/dev/null");
                assert!(reason.contains("VIDIOC_QUERYCAP"), "{reason}");
            }
            other => panic!("expected Open, got {other:?}"),
        }
    }

    #[test]
    fn nodes_are_sorted_by_number() {
        let dir = temp_dir("order");
        for n in [10, 2, 0] {
            std::fs::write(dir.join(format!("video{n}")), b"").unwrap();
        }
        let names: Vec<String> = V4l2Backend::with_dev_dir(&dir)
            .nodes()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["video0", "video2", "video10"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn open_of_a_missing_node_names_it() {
        let dir = temp_dir("open");
        let node = dir.join("video7");
        match V4l2Backend::with_dev_dir(&dir).open(node.to_str().unwrap(), &VideoRequest::default()) {
            Err(DeviceError::Open { device, reason }) => {
                assert_eq!(device, node.display().to_string());
                assert!(!reason.is_empty());
            }
            Err(other) => panic!("expected Open, got {other:?}"),
            Ok(_) => panic!("opened a missing node"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fps_from_intervals() {
        assert_eq!(fps_of(1, 30), Some(30));
        assert_eq!(fps_of(1001, 30000), Some(30));
        assert_eq!(fps_of(1001, 24000), Some(24));
        assert_eq!(fps_of(2, 15), Some(8));
        assert_eq!(fps_of(0, 30), None);
        assert_eq!(fps_of(1, 0), None);
        assert_eq!(fps_of(10, 1), None);
    }

    #[test]
    fn rates_inside_an_interval_range() {
        // 1/60 s .. 1 s: every standard rate.
        assert_eq!(rates_in_range((1, 60), (1, 1)), STANDARD_RATES.to_vec());
        // 1/30 .. 1/10.
        assert_eq!(rates_in_range((1, 30), (1, 10)), vec![10, 15, 20, 24, 25, 30]);
        // 1/12 .. 1/11: no standard rate; the highest whole rate.
        assert_eq!(rates_in_range((1, 12), (1, 11)), vec![12]);
        assert!(rates_in_range((0, 1), (1, 1)).is_empty());
    }

    #[test]
    fn sizes_inside_a_stepwise_range() {
        let w = SizeRange { min: 16, max: 1920, step: 16 };
        let h = SizeRange { min: 16, max: 1080, step: 8 };
        let sizes = sizes_in_range(w, h);
        assert!(sizes.contains(&(640, 480)));
        assert!(sizes.contains(&(1920, 1080)));
        assert!(sizes.contains(&(352, 288)));
        // 1080 = 16 + 133*8 reachable; widths all multiples of 16 from 16.
        assert_eq!(sizes.len(), STANDARD_SIZES.len());
        // A narrow range reaching none: its largest size.
        let odd = sizes_in_range(SizeRange { min: 100, max: 110, step: 2 }, SizeRange { min: 50, max: 60, step: 1 });
        assert_eq!(odd, vec![(110, 60)]);
        // Continuous (step 1) capped at 800x600.
        let cont = sizes_in_range(SizeRange { min: 1, max: 800, step: 1 }, SizeRange { min: 1, max: 600, step: 1 });
        assert_eq!(cont, vec![(160, 120), (320, 240), (352, 288), (640, 360), (640, 480), (800, 600)]);
    }

    fn padded_frame(layout: &Layout) -> (Vec<u8>, Vec<u8>) {
        // Fill each plane's rows with distinct bytes, padding with 0xEE; return (padded, expected packed).
        let mut padded = vec![0xEEu8; layout.padded_len()];
        let mut packed = Vec::new();
        let mut value = 0u8;
        for plane in layout.planes() {
            for row in 0..plane.rows {
                for col in 0..plane.row_len {
                    value = value.wrapping_add(1) % 0xE0;
                    padded[plane.offset + row * plane.stride + col] = value;
                    packed.push(value);
                }
            }
        }
        (padded, packed)
    }

    #[test]
    fn padded_rows_are_repacked() {
        for (format, w, h, stride) in [
            (CameraPixelFormat::Yuyv, 6, 4, 16),
            (CameraPixelFormat::Yuyv, 5, 3, 12),
            (CameraPixelFormat::Nv12, 6, 4, 8),
            (CameraPixelFormat::Nv12, 5, 5, 8),
            (CameraPixelFormat::I420, 6, 4, 8),
            (CameraPixelFormat::I420, 7, 3, 10),
        ] {
            let layout = Layout::new(format, w, h, stride).unwrap();
            let (padded, packed) = padded_frame(&layout);
            assert_eq!(packed.len(), format.frame_len(w, h).unwrap(), "{format:?} {w}x{h}");
            assert_eq!(layout.pack(&padded), Some(packed), "{format:?} {w}x{h}/{stride}");
            assert_eq!(layout.pack(&padded[..padded.len() - 1]), None, "short {format:?}");
        }
    }

    #[test]
    fn unpadded_frames_are_copied_as_they_are() {
        let layout = Layout::new(CameraPixelFormat::I420, 8, 4, 8).unwrap();
        assert_eq!(layout.padded_len(), CameraPixelFormat::I420.frame_len(8, 4).unwrap());
        let data: Vec<u8> = (0..100u8).collect();
        assert_eq!(layout.pack(&data), Some(data[..48].to_vec()));
        // A pitch of 0 is taken as packed.
        assert_eq!(Layout::new(CameraPixelFormat::Yuyv, 8, 2, 0).unwrap().luma_stride, 16);
    }

    #[test]
    fn too_small_a_pitch_is_refused() {
        assert_eq!(Layout::new(CameraPixelFormat::Yuyv, 640, 480, 640), None);
        assert_eq!(Layout::new(CameraPixelFormat::I420, 640, 480, 320), None);
        assert_eq!(Layout::new(CameraPixelFormat::Mjpeg, 640, 480, 0), None);
    }

    #[test]
    fn driver_strings_and_timestamps() {
        assert_eq!(c_string(b"vivid\0\0\0garbage"), "vivid");
        assert_eq!(c_string(b"UVC Camera (046d:0825)"), "UVC Camera (046d:0825)");
        assert_eq!(c_string(&[0xC3, 0x28, 0]), "\u{FFFD}(");
        assert_eq!(fourcc_text(u32::from_le_bytes(*b"YUYV")), "YUYV");
        assert_eq!(fourcc_text(0x0000_4142), "BA??");
        assert_eq!(timeval_to_duration(12, 345_678), Some(Duration::from_micros(12_345_678)));
        assert_eq!(timeval_to_duration(-1, 0), None);
        assert_eq!(timeval_to_duration(1, 1_000_000), None);
        assert_eq!(timeval_to_duration(0, 0), None);
    }

    #[test]
    fn error_messages_list_a_bounded_number_of_formats() {
        let many: Vec<CaptureFormat> = (1..=30)
            .map(|fps| CaptureFormat { pixel_format: CameraPixelFormat::Yuyv, width: 640, height: 480, fps })
            .collect();
        let text = describe(&many);
        assert!(text.starts_with("YUYV 640x480@1, "), "{text}");
        assert!(text.ends_with(" and 6 more"), "{text}");
        assert_eq!(describe(&[]), "nothing we can use");
    }
}

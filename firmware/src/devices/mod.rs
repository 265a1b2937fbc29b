//! Devices: the board's microphone, speaker and camera behind traits, each with a Linux backend (ALSA,
//! V4L2) and a simulated backend (tone microphone, capturing speaker, test-pattern camera), one file per
//! backend; and the device manager that lists them, checks permissions, keeps the defaults and watches
//! for hot-plug.
//!
//! Audio moves in 10 ms frames of 48 kHz mono S16 ([`AudioFrame`]): the unit of the echo canceller.
//! Video moves as [`CapturedFrame`]s in the camera's own pixel format; the encoder pipeline converts.

pub mod audio;
pub mod convert;
pub mod feed;
pub mod manager;
pub mod permission;
pub mod preferences;
pub mod report;
pub mod video;

#[cfg(test)]
mod tests;

pub use feed::{CameraFeed, FeedState};
pub use manager::{DeviceEvent, DeviceInfo, DeviceManager, HotplugWatcher};
pub use preferences::DevicePreferences;

use std::time::Duration;

/// Sample rate of all device audio.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 10 ms mono frame at [`SAMPLE_RATE`].
pub const AUDIO_FRAME_SAMPLES: usize = 480;
/// One 10 ms frame of 48 kHz mono signed 16-bit audio.
pub type AudioFrame = [i16; AUDIO_FRAME_SAMPLES];

/// What kind of device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceKind {
    /// A video capture device.
    Camera,
    /// An audio capture device.
    Microphone,
    /// An audio playback device.
    Speaker,
}

impl DeviceKind {
    /// Lower-case name (`camera`, `microphone`, `speaker`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Camera => "camera",
            DeviceKind::Microphone => "microphone",
            DeviceKind::Speaker => "speaker",
        }
    }
}

/// Pixel formats a camera may deliver (and the encoder pipeline accepts); a screen's layouts are
/// `display::FramebufferFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CameraPixelFormat {
    /// Planar 4:2:0, three planes (Y, U, V).
    I420,
    /// Semi-planar 4:2:0 (Y plane, interleaved UV plane).
    Nv12,
    /// Packed 4:2:2, Y0 U Y1 V.
    Yuyv,
    /// Motion JPEG: every frame a JPEG image.
    Mjpeg,
}

impl CameraPixelFormat {
    /// The V4L2 fourcc code.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            CameraPixelFormat::I420 => *b"YU12",
            CameraPixelFormat::Nv12 => *b"NV12",
            CameraPixelFormat::Yuyv => *b"YUYV",
            CameraPixelFormat::Mjpeg => *b"MJPG",
        }
    }

    /// Its usual short name (`I420`, `NV12`, `YUYV`, `MJPG`).
    pub fn name(self) -> &'static str {
        match self {
            CameraPixelFormat::I420 => "I420",
            CameraPixelFormat::Nv12 => "NV12",
            CameraPixelFormat::Yuyv => "YUYV",
            CameraPixelFormat::Mjpeg => "MJPG",
        }
    }

    /// From a V4L2 fourcc code (`None` for formats we do not take).
    pub fn from_fourcc(code: [u8; 4]) -> Option<Self> {
        match &code {
            b"YU12" => Some(CameraPixelFormat::I420),
            b"NV12" => Some(CameraPixelFormat::Nv12),
            b"YUYV" => Some(CameraPixelFormat::Yuyv),
            b"MJPG" => Some(CameraPixelFormat::Mjpeg),
            _ => None,
        }
    }

    /// Bytes of one tightly packed raw frame (`None` for compressed formats).
    pub fn frame_len(self, width: u32, height: u32) -> Option<usize> {
        let (w, h) = (width as usize, height as usize);
        match self {
            CameraPixelFormat::I420 | CameraPixelFormat::Nv12 => Some(w * h + 2 * w.div_ceil(2) * h.div_ceil(2)),
            CameraPixelFormat::Yuyv => Some(w.div_ceil(2) * 4 * h),
            CameraPixelFormat::Mjpeg => None,
        }
    }
}

/// A capture format: pixel format, size and frame rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CaptureFormat {
    /// Pixel format.
    pub pixel_format: CameraPixelFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
}

impl std::fmt::Display for CaptureFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}x{}@{}", self.pixel_format.name(), self.width, self.height, self.fps)
    }
}

/// One frame from a camera, tightly packed in `format.pixel_format` (no row padding; a backend whose
/// driver pads rows repacks them).
#[derive(Clone)]
pub struct CapturedFrame {
    /// The format the frame is in.
    pub format: CaptureFormat,
    /// The pixels (for MJPEG: one JPEG image).
    pub data: bytes::Bytes,
    /// Capture time from the driver (CLOCK_MONOTONIC since boot), or the backend's own monotonic clock.
    pub timestamp: Duration,
    /// The driver's frame sequence number (gaps mean dropped frames).
    pub sequence: u32,
}

impl std::fmt::Debug for CapturedFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CapturedFrame")
            .field("format", &self.format)
            .field("bytes", &self.data.len())
            .field("timestamp", &self.timestamp)
            .field("sequence", &self.sequence)
            .finish()
    }
}

/// Whether this process may use a device (on Linux: can it open the device node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    /// The device can be opened.
    Granted,
    /// The device exists but this process may not open it.
    Denied {
        /// Why (e.g. `/dev/video0: permission denied (owner root:video, mode 0660; not in group video)`).
        reason: String,
    },
    /// Could not be determined (device busy, vanished, not a device of this kind).
    Unknown {
        /// Why.
        reason: String,
    },
}

/// Errors of the device subsystem. Messages name the device; they never carry secrets.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The device could not be opened.
    #[error("cannot open {device}: {reason}")]
    Open {
        /// Device name or node.
        device: String,
        /// Why.
        reason: String,
    },
    /// The device accepted none of the formats/parameters we can use.
    #[error("{device}: no usable format: {reason}")]
    Format {
        /// Device name or node.
        device: String,
        /// What was asked and what the device offers.
        reason: String,
    },
    /// The device went away (unplugged, driver reset); reopening may succeed later.
    #[error("{device} disappeared: {reason}")]
    Gone {
        /// Device name or node.
        device: String,
        /// The error that showed it.
        reason: String,
    },
    /// No data within the expected time (a stalled camera or sound card).
    #[error("{device} stalled: no data for {waited:?}")]
    Stalled {
        /// Device name or node.
        device: String,
        /// How long we waited.
        waited: Duration,
    },
    /// Any other I/O failure.
    #[error("{device}: {reason}")]
    Io {
        /// Device name or node.
        device: String,
        /// What failed.
        reason: String,
    },
    /// No such device.
    #[error("no {kind} named {name:?}")]
    NotFound {
        /// Camera, microphone or speaker.
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
    /// The device-preferences file could not be read or written.
    #[error("device preferences {path}: {reason}")]
    Preferences {
        /// The file.
        path: String,
        /// What was wrong (names the key for a malformed entry).
        reason: String,
    },
}

//! WebRTC media for one call leg: a webrtc-rs 0.21 peer connection carrying Opus audio and H.264/VP8
//! video, with synthetic sources (tone, frame-counter test pattern) and in-memory sinks (decoded PCM,
//! latest decoded frame), keyframe policy, RTCP feedback counting and call-quality statistics.
//!
//! [`MediaSession`] is the only type the calling API drives: `create_offer`/`accept_answer` when we
//! call, `accept_offer` when Janus offers (also for re-offers on an established session).

mod audio;
mod audio_io;
pub mod bitrate;
pub mod call_tone;
pub mod dtmf;
pub mod echo;
pub mod mixer;
pub mod playout;
mod rtcp;
mod rtt_floor;
pub(crate) mod sdp;
mod session;
pub mod video;
mod wire;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

pub use call_tone::CallTone;
pub use echo::AudioProcessingConfig;
pub use playout::PlayoutConfig;
pub use session::{DecodedCounter, MediaSession, DECODED_COUNTERS};
pub use video::CodecPolicy;

use crate::calling::MediaKind;
use crate::devices::DeviceManager;

/// A video codec this firmware can send and receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// H.264 constrained baseline, packetization-mode 1.
    H264,
    /// VP8.
    Vp8,
}

impl VideoCodec {
    /// The RTP MIME type (`video/H264`, `video/VP8`).
    pub fn mime_type(self) -> &'static str {
        match self {
            VideoCodec::H264 => "video/H264",
            VideoCodec::Vp8 => "video/VP8",
        }
    }

    /// Every codec this firmware offers, `self` first (the order of `VideoConfig::codecs` preferring it).
    pub fn preferred_first(self) -> Vec<VideoCodec> {
        let mut all = vec![self];
        all.extend([VideoCodec::H264, VideoCodec::Vp8].into_iter().filter(|c| *c != self));
        all
    }

    /// Parses a MIME type, case-insensitively.
    pub fn from_mime_type(mime: &str) -> Option<Self> {
        if mime.eq_ignore_ascii_case("video/H264") {
            Some(VideoCodec::H264)
        } else if mime.eq_ignore_ascii_case("video/VP8") {
            Some(VideoCodec::Vp8)
        } else {
            None
        }
    }
}

/// Video sending configuration: what is asked of the camera and of its encoder.
#[derive(Debug, Clone)]
pub struct VideoConfig {
    /// Frame width asked of the camera (and encoded).
    pub width: u32,
    /// Frame height asked of the camera (and encoded).
    pub height: u32,
    /// Frames per second asked of the camera.
    pub fps: u32,
    /// Starting encoder bitrate.
    pub bitrate_kbps: u32,
    /// Floor of the congestion controller.
    pub min_bitrate_kbps: u32,
    /// Ceiling of the congestion controller.
    pub max_bitrate_kbps: u32,
    /// Codecs offered, in preference order (at least one).
    pub codecs: Vec<VideoCodec>,
    /// Which encoder and decoder elements may be used (forced element, hardware allowed).
    pub codec_policy: CodecPolicy,
    /// Camera pixel formats accepted, in order of preference.
    pub pixel_formats: Vec<crate::devices::CameraPixelFormat>,
    /// The largest remote picture decoded (the board's); a bigger stream is not decoded.
    pub max_decode: video::DecodeCap,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            width: 640,
            height: 480,
            fps: 30,
            bitrate_kbps: 800,
            min_bitrate_kbps: 150,
            max_bitrate_kbps: 2_500,
            codecs: vec![VideoCodec::H264, VideoCodec::Vp8],
            codec_policy: CodecPolicy::default(),
            pixel_formats: crate::devices::video::VideoRequest::default().formats,
            max_decode: video::DecodeCap::default(),
        }
    }
}

impl VideoConfig {
    /// What to ask of the camera.
    pub fn request(&self) -> crate::devices::video::VideoRequest {
        crate::devices::video::VideoRequest {
            width: self.width,
            height: self.height,
            fps: self.fps,
            formats: self.pixel_formats.clone(),
        }
    }
}

/// Audio configuration: the Opus encoder, the echo canceller and noise suppressor, the jitter buffer.
#[derive(Debug, Clone)]
pub struct AudioConfig {
    /// Opus bitrate in bits per second.
    pub bitrate_bps: i32,
    /// Opus in-band forward error correction (the far end rebuilds a lost packet from the next).
    pub fec: bool,
    /// Opus discontinuous transmission (near-empty packets while silent).
    pub dtx: bool,
    /// Echo cancellation, noise suppression and high-pass filter on the microphone (`None`: off,
    /// e.g. for a headset or a measurement).
    pub processing: Option<AudioProcessingConfig>,
    /// The playout (jitter) buffer.
    pub playout: PlayoutConfig,
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            bitrate_bps: 32_000,
            fec: true,
            dtx: false,
            processing: Some(AudioProcessingConfig::default()),
            playout: PlayoutConfig::default(),
        }
    }
}

/// Everything a [`MediaSession`] needs.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Address the UDP socket binds (ephemeral port); its host candidate is what the far end reaches.
    pub bind_ip: IpAddr,
    /// Video, or `None` for an audio-only session (video is then not offered).
    pub video: Option<VideoConfig>,
    /// Audio (always offered).
    pub audio: AudioConfig,
    /// Where the microphone, speaker and camera come from.
    pub devices: DeviceManager,
    /// The camera to send (`None`: the device manager's default).
    pub camera: Option<String>,
    /// The microphone (`None`: the default).
    pub microphone: Option<String>,
    /// The speaker (`None`: the default).
    pub speaker: Option<String>,
    /// Periodic keyframe interval after the start-up phase (SIP calls through Janus never see PLIs).
    pub keyframe_interval: Duration,
    /// Length of the start-up phase after connecting during which keyframes are sent often.
    pub startup_keyframe_window: Duration,
    /// Keyframe period during the start-up phase.
    pub startup_keyframe_period: Duration,
    /// How long to wait for ICE gathering before giving up on an offer/answer.
    pub gather_timeout: Duration,
    /// Played remote PCM kept in memory for inspection (samples at 48 kHz mono; older ones dropped).
    pub max_buffered_pcm_samples: usize,
    /// How DTMF digits are sent and received.
    pub dtmf: DtmfConfig,
}

/// How DTMF digits are sent, and whether tones in the audio count as digits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DtmfConfig {
    pub send: DtmfSendMode,
    /// Detect DTMF tones in the received audio (gateways that send DTMF as sound; off by default, since a far
    /// end that sends both telephone-events and tones would type every digit twice).
    pub detect_in_band: bool,
}

/// How the appliance sends DTMF digits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DtmfSendMode {
    /// RFC 4733 telephone-events in the audio stream where negotiated, else SIP INFO.
    #[default]
    TelephoneEvent,
    /// SIP INFO `application/dtmf-relay` always.
    SipInfo,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            video: Some(VideoConfig::default()),
            audio: AudioConfig::default(),
            devices: DeviceManager::simulated(),
            camera: None,
            microphone: None,
            speaker: None,
            keyframe_interval: Duration::from_secs(3),
            startup_keyframe_window: Duration::from_secs(3),
            startup_keyframe_period: Duration::from_millis(500),
            gather_timeout: Duration::from_secs(5),
            max_buffered_pcm_samples: audio::SAMPLE_RATE as usize * 5,
            dtmf: DtmfConfig::default(),
        }
    }
}

/// A snapshot of the session's media statistics.
#[derive(Debug, Clone, Default)]
pub struct MediaStats {
    /// The peer connection is connected (ICE and DTLS up).
    pub ice_connected: bool,
    /// The video codec we send, as negotiated (`None` before negotiation or if video was rejected).
    pub video_codec: Option<VideoCodec>,
    /// The GStreamer encoder element in use.
    pub video_encoder: Option<String>,
    /// The video codec of the remote stream being decoded.
    pub remote_video_codec: Option<VideoCodec>,
    /// Audio RTP packets that left for the transport (Opus and telephone-events; counted at the wire-most
    /// interceptor, so a packet webrtc-rs refused is not counted).
    pub audio_packets_sent: u64,
    /// Telephone-event packets (RFC 4733 DTMF) that left for the transport.
    pub telephone_events_sent: u64,
    /// Opus packets received.
    pub audio_packets_received: u64,
    /// Video frames encoded and sent.
    pub video_frames_sent: u64,
    /// Video RTP packets that left for the transport (counted as `audio_packets_sent` is).
    pub video_packets_sent: u64,
    /// Video RTP packets received.
    pub video_packets_received: u64,
    /// Remote video frames decoded.
    pub video_frames_decoded: u64,
    /// Decoded remote frames whose test-pattern counter read back (checksummed) with a new value: every
    /// picture that came out whole, counted where it is decoded (a reader polling
    /// `last_remote_frame_counter` misses the frames a jitter buffer releases together after a wait).
    pub video_frames_intact: u64,
    /// Frame counter read from the latest decoded remote frame (our test pattern only).
    pub last_remote_frame_counter: Option<u32>,
    /// Remote audio level of the latest 100 ms window (RMS dBFS; -100 for silence or none yet).
    pub remote_audio_level_dbfs: f32,
    /// Longest gap between consecutive received audio packets while connected.
    pub max_audio_gap_ms: u64,
    /// Keyframes produced by our encoder.
    pub keyframes_sent: u64,
    /// PLIs received for our video.
    pub plis_received: u64,
    /// FIRs received for our video.
    pub firs_received: u64,
    /// NACK packets received (answered by webrtc-rs's NACK responder).
    pub nacks_received: u64,
    /// Current video encoder target (follows REMB and loss reports).
    pub video_bitrate_kbps: u32,
    /// Capture to network: from the first sample of an Opus packet leaving the microphone to the
    /// packet handed to the transport (ms, latest packet; the device's own buffering comes on top).
    pub audio_capture_to_send_ms: f64,
    /// Network to speaker: the jitter buffer's delay plus what the speaker device holds (ms, latest).
    pub audio_playout_delay_ms: u64,
    /// Frames the jitter buffer concealed (loss or late packets) and rebuilt from FEC.
    pub audio_concealed_frames: u64,
    /// Frames rebuilt from Opus in-band FEC.
    pub audio_fec_frames: u64,
    /// Times the microphone or speaker was reopened after failing.
    pub audio_device_reopens: u64,
    /// When the peer connection connected.
    pub connected_at: Option<Instant>,
    /// When the first remote video frame was decoded.
    pub first_remote_frame_at: Option<Instant>,
}

/// What one remote stream of a session delivered (a group call's subscription carries one per member stream).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteStreamStats {
    pub ssrc: u32,
    /// The media section it arrives in, when the far end's offer announced its SSRC.
    pub mid: Option<String>,
    pub kind: MediaKind,
    /// RTP packets received.
    pub packets: u64,
    /// RTP bytes received (headers and payload, as they came out of SRTP).
    pub bytes: u64,
    /// Video frames decoded.
    pub frames_decoded: u64,
    /// Frame counter of the latest decoded frame (our test pattern only).
    pub last_frame_counter: Option<u32>,
    /// When its first frame was decoded.
    pub first_frame_at: Option<Instant>,
}

/// Session events (bounded broadcast; a slow receiver loses the oldest).
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// The peer connection connected.
    Connected,
    /// The connection was lost for now (ICE may recover).
    Disconnected,
    /// The peer connection failed.
    Failed(String),
    /// The first remote video frame was decoded.
    FirstRemoteVideoFrame,
    /// A remote audio level window completed (every ~100 ms while audio flows).
    RemoteAudioLevel {
        /// RMS level in dBFS.
        dbfs: f32,
    },
    /// A DTMF digit arrived in the audio stream.
    Dtmf { digit: char, kind: DtmfKind },
    /// The session was closed.
    Closed,
}

/// How a DTMF digit travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfKind {
    /// RFC 4733 telephone-event packets in the audio stream.
    TelephoneEvent,
    /// Tones in the audio itself (detected by `dtmf::ToneDetector`).
    InBand,
}

/// Errors of the media subsystem.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Invalid configuration.
    #[error("invalid media configuration: {0}")]
    Config(String),
    /// The WebRTC stack failed an operation.
    #[error("webrtc {op} failed: {source}")]
    WebRtc {
        /// What was being done.
        op: &'static str,
        /// The webrtc-rs error.
        #[source]
        source: webrtc::error::Error,
    },
    /// SDP from the far end was unusable.
    #[error("bad remote SDP ({what}): {detail}")]
    Sdp {
        /// Offer or answer.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// ICE gathering did not complete in time.
    #[error("ICE gathering did not complete within {0:?}")]
    GatherTimeout(Duration),
    /// A GStreamer element is not installed.
    #[error("GStreamer element not available: {0}")]
    MissingElement(String),
    /// A GStreamer pipeline failed.
    #[error("GStreamer: {0}")]
    Gstreamer(String),
    /// The audio codec failed.
    #[error("audio: {0}")]
    Audio(String),
    /// A DTMF digit cannot be sent in the audio stream.
    #[error("DTMF: {0}")]
    Dtmf(String),
    /// The session is closed.
    #[error("media session is closed")]
    Closed,
}

impl MediaError {
    fn webrtc(op: &'static str) -> impl FnOnce(webrtc::error::Error) -> MediaError {
        move |source| MediaError::WebRtc { op, source }
    }
}

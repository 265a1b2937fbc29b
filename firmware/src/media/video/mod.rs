//! GStreamer video: the encoder (raw camera frames in — I420, NV12, YUY2 or MJPEG — RTP packets out,
//! H.264 constrained baseline packetization-mode 1 or VP8) and the decoder (RTP packets in, raw I420
//! frames out), with their elements chosen by probing the GStreamer registry in order of preference
//! (hardware `v4l2*` elements first) and the next candidate tried when one fails to start; live bitrate
//! changes for the congestion controller; when to force a keyframe. Pipelines are driven through
//! `appsrc`/`appsink`; they own no sockets and know nothing of WebRTC.
//!
//! - `selection`: which codec elements exist and which are chosen ([`CodecPolicy`], [`GstRegistry`]).
//! - `pipeline`: the pipeline descriptions, building and starting them, `appsrc`/`appsink` wiring.
//! - `pixel_layout`: raw frame layouts (offsets, strides), I420 to NV12/YUY2, decoded frames read out.
//! - `encoder`: [`VideoEncoder`]; `decoder`: [`VideoDecoder`].
//! - `keyframe`: [`KeyframePolicy`], when the sender forces a keyframe (pure, time passed in).
//! - `switch_guard`: [`DecoderSwitches`], how often a remote stream may make us build a new decoder (pure).
//! - `decode_cap`: [`DecodeCap`], the largest remote picture the board decodes (pure).
//!
//! Everything public is re-exported here: callers use `media::video::…`, not the files.

mod decode_cap;
mod decoder;
mod encoder;
mod keyframe;
mod pipeline;
mod pixel_layout;
mod selection;
mod switch_guard;

use gstreamer as gst;

use super::MediaError;

pub use decode_cap::DecodeCap;
pub use decoder::VideoDecoder;
pub use encoder::{EncoderCounters, EncoderSettings, VideoEncoder};
pub use keyframe::{KeyframeCause, KeyframePolicy, DEFAULT_KEYFRAME_REQUEST_SPACING};
pub use pipeline::{h264_level, v4l2_extra_controls};
pub use pixel_layout::convert_i420;
pub use selection::{
    available_decoders, available_encoders, choose_encoder, decoder_candidates, encoder_candidates, is_hardware,
    select_decoders, select_encoders, CodecPolicy, ElementRegistry, GstRegistry, H264_DECODERS, H264_ENCODERS,
    VP8_DECODERS, VP8_ENCODERS,
};
pub use switch_guard::{DecoderSwitches, DECODER_SWITCH_INTERVAL};

/// Initialises GStreamer (idempotent and cheap after the first call).
pub fn init_gstreamer() -> Result<(), MediaError> {
    gst::init().map_err(|e| MediaError::Gstreamer(format!("gst::init failed: {e}")))
}

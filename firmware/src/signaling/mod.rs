//! Janus signaling: the WebSocket API client (`janus`: session, transactions, keepalive, token swap,
//! reconnect and session claim), plugin handles (`handle`), and the SIP plugin protocol (`sip`).
//!
//! Typical use:
//! ```no_run
//! # async fn demo() -> Result<(), callbox::signaling::SignalingError> {
//! use callbox::calling::Secret;
//! use callbox::signaling::{JanusConfig, JanusSession, SipHandle};
//! let config = JanusConfig::new(vec!["ws://127.0.0.1:8188".into()], Secret::new("token"));
//! let (session, mut connection_events) = JanusSession::connect(config).await?;
//! let (sip, mut sip_events) = SipHandle::attach(&session).await?;
//! while let Some(event) = sip_events.recv().await { /* ... */ }
//! # Ok(()) }
//! ```

pub mod error;
pub mod event;
pub mod handle;
pub mod janus;
pub mod sip;
pub mod videoroom;

#[cfg(test)]
mod tests;

pub use error::{Result, SignalingError};
pub use event::{HandleEvent, JanusEvent, Jsep};
pub use handle::{FromHandleEvent, PluginEvents, PluginHandle, PluginReply};
pub use janus::{websocket_connector, ConnectionEvent, Connector, JanusConfig, JanusSession};
pub use sip::{
    helper_registration, registration, CallOptions, HoldDirection, SipEvent, SipEvents, SipHandle, SipRegister,
    SIP_PLUGIN,
};
pub use videoroom::{VideoRoomEvent, VideoRoomEvents, VideoRoomHandle, VIDEOROOM_PLUGIN};

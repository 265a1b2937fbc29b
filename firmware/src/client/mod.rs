//! The asynchronous calling API (`CallClient`, `Call`, `RemoteParticipant`, ...) and the engine task behind it,
//! which drives the pure calling core with the Janus signaling client and the WebRTC media sessions.

mod api;
pub mod credential;
mod engine;
pub mod events;
mod heartbeat;
mod render;
mod shared;

pub use api::{Call, CallClient, IncomingCall, RemoteParticipant, RemoteVideoStream};
pub use credential::{RefreshFuture, TokenCredential};
pub use events::{EventStream, Filter};
pub use heartbeat::Heartbeat;
pub use render::{snapshot_on_sigusr1, PreviewRenderer, Screen, VideoRenderer};
pub use shared::GuestAccess;

use crate::calling::{CallEndReason, CallingError, CoreConfig, RefreshPolicy, TokenError};
use crate::media::MediaConfig;
use crate::signaling::SignalingError;
use std::time::Duration;

/// How a `CallClient` connects and behaves.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Janus WebSocket URLs, tried in order (fail-over).
    pub janus_urls: Vec<String>,
    /// For wss:// URLs: the TLS trust (a pinned CA, `provisioning::tls_client_config`); `None`: the system roots.
    pub janus_tls: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
    pub media: MediaConfig,
    pub core: CoreConfig,
    pub refresh: RefreshPolicy,
    /// SIP registration expiry: short, so that the contact of a device that died heals quickly.
    pub register_ttl: Duration,
    /// How long any request to the servers may take.
    pub request_timeout: Duration,
    /// Per-subscriber event queue capacity (see the overflow policy in `calling::events`).
    pub event_queue_capacity: usize,
    /// Display name sent with calls.
    pub display_name: Option<String>,
    /// Keepalive period of the Janus session.
    pub keepalive_interval: Duration,
    /// Extra sip-plugin handles of the registered account (Janus "helpers"): a call can ring on one while another
    /// is in progress (to be declined busy by the core) or while Janus still tears the previous call down (its
    /// SIP-side relay thread lingers up to about a second after a call, and the handle answers 486 meanwhile).
    pub helper_handles: usize,
    /// How long the client tries to get its Janus session back after the connection dropped (it must stay below
    /// the server's `reclaim_session_timeout`); past it the session counts as lost: calls end, a new one is made.
    pub reclaim_window: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            janus_urls: vec!["ws://127.0.0.1:8188".into()],
            janus_tls: None,
            media: MediaConfig::default(),
            core: CoreConfig::default(),
            refresh: RefreshPolicy::default(),
            register_ttl: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            event_queue_capacity: 256,
            display_name: None,
            keepalive_interval: Duration::from_secs(15),
            helper_handles: 2,
            reclaim_window: crate::signaling::JanusConfig::DEFAULT_RECLAIM_WINDOW,
        }
    }
}

/// Why a calling API request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Calling(#[from] CallingError),
    #[error("token: {0}")]
    Token(#[from] TokenError),
    #[error("signaling: {0}")]
    Signaling(#[from] SignalingError),
    #[error("media: {0}")]
    Media(#[from] crate::media::MediaError),
    #[error("SIP registration as {user} failed: {code} {reason}")]
    Registration { user: String, code: i64, reason: String },
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("the call ended ({})", .0.as_ref().map(|r| format!("{} {}", r.code, r.message)).unwrap_or_default())]
    CallEnded(Option<CallEndReason>),
    #[error("device: {0}")]
    Device(#[from] crate::devices::DeviceError),
    #[error("display: {0}")]
    Display(#[from] crate::display::DisplayError),
    #[error("the client is shut down")]
    Closed,
}

impl CallClient {
    /// Connects to the servers with a token from `credential`, registers, and returns when calls can be placed
    /// and received (`ConnectionState::Ready`).
    pub async fn create(credential: TokenCredential, config: ClientConfig) -> Result<CallClient, ClientError> {
        let shared = engine::start(credential, config).await?;
        Ok(CallClient::with_engine(shared))
    }
}

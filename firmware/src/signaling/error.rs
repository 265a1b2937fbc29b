//! `SignalingError`: every way the Janus signaling client can fail, with the context of what failed
//! (which URL, which request, which Janus error code). Never carries a token or a SIP secret.

use thiserror::Error;

/// Janus API error codes (Janus 1.1.2 `src/apierror.h`) that the client treats specially.
pub mod codes {
    /// The token (or API secret) is missing, invalid or expired. Checked on every request, keepalives included.
    pub const UNAUTHORIZED: i64 = 403;
    /// The token is valid but does not grant the plugin asked for in `attach`.
    pub const UNAUTHORIZED_PLUGIN: i64 = 405;
    /// The session does not exist (destroyed, timed out, or never created on this server).
    pub const SESSION_NOT_FOUND: i64 = 458;
    /// The handle does not exist in the session.
    pub const HANDLE_NOT_FOUND: i64 = 459;
    /// No such plugin on this server.
    pub const PLUGIN_NOT_FOUND: i64 = 460;
    /// The plugin refused or failed the message.
    pub const PLUGIN_MESSAGE: i64 = 462;
    /// The server is not accepting new sessions.
    pub const NOT_ACCEPTING_SESSIONS: i64 = 472;
}

/// An error of the Janus signaling client.
#[derive(Debug, Error)]
pub enum SignalingError {
    /// The configuration cannot work (no URL, zero timeout...).
    #[error("invalid signaling configuration: {0}")]
    Config(String),

    /// Opening the WebSocket to one server failed.
    #[error("cannot connect to Janus at {url}: {reason}")]
    Connect { url: String, reason: String },

    /// No server in the list could be reached (or none created a session).
    #[error("no Janus server reachable (tried {tried} URLs); last error: {last}")]
    AllServersFailed { tried: usize, last: String },

    /// The request got no answer within the configured timeout.
    #[error("Janus request '{request}' timed out after {timeout_ms} ms")]
    Timeout { request: String, timeout_ms: u64 },

    /// Janus error 403: the token is invalid or expired. The owner should refresh the token
    /// (`JanusSession::set_token`) and retry.
    #[error("Janus refused '{request}': unauthorized (403, token invalid or expired)")]
    Unauthorized { request: String },

    /// Janus error 405: the token does not grant this plugin.
    #[error("Janus refused '{request}': token does not grant plugin access (405)")]
    UnauthorizedPlugin { request: String },

    /// Janus error 458: the session is gone on the server.
    #[error("Janus session {session_id} not found on the server (request '{request}')")]
    SessionNotFound { session_id: u64, request: String },

    /// Janus error 459: the handle is gone.
    #[error("Janus handle {handle_id} not found (request '{request}')")]
    HandleNotFound { handle_id: u64, request: String },

    /// Any other Janus API error.
    #[error("Janus error {code} on '{request}': {reason}")]
    Janus { request: String, code: i64, reason: String },

    /// The plugin answered with an error (`error_code`/`error` in its data).
    #[error("plugin {plugin} error {code} on '{request}': {reason}")]
    Plugin { plugin: String, request: String, code: i64, reason: String },

    /// The WebSocket dropped while the request was outstanding; the client is reconnecting.
    #[error("Janus connection lost during '{request}' (reconnecting)")]
    Disconnected { request: String },

    /// The session could not be reclaimed (or timed out on the server): the owner must create a new
    /// session and new handles.
    #[error("Janus session lost: {reason}")]
    SessionLost { reason: String },

    /// The session was closed (destroyed by its owner); no more requests are possible.
    #[error("Janus session closed")]
    Closed,

    /// The server sent something that does not follow the Janus protocol.
    #[error("unexpected Janus answer to '{request}': {what}")]
    Protocol { request: String, what: String },
}

impl SignalingError {
    /// True when the caller should refresh the token and retry.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, SignalingError::Unauthorized { .. })
    }

    /// True when the session is gone and must be recreated with its handles.
    pub fn is_session_lost(&self) -> bool {
        matches!(self, SignalingError::SessionLost { .. } | SignalingError::SessionNotFound { .. })
    }
}

/// Result alias of the signaling module.
pub type Result<T> = std::result::Result<T, SignalingError>;

//! The harness's error type: what failed, with which process, file, port or URL.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("not inside the test network namespace: {0} (run the tests through tests/netns-run)")]
    NotInNamespace(String),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("config template {path}: {reason}")]
    Template { path: PathBuf, reason: String },
    #[error("cannot start {name} ({program}): {source}")]
    Spawn { name: String, program: &'static str, source: std::io::Error },
    #[error("{name} not ready within {timeout:?}: {reason}; log {log}")]
    NotReady { name: String, timeout: Duration, reason: String, log: PathBuf },
    #[error("{name} exited ({status}); log {log}")]
    Exited { name: String, status: String, log: PathBuf },
    #[error("{name}'s log grew past {limit} bytes (runaway server); log {log}")]
    LogOverflow { name: String, limit: u64, log: PathBuf },
    #[error("network fault: {0}")]
    NetFault(String),
    #[error("no free port found: {0}")]
    Ports(String),
    #[error("cannot derive a SIP registration: {0}")]
    Registration(String),
    #[error("token service: {0}")]
    TokenService(#[from] callbox_tokensvc::ServerError),
    #[error("baresip {name}: control connection: {reason}")]
    Control { name: String, reason: String },
    #[error("baresip {name}: command {command} failed: {reason}")]
    Command { name: String, command: String, reason: String },
    #[error("QEMU board: {what}: {reason}")]
    Guest { what: String, reason: String },
    #[error("baresip {name}: no {wanted} event within {timeout:?} (last events: {recent})")]
    EventTimeout { name: String, wanted: String, timeout: Duration, recent: String },
}

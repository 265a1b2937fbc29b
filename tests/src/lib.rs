//! callbox-tests: the integration-test harness. `Stack::start` brings up the real backend (Janus, Kamailio, the
//! reference token endpoint) on fresh 127.0.0.1 ports in a per-stack temp dir, inside a network namespace made by
//! `tests/netns-run`; `Stack::start_baresip` adds SIP phones and a PSTN trunk stand-in driven through baresip's
//! `ctrl_tcp`. Dropping a stack kills every process it started and removes its temp dir. `ChromiumPage` adds a
//! foreign WebRTC client: headless Chromium on a janus.js page in one of the stack's videorooms. `NetFault` drops the
//! appliances' packets to a stack's servers with nftables (random loss on the media, a blackhole).

pub mod appliance;
pub mod baresip;
pub mod bench;
pub mod callbox_process;
pub mod chromium;
pub mod compat;
pub mod error;
mod event_log;
pub mod janus;
pub mod kamailio;
pub mod latency;
pub mod linphone;
pub mod log_capture;
pub mod netfault;
pub mod netns;
pub mod ports;
pub mod process;
pub mod proxy;
pub mod qemu;
pub mod sipp;
pub mod smaps;
pub mod soak;
pub mod stack;

pub use baresip::{
    Baresip, BaresipEvent, BaresipEventRecord, BaresipOptions, BaresipRole, BaresipVideo, Recording, VideoFrames,
};
pub use chromium::{
    ChromiumError, ChromiumOptions, ChromiumPage, FakeAudio, FakeVideo, InboundStats, MediaFlow, OutboundStats,
    PageMediaKind, PagePhase, PageStats, RoomPublisher, VideoProbe,
};
pub use error::HarnessError;
pub use netfault::{FaultCounts, NetFault};
pub use proxy::CuttableProxy;
pub use stack::{Stack, StackOptions};

/// Install the logger once (idempotent): `env_logger` for tests that want the harness's logs (`RUST_LOG=info`), or
/// the suite's log capture when `CALLBOX_LOG_CAPTURE` is set (`log_capture`).
pub fn init_logging() {
    log_capture::init();
}

/// Locks a mutex, taking over a poisoned one (its data stays consistent: each use is a single push or drain).
pub(crate) fn baresip_lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

//! What the firmware's logger never lets through, whatever `RUST_LOG` asks for: the trace-level records of
//! dependencies that print what goes over the wire (tungstenite logs each WebSocket frame's payload at trace:
//! Janus tokens, SIP passwords, DTMF INFO bodies). [`SecretSafeLogger`] wraps the configured logger and drops
//! them; the firmware's `main` and the test suite's log capture both log through it, so the suite's scan for
//! secrets (tests/src/log_capture.rs) checks what a device would write.

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Log targets (and their submodules) whose records are dropped at trace level.
pub const WIRE_LOGGING_TARGETS: [&str; 2] = ["tungstenite", "tokio_tungstenite"];

/// A logger that passes everything to `inner` except the trace records of [`WIRE_LOGGING_TARGETS`].
pub struct SecretSafeLogger<L> {
    inner: L,
}

impl<L: Log> SecretSafeLogger<L> {
    pub fn new(inner: L) -> Self {
        SecretSafeLogger { inner }
    }

    /// Installs it as the process's logger, with `max_level` as `log`'s static maximum.
    pub fn install(self, max_level: LevelFilter) -> Result<(), log::SetLoggerError>
    where
        L: 'static,
    {
        log::set_boxed_logger(Box::new(self))?;
        log::set_max_level(max_level);
        Ok(())
    }
}

/// Whether a record of `target` at `level` may carry what went over the wire.
pub fn is_wire_trace(target: &str, level: Level) -> bool {
    level == Level::Trace
        && WIRE_LOGGING_TARGETS
            .iter()
            .any(|t| target.strip_prefix(t).is_some_and(|rest| rest.is_empty() || rest.starts_with("::")))
}

impl<L: Log> Log for SecretSafeLogger<L> {
    fn enabled(&self, metadata: &Metadata) -> bool {
        !is_wire_trace(metadata.target(), metadata.level()) && self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if !is_wire_trace(record.target(), record.level()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<String>>);

    impl Log for &'static Collect {
        fn enabled(&self, _: &Metadata) -> bool {
            true
        }
        fn log(&self, record: &Record) {
            self.0.lock().unwrap().push(format!("{} {}", record.target(), record.args()));
        }
        fn flush(&self) {}
    }

    #[test]
    fn wire_traces_are_dropped_and_everything_else_passes() {
        let collect: &'static Collect = Box::leak(Box::default());
        let logger = SecretSafeLogger::new(collect);
        let rec = |target: &'static str, level: Level| {
            logger.log(&Record::builder().target(target).level(level).args(format_args!("x")).build())
        };
        rec("tungstenite::protocol", Level::Trace);
        rec("tokio_tungstenite", Level::Trace);
        rec("tungstenite::protocol", Level::Debug);
        rec("tungstenite_other", Level::Trace);
        rec("callbox::signaling", Level::Trace);
        assert_eq!(
            *collect.0.lock().unwrap(),
            vec!["tungstenite::protocol x", "tungstenite_other x", "callbox::signaling x"]
        );
        let meta = Metadata::builder().target("tungstenite::protocol").level(Level::Trace).build();
        assert!(!logger.enabled(&meta));
    }
}

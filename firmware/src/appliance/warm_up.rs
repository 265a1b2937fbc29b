//! The start-up warm-up: what the first doorbell press after the process started would otherwise pay for, done
//! once at start while the calling client connects. Measured (issue 17, docs/benchmarks.md "First press after
//! start"): the first call's media session initialises GStreamer, which loads its plugin registry — and, with no
//! registry saved yet (a fresh image's first boot), scans every plugin: 0.4–1.7 s on the first press instead of
//! ~15 ms. Nothing a call needs is held: GStreamer's registry is shared, read-only state. A failed or slow warm-up
//! is logged and never stops the appliance; the press then pays the cost.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// How long the appliance waits for the warm-up before it reports ready (it goes on in the background after).
pub const WARM_UP_BOUND: Duration = Duration::from_secs(3);

/// The warm-up started on a blocking thread.
pub struct WarmUp {
    task: Option<JoinHandle<Result<Duration, String>>>,
    started: Instant,
}

impl WarmUp {
    /// Starts warming what the configured media will use: GStreamer when video is configured (the audio path does
    /// not use it); without video there is nothing to warm.
    pub fn start(video: bool) -> WarmUp {
        let started = Instant::now();
        let task = video.then(|| {
            tokio::task::spawn_blocking(|| {
                let t = Instant::now();
                crate::media::video::init_gstreamer().map_err(|e| e.to_string())?;
                Ok(t.elapsed())
            })
        });
        WarmUp { task, started }
    }

    /// Waits for the warm-up for at most `bound` and logs how it went; a warm-up still running goes on.
    pub async fn finish(mut self, bound: Duration) {
        let Some(task) = self.task.as_mut() else { return };
        match tokio::time::timeout(bound, task).await {
            Ok(Ok(Ok(took))) => log::info!("warm-up: GStreamer ready in {} ms", took.as_millis()),
            Ok(Ok(Err(e))) => log::warn!("warm-up: GStreamer not initialised ({e}); the first call will try again"),
            Ok(Err(e)) => log::warn!("warm-up did not complete: {e}"),
            Err(_) => log::warn!(
                "warm-up still running after {} ms: the appliance goes on, a call meanwhile waits for it",
                self.started.elapsed().as_millis()
            ),
        }
    }
}

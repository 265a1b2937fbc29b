//! A foreign endpoint's events as the harnesses keep them (baresip, linphone): a bounded log (the oldest dropped
//! past `MAX_EVENTS`) that a reader task fills and `wait_for` consumes in order, waking on each new event.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;
use tokio::time::{Duration, Instant};

use crate::error::HarnessError;

/// Events kept before the oldest are dropped.
const MAX_EVENTS: usize = 2000;

pub(crate) struct EventLog<T> {
    events: Mutex<VecDeque<T>>,
    notify: Notify,
}

impl<T: Clone> Default for EventLog<T> {
    fn default() -> Self {
        EventLog { events: Mutex::new(VecDeque::new()), notify: Notify::new() }
    }
}

impl<T: Clone> EventLog<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<T>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends events and wakes the waiters (nothing to wake for none).
    pub(crate) fn push(&self, new: impl IntoIterator<Item = T>) {
        let mut pushed = false;
        {
            let mut events = self.lock();
            for e in new {
                if events.len() >= MAX_EVENTS {
                    events.pop_front();
                }
                events.push_back(e);
                pushed = true;
            }
        }
        if pushed {
            self.notify.notify_waiters();
        }
    }

    /// Wakes the waiters without an event (the source ended: they look at `alive` again).
    pub(crate) fn wake(&self) {
        self.notify.notify_waiters();
    }

    /// The events not consumed yet.
    pub(crate) fn pending(&self) -> Vec<T> {
        self.lock().iter().cloned().collect()
    }

    /// The last `n` events not consumed yet.
    pub(crate) fn recent(&self, n: usize) -> Vec<T> {
        let events = self.lock();
        events.iter().skip(events.len().saturating_sub(n)).cloned().collect()
    }

    /// Waits until `deadline` for the first event that `matches`, consuming it and every event before it (events
    /// that arrived before the call count). Between looks `alive` is asked whether to go on (its error ends the
    /// wait), at least every `poll`. `Ok(None)`: the deadline passed.
    pub(crate) async fn wait_for(
        &self,
        matches: impl Fn(&T) -> bool,
        deadline: Instant,
        poll: Duration,
        mut alive: impl FnMut() -> Result<(), HarnessError>,
    ) -> Result<Option<T>, HarnessError> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut events = self.lock();
                if let Some(i) = events.iter().position(&matches) {
                    let found = events.remove(i);
                    events.drain(..i);
                    if found.is_some() {
                        return Ok(found);
                    }
                }
            }
            alive()?;
            let wake = (Instant::now() + poll).min(deadline);
            if tokio::time::timeout_at(wake, notified).await.is_err() && Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_consumes_up_to_its_event_and_times_out_without_one() {
        let log = EventLog::<u32>::default();
        log.push([1, 2, 3, 2]);
        let far = Instant::now() + Duration::from_secs(5);
        assert_eq!(log.wait_for(|e| *e == 2, far, Duration::from_secs(1), || Ok(())).await.unwrap(), Some(2));
        assert_eq!(log.pending(), vec![3, 2], "the earlier events went with it");
        assert_eq!(log.recent(1), vec![2]);
        let soon = Instant::now() + Duration::from_millis(50);
        assert_eq!(log.wait_for(|e| *e == 9, soon, Duration::from_millis(10), || Ok(())).await.unwrap(), None);
        let err = log
            .wait_for(
                |e| *e == 9,
                far,
                Duration::from_millis(10),
                || Err(HarnessError::Control { name: "x".into(), reason: "gone".into() }),
            )
            .await;
        assert!(err.is_err(), "a dead source ends the wait");
    }
}

//! The asynchronous side of the event model: `EventBus` fans the core's events out to subscribers, each with its
//! own bounded `EventQueue` (see `callbox_calling::events` for the overflow policy), and `EventStream` is one
//! subscription (`on`): await `next()`, drop it or call `off()` to unsubscribe. A slow subscriber never blocks
//! the client or another subscriber.

use crate::calling::events::{Delivery, Event, EventQueue};
use crate::calling::{CallId, ParticipantId};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::Notify;

/// Which events a subscription receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    All,
    /// Events of one call and its participants and streams.
    Call(CallId),
    /// Events of one participant and its streams.
    Participant(CallId, ParticipantId),
}

impl Filter {
    fn matches(&self, e: &Event) -> bool {
        match self {
            Filter::All => true,
            Filter::Call(c) => e.call() == Some(*c),
            Filter::Participant(c, p) => e.call() == Some(*c) && e.participant() == Some(*p),
        }
    }
}

struct Subscriber {
    id: u64,
    filter: Filter,
    queue: EventQueue,
    notify: Arc<Notify>,
}

#[derive(Default)]
struct BusState {
    subscribers: Vec<Subscriber>,
    next_id: u64,
    closed: bool,
}

/// Fans events out to subscribers.
pub struct EventBus {
    state: Mutex<BusState>,
    capacity: usize,
}

impl EventBus {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(EventBus { state: Mutex::new(BusState::default()), capacity })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BusState> {
        // A panic while holding the lock cannot leave the queues inconsistent (every mutation is a single push or
        // pop), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn publish(&self, event: Event) {
        let mut state = self.lock();
        for s in state.subscribers.iter_mut().filter(|s| s.filter.matches(&event)) {
            s.queue.push(event.clone());
            s.notify.notify_one();
        }
    }

    pub fn subscribe(self: &Arc<Self>, filter: Filter) -> EventStream {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        let notify = Arc::new(Notify::new());
        if state.closed {
            notify.notify_one();
        }
        state.subscribers.push(Subscriber {
            id,
            filter,
            queue: EventQueue::new(self.capacity),
            notify: notify.clone(),
        });
        EventStream { id, bus: Arc::downgrade(self), notify }
    }

    /// No more events will come: subscribers drain what is queued, then get `None`.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        for s in &state.subscribers {
            s.notify.notify_one();
        }
    }

    fn pop(&self, id: u64) -> Result<Option<Delivery>, ()> {
        let mut state = self.lock();
        let closed = state.closed;
        match state.subscribers.iter_mut().find(|s| s.id == id) {
            Some(s) => match s.queue.pop() {
                Some(d) => Ok(Some(d)),
                None if closed => Err(()),
                None => Ok(None),
            },
            None => Err(()),
        }
    }

    fn unsubscribe(&self, id: u64) {
        self.lock().subscribers.retain(|s| s.id != id);
    }

    pub fn subscriber_count(&self) -> usize {
        self.lock().subscribers.len()
    }
}

/// One subscription. Unsubscribes when dropped.
pub struct EventStream {
    id: u64,
    bus: Weak<EventBus>,
    notify: Arc<Notify>,
}

impl EventStream {
    /// The next event, or `None` once the client is gone.
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            let bus = self.bus.upgrade()?;
            match bus.pop(self.id) {
                Ok(Some(d)) => return Some(d),
                Ok(None) => {}
                Err(()) => return None,
            }
            drop(bus);
            self.notify.notified().await;
        }
    }

    /// The next event, skipping lag notices.
    pub async fn next_event(&mut self) -> Option<Event> {
        loop {
            match self.next().await? {
                Delivery::Event(e) => return Some(e),
                Delivery::Lagged(n) => {
                    log::warn!("event subscriber lagged: {n} events could not be kept")
                }
            }
        }
    }

    /// An event already queued, without waiting.
    pub fn try_next(&mut self) -> Option<Delivery> {
        self.bus.upgrade()?.pop(self.id).ok().flatten()
    }

    /// Unsubscribes (`off`).
    pub fn off(self) {}
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if let Some(bus) = self.bus.upgrade() {
            bus.unsubscribe(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calling::CallState;
    use std::time::Duration;

    fn state(call: u64, state: CallState) -> Event {
        Event::CallStateChanged { call: CallId(call), state }
    }

    #[tokio::test]
    async fn subscribers_get_their_events_in_order_and_can_unsubscribe() {
        let bus = EventBus::new(16);
        let mut all = bus.subscribe(Filter::All);
        let mut one = bus.subscribe(Filter::Call(CallId(1)));
        bus.publish(state(1, CallState::Ringing));
        bus.publish(state(2, CallState::Ringing));
        bus.publish(state(1, CallState::Connected));
        assert_eq!(all.next_event().await, Some(state(1, CallState::Ringing)));
        assert_eq!(all.next_event().await, Some(state(2, CallState::Ringing)));
        assert_eq!(all.next_event().await, Some(state(1, CallState::Connected)));
        assert_eq!(one.next_event().await, Some(state(1, CallState::Ringing)));
        assert_eq!(one.next_event().await, Some(state(1, CallState::Connected)));
        assert!(one.try_next().is_none());
        one.off();
        assert_eq!(bus.subscriber_count(), 1);
    }

    #[tokio::test]
    async fn a_waiting_subscriber_wakes_on_publish_and_ends_on_close() {
        let bus = EventBus::new(4);
        let mut s = bus.subscribe(Filter::All);
        let b2 = bus.clone();
        let waiter = tokio::spawn(async move {
            let first = s.next_event().await;
            let end = s.next().await;
            (first, end)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        b2.publish(state(3, CallState::Connected));
        b2.close();
        let (first, end) = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert_eq!(first, Some(state(3, CallState::Connected)));
        assert_eq!(end, None);
    }

    #[tokio::test]
    async fn a_slow_subscriber_neither_blocks_nor_loses_the_final_state() {
        let bus = EventBus::new(4);
        let mut slow = bus.subscribe(Filter::All);
        let mut fast = bus.subscribe(Filter::All);
        let states = [CallState::Connecting, CallState::Ringing, CallState::Connected, CallState::LocalHold];
        for i in 0..100u64 {
            bus.publish(Event::CallIsMutedChanged { call: CallId(1), is_muted: i % 2 == 1 });
            bus.publish(state(1, states[(i % 4) as usize]));
            // The fast one keeps up: it sees every event exactly once.
            assert_eq!(
                fast.next_event().await,
                Some(Event::CallIsMutedChanged { call: CallId(1), is_muted: i % 2 == 1 })
            );
            assert_eq!(fast.next_event().await, Some(state(1, states[(i % 4) as usize])));
        }
        // The slow one gets what it had queued, then the newest value of each property: no lag, nothing twice,
        // no value older than one it has already seen.
        let mut got = Vec::new();
        while let Some(d) = slow.try_next() {
            got.push(d);
        }
        assert_eq!(
            got,
            vec![
                Delivery::Event(Event::CallIsMutedChanged { call: CallId(1), is_muted: false }),
                Delivery::Event(state(1, CallState::Connecting)),
                Delivery::Event(Event::CallIsMutedChanged { call: CallId(1), is_muted: true }),
                Delivery::Event(state(1, CallState::LocalHold)),
            ]
        );
    }
}

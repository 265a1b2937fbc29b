//! The event model: every changing property emits a `<name>Changed` event, every collection a `<name>Updated`
//! event with `added` and `removed`; one-off occurrences (an incoming call, a received DTMF digit) are events of
//! their own. `EventQueue` is one subscriber's bounded queue with the documented overflow policy:
//!
//! 1. Events are delivered in order, each once.
//! 2. When the queue is full, a new `Changed` event replaces the newest queued event of the same property of the
//!    same object (the subscriber sees the newest value in that event's place, after the older values it had
//!    queued), and a new `Updated` event merges into the newest queued one of the same collection (net
//!    `added`/`removed`). Intermediate values are skipped, never reordered among themselves, and the final state
//!    of every property and collection is always delivered.
//! 3. When nothing can be merged, the event is dropped and counted; the subscriber then receives
//!    `Delivery::Lagged(n)` after the events already queued, and must re-read the objects' state.

use crate::identifier::Identifier;
use crate::model::{
    CallEndReason, CallId, CallState, ParticipantId, ParticipantState, RendererId, ScalingMode, StreamId,
};
use std::collections::VecDeque;

/// State of the client's connection to its servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    Disconnected,
    Connecting,
    /// Connected to the media server and registered at the SIP registrar: calls can be placed and received.
    Ready,
    /// Connection lost; reconnecting with backoff.
    Reconnecting,
}

/// Everything the calling API reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    ConnectionStateChanged {
        state: ConnectionState,
    },
    CallsUpdated {
        added: Vec<CallId>,
        removed: Vec<CallId>,
    },
    IncomingCall {
        call: CallId,
        from: Identifier,
        display_name: Option<String>,
    },
    CallStateChanged {
        call: CallId,
        state: CallState,
    },
    CallEndReasonChanged {
        call: CallId,
        reason: CallEndReason,
    },
    CallIsMutedChanged {
        call: CallId,
        is_muted: bool,
    },
    CallIsVideoOnChanged {
        call: CallId,
        is_video_on: bool,
    },
    RemoteParticipantsUpdated {
        call: CallId,
        added: Vec<ParticipantId>,
        removed: Vec<ParticipantId>,
    },
    ParticipantStateChanged {
        call: CallId,
        participant: ParticipantId,
        state: ParticipantState,
    },
    ParticipantCallEndReasonChanged {
        call: CallId,
        participant: ParticipantId,
        reason: CallEndReason,
    },
    ParticipantIsMutedChanged {
        call: CallId,
        participant: ParticipantId,
        is_muted: bool,
    },
    ParticipantIsSpeakingChanged {
        call: CallId,
        participant: ParticipantId,
        is_speaking: bool,
    },
    VideoStreamsUpdated {
        call: CallId,
        participant: ParticipantId,
        added: Vec<StreamId>,
        removed: Vec<StreamId>,
    },
    ScreenSharingStreamsUpdated {
        call: CallId,
        participant: ParticipantId,
        added: Vec<StreamId>,
        removed: Vec<StreamId>,
    },
    StreamIsAvailableChanged {
        call: CallId,
        participant: ParticipantId,
        stream: StreamId,
        is_available: bool,
    },
    /// A DTMF digit arrived from the far end of a call.
    DtmfReceived {
        call: CallId,
        digit: char,
    },
    ActiveRenderersUpdated {
        call: CallId,
        participant: ParticipantId,
        stream: StreamId,
        added: Vec<RendererId>,
        removed: Vec<RendererId>,
    },
    RendererScalingModeChanged {
        call: CallId,
        participant: ParticipantId,
        renderer: RendererId,
        scaling_mode: ScalingMode,
    },
    RendererIsRenderingChanged {
        call: CallId,
        participant: ParticipantId,
        renderer: RendererId,
        is_rendering: bool,
    },
}

/// What an event is about, for coalescing (same key: same property or collection of the same object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Connection,
    Calls,
    Call(u8, CallId),
    Participant(u8, CallId, ParticipantId),
    Stream(CallId, ParticipantId, StreamId),
    Renderers(CallId, StreamId),
    Renderer(u8, RendererId),
}

impl Event {
    /// The call this event concerns, if any.
    pub fn call(&self) -> Option<CallId> {
        use Event::*;
        match self {
            ConnectionStateChanged { .. } | CallsUpdated { .. } => None,
            IncomingCall { call, .. }
            | CallStateChanged { call, .. }
            | CallEndReasonChanged { call, .. }
            | CallIsMutedChanged { call, .. }
            | CallIsVideoOnChanged { call, .. }
            | RemoteParticipantsUpdated { call, .. }
            | ParticipantStateChanged { call, .. }
            | ParticipantCallEndReasonChanged { call, .. }
            | ParticipantIsMutedChanged { call, .. }
            | ParticipantIsSpeakingChanged { call, .. }
            | VideoStreamsUpdated { call, .. }
            | ScreenSharingStreamsUpdated { call, .. }
            | StreamIsAvailableChanged { call, .. }
            | DtmfReceived { call, .. }
            | ActiveRenderersUpdated { call, .. }
            | RendererScalingModeChanged { call, .. }
            | RendererIsRenderingChanged { call, .. } => Some(*call),
        }
    }

    /// The participant this event concerns, if any.
    pub fn participant(&self) -> Option<ParticipantId> {
        use Event::*;
        match self {
            ParticipantStateChanged { participant, .. }
            | ParticipantCallEndReasonChanged { participant, .. }
            | ParticipantIsMutedChanged { participant, .. }
            | ParticipantIsSpeakingChanged { participant, .. }
            | VideoStreamsUpdated { participant, .. }
            | ScreenSharingStreamsUpdated { participant, .. }
            | StreamIsAvailableChanged { participant, .. }
            | ActiveRenderersUpdated { participant, .. }
            | RendererScalingModeChanged { participant, .. }
            | RendererIsRenderingChanged { participant, .. } => Some(*participant),
            _ => None,
        }
    }

    /// `None` for occurrences, which never coalesce.
    fn key(&self) -> Option<Key> {
        use Event::*;
        Some(match self {
            ConnectionStateChanged { .. } => Key::Connection,
            CallsUpdated { .. } => Key::Calls,
            IncomingCall { .. } | DtmfReceived { .. } => return None,
            CallStateChanged { call, .. } => Key::Call(0, *call),
            CallEndReasonChanged { call, .. } => Key::Call(1, *call),
            CallIsMutedChanged { call, .. } => Key::Call(2, *call),
            CallIsVideoOnChanged { call, .. } => Key::Call(3, *call),
            RemoteParticipantsUpdated { call, .. } => Key::Call(4, *call),
            ParticipantStateChanged { call, participant, .. } => Key::Participant(0, *call, *participant),
            ParticipantCallEndReasonChanged { call, participant, .. } => Key::Participant(1, *call, *participant),
            ParticipantIsMutedChanged { call, participant, .. } => Key::Participant(2, *call, *participant),
            ParticipantIsSpeakingChanged { call, participant, .. } => Key::Participant(3, *call, *participant),
            VideoStreamsUpdated { call, participant, .. } => Key::Participant(4, *call, *participant),
            ScreenSharingStreamsUpdated { call, participant, .. } => Key::Participant(5, *call, *participant),
            StreamIsAvailableChanged { call, participant, stream, .. } => Key::Stream(*call, *participant, *stream),
            ActiveRenderersUpdated { call, stream, .. } => Key::Renderers(*call, *stream),
            RendererScalingModeChanged { renderer, .. } => Key::Renderer(0, *renderer),
            RendererIsRenderingChanged { renderer, .. } => Key::Renderer(1, *renderer),
        })
    }

    /// Folds `newer` (same key) into `self`: a property takes the newer value, a collection the net change.
    fn absorb(&mut self, newer: Event) {
        use Event::*;
        match (self, newer) {
            (CallsUpdated { added, removed }, CallsUpdated { added: a2, removed: r2 }) => {
                merge_updates(added, removed, a2, r2)
            }
            (
                RemoteParticipantsUpdated { added, removed, .. },
                RemoteParticipantsUpdated { added: a2, removed: r2, .. },
            ) => merge_updates(added, removed, a2, r2),
            (ActiveRenderersUpdated { added, removed, .. }, ActiveRenderersUpdated { added: a2, removed: r2, .. }) => {
                merge_updates(added, removed, a2, r2)
            }
            (VideoStreamsUpdated { added, removed, .. }, VideoStreamsUpdated { added: a2, removed: r2, .. })
            | (
                ScreenSharingStreamsUpdated { added, removed, .. },
                ScreenSharingStreamsUpdated { added: a2, removed: r2, .. },
            ) => merge_updates(added, removed, a2, r2),
            (slot, newer) => *slot = newer,
        }
    }
}

/// Net effect of two collection updates in a row: something added then removed was never seen, so it vanishes.
fn merge_updates<T: PartialEq>(added: &mut Vec<T>, removed: &mut Vec<T>, a2: Vec<T>, r2: Vec<T>) {
    for r in r2 {
        if let Some(pos) = added.iter().position(|a| *a == r) {
            added.remove(pos);
        } else if !removed.contains(&r) {
            removed.push(r);
        }
    }
    for a in a2 {
        if let Some(pos) = removed.iter().position(|x| *x == a) {
            removed.remove(pos);
        } else if !added.contains(&a) {
            added.push(a);
        }
    }
}

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    Event(Event),
    /// `n` events could not be queued or merged (see the module's overflow policy): re-read the state.
    Lagged(u64),
}

/// One subscriber's bounded queue.
#[derive(Debug)]
pub struct EventQueue {
    items: VecDeque<Event>,
    capacity: usize,
    dropped: u64,
    merged: u64,
}

impl EventQueue {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        EventQueue { items: VecDeque::with_capacity(capacity.min(64)), capacity, dropped: 0, merged: 0 }
    }

    pub fn push(&mut self, event: Event) {
        if self.items.len() < self.capacity {
            self.items.push_back(event);
            return;
        }
        if let Some(key) = event.key() {
            if let Some(slot) = self.items.iter_mut().rev().find(|e| e.key() == Some(key)) {
                slot.absorb(event);
                self.merged += 1;
                return;
            }
        }
        self.dropped += 1;
    }

    pub fn pop(&mut self) -> Option<Delivery> {
        if let Some(e) = self.items.pop_front() {
            return Some(Delivery::Event(e));
        }
        if self.dropped > 0 {
            let n = std::mem::take(&mut self.dropped);
            return Some(Delivery::Lagged(n));
        }
        None
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.dropped == 0
    }

    /// How many events were folded into queued ones because the subscriber was slow.
    pub fn merged(&self) -> u64 {
        self.merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(call: u64, s: CallState) -> Event {
        Event::CallStateChanged { call: CallId(call), state: s }
    }

    #[test]
    fn below_capacity_every_event_arrives_once_in_order() {
        let mut q = EventQueue::new(8);
        for s in [CallState::Connecting, CallState::Ringing, CallState::Connected] {
            q.push(state(1, s));
        }
        assert_eq!(q.pop(), Some(Delivery::Event(state(1, CallState::Connecting))));
        assert_eq!(q.pop(), Some(Delivery::Event(state(1, CallState::Ringing))));
        assert_eq!(q.pop(), Some(Delivery::Event(state(1, CallState::Connected))));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn full_queue_keeps_the_newest_value_of_a_property() {
        let mut q = EventQueue::new(2);
        q.push(state(1, CallState::Connecting));
        q.push(Event::CallIsMutedChanged { call: CallId(1), is_muted: true });
        q.push(state(1, CallState::Ringing));
        q.push(state(1, CallState::Connected));
        assert_eq!(q.merged(), 2);
        assert_eq!(q.pop(), Some(Delivery::Event(state(1, CallState::Connected))));
        assert_eq!(q.pop(), Some(Delivery::Event(Event::CallIsMutedChanged { call: CallId(1), is_muted: true })));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn full_queue_merges_collection_updates_to_their_net_effect() {
        let mut q = EventQueue::new(1);
        let upd = |a: &[u64], r: &[u64]| Event::RemoteParticipantsUpdated {
            call: CallId(1),
            added: a.iter().map(|x| ParticipantId(*x)).collect(),
            removed: r.iter().map(|x| ParticipantId(*x)).collect(),
        };
        q.push(upd(&[1, 2], &[]));
        q.push(upd(&[3], &[2]));
        q.push(upd(&[], &[9]));
        assert_eq!(q.pop(), Some(Delivery::Event(upd(&[1, 3], &[9]))));
    }

    #[test]
    fn occurrences_that_cannot_merge_are_counted_as_lagged_after_the_queue() {
        let mut q = EventQueue::new(1);
        q.push(Event::DtmfReceived { call: CallId(1), digit: '1' });
        q.push(Event::DtmfReceived { call: CallId(1), digit: '2' });
        q.push(Event::DtmfReceived { call: CallId(1), digit: '3' });
        assert_eq!(q.pop(), Some(Delivery::Event(Event::DtmfReceived { call: CallId(1), digit: '1' })));
        assert_eq!(q.pop(), Some(Delivery::Lagged(2)));
        assert_eq!(q.pop(), None);
        assert!(q.is_empty());
    }

    #[test]
    fn events_name_their_objects() {
        let e = Event::ParticipantIsMutedChanged { call: CallId(4), participant: ParticipantId(7), is_muted: true };
        assert_eq!(e.call(), Some(CallId(4)));
        assert_eq!(e.participant(), Some(ParticipantId(7)));
        assert_eq!(Event::CallsUpdated { added: vec![], removed: vec![] }.call(), None);
    }
}

//! The state a client's handles (`CallClient`, `Call`, the screen) and its engine task share: the calling core
//! (behind a mutex never held across an `.await`; the API acts on it and the engine drains its commands), the
//! event bus, each call's media session and what group calls receive, the last figures of ended calls, and the
//! way to ask the engine to shut down.

use super::events::EventBus;
use super::ClientConfig;
use crate::calling::{CallId, CallingCore, Identifier, StreamId};
use crate::frame::VideoFrame;
use crate::media::{MediaSession, MediaStats};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, Notify};

/// What a client's handles (API, screen) and its engine task share.
pub(crate) struct Shared {
    core: Mutex<CallingCore>,
    pub(crate) bus: Arc<EventBus>,
    /// Wakes the engine: an API action queued commands in the core.
    pub(super) wake: Notify,
    pub(crate) config: ClientConfig,
    pub(crate) local_user: Identifier,
    /// Each call's media session (a group call's: its publisher).
    pub(super) media: Mutex<HashMap<CallId, MediaSession>>,
    /// What the API and the screen read of group calls' received streams.
    pub(super) groups: Mutex<HashMap<CallId, GroupView>>,
    /// The last media figures of ended calls (the newest `FINAL_STATS_KEPT`), still readable through their handles.
    final_stats: Mutex<VecDeque<(CallId, MediaStats)>>,
    shutdown_tx: mpsc::Sender<oneshot::Sender<()>>,
    /// Beaten by the engine on each turn of its loop (the appliance's watchdog reads it).
    pub(crate) heartbeat: super::Heartbeat,
}

const FINAL_STATS_KEPT: usize = 16;

/// A group call's subscription as the readers see it: its receive-only session and which of its mids carries
/// which member stream (feed, the member's mid).
#[derive(Default)]
pub(crate) struct GroupView {
    pub(super) subscriber: Option<MediaSession>,
    pub(super) mids: HashMap<(u64, String), String>,
    pub(super) access: Option<GuestAccess>,
}

/// A group call's room, as a guest joins it.
#[derive(Debug, Clone)]
pub struct GuestAccess {
    /// The Janus videoroom room number.
    pub room: u64,
    /// The room's PIN (a secret: not to be logged).
    pub pin: crate::calling::Secret,
}

impl Shared {
    /// The shared state of a new client; the engine task gets the other end of `shutdown_tx`.
    pub(super) fn new(
        config: ClientConfig,
        local_user: Identifier,
        shutdown_tx: mpsc::Sender<oneshot::Sender<()>>,
    ) -> Shared {
        Shared {
            core: Mutex::new(CallingCore::new(config.core.clone())),
            bus: EventBus::new(config.event_queue_capacity),
            wake: Notify::new(),
            config,
            local_user,
            media: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
            final_stats: Mutex::new(VecDeque::new()),
            shutdown_tx,
            heartbeat: super::Heartbeat::new(),
        }
    }

    /// Runs `f` on the core, publishes the events it produced and wakes the engine for its commands (API side).
    pub(crate) fn with_core<R>(&self, f: impl FnOnce(&mut CallingCore, Instant) -> R) -> R {
        let result = self.engine_core(f);
        self.wake.notify_one();
        result
    }

    /// Reads the core (no action, so nothing to publish or wake).
    pub(crate) fn peek<R>(&self, f: impl FnOnce(&CallingCore) -> R) -> R {
        f(&self.core.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// As `with_core`, without waking the engine: the engine's own calls, whose commands it drains at the top of
    /// its loop (waking itself would make the loop spin).
    pub(super) fn engine_core<R>(&self, f: impl FnOnce(&mut CallingCore, Instant) -> R) -> R {
        let mut core = self.core.lock().unwrap_or_else(|p| p.into_inner());
        let result = f(&mut core, Instant::now());
        while let Some(event) = core.poll_event() {
            self.bus.publish(event);
        }
        result
    }

    pub(crate) fn media(&self, call: CallId) -> Option<MediaSession> {
        self.media.lock().unwrap_or_else(|p| p.into_inner()).get(&call).cloned()
    }

    /// Mixes `tone` into the call's outgoing audio (a group call: what it publishes); `false` without media.
    pub(crate) fn play_tone(&self, call: CallId, tone: crate::media::CallTone) -> bool {
        self.media(call).map(|m| m.play_tone(tone)).is_some()
    }

    /// Live figures while the call has media, then its last figures.
    /// In a group call: what the publisher sends and plays, with what the subscription receives and decodes.
    pub(crate) fn media_stats(&self, call: CallId) -> Option<MediaStats> {
        let live = self.media(call).map(|m| {
            let mut stats = m.stats();
            if let Some(received) = self.group_subscriber(call).map(|s| s.stats()) {
                stats.audio_packets_received += received.audio_packets_received;
                stats.video_packets_received += received.video_packets_received;
                stats.video_frames_decoded += received.video_frames_decoded;
                stats.video_frames_intact += received.video_frames_intact;
                stats.max_audio_gap_ms = stats.max_audio_gap_ms.max(received.max_audio_gap_ms);
                stats.remote_video_codec = stats.remote_video_codec.or(received.remote_video_codec);
                stats.last_remote_frame_counter =
                    received.last_remote_frame_counter.or(stats.last_remote_frame_counter);
                stats.first_remote_frame_at = stats.first_remote_frame_at.or(received.first_remote_frame_at);
            }
            stats
        });
        live.or_else(|| {
            let kept = self.final_stats.lock().unwrap_or_else(|p| p.into_inner());
            kept.iter().find(|(c, _)| *c == call).map(|(_, s)| s.clone())
        })
    }

    pub(super) fn keep_final_stats(&self, call: CallId, stats: MediaStats) {
        let mut kept = self.final_stats.lock().unwrap_or_else(|p| p.into_inner());
        kept.push_back((call, stats));
        while kept.len() > FINAL_STATS_KEPT {
            kept.pop_front();
        }
    }

    /// The frames decoded so far of a remote video stream and its latest frame. A group call's stream is found in
    /// its subscription (the mid that carries the member's stream); a 1:1 call's (also an escalated call's while
    /// its SIP leg is up, before the room's camera takes the stream over) is the call's session's.
    pub(crate) fn remote_video(&self, call: CallId, stream: StreamId) -> (u64, Option<VideoFrame>) {
        if let Some(source) = self.peek(|core| core.group_stream_source(call, stream)) {
            let found = {
                let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
                groups.get(&call).and_then(|v| Some((v.subscriber.clone()?, v.mids.get(&source)?.clone())))
            };
            return found.and_then(|(media, mid)| media.remote_video_of(&mid)).unwrap_or((0, None));
        }
        match self.media(call) {
            Some(m) => (m.stats().video_frames_decoded, m.last_remote_frame()),
            None => (self.media_stats(call).map(|s| s.video_frames_decoded).unwrap_or(0), None),
        }
    }

    pub(crate) fn guest_access(&self, call: CallId) -> Option<GuestAccess> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner()).get(&call).and_then(|v| v.access.clone())
    }

    /// The receive-only session of a group call (its per-stream figures).
    pub(crate) fn group_subscriber(&self, call: CallId) -> Option<MediaSession> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner()).get(&call).and_then(|v| v.subscriber.clone())
    }

    /// Asks the engine to shut down without waiting (the last `CallClient` handle was dropped).
    pub(crate) fn request_shutdown(&self) {
        let (tx, _rx) = oneshot::channel();
        let _ = self.shutdown_tx.try_send(tx);
    }

    pub(crate) async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.shutdown_tx.send(tx).await.is_ok() {
            let _ = tokio::time::timeout(self.config.request_timeout * 2, rx).await;
        }
    }
}

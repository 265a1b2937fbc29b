//! The typed VideoRoom protocol (`callbox::signaling::videoroom`) against the real Janus of the test stack, without
//! media: room creation with secret and pin, publisher joins and room notifications, `exists` and
//! `listparticipants`, kick and destroy with their secret checks. Every event seen must parse (no `Unknown`).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use callbox::calling::Secret;
use callbox::signaling::videoroom::{
    room_id_from, Attendee, CreateRoom, Destroy, JoinPublisher, JoinSubscriber, Kick, Moderate, SubscribeStream,
    VideoRoomEvent, VideoRoomEvents, VideoRoomHandle, MAX_ID,
};
use callbox::signaling::SignalingError;
use callbox_tests::{Stack, StackOptions};
use common::WAIT;

/// The plugin error code of a failed request (panics on success or on another kind of error).
fn plugin_code<T: std::fmt::Debug>(what: &str, result: Result<T, SignalingError>) -> i64 {
    match result {
        Err(SignalingError::Plugin { code, .. }) => code,
        other => panic!("{what}: expected a plugin error, got {other:?}"),
    }
}

/// Every event a handle reported, for the final "all parsed" check.
struct Seen {
    who: &'static str,
    events: VideoRoomEvents,
    log: Vec<VideoRoomEvent>,
}

impl Seen {
    fn new(who: &'static str, events: VideoRoomEvents) -> Self {
        Seen { who, events, log: Vec::new() }
    }

    /// Waits for the first event `pick` selects (others are kept in the log).
    async fn expect(&mut self, what: &str, pick: impl Fn(&VideoRoomEvent) -> bool) -> VideoRoomEvent {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => panic!("{}: event stream ended before {what} (saw {:?})", self.who, self.log),
                Err(_) => panic!("{}: no {what} within {WAIT:?} (saw {:?})", self.who, self.log),
            };
            self.log.push(event.clone());
            if pick(&event) {
                return event;
            }
        }
    }

    /// Collects what arrives within `quiet`, then checks that everything seen parsed.
    async fn drain_and_check(&mut self, quiet: Duration) {
        while let Ok(Some(event)) = tokio::time::timeout(quiet, self.events.recv()).await {
            self.log.push(event);
        }
        eprintln!("{} saw: {:?}", self.who, self.log);
        let unknown: Vec<_> = self.log.iter().filter(|e| matches!(e, VideoRoomEvent::Unknown(_))).collect();
        assert!(unknown.is_empty(), "{}: unparsed events {unknown:?}", self.who);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn videoroom_rooms_joins_kick_and_destroy_against_janus() {
    callbox_tests::init_logging();
    let started = Instant::now();
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let (session, _connection) = stack.janus_session().await.expect("Janus session");
    let (a, a_events) = VideoRoomHandle::attach(&session).await.expect("attach a");
    let (b, b_events) = VideoRoomHandle::attach(&session).await.expect("attach b");
    let (c, c_events) = VideoRoomHandle::attach(&session).await.expect("attach c");
    let (mut a_events, mut b_events, mut c_events) =
        (Seen::new("a", a_events), Seen::new("b", b_events), Seen::new("c", c_events));

    // A creates a private room with a secret, a pin, joining notifications and talk detection.
    let room = room_id_from(rand::random());
    let secret = Secret::new(format!("secret-{}", rand::random::<u64>()));
    let pin = Secret::new(format!("{:06}", rand::random::<u32>() % 1_000_000));
    let create = CreateRoom {
        room,
        description: "group call test".into(),
        secret: secret.clone(),
        pin: pin.clone(),
        admin_key: stack.room_admin_key().clone(),
        publishers: 6,
        audio_codecs: "opus".into(),
        video_codecs: "vp8,h264".into(),
        audiolevel_event: true,
        audio_active_packets: 50,
        audio_level_average: 40,
        notify_joining: true,
        require_pvtid: true,
    };
    // Only with the admin key (a room grant): without it 429 (missing), with a wrong one 433 (unauthorized);
    // neither leaves a room behind.
    let no_key = CreateRoom { admin_key: Secret::default(), ..create.clone() };
    assert_eq!(plugin_code("create without the admin key", a.create_room(&no_key).await), 429);
    let wrong_key = CreateRoom { admin_key: Secret::new("not-the-admin-key"), ..create.clone() };
    assert_eq!(plugin_code("create with a wrong admin key", a.create_room(&wrong_key).await), 433);
    assert!(!a.exists(room).await.expect("exists"), "a refused create made a room");
    assert_eq!(a.create_room(&create).await.expect("create"), room);
    assert_eq!(plugin_code("create again", a.create_room(&create).await), 427);

    // A wrong pin is refused.
    let wrong_pin = JoinPublisher { room, pin: Secret::new("not-the-pin"), display: "intruder".into(), id: None };
    assert_eq!(plugin_code("join with a wrong pin", c.join_publisher(&wrong_pin).await), 433);

    // A then B join as publishers (no media): B sees A as an attendee, A is told B is joining.
    let a_joined = a
        .join_publisher(&JoinPublisher { room, pin: pin.clone(), display: "door-a".into(), id: None })
        .await
        .expect("a joins");
    assert_eq!(a_joined.room, room);
    assert_eq!(a_joined.description.as_deref(), Some("group call test"));
    assert!((1..=MAX_ID).contains(&a_joined.id), "{a_joined:?}");
    assert!(a_joined.publishers.is_empty() && a_joined.attendees.is_empty(), "{a_joined:?}");
    let b_id = room_id_from(rand::random());
    let b_joined = b
        .join_publisher(&JoinPublisher { room, pin: pin.clone(), display: "tablet-b".into(), id: Some(b_id) })
        .await
        .expect("b joins");
    assert_eq!((b_joined.room, b_joined.id), (room, b_id));
    assert!(b_joined.publishers.is_empty(), "{b_joined:?}");
    assert_eq!(b_joined.attendees, vec![Attendee { id: a_joined.id, display: Some("door-a".into()) }]);
    let joining = a_events.expect("joining of b", |e| matches!(e, VideoRoomEvent::Joining { .. })).await;
    assert_eq!(joining, VideoRoomEvent::Joining { room, id: b_id, display: Some("tablet-b".into()) });

    // The same id again is refused.
    let same_id = JoinPublisher { room, pin: pin.clone(), display: "copy".into(), id: Some(b_id) };
    assert_eq!(plugin_code("join with a taken id", c.join_publisher(&same_id).await), 436);

    // exists and listparticipants (no secret needed).
    assert!(c.exists(room).await.expect("exists"));
    assert!(!c.exists(room_id_from(room.wrapping_add(1))).await.expect("exists (other)"));
    let participants = c.list_participants(room).await.expect("listparticipants");
    let ids: BTreeSet<u64> = participants.iter().map(|p| p.id).collect();
    assert_eq!(ids, BTreeSet::from([a_joined.id, b_id]), "{participants:?}");
    assert!(participants.iter().all(|p| !p.publisher && p.talking.is_none()), "{participants:?}");

    // Nobody publishes: subscribing to A fails (no such feed), moderating a mid of B too (no such mid).
    let subscribe = JoinSubscriber {
        room,
        pin: pin.clone(),
        private_id: Some(a_joined.private_id),
        streams: vec![SubscribeStream { feed: a_joined.id, mid: None }],
    };
    assert_eq!(plugin_code("subscribe to a non-publisher", c.join_subscriber(&subscribe).await), 428);
    let moderate = Moderate { room, secret: secret.clone(), id: b_id, mid: "0".into(), mute: true };
    assert_eq!(plugin_code("moderate a missing mid", a.moderate(&moderate).await), 428);

    // Kicking needs the secret: missing (429), wrong (433), then right.
    let no_secret = Kick { room, secret: Secret::default(), id: b_id };
    assert_eq!(plugin_code("kick without secret", a.kick(&no_secret).await), 429);
    let wrong_secret = Kick { room, secret: Secret::new("wrong"), id: b_id };
    assert_eq!(plugin_code("kick with a wrong secret", a.kick(&wrong_secret).await), 433);
    a.kick(&Kick { room, secret: secret.clone(), id: b_id }).await.expect("kick b");
    let left = b_events.expect("b kicked", |e| matches!(e, VideoRoomEvent::LeavingOk { .. })).await;
    assert_eq!(left, VideoRoomEvent::LeavingOk { reason: Some("kicked".into()) });
    let kicked = a_events.expect("kicked b", |e| matches!(e, VideoRoomEvent::Kicked { .. })).await;
    assert_eq!(kicked, VideoRoomEvent::Kicked { room, id: b_id });
    let participants = c.list_participants(room).await.expect("listparticipants after kick");
    assert_eq!(participants.iter().map(|p| p.id).collect::<Vec<_>>(), vec![a_joined.id], "{participants:?}");

    // Destroying needs the secret too; the remaining participant is told.
    let wrong = Destroy { room, secret: Secret::new("wrong") };
    assert_eq!(plugin_code("destroy with a wrong secret", c.destroy(&wrong).await), 433);
    c.destroy(&Destroy { room, secret: secret.clone() }).await.expect("destroy");
    let destroyed = a_events.expect("destroyed", |e| matches!(e, VideoRoomEvent::Destroyed { .. })).await;
    assert_eq!(destroyed, VideoRoomEvent::Destroyed { room });
    assert!(!c.exists(room).await.expect("exists after destroy"));
    assert_eq!(plugin_code("list a destroyed room", c.list_participants(room).await), 426);

    // Everything that arrived on the three streams parsed.
    for seen in [&mut a_events, &mut b_events, &mut c_events] {
        seen.drain_and_check(Duration::from_millis(300)).await;
    }
    for handle in [&a, &b, &c] {
        handle.detach().await.expect("detach");
    }
    session.destroy().await.expect("destroy session");
    stack.check_health().expect("stack healthy");
    eprintln!("videoroom test ran in {:?}", started.elapsed());
}

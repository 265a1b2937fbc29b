//! Pure tests of the VideoRoom types: request bodies field by field (JSON types included), every event
//! parsed from the examples of the protocol reference (Janus 1.1.2), malformed input, redacted secrets.

use callbox_calling::Secret;
use serde_json::{json, Value};

use super::*;

fn offer() -> Jsep {
    Jsep::offer("v=0\r\n")
}

fn answer() -> Jsep {
    Jsep::answer("v=0\r\n")
}

fn parse(data: Value) -> VideoRoomEvent {
    VideoRoomEvent::parse(&data, None)
}

fn create() -> CreateRoom {
    CreateRoom {
        room: 4711,
        description: "call 4711".into(),
        secret: Secret::new("s3cr3t"),
        pin: Secret::new("1234"),
        admin_key: Secret::new("k3y"),
        publishers: 6,
        audio_codecs: "opus".into(),
        video_codecs: "vp8,h264".into(),
        audiolevel_event: true,
        audio_active_packets: 50,
        audio_level_average: 40,
        notify_joining: true,
        require_pvtid: true,
    }
}

// ---- ids ----

#[test]
fn room_ids_fit_in_53_bits_and_are_never_zero() {
    assert_eq!(room_id_from(0), 1);
    assert_eq!(room_id_from(1 << 53), 1);
    assert_eq!(room_id_from(u64::MAX), MAX_ID);
    assert_eq!(room_id_from(4711), 4711);
    assert_eq!(room_id_from((1 << 60) | 4711), 4711);
    assert_eq!(MAX_ID, 9_007_199_254_740_991);
    for r in [0u64, 1, 12345, u64::MAX, 1 << 53, (1 << 53) + 7] {
        let id = room_id_from(r);
        assert!((1..=MAX_ID).contains(&id), "{r} -> {id}");
    }
}

// ---- request bodies ----

#[test]
fn create_body_has_typed_fields() {
    let body = create().to_body();
    assert_eq!(body["request"], "create");
    assert!(body["room"].is_u64() && body["room"] == 4711, "{body}");
    assert_eq!(body["permanent"], json!(false));
    assert_eq!(body["is_private"], json!(true));
    assert_eq!(body["description"], "call 4711");
    assert!(body["secret"].is_string() && body["secret"] == "s3cr3t");
    assert!(body["pin"].is_string() && body["pin"] == "1234");
    assert_eq!(body["admin_key"], "k3y");
    assert!(body["publishers"].is_u64() && body["publishers"] == 6);
    assert_eq!(body["audiocodec"], "opus");
    assert_eq!(body["videocodec"], "vp8,h264");
    assert_eq!(body["audiolevel_event"], json!(true));
    assert!(body["audio_active_packets"].is_u64() && body["audio_active_packets"] == 50);
    assert!(body["audio_level_average"].is_u64() && body["audio_level_average"] == 40);
    assert_eq!(body["notify_joining"], json!(true));
    assert_eq!(body["require_pvtid"], json!(true));
    assert_eq!(body.as_object().map(|o| o.len()), Some(16), "{body}");
}

#[test]
fn create_body_leaves_out_empty_and_unused_fields() {
    let req = CreateRoom { room: 9, ..CreateRoom::default() };
    let body = req.to_body();
    for key in ["secret", "pin", "admin_key", "description", "audiocodec", "videocodec", "publishers"] {
        assert!(body.get(key).is_none(), "{key} in {body}");
    }
    // Janus reads the talk-detection parameters only with audiolevel_event.
    let req = CreateRoom { audiolevel_event: false, ..create() };
    let body = req.to_body();
    assert_eq!(body["audiolevel_event"], json!(false));
    assert!(body.get("audio_active_packets").is_none() && body.get("audio_level_average").is_none());
}

#[test]
fn join_publisher_body() {
    let req = JoinPublisher { room: 4711, pin: Secret::new("1234"), display: "door-a".into(), id: Some(1001) };
    assert_eq!(
        req.to_body(),
        json!({"request": "join", "ptype": "publisher", "room": 4711, "pin": "1234", "display": "door-a", "id": 1001})
    );
    let bare = JoinPublisher { room: 4711, ..JoinPublisher::default() };
    assert_eq!(bare.to_body(), json!({"request": "join", "ptype": "publisher", "room": 4711}));
}

#[test]
fn publish_and_renegotiate_bodies() {
    let req = Publish {
        renegotiate: false,
        descriptions: vec![("0".into(), "mic".into()), ("1".into(), CAMERA_DESCRIPTION.into())],
        audio_level_average: Some(40),
        audio_active_packets: Some(50),
    };
    let body = req.to_body();
    assert_eq!(body["request"], "publish");
    assert_eq!(
        body["descriptions"],
        json!([{"mid": "0", "description": "mic"}, {"mid": "1", "description": "camera"}])
    );
    assert!(body["audio_level_average"].is_u64() && body["audio_level_average"] == 40);
    assert!(body["audio_active_packets"].is_u64() && body["audio_active_packets"] == 50);

    let body = Publish { renegotiate: true, ..Publish::default() }.to_body();
    assert_eq!(body, json!({"request": "configure"}));
}

#[test]
fn configure_streams_and_simple_bodies() {
    let req = ConfigureStreams {
        streams: vec![StreamSend { mid: "0".into(), send: false }, StreamSend { mid: "1".into(), send: true }],
    };
    assert_eq!(
        req.to_body(),
        json!({"request": "configure", "streams": [{"mid": "0", "send": false}, {"mid": "1", "send": true}]})
    );
    let display = ConfigureDisplay { display: r#"{"id":"a","name":"","muted":true}"#.into() };
    assert_eq!(display.to_body(), json!({"request": "configure", "display": r#"{"id":"a","name":"","muted":true}"#}));
    assert_eq!(Unpublish.to_body(), json!({"request": "unpublish"}));
    assert_eq!(Leave.to_body(), json!({"request": "leave"}));
    assert_eq!(Start.to_body(), json!({"request": "start"}));
}

#[test]
fn join_subscriber_body() {
    let req = JoinSubscriber {
        room: 4711,
        pin: Secret::new("1234"),
        private_id: Some(3_735_928_559),
        streams: vec![SubscribeStream { feed: 1002, mid: None }, SubscribeStream { feed: 1003, mid: Some("0".into()) }],
    };
    let body = req.to_body();
    assert_eq!(
        body,
        json!({"request": "join", "ptype": "subscriber", "room": 4711, "pin": "1234", "private_id": 3_735_928_559u32,
               "streams": [{"feed": 1002}, {"feed": 1003, "mid": "0"}]})
    );
    assert!(body["private_id"].is_u64() && body["streams"][0]["feed"].is_u64());
    let bare = JoinSubscriber { room: 1, ..JoinSubscriber::default() };
    assert_eq!(bare.to_body(), json!({"request": "join", "ptype": "subscriber", "room": 1, "streams": []}));
}

#[test]
fn update_body() {
    let req = Update {
        subscribe: vec![SubscribeStream { feed: 1004, mid: None }],
        unsubscribe: vec![
            UnsubscribeStream { sub_mid: Some("1".into()), ..UnsubscribeStream::default() },
            UnsubscribeStream { feed: Some(1002), mid: Some("1".into()), sub_mid: None },
        ],
    };
    assert_eq!(
        req.to_body(),
        json!({"request": "update", "subscribe": [{"feed": 1004}],
               "unsubscribe": [{"sub_mid": "1"}, {"feed": 1002, "mid": "1"}]})
    );
    let only_unsub = Update {
        unsubscribe: vec![UnsubscribeStream { feed: Some(7), ..UnsubscribeStream::default() }],
        ..Update::default()
    };
    assert_eq!(only_unsub.to_body(), json!({"request": "update", "unsubscribe": [{"feed": 7}]}));
}

#[test]
fn moderation_and_room_bodies() {
    let secret = Secret::new("s3cr3t");
    assert_eq!(
        Kick { room: 4711, secret: secret.clone(), id: 1002 }.to_body(),
        json!({"request": "kick", "room": 4711, "secret": "s3cr3t", "id": 1002})
    );
    assert_eq!(
        Kick { room: 4711, secret: Secret::default(), id: 1002 }.to_body(),
        json!({"request": "kick", "room": 4711, "id": 1002})
    );
    assert_eq!(
        Moderate { room: 4711, secret: secret.clone(), id: 1002, mid: "0".into(), mute: true }.to_body(),
        json!({"request": "moderate", "room": 4711, "secret": "s3cr3t", "id": 1002, "mid": "0", "mute": true})
    );
    assert_eq!(
        Destroy { room: 4711, secret }.to_body(),
        json!({"request": "destroy", "room": 4711, "secret": "s3cr3t", "permanent": false})
    );
    assert_eq!(Exists { room: 4711 }.to_body(), json!({"request": "exists", "room": 4711}));
    assert_eq!(ListParticipants { room: 4711 }.to_body(), json!({"request": "listparticipants", "room": 4711}));
    // The largest id stays an exact JSON integer.
    assert_eq!(Exists { room: MAX_ID }.to_body()["room"].as_u64(), Some(MAX_ID));
}

#[test]
fn debug_output_never_shows_secrets_or_pins() {
    let outputs = [
        format!("{:?}", create()),
        format!("{:?}", JoinPublisher { room: 1, pin: Secret::new("1234"), display: "d".into(), id: None }),
        format!("{:?}", JoinSubscriber { room: 1, pin: Secret::new("1234"), ..JoinSubscriber::default() }),
        format!("{:?}", Kick { room: 1, secret: Secret::new("s3cr3t"), id: 2 }),
        format!("{:?}", Moderate { room: 1, secret: Secret::new("s3cr3t"), id: 2, mid: "0".into(), mute: true }),
        format!("{:?}", Destroy { room: 1, secret: Secret::new("s3cr3t") }),
    ];
    for out in outputs {
        assert!(!out.contains("s3cr3t") && !out.contains("1234"), "{out}");
        assert!(out.contains("redacted"), "{out}");
    }
}

// ---- events: the reference's examples ----

#[test]
fn created_and_destroyed() {
    assert_eq!(
        parse(json!({"videoroom": "created", "room": 4711, "permanent": false})),
        VideoRoomEvent::Created { room: 4711 }
    );
    assert_eq!(
        parse(json!({"videoroom": "destroyed", "room": 4711, "permanent": false})),
        VideoRoomEvent::Destroyed { room: 4711 }
    );
    assert_eq!(parse(json!({"videoroom": "destroyed", "room": 4711})), VideoRoomEvent::Destroyed { room: 4711 });
}

#[test]
fn joined_with_publishers_and_attendees() {
    let data = json!({"videoroom":"joined","room":4711,"description":"call 4711","id":1001,"private_id":3735928559u32,
     "publishers":[
       {"id":1002,"display":"tablet","audio_codec":"opus","video_codec":"vp8","talking":false,
        "streams":[
          {"type":"audio","mindex":0,"mid":"0","codec":"opus","fec":true,"talking":false},
          {"type":"video","mindex":1,"mid":"1","codec":"vp8","description":"camera"},
          {"type":"video","mindex":2,"mid":"2","disabled":true}]}],
     "attendees":[{"id":1003,"display":"phone"}]});
    let VideoRoomEvent::Joined(joined) = parse(data) else { panic!("not joined") };
    assert_eq!(joined.room, 4711);
    assert_eq!(joined.description.as_deref(), Some("call 4711"));
    assert_eq!(joined.id, 1001);
    assert_eq!(joined.private_id, 3_735_928_559);
    assert_eq!(joined.attendees, vec![Attendee { id: 1003, display: Some("phone".into()) }]);
    assert_eq!(joined.publishers.len(), 1);
    let p = &joined.publishers[0];
    assert_eq!((p.id, p.display.as_deref()), (1002, Some("tablet")));
    assert_eq!(
        p.streams,
        vec![
            PublisherStream {
                kind: StreamType::Audio,
                mindex: 0,
                mid: "0".into(),
                codec: Some("opus".into()),
                description: None,
                disabled: false,
                moderated: false,
            },
            PublisherStream {
                kind: StreamType::Video,
                mindex: 1,
                mid: "1".into(),
                codec: Some("vp8".into()),
                description: Some("camera".into()),
                disabled: false,
                moderated: false,
            },
            PublisherStream {
                kind: StreamType::Video,
                mindex: 2,
                mid: "2".into(),
                codec: None,
                description: None,
                disabled: true,
                moderated: false,
            },
        ]
    );
    assert!(!p.streams.iter().any(PublisherStream::is_screen_share));

    // An empty room without notify_joining: no lists at all.
    let VideoRoomEvent::Joined(joined) =
        parse(json!({"videoroom":"joined","room":1,"description":"Room 1","id":5,"private_id":7,"publishers":[]}))
    else {
        panic!("not joined")
    };
    assert!(joined.publishers.is_empty() && joined.attendees.is_empty());
}

#[test]
fn configured_carries_streams_and_answer() {
    let data = json!({"videoroom":"event","room":4711,"configured":"ok","audio_codec":"opus","video_codec":"h264",
     "streams":[{"type":"audio","mindex":0,"mid":"0","codec":"opus","description":"mic"},
                {"type":"video","mindex":1,"mid":"1","codec":"h264","h264_profile":"42e01f","description":"camera"}]});
    let VideoRoomEvent::Configured { streams, jsep } = VideoRoomEvent::parse(&data, Some(answer())) else {
        panic!("not configured")
    };
    assert_eq!(jsep, Some(answer()));
    assert_eq!(streams.len(), 2);
    assert_eq!(streams[1].codec.as_deref(), Some("h264"));
    assert_eq!(streams[0].description.as_deref(), Some("mic"));
    // Subscriber / SDP-less configure: no streams.
    assert_eq!(
        parse(json!({"videoroom":"event","room":4711,"configured":"ok"})),
        VideoRoomEvent::Configured { streams: vec![], jsep: None }
    );
}

#[test]
fn publishers_event_with_screen_share_and_moderated_stream() {
    let data = json!({"videoroom":"event","room":4711,"publishers":[{"id":1001,"display":"door-a","audio_codec":"opus",
      "video_codec":"h264",
      "streams":[{"type":"audio","mindex":0,"mid":"0","codec":"opus"},
                 {"type":"video","mindex":1,"mid":"1","codec":"h264","description":"camera","moderated":true},
                 {"type":"video","mindex":2,"mid":"2","codec":"h264","description":"screen"}]}]});
    let VideoRoomEvent::Publishers { room, publishers } = parse(data) else { panic!("not publishers") };
    assert_eq!(room, 4711);
    let streams = &publishers[0].streams;
    assert_eq!(streams.len(), 3);
    assert!(streams[1].moderated && !streams[1].is_screen_share());
    assert!(streams[2].is_screen_share());
    assert!(!streams[0].is_screen_share());
}

#[test]
fn unpublished_leaving_kicked_joining() {
    assert_eq!(parse(json!({"videoroom":"event","room":4711,"unpublished":"ok"})), VideoRoomEvent::UnpublishedOk);
    assert_eq!(
        parse(json!({"videoroom":"event","room":4711,"unpublished":1002})),
        VideoRoomEvent::Unpublished { room: 4711, id: 1002 }
    );
    assert_eq!(
        parse(json!({"videoroom":"event","room":4711,"leaving":"ok"})),
        VideoRoomEvent::LeavingOk { reason: None }
    );
    assert_eq!(
        parse(json!({"videoroom":"event","room":4711,"leaving":"ok","reason":"kicked"})),
        VideoRoomEvent::LeavingOk { reason: Some("kicked".into()) }
    );
    assert_eq!(
        parse(json!({"videoroom":"event","room":4711,"leaving":1003})),
        VideoRoomEvent::Leaving { room: 4711, id: 1003 }
    );
    assert_eq!(
        parse(json!({"videoroom":"event","room":4711,"kicked":1002})),
        VideoRoomEvent::Kicked { room: 4711, id: 1002 }
    );
    assert_eq!(
        parse(json!({"videoroom":"event","room":4711,"joining":{"id":1003,"display":"phone"}})),
        VideoRoomEvent::Joining { room: 4711, id: 1003, display: Some("phone".into()) }
    );
    assert_eq!(
        parse(json!({"videoroom":"event","room":4711,"joining":{"id":1003}})),
        VideoRoomEvent::Joining { room: 4711, id: 1003, display: None }
    );
}

#[test]
fn talking_moderation_display() {
    assert_eq!(
        parse(json!({"videoroom":"talking","room":4711,"id":1002,"mindex":0,"mid":"0","audio-level-dBov-avg":18.42})),
        VideoRoomEvent::Talking { room: 4711, id: 1002, mid: "0".into(), level_dbov: 18.42 }
    );
    assert_eq!(
        parse(
            json!({"videoroom":"stopped-talking","room":4711,"id":1002,"mindex":0,"mid":"0","audio-level-dBov-avg":60})
        ),
        VideoRoomEvent::StoppedTalking { room: 4711, id: 1002, mid: "0".into(), level_dbov: 60.0 }
    );
    assert_eq!(
        parse(json!({"videoroom":"event","room":4711,"id":1002,"mid":"0","moderation":"muted"})),
        VideoRoomEvent::Moderation { room: 4711, id: 1002, mid: "0".into(), muted: true }
    );
    assert_eq!(
        parse(json!({"videoroom":"event","room":4711,"id":1002,"mid":"0","moderation":"unmuted"})),
        VideoRoomEvent::Moderation { room: 4711, id: 1002, mid: "0".into(), muted: false }
    );
    assert_eq!(
        parse(json!({"videoroom":"event","id":1001,"display":"new"})),
        VideoRoomEvent::DisplayChanged { id: 1001, display: "new".into() }
    );
}

#[test]
fn subscriber_attached_updated_updating_started_left() {
    let data = json!({"videoroom":"attached","room":4711,"streams":[
      {"type":"audio","active":true,"mindex":0,"mid":"0","ready":false,"send":true,
       "feed_id":1002,"feed_display":"tablet","feed_mid":"0","codec":"opus"},
      {"type":"video","active":true,"mindex":1,"mid":"1","crossrefid":"slot-2","ready":false,"send":true,
       "feed_id":1003,"feed_display":"door-b","feed_mid":"1","feed_description":"camera","codec":"h264",
       "h264-profile":"42e01f"},
      {"type":"video","active":false,"mindex":2,"mid":"2","ready":false,"send":true},
      {"type":"data","active":true,"mindex":3,"mid":"3","sources":1,"source_ids":[1002]}]});
    let VideoRoomEvent::Attached { room, streams, jsep } = VideoRoomEvent::parse(&data, Some(offer())) else {
        panic!("not attached")
    };
    assert_eq!((room, jsep), (4711, Some(offer())));
    assert_eq!(
        streams[1],
        SubscriberStream {
            mindex: 1,
            mid: "1".into(),
            kind: StreamType::Video,
            active: true,
            feed_id: Some(1003),
            feed_mid: Some("1".into()),
            feed_display: Some("door-b".into()),
            feed_description: Some("camera".into()),
            codec: Some("h264".into()),
        }
    );
    assert_eq!(
        (streams[0].kind, streams[0].feed_id, streams[0].feed_description.as_deref()),
        (StreamType::Audio, Some(1002), None)
    );
    assert!(!streams[2].active && streams[2].feed_id.is_none());
    assert_eq!((streams[3].kind, streams[3].feed_id), (StreamType::Data, None));

    let data = json!({"videoroom":"updated","room":4711,"streams":[
      {"type":"audio","active":true,"mindex":0,"mid":"0","feed_id":1002,"feed_mid":"0","codec":"opus"}]});
    let VideoRoomEvent::Updated { room, streams, jsep } = VideoRoomEvent::parse(&data, Some(offer())) else {
        panic!("not updated")
    };
    assert_eq!((room, streams.len(), jsep), (4711, 1, Some(offer())));
    assert_eq!(
        parse(json!({"videoroom":"updated","room":4711})),
        VideoRoomEvent::Updated { room: 4711, streams: vec![], jsep: None }
    );
    assert_eq!(parse(json!({"videoroom":"updating","room":4711})), VideoRoomEvent::Updating { room: 4711 });
    assert_eq!(parse(json!({"videoroom":"event","room":4711,"started":"ok"})), VideoRoomEvent::Started);
    assert_eq!(parse(json!({"videoroom":"event","left":"ok"})), VideoRoomEvent::Left);
}

#[test]
fn sync_answers_and_errors() {
    assert_eq!(
        parse(json!({"videoroom":"success","room":4711,"exists":true})),
        VideoRoomEvent::Success { room: Some(4711), exists: Some(true) }
    );
    assert_eq!(
        parse(json!({"videoroom":"success","room":4711,"exists":false})),
        VideoRoomEvent::Success { room: Some(4711), exists: Some(false) }
    );
    assert_eq!(parse(json!({"videoroom":"success"})), VideoRoomEvent::Success { room: None, exists: None });
    assert_eq!(
        parse(json!({"videoroom":"participants","room":4711,"participants":[
            {"id":123,"display":"door","publisher":true,"talking":false},
            {"id":124,"publisher":false}]})),
        VideoRoomEvent::Participants {
            room: 4711,
            participants: vec![
                Participant { id: 123, display: Some("door".into()), publisher: true, talking: Some(false) },
                Participant { id: 124, display: None, publisher: false, talking: None },
            ]
        }
    );
    assert_eq!(
        parse(json!({"videoroom":"event","error_code":433,"error":"Unauthorized (wrong pin)"})),
        VideoRoomEvent::Error { code: 433, message: "Unauthorized (wrong pin)".into() }
    );
}

#[test]
fn handle_events_map_to_typed_events() {
    let plugin = HandleEvent::Plugin { data: json!({"videoroom":"destroyed","room":9}), jsep: None };
    assert_eq!(VideoRoomEvent::from_handle_event(plugin), VideoRoomEvent::Destroyed { room: 9 });
    let janus = [
        JanusEvent::WebrtcUp,
        JanusEvent::Hangup { reason: "Janus API".into() },
        JanusEvent::Media { mid: Some("0".into()), kind: "audio".into(), receiving: true },
        JanusEvent::SlowLink { mid: None, media: "video".into(), uplink: true, lost: 3 },
        JanusEvent::Detached,
    ];
    for e in janus {
        assert_eq!(VideoRoomEvent::from_handle_event(HandleEvent::Janus(e.clone())), VideoRoomEvent::Janus(e));
    }
    let other = VideoRoomEvent::from_handle_event(HandleEvent::Other(json!({"janus":"trickle","candidate":{}})));
    assert!(matches!(other, VideoRoomEvent::Unknown(ref s) if s.contains("trickle")), "{other:?}");
}

// ---- malformed input ----

fn assert_unknown(data: Value) {
    let event = parse(data.clone());
    assert!(matches!(event, VideoRoomEvent::Unknown(_)), "{data} gave {event:?}");
}

#[test]
fn malformed_input_is_unknown_not_a_panic() {
    for data in [
        json!(null),
        json!([1, 2]),
        json!("joined"),
        json!({}),
        json!({"videoroom": 5}),
        json!({"videoroom": "mystery", "room": 1}),
        json!({"videoroom": "event", "room": 1}),
        json!({"videoroom": "event", "room": 1, "foo": "bar"}),
        json!({"videoroom": "created"}),
        json!({"videoroom": "created", "room": "4711"}),
        json!({"videoroom": "created", "room": -1}),
        json!({"videoroom": "created", "room": 1.5}),
        json!({"videoroom": "joined", "room": 1, "private_id": 2}),
        json!({"videoroom": "joined", "room": 1, "id": "5", "private_id": 2}),
        json!({"videoroom": "joined", "room": 1, "id": 5, "private_id": 4_294_967_296u64}),
        json!({"videoroom": "joined", "room": 1, "id": 5, "private_id": 2, "publishers": {}}),
        json!({"videoroom": "joined", "room": 1, "id": 5, "private_id": 2, "publishers": [{"display": "x"}]}),
        json!({"videoroom": "joined", "room": 1, "id": 5, "private_id": 2, "attendees": [{"id": "x"}]}),
        json!({"videoroom": "event", "room": 1,
               "publishers": [{"id": 2, "streams": [{"type": "text", "mindex": 0, "mid": "0"}]}]}),
        json!({"videoroom": "event", "room": 1, "publishers": [{"id": 2, "streams": [{"type": "audio", "mid": "0"}]}]}),
        json!({"videoroom": "event", "room": 1,
               "publishers": [{"id": 2, "streams": [{"type": "audio", "mindex": 0, "mid": 0}]}]}),
        json!({"videoroom": "event", "publishers": []}),
        json!({"videoroom": "event", "room": 1, "unpublished": true}),
        json!({"videoroom": "event", "room": 1, "unpublished": "yes"}),
        json!({"videoroom": "event", "unpublished": 5}),
        json!({"videoroom": "event", "room": 1, "leaving": null}),
        json!({"videoroom": "event", "room": 1, "kicked": "x"}),
        json!({"videoroom": "event", "room": 1, "joining": {"display": "x"}}),
        json!({"videoroom": "event", "room": 1, "joining": 3}),
        json!({"videoroom": "event", "room": 1, "id": 2, "mid": "0", "moderation": "maybe"}),
        json!({"videoroom": "event", "room": 1, "id": 2, "moderation": "muted"}),
        json!({"videoroom": "event", "id": "2", "display": "x"}),
        json!({"videoroom": "event", "id": 2, "display": 5}),
        json!({"videoroom": "talking", "room": 1, "id": 2, "mid": "0"}),
        json!({"videoroom": "talking", "room": 1, "id": 2, "mid": "0", "audio-level-dBov-avg": "loud"}),
        json!({"videoroom": "stopped-talking", "room": 1, "mid": "0", "audio-level-dBov-avg": 3}),
        json!({"videoroom": "attached", "room": 1, "streams": [{"type": "audio", "mindex": 0}]}),
        json!({"videoroom": "attached", "room": 1, "streams": "none"}),
        json!({"videoroom": "updated", "room": 1,
               "streams": [{"type": "video", "mindex": 99999999999u64, "mid": "0"}]}),
        json!({"videoroom": "updating"}),
        json!({"videoroom": "success", "exists": "yes"}),
        json!({"videoroom": "participants", "room": 1, "participants": [{"display": "x"}]}),
        json!({"videoroom": "participants", "participants": []}),
    ] {
        assert_unknown(data);
    }
}

#[test]
fn unknown_descriptions_carry_no_values() {
    let data = json!({"videoroom": "mystery", "secret": "s3cr3t", "pin": "1234"});
    let VideoRoomEvent::Unknown(what) = parse(data) else { panic!("not unknown") };
    assert!(!what.contains("s3cr3t") && !what.contains("1234"), "{what}");
    let data = json!({"videoroom": "joined", "room": 1, "id": "s3cr3t", "private_id": 2});
    let VideoRoomEvent::Unknown(what) = parse(data) else { panic!("not unknown") };
    assert!(!what.contains("s3cr3t") && what.contains("'id'"), "{what}");
}

#[test]
fn error_code_wins_over_the_rest() {
    // Janus puts the error on `videoroom: "event"` data; a wrong-typed error text is still an error.
    assert_eq!(
        parse(json!({"videoroom":"event","error_code":428,"error":5})),
        VideoRoomEvent::Error { code: 428, message: String::new() }
    );
}

#[test]
fn event_names_are_short_and_content_free() {
    let event = VideoRoomEvent::Joining { room: 1, id: 2, display: Some("s3cr3t".into()) };
    assert_eq!(event.name(), "joining");
    assert_eq!(VideoRoomEvent::Unknown("x".into()).name(), "unknown");
}

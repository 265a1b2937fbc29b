use super::*;
use crate::calling::Identifier;
use crate::signaling::videoroom::PublisherStream;

const OWN: u64 = 1;

fn stream(kind: StreamType, mid: &str) -> PublisherStream {
    PublisherStream {
        kind,
        mindex: 0,
        mid: mid.into(),
        codec: Some("opus".into()),
        description: None,
        disabled: false,
        moderated: false,
    }
}

fn display(user: &str, muted: bool) -> String {
    publisher_display::PublisherDisplay { user: Identifier::user(user).expect("a valid user"), name: None, muted }
        .encode()
}

fn publisher(id: u64, muted: bool) -> Publisher {
    Publisher {
        id,
        display: Some(display(&format!("u{id}"), muted)),
        streams: vec![stream(StreamType::Audio, "0"), stream(StreamType::Video, "1")],
    }
}

fn listed(id: u64, muted: bool, publishing: bool) -> Participant {
    Participant { id, display: Some(display(&format!("u{id}"), muted)), publisher: publishing, talking: None }
}

/// The members and audio activity the signals tell, as (feed, joined/left/streams-with-audio-active).
fn summary(signals: &[GroupSignal]) -> Vec<String> {
    signals
        .iter()
        .map(|s| match s {
            GroupSignal::MemberJoined(m) => format!("{} joined", m.feed),
            GroupSignal::MemberLeft { feed, kicked } => format!("{feed} left{}", if *kicked { " kicked" } else { "" }),
            GroupSignal::MemberStreams { feed, streams } => {
                let audio = streams.iter().find(|s| s.kind == RoomStreamKind::Audio).map(|s| s.active);
                format!("{feed} streams {} audio {audio:?}", streams.len())
            }
            GroupSignal::MemberTalking { feed, talking } => format!("{feed} talking {talking}"),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn a_publisher_joins_with_its_streams_and_its_muted_display_makes_its_audio_inactive() {
    let mut r = Roster::new(OWN);
    assert_eq!(summary(&r.publisher_seen(&publisher(2, false))), ["2 joined", "2 streams 2 audio Some(true)"]);
    assert_eq!(summary(&r.publisher_seen(&publisher(3, true))), ["3 joined", "3 streams 2 audio Some(false)"]);
    assert!(r.publisher_seen(&publisher(OWN, false)).is_empty(), "our own feed is not a member");
}

#[test]
fn room_events_become_member_signals_and_our_own_are_skipped() {
    let mut r = Roster::new(OWN);
    r.publisher_seen(&publisher(2, false));
    let muted = VideoRoomEvent::DisplayChanged { id: 2, display: display("u2", true) };
    assert_eq!(summary(&r.on_event(&muted)), ["2 streams 2 audio Some(false)"]);
    let talking = VideoRoomEvent::Talking { room: 9, id: 2, mid: "0".into(), level_dbov: 20.0 };
    assert_eq!(summary(&r.on_event(&talking)), ["2 talking true"]);
    assert_eq!(summary(&r.on_event(&VideoRoomEvent::Unpublished { room: 9, id: 2 })), ["2 streams 0 audio None"]);
    assert_eq!(summary(&r.on_event(&VideoRoomEvent::Kicked { room: 9, id: 2 })), ["2 left kicked"]);
    assert_eq!(summary(&r.on_event(&VideoRoomEvent::Leaving { room: 9, id: 3 })), ["3 left"]);
    let joining = VideoRoomEvent::Joining { room: 9, id: 4, display: Some("Browser".into()) };
    assert_eq!(summary(&r.on_event(&joining)), ["4 joined"]);
    for own in [
        VideoRoomEvent::Leaving { room: 9, id: OWN },
        VideoRoomEvent::DisplayChanged { id: OWN, display: display("me", true) },
        VideoRoomEvent::Talking { room: 9, id: OWN, mid: "0".into(), level_dbov: 20.0 },
    ] {
        assert!(r.on_event(&own).is_empty(), "{own:?}");
    }
    assert!(r.on_event(&VideoRoomEvent::UnpublishedOk).is_empty());
    // A display change of someone unknown says nothing.
    assert!(r.on_event(&VideoRoomEvent::DisplayChanged { id: 8, display: "x".into() }).is_empty());
}

#[test]
fn janus_reclaim_room_events_sent_while_the_socket_was_down_are_lost_the_participant_list_stands_in() {
    // Janus does not queue a session's events while its WebSocket is gone: after `claim`, members that left,
    // newcomers, mute changes and unpublishing are read from `listparticipants`.
    let mut r = Roster::new(OWN);
    r.publisher_seen(&publisher(2, false));
    r.publisher_seen(&publisher(3, false));
    r.publisher_seen(&publisher(4, false));
    let now_there = [listed(OWN, false, true), listed(3, true, true), listed(4, false, false), listed(5, false, true)];
    assert_eq!(
        summary(&r.resync(&now_there)),
        ["2 left", "3 streams 2 audio Some(false)", "4 streams 0 audio None", "5 joined"]
    );
    // Nothing changed since: the same list tells the same streams again and nobody joins or leaves twice.
    assert_eq!(
        summary(&r.resync(&now_there)),
        ["3 streams 2 audio Some(false)", "4 streams 0 audio None", "5 streams 0 audio None"]
    );
}

#[test]
fn the_roster_is_bounded_at_max_members() {
    let mut r = Roster::new(OWN);
    for id in 0..MAX_MEMBERS as u64 {
        assert!(!r.publisher_seen(&publisher(100 + id, false)).is_empty());
    }
    assert!(r.publisher_seen(&publisher(999, false)).is_empty(), "one too many");
    assert!(r.resync(&[]).len() == MAX_MEMBERS, "everyone left");
    let many: Vec<Participant> = (0..MAX_MEMBERS as u64 + 3).map(|id| listed(200 + id, false, true)).collect();
    let joined = r.resync(&many).iter().filter(|s| matches!(s, GroupSignal::MemberJoined(_))).count();
    assert_eq!(joined, MAX_MEMBERS);
}

#[test]
fn members_are_read_from_their_display() {
    let m = member_of(7, Some(r#"{"id":"alice","name":"Front door"}"#));
    assert_eq!(m.identifier, Identifier::user("alice").ok());
    assert_eq!(m.display_name.as_deref(), Some("Front door"));
    let guest = member_of(8, Some("Browser"));
    assert_eq!(guest.identifier, None);
    assert_eq!(guest.display_name.as_deref(), Some("Browser"));
    let odd = member_of(9, Some(r#"{"id":"not a valid id!"}"#));
    assert_eq!(odd.identifier, None, "an unusable id is a guest");
    assert_eq!(member_of(10, None).display_name, None);
    assert!(!display_muted(Some("a browser")), "a guest's plain display says nothing");
}

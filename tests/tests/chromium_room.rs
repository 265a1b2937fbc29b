//! A foreign WebRTC client in a callbox videoroom: two headless Chromium instances on the janus.js page
//! (`tests/chromium/`, driven by `callbox_tests::ChromiumPage`) join a PIN room that the test creates through
//! the typed VideoRoom signaling (`callbox::signaling::videoroom`) on the real Janus of a test stack. Each decodes
//! the other's video (frames rising, 4:3 frames of colour bars) and hears the other's tone; one leaves and the other
//! sees its feed go. Asserts on what the pages and Janus report, never on elapsed time.

mod common;

use std::time::{Duration, Instant};

use callbox::calling::Secret;
use callbox::signaling::videoroom::{room_id_from, CreateRoom, Destroy, VideoRoomHandle};
use callbox_tests::{ChromiumOptions, ChromiumPage, PageMediaKind, PagePhase, Stack, StackOptions};

/// Bound on each wait for a browser: a cold Chromium start on a loaded 2-core machine is slow; only there so
/// that a broken test fails instead of hanging.
const BROWSER_WAIT: Duration = Duration::from_secs(90);

/// Each channel of a probed pixel within this of the colour bars (VP8 at 320x240 keeps them within a few steps).
const BARS_TOLERANCE: u8 = 40;

fn must<T>(who: &str, result: Result<T, callbox_tests::ChromiumError>) -> T {
    result.unwrap_or_else(|e| panic!("{who}: {e}"))
}

/// `who`'s page decodes `other`'s video and hears its tone, with the facts checked on the later snapshot.
async fn assert_sees_and_hears(page: &ChromiumPage, who: &str, other: &str) {
    let flow = must(who, page.wait_media_from(other, BROWSER_WAIT).await);
    let (before, after) = (&flow.before, &flow.after);
    let video = flow.video().expect("video in the later snapshot");
    let first_frames = before.video_from(other).and_then(|v| v.frames_decoded).unwrap_or(0);
    eprintln!("{who} from {other}: {}", after.summary());
    assert!(video.frames_decoded.unwrap_or(0) > first_frames, "{who}: frames decoded did not rise: {video:?}");
    // 320x240 as sent; WebRTC's CPU adaptation may scale it down on a loaded machine, keeping 4:3.
    let (width, height) = (video.frame_width.unwrap_or(0), video.frame_height.unwrap_or(0));
    assert!((80..=320).contains(&width) && width * 3 == height * 4, "{who}: frame size of {other}: {width}x{height}");
    assert_eq!(video.codec.as_deref(), Some("vp8"), "{who}: {video:?}");

    // Audio: packets and samples rise (wait_media_from), and the tone makes the energy rise too.
    let energy = |s: &callbox_tests::PageStats| s.audio_from(other).and_then(|a| a.total_audio_energy).unwrap_or(0.0);
    let audio = flow.audio().expect("audio in the later snapshot");
    assert_eq!(audio.codec.as_deref(), Some("opus"), "{who}: {audio:?}");
    let energy_then = energy(after);
    let louder = must(
        who,
        page.wait_until(&format!("{other}'s audio energy rising past {energy_then}"), BROWSER_WAIT, |s| {
            energy(s) > energy_then
        })
        .await,
    );
    assert!(louder.audio_from(other).and_then(|a| a.audio_level).unwrap_or(0.0) > 0.0, "{who}: {}", louder.summary());

    // The picture is the other page's colour bars (the probe reads the playing <video>).
    let bars = must(
        who,
        page.wait_until(&format!("showing {other}'s colour bars"), BROWSER_WAIT, |s| {
            s.probe_from(other).is_some_and(|p| p.shows_colour_bars(BARS_TOLERANCE))
        })
        .await,
    );
    eprintln!("{who} shows {other}'s bars: {:?}", bars.probe_from(other).map(|p| &p.row));

    // Media stays on 127.0.0.1 (the namespace has nothing else; this checks what ICE selected).
    assert!(after.ice_on_loopback(), "{who}: selected pairs {:?} / {:?}", after.publisher_path, after.subscriber_path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chromium_pages_see_and_hear_each_other_in_a_pin_room_and_see_one_leave() {
    callbox_tests::init_logging();
    let started = Instant::now();
    let stack = Stack::start(StackOptions::default()).await.expect("stack");

    // The room: created through the typed VideoRoom signaling, with a PIN and a secret, as a group call's owner does.
    let (session, _connection) = stack.janus_session().await.expect("Janus session");
    let (owner, _owner_events) = VideoRoomHandle::attach(&session).await.expect("attach");
    let room = room_id_from(rand::random());
    let pin = Secret::new(format!("{:06}", rand::random::<u32>() % 1_000_000));
    let secret = Secret::new(format!("secret-{}", rand::random::<u64>()));
    let create = CreateRoom {
        room,
        description: "browser interop".into(),
        secret: secret.clone(),
        pin: pin.clone(),
        admin_key: stack.room_admin_key().clone(),
        publishers: 4,
        audio_codecs: "opus".into(),
        video_codecs: "vp8".into(),
        audiolevel_event: false,
        audio_active_packets: 0,
        audio_level_average: 0,
        notify_joining: false,
        require_pvtid: true,
    };
    assert_eq!(owner.create_room(&create).await.expect("create room"), room);

    let alice = must("alice", ChromiumPage::start(ChromiumOptions::for_stack(&stack, room, &pin, "alice")));
    let bob = must("bob", ChromiumPage::start(ChromiumOptions::for_stack(&stack, room, &pin, "bob")));

    // Both publish VP8 320x240 and Opus.
    for page in [&alice, &bob] {
        let s = must(page.name(), page.wait_published(BROWSER_WAIT).await);
        let video = s.outbound(PageMediaKind::Video).expect("published video");
        assert!(video.frames_encoded.unwrap_or(0) > 0, "{}: {video:?}", page.name());
        assert!(
            s.outbound(PageMediaKind::Audio).is_some_and(|a| a.packets_sent > 0),
            "{}: {:?}",
            page.name(),
            s.outbound
        );
    }

    // Janus lists both as publishers under their displays.
    let participants = owner.list_participants(room).await.expect("listparticipants");
    let mut publishing: Vec<&str> =
        participants.iter().filter(|p| p.publisher).filter_map(|p| p.display.as_deref()).collect();
    publishing.sort_unstable();
    assert_eq!(publishing, ["alice", "bob"], "{participants:?}");

    // Each decodes the other's video and hears the other's tone.
    tokio::join!(assert_sees_and_hears(&alice, "alice", "bob"), assert_sees_and_hears(&bob, "bob", "alice"));

    // Bob leaves; Alice sees his feed go (the room's leaving event, the subscriber's streams inactive), and
    // Janus no longer lists him.
    let bob_id = bob.latest().and_then(|s| s.my_id).expect("bob's publisher id");
    assert!(alice.latest().is_some_and(|s| s.publisher("bob").is_some_and(|p| p.id == bob_id)));
    let left = must("bob", bob.leave(BROWSER_WAIT).await);
    assert_eq!(left.phase, PagePhase::Left);
    // Leaving closed its PeerConnections: nothing is sent or received any more.
    assert!(!left.publisher_up && left.outbound.is_empty() && left.inbound.is_empty(), "{}", left.summary());
    let gone = must("alice", alice.wait_feed_gone("bob", BROWSER_WAIT).await);
    assert!(gone.video_from("bob").is_none() && gone.audio_from("bob").is_none(), "{}", gone.summary());
    assert!(gone.publishers.is_empty(), "{}", gone.summary());
    let participants = owner.list_participants(room).await.expect("listparticipants after bob left");
    let displays: Vec<Option<&str>> = participants.iter().map(|p| p.display.as_deref()).collect();
    assert_eq!(displays, [Some("alice")], "{participants:?}");
    bob.stop_async().await;

    // Alice is still fine on her own.
    must("alice", alice.check());
    let alone = must("alice", alice.leave(BROWSER_WAIT).await);
    assert_eq!(alone.phase, PagePhase::Left);
    alice.stop_async().await;

    owner.destroy(&Destroy { room, secret }).await.expect("destroy room");
    session.destroy().await.expect("destroy session");
    stack.check_health().expect("stack healthy");
    eprintln!("chromium_room test ran in {:?}", started.elapsed());
}

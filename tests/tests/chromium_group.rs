//! A foreign client in a callbox group call: three appliances in a room on the real local stack, and a headless
//! Chromium on janus.js (`callbox_tests::ChromiumPage`) joining it as a guest with the call's room and PIN
//! (`Call::guest_access`), publishing its camera and a second video described as a screen share. Each appliance
//! sees the browser as a participant, decodes its camera, lists its screen share in `screen_sharing_streams`; on
//! the door's screen the share takes the large tile and shows the browser's colour bars. The browser decodes every
//! appliance (its WebRTC statistics). When it leaves, the appliances see it go.

mod common;

use std::time::Duration;

use callbox::calling::MediaKind;
use callbox::calling::{CallState, ParticipantState, ScalingMode};
use callbox::client::{Call, RemoteParticipant, Screen};
use callbox::display::{FramebufferFormat, MemoryFramebuffer};
use callbox::media::VideoCodec;
use callbox_tests::{ChromiumOptions, ChromiumPage, Stack, StackOptions};
use common::*;

/// Bound on each wait for the browser (a cold Chromium start on a loaded 2-core machine is slow).
const BROWSER_WAIT: Duration = Duration::from_secs(90);
const GUEST: &str = "Browser guest";

fn guest_at(call: &Call) -> Option<RemoteParticipant> {
    call.remote_participants()
        .into_iter()
        .find(|p| p.display_name().as_deref() == Some(GUEST) && p.state() != ParticipantState::Disconnected)
}

/// Distinct luma levels across the middle row of a luma picture, quantised (colour bars give 6 or more).
fn distinct_levels(frame: &callbox::frame::VideoFrame) -> usize {
    let (w, h) = (frame.width as usize, frame.height as usize);
    if w < 16 || h == 0 || frame.data.len() < w * h {
        return 0;
    }
    let row = &frame.data[(h / 2) * w..(h / 2) * w + w];
    let mut levels: Vec<u8> = (0..16).map(|i| row[(2 * i + 1) * w / 32] / 24).collect();
    levels.sort_unstable();
    levels.dedup();
    levels.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_browser_joins_the_group_call_shares_its_screen_and_everyone_decodes_everyone() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    // VP8 first: the room's codec, which every browser decodes.
    let config = || prefer(VideoCodec::Vp8, client_config(&stack));
    let door = appliance_with(&stack, "cg-door", config()).await;
    let a = appliance_with(&stack, "cg-a", config()).await;
    let b = appliance_with(&stack, "cg-b", config()).await;
    let (mut a_events, mut b_events) = (a.events(), b.events());
    let call = door.call(&[user("cg-a"), user("cg-b")]).expect("group call placed");
    let a_call = next_incoming(&a, &mut a_events).await.accept().await.expect("a accepts");
    let b_call = next_incoming(&b, &mut b_events).await.accept().await.expect("b accepts");
    let calls = [(&call, "door"), (&a_call, "a"), (&b_call, "b")];
    for (c, who) in calls {
        eventually(&format!("{who} is connected with two others"), || {
            c.state() == CallState::Connected
                && c.remote_participants().iter().filter(|p| p.state() == ParticipantState::Connected).count() == 2
        })
        .await;
    }

    // The browser joins as a guest with what an invitation carries.
    let access = call.guest_access().expect("the door is in its room");
    let mut options = ChromiumOptions::for_stack(&stack, access.room, &access.pin, GUEST);
    options.screen_share = true;
    let page = ChromiumPage::start(options).expect("chromium starts");
    page.wait_published(BROWSER_WAIT).await.unwrap_or_else(|e| panic!("browser: {e}"));

    // Every appliance: the guest is a connected participant with a camera and a screen share, both decoded.
    for (c, who) in calls {
        let guest = || guest_at(c);
        eventually(&format!("{who} sees the browser connected"), || {
            guest().is_some_and(|g| g.state() == ParticipantState::Connected)
        })
        .await;
        let g = guest().expect("guest");
        assert!(g.identifier().is_some_and(|i| i.as_str().starts_with("guest-")), "{:?}", g.identifier());
        eventually(&format!("{who} lists the browser's camera and screen share"), || {
            g.video_streams().iter().any(|s| s.is_available())
                && g.screen_sharing_streams().iter().any(|s| s.is_available())
        })
        .await;
        eventually(&format!("{who} decodes the browser's camera and screen share"), || {
            g.video_streams().iter().chain(g.screen_sharing_streams().iter()).all(|s| s.latest_frame().is_some())
        })
        .await;
        eventually(&format!("{who} decodes four videos and receives three voices, each in its own stream"), || {
            let streams = c.received_streams();
            distinct_mids(&streams, MediaKind::Video, true) >= 4
                && distinct_mids(&streams, MediaKind::Audio, false) >= 3
        })
        .await;
    }

    // The door's screen: every camera in a tile, the share in the large one, showing the browser's colour bars.
    let screen = Screen::new(&door, Box::new(MemoryFramebuffer::new(800, 480, FramebufferFormat::Rgb565)), 15);
    let mut renderers = Vec::new();
    let mut share = None;
    for p in call.remote_participants().into_iter().filter(|p| p.state() == ParticipantState::Connected) {
        for s in p.video_streams() {
            renderers.push(s.render(&screen, ScalingMode::Fit).expect("render camera"));
        }
        for s in p.screen_sharing_streams() {
            share = Some(s.render(&screen, ScalingMode::Fit).expect("render share"));
        }
    }
    let share = share.expect("a screen share to render");
    eventually("the share is laid out larger than every camera tile", || {
        let area = |r: callbox::display::Rect| u64::from(r.width) * u64::from(r.height);
        share.target().is_some_and(|big| {
            renderers.iter().all(|r| r.target().is_some_and(|t| area(t) * 4 <= area(big))) && big.width >= 400
        })
    })
    .await;
    eventually("the large tile shows the browser's colour bars", || {
        share.target().and_then(|rect| screen.capture_luma(rect)).is_some_and(|f| distinct_levels(&f) >= 6)
    })
    .await;

    // The browser decodes every appliance.
    for who in ["cg-door", "cg-a", "cg-b"] {
        let flow = page.wait_media_from(who, BROWSER_WAIT).await.unwrap_or_else(|e| panic!("browser: {e}"));
        let video = flow.video().expect("video");
        assert!(video.frames_decoded.unwrap_or(0) > 0, "browser from {who}: {video:?}");
    }

    // The browser leaves: every appliance sees it go; the call goes on.
    page.leave(BROWSER_WAIT).await.unwrap_or_else(|e| panic!("browser leave: {e}"));
    page.stop();
    for (c, who) in calls {
        eventually(&format!("{who} sees the browser gone"), || guest_at(c).is_none()).await;
        assert_eq!(c.state(), CallState::Connected, "{who}");
    }
    drop(renderers);
    call.hang_up().await.expect("hang up");
    for client in [&door, &a, &b] {
        client.shutdown().await;
    }
}

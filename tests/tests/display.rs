//! The far end's video on the appliance's screen: a call between two appliances, the monitor renders the front
//! door's stream into a tile of an in-memory framebuffer; the test pattern's frame counter is read back from the
//! composed tile and advances; pause freezes it, resume moves it on; the renderer ends with the call.

mod common;

use callbox::calling::{CallState, Event, ScalingMode};
use callbox::client::{PreviewRenderer, Screen};
use callbox::devices::video::VideoRequest;
use callbox::display::{FramebufferFormat, MemoryFramebuffer};
use callbox::frame::{read_frame_counter, VideoFrame};
use callbox_tests::{Stack, StackOptions};
use common::*;
use std::time::Duration;

/// A frame's luma resized to `w`x`h` by nearest neighbour (chroma neutral).
fn rescale_luma(f: &VideoFrame, w: u32, h: u32) -> VideoFrame {
    let y = f.y_plane().unwrap_or_default();
    let mut data = vec![128u8; VideoFrame::i420_len(w, h)];
    for row in 0..h {
        for col in 0..w {
            let (sx, sy) = (col * f.width / w, row * f.height / h);
            data[(row * w + col) as usize] = y.get((sy * f.width + sx) as usize).copied().unwrap_or(0);
        }
    }
    VideoFrame { width: w, height: h, data: data.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_far_end_appears_in_its_tile_and_pause_freezes_it() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let a = appliance(&stack, "door-d").await;
    let b = appliance(&stack, "monitor-d").await;
    let mut b_events = b.events();
    let call = a.call(&[user("monitor-d")]).expect("call");
    let b_call = next_incoming(&b, &mut b_events).await.accept().await.expect("accept");
    let mut a_events = call.events();
    wait_state(&call, &mut a_events, CallState::Connected).await;

    let screen = Screen::new(&b, Box::new(MemoryFramebuffer::new(800, 480, FramebufferFormat::Rgb565)), 15);
    let door = b_call.remote_participants().remove(0);
    eventually("the door's video is available", || door.video_streams().first().is_some_and(|s| s.is_available()))
        .await;
    let stream = door.video_streams().remove(0);
    let mut renderer_events = b_call.events();
    let renderer = stream.render(&screen, ScalingMode::Stretch).expect("render");
    assert_eq!(stream.active_renderers(), vec![renderer.id()]);
    assert_eq!(renderer.scaling_mode(), Some(ScalingMode::Stretch));
    eventually("the renderer draws", || renderer.is_rendering()).await;
    eventually("the tile is laid out", || renderer.target().is_some()).await;
    let tile = renderer.target().expect("tile");
    assert!(tile.width > 400 && tile.height > 300, "one participant gets most of the screen: {tile:?}");
    let counter = || screen.capture_luma(tile).as_ref().and_then(read_frame_counter);

    // The far end's pattern is in the tile, and its frame counter advances across snapshots.
    eventually("the tile shows the door's test pattern", || counter().is_some()).await;
    let first = counter().expect("counter");
    eventually("the tile's frame counter advances", || counter().is_some_and(|c| c > first)).await;
    let png = stack.dir().join("monitor-screen.png");
    screen.snapshot_png(&png).expect("snapshot");
    assert!(std::fs::metadata(&png).expect("png written").len() > 1000);

    // Pause: the picture stays as it was while frames keep arriving; resume: it moves on.
    renderer.pause().expect("pause");
    assert!(renderer.is_paused() && !renderer.is_rendering());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let frozen = counter().expect("a paused tile keeps its picture");
    let decoded = b_call.media_stats().map(|s| s.video_frames_decoded).unwrap_or(0);
    eventually("frames keep arriving while paused", || {
        b_call.media_stats().is_some_and(|s| s.video_frames_decoded > decoded + 5)
    })
    .await;
    assert_eq!(counter(), Some(frozen), "paused tile changed");
    renderer.resume().expect("resume");
    eventually("the resumed tile moves on", || counter().is_some_and(|c| c > frozen)).await;
    // The local preview: the monitor's own camera picture-in-picture (the camera its call also sends).
    let manager = b.device_manager();
    let request = VideoRequest { width: 320, height: 240, fps: 15, ..VideoRequest::default() };
    let preview = PreviewRenderer::start(&screen, &manager, None, request, ScalingMode::Fit).expect("preview");
    assert_eq!(preview.camera_id().as_deref(), Some("sim:pattern"));
    eventually("the preview renders", || preview.is_rendering()).await;
    eventually("the preview tile is laid out", || preview.target().is_some()).await;
    let pip = preview.target().expect("pip");
    assert!(pip.width < tile.width / 2, "picture-in-picture is small: {pip:?} vs {tile:?}");
    // The picture-in-picture scale is not a whole fraction of the camera's: bring the tile back to the
    // camera's size (nearest neighbour) before reading the counter's blocks.
    let pip_counter =
        || screen.capture_luma(pip).map(|f| rescale_luma(&f, 320, 240)).as_ref().and_then(read_frame_counter);
    eventually("the preview shows the monitor's own pattern", || pip_counter().is_some()).await;
    let own = pip_counter().expect("own counter");
    eventually("the preview moves", || pip_counter().is_some_and(|c| c > own)).await;
    preview.set_scaling_mode(ScalingMode::Crop);
    assert_eq!(preview.scaling_mode(), Some(ScalingMode::Crop));
    preview.stop();
    eventually("the preview's tile is gone", || {
        let _ = screen.redraw();
        screen.tile_of_preview().is_none()
    })
    .await;

    renderer.set_scaling_mode(ScalingMode::Fit).expect("mode");
    assert_eq!(renderer.scaling_mode(), Some(ScalingMode::Fit));
    let (submitted, _dropped) = screen.frame_counts();
    assert!(submitted > 0);

    // The renderer's life was reported as events.
    let mut seen = Vec::new();
    while let Some(callbox::calling::Delivery::Event(e)) = renderer_events.try_next() {
        seen.push(e);
    }
    assert!(seen
        .iter()
        .any(|e| matches!(e, Event::ActiveRenderersUpdated { added, .. } if added == &vec![renderer.id()])));
    assert!(seen.iter().any(|e| matches!(e, Event::RendererIsRenderingChanged { is_rendering: false, .. })));
    assert!(seen.iter().any(|e| matches!(e, Event::RendererScalingModeChanged { scaling_mode: ScalingMode::Fit, .. })));

    // The call ends: the stream and its renderer go.
    call.hang_up().await.expect("hang up");
    eventually("the renderer is disposed with the stream", || stream.active_renderers().is_empty()).await;
    assert!(!renderer.is_rendering());
}

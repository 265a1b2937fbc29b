//! Device manager tests over the simulated backends: lists, defaults (persisted and falling back),
//! hot-plug events from the watcher, permission states (a node made unreadable is Denied for a
//! non-root process), shared camera feeds, and the `callbox devices` report.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::audio::sim::{SimAudioBackend, SimSource};
use super::video::sim::SimVideoBackend;
use super::video::VideoRequest;
use super::*;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cbx-devices-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn manager(prefs: DevicePreferences) -> (DeviceManager, SimAudioBackend, SimVideoBackend) {
    let audio = SimAudioBackend::new();
    let video = SimVideoBackend::new();
    let m = DeviceManager::new(Arc::new(audio.clone()), Arc::new(video.clone()), prefs);
    (m, audio, video)
}

fn ids(list: &[DeviceInfo]) -> Vec<&str> {
    list.iter().map(|d| d.id.as_str()).collect()
}

#[test]
fn lists_every_kind_with_formats_and_a_default_each() {
    let (m, _, _) = manager(DevicePreferences::in_memory());
    assert_eq!(ids(&m.cameras()), ["sim:pattern"]);
    assert_eq!(ids(&m.microphones()), ["sim:tone"]);
    assert_eq!(ids(&m.speakers()), ["sim:speaker"]);
    assert!(m.cameras()[0].formats.iter().any(|f| f.width == 640 && f.height == 480 && f.fps == 30));
    assert_eq!(m.default_device(DeviceKind::Camera).map(|d| d.id), Some("sim:pattern".into()));
    assert_eq!(m.permission(DeviceKind::Microphone, "sim:tone").unwrap(), Permission::Granted);
    assert!(matches!(m.permission(DeviceKind::Camera, "nope"), Err(DeviceError::NotFound { .. })));
    let report = report::describe(&m);
    assert!(report.contains("* sim:pattern") && report.contains("I420 640x480 @ 15/30 fps"), "{report}");
    assert!(report.contains("permission: granted"), "{report}");
}

#[test]
fn the_chosen_default_persists_and_falls_back_while_its_device_is_away() {
    let dir = temp_dir("defaults");
    let path = dir.join("callbox.toml");
    let (m, audio, _) = manager(DevicePreferences::load(&path).unwrap());
    audio.add_microphone("usb-mic", "USB microphone", SimSource::Silence);
    m.refresh();
    let mut events = m.events();
    m.set_default_device(DeviceKind::Microphone, "usb-mic").unwrap();
    assert_eq!(
        events.try_recv().unwrap(),
        DeviceEvent::DefaultDeviceChanged { kind: DeviceKind::Microphone, id: Some("usb-mic".into()) }
    );
    assert!(m.set_default_device(DeviceKind::Microphone, "no-such-mic").is_err());
    assert!(std::fs::read_to_string(&path).unwrap().contains("microphone = \"usb-mic\""));

    // A new manager (the next boot) reads the choice back.
    let (m2, audio2, _) = manager(DevicePreferences::load(&path).unwrap());
    assert_eq!(m2.default_device(DeviceKind::Microphone).map(|d| d.id), Some("sim:tone".into()));
    audio2.add_microphone("usb-mic", "USB microphone", SimSource::Silence);
    let mut events2 = m2.events();
    m2.refresh();
    assert_eq!(m2.default_device(DeviceKind::Microphone).map(|d| d.id), Some("usb-mic".into()));
    // Unplugged: the default falls back to what is there, and comes back with the device.
    audio2.remove_device("usb-mic");
    let changes = m2.refresh();
    assert!(changes
        .contains(&DeviceEvent::DefaultDeviceChanged { kind: DeviceKind::Microphone, id: Some("sim:tone".into()) }));
    audio2.add_microphone("usb-mic", "USB microphone", SimSource::Silence);
    m2.refresh();
    assert_eq!(m2.default_device(DeviceKind::Microphone).map(|d| d.id), Some("usb-mic".into()));
    let mut seen = Vec::new();
    while let Ok(e) = events2.try_recv() {
        seen.push(e);
    }
    assert!(seen
        .iter()
        .any(|e| matches!(e, DeviceEvent::MicrophonesUpdated { removed, .. } if ids(removed) == ["usb-mic"])));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hotplug_watcher_reports_cameras_and_sound_devices_coming_and_going() {
    let (m, audio, video) = manager(DevicePreferences::in_memory());
    let mut events = m.events();
    let _watcher = m.watch(Duration::from_millis(50));
    video.add_camera("usb-cam", "USB camera");
    audio.add_speaker("hdmi", "HDMI audio", Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let wanted = |seen: &Vec<DeviceEvent>| {
        seen.iter().any(|e| matches!(e, DeviceEvent::CamerasUpdated { added, removed } if ids(added) == ["usb-cam"] && removed.is_empty()))
            && seen.iter().any(|e| matches!(e, DeviceEvent::SpeakersUpdated { added, .. } if ids(added) == ["hdmi"]))
    };
    while !wanted(&seen) && Instant::now() < deadline {
        match events.try_recv() {
            Ok(e) => seen.push(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    assert!(wanted(&seen), "{seen:?}");
    video.remove_camera("usb-cam");
    let deadline = Instant::now() + Duration::from_secs(10);
    let removed = loop {
        match events.try_recv() {
            Ok(DeviceEvent::CamerasUpdated { added, removed }) if added.is_empty() => break removed,
            Ok(_) => {}
            Err(_) if Instant::now() > deadline => panic!("no removal event"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    assert_eq!(ids(&removed), ["usb-cam"]);
    assert_eq!(ids(&m.cameras()), ["sim:pattern"]);
}

/// Runs in a child process with a non-root uid (see the test below): prints the permission of the
/// camera whose node is `CBX_PERMISSION_NODE`.
#[test]
#[ignore = "helper of permission_of_an_unreadable_node_is_denied_for_a_non_root_process"]
fn permission_child() {
    let Ok(node) = std::env::var("CBX_PERMISSION_NODE") else { return };
    let video = SimVideoBackend::empty();
    video.add_camera_with_node("cam", "Camera", std::path::Path::new(&node));
    let m = DeviceManager::new(Arc::new(SimAudioBackend::empty()), Arc::new(video), DevicePreferences::in_memory());
    println!("PERMISSION={:?}", m.request_permission(DeviceKind::Camera, "cam").unwrap());
}

#[test]
fn permission_of_an_unreadable_node_is_denied_for_a_non_root_process() {
    let dir = temp_dir("perm");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let node = dir.join("video7");
    std::fs::write(&node, b"").unwrap();
    let run_as_nobody = |mode: u32| {
        std::fs::set_permissions(&node, std::fs::Permissions::from_mode(mode)).unwrap();
        let mut cmd = crate::test_support::target_command(std::env::current_exe().unwrap());
        cmd.args(["devices::tests::permission_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env("CBX_PERMISSION_NODE", &node);
        // SAFETY-free alternative to setuid in-process: the standard library drops privileges in the child.
        if unsafe { libc::geteuid() } == 0 {
            use std::os::unix::process::CommandExt;
            cmd.uid(65534).gid(65534);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "child failed: {text} {}", String::from_utf8_lossy(&out.stderr));
        text
    };
    let granted = run_as_nobody(0o666);
    assert!(granted.contains("PERMISSION=Granted"), "{granted}");
    let denied = run_as_nobody(0o600);
    assert!(
        denied.contains("PERMISSION=Denied") && denied.contains("video7") && denied.contains("mode 0600"),
        "{denied}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_camera_feed_is_shared_and_closes_with_its_last_subscriber() {
    let (m, _, video) = manager(DevicePreferences::in_memory());
    let request = VideoRequest { width: 320, height: 240, fps: 30, ..VideoRequest::default() };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut a = m.camera_feed(None, &request).unwrap();
        let b = m.camera_feed(Some("sim:pattern"), &request).unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), a.next()).await.unwrap().unwrap();
        assert_eq!((first.format.width, first.format.height), (320, 240));
        let later = tokio::time::timeout(Duration::from_secs(10), a.next()).await.unwrap().unwrap();
        assert!(later.sequence > first.sequence);
        assert!(b.latest().is_some(), "the second subscriber sees the same camera's frames");
        // A stalled camera is reopened and comes back.
        video.set_stalled("sim:pattern", true);
        let deadline = Instant::now() + Duration::from_secs(15);
        while !matches!(a.state(), FeedState::Reopening { .. }) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(matches!(a.state(), FeedState::Reopening { .. }), "{:?}", a.state());
        video.set_stalled("sim:pattern", false);
        let captured = a.frames_captured();
        tokio::time::timeout(Duration::from_secs(15), a.next()).await.unwrap().unwrap();
        assert!(a.frames_captured() > captured);
        assert_eq!(a.state(), FeedState::Live);
        assert!(a.reopens() >= 1);
        drop(a);
        assert!(b.is_running());
        let weak = b.downgrade();
        drop(b);
        assert!(weak.upgrade().is_none(), "the camera closes with its last subscriber");
    });
}

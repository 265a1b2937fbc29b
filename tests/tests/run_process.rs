//! `callbox run` as the process a board starts: a `callbox.toml` for the test stack (device key in a 0600 file,
//! the `sim` board profile, simulated devices), the binary started as a child, "ready" read from its log (with
//! GStreamer warmed up before it, issue 17); the
//! `c` key on its stdin presses the simulated doorbell and an in-process monitor rings; SIGTERM ends the call
//! (the monitor sees it hang up) and the process exits cleanly. Also: `callbox check-config` on that file; and with
//! the servers unreachable at boot for four times `WatchdogSec`, the process pings systemd's watchdog all along
//! (over `$NOTIFY_SOCKET`, as systemd would see it) and registers once they come.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use callbox::calling::{CallState, ParticipantState};
use callbox_tests::callbox_process::{callbox_binary, repo_dir, write_config};
use callbox_tests::{Stack, StackOptions};
use common::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// `callbox run --config CONFIG` with the repo's board profiles, `RUST_LOG=info` and `env`, its stdin piped and its
/// log (stderr) to read; killed if the test ends first.
fn callbox_run(config: &std::path::Path, env: &[(&str, &str)]) -> tokio::process::Child {
    let board_dir = repo_dir().join("board");
    tokio::process::Command::new(callbox_binary())
        .args(["run", "--config", config.to_str().expect("utf-8"), "--board-dir", board_dir.to_str().expect("utf-8")])
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("callbox run starts")
}

/// A `callbox.toml` for the appliance `gate` on `stack` calling `monitor-p`, with these Janus and token URLs: the
/// config file and the key file.
fn gate_config(stack: &Stack, janus: &str, token: &str) -> (PathBuf, PathBuf) {
    write_config(stack, "gate", janus, token, "monitor-p")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callbox_run_registers_calls_from_the_keyboard_and_stops_on_sigterm() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let monitor = appliance(&stack, "monitor-p").await;
    let mut monitor_events = monitor.events();

    let (config, key_file) = gate_config(&stack, &stack.janus_ws_url(), &stack.token_url());
    let board_dir = repo_dir().join("board");

    let check = std::process::Command::new(callbox_binary())
        .args(["check-config", config.to_str().expect("utf-8"), "--board-dir", board_dir.to_str().expect("utf-8")])
        .output()
        .expect("check-config runs");
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && report.contains("result: OK"), "{report}");

    let started = Instant::now();
    let mut child = callbox_run(&config, &[]);
    let mut log = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut early = Vec::new();
    let ready = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = log.next_line().await {
            if line.contains("appliance ready") {
                return Some(line);
            }
            early.push(line);
        }
        None
    })
    .await
    .ok()
    .flatten();
    let Some(ready) = ready else { panic!("callbox run did not report ready; its log:\n{}", early.join("\n")) };
    log::info!("callbox run: process start -> registered {} ms ({ready})", started.elapsed().as_millis());
    // Issue 17: GStreamer was readied at start, before "ready", so the first press does not wait for it.
    assert!(
        early.iter().any(|l| l.contains("warm-up: GStreamer ready")),
        "no start-up warm-up before ready; the log:\n{}",
        early.join("\n")
    );
    assert!(!ready.contains("gate-key") && !ready.contains("Bearer"), "no secrets in the log: {ready}");
    // Keep draining its log so the child never blocks on a full pipe.
    let drain = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Ok(Some(line)) = log.next_line().await {
            lines.push(line);
        }
        lines
    });

    // The doorbell, from the keyboard.
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"c\n").await.expect("key");
    stdin.flush().await.expect("flush");
    let incoming = next_incoming(&monitor, &mut monitor_events).await;
    assert_eq!(incoming.from(), &user("gate"));
    let call = incoming.accept().await.expect("accept");
    let mut call_events = call.events();
    wait_state(&call, &mut call_events, CallState::Connected).await;
    assert_video_advances(&call, "monitor").await;

    // SIGTERM: the gate hangs up, un-registers and exits 0.
    let pid = child.id().expect("pid");
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let status = tokio::time::timeout(WAIT, child.wait()).await.expect("exits after SIGTERM").expect("status");
    assert!(status.success(), "callbox run exited with {status}");
    wait_state(&call, &mut call_events, CallState::Disconnected).await;
    let gate = call.remote_participants().remove(0);
    assert_eq!(gate.state(), ParticipantState::Disconnected);
    let lines = tokio::time::timeout(Duration::from_secs(5), drain).await.expect("log ends").expect("log");
    assert!(lines.iter().any(|l| l.contains("shutting down")), "{lines:?}");
    let key = std::fs::read_to_string(&key_file).expect("key");
    assert!(!lines.iter().any(|l| l.contains(key.trim())), "the device key reached the log");
    monitor.shutdown().await;
}

/// What `callbox run` told systemd over `$NOTIFY_SOCKET` within `window`.
async fn notifications(sock: &tokio::net::UnixDatagram, window: Duration) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    let end = tokio::time::Instant::now() + window;
    while let Ok(Ok(n)) = tokio::time::timeout_at(end, sock.recv(&mut buf)).await {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_watchdog_is_fed_while_the_servers_are_away_at_boot_and_after_they_come() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    // The servers, behind proxies held closed: unreachable at boot.
    let janus = callbox_tests::CuttableProxy::start(stack.janus_addr()).await.expect("proxy");
    let token = callbox_tests::CuttableProxy::start(stack.token_addr()).await.expect("proxy");
    janus.hold_closed(true);
    token.hold_closed(true);
    let (config, _) = gate_config(&stack, &janus.ws_url(), &format!("http://{}/v1/token", token.addr()));
    let notify_path = stack.dir().join("notify.sock");
    let sock = tokio::net::UnixDatagram::bind(&notify_path).expect("notify socket");
    // WatchdogSec=1: pings every 500 ms.
    let notify = notify_path.to_str().expect("utf-8");
    let mut child = callbox_run(&config, &[("NOTIFY_SOCKET", notify), ("WATCHDOG_USEC", "1000000")]);
    let mut log = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let drain = tokio::spawn(async move {
        let mut ready_tx = Some(ready_tx);
        let mut lines = Vec::new();
        while let Ok(Some(line)) = log.next_line().await {
            if line.contains("appliance ready") {
                if let Some(tx) = ready_tx.take() {
                    let _ = tx.send(());
                }
            }
            lines.push(line);
        }
        lines
    });

    // Four times WatchdogSec without the servers: pinged all along, so systemd would not restart it.
    let away = notifications(&sock, Duration::from_secs(4)).await;
    let pings = away.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(away.iter().any(|m| m == "READY=1"), "{away:?}");
    assert!(away.iter().any(|m| m.starts_with("STATUS=waiting for the servers")), "{away:?}");
    assert!(pings >= 5, "{pings} watchdog pings in 4 s while the servers were away: {away:?}");

    // The servers come: it registers, and the pings go on (now only while its loops make progress).
    janus.hold_closed(false);
    token.hold_closed(false);
    tokio::time::timeout(WAIT, ready_rx).await.expect("registers once the servers are back").expect("log");
    let after = notifications(&sock, Duration::from_secs(2)).await;
    assert!(after.iter().filter(|m| *m == "WATCHDOG=1").count() >= 2, "{after:?}");

    let pid = child.id().expect("pid");
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let status = tokio::time::timeout(WAIT, child.wait()).await.expect("exits after SIGTERM").expect("status");
    assert!(status.success(), "callbox run exited with {status}");
    let lines = tokio::time::timeout(Duration::from_secs(5), drain).await.expect("log ends").expect("log");
    log::info!("callbox run with the servers away at boot: {} log lines", lines.len());
}

//! Faults injected around `callbox run` as the process a board starts (issue 16), checked from outside as systemd
//! and the servers see it (its log, what it sends to `$NOTIFY_SOCKET`, its fault LED, its CPU time, what reached
//! the far end), each ending with a call that must work again, recovery times printed (`--nocapture`):
//! - a token endpoint that accepts and never answers, then one that answers garbage (non-JSON, a non-JWT token,
//!   random bytes, a truncated chunked body, 5xx, an oversized answer): each fetch fails with its reason, the
//!   starts are retried with growing jittered delays capped at 30 s, `STATUS=` and the fault LED say why, the
//!   watchdog is fed, the process does not spin; the real token service back at the same URL: it registers;
//! - the wall clock jumped a day forward, a day back and ten years forward in the running process (libfaketime
//!   with a timestamp file; the monotonic clock left real) across 20 s tokens: it stays registered;
//! - the registrar restarted with another secret (every REGISTER refused with 403): the fault shows, the
//!   REGISTERs reaching Kamailio follow the documented backoff (1 s, then ceilings 2, 4, 8, 16, 30 s), and it
//!   registers again when the registrar takes its credentials.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callbox::calling::CallState;
use callbox::client::CallClient;
use callbox_tests::callbox_process::{write_config, CallboxProcess};
use callbox_tests::{Stack, StackOptions};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a [`BadTokenEndpoint`] answers the connections it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Accepts, reads the request and never answers (the connection is held until the mode changes).
    Silent,
    /// Answers each connection with the next of [`GARBAGE`], then closes.
    Garbage,
    /// Forwards to the real token service.
    Forward,
}

/// What the garbage endpoint answers, in turn, and the reason the appliance must log for each.
const GARBAGE: [(&str, &str); 8] = [
    ("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\nhello world", "not JSON"),
    ("HTTP/1.1 200 OK\r\nContent-Length: 22\r\n\r\n{\"token\":\"not-a-jwt!\"}", "unusable token"),
    ("\u{1}RANDOM", "ended before the end of its headers"),
    ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n{\"token\":\"eyJhbGciOi", "incomplete chunk"),
    ("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n", "unavailable (HTTP 503)"),
    ("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 21\r\n\r\n<html>oops</html>\r\n\r\n", "(HTTP 500)"),
    ("HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"token\":", "truncated"),
    ("HTTP/1.1 200 OK\r\n\r\nHUGE", "larger than"),
];

/// A token endpoint on 127.0.0.1 that a test turns bad and good again at the same URL: silent, answering garbage,
/// or forwarding to the real one. Counts the connections it accepted, with their times.
struct BadTokenEndpoint {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    accepted: Arc<Mutex<Vec<(Instant, Mode)>>>,
    accept: tokio::task::JoinHandle<()>,
}

/// Reads a request's head (bounded) so that the answer follows it, as a server's would.
async fn read_request(s: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while buf.len() < 16 * 1024 && !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    }
}

impl BadTokenEndpoint {
    async fn start(mode: Mode, real: SocketAddr) -> BadTokenEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mode = Arc::new(Mutex::new(mode));
        let accepted: Arc<Mutex<Vec<(Instant, Mode)>>> = Arc::default();
        let (m, log) = (mode.clone(), accepted.clone());
        let turn = Arc::new(AtomicUsize::new(0));
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let now_mode = *m.lock().unwrap();
                log.lock().unwrap().push((Instant::now(), now_mode));
                let (m, turn) = (m.clone(), turn.clone());
                tokio::spawn(async move {
                    match now_mode {
                        Mode::Silent => {
                            read_request(&mut inbound).await;
                            // Held open, unanswered, until the endpoint changes (a server restarted).
                            while *m.lock().unwrap() == Mode::Silent {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                        Mode::Garbage => {
                            read_request(&mut inbound).await;
                            let (answer, _) = GARBAGE[turn.fetch_add(1, Ordering::SeqCst) % GARBAGE.len()];
                            let bytes: Vec<u8> = match answer {
                                "\u{1}RANDOM" => (0..512).map(|_| rand::random::<u8>()).collect(),
                                "HTTP/1.1 200 OK\r\n\r\nHUGE" => {
                                    let mut b = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
                                    b.resize(200 * 1024, b'x');
                                    b
                                }
                                other => other.as_bytes().to_vec(),
                            };
                            let _ = inbound.write_all(&bytes).await;
                            let _ = inbound.shutdown().await;
                        }
                        Mode::Forward => {
                            if let Ok(mut outbound) = TcpStream::connect(real).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            }
                        }
                    }
                });
            }
        });
        BadTokenEndpoint { addr, mode, accepted, accept }
    }

    fn url(&self) -> String {
        format!("http://{}/v1/token", self.addr)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// The times of the connections accepted in `mode`.
    fn accepted_in(&self, mode: Mode) -> Vec<Instant> {
        self.accepted.lock().unwrap().iter().filter(|(_, m)| *m == mode).map(|(t, _)| *t).collect()
    }
}

impl Drop for BadTokenEndpoint {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Watchdog pings among `notes`.
fn pings(notes: &[String]) -> usize {
    notes.iter().filter(|n| *n == "WATCHDOG=1").count()
}

/// CPU used by `gate` over `window` as a share of one core, in percent.
async fn cpu_share_over(gate: &CallboxProcess, window: Duration) -> f64 {
    let before = gate.cpu_time();
    tokio::time::sleep(window).await;
    (gate.cpu_time() - before).as_secs_f64() * 100.0 / window.as_secs_f64()
}

/// The doorbell of `gate` (a key on its stdin) rings `monitor`, which answers and hears the gate's tone; then the
/// monitor hangs up. How long from the press to the ring.
async fn the_doorbell_rings(gate: &mut CallboxProcess, monitor: &CallClient) -> Duration {
    let mut monitor_events = monitor.events();
    let pressed = Instant::now();
    gate.keys("c").await;
    let incoming = next_incoming(monitor, &mut monitor_events).await;
    let rang = pressed.elapsed();
    assert_eq!(incoming.from(), &user("gate"));
    let call = incoming.accept().await.expect("accept");
    let mut events = call.events();
    wait_state(&call, &mut events, CallState::Connected).await;
    assert_audio_level(&call, "the monitor", -40.0).await;
    call.hang_up().await.expect("hang up");
    rang
}

/// The delays `cannot start the calling client: ...; retrying in 1.234s` of the appliance's log, in order.
fn start_delays(lines: &[String]) -> Vec<Duration> {
    lines
        .iter()
        .filter_map(|l| l.split("; retrying in ").nth(1))
        .filter_map(|d| {
            let (n, unit) = d.trim().split_at(d.trim().find(|c: char| c.is_ascii_alphabetic()).unwrap_or(0));
            let n: f64 = n.parse().ok()?;
            match unit {
                "s" => Some(Duration::from_secs_f64(n)),
                "ms" => Some(Duration::from_secs_f64(n / 1000.0)),
                "µs" | "us" => Some(Duration::from_secs_f64(n / 1e6)),
                _ => None,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_then_garbage_token_endpoint_is_survived_and_registration_follows_its_repair() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let monitor = appliance(&stack, "monitor-t").await;
    let endpoint = BadTokenEndpoint::start(Mode::Silent, stack.token_addr()).await;
    let (config, key_file) = write_config(&stack, "gate", &stack.janus_ws_url(), &endpoint.url(), "monitor-t");
    let log_filter = "info,callbox::appliance=debug";
    // WatchdogSec=2: a ping every second.
    let env = [("RUST_LOG", log_filter), ("WATCHDOG_USEC", "2000000")];
    let mut gate = CallboxProcess::start(&config, stack.dir(), &env, true);
    let started = Instant::now();

    // 1. Accepts and never answers: each fetch times out (15 s), with the reason in the log.
    let silent = Duration::from_secs(20);
    let cpu = cpu_share_over(&gate, silent).await;
    let timed_out = gate.log_since(started).into_iter().filter(|l| l.contains("the exchange timed out")).count();
    let notes = gate.notifications_since(started);
    println!(
        "silent token endpoint, {} s: {} connections, {timed_out} timeouts logged, {} watchdog pings, CPU {cpu:.1} %",
        silent.as_secs(),
        endpoint.accepted_in(Mode::Silent).len(),
        pings(&notes)
    );
    assert!(timed_out >= 1, "no fetch timed out in {silent:?}");
    assert!(!endpoint.accepted_in(Mode::Silent).is_empty());
    assert!(pings(&notes) >= 10, "the watchdog was fed {} times in {silent:?}: {notes:?}", pings(&notes));
    assert!(cpu < 30.0, "CPU {cpu:.1} % of a core while waiting for a silent endpoint");
    assert!(gate.log_since(started).iter().any(|l| l.contains("LED fault")), "the fault LED is not lit");
    assert!(!gate.log_since(started).iter().any(|l| l.contains("appliance ready")));

    // 2. Garbage: every answer fails the fetch with its reason; the starts are retried with growing delays.
    let garbage_from = Instant::now();
    endpoint.set(Mode::Garbage);
    let garbage = Duration::from_secs(50);
    let cpu = cpu_share_over(&gate, garbage).await;
    let lines = gate.log_since(garbage_from);
    let notes = gate.notifications_since(garbage_from);
    let connections = endpoint.accepted_in(Mode::Garbage);
    let delays = start_delays(&lines);
    println!(
        "garbage token endpoint, {} s: {} connections, {} watchdog pings, CPU {cpu:.1} %, start retried after {:?}",
        garbage.as_secs(),
        connections.len(),
        pings(&notes),
        delays
    );
    for (_, reason) in GARBAGE {
        assert!(lines.iter().any(|l| l.contains(reason)), "no fetch failed with \"{reason}\" in the log");
    }
    assert!(notes.iter().any(|n| n.starts_with("STATUS=waiting for the servers")), "{notes:?}");
    assert!(pings(&notes) >= 25, "the watchdog was fed {} times in {garbage:?}", pings(&notes));
    assert!(cpu < 30.0, "CPU {cpu:.1} % of a core while the endpoint answers garbage");
    // Not once a second: the starts back off (each start makes up to 4 fetches, themselves backed off).
    assert!(connections.len() < 40, "{} fetches in {garbage:?}", connections.len());
    assert!(delays.len() >= 3, "{delays:?}");
    for pair in delays.windows(2) {
        // Drawn in [ceiling/2, ceiling] with a doubling ceiling: never shorter than the one before, until capped.
        if pair[0] < Duration::from_secs(15) {
            assert!(pair[1] >= pair[0], "the start delays do not grow: {delays:?}");
        }
    }
    assert!(delays.iter().all(|d| *d <= Duration::from_secs(30)), "{delays:?}");
    assert!(!lines.iter().any(|l| l.contains("appliance ready")));
    assert!(gate.is_running(), "callbox run died");

    // 3. The real token service back at the same URL: it registers, and the doorbell rings the monitor.
    let fixed = Instant::now();
    endpoint.set(Mode::Forward);
    let ready = gate.wait_log(fixed, Duration::from_secs(60), |l| l.contains("appliance ready")).await;
    assert!(ready.is_some(), "not registered within 60 s of the token endpoint's repair");
    let recovered = fixed.elapsed();
    eventually("STATUS=registered", || {
        gate.notifications_since(fixed).iter().any(|n| n.starts_with("STATUS=registered as gate"))
    })
    .await;
    assert!(gate.log_since(fixed).iter().any(|l| l.contains("LED idle")), "the fault LED is still lit");
    let rang = the_doorbell_rings(&mut gate, &monitor).await;
    println!(
        "token endpoint repaired after {} s of faults: registered {} ms later, the doorbell rang in {} ms",
        started.elapsed().as_secs(),
        recovered.as_millis(),
        rang.as_millis()
    );
    let all = gate.log();
    let key = std::fs::read_to_string(&key_file).expect("key");
    assert!(!all.iter().any(|(_, l)| l.contains(key.trim())), "the device key reached the log");
    let status = gate.stop().await;
    assert!(status.success(), "callbox run exited with {status}");
    monitor.shutdown().await;
}

/// libfaketime (Debian's `libfaketime`), the thread-safe build.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// The date (`YYYY-MM-DD`) at the start of an `env_logger` line (`[2026-12-08T22:50:00Z INFO ...`), as the
/// process's wall clock had it.
fn logged_date(line: &str) -> Option<&str> {
    line.strip_prefix('[').and_then(|l| l.get(..10)).filter(|d| d.as_bytes().get(4) == Some(&b'-'))
}

/// The UTC date `offset_days` from now, as `YYYY-MM-DD` (the civil-from-days algorithm).
fn utc_date(offset_days: i64) -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let z = i64::try_from(secs / 86_400).expect("days") + offset_days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// What must never show while the clock jumps: the appliance losing its tokens or its registration.
const NOT_REGISTERED: [&str; 5] =
    ["token refresh failed", "unusable token", "SIP registration failed", "not registered", "cannot start"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wall_clock_jumps_in_the_running_process_leave_it_registered() {
    assert!(std::path::Path::new(LIBFAKETIME).exists(), "{LIBFAKETIME} missing (scripts/install-deps: faketime)");
    // 20 s tokens: refreshed every 10 s, so each jump is followed by refreshes (and re-REGISTERs with them).
    let opts = StackOptions { token_ttl: Duration::from_secs(20), ..StackOptions::default() };
    let stack = Stack::start(opts).await.expect("stack");
    let monitor = appliance(&stack, "monitor-c").await;
    let (config, _) = write_config(&stack, "gate", &stack.janus_ws_url(), &stack.token_url(), "monitor-c");
    let clock = stack.dir().join("faketime.rc");
    std::fs::write(&clock, "+0\n").expect("faketime file");
    let clock_file = clock.to_str().expect("utf-8");
    let env = [
        ("LD_PRELOAD", LIBFAKETIME),
        ("FAKETIME_TIMESTAMP_FILE", clock_file),
        // Read the file again after at most a second (the default caches it for 10 s; FAKETIME_NO_CACHE=1 would
        // read it on every clock call of every thread).
        ("FAKETIME_CACHE_DURATION", "1"),
        // Only the wall clock jumps: timers and ages run on CLOCK_MONOTONIC, which stays real.
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let started = Instant::now();
    let mut gate = CallboxProcess::start(&config, stack.dir(), &env, true);
    let ready = gate.wait_log(started, WAIT, |l| l.contains("appliance ready")).await;
    assert!(ready.is_some(), "callbox run under libfaketime did not register");

    // Each jump: the log's own timestamps show the process's clock moved; two token lifetimes later it has taken
    // refreshed tokens and re-registered with them all along, and the doorbell rings the monitor.
    for (offset, days) in [("+1d", 1), ("-1d", -1), ("+10y", 3650)] {
        let jumped = Instant::now();
        std::fs::write(&clock, format!("{offset}\n")).expect("faketime file");
        let want = utc_date(days);
        let seen = gate.wait_log(jumped, WAIT, |l| logged_date(l) == Some(want.as_str())).await;
        assert!(seen.is_some(), "the process's clock did not jump to {want} ({offset}): {:?}", gate.log_since(jumped));
        tokio::time::sleep(Duration::from_secs(45)).await;
        let lines = gate.log_since(jumped);
        let swapped = lines.iter().filter(|l| l.contains("token swapped in")).count();
        let registered = lines.iter().filter(|l| l.contains("SIP registration refreshed")).count();
        for bad in NOT_REGISTERED {
            assert!(!lines.iter().any(|l| l.contains(bad)), "{offset}: \"{bad}\" in the log: {lines:#?}");
        }
        let notes = gate.notifications_since(jumped);
        assert!(!notes.iter().any(|n| n.starts_with("STATUS=") && !n.contains("registered as gate")), "{notes:?}");
        assert!(swapped >= 3 && registered >= 3, "{offset}: {swapped} tokens swapped in, {registered} REGISTERs");
        let rang = the_doorbell_rings(&mut gate, &monitor).await;
        println!(
            "clock {offset} ({want} in the log): {swapped} tokens refreshed and {registered} REGISTERs taken in 45 s, \
             no fault; the doorbell rang in {} ms",
            rang.as_millis()
        );
    }
    let status = gate.stop().await;
    assert!(status.success(), "callbox run exited with {status}");
    monitor.shutdown().await;
}

/// When each line of Kamailio's log that satisfies `pred` was first seen (polled every 100 ms until `until`).
async fn watch_kamailio(stack: &Stack, pred: impl Fn(&str) -> bool, until: Instant) -> Vec<Instant> {
    let path = stack.kamailio_log();
    let mut seen = Vec::new();
    while Instant::now() < until {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let n = text.lines().filter(|l| pred(l)).count();
        while seen.len() < n {
            seen.push(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registrar_that_refuses_is_retried_with_backoff_and_registration_comes_back() {
    // 60 s tokens: each refresh (every 30 s) re-REGISTERs, so the refusal is met within 30 s of the restart; and
    // each retry takes a fresh token, so none expires during the 30 s backoff (shorter tokens would add the
    // REGISTERs of the refreshes that their expiry forces).
    let opts = StackOptions { token_ttl: Duration::from_secs(60), ..StackOptions::default() };
    let stack = Stack::start(opts).await.expect("stack");
    let monitor = appliance(&stack, "monitor-r").await;
    let (config, _) = write_config(&stack, "gate", &stack.janus_ws_url(), &stack.token_url(), "monitor-r");
    let env = [("RUST_LOG", "info,callbox::appliance=debug"), ("WATCHDOG_USEC", "2000000")];
    let started = Instant::now();
    let mut gate = CallboxProcess::start(&config, stack.dir(), &env, true);
    let ready = gate.wait_log(started, WAIT, |l| l.contains("appliance ready")).await;
    assert!(ready.is_some(), "callbox run did not register");

    // Kamailio restarted with another secret: every REGISTER of the gate is refused ("auth failed", 403).
    let restarted = Instant::now();
    stack.restart_kamailio_with_auth_secret("another-secret-than-the-token-service-s").await.expect("Kamailio");
    let window = Duration::from_secs(110);
    let refusals =
        watch_kamailio(&stack, |l| l.contains("auth failed (") && l.contains("for sip:gate@"), restarted + window)
            .await;
    let lines = gate.log_since(restarted);
    let notes = gate.notifications_since(restarted);
    // One attempt of the appliance's may reach Kamailio as two REGISTERs (Janus's SIP stack tries the registration
    // it had, then the new credentials, within milliseconds): refusals under 500 ms apart are one attempt.
    let mut attempts: Vec<Instant> = Vec::new();
    for t in refusals {
        if attempts.last().is_none_or(|last| t - *last >= Duration::from_millis(500)) {
            attempts.push(t);
        }
    }
    let refusals = attempts;
    let gaps: Vec<Duration> = refusals.windows(2).map(|w| w[1] - w[0]).collect();
    let shown: Vec<String> = gaps.iter().map(|g| format!("{:.1}", g.as_secs_f64())).collect();
    println!(
        "registrar refusing for {} s: {} attempts of the gate refused at Kamailio, {} s apart; {} watchdog pings",
        window.as_secs(),
        refusals.len(),
        shown.join(", "),
        pings(&notes)
    );
    assert!(
        notes.iter().any(|n| n.starts_with("STATUS=not registered as gate: the registrar refused")),
        "STATUS= does not say it: {notes:?}"
    );
    assert!(lines.iter().any(|l| l.contains("LED fault")), "the fault LED is not lit: {lines:#?}");
    assert!(lines.iter().any(|l| l.contains("SIP registration failed: 403")), "{lines:#?}");
    assert!(pings(&notes) as u64 >= window.as_secs() / 2, "the watchdog was fed {} times", pings(&notes));
    // docs/unattended.md: again after 1 s, then after a delay drawn in [half, all] of 2, 4, 8, 16, 30 s, never
    // under 1 s. Each retry also fetches a token and goes through Janus and a challenge: up to 3 s more here.
    let ceilings = [1u64, 2, 4, 8, 16, 30];
    assert!(refusals.len() >= 5, "only {} refusals in {window:?}", refusals.len());
    for (i, gap) in gaps.iter().enumerate() {
        let ceiling = Duration::from_secs(ceilings[i.min(ceilings.len() - 1)]);
        let floor = (ceiling / 2).max(Duration::from_secs(1));
        assert!(
            *gap >= floor - Duration::from_millis(300) && *gap <= ceiling + Duration::from_secs(3),
            "retry {} came {:.1} s after the one before; the backoff wants {floor:?}..{ceiling:?} (all: {shown:?})",
            i + 1,
            gap.as_secs_f64()
        );
    }

    // The registrar takes the credentials again: the gate registers at its next retry, and the doorbell rings.
    let fixed = Instant::now();
    stack.restart_kamailio().await.expect("Kamailio");
    let back = gate.wait_log(fixed, Duration::from_secs(60), |l| l.contains("SIP registration refreshed")).await;
    assert!(back.is_some(), "not registered within 60 s of the registrar taking its credentials again");
    let recovered = fixed.elapsed();
    eventually("STATUS=registered", || {
        gate.notifications_since(fixed).iter().any(|n| n.starts_with("STATUS=registered as gate"))
    })
    .await;
    eventually("the fault LED goes out", || gate.log_since(fixed).iter().any(|l| l.contains("LED idle"))).await;
    monitor
        .wait_for_connection(callbox::calling::ConnectionState::Ready, Duration::from_secs(60))
        .await
        .expect("the monitor registers again");
    let rang = the_doorbell_rings(&mut gate, &monitor).await;
    println!(
        "registrar fixed: the gate registered {} ms later, the doorbell rang in {} ms",
        recovered.as_millis(),
        rang.as_millis()
    );
    let status = gate.stop().await;
    assert!(status.success(), "callbox run exited with {status}");
    monitor.shutdown().await;
}

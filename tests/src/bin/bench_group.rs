//! The `bench_group` program (`scripts/bench-group`, inside `tests/netns-run`): the group-call figures of issue 7
//! against the real local stack. A door appliance calls N-1 others into one room (default 4 parties, 640x480@30
//! each way): in-process appliances, plus one `callbox answer` process, the measured appliance. Prints, per
//! in-process invitee, join → first decoded frame of each other member (accept to the first frame, and to the
//! frames of all); the CPU time and peak RSS of the measured process over the call; the downlink of one invitee
//! (every RTP byte it received from the room over the call); then one `BENCH_JSON {...}` line.

use callbox::calling::MediaKind;
use callbox::calling::{CallState, Identifier, ParticipantState};
use callbox::client::{Call, CallClient, ClientError};
use callbox_tests::bench::{cpu_seconds, peak_rss_kb, start_answer_process};
use callbox_tests::{HarnessError, Stack, StackOptions};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: bench_group [--members N] [--seconds S] [--video WxH@FPS] [--callbox PATH]
  --members N       parties in the call, the door included (3 to 8, default 4)
  --seconds S       length of the measured call (default 30)
  --video WxH@FPS   every member's camera (default 640x480@30)
  --callbox PATH    the firmware binary run as the measured member (default: callbox next to this program)
environment: RUST_LOG (default warn,callbox=info)
Runs inside the test network namespace: launch it through scripts/bench-group (or tests/netns-run).";

/// Bound on every wait (only there so that a broken run fails instead of hanging).
const WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("test stack: {0}")]
    Stack(#[from] HarnessError),
    #[error("{who}: {what}: {source}")]
    Client { who: String, what: &'static str, source: ClientError },
    #[error("{0}")]
    Failed(String),
}

struct Options {
    members: usize,
    seconds: u64,
    video: (u32, u32, u32),
    callbox: Option<PathBuf>,
}

/// `Ok(None)` for `--help`.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut o = Options { members: 4, seconds: 30, video: (640, 480, 30), callbox: None };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--help" | "-h" => return Ok(None),
            "--members" => {
                let v = value("--members")?;
                o.members = v.parse().ok().filter(|n| (3..=8).contains(n)).ok_or(format!("--members: '{v}'"))?;
            }
            "--seconds" => {
                let v = value("--seconds")?;
                o.seconds = v.parse().ok().filter(|n| (1..=3600).contains(n)).ok_or(format!("--seconds: '{v}'"))?;
            }
            "--video" => {
                let v = value("--video")?;
                o.video = callbox_tests::bench::parse_video(&v).ok_or(format!("--video: '{v}' is not WxH@FPS"))?;
            }
            "--callbox" => o.callbox = Some(PathBuf::from(value("--callbox")?)),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(Some(o))
}

fn user(name: &str) -> Result<Identifier, BenchError> {
    Identifier::user(name).map_err(|e| BenchError::Failed(format!("user id {name}: {e}")))
}

async fn appliance(stack: &Stack, name: &str, o: &Options) -> Result<CallClient, BenchError> {
    callbox_tests::bench::appliance(stack, name, o.video, false).await.map_err(|source| BenchError::Client {
        who: name.into(),
        what: "cannot start",
        source,
    })
}

async fn until(what: &str, mut done: impl FnMut() -> bool) -> Result<(), BenchError> {
    let deadline = Instant::now() + WAIT;
    while !done() {
        if Instant::now() > deadline {
            return Err(BenchError::Failed(format!("not within {WAIT:?}: {what}")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Join → first frames at one invitee: to its first decoded video frame, and to a frame of every other member.
struct JoinFigures {
    who: String,
    first_ms: f64,
    all_ms: f64,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

async fn run(o: &Options) -> Result<(), BenchError> {
    let stack = Stack::start(StackOptions::default()).await?;
    let door = appliance(&stack, "bench-door", o).await?;
    let invitees: Vec<String> = (1..o.members - 1).map(|i| format!("bench-member-{i}")).collect();
    let mut clients = Vec::new();
    for name in &invitees {
        let client = appliance(&stack, name, o).await?;
        let events = client.events();
        clients.push((name.clone(), client, events));
    }
    let program = match &o.callbox {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| BenchError::Failed(format!("cannot locate this program: {e}")))?
            .with_file_name("callbox"),
    };
    let measured = "bench-measured";
    let video = format!("{}x{}@{}", o.video.0, o.video.1, o.video.2);
    let mut process = start_answer_process(&stack, &program, measured, 1, &["--video".into(), video.clone()])?;
    until("the measured process is ready", || {
        std::fs::read_to_string(&process.stdout).is_ok_and(|s| s.contains("ready as"))
    })
    .await?;

    let mut targets: Vec<Identifier> = invitees.iter().map(|n| user(n)).collect::<Result<_, _>>()?;
    targets.push(user(measured)?);
    let call =
        door.call(&targets).map_err(|source| BenchError::Client { who: "door".into(), what: "cannot call", source })?;
    let mut joined: Vec<(String, Call, Instant)> = Vec::new();
    for (name, client, events) in clients.iter_mut() {
        let incoming = tokio::time::timeout(WAIT, client.next_incoming_call(events))
            .await
            .ok()
            .flatten()
            .ok_or_else(|| BenchError::Failed(format!("{name} was never invited")))?;
        let accepted_at = Instant::now();
        let c = incoming.accept().await.map_err(|source| BenchError::Client {
            who: name.clone(),
            what: "cannot accept",
            source,
        })?;
        joined.push((name.clone(), c, accepted_at));
    }
    let others = o.members - 1;
    until("every member is connected at the door", || {
        call.remote_participants().iter().filter(|p| p.state() == ParticipantState::Connected).count() == others
    })
    .await?;
    let mut join_figures = Vec::new();
    for (name, c, accepted_at) in &joined {
        let videos = || {
            c.received_streams()
                .into_iter()
                .filter(|s| s.kind == MediaKind::Video)
                .filter_map(|s| s.first_frame_at)
                .collect::<Vec<_>>()
        };
        until(&format!("{name} decodes every other member"), || videos().len() >= others).await?;
        let firsts = videos();
        let first = firsts.iter().min().copied().unwrap_or(*accepted_at);
        let all = firsts.iter().max().copied().unwrap_or(*accepted_at);
        join_figures.push(JoinFigures {
            who: name.clone(),
            first_ms: ms(first.saturating_duration_since(*accepted_at)),
            all_ms: ms(all.saturating_duration_since(*accepted_at)),
        });
    }

    // The measured interval: every member sending and receiving.
    let (probe_name, probe, _) = &joined[0];
    let bytes = |c: &Call| c.received_streams().iter().map(|s| s.bytes).sum::<u64>();
    let (bytes_start, cpu_start, started) = (bytes(probe), cpu_seconds(process.pid)?, Instant::now());
    println!("{} parties connected; measuring for {} s", o.members, o.seconds);
    tokio::time::sleep(Duration::from_secs(o.seconds)).await;
    let (bytes_end, cpu_end, elapsed) = (bytes(probe), cpu_seconds(process.pid)?, started.elapsed().as_secs_f64());
    let peak = peak_rss_kb(process.pid)?;
    if call.state() != CallState::Connected {
        return Err(BenchError::Failed(format!("the call ended during the measurement: {:?}", call.end_reason())));
    }
    let streams = probe.received_streams();
    let frames: u64 = streams.iter().map(|s| s.frames_decoded).sum();
    let codec = probe.media_stats().and_then(|s| s.video_codec);
    call.hang_up().await.map_err(|source| BenchError::Client { who: "door".into(), what: "hang up", source })?;
    // The measured member answers one call and exits when it ends (the room closed).
    match tokio::time::timeout(Duration::from_secs(15), process.child.wait()).await {
        Ok(Ok(status)) if status.success() => {}
        Ok(Ok(status)) => log::warn!("the measured member exited with {status}"),
        Ok(Err(e)) => log::warn!("the measured member: {e}"),
        Err(_) => log::warn!("the measured member did not exit after the call (killed)"),
    }

    // Its own report of the call (what it sent, received and decoded), printed when the call ended.
    let own_report = std::fs::read_to_string(&process.stdout)
        .ok()
        .and_then(|out| out.lines().rev().find(|l| l.starts_with("media:")).map(str::to_owned));
    let cpu = cpu_end - cpu_start;
    let downlink_kbps = (bytes_end - bytes_start) as f64 * 8.0 / elapsed / 1000.0;
    println!("group call, {} parties, {video} each ({codec:?} sent), {elapsed:.1} s:", o.members);
    for j in &join_figures {
        println!(
            "  {:<16} accept -> first frame {:>7.1} ms, -> frames of all {others} {:>7.1} ms",
            j.who, j.first_ms, j.all_ms
        );
    }
    println!(
        "  measured member (callbox answer): CPU {cpu:.2} s ({:.1} % of one core), peak RSS {:.1} MB",
        100.0 * cpu / elapsed,
        peak as f64 / 1024.0
    );
    println!("  measured member's own report: {}", own_report.as_deref().unwrap_or("(none printed)"));
    println!(
        "  downlink of {probe_name}: {downlink_kbps:.0} kbit/s from {} streams ({frames} frames decoded in all)",
        streams.len()
    );
    let bench = json!({
        "members": o.members,
        "video": video,
        "codec": codec.map(|c| format!("{c:?}")),
        "seconds": (elapsed * 10.0).round() / 10.0,
        "join_to_first_frame_ms": join_figures.iter().map(|j| j.first_ms).collect::<Vec<_>>(),
        "join_to_all_frames_ms": join_figures.iter().map(|j| j.all_ms).collect::<Vec<_>>(),
        "measured_cpu_seconds": (cpu * 100.0).round() / 100.0,
        "measured_cpu_percent": (1000.0 * cpu / elapsed).round() / 10.0,
        "measured_peak_rss_kb": peak,
        "downlink_kbps": downlink_kbps.round(),
    });
    println!("BENCH_JSON {bench}");
    door.shutdown().await;
    for (_, client, _) in &clients {
        client.shutdown().await;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> ExitCode {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn,callbox=info")).try_init();
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("bench_group: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_group: {e}");
            ExitCode::FAILURE
        }
    }
}

//! The `bench_call` program (`scripts/bench-call`, inside `tests/netns-run`): measures the call figures of issue 2
//! against the real local stack — dial to far-end ringing, accept to first decoded video frame, and the CPU time
//! and peak RSS of one appliance (the `callbox answer` binary as a separate process) over a long 640x480@30 call —
//! and prints them as a table plus one machine-readable JSON line (prefixed `BENCH_JSON `).

use callbox::calling::{CallEndReason, CallState, Identifier};
use callbox::client::{Call, CallClient, ClientError, EventStream, IncomingCall};
use callbox::media::MediaStats;
use callbox_tests::smaps::Smaps;
use callbox_tests::{HarnessError, Stack, StackOptions};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: bench_call [--rounds K] [--media-rounds M] [--seconds N] [--callbox PATH] [--screen WxH]
  --rounds K         dial -> ringing measurements, each call declined with 486 (default 10)
  --media-rounds M   accept -> first decoded video frame measurements (default 3)
  --seconds N        length of the call whose callee's CPU and peak RSS are measured (default 60)
  --callbox PATH     the firmware binary run as the measured callee (default: callbox next to this program)
  --screen WxH       the measured callee also shows the caller's video on an in-memory screen of that size
  --video WxH@FPS    the video both ways (default 640x480@30)
  --vp8              VP8 preferred (default H.264)
  --no-audio-processing  the measured callee without echo cancellation and noise suppression
  --smaps            print where the callee's resident memory is (/proc/PID/smaps, grouped) at the end of the call
  --help             this text
environment: RUST_LOG (default warn,callbox=info)
Runs inside the test network namespace: launch it through scripts/bench-call (or tests/netns-run).";

/// Bound on every wait for the far end or the servers (only there so that a broken run fails instead of hanging).
const WAIT: Duration = Duration::from_secs(30);
/// Janus's sip handle stays busy for a moment after its call ended.
const SETTLE: Duration = Duration::from_millis(300);

/// Why the benchmark failed.
#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("test stack: {0}")]
    Stack(#[from] HarnessError),
    #[error("{who}: {what}: {source}")]
    Client { who: String, what: &'static str, source: ClientError },
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Failed(String),
}

fn client_err(who: &str, what: &'static str) -> impl FnOnce(ClientError) -> BenchError {
    let who = who.to_string();
    move |source| BenchError::Client { who, what, source }
}

#[derive(Debug, Clone)]
struct Options {
    rounds: usize,
    media_rounds: usize,
    seconds: u64,
    callbox: Option<PathBuf>,
    /// The callee shows the caller's video on an in-memory screen of this size (`WxH`).
    screen: Option<String>,
    /// The video both ways: width, height, frames per second.
    video: (u32, u32, u32),
    /// VP8 preferred (else H.264).
    vp8: bool,
    /// The callee's echo canceller and noise suppression off.
    no_audio_processing: bool,
    /// Print where the callee's resident memory is (its smaps, grouped) at the end of the call.
    smaps: bool,
}

impl Options {
    fn video_arg(&self) -> String {
        format!("{}x{}@{}", self.video.0, self.video.1, self.video.2)
    }
}

/// `Ok(None)` for `--help`.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut o = Options {
        rounds: 10,
        media_rounds: 3,
        seconds: 60,
        callbox: None,
        screen: None,
        video: (640, 480, 30),
        vp8: false,
        no_audio_processing: false,
        smaps: false,
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let count = |name: &str, v: String| match v.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(format!("{name}: '{v}' is not a number from 1 to 1000")),
        };
        match arg.as_str() {
            "--help" | "-h" => return Ok(None),
            "--rounds" => o.rounds = count("--rounds", value("--rounds")?)?,
            "--media-rounds" => o.media_rounds = count("--media-rounds", value("--media-rounds")?)?,
            "--seconds" => o.seconds = count("--seconds", value("--seconds")?)? as u64,
            "--callbox" => o.callbox = Some(PathBuf::from(value("--callbox")?)),
            "--screen" => o.screen = Some(value("--screen")?),
            "--video" => {
                let v = value("--video")?;
                o.video = callbox_tests::bench::parse_video(&v)
                    .ok_or(format!("--video: '{v}' is not WxH@FPS (even sizes, 1 to 60 fps)"))?;
            }
            "--vp8" => o.vp8 = true,
            "--no-audio-processing" => o.no_audio_processing = true,
            "--smaps" => o.smaps = true,
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(Some(o))
}

fn user(name: &str) -> Result<Identifier, BenchError> {
    Identifier::user(name).map_err(|e| BenchError::Failed(format!("user id {name}: {e}")))
}

async fn appliance(stack: &Stack, name: &str, o: &Options) -> Result<CallClient, BenchError> {
    callbox_tests::bench::appliance(stack, name, o.video, o.vp8).await.map_err(client_err(name, "could not start"))
}

async fn wait_for(call: &Call, events: &mut EventStream, want: CallState, who: &str) -> Result<Instant, BenchError> {
    match call.wait_state(events, |s| s == want, WAIT).await {
        Ok(()) => Ok(Instant::now()),
        Err(e) => Err(BenchError::Failed(format!(
            "{who}: the call never reached {want:?} ({e}); end reason {}",
            reason(call.end_reason())
        ))),
    }
}

fn reason(r: Option<CallEndReason>) -> String {
    r.map(|r| format!("{} {} ({})", r.code, r.subcode, r.message)).unwrap_or_else(|| "none".into())
}

/// min / median / max in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Summary {
    n: usize,
    min: f64,
    median: f64,
    max: f64,
}

fn summarize(samples: &[Duration]) -> Option<Summary> {
    let mut v: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = match n {
        0 => return None,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    };
    Some(Summary { n, min: v[0], median, max: v[n - 1] })
}

fn summary_json(s: Option<Summary>) -> serde_json::Value {
    match s {
        Some(s) => json!({ "n": s.n, "min_ms": s.min.round(), "median_ms": s.median.round(), "max_ms": s.max.round() }),
        None => serde_json::Value::Null,
    }
}

fn table_row(label: &str, s: Option<Summary>) {
    match s {
        Some(s) => println!("  {label:<44} {:>4} {:>9.0} {:>9.0} {:>9.0}", s.n, s.min, s.median, s.max),
        None => println!("  {label:<44} {:>4} {:>9} {:>9} {:>9}", 0, "-", "-", "-"),
    }
}

/// When the call first reaches `want` (event-driven; `None` if it ends first or within `WAIT` it never does).
fn when_state(call: &Call, want: CallState) -> tokio::task::JoinHandle<Option<Instant>> {
    let mut events = call.events();
    let call = call.clone();
    tokio::spawn(async move { call.wait_state(&mut events, |s| s == want, WAIT).await.ok().map(|()| Instant::now()) })
}

/// A call placed and seen ringing at the callee.
struct Dialed {
    call: Call,
    placed_at: Instant,
    incoming: IncomingCall,
    incoming_at: Instant,
    ringing: tokio::task::JoinHandle<Option<Instant>>,
}

/// Places a call to `target` and waits for the callee's incoming call. Right after a call ended, the callee's
/// Janus sip handle may still be busy and answer 486 at once: then it retries, with backoff.
async fn dial(
    a: &CallClient,
    target: &Identifier,
    b: &CallClient,
    b_events: &mut EventStream,
) -> Result<Dialed, BenchError> {
    let mut backoff = SETTLE;
    for attempt in 1..=5 {
        let placed_at = Instant::now();
        let call = a.call(std::slice::from_ref(target)).map_err(client_err("caller", "cannot call"))?;
        let ringing = when_state(&call, CallState::Ringing);
        let mut ended_events = call.events();
        tokio::select! {
            incoming = tokio::time::timeout(WAIT, b.next_incoming_call(b_events)) => match incoming {
                Ok(Some(incoming)) => {
                    return Ok(Dialed { call, placed_at, incoming, incoming_at: Instant::now(), ringing });
                }
                _ => {
                    let _ = call.hang_up().await;
                    return Err(BenchError::Failed(format!("the callee saw no incoming call within {WAIT:?}")));
                }
            },
            _ = call.wait_state(&mut ended_events, |s| s == CallState::Disconnected, WAIT) => {
                ringing.abort();
                log::warn!(
                    "call attempt {attempt} ended before it rang at the callee ({}); retrying in {backoff:?}",
                    reason(call.end_reason())
                );
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
    Err(BenchError::Failed("every call attempt ended before the callee saw it".into()))
}

/// 1. Dial -> far-end IncomingCall and -> caller Ringing, each call declined with 486.
async fn bench_ringing(
    a: &CallClient,
    b: &CallClient,
    b_name: &str,
    rounds: usize,
) -> Result<(Vec<Duration>, Vec<Duration>), BenchError> {
    let target = user(b_name)?;
    let mut b_events = b.events();
    let (mut to_incoming, mut to_ringing) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let d = dial(a, &target, b, &mut b_events).await?;
        to_incoming.push(d.incoming_at.duration_since(d.placed_at));
        match d.ringing.await {
            Ok(Some(at)) => to_ringing.push(at.duration_since(d.placed_at)),
            _ => log::warn!("round {round}: the caller never saw Ringing ({:?})", d.call.state()),
        }
        d.incoming.reject(486).await.map_err(client_err("callee", "cannot decline"))?;
        let mut a_events = d.call.events();
        wait_for(&d.call, &mut a_events, CallState::Disconnected, "caller").await?;
        log::info!("ringing round {round}/{rounds} done");
        tokio::time::sleep(SETTLE).await;
    }
    Ok((to_incoming, to_ringing))
}

/// 2. Accept -> first decoded video frame at the callee and at the caller.
async fn bench_first_frame(
    a: &CallClient,
    b: &CallClient,
    b_name: &str,
    rounds: usize,
) -> Result<(Vec<Duration>, Vec<Duration>), BenchError> {
    let target = user(b_name)?;
    let mut b_events = b.events();
    let (mut callee, mut caller) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let Dialed { call, incoming, ringing, .. } = dial(a, &target, b, &mut b_events).await?;
        ringing.abort();
        let accepted_at = Instant::now();
        let b_call = incoming.accept().await.map_err(client_err("callee", "cannot accept"))?;
        let first = |c: &Call| c.media_stats().and_then(|s| s.first_remote_frame_at);
        let deadline = Instant::now() + WAIT;
        let (mut at_callee, mut at_caller) = (None, None);
        while (at_callee.is_none() || at_caller.is_none()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            at_callee = at_callee.or_else(|| first(&b_call));
            at_caller = at_caller.or_else(|| first(&call));
            if call.state() == CallState::Disconnected {
                break;
            }
        }
        let hang_up = call.hang_up().await;
        let mut b_call_events = b_call.events();
        let _ = b_call.wait_state(&mut b_call_events, |s| s == CallState::Disconnected, WAIT).await;
        match (at_callee, at_caller) {
            (Some(x), Some(y)) => {
                callee.push(x.saturating_duration_since(accepted_at));
                caller.push(y.saturating_duration_since(accepted_at));
            }
            _ => {
                return Err(BenchError::Failed(format!(
                    "media round {round}: no video frame decoded within {WAIT:?} (callee {}, caller {}); \
                     caller end reason {}",
                    at_callee.is_some(),
                    at_caller.is_some(),
                    reason(call.end_reason())
                )))
            }
        }
        hang_up.map_err(client_err("caller", "cannot hang up"))?;
        log::info!("media round {round}/{rounds} done");
        tokio::time::sleep(SETTLE).await;
    }
    Ok((callee, caller))
}

fn read_file(path: &Path) -> Result<String, BenchError> {
    std::fs::read_to_string(path).map_err(|source| BenchError::Io { what: "cannot read", path: path.into(), source })
}

fn cpu_seconds(pid: u32) -> Result<f64, BenchError> {
    Ok(callbox_tests::bench::cpu_seconds(pid)?)
}

fn peak_rss_kb(pid: u32) -> Result<u64, BenchError> {
    Ok(callbox_tests::bench::peak_rss_kb(pid)?)
}

struct ResourceFigures {
    call_seconds: f64,
    cpu_seconds: f64,
    peak_rss_kb: u64,
    caller: Option<MediaStats>,
    /// The caller's audio pipeline latencies, sampled every 500 ms.
    capture_to_send_ms: Option<Summary>,
    network_to_speaker_ms: Option<Summary>,
    callee: callbox_tests::bench::ChildMedia,
}

fn callbox_path(o: &Options) -> Result<PathBuf, BenchError> {
    if let Some(p) = &o.callbox {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe().map_err(|source| BenchError::Io {
        what: "cannot locate",
        path: "bench_call".into(),
        source,
    })?;
    Ok(exe.with_file_name("callbox"))
}

/// 3. CPU seconds and peak RSS of one appliance (a `callbox answer` process) over a `seconds`-long call.
async fn bench_resources(
    stack: &Stack,
    a: &CallClient,
    seconds: u64,
    o: &Options,
) -> Result<ResourceFigures, BenchError> {
    let program = callbox_path(o)?;
    let name = "monitor-proc";
    let mut extra = vec!["--video".to_string(), o.video_arg()];
    if o.vp8 {
        extra.extend(["--codec".into(), "vp8".into()]);
    }
    if o.no_audio_processing {
        extra.push("--no-audio-processing".into());
    }
    if let Some(size) = &o.screen {
        extra.extend(["--screen".into(), size.clone()]);
    }
    let callbox_tests::bench::AnswerProcess { mut child, pid, stdout: out_path, stderr: err_path } =
        callbox_tests::bench::start_answer_process(stack, &program, name, 1, &extra)?;
    println!("callee process {} (pid {pid}) started", program.display());

    let result = measure(a, pid, name, seconds, o.smaps, &out_path, &mut child).await;
    // The callee answers one call and then exits; make sure it is gone either way.
    match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
        Ok(Ok(status)) if !status.success() => log::warn!("the callee exited with {status}"),
        Ok(_) => {}
        Err(_) => {
            log::warn!("the callee did not exit after its call: killing pid {pid}");
            let _ = child.kill().await;
        }
    }
    let mut figures = match result {
        Ok(f) => f,
        Err(e) => {
            eprintln!("callee stderr (tail):\n{}", tail(&read_file(&err_path).unwrap_or_default(), 4000));
            return Err(e);
        }
    };
    let output = format!("{}\n{}", read_file(&err_path)?, read_file(&out_path)?);
    figures.callee = callbox_tests::bench::parse_child_media(&output);
    Ok(figures)
}

fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

async fn measure(
    a: &CallClient,
    pid: u32,
    name: &str,
    seconds: u64,
    smaps: bool,
    out_path: &Path,
    child: &mut tokio::process::Child,
) -> Result<ResourceFigures, BenchError> {
    let ready_deadline = Instant::now() + WAIT;
    while !read_file(out_path)?.contains("ready as") {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(BenchError::Failed(format!("the callee exited before it was ready ({status})")));
        }
        if Instant::now() > ready_deadline {
            return Err(BenchError::Failed(format!("the callee was not ready within {WAIT:?}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let call = a.call(&[user(name)?]).map_err(client_err("caller", "cannot call the callee process"))?;
    let mut events = call.events();
    wait_for(&call, &mut events, CallState::Connected, "caller -> callee process").await?;
    let connected = Instant::now();
    let cpu_start = cpu_seconds(pid)?;
    println!("connected to the callee process; measuring for {seconds} s");
    let mut caller = None;
    let (mut capture_to_send, mut network_to_speaker) = (Vec::new(), Vec::new());
    let end = connected + Duration::from_secs(seconds);
    while Instant::now() < end && call.state() != CallState::Disconnected {
        tokio::time::sleep(Duration::from_millis(500)).await;
        caller = call.media_stats().or(caller);
        if let Some(s) = &caller {
            capture_to_send.push(s.audio_capture_to_send_ms);
            network_to_speaker.push(s.audio_playout_delay_ms as f64);
        }
    }
    let cpu_end = cpu_seconds(pid)?;
    let peak = peak_rss_kb(pid)?;
    if smaps {
        println!("the callee's resident memory at the end of the call, kB:\n{}", Smaps::of(pid)?.table(20));
    }
    let call_seconds = connected.elapsed().as_secs_f64();
    if call.state() == CallState::Disconnected {
        return Err(BenchError::Failed(format!(
            "the measured call ended early after {call_seconds:.1} s: {}",
            reason(call.end_reason())
        )));
    }
    call.hang_up().await.map_err(client_err("caller", "cannot hang up"))?;
    Ok(ResourceFigures {
        call_seconds,
        cpu_seconds: cpu_end - cpu_start,
        peak_rss_kb: peak,
        caller,
        capture_to_send_ms: summarize(
            &capture_to_send.iter().map(|ms| Duration::from_secs_f64(ms / 1000.0)).collect::<Vec<_>>(),
        ),
        network_to_speaker_ms: summarize(
            &network_to_speaker.iter().map(|ms| Duration::from_secs_f64(ms / 1000.0)).collect::<Vec<_>>(),
        ),
        callee: callbox_tests::bench::ChildMedia::default(),
    })
}

async fn run(o: Options) -> Result<(), BenchError> {
    let stack = Stack::start(StackOptions::default()).await?;
    let result = bench(&stack, &o).await;
    if result.is_err() {
        stack.dump_logs();
    }
    result
}

async fn bench(stack: &Stack, o: &Options) -> Result<(), BenchError> {
    let (a, b) = tokio::join!(appliance(stack, "front-door", o), appliance(stack, "monitor", o));
    let (a, b) = match (a, b) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            for c in [a.as_ref().ok(), b.as_ref().ok()].into_iter().flatten() {
                c.shutdown().await;
            }
            return Err(a.err().or(b.err()).unwrap_or_else(|| BenchError::Failed("no appliance".into())));
        }
    };
    println!("stack and two appliances up; {} ringing rounds, {} media rounds", o.rounds, o.media_rounds);
    let in_process = async {
        let ringing = bench_ringing(&a, &b, "monitor", o.rounds).await?;
        let first_frame = bench_first_frame(&a, &b, "monitor", o.media_rounds).await?;
        Ok::<_, BenchError>((ringing, first_frame))
    };
    let in_process = in_process.await;
    // Only the caller stays in this process for the resource measurement.
    b.shutdown().await;
    let (measured, res) = match in_process {
        Ok(m) => {
            tokio::time::sleep(SETTLE).await;
            (m, bench_resources(stack, &a, o.seconds, o).await)
        }
        Err(e) => {
            a.shutdown().await;
            return Err(e);
        }
    };
    a.shutdown().await;
    let ((to_incoming, to_ringing), (ff_callee, ff_caller)) = measured;
    let res = res?;

    let (s_in, s_ring) = (summarize(&to_incoming), summarize(&to_ringing));
    let (s_ffe, s_ffr) = (summarize(&ff_callee), summarize(&ff_caller));
    println!("\n== call benchmark ==");
    println!("  {:<44} {:>4} {:>9} {:>9} {:>9}", "figure (ms)", "n", "min", "median", "max");
    table_row("dial -> callee IncomingCall", s_in);
    table_row("dial -> caller Ringing", s_ring);
    table_row("accept -> first video frame at callee", s_ffe);
    table_row("accept -> first video frame at caller", s_ffr);
    table_row("caller audio: microphone -> network", res.capture_to_send_ms);
    table_row("caller audio: network -> speaker (jitter + device)", res.network_to_speaker_ms);
    let cpu_pct = 100.0 * res.cpu_seconds / res.call_seconds.max(0.001);
    println!("  one appliance (callbox answer, {}, {:.1} s call):", o.video_arg(), res.call_seconds);
    println!("    CPU time                                   {:.2} s ({cpu_pct:.1} % of one core)", res.cpu_seconds);
    println!("    peak RSS (VmHWM)                           {:.1} MB", res.peak_rss_kb as f64 / 1024.0);
    let caller_frames = res.caller.as_ref().map(|s| s.video_frames_decoded);
    let caller_level = res.caller.as_ref().map(|s| (s.remote_audio_level_dbfs * 10.0).round() / 10.0);
    println!(
        "    callee decoded {} video frames, received {} audio packets, heard {}",
        res.callee.frames_decoded.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
        res.callee.audio_packets_received.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
        res.callee
            .level_dbfs
            .map(|l| format!("{l:.1} dBFS"))
            .unwrap_or_else(|| "? dBFS (not reported by callbox answer)".into())
    );
    println!(
        "    caller decoded {} video frames, heard {}",
        caller_frames.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
        caller_level.map(|l| format!("{l:.1} dBFS")).unwrap_or_else(|| "? dBFS".into())
    );
    if let Some(line) = &res.callee.line {
        println!("    callee's own report: {line}");
    } else {
        println!("    (the callee printed no media report)");
    }
    let report = json!({
        "dial_to_incoming": summary_json(s_in),
        "dial_to_ringing": summary_json(s_ring),
        "accept_to_first_frame_callee": summary_json(s_ffe),
        "accept_to_first_frame_caller": summary_json(s_ffr),
        "audio_capture_to_send": summary_json(res.capture_to_send_ms),
        "audio_network_to_speaker": summary_json(res.network_to_speaker_ms),
        "appliance": {
            "video": o.video_arg(),
            "call_seconds": (res.call_seconds * 10.0).round() / 10.0,
            "cpu_seconds": (res.cpu_seconds * 100.0).round() / 100.0,
            "cpu_percent": (cpu_pct * 10.0).round() / 10.0,
            "peak_rss_kb": res.peak_rss_kb,
            "callee_frames_decoded": res.callee.frames_decoded,
            "callee_audio_packets_received": res.callee.audio_packets_received,
            "callee_audio_dbfs": res.callee.level_dbfs,
            "caller_frames_decoded": caller_frames,
            "caller_audio_dbfs": caller_level,
        },
    });
    println!("BENCH_JSON {report}");
    let media_ok = res.callee.frames_decoded.is_some_and(|n| n > 0) && caller_frames.is_some_and(|n| n > 0);
    if !media_ok {
        return Err(BenchError::Failed("the measured call did not carry video both ways".into()));
    }
    Ok(())
}

fn main() -> ExitCode {
    callbox_tests::appliance::program_main("bench_call", USAGE, parse_args, run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_min_median_max() {
        let d = |ms: &[u64]| ms.iter().map(|m| Duration::from_millis(*m)).collect::<Vec<_>>();
        assert_eq!(summarize(&d(&[30, 10, 20])), Some(Summary { n: 3, min: 10.0, median: 20.0, max: 30.0 }));
        assert_eq!(summarize(&d(&[40, 10, 20, 30])), Some(Summary { n: 4, min: 10.0, median: 25.0, max: 40.0 }));
        assert_eq!(summarize(&[]), None);
    }

    #[test]
    fn options_parse() {
        let a = |v: &[&str]| parse_args(v.iter().map(|s| s.to_string()));
        let o = a(&[]).unwrap().unwrap();
        assert_eq!((o.rounds, o.media_rounds, o.seconds), (10, 3, 60));
        let o = a(&["--seconds", "20", "--rounds", "5"]).unwrap().unwrap();
        assert_eq!((o.rounds, o.seconds), (5, 20));
        assert!(a(&["--help"]).unwrap().is_none());
        assert!(a(&["--rounds", "0"]).is_err() && a(&["--seconds"]).is_err() && a(&["--x"]).is_err());
    }
}

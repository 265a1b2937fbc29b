//! The `bench_vs_baresip` program (`scripts/bench-vs-baresip`, inside `tests/netns-run`): issue 17's side-by-side
//! figures. In one run it measures the ANSWERING end of a call, the same way for both programs — CPU seconds
//! (utime + stime in /proc) over the connected call and peak RSS (VmHWM) — once for baresip (two Debian baresip
//! processes calling each other through the test Kamailio) and once per codec and picture for callbox (an
//! in-process caller and a `callbox answer --sim` process through Janus, Kamailio and the token endpoint, as
//! `bench_call` does). Every call is checked at its far end: the caller must have decoded the answerer's video and
//! the answerer the caller's, else the run fails. Prints a table with the callbox/baresip ratios and one
//! machine-readable JSON line (`BENCH_JSON `).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use callbox::calling::{CallState, Identifier};
use callbox::client::CallClient;
use callbox::devices::video::sim::SimPicture;
use callbox_tests::bench::{cpu_seconds, peak_rss_kb, AnswerProcess};
use callbox_tests::{BaresipEvent, BaresipOptions, BaresipVideo, HarnessError, Stack, StackOptions};
use serde_json::json;

const USAGE: &str = "usage: bench_vs_baresip [--seconds N] [--codecs LIST] [--pictures LIST] [--callbox PATH]
  --seconds N        length of each measured call (default 60)
  --codecs LIST      vp8,h264 (default both; baresip only where its Debian modules can)
  --pictures LIST    bars,pattern (default both; baresip only has the still bars)
  --callbox PATH     the firmware binary run as the measured answering appliance (default: next to this program)
  --no-audio-processing  the measured callbox without echo cancellation and noise suppression (baresip has none)
  --help             this text
environment: RUST_LOG (default warn,callbox=info)
Runs inside the test network namespace: launch it through scripts/bench-vs-baresip (or tests/netns-run).";

/// 640x480@30: what `bench_call` measures and what both programs are set to send.
const VIDEO: (u32, u32, u32) = (640, 480, 30);
/// callbox's starting video bitrate and Opus bitrate (`VideoConfig`, `AudioConfig` defaults): baresip gets the same.
const VIDEO_BITRATE_BPS: u32 = 800_000;
const OPUS_BITRATE_BPS: u32 = 32_000;
/// Bound on every wait for a far end or a server (only there so that a broken run fails instead of hanging).
const WAIT: Duration = Duration::from_secs(30);
/// Janus's sip handle stays busy for a moment after its call ended.
const SETTLE: Duration = Duration::from_millis(500);
const BARESIP_MODULES: &str = "/usr/lib/baresip/modules";

#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("test stack: {0}")]
    Stack(#[from] HarnessError),
    #[error("{0}")]
    Failed(String),
}

fn failed(what: impl Into<String>) -> BenchError {
    BenchError::Failed(what.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Vp8,
    H264,
}

impl Codec {
    fn name(self) -> &'static str {
        match self {
            Codec::Vp8 => "vp8",
            Codec::H264 => "h264",
        }
    }
}

fn picture_name(p: SimPicture) -> &'static str {
    match p {
        SimPicture::Pattern => "pattern",
        SimPicture::Bars => "bars",
    }
}

#[derive(Debug, Clone)]
struct Options {
    seconds: u64,
    codecs: Vec<Codec>,
    pictures: Vec<SimPicture>,
    callbox: Option<PathBuf>,
    no_audio_processing: bool,
}

fn list<T>(name: &str, v: &str, item: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    let items: Option<Vec<T>> = v.split(',').map(|s| item(s.trim())).collect();
    match items {
        Some(items) if !items.is_empty() => Ok(items),
        _ => Err(format!("{name}: '{v}' is not a comma-separated list of known names")),
    }
}

/// `Ok(None)` for `--help`.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut o = Options {
        seconds: 60,
        codecs: vec![Codec::Vp8, Codec::H264],
        pictures: vec![SimPicture::Bars, SimPicture::Pattern],
        callbox: None,
        no_audio_processing: false,
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--help" | "-h" => return Ok(None),
            "--seconds" => {
                let v = value("--seconds")?;
                o.seconds = v
                    .parse()
                    .ok()
                    .filter(|s| (5..=3600).contains(s))
                    .ok_or(format!("--seconds: '{v}' is not a number from 5 to 3600"))?;
            }
            "--codecs" => {
                o.codecs = list("--codecs", &value("--codecs")?, |s| match s {
                    "vp8" => Some(Codec::Vp8),
                    "h264" => Some(Codec::H264),
                    _ => None,
                })?
            }
            "--pictures" => o.pictures = list("--pictures", &value("--pictures")?, |s| s.parse().ok())?,
            "--callbox" => o.callbox = Some(PathBuf::from(value("--callbox")?)),
            "--no-audio-processing" => o.no_audio_processing = true,
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(Some(o))
}

/// One measured call: the answering process's figures and what each end decoded.
#[derive(Debug, Clone)]
struct Measurement {
    side: &'static str,
    codec: Codec,
    picture: SimPicture,
    call_seconds: f64,
    cpu_seconds: f64,
    peak_rss_kb: u64,
    /// Video frames the caller decoded from the measured answerer (the far end of its video).
    far_end_decoded: u64,
    /// Video frames the measured answerer decoded from the caller.
    answerer_decoded: u64,
}

impl Measurement {
    fn cpu_per_minute(&self) -> f64 {
        self.cpu_seconds * 60.0 / self.call_seconds.max(0.001)
    }

    fn rss_mb(&self) -> f64 {
        self.peak_rss_kb as f64 / 1024.0
    }
}

/// Fails unless both ends decoded video: a benchmark of a call without video measures nothing.
fn check_media(m: &Measurement) -> Result<(), BenchError> {
    if m.far_end_decoded == 0 || m.answerer_decoded == 0 {
        return Err(failed(format!(
            "{} {} {}: no video both ways (the caller decoded {} frames of the answerer, the answerer {} of the \
             caller)",
            m.side,
            m.codec.name(),
            picture_name(m.picture),
            m.far_end_decoded,
            m.answerer_decoded
        )));
    }
    let expected = m.call_seconds * f64::from(VIDEO.2);
    if (m.far_end_decoded as f64) < expected / 2.0 {
        log::warn!(
            "{} {}: the caller decoded only {} of about {expected:.0} frames",
            m.side,
            m.codec.name(),
            m.far_end_decoded
        );
    }
    Ok(())
}

/// Why baresip cannot be measured with this codec and picture here, if it cannot.
fn baresip_unavailable(codec: Codec, picture: SimPicture) -> Option<String> {
    let module = match codec {
        Codec::Vp8 => "vp8.so",
        Codec::H264 => "avcodec.so",
    };
    if !std::path::Path::new(BARESIP_MODULES).join(module).exists() {
        return Some(format!("no {module} in {BARESIP_MODULES}"));
    }
    (picture == SimPicture::Pattern)
        .then(|| "Debian's baresip has no moving video source (fakevideo is a still picture)".to_string())
}

/// baresip calling baresip through Kamailio; the answering baresip is measured.
async fn measure_baresip(stack: &Stack, codec: Codec, seconds: u64) -> Result<Measurement, BenchError> {
    let video = BaresipVideo {
        width: VIDEO.0,
        height: VIDEO.1,
        fps: VIDEO.2,
        bitrate_bps: VIDEO_BITRATE_BPS,
        opus_bitrate_bps: OPUS_BITRATE_BPS,
    };
    let callee = stack
        .start_baresip(BaresipOptions::registered_user("vs-bare-answer").auto_answer(true).video(video).lean())
        .await?;
    let caller = stack.start_baresip(BaresipOptions::registered_user("vs-bare-call").video(video).lean()).await?;
    let pid = u32::try_from(callee.pid()).map_err(|_| failed("baresip has no process id"))?;
    println!("baresip {} -> baresip {} (pid {pid}), {}", caller.aor(), callee.aor(), codec.name());
    caller.dial(callee.aor()).await?;
    caller.wait_for(BaresipEvent::CallEstablished, WAIT).await?;
    callee.wait_for(BaresipEvent::CallEstablished, WAIT).await?;
    let connected = Instant::now();
    let cpu_start = cpu_seconds(pid)?;
    let end = connected + Duration::from_secs(seconds);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let closed = |b: &callbox_tests::Baresip| b.pending_events().iter().any(|e| e.kind == BaresipEvent::CallClosed);
        if closed(&caller) || closed(&callee) {
            return Err(failed(format!(
                "the baresip call ended early after {:.1} s",
                connected.elapsed().as_secs_f64()
            )));
        }
    }
    let cpu_end = cpu_seconds(pid)?;
    let peak = peak_rss_kb(pid)?;
    let call_seconds = connected.elapsed().as_secs_f64();
    let (far, near) = (caller.video_frames().await?, callee.video_frames().await?);
    println!("  caller's video_debug: {far:?}; answerer's: {near:?}");
    caller.hangup().await?;
    caller.wait_for(BaresipEvent::CallClosed, WAIT).await?;
    Ok(Measurement {
        side: "baresip",
        codec,
        picture: SimPicture::Bars,
        call_seconds,
        cpu_seconds: cpu_end - cpu_start,
        peak_rss_kb: peak,
        far_end_decoded: far.displayed.unwrap_or(0),
        answerer_decoded: near.displayed.unwrap_or(0),
    })
}

fn callbox_path(o: &Options) -> Result<PathBuf, BenchError> {
    match &o.callbox {
        Some(p) => Ok(p.clone()),
        None => std::env::current_exe()
            .map(|exe| exe.with_file_name("callbox"))
            .map_err(|e| failed(format!("cannot locate this program: {e}"))),
    }
}

/// An in-process callbox calling a `callbox answer --sim` process; the answering process is measured.
async fn measure_callbox(
    stack: &Stack,
    o: &Options,
    codec: Codec,
    picture: SimPicture,
    run: usize,
) -> Result<Measurement, BenchError> {
    let caller_name = format!("vs-call-{run}");
    let callee_name = format!("vs-answer-{run}");
    let caller = callbox_tests::bench::appliance_showing(stack, &caller_name, VIDEO, codec == Codec::Vp8, picture)
        .await
        .map_err(|e| failed(format!("{caller_name}: could not start: {e}")))?;
    let mut extra: Vec<String> =
        ["--video", "640x480@30", "--codec", codec.name(), "--sim-picture", picture_name(picture)]
            .map(String::from)
            .to_vec();
    if o.no_audio_processing {
        extra.push("--no-audio-processing".into());
    }
    let program = callbox_path(o)?;
    let result = match callbox_tests::bench::start_answer_process(stack, &program, &callee_name, 1, &extra) {
        Ok(process) => call_the_answerer(&caller, process, &callee_name, codec, picture, o.seconds).await,
        Err(e) => Err(e.into()),
    };
    caller.shutdown().await;
    result
}

async fn call_the_answerer(
    caller: &CallClient,
    AnswerProcess { mut child, pid, stdout, stderr }: AnswerProcess,
    name: &str,
    codec: Codec,
    picture: SimPicture,
    seconds: u64,
) -> Result<Measurement, BenchError> {
    println!("callbox -> callbox answer {name} (pid {pid}), {}, {}", codec.name(), picture_name(picture));
    let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    let ready_by = Instant::now() + WAIT;
    while !read(&stdout).contains("ready as") {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(failed(format!("{name} exited before it was ready ({status}): {}", read(&stderr))));
        }
        if Instant::now() > ready_by {
            return Err(failed(format!("{name} was not ready within {WAIT:?}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let target = Identifier::user(name).map_err(|e| failed(format!("user id {name}: {e}")))?;
    let call = caller.call(&[target]).map_err(|e| failed(format!("cannot call {name}: {e}")))?;
    let mut events = call.events();
    call.wait_state(&mut events, |s| s == CallState::Connected, WAIT)
        .await
        .map_err(|e| failed(format!("the call to {name} never connected: {e}")))?;
    let connected = Instant::now();
    let cpu_start = cpu_seconds(pid)?;
    let end = connected + Duration::from_secs(seconds);
    while Instant::now() < end && call.state() != CallState::Disconnected {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let cpu_end = cpu_seconds(pid)?;
    let peak = peak_rss_kb(pid)?;
    let call_seconds = connected.elapsed().as_secs_f64();
    if call.state() == CallState::Disconnected {
        return Err(failed(format!("the call to {name} ended early after {call_seconds:.1} s")));
    }
    let far_end_decoded = call.media_stats().map(|s| s.video_frames_decoded).unwrap_or(0);
    call.hang_up().await.map_err(|e| failed(format!("cannot hang up: {e}")))?;
    // The answerer answers one call, prints its media report and exits.
    match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
        Ok(Ok(status)) if !status.success() => log::warn!("{name} exited with {status}"),
        Ok(_) => {}
        Err(_) => {
            log::warn!("{name} did not exit after its call: killing pid {pid}");
            let _ = child.kill().await;
        }
    }
    let report = callbox_tests::bench::parse_child_media(&format!("{}\n{}", read(&stderr), read(&stdout)));
    println!("  answerer's report: {}", report.line.as_deref().unwrap_or("(none)"));
    let negotiated = report.line.as_deref().unwrap_or("").to_ascii_lowercase();
    if !negotiated.contains(codec.name()) {
        return Err(failed(format!("{name} did not report {} as the call's codec", codec.name())));
    }
    Ok(Measurement {
        side: "callbox",
        codec,
        picture,
        call_seconds,
        cpu_seconds: cpu_end - cpu_start,
        peak_rss_kb: peak,
        far_end_decoded,
        answerer_decoded: report.frames_decoded.unwrap_or(0),
    })
}

/// The load and CPU of the machine, printed with the figures.
fn machine() -> String {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let load: Vec<&str> = loadavg.split_whitespace().take(3).collect();
    format!("{model}, {cores} cores, load average {}", load.join(" "))
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

fn report(o: &Options, rows: &[Measurement], missing: &[(Codec, SimPicture, String)], before: &str, after: &str) {
    println!("\n== callbox vs baresip, the answering process of one 640x480@30 call (issue 17) ==");
    println!("  machine before: {before}");
    println!("  machine after:  {after}");
    println!(
        "  {:<8} {:<5} {:<8} {:>7} {:>7} {:>12} {:>12} {:>12} {:>12}",
        "side", "codec", "picture", "call s", "CPU s", "CPU s / 60 s", "peak RSS MB", "far end dec.", "answerer dec."
    );
    for m in rows {
        println!(
            "  {:<8} {:<5} {:<8} {:>7.1} {:>7.2} {:>12.2} {:>12.1} {:>12} {:>12}",
            m.side,
            m.codec.name(),
            picture_name(m.picture),
            m.call_seconds,
            m.cpu_seconds,
            m.cpu_per_minute(),
            m.rss_mb(),
            m.far_end_decoded,
            m.answerer_decoded
        );
    }
    for (codec, picture, why) in missing {
        println!("  {:<8} {:<5} {:<8} not measured: {why}", "baresip", codec.name(), picture_name(*picture));
    }
    println!("  ratios callbox / baresip (same codec and picture):");
    let mut ratios = Vec::new();
    for c in rows.iter().filter(|m| m.side == "callbox") {
        let Some(b) = rows.iter().find(|b| b.side == "baresip" && b.codec == c.codec && b.picture == c.picture) else {
            continue;
        };
        let (cpu, rss) = (ratio(c.cpu_per_minute(), b.cpu_per_minute()), ratio(c.rss_mb(), b.rss_mb()));
        let show = |r: Option<f64>| r.map(|r| format!("{r:.2}x")).unwrap_or_else(|| "-".into());
        println!("    {} {}: CPU {}, peak RSS {}", c.codec.name(), picture_name(c.picture), show(cpu), show(rss));
        ratios
            .push(json!({ "codec": c.codec.name(), "picture": picture_name(c.picture), "cpu": cpu, "peak_rss": rss }));
    }
    let json_rows: Vec<_> = rows
        .iter()
        .map(|m| {
            json!({
                "side": m.side,
                "codec": m.codec.name(),
                "picture": picture_name(m.picture),
                "call_seconds": (m.call_seconds * 10.0).round() / 10.0,
                "cpu_seconds": (m.cpu_seconds * 100.0).round() / 100.0,
                "cpu_seconds_per_60s": (m.cpu_per_minute() * 100.0).round() / 100.0,
                "peak_rss_kb": m.peak_rss_kb,
                "far_end_frames_decoded": m.far_end_decoded,
                "answerer_frames_decoded": m.answerer_decoded,
            })
        })
        .collect();
    println!(
        "BENCH_JSON {}",
        json!({
            "seconds": o.seconds,
            "video": "640x480@30",
            "no_audio_processing": o.no_audio_processing,
            "machine_before": before,
            "machine_after": after,
            "rows": json_rows,
            "ratios": ratios,
        })
    );
}

async fn bench(stack: &Stack, o: &Options) -> Result<(), BenchError> {
    let before = machine();
    let mut rows = Vec::new();
    let mut run = 0;
    // callbox first: the baresip processes stay alive (idle) until the stack stops.
    for &codec in &o.codecs {
        for &picture in &o.pictures {
            run += 1;
            let m = measure_callbox(stack, o, codec, picture, run).await?;
            check_media(&m)?;
            rows.push(m);
            tokio::time::sleep(SETTLE).await;
        }
    }
    let mut missing = Vec::new();
    for &codec in &o.codecs {
        for &picture in &o.pictures {
            match baresip_unavailable(codec, picture) {
                Some(why) => missing.push((codec, picture, why)),
                None => {
                    let m = measure_baresip(stack, codec, o.seconds).await?;
                    check_media(&m)?;
                    rows.push(m);
                }
            }
        }
    }
    report(o, &rows, &missing, &before, &machine());
    Ok(())
}

async fn run(o: Options) -> Result<(), BenchError> {
    let stack = Stack::start(StackOptions::default()).await?;
    let result = bench(&stack, &o).await;
    if result.is_err() {
        stack.dump_logs();
    }
    result
}

fn main() -> ExitCode {
    callbox_tests::appliance::program_main("bench_vs_baresip", USAGE, parse_args, run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(side: &'static str, far: u64, near: u64) -> Measurement {
        Measurement {
            side,
            codec: Codec::Vp8,
            picture: SimPicture::Bars,
            call_seconds: 30.0,
            cpu_seconds: 3.0,
            peak_rss_kb: 10_240,
            far_end_decoded: far,
            answerer_decoded: near,
        }
    }

    #[test]
    fn a_call_without_video_at_either_end_fails_the_run() {
        assert!(check_media(&m("baresip", 900, 880)).is_ok());
        assert!(check_media(&m("baresip", 0, 880)).is_err(), "nothing at the caller");
        assert!(check_media(&m("callbox", 900, 0)).is_err(), "nothing at the answerer");
        assert_eq!(m("callbox", 1, 1).cpu_per_minute(), 6.0);
        assert_eq!(m("callbox", 1, 1).rss_mb(), 10.0);
    }

    #[test]
    fn baresip_is_only_measured_where_it_can_send_the_picture() {
        assert!(baresip_unavailable(Codec::Vp8, SimPicture::Pattern).is_some(), "fakevideo is still");
        if std::path::Path::new(BARESIP_MODULES).join("vp8.so").exists() {
            assert_eq!(baresip_unavailable(Codec::Vp8, SimPicture::Bars), None);
        }
    }

    #[test]
    fn options_parse() {
        let a = |v: &[&str]| parse_args(v.iter().map(|s| s.to_string()));
        let o = a(&[]).unwrap().unwrap();
        assert_eq!((o.seconds, o.codecs.len(), o.pictures.len()), (60, 2, 2));
        let o = a(&["--seconds", "10", "--codecs", "vp8", "--pictures", "bars"]).unwrap().unwrap();
        assert_eq!((o.seconds, o.codecs, o.pictures), (10, vec![Codec::Vp8], vec![SimPicture::Bars]));
        assert!(a(&["--help"]).unwrap().is_none());
        assert!(a(&["--seconds", "1"]).is_err() && a(&["--codecs", "vp9"]).is_err() && a(&["--x"]).is_err());
    }
}

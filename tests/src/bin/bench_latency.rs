//! The `bench_latency` program (`scripts/bench-latency`, inside `tests/netns-run`): glass-to-glass video and
//! mouth-to-ear audio latency of a 1:1 call between two in-process appliances through the local stack
//! (`callbox_tests::latency`), printed as a table (median, 95th percentile, maximum) plus one machine-readable
//! JSON line (prefixed `BENCH_JSON `).

use callbox_tests::latency::{measure, percentiles, LatencyOptions, LatencyReport};
use callbox_tests::{HarnessError, Stack, StackOptions};
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str =
    "usage: bench_latency [--seconds N] [--warmup N] [--video WxH@FPS] [--vp8] [--screen-fps N | --no-screen]
                    [--no-audio-processing]
  --seconds N            how long the figures are collected (default 20: 600 frames and 48 tone bursts)
  --warmup N             seconds of call before that (default 3)
  --video WxH@FPS        the video both ways (default 640x480@30)
  --vp8                  VP8 preferred (default H.264)
  --screen-fps N         the receiver's in-memory screen is redrawn at N fps (default 30)
  --no-screen            no screen: the video figures end at the decoder
  --no-audio-processing  echo cancellation and noise suppression off (default on, as shipped)
  --help                 this text
environment: RUST_LOG (default warn,callbox=info)
Runs inside the test network namespace: launch it through scripts/bench-latency (or tests/netns-run).";

/// Why the benchmark failed.
#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("test stack: {0}")]
    Stack(#[from] HarnessError),
    #[error("{0}")]
    Latency(#[from] callbox_tests::latency::LatencyError),
    #[error("{0}")]
    Failed(String),
}

/// `Ok(None)` for `--help`.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<LatencyOptions>, String> {
    let mut o = LatencyOptions::default();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let number = |name: &str, v: String, max: u64| match v.parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(format!("{name}: '{v}' is not a number from 1 to {max}")),
        };
        match arg.as_str() {
            "--help" | "-h" => return Ok(None),
            "--seconds" => o.measure = Duration::from_secs(number("--seconds", value("--seconds")?, 3600)?),
            "--warmup" => o.warmup = Duration::from_secs(number("--warmup", value("--warmup")?, 60)?),
            "--video" => {
                let v = value("--video")?;
                o.video = callbox_tests::bench::parse_video(&v)
                    .ok_or(format!("--video: '{v}' is not WxH@FPS (even sizes, 1 to 60 fps)"))?;
            }
            "--vp8" => o.vp8 = true,
            "--screen-fps" => o.screen_fps = Some(number("--screen-fps", value("--screen-fps")?, 120)? as u32),
            "--no-screen" => o.screen_fps = None,
            "--no-audio-processing" => o.audio_processing = false,
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(Some(o))
}

fn row(label: &str, samples: &[Duration]) -> serde_json::Value {
    match percentiles(samples) {
        Some((median, p95, max)) => {
            println!("  {label:<44} {:>5} {median:>8.1} {p95:>8.1} {max:>8.1}", samples.len());
            json!({ "n": samples.len(), "median_ms": (median * 10.0).round() / 10.0,
                    "p95_ms": (p95 * 10.0).round() / 10.0, "max_ms": (max * 10.0).round() / 10.0 })
        }
        None => {
            println!("  {label:<44} {:>5} {:>8} {:>8} {:>8}", 0, "-", "-", "-");
            serde_json::Value::Null
        }
    }
}

fn print(o: &LatencyOptions, r: &LatencyReport) {
    let (w, h, fps) = o.video;
    let codec = if o.vp8 { "VP8" } else { "H.264" };
    let screen = o.screen_fps.map_or("no screen".to_string(), |f| format!("screen {w}x{h} at {f} fps"));
    println!(
        "latency of a 1:1 call through Janus, {w}x{h}@{fps} {codec}, {screen}, {} s measured",
        o.measure.as_secs()
    );
    println!("  {:<44} {:>5} {:>8} {:>8} {:>8}", "figure (ms)", "n", "median", "p95", "max");
    let video = json!({
        "capture_to_delivered": row("video: capture -> taken from the camera", &r.capture_to_delivered),
        "capture_to_decoded": row("video: capture -> decoded at the far end", &r.capture_to_decoded),
        "decoded_to_screen": row("video: decoded -> presented on the far screen", &r.decoded_to_screen),
        "glass_to_glass": row("video: capture -> presented (glass to glass)", &r.capture_to_screen),
        "frames_captured": r.frames_captured,
    });
    let audio = json!({
        "mouth_to_ear": row("audio: burst onset mic -> far speaker", &r.mouth_to_ear),
        "capture_to_send": row("audio: mic -> network (sender's own figure)", &r.audio_capture_to_send),
        "playout_delay": row("audio: network -> speaker (receiver's figure)", &r.audio_playout_delay),
        "bursts_sent": r.bursts_sent,
        "unmatched_onsets": r.unmatched_onsets,
    });
    println!(
        "  {} frames captured, {} decoded with their counter, {} presented; {} bursts sent, {} heard, {} unmatched",
        r.frames_captured,
        r.capture_to_decoded.len(),
        r.capture_to_screen.len(),
        r.bursts_sent,
        r.mouth_to_ear.len(),
        r.unmatched_onsets
    );
    let report = json!({
        "video": video,
        "audio": audio,
        "options": { "video": format!("{w}x{h}@{fps}"), "codec": codec, "screen_fps": o.screen_fps,
                     "audio_processing": o.audio_processing, "seconds": o.measure.as_secs() },
    });
    println!("BENCH_JSON {report}");
}

async fn run(o: LatencyOptions) -> Result<(), BenchError> {
    let stack = Stack::start(StackOptions::default()).await?;
    let result = measure(&stack, &o).await;
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            stack.dump_logs();
            return Err(e.into());
        }
    };
    print(&o, &report);
    if report.capture_to_decoded.is_empty() || report.mouth_to_ear.is_empty() {
        return Err(BenchError::Failed("no frame or no burst made it to the far end".into()));
    }
    Ok(())
}

fn main() -> ExitCode {
    callbox_tests::appliance::program_main("bench_latency", USAGE, parse_args, run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        let a = |v: &[&str]| parse_args(v.iter().map(|s| s.to_string()));
        let o = a(&[]).unwrap().unwrap();
        assert_eq!((o.measure, o.screen_fps, o.audio_processing), (Duration::from_secs(20), Some(30), true));
        let o = a(&["--seconds", "5", "--no-screen", "--vp8", "--no-audio-processing"]).unwrap().unwrap();
        assert_eq!((o.measure, o.screen_fps, o.vp8, o.audio_processing), (Duration::from_secs(5), None, true, false));
        assert!(a(&["--help"]).unwrap().is_none());
        assert!(a(&["--seconds", "0"]).is_err() && a(&["--video", "1x1"]).is_err() && a(&["--x"]).is_err());
    }
}

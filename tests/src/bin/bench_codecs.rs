//! `bench_codecs`: CPU cost and output bitrate of every video encoder this machine's GStreamer has
//! (hardware V4L2 ones where present), at 640x480@30 and 1280x720@30, through the firmware's own
//! capture-to-RTP encoder pipeline fed with the test pattern (issue 3's figure). CPU is the process's
//! user+system time (getrusage) over the run, per second of video encoded.
//!
//! Usage: bench_codecs [SECONDS] [--format i420|nv12|yuyv] [--fast] [--only ELEMENT]
//!   SECONDS   of video per encoder and size (default 10)
//!   --only    benchmark this encoder element only
//!   --format  the camera format fed in (default i420; nv12/yuyv add the conversion the camera needs)
//!   --fast    push as fast as the encoder takes frames instead of in real time (reports its top rate)

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callbox::devices::{CameraPixelFormat, CaptureFormat, CapturedFrame};
use callbox::frame::draw_test_frame;
use callbox::media::video::{
    available_encoders, convert_i420, CodecPolicy, EncoderCounters, EncoderSettings, GstRegistry, VideoEncoder,
};
use callbox::media::VideoCodec;

/// Distinct frames drawn before measuring (then cycled), so drawing is not measured.
const DISTINCT_FRAMES: u32 = 60;
const FPS: u32 = 30;

struct Options {
    seconds: u32,
    format: CameraPixelFormat,
    fast: bool,
    only: Option<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options { seconds: 10, format: CameraPixelFormat::I420, fast: false, only: None };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--fast" => opts.fast = true,
            "--only" => opts.only = Some(args.next().ok_or("--only needs an element")?),
            "--format" => {
                opts.format = match args.next().as_deref() {
                    Some("i420") => CameraPixelFormat::I420,
                    Some("nv12") => CameraPixelFormat::Nv12,
                    Some("yuyv") => CameraPixelFormat::Yuyv,
                    other => return Err(format!("unknown format {other:?}")),
                }
            }
            n => opts.seconds = n.parse().ok().filter(|s| *s > 0).ok_or_else(|| format!("bad SECONDS {n:?}"))?,
        }
    }
    Ok(opts)
}

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

struct Outcome {
    pushed: u64,
    encoded: u64,
    cpu: Duration,
    wall: Duration,
    rtp_bytes: u64,
}

fn run(
    element: &str,
    codec: VideoCodec,
    format: CaptureFormat,
    kbps: u32,
    seconds: u32,
    opts: &Options,
) -> Result<Outcome, String> {
    let frames: Vec<_> = (0..DISTINCT_FRAMES)
        .map(|n| convert_i420(&draw_test_frame(format.width, format.height, n), format.pixel_format))
        .collect::<Option<_>>()
        .ok_or("cannot convert the test pattern")?;
    let mut settings = EncoderSettings::new(codec, kbps, 96, 0x0bad_cafe);
    settings.max_bitrate_kbps = kbps * 2;
    let policy = CodecPolicy { forced_encoder: Some(element.to_owned()), ..CodecPolicy::default() };
    let counters = Arc::new(EncoderCounters::default());
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let mut encoder =
        VideoEncoder::start_for_capture(format, &settings, &policy, &GstRegistry, Arc::clone(&counters), |_| {})
            .map_err(|e| e.to_string())?;
    let total = u64::from(seconds * FPS);
    let period = Duration::from_secs(1) / FPS;
    for i in 0..total {
        if opts.fast {
            // Keep at most two frames in flight: as fast as the encoder goes, without the leaky
            // queue dropping any.
            let deadline = Instant::now() + Duration::from_secs(10);
            while i.saturating_sub(counters.frames_encoded.load(Ordering::Relaxed)) > 2 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(500));
            }
        } else if let Some(wait) =
            (t0 + period * u32::try_from(i).unwrap_or(u32::MAX)).checked_duration_since(Instant::now())
        {
            std::thread::sleep(wait);
        }
        let data = frames[(i % u64::from(DISTINCT_FRAMES)) as usize].clone();
        let frame = CapturedFrame { format, data, timestamp: period * (i as u32), sequence: i as u32 };
        encoder.push_capture(&frame).map_err(|e| e.to_string())?;
    }
    // Drain: wait until the encoder's output stops growing.
    let mut last = counters.frames_encoded.load(Ordering::Relaxed);
    let drain_end = Instant::now() + Duration::from_secs(5);
    while last < total && Instant::now() < drain_end {
        std::thread::sleep(Duration::from_millis(300));
        let now = counters.frames_encoded.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    let outcome = Outcome {
        pushed: total,
        encoded: counters.frames_encoded.load(Ordering::Relaxed),
        cpu: cpu_time().saturating_sub(cpu0),
        wall: t0.elapsed(),
        rtp_bytes: counters.rtp_bytes.load(Ordering::Relaxed),
    };
    if let Some(e) = encoder.error() {
        return Err(e);
    }
    Ok(outcome)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "bench_codecs: {e}\nusage: bench_codecs [SECONDS] [--format i420|nv12|yuyv] [--fast] [--only ELEMENT]"
            );
            return ExitCode::from(2);
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{} x{cores}; {} s of video per run, {:?} input, {}",
        cpu_model(),
        opts.seconds,
        opts.format,
        if opts.fast { "as fast as possible" } else { "real time" }
    );
    println!(
        "{:<13} {:<10} {:>7} {:>8} {:>11} {:>11} {:>10} {:>9}",
        "encoder", "size", "target", "frames", "cpu s/s vid", "cpu % 1core", "RTP kbit/s", "max fps"
    );
    let mut failed = false;
    for codec in [VideoCodec::H264, VideoCodec::Vp8] {
        for element in available_encoders(&GstRegistry, codec) {
            if opts.only.as_deref().is_some_and(|o| o != element) {
                continue;
            }
            // Warm-up (plugin loading, first allocations), not reported.
            let warm = CaptureFormat { pixel_format: opts.format, width: 320, height: 240, fps: FPS };
            let _ = run(element, codec, warm, 300, 1, &opts);
            for (w, h, kbps) in [(640, 480, 800), (1280, 720, 1500)] {
                let format = CaptureFormat { pixel_format: opts.format, width: w, height: h, fps: FPS };
                match run(element, codec, format, kbps, opts.seconds, &opts) {
                    Ok(o) => {
                        let video_s = o.encoded as f64 / f64::from(FPS);
                        let per_s = if video_s > 0.0 { o.cpu.as_secs_f64() / video_s } else { f64::NAN };
                        let kbit = if video_s > 0.0 { o.rtp_bytes as f64 * 8.0 / 1000.0 / video_s } else { f64::NAN };
                        let max_fps = if opts.fast {
                            format!("{:.0}", o.encoded as f64 / o.wall.as_secs_f64())
                        } else {
                            "-".to_owned()
                        };
                        println!(
                            "{:<13} {:<10} {:>7} {:>8} {:>11.3} {:>11.1} {:>10.0} {:>9}",
                            element,
                            format!("{w}x{h}"),
                            kbps,
                            format!("{}/{}", o.encoded, o.pushed),
                            per_s,
                            per_s * 100.0,
                            kbit,
                            max_fps
                        );
                    }
                    Err(e) => {
                        failed = true;
                        println!("{element:<13} {w}x{h}: failed: {e}");
                    }
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

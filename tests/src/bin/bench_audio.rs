//! `bench_audio`: the audio figures of issue 3 — the echo canceller's ERLE for each configuration on the
//! synthetic intercom scenario (`callbox::media::echo::run_echo_scenario`), the CPU time of echo
//! cancellation + noise suppression per second of audio, and the playout buffer's added latency (its
//! target and actual delay with no jitter and under simulated network jitter). Prints tables and one
//! machine-readable JSON line (prefixed `BENCH_JSON `). Run it in release:
//! `cargo run --release -p callbox-tests --bin bench_audio`.

use callbox::devices::AUDIO_FRAME_SAMPLES;
use callbox::media::echo::{
    run_echo_scenario, AudioProcessingConfig, EchoMeasurement, EchoScenario, EchoSuppressionLevel,
};
use callbox::media::playout::{OpusTestSource, Playout, PlayoutConfig};
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: bench_audio [--playout-seconds N]
  --playout-seconds N   length of each simulated playout run (default 60)
  --help                this text";

fn main() -> ExitCode {
    let mut playout_seconds = 60u32;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next().map(|v| v.parse::<u32>())) {
            ("--playout-seconds", Some(Ok(n))) if (5..=3600).contains(&n) => playout_seconds = n,
            ("--help" | "-h", _) => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let echo = match bench_echo() {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("bench_audio: echo canceller: {e}");
            return ExitCode::FAILURE;
        }
    };
    let playout = match bench_playout(playout_seconds) {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("bench_audio: playout: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("BENCH_JSON {}", json!({ "echo": echo, "playout": playout }));
    ExitCode::SUCCESS
}

fn bench_echo() -> Result<Vec<serde_json::Value>, String> {
    let base = AudioProcessingConfig::default();
    let configs: Vec<(&str, AudioProcessingConfig)> = vec![
        ("default (high, ext+DA, NS)", base.clone()),
        (
            "moderate suppression",
            AudioProcessingConfig { echo_suppression: EchoSuppressionLevel::Moderate, ..base.clone() },
        ),
        ("low suppression", AudioProcessingConfig { echo_suppression: EchoSuppressionLevel::Low, ..base.clone() }),
        (
            "plain filter, no delay info",
            AudioProcessingConfig { extended_filter: false, delay_agnostic: false, ..base.clone() },
        ),
        ("delay hint = true delay", base.clone()),
        ("AEC off (NS + HPF only)", AudioProcessingConfig { echo_cancellation: false, ..base.clone() }),
    ];
    let scenarios = [
        ("40 ms, -8 dB", EchoScenario::default()),
        ("120 ms, -3 dB", EchoScenario { echo_delay_ms: 120, echo_gain_db: -3.0, ..EchoScenario::default() }),
        ("40 ms, -8 dB, noise -45 dBFS", EchoScenario { noise_dbfs: -45.0, ..EchoScenario::default() }),
    ];
    println!("Echo canceller on the synthetic intercom scenario (20 s: far only, near only, double talk)");
    println!(
        "{:<30} {:<29} {:>8} {:>8} {:>8} {:>9} {:>7} {:>8} {:>10}",
        "config", "echo path", "ERLE dB", "1st s", "post-DT", "near dB", "corr", "DT dB", "CPU ms/s"
    );
    let mut rows = Vec::new();
    for (scenario_name, scenario) in &scenarios {
        for (name, config) in &configs {
            let mut config = config.clone();
            if name.starts_with("delay hint") {
                config.stream_delay_ms = Some(scenario.echo_delay_ms);
            }
            let m = run_echo_scenario(&config, scenario).map_err(|e| format!("{name}: {e}"))?;
            let cpu_ms_per_s = cpu_ms_per_second(&m);
            println!(
                "{:<30} {:<29} {:>8.1} {:>8.1} {:>8.1} {:>9.1} {:>7.2} {:>8.1} {:>10.2}",
                name,
                scenario_name,
                m.erle_db,
                m.erle_first_second_db,
                m.erle_after_double_talk_db,
                m.near_kept_db,
                m.near_correlation,
                m.double_talk_kept_db,
                cpu_ms_per_s
            );
            rows.push(json!({
                "config": name,
                "scenario": scenario_name,
                "erle_db": m.erle_db,
                "erle_first_second_db": m.erle_first_second_db,
                "erle_after_double_talk_db": m.erle_after_double_talk_db,
                "near_kept_db": m.near_kept_db,
                "near_correlation": m.near_correlation,
                "double_talk_kept_db": m.double_talk_kept_db,
                "cpu_ms_per_audio_second": cpu_ms_per_s,
            }));
        }
    }
    println!("(ERLE over echo-only audio after 5 s; near dB: output/near-end energy in near-only segments;");
    println!(" corr: best normalised correlation with the near end; DT dB: output/near-end energy in double talk;");
    println!(" CPU: this thread's CPU time in render + capture processing per second of audio)\n");
    Ok(rows)
}

fn cpu_ms_per_second(m: &EchoMeasurement) -> f64 {
    m.processing_cpu.as_secs_f64() * 1000.0 / m.audio_seconds.max(1e-9)
}

/// xorshift64*: deterministic jitter.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec passed.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// Simulates a 20 ms Opus stream (5 ms network delay plus uniform jitter of `jitter_ms`) played by a
/// speaker ticking every 10 ms.
fn bench_playout(seconds: u32) -> Result<Vec<serde_json::Value>, String> {
    println!("Playout buffer (20 ms Opus packets, 5 ms network delay + uniform jitter, {seconds} s each)");
    println!(
        "{:<12} {:>10} {:>13} {:>13} {:>6} {:>10} {:>9} {:>8} {:>10}",
        "jitter", "target ms", "mean delay ms", "max delay ms", "late", "concealed", "inserted", "dropped", "CPU ms/s"
    );
    let mut rows = Vec::new();
    for jitter_ms in [0u32, 30, 60] {
        let mut playout = Playout::new(PlayoutConfig::default()).map_err(|e| e.to_string())?;
        let mut source = OpusTestSource::new(440.0, -12.0, 32_000, 1, 1).map_err(|e| e.to_string())?;
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ u64::from(jitter_ms));
        let packets = seconds as usize * 50;
        let mut arrivals = Vec::with_capacity(packets);
        for k in 0..packets {
            let p = source.next_packet().map_err(|e| e.to_string())?;
            let jitter = Duration::from_secs_f64(rng.unit() * f64::from(jitter_ms) / 1000.0);
            let at = Duration::from_millis(20 * (k as u64 + 1) + 5) + jitter;
            arrivals.push((at, p));
        }
        arrivals.sort_by_key(|(at, _)| *at);
        let mut next = 0;
        let mut frame = [0i16; AUDIO_FRAME_SAMPLES];
        let mut delays = Vec::new();
        let mut cpu = Duration::ZERO;
        let frames = seconds as usize * 100;
        for j in 0..frames {
            let now = Duration::from_millis(10 * j as u64 + 3);
            let started = thread_cpu_time();
            while next < arrivals.len() && arrivals[next].0 <= now {
                let (at, p) = &arrivals[next];
                playout.push(p.seq, p.timestamp, &p.payload, *at);
                next += 1;
            }
            playout.next_frame(now, &mut frame);
            cpu += thread_cpu_time().saturating_sub(started);
            // Steady state: after the first 5 s.
            if j >= 500 {
                delays.push(f64::from(playout.stats().playout_delay_ms));
            }
        }
        let stats = playout.stats();
        let mean = delays.iter().sum::<f64>() / delays.len().max(1) as f64;
        let max = delays.iter().copied().fold(0.0, f64::max);
        let cpu_ms_per_s = cpu.as_secs_f64() * 1000.0 / f64::from(seconds);
        println!(
            "{:<12} {:>10} {:>13.1} {:>13.0} {:>6} {:>10} {:>9} {:>8} {:>10.2}",
            format!("0-{jitter_ms} ms"),
            stats.target_delay_ms,
            mean,
            max,
            stats.late_dropped,
            stats.concealed,
            stats.frames_inserted,
            stats.frames_dropped,
            cpu_ms_per_s
        );
        rows.push(json!({
            "jitter_ms": jitter_ms,
            "target_delay_ms": stats.target_delay_ms,
            "mean_playout_delay_ms": mean,
            "max_playout_delay_ms": max,
            "late_dropped": stats.late_dropped,
            "concealed_frames": stats.concealed,
            "fec_recovered_frames": stats.fec_recovered,
            "frames_inserted": stats.frames_inserted,
            "frames_dropped": stats.frames_dropped,
            "cpu_ms_per_audio_second": cpu_ms_per_s,
        }));
    }
    println!("(delay: the playout delay over the fastest packet's arrival, i.e. the buffering the playout adds;");
    println!(" concealed: lost or inserted frames; CPU: Opus decoding + buffer per second)");
    Ok(rows)
}

//! The `bench_first_press` program (`scripts/bench-first-press`, inside `tests/netns-run`): issue 17's "first press
//! after start". Starts `callbox run` (the release binary, the `sim` board) as a fresh process, presses its doorbell
//! (the `c` key on its stdin) as soon as it logs "appliance ready", and measures press → the monitor's
//! `IncomingCall` (the far end ringing, an in-process appliance on the local stack); then presses again a few
//! times in the same process (each call declined with 486) for the warm figure. Repeats with a new process per
//! start, optionally after dropping the kernel's page cache (`--drop-caches`: a fresh boot's cold disk). Prints a
//! table and one `BENCH_JSON {...}` line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use callbox::client::{CallClient, EventStream};
use callbox_tests::callbox_process::{write_config, CallboxProcess};
use callbox_tests::{HarnessError, Stack, StackOptions};
use serde_json::json;

const USAGE: &str = "usage: bench_first_press [--starts S] [--presses P] [--drop-caches] [--callbox PATH] [--show-log]
  --starts S       processes started, one first press each (default 3)
  --presses P      presses per process, the first included (default 4)
  --drop-caches    sync and drop the kernel's page cache before each start (needs root): a cold disk
  --callbox PATH   the firmware binary (default: callbox next to this program)
  --gate-log F     RUST_LOG of the measured process (default info)
  --no-registry    each start with GST_REGISTRY at a new, empty path: GStreamer has no saved registry and scans
                   its plugins, as on a first boot or a service that cannot write its registry
  --show-log       print the measured process's log lines from each first press to the far end's ringing
  --help           this text
Runs inside the test network namespace: launch it through scripts/bench-first-press (or tests/netns-run).";

/// Bound on every wait (only there so that a broken run fails instead of hanging).
const WAIT: Duration = Duration::from_secs(30);
/// Pause between a declined call and the next press: Janus's sip handles settle.
const BETWEEN_PRESSES: Duration = Duration::from_millis(1500);

#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("test stack: {0}")]
    Stack(#[from] HarnessError),
    #[error("{0}")]
    Failed(String),
}

#[derive(Debug, Clone)]
struct Options {
    starts: usize,
    presses: usize,
    drop_caches: bool,
    callbox: Option<PathBuf>,
    gate_log: String,
    show_log: bool,
    no_registry: bool,
}

/// `Ok(None)` for `--help`.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut o = Options {
        starts: 3,
        presses: 4,
        drop_caches: false,
        callbox: None,
        gate_log: "info".into(),
        show_log: false,
        no_registry: false,
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let count = |name: &str, v: String| match v.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => Ok(n),
            _ => Err(format!("{name}: '{v}' is not a number from 1 to 100")),
        };
        match arg.as_str() {
            "--help" | "-h" => return Ok(None),
            "--starts" => o.starts = count("--starts", value("--starts")?)?,
            "--presses" => o.presses = count("--presses", value("--presses")?)?,
            "--drop-caches" => o.drop_caches = true,
            "--callbox" => o.callbox = Some(PathBuf::from(value("--callbox")?)),
            "--gate-log" => o.gate_log = value("--gate-log")?,
            "--show-log" => o.show_log = true,
            "--no-registry" => o.no_registry = true,
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(Some(o))
}

/// The kernel's page cache, dentries and inodes dropped (after a sync): the next start reads from the disk.
fn drop_caches() -> Result<(), BenchError> {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .map_err(|e| BenchError::Failed(format!("cannot drop the page cache (root needed): {e}")))
}

/// min / median / max in milliseconds.
fn summary(samples: &[f64]) -> serde_json::Value {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => serde_json::Value::Null,
        n => {
            let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
            json!({ "n": n, "min_ms": v[0].round(), "median_ms": median.round(), "max_ms": v[n - 1].round() })
        }
    }
}

/// Presses the doorbell and waits for the monitor to ring: press → IncomingCall, in ms; declines the call.
async fn press(
    gate: &mut CallboxProcess,
    monitor: &CallClient,
    events: &mut EventStream,
) -> Result<(f64, Instant), BenchError> {
    let pressed = Instant::now();
    gate.keys("c").await;
    let incoming = tokio::time::timeout(WAIT, monitor.next_incoming_call(events))
        .await
        .map_err(|_| BenchError::Failed(format!("the monitor did not ring within {WAIT:?} of the press")))?
        .ok_or_else(|| BenchError::Failed("the monitor's client stopped".into()))?;
    let ms = pressed.elapsed().as_secs_f64() * 1000.0;
    incoming.reject(486).await.map_err(|e| BenchError::Failed(format!("cannot decline: {e}")))?;
    Ok((ms, pressed))
}

async fn run(o: Options) -> Result<(), BenchError> {
    let program = match &o.callbox {
        Some(p) => p.clone(),
        None => callbox_tests::callbox_process::callbox_binary(),
    };
    let stack = Stack::start(StackOptions::default()).await?;
    let monitor = callbox_tests::bench::appliance(&stack, "monitor-p", (320, 240, 15), false)
        .await
        .map_err(|e| BenchError::Failed(format!("monitor: {e}")))?;
    let mut events = monitor.events();
    let (config, _key) = write_config(&stack, "gate", &stack.janus_ws_url(), &stack.token_url(), "monitor-p");

    let (mut firsts, mut laters, mut readies) = (Vec::new(), Vec::new(), Vec::new());
    for start in 1..=o.starts {
        if o.drop_caches {
            drop_caches()?;
        }
        let started = Instant::now();
        let registry = stack.dir().join(format!("gst-registry-{start}.bin"));
        let registry = registry.to_str().unwrap_or_default();
        let mut env = vec![("RUST_LOG", o.gate_log.as_str())];
        if o.no_registry {
            env.push(("GST_REGISTRY", registry));
        }
        let mut gate = CallboxProcess::start_program(&program, &config, stack.dir(), &env, false);
        let ready = gate.wait_log(started, WAIT, |l| l.contains("appliance ready")).await;
        if ready.is_none() {
            let log: Vec<String> = gate.log().into_iter().map(|(_, l)| l).collect();
            return Err(BenchError::Failed(format!("callbox run did not get ready; its log:\n{}", log.join("\n"))));
        }
        let ready_ms = started.elapsed().as_secs_f64() * 1000.0;
        readies.push(ready_ms);
        let mut round = Vec::new();
        for n in 0..o.presses {
            let (ms, pressed) = press(&mut gate, &monitor, &mut events).await?;
            // The declined call ends at both ends before the next press (or the stop).
            tokio::time::sleep(BETWEEN_PRESSES).await;
            if n == 0 && o.show_log {
                println!("start {start}: the measured process's log from the first press to the far end's ringing:");
                for (at, line) in gate.log().into_iter().filter(|(at, _)| *at >= pressed) {
                    println!("  +{:>6.1} ms  {line}", at.duration_since(pressed).as_secs_f64() * 1000.0);
                }
            }
            round.push(ms);
        }
        println!(
            "start {start}: ready {ready_ms:.0} ms after the process started; press -> far-end ringing: first {:.0} ms, \
             then {}",
            round[0],
            round[1..].iter().map(|m| format!("{m:.0}")).collect::<Vec<_>>().join(", ")
        );
        firsts.push(round[0]);
        laters.extend_from_slice(&round[1..]);
        let status = gate.stop().await;
        if !status.success() {
            return Err(BenchError::Failed(format!("callbox run exited with {status}")));
        }
        // The monitor's events of the declined calls are not needed any more.
        events = monitor.events();
    }
    monitor.shutdown().await;

    let mut cold = if o.drop_caches { "page cache dropped before each start" } else { "page cache warm" }.to_owned();
    if o.no_registry {
        cold.push_str(", no saved GStreamer registry");
    }
    println!("\nfirst press after start ({cold}; {}):", program.display());
    println!("  {:<44} {:>4} {:>9} {:>9} {:>9}", "figure", "n", "min ms", "median", "max");
    for (label, v) in [
        ("process start -> appliance ready", &readies),
        ("first press -> far-end ringing", &firsts),
        ("later presses -> far-end ringing", &laters),
    ] {
        let s = summary(v);
        let ms = |k: &str| s[k].as_f64().map_or("-".to_owned(), |m| format!("{m:.0}"));
        println!("  {label:<44} {:>4} {:>9} {:>9} {:>9}", v.len(), ms("min_ms"), ms("median_ms"), ms("max_ms"));
    }
    let out = json!({
        "drop_caches": o.drop_caches,
        "no_registry": o.no_registry,
        "start_to_ready": summary(&readies),
        "first_press_to_far_ringing": summary(&firsts),
        "later_press_to_far_ringing": summary(&laters),
    });
    println!("BENCH_JSON {out}");
    Ok(())
}

fn main() -> ExitCode {
    callbox_tests::appliance::program_main("bench_first_press", USAGE, parse_args, run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_min_median_max() {
        assert_eq!(summary(&[30.0, 10.0, 20.0]), json!({ "n": 3, "min_ms": 10.0, "median_ms": 20.0, "max_ms": 30.0 }));
        assert_eq!(summary(&[]), serde_json::Value::Null);
    }

    #[test]
    fn arguments_are_checked() {
        let o = parse_args(["--starts", "2", "--drop-caches"].map(String::from)).unwrap().unwrap();
        assert_eq!((o.starts, o.presses, o.drop_caches), (2, 4, true));
        assert!(parse_args(["--presses", "0"].map(String::from)).is_err());
        assert!(parse_args(["--bogus"].map(String::from)).is_err());
    }
}

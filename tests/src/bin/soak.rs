//! The `soak` program (`scripts/soak`, inside `tests/netns-run`): N consecutive calls through one appliance
//! (`callbox run` as its own process) on the real local stack — 1:1 and group calls, 15 s tokens, random hang-ups,
//! Janus restarted in the middle (`callbox_tests::soak`) — then its RSS, file descriptors, threads and tokio tasks
//! at the start and the end, the calls placed, connected and failed (with the reasons), and a verdict: a failed
//! call, fds, threads or tasks grown, or RSS grown past the bound make the exit status 1.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use callbox_tests::soak::{Figures, SoakError, SoakOptions, SoakReport};
use callbox_tests::{Stack, StackOptions};

const USAGE: &str = "usage: soak [--calls N] [--seed S] [--max-talk SECS] [--token-ttl SECS] [--rss-bound-mb MB]
  --calls N          calls counted, after a warm-up of one call of each kind (default 200)
  --seed S           the seed of the random choices (default: from the clock; printed either way)
  --max-talk SECS    longest talk before the random hang-up (default 6)
  --token-ttl SECS   lifetime of the tokens the stack serves (default 15: refreshed during the run)
  --sample-every N   the appliance's figures every N calls too (default 25; 0: start and end only)
  --rss-bound-mb MB  RSS growth over the second half of the run (from the first sample after N/2 calls, else the
                     start, to the end) judged a leak past this (default 4)
  --no-janus-restart no Janus restart in the middle
  --video WxH@FPS    every party's video (default 320x240@15)
  --callbox PATH     the firmware binary (default: callbox next to this program)
  --plan             print what each call will be (kind, hang-up side and moment) for this seed, run nothing
  --help             this text
Runs inside the test network namespace: launch it through scripts/soak (or tests/netns-run).";

#[derive(Debug, Clone)]
struct Options {
    soak: SoakOptions,
    token_ttl: Duration,
    rss_bound_kb: u64,
    plan_only: bool,
}

fn parse_args(args: Vec<String>) -> Result<Option<Options>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate this program: {e}"))?;
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64);
    let mut o = Options {
        soak: SoakOptions {
            calls: 200,
            seed: seed.unwrap_or(1) % 1_000_000_007,
            callbox: exe.with_file_name("callbox"),
            board_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../board"),
            max_talk: Duration::from_secs(6),
            janus_restart: true,
            sample_every: 25,
            video: (320, 240, 15),
        },
        token_ttl: Duration::from_secs(15),
        rss_bound_kb: 4 * 1024,
        plan_only: false,
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let number = |name: &str, v: String, max: u64| match v.parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(format!("{name}: '{v}' is not a number from 0 to {max}")),
        };
        match arg.as_str() {
            "--help" | "-h" => return Ok(None),
            "--calls" => o.soak.calls = number("--calls", value("--calls")?, 100_000)?.max(1) as u32,
            "--seed" => o.soak.seed = number("--seed", value("--seed")?, u64::MAX)?,
            "--max-talk" => o.soak.max_talk = Duration::from_secs(number("--max-talk", value("--max-talk")?, 600)?),
            "--token-ttl" => {
                o.token_ttl = Duration::from_secs(number("--token-ttl", value("--token-ttl")?, 86_400)?.max(5))
            }
            "--sample-every" => {
                o.soak.sample_every = number("--sample-every", value("--sample-every")?, 100_000)? as u32
            }
            "--rss-bound-mb" => o.rss_bound_kb = number("--rss-bound-mb", value("--rss-bound-mb")?, 4096)? * 1024,
            "--plan" => o.plan_only = true,
            "--no-janus-restart" => o.soak.janus_restart = false,
            "--video" => {
                let v = value("--video")?;
                o.soak.video = callbox_tests::bench::parse_video(&v)
                    .ok_or(format!("--video: '{v}' is not WxH@FPS (even sizes, 1 to 60 fps)"))?;
            }
            "--callbox" => o.soak.callbox = PathBuf::from(value("--callbox")?),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(Some(o))
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("{0}")]
    Soak(#[from] SoakError),
    #[error("test stack: {0}")]
    Stack(#[from] callbox_tests::HarnessError),
    #[error("{0}")]
    Verdict(String),
}

fn row(label: &str, start: u64, end: u64, unit: &str) {
    let diff = end as i64 - start as i64;
    println!("  {label:<14} {start:>10} {end:>10} {diff:>+10} {unit}");
}

fn print_report(r: &SoakReport, o: &Options) -> Result<(), String> {
    let (Some(start), Some(end)) = (r.start(), r.end()) else { return Err("no figures".into()) };
    println!("\n== soak: {} calls, seed {}, {:.1} min ==", o.soak.calls, r.seed, r.elapsed.as_secs_f64() / 60.0);
    println!(
        "appliance under test: callbox run (pid {}), read from /proc/{}; tasks from its SIGUSR2 line",
        r.pid, r.pid
    );
    println!("  {:<14} {:>10} {:>10} {:>10}", "figure", "start", "end", "change");
    row("RSS", start.rss_kb, end.rss_kb, "kB");
    row("fds", start.fds, end.fds, "");
    row("threads", start.threads, end.threads, "");
    row("tokio tasks", start.tasks, end.tasks, "");
    if let (Some(a), Some(b)) = (start.heap_kb, end.heap_kb) {
        row("heap in use", a, b, "kB");
    }
    if r.samples.len() > 2 {
        println!("  samples (after N calls: RSS kB / fds / threads / tasks / heap in use kB):");
        for f in &r.samples {
            let heap = f.heap_kb.map(|k| k.to_string()).unwrap_or_else(|| "?".into());
            println!(
                "    {:>6}: {:>8} / {:>4} / {:>4} / {:>4} / {:>8}",
                f.after_calls, f.rss_kb, f.fds, f.threads, f.tasks, heap
            );
        }
    }
    let sum = |m: &std::collections::BTreeMap<_, u32>| m.values().sum::<u32>();
    println!(
        "calls: {} placed, {} connected, {} hung up while ringing (on purpose), {} failed",
        sum(&r.placed),
        sum(&r.connected),
        r.cancelled_ringing,
        r.failures()
    );
    for (kind, n) in &r.placed {
        println!("  {kind:?}: {n} placed, {} connected", r.connected.get(kind).copied().unwrap_or(0));
    }
    for (side, n) in &r.hang_ups {
        println!("  ended by {side:?}: {n}");
    }
    for (why, n) in &r.failed {
        println!("  failed {n}x: {why}");
    }
    if let Some(d) = r.janus_recovery {
        println!("Janus killed mid-call -> the appliance registered again: {:.1} s", d.as_secs_f64());
    }
    match r.token_fetches {
        Some(n) => println!("tokens swapped in by the appliance ({} s tokens): {n}", o.token_ttl.as_secs()),
        None => println!("tokens swapped in by the appliance: none logged"),
    }
    verdict(start, end, r, o)
}

fn verdict(start: Figures, end: Figures, r: &SoakReport, o: &Options) -> Result<(), String> {
    let mut problems = Vec::new();
    for (what, a, b) in
        [("fds", start.fds, end.fds), ("threads", start.threads, end.threads), ("tasks", start.tasks, end.tasks)]
    {
        if b > a {
            problems.push(format!("{what} grew from {a} to {b}"));
        }
    }
    // The first calls grow the allocator's pools to their working size (RSS grows while the heap in use does
    // not); a leak grows all along. So RSS is judged from the middle of the run on.
    let half = r
        .samples
        .iter()
        .find(|f| f.after_calls >= o.soak.calls / 2 && f.after_calls < o.soak.calls)
        .copied()
        .unwrap_or(start);
    println!(
        "RSS over the second half (after {} calls -> the end): {:+} kB (bound {} kB)",
        half.after_calls,
        end.rss_kb as i64 - half.rss_kb as i64,
        o.rss_bound_kb
    );
    if end.rss_kb > half.rss_kb + o.rss_bound_kb {
        problems.push(format!(
            "RSS grew by {} kB from {} calls to the end, past the bound of {} kB",
            end.rss_kb - half.rss_kb,
            half.after_calls,
            o.rss_bound_kb
        ));
    }
    if r.failures() > 0 {
        problems.push(format!("{} calls failed", r.failures()));
    }
    if o.soak.janus_restart && r.janus_recovery.is_none() {
        problems.push("the Janus restart was not recovered from".into());
    }
    let json = serde_json::json!({
        "calls": o.soak.calls, "seed": r.seed, "minutes": (r.elapsed.as_secs_f64() / 6.0).round() / 10.0,
        "start": {"rss_kb": start.rss_kb, "fds": start.fds, "threads": start.threads, "tasks": start.tasks,
                  "heap_kb": start.heap_kb},
        "end": {"rss_kb": end.rss_kb, "fds": end.fds, "threads": end.threads, "tasks": end.tasks,
                "heap_kb": end.heap_kb},
        "placed": r.placed.values().sum::<u32>(), "connected": r.connected.values().sum::<u32>(),
        "failed": r.failures(), "janus_recovery_ms": r.janus_recovery.map(|d| d.as_millis() as u64),
    });
    println!("SOAK_JSON {json}");
    if problems.is_empty() {
        println!("verdict: no leak, every call went as planned");
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

async fn run(o: Options) -> Result<(), Error> {
    println!("soak: {} calls, seed {} (reproduce with --seed {})", o.soak.calls, o.soak.seed, o.soak.seed);
    if o.plan_only {
        for line in callbox_tests::soak::plans(o.soak.seed, o.soak.calls, o.soak.max_talk) {
            println!("{line}");
        }
        return Ok(());
    }
    let stack = Stack::start(StackOptions { token_ttl: o.token_ttl, ..StackOptions::default() }).await?;
    let result = callbox_tests::soak::run(&stack, &o.soak, |line| println!("{line}")).await;
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            stack.dump_logs();
            return Err(e.into());
        }
    };
    print_report(&report, &o).map_err(Error::Verdict)
}

fn main() -> ExitCode {
    callbox_tests::appliance::program_main("soak", USAGE, parse_args, run)
}

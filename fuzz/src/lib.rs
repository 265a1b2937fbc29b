//! callbox-fuzz: a mutation fuzzer for the parsers of remote and on-disk input, on the stable toolchain, with no
//! dependencies. Each crate's fuzz tests call [`fuzz`] with a target's seeds (its corpus: real messages, files of
//! the repo) and a dictionary of tokens the format uses; [`fuzz`] feeds the target mutated inputs (bit flips,
//! random and "interesting" bytes, insertions and deletions, duplicated ranges, dictionary tokens, splices of two
//! inputs) for a bounded time, keeping a bounded pool of the inputs it made. A panic is reported with the input
//! that caused it (hex) and saved under `$CALLBOX_FUZZ_DIR/crashes/`, to become a regression test.
//!
//! Why not cargo-fuzz: it needs a nightly toolchain and a second, instrumented build of the whole firmware
//! (GStreamer, WebRTC), more than CI's 2 cores can spend; this harness reuses the test build. It has no coverage
//! feedback, so the seeds and dictionaries matter: they put the mutations where the parsers branch.
//!
//! Budget: `CALLBOX_FUZZ_SECS` seconds per target (CI sets it), else 2,000 executions (a quick `cargo test`).
//! With `CALLBOX_FUZZ_DIR` set, each target appends "name executions seconds" to `$CALLBOX_FUZZ_DIR/report.txt`.

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// Inputs made by mutation that are kept to be mutated further.
const POOL: usize = 256;
/// The longest input made.
const MAX_LEN: usize = 64 * 1024;
/// Executions when no time budget is given.
const DEFAULT_EXECUTIONS: u64 = 2_000;

/// A deterministic generator (xorshift64*): a failing run can be repeated with its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: [u8; 10] = [0, 1, 0x7f, 0x80, 0xff, b'"', b'\\', b'\n', b'{', b'%'];

/// One mutation of `input`, in place.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, dictionary: &[&[u8]], other: &[u8]) {
    let len = input.len();
    match rng.below(9) {
        0 if len > 0 => {
            let i = rng.below(len);
            input[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            input[i] = rng.next() as u8;
        }
        2 if len > 0 => {
            let i = rng.below(len);
            input[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        3 => {
            let i = rng.below(len + 1);
            input.insert(i, rng.next() as u8);
        }
        4 if len > 0 => {
            let start = rng.below(len);
            let end = (start + 1 + rng.below(16)).min(len);
            input.drain(start..end);
        }
        5 if len > 0 => {
            let start = rng.below(len);
            let end = (start + 1 + rng.below(64)).min(len);
            let copy = input[start..end].to_vec();
            let at = rng.below(len + 1);
            input.splice(at..at, copy);
        }
        6 if !dictionary.is_empty() => {
            let token = dictionary[rng.below(dictionary.len())];
            let at = rng.below(len + 1);
            input.splice(at..at, token.iter().copied());
        }
        7 if !other.is_empty() => {
            // A splice: our head, the other's tail.
            let cut = rng.below(len + 1);
            let from = rng.below(other.len());
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
        8 if len > 0 => input.truncate(rng.below(len)),
        _ => input.push(rng.next() as u8),
    }
    input.truncate(MAX_LEN);
}

/// The budget from the environment: a time, or a number of executions.
fn budget() -> (Option<Duration>, u64) {
    match std::env::var("CALLBOX_FUZZ_SECS").ok().and_then(|s| s.parse::<f64>().ok()) {
        Some(secs) if secs.is_finite() && secs > 0.0 => (Some(Duration::from_secs_f64(secs)), u64::MAX),
        _ => (None, DEFAULT_EXECUTIONS),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `target` on the seeds, then on mutations of them within the budget; returns how many executions ran.
/// Panics (failing the test) with the offending input when the target panics.
pub fn fuzz(name: &str, seeds: &[&[u8]], dictionary: &[&[u8]], target: impl FnMut(&[u8])) -> u64 {
    let out = std::env::var_os("CALLBOX_FUZZ_DIR").map(std::path::PathBuf::from);
    run(name, seeds, dictionary, budget(), out.as_deref(), target)
}

/// [`fuzz`] with its budget (a time, or a number of executions) and output folder given.
fn run(
    name: &str,
    seeds: &[&[u8]],
    dictionary: &[&[u8]],
    (time, max_executions): (Option<Duration>, u64),
    out: Option<&std::path::Path>,
    mut target: impl FnMut(&[u8]),
) -> u64 {
    let started = Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.bytes().fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b)));
    let mut pool: Vec<Vec<u8>> = seeds.iter().map(|s| s.to_vec()).collect();
    if pool.is_empty() {
        pool.push(Vec::new());
    }
    let mut executions = 0u64;
    let mut execute = |input: &[u8], executions: &mut u64| {
        *executions += 1;
        if catch_unwind(AssertUnwindSafe(|| target(input))).is_err() {
            save_crash(out, name, input);
            panic!("fuzz target {name} panicked on input (hex) {}", hex(&input[..input.len().min(4096)]));
        }
    };
    for seed in seeds {
        execute(seed, &mut executions);
    }
    while executions < max_executions && time.is_none_or(|t| started.elapsed() < t) {
        let mut input = pool[rng.below(pool.len())].clone();
        let other = pool[rng.below(pool.len())].clone();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut input, dictionary, &other);
        }
        execute(&input, &mut executions);
        // Keep some of what was made, to go further from it (bounded: a random one is replaced).
        if rng.below(8) == 0 {
            if pool.len() < POOL {
                pool.push(input);
            } else {
                let i = seeds.len() + rng.below(POOL - seeds.len().min(POOL - 1));
                if let Some(slot) = pool.get_mut(i) {
                    *slot = input;
                }
            }
        }
    }
    report(out, name, executions, started.elapsed());
    executions
}

fn save_crash(out: Option<&std::path::Path>, name: &str, input: &[u8]) {
    let Some(dir) = out else { return };
    let dir = dir.join("crashes");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(
        dir.join(format!("{name}-{:016x}", input.iter().fold(0u64, |h, b| h.rotate_left(7) ^ u64::from(*b)))),
        input,
    );
}

fn report(out: Option<&std::path::Path>, name: &str, executions: u64, elapsed: Duration) {
    println!("fuzz {name}: {executions} executions in {:.1} s", elapsed.as_secs_f64());
    let Some(dir) = out else { return };
    let _ = std::fs::create_dir_all(dir);
    let path = dir.join("report.txt");
    // One write per line: targets of one process report from parallel threads into the same file.
    let line = format!("{name} {executions} {:.1}\n", elapsed.as_secs_f64());
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_bounded_and_reach_what_the_seeds_do_not() {
        let mut rng = Rng(1);
        let mut seen_long = false;
        let mut seen_token = false;
        for _ in 0..5_000 {
            let mut input = b"{\"a\":1}".to_vec();
            for _ in 0..4 {
                mutate(&mut rng, &mut input, &[b"TOKEN"], b"xyz");
            }
            assert!(input.len() <= MAX_LEN);
            seen_long |= input.len() > 12;
            seen_token |= input.windows(5).any(|w| w == b"TOKEN");
        }
        assert!(seen_long && seen_token);
    }

    #[test]
    fn a_panicking_target_is_reported_with_its_input() {
        let result = std::panic::catch_unwind(|| {
            run("self-test", &[b"ok"], &[b"BOOM"], (None, 100_000), None, |input| {
                if input.windows(4).any(|w| w == b"BOOM") {
                    panic!("found it");
                }
            })
        });
        let err = result.expect_err("the dictionary token is found");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("self-test") && msg.contains(&hex(b"BOOM")), "{msg}");
    }
}

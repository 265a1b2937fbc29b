//! The latency measurement of issue 17 works (`callbox_tests::latency`, what `scripts/bench-latency` runs): in a
//! short 1:1 call through the local stack, the caller's frames are found decoded and presented at the callee with
//! a capture-to-decode and a glass-to-glass delay, and its microphone's tone bursts are found in what the
//! callee's speaker played with a mouth-to-ear delay. The figures are printed; they are only checked to exist, be
//! positive and lie below a generous 2 s (never a tight timing assertion).

use callbox_tests::latency::{measure, percentiles, LatencyOptions};
use callbox_tests::{Stack, StackOptions};
use std::time::Duration;

/// Far above any plausible latency on a loaded machine: only a broken measurement exceeds it.
const BOUND: Duration = Duration::from_secs(2);

fn check(what: &str, samples: &[Duration], at_least: usize) {
    println!("{what}: n {}, median / p95 / max {:?} ms", samples.len(), percentiles(samples));
    assert!(samples.len() >= at_least, "{what}: only {} measured, expected {at_least}", samples.len());
    assert!(samples.iter().all(|d| !d.is_zero() && *d < BOUND), "{what}: out of (0, {BOUND:?}): {samples:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn glass_to_glass_and_mouth_to_ear_latencies_are_measured_at_the_far_end() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let options =
        LatencyOptions { warmup: Duration::from_secs(2), measure: Duration::from_secs(4), ..LatencyOptions::default() };
    let r = measure(&stack, &options).await.expect("measured");
    // 4 s at 30 fps is 120 frames and at one burst per 410 ms 9 or 10 bursts; a loaded machine loses some.
    assert!(r.frames_captured >= 60, "only {} frames captured", r.frames_captured);
    check("video capture -> decoded", &r.capture_to_decoded, r.frames_captured / 2);
    check("video capture -> presented", &r.capture_to_screen, r.frames_captured / 4);
    assert!(r.bursts_sent >= 5, "only {} bursts sent", r.bursts_sent);
    check("audio mouth -> ear", &r.mouth_to_ear, r.bursts_sent / 2);
    assert!(r.unmatched_onsets <= r.mouth_to_ear.len() / 4, "{} onsets heard with no burst before", r.unmatched_onsets);
}

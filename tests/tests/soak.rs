//! A short soak (`callbox_tests::soak`, the run `scripts/soak` does with 200 calls): `callbox run` as its own process
//! through six calls after a warm-up — 1:1 both ways and group, hang-ups by either side, 15 s tokens, Janus killed
//! and started again during the third — then its open file descriptors, threads and tokio tasks must be no more
//! than at the start (RSS is printed, not judged: six calls say nothing about a slow leak; the 200-call run does).

use std::path::PathBuf;
use std::time::Duration;

use callbox_tests::soak::{SoakOptions, SoakReport};
use callbox_tests::{Stack, StackOptions};

/// The `callbox` binary of this build (`scripts/test` builds every target first).
fn callbox_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    // target/<profile>/deps/soak-<hash> → target/<profile>/callbox
    let bin = exe.parent().and_then(|d| d.parent()).expect("target dir").join("callbox");
    assert!(bin.exists(), "{} not built (cargo build -p callbox first)", bin.display());
    bin
}

fn print(r: &SoakReport) {
    println!(
        "soak: seed {}, {:.1} s, placed {:?}, connected {:?}, hang-ups {:?}, failed {:?}, Janus back after {:?}, \
              tokens swapped in {:?}",
        r.seed,
        r.elapsed.as_secs_f64(),
        r.placed,
        r.connected,
        r.hang_ups,
        r.failed,
        r.janus_recovery,
        r.token_fetches
    );
    for f in &r.samples {
        println!(
            "  after {} calls: RSS {} kB, {} fds, {} threads, {} tasks",
            f.after_calls, f.rss_kb, f.fds, f.threads, f.tasks
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn six_calls_with_a_janus_restart_leave_no_fds_threads_or_tasks_behind() {
    callbox_tests::init_logging();
    let stack = Stack::start(StackOptions { token_ttl: Duration::from_secs(15), ..StackOptions::default() })
        .await
        .expect("stack");
    let options = SoakOptions {
        calls: 6,
        // Draws (`soak --plan --calls 6 --seed 16 --max-talk 3`): a group call the appliance leaves, a doorbell call
        // it hangs up while ringing, a doorbell call (Janus restarted during it), a doorbell call and a group call
        // the far end ends, a call to the appliance it hangs up.
        seed: 16,
        callbox: callbox_binary(),
        board_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../board"),
        max_talk: Duration::from_secs(3),
        janus_restart: true,
        sample_every: 0,
        video: (320, 240, 15),
    };
    let report = callbox_tests::soak::run(&stack, &options, |line| println!("{line}")).await;
    let report = report.unwrap_or_else(|e| {
        stack.dump_logs();
        panic!("soak: {e}")
    });
    print(&report);
    assert_eq!(report.failures(), 0, "every call connects and ends as planned: {:?}", report.failed);
    assert!(report.janus_recovery.is_some(), "the Janus restart happened and the appliance registered again");
    assert_eq!(report.placed.len(), 3, "every kind of call was placed: {:?}", report.placed);
    let (start, end) = (report.start().expect("start"), report.end().expect("end"));
    assert!(end.fds <= start.fds, "open fds grew: {start:?} -> {end:?}");
    assert!(end.threads <= start.threads, "threads grew: {start:?} -> {end:?}");
    assert!(end.tasks <= start.tasks, "tokio tasks grew: {start:?} -> {end:?}");
}

//! The `bench_foreign` program (`scripts/bench-foreign`, inside `tests/netns-run`): the foreign-endpoint figures of
//! issue 13, each taken at the foreign end, a resident's baresip phone: the doorbell pressed → the phone rings (its
//! CALL_INCOMING; the door's own loop dials), accept → the first video frame the phone decodes (its snapshot
//! module's file), and RFC 4733 `#` typed at the phone → the door relay energised (the code's other digits typed a
//! second before). Prints a table (median, min, max of each) and one machine-readable JSON line (`BENCH_JSON `).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use callbox::appliance::{Admission, Behaviour, Parties, Party};
use callbox::calling::{CallState, Identifier, Secret};
use callbox_tests::appliance::RunningAppliance;
use callbox_tests::{Baresip, BaresipEvent, BaresipOptions, HarnessError, Stack, StackOptions};
use serde_json::json;

const USAGE: &str = "usage: bench_foreign [--rounds K]
  --rounds K   calls measured (default 5)
  --help       this text
environment: RUST_LOG (default warn)
Runs inside the test network namespace: launch it through scripts/bench-foreign (or tests/netns-run).";

const WAIT: Duration = Duration::from_secs(30);
const CODE: &str = "2468";
/// How often the relay and the snapshot file are looked at (the figures' resolution).
const POLL: Duration = Duration::from_millis(2);

#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("test stack: {0}")]
    Stack(#[from] HarnessError),
    #[error("{0}")]
    Failed(String),
}

fn failed(what: &str) -> impl FnOnce(String) -> BenchError + '_ {
    move |e| BenchError::Failed(format!("{what}: {e}"))
}

/// One round's figures, in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Round {
    ringing: f64,
    first_frame: f64,
    digit_to_relay: f64,
}

/// One doorbell press to the phone: the door's own loop places the call (the door code counts only in its call).
async fn round(stack: &Stack, n: usize, door: &RunningAppliance, phone: &Baresip) -> Result<Round, BenchError> {
    let client = door.client(WAIT).await.ok_or_else(|| BenchError::Failed("the door did not register".into()))?;
    let pressed = Instant::now();
    door.buttons.press("call").map_err(|e| BenchError::Failed(format!("press: {e}")))?;
    phone.wait_for(BaresipEvent::CallIncoming, WAIT).await?;
    let ringing = pressed.elapsed();
    let call = client.calls().into_iter().next().ok_or_else(|| BenchError::Failed("the door has no call".into()))?;
    // The snapshot is of the next frame decoded after the request: ask before answering, then poll for the file.
    let png = stack.dir().join(format!("bench-frame-{n}.png"));
    let _ = std::fs::remove_file(&png);
    phone.command("snapshot_recv", Some(&png.display().to_string())).await?;
    let accepted = Instant::now();
    phone.accept().await?;
    let first_frame = loop {
        if std::fs::metadata(&png).is_ok_and(|m| m.len() > 0) {
            break accepted.elapsed();
        }
        if accepted.elapsed() > WAIT {
            return Err(BenchError::Failed("the phone decoded no video frame".into()));
        }
        tokio::time::sleep(POLL).await;
    };
    let mut events = call.events();
    call.wait_state(&mut events, |s| s == CallState::Connected, WAIT)
        .await
        .map_err(|e| failed("connect")(e.to_string()))?;
    phone.send_digits(CODE).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let typed = Instant::now();
    phone.send_digits("#").await?;
    let digit_to_relay = loop {
        if door.outputs.is_on("relay") {
            break typed.elapsed();
        }
        if typed.elapsed() > WAIT {
            return Err(BenchError::Failed("the relay never opened".into()));
        }
        tokio::time::sleep(POLL).await;
    };
    door.buttons.press("hang_up").map_err(|e| BenchError::Failed(format!("press: {e}")))?;
    phone.wait_for(BaresipEvent::CallClosed, WAIT).await?;
    // The relay pulse ends and Janus's handle settles before the next round.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(Round { ringing: ms(ringing), first_frame: ms(first_frame), digit_to_relay: ms(digit_to_relay) })
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let median = if v.is_empty() { f64::NAN } else { v[v.len() / 2] };
    (median, v.first().copied().unwrap_or(f64::NAN), v.last().copied().unwrap_or(f64::NAN))
}

async fn run(rounds: usize) -> Result<(), BenchError> {
    let stack = Stack::start(StackOptions::default()).await?;
    let config = callbox::client::ClientConfig { janus_urls: vec![stack.janus_ws_url()], ..Default::default() };
    let phone = stack.start_baresip(BaresipOptions::registered_user("resident-bench")).await?;
    let target = Identifier::user("resident-bench").map_err(|e| BenchError::Failed(e.to_string()))?;
    let behaviour = Behaviour {
        targets: vec![target.clone()],
        admission: Admission { door_openers_called: Parties::of(vec![Party::Exactly(target)]), ..Admission::default() },
        door_code: Some(Secret::new(CODE)),
        relay_pulse: Duration::from_millis(300),
        max_code_attempts_per_minute: 100,
        ..Behaviour::default()
    };
    let door = RunningAppliance::start(&stack, "door-bench", config, behaviour, None)
        .map_err(|e| BenchError::Failed(format!("door: {e}")))?;
    let mut all = Vec::new();
    for n in 0..rounds {
        let r = round(&stack, n, &door, &phone).await?;
        println!(
            "round {n}: ringing {:.0} ms, first frame at the phone {:.0} ms, # -> relay {:.0} ms",
            r.ringing, r.first_frame, r.digit_to_relay
        );
        all.push(r);
    }
    if let Err(e) = door.stop().await {
        log::warn!("the door did not stop cleanly: {e}");
    }
    let ringing = stats(all.iter().map(|r| r.ringing).collect());
    let frame = stats(all.iter().map(|r| r.first_frame).collect());
    let relay = stats(all.iter().map(|r| r.digit_to_relay).collect());
    println!("\n== foreign endpoint figures ({rounds} calls to a baresip phone; median [min, max]) ==");
    for (label, (m, lo, hi)) in [
        ("doorbell -> the phone rings (its CALL_INCOMING)", ringing),
        ("accept -> first frame decoded at the phone", frame),
        ("RFC 4733 '#' at the phone -> relay energised", relay),
    ] {
        println!("  {label:<46} {m:>6.0} ms  [{lo:.0}, {hi:.0}]");
    }
    println!(
        "BENCH_JSON {}",
        json!({
            "rounds": rounds,
            "dial_to_foreign_ringing_ms": {"median": ringing.0, "min": ringing.1, "max": ringing.2},
            "accept_to_foreign_first_frame_ms": {"median": frame.0, "min": frame.1, "max": frame.2},
            "rfc4733_digit_to_relay_ms": {"median": relay.0, "min": relay.1, "max": relay.2},
        })
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let mut rounds = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => match args.next().and_then(|v| v.parse().ok()).filter(|v| *v > 0) {
                Some(v) => rounds = v,
                None => {
                    eprintln!("--rounds needs a positive number\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    match run(rounds).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_foreign: {e}");
            ExitCode::FAILURE
        }
    }
}

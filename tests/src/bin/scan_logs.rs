//! `scan_logs DIR`: looks through the suite's log capture (`CALLBOX_LOG_CAPTURE=DIR` while the tests ran) for
//! secrets (`callbox_tests::log_capture`); prints what it read and each finding (kind, file, line — never the
//! secret), and exits 1 if there is any, 2 if the capture is missing or empty.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: scan_logs DIR");
        return ExitCode::from(2);
    };
    let report = match callbox_tests::log_capture::scan(&dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("scan_logs: cannot read the capture {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    };
    println!(
        "scan_logs: {} log files, {} MB, {} secrets noted, {} SIP usernames seen",
        report.log_files,
        report.log_bytes / 1_000_000,
        report.secrets_noted,
        report.sip_usernames
    );
    if report.log_files == 0 || report.secrets_noted == 0 {
        eprintln!("scan_logs: nothing captured in {}: was CALLBOX_LOG_CAPTURE set for the tests?", dir.display());
        return ExitCode::from(2);
    }
    for f in report.findings.iter().take(50) {
        println!("FOUND {} in {}:{}", f.what, f.file.display(), f.line);
    }
    if report.findings.is_empty() {
        println!("scan_logs: no secret in the logs");
        ExitCode::SUCCESS
    } else {
        println!("scan_logs: {} findings", report.findings.len());
        ExitCode::FAILURE
    }
}

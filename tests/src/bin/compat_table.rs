//! Prints the compatibility table from what the interop tests verified (`callbox_tests::compat`); with
//! `--write FILE`, replaces the table between the markers `<!-- compat-table -->` and `<!-- /compat-table -->` in
//! FILE (docs/compatibility.md).

use std::process::ExitCode;

const START: &str = "<!-- compat-table -->";
const END: &str = "<!-- /compat-table -->";

fn main() -> ExitCode {
    let path = callbox_tests::compat::results_path();
    let records = match std::fs::read_to_string(&path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("compat_table: no records at {} ({e}): run the interop tests first", path.display());
            return ExitCode::FAILURE;
        }
    };
    let table = callbox_tests::compat::table(&records);
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (None, _) => {
            print!("{table}");
            ExitCode::SUCCESS
        }
        (Some("--write"), Some(file)) => {
            let doc = match std::fs::read_to_string(&file) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("compat_table: cannot read {file}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let (Some(a), Some(b)) = (doc.find(START), doc.find(END)) else {
                eprintln!("compat_table: {file} has no {START} ... {END} markers");
                return ExitCode::FAILURE;
            };
            let updated = format!("{}{START}\n{table}{}", &doc[..a], &doc[b..]);
            if let Err(e) = std::fs::write(&file, updated) {
                eprintln!("compat_table: cannot write {file}: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: compat_table [--write docs/compatibility.md]");
            ExitCode::FAILURE
        }
    }
}

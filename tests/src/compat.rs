//! The compatibility table, produced from what the interop tests verified: a test that passed its far-end checks
//! records them ([`Verified::record`], one JSON line in `target/compat/verified.jsonl`); `compat_table` (the bin,
//! run by `scripts/test` after the suite) turns the records into the Markdown table of `docs/compatibility.md`.
//! Nothing is recorded by a test that failed: a record is written after the last assertion.

use std::io::Write;
use std::path::PathBuf;

use serde_json::{json, Value};

/// Who placed the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ApplianceCalls,
    ItCallsTheAppliance,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ApplianceCalls => "appliance calls it",
            Direction::ItCallsTheAppliance => "it calls the appliance",
        }
    }
}

/// The table's columns, in order.
pub const COLUMNS: [&str; 5] = ["audio", "video", "DTMF", "hold", "early media"];

/// What one test verified of one endpoint in one direction (cells it leaves out stay "not tested").
#[derive(Debug, Clone)]
pub struct Verified {
    endpoint: String,
    direction: Direction,
    cells: Vec<(&'static str, String)>,
    test: String,
}

impl Verified {
    pub fn new(endpoint: impl Into<String>, direction: Direction, test: impl Into<String>) -> Self {
        Verified { endpoint: endpoint.into(), direction, cells: Vec::new(), test: test.into() }
    }

    fn cell(mut self, column: &'static str, text: impl Into<String>) -> Self {
        self.cells.push((column, text.into()));
        self
    }

    pub fn audio(self, text: impl Into<String>) -> Self {
        self.cell("audio", text)
    }

    pub fn video(self, text: impl Into<String>) -> Self {
        self.cell("video", text)
    }

    pub fn dtmf(self, text: impl Into<String>) -> Self {
        self.cell("DTMF", text)
    }

    pub fn hold(self, text: impl Into<String>) -> Self {
        self.cell("hold", text)
    }

    pub fn early_media(self, text: impl Into<String>) -> Self {
        self.cell("early media", text)
    }

    /// Appends the record to the results file (errors are reported, not fatal: the test itself passed).
    pub fn record(self) {
        let path = results_path();
        let line = json!({
            "endpoint": self.endpoint,
            "direction": self.direction.as_str(),
            "test": self.test,
            "cells": self.cells.iter().map(|(c, t)| json!([c, t])).collect::<Vec<_>>(),
        });
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::OpenOptions::new().create(true).append(true).open(&path))
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            log::warn!("compatibility record not written to {}: {e}", path.display());
        }
    }
}

/// `target/compat/verified.jsonl` of the workspace (or of `CARGO_TARGET_DIR`).
pub fn results_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("compat").join("verified.jsonl")
}

/// One row of the table: (endpoint, direction), the texts of each column, the tests behind it.
struct Row {
    key: (String, String),
    cells: Vec<Vec<String>>,
    tests: Vec<String>,
}

/// The Markdown table of the records in `jsonl` (rows sorted by endpoint and direction; cells of several records
/// joined; unreadable lines skipped).
pub fn table(jsonl: &str) -> String {
    let mut rows: Vec<Row> = Vec::new();
    for line in jsonl.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        let endpoint = v["endpoint"].as_str().unwrap_or("?").to_string();
        let direction = v["direction"].as_str().unwrap_or("?").to_string();
        let key = (endpoint, direction);
        let i = match rows.iter().position(|r| r.key == key) {
            Some(i) => i,
            None => {
                rows.push(Row { key, cells: vec![Vec::new(); COLUMNS.len()], tests: Vec::new() });
                rows.len() - 1
            }
        };
        let Row { cells, tests, .. } = &mut rows[i];
        if let Some(t) = v["test"].as_str() {
            if !tests.iter().any(|x| x == t) {
                tests.push(t.to_string());
            }
        }
        for cell in v["cells"].as_array().into_iter().flatten() {
            let (Some(column), Some(text)) = (cell[0].as_str(), cell[1].as_str()) else { continue };
            if let Some(c) = COLUMNS.iter().position(|x| *x == column) {
                if !cells[c].iter().any(|x| x == text) {
                    cells[c].push(text.to_string());
                }
            }
        }
    }
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    let mut out = format!(
        "| endpoint | direction | {} | tests |\n|---|---|{}---|\n",
        COLUMNS.join(" | "),
        "---|".repeat(COLUMNS.len())
    );
    for Row { key: (endpoint, direction), cells, tests } in rows {
        let cells: Vec<String> =
            cells.iter().map(|c| if c.is_empty() { "not tested".to_string() } else { c.join("; ") }).collect();
        out.push_str(&format!("| {endpoint} | {direction} | {} | {} |\n", cells.join(" | "), tests.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_one_row_merge_and_missing_cells_say_so() {
        let jsonl = [
            json!({"endpoint": "baresip", "direction": "appliance calls it", "test": "t1",
                   "cells": [["audio", "heard at the far end"], ["DTMF", "RFC 4733"]]}),
            json!({"endpoint": "baresip", "direction": "appliance calls it", "test": "t2",
                   "cells": [["DTMF", "RFC 4733"], ["video", "decoded at the far end"]]}),
            json!({"endpoint": "SIPp", "direction": "appliance calls it", "test": "t3", "cells": [["early media", "183 heard"]]}),
        ]
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
            + "\nnot json\n";
        let t = table(&jsonl);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[2].starts_with("| SIPp |"), "sorted: {t}");
        assert_eq!(
            lines[3],
            "| baresip | appliance calls it | heard at the far end | decoded at the far end | RFC 4733 | not tested | \
             not tested | t1, t2 |"
        );
    }
}

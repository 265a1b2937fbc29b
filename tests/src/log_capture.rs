//! The suite's log capture and the scan for secrets in it. With `CALLBOX_LOG_CAPTURE=<dir>` set, every test process
//! writes all its log records (the firmware's, the harness's, the dependencies'; level from
//! `CALLBOX_LOG_CAPTURE_FILTER`, default `trace`; through the firmware's `callbox::logging` guard, as on a device)
//! to `<dir>/log-<pid>.txt`, and the harness notes each secret it
//! makes or hands out (stack secrets, device keys, door codes) in `<dir>/secrets-<pid>.txt`. `scan_logs <dir>`
//! ([`scan`]) then looks through the logs for:
//! - any noted secret, as a word of a line (secrets of fewer than 4 characters are not noted);
//! - anything shaped like a token: a JWT (`eyJ…​.eyJ…​.…`), a Janus signed token (`<10 digits>,janus,…:<signature>`);
//! - a SIP password: for each ephemeral SIP username in the logs (`<expiry>:<user>` or `<expiry>%3A<user>`, not
//!   secret) and each noted SIP secret, the password the token service derives from them
//!   (`base64(HMAC-SHA1(secret, username))`) must appear nowhere.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use callbox_calling::Secret;

/// The environment variable naming the capture folder.
pub const CAPTURE_ENV: &str = "CALLBOX_LOG_CAPTURE";

static SECRETS: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// The capture folder, when capturing.
fn capture_dir() -> Option<PathBuf> {
    std::env::var_os(CAPTURE_ENV).filter(|d| !d.is_empty()).map(PathBuf::from)
}

/// Installs the logger once: into the capture file when capturing, else `env_logger` for tests (`RUST_LOG`).
pub fn init() {
    let Some(dir) = capture_dir() else {
        let _ = env_logger::builder().is_test(true).try_init();
        return;
    };
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("log-{}.txt", std::process::id()));
    let file = match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
        Ok(f) => f,
        Err(e) => panic!("cannot open the log capture {}: {e}", path.display()),
    };
    let filter = std::env::var("CALLBOX_LOG_CAPTURE_FILTER").unwrap_or_else(|_| "trace".into());
    // Through the firmware's own guard (callbox::logging), as on a device.
    let logger = env_logger::Builder::new()
        .parse_filters(&filter)
        .target(env_logger::Target::Pipe(Box::new(std::io::LineWriter::new(file))))
        .build();
    let max_level = logger.filter();
    let _ = callbox::logging::SecretSafeLogger::new(logger).install(max_level);
}

/// Notes `secret` for the scan (nothing when not capturing). Secrets shorter than 4 characters are not noted:
/// they would match by chance.
pub fn note_secret(secret: &str) {
    let Some(dir) = capture_dir() else { return };
    if secret.len() < 4 || secret.contains('\n') {
        return;
    }
    let mut guard = SECRETS.lock().unwrap_or_else(|p| p.into_inner());
    if guard.is_none() {
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("secrets-{}.txt", std::process::id()));
        match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
            Ok(f) => *guard = Some(f),
            Err(e) => panic!("cannot open {}: {e}", path.display()),
        }
    }
    if let Some(f) = guard.as_mut() {
        let _ = writeln!(f, "{secret}");
    }
}

/// A secret found in a log: which kind, which file and line (the secret itself is not repeated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub what: &'static str,
    pub file: PathBuf,
    pub line: usize,
}

/// What [`scan`] looked at and found.
#[derive(Debug, Default)]
pub struct ScanReport {
    pub log_files: usize,
    pub log_bytes: u64,
    pub secrets_noted: usize,
    pub sip_usernames: usize,
    pub findings: Vec<Finding>,
}

/// Scans the capture folder `dir` (see the module comment).
pub fn scan(dir: &Path) -> std::io::Result<ScanReport> {
    let mut report = ScanReport::default();
    let mut secrets: HashSet<String> = HashSet::new();
    let mut logs = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_owned();
        if name.starts_with("secrets-") {
            secrets.extend(std::fs::read_to_string(&path)?.lines().map(str::to_owned));
        } else if name.starts_with("log-") {
            logs.push(path);
        }
    }
    logs.sort();
    report.secrets_noted = secrets.len();
    // First pass: the SIP usernames in the logs, and the passwords they would have.
    let mut usernames: HashSet<String> = HashSet::new();
    for path in &logs {
        for line in std::fs::read_to_string(path)?.lines() {
            usernames.extend(sip_usernames(line));
        }
    }
    report.sip_usernames = usernames.len();
    let mut passwords: HashSet<String> = HashSet::new();
    for secret in &secrets {
        let secret = Secret::new(secret.as_str());
        for username in &usernames {
            if let Some((expiry, user)) = username.split_once(':') {
                if let Ok(expiry) = expiry.parse::<u64>() {
                    let creds = callbox_tokensvc::sip_ephemeral_credentials(&secret, user, expiry);
                    passwords.insert(creds.password.expose().to_owned());
                }
            }
        }
    }
    for path in &logs {
        let text = std::fs::read_to_string(path)?;
        report.log_files += 1;
        report.log_bytes += text.len() as u64;
        for (i, line) in text.lines().enumerate() {
            let mut found = |what| report.findings.push(Finding { what, file: path.clone(), line: i + 1 });
            for word in words(line) {
                if secrets.contains(word) {
                    found("a noted secret (stack secret, device key or door code)");
                } else if passwords.contains(word) {
                    found("a SIP password");
                }
            }
            if has_jwt(line) {
                found("a JWT");
            }
            if has_janus_token(line) {
                found("a Janus signed token");
            }
        }
    }
    Ok(report)
}

/// `<expiry>:<user>` (or `%3A`) words of `line`: 9 to 11 digits, then the separator and a user name.
fn sip_usernames(line: &str) -> Vec<String> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && b[i - 1].is_ascii_digit()) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = i - start;
        let sep = if line[i..].starts_with(':') {
            1
        } else if line[i..].starts_with("%3A") || line[i..].starts_with("%3a") {
            3
        } else {
            0
        };
        if !(9..=11).contains(&digits) || sep == 0 {
            continue;
        }
        let user_start = i + sep;
        let mut j = user_start;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b"._+-".contains(&b[j])) {
            j += 1;
        }
        if j > user_start {
            out.push(format!("{}:{}", &line[start..i], &line[user_start..j]));
        }
        i = j.max(i + 1);
    }
    out
}

fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

/// A JWT: `eyJ` + base64url, `.eyJ` + base64url, `.` + base64url (header and claims are JSON objects).
fn has_jwt(line: &str) -> bool {
    let b = line.as_bytes();
    let mut from = 0;
    while let Some(pos) = line[from..].find("eyJ") {
        let start = from + pos;
        let mut i = start;
        let mut parts = 1;
        while i < b.len() && (is_b64url(b[i]) || b[i] == b'.') {
            if b[i] == b'.' {
                parts += 1;
            }
            i += 1;
        }
        let token = &line[start..i];
        if parts == 3 && token.split('.').nth(1).is_some_and(|c| c.starts_with("eyJ")) && !token.ends_with('.') {
            return true;
        }
        from = start + 3;
    }
    false
}

/// A Janus signed token: `<10 digits>,janus,<plugins>:<base64 signature>` (a signature of at least 20 characters).
fn has_janus_token(line: &str) -> bool {
    let mut from = 0;
    while let Some(pos) = line[from..].find(",janus,") {
        let at = from + pos;
        let digits = line[..at].bytes().rev().take_while(u8::is_ascii_digit).count();
        if digits >= 9 {
            if let Some(colon) = line[at..].find(':') {
                let sig: usize = line[at + colon + 1..]
                    .bytes()
                    .take_while(|c| c.is_ascii_alphanumeric() || b"+/=".contains(c))
                    .count();
                if sig >= 20 {
                    return true;
                }
            }
        }
        from = at + 7;
    }
    false
}

/// The words of `line` a secret or a password would be: runs of letters, digits and `+/_-` (the alphabets of
/// the harness's secrets, device keys, door codes and base64), each with the `=` padding that follows it.
fn words(line: &str) -> impl Iterator<Item = &str> {
    let b = line.as_bytes();
    let word_char = |c: u8| c.is_ascii_alphanumeric() || b"+/_-".contains(&c);
    let mut i = 0;
    std::iter::from_fn(move || loop {
        while i < b.len() && !word_char(b[i]) {
            i += 1;
        }
        if i >= b.len() {
            return None;
        }
        let start = i;
        while i < b.len() && word_char(b[i]) {
            i += 1;
        }
        while i < b.len() && b[i] == b'=' {
            i += 1;
        }
        if i - start >= 4 {
            return Some(&line[start..i]);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shapes_are_recognised_and_ordinary_lines_are_not() {
        assert!(has_jwt("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln fetched"));
        assert!(!has_jwt("eyJ alone, eyJabc.notclaims.x, eyJa.eyJb."));
        assert!(has_janus_token("t=1700000600,janus,janus.plugin.sip:o5jplpmslCALQdKKsRZT1QQLR3E="));
        assert!(!has_janus_token("plugin janus,janus.plugin.sip attached at 12,janus,x:short"));
    }

    #[test]
    fn words_keep_their_padding_and_leave_their_key() {
        let w: Vec<&str> = words("secret=abc+/de== k=v, 2468# x=abcd=efgh").collect();
        assert_eq!(w, vec!["secret=", "abc+/de==", "2468", "abcd=", "efgh"]);
    }

    #[test]
    fn sip_usernames_are_found_in_both_spellings() {
        let line = "authuser 1796671156%3Adoor-a, username=\"1796671157:mallory\" port 5060:x 12:00:01";
        assert_eq!(sip_usernames(line), vec!["1796671156:door-a".to_string(), "1796671157:mallory".to_string()]);
    }

    #[test]
    fn a_scan_finds_each_kind_of_secret_and_passes_a_clean_log() {
        let dir = std::env::temp_dir().join(format!("callbox-scan-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let sip_secret = "stack-sip-secret-0123456789";
        let password = callbox_tokensvc::sip_ephemeral_credentials(&Secret::new(sip_secret), "door", 1796671156)
            .password
            .expose()
            .to_owned();
        std::fs::write(dir.join("secrets-1.txt"), format!("{sip_secret}\ndevice-key-abcdef\n")).expect("write");
        let log = format!(
            "INFO registered as 1796671156:door\n\
             DEBUG clean line with a port 5060 and a room 1234\n\
             DEBUG key device-key-abcdef read\n\
             TRACE sent eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln\n\
             TRACE {{\"token\":\"1796671156,janus,janus.plugin.sip:o5jplpmslCALQdKKsRZT1QQLR3E=\"}}\n\
             TRACE register secret={password} done\n"
        );
        std::fs::write(dir.join("log-1.txt"), log).expect("write");
        let report = scan(&dir).expect("scan");
        let lines: Vec<(usize, &str)> = report.findings.iter().map(|f| (f.line, f.what)).collect();
        assert_eq!(
            lines,
            vec![
                (3, "a noted secret (stack secret, device key or door code)"),
                (4, "a JWT"),
                (5, "a Janus signed token"),
                (6, "a SIP password")
            ]
        );
        std::fs::write(dir.join("log-1.txt"), "INFO registered as 1796671156:door\nDEBUG all good\n").expect("write");
        assert!(scan(&dir).expect("scan").findings.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

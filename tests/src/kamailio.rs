//! Kamailio for one stack: `config/kamailio/kamailio.cfg` with this stack's port, auth secret and trunk port set
//! by `-A` defines, its own runtime/working folder, logs on stderr into the stack's temp dir; ready when it
//! answers a SIP OPTIONS keepalive on UDP.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::HarnessError;
use crate::janus::config_root;
use crate::process::ServerProcess;

pub struct KamailioSettings<'a> {
    pub dir: &'a Path,
    pub port: u16,
    pub domain: &'a str,
    pub secret: &'a str,
    pub trunk_port: u16,
    /// Who may call phone numbers (Kamailio's `PSTN_USERS` regular expression).
    pub pstn_users: &'a str,
    pub log_level: i32,
    pub log_limit: u64,
}

pub async fn start(s: &KamailioSettings<'_>, timeout: Duration) -> Result<ServerProcess, HarnessError> {
    let run = s.dir.join("kamailio");
    std::fs::create_dir_all(&run).map_err(|source| HarnessError::Io {
        what: "cannot create",
        path: run.clone(),
        source,
    })?;
    let cfg = config_root().join("kamailio").join("kamailio.cfg");
    let args: Vec<String> = vec![
        "-f".into(),
        cfg.display().to_string(),
        "-DD".into(),
        "-E".into(),
        "-Y".into(),
        run.display().to_string(),
        "-w".into(),
        run.display().to_string(),
        "-P".into(),
        run.join("kamailio.pid").display().to_string(),
        "-m".into(),
        "32".into(),
        "-M".into(),
        "8".into(),
        "-l".into(),
        format!("udp:127.0.0.1:{}", s.port),
        "-l".into(),
        format!("tcp:127.0.0.1:{}", s.port),
        "-A".into(),
        format!("SIP_DOMAIN=\"{}\"", s.domain),
        "-A".into(),
        format!("AUTH_SECRET=\"{}\"", s.secret),
        "-A".into(),
        "TRUNK_IP=\"127.0.0.1\"".into(),
        "-A".into(),
        format!("TRUNK_PORT={}", s.trunk_port),
        "-A".into(),
        format!("PSTN_USERS=\"{}\"", s.pstn_users),
        "-A".into(),
        format!("LOG_LEVEL={}", s.log_level),
    ];
    let proc = ServerProcess::spawn("kamailio", "kamailio", &args, &run, s.dir.join("kamailio.log"), s.log_limit)?;
    wait_options(&proc, s.port, timeout).await?;
    Ok(proc)
}

/// Send OPTIONS until Kamailio answers 200.
async fn wait_options(proc: &ServerProcess, port: u16, timeout: Duration) -> Result<(), HarnessError> {
    let deadline = Instant::now() + timeout;
    let not_ready = |reason: String| HarnessError::NotReady {
        name: "kamailio".into(),
        timeout,
        reason,
        log: proc.log_path().to_path_buf(),
    };
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| not_ready(format!("cannot bind a UDP socket: {e}")))?;
    let local = sock.local_addr().map_err(|e| not_ready(format!("no local address: {e}")))?;
    let mut n = 0u32;
    loop {
        proc.check()?;
        n += 1;
        let msg = format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-harness-{n}\r\n\
             Max-Forwards: 5\r\n\
             From: <sip:harness@127.0.0.1>;tag=h{n}\r\n\
             To: <sip:127.0.0.1:{port}>\r\n\
             Call-ID: harness-ready-{n}@127.0.0.1\r\n\
             CSeq: {n} OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let _ = sock.send_to(msg.as_bytes(), ("127.0.0.1", port)).await;
        let mut buf = [0u8; 2048];
        if let Ok(Ok((len, _))) = tokio::time::timeout(Duration::from_millis(200), sock.recv_from(&mut buf)).await {
            if buf[..len].starts_with(b"SIP/2.0 200") {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(not_ready(format!("no 200 to OPTIONS on udp 127.0.0.1:{port}")));
        }
    }
}

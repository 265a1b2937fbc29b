//! `callbox-tokensvc --listen 127.0.0.1:8090 --config FILE [--tls-cert CHAIN.pem --tls-key KEY.pem]`: the
//! reference token endpoint as a program (HTTPS when given a certificate). Never logs a token, a device key or a
//! secret.

use std::net::SocketAddr;
use std::path::PathBuf;

use callbox_tokensvc::{ServiceConfig, TokenService};

const USAGE: &str =
    "usage: callbox-tokensvc --listen 127.0.0.1:8090 --config FILE.json [--tls-cert CHAIN.pem --tls-key KEY.pem]";

struct Args {
    listen: SocketAddr,
    config: PathBuf,
    /// Certificate chain and private key files: serve HTTPS.
    tls: Option<(PathBuf, PathBuf)>,
}

fn parse_args() -> Result<Args, String> {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 8090).into();
    let mut config = None;
    let mut tls_cert = None;
    let mut tls_key = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => {
                let v = args.next().ok_or("--listen needs an address")?;
                listen = v.parse().map_err(|_| format!("invalid --listen address {v}"))?;
            }
            "--config" => config = Some(PathBuf::from(args.next().ok_or("--config needs a file")?)),
            "--tls-cert" => tls_cert = Some(PathBuf::from(args.next().ok_or("--tls-cert needs a file")?)),
            "--tls-key" => tls_key = Some(PathBuf::from(args.next().ok_or("--tls-key needs a file")?)),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let tls = match (tls_cert, tls_key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err(format!("--tls-cert and --tls-key go together\n{USAGE}")),
    };
    Ok(Args { listen, config: config.ok_or(USAGE)?, tls })
}

fn read_pem(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let Args { listen, config: path, tls } = match parse_args() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let config = match ServiceConfig::load(&path) {
        Ok(c) => c,
        Err(e) => {
            log::error!("{e}");
            return std::process::ExitCode::from(1);
        }
    };
    log::info!(
        "{} device key(s) configured ({} with a room grant), ttl {} s",
        config.devices.len(),
        config.devices.iter().filter(|(_, d)| d.rooms).count(),
        config.ttl_secs
    );
    let started = match &tls {
        None => TokenService::start(config, listen).await.map_err(|e| e.to_string()),
        Some((cert, key)) => match (read_pem(cert), read_pem(key)) {
            (Ok(cert), Ok(key)) => {
                TokenService::start_tls(config, listen, &cert, &key).await.map_err(|e| e.to_string())
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        },
    };
    let _service = match started {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}");
            return std::process::ExitCode::from(1);
        }
    };
    // Stop on Ctrl-C or SIGTERM (systemd, kill).
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot install the SIGTERM handler: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    tokio::select! {
        r = tokio::signal::ctrl_c() => {
            if let Err(e) = r {
                log::error!("cannot wait for Ctrl-C: {e}");
            }
        }
        _ = term.recv() => {}
    }
    log::info!("token service stopping");
    std::process::ExitCode::SUCCESS
}

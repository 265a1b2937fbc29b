//! `callbox-tokensvc --listen 127.0.0.1:8090 --config FILE`: the reference token endpoint as a program.
//! Never logs a token, a device key or a secret.

use std::net::SocketAddr;
use std::path::PathBuf;

use callbox_tokensvc::{ServiceConfig, TokenService};

const USAGE: &str = "usage: callbox-tokensvc --listen 127.0.0.1:8090 --config FILE.json";

fn parse_args() -> Result<(SocketAddr, PathBuf), String> {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 8090).into();
    let mut config = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => {
                let v = args.next().ok_or("--listen needs an address")?;
                listen = v.parse().map_err(|_| format!("invalid --listen address {v}"))?;
            }
            "--config" => config = Some(PathBuf::from(args.next().ok_or("--config needs a file")?)),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok((listen, config.ok_or(USAGE)?))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let (listen, path) = match parse_args() {
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
    log::info!("{} device key(s) configured, ttl {} s", config.devices.len(), config.ttl_secs);
    let _service = match TokenService::start(config, listen).await {
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

//! Janus for one stack: a per-stack copy of `config/janus/` with this stack's WebSocket port, token secret,
//! videoroom admin key, RTP ranges, configs folder and ICE interface substituted, started in the foreground and awaited until its WebSocket
//! port accepts connections.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::HarnessError;
use crate::process::ServerProcess;

/// The repository's `config/` folder (`CALLBOX_CONFIG_DIR` overrides it).
pub fn config_root() -> PathBuf {
    match std::env::var_os("CALLBOX_CONFIG_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("config"),
    }
}

/// Replace the value of `key = ...` (the first line whose trimmed text starts with `key =`), keeping any comment.
pub fn set_value(text: &str, key: &str, value: &str, path: &Path) -> Result<String, HarnessError> {
    let mut found = false;
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        let trimmed = line.trim_start();
        let is_key = !found && trimmed.strip_prefix(key).map(|r| r.trim_start().starts_with('=')).unwrap_or(false);
        if is_key {
            found = true;
            let indent = &line[..line.len() - trimmed.len()];
            let comment = trimmed.find('#').map(|i| &trimmed[i..]).unwrap_or("");
            out.push_str(&format!("{indent}{key} = {value}\t{comment}"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !found {
        return Err(HarnessError::Template {
            path: path.to_path_buf(),
            reason: format!("no `{key} = ...` line to substitute"),
        });
    }
    Ok(out)
}

pub struct JanusSettings<'a> {
    pub dir: &'a Path,
    pub ws_port: u16,
    pub token_secret: &'a str,
    /// The videoroom plugin's `admin_key`: `create` requests without it are refused.
    pub room_admin_key: &'a str,
    /// Interfaces Janus gathers on (its `ice_enforce_list`: comma-separated).
    pub ice_iface: &'a str,
    pub rtp_range: (u16, u16),
    pub sip_rtp_range: (u16, u16),
    pub log_limit: u64,
}

fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

/// Write the per-stack config folder `<dir>/janus` and return it.
pub fn write_config(s: &JanusSettings<'_>) -> Result<PathBuf, HarnessError> {
    let src = config_root().join("janus");
    let dst = s.dir.join("janus");
    std::fs::create_dir_all(&dst).map_err(|source| HarnessError::Io {
        what: "cannot create",
        path: dst.clone(),
        source,
    })?;
    let read = |name: &str| {
        let p = src.join(name);
        std::fs::read_to_string(&p).map(|t| (t, p.clone())).map_err(|source| HarnessError::Io {
            what: "cannot read",
            path: p,
            source,
        })
    };
    let write = |name: &str, text: String| {
        let p = dst.join(name);
        std::fs::write(&p, text).map_err(|source| HarnessError::Io { what: "cannot write", path: p, source })
    };

    let (t, p) = read("janus.jcfg")?;
    let t = set_value(&t, "configs_folder", &quoted(&dst.display().to_string()), &p)?;
    let t = set_value(&t, "token_auth_secret", &quoted(s.token_secret), &p)?;
    let t = set_value(&t, "rtp_port_range", &quoted(&format!("{}-{}", s.rtp_range.0, s.rtp_range.1)), &p)?;
    let t = set_value(&t, "ice_enforce_list", &quoted(s.ice_iface), &p)?;
    write("janus.jcfg", t)?;

    let (t, p) = read("janus.transport.websockets.jcfg")?;
    let t = set_value(&t, "ws_port", &s.ws_port.to_string(), &p)?;
    write("janus.transport.websockets.jcfg", t)?;

    let (t, p) = read("janus.plugin.sip.jcfg")?;
    let t = set_value(&t, "rtp_port_range", &quoted(&format!("{}-{}", s.sip_rtp_range.0, s.sip_rtp_range.1)), &p)?;
    write("janus.plugin.sip.jcfg", t)?;

    let (t, p) = read("janus.plugin.videoroom.jcfg")?;
    let t = set_value(&t, "admin_key", &quoted(s.room_admin_key), &p)?;
    write("janus.plugin.videoroom.jcfg", t)?;
    Ok(dst)
}

/// Start Janus and wait until its WebSocket port accepts connections.
pub async fn start(s: &JanusSettings<'_>, timeout: Duration) -> Result<ServerProcess, HarnessError> {
    let conf = write_config(s)?;
    let mut args = vec![
        "-C".to_string(),
        conf.join("janus.jcfg").display().to_string(),
        "-F".to_string(),
        conf.display().to_string(),
        "-o".to_string(),
    ];
    // For a diagnosis by hand: Janus's own log level (0–7; 5 shows its NACK answers, 6 every packet's fate).
    if let Ok(level) = std::env::var("CALLBOX_JANUS_DEBUG_LEVEL") {
        args.extend(["-d".to_string(), level]);
    }
    let proc = ServerProcess::spawn("janus", "janus", &args, s.dir, s.dir.join("janus.log"), s.log_limit)?;
    wait_tcp("janus", &proc, s.ws_port, timeout).await?;
    Ok(proc)
}

/// Wait until 127.0.0.1:`port` accepts a TCP connection, failing early if the process dies.
pub async fn wait_tcp(name: &str, proc: &ServerProcess, port: u16, timeout: Duration) -> Result<(), HarnessError> {
    let deadline = Instant::now() + timeout;
    loop {
        proc.check()?;
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(500), tokio::net::TcpStream::connect(("127.0.0.1", port))).await
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(HarnessError::NotReady {
                name: name.to_string(),
                timeout,
                reason: format!("nothing accepts on 127.0.0.1:{port}"),
                log: proc.log_path().to_path_buf(),
            });
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_values_and_keeps_comments() {
        let t = "general: {\n\tws_port = 8188\t\t# harness: port\n\t#ws_port = 1\n}\n";
        let out = set_value(t, "ws_port", "12345", Path::new("x")).unwrap();
        assert!(out.contains("\tws_port = 12345\t# harness: port\n"), "{out}");
        assert!(out.contains("#ws_port = 1"));
        assert!(set_value(t, "nope", "1", Path::new("x")).is_err());
    }

    #[test]
    fn the_repository_templates_have_every_substituted_key() {
        let dir = std::env::temp_dir().join(format!("callbox-janus-cfg-{}", std::process::id()));
        let s = JanusSettings {
            dir: &dir,
            ws_port: 18188,
            token_secret: "sekrit",
            room_admin_key: "roomkey",
            ice_iface: "cbx-lo0",
            rtp_range: (20000, 20199),
            sip_rtp_range: (20200, 20399),
            log_limit: 1,
        };
        let conf = write_config(&s).unwrap();
        let core = std::fs::read_to_string(conf.join("janus.jcfg")).unwrap();
        assert!(core.contains("token_auth_secret = \"sekrit\""));
        assert!(!core.contains("@TOKEN_AUTH_SECRET@"), "the placeholder is replaced");
        assert!(core.contains("rtp_port_range = \"20000-20199\""));
        let videoroom = std::fs::read_to_string(conf.join("janus.plugin.videoroom.jcfg")).unwrap();
        assert!(videoroom.contains("admin_key = \"roomkey\""), "{videoroom}");
        assert!(!videoroom.contains("@VIDEOROOM_ADMIN_KEY@"), "the placeholder is replaced");
        let ws = std::fs::read_to_string(conf.join("janus.transport.websockets.jcfg")).unwrap();
        assert!(ws.contains("ws_port = 18188"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

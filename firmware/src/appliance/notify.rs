//! systemd's notification protocol (`Type=notify`): `READY=1` once registered, `WATCHDOG=1` pings at half the
//! watchdog interval, `STATUS=...` lines, `STOPPING=1`. A datagram to `$NOTIFY_SOCKET` (a path, or an abstract
//! socket when it starts with `@`); without the variable (not started by systemd) every call does nothing.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The notification socket, when systemd gave one.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET` (absent: a notifier that does nothing).
    pub fn from_env() -> Self {
        Self::to(std::env::var("NOTIFY_SOCKET").ok().as_deref())
    }

    /// To the socket named like `$NOTIFY_SOCKET` (`None`: does nothing).
    pub fn to(path: Option<&str>) -> Self {
        let target = path.filter(|p| !p.is_empty()).and_then(|p| {
            let addr = match p.strip_prefix('@') {
                Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
                None => SocketAddr::from_pathname(p),
            };
            match (UnixDatagram::unbound(), addr) {
                (Ok(sock), Ok(addr)) => Some((sock, addr)),
                (Err(e), _) | (_, Err(e)) => {
                    log::warn!("systemd notify socket {p} unusable: {e}");
                    None
                }
            }
        });
        Notifier { target }
    }

    fn send(&self, message: &str) {
        if let Some((sock, addr)) = &self.target {
            if let Err(e) = sock.send_to_addr(message.as_bytes(), addr) {
                log::debug!("systemd notify failed: {e}");
            }
        }
    }

    /// Startup finished.
    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// Still alive (the watchdog).
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// A one-line status for `systemctl status`.
    pub fn status(&self, text: &str) {
        self.send(&format!("STATUS={}", text.replace('\n', " ")));
    }

    /// Shutting down.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// How often to ping the watchdog: half of `$WATCHDOG_USEC`, if systemd set one for this process.
    pub fn watchdog_interval() -> Option<Duration> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        if let Ok(pid) = std::env::var("WATCHDOG_PID") {
            if pid.parse::<u32>().ok() != Some(std::process::id()) {
                return None;
            }
        }
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_the_socket_and_a_missing_socket_is_a_no_op() {
        let dir = std::env::temp_dir().join(format!("cbx-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::to(path.to_str());
        n.ready();
        n.status("registered as door\nok");
        n.watchdog();
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        for _ in 0..3 {
            let len = server.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        }
        assert_eq!(got, ["READY=1", "STATUS=registered as door ok", "WATCHDOG=1"]);
        Notifier::to(None).ready();
        Notifier::to(Some("/nonexistent/dir/sock")).ready();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

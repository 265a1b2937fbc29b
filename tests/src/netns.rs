//! The namespace guard: the stack only starts inside the network namespace made by `tests/netns-run`, where every
//! IPv4 address is in 127.0.0.0/8 and the veth end carrying 127.0.0.1/32 (for Janus's ICE) exists.

use crate::error::HarnessError;

/// The veth end `tests/netns-run` names when the environment does not say.
pub const DEFAULT_IFACE: &str = "cbx-lo0";

/// Devices that tests make inside the namespace are named with this prefix; only they may carry a private
/// (non-loopback) address, which is reachable from nowhere but the namespace.
pub const TEST_DEVICE_PREFIX: &str = "cbx-";

/// Check the namespace; returns the interface Janus must gather on.
pub fn check() -> Result<String, HarnessError> {
    if std::env::var("CALLBOX_NETNS").as_deref() != Ok("1") {
        return Err(HarnessError::NotInNamespace("CALLBOX_NETNS is not set".into()));
    }
    let iface = std::env::var("CALLBOX_NETNS_IFACE").unwrap_or_else(|_| DEFAULT_IFACE.to_string());
    let out = std::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .map_err(|e| HarnessError::NotInNamespace(format!("cannot run `ip -o -4 addr show`: {e}")))?;
    if !out.status.success() {
        return Err(HarnessError::NotInNamespace("`ip -o -4 addr show` failed".into()));
    }
    check_addresses(&String::from_utf8_lossy(&out.stdout), &iface)?;
    Ok(iface)
}

/// Every IPv4 address must be loopback, and `iface` must carry 127.0.0.1.
fn check_addresses(ip_output: &str, iface: &str) -> Result<(), HarnessError> {
    let mut iface_ok = false;
    for line in ip_output.lines() {
        // "3: cbx-lo0    inet 127.0.0.1/32 scope host cbx-lo0\ ..."
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(dev), Some(pos)) = (fields.get(1), fields.iter().position(|f| *f == "inet")) else {
            continue;
        };
        let Some(addr) = fields.get(pos + 1).and_then(|a| a.split('/').next()) else {
            continue;
        };
        // Other addresses only on the test's own devices (a QEMU guest's tap), which exist in this namespace only.
        if !addr.starts_with("127.") && !dev.starts_with(TEST_DEVICE_PREFIX) {
            return Err(HarnessError::NotInNamespace(format!("interface {dev} has the non-loopback address {addr}")));
        }
        if *dev == iface && addr == "127.0.0.1" {
            iface_ok = true;
        }
    }
    if !iface_ok {
        return Err(HarnessError::NotInNamespace(format!("interface {iface} with 127.0.0.1/32 not found")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_namespace_and_refuses_a_real_interface() {
        let ns = "1: lo    inet 127.0.0.1/8 scope host lo\\ valid_lft forever\n\
                  3: cbx-lo0    inet 127.0.0.1/32 scope host cbx-lo0\\ valid_lft forever\n";
        check_addresses(ns, "cbx-lo0").unwrap();
        assert!(check_addresses(ns, "other0").is_err());
        let tap = format!("{ns}4: cbx-tap0    inet 10.0.9.1/24 scope global cbx-tap0\\ valid_lft forever\n");
        check_addresses(&tap, "cbx-lo0").unwrap();
        let eth = format!("{ns}2: eth0    inet 10.0.9.1/24 scope global eth0\\ valid_lft forever\n");
        assert!(check_addresses(&eth, "cbx-lo0").is_err(), "a real interface's address is refused");
        let host = format!("{ns}2: eth0    inet 10.1.2.3/24 brd 10.1.2.255 scope global eth0\\\n");
        assert!(check_addresses(&host, "cbx-lo0").is_err());
    }
}

//! `NetFault`: network faults between the appliances and one stack's servers, made with nftables inside the test
//! namespace (the kernels we run on have no `sch_netem`, so no `tc netem`): random packet loss on the appliances'
//! media (`numgen random mod 100 < N drop`) and a blackhole of all their traffic to the servers. Each fault is one
//! nftables table of its own, removed when the `NetFault` is dropped, so a failing test leaves the namespace clean.
//!
//! What a fault covers is the appliances' side of the network, told apart by the servers' ports (everything runs on
//! 127.0.0.1): the Janus WebSocket and the token endpoint (TCP, either direction) and Janus's WebRTC media ports
//! (UDP, its `rtp_port_range`, either direction). It leaves alone what stays inside the server side: Janus ↔
//! Kamailio SIP, the sip plugin's plain RTP legs (its own port range), and other stacks of the same test binary.
//! Rules sit in the `output` hook, which every locally sent packet crosses exactly once.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::HarnessError;
use crate::stack::Stack;

static TABLE_COUNT: AtomicU32 = AtomicU32::new(0);

/// The servers' ports a fault is aimed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerPorts {
    pub janus_ws: u16,
    pub token: u16,
    /// Janus's WebRTC media ports (inclusive).
    pub janus_rtp: (u16, u16),
}

impl ServerPorts {
    pub fn of(stack: &Stack) -> Self {
        Self {
            janus_ws: stack.janus_addr().port(),
            token: stack.token_addr().port(),
            janus_rtp: stack.janus_rtp_range(),
        }
    }
}

/// What a fault's rules counted so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Packets the fault applied to (media packets for a loss, every packet for a blackhole).
    pub seen: u64,
    /// Packets it dropped.
    pub dropped: u64,
}

/// The nftables script of a table `name` dropping `percent` % of the UDP packets to and from Janus's media ports
/// at random. The first two rules only count what the fault applies to.
pub fn loss_rules(name: &str, ports: &ServerPorts, percent: u8) -> String {
    let (lo, hi) = ports.janus_rtp;
    format!(
        "table inet {name} {{\n  chain out {{\n    type filter hook output priority 0; policy accept;\n    \
         udp dport {lo}-{hi} counter comment \"seen\"\n    \
         udp sport {lo}-{hi} counter comment \"seen\"\n    \
         udp dport {lo}-{hi} numgen random mod 100 < {percent} counter drop comment \"dropped\"\n    \
         udp sport {lo}-{hi} numgen random mod 100 < {percent} counter drop comment \"dropped\"\n  }}\n}}\n"
    )
}

/// The nftables script of a table `name` dropping every packet between the appliances and the servers: TCP to and
/// from the Janus WebSocket and the token endpoint, UDP to and from Janus's media ports.
pub fn blackhole_rules(name: &str, ports: &ServerPorts) -> String {
    let (lo, hi) = ports.janus_rtp;
    let tcp = format!("{{ {}, {} }}", ports.janus_ws, ports.token);
    format!(
        "table inet {name} {{\n  chain out {{\n    type filter hook output priority 0; policy accept;\n    \
         tcp dport {tcp} counter drop comment \"dropped\"\n    \
         tcp sport {tcp} counter drop comment \"dropped\"\n    \
         udp dport {lo}-{hi} counter drop comment \"dropped\"\n    \
         udp sport {lo}-{hi} counter drop comment \"dropped\"\n  }}\n}}\n"
    )
}

/// Sums the `counter packets N` of the rules of `listing` (`nft list table`) whose comment is `comment`.
pub fn sum_counters(listing: &str, comment: &str) -> u64 {
    let tag = format!("comment \"{comment}\"");
    listing
        .lines()
        .filter(|l| l.contains(&tag))
        .filter_map(|l| {
            let rest = &l[l.find("counter packets ")? + "counter packets ".len()..];
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// One fault in force: its nftables table, deleted on drop.
pub struct NetFault {
    table: String,
    removed: bool,
}

fn nft(args: &[&str], stdin: Option<&str>) -> Result<String, HarnessError> {
    let fail = |reason: String| HarnessError::NetFault(format!("nft {}: {reason}", args.join(" ")));
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run (package nftables, scripts/install-deps): {e}")))?;
    if let (Some(script), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(script.as_bytes()).map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl NetFault {
    /// Drops `percent` % of the appliances' media packets (each direction of each appliance's leg to Janus).
    pub fn loss(stack: &Stack, percent: u8) -> Result<Self, HarnessError> {
        Self::install(|name| loss_rules(name, &ServerPorts::of(stack), percent))
    }

    /// Drops every packet between the appliances and the stack's servers until removed.
    pub fn blackhole(stack: &Stack) -> Result<Self, HarnessError> {
        Self::install(|name| blackhole_rules(name, &ServerPorts::of(stack)))
    }

    fn install(script: impl FnOnce(&str) -> String) -> Result<Self, HarnessError> {
        crate::netns::check()?;
        let table = format!("callbox_fault_{}_{}", std::process::id(), TABLE_COUNT.fetch_add(1, Ordering::Relaxed));
        nft(&["-f", "-"], Some(&script(&table)))?;
        log::info!("network fault {table} in force");
        Ok(Self { table, removed: false })
    }

    /// What the rules counted so far.
    pub fn counts(&self) -> Result<FaultCounts, HarnessError> {
        let listing = nft(&["list", "table", "inet", &self.table], None)?;
        Ok(FaultCounts { seen: sum_counters(&listing, "seen"), dropped: sum_counters(&listing, "dropped") })
    }

    /// Lifts the fault (what dropping it does, with the error reported).
    pub fn remove(mut self) -> Result<(), HarnessError> {
        self.removed = true;
        nft(&["delete", "table", "inet", &self.table], None).map(|_| log::info!("network fault {} lifted", self.table))
    }
}

impl Drop for NetFault {
    fn drop(&mut self) {
        if !self.removed {
            if let Err(e) = nft(&["delete", "table", "inet", &self.table], None) {
                log::error!("cannot lift network fault {}: {e}", self.table);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORTS: ServerPorts = ServerPorts { janus_ws: 5001, token: 5009, janus_rtp: (20000, 20199) };

    #[test]
    fn loss_drops_a_share_of_the_media_both_ways_and_counts_it() {
        let s = loss_rules("t", &PORTS, 5);
        assert!(s.contains("udp dport 20000-20199 numgen random mod 100 < 5 counter drop"), "{s}");
        assert!(s.contains("udp sport 20000-20199 numgen random mod 100 < 5 counter drop"), "{s}");
        assert!(!s.contains("tcp"), "a loss leaves signaling alone: {s}");
    }

    #[test]
    fn a_blackhole_drops_signaling_tokens_and_media_both_ways() {
        let s = blackhole_rules("t", &PORTS);
        for rule in
            ["tcp dport { 5001, 5009 }", "tcp sport { 5001, 5009 }", "udp dport 20000-20199", "udp sport 20000-20199"]
        {
            assert!(s.contains(&format!("{rule} counter drop")), "{rule}: {s}");
        }
    }

    #[test]
    fn counters_are_summed_by_comment() {
        let listing = "table inet t {\n\tchain out {\n\t\tudp dport 1-2 counter packets 100 bytes 9 comment \"seen\"\n\
                       \t\tudp sport 1-2 counter packets 50 bytes 9 comment \"seen\"\n\
                       \t\tudp dport 1-2 numgen random mod 100 < 5 counter packets 7 bytes 1 drop comment \"dropped\"\n\t}\n}\n";
        assert_eq!(sum_counters(listing, "seen"), 150);
        assert_eq!(sum_counters(listing, "dropped"), 7);
    }
}

//! Port allocation for stacks running side by side in one namespace: signalling ports are probed free (TCP and
//! UDP) and never handed out twice by this process; media port ranges are distinct blocks per stack.

use std::collections::BTreeSet;
use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use rand::Rng;

use crate::error::HarnessError;

static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
static MEDIA_BLOCK: AtomicU32 = AtomicU32::new(0);

const SIGNAL_LOW: u16 = 10_000;
const SIGNAL_HIGH: u16 = 19_990;
const MEDIA_LOW: u32 = 20_000;
const MEDIA_BLOCKS: u32 = 60; // 60 blocks of 200 ports: 20000..32000 (below the kernel's ephemeral range)
const MEDIA_BLOCK_SIZE: u32 = 200;

fn free_both(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok()
}

/// `count` consecutive ports, free for TCP and UDP on 127.0.0.1, reserved for this process.
pub fn reserve_block(count: u16) -> Result<u16, HarnessError> {
    let mut rng = rand::rng();
    let mut taken = TAKEN.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..200 {
        let base = rng.random_range(SIGNAL_LOW / 10..SIGNAL_HIGH / 10) * 10;
        let ports: Vec<u16> = (base..base + count).collect();
        if ports.iter().any(|p| taken.contains(p)) {
            continue;
        }
        if ports.iter().all(|p| free_both(*p)) {
            taken.extend(ports);
            return Ok(base);
        }
    }
    Err(HarnessError::Ports(format!("{count} consecutive ports in {SIGNAL_LOW}-{SIGNAL_HIGH}")))
}

/// One free port.
pub fn reserve() -> Result<u16, HarnessError> {
    reserve_block(1)
}

/// A media port range "low-high" of 200 ports, distinct from the previous 59 handed out by this process.
pub fn media_range() -> (u16, u16) {
    let block = MEDIA_BLOCK.fetch_add(1, Ordering::Relaxed) % MEDIA_BLOCKS;
    let low = MEDIA_LOW + block * MEDIA_BLOCK_SIZE;
    let high = low + MEDIA_BLOCK_SIZE - 1;
    // Both bounds are below 32000 by construction.
    (low as u16, high as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_distinct_and_free() {
        let a = reserve_block(6).unwrap();
        let b = reserve_block(6).unwrap();
        assert!(a + 6 <= b || b + 6 <= a, "{a} {b}");
        assert_ne!(media_range(), media_range());
    }
}

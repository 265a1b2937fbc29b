//! `CuttableProxy`: a TCP forwarder whose connections a test can cut, and which it can hold closed for a while
//! (new connections dropped at once), to drop a live WebSocket under a client (reconnect, session-claim and
//! session-loss tests), or stall (what the server sends is held back, the connection stays up: a slow server);
//! also the way a QEMU guest on the test's tap device reaches the stack.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

pub struct CuttableProxy {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    closed: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    accept: JoinHandle<()>,
}

/// Copies `from` to `to`; while `stalled` is set, what was read waits before it is written.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Option<Arc<AtomicBool>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while stalled.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl CuttableProxy {
    /// Listens on an ephemeral 127.0.0.1 port and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        Self::start_on(([127, 0, 0, 1], 0).into(), target).await
    }

    /// Listens on `listen` (port 0: an ephemeral one) and forwards every connection to `target`: how a QEMU guest
    /// on a tap device of the test's namespace reaches servers that listen on 127.0.0.1 only.
    pub async fn start_on(listen: SocketAddr, target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let registry = conns.clone();
        let closed: Arc<AtomicBool> = Arc::default();
        let held = closed.clone();
        let stalled: Arc<AtomicBool> = Arc::default();
        let slow = stalled.clone();
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if held.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let slow = slow.clone();
                let task = tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(target).await {
                        let (from_client, to_client) = inbound.into_split();
                        let (from_server, to_server) = outbound.into_split();
                        tokio::join!(
                            forward(from_client, to_server, None),
                            forward(from_server, to_client, Some(slow))
                        );
                    }
                });
                crate::baresip_lock(&registry).push(task.abort_handle());
            }
        });
        Ok(CuttableProxy { addr, conns, closed, stalled, accept })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR:PORT`, for a WebSocket client.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Holds the way closed (`true`: every new connection is dropped at once) or opens it again.
    pub fn hold_closed(&self, closed: bool) {
        self.closed.store(closed, Ordering::SeqCst);
    }

    /// Stalls the server (`true`: what it sends is held back, connections stay up) or lets it go on.
    pub fn stall(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
    }

    /// Cuts every connection open now (new ones are still accepted); returns how many were cut.
    pub fn cut(&self) -> usize {
        let conns: Vec<AbortHandle> = crate::baresip_lock(&self.conns).drain(..).collect();
        let live = conns.iter().filter(|c| !c.is_finished()).count();
        for c in conns {
            c.abort();
        }
        live
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

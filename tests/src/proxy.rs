//! `CuttableProxy`: a TCP forwarder whose connections a test can cut, and which it can hold closed for a while
//! (new connections dropped at once), to drop a live WebSocket under a client (reconnect, session-claim and
//! session-loss tests); also the way a QEMU guest on the test's tap device reaches the stack.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

pub struct CuttableProxy {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    closed: Arc<AtomicBool>,
    accept: JoinHandle<()>,
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
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if held.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                crate::baresip_lock(&registry).push(task.abort_handle());
            }
        });
        Ok(CuttableProxy { addr, conns, closed, accept })
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

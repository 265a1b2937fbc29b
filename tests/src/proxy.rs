//! `CuttableProxy`: a TCP forwarder on 127.0.0.1 whose connections a test can cut, to drop a live WebSocket
//! under a client (reconnect and session-claim tests).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

pub struct CuttableProxy {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: JoinHandle<()>,
}

impl CuttableProxy {
    /// Listens on an ephemeral 127.0.0.1 port and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let registry = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                crate::baresip_lock(&registry).push(task.abort_handle());
            }
        });
        Ok(CuttableProxy { addr, conns, accept })
    }

    /// `ws://127.0.0.1:PORT`, for a WebSocket client.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
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

//! A TCP forwarder for tests of drops and restarts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP forwarder in front of the server that can cut every connection and refuse new
/// ones, as a network drop does, and be pointed at a restarted server.
pub struct Proxy {
    pub addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    blocked: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = Arc::new(Mutex::new(upstream));
        let blocked = Arc::new(AtomicBool::new(false));
        let (cut, _) = watch::channel(0u64);
        let (upstream2, blocked2, cut2) =
            (Arc::clone(&upstream), Arc::clone(&blocked), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if blocked2.load(Ordering::SeqCst) {
                    continue;
                }
                let mut cut = cut2.subscribe();
                let to = *upstream2.lock().unwrap();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            upstream,
            blocked,
            cut,
        }
    }

    /// Refuses new connections until [`Proxy::restore`].
    pub fn block(&self) {
        self.blocked.store(true, Ordering::SeqCst);
    }

    /// Cuts every connection and refuses new ones until [`Proxy::restore`].
    pub fn drop_network(&self) {
        self.block();
        self.cut.send_modify(|g| *g += 1);
    }

    /// Forwards new connections again, to `upstream`.
    pub fn restore(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap() = upstream;
        self.blocked.store(false, Ordering::SeqCst);
    }
}

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
    /// The next cut resets both sides (RST) instead of closing them.
    reset: Arc<AtomicBool>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = Arc::new(Mutex::new(upstream));
        let blocked = Arc::new(AtomicBool::new(false));
        let (cut, _) = watch::channel(0u64);
        let reset = Arc::new(AtomicBool::new(false));
        let (upstream2, blocked2, cut2, reset2) = (
            Arc::clone(&upstream),
            Arc::clone(&blocked),
            cut.clone(),
            Arc::clone(&reset),
        );
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if blocked2.load(Ordering::SeqCst) {
                    continue;
                }
                let mut cut = cut2.subscribe();
                let to = *upstream2.lock().unwrap();
                let reset = Arc::clone(&reset2);
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {
                            if reset.load(Ordering::SeqCst) {
                                for side in [&client, &server] {
                                    let linger = Some(std::time::Duration::ZERO);
                                    let _ = socket2::SockRef::from(side).set_linger(linger);
                                }
                            }
                        }
                    }
                });
            }
        });
        Proxy {
            addr,
            upstream,
            blocked,
            cut,
            reset,
        }
    }

    /// Resets every connection (RST to both sides, whatever was in flight lost); new ones
    /// are forwarded as before.
    pub fn reset_all(&self) {
        self.reset.store(true, Ordering::SeqCst);
        self.cut.send_modify(|g| *g += 1);
    }

    /// Refuses new connections until [`Proxy::restore`].
    pub fn block(&self) {
        self.blocked.store(true, Ordering::SeqCst);
    }

    /// Cuts every connection and refuses new ones until [`Proxy::restore`].
    pub fn drop_network(&self) {
        self.block();
        self.reset.store(false, Ordering::SeqCst);
        self.cut.send_modify(|g| *g += 1);
    }

    /// Forwards new connections again, to `upstream`.
    pub fn restore(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap() = upstream;
        self.blocked.store(false, Ordering::SeqCst);
    }
}

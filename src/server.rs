//! The accept loop: connection caps, one task per connection, and graceful shutdown.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::Either;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, warn};

use crate::config::Limits;
use crate::metrics::inc;
use crate::protocol;
use crate::room::directory::Protocol;
use crate::session::{self, End, LoginObserver, SessionContext};
use crate::throttle::{canonical, source_key};
use crate::transport::ack::AckSource;
use crate::transport::{self, Accepted};
use crate::web::Web;

/// A connection's span: its source, and the user and protocol once known.
macro_rules! conn_span {
    ($($source:tt)+) => {
        tracing::info_span!(
            "conn",
            $($source)+,
            user = tracing::field::Empty,
            proto = tracing::field::Empty
        )
    };
}

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one "connection refused" warning per this interval, so floods cannot fill the log.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Serves `listener` (and the IRC port, if there is one) until `shutdown` is cancelled, then
/// lets sessions say goodbye. Connections from `trusted_proxies` begin with a PROXY protocol
/// header naming the client. Both ports count against the same connection caps.
pub async fn run(
    (listener, irc): (TcpListener, Option<TcpListener>),
    ctx: Arc<SessionContext>,
    (web, trusted_proxies): (Option<Arc<Web>>, Arc<[IpAddr]>),
    shutdown: CancellationToken,
) -> io::Result<()> {
    let tracker = TaskTracker::new();
    let caps = Arc::new(ConnectionCaps::new(&ctx.limits));
    tracker.spawn(crate::accounts::watch(
        ctx.auth.store().clone(),
        Arc::clone(&ctx.room),
        Arc::clone(&ctx.metrics),
        ctx.limits.account_check_interval,
        shutdown.clone(),
    ));
    loop {
        let (accepted, is_irc) = tokio::select! {
            r = listener.accept() => (r, false),
            r = accept_irc(irc.as_ref()) => (r, true),
            _ = shutdown.cancelled() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        crate::metrics::inc(&ctx.metrics.connections_accepted);
        let admission = Admission {
            caps: Arc::clone(&caps),
            ctx: Arc::clone(&ctx),
            web: web.clone(),
            shutdown: shutdown.clone(),
            irc: is_irc,
        };
        if trusted_proxies.contains(&canonical(peer.ip())) {
            // The client's address, which the caps count, comes with the header: read it in
            // the connection's own task, within the handshake timeout.
            let span = conn_span!(proxy = %peer);
            tracker.spawn(admission.after_proxy_header(tcp, peer).instrument(span));
        } else if let Some(task) = admission.admit(tcp, peer) {
            let span = conn_span!(peer = %peer);
            tracker.spawn(task.instrument(span));
        }
    }
    drop(listener);
    drop(irc);
    info!("shutting down");
    ctx.room.shutdown();
    tracker.close();
    let deadline = ctx.limits.shutdown_grace + Duration::from_secs(1);
    if tokio::time::timeout(deadline, tracker.wait())
        .await
        .is_err()
    {
        warn!(remaining = tracker.len(), "sessions did not finish in time");
    }
    // Every message relayed, and every position and membership saved, reaches the database.
    ctx.history.close().await;
    info!("shutdown complete");
    Ok(())
}

/// The next connection on the IRC port; never, without one.
async fn accept_irc(irc: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match irc {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// What admitting a connection needs: the caps, and what its session will share.
struct Admission {
    caps: Arc<ConnectionCaps>,
    ctx: Arc<SessionContext>,
    web: Option<Arc<Web>>,
    shutdown: CancellationToken,
    /// It came to the IRC port.
    irc: bool,
}

impl Admission {
    /// Counts the connection from `peer` against the caps and returns its task, or refuses it
    /// (`None`) when a cap is reached.
    fn admit(
        self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let slot = match self.caps.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(limit) => {
                inc(&self.ctx.metrics.connections_refused);
                self.caps.log_refusal(peer, limit);
                refuse(tcp);
                return None;
            }
        };
        set_keepalive(&tcp, self.ctx.limits.keepalive);
        // Sessions coalesce their own writes; Nagle would only add delay to each batch.
        if let Err(e) = tcp.set_nodelay(true) {
            debug!(error = %e, "could not set TCP_NODELAY");
        }
        // The IRC port has no web client.
        let front = if self.irc {
            Front::Irc
        } else {
            Front::Chat(self.web)
        };
        Some(serve_one(tcp, peer, self.ctx, front, self.shutdown, slot))
    }

    /// A connection from a trusted proxy: its PROXY header names the client, which is then
    /// admitted and served as if it had connected itself. No valid header within the
    /// handshake timeout: closed.
    async fn after_proxy_header(self, mut tcp: TcpStream, proxy: SocketAddr) {
        let deadline = self.ctx.limits.handshake_timeout;
        let read = tokio::select! {
            r = tokio::time::timeout(deadline, transport::proxy::read_source(&mut tcp)) => r,
            _ = self.shutdown.cancelled() => return,
        };
        let peer = match read {
            Ok(Ok(source)) => source.unwrap_or(proxy),
            Ok(Err(e)) => {
                warn!(error = %e, "connection from a trusted proxy closed");
                return;
            }
            Err(_) => {
                inc(&self.ctx.metrics.tls_handshake_failures);
                warn!("connection from a trusted proxy closed: no PROXY header in time");
                return;
            }
        };
        if let Some(task) = self.admit(tcp, peer) {
            let span = conn_span!(peer = %peer);
            task.instrument(span).await;
        }
    }
}

/// Which port a connection came to.
enum Front {
    /// The chat port, with the web client if it is on.
    Chat(Option<Arc<Web>>),
    /// The IRC port.
    Irc,
}

/// Runs one connection to completion: the first byte, the TLS handshake, then a line session
/// or the web client, as the ClientHello chose, or an IRC session on the IRC port. I/O errors
/// end only this connection.
async fn run_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: Arc<SessionContext>,
    front: Front,
    shutdown: CancellationToken,
    observer: impl LoginObserver,
) -> io::Result<End> {
    let connected = tokio::time::Instant::now();
    let limits = &ctx.limits;
    let handshake_deadline = connected + limits.handshake_timeout;

    let first = tokio::select! {
        r = tokio::time::timeout_at(handshake_deadline, transport::first_byte(&tcp)) => r,
        _ = shutdown.cancelled() => return Ok(End::Shutdown),
    };
    match first {
        Err(_) => {
            inc(&ctx.metrics.tls_handshake_failures);
            return Ok(End::HandshakeTimeout);
        }
        Ok(Ok(None)) => return Ok(End::ClientClosed),
        Ok(Ok(Some(transport::TLS_HANDSHAKE_RECORD))) => {}
        Ok(Ok(Some(_))) => {
            match front {
                Front::Chat(_) => {
                    transport::refuse_plaintext(tcp, transport::GOODBYE_TIMEOUT).await;
                }
                Front::Irc => {
                    let hint = transport::IRC_TLS_ONLY;
                    transport::say_and_close(tcp, hint, transport::GOODBYE_TIMEOUT).await;
                }
            }
            return Ok(End::NotTls);
        }
        Ok(Err(e)) => return Err(e),
    }
    let web = match front {
        Front::Chat(web) => web,
        Front::Irc => {
            tracing::Span::current().record("proto", Protocol::Irc.as_str());
            let handshake = Box::pin(transport::accept_irc(tcp, &ctx.tls));
            let session = {
                let tls = match finish(handshake, handshake_deadline, &ctx, &shutdown).await {
                    Ok(tls) => tls,
                    Err(end) => return end,
                };
                let presented = presented_fingerprint(&tls);
                let ack = AckSource::Socket(tls.get_ref().0.probe());
                session::irc::serve(
                    Box::new(tls),
                    peer,
                    &ctx,
                    &shutdown,
                    (observer, presented, ack),
                    connected,
                )
            };
            return Box::pin(session).await;
        }
    };
    // Boxed: the handshake state is large and only needed until it completes, so it should not
    // size the task that every idle session keeps.
    let handshake = Box::pin(transport::accept(tcp, &ctx.tls, web.is_some()));
    // The stream moves into the session's future inside this block, so the task keeps one
    // copy of it (a TLS stream is kilobytes, and every idle session holds one).
    let session = {
        let accepted = match finish(handshake, handshake_deadline, &ctx, &shutdown).await {
            Ok(accepted) => accepted,
            Err(end) => return end,
        };
        debug!(peer = %peer, "tls handshake complete");
        match accepted {
            // Boxed: an async fn keeps its arguments apart from its locals, so a stream passed
            // by value would be stored twice in the task that every idle session keeps.
            Accepted::Line(tls) => {
                tracing::Span::current().record("proto", Protocol::Line.as_str());
                let presented = presented_fingerprint(&tls);
                let ack = AckSource::Socket(tls.get_ref().0.probe());
                Either::Left(session::serve(
                    Box::new(tls),
                    peer,
                    &ctx,
                    &shutdown,
                    (observer, presented, ack, Protocol::Line),
                    connected,
                ))
            }
            Accepted::Web(tls) => {
                tracing::Span::current().record("proto", Protocol::Web.as_str());
                let probe = tls.get_ref().0.probe();
                Either::Right(Box::pin(crate::web::serve(
                    tls,
                    peer,
                    &ctx,
                    web.unwrap_or_default(),
                    &shutdown,
                    (observer, Some(probe)),
                    connected,
                )))
            }
        }
    };
    session.await
}

/// Waits for a TLS handshake until `deadline`; a failure or timeout is counted and ends the
/// connection (the `Err`), as does shutdown.
async fn finish<T>(
    handshake: impl std::future::Future<Output = io::Result<T>>,
    deadline: tokio::time::Instant,
    ctx: &SessionContext,
    shutdown: &CancellationToken,
) -> Result<T, io::Result<End>> {
    tokio::select! {
        r = tokio::time::timeout_at(deadline, handshake) => match r {
            Ok(Ok(done)) => Ok(done),
            failed => {
                inc(&ctx.metrics.tls_handshake_failures);
                Err(match failed {
                    Ok(Err(e)) => Err(e),
                    _ => Ok(End::HandshakeTimeout),
                })
            }
        },
        _ = shutdown.cancelled() => Err(Ok(End::Shutdown)),
    }
}

/// The fingerprint of the client certificate a connection presented, if any.
fn presented_fingerprint<S>(tls: &tokio_rustls::server::TlsStream<S>) -> Option<Arc<str>> {
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| Arc::from(crate::tls::fingerprint(cert)))
}

async fn serve_one(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: Arc<SessionContext>,
    front: Front,
    shutdown: CancellationToken,
    slot: Slot,
) {
    let metrics = Arc::clone(&ctx.metrics);
    metrics
        .connections_open
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let outcome = run_connection(tcp, peer, ctx, front, shutdown, slot).await;
    metrics
        .connections_open
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    match outcome {
        Ok(end) => debug!(end = ?end, "connection closed"),
        Err(e) if is_disconnect(&e) => debug!(error = %e, "connection lost"),
        Err(e) => warn!(error = %e, "connection failed"),
    }
}

fn is_disconnect(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | TimedOut
    )
}

/// Best effort and never blocking: one line if the socket takes it right away, then close.
/// No task is spawned, so a connection flood cannot pile up work or file descriptors.
fn refuse(tcp: TcpStream) {
    let _ = tcp.try_write(protocol::TOO_MANY_CONNECTIONS.as_bytes());
}

/// TCP keepalive (probes after `idle`, then every `idle / 4`, 4 of them) finds a peer that
/// vanished while the connection was quiet; TCP_USER_TIMEOUT (`2 × idle`) finds one that
/// vanished with data in flight, which keepalive never probes. Either way about two minutes
/// with the default 60 s.
pub fn set_keepalive(tcp: &TcpStream, idle: Duration) {
    let keepalive = TcpKeepalive::new()
        .with_time(idle)
        .with_interval(idle / 4)
        .with_retries(4);
    let socket = SockRef::from(tcp);
    if let Err(e) = socket.set_tcp_keepalive(&keepalive) {
        debug!(error = %e, "could not enable tcp keepalive");
    }
    if let Err(e) = socket.set_tcp_user_timeout(Some(idle * 2)) {
        debug!(error = %e, "could not set TCP_USER_TIMEOUT");
    }
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapHit {
    /// All connections together.
    Global,
    /// Connections from one source.
    PerIp,
    /// Not-yet-logged-in connections from one source.
    PreLoginPerIp,
    /// Not-yet-logged-in connections, all sources together.
    PreLogin,
}

/// Counts connections in total and per source (IPv6 per /64).
pub struct ConnectionCaps {
    state: Mutex<CapState>,
    max_total: usize,
    max_per_ip: usize,
    max_prelogin_per_ip: usize,
    max_prelogin: usize,
    exempt: Vec<IpAddr>,
    last_refusal_log: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct CapState {
    total: usize,
    /// Connections that have not logged in yet.
    prelogin: usize,
    per_source: HashMap<IpAddr, SourceCount>,
}

#[derive(Default, Clone, Copy)]
struct SourceCount {
    total: usize,
    prelogin: usize,
}

impl ConnectionCaps {
    /// Caps from the configured limits.
    pub fn new(limits: &Limits) -> Self {
        ConnectionCaps {
            state: Mutex::new(CapState::default()),
            max_total: limits.max_connections,
            max_per_ip: limits.max_connections_per_ip,
            max_prelogin_per_ip: limits.max_prelogin_per_ip,
            max_prelogin: limits.max_prelogin,
            exempt: limits.exempt_ips.clone(),
            last_refusal_log: Mutex::new(None),
        }
    }

    /// Takes a slot for a new connection from `ip`, or says which cap is full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, CapHit> {
        let exempt = self.exempt.iter().any(|e| canonical(*e) == canonical(ip));
        let source = (!exempt).then(|| source_key(ip));
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.total >= self.max_total {
            return Err(CapHit::Global);
        }
        // Keeps room for members and for logins in progress elsewhere: idle connections at the
        // prompt can take at most this share of all slots.
        if state.prelogin >= self.max_prelogin {
            return Err(CapHit::PreLogin);
        }
        if let Some(key) = source {
            let count = state.per_source.get(&key).copied().unwrap_or_default();
            if count.total >= self.max_per_ip {
                return Err(CapHit::PerIp);
            }
            if count.prelogin >= self.max_prelogin_per_ip {
                return Err(CapHit::PreLoginPerIp);
            }
            let entry = state.per_source.entry(key).or_default();
            entry.total += 1;
            entry.prelogin += 1;
        }
        state.total += 1;
        state.prelogin += 1;
        Ok(Slot {
            caps: Arc::clone(self),
            source,
            logged_in: false,
            released: false,
        })
    }

    /// Connections currently counted.
    #[cfg(test)]
    fn open_connections(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    fn log_refusal(&self, peer: SocketAddr, limit: CapHit) {
        let mut last = self
            .last_refusal_log
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_INTERVAL) {
            *last = Some(now);
            warn!(peer = %peer, limit = ?limit, "connection refused: cap reached (further refusals not logged for 10 s)");
        }
    }

    fn release(&self, source: Option<IpAddr>, logged_in: bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.total -= 1;
        if !logged_in {
            state.prelogin -= 1;
        }
        if let Some(key) = source
            && let Some(count) = state.per_source.get_mut(&key)
        {
            count.total -= 1;
            if !logged_in {
                count.prelogin -= 1;
            }
            if count.total == 0 {
                state.per_source.remove(&key);
            }
        }
    }

    fn mark_logged_in(&self, source: Option<IpAddr>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.prelogin -= 1;
        if let Some(count) = source.and_then(|s| state.per_source.get_mut(&s)) {
            count.prelogin -= 1;
        }
    }
}

/// One admitted connection; dropping it (or `released`) gives the slot back.
pub struct Slot {
    caps: Arc<ConnectionCaps>,
    source: Option<IpAddr>,
    logged_in: bool,
    released: bool,
}

impl LoginObserver for Slot {
    fn logged_in(&mut self) {
        if !self.logged_in && !self.released {
            self.logged_in = true;
            self.caps.mark_logged_in(self.source);
        }
    }

    fn released(&mut self) {
        if !self.released {
            self.released = true;
            self.caps.release(self.source, self.logged_in);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.released();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(
        per_ip: usize,
        prelogin: usize,
        total: usize,
        exempt: Vec<IpAddr>,
    ) -> Arc<ConnectionCaps> {
        Arc::new(ConnectionCaps::new(&Limits {
            max_connections: total,
            max_connections_per_ip: per_ip,
            max_prelogin_per_ip: prelogin,
            max_prelogin: total,
            exempt_ips: exempt,
            ..Limits::default()
        }))
    }

    #[test]
    fn prelogin_cap_frees_up_after_login() {
        let c = caps(10, 2, 100, vec![]);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut a = c.admit(ip).unwrap();
        let _b = c.admit(ip).unwrap();
        assert_eq!(c.admit(ip).err(), Some(CapHit::PreLoginPerIp));
        a.logged_in();
        let _c = c.admit(ip).unwrap();
        assert_eq!(c.open_connections(), 3);
    }

    #[tokio::test]
    async fn accepted_sockets_get_a_user_timeout_of_twice_the_keepalive() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        set_keepalive(&accepted, Duration::from_secs(60));
        let socket = SockRef::from(&accepted);
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            socket.tcp_keepalive_time().unwrap(),
            Duration::from_secs(60)
        );
        drop(client);
    }

    #[test]
    fn slots_are_returned_on_drop() {
        let c = caps(1, 1, 100, vec![]);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = c.admit(ip).unwrap();
        assert_eq!(c.admit(ip).err(), Some(CapHit::PerIp));
        drop(a);
        assert!(c.admit(ip).is_ok());
    }

    #[test]
    fn ipv6_is_counted_per_64_and_exempt_list_bypasses() {
        let c = caps(1, 1, 100, vec!["10.0.0.9".parse().unwrap()]);
        let _a = c.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert!(c.admit("2001:db8::2".parse().unwrap()).is_err());
        assert!(c.admit("2001:db8:0:1::1".parse().unwrap()).is_ok());
        let ex: IpAddr = "10.0.0.9".parse().unwrap();
        let _x = c.admit(ex).unwrap();
        let _y = c.admit(ex).unwrap();
    }

    #[test]
    fn sources_are_grouped_per_64_and_mapped_v4_is_v4() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            source_key(ip("2001:db8::1")),
            source_key(ip("2001:db8::ffff"))
        );
        assert_ne!(
            source_key(ip("2001:db8::1")),
            source_key(ip("2001:db8:0:1::1"))
        );
        assert_eq!(source_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn global_prelogin_cap_counts_every_source_and_frees_up_on_login() {
        let c = Arc::new(ConnectionCaps::new(&Limits {
            max_connections: 100,
            max_prelogin: 2,
            exempt_ips: vec!["10.0.0.9".parse().unwrap()],
            ..Limits::default()
        }));
        let mut a = c.admit("10.0.0.1".parse().unwrap()).unwrap();
        let b = c.admit("10.0.0.9".parse().unwrap()).unwrap();
        assert_eq!(
            c.admit("10.0.0.3".parse().unwrap()).err(),
            Some(CapHit::PreLogin)
        );
        a.logged_in();
        let _c = c.admit("10.0.0.3".parse().unwrap()).unwrap();
        drop(b);
        drop(a);
        let _d = c.admit("10.0.0.4".parse().unwrap()).unwrap();
        assert_eq!(c.open_connections(), 2);
    }

    #[test]
    fn released_slot_is_not_released_twice() {
        let c = caps(1, 1, 100, vec![]);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut a = c.admit(ip).unwrap();
        a.logged_in();
        a.released();
        assert_eq!(c.open_connections(), 0);
        drop(a);
        assert_eq!(c.open_connections(), 0);
        assert!(c.admit(ip).is_ok());
    }

    #[test]
    fn global_cap_applies_to_exempt_sources_too() {
        let ex: IpAddr = "10.0.0.9".parse().unwrap();
        let c = caps(10, 10, 1, vec![ex]);
        let _a = c.admit(ex).unwrap();
        assert_eq!(c.admit(ex).err(), Some(CapHit::Global));
    }
}

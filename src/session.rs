//! One client from TLS handshake to close: greeting, login, then the member loop.
//!
//! The session task is the only writer to its socket. Everything it sends goes through one
//! output buffer that is written and flushed once per batch, so queued room lines coalesce
//! into as few TLS records as possible.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::Either;
use secrecy::SecretString;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::auth::{AuthError, Authenticator, LoggedIn};
use crate::config::Limits;
use crate::event::RoomName;
use crate::history::History;
use crate::metrics::{Metrics, inc};
use crate::protocol::{self, Command, Incoming, LineDecoder};
use crate::room::directory::Login;
use crate::room::{Delivery, JoinError, Joined, Mark, MemberId, Outbox, Rooms};
use crate::tls::ServerConfigs;
use crate::transport::{self, Accepted};
use crate::web::Web;

/// Failed logins allowed on one connection.
pub const MAX_LOGIN_ATTEMPTS: u32 = 3;
/// Bytes read from the TLS stream at a time. rustls already holds each decrypted record, so a
/// small buffer only means more memcpy calls, while it is memory every idle session keeps.
const READ_CHUNK_BYTES: usize = 512;
/// Time given to a last line and close_notify when a session ends, whether on its own or
/// removed by the room (kick, takeover, account change, shutdown): a peer that does not read
/// holds nothing longer than this.
pub const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);
/// Time given to the eviction notice: the peer is known not to read.
const EVICTION_GOODBYE_TIMEOUT: Duration = Duration::from_millis(200);
/// An output buffer larger than this is released once written: idle sessions keep none.
const OUT_BUFFER_KEEP_BYTES: usize = 1024;
/// Output written per step of the member loop: a backlog longer than this is written in
/// several steps, each followed by a chance to read the client's lines.
const MAX_BATCH_BYTES: usize = 64 * 1024;
/// First byte of a TLS handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What every session shares.
pub struct SessionContext {
    /// TLS configurations with the current certificate.
    pub tls: ServerConfigs,
    /// The web client's settings; `None` when it is off.
    pub web: Option<Arc<Web>>,
    /// Password checks.
    pub auth: Authenticator,
    /// The rooms members join, and who is online.
    pub room: Arc<Rooms>,
    /// Stored history, memberships and read positions.
    pub history: Arc<History>,
    /// Counters for `--metrics-listen`.
    pub metrics: Arc<Metrics>,
    /// Timeouts, line limits and rates.
    pub limits: Limits,
}

/// Told when the client has logged in (the server moves it out of the pre-login cap) and when
/// its member has left (the server frees its connection slots before the goodbye).
pub trait LoginObserver: Send {
    /// The connection has a logged-in member now.
    fn logged_in(&mut self);
    /// The member has left; only a bounded goodbye remains.
    fn released(&mut self);
}

/// Why a session ended, for the log.
#[derive(Debug)]
pub enum End {
    /// The first bytes were not TLS; the hint line was sent.
    NotTls,
    /// Handshake did not finish in time.
    HandshakeTimeout,
    /// The client closed the connection.
    ClientClosed,
    /// Login timed out.
    LoginTimeout,
    /// Three failed logins.
    TooManyFailures,
    /// Password checks are saturated.
    Busy,
    /// Bytes without a newline past the limit.
    NoNewline,
    /// `/quit`.
    Quit,
    /// The room replaced or evicted this member, or shut down.
    Closed(Arc<str>),
    /// Evicted for not reading.
    Evicted,
    /// Server shutdown.
    Shutdown,
    /// A browser's connection served its pages and closed.
    HttpDone,
    /// A browser's connection stayed open past `login_timeout` without a WebSocket.
    HttpIdle,
}

/// Runs one connection to completion. I/O errors end only this session.
pub async fn run(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: Arc<SessionContext>,
    shutdown: CancellationToken,
    observer: impl LoginObserver,
) -> io::Result<End> {
    let connected = Instant::now();
    let limits = &ctx.limits;
    let handshake_deadline = connected + limits.handshake_timeout;

    let first = tokio::select! {
        r = tokio::time::timeout_at(handshake_deadline, first_byte(&tcp)) => r,
        _ = shutdown.cancelled() => return Ok(End::Shutdown),
    };
    match first {
        Err(_) => {
            inc(&ctx.metrics.tls_handshake_failures);
            return Ok(End::HandshakeTimeout);
        }
        Ok(Ok(None)) => return Ok(End::ClientClosed),
        Ok(Ok(Some(TLS_HANDSHAKE_RECORD))) => {}
        Ok(Ok(Some(_))) => {
            refuse_plaintext(tcp).await;
            return Ok(End::NotTls);
        }
        Ok(Err(e)) => return Err(e),
    }
    // Boxed: the handshake state is large and only needed until it completes, so it should not
    // size the task that every idle session keeps.
    let handshake = Box::pin(transport::accept(tcp, &ctx.tls, ctx.web.is_some()));
    // The stream moves into the session's future inside this block, so the task keeps one
    // copy of it (a TLS stream is kilobytes, and every idle session holds one).
    let session = {
        let accepted = tokio::select! {
            r = tokio::time::timeout_at(handshake_deadline, handshake) => match r {
                Ok(Ok(accepted)) => accepted,
                failed => {
                    inc(&ctx.metrics.tls_handshake_failures);
                    return match failed {
                        Ok(Err(e)) => Err(e),
                        _ => Ok(End::HandshakeTimeout),
                    };
                }
            },
            _ = shutdown.cancelled() => return Ok(End::Shutdown),
        };
        debug!(peer = %peer, "tls handshake complete");
        match accepted {
            // Boxed: an async fn keeps its arguments apart from its locals, so a stream passed
            // by value would be stored twice in the task that every idle session keeps.
            Accepted::Line(tls) => {
                let presented = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|cert| Arc::from(crate::tls::fingerprint(cert)));
                Either::Left(serve(
                    Box::new(tls),
                    peer,
                    &ctx,
                    &shutdown,
                    (observer, presented),
                    connected,
                ))
            }
            Accepted::Web(tls) => Either::Right(Box::pin(crate::web::serve(
                tls, peer, &ctx, &shutdown, observer, connected,
            ))),
        }
    };
    session.await
}

/// Runs a session over a stream of lines that has passed its handshake: login, then the
/// member loop. `connected` starts the login timeout; `presented` is the fingerprint of the
/// client certificate the connection presented, if any.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    ctx: &SessionContext,
    shutdown: &CancellationToken,
    (mut observer, presented): (impl LoginObserver, Option<Arc<str>>),
    connected: Instant,
) -> io::Result<End> {
    let limits = &ctx.limits;
    let mut conn = Conn::new(stream, limits);

    let login_deadline = connected + limits.login_timeout;
    let outcome = tokio::select! {
        r = Box::pin(login(&mut conn, &ctx.auth, &ctx.metrics, peer, presented.as_deref())) => r?,
        _ = sleep_until(login_deadline) => {
            conn.goodbye(protocol::LOGIN_TIMED_OUT, GOODBYE_TIMEOUT).await;
            return Ok(End::LoginTimeout);
        }
        _ = shutdown.cancelled() => {
            conn.goodbye(protocol::SHUTTING_DOWN, limits.shutdown_grace).await;
            return Ok(End::Shutdown);
        }
    };
    let LoggedIn {
        name,
        stamp,
        certificate,
    } = match outcome {
        LoginOutcome::LoggedIn(account) => account,
        LoginOutcome::Ended(end, last_line) => {
            if matches!(end, End::NoNewline) {
                inc(&ctx.metrics.evictions_no_newline);
            }
            if let Some(line) = last_line {
                conn.goodbye(line, GOODBYE_TIMEOUT).await;
            }
            return Ok(end);
        }
    };
    tracing::Span::current().record("user", name.as_str());
    let login = Login {
        peer,
        stamp,
        certificate,
    };
    // Boxed, like every database wait below: the futures are large and rare, and would
    // otherwise size the task that every idle session keeps.
    let joined = match Box::pin(ctx.room.log_in(&name, login)).await {
        Ok(joined) => joined,
        Err(JoinError::Closed(_)) => {
            conn.goodbye(protocol::SHUTTING_DOWN, limits.shutdown_grace)
                .await;
            return Ok(End::Shutdown);
        }
        Err(e) => {
            // Joining without its rooms would skip their catch-up for good: the member
            // comes back when the store answers.
            warn!(error = %e, "reading rooms and read positions failed");
            conn.goodbye(protocol::SERVER_BUSY, GOODBYE_TIMEOUT).await;
            return Ok(End::Busy);
        }
    };
    observer.logged_in();
    info!("login ok");
    let mut member = MemberGuard {
        room: Arc::clone(&ctx.room),
        id: joined.id,
        reason: None,
        history: Some((Arc::clone(&ctx.history), stamp.id)),
        positions: Vec::new(),
        name,
        presented,
    };
    member.commit(joined.positions);
    // By value: the welcome lists everyone online, and a field left in `joined` would live
    // as long as the session (at 1,000 online, ~3 KiB more per idle session).
    let Joined {
        welcome, outbox, ..
    } = joined;
    conn.queue(&welcome);
    drop(welcome);
    let result = member_loop(&mut conn, ctx, &mut member, outbox).await;
    // Leave the room, the admin list and the connection caps before the goodbye, which may
    // wait on a peer that does not read.
    drop(member);
    observer.released();
    let end = match result {
        Ok((end, goodbye)) => {
            if let Some(mut limit) = goodbye {
                if shutdown.is_cancelled() {
                    // The server waits `shutdown_grace` for every session.
                    limit = limit.min(limits.shutdown_grace);
                }
                conn.goodbye_queued(limit).await;
            }
            Ok(end)
        }
        Err(e) => Err(e),
    };
    info!(reason = ?end.as_ref().map_err(|e| e.kind()), "logout");
    end
}

/// Takes `leave` off the happy path: it runs on every exit, including errors and panics, and
/// saves the read positions the session reached.
struct MemberGuard {
    room: Arc<Rooms>,
    id: MemberId,
    reason: Option<String>,
    /// Where positions are saved, and for which account.
    history: Option<(Arc<History>, i64)>,
    /// The last message of each room written to the socket or sent by the member.
    positions: Vec<Mark>,
    /// The account's name as created.
    name: crate::username::Username,
    /// The fingerprint of the certificate the connection presented, for `/cert enroll`.
    presented: Option<Arc<str>>,
}

impl MemberGuard {
    /// Moves read positions forward (never back).
    fn commit(&mut self, marks: impl IntoIterator<Item = Mark>) {
        for (room, seq) in marks {
            match self.positions.iter_mut().find(|(r, _)| *r == room) {
                Some((_, at)) => *at = (*at).max(seq),
                None => self.positions.push((room, seq)),
            }
        }
    }
}

impl Drop for MemberGuard {
    fn drop(&mut self) {
        self.room.leave(self.id, self.reason.as_deref());
        if let Some((history, user)) = &self.history {
            history.save_positions(*user, std::mem::take(&mut self.positions));
        }
    }
}

/// Peeks at the first byte without consuming it; `None` on EOF.
async fn first_byte(tcp: &TcpStream) -> io::Result<Option<u8>> {
    let mut byte = [0u8; 1];
    let n = tcp.peek(&mut byte).await?;
    Ok((n == 1).then_some(byte[0]))
}

/// Tells a plaintext client how to connect, without parsing anything it sent.
async fn refuse_plaintext(mut tcp: TcpStream) {
    let addr = tcp
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "HOST:PORT".into());
    let hint =
        format!("This port speaks TLS. Connect with: openssl s_client -quiet -connect {addr}\r\n");
    let _ = timeout(GOODBYE_TIMEOUT, async {
        tcp.write_all(hint.as_bytes()).await?;
        tcp.shutdown().await
    })
    .await;
}

enum LoginOutcome {
    LoggedIn(LoggedIn),
    Ended(End, Option<&'static str>),
}

/// Greeting, then up to three username/password rounds; a username that owns the
/// connection's certificate needs no password.
async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    auth: &Authenticator,
    metrics: &Metrics,
    peer: SocketAddr,
    presented: Option<&str>,
) -> io::Result<LoginOutcome> {
    conn.queue(protocol::GREETING);
    let mut failures = 0;
    loop {
        conn.queue(protocol::USERNAME_PROMPT);
        let Some(username) = conn.read_login_line(protocol::USERNAME_PROMPT).await? else {
            return Ok(LoginOutcome::Ended(End::ClientClosed, None));
        };
        let username = match username {
            Ok(u) => u,
            Err(end) => return Ok(end),
        };
        if let Some(fingerprint) = presented {
            match auth.authenticate_certificate(&username, fingerprint).await {
                Ok(Some(account)) => {
                    inc(&metrics.logins_ok);
                    conn.queue(protocol::AUTHENTICATED_BY_CERTIFICATE);
                    return Ok(LoginOutcome::LoggedIn(account));
                }
                Ok(None) => {}
                Err(e) => warn!(error = %e, "certificate check failed; asking for the password"),
            }
        }
        conn.queue(protocol::PASSWORD_PROMPT);
        let Some(password) = conn.read_login_line(protocol::PASSWORD_PROMPT).await? else {
            return Ok(LoginOutcome::Ended(End::ClientClosed, None));
        };
        let password = match password {
            Ok(p) => SecretString::from(p),
            Err(end) => return Ok(end),
        };
        let started = std::time::Instant::now();
        let result = auth.authenticate(&username, password, peer.ip()).await;
        if matches!(result, Ok(_) | Err(AuthError::LoginFailed)) {
            metrics.password_check_seconds.observe(started.elapsed());
        }
        match result {
            Ok(account) => {
                inc(&metrics.logins_ok);
                return Ok(LoginOutcome::LoggedIn(account));
            }
            Err(e @ (AuthError::LoginFailed | AuthError::Throttled)) => {
                let throttled = matches!(e, AuthError::Throttled);
                inc(if throttled {
                    &metrics.logins_throttled
                } else {
                    &metrics.logins_failed
                });
                // A line that is not a valid name may be a password typed at the wrong prompt:
                // only its length is logged.
                match crate::username::Username::parse(&username) {
                    Ok(name) => warn!(username = %name, peer = %peer, throttled, "login failed"),
                    Err(_) => warn!(
                        username_len = username.len(),
                        peer = %peer,
                        throttled,
                        "login failed: invalid username"
                    ),
                }
                failures += 1;
                if failures >= MAX_LOGIN_ATTEMPTS {
                    conn.queue(protocol::LOGIN_FAILED);
                    return Ok(LoginOutcome::Ended(
                        End::TooManyFailures,
                        Some(protocol::TOO_MANY_FAILURES),
                    ));
                }
                conn.queue(protocol::LOGIN_FAILED);
            }
            Err(AuthError::Busy) => {
                inc(&metrics.logins_busy);
                warn!(limit = "hash_queue", "password checks saturated");
                return Ok(LoginOutcome::Ended(End::Busy, Some(protocol::SERVER_BUSY)));
            }
            Err(e) => return Err(io::Error::other(e)),
        }
    }
}

/// The logged-in loop: client lines, queued room lines, and removal by the room. Returns how
/// the session ends and how long its goodbye (whatever is left in the output buffer, then
/// close_notify) may take; the caller leaves the room first.
async fn member_loop<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    ctx: &SessionContext,
    member: &mut MemberGuard,
    mut outbox: Outbox,
) -> io::Result<(End, Option<Duration>)> {
    let limits = &ctx.limits;
    let mut bucket = TokenBucket::new(limits.rate_burst, limits.rate_per_sec);
    let mut held: Option<Incoming> = None;
    let mut warned = false;
    let removed = outbox.removed();
    let history = &ctx.history;
    loop {
        // Everything queued so far goes out as one write: under load a member's lines pile up
        // while it writes, so batches grow by themselves; at low rates each line goes at once.
        if let Some(end) = conn
            .take_deliveries(&mut outbox, history, MAX_BATCH_BYTES)
            .await
        {
            return Ok(conn.last_words(end));
        }
        if conn.out.is_empty() {
            // Nothing unwritten: positions reached by the member's own lines hold now.
            member.commit(conn.marks.drain(..));
        } else {
            let bytes = conn.out.len() as u64;
            tokio::select! {
                r = conn.write_out() => r?,
                _ = removed.wait() => {
                    // The interrupted write left an unknown part of the buffer unsent, and
                    // the peer is not reading anyway: only the last line is still worth trying.
                    conn.out.clear();
                    return Ok(conn.removed(&mut outbox));
                }
            }
            outbox.written(std::mem::take(&mut conn.from_room));
            member.commit(conn.marks.drain(..));
            if outbox.is_empty() {
                conn.release_buffer();
            }
            ctx.metrics
                .bytes_sent
                .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
            if let Some(queued_at) = conn.oldest.take() {
                ctx.metrics
                    .delivery_latency_seconds
                    .observe(queued_at.elapsed());
            }
        }
        let resume_at = bucket.ready_at();
        // Not biased: under sustained fan-out the queue is never empty, and a biased select
        // would never read the member's own lines (`/quit` included).
        let ended = tokio::select! {
            _ = removed.wait() => return Ok(conn.removed(&mut outbox)),
            d = outbox.recv() => match d {
                Some(d) => conn.push_delivery(d, history).await,
                None => Some(End::Closed("removed from the room".into())),
            },
            _ = sleep_until(resume_at), if held.is_some() => {
                let item = held.take().expect("guarded by is_some");
                bucket.try_take(Instant::now());
                handle(conn, ctx, member, &mut outbox, item).await
            }
            item = conn.next_item(), if held.is_none() => {
                let Some(item) = item? else { return Ok((End::ClientClosed, None)) };
                let now = Instant::now();
                if bucket.is_full(now) {
                    // The client was quiet long enough to earn its whole burst: a new episode.
                    warned = false;
                }
                if bucket.try_take(now) {
                    handle(conn, ctx, member, &mut outbox, item).await
                } else {
                    // Stop reading: the rest waits in the client's TCP buffers, not here.
                    held = Some(item);
                    if warned {
                        None
                    } else {
                        warned = true;
                        warn!(limit = "rate", "member over line rate");
                        match conn.take_deliveries(&mut outbox, history, usize::MAX).await {
                            Some(end) => Some(end),
                            None => {
                                conn.queue(&protocol::slow_down(limits.rate_per_sec));
                                None
                            }
                        }
                    }
                }
            }
        };
        if let Some(end) = ended {
            return Ok(conn.last_words(end));
        }
    }
}

/// Acts on one decoded item from a member; returns how the session ends, if it does.
/// Room lines queued before the item go out before any reply to it.
async fn handle<S>(
    conn: &mut Conn<S>,
    ctx: &SessionContext,
    member: &mut MemberGuard,
    outbox: &mut Outbox,
    item: Incoming,
) -> Option<End> {
    // All of it: the reply below must follow every room line queued before the command.
    if let Some(end) = conn.take_deliveries(outbox, &ctx.history, usize::MAX).await {
        return Some(end);
    }
    let line = match item {
        Incoming::Line(line) => line,
        Incoming::TooLong => {
            debug!("line too long");
            conn.queue(&protocol::line_too_long(ctx.limits.max_line_bytes));
            return None;
        }
        Incoming::InvalidUtf8 => {
            debug!("invalid utf-8");
            conn.queue(protocol::INVALID_UTF8);
            return None;
        }
        Incoming::Unterminated => {
            warn!(
                limit = "max_unterminated_bytes",
                "no newline, disconnecting"
            );
            conn.queue(protocol::NO_NEWLINE);
            inc(&ctx.metrics.evictions_no_newline);
            member.reason = Some("no newline".into());
            return Some(End::NoNewline);
        }
    };
    let room = &ctx.room;
    match protocol::parse_command(&line) {
        Command::Nothing => {}
        // A member's own line moves its read position once everything queued before it is
        // written (see `Conn::marks`).
        Command::Say(text) => {
            if protocol::has_content(text) {
                debug!(body = %text.escape_debug(), "say");
                conn.marks.extend(room.say(member.id, text));
            }
        }
        Command::Emote(text) => {
            if protocol::has_content(text) {
                conn.marks.extend(room.emote(member.id, text));
            }
        }
        // Replies from here on are queued by the room in room order (see `Room::send_who`).
        Command::Whisper { to, text } => {
            let _ = room.whisper(member.id, to, text);
        }
        Command::Who(None) => room.send_who(member.id, None),
        Command::Who(Some(name)) => match RoomName::parse(name) {
            Ok(name) => room.send_who(member.id, Some(&name)),
            Err(_) => conn.queue(protocol::INVALID_ROOM_NAME),
        },
        Command::Join(name) => match RoomName::parse(name) {
            // Boxed: a room not in memory is read from the store first.
            Ok(name) => Box::pin(room.join_room(member.id, name)).await,
            Err(_) => conn.queue(protocol::INVALID_ROOM_NAME),
        },
        Command::Part(None) => room.part_room(member.id, None),
        Command::Part(Some(name)) => match RoomName::parse(name) {
            Ok(name) => room.part_room(member.id, Some(name)),
            Err(_) => conn.queue(protocol::INVALID_ROOM_NAME),
        },
        Command::Rooms => room.send_rooms(member.id),
        Command::History(want) => room.send_history(member.id, want),
        Command::Help => conn.queue(protocol::HELP),
        // Replies from the database, boxed like every database wait here.
        Command::CertEnroll(label) => conn.queue(&Box::pin(enroll(ctx, member, label)).await),
        Command::CertList => conn.queue(&Box::pin(list_certificates(ctx, member)).await),
        Command::CertRevoke(key) => conn.queue(&Box::pin(revoke(ctx, member, key)).await),
        Command::Usage(usage) => conn.queue(usage),
        Command::Unknown(word) => conn.queue(&protocol::unknown_command(word)),
        Command::Quit(reason) => {
            conn.queue(protocol::BYE);
            member.reason = reason.map(str::to_owned);
            return Some(End::Quit);
        }
    }
    None
}

/// `/cert enroll [LABEL]`: binds the connection's certificate to the member's account.
async fn enroll(ctx: &SessionContext, member: &MemberGuard, label: Option<&str>) -> String {
    let Some(fingerprint) = member.presented.as_deref() else {
        return protocol::CERT_NONE_PRESENTED.to_owned();
    };
    let label = label.map_or_else(crate::client_cert::default_label, str::to_owned);
    if !crate::client_cert::valid_label(&label) {
        return protocol::CERT_INVALID_LABEL.to_owned();
    }
    let store = ctx.auth.store();
    match store
        .add_certificate(&member.name, fingerprint, &label)
        .await
    {
        Ok(()) => {
            info!(label = %label, "certificate enrolled");
            protocol::cert_enrolled(fingerprint, &label)
        }
        Err(crate::store::StoreError::CertificateTaken) => {
            protocol::CERT_OF_ANOTHER_ACCOUNT.to_owned()
        }
        Err(crate::store::StoreError::CertificateEnrolled(label)) => {
            protocol::cert_already_enrolled(&label)
        }
        Err(crate::store::StoreError::LabelTaken(label)) => protocol::cert_label_taken(&label),
        Err(e) => {
            warn!(error = %e, "enrolling a certificate failed");
            protocol::CERT_UNAVAILABLE.to_owned()
        }
    }
}

/// `/cert list`: the member's certificates.
async fn list_certificates(ctx: &SessionContext, member: &MemberGuard) -> String {
    match ctx.auth.store().certificates(&member.name).await {
        Ok(list) => protocol::cert_list(
            &list
                .into_iter()
                .map(|c| (c.label, c.fingerprint, c.added))
                .collect::<Vec<_>>(),
        ),
        Err(e) => {
            warn!(error = %e, "listing certificates failed");
            protocol::CERT_UNAVAILABLE.to_owned()
        }
    }
}

/// `/cert revoke FINGERPRINT|LABEL`: unbinds one of the member's certificates; the account
/// watch then closes the sessions that logged in with it.
async fn revoke(ctx: &SessionContext, member: &MemberGuard, key: &str) -> String {
    let key = crate::client_cert::parse_fingerprint(key).unwrap_or_else(|| key.to_owned());
    match ctx
        .auth
        .store()
        .delete_certificate(&member.name, &key)
        .await
    {
        Ok(Some(label)) => {
            info!(label = %label, "certificate revoked");
            protocol::cert_revoked(&label)
        }
        Ok(None) => protocol::CERT_NO_SUCH.to_owned(),
        Err(e) => {
            warn!(error = %e, "revoking a certificate failed");
            protocol::CERT_UNAVAILABLE.to_owned()
        }
    }
}

/// A token bucket of lines: `burst` at once, then `rate` per second.
struct TokenBucket {
    tokens: f64,
    burst: f64,
    rate: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(burst: u32, rate: f64) -> Self {
        TokenBucket {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            rate,
            last: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }

    fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the next token will be there.
    fn ready_at(&self) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        self.last + Duration::from_secs_f64(missing / self.rate)
    }
}

/// A TLS stream with a bounded line decoder and one output buffer.
struct Conn<S> {
    stream: S,
    decoder: LineDecoder,
    rbuf: Box<[u8]>,
    rpos: usize,
    rlen: usize,
    out: Vec<u8>,
    /// Bytes in `out` taken from the room queue and still counted against its bound.
    from_room: usize,
    /// When the oldest room line in `out` was queued.
    oldest: Option<std::time::Instant>,
    /// Read positions reached once `out` is written.
    marks: Vec<Mark>,
}

impl<S> Conn<S> {
    fn new(stream: S, limits: &Limits) -> Self {
        Conn {
            stream,
            decoder: LineDecoder::new(limits.max_line_bytes, limits.max_unterminated_bytes),
            rbuf: vec![0; READ_CHUNK_BYTES].into_boxed_slice(),
            rpos: 0,
            rlen: 0,
            out: Vec::new(),
            from_room: 0,
            oldest: None,
            marks: Vec::new(),
        }
    }

    /// Appends a reply of this session's own (not from the room queue).
    fn queue(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
    }

    /// Moves queued room lines into the output buffer, answering history requests in place;
    /// returns an end if one was a `Close`.
    /// The member loop takes at most [`MAX_BATCH_BYTES`] per write, so that a long backlog is
    /// written in steps with the client's input read in between; before a reply of the
    /// session's own it takes everything.
    async fn take_deliveries(
        &mut self,
        outbox: &mut Outbox,
        history: &History,
        max_bytes: usize,
    ) -> Option<End> {
        while self.out.len() < max_bytes
            && let Some(d) = outbox.try_recv()
        {
            let end = match d {
                Delivery::History(request) => {
                    self.answer(&request, history).await;
                    None
                }
                d => self.push_ready(d),
            };
            if end.is_some() {
                return end;
            }
        }
        None
    }

    /// Like [`Conn::take_deliveries`] without history reads, for a member that is removed:
    /// only its last line still matters.
    fn take_deliveries_now(&mut self, outbox: &mut Outbox) -> Option<End> {
        while let Some(d) = outbox.try_recv() {
            if let Some(end) = self.push_ready(d) {
                return Some(end);
            }
        }
        None
    }

    async fn push_delivery(&mut self, d: Delivery, history: &History) -> Option<End> {
        match d {
            Delivery::History(request) => {
                self.answer(&request, history).await;
                None
            }
            d => self.push_ready(d),
        }
    }

    /// Reads and queues a history block where its request stood in the queue.
    async fn answer(&mut self, request: &crate::history::HistoryRequest, history: &History) {
        let block = Box::pin(history.answer(request)).await;
        self.queue(&block.text);
        self.marks.extend(block.mark);
    }

    fn push_ready(&mut self, d: Delivery) -> Option<End> {
        match d {
            Delivery::Line(line) => {
                self.out.extend_from_slice(line.text.as_bytes());
                self.from_room += line.text.len();
                self.oldest.get_or_insert(line.queued_at);
                if let Some(mark) = &line.mark {
                    self.mark(mark);
                }
                None
            }
            // Answered by `push_delivery`; a removed member does not need it.
            Delivery::History(_) => None,
            Delivery::Presence(line) => {
                // Outside the queue's byte bound, so not counted in `from_room`.
                self.out.extend_from_slice(line.text.as_bytes());
                self.oldest.get_or_insert(line.queued_at);
                None
            }
            Delivery::Close(line) => {
                self.queue(&line);
                Some(End::Closed(line.as_str().into()))
            }
            Delivery::Evicted => Some(End::Evicted),
        }
    }

    /// Notes a read position reached once `out` is written; consecutive lines of one room
    /// update one entry.
    fn mark(&mut self, (room, seq): &Mark) {
        match self.marks.last_mut() {
            Some((r, s)) if r == room => *s = (*s).max(*seq),
            _ => self.marks.push((room.clone(), *seq)),
        }
    }

    /// The room removed this member: its last deliveries (ending in the reason) are queued.
    fn removed(&mut self, outbox: &mut Outbox) -> (End, Option<Duration>) {
        let end = self
            .take_deliveries_now(outbox)
            .unwrap_or_else(|| End::Closed("removed from the room".into()));
        self.last_words(end)
    }

    /// What is left to send for `end`, and the time it may take.
    fn last_words(&mut self, end: End) -> (End, Option<Duration>) {
        match end {
            End::Evicted => {
                // Counted by the room, which decides evictions. Best effort: whatever is held
                // is what overflowed, so only the reason is tried, briefly.
                self.out.clear();
                self.queue(protocol::SEND_QUEUE_EXCEEDED);
                (End::Evicted, Some(EVICTION_GOODBYE_TIMEOUT))
            }
            end => (end, Some(GOODBYE_TIMEOUT)),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// The next decoded item; `None` on EOF. Cancel-safe: state lives in `self`.
    async fn next_item(&mut self) -> io::Result<Option<Incoming>> {
        loop {
            if self.rpos < self.rlen {
                let mut input = &self.rbuf[self.rpos..self.rlen];
                let item = self.decoder.decode(&mut input);
                self.rpos = self.rlen - input.len();
                if item.is_some() {
                    return Ok(item);
                }
            }
            let n = self.stream.read(&mut self.rbuf).await?;
            if n == 0 {
                return Ok(None);
            }
            self.rpos = 0;
            self.rlen = n;
        }
    }

    /// Flushes pending output, then reads one line of the login dialogue; a line that is too
    /// long or not UTF-8 gets its error and `prompt` again. `Some(Err(..))` ends the login
    /// with a final line.
    async fn read_login_line(
        &mut self,
        prompt: &str,
    ) -> io::Result<Option<Result<String, LoginOutcome>>> {
        loop {
            self.flush().await?;
            let Some(item) = self.next_item().await? else {
                return Ok(None);
            };
            match item {
                Incoming::Line(line) => return Ok(Some(Ok(line))),
                Incoming::TooLong => {
                    self.queue(&protocol::line_too_long(self.decoder.max_line()));
                    self.queue(prompt);
                }
                Incoming::InvalidUtf8 => {
                    self.queue(protocol::INVALID_UTF8);
                    self.queue(prompt);
                }
                Incoming::Unterminated => {
                    return Ok(Some(Err(LoginOutcome::Ended(
                        End::NoNewline,
                        Some(protocol::NO_NEWLINE),
                    ))));
                }
            }
        }
    }

    /// Writes the output buffer as one write and one flush, then releases a large buffer.
    async fn flush(&mut self) -> io::Result<()> {
        self.write_out().await?;
        self.release_buffer();
        Ok(())
    }

    /// Writes the output buffer as one write and one flush, keeping its capacity for the next
    /// batch of a backlog.
    async fn write_out(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.stream.write_all(&self.out).await?;
        self.stream.flush().await?;
        self.out.clear();
        Ok(())
    }

    /// Idle sessions keep no large output buffer.
    fn release_buffer(&mut self) {
        if self.out.capacity() > OUT_BUFFER_KEEP_BYTES {
            self.out = Vec::new();
        }
    }

    /// Sends what is queued plus `line`, then close_notify, all within `limit`.
    async fn goodbye(&mut self, line: &str, limit: Duration) {
        self.queue(line);
        self.goodbye_queued(limit).await;
    }

    /// Sends what is queued, then close_notify, within `limit`.
    async fn goodbye_queued(&mut self, limit: Duration) {
        let _ = timeout(limit, async {
            self.flush().await?;
            self.stream.shutdown().await
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::username::Username;

    #[tokio::test]
    async fn a_panicking_session_is_announced_as_left_and_the_room_carries_on() {
        let room = Arc::new(Rooms::new(1 << 20));
        let mut bob = room
            .join(
                &Username::parse("bob").unwrap(),
                Login::new(0),
                Default::default(),
            )
            .unwrap();
        let task_room = Arc::clone(&room);
        let task = tokio::spawn(async move {
            let joined = task_room
                .join(
                    &Username::parse("alice").unwrap(),
                    Login::new(0),
                    Default::default(),
                )
                .unwrap();
            let _member = MemberGuard {
                room: Arc::clone(&task_room),
                id: joined.id,
                reason: None,
                history: None,
                positions: Vec::new(),
                name: Username::parse("alice").unwrap(),
                presented: None,
            };
            panic!("injected fault");
        });
        assert!(task.await.unwrap_err().is_panic());
        let text = |d: Option<Delivery>| match d {
            Some(Delivery::Line(l)) => l.text.to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(text(bob.outbox.recv().await), "*** alice joined\n");
        assert_eq!(text(bob.outbox.recv().await), "*** alice left\n");
        assert_eq!(room.who(), vec![Arc::<str>::from("bob")]);
        let carol = room
            .join(
                &Username::parse("carol").unwrap(),
                Login::new(0),
                Default::default(),
            )
            .unwrap();
        room.say(carol.id, "still works");
        assert_eq!(text(bob.outbox.recv().await), "*** carol joined\n");
        assert_eq!(text(bob.outbox.recv().await), "<carol> still works\n");
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut b = TokenBucket::new(3, 2.0);
        b.last = start;
        assert!((0..3).all(|_| b.try_take(start)));
        assert!(!b.try_take(start));
        assert_eq!(b.ready_at(), start + Duration::from_millis(500));
        assert!(b.try_take(start + Duration::from_millis(500)));
        assert!(!b.try_take(start + Duration::from_millis(600)));
    }
}

//! One client from TLS handshake to close: greeting, login, then the member loop, over any
//! line transport (`conn`). `login` is the login machine, `member` the logged-in loop,
//! `command` the dispatch of a member's commands, `rate` its token bucket.
//!
//! The session task is the only writer to its socket. Everything it sends goes through one
//! output buffer that is written and flushed once per batch, so queued room lines coalesce
//! into as few TLS records as possible.

mod command;
mod conn;
pub mod irc;
mod login;
mod member;
mod rate;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::auth::{Authenticator, LoggedIn};
use crate::config::Limits;
use crate::history::{History, Memberships};
use crate::metrics::{Metrics, inc};
use crate::protocol;
use crate::protocol::ResumeFrom;
use crate::room::directory::{IrcLogin, Login, Protocol};
use crate::room::{JoinError, Joined, Mark, MemberId, Rooms};
use crate::tls::ServerConfigs;
use crate::transport::ack::AckSource;
use conn::Conn;

pub use login::MAX_LOGIN_ATTEMPTS;

pub use crate::transport::GOODBYE_TIMEOUT;

/// How long a replaced session waits for its peer to acknowledge what it was sent before it
/// hands its positions to the new session: a peer that reads acknowledges within a round trip
/// and gets the last line; one that does not is reset.
const TAKEOVER_ACK_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// What every session shares.
pub struct SessionContext {
    /// TLS configurations with the current certificate.
    pub tls: ServerConfigs,
    /// Password checks.
    pub auth: Authenticator,
    /// The rooms members join, and who is online.
    pub room: Arc<Rooms>,
    /// Stored history.
    pub history: Arc<History>,
    /// Members' rooms and read positions.
    pub memberships: Arc<Memberships>,
    /// Counters for `--metrics-listen`.
    pub metrics: Arc<Metrics>,
    /// Timeouts, line limits and rates.
    pub limits: Limits,
    /// What IRC sessions show of the server.
    pub irc: IrcSettings,
}

/// What IRC sessions show of the server.
pub struct IrcSettings {
    /// `irc_server_name`: the source of server messages and the host in every mask.
    pub server_name: String,
    /// When the server started, as 003 says.
    pub created: String,
}

impl IrcSettings {
    /// The settings of a server named `server_name` that starts now.
    pub fn new(server_name: String) -> Self {
        let created = crate::irc::chathistory::server_time(crate::event::now_ms());
        IrcSettings {
            server_name,
            created: created.replace('T', " ")[..19].to_owned() + " UTC",
        }
    }
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
    /// IRC registration refused: no login, a wrong `PASS`, or three failed SASL logins.
    LoginRefused,
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
    /// An IRC client answered no ping.
    PingTimeout,
    /// Server shutdown.
    Shutdown,
    /// A browser's connection served its pages and closed.
    HttpDone,
    /// A browser's connection stayed open past `login_timeout` without a WebSocket.
    HttpIdle,
}

/// Runs a session over a stream of lines that has passed its handshake: login, then the
/// member loop. `connected` starts the login timeout; `presented` is the fingerprint of the
/// client certificate the connection presented, if any.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    ctx: &SessionContext,
    shutdown: &CancellationToken,
    (observer, presented, ack, protocol): (
        impl LoginObserver,
        Option<Arc<str>>,
        AckSource,
        Protocol,
    ),
    connected: Instant,
) -> io::Result<End> {
    let limits = &ctx.limits;
    let mut conn = Conn::new(stream, limits, ack);

    let login_deadline = connected + limits.login_timeout;
    let outcome = tokio::select! {
        r = Box::pin(login::login(&mut conn, &ctx.auth, &ctx.metrics, peer, presented.as_deref(), Some(login_deadline))) => r?,
        _ = sleep_until(login_deadline) => {
            conn.goodbye(protocol::LOGIN_TIMED_OUT, GOODBYE_TIMEOUT).await;
            return Ok(End::LoginTimeout);
        }
        _ = shutdown.cancelled() => {
            conn.goodbye(protocol::SHUTTING_DOWN, limits.shutdown_grace).await;
            return Ok(End::Shutdown);
        }
    };
    let (account, resume) = match outcome {
        login::LoginOutcome::LoggedIn(account, resume) => (account, resume),
        login::LoginOutcome::Ended(end, last_line) => {
            if matches!(end, End::NoNewline) {
                inc(&ctx.metrics.evictions_no_newline);
            }
            if let Some(line) = last_line {
                conn.goodbye(line, GOODBYE_TIMEOUT).await;
            }
            return Ok(end);
        }
    };
    conn.numbered = resume.is_some();
    let enrolled = account.enrolled_certificates;
    let greet = |conn: &mut Conn<S>, welcome: &str, name: &str| {
        conn.queue(welcome);
        if enrolled > 0 {
            conn.queue(&protocol::certificates_can_log_in(enrolled, name));
        }
    };
    let logged_in = LoggedInSession {
        account,
        peer,
        presented,
        irc: None,
        protocol,
        resume,
    };
    let commands = &mut command::LineCommands;
    member_session(
        &mut conn,
        ctx,
        shutdown,
        observer,
        logged_in,
        (commands, greet),
    )
    .await
}

/// A login, ready to join the rooms.
struct LoggedInSession {
    /// Who logged in.
    account: LoggedIn,
    /// From where.
    peer: SocketAddr,
    /// The fingerprint of the client certificate the connection presented, if any.
    presented: Option<Arc<str>>,
    /// Set for an IRC session.
    irc: Option<IrcLogin>,
    /// The protocol it speaks.
    protocol: Protocol,
    /// What `/resume` asked for, if the client sent it.
    resume: Option<ResumeFrom>,
}

/// A logged-in session from joining the rooms to its goodbye, for any protocol: `greet`
/// queues the protocol's welcome once the member is in the rooms, `commands` act on its
/// input.
async fn member_session<S: AsyncRead + AsyncWrite + Unpin, C: member::Commands<S>>(
    conn: &mut Conn<S>,
    ctx: &SessionContext,
    shutdown: &CancellationToken,
    mut observer: impl LoginObserver,
    logged_in: LoggedInSession,
    (commands, greet): (&mut C, impl FnOnce(&mut Conn<S>, &str, &str)),
) -> io::Result<End> {
    let limits = &ctx.limits;
    let LoggedInSession {
        account:
            LoggedIn {
                name,
                stamp,
                certificate,
                ..
            },
        peer,
        presented,
        irc,
        protocol,
        resume,
    } = logged_in;
    tracing::Span::current().record("user", name.as_str());
    let login = Login {
        peer,
        stamp,
        certificate,
        irc,
        protocol,
    };
    // Boxed, like every database wait below: the futures are large and rare, and would
    // otherwise size the task that every idle session keeps.
    let joined = match Box::pin(ctx.room.log_in(&name, login, resume)).await {
        Ok(joined) => joined,
        Err(JoinError::Closed(_)) => {
            conn.queue_last(protocol::SHUTTING_DOWN);
            conn.goodbye_queued(limits.shutdown_grace).await;
            return Ok(End::Shutdown);
        }
        Err(e) => {
            // Joining without its rooms would skip their catch-up for good: the member
            // comes back when the store answers.
            warn!(error = %e, "reading rooms and read positions failed");
            conn.queue_last(protocol::SERVER_BUSY);
            conn.goodbye_queued(GOODBYE_TIMEOUT).await;
            return Ok(End::Busy);
        }
    };
    observer.logged_in();
    info!("login ok");
    let _counted = SessionCount::new(&ctx.metrics, protocol);
    let catch_up_unavailable = joined.catch_up_unavailable;
    let mut member = MemberGuard {
        room: Arc::clone(&ctx.room),
        id: joined.id,
        reason: None,
        // Positions reached now are not saved when the stored ones could not be read: the
        // next login catches up from those (repeating what was seen now, losing nothing).
        memberships: (!catch_up_unavailable).then(|| (Arc::clone(&ctx.memberships), stamp.id)),
        // Where this login starts reading: saved at logout with the rest, not on the next
        // tick, so an idle session never wakes up or writes.
        positions: joined.positions,
        unsaved: false,
        epoch: joined.history_epoch.clone(),
        handoff: None,
        name,
        presented,
    };
    // By value, and dropped here: the welcome lists everyone online, and a field left in
    // `joined` would live as long as the session (at 1,000 online, ~3 KiB more per idle
    // session).
    let Joined {
        welcome, outbox, ..
    } = joined;
    greet(conn, &welcome, member.name.as_str());
    drop(welcome);
    if catch_up_unavailable {
        conn.queue_text(protocol::CATCH_UP_UNAVAILABLE);
    }
    let result = member::member_loop(conn, ctx, (&mut member, commands), outbox).await;
    // Where the peer got to, for the saved positions and for a session that replaced this one.
    let replaced = conn.handoff.is_some();
    let wait = if replaced {
        TAKEOVER_ACK_WAIT
    } else {
        std::time::Duration::ZERO
    };
    Box::pin(conn.wait_for_acknowledgement(&mut member, wait)).await;
    // What the replaced peer has not acknowledged is the new session's catch-up: the
    // connection is reset, without a last line, so that it does not arrive here as well.
    let reset = replaced && !conn.unacked.is_empty();
    member.handoff = conn.handoff.take();
    // Leave the room, the admin list and the connection caps before the goodbye, which may
    // wait on a peer that does not read.
    drop(member);
    observer.released();
    let end = match result {
        Ok((end, goodbye)) => {
            if reset {
                conn.ack.discard_unsent();
            } else if let Some(mut limit) = goodbye {
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

/// Counts a logged-in session in the metrics for as long as it lives.
struct SessionCount<'a>(&'a std::sync::atomic::AtomicU64);

impl<'a> SessionCount<'a> {
    fn new(metrics: &'a Metrics, protocol: Protocol) -> Self {
        let index = Protocol::ALL
            .iter()
            .position(|p| *p == protocol)
            .unwrap_or(0);
        let count = &metrics.sessions_by_protocol[index];
        inc(count);
        SessionCount(count)
    }
}

impl Drop for SessionCount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Takes `leave` off the happy path: it runs on every exit, including errors and panics, and
/// saves the read positions the session reached.
pub(crate) struct MemberGuard {
    room: Arc<Rooms>,
    pub(crate) id: MemberId,
    pub(crate) reason: Option<String>,
    /// Where positions are saved, and for which account.
    memberships: Option<(Arc<Memberships>, i64)>,
    /// The last message of each room the peer acknowledged (see [`crate::transport::ack`])
    /// or the member sent.
    positions: Vec<Mark>,
    /// `positions` moved since they were last saved.
    unsaved: bool,
    /// The history epoch `positions` are numbers in (see [`crate::event::HistoryEpoch`]).
    epoch: crate::event::HistoryEpoch,
    /// Set when another login replaced this session: it gets the positions at the end.
    handoff: Option<crate::room::Handoff>,
    /// The account's name as created.
    pub(crate) name: crate::username::Username,
    /// The fingerprint of the certificate the connection presented, for `/cert enroll`.
    pub(crate) presented: Option<Arc<str>>,
}

impl MemberGuard {
    /// Moves read positions forward (never back).
    pub(crate) fn commit(&mut self, marks: impl IntoIterator<Item = Mark>) {
        for (room, seq) in marks {
            if seq == crate::room::RESET_MARK {
                // The rooms are numbered again from here (a cluster's Redis lost its data):
                // the positions reached so far are no numbers in the new history. Those saved
                // keep their epoch, so a later login catches up on the whole new history.
                self.positions.clear();
                self.unsaved = false;
                self.epoch = self.room.history_epoch();
                continue;
            }
            match self.positions.iter_mut().find(|(r, _)| *r == room) {
                Some((_, at)) if *at >= seq => {}
                Some((_, at)) => {
                    *at = seq;
                    self.unsaved = true;
                }
                None => {
                    self.positions.push((room, seq));
                    self.unsaved = true;
                }
            }
        }
    }

    /// True when positions moved since they were last saved.
    pub(crate) fn has_unsaved_positions(&self) -> bool {
        self.unsaved
    }

    /// Hands the positions to the history writer (coalesced per user and room there), so a
    /// crash repeats at most what was read since.
    pub(crate) fn save_positions(&mut self) {
        if !std::mem::take(&mut self.unsaved) {
            return;
        }
        if let Some((memberships, user)) = &self.memberships {
            memberships.save_positions(*user, self.positions.clone(), self.epoch.clone());
        }
    }

    /// The positions reached, if they are numbers in the rooms' history now.
    fn current_positions(&self) -> Option<&[Mark]> {
        self.epoch
            .counts_in(&self.room.history_epoch())
            .then_some(self.positions.as_slice())
    }
}

impl Drop for MemberGuard {
    fn drop(&mut self) {
        let current = self.current_positions().map(<[Mark]>::to_vec);
        if let (Some((_, user)), Some(positions)) = (&self.memberships, &current) {
            // In a cluster, ahead of the left line: a login on another node that follows it
            // finds them.
            self.room.share_positions(*user, positions);
        }
        self.room.leave(self.id, self.reason.as_deref());
        if let Some(handoff) = self.handoff.take() {
            let _ = handoff.send(current.unwrap_or_default());
        }
        if let Some((memberships, user)) = &self.memberships {
            let epoch = self.epoch.clone();
            memberships.save_positions(*user, std::mem::take(&mut self.positions), epoch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::Delivery;
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
                memberships: None,
                positions: Vec::new(),
                unsaved: false,
                epoch: crate::event::HistoryEpoch::none(),
                handoff: None,
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
        room.say(carol.id, "still works").await;
        assert_eq!(text(bob.outbox.recv().await), "*** carol joined\n");
        assert_eq!(text(bob.outbox.recv().await), "<carol> still works\n");
    }
}

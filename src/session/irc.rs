//! An IRC client from its TLS handshake to close: registration (CAP, SASL, PASS, NICK, USER,
//! through [`irc::register`]) with the same password checks, throttles and timeouts as the
//! line protocol, then the same member session as every protocol (rooms, history, read
//! positions, takeover), with IRC's commands ([`irc::command`]) and its look
//! ([`irc::view`]).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::conn::{Conn, unless_removed};
use super::member::{Budget, Commands};
use super::{End, GOODBYE_TIMEOUT, LoggedInSession, LoginObserver, MemberGuard, SessionContext};
use crate::auth::{AuthError, LoggedIn};
use crate::config::Limits;
use crate::event::RoomName;
use crate::irc::command::{Command, Session, Target};
use crate::irc::message::{
    MAX_BODY_BYTES, MAX_CLIENT_TAG_BYTES, Message, MessageError, command_of,
};
use crate::irc::register::{Action, Registered, Registration};
use crate::irc::reply::{self, To};
use crate::irc::view::View;
use crate::irc::welcome::{self, Welcome};
use crate::metrics::inc;
use crate::protocol::{self, Incoming};
use crate::room::directory::{IrcIdentity, IrcLogin, Protocol};
use crate::room::{ClientTags, Outbox, Said, TagTarget};
use crate::transport::ack::AckSource;

/// The longest line an IRC client may send: tags, the space after them, and the message
/// with its CR LF. Longer ones are answered with 417 and discarded.
const MAX_INPUT_BYTES: usize = 1 + MAX_CLIENT_TAG_BYTES + 1 + MAX_BODY_BYTES;

/// Runs an IRC session over a stream that has passed its handshake. `connected` starts the
/// login timeout (registration must complete within it); `presented` is the fingerprint of
/// the client certificate the connection presented, if any (SASL EXTERNAL).
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    ctx: &SessionContext,
    shutdown: &CancellationToken,
    (observer, presented, ack): (impl LoginObserver, Option<Arc<str>>, AckSource),
    connected: Instant,
) -> io::Result<End> {
    let limits = &ctx.limits;
    let framing = Limits {
        max_line_bytes: MAX_INPUT_BYTES,
        max_unterminated_bytes: limits.max_unterminated_bytes.max(MAX_INPUT_BYTES),
        ..Limits::default()
    };
    let mut conn = Conn::new(stream, &framing, ack);
    let server = ctx.irc.server_name.as_str();
    let login_deadline = connected + limits.login_timeout;
    let mut registration = Registration::new(server);
    let outcome = tokio::select! {
        r = Box::pin(register(&mut conn, ctx, &mut registration, peer, (presented.as_deref(), login_deadline))) => r?,
        _ = sleep_until(login_deadline) => {
            conn.goodbye("ERROR :Login timed out\r\n", GOODBYE_TIMEOUT).await;
            return Ok(End::LoginTimeout);
        }
        _ = shutdown.cancelled() => {
            conn.goodbye("ERROR :Server shutting down\r\n", limits.shutdown_grace).await;
            return Ok(End::Shutdown);
        }
    };
    let (account, registered) = match outcome {
        Registering::Done(done) => *done,
        Registering::Ended(end, last_line) => {
            if let Some(line) = last_line {
                conn.goodbye(&line, GOODBYE_TIMEOUT).await;
            }
            return Ok(end);
        }
    };
    let nick = registered.account.as_str();
    let view = View::new(
        server,
        nick,
        (&registered.user, &registered.realname),
        &registered.caps,
    );
    let echo = view.echo;
    conn.irc = Some(Box::new(view));
    let greet = |conn: &mut Conn<S>, _: &str, _: &str| {
        let welcome = Welcome {
            server,
            nick,
            user: &registered.user,
            version: env!("CARGO_PKG_VERSION"),
            created: &ctx.irc.created,
            max_rooms_per_user: ctx.history.limits().max_rooms_per_user,
        };
        for line in welcome::registration(&welcome) {
            conn.queue(&line);
        }
        let online = ctx.room.presence().len();
        for line in welcome::lusers(server, nick, online, ctx.room.rooms_in_use()) {
            conn.queue(&line);
        }
        queue_motd(conn, server, nick);
    };
    let mut commands = IrcCommands {
        session: Session::new(server, nick),
        registration,
        ping_interval: limits.irc_ping_interval,
        server: server.to_owned(),
        batches: 0,
    };
    let logged_in = LoggedInSession {
        account,
        peer,
        presented,
        irc: Some(IrcLogin {
            echo,
            identity: IrcIdentity {
                user: registered.user.clone(),
                realname: registered.realname.clone(),
                away: None,
            },
        }),
        protocol: Protocol::Irc,
        resume: None,
    };
    let started = super::member_session(
        &mut conn,
        ctx,
        shutdown,
        observer,
        logged_in,
        (&mut commands, greet),
    );
    Box::pin(started).await
}

/// How registration ended.
enum Registering {
    /// Logged in and registered.
    Done(Box<(LoggedIn, Registered)>),
    /// Closed, with a last line to send.
    Ended(End, Option<String>),
}

/// Reads the client's messages until registration completes or is refused, checking the
/// credentials it names (passwords as the line protocol does: throttled, counted, answered by
/// `answer_by`).
async fn register<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    ctx: &SessionContext,
    registration: &mut Registration,
    peer: SocketAddr,
    (presented, answer_by): (Option<&str>, Instant),
) -> io::Result<Registering> {
    let mut account: Option<LoggedIn> = None;
    loop {
        conn.flush().await?;
        let Some(item) = conn.next_item().await? else {
            return Ok(Registering::Ended(End::ClientClosed, None));
        };
        let line = match item {
            Incoming::Line(line) => line,
            Incoming::TooLong => {
                conn.queue(&too_long(ctx, "*"));
                continue;
            }
            Incoming::InvalidUtf8 => {
                conn.queue(&invalid_utf8(ctx));
                continue;
            }
            Incoming::Unterminated => {
                inc(&ctx.metrics.evictions_no_newline);
                let last = "ERROR :Too much data without a newline\r\n".to_owned();
                return Ok(Registering::Ended(End::NoNewline, Some(last)));
            }
        };
        let message = match Message::parse(&line) {
            Ok(message) => message,
            Err(MessageError::NoCommand) => continue,
            Err(MessageError::TooLong | MessageError::TagsTooLong) => {
                conn.queue(&too_long(ctx, "*"));
                continue;
            }
        };
        let mut actions: VecDeque<Action> = registration.handle(&message).into();
        while let Some(action) = actions.pop_front() {
            let more = match action {
                Action::Send(line) => {
                    conn.queue(&line);
                    continue;
                }
                Action::Close(line) => {
                    return Ok(Registering::Ended(End::LoginRefused, Some(line)));
                }
                Action::Registered(registered) => {
                    let Some(account) = account.take() else {
                        // The machine registers only after a check this loop answered.
                        return Err(io::Error::other("registered without a login"));
                    };
                    return Ok(Registering::Done(Box::new((account, registered))));
                }
                Action::CheckPassword {
                    account: name,
                    password,
                    ..
                } => {
                    // What the client is waiting for goes out before the check.
                    conn.flush().await?;
                    let started = std::time::Instant::now();
                    let result = ctx
                        .auth
                        .authenticate_by(&name, password, peer.ip(), Some(answer_by))
                        .await;
                    if matches!(result, Ok(_) | Err(AuthError::LoginFailed)) {
                        ctx.metrics
                            .password_check_seconds
                            .observe(started.elapsed());
                    }
                    match checked(ctx, &name, peer, result) {
                        Ok(Some(logged_in)) => {
                            let name = logged_in.name.as_str().to_owned();
                            account = Some(logged_in);
                            registration.password_checked(Some(name))
                        }
                        Ok(None) => registration.password_checked(None),
                        Err(ended) => return Ok(ended),
                    }
                }
                Action::CheckCertificate => {
                    let owner = match presented {
                        Some(fingerprint) => {
                            ctx.auth.authenticate_certificate_owner(fingerprint).await
                        }
                        None => Ok(None),
                    };
                    match owner {
                        Ok(Some(logged_in)) => {
                            inc(&ctx.metrics.logins_ok);
                            let name = logged_in.name.as_str().to_owned();
                            account = Some(logged_in);
                            registration.certificate_checked(Some(name))
                        }
                        Ok(None) => registration.certificate_checked(None),
                        Err(e) => {
                            warn!(error = %e, "certificate check failed; login answered busy");
                            return Ok(busy());
                        }
                    }
                }
            };
            for action in more.into_iter().rev() {
                actions.push_front(action);
            }
        }
    }
}

/// What a password check comes to: the account, a refusal (`None`), or the end of the
/// connection (the checks are saturated or the store fails).
fn checked(
    ctx: &SessionContext,
    name: &str,
    peer: SocketAddr,
    result: Result<LoggedIn, AuthError>,
) -> Result<Option<LoggedIn>, Registering> {
    match result {
        Ok(account) => {
            inc(&ctx.metrics.logins_ok);
            Ok(Some(account))
        }
        Err(e @ (AuthError::LoginFailed | AuthError::Throttled)) => {
            let throttled = matches!(e, AuthError::Throttled);
            inc(if throttled {
                &ctx.metrics.logins_throttled
            } else {
                &ctx.metrics.logins_failed
            });
            match crate::username::Username::parse(name) {
                Ok(name) => warn!(username = %name, peer = %peer, throttled, "login failed"),
                Err(_) => warn!(
                    username_len = name.len(),
                    peer = %peer,
                    throttled,
                    "login failed: invalid username"
                ),
            }
            Ok(None)
        }
        Err(AuthError::Busy) => {
            inc(&ctx.metrics.logins_busy);
            warn!(limit = "hash_queue", "password checks saturated");
            Err(busy())
        }
        Err(e) => {
            warn!(error = %e, "checking a login failed; answered busy");
            Err(busy())
        }
    }
}

/// Queues the MOTD: the server's greeting, without its `*** `.
fn queue_motd<S>(conn: &mut Conn<S>, server: &str, nick: &str) {
    let greeting = protocol::GREETING.trim_end();
    let greeting = greeting.strip_prefix("*** ").unwrap_or(greeting);
    for line in welcome::motd(server, nick, &[greeting]) {
        conn.queue(&line);
    }
}

/// The end of a login the server cannot check now.
fn busy() -> Registering {
    let last = "ERROR :Server busy, try again later\r\n".to_owned();
    Registering::Ended(End::Busy, Some(last))
}

/// `417 NICK :Input line was too long`.
fn too_long(ctx: &SessionContext, nick: &str) -> String {
    Session::new(&ctx.irc.server_name, nick).too_long()
}

/// `FAIL * INVALID_UTF8`: the line was dropped (the server speaks UTF-8 only).
fn invalid_utf8(ctx: &SessionContext) -> String {
    let mut out = String::new();
    let text = "Message rejected, your message contained invalid UTF-8";
    let params = ["*", "INVALID_UTF8", text];
    crate::irc::message::write_text(&mut out, &[], Some(&ctx.irc.server_name), "FAIL", &params);
    out
}

/// A registered IRC connection's commands.
struct IrcCommands {
    /// The answers fixed by the contract, and what the rooms must do.
    session: Session,
    /// Kept for `CAP` after registration.
    registration: Registration,
    /// `irc_ping_interval`.
    ping_interval: std::time::Duration,
    /// `irc_server_name`, what a ping carries.
    server: String,
    /// labeled-response batches opened so far (their references are numbered).
    batches: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Commands<S> for IrcCommands {
    async fn handle(
        &mut self,
        conn: &mut Conn<S>,
        ctx: &SessionContext,
        member: &mut MemberGuard,
        outbox: &mut Outbox,
        item: Incoming,
    ) -> Option<End> {
        // All of it: the answer below must follow every room line queued before the command.
        if let Some(end) = conn.take_deliveries(outbox, &ctx.history, usize::MAX).await {
            return Some(end);
        }
        let line = match item {
            Incoming::Line(line) => line,
            Incoming::TooLong => {
                conn.queue(&self.session.too_long());
                return None;
            }
            Incoming::InvalidUtf8 => {
                conn.queue(&invalid_utf8(ctx));
                return None;
            }
            Incoming::Unterminated => return Some(conn.no_newline(ctx, member)),
        };
        let message = match Message::parse(&line) {
            Ok(message) => message,
            Err(MessageError::NoCommand) => return None,
            Err(MessageError::TooLong | MessageError::TagsTooLong) => {
                conn.queue(&self.session.too_long());
                return None;
            }
        };
        let label = message
            .tag("label")
            .filter(|_| self.registration.caps().contains(&"labeled-response"))
            .map(str::to_owned);
        let Some(label) = label else {
            return self.run(&message, conn, ctx, member, outbox).await;
        };
        let to_self = ["PRIVMSG", "NOTICE", "TAGMSG"]
            .iter()
            .any(|c| message.command.eq_ignore_ascii_case(c))
            && message
                .params
                .first()
                .is_some_and(|to| to.eq_ignore_ascii_case(member.name.as_str()));
        let start = conn.out.len();
        if let Some(end) = self.run(&message, conn, ctx, member, outbox).await {
            return Some(end);
        }
        // What the rooms queued in answer (joins, echoes, errors) is part of it too.
        if let Some(end) = conn.take_deliveries(outbox, &ctx.history, usize::MAX).await {
            return Some(end);
        }
        let answer = conn.out.split_off(start);
        let answer = String::from_utf8_lossy(&answer);
        self.batches += 1;
        let reference = format!("lr{}", self.batches);
        let server = &ctx.irc.server_name;
        let wrap = match to_self {
            true => crate::irc::label::labeled_to_self,
            false => crate::irc::label::labeled,
        };
        conn.queue(&wrap(&answer, &label, server, &reference));
        None
    }

    fn slow_down(&self, conn: &mut Conn<S>, per_sec: f64) {
        conn.queue_text(&protocol::slow_down(per_sec));
    }

    /// Messages to members spend the line rate; `PING` and `PONG` are never delayed; every
    /// other command has its own, larger budget (clients send a burst of them at connect).
    fn budget(&self, item: &Incoming) -> Budget {
        let Incoming::Line(line) = item else {
            return Budget::Commands;
        };
        let command = command_of(line);
        let is = |name: &str| command.eq_ignore_ascii_case(name);
        if is("PRIVMSG") || is("NOTICE") || is("TAGMSG") {
            Budget::Lines
        } else if is("PING") || is("PONG") {
            Budget::Free
        } else {
            Budget::Commands
        }
    }

    fn keepalive(&self) -> Option<std::time::Duration> {
        Some(self.ping_interval)
    }

    fn ping(&mut self, conn: &mut Conn<S>, timed_out: bool) {
        if timed_out {
            conn.queue("ERROR :Ping timeout\r\n");
        } else {
            let mut out = String::new();
            crate::irc::message::write(&mut out, &[], None, "PING", &[&self.server]);
            conn.queue(&out);
        }
    }
}

impl IrcCommands {
    /// Answers one message, without its label.
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        message: &Message<'_>,
        conn: &mut Conn<S>,
        ctx: &SessionContext,
        member: &mut MemberGuard,
        outbox: &mut Outbox,
    ) -> Option<End> {
        let dispatch = self.session.dispatch(message);
        for reply in &dispatch.replies {
            conn.queue(reply);
        }
        let command = dispatch.command?;
        let says = matches!(command, Command::Say { .. } | Command::TagMsg { .. });
        let room = &ctx.room;
        // In a cluster the member's lines may still be on their way through the shared log:
        // what it does next follows them.
        if !says
            && room.has_lines_in_flight(member.id)
            && unless_removed(outbox, Box::pin(room.wait_for_lines(member.id)))
                .await
                .is_none()
        {
            return Some(conn.removed_end(outbox));
        }
        self.carry_out(command, message, conn, ctx, member, outbox)
            .await
    }

    fn to<'a>(&'a self, view: &'a View) -> To<'a> {
        To {
            server: &view.server,
            nick: &view.nick,
        }
    }

    /// Carries out what a message asks of the rooms.
    async fn carry_out<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        command: Command<'_>,
        message: &Message<'_>,
        conn: &mut Conn<S>,
        ctx: &SessionContext,
        member: &mut MemberGuard,
        outbox: &mut Outbox,
    ) -> Option<End> {
        let room = &ctx.room;
        let id = member.id;
        let view = conn.irc.as_deref()?.clone();
        match command {
            Command::Join(rooms) => {
                for name in rooms {
                    if room.is_in(id, &name) {
                        continue;
                    }
                    // Boxed: a room not in memory is read from the store first.
                    let join = Box::pin(room.join_room(id, name));
                    if unless_removed(outbox, join).await.is_none() {
                        return Some(conn.removed_end(outbox));
                    }
                }
            }
            Command::PartAll => {
                for name in room.rooms_of(id) {
                    room.part_room(id, Some(name));
                }
            }
            Command::Part(rooms, reason) => {
                for name in rooms {
                    if room.is_in(id, &name) {
                        room.part_room_saying(id, Some(name), reason);
                    } else {
                        let text = "You're not on that channel";
                        conn.queue(&view.numeric("442", &[name.as_str(), text]));
                    }
                }
            }
            Command::Say {
                target: Target::Room(name),
                text,
                action,
                notice,
                tags,
            } => {
                if !room.is_in(id, &name) {
                    if !notice {
                        let text = "Cannot send to channel";
                        conn.queue(&view.numeric("404", &[name.as_str(), text]));
                    }
                } else if protocol::has_content(text) {
                    debug!(body = %text.escape_debug(), "say");
                    let said = match (action, notice) {
                        (true, _) => Said::Action,
                        (false, true) => Said::Notice,
                        (false, false) => Said::Chat,
                    };
                    let said = (said, owned(&tags));
                    conn.marks
                        .extend(room.say_in(id, Some(&name), text, said).await);
                }
            }
            Command::Say {
                target: Target::User(nick),
                text,
                notice,
                tags,
                ..
            } => {
                if protocol::has_content(text) {
                    // Boxed: in a cluster the target may be looked up in Redis.
                    let tagged = (owned(&tags), notice);
                    let sent = Box::pin(room.whisper_tagged(id, nick, text, tagged)).await;
                    if let (Ok(to), false) = (sent, notice)
                        && let Some((_, identity)) = room.irc_identity(&to)
                        && let Some(away) = identity.away
                    {
                        conn.queue(&view.numeric("301", &[&to, &away]));
                    }
                }
            }
            Command::TagMsg { target, tags } => {
                let tags = owned(&tags);
                let sent = match &target {
                    Target::Room(name) => room.tag_message(id, TagTarget::Room(name), tags),
                    Target::User(nick) => room.tag_message(id, TagTarget::Member(nick), tags),
                };
                if let (false, Target::Room(name)) = (sent, &target) {
                    let text = "Cannot send to channel";
                    conn.queue(&view.numeric("404", &[name.as_str(), text]));
                }
            }
            Command::Names(asked) => {
                let rooms = match asked {
                    Some(Ok(name)) => vec![name],
                    Some(Err(name)) => {
                        conn.queue(&view.numeric("366", &[name, "End of /NAMES list"]));
                        Vec::new()
                    }
                    None => std::iter::once(RoomName::lobby())
                        .chain(room.rooms_of(id))
                        .collect(),
                };
                for name in rooms {
                    let names = room.names_in(&name);
                    let nicks: Vec<&str> = names.iter().map(|n| &**n).collect();
                    for line in reply::names(self.to(&view), name.as_str(), &nicks) {
                        conn.queue(&line);
                    }
                }
            }
            Command::Who { mask, whox } => {
                let (names, shown_in) = match RoomName::parse(mask) {
                    Ok(name) => (room.names_in(&name), name.as_str().to_owned()),
                    Err(_) => {
                        let everyone = room.names_in(&RoomName::lobby());
                        let matching = everyone
                            .into_iter()
                            .filter(|n| mask_matches(mask, n))
                            .collect();
                        (matching, "*".to_owned())
                    }
                };
                let identities: Vec<(Arc<str>, IrcIdentity)> =
                    names.iter().filter_map(|n| room.irc_identity(n)).collect();
                let members: Vec<reply::Member<'_>> =
                    identities.iter().map(|(n, i)| shown_member(n, i)).collect();
                let shown_in = shown_in.as_str();
                let lines = match whox {
                    Some(fields) => reply::whox(self.to(&view), mask, shown_in, fields, &members),
                    None => reply::who(self.to(&view), mask, shown_in, &members),
                };
                for line in lines {
                    conn.queue(&line);
                }
            }
            Command::Whois(nick) => {
                let found = room.irc_identity(nick);
                let rooms = room.rooms_of_name(nick);
                let rooms: Vec<&str> = rooms.iter().map(RoomName::as_str).collect();
                let found = found
                    .as_ref()
                    .map(|(n, i)| (shown_member(n, i), rooms.as_slice()));
                for line in reply::whois(self.to(&view), nick, found) {
                    conn.queue(&line);
                }
            }
            Command::List(filter) => {
                let rooms = room.room_list();
                let counted: Vec<(&str, usize)> = rooms
                    .iter()
                    .map(|(r, n)| (r.as_str(), *n))
                    .filter(|(r, n)| filter.is_none_or(|f| list_filter(f, r, *n)))
                    .collect();
                for line in reply::list(self.to(&view), &counted) {
                    conn.queue(&line);
                }
            }
            Command::Away(text) => {
                let away = text.filter(|t| !t.is_empty()).map(str::to_owned);
                let is_away = away.is_some();
                room.set_away(id, away);
                conn.queue(&reply::away(self.to(&view), is_away));
            }
            Command::ChatHistory => {
                let mut out = String::new();
                let params = [
                    "CHATHISTORY",
                    "MESSAGE_ERROR",
                    "*",
                    "History is not served yet",
                ];
                crate::irc::message::write_text(&mut out, &[], Some(&view.server), "FAIL", &params);
                conn.queue(&out);
            }
            Command::Userhost(nicks) => {
                let found: Vec<String> = nicks
                    .iter()
                    .filter_map(|nick| room.irc_identity(nick))
                    .map(|(name, identity)| {
                        let here = if identity.away.is_some() { '-' } else { '+' };
                        format!("{name}={here}~{}@{}", identity.user, view.server)
                    })
                    .collect();
                conn.queue(&view.numeric("302", &[&found.join(" ")]));
            }
            Command::Time => {
                let now = crate::irc::chathistory::server_time(crate::event::now_ms());
                let shown = format!("{} {} UTC", &now[..10], &now[11..19]);
                conn.queue(&view.numeric("391", &[&view.server, &shown]));
            }
            Command::Lusers => {
                let online = room.presence().len();
                for line in welcome::lusers(&view.server, &view.nick, online, room.rooms_in_use()) {
                    conn.queue(&line);
                }
            }
            Command::Motd => queue_motd(conn, &view.server, &view.nick),
            Command::Cap => {
                for action in self.registration.handle(message) {
                    if let Action::Send(line) = action {
                        conn.queue(&line);
                    }
                }
                let caps = self.registration.caps().to_vec();
                if let Some(current) = conn.irc.as_deref_mut() {
                    let (user, realname) = (current.user.clone(), current.realname.clone());
                    *current = View::new(&current.server, &current.nick, (&user, &realname), &caps);
                }
            }
            Command::Quit(reason) => {
                conn.queue_last(protocol::BYE);
                member.reason = reason.filter(|r| !r.is_empty()).map(str::to_owned);
                return Some(End::Quit);
            }
        }
        None
    }
}

/// Client-only tags as the rooms keep them.
fn owned(tags: &[(&str, std::borrow::Cow<'_, str>)]) -> ClientTags {
    tags.iter()
        .map(|(k, v)| ((*k).to_owned(), v.to_string()))
        .collect()
}

/// A member as WHO and WHOIS show it.
fn shown_member<'a>(nick: &'a str, identity: &'a IrcIdentity) -> reply::Member<'a> {
    reply::Member {
        nick,
        user: &identity.user,
        realname: &identity.realname,
        away: identity.away.as_deref(),
    }
}

/// An IRC mask (`*` any run, `?` any one character, letter case ignored) against a name;
/// a `nick!user@host` mask is matched by its nick part.
fn mask_matches(mask: &str, name: &str) -> bool {
    let mask = mask.split('!').next().unwrap_or(mask).to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    let (mask, name) = (mask.as_bytes(), name.as_bytes());
    let (mut m, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if m < mask.len() && (mask[m] == b'?' || mask[m] == name[n]) {
            m += 1;
            n += 1;
        } else if m < mask.len() && mask[m] == b'*' {
            star = Some((m, n));
            m += 1;
        } else if let Some((sm, sn)) = star {
            m = sm + 1;
            n = sn + 1;
            star = Some((sm, sn + 1));
        } else {
            return false;
        }
    }
    mask[m..].iter().all(|&c| c == b'*')
}

/// `LIST`'s filters (ELIST=MNU), comma-separated: `>N` and `<N` on the headcount, `!mask`
/// for rooms not matching, and a mask for rooms matching; a room must pass every one.
fn list_filter(filter: &str, room: &str, count: usize) -> bool {
    filter.split(',').filter(|f| !f.is_empty()).all(|f| {
        if let Some(n) = f.strip_prefix('>') {
            n.parse::<usize>().is_ok_and(|n| count > n)
        } else if let Some(n) = f.strip_prefix('<') {
            n.parse::<usize>().is_ok_and(|n| count < n)
        } else if let Some(mask) = f.strip_prefix('!') {
            !mask_matches(mask, room)
        } else {
            mask_matches(f, room)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_match_with_stars_and_question_marks_in_any_case() {
        assert!(mask_matches("*", "alice"));
        assert!(mask_matches("Al*", "alice"));
        assert!(mask_matches("a?ice", "alice"));
        assert!(mask_matches("*i*e", "alice"));
        assert!(mask_matches("alice!*@*", "alice"));
        assert!(!mask_matches("al", "alice"));
        assert!(!mask_matches("*x*", "alice"));
    }

    #[test]
    fn list_filters_combine() {
        assert!(list_filter(">1", "#a", 2));
        assert!(!list_filter(">1,<2", "#a", 2));
        assert!(list_filter("#ch*", "#chan", 1));
        assert!(!list_filter("!#ch*", "#chan", 1));
    }
}

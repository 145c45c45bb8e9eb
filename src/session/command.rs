//! A member's commands, dispatched: room commands go to the rooms (whose replies are queued in
//! room order), `/cert` ones to the store, the rest are answered here.

use tracing::{debug, info, warn};

use super::conn::{Conn, unless_removed};
use super::{End, MemberGuard, SessionContext};
use crate::event::RoomName;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::protocol::{self, Command, Incoming};
use crate::room::Outbox;

/// The line protocol's commands.
pub(super) struct LineCommands;

impl<S: AsyncRead + AsyncWrite + Unpin> super::member::Commands<S> for LineCommands {
    async fn handle(
        &mut self,
        conn: &mut Conn<S>,
        ctx: &SessionContext,
        member: &mut MemberGuard,
        outbox: &mut Outbox,
        item: Incoming,
    ) -> Option<End> {
        handle(conn, ctx, member, outbox, item).await
    }

    fn slow_down(&self, conn: &mut Conn<S>, per_sec: f64) {
        conn.queue(&protocol::slow_down(per_sec));
    }
}

/// Acts on one decoded item from a member; returns how the session ends, if it does.
/// Room lines queued before the item go out before any reply to it.
async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
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
        Incoming::Unterminated => return Some(conn.no_newline(ctx, member)),
    };
    let room = &ctx.room;
    let command = protocol::parse_command(&line);
    // In a cluster a member's lines may still be on their way through the shared log: what it
    // does next follows them (boxed: rare, and only in a cluster).
    if !matches!(
        command,
        Command::Say(_) | Command::Emote(_) | Command::Nothing
    ) && room.has_lines_in_flight(member.id)
        && unless_removed(outbox, Box::pin(room.wait_for_lines(member.id)))
            .await
            .is_none()
    {
        return Some(conn.removed_end(outbox));
    }
    match command {
        Command::Nothing => {}
        // A member's own line moves its read position once everything queued before it is
        // written (see `Conn::marks`).
        Command::Say(text) => {
            if protocol::has_content(text) {
                debug!(body = %text.escape_debug(), "say");
                conn.marks.extend(room.say(member.id, text).await);
            }
        }
        Command::Emote(text) => {
            if protocol::has_content(text) {
                conn.marks.extend(room.emote(member.id, text).await);
            }
        }
        // Replies from here on are queued by the room in room order (see `Room::send_who`).
        // Boxed: in a cluster the target may be looked up in Redis.
        Command::Whisper { to, text } => {
            let _ = Box::pin(room.whisper(member.id, to, text)).await;
        }
        Command::Who(None) => room.send_who(member.id, None),
        Command::Who(Some(name)) => match RoomName::parse(name) {
            Ok(name) => room.send_who(member.id, Some(&name)),
            Err(_) => conn.queue(protocol::INVALID_ROOM_NAME),
        },
        Command::Join(name) => match RoomName::parse(name) {
            // Boxed: a room not in memory is read from the store first.
            Ok(name) => {
                let join = Box::pin(room.join_room(member.id, name));
                if unless_removed(outbox, join).await.is_none() {
                    return Some(conn.removed_end(outbox));
                }
            }
            Err(_) => conn.queue(protocol::INVALID_ROOM_NAME),
        },
        Command::Part(None) => room.part_room(member.id, None),
        Command::Part(Some(name)) => match RoomName::parse(name) {
            Ok(name) => room.part_room(member.id, Some(name)),
            Err(_) => conn.queue(protocol::INVALID_ROOM_NAME),
        },
        // Boxed: in a cluster the list is read from Redis.
        Command::Rooms => Box::pin(room.send_rooms(member.id)).await,
        Command::History(want) => room.send_history(member.id, want),
        Command::Help => conn.queue(protocol::HELP),
        // Replies from the database, boxed like every database wait here.
        command @ (Command::CertEnroll(_) | Command::CertList | Command::CertRevoke(_)) => {
            let reply = unless_removed(outbox, Box::pin(cert_reply(ctx, member, command))).await;
            return conn.queue_or_removed(reply, outbox);
        }
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

/// The reply to a `/cert` command.
async fn cert_reply(ctx: &SessionContext, member: &MemberGuard, command: Command<'_>) -> String {
    match command {
        Command::CertEnroll(label) => enroll(ctx, member, label).await,
        Command::CertList => list_certificates(ctx, member).await,
        Command::CertRevoke(key) => revoke(ctx, member, key).await,
        _ => unreachable!("only /cert commands are passed"),
    }
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

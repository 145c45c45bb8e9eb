//! The login machine: greeting, then up to three username/password rounds (or a client
//! certificate that the username owns), under the caller's login timeout.

use std::io;
use std::net::SocketAddr;

use secrecy::SecretString;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::warn;

use super::End;
use super::conn::Conn;
use crate::auth::{AuthError, Authenticator, LoggedIn};
use crate::metrics::{Metrics, inc};
use crate::protocol::{self, Incoming};

/// Failed logins allowed on one connection.
pub const MAX_LOGIN_ATTEMPTS: u32 = 3;

pub(super) enum LoginOutcome {
    LoggedIn(LoggedIn),
    Ended(End, Option<&'static str>),
}

/// Greeting, then up to three username/password rounds; a username that owns the
/// connection's certificate needs no password.
pub(super) async fn login<S: AsyncRead + AsyncWrite + Unpin>(
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

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
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
                    let max = self.max_line();
                    self.queue(&protocol::line_too_long(max));
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
}

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
use crate::protocol::{self, Incoming, ResumeFrom};

/// Failed logins allowed on one connection.
pub const MAX_LOGIN_ATTEMPTS: u32 = 3;

pub(super) enum LoginOutcome {
    /// Logged in; with what `/resume` asked for, if the client sent it.
    LoggedIn(LoggedIn, Option<ResumeFrom>),
    Ended(End, Option<&'static str>),
}

/// Greeting, then up to three username/password rounds; a username that owns the
/// connection's certificate needs no password. A `/resume` line at the `Username:` prompt
/// asks for numbered lines (see [`protocol::parse_resume`]); it is not a failed login.
pub(super) async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    auth: &Authenticator,
    metrics: &Metrics,
    peer: SocketAddr,
    presented: Option<&str>,
    answer_by: Option<tokio::time::Instant>,
) -> io::Result<LoginOutcome> {
    conn.queue(protocol::GREETING);
    let mut failures = 0;
    let mut resume = None;
    loop {
        conn.queue(protocol::USERNAME_PROMPT);
        let Some(username) = conn.read_login_line(protocol::USERNAME_PROMPT).await? else {
            return Ok(LoginOutcome::Ended(End::ClientClosed, None));
        };
        let username = match username {
            Ok(u) => u,
            Err(end) => return Ok(end),
        };
        match protocol::parse_resume(&username) {
            None => {}
            Some(Ok(from)) => {
                resume = Some(from);
                conn.queue(protocol::NUMBERED_LINES_ON);
                continue;
            }
            Some(Err(())) => {
                conn.queue(protocol::RESUME_USAGE);
                continue;
            }
        }
        if let Some(fingerprint) = presented {
            match auth.authenticate_certificate(&username, fingerprint).await {
                Ok(Some(account)) => {
                    inc(&metrics.logins_ok);
                    conn.queue(protocol::AUTHENTICATED_BY_CERTIFICATE);
                    return Ok(LoginOutcome::LoggedIn(account, resume));
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
        let result = auth
            .authenticate_by(&username, password, peer.ip(), answer_by)
            .await;
        if matches!(result, Ok(_) | Err(AuthError::LoginFailed)) {
            metrics.password_check_seconds.observe(started.elapsed());
        }
        match result {
            Ok(account) => {
                inc(&metrics.logins_ok);
                return Ok(LoginOutcome::LoggedIn(account, resume));
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
            Err(AuthError::Store(e)) => {
                // The database is down or failing: not the client's fault, and not a failed
                // login; it may come back, so say so.
                warn!(error = %e, "reading the account failed; login answered busy");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HashSettings, Limits};
    use crate::password::{Hasher, Password};
    use crate::store::Store;
    use crate::throttle::FailureCounter;
    use crate::username::Username;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A store with alice (password `correct horse`) and cheap hashing.
    async fn authenticator() -> (tempfile::TempDir, Authenticator) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        let hasher = Hasher::new(&HashSettings {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
            threads: 1,
            queue: 8,
            min_password_chars: 8,
        })
        .unwrap();
        let password = Password::parse(SecretString::from("correct horse".to_owned())).unwrap();
        let hash = hasher.hash(&password).await.unwrap();
        store
            .add_user(&Username::parse("alice").unwrap(), &hash)
            .await
            .unwrap();
        let auth = Authenticator::new(store, hasher, FailureCounter::new(&Limits::default()));
        (dir, auth)
    }

    /// Runs the login machine over an in-memory pipe of 16 bytes each way, the client sending
    /// `input` as it goes; returns the outcome and everything the server sent.
    async fn log_in(input: &'static str) -> (LoginOutcome, String) {
        let (_dir, auth) = authenticator().await;
        let (server, client) = tokio::io::duplex(16);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let writer = tokio::spawn(async move {
            // Ignored: the server may close before it has read everything.
            let _ = client_write.write_all(input.as_bytes()).await;
            client_write
        });
        let reader = tokio::spawn(async move {
            let mut sent = String::new();
            let _ = client_read.read_to_string(&mut sent).await;
            sent
        });
        let mut conn = Conn::new(server, &Limits::default(), Default::default());
        let metrics = Metrics::default();
        let peer = "127.0.0.1:1".parse().unwrap();
        let outcome = login(&mut conn, &auth, &metrics, peer, None, None)
            .await
            .unwrap();
        conn.flush().await.unwrap();
        drop(conn);
        drop(writer.await.unwrap());
        (outcome, reader.await.unwrap())
    }

    #[tokio::test]
    async fn the_right_password_logs_in_after_the_greeting_and_two_prompts() {
        let (outcome, sent) = log_in("alice\ncorrect horse\n").await;
        assert!(
            matches!(outcome, LoginOutcome::LoggedIn(ref a, None) if a.name.as_str() == "alice")
        );
        assert_eq!(
            sent,
            [
                protocol::GREETING,
                protocol::USERNAME_PROMPT,
                protocol::PASSWORD_PROMPT
            ]
            .concat()
        );
    }

    #[tokio::test]
    async fn three_failures_end_the_login_with_nothing_but_prompts_and_errors() {
        let (outcome, sent) = log_in("alice\nwrong\nbob\nx\nalice\nagain\nalice\n").await;
        assert!(matches!(
            outcome,
            LoginOutcome::Ended(End::TooManyFailures, Some(line))
                if line == protocol::TOO_MANY_FAILURES
        ));
        let round = [
            protocol::USERNAME_PROMPT,
            protocol::PASSWORD_PROMPT,
            protocol::LOGIN_FAILED,
        ]
        .concat();
        assert_eq!(
            sent,
            [protocol::GREETING, &round, &round, &round].concat(),
            "the last line is the caller's to send"
        );
    }

    #[tokio::test]
    async fn a_bad_line_at_a_prompt_gets_its_error_and_the_prompt_again() {
        let long = "x".repeat(5000);
        let input: &'static str = Box::leak(format!("{long}\nalice\ncorrect horse\n").into());
        let (outcome, sent) = log_in(input).await;
        assert!(matches!(outcome, LoginOutcome::LoggedIn(_, None)));
        assert_eq!(
            sent,
            [
                protocol::GREETING,
                protocol::USERNAME_PROMPT,
                &protocol::line_too_long(Limits::default().max_line_bytes),
                protocol::USERNAME_PROMPT,
                protocol::PASSWORD_PROMPT
            ]
            .concat()
        );
    }

    #[tokio::test]
    async fn resume_before_the_username_turns_numbers_on_and_is_no_failure() {
        let (outcome, sent) = log_in("/resume #lobby 7\nalice\ncorrect horse\n").await;
        let LoginOutcome::LoggedIn(_, Some(from)) = outcome else {
            panic!("not logged in with numbers");
        };
        assert_eq!(from, vec![(crate::event::RoomName::lobby(), 7)]);
        assert_eq!(
            sent,
            [
                protocol::GREETING,
                protocol::USERNAME_PROMPT,
                protocol::NUMBERED_LINES_ON,
                protocol::USERNAME_PROMPT,
                protocol::PASSWORD_PROMPT
            ]
            .concat()
        );
    }

    #[tokio::test]
    async fn a_malformed_resume_gets_its_usage_and_the_prompt_again() {
        let (outcome, sent) = log_in("/resume #lobby\nalice\ncorrect horse\n").await;
        assert!(matches!(outcome, LoginOutcome::LoggedIn(_, None)));
        assert_eq!(
            sent,
            [
                protocol::GREETING,
                protocol::USERNAME_PROMPT,
                protocol::RESUME_USAGE,
                protocol::USERNAME_PROMPT,
                protocol::PASSWORD_PROMPT
            ]
            .concat()
        );
    }
}

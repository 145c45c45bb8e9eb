//! `authenticate(name, password)`: every kind of failure looks the same from outside.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use secrecy::SecretString;

use crate::password::{HashError, Hasher, Password};
use crate::store::{AccountStamp, Store, StoreError};
use crate::throttle::{FailureCounter, Verdict};
use crate::username::Username;

/// Time left for writing `! Login failed` before a login's deadline.
pub const ANSWER_MARGIN: std::time::Duration = std::time::Duration::from_millis(250);

/// Why a login did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unknown user, wrong password, disabled account or invalid name: deliberately
    /// indistinguishable.
    #[error("login failed")]
    LoginFailed,
    /// Too many recent failures for this name or source; answered like `LoginFailed` after a
    /// delay, without checking the password.
    #[error("login throttled")]
    Throttled,
    /// Too many password checks are waiting; the client should retry later.
    #[error("server busy")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hash(HashError),
}

impl From<HashError> for AuthError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => AuthError::Busy,
            other => AuthError::Hash(other),
        }
    }
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    /// The name as created.
    pub name: Username,
    /// The account's state at login, to notice later changes.
    pub stamp: AccountStamp,
    /// The client certificate that logged in (its fingerprint); `None` for a password.
    pub certificate: Option<Arc<str>>,
    /// After a password login, how many client certificates can log in to the account
    /// (the welcome says so when there are any); 0 after a certificate login.
    pub enrolled_certificates: i64,
}

/// Checks passwords against the store; cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    hasher: Hasher,
    throttle: Arc<FailureCounter>,
}

impl Authenticator {
    /// Combines the user store, the password hasher and brute-force throttling.
    pub fn new(store: Store, hasher: Hasher, throttle: FailureCounter) -> Self {
        Authenticator {
            store,
            hasher,
            throttle: Arc::new(throttle),
        }
    }

    /// The hasher, for queue-depth reporting.
    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    /// The user store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Returns the name as created on success. Unknown and invalid names are checked against a
    /// dummy hash so that the time taken does not reveal which names exist. Throttled attempts
    /// wait, then fail without a password check.
    pub async fn authenticate(
        &self,
        name: &str,
        password: SecretString,
        source: IpAddr,
    ) -> Result<LoggedIn, AuthError> {
        self.authenticate_by(name, password, source, None).await
    }

    /// [`Authenticator::authenticate`] for a login that must be answered by `answer_by` (its
    /// login timeout): a throttled attempt's delay ends [`ANSWER_MARGIN`] before it, so the
    /// client reads `! Login failed`, not a timeout.
    #[tracing::instrument(skip_all)]
    pub async fn authenticate_by(
        &self,
        name: &str,
        password: SecretString,
        source: IpAddr,
        answer_by: Option<tokio::time::Instant>,
    ) -> Result<LoggedIn, AuthError> {
        let verdict = match self.throttle.attempt(name, source, Instant::now()).await {
            Ok(verdict) => verdict,
            Err(e) => {
                tracing::warn!(error = %e, "failure counters unreachable; login refused as busy");
                return Err(AuthError::Busy);
            }
        };
        if let Verdict::Throttled(delay) = verdict {
            let mut until = tokio::time::Instant::now() + delay;
            if let Some(answer_by) = answer_by {
                until = until.min(answer_by.checked_sub(ANSWER_MARGIN).unwrap_or(answer_by));
            }
            tokio::time::sleep_until(until).await;
            return Err(AuthError::Throttled);
        }
        let result = self.check_password(name, password).await;
        if !matches!(result, Err(AuthError::LoginFailed)) {
            // A success, or a check that never ran (busy, store error): not a failed guess.
            self.throttle.forgive(name, source).await;
        }
        result
    }

    /// Logs in the owner of the connection's client certificate (SASL EXTERNAL names no
    /// account): `Ok(None)` when it is bound to none or its account is disabled. Like
    /// [`Authenticator::authenticate_certificate`], never throttled.
    pub async fn authenticate_certificate_owner(
        &self,
        fingerprint: &str,
    ) -> Result<Option<LoggedIn>, AuthError> {
        let Some(owner) = self.store.certificate_owner(fingerprint).await? else {
            return Ok(None);
        };
        self.authenticate_certificate(&owner.username, fingerprint)
            .await
    }

    /// Logs `name` in by the connection's client certificate if the certificate is bound to
    /// that account (matched case-insensitively) and the account is enabled; `Ok(None)` means
    /// the password flow goes on, whatever the reason, so nothing about the certificate's
    /// owner shows. A certificate login is not throttled and counts as no failure: it never
    /// touches the counters of a name or a source.
    pub async fn authenticate_certificate(
        &self,
        name: &str,
        fingerprint: &str,
    ) -> Result<Option<LoggedIn>, AuthError> {
        let Some(owner) = self.store.certificate_owner(fingerprint).await? else {
            return Ok(None);
        };
        if !owner.username.eq_ignore_ascii_case(name) || owner.stamp.disabled {
            return Ok(None);
        }
        let Ok(user) = Username::parse(&owner.username) else {
            return Ok(None);
        };
        Ok(Some(LoggedIn {
            name: user,
            stamp: owner.stamp,
            certificate: Some(fingerprint.into()),
            enrolled_certificates: 0,
        }))
    }

    async fn check_password(
        &self,
        name: &str,
        password: SecretString,
    ) -> Result<LoggedIn, AuthError> {
        let credentials = match Username::parse(name) {
            Ok(user) => self.store.credentials(&user).await?,
            Err(_) => None,
        };
        // A disabled account still costs a full check, so its state does not show in timing.
        let (account, phc) = match credentials {
            Some(c) => (
                Some((c.username, c.stamp, c.certificates)),
                Some(c.password_hash),
            ),
            None => (None, None),
        };
        let verified = match self.hasher.verify(password.clone(), phc).await {
            Ok(v) => v,
            Err(e @ HashError::Unusable(_)) => {
                tracing::error!(user = %name, error = %e, "stored password hash is unusable; login refused");
                return Err(AuthError::LoginFailed);
            }
            Err(e) => return Err(e.into()),
        };
        let Some((stored_name, stamp, enrolled_certificates)) = account else {
            return Err(AuthError::LoginFailed);
        };
        if !verified.ok || stamp.disabled {
            return Err(AuthError::LoginFailed);
        }
        let Ok(user) = Username::parse(&stored_name) else {
            tracing::error!(
                name_len = stored_name.len(),
                "stored username is invalid; login refused"
            );
            return Err(AuthError::LoginFailed);
        };
        if verified.stale {
            self.rehash(&user, stamp, password).await;
        }
        Ok(LoggedIn {
            name: user,
            stamp,
            certificate: None,
            enrolled_certificates,
        })
    }

    /// Stores a hash with the current parameters for an account hashed with older ones, so
    /// that its checks cost what every other check costs. Best effort: a failure is logged
    /// and the login goes on.
    async fn rehash(&self, user: &Username, stamp: AccountStamp, password: SecretString) {
        let result = match Password::parse_with_min(password, 1) {
            // A password that predates the rule still gets a fresh hash.
            Ok(p) => self.hasher.hash(&p).await,
            Err(_) => return,
        };
        let outcome = match result {
            Ok(phc) => self
                .store
                .rehash_password(stamp, &phc)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(true) => {
                tracing::info!(user = %user, "password re-hashed with the current parameters")
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(user = %user, error = %e, "could not re-hash the password"),
        }
    }
}

//! `authenticate(name, password)`: every kind of failure looks the same from outside.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use secrecy::SecretString;

use crate::password::{HashError, Hasher};
use crate::store::{AccountStamp, Store, StoreError};
use crate::throttle::{Throttle, Verdict};
use crate::username::Username;

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
}

/// Checks passwords against the store; cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    hasher: Hasher,
    throttle: Arc<Throttle>,
}

impl Authenticator {
    /// Combines the user store, the password hasher and brute-force throttling.
    pub fn new(store: Store, hasher: Hasher, throttle: Throttle) -> Self {
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
    #[tracing::instrument(skip_all)]
    pub async fn authenticate(
        &self,
        name: &str,
        password: SecretString,
        source: IpAddr,
    ) -> Result<LoggedIn, AuthError> {
        if let Verdict::Throttled(delay) = self.throttle.check(name, source, Instant::now()) {
            self.throttle.record_failure(name, source, Instant::now());
            tokio::time::sleep(delay).await;
            return Err(AuthError::Throttled);
        }
        let result = self.check_password(name, password).await;
        if matches!(result, Err(AuthError::LoginFailed)) {
            self.throttle.record_failure(name, source, Instant::now());
        }
        result
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
            Some(c) => (Some((c.username, c.stamp)), Some(c.password_hash)),
            None => (None, None),
        };
        let ok = self.hasher.verify(password, phc).await?;
        match account {
            Some((name, stamp)) if ok && !stamp.disabled => Ok(LoggedIn {
                name: Username::parse(&name).expect("stored names passed Username::parse"),
                stamp,
            }),
            _ => Err(AuthError::LoginFailed),
        }
    }
}

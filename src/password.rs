//! argon2id hashing and verification on the blocking pool, with capped concurrency.

use std::sync::{Arc, Mutex};

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::config::HashSettings;

pub use crate::config::MIN_PASSWORD_CHARS;
/// Longest accepted password, in bytes (bounds the cost of hashing hostile input).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Stored hashes may use up to 4× the current memory and iterations, or these, whichever is
/// more (so that lowering the parameters does not lock out accounts hashed before).
const MAX_STORED_MEMORY_KIB: u32 = 256 * 1024;
const MAX_STORED_ITERATIONS: u32 = 16;

/// Why a new password was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRuleError {
    #[error("password too short: use at least {0} characters")]
    TooShort(usize),
    #[error("password too long: use at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("password must not contain NUL, CR or LF")]
    ForbiddenCharacter,
}

/// A password that satisfies the rule for new passwords; `Debug` never shows it.
#[derive(Debug)]
pub struct Password(SecretString);

impl Password {
    /// Checks the rule for new passwords (at login any line is simply verified).
    pub fn parse(secret: SecretString) -> Result<Self, PasswordRuleError> {
        Self::parse_with_min(secret, MIN_PASSWORD_CHARS)
    }

    /// [`Password::parse`] with `min_chars` as the shortest (`min_password_chars`).
    pub fn parse_with_min(
        secret: SecretString,
        min_chars: usize,
    ) -> Result<Self, PasswordRuleError> {
        let text = secret.expose_secret();
        if text.len() > MAX_PASSWORD_BYTES {
            return Err(PasswordRuleError::TooLong);
        }
        if text.contains(['\0', '\r', '\n']) {
            return Err(PasswordRuleError::ForbiddenCharacter);
        }
        if text.chars().count() < min_chars {
            return Err(PasswordRuleError::TooShort(min_chars));
        }
        Ok(Password(secret))
    }
}

/// Hashing could not be done.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    #[error("too many password checks waiting")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
    /// A stored hash that cannot be used: not a PHC string, another algorithm, or parameters
    /// beyond what this server will spend.
    #[error("unusable stored password hash: {0}")]
    Unusable(String),
}

/// The outcome of a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The password matched a real account's hash.
    pub ok: bool,
    /// The stored hash was made with other parameters than the current ones: re-hash it
    /// after a successful login so that every account's check costs the same.
    pub stale: bool,
}

/// Runs argon2id off the reactor, at most `threads` at once and `queue` more waiting.
#[derive(Clone)]
pub struct Hasher {
    inner: Arc<Inner>,
}

struct Inner {
    argon: Argon2<'static>,
    workers: Arc<Semaphore>,
    admission: Arc<Semaphore>,
    capacity: usize,
    /// Verified against for unknown users so that failures cost the same time; made with the
    /// current parameters when the hasher is built, so no first check costs two runs.
    dummy_hash: String,
    /// The parameters new hashes get.
    params: Params,
    /// argon2 working memory (~19 MiB each), reused while checks are queued so that a login
    /// storm does not fault in fresh pages for every check, and freed as soon as the queue is
    /// empty so that an idle server does not keep it. At most `threads` buffers exist.
    scratch: Mutex<Vec<Vec<Block>>>,
}

impl Hasher {
    /// Validates the parameters now, so that bad ones fail at start-up rather than at login.
    pub fn new(settings: &HashSettings) -> Result<Self, HashError> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|e| HashError::Params(e.to_string()))?;
        let capacity = settings.threads + settings.queue;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let dummy_hash = hash_with(&argon, "dummy password for unknown users")?;
        Ok(Hasher {
            inner: Arc::new(Inner {
                argon,
                workers: Arc::new(Semaphore::new(settings.threads)),
                admission: Arc::new(Semaphore::new(capacity)),
                capacity,
                dummy_hash,
                params,
                scratch: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Password checks running or waiting right now.
    pub fn queue_depth(&self) -> usize {
        self.inner.capacity - self.inner.admission.available_permits()
    }

    /// Hashes a new password into a PHC string.
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let secret = password.0.clone();
        self.run(move |inner| inner.hash(secret.expose_secret()))
            .await
    }

    /// Checks `password` against `phc`; with `None` it checks a dummy hash and fails. An
    /// unusable stored hash costs a dummy check too, then is reported as
    /// [`HashError::Unusable`], so its state does not show in timing.
    pub async fn verify(
        &self,
        password: SecretString,
        phc: Option<String>,
    ) -> Result<Verified, HashError> {
        self.run(move |inner| {
            let password = password.expose_secret().as_bytes();
            let Some(phc) = phc else {
                inner.verify(password, &inner.dummy_hash)?;
                return Ok(Verified {
                    ok: false,
                    stale: false,
                });
            };
            match inner.verify(password, &phc) {
                Ok((ok, stale)) => Ok(Verified { ok, stale }),
                Err(e) => {
                    inner.verify(password, &inner.dummy_hash)?;
                    Err(e)
                }
            }
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Inner) -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let admitted = Arc::clone(&self.inner.admission)
            .try_acquire_owned()
            .map_err(|_| HashError::Busy)?;
        let worker = Arc::clone(&self.inner.workers)
            .acquire_owned()
            .await
            .expect("the worker semaphore is never closed");
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let out = job(&inner);
            drop((worker, admitted));
            out
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))?
    }
}

fn hash_with(argon: &Argon2<'_>, password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Failed(e.to_string()))
}

impl Inner {
    fn hash(&self, password: &str) -> Result<String, HashError> {
        hash_with(&self.argon, password)
    }

    /// Recomputes the hash with the PHC string's own parameters in reused memory and compares
    /// in constant time; also says whether those parameters differ from the current ones.
    fn verify(&self, password: &[u8], phc: &str) -> Result<(bool, bool), HashError> {
        let failed = |e: &dyn std::fmt::Display| HashError::Unusable(e.to_string());
        let parsed = PasswordHash::new(phc).map_err(|e| failed(&e))?;
        let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| failed(&e))?;
        let version = parsed
            .version
            .map_or(Ok(Version::V0x13), Version::try_from)
            .map_err(|e| failed(&e))?;
        let params = Params::try_from(&parsed).map_err(|e| failed(&e))?;
        // A hand-edited row must not make one login allocate gigabytes or run for minutes.
        let current = &self.params;
        if params.m_cost()
            > current
                .m_cost()
                .saturating_mul(4)
                .max(MAX_STORED_MEMORY_KIB)
            || params.t_cost()
                > current
                    .t_cost()
                    .saturating_mul(4)
                    .max(MAX_STORED_ITERATIONS)
        {
            return Err(failed(&"parameters beyond the server's limit"));
        }
        let stale = algorithm != Algorithm::Argon2id
            || version != Version::V0x13
            || params.m_cost() != current.m_cost()
            || params.t_cost() != current.t_cost()
            || params.p_cost() != current.p_cost();
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Err(HashError::Unusable(
                "PHC string without salt or hash".into(),
            ));
        };
        let mut salt_buf = [0u8; 64];
        let salt = salt.decode_b64(&mut salt_buf).map_err(|e| failed(&e))?;
        let mut out = vec![0u8; expected.len()];
        let mut blocks = self.take_scratch(params.block_count());
        let result = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
            password,
            salt,
            &mut out,
            &mut blocks[..],
        );
        self.return_scratch(blocks);
        result.map_err(|e| failed(&e))?;
        let computed = Output::new(&out).map_err(|e| failed(&e))?;
        // `Output`'s equality is constant-time.
        Ok((computed == expected, stale))
    }

    fn take_scratch(&self, blocks: usize) -> Vec<Block> {
        let mut buf = self
            .scratch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        if buf.len() < blocks {
            buf.resize(blocks, Block::default());
        }
        buf
    }

    fn return_scratch(&self, buf: Vec<Block>) {
        let mut pool = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        // This check still holds its admission permit, so a depth of 1 means nobody waits.
        if self.capacity - self.admission.available_permits() > 1 {
            pool.push(buf);
        } else {
            pool.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> HashSettings {
        HashSettings {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            threads: 1,
            queue: 1,
            min_password_chars: 8,
        }
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn password_rule() {
        assert_eq!(
            Password::parse(secret("short")).unwrap_err(),
            PasswordRuleError::TooShort(MIN_PASSWORD_CHARS)
        );
        assert_eq!(
            Password::parse(secret(&"x".repeat(1025))).unwrap_err(),
            PasswordRuleError::TooLong
        );
        assert_eq!(
            Password::parse(secret("abcdefgh\n")).unwrap_err(),
            PasswordRuleError::ForbiddenCharacter
        );
        assert!(Password::parse(secret("pässwörd")).is_ok());
    }

    #[test]
    fn debug_is_redacted() {
        let p = Password::parse(secret("hunter22hunter22")).unwrap();
        assert!(!format!("{p:?}").contains("hunter22"));
    }

    #[test]
    fn bad_parameters_are_rejected_up_front() {
        let s = HashSettings {
            memory_kib: 1,
            ..cheap()
        };
        assert!(matches!(Hasher::new(&s), Err(HashError::Params(_))));
    }

    #[tokio::test]
    async fn hash_then_verify_round_trip() {
        let h = Hasher::new(&cheap()).unwrap();
        let phc = h
            .hash(&Password::parse(secret("correct horse")).unwrap())
            .await
            .unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        let fresh = Verified {
            ok: true,
            stale: false,
        };
        assert_eq!(
            h.verify(secret("correct horse"), Some(phc.clone()))
                .await
                .unwrap(),
            fresh
        );
        assert!(!h.verify(secret("wrong horse"), Some(phc)).await.unwrap().ok);
        assert!(!h.verify(secret("correct horse"), None).await.unwrap().ok);
    }

    #[tokio::test]
    async fn a_hash_with_other_parameters_verifies_and_is_stale() {
        let old = Hasher::new(&HashSettings {
            iterations: 2,
            ..cheap()
        })
        .unwrap();
        let phc = old
            .hash(&Password::parse(secret("correct horse")).unwrap())
            .await
            .unwrap();
        let h = Hasher::new(&cheap()).unwrap();
        let v = h.verify(secret("correct horse"), Some(phc)).await.unwrap();
        assert_eq!(
            v,
            Verified {
                ok: true,
                stale: true
            }
        );
    }

    #[tokio::test]
    async fn unusable_stored_hashes_are_errors_not_panics() {
        let h = Hasher::new(&cheap()).unwrap();
        for phc in [
            "not a hash",
            "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ",
            "$bcrypt$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=4000000,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=64,t=100000,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            let r = h.verify(secret("x"), Some(phc.to_owned())).await;
            assert!(matches!(r, Err(HashError::Unusable(_))), "{phc}: {r:?}");
        }
    }
}

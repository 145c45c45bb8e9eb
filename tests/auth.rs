//! Store and authentication through the library API with a real SQLite file.

use secrecy::SecretString;
use tlschat::auth::{AuthError, Authenticator};
use tlschat::config::{HashSettings, Limits};
use tlschat::password::{Hasher, Password};
use tlschat::store::Store;
use tlschat::throttle::FailureCounter;
use tlschat::username::Username;

async fn setup(settings: HashSettings) -> (tempfile::TempDir, Store, Authenticator) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("u.db")).await.unwrap();
    let hasher = Hasher::new(&settings).unwrap();
    let pw = Password::parse(secret("right password")).unwrap();
    let hash = hasher.hash(&pw).await.unwrap();
    store
        .add_user(&Username::parse("Alice").unwrap(), &hash)
        .await
        .unwrap();
    let auth = Authenticator::new(
        store.clone(),
        hasher,
        FailureCounter::new(&Limits::default()),
    );
    (dir, store, auth)
}

const LOCAL: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn cheap() -> HashSettings {
    HashSettings {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
        ..HashSettings::default()
    }
}

#[tokio::test]
async fn right_password_authenticates_with_the_name_as_created() {
    let (_d, _s, auth) = setup(cheap()).await;
    let user = auth
        .authenticate("alice", secret("right password"), LOCAL)
        .await
        .unwrap();
    assert_eq!(user.name.as_str(), "Alice");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_give_the_same_error() {
    let (_d, _s, auth) = setup(cheap()).await;
    let wrong = auth
        .authenticate("alice", secret("wrong password"), LOCAL)
        .await;
    let unknown = auth
        .authenticate("mallory", secret("right password"), LOCAL)
        .await;
    let invalid = auth.authenticate("", secret("right password"), LOCAL).await;
    for r in [wrong, unknown, invalid] {
        let e = r.unwrap_err();
        assert!(matches!(e, AuthError::LoginFailed));
        assert_eq!(e.to_string(), "login failed");
    }
}

#[tokio::test]
async fn disabled_account_fails_like_a_wrong_password() {
    let (_d, store, auth) = setup(cheap()).await;
    let alice = Username::parse("alice").unwrap();
    store.set_disabled(&alice, true).await.unwrap();
    let e = auth
        .authenticate("alice", secret("right password"), LOCAL)
        .await
        .unwrap_err();
    assert!(matches!(e, AuthError::LoginFailed));
    store.set_disabled(&alice, false).await.unwrap();
    assert!(
        auth.authenticate("alice", secret("right password"), LOCAL)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn stored_hash_is_argon2id_with_the_default_parameters() {
    let (_d, store, _a) = setup(HashSettings::default()).await;
    let creds = store
        .credentials(&Username::parse("alice").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        creds
            .password_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        creds.password_hash
    );
    assert!(!creds.password_hash.contains("right password"));
}

#[tokio::test]
async fn password_checks_beyond_the_queue_bound_are_refused_as_busy() {
    let settings = HashSettings {
        memory_kib: 65536,
        iterations: 3,
        parallelism: 1,
        threads: 1,
        queue: 1,
        min_password_chars: 8,
    };
    let (_d, _s, auth) = setup(settings).await;
    let attempts = (0..6).map(|_| {
        let auth = auth.clone();
        tokio::spawn(async move {
            auth.authenticate("alice", secret("wrong password"), LOCAL)
                .await
        })
    });
    let results = futures_join(attempts.collect()).await;
    let busy = results
        .iter()
        .filter(|r| matches!(r, Err(AuthError::Busy)))
        .count();
    assert!(busy >= 1, "no attempt was refused: {results:?}");
    assert!(
        results.len() - busy >= 2,
        "running and queued checks still complete"
    );
}

async fn futures_join<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

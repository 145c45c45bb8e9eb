//! Measures one argon2id verification with the default parameters (or those given by env).
//!
//! `cargo run --release --example hash_time [-- ROUNDS]`

use std::time::Instant;

use secrecy::SecretString;
use tlschat::config::{Argon2Settings, HashSettings};
use tlschat::password::{Hasher, Password};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let rounds: u32 = std::env::args().nth(1).map_or(Ok(20), |a| a.parse())?;
    let settings = HashSettings::from_settings(&Argon2Settings::default())?;
    let hasher = Hasher::new(&settings)?;
    let password = Password::parse(SecretString::from("benchmark password".to_owned()))?;
    let phc = hasher.hash(&password).await?;
    let start = Instant::now();
    for _ in 0..rounds {
        let ok = hasher
            .verify(
                SecretString::from("benchmark password".to_owned()),
                Some(phc.clone()),
            )
            .await?;
        assert!(ok.ok);
    }
    let per = start.elapsed() / rounds;
    println!(
        "argon2id m={} KiB t={} p={}: {:.1} ms per verification ({rounds} rounds)",
        settings.memory_kib,
        settings.iterations,
        settings.parallelism,
        per.as_secs_f64() * 1000.0
    );
    Ok(())
}

//! `tlschat user …`: accounts and their client certificates in the database.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{Argon2Settings, FileConfig};
use crate::password::{Hasher, Password};
use crate::report::Report;
use crate::store::{OnPasswordChange, Store};
use crate::username::Username;
use serde_json::json;

use super::*;

#[derive(Debug, Args)]
pub(super) struct PasswordArgs {
    /// Read the password as one line from standard input instead of the terminal
    #[arg(long)]
    pub(super) password_stdin: bool,
    #[command(flatten, next_help_heading = "Password hashing")]
    argon2: Argon2Settings,
}

#[derive(Debug, Subcommand)]
pub(super) enum UserCommand {
    /// Create a user (asks for the password twice)
    Add {
        /// 1-32 ASCII letters, digits, '_', '-' or '.', starting with a letter or digit
        name: String,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Change a user's password; removes the user's client certificates (unless kept) and
    /// closes the user's sessions
    Passwd {
        /// Existing user (matched case-insensitively)
        name: String,
        /// Keep the user's client certificates (by default a new password removes them, so
        /// that a certificate enrolled by whoever knew the old one stops logging in)
        #[arg(long)]
        keep_certificates: bool,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Delete a user
    Del {
        /// Existing user (matched case-insensitively)
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Refuse a user's logins and close their session (within a few seconds)
    Disable {
        /// Existing user (matched case-insensitively)
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Allow a disabled user to log in again
    Enable {
        /// Existing user (matched case-insensitively)
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List users: name, creation time (UTC), enabled or disabled
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Client certificates that log a user in without a password
    #[command(subcommand)]
    Cert(UserCertCommand),
}

#[derive(Debug, Subcommand)]
pub(super) enum UserCertCommand {
    /// Bind the certificate in FILE (PEM) to NAME
    Add {
        /// Existing user (matched case-insensitively)
        name: String,
        /// The certificate, PEM (the first one in the file)
        file: PathBuf,
        /// 1-32 ASCII letters, digits, '_', '-' or '.' [default: today's date]
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List NAME's certificates: label, fingerprint, date added (UTC)
    List {
        /// Existing user (matched case-insensitively)
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Unbind a certificate (by fingerprint or label); sessions that logged in with it close
    Del {
        /// Existing user (matched case-insensitively)
        name: String,
        /// SHA-256 fingerprint (with or without colons, any case, optional SHA256:) or label
        certificate: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

pub(super) async fn user(cmd: UserCommand, report: Report) -> anyhow::Result<()> {
    let done = |human: String, message: &str, name: &Username| {
        report.line(&human, message, &[("user", json!(name.as_str()))])
    };
    match cmd {
        UserCommand::Add { name, db, password } => {
            let name = Username::parse(&name)?;
            let (store, hasher, min) = open_for_passwords(&db, &password.argon2).await?;
            let secret = read_new_password(password.password_stdin, min)?;
            let hash = hasher.hash(&secret).await?;
            store.add_user(&name, &hash).await?;
            store.close().await;
            done(format!("added user {name}"), "added user", &name)?;
        }
        UserCommand::Passwd {
            name,
            keep_certificates,
            db,
            password,
        } => {
            let name = Username::parse(&name)?;
            let (store, hasher, min) = open_for_passwords(&db, &password.argon2).await?;
            if store.credentials(&name).await?.is_none() {
                bail!("no such user: {name}");
            }
            let secret = read_new_password(password.password_stdin, min)?;
            let hash = hasher.hash(&secret).await?;
            let certificates = if keep_certificates {
                OnPasswordChange::KeepCertificates
            } else {
                OnPasswordChange::RemoveCertificates
            };
            let removed = store.set_password(&name, &hash, certificates).await?;
            store.close().await;
            done(
                format!("changed password of {name}"),
                "changed password",
                &name,
            )?;
            if removed > 0 {
                let count = usize::try_from(removed).unwrap_or(usize::MAX);
                let what =
                    crate::protocol::plural(count, "client certificate", "client certificates");
                report.line(
                    &format!("removed {what}"),
                    "removed client certificates",
                    &[("user", json!(name.as_str())), ("count", json!(removed))],
                )?;
            }
        }
        UserCommand::Del { name, db } => {
            let name = Username::parse(&name)?;
            let (store, _) = open(&db, None).await?;
            store.delete_user(&name).await?;
            store.close().await;
            done(format!("deleted user {name}"), "deleted user", &name)?;
        }
        UserCommand::Disable { name, db } => set_disabled(&name, &db, true, report).await?,
        UserCommand::Enable { name, db } => set_disabled(&name, &db, false, report).await?,
        UserCommand::List { db } => {
            let (store, _) = open(&db, None).await?;
            for user in store.list_users().await? {
                let state = if user.disabled { "disabled" } else { "enabled" };
                report.line(
                    &format!("{}\t{}\t{state}", user.username, user.created_at),
                    "user",
                    &[
                        ("user", json!(user.username)),
                        ("created_at", json!(user.created_at)),
                        ("state", json!(state)),
                    ],
                )?;
            }
            store.close().await;
        }
        UserCommand::Cert(cmd) => user_cert(cmd, report).await?,
    }
    Ok(())
}

pub(super) async fn user_cert(cmd: UserCertCommand, report: Report) -> anyhow::Result<()> {
    match cmd {
        UserCertCommand::Add {
            name,
            file,
            label,
            db,
        } => {
            let name = Username::parse(&name)?;
            let fingerprint =
                crate::client_cert::fingerprint_of_pem_file(&file).map_err(anyhow::Error::msg)?;
            let label = label.unwrap_or_else(crate::client_cert::default_label);
            if !crate::client_cert::valid_label(&label) {
                bail!("invalid label {label:?}: use 1-32 of A-Z a-z 0-9 _ - .");
            }
            let (store, _) = open(&db, None).await?;
            let added = store.add_certificate(&name, &fingerprint, &label).await;
            store.close().await;
            added?;
            report.line(
                &format!("added certificate {label} {fingerprint} to {name}"),
                "added certificate",
                &[
                    ("user", json!(name.as_str())),
                    ("label", json!(label)),
                    ("fingerprint", json!(fingerprint)),
                ],
            )?;
        }
        UserCertCommand::List { name, db } => {
            let name = Username::parse(&name)?;
            let (store, _) = open(&db, None).await?;
            let certificates = store.certificates(&name).await;
            store.close().await;
            for c in certificates? {
                report.line(
                    &format!("{}\t{}\t{}", c.label, c.fingerprint, c.added),
                    "certificate",
                    &[
                        ("label", json!(c.label)),
                        ("fingerprint", json!(c.fingerprint)),
                        ("added", json!(c.added)),
                    ],
                )?;
            }
        }
        UserCertCommand::Del {
            name,
            certificate,
            db,
        } => {
            let name = Username::parse(&name)?;
            let key = crate::client_cert::parse_fingerprint(&certificate).unwrap_or(certificate);
            let (store, _) = open(&db, None).await?;
            let deleted = store.delete_certificate(&name, &key).await;
            store.close().await;
            let Some(label) = deleted? else {
                bail!("no such certificate for {name}: {key}");
            };
            report.line(
                &format!("deleted certificate {label} of {name}"),
                "deleted certificate",
                &[("user", json!(name.as_str())), ("label", json!(label))],
            )?;
        }
    }
    Ok(())
}

pub(super) async fn set_disabled(
    name: &str,
    db: &DbArgs,
    disabled: bool,
    report: Report,
) -> anyhow::Result<()> {
    let name = Username::parse(name)?;
    let (store, _) = open(db, None).await?;
    store.set_disabled(&name, disabled).await?;
    store.close().await;
    let verb = if disabled { "disabled" } else { "enabled" };
    report.line(
        &format!("{verb} user {name}"),
        &format!("{verb} user"),
        &[("user", json!(name.as_str()))],
    )?;
    Ok(())
}

/// Opens the store and, when passwords are involved, a hasher with the configured parameters.
pub(super) async fn open(
    db: &DbArgs,
    argon2: Option<&Argon2Settings>,
) -> anyhow::Result<(Store, Hasher)> {
    let file = FileConfig::load(db.config.as_deref())?;
    let settings = file.hash_settings(argon2.unwrap_or(&Argon2Settings::default()))?;
    let hasher = Hasher::new(&settings)?;
    let store = Store::open_db(&file.db(db.db.clone())).await?;
    Ok((store, hasher))
}

/// [`open`] for commands that set a password: also the shortest one allowed.
async fn open_for_passwords(
    db: &DbArgs,
    argon2: &Argon2Settings,
) -> anyhow::Result<(Store, Hasher, usize)> {
    let file = FileConfig::load(db.config.as_deref())?;
    let min = file.hash_settings(argon2)?.min_password_chars;
    let (store, hasher) = open(db, Some(argon2)).await?;
    Ok((store, hasher, min))
}

/// One line from stdin, or twice from the terminal without echo, of at least `min_chars`.
pub(super) fn read_new_password(from_stdin: bool, min_chars: usize) -> anyhow::Result<Password> {
    let secret = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        let trimmed = line.strip_suffix('\n').unwrap_or(&line);
        let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
        SecretString::from(trimmed.to_owned())
    } else {
        if !std::io::stdin().is_terminal() {
            bail!("no terminal to ask for the password; use --password-stdin");
        }
        let first = rpassword::prompt_password("Password: ").context("reading the password")?;
        let second =
            rpassword::prompt_password("Repeat password: ").context("reading the password")?;
        let (first, second) = (SecretString::from(first), SecretString::from(second));
        if first.expose_secret() != second.expose_secret() {
            bail!("passwords differ");
        }
        first
    };
    Ok(Password::parse_with_min(secret, min_chars)?)
}

//! `tlschat cert generate`: a self-signed certificate written to files.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::report::Report;
use crate::tls::{self, DEFAULT_CERT_NAMES};
use serde_json::json;

#[derive(Debug, Subcommand)]
pub(super) enum CertCommand {
    /// Generate a self-signed ECDSA P-256 certificate and key
    Generate {
        /// Directory for server.crt and server.key
        #[arg(long, default_value = "certs", value_name = "DIR")]
        out: PathBuf,
        /// DNS name or IP address to cover (repeatable) [default: localhost, 127.0.0.1, ::1]
        #[arg(long = "name", value_name = "HOST")]
        names: Vec<String>,
        /// Replace existing files
        #[arg(long)]
        force: bool,
        /// Days the certificate is valid, 1-3650 (browsers accept at most 398 for public CAs)
        #[arg(long, default_value_t = tls::DEFAULT_CERT_DAYS, value_name = "N",
              value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
    },
}

pub(super) fn cert_generate(
    out: &Path,
    mut names: Vec<String>,
    force: bool,
    days: u32,
    report: Report,
) -> anyhow::Result<()> {
    if names.is_empty() {
        names = DEFAULT_CERT_NAMES.iter().map(|s| s.to_string()).collect();
    }
    let (cert, key) = (out.join(tls::CERT_FILE), out.join(tls::KEY_FILE));
    let pair = tls::write_self_signed(&cert, &key, &names, days, force)?;
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    report.line(
        &format!("certificate: {c}"),
        "certificate",
        &[("path", json!(c))],
    )?;
    report.line(
        &format!("private key: {k} (mode 0600)"),
        "private key",
        &[("path", json!(k))],
    )?;
    report.line(
        &format!("names: {}", names.join(", ")),
        "names",
        &[("names", json!(names))],
    )?;
    report.line(
        &format!("valid until: {}", pair.not_after),
        "valid until",
        &[("not_after", json!(pair.not_after)), ("days", json!(days))],
    )?;
    report.line(
        &format!("SHA-256 fingerprint: {}", pair.fingerprint),
        "fingerprint",
        &[("fingerprint", json!(pair.fingerprint))],
    )?;
    Ok(())
}

//! Client certificates as login credentials: how their fingerprints are written and read,
//! and what a label may be.

use std::path::Path;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Longest certificate label.
pub const MAX_LABEL_CHARS: usize = 32;

/// Reads a fingerprint as people paste it: the form `serve` prints (upper-case hex pairs with
/// colons), plain hex in either case, each with an optional `SHA256:` prefix. Returns the
/// printed form, or `None` if it is not a SHA-256.
pub fn parse_fingerprint(text: &str) -> Option<String> {
    let text = text.trim();
    let text = match text.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("sha256:") => &text[7..],
        _ => text,
    };
    let hex: Vec<u8> = if text.contains(':') {
        let pairs: Vec<&str> = text.split(':').collect();
        if pairs.iter().any(|p| p.len() != 2) {
            return None;
        }
        pairs.concat().into_bytes()
    } else {
        text.as_bytes().to_vec()
    };
    if hex.len() != 64 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut out = String::with_capacity(95);
    for (i, pair) in hex.chunks(2).enumerate() {
        if i > 0 {
            out.push(':');
        }
        for &c in pair {
            out.push(char::from(c.to_ascii_uppercase()));
        }
    }
    Some(out)
}

/// A label: 1-32 ASCII letters, digits, `_`, `-` or `.` (a date like `2026-12-01` is one).
pub fn valid_label(label: &str) -> bool {
    (1..=MAX_LABEL_CHARS).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The label a certificate gets when none is given: today's UTC date.
pub fn default_label() -> String {
    let secs = u64::try_from(crate::event::now_ms() / 1000).unwrap_or(0);
    crate::report::utc(secs)[..10].to_owned()
}

/// The fingerprint of the first certificate in a PEM file.
pub fn fingerprint_of_pem_file(path: &Path) -> Result<String, String> {
    let cert = CertificateDer::from_pem_file(path)
        .map_err(|e| format!("reading certificate {}: {e}", path.display()))?;
    Ok(crate::tls::fingerprint(&cert))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRINTED: &str = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:\
                           AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99";

    #[test]
    fn every_accepted_form_reads_as_the_printed_one() {
        let plain = PRINTED.replace(':', "");
        for form in [
            PRINTED.to_owned(),
            PRINTED.to_ascii_lowercase(),
            plain.clone(),
            plain.to_ascii_lowercase(),
            format!("SHA256:{PRINTED}"),
            format!("sha256:{plain}"),
        ] {
            assert_eq!(parse_fingerprint(&form).as_deref(), Some(PRINTED), "{form}");
        }
    }

    #[test]
    fn other_text_is_not_a_fingerprint() {
        for bad in [
            "",
            "AA:BB",
            &PRINTED[3..],
            "ZZ",
            &format!("{PRINTED}:00"),
            "A:AB",
        ] {
            assert_eq!(parse_fingerprint(bad), None, "{bad}");
        }
    }

    #[test]
    fn labels_follow_the_rule() {
        assert!(valid_label("laptop"));
        assert!(valid_label("2026-12-01"));
        assert!(!valid_label(""));
        assert!(!valid_label("two words"));
        assert!(!valid_label(&"x".repeat(33)));
    }

    #[test]
    fn the_default_label_is_a_date() {
        let label = default_label();
        assert_eq!(label.len(), 10);
        assert!(valid_label(&label));
        assert!(label.starts_with("20"), "{label}");
    }
}

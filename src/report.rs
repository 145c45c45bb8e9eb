//! The process's own output lines on stdout (start-up facts, command results) and its last
//! error on stderr: human text, or with `--log-format json` one JSON object per line in the
//! shape of the JSON log (`timestamp`, `level`, `fields.message`, more `fields`, `target`),
//! so that a log shipper reading both streams sees nothing but JSON.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// How output lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    json: bool,
}

impl Report {
    /// Human lines, or JSON objects when `json`.
    pub fn new(json: bool) -> Self {
        Report { json }
    }

    /// True in JSON mode.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// One fact on stdout: `human` in text mode, else `message` with `fields`.
    pub fn line(
        &self,
        human: &str,
        message: &str,
        fields: &[(&str, Value)],
    ) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        if self.json {
            writeln!(out, "{}", event("INFO", message, fields))?;
        } else {
            writeln!(out, "{human}")?;
        }
        out.flush()
    }

    /// The error that ends the process, on stderr.
    pub fn error(&self, message: &str) {
        let mut err = std::io::stderr().lock();
        let _ = if self.json {
            writeln!(err, "{}", event("ERROR", message, &[]))
        } else {
            writeln!(err, "error: {message}")
        };
    }
}

/// A JSON object shaped like a tracing-subscriber JSON log line.
pub fn event(level: &str, message: &str, fields: &[(&str, Value)]) -> String {
    let mut f = Map::new();
    f.insert("message".into(), Value::from(message));
    for (k, v) in fields {
        f.insert((*k).into(), v.clone());
    }
    let mut obj = Map::new();
    obj.insert("timestamp".into(), Value::from(now_rfc3339()));
    obj.insert("level".into(), Value::from(level));
    obj.insert("fields".into(), Value::Object(f));
    obj.insert("target".into(), Value::from("tlschat"));
    Value::Object(obj).to_string()
}

fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = utc(d.as_secs());
    format!("{}.{:06}Z", secs.trim_end_matches('Z'), d.subsec_micros())
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch (civil-from-days, proleptic
/// Gregorian calendar).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_epoch_seconds() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_795_564_800), "2026-11-25T00:00:00Z");
        assert_eq!(utc(951_782_400 + 3_661), "2000-02-29T01:01:01Z");
    }

    #[test]
    fn events_are_json_objects_with_message_and_fields() {
        let line = event("INFO", "listening", &[("addr", Value::from("127.0.0.1:1"))]);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["fields"]["message"], "listening");
        assert_eq!(v["fields"]["addr"], "127.0.0.1:1");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}

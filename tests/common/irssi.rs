//! irssi as a test's IRC client: run under tmux with a private home, commands typed into its
//! window, what it shows read back from its automatic logs.
#![allow(dead_code)]

use super::TestServer;
use std::path::{Path, PathBuf};
use std::process::Command;

/// irssi and tmux, or `None` (with the reason printed) when the test should skip.
pub fn irssi() -> Option<PathBuf> {
    let find = |name: &str| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    };
    let found = find("irssi").filter(|_| find("tmux").is_some());
    if found.is_none() {
        super::missing_program("irssi or tmux is not installed (apt-get install irssi tmux)");
    }
    found
}

/// A running irssi in a tmux session, connected with SASL PLAIN.
pub struct Irssi {
    session: String,
    home: tempfile::TempDir,
}

impl Irssi {
    /// Starts irssi (under tmux) in a fresh home, pinned to the server's certificate, and
    /// connects as `name` with `password`.
    pub fn connect(binary: &Path, server: &TestServer, name: &str, password: &str) -> Irssi {
        let home = tempfile::tempdir().unwrap();
        let pin = tlschat::tls::fingerprint(&server.cert_der);
        let logs = home.path().join("logs");
        let config = format!(
            r#"servers = (
  {{
    address = "127.0.0.1";
    chatnet = "tlschat";
    port = "{port}";
    use_tls = "yes";
    tls_verify = "no";
    tls_pinned_cert = "{pin}";
    autoconnect = "yes";
  }}
);
chatnets = {{
  tlschat = {{
    type = "IRC";
    sasl_mechanism = "PLAIN";
    sasl_username = "{name}";
    sasl_password = "{password}";
  }};
}};
settings = {{
  core = {{ real_name = "{name}"; user_name = "{name}"; nick = "{name}"; }};
  "irc/core" = {{ cmd_queue_speed = "0"; cmds_max_at_once = "100"; }};
  "fe-common/core" = {{ autolog = "yes"; autolog_path = "{logs}/$0.log"; }};
}};
"#,
            port = server.irc_addr.port(),
            logs = logs.display(),
        );
        std::fs::write(home.path().join("config"), config).unwrap();
        static SESSIONS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let session = format!("tlschatirssi{}x{n}", std::process::id());
        let command = format!("{} --home={}", binary.display(), home.path().display());
        let status = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-x",
                "200",
                "-y",
                "50",
                "-s",
                &session,
                &command,
            ])
            .status()
            .unwrap();
        assert!(status.success(), "tmux did not start irssi");
        Irssi { session, home }
    }

    /// The tmux session, matched exactly.
    fn target(&self) -> String {
        format!("={}:", self.session)
    }

    /// Types `line` into irssi's window (a message, or a `/command`).
    pub fn type_line(&self, line: &str) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.target(), "-l", line])
            .status()
            .unwrap();
        assert!(status.success());
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.target(), "Enter"])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits until irssi's log of `target` (`#lobby`, a nick) has a line containing `needle`;
    /// returns the log.
    pub async fn wait_for_log(&self, target: &str, needle: &str) -> String {
        let path = self.home.path().join("logs").join(format!("{target}.log"));
        super::wait_for_log_line(&path, needle, &format!("irssi's {target} log")).await
    }
}

impl Drop for Irssi {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.target()])
            .status();
    }
}

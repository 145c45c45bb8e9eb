//! The real `openssl s_client` as a chat client: lines in on stdin, lines out on stdout.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::{PASSWORD, STEP, TestServer};

pub struct SClient {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl SClient {
    /// `openssl s_client` to `addr` trusting `ca`, with `extra` arguments (`-alpn tlschat`).
    pub async fn start(
        addr: std::net::SocketAddr,
        ca: &std::path::Path,
        extra: &[&str],
    ) -> SClient {
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-crlf", "-verify_return_error"])
            .args(extra)
            .arg("-connect")
            .arg(addr.to_string())
            .arg("-CAfile")
            .arg(ca)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("openssl must be installed");
        SClient {
            stdin: child.stdin.take().unwrap(),
            lines: BufReader::new(child.stdout.take().unwrap()).lines(),
            _child: child,
        }
    }

    pub async fn send(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    pub async fn wait_for(&mut self, expected: &str) {
        self.wait_matching(expected, |l| l == expected).await;
    }

    /// Skips lines until one starts with `prefix`.
    pub async fn wait_for_start(&mut self, prefix: &str) {
        self.wait_matching(prefix, |l| l.starts_with(prefix)).await;
    }

    async fn wait_matching(&mut self, what: &str, matches: impl Fn(&str) -> bool) {
        loop {
            let line = tokio::time::timeout(STEP, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what:?}"))
                .unwrap()
                .unwrap_or_else(|| panic!("s_client ended before {what:?}"));
            if matches(&line) {
                return;
            }
        }
    }

    pub async fn login(&mut self, name: &str) {
        self.wait_for("Username:").await;
        self.send(name).await;
        self.wait_for("Password:").await;
        self.send(PASSWORD).await;
    }
}

/// An s_client user of `server`, logged in as `name` past the welcome line.
pub async fn login(server: &TestServer, name: &str, extra: &[&str]) -> SClient {
    let ca = server.dir.path().join("ca.pem");
    std::fs::write(&ca, &server.cert_pem).unwrap();
    let mut c = SClient::start(server.addr, &ca, extra).await;
    c.login(name).await;
    c.wait_for_start(&format!("*** Welcome, {name}!")).await;
    c
}

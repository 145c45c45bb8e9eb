//! An IRC client for tests: lines with CR LF, registration by PASS or SASL PLAIN.
#![allow(dead_code)]

use base64::Engine as _;

use super::{PASSWORD, TestClient, TestServer};

/// A TLS connection to a test server's IRC port.
pub struct IrcClient {
    pub c: TestClient,
}

impl IrcClient {
    /// Connected, not registered.
    pub async fn connect(server: &TestServer) -> IrcClient {
        IrcClient {
            c: TestClient::connect(server.irc_addr, &server.connector).await,
        }
    }

    /// Registered as `name` with `PASS`, past the welcome up to `#lobby`'s names.
    pub async fn logged_in(server: &TestServer, name: &str) -> IrcClient {
        let mut irc = Self::connect(server).await;
        irc.send(&format!("PASS :{PASSWORD}")).await;
        irc.send(&format!("NICK {name}")).await;
        irc.send(&format!("USER {name} 0 * :{name}")).await;
        irc.line_starting(":tlschat 001 ").await;
        irc.line_starting(&format!(":tlschat 366 {name} #lobby "))
            .await;
        irc
    }

    /// Sends one message (CR LF added).
    pub async fn send(&mut self, line: &str) {
        self.c.send_raw(format!("{line}\r\n").as_bytes()).await;
    }

    /// The next line, without its CR LF (which it must have).
    pub async fn line(&mut self) -> String {
        let line = self.c.next_line().await;
        line.strip_suffix('\r')
            .unwrap_or_else(|| panic!("line without CR LF: {line:?}"))
            .to_owned()
    }

    /// Skips lines until one equals `expected`; returns the skipped ones.
    pub async fn wait_for(&mut self, expected: &str) -> Vec<String> {
        let mut skipped = Vec::new();
        loop {
            let line = self.line().await;
            if line == expected {
                return skipped;
            }
            skipped.push(line);
        }
    }

    /// Skips lines until one starts with `prefix`; returns it.
    pub async fn line_starting(&mut self, prefix: &str) -> String {
        loop {
            let line = self.line().await;
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// The lines up to the server's close.
    pub async fn until_closed(&mut self) -> Vec<String> {
        self.c
            .expect_closed()
            .await
            .into_iter()
            .map(|l| l.trim_end().to_owned())
            .collect()
    }
}

/// `AUTHENTICATE`'s payload for SASL PLAIN.
pub fn plain(authzid: &str, authcid: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{authzid}\0{authcid}\0{password}"))
}

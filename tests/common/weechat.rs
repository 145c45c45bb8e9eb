//! WeeChat (`weechat-headless`) as a test's IRC client: a private home directory, commands
//! through its FIFO, and what it shows read back from its log files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{STEP, TestServer};

/// `weechat-headless`, or `None` (with the reason printed) when the test should skip.
pub fn weechat() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("weechat-headless"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        super::missing_program(
            "weechat-headless is not installed (apt-get install weechat-headless)",
        );
    }
    found
}

/// A running WeeChat connected to a test server's IRC port with SASL PLAIN.
pub struct WeeChat {
    child: Child,
    home: Option<tempfile::TempDir>,
}

impl WeeChat {
    /// Starts WeeChat in a fresh home, trusting exactly the server's certificate, and
    /// connects as `name` with `password` (no spaces).
    pub fn connect(binary: &Path, server: &TestServer, name: &str, password: &str) -> WeeChat {
        let home = tempfile::tempdir().unwrap();
        Self::connect_in(binary, server, (name, password), home)
    }

    /// Like [`WeeChat::connect`], in an existing home (a second start of the same client).
    pub fn connect_in(
        binary: &Path,
        server: &TestServer,
        (name, password): (&str, &str),
        home: tempfile::TempDir,
    ) -> WeeChat {
        let fingerprint = tlschat::tls::fingerprint(&server.cert_der)
            .replace(':', "")
            .to_ascii_lowercase();
        let fifo = home.path().join("fifo");
        let port = server.irc_addr.port();
        let commands = [
            "/set logger.file.flush_delay 0".to_owned(),
            format!("/set fifo.file.path {}", fifo.display()),
            format!(
                "/server add tlschat 127.0.0.1/{port} -ssl -ssl_fingerprint={fingerprint} \
                 -sasl_mechanism=plain -sasl_username={name} -sasl_password={password} \
                 -nicks={name} -anti_flood_prio_high=0 -anti_flood_prio_low=0"
            ),
            "/connect tlschat".to_owned(),
        ];
        let child = Command::new(binary)
            .arg("--dir")
            .arg(home.path())
            .arg("-r")
            .arg(commands.join(";"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        WeeChat {
            child,
            home: Some(home),
        }
    }

    /// Sends `text` (a message, or a `/command`) in the buffer named `buffer`
    /// (`irc.tlschat.#lobby`), through WeeChat's FIFO once it exists.
    pub async fn send(&self, buffer: &str, text: &str) {
        let fifo = self.home().join("fifo");
        let deadline = tokio::time::Instant::now() + STEP;
        while !fifo.exists() {
            assert!(tokio::time::Instant::now() < deadline, "no WeeChat FIFO");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let line = format!("{buffer} *{text}\n");
        tokio::task::spawn_blocking(move || std::fs::write(fifo, line))
            .await
            .unwrap()
            .unwrap();
    }

    /// Waits until the log of `buffer` (`irc.tlschat.#lobby`) has a line containing `needle`;
    /// returns the log.
    pub async fn wait_for_log(&self, buffer: &str, needle: &str) -> String {
        let path = self
            .home()
            .join("logs")
            .join(format!("{buffer}.weechatlog"));
        super::wait_for_log_line(&path, needle, &format!("WeeChat's {buffer}")).await
    }

    fn home(&self) -> &Path {
        self.home.as_ref().unwrap().path()
    }

    /// Quits WeeChat and keeps its home for a later start.
    pub fn quit(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.home.take().unwrap()
    }
}

impl Drop for WeeChat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! End to end with the real `openssl s_client`: two users log in and see each other's lines.

mod common;

use std::process::Stdio;

use common::{Opts, PASSWORD, STEP, spawn_server};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

struct SClient {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl SClient {
    async fn start(addr: std::net::SocketAddr, ca: &std::path::Path) -> SClient {
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-crlf", "-verify_return_error"])
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

    async fn send(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn wait_for(&mut self, expected: &str) {
        loop {
            let line = tokio::time::timeout(STEP, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {expected:?}"))
                .unwrap()
                .unwrap_or_else(|| panic!("s_client ended before {expected:?}"));
            if line == expected {
                return;
            }
        }
    }

    async fn login(&mut self, name: &str) {
        self.wait_for("Username:").await;
        self.send(name).await;
        self.wait_for("Password:").await;
        self.send(PASSWORD).await;
    }
}

#[tokio::test]
async fn two_users_chat_through_openssl_s_client() {
    let server = spawn_server(Opts::default()).await;
    let ca = server.dir.path().join("ca.pem");
    std::fs::write(&ca, &server.cert_pem).unwrap();

    let mut alice = SClient::start(server.addr, &ca).await;
    alice.login("alice").await;
    alice.wait_for("*** Welcome, alice! 1 online: alice").await;
    let mut bob = SClient::start(server.addr, &ca).await;
    bob.login("bob").await;
    bob.wait_for("*** Welcome, bob! 2 online: alice, bob").await;
    alice.wait_for("*** bob joined").await;
    alice.send("hello bob").await;
    bob.wait_for("<alice> hello bob").await;
    bob.send("hi alice").await;
    alice.wait_for("<bob> hi alice").await;
    bob.send("/quit").await;
    bob.wait_for("*** Bye").await;
    alice.wait_for("*** bob left").await;
}

//! `tlschat connect` (the real binary) with piped standard streams, for tests that drive it.

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::STEP;

/// A running `tlschat connect` with piped standard streams.
pub struct Connect {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its standard output, line by line.
    pub stdout: Lines<BufReader<ChildStdout>>,
}

impl Connect {
    /// Starts `connect` to `addr` with `args`, in `dir` (its known_hosts lives there).
    pub fn start(dir: &Path, addr: std::net::SocketAddr, args: &[&str]) -> Connect {
        let mut cmd: tokio::process::Command = super::bin::tlschat(dir).into();
        let mut child = cmd
            .env("XDG_CONFIG_HOME", dir)
            .arg("connect")
            .arg(format!("localhost:{}", addr.port()))
            .arg("--known-hosts")
            .arg(dir.join("known_hosts"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Connect {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().unwrap()).lines(),
            child,
        }
    }

    pub async fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Skips output lines until one equals `expected`.
    pub async fn wait_for(&mut self, expected: &str) {
        loop {
            let line = tokio::time::timeout(STEP, self.stdout.next_line())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {expected:?}"))
                .unwrap()
                .unwrap_or_else(|| panic!("connect ended before {expected:?}"));
            if line == expected {
                return;
            }
        }
    }

    /// Appends output lines to `shown` up to the first that ends with `suffix`, each within
    /// `limit`.
    pub async fn read_until_ending(
        &mut self,
        suffix: &str,
        shown: &mut Vec<String>,
        limit: std::time::Duration,
    ) {
        loop {
            let line = tokio::time::timeout(limit, self.stdout.next_line())
                .await
                .unwrap_or_else(|_| panic!("timed out before {suffix:?}"))
                .unwrap()
                .unwrap_or_else(|| panic!("connect ended before {suffix:?}"));
            let done = line.ends_with(suffix);
            shown.push(line);
            if done {
                return;
            }
        }
    }

    /// Closes standard input and waits for the exit; returns (code, stdout rest, stderr).
    pub async fn finish(mut self) -> (Option<i32>, String) {
        drop(self.stdin.take());
        let out = tokio::time::timeout(STEP, self.child.wait_with_output())
            .await
            .expect("connect did not exit")
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// The numbers of bob's `n…` lines in `lines` as shown (live, or stamped in a catch-up block).
pub fn bobs_numbers(lines: &[String]) -> Vec<u32> {
    lines
        .iter()
        .filter_map(|l| l.rsplit_once("<bob> n").and_then(|(_, n)| n.parse().ok()))
        .collect()
}

//! A private Redis server for one test: a free loopback port and a password, no persistence unless
//! asked for, in a temporary directory, stopped when dropped; never the system's service. Missing
//! `redis-server` skips the test (prints why), unless `TLSCHAT_REQUIRE_ALL=1`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The test server's password: tests check it never shows.
pub const REDIS_PASSWORD: &str = "rd-s3cret-Kp2";

pub struct Redis {
    child: Child,
    /// `redis://:PASSWORD@127.0.0.1:PORT/0`.
    pub url: String,
    port: u16,
    /// Append-only file on (`appendfsync always`): data survives a restart.
    persistent: bool,
    /// With TLS: `rediss://:PASSWORD@127.0.0.1:PORT/0` (beside the plain port) and the
    /// self-signed certificate (PEM) its certificate is.
    pub tls: Option<(String, std::path::PathBuf)>,
    /// While stopped: holds the port (see [`Redis::stop`]).
    placeholder: Option<super::PortHold>,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts a private server, or `None` (after saying why) when redis-server is missing.
    pub fn start() -> Option<Redis> {
        Self::start_with(false)
    }

    /// Like [`Redis::start`], also listening with TLS (a self-signed certificate for
    /// 127.0.0.1, in [`Redis::tls`]).
    pub fn start_tls() -> Option<Redis> {
        let mut server = Self::start_with(false)?;
        server.stop();
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let (crt, key) = (
            server.dir.path().join("redis.crt"),
            server.dir.path().join("redis.key"),
        );
        std::fs::write(&crt, cert.cert.pem()).unwrap();
        std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
        let tls_port = super::free_port();
        server.placeholder = None;
        server.child = spawn_with(server.port, false, server.dir.path(), |cmd| {
            cmd.args(["--tls-port", &tls_port.to_string()])
                .arg("--tls-cert-file")
                .arg(&crt)
                .arg("--tls-key-file")
                .arg(&key)
                .args(["--tls-auth-clients", "no"]);
        });
        server.wait_ready(server.port);
        server.tls = Some((
            format!("rediss://:{REDIS_PASSWORD}@127.0.0.1:{tls_port}/0"),
            crt,
        ));
        Some(server)
    }

    /// Like [`Redis::start`], with the append-only file on, so that a restart keeps the data.
    pub fn start_persistent() -> Option<Redis> {
        Self::start_with(true)
    }

    fn start_with(persistent: bool) -> Option<Redis> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            super::missing_program("redis-server is not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let child = spawn(port, persistent, dir.path());
        let server = Redis {
            child,
            url: format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"),
            port,
            persistent,
            tls: None,
            placeholder: None,
            dir,
        };
        server.wait_ready(port);
        Some(server)
    }

    /// Stops the server (SIGKILL: as a crash); its port stays taken until [`Redis::restart`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.placeholder = super::PortHold::hold(self.port);
    }

    /// Starts it again on the same port and directory (with its data if persistent).
    pub fn restart(&mut self) {
        self.placeholder = None;
        self.child = spawn(self.port, self.persistent, self.dir.path());
        self.wait_ready(self.port);
    }

    /// Waits until the server answers an authenticated PING.
    fn wait_ready(&self, port: u16) {
        use std::io::{Read, Write};
        let deadline = Instant::now() + Duration::from_secs(20);
        let ready = || {
            let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                return false;
            };
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
            let auth = format!("AUTH {REDIS_PASSWORD}\r\nPING\r\n");
            if tcp.write_all(auth.as_bytes()).is_err() {
                return false;
            }
            let mut answer = [0u8; 12];
            tcp.read_exact(&mut answer).is_ok() && &answer == b"+OK\r\n+PONG\r\n"
        };
        while !ready() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Makes Redis answer nobody for `seconds` (`DEBUG SLEEP`), as a stalled disk or an
    /// overloaded server does. Returns once it is stalled (a `PING` gets no reply within
    /// 100 ms); the handle ends when it answers again.
    pub async fn stall(&self, seconds: f64) -> tokio::task::JoinHandle<()> {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        let patient = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        let mut sleeper = client
            .get_multiplexed_async_connection_with_config(&patient)
            .await
            .unwrap();
        let mut probe = client.get_multiplexed_async_connection().await.unwrap();
        let handle = tokio::spawn(async move {
            redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg(seconds)
                .query_async::<()>(&mut sleeper)
                .await
                .unwrap();
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ping = redis::cmd("PING");
            let ping = ping.query_async::<String>(&mut probe);
            if tokio::time::timeout(Duration::from_millis(100), ping)
                .await
                .is_err()
            {
                return handle;
            }
            assert!(Instant::now() < deadline, "Redis did not stall");
        }
    }

    /// Runs one command (for a test's own checks or faults, such as FLUSHALL).
    pub async fn command(&self, args: &[&str]) -> redis::Value {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut conn).await.unwrap()
    }
}

fn spawn(port: u16, persistent: bool, dir: &std::path::Path) -> Child {
    spawn_with(port, persistent, dir, |_| {})
}

fn spawn_with(
    port: u16,
    persistent: bool,
    dir: &std::path::Path,
    more: impl FnOnce(&mut Command),
) -> Child {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", ""])
        .args(["--requirepass", REDIS_PASSWORD])
        // DEBUG SLEEP, for a test's stall (from this machine only).
        .args(["--enable-debug-command", "local"])
        .arg("--dir")
        .arg(dir);
    if persistent {
        cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
    } else {
        cmd.args(["--appendonly", "no"]);
    }
    more(&mut cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting redis-server")
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

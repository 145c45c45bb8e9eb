//! A private PostgreSQL server for one test: a fresh cluster in a temporary directory,
//! listening on a free loopback port with a password, stopped and removed when dropped; never
//! the system's service. Missing PostgreSQL skips the test (prints why), unless
//! `TLSCHAT_REQUIRE_ALL=1`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The password of the test server's `tlschat` role: tests check it never shows.
pub const PG_PASSWORD: &str = "pg-s3cret-Xq7";

pub struct Postgres {
    /// `None` while stopped (see [`Postgres::stop`]).
    child: Option<Child>,
    /// `postgres://tlschat:PASSWORD@127.0.0.1:PORT/postgres`.
    pub url: String,
    bin: PathBuf,
    port: u16,
    /// While stopped: holds the port (see [`super::PortHold`]).
    held: Option<super::PortHold>,
    dir: tempfile::TempDir,
}

/// Where `initdb` and `postgres` are: on PATH, or Debian's versioned directory.
fn bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
    });
    on_path.or_else(|| {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|d| d.join("initdb").is_file())
            .collect();
        found.sort();
        found.pop()
    })
}

/// A command run as `nobody` when this process is root (PostgreSQL refuses to run as root).
fn as_server_user(program: &Path) -> Command {
    // `id -u` prints 0 for root.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

impl Postgres {
    /// Starts a private server, or `None` (after saying why) when PostgreSQL is missing.
    pub fn start() -> Option<Postgres> {
        let Some(bin) = bin_dir() else {
            super::missing_program("PostgreSQL (initdb, postgres) is not installed");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PG_PASSWORD).unwrap();
        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "tlschat",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("running initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = super::free_port();
        let mut server = Postgres {
            child: None,
            url: format!("postgres://tlschat:{PG_PASSWORD}@127.0.0.1:{port}/postgres"),
            bin,
            port,
            held: None,
            dir,
        };
        server.run();
        Some(server)
    }

    /// Starts the server on its data directory and port, and waits until it is ready.
    fn run(&mut self) {
        let child = as_server_user(&self.bin.join("postgres"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            // Commits reach the OS before they are answered (fsync stays off): stopping the
            // server as a crash would then loses nothing the OS kept, as on a real machine.
            .args(["-c", "fsync=off"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting postgres");
        self.child = Some(child);
        self.wait_ready(self.port);
    }

    /// Stops the server (as a crash would), keeping its data for [`Postgres::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.held = super::PortHold::hold(self.port);
        }
    }

    /// Starts the stopped server again on the same data and port.
    pub fn restart(&mut self) {
        self.stop();
        self.held = None;
        // The killed server's lock file names a dead process; PostgreSQL checks that itself.
        self.run();
    }

    /// Waits until the server accepts connections (its port answers and startup is over).
    fn wait_ready(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let log_ready = || {
            // pg_isready would need the client package; a TCP connect plus a startup
            // message answered without "starting up" is the same check.
            use std::io::{Read, Write};
            let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                return false;
            };
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
            // StartupMessage: length, protocol 3.0, user tlschat, database postgres.
            let params = b"user\0tlschat\0database\0postgres\0\0";
            let len = (8 + params.len()) as u32;
            let mut msg = len.to_be_bytes().to_vec();
            msg.extend_from_slice(&196_608u32.to_be_bytes());
            msg.extend_from_slice(params);
            if tcp.write_all(&msg).is_err() {
                return false;
            }
            let mut first = [0u8; 1];
            // 'R': an authentication request, so the server is up; 'E': an error, such as
            // "the database system is starting up".
            tcp.read_exact(&mut first).is_ok() && first[0] == b'R'
        };
        while !log_ready() {
            assert!(
                Instant::now() < deadline,
                "postgres did not start within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

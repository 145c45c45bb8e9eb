//! Helpers that drive the real `tlschat` binary.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tlschat");

/// The binary with a clean environment of TLSCHAT_* variables, run in `dir`.
pub fn tlschat(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("TLSCHAT_") {
            cmd.env_remove(k);
        }
    }
    // Cheap hashing keeps these tests quick; the default parameters are tested in auth.rs.
    cmd.env("TLSCHAT_ARGON2_MEMORY_KIB", "1024");
    cmd.env("TLSCHAT_ARGON2_ITERATIONS", "1");
    cmd
}

pub fn run_with_stdin(mut cmd: Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let written = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    // A command that refuses its arguments may exit before it reads its input: its output
    // says what happened, the broken pipe does not.
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

/// A running `serve` and the lines it printed up to "listening on".
pub struct Serve {
    pub child: Child,
    pub printed: Vec<String>,
    pub addr: std::net::SocketAddr,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve` on 127.0.0.1:0 in `dir` and waits for its "listening on" line.
/// Its log goes to `dir/serve.log`.
pub fn serve(dir: &Path, args: &[&str]) -> Serve {
    serve_with_env(dir, args, &[])
}

/// Like [`serve`], with extra environment variables.
pub fn serve_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Serve {
    serve_on(dir, "users.db", args, env)
}

/// Like [`serve_with_env`], on the database `db` (a file in `dir`, or a URL).
pub fn serve_on(dir: &Path, db: &str, args: &[&str], env: &[(&str, &str)]) -> Serve {
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let child = tlschat(dir)
        .args(["serve", "--listen", "127.0.0.1:0", "--db", db])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut s = Serve {
        child,
        printed: Vec::new(),
        addr: "0.0.0.0:0".parse().unwrap(),
    };
    let mut reader = BufReader::new(s.child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
            panic!("serve exited early: {:?} {log}", s.printed);
        }
        let line = line.trim_end().to_owned();
        s.printed.push(line.clone());
        if let Some(addr) = listening_addr(&line) {
            s.addr = addr.parse().unwrap();
            // Keep draining stdout so the server never blocks on a full pipe.
            std::thread::spawn(move || for _ in reader.lines() {});
            return s;
        }
    }
}

/// The address of a "listening on ADDR" line, or of its JSON form.
fn listening_addr(line: &str) -> Option<String> {
    if let Some(addr) = line.strip_prefix("listening on ") {
        return Some(addr.to_owned());
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    (v["fields"]["message"] == "listening")
        .then(|| v["fields"]["addr"].as_str().map(str::to_owned))?
}

/// Adds users through the CLI (`user add --password-stdin`) into `dir/users.db`.
pub fn add_users(dir: &Path, names: &[&str], password: &str) {
    for name in names {
        let mut add = tlschat(dir);
        add.args(["user", "add", name, "--password-stdin", "--db", "users.db"]);
        succeeded(&run_with_stdin(add, &format!("{password}\n")));
    }
}

/// Asserts that a command succeeded (showing its stderr if not); returns its stdout.
pub fn succeeded(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A client configuration trusting the certificate `serve` generated in `dir/certs`.
pub fn connector_for_dir(dir: &Path) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let pem = std::fs::read(dir.join("certs/server.crt")).unwrap();
    super::connector_for(&CertificateDer::from_pem_slice(&pem).unwrap())
}

/// Binds the certificate in `file` to `user` with `tlschat user cert add` (and `extra`, e.g.
/// `--label L`) in `dir/users.db`; returns what it printed.
pub fn add_certificate(dir: &Path, user: &str, file: &Path, extra: &[&str]) -> String {
    let out = tlschat(dir)
        .args(["user", "cert", "add", user])
        .arg(file)
        .args(extra)
        .args(["--db", "users.db"])
        .output()
        .unwrap();
    succeeded(&out)
}

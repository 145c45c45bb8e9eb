//! The real binary: user administration, certificates, and `serve` start-up.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::bin::{BIN, run_with_stdin, serve, tlschat};

use rustls::pki_types::{CertificateDer, pem::PemObject};

const PW: &str = "s3cret-pass";

fn user(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut cmd = tlschat(dir);
    cmd.arg("user").args(args).args(["--db", "users.db"]);
    run_with_stdin(cmd, stdin)
}

fn add(dir: &Path, name: &str) -> Output {
    user(dir, &["add", name, "--password-stdin"], &format!("{PW}\n"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn add_list_passwd_del_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(add(d, "alice").status.success());
    assert!(add(d, "Bob").status.success());
    let list = user(d, &["list"], "");
    assert!(list.status.success(), "{}", stderr(&list));
    let lines: Vec<String> = stdout(&list).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("alice\t20"), "{lines:?}");
    assert!(lines[0].ends_with("Z\tenabled"), "{lines:?}");
    assert!(lines[1].starts_with("Bob\t20"), "{lines:?}");
    assert!(!stdout(&list).contains("argon2"));
    let passwd = user(
        d,
        &["passwd", "ALICE", "--password-stdin"],
        "another-pass\n",
    );
    assert!(passwd.status.success(), "{}", stderr(&passwd));
    let del = user(d, &["del", "bob"], "");
    assert!(del.status.success(), "{}", stderr(&del));
    assert_eq!(stdout(&user(d, &["list"], "")).lines().count(), 1);
}

#[test]
fn disable_and_enable_show_in_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(add(d, "alice").status.success());
    let out = user(d, &["disable", "ALICE"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&user(d, &["list"], ""))
            .trim_end()
            .ends_with("\tdisabled")
    );
    assert!(user(d, &["enable", "alice"], "").status.success());
    assert!(
        stdout(&user(d, &["list"], ""))
            .trim_end()
            .ends_with("\tenabled")
    );
    let missing = user(d, &["disable", "ghost"], "");
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("no such user: ghost"));
}

#[test]
fn duplicate_add_fails_regardless_of_case() {
    let dir = tempfile::tempdir().unwrap();
    assert!(add(dir.path(), "alice").status.success());
    let dup = add(dir.path(), "ALICE");
    assert_eq!(dup.status.code(), Some(1));
    assert!(stderr(&dup).contains("already exists"), "{}", stderr(&dup));
    assert!(!stderr(&dup).contains("panicked"));
}

#[test]
fn invalid_names_are_rejected_with_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        "_alice",
        "has space",
        "way-too-long-name-for-this-server-x",
        "émile",
    ] {
        let out = add(dir.path(), bad);
        assert_eq!(out.status.code(), Some(1), "{bad}");
        assert!(
            stderr(&out).contains("invalid username"),
            "{}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("starting with a letter or digit"));
    }
}

#[test]
fn short_password_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let out = user(dir.path(), &["add", "alice", "--password-stdin"], "short\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("at least 8 characters"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn min_password_chars_sets_the_shortest_password() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "add",
        "alice",
        "--password-stdin",
        "--min-password-chars",
        "12",
    ];
    let out = user(dir.path(), &args, "eleven char\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("at least 12 characters"),
        "{}",
        stderr(&out)
    );
    let args = [
        "add",
        "alice",
        "--password-stdin",
        "--min-password-chars",
        "5",
    ];
    let out = user(dir.path(), &args, "short\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn missing_users_are_reported_for_passwd_and_del() {
    let dir = tempfile::tempdir().unwrap();
    let out = user(dir.path(), &["del", "ghost"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no such user: ghost"),
        "{}",
        stderr(&out)
    );
    let out = user(
        dir.path(),
        &["passwd", "ghost", "--password-stdin"],
        "longenough\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no such user: ghost"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn password_prompt_needs_a_terminal_or_password_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let out = user(dir.path(), &["add", "alice"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--password-stdin"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn database_is_created_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    assert!(add(dir.path(), "alice").status.success());
    assert_eq!(mode(&dir.path().join("users.db")), 0o600);
}

#[test]
fn unwritable_database_location_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tlschat(dir.path());
    cmd.args(["user", "list", "--db", "/proc/no-such-dir/users.db"]);
    let out = run_with_stdin(cmd, "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("opening database /proc/no-such-dir/users.db"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn concurrent_adds_of_one_name_let_exactly_one_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let spawn = |name: &str| {
        let mut cmd = tlschat(dir.path());
        cmd.args(["user", "add", name, "--password-stdin", "--db", "users.db"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"s3cret-pass\n")
            .unwrap();
        child
    };
    let a = spawn("carol");
    let b = spawn("Carol");
    let results = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let ok = results.iter().filter(|o| o.status.success()).count();
    assert_eq!(
        ok,
        1,
        "{:?}",
        results.iter().map(stderr).collect::<Vec<_>>()
    );
    let failed = results.iter().find(|o| !o.status.success()).unwrap();
    assert!(
        stderr(failed).contains("already exists"),
        "{}",
        stderr(failed)
    );
}

#[test]
fn cert_generate_writes_a_private_key_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let gen_cert = |force: bool| {
        let mut cmd = tlschat(dir.path());
        cmd.args(["cert", "generate", "--out", "c", "--name", "chat.example"]);
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    let first = gen_cert(false);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stdout(&first).contains("SHA-256 fingerprint: "));
    assert_eq!(mode(&dir.path().join("c/server.key")), 0o600);
    let before = std::fs::read(dir.path().join("c/server.crt")).unwrap();
    let again = gen_cert(false);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        std::fs::read(dir.path().join("c/server.crt")).unwrap(),
        before
    );
    let forced = gen_cert(true);
    assert!(forced.status.success());
    assert_ne!(
        std::fs::read(dir.path().join("c/server.crt")).unwrap(),
        before
    );
}

#[test]
fn first_start_generates_the_default_certificate_and_prints_how_to_connect() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    assert_ne!(s.addr.port(), 0);
    assert_eq!(mode(&dir.path().join("certs/server.key")), 0o600);
    assert!(dir.path().join("certs/server.crt").exists());
    let text = s.printed.join("\n");
    assert!(text.contains("certificate SHA-256 fingerprint: "), "{text}");
    let cert = std::fs::read(dir.path().join("certs/server.crt")).unwrap();
    let der = CertificateDer::from_pem_slice(&cert).unwrap();
    assert!(text.contains(&tlschat::tls::fingerprint(&der)));
    assert_eq!(mode(&dir.path().join("users.db")), 0o600);
}

#[tokio::test]
async fn serve_completes_a_tls13_handshake_with_a_client_trusting_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let cert = std::fs::read(dir.path().join("certs/server.crt")).unwrap();
    let der = CertificateDer::from_pem_slice(&cert).unwrap();
    let mut client = common::TestClient::connect(s.addr, &common::connector_for(&der)).await;
    client.expect_greeting().await;
    assert_eq!(
        client.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

#[test]
fn serve_completes_a_handshake_with_openssl_s_client() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &s.addr.to_string(),
            "-tls1_3",
            "-brief",
        ])
        .arg("-CAfile")
        .arg(dir.path().join("certs/server.crt"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl must be installed");
    // Keep stdin open until the prompt arrives, so s_client does not hang up first.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    let deadline = std::time::Instant::now() + common::STEP;
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l == "Username:") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        seen.push(
            rx.recv_timeout(left)
                .expect("no Username: prompt from s_client"),
        );
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let info = stderr(&out);
    assert!(info.contains("Protocol version: TLSv1.3"), "{info}");
    assert!(info.contains("Verification: OK"), "{info}");
}

fn serve_fails(dir: &Path, args: &[&str]) -> String {
    let out = tlschat(dir)
        .args(["serve", "--db", "users.db"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn configured_certificate_that_does_not_exist_is_an_error_and_nothing_is_generated() {
    let dir = tempfile::tempdir().unwrap();
    let err = serve_fails(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--cert",
            "mine.crt",
            "--key",
            "mine.key",
        ],
    );
    assert!(err.contains("reading certificate mine.crt"), "{err}");
    assert!(!dir.path().join("mine.crt").exists());
    assert!(!dir.path().join("certs").exists());
}

#[test]
fn mismatched_certificate_and_key_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for out in ["a", "b"] {
        let o = tlschat(dir.path())
            .args(["cert", "generate", "--out", out])
            .output()
            .unwrap();
        assert!(o.status.success());
    }
    let err = serve_fails(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--cert",
            "a/server.crt",
            "--key",
            "b/server.key",
        ],
    );
    assert!(err.contains("do not match"), "{err}");
}

#[test]
fn port_in_use_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = serve_fails(dir.path(), &["--listen", &addr]);
    assert!(err.contains(&format!("binding {addr}")), "{err}");
    assert!(err.to_lowercase().contains("in use"), "{err}");
}

#[test]
fn invalid_argon2_parameters_fail_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let err = serve_fails(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--argon2-memory-kib", "1"],
    );
    assert!(err.contains("invalid setting argon2_memory_kib"), "{err}");
}

#[test]
fn flag_beats_env_and_env_beats_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), "db = \"from-file.db\"\n").unwrap();
    let list = |env: Option<&str>, flag: Option<&str>| {
        let mut cmd = tlschat(dir.path());
        cmd.args(["user", "list", "--config", "c.toml"]);
        if let Some(e) = env {
            cmd.env("TLSCHAT_DB", e);
        }
        if let Some(f) = flag {
            cmd.args(["--db", f]);
        }
        assert!(cmd.output().unwrap().status.success());
    };
    list(None, None);
    assert!(dir.path().join("from-file.db").exists());
    list(Some("from-env.db"), None);
    assert!(dir.path().join("from-env.db").exists());
    list(Some("from-env2.db"), Some("from-flag.db"));
    assert!(dir.path().join("from-flag.db").exists());
    assert!(!dir.path().join("from-env2.db").exists());
}

#[test]
fn help_mentions_every_subcommand() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let text = stdout(&out);
    for word in ["serve", "cert", "user"] {
        assert!(text.contains(word), "{text}");
    }
    let out = Command::new(BIN).args(["user", "--help"]).output().unwrap();
    for word in ["add", "passwd", "del", "list"] {
        assert!(stdout(&out).contains(word));
    }
}

#[tokio::test]
async fn json_logs_parse_and_never_contain_the_password() {
    use common::bin::serve_with_env;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(add(d, "alice").status.success());
    let s = serve_with_env(d, &[], &[("TLSCHAT_LOG_FORMAT", "json")]);
    let connector = common::bin::connector_for_dir(d);
    let mut c = common::TestClient::connect(s.addr, &connector).await;
    c.expect_greeting().await;
    c.send("alice").await;
    c.expect_line("Password:").await;
    c.send("wrong-guess-123").await;
    c.expect_line("! Login failed").await;
    c.expect_line("Username:").await;
    c.send("alice").await;
    c.expect_line("Password:").await;
    c.send(PW).await;
    c.expect_line("*** Welcome, alice! 1 online: alice").await;
    c.send("/quit").await;
    c.expect_line("*** Bye").await;
    drop(s);
    let log = std::fs::read_to_string(d.join("serve.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.iter().any(|l| l.contains("login failed")), "{log}");
    assert!(lines.iter().any(|l| l.contains("login ok")), "{log}");
    for line in &lines {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "not JSON: {line}"
        );
        assert!(
            !line.contains(PW) && !line.contains("wrong-guess-123"),
            "{line}"
        );
        assert!(!line.contains("$argon2"), "{line}");
    }
}

#[test]
fn doctor_passes_a_good_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(
        tlschat(d)
            .args(["cert", "generate"])
            .output()
            .unwrap()
            .status
            .success()
    );
    assert!(add(d, "alice").status.success());
    let out = tlschat(d)
        .args(["doctor", "--db", "users.db", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let report = stdout(&out);
    assert!(out.status.success(), "{report}{}", stderr(&out));
    for what in [
        "certificate:",
        "certificate expiry:",
        "certificate names:",
        "key file mode:",
        "database integrity:",
        "database migrations:",
        "database pages: 32 KiB",
        "argon2:",
        "listen address:",
    ] {
        let line = report
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("{what} missing: {report}"));
        assert!(line.starts_with("ok "), "{line}");
    }
    assert!(report.contains("one hash took"), "{report}");
}

#[test]
fn doctor_fails_a_broken_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for out in ["a", "b"] {
        assert!(
            tlschat(d)
                .args(["cert", "generate", "--out", out])
                .output()
                .unwrap()
                .status
                .success()
        );
    }
    std::fs::set_permissions(
        d.join("b/server.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = tlschat(d)
        .args(["doctor", "--db", "users.db", "--listen", &addr])
        .args(["--cert", "a/server.crt", "--key", "b/server.key"])
        .output()
        .unwrap();
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("fail certificate:") && l.contains("do not match")),
        "{report}"
    );
    assert!(
        report.lines().any(|l| l.starts_with("warn key file mode:")),
        "{report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("fail listen address:")),
        "{report}"
    );
    assert!(stderr(&out).contains("check(s) failed"));
    assert!(
        !d.join("users.db").exists(),
        "doctor must not create the database"
    );
}

/// Every line must be a JSON object with a level and a message.
fn assert_all_json(stream: &str, text: &str) {
    assert!(!text.trim().is_empty(), "nothing on {stream}");
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{stream} line is not JSON ({e}): {line:?}"));
        assert!(v.is_object(), "{stream}: {line}");
        assert!(v["level"].is_string(), "{stream}: {line}");
        assert!(v["fields"]["message"].is_string(), "{stream}: {line}");
    }
}

#[tokio::test]
async fn json_log_format_makes_every_line_on_both_streams_json() {
    let dir = tempfile::tempdir().unwrap();
    common::bin::add_users(dir.path(), &["alice"], common::PASSWORD);
    let mut child = tlschat(dir.path())
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .args(["--db", "users.db"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    let addr = loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "serve exited: {printed}"
        );
        printed.push_str(&line);
        let v: serde_json::Value = serde_json::from_str(&line).expect(&line);
        if v["fields"]["message"] == "listening" {
            break v["fields"]["addr"]
                .as_str()
                .unwrap()
                .parse::<std::net::SocketAddr>()
                .unwrap();
        }
    };
    let connector = common::bin::connector_for_dir(dir.path());
    let mut c = common::TestClient::connect(addr, &connector).await;
    c.expect_greeting().await;
    c.send("not a valid name!").await;
    c.expect_line("Password:").await;
    c.send("whatever").await;
    c.expect_line("! Login failed").await;
    c.expect_line("Username:").await;
    c.login_after_prompt("alice", common::PASSWORD).await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    printed.push_str(&rest);
    let mut errors = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut errors).unwrap();
    assert_all_json("stdout", &printed);
    assert_all_json("stderr", &errors);
    for fact in [
        "certificate loaded",
        "admin socket",
        "listening",
        "connect with",
    ] {
        assert!(
            printed.contains(&format!("\"message\":\"{fact}\"")),
            "{fact}: {printed}"
        );
    }
    assert!(errors.contains("login ok"), "{errors}");
    assert!(errors.contains("shutdown complete"), "{errors}");
    // The invalid name typed at the prompt is logged by its length only.
    assert!(!errors.contains("not a valid name"), "{errors}");
    assert!(errors.contains("username_len"), "{errors}");
}

#[test]
fn json_log_format_makes_errors_and_usage_errors_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = tlschat(dir.path())
        .args([
            "--log-format",
            "json",
            "user",
            "del",
            "nobody",
            "--db",
            "users.db",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_all_json("stderr", &stderr(&out));
    assert!(stderr(&out).contains("no such user"), "{}", stderr(&out));
    let usage = tlschat(dir.path())
        .args(["--log-format=json", "user", "frobnicate"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    assert_all_json("stderr", &stderr(&usage));
    common::bin::add_users(dir.path(), &["alice"], common::PASSWORD);
    let listed = tlschat(dir.path())
        .env("TLSCHAT_LOG_FORMAT", "json")
        .args(["user", "list", "--db", "users.db"])
        .output()
        .unwrap();
    assert!(listed.status.success());
    assert_all_json("stdout", &stdout(&listed));
    assert!(
        stdout(&listed).contains("\"user\":\"alice\""),
        "{}",
        stdout(&listed)
    );
}

#[test]
fn serve_warns_when_the_private_key_is_readable_by_others() {
    let dir = tempfile::tempdir().unwrap();
    let out = tlschat(dir.path())
        .args(["cert", "generate", "--out", "tls"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let key = dir.path().join("tls/server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _s = serve(
        dir.path(),
        &["--cert", "tls/server.crt", "--key", "tls/server.key"],
    );
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(
        log.contains("private key file is readable by group or others"),
        "{log}"
    );
}

#[test]
fn generated_certificates_say_when_they_expire_and_take_days() {
    let dir = tempfile::tempdir().unwrap();
    let out = tlschat(dir.path())
        .args(["cert", "generate", "--out", "tls", "--days", "30"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("valid until: 20"), "{}", stdout(&out));
    let too_long = tlschat(dir.path())
        .args(["cert", "generate", "--out", "t2", "--days", "5000"])
        .output()
        .unwrap();
    assert_eq!(too_long.status.code(), Some(2));
}

#[test]
fn out_of_range_settings_stop_serve_with_the_setting_named() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value, key) in [
        ("--login-timeout", "1e19", "login_timeout"),
        ("--rate-per-sec", "1e-20", "rate_per_sec"),
        (
            "--outbound-queue-bytes",
            "2000000000",
            "outbound_queue_bytes",
        ),
        ("--keepalive", "0", "keepalive"),
    ] {
        let err = serve_fails(dir.path(), &["--listen", "127.0.0.1:0", flag, value]);
        assert!(
            err.contains(&format!("invalid setting {key}")),
            "{flag}: {err}"
        );
        assert!(err.contains("out of range"), "{flag}: {err}");
    }
}

#[test]
fn the_benchmark_config_is_inside_every_bound() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/bench.toml");
    let file = tlschat::config::FileConfig::load(Some(&path)).unwrap();
    file.limits(&Default::default()).unwrap();
    file.hash_settings(&Default::default()).unwrap();
}

fn served_cert(dir: &Path) -> CertificateDer<'static> {
    let pem = std::fs::read(dir.join("certs/server.crt")).unwrap();
    CertificateDer::from_pem_slice(&pem).unwrap()
}

/// Whether a handshake offering what Chrome offers (`h2`, `http/1.1`) completes.
async fn browser_handshake_succeeds(s: &common::bin::Serve, dir: &Path) -> bool {
    let connector = common::web::connector_trusting(&served_cert(dir), &[b"h2", b"http/1.1"]);
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.is_ok()
}

#[tokio::test]
async fn serve_answers_browsers_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    assert!(browser_handshake_succeeds(&s, dir.path()).await);
}

#[tokio::test]
async fn serve_web_false_refuses_browser_handshakes() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &["--web", "false"]);
    assert!(!browser_handshake_succeeds(&s, dir.path()).await);
}

#[tokio::test]
async fn tlschat_web_false_in_the_environment_refuses_browser_handshakes() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::bin::serve_with_env(dir.path(), &[], &[("TLSCHAT_WEB", "false")]);
    assert!(!browser_handshake_succeeds(&s, dir.path()).await);
}

#[tokio::test]
async fn web_origins_from_the_config_file_may_open_a_websocket() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tlschat.toml"),
        "web_origins = [\"https://chat.example.org\"]\n",
    )
    .unwrap();
    let s = serve(dir.path(), &["--config", "tlschat.toml"]);
    let cert = served_cert(dir.path());
    let listed = common::web::try_ws_to(s.addr, &cert, Some("https://chat.example.org")).await;
    assert!(listed.is_ok());
    let other = common::web::try_ws_to(s.addr, &cert, Some("https://other.example.org")).await;
    assert!(other.err().unwrap().to_string().contains("403"));
}

#[tokio::test]
async fn web_origins_from_the_environment_are_comma_separated() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::bin::serve_with_env(
        dir.path(),
        &[],
        &[(
            "TLSCHAT_WEB_ORIGINS",
            "https://a.example,https://b.example:8443",
        )],
    );
    let cert = served_cert(dir.path());
    for origin in ["https://a.example", "https://b.example:8443"] {
        let ws = common::web::try_ws_to(s.addr, &cert, Some(origin)).await;
        assert!(ws.is_ok(), "{origin}");
    }
}

#[test]
fn an_invalid_web_origin_stops_serve_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let err = serve_fails(dir.path(), &["--web-origin", "chat.example.org"]);
    assert!(
        err.contains("invalid web origin \"chat.example.org\": use https://host[:port]"),
        "{err}"
    );
}

/// `tlschat serve --help`.
fn serve_help() -> String {
    stdout(
        &Command::new(BIN)
            .args(["serve", "--help"])
            .output()
            .unwrap(),
    )
}

/// The rows of the README's configuration table: (flag, env, file key, default and range).
fn readme_settings() -> Vec<(String, String, String, String)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let first_code = |cell: &str| -> String { cell.split('`').nth(1).unwrap_or("").to_owned() };
    readme
        .lines()
        .filter(|l| l.starts_with("| `--"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").collect();
            (
                first_code(cells[0]),
                first_code(cells[1]),
                first_code(cells[2]),
                cells[3].trim().to_owned(),
            )
        })
        .collect()
}

/// `1,000` → 1000; `64 KiB` → 65536.
fn readme_number(text: &str) -> f64 {
    let text = text.trim().replace(',', "");
    let (number, unit) = text.split_once(' ').unwrap_or((&text, ""));
    let scale = match unit {
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => 1.0,
    };
    number.parse::<f64>().unwrap() * scale
}

#[test]
fn the_readme_configuration_table_matches_the_server() {
    let help = serve_help();
    let rows = readme_settings();
    let limits = readme_limits();
    assert!(rows.len() >= 20, "table not found: {rows:?}");
    for (flag, env, key, default) in &rows {
        let flag = flag.split(' ').next().unwrap();
        assert!(help.contains(flag), "{flag} is not a serve flag");
        assert!(
            help.contains(&format!("[env: {env}")),
            "{flag}: {env} is not its environment variable"
        );
        // A documented range is the code's range for that file key.
        if let Some((_, range)) = default.split_once('(')
            && let Some((low, rest)) = range.split_once(" – ")
        {
            let high = rest.split([';', ')']).next().unwrap();
            let name = key.rsplit(' ').next().unwrap();
            let (min, max) = tlschat::config::knobs()
                .find(|k| k.key == name)
                .and_then(|k| k.range)
                .unwrap_or_else(|| panic!("{name} has no range in the code"));
            assert_eq!(
                (readme_number(low), readme_number(high)),
                (min, max),
                "{name}: the README's range differs from the code's"
            );
        }
    }
    // Every serve flag with a value is in the table.
    for word in help.split_whitespace() {
        if let Some(flag) = word.strip_prefix("--")
            && !["help", "version"].contains(&flag)
            && flag.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        {
            let documented = rows
                .iter()
                .any(|(f, ..)| f.starts_with(&format!("--{flag}")))
                || limits.iter().any(|(key, ..)| key.replace('_', "-") == flag)
                || ["exempt-ip"].contains(&flag);
            assert!(documented, "--{flag} is not in the README's tables");
        }
    }
}

/// The rows of the README's limits table with a plain `[limits]` key: (key, range).
fn readme_limits() -> Vec<(String, String)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split("\n## Limits\n").nth(1).unwrap();
    section
        .lines()
        .skip_while(|l| !l.starts_with("|---"))
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").collect();
            let key = cells.last()?.trim();
            let key = key.strip_prefix('`')?.strip_suffix('`')?;
            (!key.contains(['`', ' ', '['])).then(|| (key.to_owned(), cells[2].trim().to_owned()))
        })
        .collect()
}

#[test]
fn the_readme_limits_table_matches_the_server() {
    let help = serve_help();
    let limits = readme_limits();
    assert!(limits.len() >= 20, "table not found: {limits:?}");
    for (key, range) in &limits {
        let flag = format!("--{}", key.replace('_', "-"));
        let env = format!("[env: TLSCHAT_{}", key.to_ascii_uppercase());
        assert!(help.contains(&flag), "{flag} is not a serve flag");
        assert!(help.contains(&env), "{flag}: not settable by {env}");
        let (min, max) = tlschat::config::knobs()
            .find(|k| k.key == key)
            .and_then(|k| k.range)
            .unwrap_or_else(|| panic!("{key} has no range in the code"));
        let (min, max) = (&min, &max);
        let (low, high) = range.split_once(" – ").unwrap();
        if !low.contains('`') {
            assert_eq!(readme_number(low), *min, "{key}: minimum");
        }
        if !high.contains('`') {
            assert_eq!(readme_number(high), *max, "{key}: maximum");
        }
    }
}

/// The README documents every declared knob under its own flag, variable and file key: in the
/// configuration table, or (for `[limits]` and `[argon2]` keys) in the limits table.
#[test]
fn every_knob_is_in_the_readme_as_declared() {
    let rows = readme_settings();
    let limits = readme_limits();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for knob in tlschat::config::knobs() {
        let key = match knob.table {
            Some(table) => format!("[{table}] {}", knob.key),
            None => knob.key.to_owned(),
        };
        let flag = format!("--{}", knob.flag);
        match rows
            .iter()
            .find(|(f, ..)| f.split(' ').next() == Some(&flag))
        {
            Some((_, env, file_key, _)) => {
                assert_eq!(env, knob.env, "{flag}: environment variable");
                assert_eq!(file_key, &key, "{flag}: file key");
            }
            None => {
                let in_limits = limits.iter().any(|(k, _)| k == knob.key)
                    || readme.contains(&format!("| `{key}` |"))
                    || readme.contains(&format!("`{flag} IP` (repeat) / `{}`", knob.env));
                assert!(in_limits, "{flag} ({key}) is in neither README table");
                if knob.table == Some("limits") && knob.flag == knob.key.replace('_', "-") {
                    assert_eq!(
                        knob.env,
                        format!("TLSCHAT_{}", knob.key.to_ascii_uppercase())
                    );
                }
            }
        }
    }
}

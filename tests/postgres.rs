//! `--db postgres://…`: accounts, certificates, rooms, history and read positions in a real
//! PostgreSQL server (a private one per test, see `common::pg`), through the CLI and over TLS;
//! its password never shown. Skips when PostgreSQL is missing (unless
//! `TLSCHAT_REQUIRE_ALL=1`).

mod common;

use common::bin::{run_with_stdin, serve_on, succeeded, tlschat};
use common::pg::{PG_PASSWORD, Postgres};
use common::{Opts, PASSWORD, spawn_server};

/// `tlschat ARGS --db URL` in `dir`, with `stdin`.
fn run(dir: &std::path::Path, url: &str, args: &[&str], stdin: &str) -> std::process::Output {
    let mut cmd = tlschat(dir);
    cmd.args(args).args(["--db", url]);
    run_with_stdin(cmd, stdin)
}

/// Adds alice (password [`PASSWORD`]) with `tlschat user add`.
fn add_alice(dir: &std::path::Path, url: &str) {
    succeeded(&run(
        dir,
        url,
        &["user", "add", "alice", "--password-stdin"],
        &format!("{PASSWORD}\n"),
    ));
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn user_commands_work_on_postgresql_and_names_stay_unique_in_any_case() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let add = |name: &str| {
        run(
            dir.path(),
            &pg.url,
            &["user", "add", name, "--password-stdin"],
            &format!("{PASSWORD}\n"),
        )
    };
    succeeded(&add("alice"));
    let again = add("ALICE");
    assert!(!again.status.success());
    assert!(text(&again).contains("already exists"), "{}", text(&again));
    succeeded(&add("Bob"));
    let list = succeeded(&run(dir.path(), &pg.url, &["user", "list"], ""));
    let names: Vec<&str> = list
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, ["alice", "Bob"], "{list}");
    succeeded(&run(dir.path(), &pg.url, &["user", "disable", "bob"], ""));
    succeeded(&run(dir.path(), &pg.url, &["user", "del", "BOB"], ""));
    let list = succeeded(&run(dir.path(), &pg.url, &["user", "list"], ""));
    assert!(!list.contains("Bob"), "{list}");
    assert!(!list.contains(PG_PASSWORD));
}

#[test]
fn a_password_reset_on_postgresql_removes_the_accounts_certificates() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    add_alice(dir.path(), &pg.url);
    let (cert, _) = common::localhost_cert();
    let file = dir.path().join("alice.crt");
    std::fs::write(&file, cert).unwrap();
    let file = file.to_str().unwrap();
    succeeded(&run(
        dir.path(),
        &pg.url,
        &["user", "cert", "add", "alice", file, "--label", "laptop"],
        "",
    ));
    let listed = succeeded(&run(
        dir.path(),
        &pg.url,
        &["user", "cert", "list", "alice"],
        "",
    ));
    assert!(listed.contains("laptop"), "{listed}");
    let reset = succeeded(&run(
        dir.path(),
        &pg.url,
        &["user", "passwd", "alice", "--password-stdin"],
        "another horse\n",
    ));
    assert!(reset.contains("removed 1 client certificate"), "{reset}");
    let listed = succeeded(&run(
        dir.path(),
        &pg.url,
        &["user", "cert", "list", "alice"],
        "",
    ));
    assert!(!listed.contains("laptop"), "{listed}");
}

#[tokio::test]
async fn a_server_on_postgresql_keeps_rooms_history_and_read_positions_across_a_restart() {
    let Some(pg) = Postgres::start() else { return };
    let opts = || Opts {
        db_url: Some(pg.url.clone()),
        ..Opts::default()
    };
    let server = spawn_server(opts()).await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.expect_line("*** bob joined").await;
    for c in [&mut alice, &mut bob] {
        c.send("/join #dev").await;
        c.wait_for_start("*** You joined #dev").await;
    }
    alice.expect_line("[#dev] *** bob joined").await;
    bob.send("seen").await;
    alice.expect_line("[#dev] <bob> seen").await;
    alice.send("/quit").await;
    alice.expect_line("*** Bye").await;
    bob.wait_for("*** alice left").await;
    bob.send("missed").await;
    bob.send("/who").await;
    bob.wait_for("*** 1 in #dev: bob").await;
    let server = server.restart(opts()).await;
    let mut alice = server.login("alice").await;
    alice
        .expect_line("*** You are in #dev; 1 here: alice")
        .await;
    alice.expect_line("*** You missed 1 message in #dev:").await;
    assert_eq!(common::block(&mut alice).await, ["<bob> missed"]);
    alice.send("/join #dev").await;
    alice.expect_line("*** Now talking in #dev").await;
    alice.send("/history").await;
    alice.expect_line("*** History of #dev: 2 messages").await;
    assert_eq!(
        common::block(&mut alice).await,
        ["<bob> seen", "<bob> missed"]
    );
}

#[tokio::test]
async fn serve_on_postgresql_puts_the_admin_socket_in_the_working_directory() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    add_alice(dir.path(), &pg.url);
    let serve = serve_on(dir.path(), &pg.url, &[], &[]);
    let connector = common::bin::connector_for_dir(dir.path());
    let mut alice = common::TestClient::connect(serve.addr, &connector).await;
    alice.login("alice", PASSWORD).await;
    assert!(dir.path().join("tlschat.sock").exists());
    let who = tlschat(dir.path())
        .args(["admin", "who", "--db", &pg.url])
        .output()
        .unwrap();
    let who = succeeded(&who);
    assert!(who.starts_with("alice\t"), "{who}");
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    let printed = serve.printed.join("\n");
    assert!(!log.contains(PG_PASSWORD) && !printed.contains(PG_PASSWORD));
}

#[test]
fn a_wrong_database_password_is_an_error_that_does_not_show_it() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let wrong = pg.url.replace(PG_PASSWORD, "not-the-Pw-9");
    let out = run(dir.path(), &wrong, &["user", "list"], "");
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("postgres://tlschat:***@127.0.0.1"), "{said}");
    assert!(!said.contains("not-the-Pw-9"), "{said}");
}

#[test]
fn doctor_reads_postgresql_without_migrating_it() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let before = run(dir.path(), &pg.url, &["doctor"], "");
    assert!(
        text(&before).contains("database migrations: 3 pending"),
        "{}",
        text(&before)
    );
    add_alice(dir.path(), &pg.url);
    let after = text(&run(dir.path(), &pg.url, &["doctor"], ""));
    assert!(
        after.contains("database migrations: all 3 applied; 1 users"),
        "{after}"
    );
    assert!(!after.contains(PG_PASSWORD), "{after}");
}

#[tokio::test]
async fn an_account_disabled_from_the_cli_is_closed_at_once_by_the_change_feed_not_by_polling() {
    let Some(pg) = Postgres::start() else { return };
    let server = spawn_server(Opts {
        db_url: Some(pg.url.clone()),
        limits: tlschat::config::Limits {
            // Polling would take an hour: only the notification can close it in time.
            account_check_interval: std::time::Duration::from_secs(3600),
            ..common::test_limits()
        },
        ..Opts::default()
    })
    .await;
    let mut alice = server.login("alice").await;
    let dir = tempfile::tempdir().unwrap();
    succeeded(&run(dir.path(), &pg.url, &["user", "disable", "alice"], ""));
    alice
        .expect_line("! Your account was changed by an administrator")
        .await;
}

#[tokio::test]
async fn a_login_while_postgresql_is_down_is_answered_busy_and_closed() {
    let Some(pg) = Postgres::start() else { return };
    let server = spawn_server(Opts {
        db_url: Some(pg.url.clone()),
        ..Opts::default()
    })
    .await;
    let mut pg = pg;
    pg.stop();
    let mut c = server.connect().await;
    c.expect_greeting().await;
    c.send("alice").await;
    c.expect_line("Password:").await;
    c.send(PASSWORD).await;
    c.expect_line("! Server busy, try again later").await;
    c.expect_closed().await;
}

#[tokio::test]
async fn logins_work_again_once_postgresql_is_back() {
    let Some(mut pg) = Postgres::start() else {
        return;
    };
    let server = spawn_server(Opts {
        db_url: Some(pg.url.clone()),
        ..Opts::default()
    })
    .await;
    pg.stop();
    pg.restart();
    // The pool's connections died with the server; new ones are made on demand. Bounded:
    // the issue allows 30 s, a healthy pool needs one attempt.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let mut c = server.connect().await;
        c.expect_greeting().await;
        c.send("alice").await;
        c.expect_line("Password:").await;
        c.send(PASSWORD).await;
        let answer = c.next_line().await;
        if answer.starts_with("*** Welcome, alice!") {
            break;
        }
        assert_eq!(answer, "! Server busy, try again later");
        assert!(
            tokio::time::Instant::now() < deadline,
            "no login within 30 s of PostgreSQL coming back"
        );
    }
}

#[tokio::test]
async fn a_read_position_of_a_new_history_epoch_replaces_the_older_one_instead_of_being_compared() {
    use tlschat::event::{HistoryEpoch, RoomName};
    use tlschat::store::{Db, HistoryBatch, Store};
    let Some(pg) = Postgres::start() else { return };
    let store = Store::open_db(&Db::Url(pg.url.clone())).await.unwrap();
    let alice = tlschat::username::Username::parse("alice").unwrap();
    store.add_user(&alice, "h").await.unwrap();
    let id = store.credentials(&alice).await.unwrap().unwrap().stamp.id;
    let dev = RoomName::parse("#dev").unwrap();
    let (e1, e2) = (HistoryEpoch::from("e1"), HistoryEpoch::from("e2"));
    let mut conn = store.history_connection().await.unwrap();
    let mut write = async |seq, epoch: &HistoryEpoch| {
        let batch = HistoryBatch {
            positions: vec![(id, dev.clone(), seq, epoch.clone())],
            ..HistoryBatch::default()
        };
        conn.write_history(&batch).await.unwrap();
    };
    write(40, &e1).await;
    write(30, &e1).await;
    let read = store.read_positions(id).await.unwrap();
    assert_eq!(
        read,
        [(dev.clone(), 40, e1.clone())],
        "within an epoch, never back"
    );
    write(3, &e2).await;
    let read = store.read_positions(id).await.unwrap();
    assert_eq!(
        read,
        [(dev.clone(), 3, e2.clone())],
        "a new epoch's numbering restarts"
    );
}

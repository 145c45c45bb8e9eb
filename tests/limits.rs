//! Hostile and broken clients: timeouts, caps, floods, slow readers, guessing, saturation.
//! Limits are shrunk per test so that nothing waits long.

mod common;

use std::time::{Duration, Instant};

use common::{Opts, PASSWORD, STEP, TestClient, TestServer, spawn_server, tcp_from, test_limits};
use tlschat::config::{HashSettings, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn opts(limits: Limits) -> Opts {
    Opts {
        limits,
        ..Opts::default()
    }
}

/// Reads a raw socket to EOF (or reset) within the step timeout.
async fn read_until_closed(tcp: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(STEP, tcp.read_to_end(&mut out))
        .await
        .expect("server did not close the connection");
    out
}

/// Connects, and reports whether the server admitted the connection (greeting) or refused it.
async fn admitted(server: &TestServer) -> bool {
    try_admit(server).await.is_some()
}

/// A connection past the greeting, or `None` if the server refused it at the caps.
async fn try_admit(server: &TestServer) -> Option<TestClient> {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    // A refusal is written before any TLS; peek for it without starting a handshake.
    let mut first = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(300), tcp.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == b'!' => {
            let text = String::from_utf8(read_until_closed(&mut tcp).await).unwrap();
            assert_eq!(text, "! Too many connections\n");
            None
        }
        Ok(Ok(0)) => None,
        _ => {
            let mut c = TestClient::over(tcp, &server.connector).await;
            c.expect_greeting().await;
            Some(c)
        }
    }
}

/// Waits until the server admits a connection again (it notices closes on its own
/// schedule); fails after [`STEP`].
async fn admit_when_free(server: &TestServer) -> TestClient {
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(c) = try_admit(server).await {
            return c;
        }
        assert!(Instant::now() < deadline, "slots were not returned");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn stalled_tls_handshake_is_closed_after_the_handshake_timeout() {
    let server = spawn_server(opts(Limits {
        handshake_timeout: Duration::from_millis(300),
        ..test_limits()
    }))
    .await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let started = Instant::now();
    assert!(read_until_closed(&mut tcp).await.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn login_timeout_sends_a_notice_and_closes() {
    let server = spawn_server(opts(Limits {
        login_timeout: Duration::from_millis(500),
        ..test_limits()
    }))
    .await;
    let mut c = server.connect().await;
    c.expect_greeting().await;
    c.expect_line("! Login timed out").await;
    c.expect_clean_close().await;
}

#[tokio::test]
async fn plaintext_client_gets_a_hint_line_and_is_closed() {
    let server = spawn_server(Opts::default()).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"NICK alice\r\n").await.unwrap();
    let text = String::from_utf8(read_until_closed(&mut tcp).await).unwrap();
    assert_eq!(
        text,
        format!(
            "This port speaks TLS. Connect with: openssl s_client -quiet -connect {}\r\n",
            server.addr
        )
    );
}

#[tokio::test]
async fn global_cap_refuses_the_connection_over_it() {
    let server = spawn_server(opts(Limits {
        max_connections: 2,
        ..test_limits()
    }))
    .await;
    let _a = server.connect().await;
    let _b = server.login("bob").await;
    assert!(!admitted(&server).await);
}

#[tokio::test]
async fn per_ip_prelogin_cap_refuses_and_frees_up_on_login() {
    let server = spawn_server(opts(Limits {
        max_prelogin_per_ip: 2,
        ..test_limits()
    }))
    .await;
    let mut a = server.connect().await;
    let _b = server.connect().await;
    assert!(!admitted(&server).await);
    a.login("alice", PASSWORD).await;
    assert!(admitted(&server).await);
}

#[tokio::test]
async fn global_prelogin_cap_refuses_idle_connections_while_members_still_log_in() {
    let server = spawn_server(opts(Limits {
        max_prelogin: 2,
        ..test_limits()
    }))
    .await;
    let mut bob = server.login("bob").await;
    let tcp = tcp_from(server.addr, "127.0.0.2", None).await;
    let mut idle = TestClient::over(tcp, &server.connector).await;
    idle.expect_greeting().await;
    let tcp = tcp_from(server.addr, "127.0.0.3", None).await;
    let mut alice = TestClient::over(tcp, &server.connector).await;
    alice.expect_greeting().await;
    // A third source is refused although it has no connection of its own.
    let mut refused = tcp_from(server.addr, "127.0.0.4", None).await;
    let text = String::from_utf8(read_until_closed(&mut refused).await).unwrap();
    assert_eq!(text, "! Too many connections\n");
    // A connection already admitted still logs in, and members chat on.
    alice.send("alice").await;
    alice.expect_line("Password:").await;
    alice.send(PASSWORD).await;
    assert!(alice.next_line().await.starts_with("*** Welcome, alice!"));
    bob.expect_line("*** alice joined").await;
    bob.send("still here").await;
    alice.expect_line("<bob> still here").await;
    // Logging in gave its pre-login slot back.
    assert!(admitted(&server).await);
}

#[tokio::test]
async fn per_ip_total_cap_counts_logged_in_connections() {
    let server = spawn_server(opts(Limits {
        max_connections_per_ip: 2,
        ..test_limits()
    }))
    .await;
    let _a = server.login("alice").await;
    let _b = server.login("bob").await;
    assert!(!admitted(&server).await);
    // Another source is not affected.
    let tcp = tcp_from(server.addr, "127.0.0.2", None).await;
    let mut c = TestClient::over(tcp, &server.connector).await;
    c.expect_greeting().await;
}

#[tokio::test]
async fn exempt_sources_bypass_the_per_ip_caps() {
    let server = spawn_server(opts(Limits {
        max_connections_per_ip: 1,
        max_prelogin_per_ip: 1,
        exempt_ips: vec!["127.0.0.1".parse().unwrap()],
        ..test_limits()
    }))
    .await;
    let _a = server.connect().await;
    assert!(admitted(&server).await);
    assert!(admitted(&server).await);
}

#[tokio::test]
async fn abrupt_resets_during_handshake_and_login_give_their_slots_back() {
    let server = spawn_server(opts(Limits {
        max_prelogin_per_ip: 2,
        ..test_limits()
    }))
    .await;
    for _ in 0..3 {
        // Reset mid-handshake.
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(&[0x16, 0x03, 0x01, 0x00]).await.unwrap();
        socket2::SockRef::from(&tcp)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(tcp);
        // Reset at the password prompt.
        let mut c = admit_when_free(&server).await;
        c.send("alice").await;
        c.expect_line("Password:").await;
        drop(c);
    }
    // The server notices each close on its own schedule; poll until two fit again.
    let deadline = Instant::now() + STEP;
    loop {
        let first = admit_when_free(&server).await;
        if admitted(&server).await {
            break;
        }
        assert!(Instant::now() < deadline, "slots were not returned");
        drop(first);
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn line_over_the_limit_without_newline_disconnects_the_sender_while_others_chat_on() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.expect_line("*** bob joined").await;
    let mut carol = server.login("carol").await;
    alice.expect_line("*** carol joined").await;
    bob.expect_line("*** carol joined").await;
    let chunk = vec![b'x'; 64 * 1024];
    let flood = tokio::spawn(async move {
        for _ in 0..160 {
            // 10 MiB in all; the server hangs up long before.
            if carol.try_send_raw(&chunk).await.is_err() {
                break;
            }
        }
    });
    alice.send("still chatting").await;
    bob.expect_line("<alice> still chatting").await;
    alice.wait_for("*** carol left (no newline)").await;
    let _ = flood.await;
}

#[tokio::test]
async fn sender_of_a_line_without_newline_gets_errors_then_is_closed() {
    let server = spawn_server(Opts::default()).await;
    let mut carol = server.login("carol").await;
    carol.send_raw(&vec![b'x'; 70 * 1024]).await;
    carol.expect_line("! Line too long (max 4096 bytes)").await;
    carol.expect_line("! Too much data without a newline").await;
    carol.expect_clean_close().await;
}

#[tokio::test]
async fn flood_is_delivered_at_the_configured_rate_without_loss_and_others_stay_fast() {
    const LINES: usize = 1000;
    const RATE: f64 = 500.0;
    const BURST: u32 = 10;
    let server = spawn_server(opts(Limits {
        rate_burst: BURST,
        rate_per_sec: RATE,
        ..test_limits()
    }))
    .await;
    let mut flooder = server.login("alice").await;
    let mut reader = server.login("bob").await;
    flooder.expect_line("*** bob joined").await;
    let mut other = server.login("carol").await;
    flooder.expect_line("*** carol joined").await;
    reader.expect_line("*** carol joined").await;

    let all: String = (0..LINES).map(|i| format!("flood {i}\n")).collect();
    let started = Instant::now();
    flooder.send_raw(all.as_bytes()).await;
    flooder
        .expect_line("! Slow down: at most 500 lines per second")
        .await;

    let mut seen = Vec::new();
    let mut carol_latency = None;
    let mut carol_sent_at = None;
    while seen.len() < LINES {
        let line = reader.next_line().await;
        if line == "<carol> quick question" {
            carol_latency = Some(carol_sent_at.unwrap_or(started).elapsed());
            continue;
        }
        seen.push(line);
        if seen.len() == LINES / 4 {
            carol_sent_at = Some(Instant::now());
            other.send("quick question").await;
        }
    }
    let elapsed = started.elapsed();
    let expected: Vec<String> = (0..LINES).map(|i| format!("<alice> flood {i}")).collect();
    assert_eq!(seen, expected, "lost or reordered lines");
    let minimum = Duration::from_secs_f64((LINES as f64 - f64::from(BURST)) / RATE);
    assert!(elapsed >= minimum.mul_f64(0.9), "{elapsed:?} < {minimum:?}");
    let latency = carol_latency.expect("carol's line did not arrive during the flood");
    assert!(
        latency < Duration::from_millis(100),
        "other member waited {latency:?}"
    );
    // Exactly one notice for the episode.
    flooder.send("/who").await;
    let before = flooder.wait_for("*** 3 online: alice, bob, carol").await;
    assert_eq!(before, vec!["<carol> quick question"]);
}

#[tokio::test]
async fn member_that_never_reads_is_evicted_and_the_others_get_every_line() {
    let server = spawn_server(opts(Limits {
        outbound_queue_bytes: 16 * 1024,
        ..test_limits()
    }))
    .await;
    let mut talker = server.login("alice").await;
    let mut reader = server.login("carol").await;
    talker.expect_line("*** carol joined").await;
    let tcp = tcp_from(server.addr, "127.0.0.1", Some(4096)).await;
    let mut sleeper = TestClient::over(tcp, &server.connector).await;
    sleeper.login("bob", PASSWORD).await;
    talker.expect_line("*** bob joined").await;
    reader.expect_line("*** bob joined").await;
    // bob reads nothing from here on.
    let payload = "z".repeat(1000);
    let mut sent = 0;
    let mut received = 0;
    loop {
        assert!(sent < 20_000, "bob was never evicted");
        talker.send(&format!("{sent} {payload}")).await;
        sent += 1;
        // Keep the reader in step so that only bob falls behind.
        while received < sent {
            let line = reader.next_line().await;
            if line == "*** bob left (send queue exceeded)" {
                let rest = sent - received;
                for _ in 0..rest {
                    let line = reader.next_line().await;
                    assert_eq!(line, format!("<alice> {received} {payload}"));
                    received += 1;
                }
                talker
                    .expect_line("*** bob left (send queue exceeded)")
                    .await;
                return;
            }
            assert_eq!(line, format!("<alice> {received} {payload}"));
            received += 1;
        }
    }
}

#[tokio::test]
async fn sixth_failure_for_a_name_is_delayed_and_not_checked_even_for_unknown_names() {
    let delay = Duration::from_millis(400);
    let server = spawn_server(opts(Limits {
        throttle_delay: delay,
        ..test_limits()
    }))
    .await;
    for name in ["alice", "ghost"] {
        // Five failures: three on one connection (which then closes), two on the next.
        let mut first = server.connect().await;
        first.expect_greeting().await;
        for i in 0..3 {
            fail_once(&mut first, name).await;
            if i < 2 {
                first.expect_line("Username:").await;
            }
        }
        first.expect_line("! Too many failed logins").await;
        let mut c = server.connect().await;
        c.expect_greeting().await;
        for _ in 0..2 {
            fail_once(&mut c, name).await;
            c.expect_line("Username:").await;
        }
        c.send(name).await;
        c.expect_line("Password:").await;
        let started = Instant::now();
        // The right password: a throttled attempt is not checked at all.
        c.send(PASSWORD).await;
        c.expect_line("! Login failed").await;
        assert!(
            started.elapsed() >= delay,
            "{name}: {:?}",
            started.elapsed()
        );
    }
}

async fn fail_once(c: &mut TestClient, name: &str) {
    c.send(name).await;
    c.expect_line("Password:").await;
    c.send("wrong guess").await;
    c.expect_line("! Login failed").await;
}

/// A client from `ip` that has seen the greeting.
async fn client_from(server: &TestServer, ip: &str) -> TestClient {
    let tcp = tcp_from(server.addr, ip, None).await;
    let mut c = TestClient::over(tcp, &server.connector).await;
    c.expect_greeting().await;
    c
}

#[tokio::test]
async fn a_new_address_past_a_names_ceiling_waits_the_first_delay_not_the_longest() {
    let delay = Duration::from_millis(200);
    let server = spawn_server(opts(Limits {
        throttle_delay: delay,
        user_failures: 1,
        user_failure_ceiling: 10,
        ..test_limits()
    }))
    .await;
    for i in 10..20 {
        let mut c = client_from(&server, &format!("127.0.0.{i}")).await;
        fail_once(&mut c, "alice").await;
    }
    let mut newcomer = client_from(&server, "127.0.0.30").await;
    newcomer.send("alice").await;
    newcomer.expect_line("Password:").await;
    let started = Instant::now();
    newcomer.send(PASSWORD).await;
    newcomer.expect_line("! Login failed").await;
    // Before, the ten other addresses' failures doubled the delay nine times (to the 30 s
    // maximum, past the login timeout).
    let waited = started.elapsed();
    assert!(waited >= delay && waited < delay * 4, "{waited:?}");
}

#[tokio::test]
async fn a_throttled_attempt_is_answered_before_the_login_timeout() {
    let login_timeout = Duration::from_secs(2);
    let server = spawn_server(opts(Limits {
        login_timeout,
        throttle_delay: Duration::from_secs(30),
        user_failures: 1,
        user_failure_ceiling: 1,
        ..test_limits()
    }))
    .await;
    let mut guesser = client_from(&server, "127.0.0.2").await;
    fail_once(&mut guesser, "alice").await;
    let started = Instant::now();
    let mut c = client_from(&server, "127.0.0.3").await;
    c.send("alice").await;
    c.expect_line("Password:").await;
    c.send(PASSWORD).await;
    c.expect_line("! Login failed").await;
    assert!(started.elapsed() < login_timeout, "{:?}", started.elapsed());
}

#[tokio::test]
async fn real_user_from_another_address_can_still_log_in_during_an_attack() {
    let server = spawn_server(opts(Limits {
        throttle_delay: Duration::from_millis(50),
        ..test_limits()
    }))
    .await;
    for _ in 0..2 {
        let mut c = server.connect().await;
        c.expect_greeting().await;
        for i in 0..3 {
            fail_once(&mut c, "alice").await;
            if i < 2 {
                c.expect_line("Username:").await;
            }
        }
    }
    let tcp = tcp_from(server.addr, "127.0.0.3", None).await;
    let mut real = TestClient::over(tcp, &server.connector).await;
    real.login("alice", PASSWORD).await;
}

#[tokio::test]
async fn logins_beyond_the_password_check_queue_get_server_busy() {
    let server = spawn_server(Opts {
        hash: HashSettings {
            memory_kib: 32 * 1024,
            iterations: 3,
            parallelism: 1,
            threads: 1,
            queue: 1,
            min_password_chars: 8,
        },
        ..Opts::default()
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..6 {
        let mut c = server.connect().await;
        c.expect_greeting().await;
        clients.push(c);
    }
    for c in &mut clients {
        c.send_raw(format!("alice\n{PASSWORD}\n").as_bytes()).await;
    }
    let mut busy = 0;
    for c in &mut clients {
        c.expect_line("Password:").await;
        if c.next_line().await == "! Server busy, try again later" {
            busy += 1;
            c.expect_clean_close().await;
        }
    }
    assert!(busy >= 1, "no login was refused");
    assert!(busy <= 4, "the running and the queued check must complete");
}

/// Peak and current resident memory of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// A real `serve` process with alice, bob and carol logged in over TLS (carol optionally with a
/// tiny receive buffer), all join notices consumed. Returns the process and the clients.
async fn binary_room(
    dir: &std::path::Path,
    args: &[&str],
    carol_recv_buffer: Option<u32>,
) -> (common::bin::Serve, [TestClient; 3]) {
    use common::bin::{add_users, serve};
    add_users(dir, &["alice", "bob", "carol"], PASSWORD);
    let s = serve(dir, args);
    let connector = common::bin::connector_for_dir(dir);
    let mut alice = TestClient::connect(s.addr, &connector).await;
    alice.login("alice", PASSWORD).await;
    let mut bob = TestClient::connect(s.addr, &connector).await;
    bob.login("bob", PASSWORD).await;
    alice.expect_line("*** bob joined").await;
    let tcp = tcp_from(s.addr, "127.0.0.1", carol_recv_buffer).await;
    let mut carol = TestClient::over(tcp, &connector).await;
    carol.login("carol", PASSWORD).await;
    alice.expect_line("*** carol joined").await;
    bob.expect_line("*** carol joined").await;
    (s, [alice, bob, carol])
}

#[tokio::test]
async fn ten_mib_line_does_not_grow_server_memory_beyond_a_small_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (s, [mut alice, mut bob, mut carol]) = binary_room(dir.path(), &[], None).await;
    let pid = s.child.id();
    let (peak_before, _) = memory_kib(pid);
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    for _ in 0..160 {
        // 10 MiB in all, unless the server hangs up first (it does, after 64 KiB).
        if carol.try_send_raw(&chunk).await.is_err() {
            break;
        }
        sent += chunk.len();
    }
    alice.send("still chatting").await;
    let mut seen = vec![bob.next_line().await, bob.next_line().await];
    seen.sort();
    assert_eq!(
        seen,
        ["*** carol left (no newline)", "<alice> still chatting"]
    );
    let (peak_after, rss_after) = memory_kib(pid);
    let grown = peak_after.saturating_sub(peak_before);
    eprintln!(
        "sent {sent} bytes; server peak RSS {peak_before} -> {peak_after} KiB, now {rss_after} KiB"
    );
    assert!(grown < 2048, "server peak memory grew by {grown} KiB");
}

#[tokio::test]
async fn slow_consumer_never_makes_the_server_buffer_more_than_its_bound() {
    const BOUND_KIB: u64 = 256;
    let dir = tempfile::tempdir().unwrap();
    // History off: its window and the database's page cache are bounded on their own; this
    // measures what the slow member's queue costs.
    let args = [
        "--rate-burst",
        "100000",
        "--rate-per-sec",
        "100000",
        "--history",
        "off",
    ];
    let (s, [mut alice, mut bob, _carol]) = binary_room(dir.path(), &args, Some(4096)).await;
    // carol never reads again; alice talks until carol is evicted, bob reads everything.
    let pid = s.child.id();
    let (peak_before, _) = memory_kib(pid);
    let payload = "q".repeat(3000);
    let mut sent = 0;
    let mut received = 0;
    'talk: loop {
        assert!(sent < 10_000, "carol was never evicted");
        alice.send(&format!("{sent} {payload}")).await;
        sent += 1;
        while received < sent {
            let line = bob.next_line().await;
            if line == "*** carol left (send queue exceeded)" {
                break 'talk;
            }
            assert_eq!(line, format!("<alice> {received} {payload}"));
            received += 1;
        }
    }
    let (peak_after, rss_after) = memory_kib(pid);
    let grown = peak_after.saturating_sub(peak_before);
    eprintln!(
        "{sent} lines of 3 KB; server peak RSS {peak_before} -> {peak_after} KiB, now {rss_after} KiB"
    );
    // The queue bound, rustls' own buffer and allocator slack; not the megabytes sent.
    assert!(
        grown < BOUND_KIB + 1024,
        "server peak memory grew by {grown} KiB"
    );
}

#[tokio::test]
async fn accepted_sockets_use_tcp_keepalive() {
    let server = spawn_server(Opts::default()).await;
    let _alice = server.login("alice").await;
    // The kernel shows a keepalive timer on the server's side once nothing is in flight
    // (right after the welcome it may still show the retransmission timer).
    let deadline = Instant::now() + STEP;
    loop {
        let out = std::process::Command::new("ss")
            .args(["-tonH", "state", "established"])
            .arg(format!("( sport = :{} )", server.addr.port()))
            .output()
            .expect("ss (iproute2) must be installed");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("timer:(keepalive,") {
            return;
        }
        assert!(Instant::now() < deadline, "no keepalive timer: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

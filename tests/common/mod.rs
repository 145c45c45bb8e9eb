//! Shared helpers: a real server on 127.0.0.1:0 with a fresh certificate and a temp database,
//! and a TLS test client whose every read has a timeout.
#![allow(dead_code)]

pub mod bin;
pub mod cert;
pub mod chrome;
pub mod connect;
pub mod db;
pub mod irc;
pub mod irssi;
pub mod pg;
pub mod proxy;
pub mod redis;
pub mod sclient;
pub mod web;
pub mod weechat;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use secrecy::SecretString;
use tlschat::app::{App, Listeners, Parts};
use tlschat::config::{HashSettings, Limits, RoomLimits};
use tlschat::password::{Hasher, Password};
use tlschat::session::SessionContext;
use tlschat::store::Store;
use tlschat::username::Username;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

/// How long any single expected event may take before the test fails.
pub const STEP: Duration = Duration::from_secs(5);
/// The password every seeded user has.
pub const PASSWORD: &str = "correct horse";

/// Cheap argon2 parameters so tests that log in many times stay fast.
pub fn test_hash_settings() -> HashSettings {
    HashSettings {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
        threads: 2,
        queue: 64,
        min_password_chars: 8,
    }
}

/// Test limits: defaults with short timeouts and a high line rate.
pub fn test_limits() -> Limits {
    Limits {
        handshake_timeout: Duration::from_secs(5),
        login_timeout: Duration::from_secs(10),
        rate_burst: 10_000,
        rate_per_sec: 10_000.0,
        shutdown_grace: Duration::from_secs(1),
        account_check_interval: Duration::from_millis(200),
        ..Limits::default()
    }
}

pub struct Opts {
    pub users: Vec<&'static str>,
    pub limits: Limits,
    pub rooms: RoomLimits,
    pub hash: HashSettings,
    /// Use this directory instead of a fresh one; a database already in it is kept (a
    /// restart), else one is made and seeded.
    pub dir: Option<tempfile::TempDir>,
    /// The web client's settings; `None` turns it off.
    pub web: Option<tlschat::web::Web>,
    /// The certificate and key (PEM) to serve; a fresh pair when `None`.
    pub cert: Option<(String, String)>,
    /// A PostgreSQL URL to use instead of a SQLite file in `dir`.
    pub db_url: Option<String>,
    /// Sources whose connections begin with a PROXY protocol header.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Cluster mode: the Redis URL and the node's name.
    pub cluster: Option<(String, String)>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            users: vec!["alice", "bob", "carol", "dave"],
            limits: test_limits(),
            rooms: RoomLimits::default(),
            hash: test_hash_settings(),
            dir: None,
            web: Some(tlschat::web::Web::default()),
            cert: None,
            db_url: None,
            trusted_proxies: Vec::new(),
            cluster: None,
        }
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    /// The IRC port (every test server has one).
    pub irc_addr: SocketAddr,
    pub connector: TlsConnector,
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<std::io::Result<()>>,
    pub store: Store,
    pub ctx: Arc<SessionContext>,
    pub cert_der: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
    pub dir: tempfile::TempDir,
}

/// An outside program a test needs is missing: the test skips, saying `why`, unless
/// `TLSCHAT_REQUIRE_ALL=1` (set by `.ci/run` after installing them), where it fails.
pub fn missing_program(why: &str) {
    if std::env::var("TLSCHAT_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{why}, and TLSCHAT_REQUIRE_ALL=1");
    }
    eprintln!("skipped: {why}");
}

/// Waits (polling, up to two steps) until the log file at `path`, which a client program
/// appends to, has a line containing `needle`; returns the log. `what` names it in the
/// failure.
pub async fn wait_for_log_line(path: &std::path::Path, needle: &str, what: &str) -> String {
    let deadline = tokio::time::Instant::now() + STEP * 2;
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.lines().any(|l| l.contains(needle)) {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never showed {needle:?}; it shows:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback port that was free a moment ago, for a private server a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `cond` (something observable on the server) holds, failing after `limit`.
pub async fn wait_until(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A self-signed certificate for localhost: (cert PEM, key PEM).
pub fn localhost_cert() -> (String, String) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

/// A client configuration that trusts exactly `cert`.
pub fn connector_for(cert: &CertificateDer<'static>) -> TlsConnector {
    connector_for_all(std::slice::from_ref(cert))
}

/// A client configuration that trusts each of `certs`.
pub fn connector_for_all(certs: &[CertificateDer<'static>]) -> TlsConnector {
    connector_offering_to(certs, &[])
}

/// A client configuration that trusts each of `certs` and offers the ALPN `protocols`.
pub fn connector_offering_to(
    certs: &[CertificateDer<'static>],
    protocols: &[&[u8]],
) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

pub async fn spawn_server(opts: Opts) -> TestServer {
    let dir = opts.dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
    // Users are seeded into a new database only; a restart keeps the old one's.
    let (fresh, store) = match &opts.db_url {
        Some(url) => {
            let db = tlschat::store::Db::Url(url.clone());
            let store = Store::open_db(&db).await.unwrap();
            (store.list_users().await.unwrap().is_empty(), store)
        }
        None => (
            !dir.path().join("users.db").exists(),
            Store::open(&dir.path().join("users.db")).await.unwrap(),
        ),
    };
    let hasher = Hasher::new(&opts.hash).unwrap();
    let users = if fresh {
        opts.users.clone()
    } else {
        Vec::new()
    };
    for name in &users {
        let pw = Password::parse(SecretString::from(PASSWORD.to_owned())).unwrap();
        let hash = hasher.hash(&pw).await.unwrap();
        store
            .add_user(&Username::parse(name).unwrap(), &hash)
            .await
            .unwrap();
    }
    let (cert_pem, key_pem) = opts.cert.clone().unwrap_or_else(localhost_cert);
    let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let configs = tlschat::tls::server_configs(vec![cert_der.clone()], key).unwrap();
    let app = App::build(Parts {
        store: store.clone(),
        hasher,
        tls: configs,
        web: opts.web.clone().map(Arc::new),
        limits: opts.limits,
        rooms: opts.rooms,
        trusted_proxies: opts.trusted_proxies.clone(),
        irc_server_name: "tlschat".to_owned(),
        cluster: opts
            .cluster
            .clone()
            .map(|(url, node_name)| tlschat::app::ClusterSettings {
                url,
                node_name,
                ca: None,
            }),
    })
    .await
    .unwrap();
    let ctx = Arc::clone(app.context());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let irc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let irc_addr = irc.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let listeners = Listeners {
        chat: listener,
        irc: Some(irc),
        admin: None,
        metrics: None,
    };
    let handle = tokio::spawn(app.run(listeners, shutdown.clone()));
    TestServer {
        addr,
        irc_addr,
        connector: connector_for(&cert_der),
        shutdown,
        handle,
        store,
        ctx,
        cert_der,
        cert_pem,
        key_pem,
        dir,
    }
}

/// A TCP socket to `addr` from `local_ip` (any 127.x address works on Linux), optionally with
/// a small receive buffer so that the server's writes back up quickly.
pub async fn tcp_from(addr: SocketAddr, local_ip: &str, recv_buffer: Option<u32>) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(local_ip.parse().unwrap(), 0))
        .unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    tokio::time::timeout(STEP, socket.connect(addr))
        .await
        .expect("connect timed out")
        .unwrap()
}

impl TestServer {
    /// Shuts the server down (SIGTERM's path: everything relayed is written) and starts a new
    /// one on the same database with `opts` (and the same certificate unless `opts` names one).
    pub async fn restart(self, mut opts: Opts) -> TestServer {
        opts.cert
            .get_or_insert((self.cert_pem.clone(), self.key_pem.clone()));
        self.shutdown.cancel();
        tokio::time::timeout(STEP, self.handle)
            .await
            .expect("shutdown timed out")
            .unwrap()
            .unwrap();
        self.store.close().await;
        opts.dir = Some(self.dir);
        spawn_server(opts).await
    }

    /// A TLS connection that has not logged in yet.
    pub async fn connect(&self) -> TestClient {
        TestClient::connect(self.addr, &self.connector).await
    }

    /// A client logged in as `name`, past the welcome line.
    pub async fn login(&self, name: &str) -> TestClient {
        let mut c = self.connect().await;
        c.login(name, PASSWORD).await;
        c
    }
}

/// The line without its `[YYYY-MM-DD HH:MM:SS] ` stamp, which must be well formed.
pub fn untimed(line: &str) -> &str {
    let bytes = line.as_bytes();
    assert!(line.len() > 22, "{line}");
    let stamp = &line[..22];
    let shape = stamp.bytes().enumerate().all(|(i, b)| match i {
        0 => b == b'[',
        5 | 8 => b == b'-',
        11 => b == b' ',
        14 | 17 => b == b':',
        20 => b == b']',
        21 => b == b' ',
        _ => b.is_ascii_digit(),
    });
    assert!(shape && bytes[21] == b' ', "bad stamp in {line:?}");
    &line[22..]
}

/// Reads a block's lines up to `*** End of history`, without their stamps.
pub async fn block(c: &mut TestClient) -> Vec<String> {
    let lines = c.wait_for("*** End of history").await;
    lines.iter().map(|l| untimed(l).to_owned()).collect()
}

pub struct TestClient {
    reader: BufReader<ReadHalf<TlsStream<TcpStream>>>,
    writer: WriteHalf<TlsStream<TcpStream>>,
    pub welcome: String,
    writer_tls_version: Option<rustls::ProtocolVersion>,
    peer_fingerprint: String,
}

impl TestClient {
    pub async fn connect(addr: SocketAddr, connector: &TlsConnector) -> TestClient {
        let tcp = tokio::time::timeout(STEP, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .unwrap();
        Self::over(tcp, connector).await
    }

    /// A TLS client over an already connected socket.
    pub async fn over(tcp: TcpStream, connector: &TlsConnector) -> TestClient {
        let name = ServerName::try_from("localhost").unwrap();
        let tls = tokio::time::timeout(STEP, connector.connect(name, tcp))
            .await
            .expect("handshake timed out")
            .unwrap();
        let version = tls.get_ref().1.protocol_version();
        let peer_fingerprint = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(tlschat::tls::fingerprint)
            .unwrap_or_default();
        let (r, w) = tokio::io::split(tls);
        TestClient {
            reader: BufReader::new(r),
            writer: w,
            welcome: String::new(),
            writer_tls_version: version,
            peer_fingerprint,
        }
    }

    /// The two halves, for a test that reads and writes from different tasks.
    pub fn split(
        self,
    ) -> (
        BufReader<ReadHalf<TlsStream<TcpStream>>>,
        WriteHalf<TlsStream<TcpStream>>,
    ) {
        (self.reader, self.writer)
    }

    /// SHA-256 fingerprint of the certificate the server presented.
    pub fn peer_fingerprint(&self) -> String {
        self.peer_fingerprint.clone()
    }

    /// The negotiated TLS version.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.writer_tls_version
    }

    /// Sends raw bytes, reporting failure instead of panicking.
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
        self.writer.flush().await.unwrap();
    }

    /// Sends one line (LF added).
    pub async fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes()).await;
    }

    /// The next line without its LF; panics on EOF or timeout.
    pub async fn next_line(&mut self) -> String {
        self.next_line_within(STEP).await
    }

    /// The next line, waiting up to `limit` for it.
    pub async fn next_line_within(&mut self, limit: Duration) -> String {
        let mut buf = Vec::new();
        let n = tokio::time::timeout(limit, self.reader.read_until(b'\n', &mut buf))
            .await
            .expect("timed out waiting for a line")
            .expect("read failed");
        assert!(n > 0, "connection closed while waiting for a line");
        assert_eq!(buf.pop(), Some(b'\n'), "line without LF: {buf:?}");
        String::from_utf8(buf).expect("server sent invalid UTF-8")
    }

    /// The next line must be exactly `expected`.
    pub async fn expect_line(&mut self, expected: &str) {
        let line = self.next_line().await;
        assert_eq!(line, expected);
    }

    /// Skips lines until one equals `expected`; returns the skipped ones.
    pub async fn wait_for(&mut self, expected: &str) -> Vec<String> {
        let mut skipped = Vec::new();
        loop {
            let line = self.next_line().await;
            if line == expected {
                return skipped;
            }
            skipped.push(line);
        }
    }

    /// Skips lines until one starts with `prefix`; returns that line.
    pub async fn wait_for_start(&mut self, prefix: &str) -> String {
        loop {
            let line = self.next_line().await;
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// Reads the greeting up to the username prompt.
    pub async fn expect_greeting(&mut self) {
        let lines = self.wait_for("Username:").await;
        assert!(!lines.is_empty(), "no greeting before the prompt");
        assert!(lines.iter().all(|l| l.starts_with("*** ")), "{lines:?}");
    }

    /// Logs in and stores the welcome line.
    pub async fn login(&mut self, name: &str, password: &str) {
        self.expect_greeting().await;
        self.login_after_prompt(name, password).await;
    }

    /// Logs in once `Username:` has been read.
    pub async fn login_after_prompt(&mut self, name: &str, password: &str) {
        self.send(name).await;
        self.expect_line("Password:").await;
        self.send(password).await;
        let welcome = self.next_line().await;
        assert!(welcome.starts_with("*** Welcome, "), "{welcome}");
        self.welcome = welcome;
    }

    /// The server must close the connection (EOF) within the step timeout; lines before it are returned.
    pub async fn expect_closed(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut buf = Vec::new();
            match tokio::time::timeout(STEP, self.reader.read_until(b'\n', &mut buf))
                .await
                .expect("timed out waiting for the server to close")
            {
                Ok(0) => return lines,
                Ok(_) => lines.push(String::from_utf8_lossy(&buf).trim_end().to_owned()),
                Err(_) => return lines,
            }
        }
    }

    /// The next read must be a clean TLS close (close_notify, then EOF).
    pub async fn expect_clean_close(&mut self) {
        let mut buf = Vec::new();
        let r = tokio::time::timeout(STEP, self.reader.read_until(b'\n', &mut buf))
            .await
            .expect("timed out waiting for close_notify");
        match r {
            Ok(0) => {}
            Ok(_) => panic!("expected close, got {:?}", String::from_utf8_lossy(&buf)),
            Err(e) => panic!("connection ended without close_notify: {e}"),
        }
    }

    /// True if no line arrives within `wait` (for "nothing else was sent" checks after a marker).
    pub async fn read_to_end_raw(&mut self) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(STEP, self.reader.read_to_end(&mut buf)).await;
        buf
    }
}

/// A stopped server's port (Redis, PostgreSQL), held so that no other test's server takes it
/// meanwhile (the test's nodes would then talk to that one): every connection is accepted and closed at once, as a
/// server that is down refuses it.
pub struct PortHold {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PortHold {
    pub fn hold(port: u16) -> Option<PortHold> {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).ok()?;
        listener.set_nonblocking(true).ok()?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => drop(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Some(PortHold {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for PortHold {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

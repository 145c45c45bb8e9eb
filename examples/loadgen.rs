//! Load generator for tlschat: fan-out, idle sessions and connection rates.
//!
//! ```sh
//! cargo run --release --example loadgen -- fanout --port 7443 --db bench.db --n 100 --senders 10 --lines 1000
//! cargo run --release --example loadgen -- idle --port 7443 --db bench.db --n 1000 --server-pid PID
//! cargo run --release --example loadgen -- connect --port 7443 --db bench.db --concurrency 32 --total 2000
//! ```
//!
//! Connects to 127.0.0.1 only; every scenario is bounded in count and in time (`--max-time`).
//! Users `u0..uN` are created once in `--db` (through the store API) with the password
//! `--password`, and reused by later runs. Prints one JSON object per run.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use rustls::pki_types::ServerName;
use secrecy::SecretString;
use tlschat::config::HashSettings;
use tlschat::password::{Hasher, Password};
use tlschat::store::Store;
use tlschat::username::Username;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

/// Options every scenario takes.
#[derive(Args, Clone)]
pub struct Common {
    /// Server port on 127.0.0.1
    #[arg(long, default_value_t = 7443)]
    pub port: u16,
    /// User database shared with the server; missing users are created
    #[arg(long)]
    pub db: PathBuf,
    /// Password of every benchmark user
    #[arg(long, default_value = "benchpass")]
    pub password: String,
    /// Server PID, for CPU time and memory
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Concurrent logins while setting up members
    #[arg(long, default_value_t = 64)]
    pub conc: usize,
    /// Give up after this many seconds
    #[arg(long, default_value_t = 300)]
    pub max_time: u64,
    /// Other nodes of a cluster (ports on 127.0.0.1): fan-out receivers are spread over
    /// --port and these, senders stay on --port
    #[arg(long, value_delimiter = ',')]
    pub also_ports: Vec<u16>,
    /// The other nodes' PIDs, in --also-ports order, for their CPU time
    #[arg(long, value_delimiter = ',')]
    pub also_pids: Vec<u32>,
    /// Fan-out receivers log in over IRC on this port (127.0.0.1) instead of the line
    /// protocol (senders stay on --port); single node only
    #[arg(long)]
    pub irc_port: Option<u16>,
}

impl Common {
    /// The node (0: --port) member `i` connects to: senders (`i < senders`) to the first,
    /// the others round-robin over all.
    fn node_of(&self, i: usize, senders: usize) -> usize {
        if i < senders {
            0
        } else {
            i % (1 + self.also_ports.len())
        }
    }

    fn port_of(&self, node: usize) -> u16 {
        if node == 0 {
            self.port
        } else {
            self.also_ports[node - 1]
        }
    }

    /// Every node's PID (for CPU time), in node order.
    fn pids(&self) -> Vec<Option<u32>> {
        std::iter::once(self.server_pid)
            .chain(self.also_pids.iter().copied().map(Some))
            .collect()
    }
}

#[derive(Subcommand)]
enum Scenario {
    /// N members, S of them send M lines each; measures deliveries, loss, order and latency
    Fanout {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        n: usize,
        #[arg(long)]
        senders: usize,
        #[arg(long)]
        lines: usize,
        /// Aggregate lines per second over all senders (0 = as fast as possible)
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Payload bytes per line
        #[arg(long, default_value_t = 64)]
        payload: usize,
        /// Seconds to wait for stragglers after the last line was sent
        #[arg(long, default_value_t = 10)]
        drain_timeout: u64,
    },
    /// Holds N logged-in members and reports the server's memory per session
    Idle {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        n: usize,
        /// Seconds to hold the sessions before measuring
        #[arg(long, default_value_t = 2)]
        hold: u64,
    },
    /// `/history N` cost: fills a room with STORED lines of PAYLOAD bytes (once), waits until
    /// they are in the database, then times REQUESTS reads of each N in WANTS
    History {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 10_000)]
        stored: u64,
        #[arg(long, default_value_t = 4_000)]
        payload: usize,
        #[arg(long, default_value_t = 50)]
        requests: usize,
        #[arg(long, value_delimiter = ',', default_value = "20,500")]
        wants: Vec<usize>,
    },
    /// Connection rates: handshakes (to the Username: prompt) and full logins
    Connect {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 1000)]
        total: usize,
        /// Also log in (users u0..u{users-1} in turn)
        #[arg(long)]
        login: bool,
        #[arg(long, default_value_t = 200)]
        users: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (common, run) = match cli.scenario {
            Scenario::Fanout {
                common,
                n,
                senders,
                lines,
                rate,
                payload,
                drain_timeout,
            } => {
                let c = common.clone();
                (
                    common,
                    tokio::spawn(async move {
                        let report =
                            fanout(&c, n, senders, lines, rate, payload, drain_timeout).await?;
                        println!("{}", report.json);
                        Ok(())
                    }),
                )
            }
            Scenario::History {
                common,
                stored,
                payload,
                requests,
                wants,
            } => {
                let c = common.clone();
                (
                    common,
                    tokio::spawn(
                        async move { history(&c, stored, payload, requests, &wants).await },
                    ),
                )
            }
            Scenario::Idle { common, n, hold } => {
                let c = common.clone();
                (common, tokio::spawn(async move { idle(&c, n, hold).await }))
            }
            Scenario::Connect {
                common,
                concurrency,
                total,
                login,
                users,
            } => {
                let c = common.clone();
                (
                    common,
                    tokio::spawn(
                        async move { connect(&c, concurrency, total, login, users).await },
                    ),
                )
            }
        };
        match tokio::time::timeout(Duration::from_secs(common.max_time), run).await {
            Ok(r) => r?,
            Err(_) => bail!("gave up after --max-time {} s", common.max_time),
        }
    })
}

/// Creates users u0..u{n-1} that do not exist yet.
async fn ensure_users(common: &Common, n: usize) -> anyhow::Result<()> {
    let store = Store::open_db(&tlschat::store::Db::parse(common.db.clone())).await?;
    let hasher = Hasher::new(&HashSettings::default())?;
    let password = Password::parse(SecretString::from(common.password.clone()))?;
    let mut hash = None;
    for i in 0..n {
        let name = Username::parse(&format!("u{i}"))?;
        if store.credentials(&name).await?.is_none() {
            if hash.is_none() {
                hash = Some(hasher.hash(&password).await?);
            }
            // One hash shared by all benchmark users keeps set-up fast; logins still verify it.
            store
                .add_user(&name, hash.as_deref().expect("set above"))
                .await?;
        }
    }
    store.close().await;
    Ok(())
}

fn connector() -> TlsConnector {
    #[derive(Debug)]
    struct AcceptAny;
    impl rustls::client::danger::ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let mut provider = rustls::crypto::ring::default_provider();
    // Same cipher as the peer comparison: TLS 1.3 AES-128-GCM.
    provider.cipher_suites = vec![rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256];
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 is supported")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

type Conn = BufReader<TlsStream<TcpStream>>;

async fn handshake(port: u16, tls: &TlsConnector) -> anyhow::Result<Conn> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let stream = tls.connect(ServerName::try_from("localhost")?, tcp).await?;
    let mut conn = BufReader::new(stream);
    read_until(&mut conn, |l| l == "Username:").await?;
    Ok(conn)
}

async fn read_until(conn: &mut Conn, done: impl Fn(&str) -> bool) -> anyhow::Result<String> {
    let mut line = String::new();
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            bail!("server closed the connection");
        }
        let l = line.trim_end();
        if l.starts_with("! ") {
            bail!("server said {l:?}");
        }
        if done(l) {
            return Ok(l.to_owned());
        }
    }
}

async fn login(port: u16, tls: &TlsConnector, name: &str, password: &str) -> anyhow::Result<Conn> {
    let mut conn = handshake(port, tls).await?;
    conn.get_mut()
        .write_all(format!("{name}\n{password}\n").as_bytes())
        .await?;
    conn.get_mut().flush().await?;
    read_until(&mut conn, |l| l.starts_with("*** Welcome, ")).await?;
    Ok(conn)
}

/// Logs `name` in on the IRC port with PASS, past the names of #lobby.
async fn login_irc(
    port: u16,
    tls: &TlsConnector,
    name: &str,
    password: &str,
) -> anyhow::Result<Conn> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let stream = tls.connect(ServerName::try_from("localhost")?, tcp).await?;
    let mut conn = BufReader::new(stream);
    let register = format!("PASS :{password}\r\nNICK {name}\r\nUSER {name} 0 * :{name}\r\n");
    conn.get_mut().write_all(register.as_bytes()).await?;
    conn.get_mut().flush().await?;
    let end_of_names = format!(" 366 {name} #lobby ");
    read_until(&mut conn, |l| {
        l.contains(&end_of_names) || l.starts_with("ERROR")
    })
    .await
    .and_then(|l| match l.starts_with("ERROR") {
        true => bail!("server said {l:?}"),
        false => Ok(()),
    })?;
    Ok(conn)
}

/// Logs in u0..u{n-1}, `conc` at a time, each on its node (see [`Common::node_of`]).
async fn login_all(common: &Common, n: usize, senders: usize) -> anyhow::Result<Vec<Conn>> {
    let tls = connector();
    let permits = Arc::new(Semaphore::new(common.conc));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let port = common.port_of(common.node_of(i, senders));
        let (tls, pw) = (tls.clone(), common.password.clone());
        let irc = common.irc_port.filter(|_| i >= senders);
        tasks.push(tokio::spawn(async move {
            let c = match irc {
                Some(irc_port) => login_irc(irc_port, &tls, &format!("u{i}"), &pw).await,
                None => login(port, &tls, &format!("u{i}"), &pw).await,
            };
            drop(permit);
            c.with_context(|| format!("logging in u{i}"))
        }));
    }
    let mut conns = Vec::with_capacity(n);
    for t in tasks {
        conns.push(t.await??);
    }
    Ok(conns)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// CPU time (user + system, every thread) of a process in seconds, read from its CPU-time
/// clock: nanosecond resolution, where /proc/PID/stat counts 10 ms ticks (as much as a
/// short run's whole difference between two servers).
fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let pid = libc::pid_t::try_from(pid?).ok()?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: both calls only write to the locals passed by pointer.
    let time = unsafe {
        if libc::clock_getcpuclockid(pid, &mut clock) != 0 {
            return None;
        }
        let mut time: libc::timespec = std::mem::zeroed();
        if libc::clock_gettime(clock, &mut time) != 0 {
            return None;
        }
        time
    };
    Some(time.tv_sec as f64 + time.tv_nsec as f64 / 1e9)
}

fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[derive(Default)]
struct Tally {
    received: AtomicUsize,
    order_violations: AtomicUsize,
    last_ns: AtomicU64,
}

/// What one fan-out run measured.
pub struct FanoutReport {
    /// Deliveries expected: senders × lines × (n − 1).
    pub expected: usize,
    /// Deliveries received.
    pub received: usize,
    /// Lines that arrived out of per-sender order.
    pub order_violations: usize,
    /// The JSON line printed for the run.
    pub json: String,
}

/// Runs the fan-out scenario.
pub async fn fanout(
    common: &Common,
    n: usize,
    senders: usize,
    lines: usize,
    rate: f64,
    payload: usize,
    drain_timeout: u64,
) -> anyhow::Result<FanoutReport> {
    if senders > n || n < 2 {
        bail!("need 2 <= n and senders <= n");
    }
    ensure_users(common, n).await?;
    let conns = login_all(common, n, senders).await?;
    let expected = senders * lines * (n - 1);
    let nodes = 1 + common.also_ports.len();
    let received_by_node: Arc<Vec<AtomicUsize>> =
        Arc::new((0..nodes).map(|_| AtomicUsize::new(0)).collect());
    let tally = Arc::new(Tally::default());
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(
        expected.min(50_000_000),
    )));
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for (i, conn) in conns.into_iter().enumerate() {
        let (r, w) = tokio::io::split(conn.into_inner());
        if i < senders {
            writers.push(w);
        }
        let (tally, latencies) = (Arc::clone(&tally), Arc::clone(&latencies));
        let (by_node, node) = (Arc::clone(&received_by_node), common.node_of(i, senders));
        let want = senders * lines - if i < senders { lines } else { 0 };
        readers.push(tokio::spawn(async move {
            let mut r = BufReader::with_capacity(64 * 1024, r);
            let mut last_seq: HashMap<usize, i64> = HashMap::new();
            let mut mine = Vec::new();
            let mut got = 0;
            let mut line = String::new();
            while got < want {
                line.clear();
                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    break;
                }
                // "<uK> ts sender seq xxx", or on IRC
                // ":uK!~uK@tlschat PRIVMSG #lobby :ts sender seq xxx"
                let body = match line.strip_prefix('<') {
                    Some(rest) => rest.split_once("> ").map(|(_, body)| body),
                    None => line.split_once(" PRIVMSG #lobby :").map(|(_, body)| body),
                };
                let Some(body) = body else {
                    continue;
                };
                let mut parts = body.split(' ');
                let (Some(ts), Some(sender), Some(seq)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let (Ok(ts), Ok(sender), Ok(seq)) = (
                    ts.parse::<u64>(),
                    sender.parse::<usize>(),
                    seq.parse::<i64>(),
                ) else {
                    continue;
                };
                let now = now_ns();
                mine.push(now.saturating_sub(ts));
                let last = last_seq.entry(sender).or_insert(-1);
                if seq != *last + 1 {
                    tally.order_violations.fetch_add(1, Ordering::Relaxed);
                }
                *last = seq;
                got += 1;
                tally.received.fetch_add(1, Ordering::Relaxed);
                by_node[node].fetch_add(1, Ordering::Relaxed);
                tally.last_ns.fetch_max(now, Ordering::Relaxed);
            }
            latencies.lock().expect("not poisoned").extend(mine);
        }));
    }
    let cpu_before = cpu_seconds(common.server_pid);
    let nodes_before: Vec<Option<f64>> = common.pids().into_iter().map(cpu_seconds).collect();
    let started = Instant::now();
    let start_ns = now_ns();
    let per_sender_interval = (rate > 0.0).then(|| Duration::from_secs_f64(senders as f64 / rate));
    let mut send_tasks = Vec::new();
    for (s, mut w) in writers.into_iter().enumerate() {
        send_tasks.push(tokio::spawn(async move {
            let mut next = tokio::time::Instant::now();
            let mut batch = Vec::with_capacity(16 * 1024);
            for seq in 0..lines {
                let mut text = format!("{} {s} {seq} ", now_ns());
                while text.len() < payload {
                    text.push('x');
                }
                text.push('\n');
                batch.extend_from_slice(text.as_bytes());
                if let Some(interval) = per_sender_interval {
                    w.write_all(&batch).await?;
                    w.flush().await?;
                    batch.clear();
                    next += interval;
                    tokio::time::sleep_until(next).await;
                } else if batch.len() >= 8 * 1024 || seq + 1 == lines {
                    w.write_all(&batch).await?;
                    w.flush().await?;
                    batch.clear();
                }
            }
            anyhow::Ok(w)
        }));
    }
    let mut writers = Vec::new();
    for t in send_tasks {
        writers.push(t.await??);
    }
    let sent_at = Instant::now();
    let drain = async {
        for r in readers {
            let _ = r.await;
        }
    };
    let timed_out = tokio::time::timeout(Duration::from_secs(drain_timeout), drain)
        .await
        .is_err();
    let cpu_after = cpu_seconds(common.server_pid);
    // Per node: its CPU over the deliveries to its members.
    let per_node: Vec<String> = common
        .pids()
        .into_iter()
        .zip(&nodes_before)
        .zip(received_by_node.iter())
        .map(|((pid, before), got)| {
            let cpu = before.zip(cpu_seconds(pid)).map(|(a, b)| b - a);
            let got = got.load(Ordering::Relaxed);
            format!(
                "{{\"cpu_s\":{},\"deliveries\":{got},\"us_per_delivery\":{}}}",
                json_opt(cpu.map(|c| format!("{c:.3}"))),
                json_opt(cpu.map(|c| format!("{:.3}", c * 1e6 / got.max(1) as f64)))
            )
        })
        .collect();
    let received = tally.received.load(Ordering::Relaxed);
    let last_ns = tally.last_ns.load(Ordering::Relaxed).max(start_ns + 1);
    let secs = (last_ns - start_ns) as f64 / 1e9;
    let mut lat = std::mem::take(&mut *latencies.lock().expect("not poisoned"));
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        lat[((lat.len() as f64 - 1.0) * p) as usize] as f64 / 1e6
    };
    let server_cpu = cpu_before.zip(cpu_after).map(|(a, b)| b - a);
    let order_violations = tally.order_violations.load(Ordering::Relaxed);
    let json = format!(
        "{{\"scenario\":\"fanout\",\"n\":{n},\"senders\":{senders},\"lines\":{lines},\"rate\":{rate},\"payload\":{payload},\
\"expected\":{expected},\"received\":{received},\"lost\":{},\"order_violations\":{},\"seconds\":{secs:.3},\
\"send_seconds\":{:.3},\"deliveries_per_s\":{:.0},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\
\"server_cpu_s\":{},\"us_per_delivery\":{},\"nodes\":[{}],\"timed_out\":{timed_out}}}",
        expected - received.min(expected),
        order_violations,
        sent_at.duration_since(started).as_secs_f64(),
        received as f64 / secs,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0),
        json_opt(server_cpu.map(|c| format!("{c:.3}"))),
        json_opt(server_cpu.map(|c| format!("{:.3}", c * 1e6 / received.max(1) as f64))),
        per_node.join(","),
    );
    drop(writers);
    Ok(FanoutReport {
        expected,
        received,
        order_violations,
        json,
    })
}

fn json_opt(v: Option<String>) -> String {
    v.unwrap_or_else(|| "null".into())
}

/// The room the history scenario fills and reads.
const HISTORY_ROOM: &str = "#bench-history";

async fn history(
    common: &Common,
    stored: u64,
    payload: usize,
    requests: usize,
    wants: &[usize],
) -> anyhow::Result<()> {
    ensure_users(common, 1).await?;
    let tls = connector();
    let mut conn = login(common.port, &tls, "u0", &common.password).await?;
    send(&mut conn, &format!("/join {HISTORY_ROOM}")).await?;
    read_until(&mut conn, |l| l.starts_with("*** You joined ")).await?;
    let store = Store::open_db(&tlschat::store::Db::parse(common.db.clone())).await?;
    let room = tlschat::event::RoomName::parse(HISTORY_ROOM)?;
    let have = store.room_last_seq(&room).await?;
    if have < stored {
        let text = "x".repeat(payload);
        let mut batch = String::new();
        for _ in have..stored {
            batch.push_str(&text);
            batch.push('\n');
            if batch.len() > 256 * 1024 {
                conn.get_mut().write_all(batch.as_bytes()).await?;
                batch.clear();
            }
        }
        conn.get_mut().write_all(batch.as_bytes()).await?;
        conn.get_mut().flush().await?;
    }
    // Read from the database, not only from memory: wait until the writer has it all.
    while store.room_last_seq(&room).await? < stored {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.close().await;
    let mut results = Vec::new();
    for &want in wants {
        let cpu_before = cpu_seconds(common.server_pid);
        let started = Instant::now();
        for _ in 0..requests {
            send(&mut conn, &format!("/history {want}")).await?;
            read_until(&mut conn, |l| l == "*** End of history").await?;
        }
        let seconds = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(common.server_pid)
            .zip(cpu_before)
            .map(|(a, b)| a - b);
        results.push(format!(
            "{{\"want\":{want},\"ms_per_request\":{:.3},\"server_cpu_ms_per_request\":{}}}",
            seconds * 1e3 / requests as f64,
            json_opt(cpu.map(|c| format!("{:.3}", c * 1e3 / requests as f64)))
        ));
    }
    println!(
        "{{\"scenario\":\"history\",\"stored\":{stored},\"payload\":{payload},\"requests\":{requests},\"results\":[{}]}}",
        results.join(",")
    );
    Ok(())
}

async fn send(conn: &mut Conn, line: &str) -> anyhow::Result<()> {
    conn.get_mut()
        .write_all(format!("{line}\n").as_bytes())
        .await?;
    conn.get_mut().flush().await?;
    Ok(())
}

async fn idle(common: &Common, n: usize, hold: u64) -> anyhow::Result<()> {
    ensure_users(common, n).await?;
    let before = rss_kib(common.server_pid);
    let conns = login_all(common, n, n).await?;
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let after = rss_kib(common.server_pid);
    let per = before
        .zip(after)
        .map(|(b, a)| format!("{:.2}", (a.saturating_sub(b)) as f64 / n as f64));
    println!(
        "{{\"scenario\":\"idle\",\"n\":{n},\"rss_before_kib\":{},\"rss_after_kib\":{},\"kib_per_session\":{}}}",
        json_opt(before.map(|b| b.to_string())),
        json_opt(after.map(|a| a.to_string())),
        json_opt(per)
    );
    drop(conns);
    Ok(())
}

async fn connect(
    common: &Common,
    concurrency: usize,
    total: usize,
    with_login: bool,
    users: usize,
) -> anyhow::Result<()> {
    if with_login {
        ensure_users(common, users).await?;
    }
    let tls = connector();
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let cpu_before = cpu_seconds(common.server_pid);
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (tls, next, failures) = (tls.clone(), Arc::clone(&next), Arc::clone(&failures));
        let (port, pw) = (common.port, common.password.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let result = if with_login {
                    login(port, &tls, &format!("u{}", i % users), &pw).await
                } else {
                    handshake(port, &tls).await
                };
                if result.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let server_cpu = cpu_before
        .zip(cpu_seconds(common.server_pid))
        .map(|(a, b)| format!("{:.3}", b - a));
    let failed = failures.load(Ordering::Relaxed);
    println!(
        "{{\"scenario\":\"connect\",\"login\":{with_login},\"concurrency\":{concurrency},\"total\":{total},\
\"failed\":{failed},\"seconds\":{secs:.3},\"per_s\":{:.0},\"server_cpu_s\":{}}}",
        (total - failed) as f64 / secs,
        json_opt(server_cpu)
    );
    Ok(())
}

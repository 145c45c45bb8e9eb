//! Prometheus metrics: lock-free counters updated on the hot paths, rendered in the text
//! exposition format and served over HTTP/1.1 (hyper, as the web client is) only where the
//! admin says (`--metrics-listen`).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
/// Longest HTTP request head read from a scraper.
const MAX_REQUEST_BYTES: usize = 8192;
/// A scraper that does not send its request in time is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Scrapes served at once; more are answered 503 at once. Prometheus scrapes one at a time, so
/// this only bounds what a slowloris on the metrics port can hold (file descriptors are shared
/// with the chat port).
pub const MAX_CONCURRENT_SCRAPES: usize = 4;
/// The answer to a scrape over the concurrency cap, written without waiting or a task, so a
/// flood of scrapers costs nothing but the accept.
const BUSY_RESPONSE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// A fixed-bucket histogram.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Every counter the server keeps.
#[derive(Default)]
pub struct Metrics {
    /// Connections accepted (before caps).
    pub connections_accepted: AtomicU64,
    /// Connections refused by a cap.
    pub connections_refused: AtomicU64,
    /// Connections currently open.
    pub connections_open: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: AtomicU64,
    /// Successful logins.
    pub logins_ok: AtomicU64,
    /// Failed logins (wrong password, unknown or disabled account).
    pub logins_failed: AtomicU64,
    /// Logins answered without a password check (brute-force throttling).
    pub logins_throttled: AtomicU64,
    /// Logins refused because password checks were saturated.
    pub logins_busy: AtomicU64,
    /// Room events (chat, actions, joins, leaves, notices).
    pub room_events: AtomicU64,
    /// Lines queued to members (one event reaches many members).
    pub deliveries: AtomicU64,
    /// Plaintext bytes written to clients.
    pub bytes_sent: AtomicU64,
    /// Members evicted for not reading.
    pub evictions_send_queue: AtomicU64,
    /// Clients disconnected for sending too much without a newline.
    pub evictions_no_newline: AtomicU64,
    /// Sessions closed by an administrator or an account change.
    pub evictions_admin: AtomicU64,
    /// Sessions logged in here, by protocol (line, web, irc; see
    /// [`crate::event::Protocol::ALL`]).
    pub sessions_by_protocol: [AtomicU64; 3],
    /// Time of one password check.
    pub password_check_seconds: Histogram,
    /// Time from a line entering a member's queue to its write completing (oldest line of
    /// each write).
    pub delivery_latency_seconds: Histogram,
    /// Cluster mode: round trip of one append to a room's stream in Redis.
    pub redis_seconds: Histogram,
    /// Cluster mode: entries the node's log reader got in its last read (0 or a few when it
    /// keeps up; up to 512 per room when it falls behind).
    pub log_lag_entries: AtomicU64,
    /// Cluster mode: times the log reader connected again after Redis failed.
    pub redis_reconnects: AtomicU64,
    /// Cluster mode: sessions of dead nodes this node announced as left.
    pub orphan_cleanups: AtomicU64,
}

/// Adds one to a counter.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// The Prometheus text exposition; the gauges the caller samples are passed in.
    pub fn render(&self, members_online: usize, password_queue_depth: usize) -> String {
        let mut out = String::with_capacity(4096);
        let counters: [(&str, &str, &AtomicU64); 8] = [
            (
                "tlschat_connections_accepted_total",
                "Connections accepted.",
                &self.connections_accepted,
            ),
            (
                "tlschat_connections_refused_total",
                "Connections refused by a cap.",
                &self.connections_refused,
            ),
            (
                "tlschat_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out.",
                &self.tls_handshake_failures,
            ),
            (
                "tlschat_room_events_total",
                "Room events (chat, actions, joins, leaves, notices).",
                &self.room_events,
            ),
            (
                "tlschat_deliveries_total",
                "Lines queued to members.",
                &self.deliveries,
            ),
            (
                "tlschat_bytes_sent_total",
                "Plaintext bytes written to clients.",
                &self.bytes_sent,
            ),
            (
                "tlschat_redis_reconnects_total",
                "Cluster mode: log reader reconnections after Redis failed.",
                &self.redis_reconnects,
            ),
            (
                "tlschat_orphan_cleanups_total",
                "Cluster mode: sessions of dead nodes announced as left by this node.",
                &self.orphan_cleanups,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let labelled =
            |out: &mut String, name: &str, help: &str, label: &str, rows: &[(&str, &AtomicU64)]| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                for (value, counter) in rows {
                    let _ = writeln!(
                        out,
                        "{name}{{{label}=\"{value}\"}} {}",
                        counter.load(Ordering::Relaxed)
                    );
                }
            };
        labelled(
            &mut out,
            "tlschat_logins_total",
            "Login attempts by result.",
            "result",
            &[
                ("ok", &self.logins_ok),
                ("failed", &self.logins_failed),
                ("throttled", &self.logins_throttled),
                ("busy", &self.logins_busy),
            ],
        );
        labelled(
            &mut out,
            "tlschat_evictions_total",
            "Sessions closed by the server, by reason.",
            "reason",
            &[
                ("send_queue", &self.evictions_send_queue),
                ("no_newline", &self.evictions_no_newline),
                ("admin", &self.evictions_admin),
            ],
        );
        let _ = writeln!(
            out,
            "# HELP tlschat_sessions Sessions logged in here, by protocol.\n# TYPE tlschat_sessions gauge"
        );
        for (protocol, count) in crate::event::Protocol::ALL
            .iter()
            .zip(&self.sessions_by_protocol)
        {
            let _ = writeln!(
                out,
                "tlschat_sessions{{protocol=\"{}\"}} {}",
                protocol.as_str(),
                count.load(Ordering::Relaxed)
            );
        }
        let gauges: [(&str, &str, u64); 4] = [
            (
                "tlschat_connections_open",
                "Connections open.",
                self.connections_open.load(Ordering::Relaxed),
            ),
            (
                "tlschat_members_online",
                "Members logged in.",
                members_online as u64,
            ),
            (
                "tlschat_password_check_queue_depth",
                "Password checks running or waiting.",
                password_queue_depth as u64,
            ),
            (
                "tlschat_log_lag_entries",
                "Cluster mode: entries the log reader got in its last read.",
                self.log_lag_entries.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        self.password_check_seconds.render(
            &mut out,
            "tlschat_password_check_seconds",
            "Time of one argon2id password check.",
        );
        self.delivery_latency_seconds.render(
            &mut out,
            "tlschat_delivery_latency_seconds",
            "Queue-to-socket latency of the oldest line in each write.",
        );
        self.redis_seconds.render(
            &mut out,
            "tlschat_redis_seconds",
            "Cluster mode: round trip of one append to a room's stream in Redis.",
        );
        out
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    gauges: impl Fn() -> (usize, usize) + Send + Sync + 'static,
    shutdown: CancellationToken,
) {
    let gauges = Arc::new(gauges);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_SCRAPES));
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!("metrics scrape refused: too many at once");
            let _ = stream.try_write(BUSY_RESPONSE);
            continue;
        };
        let (metrics, gauges) = (Arc::clone(&metrics), Arc::clone(&gauges));
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let response = scrape(&req, &metrics, gauges.as_ref());
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(REQUEST_TIMEOUT)
                .keep_alive(false)
                .max_buf_size(MAX_REQUEST_BYTES);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            // A scraper that reads its answer too slowly holds a slot no longer than this.
            let _ = tokio::time::timeout(REQUEST_TIMEOUT * 2, connection).await;
        });
    }
}

/// `GET /metrics` (or `/`): the text exposition format; anything else 404.
fn scrape(
    req: &Request<Incoming>,
    metrics: &Metrics,
    gauges: &(impl Fn() -> (usize, usize) + ?Sized),
) -> Response<Full<Bytes>> {
    let wanted = req.method() == Method::GET && matches!(req.uri().path(), "/metrics" | "/");
    if !wanted {
        let mut response = Response::new(Full::default());
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    }
    let (members, queue) = gauges();
    let mut response = Response::new(Full::new(Bytes::from(metrics.render(members, queue))));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(5));
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"1\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
    }

    #[test]
    fn render_has_every_series() {
        let m = Metrics::default();
        inc(&m.logins_ok);
        let text = m.render(5, 2);
        assert!(text.contains("tlschat_members_online 5\n"));
        assert!(text.contains("tlschat_logins_total{result=\"ok\"} 1\n"));
        assert!(text.contains("tlschat_password_check_queue_depth 2\n"));
    }
}

//! Reaching the Redis that the nodes of a cluster share: one way to connect and one error for
//! it failing. The rooms' logs (`room::log::redis`), the node registry
//! (`room::presence::nodes`) and the failure counters (`throttle::redis`) build on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;

use crate::store::Location;

/// How long the first connection may take before Redis counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one attempt of the shared connection to reconnect may take.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Attempts after the first when the shared connection reconnects (100 ms, then 200 ms apart).
const RECONNECT_RETRIES: usize = 2;

/// How long [`Redis::within`] waits.
pub const WAIT_LIMIT: Duration = Duration::from_secs(2);

/// How long a command on the shared connection may wait for its reply before it fails (the
/// client's default, set here so that what relies on it can say so).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

/// Redis failed or could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("redis at {at}: {source}")]
pub struct RedisUnavailable {
    /// Where (its password hidden).
    at: Location,
    /// The client's error.
    source: redis::RedisError,
}

/// A connection to the cluster's Redis: a managed, multiplexed connection that reconnects by
/// itself, and the client for connections of their own (a blocking read); cheap to clone.
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    conn: ConnectionManager,
    /// Redis's clock minus this machine's, in ms, as last measured ([`Redis::measure_clock`]).
    clock_offset_ms: Arc<AtomicI64>,
    at: Location,
}

impl Redis {
    /// Connects to `url` (`redis://[:PASSWORD@]HOST:PORT[/DB]`, `rediss://`,
    /// `redis+unix:///path`), failing within a few seconds if it does not answer (the
    /// managed connection alone would retry for longer before giving up). A `rediss://`
    /// server's certificate must chain to `ca` (PEM) when given, else to the system's roots.
    pub async fn connect(url: &str, ca: Option<&[u8]>) -> Result<Self, RedisUnavailable> {
        let at = Location::url(url);
        let error = |source| RedisUnavailable {
            at: at.clone(),
            source,
        };
        let client = match ca {
            None => redis::Client::open(url),
            Some(pem) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.to_vec()),
                },
            ),
        }
        .map_err(error)?;
        let probe = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(CONNECT_TIMEOUT));
        let mut first = client
            .get_multiplexed_async_connection_with_config(&probe)
            .await
            .map_err(error)?;
        let offset = clock_offset(&mut first).await.map_err(error)?;
        // A request waits while the manager reconnects, through every retry (six by default,
        // 6 s of backoff): few retries keep chat and logins during an outage from waiting for
        // an answer that will not come (the next request tries again anyway).
        let managed = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(RECONNECT_TIMEOUT))
            .set_number_of_retries(RECONNECT_RETRIES);
        let conn = client
            .get_connection_manager_with_config(managed)
            .await
            .map_err(error)?;
        Ok(Redis {
            client,
            conn,
            at,
            clock_offset_ms: Arc::new(AtomicI64::new(offset)),
        })
    }

    /// Measures Redis's clock against this machine's again (after a reconnect, say: the server
    /// may be another one now).
    pub async fn measure_clock(&self) -> Result<(), RedisUnavailable> {
        let offset = clock_offset(&mut self.conn())
            .await
            .map_err(|e| self.error(e))?;
        self.clock_offset_ms.store(offset, Ordering::Relaxed);
        Ok(())
    }

    /// Redis's time now as this node estimates it (ms since the Unix epoch): this machine's
    /// clock plus the offset last measured, within half a round trip of it.
    pub fn redis_now_ms(&self) -> i64 {
        local_ms() + self.clock_offset_ms.load(Ordering::Relaxed)
    }

    /// The shared connection (a clone of the managed one).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// A connection of its own without a response timeout, for a blocking read.
    pub async fn dedicated(&self) -> Result<redis::aio::MultiplexedConnection, RedisUnavailable> {
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.error(e))
    }

    /// `request`, given up after [`WAIT_LIMIT`]: a request waits while the shared connection
    /// reconnects, through all its attempts, which may take seconds while Redis is down. For
    /// what someone waits on (a login answers `Server busy` instead).
    pub async fn within<T>(
        &self,
        request: impl std::future::Future<Output = Result<T, RedisUnavailable>>,
    ) -> Result<T, RedisUnavailable> {
        tokio::time::timeout(WAIT_LIMIT, request)
            .await
            .unwrap_or_else(|_| {
                Err(self.error(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "no answer in time",
                ))))
            })
    }

    /// `source` as this Redis's error.
    pub fn error(&self, source: redis::RedisError) -> RedisUnavailable {
        RedisUnavailable {
            at: self.at.clone(),
            source,
        }
    }
}

/// This machine's clock, ms since the Unix epoch.
fn local_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Redis's clock (`TIME`) minus this machine's at the middle of the round trip, in ms.
async fn clock_offset(
    conn: &mut impl redis::aio::ConnectionLike,
) -> Result<i64, redis::RedisError> {
    let sent = local_ms();
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(conn).await?;
    let received = local_ms();
    Ok(secs * 1000 + micros / 1000 - (sent + received) / 2)
}

//! Reaching the Redis that the nodes of a cluster share: one way to connect and one error for
//! it failing. The rooms' logs (`room::log::redis`), the node registry
//! (`room::presence::nodes`) and the failure counters (`throttle::redis`) build on it.

use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::store::Location;

/// How long the first connection may take before Redis counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
        redis::cmd("PING")
            .query_async::<()>(&mut first)
            .await
            .map_err(error)?;
        let conn = client.get_connection_manager().await.map_err(error)?;
        Ok(Redis { client, conn, at })
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

    /// `source` as this Redis's error.
    pub fn error(&self, source: redis::RedisError) -> RedisUnavailable {
        RedisUnavailable {
            at: self.at.clone(),
            source,
        }
    }
}

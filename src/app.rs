//! The composition root: a server built from its parts and run to shutdown. `tlschat serve`
//! and the tests' `spawn_server` both go through here, so the server under test is the one
//! that ships; only resolving settings, binding and printing stay in `cli`.

use std::io;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::AdminSocket;
use crate::auth::Authenticator;
use crate::cluster::Redis;
use crate::config::{Limits, RoomLimits};
use crate::history::History;
use crate::metrics::Metrics;
use crate::password::Hasher;
use crate::room::Rooms;
use crate::room::shared::Link;
use crate::session::SessionContext;
use crate::store::{Store, StoreError};
use crate::throttle::FailureCounter;
use crate::throttle::redis::RedisCounter;
use crate::tls::ServerConfigs;
use crate::web::Web;

/// What a server is built from, every setting already resolved and checked.
pub struct Parts {
    /// The opened (and migrated) store.
    pub store: Store,
    /// Password hashing.
    pub hasher: Hasher,
    /// TLS configurations with the current certificate.
    pub tls: ServerConfigs,
    /// The web client's settings; `None` turns it off.
    pub web: Option<Arc<Web>>,
    /// Timeouts, caps and rates.
    pub limits: Limits,
    /// Rooms and history.
    pub rooms: RoomLimits,
    /// Load balancers whose connections begin with a PROXY protocol header.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The server's name on IRC (`irc_server_name`).
    pub irc_server_name: String,
    /// Cluster mode: the shared Redis and this node's name; `None` for a single node.
    pub cluster: Option<ClusterSettings>,
}

/// Where a cluster node finds the others.
pub struct ClusterSettings {
    /// `redis://…`, `rediss://…` or `redis+unix://…` (never printed: it may hold a password).
    pub url: String,
    /// This node's name, unique in the cluster.
    pub node_name: String,
    /// PEM certificates a `rediss://` server's certificate must chain to (`None`: the
    /// system's roots).
    pub ca: Option<Vec<u8>>,
}

/// Why a server could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cluster's Redis could not be reached or refused this node.
    #[error("{0}")]
    Cluster(String),
}

/// The listeners a server serves: the chat port and, if configured, the admin socket and the
/// metrics port.
pub struct Listeners {
    /// The chat port (TLS lines and the web client).
    pub chat: TcpListener,
    /// The IRC port (TLS only), if IRC is on.
    pub irc: Option<TcpListener>,
    /// The admin control socket.
    pub admin: Option<AdminSocket>,
    /// The Prometheus `/metrics` port.
    pub metrics: Option<TcpListener>,
}

/// A built server: its shared session context and the store it closes at the end.
pub struct App {
    ctx: Arc<SessionContext>,
    web: Option<Arc<Web>>,
    trusted_proxies: Arc<[std::net::IpAddr]>,
    store: Store,
    /// The cluster link's tasks, started by [`App::run`].
    cluster: Option<crate::room::shared::Started>,
}

impl App {
    /// Starts the history writer and builds the rooms, the authenticator and the context
    /// every session shares.
    pub async fn build(parts: Parts) -> Result<App, BuildError> {
        let Parts {
            store,
            hasher,
            tls,
            web,
            limits,
            rooms,
            trusted_proxies,
            irc_server_name,
            cluster,
        } = parts;
        let metrics = Arc::new(Metrics::default());
        let history = History::start(rooms, store.clone()).await?;
        let (room, failures, cluster) = match cluster {
            None => {
                let room = Rooms::with_history(
                    limits.outbound_queue_bytes,
                    Arc::clone(&metrics),
                    Arc::clone(&history),
                );
                (room, FailureCounter::new(&limits), None)
            }
            Some(settings) => {
                let cluster_error = |e: &dyn std::fmt::Display| BuildError::Cluster(e.to_string());
                let redis = Redis::connect(&settings.url, settings.ca.as_deref())
                    .await
                    .map_err(|e| cluster_error(&e))?;
                let started =
                    Link::connect(redis.clone(), &settings.node_name, rooms.history_messages)
                        .await
                        .map_err(|e| cluster_error(&e))?;
                history.read_from(Arc::new(started.link.logs.clone()));
                let room = Rooms::clustered(
                    limits.outbound_queue_bytes,
                    Arc::clone(&metrics),
                    Arc::clone(&history),
                    Arc::clone(&started.link),
                )
                .await
                .map_err(|e| cluster_error(&e))?;
                let failures = FailureCounter::Redis(RedisCounter::new(redis, &limits));
                (room, failures, Some(started))
            }
        };
        let room = Arc::new(room);
        let ctx = Arc::new(SessionContext {
            tls,
            auth: Authenticator::new(store.clone(), hasher, failures),
            room,
            memberships: history.memberships(),
            history,
            metrics,
            limits,
            irc: crate::session::IrcSettings::new(irc_server_name),
        });
        let trusted_proxies = trusted_proxies
            .into_iter()
            .map(crate::throttle::canonical)
            .collect();
        Ok(App {
            ctx,
            web,
            trusted_proxies,
            store,
            cluster,
        })
    }

    /// The context every session shares (rooms, history, metrics, limits).
    pub fn context(&self) -> &Arc<SessionContext> {
        &self.ctx
    }

    /// Serves until `shutdown` is cancelled, then lets sessions say goodbye, writes all
    /// history and closes the store.
    pub async fn run(self, listeners: Listeners, shutdown: CancellationToken) -> io::Result<()> {
        let ctx = self.ctx;
        let cluster = self
            .cluster
            .map(|cluster| cluster.run(&ctx.room, &ctx.metrics, shutdown.clone()));
        if let Some(socket) = listeners.admin {
            tokio::spawn(crate::admin::serve(
                socket,
                Arc::clone(&ctx.room),
                Arc::clone(&ctx.metrics),
                shutdown.clone(),
            ));
        }
        if let Some(listener) = listeners.metrics {
            let (room, hasher) = (Arc::clone(&ctx.room), ctx.auth.hasher().clone());
            tokio::spawn(crate::metrics::serve(
                listener,
                Arc::clone(&ctx.metrics),
                move || (room.presence().len(), hasher.queue_depth()),
                shutdown.clone(),
            ));
        }
        let front = (self.web, self.trusted_proxies);
        let ports = (listeners.chat, listeners.irc);
        let served = crate::server::run(ports, ctx, front, shutdown).await;
        if let Some(cluster) = cluster {
            cluster.finish().await;
        }
        self.store.close().await;
        served
    }
}

//! The composition root: a server built from its parts and run to shutdown. `tlschat serve`
//! and the tests' `spawn_server` both go through here, so the server under test is the one
//! that ships; only resolving settings, binding and printing stay in `cli`.

use std::io;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::AdminSocket;
use crate::auth::Authenticator;
use crate::config::{Limits, RoomLimits};
use crate::history::History;
use crate::metrics::Metrics;
use crate::password::Hasher;
use crate::room::Rooms;
use crate::session::SessionContext;
use crate::store::{Store, StoreError};
use crate::throttle::FailureCounter;
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
}

/// The listeners a server serves: the chat port and, if configured, the admin socket and the
/// metrics port.
pub struct Listeners {
    /// The chat port (TLS lines and the web client).
    pub chat: TcpListener,
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
}

impl App {
    /// Starts the history writer and builds the rooms, the authenticator and the context
    /// every session shares.
    pub async fn build(parts: Parts) -> Result<App, StoreError> {
        let Parts {
            store,
            hasher,
            tls,
            web,
            limits,
            rooms,
            trusted_proxies,
        } = parts;
        let metrics = Arc::new(Metrics::default());
        let history = History::start(rooms, store.clone()).await?;
        let room = Arc::new(Rooms::with_history(
            limits.outbound_queue_bytes,
            Arc::clone(&metrics),
            Arc::clone(&history),
        ));
        let ctx = Arc::new(SessionContext {
            tls,
            auth: Authenticator::new(store.clone(), hasher, FailureCounter::new(&limits)),
            room,
            memberships: history.memberships(),
            history,
            metrics,
            limits,
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
        let served = crate::server::run(listeners.chat, ctx, front, shutdown).await;
        self.store.close().await;
        served
    }
}

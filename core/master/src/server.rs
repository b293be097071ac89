//! Runs a master: the actor plus its listener, which serves gRPC for agents and plain HTTP
//! for people and tools on the same port (Mesos' 5050 carries everything too).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;
use tessera_api::pb::agent_service_server::AgentServiceServer;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::actor::Master;
use crate::config::MasterConfig;
use crate::error::Result;
use crate::grpc::AgentService;
use crate::handle::MasterHandle;
use crate::recovery::{Recovery, RecoveryState};
use crate::registry::{Registry, SqliteRegistry};

/// Capacity of the actor's command queue (backpressure for every caller).
pub const COMMAND_QUEUE: usize = 16_384;

/// A running master.
pub struct RunningMaster {
    pub handle: MasterHandle,
    pub addr: std::net::SocketAddr,
    pub master_id: String,
    pub join: tokio::task::JoinHandle<()>,
    /// Whether the registry has been read (the v1 APIs answer 503 until it has).
    pub recovery: Recovery,
}

/// Starts the actor only (no listener): for tests and in-process simulation.
pub fn spawn_actor(
    config: MasterConfig,
    registry: Box<dyn Registry>,
    shutdown: CancellationToken,
) -> Result<(MasterHandle, String, tokio::task::JoinHandle<()>)> {
    let master = Master::new(config, registry)?;
    let id = master.master_id().to_string();
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let join = tokio::spawn(master.run(rx, shutdown));
    Ok((MasterHandle::new(tx), id, join))
}

/// Opens the registry under the work directory, binds the listener and serves until
/// `shutdown` fires. Returns once the registry has been recovered.
pub async fn start(config: MasterConfig, shutdown: CancellationToken) -> Result<RunningMaster> {
    start_with(config, Router::new(), shutdown).await
}

/// [`start`], also serving `extra` routes on the master's port (how `tessera up` hosts the
/// first-party frameworks' REST APIs next to the master's own). The master knows nothing of
/// what they do; they talk to it over the public APIs like any framework.
pub async fn start_with(
    config: MasterConfig,
    extra: Router,
    shutdown: CancellationToken,
) -> Result<RunningMaster> {
    config.validate()?;
    let registry = SqliteRegistry::open(&config.work_dir)?;
    let running = start_recovering(config, Box::new(registry), extra, shutdown).await?;
    running.recovery.wait().await?;
    Ok(running)
}

/// Binds the listener and serves at once, reading `registry` in the background (Mesos'
/// registrar recovery). Until it has been read, `/api/v1/scheduler` and `/api/v1` answer
/// 503 with `Retry-After`; other endpoints wait for the actor. Returns as soon as the
/// listener serves: watch [`RunningMaster::recovery`] for the outcome. If the registry
/// cannot be read, the master stops (`join` ends) and never serves the APIs.
pub async fn start_recovering(
    config: MasterConfig,
    registry: Box<dyn Registry>,
    extra: Router,
    shutdown: CancellationToken,
) -> Result<RunningMaster> {
    config.validate()?;
    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|e| crate::error::MasterError::Config {
                field: "listen".into(),
                reason: format!("cannot bind {}: {e}", config.listen),
            })?;
    let addr = listener.local_addr()?;
    let master_id = crate::actor::new_master_id();
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let handle = MasterHandle::new(tx);
    let (recovered_tx, recovery) = Recovery::start();
    let http_state = crate::http::HttpState {
        handle: handle.clone(),
        identity: std::sync::Arc::new(crate::http::MasterIdentity {
            id: master_id.clone(),
            hostname: config.hostname.clone(),
            addr,
            domain: config.domain.clone(),
        }),
        streams: Default::default(),
        heartbeat: config.scheduler_heartbeat_interval,
        standby_of: config.standby_of.clone(),
        flags: std::sync::Arc::new(config.flags()),
        recovery: recovery.clone(),
    };
    // Only the agent service's own paths go to gRPC, so unknown paths get a plain 404.
    let grpc = Router::new().route_service(
        &format!(
            "/{}/{{*method}}",
            <AgentServiceServer<AgentService> as tonic::server::NamedService>::NAME
        ),
        AgentServiceServer::new(AgentService::new(handle.sender())),
    );
    let app = Router::new()
        .route("/tessera/state", get(state))
        .route("/metrics", get(metrics))
        .with_state(handle.clone())
        .merge(crate::http::router(http_state.clone()))
        .merge(extra)
        .fallback(not_found);
    let app = crate::http::with_standby(app, http_state).merge(grpc);
    let stop = shutdown.clone();
    let server = tokio::spawn(async move {
        // Small messages (status updates, acks) must not wait for Nagle's algorithm.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
        });
        // Connection info lets the agent service record each agent's address (the one its
        // HTTP endpoints are reached at, shown in offers and /master/slaves).
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "master listener failed");
        }
    });
    let id = master_id.clone();
    let join = tokio::spawn(async move {
        tracing::info!(master_id = %id, "recovering the registry");
        // Reading the registry blocks (SQLite): keep it off the async workers.
        let built = tokio::task::spawn_blocking(move || Master::with_id(config, registry, id))
            .await
            .map_err(|e| format!("the recovery task failed: {e}"))
            .and_then(|r| r.map_err(|e| e.to_string()));
        match built {
            Ok(master) => {
                let _ = recovered_tx.send(RecoveryState::Recovered);
                master.run(rx, shutdown).await;
            }
            Err(why) => {
                tracing::error!(error = %why, "could not recover the registry; stopping");
                let _ = recovered_tx.send(RecoveryState::Failed(why));
                drop(rx);
            }
        }
        server.abort();
    });
    tracing::info!(%addr, %master_id, "master listening");
    Ok(RunningMaster {
        handle,
        addr,
        master_id,
        join,
        recovery,
    })
}

async fn state(State(h): State<MasterHandle>) -> axum::response::Response {
    match h.state().await {
        Ok(s) => axum::Json(s).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn metrics(State(h): State<MasterHandle>) -> axum::response::Response {
    match h.state().await {
        Ok(s) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            crate::metrics::prometheus(&s),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn not_found(uri: axum::http::Uri) -> axum::response::Response {
    (
        StatusCode::NOT_FOUND,
        format!(
            "no endpoint at {}; see GET / for what this master serves\n",
            uri.path()
        ),
    )
        .into_response()
}

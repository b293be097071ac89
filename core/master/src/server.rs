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
use crate::registry::{Registry, SqliteRegistry};

/// Capacity of the actor's command queue (backpressure for every caller).
pub const COMMAND_QUEUE: usize = 16_384;

/// A running master.
pub struct RunningMaster {
    pub handle: MasterHandle,
    pub addr: std::net::SocketAddr,
    pub master_id: String,
    pub join: tokio::task::JoinHandle<()>,
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
/// `shutdown` fires.
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
    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|e| crate::error::MasterError::Config {
                field: "listen".into(),
                reason: format!("cannot bind {}: {e}", config.listen),
            })?;
    let addr = listener.local_addr()?;
    let config_hostname = config.hostname.clone();
    let flags = config.flags();
    let heartbeat = config.scheduler_heartbeat_interval;
    let standby_of = config.standby_of.clone();
    let (handle, master_id, actor) = spawn_actor(config, Box::new(registry), shutdown.clone())?;
    // Only the agent service's own paths go to gRPC, so unknown paths get a plain 404.
    let grpc = Router::new().route_service(
        &format!(
            "/{}/{{*method}}",
            <AgentServiceServer<AgentService> as tonic::server::NamedService>::NAME
        ),
        AgentServiceServer::new(AgentService::new(handle.sender())),
    );
    let http_state = crate::http::HttpState {
        handle: handle.clone(),
        identity: std::sync::Arc::new(crate::http::MasterIdentity {
            id: master_id.clone(),
            hostname: config_hostname,
            addr,
        }),
        streams: Default::default(),
        heartbeat,
        standby_of,
        flags: std::sync::Arc::new(flags),
    };
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
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "master listener failed");
        }
    });
    let join = tokio::spawn(async move {
        let _ = actor.await;
        server.abort();
    });
    tracing::info!(%addr, %master_id, "master listening");
    Ok(RunningMaster {
        handle,
        addr,
        master_id,
        join,
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

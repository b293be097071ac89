//! The master's HTTP surface: the Mesos v1 scheduler API (`/api/v1/scheduler`), the
//! small tooling endpoints clients need before they subscribe (`/version`, `/health`,
//! `/redirect`), Prometheus `/metrics`, standby redirects, and 503 on the v1 APIs while the
//! registry is still being recovered. Every endpoint is served at `/master/<name>` and at the
//! bare `/<name>`, as Mesos does.
//!
//! This layer is thin: it decodes and validates, calls the [`MasterHandle`], and encodes.

// Errors here are whole HTTP responses, built once per request and returned straight away.
#![allow(clippy::result_large_err)]

mod encoding;
mod events;
mod maintenance;
mod offer_ops;
mod operator;
mod operator_convert;
mod scheduler;
mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tessera_types::FrameworkId;

use crate::config::MESOS_API_VERSION;
use crate::handle::MasterHandle;

/// What the HTTP layer knows about this master, for `MasterInfo` and redirects.
#[derive(Debug, Clone)]
pub struct MasterIdentity {
    pub id: String,
    pub hostname: String,
    pub addr: std::net::SocketAddr,
    /// The master's fault domain (`MasterInfo.domain`).
    pub domain: Option<crate::model::FaultDomain>,
}

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct HttpState {
    pub handle: MasterHandle,
    pub identity: Arc<MasterIdentity>,
    /// Framework → the `Mesos-Stream-Id` of its one live subscription.
    pub streams: Arc<Mutex<HashMap<FrameworkId, String>>>,
    pub heartbeat: Duration,
    pub standby_of: Option<String>,
    /// The master's effective settings, for `/master/flags`.
    pub flags: Arc<std::collections::BTreeMap<String, String>>,
    /// Whether the registry has been read; the v1 APIs answer 503 until it has.
    pub recovery: crate::recovery::Recovery,
}

/// Largest request body accepted (a big ACCEPT with many tasks fits easily).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

pub fn router(state: HttpState) -> Router {
    let mut r = Router::new();
    for prefix in ["", "/master"] {
        r = r
            .route(
                &format!("{prefix}/api/v1/scheduler"),
                post(scheduler::handle).fallback(method_not_allowed),
            )
            .route(
                &format!("{prefix}/api/v1"),
                post(operator::handle).fallback(method_not_allowed),
            )
            .route(
                &format!("{prefix}/api/v1/operator"),
                post(operator::handle).fallback(method_not_allowed),
            )
            .route(&format!("{prefix}/version"), get(version))
            .route(&format!("{prefix}/health"), get(|| async { "OK\n" }))
            .route(&format!("{prefix}/redirect"), get(redirect))
            .route(&format!("{prefix}/state"), get(state::state))
            .route(&format!("{prefix}/state.json"), get(state::state))
            .route(&format!("{prefix}/slaves"), get(state::slaves))
            .route(&format!("{prefix}/frameworks"), get(state::frameworks))
            .route(&format!("{prefix}/tasks"), get(state::tasks))
            .route(&format!("{prefix}/tasks.json"), get(state::tasks))
            .route(&format!("{prefix}/roles"), get(state::roles))
            .route(
                &format!("{prefix}/weights"),
                get(state::weights).put(operator::put_weights),
            )
            .route(&format!("{prefix}/quota"), get(operator::get_quota_v0))
            .route(
                &format!("{prefix}/maintenance/schedule"),
                get(maintenance::legacy_get_schedule).post(maintenance::legacy_post_schedule),
            )
            .route(
                &format!("{prefix}/maintenance/status"),
                get(maintenance::legacy_status),
            )
            .route(
                &format!("{prefix}/machine/down"),
                post(maintenance::legacy_down),
            )
            .route(
                &format!("{prefix}/machine/up"),
                post(maintenance::legacy_up),
            )
            .route(&format!("{prefix}/flags"), get(state::flags));
    }
    r.route("/", get(root))
        .route("/metrics/snapshot", get(state::metrics_snapshot))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Wraps a router with Mesos' leadership checks, in Mesos' order: a standby master
/// redirects to its leader (307), then a leader still recovering its registry answers the
/// v1 APIs with 503.
pub fn with_standby(router: Router, state: HttpState) -> Router {
    router
        .layer(middleware::from_fn_with_state(state.clone(), recovering))
        .layer(middleware::from_fn_with_state(state, standby))
}

/// Seconds a client is asked to wait (`Retry-After`) while the registry is recovered.
pub const RECOVERY_RETRY_AFTER_SECS: u32 = 1;

/// The v1 API paths that answer 503 until recovery ends (Mesos checks `recovered` in the
/// scheduler and operator API handlers only).
fn is_v1_api(path: &str) -> bool {
    let bare = path.strip_prefix("/master").unwrap_or(path);
    matches!(bare, "/api/v1/scheduler" | "/api/v1" | "/api/v1/operator")
}

/// 503 "Master has not finished recovery" (with `Retry-After`) on the v1 APIs until the
/// registry has been read; before the method check, as in Mesos.
async fn recovering(State(st): State<HttpState>, req: Request, next: Next) -> Response {
    if st.recovery.is_recovered() || !is_v1_api(req.uri().path()) {
        return next.run(req).await;
    }
    let msg = match st.recovery.state() {
        crate::recovery::RecoveryState::Failed(why) => {
            format!("Master has not finished recovery: {why}\n")
        }
        _ => "Master has not finished recovery\n".to_string(),
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (header::RETRY_AFTER, RECOVERY_RETRY_AFTER_SECS.to_string()),
            (
                header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_string(),
            ),
        ],
        msg,
    )
        .into_response()
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST")],
        "Expecting a 'POST' request\n",
    )
        .into_response()
}

async fn root() -> &'static str {
    "Tessera master. Frameworks: POST /api/v1/scheduler. State: GET /state. Health: GET /health.\n"
}

async fn version() -> Response {
    axum::Json(serde_json::json!({
        "version": MESOS_API_VERSION,
        "tessera_version": env!("CARGO_PKG_VERSION"),
        "build_user": "tessera",
    }))
    .into_response()
}

/// `/redirect`: 307 to the leader (this master when it leads), no path.
async fn redirect(State(st): State<HttpState>) -> Response {
    let leader = st
        .standby_of
        .clone()
        .unwrap_or_else(|| format!("{}:{}", st.identity.hostname, st.identity.addr.port()));
    temporary_redirect(&format!("//{leader}"))
}

fn temporary_redirect(location: &str) -> Response {
    let mut resp = StatusCode::TEMPORARY_REDIRECT.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// A standby master sends every request but the always-local ones to the leader.
async fn standby(State(st): State<HttpState>, req: Request, next: Next) -> Response {
    let Some(leader) = &st.standby_of else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    let local = [
        "/health",
        "/version",
        "/metrics",
        "/metrics/snapshot",
        "/flags",
    ];
    let bare = path.strip_prefix("/master").unwrap_or(path);
    if local.contains(&bare) {
        return next.run(req).await;
    }
    if bare == "/redirect" {
        return temporary_redirect(&format!("//{leader}"));
    }
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    temporary_redirect(&format!("//{leader}{pq}"))
}

//! The Mesos v0 JSON tooling endpoints (`/master/state`, `/master/slaves`,
//! `/master/frameworks`, `/master/tasks`, `/master/roles`, `/master/flags`, `/master/weights`,
//! `/metrics/snapshot`), rendered from the master's state snapshot with Mesos' v0 names
//! (`slave_id`, flattened resource maps).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tessera_types::{Resources, TaskState};

mod v0;

use super::HttpState;
use super::encoding::error;
use crate::model::{AgentState, AgentView, FrameworkState, MasterState, TaskEntry};

fn pid(st: &HttpState) -> String {
    format!(
        "master@{}:{}",
        st.identity.addr.ip(),
        st.identity.addr.port()
    )
}

fn flags_map(st: &HttpState) -> Value {
    Value::Object(
        st.flags
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect(),
    )
}

async fn snapshot(st: &HttpState) -> Result<MasterState, Response> {
    st.handle
        .state()
        .await
        .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

/// Rough bytes per task and per agent in the v0 JSON, to size the output buffer once.
fn size_hint(s: &MasterState) -> usize {
    (s.tasks.len() + s.completed_tasks.len()) * 400 + s.agents.len() * 1200 + 4096
}

pub async fn state(State(st): State<HttpState>) -> Response {
    let s = match snapshot(&st).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    // Tens of megabytes at 100,000 tasks: render off the async workers (dropping the
    // snapshot there too).
    tokio::task::spawn_blocking(move || v0::json_response(&v0::full_state(&st, &s), size_hint(&s)))
        .await
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

pub async fn slaves(State(st): State<HttpState>) -> Response {
    let s = match snapshot(&st).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    #[derive(serde::Serialize)]
    struct Slaves<'a> {
        slaves: Vec<v0::Slave<'a>>,
        recovered_slaves: Vec<v0::Slave<'a>>,
    }
    let (recovered, live): (Vec<&AgentView>, Vec<&AgentView>) = s
        .agents
        .iter()
        .partition(|a| a.state == AgentState::Recovered);
    let body = Slaves {
        slaves: live.into_iter().map(v0::slave).collect(),
        recovered_slaves: recovered.into_iter().map(v0::slave).collect(),
    };
    v0::json_response(&body, s.agents.len() * 1200 + 64)
}

pub async fn frameworks(State(st): State<HttpState>) -> Response {
    let s = match snapshot(&st).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    #[derive(serde::Serialize)]
    struct Frameworks<'a> {
        frameworks: Vec<v0::Framework<'a>>,
        completed_frameworks: [(); 0],
        unregistered_frameworks: [(); 0],
    }
    let by = v0::ByFramework::new(&s);
    let body = Frameworks {
        frameworks: s.frameworks.iter().map(|f| v0::framework(f, &by)).collect(),
        completed_frameworks: [],
        unregistered_frameworks: [],
    };
    v0::json_response(&body, size_hint(&s))
}

#[derive(serde::Deserialize)]
pub struct TasksQuery {
    limit: Option<usize>,
    offset: Option<usize>,
    order: Option<String>,
    framework_id: Option<String>,
    task_id: Option<String>,
}

pub async fn tasks(State(st): State<HttpState>, Query(q): Query<TasksQuery>) -> Response {
    let s = match snapshot(&st).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut all: Vec<&TaskEntry> = s
        .tasks
        .iter()
        .chain(s.completed_tasks.iter())
        .map(|t| t.as_ref())
        .collect();
    all.retain(|t| {
        q.framework_id
            .as_deref()
            .is_none_or(|f| t.framework_id.as_str() == f)
            && q.task_id
                .as_deref()
                .is_none_or(|id| t.info.task_id.as_str() == id)
    });
    all.sort_by(|a, b| {
        let ta = a.last_status.as_ref().map_or(0.0, |s| s.timestamp);
        let tb = b.last_status.as_ref().map_or(0.0, |s| s.timestamp);
        ta.total_cmp(&tb)
    });
    if q.order.as_deref() == Some("des") {
        all.reverse();
    }
    let limit = q.limit.unwrap_or(100);
    let offset = q.offset.unwrap_or(0);
    #[derive(serde::Serialize)]
    struct Tasks<'a> {
        tasks: Vec<v0::Task<'a>>,
    }
    let page = Tasks {
        tasks: all
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(v0::task)
            .collect(),
    };
    v0::json_response(&page, limit.min(100_000) * 400 + 64)
}

fn quantities(q: &BTreeMap<String, tessera_types::Scalar>) -> Value {
    Value::Object(
        q.iter()
            .map(|(k, v)| (k.clone(), json!(v.as_f64())))
            .collect(),
    )
}

pub async fn roles(State(st): State<HttpState>) -> Response {
    let s = match snapshot(&st).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let roles: Vec<Value> = s
        .roles
        .iter()
        .map(|r| {
            let fws: Vec<&str> = s
                .frameworks
                .iter()
                .filter(|f| f.roles.contains(&r.role))
                .map(|f| f.id.as_str())
                .collect();
            let mut v = json!({
                "name": r.role.as_str(),
                "weight": r.weight,
                "frameworks": fws,
                "allocated": quantities(&r.allocated),
                "resources": quantities(&r.allocated),
                "tessera_share": r.share,
                "tessera_last_unmet": r.last_unmet,
            });
            if let Some(q) = &r.quota {
                v["quota"] = json!({
                    "role": r.role.as_str(),
                    "guarantee": quantities(&q.guarantees),
                    "limit": quantities(&q.limits),
                    "consumed": quantities(&r.consumed),
                });
            }
            v
        })
        .collect();
    Json(json!({ "roles": roles })).into_response()
}

pub async fn weights(State(st): State<HttpState>) -> Response {
    match snapshot(&st).await {
        Ok(s) => Json(
            s.roles
                .iter()
                .map(|r| json!({"role": r.role.as_str(), "weight": r.weight}))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(r) => r,
    }
}

pub async fn flags(State(st): State<HttpState>) -> Response {
    Json(json!({ "flags": flags_map(&st) })).into_response()
}

/// `/metrics/snapshot`: a flat object with Mesos' key names.
pub async fn metrics_snapshot(State(st): State<HttpState>) -> Response {
    let s = match snapshot(&st).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut m = Map::new();
    let mut put = |k: &str, v: f64| {
        m.insert(k.to_string(), json!(v));
    };
    put(
        "master/elected",
        if st.standby_of.is_some() { 0.0 } else { 1.0 },
    );
    let now = crate::agents::wall_seconds();
    put("master/uptime_secs", (now - s.start_time).max(0.0));
    let mut total = Resources::new();
    let mut used = Resources::new();
    for a in s.agents.iter().filter(|a| a.state == AgentState::Active) {
        let _ = total.add_assign(&a.resources);
        let _ = used.add_assign(&a.used);
    }
    for r in ["cpus", "gpus", "mem", "disk"] {
        let t = total.scalar(r).as_f64();
        let u = used.scalar(r).as_f64();
        put(&format!("master/{r}_total"), t);
        put(&format!("master/{r}_used"), u);
        put(
            &format!("master/{r}_percent"),
            if t > 0.0 { u / t } else { 0.0 },
        );
    }
    let count = |st: AgentState| s.agents.iter().filter(|a| a.state == st).count() as f64;
    put("master/slaves_active", count(AgentState::Active));
    put("master/slaves_connected", count(AgentState::Active));
    put(
        "master/slaves_disconnected",
        count(AgentState::Disconnected) + count(AgentState::Unreachable),
    );
    put("master/slaves_inactive", count(AgentState::Disconnected));
    put("master/slaves_unreachable", count(AgentState::Unreachable));
    put(
        "master/slave_registrations",
        s.metrics.agents_registered as f64,
    );
    put(
        "master/slave_reregistrations",
        s.metrics.agents_reregistered as f64,
    );
    put(
        "master/slave_unreachable_completed",
        s.metrics.agents_unreachable as f64,
    );
    let fw_active = s
        .frameworks
        .iter()
        .filter(|f| f.state == FrameworkState::Active)
        .count() as f64;
    put("master/frameworks_active", fw_active);
    put("master/frameworks_connected", fw_active);
    put(
        "master/frameworks_disconnected",
        s.frameworks.len() as f64 - fw_active,
    );
    put(
        "master/frameworks_inactive",
        s.frameworks.len() as f64 - fw_active,
    );
    put("master/outstanding_offers", s.offers.len() as f64);
    for state in [
        TaskState::TaskStaging,
        TaskState::TaskStarting,
        TaskState::TaskRunning,
        TaskState::TaskKilling,
        TaskState::TaskUnreachable,
    ] {
        let n = s.tasks.iter().filter(|t| t.state == state).count() as f64;
        put(
            &format!(
                "master/tasks_{}",
                state
                    .name()
                    .trim_start_matches("TASK_")
                    .to_ascii_lowercase()
            ),
            n,
        );
    }
    for state in [
        TaskState::TaskFinished,
        TaskState::TaskFailed,
        TaskState::TaskKilled,
        TaskState::TaskLost,
        TaskState::TaskError,
        TaskState::TaskDropped,
        TaskState::TaskGone,
        TaskState::TaskGoneByOperator,
    ] {
        let n = s
            .completed_tasks
            .iter()
            .filter(|t| t.state == state)
            .count() as f64;
        put(
            &format!(
                "master/tasks_{}",
                state
                    .name()
                    .trim_start_matches("TASK_")
                    .to_ascii_lowercase()
            ),
            n,
        );
    }
    put(
        "master/messages_launch_tasks",
        s.metrics.tasks_launched as f64,
    );
    put(
        "master/messages_decline_offers",
        s.metrics.offers_declined as f64,
    );
    put(
        "master/messages_status_update",
        s.metrics.status_updates as f64,
    );
    put("master/invalid_status_updates", 0.0);
    put(
        "master/dropped_messages",
        s.metrics.invalid_agent_messages as f64,
    );
    put(
        "allocator/mesos/allocation_runs",
        s.metrics.allocation_runs as f64,
    );
    put(
        "allocator/mesos/allocation_run_ms",
        s.metrics.last_allocation_ms,
    );
    for r in &s.roles {
        put(
            &format!("allocator/mesos/roles/{}/shares/dominant", r.role),
            r.share,
        );
    }
    Json(Value::Object(m)).into_response()
}

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

use super::HttpState;
use super::encoding::error;
use super::events::master_info;
use crate::config::MESOS_API_VERSION;
use crate::model::{
    AgentState, AgentView, FrameworkState, FrameworkView, MasterState, Offer, TaskEntry,
};

/// Mesos v0 resources: scalars summed per name (cpus, gpus, mem, disk always present),
/// ranges and sets as strings.
pub fn flat_resources(r: &Resources) -> Value {
    let mut m = Map::new();
    for n in ["cpus", "gpus", "mem", "disk"] {
        m.insert(n.into(), json!(0.0));
    }
    for (name, q) in r.quantities() {
        m.insert(name, json!(q.as_f64()));
    }
    for name in r.names() {
        let ranges = r.ranges(name);
        if !ranges.is_empty() {
            m.insert(name.to_string(), json!(ranges.to_string()));
        }
    }
    for (k, v) in r.iter() {
        if let tessera_types::Value::Set(items) = v {
            let joined: Vec<&str> = items.iter().map(String::as_str).collect();
            m.insert(k.name.clone(), json!(format!("{{{}}}", joined.join(","))));
        }
    }
    Value::Object(m)
}

fn attributes(a: &[(String, String)]) -> Value {
    let mut m = Map::new();
    for (k, v) in a {
        let val = v
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .map_or_else(|| json!(v), |x| json!(x));
        m.insert(k.clone(), val);
    }
    Value::Object(m)
}

fn pid(st: &HttpState) -> String {
    format!(
        "master@{}:{}",
        st.identity.addr.ip(),
        st.identity.addr.port()
    )
}

fn slave(a: &AgentView) -> Value {
    let mut reserved: BTreeMap<String, Resources> = BTreeMap::new();
    for (k, v) in a.resources.iter().filter(|(k, _)| k.is_reserved()) {
        let one = Resources::from_resources(
            "r",
            [tessera_types::Resource {
                key: k.clone(),
                value: v.clone(),
            }],
        )
        .unwrap_or_default();
        let _ = reserved
            .entry(k.role().to_string())
            .or_default()
            .add_assign(&one);
    }
    let port = if a.http_port == 0 { 5051 } else { a.http_port };
    let ip =
        a.ip.map(|i| i.to_string())
            .unwrap_or_else(|| "127.0.0.1".into());
    json!({
        "id": a.id.as_str(),
        "hostname": a.hostname,
        "port": port,
        "pid": format!("slave(1)@{ip}:{port}"),
        "attributes": attributes(&a.attributes),
        "registered_time": a.registered_time,
        "resources": flat_resources(&a.resources),
        "used_resources": flat_resources(&a.used),
        "offered_resources": flat_resources(&a.offered),
        "reserved_resources": reserved.iter().map(|(r, res)| (r.clone(), flat_resources(res))).collect::<Map<_, _>>(),
        "unreserved_resources": flat_resources(&a.resources.unreserved()),
        "active": a.state == AgentState::Active,
        "deactivated": a.state != AgentState::Active,
        "version": MESOS_API_VERSION,
        "capabilities": ["MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT"],
    })
}

fn task(t: &TaskEntry) -> Value {
    let statuses: Vec<Value> = t
        .last_status
        .iter()
        .map(|s| json!({"state": s.state.name(), "timestamp": s.timestamp}))
        .collect();
    json!({
        "id": t.info.task_id.as_str(),
        "name": t.info.name,
        "framework_id": t.framework_id.as_str(),
        "executor_id": "",
        "slave_id": t.info.agent_id.as_str(),
        "state": t.state.name(),
        "resources": flat_resources(&t.info.resources),
        "role": t.role.as_str(),
        "statuses": statuses,
    })
}

fn offer(o: &Offer) -> Value {
    json!({
        "id": o.id.as_str(),
        "framework_id": o.framework_id.as_str(),
        "slave_id": o.agent_id.as_str(),
        "allocation_info": {"role": o.role.as_str()},
        "resources": flat_resources(&o.resources),
    })
}

fn framework(f: &FrameworkView, s: &MasterState) -> Value {
    let mut used = Resources::new();
    let tasks: Vec<Value> = s
        .tasks
        .iter()
        .filter(|t| t.framework_id == f.id)
        .inspect(|t| {
            let _ = used.add_assign(&t.info.resources);
        })
        .map(task)
        .collect();
    let completed: Vec<Value> = s
        .completed_tasks
        .iter()
        .filter(|t| t.framework_id == f.id)
        .map(task)
        .collect();
    let mut offered = Resources::new();
    let offers: Vec<Value> = s
        .offers
        .iter()
        .filter(|o| o.framework_id == f.id)
        .inspect(|o| {
            let _ = offered.add_assign(&o.resources);
        })
        .map(offer)
        .collect();
    let caps: Vec<Value> = f
        .info
        .capabilities
        .iter()
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    let mut v = json!({
        "id": f.id.as_str(),
        "name": f.name,
        "user": f.info.user,
        "hostname": f.info.hostname.clone().unwrap_or_default(),
        "webui_url": "",
        "failover_timeout": f.info.failover_timeout_secs,
        "checkpoint": false,
        "active": f.state == FrameworkState::Active,
        "connected": f.state == FrameworkState::Active,
        "recovered": false,
        "registered_time": f.registered_time,
        "unregistered_time": 0,
        "capabilities": caps,
        "roles": f.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "role": f.roles.first().map(|r| r.as_str()).unwrap_or("*"),
        "used_resources": flat_resources(&used),
        "offered_resources": flat_resources(&offered),
        "resources": flat_resources(&used.checked_add(&offered).unwrap_or_default()),
        "tasks": tasks,
        "unreachable_tasks": [],
        "completed_tasks": completed,
        "offers": offers,
        "executors": [],
    });
    if let Some(p) = &f.info.principal {
        v["principal"] = json!(p);
    }
    v
}

fn full_state(st: &HttpState, s: &MasterState) -> Value {
    let pid = pid(st);
    let active = s
        .agents
        .iter()
        .filter(|a| a.state == AgentState::Active)
        .count();
    let unreachable = s
        .agents
        .iter()
        .filter(|a| a.state == AgentState::Unreachable)
        .count();
    let mi = master_info(&st.identity);
    json!({
        "version": MESOS_API_VERSION,
        "build_date": "",
        "build_time": 0,
        "build_user": "tessera",
        "start_time": s.start_time,
        "elected_time": s.start_time,
        "id": s.master_id,
        "pid": pid,
        "hostname": st.identity.hostname,
        "capabilities": ["AGENT_UPDATE", "QUOTA_V2"],
        "activated_slaves": active,
        "deactivated_slaves": s.agents.len() - active - unreachable,
        "unreachable_slaves": unreachable,
        "leader": pid,
        "leader_info": {"id": mi.id, "pid": mi.pid, "port": mi.port, "hostname": mi.hostname},
        "flags": flags_map(st),
        "slaves": s.agents.iter().filter(|a| a.state != AgentState::Recovered).map(slave).collect::<Vec<_>>(),
        "recovered_slaves": s.agents.iter().filter(|a| a.state == AgentState::Recovered).map(slave).collect::<Vec<_>>(),
        "frameworks": s.frameworks.iter().map(|f| framework(f, s)).collect::<Vec<_>>(),
        "completed_frameworks": [],
        "orphan_tasks": [],
        "unregistered_frameworks": [],
        // Tessera extension: why roles with demand got nothing in the last allocation run.
        "tessera_unmet": s.unmet,
    })
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

pub async fn state(State(st): State<HttpState>) -> Response {
    match snapshot(&st).await {
        Ok(s) => Json(full_state(&st, &s)).into_response(),
        Err(r) => r,
    }
}

pub async fn slaves(State(st): State<HttpState>) -> Response {
    match snapshot(&st).await {
        Ok(s) => Json(json!({
            "slaves": s.agents.iter().filter(|a| a.state != AgentState::Recovered).map(slave).collect::<Vec<_>>(),
            "recovered_slaves": s.agents.iter().filter(|a| a.state == AgentState::Recovered).map(slave).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(r) => r,
    }
}

pub async fn frameworks(State(st): State<HttpState>) -> Response {
    match snapshot(&st).await {
        Ok(s) => Json(json!({
            "frameworks": s.frameworks.iter().map(|f| framework(f, &s)).collect::<Vec<_>>(),
            "completed_frameworks": [],
            "unregistered_frameworks": [],
        }))
        .into_response(),
        Err(r) => r,
    }
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
    let mut all: Vec<&TaskEntry> = s.tasks.iter().chain(s.completed_tasks.iter()).collect();
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
    let page: Vec<Value> = all.into_iter().skip(offset).take(limit).map(task).collect();
    Json(json!({ "tasks": page })).into_response()
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

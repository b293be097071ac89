//! The agent's own HTTP endpoints (Mesos agent semantics): `/health`, `/state`
//! (`/state.json`, `/slave(1)/state`), `/containers`, `/metrics/snapshot`, `POST /api/v1`
//! (GET_STATE, GET_CONTAINERS, GET_FRAMEWORKS, GET_TASKS, GET_HEALTH, GET_VERSION) and the
//! sandbox `/files/*` (see [`crate::files`]).
//!
//! The agent loop owns all state; it publishes a read-only [`Snapshot`] through a
//! `watch` channel whenever a task changes ([`Publisher`]), and the handlers only read it.
//! There are no agent v1 protos in `tessera-api`, so `/api/v1` answers the JSON shapes of
//! Mesos' `agent::Response` built by hand (resources and statuses in Mesos' v1 JSON).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tessera_api::mesos::convert::resources_to_v1;
use tessera_api::mesos::json::to_value;
use tessera_types::{AgentId, Resources, TaskState};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cgroups::Cgroups;
use crate::config::{AgentConfig, Isolation};
use crate::files::{self, Root};
use crate::tasks::TaskTable;

/// One task as the endpoints see it.
#[derive(Debug, Clone)]
pub struct TaskView {
    pub framework_id: String,
    pub task_id: String,
    pub name: String,
    pub executor_id: String,
    pub container_id: String,
    pub state: TaskState,
    /// Absolute sandbox directory (what `/files/*` takes as `path`).
    pub sandbox: PathBuf,
    pub resources: Resources,
    /// The container's process runs (launched and not yet exited).
    pub running: bool,
    /// The executor's container and sandbox: the task's own for a command task, the default
    /// executor's for a task of a group (whose sandbox is `tasks/<task_id>` inside it).
    pub executor_container: String,
    pub executor_directory: PathBuf,
    /// Run by a default executor (a task of a group), not by its own command executor.
    pub default_executor: bool,
}

/// Counters of terminal transitions since the agent started (`slave/tasks_*`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub finished: u64,
    pub failed: u64,
    pub killed: u64,
    pub lost: u64,
    pub error: u64,
    pub gone: u64,
    pub dropped: u64,
}

/// What the agent loop publishes for the endpoints.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub agent_id: Option<String>,
    pub hostname: String,
    pub http_port: u16,
    pub resources: Resources,
    pub attributes: Vec<(String, String)>,
    pub start_time: f64,
    pub tasks: Vec<TaskView>,
    /// Recently forgotten (terminal and acknowledged) tasks, newest last, so tools can still
    /// find their sandboxes (Mesos' `completed_executors`).
    pub completed: Arc<Vec<TaskView>>,
    pub counters: Counters,
}

/// How many forgotten tasks `/state` keeps listing.
pub const MAX_COMPLETED_TASKS: usize = 1000;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The agent loop's side of the snapshot: marks changes, counts terminal transitions, and
/// republishes (once per loop turn, only when something changed).
pub struct Publisher {
    tx: watch::Sender<Arc<Snapshot>>,
    dirty: bool,
    counters: Counters,
    start_time: f64,
    completed: std::collections::VecDeque<TaskView>,
    completed_snapshot: Arc<Vec<TaskView>>,
}

impl Snapshot {
    /// Before registration: no agent id, no tasks.
    pub fn empty(config: &AgentConfig) -> Self {
        Snapshot {
            agent_id: None,
            hostname: config.hostname.clone(),
            http_port: config.http_port,
            resources: config.resources.clone(),
            attributes: config.attributes.clone(),
            start_time: unix_now(),
            tasks: Vec::new(),
            completed: Arc::new(Vec::new()),
            counters: Counters::default(),
        }
    }
}

/// The endpoints' view of one task.
pub fn task_view(t: &crate::tasks::Task) -> TaskView {
    TaskView {
        framework_id: t.framework_id.to_string(),
        task_id: t.info.task_id.to_string(),
        name: t.info.name.clone(),
        executor_id: t
            .info
            .executor_id
            .as_ref()
            .map_or_else(|| t.info.task_id.to_string(), ToString::to_string),
        container_id: t.container_id.clone(),
        state: t.state,
        sandbox: t.sandbox.clone(),
        resources: t.info.resources.clone(),
        running: t.container.is_some(),
        executor_container: t
            .group
            .as_ref()
            .map_or_else(|| t.container_id.clone(), |g| g.executor_container.clone()),
        executor_directory: crate::executor::executor_sandbox_of(&t.sandbox)
            .filter(|_| t.group.is_some())
            .map_or_else(|| t.sandbox.clone(), Path::to_path_buf),
        default_executor: t.group.is_some(),
    }
}

impl Publisher {
    pub fn new(config: &AgentConfig) -> Self {
        let snap = Snapshot::empty(config);
        Publisher {
            start_time: snap.start_time,
            tx: watch::Sender::new(Arc::new(snap)),
            dirty: true,
            counters: Counters::default(),
            completed: Default::default(),
            completed_snapshot: Arc::new(Vec::new()),
        }
    }

    /// A terminal, acknowledged task is being forgotten: keep listing it as completed.
    pub fn forget(&mut self, view: TaskView) {
        if self.completed.len() >= MAX_COMPLETED_TASKS {
            self.completed.pop_front();
        }
        self.completed.push_back(view);
        self.completed_snapshot = Arc::new(Vec::new());
        self.dirty = true;
    }

    /// Publishes into `tx` from now on (a channel made before the agent, e.g. for a server
    /// that had to start first).
    pub fn attach(&mut self, tx: watch::Sender<Arc<Snapshot>>) {
        self.start_time = tx.borrow().start_time;
        self.tx = tx;
        self.dirty = true;
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    /// Something other than a status update changed (registration, a task forgotten).
    pub fn touch(&mut self) {
        self.dirty = true;
    }

    /// A status update with `state` was generated.
    pub fn on_update(&mut self, state: TaskState) {
        self.dirty = true;
        let c = &mut self.counters;
        match state {
            TaskState::TaskFinished => c.finished += 1,
            TaskState::TaskFailed => c.failed += 1,
            TaskState::TaskKilled => c.killed += 1,
            TaskState::TaskLost => c.lost += 1,
            TaskState::TaskError => c.error += 1,
            TaskState::TaskGone => c.gone += 1,
            TaskState::TaskDropped => c.dropped += 1,
            _ => {}
        }
    }

    /// Publishes a fresh snapshot when something changed since the last one.
    pub fn refresh(&mut self, config: &AgentConfig, agent_id: Option<&AgentId>, tasks: &TaskTable) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let tasks = tasks.iter().map(task_view).collect();
        if self.completed_snapshot.len() != self.completed.len() {
            self.completed_snapshot = Arc::new(self.completed.iter().cloned().collect());
        }
        self.tx.send_replace(Arc::new(Snapshot {
            agent_id: agent_id.map(ToString::to_string),
            hostname: config.hostname.clone(),
            http_port: config.http_port,
            resources: config.resources.clone(),
            attributes: config.attributes.clone(),
            start_time: self.start_time,
            tasks,
            completed: Arc::clone(&self.completed_snapshot),
            counters: self.counters.clone(),
        }));
    }
}

/// Shared by the handlers.
pub struct HttpState {
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub cgroups: Option<Cgroups>,
    pub files: Arc<Root>,
    /// To the agent loop, for the v1 executor API; `None` serves it as 503.
    pub executor_calls: Option<tokio::sync::mpsc::Sender<crate::executor_api::ExecutorCall>>,
}

type Shared = Arc<HttpState>;

/// The router of every agent endpoint.
pub fn router(state: Shared) -> Router {
    let files_routes = Router::new()
        .route("/files/browse", get(files::browse_handler))
        .route("/files/browse.json", get(files::browse_handler))
        .route("/files/read", get(files::read_handler))
        .route("/files/read.json", get(files::read_handler))
        .route("/files/download", get(files::download_handler))
        .route("/files/download.json", get(files::download_handler))
        .with_state(state.files.clone());
    Router::new()
        .route("/health", get(|| async { StatusCode::OK }))
        .route("/state", get(state_handler))
        .route("/state.json", get(state_handler))
        .route("/slave(1)/state", get(state_handler))
        .route("/slave(1)/state.json", get(state_handler))
        .route("/containers", get(containers_handler))
        .route("/metrics/snapshot", get(metrics_handler))
        .route("/api/v1", post(api_v1))
        .route(
            "/api/v1/executor",
            post(|State(st): State<Shared>, headers, body| async move {
                crate::executor_api::handle(st.executor_calls.clone(), headers, body).await
            }),
        )
        .with_state(state)
        .merge(files_routes)
}

/// Binds `addr` and serves until `shutdown`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    state: Shared,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(state);
    tokio::spawn(async move {
        let res = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "agent HTTP server stopped");
        }
    });
    Ok(bound)
}

/// Cgroups for `/containers` statistics when the agent isolates with cgroups.
pub fn stats_cgroups(config: &AgentConfig) -> Option<Cgroups> {
    (config.isolation == Isolation::Cgroups)
        .then(|| Cgroups::detect(&config.cgroups_root).ok())
        .flatten()
}

// ---- renderings -------------------------------------------------------------------------

/// Mesos v0 flat resources: scalars per name, ranges as `[a-b, ...]`, sets as `{a,b}`.
pub fn flat_resources(r: &Resources) -> Value {
    let mut m: BTreeMap<String, Value> = ["cpus", "gpus", "mem", "disk"]
        .iter()
        .map(|n| (n.to_string(), json!(0.0)))
        .collect();
    for name in r.names() {
        let s = r.scalar(name).as_f64();
        let ranges = r.ranges(name);
        let v = if !ranges.to_string().trim_matches(['[', ']']).is_empty() {
            json!(ranges.to_string())
        } else {
            json!(s)
        };
        m.insert(name.to_string(), v);
    }
    json!(m)
}

fn v1_resources(r: &Resources) -> Value {
    Value::Array(resources_to_v1(r, None).iter().map(to_value).collect())
}

fn v0_task(agent_id: &str, t: &TaskView) -> Value {
    json!({
        "id": t.task_id,
        "name": t.name,
        "framework_id": t.framework_id,
        "executor_id": t.executor_id,
        "slave_id": agent_id,
        "state": t.state.name(),
        "resources": flat_resources(&t.resources),
        "statuses": [],
    })
}

/// Mesos' agent `/state`: frameworks with their executors (a command executor per command
/// task; a default executor per run of a task group's executor, its tasks' resources summed)
/// and tasks, each executor with its sandbox `directory`.
pub fn state_json(s: &Snapshot) -> Value {
    let agent_id = s.agent_id.clone().unwrap_or_default();
    // Per framework: the executors of known tasks, and of recently forgotten ones.
    type Groups<'a> = BTreeMap<(&'a str, &'a str), Vec<&'a TaskView>>;
    let mut frameworks: BTreeMap<&str, (Groups<'_>, Groups<'_>)> = BTreeMap::new();
    for t in &s.tasks {
        frameworks
            .entry(&t.framework_id)
            .or_default()
            .0
            .entry((&t.executor_id, &t.executor_container))
            .or_default()
            .push(t);
    }
    for t in s.completed.iter() {
        frameworks
            .entry(&t.framework_id)
            .or_default()
            .1
            .entry((&t.executor_id, &t.executor_container))
            .or_default()
            .push(t);
    }
    let executor = |ts: Vec<&TaskView>| {
        let first = ts[0];
        let (live, done): (Vec<&TaskView>, Vec<&TaskView>) =
            ts.into_iter().partition(|t| !t.state.is_terminal());
        let (name, source, resources) = if first.default_executor {
            let mut sum = Resources::new();
            for t in live.iter().chain(&done) {
                let _ = sum.add_assign(&t.resources);
            }
            ("Default Executor".to_string(), String::new(), sum)
        } else {
            (
                format!("Command Executor (Task: {})", first.task_id),
                first.task_id.clone(),
                first.resources.clone(),
            )
        };
        json!({
            "id": first.executor_id,
            "name": name,
            "source": source,
            "type": if first.default_executor { "DEFAULT" } else { "COMMAND" },
            "container": first.executor_container,
            "directory": first.executor_directory.to_string_lossy(),
            "resources": flat_resources(&resources),
            "tasks": live.iter().map(|t| v0_task(&agent_id, t)).collect::<Vec<_>>(),
            "queued_tasks": [],
            "completed_tasks": done.iter().map(|t| v0_task(&agent_id, t)).collect::<Vec<_>>(),
        })
    };
    let frameworks: Vec<Value> = frameworks
        .into_iter()
        .map(|(fw, (live, done))| {
            json!({
                "id": fw,
                "executors": live.into_values().map(executor).collect::<Vec<_>>(),
                "completed_executors": done.into_values().map(executor).collect::<Vec<_>>(),
            })
        })
        .collect();
    let attributes: serde_json::Map<String, Value> = s
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "id": agent_id,
        "hostname": s.hostname,
        "pid": format!("slave(1)@{}:{}", s.hostname, s.http_port),
        "start_time": s.start_time,
        "resources": flat_resources(&s.resources),
        "attributes": attributes,
        "frameworks": frameworks,
        "completed_frameworks": [],
    })
}

/// Mesos' `/metrics/snapshot` keys the agent can answer.
pub fn metrics_json(s: &Snapshot) -> Value {
    let count = |st: TaskState| s.tasks.iter().filter(|t| t.state == st).count() as f64;
    let used = s.tasks.iter().filter(|t| !t.state.is_terminal()).fold(
        BTreeMap::<&str, f64>::new(),
        |mut m, t| {
            for n in ["cpus", "mem", "disk", "gpus"] {
                *m.entry(n).or_default() += t.resources.scalar(n).as_f64();
            }
            m
        },
    );
    let executors = s.tasks.iter().filter(|t| t.running).count() as f64;
    let frameworks = s
        .tasks
        .iter()
        .map(|t| t.framework_id.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len() as f64;
    let c = &s.counters;
    let mut m = serde_json::Map::new();
    let mut put = |k: &str, v: f64| {
        m.insert(k.to_string(), json!(v));
    };
    put(
        "slave/registered",
        f64::from(u8::from(s.agent_id.is_some())),
    );
    put("slave/uptime_secs", unix_now() - s.start_time);
    put("slave/tasks_staging", count(TaskState::TaskStaging));
    put("slave/tasks_starting", count(TaskState::TaskStarting));
    put("slave/tasks_running", count(TaskState::TaskRunning));
    put("slave/tasks_killing", count(TaskState::TaskKilling));
    put("slave/tasks_finished", c.finished as f64);
    put("slave/tasks_failed", c.failed as f64);
    put("slave/tasks_killed", c.killed as f64);
    put("slave/tasks_lost", c.lost as f64);
    put("slave/tasks_error", c.error as f64);
    put("slave/tasks_gone", c.gone as f64);
    put("slave/tasks_dropped", c.dropped as f64);
    put("slave/executors_running", executors);
    put("slave/frameworks_active", frameworks);
    for n in ["cpus", "mem", "disk", "gpus"] {
        let total = s.resources.scalar(n).as_f64();
        let u = used.get(n).copied().unwrap_or(0.0);
        put(&format!("slave/{n}_total"), total);
        put(&format!("slave/{n}_used"), u);
        put(
            &format!("slave/{n}_percent"),
            if total > 0.0 { u / total } else { 0.0 },
        );
    }
    Value::Object(m)
}

/// Mesos' `/containers`: one entry per container still running (or launching), with
/// `ResourceStatistics` from its cgroups when the agent isolates with them.
pub fn containers_json(s: &Snapshot, cgroups: Option<&Cgroups>) -> Value {
    let now = unix_now();
    Value::Array(
        s.tasks
            .iter()
            .filter(|t| !t.state.is_terminal())
            .map(|t| {
                let mut stats = serde_json::Map::new();
                stats.insert("timestamp".into(), json!(now));
                let cpus = t.resources.scalar("cpus").as_f64();
                if cpus > 0.0 {
                    stats.insert("cpus_limit".into(), json!(cpus));
                }
                let mem = t.resources.scalar("mem").as_f64();
                if mem > 0.0 {
                    stats.insert(
                        "mem_limit_bytes".into(),
                        json!((mem * 1024.0 * 1024.0) as u64),
                    );
                }
                // A task of a group has its cgroup nested in its executor's.
                let cgroup = if t.default_executor {
                    format!("{}/{}", t.executor_container, t.container_id)
                } else {
                    t.container_id.clone()
                };
                if let Some(u) = cgroups.and_then(|c| c.container(&cgroup).usage().ok()) {
                    stats.insert("cpus_user_time_secs".into(), json!(u.cpu_user_secs));
                    stats.insert("cpus_system_time_secs".into(), json!(u.cpu_system_secs));
                    stats.insert("mem_rss_bytes".into(), json!(u.mem_bytes));
                }
                let executor_name = if t.default_executor {
                    "Default Executor".to_string()
                } else {
                    format!("Command Executor (Task: {})", t.task_id)
                };
                json!({
                    "container_id": t.container_id,
                    "executor_id": t.executor_id,
                    "executor_name": executor_name,
                    "framework_id": t.framework_id,
                    "source": t.task_id,
                    "statistics": stats,
                    "status": { "container_id": { "value": t.container_id } },
                })
            })
            .collect(),
    )
}

fn v1_task(agent_id: &str, t: &TaskView) -> Value {
    json!({
        "name": t.name,
        "task_id": { "value": t.task_id },
        "framework_id": { "value": t.framework_id },
        "executor_id": { "value": t.executor_id },
        "agent_id": { "value": agent_id },
        "state": t.state.name(),
        "resources": v1_resources(&t.resources),
        "statuses": [],
    })
}

fn v1_frameworks(s: &Snapshot) -> Value {
    let ids: std::collections::BTreeSet<&str> =
        s.tasks.iter().map(|t| t.framework_id.as_str()).collect();
    json!({
        "frameworks": ids.into_iter().map(|id| json!({
            "framework_info": { "id": { "value": id }, "user": "", "name": "" }
        })).collect::<Vec<_>>(),
        "completed_frameworks": [],
    })
}

fn v1_tasks(s: &Snapshot) -> Value {
    let agent_id = s.agent_id.clone().unwrap_or_default();
    let (live, done): (Vec<&TaskView>, Vec<&TaskView>) =
        s.tasks.iter().partition(|t| !t.state.is_terminal());
    json!({
        "pending_tasks": [],
        "queued_tasks": [],
        "launched_tasks": live.iter().map(|t| v1_task(&agent_id, t)).collect::<Vec<_>>(),
        "terminated_tasks": [],
        "completed_tasks": done.iter().map(|t| v1_task(&agent_id, t)).collect::<Vec<_>>(),
    })
}

fn v1_executors(s: &Snapshot) -> Value {
    json!({
        "executors": s.tasks.iter().filter(|t| !t.state.is_terminal()).map(|t| json!({
            "executor_info": {
                "executor_id": { "value": t.executor_id },
                "framework_id": { "value": t.framework_id },
                "command": {},
                "resources": v1_resources(&t.resources),
            }
        })).collect::<Vec<_>>(),
        "completed_executors": [],
    })
}

fn v1_containers(s: &Snapshot, cgroups: Option<&Cgroups>) -> Value {
    let containers = containers_json(s, cgroups);
    let list = containers.as_array().cloned().unwrap_or_default();
    json!({
        "containers": list.into_iter().map(|c| json!({
            "framework_id": { "value": c["framework_id"] },
            "executor_id": { "value": c["executor_id"] },
            "executor_name": c["executor_name"],
            "container_id": { "value": c["container_id"] },
            "resource_statistics": c["statistics"],
        })).collect::<Vec<_>>(),
    })
}

/// Answers one v1 agent `Call` (JSON) with a `Response` (JSON).
pub fn api_v1_response(
    call: &Value,
    s: &Snapshot,
    cgroups: Option<&Cgroups>,
) -> Result<Value, String> {
    let ty = call
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| "Expecting 'type' to be present".to_string())?;
    Ok(match ty {
        "GET_HEALTH" => json!({ "type": ty, "get_health": { "healthy": true } }),
        "GET_VERSION" => json!({ "type": ty, "get_version": { "version_info": {
            "version": env!("CARGO_PKG_VERSION") } } }),
        "GET_STATE" => json!({ "type": ty, "get_state": {
            "get_tasks": v1_tasks(s),
            "get_executors": v1_executors(s),
            "get_frameworks": v1_frameworks(s),
        } }),
        "GET_CONTAINERS" => json!({ "type": ty, "get_containers": v1_containers(s, cgroups) }),
        "GET_FRAMEWORKS" => json!({ "type": ty, "get_frameworks": v1_frameworks(s) }),
        "GET_TASKS" => json!({ "type": ty, "get_tasks": v1_tasks(s) }),
        "GET_EXECUTORS" => json!({ "type": ty, "get_executors": v1_executors(s) }),
        "GET_AGENT" => json!({ "type": ty, "get_agent": { "agent_info": {
            "id": { "value": s.agent_id.clone().unwrap_or_default() },
            "hostname": s.hostname,
            "port": s.http_port,
            "resources": v1_resources(&s.resources),
        } } }),
        other => return Err(format!("Unsupported call type '{other}'")),
    })
}

// ---- handlers ---------------------------------------------------------------------------

fn snapshot(st: &HttpState) -> Arc<Snapshot> {
    st.snapshots.borrow().clone()
}

async fn state_handler(State(st): State<Shared>) -> Json<Value> {
    Json(state_json(&snapshot(&st)))
}

async fn metrics_handler(State(st): State<Shared>) -> Json<Value> {
    Json(metrics_json(&snapshot(&st)))
}

async fn containers_handler(State(st): State<Shared>) -> Response {
    let s = snapshot(&st);
    let st2 = st.clone();
    match tokio::task::spawn_blocking(move || containers_json(&s, st2.cgroups.as_ref())).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn api_v1(
    State(st): State<Shared>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if !ct.starts_with("application/json") {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Only 'application/json' is supported by this agent's /api/v1",
        )
            .into_response();
    }
    let call: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("Failed to parse body into JSON: {e}"),
            )
                .into_response();
        }
    };
    let s = snapshot(&st);
    let st2 = st.clone();
    match tokio::task::spawn_blocking(move || api_v1_response(&call, &s, st2.cgroups.as_ref()))
        .await
    {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(m)) => (StatusCode::BAD_REQUEST, m).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

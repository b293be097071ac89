//! The MPI service's REST API (JSON), under `/mpi/v1`; `tessera mpi submit|queue|cancel|
//! logs|why` are its clients. Hosted on the master's port by `tessera up` and `tessera
//! master`.
//!
//! | method | path | does |
//! |---|---|---|
//! | POST | `/mpi/v1/jobs` | submit a [`SubmitRequest`]; `201 {"id": N}` (plus `"stdin_token"` with `"stdin": true`) |
//! | GET | `/mpi/v1/jobs` | every job, oldest first |
//! | GET | `/mpi/v1/jobs/{id}` | one job |
//! | DELETE | `/mpi/v1/jobs/{id}` | cancel it (its ranks are killed); `202` |
//! | GET | `/mpi/v1/jobs/{id}/output?from=N&max=M` | output lines from line N, `next`, `ended` |
//! | GET | `/mpi/v1/jobs/{id}/why` | why it is not running |
//! | POST | `/mpi/v1/jobs/{id}/stdin?token=T` | rank 0's stdin: the body, streamed (chunked), then EOF; `200 {"bytes": N}` |
//!
//! Errors are `{"error": "...", "field": "..."}`: 400 for bad input (nothing queued, the
//! field named), 404 for an unknown job, 409 for a gang the cluster can never hold, 502 when
//! the master cannot be reached, 503 until the service has started. A refused stdin stream
//! also says `"reason"`: 403 `wrong_token`; 409 `not_forwarded` (submitted without
//! stdin), `already_claimed` (one stream per job, once), `ended` (the job ended, before or
//! during the stream: rank 0 reads no more).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use tessera_types::parse::parse_resources;
use tessera_types::{CommandInfo, Role};

use crate::error::Error;
use crate::mpiexec::Launcher;
use crate::queue::GangId;
use crate::runner::{RunError, Stream};
use crate::service::{JobRequest, JobState, JobSummary, MpiService};
use crate::spec::{GangSpec, Layout};
use crate::stdin::StdinRefusal;

/// The service once started (the routes exist before the master's address is known).
pub type Slot = Arc<OnceLock<Arc<MpiService>>>;

/// What a client submits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    #[serde(default)]
    pub name: Option<String>,
    pub ranks: u32,
    /// Ranks per node; without it `layout` decides.
    #[serde(default)]
    pub ppn: Option<u32>,
    /// `pack` (default) or `spread`.
    #[serde(default)]
    pub layout: Option<String>,
    pub cpus_per_rank: f64,
    pub mem_per_rank_mb: f64,
    /// The program and its arguments; the program as an absolute path.
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `pmi` (default), `hydra` or `orted`.
    #[serde(default)]
    pub launch: Option<String>,
    #[serde(default)]
    pub time_limit_seconds: Option<f64>,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub role: Option<String>,
    /// Rank 0 reads the submitter's stdin (streamed to `/stdin` with the returned token);
    /// otherwise its stdin is closed.
    #[serde(default)]
    pub stdin: bool,
}

fn bad(field: &str, reason: impl Into<String>) -> Error {
    Error::InvalidSpec {
        field: field.into(),
        reason: reason.into(),
    }
}

impl SubmitRequest {
    /// The job to queue, or the first field that is wrong.
    pub fn to_job(&self) -> Result<JobRequest, Error> {
        let layout = match (self.ppn, self.layout.as_deref()) {
            (Some(0), _) => return Err(bad("ppn", "must be at least 1")),
            (Some(n), None) => Layout::Ppn(n),
            (Some(_), Some(_)) => return Err(bad("layout", "give either ppn or layout")),
            (None, None | Some("pack")) => Layout::Pack,
            (None, Some("spread")) => Layout::Spread,
            (None, Some(other)) => {
                return Err(bad("layout", format!("'{other}' is not pack or spread")));
            }
        };
        let launcher = match self.launch.as_deref() {
            None | Some("pmi") => None,
            Some("hydra") => Some(Launcher::Hydra),
            Some("orted") => Some(Launcher::Orted),
            Some(other) => {
                return Err(bad(
                    "launch",
                    format!("'{other}' is not pmi, hydra or orted"),
                ));
            }
        };
        for (field, v) in [
            ("cpus_per_rank", self.cpus_per_rank),
            ("mem_per_rank_mb", self.mem_per_rank_mb),
        ] {
            if !v.is_finite() || v <= 0.0 {
                return Err(bad(field, "must be a positive number"));
            }
        }
        let per_rank = parse_resources(&format!(
            "cpus:{};mem:{}",
            self.cpus_per_rank,
            self.mem_per_rank_mb.ceil()
        ))
        .map_err(|e| bad("cpus_per_rank", e.to_string()))?;
        let Some(program) = self.argv.first() else {
            return Err(bad("argv", "must name the program"));
        };
        if !program.starts_with('/') {
            return Err(bad(
                "argv[0]",
                "must be an absolute path (agents run it as is)",
            ));
        }
        let time_limit = match self.time_limit_seconds {
            None => None,
            Some(t) if t.is_finite() && t > 0.0 && t < 1e9 => Some(Duration::from_secs_f64(t)),
            Some(_) => return Err(bad("time_limit_seconds", "must be a positive number")),
        };
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') {
                return Err(bad("env", format!("{k:?} is not a variable name")));
            }
        }
        let role = match &self.role {
            None => Role::any(),
            Some(r) => Role::new(r.clone()).map_err(|e| bad("role", e.to_string()))?,
        };
        let spec = GangSpec {
            ranks: self.ranks,
            per_rank,
            layout,
            priority: self.priority,
            role,
            command: CommandInfo {
                value: program.clone(),
                shell: false,
                arguments: self.argv.clone(),
                environment: self.env.clone(),
                ..CommandInfo::default()
            },
            per_node: false,
            first_rank_wrapper: Vec::new(),
        };
        spec.validate()?;
        let name = self.name.clone().unwrap_or_else(|| {
            std::path::Path::new(program)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| program.clone())
        });
        Ok(JobRequest {
            name,
            spec,
            time_limit,
            launcher,
            stdin: self.stdin,
        })
    }
}

fn error(status: StatusCode, message: String, field: Option<&str>) -> Response {
    let mut body = json!({ "error": message });
    if let Some(f) = field {
        body["field"] = json!(f);
    }
    (status, Json(body)).into_response()
}

fn refused(e: &Error) -> Response {
    match e {
        Error::InvalidSpec { field, .. } => {
            error(StatusCode::BAD_REQUEST, e.to_string(), Some(field))
        }
        Error::NeverFits(_) => error(StatusCode::CONFLICT, e.to_string(), Some("ranks")),
        Error::UnknownGang(_) => error(StatusCode::NOT_FOUND, e.to_string(), None),
        Error::AlreadyEnded(_) => error(StatusCode::CONFLICT, e.to_string(), None),
        Error::Stdin(_, r) => {
            let status = match r {
                StdinRefusal::WrongToken => StatusCode::FORBIDDEN,
                StdinRefusal::NotForwarded | StdinRefusal::AlreadyClaimed => StatusCode::CONFLICT,
            };
            error(status, e.to_string(), None)
        }
    }
}

/// A refused stdin stream: the error and its `reason`.
fn stdin_refused(e: &Error) -> Response {
    let (status, reason) = match e {
        Error::Stdin(_, StdinRefusal::WrongToken) => (StatusCode::FORBIDDEN, "wrong_token"),
        Error::Stdin(_, StdinRefusal::NotForwarded) => (StatusCode::CONFLICT, "not_forwarded"),
        Error::Stdin(_, StdinRefusal::AlreadyClaimed) => (StatusCode::CONFLICT, "already_claimed"),
        Error::AlreadyEnded(_) => (StatusCode::CONFLICT, "ended"),
        Error::UnknownGang(_) => (StatusCode::NOT_FOUND, "unknown_job"),
        _ => return refused(e),
    };
    (
        status,
        Json(json!({ "error": e.to_string(), "reason": reason })),
    )
        .into_response()
}

/// An error answer, boxed (a `Response` is large).
type Refusal = Box<Response>;

fn service(slot: &Slot) -> Result<Arc<MpiService>, Refusal> {
    slot.get().cloned().ok_or_else(|| {
        Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the MPI service is starting; retry in a moment".into(),
            None,
        ))
    })
}

/// The routes, to merge into the master's server.
pub fn router(slot: Slot) -> Router {
    Router::new()
        .route("/mpi/v1/jobs", get(list).post(submit))
        .route("/mpi/v1/jobs/{id}", get(show).delete(cancel))
        .route("/mpi/v1/jobs/{id}/output", get(output))
        .route("/mpi/v1/jobs/{id}/why", get(why))
        .route("/mpi/v1/jobs/{id}/stdin", post(stdin))
        .with_state(slot)
}

/// A job as JSON.
pub fn job_json(j: &JobSummary) -> Value {
    let submitted = j
        .submitted
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut v = json!({
        "id": j.id.0,
        "name": j.name,
        "ranks": j.ranks,
        "layout": j.layout,
        "launch": j.launch,
        "submitted": submitted,
    });
    match &j.state {
        JobState::Pending(why) => {
            v["state"] = json!("PENDING");
            v["reason"] = json!(why);
        }
        JobState::Running(nodes) => {
            v["state"] = json!("RUNNING");
            v["nodes"] = json!(
                nodes
                    .iter()
                    .map(|(a, n)| json!({"agent": a, "ranks": n}))
                    .collect::<Vec<_>>()
            );
        }
        JobState::Ended(r) => {
            v["state"] = json!(match r.outcome {
                crate::Outcome::Succeeded => "COMPLETED",
                crate::Outcome::TimedOut { .. } => "TIMEOUT",
                crate::Outcome::Cancelled => "CANCELLED",
                _ => "FAILED",
            });
            v["exit_code"] = json!(r.outcome.exit_code());
            v["message"] = json!(r.outcome.to_string());
            v["outcome"] = json!(r.outcome.name());
            v["waited_seconds"] = json!(r.waited.map(|d| d.as_secs_f64()));
            v["initialized_seconds"] = json!(r.initialized.map(|d| d.as_secs_f64()));
            v["total_seconds"] = json!(r.total.as_secs_f64());
        }
        JobState::Lost(why) => {
            v["state"] = json!("LOST");
            v["message"] = json!(why);
        }
    }
    v
}

async fn submit(State(slot): State<Slot>, body: axum::body::Bytes) -> Response {
    let svc = match service(&slot) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let req: SubmitRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid job: {e}"), None),
    };
    let job = match req.to_job() {
        Ok(j) => j,
        Err(e) => return refused(&e),
    };
    match svc.submit(job, None).await {
        Ok(s) => {
            let mut v = json!({ "id": s.id.0 });
            if let Some(t) = s.stdin_token {
                v["stdin_token"] = json!(t);
            }
            (StatusCode::CREATED, Json(v)).into_response()
        }
        Err(RunError::Refused(e)) => refused(&e),
        Err(e @ RunError::Master { .. }) => error(StatusCode::BAD_GATEWAY, e.to_string(), None),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None),
    }
}

async fn list(State(slot): State<Slot>) -> Response {
    match service(&slot) {
        Ok(svc) => Json(json!({ "jobs": svc.jobs().iter().map(job_json).collect::<Vec<_>>() }))
            .into_response(),
        Err(r) => *r,
    }
}

fn find(slot: &Slot, id: u64) -> Result<(Arc<MpiService>, JobSummary), Refusal> {
    let svc = service(slot)?;
    let job = svc
        .job(GangId(id))
        .ok_or_else(|| Box::new(refused(&Error::UnknownGang(GangId(id)))))?;
    Ok((svc, job))
}

async fn show(State(slot): State<Slot>, Path(id): Path<u64>) -> Response {
    match find(&slot, id) {
        Ok((_, j)) => Json(job_json(&j)).into_response(),
        Err(r) => *r,
    }
}

async fn cancel(State(slot): State<Slot>, Path(id): Path<u64>) -> Response {
    let (svc, _) = match find(&slot, id) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    match svc.cancel(GangId(id)) {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response(),
        Err(e) => refused(&e),
    }
}

#[derive(Debug, Deserialize)]
struct OutputQuery {
    #[serde(default)]
    from: u64,
    #[serde(default)]
    max: Option<usize>,
}

async fn output(
    State(slot): State<Slot>,
    Path(id): Path<u64>,
    Query(q): Query<OutputQuery>,
) -> Response {
    let (svc, _) = match find(&slot, id) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let max = q.max.unwrap_or(10_000).min(100_000);
    let Some((lines, next, ended)) = svc.output(GangId(id), q.from, max) else {
        return refused(&Error::UnknownGang(GangId(id)));
    };
    let lines: Vec<Value> = lines
        .iter()
        .map(|l| {
            json!({
                "rank": l.rank,
                "stream": if l.stream == Stream::Stdout { "stdout" } else { "stderr" },
                "line": l.line,
            })
        })
        .collect();
    Json(json!({ "lines": lines, "next": next, "ended": ended })).into_response()
}

async fn why(State(slot): State<Slot>, Path(id): Path<u64>) -> Response {
    let (_, j) = match find(&slot, id) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let why = match &j.state {
        JobState::Pending(w) => w.clone(),
        JobState::Running(nodes) => format!("running on {} agents", nodes.len()),
        JobState::Ended(r) => format!("ended: {}", r.outcome),
        JobState::Lost(w) => format!("lost: {w}"),
    };
    Json(json!({ "id": id, "state": job_json(&j)["state"], "why": why })).into_response()
}

#[derive(Debug, Deserialize)]
struct StdinQuery {
    #[serde(default)]
    token: String,
}

/// Copies the request body into rank 0's stdin as it arrives; its end is rank 0's EOF.
async fn stdin(
    State(slot): State<Slot>,
    Path(id): Path<u64>,
    Query(q): Query<StdinQuery>,
    body: axum::body::Body,
) -> Response {
    use futures_util::StreamExt;
    let svc = match service(&slot) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let writer = match svc.claim_stdin(GangId(id), &q.token) {
        Ok(w) => w,
        Err(e) => return stdin_refused(&e),
    };
    let mut body = body.into_data_stream();
    let mut bytes = 0u64;
    loop {
        // The queue is bounded: while rank 0 does not read, the body is not read either,
        // and TCP holds the client back.
        let frame = tokio::select! {
            frame = body.next() => frame,
            _ = writer.closed() => return stdin_ended(id, bytes),
        };
        let data = match frame {
            Some(Ok(data)) => data,
            // The end (or the client went away): rank 0's EOF.
            Some(Err(_)) | None => break,
        };
        if writer.write(&data).await.is_err() {
            return stdin_ended(id, bytes);
        }
        bytes += data.len() as u64;
    }
    drop(writer);
    Json(json!({ "id": id, "bytes": bytes })).into_response()
}

/// The job's side closed during the stream: it ended, or rank 0 stopped reading.
fn stdin_ended(id: u64, bytes: u64) -> Response {
    let e = format!(
        "job {id} ended or rank 0 stopped reading its stdin after {bytes} bytes were taken"
    );
    (
        StatusCode::CONFLICT,
        Json(json!({ "error": e, "reason": "ended", "bytes": bytes })),
    )
        .into_response()
}

//! The batch REST API (JSON), under `/batch/v1`; the `tessera batch` CLI is its client.
//!
//! | method | path | does |
//! |---|---|---|
//! | POST | `/batch/v1/jobs` | submit a [`JobRequest`]; `201` with the job |
//! | GET | `/batch/v1/jobs?state=&user=&queue=&all=true&limit=` | the queue (live jobs unless `all`) |
//! | GET | `/batch/v1/jobs/{id}` | one job with its tasks |
//! | POST | `/batch/v1/jobs/{id}/cancel` · `/hold` · `/release` | change it |
//! | GET | `/batch/v1/jobs/{id}/why` | why it is not running |
//! | GET | `/batch/v1/jobs/{id}/logs?index=&stream=stdout|stderr&offset=&length=` | its output |
//! | GET | `/batch/v1/history?limit=` | finished jobs, newest first |
//!
//! Errors are `{"error": "...", "field": "..."}` with 400 (bad input, nothing stored), 404
//! (unknown job), 409 (not in a state that allows it), 502 (an agent could not be read).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::Error;
use crate::model::{Job, JobState, task_id};
use crate::service::Service;
use crate::spec::{JobId, JobRequest, dependency_text};
use crate::{logs, why};

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body = json!({ "error": self.to_string() });
        if let Error::Invalid { field, .. } = &self {
            body["field"] = json!(field);
        }
        (status, Json(body)).into_response()
    }
}

type ApiResult = std::result::Result<Response, Error>;

/// The REST routes, to merge into a server (the master's in `tessera up`, or the batch
/// scheduler's own in `tessera batch serve`).
pub fn router(svc: Arc<Service>) -> Router {
    Router::new()
        .route("/batch/v1/jobs", post(submit).get(list))
        .route("/batch/v1/jobs/{id}", get(show))
        .route("/batch/v1/jobs/{id}/cancel", post(cancel))
        .route("/batch/v1/jobs/{id}/hold", post(hold))
        .route("/batch/v1/jobs/{id}/release", post(release))
        .route("/batch/v1/jobs/{id}/why", get(why_pending))
        .route("/batch/v1/jobs/{id}/logs", get(read_logs))
        .route("/batch/v1/history", get(history))
        .with_state(svc)
}

fn parse_id(raw: &str) -> Result<JobId, Error> {
    raw.parse::<u64>().map(JobId).map_err(|_| Error::Invalid {
        field: "id".into(),
        message: format!("'{raw}' is not a job id (a positive integer)"),
    })
}

/// The summary row of a job.
pub fn summary(j: &Job) -> Value {
    let c = j.counts();
    let exit_code = if j.tasks.len() == 1 {
        j.tasks[0].exit_code
    } else {
        None
    };
    json!({
        "id": j.id.0,
        "name": j.spec.name,
        "user": j.spec.user,
        "queue": j.spec.queue,
        "state": j.state.as_str(),
        "held": j.held,
        "priority": j.spec.priority,
        "array": j.spec.array.as_ref().map(|a| a.text.clone()),
        "dependency": if j.spec.dependencies.is_empty() { Value::Null } else { json!(dependency_text(&j.spec.dependencies)) },
        "submitted_at": j.submitted_at,
        "started_at": j.started_at,
        "ended_at": j.ended_at,
        "reason": j.reason,
        "parent": j.parent.map(|p| p.0),
        "exit_code": exit_code,
        "tasks": { "total": j.tasks.len(), "pending": c.pending, "running": c.running,
                   "completed": c.completed, "failed": c.failed, "cancelled": c.cancelled },
    })
}

/// A job with its spec and every task.
pub fn detail(j: &Job) -> Value {
    let mut v = summary(j);
    v["spec"] = serde_json::to_value(&j.spec).unwrap_or(Value::Null);
    v["task_list"] = j
        .tasks
        .iter()
        .map(|t| {
            json!({
                "index": t.index,
                "state": t.state.as_str(),
                "attempt": t.attempt,
                "failures": t.failures,
                "task_id": if t.attempt > 0 { json!(task_id(j.id, t.index, t.attempt)) } else { Value::Null },
                "agent_id": t.agent_id,
                "exit_code": t.exit_code,
                "started_at": t.started_at,
                "ended_at": t.ended_at,
                "not_before": t.not_before,
                "message": t.message,
            })
        })
        .collect();
    v
}

async fn submit(State(svc): State<Arc<Service>>, body: axum::body::Bytes) -> ApiResult {
    let req: JobRequest = serde_json::from_slice(&body).map_err(|e| Error::Invalid {
        field: json_field(&e.to_string()),
        message: format!("the body is not a valid job: {e}"),
    })?;
    let id = svc.submit(&req)?;
    let job = svc
        .read(|c, _| c.get(id).map(detail))?
        .unwrap_or(Value::Null);
    Ok((StatusCode::CREATED, Json(job)).into_response())
}

/// Best effort: the field serde complained about (`unknown field `memory``).
fn json_field(msg: &str) -> String {
    msg.split('`')
        .nth(1)
        .map(str::to_string)
        .unwrap_or_else(|| "body".into())
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    state: Option<String>,
    user: Option<String>,
    queue: Option<String>,
    #[serde(default)]
    all: bool,
    limit: Option<usize>,
}

async fn list(State(svc): State<Arc<Service>>, Query(q): Query<ListQuery>) -> ApiResult {
    let states = match &q.state {
        Some(s) => Some(
            s.split(',')
                .map(|x| {
                    JobState::parse(x.trim()).ok_or_else(|| Error::Invalid {
                        field: "state".into(),
                        message: format!(
                            "unknown state '{x}'; use PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT or SCHEDULED"
                        ),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let limit = q.limit.unwrap_or(usize::MAX);
    let jobs = svc.read(|c, _| {
        let keep = |j: &&Job| {
            states.as_ref().is_none_or(|s| s.contains(&j.state))
                && q.user.as_ref().is_none_or(|u| &j.spec.user == u)
                && q.queue.as_ref().is_none_or(|u| &j.spec.queue == u)
        };
        let rows: Vec<Value> = if q.all || states.is_some() {
            c.jobs().filter(keep).take(limit).map(summary).collect()
        } else {
            c.live_jobs()
                .filter(keep)
                .take(limit)
                .map(summary)
                .collect()
        };
        rows
    })?;
    Ok(Json(json!({ "jobs": jobs })).into_response())
}

async fn history(State(svc): State<Arc<Service>>, Query(q): Query<ListQuery>) -> ApiResult {
    let limit = q.limit.unwrap_or(100);
    let jobs = svc.read(|c, _| {
        c.jobs()
            .rev()
            .filter(|j| j.state.is_terminal())
            .filter(|j| q.user.as_ref().is_none_or(|u| &j.spec.user == u))
            .take(limit)
            .map(summary)
            .collect::<Vec<_>>()
    })?;
    Ok(Json(json!({ "jobs": jobs })).into_response())
}

async fn show(State(svc): State<Arc<Service>>, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let v = svc.read(|c, _| c.get(id).map(detail))?;
    v.map(|v| Json(v).into_response())
        .ok_or(Error::UnknownJob(id))
}

async fn cancel(State(svc): State<Arc<Service>>, Path(id): Path<String>) -> ApiResult {
    let job = svc.cancel(parse_id(&id)?)?;
    Ok(Json(summary(&job)).into_response())
}

async fn hold(State(svc): State<Arc<Service>>, Path(id): Path<String>) -> ApiResult {
    let job = svc.hold(parse_id(&id)?)?;
    Ok(Json(summary(&job)).into_response())
}

async fn release(State(svc): State<Arc<Service>>, Path(id): Path<String>) -> ApiResult {
    let job = svc.release(parse_id(&id)?)?;
    Ok(Json(summary(&job)).into_response())
}

async fn why_pending(State(svc): State<Arc<Service>>, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let v = svc.read(|c, now| why::explain(c, id, now))??;
    Ok(Json(v).into_response())
}

#[derive(Debug, Deserialize)]
struct LogQuery {
    index: Option<u32>,
    stream: Option<String>,
    offset: Option<u64>,
    length: Option<u64>,
}

async fn read_logs(
    State(svc): State<Arc<Service>>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult {
    let id = parse_id(&id)?;
    let stream = match q.stream.as_deref() {
        None | Some("stdout") => "stdout",
        Some("stderr") => "stderr",
        Some(other) => {
            return Err(Error::Invalid {
                field: "stream".into(),
                message: format!("'{other}' is not stdout or stderr"),
            });
        }
    };
    let target = svc.read(|c, _| logs::target(c, id, q.index))??;
    let chunk = logs::read(
        &svc.master(),
        &target,
        stream,
        q.offset.unwrap_or(0),
        q.length.unwrap_or(1 << 20),
    )
    .await?;
    Ok(Json(chunk).into_response())
}

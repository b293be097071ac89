//! The v1 executor HTTP API (`POST /api/v1/executor`), through which custom executors talk
//! to the agent (Mesos `executor.proto`): SUBSCRIBE opens a RecordIO event stream
//! (SUBSCRIBED, LAUNCH, KILL, ACKNOWLEDGED, MESSAGE, SHUTDOWN), UPDATE sends a task's
//! status, MESSAGE a message for the framework.
//!
//! This module is only the HTTP edge: content negotiation (JSON with Mesos' rules or
//! protobuf, `415`/`406` otherwise), decoding and the checks that need no agent state
//! (ids, a UUID on every update, no TASK_STAGING from an executor); each valid call goes to
//! the agent loop as an [`ExecutorCall`] and its answer becomes the HTTP status. A call is
//! hostile until checked: errors are `400` with a body naming the field, and change
//! nothing.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_api::mesos::{executor, json, v1};
use tessera_types::{ExecutorId, FrameworkId, Reason, TaskId, TaskState};
use tokio::sync::{mpsc, oneshot};

/// Events queued for one executor's stream before the agent stops waiting for it.
pub const STREAM_QUEUE: usize = 256;

/// The body encodings of the v1 APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Protobuf,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Json => "application/json",
            Encoding::Protobuf => "application/x-protobuf",
        }
    }

    fn parse(v: &str) -> Option<Encoding> {
        match v.split(';').next()?.trim().to_ascii_lowercase().as_str() {
            "application/json" => Some(Encoding::Json),
            "application/x-protobuf" => Some(Encoding::Protobuf),
            _ => None,
        }
    }
}

/// A status update from an executor, checked.
#[derive(Debug, Clone)]
pub struct ExecutorUpdate {
    pub task_id: TaskId,
    pub state: TaskState,
    pub message: Option<String>,
    pub reason: Option<Reason>,
    pub healthy: Option<bool>,
    /// The executor's UUID for the update (hyphenated); the acknowledgement carries it back.
    pub uuid: String,
}

/// What an executor asks.
#[derive(Debug)]
pub enum CallKind {
    /// Open the event stream; events go to `events`.
    Subscribe {
        events: mpsc::Sender<executor::Event>,
    },
    Update(ExecutorUpdate),
    Message(Vec<u8>),
}

/// A checked call for the agent loop, and where its answer goes.
#[derive(Debug)]
pub struct ExecutorCall {
    pub framework_id: FrameworkId,
    pub executor_id: ExecutorId,
    pub kind: CallKind,
    pub reply: oneshot::Sender<Result<(), CallError>>,
}

/// Why the agent refused a call: the HTTP status and a message saying what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub status: StatusCode,
    pub message: String,
}

impl CallError {
    pub fn bad(message: impl Into<String>) -> Self {
        CallError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut m = message.into();
    if !m.ends_with('\n') {
        m.push('\n');
    }
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        m,
    )
        .into_response()
}

fn bad(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

/// The encoding the client accepts for the stream: JSON when it does not say.
fn accepted_encoding(headers: &HeaderMap, request: Encoding) -> Result<Encoding, Box<Response>> {
    let values: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    if values.is_empty() {
        return Ok(request);
    }
    for v in &values {
        if let Some(e) = Encoding::parse(v) {
            return Ok(e);
        }
        let t = v.split(';').next().unwrap_or("").trim();
        if t == "*/*" || t == "application/*" {
            return Ok(request);
        }
    }
    Err(Box::new(error(
        StatusCode::NOT_ACCEPTABLE,
        "Expecting 'Accept' to allow application/json or application/x-protobuf",
    )))
}

/// Decodes and checks a call body.
pub fn decode_call(encoding: Encoding, body: &[u8]) -> Result<executor::Call, String> {
    match encoding {
        Encoding::Json => json::decode::<executor::Call>(body)
            .map_err(|e| format!("Failed to parse body into Call: {e}")),
        Encoding::Protobuf => <executor::Call as prost::Message>::decode(body)
            .map_err(|e| format!("Failed to parse body into Call: {e}")),
    }
}

/// The checks of an UPDATE that need no agent state.
pub fn check_update(u: Option<&executor::call::Update>) -> Result<ExecutorUpdate, String> {
    let u = u.ok_or("update: is required for an UPDATE call")?;
    let s = &u.status;
    let task_id = TaskId::new(s.task_id.value.clone())
        .map_err(|e| format!("update.status.task_id.value: {e}"))?;
    let state = TaskState::from_i32(s.state)
        .ok_or_else(|| format!("update.status.state: {} is not a task state", s.state))?;
    if state == TaskState::TaskStaging {
        return Err("update.status.state: an executor must not send TASK_STAGING".into());
    }
    let raw = s
        .uuid
        .as_ref()
        .ok_or("update.status.uuid: is required (16 bytes, a UUID)")?;
    let uuid = uuid::Uuid::from_slice(raw)
        .map_err(|_| {
            format!(
                "update.status.uuid: must be 16 bytes (a UUID), got {} bytes",
                raw.len()
            )
        })?
        .hyphenated()
        .to_string();
    if let Some(src) = s.source
        && src != v1::task_status::Source::Executor as i32
    {
        return Err("update.status.source: must be SOURCE_EXECUTOR".into());
    }
    Ok(ExecutorUpdate {
        task_id,
        state,
        message: s.message.clone(),
        reason: s.reason.and_then(Reason::from_i32),
        healthy: s.healthy,
        uuid,
    })
}

/// `POST /api/v1/executor`. `calls` reaches the agent loop; `None` when this agent runs no
/// custom executors (a test server), which answers 503.
pub async fn handle(
    calls: Option<mpsc::Sender<ExecutorCall>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return bad("Expecting 'Content-Type' to be present");
    };
    let Some(encoding) = ct.to_str().ok().and_then(Encoding::parse) else {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expecting 'Content-Type' of application/json or application/x-protobuf",
        );
    };
    let call = match decode_call(encoding, &body) {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
    let framework_id = match FrameworkId::new(call.framework_id.value.clone()) {
        Ok(f) => f,
        Err(e) => return bad(format!("framework_id.value: {e}")),
    };
    let executor_id = match ExecutorId::new(call.executor_id.value.clone()) {
        Ok(e) => e,
        Err(e) => return bad(format!("executor_id.value: {e}")),
    };
    use executor::call::Type;
    let (kind, stream) = match call.r#type() {
        Type::Subscribe => {
            let accept = match accepted_encoding(&headers, encoding) {
                Ok(a) => a,
                Err(r) => return *r,
            };
            let (tx, rx) = mpsc::channel(STREAM_QUEUE);
            (CallKind::Subscribe { events: tx }, Some((accept, rx)))
        }
        Type::Update => match check_update(call.update.as_ref()) {
            Ok(u) => (CallKind::Update(u), None),
            Err(e) => return bad(e),
        },
        Type::Message => match &call.message {
            Some(m) => (CallKind::Message(m.data.clone()), None),
            None => return bad("message: is required for a MESSAGE call"),
        },
        Type::Heartbeat => return StatusCode::ACCEPTED.into_response(),
        Type::Unknown => return bad("type: is required (SUBSCRIBE, UPDATE, MESSAGE)"),
    };
    let Some(calls) = calls else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this agent does not run custom executors",
        );
    };
    let (reply, answer) = oneshot::channel();
    let sent = calls
        .send(ExecutorCall {
            framework_id,
            executor_id,
            kind,
            reply,
        })
        .await;
    let stopping = || {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent is shutting down",
        )
    };
    if sent.is_err() {
        return stopping();
    }
    match answer.await {
        Err(_) => stopping(),
        Ok(Err(e)) => error(e.status, e.message),
        Ok(Ok(())) => match stream {
            None => StatusCode::ACCEPTED.into_response(),
            Some((accept, rx)) => event_stream(accept, rx),
        },
    }
}

/// The 200 response of SUBSCRIBE: each event one RecordIO record, sent as its own chunk.
fn event_stream(encoding: Encoding, rx: mpsc::Receiver<executor::Event>) -> Response {
    use futures_util::StreamExt;
    let records = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |ev| {
        let bytes = match encoding {
            Encoding::Json => json::encode(&ev),
            Encoding::Protobuf => prost::Message::encode_to_vec(&ev),
        };
        Ok::<_, Infallible>(Bytes::from(tessera_api::recordio::frame(&bytes)))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, encoding.content_type())],
        Body::from_stream(records),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(state: TaskState, uuid: Option<Vec<u8>>) -> executor::call::Update {
        executor::call::Update {
            status: v1::TaskStatus {
                task_id: v1::TaskId { value: "t1".into() },
                state: state.as_i32(),
                uuid,
                ..Default::default()
            },
        }
    }

    #[test]
    fn updates_need_a_uuid_and_no_staging() {
        let id = uuid::Uuid::new_v4();
        let ok = check_update(Some(&update(
            TaskState::TaskRunning,
            Some(id.as_bytes().to_vec()),
        )))
        .unwrap();
        assert_eq!(ok.uuid, id.hyphenated().to_string());
        assert_eq!(ok.state, TaskState::TaskRunning);
        let e = check_update(Some(&update(TaskState::TaskRunning, None))).unwrap_err();
        assert!(e.starts_with("update.status.uuid"), "{e}");
        let e = check_update(Some(&update(TaskState::TaskRunning, Some(vec![1, 2])))).unwrap_err();
        assert!(e.contains("got 2 bytes"), "{e}");
        let e = check_update(Some(&update(
            TaskState::TaskStaging,
            Some(id.as_bytes().to_vec()),
        )))
        .unwrap_err();
        assert!(e.contains("TASK_STAGING"), "{e}");
        assert!(check_update(None).unwrap_err().starts_with("update:"));
    }

    #[test]
    fn json_calls_decode_with_mesos_rules() {
        let body = br#"{"type":"MESSAGE","framework_id":{"value":"f"},"executor_id":{"value":"e"},
            "message":{"data":"aGk="},"unknown":null}"#;
        let c = decode_call(Encoding::Json, body).unwrap();
        assert_eq!(c.message.unwrap().data, b"hi");
        let e = decode_call(Encoding::Json, br#"{"type":"SUBSCRIBE"}"#).unwrap_err();
        assert!(e.contains("framework_id"), "{e}");
    }

    #[test]
    fn accept_defaults_to_the_request_encoding() {
        let mut h = HeaderMap::new();
        assert_eq!(
            accepted_encoding(&h, Encoding::Protobuf).unwrap(),
            Encoding::Protobuf
        );
        h.insert(header::ACCEPT, "application/json".parse().unwrap());
        assert_eq!(
            accepted_encoding(&h, Encoding::Protobuf).unwrap(),
            Encoding::Json
        );
        h.insert(header::ACCEPT, "text/html".parse().unwrap());
        assert_eq!(
            accepted_encoding(&h, Encoding::Json).unwrap_err().status(),
            StatusCode::NOT_ACCEPTABLE
        );
    }
}

//! `POST /api/v1` (also `/master/api/v1` and pymesos' `/api/v1/operator`): the Mesos v1
//! operator API. Content rules as for the scheduler endpoint; sync calls answer 200 with a
//! `master::Response`, mutations 200 (reservations 202) with an empty body, SUBSCRIBE a
//! RecordIO stream of `master::Event`s; the maintenance calls are in `super::maintenance`.
//! Status codes follow Mesos: 400 for bad input and unknown ids (and a quota limit below
//! consumption without `force`), 409 when a reservation conflicts with the agent's free
//! resources.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_allocator::Quota;
use tessera_api::mesos::{convert, json, master, protobuf, v1};
use tessera_api::recordio;
use tessera_types::{AgentId, FrameworkId, Role, Scalar};
use tokio::sync::{broadcast, mpsc};

use super::HttpState;
use super::encoding::{Encoding, error, request_encoding, response_encoding};
use super::events::master_info;
use super::operator_convert as oc;
use crate::actor::AgentAction;
use crate::config::MESOS_API_VERSION;
use crate::error::MasterError;

pub(super) type Reply = Result<Response, Response>;

pub async fn handle(State(st): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    match handle_inner(st, &headers, &body).await {
        Ok(r) | Err(r) => r,
    }
}

async fn handle_inner(st: HttpState, headers: &HeaderMap, body: &[u8]) -> Reply {
    let enc = request_encoding(headers)?;
    let decoded: Result<master::Call, _> = match enc {
        Encoding::Json => json::decode(body),
        Encoding::Protobuf => protobuf::decode(body),
    };
    let call = decoded.map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("Failed to parse body into Call: {e}{}", hint(&e)),
        )
    })?;
    validate(&call).map_err(|why| {
        error(
            StatusCode::BAD_REQUEST,
            format!("Failed to validate master::Call: {why}"),
        )
    })?;
    let out = response_encoding(headers)?;
    dispatch(&st, call, out).await
}

/// What to do about a body that could not be decoded, when that is not obvious.
pub(super) fn hint(e: &tessera_api::CodecError) -> &'static str {
    match e {
        tessera_api::CodecError::NotInitialized(_) => "; these required fields must be set",
        _ => "",
    }
}

/// `Call` must name its type and carry the message its type needs.
fn validate(call: &master::Call) -> Result<(), String> {
    use master::call::Type;
    let need = |present: bool, name: &str| {
        if present {
            Ok(())
        } else {
            Err(format!("Expecting '{name}' to be present"))
        }
    };
    match call.r#type() {
        Type::Unknown => Err("Expecting 'type' to be present".into()),
        Type::UpdateWeights => need(call.update_weights.is_some(), "update_weights"),
        Type::UpdateQuota => need(call.update_quota.is_some(), "update_quota"),
        Type::ReserveResources => need(call.reserve_resources.is_some(), "reserve_resources"),
        Type::UnreserveResources => need(call.unreserve_resources.is_some(), "unreserve_resources"),
        Type::CreateVolumes => need(call.create_volumes.is_some(), "create_volumes"),
        Type::DestroyVolumes => need(call.destroy_volumes.is_some(), "destroy_volumes"),
        Type::DrainAgent => need(call.drain_agent.is_some(), "drain_agent"),
        Type::DeactivateAgent => need(call.deactivate_agent.is_some(), "deactivate_agent"),
        Type::ReactivateAgent => need(call.reactivate_agent.is_some(), "reactivate_agent"),
        Type::MarkAgentGone => need(call.mark_agent_gone.is_some(), "mark_agent_gone"),
        Type::Teardown => need(call.teardown.is_some(), "teardown"),
        Type::UpdateMaintenanceSchedule => need(
            call.update_maintenance_schedule.is_some(),
            "update_maintenance_schedule",
        ),
        Type::StartMaintenance => need(call.start_maintenance.is_some(), "start_maintenance"),
        Type::StopMaintenance => need(call.stop_maintenance.is_some(), "stop_maintenance"),
        _ => Ok(()),
    }
}

pub(super) fn bad(e: impl std::fmt::Display) -> Response {
    error(StatusCode::BAD_REQUEST, e.to_string())
}

/// A master error as Mesos would answer it; `conflict` is the status for
/// [`MasterError::Conflict`].
pub(super) fn master_error(e: MasterError, conflict: StatusCode) -> Response {
    match e {
        MasterError::Stopped => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the master is shutting down; retry",
        ),
        MasterError::Conflict(m) => error(conflict, m),
        MasterError::Registry(_) | MasterError::Io(_) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        other => bad(other),
    }
}

fn agent_id(field: &str, id: &v1::AgentId) -> Result<AgentId, Response> {
    AgentId::new(id.value.clone()).map_err(|e| bad(format!("{field}: {e}")))
}

async fn snapshot(st: &HttpState) -> Result<crate::model::MasterState, Response> {
    st.handle
        .state()
        .await
        .map_err(|e| master_error(e, StatusCode::CONFLICT))
}

pub(super) fn respond(out: Encoding, r: master::Response) -> Response {
    let body = match out {
        Encoding::Json => json::encode(&r),
        Encoding::Protobuf => protobuf::encode(&r),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, out.content_type())],
        body,
    )
        .into_response()
}

pub(super) fn response(t: master::response::Type) -> master::Response {
    let mut r = master::Response::default();
    r.set_type(t);
    r
}

pub(super) fn ok() -> Reply {
    Ok(StatusCode::OK.into_response())
}

async fn dispatch(st: &HttpState, call: master::Call, out: Encoding) -> Reply {
    use master::call::Type;
    use master::response::{self as mr, Type as R};
    let h = &st.handle;
    let t = call.r#type();
    let reply = |r: master::Response| Ok(respond(out, r));
    match t {
        Type::GetHealth => {
            let mut r = response(R::GetHealth);
            r.get_health = Some(mr::GetHealth { healthy: true });
            reply(r)
        }
        Type::GetFlags => {
            let mut r = response(R::GetFlags);
            r.get_flags = Some(mr::GetFlags {
                flags: st
                    .flags
                    .iter()
                    .map(|(k, v)| v1::Flag {
                        name: k.clone(),
                        value: Some(v.clone()),
                    })
                    .collect(),
            });
            reply(r)
        }
        Type::GetVersion => {
            let mut r = response(R::GetVersion);
            r.get_version = Some(mr::GetVersion {
                version_info: v1::VersionInfo {
                    version: MESOS_API_VERSION.to_string(),
                    build_user: Some("tessera".into()),
                    ..Default::default()
                },
            });
            reply(r)
        }
        Type::GetMetrics => {
            let mut r = response(R::GetMetrics);
            r.get_metrics = Some(mr::GetMetrics {
                metrics: metrics(st)
                    .await?
                    .into_iter()
                    .map(|(name, v)| v1::Metric {
                        name,
                        value: v.as_f64(),
                    })
                    .collect(),
            });
            reply(r)
        }
        Type::GetState => {
            let s = snapshot(st).await?;
            let mut r = response(R::GetState);
            r.get_state = Some(oc::get_state(&s));
            reply(r)
        }
        Type::GetAgents => {
            let s = snapshot(st).await?;
            let mut r = response(R::GetAgents);
            r.get_agents = Some(oc::agents(&s));
            reply(r)
        }
        Type::GetFrameworks => {
            let s = snapshot(st).await?;
            let mut r = response(R::GetFrameworks);
            r.get_frameworks = Some(oc::frameworks(&s));
            reply(r)
        }
        Type::GetExecutors => {
            let s = snapshot(st).await?;
            let mut r = response(R::GetExecutors);
            r.get_executors = Some(oc::executors(&s));
            reply(r)
        }
        Type::GetOperations => {
            let s = snapshot(st).await?;
            let mut r = response(R::GetOperations);
            r.get_operations = Some(oc::operations(&s));
            reply(r)
        }
        Type::GetTasks => {
            let s = snapshot(st).await?;
            let mut r = response(R::GetTasks);
            r.get_tasks = Some(oc::tasks(&s));
            reply(r)
        }
        Type::GetRoles => {
            let s = snapshot(st).await?;
            let mut r = response(R::GetRoles);
            r.get_roles = Some(oc::roles(&s));
            reply(r)
        }
        Type::GetWeights => {
            let s = snapshot(st).await?;
            let mut r = response(R::GetWeights);
            r.get_weights = Some(oc::weights(&s));
            reply(r)
        }
        Type::GetMaster => {
            let s = snapshot(st).await?;
            let mut r = response(R::GetMaster);
            r.get_master = Some(mr::GetMaster {
                master_info: Some(master_info(&st.identity)),
                start_time: Some(s.start_time),
                elected_time: Some(s.start_time),
            });
            reply(r)
        }
        Type::GetQuota => {
            let s = snapshot(st).await?;
            let mut r = response(R::GetQuota);
            r.get_quota = Some(mr::GetQuota {
                status: oc::quota_status(&s),
            });
            reply(r)
        }
        Type::Subscribe => subscribe(st, out).await,
        Type::GetMaintenanceSchedule
        | Type::GetMaintenanceStatus
        | Type::UpdateMaintenanceSchedule
        | Type::StartMaintenance
        | Type::StopMaintenance => super::maintenance::v1_call(st, call, out).await,
        Type::UpdateWeights => {
            let u = call.update_weights.unwrap_or_default();
            let mut parsed = Vec::new();
            for (i, w) in u.weight_infos.iter().enumerate() {
                let field = format!("update_weights.weight_infos[{i}]");
                let Some(role) = &w.role else {
                    return Err(bad(format!("{field}.role: is required")));
                };
                let role = Role::with_field(&format!("{field}.role"), role.clone()).map_err(bad)?;
                if !w.weight.is_finite() || w.weight <= 0.0 {
                    return Err(bad(format!(
                        "{field}.weight: {} is not a positive finite number",
                        w.weight
                    )));
                }
                parsed.push((role, w.weight));
            }
            for (role, weight) in parsed {
                h.set_weight(role, weight)
                    .await
                    .map_err(|e| master_error(e, StatusCode::BAD_REQUEST))?;
            }
            ok()
        }
        Type::UpdateQuota => update_quota(st, call.update_quota.unwrap_or_default()).await,
        Type::ReserveResources | Type::UnreserveResources => {
            let reserve = t == Type::ReserveResources;
            let (field, agent, resources) = if reserve {
                let r = call.reserve_resources.unwrap_or_default();
                if !r.source.is_empty() {
                    return Err(error(
                        StatusCode::NOT_IMPLEMENTED,
                        "reserve_resources.source (reservation refinement) is not supported",
                    ));
                }
                ("reserve_resources", r.agent_id, r.resources)
            } else {
                let r = call.unreserve_resources.unwrap_or_default();
                ("unreserve_resources", r.agent_id, r.resources)
            };
            let agent = agent_id(&format!("{field}.agent_id"), &agent)?;
            let resources = convert::resources_from_v1(&format!("{field}.resources"), &resources)
                .map_err(bad)?;
            if resources.is_empty() {
                return Err(bad(format!("{field}.resources: must not be empty")));
            }
            h.reservation(agent, resources, reserve)
                .await
                .map_err(|e| master_error(e, StatusCode::CONFLICT))?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        Type::CreateVolumes | Type::DestroyVolumes => {
            let create = t == Type::CreateVolumes;
            let (field, agent, volumes) = if create {
                let c = call.create_volumes.unwrap_or_default();
                ("create_volumes", c.agent_id, c.volumes)
            } else {
                let d = call.destroy_volumes.unwrap_or_default();
                ("destroy_volumes", d.agent_id, d.volumes)
            };
            let agent = agent_id(&format!("{field}.agent_id"), &agent)?;
            let volumes =
                convert::resources_from_v1(&format!("{field}.volumes"), &volumes).map_err(bad)?;
            h.volumes(agent, volumes, create)
                .await
                .map_err(|e| master_error(e, StatusCode::CONFLICT))?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        Type::DrainAgent => {
            let d = call.drain_agent.unwrap_or_default();
            let agent = agent_id("drain_agent.agent_id", &d.agent_id)?;
            let grace = match d.max_grace_period {
                None => None,
                Some(p) if p.seconds < 0 || p.nanos < 0 => {
                    return Err(bad("drain_agent.max_grace_period: must not be negative"));
                }
                Some(p) => Some(Duration::new(p.seconds as u64, p.nanos as u32)),
            };
            let action = AgentAction::Drain {
                grace,
                mark_gone: d.mark_gone.unwrap_or(false),
            };
            agent_action(st, agent, action).await
        }
        Type::DeactivateAgent => {
            let d = call.deactivate_agent.unwrap_or_default();
            let agent = agent_id("deactivate_agent.agent_id", &d.agent_id)?;
            agent_action(st, agent, AgentAction::Deactivate).await
        }
        Type::ReactivateAgent => {
            let d = call.reactivate_agent.unwrap_or_default();
            let agent = agent_id("reactivate_agent.agent_id", &d.agent_id)?;
            agent_action(st, agent, AgentAction::Reactivate).await
        }
        Type::MarkAgentGone => {
            let d = call.mark_agent_gone.unwrap_or_default();
            let agent = agent_id("mark_agent_gone.agent_id", &d.agent_id)?;
            agent_action(st, agent, AgentAction::MarkGone).await
        }
        Type::Teardown => {
            let d = call.teardown.unwrap_or_default();
            let fw = FrameworkId::new(d.framework_id.value.clone())
                .map_err(|e| bad(format!("teardown.framework_id: {e}")))?;
            h.teardown(fw.clone())
                .await
                .map_err(|e| master_error(e, StatusCode::CONFLICT))?;
            st.streams
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&fw);
            ok()
        }
        other => Err(error(
            StatusCode::NOT_IMPLEMENTED,
            format!("{} is not supported by this master", other.as_str_name()),
        )),
    }
}

/// The `/metrics/snapshot` values, read through that endpoint so both stay identical.
async fn metrics(st: &HttpState) -> Result<serde_json::Map<String, serde_json::Value>, Response> {
    let resp = super::state::metrics_snapshot(State(st.clone())).await;
    if resp.status() != StatusCode::OK {
        return Err(resp);
    }
    let body = axum::body::to_bytes(resp.into_body(), super::MAX_BODY_BYTES)
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match serde_json::from_slice(&body) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        _ => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics snapshot is not a JSON object",
        )),
    }
}

async fn agent_action(st: &HttpState, agent: AgentId, action: AgentAction) -> Reply {
    st.handle
        .agent_action(agent, action)
        .await
        .map_err(|e| master_error(e, StatusCode::CONFLICT))?;
    ok()
}

fn scalars(
    field: &str,
    m: &std::collections::HashMap<String, v1::value::Scalar>,
) -> Result<BTreeMap<String, Scalar>, Response> {
    m.iter()
        .map(|(k, v)| {
            Scalar::from_f64(&format!("{field}.{k}"), v.value)
                .map(|s| (k.clone(), s))
                .map_err(bad)
        })
        .collect()
}

/// UPDATE_QUOTA: every config is validated (and, without `force`, checked against the
/// role's consumption) before any is applied.
async fn update_quota(st: &HttpState, u: master::call::UpdateQuota) -> Reply {
    let force = u.force.unwrap_or(false);
    let mut parsed = Vec::new();
    for (i, c) in u.quota_configs.iter().enumerate() {
        let field = format!("update_quota.quota_configs[{i}]");
        let role = Role::with_field(&format!("{field}.role"), c.role.clone()).map_err(bad)?;
        let q = Quota {
            guarantees: scalars(&format!("{field}.guarantees"), &c.guarantees)?,
            limits: scalars(&format!("{field}.limits"), &c.limits)?,
        };
        q.validate(&role)
            .map_err(|e| bad(format!("Invalid QuotaConfig: {field}: {e}")))?;
        parsed.push((role, q));
    }
    if !force && parsed.iter().any(|(_, q)| !q.limits.is_empty()) {
        let s = snapshot(st).await?;
        for (role, q) in &parsed {
            let Some(consumed) = oc::consumed(&s, role) else {
                continue;
            };
            for (name, limit) in &q.limits {
                let used = consumed.get(name).copied().unwrap_or_default();
                if used > *limit {
                    return Err(bad(format!(
                        "Invalid QuotaConfig: Role '{role}' is already consuming '{name}:{used}'; this is more than the requested limits '{name}:{limit}' (use 'force' flag to bypass this check)"
                    )));
                }
            }
        }
    }
    for (role, q) in parsed {
        st.handle
            .update_quota(role, q, force)
            .await
            .map_err(|e| master_error(e, StatusCode::BAD_REQUEST))?;
    }
    ok()
}

fn encode_event(e: &master::Event, enc: Encoding) -> Bytes {
    let body = match enc {
        Encoding::Json => json::encode(e),
        Encoding::Protobuf => prost::Message::encode_to_vec(e),
    };
    Bytes::from(recordio::frame(&body))
}

/// Events queued between the broadcast forwarder and the response body.
const FORWARD_QUEUE: usize = 1024;

async fn subscribe(st: &HttpState, enc: Encoding) -> Reply {
    let (state, mut events) = st
        .handle
        .subscribe_operator()
        .await
        .map_err(|e| master_error(e, StatusCode::CONFLICT))?;
    let first = encode_event(&oc::subscribed(&state, st.heartbeat), enc);
    let (tx, rx) = mpsc::channel::<Bytes>(FORWARD_QUEUE);
    // Forward broadcast events until the client goes away or falls too far behind (then
    // the stream ends and the client re-subscribes).
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                ev = events.recv() => match ev {
                    Ok(ev) => {
                        let b = encode_event(&oc::operator_event(&ev), enc);
                        if tx.send(b).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::info!(missed = n, "operator subscriber lagged; ending its stream");
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + st.heartbeat, st.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = OperatorStream {
        first: Some(first),
        events: rx,
        heartbeat,
        encoding: enc,
    };
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(enc.content_type()),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    Ok(resp)
}

/// The body of an operator SUBSCRIBE: SUBSCRIBED, then events and HEARTBEATs.
struct OperatorStream {
    first: Option<Bytes>,
    events: mpsc::Receiver<Bytes>,
    heartbeat: tokio::time::Interval,
    encoding: Encoding,
}

impl tokio_stream::Stream for OperatorStream {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(b) = this.first.take() {
            return Poll::Ready(Some(Ok(b)));
        }
        match this.events.poll_recv(cx) {
            Poll::Ready(Some(b)) => return Poll::Ready(Some(Ok(b))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        if this.heartbeat.poll_tick(cx).is_ready() {
            return Poll::Ready(Some(Ok(encode_event(&oc::heartbeat(), this.encoding))));
        }
        Poll::Pending
    }
}

/// v0 `PUT /weights`: `[{"role":"r","weight":2.0}]`, all validated before any is applied.
pub async fn put_weights(State(st): State<HttpState>, body: Bytes) -> Response {
    let infos: Vec<serde_json::Value> = match serde_json::from_slice(&body) {
        Ok(serde_json::Value::Array(a)) => a,
        Ok(_) => return bad("Expecting a JSON array of {\"role\", \"weight\"} objects"),
        Err(e) => return bad(format!("Failed to parse the request body: {e}")),
    };
    let mut call = master::call::UpdateWeights::default();
    for (i, v) in infos.iter().enumerate() {
        match json::from_value::<v1::WeightInfo>(v) {
            Ok(w) => call.weight_infos.push(w),
            Err(e) => return bad(format!("[{i}]: {e}")),
        }
    }
    let mut c = master::Call::default();
    c.set_type(master::call::Type::UpdateWeights);
    c.update_weights = Some(call);
    match dispatch(&st, c, Encoding::Json).await {
        Ok(r) | Err(r) => r,
    }
}

/// v0 `GET /quota`: the `QuotaStatus` JSON (`{"configs":[…]}`).
pub async fn get_quota_v0(State(st): State<HttpState>) -> Response {
    match snapshot(&st).await {
        Ok(s) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, super::encoding::JSON)],
            json::encode(&oc::quota_status(&s)),
        )
            .into_response(),
        Err(r) => r,
    }
}

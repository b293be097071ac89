//! `POST /api/v1/scheduler`: the Mesos v1 scheduler API, checks in Mesos' order
//! (content type, body, call validation, Accept, stream id) and each call dispatched to the
//! master actor. Semantic problems inside accepted calls (bad offers, invalid tasks) are not
//! HTTP errors: the call gets 202 and the framework hears about it through UPDATE events.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_api::mesos::{convert, json, protobuf, scheduler, v1};
use tessera_types::{Capability, FrameworkId, OfferId, Role, TaskId};

use super::HttpState;
use super::encoding::{Encoding, error, request_encoding, response_encoding};
use super::events::{EventStream, StreamContext, StreamGuard, encode, error_event};
use super::offer_ops;
use crate::error::MasterError;

pub const STREAM_ID: &str = "Mesos-Stream-Id";

pub async fn handle(State(st): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let enc = match request_encoding(&headers) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let decoded: Result<scheduler::Call, _> = match enc {
        Encoding::Json => json::decode(&body),
        Encoding::Protobuf => protobuf::decode(&body),
    };
    let call = match decoded {
        Ok(c) => c,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("Failed to parse body into Call: {e}"),
            );
        }
    };
    if let Err(why) = validate(&call) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("Failed to validate scheduler::Call: {why}"),
        );
    }
    if call.r#type() == scheduler::call::Type::Subscribe {
        return subscribe(st, &headers, call).await;
    }
    // Mesos negotiates `Accept` for the calls whose answers carry a body (events).
    if call.r#type() == scheduler::call::Type::ReconcileOperations
        && let Err(r) = response_encoding(&headers)
    {
        return r;
    }
    // Every other call names a subscribed framework and carries its stream id.
    let Some(fid) = call.framework_id.as_ref() else {
        return error(
            StatusCode::BAD_REQUEST,
            "Failed to validate scheduler::Call: Expecting 'framework_id' to be present",
        );
    };
    let fw = match FrameworkId::new(fid.value.clone()) {
        Ok(f) => f,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("Failed to validate scheduler::Call: {e}"),
            );
        }
    };
    let current = st
        .streams
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&fw)
        .cloned();
    let Some(current) = current else {
        return match st.handle.state().await {
            Ok(s) if s.frameworks.iter().any(|f| f.id == fw) => {
                error(StatusCode::FORBIDDEN, "Framework is not subscribed")
            }
            Ok(_) => error(StatusCode::BAD_REQUEST, "Framework cannot be found"),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        };
    };
    let Some(sid) = headers.get(STREAM_ID).and_then(|v| v.to_str().ok()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "All non-subscribe calls should include the 'Mesos-Stream-Id' header",
        );
    };
    if sid != current {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "The stream ID '{sid}' included in this request didn't match the stream ID currently associated with framework ID {fw}"
            ),
        );
    }
    match dispatch(&st, &fw, call).await {
        Ok(r) => r,
        Err(r) => r,
    }
}

/// Structural checks Mesos makes before dispatch (`validation::scheduler::call`).
fn validate(call: &scheduler::Call) -> Result<(), String> {
    use scheduler::call::Type;
    let t = call.r#type();
    let need = |present: bool, name: &str| {
        if present {
            Ok(())
        } else {
            Err(format!("Expecting '{name}' to be present"))
        }
    };
    if t != Type::Subscribe {
        need(call.framework_id.is_some(), "framework_id")?;
    }
    match t {
        Type::Unknown => Err("Expecting 'type' to be present".into()),
        Type::Subscribe => need(call.subscribe.is_some(), "subscribe"),
        Type::Accept => need(call.accept.is_some(), "accept"),
        Type::Decline => need(call.decline.is_some(), "decline"),
        Type::AcceptInverseOffers => need(
            call.accept_inverse_offers.is_some(),
            "accept_inverse_offers",
        ),
        Type::DeclineInverseOffers => need(
            call.decline_inverse_offers.is_some(),
            "decline_inverse_offers",
        ),
        Type::Kill => need(call.kill.is_some(), "kill"),
        Type::Shutdown => need(call.shutdown.is_some(), "shutdown"),
        Type::Acknowledge => need(call.acknowledge.is_some(), "acknowledge"),
        Type::AcknowledgeOperationStatus => {
            let Some(a) = &call.acknowledge_operation_status else {
                return Err("Expecting 'acknowledge_operation_status' to be present".into());
            };
            operation_uuid(&a.uuid)?;
            need(a.agent_id.is_some(), "agent_id")
        }
        Type::Reconcile => need(call.reconcile.is_some(), "reconcile"),
        Type::ReconcileOperations => {
            need(call.reconcile_operations.is_some(), "reconcile_operations")
        }
        Type::Message => need(call.message.is_some(), "message"),
        Type::Request => need(call.request.is_some(), "request"),
        Type::UpdateFramework => need(call.update_framework.is_some(), "update_framework"),
        Type::Teardown | Type::Revive | Type::Suppress => Ok(()),
    }
}

async fn subscribe(st: HttpState, headers: &HeaderMap, call: scheduler::Call) -> Response {
    if headers.contains_key(STREAM_ID) {
        return error(
            StatusCode::BAD_REQUEST,
            "Subscribe calls should not include the 'Mesos-Stream-Id' header",
        );
    }
    let enc = match response_encoding(headers) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let Some(sub) = call.subscribe else {
        return error(
            StatusCode::BAD_REQUEST,
            "Expecting 'subscribe' to be present",
        );
    };
    let mut fi = sub.framework_info;
    match (&call.framework_id, &fi.id) {
        (Some(a), Some(b)) if a.value != b.value => {
            return error(
                StatusCode::BAD_REQUEST,
                "Failed to validate scheduler::Call: 'framework_id' differs from 'subscribe.framework_info.id'",
            );
        }
        (Some(a), None) => fi.id = Some(a.clone()),
        _ => {}
    }
    let stream_id = uuid::Uuid::new_v4().to_string();
    let info = convert::framework_info_from_v1(&fi);
    let multi_role = info.as_ref().is_ok_and(|i| i.has(Capability::MultiRole));
    let ctx = StreamContext {
        encoding: enc,
        identity: st.identity.clone(),
        heartbeat: st.heartbeat,
        multi_role,
    };
    let mut guard = StreamGuard {
        streams: st.streams.clone(),
        framework: None,
        stream_id: stream_id.clone(),
    };
    let suppressed: Result<Vec<Role>, String> = sub
        .suppressed_roles
        .iter()
        .enumerate()
        .map(|(i, r)| {
            Role::with_field(&format!("subscribe.suppressed_roles[{i}]"), r.clone())
                .map_err(|e| e.to_string())
        })
        .collect();
    let outcome = match (info, suppressed) {
        (Err(e), _) => Err(e.to_string()),
        (_, Err(e)) => Err(e),
        (Ok(info), Ok(suppressed)) => st
            .handle
            .subscribe_suppressed(info, suppressed)
            .await
            .map_err(|e| e.to_string()),
    };
    let (events, first) = match outcome {
        Ok(s) => {
            st.streams
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(s.framework_id.clone(), stream_id.clone());
            guard.framework = Some(s.framework_id.clone());
            (Some(s.events), Vec::new())
        }
        // Mesos answers a SUBSCRIBE it cannot honour with a stream holding one ERROR.
        Err(msg) => (None, vec![encode(&error_event(&msg), enc)]),
    };
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + st.heartbeat, st.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = EventStream {
        done: events.is_none(),
        events,
        first,
        heartbeat,
        ctx,
        _guard: guard,
    };
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(enc.content_type()),
    );
    if let Ok(v) = header::HeaderValue::from_str(&stream_id) {
        h.insert(STREAM_ID, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    resp
}

fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

/// Maps a master error to the answer Mesos gives: semantic problems are still 202.
fn after(r: Result<(), MasterError>, what: &str, fw: &FrameworkId) -> Result<Response, Response> {
    match r {
        Ok(()) => Ok(accepted()),
        Err(MasterError::Stopped) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the master is shutting down; retry",
        )),
        Err(MasterError::Invalid(e)) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("Failed to validate scheduler::Call: {e}"),
        )),
        Err(e) => {
            tracing::info!(framework_id = %fw, call = what, error = %e, "call had no effect");
            Ok(accepted())
        }
    }
}

fn roles(field: &str, rs: &[String]) -> Result<Option<Vec<Role>>, Response> {
    if rs.is_empty() {
        return Ok(None);
    }
    rs.iter()
        .enumerate()
        .map(|(i, r)| Role::with_field(&format!("{field}[{i}]"), r.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
        .map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("Failed to validate scheduler::Call: {e}"),
            )
        })
}

fn offer_ids(ids: &[v1::OfferId]) -> Vec<OfferId> {
    ids.iter()
        .filter_map(|o| OfferId::new(o.value.clone()).ok())
        .collect()
}

/// ACKNOWLEDGE_OPERATION_STATUS's `uuid`: 16 raw bytes.
fn operation_uuid(bytes: &[u8]) -> Result<uuid::Uuid, String> {
    uuid::Uuid::from_slice(bytes).map_err(|_| {
        format!(
            "acknowledge_operation_status.uuid: must be 16 bytes (a UUID), got {} bytes",
            bytes.len()
        )
    })
}

fn bad(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        format!("Failed to validate scheduler::Call: {e}"),
    )
}

async fn dispatch(
    st: &HttpState,
    fw: &FrameworkId,
    call: scheduler::Call,
) -> Result<Response, Response> {
    use scheduler::call::Type;
    let h = &st.handle;
    let fwc = fw.clone();
    match call.r#type() {
        Type::Teardown => {
            let r = h.teardown(fwc).await;
            st.streams
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(fw);
            after(r, "TEARDOWN", fw)
        }
        Type::Accept => {
            let a = call.accept.unwrap_or_default();
            let filters = convert::filters_from_v1(a.filters.as_ref());
            let ops = offer_ops::operations(&a.operations).map_err(bad)?;
            let ids = offer_ids(&a.offer_ids);
            let r = if ops.is_empty() {
                h.decline(fwc, ids, filters).await
            } else {
                h.accept(fwc, ids, ops, filters).await
            };
            after(r, "ACCEPT", fw)
        }
        Type::Decline => {
            let d = call.decline.unwrap_or_default();
            let r = h
                .decline(
                    fwc,
                    offer_ids(&d.offer_ids),
                    convert::filters_from_v1(d.filters.as_ref()),
                )
                .await;
            after(r, "DECLINE", fw)
        }
        Type::Revive => {
            let rs = roles("revive.roles", &call.revive.unwrap_or_default().roles)?;
            after(h.revive(fwc, rs).await, "REVIVE", fw)
        }
        Type::Suppress => {
            let rs = roles("suppress.roles", &call.suppress.unwrap_or_default().roles)?;
            after(h.suppress(fwc, rs).await, "SUPPRESS", fw)
        }
        Type::Kill => {
            let k = call.kill.unwrap_or_default();
            let task = TaskId::new(k.task_id.value).map_err(bad)?;
            let grace = match k.kill_policy.as_ref().and_then(|p| p.grace_period.as_ref()) {
                None => None,
                Some(d) if d.nanoseconds < 0 => {
                    return Err(bad(
                        "kill.kill_policy.grace_period.nanoseconds: must not be negative",
                    ));
                }
                Some(d) => Some(std::time::Duration::from_nanos(d.nanoseconds as u64)),
            };
            after(h.kill_with_grace(fwc, task, grace).await, "KILL", fw)
        }
        Type::Acknowledge => {
            let a = call.acknowledge.unwrap_or_default();
            let uuid = convert::uuid_from_v1(&a.uuid).map_err(bad)?;
            let agent = tessera_types::AgentId::new(a.agent_id.value).map_err(bad)?;
            let task = TaskId::new(a.task_id.value).map_err(bad)?;
            after(
                h.acknowledge(fwc, agent, task, uuid).await,
                "ACKNOWLEDGE",
                fw,
            )
        }
        Type::Reconcile => {
            let r = call.reconcile.unwrap_or_default();
            let mut ids = Vec::with_capacity(r.tasks.len());
            for (i, t) in r.tasks.iter().enumerate() {
                let task = TaskId::new(t.task_id.value.clone())
                    .map_err(|e| bad(format!("reconcile.tasks[{i}].{e}")))?;
                let agent = t
                    .agent_id
                    .as_ref()
                    .map(|a| tessera_types::AgentId::new(a.value.clone()))
                    .transpose()
                    .map_err(|e| bad(format!("reconcile.tasks[{i}].agent_id: {e}")))?;
                ids.push((task, agent));
            }
            after(h.reconcile(fwc, ids).await, "RECONCILE", fw)
        }
        Type::AcknowledgeOperationStatus => {
            let a = call.acknowledge_operation_status.unwrap_or_default();
            let uuid = operation_uuid(&a.uuid).map_err(bad)?;
            let operation = offer_ops::operation_id(
                "acknowledge_operation_status.operation_id",
                &a.operation_id,
            )
            .map_err(bad)?;
            let agent = a.agent_id.unwrap_or_default();
            let agent = tessera_types::AgentId::new(agent.value)
                .map_err(|e| bad(format!("acknowledge_operation_status.{e}")))?;
            let r = h.acknowledge_operation(fwc, agent, operation, uuid).await;
            after(r, "ACKNOWLEDGE_OPERATION_STATUS", fw)
        }
        Type::ReconcileOperations => {
            let r = call.reconcile_operations.unwrap_or_default();
            let mut ops = Vec::with_capacity(r.operations.len());
            for (i, o) in r.operations.iter().enumerate() {
                let field = format!("reconcile_operations.operations[{i}]");
                let id = offer_ops::operation_id(&format!("{field}.operation_id"), &o.operation_id)
                    .map_err(bad)?;
                let agent = o
                    .agent_id
                    .as_ref()
                    .map(|a| tessera_types::AgentId::new(a.value.clone()))
                    .transpose()
                    .map_err(|e| bad(format!("{field}.{e}")))?;
                ops.push((id, agent));
            }
            let r = h.reconcile_operations(fwc, ops).await;
            after(r, "RECONCILE_OPERATIONS", fw)
        }
        Type::AcceptInverseOffers | Type::DeclineInverseOffers => {
            let accept = call.r#type() == Type::AcceptInverseOffers;
            let (field, ids, filters) = if accept {
                let a = call.accept_inverse_offers.unwrap_or_default();
                ("accept_inverse_offers", a.inverse_offer_ids, a.filters)
            } else {
                let d = call.decline_inverse_offers.unwrap_or_default();
                ("decline_inverse_offers", d.inverse_offer_ids, d.filters)
            };
            let ids = ids
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    OfferId::new(o.value.clone()).map_err(|e| {
                        let why = match e {
                            tessera_types::Error::Invalid { reason, .. } => reason,
                            other => other.to_string(),
                        };
                        bad(format!("{field}.inverse_offer_ids[{i}].value: {why}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let filters = convert::filters_from_v1(filters.as_ref());
            let r = h.answer_inverse_offers(fwc, ids, accept, filters).await;
            after(
                r,
                if accept {
                    "ACCEPT_INVERSE_OFFERS"
                } else {
                    "DECLINE_INVERSE_OFFERS"
                },
                fw,
            )
        }
        Type::Message | Type::Shutdown => {
            let (field, agent, executor, action) = if call.r#type() == Type::Message {
                let m = call.message.unwrap_or_default();
                let action = crate::custom::ExecutorAction::Message(m.data);
                ("message", m.agent_id, m.executor_id, action)
            } else {
                let s = call.shutdown.unwrap_or_default();
                (
                    "shutdown",
                    s.agent_id,
                    s.executor_id,
                    crate::custom::ExecutorAction::Shutdown,
                )
            };
            let agent = tessera_types::AgentId::new(agent.value)
                .map_err(|e| bad(format!("{field}.agent_id.{e}")))?;
            let executor = tessera_types::ExecutorId::new(executor.value)
                .map_err(|e| bad(format!("{field}.executor_id.{e}")))?;
            let r = h.send_to_executor(fwc, agent, executor, action).await;
            after(
                r,
                if field == "message" {
                    "MESSAGE"
                } else {
                    "SHUTDOWN"
                },
                fw,
            )
        }
        Type::Request => {
            // Accepted and ignored, as the hierarchical allocator ignores REQUEST.
            tracing::debug!(framework_id = %fw, call = call.r#type().as_str_name(), "call accepted without effect");
            Ok(accepted())
        }
        Type::UpdateFramework => {
            let u = call.update_framework.unwrap_or_default();
            let mut fi = u.framework_info;
            match &fi.id {
                Some(id) if id.value != fw.as_str() => {
                    return Err(bad(
                        "update_framework.framework_info.id: differs from 'framework_id'",
                    ));
                }
                None => {
                    fi.id = Some(v1::FrameworkId {
                        value: fw.to_string(),
                    })
                }
                _ => {}
            }
            let info = convert::framework_info_from_v1(&fi).map_err(bad)?;
            let suppressed = roles("update_framework.suppressed_roles", &u.suppressed_roles)?
                .unwrap_or_default();
            match h.update_framework(info, suppressed).await {
                Ok(()) => Ok(StatusCode::OK.into_response()),
                Err(MasterError::Stopped) => Err(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the master is shutting down; retry",
                )),
                Err(e) => Err(bad(e)),
            }
        }
        Type::Subscribe | Type::Unknown => {
            Err(error(StatusCode::NOT_IMPLEMENTED, "unsupported call type"))
        }
    }
}

//! The SUBSCRIBE event stream: master [`Event`]s turned into Mesos v1 `Event`s, framed with
//! RecordIO one record per chunk, interleaved with HEARTBEATs; it ends after an ERROR.
//! Dropping the stream (the client went away) forgets the subscription's stream id.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use tessera_api::mesos::{convert, json, scheduler, v1};
use tessera_api::recordio;
use tessera_types::{FrameworkId, Role};
use tokio::sync::mpsc;

use super::MasterIdentity;
use super::encoding::Encoding;
use crate::config::MESOS_API_VERSION;
use crate::model::{
    Event, FaultDomain, InverseOffer, Offer, OperationState, OperationStatus, Unavailability,
};

/// How a framework wants its events shaped.
#[derive(Debug, Clone)]
pub struct StreamContext {
    pub encoding: Encoding,
    pub identity: Arc<MasterIdentity>,
    pub heartbeat: Duration,
    /// MULTI_ROLE frameworks get `allocation_info`; others the legacy single-role form.
    pub multi_role: bool,
}

fn ip_to_u32(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(v4) => u32::from_le_bytes(v4.octets()),
        IpAddr::V6(_) => 0,
    }
}

/// Mesos `DomainInfo` with its fault domain.
pub fn domain_to_v1(d: &FaultDomain) -> v1::DomainInfo {
    v1::DomainInfo {
        fault_domain: Some(v1::domain_info::FaultDomain {
            region: v1::domain_info::fault_domain::RegionInfo {
                name: d.region.clone(),
            },
            zone: v1::domain_info::fault_domain::ZoneInfo {
                name: d.zone.clone(),
            },
        }),
    }
}

pub fn master_info(id: &MasterIdentity) -> v1::MasterInfo {
    let ip = id.addr.ip();
    v1::MasterInfo {
        id: id.id.clone(),
        ip: ip_to_u32(ip),
        port: u32::from(id.addr.port()),
        pid: Some(format!("master@{}:{}", ip, id.addr.port())),
        hostname: Some(id.hostname.clone()),
        version: Some(MESOS_API_VERSION.to_string()),
        address: Some(v1::Address {
            hostname: Some(id.hostname.clone()),
            ip: Some(ip.to_string()),
            port: i32::from(id.addr.port()),
        }),
        domain: id.domain.as_ref().map(domain_to_v1),
        ..Default::default()
    }
}

/// Where an agent is reachable (Mesos `Offer.url`, also on inverse offers).
fn agent_url(hostname: &str, ip: Option<IpAddr>, port: u32) -> v1::Url {
    let ip = ip
        .map(|i| i.to_string())
        .unwrap_or_else(|| "127.0.0.1".to_string());
    let port = if port == 0 {
        5051
    } else {
        i32::try_from(port).unwrap_or(5051)
    };
    v1::Url {
        scheme: "http".into(),
        address: v1::Address {
            hostname: Some(hostname.to_string()),
            ip: Some(ip),
            port,
        },
        path: Some("/slave(1)".into()),
        ..Default::default()
    }
}

pub(super) fn offer_to_v1(o: &Offer, multi_role: bool) -> v1::Offer {
    let role: Option<&Role> = multi_role.then_some(&o.role);
    v1::Offer {
        id: v1::OfferId {
            value: o.id.to_string(),
        },
        framework_id: v1::FrameworkId {
            value: o.framework_id.to_string(),
        },
        agent_id: v1::AgentId {
            value: o.agent_id.to_string(),
        },
        hostname: o.hostname.clone(),
        url: Some(agent_url(&o.hostname, o.agent_ip, o.agent_port)),
        resources: convert::resources_to_v1(&o.resources, role),
        attributes: o.attributes.iter().map(|(k, v)| attribute(k, v)).collect(),
        allocation_info: role.map(|r| v1::resource::AllocationInfo {
            role: Some(r.to_string()),
        }),
        domain: o.domain.as_ref().map(domain_to_v1),
        unavailability: o.unavailability.as_ref().map(unavailability_to_v1),
        ..Default::default()
    }
}

/// Mesos `Unavailability`: start as a `TimeInfo`, duration only when bounded.
pub(super) fn unavailability_to_v1(u: &Unavailability) -> v1::Unavailability {
    v1::Unavailability {
        start: v1::TimeInfo {
            nanoseconds: u.start_ns,
        },
        duration: u.duration.map(|d| v1::DurationInfo {
            nanoseconds: i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        }),
    }
}

/// An inverse offer covers the whole agent, so (as in Mesos) it lists no resources.
pub(super) fn inverse_offer_to_v1(o: &InverseOffer) -> v1::InverseOffer {
    v1::InverseOffer {
        id: v1::OfferId {
            value: o.id.to_string(),
        },
        url: Some(agent_url(&o.hostname, o.agent_ip, o.agent_port)),
        framework_id: v1::FrameworkId {
            value: o.framework_id.to_string(),
        },
        agent_id: Some(v1::AgentId {
            value: o.agent_id.to_string(),
        }),
        unavailability: unavailability_to_v1(&o.unavailability),
        resources: Vec::new(),
    }
}

/// A Mesos attribute: SCALAR when the value is a number, TEXT otherwise.
pub(super) fn attribute(name: &str, value: &str) -> v1::Attribute {
    match value.parse::<f64>() {
        Ok(x) if x.is_finite() => v1::Attribute {
            name: name.to_string(),
            r#type: v1::value::Type::Scalar as i32,
            scalar: Some(v1::value::Scalar { value: x }),
            ..Default::default()
        },
        _ => v1::Attribute {
            name: name.to_string(),
            r#type: v1::value::Type::Text as i32,
            text: Some(v1::value::Text {
                value: value.to_string(),
            }),
            ..Default::default()
        },
    }
}

fn event(t: scheduler::event::Type) -> scheduler::Event {
    let mut e = scheduler::Event::default();
    e.set_type(t);
    e
}

/// The v1 form of a master event.
pub fn to_v1(ev: &Event, ctx: &StreamContext) -> scheduler::Event {
    use scheduler::event::Type;
    match ev {
        Event::Subscribed { framework_id } => {
            let mut e = event(Type::Subscribed);
            e.subscribed = Some(scheduler::event::Subscribed {
                framework_id: v1::FrameworkId {
                    value: framework_id.to_string(),
                },
                heartbeat_interval_seconds: Some(ctx.heartbeat.as_secs_f64()),
                master_info: Some(master_info(&ctx.identity)),
            });
            e
        }
        Event::Offers(offers) => {
            let mut e = event(Type::Offers);
            e.offers = Some(scheduler::event::Offers {
                offers: offers
                    .iter()
                    .map(|o| offer_to_v1(o, ctx.multi_role))
                    .collect(),
            });
            e
        }
        Event::Rescind(id) => {
            let mut e = event(Type::Rescind);
            e.rescind = Some(scheduler::event::Rescind {
                offer_id: v1::OfferId {
                    value: id.to_string(),
                },
            });
            e
        }
        Event::InverseOffers(offers) => {
            let mut e = event(Type::InverseOffers);
            e.inverse_offers = Some(scheduler::event::InverseOffers {
                inverse_offers: offers.iter().map(inverse_offer_to_v1).collect(),
            });
            e
        }
        Event::RescindInverseOffer(id) => {
            let mut e = event(Type::RescindInverseOffer);
            e.rescind_inverse_offer = Some(scheduler::event::RescindInverseOffer {
                inverse_offer_id: v1::OfferId {
                    value: id.to_string(),
                },
            });
            e
        }
        Event::Update(status) => {
            let mut e = event(Type::Update);
            e.update = Some(scheduler::event::Update {
                status: convert::task_status_to_v1(status),
            });
            e
        }
        Event::ExecutorUpdate {
            executor_id,
            status,
        } => {
            let mut e = event(Type::Update);
            e.update = Some(scheduler::event::Update {
                status: convert::task_status_to_v1_in(status, Some(executor_id)),
            });
            e
        }
        Event::Failure { agent_id } => {
            let mut e = event(Type::Failure);
            e.failure = Some(scheduler::event::Failure {
                agent_id: Some(v1::AgentId {
                    value: agent_id.to_string(),
                }),
                ..Default::default()
            });
            e
        }
        Event::ExecutorFailure {
            agent_id,
            executor_id,
            status,
        } => {
            let mut e = event(Type::Failure);
            e.failure = Some(scheduler::event::Failure {
                agent_id: Some(v1::AgentId {
                    value: agent_id.to_string(),
                }),
                executor_id: Some(v1::ExecutorId {
                    value: executor_id.to_string(),
                }),
                status: *status,
            });
            e
        }
        Event::Message {
            agent_id,
            executor_id,
            data,
        } => {
            let mut e = event(Type::Message);
            e.message = Some(scheduler::event::Message {
                agent_id: v1::AgentId {
                    value: agent_id.to_string(),
                },
                executor_id: v1::ExecutorId {
                    value: executor_id.to_string(),
                },
                data: data.clone(),
            });
            e
        }
        Event::UpdateOperationStatus(status) => {
            let mut e = event(Type::UpdateOperationStatus);
            e.update_operation_status = Some(scheduler::event::UpdateOperationStatus {
                status: operation_status_to_v1(status, ctx.multi_role),
            });
            e
        }
        Event::Error(message) => error_event(message),
    }
}

/// Mesos `OperationStatus`; converted resources carry `allocation_info` for MULTI_ROLE
/// frameworks, like offers.
pub(super) fn operation_status_to_v1(s: &OperationStatus, multi_role: bool) -> v1::OperationStatus {
    use v1::OperationState as S;
    let state = match s.state {
        OperationState::Pending => S::OperationPending,
        OperationState::Finished => S::OperationFinished,
        OperationState::Failed => S::OperationFailed,
        OperationState::Error => S::OperationError,
        OperationState::Dropped => S::OperationDropped,
        OperationState::Unreachable => S::OperationUnreachable,
        OperationState::GoneByOperator => S::OperationGoneByOperator,
        OperationState::Recovering => S::OperationRecovering,
        OperationState::Unknown => S::OperationUnknown,
    };
    let role = if multi_role { s.role.as_ref() } else { None };
    v1::OperationStatus {
        operation_id: Some(v1::OperationId {
            value: s.operation_id.clone(),
        }),
        state: state as i32,
        message: s.message.clone(),
        converted_resources: convert::resources_to_v1(&s.converted_resources, role),
        uuid: s.uuid.map(|u| v1::Uuid {
            value: u.as_bytes().to_vec(),
        }),
        agent_id: s.agent_id.as_ref().map(|a| v1::AgentId {
            value: a.to_string(),
        }),
        resource_provider_id: None,
    }
}

pub fn error_event(message: &str) -> scheduler::Event {
    let mut e = event(scheduler::event::Type::Error);
    e.error = Some(scheduler::event::Error {
        message: message.to_string(),
    });
    e
}

pub fn encode(e: &scheduler::Event, enc: Encoding) -> Bytes {
    let body = match enc {
        Encoding::Json => json::encode(e),
        Encoding::Protobuf => prost::Message::encode_to_vec(e),
    };
    Bytes::from(recordio::frame(&body))
}

/// Forgets the stream id when the subscription's stream is dropped, unless a newer
/// subscription replaced it.
pub struct StreamGuard {
    pub streams: Arc<Mutex<HashMap<FrameworkId, String>>>,
    pub framework: Option<FrameworkId>,
    pub stream_id: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let Some(fw) = &self.framework else { return };
        let mut m = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if m.get(fw) == Some(&self.stream_id) {
            m.remove(fw);
        }
    }
}

/// The response body of SUBSCRIBE.
pub struct EventStream {
    pub events: Option<mpsc::Receiver<Event>>,
    /// Records to send before anything else (e.g. a lone ERROR).
    pub first: Vec<Bytes>,
    pub heartbeat: tokio::time::Interval,
    pub ctx: StreamContext,
    pub done: bool,
    pub _guard: StreamGuard,
}

impl tokio_stream::Stream for EventStream {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(b) = this.first.pop() {
            return Poll::Ready(Some(Ok(b)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        let Some(rx) = this.events.as_mut() else {
            return Poll::Ready(None);
        };
        match rx.poll_recv(cx) {
            Poll::Ready(Some(ev)) => {
                if matches!(ev, Event::Error(_)) {
                    this.done = true;
                }
                let v1 = to_v1(&ev, &this.ctx);
                return Poll::Ready(Some(Ok(encode(&v1, this.ctx.encoding))));
            }
            Poll::Ready(None) => {
                // The master dropped us (e.g. the queue overflowed): end the stream so the
                // framework re-subscribes.
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if this.heartbeat.poll_tick(cx).is_ready() {
            let hb = event(scheduler::event::Type::Heartbeat);
            return Poll::Ready(Some(Ok(encode(&hb, this.ctx.encoding))));
        }
        Poll::Pending
    }
}

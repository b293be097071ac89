//! The master's state snapshot and operator events in their `mesos.v1.master` shapes
//! (`Response.GetAgents.Agent`, `v1::Task`, `Response.GetFrameworks.Framework`, …).

use std::collections::BTreeMap;

use tessera_api::mesos::{convert, master, quota, v1};
use tessera_types::{Resources, Role, Scalar, TaskState};

use super::events::attribute;
use crate::config::MESOS_API_VERSION;
use crate::model::{
    AgentState, AgentView, FrameworkState, FrameworkView, MasterState, Offer, OperationKind,
    OperationView, OperatorEvent, TaskEntry,
};

use master::response::{get_agents, get_frameworks};

fn time(secs: f64) -> v1::TimeInfo {
    v1::TimeInfo {
        nanoseconds: (secs * 1e9) as i64,
    }
}

fn agent_id(id: &impl ToString) -> v1::AgentId {
    v1::AgentId {
        value: id.to_string(),
    }
}

fn framework_id(id: &impl ToString) -> v1::FrameworkId {
    v1::FrameworkId {
        value: id.to_string(),
    }
}

fn agent_port(a: &AgentView) -> u32 {
    if a.http_port == 0 { 5051 } else { a.http_port }
}

pub fn agent_info(a: &AgentView) -> v1::AgentInfo {
    v1::AgentInfo {
        hostname: a.hostname.clone(),
        port: Some(agent_port(a) as i32),
        resources: convert::resources_to_v1(&a.resources, None),
        attributes: a.attributes.iter().map(|(k, v)| attribute(k, v)).collect(),
        id: Some(agent_id(&a.id)),
        domain: a.domain.as_ref().map(super::events::domain_to_v1),
    }
}

pub fn agent(a: &AgentView) -> get_agents::Agent {
    let ip =
        a.ip.map(|i| i.to_string())
            .unwrap_or_else(|| "127.0.0.1".into());
    get_agents::Agent {
        agent_info: agent_info(a),
        active: a.state == AgentState::Active && !a.deactivated,
        deactivated: Some(a.deactivated),
        version: MESOS_API_VERSION.to_string(),
        pid: Some(format!("slave(1)@{ip}:{}", agent_port(a))),
        registered_time: Some(time(a.registered_time)),
        total_resources: convert::resources_to_v1(&a.resources, None),
        allocated_resources: convert::resources_to_v1(&a.used, None),
        offered_resources: convert::resources_to_v1(&a.offered, None),
        ..Default::default()
    }
}

pub fn agents(s: &MasterState) -> master::response::GetAgents {
    master::response::GetAgents {
        agents: s
            .agents
            .iter()
            .filter(|a| !matches!(a.state, AgentState::Recovered | AgentState::Gone))
            .map(agent)
            .collect(),
        recovered_agents: s
            .agents
            .iter()
            .filter(|a| a.state == AgentState::Recovered)
            .map(agent_info)
            .collect(),
    }
}

pub fn task(t: &TaskEntry) -> v1::Task {
    v1::Task {
        name: t.info.name.clone(),
        task_id: v1::TaskId {
            value: t.info.task_id.to_string(),
        },
        framework_id: framework_id(&t.framework_id),
        executor_id: t.info.executor_id.as_ref().map(|e| v1::ExecutorId {
            value: e.to_string(),
        }),
        agent_id: agent_id(&t.info.agent_id),
        state: t.state.as_i32(),
        resources: convert::resources_to_v1(&t.info.resources, Some(&t.role)),
        statuses: t
            .last_status
            .iter()
            .map(|st| convert::task_status_to_v1_in(st, t.info.executor_id.as_ref()))
            .collect(),
        container: t.info.container.as_ref().map(convert::container_info_to_v1),
        health_check: t
            .info
            .health_check
            .as_ref()
            .map(convert::health_check_to_v1),
        ..Default::default()
    }
}

pub fn tasks(s: &MasterState) -> master::response::GetTasks {
    let (unreachable, live): (Vec<&TaskEntry>, Vec<&TaskEntry>) = s
        .tasks
        .iter()
        .map(|t| t.as_ref())
        .partition(|t| t.state == TaskState::TaskUnreachable);
    master::response::GetTasks {
        tasks: live.into_iter().map(task).collect(),
        unreachable_tasks: unreachable.into_iter().map(task).collect(),
        completed_tasks: s.completed_tasks.iter().map(|t| task(t)).collect(),
        ..Default::default()
    }
}

/// Operators see offers in the multi-role form (with `allocation_info`).
fn offer(o: &Offer) -> v1::Offer {
    super::events::offer_to_v1(o, true)
}

/// A framework; `s` (when known) supplies its offers and allocation.
pub fn framework(f: &FrameworkView, s: Option<&MasterState>) -> get_frameworks::Framework {
    let mut info = convert::framework_info_to_v1(&f.info);
    info.id = Some(framework_id(&f.id));
    let connected = f.state == FrameworkState::Active;
    let mut out = get_frameworks::Framework {
        framework_info: info,
        active: connected,
        connected,
        recovered: false,
        registered_time: Some(time(f.registered_time)),
        ..Default::default()
    };
    if let Some(s) = s {
        let mut used = Resources::new();
        for t in s.tasks.iter().filter(|t| t.framework_id == f.id) {
            if !t.state.is_terminal() {
                let _ = used.add_assign(&t.info.resources);
            }
        }
        for e in s.executors.iter().filter(|e| e.framework_id == f.id) {
            let _ = used.add_assign(&e.info.resources);
        }
        let mut offered = Resources::new();
        for o in s.offers.iter().filter(|o| o.framework_id == f.id) {
            let _ = offered.add_assign(&o.resources);
            out.offers.push(offer(o));
        }
        out.inverse_offers = s
            .inverse_offers
            .iter()
            .filter(|o| o.framework_id == f.id)
            .map(super::events::inverse_offer_to_v1)
            .collect();
        out.allocated_resources = convert::resources_to_v1(&used, None);
        out.offered_resources = convert::resources_to_v1(&offered, None);
    }
    out
}

pub fn frameworks(s: &MasterState) -> master::response::GetFrameworks {
    master::response::GetFrameworks {
        frameworks: s.frameworks.iter().map(|f| framework(f, Some(s))).collect(),
        ..Default::default()
    }
}

/// The default executors of task groups (command executors are not listed, as in Mesos).
pub fn executors(s: &MasterState) -> master::response::GetExecutors {
    master::response::GetExecutors {
        executors: s
            .executors
            .iter()
            .map(|e| master::response::get_executors::Executor {
                executor_info: convert::executor_info_to_v1(&e.info),
                agent_id: agent_id(&e.agent_id),
            })
            .collect(),
        ..Default::default()
    }
}

/// A tracked operation as Mesos' `Operation`: what the framework asked (RESERVE,
/// UNRESERVE, CREATE or DESTROY, resources with the role they were offered to) and its one,
/// final, status.
fn operation(o: &OperationView) -> v1::Operation {
    use v1::offer::operation::{self as op, Type};
    let resources = convert::resources_to_v1(&o.info.resources, o.status.role.as_ref());
    let mut info = v1::offer::Operation {
        id: Some(v1::OperationId {
            value: o.info.id.clone(),
        }),
        ..Default::default()
    };
    match o.info.kind {
        OperationKind::Reserve => {
            info.set_type(Type::Reserve);
            info.reserve = Some(op::Reserve {
                resources,
                ..Default::default()
            });
        }
        OperationKind::Unreserve => {
            info.set_type(Type::Unreserve);
            info.unreserve = Some(op::Unreserve { resources });
        }
        OperationKind::Create => {
            info.set_type(Type::Create);
            info.create = Some(op::Create { volumes: resources });
        }
        OperationKind::Destroy => {
            info.set_type(Type::Destroy);
            info.destroy = Some(op::Destroy { volumes: resources });
        }
    }
    let status = super::events::operation_status_to_v1(&o.status, true);
    v1::Operation {
        framework_id: Some(framework_id(&o.framework_id)),
        agent_id: Some(agent_id(&o.agent_id)),
        info,
        latest_status: status.clone(),
        statuses: vec![status],
        uuid: v1::Uuid {
            value: o.uuid.as_bytes().to_vec(),
        },
    }
}

pub fn operations(s: &MasterState) -> master::response::GetOperations {
    master::response::GetOperations {
        operations: s.operations.iter().map(operation).collect(),
    }
}

pub fn get_state(s: &MasterState) -> master::response::GetState {
    master::response::GetState {
        get_tasks: Some(tasks(s)),
        get_executors: Some(executors(s)),
        get_frameworks: Some(frameworks(s)),
        get_agents: Some(agents(s)),
    }
}

fn scalars(m: &BTreeMap<String, Scalar>) -> Vec<v1::Resource> {
    m.iter()
        .map(|(name, q)| v1::Resource {
            name: name.clone(),
            r#type: v1::value::Type::Scalar as i32,
            scalar: Some(v1::value::Scalar { value: q.as_f64() }),
            ..Default::default()
        })
        .collect()
}

fn scalar_map(
    m: &BTreeMap<String, Scalar>,
) -> std::collections::HashMap<String, v1::value::Scalar> {
    m.iter()
        .map(|(k, v)| (k.clone(), v1::value::Scalar { value: v.as_f64() }))
        .collect()
}

pub fn roles(s: &MasterState) -> master::response::GetRoles {
    master::response::GetRoles {
        roles: s
            .roles
            .iter()
            .map(|r| v1::Role {
                name: r.role.to_string(),
                weight: r.weight,
                frameworks: s
                    .frameworks
                    .iter()
                    .filter(|f| f.roles.contains(&r.role))
                    .map(|f| framework_id(&f.id))
                    .collect(),
                resources: scalars(&r.allocated),
            })
            .collect(),
    }
}

pub fn weights(s: &MasterState) -> master::response::GetWeights {
    master::response::GetWeights {
        weight_infos: s
            .roles
            .iter()
            .map(|r| v1::WeightInfo {
                role: Some(r.role.to_string()),
                weight: r.weight,
            })
            .collect(),
    }
}

pub fn quota_status(s: &MasterState) -> quota::QuotaStatus {
    quota::QuotaStatus {
        configs: s
            .roles
            .iter()
            .filter_map(|r| {
                r.quota.as_ref().map(|q| quota::QuotaConfig {
                    role: r.role.to_string(),
                    guarantees: scalar_map(&q.guarantees),
                    limits: scalar_map(&q.limits),
                })
            })
            .collect(),
        ..Default::default()
    }
}

/// The quantities a role consumes now (for the UPDATE_QUOTA overcommit check).
pub fn consumed<'a>(s: &'a MasterState, role: &Role) -> Option<&'a BTreeMap<String, Scalar>> {
    s.roles
        .iter()
        .find(|r| &r.role == role)
        .map(|r| &r.consumed)
}

fn event(t: master::event::Type) -> master::Event {
    let mut e = master::Event::default();
    e.set_type(t);
    e
}

pub fn subscribed(s: &MasterState, heartbeat: std::time::Duration) -> master::Event {
    let mut e = event(master::event::Type::Subscribed);
    e.subscribed = Some(master::event::Subscribed {
        get_state: Some(get_state(s)),
        heartbeat_interval_seconds: Some(heartbeat.as_secs_f64()),
    });
    e
}

pub fn heartbeat() -> master::Event {
    event(master::event::Type::Heartbeat)
}

pub fn operator_event(ev: &OperatorEvent) -> master::Event {
    use master::event::{self as me, Type};
    match ev {
        OperatorEvent::TaskAdded(t) => {
            let mut e = event(Type::TaskAdded);
            e.task_added = Some(me::TaskAdded { task: task(t) });
            e
        }
        OperatorEvent::TaskUpdated {
            framework_id: fw,
            status,
            state,
        } => {
            let mut e = event(Type::TaskUpdated);
            e.task_updated = Some(me::TaskUpdated {
                framework_id: framework_id(fw),
                status: convert::task_status_to_v1(status),
                state: state.as_i32(),
            });
            e
        }
        OperatorEvent::AgentAdded(a) => {
            let mut e = event(Type::AgentAdded);
            e.agent_added = Some(me::AgentAdded { agent: agent(a) });
            e
        }
        OperatorEvent::AgentRemoved(id) => {
            let mut e = event(Type::AgentRemoved);
            e.agent_removed = Some(me::AgentRemoved {
                agent_id: agent_id(id),
            });
            e
        }
        OperatorEvent::FrameworkAdded(f) => {
            let mut e = event(Type::FrameworkAdded);
            e.framework_added = Some(me::FrameworkAdded {
                framework: framework(f, None),
            });
            e
        }
        OperatorEvent::FrameworkUpdated(f) => {
            let mut e = event(Type::FrameworkUpdated);
            e.framework_updated = Some(me::FrameworkUpdated {
                framework: framework(f, None),
            });
            e
        }
        OperatorEvent::FrameworkRemoved(info) => {
            let mut e = event(Type::FrameworkRemoved);
            e.framework_removed = Some(me::FrameworkRemoved {
                framework_info: convert::framework_info_to_v1(info),
            });
            e
        }
    }
}

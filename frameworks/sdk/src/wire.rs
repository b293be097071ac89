//! Conversions between the v1 wire messages and the SDK's types, and builders for the
//! scheduler calls the driver sends.

use std::collections::BTreeMap;
use std::time::Duration;

use tessera_api::mesos::convert::{framework_info_to_v1, resources_from_v1, resources_to_v1};
use tessera_api::mesos::{scheduler, v1};
use tessera_types::{
    AgentId, FrameworkId, FrameworkInfo, OfferId, Reason, Role, TaskId, TaskInfo, TaskState,
    TaskStatus, UpdateSource,
};

use crate::error::{Error, Result};
use crate::scheduler::{Action, Offer};

fn invalid(field: &str, reason: impl ToString) -> Error {
    Error::Invalid {
        field: field.into(),
        reason: reason.to_string(),
    }
}

fn attribute_text(a: &v1::Attribute) -> String {
    if let Some(t) = &a.text {
        t.value.clone()
    } else if let Some(s) = &a.scalar {
        let v = s.value;
        if v.fract() == 0.0 {
            format!("{}", v as i64)
        } else {
            format!("{v}")
        }
    } else if let Some(r) = &a.ranges {
        let parts: Vec<String> = r
            .range
            .iter()
            .map(|r| format!("{}-{}", r.begin, r.end))
            .collect();
        format!("[{}]", parts.join(","))
    } else if let Some(s) = &a.set {
        format!("{{{}}}", s.item.join(","))
    } else {
        String::new()
    }
}

/// A v1 offer in the SDK's form (resources validated by `tessera-api`).
pub fn offer_from_v1(o: &v1::Offer) -> Result<Offer> {
    Ok(Offer {
        id: OfferId::new(o.id.value.clone()).map_err(|e| invalid("offer.id", e))?,
        agent_id: AgentId::new(o.agent_id.value.clone())
            .map_err(|e| invalid("offer.agent_id", e))?,
        hostname: o.hostname.clone(),
        role: o.allocation_info.as_ref().and_then(|a| a.role.clone()),
        resources: resources_from_v1("offer.resources", &o.resources)?,
        attributes: o
            .attributes
            .iter()
            .map(|a| (a.name.clone(), attribute_text(a)))
            .collect::<BTreeMap<_, _>>(),
    })
}

/// A v1 status update in Tessera's form. A 16-byte `uuid` becomes the hyphenated string;
/// any other `uuid` is kept as (lossy) UTF-8, and [`uuid_to_v1`] gives the same bytes back.
pub fn task_status_from_v1(s: &v1::TaskStatus) -> Result<TaskStatus> {
    let state = TaskState::from_i32(s.state)
        .ok_or_else(|| invalid("status.state", format!("unknown state {}", s.state)))?;
    let source = match s.source {
        Some(1) => UpdateSource::SourceAgent,
        Some(2) => UpdateSource::SourceExecutor,
        _ => UpdateSource::SourceMaster,
    };
    Ok(TaskStatus {
        task_id: TaskId::new(s.task_id.value.clone()).map_err(|e| invalid("status.task_id", e))?,
        state,
        reason: s.reason.and_then(Reason::from_i32),
        message: s.message.clone(),
        source,
        agent_id: s
            .agent_id
            .as_ref()
            .map(|a| AgentId::new(a.value.clone()))
            .transpose()
            .map_err(|e| invalid("status.agent_id", e))?,
        framework_id: None,
        uuid: s.uuid.as_ref().map(|u| match uuid::Uuid::from_slice(u) {
            Ok(id) => id.hyphenated().to_string(),
            Err(_) => String::from_utf8_lossy(u).into_owned(),
        }),
        timestamp: s.timestamp.unwrap_or_default(),
        exit_code: s.message.as_deref().and_then(exit_status_in),
        healthy: s.healthy,
    })
}

/// The v1 `TaskStatus` has no exit code; the command executor says it in the message
/// (`Command exited with status 3`), which is where Mesos frameworks read it from too.
pub fn exit_status_in(message: &str) -> Option<i32> {
    let rest = &message[message.find("exited with status ")? + "exited with status ".len()..];
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits.parse().ok()
}

/// The bytes to put in ACKNOWLEDGE for a status uuid produced by [`task_status_from_v1`].
pub fn uuid_to_v1(u: &str) -> Vec<u8> {
    match uuid::Uuid::parse_str(u) {
        Ok(id) => id.as_bytes().to_vec(),
        Err(_) => u.as_bytes().to_vec(),
    }
}

/// A task in v1 form. `role` becomes each resource's `allocation_info.role` (pass the
/// offer's role, which MULTI_ROLE masters require).
pub fn task_info_to_v1(t: &TaskInfo, role: Option<&Role>) -> v1::TaskInfo {
    v1::TaskInfo {
        name: t.name.clone(),
        task_id: v1::TaskId {
            value: t.task_id.to_string(),
        },
        agent_id: v1::AgentId {
            value: t.agent_id.to_string(),
        },
        resources: resources_to_v1(&t.resources, role),
        command: Some(tessera_api::mesos::convert::command_info_to_v1(&t.command)),
        container: t
            .container
            .as_ref()
            .map(tessera_api::mesos::convert::container_info_to_v1),
        kill_policy: t.kill_grace_ms.map(|ms| v1::KillPolicy {
            grace_period: Some(v1::DurationInfo {
                nanoseconds: (ms as i64).saturating_mul(1_000_000),
            }),
        }),
        health_check: t
            .health_check
            .as_ref()
            .map(tessera_api::mesos::convert::health_check_to_v1),
        ..Default::default()
    }
}

fn call(t: scheduler::call::Type, fw: Option<&FrameworkId>) -> scheduler::Call {
    let mut c = scheduler::Call {
        framework_id: fw.map(|f| v1::FrameworkId {
            value: f.to_string(),
        }),
        ..Default::default()
    };
    c.set_type(t);
    c
}

fn offer_ids(ids: &[OfferId]) -> Vec<v1::OfferId> {
    ids.iter()
        .map(|o| v1::OfferId {
            value: o.to_string(),
        })
        .collect()
}

/// `Filters` refusing for `refuse`.
pub fn filters(refuse: Duration) -> Option<v1::Filters> {
    Some(v1::Filters {
        refuse_seconds: Some(refuse.as_secs_f64()),
    })
}

/// SUBSCRIBE, with the stored framework id when failing over.
pub fn subscribe_call(
    info: &FrameworkInfo,
    id: Option<&FrameworkId>,
    suppressed_roles: Vec<String>,
) -> scheduler::Call {
    let mut fi = framework_info_to_v1(info);
    fi.id = id.map(|i| v1::FrameworkId {
        value: i.to_string(),
    });
    let mut c = call(scheduler::call::Type::Subscribe, id);
    c.subscribe = Some(scheduler::call::Subscribe {
        framework_info: fi,
        suppressed_roles,
        offer_constraints: None,
    });
    c
}

/// ACKNOWLEDGE of one status update.
pub fn acknowledge_call(
    fw: &FrameworkId,
    agent: &AgentId,
    task: &TaskId,
    uuid: &str,
) -> scheduler::Call {
    let mut c = call(scheduler::call::Type::Acknowledge, Some(fw));
    c.acknowledge = Some(scheduler::call::Acknowledge {
        agent_id: v1::AgentId {
            value: agent.to_string(),
        },
        task_id: v1::TaskId {
            value: task.to_string(),
        },
        uuid: uuid_to_v1(uuid),
    });
    c
}

/// DECLINE with a refusal filter.
pub fn decline_call(fw: &FrameworkId, ids: &[OfferId], refuse: Duration) -> scheduler::Call {
    let mut c = call(scheduler::call::Type::Decline, Some(fw));
    c.decline = Some(scheduler::call::Decline {
        offer_ids: offer_ids(ids),
        filters: filters(refuse),
    });
    c
}

/// The call for one action. `role_of` gives the role of an offer (for `allocation_info`).
pub fn action_call(
    fw: &FrameworkId,
    a: &Action,
    role_of: impl Fn(&OfferId) -> Option<Role>,
) -> scheduler::Call {
    use scheduler::call::Type;
    match a {
        Action::Launch {
            offer_ids: ids,
            tasks,
        } => {
            let role = ids.first().and_then(&role_of);
            let mut op = v1::offer::Operation::default();
            op.set_type(v1::offer::operation::Type::Launch);
            op.launch = Some(v1::offer::operation::Launch {
                task_infos: tasks
                    .iter()
                    .map(|t| task_info_to_v1(t, role.as_ref()))
                    .collect(),
            });
            let mut c = call(Type::Accept, Some(fw));
            c.accept = Some(scheduler::call::Accept {
                offer_ids: offer_ids(ids),
                operations: vec![op],
                filters: None,
            });
            c
        }
        Action::Decline {
            offer_ids: ids,
            refuse,
        } => decline_call(fw, ids, *refuse),
        Action::Kill { task_id, agent_id } => {
            let mut c = call(Type::Kill, Some(fw));
            c.kill = Some(scheduler::call::Kill {
                task_id: v1::TaskId {
                    value: task_id.to_string(),
                },
                agent_id: agent_id.as_ref().map(|a| v1::AgentId {
                    value: a.to_string(),
                }),
                kill_policy: None,
            });
            c
        }
        Action::Reconcile(tasks) => {
            let mut c = call(Type::Reconcile, Some(fw));
            c.reconcile = Some(scheduler::call::Reconcile {
                tasks: tasks
                    .iter()
                    .map(|(t, a)| scheduler::call::reconcile::Task {
                        task_id: v1::TaskId {
                            value: t.to_string(),
                        },
                        agent_id: a.as_ref().map(|a| v1::AgentId {
                            value: a.to_string(),
                        }),
                    })
                    .collect(),
            });
            c
        }
        Action::Revive(roles) => {
            let mut c = call(Type::Revive, Some(fw));
            c.revive = Some(scheduler::call::Revive {
                roles: roles.clone(),
            });
            c
        }
        Action::Suppress(roles) => {
            let mut c = call(Type::Suppress, Some(fw));
            c.suppress = Some(scheduler::call::Suppress {
                roles: roles.clone(),
            });
            c
        }
        Action::Teardown => call(Type::Teardown, Some(fw)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_types::{CommandInfo, Resources};

    #[test]
    fn status_uuid_round_trips_to_the_same_bytes() {
        let raw = uuid::Uuid::new_v4().as_bytes().to_vec();
        let s = v1::TaskStatus {
            task_id: v1::TaskId { value: "t".into() },
            state: TaskState::TaskRunning.as_i32(),
            uuid: Some(raw.clone()),
            agent_id: Some(v1::AgentId { value: "a".into() }),
            ..Default::default()
        };
        let st = task_status_from_v1(&s).unwrap();
        assert_eq!(st.state, TaskState::TaskRunning);
        assert_eq!(uuid_to_v1(st.uuid.as_deref().unwrap()), raw);
        let bad = v1::TaskStatus { state: 999, ..s };
        assert!(matches!(
            task_status_from_v1(&bad),
            Err(Error::Invalid { .. })
        ));
    }

    #[test]
    fn exit_status_is_read_from_the_executor_message() {
        assert_eq!(exit_status_in("Command exited with status 3"), Some(3));
        assert_eq!(
            exit_status_in("Command exited with status 0 (pid 12)"),
            Some(0)
        );
        assert_eq!(
            exit_status_in("Command terminated with signal Killed"),
            None
        );
    }

    #[test]
    fn task_info_to_v1_validates_back_in_tessera_api() {
        let mut cmd = CommandInfo::shell("echo hi");
        cmd.environment.insert("A".into(), "1".into());
        let t = TaskInfo {
            name: "t".into(),
            task_id: TaskId::new("t1").unwrap(),
            agent_id: AgentId::new("a1").unwrap(),
            resources: tessera_types::parse::parse_resources("cpus:0.5;mem:32").unwrap(),
            command: cmd,
            executor_id: None,
            kill_grace_ms: Some(1500),
            container: None,
            health_check: Some(tessera_types::HealthCheck::new(
                tessera_types::HealthProbe::Http {
                    port: 8080,
                    path: Some("/health".into()),
                    scheme: None,
                },
            )),
            executor: None,
        };
        let role = Role::new("eng").unwrap();
        let w = task_info_to_v1(&t, Some(&role));
        assert!(
            w.resources
                .iter()
                .all(|r| r.allocation_info.as_ref().unwrap().role.as_deref() == Some("eng"))
        );
        let back = tessera_api::mesos::convert::task_info_from_v1("t", &w).unwrap();
        assert_eq!(back, t);
        let _ = Resources::new();
    }

    #[test]
    fn offers_convert_with_role_and_attributes() {
        let o = v1::Offer {
            id: v1::OfferId { value: "o1".into() },
            agent_id: v1::AgentId { value: "a1".into() },
            hostname: "h".into(),
            resources: resources_to_v1(
                &tessera_types::parse::parse_resources("cpus:2").unwrap(),
                None,
            ),
            attributes: vec![
                v1::Attribute {
                    name: "rack".into(),
                    r#type: v1::value::Type::Text as i32,
                    text: Some(v1::value::Text { value: "r1".into() }),
                    ..Default::default()
                },
                v1::Attribute {
                    name: "gen".into(),
                    r#type: v1::value::Type::Scalar as i32,
                    scalar: Some(v1::value::Scalar { value: 3.0 }),
                    ..Default::default()
                },
            ],
            allocation_info: Some(v1::resource::AllocationInfo {
                role: Some("eng".into()),
            }),
            ..Default::default()
        };
        let off = offer_from_v1(&o).unwrap();
        assert_eq!(off.role.as_deref(), Some("eng"));
        assert_eq!(off.attributes["rack"], "r1");
        assert_eq!(off.attributes["gen"], "3");
        assert_eq!(off.resources.scalar("cpus").as_f64(), 2.0);
    }
}

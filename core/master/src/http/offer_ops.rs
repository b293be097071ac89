//! ACCEPT's offer operations (`mesos.v1.Offer.Operation`) turned into master
//! [`Operation`]s. What cannot be used becomes [`Operation::Invalid`], so its task ends as
//! TASK_ERROR (or, for an operation with an id, the framework gets OPERATION_ERROR) with the
//! reason — for a LAUNCH_GROUP, [`Operation::InvalidGroup`], so every task of the group
//! does; an operation's `id` wraps it in [`Operation::WithId`] for feedback.

use tessera_api::mesos::{convert, v1};
use tessera_types::TaskId;

use crate::model::Operation;

/// Longest operation id accepted, in bytes (as for every other id).
pub const MAX_OPERATION_ID: usize = 255;

/// An operation id from the wire: 1-255 bytes.
pub fn operation_id(field: &str, id: &v1::OperationId) -> Result<String, String> {
    if id.value.is_empty() || id.value.len() > MAX_OPERATION_ID {
        return Err(format!(
            "{field}.value: must be 1-{MAX_OPERATION_ID} bytes, got {}",
            id.value.len()
        ));
    }
    Ok(id.value.clone())
}

/// The master operations for `accept.operations`; `Err` names an operation id that cannot
/// be used (the call is refused: feedback could not be addressed to it).
pub fn operations(ops: &[v1::offer::Operation]) -> Result<Vec<Operation>, String> {
    let mut out = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let id = op
            .id
            .as_ref()
            .map(|id| operation_id(&format!("accept.operations[{i}].id"), id))
            .transpose()?;
        let produced = operation(i, op);
        match id {
            None => out.extend(produced),
            Some(id) => out.extend(produced.into_iter().map(|o| Operation::WithId {
                id: id.clone(),
                op: Box::new(o),
            })),
        }
    }
    Ok(out)
}

fn operation(i: usize, op: &v1::offer::Operation) -> Vec<Operation> {
    use v1::offer::operation::Type;
    let mut out = Vec::new();
    match op.r#type() {
        Type::Launch => {
            let Some(l) = &op.launch else {
                out.push(Operation::Invalid {
                    task_id: None,
                    reason: format!("operations[{i}].launch: is required"),
                });
                return out;
            };
            let mut good = Vec::new();
            for (j, t) in l.task_infos.iter().enumerate() {
                let field = format!("operations[{i}].launch.task_infos[{j}]");
                match convert::task_info_from_v1(&field, t) {
                    Ok(ti) => good.push(ti),
                    Err(e) => out.push(Operation::Invalid {
                        task_id: TaskId::new(t.task_id.value.clone()).ok(),
                        reason: e.to_string(),
                    }),
                }
            }
            out.push(Operation::Launch(good));
        }
        Type::LaunchGroup => {
            let field = format!("operations[{i}].launch_group");
            let Some(g) = &op.launch_group else {
                out.push(Operation::Invalid {
                    task_id: None,
                    reason: format!("{field}: is required"),
                });
                return out;
            };
            out.push(match convert::task_group_from_v1(&field, g) {
                Ok(group) => Operation::LaunchGroup(group),
                Err(e) => Operation::InvalidGroup {
                    task_ids: g
                        .task_group
                        .tasks
                        .iter()
                        .filter_map(|t| TaskId::new(t.task_id.value.clone()).ok())
                        .collect(),
                    reason: e.to_string(),
                },
            });
        }
        Type::Reserve | Type::Unreserve => {
            let reserve = op.r#type() == Type::Reserve;
            let (field, list) = if reserve {
                (
                    "reserve",
                    op.reserve.as_ref().map(|r| r.resources.as_slice()),
                )
            } else {
                (
                    "unreserve",
                    op.unreserve.as_ref().map(|r| r.resources.as_slice()),
                )
            };
            let parsed = convert::resources_from_v1(
                &format!("operations[{i}].{field}.resources"),
                list.unwrap_or_default(),
            );
            out.push(match parsed {
                Ok(r) if reserve => Operation::Reserve(r),
                Ok(r) => Operation::Unreserve(r),
                Err(e) => Operation::Invalid {
                    task_id: None,
                    reason: e.to_string(),
                },
            });
        }
        Type::Create | Type::Destroy => {
            let create = op.r#type() == Type::Create;
            let (field, list) = if create {
                ("create", op.create.as_ref().map(|c| c.volumes.as_slice()))
            } else {
                ("destroy", op.destroy.as_ref().map(|d| d.volumes.as_slice()))
            };
            let parsed = convert::resources_from_v1(
                &format!("operations[{i}].{field}.volumes"),
                list.unwrap_or_default(),
            );
            out.push(match parsed {
                Ok(r) if create => Operation::Create(r),
                Ok(r) => Operation::Destroy(r),
                Err(e) => Operation::Invalid {
                    task_id: None,
                    reason: e.to_string(),
                },
            });
        }
        other => {
            let tasks: Vec<Option<TaskId>> = match &op.launch_group {
                Some(g) => g
                    .task_group
                    .tasks
                    .iter()
                    .map(|t| TaskId::new(t.task_id.value.clone()).ok())
                    .collect(),
                None => vec![None],
            };
            for task_id in tasks {
                out.push(Operation::Invalid {
                    task_id,
                    reason: format!(
                        "operations[{i}]: {} is not supported by this master yet",
                        other.as_str_name()
                    ),
                });
            }
        }
    }
    out
}

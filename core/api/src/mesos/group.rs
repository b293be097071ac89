//! Mesos v1 `Offer.Operation.LaunchGroup` ↔ [`TaskGroup`]: the default executor's
//! `ExecutorInfo` and the group's `TaskInfo`s.
//!
//! As in Mesos, the executor of a LAUNCH_GROUP must be of type `DEFAULT` and carry no
//! `command` (the agent runs the tasks itself); a task of the group must not name an
//! executor (the group's is `launch_group.executor`). Every error names the field under
//! the prefix the caller gives (e.g. `operations[0].launch_group`).

use tessera_types::{ExecutorId, ExecutorInfo, FrameworkId, TaskGroup};

use super::convert::{
    container_info_from_v1, resources_from_v1, resources_to_v1, task_info_from_v1,
};
use super::v1;
use crate::convert::{Result, WireError};

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> WireError {
    tessera_types::Error::invalid(field, reason).into()
}

/// A v1 `ExecutorInfo` that may run a task group: `type: DEFAULT`, no `command`, no Docker
/// container (a MESOS container without volumes is accepted; tasks share the host network
/// anyway). Resource minimums are checked by [`ExecutorInfo::validate`].
pub fn executor_info_from_v1(field: &str, e: &v1::ExecutorInfo) -> Result<ExecutorInfo> {
    use v1::executor_info::Type;
    match e.r#type.map(Type::try_from) {
        Some(Ok(Type::Default)) => {}
        _ => {
            return Err(invalid(
                format!("{field}.type"),
                "must be DEFAULT for LAUNCH_GROUP (custom executors are not supported)",
            ));
        }
    }
    if e.command.is_some() {
        return Err(invalid(
            format!("{field}.command"),
            "must not be set for a DEFAULT executor",
        ));
    }
    if let Some(c) = &e.container {
        let cf = format!("{field}.container");
        let parsed = container_info_from_v1(&cf, c)?;
        if parsed.is_docker() {
            return Err(invalid(
                format!("{cf}.type"),
                "the default executor runs in a MESOS container, not DOCKER",
            ));
        }
        if !parsed.volumes.is_empty() {
            return Err(invalid(
                format!("{cf}.volumes"),
                "volumes on the default executor are not supported",
            ));
        }
    }
    executor_info(field, e, None)
}

/// The parts every executor has (ids, name, resources) with `command`, validated
/// ([`ExecutorInfo::validate`]); errors name the field under `field`.
fn executor_info(
    field: &str,
    e: &v1::ExecutorInfo,
    command: Option<tessera_types::CommandInfo>,
) -> Result<ExecutorInfo> {
    let framework_id = match &e.framework_id {
        None => None,
        Some(f) => Some(
            FrameworkId::new(f.value.clone())
                .map_err(|_| invalid(format!("{field}.framework_id.value"), "is not a valid id"))?,
        ),
    };
    let executor_id = ExecutorId::new(e.executor_id.value.clone()).map_err(|err| {
        let reason = match err {
            tessera_types::Error::Invalid { reason, .. } => reason,
            other => other.to_string(),
        };
        invalid(format!("{field}.executor_id.value"), reason)
    })?;
    let out = ExecutorInfo {
        executor_id,
        framework_id,
        name: e.name.clone(),
        resources: resources_from_v1(&format!("{field}.resources"), &e.resources)?,
        command,
    };
    out.validate(field)?;
    Ok(out)
}

/// A v1 `ExecutorInfo` of a task in LAUNCH: a custom executor (`type: CUSTOM`, or unset as
/// older frameworks send it) with a `command`. A `DEFAULT` executor runs task groups only;
/// a Docker container for the executor is not supported.
pub fn custom_executor_from_v1(field: &str, e: &v1::ExecutorInfo) -> Result<ExecutorInfo> {
    use v1::executor_info::Type;
    match e.r#type.map(Type::try_from) {
        None | Some(Ok(Type::Custom)) | Some(Ok(Type::Unknown)) => {}
        Some(Ok(Type::Default)) => {
            return Err(invalid(
                format!("{field}.type"),
                "a DEFAULT executor runs task groups (LAUNCH_GROUP); a task in LAUNCH names a CUSTOM executor with a command",
            ));
        }
        Some(Err(_)) => return Err(invalid(format!("{field}.type"), "unknown executor type")),
    }
    let command = e.command.as_ref().ok_or_else(|| {
        invalid(
            format!("{field}.command"),
            "is required for a CUSTOM executor",
        )
    })?;
    let command = super::convert::command_from_v1(&format!("{field}.command"), command)?;
    if let Some(c) = &e.container {
        let cf = format!("{field}.container");
        let parsed = container_info_from_v1(&cf, c)?;
        if parsed.is_docker() || !parsed.volumes.is_empty() {
            return Err(invalid(
                cf,
                "custom executors run in a MESOS container without volumes here",
            ));
        }
    }
    executor_info(field, e, Some(command))
}

/// The v1 form: type DEFAULT, or CUSTOM with its command.
pub fn executor_info_to_v1(e: &ExecutorInfo) -> v1::ExecutorInfo {
    let kind = if e.is_custom() {
        v1::executor_info::Type::Custom
    } else {
        v1::executor_info::Type::Default
    };
    v1::ExecutorInfo {
        r#type: Some(kind as i32),
        command: e.command.as_ref().map(super::health::command_info_to_v1),
        executor_id: v1::ExecutorId {
            value: e.executor_id.to_string(),
        },
        framework_id: e.framework_id.as_ref().map(|f| v1::FrameworkId {
            value: f.to_string(),
        }),
        name: e.name.clone(),
        resources: resources_to_v1(&e.resources, None),
        ..Default::default()
    }
}

/// Validates a v1 LAUNCH_GROUP (`field` is e.g. `operations[0].launch_group`): the
/// executor ([`executor_info_from_v1`]), then each task like a LAUNCH task (see
/// [`task_info_from_v1`]) with the group's executor id, then the group as a whole
/// ([`TaskGroup::validate`]).
pub fn task_group_from_v1(field: &str, g: &v1::offer::operation::LaunchGroup) -> Result<TaskGroup> {
    let executor = executor_info_from_v1(&format!("{field}.executor"), &g.executor)?;
    let mut tasks = Vec::with_capacity(g.task_group.tasks.len());
    for (i, t) in g.task_group.tasks.iter().enumerate() {
        let tf = format!("{field}.task_group.tasks[{i}]");
        if t.executor.is_some() {
            return Err(invalid(
                format!("{tf}.executor"),
                "must not be set for a task of a group; the group's executor is launch_group.executor",
            ));
        }
        let mut task = task_info_from_v1(&tf, t)?;
        task.executor_id = Some(executor.executor_id.clone());
        tasks.push(task);
    }
    let group = TaskGroup { executor, tasks };
    group.validate(field)?;
    Ok(group)
}

/// The v1 LAUNCH_GROUP operation for `g` (what a framework sends). `role` sets
/// `allocation_info` on every resource (MULTI_ROLE frameworks).
pub fn launch_group_to_v1(
    g: &TaskGroup,
    role: Option<&tessera_types::Role>,
) -> v1::offer::Operation {
    let mut executor = executor_info_to_v1(&g.executor);
    executor.resources = resources_to_v1(&g.executor.resources, role);
    let tasks = g.tasks.iter().map(|t| task_info_to_v1(t, role)).collect();
    v1::offer::Operation {
        r#type: Some(v1::offer::operation::Type::LaunchGroup as i32),
        launch_group: Some(v1::offer::operation::LaunchGroup {
            executor,
            task_group: v1::TaskGroupInfo { tasks },
        }),
        ..Default::default()
    }
}

/// The v1 `TaskInfo` for `t` (what a framework sends in LAUNCH, and what an executor is
/// given in its LAUNCH event). `role` sets `allocation_info` on every resource.
pub fn task_info_to_v1(
    t: &tessera_types::TaskInfo,
    role: Option<&tessera_types::Role>,
) -> v1::TaskInfo {
    let custom = t.executor.as_ref().map(|e| {
        let mut v = executor_info_to_v1(e);
        v.resources = resources_to_v1(&e.resources, role);
        v
    });
    v1::TaskInfo {
        name: t.name.clone(),
        task_id: v1::TaskId {
            value: t.task_id.to_string(),
        },
        agent_id: v1::AgentId {
            value: t.agent_id.to_string(),
        },
        resources: resources_to_v1(&t.resources, role),
        command: custom
            .is_none()
            .then(|| super::health::command_info_to_v1(&t.command)),
        executor: custom,
        kill_policy: t.kill_grace_ms.map(|ms| v1::KillPolicy {
            grace_period: Some(v1::DurationInfo {
                nanoseconds: i64::try_from(ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX),
            }),
        }),
        container: t
            .container
            .as_ref()
            .map(super::convert::container_info_to_v1),
        health_check: t
            .health_check
            .as_ref()
            .map(super::health::health_check_to_v1),
        ..Default::default()
    }
}

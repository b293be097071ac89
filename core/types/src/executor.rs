//! Task groups and the default executor that runs them (Mesos `Offer.Operation.LaunchGroup`:
//! an `ExecutorInfo` of type `DEFAULT` plus a `TaskGroupInfo`), and custom executors
//! (`type: CUSTOM`, a program of the framework's that the agent starts and that talks to
//! it over the v1 executor HTTP API; its tasks come in LAUNCH with `TaskInfo.executor`).
//!
//! A task group is launched atomically: every task of it starts, or none does. Its tasks
//! run in one executor (sandbox and cgroup limits shared: the executor's resources plus
//! every task's), and the default executor ends the group as Mesos' does — a task that
//! fails or is killed kills the others. Only the checks that need no cluster state live
//! here ([`TaskGroup::validate`]); the master adds the ones against its offers, tasks and
//! executors.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::ids::{ExecutorId, FrameworkId};
use crate::resources::Resources;
use crate::task::{CommandInfo, TaskInfo};

/// Smallest `cpus` a default executor may have (Mesos `MIN_CPUS`; below it is an error for
/// the default executor, only a warning for custom ones).
pub const MIN_EXECUTOR_CPUS: f64 = 0.01;
/// Smallest `mem` (MB) a default executor may have (Mesos `MIN_MEM`).
pub const MIN_EXECUTOR_MEM_MB: f64 = 32.0;

/// An executor (Mesos `ExecutorInfo`). The default executor (`type: DEFAULT`, no command):
/// the agent runs the tasks of its groups itself; the resources are the executor's own
/// overhead, added to its tasks' for the container's limits. A custom executor
/// (`type: CUSTOM`): `command` is the framework's executor program, which the agent starts
/// in its own container (limited to its resources plus its tasks') and which runs the
/// tasks it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorInfo {
    pub executor_id: ExecutorId,
    /// The framework, when the framework said (the master checks it is the caller).
    #[serde(default)]
    pub framework_id: Option<FrameworkId>,
    #[serde(default)]
    pub name: Option<String>,
    pub resources: Resources,
    /// The program of a custom executor; `None` for the default executor.
    #[serde(default)]
    pub command: Option<CommandInfo>,
}

impl ExecutorInfo {
    /// Whether this is a custom executor (a program of the framework's).
    pub fn is_custom(&self) -> bool {
        self.command.is_some()
    }

    /// A name of at most 1024 bytes, and then: for the default executor, resources of at
    /// least [`MIN_EXECUTOR_CPUS`] cpus and [`MIN_EXECUTOR_MEM_MB`] MB; for a custom one, a
    /// non-empty command with valid URIs (Mesos only warns about small resources of custom
    /// executors). Errors name `field.resources`, `field.name`, `field.command…`.
    pub fn validate(&self, field: &str) -> Result<()> {
        if self.name.as_ref().is_some_and(|n| n.len() > 1024) {
            return Err(Error::invalid(
                format!("{field}.name"),
                "longer than 1024 bytes",
            ));
        }
        if let Some(c) = &self.command {
            if c.value.is_empty() && c.arguments.is_empty() {
                return Err(Error::invalid(
                    format!("{field}.command.value"),
                    "is empty; a custom executor needs the program to run",
                ));
            }
            for (i, u) in c.uris.iter().enumerate() {
                u.validate(&format!("{field}.command.uris[{i}]"))?;
            }
            return Ok(());
        }
        let cpus = self.resources.scalar("cpus").as_f64();
        if cpus < MIN_EXECUTOR_CPUS {
            return Err(Error::invalid(
                format!("{field}.resources"),
                format!(
                    "the default executor needs at least {MIN_EXECUTOR_CPUS} cpus (has {cpus})"
                ),
            ));
        }
        let mem = self.resources.scalar("mem").as_f64();
        if mem < MIN_EXECUTOR_MEM_MB {
            return Err(Error::invalid(
                format!("{field}.resources"),
                format!(
                    "the default executor needs at least {MIN_EXECUTOR_MEM_MB} MB of mem (has {mem})"
                ),
            ));
        }
        Ok(())
    }

    /// Whether `other` describes the same executor: an executor id reused by a later group
    /// on the same agent must come with the same `ExecutorInfo` (as Mesos requires).
    pub fn same_as(&self, other: &ExecutorInfo) -> bool {
        self == other
    }
}

/// The tasks of one LAUNCH_GROUP and the executor that runs them. Each task's
/// `executor_id` is the executor's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskGroup {
    pub executor: ExecutorInfo,
    pub tasks: Vec<TaskInfo>,
}

impl TaskGroup {
    /// The checks that need no cluster state: the executor ([`ExecutorInfo::validate`]),
    /// at least one task, each task valid ([`TaskInfo::validate`]) and run by this
    /// executor, task ids unique within the group, every task on the same agent, no
    /// Docker containers (the default executor runs processes). Errors name the field under
    /// `field` (`field.executor…`, `field.task_group.tasks[i]…`).
    pub fn validate(&self, field: &str) -> Result<()> {
        self.executor.validate(&format!("{field}.executor"))?;
        if self.executor.is_custom() {
            return Err(Error::invalid(
                format!("{field}.executor.command"),
                "task groups run in the default executor; a custom executor's tasks are launched with LAUNCH",
            ));
        }
        let tf = format!("{field}.task_group.tasks");
        let Some(first) = self.tasks.first() else {
            return Err(Error::invalid(
                tf,
                "a task group must have at least one task",
            ));
        };
        let mut seen = BTreeSet::new();
        for (i, t) in self.tasks.iter().enumerate() {
            let f = format!("{tf}[{i}]");
            t.validate(&f)?;
            if t.executor_id.as_ref() != Some(&self.executor.executor_id) {
                return Err(Error::invalid(
                    format!("{f}.executor"),
                    "a task of a group must not name an executor of its own; the group's is launch_group.executor",
                ));
            }
            if !seen.insert(&t.task_id) {
                return Err(Error::invalid(
                    format!("{f}.task_id"),
                    format!("'{}' appears more than once in the group", t.task_id),
                ));
            }
            if t.agent_id != first.agent_id {
                return Err(Error::invalid(
                    format!("{f}.agent_id"),
                    format!(
                        "'{}' differs from the group's agent '{}'",
                        t.agent_id, first.agent_id
                    ),
                ));
            }
            if t.container.as_ref().is_some_and(|c| c.is_docker()) {
                return Err(Error::invalid(
                    format!("{f}.container.type"),
                    "DOCKER containers are not supported in a task group (the default executor runs MESOS containers)",
                ));
            }
        }
        Ok(())
    }

    /// The tasks' resources, summed.
    pub fn task_resources(&self) -> Result<Resources> {
        let mut sum = Resources::new();
        for t in &self.tasks {
            sum.add_assign(&t.resources)?;
        }
        Ok(sum)
    }

    /// What the group needs from the offers when its executor is new on the agent: the
    /// executor's resources plus every task's.
    pub fn total_resources(&self) -> Result<Resources> {
        self.task_resources()?.checked_add(&self.executor.resources)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::ContainerInfo;
    use crate::ids::{AgentId, TaskId};
    use crate::parse::parse_resources;
    use crate::task::CommandInfo;

    fn task(id: &str, agent: &str) -> TaskInfo {
        TaskInfo {
            name: id.into(),
            task_id: TaskId::new(id).unwrap(),
            agent_id: AgentId::new(agent).unwrap(),
            resources: parse_resources("cpus:0.1;mem:32").unwrap(),
            command: CommandInfo::shell("true"),
            executor_id: Some(ExecutorId::new("e").unwrap()),
            kill_grace_ms: None,
            container: None,
            health_check: None,
            executor: None,
        }
    }

    fn group(tasks: Vec<TaskInfo>) -> TaskGroup {
        TaskGroup {
            executor: ExecutorInfo {
                executor_id: ExecutorId::new("e").unwrap(),
                framework_id: None,
                name: None,
                resources: parse_resources("cpus:0.1;mem:32").unwrap(),
                command: None,
            },
            tasks,
        }
    }

    fn field_of(g: &TaskGroup) -> String {
        g.validate("lg").unwrap_err().field().unwrap().to_string()
    }

    #[test]
    fn a_valid_group_and_its_resources() {
        let g = group(vec![task("a", "s1"), task("b", "s1")]);
        g.validate("lg").unwrap();
        assert_eq!(
            g.total_resources().unwrap(),
            parse_resources("cpus:0.3;mem:96").unwrap()
        );
    }

    #[test]
    fn invalid_groups_name_the_field() {
        assert_eq!(field_of(&group(vec![])), "lg.task_group.tasks");
        let g = group(vec![task("a", "s1"), task("a", "s1")]);
        assert_eq!(field_of(&g), "lg.task_group.tasks[1].task_id");
        let g = group(vec![task("a", "s1"), task("b", "s2")]);
        assert_eq!(field_of(&g), "lg.task_group.tasks[1].agent_id");
        let mut t = task("a", "s1");
        t.executor_id = Some(ExecutorId::new("other").unwrap());
        assert_eq!(field_of(&group(vec![t])), "lg.task_group.tasks[0].executor");
        let mut t = task("a", "s1");
        t.executor_id = None;
        assert_eq!(field_of(&group(vec![t])), "lg.task_group.tasks[0].executor");
        let mut t = task("a", "s1");
        t.resources = Resources::new();
        assert_eq!(
            field_of(&group(vec![t])),
            "lg.task_group.tasks[0].resources"
        );
        let mut t = task("a", "s1");
        t.container = Some(ContainerInfo::docker("alpine"));
        assert_eq!(
            field_of(&group(vec![t])),
            "lg.task_group.tasks[0].container.type"
        );
    }

    #[test]
    fn the_default_executor_needs_minimum_resources() {
        let mut g = group(vec![task("a", "s1")]);
        g.executor.resources = parse_resources("cpus:0.001;mem:32").unwrap();
        assert_eq!(field_of(&g), "lg.executor.resources");
        g.executor.resources = parse_resources("cpus:0.1;mem:16").unwrap();
        let e = g.validate("lg").unwrap_err();
        assert!(e.to_string().contains("mem"), "{e}");
        g.executor.resources = Resources::new();
        assert_eq!(field_of(&g), "lg.executor.resources");
    }
}

//! The agent loop's side of health checks (a child module of the loop, like `recover`):
//! starting a task's checker once it runs, and turning the checker's reports into status
//! updates and, after too many failures, a kill. The checking itself is [`crate::health`].

use std::collections::BTreeMap;
use std::path::Path;

use tessera_types::{CommandInfo, FrameworkId, Reason, TaskId, TaskState, UpdateSource};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Agent, Change, Event};
use crate::health::{self, HealthReport, ProbeContext};
use crate::launcher::{TaskEnvIds, task_environment};

impl Agent {
    /// The environment a task's command gets (and its COMMAND health check).
    pub(super) fn task_env(
        &self,
        fw: &FrameworkId,
        tid: &TaskId,
        command: &CommandInfo,
        sandbox: &Path,
        executor_id: &str,
        container_id: &str,
    ) -> BTreeMap<String, String> {
        let endpoint = self.config.agent_endpoint();
        let agent_id = self.agent_id.as_ref().map(|a| a.to_string());
        task_environment(
            command,
            sandbox,
            &TaskEnvIds {
                task_id: tid.as_str(),
                framework_id: fw.as_str(),
                agent_id: agent_id.as_deref().unwrap_or_default(),
                executor_id,
                container_id,
                agent_endpoint: endpoint.as_deref(),
            },
            std::env::var("PATH").ok(),
        )
    }

    /// Starts the health checker of a running task that has a health check.
    pub(super) fn start_health_check(&mut self, fw: &FrameworkId, tid: &TaskId) {
        let Some(t) = self.tasks.get_mut(fw, tid) else {
            return;
        };
        let Some(check) = t.info.health_check.clone() else {
            return;
        };
        if t.container.is_none() || t.killing || t.health.is_some() {
            return;
        }
        let executor_id = t
            .info
            .executor_id
            .as_ref()
            .map_or_else(|| tid.to_string(), ToString::to_string);
        let (command, sandbox, container_id) = (
            t.info.command.clone(),
            t.sandbox.clone(),
            t.container_id.clone(),
        );
        let t_is_docker = t.info.container.as_ref().is_some_and(|c| c.is_docker());
        let supervisor = t.container.as_ref().and_then(|c| c.pid());
        let user = t.user.clone();
        let env = self.task_env(fw, tid, &command, &sandbox, &executor_id, &container_id);
        let docker = t_is_docker.then(|| crate::docker_probe::DockerProbe {
            socket: self.config.docker_socket.clone(),
            name: crate::docker::container_name(&container_id),
        });
        let cancel = CancellationToken::new();
        if let Some(t) = self.tasks.get_mut(fw, tid) {
            t.health = Some(cancel.clone());
        }
        info!(framework_id = %fw, task_id = %tid, kind = check.probe.type_name(),
            delay_ms = check.delay_ms, interval_ms = check.interval_ms, "starting health checks");
        let (framework_id, task_id) = (fw.clone(), tid.clone());
        health::spawn(
            check,
            ProbeContext {
                sandbox,
                env,
                docker,
                supervisor,
                user,
            },
            cancel,
            self.events_tx.clone(),
            move |report| Event::Health {
                framework_id: framework_id.clone(),
                task_id: task_id.clone(),
                container_id: container_id.clone(),
                report,
            },
        );
    }

    /// A health change: a TASK_RUNNING update with `healthy` and
    /// REASON_TASK_HEALTH_CHECK_STATUS_UPDATED, then a kill when the checker asks for one.
    pub(super) fn on_health(
        &mut self,
        fw: FrameworkId,
        tid: TaskId,
        container_id: String,
        report: HealthReport,
    ) {
        let Some(t) = self.tasks.get_mut(&fw, &tid) else {
            return;
        };
        // A report that raced with the task's end or kill is stale.
        if t.container_id != container_id
            || t.container.is_none()
            || t.killing
            || t.state != TaskState::TaskRunning
        {
            return debug!(framework_id = %fw, task_id = %tid, "dropping a stale health report");
        }
        // A kill request repeats the unhealthy verdict already reported; only changes are
        // sent.
        let changed = t.healthy != Some(report.healthy);
        t.healthy = Some(report.healthy);
        if report.kill {
            let why = format!(
                "health check failed {} consecutive times; last: {}",
                report.consecutive_failures, report.message
            );
            warn!(framework_id = %fw, task_id = %tid, reason = %why, "killing an unhealthy task");
            t.health_kill = Some(why);
        }
        if changed {
            self.update(
                &fw,
                &tid,
                Change {
                    state: TaskState::TaskRunning,
                    source: UpdateSource::SourceExecutor,
                    reason: Some(Reason::ReasonTaskHealthCheckStatusUpdated),
                    message: Some(report.message),
                    exit_code: None,
                },
            );
        }
        if report.kill {
            self.begin_kill(&fw, &tid, None);
        }
    }
}

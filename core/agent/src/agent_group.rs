//! Task groups on the agent (a child module of the agent loop, like `recover`): the default
//! executor of [`crate::executor`] — starting a group's tasks together in one executor
//! container, ending the group when one of its tasks fails or is killed, ending and
//! forgetting executors, checkpointing them, and re-forming groups after a restart.

use std::io;
use std::path::Path;
use std::sync::Arc;

use tessera_api::convert::{executor_to_pb, task_group_from_pb};
use tessera_api::pb;
use tessera_types::{FrameworkId, Reason, TaskId, TaskState, UpdateSource};
use tracing::{error, info, warn};

use super::{Agent, Change, report_launched};
use crate::checkpoint::{self, EXECUTOR_FILE, ExecutorCheckpoint};
use crate::error::AgentError;
use crate::executor::{Executor, GroupRef, Setup, fails_group, group_kill_reason, task_sandbox};
use crate::launcher::{LaunchSpec, Launcher};
use crate::tasks::{Task, sandbox_dir};

/// Makes (first group) or resizes (later groups) the executor's container, and its sandbox.
/// Launches of groups of one executor queue behind each other here.
async fn setup_executor(
    launcher: &dyn Launcher,
    setup: &Setup,
    container_id: &str,
    sandbox: &Path,
) -> Result<(), String> {
    let mut prepared = setup.prepared.lock().await;
    tokio::fs::create_dir_all(sandbox)
        .await
        .map_err(|e| format!("executor sandbox {}: {e}", sandbox.display()))?;
    let limits = setup.limits();
    if *prepared {
        launcher.update_executor(container_id, &limits).await
    } else {
        launcher.prepare_executor(container_id, &limits).await
    }
    .map_err(|e| e.to_string())?;
    *prepared = true;
    Ok(())
}

impl Agent {
    /// A task group from the master: its tasks start together in their default executor
    /// (a new run, or the live run of the same executor id). Invalid groups end every task
    /// TASK_ERROR (REASON_TASK_GROUP_INVALID).
    pub(super) fn run_task_group(&mut self, rt: pb::RunTaskGroup) {
        let fw = match FrameworkId::new(rt.framework_id.clone()) {
            Ok(fw) => fw,
            Err(e) => return warn!(error = %e, "ignoring RunTaskGroup"),
        };
        let group = match task_group_from_pb("run_task_group", rt.executor.as_ref(), &rt.tasks) {
            Ok(g) => g,
            Err(e) => {
                let ids: Vec<TaskId> = rt
                    .tasks
                    .iter()
                    .filter_map(|t| TaskId::new(t.task_id.clone()).ok())
                    .collect();
                return self.reject_group(&fw, &ids, &e.to_string());
            }
        };
        let ids: Vec<TaskId> = group.tasks.iter().map(|t| t.task_id.clone()).collect();
        if ids.iter().any(|t| self.tasks.contains(&fw, t)) {
            return info!(framework_id = %fw, "ignoring a RunTaskGroup whose tasks the agent already has");
        }
        let Some(agent_id) = self.agent_id.clone() else {
            return warn!(framework_id = %fw, "RunTaskGroup before registration; ignoring");
        };
        let mut info = group.executor.clone();
        info.framework_id = Some(fw.clone());
        let task_resources = match group.task_resources() {
            Ok(r) => r,
            Err(e) => return self.reject_group(&fw, &ids, &format!("run_task_group: {e}")),
        };
        let (exec_cid, exec_sandbox, setup) = match self.executors.live(&fw, &info.executor_id) {
            Some(e) if e.info != info => {
                let why = format!(
                    "run_task_group.executor: executor '{}' already runs here with a different ExecutorInfo",
                    info.executor_id
                );
                return self.reject_group(&fw, &ids, &why);
            }
            Some(e) => {
                if let Ok(mut l) = e.setup.limits.lock()
                    && let Err(err) = l.add_assign(&task_resources)
                {
                    warn!(error = %err, "cannot add the group's resources to its executor's limits");
                }
                (e.container_id.clone(), e.sandbox.clone(), e.setup.clone())
            }
            None => {
                let cid = uuid::Uuid::new_v4().to_string();
                let sandbox = sandbox_dir(
                    &self.config.work_dir,
                    &agent_id,
                    &fw,
                    info.executor_id.as_str(),
                    &cid,
                );
                let limits = task_resources
                    .checked_add(&info.resources)
                    .unwrap_or_else(|_| task_resources.clone());
                let setup = Setup::new(limits, false);
                self.executors.insert(Executor {
                    framework_id: fw.clone(),
                    info: info.clone(),
                    container_id: cid.clone(),
                    sandbox: sandbox.clone(),
                    groups: Default::default(),
                    ended: false,
                    setup: setup.clone(),
                });
                self.checkpoint_executor(&cid);
                (cid, sandbox, setup)
            }
        };
        let group_id = uuid::Uuid::new_v4().to_string();
        if let Some(e) = self.executors.get_mut(&exec_cid) {
            e.groups.insert(group_id.clone(), ids.clone());
        }
        let gref = GroupRef {
            executor_container: exec_cid.clone(),
            group: group_id,
        };
        info!(framework_id = %fw, executor_id = %info.executor_id, container_id = %exec_cid,
            tasks = ids.len(), framework_name = %rt.framework_name, sandbox = %exec_sandbox.display(),
            "launching task group");
        let mut specs = Vec::with_capacity(group.tasks.len());
        for t in group.tasks {
            let tid = t.task_id.clone();
            let container_id = uuid::Uuid::new_v4().to_string();
            let sandbox = task_sandbox(&exec_sandbox, &tid);
            let env = self.task_env(
                &fw,
                &tid,
                &t.command,
                &sandbox,
                info.executor_id.as_str(),
                &container_id,
            );
            let user = crate::user::effective_user(
                self.config.switch_user,
                t.command.user.as_deref(),
                &rt.user,
            );
            specs.push((
                tid.clone(),
                LaunchSpec {
                    container_id: container_id.clone(),
                    sandbox: sandbox.clone(),
                    command: t.command.clone(),
                    env,
                    resources: t.resources.clone(),
                    container: t.container.clone(),
                    user: user.clone(),
                    volumes: Vec::new(),
                },
            ));
            let mut task = Task::staging(
                fw.clone(),
                t,
                container_id,
                sandbox,
                rt.task_killing_state,
                Some(gref.clone()),
            );
            task.user = user;
            self.tasks.insert(task);
            self.checkpoint_task(&fw, &tid);
            self.update(
                &fw,
                &tid,
                Change {
                    state: TaskState::TaskStarting,
                    source: UpdateSource::SourceExecutor,
                    reason: None,
                    message: None,
                    exit_code: None,
                },
            );
        }
        // Off the loop: the executor's container first, then every task at once; each
        // result comes back as `Event::Launched`, as for a single task.
        let launcher = self.launcher.clone();
        let tx = self.events_tx.clone();
        let fetcher = crate::fetcher::Fetcher::for_work_dir(&self.config.work_dir);
        let work_dir = self.config.work_dir.clone();
        tokio::spawn(async move {
            let ready = setup_executor(&*launcher, &setup, &exec_cid, &exec_sandbox).await;
            for (tid, spec) in specs {
                let (launcher, tx, fetcher, ready, fw, exec_cid, work_dir) = (
                    launcher.clone(),
                    tx.clone(),
                    fetcher.clone(),
                    ready.clone(),
                    fw.clone(),
                    exec_cid.clone(),
                    work_dir.clone(),
                );
                tokio::spawn(async move {
                    let container_id = spec.container_id.clone();
                    let result = match ready {
                        Err(why) => Err(AgentError::Launch {
                            container_id: container_id.clone(),
                            source: io::Error::other(format!(
                                "the task group's executor container: {why}"
                            )),
                        }),
                        Ok(()) => match tokio::fs::create_dir_all(&spec.sandbox).await {
                            Err(source) => Err(AgentError::Sandbox {
                                path: spec.sandbox.clone(),
                                source,
                            }),
                            Ok(()) => {
                                match fetcher.fetch_all(&spec.command.uris, &spec.sandbox).await {
                                    Err(e) => Err(AgentError::Fetch(e)),
                                    Ok(()) => {
                                        match crate::volumes::with_volumes(work_dir, spec).await {
                                            Ok(spec) => {
                                                launcher.launch_nested(&exec_cid, spec).await
                                            }
                                            Err(e) => Err(e),
                                        }
                                    }
                                }
                            }
                        },
                    };
                    report_launched(&tx, fw, tid, container_id, result).await;
                });
            }
        });
    }

    /// Every task of a group the agent cannot run ends TASK_ERROR with `why`.
    fn reject_group(&mut self, fw: &FrameworkId, ids: &[TaskId], why: &str) {
        warn!(framework_id = %fw, reason = %why, "invalid task group");
        for tid in ids {
            if self.tasks.contains(fw, tid) {
                continue;
            }
            self.update(
                fw,
                tid,
                Change {
                    state: TaskState::TaskError,
                    source: UpdateSource::SourceAgent,
                    reason: Some(Reason::ReasonTaskGroupInvalid),
                    message: Some(why.to_string()),
                    exit_code: None,
                },
            );
        }
    }

    /// The `ExecutorInfo` to report with a task of a group when (re-)registering.
    pub(super) fn executor_pb_of(&self, t: &Task) -> Option<pb::ExecutorInfo> {
        if let Some(custom) = &t.info.executor {
            return Some(executor_to_pb(custom));
        }
        let g = t.group.as_ref()?;
        let e = self.executors.get(&g.executor_container)?;
        Some(executor_to_pb(&e.info))
    }

    /// A task reached a terminal state. A task of a group that did not finish ends the
    /// rest of its group; an executor all of whose tasks have exited ends.
    pub(super) fn group_task_ended(
        &mut self,
        fw: &FrameworkId,
        tid: &TaskId,
        state: TaskState,
        message: Option<&str>,
    ) {
        if self.recovering {
            return;
        }
        let Some(g) = self.tasks.get(fw, tid).and_then(|t| t.group.clone()) else {
            return;
        };
        if fails_group(state) {
            let reason = group_kill_reason(tid, state, message);
            self.kill_group(fw, &g, Some(tid), &reason);
        }
        self.end_executor_if_idle(&g.executor_container);
    }

    /// Kills every live task of group `g` but `except`, telling each `reason`.
    pub(super) fn kill_group(
        &mut self,
        fw: &FrameworkId,
        g: &GroupRef,
        except: Option<&TaskId>,
        reason: &str,
    ) {
        let Some(members) = self
            .executors
            .get(&g.executor_container)
            .map(|e| e.group_of(&g.group).to_vec())
        else {
            return;
        };
        for m in members.iter().filter(|m| Some(*m) != except) {
            let Some(t) = self.tasks.get_mut(fw, m) else {
                continue;
            };
            let live = t.container.is_some() || t.launching;
            if !live || t.killing || t.state.is_terminal() {
                continue;
            }
            info!(framework_id = %fw, task_id = %m, %reason, "killing a task of a failed group");
            t.kill_reason = Some(reason.to_string());
            self.begin_kill(fw, m, None);
        }
    }

    /// Ends the executor run `container_id` once every task it ran has exited: removes its
    /// container (off the loop) and checkpoints that it ended.
    fn end_executor_if_idle(&mut self, container_id: &str) {
        let Some(e) = self.executors.get(container_id) else {
            return;
        };
        if e.ended {
            return;
        }
        let idle = e.tasks().all(|tid| {
            self.tasks
                .get(&e.framework_id, tid)
                .is_none_or(|t| t.container.is_none() && !t.launching)
        });
        if !idle {
            return;
        }
        info!(framework_id = %e.framework_id, executor_id = %e.info.executor_id, %container_id,
            "every task of the executor has exited; removing its container");
        if let Some(e) = self.executors.get_mut(container_id) {
            e.ended = true;
        }
        self.checkpoint_executor(container_id);
        let launcher = self.launcher.clone();
        let id = container_id.to_string();
        tokio::spawn(async move {
            if let Err(e) = launcher.destroy_executor(&id).await {
                warn!(container_id = %id, error = %e, "removing the executor's container failed");
            }
        });
    }

    /// Forgets an ended executor run once none of its tasks is left, with its checkpoints.
    pub(super) fn forget_executor_if_done(&mut self, container_id: &str) {
        let Some(e) = self.executors.get(container_id) else {
            return;
        };
        if !e.ended
            || e.tasks()
                .any(|tid| self.tasks.contains(&e.framework_id, tid))
        {
            return;
        }
        if let Some(e) = self.executors.remove(container_id)
            && let Some(dir) = checkpoint::meta_dir_of_sandbox(&e.sandbox)
            && let Err(err) = checkpoint::remove_run(&dir)
        {
            warn!(dir = %dir.display(), error = %err, "cannot remove a forgotten executor's checkpoint");
        }
    }

    /// Checkpoints an executor run (`executor.json`).
    fn checkpoint_executor(&self, container_id: &str) {
        let Some(e) = self.executors.get(container_id) else {
            return;
        };
        let Some(dir) = checkpoint::meta_dir_of_sandbox(&e.sandbox) else {
            return;
        };
        let ck = ExecutorCheckpoint {
            framework_id: e.framework_id.clone(),
            info: e.info.clone(),
            container_id: e.container_id.clone(),
            sandbox: e.sandbox.clone(),
            ended: e.ended,
        };
        if let Err(err) = checkpoint::write_json(&dir.join(EXECUTOR_FILE), &ck) {
            error!(error = %err, "checkpoint failed; this task group cannot be recovered after an agent restart");
        }
    }

    /// Recovery, first step: the executor runs checkpointed under `agent_meta`, without
    /// their tasks (which [`join_recovered_group`](Self::join_recovered_group) adds back).
    pub(super) async fn recover_executors(&mut self, agent_meta: &Path) {
        let dir = agent_meta.to_path_buf();
        let found =
            match tokio::task::spawn_blocking(move || checkpoint::load_executors(&dir)).await {
                Ok(found) => found,
                Err(e) => return error!(error = %e, "reading executor checkpoints failed"),
            };
        for ck in found {
            let ck = match ck {
                Ok((_, ck)) => ck,
                Err(e) => {
                    warn!(error = %e, "skipping an unreadable executor checkpoint");
                    continue;
                }
            };
            self.executors.insert(Executor {
                framework_id: ck.framework_id,
                setup: Setup::new(ck.info.resources.clone(), true),
                info: ck.info,
                container_id: ck.container_id,
                sandbox: ck.sandbox,
                groups: Default::default(),
                ended: ck.ended,
            });
        }
    }

    /// Recovery: a recovered task of a group joins its group again (and its resources the
    /// executor's limits).
    pub(super) fn join_recovered_group(&mut self, fw: &FrameworkId, tid: &TaskId) {
        let Some(t) = self.tasks.get(fw, tid) else {
            return;
        };
        let Some(g) = t.group.clone() else {
            return;
        };
        let resources = t.info.resources.clone();
        match self.executors.get_mut(&g.executor_container) {
            Some(e) => {
                e.groups.entry(g.group).or_default().push(tid.clone());
                if let Ok(mut l) = e.setup.limits.lock() {
                    let _ = l.add_assign(&resources);
                }
            }
            None => {
                warn!(framework_id = %fw, task_id = %tid, container_id = %g.executor_container,
                    "a task of a group whose executor was not checkpointed; it runs on alone");
                if let Some(t) = self.tasks.get_mut(fw, tid) {
                    t.group = None;
                }
            }
        }
    }

    /// Recovery, last step, once every task is back: groups with a task that failed or was
    /// killed while the agent was down are ended now; executors whose tasks have all
    /// exited end, and those with no task left are forgotten.
    pub(super) fn reconcile_groups(&mut self) {
        for cid in self.executors.container_ids() {
            let Some(e) = self.executors.get(&cid) else {
                continue;
            };
            let fw = e.framework_id.clone();
            let groups: Vec<(String, Vec<TaskId>)> = e
                .groups
                .iter()
                .map(|(g, ts)| (g.clone(), ts.clone()))
                .collect();
            for (group, members) in groups {
                let failed = members.iter().find_map(|m| {
                    let t = self.tasks.get(&fw, m)?;
                    fails_group(t.state).then(|| (m.clone(), t.state))
                });
                if let Some((m, state)) = failed {
                    let g = GroupRef {
                        executor_container: cid.clone(),
                        group,
                    };
                    let reason = group_kill_reason(&m, state, None);
                    self.kill_group(&fw, &g, Some(&m), &reason);
                }
            }
            self.end_executor_if_idle(&cid);
            self.forget_executor_if_done(&cid);
        }
    }

    /// Shutdown: removes the containers of executors whose tasks have all exited (waiting
    /// for it, unlike the loop, which does it off the loop).
    pub(super) async fn destroy_ended_executors(&mut self) {
        let launcher: Arc<dyn Launcher> = self.launcher.clone();
        for e in self.executors.iter() {
            let idle = e.tasks().all(|tid| {
                self.tasks
                    .get(&e.framework_id, tid)
                    .is_none_or(|t| t.container.is_none() && !t.launching)
            });
            if idle && let Err(err) = launcher.destroy_executor(&e.container_id).await {
                warn!(container_id = %e.container_id, error = %err, "removing the executor's container failed");
            }
        }
    }
}

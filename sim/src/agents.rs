//! Simulated agents: attached to the master through the same [`AgentLink`] trait real gRPC
//! agents use, registered with the same messages. One task plays all of them: a RunTask is
//! answered with TASK_RUNNING at once and TASK_FINISHED when the task's (virtual) time is
//! up — the command `sleep SECONDS` says how long; `sleep infinity` runs until killed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tessera_api::convert::{resources_from_pb, resources_to_pb, status_to_pb};
use tessera_api::pb;
use tessera_master::MasterHandle;
use tessera_master::link::AgentLink;
use tessera_types::{Resources, TaskId, TaskState, TaskStatus, UpdateSource};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::SimError;

/// A task's finish: (when, launch sequence, agent conn, framework id, task id).
type Due = (Instant, u64, u64, String, TaskId);

struct SimLink {
    conn: u64,
    tx: mpsc::UnboundedSender<(u64, pb::MasterMessage)>,
}

impl AgentLink for SimLink {
    fn send(&self, msg: pb::MasterMessage) -> bool {
        self.tx.send((self.conn, msg)).is_ok()
    }
}

/// What the simulated agents have seen.
#[derive(Debug, Default)]
pub struct AgentCounters {
    pub registered: AtomicUsize,
    /// RunTasks received.
    pub launched: AtomicUsize,
    pub running: AtomicUsize,
    pub finished: AtomicUsize,
    /// RunTasks that would have put an agent's cpus or mem past its total (must stay 0).
    pub overcommits: AtomicUsize,
}

fn status(id: TaskId, state: TaskState) -> TaskStatus {
    TaskStatus {
        task_id: id,
        state,
        reason: None,
        message: None,
        source: UpdateSource::SourceExecutor,
        agent_id: None,
        framework_id: None,
        uuid: None,
        timestamp: 0.0,
        exit_code: (state == TaskState::TaskFinished).then_some(0),
        healthy: None,
    }
}

/// `sleep 1.5` → 1.5 s; `sleep infinity` (or anything else) → never.
pub(crate) fn duration_of(cmd: &str) -> Option<Duration> {
    let secs: f64 = cmd.strip_prefix("sleep ")?.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// The StatusUpdate message an agent sends for task `id` of framework `fw`.
pub(crate) fn status_update(fw: String, id: TaskId, state: TaskState) -> pb::AgentMessage {
    let up = pb::StatusUpdate {
        framework_id: fw,
        status: Some(status_to_pb(&status(id, state))),
    };
    pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::StatusUpdate(up)),
    }
}

async fn send_status(
    h: &MasterHandle,
    conn: u64,
    fw: String,
    id: TaskId,
    state: TaskState,
) -> bool {
    let msg = status_update(fw, id, state);
    h.agent_message(conn, msg).await.is_ok()
}

/// Attaches and registers `n` agents with `resources` each; returns once all are in.
pub async fn start(
    h: &MasterHandle,
    n: usize,
    resources: &Resources,
) -> Result<Arc<AgentCounters>, SimError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, pb::MasterMessage)>();
    let counters = Arc::new(AgentCounters::default());
    let c = Arc::clone(&counters);
    let hh = h.clone();
    let cap = (
        resources.scalar("cpus").milli(),
        resources.scalar("mem").milli(),
    );
    tokio::spawn(async move {
        // (finish time, sequence) → (conn, framework, task); the sequence keeps equal times
        // in launch order, so runs are reproducible.
        let mut due: BinaryHeap<Reverse<Due>> = BinaryHeap::new();
        let mut seq = 0u64;
        // Per agent (conn): cpus and mem in use, in milli-units; per task what it holds.
        let mut used: std::collections::HashMap<u64, (u64, u64)> = Default::default();
        let mut holds: std::collections::HashMap<TaskId, (u64, u64, u64)> = Default::default();
        let release = |used: &mut std::collections::HashMap<u64, (u64, u64)>,
                       holds: &mut std::collections::HashMap<TaskId, (u64, u64, u64)>,
                       id: &TaskId| {
            if let Some((conn, c, m)) = holds.remove(id)
                && let Some(u) = used.get_mut(&conn)
            {
                u.0 = u.0.saturating_sub(c);
                u.1 = u.1.saturating_sub(m);
            }
        };
        loop {
            let next = due.peek().map(|Reverse(d)| d.0);
            let msg = tokio::select! {
                biased;
                m = rx.recv() => match m { Some(m) => Some(m), None => return },
                _ = async { match next { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => None,
            };
            match msg {
                Some((conn, m)) => match m.msg {
                    Some(pb::master_message::Msg::Registered(_)) => {
                        c.registered.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(pb::master_message::Msg::RunTask(rt)) => {
                        let Some(task) = rt.task else { continue };
                        let Ok(id) = TaskId::new(task.task_id) else {
                            continue;
                        };
                        let cmd = task.command.map(|c| c.value).unwrap_or_default();
                        c.launched.fetch_add(1, Ordering::Relaxed);
                        if let Ok(r) = resources_from_pb("task.resources", &task.resources) {
                            let (c_, m_) = (r.scalar("cpus").milli(), r.scalar("mem").milli());
                            let u = used.entry(conn).or_default();
                            u.0 += c_;
                            u.1 += m_;
                            if u.0 > cap.0 || u.1 > cap.1 {
                                c.overcommits.fetch_add(1, Ordering::Relaxed);
                            }
                            holds.insert(id.clone(), (conn, c_, m_));
                        }
                        c.running.fetch_add(1, Ordering::Relaxed);
                        if !send_status(
                            &hh,
                            conn,
                            rt.framework_id.clone(),
                            id.clone(),
                            TaskState::TaskRunning,
                        )
                        .await
                        {
                            return;
                        }
                        if let Some(d) = duration_of(&cmd) {
                            seq += 1;
                            due.push(Reverse((
                                Instant::now() + d,
                                seq,
                                conn,
                                rt.framework_id,
                                id,
                            )));
                        }
                    }
                    Some(pb::master_message::Msg::KillTask(k)) => {
                        let Ok(id) = TaskId::new(k.task_id) else {
                            continue;
                        };
                        due.retain(|Reverse(d)| d.4 != id);
                        release(&mut used, &mut holds, &id);
                        if !send_status(&hh, conn, k.framework_id, id, TaskState::TaskKilled).await
                        {
                            return;
                        }
                    }
                    _ => {}
                },
                None => {
                    let now = Instant::now();
                    while let Some(Reverse(d)) = due.peek() {
                        if d.0 > now {
                            break;
                        }
                        let Some(Reverse((_, _, conn, fw, id))) = due.pop() else {
                            break;
                        };
                        c.running.fetch_sub(1, Ordering::Relaxed);
                        c.finished.fetch_add(1, Ordering::Relaxed);
                        release(&mut used, &mut holds, &id);
                        if !send_status(&hh, conn, fw, id, TaskState::TaskFinished).await {
                            return;
                        }
                    }
                }
            }
        }
    });
    let res = resources_to_pb(resources);
    for i in 0..n {
        let conn = i as u64 + 1;
        h.agent_attached(
            conn,
            Box::new(SimLink {
                conn,
                tx: tx.clone(),
            }),
            None,
        )
        .await
        .map_err(|e| SimError::Master(e.to_string()))?;
        let info = pb::AgentInfo {
            hostname: format!("sim{conn}"),
            http_port: 0,
            resources: res.clone(),
            attributes: vec![pb::Attribute {
                name: "rack".into(),
                value: format!("r{}", i % 40),
            }],
            version: "sim".into(),
        };
        let reg = pb::Register {
            info: Some(info),
            agent_id: None,
            tasks: vec![],
        };
        h.agent_message(
            conn,
            pb::AgentMessage {
                msg: Some(pb::agent_message::Msg::Register(reg)),
            },
        )
        .await
        .map_err(|e| SimError::Master(e.to_string()))?;
    }
    while counters.registered.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(counters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_come_from_the_command() {
        assert_eq!(duration_of("sleep 1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(duration_of("sleep infinity"), None);
        assert_eq!(duration_of("true"), None);
    }
}

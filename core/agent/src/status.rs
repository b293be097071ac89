//! The status update manager: at-least-once, per-task ordered delivery of status updates.
//!
//! Pure bookkeeping, no I/O: callers pass `now` in and send whatever the methods return.
//! Each task has a FIFO queue; only its head is in flight. The head is resent when its due
//! time passes (backoff doubling from `base` to `cap`) and after every (re-)registration,
//! until an acknowledgement carrying exactly its uuid arrives; then the next update becomes
//! the head and is returned for sending. Any other acknowledgement is stale and ignored.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tessera_types::{FrameworkId, TaskId, TaskStatus};
use tokio::time::Instant;

/// An update to put on the wire now.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub framework_id: FrameworkId,
    pub status: TaskStatus,
}

/// An accepted acknowledgement: the head that was acknowledged, and the new head (if any),
/// to send now.
#[derive(Debug, Clone, PartialEq)]
pub struct Acked {
    pub acked: TaskStatus,
    pub next: Option<Outgoing>,
}

#[derive(Debug)]
struct TaskQueue {
    updates: VecDeque<TaskStatus>,
    due: Instant,
    backoff: Duration,
}

/// Per-task queues of unacknowledged updates. See the module doc.
#[derive(Debug)]
pub struct StatusUpdateManager {
    queues: BTreeMap<(FrameworkId, TaskId), TaskQueue>,
    base: Duration,
    cap: Duration,
}

impl StatusUpdateManager {
    pub fn new(base: Duration, cap: Duration) -> Self {
        StatusUpdateManager {
            queues: BTreeMap::new(),
            base,
            cap: cap.max(base),
        }
    }

    /// Queues `status` (which must carry a uuid). Returns it when it became the head and so
    /// must be sent now.
    pub fn enqueue(
        &mut self,
        framework_id: FrameworkId,
        status: TaskStatus,
        now: Instant,
    ) -> Option<Outgoing> {
        debug_assert!(status.uuid.is_some(), "agent updates carry a uuid");
        let key = (framework_id.clone(), status.task_id.clone());
        let base = self.base;
        let q = self.queues.entry(key).or_insert_with(|| TaskQueue {
            updates: VecDeque::new(),
            due: now + base,
            backoff: base,
        });
        q.updates.push_back(status.clone());
        if q.updates.len() == 1 {
            q.due = now + base;
            q.backoff = base;
            Some(Outgoing {
                framework_id,
                status,
            })
        } else {
            None
        }
    }

    /// Handles an acknowledgement for `(framework_id, task_id, uuid)`. `None` when no
    /// in-flight update matches (unknown task, or an older/other uuid): a stale ack.
    pub fn acknowledge(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        uuid: &str,
        now: Instant,
    ) -> Option<Acked> {
        let key = (framework_id.clone(), task_id.clone());
        let q = self.queues.get_mut(&key)?;
        if q.updates.front().and_then(|s| s.uuid.as_deref()) != Some(uuid) {
            return None;
        }
        let acked = q.updates.pop_front().expect("head checked above");
        let next = match q.updates.front() {
            None => {
                self.queues.remove(&key);
                None
            }
            Some(head) => {
                q.due = now + self.base;
                q.backoff = self.base;
                Some(Outgoing {
                    framework_id: framework_id.clone(),
                    status: head.clone(),
                })
            }
        };
        Some(Acked { acked, next })
    }

    /// Heads whose retry time has come; each is rescheduled with doubled backoff.
    pub fn due(&mut self, now: Instant) -> Vec<Outgoing> {
        let cap = self.cap;
        let mut out = Vec::new();
        for ((fw, _), q) in self.queues.iter_mut() {
            if q.due <= now {
                q.backoff = (q.backoff * 2).min(cap);
                q.due = now + q.backoff;
                out.push(Outgoing {
                    framework_id: fw.clone(),
                    status: q.updates.front().expect("queues are never empty").clone(),
                });
            }
        }
        out
    }

    /// Every head, for resending after a (re-)registration. Retry timers restart at `base`.
    pub fn resend_all(&mut self, now: Instant) -> Vec<Outgoing> {
        let base = self.base;
        self.queues
            .iter_mut()
            .map(|((fw, _), q)| {
                q.due = now + base;
                q.backoff = base;
                Outgoing {
                    framework_id: fw.clone(),
                    status: q.updates.front().expect("queues are never empty").clone(),
                }
            })
            .collect()
    }

    /// When [`due`](Self::due) next has something to return.
    pub fn next_due(&self) -> Option<Instant> {
        self.queues.values().map(|q| q.due).min()
    }

    /// Unacknowledged updates for one task (head first).
    pub fn pending(&self, framework_id: &FrameworkId, task_id: &TaskId) -> usize {
        self.queues
            .get(&(framework_id.clone(), task_id.clone()))
            .map_or(0, |q| q.updates.len())
    }

    /// Unacknowledged updates for one task, head first (what is checkpointed).
    pub fn queued(&self, framework_id: &FrameworkId, task_id: &TaskId) -> Vec<TaskStatus> {
        self.queues
            .get(&(framework_id.clone(), task_id.clone()))
            .map_or_else(Vec::new, |q| q.updates.iter().cloned().collect())
    }

    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_types::{TaskState, UpdateSource};

    fn fw() -> FrameworkId {
        FrameworkId::new("fw").unwrap()
    }

    fn st(task: &str, state: TaskState, uuid: &str) -> TaskStatus {
        TaskStatus {
            task_id: TaskId::new(task).unwrap(),
            state,
            reason: None,
            message: None,
            source: UpdateSource::SourceExecutor,
            agent_id: None,
            framework_id: None,
            uuid: Some(uuid.into()),
            timestamp: 0.0,
            exit_code: None,
            healthy: None,
        }
    }

    fn mgr() -> StatusUpdateManager {
        StatusUpdateManager::new(Duration::from_secs(10), Duration::from_secs(60))
    }

    #[test]
    fn only_the_head_is_sent_and_ack_releases_the_next_in_order() {
        let now = Instant::now();
        let mut m = mgr();
        let t = TaskId::new("t").unwrap();
        assert!(
            m.enqueue(fw(), st("t", TaskState::TaskStarting, "u1"), now)
                .is_some()
        );
        assert!(
            m.enqueue(fw(), st("t", TaskState::TaskRunning, "u2"), now)
                .is_none()
        );
        assert!(
            m.enqueue(fw(), st("t", TaskState::TaskFinished, "u3"), now)
                .is_none()
        );
        assert_eq!(m.pending(&fw(), &t), 3);

        let Some(Acked { acked, next }) = m.acknowledge(&fw(), &t, "u1", now) else {
            panic!("head ack must be accepted")
        };
        assert_eq!(acked.state, TaskState::TaskStarting);
        assert_eq!(next.unwrap().status.state, TaskState::TaskRunning);
        let Some(Acked { next, .. }) = m.acknowledge(&fw(), &t, "u2", now) else {
            panic!()
        };
        assert_eq!(next.unwrap().status.state, TaskState::TaskFinished);
        let Some(Acked { next, .. }) = m.acknowledge(&fw(), &t, "u3", now) else {
            panic!()
        };
        assert!(next.is_none());
        assert!(m.is_empty());
    }

    #[test]
    fn queued_lists_the_unacknowledged_updates_in_order() {
        let now = Instant::now();
        let mut m = mgr();
        let t = TaskId::new("t").unwrap();
        assert!(m.queued(&fw(), &t).is_empty());
        m.enqueue(fw(), st("t", TaskState::TaskStarting, "u1"), now);
        m.enqueue(fw(), st("t", TaskState::TaskRunning, "u2"), now);
        let uuids = |m: &StatusUpdateManager| -> Vec<String> {
            m.queued(&fw(), &t)
                .into_iter()
                .map(|s| s.uuid.unwrap())
                .collect()
        };
        assert_eq!(uuids(&m), ["u1", "u2"]);
        m.acknowledge(&fw(), &t, "u1", now);
        assert_eq!(uuids(&m), ["u2"]);
    }

    #[test]
    fn stale_and_unknown_acks_are_ignored() {
        let now = Instant::now();
        let mut m = mgr();
        let t = TaskId::new("t").unwrap();
        m.enqueue(fw(), st("t", TaskState::TaskStarting, "u1"), now);
        m.enqueue(fw(), st("t", TaskState::TaskRunning, "u2"), now);
        // Ack for the second (not in flight) update, for another task, another framework.
        assert_eq!(m.acknowledge(&fw(), &t, "u2", now), None);
        let other = TaskId::new("x").unwrap();
        assert_eq!(m.acknowledge(&fw(), &other, "u1", now), None);
        let fw2 = FrameworkId::new("fw2").unwrap();
        assert_eq!(m.acknowledge(&fw2, &t, "u1", now), None);
        assert_eq!(m.pending(&fw(), &t), 2);
        // Double ack: the second one is stale.
        assert!(matches!(
            m.acknowledge(&fw(), &t, "u1", now),
            Some(Acked { .. })
        ));
        assert_eq!(m.acknowledge(&fw(), &t, "u1", now), None);
        assert_eq!(m.pending(&fw(), &t), 1);
    }

    #[test]
    fn retries_double_up_to_the_cap() {
        let t0 = Instant::now();
        let mut m = mgr();
        m.enqueue(fw(), st("t", TaskState::TaskRunning, "u1"), t0);
        assert_eq!(m.next_due(), Some(t0 + Duration::from_secs(10)));
        assert!(m.due(t0 + Duration::from_secs(9)).is_empty());

        let mut now = t0 + Duration::from_secs(10);
        let mut gaps = Vec::new();
        for _ in 0..5 {
            let sent = m.due(now);
            assert_eq!(sent.len(), 1);
            assert_eq!(
                sent[0].status.uuid.as_deref(),
                Some("u1"),
                "same update resent"
            );
            let next = m.next_due().unwrap();
            gaps.push((next - now).as_secs());
            now = next;
        }
        assert_eq!(gaps, vec![20, 40, 60, 60, 60]);
    }

    #[test]
    fn resend_all_returns_every_head_and_restarts_timers() {
        let t0 = Instant::now();
        let mut m = mgr();
        m.enqueue(fw(), st("a", TaskState::TaskRunning, "a1"), t0);
        m.enqueue(fw(), st("a", TaskState::TaskFinished, "a2"), t0);
        m.enqueue(fw(), st("b", TaskState::TaskRunning, "b1"), t0);
        let later = t0 + Duration::from_secs(100);
        m.due(later);
        let all = m.resend_all(later);
        let uuids: Vec<_> = all.iter().map(|o| o.status.uuid.clone().unwrap()).collect();
        assert_eq!(uuids, vec!["a1", "b1"]);
        assert_eq!(m.next_due(), Some(later + Duration::from_secs(10)));
    }

    #[test]
    fn ack_of_head_restarts_backoff_for_the_next() {
        let t0 = Instant::now();
        let mut m = mgr();
        let t = TaskId::new("t").unwrap();
        m.enqueue(fw(), st("t", TaskState::TaskRunning, "u1"), t0);
        m.enqueue(fw(), st("t", TaskState::TaskFinished, "u2"), t0);
        let t1 = t0 + Duration::from_secs(10);
        m.due(t1);
        m.due(t1 + Duration::from_secs(20));
        let t2 = t1 + Duration::from_secs(25);
        m.acknowledge(&fw(), &t, "u1", t2);
        assert_eq!(m.next_due(), Some(t2 + Duration::from_secs(10)));
    }
}

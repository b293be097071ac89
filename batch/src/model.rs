//! The batch scheduler's records: jobs and their tasks (one per array index), with Slurm's
//! state names. Plain data; the rules that move them live in [`crate::core`].

use serde::{Deserialize, Serialize};

use crate::spec::{JobId, JobSpec};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
    Timeout,
    /// A schedule: it starts a new job at each fire time until cancelled.
    Scheduled,
}

impl JobState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled | JobState::Timeout
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Running => "RUNNING",
            JobState::Completed => "COMPLETED",
            JobState::Failed => "FAILED",
            JobState::Cancelled => "CANCELLED",
            JobState::Timeout => "TIMEOUT",
            JobState::Scheduled => "SCHEDULED",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        Some(match s.to_ascii_uppercase().as_str() {
            "PENDING" | "PD" => JobState::Pending,
            "RUNNING" | "R" => JobState::Running,
            "COMPLETED" | "CD" => JobState::Completed,
            "FAILED" | "F" => JobState::Failed,
            "CANCELLED" | "CA" => JobState::Cancelled,
            "TIMEOUT" | "TO" => JobState::Timeout,
            "SCHEDULED" => JobState::Scheduled,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    /// Waiting for its turn (dependencies, hold, cap, an offer).
    Pending,
    /// Failed and waiting out its retry delay (`not_before`).
    Backoff,
    /// Stored and sent to the master; no update yet.
    Launching,
    Running,
    /// A kill was sent; waiting for the terminal update.
    Killing,
    Completed,
    Failed,
    Cancelled,
    Timeout,
}

impl TaskState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Failed | TaskState::Cancelled | TaskState::Timeout
        )
    }

    /// Holds resources on an agent (or may).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            TaskState::Launching | TaskState::Running | TaskState::Killing
        )
    }

    /// Waiting to be launched.
    pub fn is_waiting(self) -> bool {
        matches!(self, TaskState::Pending | TaskState::Backoff)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "PENDING",
            TaskState::Backoff => "BACKOFF",
            TaskState::Launching => "LAUNCHING",
            TaskState::Running => "RUNNING",
            TaskState::Killing => "KILLING",
            TaskState::Completed => "COMPLETED",
            TaskState::Failed => "FAILED",
            TaskState::Cancelled => "CANCELLED",
            TaskState::Timeout => "TIMEOUT",
        }
    }

    pub fn parse(s: &str) -> Option<TaskState> {
        Some(match s {
            "PENDING" => TaskState::Pending,
            "BACKOFF" => TaskState::Backoff,
            "LAUNCHING" => TaskState::Launching,
            "RUNNING" => TaskState::Running,
            "KILLING" => TaskState::Killing,
            "COMPLETED" => TaskState::Completed,
            "FAILED" => TaskState::Failed,
            "CANCELLED" => TaskState::Cancelled,
            "TIMEOUT" => TaskState::Timeout,
            _ => return None,
        })
    }
}

/// Attempts of one task that may be lost to the infrastructure before it counts as failed.
pub const MAX_LOST: u32 = 5;

/// Why the scheduler killed a task, which decides the state it ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KillReason {
    Cancel,
    Timeout,
    /// A schedule with the `replace` policy started a newer run.
    Replace,
}

/// One task of a job: the job itself, or one index of an array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRec {
    /// The array index; 0 for a job that is not an array.
    pub index: u32,
    pub state: TaskState,
    /// The current (or last) attempt; 0 until first launched.
    pub attempt: u32,
    /// Failures counted against the job's `retries`.
    pub failures: u32,
    /// Attempts lost to the infrastructure (agent gone, task unknown after a restart),
    /// relaunched without counting a failure, up to [`MAX_LOST`].
    pub lost: u32,
    pub agent_id: Option<String>,
    pub exit_code: Option<i32>,
    /// When the current attempt was launched, then when it reported RUNNING.
    pub started_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    /// Retry not before this time.
    pub not_before: Option<Millis>,
    pub kill: Option<KillReason>,
    /// When a kill was last sent, to resend it if no terminal update comes.
    pub kill_sent_at: Option<Millis>,
    /// Whether the current attempt reached RUNNING (a lost task that never ran is
    /// relaunched without counting a failure).
    pub ran: bool,
    /// The last message from the cluster (reason, agent message).
    pub message: Option<String>,
}

impl TaskRec {
    pub fn new(index: u32) -> Self {
        TaskRec {
            index,
            state: TaskState::Pending,
            attempt: 0,
            failures: 0,
            lost: 0,
            agent_id: None,
            exit_code: None,
            started_at: None,
            ended_at: None,
            not_before: None,
            kill: None,
            kill_sent_at: None,
            ran: false,
            message: None,
        }
    }
}

/// The Mesos task id of a job's task attempt: `batch.JOB.INDEX.ATTEMPT`.
pub fn task_id(job: JobId, index: u32, attempt: u32) -> String {
    format!("batch.{job}.{index}.{attempt}")
}

/// Parses [`task_id`]'s form back; `None` for ids this scheduler did not make.
pub fn parse_task_id(id: &str) -> Option<(JobId, u32, u32)> {
    let mut it = id.strip_prefix("batch.")?.split('.');
    let job = it.next()?.parse().ok()?;
    let index = it.next()?.parse().ok()?;
    let attempt = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some((JobId(job), index, attempt))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub spec: JobSpec,
    pub state: JobState,
    pub held: bool,
    pub cancel_requested: bool,
    pub submitted_at: Millis,
    pub started_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    /// Why it ended (or why a schedule stopped), e.g. `DependencyNeverSatisfied`.
    pub reason: Option<String>,
    /// The schedule that started this job.
    pub parent: Option<JobId>,
    /// For a schedule: the last fire time handled (run or deliberately skipped).
    pub last_fire: Option<Millis>,
    pub tasks: Vec<TaskRec>,
}

impl Job {
    /// The slot of the task with this array index.
    pub fn slot(&self, index: u32) -> Option<usize> {
        self.tasks.binary_search_by_key(&index, |t| t.index).ok()
    }

    pub fn is_array(&self) -> bool {
        self.spec.array.is_some()
    }

    /// How many tasks are in each state, for summaries.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for t in &self.tasks {
            match t.state {
                TaskState::Pending | TaskState::Backoff => c.pending += 1,
                TaskState::Launching | TaskState::Running | TaskState::Killing => c.running += 1,
                TaskState::Completed => c.completed += 1,
                TaskState::Failed | TaskState::Timeout => c.failed += 1,
                TaskState::Cancelled => c.cancelled += 1,
            }
        }
        c
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub pending: usize,
    pub running: usize,
    pub completed: usize,
    pub failed: usize,
    pub cancelled: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_round_trip() {
        assert_eq!(
            parse_task_id(&task_id(JobId(12), 7, 3)),
            Some((JobId(12), 7, 3))
        );
        assert_eq!(parse_task_id("hello"), None);
        assert_eq!(parse_task_id("batch.1.2"), None);
        assert_eq!(parse_task_id("batch.1.2.3.4"), None);
        assert_eq!(parse_task_id("batch.x.2.3"), None);
    }
}

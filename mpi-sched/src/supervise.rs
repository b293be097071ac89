//! Supervising a launched gang, as a pure state machine: task updates, PMI events and time
//! in; kills and the job's outcome out.
//!
//! Rules (Slurm's `--kill-on-bad-exit` and Hydra's abort semantics, made the default):
//! * every rank finishing with exit 0 is success;
//! * a rank failing, being killed, lost or unreachable, exiting non-zero, calling
//!   `MPI_Abort`, or closing its PMI connection before `MPI_Finalize` ends the job: the
//!   other ranks are killed at once (they would otherwise wait in a barrier forever);
//! * a rank that exits 0 *without* finalizing while the job speaks PMI (some rank has
//!   connected) ends the job the same way — it left before `MPI_Init` or skipped
//!   `MPI_Finalize`; a program that never speaks PMI (`hostname`) is judged by exit codes;
//! * the time limit, counted from the launch, kills every rank (outcome `TimedOut`);
//! * kills are re-sent every [`KILL_RETRY`] until each rank reports a terminal state.

use std::fmt;
use std::time::Duration;

use tessera_framework::Action;
use tessera_types::{AgentId, TaskId, TaskState, TaskStatus, Time};

use crate::pmi::PmiEvent;
use crate::queue::GangId;

/// How often kills are re-sent to ranks that have not ended.
pub const KILL_RETRY: Duration = Duration::from_secs(5);
/// How long a rank that exited 0 may wait for its PMI `finalize` to be seen: the two come
/// by different paths (the agent's update, the PMI connection) and may arrive in either
/// order.
pub const FINALIZE_GRACE: Duration = Duration::from_secs(2);
/// Exit status reported when the time limit killed the job (as `timeout(1)` and
/// `tessera batch` do).
pub const EXIT_TIMEOUT: i32 = 124;
/// Exit status reported for a cancelled job.
pub const EXIT_CANCELLED: i32 = 125;

/// How a gang ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// A rank failed (its exit code when it had one) and the others were killed.
    RankFailed {
        rank: u32,
        exit_code: Option<i32>,
        why: String,
    },
    /// A rank called `MPI_Abort(code)`.
    Aborted {
        rank: u32,
        code: i32,
    },
    TimedOut {
        limit: Duration,
    },
    Cancelled,
    /// The job's launcher (`mpiexec.hydra`, `mpirun`) exited with a non-zero status.
    LauncherFailed {
        code: i32,
    },
}

impl Outcome {
    /// A short machine-readable name (`succeeded`, `rank_failed`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::RankFailed { .. } => "rank_failed",
            Outcome::Aborted { .. } => "aborted",
            Outcome::TimedOut { .. } => "timed_out",
            Outcome::Cancelled => "cancelled",
            Outcome::LauncherFailed { .. } => "launcher_failed",
        }
    }

    /// The status `tessera mpi run` exits with.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Succeeded => 0,
            Outcome::RankFailed { exit_code, .. } => match exit_code {
                Some(c) if *c != 0 => *c,
                _ => 1,
            },
            Outcome::Aborted { code, .. } => {
                if *code == 0 {
                    1
                } else {
                    *code
                }
            }
            Outcome::TimedOut { .. } => EXIT_TIMEOUT,
            Outcome::Cancelled => EXIT_CANCELLED,
            Outcome::LauncherFailed { code } => {
                if *code == 0 {
                    1
                } else {
                    *code
                }
            }
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Succeeded => f.write_str("every rank finished"),
            Outcome::RankFailed { rank, why, .. } => write!(f, "rank {rank} {why}"),
            Outcome::Aborted { rank, code } => write!(f, "rank {rank} called MPI_Abort({code})"),
            Outcome::TimedOut { limit } => {
                write!(f, "time limit of {}s reached", limit.as_secs_f64())
            }
            Outcome::Cancelled => f.write_str("cancelled"),
            Outcome::LauncherFailed { code } => {
                write!(f, "the MPI launcher exited with status {code}")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Rank {
    task_id: TaskId,
    agent_id: AgentId,
    state: TaskState,
    exit_code: Option<i32>,
    finalized: bool,
    /// Ended with exit 0 without finalizing (judged once we know the job speaks PMI).
    left_early: bool,
    /// Exited 0 in a PMI job before its `finalize` was seen: when (see [`FINALIZE_GRACE`]).
    unfinalized_since: Option<Time>,
}

impl Rank {
    fn ended(&self) -> bool {
        self.state.is_terminal() || self.state == TaskState::TaskUnreachable
    }
}

/// One launched gang. See the module doc.
#[derive(Debug, Clone, PartialEq)]
pub struct GangRun {
    pub gang: GangId,
    ranks: Vec<Rank>,
    launched: Time,
    time_limit: Option<Duration>,
    speaks_pmi: bool,
    /// A launcher process (mpiexec) decides success; `Some(false)` while it runs.
    launcher_done: Option<bool>,
    outcome: Option<Outcome>,
    last_kill: Option<Time>,
}

impl GangRun {
    /// `tasks` are the ranks' tasks in rank order, as the queue launched them.
    pub fn new(
        gang: GangId,
        tasks: &[(TaskId, AgentId)],
        now: Time,
        time_limit: Option<Duration>,
    ) -> GangRun {
        GangRun {
            gang,
            ranks: tasks
                .iter()
                .map(|(t, a)| Rank {
                    task_id: t.clone(),
                    agent_id: a.clone(),
                    state: TaskState::TaskStaging,
                    exit_code: None,
                    finalized: false,
                    left_early: false,
                    unfinalized_since: None,
                })
                .collect(),
            launched: now,
            time_limit,
            speaks_pmi: false,
            launcher_done: None,
            outcome: None,
            last_kill: None,
        }
    }

    /// The job is driven by a launcher process (Hydra, Open MPI): success needs it to exit
    /// 0 as well as every task to end.
    pub fn with_launcher(mut self) -> GangRun {
        self.launcher_done = Some(false);
        self
    }

    /// The launcher exited with `code`; non-zero ends the job.
    pub fn on_launcher_exit(&mut self, code: i32, now: Time) -> Vec<Action> {
        self.launcher_done = Some(true);
        if code != 0 {
            self.fail(Outcome::LauncherFailed { code });
        }
        self.settle(now)
    }

    pub fn size(&self) -> u32 {
        self.ranks.len() as u32
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// The outcome is known and every rank has ended: nothing of the job runs any more.
    pub fn is_done(&self) -> bool {
        self.outcome.is_some() && self.ranks.iter().all(Rank::ended)
    }

    /// Each rank's task, agent and state, in rank order.
    pub fn ranks(&self) -> impl Iterator<Item = (u32, &TaskId, &AgentId, TaskState)> {
        self.ranks
            .iter()
            .enumerate()
            .map(|(i, r)| (i as u32, &r.task_id, &r.agent_id, r.state))
    }

    /// How many ranks are running (TASK_RUNNING).
    pub fn running(&self) -> u32 {
        self.ranks
            .iter()
            .filter(|r| r.state == TaskState::TaskRunning)
            .count() as u32
    }

    /// A status update for one of this gang's tasks; `rank` names it in messages (the
    /// rank of its task id: with one task per node, the node's first rank).
    pub fn on_update(&mut self, rank: u32, status: &TaskStatus, now: Time) -> Vec<Action> {
        let Some(r) = self.ranks.iter_mut().find(|r| r.task_id == status.task_id) else {
            return Vec::new();
        };
        if r.ended() {
            return Vec::new();
        }
        r.state = status.state;
        r.exit_code = status.exit_code.or(r.exit_code);
        let why = match status.state {
            TaskState::TaskFinished if r.exit_code.unwrap_or(0) == 0 => {
                if r.finalized {
                    None
                } else if self.speaks_pmi {
                    // Judged in `settle` once the grace for a late `finalize` has passed.
                    r.unfinalized_since = Some(now);
                    None
                } else {
                    r.left_early = true;
                    None
                }
            }
            TaskState::TaskFinished => {
                Some(format!("exited with status {}", r.exit_code.unwrap_or(1)))
            }
            s if s.is_terminal() || s == TaskState::TaskUnreachable => Some(describe(status)),
            _ => None,
        };
        if let Some(why) = why {
            let exit_code = r.exit_code;
            self.fail(Outcome::RankFailed {
                rank,
                exit_code,
                why,
            });
        }
        self.settle(now)
    }

    /// A rank exited with `code` inside a launcher's daemon (its wrapper reported it); a
    /// non-zero status ends the job.
    pub fn on_rank_exit(&mut self, rank: u32, code: i32, now: Time) -> Vec<Action> {
        if code != 0 {
            self.fail(Outcome::RankFailed {
                rank,
                exit_code: Some(code),
                why: format!("exited with status {code}"),
            });
        }
        self.settle(now)
    }

    /// A PMI event of this gang's job.
    pub fn on_pmi(&mut self, ev: &PmiEvent, now: Time) -> Vec<Action> {
        match ev {
            PmiEvent::Connected { .. } => {
                self.speaks_pmi = true;
                if let Some(rank) = self.ranks.iter().position(|r| r.left_early) {
                    self.fail(Outcome::RankFailed {
                        rank: rank as u32,
                        exit_code: Some(0),
                        why: "exited before MPI_Init while the other ranks started MPI".into(),
                    });
                }
            }
            PmiEvent::Finalized { rank } => {
                if let Some(r) = self.ranks.get_mut(*rank as usize) {
                    r.finalized = true;
                    r.unfinalized_since = None;
                }
            }
            PmiEvent::Abort { rank, code, .. } => self.fail(Outcome::Aborted {
                rank: *rank,
                code: *code,
            }),
            PmiEvent::Vanished { rank } => self.fail(Outcome::RankFailed {
                rank: *rank,
                exit_code: None,
                why: "closed its PMI connection before MPI_Finalize (it died or exited early)"
                    .into(),
            }),
            PmiEvent::AllInitialized => {}
        }
        self.settle(now)
    }

    /// Time passes: enforces the time limit and re-sends kills.
    pub fn on_tick(&mut self, now: Time) -> Vec<Action> {
        if let Some(limit) = self.time_limit
            && now.since(self.launched) >= limit
        {
            self.fail(Outcome::TimedOut { limit });
        }
        self.settle(now)
    }

    /// The user cancelled the job.
    pub fn cancel(&mut self, now: Time) -> Vec<Action> {
        self.fail(Outcome::Cancelled);
        self.settle(now)
    }

    fn fail(&mut self, outcome: Outcome) {
        if self.outcome.is_none() {
            self.outcome = Some(outcome);
        }
    }

    /// Decides success once every rank ended, and kills what still runs after a failure.
    fn settle(&mut self, now: Time) -> Vec<Action> {
        let late = self.ranks.iter().enumerate().find_map(|(i, r)| {
            r.unfinalized_since
                .filter(|t| now.since(*t) >= FINALIZE_GRACE)
                .map(|_| i as u32)
        });
        if let Some(rank) = late {
            self.fail(Outcome::RankFailed {
                rank,
                exit_code: Some(0),
                why: "exited without calling MPI_Finalize".to_string(),
            });
        }
        let waiting_for_finalize = self.ranks.iter().any(|r| r.unfinalized_since.is_some());
        if self.outcome.is_none()
            && !waiting_for_finalize
            && self.ranks.iter().all(Rank::ended)
            && self.launcher_done != Some(false)
        {
            self.outcome = Some(Outcome::Succeeded);
        }
        if self.outcome.is_none() || self.is_done() {
            return Vec::new();
        }
        if self.last_kill.is_some_and(|t| now.since(t) < KILL_RETRY) {
            return Vec::new();
        }
        self.last_kill = Some(now);
        self.ranks
            .iter()
            .filter(|r| !r.ended())
            .map(|r| Action::Kill {
                task_id: r.task_id.clone(),
                agent_id: Some(r.agent_id.clone()),
            })
            .collect()
    }
}

fn describe(status: &TaskStatus) -> String {
    let state = format!("{:?}", status.state);
    let mut s = format!("ended {}", state_name(&state));
    if let Some(code) = status.exit_code {
        s.push_str(&format!(" with status {code}"));
    }
    if let Some(m) = status.message.as_deref().filter(|m| !m.is_empty()) {
        s.push_str(&format!(": {m}"));
    }
    s
}

/// `TaskFailed` → `TASK_FAILED`.
fn state_name(debug: &str) -> String {
    let mut out = String::new();
    for (i, c) in debug.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

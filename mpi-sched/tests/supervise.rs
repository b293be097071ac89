//! Supervising a launched gang: success, a failing rank ends the job and kills the rest,
//! PMI aborts and early exits, the time limit, cancel — all pure, time as an input.

use std::time::Duration;

use tessera_framework::Action;
use tessera_mpi::pmi::PmiEvent;
use tessera_mpi::supervise::{EXIT_TIMEOUT, FINALIZE_GRACE, KILL_RETRY};
use tessera_mpi::{GangId, GangRun, Outcome};
use tessera_types::{AgentId, TaskId, TaskState, TaskStatus, Time, UpdateSource};

const G: GangId = GangId(3);

fn gang(n: u32, limit: Option<Duration>) -> GangRun {
    let tasks: Vec<(TaskId, AgentId)> = (0..n)
        .map(|r| (G.task_id(r), AgentId::new(format!("a{}", r / 2)).unwrap()))
        .collect();
    GangRun::new(G, &tasks, Time::from_millis(0), limit)
}

fn status(rank: u32, state: TaskState, exit: Option<i32>) -> TaskStatus {
    TaskStatus {
        task_id: G.task_id(rank),
        state,
        reason: None,
        message: None,
        source: UpdateSource::SourceExecutor,
        agent_id: None,
        framework_id: None,
        uuid: None,
        timestamp: 0.0,
        exit_code: exit,
        healthy: None,
    }
}

fn at(ms: u64) -> Time {
    Time::from_millis(ms)
}

fn killed(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Kill { task_id, .. } => task_id.as_str().to_string(),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

fn run_all(g: &mut GangRun, n: u32) {
    for r in 0..n {
        assert!(
            g.on_update(r, &status(r, TaskState::TaskRunning, None), at(1))
                .is_empty()
        );
    }
}

#[test]
fn every_rank_finishing_after_finalize_is_success() {
    let mut g = gang(4, None);
    run_all(&mut g, 4);
    for r in 0..4 {
        g.on_pmi(&PmiEvent::Connected { rank: r }, at(2));
        g.on_pmi(&PmiEvent::Finalized { rank: r }, at(3));
    }
    for r in 0..4 {
        assert!(g.outcome().is_none() || r == 4);
        let k = g.on_update(r, &status(r, TaskState::TaskFinished, Some(0)), at(4));
        assert!(k.is_empty());
    }
    assert_eq!(g.outcome(), Some(&Outcome::Succeeded));
    assert!(g.is_done());
    assert_eq!(Outcome::Succeeded.exit_code(), 0);
}

#[test]
fn a_failing_rank_kills_the_others_once_then_again_after_the_retry_interval() {
    let mut g = gang(4, None);
    run_all(&mut g, 4);
    let k = g.on_update(2, &status(2, TaskState::TaskFailed, Some(7)), at(10));
    assert_eq!(killed(&k), ["mpi.3.0", "mpi.3.1", "mpi.3.3"]);
    let o = g.outcome().cloned().unwrap();
    assert_eq!(o.exit_code(), 7);
    assert!(o.to_string().contains("rank 2"), "{o}");
    // No kill storm: nothing until the retry interval passed, then the survivors again.
    assert!(g.on_tick(at(11)).is_empty());
    g.on_update(0, &status(0, TaskState::TaskKilled, None), at(12));
    let again = g.on_tick(at(10).plus(KILL_RETRY));
    assert_eq!(killed(&again), ["mpi.3.1", "mpi.3.3"]);
    g.on_update(1, &status(1, TaskState::TaskKilled, None), at(6000));
    assert!(!g.is_done());
    g.on_update(3, &status(3, TaskState::TaskKilled, None), at(6001));
    assert!(g.is_done());
    // The first failure stays the outcome.
    assert_eq!(g.outcome().unwrap().exit_code(), 7);
}

#[test]
fn exiting_zero_without_finalize_fails_an_mpi_job_but_not_a_plain_program() {
    // MPI job: rank 1 connected, rank 0 leaves without finalizing.
    let mut g = gang(2, None);
    run_all(&mut g, 2);
    g.on_pmi(&PmiEvent::Connected { rank: 1 }, at(2));
    // Its `finalize` may still be on its way (another path than the update): not yet.
    let k = g.on_update(0, &status(0, TaskState::TaskFinished, Some(0)), at(3));
    assert!(k.is_empty() && g.outcome().is_none(), "{k:?}");
    assert!(
        g.on_tick(at(3).plus(FINALIZE_GRACE - Duration::from_millis(1)))
            .is_empty()
    );
    let k = g.on_tick(at(3).plus(FINALIZE_GRACE));
    assert_eq!(killed(&k), ["mpi.3.1"]);
    assert!(g.outcome().unwrap().to_string().contains("MPI_Finalize"));

    // The same exit, its `finalize` seen just after it: a rank like any other.
    let mut g = gang(2, None);
    run_all(&mut g, 2);
    g.on_pmi(&PmiEvent::Connected { rank: 0 }, at(2));
    g.on_update(0, &status(0, TaskState::TaskFinished, Some(0)), at(3));
    g.on_pmi(&PmiEvent::Finalized { rank: 0 }, at(4));
    g.on_pmi(&PmiEvent::Finalized { rank: 1 }, at(5));
    g.on_update(1, &status(1, TaskState::TaskFinished, Some(0)), at(6));
    assert_eq!(g.outcome(), Some(&Outcome::Succeeded));

    // Rank 0 leaves before anyone connected; when rank 1 connects, the job is doomed.
    let mut g = gang(2, None);
    run_all(&mut g, 2);
    assert!(
        g.on_update(0, &status(0, TaskState::TaskFinished, Some(0)), at(3))
            .is_empty()
    );
    assert!(g.outcome().is_none());
    let k = g.on_pmi(&PmiEvent::Connected { rank: 1 }, at(4));
    assert_eq!(killed(&k), ["mpi.3.1"]);
    assert!(g.outcome().unwrap().to_string().contains("before MPI_Init"));

    // A program that never speaks PMI (hostname): exit codes decide.
    let mut g = gang(2, None);
    run_all(&mut g, 2);
    g.on_update(0, &status(0, TaskState::TaskFinished, Some(0)), at(3));
    g.on_update(1, &status(1, TaskState::TaskFinished, Some(0)), at(3));
    assert_eq!(g.outcome(), Some(&Outcome::Succeeded));
}

#[test]
fn abort_and_vanished_ranks_end_the_job() {
    let mut g = gang(2, None);
    run_all(&mut g, 2);
    let k = g.on_pmi(
        &PmiEvent::Abort {
            rank: 1,
            code: 5,
            message: String::new(),
        },
        at(2),
    );
    assert_eq!(killed(&k), ["mpi.3.0", "mpi.3.1"]);
    assert_eq!(g.outcome(), Some(&Outcome::Aborted { rank: 1, code: 5 }));
    assert_eq!(g.outcome().unwrap().exit_code(), 5);

    let mut g = gang(2, None);
    run_all(&mut g, 2);
    let k = g.on_pmi(&PmiEvent::Vanished { rank: 0 }, at(2));
    assert_eq!(killed(&k).len(), 2);
    assert_eq!(g.outcome().unwrap().exit_code(), 1);
}

#[test]
fn the_time_limit_counts_from_the_launch() {
    let mut g = gang(2, Some(Duration::from_secs(60)));
    run_all(&mut g, 2);
    assert!(g.on_tick(at(59_999)).is_empty());
    assert!(g.outcome().is_none());
    let k = g.on_tick(at(60_000));
    assert_eq!(killed(&k).len(), 2);
    assert_eq!(g.outcome().unwrap().exit_code(), EXIT_TIMEOUT);
    // Late updates of killed ranks do not change the outcome.
    g.on_update(0, &status(0, TaskState::TaskKilled, None), at(60_100));
    g.on_update(1, &status(1, TaskState::TaskFailed, Some(9)), at(60_100));
    assert!(g.is_done());
    assert!(matches!(g.outcome(), Some(Outcome::TimedOut { .. })));
}

#[test]
fn unreachable_and_lost_ranks_fail_the_job_and_foreign_updates_are_ignored() {
    let mut g = gang(2, None);
    run_all(&mut g, 2);
    // An update for a task id that is not this rank's changes nothing.
    let mut wrong = status(0, TaskState::TaskFailed, Some(1));
    wrong.task_id = TaskId::new("mpi.9.0").unwrap();
    assert!(g.on_update(0, &wrong, at(2)).is_empty());
    assert!(
        g.on_update(9, &status(9, TaskState::TaskFailed, None), at(2))
            .is_empty()
    );
    assert!(g.outcome().is_none());
    let k = g.on_update(1, &status(1, TaskState::TaskUnreachable, None), at(3));
    assert_eq!(killed(&k), ["mpi.3.0"]);
    assert!(
        g.outcome()
            .unwrap()
            .to_string()
            .contains("TASK_UNREACHABLE")
    );
}

#[test]
fn cancel_kills_every_rank() {
    let mut g = gang(3, None);
    run_all(&mut g, 3);
    assert_eq!(killed(&g.cancel(at(5))).len(), 3);
    assert_eq!(g.outcome(), Some(&Outcome::Cancelled));
    assert_eq!(Outcome::Cancelled.exit_code(), 125);
}

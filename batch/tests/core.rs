//! The batch scheduler's decisions, driven directly: time is a number we choose (a paused
//! clock), offers and status updates are built by hand.

use std::collections::BTreeMap;

use tessera_batch::core::Core;
use tessera_batch::model::{JobState, TaskState, parse_task_id};
use tessera_batch::schedule::ScheduleSpec;
use tessera_batch::store::Store;
use tessera_batch::{Error, JobId, JobRequest, Limits};
use tessera_framework::{Action, Offer};
use tessera_types::parse::parse_resources;
use tessera_types::{AgentId, OfferId, TaskId, TaskInfo, TaskState as M, TaskStatus, UpdateSource};

const T0: i64 = 1_780_000_000_000;

fn req(cmd: &str) -> JobRequest {
    JobRequest {
        command: Some(cmd.into()),
        cpus: Some(1.0),
        mem: Some(tessera_batch::spec::Quantity::Number(64.0)),
        ..Default::default()
    }
}

fn offer(n: u32, res: &str) -> Offer {
    Offer {
        id: OfferId::new(format!("o{n}")).unwrap(),
        agent_id: AgentId::new("a1").unwrap(),
        hostname: "h1".into(),
        role: Some("batch".into()),
        resources: parse_resources(res).unwrap(),
        attributes: BTreeMap::new(),
    }
}

fn launched(actions: &[Action]) -> Vec<TaskInfo> {
    actions
        .iter()
        .flat_map(|a| match a {
            Action::Launch { tasks, .. } => tasks.clone(),
            _ => vec![],
        })
        .collect()
}

fn kills(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Kill { task_id, .. } => Some(task_id.to_string()),
            _ => None,
        })
        .collect()
}

fn status(task: &str, state: M) -> TaskStatus {
    TaskStatus {
        task_id: TaskId::new(task).unwrap(),
        state,
        reason: None,
        message: None,
        source: UpdateSource::SourceAgent,
        agent_id: Some(AgentId::new("a1").unwrap()),
        framework_id: None,
        uuid: None,
        timestamp: 0.0,
        exit_code: match state {
            M::TaskFinished => Some(0),
            M::TaskFailed => Some(1),
            _ => None,
        },
        healthy: None,
    }
}

/// Runs `task` to `end`, through RUNNING.
fn finish(core: &mut Core, task: &str, end: M, now: i64) {
    core.on_update(&status(task, M::TaskRunning), now);
    core.on_update(&status(task, end), now);
}

fn state(core: &Core, id: JobId) -> JobState {
    core.get(id).unwrap().state
}

#[test]
fn a_job_runs_and_completes() {
    let mut core = Core::new(Limits::default());
    assert!(!core.wants_offers(T0));
    let id = core.submit(&req("echo hi"), T0).unwrap();
    assert!(core.wants_offers(T0));
    let tasks = launched(&core.on_offers(&[offer(1, "cpus:4;mem:1024")], T0));
    assert_eq!(tasks.len(), 1);
    let t = &tasks[0];
    assert_eq!(t.task_id.as_str(), "batch.1.0.1");
    assert_eq!(t.command.environment["TESSERA_JOB_ID"], "1");
    assert!(!core.wants_offers(T0), "nothing else to run");
    assert_eq!(state(&core, id), JobState::Running);
    finish(&mut core, "batch.1.0.1", M::TaskFinished, T0 + 10);
    assert_eq!(state(&core, id), JobState::Completed);
    assert_eq!(core.get(id).unwrap().tasks[0].exit_code, Some(0));
    // Every change is recorded for the store.
    let ch = core.take_changes();
    assert!(ch.jobs.contains(&id) && ch.tasks.contains(&(id, 0)));
}

#[test]
fn an_array_respects_its_cap_and_each_task_sees_its_index() {
    let mut core = Core::new(Limits::default());
    let mut r = req("true");
    r.array = Some("0-9%3".into());
    let id = core.submit(&r, T0).unwrap();
    let tasks = launched(&core.on_offers(&[offer(1, "cpus:16;mem:4096")], T0));
    assert_eq!(tasks.len(), 3, "the cap is 3");
    let idx: Vec<&str> = tasks
        .iter()
        .map(|t| t.command.environment["TESSERA_ARRAY_INDEX"].as_str())
        .collect();
    assert_eq!(idx, ["0", "1", "2"]);
    assert!(launched(&core.on_offers(&[offer(2, "cpus:16;mem:4096")], T0)).is_empty());
    finish(&mut core, "batch.1.0.1", M::TaskFinished, T0);
    let next = launched(&core.on_offers(&[offer(3, "cpus:16;mem:4096")], T0));
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].command.environment["SLURM_ARRAY_TASK_ID"], "3");
    for t in ["batch.1.1.1", "batch.1.2.1", "batch.1.3.1"] {
        finish(&mut core, t, M::TaskFinished, T0);
    }
    let mut n = 4;
    while core.wants_offers(T0) {
        for t in launched(&core.on_offers(&[offer(n, "cpus:16;mem:4096")], T0)) {
            finish(&mut core, t.task_id.as_str(), M::TaskFinished, T0);
        }
        n += 1;
    }
    assert_eq!(state(&core, id), JobState::Completed);
    assert_eq!(core.get(id).unwrap().counts().completed, 10);
}

#[test]
fn offers_are_packed_by_priority_and_never_overcommitted() {
    let mut core = Core::new(Limits::default());
    let low = core.submit(&req("low"), T0).unwrap();
    let mut hi = req("high");
    hi.priority = Some(10);
    let high = core.submit(&hi, T0).unwrap();
    let tasks = launched(&core.on_offers(&[offer(1, "cpus:1;mem:64")], T0));
    assert_eq!(tasks.len(), 1);
    assert_eq!(parse_task_id(tasks[0].task_id.as_str()).unwrap().0, high);
    assert_eq!(state(&core, low), JobState::Pending);
    // An offer too small for anything launches nothing.
    assert!(launched(&core.on_offers(&[offer(2, "cpus:0.5;mem:64")], T0)).is_empty());
}

#[test]
fn a_failed_task_is_retried_after_its_backoff_then_succeeds() {
    let mut core = Core::new(Limits::default());
    let mut r = req("flaky");
    r.retries = Some(2);
    r.backoff = Some(tessera_batch::spec::Quantity::Text("10s".into()));
    let id = core.submit(&r, T0).unwrap();
    launched(&core.on_offers(&[offer(1, "cpus:1;mem:64")], T0));
    finish(&mut core, "batch.1.0.1", M::TaskFailed, T0 + 1_000);
    let t = &core.get(id).unwrap().tasks[0];
    assert_eq!(t.state, TaskState::Backoff);
    assert_eq!(t.not_before, Some(T0 + 11_000));
    assert!(!core.wants_offers(T0 + 5_000), "still backing off");
    assert!(launched(&core.on_offers(&[offer(2, "cpus:1;mem:64")], T0 + 5_000)).is_empty());
    assert!(core.wants_offers(T0 + 11_000));
    let again = launched(&core.on_offers(&[offer(3, "cpus:1;mem:64")], T0 + 11_000));
    assert_eq!(again[0].task_id.as_str(), "batch.1.0.2");
    assert_eq!(again[0].command.environment["TESSERA_ATTEMPT"], "2");
    finish(&mut core, "batch.1.0.2", M::TaskFinished, T0 + 12_000);
    assert_eq!(state(&core, id), JobState::Completed);
    assert_eq!(core.get(id).unwrap().tasks[0].failures, 1);
}

#[test]
fn retries_run_out_and_the_job_fails() {
    let mut core = Core::new(Limits::default());
    let mut r = req("bad");
    r.retries = Some(1);
    let id = core.submit(&r, T0).unwrap();
    launched(&core.on_offers(&[offer(1, "cpus:1;mem:64")], T0));
    finish(&mut core, "batch.1.0.1", M::TaskFailed, T0);
    launched(&core.on_offers(&[offer(2, "cpus:1;mem:64")], T0 + 60_000));
    finish(&mut core, "batch.1.0.2", M::TaskFailed, T0 + 61_000);
    assert_eq!(state(&core, id), JobState::Failed);
    assert_eq!(core.get(id).unwrap().tasks[0].exit_code, Some(1));
}

#[test]
fn a_time_limit_kills_the_task_and_ends_it_timeout() {
    let mut core = Core::new(Limits::default());
    let mut r = req("sleep 100");
    r.time = Some(tessera_batch::spec::Quantity::Text("30s".into()));
    r.retries = Some(3);
    let id = core.submit(&r, T0).unwrap();
    launched(&core.on_offers(&[offer(1, "cpus:1;mem:64")], T0));
    core.on_update(&status("batch.1.0.1", M::TaskRunning), T0 + 1_000);
    assert!(
        kills(&core.on_tick(T0 + 30_000)).is_empty(),
        "29 s of running"
    );
    assert_eq!(kills(&core.on_tick(T0 + 31_000)), ["batch.1.0.1"]);
    assert!(
        kills(&core.on_tick(T0 + 32_000)).is_empty(),
        "not resent at once"
    );
    assert_eq!(kills(&core.on_tick(T0 + 41_000)), ["batch.1.0.1"], "resent");
    core.on_update(&status("batch.1.0.1", M::TaskKilled), T0 + 42_000);
    assert_eq!(
        state(&core, id),
        JobState::Timeout,
        "not retried: a timeout is final"
    );
}

#[test]
fn a_dependency_chain_with_a_failing_middle_job() {
    let mut core = Core::new(Limits::default());
    let a = core.submit(&req("a"), T0).unwrap();
    let dep = |kind: &str, on: JobId| {
        let mut r = req(kind);
        r.dependency = Some(format!("{kind}:{on}"));
        r
    };
    let b = core.submit(&dep("afterok", a), T0).unwrap();
    let c = core.submit(&dep("afterok", b), T0).unwrap();
    let d = core.submit(&dep("afterany", b), T0).unwrap();
    let e = core.submit(&dep("afternotok", b), T0).unwrap();
    let f = core.submit(&dep("afterok", c), T0).unwrap();
    // Only A may start.
    let t = launched(&core.on_offers(&[offer(1, "cpus:8;mem:1024")], T0));
    assert_eq!(t.len(), 1);
    finish(&mut core, t[0].task_id.as_str(), M::TaskFinished, T0);
    let t = launched(&core.on_offers(&[offer(2, "cpus:8;mem:1024")], T0));
    assert_eq!(parse_task_id(t[0].task_id.as_str()).unwrap().0, b);
    finish(&mut core, t[0].task_id.as_str(), M::TaskFailed, T0);
    assert_eq!(state(&core, b), JobState::Failed);
    // C can never run, and neither can F, which waits on C.
    for never in [c, f] {
        assert_eq!(state(&core, never), JobState::Cancelled);
        let reason = core.get(never).unwrap().reason.clone().unwrap();
        assert!(reason.starts_with("DependencyNeverSatisfied"), "{reason}");
    }
    let t = launched(&core.on_offers(&[offer(3, "cpus:8;mem:1024")], T0));
    let started: Vec<JobId> = t
        .iter()
        .map(|t| parse_task_id(t.task_id.as_str()).unwrap().0)
        .collect();
    assert_eq!(started, [d, e]);
}

#[test]
fn bad_submissions_change_nothing() {
    let mut core = Core::new(Limits::default());
    let mut r = req("x");
    r.dependency = Some("afterok:99".into());
    match core.submit(&r, T0) {
        Err(Error::Invalid { field, message }) => {
            assert_eq!(field, "dependency[0]");
            assert!(message.contains("99"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(core.take_changes().is_empty());
    assert_eq!(core.next_id(), JobId(1));
    assert_eq!(core.jobs().count(), 0);
}

#[test]
fn cancelling() {
    let mut core = Core::new(Limits::default());
    let run = core.submit(&req("run"), T0).unwrap();
    let wait = core.submit(&req("wait"), T0).unwrap();
    launched(&core.on_offers(&[offer(1, "cpus:1;mem:64")], T0));
    core.cancel(wait, T0).unwrap();
    assert_eq!(state(&core, wait), JobState::Cancelled);
    core.cancel(run, T0).unwrap();
    assert_eq!(kills(&core.on_tick(T0)), ["batch.1.0.1"]);
    core.on_update(&status("batch.1.0.1", M::TaskKilled), T0);
    assert_eq!(state(&core, run), JobState::Cancelled);
    assert!(matches!(core.cancel(run, T0), Err(Error::Conflict { .. })));
    assert!(matches!(
        core.cancel(JobId(77), T0),
        Err(Error::UnknownJob(_))
    ));
}

#[test]
fn holds_and_releases() {
    let mut core = Core::new(Limits::default());
    let mut r = req("x");
    r.hold = true;
    let id = core.submit(&r, T0).unwrap();
    assert!(!core.wants_offers(T0));
    core.release(id).unwrap();
    assert!(core.wants_offers(T0));
    core.hold(id).unwrap();
    assert!(!core.wants_offers(T0));
    core.release(id).unwrap();
    assert!(matches!(core.release(id), Err(Error::Conflict { .. })));
}

#[test]
fn a_task_lost_before_it_ran_is_relaunched_without_costing_a_retry() {
    let mut core = Core::new(Limits::default());
    let id = core.submit(&req("x"), T0).unwrap();
    launched(&core.on_offers(&[offer(1, "cpus:1;mem:64")], T0));
    core.on_update(&status("batch.1.0.1", M::TaskDropped), T0);
    let t = &core.get(id).unwrap().tasks[0];
    assert_eq!((t.state, t.failures), (TaskState::Pending, 0));
    let again = launched(&core.on_offers(&[offer(2, "cpus:1;mem:64")], T0));
    assert_eq!(again[0].task_id.as_str(), "batch.1.0.2");
    // A late RUNNING from the first attempt is a straggler: killed, not counted.
    let a = core.on_update(&status("batch.1.0.1", M::TaskRunning), T0);
    assert_eq!(kills(&a), ["batch.1.0.1"]);
    assert_eq!(core.get(id).unwrap().tasks[0].attempt, 2);
}

#[test]
fn a_restart_from_the_store_resumes_without_running_anything_twice() {
    let dir = std::env::temp_dir().join(format!("tessera-batch-store-{}", std::process::id()));
    let path = dir.join("batch.sqlite");
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&path).unwrap();
    let mut core = Core::new(Limits::default());
    let mut r = req("x");
    r.array = Some("0-3".into());
    let id = core.submit(&r, T0).unwrap();
    let started = launched(&core.on_offers(&[offer(1, "cpus:2;mem:128")], T0));
    assert_eq!(started.len(), 2);
    finish(&mut core, "batch.1.0.1", M::TaskFinished, T0);
    let changes = core.take_changes();
    store.write(&core, &changes).unwrap();
    drop(store);

    // "Crash": a new core from the store.
    let store = Store::open(&path).unwrap();
    let mut back = Core::restore(Limits::default(), store.load().unwrap());
    assert_eq!(
        back.get(id),
        core.get(id),
        "the store holds exactly the state"
    );
    let rec = back.on_subscribed();
    let Action::Reconcile(ids) = &rec[0] else {
        panic!("{rec:?}")
    };
    assert_eq!(ids.len(), 1, "only the launched, unfinished task: {ids:?}");
    assert_eq!(ids[0].0.as_str(), "batch.1.1.1");
    // The remaining two start; index 0 (done) and 1 (running) do not start again.
    let more = launched(&back.on_offers(&[offer(2, "cpus:8;mem:1024")], T0));
    let names: Vec<&str> = more.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(names, ["batch.1.2.1", "batch.1.3.1"]);
    assert_eq!(back.next_id(), JobId(2));
    let _ = std::fs::remove_dir_all(&dir);
}

fn cron(expr: &str, tz: &str) -> JobRequest {
    let mut r = req("report");
    r.schedule = Some(ScheduleSpec {
        cron: Some(expr.into()),
        timezone: Some(tz.into()),
        ..Default::default()
    });
    r
}

/// Ticks every minute over `[from, to)` and returns the fire times (as started jobs).
fn run_clock(core: &mut Core, from: i64, to: i64) -> Vec<String> {
    let mut fired = Vec::new();
    let mut now = from;
    while now < to {
        let before = core.next_id();
        core.on_tick(now);
        for n in before.0..core.next_id().0 {
            let j = core.get(JobId(n)).unwrap();
            fired.push(j.spec.env["TESSERA_SCHEDULED_AT"].clone());
        }
        now += 60_000;
    }
    fired
}

#[test]
fn cron_across_daylight_saving_changes_fires_once_a_day() {
    // 2026-03-07T12:00Z .. 2026-03-10T12:00Z: New York springs forward on 03-08 at 02:00.
    let from = chrono::DateTime::parse_from_rfc3339("2026-03-07T12:00:00Z")
        .unwrap()
        .timestamp_millis();
    let mut core = Core::new(Limits::default());
    let sched = core
        .submit(&cron("30 2 * * *", "America/New_York"), from)
        .unwrap();
    assert_eq!(state(&core, sched), JobState::Scheduled);
    let fired = run_clock(&mut core, from, from + 3 * 86_400_000);
    // 02:30 does not exist on 03-08: it runs at 03:00 EDT (07:00Z), once.
    assert_eq!(
        fired,
        [
            "2026-03-08T07:00:00Z",
            "2026-03-09T06:30:00Z",
            "2026-03-10T06:30:00Z"
        ]
    );

    // Fall back on 2026-11-01: 01:30 happens twice, the job runs once.
    let from = chrono::DateTime::parse_from_rfc3339("2026-10-31T12:00:00Z")
        .unwrap()
        .timestamp_millis();
    let mut core = Core::new(Limits::default());
    core.submit(&cron("30 1 * * *", "America/New_York"), from)
        .unwrap();
    let fired = run_clock(&mut core, from, from + 2 * 86_400_000);
    assert_eq!(fired, ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]);
}

#[test]
fn a_forbid_schedule_skips_fires_while_its_run_is_active() {
    let from = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .timestamp_millis();
    let mut core = Core::new(Limits::default());
    let mut r = cron("*/5 * * * *", "UTC");
    if let Some(s) = r.schedule.as_mut() {
        s.concurrency = tessera_batch::schedule::ConcurrencyPolicy::Forbid;
    }
    core.submit(&r, from).unwrap();
    let fired = run_clock(&mut core, from, from + 30 * 60_000);
    // The first run (00:05) is never launched, so it stays active: no later fire starts.
    assert_eq!(fired, ["2026-01-01T00:05:00Z"]);
}

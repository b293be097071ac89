//! Property tests of the batch core: whatever the order of submissions, offers, status
//! updates and ticks, no task index ever has two live attempts, an array never exceeds its
//! cap, an offer is never over-committed, and a finished job never launches again.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use tessera_batch::core::Core;
use tessera_batch::model::parse_task_id;
use tessera_batch::spec::Quantity;
use tessera_batch::{JobId, JobRequest, Limits};
use tessera_framework::{Action, Offer};
use tessera_types::parse::parse_resources;
use tessera_types::{
    AgentId, OfferId, Resources, TaskId, TaskState as M, TaskStatus, UpdateSource,
};

#[derive(Debug, Clone)]
enum Op {
    Submit {
        n: u32,
        cap: Option<u32>,
        retries: u32,
        cpus: u8,
    },
    Offer {
        cpus: u8,
    },
    /// Update the `pick`-th live task with state number `state`.
    Update {
        pick: usize,
        state: u8,
    },
    Tick {
        secs: u16,
    },
    Cancel {
        job: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u32..6, prop::option::of(1u32..3), 0u32..3, 1u8..3).prop_map(
            |(n, cap, retries, cpus)| Op::Submit {
                n,
                cap,
                retries,
                cpus
            }
        ),
        (0u8..6).prop_map(|cpus| Op::Offer { cpus }),
        (0usize..8, 0u8..8).prop_map(|(pick, state)| Op::Update { pick, state }),
        (0u16..120).prop_map(|secs| Op::Tick { secs }),
        (1u8..6).prop_map(|job| Op::Cancel { job }),
    ]
}

const STATES: [M; 8] = [
    M::TaskRunning,
    M::TaskFinished,
    M::TaskFailed,
    M::TaskKilled,
    M::TaskLost,
    M::TaskRunning,
    M::TaskError,
    M::TaskFinished,
];

fn status(task: &str, state: M) -> TaskStatus {
    TaskStatus {
        task_id: TaskId::new(task).unwrap(),
        state,
        reason: None,
        message: None,
        source: UpdateSource::SourceAgent,
        agent_id: Some(AgentId::new("a").unwrap()),
        framework_id: None,
        uuid: None,
        timestamp: 0.0,
        exit_code: None,
        healthy: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn no_double_runs_no_overcommit_caps_hold(ops in prop::collection::vec(op(), 1..80)) {
        let mut core = Core::new(Limits::default());
        let mut now = 1_000_000i64;
        // Launched and not yet terminal: task id → (job, index).
        let mut live: BTreeMap<String, (JobId, u32)> = BTreeMap::new();
        let mut caps: BTreeMap<JobId, Option<u32>> = BTreeMap::new();
        let mut offer_n = 0;
        for op in ops {
            let mut actions = Vec::new();
            match op {
                Op::Submit { n, cap, retries, cpus } => {
                    let req = JobRequest {
                        command: Some("x".into()),
                        cpus: Some(cpus as f64),
                        mem: Some(Quantity::Number(16.0)),
                        array: (n > 1).then(|| match cap {
                            Some(c) => format!("0-{}%{c}", n - 1),
                            None => format!("0-{}", n - 1),
                        }),
                        retries: Some(retries),
                        backoff: Some(Quantity::Number(5.0)),
                        ..Default::default()
                    };
                    let id = core.submit(&req, now).unwrap();
                    caps.insert(id, if n > 1 { cap } else { None });
                }
                Op::Offer { cpus } => {
                    offer_n += 1;
                    let res: Resources = parse_resources(&format!("cpus:{cpus};mem:64")).unwrap();
                    let o = Offer {
                        id: OfferId::new(format!("o{offer_n}")).unwrap(),
                        agent_id: AgentId::new("a").unwrap(),
                        hostname: "h".into(),
                        role: Some("batch".into()),
                        resources: res.clone(),
                        attributes: BTreeMap::new(),
                    };
                    actions = core.on_offers(&[o], now);
                    let mut used = Resources::default();
                    for a in &actions {
                        if let Action::Launch { tasks, .. } = a {
                            for t in tasks {
                                used.add_assign(&t.resources).unwrap();
                            }
                        }
                    }
                    prop_assert!(res.contains(&used), "offer {res} over-committed by {used}");
                }
                Op::Update { pick, state } => {
                    if let Some(id) = live.keys().nth(pick % live.len().max(1)).cloned() {
                        let st = STATES[state as usize % STATES.len()];
                        actions = core.on_update(&status(&id, st), now);
                        if st.is_terminal() {
                            live.remove(&id);
                        }
                    }
                }
                Op::Tick { secs } => {
                    now += secs as i64 * 1000;
                    actions = core.on_tick(now);
                }
                Op::Cancel { job } => {
                    let _ = core.cancel(JobId(job as u64), now);
                }
            }
            for a in &actions {
                if let Action::Launch { tasks, .. } = a {
                    for t in tasks {
                        let (job, index, _) = parse_task_id(t.task_id.as_str()).unwrap();
                        let j = core.get(job).unwrap();
                        prop_assert!(!j.state.is_terminal(), "finished job {job} launched again");
                        prop_assert!(
                            !live.values().any(|v| *v == (job, index)),
                            "job {job} index {index} launched while an attempt is live"
                        );
                        live.insert(t.task_id.to_string(), (job, index));
                    }
                }
            }
            for (job, cap) in &caps {
                if let Some(cap) = cap {
                    let n = live.values().filter(|(j, _)| j == job).count();
                    prop_assert!(n <= *cap as usize, "job {job}: {n} live tasks over cap {cap}");
                }
            }
            // The core's own view agrees: a slot is active iff we hold it live.
            let active: BTreeSet<(JobId, u32)> = core
                .jobs()
                .flat_map(|j| j.tasks.iter().filter(|t| t.state.is_active()).map(move |t| (j.id, t.index)))
                .collect();
            let ours: BTreeSet<(JobId, u32)> = live.values().copied().collect();
            prop_assert_eq!(active, ours);
        }
    }
}

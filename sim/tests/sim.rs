//! Small simulations that assert invariants, not timings: nothing over-committed, every
//! task placed and finished, fairness within bounds, and the same seed giving the same
//! decisions.

use std::time::Duration;

use tessera_sim::{Profile, SimConfig, run_blocking};

fn small(profile: Profile) -> SimConfig {
    SimConfig {
        agents: 10,
        agent_resources: "cpus:8;mem:32768".into(),
        frameworks: 4,
        tasks: 2_000,
        profile,
        duration: Duration::from_secs(600),
        ..Default::default()
    }
}

#[test]
fn a_batch_workload_places_and_finishes_every_task_without_overcommitting() {
    let r = run_blocking(small(Profile::Batch)).unwrap();
    assert_eq!(r.tasks_placed, 2_000);
    assert_eq!(r.tasks_finished, 2_000);
    assert_eq!(r.overcommits, 0);
    assert!(r.allocation_cycles > 0);
    assert!(r.starved_roles.is_empty());
    assert_eq!((r.agent_tasks_run, r.agent_tasks_finished), (2_000, 2_000));
    assert_eq!((r.processes, r.clock.as_str()), (0, "virtual"));
    assert_eq!(r.agent_processes_peak_rss_bytes, None);
}

#[test]
fn the_same_seed_gives_the_same_decisions() {
    let a = run_blocking(small(Profile::Mix)).unwrap();
    let b = run_blocking(small(Profile::Mix)).unwrap();
    assert_eq!(a.decisions_digest, b.decisions_digest);
    assert_eq!(a.tasks_placed, b.tasks_placed);
    assert_eq!(a.allocation_cycles, b.allocation_cycles);
    let mut other = small(Profile::Mix);
    other.seed = 2;
    let c = run_blocking(other).unwrap();
    assert_eq!(c.overcommits, 0);
}

#[test]
fn gangs_are_launched_whole() {
    let mut cfg = small(Profile::Mpi);
    cfg.tasks = 800; // 100 gangs of 8 over 4 frameworks
    let r = run_blocking(cfg).unwrap();
    assert_eq!(r.tasks_placed % 8, 0);
    assert_eq!(r.tasks_finished, 800);
    assert_eq!(r.overcommits, 0);
}

#[test]
fn weighted_roles_get_weighted_shares_and_a_joining_role_converges() {
    let cfg = SimConfig {
        agents: 8,
        agent_resources: "cpus:8;mem:32768".into(),
        frameworks: 8,
        roles: 4,
        weights: vec![1.0, 2.0, 3.0, 4.0],
        profile: Profile::Fairness,
        duration: Duration::from_secs(40),
        ..Default::default()
    };
    let r = run_blocking(cfg).unwrap();
    let jain = r.jain_index.unwrap();
    assert!(jain >= 0.98, "Jain's index {jain} below 0.98: {r:?}");
    assert!(r.max_share_gap.unwrap() < 0.1, "{r:?}");
    let conv = r.convergence_cycles.expect("the last role converged");
    assert!(conv <= 10, "{conv} cycles to converge");
    assert!(r.starved_roles.is_empty());
    assert_eq!(r.overcommits, 0);
}

#[test]
fn frameworks_that_decline_everything_get_no_tasks_and_allocation_keeps_running() {
    let mut cfg = small(Profile::Batch);
    cfg.decline_all = true;
    cfg.duration = Duration::from_secs(20);
    let r = run_blocking(cfg).unwrap();
    assert_eq!(r.tasks_placed, 0);
    assert!(r.offers_declined > 0);
    assert!(r.allocation_cycles >= 3, "{r:?}");
}

#[test]
fn bad_settings_name_the_field() {
    let mut cfg = small(Profile::Batch);
    cfg.roles = 9;
    let e = run_blocking(cfg).unwrap_err().to_string();
    assert!(e.contains("roles"), "{e}");
    let mut cfg = small(Profile::Batch);
    cfg.weights = vec![1.0, -2.0];
    assert!(
        run_blocking(cfg)
            .unwrap_err()
            .to_string()
            .contains("weights")
    );
}

#[test]
fn process_counts_out_of_range_are_refused() {
    for (agents, processes) in [(10, 0), (10, 11)] {
        let mut cfg = small(Profile::Batch);
        cfg.agents = agents;
        cfg.processes = Some(processes);
        let e = run_blocking(cfg).unwrap_err().to_string();
        assert!(e.contains("processes"), "{e}");
    }
}

#[test]
fn an_agent_process_that_dies_fails_the_run() {
    // `false` exits at once instead of registering its agents.
    let mut cfg = small(Profile::Batch);
    cfg.processes = Some(2);
    cfg.agent_exe = Some("false".into());
    let e = run_blocking(cfg).unwrap_err().to_string();
    assert!(e.contains("agent process") && e.contains("exited"), "{e}");
}

#[test]
fn a_role_with_a_quota_gets_its_guarantee_before_weights_share_the_rest() {
    // 8 agents x 8 cpus = 64 cpus; r0 has the smallest weight but a guarantee of half.
    let cfg = SimConfig {
        agents: 8,
        agent_resources: "cpus:8;mem:32768".into(),
        frameworks: 8,
        roles: 4,
        weights: vec![1.0, 2.0, 3.0, 4.0],
        profile: Profile::Fairness,
        duration: Duration::from_secs(30),
        quotas: vec![(0, "cpus:32".into())],
        ..Default::default()
    };
    let r = run_blocking(cfg).unwrap();
    let r0 = r.role_shares["r0"];
    assert!(
        r0 >= 0.45,
        "r0 holds {r0} of the cpus, below its 0.5 guarantee: {r:?}"
    );
    assert!(r.starved_roles.is_empty(), "{r:?}");
    assert_eq!(r.overcommits, 0);
}

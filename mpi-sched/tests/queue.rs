//! Examples of the gang queue rules, one rule each.

mod common;

use std::time::Duration;

use common::{cluster, launched, offer, spec};
use tessera_framework::Action;
use tessera_mpi::{GangId, GangQueue, GangState, Layout, QueueConfig, Waiting};
use tessera_types::Time;

fn t(ms: u64) -> Time {
    Time::from_millis(ms)
}

fn queue() -> GangQueue {
    GangQueue::new(QueueConfig {
        hold: Duration::from_millis(1000),
        ..QueueConfig::default()
    })
}

fn declined(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Decline { offer_ids, .. } => Some(offer_ids.iter().map(|o| o.to_string())),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn a_gang_launches_whole_with_one_launch_per_agent() {
    let mut q = queue();
    let g = q.submit(spec(4, "cpus:1", Layout::Ppn(2))).unwrap();
    let acts = q.on_offers(cluster("", 3, "cpus:4"), t(0));
    let l = launched(&acts);
    assert_eq!(l.len(), 4);
    assert!(l.iter().all(|(id, ..)| *id == g));
    let launches: Vec<&Action> = acts
        .iter()
        .filter(|a| matches!(a, Action::Launch { .. }))
        .collect();
    assert_eq!(launches.len(), 2);
    if let Action::Launch { tasks, .. } = launches[1] {
        assert_eq!(tasks[0].name, "rank-2");
        assert_eq!(tasks[0].task_id.as_str(), format!("mpi.{g}.2"));
        assert_eq!(tasks[0].command.environment["PMI_RANK"], "2");
        assert_eq!(tasks[0].command.environment["PMI_SIZE"], "4");
    }
    // The unused agent's offer is declined: nobody else waits.
    assert_eq!(declined(&acts), vec!["o2"]);
    assert!(matches!(q.gang(g).unwrap().state, GangState::Running(_)));
    assert!(!q.wants_offers());
}

#[test]
fn offers_accumulate_until_the_gang_fits() {
    let mut q = queue();
    let g = q.submit(spec(6, "cpus:1", Layout::Pack)).unwrap();
    let acts = q.on_offers(vec![offer("o1", "a1", "cpus:4")], t(0));
    assert!(acts.is_empty(), "held, not launched: {acts:?}");
    match &q.gang(g).unwrap().state {
        GangState::Waiting(Waiting::Unplaceable(u)) => assert_eq!(u.placeable, 4),
        s => panic!("{s:?}"),
    }
    let acts = q.on_offers(vec![offer("o2", "a2", "cpus:4")], t(500));
    assert_eq!(launched(&acts).len(), 6);
}

#[test]
fn held_offers_are_released_after_the_hold_window() {
    let mut q = queue();
    q.submit(spec(6, "cpus:1", Layout::Pack)).unwrap();
    assert!(
        q.on_offers(vec![offer("o1", "a1", "cpus:4")], t(0))
            .is_empty()
    );
    assert!(q.on_tick(t(999)).is_empty());
    let acts = q.on_tick(t(1000));
    assert_eq!(declined(&acts), vec!["o1"]);
    assert_eq!(q.held().count(), 0);
    assert!(q.wants_offers());
}

#[test]
fn two_gangs_that_do_not_fit_together_run_one_after_the_other() {
    let mut q = queue();
    let a = q.submit(spec(6, "cpus:1", Layout::Pack)).unwrap();
    let b = q.submit(spec(6, "cpus:1", Layout::Pack)).unwrap();
    let acts = q.on_offers(cluster("x", 2, "cpus:4"), t(0));
    let l = launched(&acts);
    assert!(l.iter().all(|(g, ..)| *g == a) && l.len() == 6);
    // The remainder of the cluster (2 cpus) is declined by Mesos' accept; b waits.
    assert!(matches!(q.gang(b).unwrap().state, GangState::Waiting(_)));
    q.gang_finished(a).unwrap();
    let acts = q.on_offers(cluster("y", 2, "cpus:4"), t(10));
    assert_eq!(launched(&acts).iter().filter(|(g, ..)| *g == b).count(), 6);
}

#[test]
fn small_gangs_may_not_take_what_the_large_head_accumulates() {
    let mut q = queue();
    let big = q.submit(spec(8, "cpus:1", Layout::Pack)).unwrap();
    let small = q.submit(spec(1, "cpus:1", Layout::Pack)).unwrap();
    let acts = q.on_offers(vec![offer("o1", "a1", "cpus:4")], t(0));
    assert!(launched(&acts).is_empty());
    assert_eq!(
        q.gang(small).unwrap().state,
        GangState::Waiting(Waiting::BehindHead(big))
    );
    // A 0.5-cpu leftover the head cannot use (1 cpu per rank) may be backfilled.
    let tiny = q.submit(spec(1, "cpus:0.5", Layout::Pack)).unwrap();
    let acts = q.on_offers(vec![offer("o2", "a2", "cpus:0.5")], t(1));
    let l = launched(&acts);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].0, tiny);
    let acts = q.on_offers(vec![offer("o3", "a3", "cpus:4")], t(2));
    assert!(launched(&acts).iter().all(|(g, ..)| *g == big));
    assert_eq!(launched(&acts).len(), 8);
}

#[test]
fn higher_priority_goes_first_then_submission_order() {
    let mut q = queue();
    let low = q.submit(spec(4, "cpus:1", Layout::Pack)).unwrap();
    let mut hi = spec(4, "cpus:1", Layout::Pack);
    hi.priority = 10;
    let hi = q.submit(hi).unwrap();
    let low2 = q.submit(spec(4, "cpus:1", Layout::Pack)).unwrap();
    assert_eq!(q.waiting(), vec![hi, low, low2]);
    let acts = q.on_offers(vec![offer("o1", "a1", "cpus:4")], t(0));
    assert!(launched(&acts).iter().all(|(g, ..)| *g == hi));
}

#[test]
fn rescinded_offers_are_forgotten_and_cancel_kills_running_ranks() {
    let mut q = queue();
    let g = q.submit(spec(6, "cpus:1", Layout::Pack)).unwrap();
    q.on_offers(vec![offer("o1", "a1", "cpus:4")], t(0));
    q.on_rescind(&"o1".parse().unwrap());
    assert_eq!(q.held().count(), 0);
    let acts = q.on_offers(vec![offer("o2", "a2", "cpus:4")], t(1));
    assert!(acts.is_empty());
    let acts = q.on_offers(vec![offer("o3", "a3", "cpus:4")], t(2));
    assert_eq!(launched(&acts).len(), 6);
    let kills = q.cancel(g, t(3)).unwrap();
    assert_eq!(kills.len(), 6);
    q.gang_finished(g).unwrap();
    assert!(q.gang_finished(g).is_err());
    assert!(q.cancel(GangId(99), t(3)).is_err());
}

#[test]
fn submit_validates_the_spec() {
    let mut q = queue();
    let e = q.submit(spec(3, "cpus:1", Layout::Ppn(0))).unwrap_err();
    assert_eq!(e.field(), Some("layout.ppn"));
}

//! Mesos' maintenance rules, one by one, and a property test of what must never happen.

use proptest::prelude::*;

use super::*;

fn host(h: &str) -> MachineId {
    MachineId::new("m", Some(h), None).unwrap()
}

fn window(hosts: &[&str], start_ns: i64) -> Window {
    Window {
        machines: hosts.iter().map(|h| host(h)).collect(),
        unavailability: Unavailability {
            start_ns,
            duration: Some(std::time::Duration::from_secs(3600)),
        },
    }
}

fn schedule(windows: Vec<Window>) -> Schedule {
    Schedule { windows }
}

fn err_field(e: Error) -> String {
    e.field().unwrap().to_string()
}

#[test]
fn machine_ids_need_a_hostname_or_an_ip_and_hostnames_are_lowercased() {
    let e = MachineId::new("machines[0]", None, Some("")).unwrap_err();
    assert_eq!(e.field(), Some("machines[0]"));
    assert!(
        e.to_string().contains("both 'hostname' and 'ip' are empty"),
        "{e}"
    );
    let e = MachineId::new("m", None, Some("10.0.0.x")).unwrap_err();
    assert_eq!(e.field(), Some("m.ip"));
    let e = MachineId::new("m", Some("a b"), None).unwrap_err();
    assert_eq!(e.field(), Some("m.hostname"));
    let m = MachineId::new("m", Some("Host-1.Example"), Some("10.0.0.1")).unwrap();
    assert_eq!(m.hostname.as_deref(), Some("host-1.example"));
    assert_eq!(
        m.to_string(),
        r#"{"hostname":"host-1.example","ip":"10.0.0.1"}"#
    );
}

#[test]
fn a_machine_covers_the_agents_matching_every_part_it_names() {
    let ip: IpAddr = "10.0.0.1".parse().unwrap();
    let other: IpAddr = "10.0.0.2".parse().unwrap();
    assert!(host("h1").covers("H1", Some(other)));
    assert!(host("h1").covers("h1", None));
    assert!(!host("h1").covers("h2", Some(ip)));
    let by_ip = MachineId::new("m", None, Some("10.0.0.1")).unwrap();
    assert!(by_ip.covers("anything", Some(ip)));
    assert!(!by_ip.covers("anything", None));
    let both = MachineId::new("m", Some("h1"), Some("10.0.0.1")).unwrap();
    assert!(both.covers("h1", Some(ip)));
    assert!(!both.covers("h1", Some(other)));
}

#[test]
fn negative_durations_are_refused() {
    let e = unavailability("w.unavailability", 5, Some(-1)).unwrap_err();
    assert_eq!(e.field(), Some("w.unavailability.duration"));
    let u = unavailability("w", 5, Some(7)).unwrap();
    assert_eq!(u.duration, Some(std::time::Duration::from_nanos(7)));
    assert_eq!(unavailability("w", -5, None).unwrap().start_ns, -5);
}

#[test]
fn schedule_updates_follow_mesos_rules() {
    let m = Maintenance::default();
    let e = m
        .update_schedule("schedule", schedule(vec![window(&[], 1)]))
        .unwrap_err();
    assert_eq!(err_field(e), "schedule.windows[0].machine_ids");
    let e = m
        .update_schedule(
            "",
            schedule(vec![window(&["a"], 1), window(&["b", "A"], 2)]),
        )
        .unwrap_err();
    assert_eq!(err_field(e.clone()), "windows[1].machine_ids[1]");
    assert!(e.to_string().contains("already in windows[0]"), "{e}");

    let m = m
        .update_schedule(
            "",
            schedule(vec![window(&["a", "b"], 1), window(&["c"], 2)]),
        )
        .unwrap();
    assert_eq!(m.mode(&host("a")), MachineMode::Draining);
    assert_eq!(m.mode(&host("z")), MachineMode::Up);
    let m = m.start("machines", &[host("a")]).unwrap();
    assert_eq!(m.mode(&host("a")), MachineMode::Down);
    // A DOWN machine may not be dropped, but may move to another window.
    let e = m
        .update_schedule("", schedule(vec![window(&["b"], 1)]))
        .unwrap_err();
    assert_eq!(err_field(e.clone()), "windows");
    assert!(e.to_string().contains("STOP_MAINTENANCE"), "{e}");
    let moved = m
        .update_schedule("", schedule(vec![window(&["b"], 1), window(&["a"], 9)]))
        .unwrap();
    assert_eq!(moved.mode(&host("a")), MachineMode::Down);
}

#[test]
fn start_and_stop_only_from_the_right_mode() {
    let m = Maintenance::default()
        .update_schedule("", schedule(vec![window(&["a", "b"], 1)]))
        .unwrap();
    let e = m.start("start_maintenance.machines", &[]).unwrap_err();
    assert_eq!(err_field(e), "start_maintenance.machines");
    let e = m.start("machines", &[host("a"), host("zz")]).unwrap_err();
    assert_eq!(err_field(e.clone()), "machines[1]");
    assert!(
        e.to_string()
            .contains(r#"'{"hostname":"zz"}' is not part of a maintenance schedule"#),
        "{e}"
    );
    let e = m.start("machines", &[host("a"), host("a")]).unwrap_err();
    assert!(e.to_string().contains("more than once"), "{e}");
    let e = m.stop("machines", &[host("a")]).unwrap_err();
    assert!(e.to_string().contains("is not in DOWN mode"), "{e}");

    let down = m.start("machines", &[host("a")]).unwrap();
    let e = down.start("machines", &[host("a")]).unwrap_err();
    assert!(e.to_string().contains("DOWN already"), "{e}");
    let up = down.stop("machines", &[host("a")]).unwrap();
    assert_eq!(up.mode(&host("a")), MachineMode::Up);
    assert_eq!(up.schedule, schedule(vec![window(&["b"], 1)]));
    let both = m.start("machines", &[host("a"), host("b")]).unwrap();
    let empty = both.stop("machines", &[host("b"), host("a")]).unwrap();
    assert!(
        empty.schedule.windows.is_empty(),
        "an emptied window is dropped"
    );
    assert_eq!(empty, Maintenance::default());
}

#[test]
fn agents_take_the_mode_of_their_machine() {
    let m = Maintenance::default()
        .update_schedule("", schedule(vec![window(&["a"], 1), window(&["b"], 2)]))
        .unwrap();
    assert_eq!(
        m.agent("A", None),
        AgentMaintenance::Draining(window(&["a"], 1).unavailability)
    );
    assert_eq!(
        m.agent("b", None),
        AgentMaintenance::Draining(window(&["b"], 2).unavailability)
    );
    assert_eq!(m.agent("c", None), AgentMaintenance::Up);
    let m = m.start("machines", &[host("b")]).unwrap();
    assert_eq!(m.agent("b", None), AgentMaintenance::Down(host("b")));
}

#[derive(Debug, Clone)]
enum Op {
    Update(Vec<Vec<u8>>),
    Start(Vec<u8>),
    Stop(Vec<u8>),
}

fn hosts(ix: &[u8]) -> Vec<MachineId> {
    ix.iter().map(|i| host(&format!("h{i}"))).collect()
}

fn op() -> impl Strategy<Value = Op> {
    let machines = || proptest::collection::vec(0u8..6, 0..4);
    prop_oneof![
        proptest::collection::vec(machines(), 0..4).prop_map(Op::Update),
        machines().prop_map(Op::Start),
        machines().prop_map(Op::Stop),
    ]
}

fn invariants(m: &Maintenance) {
    let all: Vec<&MachineId> = m.schedule.machines().collect();
    let unique: BTreeSet<&MachineId> = all.iter().copied().collect();
    assert_eq!(all.len(), unique.len(), "a machine in two windows: {m:?}");
    assert!(
        m.schedule.windows.iter().all(|w| !w.machines.is_empty()),
        "an empty window: {m:?}"
    );
    assert!(
        m.down.iter().all(|d| m.schedule.contains(d)),
        "a DOWN machine outside the schedule: {m:?}"
    );
}

proptest! {
    /// Whatever operators ask, in any order: no machine is ever in two windows, no window is
    /// empty, no DOWN machine leaves the schedule except by STOP_MAINTENANCE, and a machine
    /// brought up is UP.
    #[test]
    fn accepted_changes_never_break_the_invariants(ops in proptest::collection::vec(op(), 1..25)) {
        let mut m = Maintenance::default();
        for op in ops {
            let before = m.clone();
            let next = match &op {
                Op::Update(ws) => m.update_schedule("", schedule(
                    ws.iter().enumerate().map(|(i, w)| Window {
                        machines: hosts(w),
                        unavailability: Unavailability { start_ns: i as i64, duration: None },
                    }).collect())),
                Op::Start(ix) => m.start("machines", &hosts(ix)),
                Op::Stop(ix) => m.stop("machines", &hosts(ix)),
            };
            if let Ok(next) = next {
                invariants(&next);
                match &op {
                    Op::Stop(ix) => {
                        for h in hosts(ix) {
                            prop_assert_eq!(next.mode(&h), MachineMode::Up);
                        }
                    }
                    _ => prop_assert!(before.down.is_subset(&next.down), "only STOP brings machines up"),
                }
                m = next;
            }
        }
    }
}

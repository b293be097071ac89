//! The driver against the scripted fake master: subscribe, redirects, retries, reconnects,
//! failover, acknowledgements, implicit reconciliation, declines, suppress/revive, teardown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tessera_api::mesos::scheduler::call::Type as C;
use tessera_framework::fake::{FakeMaster, RecordedCall, SubscribeReply, events};
use tessera_framework::{
    Action, Driver, DriverConfig, DriverHandle, Error, FrameworkIdStore, MemoryIdStore, Scheduler,
    SchedulerEvent, Time,
};
use tessera_types::{CommandInfo, FrameworkId, FrameworkInfo, Role, TaskId, TaskInfo, TaskState};

const WAIT: Duration = Duration::from_secs(5);

/// Records events; launches one task on the first offer it sees; kills `k` when told it
/// runs; tears down when `t` finishes.
#[derive(Clone, Default)]
struct Probe {
    seen: Arc<Mutex<Vec<SchedulerEvent>>>,
    idle: Arc<AtomicBool>,
    launched: bool,
}

impl Scheduler for Probe {
    fn on_event(&mut self, ev: &SchedulerEvent, _now: Time) -> Vec<Action> {
        self.seen.lock().unwrap().push(ev.clone());
        match ev {
            SchedulerEvent::Offers(offers) if !self.launched => {
                self.launched = true;
                let o = &offers[0];
                vec![Action::Launch {
                    offer_ids: vec![o.id.clone()],
                    tasks: vec![TaskInfo {
                        name: "t".into(),
                        task_id: TaskId::new("t").unwrap(),
                        agent_id: o.agent_id.clone(),
                        resources: tessera_types::parse::parse_resources("cpus:0.1").unwrap(),
                        command: CommandInfo::shell("true"),
                        executor_id: None,
                        kill_grace_ms: None,
                        container: None,
                        health_check: None,
                        executor: None,
                    }],
                }]
            }
            SchedulerEvent::Update(s)
                if s.task_id.as_str() == "k" && s.state == TaskState::TaskRunning =>
            {
                vec![Action::Kill {
                    task_id: s.task_id.clone(),
                    agent_id: s.agent_id.clone(),
                }]
            }
            SchedulerEvent::Update(s)
                if s.task_id.as_str() == "t" && s.state == TaskState::TaskFinished =>
            {
                vec![Action::Teardown]
            }
            _ => vec![],
        }
    }

    fn wants_offers(&self) -> bool {
        !self.idle.load(Ordering::SeqCst)
    }
}

fn config(master: String) -> DriverConfig {
    let fw = FrameworkInfo {
        id: None,
        name: "probe".into(),
        user: "u".into(),
        roles: vec![Role::new("eng").unwrap()],
        capabilities: vec![],
        failover_timeout_secs: 60.0,
        principal: None,
        hostname: None,
    };
    let mut c = DriverConfig::new(master, fw);
    c.backoff_min = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(100);
    c.subscribe_timeout = Duration::from_secs(5);
    c
}

type Running = tokio::task::JoinHandle<(Driver<Probe>, Result<(), Error>)>;

fn spawn(cfg: DriverConfig, probe: Probe, store: Arc<MemoryIdStore>) -> (Running, DriverHandle) {
    struct Shared(Arc<MemoryIdStore>);
    impl FrameworkIdStore for Shared {
        fn load(&self) -> tessera_framework::Result<Option<FrameworkId>> {
            self.0.load()
        }
        fn save(&self, id: &FrameworkId) -> tessera_framework::Result<()> {
            self.0.save(id)
        }
    }
    let mut d = Driver::new(cfg, probe).with_store(Shared(store));
    let h = d.handle();
    (
        tokio::spawn(async move {
            let r = d.run().await;
            (d, r)
        }),
        h,
    )
}

fn has(calls: &[RecordedCall], t: C) -> bool {
    calls.iter().any(|c| c.kind() == t)
}

#[tokio::test]
async fn subscribes_reconciles_and_acks_after_handling() {
    let m = FakeMaster::start().await;
    let store = Arc::new(MemoryIdStore::default());
    let probe = Probe::default();
    let (run, _h) = spawn(config(m.addr()), probe.clone(), store.clone());
    let s = m.next_stream(WAIT).await.expect("a subscription");
    let sub = s.subscribe.subscribe.as_ref().unwrap();
    assert_eq!(sub.framework_info.name, "probe");
    assert!(
        s.subscribe.framework_id.is_none(),
        "first subscription has no id"
    );
    assert!(s.send(&events::subscribed("fw-1", 10.0)));
    assert!(m.wait_for(WAIT, |c| has(c, C::Reconcile)).await);
    let rec = m.calls_of(C::Reconcile).remove(0);
    assert!(
        rec.call.reconcile.as_ref().unwrap().tasks.is_empty(),
        "implicit"
    );
    assert_eq!(rec.stream_id.as_deref(), Some(s.stream_id.as_str()));
    assert_eq!(rec.call.framework_id.as_ref().unwrap().value, "fw-1");
    assert_eq!(
        store.load().unwrap().unwrap().as_str(),
        "fw-1",
        "id persisted"
    );

    // An update the scheduler reacts to: its KILL goes out before the ACKNOWLEDGE.
    let uuid = *uuid::Uuid::new_v4().as_bytes();
    s.send(&events::update(
        "k",
        "a1",
        TaskState::TaskRunning,
        Some(uuid),
    ));
    assert!(m.wait_for(WAIT, |c| has(c, C::Acknowledge)).await);
    let kinds: Vec<C> = m.calls().iter().map(RecordedCall::kind).collect();
    let kill = kinds.iter().position(|k| *k == C::Kill).expect("KILL");
    let ack = kinds.iter().position(|k| *k == C::Acknowledge).unwrap();
    assert!(kill < ack, "ack after handling: {kinds:?}");
    let a = m
        .calls_of(C::Acknowledge)
        .remove(0)
        .call
        .acknowledge
        .unwrap();
    assert_eq!(
        (
            a.uuid.as_slice(),
            a.task_id.value.as_str(),
            a.agent_id.value.as_str()
        ),
        (&uuid[..], "k", "a1")
    );
    // Updates without a uuid (master-generated) are not acknowledged.
    s.send(&events::update("x", "a1", TaskState::TaskLost, None));
    s.send(&events::heartbeat());
    assert!(
        m.wait_for(WAIT, |_| probe
            .seen
            .lock()
            .unwrap()
            .contains(&SchedulerEvent::Tick))
            .await
    );
    assert_eq!(m.calls_of(C::Acknowledge).len(), 1);
    let seen = probe.seen.lock().unwrap().clone();
    assert!(
        matches!(&seen[0], SchedulerEvent::Subscribed { framework_id } if framework_id.as_str() == "fw-1")
    );
    run.abort();
}

#[tokio::test]
async fn follows_a_redirect_to_the_leader() {
    let leader = FakeMaster::start().await;
    let standby = FakeMaster::start().await;
    standby.push_subscribe_reply(SubscribeReply::Redirect(leader.addr()));
    let (run, _h) = spawn(config(standby.addr()), Probe::default(), Default::default());
    let s = leader
        .next_stream(WAIT)
        .await
        .expect("subscribed at the leader");
    s.send(&events::subscribed("fw-r", 10.0));
    assert!(
        leader.wait_for(WAIT, |c| has(c, C::Reconcile)).await,
        "calls go to the leader"
    );
    assert_eq!(standby.calls().len(), 1, "only the redirected SUBSCRIBE");
    run.abort();
}

#[tokio::test]
async fn retries_503_then_fails_over_with_its_id_after_the_stream_drops() {
    let m = FakeMaster::start().await;
    m.push_subscribe_reply(SubscribeReply::Status(503));
    m.push_subscribe_reply(SubscribeReply::Status(503));
    let probe = Probe::default();
    let (run, _h) = spawn(config(m.addr()), probe.clone(), Default::default());
    let s = m
        .next_stream(WAIT)
        .await
        .expect("subscribed after two 503s");
    assert_eq!(m.calls_of(C::Subscribe).len(), 3);
    s.send(&events::subscribed("fw-2", 10.0));
    assert!(m.wait_for(WAIT, |c| has(c, C::Reconcile)).await);
    drop(s); // the master goes away mid-stream
    let s2 = m.next_stream(WAIT).await.expect("re-subscribed");
    assert_eq!(
        s2.subscribe.framework_id.as_ref().unwrap().value,
        "fw-2",
        "failover"
    );
    assert_eq!(
        s2.subscribe
            .subscribe
            .as_ref()
            .unwrap()
            .framework_info
            .id
            .as_ref()
            .unwrap()
            .value,
        "fw-2"
    );
    assert_ne!(s2.stream_id, "fake-stream-1");
    assert!(
        probe
            .seen
            .lock()
            .unwrap()
            .contains(&SchedulerEvent::Disconnected)
    );
    s2.send(&events::subscribed("fw-2", 10.0));
    assert!(
        m.wait_for(WAIT, |c| c
            .iter()
            .filter(|c| c.kind() == C::Reconcile)
            .count()
            == 2)
            .await,
        "reconciles again"
    );
    let last = m.calls_of(C::Reconcile).pop().unwrap();
    assert_eq!(
        last.stream_id.as_deref(),
        Some(s2.stream_id.as_str()),
        "uses the new stream id"
    );
    run.abort();
}

#[tokio::test]
async fn watchdog_resubscribes_when_heartbeats_stop() {
    let m = FakeMaster::start().await;
    let (run, _h) = spawn(config(m.addr()), Probe::default(), Default::default());
    let s = m.next_stream(WAIT).await.unwrap();
    s.send(&events::subscribed("fw-w", 0.1)); // watchdog: 200 ms
    let s2 = m
        .next_stream(WAIT)
        .await
        .expect("re-subscribed by the watchdog");
    assert_eq!(s2.subscribe.framework_id.as_ref().unwrap().value, "fw-w");
    drop(s);
    run.abort();
}

#[tokio::test]
async fn declines_unanswered_offers_and_launches_with_the_offer_role() {
    let m = FakeMaster::start().await;
    let mut cfg = config(m.addr());
    cfg.default_refuse = Duration::from_secs(7);
    let (run, _h) = spawn(cfg, Probe::default(), Default::default());
    let s = m.next_stream(WAIT).await.unwrap();
    s.send(&events::subscribed("fw-o", 10.0));
    s.send(&events::offers(vec![
        events::offer("o1", "a1", "cpus:1;mem:64", Some("eng")),
        events::offer("o2", "a2", "cpus:1;mem:64", Some("eng")),
    ]));
    assert!(m.wait_for(WAIT, |c| has(c, C::Decline)).await);
    let acc = m.calls_of(C::Accept).remove(0).call.accept.unwrap();
    assert_eq!(acc.offer_ids[0].value, "o1");
    let task = &acc.operations[0].launch.as_ref().unwrap().task_infos[0];
    assert_eq!(
        task.resources[0]
            .allocation_info
            .as_ref()
            .unwrap()
            .role
            .as_deref(),
        Some("eng")
    );
    let dec = m.calls_of(C::Decline).remove(0).call.decline.unwrap();
    assert_eq!(
        dec.offer_ids
            .iter()
            .map(|o| o.value.as_str())
            .collect::<Vec<_>>(),
        vec!["o2"]
    );
    assert_eq!(dec.filters.unwrap().refuse_seconds, Some(7.0));
    run.abort();
}

#[tokio::test]
async fn suppresses_when_idle_and_revives_when_work_arrives() {
    let m = FakeMaster::start().await;
    let probe = Probe::default();
    probe.idle.store(true, Ordering::SeqCst);
    let (run, h) = spawn(config(m.addr()), probe.clone(), Default::default());
    let s = m.next_stream(WAIT).await.unwrap();
    let sub = s.subscribe.subscribe.as_ref().unwrap();
    assert_eq!(
        sub.suppressed_roles,
        vec!["eng".to_string()],
        "subscribes suppressed when idle"
    );
    s.send(&events::subscribed("fw-s", 10.0));
    assert!(m.wait_for(WAIT, |c| has(c, C::Reconcile)).await);
    probe.idle.store(false, Ordering::SeqCst);
    h.wake();
    assert!(m.wait_for(WAIT, |c| has(c, C::Revive)).await);
    probe.idle.store(true, Ordering::SeqCst);
    h.wake();
    assert!(m.wait_for(WAIT, |c| has(c, C::Suppress)).await);
    s.send(&events::heartbeat());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        m.calls_of(C::Suppress).len(),
        1,
        "no repeated SUPPRESS while still idle"
    );
    assert_eq!(m.calls_of(C::Revive).len(), 1);
    h.stop();
    let (_, r) = run.await.unwrap();
    assert!(r.is_ok());
    assert!(!has(&m.calls(), C::Teardown), "stop is not teardown");
}

#[tokio::test]
async fn teardown_ends_the_run() {
    let m = FakeMaster::start().await;
    let (run, _h) = spawn(config(m.addr()), Probe::default(), Default::default());
    let s = m.next_stream(WAIT).await.unwrap();
    s.send(&events::subscribed("fw-t", 10.0));
    s.send(&events::offers(vec![events::offer(
        "o1", "a1", "cpus:1", None,
    )]));
    s.send(&events::update(
        "t",
        "a1",
        TaskState::TaskFinished,
        Some([7; 16]),
    ));
    let (_, r) = tokio::time::timeout(WAIT, run).await.unwrap().unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert!(has(&m.calls(), C::Teardown));
}

#[tokio::test]
async fn an_error_event_stops_the_driver() {
    let m = FakeMaster::start().await;
    let probe = Probe::default();
    let (run, _h) = spawn(config(m.addr()), probe.clone(), Default::default());
    let s = m.next_stream(WAIT).await.unwrap();
    s.send(&events::subscribed("fw-e", 10.0));
    s.send(&events::error("Framework has been removed"));
    let (_, r) = tokio::time::timeout(WAIT, run).await.unwrap().unwrap();
    assert!(
        matches!(r, Err(Error::Master(ref m)) if m.contains("removed")),
        "{r:?}"
    );
    assert!(matches!(
        probe.seen.lock().unwrap().last(),
        Some(SchedulerEvent::Error(_))
    ));
}

#[tokio::test]
async fn gives_up_on_an_unreachable_master_when_limited() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cfg = config(port.to_string()); // listener dropped: connection refused
    cfg.max_attempts = Some(3);
    let (run, _h) = spawn(cfg, Probe::default(), Default::default());
    let (_, r) = tokio::time::timeout(WAIT, run).await.unwrap().unwrap();
    assert!(matches!(r, Err(Error::GaveUp { attempts: 3, .. })), "{r:?}");
}

#[tokio::test]
async fn a_4xx_subscribe_is_fatal() {
    let m = FakeMaster::start().await;
    m.push_subscribe_reply(SubscribeReply::Status(403));
    let (run, _h) = spawn(config(m.addr()), Probe::default(), Default::default());
    let (_, r) = tokio::time::timeout(WAIT, run).await.unwrap().unwrap();
    assert!(
        matches!(r, Err(Error::Rejected { status: 403, .. })),
        "{r:?}"
    );
}

/// Holds offers until it has two, then launches one task on each with one ACCEPT per offer.
#[derive(Default)]
struct Holder {
    held: Vec<tessera_framework::Offer>,
}

impl Scheduler for Holder {
    fn on_event(&mut self, ev: &SchedulerEvent, _now: Time) -> Vec<Action> {
        if let SchedulerEvent::Offers(offers) = ev {
            self.held.extend(offers.iter().cloned());
        }
        if self.held.len() < 2 {
            return vec![];
        }
        std::mem::take(&mut self.held)
            .into_iter()
            .enumerate()
            .map(|(i, o)| Action::Launch {
                offer_ids: vec![o.id.clone()],
                tasks: vec![TaskInfo {
                    name: format!("g{i}"),
                    task_id: TaskId::new(format!("g{i}")).unwrap(),
                    agent_id: o.agent_id.clone(),
                    resources: tessera_types::parse::parse_resources("cpus:0.1").unwrap(),
                    command: CommandInfo::shell("true"),
                    executor_id: None,
                    kill_grace_ms: None,
                    container: None,
                    health_check: None,
                    executor: None,
                }],
            })
            .collect()
    }

    fn holds(&self, offer: &tessera_types::OfferId) -> bool {
        self.held.iter().any(|o| &o.id == offer)
    }
}

#[tokio::test]
async fn offers_the_scheduler_holds_are_not_declined() {
    let m = FakeMaster::start().await;
    let mut d = Driver::new(config(m.addr()), Holder::default());
    let run = tokio::spawn(async move { d.run().await });
    let s = m.next_stream(WAIT).await.unwrap();
    s.send(&events::subscribed("fw-h", 10.0));
    s.send(&events::offers(vec![events::offer(
        "o1",
        "a1",
        "cpus:1;mem:64",
        Some("eng"),
    )]));
    s.send(&events::offers(vec![events::offer(
        "o2",
        "a2",
        "cpus:1;mem:64",
        Some("eng"),
    )]));
    assert!(
        m.wait_for(WAIT, |c| c.iter().filter(|c| c.kind() == C::Accept).count()
            == 2)
            .await
    );
    let used: Vec<String> = m
        .calls_of(C::Accept)
        .into_iter()
        .map(|c| c.call.accept.unwrap().offer_ids[0].value.clone())
        .collect();
    assert_eq!(used, ["o1", "o2"]);
    assert!(
        m.calls_of(C::Decline).is_empty(),
        "the held offer o1 was declined before it was used"
    );
    run.abort();
}

//! Registry recovery after a restart, over real HTTP: while the registry is being read the
//! v1 APIs answer 503 "Master has not finished recovery" with `Retry-After` (Mesos' check 3,
//! after the leader check and before the method check); other endpoints keep answering;
//! once recovered, a framework from before the restart fails over with its id and the
//! agents not yet back are listed as recovered.

mod common;

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::http::{post_json, request};
use tessera_master::registry::{AgentRecord, Registry, RegistrySnapshot, SqliteRegistry};
use tessera_master::{MasterConfig, MasterError, RecoveryState};
use tessera_types::{AgentId, FrameworkId, FrameworkInfo, Role};
use tokio_util::sync::CancellationToken;

/// A registry whose `load` blocks until the test opens the gate (a slow registrar).
struct Gated {
    inner: Box<dyn Registry>,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl Gated {
    fn new(inner: Box<dyn Registry>) -> (Gated, Arc<(Mutex<bool>, Condvar)>) {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        (
            Gated {
                inner,
                gate: gate.clone(),
            },
            gate,
        )
    }
}

fn open(gate: &(Mutex<bool>, Condvar)) {
    *gate.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
    gate.1.notify_all();
}

/// Opens the gate when dropped, so a failing assertion cannot leave the blocking load (and
/// with it the runtime's shutdown) waiting forever.
struct OpenOnDrop(Arc<(Mutex<bool>, Condvar)>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        open(&self.0);
    }
}

impl Registry for Gated {
    fn load(&mut self) -> tessera_master::Result<RegistrySnapshot> {
        let (lock, cv) = &*self.gate;
        let mut open = lock.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
        drop(open);
        self.inner.load()
    }
    fn put_agent(&mut self, a: &AgentRecord) -> tessera_master::Result<()> {
        self.inner.put_agent(a)
    }
    fn remove_agent(&mut self, id: &AgentId) -> tessera_master::Result<()> {
        self.inner.remove_agent(id)
    }
    fn put_framework(&mut self, f: &FrameworkInfo) -> tessera_master::Result<()> {
        self.inner.put_framework(f)
    }
    fn remove_framework(&mut self, id: &FrameworkId) -> tessera_master::Result<()> {
        self.inner.remove_framework(id)
    }
    fn put_weight(&mut self, r: &Role, w: f64) -> tessera_master::Result<()> {
        self.inner.put_weight(r, w)
    }
    fn put_quota(
        &mut self,
        r: &Role,
        q: Option<&tessera_allocator::Quota>,
    ) -> tessera_master::Result<()> {
        self.inner.put_quota(r, q)
    }
    fn put_next_id(&mut self, n: u64) -> tessera_master::Result<()> {
        self.inner.put_next_id(n)
    }
    fn put_maintenance(
        &mut self,
        m: &tessera_master::maintenance::Maintenance,
    ) -> tessera_master::Result<()> {
        self.inner.put_maintenance(m)
    }
}

/// A registry that cannot be read (a corrupt or unreachable store).
struct Broken;

impl Registry for Broken {
    fn load(&mut self) -> tessera_master::Result<RegistrySnapshot> {
        Err(MasterError::Registry(
            "agent is corrupt: expected value".into(),
        ))
    }
    fn put_agent(&mut self, _: &AgentRecord) -> tessera_master::Result<()> {
        Ok(())
    }
    fn remove_agent(&mut self, _: &AgentId) -> tessera_master::Result<()> {
        Ok(())
    }
    fn put_framework(&mut self, _: &FrameworkInfo) -> tessera_master::Result<()> {
        Ok(())
    }
    fn remove_framework(&mut self, _: &FrameworkId) -> tessera_master::Result<()> {
        Ok(())
    }
    fn put_weight(&mut self, _: &Role, _: f64) -> tessera_master::Result<()> {
        Ok(())
    }
    fn put_quota(
        &mut self,
        _: &Role,
        _: Option<&tessera_allocator::Quota>,
    ) -> tessera_master::Result<()> {
        Ok(())
    }
    fn put_next_id(&mut self, _: u64) -> tessera_master::Result<()> {
        Ok(())
    }
    fn put_maintenance(
        &mut self,
        _: &tessera_master::maintenance::Maintenance,
    ) -> tessera_master::Result<()> {
        Ok(())
    }
}

fn config(dir: &std::path::Path) -> MasterConfig {
    let mut c = MasterConfig::new("127.0.0.1:0".parse().unwrap(), dir.to_path_buf());
    c.allocator.interval = Duration::from_millis(100);
    c.scheduler_heartbeat_interval = Duration::from_millis(300);
    c.agent_timeout = Duration::from_secs(3600);
    c
}

fn subscribe_body(id: Option<&str>) -> String {
    let (top, inner) = match id {
        Some(i) => (
            format!(r#""framework_id":{{"value":"{i}"}},"#),
            format!(r#""id":{{"value":"{i}"}},"#),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        r#"{{"type":"SUBSCRIBE",{top}"subscribe":{{"framework_info":{{{inner}"user":"u","name":"after-restart","failover_timeout":3600,"roles":["eng"],"capabilities":[{{"type":"MULTI_ROLE"}}]}}}}}}"#
    )
}

async fn first_record(r: &mut common::http::Response) -> serde_json::Value {
    let rec = r
        .record(Duration::from_secs(10))
        .await
        .expect("a record within 10 s");
    serde_json::from_slice(&rec).expect("a JSON event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_apis_answer_503_until_the_registry_is_recovered() {
    let dir = std::env::temp_dir().join(format!("tessera-recovery-{}", uuid::Uuid::new_v4()));

    // First life: an agent and a framework with a failover timeout are admitted.
    let stop = CancellationToken::new();
    let m = tessera_master::start(config(&dir), stop.clone())
        .await
        .unwrap();
    assert_eq!(m.recovery.state(), RecoveryState::Recovered);
    let mut agent = common::FakeAgent::attach(&m.handle, 1).await;
    agent
        .register(&m.handle, "cpus:2;mem:1024", None, vec![])
        .await;
    let aid = agent.id.clone().unwrap();
    let mut stream = post_json(&m.addr.to_string(), &subscribe_body(None), &[]).await;
    assert_eq!(stream.status, 200);
    let ev = first_record(&mut stream).await;
    let fw = ev["subscribed"]["framework_id"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    drop(stream);
    stop.cancel();
    let _ = m.join.await;

    // Second life: the registry is slow to read.
    let (gated, gate) = Gated::new(Box::new(SqliteRegistry::open(&dir).unwrap()));
    let _guard = OpenOnDrop(gate.clone());
    let stop = CancellationToken::new();
    let m = tessera_master::start_recovering(
        config(&dir),
        Box::new(gated),
        axum::Router::new(),
        stop.clone(),
    )
    .await
    .unwrap();
    let addr = m.addr.to_string();
    assert_eq!(m.recovery.state(), RecoveryState::Recovering);

    for path in ["/api/v1/scheduler", "/master/api/v1/scheduler"] {
        let r = request(
            &addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            subscribe_body(Some(&fw)).as_bytes(),
        )
        .await;
        assert_eq!(r.status, 503, "{path}");
        assert_eq!(r.header("retry-after"), Some("1"), "{path}");
        assert_eq!(r.body().await.trim(), "Master has not finished recovery");
    }
    for path in ["/api/v1", "/master/api/v1", "/api/v1/operator"] {
        let r = request(
            &addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            br#"{"type":"GET_HEALTH"}"#,
        )
        .await;
        assert_eq!(r.status, 503, "{path}");
        assert!(r.header("retry-after").is_some());
    }
    // Recovery is checked before the method, as in Mesos.
    let r = request(&addr, "GET", "/api/v1/scheduler", &[], b"").await;
    assert_eq!(r.status, 503);
    // Tooling that does not need the registry keeps answering.
    let r = request(&addr, "GET", "/health", &[], b"").await;
    assert_eq!(r.status, 200);
    let r = request(&addr, "GET", "/version", &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(m.recovery.state(), RecoveryState::Recovering);

    open(&gate);
    tokio::time::timeout(Duration::from_secs(10), m.recovery.wait())
        .await
        .expect("recovered within 10 s")
        .unwrap();

    // The framework from before the restart fails over with its id.
    let mut stream = post_json(&addr, &subscribe_body(Some(&fw)), &[]).await;
    assert_eq!(stream.status, 200);
    let ev = first_record(&mut stream).await;
    assert_eq!(ev["type"], "SUBSCRIBED");
    assert_eq!(ev["subscribed"]["framework_id"]["value"], fw.as_str());
    // The agent has not come back yet: recovered, not active, and no 503 for it.
    let r = request(
        &addr,
        "POST",
        "/api/v1",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        ],
        br#"{"type":"GET_AGENTS"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let body: serde_json::Value = serde_json::from_str(&r.body().await).unwrap();
    let recovered = body["get_agents"]["recovered_agents"].as_array().unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0]["id"]["value"], aid.as_str());
    assert!(
        body["get_agents"]["agents"]
            .as_array()
            .is_none_or(Vec::is_empty)
    );
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_redirects_before_the_recovery_check() {
    let dir = std::env::temp_dir().join(format!("tessera-recovery-{}", uuid::Uuid::new_v4()));
    let mut cfg = config(&dir);
    cfg.standby_of = Some("leader.example:5050".into());
    let (gated, gate) = Gated::new(Box::new(tessera_master::registry::MemRegistry::default()));
    let _guard = OpenOnDrop(gate.clone());
    let stop = CancellationToken::new();
    let m = tessera_master::start_recovering(cfg, Box::new(gated), axum::Router::new(), stop)
        .await
        .unwrap();
    let r = post_json(&m.addr.to_string(), &subscribe_body(None), &[]).await;
    assert_eq!(r.status, 307);
    assert_eq!(
        r.header("location"),
        Some("//leader.example:5050/api/v1/scheduler")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_cannot_be_read_stops_the_master() {
    let dir = std::env::temp_dir().join(format!("tessera-recovery-{}", uuid::Uuid::new_v4()));
    let stop = CancellationToken::new();
    let m =
        tessera_master::start_recovering(config(&dir), Box::new(Broken), axum::Router::new(), stop)
            .await
            .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), m.recovery.wait())
        .await
        .expect("recovery ended within 10 s")
        .unwrap_err();
    assert!(
        err.to_string().contains("agent is corrupt"),
        "the reason is kept: {err}"
    );
    assert!(matches!(m.recovery.state(), RecoveryState::Failed(_)));
    tokio::time::timeout(Duration::from_secs(10), m.join)
        .await
        .expect("the master stopped")
        .unwrap();
    // Nothing reaches an actor that never started.
    assert!(m.handle.state().await.is_err());
}

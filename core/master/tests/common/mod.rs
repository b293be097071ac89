//! Test harness: a master actor with an in-memory registry, fake agents whose links feed a
//! channel, and helpers to wait for framework events. Runs under tokio's paused clock.

#![allow(dead_code)]

pub mod http;

use std::time::Duration;

use tessera_api::convert::{resources_to_pb, status_to_pb};
use tessera_api::pb;
use tessera_master::link::AgentLink;
use tessera_master::registry::{MemRegistry, Registry};
use tessera_master::{Event, MasterConfig, MasterHandle, Offer, Subscription};
use tessera_types::parse::{parse_json_resources, parse_resources};
use tessera_types::{
    AgentId, Capability, CommandInfo, FrameworkId, FrameworkInfo, Resources, Role, TaskId,
    TaskInfo, TaskState, TaskStatus, UpdateSource,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub struct ChannelLink(pub mpsc::UnboundedSender<pb::MasterMessage>);

impl AgentLink for ChannelLink {
    fn send(&self, msg: pb::MasterMessage) -> bool {
        self.0.send(msg).is_ok()
    }
}

pub fn config() -> MasterConfig {
    let mut c = MasterConfig::new("127.0.0.1:0".parse().unwrap(), std::env::temp_dir());
    c.agent_heartbeat_interval = Duration::from_secs(5);
    c.agent_timeout = Duration::from_secs(30);
    c
}

/// A real master (registry under a fresh temp dir, HTTP and gRPC on a free loopback port)
/// with a 100 ms allocation interval, for tests over HTTP.
pub async fn master_up() -> (tessera_master::RunningMaster, CancellationToken) {
    let dir = std::env::temp_dir().join(format!("tessera-op-{}", uuid::Uuid::new_v4()));
    let mut c = MasterConfig::new("127.0.0.1:0".parse().unwrap(), dir);
    c.allocator.interval = Duration::from_millis(100);
    c.scheduler_heartbeat_interval = Duration::from_millis(300);
    let stop = CancellationToken::new();
    let m = tessera_master::start(c, stop.clone()).await.unwrap();
    (m, stop)
}

pub fn start(config: MasterConfig) -> (MasterHandle, CancellationToken) {
    start_with(config, Box::new(MemRegistry::default()))
}

pub fn start_with(
    config: MasterConfig,
    reg: Box<dyn Registry>,
) -> (MasterHandle, CancellationToken) {
    let stop = CancellationToken::new();
    let (h, _, _) = tessera_master::spawn_actor(config, reg, stop.clone()).unwrap();
    (h, stop)
}

/// A fake agent: a connection id and the messages the master sent it.
pub struct FakeAgent {
    pub conn: u64,
    pub rx: mpsc::UnboundedReceiver<pb::MasterMessage>,
    pub id: Option<AgentId>,
}

impl FakeAgent {
    pub async fn attach(h: &MasterHandle, conn: u64) -> FakeAgent {
        let (tx, rx) = mpsc::unbounded_channel();
        h.agent_attached(conn, Box::new(ChannelLink(tx)), None)
            .await
            .unwrap();
        FakeAgent { conn, rx, id: None }
    }

    pub async fn send(&self, h: &MasterHandle, msg: pb::agent_message::Msg) {
        h.agent_message(self.conn, pb::AgentMessage { msg: Some(msg) })
            .await
            .unwrap();
    }

    pub async fn register(
        &mut self,
        h: &MasterHandle,
        resources: &str,
        id: Option<&AgentId>,
        tasks: Vec<pb::RunningTask>,
    ) -> pb::master_message::Msg {
        let info = pb::AgentInfo {
            hostname: format!("host{}", self.conn),
            http_port: 0,
            resources: resources_to_pb(&parse_resources(resources).unwrap()),
            attributes: vec![pb::Attribute {
                name: "rack".into(),
                value: "r1".into(),
            }],
            version: "test".into(),
        };
        self.send(
            h,
            pb::agent_message::Msg::Register(pb::Register {
                info: Some(info),
                agent_id: id.map(|i| i.to_string()),
                tasks,
            }),
        )
        .await;
        let m = self.next().await;
        if let pb::master_message::Msg::Registered(r) = &m {
            self.id = Some(AgentId::new(r.agent_id.clone()).unwrap());
        }
        m
    }

    pub async fn next(&mut self) -> pb::master_message::Msg {
        tokio::time::timeout(Duration::from_secs(600), self.rx.recv())
            .await
            .expect("agent got no message in 10 virtual minutes")
            .expect("link closed")
            .msg
            .expect("empty master message")
    }

    pub async fn status(
        &self,
        h: &MasterHandle,
        fw: &FrameworkId,
        task: &TaskId,
        state: TaskState,
        uuid: &str,
    ) {
        let s = TaskStatus {
            task_id: task.clone(),
            state,
            reason: None,
            message: None,
            source: UpdateSource::SourceExecutor,
            agent_id: None,
            framework_id: None,
            uuid: Some(uuid.to_string()),
            timestamp: 1.0,
            exit_code: None,
            healthy: None,
        };
        self.send(
            h,
            pb::agent_message::Msg::StatusUpdate(pb::StatusUpdate {
                framework_id: fw.to_string(),
                status: Some(status_to_pb(&s)),
            }),
        )
        .await;
    }
}

/// A fake agent attached on `conn` and registered with `res`.
pub async fn agent_up(h: &MasterHandle, conn: u64, res: &str) -> (FakeAgent, AgentId) {
    let mut a = FakeAgent::attach(h, conn).await;
    a.register(h, res, None, vec![]).await;
    let id = a.id.clone().unwrap();
    (a, id)
}

/// `amount` of scalar `name` dynamically reserved to `role` (principal `ops`), in the
/// reserved form RESERVE takes.
pub fn dynamic(name: &str, amount: f64, role: &str) -> Resources {
    parse_json_resources(
        "resources",
        &serde_json::json!([{"name": name, "type": "SCALAR", "scalar": {"value": amount},
            "reservations": [{"type": "DYNAMIC", "role": role, "principal": "ops"}]}]),
    )
    .unwrap()
}

/// A persistent volume `id` at `container_path`, made of `amount` of disk dynamically
/// reserved to `role` (principal `ops`), as CREATE takes it.
pub fn volume(id: &str, container_path: &str, amount: f64, role: &str) -> Resources {
    parse_json_resources(
        "volumes",
        &serde_json::json!([{"name": "disk", "type": "SCALAR", "scalar": {"value": amount},
            "reservations": [{"type": "DYNAMIC", "role": role, "principal": "ops"}],
            "disk": {"persistence": {"id": id, "principal": "ops"},
                     "volume": {"container_path": container_path, "mode": "RW"}}}]),
    )
    .unwrap()
}

pub fn framework(name: &str, role: &str, caps: Vec<Capability>) -> FrameworkInfo {
    FrameworkInfo {
        id: None,
        name: name.into(),
        user: "tester".into(),
        roles: vec![Role::new(role).unwrap()],
        capabilities: caps,
        failover_timeout_secs: 0.0,
        principal: None,
        hostname: None,
    }
}

pub async fn next_event(sub: &mut Subscription) -> Event {
    tokio::time::timeout(Duration::from_secs(600), sub.events.recv())
        .await
        .expect("no framework event in 10 virtual minutes")
        .expect("event stream closed")
}

/// Skips events until offers arrive.
pub async fn next_offers(sub: &mut Subscription) -> Vec<Offer> {
    loop {
        if let Event::Offers(o) = next_event(sub).await {
            return o;
        }
    }
}

/// Skips events until an update arrives (of a command task, or of a task of a group).
pub async fn next_update(sub: &mut Subscription) -> TaskStatus {
    loop {
        match next_event(sub).await {
            Event::Update(s) | Event::ExecutorUpdate { status: s, .. } => return s,
            _ => {}
        }
    }
}

pub fn task(id: &str, agent: &AgentId, resources: &str) -> TaskInfo {
    TaskInfo {
        name: id.into(),
        task_id: TaskId::new(id).unwrap(),
        agent_id: agent.clone(),
        resources: parse_resources(resources).unwrap(),
        command: CommandInfo::shell("true"),
        executor_id: None,
        kill_grace_ms: None,
        container: None,
        health_check: None,
        executor: None,
    }
}

/// The actor keeps per-agent usage up to date incrementally; recomputing it from the tasks
/// and offers must give the same sums.
pub async fn assert_usage_consistent(h: &MasterHandle) {
    let st = h.state().await.unwrap();
    let mut oracle = st.clone();
    oracle.fill_usage();
    for (a, b) in st.agents.iter().zip(oracle.agents.iter()) {
        assert_eq!(a.used, b.used, "used resources of agent {} drifted", a.id);
        assert_eq!(
            a.offered, b.offered,
            "offered resources of agent {} drifted",
            a.id
        );
    }
}

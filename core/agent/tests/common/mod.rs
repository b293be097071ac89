//! The fake master shared by the agent's integration tests: a tonic server on 127.0.0.1:0
//! that hands each attached stream to the test. Every wait is bounded.

#![allow(dead_code)]

use std::time::Duration;

use tessera_api::pb;
use tessera_api::pb::agent_message::Msg as AMsg;
use tessera_api::pb::master_message::Msg as MMsg;
use tessera_types::TaskState;
use tessera_types::parse::parse_resources;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status, Streaming};

pub const WAIT: Duration = Duration::from_secs(10);

/// A real agent running in this test's runtime.
pub struct AgentRun {
    pub work_dir: std::path::PathBuf,
    pub shutdown: tokio_util::sync::CancellationToken,
    pub handle: tokio::task::JoinHandle<Result<(), tessera_agent::AgentError>>,
}

/// A fresh work directory under the system's temp dir.
pub fn temp_work_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tessera-agent-test-{}", uuid::Uuid::new_v4()))
}

/// An agent config for `addr` with fast reconnects and a short kill grace.
pub fn agent_config(addr: &str, work_dir: std::path::PathBuf) -> tessera_agent::AgentConfig {
    let mut c = tessera_agent::AgentConfig::new(
        addr,
        work_dir,
        parse_resources("cpus:2;mem:1024").unwrap(),
    );
    c.reconnect_base = Duration::from_millis(20);
    c.reconnect_cap = Duration::from_millis(200);
    c.default_kill_grace = Duration::from_millis(500);
    c
}

pub fn start_agent(c: tessera_agent::AgentConfig) -> AgentRun {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let work_dir = c.work_dir.clone();
    let handle = tokio::spawn(tessera_agent::run(c, shutdown.clone()));
    AgentRun {
        work_dir,
        shutdown,
        handle,
    }
}

impl AgentRun {
    /// Stops the agent (bounded) and removes its work directory.
    pub async fn stop(self) {
        self.shutdown.cancel();
        timeout(WAIT, self.handle)
            .await
            .expect("agent stops")
            .unwrap()
            .unwrap();
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

/// One attached agent stream, as seen by the master.
pub struct Conn {
    pub from_agent: mpsc::UnboundedReceiver<pb::AgentMessage>,
    pub to_agent: mpsc::UnboundedSender<Result<pb::MasterMessage, Status>>,
}

pub struct FakeService {
    pub conns: mpsc::UnboundedSender<Conn>,
}

#[tonic::async_trait]
impl pb::agent_service_server::AgentService for FakeService {
    type AttachStream = UnboundedReceiverStream<Result<pb::MasterMessage, Status>>;

    async fn attach(
        &self,
        req: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let mut inbound = req.into_inner();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(m)) = inbound.next().await {
                if in_tx.send(m).is_err() {
                    break;
                }
            }
        });
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let _ = self.conns.send(Conn {
            from_agent: in_rx,
            to_agent: out_tx,
        });
        Ok(Response::new(UnboundedReceiverStream::new(out_rx)))
    }
}

pub struct FakeMaster {
    pub addr: String,
    pub conns: mpsc::UnboundedReceiver<Conn>,
}

pub async fn fake_master() -> FakeMaster {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    let svc = pb::agent_service_server::AgentServiceServer::new(FakeService { conns: tx });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    FakeMaster { addr, conns: rx }
}

impl FakeMaster {
    pub async fn accept(&mut self) -> Conn {
        timeout(WAIT, self.conns.recv())
            .await
            .expect("agent attaches")
            .expect("server alive")
    }

    /// Accepts a stream, expects Register, answers Registered with `id`.
    pub async fn accept_registered(&mut self, id: &str) -> (Conn, pb::Register) {
        let mut c = self.accept().await;
        let reg = match c.next().await {
            AMsg::Register(r) => r,
            other => panic!("expected Register, got {other:?}"),
        };
        c.send(MMsg::Registered(pb::Registered {
            agent_id: id.into(),
            heartbeat_interval_ms: 60_000,
            master_id: "m1".into(),
        }));
        (c, reg)
    }
}

impl Conn {
    pub async fn next(&mut self) -> AMsg {
        loop {
            let m = timeout(WAIT, self.from_agent.recv())
                .await
                .expect("agent message within the deadline")
                .expect("stream open");
            match m.msg {
                Some(AMsg::Heartbeat(_)) | None => continue,
                Some(m) => return m,
            }
        }
    }

    pub async fn status(&mut self) -> (String, pb::TaskStatus) {
        match self.next().await {
            AMsg::StatusUpdate(u) => (u.framework_id, u.status.unwrap()),
            other => panic!("expected StatusUpdate, got {other:?}"),
        }
    }

    pub fn send(&self, m: MMsg) {
        self.to_agent
            .send(Ok(pb::MasterMessage { msg: Some(m) }))
            .unwrap();
    }

    pub fn ack(&self, fw: &str, s: &pb::TaskStatus) {
        self.send(MMsg::Acknowledge(pb::Acknowledge {
            framework_id: fw.into(),
            task_id: s.task_id.clone(),
            uuid: s.uuid.clone().unwrap(),
        }));
    }

    /// Next status, acknowledged.
    pub async fn acked_status(&mut self) -> pb::TaskStatus {
        let (fw, s) = self.status().await;
        self.ack(&fw, &s);
        s
    }

    /// RunTask for a shell command with 0.1 cpu / 32 MB.
    pub fn run_task(&self, id: &str, command: &str, kill_grace_ms: Option<u64>) {
        self.run_task_spec(id, command, "cpus:0.1;mem:32", kill_grace_ms, false);
    }

    /// RunTask for a shell command (0.1 cpu / 32 MB) whose sandbox first gets `uris`.
    pub fn run_task_uris(&self, id: &str, command: &str, uris: Vec<pb::Uri>) {
        self.run_task_full(id, command, "cpus:0.1;mem:32", None, false, uris);
    }

    /// RunTask with chosen resources, kill grace and TASK_KILLING_STATE.
    pub fn run_task_spec(
        &self,
        id: &str,
        command: &str,
        resources: &str,
        kill_grace_ms: Option<u64>,
        killing_state: bool,
    ) {
        self.run_task_full(
            id,
            command,
            resources,
            kill_grace_ms,
            killing_state,
            Vec::new(),
        );
    }

    /// RunTask with every knob the tests turn.
    pub fn run_task_full(
        &self,
        id: &str,
        command: &str,
        resources: &str,
        kill_grace_ms: Option<u64>,
        killing_state: bool,
        uris: Vec<pb::Uri>,
    ) {
        self.run_task_in(
            id,
            command,
            resources,
            kill_grace_ms,
            killing_state,
            uris,
            None,
        );
    }

    /// [`run_task_full`](Self::run_task_full) in a given container (e.g. Docker).
    #[allow(clippy::too_many_arguments)]
    pub fn run_task_in(
        &self,
        id: &str,
        command: &str,
        resources: &str,
        kill_grace_ms: Option<u64>,
        killing_state: bool,
        uris: Vec<pb::Uri>,
        container: Option<pb::ContainerInfo>,
    ) {
        self.send(MMsg::RunTask(run_task_message(
            id,
            command,
            resources,
            kill_grace_ms,
            killing_state,
            uris,
            container,
        )));
    }

    /// RunTask for a shell command (0.1 cpu / 32 MB) checked by `health_check`.
    pub fn run_task_checked(&self, id: &str, command: &str, health_check: pb::HealthCheck) {
        let mut rt = run_task_message(
            id,
            command,
            "cpus:0.1;mem:32",
            Some(500),
            false,
            Vec::new(),
            None,
        );
        rt.task.as_mut().unwrap().health_check = Some(health_check);
        self.send(MMsg::RunTask(rt));
    }
}

/// The RunTask the helpers above send.
pub fn run_task_message(
    id: &str,
    command: &str,
    resources: &str,
    kill_grace_ms: Option<u64>,
    killing_state: bool,
    uris: Vec<pb::Uri>,
    container: Option<pb::ContainerInfo>,
) -> pb::RunTask {
    {
        pb::RunTask {
            task_killing_state: killing_state,
            framework_id: "fw1".into(),
            framework_name: "test".into(),
            user: "nobody".into(),
            task: Some(pb::TaskInfo {
                name: id.into(),
                task_id: id.into(),
                agent_id: "agent-1".into(),
                resources: tessera_api::convert::resources_to_pb(
                    &parse_resources(resources).unwrap(),
                ),
                command: Some(pb::CommandInfo {
                    value: command.into(),
                    shell: true,
                    uris,
                    ..Default::default()
                }),
                executor_id: None,
                kill_grace_ms,
                container,
                health_check: None,
                executor: None,
            }),
        }
    }
}

pub fn state(s: &pb::TaskStatus) -> TaskState {
    TaskState::from_i32(s.state).expect("a known state")
}

/// Whether tasks can get their own pid and mount namespaces here; prints `SKIP: <test>:
/// <reason>` when not, for the caller to return.
pub fn namespaces_or_skip(test: &str) -> bool {
    match tessera_agent::TaskNamespaces::probe() {
        Ok(_) => true,
        Err(e) => {
            println!("SKIP: {test}: pid and mount namespaces unavailable: {e}");
            false
        }
    }
}

/// Acknowledged statuses of `task` until a terminal one, which is returned.
pub async fn terminal_of(c: &mut Conn, task: &str) -> pb::TaskStatus {
    loop {
        let s = c.acked_status().await;
        assert_eq!(s.task_id, task, "{s:?}");
        if state(&s).is_terminal() {
            return s;
        }
    }
}

/// Acknowledged statuses of `task` until TASK_RUNNING.
pub async fn running_of(c: &mut Conn, task: &str) {
    loop {
        let s = c.acked_status().await;
        assert_eq!(s.task_id, task, "{s:?}");
        match state(&s) {
            TaskState::TaskRunning => return,
            TaskState::TaskStarting => continue,
            other => panic!("expected TASK_RUNNING, got {other:?}: {s:?}"),
        }
    }
}

/// The (only) sandbox of `task` under the work dir `dir` (agent `agent-1`, framework `fw1`).
pub fn sandbox_of(dir: &std::path::Path, task: &str) -> std::path::PathBuf {
    let runs = dir.join(format!(
        "slaves/agent-1/frameworks/fw1/executors/{task}/runs"
    ));
    std::fs::read_dir(&runs)
        .unwrap_or_else(|e| panic!("{}: {e}", runs.display()))
        .next()
        .expect("one run")
        .unwrap()
        .path()
}

/// `pid:[inode]` of the pid namespace the children of host process `pid` are created in.
pub fn pid_ns_for_children(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/pid_for_children"))
        .unwrap_or_else(|e| panic!("pid namespace of {pid}'s children: {e}"))
        .display()
        .to_string()
}

/// Host pids of the processes in the pid namespace `ns` (as [`pid_ns_for_children`] names it).
pub fn pids_in_ns(ns: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                .is_ok_and(|l| l.display().to_string() == ns)
        })
        .collect()
}

/// The supervisor's host pid, from the checkpoint of `task`'s container under `dir`.
pub fn supervisor_pid(dir: &std::path::Path, task: &str) -> u32 {
    let meta = sandbox_of(&dir.join("meta"), task).join("container.json");
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&meta).unwrap_or_else(|e| panic!("{}: {e}", meta.display())),
    )
    .unwrap();
    v["pid"].as_u64().expect("a checkpointed pid") as u32
}

// ---- task groups ------------------------------------------------------------------------

pub fn pb_resources(r: &str) -> Vec<pb::Resource> {
    tessera_api::convert::resources_to_pb(&parse_resources(r).unwrap())
}

/// A RunTaskGroup of framework `fw1` with executor `exec` (0.1 cpus, 32 MB) and one shell
/// task per (id, command), each 0.1 cpus and 32 MB.
pub fn group(exec: &str, tasks: &[(&str, &str)]) -> pb::RunTaskGroup {
    pb::RunTaskGroup {
        framework_id: "fw1".into(),
        framework_name: "test".into(),
        user: "nobody".into(),
        executor: Some(pb::ExecutorInfo {
            executor_id: exec.into(),
            framework_id: Some("fw1".into()),
            name: None,
            resources: pb_resources("cpus:0.1;mem:32"),
            command: None,
        }),
        tasks: tasks
            .iter()
            .map(|(id, cmd)| pb::TaskInfo {
                name: (*id).into(),
                task_id: (*id).into(),
                agent_id: "agent-1".into(),
                resources: pb_resources("cpus:0.1;mem:32"),
                command: Some(pb::CommandInfo {
                    value: (*cmd).into(),
                    shell: true,
                    ..Default::default()
                }),
                executor_id: Some(exec.into()),
                kill_grace_ms: Some(500),
                container: None,
                health_check: None,
                executor: None,
            })
            .collect(),
        task_killing_state: false,
    }
}

/// Every task's acknowledged statuses until all of `tasks` are terminal, in order.
pub async fn until_all_terminal(
    c: &mut Conn,
    tasks: &[&str],
) -> std::collections::BTreeMap<String, Vec<pb::TaskStatus>> {
    let mut seen: std::collections::BTreeMap<String, Vec<pb::TaskStatus>> =
        std::collections::BTreeMap::new();
    while !tasks.iter().all(|t| {
        seen.get(*t)
            .and_then(|v| v.last())
            .is_some_and(|s| state(s).is_terminal())
    }) {
        let s = c.acked_status().await;
        assert!(tasks.contains(&s.task_id.as_str()), "unexpected {s:?}");
        seen.entry(s.task_id.clone()).or_default().push(s);
    }
    seen
}

/// Acknowledged statuses until every one of `tasks` is TASK_RUNNING.
pub async fn until_all_running(c: &mut Conn, tasks: &[&str]) {
    let mut running = std::collections::BTreeSet::new();
    while running.len() < tasks.len() {
        let s = c.acked_status().await;
        match state(&s) {
            TaskState::TaskStarting => {}
            TaskState::TaskRunning => {
                running.insert(s.task_id.clone());
            }
            other => panic!("expected TASK_RUNNING, got {other:?}: {s:?}"),
        }
    }
}

pub fn last(
    seen: &std::collections::BTreeMap<String, Vec<pb::TaskStatus>>,
    task: &str,
) -> pb::TaskStatus {
    seen[task].last().cloned().unwrap()
}

//! The agent side of `--processes`: simulated agents in a process of their own, each a gRPC
//! client of the master's real listener with one bidirectional `Attach` stream, as a real
//! agent has (`tessera sim-agents`, which `tessera sim --processes N` starts N times).
//!
//! Each agent registers with the same `Register` message the in-process agents send,
//! answers a RunTask with TASK_RUNNING at once and TASK_FINISHED when the task's time is up
//! (`sleep SECONDS`, real time here), a KillTask with TASK_KILLED, heartbeats at the interval
//! the master asks for, and counts RunTasks that would over-commit it.
//!
//! Talking to the parent: one JSON line on stdout once every agent is registered
//! ([`ChildMsg::Ready`]); the parent closes our stdin to stop us (so a parent that dies, even
//! by SIGKILL, stops us too), and we answer with a last line ([`ChildMsg::Done`]) and exit.
//!
//! The client is a few lines over the generated `AgentServiceClient` rather than the real
//! agent's link: that one is part of the agent's state loop (reconnect backoff, agent-id
//! persistence, the status update manager) and this crate must not depend on the agent.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tessera_api::convert::{resources_from_pb, resources_to_pb};
use tessera_api::pb;
use tessera_types::parse::parse_resources;
use tessera_types::{TaskId, TaskState};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

use crate::SimError;
use crate::agents::{AgentCounters, duration_of, status_update};

/// Messages queued towards the master per agent.
const OUTBOUND_QUEUE: usize = 4096;
/// Registration attempts per agent before the process gives up.
const REGISTER_ATTEMPTS: u32 = 10;
/// Agents of one process registering at the same time: hundreds of connections opened in
/// the same millisecond overflow the listener's accept queue and some get closed.
const REGISTERING_AT_ONCE: usize = 32;

/// One line a `sim-agents` process prints on stdout.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ChildMsg {
    /// Every agent of this process is registered.
    Ready { agents: usize },
    /// The last line, after stdin closed.
    Done(ChildReport),
}

/// What one `sim-agents` process saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ChildReport {
    pub agents: usize,
    /// RunTasks received.
    pub tasks_run: u64,
    /// Tasks that reached their end (TASK_FINISHED sent).
    pub tasks_finished: u64,
    /// RunTasks that would have put an agent's cpus or mem past its total (must be 0).
    pub overcommits: u64,
    pub peak_rss_bytes: u64,
}

/// Settings of one `sim-agents` process.
#[derive(Debug, Clone)]
pub struct AgentsConfig {
    /// The master's `HOST:PORT`.
    pub master: String,
    /// Agents this process hosts.
    pub count: usize,
    /// Index of its first agent in the whole simulation (hostnames `sim{index+1}`).
    pub first_index: usize,
    /// Resources of each agent (Mesos text form).
    pub resources: String,
}

/// Runs the agents on a single-threaded runtime until stdin closes; prints the two lines.
pub fn run_agents_blocking(cfg: AgentsConfig) -> Result<ChildReport, SimError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SimError::Io(format!("cannot start a runtime: {e}")))?;
    rt.block_on(run_agents(cfg))
}

fn say(msg: &ChildMsg) {
    // The parent may be gone (then nobody listens): never panic on a closed pipe.
    if let Ok(line) = serde_json::to_string(msg) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

async fn run_agents(cfg: AgentsConfig) -> Result<ChildReport, SimError> {
    if cfg.count == 0 {
        return Err(crate::invalid("count", "must be at least 1"));
    }
    let resources =
        parse_resources(&cfg.resources).map_err(|e| crate::invalid("resources", e.to_string()))?;
    let endpoint = Endpoint::from_shared(format!("http://{}", cfg.master))
        .map_err(|e| crate::invalid("master", e.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    let stop = CancellationToken::new();
    // stdin closing (the parent closed it, or died) is the signal to stop.
    let s = stop.clone();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        s.cancel();
    });
    let counters = Arc::new(AgentCounters::default());
    let (err_tx, mut err_rx) = mpsc::unbounded_channel::<String>();
    let cap = (
        resources.scalar("cpus").milli(),
        resources.scalar("mem").milli(),
    );
    let res = resources_to_pb(&resources);
    let gate = Arc::new(tokio::sync::Semaphore::new(REGISTERING_AT_ONCE));
    let mut joins = Vec::with_capacity(cfg.count);
    for k in 0..cfg.count {
        let i = cfg.first_index + k;
        let info = pb::AgentInfo {
            hostname: format!("sim{}", i + 1),
            http_port: 0,
            resources: res.clone(),
            attributes: vec![pb::Attribute {
                name: "rack".into(),
                value: format!("r{}", i % 40),
            }],
            version: "sim".into(),
        };
        let a = SimAgent {
            endpoint: endpoint.clone(),
            info,
            cap,
            counters: Arc::clone(&counters),
            stop: stop.clone(),
            gate: Arc::clone(&gate),
        };
        let err_tx = err_tx.clone();
        joins.push(tokio::spawn(async move {
            if let Err(e) = a.run().await {
                let _ = err_tx.send(e);
            }
        }));
    }
    drop(err_tx);
    // Ready once all are registered; one agent that cannot register fails the process.
    loop {
        if counters.registered.load(Ordering::Relaxed) >= cfg.count {
            break;
        }
        tokio::select! {
            Some(e) = err_rx.recv() => {
                stop.cancel();
                return Err(SimError::Master(format!("agent could not register: {e}")));
            }
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    if !stop.is_cancelled() {
        say(&ChildMsg::Ready { agents: cfg.count });
    }
    stop.cancelled().await;
    for j in joins {
        let _ = j.await;
    }
    let report = ChildReport {
        agents: cfg.count,
        tasks_run: counters.launched.load(Ordering::Relaxed) as u64,
        tasks_finished: counters.finished.load(Ordering::Relaxed) as u64,
        overcommits: counters.overcommits.load(Ordering::Relaxed) as u64,
        peak_rss_bytes: crate::report::peak_rss(),
    };
    say(&ChildMsg::Done(report.clone()));
    Ok(report)
}

/// A task's finish: (when, launch sequence, framework id, task id).
type Due = (Instant, u64, String, TaskId);

/// A registered agent's stream: outbound queue, inbound messages, heartbeat period.
type Link = (
    mpsc::Sender<pb::AgentMessage>,
    tonic::Streaming<pb::MasterMessage>,
    Duration,
);

struct SimAgent {
    endpoint: Endpoint,
    info: pb::AgentInfo,
    /// cpus and mem of the agent, in milli-units.
    cap: (u64, u64),
    counters: Arc<AgentCounters>,
    stop: CancellationToken,
    gate: Arc<tokio::sync::Semaphore>,
}

impl SimAgent {
    /// Registers, then serves until told to stop or the stream ends. `Err` when it could not
    /// register.
    async fn run(self) -> Result<(), String> {
        let stop = self.stop.clone();
        let registered = async {
            let _turn = self.gate.acquire().await.map_err(|e| e.to_string())?;
            let mut attempt = 0;
            loop {
                attempt += 1;
                let r = tokio::time::timeout(Duration::from_secs(10), self.register()).await;
                match r.unwrap_or_else(|_| Err("no answer within 10 s".into())) {
                    Ok(link) => return Ok(link),
                    Err(e) if attempt >= REGISTER_ATTEMPTS => return Err(e),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100 * attempt as u64)).await,
                }
            }
        };
        let (out, inbound, period) = tokio::select! {
            r = registered => r?,
            _ = stop.cancelled() => return Ok(()),
        };
        self.counters.registered.fetch_add(1, Ordering::Relaxed);
        self.serve(out, inbound, period).await;
        Ok(())
    }

    /// Connects, attaches and registers: the outbound queue, the inbound stream and the
    /// heartbeat period the master asked for.
    async fn register(&self) -> Result<Link, String> {
        let channel = self
            .endpoint
            .connect()
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut client = pb::agent_service_client::AgentServiceClient::new(channel);
        let (out, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let register = pb::Register {
            info: Some(self.info.clone()),
            agent_id: None,
            tasks: vec![],
        };
        let _ = out.try_send(pb::AgentMessage {
            msg: Some(pb::agent_message::Msg::Register(register)),
        });
        let mut inbound = client
            .attach(ReceiverStream::new(rx))
            .await
            .map_err(|s| format!("attach: {s}"))?
            .into_inner();
        let period = match inbound.message().await {
            Ok(Some(pb::MasterMessage {
                msg: Some(pb::master_message::Msg::Registered(r)),
            })) => Duration::from_millis(r.heartbeat_interval_ms.max(1)),
            Ok(Some(other)) => return Err(format!("expected Registered, got {other:?}")),
            Ok(None) => return Err("the master closed the stream".into()),
            Err(s) => return Err(format!("awaiting Registered: {s}")),
        };
        Ok((out, inbound, period))
    }

    /// Serves RunTask and KillTask until told to stop or the stream ends (the master stops
    /// first at the end of a run).
    async fn serve(
        &self,
        out: mpsc::Sender<pb::AgentMessage>,
        mut inbound: tonic::Streaming<pb::MasterMessage>,
        period: Duration,
    ) {
        let mut heartbeat = tokio::time::interval_at(Instant::now() + period, period);
        let mut due: BinaryHeap<Reverse<Due>> = BinaryHeap::new();
        let mut seq = 0u64;
        let mut used = (0u64, 0u64);
        let mut holds: HashMap<TaskId, (u64, u64)> = HashMap::new();
        let c = &self.counters;
        loop {
            let next = due.peek().map(|Reverse(d)| d.0);
            let msg = tokio::select! {
                biased;
                _ = self.stop.cancelled() => return,
                m = inbound.message() => match m {
                    Ok(Some(m)) => Some(m),
                    Ok(None) | Err(_) => return,
                },
                _ = heartbeat.tick() => {
                    let hb = pb::agent_message::Msg::Heartbeat(pb::Heartbeat {});
                    if out.send(pb::AgentMessage { msg: Some(hb) }).await.is_err() {
                        return;
                    }
                    continue;
                }
                _ = async { match next { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => None,
            };
            let mut updates = Vec::new();
            match msg.and_then(|m| m.msg) {
                Some(pb::master_message::Msg::RunTask(rt)) => {
                    let Some(task) = rt.task else { continue };
                    let Ok(id) = TaskId::new(task.task_id) else {
                        continue;
                    };
                    c.launched.fetch_add(1, Ordering::Relaxed);
                    if let Ok(r) = resources_from_pb("task.resources", &task.resources) {
                        let (tc, tm) = (r.scalar("cpus").milli(), r.scalar("mem").milli());
                        used.0 += tc;
                        used.1 += tm;
                        if used.0 > self.cap.0 || used.1 > self.cap.1 {
                            c.overcommits.fetch_add(1, Ordering::Relaxed);
                        }
                        holds.insert(id.clone(), (tc, tm));
                    }
                    let cmd = task.command.map(|c| c.value).unwrap_or_default();
                    if let Some(d) = duration_of(&cmd) {
                        seq += 1;
                        let fw = rt.framework_id.clone();
                        due.push(Reverse((Instant::now() + d, seq, fw, id.clone())));
                    }
                    updates.push((rt.framework_id, id, TaskState::TaskRunning));
                }
                Some(pb::master_message::Msg::KillTask(k)) => {
                    let Ok(id) = TaskId::new(k.task_id) else {
                        continue;
                    };
                    due.retain(|Reverse(d)| d.3 != id);
                    if let Some((tc, tm)) = holds.remove(&id) {
                        used = (used.0.saturating_sub(tc), used.1.saturating_sub(tm));
                    }
                    updates.push((k.framework_id, id, TaskState::TaskKilled));
                }
                Some(_) => continue,
                None => {
                    let now = Instant::now();
                    while due.peek().is_some_and(|Reverse(d)| d.0 <= now) {
                        let Some(Reverse((_, _, fw, id))) = due.pop() else {
                            break;
                        };
                        if let Some((tc, tm)) = holds.remove(&id) {
                            used = (used.0.saturating_sub(tc), used.1.saturating_sub(tm));
                        }
                        c.finished.fetch_add(1, Ordering::Relaxed);
                        updates.push((fw, id, TaskState::TaskFinished));
                    }
                }
            }
            for (fw, id, state) in updates {
                if out.send(status_update(fw, id, state)).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_lines_round_trip() {
        let done = ChildMsg::Done(ChildReport {
            agents: 3,
            tasks_run: 7,
            ..Default::default()
        });
        let line = serde_json::to_string(&done).unwrap();
        assert!(line.contains("\"event\":\"done\""), "{line}");
        assert_eq!(serde_json::from_str::<ChildMsg>(&line).unwrap(), done);
        let ready: ChildMsg = serde_json::from_str(r#"{"event":"ready","agents":5}"#).unwrap();
        assert_eq!(ready, ChildMsg::Ready { agents: 5 });
    }
}

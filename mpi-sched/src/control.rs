//! Starting an MPI launcher's per-node daemons (Hydra's `hydra_pmi_proxy`, Open MPI's
//! `orted`) as Tessera tasks, in place of ssh.
//!
//! The gang is placed as one task per node; each task starts `tessera mpi proxy`, which
//! connects here and waits. `mpiexec.hydra -launcher-exec` / Open MPI's `plm_rsh_agent`
//! run `tessera mpi launch-agent HOST COMMAND…` (hosts are named `tessera-node-<i>`), which
//! connects here too: the control server hands COMMAND to node i's waiting task (which
//! execs it) and tells the launch agent the task's exit status when it ends, so the agent
//! behaves like an ssh session for the launcher.
//!
//! Hydra leaves the other ranks waiting forever when a rank exits non-zero, so under
//! Hydra every rank runs inside `tessera mpi rank-exec`, which reports such an exit
//! (`{"role":"rank-exit","rank":R,"code":C}`) and the job ends.
//!
//! Wire: one JSON object per line. A node task sends `{"role":"proxy","node":I}` and gets
//! `{"command":"…"}`; a launch agent sends `{"role":"launch","host":"tessera-node-I",
//! "command":"…"}` and gets `{"exit":N}` or `{"error":"…"}`. Lines over [`LINE_MAX`], bad
//! JSON, unknown nodes and second claims of a node are answered with an error and closed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Host names given to the launcher: `tessera-node-0`, `tessera-node-1`, …
pub const HOST_PREFIX: &str = "tessera-node-";
/// Longest line accepted.
pub const LINE_MAX: usize = 64 * 1024;

/// The node index a launcher host name stands for.
pub fn node_of_host(host: &str) -> Option<u32> {
    host.strip_prefix(HOST_PREFIX)?.parse().ok()
}

#[derive(Default)]
struct State {
    nodes: u32,
    /// Node tasks waiting for their command.
    waiting: HashMap<u32, oneshot::Sender<String>>,
    /// Commands that arrived before their node's task connected.
    pending: HashMap<u32, String>,
    /// Launch agents waiting for their node's exit status.
    launchers: HashMap<u32, oneshot::Sender<i32>>,
    /// Nodes whose task ended before its launch agent asked.
    exits: HashMap<u32, i32>,
    claimed_proxy: Vec<bool>,
    claimed_launch: Vec<bool>,
    rank_exits: Option<tokio::sync::mpsc::UnboundedSender<RankExit>>,
}

/// A rank that exited with a non-zero status, as its `tessera mpi rank-exec` wrapper
/// reported it (Hydra leaves the other ranks waiting in a barrier in that case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RankExit {
    pub rank: u32,
    pub code: i32,
}

/// The control server of one job; dropping it stops it.
pub struct Control {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: JoinHandle<()>,
}

fn lock(s: &Mutex<State>) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl Control {
    /// Listens on `bind` (any port); no node is known until [`Control::set_nodes`]. The
    /// receiver gets the ranks that exited with a non-zero status.
    pub async fn start(
        bind: IpAddr,
    ) -> std::io::Result<(Control, tokio::sync::mpsc::UnboundedReceiver<RankExit>)> {
        let listener = TcpListener::bind(SocketAddr::new(bind, 0)).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let state = Arc::new(Mutex::new(State {
            rank_exits: Some(tx),
            ..State::default()
        }));
        let st = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, st.clone()));
            }
        });
        Ok((
            Control {
                addr,
                state,
                accept,
            },
            rx,
        ))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The gang was placed on `nodes` nodes (before any node task can connect).
    pub fn set_nodes(&self, nodes: u32) {
        let mut s = lock(&self.state);
        s.nodes = nodes;
        s.claimed_proxy = vec![false; nodes as usize];
        s.claimed_launch = vec![false; nodes as usize];
    }

    /// Node `node`'s task ended with `code`: its launch agent exits with it.
    pub fn node_ended(&self, node: u32, code: i32) {
        let mut s = lock(&self.state);
        s.waiting.remove(&node);
        match s.launchers.remove(&node) {
            Some(tx) => {
                let _ = tx.send(code);
            }
            None => {
                s.exits.insert(node, code);
            }
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.accept.abort();
        let mut s = lock(&self.state);
        s.waiting.clear();
        s.launchers.clear();
    }
}

async fn reply(w: &mut tokio::net::tcp::OwnedWriteHalf, v: Value) {
    let mut line = v.to_string();
    line.push('\n');
    let _ = w.write_all(line.as_bytes()).await;
}

async fn serve(stream: TcpStream, state: Arc<Mutex<State>>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    let n = (&mut reader)
        .take(LINE_MAX as u64)
        .read_line(&mut line)
        .await
        .unwrap_or(0);
    if n == 0 || !line.ends_with('\n') {
        reply(&mut write, json!({"error": "expected one JSON line"})).await;
        return;
    }
    let Ok(msg) = serde_json::from_str::<Value>(line.trim()) else {
        reply(&mut write, json!({"error": "not JSON"})).await;
        return;
    };
    match msg["role"].as_str() {
        Some("proxy") => proxy(msg, write, state).await,
        Some("launch") => launch(msg, write, state).await,
        Some("rank-exit") => {
            let rank = msg["rank"].as_u64().and_then(|r| u32::try_from(r).ok());
            let code = msg["code"].as_i64().and_then(|c| i32::try_from(c).ok());
            let answer = match (rank, code) {
                (Some(rank), Some(code)) => {
                    if let Some(tx) = &lock(&state).rank_exits {
                        let _ = tx.send(RankExit { rank, code });
                    }
                    json!({"ok": true})
                }
                _ => json!({"error": "rank-exit needs a rank number and an exit code"}),
            };
            reply(&mut write, answer).await;
        }
        _ => {
            let e = "role must be proxy, launch or rank-exit";
            reply(&mut write, json!({ "error": e })).await
        }
    }
}

/// Checks a node index and claims it for one side; the error to send otherwise.
fn claim(s: &mut State, node: Option<u64>, launch: bool) -> Result<u32, String> {
    let Some(node) = node.and_then(|n| u32::try_from(n).ok()) else {
        return Err("node must be a node index".into());
    };
    if node >= s.nodes {
        return Err(format!(
            "node {node} is not below the job's {} nodes",
            s.nodes
        ));
    }
    let claimed = if launch {
        &mut s.claimed_launch
    } else {
        &mut s.claimed_proxy
    };
    if std::mem::replace(&mut claimed[node as usize], true) {
        return Err(format!("node {node} is already claimed"));
    }
    Ok(node)
}

enum Next<T> {
    Reply(Value),
    Wait(oneshot::Receiver<T>),
}

async fn proxy(msg: Value, mut write: tokio::net::tcp::OwnedWriteHalf, state: Arc<Mutex<State>>) {
    let next = {
        let mut s = lock(&state);
        match claim(&mut s, msg["node"].as_u64(), false) {
            Err(e) => Next::Reply(json!({ "error": e })),
            Ok(node) => match s.pending.remove(&node) {
                Some(cmd) => Next::Reply(json!({ "command": cmd })),
                None => {
                    let (tx, rx) = oneshot::channel();
                    s.waiting.insert(node, tx);
                    Next::Wait(rx)
                }
            },
        }
    };
    match next {
        Next::Reply(v) => reply(&mut write, v).await,
        Next::Wait(rx) => {
            if let Ok(cmd) = rx.await {
                reply(&mut write, json!({ "command": cmd })).await;
            }
        }
    }
}

async fn launch(msg: Value, mut write: tokio::net::tcp::OwnedWriteHalf, state: Arc<Mutex<State>>) {
    let Some(command) = msg["command"].as_str().filter(|c| !c.trim().is_empty()) else {
        reply(&mut write, json!({"error": "command is empty"})).await;
        return;
    };
    let host = msg["host"].as_str().unwrap_or("");
    let next = {
        let mut s = lock(&state);
        match claim(&mut s, node_of_host(host).map(u64::from), true) {
            Err(e) => Next::Reply(json!({
                "error": format!("host {host:?}: {e} (hosts are {HOST_PREFIX}<i>)")
            })),
            Ok(node) => {
                match s.waiting.remove(&node) {
                    Some(tx) => {
                        let _ = tx.send(command.to_string());
                    }
                    None => {
                        s.pending.insert(node, command.to_string());
                    }
                }
                match s.exits.remove(&node) {
                    Some(code) => Next::Reply(json!({ "exit": code })),
                    None => {
                        let (tx, rx) = oneshot::channel();
                        s.launchers.insert(node, tx);
                        Next::Wait(rx)
                    }
                }
            }
        }
    };
    match next {
        Next::Reply(v) => reply(&mut write, v).await,
        Next::Wait(rx) => match rx.await {
            Ok(code) => reply(&mut write, json!({ "exit": code })).await,
            Err(_) => reply(&mut write, json!({"error": "the job ended"})).await,
        },
    }
}

/// What `tessera mpi launch-agent` does with its arguments (ssh's or rsh's): options
/// before the host are dropped (`-x`, `-o X`), the host picks the node, and the rest,
/// joined with spaces, is the shell command (launchers quote it for a remote shell).
pub fn split_launch_args(args: &[String]) -> Option<(String, String)> {
    let mut i = 0;
    while i < args.len() && args[i].starts_with('-') {
        // ssh's options that take a value.
        if matches!(args[i].as_str(), "-o" | "-p" | "-l" | "-i" | "-F") {
            i += 1;
        }
        i += 1;
    }
    let host = args.get(i)?.clone();
    // Open MPI asks orted to daemonize when it is not tree-spawned; as a task it must stay
    // in the foreground (the task ending would take the daemon with it).
    let command = args
        .get(i + 1..)?
        .iter()
        .filter(|a| a.as_str() != "--daemonize")
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    if command.trim().is_empty() {
        return None;
    }
    Some((host, command))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn launch_args_like_ssh_and_rsh() {
        let hydra = v(&[
            "-x",
            "tessera-node-1",
            "\"/usr/bin/hydra_pmi_proxy\"",
            "--control-port",
            "1.2.3.4:5",
        ]);
        assert_eq!(
            split_launch_args(&hydra),
            Some((
                "tessera-node-1".into(),
                "\"/usr/bin/hydra_pmi_proxy\" --control-port 1.2.3.4:5".into()
            ))
        );
        let orte = v(&[
            "tessera-node-0",
            "orted",
            "--daemonize",
            "-mca",
            "ess",
            "\"env\"",
        ]);
        assert_eq!(
            split_launch_args(&orte),
            Some(("tessera-node-0".into(), "orted -mca ess \"env\"".into()))
        );
        assert_eq!(split_launch_args(&v(&["-o", "X", "h"])), None);
        assert_eq!(node_of_host("tessera-node-12"), Some(12));
        assert_eq!(node_of_host("agentA"), None);
    }
}

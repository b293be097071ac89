//! The parent side of `--processes N`: starts N `sim-agents` processes (the current binary,
//! re-executed) that attach their agents to the master's real gRPC listener, waits until all
//! are registered, watches that none dies, and at the end stops them and sums what they saw.
//!
//! No child outlives the parent: the children stop when their stdin closes, which happens
//! when the parent closes it, drops it (errors), or dies (even by SIGKILL); every child is
//! also killed when its handle is dropped (`kill_on_drop`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::SimError;
use crate::remote::{ChildMsg, ChildReport};

/// The hidden subcommand of the `tessera` binary that hosts simulated agents.
pub const AGENTS_SUBCOMMAND: &str = "sim-agents";

/// How long the children have to report after being told to stop.
const STOP_GRACE: Duration = Duration::from_secs(30);

struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    agents: usize,
}

pub(crate) struct Children {
    procs: Vec<Proc>,
    lines: mpsc::UnboundedReceiver<(usize, ChildMsg)>,
}

/// What the children saw, summed.
#[derive(Debug, Default, Clone)]
pub(crate) struct Totals {
    pub tasks_run: u64,
    pub tasks_finished: u64,
    pub overcommits: u64,
    pub peak_rss_bytes: u64,
}

/// How `agents` agents are split over `n` processes: (first index, count) each.
pub(crate) fn split(agents: usize, n: usize) -> Vec<(usize, usize)> {
    let (base, extra) = (agents / n, agents % n);
    let mut first = 0;
    (0..n)
        .map(|p| {
            let count = base + usize::from(p < extra);
            let part = (first, count);
            first += count;
            part
        })
        .collect()
}

/// Starts `n` children hosting `agents` agents with `resources` each, attached to `master`.
pub(crate) fn spawn(
    exe: Option<&PathBuf>,
    master: SocketAddr,
    agents: usize,
    n: usize,
    resources: &str,
) -> Result<Children, SimError> {
    let exe = match exe {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| SimError::Io(format!("cannot find the current executable: {e}")))?,
    };
    let (tx, lines) = mpsc::unbounded_channel();
    let mut procs = Vec::with_capacity(n);
    for (p, (first, count)) in split(agents, n).into_iter().enumerate() {
        let mut child = Command::new(&exe)
            .arg(AGENTS_SUBCOMMAND)
            .arg("--master")
            .arg(master.to_string())
            .arg("--count")
            .arg(count.to_string())
            .arg("--first-index")
            .arg(first.to_string())
            .arg("--resources")
            .arg(resources)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| SimError::Io(format!("cannot start {}: {e}", exe.display())))?;
        let stdin = child.stdin.take();
        if let Some(out) = child.stdout.take() {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match serde_json::from_str::<ChildMsg>(&line) {
                        Ok(m) => {
                            let _ = tx.send((p, m));
                        }
                        Err(_) => eprintln!("agent process {p}: {line}"),
                    }
                }
            });
        }
        procs.push(Proc {
            child,
            stdin,
            agents: count,
        });
    }
    Ok(Children { procs, lines })
}

impl Children {
    /// An error if a child has exited (they run until told to stop).
    pub(crate) fn check_alive(&mut self) -> Result<(), SimError> {
        for (p, pr) in self.procs.iter_mut().enumerate() {
            if let Ok(Some(status)) = pr.child.try_wait() {
                return Err(SimError::Io(format!(
                    "agent process {p} ({} agents) exited early: {status}",
                    pr.agents
                )));
            }
        }
        Ok(())
    }

    /// Waits until every child says all its agents are registered.
    pub(crate) async fn wait_ready(&mut self, timeout: Duration) -> Result<(), SimError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut ready = vec![false; self.procs.len()];
        while !ready.iter().all(|r| *r) {
            tokio::select! {
                Some((p, m)) = self.lines.recv() => {
                    if let ChildMsg::Ready { .. } = m {
                        ready[p] = true;
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            self.check_alive()?;
            if tokio::time::Instant::now() >= deadline {
                let n = ready.iter().filter(|r| !**r).count();
                return Err(SimError::Io(format!(
                    "{n} agent process(es) did not register their agents within {timeout:?}"
                )));
            }
        }
        Ok(())
    }

    /// Tells every child to stop (closes its stdin), collects their reports and waits for
    /// them to exit; those that do not within the grace are killed.
    pub(crate) async fn finish(mut self) -> Result<Totals, SimError> {
        for pr in &mut self.procs {
            pr.stdin = None;
        }
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        let mut reports: Vec<Option<ChildReport>> = vec![None; self.procs.len()];
        while reports.iter().any(Option::is_none) {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some((p, ChildMsg::Done(r)))) => reports[p] = Some(r),
                Ok(Some(_)) => {}
                // Every reader ended (all children closed stdout), or the grace is over.
                Ok(None) | Err(_) => break,
            }
        }
        for pr in &mut self.procs {
            if tokio::time::timeout_at(deadline, pr.child.wait())
                .await
                .is_err()
            {
                let _ = pr.child.kill().await;
            }
        }
        let missing = reports.iter().filter(|r| r.is_none()).count();
        if missing > 0 {
            return Err(SimError::Io(format!(
                "{missing} agent process(es) exited without reporting"
            )));
        }
        let mut t = Totals::default();
        for r in reports.into_iter().flatten() {
            t.tasks_run += r.tasks_run;
            t.tasks_finished += r.tasks_finished;
            t.overcommits += r.overcommits;
            t.peak_rss_bytes += r.peak_rss_bytes;
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_are_split_evenly_and_contiguously() {
        assert_eq!(split(10, 3), vec![(0, 4), (4, 3), (7, 3)]);
        assert_eq!(split(4, 4), vec![(0, 1), (1, 1), (2, 1), (3, 1)]);
        let parts = split(1000, 4);
        assert_eq!(parts.iter().map(|p| p.1).sum::<usize>(), 1000);
    }
}

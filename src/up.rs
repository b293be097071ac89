//! Running the parts: `tessera up` (master + N agents in one process), `tessera master`,
//! `tessera agent`. Ctrl-C or SIGTERM stops agents first (they kill their tasks and flush
//! final updates), then the master.

use std::time::Duration;

use anyhow::{Context, Result};
use tessera_agent::AgentConfig;
use tessera_master::MasterConfig;
use tessera_types::{Resource, ResourceKey, Resources, Scalar, Value, ranges::Ranges};
use tokio_util::sync::CancellationToken;

use crate::settings::UpConfig;

/// How long agents get to kill tasks and report before the master stops anyway.
const AGENT_STOP_GRACE: Duration = Duration::from_secs(15);

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Splits this machine's resources into `n` equal shares (scalars divided, port range cut
/// into `n` disjoint pieces) so co-located agents never offer the same thing twice.
pub fn share_of_machine(total: &Resources, n: usize, i: usize) -> Resources {
    let n64 = n as u64;
    let mut out = Vec::new();
    for (key, value) in total.iter() {
        let v = match value {
            Value::Scalar(s) => Value::Scalar(Scalar::from_milli(s.milli() / n64)),
            Value::Ranges(r) => {
                let all: Vec<(u64, u64)> = r.iter().collect();
                let count = r.count();
                let per = count / n64;
                if per == 0 {
                    continue;
                }
                // Walk the ranges and take the i-th slice of `per` values.
                let (start, end) = (per * i as u64, per * (i as u64 + 1));
                let mut picked = Vec::new();
                let mut offset = 0u64;
                for (b, e) in all {
                    let len = e - b + 1;
                    let lo = start.max(offset);
                    let hi = end.min(offset + len);
                    if lo < hi {
                        picked.push((b + (lo - offset), b + (hi - offset) - 1));
                    }
                    offset += len;
                }
                match Ranges::new("ports", picked) {
                    Ok(r) => Value::Ranges(r),
                    Err(_) => continue,
                }
            }
            Value::Set(s) => Value::Set(s.clone()),
        };
        out.push(Resource {
            key: ResourceKey {
                name: key.name.clone(),
                reservations: key.reservations.clone(),
            },
            value: v,
        });
    }
    Resources::from_resources("resources", out).unwrap_or_default()
}

pub async fn run_up(cfg: UpConfig) -> Result<()> {
    let master_stop = CancellationToken::new();
    let agents_stop = CancellationToken::new();
    let running = tessera_master::start(cfg.master.clone(), master_stop.clone())
        .await
        .context("starting the master")?;
    let addr = running.addr;
    let detected = tessera_agent::detect_resources(&cfg.root)?;
    let mut agents = Vec::new();
    for i in 0..cfg.agents {
        let share = share_of_machine(&detected, cfg.agents, i);
        let mut ac = AgentConfig::new(addr.to_string(), cfg.root.join(format!("agent-{i}")), share);
        ac.hostname = format!("{}-agent{i}", ac.hostname);
        ac.http_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        std::fs::create_dir_all(&ac.work_dir)?;
        let stop = agents_stop.clone();
        agents.push(tokio::spawn(
            async move { tessera_agent::run(ac, stop).await },
        ));
    }
    println!("Tessera is up.");
    println!("  master:    http://{addr}  (agents attach here over gRPC)");
    println!(
        "  state:     http://{addr}/master/state (Mesos) and /tessera/state   health: http://{addr}/health"
    );
    println!(
        "  agents:    {} sharing this machine ({} each)",
        cfg.agents,
        share_of_machine(&detected, cfg.agents, 0)
    );
    println!("  work dir:  {}", cfg.root.display());
    println!("  logs:      {} (and stderr)", cfg.log_file.display());
    println!("  stop with Ctrl-C");
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = master_stop.cancelled() => {}
    }
    println!("Stopping: killing running tasks…");
    agents_stop.cancel();
    let wait_agents = async {
        for a in agents {
            match a.await {
                Ok(Err(e)) => tracing::warn!(error = %e, "agent stopped with an error"),
                Err(e) => tracing::warn!(error = %e, "agent task panicked"),
                Ok(Ok(())) => {}
            }
        }
    };
    if tokio::time::timeout(AGENT_STOP_GRACE, wait_agents)
        .await
        .is_err()
    {
        tracing::warn!(
            "agents did not stop within {AGENT_STOP_GRACE:?}; stopping the master anyway"
        );
    }
    master_stop.cancel();
    let _ = running.join.await;
    println!("Tessera stopped.");
    Ok(())
}

pub async fn run_master(cfg: MasterConfig) -> Result<()> {
    let stop = CancellationToken::new();
    let running = tessera_master::start(cfg.clone(), stop.clone()).await?;
    println!(
        "Tessera master {} listening on http://{} (work dir {})",
        running.master_id,
        running.addr,
        cfg.work_dir.display()
    );
    shutdown_signal().await;
    stop.cancel();
    let _ = running.join.await;
    Ok(())
}

pub async fn run_agent(cfg: AgentConfig) -> Result<()> {
    let stop = CancellationToken::new();
    println!(
        "Tessera agent offering {} to master {} (work dir {})",
        cfg.resources,
        cfg.master,
        cfg.work_dir.display()
    );
    let s = stop.clone();
    let agent = tokio::spawn(async move { tessera_agent::run(cfg, s).await });
    tokio::select! {
        _ = shutdown_signal() => {}
    }
    stop.cancel();
    agent.await.context("agent task")??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_types::parse::parse_resources;

    #[test]
    fn shares_do_not_overlap_and_add_up() {
        let total = parse_resources("cpus:2;mem:1000;ports:[31000-32000]").unwrap();
        let a = share_of_machine(&total, 3, 0);
        let b = share_of_machine(&total, 3, 1);
        let c = share_of_machine(&total, 3, 2);
        assert_eq!(a.scalar("cpus"), Scalar::from_milli(666));
        let pa = a.ranges("ports");
        let pb = b.ranges("ports");
        assert_eq!(pa.difference(&pb), pa, "port ranges must be disjoint");
        let sum = a.checked_add(&b).unwrap().checked_add(&c).unwrap();
        assert!(total.contains(&sum), "shares must fit in the machine");
    }
}

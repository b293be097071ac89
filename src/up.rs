//! Running the parts: `tessera up` (master + N agents in one process), `tessera master`,
//! `tessera agent`. Ctrl-C or SIGTERM stops agents first (they kill their tasks and flush
//! final updates), then the master.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tessera_agent::AgentConfig;
use tessera_batch::service::{BatchConfig, Clock, Service};
use tessera_master::MasterConfig;
use tessera_types::{Resource, Resources, Scalar, Value, ranges::Ranges};
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
            key: key.clone(),
            value: v,
        });
    }
    Resources::from_resources("resources", out).unwrap_or_default()
}

/// The batch scheduler hosted next to a master: its REST routes go on the master's port,
/// its framework subscribes to the master over the v1 API once it listens.
struct HostedBatch {
    svc: Arc<Service>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl HostedBatch {
    fn open(store: std::path::PathBuf) -> Result<HostedBatch> {
        let svc = Service::open(BatchConfig::new("", store), Clock::Wall)
            .context("opening the batch scheduler's job store")?;
        Ok(HostedBatch {
            svc,
            stop: CancellationToken::new(),
            task: None,
        })
    }

    fn routes(&self) -> axum::Router {
        tessera_batch::rest::router(Arc::clone(&self.svc))
    }

    fn start(&mut self, master: std::net::SocketAddr) {
        let addr = if master.ip().is_unspecified() {
            std::net::SocketAddr::from(([127, 0, 0, 1], master.port()))
        } else {
            master
        };
        self.svc.set_master(addr.to_string());
        let svc = Arc::clone(&self.svc);
        let stop = self.stop.clone();
        self.task = Some(tokio::spawn(async move {
            if let Err(e) = svc.run(stop).await {
                tracing::error!(error = %e, "the batch scheduler stopped");
            }
        }));
    }

    /// Stops the framework first, so task kills during shutdown are not recorded as job
    /// failures; the tasks are reconciled when it comes back.
    async fn stop(self) {
        self.stop.cancel();
        if let Some(t) = self.task {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// The MPI service (`/mpi/v1`, `tessera mpi submit|queue|…`) on the master's port: its
/// routes exist from the start and answer 503 until the master's address is known.
struct HostedMpi {
    slot: tessera_mpi::rest::Slot,
}

impl HostedMpi {
    fn new() -> HostedMpi {
        HostedMpi {
            slot: Default::default(),
        }
    }

    fn routes(&self) -> axum::Router {
        tessera_mpi::rest::router(self.slot.clone())
    }

    fn start(&self, master: std::net::SocketAddr) -> Result<()> {
        let addr = if master.ip().is_unspecified() {
            std::net::SocketAddr::from(([127, 0, 0, 1], master.port()))
        } else {
            master
        };
        let svc = tessera_mpi::service::MpiService::start(tessera_mpi::service::ServiceConfig {
            master: addr.to_string(),
            framework_name: "tessera-mpi".into(),
            user: std::env::var("USER").unwrap_or_else(|_| "root".into()),
            roles: vec![tessera_types::Role::any()],
            hold: Duration::from_secs(10),
            release_refuse: Duration::from_secs(1),
            failover_timeout: Duration::ZERO,
            tessera_exe: std::env::current_exe().context("locating the tessera binary")?,
            bind: None,
        });
        let _ = self.slot.set(Arc::new(svc));
        Ok(())
    }

    async fn stop(self) {
        if let Some(svc) = self.slot.get() {
            svc.shutdown().await;
        }
    }
}

pub async fn run_up(cfg: UpConfig) -> Result<()> {
    let master_stop = CancellationToken::new();
    let agents_stop = CancellationToken::new();
    let mut batch = if cfg.batch {
        Some(HostedBatch::open(
            cfg.root.join("batch").join("batch.sqlite"),
        )?)
    } else {
        None
    };
    let mpi = HostedMpi::new();
    let routes = batch
        .as_ref()
        .map(HostedBatch::routes)
        .unwrap_or_default()
        .merge(mpi.routes());
    let running = tessera_master::start_with(cfg.master.clone(), routes, master_stop.clone())
        .await
        .context("starting the master")?;
    let addr = running.addr;
    if let Some(b) = batch.as_mut() {
        b.start(addr);
    }
    mpi.start(addr)?;
    let detected = tessera_agent::detect_resources(&cfg.root)?;
    let mut agents = Vec::new();
    for i in 0..cfg.agents {
        let share = share_of_machine(&detected, cfg.agents, i);
        let mut ac = AgentConfig::new(addr.to_string(), cfg.root.join(format!("agent-{i}")), share);
        ac.hostname = format!("{}-agent{i}", ac.hostname);
        ac.http_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        // A single-machine cluster run by a user cannot switch to frameworks' users (they
        // often say "root"); as root it runs each task as its user, as a Mesos agent does.
        ac.switch_user = tessera_agent::user::running_as_root();
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
    if batch.is_some() {
        println!("  batch:     tessera batch submit -- CMD   (REST: http://{addr}/batch/v1/jobs)");
    }
    println!("  work dir:  {}", cfg.root.display());
    println!("  logs:      {} (and stderr)", cfg.log_file.display());
    println!("  stop with Ctrl-C");
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = master_stop.cancelled() => {}
    }
    println!("Stopping: killing running tasks…");
    mpi.stop().await;
    if let Some(b) = batch {
        b.stop().await;
    }
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

pub async fn run_master(cfg: MasterConfig, host_batch: bool) -> Result<()> {
    let stop = CancellationToken::new();
    let mut batch = if host_batch {
        Some(HostedBatch::open(
            cfg.work_dir.join("batch").join("batch.sqlite"),
        )?)
    } else {
        None
    };
    let mpi = HostedMpi::new();
    let routes = batch
        .as_ref()
        .map(HostedBatch::routes)
        .unwrap_or_default()
        .merge(mpi.routes());
    let running = tessera_master::start_with(cfg.clone(), routes, stop.clone()).await?;
    if let Some(b) = batch.as_mut() {
        b.start(running.addr);
    }
    mpi.start(running.addr)?;
    println!(
        "Tessera master {} listening on http://{} (work dir {})",
        running.master_id,
        running.addr,
        cfg.work_dir.display()
    );
    shutdown_signal().await;
    mpi.stop().await;
    if let Some(b) = batch {
        b.stop().await;
    }
    stop.cancel();
    let _ = running.join.await;
    Ok(())
}

/// `tessera batch serve`: the batch scheduler on its own, against a master.
pub async fn run_batch_serve(args: &crate::batch_cli::ServeArgs) -> Result<()> {
    let master = crate::settings::master_address(args.master.as_deref());
    let store = args.store.clone().unwrap_or_else(|| {
        crate::settings::data_dir()
            .join("batch")
            .join("batch.sqlite")
    });
    let mut bc = BatchConfig::new(master.clone(), store.clone());
    bc.limits.queues = args
        .queues
        .split(',')
        .map(|q| q.trim().to_string())
        .filter(|q| !q.is_empty())
        .collect();
    let svc = Service::open(bc, Clock::Wall).context("opening the job store")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let stop = CancellationToken::new();
    let app = tessera_batch::rest::router(Arc::clone(&svc));
    let s = stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { s.cancelled().await })
            .await
    });
    println!(
        "Tessera batch scheduler: REST on http://{} , master {master}, store {}",
        args.listen,
        store.display()
    );
    let driver = tokio::spawn(Arc::clone(&svc).run(stop.clone()));
    shutdown_signal().await;
    stop.cancel();
    let _ = driver.await;
    let _ = server.await;
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

//! `tessera bench containers`: process containers launched and destroyed per second on one
//! agent's launcher, without the master: each container runs `true` in its own sandbox (and,
//! with cgroups, its own cgroups), and is waited for and cleaned up.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, bail};
use tessera_agent::{CgroupLauncher, LaunchSpec, Launcher, ProcessLauncher};
use tessera_types::CommandInfo;
use tessera_types::parse::parse_resources;
use tokio::sync::Semaphore;

#[derive(Debug, serde::Serialize)]
pub struct ContainersReport {
    pub launcher: String,
    pub containers: usize,
    pub concurrency: usize,
    pub wall_seconds: f64,
    pub per_second: f64,
}

async fn run_one(launcher: &dyn Launcher, root: &std::path::Path, i: usize) -> Result<()> {
    let id = format!("bench-{i}-{}", uuid_like(i));
    let sandbox = root.join(&id);
    std::fs::create_dir_all(&sandbox)?;
    let mut env = std::collections::BTreeMap::new();
    env.insert("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into());
    let spec = LaunchSpec {
        container_id: id,
        sandbox: sandbox.clone(),
        command: CommandInfo::shell("true"),
        env,
        resources: parse_resources("cpus:0.1;mem:32")?,
        container: None,
        user: None,
        volumes: Vec::new(),
    };
    let c = launcher.launch(spec).await?;
    c.wait().await?;
    std::fs::remove_dir_all(&sandbox)?;
    Ok(())
}

fn uuid_like(i: usize) -> String {
    format!("{:x}{:x}", std::process::id(), i)
}

async fn measure(
    name: &str,
    launcher: Arc<dyn Launcher>,
    count: usize,
    concurrency: usize,
) -> Result<ContainersReport> {
    let root = std::env::temp_dir().join(format!(
        "tessera-bench-containers-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&root)?;
    let sem = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut joins = Vec::with_capacity(count);
    for i in 0..count {
        let permit = sem.clone().acquire_owned().await?;
        let l = launcher.clone();
        let r = root.clone();
        joins.push(tokio::spawn(async move {
            let out = run_one(l.as_ref(), &r, i).await;
            drop(permit);
            out
        }));
    }
    for j in joins {
        j.await??;
    }
    let wall = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&root);
    Ok(ContainersReport {
        launcher: name.to_string(),
        containers: count,
        concurrency,
        wall_seconds: wall,
        per_second: count as f64 / wall,
    })
}

pub async fn containers(count: usize, concurrency: usize, json: bool) -> Result<()> {
    if count == 0 || concurrency == 0 {
        bail!("count and concurrency: must be at least 1");
    }
    let mut reports =
        vec![measure("process", Arc::new(ProcessLauncher), count, concurrency).await?];
    match CgroupLauncher::probe(&format!("tessera-bench-{}", std::process::id())) {
        Ok(l) => {
            let roots = l.cgroups().root_dirs();
            let r = measure("cgroups", Arc::new(l), count, concurrency).await;
            // The per-bench cgroups roots are empty now; leave nothing behind.
            for d in roots {
                let _ = std::fs::remove_dir(&d);
            }
            reports.push(r?);
        }
        Err(e) => eprintln!("cgroups launcher not measured: {e}"),
    }
    for r in &reports {
        if json {
            println!("{}", serde_json::to_string(r)?);
        } else {
            println!(
                "{} launcher: {} containers launched, run and destroyed in {:.2} s ({:.0}/s, {} in flight)",
                r.launcher, r.containers, r.wall_seconds, r.per_second, r.concurrency
            );
        }
    }
    Ok(())
}

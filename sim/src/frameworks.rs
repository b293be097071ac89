//! Simulated frameworks: each subscribes through the master's own framework path (the one
//! the v1 HTTP API feeds), receives OFFERS and status updates on its event queue, and
//! answers like a real scheduler of its kind: pack pending tasks into offers, launch a gang
//! only when a whole gang fits, or decline everything.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tessera_master::{Event, MasterHandle, Operation};
use tessera_types::{
    CommandInfo, Filters, FrameworkInfo, Resources, Role, TaskId, TaskInfo, TaskState,
};
use tokio_util::sync::CancellationToken;

use crate::rng::SplitMix;

/// What one simulated framework does.
#[derive(Debug, Clone)]
pub struct FwPlan {
    pub index: usize,
    pub role: Role,
    /// Tasks to run in all; `u64::MAX` = unending demand.
    pub tasks: u64,
    /// Task durations in seconds, drawn uniformly from this range; `None` = run forever.
    pub duration: Option<(f64, f64)>,
    /// Ranks per gang (1 = independent tasks).
    pub gang: u64,
    /// When (virtual time after start) it subscribes.
    pub subscribe_at: Duration,
    pub decline_all: bool,
    /// Refusal filter on declined offers.
    pub refuse: Duration,
    pub seed: u64,
}

/// What one framework measured.
#[derive(Debug, Default, Clone)]
pub struct FwStats {
    pub index: usize,
    pub role: String,
    pub launched: u64,
    pub placed: u64,
    pub finished: u64,
    /// Wall-clock µs from receiving the OFFERS event to receiving TASK_RUNNING.
    pub offer_to_running_us: Vec<u32>,
    /// Digest of (task, agent) in launch order: equal runs give equal digests.
    pub digest: u64,
    pub offers_received: u64,
    pub offers_declined: u64,
}

/// Totals every framework adds to as it goes (for progress and utilisation samples).
#[derive(Debug, Default)]
pub struct Live {
    pub placed: AtomicU64,
    pub running: AtomicU64,
    pub done_frameworks: AtomicU64,
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// How many tasks of (cpus, mem) in milli-units fit in `r`.
fn fit_count(r: &Resources, cpus: u64, mem: u64) -> u64 {
    let c = r.scalar("cpus").milli();
    let m = r.scalar("mem").milli();
    let by_cpu = c.checked_div(cpus).unwrap_or(u64::MAX);
    let by_mem = m.checked_div(mem).unwrap_or(u64::MAX);
    by_cpu.min(by_mem)
}

pub async fn run(
    h: MasterHandle,
    plan: FwPlan,
    task_resources: Resources,
    live: Arc<Live>,
    stop: CancellationToken,
) -> FwStats {
    let mut stats = FwStats {
        index: plan.index,
        role: plan.role.to_string(),
        digest: 0xcbf2_9ce4_8422_2325,
        ..Default::default()
    };
    tokio::select! {
        _ = tokio::time::sleep(plan.subscribe_at) => {}
        _ = stop.cancelled() => return stats,
    }
    let info = FrameworkInfo {
        id: None,
        name: format!("sim-{}", plan.index),
        user: "sim".into(),
        roles: vec![plan.role.clone()],
        capabilities: vec![],
        failover_timeout_secs: 0.0,
        principal: None,
        hostname: None,
    };
    let Ok(mut sub) = h.subscribe(info).await else {
        return stats;
    };
    let fw = sub.framework_id.clone();
    let (tc, tm) = (
        task_resources.scalar("cpus").milli(),
        task_resources.scalar("mem").milli(),
    );
    let mut rng = SplitMix::new(plan.seed);
    let mut remaining = plan.tasks;
    let mut launched_at: HashMap<TaskId, std::time::Instant> = HashMap::new();
    let mut suppressed = false;
    let refuse = Filters {
        refuse_seconds: plan.refuse.as_secs_f64(),
    };
    loop {
        let ev = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            ev = sub.events.recv() => match ev { Some(ev) => ev, None => break },
        };
        match ev {
            Event::Offers(offers) => {
                let seen = std::time::Instant::now();
                stats.offers_received += offers.len() as u64;
                if plan.decline_all || remaining == 0 {
                    let ids = offers.iter().map(|o| o.id.clone()).collect::<Vec<_>>();
                    stats.offers_declined += ids.len() as u64;
                    let _ = h.decline(fw.clone(), ids, refuse).await;
                    if remaining == 0 && !suppressed {
                        suppressed = true;
                        let _ = h.suppress(fw.clone(), None).await;
                    }
                    continue;
                }
                // Whole gangs only: count what the event holds first.
                let room: u64 = offers.iter().map(|o| fit_count(&o.resources, tc, tm)).sum();
                let mut budget = remaining.min(room);
                if plan.gang > 1 {
                    budget = budget / plan.gang * plan.gang;
                }
                for o in offers {
                    let k = fit_count(&o.resources, tc, tm).min(budget);
                    if k == 0 {
                        stats.offers_declined += 1;
                        let _ = h.decline(fw.clone(), vec![o.id.clone()], refuse).await;
                        continue;
                    }
                    budget -= k;
                    let mut tasks = Vec::with_capacity(k as usize);
                    for _ in 0..k {
                        let seq = stats.launched;
                        stats.launched += 1;
                        let Ok(id) = TaskId::new(format!("t{}-{seq}", plan.index)) else {
                            continue;
                        };
                        let cmd = match plan.duration {
                            Some((lo, hi)) => format!("sleep {:.3}", lo + (hi - lo) * rng.unit()),
                            None => "sleep infinity".to_string(),
                        };
                        stats.digest = fnv(stats.digest, id.as_str().as_bytes());
                        stats.digest = fnv(stats.digest, o.hostname.as_bytes());
                        launched_at.insert(id.clone(), seen);
                        tasks.push(TaskInfo {
                            name: id.to_string(),
                            task_id: id,
                            agent_id: o.agent_id.clone(),
                            resources: task_resources.clone(),
                            command: CommandInfo::shell(cmd),
                            executor_id: None,
                            kill_grace_ms: None,
                            container: None,
                            health_check: None,
                            executor: None,
                        });
                    }
                    remaining = remaining.saturating_sub(tasks.len() as u64);
                    let _ = h
                        .accept(
                            fw.clone(),
                            vec![o.id.clone()],
                            vec![Operation::Launch(tasks)],
                            refuse,
                        )
                        .await;
                }
            }
            Event::Update(s) => match s.state {
                TaskState::TaskRunning => {
                    stats.placed += 1;
                    live.placed.fetch_add(1, Ordering::Relaxed);
                    live.running.fetch_add(1, Ordering::Relaxed);
                    if let Some(t) = launched_at.remove(&s.task_id) {
                        stats
                            .offer_to_running_us
                            .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                }
                st if st.is_terminal() => {
                    stats.finished += 1;
                    live.running.fetch_sub(1, Ordering::Relaxed);
                    if stats.finished >= plan.tasks {
                        break;
                    }
                }
                _ => {}
            },
            Event::Error(_) => break,
            _ => {}
        }
    }
    live.done_frameworks.fetch_add(1, Ordering::Relaxed);
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_types::parse::parse_resources;

    #[test]
    fn fit_counts_take_the_scarcer_resource() {
        let r = parse_resources("cpus:4;mem:1000").unwrap();
        assert_eq!(fit_count(&r, 1000, 100_000), 4);
        assert_eq!(fit_count(&r, 100, 300_000), 3);
    }
}

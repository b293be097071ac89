//! `tessera bench fanout`: event throughput of the v1 scheduler API. F frameworks subscribe
//! over real HTTP (JSON, RecordIO), decline every offer with `refuse_seconds: 0` so offers
//! keep flowing, and launch one tiny task per OFFERS event that the simulated agents run
//! and finish at once (two UPDATEs each). Counts events received across all frameworks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tessera_master::MasterConfig;
use tokio_util::sync::CancellationToken;

use crate::bench_sim::{CallConn, start_agents, subscribe};

#[derive(Default)]
struct Counts {
    offers_events: AtomicU64,
    offers: AtomicU64,
    updates: AtomicU64,
    heartbeats: AtomicU64,
    calls: AtomicU64,
    subscribed: AtomicUsize,
}

impl Counts {
    fn snapshot(&self) -> [u64; 5] {
        [
            self.offers_events.load(Ordering::Relaxed),
            self.offers.load(Ordering::Relaxed),
            self.updates.load(Ordering::Relaxed),
            self.heartbeats.load(Ordering::Relaxed),
            self.calls.load(Ordering::Relaxed),
        ]
    }
}

#[derive(Debug, serde::Serialize)]
pub struct FanoutReport {
    pub frameworks: usize,
    pub agents: usize,
    pub seconds: f64,
    pub offers_events_per_second: f64,
    pub offers_per_second: f64,
    pub update_events_per_second: f64,
    pub events_per_second: f64,
    pub calls_per_second: f64,
}

async fn framework(addr: String, index: usize, counts: Arc<Counts>) -> Result<()> {
    let sub = json!({
        "type": "SUBSCRIBE",
        "subscribe": {"framework_info": {
            "user": "bench",
            "name": format!("bench-fanout-{index}"),
            "roles": [format!("bench{}", index % 10)],
            "capabilities": [{"type": "MULTI_ROLE"}],
        }},
    })
    .to_string();
    let (sid, mut stream) = subscribe(&addr, &sub).await?;
    let mut calls = CallConn::connect(&addr).await?;
    let mut fw = String::new();
    let mut next_task = 0u64;
    while let Some(rec) = stream.next().await? {
        let ev: Value = serde_json::from_slice(&rec)?;
        match ev["type"].as_str().unwrap_or("") {
            "SUBSCRIBED" => {
                fw = ev["subscribed"]["framework_id"]["value"]
                    .as_str()
                    .context("SUBSCRIBED without framework_id")?
                    .to_string();
                counts.subscribed.fetch_add(1, Ordering::Relaxed);
            }
            "OFFERS" => {
                let offers = ev["offers"]["offers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                counts.offers_events.fetch_add(1, Ordering::Relaxed);
                counts
                    .offers
                    .fetch_add(offers.len() as u64, Ordering::Relaxed);
                let Some((first, rest)) = offers.split_first() else {
                    continue;
                };
                let task = format!("f{index}-t{next_task}");
                next_task += 1;
                let accept = json!({
                    "type": "ACCEPT",
                    "framework_id": {"value": fw},
                    "accept": {
                        "offer_ids": [first["id"]],
                        "operations": [{"type": "LAUNCH", "launch": {"task_infos": [{
                            "name": task,
                            "task_id": {"value": task},
                            "agent_id": first["agent_id"],
                            "resources": [
                                {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.01}},
                                {"name": "mem", "type": "SCALAR", "scalar": {"value": 1}},
                            ],
                            "command": {"value": "true"},
                        }]}}],
                        "filters": {"refuse_seconds": 0},
                    },
                });
                let st = calls.post(&accept.to_string(), &sid).await?;
                if st != 202 {
                    bail!("ACCEPT answered {st}");
                }
                counts.calls.fetch_add(1, Ordering::Relaxed);
                if !rest.is_empty() {
                    let ids: Vec<&Value> = rest.iter().map(|o| &o["id"]).collect();
                    let decline = json!({
                        "type": "DECLINE",
                        "framework_id": {"value": fw},
                        "decline": {"offer_ids": ids, "filters": {"refuse_seconds": 0}},
                    });
                    let st = calls.post(&decline.to_string(), &sid).await?;
                    if st != 202 {
                        bail!("DECLINE answered {st}");
                    }
                    counts.calls.fetch_add(1, Ordering::Relaxed);
                }
            }
            "UPDATE" => {
                counts.updates.fetch_add(1, Ordering::Relaxed);
            }
            "HEARTBEAT" => {
                counts.heartbeats.fetch_add(1, Ordering::Relaxed);
            }
            "ERROR" => bail!("framework {index}: {}", ev["error"]["message"]),
            _ => {}
        }
    }
    bail!("framework {index}: the event stream ended")
}

pub async fn fanout(frameworks: usize, agents: usize, seconds: f64, json: bool) -> Result<()> {
    if frameworks == 0 || agents == 0 || seconds <= 0.0 {
        bail!("frameworks, agents and seconds: must be positive");
    }
    let root = std::env::temp_dir().join(format!("tessera-bench-fanout-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let stop = CancellationToken::new();
    let mut mc = MasterConfig::new("127.0.0.1:0".parse()?, root.join("master"));
    mc.agent_timeout = Duration::from_secs(24 * 3600);
    let master = tessera_master::start(mc, stop.clone()).await?;
    let h = master.handle.clone();
    let addr = master.addr.to_string();
    start_agents(&h, agents, "cpus:16;mem:65536;disk:65536", true, !json).await?;

    let counts = Arc::new(Counts::default());
    let mut drivers = Vec::new();
    for i in 0..frameworks {
        drivers.push(tokio::spawn(framework(addr.clone(), i, counts.clone())));
    }
    let t0 = Instant::now();
    while counts.subscribed.load(Ordering::Relaxed) < frameworks {
        if let Some(d) = drivers.iter_mut().find(|d| d.is_finished()) {
            d.await??;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("frameworks did not all subscribe within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Warm up one allocation period, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = counts.snapshot();
    let start = Instant::now();
    let mut last = Instant::now();
    while start.elapsed().as_secs_f64() < seconds {
        if let Some(d) = drivers.iter_mut().find(|d| d.is_finished()) {
            d.await??;
        }
        if !json && last.elapsed() > Duration::from_secs(1) {
            let now = counts.snapshot();
            eprint!(
                "\r{:.0} s: {} OFFERS events, {} UPDATE events",
                start.elapsed().as_secs_f64(),
                now[0] - before[0],
                now[2] - before[2]
            );
            last = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = counts.snapshot();
    let wall = start.elapsed().as_secs_f64();
    if !json {
        eprintln!();
    }
    for d in &drivers {
        d.abort();
    }
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), master.join).await;
    let _ = std::fs::remove_dir_all(&root);
    let rate = |i: usize| (after[i] - before[i]) as f64 / wall;
    let report = FanoutReport {
        frameworks,
        agents,
        seconds: wall,
        offers_events_per_second: rate(0),
        offers_per_second: rate(1),
        update_events_per_second: rate(2),
        events_per_second: rate(0) + rate(2) + rate(3),
        calls_per_second: rate(4),
    };
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} frameworks x {} agents over {:.1} s: {:.0} OFFERS events/s ({:.0} offers/s), {:.0} UPDATE events/s, {:.0} events/s in all; {:.0} calls/s",
            frameworks,
            agents,
            wall,
            report.offers_events_per_second,
            report.offers_per_second,
            report.update_events_per_second,
            report.events_per_second,
            report.calls_per_second
        );
    }
    Ok(())
}

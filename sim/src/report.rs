//! What a simulation measured: throughput, allocation cycle times, latency, memory and
//! fairness, as one JSON object (`--json`) or a readable summary; plus the per-cycle trace
//! (CSV) and a plot of role shares over time (SVG).
//!
//! Fairness is judged on weighted dominant shares (a role's dominant share divided by its
//! weight), which weighted DRF equalises:
//! * `jain_index` — Jain's index (Σx)²/(n·Σx²) over the roles' mean weighted shares in the
//!   last quarter of the run (1 = perfectly fair);
//! * `max_share_gap` — the largest |x_i − mean| / mean over the same window;
//! * `convergence_cycles` — allocation cycles after the last role joins until its raw
//!   dominant share is within 0.01 of its weighted fair share;
//! * `starved_roles` — roles with demand that never got a task launched.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::{FwStats, SimConfig};

/// One allocation run as the simulation saw it.
#[derive(Debug, Clone)]
pub struct Cycle {
    /// Virtual seconds since the workload started.
    pub t: f64,
    pub duration_ms: f64,
    pub offers: usize,
    pub running: u64,
    /// (role, weight, weighted dominant share).
    pub shares: Vec<(String, f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub profile: String,
    pub agents: usize,
    pub frameworks: usize,
    pub seed: u64,
    pub tasks_placed: u64,
    pub tasks_finished: u64,
    pub tasks_per_second: f64,
    pub wall_seconds: f64,
    pub virtual_seconds: f64,
    pub allocation_cycles: usize,
    pub alloc_cycle_ms_p50: f64,
    pub alloc_cycle_ms_p99: f64,
    pub offer_to_launch_ms_p99: f64,
    pub offers_received: u64,
    pub offers_declined: u64,
    pub peak_rss_bytes: u64,
    pub jain_index: Option<f64>,
    pub max_share_gap: Option<f64>,
    pub convergence_cycles: Option<usize>,
    pub starved_roles: Vec<String>,
    /// Each role's mean dominant share (not weighted) over the last quarter of the run.
    pub role_shares: BTreeMap<String, f64>,
    /// RunTasks that would have over-committed an agent (must be 0).
    pub overcommits: u64,
    /// RunTasks the agents received, and tasks they finished (their own count, which with
    /// `processes` crossed the network).
    pub agent_tasks_run: u64,
    pub agent_tasks_finished: u64,
    /// Agent processes (`--processes`); 0 = agents in the master's process.
    pub processes: usize,
    /// `virtual` (paused clock, in-process agents) or `real` (agent processes).
    pub clock: String,
    /// Peak RSS of the agent processes, summed (`peak_rss_bytes` is the master's process).
    pub agent_processes_peak_rss_bytes: Option<u64>,
    /// Digest of every launch (task, agent) in order: equal seeds give equal digests.
    pub decisions_digest: String,
}

pub(crate) struct Inputs<'a> {
    pub cfg: &'a SimConfig,
    pub stats: &'a [FwStats],
    pub cycles: &'a [Cycle],
    pub wall_seconds: f64,
    pub virtual_seconds: f64,
    /// Wall seconds until every task of a finite workload was placed.
    pub placing_seconds: Option<f64>,
    pub overcommits: u64,
    pub on_agents: OnAgents,
    /// (virtual time, role) of a role joining late.
    pub join: Option<(f64, String)>,
}

/// What the agents themselves counted.
#[derive(Debug, Default, Clone)]
pub(crate) struct OnAgents {
    pub tasks_run: u64,
    pub tasks_finished: u64,
    /// 0 = in-process agents.
    pub processes: usize,
    pub peak_rss_bytes: Option<u64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Jain's fairness index of `xs`; 1 when all are equal.
pub fn jain_index(xs: &[f64]) -> Option<f64> {
    let sum: f64 = xs.iter().sum();
    let sq: f64 = xs.iter().map(|x| x * x).sum();
    (!xs.is_empty() && sq > 0.0).then(|| sum * sum / (xs.len() as f64 * sq))
}

/// This process's peak resident set size (VmHWM).
pub(crate) fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Mean weighted share per role over the cycles at or after `from`.
fn mean_shares(cycles: &[Cycle], from: f64) -> BTreeMap<String, f64> {
    let mut sum: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for c in cycles.iter().filter(|c| c.t >= from) {
        for (r, _, s) in &c.shares {
            let e = sum.entry(r.clone()).or_default();
            e.0 += s;
            e.1 += 1;
        }
    }
    sum.into_iter()
        .map(|(r, (s, n))| (r, s / n.max(1) as f64))
        .collect()
}

/// Mean raw (unweighted) dominant share per role over the cycles at or after `from`.
fn raw_shares(cycles: &[Cycle], from: f64) -> BTreeMap<String, f64> {
    let mut sum: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for c in cycles.iter().filter(|c| c.t >= from) {
        for (r, w, s) in &c.shares {
            let e = sum.entry(r.clone()).or_default();
            e.0 += s * w;
            e.1 += 1;
        }
    }
    sum.into_iter()
        .map(|(r, (s, n))| (r, s / n.max(1) as f64))
        .collect()
}

pub(crate) fn build(i: Inputs<'_>) -> Report {
    let mut cycle_ms: Vec<f64> = i.cycles.iter().map(|c| c.duration_ms).collect();
    cycle_ms.sort_by(f64::total_cmp);
    let mut lat: Vec<f64> = i
        .stats
        .iter()
        .flat_map(|s| s.offer_to_running_us.iter().map(|u| *u as f64 / 1e3))
        .collect();
    lat.sort_by(f64::total_cmp);
    let placed: u64 = i.stats.iter().map(|s| s.placed).sum();
    let finished: u64 = i.stats.iter().map(|s| s.finished).sum();
    let mut digest = 0xcbf2_9ce4_8422_2325u64;
    for s in i.stats {
        digest = (digest ^ s.digest).wrapping_mul(0x100_0000_01b3);
    }
    // Roles with demand: every role of a framework that does not decline everything.
    let mut launched_by_role: BTreeMap<String, u64> = BTreeMap::new();
    for s in i.stats {
        *launched_by_role.entry(s.role.clone()).or_default() += s.launched;
    }
    let starved = if i.cfg.decline_all {
        vec![]
    } else {
        launched_by_role
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(r, _)| r.clone())
            .collect()
    };
    let demanding: Vec<String> = launched_by_role.keys().cloned().collect();
    let window = i.virtual_seconds * 0.75;
    let means = mean_shares(i.cycles, window);
    let xs: Vec<f64> = demanding
        .iter()
        .filter_map(|r| means.get(r).copied())
        .collect();
    let fair = !i.cfg.decline_all && xs.len() > 1;
    let mean = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    let gap = xs
        .iter()
        .map(|x| ((x - mean) / mean).abs())
        .fold(0.0, f64::max);
    let convergence = i.join.as_ref().and_then(|(at, role)| {
        i.cycles
            .iter()
            .filter(|c| c.t >= *at)
            .position(|c| {
                let mine = c.shares.iter().find(|(r, _, _)| r == role);
                let others: Vec<f64> = c
                    .shares
                    .iter()
                    .filter(|(r, _, _)| r != role && demanding.contains(r))
                    .map(|(_, _, s)| *s)
                    .collect();
                match mine {
                    Some((_, w, s)) if !others.is_empty() => {
                        let target = others.iter().sum::<f64>() / others.len() as f64;
                        ((s - target) * w).abs() <= 0.01
                    }
                    _ => false,
                }
            })
            .map(|k| k + 1)
    });
    let placing = i.placing_seconds.unwrap_or(i.wall_seconds).max(1e-9);
    Report {
        profile: format!("{:?}", i.cfg.profile).to_lowercase(),
        agents: i.cfg.agents,
        frameworks: i.cfg.frameworks,
        seed: i.cfg.seed,
        tasks_placed: placed,
        tasks_finished: finished,
        tasks_per_second: placed as f64 / placing,
        wall_seconds: i.wall_seconds,
        virtual_seconds: i.virtual_seconds,
        allocation_cycles: i.cycles.len(),
        alloc_cycle_ms_p50: percentile(&cycle_ms, 0.5),
        alloc_cycle_ms_p99: percentile(&cycle_ms, 0.99),
        offer_to_launch_ms_p99: percentile(&lat, 0.99),
        offers_received: i.stats.iter().map(|s| s.offers_received).sum(),
        offers_declined: i.stats.iter().map(|s| s.offers_declined).sum(),
        peak_rss_bytes: peak_rss(),
        jain_index: if fair { jain_index(&xs) } else { None },
        max_share_gap: fair.then_some(gap),
        convergence_cycles: convergence,
        starved_roles: starved,
        role_shares: raw_shares(i.cycles, window),
        overcommits: i.overcommits,
        agent_tasks_run: i.on_agents.tasks_run,
        agent_tasks_finished: i.on_agents.tasks_finished,
        processes: i.on_agents.processes,
        clock: if i.on_agents.processes > 0 {
            "real"
        } else {
            "virtual"
        }
        .into(),
        agent_processes_peak_rss_bytes: i.on_agents.peak_rss_bytes,
        decisions_digest: format!("{digest:016x}"),
    }
}

impl Report {
    /// A few readable lines.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} profile: {} agents, {} frameworks, seed {}\n",
            self.profile, self.agents, self.frameworks, self.seed
        );
        if self.processes > 0 {
            s += &format!(
                "  agents in {} processes over loopback gRPC, real time; their peak RSS {:.1} MiB in all\n",
                self.processes,
                self.agent_processes_peak_rss_bytes.unwrap_or(0) as f64 / (1 << 20) as f64
            );
            s += &format!(
                "  placed {} tasks ({} finished) in {:.2} s wall: {:.0} tasks/s\n",
                self.tasks_placed, self.tasks_finished, self.wall_seconds, self.tasks_per_second
            );
        } else {
            s += &format!(
                "  placed {} tasks ({} finished) in {:.2} s wall ({:.0} virtual s): {:.0} tasks/s\n",
                self.tasks_placed,
                self.tasks_finished,
                self.wall_seconds,
                self.virtual_seconds,
                self.tasks_per_second
            );
        }
        s += &format!(
            "  allocation cycles: {}, p50 {:.2} ms, p99 {:.2} ms; offer → running p99 {:.2} ms\n",
            self.allocation_cycles,
            self.alloc_cycle_ms_p50,
            self.alloc_cycle_ms_p99,
            self.offer_to_launch_ms_p99
        );
        s += &format!(
            "  offers: {} received, {} declined; peak RSS {:.1} MiB; over-commits {}\n",
            self.offers_received,
            self.offers_declined,
            self.peak_rss_bytes as f64 / (1 << 20) as f64,
            self.overcommits
        );
        if let Some(j) = self.jain_index {
            s += &format!(
                "  fairness: Jain {:.4}, max share gap {:.2} %, convergence {}, starved {:?}\n",
                j,
                self.max_share_gap.unwrap_or(0.0) * 100.0,
                self.convergence_cycles
                    .map(|c| format!("{c} cycles"))
                    .unwrap_or_else(|| "-".into()),
                self.starved_roles
            );
        }
        s += &format!("  decisions digest {}", self.decisions_digest);
        s
    }
}

fn roles_of(cycles: &[Cycle]) -> Vec<String> {
    let mut roles: Vec<String> = cycles
        .iter()
        .flat_map(|c| c.shares.iter().map(|(r, _, _)| r.clone()))
        .collect();
    roles.sort();
    roles.dedup();
    roles
}

/// One CSV row per allocation cycle: time, cycle ms, offers, running tasks, and each role's
/// raw dominant share.
pub(crate) fn write_trace(path: &Path, cycles: &[Cycle]) -> std::io::Result<()> {
    let roles = roles_of(cycles);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    write!(f, "t_seconds,cycle_ms,offers,running_tasks")?;
    for r in &roles {
        write!(f, ",share_{r}")?;
    }
    writeln!(f)?;
    for c in cycles {
        write!(
            f,
            "{:.3},{:.3},{},{}",
            c.t, c.duration_ms, c.offers, c.running
        )?;
        for r in &roles {
            let v = c
                .shares
                .iter()
                .find(|(x, _, _)| x == r)
                .map(|(_, w, s)| s * w)
                .unwrap_or(0.0);
            write!(f, ",{v:.5}")?;
        }
        writeln!(f)?;
    }
    f.flush()
}

/// Role shares (raw dominant share) over time (virtual, or wall with agent processes), as
/// an SVG line chart.
pub(crate) fn plot(path: &Path, cycles: &[Cycle], real_time: bool) -> Result<(), String> {
    use plotters::prelude::*;
    let roles = roles_of(cycles);
    let t_max = cycles.last().map(|c| c.t).unwrap_or(1.0).max(1.0);
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption("role dominant shares over time", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(45)
        .build_cartesian_2d(0.0..t_max, 0.0..1.0)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(if real_time {
            "seconds"
        } else {
            "virtual seconds"
        })
        .y_desc("dominant share")
        .draw()
        .map_err(|e| e.to_string())?;
    for (k, r) in roles.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let points: Vec<(f64, f64)> = cycles
            .iter()
            .filter_map(|c| {
                c.shares
                    .iter()
                    .find(|(x, _, _)| x == r)
                    .map(|(_, w, s)| (c.t, (s * w).min(1.0)))
            })
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(r.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_is_one_when_equal_and_lower_otherwise() {
        assert_eq!(jain_index(&[0.2, 0.2, 0.2]), Some(1.0));
        let j = jain_index(&[0.1, 0.3]).unwrap();
        assert!((j - 0.8).abs() < 1e-9, "{j}");
        assert_eq!(jain_index(&[]), None);
    }
}

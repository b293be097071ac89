//! Prometheus text exposition of the master's counters and gauges (`GET /metrics`).

use std::fmt::Write;

use crate::model::{AgentState, MasterState};

fn line(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

/// Escapes a label value per the exposition format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn prometheus(s: &MasterState) -> String {
    let m = &s.metrics;
    let mut out = String::new();
    let counters: [(&str, &str, u64); 13] = [
        (
            "tessera_master_allocation_runs_total",
            "Allocation runs.",
            m.allocation_runs,
        ),
        (
            "tessera_master_offers_sent_total",
            "Offers sent to frameworks.",
            m.offers_sent,
        ),
        (
            "tessera_master_offers_declined_total",
            "Offers declined.",
            m.offers_declined,
        ),
        (
            "tessera_master_inverse_offers_sent_total",
            "Inverse offers sent to frameworks (agents being drained).",
            m.inverse_offers_sent,
        ),
        (
            "tessera_master_offers_rescinded_total",
            "Offers rescinded (expired, agent lost, framework gone).",
            m.offers_rescinded,
        ),
        (
            "tessera_master_tasks_launched_total",
            "Tasks sent to agents.",
            m.tasks_launched,
        ),
        (
            "tessera_master_tasks_invalid_total",
            "Tasks refused as TASK_ERROR.",
            m.tasks_invalid,
        ),
        (
            "tessera_master_tasks_dropped_total",
            "Tasks dropped or lost before reaching an agent.",
            m.tasks_dropped,
        ),
        (
            "tessera_master_status_updates_total",
            "Status updates received from agents.",
            m.status_updates,
        ),
        (
            "tessera_master_agents_registered_total",
            "First registrations of agents.",
            m.agents_registered,
        ),
        (
            "tessera_master_agents_reregistered_total",
            "Re-registrations of known agents.",
            m.agents_reregistered,
        ),
        (
            "tessera_master_agents_unreachable_total",
            "Agents marked unreachable.",
            m.agents_unreachable,
        ),
        (
            "tessera_master_invalid_agent_messages_total",
            "Agent messages rejected as invalid.",
            m.invalid_agent_messages,
        ),
    ];
    for (name, help, v) in counters {
        line(&mut out, name, "counter", help, v as f64);
    }
    line(
        &mut out,
        "tessera_master_last_allocation_seconds",
        "gauge",
        "Duration of the last allocation run.",
        m.last_allocation_ms / 1e3,
    );
    let _ = writeln!(out, "# HELP tessera_master_agents Agents by state.");
    let _ = writeln!(out, "# TYPE tessera_master_agents gauge");
    for (st, name) in [
        (AgentState::Active, "active"),
        (AgentState::Disconnected, "disconnected"),
        (AgentState::Unreachable, "unreachable"),
        (AgentState::Recovered, "recovered"),
    ] {
        let n = s.agents.iter().filter(|a| a.state == st).count();
        let _ = writeln!(out, "tessera_master_agents{{state=\"{name}\"}} {n}");
    }
    line(
        &mut out,
        "tessera_master_frameworks",
        "gauge",
        "Known frameworks.",
        s.frameworks.len() as f64,
    );
    line(
        &mut out,
        "tessera_master_tasks_active",
        "gauge",
        "Tasks not yet terminal.",
        s.tasks.len() as f64,
    );
    line(
        &mut out,
        "tessera_master_offers_outstanding",
        "gauge",
        "Offers not yet answered.",
        s.offers.len() as f64,
    );
    let _ = writeln!(
        out,
        "# HELP tessera_allocator_role_share Weighted dominant share of each role."
    );
    let _ = writeln!(out, "# TYPE tessera_allocator_role_share gauge");
    for r in &s.roles {
        let _ = writeln!(
            out,
            "tessera_allocator_role_share{{role=\"{}\"}} {}",
            label(r.role.as_str()),
            r.share
        );
    }
    let _ = writeln!(
        out,
        "# HELP tessera_allocator_role_unmet Roles with demand that got nothing in the last run, by reason."
    );
    let _ = writeln!(out, "# TYPE tessera_allocator_role_unmet gauge");
    for u in s.unmet.iter().filter(|u| u.framework.is_none()) {
        let reason = serde_json::to_value(u.reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "tessera_allocator_role_unmet{{role=\"{}\",reason=\"{}\"}} 1",
            label(u.role.as_str()),
            reason
        );
    }
    out
}

//! Master configuration: a validated value built once at start-up and passed down.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tessera_allocator::AllocatorConfig;

use crate::error::{MasterError, Result};

/// How often agents send heartbeats.
pub const DEFAULT_AGENT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// An agent silent this long is marked unreachable (Mesos: 15 s × 5 pings).
pub const DEFAULT_AGENT_TIMEOUT: Duration = Duration::from_secs(75);
/// Completed tasks remembered per master for reconciliation and state endpoints.
pub const DEFAULT_MAX_COMPLETED_TASKS: usize = 10_000;
/// How often schedulers subscribed over HTTP get a HEARTBEAT event (Mesos: 15 s).
pub const DEFAULT_SCHEDULER_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
/// The Mesos API version this master implements, reported by `/version` and `MasterInfo`.
/// Clients parse it as numbers (pymesos needs `X.Y.Z` ≥ 1.0.0).
pub const MESOS_API_VERSION: &str = "1.11.0";
/// Capacity of each framework's event queue; a framework that falls this far behind is
/// disconnected (it re-subscribes and reconciles).
pub const DEFAULT_FRAMEWORK_QUEUE: usize = 4096;

#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// Where the master serves gRPC (agents) and HTTP.
    pub listen: SocketAddr,
    /// Holds `registry.db`.
    pub work_dir: PathBuf,
    pub agent_heartbeat_interval: Duration,
    pub agent_timeout: Duration,
    /// Outstanding offers are rescinded after this long; `None` = never (Mesos default).
    pub offer_timeout: Option<Duration>,
    pub allocator: AllocatorConfig,
    pub max_completed_tasks: usize,
    pub framework_queue: usize,
    /// Seed for the allocator's agent shuffle (same seed, same decisions).
    pub seed: u64,
    pub scheduler_heartbeat_interval: Duration,
    /// When set, this master is a standby: every endpoint but `/health`, `/version` and
    /// `/metrics` answers 307 to this leader (`HOST:PORT`).
    pub standby_of: Option<String>,
    /// Hostname reported in `MasterInfo` and offers' URLs.
    pub hostname: String,
    /// The master's fault domain (Mesos `--domain`). Agents in another region are offered
    /// only to REGION_AWARE frameworks; `None` (the default) treats every agent as local.
    pub domain: Option<crate::model::FaultDomain>,
    /// Receives a record of every allocation run (simulators, benchmarks); `None` in
    /// production, where the metrics carry the same figures.
    pub cycle_observer: Option<tokio::sync::mpsc::UnboundedSender<crate::model::AllocationCycle>>,
}

impl MasterConfig {
    pub fn new(listen: SocketAddr, work_dir: PathBuf) -> Self {
        MasterConfig {
            listen,
            work_dir,
            agent_heartbeat_interval: DEFAULT_AGENT_HEARTBEAT_INTERVAL,
            agent_timeout: DEFAULT_AGENT_TIMEOUT,
            offer_timeout: None,
            allocator: AllocatorConfig::default(),
            max_completed_tasks: DEFAULT_MAX_COMPLETED_TASKS,
            framework_queue: DEFAULT_FRAMEWORK_QUEUE,
            seed: 0x7e55e7a,
            scheduler_heartbeat_interval: DEFAULT_SCHEDULER_HEARTBEAT_INTERVAL,
            standby_of: None,
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "localhost".to_string()),
            cycle_observer: None,
            domain: None,
        }
    }

    /// The effective settings by name, as `/master/flags` shows them.
    pub fn flags(&self) -> std::collections::BTreeMap<String, String> {
        let d = |d: Duration| format!("{}ms", d.as_millis());
        let mut m = std::collections::BTreeMap::new();
        m.insert("listen".into(), self.listen.to_string());
        m.insert("port".into(), self.listen.port().to_string());
        m.insert("work_dir".into(), self.work_dir.display().to_string());
        m.insert(
            "agent_heartbeat_interval".into(),
            d(self.agent_heartbeat_interval),
        );
        m.insert("agent_timeout".into(), d(self.agent_timeout));
        m.insert(
            "offer_timeout".into(),
            self.offer_timeout.map(d).unwrap_or_else(|| "none".into()),
        );
        m.insert("allocation_interval".into(), d(self.allocator.interval));
        m.insert(
            "scheduler_heartbeat_interval".into(),
            d(self.scheduler_heartbeat_interval),
        );
        m.insert("hostname".into(), self.hostname.clone());
        if let Some(l) = &self.standby_of {
            m.insert("standby_of".into(), l.clone());
        }
        if let Some(d) = &self.domain {
            m.insert("domain".into(), format!("{}/{}", d.region, d.zone));
        }
        m
    }

    /// Checks the settings against each other; errors name the setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, reason: &str| {
            Err(MasterError::Config {
                field: field.into(),
                reason: reason.into(),
            })
        };
        if self.agent_heartbeat_interval.is_zero() {
            return bad("agent_heartbeat_interval", "must be greater than zero");
        }
        if self.agent_timeout <= self.agent_heartbeat_interval {
            return bad(
                "agent_timeout",
                "must be longer than agent_heartbeat_interval, or every agent is lost",
            );
        }
        if self.offer_timeout.is_some_and(|d| d.is_zero()) {
            return bad(
                "offer_timeout",
                "must be greater than zero (or unset for none)",
            );
        }
        if self.allocator.interval.is_zero() {
            return bad("allocation_interval", "must be greater than zero");
        }
        if self.scheduler_heartbeat_interval.is_zero() {
            return bad("scheduler_heartbeat_interval", "must be greater than zero");
        }
        if let Some(l) = &self.standby_of
            && !l
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        {
            return bad("standby_of", "must be the leader's HOST:PORT");
        }
        if self.framework_queue == 0 {
            return bad("framework_queue", "must be at least 1");
        }
        if let Some(d) = &self.domain
            && let Err(tessera_types::Error::Invalid { field, reason }) =
                crate::model::FaultDomain::new("domain", &d.region, &d.zone)
        {
            return bad(&field, &reason);
        }
        Ok(())
    }
}

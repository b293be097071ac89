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
        }
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
        if self.framework_queue == 0 {
            return bad("framework_queue", "must be at least 1");
        }
        Ok(())
    }
}

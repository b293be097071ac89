//! The registry: what must survive a master restart — admitted agents, frameworks, role
//! weights and quotas, the maintenance schedule and which machines are down. Behind a trait
//! so tests can use the in-memory store; production uses SQLite (ACID, one file under the
//! work directory, WAL mode).
//!
//! Tasks are not stored: after a restart, agents re-register and report them (as in Mesos).

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use tessera_allocator::Quota;
use tessera_types::{AgentId, FrameworkId, FrameworkInfo, Resources, Role};

use crate::error::{MasterError, Result};
use crate::maintenance::Maintenance;

/// An admitted agent as the registry remembers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub id: AgentId,
    pub hostname: String,
    pub resources: Resources,
    #[serde(default)]
    pub attributes: Vec<(String, String)>,
    /// Set while the agent is unreachable (milliseconds since the Unix epoch).
    #[serde(default)]
    pub unreachable_since_ms: Option<u64>,
    /// Dynamic reservations in force on the agent (RESERVE by frameworks or operators);
    /// applied on top of what the agent reports each time it registers.
    #[serde(default)]
    pub dynamic: Resources,
    /// Marked gone by an operator: it may never register again.
    #[serde(default)]
    pub gone: bool,
    /// The fault domain it registered with, if any.
    #[serde(default)]
    pub domain: Option<crate::model::FaultDomain>,
    /// Persistent volumes on the agent (CREATE by frameworks or operators), each made of
    /// reserved disk; applied on top of the reservations.
    #[serde(default)]
    pub volumes: Resources,
}

impl AgentRecord {
    /// The reported resources with dynamic reservations applied. Reservations that no
    /// longer fit (the agent shrank) are left out.
    pub fn with_reservations(&self) -> Resources {
        if self.dynamic.is_empty() {
            return self.resources.clone();
        }
        let Ok(source) = self.dynamic.pop_reservation() else {
            return self.resources.clone();
        };
        self.resources
            .checked_sub(&source)
            .and_then(|r| r.checked_add(&self.dynamic))
            .unwrap_or_else(|_| self.resources.clone())
    }

    /// The agent's total as offered: [`AgentRecord::with_reservations`] with the persistent
    /// volumes made of their disk. Volumes that no longer fit are left out.
    pub fn effective_total(&self) -> Resources {
        let reserved = self.with_reservations();
        if self.volumes.is_empty() {
            return reserved;
        }
        self.volumes
            .without_volumes()
            .and_then(|disk| reserved.checked_sub(&disk))
            .and_then(|r| r.checked_add(&self.volumes))
            .unwrap_or(reserved)
    }
}

/// Everything recovered at start-up.
#[derive(Debug, Clone, Default)]
pub struct RegistrySnapshot {
    pub agents: BTreeMap<AgentId, AgentRecord>,
    pub frameworks: BTreeMap<FrameworkId, FrameworkInfo>,
    pub weights: BTreeMap<Role, f64>,
    pub quotas: BTreeMap<Role, Quota>,
    /// The maintenance schedule and the machines that are DOWN.
    pub maintenance: Maintenance,
    /// Counter for ids, so they stay unique across restarts.
    pub next_id: u64,
}

/// The store. Each call is one transaction: it either happened or it did not.
pub trait Registry: Send {
    fn load(&mut self) -> Result<RegistrySnapshot>;
    fn put_agent(&mut self, agent: &AgentRecord) -> Result<()>;
    fn remove_agent(&mut self, id: &AgentId) -> Result<()>;
    fn put_framework(&mut self, info: &FrameworkInfo) -> Result<()>;
    fn remove_framework(&mut self, id: &FrameworkId) -> Result<()>;
    fn put_weight(&mut self, role: &Role, weight: f64) -> Result<()>;
    fn put_quota(&mut self, role: &Role, quota: Option<&Quota>) -> Result<()>;
    fn put_next_id(&mut self, next: u64) -> Result<()>;
    /// Replaces the maintenance schedule and the set of DOWN machines.
    fn put_maintenance(&mut self, maintenance: &Maintenance) -> Result<()>;
}

/// SQLite-backed registry in `<work_dir>/registry.db`.
pub struct SqliteRegistry {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS agents (id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS frameworks (id TEXT PRIMARY KEY, info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS weights (role TEXT PRIMARY KEY, weight REAL NOT NULL);
CREATE TABLE IF NOT EXISTS quotas (role TEXT PRIMARY KEY, quota TEXT NOT NULL);
";

fn json_err(what: &str, e: serde_json::Error) -> MasterError {
    MasterError::Registry(format!("{what} is corrupt: {e}"))
}

impl SqliteRegistry {
    pub fn open(work_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(work_dir)?;
        let conn = Connection::open(work_dir.join("registry.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteRegistry { conn })
    }
}

impl Registry for SqliteRegistry {
    fn load(&mut self) -> Result<RegistrySnapshot> {
        let mut snap = RegistrySnapshot::default();
        let mut stmt = self.conn.prepare("SELECT record FROM agents")?;
        for row in stmt.query_map([], |r| r.get::<_, String>(0))? {
            let rec: AgentRecord = serde_json::from_str(&row?).map_err(|e| json_err("agent", e))?;
            snap.agents.insert(rec.id.clone(), rec);
        }
        let mut stmt = self.conn.prepare("SELECT info FROM frameworks")?;
        for row in stmt.query_map([], |r| r.get::<_, String>(0))? {
            let info: FrameworkInfo =
                serde_json::from_str(&row?).map_err(|e| json_err("framework", e))?;
            if let Some(id) = info.id.clone() {
                snap.frameworks.insert(id, info);
            }
        }
        let mut stmt = self.conn.prepare("SELECT role, weight FROM weights")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))? {
            let (role, w) = row?;
            let role = Role::new(role).map_err(|e| MasterError::Registry(e.to_string()))?;
            snap.weights.insert(role, w);
        }
        let mut stmt = self.conn.prepare("SELECT role, quota FROM quotas")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (role, q) = row?;
            let role = Role::new(role).map_err(|e| MasterError::Registry(e.to_string()))?;
            let q: Quota = serde_json::from_str(&q).map_err(|e| json_err("quota", e))?;
            snap.quotas.insert(role, q);
        }
        snap.next_id = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'next_id'", [], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        if let Some(json) = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'maintenance'",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()?
        {
            snap.maintenance =
                serde_json::from_str(&json).map_err(|e| json_err("maintenance", e))?;
        }
        Ok(snap)
    }

    fn put_agent(&mut self, agent: &AgentRecord) -> Result<()> {
        let json = serde_json::to_string(agent).map_err(|e| json_err("agent", e))?;
        self.conn.execute(
            "INSERT INTO agents (id, record) VALUES (?1, ?2)
             ON CONFLICT(id) DO UPDATE SET record = excluded.record",
            params![agent.id.as_str(), json],
        )?;
        Ok(())
    }

    fn remove_agent(&mut self, id: &AgentId) -> Result<()> {
        self.conn
            .execute("DELETE FROM agents WHERE id = ?1", params![id.as_str()])?;
        Ok(())
    }

    fn put_framework(&mut self, info: &FrameworkInfo) -> Result<()> {
        let Some(id) = &info.id else {
            return Err(MasterError::Registry("framework without an id".into()));
        };
        let json = serde_json::to_string(info).map_err(|e| json_err("framework", e))?;
        self.conn.execute(
            "INSERT INTO frameworks (id, info) VALUES (?1, ?2)
             ON CONFLICT(id) DO UPDATE SET info = excluded.info",
            params![id.as_str(), json],
        )?;
        Ok(())
    }

    fn remove_framework(&mut self, id: &FrameworkId) -> Result<()> {
        self.conn
            .execute("DELETE FROM frameworks WHERE id = ?1", params![id.as_str()])?;
        Ok(())
    }

    fn put_weight(&mut self, role: &Role, weight: f64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO weights (role, weight) VALUES (?1, ?2)
             ON CONFLICT(role) DO UPDATE SET weight = excluded.weight",
            params![role.as_str(), weight],
        )?;
        Ok(())
    }

    fn put_quota(&mut self, role: &Role, quota: Option<&Quota>) -> Result<()> {
        match quota {
            None => {
                self.conn
                    .execute("DELETE FROM quotas WHERE role = ?1", params![role.as_str()])?;
            }
            Some(q) => {
                let json = serde_json::to_string(q).map_err(|e| json_err("quota", e))?;
                self.conn.execute(
                    "INSERT INTO quotas (role, quota) VALUES (?1, ?2)
                     ON CONFLICT(role) DO UPDATE SET quota = excluded.quota",
                    params![role.as_str(), json],
                )?;
            }
        }
        Ok(())
    }

    fn put_next_id(&mut self, next: u64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('next_id', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![next.to_string()],
        )?;
        Ok(())
    }

    fn put_maintenance(&mut self, maintenance: &Maintenance) -> Result<()> {
        let json = serde_json::to_string(maintenance).map_err(|e| json_err("maintenance", e))?;
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('maintenance', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![json],
        )?;
        Ok(())
    }
}

/// In-memory registry for tests of the master's logic (a recording fake: inspect `snap`).
#[derive(Debug, Default, Clone)]
pub struct MemRegistry {
    pub snap: RegistrySnapshot,
}

impl Registry for MemRegistry {
    fn load(&mut self) -> Result<RegistrySnapshot> {
        Ok(self.snap.clone())
    }
    fn put_agent(&mut self, agent: &AgentRecord) -> Result<()> {
        self.snap.agents.insert(agent.id.clone(), agent.clone());
        Ok(())
    }
    fn remove_agent(&mut self, id: &AgentId) -> Result<()> {
        self.snap.agents.remove(id);
        Ok(())
    }
    fn put_framework(&mut self, info: &FrameworkInfo) -> Result<()> {
        if let Some(id) = &info.id {
            self.snap.frameworks.insert(id.clone(), info.clone());
        }
        Ok(())
    }
    fn remove_framework(&mut self, id: &FrameworkId) -> Result<()> {
        self.snap.frameworks.remove(id);
        Ok(())
    }
    fn put_weight(&mut self, role: &Role, weight: f64) -> Result<()> {
        self.snap.weights.insert(role.clone(), weight);
        Ok(())
    }
    fn put_quota(&mut self, role: &Role, quota: Option<&Quota>) -> Result<()> {
        match quota {
            Some(q) => self.snap.quotas.insert(role.clone(), q.clone()),
            None => self.snap.quotas.remove(role),
        };
        Ok(())
    }
    fn put_next_id(&mut self, next: u64) -> Result<()> {
        self.snap.next_id = next;
        Ok(())
    }
    fn put_maintenance(&mut self, maintenance: &Maintenance) -> Result<()> {
        self.snap.maintenance = maintenance.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_types::parse::parse_resources;

    #[test]
    fn sqlite_survives_reopen() {
        let dir = std::env::temp_dir().join(format!("tessera-reg-{}", uuid::Uuid::new_v4()));
        let a = AgentRecord {
            id: AgentId::new("a1").unwrap(),
            hostname: "h".into(),
            resources: parse_resources("cpus:2;mem:1024").unwrap(),
            attributes: vec![("rack".into(), "r1".into())],
            unreachable_since_ms: None,
            dynamic: Resources::new(),
            gone: false,
            domain: None,
            volumes: tessera_types::parse::parse_json_resources(
                "volumes",
                &serde_json::json!([{"name": "disk", "type": "SCALAR", "scalar": {"value": 64},
                    "reservations": [{"type": "DYNAMIC", "role": "eng", "principal": "p"}],
                    "disk": {"persistence": {"id": "v1"},
                             "volume": {"container_path": "data", "mode": "RW"}}}]),
            )
            .unwrap(),
        };
        let machine = crate::maintenance::MachineId::new("m", Some("h"), Some("10.0.0.1")).unwrap();
        let maintenance = Maintenance {
            schedule: crate::maintenance::Schedule {
                windows: vec![crate::maintenance::Window {
                    machines: vec![machine.clone()],
                    unavailability: crate::model::Unavailability {
                        start_ns: 1_700_000_000_123_456_789,
                        duration: Some(std::time::Duration::from_nanos(3_600_000_000_001)),
                    },
                }],
            },
            down: [machine].into(),
        };
        let fw = FrameworkInfo {
            id: Some(FrameworkId::new("f1").unwrap()),
            name: "fw".into(),
            user: "u".into(),
            roles: vec![Role::new("eng").unwrap()],
            capabilities: vec![],
            failover_timeout_secs: 10.0,
            principal: None,
            hostname: None,
        };
        {
            let mut r = SqliteRegistry::open(&dir).unwrap();
            r.put_agent(&a).unwrap();
            r.put_framework(&fw).unwrap();
            r.put_weight(&Role::new("eng").unwrap(), 2.0).unwrap();
            r.put_next_id(42).unwrap();
            r.put_maintenance(&maintenance).unwrap();
        }
        let mut r = SqliteRegistry::open(&dir).unwrap();
        let s = r.load().unwrap();
        assert_eq!(s.agents.get(&a.id), Some(&a), "volumes too");
        assert_eq!(s.frameworks.len(), 1);
        assert_eq!(s.weights.get(&Role::new("eng").unwrap()), Some(&2.0));
        assert_eq!(s.next_id, 42);
        assert_eq!(s.maintenance, maintenance);
        r.remove_agent(&a.id).unwrap();
        assert!(r.load().unwrap().agents.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! The job store: one SQLite file (WAL) holding jobs, their tasks (state, attempt, exit
//! code, timestamps) and the framework id. The service writes every change of one event in
//! one transaction *before* the event's actions go out and before its status update is
//! acknowledged; that ordering is what makes a restart lose nothing and run nothing twice.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use tessera_types::FrameworkId;

use crate::core::{Changes, Core};
use crate::error::{Error, Result};
use crate::model::{Job, JobState, KillReason, TaskRec, TaskState};
use crate::spec::{JobId, JobSpec};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  user TEXT NOT NULL,
  queue TEXT NOT NULL,
  state TEXT NOT NULL,
  held INTEGER NOT NULL,
  cancel_requested INTEGER NOT NULL,
  priority INTEGER NOT NULL,
  submitted_at INTEGER NOT NULL,
  started_at INTEGER,
  ended_at INTEGER,
  reason TEXT,
  parent INTEGER,
  last_fire INTEGER,
  spec TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
  job_id INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  state TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  failures INTEGER NOT NULL,
  lost INTEGER NOT NULL,
  agent_id TEXT,
  exit_code INTEGER,
  started_at INTEGER,
  ended_at INTEGER,
  not_before INTEGER,
  kill TEXT,
  kill_sent_at INTEGER,
  ran INTEGER NOT NULL,
  message TEXT,
  PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;
";

pub struct Store {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

fn kill_text(k: Option<KillReason>) -> Option<&'static str> {
    k.map(|k| match k {
        KillReason::Cancel => "cancel",
        KillReason::Timeout => "timeout",
        KillReason::Replace => "replace",
    })
}

fn parse_kill(s: Option<String>) -> Option<KillReason> {
    match s.as_deref() {
        Some("cancel") => Some(KillReason::Cancel),
        Some("timeout") => Some(KillReason::Timeout),
        Some("replace") => Some(KillReason::Replace),
        _ => None,
    }
}

impl Store {
    /// Opens (creating) the store at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Store(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| Error::Store("the store's lock was poisoned by a panic".into()))
    }

    /// Every job with its tasks, in id order.
    pub fn load(&self) -> Result<Vec<Job>> {
        let conn = self.conn()?;
        let mut jobs: Vec<Job> = Vec::new();
        {
            let mut st = conn.prepare(
                "SELECT id, state, held, cancel_requested, submitted_at, started_at, ended_at,
                        reason, parent, last_fire, spec FROM jobs ORDER BY id",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, bool>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, Option<i64>>(8)?,
                    r.get::<_, Option<i64>>(9)?,
                    r.get::<_, String>(10)?,
                ))
            })?;
            for row in rows {
                let (id, state, held, cancel, sub, start, end, reason, parent, last, spec) = row?;
                let spec: JobSpec = serde_json::from_str(&spec)
                    .map_err(|e| Error::Store(format!("job {id}: unreadable spec: {e}")))?;
                let state = JobState::parse(&state)
                    .ok_or_else(|| Error::Store(format!("job {id}: unknown state {state}")))?;
                jobs.push(Job {
                    id: JobId(id as u64),
                    spec,
                    state,
                    held,
                    cancel_requested: cancel,
                    submitted_at: sub,
                    started_at: start,
                    ended_at: end,
                    reason,
                    parent: parent.map(|p| JobId(p as u64)),
                    last_fire: last,
                    tasks: vec![],
                });
            }
        }
        let mut st = conn.prepare(
            "SELECT job_id, idx, state, attempt, failures, agent_id, exit_code, started_at,
                    ended_at, not_before, kill, kill_sent_at, ran, message, lost
             FROM tasks ORDER BY job_id, idx",
        )?;
        let rows = st.query_map([], |r| {
            let state: String = r.get(2)?;
            Ok((
                r.get::<_, i64>(0)?,
                state,
                TaskRec {
                    index: r.get::<_, u32>(1)?,
                    state: TaskState::Pending,
                    attempt: r.get(3)?,
                    failures: r.get(4)?,
                    lost: r.get(14)?,
                    agent_id: r.get(5)?,
                    exit_code: r.get(6)?,
                    started_at: r.get(7)?,
                    ended_at: r.get(8)?,
                    not_before: r.get(9)?,
                    kill: parse_kill(r.get(10)?),
                    kill_sent_at: r.get(11)?,
                    ran: r.get(12)?,
                    message: r.get(13)?,
                },
            ))
        })?;
        let mut at = 0usize;
        for row in rows {
            let (job_id, state, mut t) = row?;
            t.state = TaskState::parse(&state)
                .ok_or_else(|| Error::Store(format!("job {job_id}: unknown task state {state}")))?;
            while at < jobs.len() && (jobs[at].id.0 as i64) < job_id {
                at += 1;
            }
            match jobs.get_mut(at) {
                Some(j) if j.id.0 as i64 == job_id => j.tasks.push(t),
                _ => return Err(Error::Store(format!("task row for unknown job {job_id}"))),
            }
        }
        Ok(jobs)
    }

    /// Writes the rows that changed, in one transaction.
    pub fn write(&self, core: &Core, changes: &Changes) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        {
            let mut put_job = tx.prepare_cached(
                "INSERT INTO jobs (id, name, user, queue, state, held, cancel_requested, priority,
                   submitted_at, started_at, ended_at, reason, parent, last_fire, spec)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
                 ON CONFLICT(id) DO UPDATE SET state = ?5, held = ?6, cancel_requested = ?7,
                   started_at = ?10, ended_at = ?11, reason = ?12, last_fire = ?14",
            )?;
            for id in &changes.jobs {
                let Some(j) = core.get(*id) else { continue };
                let spec = serde_json::to_string(&j.spec)
                    .map_err(|e| Error::Store(format!("job {id}: {e}")))?;
                put_job.execute(params![
                    j.id.0 as i64,
                    j.spec.name,
                    j.spec.user,
                    j.spec.queue,
                    j.state.as_str(),
                    j.held,
                    j.cancel_requested,
                    j.spec.priority,
                    j.submitted_at,
                    j.started_at,
                    j.ended_at,
                    j.reason,
                    j.parent.map(|p| p.0 as i64),
                    j.last_fire,
                    spec,
                ])?;
            }
            let mut put_task = tx.prepare_cached(
                "INSERT OR REPLACE INTO tasks (job_id, idx, state, attempt, failures, agent_id,
                   exit_code, started_at, ended_at, not_before, kill, kill_sent_at, ran, message,
                   lost)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            )?;
            for (id, slot) in &changes.tasks {
                let Some(t) = core.get(*id).and_then(|j| j.tasks.get(*slot)) else {
                    continue;
                };
                put_task.execute(params![
                    id.0 as i64,
                    t.index,
                    t.state.as_str(),
                    t.attempt,
                    t.failures,
                    t.agent_id,
                    t.exit_code,
                    t.started_at,
                    t.ended_at,
                    t.not_before,
                    kill_text(t.kill),
                    t.kill_sent_at,
                    t.ran,
                    t.message,
                    t.lost,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn framework_id(&self) -> Result<Option<FrameworkId>> {
        let conn = self.conn()?;
        let v: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'framework_id'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match v {
            Some(v) => FrameworkId::new(v)
                .map(Some)
                .map_err(|e| Error::Store(format!("stored framework id: {e}"))),
            None => Ok(None),
        }
    }

    pub fn save_framework_id(&self, id: &FrameworkId) -> Result<()> {
        let conn = self.conn()?;
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('framework_id', ?1)",
            params![id.to_string()],
        )?;
        Ok(())
    }
}

/// The store doubles as the SDK's framework-id store, so the id lives next to the jobs.
pub struct IdStore(pub std::sync::Arc<Store>);

impl tessera_framework::FrameworkIdStore for IdStore {
    fn load(&self) -> tessera_framework::Result<Option<FrameworkId>> {
        self.0.framework_id().map_err(id_store_error)
    }

    fn save(&self, id: &FrameworkId) -> tessera_framework::Result<()> {
        self.0.save_framework_id(id).map_err(id_store_error)
    }
}

fn id_store_error(e: Error) -> tessera_framework::Error {
    tessera_framework::Error::Store {
        path: "batch job store".into(),
        source: std::io::Error::other(e.to_string()),
    }
}

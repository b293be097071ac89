//! Reading a task's output from its agent's sandbox, the way Mesos tools do: the master's
//! `/master/slaves` gives the agent's address, the agent's `/state` the executor's sandbox
//! `directory`, and `/files/read` the bytes (with Mesos offset/length semantics).

use serde_json::{Value, json};
use tessera_framework::sandbox;

use crate::core::Core;
use crate::error::{Error, Result};
use crate::model::task_id;
use crate::spec::JobId;

/// Which task's sandbox to read.
#[derive(Debug, Clone)]
pub struct LogTarget {
    pub job: JobId,
    pub index: u32,
    pub task_id: String,
    pub agent_id: String,
}

/// The task of `job` (at array `index`, required for arrays) whose logs to read: its latest
/// attempt.
pub fn target(core: &Core, job: JobId, index: Option<u32>) -> Result<LogTarget> {
    let j = core.get(job).ok_or(Error::UnknownJob(job))?;
    let t = match index {
        Some(i) => {
            let slot = j.slot(i).ok_or_else(|| Error::Invalid {
                field: "index".into(),
                message: format!("job {job} has no array index {i}"),
            })?;
            &j.tasks[slot]
        }
        None if j.tasks.len() == 1 => &j.tasks[0],
        None if j.tasks.is_empty() => {
            return Err(Error::Conflict {
                job,
                state: j.state.as_str().into(),
                message: "a schedule has no output of its own; read the jobs it started".into(),
            });
        }
        None => {
            return Err(Error::Invalid {
                field: "index".into(),
                message: format!(
                    "job {job} is an array of {} tasks; say which with --index N",
                    j.tasks.len()
                ),
            });
        }
    };
    let agent_id = match (&t.agent_id, t.attempt) {
        (Some(a), n) if n > 0 => a.clone(),
        _ => {
            return Err(Error::Conflict {
                job,
                state: j.state.as_str().into(),
                message: "it has not started yet, so it has no output; see `tessera batch why`"
                    .into(),
            });
        }
    };
    Ok(LogTarget {
        job,
        index: t.index,
        task_id: task_id(job, t.index, t.attempt),
        agent_id,
    })
}

/// How long a just-launched task may be missing from its agent's listing.
const LISTING_GRACE: std::time::Duration = std::time::Duration::from_secs(3);
/// How often the listing is asked again meanwhile.
const LISTING_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Reads up to `length` bytes of `stream` from `offset`.
pub async fn read(
    master: &str,
    t: &LogTarget,
    stream: &str,
    offset: u64,
    length: u64,
) -> Result<Value> {
    let up = |e: tessera_framework::Error| Error::Upstream(e.to_string());
    let agent = sandbox::agent_address(master, &t.agent_id)
        .await
        .map_err(up)?
        .ok_or_else(|| {
            Error::Upstream(format!(
                "agent {} is no longer registered with the master; its sandbox cannot be read",
                t.agent_id
            ))
        })?;
    // The scheduler knows the task's agent once it has sent the launch; the agent lists
    // the task a moment later. Give it that moment (bounded) before calling it gone.
    let deadline = tokio::time::Instant::now() + LISTING_GRACE;
    let dir = loop {
        let found = sandbox::sandbox_directory(&agent, None, &t.task_id)
            .await
            .map_err(up)?;
        if found.is_some() || tokio::time::Instant::now() >= deadline {
            break found;
        }
        tokio::time::sleep(LISTING_POLL).await;
    };
    let dir = dir.ok_or_else(|| {
        Error::Upstream(format!(
            "agent {} no longer lists task {} (its sandbox may have been garbage-collected)",
            t.agent_id, t.task_id
        ))
    })?;
    let path = format!("{dir}/{stream}");
    let v = sandbox::read(&agent, &path, offset, length)
        .await
        .map_err(up)?;
    Ok(json!({
        "job": t.job.0,
        "index": t.index,
        "task_id": t.task_id,
        "agent": agent,
        "path": path,
        "offset": v["offset"],
        "data": v["data"],
    }))
}

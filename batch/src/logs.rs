//! Reading a task's output from its agent's sandbox, the way Mesos tools do: the master's
//! `/master/slaves` gives the agent's address, the agent's `/state` the executor's sandbox
//! `directory`, and `/files/read` the bytes (with Mesos offset/length semantics).

use serde_json::{Value, json};

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

async fn get_json(addr: &str, path: &str) -> Result<Value> {
    let (status, body) = tessera_framework::http::get(addr, path)
        .await
        .map_err(|e| Error::Upstream(format!("cannot read http://{addr}{path}: {e}")))?;
    if status != 200 {
        return Err(Error::Upstream(format!(
            "http://{addr}{path} answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        )));
    }
    serde_json::from_slice(&body)
        .map_err(|e| Error::Upstream(format!("http://{addr}{path} did not return JSON: {e}")))
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The agent's HTTP address from the master's `/master/slaves`.
async fn agent_address(master: &str, agent_id: &str) -> Result<String> {
    let v = get_json(master, "/master/slaves").await?;
    let slaves = v["slaves"].as_array().cloned().unwrap_or_default();
    let s = slaves
        .iter()
        .find(|s| s["id"].as_str() == Some(agent_id))
        .ok_or_else(|| {
            Error::Upstream(format!(
                "agent {agent_id} is no longer registered with the master; its sandbox cannot be read"
            ))
        })?;
    s["pid"]
        .as_str()
        .and_then(|p| p.split_once('@'))
        .map(|(_, a)| a.to_string())
        .ok_or_else(|| Error::Upstream(format!("agent {agent_id} has no address")))
}

/// The sandbox directory of the executor that ran `task_id`, from the agent's `/state`.
fn find_directory(state: &Value, task_id: &str) -> Option<String> {
    let frameworks = state["frameworks"]
        .as_array()
        .into_iter()
        .chain(state["completed_frameworks"].as_array())
        .flatten();
    for fw in frameworks {
        let executors = fw["executors"]
            .as_array()
            .into_iter()
            .chain(fw["completed_executors"].as_array())
            .flatten();
        for ex in executors {
            let has = |key: &str| {
                ex[key]
                    .as_array()
                    .is_some_and(|ts| ts.iter().any(|t| t["id"].as_str() == Some(task_id)))
            };
            if ex["id"].as_str() == Some(task_id) || has("tasks") || has("completed_tasks") {
                return ex["directory"].as_str().map(str::to_string);
            }
        }
    }
    None
}

/// Reads up to `length` bytes of `stream` from `offset`.
pub async fn read(
    master: &str,
    t: &LogTarget,
    stream: &str,
    offset: u64,
    length: u64,
) -> Result<Value> {
    let agent = agent_address(master, &t.agent_id).await?;
    let state = get_json(&agent, "/state").await?;
    let dir = find_directory(&state, &t.task_id).ok_or_else(|| {
        Error::Upstream(format!(
            "agent {} no longer lists task {} (its sandbox may have been garbage-collected)",
            t.agent_id, t.task_id
        ))
    })?;
    let path = format!("{dir}/{stream}");
    let q = format!(
        "/files/read?path={}&offset={offset}&length={length}",
        encode(&path)
    );
    let v = get_json(&agent, &q).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_sandbox_of_a_finished_task() {
        let state = json!({"frameworks": [{"executors": [
            {"id": "other", "directory": "/x", "tasks": [], "completed_tasks": []},
            {"id": "e", "directory": "/sandbox", "tasks": [], "completed_tasks": [{"id": "batch.1.0.1"}]}
        ]}]});
        assert_eq!(
            find_directory(&state, "batch.1.0.1").as_deref(),
            Some("/sandbox")
        );
        assert_eq!(find_directory(&state, "batch.2.0.1"), None);
        assert_eq!(encode("/a b/c&d"), "/a%20b/c%26d");
    }
}

//! Reading a task's sandbox over the agents' HTTP API, the way Mesos tools do: the master's
//! `/master/slaves` gives the agent's address, the agent's `/state` the executor's sandbox
//! `directory`, and `/files/read` the bytes (Mesos offset/length semantics). Frameworks use
//! it to show their tasks' output (`tessera batch logs`, `tessera mpi run`).

use serde_json::Value;

use crate::error::{Error, Result};

fn upstream(addr: &str, path: &str, why: impl std::fmt::Display) -> Error {
    Error::Endpoint {
        url: format!("{addr}{path}"),
        reason: why.to_string(),
    }
}

/// GETs a JSON document; a non-200 answer is an error carrying the body.
pub async fn get_json(addr: &str, path: &str) -> Result<Value> {
    let (status, body) = crate::http::get(addr, path).await?;
    if status != 200 {
        return Err(upstream(
            addr,
            path,
            format!(
                "answered {status}: {}",
                String::from_utf8_lossy(&body).trim()
            ),
        ));
    }
    serde_json::from_slice(&body).map_err(|e| upstream(addr, path, format!("not JSON: {e}")))
}

/// The `HOST:PORT` of agent `agent_id`, from the master's `/master/slaves` (`None` when
/// the master does not list it).
pub async fn agent_address(master: &str, agent_id: &str) -> Result<Option<String>> {
    let v = get_json(master, "/master/slaves").await?;
    Ok(v["slaves"].as_array().and_then(|slaves| {
        slaves
            .iter()
            .find(|s| s["id"].as_str() == Some(agent_id))
            .and_then(|s| s["pid"].as_str())
            .and_then(|p| p.split_once('@'))
            .map(|(_, a)| a.to_string())
    }))
}

/// The sandbox directory of the executor that runs (or ran) `task_id`, from an agent's
/// `/state` document; only in `framework_id`'s executors when given (task ids are unique
/// per framework only).
pub fn find_directory(state: &Value, framework_id: Option<&str>, task_id: &str) -> Option<String> {
    let frameworks = state["frameworks"]
        .as_array()
        .into_iter()
        .chain(state["completed_frameworks"].as_array())
        .flatten()
        .filter(|fw| framework_id.is_none_or(|id| fw["id"].as_str() == Some(id)));
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

/// The sandbox directory of `task_id` (of `framework_id`, when given) on the agent at
/// `agent` (`None`: not listed yet, or garbage-collected).
pub async fn sandbox_directory(
    agent: &str,
    framework_id: Option<&str>,
    task_id: &str,
) -> Result<Option<String>> {
    let state = get_json(agent, "/state").await?;
    Ok(find_directory(&state, framework_id, task_id))
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
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

/// Reads up to `length` bytes of the file at `path` on agent `agent` from `offset`; the
/// agent's `/files/read` answer (`{"offset": …, "data": …}`).
pub async fn read(agent: &str, path: &str, offset: u64, length: u64) -> Result<Value> {
    let q = format!(
        "/files/read?path={}&offset={offset}&length={length}",
        encode(path)
    );
    get_json(agent, &q).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_the_sandbox_of_a_finished_task() {
        let state = json!({"frameworks": [{"id": "f1", "executors": [
            {"id": "other", "directory": "/x", "tasks": [], "completed_tasks": []},
            {"id": "e", "directory": "/sandbox", "tasks": [], "completed_tasks": [{"id": "batch.1.0.1"}]}
        ]}]});
        assert_eq!(
            find_directory(&state, None, "batch.1.0.1").as_deref(),
            Some("/sandbox")
        );
        assert_eq!(
            find_directory(&state, Some("f1"), "batch.1.0.1").as_deref(),
            Some("/sandbox")
        );
        assert_eq!(find_directory(&state, Some("f2"), "batch.1.0.1"), None);
        assert_eq!(find_directory(&state, None, "batch.2.0.1"), None);
        assert_eq!(encode("/a b/c&d"), "/a%20b/c%26d");
    }
}

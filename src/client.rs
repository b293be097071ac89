//! Client subcommands: small HTTP/1.1 requests to a master's endpoints.

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::Output;

/// GETs `path` from `master` (HOST:PORT) and parses the JSON body.
pub async fn get_json(master: &str, path: &str) -> Result<Value> {
    let mut s = tokio::net::TcpStream::connect(master).await.with_context(|| {
        format!("cannot reach the master at {master}; is it running? (set --master or TESSERA_MASTER)")
    })?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {master}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP response from {master}"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!("{master}{path} answered {status}: {}", body.trim());
    }
    serde_json::from_str(body).with_context(|| format!("{master}{path} did not return JSON"))
}

/// A REST API served by Tessera, for error messages.
pub struct Api {
    /// What serves it ("the batch scheduler").
    pub what: &'static str,
    /// What to do when it cannot be reached.
    pub unreachable: &'static str,
    /// What to check when the server has no such API (404 without an error body).
    pub missing: &'static str,
}

/// One JSON request to a Tessera REST API; a non-2xx answer becomes an error carrying the
/// server's `error` message.
pub async fn rest(
    api: &Api,
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value> {
    let bytes = body.map(serde_json::to_vec).transpose()?;
    let (status, resp) = tessera_framework::http::call(method, addr, path, bytes.as_deref())
        .await
        .map_err(|e| {
            anyhow!(
                "cannot reach {} at {addr}: {e}\n{}",
                api.what,
                api.unreachable
            )
        })?;
    let v: Value = serde_json::from_slice(&resp).unwrap_or_else(
        |_| serde_json::json!({ "error": String::from_utf8_lossy(&resp).trim().to_string() }),
    );
    if !(200..300).contains(&status) {
        if status == 404 && v["error"].is_null() {
            bail!("{addr} has no {} (HTTP 404); {}", api.what, api.missing);
        }
        bail!("{}", v["error"].as_str().unwrap_or("request failed"));
    }
    Ok(v)
}

pub async fn status(master: &str, output: Output) -> Result<()> {
    let state = get_json(master, "/tessera/state").await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&state)?);
        return Ok(());
    }
    let empty = Vec::new();
    let list = |k: &str| {
        state
            .get(k)
            .and_then(Value::as_array)
            .unwrap_or(&empty)
            .clone()
    };
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
    println!("master {}", s(&state, "master_id"));
    println!("\nAGENTS");
    println!("{:<28} {:<24} {:<13} RESOURCES", "ID", "HOSTNAME", "STATE");
    for a in list("agents") {
        let res = a
            .get("resources")
            .map(|r| r.to_string())
            .unwrap_or_default();
        println!(
            "{:<28} {:<24} {:<13} {}",
            s(&a, "id"),
            s(&a, "hostname"),
            s(&a, "state"),
            summarize(&res)
        );
    }
    println!("\nFRAMEWORKS");
    println!("{:<28} {:<24} STATE", "ID", "NAME");
    for f in list("frameworks") {
        println!(
            "{:<28} {:<24} {}",
            s(&f, "id"),
            s(&f, "name"),
            s(&f, "state")
        );
    }
    println!(
        "\nTASKS: {} active, {} completed",
        list("tasks").len(),
        list("completed_tasks").len()
    );
    Ok(())
}

fn summarize(json: &str) -> String {
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(json) else {
        return json.to_string();
    };
    items
        .iter()
        .filter_map(|r| {
            let name = r.get("name")?.as_str()?;
            let v = r.get("value")?;
            Some(match v.get("scalar") {
                Some(x) => format!("{name}:{}", x.as_f64().unwrap_or(0.0) / 1000.0),
                None => name.to_string(),
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

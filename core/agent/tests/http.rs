//! The agent's HTTP endpoints against a real agent (fake master, real processes): the port
//! reported at registration, `/state` with the sandbox of a running task, `/files/*` on that
//! sandbox (and no escape from it), `/metrics/snapshot`, `/containers`, `/api/v1`.

mod common;

use common::*;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tessera_agent::{AgentConfig, Isolation, run};
use tessera_api::pb::agent_message::Msg as AMsg;
use tessera_types::TaskState;
use tessera_types::parse::parse_resources;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// A minimal HTTP/1.0 client (no chunking): (status, body).
async fn request(port: u16, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers end");
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, buf[split + 4..].to_vec())
}

async fn get_json(port: u16, path: &str) -> Value {
    let (status, body) = request(port, "GET", path, "").await;
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_show_a_running_task_and_its_sandbox_without_escapes() {
    let mut master = fake_master().await;
    let work_dir: PathBuf =
        std::env::temp_dir().join(format!("tessera-agent-http-{}", uuid::Uuid::new_v4()));
    let mut c = AgentConfig::new(
        master.addr.clone(),
        work_dir.clone(),
        parse_resources("cpus:2;mem:1024").unwrap(),
    );
    c.isolation = Isolation::None;
    c.http_listen = Some("127.0.0.1:0".parse().unwrap());
    c.default_kill_grace = Duration::from_millis(300);
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(run(c, shutdown.clone()));

    let (mut conn, reg) = master.accept_registered("agent-1").await;
    let port = u16::try_from(reg.info.as_ref().unwrap().http_port).unwrap();
    assert_ne!(port, 0, "the bound port is reported at registration");

    let (status, _) = request(port, "GET", "/health", "").await;
    assert_eq!(status, 200);

    conn.run_task(
        "t1",
        "echo hello-sandbox; echo $MESOS_AGENT_ENDPOINT; sleep 30",
        None,
    );
    assert_eq!(state(&conn.acked_status().await), TaskState::TaskStarting);
    assert_eq!(state(&conn.acked_status().await), TaskState::TaskRunning);

    // /state: the framework, its executor, the running task, the sandbox directory.
    let st = get_json(port, "/state").await;
    assert_eq!(st["id"], "agent-1");
    assert_eq!(st["resources"]["cpus"], 2.0);
    let ex = &st["frameworks"][0]["executors"][0];
    assert_eq!(st["frameworks"][0]["id"], "fw1");
    assert_eq!(ex["tasks"][0]["id"], "t1");
    assert_eq!(ex["tasks"][0]["state"], "TASK_RUNNING");
    let dir = ex["directory"].as_str().unwrap().to_string();
    assert!(
        dir.starts_with(work_dir.join("slaves").to_str().unwrap()),
        "{dir}"
    );

    // /files on the sandbox: browse, then read stdout until the echo shows up.
    let listing = get_json(port, &format!("/files/browse?path={}", enc(&dir))).await;
    let names: Vec<&str> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(names.iter().any(|n| n.ends_with("/stdout")), "{names:?}");
    let stdout = format!("{dir}/stdout");
    let mut text = String::new();
    for _ in 0..50 {
        let r = get_json(port, &format!("/files/read?path={}&offset=0", enc(&stdout))).await;
        text = r["data"].as_str().unwrap().to_string();
        if text.lines().count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text.starts_with("hello-sandbox\n"), "{text:?}");
    assert_eq!(
        text.lines().nth(1),
        Some(format!("127.0.0.1:{port}").as_str()),
        "MESOS_AGENT_ENDPOINT"
    );
    let size = get_json(
        port,
        &format!("/files/read?path={}&offset=-1", enc(&stdout)),
    )
    .await;
    assert_eq!(size["data"], "");
    assert_eq!(size["offset"].as_u64().unwrap(), text.len() as u64);
    let part = get_json(
        port,
        &format!("/files/read?path={}&offset=6&length=7", enc(&stdout)),
    )
    .await;
    assert_eq!(part["data"], "sandbox");
    let (code, body) = request(
        port,
        "GET",
        &format!("/files/read?path={}&offset=zz", enc(&stdout)),
        "",
    )
    .await;
    assert_eq!(code, 400);
    assert!(String::from_utf8_lossy(&body).contains("offset"));
    let (code, body) = request(
        port,
        "GET",
        &format!("/files/download?path={}", enc(&stdout)),
        "",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(String::from_utf8_lossy(&body), text);

    // Escapes: relative `..`, absolute elsewhere, a symlink in the sandbox to /etc.
    std::os::unix::fs::symlink("/etc", PathBuf::from(&dir).join("etc")).unwrap();
    for p in [
        format!("{dir}/../../../../../../../../../../etc/passwd"),
        "/etc/passwd".to_string(),
        "../../../../../../../../etc/passwd".to_string(),
        format!("{dir}/etc/passwd"),
    ] {
        for ep in ["read", "download", "browse"] {
            let (code, body) =
                request(port, "GET", &format!("/files/{ep}?path={}", enc(&p)), "").await;
            assert!(code == 403 || code == 404, "{ep} {p}: {code}");
            assert!(
                !String::from_utf8_lossy(&body).contains("root:"),
                "{ep} {p} leaked /etc/passwd"
            );
        }
    }

    // Metrics, containers, v1.
    let m = get_json(port, "/metrics/snapshot").await;
    assert_eq!(m["slave/tasks_running"], 1.0);
    assert_eq!(m["slave/registered"], 1.0);
    let cs = get_json(port, "/containers").await;
    assert_eq!(cs[0]["executor_id"], "t1");
    assert_eq!(cs[0]["framework_id"], "fw1");
    let (code, body) = request(port, "POST", "/api/v1", r#"{"type":"GET_TASKS"}"#).await;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["type"], "GET_TASKS");
    assert_eq!(
        v["get_tasks"]["launched_tasks"][0]["task_id"]["value"],
        "t1"
    );
    for ty in ["GET_STATE", "GET_CONTAINERS", "GET_FRAMEWORKS"] {
        let (code, body) = request(port, "POST", "/api/v1", &format!(r#"{{"type":"{ty}"}}"#)).await;
        assert_eq!(code, 200, "{ty}: {}", String::from_utf8_lossy(&body));
    }
    let (code, _) = request(port, "POST", "/api/v1", r#"{"type":"NOPE"}"#).await;
    assert_eq!(code, 400);

    shutdown.cancel();
    // Let the kill's final update through so the agent can stop promptly.
    if let Ok(AMsg::StatusUpdate(u)) = timeout(WAIT, conn.next()).await {
        conn.ack(&u.framework_id, u.status.as_ref().unwrap());
    }
    timeout(WAIT, handle).await.unwrap().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&work_dir);
}

//! End-to-end tests of the `tessera` binary: `tessera up` starts a cluster, reports where
//! things are, serves state, and stops cleanly on SIGTERM; bad settings fail naming the
//! setting.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("tessera-up-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

#[test]
fn up_starts_a_cluster_and_stops_cleanly_on_sigterm() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let dir = temp_dir();
    let mut child = bin()
        .args(["up", "--listen", &addr, "--agents", "2", "--work-dir"])
        .arg(&dir)
        .env("TESSERA_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Wait (bounded) until both agents are registered and active.
    let deadline = Instant::now() + Duration::from_secs(60);
    let state: serde_json::Value = loop {
        if let Some(body) = get(&addr, "/tessera/state") {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let active = v["agents"]
                .as_array()
                .map(|a| a.iter().filter(|x| x["state"] == "ACTIVE").count())
                .unwrap_or(0);
            if active == 2 {
                break v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "agents did not register within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(get(&addr, "/health").as_deref(), Some("OK\n"));
    // The two agents split the machine: their port ranges do not overlap.
    let agents = state["agents"].as_array().unwrap();
    assert_ne!(agents[0]["hostname"], agents[1]["hostname"]);

    // The client subcommand reads the same state, as JSON for scripts.
    let out = bin()
        .args(["status", "-o", "json", "--master", &addr])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["agents"].as_array().unwrap().len(), 2);
    // And TESSERA_MASTER is the fallback for --master.
    let out = bin()
        .args(["status"])
        .env("TESSERA_MASTER", &addr)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("AGENTS"));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "tessera up did not stop within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(status.success(), "exit {status:?}; stdout: {stdout}");
    assert!(stdout.contains("Tessera is up."), "{stdout}");
    assert!(stdout.contains(&format!("http://{addr}")), "{stdout}");
    assert!(
        stdout.contains(&dir.display().to_string()),
        "prints the work dir: {stdout}"
    );
    assert!(stdout.contains("Tessera stopped."), "{stdout}");
    assert!(dir.join("master").join("registry.db").exists());
    assert!(dir.join("logs").join("tessera.log").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

fn fails_naming(args: &[&str], setting: &str) {
    let out = bin()
        .args(args)
        .env_remove("TESSERA_MASTER")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(setting),
        "{args:?}: stderr should name {setting}: {err}"
    );
}

#[test]
fn bad_settings_fail_naming_the_setting() {
    let dir = temp_dir();
    let wd = dir.to_str().unwrap();
    fails_naming(&["up", "--agents", "0", "--work-dir", wd], "agents:");
    fails_naming(
        &["master", "--agent-timeout", "soon", "--work-dir", wd],
        "agent_timeout:",
    );
    fails_naming(
        &[
            "master",
            "--agent-timeout",
            "1s",
            "--agent-heartbeat-interval",
            "5s",
            "--work-dir",
            wd,
        ],
        "agent_timeout",
    );
    fails_naming(
        &["agent", "--resources", "cpus:-1", "--work-dir", wd],
        "cpus",
    );
    fails_naming(
        &["agent", "--resources", "cpus:NaN", "--work-dir", wd],
        "cpus",
    );
    fails_naming(
        &["agent", "--master", "nohost", "--work-dir", wd],
        "master:",
    );
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "[master]\nlisten_on = \"x\"\n").unwrap();
    fails_naming(&["--config", cfg.to_str().unwrap(), "master"], "listen_on");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_teaches_the_commands() {
    let out = bin().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["tessera up", "tessera master", "tessera agent", "status"] {
        assert!(text.contains(word), "--help should mention {word}: {text}");
    }
}

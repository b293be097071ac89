//! End-to-end tests of the `tessera` binary: `tessera up` starts a cluster, reports where
//! things are, serves state, and stops cleanly on SIGTERM or Ctrl-C (killing running tasks);
//! settings come from flags, then `TESSERA_*` variables, then the TOML file, and bad ones fail
//! naming the setting and where it is set.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Proc, bin, cluster, free_port, wait_until};

fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("tessera-up-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One GET: the status code and the body.
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
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
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn get(addr: &str, path: &str) -> Option<String> {
    http_get(addr, path).and_then(|(s, b)| (s == 200).then_some(b))
}

/// `[31000-31499, 32000-32099]` → the ranges.
fn port_ranges(text: &str) -> Vec<(u64, u64)> {
    text.trim_matches(['[', ']'])
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| {
            let (b, e) = r.split_once('-').unwrap_or((r, r));
            (b.parse().unwrap(), e.parse().unwrap())
        })
        .collect()
}

/// Waits (bounded) for a child to exit.
fn wait_exit(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "the process did not stop within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a process runs (a zombie waiting for its parent to reap it does not).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
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
    // The two agents split the machine: distinct hostnames, and port ranges that do not
    // overlap, as the master lists them.
    let agents = state["agents"].as_array().unwrap();
    assert_ne!(agents[0]["hostname"], agents[1]["hostname"]);
    let slaves: serde_json::Value =
        serde_json::from_str(&get(&addr, "/master/slaves").unwrap()).unwrap();
    let ports: Vec<Vec<(u64, u64)>> = slaves["slaves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| port_ranges(s["resources"]["ports"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(ports.len(), 2, "{slaves}");
    assert!(
        ports.iter().all(|p| !p.is_empty()),
        "each agent offers ports: {ports:?}"
    );
    for (b0, e0) in &ports[0] {
        for (b1, e1) in &ports[1] {
            assert!(e0 < b1 || e1 < b0, "agents' port ranges overlap: {ports:?}");
        }
    }

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
    let status = wait_exit(&mut child, Duration::from_secs(30));
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

/// Host pids of running processes whose command line is `argv` (the program by its file
/// name: the agent may resolve it to a full path).
fn pids_running(argv: &[&str]) -> Vec<i32> {
    let matches = |cmdline: Vec<u8>| {
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        args.len() == argv.len()
            && args[0].rsplit('/').next() == Some(argv[0])
            && args[1..] == argv[1..]
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(matches))
        .filter(|pid| alive(*pid))
        .collect()
}

/// Kills a task process left behind by a failing test.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[test]
fn ctrl_c_kills_running_tasks_and_exits_cleanly() {
    let mut c = cluster("sigint", &[]);
    // A long-running batch job, told apart from every other process by its argument.
    let secs = (500_000 + std::process::id() % 100_000).to_string();
    let out = bin()
        .args(["batch", "--server", &c.addr, "submit", "-o", "json"])
        .args(["--cpus", "0.1", "--mem", "16", "--", "sleep", &secs])
        .env("TESSERA_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut pids = Vec::new();
    wait_until("the task's process", 60, || {
        pids = pids_running(&["sleep", &secs]);
        !pids.is_empty()
    });
    assert_eq!(pids.len(), 1, "one task process: {pids:?}");
    let _cleanup = KillOnDrop(pids[0]);
    let state: serde_json::Value =
        serde_json::from_str(&get(&c.addr, "/tessera/state").unwrap()).unwrap();
    assert_eq!(
        state["tasks"].as_array().map(Vec::len),
        Some(1),
        "one task: {}",
        state["tasks"]
    );

    // Ctrl-C: `tessera up` kills the task and exits 0, promptly.
    let up = &mut c._up.0;
    let t0 = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = wait_exit(up, Duration::from_secs(30));
    let took = t0.elapsed();
    assert!(status.success(), "exit {status:?}");
    assert!(
        took < Duration::from_secs(10),
        "took {took:?} to stop after Ctrl-C"
    );
    assert!(
        !alive(pids[0]),
        "the task's process {} outlived `tessera up`",
        pids[0]
    );
}

#[test]
fn bad_environment_variables_fail_naming_the_variable() {
    let dir = temp_dir();
    let wd = dir.to_str().unwrap();
    let cases: [(&str, &str, &[&str]); 5] = [
        (
            "TESSERA_AGENT_TIMEOUT",
            "soon",
            &["master", "--work-dir", wd],
        ),
        ("TESSERA_OFFER_TIMEOUT", "5x", &["master", "--work-dir", wd]),
        ("TESSERA_AGENTS", "0", &["up", "--work-dir", wd]),
        ("TESSERA_MASTER", "nohost", &["agent", "--work-dir", wd]),
        ("TESSERA_ATTRIBUTES", "rack", &["agent", "--work-dir", wd]),
    ];
    for (var, value, args) in cases {
        let out = bin()
            .args(args)
            .env(var, value)
            .env_remove("TESSERA_CONFIG")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(var) && err.contains(value),
            "{var}={value}: stderr should name the variable and the value: {err}"
        );
    }
    // Values clap parses itself (addresses, numbers, choices) are refused by clap, which
    // names the flag the variable stands for.
    let out = bin()
        .args(["master", "--work-dir", wd])
        .env("TESSERA_LISTEN", "bogus")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--listen") && err.contains("bogus"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn client_commands_fall_back_to_localhost_5050() {
    // Stand in for a master on the default address, if it is free here.
    let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:5050") else {
        eprintln!("127.0.0.1:5050 is taken; checking the error message only");
        let out = bin()
            .args(["status"])
            .env_remove("TESSERA_MASTER")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || err.contains("127.0.0.1:5050"),
            "{err}"
        );
        return;
    };
    let seen = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap_or(0);
        let _ = s.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    let out = bin()
        .args(["status"])
        .env_remove("TESSERA_MASTER")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the stand-in answers 503");
    let request = seen.join().unwrap();
    assert!(
        request.starts_with("GET /tessera/state"),
        "`tessera status` asked 127.0.0.1:5050: {request:?}"
    );
}

#[test]
fn flags_beat_environment_which_beats_the_config_file() {
    let dir = temp_dir();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = dir.join("tessera.toml");
    std::fs::write(
        &cfg,
        format!(
            "[master]\nlisten = \"{addr}\"\nwork_dir = \"{}\"\nagent_timeout = \"42s\"\n\
             offer_timeout = \"3s\"\nallocation_interval = \"3s\"\nno_batch = true\n",
            dir.join("m").display()
        ),
    )
    .unwrap();
    let child = bin()
        .arg("--config")
        .arg(&cfg)
        .args(["master", "--allocation-interval", "250ms"])
        .env("TESSERA_OFFER_TIMEOUT", "9s")
        .env("TESSERA_ALLOCATION_INTERVAL", "2s")
        .env_remove("TESSERA_LISTEN")
        .env_remove("TESSERA_WORK_DIR")
        .env_remove("TESSERA_AGENT_TIMEOUT")
        .env_remove("TESSERA_NO_BATCH")
        .env("TESSERA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut master = Proc(child);
    // It listens where the file says.
    let mut flags = serde_json::Value::Null;
    wait_until("the master serving /master/flags", 60, || {
        if let Some(body) = get(&addr, "/master/flags") {
            flags = serde_json::from_str(&body).unwrap();
            true
        } else {
            false
        }
    });
    let f = &flags["flags"];
    assert_eq!(f["agent_timeout"], "42000ms", "from the file: {f}");
    assert_eq!(
        f["offer_timeout"], "9000ms",
        "the variable beats the file: {f}"
    );
    assert_eq!(
        f["allocation_interval"], "250ms",
        "the flag beats both: {f}"
    );
    assert_eq!(
        f["work_dir"].as_str(),
        Some(dir.join("m").to_str().unwrap()),
        "{f}"
    );
    assert!(dir.join("m").join("registry.db").exists());
    // `no_batch = true` in the file: no batch scheduler on the master's port.
    assert_eq!(http_get(&addr, "/batch/v1/jobs").map(|(s, _)| s), Some(404));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(master.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_exit(&mut master.0, Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

//! hello-framework against a real `tessera up`: the SDK driver over the public v1 API,
//! real agents, real processes. Bounded waits; the cluster is stopped with SIGTERM.

use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `tessera` binary cargo built beside this test (the workspace shares one target dir).
fn tessera_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let bin = dir.join("tessera");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p tessera`, or run the whole workspace's tests)",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn healthy(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if std::io::Write::write_all(
        &mut s,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

#[test]
fn hello_framework_runs_its_tasks_to_finished_on_tessera_up() {
    let addr = format!("127.0.0.1:{}", free_port());
    let work = std::env::temp_dir().join(format!("tessera-hello-{}", std::process::id()));
    let mut up = Command::new(tessera_bin())
        .args(["up", "--listen", &addr, "--agents", "2", "--work-dir"])
        .arg(&work)
        .env("TESSERA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !healthy(&addr) {
        assert!(
            Instant::now() < deadline,
            "tessera up did not become healthy within 60 s"
        );
        assert!(up.try_wait().unwrap().is_none(), "tessera up exited early");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut hello = Command::new(env!("CARGO_BIN_EXE_hello-framework"))
        .args(["--master", &addr, "--tasks", "3"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = hello.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = hello.kill();
            panic!("hello-framework did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    hello
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(up.id().to_string())
        .status();
    let _ = up.wait();
    let _ = std::fs::remove_dir_all(&work);
    assert!(
        status.success(),
        "hello-framework failed: {status:?}\n{out}"
    );
    assert!(out.contains("done: 3 tasks, all finished: true"), "{out}");
    assert_eq!(out.matches("TASK_FINISHED").count(), 3, "{out}");
}

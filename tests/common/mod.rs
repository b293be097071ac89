//! What the end-to-end tests share: the `tessera` binary, a `tessera up` cluster on a free
//! port that is torn down when dropped, and polling with a deadline.
#![allow(dead_code)]

pub mod mpi;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process killed (SIGKILL) when dropped, so a failing test leaves nothing behind.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Cluster {
    pub addr: String,
    pub dir: PathBuf,
    pub _up: Proc,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `tessera up` with two agents; `extra` flags such as `--no-batch`.
pub fn cluster(tag: &str, extra: &[&str]) -> Cluster {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let dir = std::env::temp_dir().join(format!("tessera-e2e-{tag}-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let up = bin()
        .args(["up", "--listen", &addr, "--agents", "2", "--work-dir"])
        .arg(&dir)
        .args(extra)
        .env("TESSERA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let c = Cluster {
        addr,
        dir,
        _up: Proc(up),
    };
    wait_until("two active agents", 60, || {
        let out = bin()
            .args(["status", "--master", &c.addr, "-o", "json"])
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v["agents"].as_array().cloned())
            .is_some_and(|a| a.iter().filter(|x| x["state"] == "ACTIVE").count() == 2)
    });
    c
}

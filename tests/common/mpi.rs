//! What the MPI end-to-end tests share: the example programs, `tessera mpi run`, the
//! master's view of live tasks, and raw HTTP calls.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Cluster, bin};

/// An example built next to the `tessera` binary (`cargo test` builds the examples).
pub fn example(name: &str) -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_tessera"));
    let p = exe
        .parent()
        .expect("the binary lives in a directory")
        .join("examples")
        .join(name);
    assert!(
        p.is_file(),
        "{} is missing: build the examples (`cargo build --examples`; scripts/test.sh does)",
        p.display()
    );
    p
}

/// The Open MPI build of `mpi_ring` (scripts/test.sh builds it into TARGET/openmpi).
pub fn openmpi_ring() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_tessera"));
    let target = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("the binary lives in TARGET/debug");
    let p = target.join("openmpi/debug/mpi_ring_openmpi");
    assert!(
        p.is_file(),
        "{} is missing: MPICC=mpicc.openmpi cargo build --manifest-path tests/openmpi-ring/Cargo.toml --target-dir TARGET/openmpi (scripts/test.sh does)",
        p.display()
    );
    p
}

/// Whether MPICH is installed; the tests say clearly when they cannot run.
pub fn mpich() -> bool {
    let ok = std::process::Command::new("mpichversion")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIP: MPICH is not installed (apt-get install mpich libmpich-dev); scripts/test.sh installs it"
        );
    }
    ok
}

pub fn mpi_run(c: &Cluster, args: &[&str]) -> Output {
    mpi_run_at(&c.addr, args)
}

pub fn mpi_run_at(master: &str, args: &[&str]) -> Output {
    bin()
        .args(["mpi", "run", "--master", master])
        .args(args)
        .output()
        .unwrap()
}

pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// GETs a JSON document from the master.
pub fn get(addr: &str, path: &str) -> Value {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return Value::Null;
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return Value::Null;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// Live tasks and used cpus on the master, from `/master/state`.
pub fn usage(c: &Cluster) -> (usize, f64) {
    usage_at(&c.addr)
}

pub fn usage_at(master: &str) -> (usize, f64) {
    let v = get(master, "/master/state");
    let live = |t: &Value| {
        matches!(
            t["state"].as_str(),
            Some("TASK_STAGING" | "TASK_STARTING" | "TASK_RUNNING" | "TASK_KILLING")
        )
    };
    let tasks = v["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|f| f["tasks"].as_array().into_iter().flatten())
        .filter(|t| live(t))
        .count();
    let used = v["slaves"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| a["used_resources"]["cpus"].as_f64().unwrap_or(0.0))
        .sum();
    (tasks, used)
}

/// Polls until every task ended and no cpu is in use: the job freed what it held.
pub fn assert_freed(c: &Cluster) {
    assert_freed_at(&c.addr)
}

pub fn assert_freed_at(master: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (tasks, used) = usage_at(master);
        if tasks == 0 && used < 1e-9 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {tasks} live tasks and {used} cpus used 20 s after the job ended"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// POSTs a JSON body; the status and the body.
pub fn post_json(addr: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        status,
        buf.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    )
}

//! `tessera sim --processes N`: the simulated agents in N child processes attached to the
//! master's real gRPC listener. Asserts invariants (every task placed and finished, nothing
//! over-committed, the agents' own counts match), that no agent process outlives the run —
//! also when the parent is killed — and that bad process counts are refused.
//!
//! The children are found by an environment variable they inherit from the parent.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{bin, wait_until};
use serde_json::Value;

const MARKER: &str = "TESSERA_SIM_TEST_MARKER";

/// Live (not zombie) processes whose environment carries `MARKER=tag`, other than `except`.
fn marked(tag: &str, except: u32) -> Vec<u32> {
    let needle = format!("{MARKER}={tag}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != except)
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The state follows the parenthesised command name.
            let state = stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next());
            if matches!(state, None | Some('Z') | Some('X')) {
                return false;
            }
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

fn tag(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

#[test]
fn agents_in_processes_run_every_task_over_grpc_and_leave_no_process_behind() {
    let tag = tag("run");
    let child = bin()
        .args([
            "sim",
            "--processes",
            "2",
            "--agents",
            "20",
            "--tasks",
            "500",
        ])
        .args(["--profile", "batch", "--json"])
        .env(MARKER, &tag)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let parent = child.id();
    // Count the agent processes while the run goes on.
    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (most, done, tag) = (Arc::clone(&most), Arc::clone(&done), tag.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                most.fetch_max(marked(&tag, parent).len(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let out = child.wait_with_output().unwrap();
    done.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    assert!(out.status.success(), "tessera sim failed: {:?}", out.status);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["processes"], 2, "{r}");
    assert_eq!(r["clock"], "real", "{r}");
    assert_eq!(r["tasks_placed"], 500, "{r}");
    assert_eq!(r["tasks_finished"], 500, "{r}");
    // The agents' own counts, reported by the processes at the end.
    assert_eq!(r["agent_tasks_run"], 500, "{r}");
    assert_eq!(r["agent_tasks_finished"], 500, "{r}");
    assert_eq!(r["overcommits"], 0, "{r}");
    assert!(
        r["agent_processes_peak_rss_bytes"].as_u64().unwrap() > 0,
        "{r}"
    );
    assert!(r["peak_rss_bytes"].as_u64().unwrap() > 0, "{r}");
    assert!(r["allocation_cycles"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(
        most.load(Ordering::Relaxed),
        2,
        "two agent processes while running"
    );
    assert!(
        marked(&tag, 0).is_empty(),
        "an agent process outlived the run"
    );
}

#[test]
fn agent_processes_stop_when_the_parent_is_killed() {
    let tag = tag("kill");
    let mut child = bin()
        .args(["sim", "--processes", "2", "--agents", "4", "--decline-all"])
        .args(["--duration", "600s", "--json"])
        .env(MARKER, &tag)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let parent = child.id();
    wait_until("two agent processes", 60, || {
        marked(&tag, parent).len() == 2
    });
    // Let them attach and register their agents first.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        marked(&tag, parent).len(),
        2,
        "the agent processes died early"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(parent as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait();
    // Their stdin closed with the parent: they stop on their own.
    wait_until("the agent processes to exit", 20, || {
        marked(&tag, 0).is_empty()
    });
}

#[test]
fn bad_process_counts_are_refused_naming_the_flag() {
    for args in [
        vec!["--processes", "0"],
        vec!["--agents", "3", "--processes", "4"],
    ] {
        let out = bin()
            .arg("sim")
            .args(&args)
            .args(["--tasks", "10"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("processes"), "{args:?}: {err}");
    }
}

//! End to end: `tessera mpi run` against a real `tessera up` (two agents, real processes),
//! with real MPICH ranks (the `mpi_*` examples) launched directly through Tessera's PMI-1
//! server — no mpiexec.

mod common;
#[path = "mpi/stdin.rs"]
mod stdin;

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use common::mpi::*;
use common::{bin, cluster};
use serde_json::Value;

#[test]
fn ranks_across_two_agents_run_and_report_output_and_exit_code() {
    if !mpich() {
        return;
    }
    let c = cluster("mpi-ring", &["--no-batch"]);
    let ring = example("mpi_ring");
    let r = ring.to_str().unwrap();
    let o = mpi_run(&c, &["-n", "4", "--ppn", "2", "--cpus-per-rank", "0.2", r]);
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        out(&o),
        err(&o)
    );
    let text = out(&o);
    assert!(
        text.contains("[0] ring token back at rank 0: 6 (expected 6)"),
        "{text}"
    );
    for rank in 0..4 {
        assert!(
            text.contains(&format!("[{rank}] rank {rank}/4 on")),
            "rank {rank} output missing:\n{text}"
        );
    }
    assert!(
        err(&o).contains("launched 4 ranks on 2 agents"),
        "{}",
        err(&o)
    );

    let all = example("mpi_allreduce");
    let o = mpi_run(
        &c,
        &[
            "-n",
            "8",
            "--spread",
            "--cpus-per-rank",
            "0.1",
            "-o",
            "json",
            all.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let summary: Value = serde_json::from_str(out(&o).trim()).expect("one JSON object");
    assert_eq!(summary["outcome"], "succeeded");
    assert_eq!(summary["exit_code"], 0);
    assert!(
        summary["initialized_seconds"].as_f64().is_some(),
        "{summary}"
    );
    // With -o json the ranks' output goes to stderr.
    assert_eq!(err(&o).matches("ok=true").count(), 8, "{}", err(&o));
    assert_freed(&c);
}

#[test]
fn a_failing_rank_ends_the_job_and_frees_every_resource() {
    if !mpich() {
        return;
    }
    let c = cluster("mpi-fail", &["--no-batch"]);
    let ring = example("mpi_ring");
    let r = ring.to_str().unwrap();
    // (where it fails, the exit status the CLI must give, what it must say)
    let cases = [
        ("abort", 5, "called MPI_Abort(5)"),
        ("before-init", 3, "rank 1 "),
        ("after-init", 0, "rank 1 "),
    ];
    for (at, code, says) in cases {
        let start = Instant::now();
        let o = mpi_run(
            &c,
            &[
                "-n",
                "4",
                "--ppn",
                "2",
                "--cpus-per-rank",
                "0.2",
                "--env",
                "RING_FAIL_RANK=1",
                "--env",
                &format!("RING_FAIL_AT={at}"),
                "--env",
                "RING_SLEEP_MS=60000",
                r,
            ],
        );
        assert!(!o.status.success(), "{at}: the job must fail");
        if code != 0 {
            assert_eq!(o.status.code(), Some(code), "{at}: {}", err(&o));
        }
        assert!(err(&o).contains(says), "{at}: {}", err(&o));
        assert!(err(&o).contains("job failed"), "{at}: {}", err(&o));
        // The surviving ranks sleep 60 s unless killed: they were, within seconds.
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{at}: the job took {:?}; the other ranks were not killed",
            start.elapsed()
        );
        assert_freed(&c);
    }
    // The cluster is whole again: a good job runs.
    let o = mpi_run(&c, &["-n", "4", "--ppn", "2", "--cpus-per-rank", "0.2", r]);
    assert!(o.status.success(), "{}", err(&o));
}

#[test]
fn the_time_limit_kills_the_gang() {
    if !mpich() {
        return;
    }
    let c = cluster("mpi-time", &["--no-batch"]);
    let ring = example("mpi_ring");
    let o = mpi_run(
        &c,
        &[
            "-n",
            "2",
            "--cpus-per-rank",
            "0.2",
            "-t",
            "2s",
            "--env",
            "RING_SLEEP_MS=60000",
            "-o",
            "json",
            ring.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(124), "{}", err(&o));
    let summary: Value = serde_json::from_str(out(&o).trim()).expect("one JSON object");
    assert_eq!(summary["outcome"], "timed_out");
    assert!(
        summary["total_seconds"].as_f64().unwrap() < 30.0,
        "{summary}"
    );
    assert_freed(&c);
}

#[test]
fn two_gangs_that_cannot_both_fit_run_one_after_the_other() {
    if !mpich() {
        return;
    }
    let c = cluster("mpi-two", &["--no-batch"]);
    let ring = example("mpi_ring");
    let r = ring.to_str().unwrap().to_string();
    // Each gang takes 0.35 cpus × 4 = 1.4 of the cluster's 2 cpus: never both at once.
    let spawn = |tag: &str| {
        bin()
            .args(["mpi", "run", "--master", &c.addr, "-n", "4", "--ppn", "2"])
            .args(["--cpus-per-rank", "0.35", "--hold", "3", "-o", "json"])
            .args([
                "--env",
                "RING_SLEEP_MS=1500",
                "--env",
                &format!("TAG={tag}"),
                &r,
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let t0 = Instant::now();
    let a = spawn("a");
    let b = spawn("b");
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let elapsed = t0.elapsed();
    for (name, o) in [("a", &a), ("b", &b)] {
        assert!(o.status.success(), "gang {name}: {}", err(o));
        assert_eq!(
            err(o).matches("ok=true").count(),
            4,
            "gang {name}: {}",
            err(o)
        );
    }
    // One ran after the other: the later one waited at least as long as a run takes.
    let waited = |o: &Output| {
        let v: Value = serde_json::from_str(out(o).trim()).unwrap();
        v["waited_seconds"].as_f64().unwrap()
    };
    let later = waited(&a).max(waited(&b));
    assert!(
        later >= 1.4,
        "the second gang launched after {later} s: the gangs overlapped"
    );
    assert!(elapsed < Duration::from_secs(90), "took {elapsed:?}");
    assert_freed(&c);
}

#[test]
fn bad_input_is_refused_before_any_rank_starts() {
    if !mpich() {
        return;
    }
    let c = cluster("mpi-bad", &["--no-batch"]);
    let ring = example("mpi_ring");
    let r = ring.to_str().unwrap();
    let dir = c.dir.join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let not_exec = dir.join("plain.txt");
    std::fs::write(&not_exec, "hello").unwrap();
    let ne = not_exec.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["-n", "2", "/no/such/program"], "does not exist"),
        (&["-n", "2", ne], "not executable"),
        (&["-n", "400", r], "can never fit"),
        (&["-n", "0", r], "ranks"),
        (
            &["-n", "2", "--impl", "openmpi", "--launch", "pmi", r],
            "--launch pmi",
        ),
        (&["-n", "2", "--mem-per-rank", "2X", r], "--mem-per-rank"),
    ];
    for (args, says) in cases {
        let o = mpi_run(&c, args);
        assert!(!o.status.success(), "{args:?} must fail");
        assert!(err(&o).contains(says), "{args:?}: {}", err(&o));
        let (tasks, _) = usage(&c);
        assert_eq!(tasks, 0, "{args:?} started tasks");
    }
}

/// Hydra (`mpiexec.hydra`) and Open MPI (`mpirun`) with their per-node daemons started as
/// Tessera tasks instead of over ssh: 4 and 8 ranks over both agents, and a failing rank
/// ends the job and frees everything.
#[test]
fn hydra_and_open_mpi_start_their_daemons_as_tasks() {
    if !mpich() {
        return;
    }
    let c = cluster("mpi-launchers", &["--no-batch"]);
    let mpich_ring = example("mpi_ring");
    let ompi_ring = openmpi_ring();
    let modes: [(&[&str], &PathBuf, &str); 2] = [
        (&["--launch", "hydra"], &mpich_ring, "MPICH"),
        (&["--impl", "openmpi"], &ompi_ring, "Open MPI"),
    ];
    for (mode, ring, lib) in modes {
        let r = ring.to_str().unwrap();
        for (n, layout) in [("4", ["--ppn", "2"]), ("8", ["--ppn", "4"])] {
            let mut args = vec!["-n", n, layout[0], layout[1], "--cpus-per-rank", "0.1"];
            args.extend_from_slice(mode);
            args.push(r);
            let o = mpi_run(&c, &args);
            assert!(
                o.status.success(),
                "{mode:?} -n {n}: {}\n{}",
                out(&o),
                err(&o)
            );
            let text = out(&o);
            assert!(
                text.contains(&format!("[0] library: {lib}")),
                "{mode:?}: {text}"
            );
            let expected = {
                let k: u32 = n.parse().unwrap();
                k * (k - 1) / 2
            };
            assert!(
                text.contains(&format!("[0] ring token back at rank 0: {expected}")),
                "{mode:?}: {text}"
            );
            assert_eq!(
                text.matches("ok=true").count(),
                n.parse::<usize>().unwrap(),
                "{text}"
            );
            assert!(
                err(&o).contains(&format!("launched {n} ranks on 2 agents")),
                "{}",
                err(&o)
            );
            assert_freed(&c);
        }
        let start = Instant::now();
        let mut args = vec![
            "-n",
            "4",
            "--ppn",
            "2",
            "--cpus-per-rank",
            "0.1",
            "--env",
            "RING_FAIL_RANK=1",
            "--env",
            "RING_FAIL_AT=after-init",
            "--env",
            "RING_SLEEP_MS=60000",
        ];
        args.extend_from_slice(mode);
        args.push(r);
        let o = mpi_run(&c, &args);
        assert_eq!(o.status.code(), Some(3), "{mode:?}: {}", err(&o));
        assert!(err(&o).contains("job failed"), "{mode:?}: {}", err(&o));
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{mode:?}: {:?}",
            start.elapsed()
        );
        assert_freed(&c);
    }
}

/// Two "hosts": network namespaces on a bridge, removed when dropped.
struct Hosts {
    bridge: String,
    namespaces: Vec<String>,
    /// The bridge's address (the master's) and each namespace's, in order.
    master_ip: String,
    ips: Vec<String>,
}

fn sh(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .status()
        .is_ok_and(|s| s.success())
}

impl Hosts {
    fn create() -> Option<Hosts> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP: network namespaces need root");
            return None;
        }
        if !sh("command -v ip >/dev/null") {
            eprintln!("SKIP: the `ip` command (iproute2) is not installed");
            return None;
        }
        let id = std::process::id() % 10_000;
        let net = format!("10.77.{}", id % 250);
        let h = Hosts {
            bridge: format!("tsbr{id}"),
            namespaces: vec![format!("tsa{id}"), format!("tsb{id}")],
            master_ip: format!("{net}.254"),
            ips: vec![format!("{net}.1"), format!("{net}.2")],
        };
        let b = &h.bridge;
        let mut script = format!(
            "set -e; ip link add {b} type bridge; ip addr add {}/24 dev {b}; ip link set {b} up;",
            h.master_ip
        );
        for (i, (ns, ip)) in h.namespaces.iter().zip(&h.ips).enumerate() {
            let v = format!("tsv{id}{i}");
            script.push_str(&format!(
                "ip netns add {ns}; ip link add {v} type veth peer name {v}b; \
                 ip link set {v} netns {ns}; ip link set {v}b master {b} up; \
                 ip -n {ns} addr add {ip}/24 dev {v}; ip -n {ns} link set {v} up; \
                 ip -n {ns} link set lo up;"
            ));
        }
        if !sh(&script) {
            eprintln!("SKIP: cannot create network namespaces and a bridge here");
            return None;
        }
        // Where Docker set the FORWARD policy to DROP (and bridged traffic goes through
        // iptables), traffic between the namespaces would be dropped.
        sh(&format!(
            "command -v iptables >/dev/null && iptables -I FORWARD -i {b} -o {b} -j ACCEPT"
        ));
        Some(h)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let b = &self.bridge;
        sh(&format!(
            "command -v iptables >/dev/null && iptables -D FORWARD -i {b} -o {b} -j ACCEPT 2>/dev/null"
        ));
        for ns in &self.namespaces {
            sh(&format!("ip netns del {ns} 2>/dev/null"));
        }
        sh(&format!("ip link del {} 2>/dev/null", self.bridge));
    }
}

/// A master on the bridge and one agent in each namespace, bound to its own address; every
/// launch mode runs 4 and 8 ranks across them.
#[test]
fn ranks_span_agents_in_their_own_network_namespaces_in_every_launch_mode() {
    if !mpich() {
        return;
    }
    let Some(hosts) = Hosts::create() else {
        return;
    };
    let port = common::free_port();
    let master = format!("{}:{port}", hosts.master_ip);
    let dir = std::env::temp_dir().join(format!("tessera-e2e-netns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let quiet = std::process::Stdio::null;
    let _master = common::Proc(
        bin()
            .args(["master", "--listen", &master, "--no-batch", "--work-dir"])
            .arg(dir.join("master"))
            .env("TESSERA_LOG", "warn")
            .stdout(quiet())
            .stderr(quiet())
            .spawn()
            .unwrap(),
    );
    let tessera = env!("CARGO_BIN_EXE_tessera");
    let _agents: Vec<common::Proc> = hosts
        .namespaces
        .iter()
        .zip(&hosts.ips)
        .enumerate()
        .map(|(i, (ns, ip))| {
            common::Proc(
                std::process::Command::new("ip")
                    .args(["netns", "exec", ns, tessera, "agent", "--master", &master])
                    .args(["--http-listen", &format!("{ip}:5051")])
                    .args([
                        "--resources",
                        "cpus:2;mem:4096;disk:4096;ports:[31000-31100]",
                    ])
                    .arg("--work-dir")
                    .arg(dir.join(format!("agent-{i}")))
                    .env("TESSERA_LOG", "warn")
                    .stdout(quiet())
                    .stderr(quiet())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    common::wait_until("both agents registered from their namespaces", 60, || {
        let v = get(&master, "/master/slaves");
        let pids: Vec<String> = v["slaves"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["pid"].as_str().map(str::to_string))
            .collect();
        hosts
            .ips
            .iter()
            .all(|ip| pids.iter().any(|p| p.contains(&format!("@{ip}:"))))
    });
    let mpich_ring = example("mpi_ring");
    let ompi_ring = openmpi_ring();
    let modes: [(&[&str], &PathBuf); 3] = [
        (&["--launch", "pmi"], &mpich_ring),
        (&["--launch", "hydra"], &mpich_ring),
        (&["--impl", "openmpi"], &ompi_ring),
    ];
    for (mode, ring) in modes {
        for (n, ppn) in [("4", "2"), ("8", "4")] {
            let mut args = vec!["-n", n, "--ppn", ppn, "--cpus-per-rank", "0.1", "-t", "60s"];
            args.extend_from_slice(mode);
            args.push(ring.to_str().unwrap());
            let o = mpi_run_at(&master, &args);
            assert!(
                o.status.success(),
                "{mode:?} -n {n}: {}\n{}",
                out(&o),
                err(&o)
            );
            let k: usize = n.parse().unwrap();
            assert_eq!(
                out(&o).matches("ok=true").count(),
                k,
                "{mode:?}: {}",
                out(&o)
            );
            assert!(
                err(&o).contains(&format!("launched {n} ranks on 2 agents")),
                "{}",
                err(&o)
            );
            assert_freed_at(&master);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Jobs in the background on the MPI service `tessera up` hosts: submit, queue, why, logs,
/// cancel, and bad input refused naming the field.
#[test]
fn the_mpi_service_queues_jobs_in_the_background() {
    if !mpich() {
        return;
    }
    let c = cluster("mpi-service", &["--no-batch"]);
    let ring = example("mpi_ring");
    let r = ring.to_str().unwrap();
    let mpi = |args: &[&str]| {
        bin()
            .args(["mpi", "--master", &c.addr])
            .args(args)
            .output()
            .unwrap()
    };
    // Two gangs of 1.6 cpus on a 2-cpu cluster: the second waits for the first.
    let gang = ["-n", "4", "--ppn", "2", "--cpus-per-rank", "0.4"];
    let submit = |extra: &[&str]| {
        let mut args = vec!["submit", "-o", "json"];
        args.extend_from_slice(&gang);
        args.extend_from_slice(extra);
        args.push(r);
        let o = mpi(&args);
        assert!(o.status.success(), "{}", err(&o));
        serde_json::from_str::<Value>(out(&o).trim()).unwrap()["id"]
            .as_u64()
            .unwrap()
    };
    let first = submit(&["--env", "RING_SLEEP_MS=3000"]);
    let second = submit(&["--launch", "hydra"]);
    let state = |id: u64| {
        let o = mpi(&["show", &id.to_string()]);
        assert!(o.status.success(), "{}", err(&o));
        serde_json::from_str::<Value>(&out(&o)).unwrap()
    };
    common::wait_until("the first job runs", 30, || {
        state(first)["state"] == "RUNNING"
    });
    let why = mpi(&["why", &second.to_string()]);
    assert!(out(&why).contains("PENDING"), "{}", out(&why));
    let queue = out(&mpi(&["queue"]));
    assert!(
        queue.contains("RUNNING") && queue.contains("PENDING"),
        "{queue}"
    );
    // logs -f follows the first job to its end.
    let logs = mpi(&["logs", "-f", &first.to_string()]);
    assert!(logs.status.success(), "{}", err(&logs));
    assert!(
        out(&logs).contains("[0] ring token back at rank 0: 6"),
        "{}",
        out(&logs)
    );
    assert_eq!(state(first)["state"], "COMPLETED");
    common::wait_until("the second job completes", 30, || {
        state(second)["state"] == "COMPLETED"
    });
    assert_eq!(
        out(&mpi(&["logs", &second.to_string()]))
            .matches("ok=true")
            .count(),
        4
    );

    // Cancel a running job: its ranks are killed and the cluster is free again.
    let long = submit(&["--env", "RING_SLEEP_MS=60000"]);
    common::wait_until("the long job runs", 30, || {
        state(long)["state"] == "RUNNING"
    });
    assert!(mpi(&["cancel", &long.to_string()]).status.success());
    common::wait_until("the long job is cancelled", 30, || {
        state(long)["state"] == "CANCELLED"
    });
    assert_eq!(state(long)["exit_code"], 125);
    assert_freed(&c);

    // Bad input changes nothing and names the field; unknown jobs are 404.
    let before = out(&mpi(&["queue", "-o", "json"]));
    let too_big = mpi(&["submit", "-n", "400", r]);
    assert!(!too_big.status.success());
    assert!(err(&too_big).contains("can never fit"), "{}", err(&too_big));
    let (status, body) = post_json(
        &c.addr,
        "/mpi/v1/jobs",
        r#"{"ranks": 0, "cpus_per_rank": 1, "mem_per_rank_mb": 64, "argv": ["/bin/true"]}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"field\":\"ranks\""), "{body}");
    let (status, body) = post_json(
        &c.addr,
        "/mpi/v1/jobs",
        r#"{"ranks": 2, "cpus_per_rank": 1, "mem_per_rank_mb": 64, "argv": ["true"]}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("argv[0]"), "{body}");
    assert_eq!(out(&mpi(&["queue", "-o", "json"])), before);
    let again = mpi(&["cancel", &first.to_string()]);
    assert!(!again.status.success());
    assert!(err(&again).contains("already ended"), "{}", err(&again));
    let unknown = mpi(&["cancel", "999"]);
    assert!(!unknown.status.success());
    assert!(
        err(&unknown).contains("unknown gang 999"),
        "{}",
        err(&unknown)
    );
}

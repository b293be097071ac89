//! End to end: the batch scheduler inside a real `tessera up` (real agents, real processes),
//! driven only through the `tessera batch` CLI, as a user would.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, Proc, bin, cluster, free_port, wait_until};

use serde_json::Value;

fn batch(server: &str, args: &[&str]) -> Output {
    bin()
        .arg("batch")
        .args(["--server", server])
        .args(args)
        .env("TESSERA_LOG", "warn")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Submits and returns the job id (`-o json`).
fn submit(server: &str, args: &[&str]) -> u64 {
    let mut all = vec!["submit", "-o", "json"];
    all.extend_from_slice(args);
    let o = batch(server, &all);
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["id"].as_u64().unwrap()
}

fn show(server: &str, id: u64) -> Value {
    let o = batch(server, &["show", "-o", "json", &id.to_string()]);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn wait_ended(server: &str, id: u64, secs: u64) -> Value {
    let mut last = Value::Null;
    wait_until(&format!("job {id} ending"), secs, || {
        last = show(server, id);
        matches!(
            last["state"].as_str(),
            Some("COMPLETED" | "FAILED" | "CANCELLED" | "TIMEOUT")
        )
    });
    last
}

const SMALL: [&str; 4] = ["--cpus", "0.1", "--mem", "16"];

#[test]
fn submit_wait_logs_failures_retries_and_time_limits() {
    let c = cluster("basic", &[]);
    let s = c.addr.as_str();

    // Submit, wait, read both streams.
    let mut args = vec!["submit", "--wait"];
    args.extend(SMALL);
    args.extend([
        "--job-name",
        "greet",
        "--",
        "sh",
        "-c",
        "echo out $TESSERA_JOB_ID; echo err >&2",
    ]);
    let o = batch(s, &args);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "Submitted batch job 1"
    );
    let o = batch(s, &["logs", "1"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "out 1\n",
        "{}",
        text(&o)
    );
    let o = batch(s, &["logs", "--stderr", "1"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "err\n", "{}", text(&o));

    // `logs -f` follows a running task's output until it ends.
    let mut args = SMALL.to_vec();
    args.extend(["--wrap", "echo a; sleep 1; echo b"]);
    let follow = submit(s, &args);
    let o = batch(s, &["logs", "-f", &follow.to_string()]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "a\nb\n", "{}", text(&o));
    let o = batch(s, &["history", "-o", "json"]);
    let h: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        h["jobs"][0]["id"].as_u64(),
        Some(follow),
        "newest first: {h}"
    );

    // A failing job: --wait exits with the task's exit code.
    let mut args = vec!["submit", "--wait"];
    args.extend(SMALL);
    args.extend(["--wrap", "exit 7"]);
    let o = batch(s, &args);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    assert_eq!(show(s, 3)["state"], "FAILED");

    // Retry, then success: the first attempt leaves a marker and fails.
    let marker = c.dir.join("retry-marker");
    let script = format!(
        "if [ -e {m} ]; then echo second; else touch {m}; exit 1; fi",
        m = marker.display()
    );
    let mut args = vec!["submit", "--wait", "--retries", "2", "--backoff", "1s"];
    args.extend(SMALL);
    args.extend(["--wrap", &script]);
    let o = batch(s, &args);
    assert!(o.status.success(), "{}", text(&o));
    let j = show(s, 4);
    assert_eq!(j["state"], "COMPLETED");
    assert_eq!(j["task_list"][0]["attempt"], 2);
    assert_eq!(j["task_list"][0]["failures"], 1);

    // A time limit kills the task and ends the job TIMEOUT (exit 124).
    let mut args = vec!["submit", "--wait", "--time", "2s"];
    args.extend(SMALL);
    args.extend(["--", "sleep", "60"]);
    let started = Instant::now();
    let o = batch(s, &args);
    assert_eq!(o.status.code(), Some(124), "{}", text(&o));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(show(s, 5)["state"], "TIMEOUT");
}

#[test]
fn an_array_of_1000_trivial_jobs_completes() {
    let c = cluster("array", &[]);
    let o = batch(
        &c.addr,
        &[
            "submit",
            "--wait",
            "--cpus",
            "0.01",
            "--mem",
            "4",
            "--array",
            "0-999%200",
            "--",
            "true",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let j = show(&c.addr, 1);
    assert_eq!(j["state"], "COMPLETED");
    assert_eq!(j["tasks"]["completed"], 1000);
    // Each task saw its own index.
    let o = batch(
        &c.addr,
        &[
            "submit",
            "--wait",
            "--cpus",
            "0.1",
            "--mem",
            "16",
            "--array",
            "3-5",
            "--wrap",
            "echo i=$TESSERA_ARRAY_INDEX",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = batch(&c.addr, &["logs", "2", "--index", "4"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "i=4\n", "{}", text(&o));
    let o = batch(&c.addr, &["logs", "2"]);
    assert!(!o.status.success(), "an array needs --index");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--index"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_dependency_chain_with_a_failing_middle_job() {
    let c = cluster("deps", &[]);
    let s = c.addr.as_str();
    let mut a = SMALL.to_vec();
    a.extend(["--", "true"]);
    let first = submit(s, &a);
    let dep = |kind: &str, on: u64, cmd: &str| {
        let d = format!("{kind}:{on}");
        let mut args: Vec<String> = SMALL.iter().map(|x| x.to_string()).collect();
        args.extend(["--dependency".into(), d, "--wrap".into(), cmd.into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        submit(s, &args)
    };
    let middle = dep("afterok", first, "exit 1");
    let never = dep("afterok", middle, "true");
    let after_never = dep("afterany", never, "true");
    let cleanup = dep("afterany", middle, "true");
    let on_failure = dep("afternotok", middle, "true");
    assert_eq!(wait_ended(s, cleanup, 60)["state"], "COMPLETED");
    assert_eq!(wait_ended(s, on_failure, 60)["state"], "COMPLETED");
    assert_eq!(show(s, middle)["state"], "FAILED");
    let n = show(s, never);
    assert_eq!(n["state"], "CANCELLED");
    assert!(
        n["reason"]
            .as_str()
            .unwrap()
            .starts_with("DependencyNeverSatisfied"),
        "{n}"
    );
    // afterany on a job that never ran: it ended (cancelled), so this one runs.
    assert_eq!(wait_ended(s, after_never, 60)["state"], "COMPLETED");
}

#[test]
fn bad_input_is_refused_with_the_field_and_changes_nothing() {
    let c = cluster("bad", &[]);
    let s = c.addr.as_str();
    let count = || {
        let o = batch(s, &["queue", "--all", "-o", "json"]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["jobs"].as_array().unwrap().len()
    };
    let cases: [(&[&str], &str); 7] = [
        (&["submit", "--cpus", "-1", "--", "true"], "cpus"),
        (&["submit", "--mem", "lots", "--", "true"], "mem"),
        (&["submit", "--array", "9-1", "--", "true"], "array"),
        (
            &["submit", "--dependency", "afterok:999", "--", "true"],
            "dependency",
        ),
        (&["submit", "--time", "soon", "--", "true"], "time"),
        (
            &["submit", "--cron", "0 0 30 2 *", "--", "true"],
            "never fires",
        ),
        (&["submit", "--queue", "nope", "--", "true"], "queue"),
    ];
    for (args, needle) in cases {
        let o = batch(s, args);
        assert!(!o.status.success(), "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?} should name {needle}: {err}");
    }
    assert_eq!(count(), 0, "nothing was stored");
    let o = batch(s, &["cancel", "42"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));
    let mut a = vec!["submit", "--wait"];
    a.extend(SMALL);
    a.extend(["--", "true"]);
    assert!(batch(s, &a).status.success());
    let o = batch(s, &["cancel", "1"]);
    assert!(!o.status.success(), "cancelling a finished job is refused");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already ended"),
        "{}",
        text(&o)
    );
    assert_eq!(show(s, 1)["state"], "COMPLETED", "and changes nothing");
}

/// Submits an array whose tasks each append their index to `marks` after half a second.
fn submit_marking_array(server: &str, marks: &Path, array: &str) -> u64 {
    let cmd = format!(
        "sleep 0.5; echo $TESSERA_ARRAY_INDEX >> {}",
        marks.display()
    );
    submit(
        server,
        &[
            "--cpus", "0.1", "--mem", "8", "--array", array, "--wrap", &cmd,
        ],
    )
}

fn wait_for_marks(marks: &Path, n: usize) {
    wait_until("a few tasks done", 60, || {
        std::fs::read_to_string(marks).is_ok_and(|m| m.lines().count() >= n)
    });
}

/// Indices 0..n each appear exactly once in `marks`.
fn assert_each_index_once(marks: &Path, n: u32) {
    let text = std::fs::read_to_string(marks).unwrap();
    let mut seen: Vec<u32> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..n).collect::<Vec<_>>(), "every index exactly once");
}

fn serve(c: &Cluster, rest: &str, store: &Path) -> Proc {
    let p = bin()
        .args([
            "batch", "serve", "--master", &c.addr, "--listen", rest, "--store",
        ])
        .arg(store)
        .env("TESSERA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the batch REST API", 30, || {
        std::net::TcpStream::connect(rest).is_ok()
    });
    Proc(p)
}

#[test]
fn a_batch_scheduler_killed_mid_run_loses_nothing_and_runs_nothing_twice() {
    let c = cluster("kill", &["--no-batch"]);
    let rest = format!("127.0.0.1:{}", free_port());
    let store = c.dir.join("batch.sqlite");
    let marks = c.dir.join("marks");
    let mut sched = serve(&c, &rest, &store);
    let id = submit_marking_array(&rest, &marks, "0-29%6");
    // Let some tasks finish and others run, then kill the scheduler without warning.
    wait_for_marks(&marks, 5);
    let _ = sched.0.kill();
    let _ = sched.0.wait();
    std::thread::sleep(Duration::from_secs(1));
    sched = serve(&c, &rest, &store);
    let j = wait_ended(&rest, id, 120);
    assert_eq!(j["state"], "COMPLETED", "{j}");
    assert_each_index_once(&marks, 30);
    drop(sched);
}

#[test]
fn a_master_killed_mid_run_with_its_batch_scheduler_loses_nothing_and_runs_nothing_twice() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let dir = std::env::temp_dir().join(format!(
        "tessera-batch-master-{}-{port}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let master = || {
        Proc(
            bin()
                .args(["master", "--listen", &addr, "--work-dir"])
                .arg(dir.join("master"))
                .env("TESSERA_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut m = master();
    let _agent = Proc(
        bin()
            .args(["agent", "--master", &addr, "--http-listen", "127.0.0.1:0"])
            .args(["--resources", "cpus:2;mem:1024;disk:1024", "--work-dir"])
            .arg(dir.join("agent"))
            .env("TESSERA_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the master", 30, || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    let marks = dir.join("marks");
    let id = submit_marking_array(&addr, &marks, "0-23%4");
    wait_for_marks(&marks, 5);
    // The master (and the batch scheduler it hosts) dies without warning while tasks run;
    // the agent keeps them running and re-registers with the new master.
    let _ = m.0.kill();
    let _ = m.0.wait();
    std::thread::sleep(Duration::from_millis(500));
    m = master();
    wait_until("the restarted master", 30, || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    let j = wait_ended(&addr, id, 120);
    assert_eq!(j["state"], "COMPLETED", "{j}");
    assert_each_index_once(&marks, 24);
    drop(m);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_job_runs_as_the_user_who_submitted_it() {
    if !tessera_agent_runs_as_root() {
        println!(
            "SKIP: a_job_runs_as_the_user_who_submitted_it: only an agent run as root switches users"
        );
        return;
    }
    let c = cluster("users", &[]);
    let s = c.addr.as_str();
    let mut args = vec!["--user", "nobody"];
    args.extend(SMALL);
    args.extend(["--wrap", "id -un"]);
    let id = submit(s, &args);
    let job = wait_ended(s, id, 60);
    assert_eq!(job["state"], "COMPLETED", "{job}");
    let o = batch(s, &["logs", &id.to_string()]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "nobody\n",
        "{}",
        text(&o)
    );

    // A user this machine does not have: the job fails saying so.
    let mut args = vec!["--user", "no-such-user-tessera", "--retries", "0"];
    args.extend(SMALL);
    args.extend(["--wrap", "true"]);
    let id = submit(s, &args);
    let job = wait_ended(s, id, 60);
    assert_eq!(job["state"], "FAILED", "{job}");
    assert!(
        job.to_string().contains("no-such-user-tessera"),
        "the failure names the user: {job}"
    );
}

fn tessera_agent_runs_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A one-binary image (static busybox as `/bin/sh` and `/bin/echo`), imported once per
/// machine; `None`, with one printed line saying why, without a Docker engine or a static
/// busybox (the test command installs busybox-static).
fn busybox_image_or_skip(test: &str) -> Option<String> {
    let engine = std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    if !engine.is_ok_and(|o| o.status.success()) {
        println!("SKIP: {test}: no Docker engine answers `docker info`");
        return None;
    }
    let busybox = Path::new("/bin/busybox");
    let ldd = std::process::Command::new("ldd").arg(busybox).output();
    if !busybox.is_file() || ldd.is_ok_and(|o| o.status.success()) {
        println!("SKIP: {test}: no static /bin/busybox (apt-get install busybox-static)");
        return None;
    }
    let tag = "tessera-test/batch-busybox:1";
    let script = format!(
        "docker image inspect {tag} >/dev/null 2>&1 && exit 0; \
         root=$(mktemp -d) && mkdir -p \"$root/bin\" && cp /bin/busybox \"$root/bin/\" && \
         ln -s busybox \"$root/bin/sh\" && ln -s busybox \"$root/bin/echo\" && \
         tar -C \"$root\" -c . | docker import --change 'ENV PATH=/bin' - {tag} >/dev/null; \
         r=$?; rm -rf \"$root\"; exit $r"
    );
    let built = std::process::Command::new("sh")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(built.success(), "importing the test image {tag} failed");
    Some(tag.to_string())
}

#[test]
fn a_job_with_an_image_runs_in_a_docker_container() {
    let test = "a_job_with_an_image_runs_in_a_docker_container";
    let Some(image) = busybox_image_or_skip(test) else {
        return;
    };
    let c = cluster("docker", &[]);
    let s = c.addr.as_str();
    let mut args = vec!["submit", "--wait", "--image", &image];
    args.extend(SMALL);
    // Docker puts /.dockerenv in every container; the host has none.
    args.extend([
        "--wrap",
        "echo in-image; test -f /.dockerenv && echo dockerenv",
    ]);
    let o = batch(s, &args);
    assert!(o.status.success(), "{}", text(&o));
    let id = String::from_utf8_lossy(&o.stdout)
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    let o = batch(s, &["logs", &id]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "in-image\ndockerenv\n",
        "{}",
        text(&o)
    );

    // An image this machine does not have: the job fails and says how to provide it.
    let mut args = vec!["--image", "tessera-test/no-such-image:1", "--retries", "0"];
    args.extend(SMALL);
    args.extend(["--wrap", "true"]);
    let id = submit(s, &args);
    let job = wait_ended(s, id, 60);
    assert_eq!(job["state"], "FAILED", "{job}");
    assert!(
        job.to_string().contains("no-such-image"),
        "the failure names the image: {job}"
    );
}

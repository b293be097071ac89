//! The Docker containerizer against the machine's Docker engine, driven through the agent
//! by the fake master of `tests/agent.rs`. No registry: the image is built here from a
//! static busybox (or from this machine's `/bin/sh` and its libraries) with `docker import`.
//!
//! When `docker info` fails, each test prints one line
//! `skipping docker tests: no Docker engine (…)` and returns.

mod common;

use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tessera_agent::docker::LABEL_TASK_ID;
use tessera_agent::{AgentConfig, Isolation, run};
use tessera_api::pb;
use tessera_api::pb::master_message::Msg as MMsg;
use tessera_types::parse::parse_resources;
use tessera_types::{Reason, TaskState};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// Why the Docker tests cannot run here.
#[derive(Debug)]
struct NoDocker(String);

fn run_cmd(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The test image's tag, or (with one printed line) `None` when there is no engine.
fn image_or_skip() -> Option<String> {
    match test_image() {
        Ok(tag) => Some(tag),
        Err(NoDocker(reason)) => {
            println!("skipping docker tests: no Docker engine ({reason})");
            None
        }
    }
}

/// The test image's tag, imported once per machine (the tag hashes the rootfs source; a
/// lock file serialises test processes). `Err` only when there is no Docker engine;
/// failing to build the image with an engine present fails the test.
fn test_image() -> Result<String, NoDocker> {
    static IMAGE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let mut cached = IMAGE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(tag) = cached.as_ref() {
        return Ok(tag.clone());
    }
    let info = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    match info {
        Err(e) => return Err(NoDocker(format!("cannot run `docker info`: {e}"))),
        Ok(o) if !o.status.success() => {
            let err = String::from_utf8_lossy(&o.stderr);
            let line = err
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("docker info failed");
            return Err(NoDocker(line.trim().to_string()));
        }
        Ok(_) => {}
    }
    let _lock = ImportLock::take();
    let tag = import_image();
    *cached = Some(tag.clone());
    Ok(tag)
}

/// An exclusive `flock` on a file in the temp dir, held while importing.
struct ImportLock {
    _file: std::fs::File,
}

impl ImportLock {
    fn take() -> Self {
        use std::os::fd::AsRawFd;
        let path = std::env::temp_dir().join("tessera-test-docker-image.lock");
        let f = std::fs::File::create(&path).expect("lock file");
        // SAFETY: flock on a descriptor we own; released when the file closes.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {}", path.display());
        ImportLock { _file: f }
    }
}

fn import_image() -> String {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| is_static(p));
    let rootfs_source = match &busybox {
        Some(b) => format!("busybox:{}", file_digest(b)),
        None => format!("host-sh:{}", file_digest(Path::new("/bin/sh"))),
    };
    let tag = format!("tessera-test/busybox:{}", short_hash(&rootfs_source));
    if run_cmd(Command::new("docker").args(["image", "inspect", &tag])).is_ok() {
        return tag;
    }
    let root = std::env::temp_dir().join(format!("tessera-rootfs-{}", uuid::Uuid::new_v4()));
    let built = match &busybox {
        Some(b) => busybox_rootfs(&root, b),
        None => host_sh_rootfs(&root),
    };
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&root);
        panic!("building the test rootfs: {e}");
    }
    let import = format!(
        "tar --numeric-owner -C '{}' -c . | docker import --change 'ENV PATH=/bin:/usr/bin' \
         --change 'CMD [\"/bin/sh\"]' - '{tag}'",
        root.display()
    );
    let result = run_cmd(Command::new("sh").args(["-c", &import]));
    let _ = std::fs::remove_dir_all(&root);
    if let Err(e) = result {
        panic!("docker import of the test image failed: {e}");
    }
    tag
}

fn is_static(p: &Path) -> bool {
    p.is_file()
        && Command::new("ldd")
            .arg(p)
            .output()
            .map(|o| {
                !o.status.success() || String::from_utf8_lossy(&o.stdout).contains("not a dynamic")
            })
            .unwrap_or(false)
}

fn file_digest(p: &Path) -> String {
    let meta = std::fs::metadata(p).ok();
    let len = meta.as_ref().map(|m| m.len()).unwrap_or(0);
    let mtime = meta
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{len}-{mtime}")
}

fn short_hash(s: &str) -> String {
    // FNV-1a: stable across runs (unlike the std hasher's random keys).
    let h = s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    format!("{h:016x}")
}

fn busybox_rootfs(root: &Path, busybox: &Path) -> Result<(), String> {
    let bin = root.join("bin");
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d)).map_err(|e| e.to_string())?;
    }
    std::fs::copy(busybox, bin.join("busybox")).map_err(|e| e.to_string())?;
    let list = run_cmd(Command::new(busybox).arg("--list"))?;
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).map_err(|e| e.to_string())?;
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")
        .map_err(|e| e.to_string())
}

/// A rootfs of this machine's `sh`, `sleep`, `dd`, `cat` and the libraries they load.
fn host_sh_rootfs(root: &Path) -> Result<(), String> {
    for d in ["bin", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d)).map_err(|e| e.to_string())?;
    }
    for prog in ["/bin/sh", "/bin/sleep", "/bin/dd", "/bin/cat"] {
        let real = std::fs::canonicalize(prog).map_err(|e| format!("{prog}: {e}"))?;
        let name = Path::new(prog).file_name().unwrap_or_default();
        std::fs::copy(&real, root.join("bin").join(name)).map_err(|e| e.to_string())?;
        let ldd = run_cmd(Command::new("ldd").arg(&real)).unwrap_or_default();
        for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
            let dest = root.join(lib.trim_start_matches('/'));
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            std::fs::copy(lib, &dest).map_err(|e| format!("{lib}: {e}"))?;
        }
    }
    Ok(())
}

struct Running {
    work_dir: PathBuf,
    shutdown: CancellationToken,
    handle: JoinHandle<Result<(), tessera_agent::AgentError>>,
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        timeout(Duration::from_secs(20), self.handle)
            .await
            .expect("agent stops")
            .expect("agent task")
            .expect("agent result");
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }

    /// The `name` file of the only sandbox.
    fn sandbox_file(&self, name: &str) -> String {
        let found = find_file(&self.work_dir.join("slaves"), name)
            .unwrap_or_else(|| panic!("a sandbox with {name} under {}", self.work_dir.display()));
        std::fs::read_to_string(found).expect("readable")
    }
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

fn start(addr: &str) -> Running {
    let work_dir =
        std::env::temp_dir().join(format!("tessera-docker-test-{}", uuid::Uuid::new_v4()));
    let mut c = AgentConfig::new(addr, &work_dir, parse_resources("cpus:2;mem:4096").unwrap());
    c.reconnect_base = Duration::from_millis(20);
    c.reconnect_cap = Duration::from_millis(200);
    c.default_kill_grace = Duration::from_secs(2);
    c.isolation = Isolation::None;
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(run(c, shutdown.clone()));
    Running {
        work_dir,
        shutdown,
        handle,
    }
}

fn docker_container(image: &str) -> pb::ContainerInfo {
    pb::ContainerInfo {
        kind: pb::container_info::Kind::Docker as i32,
        docker: Some(pb::DockerInfo {
            image: image.into(),
            network: pb::docker_info::Network::None as i32,
            ..Default::default()
        }),
        volumes: Vec::new(),
    }
}

fn run_docker(c: &Conn, id: &str, command: &str, resources: &str, image: &str) {
    c.run_task_in(
        id,
        command,
        resources,
        None,
        false,
        Vec::new(),
        Some(docker_container(image)),
    );
}

/// Acknowledged statuses of one task until a terminal one, which is returned. Docker is
/// slower than a fork, so each wait is longer than the harness default.
async fn terminal(c: &mut Conn, task: &str) -> pb::TaskStatus {
    timeout(Duration::from_secs(60), async {
        loop {
            let s = c.acked_status().await;
            assert_eq!(s.task_id, task, "{s:?}");
            if state(&s).is_terminal() {
                return s;
            }
        }
    })
    .await
    .expect("a terminal status")
}

async fn running(c: &mut Conn, task: &str) {
    loop {
        let s = c.acked_status().await;
        assert_eq!(s.task_id, task, "{s:?}");
        match state(&s) {
            TaskState::TaskRunning => return,
            TaskState::TaskStarting => continue,
            other => panic!("expected TASK_RUNNING, got {other:?}: {s:?}"),
        }
    }
}

/// Containers (running or not) labelled with `task`.
fn containers_of(task: &str) -> String {
    run_cmd(Command::new("docker").args([
        "ps",
        "-aq",
        "--filter",
        &format!("label={LABEL_TASK_ID}={task}"),
    ]))
    .expect("docker ps")
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().to_string()[..8])
}

#[tokio::test]
async fn output_lands_in_the_sandbox_and_exit_zero_finishes() {
    let Some(image) = image_or_skip() else { return };
    let mut m = fake_master().await;
    let agent = start(&m.addr);
    let (mut c, _) = m.accept_registered("agent-1").await;
    let id = unique("docker-ok");
    run_docker(
        &c,
        &id,
        "echo hello-from-docker; echo to-stderr >&2; echo \"$MESOS_SANDBOX\" > \"$MESOS_SANDBOX/where\"; pwd",
        "cpus:0.1;mem:64",
        &image,
    );
    let s = terminal(&mut c, &id).await;
    assert_eq!(state(&s), TaskState::TaskFinished, "{s:?}");
    assert_eq!(s.exit_code, Some(0));
    let stdout = agent.sandbox_file("stdout");
    assert!(stdout.contains("hello-from-docker"), "stdout: {stdout:?}");
    assert!(stdout.contains("/mnt/mesos/sandbox"), "workdir: {stdout:?}");
    assert!(agent.sandbox_file("stderr").contains("to-stderr"));
    assert_eq!(agent.sandbox_file("where").trim(), "/mnt/mesos/sandbox");
    assert_eq!(
        containers_of(&id).trim(),
        "",
        "container removed after exit"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_failing_command_fails_with_its_exit_code() {
    let Some(image) = image_or_skip() else { return };
    let mut m = fake_master().await;
    let agent = start(&m.addr);
    let (mut c, _) = m.accept_registered("agent-1").await;
    let id = unique("docker-fail");
    run_docker(&c, &id, "exit 3", "cpus:0.1;mem:64", &image);
    let s = terminal(&mut c, &id).await;
    assert_eq!(state(&s), TaskState::TaskFailed, "{s:?}");
    assert_eq!(s.exit_code, Some(3));
    assert_eq!(s.reason, Some(Reason::ReasonCommandExecutorFailed.as_i32()));
    agent.stop().await;
}

#[tokio::test]
async fn over_the_memory_limit_is_oom_killed() {
    let Some(image) = image_or_skip() else { return };
    let mut m = fake_master().await;
    let agent = start(&m.addr);
    let (mut c, _) = m.accept_registered("agent-1").await;
    let id = unique("docker-oom");
    // dd allocates and touches a 400 MB buffer; the limit is 64 MB.
    run_docker(
        &c,
        &id,
        "dd if=/dev/zero of=/dev/null bs=400M count=1",
        "cpus:0.1;mem:64",
        &image,
    );
    let s = terminal(&mut c, &id).await;
    assert_eq!(state(&s), TaskState::TaskFailed, "{s:?}");
    assert_eq!(
        s.reason,
        Some(Reason::ReasonContainerLimitationMemory.as_i32()),
        "{s:?}"
    );
    assert!(s.message().contains("Memory limit exceeded"), "{s:?}");
    agent.stop().await;
}

#[tokio::test]
async fn a_kill_stops_and_removes_the_container() {
    let Some(image) = image_or_skip() else { return };
    let mut m = fake_master().await;
    let agent = start(&m.addr);
    let (mut c, _) = m.accept_registered("agent-1").await;
    let id = unique("docker-kill");
    run_docker(&c, &id, "sleep 600", "cpus:0.1;mem:64", &image);
    running(&mut c, &id).await;
    assert_ne!(
        containers_of(&id).trim(),
        "",
        "the container exists while running"
    );
    let started = std::time::Instant::now();
    c.send(MMsg::KillTask(pb::KillTask {
        framework_id: "fw1".into(),
        task_id: id.clone(),
        grace_ms: Some(5_000),
    }));
    let s = terminal(&mut c, &id).await;
    assert_eq!(state(&s), TaskState::TaskKilled, "{s:?}");
    // Docker's init forwards SIGTERM, so the grace is not needed.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        containers_of(&id).trim(),
        "",
        "container removed after the kill"
    );
    agent.stop().await;
}

#[tokio::test]
async fn an_unknown_image_fails_with_how_to_provide_it() {
    let Some(_) = image_or_skip() else { return };
    let mut m = fake_master().await;
    let agent = start(&m.addr);
    let (mut c, _) = m.accept_registered("agent-1").await;
    let id = unique("docker-noimage");
    let image = format!("tessera-test/does-not-exist:{}", uuid::Uuid::new_v4());
    run_docker(&c, &id, "true", "cpus:0.1;mem:64", &image);
    let s = terminal(&mut c, &id).await;
    assert_eq!(state(&s), TaskState::TaskFailed, "{s:?}");
    assert_eq!(
        s.reason,
        Some(Reason::ReasonContainerLaunchFailed.as_i32()),
        "{s:?}"
    );
    let msg = s.message();
    assert!(
        msg.contains(&image) && msg.contains("was not found locally"),
        "{msg}"
    );
    assert!(
        msg.contains("docker import") && msg.contains("docker load"),
        "{msg}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn without_an_engine_docker_tasks_fail_and_the_agent_keeps_running() {
    // Needs no engine: the socket does not exist.
    let mut m = fake_master().await;
    let work_dir =
        std::env::temp_dir().join(format!("tessera-docker-test-{}", uuid::Uuid::new_v4()));
    let mut cfg = AgentConfig::new(
        &m.addr,
        &work_dir,
        parse_resources("cpus:2;mem:4096").unwrap(),
    );
    cfg.isolation = Isolation::None;
    cfg.docker_socket = "unix:///nonexistent/docker.sock".into();
    let shutdown = CancellationToken::new();
    let agent = Running {
        work_dir,
        shutdown: shutdown.clone(),
        handle: tokio::spawn(run(cfg, shutdown)),
    };
    let (mut c, _) = m.accept_registered("agent-1").await;
    run_docker(&c, "d1", "true", "cpus:0.1;mem:32", "busybox");
    let s = terminal(&mut c, "d1").await;
    assert_eq!(state(&s), TaskState::TaskFailed, "{s:?}");
    assert!(
        s.message()
            .contains("no Docker engine at unix:///nonexistent/docker.sock: "),
        "{s:?}"
    );
    // A plain task still runs.
    c.run_task("p1", "true", None);
    let s = terminal(&mut c, "p1").await;
    assert_eq!(state(&s), TaskState::TaskFinished, "{s:?}");
    agent.stop().await;
}

#[tokio::test]
async fn a_restarted_agent_recovers_its_running_container_and_can_kill_it() {
    let Some(image) = image_or_skip() else { return };
    let mut m = fake_master().await;
    let agent = start(&m.addr);
    let (mut c, _) = m.accept_registered("agent-1").await;
    let id = unique("docker-recover");
    run_docker(&c, &id, "sleep 600", "cpus:0.1;mem:64", &image);
    running(&mut c, &id).await;
    // The agent dies without stopping anything (its loop is dropped mid-flight; the engine,
    // not the agent process, owns the container, so this is what a SIGKILL leaves).
    agent.handle.abort();
    let _ = agent.handle.await;

    let mut cfg = AgentConfig::new(
        &m.addr,
        &agent.work_dir,
        parse_resources("cpus:2;mem:4096").unwrap(),
    );
    cfg.reconnect_base = Duration::from_millis(20);
    cfg.isolation = Isolation::None;
    let shutdown = CancellationToken::new();
    let again = Running {
        work_dir: agent.work_dir.clone(),
        shutdown: shutdown.clone(),
        handle: tokio::spawn(run(cfg, shutdown)),
    };
    let (mut c, reg) = m.accept_registered("agent-1").await;
    assert_eq!(reg.agent_id.as_deref(), Some("agent-1"));
    let t = reg
        .tasks
        .iter()
        .find(|t| t.task.as_ref().is_some_and(|i| i.task_id == id))
        .expect("the Docker task is reported");
    assert_eq!(t.state, TaskState::TaskRunning.as_i32());
    assert_ne!(containers_of(&id).trim(), "", "still running");

    c.send(MMsg::KillTask(pb::KillTask {
        framework_id: "fw1".into(),
        task_id: id.clone(),
        grace_ms: Some(5_000),
    }));
    let s = terminal(&mut c, &id).await;
    assert_eq!(state(&s), TaskState::TaskKilled, "{s:?}");
    timeout(Duration::from_secs(20), async {
        while !containers_of(&id).trim().is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("container removed after the kill");
    again.stop().await;
}

/// `probe` checked every 0.3 s with no grace, killing after `failures` failures in a row.
fn health(probe: pb::health_check::Probe, failures: u32) -> pb::HealthCheck {
    pb::HealthCheck {
        probe: Some(probe),
        delay_ms: 0,
        interval_ms: 300,
        timeout_ms: 10_000,
        grace_period_ms: 0,
        consecutive_failures: failures,
    }
}

/// Acknowledged statuses of `task` until a terminal one; all of them, in order.
async fn statuses_until_terminal(c: &mut Conn, task: &str) -> Vec<pb::TaskStatus> {
    timeout(Duration::from_secs(90), async {
        let mut all = Vec::new();
        loop {
            let s = c.acked_status().await;
            assert_eq!(s.task_id, task, "{s:?}");
            let end = state(&s).is_terminal();
            all.push(s);
            if end {
                return all;
            }
        }
    })
    .await
    .expect("a terminal status")
}

#[tokio::test]
async fn a_command_check_runs_inside_the_container() {
    let Some(image) = image_or_skip() else { return };
    let mut m = fake_master().await;
    let agent = start(&m.addr);
    let (mut c, _) = m.accept_registered("agent-1").await;
    let id = unique("docker-health-cmd");
    // /tmp/inside exists only in the container: a check run on the host would never pass.
    let mut rt = run_task_message(
        &id,
        "touch /tmp/inside; sleep 3; rm /tmp/inside; sleep 600",
        "cpus:0.1;mem:64",
        Some(1_000),
        false,
        Vec::new(),
        Some(docker_container(&image)),
    );
    let probe = pb::health_check::Probe::Command(pb::CommandInfo {
        value: "test -f /tmp/inside".into(),
        shell: true,
        ..Default::default()
    });
    if let Some(t) = rt.task.as_mut() {
        t.health_check = Some(health(probe, 2));
    }
    c.send(MMsg::RunTask(rt));
    let all = statuses_until_terminal(&mut c, &id).await;
    let health: Vec<Option<bool>> = all
        .iter()
        .filter(|s| s.reason == Some(Reason::ReasonTaskHealthCheckStatusUpdated.as_i32()))
        .map(|s| s.healthy)
        .collect();
    assert_eq!(health, [Some(true), Some(false)], "{all:?}");
    let last = all.last().unwrap();
    assert_eq!(state(last), TaskState::TaskKilled, "{last:?}");
    assert_eq!(last.healthy, Some(false), "{last:?}");
    agent.stop().await;
}

#[tokio::test]
async fn http_and_tcp_checks_reach_the_containers_own_address() {
    let Some(image) = image_or_skip() else { return };
    if !image_has_busybox() {
        println!(
            "SKIP: http_and_tcp_checks_reach_the_containers_own_address: the test image has no busybox httpd (install busybox-static)"
        );
        return;
    }
    let mut m = fake_master().await;
    let agent = start(&m.addr);
    let (mut c, _) = m.accept_registered("agent-1").await;
    for (n, probe) in [
        pb::health_check::Probe::Http(pb::HttpCheck {
            port: 8080,
            path: Some("/index.html".into()),
            scheme: None,
        }),
        pb::health_check::Probe::Tcp(pb::TcpCheck { port: 8080 }),
    ]
    .into_iter()
    .enumerate()
    {
        let id = unique(&format!("docker-health-net{n}"));
        // Port 8080 is open only inside the container (bridge network, no mapping).
        let mut container = docker_container(&image);
        if let Some(d) = container.docker.as_mut() {
            d.network = pb::docker_info::Network::Bridge as i32;
        }
        let mut rt = run_task_message(
            &id,
            "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www",
            "cpus:0.1;mem:64",
            Some(1_000),
            false,
            Vec::new(),
            Some(container),
        );
        if let Some(t) = rt.task.as_mut() {
            t.health_check = Some(health(probe, 3));
        }
        c.send(MMsg::RunTask(rt));
        let healthy = timeout(Duration::from_secs(60), async {
            loop {
                let s = c.acked_status().await;
                assert!(
                    !state(&s).is_terminal(),
                    "ended before it was healthy: {s:?}"
                );
                if s.healthy.is_some() {
                    return s.healthy;
                }
            }
        })
        .await
        .expect("a health report");
        assert_eq!(healthy, Some(true));
        c.send(MMsg::KillTask(pb::KillTask {
            framework_id: "fw1".into(),
            task_id: id.clone(),
            grace_ms: Some(1_000),
        }));
        let last = terminal(&mut c, &id).await;
        assert_eq!(state(&last), TaskState::TaskKilled, "{last:?}");
    }
    agent.stop().await;
}

/// Whether the test image is the busybox one (it has httpd).
fn image_has_busybox() -> bool {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .any(|p| is_static(&p))
}

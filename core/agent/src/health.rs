//! Health checks (Mesos `HealthCheck`): one checker task per health-checked task, off the
//! agent loop, reporting results back to it through its event channel.
//!
//! The decision is pure ([`Tracker`]) and follows the Mesos health checker:
//! - the first probe runs `delay` after the checker starts, then one every `interval`
//!   (measured from the end of the previous probe); a probe not done within `timeout`
//!   (0 = none) failed, and its process group is killed;
//! - failures are ignored while the task has never been healthy and the grace period since
//!   the start has not passed; a success ends the grace period for good;
//! - a report goes to the agent only when the health *changes* (first result, healthy →
//!   unhealthy, unhealthy → healthy); Mesos itself repeats the unhealthy report on every
//!   counted failure, the agent sends one;
//! - `consecutive_failures` counted failures in a row ask the agent to kill the task, after
//!   which the checker ends.
//!
//! Probes: COMMAND runs the command in the task's sandbox with the task's environment (plus
//! the check command's own variables), exit 0 is healthy; HTTP GETs
//! `http://127.0.0.1:PORT/PATH` (a status in 200..=399 is healthy; `https` goes through
//! `curl -k`, as Mesos does); TCP connects to 127.0.0.1:PORT. For a Docker task the
//! command runs inside its container and HTTP/TCP go to the container's address
//! ([`crate::docker_probe`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tessera_types::{CommandInfo, HealthCheck, HealthProbe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Longest HTTP response head read before giving up on finding the status line.
const MAX_STATUS_LINE: usize = 8 * 1024;

/// What a checker tells the agent: the task's health changed, and maybe that it must die.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    pub healthy: bool,
    /// `consecutive_failures` was reached: the agent kills the task.
    pub kill: bool,
    /// Failures counted in a row (0 when healthy).
    pub consecutive_failures: u32,
    /// The latest probe's result, for the status message.
    pub message: String,
}

/// The pure part of a checker: counts failures and decides what to report.
#[derive(Debug, Clone)]
pub struct Tracker {
    grace: Duration,
    max_failures: u32,
    /// No success yet (the grace period can still apply).
    initializing: bool,
    failures: u32,
    /// The health last reported.
    reported: Option<bool>,
}

impl Tracker {
    pub fn new(check: &HealthCheck) -> Self {
        Tracker {
            grace: Duration::from_millis(check.grace_period_ms),
            max_failures: check.consecutive_failures,
            initializing: true,
            failures: 0,
            reported: None,
        }
    }

    /// Feeds one probe result, `since_start` after the checker started.
    pub fn observe(
        &mut self,
        result: Result<String, String>,
        since_start: Duration,
    ) -> Option<HealthReport> {
        match result {
            Ok(message) => {
                self.initializing = false;
                self.failures = 0;
                (self.reported != Some(true)).then(|| {
                    self.reported = Some(true);
                    HealthReport {
                        healthy: true,
                        kill: false,
                        consecutive_failures: 0,
                        message,
                    }
                })
            }
            Err(message) => {
                if self.initializing && !self.grace.is_zero() && since_start <= self.grace {
                    debug!(%message, "health check failure ignored: still in the grace period");
                    return None;
                }
                self.failures += 1;
                let kill = self.failures >= self.max_failures;
                (kill || self.reported != Some(false)).then(|| {
                    self.reported = Some(false);
                    HealthReport {
                        healthy: false,
                        kill,
                        consecutive_failures: self.failures,
                        message,
                    }
                })
            }
        }
    }
}

/// Where a COMMAND probe runs: the task's sandbox and environment.
#[derive(Debug, Clone)]
pub struct ProbeContext {
    pub sandbox: PathBuf,
    pub env: BTreeMap<String, String>,
    /// The task's Docker container, for a Docker task.
    pub docker: Option<crate::docker_probe::DockerProbe>,
    /// The task's supervisor (its process group leader), for a process task: a COMMAND
    /// check enters the task's pid and mount namespaces when it has its own.
    pub supervisor: Option<u32>,
    /// The user the task runs as: its COMMAND checks run as that user too.
    pub user: Option<String>,
}

/// The pid to `nsenter` for a task whose supervisor is `supervisor`: the namespace init
/// (the supervisor's first child) when it lives in another pid namespace than the agent;
/// `None` for a task that shares the agent's namespaces.
fn namespace_init(supervisor: u32) -> Option<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{supervisor}/task/{supervisor}/children")).ok()?;
    let init: u32 = children.split_whitespace().next()?.parse().ok()?;
    let ours = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let its = std::fs::read_link(format!("/proc/{init}/ns/pid")).ok()?;
    let mount_ours = std::fs::read_link("/proc/self/ns/mnt").ok()?;
    let mount_its = std::fs::read_link(format!("/proc/{init}/ns/mnt")).ok()?;
    (ours != its || mount_ours != mount_its).then_some(init)
}

/// Where HTTP and TCP probes connect: the container's address for a Docker task on a
/// bridge network, else 127.0.0.1.
async fn probe_host(ctx: &ProbeContext) -> Result<std::net::IpAddr, String> {
    let local = std::net::IpAddr::from([127, 0, 0, 1]);
    match &ctx.docker {
        None => Ok(local),
        Some(d) => Ok(crate::docker_probe::target(d).await?.1.unwrap_or(local)),
    }
}

/// Starts the checker of one task. It ends when `cancel` fires, when the receiver is gone,
/// or after asking for a kill. `wrap` turns a report into the agent's event.
pub fn spawn<E: Send + 'static>(
    check: HealthCheck,
    ctx: ProbeContext,
    cancel: CancellationToken,
    tx: mpsc::Sender<E>,
    wrap: impl Fn(HealthReport) -> E + Send + 'static,
) {
    tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = run(check, ctx, tx, wrap) => {}
        }
    });
}

async fn run<E>(
    check: HealthCheck,
    ctx: ProbeContext,
    tx: mpsc::Sender<E>,
    wrap: impl Fn(HealthReport) -> E,
) {
    let start = Instant::now();
    let mut tracker = Tracker::new(&check);
    let timeout = (check.timeout_ms > 0).then(|| Duration::from_millis(check.timeout_ms));
    tokio::time::sleep(Duration::from_millis(check.delay_ms)).await;
    loop {
        let result = probe(&check.probe, &ctx, timeout).await;
        let name = check.probe.type_name();
        let result = match result {
            Ok(()) => Ok(format!("{name} health check passed")),
            Err(e) => Err(format!("{name} health check failed: {e}")),
        };
        if let Some(report) = tracker.observe(result, start.elapsed()) {
            let kill = report.kill;
            if report.healthy {
                info!(message = %report.message, "task healthy");
            } else {
                warn!(message = %report.message, failures = report.consecutive_failures, kill,
                    "task unhealthy");
            }
            if tx.send(wrap(report)).await.is_err() || kill {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(check.interval_ms)).await;
    }
}

/// One probe; `Err` says why it failed.
async fn probe(
    p: &HealthProbe,
    ctx: &ProbeContext,
    timeout: Option<Duration>,
) -> Result<(), String> {
    let fut = async {
        match p {
            HealthProbe::Command { command } => match &ctx.docker {
                Some(d) => crate::docker_probe::exec(d, command, &ctx.env).await,
                None => command_probe(command, ctx).await,
            },
            HealthProbe::Http { port, path, scheme } => {
                let path = path.as_deref().unwrap_or("/");
                let host = probe_host(ctx).await?;
                match scheme.as_deref() {
                    Some("https") => curl_probe(host, *port, path).await,
                    _ => http_probe(host, *port, path).await,
                }
            }
            HealthProbe::Tcp { port } => {
                let host = probe_host(ctx).await?;
                let addr = std::net::SocketAddr::new(host, *port as u16);
                tokio::net::TcpStream::connect(addr)
                    .await
                    .map(drop)
                    .map_err(|e| format!("connect to {addr}: {e}"))
            }
        }
    };
    match timeout {
        None => fut.await,
        Some(t) => tokio::time::timeout(t, fut)
            .await
            .unwrap_or_else(|_| Err(format!("no result within {t:?}; aborted"))),
    }
}

/// Runs the check command in its own process group, killed whole on timeout (the future
/// is dropped) or when it outlives the probe.
async fn command_probe(c: &CommandInfo, ctx: &ProbeContext) -> Result<(), String> {
    let mut argv: Vec<String> = if c.shell {
        vec!["sh".into(), "-c".into(), c.value.clone()]
    } else {
        let mut v = vec![c.value.clone()];
        v.extend(c.arguments.iter().skip(1).cloned());
        v
    };
    // As the task's user, as Mesos' checker runs them.
    if let Some(user) = &ctx.user
        && let Some(switch) = crate::user::resolve(user, ctx.env.get("PATH").map(String::as_str))
            .map_err(|e| e.to_string())?
    {
        let (program, rest) = argv.split_first().ok_or("an empty check command")?;
        let (p, a) = switch.wrap(PathBuf::from(program), rest.to_vec());
        argv = std::iter::once(p.display().to_string()).chain(a).collect();
    }
    // A task in its own pid and mount namespaces is checked from inside them (its /tmp,
    // its processes), as Mesos' checker enters the task's namespaces.
    if let Some(init) = ctx.supervisor.and_then(namespace_init) {
        let mut enter = vec![
            "nsenter".to_string(),
            format!("--target={init}"),
            "--mount".into(),
            "--pid".into(),
            "--".into(),
        ];
        enter.append(&mut argv);
        argv = enter;
    }
    let (program, rest) = argv.split_first().ok_or("an empty check command")?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(rest);
    cmd.current_dir(&ctx.sandbox)
        .env_clear()
        .envs(&ctx.env)
        .envs(&c.environment)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    let pid = child.id();
    // Kills the whole group if this future is dropped (timeout) before the command exits.
    struct Group(Option<u32>);
    impl Drop for Group {
        fn drop(&mut self) {
            if let Some(pid) = self.0 {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    let mut group = Group(pid);
    // Once the leader exited, a failed check's stragglers still go with the guard.
    let status = child
        .wait()
        .await
        .map_err(|e| format!("cannot wait: {e}"))?;
    if status.success() {
        group.0 = None;
        return Ok(());
    }
    Err(
        match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(code), _) => format!("command exited with status {code}"),
            (None, Some(sig)) => format!("command terminated by signal {sig}"),
            _ => "command ended abnormally".into(),
        },
    )
}

/// A minimal HTTP/1.1 GET; only the status line is read.
async fn http_probe(host: std::net::IpAddr, port: u32, path: &str) -> Result<(), String> {
    let addr = std::net::SocketAddr::new(host, port as u16).to_string();
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: tessera-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.contains(&b'\n') && head.len() < MAX_STATUS_LINE {
        let n = s
            .read(&mut buf)
            .await
            .map_err(|e| format!("read from {addr}: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let code = line
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("no HTTP status line from {addr}"))?;
    status_ok(code)
}

/// `curl -k` for https (no TLS stack in the agent), as the Mesos health checker does.
async fn curl_probe(host: std::net::IpAddr, port: u32, path: &str) -> Result<(), String> {
    let url = format!(
        "https://{}{path}",
        std::net::SocketAddr::new(host, port as u16)
    );
    let out = tokio::process::Command::new("curl")
        .args([
            "-s",
            "-S",
            "-k",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<u16>()
        .map_err(|_| format!("curl {url}: unexpected output"))?;
    status_ok(code)
}

fn status_ok(code: u16) -> Result<(), String> {
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("unexpected HTTP response code {code}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(grace_ms: u64, failures: u32) -> HealthCheck {
        let mut c = HealthCheck::new(HealthProbe::Tcp { port: 1 });
        c.grace_period_ms = grace_ms;
        c.consecutive_failures = failures;
        c
    }

    fn ok() -> Result<String, String> {
        Ok("ok".into())
    }
    fn bad() -> Result<String, String> {
        Err("bad".into())
    }
    const S: Duration = Duration::from_secs(1);

    #[test]
    fn reports_only_changes_and_kills_after_consecutive_failures() {
        let mut t = Tracker::new(&check(0, 3));
        let r = t.observe(ok(), S).unwrap();
        assert!(r.healthy && !r.kill);
        assert_eq!(t.observe(ok(), S), None, "healthy once");
        let r = t.observe(bad(), S).unwrap();
        assert!(!r.healthy && !r.kill);
        assert_eq!(r.consecutive_failures, 1);
        assert_eq!(t.observe(bad(), S), None, "unhealthy once");
        assert!(t.observe(ok(), S).unwrap().healthy, "recovery is reported");
        assert!(t.observe(bad(), S).is_some());
        assert_eq!(t.observe(bad(), S), None);
        let r = t.observe(bad(), S).unwrap();
        assert!(r.kill && !r.healthy);
        assert_eq!(r.consecutive_failures, 3);
    }

    #[test]
    fn grace_period_ignores_failures_until_first_success() {
        let mut t = Tracker::new(&check(5_000, 1));
        assert_eq!(t.observe(bad(), Duration::from_secs(2)), None);
        assert_eq!(t.observe(bad(), Duration::from_secs(5)), None);
        let r = t.observe(bad(), Duration::from_secs(6)).unwrap();
        assert!(r.kill, "past the grace period the first failure counts");

        let mut t = Tracker::new(&check(5_000, 1));
        assert!(t.observe(ok(), Duration::from_secs(1)).unwrap().healthy);
        let r = t.observe(bad(), Duration::from_secs(2)).unwrap();
        assert!(r.kill, "a success ends the grace period");
    }

    #[tokio::test]
    async fn probes_fail_and_pass() {
        let ctx = ProbeContext {
            sandbox: std::env::temp_dir(),
            env: BTreeMap::from([("X".to_string(), "1".to_string())]),
            docker: None,
            supervisor: None,
            user: None,
        };
        let cmd = |s: &str| HealthProbe::Command {
            command: CommandInfo::shell(s),
        };
        let t = Some(Duration::from_secs(5));
        probe(&cmd("test \"$X\" = 1"), &ctx, t).await.unwrap();
        let e = probe(&cmd("exit 3"), &ctx, t).await.unwrap_err();
        assert!(e.contains("status 3"), "{e}");
        let e = probe(&cmd("sleep 5"), &ctx, Some(Duration::from_millis(100)))
            .await
            .unwrap_err();
        assert!(e.contains("aborted"), "{e}");

        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = u32::from(tcp.local_addr().unwrap().port());
        probe(&HealthProbe::Tcp { port }, &ctx, t).await.unwrap();
        drop(tcp);
        let e = probe(&HealthProbe::Tcp { port }, &ctx, t)
            .await
            .unwrap_err();
        assert!(e.contains("connect"), "{e}");

        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = u32::from(l.local_addr().unwrap().port());
        tokio::spawn(async move {
            for code in [204, 503] {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let resp = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
                s.write_all(resp.as_bytes()).await.unwrap();
            }
        });
        let http = HealthProbe::Http {
            port,
            path: Some("/h".into()),
            scheme: None,
        };
        probe(&http, &ctx, t).await.unwrap();
        let e = probe(&http, &ctx, t).await.unwrap_err();
        assert!(e.contains("503"), "{e}");
    }
}

//! The agent's link lifecycle under a paused tokio clock: the real agent loop
//! ([`tessera_agent::run_with_dialer`]) against the fake master service of `common` (real
//! tonic server, real gRPC/HTTP/2), with a fake [`Launcher`] that starts no process.
//!
//! Time is virtual (`start_paused = true`): whenever every task is idle, tokio jumps the
//! clock to the next timer, so heartbeats, reconnect backoff and status retries are asserted
//! at their exact virtual instants and nothing sleeps for real.
//!
//! The transport is an in-memory duplex stream per connection rather than loopback TCP:
//! with a paused clock, tokio treats tasks waiting on socket readiness as idle and advances
//! to the next timer in the same park that polls the socket, so each hop over TCP can let
//! the clock leap (seen here: a 1 s heartbeat observed at 6 s, the next keepalive). See
//! `tessera_agent::dial`. The file system work the agent does off-thread
//! (`spawn_blocking`) inhibits auto-advance, so it is safe.

mod common;

use common::{Conn, FakeService, state};

use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tessera_agent::launcher::BoxFuture;
use tessera_agent::{AgentConfig, AgentError, Container, Dialer, LaunchSpec, Launcher, TaskExit};
use tessera_api::pb;
use tessera_api::pb::agent_message::Msg as AMsg;
use tessera_api::pb::master_message::Msg as MMsg;
use tessera_types::TaskState;
use tessera_types::parse::parse_resources;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;

/// The heartbeat interval the fake master hands out.
const HEARTBEAT: Duration = Duration::from_secs(1);
const RECONNECT_BASE: Duration = Duration::from_millis(100);
const RECONNECT_CAP: Duration = Duration::from_millis(800);
const RETRY_BASE: Duration = Duration::from_secs(2);
const RETRY_CAP: Duration = Duration::from_secs(8);
/// Upper bound on any single wait, in virtual time: a missing message fails the test
/// instead of hanging it.
const GUARD: Duration = Duration::from_secs(3600);
/// Slack for the timer wheel's millisecond rounding.
const TICK: Duration = Duration::from_millis(2);

// ---- the fake launcher ----------------------------------------------------------------

/// Starts a [`FakeContainer`] per launch and reports each spec to the test.
struct FakeLauncher {
    launched: mpsc::UnboundedSender<LaunchSpec>,
}

impl Launcher for FakeLauncher {
    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<Arc<dyn Container>, AgentError>> {
        let _ = self.launched.send(spec);
        Box::pin(async { Ok(Arc::new(FakeContainer::default()) as Arc<dyn Container>) })
    }
}

/// Runs until signalled; then "exits" by that signal.
#[derive(Default)]
struct FakeContainer {
    signalled: watch::Sender<Option<i32>>,
}

impl Container for FakeContainer {
    fn pid(&self) -> Option<u32> {
        None
    }

    fn kill(&self, signal: Signal) -> std::io::Result<()> {
        self.signalled.send_replace(Some(signal as i32));
        Ok(())
    }

    fn wait(&self) -> BoxFuture<'_, std::io::Result<TaskExit>> {
        let mut rx = self.signalled.subscribe();
        Box::pin(async move {
            let sig = *rx
                .wait_for(Option::is_some)
                .await
                .map_err(|_| std::io::Error::other("container dropped"))?;
            Ok(TaskExit::Signal(sig.unwrap_or(0)))
        })
    }
}

// ---- harness ------------------------------------------------------------------------------

/// Bytes of buffer in each direction of an in-memory connection.
const PIPE: usize = 256 * 1024;

/// The fake master's service served over in-memory connections; the [`Dialer`] opens one.
fn memory_master() -> (mpsc::UnboundedReceiver<Conn>, Dialer) {
    let (conns_tx, conns) = mpsc::unbounded_channel();
    let (incoming_tx, incoming) = mpsc::unbounded_channel::<std::io::Result<_>>();
    let svc = pb::agent_service_server::AgentServiceServer::new(FakeService { conns: conns_tx });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(UnboundedReceiverStream::new(incoming)),
    );
    let dialer = Dialer::new(move || {
        let (client, server) = tokio::io::duplex(PIPE);
        let sent = incoming_tx.send(Ok(server));
        Box::pin(async move {
            sent.map_err(|_| std::io::Error::other("fake master gone"))?;
            Ok(client)
        })
    });
    (conns, dialer)
}

struct Harness {
    master: mpsc::UnboundedReceiver<Conn>,
    launched: mpsc::UnboundedReceiver<LaunchSpec>,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), AgentError>>,
    work_dir: std::path::PathBuf,
    started: Instant,
}

async fn start() -> Harness {
    let (master, dialer) = memory_master();
    let work_dir = common::temp_work_dir();
    let mut c = AgentConfig::new(
        "fake-master:5050",
        work_dir.clone(),
        parse_resources("cpus:2;mem:1024").expect("resources parse"),
    );
    c.hostname = "paused-host".into();
    c.reconnect_base = RECONNECT_BASE;
    c.reconnect_cap = RECONNECT_CAP;
    c.status_retry_base = RETRY_BASE;
    c.status_retry_cap = RETRY_CAP;
    c.isolation = tessera_agent::Isolation::None;
    c.disk_watch_interval = None;
    let (tx, launched) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let handle = tokio::spawn(tessera_agent::run_with_dialer(
        c,
        Arc::new(FakeLauncher { launched: tx }),
        dialer,
        shutdown.clone(),
    ));
    Harness {
        master,
        launched,
        shutdown,
        handle,
        work_dir,
        started,
    }
}

impl Harness {
    /// The next stream the agent attaches, and when (virtual time).
    async fn accept(&mut self) -> (Conn, Instant) {
        let c = timeout(GUARD, self.master.recv())
            .await
            .expect("the agent attaches")
            .expect("server alive");
        (c, Instant::now())
    }

    /// Accepts a stream and answers its Register with `Registered`.
    async fn accept_registered(&mut self) -> (Conn, pb::Register, Instant) {
        let (mut c, at) = self.accept().await;
        let reg = match recv(&mut c).await.1 {
            AMsg::Register(r) => r,
            other => panic!("expected Register, got {other:?}"),
        };
        c.send(MMsg::Registered(pb::Registered {
            agent_id: "agent-1".into(),
            heartbeat_interval_ms: HEARTBEAT.as_millis() as u64,
            master_id: "m1".into(),
        }));
        (c, reg, at)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        timeout(GUARD, self.handle)
            .await
            .expect("agent stops")
            .expect("agent task")
            .expect("agent result");
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

/// The next message from the agent, heartbeats included, and when it arrived.
async fn recv(c: &mut Conn) -> (Instant, AMsg) {
    let m = timeout(GUARD, c.from_agent.recv())
        .await
        .expect("an agent message within the guard")
        .expect("stream open");
    (Instant::now(), m.msg.expect("a message body"))
}

/// The next message that is not a heartbeat.
async fn recv_non_heartbeat(c: &mut Conn) -> (Instant, AMsg) {
    loop {
        match recv(c).await {
            (_, AMsg::Heartbeat(_)) => continue,
            other => return other,
        }
    }
}

async fn recv_status(c: &mut Conn) -> (Instant, String, pb::TaskStatus) {
    match recv_non_heartbeat(c).await {
        (at, AMsg::StatusUpdate(u)) => (at, u.framework_id, u.status.expect("a status")),
        (_, other) => panic!("expected StatusUpdate, got {other:?}"),
    }
}

/// Asserts `at - from` is `expected`, up to the timer wheel's rounding.
fn assert_after(from: Instant, at: Instant, expected: Duration, what: &str) {
    let d = at - from;
    assert!(
        d >= expected && d <= expected + TICK,
        "{what}: after {d:?}, expected {expected:?}"
    );
}

/// Asserts `at - from` lies in the reconnect window for `backoff`: the backoff plus up to
/// a tenth of it of jitter.
fn assert_backoff(from: Instant, at: Instant, backoff: Duration, what: &str) {
    let d = at - from;
    assert!(
        d >= backoff && d <= backoff + backoff / 10 + TICK,
        "{what}: after {d:?}, expected {backoff:?} + up to 10% jitter"
    );
}

// ---- tests ----------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn registers_at_once_then_heartbeats_at_the_master_interval() {
    let mut h = start().await;
    let (mut c, reg, at) = h.accept_registered().await;
    assert_eq!(at, h.started, "registration takes no virtual time");
    assert_eq!(reg.agent_id, None, "a fresh work dir registers as new");
    let info = reg.info.expect("agent info");
    assert_eq!(info.hostname, "paused-host");
    assert_eq!(info.resources.len(), 2);
    assert!(reg.tasks.is_empty());

    let registered = Instant::now();
    for k in 1..=5u32 {
        let (t, m) = recv(&mut c).await;
        assert!(matches!(m, AMsg::Heartbeat(_)), "{m:?}");
        assert_after(registered, t, HEARTBEAT * k, &format!("heartbeat {k}"));
    }
    // And nothing else in between: the sixth message is the sixth heartbeat.
    let (t, m) = recv(&mut c).await;
    assert!(matches!(m, AMsg::Heartbeat(_)), "{m:?}");
    assert_after(registered, t, HEARTBEAT * 6, "heartbeat 6");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reregisters_after_the_link_drops_with_doubling_backoff_reset_on_success() {
    let mut h = start().await;
    let (c, _, _) = h.accept_registered().await;
    // Let one heartbeat through so the link is known to be up.
    let mut c = c;
    assert!(matches!(recv(&mut c).await.1, AMsg::Heartbeat(_)));

    // The master drops the stream: the agent retries after the base backoff.
    let dropped = Instant::now();
    drop(c);
    let (mut c, at) = h.accept().await;
    assert_backoff(dropped, at, RECONNECT_BASE, "first reconnect");
    assert!(matches!(recv(&mut c).await.1, AMsg::Register(_)));

    // Each failed attempt (stream closed before Registered) doubles the delay, up to the cap.
    let mut backoff = RECONNECT_BASE;
    for attempt in 2..=5 {
        let failed = Instant::now();
        drop(c);
        backoff = (backoff * 2).min(RECONNECT_CAP);
        let (next, at) = h.accept().await;
        assert_backoff(failed, at, backoff, &format!("attempt {attempt}"));
        c = next;
        assert!(matches!(recv(&mut c).await.1, AMsg::Register(_)));
    }
    assert_eq!(backoff, RECONNECT_CAP, "the test reached the cap");

    // Same attempt: now answered. It re-registers under its id, and heartbeats resume.
    c.send(MMsg::Registered(pb::Registered {
        agent_id: "agent-1".into(),
        heartbeat_interval_ms: HEARTBEAT.as_millis() as u64,
        master_id: "m2".into(),
    }));
    let registered = Instant::now();
    let (t, m) = recv(&mut c).await;
    assert!(matches!(m, AMsg::Heartbeat(_)), "{m:?}");
    assert_after(
        registered,
        t,
        HEARTBEAT,
        "first heartbeat after re-registering",
    );

    // A successful registration resets the backoff to the base.
    let dropped = Instant::now();
    drop(c);
    let (mut c, reg, at) = h.accept_registered().await;
    assert_backoff(dropped, at, RECONNECT_BASE, "reconnect after a success");
    assert_eq!(
        reg.agent_id.as_deref(),
        Some("agent-1"),
        "re-registers as itself"
    );
    assert!(matches!(recv(&mut c).await.1, AMsg::Heartbeat(_)));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn status_update_is_retried_until_acknowledged_then_never_again() {
    let mut h = start().await;
    let (c, _, _) = h.accept_registered().await;
    let mut c = c;
    c.run_task("t1", "true", None);

    // TASK_STARTING goes out at once; unacknowledged, it is resent with the same uuid
    // after the retry base, then after doubling intervals up to the cap.
    let (sent, fw, starting) = recv_status(&mut c).await;
    assert_eq!(state(&starting), TaskState::TaskStarting);
    assert_eq!(fw, "fw1");
    let spec = timeout(GUARD, h.launched.recv())
        .await
        .expect("launched")
        .expect("launcher alive");
    assert_eq!(spec.command.value, "true");

    let mut last = sent;
    let mut interval = RETRY_BASE;
    for k in 1..=4 {
        let (t, _, again) = recv_status(&mut c).await;
        assert_eq!(again.uuid, starting.uuid, "resend {k} is the same update");
        assert_after(last, t, interval, &format!("resend {k}"));
        last = t;
        interval = (interval * 2).min(RETRY_CAP);
    }
    assert_eq!(interval, RETRY_CAP, "the test reached the cap");

    // Acknowledged: the next update (TASK_RUNNING) goes out at once, and STARTING is never
    // sent again.
    c.ack(&fw, &starting);
    let acked = Instant::now();
    let (t, _, running) = recv_status(&mut c).await;
    assert_eq!(t, acked, "the next update follows the ack without delay");
    assert_eq!(state(&running), TaskState::TaskRunning);
    assert_ne!(running.uuid, starting.uuid);
    c.ack(&fw, &running);

    // A long quiet period (many times the cap): only heartbeats, at their interval.
    let quiet = RETRY_CAP * 10;
    let from = Instant::now();
    let mut beats = 0u32;
    let extra = timeout(quiet, async {
        loop {
            match recv(&mut c).await {
                (_, AMsg::Heartbeat(_)) => beats += 1,
                (_, other) => return other,
            }
        }
    })
    .await;
    assert!(
        extra.is_err(),
        "nothing but heartbeats once acknowledged: {extra:?}"
    );
    assert_after(from, Instant::now(), quiet, "the quiet period");
    let expected = (quiet.as_millis() / HEARTBEAT.as_millis()) as u32;
    assert!(
        beats + 1 >= expected && beats <= expected,
        "{beats} heartbeats in {quiet:?}"
    );

    // Shutdown kills the task through the fake container: TASK_KILLED, acknowledged.
    h.shutdown.cancel();
    let (_, _, killed) = recv_status(&mut c).await;
    assert_eq!(killed.task_id, "t1");
    assert_eq!(state(&killed), TaskState::TaskKilled, "{killed:?}");
    c.ack(&fw, &killed);
    h.stop().await;
}

//! The driver: runs a [`Scheduler`] against a master over the public v1 scheduler HTTP API.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prost::Message;
use tessera_api::mesos::scheduler::{self, event::Type as EventType};
use tessera_api::recordio::Decoder;
use tessera_types::{FrameworkId, FrameworkInfo, OfferId, Role, Time};
use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::http;
use crate::scheduler::{Action, Scheduler, SchedulerEvent};
use crate::store::{FrameworkIdStore, MemoryIdStore};
use crate::wire;

const PATH: &str = "/api/v1/scheduler";
const PROTOBUF: &str = "application/x-protobuf";
const MAX_REDIRECTS: u32 = 5;

/// How the driver connects and behaves.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// `HOST:PORT` of a master (any master: standbys redirect to the leader).
    pub master: String,
    pub framework: FrameworkInfo,
    /// Refusal filter for offers the scheduler leaves unanswered (Mesos default 5 s).
    pub default_refuse: Duration,
    /// Refusal filter for the unused resources of offers accepted with LAUNCH; `None`
    /// sends none, so the master's default (5 s) applies.
    pub launch_refuse: Option<Duration>,
    /// First retry delay; doubles per failed attempt up to `backoff_max` (with jitter).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Give up after this many failed subscription attempts in a row (`None`: never).
    pub max_attempts: Option<u32>,
    /// How long to wait for the first event of a new stream, before the heartbeat interval
    /// is known.
    pub subscribe_timeout: Duration,
}

impl DriverConfig {
    pub fn new(master: impl Into<String>, framework: FrameworkInfo) -> Self {
        DriverConfig {
            master: master.into(),
            framework,
            default_refuse: Duration::from_secs(5),
            launch_refuse: None,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            max_attempts: None,
            subscribe_timeout: Duration::from_secs(30),
        }
    }
}

/// Exponential backoff with "equal jitter": for attempt `n ≥ 1` the delay lies in
/// `[b/2, b)` where `b = min(min·2^(n-1), max)`; `jitter` in `[0, 1)` picks the point.
pub fn backoff_delay(attempt: u32, min: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let base = min.saturating_mul(1u32 << exp).min(max);
    base / 2 + base.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

/// Wakes or stops a running driver from elsewhere (e.g. when new work arrives).
#[derive(Debug, Clone, Default)]
pub struct DriverHandle {
    inner: Arc<HandleInner>,
}

#[derive(Debug, Default)]
struct HandleInner {
    wake: Notify,
    stop: Notify,
    stopped: AtomicBool,
}

impl DriverHandle {
    /// Delivers [`SchedulerEvent::Tick`] and re-checks [`Scheduler::wants_offers`].
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }
    /// Makes `run` return `Ok(())` without tearing the framework down (its tasks keep
    /// running; a new driver with the same id store fails over to them).
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        self.inner.stop.notify_one();
    }
}

enum SessionEnd {
    Redirect(String),
    Lost { subscribed: bool, why: String },
    Teardown,
    Stopped,
}

/// Per-stream state.
struct Stream {
    target: String,
    stream_id: String,
    framework_id: Option<FrameworkId>,
    /// Outstanding offers and their allocation roles.
    offers: BTreeMap<OfferId, Option<Role>>,
    suppressed: bool,
}

/// Runs a [`Scheduler`]. See the crate doc for what it takes care of.
pub struct Driver<S> {
    cfg: DriverConfig,
    sched: S,
    store: Box<dyn FrameworkIdStore>,
    handle: DriverHandle,
    start: Instant,
    rng: u64,
    /// Bounds the acknowledgements in flight (they are sent concurrently).
    acks: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Acknowledgements sent concurrently at most.
const ACKS_IN_FLIGHT: usize = 64;

impl<S: Scheduler> Driver<S> {
    pub fn new(cfg: DriverConfig, sched: S) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9);
        Driver {
            cfg,
            sched,
            store: Box::new(MemoryIdStore::default()),
            handle: DriverHandle::default(),
            start: Instant::now(),
            rng: seed | 1,
            acks: std::sync::Arc::new(tokio::sync::Semaphore::new(ACKS_IN_FLIGHT)),
        }
    }

    /// Persists the framework id here (and fails over to a stored one).
    pub fn with_store(mut self, store: impl FrameworkIdStore + 'static) -> Self {
        self.store = Box::new(store);
        self
    }

    pub fn handle(&self) -> DriverHandle {
        self.handle.clone()
    }

    pub fn scheduler(&self) -> &S {
        &self.sched
    }

    pub fn into_scheduler(self) -> S {
        self.sched
    }

    fn now(&self) -> Time {
        Time::from_millis(self.start.elapsed().as_millis() as u64)
    }

    fn jitter(&mut self) -> f64 {
        // xorshift64*: good enough to spread reconnecting frameworks apart.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Subscribes and runs until the scheduler tears down (`Ok`), [`DriverHandle::stop`]
    /// (`Ok`), the master sends ERROR, rejects the subscription (4xx), or `max_attempts`
    /// is exhausted.
    pub async fn run(&mut self) -> Result<()> {
        let mut target = self.cfg.master.clone();
        let mut attempts = 0u32;
        let mut redirects = 0u32;
        loop {
            if self.handle.inner.stopped.load(Ordering::SeqCst) {
                return Ok(());
            }
            let why = match self.session(&target).await {
                Ok(SessionEnd::Teardown | SessionEnd::Stopped) => return Ok(()),
                Ok(SessionEnd::Redirect(to)) => {
                    redirects += 1;
                    tracing::info!(from = %target, to = %to, "master redirected the subscription");
                    target = to;
                    if redirects <= MAX_REDIRECTS {
                        continue;
                    }
                    target = self.cfg.master.clone();
                    "too many redirects".to_string()
                }
                Ok(SessionEnd::Lost { subscribed, why }) => {
                    if subscribed {
                        attempts = 0;
                        let now = self.now();
                        let actions = self.sched.on_event(&SchedulerEvent::Disconnected, now);
                        if !actions.is_empty() {
                            tracing::debug!(
                                n = actions.len(),
                                "actions while disconnected are dropped"
                            );
                        }
                    }
                    why
                }
                Err(e @ Error::Rejected { status: 503, .. }) => e.to_string(),
                Err(e) if e.is_transient() => e.to_string(),
                Err(e) => return Err(e),
            };
            redirects = 0;
            attempts += 1;
            if let Some(max) = self.cfg.max_attempts
                && attempts >= max
            {
                return Err(Error::GaveUp {
                    attempts,
                    last: why,
                });
            }
            if target != self.cfg.master {
                target = self.cfg.master.clone(); // the leader may have moved: ask again
            }
            let j = self.jitter();
            let delay = backoff_delay(attempts, self.cfg.backoff_min, self.cfg.backoff_max, j);
            tracing::warn!(attempt = attempts, ?delay, %why, "subscription lost or failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.handle.inner.stop.notified() => return Ok(()),
            }
        }
    }

    async fn session(&mut self, target: &str) -> Result<SessionEnd> {
        let id = self.store.load()?;
        let wants = self.sched.wants_offers();
        let suppressed_roles = if wants {
            vec![]
        } else {
            self.cfg
                .framework
                .roles
                .iter()
                .map(|r| r.to_string())
                .collect()
        };
        let call = wire::subscribe_call(&self.cfg.framework, id.as_ref(), suppressed_roles);
        let headers = [("Content-Type", PROTOBUF), ("Accept", PROTOBUF)];
        let mut resp = http::post(target, PATH, &headers, &call.encode_to_vec()).await?;
        match resp.status {
            200 => {}
            307 => {
                let loc = resp.header("location").unwrap_or_default().to_string();
                return location_host(&loc)
                    .map(SessionEnd::Redirect)
                    .ok_or_else(|| Error::Redirect(format!("unusable Location {loc:?}")));
            }
            status => {
                return Err(Error::Rejected {
                    call: "SUBSCRIBE".into(),
                    status,
                    body: resp.text().await,
                });
            }
        }
        let stream_id = resp
            .header("mesos-stream-id")
            .ok_or_else(|| Error::Http {
                addr: target.into(),
                reason: "SUBSCRIBE response without Mesos-Stream-Id".into(),
            })?
            .to_string();
        let mut st = Stream {
            target: target.to_string(),
            stream_id,
            framework_id: None,
            offers: BTreeMap::new(),
            suppressed: !wants,
        };
        let mut dec = Decoder::new();
        let mut watchdog = self.cfg.subscribe_timeout;
        loop {
            loop {
                let rec = match dec.next_record() {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(e) => return Ok(lost(&st, format!("bad RecordIO: {e}"))),
                };
                let ev = match scheduler::Event::decode(rec.as_slice()) {
                    Ok(ev) => ev,
                    Err(e) => return Ok(lost(&st, format!("bad event: {e}"))),
                };
                if ev.r#type() == EventType::Subscribed
                    && let Some(hb) = ev
                        .subscribed
                        .as_ref()
                        .and_then(|s| s.heartbeat_interval_seconds)
                    && hb.is_finite()
                    && hb > 0.0
                {
                    watchdog = Duration::from_secs_f64(hb * 2.0);
                }
                if let Some(end) = self.handle_event(&mut st, ev).await? {
                    return Ok(end);
                }
            }
            tokio::select! {
                r = tokio::time::timeout(watchdog, resp.next_chunk()) => match r {
                    Err(_) => return Ok(lost(&st, format!("no event for {watchdog:?}"))),
                    Ok(Err(e)) => return Ok(lost(&st, e.to_string())),
                    Ok(Ok(None)) => return Ok(lost(&st, "the master closed the stream".into())),
                    Ok(Ok(Some(bytes))) => dec.push(&bytes),
                },
                _ = self.handle.inner.wake.notified() => {
                    if st.framework_id.is_some()
                        && let Some(end) = self.deliver(&mut st, SchedulerEvent::Tick).await?
                    {
                        return Ok(end);
                    }
                }
                _ = self.handle.inner.stop.notified() => return Ok(SessionEnd::Stopped),
            }
        }
    }

    async fn handle_event(
        &mut self,
        st: &mut Stream,
        ev: scheduler::Event,
    ) -> Result<Option<SessionEnd>> {
        match ev.r#type() {
            EventType::Subscribed => {
                let Some(s) = ev.subscribed else {
                    return Ok(None);
                };
                let fw = FrameworkId::new(s.framework_id.value).map_err(|e| Error::Invalid {
                    field: "subscribed.framework_id".into(),
                    reason: e.to_string(),
                })?;
                self.store.save(&fw)?;
                tracing::info!(framework_id = %fw, "subscribed");
                st.framework_id = Some(fw.clone());
                let end = self
                    .deliver(st, SchedulerEvent::Subscribed { framework_id: fw })
                    .await?;
                if end.is_some() {
                    return Ok(end);
                }
                // Implicit reconciliation: the master re-sends the latest state of every task.
                self.send(st, &Action::Reconcile(vec![])).await;
                Ok(None)
            }
            _ if st.framework_id.is_none() => Ok(None), // nothing counts before SUBSCRIBED
            EventType::Heartbeat => self.deliver(st, SchedulerEvent::Tick).await,
            EventType::Offers => {
                let offers = ev.offers.map(|o| o.offers).unwrap_or_default();
                let mut good = Vec::new();
                let mut bad = Vec::new();
                for o in &offers {
                    match wire::offer_from_v1(o) {
                        Ok(off) => {
                            st.offers.insert(
                                off.id.clone(),
                                off.role.as_deref().and_then(|r| Role::new(r).ok()),
                            );
                            good.push(off);
                        }
                        Err(e) => {
                            tracing::warn!(offer = %o.id.value, error = %e, "declining an offer the SDK cannot read");
                            if let Ok(id) = OfferId::new(o.id.value.clone()) {
                                bad.push(id);
                            }
                        }
                    }
                }
                let ids: Vec<OfferId> = good.iter().map(|o| o.id.clone()).collect();
                let end = self.deliver(st, SchedulerEvent::Offers(good)).await?;
                // Decline whatever the scheduler left unanswered (still outstanding) and
                // does not hold for later.
                bad.extend(
                    ids.into_iter()
                        .filter(|id| st.offers.contains_key(id) && !self.sched.holds(id)),
                );
                if !bad.is_empty() && end.is_none() {
                    let refuse = self.cfg.default_refuse;
                    self.send(
                        st,
                        &Action::Decline {
                            offer_ids: bad,
                            refuse,
                        },
                    )
                    .await;
                }
                Ok(end)
            }
            EventType::Rescind => {
                let Some(r) = ev.rescind else { return Ok(None) };
                let Ok(id) = OfferId::new(r.offer_id.value) else {
                    return Ok(None);
                };
                st.offers.remove(&id);
                self.deliver(st, SchedulerEvent::Rescind(id)).await
            }
            EventType::Update => {
                let Some(u) = ev.update else { return Ok(None) };
                let status = match wire::task_status_from_v1(&u.status) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "ignoring an unreadable status update");
                        return Ok(None);
                    }
                };
                let ack = match (&status.uuid, &status.agent_id) {
                    (Some(uuid), Some(agent)) => {
                        Some((agent.clone(), status.task_id.clone(), uuid.clone()))
                    }
                    _ => None,
                };
                let end = self.deliver(st, SchedulerEvent::Update(status)).await?;
                // Acknowledge only after the scheduler handled the update (and its actions
                // went out): a crash before this point makes the agent resend it.
                if let (Some((agent, task, uuid)), Some(fw), None) = (ack, &st.framework_id, &end) {
                    let call = wire::acknowledge_call(fw, &agent, &task, &uuid);
                    self.spawn_ack(st, call).await;
                }
                Ok(end)
            }
            EventType::Failure => {
                let f = ev.failure.unwrap_or_default();
                let agent_id = f
                    .agent_id
                    .and_then(|a| tessera_types::AgentId::new(a.value).ok());
                self.deliver(
                    st,
                    SchedulerEvent::Failure {
                        agent_id,
                        status: f.status,
                    },
                )
                .await
            }
            EventType::Error => {
                let msg = ev.error.map(|e| e.message).unwrap_or_default();
                let now = self.now();
                let _ = self
                    .sched
                    .on_event(&SchedulerEvent::Error(msg.clone()), now);
                Err(Error::Master(msg))
            }
            _ => Ok(None),
        }
    }

    /// Hands one event to the scheduler, executes its actions, then SUPPRESSes or REVIVEs
    /// to match [`Scheduler::wants_offers`].
    async fn deliver(&mut self, st: &mut Stream, ev: SchedulerEvent) -> Result<Option<SessionEnd>> {
        let now = self.now();
        let actions = self.sched.on_event(&ev, now);
        for a in &actions {
            if self.send(st, a).await {
                return Ok(Some(SessionEnd::Teardown));
            }
        }
        let wants = self.sched.wants_offers();
        if wants && st.suppressed {
            self.send(st, &Action::Revive(vec![])).await;
        } else if !wants && !st.suppressed {
            self.send(st, &Action::Suppress(vec![])).await;
        }
        Ok(None)
    }

    /// Sends one action; `true` if it was TEARDOWN.
    async fn send(&mut self, st: &mut Stream, a: &Action) -> bool {
        let Some(fw) = st.framework_id.clone() else {
            return false;
        };
        match a {
            Action::Launch { offer_ids, .. } | Action::Decline { offer_ids, .. } => {
                let offers = &st.offers;
                let mut call = wire::action_call(&fw, a, |id| offers.get(id).cloned().flatten());
                if let (Some(refuse), Some(accept)) = (self.cfg.launch_refuse, call.accept.as_mut())
                {
                    accept.filters = wire::filters(refuse);
                }
                for id in offer_ids {
                    st.offers.remove(id);
                }
                self.post_call(st, kind(a), &call).await;
                return false;
            }
            Action::Revive(_) => st.suppressed = false,
            Action::Suppress(_) => st.suppressed = true,
            _ => {}
        }
        let call = wire::action_call(&fw, a, |_| None);
        self.post_call(st, kind(a), &call).await;
        matches!(a, Action::Teardown)
    }

    /// Sends an ACKNOWLEDGE without waiting for the master's answer (at most
    /// [`ACKS_IN_FLIGHT`] at once): acknowledgements are idempotent and order-free, and
    /// waiting for each in turn made the event loop, not the cluster, the bottleneck. A lost
    /// one only means the agent resends the update, which the scheduler sees again.
    async fn spawn_ack(&self, st: &Stream, call: scheduler::Call) {
        let Ok(permit) = std::sync::Arc::clone(&self.acks).acquire_owned().await else {
            return;
        };
        let target = st.target.clone();
        let stream_id = st.stream_id.clone();
        tokio::spawn(async move {
            let headers = [
                ("Content-Type", PROTOBUF),
                ("Accept", PROTOBUF),
                ("Mesos-Stream-Id", stream_id.as_str()),
            ];
            match http::post(&target, PATH, &headers, &call.encode_to_vec()).await {
                Ok(r) if r.status == 202 || r.status == 200 => {}
                Ok(r) => {
                    let status = r.status;
                    let body = r.text().await;
                    tracing::warn!(call = "ACKNOWLEDGE", status, %body, "master rejected a call");
                }
                Err(e) => tracing::warn!(call = "ACKNOWLEDGE", error = %e, "call failed"),
            }
            drop(permit);
        });
    }

    /// POSTs a call on the current stream. Failures are logged, not fatal: if the master is
    /// gone the event stream breaks too and the driver re-subscribes and reconciles.
    async fn post_call(&self, st: &Stream, what: &str, call: &scheduler::Call) {
        let headers = [
            ("Content-Type", PROTOBUF),
            ("Accept", PROTOBUF),
            ("Mesos-Stream-Id", st.stream_id.as_str()),
        ];
        match http::post(&st.target, PATH, &headers, &call.encode_to_vec()).await {
            Ok(r) if r.status == 202 || r.status == 200 => {}
            Ok(r) => {
                let status = r.status;
                let body = r.text().await;
                tracing::warn!(call = what, status, %body, "master rejected a call");
            }
            Err(e) => tracing::warn!(call = what, error = %e, "call failed"),
        }
    }
}

fn kind(a: &Action) -> &'static str {
    match a {
        Action::Launch { .. } => "ACCEPT",
        Action::Decline { .. } => "DECLINE",
        Action::Kill { .. } => "KILL",
        Action::Reconcile(_) => "RECONCILE",
        Action::Revive(_) => "REVIVE",
        Action::Suppress(_) => "SUPPRESS",
        Action::Teardown => "TEARDOWN",
    }
}

fn lost(st: &Stream, why: String) -> SessionEnd {
    SessionEnd::Lost {
        subscribed: st.framework_id.is_some(),
        why,
    }
}

/// `HOST:PORT` from a redirect `Location` (`//host:port/path`, `http://host:port/…`,
/// or a bare `host:port`).
fn location_host(loc: &str) -> Option<String> {
    let rest = loc
        .strip_prefix("http://")
        .or_else(|| loc.strip_prefix("//"))
        .unwrap_or(loc);
    let host = rest.split('/').next()?.trim();
    (!host.is_empty()).then(|| host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(backoff_delay(1, min, max, 0.0), Duration::from_millis(50));
        assert_eq!(backoff_delay(1, min, max, 1.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(3, min, max, 0.0), Duration::from_millis(200));
        assert_eq!(backoff_delay(30, min, max, 0.5), Duration::from_millis(750));
        assert_eq!(backoff_delay(u32::MAX, min, max, 0.999).as_millis(), 999);
    }

    #[test]
    fn redirect_locations() {
        assert_eq!(
            location_host("//10.0.0.1:5050/api/v1/scheduler").as_deref(),
            Some("10.0.0.1:5050")
        );
        assert_eq!(location_host("http://m:5050/x").as_deref(), Some("m:5050"));
        assert_eq!(location_host("m:1").as_deref(), Some("m:1"));
        assert_eq!(location_host("//"), None);
    }
}

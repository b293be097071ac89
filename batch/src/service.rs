//! The batch scheduler as a running service: the pure [`Core`] behind a lock, the job
//! [`Store`], and the SDK [`Driver`] that connects it to a master over the public v1 API.
//!
//! This is the I/O edge. Every event is applied to the core, the rows it changed are written
//! in one transaction, and only then do its actions go out (and the driver acknowledge the
//! update that caused them). REST calls go through the same lock and store, then wake the
//! driver so new work is offered for at once.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tessera_framework::{Action, Driver, DriverConfig, DriverHandle, Scheduler, SchedulerEvent};
use tessera_types::{Capability, FrameworkInfo, Role, Time};
use tokio_util::sync::CancellationToken;

use crate::core::Core;
use crate::error::{Error, Result};
use crate::model::{Job, Millis};
use crate::spec::{JobId, JobRequest, Limits};
use crate::store::{IdStore, Store};

/// Where time comes from: the wall clock, or a value tests set.
#[derive(Debug, Clone)]
pub enum Clock {
    Wall,
    Fixed(Arc<std::sync::atomic::AtomicI64>),
}

impl Clock {
    pub fn now(&self) -> Millis {
        match self {
            Clock::Wall => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as Millis)
                .unwrap_or(0),
            Clock::Fixed(v) => v.load(std::sync::atomic::Ordering::SeqCst),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// `HOST:PORT` of a master.
    pub master: String,
    /// The job store file.
    pub store: PathBuf,
    pub limits: Limits,
    pub framework_name: String,
    /// How often time limits, retries and schedules are checked.
    pub tick: Duration,
    /// How long the master keeps our tasks running while this scheduler is away.
    pub failover_timeout: Duration,
}

impl BatchConfig {
    pub fn new(master: impl Into<String>, store: PathBuf) -> Self {
        BatchConfig {
            master: master.into(),
            store,
            limits: Limits::default(),
            framework_name: "tessera-batch".into(),
            tick: Duration::from_secs(1),
            failover_timeout: Duration::from_secs(7 * 86_400),
        }
    }
}

pub(crate) struct Shared {
    pub core: Core,
    /// Set when the store failed: the service stops acting rather than act unrecorded.
    pub broken: Option<String>,
}

/// The running batch scheduler, shared by the driver and the REST API.
pub struct Service {
    pub(crate) cfg: BatchConfig,
    pub(crate) shared: Mutex<Shared>,
    pub(crate) store: Arc<Store>,
    pub(crate) clock: Clock,
    driver: Mutex<Option<DriverHandle>>,
    /// The master's address; settable after open because `tessera up` learns it only once
    /// the master listens.
    master: std::sync::RwLock<String>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("cfg", &self.cfg).finish()
    }
}

impl Service {
    /// Opens the store and restores every job from it.
    pub fn open(cfg: BatchConfig, clock: Clock) -> Result<Arc<Service>> {
        let store = Arc::new(Store::open(&cfg.store)?);
        let jobs = store.load()?;
        let n = jobs.len();
        let core = Core::restore(cfg.limits.clone(), jobs);
        tracing::info!(jobs = n, store = %cfg.store.display(), "batch scheduler restored its jobs");
        Ok(Arc::new(Service {
            master: std::sync::RwLock::new(cfg.master.clone()),
            cfg,
            shared: Mutex::new(Shared { core, broken: None }),
            store,
            clock,
            driver: Mutex::new(None),
        }))
    }

    /// Points the service at the master (before [`Service::run`]).
    pub fn set_master(&self, addr: impl Into<String>) {
        if let Ok(mut m) = self.master.write() {
            *m = addr.into();
        }
    }

    pub fn master(&self) -> String {
        self.master
            .read()
            .map(|m| m.clone())
            .unwrap_or_else(|_| self.cfg.master.clone())
    }

    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, Shared>> {
        let g = self
            .shared
            .lock()
            .map_err(|_| Error::Store("the scheduler's lock was poisoned by a panic".into()))?;
        if let Some(why) = &g.broken {
            return Err(Error::Store(format!(
                "the batch scheduler stopped after a job store failure ({why}); fix the store and restart it"
            )));
        }
        Ok(g)
    }

    /// Applies `f` to the core and persists what it changed; on a store failure nothing
    /// is acted on and the service refuses further work.
    pub(crate) fn mutate<T>(&self, f: impl FnOnce(&mut Core, Millis) -> Result<T>) -> Result<T> {
        let now = self.clock.now();
        let mut g = self.lock()?;
        let out = f(&mut g.core, now);
        let changes = g.core.take_changes();
        if let Err(e) = self.store.write(&g.core, &changes) {
            tracing::error!(error = %e, "job store write failed; the batch scheduler stops acting");
            g.broken = Some(e.to_string());
            return Err(e);
        }
        drop(g);
        out
    }

    /// [`Service::mutate`] for REST calls: afterwards the driver is woken to act on it.
    fn command<T>(&self, f: impl FnOnce(&mut Core, Millis) -> Result<T>) -> Result<T> {
        let out = self.mutate(f);
        if out.is_ok() {
            self.wake();
        }
        out
    }

    /// Wakes the driver so it looks at new work (revive, kills) now.
    pub fn wake(&self) {
        if let Ok(d) = self.driver.lock()
            && let Some(h) = d.as_ref()
        {
            h.wake();
        }
    }

    pub fn submit(&self, req: &JobRequest) -> Result<JobId> {
        self.command(|core, now| core.submit(req, now))
    }

    pub fn cancel(&self, id: JobId) -> Result<Job> {
        self.command(|core, now| {
            core.cancel(id, now)?;
            core.get(id).cloned().ok_or(Error::UnknownJob(id))
        })
    }

    pub fn hold(&self, id: JobId) -> Result<Job> {
        self.command(|core, _| {
            core.hold(id)?;
            core.get(id).cloned().ok_or(Error::UnknownJob(id))
        })
    }

    pub fn release(&self, id: JobId) -> Result<Job> {
        self.command(|core, _| {
            core.release(id)?;
            core.get(id).cloned().ok_or(Error::UnknownJob(id))
        })
    }

    /// Reads the core under the lock.
    pub fn read<T>(&self, f: impl FnOnce(&Core, Millis) -> T) -> Result<T> {
        let now = self.clock.now();
        let g = self.lock()?;
        Ok(f(&g.core, now))
    }

    /// Runs the driver (and the tick timer) until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) -> Result<()> {
        let roles = self
            .cfg
            .limits
            .queues
            .iter()
            .map(|q| {
                Role::new(q).map_err(|e| Error::Invalid {
                    field: "queues".into(),
                    message: format!("queue '{q}' is not a valid role name: {e}"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let info = FrameworkInfo {
            id: None,
            name: self.cfg.framework_name.clone(),
            user: "root".into(),
            roles,
            capabilities: vec![Capability::MultiRole, Capability::PartitionAware],
            failover_timeout_secs: self.cfg.failover_timeout.as_secs_f64(),
            principal: None,
            hostname: None,
        };
        let mut dc = DriverConfig::new(self.master(), info);
        dc.default_refuse = Duration::from_secs(1);
        let adapter = Adapter {
            svc: Arc::clone(&self),
        };
        let mut driver = Driver::new(dc, adapter).with_store(IdStore(Arc::clone(&self.store)));
        let handle = driver.handle();
        if let Ok(mut d) = self.driver.lock() {
            *d = Some(handle.clone());
        }
        let ticker = {
            let handle = handle.clone();
            let every = self.cfg.tick;
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut iv = tokio::time::interval(every);
                iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = iv.tick() => handle.wake(),
                        _ = stop.cancelled() => { handle.stop(); return; }
                    }
                }
            })
        };
        let out = driver.run().await;
        ticker.abort();
        out.map_err(|e| Error::Upstream(format!("driver stopped: {e}")))
    }
}

/// The SDK-facing side: turns driver events into core calls.
struct Adapter {
    svc: Arc<Service>,
}

impl Scheduler for Adapter {
    fn on_event(&mut self, ev: &SchedulerEvent, _driver_now: Time) -> Vec<Action> {
        let r = self.svc.mutate(|core, now| {
            Ok(match ev {
                SchedulerEvent::Subscribed { .. } => core.on_subscribed(),
                SchedulerEvent::Offers(offers) => core.on_offers(offers, now),
                SchedulerEvent::Update(s) => core.on_update(s, now),
                SchedulerEvent::Tick => core.on_tick(now),
                SchedulerEvent::Rescind(_)
                | SchedulerEvent::Failure { .. }
                | SchedulerEvent::Disconnected => vec![],
                SchedulerEvent::Error(msg) => {
                    tracing::error!(%msg, "the master ended the batch framework");
                    vec![]
                }
            })
        });
        r.unwrap_or_else(|e| {
            tracing::error!(error = %e, "batch scheduler cannot act");
            vec![]
        })
    }

    fn wants_offers(&self) -> bool {
        self.svc
            .read(|core, now| core.wants_offers(now))
            .unwrap_or(false)
    }
}

//! `tessera-framework`: the Framework SDK — what a framework author (first-party or not) uses
//! to write a Mesos-style scheduler for Tessera.
//!
//! * [`Scheduler`]: the scheduling logic as a pure trait — `(event, own state, now) → actions`.
//!   No I/O, no clock: time is an input, so every decision is unit-testable.
//! * [`Driver`]: everything else, over the **public Mesos v1 scheduler HTTP API only**
//!   (`POST /api/v1/scheduler`, protobuf, RecordIO event stream): subscribe with exponential
//!   backoff and jitter, follow `307` redirects to the leading master, keep the
//!   `Mesos-Stream-Id`, re-subscribe when no event (heartbeats included) arrives for twice the
//!   heartbeat interval, persist the framework id ([`FrameworkIdStore`]) and fail over with it,
//!   acknowledge status updates *after* the scheduler handled them, reconcile implicitly after
//!   every (re)subscription, decline offers the scheduler leaves unanswered, and
//!   SUPPRESS/REVIVE as [`Scheduler::wants_offers`] changes.
//! * [`matching`]: offer-matching helpers — does a task fit, pick ports, attribute
//!   constraints, carve several tasks out of one offer.
//! * [`sandbox`]: find and read a task's sandbox files through the agents' HTTP API.
//! * [`fake`]: a scripted in-process fake master for framework unit tests.
//!
//! Must not depend on: the master, the agent or the allocator — only `tessera-types` and
//! `tessera-api` (wire types). A framework needing something the v1 API lacks is an API change.

pub mod driver;
pub mod error;
pub mod fake;
pub mod http;
pub mod matching;
pub mod sandbox;
pub mod scheduler;
pub mod store;
pub mod wire;

pub use driver::{Driver, DriverConfig, DriverHandle, backoff_delay};
pub use error::{Error, Result};
pub use scheduler::{Action, Offer, Scheduler, SchedulerEvent};
pub use store::{FileIdStore, FrameworkIdStore, MemoryIdStore};
pub use tessera_types::Time;

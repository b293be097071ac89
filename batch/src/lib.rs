//! `tessera-batch`: the batch scheduler — jobs, array jobs, retries with backoff, time
//! limits, dependencies, cron and ISO 8601 schedules, a SQLite job store and a JSON REST
//! API — written as an ordinary framework on the Tessera SDK.
//!
//! Must not depend on: the master, the agent or the allocator. It reaches the cluster only
//! through `tessera-framework` (the public Mesos v1 scheduler API), like any framework.

pub mod core;
pub mod error;
mod firing;
pub mod logs;
pub mod model;
pub mod rest;
pub mod schedule;
pub mod service;
pub mod spec;
pub mod store;
pub mod why;

pub use error::{Error, Result};
pub use spec::{JobId, JobRequest, JobSpec, Limits};

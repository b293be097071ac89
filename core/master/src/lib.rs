//! `tessera-master`: the master. One actor ([`actor::Master`]) owns all cluster state —
//! agents, frameworks, offers, tasks — and processes commands one at a time; the allocator
//! (pure) decides who is offered what; agents attach over gRPC; the registry (SQLite) keeps
//! what must survive a restart.
//!
//! Invariants: an offer's resources are allocated from the moment it is made until they are
//! declined, rescinded, expired or used, and come back exactly once; nothing that arrives
//! from an agent or framework is trusted before validation; status updates are forwarded
//! every time they arrive (agents retry until acknowledged), so delivery is at-least-once and
//! ordered per task.
//!
//! Must not depend on: the agent crate (except in tests) or any framework crate.

pub mod actor;
mod agents;
pub mod config;
pub mod error;
mod frameworks;
pub mod grpc;
pub mod handle;
pub mod http;
pub mod link;
pub mod metrics;
pub mod model;
mod offers;
mod operator;
pub mod registry;
pub mod server;
mod tasks;

pub use config::MasterConfig;
pub use error::{MasterError, Result};
pub use handle::{MasterHandle, Subscription};
pub use model::{AllocationCycle, Event, MasterState, Offer, Operation};
pub use server::{RunningMaster, spawn_actor, start, start_with};

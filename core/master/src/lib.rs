//! `tessera-master`: the master. One actor ([`actor::Master`]) owns all cluster state —
//! agents, frameworks, offers, tasks — and processes commands one at a time; the allocator
//! (pure) decides who is offered what; agents attach over gRPC; the registry (SQLite) keeps
//! what must survive a restart; until it has been read at start-up, the v1 APIs answer 503
//! ([`recovery`]).
//!
//! Beyond offers and tasks it keeps, per Mesos: operation feedback for offer operations that
//! carry an id (UPDATE_OPERATION_STATUS, acknowledged and reconciled like task updates);
//! inverse offers for agents being drained (INVERSE_OFFERS, answered with filters, rescinded
//! when the agent comes back, is drained or lost, or they expire); the maintenance primitives
//! ([`maintenance`]: a schedule of windows, machines brought down and up, whose agents carry
//! the window's unavailability in offers and inverse offers); and fault domains — agents
//! in a region other than the master's ([`MasterConfig::domain`]) are offered only to
//! REGION_AWARE frameworks. Task groups (LAUNCH_GROUP) are validated as a whole and reach
//! their agent as one message; their default executor holds its resources until its last
//! task ends, and their updates name it as `executor_id` (`Event::ExecutorUpdate`).
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
pub mod custom;
pub mod error;
mod frameworks;
mod groups;
pub mod grpc;
pub mod handle;
pub mod http;
mod inverse;
pub mod link;
pub mod maintenance;
pub mod metrics;
pub mod model;
mod offers;
mod operations;
mod operator;
pub mod recovery;
pub mod registry;
pub mod server;
mod tasks;
mod volumes;

pub use config::MasterConfig;
pub use error::{MasterError, Result};
pub use handle::{MasterHandle, Subscription};
pub use model::{
    AllocationCycle, Event, ExecutorView, FaultDomain, InverseAnswer, InverseOffer, MasterState,
    Offer, Operation, OperationInfo, OperationKind, OperationState, OperationStatus, OperationView,
    Unavailability,
};
pub use recovery::{Recovery, RecoveryState};
pub use server::{RunningMaster, spawn_actor, start, start_recovering, start_with};

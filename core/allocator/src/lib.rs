//! `tessera-allocator`: the pure, deterministic offer allocator (Mesos "HierarchicalDRF").
//!
//! Role: given the cluster (agents with total and allocated resources), the demand
//! (frameworks subscribed to roles, suppressed or not), offer filters, quota, weights, `now`
//! and a seeded rng, decide which (framework, role) is offered which resources on which agent.
//! The master turns each [`Allocation`] into one offer and reports back with
//! [`Allocator::recover`] (declines, unused parts of accepts, rescinds, finished tasks).
//!
//! Split like Mesos into *mechanism* ([`Allocator`]: what is offered where, quota, filters) and
//! *policy* ([`sorter::Sorter`]: who is next; weighted DRF or weighted random).
//!
//! Invariants:
//! * no resource is in two outstanding allocations; an agent's allocations never exceed its
//!   total (all arithmetic is checked; caller mistakes become [`AllocatorError`], never panics);
//! * reserved resources are only offered to their role or its subroles;
//! * agents with GPUs go only to GPU-aware frameworks (when filtering is on), agents in
//!   another region only to region-aware ones ([`Allocator::set_agent_remote`]);
//! * equal inputs (same calls, same rng seed) give identical [`AllocationRun`]s: ordered maps
//!   in decision code, total-order tie-breaks (share, allocation count, name);
//! * time is an input ([`tessera_types::Time`]); nothing reads a clock.
//!
//! Must not depend on: tokio, any I/O, the master, the api crate.

mod allocator;
pub mod batch;
mod error;
pub mod filters;
pub mod quota;
pub mod reasons;
pub mod rng;
pub mod sorter;
mod state;

pub use allocator::{
    Allocation, AllocationRun, Allocator, AllocatorConfig, DEFAULT_ALLOCATION_INTERVAL,
    DEFAULT_EVENT_DELAY, RoleInfo,
};
pub use error::AllocatorError;
pub use quota::Quota;
pub use reasons::{Unmet, UnmetReason};
pub use rng::{AllocRng, SplitMix64};
pub use sorter::SorterKind;

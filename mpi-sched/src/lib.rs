//! `tessera-mpi`: the MPI gang scheduler's pure decision core.
//!
//! * [`GangSpec`]: N identical ranks, per-rank resources, a [`Layout`] (`Ppn(n)`, `Spread`,
//!   `Pack`), a priority and a role; validated with the offending field named.
//! * [`place()`]: all N ranks on the given offers or none ([`Unplaceable`] says why), never
//!   more than an offer holds, ranks numbered contiguously per agent; deterministic and
//!   independent of offer order. [`can_ever_fit`] refuses at submit a gang larger than the
//!   cluster.
//! * [`GangQueue`]: several gangs competing for held offers — all-or-nothing launches,
//!   bounded holds (no deadlock), a strict priority/age order (no livelock), backfill that
//!   never sets the head gang back (no starvation). Rules in [`queue`].
//!
//! Invariants (property-tested in `tests/`): a partial gang is never launched; no offer is
//! used twice or over-committed; `Ppn` is respected; equal inputs give equal outputs.
//!
//! The decision core is pure: no I/O, no clock reads, no randomness — time is an input
//! ([`place`], [`queue`], [`supervise`], [`framework`], [`pmi`]). At the edge, on top of it:
//! the PMI-1 TCP server ([`pmi_server`]), the control server that starts Hydra's proxies and
//! Open MPI's orted daemons as tasks ([`control`], [`mpiexec`]), the [`service`] that runs
//! gangs under one framework through the SDK driver, its REST API ([`rest`]), the
//! foreground [`runner`] behind `tessera mpi run`, and the path of `run`'s stdin to rank 0
//! ([`stdin`]).
//!
//! Must not depend on: the master, the agent or the allocator — only the framework SDK
//! (`tessera-framework`) and `tessera-types`, like any third-party framework.

pub mod control;
pub mod error;
pub mod framework;
pub mod mpiexec;
pub mod place;
pub mod pmi;
pub mod pmi_server;
pub mod queue;
pub mod rest;
pub mod runner;
pub mod service;
pub mod spec;
pub mod stdin;
pub mod supervise;
mod watch_job;

pub use error::{Error, Result};
pub use framework::{MpiFramework, Phase};
pub use place::{NodePlacement, Placement, RankSlot, Unplaceable, can_ever_fit, place, placeable};
pub use queue::{GangEntry, GangId, GangQueue, GangState, QueueConfig, Waiting};
pub use spec::{GangSpec, Layout};
pub use supervise::{GangRun, Outcome};

//! The Mesos v1 API: generated prost types, the Mesos JSON and protobuf codecs, and
//! conversions to `tessera-types`.
//!
//! The `.proto` files under `proto/mesos/v1` are generated from the Mesos field tables by
//! `proto/gen_mesos.py` (proto2, exact field numbers, labels and defaults).

pub mod convert;
pub mod disk;
pub mod group;
pub mod health;
pub mod json;
pub mod protobuf;

mod error;
mod reflect;

pub use error::CodecError;

/// Prost types of package `mesos.v1` (the sub-packages are nested modules too, because the
/// generated code refers to `super::…`; use the re-exports [`scheduler`], [`executor`],
/// [`master`], [`quota`], [`allocator`], [`maintenance`]).
#[allow(clippy::all, missing_docs, rustdoc::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/mesos.v1.rs"));

    /// `mesos.v1.scheduler`.
    pub mod scheduler {
        include!(concat!(env!("OUT_DIR"), "/mesos.v1.scheduler.rs"));
    }
    /// `mesos.v1.executor`.
    pub mod executor {
        include!(concat!(env!("OUT_DIR"), "/mesos.v1.executor.rs"));
    }
    /// `mesos.v1.master` (operator API).
    pub mod master {
        include!(concat!(env!("OUT_DIR"), "/mesos.v1.master.rs"));
    }
    /// `mesos.v1.quota`.
    pub mod quota {
        include!(concat!(env!("OUT_DIR"), "/mesos.v1.quota.rs"));
    }
    /// `mesos.v1.allocator` (`InverseOfferStatus`, shown by the maintenance status).
    pub mod allocator {
        include!(concat!(env!("OUT_DIR"), "/mesos.v1.allocator.rs"));
    }
    /// `mesos.v1.maintenance`: `Window`, `Schedule`, `ClusterStatus`.
    pub mod maintenance {
        include!(concat!(env!("OUT_DIR"), "/mesos.v1.maintenance.rs"));
    }
}

pub use v1::{allocator, executor, maintenance, master, quota, scheduler};

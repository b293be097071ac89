//! `tessera-types`: the vocabulary every other Tessera crate speaks.
//!
//! Newtype ids, fixed-point [`Resources`] (scalars in milli-units, port ranges, sets, each
//! optionally reserved to a [`Role`]), hierarchical roles, the task and framework records the
//! master and agents exchange (task groups with their default executor included), and a
//! monotonic [`Time`] used by pure decision code.
//!
//! Invariants: resource arithmetic never goes negative and never overflows (subtraction of
//! something not contained is an error, addition is checked); every value built from outside
//! input is validated by a constructor that names the offending field.
//!
//! Must not depend on: any other Tessera crate, tokio, or anything doing I/O.

pub mod container;
pub mod error;
pub mod executor;
pub mod framework;
pub mod ids;
pub mod parse;
pub mod ranges;
pub mod resources;
pub mod role;
pub mod scalar;
pub mod task;
pub mod time;
pub mod volume;

pub use container::{
    ContainerInfo, ContainerKind, DockerInfo, DockerNetwork, PortMapping, Volume, VolumeMode,
};
pub use error::{Error, Result};
pub use executor::{ExecutorInfo, TaskGroup};
pub use framework::{Capability, Filters, FrameworkInfo};
pub use ids::{AgentId, ExecutorId, FrameworkId, OfferId, TaskId};
pub use ranges::Ranges;
pub use resources::{Reservation, ReservationKind, Resource, ResourceKey, Resources, Value};
pub use role::Role;
pub use scalar::Scalar;
pub use task::{
    CommandInfo, HealthCheck, HealthProbe, Reason, TaskInfo, TaskState, TaskStatus, UpdateSource,
    Uri,
};
pub use time::Time;
pub use volume::PersistentVolume;

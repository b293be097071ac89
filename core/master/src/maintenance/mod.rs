//! Mesos maintenance primitives: a schedule of windows in which machines go down, machines
//! brought DOWN (START_MAINTENANCE) and back UP (STOP_MAINTENANCE), and the cluster status
//! operators read (draining machines with each framework's last inverse-offer answer, and
//! down machines).
//!
//! * [`schedule`]: the rules, pure (validation and mode transitions; no I/O, unit- and
//!   property-tested).
//! * `master`: what the actor does with them — agents on scheduled machines carry their
//!   window's unavailability (in offers, and inverse offers to frameworks with tasks there),
//!   agents on a machine brought down are removed and may not register until it is up, and
//!   every change is recorded in the registry before it takes effect.

mod master;
pub mod schedule;

pub use master::{DrainingMachine, MaintenanceCommand, MaintenanceStatus};
pub use schedule::{AgentMaintenance, MachineId, MachineMode, Maintenance, Schedule, Window};

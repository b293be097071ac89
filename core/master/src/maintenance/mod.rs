//! Mesos maintenance primitives: a schedule of windows in which machines go down, machines
//! brought DOWN (START_MAINTENANCE) and back UP (STOP_MAINTENANCE).
//!
//! * [`schedule`]: the rules, pure (validation and mode transitions; no I/O, unit- and
//!   property-tested).

pub mod schedule;

pub use schedule::{AgentMaintenance, MachineId, MachineMode, Maintenance, Schedule, Window};

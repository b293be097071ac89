//! The maintenance schedule as data, and Mesos' rules for changing it. Pure: every change
//! is a function from the current [`Maintenance`] and a request to the next one, or to an
//! error naming the field; a refused request leaves nothing changed because nothing was.
//!
//! Machine modes (Mesos `MachineInfo.Mode`): a machine named in the schedule is DRAINING
//! until START_MAINTENANCE makes it DOWN; STOP_MAINTENANCE brings a DOWN machine UP and out of
//! the schedule. Every other machine is UP. Invariants, kept by every accepted change: each
//! machine is in at most one window, no window is empty, and every DOWN machine is in the
//! schedule (so an update may not drop one).
//!
//! Which agents a machine covers: Mesos keys machines by the exact (hostname, ip) pair of its
//! agents. Here a machine covers an agent when every part it names matches (hostname without
//! regard to case, ip exactly), so an operator who knows only the hostname (or only the IP)
//! still reaches the agents there; a machine given both parts behaves as in Mesos.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use tessera_types::Error;

use crate::model::Unavailability;

/// A machine (Mesos `MachineID`): its hostname (lowercased, as Mesos compares it), its IP,
/// or both.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MachineId {
    pub hostname: Option<String>,
    pub ip: Option<IpAddr>,
}

/// `prefix.rest`, or `rest` alone when there is no prefix.
pub fn at(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() {
        rest.to_string()
    } else {
        format!("{prefix}.{rest}")
    }
}

impl MachineId {
    /// Validates a machine from outside: at least one of hostname and ip (empty counts as
    /// absent), a hostname of at most 255 bytes without whitespace or control characters,
    /// an ip that parses (IPv4 as in Mesos, or IPv6, which Mesos refuses but agents may
    /// connect from). Errors name `field.hostname` / `field.ip`.
    pub fn new(field: &str, hostname: Option<&str>, ip: Option<&str>) -> Result<MachineId, Error> {
        let hostname = hostname.filter(|h| !h.is_empty());
        let ip = ip.filter(|i| !i.is_empty());
        if hostname.is_none() && ip.is_none() {
            return Err(Error::invalid(
                field,
                "both 'hostname' and 'ip' are empty; name the machine by the hostname its agents report, by its IP, or both",
            ));
        }
        if let Some(h) = hostname
            && (h.len() > 255 || h.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(Error::invalid(
                at(field, "hostname"),
                format!(
                    "'{h}' is not a hostname (at most 255 bytes, no spaces or control characters)"
                ),
            ));
        }
        let ip = ip
            .map(|i| {
                i.parse::<IpAddr>().map_err(|_| {
                    Error::invalid(
                        at(field, "ip"),
                        format!("'{i}' is not an IP address; give it as e.g. 10.0.0.1"),
                    )
                })
            })
            .transpose()?;
        Ok(MachineId {
            hostname: hostname.map(str::to_lowercase),
            ip,
        })
    }

    /// Whether an agent reporting `hostname` and connecting from `ip` is on this machine.
    pub fn covers(&self, hostname: &str, ip: Option<IpAddr>) -> bool {
        self.hostname
            .as_deref()
            .is_none_or(|h| h.eq_ignore_ascii_case(hostname))
            && self.ip.is_none_or(|i| Some(i) == ip)
    }
}

/// As Mesos names a machine in its messages: its `MachineID` in JSON.
impl std::fmt::Display for MachineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.hostname {
            parts.push(format!(
                "\"hostname\":{}",
                serde_json::Value::from(h.as_str())
            ));
        }
        if let Some(i) = &self.ip {
            parts.push(format!("\"ip\":\"{i}\""));
        }
        write!(f, "{{{}}}", parts.join(","))
    }
}

/// Machines going down together for the same interval (Mesos `maintenance.Window`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub machines: Vec<MachineId>,
    pub unavailability: Unavailability,
}

/// Mesos `maintenance.Schedule`: the windows, in the order the operator gave them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub windows: Vec<Window>,
}

impl Schedule {
    /// Every machine of every window, in schedule order.
    pub fn machines(&self) -> impl Iterator<Item = &MachineId> {
        self.windows.iter().flat_map(|w| w.machines.iter())
    }

    pub fn contains(&self, m: &MachineId) -> bool {
        self.machines().any(|x| x == m)
    }
}

/// Validates an unavailability from outside (nanoseconds since the epoch, and a length):
/// a negative duration is refused. Errors name `field.duration`.
pub fn unavailability(
    field: &str,
    start_ns: i64,
    duration_ns: Option<i64>,
) -> Result<Unavailability, Error> {
    let duration = match duration_ns {
        None => None,
        Some(d) => Some(std::time::Duration::from_nanos(u64::try_from(d).map_err(
            |_| {
                Error::invalid(
                    at(field, "duration"),
                    format!("{d} ns is negative; give the window's length (0 or more), or leave it out for an open-ended one"),
                )
            },
        )?)),
    };
    Ok(Unavailability { start_ns, duration })
}

/// Mesos `MachineInfo.Mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MachineMode {
    Up,
    Draining,
    Down,
}

/// Where an agent stands: on no scheduled machine, on a draining one (with its window's
/// unavailability), or on a machine that is down.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentMaintenance {
    Up,
    Draining(Unavailability),
    Down(MachineId),
}

/// What survives a master restart: the schedule and the machines that are DOWN.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Maintenance {
    pub schedule: Schedule,
    pub down: BTreeSet<MachineId>,
}

impl Maintenance {
    pub fn mode(&self, m: &MachineId) -> MachineMode {
        if self.down.contains(m) {
            MachineMode::Down
        } else if self.schedule.contains(m) {
            MachineMode::Draining
        } else {
            MachineMode::Up
        }
    }

    /// The machines in DRAINING mode, in schedule order.
    pub fn draining(&self) -> impl Iterator<Item = &MachineId> {
        self.schedule.machines().filter(|m| !self.down.contains(m))
    }

    /// UPDATE_MAINTENANCE_SCHEDULE: `schedule` replaces the current one. Refused when a
    /// window has no machine, a machine is in two windows, or a DOWN machine is left out.
    /// `field` is where the schedule sits in the request (errors name paths under it).
    pub fn update_schedule(&self, field: &str, schedule: Schedule) -> Result<Maintenance, Error> {
        let mut seen: Vec<(&MachineId, usize)> = Vec::new();
        for (i, w) in schedule.windows.iter().enumerate() {
            let wfield = at(field, &format!("windows[{i}]"));
            if w.machines.is_empty() {
                return Err(Error::invalid(
                    format!("{wfield}.machine_ids"),
                    "a window needs at least one machine; list the machines it takes down, or drop the window",
                ));
            }
            for (j, m) in w.machines.iter().enumerate() {
                if let Some((_, k)) = seen.iter().find(|(x, _)| *x == m) {
                    return Err(Error::invalid(
                        format!("{wfield}.machine_ids[{j}]"),
                        format!(
                            "machine '{m}' appears more than once in the schedule (already in windows[{k}]); a machine may be in one window only"
                        ),
                    ));
                }
                seen.push((m, i));
            }
        }
        if let Some(m) = self.down.iter().find(|m| !schedule.contains(m)) {
            return Err(Error::invalid(
                at(field, "windows"),
                format!(
                    "machine '{m}' is DOWN and cannot be removed from the schedule; bring it up first (STOP_MAINTENANCE, or POST /master/machine/up)"
                ),
            ));
        }
        Ok(Maintenance {
            schedule,
            down: self.down.clone(),
        })
    }

    /// START_MAINTENANCE: the machines go DOWN. Each must be in the schedule and DRAINING,
    /// listed once, and the list must not be empty.
    pub fn start(&self, field: &str, machines: &[MachineId]) -> Result<Maintenance, Error> {
        self.check_list(field, machines, MachineMode::Draining)?;
        let mut next = self.clone();
        next.down.extend(machines.iter().cloned());
        Ok(next)
    }

    /// STOP_MAINTENANCE: DOWN machines come back UP and leave the schedule (windows left
    /// empty are dropped). Each must be DOWN, listed once, and the list must not be empty.
    pub fn stop(&self, field: &str, machines: &[MachineId]) -> Result<Maintenance, Error> {
        self.check_list(field, machines, MachineMode::Down)?;
        let mut next = self.clone();
        for m in machines {
            next.down.remove(m);
        }
        for w in &mut next.schedule.windows {
            w.machines.retain(|m| !machines.contains(m));
        }
        next.schedule.windows.retain(|w| !w.machines.is_empty());
        Ok(next)
    }

    fn check_list(
        &self,
        field: &str,
        machines: &[MachineId],
        need: MachineMode,
    ) -> Result<(), Error> {
        if machines.is_empty() {
            return Err(Error::invalid(
                if field.is_empty() { "machines" } else { field },
                "the list of machines is empty; name at least one machine",
            ));
        }
        for (i, m) in machines.iter().enumerate() {
            let f = format!("{field}[{i}]");
            if machines[..i].contains(m) {
                return Err(Error::invalid(
                    f,
                    format!("machine '{m}' appears more than once; list each machine once"),
                ));
            }
            match (self.mode(m), need) {
                (MachineMode::Up, _) => {
                    return Err(Error::invalid(
                        f,
                        format!(
                            "machine '{m}' is not part of a maintenance schedule; add it to a window first (UPDATE_MAINTENANCE_SCHEDULE)"
                        ),
                    ));
                }
                (MachineMode::Down, MachineMode::Draining) => {
                    return Err(Error::invalid(
                        f,
                        format!(
                            "machine '{m}' is not in DRAINING mode and cannot be brought down: it is DOWN already"
                        ),
                    ));
                }
                (MachineMode::Draining, MachineMode::Down) => {
                    return Err(Error::invalid(
                        f,
                        format!(
                            "machine '{m}' is not in DOWN mode and cannot be brought up; start its maintenance first (START_MAINTENANCE), or drop it from the schedule"
                        ),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Where an agent reporting `hostname` and connecting from `ip` stands: DOWN when any
    /// machine covering it is down, else DRAINING with the first covering window's
    /// unavailability (schedule order), else UP.
    pub fn agent(&self, hostname: &str, ip: Option<IpAddr>) -> AgentMaintenance {
        if let Some(m) = self.down.iter().find(|m| m.covers(hostname, ip)) {
            return AgentMaintenance::Down(m.clone());
        }
        self.schedule
            .windows
            .iter()
            .find(|w| w.machines.iter().any(|m| m.covers(hostname, ip)))
            .map_or(AgentMaintenance::Up, |w| {
                AgentMaintenance::Draining(w.unavailability)
            })
    }
}

#[cfg(test)]
mod tests;

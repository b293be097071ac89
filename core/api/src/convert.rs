//! Conversions between `pb` messages and `tessera-types` records.
//!
//! `to_pb`-style functions cannot fail; `from_pb`-style functions validate everything and
//! return a [`WireError`] that names the field.

use std::collections::BTreeSet;
use std::sync::Arc;

use tessera_types::{
    AgentId, CommandInfo, ContainerInfo, ContainerKind, DockerInfo, DockerNetwork, ExecutorId,
    ExecutorInfo, FrameworkId, HealthCheck, HealthProbe, PersistentVolume, PortMapping, Ranges,
    Reason, Reservation, ReservationKind, Resource, ResourceKey, Resources, Role, Scalar,
    TaskGroup, TaskId, TaskInfo, TaskState, TaskStatus, UpdateSource, Uri, Value, Volume,
    VolumeMode,
};

use crate::pb;

/// A message from the wire failed validation. The peer is at fault; resending the same
/// message cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Invalid(#[from] tessera_types::Error),
    #[error("{0}: is required")]
    Missing(String),
}

impl From<WireError> for tonic::Status {
    fn from(e: WireError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, WireError>;

fn scalar_max_milli() -> u64 {
    tessera_types::scalar::MAX_UNITS * tessera_types::scalar::SCALE
}

fn volume_mode_to_pb(m: VolumeMode) -> pb::volume::Mode {
    match m {
        VolumeMode::Rw => pb::volume::Mode::Rw,
        VolumeMode::Ro => pb::volume::Mode::Ro,
    }
}

fn volume_mode_from_pb(field: &str, m: i32) -> Result<VolumeMode> {
    match pb::volume::Mode::try_from(m) {
        Ok(pb::volume::Mode::Rw) => Ok(VolumeMode::Rw),
        Ok(pb::volume::Mode::Ro) => Ok(VolumeMode::Ro),
        Err(_) => Err(tessera_types::Error::invalid(field, "must be RW or RO").into()),
    }
}

pub fn resources_to_pb(r: &Resources) -> Vec<pb::Resource> {
    r.iter()
        .map(|(k, v)| pb::Resource {
            name: k.name.to_string(),
            value: Some(match v {
                Value::Scalar(s) => pb::resource::Value::ScalarMilli(s.milli()),
                Value::Ranges(r) => pb::resource::Value::Ranges(pb::RangeList {
                    range: r
                        .iter()
                        .map(|(begin, end)| pb::Range { begin, end })
                        .collect(),
                }),
                Value::Set(s) => pb::resource::Value::Set(pb::StringSet {
                    item: s.iter().cloned().collect(),
                }),
            }),
            reservations: k
                .reservations
                .iter()
                .map(|r| pb::Reservation {
                    kind: match r.kind {
                        ReservationKind::Static => pb::reservation::Kind::Static as i32,
                        ReservationKind::Dynamic => pb::reservation::Kind::Dynamic as i32,
                    },
                    role: r.role.to_string(),
                    principal: r.principal.clone(),
                })
                .collect(),
            volume: k.volume.as_deref().map(|v| pb::PersistentVolume {
                id: v.id.clone(),
                principal: v.principal.clone(),
                container_path: v.container_path.clone(),
                mode: volume_mode_to_pb(v.mode) as i32,
            }),
        })
        .collect()
}

pub fn resources_from_pb(field: &str, rs: &[pb::Resource]) -> Result<Resources> {
    let mut out = Vec::with_capacity(rs.len());
    for (i, r) in rs.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let value = match &r.value {
            None => return Err(WireError::Missing(format!("{f}.value"))),
            Some(pb::resource::Value::ScalarMilli(m)) => {
                if *m > scalar_max_milli() {
                    return Err(tessera_types::Error::invalid(
                        format!("{f}.scalar_milli"),
                        "is larger than the maximum",
                    )
                    .into());
                }
                Value::Scalar(Scalar::from_milli(*m))
            }
            Some(pb::resource::Value::Ranges(list)) => Value::Ranges(Ranges::new(
                &format!("{f}.ranges"),
                list.range.iter().map(|r| (r.begin, r.end)),
            )?),
            Some(pb::resource::Value::Set(s)) => {
                Value::Set(s.item.iter().cloned().collect::<BTreeSet<_>>())
            }
        };
        let mut reservations = Vec::with_capacity(r.reservations.len());
        for (j, res) in r.reservations.iter().enumerate() {
            let rf = format!("{f}.reservations[{j}]");
            let kind = match pb::reservation::Kind::try_from(res.kind) {
                Ok(pb::reservation::Kind::Static) => ReservationKind::Static,
                Ok(pb::reservation::Kind::Dynamic) => ReservationKind::Dynamic,
                _ => {
                    return Err(tessera_types::Error::invalid(
                        format!("{rf}.kind"),
                        "must be STATIC or DYNAMIC",
                    )
                    .into());
                }
            };
            reservations.push(Reservation {
                kind,
                role: Role::with_field(&format!("{rf}.role"), res.role.clone())?,
                principal: res.principal.clone(),
            });
        }
        let mut key = ResourceKey::reserved(r.name.as_str(), reservations);
        if let Some(v) = &r.volume {
            key.volume = Some(Arc::new(PersistentVolume {
                id: v.id.clone(),
                principal: v.principal.clone(),
                container_path: v.container_path.clone(),
                mode: volume_mode_from_pb(&format!("{f}.volume.mode"), v.mode)?,
            }));
        }
        out.push(Resource { key, value });
    }
    Ok(Resources::from_resources(field, out)?)
}

pub fn command_to_pb(c: &CommandInfo) -> pb::CommandInfo {
    pb::CommandInfo {
        value: c.value.clone(),
        shell: c.shell,
        arguments: c.arguments.clone(),
        environment: c.environment.clone().into_iter().collect(),
        user: c.user.clone(),
        uris: c
            .uris
            .iter()
            .map(|u| pb::Uri {
                value: u.value.clone(),
                executable: u.executable,
                extract: u.extract,
                cache: u.cache,
                output_file: u.output_file.clone(),
            })
            .collect(),
    }
}

pub fn command_from_pb(c: &pb::CommandInfo) -> CommandInfo {
    CommandInfo {
        value: c.value.clone(),
        shell: c.shell,
        arguments: c.arguments.clone(),
        environment: c.environment.clone().into_iter().collect(),
        user: c.user.clone(),
        uris: c
            .uris
            .iter()
            .map(|u| Uri {
                value: u.value.clone(),
                executable: u.executable,
                extract: u.extract,
                cache: u.cache,
                output_file: u.output_file.clone(),
            })
            .collect(),
    }
}

pub fn container_to_pb(c: &ContainerInfo) -> pb::ContainerInfo {
    use pb::container_info::Kind;
    use pb::docker_info::Network;
    pb::ContainerInfo {
        kind: match c.kind {
            ContainerKind::Mesos => Kind::Mesos,
            ContainerKind::Docker => Kind::Docker,
        } as i32,
        docker: c.docker.as_ref().map(|d| pb::DockerInfo {
            image: d.image.clone(),
            network: match d.network {
                DockerNetwork::Host => Network::Host,
                DockerNetwork::Bridge => Network::Bridge,
                DockerNetwork::None => Network::None,
            } as i32,
            port_mappings: d
                .port_mappings
                .iter()
                .map(|m| pb::PortMapping {
                    host_port: m.host_port,
                    container_port: m.container_port,
                    protocol: m.protocol.clone(),
                })
                .collect(),
            privileged: d.privileged,
            parameters: d
                .parameters
                .iter()
                .map(|(key, value)| pb::Parameter {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            force_pull_image: d.force_pull_image,
        }),
        volumes: c
            .volumes
            .iter()
            .map(|v| pb::Volume {
                container_path: v.container_path.clone(),
                host_path: v.host_path.clone(),
                mode: volume_mode_to_pb(v.mode) as i32,
            })
            .collect(),
    }
}

/// Decodes a container; enum values this agent does not know are rejected with the field.
/// The result is checked against the task's resources by [`TaskInfo::validate`].
pub fn container_from_pb(field: &str, c: &pb::ContainerInfo) -> Result<ContainerInfo> {
    use pb::container_info::Kind;
    use pb::docker_info::Network;
    let bad = |f: &str, what: &str| -> WireError {
        tessera_types::Error::invalid(format!("{field}.{f}"), what.to_string()).into()
    };
    let kind = match Kind::try_from(c.kind) {
        Ok(Kind::Mesos) => ContainerKind::Mesos,
        Ok(Kind::Docker) => ContainerKind::Docker,
        Err(_) => return Err(bad("kind", "must be MESOS or DOCKER")),
    };
    let docker = match &c.docker {
        None => None,
        Some(d) => Some(DockerInfo {
            image: d.image.clone(),
            network: match Network::try_from(d.network) {
                Ok(Network::Host) => DockerNetwork::Host,
                Ok(Network::Bridge) => DockerNetwork::Bridge,
                Ok(Network::None) => DockerNetwork::None,
                Err(_) => return Err(bad("docker.network", "must be HOST, BRIDGE or NONE")),
            },
            port_mappings: d
                .port_mappings
                .iter()
                .map(|m| PortMapping {
                    host_port: m.host_port,
                    container_port: m.container_port,
                    protocol: m.protocol.clone(),
                })
                .collect(),
            privileged: d.privileged,
            parameters: d
                .parameters
                .iter()
                .map(|p| (p.key.clone(), p.value.clone()))
                .collect(),
            force_pull_image: d.force_pull_image,
        }),
    };
    let mut volumes = Vec::with_capacity(c.volumes.len());
    for (i, v) in c.volumes.iter().enumerate() {
        volumes.push(Volume {
            container_path: v.container_path.clone(),
            host_path: v.host_path.clone(),
            mode: volume_mode_from_pb(&format!("{field}.volumes[{i}].mode"), v.mode)?,
        });
    }
    Ok(ContainerInfo {
        kind,
        docker,
        volumes,
    })
}

pub fn task_to_pb(t: &TaskInfo) -> pb::TaskInfo {
    pb::TaskInfo {
        name: t.name.clone(),
        task_id: t.task_id.to_string(),
        agent_id: t.agent_id.to_string(),
        resources: resources_to_pb(&t.resources),
        command: Some(command_to_pb(&t.command)),
        executor_id: t.executor_id.as_ref().map(ToString::to_string),
        kill_grace_ms: t.kill_grace_ms,
        container: t.container.as_ref().map(container_to_pb),
        health_check: t.health_check.as_ref().map(health_check_to_pb),
        executor: t.executor.as_ref().map(executor_to_pb),
    }
}

pub fn health_check_to_pb(h: &HealthCheck) -> pb::HealthCheck {
    use pb::health_check::Probe;
    let probe = match &h.probe {
        HealthProbe::Command { command } => Probe::Command(command_to_pb(command)),
        HealthProbe::Http { port, path, scheme } => Probe::Http(pb::HttpCheck {
            port: *port,
            path: path.clone(),
            scheme: scheme.clone(),
        }),
        HealthProbe::Tcp { port } => Probe::Tcp(pb::TcpCheck { port: *port }),
    };
    pb::HealthCheck {
        probe: Some(probe),
        delay_ms: h.delay_ms,
        interval_ms: h.interval_ms,
        timeout_ms: h.timeout_ms,
        grace_period_ms: h.grace_period_ms,
        consecutive_failures: h.consecutive_failures,
    }
}

/// Decodes a health check; validation happens with the task's ([`TaskInfo::validate`]).
pub fn health_check_from_pb(field: &str, h: &pb::HealthCheck) -> Result<HealthCheck> {
    use pb::health_check::Probe;
    let probe = match &h.probe {
        None => return Err(WireError::Missing(format!("{field}.probe"))),
        Some(Probe::Command(c)) => HealthProbe::Command {
            command: command_from_pb(c),
        },
        Some(Probe::Http(x)) => HealthProbe::Http {
            port: x.port,
            path: x.path.clone(),
            scheme: x.scheme.clone(),
        },
        Some(Probe::Tcp(x)) => HealthProbe::Tcp { port: x.port },
    };
    Ok(HealthCheck {
        probe,
        delay_ms: h.delay_ms,
        interval_ms: h.interval_ms,
        timeout_ms: h.timeout_ms,
        grace_period_ms: h.grace_period_ms,
        consecutive_failures: h.consecutive_failures,
    })
}

pub fn task_from_pb(field: &str, t: &pb::TaskInfo) -> Result<TaskInfo> {
    let command = t
        .command
        .as_ref()
        .ok_or_else(|| WireError::Missing(format!("{field}.command")))?;
    let task = TaskInfo {
        name: t.name.clone(),
        task_id: TaskId::new(t.task_id.clone()).map_err(|e| prefix(field, e))?,
        agent_id: AgentId::new(t.agent_id.clone()).map_err(|e| prefix(field, e))?,
        resources: resources_from_pb(&format!("{field}.resources"), &t.resources)?,
        command: command_from_pb(command),
        executor_id: t
            .executor_id
            .clone()
            .map(ExecutorId::new)
            .transpose()
            .map_err(|e| prefix(field, e))?,
        kill_grace_ms: t.kill_grace_ms,
        container: t
            .container
            .as_ref()
            .map(|c| container_from_pb(&format!("{field}.container"), c))
            .transpose()?,
        health_check: t
            .health_check
            .as_ref()
            .map(|h| health_check_from_pb(&format!("{field}.health_check"), h))
            .transpose()?,
        executor: t
            .executor
            .as_ref()
            .map(|e| executor_from_pb(&format!("{field}.executor"), e))
            .transpose()?,
    };
    task.validate(field)?;
    Ok(task)
}

pub fn executor_to_pb(e: &ExecutorInfo) -> pb::ExecutorInfo {
    pb::ExecutorInfo {
        executor_id: e.executor_id.to_string(),
        framework_id: e.framework_id.as_ref().map(ToString::to_string),
        name: e.name.clone(),
        resources: resources_to_pb(&e.resources),
        command: e.command.as_ref().map(command_to_pb),
    }
}

/// Decodes and validates an executor, default or custom ([`ExecutorInfo::validate`]).
pub fn executor_from_pb(field: &str, e: &pb::ExecutorInfo) -> Result<ExecutorInfo> {
    let out = ExecutorInfo {
        executor_id: ExecutorId::new(e.executor_id.clone()).map_err(|x| prefix(field, x))?,
        framework_id: e
            .framework_id
            .clone()
            .map(FrameworkId::new)
            .transpose()
            .map_err(|x| prefix(field, x))?,
        name: e.name.clone(),
        resources: resources_from_pb(&format!("{field}.resources"), &e.resources)?,
        command: e.command.as_ref().map(command_from_pb),
    };
    out.validate(field)?;
    Ok(out)
}

/// Decodes a task group (`RunTaskGroup`'s executor and tasks) and validates it as a whole
/// ([`TaskGroup::validate`]); errors name `field.executor…` / `field.tasks[i]…`.
pub fn task_group_from_pb(
    field: &str,
    executor: Option<&pb::ExecutorInfo>,
    tasks: &[pb::TaskInfo],
) -> Result<TaskGroup> {
    let executor = executor.ok_or_else(|| WireError::Missing(format!("{field}.executor")))?;
    let executor = executor_from_pb(&format!("{field}.executor"), executor)?;
    let tasks = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| task_from_pb(&format!("{field}.tasks[{i}]"), t))
        .collect::<Result<Vec<_>>>()?;
    let group = TaskGroup { executor, tasks };
    group.validate(field)?;
    Ok(group)
}

fn prefix(field: &str, e: tessera_types::Error) -> tessera_types::Error {
    match e {
        tessera_types::Error::Invalid { field: f, reason } => tessera_types::Error::Invalid {
            field: format!("{field}.{f}"),
            reason,
        },
        other => other,
    }
}

pub fn status_to_pb(s: &TaskStatus) -> pb::TaskStatus {
    pb::TaskStatus {
        task_id: s.task_id.to_string(),
        state: s.state.as_i32(),
        reason: s.reason.map(Reason::as_i32),
        message: s.message.clone(),
        source: s.source as i32,
        uuid: s.uuid.clone(),
        timestamp: s.timestamp,
        exit_code: s.exit_code,
        healthy: s.healthy,
    }
}

pub fn status_from_pb(
    field: &str,
    s: &pb::TaskStatus,
    agent_id: &AgentId,
    framework_id: &FrameworkId,
) -> Result<TaskStatus> {
    let state = TaskState::from_i32(s.state).ok_or_else(|| {
        tessera_types::Error::invalid(
            format!("{field}.state"),
            format!("{} is not a TaskState", s.state),
        )
    })?;
    let reason = match s.reason {
        None => None,
        Some(r) => Some(Reason::from_i32(r).ok_or_else(|| {
            tessera_types::Error::invalid(
                format!("{field}.reason"),
                format!("{r} is not a known reason"),
            )
        })?),
    };
    let source = match s.source {
        0 => UpdateSource::SourceMaster,
        1 => UpdateSource::SourceAgent,
        2 => UpdateSource::SourceExecutor,
        o => {
            return Err(tessera_types::Error::invalid(
                format!("{field}.source"),
                format!("{o} is not a status source"),
            )
            .into());
        }
    };
    if !s.timestamp.is_finite() {
        return Err(
            tessera_types::Error::invalid(format!("{field}.timestamp"), "is not finite").into(),
        );
    }
    Ok(TaskStatus {
        task_id: TaskId::new(s.task_id.clone()).map_err(|e| prefix(field, e))?,
        state,
        reason,
        message: s.message.clone(),
        source,
        agent_id: Some(agent_id.clone()),
        framework_id: Some(framework_id.clone()),
        uuid: s.uuid.clone(),
        timestamp: s.timestamp,
        exit_code: s.exit_code,
        healthy: s.healthy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_types::parse::parse_resources;

    #[test]
    fn resources_round_trip() {
        let r = parse_resources("cpus:2.5;mem(eng/ml):512;ports:[1-5,9-9];zones:{a,b}").unwrap();
        assert_eq!(resources_from_pb("r", &resources_to_pb(&r)).unwrap(), r);
    }

    #[test]
    fn volumes_round_trip_and_bad_modes_are_refused() {
        let r = tessera_types::parse::parse_json_resources(
            "r",
            &serde_json::json!([{"name": "disk", "type": "SCALAR", "scalar": {"value": 64},
                "reservations": [{"type": "DYNAMIC", "role": "eng", "principal": "p"}],
                "disk": {"persistence": {"id": "v1"},
                         "volume": {"container_path": "data", "mode": "RO"}}}]),
        )
        .unwrap();
        let mut wire = resources_to_pb(&r);
        assert_eq!(resources_from_pb("r", &wire).unwrap(), r);
        if let Some(v) = wire[0].volume.as_mut() {
            v.mode = 9;
        }
        let e = resources_from_pb("r", &wire).unwrap_err();
        assert!(e.to_string().starts_with("r[0].volume.mode"), "{e}");
        if let Some(v) = wire[0].volume.as_mut() {
            v.mode = 0;
            v.container_path = "../../etc".into();
        }
        let e = resources_from_pb("r", &wire).unwrap_err();
        assert!(e.to_string().contains("container_path"), "{e}");
    }

    #[test]
    fn hostile_resources_are_rejected_with_the_field() {
        let bad = vec![pb::Resource {
            name: "cpus".into(),
            value: Some(pb::resource::Value::ScalarMilli(u64::MAX)),
            reservations: vec![],
            volume: None,
        }];
        let e = resources_from_pb("info.resources", &bad).unwrap_err();
        assert!(
            e.to_string().contains("info.resources[0].scalar_milli"),
            "{e}"
        );
        let bad = vec![pb::Resource {
            name: "cpus".into(),
            value: None,
            reservations: vec![],
            volume: None,
        }];
        assert!(
            resources_from_pb("r", &bad)
                .unwrap_err()
                .to_string()
                .contains("r[0].value")
        );
        let bad = vec![pb::Resource {
            name: "bad name".into(),
            value: Some(pb::resource::Value::ScalarMilli(1)),
            reservations: vec![],
            volume: None,
        }];
        assert!(resources_from_pb("r", &bad).is_err());
    }

    #[test]
    fn status_rejects_unknown_state() {
        let s = pb::TaskStatus {
            task_id: "t".into(),
            state: 99,
            ..Default::default()
        };
        let a = AgentId::new("a").unwrap();
        let f = FrameworkId::new("f").unwrap();
        let e = status_from_pb("status", &s, &a, &f).unwrap_err();
        assert!(e.to_string().contains("status.state"), "{e}");
    }
}

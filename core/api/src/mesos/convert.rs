//! Conversions between Mesos v1 prost types and `tessera-types` records.
//!
//! `*_to_v1` functions cannot fail; `*_from_v1` functions validate everything and return a
//! [`WireError`] naming the field (the caller passes the path prefix, e.g.
//! `accept.operations[0].launch.task_infos[1]`).
//!
//! The deprecated `role` fields are read and written on purpose (pre-refinement clients).
#![allow(deprecated)]

use std::collections::BTreeSet;

use tessera_types::{
    AgentId, Capability, CommandInfo, ContainerInfo, ContainerKind, DockerInfo, DockerNetwork,
    ExecutorId, Filters, FrameworkId, FrameworkInfo, PortMapping, Ranges, Reservation,
    ReservationKind, Resource, ResourceKey, Resources, Role, Scalar, TaskId, TaskInfo, TaskStatus,
    Uri, Value, Volume, VolumeMode,
};

pub use super::group::{
    custom_executor_from_v1, executor_info_from_v1, executor_info_to_v1, launch_group_to_v1,
    task_group_from_v1, task_info_to_v1,
};
pub use super::health::{command_info_to_v1, health_check_from_v1, health_check_to_v1};
use super::v1;
use crate::convert::{Result, WireError};

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> WireError {
    tessera_types::Error::invalid(field, reason).into()
}

/// Re-roots a `tessera_types` error about `task_id` etc. under `field`.
fn under(field: &str, e: tessera_types::Error) -> WireError {
    match e {
        tessera_types::Error::Invalid { field: f, reason } => tessera_types::Error::Invalid {
            field: format!("{field}.{f}"),
            reason,
        }
        .into(),
        other => other.into(),
    }
}

// ---------------------------------------------------------------------------------------
// Resources

fn reservation_from_v1(field: &str, r: &v1::resource::ReservationInfo) -> Result<Reservation> {
    use v1::resource::reservation_info::Type;
    let kind = match r.r#type.map(Type::try_from) {
        None => ReservationKind::Dynamic,
        Some(Ok(Type::Static)) => ReservationKind::Static,
        Some(Ok(Type::Dynamic)) => ReservationKind::Dynamic,
        Some(_) => {
            return Err(invalid(
                format!("{field}.type"),
                "must be STATIC or DYNAMIC",
            ));
        }
    };
    let role = r
        .role
        .as_deref()
        .ok_or_else(|| WireError::Missing(format!("{field}.role")))?;
    Ok(Reservation {
        kind,
        role: Role::with_field(&format!("{field}.role"), role)?,
        principal: r.principal.clone(),
    })
}

fn resource_from_v1(f: &str, r: &v1::Resource) -> Result<Resource> {
    use v1::value::Type;
    if r.provider_id.is_some() {
        return Err(invalid(
            format!("{f}.provider_id"),
            "resource providers are not supported",
        ));
    }
    if r.revocable.is_some() {
        return Err(invalid(
            format!("{f}.revocable"),
            "revocable resources are not supported",
        ));
    }
    if r.shared.is_some() {
        return Err(invalid(
            format!("{f}.shared"),
            "shared resources are not supported",
        ));
    }
    let value = match Type::try_from(r.r#type) {
        Ok(Type::Scalar) => {
            let s = r
                .scalar
                .as_ref()
                .ok_or_else(|| WireError::Missing(format!("{f}.scalar")))?;
            Value::Scalar(Scalar::from_f64(&format!("{f}.scalar.value"), s.value)?)
        }
        Ok(Type::Ranges) => {
            let list = r
                .ranges
                .as_ref()
                .ok_or_else(|| WireError::Missing(format!("{f}.ranges")))?;
            Value::Ranges(Ranges::new(
                &format!("{f}.ranges"),
                list.range.iter().map(|x| (x.begin, x.end)),
            )?)
        }
        Ok(Type::Set) => {
            let set = r
                .set
                .as_ref()
                .ok_or_else(|| WireError::Missing(format!("{f}.set")))?;
            Value::Set(set.item.iter().cloned().collect::<BTreeSet<_>>())
        }
        Ok(Type::Text) => {
            return Err(invalid(
                format!("{f}.type"),
                "TEXT is not a resource type (only attributes are TEXT)",
            ));
        }
        Err(_) => {
            return Err(invalid(
                format!("{f}.type"),
                format!("{} is not SCALAR, RANGES or SET", r.r#type),
            ));
        }
    };
    let reservations = if !r.reservations.is_empty() {
        r.reservations
            .iter()
            .enumerate()
            .map(|(j, res)| reservation_from_v1(&format!("{f}.reservations[{j}]"), res))
            .collect::<Result<Vec<_>>>()?
    } else {
        // The pre-refinement form: `role` (static unless `reservation` is set).
        let role = Role::with_field(&format!("{f}.role"), r.role.as_deref().unwrap_or("*"))?;
        if role.is_any() {
            Vec::new()
        } else {
            let (kind, principal) = match &r.reservation {
                Some(res) => (ReservationKind::Dynamic, res.principal.clone()),
                None => (ReservationKind::Static, None),
            };
            vec![Reservation {
                kind,
                role,
                principal,
            }]
        }
    };
    let mut key = ResourceKey::reserved(r.name.as_str(), reservations);
    key.volume = super::disk::disk_from_v1(f, r.disk.as_ref())?;
    Ok(Resource { key, value })
}

/// Validates v1 resources (legacy `role`/`reservation` and the `reservations` stack are both
/// understood; `allocation_info` is ignored; a `disk` may carry a persistent volume; disk
/// sources, revocable, shared and provider resources are rejected). Errors name `field[i]…`.
pub fn resources_from_v1(field: &str, rs: &[v1::Resource]) -> Result<Resources> {
    let out = rs
        .iter()
        .enumerate()
        .map(|(i, r)| resource_from_v1(&format!("{field}[{i}]"), r))
        .collect::<Result<Vec<_>>>()?;
    Ok(Resources::from_resources(field, out)?)
}

/// v1 resources with the `reservations` stack, plus the legacy `role` (`"*"` when
/// unreserved; the reservation role for single-level reservations, with `reservation` for a
/// dynamic one). `allocation_role` sets `allocation_info.role` on each resource.
pub fn resources_to_v1(r: &Resources, allocation_role: Option<&Role>) -> Vec<v1::Resource> {
    use v1::resource::reservation_info::Type as RType;
    r.iter()
        .map(|(k, v)| {
            let mut out = v1::Resource {
                name: k.name.to_string(),
                allocation_info: allocation_role.map(|role| v1::resource::AllocationInfo {
                    role: Some(role.to_string()),
                }),
                ..Default::default()
            };
            match v {
                Value::Scalar(s) => {
                    out.r#type = v1::value::Type::Scalar as i32;
                    out.scalar = Some(v1::value::Scalar { value: s.as_f64() });
                }
                Value::Ranges(rs) => {
                    out.r#type = v1::value::Type::Ranges as i32;
                    out.ranges = Some(v1::value::Ranges {
                        range: rs
                            .iter()
                            .map(|(begin, end)| v1::value::Range { begin, end })
                            .collect(),
                    });
                }
                Value::Set(s) => {
                    out.r#type = v1::value::Type::Set as i32;
                    out.set = Some(v1::value::Set {
                        item: s.iter().cloned().collect(),
                    });
                }
            }
            out.reservations = k
                .reservations
                .iter()
                .map(|res| v1::resource::ReservationInfo {
                    r#type: Some(match res.kind {
                        ReservationKind::Static => RType::Static as i32,
                        ReservationKind::Dynamic => RType::Dynamic as i32,
                    }),
                    role: Some(res.role.to_string()),
                    principal: res.principal.clone(),
                    labels: None,
                })
                .collect();
            match k.reservations.as_slice() {
                [] => out.role = Some("*".to_string()),
                [only] => {
                    out.role = Some(only.role.to_string());
                    if only.kind == ReservationKind::Dynamic {
                        out.reservation = Some(v1::resource::ReservationInfo {
                            principal: only.principal.clone(),
                            ..Default::default()
                        });
                    }
                }
                _ => {}
            }
            out.disk = k.volume.as_deref().map(super::disk::disk_to_v1);
            out
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// FrameworkInfo

fn capability_from_v1(t: v1::framework_info::capability::Type) -> Option<Capability> {
    use v1::framework_info::capability::Type as T;
    Some(match t {
        T::Unknown => return None,
        T::RevocableResources => Capability::RevocableResources,
        T::TaskKillingState => Capability::TaskKillingState,
        T::GpuResources => Capability::GpuResources,
        T::SharedResources => Capability::SharedResources,
        T::PartitionAware => Capability::PartitionAware,
        T::MultiRole => Capability::MultiRole,
        T::ReservationRefinement => Capability::ReservationRefinement,
        T::RegionAware => Capability::RegionAware,
    })
}

fn capability_to_v1(c: Capability) -> v1::framework_info::capability::Type {
    use v1::framework_info::capability::Type as T;
    match c {
        Capability::RevocableResources => T::RevocableResources,
        Capability::TaskKillingState => T::TaskKillingState,
        Capability::GpuResources => T::GpuResources,
        Capability::SharedResources => T::SharedResources,
        Capability::PartitionAware => T::PartitionAware,
        Capability::MultiRole => T::MultiRole,
        Capability::ReservationRefinement => T::ReservationRefinement,
        Capability::RegionAware => T::RegionAware,
    }
}

/// Validates a v1 `FrameworkInfo`. Roles come from `roles` with `MULTI_ROLE` (then `role`
/// must be absent), else from `role` (default `"*"`; then `roles` must be empty). Unknown
/// capabilities are ignored (duplicates collapse). Errors name `framework_info.*`.
pub fn framework_info_from_v1(fi: &v1::FrameworkInfo) -> Result<FrameworkInfo> {
    let mut capabilities = Vec::new();
    for c in &fi.capabilities {
        let known = c
            .r#type
            .and_then(|t| v1::framework_info::capability::Type::try_from(t).ok())
            .and_then(capability_from_v1);
        if let Some(cap) = known
            && !capabilities.contains(&cap)
        {
            capabilities.push(cap);
        }
    }
    let roles = if capabilities.contains(&Capability::MultiRole) {
        if fi.role.is_some() {
            return Err(invalid(
                "framework_info.role",
                "must not be set together with 'roles' (MULTI_ROLE framework)",
            ));
        }
        fi.roles
            .iter()
            .enumerate()
            .map(|(i, r)| Role::with_field(&format!("framework_info.roles[{i}]"), r.as_str()))
            .collect::<tessera_types::Result<Vec<_>>>()?
    } else {
        if !fi.roles.is_empty() {
            return Err(invalid(
                "framework_info.roles",
                "needs the MULTI_ROLE capability (use 'role' otherwise)",
            ));
        }
        vec![Role::with_field(
            "framework_info.role",
            fi.role.as_deref().unwrap_or("*"),
        )?]
    };
    let id = match &fi.id {
        None => None,
        Some(id) => {
            Some(FrameworkId::new(id.value.clone()).map_err(|e| under("framework_info.id", e))?)
        }
    };
    let out = FrameworkInfo {
        id,
        name: fi.name.clone(),
        user: fi.user.clone(),
        roles,
        capabilities,
        failover_timeout_secs: fi.failover_timeout.unwrap_or(0.0),
        principal: fi.principal.clone(),
        hostname: fi.hostname.clone(),
    };
    out.validate()?;
    Ok(out)
}

/// The v1 form: `roles` for MULTI_ROLE frameworks, else the single `role`.
pub fn framework_info_to_v1(fi: &FrameworkInfo) -> v1::FrameworkInfo {
    let multi = fi.has(Capability::MultiRole);
    v1::FrameworkInfo {
        user: fi.user.clone(),
        name: fi.name.clone(),
        id: fi.id.as_ref().map(|id| v1::FrameworkId {
            value: id.to_string(),
        }),
        failover_timeout: Some(fi.failover_timeout_secs),
        role: if multi {
            None
        } else {
            fi.roles.first().map(ToString::to_string)
        },
        roles: if multi {
            fi.roles.iter().map(ToString::to_string).collect()
        } else {
            Vec::new()
        },
        hostname: fi.hostname.clone(),
        principal: fi.principal.clone(),
        capabilities: fi
            .capabilities
            .iter()
            .map(|c| v1::framework_info::Capability {
                r#type: Some(capability_to_v1(*c) as i32),
            })
            .collect(),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------
// TaskInfo

pub(crate) fn command_from_v1(field: &str, c: &v1::CommandInfo) -> Result<CommandInfo> {
    let mut uris = Vec::with_capacity(c.uris.len());
    for (i, u) in c.uris.iter().enumerate() {
        let uri = Uri {
            value: u.value.clone(),
            executable: u.executable.unwrap_or(false),
            extract: u.extract.unwrap_or(true),
            cache: u.cache.unwrap_or(false),
            output_file: u.output_file.clone(),
        };
        uri.validate(&format!("{field}.uris[{i}]"))?;
        uris.push(uri);
    }
    let mut environment = std::collections::BTreeMap::new();
    if let Some(env) = &c.environment {
        for (i, v) in env.variables.iter().enumerate() {
            let vf = format!("{field}.environment.variables[{i}]");
            use v1::environment::variable::Type;
            match v.r#type.map(Type::try_from) {
                None | Some(Ok(Type::Value)) => {}
                Some(Ok(Type::Secret)) => {
                    return Err(invalid(format!("{vf}.type"), "secrets are not supported"));
                }
                Some(_) => return Err(invalid(format!("{vf}.type"), "must be VALUE")),
            }
            if v.name.is_empty() {
                return Err(invalid(format!("{vf}.name"), "must not be empty"));
            }
            environment.insert(v.name.clone(), v.value.clone().unwrap_or_default());
        }
    }
    Ok(CommandInfo {
        value: c.value.clone().unwrap_or_default(),
        shell: c.shell.unwrap_or(true),
        arguments: c.arguments.clone(),
        environment,
        user: c.user.clone(),
        uris,
    })
}

/// A v1 `ContainerInfo`: type `MESOS` (no image) or `DOCKER`, with host-path volumes. MESOS
/// images, `USER` networks and volumes without a host path are rejected with the field.
/// Checks against the task's resources happen in [`TaskInfo::validate`].
pub fn container_info_from_v1(field: &str, c: &v1::ContainerInfo) -> Result<ContainerInfo> {
    use v1::container_info::Type;
    use v1::container_info::docker_info::Network;
    let kind = match Type::try_from(c.r#type) {
        Ok(Type::Mesos) => ContainerKind::Mesos,
        Ok(Type::Docker) => ContainerKind::Docker,
        Err(_) => return Err(invalid(format!("{field}.type"), "must be MESOS or DOCKER")),
    };
    if c.mesos.as_ref().is_some_and(|m| m.image.is_some()) {
        return Err(invalid(
            format!("{field}.mesos.image"),
            "container images for the MESOS containerizer are not supported; use type DOCKER",
        ));
    }
    let docker = match &c.docker {
        None => None,
        Some(d) => {
            let network = match d.network.map(Network::try_from) {
                None | Some(Ok(Network::Host)) => DockerNetwork::Host,
                Some(Ok(Network::Bridge)) => DockerNetwork::Bridge,
                Some(Ok(Network::None)) => DockerNetwork::None,
                Some(_) => {
                    return Err(invalid(
                        format!("{field}.docker.network"),
                        "must be HOST, BRIDGE or NONE (USER networks are not supported)",
                    ));
                }
            };
            Some(DockerInfo {
                image: d.image.clone(),
                network,
                port_mappings: d
                    .port_mappings
                    .iter()
                    .map(|m| PortMapping {
                        host_port: m.host_port,
                        container_port: m.container_port,
                        protocol: m.protocol.clone(),
                    })
                    .collect(),
                privileged: d.privileged.unwrap_or(false),
                parameters: d
                    .parameters
                    .iter()
                    .map(|p| (p.key.clone(), p.value.clone()))
                    .collect(),
                force_pull_image: d.force_pull_image.unwrap_or(false),
            })
        }
    };
    let mut volumes = Vec::with_capacity(c.volumes.len());
    for (i, v) in c.volumes.iter().enumerate() {
        let vf = format!("{field}.volumes[{i}]");
        let Some(host_path) = v.host_path.clone() else {
            return Err(invalid(
                format!("{vf}.host_path"),
                "is required (image, Docker and CSI volumes are not supported)",
            ));
        };
        let mode = match v1::volume::Mode::try_from(v.mode) {
            Ok(v1::volume::Mode::Rw) => VolumeMode::Rw,
            Ok(v1::volume::Mode::Ro) => VolumeMode::Ro,
            Err(_) => return Err(invalid(format!("{vf}.mode"), "must be RW or RO")),
        };
        volumes.push(Volume {
            container_path: v.container_path.clone(),
            host_path,
            mode,
        });
    }
    Ok(ContainerInfo {
        kind,
        docker,
        volumes,
    })
}

/// The v1 form of a container, for frameworks that send [`TaskInfo`]s.
pub fn container_info_to_v1(c: &ContainerInfo) -> v1::ContainerInfo {
    use v1::container_info::Type;
    use v1::container_info::docker_info::Network;
    v1::ContainerInfo {
        r#type: match c.kind {
            ContainerKind::Mesos => Type::Mesos,
            ContainerKind::Docker => Type::Docker,
        } as i32,
        docker: c.docker.as_ref().map(|d| v1::container_info::DockerInfo {
            image: d.image.clone(),
            network: Some(match d.network {
                DockerNetwork::Host => Network::Host,
                DockerNetwork::Bridge => Network::Bridge,
                DockerNetwork::None => Network::None,
            } as i32),
            port_mappings: d
                .port_mappings
                .iter()
                .map(|m| v1::container_info::docker_info::PortMapping {
                    host_port: m.host_port,
                    container_port: m.container_port,
                    protocol: m.protocol.clone(),
                })
                .collect(),
            privileged: Some(d.privileged),
            parameters: d
                .parameters
                .iter()
                .map(|(key, value)| v1::Parameter {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            force_pull_image: Some(d.force_pull_image),
            ..Default::default()
        }),
        volumes: c
            .volumes
            .iter()
            .map(|v| v1::Volume {
                mode: match v.mode {
                    VolumeMode::Rw => v1::volume::Mode::Rw,
                    VolumeMode::Ro => v1::volume::Mode::Ro,
                } as i32,
                container_path: v.container_path.clone(),
                host_path: Some(v.host_path.clone()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Validates a v1 `TaskInfo`: a command task, or a task of a custom executor (`executor`
/// of type CUSTOM with a command, see [`super::group::custom_executor_from_v1`]; then the
/// task has no `command`). Secrets and container images are rejected with an error naming
/// the field.
pub fn task_info_from_v1(field: &str, t: &v1::TaskInfo) -> Result<TaskInfo> {
    let executor = match &t.executor {
        None => None,
        Some(_) if t.command.is_some() => {
            return Err(invalid(
                format!("{field}.executor"),
                "a task has either a command or an executor, not both",
            ));
        }
        Some(e) => Some(super::group::custom_executor_from_v1(
            &format!("{field}.executor"),
            e,
        )?),
    };
    let command = match (&t.command, &executor) {
        (Some(c), _) => command_from_v1(&format!("{field}.command"), c)?,
        (None, Some(_)) => CommandInfo::default(),
        (None, None) => return Err(WireError::Missing(format!("{field}.command"))),
    };
    let container = t
        .container
        .as_ref()
        .map(|c| container_info_from_v1(&format!("{field}.container"), c))
        .transpose()?;
    let kill_grace_ms = match t.kill_policy.as_ref().and_then(|k| k.grace_period.as_ref()) {
        None => None,
        Some(d) if d.nanoseconds < 0 => {
            return Err(invalid(
                format!("{field}.kill_policy.grace_period.nanoseconds"),
                "must not be negative",
            ));
        }
        Some(d) => Some(d.nanoseconds as u64 / 1_000_000),
    };
    let task = TaskInfo {
        name: t.name.clone(),
        task_id: TaskId::new(t.task_id.value.clone()).map_err(|e| under(field, e))?,
        agent_id: AgentId::new(t.agent_id.value.clone()).map_err(|e| under(field, e))?,
        resources: resources_from_v1(&format!("{field}.resources"), &t.resources)?,
        command,
        executor_id: executor.as_ref().map(|e| e.executor_id.clone()),
        kill_grace_ms,
        container,
        health_check: t
            .health_check
            .as_ref()
            .map(|h| health_check_from_v1(&format!("{field}.health_check"), h))
            .transpose()?,
        executor,
    };
    task.validate(field)?;
    Ok(task)
}

// ---------------------------------------------------------------------------------------
// TaskStatus, acknowledgements, filters

/// The v1 status as sent in an `UPDATE` event. `executor_id` is the task id (command
/// tasks); `uuid` (a UUID string) becomes its 16 raw bytes; a `uuid` that is not a UUID is
/// sent as its UTF-8 bytes (it cannot be acknowledged through [`uuid_from_v1`] then).
pub fn task_status_to_v1(s: &TaskStatus) -> v1::TaskStatus {
    task_status_to_v1_in(s, None)
}

/// [`task_status_to_v1`] for a task run by `executor` (a task of a group, run by its
/// default executor); `None` means the task's own command executor (id = task id).
pub fn task_status_to_v1_in(s: &TaskStatus, executor: Option<&ExecutorId>) -> v1::TaskStatus {
    v1::TaskStatus {
        task_id: v1::TaskId {
            value: s.task_id.to_string(),
        },
        state: s.state.as_i32(),
        message: s.message.clone(),
        source: Some(s.source as i32),
        reason: s.reason.map(|r| r.as_i32()),
        agent_id: s.agent_id.as_ref().map(|a| v1::AgentId {
            value: a.to_string(),
        }),
        executor_id: Some(v1::ExecutorId {
            value: executor.map_or_else(|| s.task_id.to_string(), ToString::to_string),
        }),
        timestamp: Some(s.timestamp),
        uuid: s.uuid.as_ref().map(|u| match uuid::Uuid::parse_str(u) {
            Ok(id) => id.as_bytes().to_vec(),
            Err(_) => u.as_bytes().to_vec(),
        }),
        healthy: s.healthy,
        ..Default::default()
    }
}

/// 16 raw bytes (ACKNOWLEDGE's `uuid`) → the hyphenated UUID string Tessera uses.
pub fn uuid_from_v1(bytes: &[u8]) -> Result<String> {
    uuid::Uuid::from_slice(bytes)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| {
            invalid(
                "acknowledge.uuid",
                format!("must be 16 bytes (a UUID), got {} bytes", bytes.len()),
            )
        })
}

/// Offer filters; absent filters (or an absent `refuse_seconds`) mean the Mesos default
/// of 5 s. Out-of-range values are interpreted by [`Filters::refuse_for`].
pub fn filters_from_v1(f: Option<&v1::Filters>) -> Filters {
    match f.and_then(|f| f.refuse_seconds) {
        Some(refuse_seconds) => Filters { refuse_seconds },
        None => Filters::default(),
    }
}

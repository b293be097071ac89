//! What a task runs in ([`ContainerInfo`], Mesos `ContainerInfo`): the agent's own
//! containerizer (`MESOS`) or a Docker container (`DOCKER`), with volumes and, for Docker,
//! the image, network mode and port mappings.
//!
//! Validation here is what the master checks before a task reaches an agent: a Docker task
//! names an image, its host ports lie inside the task's `ports` resources, container paths
//! are absolute.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::resources::Resources;

/// Which containerizer runs the task (Mesos `ContainerInfo.Type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContainerKind {
    /// The agent's own containerizer (processes, cgroups).
    #[default]
    Mesos,
    /// The machine's Docker engine.
    Docker,
}

/// Docker network mode (Mesos `DockerInfo.Network`; Mesos' default is `HOST`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DockerNetwork {
    #[default]
    Host,
    Bridge,
    None,
}

/// A published port: `host_port` on the agent forwards to `container_port` (bridge mode).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_port: u32,
    pub container_port: u32,
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub protocol: Option<String>,
}

/// Docker-specific settings (Mesos `ContainerInfo.DockerInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerInfo {
    /// Image reference as `docker run` takes it, e.g. `busybox:latest`.
    pub image: String,
    #[serde(default)]
    pub network: DockerNetwork,
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default)]
    pub privileged: bool,
    /// Extra `docker run` options as (key, value); the agent supports a documented subset.
    #[serde(default)]
    pub parameters: Vec<(String, String)>,
    /// Pull the image even when it is present locally.
    #[serde(default)]
    pub force_pull_image: bool,
}

/// Access mode of a volume.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VolumeMode {
    #[default]
    Rw,
    Ro,
}

/// A host directory made visible inside the container (Mesos `Volume` with `host_path`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Absolute path inside the container.
    pub container_path: String,
    /// Absolute host path, or a path relative to the task's sandbox (Mesos semantics).
    pub host_path: String,
    #[serde(default)]
    pub mode: VolumeMode,
}

/// What a task runs in (Mesos `ContainerInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub kind: ContainerKind,
    #[serde(default)]
    pub docker: Option<DockerInfo>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
}

impl ContainerInfo {
    /// A Docker container running `image` with the defaults (host network, no volumes).
    pub fn docker(image: impl Into<String>) -> Self {
        ContainerInfo {
            kind: ContainerKind::Docker,
            docker: Some(DockerInfo {
                image: image.into(),
                ..Default::default()
            }),
            volumes: Vec::new(),
        }
    }

    pub fn is_docker(&self) -> bool {
        self.kind == ContainerKind::Docker
    }

    /// Checks the container against the task's `resources`; `field` names the container
    /// (e.g. `task.container`).
    pub fn validate(&self, field: &str, resources: &Resources) -> Result<()> {
        match (self.kind, &self.docker) {
            (ContainerKind::Docker, None) => {
                return Err(Error::invalid(
                    format!("{field}.docker"),
                    "is required when type is DOCKER",
                ));
            }
            (ContainerKind::Docker, Some(d)) if d.image.trim().is_empty() => {
                return Err(Error::invalid(
                    format!("{field}.docker.image"),
                    "is empty; name the image to run",
                ));
            }
            (ContainerKind::Mesos, Some(_)) => {
                return Err(Error::invalid(
                    format!("{field}.docker"),
                    "is only allowed when type is DOCKER",
                ));
            }
            _ => {}
        }
        if let Some(d) = &self.docker {
            let ports = resources.ranges("ports");
            for (i, m) in d.port_mappings.iter().enumerate() {
                let pf = format!("{field}.docker.port_mappings[{i}]");
                if !ports.contains_value(u64::from(m.host_port)) {
                    return Err(Error::invalid(
                        format!("{pf}.host_port"),
                        format!(
                            "{} is not in the task's 'ports' resources; add it to the task's resources",
                            m.host_port
                        ),
                    ));
                }
                if m.container_port == 0 || m.container_port > 65535 {
                    return Err(Error::invalid(
                        format!("{pf}.container_port"),
                        "must be within 1..=65535",
                    ));
                }
                if let Some(p) = &m.protocol
                    && !matches!(p.to_ascii_lowercase().as_str(), "tcp" | "udp")
                {
                    return Err(Error::invalid(
                        format!("{pf}.protocol"),
                        format!("'{p}': must be tcp or udp"),
                    ));
                }
            }
            if !d.port_mappings.is_empty() && d.network != DockerNetwork::Bridge {
                return Err(Error::invalid(
                    format!("{field}.docker.port_mappings"),
                    "port mappings need network BRIDGE",
                ));
            }
            for (i, (k, _)) in d.parameters.iter().enumerate() {
                if k.is_empty() {
                    return Err(Error::invalid(
                        format!("{field}.docker.parameters[{i}].key"),
                        "is empty",
                    ));
                }
            }
        }
        for (i, v) in self.volumes.iter().enumerate() {
            let vf = format!("{field}.volumes[{i}]");
            if !v.container_path.starts_with('/') {
                return Err(Error::invalid(
                    format!("{vf}.container_path"),
                    format!("'{}' must be an absolute path", v.container_path),
                ));
            }
            if v.host_path.is_empty() {
                return Err(Error::invalid(
                    format!("{vf}.host_path"),
                    "is required (image and named volumes are not supported)",
                ));
            }
            if !v.host_path.starts_with('/') && v.host_path.split('/').any(|s| s == "..") {
                return Err(Error::invalid(
                    format!("{vf}.host_path"),
                    format!(
                        "'{}': a relative path (inside the sandbox) must not contain '..'",
                        v.host_path
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ranges::Ranges;
    use crate::resources::{Resource, ResourceKey, Value};

    fn with_ports(begin: u64, end: u64) -> Resources {
        let r = Resource {
            key: ResourceKey::unreserved("ports"),
            value: Value::Ranges(Ranges::new("p", [(begin, end)]).expect("ranges")),
        };
        Resources::from_resources("r", [r]).expect("resources")
    }

    #[test]
    fn docker_needs_an_image() {
        let mut c = ContainerInfo::docker("  ");
        let e = c.validate("task.container", &Resources::new()).unwrap_err();
        assert_eq!(e.field(), Some("task.container.docker.image"));
        c.docker = None;
        let e = c.validate("task.container", &Resources::new()).unwrap_err();
        assert_eq!(e.field(), Some("task.container.docker"));
        assert!(
            ContainerInfo::docker("busybox")
                .validate("c", &Resources::new())
                .is_ok()
        );
    }

    #[test]
    fn host_ports_must_be_in_the_task_ports() {
        let mut c = ContainerInfo::docker("img");
        let d = c.docker.as_mut().expect("docker");
        d.network = DockerNetwork::Bridge;
        d.port_mappings.push(PortMapping {
            host_port: 31000,
            container_port: 80,
            protocol: None,
        });
        assert!(c.validate("c", &with_ports(31000, 31005)).is_ok());
        let e = c.validate("c", &with_ports(32000, 32005)).unwrap_err();
        assert_eq!(e.field(), Some("c.docker.port_mappings[0].host_port"));
        let e = c.validate("c", &Resources::new()).unwrap_err();
        assert_eq!(e.field(), Some("c.docker.port_mappings[0].host_port"));
    }

    #[test]
    fn volumes_need_absolute_container_paths() {
        let mut c = ContainerInfo::docker("img");
        c.volumes.push(Volume {
            container_path: "data".into(),
            host_path: "/tmp".into(),
            mode: VolumeMode::Ro,
        });
        let e = c.validate("c", &Resources::new()).unwrap_err();
        assert_eq!(e.field(), Some("c.volumes[0].container_path"));
        c.volumes[0].container_path = "/data".into();
        assert!(c.validate("c", &Resources::new()).is_ok());
        c.volumes[0].host_path = "../escape".into();
        assert!(c.validate("c", &Resources::new()).is_err());
    }

    #[test]
    fn json_defaults() {
        let c: ContainerInfo =
            serde_json::from_str(r#"{"kind":"DOCKER","docker":{"image":"x"}}"#).expect("json");
        assert_eq!(c, ContainerInfo::docker("x"));
    }
}

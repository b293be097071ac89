//! Health checks of Docker tasks, as the Mesos Docker executor runs them: a COMMAND check
//! runs inside the container (`docker exec`, through the engine's API), HTTP and TCP checks
//! reach the container's own address on a bridge network (the port is the container's, as
//! the task sees it) and 127.0.0.1 on the host network.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecOptions};
use tessera_types::CommandInfo;

/// How often a running `docker exec` is polled for its exit.
const EXEC_POLL: Duration = Duration::from_millis(50);

/// Which container a Docker task's checks probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerProbe {
    /// The engine's socket (the agent's `docker_socket`).
    pub socket: String,
    /// The container's name.
    pub name: String,
}

/// The engine and the container's address (`None` on the host network: 127.0.0.1).
pub async fn target(p: &DockerProbe) -> Result<(Docker, Option<IpAddr>), String> {
    let docker = crate::docker::connect_engine(&p.socket).await?;
    let info = docker
        .inspect_container(&p.name, None)
        .await
        .map_err(|e| format!("inspecting container {}: {e}", p.name))?;
    let settings = info.network_settings.unwrap_or_default();
    let ip = settings
        .networks
        .unwrap_or_default()
        .values()
        .filter_map(|n| n.ip_address.as_deref())
        .find(|a| !a.is_empty())
        .and_then(|a| a.parse().ok());
    Ok((docker, ip))
}

/// Runs a check command inside the container; exit 0 is healthy. Cancelling the future
/// (a probe timeout) leaves the exec to the engine, which ends it with the container.
pub async fn exec(
    p: &DockerProbe,
    c: &CommandInfo,
    env: &BTreeMap<String, String>,
) -> Result<(), String> {
    let (docker, _) = target(p).await?;
    let cmd: Vec<String> = if c.shell {
        vec!["sh".into(), "-c".into(), c.value.clone()]
    } else if c.arguments.is_empty() {
        vec![c.value.clone()]
    } else {
        c.arguments.clone()
    };
    let env: Vec<String> = env
        .iter()
        .chain(c.environment.iter())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let created = docker
        .create_exec(
            &p.name,
            CreateExecOptions {
                cmd: Some(cmd),
                env: Some(env),
                attach_stdout: Some(false),
                attach_stderr: Some(false),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("docker exec in {}: {e}", p.name))?;
    docker
        .start_exec(
            &created.id,
            Some(StartExecOptions {
                detach: true,
                ..Default::default()
            }),
        )
        .await
        .map_err(|e| format!("starting docker exec in {}: {e}", p.name))?;
    loop {
        let r = docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| format!("inspecting docker exec in {}: {e}", p.name))?;
        if r.running != Some(true) {
            return match r.exit_code {
                Some(0) => Ok(()),
                Some(code) => Err(format!("command exited with status {code}")),
                None => Err("command ended without an exit code".into()),
            };
        }
        tokio::time::sleep(EXEC_POLL).await;
    }
}

//! Persistent volumes on the master (Mesos CREATE / DESTROY): reserved disk that a
//! framework — inside ACCEPT — or an operator — CREATE_VOLUMES / DESTROY_VOLUMES — turns
//! into a named volume of the same size, and back.
//!
//! A volume stays reserved to its role: after CREATE it is allocated to the framework like
//! the disk it was made of, and once unused it is offered to that role again, with its
//! `disk.persistence` and `disk.volume`. The agent's volumes are kept in its registry
//! record ([`crate::registry::AgentRecord::volumes`]), so they survive a master restart and
//! a re-registration. DESTROY is refused while a task or executor uses the volume; once
//! applied, the agent is told to delete the volume's data (`DestroyVolume`).
//!
//! The checks that need no master state are pure ([`tessera_types::volume`]); those that
//! need the agent's volumes, its tasks or the framework's principal are here.

use std::collections::BTreeMap;

use tessera_api::pb;
use tessera_types::volume::{validate_create, validate_destroy};
use tessera_types::{AgentId, Error, FrameworkId, Resources, Role};

use crate::actor::Master;
use crate::error::{MasterError, Result};

/// Checks that each volume's principal, when set, is the framework's (Mesos refuses a
/// volume created in another principal's name).
fn check_principal(field: &str, volumes: &Resources, principal: Option<&str>) -> Result<()> {
    let Some(principal) = principal else {
        return Ok(());
    };
    for (i, (k, _)) in volumes.iter().enumerate() {
        if let Some(p) = k.volume.as_ref().and_then(|v| v.principal.as_deref())
            && p != principal
        {
            return Err(Error::invalid(
                format!("{field}[{i}].disk.persistence.principal"),
                format!("'{p}' is not the framework's principal '{principal}'"),
            )
            .into());
        }
    }
    Ok(())
}

impl Master {
    /// CREATE / DESTROY inside an ACCEPT: converts part of what is left of the offers and
    /// keeps it allocated to the framework. Returns the role the resources were offered to
    /// and what they became.
    pub(crate) fn offer_volumes(
        &mut self,
        fw: &FrameworkId,
        agent: &AgentId,
        remaining: &mut BTreeMap<Role, Resources>,
        volumes: &Resources,
        creating: bool,
    ) -> Result<(Role, Resources)> {
        let field = if creating {
            "create.volumes"
        } else {
            "destroy.volumes"
        };
        if creating {
            let principal = self
                .frameworks
                .get(fw)
                .and_then(|f| f.info.principal.clone());
            validate_create(field, volumes, &self.agent_volumes(agent))?;
            check_principal(field, volumes, principal.as_deref())?;
        } else {
            self.check_destroy(field, agent, volumes)?;
        }
        let disk = volumes.without_volumes()?;
        let (from, to) = if creating {
            (disk, volumes.clone())
        } else {
            (volumes.clone(), disk)
        };
        let role = remaining
            .iter()
            .find(|(_, r)| r.contains(&from))
            .map(|(r, _)| r.clone())
            .ok_or_else(|| {
                Error::invalid(
                    field,
                    format!("{from} are not in what is left of the offers"),
                )
            })?;
        self.change_volumes(agent, Some((fw, &role)), &from, &to, creating)?;
        if let Some(rest) = remaining.get_mut(&role) {
            *rest = rest.checked_sub(&from).and_then(|r| r.checked_add(&to))?;
        }
        Ok((role, to))
    }

    /// Operator CREATE_VOLUMES: the disk must be free on the agent; outstanding offers
    /// there are rescinded first so it can be.
    pub(crate) fn create_volumes(&mut self, agent: &AgentId, volumes: Resources) -> Result<()> {
        self.known_agent(agent)?;
        validate_create(
            "create_volumes.volumes",
            &volumes,
            &self.agent_volumes(agent),
        )?;
        let disk = volumes.without_volumes()?;
        self.change_volumes(agent, None, &disk, &volumes, true)
    }

    /// Operator DESTROY_VOLUMES: the reverse of [`Master::create_volumes`].
    pub(crate) fn destroy_volumes(&mut self, agent: &AgentId, volumes: Resources) -> Result<()> {
        self.known_agent(agent)?;
        self.check_destroy("destroy_volumes.volumes", agent, &volumes)?;
        let disk = volumes.without_volumes()?;
        self.change_volumes(agent, None, &volumes, &disk, false)
    }

    fn agent_volumes(&self, agent: &AgentId) -> Resources {
        self.agents
            .get(agent)
            .map(|a| a.record.volumes.clone())
            .unwrap_or_default()
    }

    /// A DESTROY names volumes the agent has and that nothing running uses.
    fn check_destroy(&self, field: &str, agent: &AgentId, volumes: &Resources) -> Result<()> {
        validate_destroy(field, volumes)?;
        let have = self.agent_volumes(agent);
        for (i, (k, v)) in volumes.iter().enumerate() {
            let id = k.volume.as_ref().map(|v| v.id.as_str()).unwrap_or_default();
            let one = Resources::from_resources(
                field,
                [tessera_types::Resource {
                    key: k.clone(),
                    value: v.clone(),
                }],
            )?;
            if !have.contains(&one) {
                return Err(Error::invalid(
                    format!("{field}[{i}].disk.persistence.id"),
                    format!(
                        "'{id}' is not a persistent volume of role '{}' on agent '{agent}'",
                        k.role()
                    ),
                )
                .into());
            }
            if let Some(user) = self.volume_user(agent, &one) {
                return Err(MasterError::Conflict(format!(
                    "{field}[{i}]: persistent volume '{id}' is in use by {user}"
                )));
            }
        }
        Ok(())
    }

    /// What on the agent uses `volume` (a live task, or a custom executor), if anything.
    fn volume_user(&self, agent: &AgentId, volume: &Resources) -> Option<String> {
        let uses = |r: &Resources| volume.iter().any(|(k, _)| r.iter().any(|(rk, _)| rk == k));
        if let Some(t) = self.tasks.values().find(|t| {
            &t.info.agent_id == agent && !t.state.is_terminal() && uses(&t.info.resources)
        }) {
            return Some(format!("task '{}'", t.info.task_id));
        }
        self.executors
            .iter()
            .find(|((_, a, _), e)| a == agent && uses(&e.info.resources))
            .map(|((_, _, id), _)| format!("executor '{id}'"))
    }

    /// Converts `from` into `to` on the agent and records its volumes; after a DESTROY, the
    /// agent is told to delete each volume's data.
    fn change_volumes(
        &mut self,
        agent: &AgentId,
        holder: Option<(&FrameworkId, &Role)>,
        from: &Resources,
        to: &Resources,
        creating: bool,
    ) -> Result<()> {
        let (removed, added) = if creating {
            (&Resources::new(), to)
        } else {
            (from, &Resources::new())
        };
        self.convert_agent_resources(agent, holder, from, to, |record| {
            record.volumes = record
                .volumes
                .checked_sub(removed)
                .and_then(|v| v.checked_add(added))?;
            Ok(())
        })?;
        tracing::info!(agent_id = %agent, from = %from, to = %to, "persistent volumes changed");
        if creating {
            return Ok(());
        }
        for (k, _) in removed.iter() {
            let Some(v) = &k.volume else { continue };
            let sent = self.send_to_agent(
                agent,
                pb::master_message::Msg::DestroyVolume(pb::DestroyVolume {
                    role: k.role().to_string(),
                    persistence_id: v.id.clone(),
                }),
            );
            if !sent {
                tracing::warn!(agent_id = %agent, persistence_id = %v.id,
                    "agent not connected; the volume's data stays on it");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_types::parse::parse_json_resources;

    #[test]
    fn a_volume_in_another_principals_name_is_refused() {
        let v = parse_json_resources(
            "v",
            &serde_json::json!([{"name": "disk", "type": "SCALAR", "scalar": {"value": 1},
                "reservations": [{"type": "DYNAMIC", "role": "eng"}],
                "disk": {"persistence": {"id": "v1", "principal": "mallory"},
                         "volume": {"container_path": "data", "mode": "RW"}}}]),
        )
        .unwrap();
        assert!(check_principal("create.volumes", &v, None).is_ok());
        assert!(check_principal("create.volumes", &v, Some("mallory")).is_ok());
        let e = check_principal("create.volumes", &v, Some("alice")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("create.volumes[0].disk.persistence.principal"),
            "{e}"
        );
    }
}

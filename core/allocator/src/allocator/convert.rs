//! Converting resources in place on an agent: dynamic reservations (RESERVE / UNRESERVE)
//! and, later, persistent volumes. `from` becomes `to` in the agent's total; when a holder
//! (framework, role) is named the converted resources stay allocated to it (an operation
//! inside ACCEPT), otherwise they must be free (an operator call).

use tessera_types::{AgentId, FrameworkId, Resources, Role, Time};

use super::{Allocator, AllocatorError};

impl Allocator {
    /// Replaces `from` by `to` on `agent`. Errors (and changes nothing) when `from` is not
    /// free on the agent — or not allocated to `holder` when one is given — or when the
    /// result would not add up.
    pub fn convert_resources(
        &mut self,
        agent: &AgentId,
        holder: Option<(&FrameworkId, &Role)>,
        from: &Resources,
        to: &Resources,
        now: Time,
    ) -> Result<(), AllocatorError> {
        let a = self.agent_of(agent)?;
        let Some(state) = self.agents[a as usize].as_ref() else {
            return Err(AllocatorError::UnknownAgent(agent.clone()));
        };
        let (total, active) = (state.total.clone(), state.active);
        let mut allocations = self.allocated(agent);
        match holder {
            None => {
                if !state.available.contains(from) {
                    return Err(AllocatorError::NotAvailable {
                        agent: agent.clone(),
                        resources: from.to_string(),
                    });
                }
            }
            Some((fw, role)) => {
                let Some(held) = allocations
                    .iter_mut()
                    .find(|x| &x.framework == fw && &x.role == role)
                else {
                    return Err(AllocatorError::NotAllocated {
                        framework: fw.clone(),
                        role: role.clone(),
                        agent: agent.clone(),
                        resources: from.to_string(),
                    });
                };
                let converted = held
                    .resources
                    .checked_sub(from)
                    .and_then(|r| r.checked_add(to))
                    .map_err(|_| AllocatorError::NotAllocated {
                        framework: fw.clone(),
                        role: role.clone(),
                        agent: agent.clone(),
                        resources: from.to_string(),
                    })?;
                held.resources = converted;
            }
        }
        let new_total = total
            .checked_sub(from)
            .and_then(|r| r.checked_add(to))
            .map_err(AllocatorError::Resources)?;
        // Rebuild the agent with the converted total and the same allocations; shares,
        // quota consumption and reservations are recomputed by the same code that adds
        // agents, so they cannot drift.
        let used: Vec<(FrameworkId, Role, Resources)> = allocations
            .into_iter()
            .map(|x| (x.framework, x.role, x.resources))
            .collect();
        self.remove_agent(agent);
        self.add_agent(agent.clone(), new_total, &used, now);
        if !active {
            self.deactivate_agent(agent);
        }
        Ok(())
    }
}

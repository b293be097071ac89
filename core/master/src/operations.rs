//! Operation feedback (Mesos UPDATE_OPERATION_STATUS): offer operations that carry an id
//! are reported to their framework when they end. The master applies RESERVE, UNRESERVE,
//! CREATE and DESTROY itself, so their outcome is known at once: OPERATION_FINISHED (or
//! OPERATION_DROPPED when the registry could not record it) is sent reliably — with a uuid,
//! kept until the framework acknowledges it and re-sent when it re-subscribes — while
//! OPERATION_ERROR for an invalid operation is sent once without a uuid and not kept, as
//! Mesos' `Master::drop` does.
//! RECONCILE_OPERATIONS answers with the latest known status (never with a uuid), and
//! operators see the same operations with GET_OPERATIONS.

use std::collections::BTreeMap;

use tessera_types::{AgentId, FrameworkId, Resources, Role};

use crate::actor::Master;
use crate::error::{MasterError, Result};
use crate::model::{
    AgentState, Event, OperationEntry, OperationInfo, OperationKind, OperationState,
    OperationStatus, OperationView,
};

impl Master {
    /// An operation on resources inside an ACCEPT (RESERVE, UNRESERVE, CREATE, DESTROY),
    /// applied to what is left of the offers, with feedback when it has an id:
    /// OPERATION_FINISHED, OPERATION_DROPPED when the registry could not record it, or
    /// OPERATION_ERROR when it was invalid (then nothing changed).
    pub(crate) fn apply_offer_operation(
        &mut self,
        fw: &FrameworkId,
        agent: &AgentId,
        remaining: &mut BTreeMap<Role, Resources>,
        kind: OperationKind,
        resources: &Resources,
        id: Option<&str>,
    ) {
        let info = |id: &str| OperationInfo {
            id: id.to_string(),
            kind,
            resources: resources.clone(),
        };
        let applied = match kind {
            OperationKind::Reserve => self.offer_reservation(fw, agent, remaining, resources, true),
            OperationKind::Unreserve => {
                self.offer_reservation(fw, agent, remaining, resources, false)
            }
            OperationKind::Create => self.offer_volumes(fw, agent, remaining, resources, true),
            OperationKind::Destroy => self.offer_volumes(fw, agent, remaining, resources, false),
        };
        match applied {
            Ok((role, converted)) => {
                if let Some(id) = id {
                    let state = OperationState::Finished;
                    self.operation_ended(fw, agent, info(id), state, None, converted, Some(&role));
                }
            }
            Err(e) => {
                tracing::info!(framework_id = %fw, operation = kind.name(), reason = %e, "operation failed");
                match (id, e) {
                    (None, _) => {}
                    (Some(id), e @ (MasterError::Registry(_) | MasterError::Io(_))) => {
                        let state = OperationState::Dropped;
                        let msg = Some(e.to_string());
                        let info = info(id);
                        self.operation_ended(fw, agent, info, state, msg, Resources::new(), None);
                    }
                    (Some(id), e) => self.operation_error(fw, id, &e.to_string()),
                }
            }
        }
    }

    /// OPERATION_ERROR for an operation that failed validation: sent once, not kept.
    pub(crate) fn operation_error(&mut self, fw: &FrameworkId, id: &str, message: &str) {
        tracing::info!(framework_id = %fw, operation_id = id, reason = message, "operation error");
        let status = OperationStatus {
            operation_id: id.to_string(),
            state: OperationState::Error,
            message: Some(message.to_string()),
            converted_resources: Resources::new(),
            role: None,
            uuid: None,
            agent_id: None,
        };
        self.send_event(fw, Event::UpdateOperationStatus(status));
    }

    /// The final status of an operation that was applied (or could not be): kept with a
    /// fresh uuid until the framework acknowledges it, and sent.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn operation_ended(
        &mut self,
        fw: &FrameworkId,
        agent: &AgentId,
        info: OperationInfo,
        state: OperationState,
        message: Option<String>,
        converted: Resources,
        role: Option<&Role>,
    ) {
        let id = info.id.clone();
        let status = OperationStatus {
            operation_id: id.clone(),
            state,
            message,
            converted_resources: converted,
            role: role.cloned(),
            uuid: Some(uuid::Uuid::new_v4()),
            agent_id: Some(agent.clone()),
        };
        self.operations.insert(
            (fw.clone(), id),
            OperationEntry {
                agent_id: agent.clone(),
                info,
                uuid: uuid::Uuid::new_v4(),
                status: status.clone(),
            },
        );
        self.send_event(fw, Event::UpdateOperationStatus(status));
    }

    /// Whether the framework still tracks an operation with this id (ids of operations
    /// whose status is not acknowledged yet may not be reused).
    pub(crate) fn operation_in_use(&self, fw: &FrameworkId, id: &str) -> bool {
        self.operations.contains_key(&(fw.clone(), id.to_string()))
    }

    /// ACKNOWLEDGE_OPERATION_STATUS: the framework handled the status with `uuid`; a
    /// terminal one is forgotten. Unknown operations, other agents and stale uuids change
    /// nothing (Mesos logs and ignores them).
    pub(crate) fn acknowledge_operation(
        &mut self,
        fw: &FrameworkId,
        agent: &AgentId,
        id: &str,
        uuid: uuid::Uuid,
    ) -> Result<()> {
        self.framework_known(fw)?;
        let key = (fw.clone(), id.to_string());
        let Some(entry) = self.operations.get(&key) else {
            return Err(MasterError::UnknownOperation(id.to_string()));
        };
        if &entry.agent_id != agent {
            return Err(MasterError::Conflict(format!(
                "acknowledge_operation_status.agent_id: operation '{id}' ran on agent '{}', not '{agent}'",
                entry.agent_id
            )));
        }
        if entry.status.uuid != Some(uuid) {
            return Err(MasterError::Conflict(format!(
                "acknowledge_operation_status.uuid: not the uuid of the latest status of operation '{id}'"
            )));
        }
        if entry.status.state.is_terminal() {
            self.operations.remove(&key);
        }
        tracing::debug!(framework_id = %fw, operation_id = id, "operation status acknowledged");
        Ok(())
    }

    /// Statuses the framework has not acknowledged, sent again (after it re-subscribed).
    pub(crate) fn resend_operation_statuses(&mut self, fw: &FrameworkId) {
        let pending: Vec<OperationStatus> = self
            .operations
            .iter()
            .filter(|((f, _), _)| f == fw)
            .map(|(_, e)| e.status.clone())
            .collect();
        for s in pending {
            self.send_event(fw, Event::UpdateOperationStatus(s));
        }
    }

    /// The operations the master tracks, for operators (GET_OPERATIONS).
    pub(crate) fn operation_views(&self) -> Vec<OperationView> {
        self.operations
            .iter()
            .map(|((fw, _), e)| OperationView {
                framework_id: fw.clone(),
                agent_id: e.agent_id.clone(),
                info: e.info.clone(),
                uuid: e.uuid,
                status: e.status.clone(),
            })
            .collect()
    }

    /// Forgets a removed framework's operations.
    pub(crate) fn forget_operations(&mut self, fw: &FrameworkId) {
        self.operations.retain(|(f, _), _| f != fw);
    }

    /// RECONCILE_OPERATIONS: empty asks about every operation the master keeps for the
    /// framework; otherwise each listed one is answered as in Mesos — the latest status if
    /// known, else by the state of the agent named (RECOVERING, UNREACHABLE,
    /// GONE_BY_OPERATOR, or UNKNOWN). Answers carry no uuid.
    pub(crate) fn reconcile_operations(
        &mut self,
        fw: &FrameworkId,
        ops: Vec<(String, Option<AgentId>)>,
    ) -> Result<()> {
        self.framework_known(fw)?;
        let answers: Vec<OperationStatus> = if ops.is_empty() {
            self.operations
                .iter()
                .filter(|((f, _), _)| f == fw)
                .map(|(_, e)| OperationStatus {
                    uuid: None,
                    ..e.status.clone()
                })
                .collect()
        } else {
            ops.into_iter()
                .map(|(id, agent)| self.reconcile_one(fw, id, agent))
                .collect()
        };
        for s in answers {
            self.send_event(fw, Event::UpdateOperationStatus(s));
        }
        Ok(())
    }

    fn reconcile_one(
        &self,
        fw: &FrameworkId,
        id: String,
        agent: Option<AgentId>,
    ) -> OperationStatus {
        if let Some(e) = self.operations.get(&(fw.clone(), id.clone())) {
            return OperationStatus {
                uuid: None,
                ..e.status.clone()
            };
        }
        let agent_state = agent
            .as_ref()
            .and_then(|a| self.agents.get(a))
            .map(|a| a.state);
        let (state, message) = match agent_state {
            Some(AgentState::Recovered) => (
                OperationState::Recovering,
                "Reconciliation: Agent is recovered but has not re-registered",
            ),
            Some(AgentState::Unreachable) => (
                OperationState::Unreachable,
                "Reconciliation: Agent is unreachable",
            ),
            Some(AgentState::Gone) => (
                OperationState::GoneByOperator,
                "Reconciliation: Agent marked gone by operator",
            ),
            _ => (
                OperationState::Unknown,
                "Reconciliation: Operation is unknown",
            ),
        };
        OperationStatus {
            operation_id: id,
            state,
            message: Some(message.to_string()),
            converted_resources: Resources::new(),
            role: None,
            uuid: None,
            agent_id: agent,
        }
    }
}

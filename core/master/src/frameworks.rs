//! Framework lifecycle: subscribe (new or failover), disconnect with a failover window,
//! teardown and removal (its tasks killed, its resources returned).

use std::time::Duration;

use tessera_api::pb;
use tessera_types::{FrameworkId, FrameworkInfo, Reason, Role, TaskId, TaskState, Time};
use tokio::sync::mpsc;

use crate::actor::Master;
use crate::error::{MasterError, Result};
use crate::model::{Event, FrameworkEntry, FrameworkState};

impl Master {
    pub(crate) fn subscribe(
        &mut self,
        mut info: FrameworkInfo,
        suppressed: &[Role],
    ) -> Result<(FrameworkId, mpsc::Receiver<Event>)> {
        info.validate()?;
        check_suppressed(&info, suppressed)?;
        let now = self.now();
        let (tx, rx) = mpsc::channel(self.config.framework_queue);
        let failover = match &info.id {
            Some(id) if self.frameworks.contains_key(id) => true,
            Some(id) => {
                return Err(tessera_types::Error::invalid(
                    "framework_info.id",
                    format!("framework '{id}' is unknown (removed or never subscribed); subscribe without an id"),
                )
                .into());
            }
            None => false,
        };
        let id = match &info.id {
            Some(id) => id.clone(),
            None => {
                let id = FrameworkId::new(self.fresh_id("F"))?;
                info.id = Some(id.clone());
                id
            }
        };
        self.registry.put_framework(&info)?;
        if !failover {
            self.persist_next_id();
        }
        if failover {
            // The old stream (if any) is replaced; its offers are rescinded so the new
            // connection starts clean.
            self.rescind_framework_offers(&id);
            self.drop_framework_inverse_offers(&id);
            if let Some(old) = self.frameworks.get_mut(&id)
                && let Some(old_sink) = old.sink.take()
            {
                let _ = old_sink.try_send(Event::Error("framework failed over".into()));
            }
        }
        self.frameworks.insert(
            id.clone(),
            FrameworkEntry {
                info: info.clone(),
                sink: Some(tx.clone()),
                state: FrameworkState::Active,
                failover_deadline: None,
                registered_wall: crate::agents::wall_seconds(),
            },
        );
        // (Re-)adding keeps what the framework already holds (running tasks reported by
        // agents), so its share stays right across failover and master restarts.
        self.allocator
            .add_framework(id.clone(), &info.roles, suppressed, now);
        self.allocator
            .set_gpu_aware(&id, info.has(tessera_types::Capability::GpuResources));
        self.allocator
            .set_region_aware(&id, info.has(tessera_types::Capability::RegionAware));
        let _ = tx.try_send(Event::Subscribed {
            framework_id: id.clone(),
        });
        if failover {
            // Operation statuses it did not acknowledge before it went away.
            self.resend_operation_statuses(&id);
        }
        tracing::info!(framework_id = %id, name = %info.name, failover, "framework subscribed");
        self.emit_framework(&id, !failover);
        Ok((id, rx))
    }

    /// UPDATE_FRAMEWORK: the same framework (id and principal unchanged) with new roles,
    /// capabilities, name or failover timeout. Offers for roles it left are rescinded.
    pub(crate) fn update_framework(
        &mut self,
        info: FrameworkInfo,
        suppressed: &[Role],
    ) -> Result<()> {
        info.validate()?;
        check_suppressed(&info, suppressed)?;
        let Some(id) = info.id.clone() else {
            return Err(tessera_types::Error::invalid("framework_info.id", "is required").into());
        };
        let Some(f) = self.frameworks.get(&id) else {
            return Err(MasterError::UnknownFramework(id));
        };
        if f.info.principal != info.principal {
            return Err(tessera_types::Error::invalid(
                "framework_info.principal",
                "cannot change while subscribed",
            )
            .into());
        }
        // `user` changes are ignored, as in Mesos.
        let mut info = info;
        info.user = f.info.user.clone();
        self.registry.put_framework(&info)?;
        let left: Vec<crate::model::Offer> = self
            .offers
            .values()
            .filter(|o| o.offer.framework_id == id && !info.roles.contains(&o.offer.role))
            .map(|o| o.offer.clone())
            .collect();
        for o in left {
            self.rescind(&o.id);
        }
        let now = self.now();
        self.allocator
            .update_framework_roles(&id, &info.roles, suppressed, now);
        self.allocator
            .set_gpu_aware(&id, info.has(tessera_types::Capability::GpuResources));
        self.allocator
            .set_region_aware(&id, info.has(tessera_types::Capability::RegionAware));
        if let Some(f) = self.frameworks.get_mut(&id) {
            f.info = info;
        }
        self.emit_framework(&id, false);
        Ok(())
    }

    /// The framework's event stream closed: stop offering, keep tasks until the failover
    /// timeout.
    pub(crate) fn disconnect_framework(&mut self, fw: &FrameworkId) {
        let now = self.now();
        let Some(f) = self.frameworks.get_mut(fw) else {
            return;
        };
        if f.state == FrameworkState::Disconnected {
            return;
        }
        f.sink = None;
        f.state = FrameworkState::Disconnected;
        let timeout = Duration::from_secs_f64(f.info.failover_timeout_secs.min(1e9));
        f.failover_deadline = Some(now.plus(timeout));
        tracing::warn!(framework_id = %fw, failover_timeout = ?timeout, "framework disconnected");
        self.allocator.deactivate_framework(fw);
        self.rescind_framework_offers(fw);
        self.drop_framework_inverse_offers(fw);
        self.emit_framework(fw, false);
    }

    /// Removes disconnected frameworks whose failover window passed; notices closed streams.
    pub(crate) fn check_frameworks(&mut self, now: Time) {
        let closed: Vec<FrameworkId> = self
            .frameworks
            .iter()
            .filter(|(_, f)| f.sink.as_ref().is_some_and(|s| s.is_closed()))
            .map(|(id, _)| id.clone())
            .collect();
        for fw in closed {
            self.disconnect_framework(&fw);
        }
        let expired: Vec<FrameworkId> = self
            .frameworks
            .iter()
            .filter(|(_, f)| {
                f.state == FrameworkState::Disconnected
                    && f.failover_deadline.is_some_and(|d| d <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for fw in expired {
            tracing::warn!(framework_id = %fw, "framework failover timeout passed; removing it");
            self.remove_framework(&fw);
        }
    }

    pub(crate) fn teardown(&mut self, fw: &FrameworkId) -> Result<()> {
        if !self.frameworks.contains_key(fw) {
            return Err(MasterError::UnknownFramework(fw.clone()));
        }
        self.send_event(fw, Event::Error("framework torn down".into()));
        self.remove_framework(fw);
        Ok(())
    }

    /// Kills the framework's tasks on every agent, returns its offers and forgets it.
    fn remove_framework(&mut self, fw: &FrameworkId) {
        self.rescind_framework_offers(fw);
        let agents: std::collections::BTreeSet<_> = self
            .tasks
            .values()
            .filter(|t| &t.framework_id == fw)
            .map(|t| t.info.agent_id.clone())
            .collect();
        for agent in agents {
            self.send_to_agent(
                &agent,
                pb::master_message::Msg::ShutdownFramework(pb::ShutdownFramework {
                    framework_id: fw.to_string(),
                }),
            );
        }
        let tasks: Vec<TaskId> = self
            .tasks
            .keys()
            .filter(|(f, _)| f == fw)
            .map(|(_, t)| t.clone())
            .collect();
        for t in tasks {
            self.master_update(
                fw,
                &t,
                TaskState::TaskKilled,
                Reason::ReasonFrameworkRemoved,
                "the framework was removed",
                false,
            );
        }
        self.allocator.remove_framework(fw);
        self.forget_operations(fw);
        self.drop_framework_inverse_offers(fw);
        if let Some(f) = self.frameworks.remove(fw)
            && self.has_operators()
        {
            self.emit(crate::model::OperatorEvent::FrameworkRemoved(f.info));
        }
        if let Err(e) = self.registry.remove_framework(fw) {
            tracing::error!(framework_id = %fw, error = %e, "could not remove framework from the registry");
        }
    }
}

/// Suppressed roles must be roles the framework is subscribed to.
fn check_suppressed(info: &FrameworkInfo, suppressed: &[Role]) -> Result<()> {
    if let Some(r) = suppressed.iter().find(|r| !info.roles.contains(r)) {
        return Err(tessera_types::Error::invalid(
            "suppressed_roles",
            format!("'{r}' is not one of the framework's roles"),
        )
        .into());
    }
    Ok(())
}

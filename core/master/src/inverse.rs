//! Inverse offers (Mesos maintenance primitives) for agents being drained or on a machine in
//! the maintenance schedule: every connected framework with live tasks on an unavailable
//! agent gets one outstanding INVERSE_OFFERS for it. ACCEPT_INVERSE_OFFERS /
//! DECLINE_INVERSE_OFFERS answer it; the answer's filter keeps the next inverse offer for
//! that agent away for `refuse_seconds` (default 5 s), after which a framework still holding
//! tasks there is asked again, as Mesos' allocator does. An
//! outstanding inverse offer is rescinded (RESCIND_INVERSE_OFFER) when the agent is
//! reactivated, drained (no live tasks left), lost or gone, or when it expires after
//! `offer_timeout` (Mesos uses the same timeout for both kinds of offers). The last answer of
//! each framework per agent is kept for the maintenance status until the agent's
//! unavailability changes, as Mesos' allocator keeps it.

use std::collections::{BTreeMap, BTreeSet};

use tessera_types::{AgentId, Filters, FrameworkId, OfferId, Time};

use crate::actor::Master;
use crate::error::{MasterError, Result};
use crate::model::{
    AgentState, Event, FrameworkState, InverseAnswer, InverseOffer, InverseOfferEntry,
    Unavailability,
};

impl Master {
    /// Marks an agent unavailable from now on (DRAIN_AGENT) and asks at once.
    pub(crate) fn make_unavailable(&mut self, agent: &AgentId) {
        let now = self.now();
        let start_ns = (crate::agents::wall_seconds() * 1e9) as i64;
        let changed = self.agents.get_mut(agent).is_some_and(|a| {
            let before = a.unavailability();
            a.drain_unavailability.get_or_insert(Unavailability {
                start_ns,
                duration: None,
            });
            before != a.unavailability()
        });
        if changed {
            self.unavailability_changed(agent);
        }
        self.send_inverse_offers(now);
    }

    /// The agent's drain is over (REACTIVATE_AGENT): its inverse offers are rescinded; it is
    /// asked again only if its machine is scheduled for maintenance.
    pub(crate) fn make_available(&mut self, agent: &AgentId) {
        if let Some(a) = self.agents.get_mut(agent) {
            a.drain_unavailability = None;
        }
        self.unavailability_changed(agent);
    }

    /// The agent's unavailability changed (or it is gone): inverse offers, filters and
    /// answers about the old one no longer hold.
    pub(crate) fn unavailability_changed(&mut self, agent: &AgentId) {
        self.inverse_filters.retain(|(_, a), _| a != agent);
        self.inverse_answers.retain(|(a, _), _| a != agent);
        self.rescind_inverse_offers_where(|o| &o.agent_id == agent);
    }

    /// Housekeeping: expire, rescind the ones that no longer stand, then ask whoever should
    /// be asked and is not filtered.
    pub(crate) fn check_inverse_offers(&mut self, now: Time) {
        if self.inverse_offers.is_empty()
            && self.agents.values().all(|a| a.unavailability().is_none())
        {
            return;
        }
        let expired: Vec<OfferId> = self
            .inverse_offers
            .values()
            .filter(|e| e.expires.is_some_and(|t| t <= now))
            .map(|e| e.offer.id.clone())
            .collect();
        for id in &expired {
            tracing::info!(inverse_offer_id = %id, "inverse offer expired; rescinding");
        }
        let expired: BTreeSet<OfferId> = expired.into_iter().collect();
        self.rescind_inverse_offers_where(|o| expired.contains(&o.id));
        // Whether each agent with outstanding inverse offers is still going away with
        // tasks on it.
        let standing: BTreeMap<AgentId, bool> = self
            .inverse_offers
            .values()
            .map(|e| e.offer.agent_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|a| {
                let keep = self.agents.get(&a).is_some_and(|e| {
                    e.unavailability().is_some()
                        && !matches!(e.state, AgentState::Unreachable | AgentState::Gone)
                }) && !self.live_tasks_on(&a).is_empty();
                (a, keep)
            })
            .collect();
        self.rescind_inverse_offers_where(|o| !standing.get(&o.agent_id).copied().unwrap_or(false));
        self.inverse_filters.retain(|_, until| *until > now);
        self.send_inverse_offers(now);
    }

    /// One inverse offer per (framework, unavailable agent) where the framework is
    /// connected, has live tasks on the agent, has none outstanding for it and no filter.
    pub(crate) fn send_inverse_offers(&mut self, now: Time) {
        // Agents going away that still run something (`used` is kept up to date, so this
        // spares a scan of every task while no such agent exists).
        let going: BTreeSet<&AgentId> = self
            .agents
            .iter()
            .filter(|(_, a)| {
                a.unavailability().is_some()
                    && !a.used.is_empty()
                    && !matches!(a.state, AgentState::Unreachable | AgentState::Gone)
            })
            .map(|(id, _)| id)
            .collect();
        if going.is_empty() {
            return;
        }
        let wanted: BTreeSet<(FrameworkId, AgentId)> = self
            .tasks
            .values()
            .filter(|t| !t.state.is_terminal() && going.contains(&t.info.agent_id))
            .map(|t| (t.framework_id.clone(), t.info.agent_id.clone()))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let outstanding: BTreeSet<(FrameworkId, AgentId)> = self
            .inverse_offers
            .values()
            .map(|e| (e.offer.framework_id.clone(), e.offer.agent_id.clone()))
            .collect();
        let mut by_fw: BTreeMap<FrameworkId, Vec<InverseOffer>> = BTreeMap::new();
        for (fw, agent) in wanted {
            let key = (fw.clone(), agent.clone());
            let connected = self
                .frameworks
                .get(&fw)
                .is_some_and(|f| f.state == FrameworkState::Active && f.sink.is_some());
            let filtered = self.inverse_filters.get(&key).is_some_and(|t| *t > now);
            if !connected || filtered || outstanding.contains(&key) {
                continue;
            }
            let Some(a) = self.agents.get(&agent) else {
                continue;
            };
            let Some(unavailability) = a.unavailability() else {
                continue;
            };
            let (hostname, agent_ip, agent_port) = (a.record.hostname.clone(), a.ip, a.http_port);
            let Ok(id) = OfferId::new(self.fresh_id("O")) else {
                continue;
            };
            let offer = InverseOffer {
                id: id.clone(),
                framework_id: fw.clone(),
                agent_id: agent,
                hostname,
                agent_ip,
                agent_port,
                unavailability,
            };
            let expires = self.config.offer_timeout.map(|d| now.plus(d));
            self.inverse_offers.insert(
                id,
                InverseOfferEntry {
                    offer: offer.clone(),
                    expires,
                },
            );
            by_fw.entry(fw).or_default().push(offer);
        }
        for (fw, offers) in by_fw {
            self.metrics.inverse_offers_sent += offers.len() as u64;
            tracing::info!(framework_id = %fw, count = offers.len(), "sending inverse offers");
            self.send_event(&fw, Event::InverseOffers(offers));
        }
    }

    /// Removes the inverse offers matching `pred` and tells their frameworks.
    pub(crate) fn rescind_inverse_offers_where(&mut self, pred: impl Fn(&InverseOffer) -> bool) {
        let ids: Vec<OfferId> = self
            .inverse_offers
            .values()
            .filter(|e| pred(&e.offer))
            .map(|e| e.offer.id.clone())
            .collect();
        for id in ids {
            if let Some(e) = self.inverse_offers.remove(&id) {
                self.send_event(&e.offer.framework_id, Event::RescindInverseOffer(id));
            }
        }
    }

    /// A framework's stream went away (disconnect, failover, removal): its inverse offers
    /// are dropped without a word; it is asked again once it is back.
    pub(crate) fn drop_framework_inverse_offers(&mut self, fw: &FrameworkId) {
        self.inverse_offers
            .retain(|_, e| &e.offer.framework_id != fw);
        self.inverse_filters.retain(|(f, _), _| f != fw);
    }

    /// ACCEPT_INVERSE_OFFERS (`accept`) or DECLINE_INVERSE_OFFERS. All ids must be
    /// outstanding inverse offers of this framework, or nothing changes; answered ones are
    /// removed and `filters` keeps the next one for the same agent away.
    pub(crate) fn answer_inverse_offers(
        &mut self,
        fw: &FrameworkId,
        ids: Vec<OfferId>,
        accept: bool,
        filters: Filters,
    ) -> Result<()> {
        self.framework_known(fw)?;
        let call = if accept {
            "accept_inverse_offers"
        } else {
            "decline_inverse_offers"
        };
        if ids.is_empty() {
            return Err(MasterError::Conflict(format!(
                "{call}.inverse_offer_ids: no inverse offers given"
            )));
        }
        let mut seen = BTreeSet::new();
        for id in &ids {
            match self.inverse_offers.get(id) {
                Some(e) if &e.offer.framework_id == fw && seen.insert(id) => {}
                _ => return Err(MasterError::UnknownInverseOffer(id.clone())),
            }
        }
        let now = self.now();
        let refuse = filters.refuse_for();
        for id in ids {
            let Some(e) = self.inverse_offers.remove(&id) else {
                continue;
            };
            let key = (fw.clone(), e.offer.agent_id.clone());
            self.inverse_answers.insert(
                (e.offer.agent_id.clone(), fw.clone()),
                InverseAnswer {
                    accept,
                    at_ns: (crate::agents::wall_seconds() * 1e9) as i64,
                },
            );
            match refuse {
                Some(d) => {
                    self.inverse_filters.insert(key, now.plus(d));
                }
                None => {
                    self.inverse_filters.remove(&key);
                }
            }
            tracing::info!(framework_id = %fw, inverse_offer_id = %id,
                agent_id = %e.offer.agent_id, accepted = accept, "inverse offer answered");
        }
        Ok(())
    }
}

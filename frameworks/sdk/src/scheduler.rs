//! The pure scheduling interface: events in, actions out.

use std::collections::BTreeMap;
use std::time::Duration;

use tessera_types::{AgentId, FrameworkId, OfferId, Resources, TaskId, TaskInfo, TaskStatus, Time};

/// An offer, converted from the v1 wire form.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub id: OfferId,
    pub agent_id: AgentId,
    pub hostname: String,
    /// The role the offer is allocated to (`allocation_info.role`), if the master set one.
    pub role: Option<String>,
    pub resources: Resources,
    /// Agent attributes, each value rendered as text (`rack: "r1"`, `gen: "3"`,
    /// sets as `{a,b}`, ranges as `[1-2]`).
    pub attributes: BTreeMap<String, String>,
}

/// What happened, as seen by the scheduler.
#[derive(Debug, Clone, PartialEq)]
pub enum SchedulerEvent {
    /// (Re)subscribed; the framework id is stable across failovers.
    Subscribed {
        framework_id: FrameworkId,
    },
    Offers(Vec<Offer>),
    /// The master withdrew an offer; actions on it will fail.
    Rescind(OfferId),
    /// A task status update. The driver acknowledges it after `on_event` returns.
    Update(TaskStatus),
    /// An agent or executor failed.
    Failure {
        agent_id: Option<AgentId>,
        status: Option<i32>,
    },
    /// The master sent an ERROR event; the driver stops after delivering it.
    Error(String),
    /// The event stream was lost; the driver is re-subscribing.
    Disconnected,
    /// A heartbeat arrived, or the framework poked the driver through
    /// [`DriverHandle::wake`](crate::DriverHandle::wake): a chance to act on time or on
    /// work that arrived from outside.
    Tick,
}

/// What the scheduler wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// ACCEPT the offers with one LAUNCH operation. Task resources must come from the offers.
    Launch {
        offer_ids: Vec<OfferId>,
        tasks: Vec<TaskInfo>,
    },
    /// DECLINE the offers, refusing them for `refuse`.
    Decline {
        offer_ids: Vec<OfferId>,
        refuse: Duration,
    },
    Kill {
        task_id: TaskId,
        agent_id: Option<AgentId>,
    },
    /// RECONCILE these tasks (explicit), or all of them when empty (implicit).
    Reconcile(Vec<(TaskId, Option<AgentId>)>),
    /// REVIVE offers for these roles (all of the framework's when empty).
    Revive(Vec<String>),
    /// SUPPRESS offers for these roles (all of the framework's when empty).
    Suppress(Vec<String>),
    /// TEARDOWN the framework (kills every task) and stop the driver.
    Teardown,
}

/// Scheduling logic. Implementations must be pure: no I/O, no clock reads (`now` is given).
pub trait Scheduler {
    /// Handles one event and returns the actions to take, in order.
    fn on_event(&mut self, ev: &SchedulerEvent, now: Time) -> Vec<Action>;

    /// Whether the scheduler currently has work that needs offers. The driver SUPPRESSes
    /// when this turns false and REVIVEs when it turns true again.
    fn wants_offers(&self) -> bool {
        true
    }

    /// Whether the scheduler keeps this offer for later (a gang accumulating offers until
    /// it fits). The driver declines every offer of an OFFERS event that the scheduler
    /// neither used, declined nor holds; a held offer must be used or declined later.
    fn holds(&self, _offer: &OfferId) -> bool {
        false
    }
}

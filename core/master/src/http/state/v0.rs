//! Typed, borrowing renderings of the v0 JSON shapes, serialized straight to bytes: a
//! `serde_json::Value` tree costs several allocations per field, which at 100,000 tasks
//! dominated `/master/state`.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;
use tessera_types::{FrameworkId, Resources, Scalar, TaskStatus};

use super::super::HttpState;
use super::super::events::master_info;
use crate::config::MESOS_API_VERSION;
use crate::model::{
    AgentState, AgentView, ExecutorView, FaultDomain, FrameworkState, FrameworkView, MasterState,
    Offer, TaskEntry,
};

enum FlatValue {
    Num(u64),
    Text(String),
}

/// Mesos v0 resources: scalars summed per name (cpus, gpus, mem, disk always present),
/// ranges and sets as strings; keys in sorted order.
pub struct Flat<'a>(pub &'a Resources);

impl Serialize for Flat<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut out: Vec<(&str, FlatValue)> = Vec::with_capacity(6);
        for n in ["cpus", "gpus", "mem", "disk"] {
            out.push((n, FlatValue::Num(0)));
        }
        for (k, v) in self.0.iter() {
            let name = &*k.name;
            let val = match v {
                tessera_types::Value::Scalar(q) => {
                    if let Some((_, FlatValue::Num(m))) = out.iter_mut().find(|(n, _)| *n == name) {
                        *m = m.saturating_add(q.milli());
                        continue;
                    }
                    FlatValue::Num(q.milli())
                }
                tessera_types::Value::Ranges(_) => {
                    if out.iter().any(|(n, _)| *n == name) {
                        continue;
                    }
                    FlatValue::Text(self.0.ranges(name).to_string())
                }
                tessera_types::Value::Set(items) => {
                    let joined: Vec<&str> = items.iter().map(String::as_str).collect();
                    let t = FlatValue::Text(format!("{{{}}}", joined.join(",")));
                    if let Some(slot) = out.iter_mut().find(|(n, _)| *n == name) {
                        slot.1 = t;
                        continue;
                    }
                    t
                }
            };
            out.push((name, val));
        }
        out.sort_by(|a, b| a.0.cmp(b.0));
        let mut m = ser.serialize_map(Some(out.len()))?;
        for (k, v) in &out {
            match v {
                FlatValue::Num(milli) => {
                    m.serialize_entry(k, &Scalar::from_milli(*milli).as_f64())?
                }
                FlatValue::Text(t) => m.serialize_entry(k, t)?,
            }
        }
        m.end()
    }
}

/// Attributes: numbers where they parse as finite numbers, text otherwise.
struct Attrs<'a>(&'a [(String, String)]);

impl Serialize for Attrs<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let sorted: BTreeMap<&str, &str> = self
            .0
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut m = ser.serialize_map(Some(sorted.len()))?;
        for (k, v) in sorted {
            match v.parse::<f64>().ok().filter(|x| x.is_finite()) {
                Some(x) => m.serialize_entry(k, &x)?,
                None => m.serialize_entry(k, v)?,
            }
        }
        m.end()
    }
}

struct Statuses<'a>(Option<&'a TaskStatus>);

impl Serialize for Statuses<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct One {
            state: &'static str,
            timestamp: f64,
            #[serde(skip_serializing_if = "Option::is_none")]
            healthy: Option<bool>,
        }
        let mut seq = ser.serialize_seq(Some(usize::from(self.0.is_some())))?;
        if let Some(s) = self.0 {
            seq.serialize_element(&One {
                state: s.state.name(),
                timestamp: s.timestamp,
                healthy: s.healthy,
            })?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
pub struct Slave<'a> {
    id: &'a str,
    hostname: &'a str,
    port: u32,
    pid: String,
    attributes: Attrs<'a>,
    registered_time: f64,
    resources: Flat<'a>,
    used_resources: Flat<'a>,
    offered_resources: Flat<'a>,
    reserved_resources: BTreeMap<String, FlatOwned>,
    unreserved_resources: FlatOwned,
    active: bool,
    deactivated: bool,
    version: &'static str,
    capabilities: [&'static str; 3],
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<Value>,
}

/// The v0 (JSON) form of a fault domain, as Mesos prints `DomainInfo`.
pub fn domain_json(d: &FaultDomain) -> Value {
    serde_json::json!({"fault_domain": {"region": {"name": d.region}, "zone": {"name": d.zone}}})
}

/// [`Flat`] of a computed set.
pub struct FlatOwned(Resources);

impl Serialize for FlatOwned {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        Flat(&self.0).serialize(ser)
    }
}

pub fn slave(a: &AgentView) -> Slave<'_> {
    let mut reserved: BTreeMap<String, Resources> = BTreeMap::new();
    for (k, v) in a.resources.iter().filter(|(k, _)| k.is_reserved()) {
        let one = Resources::from_resources(
            "r",
            [tessera_types::Resource {
                key: k.clone(),
                value: v.clone(),
            }],
        )
        .unwrap_or_default();
        let _ = reserved
            .entry(k.role().to_string())
            .or_default()
            .add_assign(&one);
    }
    let port = if a.http_port == 0 { 5051 } else { a.http_port };
    let pid = match a.ip {
        Some(ip) => format!("slave(1)@{ip}:{port}"),
        None => format!("slave(1)@127.0.0.1:{port}"),
    };
    Slave {
        id: a.id.as_str(),
        hostname: &a.hostname,
        port,
        pid,
        attributes: Attrs(&a.attributes),
        registered_time: a.registered_time,
        resources: Flat(&a.resources),
        used_resources: Flat(&a.used),
        offered_resources: Flat(&a.offered),
        reserved_resources: reserved
            .into_iter()
            .map(|(r, res)| (r, FlatOwned(res)))
            .collect(),
        unreserved_resources: FlatOwned(a.resources.unreserved()),
        active: a.state == AgentState::Active,
        deactivated: a.state != AgentState::Active,
        version: MESOS_API_VERSION,
        capabilities: ["MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT"],
        domain: a.domain.as_ref().map(domain_json),
    }
}

#[derive(Serialize)]
pub struct Task<'a> {
    id: &'a str,
    name: &'a str,
    framework_id: &'a str,
    /// Empty for a command task (Mesos), the default executor's id for a task of a group.
    executor_id: &'a str,
    slave_id: &'a str,
    state: &'static str,
    resources: Flat<'a>,
    role: &'a str,
    statuses: Statuses<'a>,
}

pub fn task(t: &TaskEntry) -> Task<'_> {
    Task {
        id: t.info.task_id.as_str(),
        name: &t.info.name,
        framework_id: t.framework_id.as_str(),
        executor_id: t.info.executor_id.as_ref().map_or("", |e| e.as_str()),
        slave_id: t.info.agent_id.as_str(),
        state: t.state.name(),
        resources: Flat(&t.info.resources),
        role: t.role.as_str(),
        statuses: Statuses(t.last_status.as_ref()),
    }
}

#[derive(Serialize)]
struct AllocationInfo<'a> {
    role: &'a str,
}

#[derive(Serialize)]
struct OfferJ<'a> {
    id: &'a str,
    framework_id: &'a str,
    slave_id: &'a str,
    allocation_info: AllocationInfo<'a>,
    resources: Flat<'a>,
}

fn offer(o: &Offer) -> OfferJ<'_> {
    OfferJ {
        id: o.id.as_str(),
        framework_id: o.framework_id.as_str(),
        slave_id: o.agent_id.as_str(),
        allocation_info: AllocationInfo {
            role: o.role.as_str(),
        },
        resources: Flat(&o.resources),
    }
}

/// A default executor as Mesos renders an `ExecutorInfo` in v0 JSON, plus `slave_id`.
#[derive(Serialize)]
pub struct ExecutorJ<'a> {
    executor_id: &'a str,
    name: &'a str,
    framework_id: &'a str,
    slave_id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    command: Value,
    resources: Flat<'a>,
    role: &'a str,
}

pub fn executor(e: &ExecutorView) -> ExecutorJ<'_> {
    ExecutorJ {
        executor_id: e.info.executor_id.as_str(),
        name: e.info.name.as_deref().unwrap_or(""),
        framework_id: e.framework_id.as_str(),
        slave_id: e.agent_id.as_str(),
        kind: "DEFAULT",
        command: serde_json::json!({"argv": [], "uris": []}),
        resources: Flat(&e.info.resources),
        role: e.role.as_str(),
    }
}

/// A framework's tasks, completed tasks, offers and executors, grouped once per request.
#[derive(Default)]
pub struct ByFramework<'a> {
    tasks: HashMap<&'a FrameworkId, Vec<&'a TaskEntry>>,
    completed: HashMap<&'a FrameworkId, Vec<&'a TaskEntry>>,
    offers: HashMap<&'a FrameworkId, Vec<&'a Offer>>,
    executors: HashMap<&'a FrameworkId, Vec<&'a ExecutorView>>,
}

impl<'a> ByFramework<'a> {
    pub fn new(s: &'a MasterState) -> Self {
        let mut b = ByFramework::default();
        for t in &s.tasks {
            b.tasks.entry(&t.framework_id).or_default().push(t);
        }
        for t in &s.completed_tasks {
            b.completed.entry(&t.framework_id).or_default().push(t);
        }
        for o in &s.offers {
            b.offers.entry(&o.framework_id).or_default().push(o);
        }
        for e in &s.executors {
            b.executors.entry(&e.framework_id).or_default().push(e);
        }
        b
    }
}

#[derive(Serialize)]
pub struct Framework<'a> {
    id: &'a str,
    name: &'a str,
    user: &'a str,
    hostname: &'a str,
    webui_url: &'static str,
    failover_timeout: f64,
    checkpoint: bool,
    active: bool,
    connected: bool,
    recovered: bool,
    registered_time: f64,
    unregistered_time: u32,
    capabilities: Vec<Value>,
    roles: Vec<&'a str>,
    role: &'a str,
    used_resources: FlatOwned,
    offered_resources: FlatOwned,
    resources: FlatOwned,
    tasks: Vec<Task<'a>>,
    unreachable_tasks: [(); 0],
    completed_tasks: Vec<Task<'a>>,
    offers: Vec<OfferJ<'a>>,
    executors: Vec<ExecutorJ<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal: Option<&'a str>,
}

pub fn framework<'a>(f: &'a FrameworkView, by: &ByFramework<'a>) -> Framework<'a> {
    const NONE: &[&TaskEntry] = &[];
    let tasks = by.tasks.get(&f.id).map_or(NONE, Vec::as_slice);
    let completed = by.completed.get(&f.id).map_or(NONE, Vec::as_slice);
    let offers = by.offers.get(&f.id).map_or(&[][..], Vec::as_slice);
    let executors = by.executors.get(&f.id).map_or(&[][..], Vec::as_slice);
    let mut used = Resources::new();
    for t in tasks {
        let _ = used.add_assign(&t.info.resources);
    }
    for e in executors {
        let _ = used.add_assign(&e.info.resources);
    }
    let mut offered = Resources::new();
    for o in offers {
        let _ = offered.add_assign(&o.resources);
    }
    let total = used.checked_add(&offered).unwrap_or_default();
    Framework {
        id: f.id.as_str(),
        name: &f.name,
        user: &f.info.user,
        hostname: f.info.hostname.as_deref().unwrap_or(""),
        webui_url: "",
        failover_timeout: f.info.failover_timeout_secs,
        checkpoint: false,
        active: f.state == FrameworkState::Active,
        connected: f.state == FrameworkState::Active,
        recovered: false,
        registered_time: f.registered_time,
        unregistered_time: 0,
        capabilities: f
            .info
            .capabilities
            .iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect(),
        roles: f.roles.iter().map(|r| r.as_str()).collect(),
        role: f.roles.first().map(|r| r.as_str()).unwrap_or("*"),
        used_resources: FlatOwned(used),
        offered_resources: FlatOwned(offered),
        resources: FlatOwned(total),
        tasks: tasks.iter().copied().map(task).collect(),
        unreachable_tasks: [],
        completed_tasks: completed.iter().copied().map(task).collect(),
        offers: offers.iter().copied().map(offer).collect(),
        executors: executors.iter().copied().map(executor).collect(),
        principal: f.info.principal.as_deref(),
    }
}

/// The whole `/master/state` document.
pub fn full_state<'a>(st: &'a HttpState, s: &'a MasterState) -> impl Serialize + 'a {
    #[derive(Serialize)]
    struct LeaderInfo {
        id: String,
        pid: Option<String>,
        port: u32,
        hostname: Option<String>,
    }
    #[derive(Serialize)]
    struct StateJ<'a> {
        version: &'static str,
        build_date: &'static str,
        build_time: u32,
        build_user: &'static str,
        start_time: f64,
        elected_time: f64,
        id: &'a str,
        pid: String,
        hostname: &'a str,
        capabilities: [&'static str; 2],
        activated_slaves: usize,
        deactivated_slaves: usize,
        unreachable_slaves: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        domain: Option<Value>,
        leader: String,
        leader_info: LeaderInfo,
        flags: &'a BTreeMap<String, String>,
        slaves: Vec<Slave<'a>>,
        recovered_slaves: Vec<Slave<'a>>,
        frameworks: Vec<Framework<'a>>,
        completed_frameworks: [(); 0],
        orphan_tasks: [(); 0],
        unregistered_frameworks: [(); 0],
        /// Tessera extension: why roles with demand got nothing in the last allocation run.
        tessera_unmet: &'a [tessera_allocator::Unmet],
    }
    let pid = super::pid(st);
    let active = s
        .agents
        .iter()
        .filter(|a| a.state == AgentState::Active)
        .count();
    let unreachable = s
        .agents
        .iter()
        .filter(|a| a.state == AgentState::Unreachable)
        .count();
    let mi = master_info(&st.identity);
    let by = ByFramework::new(s);
    StateJ {
        version: MESOS_API_VERSION,
        build_date: "",
        build_time: 0,
        build_user: "tessera",
        start_time: s.start_time,
        elected_time: s.start_time,
        id: &s.master_id,
        pid: pid.clone(),
        hostname: &st.identity.hostname,
        capabilities: ["AGENT_UPDATE", "QUOTA_V2"],
        activated_slaves: active,
        deactivated_slaves: s.agents.len() - active - unreachable,
        unreachable_slaves: unreachable,
        domain: st.identity.domain.as_ref().map(domain_json),
        leader: pid,
        leader_info: LeaderInfo {
            id: mi.id,
            pid: mi.pid,
            port: mi.port,
            hostname: mi.hostname,
        },
        flags: st.flags.as_ref(),
        slaves: s
            .agents
            .iter()
            .filter(|a| a.state != AgentState::Recovered)
            .map(slave)
            .collect(),
        recovered_slaves: s
            .agents
            .iter()
            .filter(|a| a.state == AgentState::Recovered)
            .map(slave)
            .collect(),
        frameworks: s.frameworks.iter().map(|f| framework(f, &by)).collect(),
        completed_frameworks: [],
        orphan_tasks: [],
        unregistered_frameworks: [],
        tessera_unmet: &s.unmet,
    }
}

/// Serializes `v` to a JSON response body.
pub fn json_response<T: Serialize>(v: &T, size_hint: usize) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut buf = Vec::with_capacity(size_hint);
    match serde_json::to_writer(&mut buf, v) {
        Ok(()) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            buf,
        )
            .into_response(),
        Err(e) => super::super::encoding::error(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ),
    }
}

//! Shared helpers for the allocator's tests.
#![allow(dead_code)]

use std::time::Duration;
use tessera_allocator::{Allocation, AllocationRun, Allocator, AllocatorConfig, SplitMix64};
use tessera_types::parse::parse_text_resources;
use tessera_types::{AgentId, FrameworkId, Resources, Role, Time};

pub fn res(s: &str) -> Resources {
    parse_text_resources(s).unwrap()
}

pub fn aid(s: &str) -> AgentId {
    AgentId::new(s).unwrap()
}

pub fn fid(s: &str) -> FrameworkId {
    FrameworkId::new(s).unwrap()
}

pub fn role(s: &str) -> Role {
    Role::new(s).unwrap()
}

pub fn t(ms: u64) -> Time {
    Time::from_millis(ms)
}

pub fn secs(s: u64) -> Option<Duration> {
    Some(Duration::from_secs(s))
}

pub fn alloc() -> Allocator {
    Allocator::new(AllocatorConfig::default())
}

pub fn run(a: &mut Allocator, now: u64) -> AllocationRun {
    a.allocate(t(now), &mut SplitMix64::new(now ^ 0x5eed))
}

pub fn add_agents(a: &mut Allocator, n: usize, spec: &str) {
    for i in 0..n {
        a.add_agent(aid(&format!("agent-{i:03}")), res(spec), &[], t(0));
    }
}

pub fn add_fw(a: &mut Allocator, name: &str, r: &str) {
    a.add_framework(fid(name), &[role(r)], &[], t(0));
}

/// Declines an offer entirely.
pub fn decline(a: &mut Allocator, o: &Allocation, refuse: Option<Duration>, now: u64) {
    a.recover(
        &o.framework,
        &o.role,
        &o.agent,
        &o.resources,
        refuse,
        t(now),
    )
    .unwrap();
}

/// Sum of a scalar over offers to `role`.
pub fn scalar_to(offers: &[Allocation], r: &str, name: &str) -> f64 {
    offers
        .iter()
        .filter(|o| o.role.as_str() == r)
        .map(|o| o.resources.scalar(name).as_f64())
        .sum()
}

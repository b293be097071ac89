//! Mesos' `HierarchicalAllocator_BENCHMARK_Test.DeclineOffers` shape: agents
//! `cpus:24;mem:4096;disk:4096;ports:[31000-32000]`, 16 cpus of each already used by one
//! framework, every offer declined with a huge refuse window every round. Measures one
//! steady-state `allocate()` cycle (the declines between cycles are not timed).
//!
//! `cargo bench -p tessera-allocator --bench decline_offers`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tessera_allocator::{Allocator, AllocatorConfig, SplitMix64};
use tessera_types::parse::parse_text_resources;
use tessera_types::{AgentId, FrameworkId, Role, Time};

const AGENT: &str = "cpus:24;mem:4096;disk:4096;ports:[31000-32000]";
const USED: &str = "cpus:16;mem:1024;disk:1024";
const REFUSE: Duration = Duration::from_secs(365 * 24 * 3600);

struct Cluster {
    alloc: Allocator,
    rng: SplitMix64,
    now: u64,
}

impl Cluster {
    fn new(agents: usize, frameworks: usize) -> Self {
        let mut alloc = Allocator::new(AllocatorConfig::default());
        let role = Role::new("*").unwrap();
        let fws: Vec<FrameworkId> = (0..frameworks)
            .map(|i| FrameworkId::new(format!("framework-{i}")).unwrap())
            .collect();
        for f in &fws {
            alloc.add_framework(f.clone(), std::slice::from_ref(&role), &[], Time::ZERO);
        }
        let total = parse_text_resources(AGENT).unwrap();
        let used = parse_text_resources(USED).unwrap();
        for i in 0..agents {
            let id = AgentId::new(format!("agent-{i}")).unwrap();
            let u = [(fws[i % frameworks].clone(), role.clone(), used.clone())];
            alloc.add_agent(id, total.clone(), &u, Time::ZERO);
        }
        let mut c = Cluster {
            alloc,
            rng: SplitMix64::new(42),
            now: 0,
        };
        c.round(); // the first cycle is not steady state
        c
    }

    /// One cycle; returns its duration and declines every offer.
    fn round(&mut self) -> (Duration, usize) {
        self.now += 1000;
        let now = Time::from_millis(self.now);
        let start = Instant::now();
        let run = black_box(self.alloc.allocate(now, &mut self.rng));
        let took = start.elapsed();
        for o in &run.offers {
            self.alloc
                .recover(
                    &o.framework,
                    &o.role,
                    &o.agent,
                    &o.resources,
                    Some(REFUSE),
                    now,
                )
                .expect("offered resources can be declined");
        }
        (took, run.offers.len())
    }
}

fn decline_offers(c: &mut Criterion) {
    let mut group = c.benchmark_group("decline_offers");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for (agents, frameworks) in [(2_000, 2_000), (10_000, 1_000)] {
        let setup = Instant::now();
        let mut cluster = Cluster::new(agents, frameworks);
        let setup = setup.elapsed();
        let (took, offers) = cluster.round();
        eprintln!(
            "decline_offers/{agents}x{frameworks}: setup+first cycle {setup:?}; a steady cycle took {took:?} to make {offers} offers"
        );
        group.bench_function(format!("{agents}_agents_{frameworks}_frameworks"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| cluster.round().0).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, decline_offers);
criterion_main!(benches);

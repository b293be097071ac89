//! Gang placement alone (issue 6 target: ≤ 200 ms): a 10,000-rank gang (1 cpu, 1 GB per
//! rank) over 1,000 simulated agents of 16 cpus / 64 GB, one offer each, for every layout.
//!
//! `cargo bench -p tessera-mpi --bench placement`

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tessera_framework::Offer;
use tessera_mpi::{GangSpec, Layout, place};
use tessera_types::parse::parse_resources;
use tessera_types::{AgentId, OfferId};

const AGENTS: usize = 1_000;
const RANKS: u32 = 10_000;

fn offers() -> Vec<Offer> {
    let res = parse_resources("cpus:16;mem:65536;disk:100000;ports:[31000-32000]").unwrap();
    (0..AGENTS)
        .map(|i| Offer {
            id: OfferId::new(format!("offer-{i}")).unwrap(),
            agent_id: AgentId::new(format!("agent-{i:04}")).unwrap(),
            hostname: format!("host-{i:04}"),
            role: None,
            resources: res.clone(),
            attributes: BTreeMap::new(),
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let offers = offers();
    let per_rank = parse_resources("cpus:1;mem:1024").unwrap();
    let mut group = c.benchmark_group("place_10000_ranks_1000_agents");
    group.sample_size(20);
    for layout in [Layout::Pack, Layout::Spread, Layout::Ppn(16)] {
        let spec = GangSpec::simple(RANKS, per_rank.clone(), layout);
        assert!(place(&spec, &offers).is_ok());
        group.bench_function(layout.to_string(), |b| {
            b.iter(|| black_box(place(black_box(&spec), black_box(&offers)).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Policy: who is offered next. A [`Sorter`] orders *clients* (roles in the role sorter,
//! frameworks in a role's framework sorter) by their allocation; the allocator asks it
//! for an order on every agent visit and reports every allocation change back.
//!
//! Clients are dense integer ids interned by the allocator; `path` (`eng/ml`) gives the
//! position in the role tree for hierarchical sorters and the final tie-break.
//! Quantity vectors are indexed by the allocator's scalar-name index (milli-units).

mod drf;
mod random;
mod tree;

pub use drf::DrfSorter;
pub use random::RandomSorter;
pub use tree::dominant_share;

use serde::{Deserialize, Serialize};

use crate::AllocRng;

/// A client of a sorter: an interned role or framework index.
pub type ClientId = u32;

/// Cluster totals per scalar name (milli-units; zero for names excluded from fair
/// sharing). `version` changes whenever `qty` does, so sorters know to re-sort.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub version: u64,
    pub qty: Vec<u64>,
}

/// Which sorter to use (`--role_sorter`, `--framework_sorter`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SorterKind {
    /// Weighted dominant resource fairness.
    #[default]
    Drf,
    /// Weighted random shuffle (for experiments and benchmarks).
    Random,
}

impl SorterKind {
    /// A new sorter; `hierarchical` builds a role tree from `/`-separated paths.
    pub fn build(self, hierarchical: bool) -> Box<dyn Sorter> {
        match self {
            SorterKind::Drf => Box::new(DrfSorter::new(hierarchical)),
            SorterKind::Random => Box::new(RandomSorter::new(hierarchical)),
        }
    }
}

/// The policy interface. Implementations must be deterministic given the rng.
pub trait Sorter: std::fmt::Debug + Send {
    /// Adds an (active) client; a no-op if present.
    fn add_client(&mut self, client: ClientId, path: &str);
    /// Removes a client and its allocation; a no-op if absent.
    fn remove_client(&mut self, client: ClientId);
    fn contains(&self, client: ClientId) -> bool;
    /// Number of clients (active or not).
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn activate(&mut self, client: ClientId);
    /// An inactive client keeps its allocation but is left out of orders.
    fn deactivate(&mut self, client: ClientId);
    fn is_active(&self, client: ClientId) -> bool;
    /// Weight of the node at `path` (roles); applies to clients added later too.
    fn set_weight(&mut self, path: &str, weight: f64);
    fn allocated(&mut self, client: ClientId, qty: &[u64], totals: &Totals);
    fn unallocated(&mut self, client: ClientId, qty: &[u64], totals: &Totals);
    /// The client's scalar allocation (empty if unknown).
    fn allocation(&self, client: ClientId) -> &[u64];
    /// How many allocations the client received so far (tie-break).
    fn allocation_count(&self, client: ClientId) -> u64;
    /// Weighted dominant share of a client.
    fn share(&self, client: ClientId, totals: &Totals) -> f64;
    /// Weighted dominant share of the subtree at `path` (or the client named `path`).
    fn subtree_share(&self, path: &str, totals: &Totals) -> Option<f64>;
    /// All active clients, in visiting order.
    fn sort_into(&mut self, totals: &Totals, rng: &mut dyn AllocRng, out: &mut Vec<ClientId>);
    /// The first active client in visiting order for which `pred` holds (lazy for DRF).
    fn find_first(
        &mut self,
        totals: &Totals,
        rng: &mut dyn AllocRng,
        pred: &mut dyn FnMut(ClientId) -> bool,
    ) -> Option<ClientId> {
        let mut order = Vec::new();
        self.sort_into(totals, rng, &mut order);
        order.into_iter().find(|c| pred(*c))
    }
}

/// Implements the bookkeeping half of [`Sorter`] by delegating to the shared tree.
macro_rules! delegate_tree {
    () => {
        fn add_client(&mut self, client: ClientId, path: &str) {
            self.tree.add_client(client, path)
        }
        fn remove_client(&mut self, client: ClientId) {
            self.tree.remove_client(client)
        }
        fn contains(&self, client: ClientId) -> bool {
            self.tree.contains(client)
        }
        fn len(&self) -> usize {
            self.tree.len()
        }
        fn activate(&mut self, client: ClientId) {
            self.tree.set_active(client, true)
        }
        fn deactivate(&mut self, client: ClientId) {
            self.tree.set_active(client, false)
        }
        fn is_active(&self, client: ClientId) -> bool {
            self.tree.is_active(client)
        }
        fn set_weight(&mut self, path: &str, weight: f64) {
            self.tree.set_weight(path, weight)
        }
        fn allocated(&mut self, client: ClientId, qty: &[u64], totals: &Totals) {
            self.tree.update(client, qty, true, totals)
        }
        fn unallocated(&mut self, client: ClientId, qty: &[u64], totals: &Totals) {
            self.tree.update(client, qty, false, totals)
        }
        fn allocation(&self, client: ClientId) -> &[u64] {
            self.tree.allocation(client)
        }
        fn allocation_count(&self, client: ClientId) -> u64 {
            self.tree.count(client)
        }
        fn share(&self, client: ClientId, totals: &Totals) -> f64 {
            self.tree.share(client, totals)
        }
        fn subtree_share(&self, path: &str, totals: &Totals) -> Option<f64> {
            self.tree.subtree_share(path, totals)
        }
    };
}
pub(crate) use delegate_tree;

#[cfg(test)]
mod contract {
    //! One suite, run against every sorter (Mesos' `CommonSorterTest`).
    use super::*;
    use crate::SplitMix64;

    fn totals(cpus: u64, mem: u64) -> Totals {
        Totals {
            version: cpus * 31 + mem,
            qty: vec![cpus * 1000, mem * 1000],
        }
    }

    fn order(s: &mut dyn Sorter, t: &Totals) -> Vec<ClientId> {
        let mut out = Vec::new();
        s.sort_into(t, &mut SplitMix64::new(1), &mut out);
        out
    }

    fn sorted(mut v: Vec<ClientId>) -> Vec<ClientId> {
        v.sort_unstable();
        v
    }

    fn add_remove_activate(kind: SorterKind) {
        let t = totals(10, 100);
        let mut s = kind.build(true);
        assert!(s.is_empty());
        s.add_client(0, "a");
        s.add_client(1, "b");
        s.add_client(2, "eng/ml");
        s.add_client(3, "eng");
        s.add_client(3, "eng"); // idempotent
        assert_eq!(s.len(), 4);
        assert_eq!(sorted(order(s.as_mut(), &t)), vec![0, 1, 2, 3]);
        s.deactivate(1);
        assert!(!s.is_active(1) && s.contains(1));
        assert_eq!(sorted(order(s.as_mut(), &t)), vec![0, 2, 3]);
        s.activate(1);
        s.remove_client(2);
        assert!(!s.contains(2));
        assert_eq!(sorted(order(s.as_mut(), &t)), vec![0, 1, 3]);
        s.remove_client(2); // no-op
        s.add_client(2, "eng/web");
        assert_eq!(sorted(order(s.as_mut(), &t)), vec![0, 1, 2, 3]);
        let mut first = None;
        let hit = s.find_first(&t, &mut SplitMix64::new(3), &mut |c| {
            first.get_or_insert(c);
            c == 1
        });
        assert_eq!(hit, Some(1));
    }

    fn bookkeeping(kind: SorterKind) {
        let t = totals(10, 100);
        let mut s = kind.build(false);
        s.add_client(0, "f0");
        s.add_client(1, "f1");
        s.allocated(0, &[2000, 10_000], &t);
        s.allocated(0, &[1000], &t);
        assert_eq!(s.allocation(0), &[3000, 10_000]);
        assert_eq!(s.allocation_count(0), 2);
        assert!((s.share(0, &t) - 0.3).abs() < 1e-9);
        s.unallocated(0, &[3000, 0], &t);
        assert_eq!(s.allocation(0), &[0, 10_000]);
        assert!((s.share(0, &t) - 0.1).abs() < 1e-9);
        assert_eq!(s.allocation(7), &[] as &[u64]);
        s.set_weight("f0", 2.0);
        assert!((s.share(0, &t) - 0.05).abs() < 1e-9);
        s.remove_client(0);
        assert_eq!(s.allocation(0), &[] as &[u64]);
        assert_eq!(order(s.as_mut(), &t), vec![1]);
    }

    fn hierarchical_subtree(kind: SorterKind) {
        let t = totals(10, 100);
        let mut s = kind.build(true);
        s.add_client(0, "eng/ml");
        s.add_client(1, "eng/web");
        s.add_client(2, "ops");
        s.allocated(0, &[2000, 0], &t);
        s.allocated(1, &[3000, 0], &t);
        assert!((s.subtree_share("eng", &t).unwrap() - 0.5).abs() < 1e-9);
        assert!((s.subtree_share("eng/ml", &t).unwrap() - 0.2).abs() < 1e-9);
        assert_eq!(s.subtree_share("nope", &t), None);
    }

    macro_rules! suite {
        ($($m:ident => $kind:expr),*) => {$(
            mod $m {
                use super::*;
                #[test] fn add_remove_activate_() { add_remove_activate($kind) }
                #[test] fn bookkeeping_() { bookkeeping($kind) }
                #[test] fn hierarchical_subtree_() { hierarchical_subtree($kind) }
            }
        )*};
    }
    suite!(drf => SorterKind::Drf, random => SorterKind::Random);

    #[test]
    fn drf_orders_by_share_count_name() {
        let t = totals(10, 100);
        let mut s = SorterKind::Drf.build(false);
        for (c, n) in [(0, "c"), (1, "b"), (2, "a")] {
            s.add_client(c, n);
        }
        assert_eq!(order(s.as_mut(), &t), vec![2, 1, 0]);
        s.allocated(2, &[1000, 0], &t);
        assert_eq!(order(s.as_mut(), &t), vec![1, 0, 2]);
        // Equal share, more allocations sorts later.
        s.allocated(1, &[500, 0], &t);
        s.allocated(1, &[500, 0], &t);
        assert_eq!(order(s.as_mut(), &t), vec![0, 2, 1]);
        // A weight change re-sorts: weight 4 on b halves... quarters its share.
        s.set_weight("b", 4.0);
        assert_eq!(order(s.as_mut(), &t), vec![0, 1, 2]);
    }

    #[test]
    fn drf_hierarchy_compares_subtrees() {
        let t = totals(100, 100);
        let mut s = SorterKind::Drf.build(true);
        s.add_client(0, "eng/ml");
        s.add_client(1, "eng/web");
        s.add_client(2, "ops");
        s.allocated(0, &[10_000, 0], &t);
        s.allocated(1, &[10_000, 0], &t);
        s.allocated(2, &[15_000, 0], &t);
        // eng (20%) > ops (15%) even though each eng leaf (10%) is below ops.
        assert_eq!(order(s.as_mut(), &t), vec![2, 0, 1]);
    }

    #[test]
    fn random_is_seeded_and_weighted() {
        let t = totals(10, 10);
        let mut s = SorterKind::Random.build(false);
        s.add_client(0, "light");
        s.add_client(1, "heavy");
        s.set_weight("heavy", 9.0);
        let mut firsts = [0u32; 2];
        let mut rng = SplitMix64::new(42);
        let mut out = Vec::new();
        for _ in 0..1000 {
            out.clear();
            s.sort_into(&t, &mut rng, &mut out);
            firsts[out[0] as usize] += 1;
        }
        assert!(firsts[1] > 800, "{firsts:?}");
        let mut a = Vec::new();
        let mut b = Vec::new();
        s.sort_into(&t, &mut SplitMix64::new(5), &mut a);
        s.sort_into(&t, &mut SplitMix64::new(5), &mut b);
        assert_eq!(a, b);
    }
}

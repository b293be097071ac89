//! Weighted DRF (Ghodsi et al., NSDI 2011) over a hierarchical role tree, kept sorted
//! incrementally: ascending share/weight, then fewer allocations, then path.

use super::tree::Tree;
use super::{ClientId, Sorter, Totals, delegate_tree};
use crate::AllocRng;

#[derive(Debug, Clone)]
pub struct DrfSorter {
    tree: Tree,
}

impl DrfSorter {
    pub fn new(hierarchical: bool) -> Self {
        DrfSorter {
            tree: Tree::new(hierarchical, true),
        }
    }
}

impl Sorter for DrfSorter {
    delegate_tree!();

    fn sort_into(&mut self, totals: &Totals, _rng: &mut dyn AllocRng, out: &mut Vec<ClientId>) {
        self.tree.refresh(totals);
        self.tree.walk(&mut |c| {
            out.push(c);
            false
        });
    }

    fn find_first(
        &mut self,
        totals: &Totals,
        _rng: &mut dyn AllocRng,
        pred: &mut dyn FnMut(ClientId) -> bool,
    ) -> Option<ClientId> {
        self.tree.refresh(totals);
        self.tree.walk(pred)
    }
}

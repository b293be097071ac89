//! Weighted random order: at every level of the role tree siblings are shuffled with
//! probability proportional to their weight. Randomness comes only from the passed rng.

use super::tree::Tree;
use super::{ClientId, Sorter, Totals, delegate_tree};
use crate::AllocRng;

#[derive(Debug, Clone)]
pub struct RandomSorter {
    tree: Tree,
}

impl RandomSorter {
    pub fn new(hierarchical: bool) -> Self {
        RandomSorter {
            tree: Tree::new(hierarchical, false),
        }
    }
}

impl Sorter for RandomSorter {
    delegate_tree!();

    fn sort_into(&mut self, totals: &Totals, rng: &mut dyn AllocRng, out: &mut Vec<ClientId>) {
        self.tree.refresh(totals);
        self.tree.random_order(rng, out);
    }
}

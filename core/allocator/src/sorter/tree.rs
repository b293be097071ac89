//! The bookkeeping both sorters share: a tree of clients (leaves) under role-path nodes,
//! each node carrying its subtree's scalar allocation, weight and cached share.
//!
//! With `keep_sorted`, every node's children stay ordered by (share / weight, allocation
//! count, path) and an allocation change only moves the touched nodes (binary search +
//! rotate), which is Mesos' "avoid dirtying the sorter" optimisation. A change of totals
//! or weights marks the tree dirty; the next read re-sorts everything once.

use std::cmp::Ordering;
use std::collections::HashMap;

use super::{ClientId, Totals};

const NONE: usize = usize::MAX;
const ROOT: usize = 0;

#[derive(Debug, Clone)]
struct Node {
    path: String,
    leaf: bool,
    parent: usize,
    children: Vec<usize>,
    client: ClientId,
    active: bool,
    weight: f64,
    alloc: Vec<u64>,
    count: u64,
    share: f64,
}

impl Node {
    fn new(path: &str, leaf: bool, parent: usize, client: ClientId, weight: f64) -> Self {
        Node {
            path: path.to_string(),
            leaf,
            parent,
            children: Vec::new(),
            client,
            active: leaf,
            weight,
            alloc: Vec::new(),
            count: 0,
            share: 0.0,
        }
    }
}

/// Dominant share of `alloc` against `totals` (names with a zero total are ignored),
/// divided by `weight`.
pub fn dominant_share(alloc: &[u64], totals: &[u64], weight: f64) -> f64 {
    let mut m = 0.0f64;
    for (a, t) in alloc.iter().zip(totals) {
        if *t > 0 {
            m = m.max(*a as f64 / *t as f64);
        }
    }
    m / weight
}

fn key_cmp(a: &Node, b: &Node) -> Ordering {
    a.share
        .total_cmp(&b.share)
        .then(a.count.cmp(&b.count))
        .then_with(|| a.path.cmp(&b.path))
        .then(a.leaf.cmp(&b.leaf))
}

#[derive(Debug, Clone)]
pub struct Tree {
    hierarchical: bool,
    keep_sorted: bool,
    nodes: Vec<Node>,
    free: Vec<usize>,
    clients: Vec<usize>,
    internal: HashMap<String, usize>,
    weights: HashMap<String, f64>,
    version: Option<u64>,
    len: usize,
}

impl Tree {
    pub fn new(hierarchical: bool, keep_sorted: bool) -> Self {
        Tree {
            hierarchical,
            keep_sorted,
            nodes: vec![Node::new("", false, NONE, 0, 1.0)],
            free: Vec::new(),
            clients: Vec::new(),
            internal: HashMap::new(),
            weights: HashMap::new(),
            version: None,
            len: 0,
        }
    }

    fn clean(&self, totals: &Totals) -> bool {
        self.version == Some(totals.version)
    }

    fn leaf(&self, client: ClientId) -> Option<usize> {
        self.clients
            .get(client as usize)
            .copied()
            .filter(|n| *n != NONE)
    }

    fn alloc_node(&mut self, node: Node) -> usize {
        if let Some(i) = self.free.pop() {
            self.nodes[i] = node;
            i
        } else {
            self.nodes.push(node);
            self.nodes.len() - 1
        }
    }

    /// Puts `n` among its parent's children (sorted position when the tree is clean).
    fn link(&mut self, n: usize) {
        let p = self.nodes[n].parent;
        let mut kids = std::mem::take(&mut self.nodes[p].children);
        if self.keep_sorted && self.version.is_some() {
            let at = kids.partition_point(|c| key_cmp(&self.nodes[*c], &self.nodes[n]).is_lt());
            kids.insert(at, n);
        } else {
            kids.push(n);
        }
        self.nodes[p].children = kids;
    }

    fn unlink(&mut self, n: usize) {
        let p = self.nodes[n].parent;
        if let Some(i) = self.nodes[p].children.iter().position(|c| *c == n) {
            self.nodes[p].children.remove(i);
        }
    }

    fn internal_node(&mut self, path: &str) -> usize {
        if !self.hierarchical {
            return ROOT;
        }
        let mut parent = ROOT;
        let mut end = 0;
        for comp in path.split('/') {
            end += comp.len();
            let prefix = &path[..end];
            parent = match self.internal.get(prefix) {
                Some(n) => *n,
                None => {
                    let w = self.weights.get(prefix).copied().unwrap_or(1.0);
                    let n = self.alloc_node(Node::new(prefix, false, parent, 0, w));
                    self.internal.insert(prefix.to_string(), n);
                    self.link(n);
                    n
                }
            };
            end += 1;
        }
        parent
    }

    pub fn add_client(&mut self, client: ClientId, path: &str) {
        if self.leaf(client).is_some() {
            return;
        }
        let parent = self.internal_node(path);
        let w = self.weights.get(path).copied().unwrap_or(1.0);
        let n = self.alloc_node(Node::new(path, true, parent, client, w));
        self.link(n);
        let c = client as usize;
        if self.clients.len() <= c {
            self.clients.resize(c + 1, NONE);
        }
        self.clients[c] = n;
        self.len += 1;
    }

    pub fn remove_client(&mut self, client: ClientId) {
        let Some(n) = self.leaf(client) else { return };
        let alloc = std::mem::take(&mut self.nodes[n].alloc);
        let parent = self.nodes[n].parent;
        self.unlink(n);
        // The ancestors lose the leaf's allocation; positions are fixed by the next re-sort.
        let mut p = parent;
        while p != NONE {
            for (a, q) in self.nodes[p].alloc.iter_mut().zip(&alloc) {
                *a = a.saturating_sub(*q);
            }
            p = self.nodes[p].parent;
        }
        self.version = None;
        self.free.push(n);
        self.clients[client as usize] = NONE;
        self.len -= 1;
        // Prune internal nodes left without children.
        let mut p = parent;
        while p != ROOT && self.nodes[p].children.is_empty() {
            let up = self.nodes[p].parent;
            self.unlink(p);
            let path = std::mem::take(&mut self.nodes[p].path);
            self.internal.remove(&path);
            self.free.push(p);
            p = up;
        }
    }

    pub fn contains(&self, client: ClientId) -> bool {
        self.leaf(client).is_some()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn set_active(&mut self, client: ClientId, active: bool) {
        if let Some(n) = self.leaf(client) {
            self.nodes[n].active = active;
        }
    }

    pub fn is_active(&self, client: ClientId) -> bool {
        self.leaf(client).is_some_and(|n| self.nodes[n].active)
    }

    pub fn set_weight(&mut self, path: &str, weight: f64) {
        self.weights.insert(path.to_string(), weight);
        for node in &mut self.nodes {
            if node.path == path {
                node.weight = weight;
            }
        }
        self.version = None;
    }

    pub fn allocation(&self, client: ClientId) -> &[u64] {
        match self.leaf(client) {
            Some(n) => &self.nodes[n].alloc,
            None => &[],
        }
    }

    pub fn count(&self, client: ClientId) -> u64 {
        self.leaf(client).map_or(0, |n| self.nodes[n].count)
    }

    pub fn share(&self, client: ClientId, totals: &Totals) -> f64 {
        self.leaf(client).map_or(0.0, |n| {
            let node = &self.nodes[n];
            dominant_share(&node.alloc, &totals.qty, node.weight)
        })
    }

    /// Share of the subtree rooted at `path` (hierarchical) or of the client named `path`.
    pub fn subtree_share(&self, path: &str, totals: &Totals) -> Option<f64> {
        let n = match self.internal.get(path) {
            Some(n) => *n,
            None => (1..self.nodes.len()).find(|i| {
                self.nodes[*i].leaf && self.nodes[*i].path == path && !self.free.contains(i)
            })?,
        };
        let node = &self.nodes[n];
        Some(dominant_share(&node.alloc, &totals.qty, node.weight))
    }

    /// Adds (`add`) or removes `qty` along the path from `client` to the root, keeping
    /// sibling order when the tree is clean.
    pub fn update(&mut self, client: ClientId, qty: &[u64], add: bool, totals: &Totals) {
        let Some(leaf) = self.leaf(client) else {
            return;
        };
        let sorted = self.keep_sorted && self.clean(totals);
        let mut n = leaf;
        while n != NONE {
            let p = self.nodes[n].parent;
            let at = if sorted && p != NONE {
                self.position(p, n)
            } else {
                None
            };
            let node = &mut self.nodes[n];
            if node.alloc.len() < qty.len() {
                node.alloc.resize(qty.len(), 0);
            }
            for (a, q) in node.alloc.iter_mut().zip(qty) {
                *a = if add {
                    a.saturating_add(*q)
                } else {
                    a.saturating_sub(*q)
                };
            }
            if add {
                node.count += 1;
            }
            node.share = dominant_share(&node.alloc, &totals.qty, node.weight);
            if let Some(i) = at {
                self.reposition(p, i);
            }
            n = p;
        }
    }

    fn position(&self, p: usize, n: usize) -> Option<usize> {
        let kids = &self.nodes[p].children;
        match kids.binary_search_by(|c| key_cmp(&self.nodes[*c], &self.nodes[n])) {
            Ok(i) if kids[i] == n => Some(i),
            _ => kids.iter().position(|c| *c == n),
        }
    }

    fn reposition(&mut self, p: usize, i: usize) {
        let mut kids = std::mem::take(&mut self.nodes[p].children);
        let n = kids[i];
        let me = &self.nodes[n];
        if i > 0 && key_cmp(me, &self.nodes[kids[i - 1]]).is_lt() {
            let j = kids[..i].partition_point(|c| key_cmp(&self.nodes[*c], me).is_lt());
            kids[j..=i].rotate_right(1);
        } else if i + 1 < kids.len() && key_cmp(me, &self.nodes[kids[i + 1]]).is_gt() {
            let j = i + 1 + kids[i + 1..].partition_point(|c| key_cmp(&self.nodes[*c], me).is_lt());
            kids[i..j].rotate_left(1);
        }
        self.nodes[p].children = kids;
    }

    /// Recomputes every share and (when sorting) every sibling order, if dirty.
    pub fn refresh(&mut self, totals: &Totals) {
        if self.clean(totals) {
            return;
        }
        for node in &mut self.nodes {
            node.share = dominant_share(&node.alloc, &totals.qty, node.weight);
        }
        if self.keep_sorted {
            for i in 0..self.nodes.len() {
                let mut kids = std::mem::take(&mut self.nodes[i].children);
                kids.sort_by(|a, b| key_cmp(&self.nodes[*a], &self.nodes[*b]));
                self.nodes[i].children = kids;
            }
        }
        self.version = Some(totals.version);
    }

    /// Pre-order walk of active leaves in stored sibling order; stops when `f` says so.
    pub fn walk(&self, f: &mut dyn FnMut(ClientId) -> bool) -> Option<ClientId> {
        self.walk_from(ROOT, f)
    }

    fn walk_from(&self, n: usize, f: &mut dyn FnMut(ClientId) -> bool) -> Option<ClientId> {
        for c in &self.nodes[n].children {
            let node = &self.nodes[*c];
            if node.leaf {
                if node.active && f(node.client) {
                    return Some(node.client);
                }
            } else if let Some(hit) = self.walk_from(*c, f) {
                return Some(hit);
            }
        }
        None
    }

    /// Weighted random pre-order (Efraimidis–Spirakis keys `u^(1/w)` at every level).
    pub fn random_order(&self, rng: &mut dyn crate::AllocRng, out: &mut Vec<ClientId>) {
        self.random_from(ROOT, rng, out);
    }

    fn random_from(&self, n: usize, rng: &mut dyn crate::AllocRng, out: &mut Vec<ClientId>) {
        let mut kids: Vec<(f64, usize)> = self.nodes[n]
            .children
            .iter()
            .map(|c| (rng.unit_open().powf(1.0 / self.nodes[*c].weight), *c))
            .collect();
        kids.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| key_cmp(&self.nodes[a.1], &self.nodes[b.1]))
        });
        for (_, c) in kids {
            let node = &self.nodes[c];
            if node.leaf {
                if node.active {
                    out.push(node.client);
                }
            } else {
                self.random_from(c, rng, out);
            }
        }
    }
}

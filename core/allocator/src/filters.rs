//! Offer filters: after a decline with `refuse_seconds`, the same (framework, role, agent)
//! is not offered a subset of the refused resources until the filter expires.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;
use tessera_types::{Resources, Time};

/// The filter's lifetime as Mesos applies it (MESOS-4302): at least one allocation
/// interval, so a filter always survives the next run.
pub fn effective_refuse(refuse: Duration, interval: Duration) -> Duration {
    refuse.max(interval)
}

/// FxHash (rustc's hasher): fast for small integer keys; only used for lookups, never
/// for iteration order in decisions.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        for b in chunks.remainder() {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

pub type FxBuild = BuildHasherDefault<FxHasher>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferFilter {
    pub resources: Resources,
    pub expires: Time,
}

/// One framework's filters, keyed by (role index, agent index).
#[derive(Debug, Clone, Default)]
pub struct FilterTable {
    map: HashMap<(u32, u32), Vec<OfferFilter>, FxBuild>,
}

impl FilterTable {
    pub fn add(&mut self, role: u32, agent: u32, resources: Resources, expires: Time) {
        self.map
            .entry((role, agent))
            .or_default()
            .push(OfferFilter { resources, expires });
    }

    /// Whether an unexpired filter's refused set contains (⊇) `offer`.
    pub fn is_filtered(&self, role: u32, agent: u32, offer: &Resources, now: Time) -> bool {
        self.map.get(&(role, agent)).is_some_and(|fs| {
            fs.iter()
                .any(|f| f.expires > now && f.resources.contains(offer))
        })
    }

    pub fn clear_roles(&mut self, mut role: impl FnMut(u32) -> bool) {
        self.map.retain(|(r, _), _| !role(*r));
    }

    pub fn clear_agent(&mut self, agent: u32) {
        self.map.retain(|(_, a), _| *a != agent);
    }

    /// Drops expired filters; returns the earliest remaining expiry.
    pub fn expire(&mut self, now: Time) -> Option<Time> {
        let mut next: Option<Time> = None;
        self.map.retain(|_, fs| {
            fs.retain(|f| f.expires > now);
            for f in fs.iter() {
                next = Some(next.map_or(f.expires, |n| n.min(f.expires)));
            }
            !fs.is_empty()
        });
        next
    }

    /// Number of active filters for `role` (all roles when `None`).
    pub fn count(&self, role: Option<u32>) -> usize {
        self.map
            .iter()
            .filter(|((r, _), _)| role.is_none_or(|x| x == *r))
            .map(|(_, fs)| fs.len())
            .sum()
    }
}

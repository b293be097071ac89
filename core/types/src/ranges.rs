//! Inclusive integer ranges (ports), kept sorted, merged and non-overlapping.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::{Error, Result};

/// A normalized set of inclusive ranges: sorted by start, no two overlapping or adjacent.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    /// Builds normalized ranges; a range with `begin > end` is an error naming `field`.
    pub fn new(field: &str, ranges: impl IntoIterator<Item = (u64, u64)>) -> Result<Self> {
        let mut v: Vec<(u64, u64)> = Vec::new();
        for (b, e) in ranges {
            if b > e {
                return Err(Error::invalid(
                    field,
                    format!("range [{b}-{e}] ends before it begins"),
                ));
            }
            v.push((b, e));
        }
        Ok(Self::normalize(v))
    }

    fn normalize(mut v: Vec<(u64, u64)>) -> Self {
        v.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for (b, e) in v {
            match out.last_mut() {
                Some(last) if b <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => out.push((b, e)),
            }
        }
        Ranges(out)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().copied()
    }

    /// Number of integers covered (saturating).
    pub fn count(&self) -> u64 {
        self.0
            .iter()
            .fold(0u64, |acc, (b, e)| acc.saturating_add(e - b + 1))
    }

    pub fn contains_value(&self, x: u64) -> bool {
        self.0.iter().any(|(b, e)| *b <= x && x <= *e)
    }

    /// Whether every integer in `other` is in `self`.
    pub fn contains(&self, other: &Ranges) -> bool {
        other
            .0
            .iter()
            .all(|(ob, oe)| self.0.iter().any(|(b, e)| b <= ob && oe <= e))
    }

    pub fn union(&self, other: &Ranges) -> Ranges {
        Self::normalize(self.0.iter().chain(other.0.iter()).copied().collect())
    }

    /// `self \ other`.
    pub fn difference(&self, other: &Ranges) -> Ranges {
        let mut out = Vec::new();
        for &(b, e) in &self.0 {
            let mut cur = Some((b, e));
            for &(ob, oe) in &other.0 {
                let Some((cb, ce)) = cur else { break };
                if oe < cb || ob > ce {
                    continue;
                }
                if ob > cb {
                    out.push((cb, ob - 1));
                }
                cur = if oe < ce { Some((oe + 1, ce)) } else { None };
            }
            if let Some(c) = cur {
                out.push(c);
            }
        }
        Self::normalize(out)
    }
}

impl fmt::Display for Ranges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, (b, e)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{b}-{e}")?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(v: &[(u64, u64)]) -> Ranges {
        Ranges::new("ports", v.iter().copied()).unwrap()
    }

    #[test]
    fn merges_and_subtracts() {
        assert_eq!(r(&[(5, 9), (1, 4)]), r(&[(1, 9)]));
        assert_eq!(
            r(&[(1, 10)]).difference(&r(&[(3, 4)])),
            r(&[(1, 2), (5, 10)])
        );
        assert!(r(&[(1, 10)]).contains(&r(&[(2, 3), (9, 10)])));
        assert!(!r(&[(1, 10)]).contains(&r(&[(9, 11)])));
        assert!(Ranges::new("ports", [(5, 4)]).is_err());
    }

    proptest! {
        #[test]
        fn difference_then_union_restores(a in proptest::collection::vec((0u64..200, 0u64..20), 0..6),
                                          b in proptest::collection::vec((0u64..200, 0u64..20), 0..6)) {
            let a = r(&a.iter().map(|(s, l)| (*s, s + l)).collect::<Vec<_>>());
            let b = r(&b.iter().map(|(s, l)| (*s, s + l)).collect::<Vec<_>>());
            let d = a.difference(&b);
            prop_assert!(a.contains(&d));
            for x in 0..230 {
                prop_assert_eq!(d.contains_value(x), a.contains_value(x) && !b.contains_value(x));
            }
            if a.contains(&b) {
                prop_assert_eq!(d.union(&b), a);
            }
        }
    }
}

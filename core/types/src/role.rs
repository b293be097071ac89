//! Roles: who resources are allocated and reserved to. Hierarchical with `/` (`eng/ml`);
//! `*` is the default role that unreserved resources belong to.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};

/// A validated role name. Rules follow Mesos: not empty; no empty, `.` or `..` component;
/// no component starting with `-`; `*` only as the whole name; no whitespace or DEL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Role(Arc<str>);

impl Role {
    /// The default role (`*`).
    pub fn any() -> Role {
        Role(Arc::from("*"))
    }

    pub fn new(s: impl Into<String>) -> Result<Role> {
        Self::with_field("role", s)
    }

    /// Like [`Role::new`], naming `field` in the error.
    pub fn with_field(field: &str, s: impl Into<String>) -> Result<Role> {
        let s = s.into();
        if s == "*" {
            return Ok(Role(Arc::from(s)));
        }
        if s.is_empty() {
            return Err(Error::invalid(field, "role must not be empty"));
        }
        if s.len() > 255 {
            return Err(Error::invalid(field, "role is longer than 255 bytes"));
        }
        if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::invalid(field, format!("role '{s}' contains {c:?}")));
        }
        for comp in s.split('/') {
            let why = if comp.is_empty() {
                Some("has an empty component (leading, trailing or double '/')")
            } else if comp == "." || comp == ".." {
                Some("has a '.' or '..' component")
            } else if comp.starts_with('-') {
                Some("has a component starting with '-'")
            } else if comp == "*" {
                Some("uses '*' as a component")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(Error::invalid(field, format!("role '{s}' {why}")));
            }
        }
        Ok(Role(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_any(&self) -> bool {
        &*self.0 == "*"
    }

    /// Components from the top: `eng/ml` → `["eng", "ml"]`.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The parent role, or `None` for a top-level role (and for `*`).
    pub fn parent(&self) -> Option<Role> {
        self.0.rfind('/').map(|i| Role(Arc::from(&self.0[..i])))
    }

    /// The top-level ancestor (`eng/ml` → `eng`). Quota applies at this level.
    pub fn top_level(&self) -> Role {
        Role(Arc::from(self.components().next().unwrap_or("*")))
    }

    /// Whether `self` is a strict ancestor of `other` (`eng` of `eng/ml`).
    pub fn is_strict_ancestor_of(&self, other: &Role) -> bool {
        !self.is_any()
            && other.0.len() > self.0.len()
            && other.0.starts_with(&*self.0)
            && other.0.as_bytes()[self.0.len()] == b'/'
    }

    /// Whether resources reserved to `self` may be allocated to `to`: the same role or a
    /// subrole. Everything is allocatable from `*`.
    pub fn is_allocatable_to(&self, to: &Role) -> bool {
        self.is_any() || self == to || self.is_strict_ancestor_of(to)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Role {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Role::new(s)
    }
}

impl From<Role> for String {
    fn from(r: Role) -> String {
        r.0.to_string()
    }
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Role::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_like_mesos() {
        for bad in [
            "", "/a", "a/", "a//b", ".", "a/..", "-a", "a/-b", "a/*", "a b", "a\tb",
        ] {
            assert!(Role::new(bad).is_err(), "{bad:?} should be rejected");
        }
        for good in ["*", "a", "eng/ml", "a.b", "x-y/z_1"] {
            assert!(Role::new(good).is_ok(), "{good:?} should be accepted");
        }
    }

    #[test]
    fn hierarchy() {
        let eng = Role::new("eng").unwrap();
        let ml = Role::new("eng/ml").unwrap();
        let engine = Role::new("engine").unwrap();
        assert!(eng.is_strict_ancestor_of(&ml));
        assert!(!eng.is_strict_ancestor_of(&engine));
        assert!(eng.is_allocatable_to(&ml));
        assert!(!ml.is_allocatable_to(&eng));
        assert!(Role::any().is_allocatable_to(&ml));
        assert_eq!(ml.parent(), Some(eng.clone()));
        assert_eq!(ml.top_level(), eng);
        assert_eq!(eng.parent(), None);
    }
}

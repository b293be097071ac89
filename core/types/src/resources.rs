//! [`Resources`]: a normalized bag of named quantities, each possibly reserved.
//!
//! A resource is identified by its [`ResourceKey`] (name plus reservation stack); its
//! [`Value`] is a fixed-point scalar, integer ranges or a string set. The bag merges equal
//! keys, drops empty values, and keeps keys ordered, so two equal bags compare equal and
//! iteration order is deterministic. Subtracting something not contained is an error, so an
//! agent's free resources can never go negative.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::ranges::Ranges;
use crate::role::Role;
use crate::scalar::Scalar;
use crate::volume::PersistentVolume;

/// Names whose value type is fixed by convention.
pub const SCALAR_NAMES: [&str; 4] = ["cpus", "mem", "disk", "gpus"];
pub const RANGES_NAMES: [&str; 1] = ["ports"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationKind {
    /// Set by the agent's `--resources` flag; changes need an agent restart.
    Static,
    /// Made at run time by a framework (RESERVE) or an operator.
    Dynamic,
}

/// One level of a reservation stack.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Reservation {
    pub kind: ReservationKind,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

impl Reservation {
    pub fn static_to(role: Role) -> Self {
        Reservation {
            kind: ReservationKind::Static,
            role,
            principal: None,
        }
    }

    pub fn dynamic_to(role: Role, principal: Option<String>) -> Self {
        Reservation {
            kind: ReservationKind::Dynamic,
            role,
            principal,
        }
    }
}

/// What identifies a resource within a bag: its name, reservation stack (empty when
/// unreserved) and, for disk, the persistent volume it holds. Each level of the stack
/// refines the previous one to a subrole.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceKey {
    /// Shared: resource bags are cloned into every offer, allocation and task, and a name
    /// copy should cost a reference count, not an allocation.
    pub name: Arc<str>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reservations: Vec<Reservation>,
    /// A persistent volume (see [`crate::volume`]): never merged with plain disk, and only
    /// ever used whole. Shared for the same reason as `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<Arc<PersistentVolume>>,
}

impl ResourceKey {
    pub fn unreserved(name: impl Into<Arc<str>>) -> Self {
        ResourceKey {
            name: name.into(),
            reservations: Vec::new(),
            volume: None,
        }
    }

    /// A key with `name` and `reservations`, holding no volume.
    pub fn reserved(name: impl Into<Arc<str>>, reservations: Vec<Reservation>) -> Self {
        ResourceKey {
            name: name.into(),
            reservations,
            volume: None,
        }
    }

    /// The role this resource is reserved to (the top of the stack), or `*`.
    pub fn role(&self) -> Role {
        self.reservations
            .last()
            .map(|r| r.role.clone())
            .unwrap_or_else(Role::any)
    }

    pub fn is_reserved(&self) -> bool {
        !self.reservations.is_empty()
    }

    /// Validates name and stack; `field` prefixes the error.
    pub fn validate(&self, field: &str) -> Result<()> {
        validate_name(field, &self.name)?;
        for pair in self.reservations.windows(2) {
            if !pair[0].role.is_strict_ancestor_of(&pair[1].role) {
                return Err(Error::invalid(
                    format!("{field}.reservations"),
                    format!(
                        "'{}' does not refine '{}': each level must be a subrole of the one before",
                        pair[1].role, pair[0].role
                    ),
                ));
            }
        }
        if self.reservations.iter().any(|r| r.role.is_any()) {
            return Err(Error::invalid(
                format!("{field}.reservations"),
                "cannot reserve to the default role '*'",
            ));
        }
        Ok(())
    }
}

/// Checks a resource name: 1–64 bytes of letters, digits, `_`, `-`, `.` or `/`.
pub fn validate_name(field: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(format!("{field}.name"), "must not be empty"));
    }
    if name.len() > 64 {
        return Err(Error::invalid(
            format!("{field}.name"),
            "longer than 64 bytes",
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')))
    {
        return Err(Error::invalid(
            format!("{field}.name"),
            format!("'{name}' contains {c:?}; names use letters, digits, '_', '-', '.', '/'"),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    Scalar(Scalar),
    Ranges(Ranges),
    Set(BTreeSet<String>),
}

impl Value {
    fn is_empty(&self) -> bool {
        match self {
            Value::Scalar(s) => s.is_zero(),
            Value::Ranges(r) => r.is_empty(),
            Value::Set(s) => s.is_empty(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::Ranges(_) => "ranges",
            Value::Set(_) => "set",
        }
    }

    fn contains(&self, o: &Value) -> bool {
        match (self, o) {
            (Value::Scalar(a), Value::Scalar(b)) => a >= b,
            (Value::Ranges(a), Value::Ranges(b)) => a.contains(b),
            (Value::Set(a), Value::Set(b)) => b.is_subset(a),
            _ => false,
        }
    }
}

/// One resource: a key and a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resource {
    #[serde(flatten)]
    pub key: ResourceKey,
    pub value: Value,
}

impl Resource {
    pub fn scalar(name: &str, units: f64) -> Result<Resource> {
        Ok(Resource {
            key: ResourceKey::unreserved(name),
            value: Value::Scalar(Scalar::from_f64(name, units)?),
        })
    }

    /// Validates name, reservation stack, the conventional type of well-known names and a
    /// volume's id and path.
    pub fn validate(&self, field: &str) -> Result<()> {
        self.key.validate(field)?;
        crate::volume::validate_volume_resource(field, &self.key, &self.value)?;
        let name: &str = &self.key.name;
        let want = if SCALAR_NAMES.contains(&name) {
            Some("scalar")
        } else if RANGES_NAMES.contains(&name) {
            Some("ranges")
        } else {
            None
        };
        if let Some(want) = want
            && self.value.kind() != want
        {
            return Err(Error::invalid(
                format!("{field}.type"),
                format!("'{name}' must be {want}, got {}", self.value.kind()),
            ));
        }
        Ok(())
    }
}

/// A normalized bag of resources. See the module doc.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<Resource>", into = "Vec<Resource>")]
pub struct Resources {
    items: BTreeMap<ResourceKey, Value>,
}

impl Resources {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a bag from validated resources, merging equal keys.
    pub fn from_resources(field: &str, rs: impl IntoIterator<Item = Resource>) -> Result<Self> {
        let mut out = Resources::new();
        for (i, r) in rs.into_iter().enumerate() {
            let f = format!("{field}[{i}]");
            r.validate(&f)?;
            if let Some(v) = &r.key.volume
                && out.items.contains_key(&r.key)
            {
                return Err(Error::invalid(
                    format!("{f}.disk"),
                    format!("persistent volume '{}' is listed twice", v.id),
                ));
            }
            out.add_one(&f, r.key, r.value)?;
        }
        Ok(out)
    }

    pub(crate) fn add_one(&mut self, field: &str, key: ResourceKey, value: Value) -> Result<()> {
        if value.is_empty() {
            return Ok(());
        }
        match self.items.get_mut(&key) {
            None => {
                self.items.insert(key, value);
            }
            Some(cur) => {
                let merged = match (&*cur, &value) {
                    (Value::Scalar(a), Value::Scalar(b)) => Value::Scalar(
                        a.checked_add(*b)
                            .ok_or_else(|| Error::Arithmetic(format!("{} overflows", key.name)))?,
                    ),
                    (Value::Ranges(a), Value::Ranges(b)) => Value::Ranges(a.union(b)),
                    (Value::Set(a), Value::Set(b)) => Value::Set(a.union(b).cloned().collect()),
                    (a, b) => {
                        return Err(Error::invalid(
                            field,
                            format!(
                                "'{}' is both {} and {}; one name has one type",
                                key.name,
                                a.kind(),
                                b.kind()
                            ),
                        ));
                    }
                };
                *cur = merged;
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ResourceKey, &Value)> {
        self.items.iter()
    }

    pub fn to_vec(&self) -> Vec<Resource> {
        self.items
            .iter()
            .map(|(k, v)| Resource {
                key: k.clone(),
                value: v.clone(),
            })
            .collect()
    }

    /// `self + other`; errors on overflow or on a name used with two types.
    pub fn checked_add(&self, other: &Resources) -> Result<Resources> {
        let mut out = self.clone();
        out.add_assign(other)?;
        Ok(out)
    }

    /// `self += other`. On error (overflow, or a name used with two types) `self` may hold
    /// part of the sum; use [`Resources::checked_add`] when that matters.
    pub fn add_assign(&mut self, other: &Resources) -> Result<()> {
        for (k, v) in &other.items {
            // Merge in place when the key exists (the common case when summing many
            // tasks): no key clone, no map insert.
            if let Some(cur) = self.items.get_mut(k) {
                match (cur, v) {
                    (Value::Scalar(a), Value::Scalar(b)) => {
                        *a = a
                            .checked_add(*b)
                            .ok_or_else(|| Error::Arithmetic(format!("{} overflows", k.name)))?;
                        continue;
                    }
                    (Value::Ranges(a), Value::Ranges(b)) => {
                        *a = a.union(b);
                        continue;
                    }
                    _ => {}
                }
            }
            self.add_one("resources", k.clone(), v.clone())?;
        }
        Ok(())
    }

    /// Whether every resource of `other` is in `self` (same key, at least as much; exactly
    /// as much for a persistent volume, which cannot be split).
    pub fn contains(&self, other: &Resources) -> bool {
        other.items.iter().all(|(k, v)| {
            self.items.get(k).is_some_and(|mine| {
                if k.volume.is_some() {
                    mine == v
                } else {
                    mine.contains(v)
                }
            })
        })
    }

    /// `self - other`; an error (and no change) unless `self` contains `other`.
    pub fn checked_sub(&self, other: &Resources) -> Result<Resources> {
        let mut out = self.clone();
        out.sub_assign(other)?;
        Ok(out)
    }

    pub fn sub_assign(&mut self, other: &Resources) -> Result<()> {
        if !self.contains(other) {
            return Err(Error::Arithmetic(format!(
                "cannot subtract {other} from {self}: not contained"
            )));
        }
        for (k, v) in &other.items {
            let Some(cur) = self.items.get_mut(k) else {
                continue;
            };
            let next = match (&*cur, v) {
                (Value::Scalar(a), Value::Scalar(b)) => Value::Scalar(a.saturating_sub(*b)),
                (Value::Ranges(a), Value::Ranges(b)) => Value::Ranges(a.difference(b)),
                (Value::Set(a), Value::Set(b)) => Value::Set(a.difference(b).cloned().collect()),
                _ => continue,
            };
            if next.is_empty() {
                self.items.remove(k);
            } else {
                *cur = next;
            }
        }
        Ok(())
    }

    /// Keeps the resources for which `keep` returns true.
    pub fn filter(&self, mut keep: impl FnMut(&ResourceKey, &Value) -> bool) -> Resources {
        Resources {
            items: self
                .items
                .iter()
                .filter(|(k, v)| keep(k, v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    pub fn unreserved(&self) -> Resources {
        self.filter(|k, _| !k.is_reserved())
    }

    pub fn reserved(&self) -> Resources {
        self.filter(|k, _| k.is_reserved())
    }

    /// Resources reserved exactly to `role` (top of the stack).
    pub fn reserved_to(&self, role: &Role) -> Resources {
        self.filter(|k, _| k.is_reserved() && &k.role() == role)
    }

    /// Resources `role` may be offered: unreserved, or reserved to it or an ancestor.
    pub fn allocatable_to(&self, role: &Role) -> Resources {
        self.filter(|k, _| k.role().is_allocatable_to(role))
    }

    /// Scalars only.
    pub fn scalars(&self) -> Resources {
        self.filter(|_, v| matches!(v, Value::Scalar(_)))
    }

    /// Total of a scalar across reservations (zero when absent or not scalar).
    pub fn scalar(&self, name: &str) -> Scalar {
        self.items.iter().filter(|(k, _)| &*k.name == name).fold(
            Scalar::ZERO,
            |acc, (_, v)| match v {
                Value::Scalar(s) => acc.checked_add(*s).unwrap_or(acc),
                _ => acc,
            },
        )
    }

    /// Scalar totals by name, ignoring reservations.
    pub fn quantities(&self) -> BTreeMap<String, Scalar> {
        let mut out: BTreeMap<String, Scalar> = BTreeMap::new();
        for (k, v) in &self.items {
            if let Value::Scalar(s) = v {
                let e = out.entry(k.name.to_string()).or_default();
                *e = e.checked_add(*s).unwrap_or(*e);
            }
        }
        out
    }

    /// All port ranges, across reservations.
    pub fn ranges(&self, name: &str) -> Ranges {
        self.items.iter().filter(|(k, _)| &*k.name == name).fold(
            Ranges::default(),
            |acc, (_, v)| match v {
                Value::Ranges(r) => acc.union(r),
                _ => acc,
            },
        )
    }

    /// The same resources with the top reservation of each removed: what a RESERVE
    /// consumes (`cpus(eng):2` → `cpus:2`), or what an UNRESERVE gives back.
    pub fn pop_reservation(&self) -> Result<Resources> {
        let mut out = Resources::new();
        for (k, v) in &self.items {
            let mut key = k.clone();
            key.reservations.pop();
            out.add_one("resources", key, v.clone())?;
        }
        Ok(out)
    }

    /// Checks that every resource carries a dynamic reservation on top (what RESERVE and
    /// UNRESERVE operate on); `field` names the input in the error.
    pub fn validate_dynamic(&self, field: &str) -> Result<()> {
        if self.is_empty() {
            return Err(Error::invalid(field, "no resources given"));
        }
        for (i, (k, _)) in self.items.iter().enumerate() {
            if k.volume.is_some() {
                return Err(Error::invalid(
                    format!("{field}[{i}].disk"),
                    format!("'{}' is a persistent volume; DESTROY it first", k.name),
                ));
            }
            match k.reservations.last() {
                Some(r) if r.kind == ReservationKind::Dynamic => {}
                _ => {
                    return Err(Error::invalid(
                        format!("{field}[{i}].reservations"),
                        format!("'{}' must carry a DYNAMIC reservation on top", k.name),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The names used in this bag.
    pub fn names(&self) -> BTreeSet<&str> {
        self.items.keys().map(|k| &*k.name).collect()
    }
}

impl TryFrom<Vec<Resource>> for Resources {
    type Error = Error;
    fn try_from(v: Vec<Resource>) -> Result<Self> {
        Resources::from_resources("resources", v)
    }
}

impl From<Resources> for Vec<Resource> {
    fn from(r: Resources) -> Self {
        r.to_vec()
    }
}

/// The Mesos text form: `cpus:4;mem:8192;ports:[31000-32000];cpus(ml):2`.
impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            f.write_str(&k.name)?;
            if k.is_reserved() {
                write!(f, "({})", k.role())?;
            }
            if let Some(v) = &k.volume {
                write!(f, "[{}:{}]", v.id, v.container_path)?;
            }
            f.write_str(":")?;
            match v {
                Value::Scalar(s) => write!(f, "{s}")?,
                Value::Ranges(r) => write!(f, "{r}")?,
                Value::Set(s) => {
                    f.write_str("{")?;
                    for (j, item) in s.iter().enumerate() {
                        if j > 0 {
                            f.write_str(",")?;
                        }
                        f.write_str(item)?;
                    }
                    f.write_str("}")?;
                }
            }
        }
        Ok(())
    }
}

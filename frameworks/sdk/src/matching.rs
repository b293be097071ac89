//! Offer-matching helpers: pure functions over offers and resources.
//!
//! Demands are expressed by resource *name* (`cpus:0.5;mem:64`), whatever the reservation:
//! [`take`] carves them out of the offer's actual resources (reserved ones included), so the
//! result can be launched as is.

use std::collections::BTreeMap;

use tessera_types::{Ranges, Resource, Resources, Scalar, Value};

use crate::scheduler::Offer;

/// Whether an offer (or any bag of resources) holds `needed`, by name, across reservations.
/// Scalars compare totals; ranges (e.g. specific ports) must all be present; sets likewise.
pub fn fits(needed: &Resources, offer: &Resources) -> bool {
    take(needed, offer).is_some()
}

/// Carves `needed` out of `available`: the resources taken (with `available`'s keys, so
/// reservations are kept) and what is left. `None` when it does not fit.
pub fn take(needed: &Resources, available: &Resources) -> Option<(Resources, Resources)> {
    let mut scalar_need: BTreeMap<&str, Scalar> = BTreeMap::new();
    let mut range_need: BTreeMap<&str, Ranges> = BTreeMap::new();
    let mut set_need: BTreeMap<&str, std::collections::BTreeSet<String>> = BTreeMap::new();
    for (k, v) in needed.iter() {
        match v {
            Value::Scalar(s) => {
                let e = scalar_need.entry(&*k.name).or_default();
                *e = e.checked_add(*s)?;
            }
            Value::Ranges(r) => {
                let e = range_need.entry(&*k.name).or_default();
                *e = e.union(r);
            }
            Value::Set(s) => set_need
                .entry(&*k.name)
                .or_default()
                .extend(s.iter().cloned()),
        }
    }
    let mut taken = Vec::new();
    for (k, v) in available.iter() {
        let name = &*k.name;
        let value = match v {
            Value::Scalar(have) => {
                let Some(rem) = scalar_need.get_mut(name).filter(|r| !r.is_zero()) else {
                    continue;
                };
                let t = (*have).min(*rem);
                *rem = rem.saturating_sub(t);
                Value::Scalar(t)
            }
            Value::Ranges(have) => {
                let Some(rem) = range_need.get_mut(name).filter(|r| !r.is_empty()) else {
                    continue;
                };
                let inter = have.difference(&have.difference(rem));
                *rem = rem.difference(&inter);
                Value::Ranges(inter)
            }
            Value::Set(have) => {
                let Some(rem) = set_need.get_mut(name).filter(|r| !r.is_empty()) else {
                    continue;
                };
                let inter: std::collections::BTreeSet<String> =
                    have.intersection(rem).cloned().collect();
                rem.retain(|x| !inter.contains(x));
                Value::Set(inter)
            }
        };
        taken.push(Resource {
            key: k.clone(),
            value,
        });
    }
    let satisfied = scalar_need.values().all(|s| s.is_zero())
        && range_need.values().all(Ranges::is_empty)
        && set_need.values().all(|s| s.is_empty());
    if !satisfied {
        return None;
    }
    let taken = Resources::from_resources("taken", taken).ok()?;
    let rest = available.checked_sub(&taken).ok()?;
    Some((taken, rest))
}

/// The `n` lowest ports of the `ports` ranges in `available`, or `None` if there are fewer.
pub fn pick_ports(available: &Resources, n: usize) -> Option<Vec<u64>> {
    let mut out = Vec::with_capacity(n);
    for (b, e) in available.ranges("ports").iter() {
        let mut p = b;
        while p <= e && out.len() < n {
            out.push(p);
            p += 1;
        }
        if out.len() == n {
            break;
        }
    }
    (out.len() == n).then_some(out)
}

/// An unreserved `ports` resource holding exactly these ports (empty when none).
pub fn ports_resource(ports: &[u64]) -> Resources {
    if ports.is_empty() {
        return Resources::new();
    }
    let ranges = Ranges::new("ports", ports.iter().map(|p| (*p, *p))).unwrap_or_default();
    Resources::from_resources(
        "ports",
        [Resource {
            key: tessera_types::ResourceKey::unreserved("ports"),
            value: Value::Ranges(ranges),
        }],
    )
    .unwrap_or_default()
}

/// A placement constraint on an agent attribute (matched against the text form in
/// [`Offer::attributes`]). No regular expressions: `Like`/`Unlike` match a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constraint {
    /// The attribute exists and equals the value.
    Equals(String, String),
    /// The attribute exists and starts with the prefix.
    Like(String, String),
    /// The attribute is absent or does not start with the prefix.
    Unlike(String, String),
}

impl Constraint {
    pub fn satisfied_by(&self, offer: &Offer) -> bool {
        match self {
            Constraint::Equals(a, v) => offer.attributes.get(a).is_some_and(|x| x == v),
            Constraint::Like(a, p) => offer
                .attributes
                .get(a)
                .is_some_and(|x| x.starts_with(p.as_str())),
            Constraint::Unlike(a, p) => !offer
                .attributes
                .get(a)
                .is_some_and(|x| x.starts_with(p.as_str())),
        }
    }
}

/// Whether the offer satisfies every constraint.
pub fn satisfies(offer: &Offer, constraints: &[Constraint]) -> bool {
    constraints.iter().all(|c| c.satisfied_by(offer))
}

/// What one task needs: resources by name plus a number of ports picked from the offer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Demand {
    pub resources: Resources,
    pub ports: usize,
}

/// One task placed by [`pack`]: its index in the demands, the exact resources to launch it
/// with (ports included) and the ports picked.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub index: usize,
    pub resources: Resources,
    pub ports: Vec<u64>,
}

/// First-fit: carves as many of `demands` (in order, skipping those that no longer fit)
/// out of `available` as possible, at most `limit`; returns the placements and the remainder.
pub fn pack(
    available: &Resources,
    demands: &[Demand],
    limit: usize,
) -> (Vec<Placement>, Resources) {
    let mut rest = available.clone();
    let mut placed = Vec::new();
    for (index, d) in demands.iter().enumerate() {
        if placed.len() >= limit {
            break;
        }
        let ports = match pick_ports(&rest, d.ports) {
            Some(p) => p,
            None => continue,
        };
        let Ok(need) = d.resources.checked_add(&ports_resource(&ports)) else {
            continue;
        };
        if let Some((taken, left)) = take(&need, &rest) {
            placed.push(Placement {
                index,
                resources: taken,
                ports,
            });
            rest = left;
        }
    }
    (placed, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_types::parse::parse_resources;
    use tessera_types::{AgentId, OfferId};

    fn r(s: &str) -> Resources {
        parse_resources(s).unwrap()
    }

    fn offer(attrs: &[(&str, &str)]) -> Offer {
        Offer {
            id: OfferId::new("o").unwrap(),
            agent_id: AgentId::new("a").unwrap(),
            hostname: "h".into(),
            role: None,
            resources: r("cpus:2;mem:1024;ports:[31000-31002,31010-31010]"),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn fits_compares_by_name_across_reservations() {
        let avail = r("cpus:1;cpus(eng):1;mem:100");
        assert!(fits(&r("cpus:2;mem:100"), &avail));
        assert!(!fits(&r("cpus:2.1"), &avail));
        assert!(!fits(&r("gpus:1"), &avail));
        assert!(fits(&Resources::new(), &avail));
        let (taken, rest) = take(&r("cpus:1.5"), &avail).unwrap();
        assert_eq!(taken.scalar("cpus").as_f64(), 1.5);
        assert_eq!(rest.scalar("cpus").as_f64(), 0.5);
        assert_eq!(rest.scalar("mem").as_f64(), 100.0);
        assert!(
            avail.contains(&taken),
            "taken keeps the offer's reservation keys"
        );
    }

    #[test]
    fn ports_are_picked_lowest_first_across_ranges() {
        let o = offer(&[]);
        assert_eq!(pick_ports(&o.resources, 0), Some(vec![]));
        assert_eq!(
            pick_ports(&o.resources, 4),
            Some(vec![31000, 31001, 31002, 31010])
        );
        assert_eq!(pick_ports(&o.resources, 5), None);
        let need = ports_resource(&[31001, 31010]);
        assert!(fits(&need, &o.resources));
        assert!(!fits(&ports_resource(&[31003]), &o.resources));
        let (_, rest) = take(&need, &o.resources).unwrap();
        assert_eq!(pick_ports(&rest, 2), Some(vec![31000, 31002]));
    }

    #[test]
    fn constraints_match_attribute_text() {
        let o = offer(&[("rack", "r1-east"), ("os", "linux")]);
        assert!(satisfies(&o, &[]));
        assert!(Constraint::Equals("os".into(), "linux".into()).satisfied_by(&o));
        assert!(!Constraint::Equals("os".into(), "lin".into()).satisfied_by(&o));
        assert!(!Constraint::Equals("zone".into(), "x".into()).satisfied_by(&o));
        assert!(Constraint::Like("rack".into(), "r1".into()).satisfied_by(&o));
        assert!(!Constraint::Like("zone".into(), "".into()).satisfied_by(&o));
        assert!(Constraint::Unlike("rack".into(), "r2".into()).satisfied_by(&o));
        assert!(Constraint::Unlike("zone".into(), "r2".into()).satisfied_by(&o));
        assert!(!satisfies(
            &o,
            &[
                Constraint::Like("rack".into(), "r1".into()),
                Constraint::Unlike("os".into(), "li".into())
            ]
        ));
    }

    #[test]
    fn pack_carves_tasks_and_returns_the_remainder() {
        let o = offer(&[]);
        let d = Demand {
            resources: r("cpus:0.5;mem:300"),
            ports: 1,
        };
        let big = Demand {
            resources: r("cpus:5"),
            ports: 0,
        };
        let demands = vec![d.clone(), big, d.clone(), d.clone(), d.clone()];
        let (placed, rest) = pack(&o.resources, &demands, usize::MAX);
        // mem 1024 / 300 → 3 tasks; the too-big one is skipped.
        assert_eq!(
            placed.iter().map(|p| p.index).collect::<Vec<_>>(),
            vec![0, 2, 3]
        );
        assert_eq!(placed[0].ports, vec![31000]);
        assert_eq!(placed[2].ports, vec![31002]);
        assert_eq!(rest.scalar("cpus").as_f64(), 0.5);
        assert_eq!(rest.scalar("mem").as_f64(), 124.0);
        assert_eq!(pick_ports(&rest, 1), Some(vec![31010]));
        // Everything placed plus the remainder is exactly the offer.
        let mut sum = rest.clone();
        for p in &placed {
            sum.add_assign(&p.resources).unwrap();
        }
        assert_eq!(sum, o.resources);
        let (placed, _) = pack(&o.resources, &demands, 1);
        assert_eq!(placed.len(), 1);
    }
}

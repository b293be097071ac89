//! Parsing of the two forms Mesos accepts for `--resources`: the text form
//! (`cpus:4;mem:8192;ports:[31000-32000];cpus(ml):2;disks:{a,b}`) and the JSON form (an array
//! of Mesos `Resource` objects). Both produce validated [`Resources`]; errors name the entry.

use serde_json::{Map, Value as Json, json};

use crate::container::VolumeMode;
use crate::error::{Error, Result};
use crate::ranges::Ranges;
use crate::resources::{Reservation, ReservationKind, Resource, ResourceKey, Resources, Value};
use crate::role::Role;
use crate::scalar::Scalar;
use crate::volume::PersistentVolume;

/// Parses either form: JSON when the text starts with `[`, else the text form.
pub fn parse_resources(text: &str) -> Result<Resources> {
    let t = text.trim();
    if t.starts_with('[') {
        let v: Json = serde_json::from_str(t)
            .map_err(|e| Error::invalid("resources", format!("not valid JSON: {e}")))?;
        parse_json_resources("resources", &v)
    } else {
        parse_text_resources(t)
    }
}

/// The text form. Entries are separated by `;`; `name(role):value` reserves statically.
pub fn parse_text_resources(text: &str) -> Result<Resources> {
    let mut out = Vec::new();
    for (i, entry) in text.split(';').enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let field = format!("resources[{i}]");
        let (head, value) = entry.split_once(':').ok_or_else(|| {
            Error::invalid(
                &field,
                format!("'{entry}' is not NAME:VALUE or NAME(ROLE):VALUE"),
            )
        })?;
        let (name, reservations) = match head.find('(') {
            None => (head.trim(), Vec::new()),
            Some(open) => {
                let rest = head[open + 1..].trim_end();
                let role_text = rest.strip_suffix(')').ok_or_else(|| {
                    Error::invalid(&field, format!("'{head}' has an unclosed '('"))
                })?;
                let role = Role::with_field(&format!("{field}.role"), role_text.trim())?;
                let res = if role.is_any() {
                    Vec::new()
                } else {
                    vec![Reservation::static_to(role)]
                };
                (head[..open].trim(), res)
            }
        };
        let key = ResourceKey::reserved(name, reservations);
        let value = parse_text_value(&format!("{field}.{name}"), value.trim())?;
        out.push(Resource { key, value });
    }
    Resources::from_resources("resources", out)
}

fn parse_text_value(field: &str, v: &str) -> Result<Value> {
    if let Some(inner) = v.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| Error::invalid(field, format!("'{v}' is missing the closing ']'")))?;
        let mut ranges = Vec::new();
        for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (b, e) = part.split_once('-').unwrap_or((part, part));
            let num = |s: &str| {
                s.trim().parse::<u64>().map_err(|_| {
                    Error::invalid(
                        field,
                        format!("'{part}' is not a range BEGIN-END of integers"),
                    )
                })
            };
            ranges.push((num(b)?, num(e)?));
        }
        return Ok(Value::Ranges(Ranges::new(field, ranges)?));
    }
    if let Some(inner) = v.strip_prefix('{') {
        let inner = inner
            .strip_suffix('}')
            .ok_or_else(|| Error::invalid(field, format!("'{v}' is missing the closing '}}'")))?;
        let items = inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        return Ok(Value::Set(items));
    }
    let x: f64 = v.parse().map_err(|_| {
        Error::invalid(field, format!("'{v}' is not a number, [ranges] or {{set}}"))
    })?;
    Ok(Value::Scalar(Scalar::from_f64(field, x)?))
}

/// The JSON form: an array of Mesos `Resource` objects.
pub fn parse_json_resources(field: &str, v: &Json) -> Result<Resources> {
    let arr = v
        .as_array()
        .ok_or_else(|| Error::invalid(field, "must be a JSON array of resources"))?;
    let mut out = Vec::with_capacity(arr.len());
    for (i, r) in arr.iter().enumerate() {
        out.push(parse_json_resource(&format!("{field}[{i}]"), r)?);
    }
    Resources::from_resources(field, out)
}

fn get_str<'a>(obj: &'a Map<String, Json>, field: &str, key: &str) -> Result<Option<&'a str>> {
    match obj.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::invalid(format!("{field}.{key}"), "must be a string")),
    }
}

fn get_u64(v: &Json, field: &str) -> Result<u64> {
    v.as_u64()
        .ok_or_else(|| Error::invalid(field, "must be a non-negative integer"))
}

/// One Mesos `Resource` object (`name`, `type`, `scalar`/`ranges`/`set`, `role`,
/// `reservation`, `reservations`, `disk` for a persistent volume). Unknown fields are
/// ignored, as Mesos does.
pub fn parse_json_resource(field: &str, v: &Json) -> Result<Resource> {
    let obj = v
        .as_object()
        .ok_or_else(|| Error::invalid(field, "must be a JSON object"))?;
    let name = get_str(obj, field, "name")?
        .ok_or_else(|| Error::invalid(format!("{field}.name"), "is required"))?;
    let ty = get_str(obj, field, "type")?.unwrap_or("SCALAR");
    let value = match ty {
        "SCALAR" => {
            let f = format!("{field}.scalar.value");
            let x = obj
                .get("scalar")
                .and_then(|s| s.get("value"))
                .ok_or_else(|| Error::invalid(&f, "is required for a SCALAR"))?
                .as_f64()
                .ok_or_else(|| Error::invalid(&f, "must be a finite number"))?;
            Value::Scalar(Scalar::from_f64(&f, x)?)
        }
        "RANGES" => {
            let f = format!("{field}.ranges.range");
            let list = obj
                .get("ranges")
                .and_then(|r| r.get("range"))
                .and_then(Json::as_array)
                .ok_or_else(|| Error::invalid(&f, "is required for RANGES"))?;
            let mut rs = Vec::new();
            for (j, r) in list.iter().enumerate() {
                let b = get_u64(
                    r.get("begin").unwrap_or(&Json::Null),
                    &format!("{f}[{j}].begin"),
                )?;
                let e = get_u64(
                    r.get("end").unwrap_or(&Json::Null),
                    &format!("{f}[{j}].end"),
                )?;
                rs.push((b, e));
            }
            Value::Ranges(Ranges::new(&f, rs)?)
        }
        "SET" => {
            let f = format!("{field}.set.item");
            let list = obj
                .get("set")
                .and_then(|s| s.get("item"))
                .and_then(Json::as_array)
                .ok_or_else(|| Error::invalid(&f, "is required for a SET"))?;
            let mut items = std::collections::BTreeSet::new();
            for (j, it) in list.iter().enumerate() {
                let s = it
                    .as_str()
                    .ok_or_else(|| Error::invalid(format!("{f}[{j}]"), "must be a string"))?;
                items.insert(s.to_string());
            }
            Value::Set(items)
        }
        other => {
            return Err(Error::invalid(
                format!("{field}.type"),
                format!("'{other}' is not SCALAR, RANGES or SET"),
            ));
        }
    };
    let reservations = parse_json_reservations(field, obj)?;
    let mut key = ResourceKey::reserved(name, reservations);
    key.volume = parse_json_disk(field, obj)?.map(std::sync::Arc::new);
    Ok(Resource { key, value })
}

/// The `disk` of a Mesos `Resource` object: a persistent volume (`persistence` and
/// `volume` together), or nothing. Disk sources are not supported.
fn parse_json_disk(field: &str, obj: &Map<String, Json>) -> Result<Option<PersistentVolume>> {
    let Some(disk) = obj.get("disk").filter(|d| !d.is_null()) else {
        return Ok(None);
    };
    let f = format!("{field}.disk");
    let disk = disk
        .as_object()
        .ok_or_else(|| Error::invalid(&f, "must be a JSON object"))?;
    if disk.get("source").is_some_and(|s| !s.is_null()) {
        return Err(Error::invalid(
            format!("{f}.source"),
            "disk sources are not supported",
        ));
    }
    let persistence = disk.get("persistence").filter(|p| !p.is_null());
    let volume = disk.get("volume").filter(|v| !v.is_null());
    let (p, v) = match (persistence, volume) {
        (None, None) => return Ok(None),
        (Some(p), Some(v)) => (p, v),
        (None, Some(_)) => {
            return Err(Error::invalid(
                format!("{f}.persistence"),
                "is required with 'volume' (only persistent volumes are supported)",
            ));
        }
        (Some(_), None) => {
            return Err(Error::invalid(
                format!("{f}.volume"),
                "is required for a persistent volume",
            ));
        }
    };
    let (pf, vf) = (format!("{f}.persistence"), format!("{f}.volume"));
    let p = p
        .as_object()
        .ok_or_else(|| Error::invalid(&pf, "must be a JSON object"))?;
    let v = v
        .as_object()
        .ok_or_else(|| Error::invalid(&vf, "must be a JSON object"))?;
    let mode = match get_str(v, &vf, "mode")? {
        None | Some("RW") => VolumeMode::Rw,
        Some("RO") => VolumeMode::Ro,
        Some(o) => {
            return Err(Error::invalid(
                format!("{vf}.mode"),
                format!("'{o}' is not RW or RO"),
            ));
        }
    };
    if get_str(v, &vf, "host_path")?.is_some() {
        return Err(Error::invalid(
            format!("{vf}.host_path"),
            "is chosen by the agent for a persistent volume",
        ));
    }
    Ok(Some(PersistentVolume {
        id: get_str(p, &pf, "id")?
            .ok_or_else(|| Error::invalid(format!("{pf}.id"), "is required"))?
            .to_string(),
        principal: get_str(p, &pf, "principal")?.map(str::to_string),
        container_path: get_str(v, &vf, "container_path")?
            .ok_or_else(|| Error::invalid(format!("{vf}.container_path"), "is required"))?
            .to_string(),
        mode,
    }))
}

fn parse_json_reservation(field: &str, v: &Json, default: ReservationKind) -> Result<Reservation> {
    let obj = v
        .as_object()
        .ok_or_else(|| Error::invalid(field, "must be a JSON object"))?;
    let kind = match get_str(obj, field, "type")? {
        None => default,
        Some("STATIC") => ReservationKind::Static,
        Some("DYNAMIC") => ReservationKind::Dynamic,
        Some(o) => {
            return Err(Error::invalid(
                format!("{field}.type"),
                format!("'{o}' is not STATIC or DYNAMIC"),
            ));
        }
    };
    let role = get_str(obj, field, "role")?
        .ok_or_else(|| Error::invalid(format!("{field}.role"), "is required"))?;
    let role = Role::with_field(&format!("{field}.role"), role)?;
    Ok(Reservation {
        kind,
        role,
        principal: get_str(obj, field, "principal")?.map(str::to_string),
    })
}

fn parse_json_reservations(field: &str, obj: &Map<String, Json>) -> Result<Vec<Reservation>> {
    if let Some(list) = obj.get("reservations").and_then(Json::as_array)
        && !list.is_empty()
    {
        return list
            .iter()
            .enumerate()
            .map(|(i, r)| {
                parse_json_reservation(
                    &format!("{field}.reservations[{i}]"),
                    r,
                    ReservationKind::Dynamic,
                )
            })
            .collect();
    }
    // The pre-refinement form: `role` (static when not "*") plus an optional `reservation`.
    let role = match get_str(obj, field, "role")? {
        None => Role::any(),
        Some(r) => Role::with_field(&format!("{field}.role"), r)?,
    };
    if role.is_any() {
        return Ok(Vec::new());
    }
    let kind = if obj.get("reservation").is_some_and(|r| !r.is_null()) {
        ReservationKind::Dynamic
    } else {
        ReservationKind::Static
    };
    let principal = obj
        .get("reservation")
        .and_then(|r| r.get("principal"))
        .and_then(Json::as_str)
        .map(str::to_string);
    Ok(vec![Reservation {
        kind,
        role,
        principal,
    }])
}

/// Renders resources in the Mesos JSON form (with the `reservations` stack).
pub fn to_json(resources: &Resources) -> Json {
    Json::Array(
        resources
            .iter()
            .map(|(k, v)| {
                let mut o = Map::new();
                o.insert("name".into(), json!(k.name));
                match v {
                    Value::Scalar(s) => {
                        o.insert("type".into(), json!("SCALAR"));
                        o.insert("scalar".into(), json!({ "value": s.as_f64() }));
                    }
                    Value::Ranges(r) => {
                        o.insert("type".into(), json!("RANGES"));
                        let list: Vec<Json> = r
                            .iter()
                            .map(|(b, e)| json!({"begin": b, "end": e}))
                            .collect();
                        o.insert("ranges".into(), json!({ "range": list }));
                    }
                    Value::Set(s) => {
                        o.insert("type".into(), json!("SET"));
                        o.insert("set".into(), json!({ "item": s }));
                    }
                }
                if k.is_reserved() {
                    let rs: Vec<Json> = k
                        .reservations
                        .iter()
                        .map(|r| {
                            let mut m = json!({
                                "type": match r.kind {
                                    ReservationKind::Static => "STATIC",
                                    ReservationKind::Dynamic => "DYNAMIC",
                                },
                                "role": r.role.as_str(),
                            });
                            if let Some(p) = &r.principal {
                                m["principal"] = json!(p);
                            }
                            m
                        })
                        .collect();
                    o.insert("reservations".into(), Json::Array(rs));
                }
                if let Some(v) = &k.volume {
                    let mut p = json!({ "id": v.id });
                    if let Some(pr) = &v.principal {
                        p["principal"] = json!(pr);
                    }
                    let mode = match v.mode {
                        VolumeMode::Rw => "RW",
                        VolumeMode::Ro => "RO",
                    };
                    o.insert(
                        "disk".into(),
                        json!({"persistence": p,
                               "volume": {"container_path": v.container_path, "mode": mode}}),
                    );
                }
                Json::Object(o)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn text_form_like_mesos() {
        let r =
            parse_resources("cpus:4;mem:8192;ports:[31000-32000];cpus(ml):2;disks:{a,b}").unwrap();
        assert_eq!(r.scalar("cpus"), Scalar::from_units(6));
        assert_eq!(r.unreserved().scalar("cpus"), Scalar::from_units(4));
        let ml = Role::new("ml").unwrap();
        assert_eq!(r.reserved_to(&ml).scalar("cpus"), Scalar::from_units(2));
        assert_eq!(r.ranges("ports").count(), 1001);
        assert_eq!(
            r.to_string(),
            "cpus:4;cpus(ml):2;disks:{a,b};mem:8192;ports:[31000-32000]"
        );
        assert_eq!(parse_resources(&r.to_string()).unwrap(), r);
    }

    #[test]
    fn text_errors_name_the_entry() {
        let e = parse_resources("cpus:4;mem:lots").unwrap_err();
        assert_eq!(e.field(), Some("resources[1].mem"));
        assert!(parse_resources("cpus:-1").is_err());
        assert!(parse_resources("cpus:NaN").is_err());
        assert!(parse_resources("cpus:inf").is_err());
        assert!(parse_resources("cpus").is_err());
        assert!(parse_resources("cpus(a b):1").is_err());
        assert!(parse_resources("ports:[5-1]").is_err());
        assert!(
            parse_resources("cpus:[1-2]").is_err(),
            "cpus must be scalar"
        );
        assert!(parse_resources("ports:[1-2];ports:3").is_err());
    }

    #[test]
    fn json_form_like_mesos() {
        let text = r#"[
          {"name":"cpus","type":"SCALAR","scalar":{"value":4}},
          {"name":"mem","type":"SCALAR","scalar":{"value":1024},"role":"eng"},
          {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":1,"end":10}]}},
          {"name":"disk","type":"SCALAR","scalar":{"value":5},
           "reservations":[{"type":"STATIC","role":"eng"},{"type":"DYNAMIC","role":"eng/ml","principal":"p"}]},
          {"name":"cpus","scalar":{"value":0.5},"unknown_field":true}
        ]"#;
        let r = parse_resources(text).unwrap();
        assert_eq!(r.unreserved().scalar("cpus"), Scalar::from_milli(4500));
        let ml = Role::new("eng/ml").unwrap();
        assert_eq!(r.reserved_to(&ml).scalar("disk"), Scalar::from_units(5));
        assert!(r.allocatable_to(&ml).scalar("mem") > Scalar::ZERO);
        let back = parse_json_resources("resources", &to_json(&r)).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn json_errors_name_the_field() {
        let bad = r#"[{"name":"cpus","type":"SCALAR","scalar":{"value":-2}}]"#;
        assert_eq!(
            parse_resources(bad).unwrap_err().field(),
            Some("resources[0].scalar.value")
        );
        let bad = r#"[{"type":"SCALAR","scalar":{"value":2}}]"#;
        assert_eq!(
            parse_resources(bad).unwrap_err().field(),
            Some("resources[0].name")
        );
        let bad = r#"[{"name":"x","type":"TEXT"}]"#;
        assert_eq!(
            parse_resources(bad).unwrap_err().field(),
            Some("resources[0].type")
        );
        let bad =
            r#"[{"name":"d","scalar":{"value":1},"reservations":[{"role":"a/b"},{"role":"a"}]}]"#;
        assert!(
            parse_resources(bad).is_err(),
            "a refinement must narrow the role"
        );
    }

    fn arb_resources() -> impl Strategy<Value = Resources> {
        let entry = (
            prop_oneof![Just("cpus"), Just("mem"), Just("gpus"), Just("foo")],
            prop_oneof![Just(None), Just(Some("a")), Just(Some("a/b"))],
            0u64..10_000,
        );
        proptest::collection::vec(entry, 0..6).prop_map(|v| {
            let text: Vec<String> = v
                .iter()
                .map(|(n, role, m)| match role {
                    None => format!("{n}:{}", Scalar::from_milli(*m)),
                    Some(r) => format!("{n}({r}):{}", Scalar::from_milli(*m)),
                })
                .collect();
            parse_text_resources(&text.join(";")).unwrap()
        })
    }

    proptest! {
        #[test]
        fn add_then_sub_is_identity(a in arb_resources(), b in arb_resources()) {
            let sum = a.checked_add(&b).unwrap();
            prop_assert!(sum.contains(&a));
            prop_assert!(sum.contains(&b));
            prop_assert_eq!(sum.checked_sub(&b).unwrap(), a.clone());
            // Subtracting something not contained fails and changes nothing.
            if !a.contains(&b) {
                prop_assert!(a.checked_sub(&b).is_err());
            }
        }

        #[test]
        fn text_round_trips(a in arb_resources()) {
            prop_assert_eq!(parse_resources(&a.to_string()).unwrap(), a.clone());
            prop_assert_eq!(parse_json_resources("r", &to_json(&a)).unwrap(), a);
        }
    }
}

#[cfg(test)]
mod reservation_tests {
    use super::*;

    #[test]
    fn pop_reservation_and_dynamic_check() {
        let r = parse_json_resources(
            "r",
            &serde_json::json!([{"name":"cpus","scalar":{"value":2},
                "reservations":[{"type":"DYNAMIC","role":"eng","principal":"p"}]}]),
        )
        .unwrap();
        r.validate_dynamic("resources").unwrap();
        assert_eq!(
            r.pop_reservation().unwrap(),
            parse_resources("cpus:2").unwrap()
        );
        let stat = parse_resources("cpus(eng):2").unwrap();
        assert!(
            stat.validate_dynamic("resources").is_err(),
            "static reservations cannot be unreserved"
        );
        assert!(Resources::new().validate_dynamic("resources").is_err());
    }
}

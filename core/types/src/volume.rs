//! Persistent volumes (Mesos `Resource.DiskInfo` with `persistence` and `volume`): reserved
//! disk that a framework turned into a named directory on one agent, which outlives the
//! tasks that use it.
//!
//! A volume is part of its resource's [`ResourceKey`](crate::ResourceKey), so it never
//! merges with plain disk or with another volume, and a task must use it whole (a bag
//! contains a volume only when it holds exactly the same amount, as in Mesos).
//!
//! The checks of CREATE and DESTROY are pure functions here ([`validate_create`],
//! [`validate_destroy`]); the master applies them against what the agent already has.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::container::VolumeMode;
use crate::error::{Error, Result};
use crate::resources::{ResourceKey, Resources, Value};
use crate::role::Role;

/// Longest persistence id, in bytes (as for every other id).
pub const MAX_PERSISTENCE_ID: usize = 255;
/// Longest container path of a volume, in bytes.
pub const MAX_CONTAINER_PATH: usize = 4096;

/// A persistent volume as carried by a `disk` resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PersistentVolume {
    /// Unique per role on an agent; names the directory
    /// `<work_dir>/volumes/roles/<role>/<id>` on the agent.
    pub id: String,
    /// Who created it (Mesos `Persistence.principal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Where tasks find it, relative to their sandbox.
    pub container_path: String,
    #[serde(default)]
    pub mode: VolumeMode,
}

impl PersistentVolume {
    /// Checks the id and the container path; `field` names the resource's `disk`.
    pub fn validate(&self, field: &str) -> Result<()> {
        validate_persistence_id(&format!("{field}.persistence.id"), &self.id)?;
        validate_container_path(
            &format!("{field}.volume.container_path"),
            &self.container_path,
        )
    }
}

/// A persistence id names a directory: 1–255 bytes, no `/`, NUL or control characters, and
/// not `.` or `..`.
pub fn validate_persistence_id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_PERSISTENCE_ID {
        return Err(Error::invalid(
            field,
            format!("must be 1-{MAX_PERSISTENCE_ID} bytes, got {}", id.len()),
        ));
    }
    if id == "." || id == ".." {
        return Err(Error::invalid(field, format!("'{id}' is not a usable id")));
    }
    if let Some(c) = id
        .chars()
        .find(|c| *c == '/' || *c == '\\' || c.is_control() || c.is_whitespace())
    {
        return Err(Error::invalid(
            field,
            format!("'{id}' contains {c:?}; ids name a directory"),
        ));
    }
    Ok(())
}

/// A volume's container path is relative to the sandbox and stays inside it: not empty,
/// not absolute, no `..` component, no NUL.
pub fn validate_container_path(field: &str, path: &str) -> Result<()> {
    if path.is_empty() || path.len() > MAX_CONTAINER_PATH {
        return Err(Error::invalid(
            field,
            format!("must be 1-{MAX_CONTAINER_PATH} bytes, got {}", path.len()),
        ));
    }
    if path.starts_with('/') {
        return Err(Error::invalid(
            field,
            format!("'{path}' is absolute; a persistent volume's path is relative to the sandbox"),
        ));
    }
    if path.contains('\0') {
        return Err(Error::invalid(field, "contains a NUL byte"));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(Error::invalid(
            field,
            format!("'{path}' has a '..' component; it must stay inside the sandbox"),
        ));
    }
    if path.split('/').all(|c| c.is_empty() || c == ".") {
        return Err(Error::invalid(
            field,
            format!("'{path}' names the sandbox itself"),
        ));
    }
    Ok(())
}

/// Structural checks of a resource that carries a volume (run by
/// [`Resource::validate`](crate::Resource::validate)): it is scalar `disk`.
pub(crate) fn validate_volume_resource(
    field: &str,
    key: &ResourceKey,
    value: &Value,
) -> Result<()> {
    let Some(v) = &key.volume else {
        return Ok(());
    };
    if &*key.name != "disk" || !matches!(value, Value::Scalar(_)) {
        return Err(Error::invalid(
            format!("{field}.disk"),
            format!(
                "only scalar 'disk' can be a persistent volume, not '{}'",
                key.name
            ),
        ));
    }
    v.validate(&format!("{field}.disk"))
}

/// Checks the volumes of a CREATE (`field` is e.g. `create.volumes`): each is reserved disk
/// carrying a volume, no id twice, and no id already used by a volume of the same role in
/// `existing` (the agent's volumes).
pub fn validate_create(field: &str, volumes: &Resources, existing: &Resources) -> Result<()> {
    validate_listed(field, volumes)?;
    let taken: BTreeSet<(Role, &str)> = existing
        .iter()
        .filter_map(|(k, _)| k.volume.as_ref().map(|v| (k.role(), v.id.as_str())))
        .collect();
    let mut seen: BTreeSet<(Role, &str)> = BTreeSet::new();
    for (i, (k, _)) in volumes.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let Some(v) = &k.volume else { continue };
        if !k.is_reserved() {
            return Err(Error::invalid(
                format!("{f}.reservations"),
                "a persistent volume must be made of reserved disk; RESERVE it first",
            ));
        }
        let id = (k.role(), v.id.as_str());
        if taken.contains(&id) || !seen.insert(id) {
            return Err(Error::invalid(
                format!("{f}.disk.persistence.id"),
                format!(
                    "'{}' is already used by a persistent volume of role '{}' on this agent",
                    v.id,
                    k.role()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks the volumes of a DESTROY: each carries a volume.
pub fn validate_destroy(field: &str, volumes: &Resources) -> Result<()> {
    validate_listed(field, volumes)
}

fn validate_listed(field: &str, volumes: &Resources) -> Result<()> {
    if volumes.is_empty() {
        return Err(Error::invalid(field, "no volumes given"));
    }
    for (i, (k, _)) in volumes.iter().enumerate() {
        if k.volume.is_none() {
            return Err(Error::invalid(
                format!("{field}[{i}].disk.persistence"),
                format!("'{}' is not a persistent volume", k.name),
            ));
        }
    }
    Ok(())
}

impl Resources {
    /// The resources that carry a persistent volume.
    pub fn volumes(&self) -> Resources {
        self.filter(|k, _| k.volume.is_some())
    }

    /// The same resources with their volumes removed: what a CREATE consumes, or what a
    /// DESTROY gives back.
    pub fn without_volumes(&self) -> Result<Resources> {
        let mut out = Resources::new();
        for (k, v) in self.iter() {
            let mut key = k.clone();
            key.volume = None;
            out.add_one("resources", key, v.clone())?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_json_resources;
    use serde_json::json;

    fn vol(id: &str, path: &str, role: Option<&str>) -> serde_json::Value {
        let mut r = json!({"name": "disk", "type": "SCALAR", "scalar": {"value": 64},
            "disk": {"persistence": {"id": id, "principal": "p"},
                     "volume": {"container_path": path, "mode": "RW"}}});
        if let Some(role) = role {
            r["reservations"] = json!([{"type": "DYNAMIC", "role": role, "principal": "p"}]);
        }
        r
    }

    fn bag(v: serde_json::Value) -> Resources {
        parse_json_resources("volumes", &v).expect("valid resources")
    }

    #[test]
    fn ids_name_a_directory() {
        assert!(validate_persistence_id("id", "vol-1.a_b").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "a\0b"] {
            assert!(validate_persistence_id("id", bad).is_err(), "{bad:?}");
        }
        assert!(validate_persistence_id("id", &"x".repeat(256)).is_err());
    }

    #[test]
    fn container_paths_stay_in_the_sandbox() {
        for good in ["data", "a/b", "./data", "data/"] {
            assert!(validate_container_path("p", good).is_ok(), "{good:?}");
        }
        for bad in ["", "/data", "../x", "a/../../x", "a/..", ".", "./", "a\0"] {
            let e = validate_container_path("p", bad).unwrap_err();
            assert_eq!(e.field(), Some("p"), "{bad:?}");
        }
    }

    #[test]
    fn a_volume_never_merges_with_plain_disk_and_is_used_whole() {
        let plain = bag(
            json!([{"name": "disk", "type": "SCALAR", "scalar": {"value": 64},
            "reservations": [{"type": "DYNAMIC", "role": "eng", "principal": "p"}]}]),
        );
        let v = bag(json!([vol("v1", "data", Some("eng"))]));
        let both = plain.checked_add(&v).unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!(both.volumes(), v);
        assert_eq!(v.without_volumes().unwrap(), plain);
        assert_eq!(
            parse_json_resources("v", &crate::parse::to_json(&v)).unwrap(),
            v,
            "the JSON form keeps the volume"
        );
        assert_eq!(v.to_string(), "disk(eng)[v1:data]:64");
        // Half a volume is not in the bag.
        let half = bag(
            json!([{"name": "disk", "type": "SCALAR", "scalar": {"value": 32},
            "reservations": [{"type": "DYNAMIC", "role": "eng", "principal": "p"}],
            "disk": {"persistence": {"id": "v1", "principal": "p"},
                     "volume": {"container_path": "data", "mode": "RW"}}}]),
        );
        assert!(!both.contains(&half));
        assert!(both.checked_sub(&half).is_err());
        assert_eq!(both.checked_sub(&v).unwrap(), plain);
    }

    #[test]
    fn a_volume_listed_twice_is_refused() {
        let e = parse_json_resources(
            "volumes",
            &json!([
                vol("v1", "data", Some("eng")),
                vol("v1", "data", Some("eng"))
            ]),
        )
        .unwrap_err();
        assert_eq!(e.field(), Some("volumes[1].disk"), "{e}");
    }

    #[test]
    fn only_disk_can_be_a_volume() {
        let mut r = vol("v1", "data", Some("eng"));
        r["name"] = json!("mem");
        let e = parse_json_resources("rs", &json!([r])).unwrap_err();
        assert_eq!(e.field(), Some("rs[0].disk"), "{e}");
        let e = parse_json_resources("rs", &json!([vol("v1", "../x", Some("eng"))])).unwrap_err();
        assert_eq!(e.field(), Some("rs[0].disk.volume.container_path"), "{e}");
    }

    #[test]
    fn create_needs_reserved_disk_and_fresh_ids() {
        let existing = bag(json!([vol("v1", "data", Some("eng"))]));
        let unreserved = bag(json!([vol("v2", "data", None)]));
        let e = validate_create("create.volumes", &unreserved, &existing).unwrap_err();
        assert_eq!(e.field(), Some("create.volumes[0].reservations"), "{e}");
        let dup = bag(json!([vol("v1", "other", Some("eng"))]));
        let e = validate_create("create.volumes", &dup, &existing).unwrap_err();
        assert_eq!(
            e.field(),
            Some("create.volumes[0].disk.persistence.id"),
            "{e}"
        );
        // The same id in another role is another volume.
        let other_role = bag(json!([vol("v1", "data", Some("ml"))]));
        assert!(validate_create("create.volumes", &other_role, &existing).is_ok());
        let plain = existing.without_volumes().unwrap();
        let e = validate_create("create.volumes", &plain, &existing).unwrap_err();
        assert_eq!(e.field(), Some("create.volumes[0].disk.persistence"), "{e}");
        let e = validate_create("create.volumes", &Resources::new(), &existing).unwrap_err();
        assert_eq!(e.field(), Some("create.volumes"));
        assert!(validate_destroy("destroy.volumes", &existing).is_ok());
        assert!(validate_destroy("destroy.volumes", &plain).is_err());
    }

    #[test]
    fn old_serialized_resources_still_read() {
        let old = r#"[{"name":"disk","reservations":[{"kind":"DYNAMIC","role":"eng"}],"value":{"scalar":64000}}]"#;
        let r: Resources = serde_json::from_str(old).expect("old form");
        assert!(r.volumes().is_empty());
        let v = bag(json!([vol("v1", "data", Some("eng"))]));
        let text = serde_json::to_string(&v).unwrap();
        assert!(!text.contains("null"), "{text}");
        let back: Resources = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }
}

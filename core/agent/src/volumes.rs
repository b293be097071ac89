//! Persistent volumes on the agent, in the Mesos layout: the data of volume `<id>` of role
//! `<role>` lives in `<work_dir>/volumes/roles/<role>/<id>`, outside every sandbox, so it
//! outlives the tasks that use it.
//!
//! A task whose resources hold a volume gets it at `<sandbox>/<container_path>`: the
//! directory is made when missing ([`prepare`]), then the launcher shows it there — a
//! symlink for plain processes ([`link_into`]), a bind mount inside the task's own mount
//! namespace (read-only for `RO` volumes), a Docker bind mount for Docker tasks.
//!
//! The master says when a volume is destroyed (`DestroyVolume`); [`destroy`] then deletes
//! its directory, and refuses anything that would lead outside the volumes root: ids and
//! roles that are not plain names, and parents that were replaced by symlinks.

use std::io;
use std::path::{Path, PathBuf};

use tessera_types::{Resources, Role, VolumeMode};

/// Directory of the volumes under the work dir.
pub const VOLUMES_DIR: &str = "volumes";

/// A persistent volume a task uses: where its data is, and where the task finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// `<work_dir>/volumes/roles/<role>/<id>`.
    pub host_path: PathBuf,
    /// Relative to the sandbox (checked: no `..`, not absolute).
    pub container_path: String,
    pub mode: VolumeMode,
}

/// Why a volume could not be given to a task or deleted.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The master (or whoever sent it) named something that is not a volume here; never
    /// retried.
    #[error("persistent volume '{id}': {reason}")]
    Refused { id: String, reason: String },
    /// The file system refused (full or read-only disk, permissions).
    #[error("persistent volume {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `<work_dir>/volumes/roles`: everything [`destroy`] may delete is under it.
pub fn volumes_root(work_dir: &Path) -> PathBuf {
    work_dir.join(VOLUMES_DIR).join("roles")
}

/// The directory of volume `id` of `role`; refuses a role or id that is not a plain name
/// (so the path cannot leave the volumes root).
pub fn volume_dir(work_dir: &Path, role: &str, id: &str) -> Result<PathBuf, VolumeError> {
    let refused = |reason: String| VolumeError::Refused {
        id: id.to_string(),
        reason,
    };
    let role = Role::new(role).map_err(|e| refused(e.to_string()))?;
    if role.is_any() {
        return Err(refused("a volume belongs to a role, not to '*'".into()));
    }
    tessera_types::volume::validate_persistence_id("persistence_id", id)
        .map_err(|e| refused(e.to_string()))?;
    let mut dir = volumes_root(work_dir);
    dir.extend(role.components());
    Ok(dir.join(id))
}

/// The volumes in a task's resources, with their directories. Pure.
pub fn mounts_of(work_dir: &Path, resources: &Resources) -> Result<Vec<VolumeMount>, VolumeError> {
    resources
        .iter()
        .filter_map(|(k, _)| k.volume.as_ref().map(|v| (k.role(), v)))
        .map(|(role, v)| {
            tessera_types::volume::validate_container_path("container_path", &v.container_path)
                .map_err(|e| VolumeError::Refused {
                    id: v.id.clone(),
                    reason: e.to_string(),
                })?;
            Ok(VolumeMount {
                host_path: volume_dir(work_dir, role.as_str(), &v.id)?,
                container_path: v.container_path.clone(),
                mode: v.mode,
            })
        })
        .collect()
}

/// The task's volumes, their directories made when missing (a first use). Blocking.
pub fn prepare(work_dir: &Path, resources: &Resources) -> Result<Vec<VolumeMount>, VolumeError> {
    let mounts = mounts_of(work_dir, resources)?;
    for m in &mounts {
        std::fs::create_dir_all(&m.host_path).map_err(io_err(&m.host_path))?;
    }
    Ok(mounts)
}

/// Fills `spec.volumes` from the task's resources, their directories made (off the async
/// workers: it blocks).
pub async fn with_volumes(
    work_dir: PathBuf,
    mut spec: crate::launcher::LaunchSpec,
) -> Result<crate::launcher::LaunchSpec, crate::AgentError> {
    if spec.resources.iter().all(|(k, _)| k.volume.is_none()) {
        return Ok(spec);
    }
    let root = volumes_root(&work_dir);
    tokio::task::spawn_blocking(move || {
        spec.volumes = prepare(&work_dir, &spec.resources)?;
        Ok(spec)
    })
    .await
    .unwrap_or_else(|join| {
        Err(VolumeError::Io {
            path: root,
            source: io::Error::other(join.to_string()),
        }
        .into())
    })
}

/// Makes the volumes appear in `sandbox`: symlinks in the agent's mount namespace, or, for a
/// task in its own (`namespaced`), the bind mounts its namespace init is to make. Blocking.
pub fn show(sandbox: &Path, mounts: &[VolumeMount], namespaced: bool) -> io::Result<Vec<Bind>> {
    if namespaced {
        mount_points(sandbox, mounts).map_err(io::Error::other)
    } else {
        link_into(sandbox, mounts).map_err(io::Error::other)?;
        Ok(Vec::new())
    }
}

/// Whether any of `resources` (of live tasks) holds the volume `d` names.
pub fn in_use<'a>(
    mut resources: impl Iterator<Item = &'a Resources>,
    d: &tessera_api::pb::DestroyVolume,
) -> bool {
    resources.any(|r| {
        r.iter().any(|(k, _)| {
            k.role().as_str() == d.role
                && k.volume.as_ref().is_some_and(|v| v.id == d.persistence_id)
        })
    })
}

/// Deletes a destroyed volume's data off the agent loop, logging the outcome.
pub fn spawn_destroy(work_dir: PathBuf, d: tessera_api::pb::DestroyVolume) {
    tokio::task::spawn_blocking(
        move || match destroy(&work_dir, &d.role, &d.persistence_id) {
            Ok(true) => tracing::info!(role = %d.role, persistence_id = %d.persistence_id,
            "persistent volume destroyed"),
            Ok(false) => tracing::debug!(role = %d.role, persistence_id = %d.persistence_id,
            "destroyed persistent volume had no data here"),
            Err(e) => tracing::warn!(role = %d.role, error = %e,
            "refusing to destroy a persistent volume"),
        },
    );
}

/// Where `m` appears in `sandbox`, its parent directories made. None of them may be a
/// symlink (a fetched archive could have put one on the way out of the sandbox). Blocking.
pub fn target_in(sandbox: &Path, m: &VolumeMount) -> Result<PathBuf, VolumeError> {
    let refused = |reason: String| VolumeError::Refused {
        id: m.container_path.clone(),
        reason,
    };
    let parts: Vec<&str> = m
        .container_path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let Some((last, dirs)) = parts.split_last() else {
        return Err(refused("names the sandbox itself".into()));
    };
    let mut cur = sandbox.to_path_buf();
    for c in dirs {
        cur.push(c);
        match cur.symlink_metadata() {
            Ok(md) if md.file_type().is_symlink() => {
                return Err(refused(format!("{} is a symlink", cur.display())));
            }
            Ok(md) if md.is_dir() => {}
            Ok(_) => return Err(refused(format!("{} is not a directory", cur.display()))),
            Err(_) => std::fs::create_dir(&cur).map_err(io_err(&cur))?,
        }
    }
    Ok(cur.join(last))
}

/// Makes each volume appear in `sandbox` as a symlink to its directory (plain processes
/// share the agent's mount namespace). Idempotent. Blocking.
pub fn link_into(sandbox: &Path, mounts: &[VolumeMount]) -> Result<(), VolumeError> {
    for m in mounts {
        let target = target_in(sandbox, m)?;
        match std::fs::read_link(&target) {
            Ok(to) if to == m.host_path => continue,
            Ok(_) => std::fs::remove_file(&target).map_err(io_err(&target))?,
            Err(_) if target.symlink_metadata().is_ok() => {
                return Err(VolumeError::Refused {
                    id: m.container_path.clone(),
                    reason: format!("{} already exists in the sandbox", target.display()),
                });
            }
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&m.host_path, &target).map_err(io_err(&target))?;
    }
    Ok(())
}

/// A bind mount to make in a task's mount namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Makes an empty directory at each volume's place in `sandbox`, for a bind mount in the
/// task's mount namespace. Blocking.
pub fn mount_points(sandbox: &Path, mounts: &[VolumeMount]) -> Result<Vec<Bind>, VolumeError> {
    mounts
        .iter()
        .map(|m| {
            let target = target_in(sandbox, m)?;
            if target.symlink_metadata().is_ok_and(|md| !md.is_dir()) {
                return Err(VolumeError::Refused {
                    id: m.container_path.clone(),
                    reason: format!("{} already exists in the sandbox", target.display()),
                });
            }
            std::fs::create_dir_all(&target).map_err(io_err(&target))?;
            Ok(Bind {
                source: m.host_path.clone(),
                target,
                read_only: m.mode == VolumeMode::Ro,
            })
        })
        .collect()
}

/// Deletes the data of volume `id` of `role`: `Ok(false)` when there was none. Refuses
/// names that leave the volumes root, and a directory whose parents resolve outside it.
/// Blocking.
pub fn destroy(work_dir: &Path, role: &str, id: &str) -> Result<bool, VolumeError> {
    let dir = volume_dir(work_dir, role, id)?;
    let Ok(meta) = dir.symlink_metadata() else {
        return Ok(false);
    };
    let root = volumes_root(work_dir);
    let real_root = std::fs::canonicalize(&root).map_err(io_err(&root))?;
    let parent = dir.parent().unwrap_or(&root);
    let real_parent = std::fs::canonicalize(parent).map_err(io_err(parent))?;
    if !real_parent.starts_with(&real_root) || real_parent == real_root {
        return Err(VolumeError::Refused {
            id: id.to_string(),
            reason: format!(
                "{} resolves to {}, outside the volumes root {}",
                parent.display(),
                real_parent.display(),
                real_root.display()
            ),
        });
    }
    // A symlink (put there by someone else) is removed, never followed.
    if meta.file_type().is_symlink() || !meta.is_dir() {
        std::fs::remove_file(&dir).map_err(io_err(&dir))?;
    } else {
        std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_types::parse::parse_json_resources;

    fn temp() -> PathBuf {
        let d = std::env::temp_dir().join(format!("tessera-vol-unit-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn volume(role: &str, id: &str, path: &str) -> Resources {
        parse_json_resources(
            "r",
            &serde_json::json!([{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}},
                {"name": "disk", "type": "SCALAR", "scalar": {"value": 8},
                 "reservations": [{"type": "DYNAMIC", "role": role}],
                 "disk": {"persistence": {"id": id},
                          "volume": {"container_path": path, "mode": "RO"}}}]),
        )
        .unwrap()
    }

    #[test]
    fn the_mesos_layout() {
        let w = Path::new("/w");
        assert_eq!(
            volume_dir(w, "eng/ml", "v1").unwrap(),
            Path::new("/w/volumes/roles/eng/ml/v1")
        );
        for (role, id) in [
            ("..", "v"),
            ("eng", ".."),
            ("eng", "a/b"),
            ("*", "v"),
            ("eng/../..", "v"),
        ] {
            assert!(volume_dir(w, role, id).is_err(), "{role} {id}");
        }
        let m = mounts_of(w, &volume("eng", "v1", "data/x")).unwrap();
        assert_eq!(
            m,
            [VolumeMount {
                host_path: "/w/volumes/roles/eng/v1".into(),
                container_path: "data/x".into(),
                mode: VolumeMode::Ro,
            }]
        );
        assert!(
            mounts_of(w, &tessera_types::parse::parse_resources("cpus:1").unwrap())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn linked_into_the_sandbox_and_destroyed() {
        let w = temp();
        let sandbox = w.join("sandbox");
        std::fs::create_dir_all(&sandbox).unwrap();
        let mounts = prepare(&w, &volume("eng", "v1", "data/x")).unwrap();
        link_into(&sandbox, &mounts).unwrap();
        link_into(&sandbox, &mounts).unwrap();
        std::fs::write(sandbox.join("data/x/f"), "kept").unwrap();
        let dir = w.join("volumes/roles/eng/v1");
        assert_eq!(std::fs::read_to_string(dir.join("f")).unwrap(), "kept");
        assert!(destroy(&w, "eng", "v1").unwrap());
        assert!(!dir.exists());
        assert!(!destroy(&w, "eng", "v1").unwrap(), "already gone");
        let _ = std::fs::remove_dir_all(&w);
    }

    #[test]
    fn hostile_paths_are_refused() {
        let w = temp();
        let victim = w.join("victim");
        std::fs::create_dir_all(victim.join("v1")).unwrap();
        std::fs::create_dir_all(volumes_root(&w)).unwrap();
        assert!(matches!(
            destroy(&w, "eng", "../../../victim"),
            Err(VolumeError::Refused { .. })
        ));
        // A role directory replaced by a symlink to elsewhere.
        std::os::unix::fs::symlink(&victim, volumes_root(&w).join("eng")).unwrap();
        assert!(matches!(
            destroy(&w, "eng", "v1"),
            Err(VolumeError::Refused { .. })
        ));
        assert!(
            victim.join("v1").is_dir(),
            "nothing outside the root deleted"
        );
        // A symlink on the way inside a sandbox.
        let sandbox = w.join("sandbox");
        std::fs::create_dir_all(&sandbox).unwrap();
        std::os::unix::fs::symlink(&victim, sandbox.join("data")).unwrap();
        let mounts = mounts_of(&w, &volume("ops", "v2", "data/x")).unwrap();
        assert!(matches!(
            link_into(&sandbox, &mounts),
            Err(VolumeError::Refused { .. })
        ));
        assert!(!victim.join("x").exists());
        let _ = std::fs::remove_dir_all(&w);
    }
}

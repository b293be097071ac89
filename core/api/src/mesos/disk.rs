//! Mesos v1 `Resource.DiskInfo` ↔ [`PersistentVolume`]: a disk resource's `persistence`
//! (`id`, `principal`) and `volume` (`container_path`, `mode`) travel together. Disk
//! sources, host paths and images are refused with an error naming the field; an empty
//! `DiskInfo` is plain disk.

use std::sync::Arc;

use tessera_types::{PersistentVolume, VolumeMode};

use super::v1;
use crate::convert::{Result, WireError};

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> WireError {
    tessera_types::Error::invalid(field, reason).into()
}

/// The volume a v1 `disk` carries, if any; `field` names the resource.
pub fn disk_from_v1(
    field: &str,
    disk: Option<&v1::resource::DiskInfo>,
) -> Result<Option<Arc<PersistentVolume>>> {
    let Some(d) = disk else { return Ok(None) };
    let f = format!("{field}.disk");
    if d.source.is_some() {
        return Err(invalid(
            format!("{f}.source"),
            "disk sources (MOUNT, PATH, BLOCK, RAW) are not supported",
        ));
    }
    let (p, v) = match (&d.persistence, &d.volume) {
        (None, None) => return Ok(None),
        (Some(p), Some(v)) => (p, v),
        (None, Some(_)) => {
            return Err(WireError::Missing(format!("{f}.persistence")));
        }
        (Some(_), None) => return Err(WireError::Missing(format!("{f}.volume"))),
    };
    let vf = format!("{f}.volume");
    if v.host_path.is_some() {
        return Err(invalid(
            format!("{vf}.host_path"),
            "is chosen by the agent for a persistent volume",
        ));
    }
    if v.image.is_some() || v.source.is_some() {
        return Err(invalid(&vf, "a persistent volume has no image or source"));
    }
    let mode = match v1::volume::Mode::try_from(v.mode) {
        Ok(v1::volume::Mode::Rw) => VolumeMode::Rw,
        Ok(v1::volume::Mode::Ro) => VolumeMode::Ro,
        Err(_) => return Err(invalid(format!("{vf}.mode"), "must be RW or RO")),
    };
    Ok(Some(Arc::new(PersistentVolume {
        id: p.id.clone(),
        principal: p.principal.clone(),
        container_path: v.container_path.clone(),
        mode,
    })))
}

/// The v1 `disk` of a persistent volume.
pub fn disk_to_v1(v: &PersistentVolume) -> v1::resource::DiskInfo {
    v1::resource::DiskInfo {
        persistence: Some(v1::resource::disk_info::Persistence {
            id: v.id.clone(),
            principal: v.principal.clone(),
        }),
        volume: Some(v1::Volume {
            mode: match v.mode {
                VolumeMode::Rw => v1::volume::Mode::Rw,
                VolumeMode::Ro => v1::volume::Mode::Ro,
            } as i32,
            container_path: v.container_path.clone(),
            ..Default::default()
        }),
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(id: &str, path: &str, mode: i32) -> v1::resource::DiskInfo {
        v1::resource::DiskInfo {
            persistence: Some(v1::resource::disk_info::Persistence {
                id: id.into(),
                principal: Some("p".into()),
            }),
            volume: Some(v1::Volume {
                mode,
                container_path: path.into(),
                ..Default::default()
            }),
            source: None,
        }
    }

    #[test]
    fn round_trips() {
        let d = disk("v1", "data", v1::volume::Mode::Ro as i32);
        let v = disk_from_v1("r", Some(&d)).unwrap().expect("a volume");
        assert_eq!(v.id, "v1");
        assert_eq!(v.mode, VolumeMode::Ro);
        assert_eq!(disk_to_v1(&v), d);
        assert_eq!(
            disk_from_v1("r", Some(&v1::resource::DiskInfo::default())).unwrap(),
            None
        );
    }

    #[test]
    fn refusals_name_the_field() {
        let bad_mode = disk("v1", "data", 7);
        let e = disk_from_v1("r", Some(&bad_mode)).unwrap_err();
        assert!(e.to_string().starts_with("r.disk.volume.mode"), "{e}");
        let mut no_volume = disk("v1", "data", 1);
        no_volume.volume = None;
        let e = disk_from_v1("r", Some(&no_volume)).unwrap_err();
        assert!(e.to_string().starts_with("r.disk.volume"), "{e}");
        let mut host = disk("v1", "data", 1);
        if let Some(v) = host.volume.as_mut() {
            v.host_path = Some("/srv".into());
        }
        let e = disk_from_v1("r", Some(&host)).unwrap_err();
        assert!(e.to_string().starts_with("r.disk.volume.host_path"), "{e}");
    }
}

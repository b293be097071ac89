//! What this machine offers: detection from the OS, and operator overrides.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tessera_types::parse::parse_resources;
use tessera_types::{Ranges, Resource, ResourceKey, Resources, Value};

use crate::error::AgentError;

const MIB: u64 = 1024 * 1024;
/// Memory kept back for the OS and the agent: min(1 GiB, half).
const MEM_RESERVE_MB: u64 = 1024;
/// Disk kept back in the work dir's filesystem: min(5 GiB, half).
const DISK_RESERVE_MB: u64 = 5 * 1024;
/// Ports offered when not given explicitly, as Mesos does.
pub const DEFAULT_PORTS: (u64, u64) = (31000, 32000);
/// Where NVIDIA GPU device files are.
pub const GPU_DEVICE_DIR: &str = "/dev";

/// Detects cpus (available parallelism), mem (MB, from `/proc/meminfo`), disk (MB free in
/// the work dir's filesystem), the default port range, and `gpus` when NVIDIA GPUs are
/// present ([`detect_gpus`]; absent, not zero, otherwise).
pub fn detect_resources(work_dir: &Path) -> Result<Resources, AgentError> {
    let cpus = std::thread::available_parallelism()
        .map_err(|e| AgentError::Detect {
            what: "cpus",
            reason: e.to_string(),
        })?
        .get();
    let meminfo = std::fs::read_to_string("/proc/meminfo").map_err(|e| AgentError::Detect {
        what: "mem",
        reason: format!("/proc/meminfo: {e}"),
    })?;
    let mem_total_mb = parse_mem_total_kb(&meminfo).ok_or(AgentError::Detect {
        what: "mem",
        reason: "/proc/meminfo has no MemTotal line".into(),
    })? / 1024;
    let disk_free_mb = free_disk_bytes(work_dir)? / MIB;

    let ports = Ranges::new("ports", [DEFAULT_PORTS])?;
    let mut rs = vec![
        Resource::scalar("cpus", cpus as f64)?,
        Resource::scalar("mem", keep_back(mem_total_mb, MEM_RESERVE_MB) as f64)?,
        Resource::scalar("disk", keep_back(disk_free_mb, DISK_RESERVE_MB) as f64)?,
        Resource {
            key: ResourceKey::unreserved("ports"),
            value: Value::Ranges(ports),
        },
    ];
    let gpus = detect_gpus(Path::new(GPU_DEVICE_DIR));
    if gpus > 0 {
        rs.push(Resource::scalar("gpus", gpus as f64)?);
    }
    Ok(Resources::from_resources("detected", rs)?)
}

/// The number of NVIDIA GPUs: device files `nvidia<N>` in `dev_dir` (normally `/dev`), not
/// the control devices (`nvidiactl`, `nvidia-uvm`, `nvidia-modeset`, ...). 0 when the
/// directory cannot be read.
pub fn detect_gpus(dev_dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dev_dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| is_gpu_device_name(&e.file_name()))
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .count() as u64
}

fn is_gpu_device_name(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .and_then(|n| n.strip_prefix("nvidia"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `total` minus min(`reserve`, half of it).
fn keep_back(total: u64, reserve: u64) -> u64 {
    total - reserve.min(total / 2)
}

fn parse_mem_total_kb(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemTotal:")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn free_disk_bytes(path: &Path) -> Result<u64, AgentError> {
    let err = |reason: String| AgentError::Detect {
        what: "disk",
        reason: format!("statvfs {}: {reason}", path.display()),
    };
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|e| err(e.to_string()))?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` is a properly sized out-buffer.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(err(std::io::Error::last_os_error().to_string()));
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// `detected` with every resource named in `flag_text` (text or JSON form) replaced by the
/// flag's entries for that name. Names only in the flag are added.
pub fn resources_with_overrides(
    detected: Resources,
    flag_text: Option<&str>,
) -> Result<Resources, AgentError> {
    let Some(text) = flag_text.filter(|t| !t.trim().is_empty()) else {
        return Ok(detected);
    };
    let flag = parse_resources(text)?;
    let names: BTreeSet<String> = flag.names().into_iter().map(str::to_string).collect();
    let mut out = detected.filter(|k, _| !names.contains(&*k.name));
    out.add_assign(&flag)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_types::Scalar;

    #[test]
    fn overrides_replace_by_name_and_keep_the_rest() {
        let detected = parse_resources("cpus:8;mem:16000;disk:100000;ports:[31000-32000]").unwrap();
        let r =
            resources_with_overrides(detected.clone(), Some("cpus:2;gpus:1;mem(ml):512")).unwrap();
        assert_eq!(r.scalar("cpus"), Scalar::from_units(2));
        assert_eq!(r.scalar("gpus"), Scalar::from_units(1));
        // Every `mem` is replaced, reserved or not.
        assert_eq!(r.scalar("mem"), Scalar::from_units(512));
        assert_eq!(r.scalar("disk"), Scalar::from_units(100000));
        assert_eq!(r.ranges("ports").count(), 1001);

        let json =
            r#"[{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":80,"end":81}]}}]"#;
        let r = resources_with_overrides(detected.clone(), Some(json)).unwrap();
        assert_eq!(r.ranges("ports").count(), 2);
        assert_eq!(r.scalar("cpus"), Scalar::from_units(8));

        assert_eq!(
            resources_with_overrides(detected.clone(), None).unwrap(),
            detected
        );
        let e = resources_with_overrides(detected, Some("cpus")).unwrap_err();
        assert!(e.to_string().contains("--resources"), "{e}");
    }

    #[test]
    fn detects_this_machine() {
        let r = detect_resources(Path::new("/tmp")).unwrap();
        assert!(r.scalar("cpus") > Scalar::ZERO);
        assert!(r.scalar("mem") > Scalar::ZERO);
        assert_eq!(r.ranges("ports").count(), 1001);
    }

    #[test]
    fn gpus_are_the_numbered_nvidia_devices() {
        let dev = std::env::temp_dir().join(format!("tessera-fake-dev-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dev.join("nvidia-caps")).unwrap();
        std::fs::create_dir_all(dev.join("nvidia9")).unwrap();
        assert_eq!(detect_gpus(&dev), 0, "no device files");
        for f in [
            "nvidia0",
            "nvidia1",
            "nvidia12",
            "nvidiactl",
            "nvidia-uvm",
            "nvidia-uvm-tools",
            "nvidia-modeset",
            "nvidia0x",
            "null",
        ] {
            std::fs::write(dev.join(f), "").unwrap();
        }
        assert_eq!(detect_gpus(&dev), 3);
        assert_eq!(detect_gpus(&dev.join("missing")), 0);
        let _ = std::fs::remove_dir_all(&dev);
    }

    #[test]
    fn flag_gpus_replace_detected_ones() {
        let detected = parse_resources("cpus:8;gpus:2").unwrap();
        let r = resources_with_overrides(detected.clone(), Some("gpus:1")).unwrap();
        assert_eq!(r.scalar("gpus"), Scalar::from_units(1));
        let r = resources_with_overrides(detected, Some("cpus:2")).unwrap();
        assert_eq!(
            r.scalar("gpus"),
            Scalar::from_units(2),
            "kept when not given"
        );
    }

    #[test]
    fn keeps_back_the_smaller_of_reserve_and_half() {
        assert_eq!(keep_back(16384, 1024), 15360);
        assert_eq!(keep_back(1000, 1024), 500);
        assert_eq!(
            parse_mem_total_kb("MemFree: 1 kB\nMemTotal:  2048 kB\n"),
            Some(2048)
        );
    }
}

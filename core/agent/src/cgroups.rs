//! Linux control groups for task containers: layout detection (v1 per-controller mounts,
//! separate or co-mounted `cpu`/`cpuacct`, or a pure v2 unified hierarchy), per-container
//! cgroups with CPU and memory limits, OOM accounting, and reliable destruction (freeze,
//! SIGKILL every process, thaw, remove).
//!
//! The layout is read from `/proc/self/mountinfo` and `/proc/self/cgroup`, never assumed:
//! the agent's own cgroup differs per hierarchy (e.g. only `memory` is nested), and
//! container cgroups live under `<agent's own cgroup>/<root>/<container id>` in each one.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `cpu.shares` per CPU (v1), as Mesos uses.
pub const CPU_SHARES_PER_CPU: f64 = 1024.0;
/// Smallest `cpu.shares` the kernel accepts.
pub const MIN_CPU_SHARES: u64 = 2;
/// CFS period, µs.
pub const CFS_PERIOD_US: u64 = 100_000;
/// Smallest CFS quota written, µs (the kernel's minimum is 1 ms).
pub const MIN_CFS_QUOTA_US: u64 = 1_000;

const V1_REQUIRED: [&str; 4] = ["memory", "cpu", "cpuacct", "freezer"];
/// The v1 controllers used (`pids` when mounted).
const V1_USED: [&str; 5] = ["memory", "cpu", "cpuacct", "freezer", "pids"];
const V2_REQUIRED: [&str; 2] = ["cpu", "memory"];

/// Everything that can go wrong with cgroups; each names the file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("writing '{value}' to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("creating cgroup {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("removing cgroup {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
    #[error("{path}: cannot parse '{text}'")]
    Parse { path: PathBuf, text: String },
    #[error("cgroups are not usable: {0}")]
    Unusable(String),
    #[error("freezing {path}: state still '{state}' after {waited:?}")]
    Freeze {
        path: PathBuf,
        state: String,
        waited: Duration,
    },
    #[error("{path}: processes {pids:?} still present after SIGKILL")]
    NotEmpty { path: PathBuf, pids: Vec<i32> },
}

type Result<T> = std::result::Result<T, CgroupError>;

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, value: impl ToString) -> Result<()> {
    let value = value.to_string();
    std::fs::write(path, &value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value,
        source,
    })
}

fn parse_u64(path: &Path, text: &str) -> Result<u64> {
    text.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        text: text.trim().to_string(),
    })
}

/// The value of `key` in a flat keyed file (`key value` per line), 0 when absent.
fn keyed(path: &Path, key: &str) -> Result<u64> {
    let text = read(path)?;
    for line in text.lines() {
        let mut it = line.split_whitespace();
        if it.next() == Some(key) {
            return parse_u64(path, it.next().unwrap_or(""));
        }
    }
    Ok(0)
}

/// One mounted hierarchy from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Root of the mount inside the hierarchy (usually `/`).
    pub root: String,
    pub mount_point: PathBuf,
    /// `true` for `cgroup2`.
    pub v2: bool,
    /// v1 controllers from the super options (empty for v2).
    pub controllers: Vec<String>,
}

/// Parses the cgroup mounts out of mountinfo text (first mount of each hierarchy wins).
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let unescape = |s: &str| s.replace("\\040", " ");
        let (fstype, superopts) = (post[0], post[2]);
        let m = match fstype {
            "cgroup2" => Mount {
                root: unescape(pre[3]),
                mount_point: PathBuf::from(unescape(pre[4])),
                v2: true,
                controllers: Vec::new(),
            },
            "cgroup" => Mount {
                root: unescape(pre[3]),
                mount_point: PathBuf::from(unescape(pre[4])),
                v2: false,
                controllers: superopts
                    .split(',')
                    .filter(|o| {
                        !o.contains('=')
                            && !matches!(*o, "rw" | "ro" | "noprefix" | "clone_children")
                            && !o.starts_with("xattr")
                    })
                    .map(str::to_string)
                    .collect(),
            },
            _ => continue,
        };
        let dup = out.iter().any(|o| {
            o.v2 == m.v2 && (m.v2 || (!m.controllers.is_empty() && o.controllers == m.controllers))
        });
        if !dup && (m.v2 || !m.controllers.is_empty()) {
            out.push(m);
        }
    }
    out
}

/// `/proc/self/cgroup`: v1 controller → path, and the v2 path (`0::/path`).
pub fn parse_proc_cgroup(text: &str) -> (BTreeMap<String, String>, Option<String>) {
    let mut v1 = BTreeMap::new();
    let mut v2 = None;
    for line in text.lines() {
        let mut it = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if ctrls.is_empty() {
            v2 = Some(path.to_string());
        } else {
            for c in ctrls.split(',') {
                v1.insert(c.to_string(), path.to_string());
            }
        }
    }
    (v1, v2)
}

/// The directory of cgroup `path` (as in `/proc/self/cgroup`) under `mount`.
fn dir_in(mount: &Mount, path: &str) -> PathBuf {
    let rel = if mount.root != "/" {
        path.strip_prefix(mount.root.as_str()).unwrap_or(path)
    } else {
        path
    };
    mount.mount_point.join(rel.trim_start_matches('/'))
}

/// Which hierarchies the agent uses.
#[derive(Debug, Clone)]
pub enum Layout {
    /// Controller → the agent's own cgroup dir in that controller's hierarchy (co-mounted
    /// controllers share a dir).
    V1(BTreeMap<String, PathBuf>),
    /// The agent's own cgroup dir in the unified hierarchy.
    V2(PathBuf),
}

/// Limits for one container; `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    pub cpus: Option<f64>,
    pub mem_mb: Option<f64>,
}

impl Limits {
    pub fn mem_bytes(&self) -> Option<u64> {
        self.mem_mb.map(|m| (m * 1024.0 * 1024.0) as u64)
    }
    pub fn cpu_shares(&self) -> Option<u64> {
        self.cpus
            .map(|c| ((c * CPU_SHARES_PER_CPU) as u64).max(MIN_CPU_SHARES))
    }
    pub fn cfs_quota_us(&self) -> Option<u64> {
        self.cpus
            .map(|c| ((c * CFS_PERIOD_US as f64) as u64).max(MIN_CFS_QUOTA_US))
    }
}

/// The detected layout plus the container root name: creates and finds container cgroups.
#[derive(Debug, Clone)]
pub struct Cgroups {
    layout: Layout,
    root: String,
}

impl Cgroups {
    /// Detects the layout of this process's cgroups. `root` is a relative path (no `..`)
    /// under the agent's own cgroup in each hierarchy.
    pub fn detect(root: &str) -> Result<Self> {
        let mi = Path::new("/proc/self/mountinfo");
        let pc = Path::new("/proc/self/cgroup");
        Self::from_texts(root, &read(mi)?, &read(pc)?)
    }

    /// [`detect`](Self::detect) from the two files' contents (for tests).
    pub fn from_texts(root: &str, mountinfo: &str, proc_cgroup: &str) -> Result<Self> {
        if root.is_empty()
            || root.starts_with('/')
            || root
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(CgroupError::Unusable(format!(
                "cgroups root '{root}' must be a relative path without '.', '..' or empty parts"
            )));
        }
        let mounts = parse_mountinfo(mountinfo);
        let (own_v1, own_v2) = parse_proc_cgroup(proc_cgroup);
        let mut v1 = BTreeMap::new();
        for m in mounts.iter().filter(|m| !m.v2) {
            for c in m
                .controllers
                .iter()
                .filter(|c| V1_USED.contains(&c.as_str()))
            {
                if let Some(p) = own_v1.get(c) {
                    v1.insert(c.clone(), dir_in(m, p));
                }
            }
        }
        let missing_v1: Vec<&str> = V1_REQUIRED
            .iter()
            .copied()
            .filter(|c| !v1.contains_key(*c))
            .collect();
        if missing_v1.is_empty() {
            return Ok(Cgroups {
                layout: Layout::V1(v1),
                root: root.to_string(),
            });
        }
        // Pure v2: the unified hierarchy has the controllers we need.
        if let (Some(m), Some(p)) = (mounts.iter().find(|m| m.v2), own_v2) {
            let ctl_file = m.mount_point.join("cgroup.controllers");
            let available = std::fs::read_to_string(&ctl_file).unwrap_or_default();
            let have: Vec<&str> = available.split_whitespace().collect();
            if V2_REQUIRED.iter().all(|c| have.contains(c)) {
                return Ok(Cgroups {
                    layout: Layout::V2(dir_in(m, &p)),
                    root: root.to_string(),
                });
            }
        }
        Err(CgroupError::Unusable(format!(
            "no cgroup v1 mount for {missing_v1:?} and no cgroup v2 hierarchy with {V2_REQUIRED:?}"
        )))
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The container root dir in each used hierarchy (deduplicated).
    pub fn root_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = match &self.layout {
            Layout::V1(m) => m.values().map(|d| d.join(&self.root)).collect(),
            Layout::V2(d) => vec![d.join(&self.root)],
        };
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Checks that containers can be made: running as root, and the root dirs can be
    /// created (v2: with the cpu, memory and pids controllers enabled for children).
    pub fn check_usable(&self) -> Result<()> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err(CgroupError::Unusable(
                "the agent is not running as root".into(),
            ));
        }
        for d in self.root_dirs() {
            std::fs::create_dir_all(&d).map_err(|source| CgroupError::Create {
                path: d.clone(),
                source,
            })?;
        }
        if let Layout::V2(own) = &self.layout {
            // Enable the controllers down to the root's children. Fails when the agent's own
            // cgroup holds processes (v2's no-internal-process rule): then it is not usable.
            let mut dir = own.clone();
            for part in std::iter::once("").chain(self.root.split('/')) {
                if !part.is_empty() {
                    dir = dir.join(part);
                }
                let ctl = read(&dir.join("cgroup.controllers"))?;
                let want: Vec<String> = ["cpu", "memory", "pids"]
                    .iter()
                    .filter(|c| ctl.split_whitespace().any(|x| x == **c))
                    .map(|c| format!("+{c}"))
                    .collect();
                write(&dir.join("cgroup.subtree_control"), want.join(" "))?;
            }
        }
        Ok(())
    }

    /// The handle of container `id`'s cgroups (which may not exist).
    pub fn container(&self, id: &str) -> ContainerCgroup {
        match &self.layout {
            Layout::V1(m) => {
                let d = |c: &str| m.get(c).map(|p| p.join(&self.root).join(id));
                let dir = |c: &str| d(c).expect("required controller present");
                ContainerCgroup {
                    v2: false,
                    memory: dir("memory"),
                    cpu: dir("cpu"),
                    cpuacct: dir("cpuacct"),
                    freezer: dir("freezer"),
                    pids: d("pids"),
                }
            }
            Layout::V2(own) => {
                let dir = own.join(&self.root).join(id);
                ContainerCgroup {
                    v2: true,
                    memory: dir.clone(),
                    cpu: dir.clone(),
                    cpuacct: dir.clone(),
                    freezer: dir.clone(),
                    pids: Some(dir),
                }
            }
        }
    }

    /// Ids of the containers currently under the root (the first hierarchy's view).
    pub fn container_ids(&self) -> Vec<String> {
        let Some(first) = self.root_dirs().into_iter().next() else {
            return Vec::new();
        };
        let mut ids: Vec<String> = std::fs::read_dir(first)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        ids.sort();
        ids
    }

    /// Creates container `id`'s cgroups and applies `limits`. On error, what was created
    /// is removed again.
    pub fn create(&self, id: &str, limits: &Limits) -> Result<ContainerCgroup> {
        let cg = self.container(id);
        for d in cg.dirs() {
            if let Err(source) = std::fs::create_dir(&d) {
                let _ = cg.remove_dirs();
                return Err(CgroupError::Create { path: d, source });
            }
        }
        if let Err(e) = cg.apply(limits) {
            let _ = cg.remove_dirs();
            return Err(e);
        }
        Ok(cg)
    }
}

impl Cgroups {
    /// Creates the cgroups of container `id` that other containers will nest in (a default
    /// executor's, see [`crate::executor`]), with `limits` for all of them together. Under
    /// v2 it also enables the cpu, memory and pids controllers for its children, so they
    /// count their own OOM kills.
    pub fn create_parent(&self, id: &str, limits: &Limits) -> Result<ContainerCgroup> {
        let cg = self.create(id, limits)?;
        if cg.v2 {
            let delegated = read(&cg.memory.join("cgroup.controllers")).and_then(|ctl| {
                let want: Vec<String> = ["cpu", "memory", "pids"]
                    .iter()
                    .filter(|c| ctl.split_whitespace().any(|x| x == **c))
                    .map(|c| format!("+{c}"))
                    .collect();
                write(&cg.memory.join("cgroup.subtree_control"), want.join(" "))
            });
            if let Err(e) = delegated {
                let _ = cg.remove_dirs();
                return Err(e);
            }
        }
        Ok(cg)
    }
}

/// Resource usage of one container (see [`ContainerCgroup::usage`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu_user_secs: f64,
    pub cpu_system_secs: f64,
    /// `memory.usage_in_bytes` (v1) or `memory.current` (v2).
    pub mem_bytes: u64,
}

/// One container's cgroups: a dir per hierarchy (the same dir under v2 or co-mounts).
#[derive(Debug, Clone)]
pub struct ContainerCgroup {
    v2: bool,
    memory: PathBuf,
    cpu: PathBuf,
    cpuacct: PathBuf,
    freezer: PathBuf,
    pids: Option<PathBuf>,
}

impl ContainerCgroup {
    /// Distinct directories, one per hierarchy.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut v = vec![
            self.memory.clone(),
            self.cpu.clone(),
            self.cpuacct.clone(),
            self.freezer.clone(),
        ];
        v.extend(self.pids.clone());
        v.sort();
        v.dedup();
        v
    }

    fn apply(&self, l: &Limits) -> Result<()> {
        if self.v2 {
            if let Some(shares) = l.cpu_shares() {
                // Mesos/runc conversion of shares [2, 262144] to weight [1, 10000].
                let weight = 1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142;
                write(&self.cpu.join("cpu.weight"), weight)?;
            }
            if let Some(q) = l.cfs_quota_us() {
                write(&self.cpu.join("cpu.max"), format!("{q} {CFS_PERIOD_US}"))?;
            }
            if let Some(b) = l.mem_bytes() {
                write(&self.memory.join("memory.max"), b)?;
                let swap = self.memory.join("memory.swap.max");
                if swap.exists() {
                    write(&swap, 0)?;
                }
            }
            return Ok(());
        }
        if let Some(shares) = l.cpu_shares() {
            write(&self.cpu.join("cpu.shares"), shares)?;
        }
        if let Some(q) = l.cfs_quota_us() {
            write(&self.cpu.join("cpu.cfs_period_us"), CFS_PERIOD_US)?;
            write(&self.cpu.join("cpu.cfs_quota_us"), q)?;
        }
        if let Some(b) = l.mem_bytes() {
            // Lowering from unlimited: the plain limit first, memsw (≥ limit) after.
            write(&self.memory.join("memory.limit_in_bytes"), b)?;
            let memsw = self.memory.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                write(&memsw, b)?;
            }
        }
        Ok(())
    }

    /// Applies new limits to an existing container (`None` parts stay as they are). Under
    /// v1 a raised memory limit goes to `memory.memsw.limit_in_bytes` first (the kernel
    /// refuses a plain limit above it).
    pub fn update(&self, limits: &Limits) -> Result<()> {
        let memsw = self.memory.join("memory.memsw.limit_in_bytes");
        if !self.v2
            && let Some(b) = limits.mem_bytes()
            && memsw.exists()
        {
            let limit = self.memory.join("memory.limit_in_bytes");
            let current = parse_u64(&limit, &read(&limit)?)?;
            if b > current {
                write(&memsw, b)?;
                write(&limit, b)?;
                let cpu_only = Limits {
                    mem_mb: None,
                    ..*limits
                };
                return self.apply(&cpu_only);
            }
        }
        self.apply(limits)
    }

    /// Moves process `pid` into every hierarchy.
    pub fn attach(&self, pid: u32) -> Result<()> {
        for d in self.dirs() {
            write(&d.join("cgroup.procs"), pid)?;
        }
        Ok(())
    }

    /// The processes in the container (from the freezer hierarchy, or the v2 dir).
    pub fn procs(&self) -> Result<Vec<i32>> {
        let p = self.freezer.join("cgroup.procs");
        let text = read(&p)?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| parse_u64(&p, l).map(|v| v as i32))
            .collect()
    }

    /// How many processes the kernel OOM killer killed in this cgroup.
    pub fn oom_kills(&self) -> Result<u64> {
        if self.v2 {
            keyed(&self.memory.join("memory.events"), "oom_kill")
        } else {
            keyed(&self.memory.join("memory.oom_control"), "oom_kill")
        }
    }

    /// CPU time used, in nanoseconds.
    pub fn cpu_usage_ns(&self) -> Result<u64> {
        if self.v2 {
            Ok(keyed(&self.cpuacct.join("cpu.stat"), "usage_usec")? * 1000)
        } else {
            let p = self.cpuacct.join("cpuacct.usage");
            parse_u64(&p, &read(&p)?)
        }
    }

    /// CPU user/system time and memory in use, for the agent's `/containers` statistics.
    pub fn usage(&self) -> Result<Usage> {
        if self.v2 {
            let stat = self.cpuacct.join("cpu.stat");
            let mem = self.memory.join("memory.current");
            return Ok(Usage {
                cpu_user_secs: keyed(&stat, "user_usec")? as f64 / 1e6,
                cpu_system_secs: keyed(&stat, "system_usec")? as f64 / 1e6,
                mem_bytes: parse_u64(&mem, &read(&mem)?)?,
            });
        }
        // cpuacct.stat counts USER_HZ ticks.
        let hz = match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
            n if n > 0 => n as f64,
            _ => 100.0,
        };
        let stat = self.cpuacct.join("cpuacct.stat");
        let mem = self.memory.join("memory.usage_in_bytes");
        Ok(Usage {
            cpu_user_secs: keyed(&stat, "user")? as f64 / hz,
            cpu_system_secs: keyed(&stat, "system")? as f64 / hz,
            mem_bytes: parse_u64(&mem, &read(&mem)?)?,
        })
    }

    /// Sends `signal` to every process in the container.
    pub fn signal_all(&self, signal: nix::sys::signal::Signal) -> Result<()> {
        for pid in self.procs()? {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
        Ok(())
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        let (file, value, want) = if self.v2 {
            ("cgroup.freeze", if frozen { "1" } else { "0" }, None)
        } else if frozen {
            ("freezer.state", "FROZEN", Some("FROZEN"))
        } else {
            ("freezer.state", "THAWED", Some("THAWED"))
        };
        write(&self.freezer.join(file), value)?;
        let Some(want) = want else {
            return Ok(());
        };
        let state_file = self.freezer.join("freezer.state");
        let start = Instant::now();
        loop {
            let state = read(&state_file)?.trim().to_string();
            if state == want {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(1) {
                return Err(CgroupError::Freeze {
                    path: state_file,
                    state,
                    waited: start.elapsed(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills every process: freeze (so nothing forks meanwhile), SIGKILL all, thaw, and
    /// wait (bounded) until the cgroup is empty. Blocking.
    pub fn kill_all(&self) -> Result<()> {
        if self.procs()?.is_empty() {
            return Ok(());
        }
        let kill_file = self.freezer.join("cgroup.kill");
        if self.v2 && kill_file.exists() {
            write(&kill_file, 1)?;
        } else {
            let frozen = self.set_frozen(true);
            let killed = self.signal_all(nix::sys::signal::Signal::SIGKILL);
            // Thaw even when freezing failed: SIGKILL is delivered on thaw.
            self.set_frozen(false)?;
            frozen?;
            killed?;
        }
        let start = Instant::now();
        loop {
            let pids = self.procs()?;
            if pids.is_empty() {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(2) {
                return Err(CgroupError::NotEmpty {
                    path: self.freezer.clone(),
                    pids,
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn remove_dirs(&self) -> Result<()> {
        let mut first_err = None;
        for d in self.dirs() {
            let mut tries = 0;
            loop {
                match std::fs::remove_dir(&d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if tries < 50 && e.raw_os_error() == Some(libc::EBUSY) => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(source) => {
                        first_err.get_or_insert(CgroupError::Remove {
                            path: d.clone(),
                            source,
                        });
                        break;
                    }
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Kills everything left and removes the cgroups. Blocking.
    pub fn destroy(&self) -> Result<()> {
        let killed = if self.freezer.exists() {
            self.kill_all()
        } else {
            Ok(())
        };
        let removed = self.remove_dirs();
        killed.and(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,nosuid shared:9 - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/cpuacct rw,nosuid - cgroup cgroup rw,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
35 30 0:31 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
36 30 0:32 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
37 30 0:33 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
    const HYBRID_SELF: &str = "\
9:name=systemd:/
8:pids:/
6:freezer:/
4:memory:/process_api/abc
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn hybrid_layout_uses_v1_with_per_hierarchy_paths() {
        let cg = Cgroups::from_texts("tessera", HYBRID, HYBRID_SELF).unwrap();
        let c = cg.container("c1");
        assert_eq!(
            c.memory,
            Path::new("/sys/fs/cgroup/memory/process_api/abc/tessera/c1")
        );
        assert_eq!(c.cpu, Path::new("/sys/fs/cgroup/cpu/tessera/c1"));
        assert_eq!(c.cpuacct, Path::new("/sys/fs/cgroup/cpuacct/tessera/c1"));
        assert_eq!(c.dirs().len(), 5);
        assert!(matches!(cg.layout(), Layout::V1(_)));
    }

    #[test]
    fn comounted_cpu_cpuacct_share_a_dir() {
        let mi = "\
31 30 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
";
        let pc = "3:cpu,cpuacct:/a\n2:memory:/a\n1:freezer:/a\n";
        let cg = Cgroups::from_texts("r", mi, pc).unwrap();
        let c = cg.container("x");
        assert_eq!(c.cpu, c.cpuacct);
        assert_eq!(c.cpu, Path::new("/sys/fs/cgroup/cpu,cpuacct/a/r/x"));
        assert_eq!(c.dirs().len(), 3);
        assert!(c.pids.is_none());
    }

    #[test]
    fn bad_roots_and_missing_controllers_are_errors() {
        assert!(Cgroups::from_texts("../x", HYBRID, HYBRID_SELF).is_err());
        assert!(Cgroups::from_texts("/x", HYBRID, HYBRID_SELF).is_err());
        let e = Cgroups::from_texts("t", "", "0::/\n").unwrap_err();
        assert!(e.to_string().contains("memory"), "{e}");
    }

    #[test]
    fn limits_follow_mesos() {
        let l = Limits {
            cpus: Some(0.5),
            mem_mb: Some(64.0),
        };
        assert_eq!(l.cpu_shares(), Some(512));
        assert_eq!(l.cfs_quota_us(), Some(50_000));
        assert_eq!(l.mem_bytes(), Some(64 << 20));
        let tiny = Limits {
            cpus: Some(0.001),
            mem_mb: None,
        };
        assert_eq!(tiny.cpu_shares(), Some(MIN_CPU_SHARES));
        assert_eq!(tiny.cfs_quota_us(), Some(MIN_CFS_QUOTA_US));
    }
}

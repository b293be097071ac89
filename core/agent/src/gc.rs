//! Sandbox garbage collection, as Mesos' agent does it: a finished task's sandbox (its
//! terminal update acknowledged, so the agent forgot the task) is removed `gc_delay` after it
//! finished, and earlier, oldest first, while the disk holding the work dir is fuller than
//! the threshold.
//!
//! [`decide`] is the pure policy; [`run`] is the periodic task that feeds it from the agent's
//! published snapshot (which sandboxes are still in use) and the filesystem.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::http::Snapshot;

/// A sandbox no task uses any more.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub path: PathBuf,
    /// When its task's terminal update was acknowledged (or, for sandboxes left by an
    /// earlier run of the agent, when its files were last modified).
    pub completed_at: SystemTime,
    /// Bytes on disk; only consulted under disk pressure.
    pub size: u64,
}

/// Usage of the filesystem holding the work dir.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Disk {
    pub total: u64,
    pub used: u64,
}

impl Disk {
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.used as f64 / self.total as f64
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub delay: Duration,
    /// Fraction in (0, 1]; above it sandboxes go early.
    pub disk_threshold: f64,
}

/// Which sandboxes to remove now: every one at least `delay` old; then, while the disk would
/// still be above the threshold, the oldest of the rest (counting their sizes as freed).
pub fn decide(
    sandboxes: &[Finished],
    now: SystemTime,
    disk: Option<Disk>,
    policy: &Policy,
) -> Vec<PathBuf> {
    let age = |f: &Finished| now.duration_since(f.completed_at).unwrap_or(Duration::ZERO);
    let mut out = Vec::new();
    let mut rest: Vec<&Finished> = Vec::new();
    let mut freed: u64 = 0;
    for f in sandboxes {
        if age(f) >= policy.delay {
            out.push(f.path.clone());
            freed = freed.saturating_add(f.size);
        } else {
            rest.push(f);
        }
    }
    if let Some(d) = disk.filter(|d| d.total > 0) {
        let limit = (policy.disk_threshold.clamp(0.0, 1.0) * d.total as f64) as u64;
        let mut used = d.used.saturating_sub(freed);
        rest.sort_by(|a, b| {
            a.completed_at
                .cmp(&b.completed_at)
                .then(a.path.cmp(&b.path))
        });
        for f in rest {
            if used <= limit {
                break;
            }
            out.push(f.path.clone());
            used = used.saturating_sub(f.size);
        }
    }
    out
}

/// Usage of the filesystem holding `path`.
pub fn disk_usage(path: &Path) -> Option<Disk> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    let total = st.f_blocks as u64 * frsize;
    let free = st.f_bfree as u64 * frsize;
    Some(Disk {
        total,
        used: total.saturating_sub(free),
    })
}

/// Bytes under `path`, symlinks not followed.
pub fn du(path: &Path) -> u64 {
    let Ok(m) = path.symlink_metadata() else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| du(&e.path()))
        .sum::<u64>()
        + m.len()
}

/// Latest modification time of `dir` and its direct entries.
fn last_modified(dir: &Path) -> Option<SystemTime> {
    let own = dir.symlink_metadata().and_then(|m| m.modified()).ok();
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.path().symlink_metadata().and_then(|m| m.modified()).ok())
        .chain(own)
        .max()
}

/// Every run directory: `<slaves>/<agent>/frameworks/<fw>/executors/<ex>/runs/<container>`.
pub fn run_dirs(slaves: &Path) -> Vec<PathBuf> {
    fn subdirs(p: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()
    }
    let mut out = Vec::new();
    for agent in subdirs(slaves) {
        for fw in subdirs(&agent.join("frameworks")) {
            for ex in subdirs(&fw.join("executors")) {
                out.extend(subdirs(&ex.join("runs")));
            }
        }
    }
    out
}

/// Sandboxes of unknown origin younger than this are never collected (a launch may have
/// created the directory just before the snapshot naming it was published).
const MIN_UNKNOWN_AGE: Duration = Duration::from_secs(60);

/// The collector's memory between ticks.
#[derive(Default)]
struct Tracker {
    live: HashSet<PathBuf>,
    completed: HashMap<PathBuf, SystemTime>,
}

impl Tracker {
    fn observe(&mut self, snap: &Snapshot, now: SystemTime) {
        // A task of a group lives in its executor's run directory (`runs/C/tasks/T`).
        let live: HashSet<PathBuf> = snap
            .tasks
            .iter()
            .map(|t| {
                crate::executor::executor_sandbox_of(&t.sandbox)
                    .map_or_else(|| t.sandbox.clone(), Path::to_path_buf)
            })
            .collect();
        for gone in self.live.difference(&live) {
            self.completed.entry(gone.clone()).or_insert(now);
        }
        for p in &live {
            self.completed.remove(p);
        }
        self.live = live;
    }

    /// One collection pass; returns what was removed.
    fn collect(&mut self, slaves: &Path, policy: &Policy, now: SystemTime) -> Vec<PathBuf> {
        let disk = disk_usage(slaves);
        let pressure = disk.is_some_and(|d| d.fraction() > policy.disk_threshold);
        let mut finished = Vec::new();
        for dir in run_dirs(slaves) {
            if self.live.contains(&dir) {
                continue;
            }
            let completed_at = match self.completed.get(&dir) {
                Some(t) => *t,
                None => match last_modified(&dir) {
                    Some(t) if now.duration_since(t).unwrap_or_default() >= MIN_UNKNOWN_AGE => t,
                    _ => continue,
                },
            };
            let size = if pressure { du(&dir) } else { 0 };
            finished.push(Finished {
                path: dir,
                completed_at,
                size,
            });
        }
        let chosen = decide(&finished, now, disk, policy);
        let mut removed = Vec::new();
        for p in chosen {
            match std::fs::remove_dir_all(&p) {
                Ok(()) => {
                    info!(sandbox = %p.display(), pressure, "garbage-collected sandbox");
                    // Empty parents: runs/, the executor, executors/, the framework.
                    let mut parent = p.parent();
                    for _ in 0..4 {
                        match parent {
                            Some(d) if d.starts_with(slaves) && std::fs::remove_dir(d).is_ok() => {
                                parent = d.parent();
                            }
                            _ => break,
                        }
                    }
                    self.completed.remove(&p);
                    removed.push(p);
                }
                Err(e) => warn!(sandbox = %p.display(), error = %e, "cannot remove sandbox"),
            }
        }
        removed
    }
}

/// Collects sandboxes every `interval` until `shutdown`.
pub async fn run(
    slaves: PathBuf,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    policy: Policy,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut tracker = Tracker::default();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return;
                }
                let s = snapshots.borrow_and_update().clone();
                tracker.observe(&s, SystemTime::now());
            }
            _ = tick.tick() => {
                let s = snapshots.borrow_and_update().clone();
                tracker.observe(&s, SystemTime::now());
                let (slaves, policy) = (slaves.clone(), policy);
                let mut t = std::mem::take(&mut tracker);
                let res = tokio::task::spawn_blocking(move || {
                    let removed = t.collect(&slaves, &policy, SystemTime::now());
                    (t, removed)
                })
                .await;
                match res {
                    Ok((t, removed)) => {
                        tracker = t;
                        debug!(removed = removed.len(), "sandbox gc pass");
                    }
                    Err(e) => warn!(error = %e, "sandbox gc pass failed"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn f(name: &str, days_ago: u64, size: u64, now: SystemTime) -> Finished {
        Finished {
            path: PathBuf::from(name),
            completed_at: now - DAY * days_ago as u32,
            size,
        }
    }

    fn names(v: Vec<PathBuf>) -> Vec<String> {
        v.into_iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn age_alone_removes_only_expired() {
        let now = SystemTime::now();
        let policy = Policy {
            delay: DAY * 7,
            disk_threshold: 0.9,
        };
        let s = [
            f("old", 8, 10, now),
            f("edge", 7, 10, now),
            f("new", 1, 10, now),
        ];
        let disk = Some(Disk {
            total: 1000,
            used: 100,
        });
        assert_eq!(names(decide(&s, now, disk, &policy)), ["old", "edge"]);
        assert_eq!(names(decide(&s, now, None, &policy)), ["old", "edge"]);
        assert!(decide(&[], now, disk, &policy).is_empty());
        // A completion time in the future (clock step) is age zero, not a panic.
        let future = Finished {
            path: "future".into(),
            completed_at: now + DAY,
            size: 1,
        };
        assert!(decide(&[future], now, disk, &policy).is_empty());
    }

    #[test]
    fn disk_pressure_removes_oldest_first_until_below_threshold() {
        let now = SystemTime::now();
        let policy = Policy {
            delay: DAY * 7,
            disk_threshold: 0.9,
        };
        let s = [
            f("c", 1, 50, now),
            f("a", 3, 30, now),
            f("b", 2, 40, now),
            f("expired", 10, 5, now),
        ];
        // 960/1000 used; limit 900: expired frees 5 (955), a frees 30 (925), b 40 (885).
        let disk = Some(Disk {
            total: 1000,
            used: 960,
        });
        assert_eq!(names(decide(&s, now, disk, &policy)), ["expired", "a", "b"]);
        // Exactly at the threshold is not pressure.
        let at = Some(Disk {
            total: 1000,
            used: 905,
        });
        assert_eq!(names(decide(&s, now, at, &policy)), ["expired"]);
        // Pressure that nothing can relieve removes every finished sandbox, no more.
        let full = Some(Disk {
            total: 1000,
            used: 1000,
        });
        assert_eq!(decide(&s, now, full, &policy).len(), 4);
    }

    #[test]
    fn a_running_task_of_a_group_keeps_its_executors_run_dir_live() {
        let run = PathBuf::from("/w/slaves/a/frameworks/f/executors/e/runs/c");
        let view = crate::http::TaskView {
            framework_id: "f".into(),
            task_id: "t".into(),
            name: "t".into(),
            executor_id: "e".into(),
            container_id: "x".into(),
            state: tessera_types::TaskState::TaskRunning,
            sandbox: run.join("tasks/t"),
            resources: Default::default(),
            running: true,
            executor_container: "c".into(),
            executor_directory: run.clone(),
            default_executor: true,
        };
        let config = crate::AgentConfig::new("m:1", "/w", Default::default());
        let mut snap = Snapshot::empty(&config);
        snap.tasks = vec![view];
        let mut t = Tracker::default();
        t.observe(&snap, SystemTime::now());
        assert!(t.live.contains(&run), "{:?}", t.live);
    }

    #[test]
    fn collector_spares_live_and_fresh_sandboxes() {
        let d = std::env::temp_dir().join(format!("tessera-gc-{}", uuid::Uuid::new_v4()));
        let slaves = d.join("slaves");
        let run = |c: &str| slaves.join(format!("a/frameworks/f/executors/{c}/runs/{c}"));
        for c in ["live", "done", "unknown"] {
            std::fs::create_dir_all(run(c)).unwrap();
            std::fs::write(run(c).join("stdout"), b"x").unwrap();
        }
        let mut t = Tracker::default();
        let now = SystemTime::now();
        t.live = [run("live"), run("done")].into_iter().collect();
        // "done" leaves the snapshot (its terminal update was acknowledged) 8 days ago.
        t.completed.insert(run("done"), now - DAY * 8);
        t.live.remove(&run("done"));
        let policy = Policy {
            delay: DAY * 7,
            disk_threshold: 1.0,
        };
        let removed = t.collect(&slaves, &policy, now);
        assert_eq!(removed, vec![run("done")]);
        assert!(run("live").exists());
        // Fresh and of unknown origin: kept.
        assert!(run("unknown").exists());
        assert!(!slaves.join("a/frameworks/f/executors/done").exists());
        let _ = std::fs::remove_dir_all(&d);
    }
}

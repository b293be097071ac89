//! Disk limits: a task's `disk` resource enforced by measuring its sandbox (Mesos' `disk/du`
//! isolator with `--enforce_container_disk_quota`).
//!
//! [`usage`] walks a sandbox like `du -sx`: allocated blocks, symbolic links never followed
//! (the link itself counts), hard links counted once, other filesystems not entered, and at
//! most a given number of entries per walk so a sandbox with millions of files costs a
//! bounded amount each time (the result is then a lower bound, which still proves an
//! excess). Under pid and mount namespaces the task's `/tmp` is the sandbox's `tmp`, so it
//! counts too.
//!
//! [`spawn`] runs one watcher per task on the agent's runtime: every interval it measures
//! off the async workers and, the first time usage exceeds the limit, reports it once as an
//! event to the agent loop, which kills the task and reports TASK_FAILED with
//! REASON_CONTAINER_LIMITATION_DISK. Tasks without a `disk` resource are not watched.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tessera_types::{Reason, Resources};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::tasks::Limitation;

const MIB: f64 = 1024.0 * 1024.0;
/// Most directory entries one measurement looks at.
pub const MAX_WALK_ENTRIES: usize = 200_000;

/// What one walk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Allocated bytes (`st_blocks` × 512), as `du` counts them.
    pub bytes: u64,
    /// Entries looked at, the root included.
    pub entries: usize,
    /// `false` when the walk stopped at its entry budget: `bytes` is a lower bound.
    pub complete: bool,
}

/// Disk usage of the tree at `root` (see the module doc). Entries that vanish during the
/// walk are skipped; only an unreadable `root` is an error.
pub fn usage(root: &Path, max_entries: usize) -> io::Result<Usage> {
    let meta = std::fs::symlink_metadata(root)?;
    let dev = meta.dev();
    let mut u = Usage {
        bytes: meta.blocks().saturating_mul(512),
        entries: 1,
        complete: true,
    };
    let mut seen = BTreeSet::new();
    let mut dirs: Vec<PathBuf> = Vec::new();
    if meta.is_dir() {
        dirs.push(root.to_path_buf());
    }
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if dir == root => return Err(e),
            Err(_) => continue,
        };
        for entry in entries.flatten() {
            if u.entries >= max_entries {
                u.complete = false;
                return Ok(u);
            }
            u.entries += 1;
            // The entry's own metadata: a symbolic link is not followed.
            let Ok(m) = entry.metadata() else {
                continue;
            };
            if !m.is_dir() && m.nlink() > 1 && !seen.insert((m.dev(), m.ino())) {
                continue;
            }
            u.bytes = u.bytes.saturating_add(m.blocks().saturating_mul(512));
            if m.is_dir() && m.dev() == dev {
                dirs.push(entry.path());
            }
        }
    }
    Ok(u)
}

/// The limit a task's resources set, in bytes; `None` without a (positive) `disk`.
pub fn limit_bytes(resources: &Resources) -> Option<u64> {
    let mb = resources.scalar("disk").as_f64();
    (mb > 0.0).then_some((mb * MIB) as u64)
}

/// The limitation when `used` bytes exceed `limit` bytes.
pub fn check(used: u64, limit: u64) -> Option<Limitation> {
    (used > limit).then(|| Limitation {
        reason: Reason::ReasonContainerLimitationDisk,
        message: format!(
            "Disk usage ({used} bytes) exceeds the task's disk limit ({limit} bytes, {:.0} MB); the sandbox grew past its disk resource",
            limit as f64 / MIB
        ),
    })
}

/// Watches `sandbox` every `interval` until `stop` is cancelled (the task exited); sends
/// `wrap(limitation)` once when it exceeds `limit` bytes, then ends.
pub fn spawn<E: Send + 'static>(
    sandbox: PathBuf,
    limit: u64,
    interval: Duration,
    stop: CancellationToken,
    tx: mpsc::Sender<E>,
    wrap: impl FnOnce(Limitation) -> E + Send + 'static,
) {
    tokio::spawn(async move {
        let mut warned = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let dir = sandbox.clone();
            let measured = tokio::task::spawn_blocking(move || usage(&dir, MAX_WALK_ENTRIES)).await;
            let u = match measured {
                Ok(Ok(u)) => u,
                Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => return,
                Ok(Err(e)) => {
                    debug!(sandbox = %sandbox.display(), error = %e, "cannot measure the sandbox");
                    continue;
                }
                Err(e) => return warn!(error = %e, "the disk usage walk failed"),
            };
            if !u.complete && !warned {
                warned = true;
                warn!(sandbox = %sandbox.display(), entries = u.entries,
                    "the sandbox has more entries than one disk measurement looks at; its usage is a lower bound");
            }
            if let Some(l) = check(u.bytes, limit) {
                if !stop.is_cancelled() {
                    let _ = tx.send(wrap(l)).await;
                }
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tessera_types::parse::parse_resources;

    fn temp_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("tessera-disk-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn write_mb(path: &Path, mb: usize) {
        let mut f = std::fs::File::create(path).unwrap();
        let block = vec![1u8; 1 << 20];
        for _ in 0..mb {
            f.write_all(&block).unwrap();
        }
        f.sync_all().unwrap();
    }

    #[test]
    fn usage_counts_files_once_and_never_follows_links() {
        let root = temp_dir();
        let sandbox = root.join("sandbox");
        std::fs::create_dir_all(sandbox.join("a/b")).unwrap();
        write_mb(&sandbox.join("a/b/two"), 2);
        let base = usage(&sandbox, MAX_WALK_ENTRIES).unwrap();
        assert!(base.complete);
        assert!(base.bytes >= 2 << 20, "{base:?}");

        // A hard link adds nothing; a link to a big file outside adds only the link.
        std::fs::hard_link(sandbox.join("a/b/two"), sandbox.join("again")).unwrap();
        write_mb(&root.join("outside"), 4);
        std::os::unix::fs::symlink(root.join("outside"), sandbox.join("link")).unwrap();
        std::os::unix::fs::symlink(&root, sandbox.join("a/up")).unwrap();
        let after = usage(&sandbox, MAX_WALK_ENTRIES).unwrap();
        assert!(
            after.bytes < base.bytes + (1 << 20),
            "{after:?} vs {base:?}"
        );
        assert_eq!(after.entries, base.entries + 3);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_walk_stops_at_its_budget_with_a_lower_bound() {
        let root = temp_dir();
        for i in 0..20 {
            std::fs::write(root.join(format!("f{i}")), "x").unwrap();
        }
        let all = usage(&root, MAX_WALK_ENTRIES).unwrap();
        assert_eq!((all.entries, all.complete), (21, true));
        let part = usage(&root, 5).unwrap();
        assert_eq!((part.entries, part.complete), (5, false));
        assert!(part.bytes <= all.bytes);
        assert!(usage(&root.join("missing"), 5).is_err());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn limits_come_from_the_disk_resource_and_name_both_sizes() {
        let r = parse_resources("cpus:1;disk:10").unwrap();
        assert_eq!(limit_bytes(&r), Some(10 << 20));
        assert_eq!(limit_bytes(&parse_resources("cpus:1").unwrap()), None);
        assert!(check(10 << 20, 10 << 20).is_none(), "at the limit is fine");
        let l = check((10 << 20) + 1, 10 << 20).unwrap();
        assert_eq!(l.reason, Reason::ReasonContainerLimitationDisk);
        assert!(l.message.contains("10485761 bytes"), "{}", l.message);
        assert!(l.message.contains("10485760 bytes"), "{}", l.message);
    }
}

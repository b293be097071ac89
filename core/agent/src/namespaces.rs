//! pid and mount namespaces for process tasks, with a private `/tmp` (Mesos'
//! `namespaces/pid` and `filesystem/linux` isolators, for tasks without an image).
//!
//! **Mechanism.** The agent still starts every task with `posix_spawn` (it never forks
//! itself, see [`ProcessLauncher::spawn`](crate::ProcessLauncher)); the namespaces come from
//! util-linux `unshare(1)` placed around the [`supervisor`](crate::supervisor):
//!
//! ```text
//! agent ─posix_spawn─▶ unshare --pid -- sh -c SUPERVISOR …         host pid P, group leader
//!                        exec ▶ the supervisor: still in the host pid and mount namespaces;
//!                               only its children are created in a new pid namespace
//!                        └─ unshare --mount --propagation private -- sh -c NS_INIT …   pid 1
//!                             exec ▶ the namespace init, in a new private mount namespace:
//!                                    binds SANDBOX/tmp on /tmp, mounts a fresh /proc,
//!                                    runs the command as its child, forwards TERM/INT/HUP
//!                             └─ the task's command: a low pid; /proc shows only its
//!                                namespace; /tmp is its sandbox's `tmp`
//! ```
//!
//! The supervisor stays outside on purpose: its pid (checkpointed for recovery), its
//! `kill -STOP $$` (for cgroup placement, which a pid 1 could not do to itself) and its
//! `exit_status` file in the agent's meta dir (which a private `/tmp` could hide) all work
//! as without namespaces. It must fork nothing before the init: its first child becomes
//! pid 1 of the new namespace.
//!
//! The init is pid 1, and the kernel only delivers a signal to a pid 1 when it has a handler
//! for it (SIGKILL excepted when sent from outside): hence its traps. SIGTERM to the task's
//! process group still reaches every process in it (process groups span pid namespaces).
//! When the init exits, the kernel kills every process left in the namespace, even those
//! that left the process group; a SIGKILL to the group therefore ends all of them.
//!
//! **A sandbox under `/tmp`** (a work dir in `/tmp`, as in tests) would be hidden by the
//! private `/tmp`, and with it `$MESOS_SANDBOX`. The agent then creates the sandbox's path
//! inside `SANDBOX/tmp` and the init binds the sandbox there before covering `/tmp`, so the
//! task finds its sandbox at the same absolute path.
//!
//! **Availability** is probed once at start-up ([`TaskNamespaces::probe`]): root, the tools,
//! and a trial task run through the whole chain.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use std::sync::Arc;

use crate::error::AgentError;
use crate::launcher::{
    BoxFuture, Container, DEFAULT_PATH, LaunchSpec, Launcher, ProcessLauncher, RecoverSpec,
    Recovered, resolve_program, supervised_argv,
};

/// `$0` of the namespace init shell.
pub const NS_INIT_NAME: &str = "tessera-ns-init";
/// The sandbox directory bound on the task's `/tmp`.
pub const SANDBOX_TMP: &str = "tmp";
/// Exit status of the init when it cannot set up the task's mounts (the reason is in the
/// sandbox's `stderr`).
pub const SETUP_FAILED_STATUS: i32 = 125;
/// How long the start-up trial may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The namespace init. `$1` = mount(8), `$2` = the sandbox (absolute), `$3` = the host's
/// `/tmp` (canonical), `$4` = the sandbox relative to it (empty when not under it), `$5` =
/// how many persistent volumes follow, each as SOURCE TARGET `ro`|`rw`, then the command.
/// Volumes are bound first, so the recursive bind of the sandbox into its `/tmp` carries
/// them.
pub const NS_INIT_SCRIPT: &str = r#"m=$1; sb=$2; tmp=$3; rel=$4; nb=$5; shift 5
fail() { echo "tessera: cannot set up the task's namespaces: $1" >&2; exit 125; }
while [ "$nb" -gt 0 ]; do
  "$m" --bind "$1" "$2" || fail "binding volume $1 on $2"
  if [ "$3" = ro ]; then
    "$m" -o remount,bind,ro "$2" || fail "making $2 read-only"
  fi
  shift 3; nb=$((nb - 1))
done
if [ -n "$rel" ]; then
  "$m" --rbind "$sb" "$sb/tmp/$rel" || fail "binding the sandbox into its /tmp"
fi
"$m" --rbind "$sb/tmp" "$tmp" || fail "binding $sb/tmp on $tmp"
"$m" -t proc -o nosuid,nodev,noexec proc /proc || fail "mounting /proc"
cd "$sb" || fail "entering the sandbox"
c=
trap '[ -n "$c" ] && kill -TERM $c 2>/dev/null' TERM
trap '[ -n "$c" ] && kill -INT $c 2>/dev/null' INT
trap '[ -n "$c" ] && kill -HUP $c 2>/dev/null' HUP
"$@" &
c=$!
while :; do
  wait $c; r=$?
  kill -0 $c 2>/dev/null || break
done
exit $r
"#;

/// Why tasks cannot get their own namespaces here.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("the agent is not root (creating pid and mount namespaces needs CAP_SYS_ADMIN)")]
    NotRoot,
    #[error("{tool}(8) not found on PATH; install util-linux")]
    MissingTool { tool: &'static str },
    #[error("{path}: {source}")]
    Tmp { path: PathBuf, source: io::Error },
    #[error("a trial task in new namespaces failed: {reason}")]
    Trial { reason: String },
}

/// pid and mount namespaces for process tasks: the tools, found once. See the module doc.
#[derive(Debug, Clone)]
pub struct TaskNamespaces {
    unshare: PathBuf,
    mount: PathBuf,
    sh: PathBuf,
    /// The host's `/tmp`, canonical.
    tmp: PathBuf,
}

impl TaskNamespaces {
    /// Checks that tasks can get their own namespaces here: root, util-linux `unshare` and
    /// `mount`, and a trial task through the whole chain (the kernel or a container runtime
    /// may refuse). Blocking (a few milliseconds); call it at start-up.
    pub fn probe() -> Result<Self, NamespaceError> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err(NamespaceError::NotRoot);
        }
        let path = std::env::var("PATH").ok();
        let path = Some(path.as_deref().unwrap_or(DEFAULT_PATH));
        let tool = |tool: &'static str| {
            resolve_program(tool, path).ok_or(NamespaceError::MissingTool { tool })
        };
        let tmp_path = std::env::temp_dir();
        let tmp = std::fs::canonicalize("/tmp").map_err(|source| NamespaceError::Tmp {
            path: PathBuf::from("/tmp"),
            source,
        })?;
        let ns = TaskNamespaces {
            unshare: tool("unshare")?,
            mount: tool("mount")?,
            sh: tool("sh")?,
            tmp,
        };
        ns.trial(&tmp_path)?;
        Ok(ns)
    }

    /// What goes before the supervisor's shell: `unshare --pid --`.
    pub(crate) fn supervisor_prefix(&self) -> Vec<OsString> {
        vec![self.unshare.clone().into(), "--pid".into(), "--".into()]
    }

    /// Prepares `sandbox` (its private `tmp`, see the module doc) and returns what goes
    /// before the command: the namespace init with its arguments.
    pub(crate) fn init_prefix(
        &self,
        sandbox: &Path,
        binds: &[crate::volumes::Bind],
    ) -> io::Result<Vec<OsString>> {
        let sandbox = std::fs::canonicalize(sandbox)?;
        let private = sandbox.join(SANDBOX_TMP);
        std::fs::create_dir_all(&private)?;
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o1777))?;
        let rel = under(&sandbox, &self.tmp);
        if let Some(rel) = &rel {
            std::fs::create_dir_all(private.join(rel))?;
        }
        let mut argv: Vec<OsString> = vec![
            self.unshare.clone().into(),
            "--mount".into(),
            "--propagation".into(),
            "private".into(),
            "--".into(),
            self.sh.clone().into(),
            "-c".into(),
            NS_INIT_SCRIPT.into(),
            NS_INIT_NAME.into(),
            self.mount.clone().into(),
            sandbox.into(),
            self.tmp.clone().into(),
            rel.unwrap_or_default().into(),
            binds.len().to_string().into(),
        ];
        for b in binds {
            argv.push(b.source.clone().into());
            argv.push(b.target.clone().into());
            argv.push(if b.read_only { "ro" } else { "rw" }.into());
        }
        Ok(argv)
    }

    /// Runs `sh -c CHECK` through the whole chain in a throwaway sandbox under `base`: the
    /// command must see the sandbox's `tmp` as `/tmp` and have a low pid.
    fn trial(&self, base: &Path) -> Result<(), NamespaceError> {
        let dir = base.join(format!("tessera-ns-probe-{}", uuid::Uuid::new_v4()));
        let result = self.trial_in(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        result.map_err(|reason| NamespaceError::Trial { reason })
    }

    fn trial_in(&self, dir: &Path) -> Result<(), String> {
        let io = |what: &str, e: io::Error| format!("{what}: {e}");
        let sandbox = dir.join("sandbox");
        std::fs::create_dir_all(&sandbox).map_err(|e| io("creating the trial sandbox", e))?;
        let argv = supervised_argv(
            &self.sh,
            dir,
            false,
            Some((self, &[])),
            &sandbox,
            self.sh.clone().into(),
            vec![
                "-c".into(),
                "[ -e /tmp/tessera-ns-probe ] && [ \"$$\" -lt 100 ] && [ -d \"$PWD\" ]".into(),
            ],
        )
        .map_err(|e| io("preparing the trial sandbox", e))?;
        std::fs::write(sandbox.join(SANDBOX_TMP).join("tessera-ns-probe"), "")
            .map_err(|e| io("writing the trial marker", e))?;
        let (program, args) = argv.split_first().ok_or("empty command")?;
        let mut child = std::process::Command::new(program)
            .args(args)
            .current_dir(&sandbox)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io(&format!("starting {}", self.unshare.display()), e))?;
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if start.elapsed() > PROBE_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("no answer within {PROBE_TIMEOUT:?}"));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(io("waiting for the trial", e)),
            }
        };
        if status.success() {
            return Ok(());
        }
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        Err(format!("{status}: {}", stderr.trim()))
    }
}

/// Runs each task like [`ProcessLauncher`], in its own pid and mount namespaces with a
/// private `/tmp`. Recovery is a process's: the supervisor outside the namespaces is what
/// is checkpointed, signalled and waited for.
#[derive(Debug, Clone)]
pub struct NamespaceLauncher {
    namespaces: Arc<TaskNamespaces>,
}

impl NamespaceLauncher {
    pub fn new(namespaces: TaskNamespaces) -> Self {
        NamespaceLauncher {
            namespaces: Arc::new(namespaces),
        }
    }
}

impl Launcher for NamespaceLauncher {
    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<Arc<dyn Container>, AgentError>> {
        Box::pin(ProcessLauncher::launch_with(
            spec,
            Some(self.namespaces.clone()),
        ))
    }

    fn recover(&self, spec: RecoverSpec) -> BoxFuture<'_, Result<Recovered, AgentError>> {
        ProcessLauncher.recover(spec)
    }
}

/// `path` relative to `dir`, when it lies strictly under it.
fn under(path: &Path, dir: &Path) -> Option<PathBuf> {
    path.strip_prefix(dir)
        .ok()
        .filter(|rel| !rel.as_os_str().is_empty())
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake() -> TaskNamespaces {
        TaskNamespaces {
            unshare: "/usr/bin/unshare".into(),
            mount: "/usr/bin/mount".into(),
            sh: "/bin/sh".into(),
            tmp: "/tmp".into(),
        }
    }

    #[test]
    fn sandboxes_under_tmp_are_mirrored_into_their_private_tmp() {
        assert_eq!(
            under(Path::new("/tmp/w/slaves/a/runs/c"), Path::new("/tmp")),
            Some(PathBuf::from("w/slaves/a/runs/c"))
        );
        assert_eq!(
            under(Path::new("/var/lib/t/runs/c"), Path::new("/tmp")),
            None
        );
        assert_eq!(under(Path::new("/tmp"), Path::new("/tmp")), None);
        assert_eq!(under(Path::new("/tmpx/a"), Path::new("/tmp")), None);
    }

    #[test]
    fn init_prefix_prepares_the_private_tmp_and_names_the_sandbox() {
        let base = std::env::temp_dir().join(format!("tessera-ns-unit-{}", uuid::Uuid::new_v4()));
        let sandbox = base.join("runs/c");
        std::fs::create_dir_all(&sandbox).unwrap();
        let mut ns = fake();
        ns.tmp = std::fs::canonicalize(std::env::temp_dir()).unwrap();
        let argv = ns.init_prefix(&sandbox, &[]).unwrap();
        let canonical = std::fs::canonicalize(&sandbox).unwrap();
        let rel = canonical.strip_prefix(&ns.tmp).unwrap().to_path_buf();
        let private = canonical.join(SANDBOX_TMP);
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o1777, "world-writable and sticky like /tmp");
        assert!(private.join(&rel).is_dir(), "the sandbox's mirror exists");
        let tail: Vec<OsString> = argv[argv.len() - 5..].to_vec();
        assert_eq!(
            tail,
            [
                OsString::from("/usr/bin/mount"),
                canonical.clone().into(),
                ns.tmp.clone().into(),
                rel.into(),
                "0".into()
            ]
        );
        assert_eq!(argv[0], OsString::from("/usr/bin/unshare"));
        assert!(argv.contains(&OsString::from("--mount")));
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn the_supervisor_only_gets_a_pid_namespace_for_its_children() {
        let p = fake().supervisor_prefix();
        assert_eq!(p, ["/usr/bin/unshare", "--pid", "--"]);
    }
}

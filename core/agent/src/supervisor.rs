//! The task supervisor: a small `/bin/sh` script every process task runs under, so that a
//! task's exit status outlives the agent.
//!
//! A task whose agent was SIGKILLed is no longer the agent's child, so a restarted agent
//! cannot `waitpid` it. Instead each task is started as
//! `sh -c SCRIPT tessera-supervisor META_DIR STOP PROGRAM ARGS…`; the shell (the
//! *supervisor*, leader of the task's process group, the agent's child while the agent
//! lives) runs the command as its own child, forwards TERM/INT/HUP to it, waits for it and
//! writes `$?` to `META_DIR/exit_status` before exiting with the same code.
//!
//! The task survives the agent: no parent-death signal, its own process group (so signals
//! aimed at the agent's group miss it), stdin from `/dev/null` and stdout/stderr to the
//! sandbox files, never to pipes of the agent. A kill still reaches everything: the agent
//! signals the whole process group (or the whole cgroup).
//!
//! Exit statuses are the shell's: a command killed by signal N reads as `128+N`, which
//! [`exit_of_shell_status`] maps back to a signal (a command that *exits* with 129..=192
//! is reported as killed by a signal, the usual shell convention). A supervisor killed
//! itself (SIGKILL to the group) writes nothing; a live agent then sees the signal through
//! `waitpid`, a recovered one reports that the task ended without a status.
//!
//! With `STOP=1` the supervisor stops itself first (`kill -STOP $$`), so the cgroups
//! launcher can place it in its cgroups before any task code runs (see
//! [`crate::isolation`]).
//!
//! Under pid and mount namespaces the supervisor is started through `unshare --pid` and its
//! command is the namespace init (see [`crate::namespaces`]); the supervisor itself stays in
//! the host's namespaces, so none of the above changes.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::checkpoint::{ContainerKind, ContainerRecord, EXIT_STATUS_FILE};
use crate::launcher::{BoxFuture, Container, TaskExit};

/// `argv[0]` of the supervisor shell.
pub const SUPERVISOR_NAME: &str = "tessera-supervisor";

/// How often a recovered task (not the agent's child) is checked for its exit.
pub const RECOVERED_POLL: Duration = Duration::from_millis(100);

/// The supervisor. `$1` = directory for `exit_status`, `$2` = `1` to stop first, then the
/// command. A signal trapped while `wait` blocks interrupts it; the loop waits again until
/// the child is really gone.
pub const SCRIPT: &str = r#"d=$1; stop=$2; shift 2
[ "$stop" = 1 ] && kill -STOP $$
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
printf '%s\n' "$r" > "$d/exit_status"
exit $r
"#;

/// A shell `$?` as a task exit: `128+N` for N in 1..=64 is signal N, anything else a code.
pub fn exit_of_shell_status(r: i32) -> TaskExit {
    if (129..=192).contains(&r) {
        TaskExit::Signal(r - 128)
    } else {
        TaskExit::Code(r)
    }
}

/// The exit status the supervisor wrote in `dir`, if it has (a complete line).
pub fn read_exit_status(dir: &Path) -> Option<TaskExit> {
    let text = std::fs::read_to_string(dir.join(EXIT_STATUS_FILE)).ok()?;
    let line = text.strip_suffix('\n')?;
    line.trim().parse().ok().map(exit_of_shell_status)
}

/// State letter and start time (field 22, clock ticks after boot) of process `pid`.
pub fn proc_stat(pid: u32) -> io::Result<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let bad = || io::Error::other(format!("/proc/{pid}/stat: unexpected format"));
    let (_, rest) = stat.rsplit_once(')').ok_or_else(bad)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields
        .first()
        .and_then(|s| s.chars().next())
        .ok_or_else(bad)?;
    let start = fields
        .get(19)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((state, start))
}

/// The start time of `pid`, when it can be read.
pub fn start_time(pid: u32) -> Option<u64> {
    proc_stat(pid).ok().map(|(_, t)| t)
}

/// Whether `pid` is still the process that was started at `start` (when known) and has not
/// exited (a zombie has).
pub fn is_alive(pid: u32, start: Option<u64>) -> bool {
    match proc_stat(pid) {
        Ok((state, t)) => !matches!(state, 'Z' | 'X') && start.is_none_or(|s| s == t),
        Err(_) => false,
    }
}

/// A supervised task found again after an agent restart: not our child, so its exit is
/// learned by polling the supervisor's status file and its process.
#[derive(Debug, Clone)]
pub struct RecoveredProcess {
    pid: u32,
    start_time: Option<u64>,
    dir: PathBuf,
}

impl RecoveredProcess {
    pub fn new(pid: u32, start_time: Option<u64>, dir: PathBuf) -> Self {
        RecoveredProcess {
            pid,
            start_time,
            dir,
        }
    }

    /// The supervisor still runs (and has not written a status yet).
    pub fn is_running(&self) -> bool {
        is_alive(self.pid, self.start_time) && read_exit_status(&self.dir).is_none()
    }
}

impl Container for RecoveredProcess {
    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }

    /// Signals the process group, but only while the supervisor is the recorded process: a
    /// reused pid's group is never touched.
    fn kill(&self, signal: Signal) -> io::Result<()> {
        if !is_alive(self.pid, self.start_time) {
            return Ok(());
        }
        let pgid = nix::unistd::Pid::from_raw(self.pid as i32);
        match nix::sys::signal::killpg(pgid, signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(io::Error::from(e)),
        }
    }

    fn wait(&self) -> BoxFuture<'_, io::Result<TaskExit>> {
        Box::pin(async move {
            loop {
                if let Some(exit) = read_exit_status(&self.dir) {
                    return Ok(exit);
                }
                if !is_alive(self.pid, self.start_time) {
                    // It may have written the status just before exiting.
                    return read_exit_status(&self.dir).ok_or_else(|| {
                        io::Error::other(format!(
                            "the task's supervisor (pid {}) ended without recording an exit status; it was killed, or its status was lost while the agent was down",
                            self.pid
                        ))
                    });
                }
                tokio::time::sleep(RECOVERED_POLL).await;
            }
        })
    }

    fn record(&self) -> Option<ContainerRecord> {
        Some(ContainerRecord {
            kind: ContainerKind::Process,
            pid: Some(self.pid),
            start_time: self.start_time,
            cgroups: Vec::new(),
            docker_name: None,
            cgroup: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_statuses_map_to_codes_and_signals() {
        assert_eq!(exit_of_shell_status(0), TaskExit::Code(0));
        assert_eq!(exit_of_shell_status(3), TaskExit::Code(3));
        assert_eq!(exit_of_shell_status(128), TaskExit::Code(128));
        assert_eq!(exit_of_shell_status(137), TaskExit::Signal(9));
        assert_eq!(exit_of_shell_status(143), TaskExit::Signal(15));
        assert_eq!(exit_of_shell_status(255), TaskExit::Code(255));
    }

    #[test]
    fn own_process_is_alive_with_its_start_time_and_not_with_another() {
        let me = std::process::id();
        let t = start_time(me).expect("own stat");
        assert!(is_alive(me, Some(t)));
        assert!(is_alive(me, None));
        assert!(!is_alive(me, Some(t + 1)), "a reused pid is not ours");
    }

    fn supervise(dir: &Path, cmd: &str) -> std::process::Child {
        std::process::Command::new("/bin/sh")
            .args(["-c", SCRIPT, SUPERVISOR_NAME])
            .arg(dir)
            .args(["0", "/bin/sh", "-c", cmd])
            .spawn()
            .unwrap()
    }

    #[test]
    fn the_script_records_codes_signals_and_forwards_term() {
        let dir = std::env::temp_dir().join(format!("tessera-sup-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        for (cmd, want) in [
            ("exit 3", TaskExit::Code(3)),
            ("true", TaskExit::Code(0)),
            ("kill -KILL $$", TaskExit::Signal(9)),
        ] {
            let status = supervise(&dir, cmd).wait().unwrap();
            assert_eq!(read_exit_status(&dir), Some(want), "{cmd}");
            assert_eq!(
                TaskExit::from(status),
                TaskExit::Code(match want {
                    TaskExit::Code(c) => c,
                    TaskExit::Signal(s) => 128 + s,
                    TaskExit::MemoryLimit { .. } => unreachable!(),
                })
            );
            std::fs::remove_file(dir.join(EXIT_STATUS_FILE)).unwrap();
        }
        // TERM to the supervisor alone reaches the command.
        let started = dir.join("started");
        let mut child = supervise(&dir, &format!("touch {}; exec sleep 30", started.display()));
        let t0 = std::time::Instant::now();
        while !started.exists() {
            assert!(t0.elapsed() < Duration::from_secs(10), "command starts");
            std::thread::sleep(Duration::from_millis(10));
        }
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
        child.wait().unwrap();
        assert_eq!(read_exit_status(&dir), Some(TaskExit::Signal(15)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn partial_status_lines_are_not_read() {
        let dir = std::env::temp_dir().join(format!("tessera-sup-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(read_exit_status(&dir), None);
        std::fs::write(dir.join(EXIT_STATUS_FILE), "3").unwrap();
        assert_eq!(read_exit_status(&dir), None);
        std::fs::write(dir.join(EXIT_STATUS_FILE), "3\n").unwrap();
        assert_eq!(read_exit_status(&dir), Some(TaskExit::Code(3)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

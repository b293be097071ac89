//! Running a task as its user (Mesos `CommandInfo.user`, else `FrameworkInfo.user`, when
//! the agent switches users — Mesos `--switch_user`, on by default).
//!
//! The supervisor shell stays the agent's user (it writes the exit status into the agent's
//! checkpoint directory); only the command runs as the task's user, started through
//! util-linux `setpriv --reuid --regid --init-groups`, so the uid, the primary group and
//! the supplementary groups are all the user's (no group of the agent's leaks into the
//! task) without a `pre_exec` hook in the agent. The sandbox and its `stdout`/`stderr`
//! are given to the user so the task can write its working directory.
//!
//! Refusals are launch failures with a message saying what to do: a user that does not
//! exist on this machine, or an agent that is not root asked to run a task as someone
//! else.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, User};

/// The user a task runs as: its command's user, else its framework's, when the agent
/// switches users; `None` when it does not (the task runs as the agent).
pub fn effective_user(
    switch_user: bool,
    command_user: Option<&str>,
    framework_user: &str,
) -> Option<String> {
    if !switch_user {
        return None;
    }
    command_user
        .filter(|u| !u.is_empty())
        .or(Some(framework_user).filter(|u| !u.is_empty()))
        .map(str::to_string)
}

/// Whether this process runs as root (only root can switch users).
pub fn running_as_root() -> bool {
    Uid::effective().is_root()
}

/// A resolved switch: who, and the program that switches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    pub setpriv: PathBuf,
}

impl Switch {
    /// The command line that runs `program args` as this user.
    pub fn wrap(&self, program: PathBuf, args: Vec<String>) -> (PathBuf, Vec<String>) {
        let mut out = vec![
            format!("--reuid={}", self.uid),
            format!("--regid={}", self.gid),
            "--init-groups".to_string(),
            "--".to_string(),
            program.display().to_string(),
        ];
        out.extend(args);
        (self.setpriv.clone(), out)
    }

    /// Gives the sandbox directory and the given files in it to the user.
    pub fn own(&self, paths: &[&Path]) -> io::Result<()> {
        for p in paths {
            nix::unistd::chown(*p, Some(self.uid), Some(self.gid)).map_err(|e| {
                io::Error::other(format!(
                    "cannot give {} to user '{}': {e}",
                    p.display(),
                    self.name
                ))
            })?;
        }
        Ok(())
    }
}

/// What running as `user` takes here: `None` when the agent already is that user;
/// an error naming the user when it does not exist, when the agent (not root) cannot
/// switch, or when `setpriv` is missing.
pub fn resolve(user: &str, path: Option<&str>) -> io::Result<Option<Switch>> {
    let found = User::from_name(user)
        .map_err(|e| io::Error::other(format!("looking up user '{user}': {e}")))?;
    let Some(u) = found else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "user '{user}' does not exist on this agent; create it, or launch the task with a CommandInfo.user (or framework user) that exists here"
            ),
        ));
    };
    let me = Uid::effective();
    if u.uid == me {
        return Ok(None);
    }
    if !me.is_root() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the agent runs as uid {me} and cannot run tasks as user '{user}'; run the agent as root, or start it with --switch-user=false to run every task as the agent's user"
            ),
        ));
    }
    let setpriv = crate::launcher::resolve_program("setpriv", path)
        .or_else(|| {
            ["/usr/bin/setpriv", "/bin/setpriv"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "setpriv (util-linux) is needed to run tasks as another user; install util-linux",
            )
        })?;
    Ok(Some(Switch {
        name: user.to_string(),
        uid: u.uid,
        gid: u.gid,
        setpriv,
    }))
}

/// `OsString` arguments, for the supervisor's command line.
pub fn os_args(args: Vec<String>) -> Vec<OsString> {
    args.into_iter().map(OsString::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_user_wins_and_no_switch_means_none() {
        assert_eq!(
            effective_user(true, Some("alice"), "bob").as_deref(),
            Some("alice")
        );
        assert_eq!(effective_user(true, None, "bob").as_deref(), Some("bob"));
        assert_eq!(
            effective_user(true, Some(""), "bob").as_deref(),
            Some("bob")
        );
        assert_eq!(effective_user(true, None, ""), None);
        assert_eq!(effective_user(false, Some("alice"), "bob"), None);
    }

    #[test]
    fn unknown_users_are_refused_by_name() {
        let e = resolve("no-such-user-tessera", None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(
            e.to_string()
                .contains("'no-such-user-tessera' does not exist"),
            "{e}"
        );
    }

    #[test]
    fn the_agents_own_user_needs_no_switch() {
        let me = User::from_uid(Uid::effective()).unwrap().unwrap();
        assert_eq!(resolve(&me.name, None).unwrap(), None);
    }

    #[test]
    fn the_switch_runs_the_program_through_setpriv() {
        let s = Switch {
            name: "nobody".into(),
            uid: Uid::from_raw(65534),
            gid: Gid::from_raw(65534),
            setpriv: PathBuf::from("/usr/bin/setpriv"),
        };
        let (p, a) = s.wrap(PathBuf::from("/bin/sh"), vec!["-c".into(), "id".into()]);
        assert_eq!(p, PathBuf::from("/usr/bin/setpriv"));
        assert_eq!(
            a,
            [
                "--reuid=65534",
                "--regid=65534",
                "--init-groups",
                "--",
                "/bin/sh",
                "-c",
                "id"
            ]
        );
    }
}

//! Running an MPI implementation's own launcher (`mpiexec.hydra`, Open MPI's `mpirun`)
//! with its per-node daemons started as Tessera tasks through [`crate::control`]: the
//! command line, the ssh stand-in script, and reading its rank-tagged output.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::control::HOST_PREFIX;
use crate::runner::{RunEvent, Stream};

/// Which launcher runs the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// `mpiexec.hydra -launcher ssh -launcher-exec …` (MPICH).
    Hydra,
    /// `mpirun.openmpi --mca plm_rsh_agent …` (Open MPI's orted daemons).
    Orted,
}

/// Writes the script the launcher calls instead of ssh/rsh: it runs
/// `tessera mpi launch-agent` with the same arguments.
pub fn write_agent_script(dir: &Path, tessera: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("tessera-launch-agent");
    let quoted = tessera.display().to_string().replace('\'', "'\\''");
    std::fs::write(
        &path,
        format!("#!/bin/sh\nexec '{quoted}' mpi launch-agent \"$@\"\n"),
    )?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// The interface spec Open MPI's TCP components should use to reach `ip`.
fn if_include(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => "lo".into(),
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(_) => "lo".into(),
    }
}

/// The launcher's command: `layout` is ranks per node (node i is host
/// `tessera-node-<i>`), `program` the argv to run, `control_ip` the address the daemons
/// connect back to, `env` what every rank gets on top of the launcher's environment.
pub fn command(
    launcher: Launcher,
    agent_script: &Path,
    dir: &Path,
    layout: &[u32],
    control_ip: IpAddr,
    program: &[String],
    env: &std::collections::BTreeMap<String, String>,
) -> std::io::Result<Command> {
    let ranks: u32 = layout.iter().sum();
    let mut cmd;
    match launcher {
        Launcher::Hydra => {
            let hosts: Vec<String> = layout
                .iter()
                .enumerate()
                .map(|(i, n)| format!("{HOST_PREFIX}{i}:{n}"))
                .collect();
            cmd = Command::new("mpiexec.hydra");
            cmd.args(["-launcher", "ssh", "-launcher-exec"])
                .arg(agent_script)
                .args(["-hosts", &hosts.join(",")])
                .args(["-localhost", &control_ip.to_string()])
                .arg("-prepend-rank")
                .args(["-n", &ranks.to_string()]);
        }
        Launcher::Orted => {
            let hostfile = dir.join("hostfile");
            let lines: String = layout
                .iter()
                .enumerate()
                .map(|(i, n)| format!("{HOST_PREFIX}{i} slots={n}\n"))
                .collect();
            std::fs::write(&hostfile, lines)?;
            let ifs = if_include(control_ip);
            cmd = Command::new("mpirun.openmpi");
            cmd.arg("--allow-run-as-root")
                .arg("--hostfile")
                .arg(&hostfile)
                .args(["-n", &ranks.to_string()])
                .arg("--mca")
                .arg("plm_rsh_agent")
                .arg(agent_script)
                .args(["--mca", "plm_rsh_no_tree_spawn", "1"])
                // orted's hwloc runtime control writes the topology into shared memory
                // at a fixed address and crashes when that address is taken (seen under
                // load); binding is the agent's business anyway.
                .args(["--mca", "rtc", "^hwloc"])
                .args(["--mca", "pml", "ob1", "--mca", "btl", "tcp,self"])
                .args(["--mca", "btl_tcp_if_include", &ifs])
                .args(["--mca", "oob_tcp_if_include", &ifs])
                .arg("--tag-output");
            // mpirun forwards only the variables it is told to (Hydra forwards all).
            for k in env.keys() {
                cmd.args(["-x", k]);
            }
        }
    }
    cmd.envs(env);
    cmd.args(program)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(cmd)
}

/// Splits a launcher's rank tag off a line: Hydra's `[3] text`, Open MPI's
/// `[1,3]<stdout>:text`.
pub fn split_rank(line: &str) -> (Option<u32>, &str) {
    let Some(rest) = line.strip_prefix('[') else {
        return (None, line);
    };
    let Some((tag, text)) = rest.split_once(']') else {
        return (None, line);
    };
    let rank = tag.rsplit(',').next().and_then(|r| r.trim().parse().ok());
    let Some(rank) = rank else {
        return (None, line);
    };
    let text = text
        .strip_prefix("<stdout>:")
        .or_else(|| text.strip_prefix("<stderr>:"))
        .unwrap_or(text.strip_prefix(' ').unwrap_or(text));
    (Some(rank), text)
}

/// Forwards the launcher's output as rank-tagged lines.
pub fn forward_output(child: &mut Child, events: &mpsc::UnboundedSender<RunEvent>) {
    let pipes: [(Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>, Stream); 2] = [
        (
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            Stream::Stdout,
        ),
        (
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            Stream::Stderr,
        ),
    ];
    for (pipe, stream) in pipes {
        let Some(pipe) = pipe else { continue };
        let events = events.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let (rank, text) = split_rank(&line);
                let _ = events.send(RunEvent::Output {
                    rank,
                    stream,
                    line: text.to_string(),
                });
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_tags_of_both_launchers() {
        assert_eq!(split_rank("[3] hello"), (Some(3), "hello"));
        assert_eq!(split_rank("[1,12]<stdout>:x y"), (Some(12), "x y"));
        assert_eq!(split_rank("plain"), (None, "plain"));
        assert_eq!(split_rank("[proxy:0] note"), (None, "[proxy:0] note"));
        assert_eq!(if_include("127.0.0.1".parse().unwrap()), "lo");
        assert_eq!(if_include("10.200.0.254".parse().unwrap()), "10.200.0.0/24");
    }
}

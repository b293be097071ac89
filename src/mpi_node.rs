//! The hidden `tessera mpi` commands that run on agents and beside launchers: `proxy` (a
//! node task that becomes Hydra's proxy or Open MPI's orted), `launch-agent` (the ssh
//! stand-in `mpiexec`/`mpirun` call) and `rank-exec` (runs one rank: reports a failing
//! rank under Hydra, and pipes the job's stdin into rank 0 under direct launch).

use std::io::{Read, Write};

use anyhow::{Result, bail};

static RANK_CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = RANK_CHILD.load(std::sync::atomic::Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe; pid is our own child's.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Where rank 0's stdin comes from: the job's stdin relay and its token.
pub struct StdinFrom<'a> {
    pub addr: &'a str,
    pub token: &'a str,
}

/// Runs `program` as this rank: with `stdin`, rank 0's stdin is what the relay sends (then
/// EOF); with `control`, a non-zero exit is reported there. Exits with the program's status.
pub fn rank_exec(
    control: Option<&str>,
    stdin: Option<StdinFrom<'_>>,
    program: &[String],
) -> Result<u8> {
    let args: Vec<&String> = program.iter().skip_while(|a| a.as_str() == "--").collect();
    let Some((prog, rest)) = args.split_first() else {
        bail!("usage: rank-exec [--control ADDR] [--stdin ADDR --stdin-token T] -- PROGRAM [ARGS]");
    };
    // Every rank runs this wrapper under Hydra: only rank 0 reads the job's stdin.
    let rank0 = std::env::var("PMI_RANK").map_or(true, |r| r.trim() == "0");
    let relay = match &stdin {
        Some(s) if rank0 => Some(connect_relay(s)?),
        _ => None,
    };
    let mut cmd = std::process::Command::new(prog);
    cmd.args(rest.iter().map(|a| a.as_str()));
    if relay.is_some() {
        cmd.stdin(std::process::Stdio::piped());
        // A rank that closes its stdin early must not kill this wrapper with SIGPIPE (the
        // child gets the default disposition back: std resets it).
        // SAFETY: ignoring a signal has no preconditions.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("PROGRAM: cannot start {prog}: {e}"))?;
    RANK_CHILD.store(child.id() as i32, std::sync::atomic::Ordering::SeqCst);
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: installs a handler that only calls kill(2) on the child.
        unsafe {
            libc::signal(sig, forward_signal as *const () as libc::sighandler_t);
        }
    }
    if let (Some(mut from), Some(mut to)) = (relay, child.stdin.take()) {
        // Detached: it ends at the relay's EOF (closing the pipe: the rank's EOF), when the
        // rank stops reading, or with this process.
        std::thread::spawn(move || copy_plain(&mut from, &mut to));
    }
    let status = child.wait()?;
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(9));
    if code != 0
        && let Some(control) = control
    {
        let rank: i64 = std::env::var("PMI_RANK")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(-1);
        if rank >= 0 {
            let _ = control_call(
                control,
                &serde_json::json!({"role": "rank-exit", "rank": rank, "code": code}),
            );
        }
    }
    Ok(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
}

/// Copies with read and write only. (`std::io::copy` splices a socket into a pipe, and
/// a blocked splice holds the pipe's lock: the rank's exit, which closes the pipe's other
/// end, would wait for the relay's next byte.)
fn copy_plain(from: &mut impl Read, to: &mut impl Write) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Connects to the job's stdin relay and identifies with the token.
fn connect_relay(from: &StdinFrom<'_>) -> Result<std::net::TcpStream> {
    let mut s = std::net::TcpStream::connect(from.addr).map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the job's stdin relay at {}: {e}; rank 0 does not start without its stdin",
            from.addr
        )
    })?;
    writeln!(s, "{}", from.token)?;
    Ok(s)
}

/// One JSON request line to the control server and its one-line answer.
fn control_call(addr: &str, request: &serde_json::Value) -> Result<serde_json::Value> {
    use std::io::{BufRead, BufReader};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| {
        anyhow::anyhow!("cannot reach `tessera mpi run`'s control server at {addr}: {e}")
    })?;
    writeln!(s, "{request}")?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    serde_json::from_str(line.trim())
        .map_err(|_| anyhow::anyhow!("the control server at {addr} closed without an answer"))
}

/// A node task of `--launch hydra|orted`: waits for its daemon's command and becomes it.
pub fn proxy(control: &str) -> Result<u8> {
    let node: u32 = std::env::var("TESSERA_MPI_NODE")
        .ok()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("TESSERA_MPI_NODE is not set: `tessera mpi proxy` runs as a node task of `tessera mpi run --launch hydra|orted`"))?;
    let answer = control_call(control, &serde_json::json!({"role": "proxy", "node": node}))?;
    let Some(command) = answer["command"].as_str() else {
        bail!(
            "control server: {}",
            answer["error"].as_str().unwrap_or("no command")
        );
    };
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .exec();
    bail!("cannot exec the daemon command {command:?}: {err}")
}

/// The ssh/rsh stand-in: starts the daemon command in the named node's task and exits
/// with its status.
pub fn launch_agent(args: &[String]) -> Result<u8> {
    let Ok(control) = std::env::var("TESSERA_MPI_CONTROL") else {
        bail!(
            "TESSERA_MPI_CONTROL is not set: launch-agent is called by mpiexec/mpirun under `tessera mpi run --launch hydra|orted`"
        );
    };
    let Some((host, command)) = tessera_mpi::control::split_launch_args(args) else {
        bail!("usage: launch-agent [-x] HOST COMMAND…");
    };
    let answer = control_call(
        &control,
        &serde_json::json!({"role": "launch", "host": host, "command": command}),
    )?;
    match answer["exit"].as_i64() {
        Some(code) => Ok(u8::try_from(code.clamp(0, 255)).unwrap_or(1)),
        None => bail!(
            "control server: {}",
            answer["error"].as_str().unwrap_or("no exit status")
        ),
    }
}

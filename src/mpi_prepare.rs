//! What `tessera mpi run` and `submit` check and build before anything starts: the
//! program (an absolute, executable path, built against the chosen MPI), the launch mode,
//! the gang spec and the time limit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use tessera_batch::spec::{Quantity, parse_duration_ms, parse_megabytes};
use tessera_mpi::mpiexec::Launcher;
use tessera_mpi::{GangSpec, Layout};
use tessera_types::parse::parse_resources;
use tessera_types::{CommandInfo, Role};

use crate::mpi_cli::{Impl, Launch, RunArgs};

/// The program as an absolute path, checked to exist and be executable here (agents on
/// this machine, or sharing its file system, run the same path).
fn resolve_program(name: &str) -> Result<PathBuf> {
    let candidate = if name.contains('/') {
        let p = Path::new(name);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir()?.join(p)
        }
    } else {
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        });
        match found {
            Some(p) => p,
            None => bail!("PROGRAM: {name:?} is not a file and is not found on PATH"),
        }
    };
    let meta = std::fs::metadata(&candidate)
        .map_err(|e| anyhow::anyhow!("PROGRAM: {} does not exist ({e})", candidate.display()))?;
    use std::os::unix::fs::PermissionsExt;
    if !meta.is_file() {
        bail!("PROGRAM: {} is not a file", candidate.display());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        bail!(
            "PROGRAM: {} is not executable; chmod +x it",
            candidate.display()
        );
    }
    Ok(candidate.canonicalize().unwrap_or(candidate))
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(cmd).is_file()))
}

/// Refuses an implementation that is not installed, or a program built against the other
/// one (an MPICH binary under Open MPI's launcher hangs, and the reverse).
fn check_impl(imp: Impl, program: &Path) -> Result<()> {
    let (probe, package, lib, other) = match imp {
        Impl::Mpich => ("mpichversion", "mpich", "libmpich", "libmpi.so.40"),
        Impl::Openmpi => ("ompi_info", "openmpi-bin", "libmpi.so.40", "libmpich"),
    };
    if !on_path(probe) {
        bail!(
            "--impl {}: {probe} is not on PATH, so it is not installed; install it with `apt-get install {package}`",
            match imp {
                Impl::Mpich => "mpich",
                Impl::Openmpi => "openmpi",
            }
        );
    }
    // The libraries the program names itself, read from its ELF header; `ldd` (tens of
    // milliseconds before the job is even submitted) only when it names neither.
    let direct = read_head(program).and_then(|elf| needed_libraries(&elf));
    let names = |libs: &[String], name: &str| libs.iter().any(|l| l.starts_with(name));
    let wrong = match direct {
        Some(libs) if names(&libs, lib) => false,
        Some(libs) if names(&libs, other) => true,
        _ => match std::process::Command::new("ldd").arg(program).output() {
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stdout);
                text.contains(other) && !text.contains(lib)
            }
            Err(_) => false,
        },
    };
    if wrong {
        bail!(
            "PROGRAM: {} is linked against {other}, not {lib}; pass the matching --impl or rebuild it",
            program.display()
        );
    }
    Ok(())
}

/// The first [`ELF_HEAD`] bytes of a file (its headers and dynamic section are there).
fn read_head(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(ELF_HEAD)
        .read_to_end(&mut head)
        .ok()?;
    Some(head)
}

/// How much of a program is read to find the libraries it needs.
const ELF_HEAD: u64 = 64 << 20;

/// The shared libraries a 64-bit little-endian ELF file names itself (`DT_NEEDED`), in
/// order; `None` when `elf` is not one, has no dynamic section, or is cut short.
fn needed_libraries(elf: &[u8]) -> Option<Vec<String>> {
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let int = |at: usize, len: usize| -> Option<u64> {
        let b = elf.get(at..at.checked_add(len)?)?;
        Some(b.iter().rev().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
    };
    let (phoff, phentsize, phnum) = (int(0x20, 8)?, int(0x36, 2)?, int(0x38, 2)?);
    // (virtual address, file offset, size) of each loaded segment; the dynamic section.
    let mut loads = Vec::new();
    let mut dynamic = None;
    for i in 0..phnum {
        let h = usize::try_from(phoff.checked_add(i.checked_mul(phentsize)?)?).ok()?;
        let (offset, vaddr, filesz) = (int(h + 8, 8)?, int(h + 16, 8)?, int(h + 32, 8)?);
        match int(h, 4)? {
            1 => loads.push((vaddr, offset, filesz)),
            2 => dynamic = Some((offset, filesz)),
            _ => {}
        }
    }
    let (offset, size) = dynamic?;
    let (mut needed, mut strtab) = (Vec::new(), None);
    let mut at = usize::try_from(offset).ok()?;
    let end = usize::try_from(offset.checked_add(size)?).ok()?;
    while at + 16 <= end {
        match (int(at, 8)?, int(at + 8, 8)?) {
            (0, _) => break,
            (1, name) => needed.push(name),
            (5, addr) => strtab = Some(addr),
            _ => {}
        }
        at += 16;
    }
    let strtab = strtab?;
    let (vaddr, offset, _) = loads
        .iter()
        .find(|(v, _, size)| strtab >= *v && strtab - v < *size)?;
    let base = strtab - vaddr + offset;
    needed
        .iter()
        .map(|&name| {
            let start = usize::try_from(base.checked_add(name)?).ok()?;
            let rest = elf.get(start..)?;
            let len = rest.iter().position(|&b| b == 0)?;
            Some(String::from_utf8_lossy(&rest[..len]).into_owned())
        })
        .collect()
}

fn layout(args: &RunArgs) -> Result<Layout> {
    Ok(match (args.ppn, args.spread) {
        (Some(0), _) => bail!("--ppn: must be at least 1"),
        (Some(n), _) => Layout::Ppn(n),
        (None, true) => Layout::Spread,
        (None, false) => Layout::Pack,
    })
}

fn build_spec(args: &RunArgs, program: &Path) -> Result<GangSpec> {
    if !args.cpus_per_rank.is_finite() || args.cpus_per_rank <= 0.0 {
        bail!("--cpus-per-rank: must be a positive number");
    }
    let mem = parse_megabytes("--mem-per-rank", &Quantity::Text(args.mem_per_rank.clone()))?;
    if !mem.is_finite() || mem <= 0.0 {
        bail!("--mem-per-rank: must be positive");
    }
    let per_rank = parse_resources(&format!("cpus:{};mem:{}", args.cpus_per_rank, mem.ceil()))?;
    let mut command = CommandInfo {
        value: program.display().to_string(),
        shell: false,
        arguments: std::iter::once(program.display().to_string())
            .chain(args.program.iter().skip(1).cloned())
            .collect(),
        ..CommandInfo::default()
    };
    for kv in &args.env {
        let Some((k, v)) = kv.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            bail!("--env: {kv:?} is not KEY=VALUE");
        };
        command.environment.insert(k.to_string(), v.to_string());
    }
    let role = Role::new(args.role.clone()).map_err(|e| anyhow::anyhow!("--role: {e}"))?;
    let spec = GangSpec {
        ranks: args.ranks,
        per_rank,
        layout: layout(args)?,
        priority: args.priority,
        role,
        command,
        per_node: false,
        first_rank_wrapper: Vec::new(),
    };
    spec.validate()?;
    Ok(spec)
}

/// What `run` and `submit` check before anything starts: the launch mode, the program,
/// the implementation, the gang and the time limit.
pub fn prepare(args: &RunArgs) -> Result<(Option<Launcher>, PathBuf, GangSpec, Option<Duration>)> {
    let launch = args.launch.unwrap_or(match args.mpi_impl {
        Impl::Mpich => Launch::Pmi,
        Impl::Openmpi => Launch::Orted,
    });
    let launcher = match (args.mpi_impl, launch) {
        (Impl::Mpich, Launch::Pmi) => None,
        (Impl::Mpich, Launch::Hydra) => Some(Launcher::Hydra),
        (Impl::Openmpi, Launch::Orted) => Some(Launcher::Orted),
        (Impl::Openmpi, Launch::Pmi) => {
            bail!("--launch pmi: Open MPI ranks do not speak PMI-1; use --launch orted")
        }
        (Impl::Openmpi, Launch::Hydra) => {
            bail!("--launch hydra: Hydra is MPICH's launcher; Open MPI uses --launch orted")
        }
        (Impl::Mpich, Launch::Orted) => {
            bail!("--launch orted: orted is Open MPI's daemon; MPICH uses --launch pmi or hydra")
        }
    };
    let needs = match launcher {
        Some(Launcher::Hydra) => Some(("mpiexec.hydra", "mpich")),
        Some(Launcher::Orted) => Some(("mpirun.openmpi", "openmpi-bin")),
        None => None,
    };
    if let Some((cmd, package)) = needs
        && !on_path(cmd)
    {
        bail!("--launch: {cmd} is not on PATH; install it with `apt-get install {package}`");
    }
    let program = resolve_program(&args.program[0])?;
    check_impl(args.mpi_impl, &program)?;
    let spec = build_spec(args, &program)?;
    let time_limit = match &args.time {
        Some(t) => Some(Duration::from_millis(parse_duration_ms(
            "--time",
            &Quantity::Text(t.clone()),
        )?)),
        None => None,
    };
    if !args.hold.is_finite() || args.hold <= 0.0 {
        bail!("--hold: must be a positive number of seconds");
    }
    Ok((launcher, program, spec, time_limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_libraries_a_program_names() {
        let exe = std::env::current_exe().expect("the test binary");
        let elf = read_head(&exe).expect("readable");
        let libs = needed_libraries(&elf).expect("a dynamic ELF executable");
        assert!(libs.iter().any(|l| l.starts_with("libc.so")), "{libs:?}");
        assert_eq!(needed_libraries(b"#!/bin/sh\necho hi\n"), None);
        // Cut short anywhere: no answer, never a panic.
        for len in [0, 5, 64, 1000, elf.len() / 2] {
            let _ = needed_libraries(&elf[..len.min(elf.len())]);
        }
    }
}

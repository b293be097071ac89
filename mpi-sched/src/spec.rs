//! What a user asks for: a gang of `ranks` identical ranks, their per-rank resources, how
//! ranks spread over nodes, a priority and the role whose offers may be used.

use std::fmt;

use tessera_types::{CommandInfo, Resources, Role, Value};

use crate::error::{Error, Result};

/// How ranks are laid out over agents (nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Like Slurm's `--ntasks-per-node=n` with `-n N`: `ceil(N/n)` nodes, `n` ranks on each
    /// except the last, which holds the remainder `N mod n` when that is not zero.
    Ppn(u32),
    /// As many distinct agents as possible: ranks are dealt round-robin, one per agent per
    /// round, so per-node counts differ by at most one where capacity allows.
    Spread,
    /// Fewest agents: fill the agents that hold the most ranks first.
    Pack,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layout::Ppn(n) => write!(f, "ppn={n}"),
            Layout::Spread => f.write_str("spread"),
            Layout::Pack => f.write_str("pack"),
        }
    }
}

/// A gang request. Build it with a struct literal, then [`GangSpec::validate`] (the queue's
/// `submit` validates too).
#[derive(Debug, Clone, PartialEq)]
pub struct GangSpec {
    /// Number of MPI ranks (`-n`), at least 1.
    pub ranks: u32,
    /// What each rank needs, by name (`cpus`, `mem`, `gpus`, …): unreserved scalars only,
    /// `cpus` required and positive. Offers reserved to the gang's role also satisfy it.
    pub per_rank: Resources,
    pub layout: Layout,
    /// Higher runs first; equal priorities run in submission order.
    pub priority: i32,
    /// Only offers allocated to this role (or to no particular role) are used, and only the
    /// resources in them that this role may use.
    pub role: Role,
    /// What each task runs: every rank (with `PMI_RANK`/`PMI_ID`/`PMI_SIZE` in its
    /// environment), or with [`GangSpec::per_node`] one task per node.
    pub command: CommandInfo,
    /// One task per node holding all its ranks' resources (for launchers that start their
    /// own per-node daemons: Hydra's proxies, Open MPI's orted), instead of one per rank.
    pub per_node: bool,
    /// An argv rank 0's command runs under, when not empty (one task per rank only): how
    /// the job's stdin reaches rank 0 under direct launch (`tessera mpi rank-exec --stdin
    /// …`, see [`crate::stdin`]).
    pub first_rank_wrapper: Vec<String>,
}

/// Most ranks one gang may ask for.
pub const MAX_RANKS: u32 = 1_000_000;

impl GangSpec {
    /// A gang with priority 0, role `*`, running `sh -c true`; handy in tests and benches.
    pub fn simple(ranks: u32, per_rank: Resources, layout: Layout) -> GangSpec {
        GangSpec {
            ranks,
            per_rank,
            layout,
            priority: 0,
            role: Role::any(),
            command: CommandInfo::shell("true"),
            per_node: false,
            first_rank_wrapper: Vec::new(),
        }
    }

    /// The command of rank `rank`'s task: [`GangSpec::command`], under
    /// [`GangSpec::first_rank_wrapper`] for rank 0.
    pub fn rank_command(&self, rank: u32) -> CommandInfo {
        if rank != 0 || self.first_rank_wrapper.is_empty() || self.per_node {
            return self.command.clone();
        }
        let mut argv = self.first_rank_wrapper.clone();
        if self.command.shell {
            argv.extend(["/bin/sh".into(), "-c".into(), self.command.value.clone()]);
        } else if self.command.arguments.is_empty() {
            argv.push(self.command.value.clone());
        } else {
            argv.extend(self.command.arguments.iter().cloned());
        }
        CommandInfo {
            value: argv[0].clone(),
            shell: false,
            arguments: argv,
            ..self.command.clone()
        }
    }

    /// Checks every field, naming the first one that is wrong.
    pub fn validate(&self) -> Result<()> {
        if self.ranks == 0 {
            return Err(Error::invalid("ranks", "must be at least 1"));
        }
        if self.ranks > MAX_RANKS {
            return Err(Error::invalid(
                "ranks",
                format!("{} is more than the maximum {MAX_RANKS}", self.ranks),
            ));
        }
        if let Layout::Ppn(0) = self.layout {
            return Err(Error::invalid("layout.ppn", "must be at least 1"));
        }
        for (k, v) in self.per_rank.iter() {
            let field = format!("per_rank.{}", k.name);
            if k.is_reserved() {
                return Err(Error::invalid(
                    field,
                    "must be unreserved: demands are by name, reservations come from offers",
                ));
            }
            if !matches!(v, Value::Scalar(_)) {
                return Err(Error::invalid(field, "must be a scalar quantity"));
            }
        }
        if self.per_rank.scalar("cpus").is_zero() {
            return Err(Error::invalid("per_rank.cpus", "must be positive"));
        }
        if self.command.value.is_empty() && self.command.arguments.is_empty() {
            return Err(Error::invalid("command.value", "is empty"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_types::parse::parse_resources;

    fn spec(ranks: u32, res: &str, layout: Layout) -> GangSpec {
        GangSpec::simple(ranks, parse_resources(res).unwrap(), layout)
    }

    #[test]
    fn validation_names_the_field() {
        let field = |s: GangSpec| s.validate().unwrap_err().field().map(str::to_owned);
        assert!(spec(4, "cpus:1;mem:512", Layout::Ppn(2)).validate().is_ok());
        assert_eq!(field(spec(0, "cpus:1", Layout::Pack)), Some("ranks".into()));
        assert_eq!(
            field(spec(2, "cpus:1", Layout::Ppn(0))),
            Some("layout.ppn".into())
        );
        assert_eq!(
            field(spec(2, "mem:10", Layout::Spread)),
            Some("per_rank.cpus".into())
        );
        assert_eq!(
            field(spec(2, "cpus:0", Layout::Spread)),
            Some("per_rank.cpus".into())
        );
        assert_eq!(
            field(spec(2, "cpus:1;ports:[1-2]", Layout::Spread)),
            Some("per_rank.ports".into())
        );
        assert_eq!(
            field(spec(2, "cpus(eng):1", Layout::Spread)),
            Some("per_rank.cpus".into())
        );
        let mut s = spec(1, "cpus:1", Layout::Pack);
        s.command = CommandInfo::default();
        assert_eq!(field(s), Some("command.value".into()));
    }

    #[test]
    fn only_rank_0_runs_under_the_wrapper() {
        let mut s = spec(2, "cpus:1", Layout::Pack);
        s.command = CommandInfo {
            value: "/bin/prog".into(),
            arguments: vec!["/bin/prog".into(), "-x".into()],
            ..CommandInfo::default()
        };
        s.command.environment.insert("K".into(), "v".into());
        assert_eq!(s.rank_command(0), s.command);
        s.first_rank_wrapper = vec!["/bin/tessera".into(), "wrap".into(), "--".into()];
        let r0 = s.rank_command(0);
        assert_eq!(r0.value, "/bin/tessera");
        assert_eq!(
            r0.arguments,
            ["/bin/tessera", "wrap", "--", "/bin/prog", "-x"]
        );
        assert_eq!(r0.environment.get("K").map(String::as_str), Some("v"));
        assert_eq!(s.rank_command(1), s.command);
        s.command = CommandInfo::shell("echo hi");
        assert_eq!(
            s.rank_command(0).arguments,
            ["/bin/tessera", "wrap", "--", "/bin/sh", "-c", "echo hi"]
        );
    }
}

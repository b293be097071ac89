//! The PMI-1 "simple" wire protocol, server side, as a pure state machine.
//!
//! MPICH ranks started directly (no `mpiexec`) find their job through PMI: with `PMI_PORT`
//! (`host:port`) and `PMI_ID` (the rank) in the environment, a rank connects over TCP, sends
//! `cmd=initack pmiid=R`, learns its rank and the job size, then exchanges its address with
//! the other ranks through a key-value space and barriers. One line per message,
//! `key=value` tokens separated by single spaces, values without spaces.
//!
//! [`PmiJob`] holds one job's state: which connection is which rank, the key-value space,
//! the barrier, who finalized. [`PmiJob::handle`] takes one line from one connection and
//! returns the lines to send (to that connection, or to all of them when a barrier
//! completes) and what the job supervisor must know ([`PmiEvent`]: a rank aborted, a rank
//! vanished before finalizing, everyone passed the first barrier). No I/O: the TCP edge is
//! [`crate::pmi_server`].
//!
//! Every line is hostile until checked: an unknown or out-of-range `pmiid`, a rank claimed
//! twice, a command before the handshake, keys and values over the advertised maxima, or a
//! key-value space grown past its cap get an error reply (`rc=-1`) or close the connection
//! — never a panic, never a change to another rank's state.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Longest key a rank may put (advertised in `maxes`).
pub const KEYLEN_MAX: usize = 64;
/// Longest value a rank may put (advertised in `maxes`, Hydra's figure).
pub const VALLEN_MAX: usize = 1024;
/// Longest kvs name (advertised in `maxes`).
pub const KVSNAME_MAX: usize = 256;
/// Longest line accepted from a rank; the edge drops a connection sending more.
pub const LINE_MAX: usize = 4096;
/// Key-value pairs per rank the space may hold (MPICH puts a handful per rank).
const KVS_PER_RANK: usize = 256;

/// One connection, numbered by the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// What the job supervisor needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PmiEvent {
    /// A rank connected (it is inside `MPI_Init`): the job speaks PMI.
    Connected { rank: u32 },
    /// A rank called `PMI_Abort` (MPI_Abort): the job must end with `code`.
    Abort {
        rank: u32,
        code: i32,
        message: String,
    },
    /// A rank's connection closed before it finalized: it died or exited early, and the
    /// other ranks would wait for it at the next barrier forever.
    Vanished { rank: u32 },
    /// Every rank entered the first barrier: all are inside `MPI_Init`.
    AllInitialized,
    /// A rank finalized (`MPI_Finalize`).
    Finalized { rank: u32 },
}

/// What to do after a line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Step {
    /// Lines to send, in order, each without its trailing newline.
    pub replies: Vec<(ConnId, String)>,
    pub events: Vec<PmiEvent>,
    /// Close this connection (after sending its replies): it broke the protocol.
    pub close: bool,
}

impl Step {
    fn reply(conn: ConnId, line: impl Into<String>) -> Step {
        Step {
            replies: vec![(conn, line.into())],
            ..Step::default()
        }
    }

    fn refuse(conn: ConnId, cmd: &str, why: &str) -> Step {
        Step {
            replies: vec![(conn, format!("cmd={cmd} rc=-1 msg={}", no_spaces(why)))],
            events: Vec::new(),
            close: true,
        }
    }
}

/// One MPI job's PMI state. See the module doc.
#[derive(Debug, Clone)]
pub struct PmiJob {
    size: u32,
    kvsname: String,
    mapping: Option<String>,
    kvs: HashMap<String, String>,
    /// Connection → rank, after the handshake.
    ranks: HashMap<ConnId, u32>,
    /// Rank → connection.
    conns: BTreeMap<u32, ConnId>,
    barrier: BTreeSet<ConnId>,
    barriers_done: u32,
    finalized: BTreeSet<u32>,
}

impl PmiJob {
    /// A job of `size` ranks whose key-value space is called `kvsname`.
    pub fn new(size: u32, kvsname: impl Into<String>) -> PmiJob {
        let mut kvsname: String = kvsname.into();
        kvsname.retain(|c| !c.is_whitespace() && c != '=');
        kvsname.truncate(KVSNAME_MAX);
        PmiJob {
            size,
            kvsname,
            mapping: None,
            kvs: HashMap::new(),
            ranks: HashMap::new(),
            conns: BTreeMap::new(),
            barrier: BTreeSet::new(),
            barriers_done: 0,
            finalized: BTreeSet::new(),
        }
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    /// Sets the answer to `PMI_process_mapping` from the ranks per node, in node order
    /// (ranks numbered contiguously per node, as the gang placement does). Without it,
    /// MPICH falls back to exchanging host names.
    pub fn set_node_layout(&mut self, ranks_per_node: &[u32]) {
        self.mapping = Some(process_mapping(ranks_per_node));
    }

    /// Ranks that called `finalize`.
    pub fn finalized(&self) -> &BTreeSet<u32> {
        &self.finalized
    }

    /// Whether `rank` finalized.
    pub fn has_finalized(&self, rank: u32) -> bool {
        self.finalized.contains(&rank)
    }

    /// Handles one line (without its newline) from `conn`.
    pub fn handle(&mut self, conn: ConnId, line: &str) -> Step {
        let kv = parse(line);
        let Some(cmd) = kv.get("cmd").copied() else {
            return Step::refuse(conn, "error", "expected cmd=...");
        };
        if cmd == "initack" {
            return self.initack(conn, &kv);
        }
        let Some(&rank) = self.ranks.get(&conn) else {
            return Step::refuse(conn, cmd, "send cmd=initack pmiid=<rank> first");
        };
        match cmd {
            "init" => Step::reply(
                conn,
                "cmd=response_to_init pmi_version=1 pmi_subversion=1 rc=0",
            ),
            "get_maxes" => Step::reply(
                conn,
                format!(
                    "cmd=maxes kvsname_max={KVSNAME_MAX} keylen_max={KEYLEN_MAX} vallen_max={VALLEN_MAX}"
                ),
            ),
            "get_appnum" => Step::reply(conn, "cmd=appnum appnum=0"),
            "get_universe_size" => {
                Step::reply(conn, format!("cmd=universe_size size={}", self.size))
            }
            "get_my_kvsname" => {
                Step::reply(conn, format!("cmd=my_kvsname kvsname={}", self.kvsname))
            }
            "put" => self.put(conn, &kv),
            "get" => self.get(conn, &kv),
            "barrier_in" => self.barrier_in(conn),
            "finalize" => {
                self.finalized.insert(rank);
                Step {
                    replies: vec![(conn, "cmd=finalize_ack".into())],
                    events: vec![PmiEvent::Finalized { rank }],
                    close: false,
                }
            }
            "abort" => {
                let code = kv
                    .get("exitcode")
                    .and_then(|c| c.parse::<i32>().ok())
                    .unwrap_or(1);
                let message = kv.get("msg").copied().unwrap_or("").replace('_', " ");
                Step {
                    replies: Vec::new(),
                    events: vec![PmiEvent::Abort {
                        rank,
                        code,
                        message,
                    }],
                    close: true,
                }
            }
            other => Step::reply(
                conn,
                format!("cmd={other}_result rc=-1 msg=unsupported_by_tessera"),
            ),
        }
    }

    /// The edge saw `conn` close. A rank that leaves before finalizing dooms the job.
    pub fn disconnected(&mut self, conn: ConnId) -> Step {
        self.barrier.remove(&conn);
        let Some(rank) = self.ranks.remove(&conn) else {
            return Step::default();
        };
        self.conns.remove(&rank);
        if self.finalized.contains(&rank) {
            return Step::default();
        }
        Step {
            events: vec![PmiEvent::Vanished { rank }],
            ..Step::default()
        }
    }

    fn initack(&mut self, conn: ConnId, kv: &HashMap<&str, &str>) -> Step {
        if self.ranks.contains_key(&conn) {
            return Step::refuse(conn, "initack", "handshake already done");
        }
        let Some(rank) = kv.get("pmiid").and_then(|r| r.parse::<u32>().ok()) else {
            return Step::refuse(conn, "initack", "pmiid must be a rank number");
        };
        if rank >= self.size {
            return Step::refuse(
                conn,
                "initack",
                &format!("pmiid {rank} is not below the job size {}", self.size),
            );
        }
        if self.conns.contains_key(&rank) || self.finalized.contains(&rank) {
            return Step::refuse(
                conn,
                "initack",
                &format!("rank {rank} is already connected"),
            );
        }
        self.ranks.insert(conn, rank);
        self.conns.insert(rank, conn);
        let replies = [
            "cmd=initack".to_string(),
            format!("cmd=set size={}", self.size),
            format!("cmd=set rank={rank}"),
            "cmd=set debug=0".to_string(),
        ];
        Step {
            replies: replies.into_iter().map(|l| (conn, l)).collect(),
            events: vec![PmiEvent::Connected { rank }],
            close: false,
        }
    }

    fn put(&mut self, conn: ConnId, kv: &HashMap<&str, &str>) -> Step {
        let (Some(key), value) = (kv.get("key"), kv.get("value").copied().unwrap_or("")) else {
            return Step::reply(conn, "cmd=put_result rc=-1 msg=key_missing");
        };
        if key.len() > KEYLEN_MAX || value.len() > VALLEN_MAX {
            return Step::reply(conn, "cmd=put_result rc=-1 msg=key_or_value_too_long");
        }
        let cap = (self.size as usize).saturating_mul(KVS_PER_RANK);
        if !self.kvs.contains_key(*key) && self.kvs.len() >= cap {
            return Step::reply(conn, "cmd=put_result rc=-1 msg=key_value_space_full");
        }
        self.kvs.insert((*key).to_string(), value.to_string());
        Step::reply(conn, "cmd=put_result rc=0 msg=success")
    }

    fn get(&self, conn: ConnId, kv: &HashMap<&str, &str>) -> Step {
        let key = kv.get("key").copied().unwrap_or("");
        let value = if key == "PMI_process_mapping" {
            self.mapping.as_deref()
        } else {
            self.kvs.get(key).map(String::as_str)
        };
        match value {
            Some(v) => Step::reply(conn, format!("cmd=get_result rc=0 msg=success value={v}")),
            None => Step::reply(
                conn,
                format!(
                    "cmd=get_result rc=-1 msg=key_{}_not_found value=unknown",
                    no_spaces(&key.chars().take(KEYLEN_MAX).collect::<String>())
                ),
            ),
        }
    }

    fn barrier_in(&mut self, conn: ConnId) -> Step {
        self.barrier.insert(conn);
        if self.barrier.len() < self.size as usize {
            return Step::default();
        }
        let replies = std::mem::take(&mut self.barrier)
            .into_iter()
            .map(|c| (c, "cmd=barrier_out".to_string()))
            .collect();
        self.barriers_done += 1;
        let events = if self.barriers_done == 1 {
            vec![PmiEvent::AllInitialized]
        } else {
            Vec::new()
        };
        Step {
            replies,
            events,
            close: false,
        }
    }
}

/// MPICH's `PMI_process_mapping` value for ranks numbered contiguously per node:
/// `(vector,(first_node,node_count,ranks_per_node),…)`, consecutive nodes with the same
/// count merged into one block.
pub fn process_mapping(ranks_per_node: &[u32]) -> String {
    let mut out = String::from("(vector");
    let mut i = 0;
    while i < ranks_per_node.len() {
        let n = ranks_per_node[i];
        let run = ranks_per_node[i..].iter().take_while(|&&m| m == n).count();
        out.push_str(&format!(",({i},{run},{n})"));
        i += run;
    }
    out.push(')');
    out
}

fn parse(line: &str) -> HashMap<&str, &str> {
    line.trim_end_matches(['\r', '\n'])
        .split(' ')
        .filter_map(|tok| tok.split_once('='))
        .collect()
}

fn no_spaces(s: &str) -> String {
    s.replace([' ', '\n', '\r'], "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    const C0: ConnId = ConnId(10);
    const C1: ConnId = ConnId(11);

    fn lines(step: &Step) -> Vec<String> {
        step.replies.iter().map(|(_, l)| l.clone()).collect()
    }

    fn joined(job: &mut PmiJob, conn: ConnId, rank: u32) {
        let s = job.handle(conn, &format!("cmd=initack pmiid={rank}"));
        assert!(!s.close, "{s:?}");
    }

    #[test]
    fn handshake_tells_rank_and_size() {
        let mut job = PmiJob::new(4, "kvs_mpi_7");
        let s = job.handle(C0, "cmd=initack pmiid=2");
        assert_eq!(
            lines(&s),
            [
                "cmd=initack",
                "cmd=set size=4",
                "cmd=set rank=2",
                "cmd=set debug=0"
            ]
        );
        let s = job.handle(C0, "cmd=get_my_kvsname");
        assert_eq!(lines(&s), ["cmd=my_kvsname kvsname=kvs_mpi_7"]);
    }

    #[test]
    fn hostile_handshakes_are_refused_and_close() {
        let mut job = PmiJob::new(2, "k");
        for bad in [
            "cmd=initack pmiid=2",
            "cmd=initack pmiid=-1",
            "cmd=initack",
            "cmd=get_maxes",
            "nonsense",
        ] {
            let s = job.handle(C0, bad);
            assert!(s.close, "{bad} should close: {s:?}");
            assert!(lines(&s)[0].contains("rc=-1"), "{bad}: {s:?}");
        }
        joined(&mut job, C0, 0);
        // The same rank from another connection is refused; rank 0 keeps working.
        assert!(job.handle(C1, "cmd=initack pmiid=0").close);
        assert_eq!(
            lines(&job.handle(C0, "cmd=get_appnum")),
            ["cmd=appnum appnum=0"]
        );
    }

    #[test]
    fn barrier_releases_everyone_once_all_entered() {
        let mut job = PmiJob::new(2, "k");
        joined(&mut job, C0, 0);
        joined(&mut job, C1, 1);
        assert_eq!(job.handle(C0, "cmd=barrier_in"), Step::default());
        let s = job.handle(C1, "cmd=barrier_in");
        let mut to: Vec<ConnId> = s.replies.iter().map(|(c, _)| *c).collect();
        to.sort();
        assert_eq!(to, [C0, C1]);
        assert_eq!(s.events, [PmiEvent::AllInitialized]);
        // The second barrier does not announce initialization again.
        job.handle(C0, "cmd=barrier_in");
        assert!(job.handle(C1, "cmd=barrier_in").events.is_empty());
    }

    #[test]
    fn kvs_put_get_and_limits() {
        let mut job = PmiJob::new(1, "k");
        joined(&mut job, C0, 0);
        let ok = job.handle(C0, "cmd=put kvsname=k key=-bcast-1-0 value=2F646576");
        assert_eq!(lines(&ok), ["cmd=put_result rc=0 msg=success"]);
        let got = job.handle(C0, "cmd=get kvsname=k key=-bcast-1-0");
        assert_eq!(
            lines(&got),
            ["cmd=get_result rc=0 msg=success value=2F646576"]
        );
        let miss = job.handle(C0, "cmd=get kvsname=k key=nope");
        assert!(lines(&miss)[0].starts_with("cmd=get_result rc=-1"));
        let long = format!(
            "cmd=put kvsname=k key=x value={}",
            "A".repeat(VALLEN_MAX + 1)
        );
        assert!(lines(&job.handle(C0, &long))[0].contains("rc=-1"));
        // The refused put changed nothing.
        assert!(lines(&job.handle(C0, "cmd=get kvsname=k key=x"))[0].contains("rc=-1"));
        for i in 0..KVS_PER_RANK {
            job.handle(C0, &format!("cmd=put kvsname=k key=k{i} value=v"));
        }
        let full = job.handle(C0, "cmd=put kvsname=k key=one-too-many value=v");
        assert!(lines(&full)[0].contains("space_full"), "{full:?}");
    }

    #[test]
    fn mapping_is_served_once_set() {
        let mut job = PmiJob::new(5, "k");
        joined(&mut job, C0, 0);
        let q = "cmd=get kvsname=k key=PMI_process_mapping";
        assert!(lines(&job.handle(C0, q))[0].contains("rc=-1"));
        job.set_node_layout(&[2, 2, 1]);
        assert_eq!(
            lines(&job.handle(C0, q)),
            ["cmd=get_result rc=0 msg=success value=(vector,(0,2,2),(2,1,1))"]
        );
        assert_eq!(process_mapping(&[4]), "(vector,(0,1,4))");
    }

    #[test]
    fn abort_and_early_exit_are_reported() {
        let mut job = PmiJob::new(2, "k");
        joined(&mut job, C0, 0);
        joined(&mut job, C1, 1);
        let s = job.handle(C1, "cmd=abort exitcode=7 msg=bad_input");
        assert_eq!(
            s.events,
            [PmiEvent::Abort {
                rank: 1,
                code: 7,
                message: "bad input".into()
            }]
        );
        assert!(s.close);
        // Rank 0 vanishes without finalizing; after finalize a close is normal.
        assert_eq!(
            job.disconnected(C0).events,
            [PmiEvent::Vanished { rank: 0 }]
        );
        let mut job = PmiJob::new(1, "k");
        joined(&mut job, C0, 0);
        assert_eq!(
            job.handle(C0, "cmd=finalize").events,
            [PmiEvent::Finalized { rank: 0 }]
        );
        assert!(job.disconnected(C0).events.is_empty());
        assert!(job.has_finalized(0));
        // A finalized rank cannot come back under another connection.
        assert!(job.handle(C1, "cmd=initack pmiid=0").close);
    }
}

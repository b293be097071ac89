//! An MPI ring: rank 0 sends a token around all ranks, each adding its rank number, then
//! every rank checks an allreduce of the ranks. The smoke test of Tessera's MPI launch
//! modes (`tessera mpi run -n 4 ./target/release/examples/mpi_ring`).
//!
//! Knobs for tests and benchmarks, all optional:
//! * `RING_FAIL_RANK=R` with `RING_FAIL_AT=before-init|after-init|abort`: rank R
//!   exits 3 before `MPI_Init`, exits 3 after it, or calls `MPI_Abort(…, 5)`.
//! * `RING_TIMESTAMPS=1`: rank 0 prints `initialized_unix_ms=<ms>` once every rank is
//!   past `MPI_Init` (measured after a barrier), and when the first and the last rank
//!   process started (`started_unix_ms=<first>..<last>`).
//! * `RING_SLEEP_MS=N`: every rank sleeps N ms before finishing (time-limit tests).
//! * `RING_STDIN=1`: rank 0 reads its stdin to the end and broadcasts it; every rank
//!   prints `stdin: <bytes> bytes, fnv <hash>: <text>` (the text's newlines shown as `|`,
//!   cut at 200 bytes): the test of `tessera mpi run` forwarding stdin to rank 0.

use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mpi::collective::SystemOperation;
use mpi::traits::*;

fn knob(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// FNV-1a, 64 bits.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Rank 0 reads stdin to its end; every rank gets it.
fn broadcast_stdin<C: Communicator>(world: &C) -> Vec<u8> {
    let root = world.process_at_rank(0);
    let mut data = Vec::new();
    if world.rank() == 0
        && let Err(e) = std::io::stdin().read_to_end(&mut data)
    {
        eprintln!("reading stdin: {e}");
    }
    let mut len = data.len() as u64;
    root.broadcast_into(&mut len);
    data.resize(len as usize, 0);
    root.broadcast_into(&mut data[..]);
    data
}

fn main() {
    let started = unix_ms();
    let fail_rank: Option<i32> = knob("RING_FAIL_RANK").and_then(|r| r.parse().ok());
    let fail_at = knob("RING_FAIL_AT").unwrap_or_else(|| "after-init".into());
    let pre_rank: Option<i32> = ["PMI_RANK", "PMI_ID", "OMPI_COMM_WORLD_RANK"]
        .iter()
        .find_map(|k| knob(k).and_then(|r| r.parse().ok()));
    if fail_rank.is_some() && fail_rank == pre_rank && fail_at == "before-init" {
        eprintln!(
            "rank {} exits before MPI_Init, as asked",
            fail_rank.unwrap_or(-1)
        );
        std::process::exit(3);
    }

    let Some(universe) = mpi::initialize() else {
        eprintln!("MPI was already initialized");
        std::process::exit(2);
    };
    let world = universe.world();
    let rank = world.rank();
    let size = world.size();
    world.barrier();
    if knob("RING_TIMESTAMPS").is_some() {
        let ms = unix_ms();
        let (mut first, mut last) = (0u64, 0u64);
        let root = world.process_at_rank(0);
        if rank == 0 {
            root.reduce_into_root(&started, &mut first, SystemOperation::min());
            root.reduce_into_root(&started, &mut last, SystemOperation::max());
            println!("initialized_unix_ms={ms}");
            println!("started_unix_ms={first}..{last}");
        } else {
            root.reduce_into(&started, SystemOperation::min());
            root.reduce_into(&started, SystemOperation::max());
        }
    }
    if knob("RING_STDIN").is_some() {
        let data = broadcast_stdin(&world);
        let text: String = String::from_utf8_lossy(&data[..data.len().min(200)]).replace('\n', "|");
        println!(
            "stdin: {} bytes, fnv {:016x}: {text}",
            data.len(),
            fnv(&data)
        );
    }
    if fail_rank == Some(rank) {
        if fail_at == "abort" {
            eprintln!("rank {rank} calls MPI_Abort, as asked");
            world.abort(5);
        }
        eprintln!("rank {rank} exits after MPI_Init, as asked");
        std::process::exit(3);
    }

    let next = (rank + 1) % size;
    let prev = (rank + size - 1) % size;
    let token = if size == 1 {
        0
    } else if rank == 0 {
        world.process_at_rank(next).send(&0i32);
        world.process_at_rank(prev).receive::<i32>().0
    } else {
        let (t, _) = world.process_at_rank(prev).receive::<i32>();
        world.process_at_rank(next).send(&(t + rank));
        t
    };
    let mut sum = 0i32;
    world.all_reduce_into(&rank, &mut sum, SystemOperation::sum());
    let expected = size * (size - 1) / 2;
    let host = mpi::environment::processor_name().unwrap_or_default();
    if rank == 0 {
        let lib = mpi::environment::library_version().unwrap_or_default();
        println!("library: {}", lib.lines().next().unwrap_or("").trim());
        println!("ring token back at rank 0: {token} (expected {expected})");
    }
    println!(
        "rank {rank}/{size} on {host}: allreduce sum {sum}, ok={}",
        sum == expected
    );
    if let Some(ms) = knob("RING_SLEEP_MS").and_then(|v| v.parse::<u64>().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }
    if sum != expected || (rank == 0 && token != expected) {
        std::process::exit(1);
    }
}

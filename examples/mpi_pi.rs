//! π by integrating 4/(1+x²) over [0, 1] with the midpoint rule, the intervals dealt out
//! round-robin over the ranks and the partial sums reduced to rank 0.
//! `tessera mpi run -n 8 …/mpi_pi [INTERVALS]` (default 10,000,000).

use mpi::collective::SystemOperation;
use mpi::traits::*;

fn main() {
    let intervals: u64 = std::env::args()
        .nth(1)
        .map(|a| match a.parse() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("INTERVALS must be a positive integer, got {a:?}");
                std::process::exit(2);
            }
        })
        .unwrap_or(10_000_000);
    let Some(universe) = mpi::initialize() else {
        eprintln!("MPI was already initialized");
        std::process::exit(2);
    };
    let world = universe.world();
    let (rank, size) = (world.rank() as u64, world.size() as u64);
    let h = 1.0 / intervals as f64;
    let mut part = 0.0f64;
    let mut i = rank;
    while i < intervals {
        let x = h * (i as f64 + 0.5);
        part += 4.0 / (1.0 + x * x);
        i += size;
    }
    part *= h;
    let root = world.process_at_rank(0);
    if rank == 0 {
        let mut pi = 0.0f64;
        root.reduce_into_root(&part, &mut pi, SystemOperation::sum());
        let err = (pi - std::f64::consts::PI).abs();
        println!("pi ≈ {pi:.12} with {intervals} intervals on {size} ranks (error {err:.2e})");
        if err > 1e-6 {
            std::process::exit(1);
        }
    } else {
        root.reduce_into(&part, SystemOperation::sum());
    }
}

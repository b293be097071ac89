//! Allreduce of a vector: every rank contributes `[rank, rank², 1]`, every rank checks the
//! sums against the closed forms. Run with `tessera mpi run -n 8 …/mpi_allreduce`.

use mpi::collective::SystemOperation;
use mpi::traits::*;

fn main() {
    let Some(universe) = mpi::initialize() else {
        eprintln!("MPI was already initialized");
        std::process::exit(2);
    };
    let world = universe.world();
    let (rank, size) = (world.rank() as i64, world.size() as i64);
    let mine = [rank, rank * rank, 1];
    let mut total = [0i64; 3];
    world.all_reduce_into(&mine[..], &mut total[..], SystemOperation::sum());
    let n = size - 1;
    let expected = [n * size / 2, n * size * (2 * n + 1) / 6, size];
    let ok = total == expected;
    println!("rank {rank}/{size}: sums {total:?} expected {expected:?} ok={ok}");
    if !ok {
        std::process::exit(1);
    }
}

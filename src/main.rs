//! `tessera`: the one binary. Subcommands start a whole cluster (`up`), a master, an agent,
//! or talk to a running master. No logic of its own beyond configuration and wiring.

mod batch_cli;
mod bench;
mod bench_api;
mod bench_containers;
mod bench_fanout;
mod bench_remote;
mod bench_sim;
mod cli;
mod client;
mod logging;
mod mpi_cli;
mod mpi_node;
mod mpi_prepare;
mod mpi_stdin;
mod settings;
mod sim_cli;
mod up;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    if cli.is_client() {
        // A client piped into `head` should end quietly when the pipe closes, as Unix
        // tools do, instead of panicking on the failed write. (Servers keep ignoring
        // SIGPIPE: a peer closing a socket must not kill them.)
        // SAFETY: restoring a signal's default disposition has no preconditions.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // Client commands make one or two requests: a single-threaded runtime starts faster
    // (no worker threads), which is most of a short command's cost.
    let mut builder = if cli.is_client() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if let Some(code) = e.downcast_ref::<batch_cli::ExitCode>() {
                return std::process::ExitCode::from(code.0);
            }
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

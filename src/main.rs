//! The `convlog` binary: parse arguments, run, turn the result into an exit code.

use clap::Parser;

/// mimalloc instead of glibc's malloc: the index starts and stops writer
/// threads as it moves between time partitions, and glibc keeps each thread's
/// freed memory in an arena of its own (up to 8 per core), which held ~150 MiB
/// more at 1M messages than with one writer (measured; docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    match convlog::cli::run(convlog::cli::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

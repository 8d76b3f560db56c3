//! The `convlog` binary: parse arguments, run, turn the result into an exit code.

use clap::Parser;

/// mimalloc instead of glibc's malloc: the index starts and stops writer
/// threads as it moves between time partitions, and glibc keeps each thread's
/// freed memory in an arena of its own (up to 8 per core), which held ~150 MiB
/// more at 1M messages than with one writer (measured; docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    no_transparent_huge_pages();
    match convlog::cli::run(convlog::cli::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Turns transparent huge pages off for this process (Linux; kept across
/// `exec`). mimalloc asks for them on its arenas, and every index commit
/// allocates fresh segment writers: each first touch of a purged 2 MiB region
/// made the kernel zero all of it. That was a third of all CPU in the
/// integration tests, and without it ingest takes 17% less server CPU per
/// message, peaks 40 MiB lower and queries as fast (docs/benchmarks.md,
/// "Twelfth session").
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

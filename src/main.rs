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
/// allocates fresh segment writers: each first touch of a 2 MiB region not
/// yet backed by memory made the kernel zero all of it. That was a third of
/// all CPU in the integration tests; without it ingest runs 7–17% faster and
/// the server holds 30–50 MiB less, for text-query p99s up to ~1 ms slower
/// at 1M messages (docs/benchmarks.md, "Transparent huge pages off").
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of
    // ours; the kernel reads each as an unsigned long (and wants the last three 0).
    unsafe {
        let (on, zero): (libc::c_ulong, libc::c_ulong) = (1, 0);
        libc::prctl(libc::PR_SET_THP_DISABLE, on, zero, zero, zero);
    }
}

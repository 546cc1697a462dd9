//! `wdo`: the command line of the wdo host.

mod cli;

/// mimalloc for everything the binary allocates, SQLite's pages and parse trees included
/// (`storage::heap` goes through the global allocator).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    no_transparent_huge_pages();
    cli::main()
}

/// mimalloc asks for transparent huge pages for its memory, so the kernel zeroes 2 MiB at the
/// first touch of each range, and again after mimalloc returns part of it. A host making many
/// objects allocates and frees their memory all the time: with huge pages, zeroing them was a
/// fifth of its CPU and new objects came 30% slower (`make bench`, first touch).
fn no_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes a flag and ignores the other arguments.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

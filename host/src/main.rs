//! `wdo`: the command line of the wdo host.

mod cli;

/// mimalloc for everything the binary allocates, SQLite's pages and parse trees included
/// (`storage::heap` goes through the global allocator).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}

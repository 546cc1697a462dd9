//! `wdo`: the command line of the wdo host.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}

//! The `lockwal` operator command line: inspect, verify, repair, compact and
//! script a store, and torture it with kill -9. See README.md, "Command
//! line".

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}

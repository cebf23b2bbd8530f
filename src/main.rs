//! The `lockwal` operator command line.

fn main() {
    println!("lockwal {}: operator commands arrive with the CLI issue; see README.md", env!("CARGO_PKG_VERSION"));
}

//! The cases of the conformance suite. Each begins with what it guards.
//!
//! They are grouped by topic in the submodules and re-exported here, so that
//! `conformance_suite!` names every case as `conformance::cases::<case>`.

mod conflicts;
mod handles;
mod keyspaces;
mod lifecycle;
mod reads;
mod records;
mod support;
mod transactions;

pub use conflicts::*;
pub use handles::*;
pub use keyspaces::*;
pub use lifecycle::*;
pub use reads::*;
pub use records::*;
pub use transactions::*;

//! The `lockwal` binary, driven as an operator or a script would: every
//! subcommand, the JSON shapes, exit codes, read-only commands leaving the
//! directory byte-identical, a second writer refused, verify and repair on
//! damaged stores, and a short kill -9 torture run.

#![cfg(feature = "cli")]

mod commands;
mod damage;
mod handles;
mod support;
mod torture;
mod usage;

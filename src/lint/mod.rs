//! Offline lints of files that decide how GPUs are used on a guest. They read a file, never a
//! node, so they work anywhere; `pvegpu verify` runs them on the guest's copies.
//!
//! - [`compose`]: GPU routing in Docker Compose files (`pvegpu lint compose FILE [--json]`).

pub mod compose;

pub use compose::{
    Finding, LintError, Rule, Severity, has_errors, lint_compose, lint_compose_str, render,
};

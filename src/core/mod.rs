//! What every phase shares: the check type, how a reboot is waited for and how progress is
//! told. Nothing here
//! knows a phase; the phases and the commands build on it.

pub mod check;
pub mod error;
pub mod plan;
pub mod progress;
pub mod reboot;

//! The host phase: analysis of the facts and the planner.

pub mod analysis;
pub mod checks;
pub mod discover;
pub mod planner;
pub mod rollback;

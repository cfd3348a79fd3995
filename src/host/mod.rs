//! The host phase: analysis of the facts and the planner.

pub mod analysis;
pub mod discover;
pub mod planner;

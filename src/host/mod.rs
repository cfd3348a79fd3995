//! The host phase: analysis of the facts, its playbook (playbooks/host.toml) and the planner.

pub mod analysis;
pub mod checks;
pub mod discover;
pub mod planner;
pub mod playbook;
pub mod rollback;

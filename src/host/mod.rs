//! The host phase: the facts gathered over SSH (`gather`), what they allow (`analysis`,
//! `discover`), the plan (`planner`, walking `playbook`; `plan` is its data), the executor
//! (`exec`), the reboot interlocks and postconditions (`checks`), and `rollback`.

pub mod analysis;
pub mod checks;
pub mod discover;
pub mod exec;
pub mod gather;
pub mod lints;
pub mod plan;
pub mod planner;
pub mod playbook;
pub mod rollback;
pub mod verdict;

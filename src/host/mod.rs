//! The host phase: the facts gathered over SSH (`gather`, which refuses a node that is not
//! Proxmox VE), what they allow (`analysis`: which functions a target means; `verdict`: the
//! one passthrough verdict per device, passable, refused with reason codes, or unknown with
//! the facts it needs, used by `discover`, the planner and the postconditions; `lints`:
//! warnings on the passthrough configuration a node already has), the plan (`planner`,
//! walking `playbook`; `plan` is its data), the executor (`exec`), the reboot interlocks and
//! postconditions (`checks`), and `rollback`.

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

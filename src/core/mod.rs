//! What every phase shares: the phase's shape, the plan's data and state, the playbook
//! loader, the check type, the scripts executors send, one reboot-and-wait, what executors
//! report, progress, and errors with hints. Nothing here knows a phase; the phases and the
//! commands build on it.

pub mod check;
pub mod civil;
pub mod error;
pub mod input;
pub mod localfs;
pub mod outcome;
pub mod phase;
pub mod plan;
pub mod playbook;
pub mod progress;
pub mod redact;
pub mod scripts;
pub mod visible;

/// The version of every `--json` output's shape (`format_version`, a key of each object):
/// a field removed or changed in meaning raises it; a field added does not. `schemas/` has
/// each command's JSON Schema.
pub const JSON_FORMAT_VERSION: u32 = 1;

//! What an executor did, in any phase: each step's outcome and the node's report.

use super::check::Check;
use serde::Serialize;

/// One change as an executor ran it.
#[derive(Debug, Serialize)]
pub struct StepOutcome {
    pub step: String,
    pub what: String,
    pub ok: bool,
    pub seconds: f64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub output: String,
}

/// What apply did on one node: its steps, reboots, round trips and postconditions, in every
/// phase it reached.
#[derive(Debug, Serialize, Default)]
pub struct ApplyReport {
    pub node: String,
    pub steps: Vec<StepOutcome>,
    pub reboots: u32,
    pub ssh_round_trips: u32,
    pub postconditions: Vec<Check>,
    pub seconds: f64,
    pub ok: bool,
}

/// The last `lines` lines of a step's output, for the report and error messages.
pub fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Names this run's backup folder on the node (`/var/lib/pvegpu/backups/<run id>`).
pub fn run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{now}-{}", std::process::id())
}

//! What an executor did, in any phase: each step's outcome and the node's report.

use super::check::Check;
use serde::Serialize;
use std::time::Instant;

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

impl StepOutcome {
    /// How `step` ended, begun at `started`.
    pub fn new(step: &str, what: &str, started: Instant, ok: bool, output: String) -> Self {
        StepOutcome {
            step: step.to_string(),
            what: what.to_string(),
            ok,
            seconds: started.elapsed().as_secs_f64(),
            output,
        }
    }

    /// How a step's script ended: the last lines it printed, or the error.
    pub fn of_script(
        step: &str,
        what: &str,
        started: Instant,
        result: &anyhow::Result<String>,
    ) -> Self {
        let output = match result {
            Ok(o) => tail(o, 5),
            Err(e) => format!("{e:#}"),
        };
        StepOutcome::new(step, what, started, result.is_ok(), output)
    }
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

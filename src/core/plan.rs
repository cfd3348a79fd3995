//! A plan as every phase writes it: the changes (a file to write or remove, a command, a
//! reboot) with their reasons and diffs, the refusals, and where the plan stands, said once
//! for every phase so `plan`, `apply` and `verify` decide on a host, VM or guest plan in the
//! same words. Pure data, rendered as text or JSON.

/// The state of one phase's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanState<'a> {
    /// Known unsafe or impossible: nothing of this phase may run.
    Refused(&'a [Refusal]),
    /// An earlier phase must finish first; what it waits for.
    Waiting(&'a str),
    /// Changes to make.
    Ready,
    /// Converged.
    NothingToDo,
}

/// What every phase's plan tells about itself.
pub trait PhasePlan {
    fn state(&self) -> PlanState<'_>;
    fn render_text(&self) -> String;
}

/// The state of a plan with changes and refusals, when nothing makes it wait.
pub fn state_of<'a>(refusals: &'a [Refusal], empty: bool) -> PlanState<'a> {
    match (refusals.is_empty(), empty) {
        (false, _) => PlanState::Refused(refusals),
        (true, false) => PlanState::Ready,
        (true, true) => PlanState::NothingToDo,
    }
}

impl PlanState<'_> {
    pub fn refused(self) -> bool {
        matches!(self, PlanState::Refused(_))
    }

    pub fn nothing_to_do(self) -> bool {
        self == PlanState::NothingToDo
    }
}

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// Write a whole file (create or replace). `before` is what the facts showed, so the
    /// executor can refuse when the file changed since.
    WriteFile {
        path: String,
        content: String,
        mode: String,
        before: Option<String>,
    },
    RemoveFile {
        path: String,
        before: String,
    },
    Run {
        command: String,
    },
    Reboot,
}

impl Action {
    /// What an executor says it is doing, in a progress line.
    pub fn describe(&self) -> String {
        match self {
            Action::WriteFile {
                path, before: None, ..
            } => format!("create {path}"),
            Action::WriteFile { path, .. } => format!("update {path}"),
            Action::RemoveFile { path, .. } => format!("remove {path}"),
            Action::Run { command } => format!("run `{command}`"),
            Action::Reboot => "reboot".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub step: String,
    pub summary: String,
    pub reason: String,
    pub action: Action,
    /// Unified diff for file changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    pub needs_reboot: bool,
}

/// Why pvegpu will not converge this node, and the way out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub reason: String,
    pub hint: String,
}

/// The shared middle of every plan's text: notes, then the refusals (which end the text) or
/// `No changes.`. True when the text is complete.
pub fn render_verdict(
    out: &mut String,
    notes: &[String],
    refusals: &[Refusal],
    empty: bool,
) -> bool {
    for n in notes {
        out.push_str(&format!("\nnote: {n}\n"));
    }
    if !refusals.is_empty() {
        out.push_str("\nRefused:\n");
        for r in refusals {
            // A reason with a list keeps its lines under the mark.
            let reason = r.reason.replace('\n', "\n    ");
            out.push_str(&format!("  ✗ {reason}\n    hint: {}\n", r.hint));
        }
        return true;
    }
    if empty {
        out.push_str("\nNo changes.\n");
        return true;
    }
    false
}

/// File and command changes with their reasons and diffs, and the count line.
pub fn render_changes(out: &mut String, changes: &[Change]) {
    out.push_str("\nChanges:\n");
    for c in changes {
        let (sign, what) = match &c.action {
            Action::WriteFile {
                path, before: None, ..
            } => ("+", format!("create {path}")),
            Action::WriteFile { path, .. } => ("~", format!("update {path}")),
            Action::RemoveFile { path, .. } => ("-", format!("remove {path}")),
            Action::Run { command } => ("!", format!("run `{command}`")),
            Action::Reboot => ("⟳", "reboot".to_string()),
        };
        let reboot = if c.needs_reboot && c.action != Action::Reboot {
            " (takes effect after reboot)"
        } else {
            ""
        };
        out.push_str(&format!(
            "  {sign} {what}{reboot}\n      {}: {}\n",
            c.summary, c.reason
        ));
        if let Some(diff) = &c.diff {
            for line in diff.lines() {
                out.push_str(&format!("      {line}\n"));
            }
        }
    }
    let files = changes
        .iter()
        .filter(|c| {
            matches!(
                c.action,
                Action::WriteFile { .. } | Action::RemoveFile { .. }
            )
        })
        .count();
    let commands = changes
        .iter()
        .filter(|c| matches!(c.action, Action::Run { .. }))
        .count();
    let reboots = changes
        .iter()
        .filter(|c| c.action == Action::Reboot)
        .count();
    out.push_str(&format!(
        "\nPlan: {files} file(s) to write, {commands} command(s) to run, {reboots} reboot(s).\n"
    ));
}

/// A unified diff between what a file holds now and what pvegpu would write.
pub fn unified_diff(path: &str, before: Option<&str>, after: &str) -> String {
    let old = before.unwrap_or("");
    let diff = similar::TextDiff::from_lines(old, after);
    let from = if before.is_some() {
        format!("a{path}")
    } else {
        "/dev/null".to_string()
    };
    diff.unified_diff()
        .context_radius(3)
        .header(&from, &format!("b{path}"))
        .to_string()
}

//! A plan: what would change on a node and why. Pure data, rendered as text or JSON.

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BoundDevice {
    pub address: String,
    pub id: String,
    pub name: String,
    pub iommu_group: Option<u32>,
    pub driver_now: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostPlan {
    pub node: String,
    pub context: String,
    /// Exactly the devices that will be on vfio-pci once converged.
    pub bind: Vec<BoundDevice>,
    /// `ids` (vfio-pci ids=) or `per-device` (driver_override by address).
    pub binding: String,
    pub changes: Vec<Change>,
    pub refusals: Vec<Refusal>,
    pub notes: Vec<String>,
}

impl crate::core::plan::PhasePlan for HostPlan {
    fn state(&self) -> crate::core::plan::PlanState<'_> {
        crate::core::plan::state_of(&self.refusals, self.changes.is_empty())
    }
    fn render_text(&self) -> String {
        HostPlan::render_text(self)
    }
}

impl HostPlan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn needs_reboot(&self) -> bool {
        self.changes.iter().any(|c| c.action == Action::Reboot)
    }

    pub fn render_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("Node {}: {}\n", self.node, self.context));
        if !self.bind.is_empty() {
            out.push_str(&format!(
                "\nDevices for vfio-pci ({} binding):\n",
                self.binding
            ));
            for d in &self.bind {
                out.push_str(&format!(
                    "  {}  [{}]  group {}  now {}  {}\n",
                    d.address,
                    d.id,
                    d.iommu_group
                        .map(|g| g.to_string())
                        .unwrap_or_else(|| "?".into()),
                    d.driver_now.as_deref().unwrap_or("no driver"),
                    d.name
                ));
            }
        }
        if render_verdict(
            &mut out,
            &self.notes,
            &self.refusals,
            self.changes.is_empty(),
        ) {
            return out;
        }
        render_changes(&mut out, &self.changes);
        out
    }
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
            out.push_str(&format!("  ✗ {}\n    hint: {}\n", r.reason, r.hint));
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

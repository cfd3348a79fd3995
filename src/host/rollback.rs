//! The rollback plan: undo what pvegpu changed on a host, and only that. Pure, like the planner.
//!
//! pvegpu's own files go (they carry its mark); its block leaves /etc/initramfs-tools/modules;
//! the words it appended to /etc/kernel/cmdline (recorded on the node at write time) leave
//! that line; then every initramfs and the boot loader are refreshed.

use super::planner::{GRUB_DROPIN, KERNEL_CMDLINE, strip_block};
use super::playbook::HOST;
use crate::core::plan::{Action, Change, unified_diff};
use crate::core::scripts::CMDLINE_ADDED;
use crate::facts::HostFacts;
use crate::facts::boot::BootLoader;
use crate::host::plan::HostPlan;

const MARK: &str = "Managed by pvegpu";

pub fn plan(node_name: &str, facts: &HostFacts, reboot: bool) -> HostPlan {
    let mut changes = Vec::new();
    let owned = HOST
        .steps
        .iter()
        .filter_map(|s| s.kind.owned_file())
        .map(|f| f.path.clone())
        .chain([GRUB_DROPIN.to_string()]);
    for path in owned {
        if let Some(f) = facts.files.get(&path).filter(|f| f.content.contains(MARK)) {
            let diff = unified_diff(&path, Some(&f.content), "");
            let action = Action::RemoveFile {
                path: path.clone(),
                before: f.content.clone(),
            };
            let reason = format!("{path} was written by pvegpu");
            changes.push(undo("remove pvegpu's file", reason, action, Some(diff)));
        }
    }
    for path in HOST.steps.iter().filter_map(|s| s.kind.managed_block()) {
        let path = path.path.as_str();
        let Some(f) = facts.files.get(path) else {
            continue;
        };
        let (stripped, had) = strip_block(&f.content);
        if had {
            changes.push(write(path, f, stripped, "take pvegpu's block out"));
        }
    }
    let added: Vec<String> = facts
        .files
        .get(CMDLINE_ADDED)
        .map(|f| f.content.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    if let Some(f) = facts.files.get(KERNEL_CMDLINE) {
        let words: Vec<&str> = f.content.split_whitespace().collect();
        if words.iter().any(|w| added.iter().any(|a| a == w)) {
            let kept: Vec<&str> = words
                .into_iter()
                .filter(|w| !added.iter().any(|a| a == w))
                .collect();
            changes.push(write(
                KERNEL_CMDLINE,
                f,
                format!("{}\n", kept.join(" ")),
                "take out the words pvegpu added",
            ));
        }
    }
    if !changes.is_empty() {
        changes.push(undo(
            "rebuild the initramfs of every installed kernel",
            "the images still carry pvegpu's vfio configuration",
            Action::Run {
                command: "update-initramfs -u -k all".into(),
            },
            None,
        ));
        if let Some(cmd) = facts.boot_loader.refresh_command() {
            changes.push(undo(
                "refresh the boot loader",
                "the boot entries must drop pvegpu's kernel parameters",
                Action::Run {
                    command: cmd.into(),
                },
                None,
            ));
        }
        if reboot {
            changes.push(Change {
                step: "reboot".into(),
                summary: "reboot into the previous configuration".into(),
                reason: "requested with --reboot".into(),
                action: Action::Reboot,
                diff: None,
                needs_reboot: false,
            });
        }
    }
    let mut notes = Vec::new();
    if matches!(facts.boot_loader, BootLoader::Unknown { .. }) && !changes.is_empty() {
        notes.push("the boot loader is unknown: refresh it yourself after the rollback".into());
    }
    if !changes.is_empty() && !reboot {
        notes.push(
            "the previous configuration takes effect at the next reboot (or pass --reboot)".into(),
        );
    }
    HostPlan {
        node: node_name.to_string(),
        context: "rollback of pvegpu's host changes".into(),
        bind: Vec::new(),
        binding: "none".into(),
        changes,
        refusals: Vec::new(),
        notes,
    }
}

fn write(path: &str, f: &crate::facts::FileFact, content: String, summary: &str) -> Change {
    let diff = unified_diff(path, Some(&f.content), &content);
    let action = Action::WriteFile {
        path: path.to_string(),
        content,
        mode: f.mode.clone().unwrap_or_else(|| "644".into()),
        before: Some(f.content.clone()),
    };
    let reason = format!("{path} holds pvegpu's additions");
    undo(summary, reason, action, Some(diff))
}

/// One change of the rollback; each takes effect at the next boot.
fn undo(summary: &str, reason: impl Into<String>, action: Action, diff: Option<String>) -> Change {
    Change {
        step: "rollback".into(),
        summary: summary.into(),
        reason: reason.into(),
        action,
        diff,
        needs_reboot: true,
    }
}

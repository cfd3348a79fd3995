//! pvegpu's own files on the node, each rendered from its template, and its marked block in
//! /etc/initramfs-tools/modules. A file no longer needed for the targets goes, if pvegpu
//! wrote it.

use super::{Desired, is_ours, join};
use crate::core::plan::{Action, Change, unified_diff};
use crate::core::playbook::OwnedFile;
use crate::facts::modconf;
use crate::facts::{FileFact, HostFacts};
use crate::host::playbook::{HOST, HostStep, HostStepKind, ManagedBlock};
use crate::templates::{self, TemplateError};
use minijinja::context;
use std::collections::BTreeSet;

const BLOCK_BEGIN: &str = "# BEGIN pvegpu";
const BLOCK_END: &str = "# END pvegpu";
const OWNED_MARK: &str = "Managed by pvegpu";

/// What an owned file should hold, and whether the targets need it at all.
pub(super) struct Wanted {
    needed: bool,
    content: String,
    reason: String,
}

/// The change that makes `path` hold `content`, if it does not already.
pub(super) fn file_change(
    step: &HostStep,
    facts: &HostFacts,
    path: &str,
    content: String,
    reason: String,
) -> Option<Change> {
    let before = facts.files.get(path).map(|f| f.content.clone());
    let mode = facts
        .files
        .get(path)
        .and_then(|f| f.mode.clone())
        .or_else(|| step.kind.owned_file().and_then(|f| f.mode.clone()))
        .unwrap_or_else(|| "644".into());
    step.write_file(path, before, content, mode, reason)
}

fn remove_change(step: &HostStep, facts: &HostFacts, path: &str, reason: &str) -> Option<Change> {
    let f = facts.files.get(path)?;
    if !f.content.contains(OWNED_MARK) {
        return None;
    }
    let diff = unified_diff(path, Some(&f.content), "");
    let action = Action::RemoveFile {
        path: path.to_string(),
        before: f.content.clone(),
    };
    Some(step.change(reason, action, Some(diff)))
}

/// An owned file's change: written when needed, removed (if pvegpu wrote it) when not.
pub(super) fn owned(
    step: &HostStep,
    f: &OwnedFile,
    facts: &HostFacts,
    w: Wanted,
) -> Option<Change> {
    if w.needed {
        file_change(step, facts, &f.path, w.content, w.reason)
    } else {
        remove_change(step, facts, &f.path, "no longer needed for the targets")
    }
}

fn foreign_module_lists(facts: &HostFacts) -> BTreeSet<String> {
    let mut lists: Vec<(&String, &FileFact)> = facts
        .files_under("/etc/modules-load.d/")
        .filter(|(p, _)| !is_ours(p))
        .collect();
    if let Some(f) = facts.files.get_key_value("/etc/modules") {
        lists.push(f);
    }
    lists
        .iter()
        .flat_map(|(p, f)| modconf::parse_module_list(p, &f.content))
        .map(|l| l.item)
        .collect()
}

/// Where the per-device override script lives, which the binding and the hook both name.
fn override_script_path() -> String {
    HOST.steps
        .iter()
        .find_map(|s| match &s.kind {
            HostStepKind::VfioOverrideScript(f) => Some(f.path.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn targets(d: &Desired) -> Vec<String> {
    d.targets.iter().map(|a| a.to_string()).collect()
}

pub(super) fn vfio_modules(
    f: &OwnedFile,
    facts: &HostFacts,
    d: &Desired,
) -> Result<Wanted, TemplateError> {
    let foreign = foreign_module_lists(facts);
    let missing: Vec<&String> = d.modules.iter().filter(|m| !foreign.contains(*m)).collect();
    let reason = if missing.is_empty() {
        "keeps pvegpu's list of vfio modules".to_string()
    } else {
        format!(
            "{} not loaded at boot by any modules-load list",
            join(&missing)
        )
    };
    Ok(Wanted {
        needed: !missing.is_empty() || facts.files.contains_key(&f.path),
        content: templates::render(&f.template, context! { modules => d.modules.clone() })?,
        reason,
    })
}

pub(super) fn vfio_binding(f: &OwnedFile, d: &Desired) -> Result<Wanted, TemplateError> {
    let needed =
        !d.ids.is_empty() || d.per_device || !d.softdeps.is_empty() || d.allow_unsafe_interrupts;
    let ids: Vec<String> = d.ids.iter().map(|i| i.to_string()).collect();
    let devices = targets(d);
    let content = templates::render(
        &f.template,
        context! {
            devices => devices.clone(),
            ids => ids,
            override_script => if d.per_device { override_script_path() } else { String::new() },
            softdeps => d.softdeps.clone(),
            allow_unsafe_interrupts => d.allow_unsafe_interrupts,
        },
    )?;
    let how = if d.per_device {
        "by address, because identical devices stay with the host"
    } else {
        "by vendor:device id"
    };
    Ok(Wanted {
        needed,
        content,
        reason: format!("binds {} {how}", devices.join(" ")),
    })
}

pub(super) fn override_script(f: &OwnedFile, d: &Desired) -> Result<Wanted, TemplateError> {
    Ok(Wanted {
        needed: d.per_device,
        content: templates::render(&f.template, context! { devices => targets(d) })?,
        reason: "marks the targets with driver_override when vfio-pci loads".to_string(),
    })
}

pub(super) fn override_hook(f: &OwnedFile, d: &Desired) -> Result<Wanted, TemplateError> {
    Ok(Wanted {
        needed: d.per_device,
        content: templates::render(
            &f.template,
            context! { override_script => override_script_path() },
        )?,
        reason: "the initramfs needs the override script as well".to_string(),
    })
}

pub(super) fn driver_blacklist(f: &OwnedFile, d: &Desired) -> Result<Wanted, TemplateError> {
    Ok(Wanted {
        needed: !d.blacklist.is_empty(),
        content: templates::render(&f.template, context! { modules => d.blacklist.clone() })?,
        reason: format!(
            "{} would claim the target GPUs; no host device needs them",
            d.blacklist.join(", ")
        ),
    })
}

/// pvegpu's block in the initramfs module list, unless foreign lines already list every module.
pub(super) fn initramfs_modules(
    step: &HostStep,
    b: &ManagedBlock,
    facts: &HostFacts,
    d: &Desired,
) -> Result<Option<Change>, TemplateError> {
    let path = b.path.as_str();
    let block = templates::render(&b.template, context! { modules => d.modules.clone() })?;
    let current = facts
        .files
        .get(path)
        .map(|f| f.content.as_str())
        .unwrap_or("");
    let (outside, had_block) = strip_block(current);
    let foreign: BTreeSet<String> = modconf::parse_module_list(path, &outside)
        .into_iter()
        .map(|l| l.item)
        .collect();
    let missing: Vec<&String> = d.modules.iter().filter(|m| !foreign.contains(*m)).collect();
    if missing.is_empty() && !had_block {
        return Ok(None);
    }
    let new = replace_block(current, &block);
    Ok(file_change(
        step,
        facts,
        path,
        new,
        format!(
            "{} must be in the initramfs before any GPU driver loads",
            join(&d.modules.iter().collect::<Vec<_>>())
        ),
    ))
}

/// The file without pvegpu's block, and whether it had one.
pub(crate) fn strip_block(text: &str) -> (String, bool) {
    let mut out = String::new();
    let mut inside = false;
    let mut had = false;
    for line in text.lines() {
        if line.starts_with(BLOCK_BEGIN) {
            inside = true;
            had = true;
        } else if inside && line.starts_with(BLOCK_END) {
            inside = false;
        } else if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    (out, had)
}

/// Put `block` where pvegpu's block was, or append it; every other line stays as it was.
fn replace_block(text: &str, block: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    let mut placed = false;
    for line in text.lines() {
        if line.starts_with(BLOCK_BEGIN) {
            inside = true;
            out.push_str(block);
            placed = true;
        } else if inside {
            if line.starts_with(BLOCK_END) {
                inside = false;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !placed {
        out.push_str(block);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_block_replaces_only_its_lines() {
        let text = "# user\nloop\n# BEGIN pvegpu (old)\nvfio\n# END pvegpu\ndm_mod\n";
        let new = replace_block(text, "# BEGIN pvegpu x\nvfio\nvfio_pci\n# END pvegpu\n");
        assert_eq!(
            new,
            "# user\nloop\n# BEGIN pvegpu x\nvfio\nvfio_pci\n# END pvegpu\ndm_mod\n"
        );
        assert_eq!(
            strip_block(text),
            ("# user\nloop\ndm_mod\n".to_string(), true)
        );
        assert_eq!(replace_block("loop", "B\n"), "loop\nB\n");
    }
}

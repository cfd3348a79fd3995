//! What a running VM needs for the changes to take effect: a stop and start for the keys
//! hotplug does not cover, including ones already pending.

use super::super::state::VmConfig;
use super::{Draft, KeyChange, VmStep};
use std::collections::BTreeSet;

/// Keys whose change on a running VM waits for a stop and start (default hotplug covers
/// network, disk and usb only).
pub(super) fn disruptive(key: &str) -> bool {
    key.starts_with("hostpci")
        || matches!(
            key,
            "memory"
                | "cores"
                | "sockets"
                | "cpu"
                | "machine"
                | "bios"
                | "efidisk0"
                | "scsihw"
                | "agent"
                | "ostype"
        )
}

/// Adds the config step (after the mapping steps it uses, before any resize), then a stop
/// and start when a running VM gets disruptive changes, or a start when it is stopped.
pub(super) fn schedule(running: bool, cur: &VmConfig, changes: Vec<KeyChange>, out: &mut Draft) {
    let restart_keys: Vec<String> = if running {
        changes
            .iter()
            .filter(|c| c.disruptive)
            .map(|c| c.key.clone())
            .chain(cur.pending.iter().filter(|k| disruptive(k)).cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    } else {
        Vec::new()
    };
    if running
        && changes.iter().any(|c| {
            c.key.starts_with("ci")
                || c.key == "ipconfig0"
                || c.key == "sshkeys"
                || c.key == "nameserver"
        })
    {
        out.note("cloud-init settings change for the next boot of the guest; a running guest keeps its current ones".into());
    }
    if !changes.is_empty() {
        let after_maps = out
            .steps
            .iter()
            .take_while(|s| {
                matches!(
                    s,
                    VmStep::CreateMapping { .. } | VmStep::UpdateMapping { .. }
                )
            })
            .count();
        out.steps.insert(
            after_maps,
            VmStep::SetConfig {
                changes,
                digest: cur.digest.clone(),
            },
        );
    }
    if !restart_keys.is_empty() {
        out.steps.push(VmStep::Restart { keys: restart_keys });
    } else if !running {
        out.steps.push(VmStep::Start);
    }
}

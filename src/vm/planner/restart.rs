//! What a running VM needs for the changes to take effect: a stop and start for the keys
//! hotplug does not cover, including ones already pending.

use super::super::state::VmConfig;
use super::keys::numbered;
use super::{Draft, KeyChange, Vm, VmStep, Walk};
use std::collections::BTreeSet;

/// Keys whose change on a running VM waits for a stop and start (default hotplug covers
/// network, disk and usb only; qemu-server `vmconfig_hotplug_pending`).
pub(super) fn disruptive(key: &str) -> bool {
    // ide and sata drives are never hot-plugged (a new cloud-init drive stays pending).
    key.starts_with("hostpci")
        || numbered(key, "ide")
        || numbered(key, "sata")
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

/// A stop and start when a running VM gets disruptive changes: the ones the config step
/// before it planned, ones already pending, or an EFI certificate enrollment.
pub(super) fn restart(w: &Walk, earlier: &[VmStep], out: &mut Draft) -> Option<VmStep> {
    let Vm::Existing(cur) = w.vm else { return None };
    if !w.running {
        return None;
    }
    if config_changes(earlier).iter().any(|c| {
        c.key.starts_with("ci")
            || c.key == "ipconfig0"
            || c.key == "sshkeys"
            || c.key == "nameserver"
    }) {
        out.note("cloud-init settings change for the next boot of the guest; a running guest keeps its current ones".into());
    }
    let mut keys = restart_keys(cur, earlier);
    // Proxmox enrolls a staged certificate marker when the VM stops (qemu-server
    // `vm_stop_cleanup` applies pending changes).
    if earlier
        .iter()
        .any(|s| matches!(s, VmStep::EnrollEfiCerts { .. }))
        && !keys.iter().any(|k| k == "efidisk0")
    {
        keys.push("efidisk0".into());
    }
    (!keys.is_empty()).then_some(VmStep::Restart { keys })
}

fn config_changes(earlier: &[VmStep]) -> &[KeyChange] {
    earlier
        .iter()
        .find_map(|s| match s {
            VmStep::SetConfig { changes, .. } => Some(changes.as_slice()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The keys a running VM needs a stop and start for: the disruptive ones the config step
/// planned and the ones already pending.
pub(super) fn restart_keys(cur: &VmConfig, earlier: &[VmStep]) -> Vec<String> {
    config_changes(earlier)
        .iter()
        .filter(|c| c.disruptive)
        .map(|c| c.key.clone())
        .chain(cur.pending.iter().filter(|k| disruptive(k)).cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// A VM that is not running is started, a new one or a stopped one.
pub(super) fn start(w: &Walk) -> Option<VmStep> {
    let planned = !matches!(w.vm, Vm::Unplanned);
    (planned && !w.running).then_some(VmStep::Start)
}

//! What stops the VM phase before any step: an unknown node or storage, a card the host phase
//! did not verify or that another VM holds, a vmid taken by another VM, a locked VM. Also
//! which VM the inventory means.

use super::super::state::{ApiFacts, ClusterVm, VmConfig, hostpci_addresses, overlaps};
use super::{Draft, HostDevice, HostReadiness};
use crate::inventory::vm::VmSpec;

/// The node the inventory names, and a storage there that holds VM disks.
pub(super) fn node_and_storage(spec: &VmSpec, facts: &ApiFacts, out: &mut Draft) {
    let pve_node = &facts.node;
    if !facts.nodes.iter().any(|n| n == pve_node) {
        out.refuse(
            format!(
                "the cluster has no node `{pve_node}` (it has: {})",
                facts.nodes.join(", ")
            ),
            "set `node` under the node's [api] table to the name Proxmox shows in its tree",
        );
    }
    match facts.storages.iter().find(|s| s.name == spec.disk.storage) {
        None => out.refuse(
            format!(
                "storage `{}` does not exist on node {pve_node} (it has: {})",
                spec.disk.storage,
                facts
                    .storages
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "set `disk.storage` in the node's [vm] table to one of those",
        ),
        Some(s) if !s.content.iter().any(|c| c == "images") => out.refuse(
            format!(
                "storage `{}` does not hold VM disks (content: {})",
                s.name,
                s.content.join(",")
            ),
            "enable `Disk image` content on it (Datacenter > Storage) or choose another storage",
        ),
        Some(_) => {}
    }
}

/// Which cards go to this VM, each verified by the host phase.
pub(super) fn wanted_cards<'h>(
    spec: &VmSpec,
    host: &'h HostReadiness,
    out: &mut Draft,
) -> Vec<&'h HostDevice> {
    let wanted: Vec<&HostDevice> = match &spec.gpus {
        None => host.devices.iter().collect(),
        Some(list) => {
            let mut cards = Vec::new();
            for a in list {
                let a = a.to_string();
                match host.devices.iter().find(|d| overlaps(&d.slot, &a)) {
                    Some(d) => cards.push(d),
                    None => out.refuse(
                        format!("the VM's gpus list names {a}, which the host phase did not verify for passthrough"),
                        "list it under the node's [[gpus]] too (the host phase then binds and verifies it), or remove it from the VM's gpus",
                    ),
                }
            }
            cards
        }
    };
    if wanted.is_empty() && out.refusals.is_empty() {
        out.refuse(
            "no verified GPU for this VM".into(),
            "list the cards under the node's [[gpus]]",
        );
    }
    wanted
}

/// A converged host whose cards are not on vfio-pci contradicts itself: refuse.
pub(super) fn off_vfio(host: &HostReadiness, wanted: &[&HostDevice], out: &mut Draft) {
    if !host.converged {
        return;
    }
    for d in wanted.iter().filter(|d| !d.on_vfio) {
        out.refuse(
            format!(
                "{} is not on vfio-pci although the host phase reports nothing left to do",
                d.slot
            ),
            "run `pvegpu verify` on the node and `pvegpu apply` for the host first",
        );
    }
}

/// The VM the inventory means: found by id, else by name on this node, else a new one.
pub(super) struct Target<'a> {
    /// The id of the existing VM that is ours (not one whose id we would take).
    pub ours: Option<u32>,
    pub running: bool,
    /// The id it has or will get.
    pub vmid: Option<u32>,
    /// Its config, when it exists and could be read.
    pub current: Option<&'a VmConfig>,
}

pub(super) fn target<'a>(spec: &VmSpec, facts: &'a ApiFacts, out: &mut Draft) -> Target<'a> {
    let vm = find(spec, facts, out);
    let pve_node = &facts.node;
    if spec.adopt && vm.is_none() && out.refusals.is_empty() {
        out.refuse(
            format!(
                "`adopt = true` but no VM {} exists on {pve_node}",
                spec.vmid
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| format!("named `{}`", spec.name))
            ),
            "remove `adopt` to let pvegpu create the VM, or fix vmid/name",
        );
    }
    let vmid = vm.map(|v| v.vmid).or(spec.vmid).or(facts.next_vmid);
    let current = facts
        .vm
        .as_ref()
        .filter(|c| Some(c.vmid) == vm.map(|t| t.vmid));
    if vm.is_some() && current.is_none() {
        out.refuse(
            format!(
                "VM {} exists but its configuration could not be read",
                vmid.unwrap_or(0)
            ),
            "check that the credentials have VM.Audit on /vms",
        );
    }
    if let Some(l) = current.and_then(|c| c.lock.as_ref()) {
        out.refuse(
            format!("VM {} is locked ({l})", vmid.unwrap_or(0)),
            "wait for the backup, migration or creation to finish, or clear a stale lock with `qm unlock`",
        );
    }
    if spec.vmid.is_none() && vm.is_none() {
        out.note(format!(
            "no vmid in the inventory: the VM takes the next free id{} at creation; write it into the [vm] table to pin it",
            vmid.map(|v| format!(" ({v})")).unwrap_or_default()
        ));
    }
    Target {
        ours: vm.map(|v| v.vmid),
        running: vm.is_some_and(|v| v.running),
        vmid,
        current,
    }
}

/// By id (refused when that id is another node's or another VM's), else by a unique name.
fn find<'a>(spec: &VmSpec, facts: &'a ApiFacts, out: &mut Draft) -> Option<&'a ClusterVm> {
    let pve_node = &facts.node;
    let by_id = spec
        .vmid
        .and_then(|id| facts.vms.iter().find(|v| v.vmid == id));
    match (spec.vmid, by_id) {
        (Some(id), Some(v)) => {
            if &v.node != pve_node {
                out.refuse(
                    format!("VM {id} exists on node {}, not on {pve_node}", v.node),
                    "choose a free vmid in the inventory, or migrate the VM to this node first",
                );
                None
            } else if v.name != spec.name && !spec.adopt {
                out.refuse(
                    format!("VM id {id} is taken by another VM, `{}`", v.name),
                    "choose a free vmid in the inventory (or leave it out to take the next free one); set `adopt = true` only if that VM is the one to use",
                );
                None
            } else {
                Some(v)
            }
        }
        (Some(_), None) => None,
        (None, _) => {
            let by_name: Vec<&ClusterVm> = facts
                .vms
                .iter()
                .filter(|v| v.name == spec.name && &v.node == pve_node && !v.template)
                .collect();
            match by_name.as_slice() {
                [] => None,
                [one] => Some(*one),
                many => {
                    out.refuse(
                        format!(
                            "several VMs on {pve_node} are named `{}`: {}",
                            spec.name,
                            many.iter()
                                .map(|v| v.vmid.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        "set `vmid` in the node's [vm] table",
                    );
                    None
                }
            }
        }
    }
}

/// No card another VM holds (the VM at our id counts when it is not ours).
pub(super) fn held_elsewhere(
    wanted: &[&HostDevice],
    facts: &ApiFacts,
    ours: Option<u32>,
    out: &mut Draft,
) {
    let mut others = facts.other_hostpci.clone();
    if let Some(c) = &facts.vm
        && Some(c.vmid) != ours
    {
        let name = c.config.get("name").cloned().unwrap_or_default();
        for (k, v) in c.config.iter().filter(|(k, _)| k.starts_with("hostpci")) {
            others.push((c.vmid, name.clone(), k.clone(), v.clone()));
        }
    }
    for d in wanted {
        for (ovmid, oname, key, value) in &others {
            if Some(*ovmid) == ours {
                continue;
            }
            let addrs = hostpci_addresses(value, &facts.node, &facts.mappings);
            if addrs.iter().any(|a| overlaps(a, &d.slot)) {
                out.refuse(
                    format!("{} ({}) is already given to VM {ovmid} `{oname}` ({key}: {value})", d.slot, d.name),
                    "remove it from that VM first (`qm set ID --delete hostpciN`), or give this VM other cards",
                );
            }
        }
    }
}

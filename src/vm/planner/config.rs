//! The VM's config: a new VM is created with every managed key; an existing one is
//! reconciled key by key (normalised compare, MAC kept, unmanaged keys untouched), never
//! switched between BIOS and UEFI.

use super::super::state::VmConfig;
use super::keys::{NIC_MODELS, managed_keys, normalised, same};
use super::restart::disruptive;
use super::slots::Slots;
use super::{Draft, KeyChange, Vm, VmStep, Walk, disk};
use crate::inventory::vm::{Firmware, VmSpec};

/// A new VM, created with its devices and disks.
pub(super) fn create(w: &Walk, out: &mut Draft) -> Option<VmStep> {
    let Vm::New(vmid) = w.vm else { return None };
    let mut params: Vec<(String, String)> = managed_keys(w.spec, &[], w.ssh_key);
    params.extend(w.slots.placed.iter().map(|(k, v)| (k.clone(), v.clone())));
    params.extend(disk::for_create(w.spec, w.facts, out));
    Some(VmStep::CreateVm { vmid, params })
}

/// An existing VM: the keys that differ and the drives it lacks, in one update.
pub(super) fn reconcile(w: &Walk, out: &mut Draft) -> Option<VmStep> {
    let (spec, slots) = (w.spec, w.slots);
    let Vm::Existing(cur) = w.vm else { return None };
    let mut changes = key_changes(spec, cur, w.ssh_key, slots, out);
    // Bios unset in the inventory but ovmf on the VM: the same refusal the other way.
    if spec.firmware == Firmware::Seabios
        && !spec.adopt
        && cur.config.get("bios").is_some_and(|b| b == "ovmf")
    {
        out.refuse(
            format!("VM {} boots with ovmf, the inventory asks for seabios: its installed system would not boot after the switch", cur.vmid),
            "set `firmware = \"ovmf\"` in the [vm] table to match the VM, or create a new VM",
        );
    }
    for k in &slots.delete {
        changes.push(KeyChange {
            key: k.clone(),
            from: cur.config.get(k).cloned(),
            to: None,
            disruptive: true,
        });
    }
    if !spec.adopt {
        changes.extend(missing_drives(spec, cur));
    }
    (!changes.is_empty()).then(|| VmStep::SetConfig {
        changes,
        digest: cur.digest.clone(),
    })
}

/// Each managed key (hostpci included) whose value is not what the inventory wants.
fn key_changes(
    spec: &VmSpec,
    cur: &VmConfig,
    ssh_key: Option<&str>,
    slots: &Slots,
    out: &mut Draft,
) -> Vec<KeyChange> {
    let mut changes = Vec::new();
    let mut want = managed_keys(spec, &[], ssh_key);
    want.extend(slots.placed.iter().map(|(k, v)| (k.clone(), v.clone())));
    for (k, v) in &want {
        let have = cur.config.get(k);
        // An unset bios or machine is PVE's default.
        let have_or_default = match k.as_str() {
            "bios" => Some(have.map_or("seabios", String::as_str)),
            "machine" => Some(have.map_or("pc", String::as_str)),
            _ => have.map(String::as_str),
        };
        if same(k, v, have_or_default) {
            continue;
        }
        if k == "bios" {
            out.refuse(
                format!("VM {} boots with {}, the inventory asks for {v}: its installed system would not boot after the switch", cur.vmid, have.map(String::as_str).unwrap_or("seabios")),
                "set `firmware` in the [vm] table to match the VM, or create a new VM",
            );
            continue;
        }
        let to = match have {
            Some(h) if k.starts_with("net") => with_mac(k, v, h),
            _ => v.clone(),
        };
        changes.push(KeyChange {
            key: k.clone(),
            from: have.cloned(),
            to: Some(to),
            disruptive: disruptive(k),
        });
    }
    changes
}

/// The wanted `net` value with the MAC address the VM has: the guest's network config may
/// depend on it.
fn with_mac(key: &str, want: &str, have: &str) -> String {
    let mac = normalised(key, have)
        .into_iter()
        .find(|(m, _)| NIC_MODELS.contains(&m.as_str()))
        .map(|(_, mac)| mac);
    match mac {
        Some(mac) => {
            let mut parts: Vec<String> = want.split(',').map(str::to_string).collect();
            parts[0] = format!("{}={mac}", parts[0]);
            parts.join(",")
        }
        None => want.to_string(),
    }
}

/// The EFI disk an OVMF VM needs and the cloud-init drive, when the VM has none.
fn missing_drives(spec: &VmSpec, cur: &VmConfig) -> Vec<KeyChange> {
    let mut changes = Vec::new();
    if spec.firmware == Firmware::Ovmf && !cur.config.contains_key("efidisk0") {
        changes.push(KeyChange {
            key: "efidisk0".into(),
            from: None,
            to: Some(disk::efidisk(spec)),
            disruptive: true,
        });
    }
    if spec.cloud_init.is_some()
        && !cur
            .config
            .values()
            .any(|v| v.contains(":cloudinit") || v.contains("vm-") && v.contains("-cloudinit"))
    {
        let free = ["ide2", "ide0", "ide1", "ide3"]
            .into_iter()
            .find(|k| !cur.config.contains_key(*k))
            .unwrap_or("ide2");
        // An ide or sata drive is never hot-plugged: a running VM keeps it pending until
        // a stop and start (qemu-server `vmconfig_update_disk`).
        changes.push(KeyChange {
            key: free.into(),
            from: None,
            to: Some(disk::cloudinit(spec)),
            disruptive: true,
        });
    }
    changes
}

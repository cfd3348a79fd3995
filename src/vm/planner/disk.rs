//! The VM's disks: the ones a new VM gets, and the growth of an existing scsi0 (never a
//! shrink, never a move).

use super::super::state::{ApiFacts, VmConfig, property_string};
use super::{Draft, Vm, VmStep, Walk};
use crate::inventory::vm::{Firmware, VmSpec};

fn size_gib(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: f64 = num.parse().ok()?;
    Some(match unit {
        "T" => n * 1024.0,
        "G" | "" => n,
        "M" => n / 1024.0,
        "K" => n / 1024.0 / 1024.0,
        _ => return None,
    })
}

/// `scsi0` (imported from the cloud image when one is named), the EFI disk of an OVMF VM,
/// and the cloud-init drive; refused when the cloud image is not on the node.
pub(super) fn for_create(
    spec: &VmSpec,
    facts: &ApiFacts,
    out: &mut Draft,
) -> Vec<(String, String)> {
    let storage = &spec.disk.storage;
    if let Some(img) = &spec.disk.image
        && let Some(vols) = &facts.image_volumes
        && !vols.iter().any(|v| v == img)
    {
        out.refuse(
            format!("the cloud image {img} is not on the node"),
            "download it first, e.g. Datacenter > Storage > (storage) > Import > Download from URL with https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2, and name its volume id in `disk.image`",
        );
    }
    let mut params = vec![(
        "scsi0".to_string(),
        match &spec.disk.image {
            Some(img) => format!("{storage}:0,import-from={img},iothread=1,discard=on"),
            None => format!("{storage}:{},iothread=1,discard=on", spec.disk.size_gb),
        },
    )];
    if spec.firmware == Firmware::Ovmf {
        params.push(("efidisk0".into(), efidisk(spec)));
    }
    if spec.cloud_init.is_some() {
        params.push(("ide2".into(), cloudinit(spec)));
    }
    params
}

pub(super) fn efidisk(spec: &VmSpec) -> String {
    format!(
        "{}:1,efitype=4m,pre-enrolled-keys={}",
        spec.disk.storage,
        u8::from(spec.secure_boot)
    )
}

pub(super) fn cloudinit(spec: &VmSpec) -> String {
    format!("{}:cloudinit", spec.disk.storage)
}

/// Grow scsi0 to the inventory's size.
fn grow(spec: &VmSpec, from: Option<String>) -> VmStep {
    VmStep::ResizeDisk {
        disk: "scsi0".into(),
        from,
        to: format!("{}G", spec.disk.size_gb),
    }
}

/// scsi0 grown to size: a new VM's when it is imported from a cloud image, an existing VM's
/// when pvegpu manages its drives.
pub(super) fn resize(w: &Walk, out: &mut Draft) -> Option<VmStep> {
    match w.vm {
        Vm::New(_) => w.spec.disk.image.is_some().then(|| grow(w.spec, None)),
        Vm::Existing(cur) if !w.spec.adopt => check_scsi0(w.spec, cur, out),
        _ => None,
    }
}

/// An existing scsi0: grown when smaller than the inventory says; a larger one, one on
/// another storage or none at all is only noted.
fn check_scsi0(spec: &VmSpec, cur: &VmConfig, out: &mut Draft) -> Option<VmStep> {
    let storage = &spec.disk.storage;
    let Some(d) = cur.config.get("scsi0") else {
        out.note(format!(
            "VM {} has no scsi0 disk; pvegpu leaves its disks as they are",
            cur.vmid
        ));
        return None;
    };
    let p = property_string(d, Some("file"));
    let on = p
        .get("file")
        .and_then(|f| f.split(':').next())
        .unwrap_or("");
    if on != storage {
        out.note(format!("VM {}'s scsi0 is on storage `{on}`, the inventory says `{storage}`; pvegpu does not move disks", cur.vmid));
    }
    let have = p.get("size").and_then(|s| size_gib(s));
    if have.is_some_and(|h| h + 0.01 < spec.disk.size_gb as f64) {
        return Some(grow(spec, p.get("size").cloned()));
    }
    if have.is_some_and(|h| h > spec.disk.size_gb as f64 + 0.01) {
        out.note(format!(
            "VM {}'s scsi0 is larger ({}) than the inventory's {} GB; disks are never shrunk",
            cur.vmid, p["size"], spec.disk.size_gb
        ));
    }
    None
}

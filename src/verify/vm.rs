//! VM layer, from plain data the caller fetched from the Proxmox VE API:
//! `GET /nodes/{node}/qemu/{vmid}/config?current=1` (the running config, not pending edits)
//! flattened to strings, and `GET /nodes/{node}/qemu/{vmid}/status/current`'s `status`.

use crate::core::check::{Check, Layer};
use crate::pci::PciAddress;
use serde::Serialize;
use std::collections::BTreeMap;

/// A device the inventory passes to the VM: by host address (`hostpciN: 0000:02:00,...` or
/// `host=02:00`) or by a cluster resource mapping (`mapping=gpu0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExpectedDevice {
    Host(PciAddress),
    Mapping(String),
}

impl std::fmt::Display for ExpectedDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedDevice::Host(a) => write!(f, "host {a}"),
            ExpectedDevice::Mapping(m) => write!(f, "mapping {m}"),
        }
    }
}

/// What one `hostpciN` value passes, with its other options as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPci {
    pub key: String,
    pub hosts: Vec<PciAddress>,
    pub mapping: Option<String>,
    pub options: BTreeMap<String, String>,
}

fn is_hostpci(key: &str) -> bool {
    crate::vm::planner::numbered(key, "hostpci")
}

/// A `hostpciN` value read by the VM planner's property-string parser: the first word may be
/// the host without `host=` (Proxmox's default key); several functions are joined with `;`.
pub fn parse_hostpci(key: &str, value: &str) -> HostPci {
    let mut options = crate::vm::state::property_string(value, Some("host"));
    let hosts = options
        .remove("host")
        .map(|h| {
            h.split(';')
                .filter_map(|a| a.trim().parse::<PciAddress>().ok())
                .collect()
        })
        .unwrap_or_default();
    let mapping = options.remove("mapping");
    HostPci {
        key: key.to_string(),
        hosts,
        mapping,
        options,
    }
}

/// Values compare as Proxmox means them: a hostpci entry by what it passes and its options
/// (so `0000:02:00,pcie=1` equals `host=02:00,pcie=1`), anything else as trimmed text.
fn same_value(key: &str, want: &str, have: &str) -> bool {
    if is_hostpci(key) {
        let (w, h) = (parse_hostpci(key, want), parse_hostpci(key, have));
        w.hosts == h.hosts && w.mapping == h.mapping && w.options == h.options
    } else {
        // the VM planner's notion of "as desired", so verify and plan never disagree
        crate::vm::planner::same(key, want, Some(have))
    }
}

/// VM-layer checks: the config keys pvegpu set still hold, every expected device is passed,
/// no lock, and the VM runs.
pub fn checks(
    vmid: u32,
    desired: &BTreeMap<String, String>,
    current: &BTreeMap<String, String>,
    status: &str,
    expected: &[ExpectedDevice],
) -> Vec<Check> {
    let mut out = Vec::new();
    let diffs: Vec<String> = desired
        .iter()
        .filter_map(|(k, want)| match current.get(k) {
            Some(have) if same_value(k, want, have) => None,
            Some(have) => Some(format!("{k}: want `{want}`, is `{have}`")),
            None => Some(format!("{k}: want `{want}`, not set")),
        })
        .collect();
    out.push(if diffs.is_empty() {
        Check::pass(
            Layer::Vm,
            "config matches the inventory",
            format!("{} keys as desired", desired.len()),
        )
    } else {
        Check::fail(
            Layer::Vm,
            "config matches the inventory",
            diffs.join("; "),
            "the VM's configuration was changed outside pvegpu (web UI, `qm set`, a restored backup)",
            format!("run pvegpu's VM phase again for VM {vmid}, or `qm config {vmid}` to see the whole config"),
        )
    });

    let entries: Vec<HostPci> = current
        .iter()
        .filter(|(k, _)| is_hostpci(k))
        .map(|(k, v)| parse_hostpci(k, v))
        .collect();
    let passes = |e: &HostPci, d: &ExpectedDevice| match d {
        ExpectedDevice::Host(a) => e.hosts.iter().any(|h| h.covers(a)),
        ExpectedDevice::Mapping(m) => e.mapping.as_deref() == Some(m),
    };
    let missing: Vec<String> = expected
        .iter()
        .filter(|d| !entries.iter().any(|e| passes(e, d)))
        .map(|d| d.to_string())
        .collect();
    let listed = entries
        .iter()
        .map(|e| {
            let what = match (&e.mapping, e.hosts.as_slice()) {
                (Some(m), _) => format!("mapping {m}"),
                (None, []) => "nothing".to_string(),
                (None, hs) => hs
                    .iter()
                    .map(|h| h.to_string())
                    .collect::<Vec<_>>()
                    .join(";"),
            };
            format!("{} = {what}", e.key)
        })
        .collect::<Vec<_>>()
        .join(", ");
    let listed = if listed.is_empty() {
        "no hostpci entries".to_string()
    } else {
        listed
    };
    out.push(if missing.is_empty() {
        Check::pass(Layer::Vm, "GPUs passed through", listed)
    } else {
        Check::fail(
            Layer::Vm,
            "GPUs passed through",
            format!("{listed}; missing {}", missing.join(", ")),
            "the VM config has no hostpci entry for these devices, so the guest cannot see them",
            format!("run pvegpu's VM phase for VM {vmid} (it adds the hostpci entries), then restart the VM"),
        )
    });
    let extra: Vec<String> = entries
        .iter()
        .filter(|e| !expected.iter().any(|d| passes(e, d)))
        .map(|e| e.key.clone())
        .collect();
    if !extra.is_empty() {
        out.push(Check::warn(
            Layer::Vm,
            "no unlisted devices",
            format!("{} pass devices the inventory does not list", extra.join(", ")),
            "a device passed to this VM that the inventory does not know is not verified on the host",
            "add it to the inventory's gpus, or remove the entry with `qm set VMID --delete hostpciN`",
        ));
    }

    if let Some(lock) = current.get("lock") {
        out.push(Check::fail(
            Layer::Vm,
            "not locked",
            format!("lock: {lock}"),
            "a backup, migration or snapshot holds the VM, or one was interrupted",
            format!("wait for the task to end; if none runs, `qm unlock {vmid}`"),
        ));
    }

    out.extend(efi_certificates(vmid, current));

    out.push(match status {
        "running" => Check::pass(Layer::Vm, "running", "status: running"),
        other => Check::fail(
            Layer::Vm,
            "running",
            format!("status: {other}"),
            "the VM is not running, so nothing inside it can be checked",
            format!(
                "`qm start {vmid}`; if it fails, the task log names the device (often a vfio group still in use)"
            ),
        ),
    });
    out
}

/// An OVMF VM's EFI disk and Microsoft's 2023 UEFI certificates, read by the VM planner's
/// parser (`vm::efi`): pass when enrolled or when the disk has no Microsoft keys at all,
/// warn while pre-enrolled keys lack them. `current` is the running config, so a marker
/// staged on a running VM shows only once the VM has stopped.
fn efi_certificates(vmid: u32, current: &BTreeMap<String, String>) -> Option<Check> {
    use crate::vm::efi::{CertState, cert_state, marker_text};
    const NAME: &str = "EFI certificates";
    Some(match cert_state(current) {
        CertState::NotOvmf => return None,
        CertState::NoEfiDisk => Check::pass(
            Layer::Vm,
            NAME,
            "no efidisk0: temporary EFI vars without Secure Boot keys, nothing to enroll",
        ),
        CertState::NoKeys { why } => {
            Check::pass(Layer::Vm, NAME, format!("{why}; nothing to enroll"))
        }
        CertState::Enrolled => Check::pass(
            Layer::Vm,
            NAME,
            "efidisk0 ms-cert=2023k: Microsoft UEFI CA 2023, Windows UEFI CA 2023 and Microsoft Corporation KEK 2K CA 2023 enrolled",
        ),
        CertState::Missing { marker } => Check::warn(
            Layer::Vm,
            NAME,
            format!(
                "efidisk0 has pre-enrolled keys with {}",
                marker_text(marker.as_deref())
            ),
            "the Microsoft 2011 certificates expired in June 2026: a boot loader or Secure Boot update signed with the 2023 CA fails on this EFI disk",
            format!(
                "shut VM {vmid} down and run `pvegpu apply` (or `qm enroll-efi-keys {vmid}` on the node); on Windows suspend BitLocker first (`manage-bde -protectors -disable C:`)"
            ),
        ),
        CertState::UnknownMarker(m) => Check::warn(
            Layer::Vm,
            NAME,
            format!("efidisk0 ms-cert={m}"),
            "a marker Proxmox VE 9.2 does not define: which Microsoft certificates the EFI disk holds is unknown",
            format!(
                "`qm config {vmid}` and the VM's start task log say more; Proxmox's own markers are 2011, 2023, 2023w and 2023k"
            ),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_and_the_planner_read_a_bare_option_word_alike() {
        // one parser (vm::state::property_string) for both: a value that differs only by a
        // bare word differs for both, where the planner used to drop the word and call it same
        let (want, have) = ("0000:02:00,pcie=1", "0000:02:00,pcie=1,x-vga");
        assert!(!same_value("hostpci0", want, have));
        assert!(!crate::vm::planner::same("hostpci0", want, Some(have)));
        assert!(same_value("hostpci0", want, "host=02:00,pcie=1"));
        assert!(crate::vm::planner::same(
            "hostpci0",
            want,
            Some("host=0000:02:00,pcie=1")
        ));
    }

    #[test]
    fn hostpci_forms() {
        let a = parse_hostpci("hostpci0", "0000:02:00,pcie=1,x-vga=1");
        let b = parse_hostpci("hostpci0", "host=02:00,x-vga=1,pcie=1");
        assert_eq!(a.hosts, b.hosts);
        assert_eq!(a.options, b.options);
        let m = parse_hostpci("hostpci1", "mapping=gtx1080,pcie=1");
        assert_eq!(m.mapping.as_deref(), Some("gtx1080"));
        assert!(m.hosts.is_empty());
        let multi = parse_hostpci("hostpci2", "host=0000:02:00.0;0000:02:00.1");
        assert_eq!(multi.hosts.len(), 2);
        assert!(!is_hostpci("hostpci"));
        assert!(!is_hostpci("hostpcix"));
    }
}

//! Microsoft's 2023 UEFI certificates in an OVMF VM's EFI disk (the 2011 ones expired in
//! June 2026). The enrollment goes through the config API, as the Proxmox UI's "Enroll
//! Updated Certificates" does (see [`crate::vm::efi`] for the sources), and only while the
//! VM is stopped:
//!
//! - a stopped VM, or one the plan creates with pre-enrolled keys: enrolled before the start;
//! - a running VM the plan restarts anyway: the marker is written with the other changes and
//!   Proxmox enrolls it when the restart stops the VM (pending changes are applied then,
//!   qemu-server `vm_stop_cleanup`);
//! - a running VM with nothing else to restart for: not stopped for this alone (an admin
//!   would not expect a certificate marker to cost the guest's uptime); a note says how to
//!   do it, and `verify` warns until it is done;
//! - a Windows VM: never, since BitLocker asks for its recovery key after the enrollment
//!   unless its protectors were suspended first, which pvegpu cannot see;
//! - an adopted VM: never, since pvegpu then manages only its hostpci entries.

use super::super::efi::{CertState, cert_state, is_windows, marker_text};
use super::restart::restart_keys;
use super::{Draft, Vm, VmStep, Walk};
use crate::inventory::vm::Firmware;

pub(super) fn enroll(w: &Walk, earlier: &[VmStep], out: &mut Draft) -> Option<VmStep> {
    let cur = match w.vm {
        Vm::Unplanned => return None,
        // The create makes the disk; Proxmox marks it 2023k itself when its EFI template
        // already holds the 2023 certificates (pve-edk2-firmware 4.2025.05-1 or later,
        // OVMF.pm `create_efidisk`), so the executor enrolls only when the marker is missing.
        Vm::New(_) => {
            return (w.spec.firmware == Firmware::Ovmf && w.spec.secure_boot).then_some(
                VmStep::EnrollEfiCerts {
                    from: None,
                    marker: None,
                    staged: false,
                },
            );
        }
        Vm::Existing(cur) => cur,
    };
    let vmid = cur.vmid;
    let marker = match cert_state(&cur.config) {
        CertState::Missing { marker } => marker,
        CertState::UnknownMarker(m) => {
            out.note(format!(
                "VM {vmid}'s efidisk0 says ms-cert={m}, a marker Proxmox VE 9.2 does not define; pvegpu does not know which Microsoft certificates it holds and leaves it alone"
            ));
            return None;
        }
        _ => return None,
    };
    let lacks = format!(
        "VM {vmid}'s EFI disk has pre-enrolled Secure Boot keys without the 2023 Microsoft UEFI CA ({})",
        marker_text(marker.as_deref())
    );
    if w.spec.adopt {
        out.note(format!(
            "{lacks}; the VM is adopted, so pvegpu leaves its EFI disk alone: shut it down and run `qm enroll-efi-keys {vmid}` on the node, or use Disk Action > Enroll Updated Certificates in the web UI"
        ));
        return None;
    }
    if is_windows(&cur.config) {
        out.note(format!(
            "{lacks}; it is a Windows VM, so pvegpu does not enroll them: suspend BitLocker first (`manage-bde -protectors -disable C:` for each drive), else it asks for the recovery key at the next boot; then shut it down and run `qm enroll-efi-keys {vmid}` on the node"
        ));
        return None;
    }
    if w.running && restart_keys(cur, earlier).is_empty() {
        out.note(format!(
            "{lacks}; Proxmox enrolls them only while the VM is stopped, and nothing else here needs a restart: shut it down (`qm shutdown {vmid}`) and run `pvegpu apply` again, which enrolls them before starting it"
        ));
        return None;
    }
    Some(VmStep::EnrollEfiCerts {
        from: cur.config.get("efidisk0").cloned(),
        marker,
        staged: w.running,
    })
}

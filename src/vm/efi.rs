//! The EFI disk (`efidisk0`) and whether its Secure Boot keys include Microsoft's 2023
//! certificates: one parser for the VM plan and for `verify`, so the two never disagree.
//!
//! What Proxmox VE 9 does, from its own sources:
//!
//! - The marker is informational. qemu-server 9.2.6 (github:proxmox/qemu-server@e6352be6)
//!   `src/PVE/QemuServer/Drive.pm` (`ms-cert`):
//!   "Informational marker indicating the version of the latest Microsoft UEFI certificates
//!   that have been enrolled by Proxmox VE. The value '2023k' means that the 'Microsoft UEFI
//!   CA 2023', the 'Windows UEFI CA 2023' and the 'Microsoft Corporation KEK 2K CA 2023'
//!   certificates are included. The values '2023' and '2023w' are deprecated and for
//!   compatibility only." Its enum is `2011 2023 2023w 2023k`, default `2011`.
//! - Keys exist only with `efitype=4m`: "Use am EFI vars template with distribution-specific
//!   and Microsoft Standard keys enrolled, if used with 'efitype=4m'" (`pre-enrolled-keys`),
//!   and `efitype`: "Ignored for VMs with arch=aarch64 (ARM)." (same file). `get_ovmf_files`
//!   in `src/PVE/QemuServer/OVMF.pm` picks the `-ms` template only for `4m`.
//! - What needs enrolling: `should_enroll_ms_2023_cert` (OVMF.pm L303-310): pre-enrolled
//!   keys, and a marker other than 2023k.
//! - How: pve-docs `qm.adoc` (Secure Boot Certificate Expiration, github:proxmox/pve-docs
//!   @e5010dce): "Select the EFI disk in the 'Hardware' view in the UI and use 'Disk Action >
//!   Enroll Updated Certificates'. Alternatively, enroll the certificates via the
//!   `/nodes/{node}/qemu/{vmid}/config` API endpoint. The enrollment takes effect when the VM
//!   is next started. The `qm enroll-efi-keys <vmid>` CLI command achieves the same, but
//!   requires the VM to be shut down." The UI action (github:proxmox/pve-manager@14a22df3
//!   `www/manager6/qemu/HardwareView.js` `runEfiEnroll`) POSTs efidisk0 with `ms-cert=2023k`
//!   added; qemu-server applies it at once on a stopped VM (`$update_vm_api` calls
//!   `vmconfig_apply_pending`) and keeps it pending on a running one (efidisk0 is never
//!   hot-plugged: `vmconfig_hotplug_pending` "die skip"), and `OVMF::drive_change` enrolls
//!   when the pending change is applied, with QEMU not running.

use super::state::property_string;
use std::collections::BTreeMap;

/// The marker value that means every 2023 certificate is enrolled.
pub const ENROLLED: &str = "2023k";

/// `efidisk0` as its property string says, `file` first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EfiDisk {
    pub file: String,
    /// `efitype`, `None` when unset (Proxmox's default, `2m`).
    pub efitype: Option<String>,
    pub pre_enrolled_keys: bool,
    /// `ms-cert`, `None` when unset (Proxmox's default, `2011`).
    pub ms_cert: Option<String>,
}

impl EfiDisk {
    pub fn parse(value: &str) -> EfiDisk {
        let mut p = property_string(value, Some("file"));
        let truthy = |v: Option<String>| {
            v.is_some_and(|v| matches!(v.as_str(), "1" | "on" | "yes" | "true"))
        };
        EfiDisk {
            file: p.remove("file").unwrap_or_default(),
            efitype: p.remove("efitype"),
            pre_enrolled_keys: truthy(p.remove("pre-enrolled-keys")),
            ms_cert: p.remove("ms-cert"),
        }
    }
}

/// What the EFI disk of a VM holds, for Secure Boot's Microsoft certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertState {
    /// Not an OVMF VM.
    NotOvmf,
    /// OVMF without `efidisk0`: temporary EFI vars from the template without keys.
    NoEfiDisk,
    /// An EFI disk without Microsoft keys (`pre-enrolled-keys=0`, or a `2m` disk, whose
    /// template has none): nothing to enroll.
    NoKeys { why: String },
    /// Every 2023 certificate is enrolled (`ms-cert=2023k`).
    Enrolled,
    /// Pre-enrolled keys without all 2023 certificates: `marker` is what the disk says
    /// (`None`: unset, which is 2011).
    Missing { marker: Option<String> },
    /// A marker Proxmox VE 9.2 does not define: what it means is unknown.
    UnknownMarker(String),
}

/// The markers Proxmox defines below `2023k` (Drive.pm's enum).
const OLDER: [&str; 3] = ["2011", "2023", "2023w"];

/// The state of a VM config (`bios`, `efidisk0`, `arch`).
pub fn cert_state(config: &BTreeMap<String, String>) -> CertState {
    if config.get("bios").map(String::as_str) != Some("ovmf") {
        return CertState::NotOvmf;
    }
    let Some(value) = config.get("efidisk0") else {
        return CertState::NoEfiDisk;
    };
    let disk = EfiDisk::parse(value);
    let aarch64 = config.get("arch").is_some_and(|a| a == "aarch64");
    let four_m = disk.efitype.as_deref() == Some("4m");
    if !disk.pre_enrolled_keys {
        return CertState::NoKeys {
            why: "pre-enrolled-keys=0: the EFI disk holds no Microsoft keys".into(),
        };
    }
    if !four_m && !aarch64 {
        return CertState::NoKeys {
            why: format!(
                "efitype={}: Proxmox's template for it has no keys and no Secure Boot (only `4m` has them)",
                disk.efitype.as_deref().unwrap_or("2m")
            ),
        };
    }
    match disk.ms_cert.as_deref() {
        Some(ENROLLED) => CertState::Enrolled,
        None => CertState::Missing { marker: None },
        Some(m) if OLDER.contains(&m) => CertState::Missing {
            marker: Some(m.to_string()),
        },
        Some(other) => CertState::UnknownMarker(other.to_string()),
    }
}

/// `value` with `ms-cert=2023k`, the rest as it was: what the UI's "Enroll Updated
/// Certificates" sends (qemu-server enrolls when the marker changes to a 2023 value on the
/// same volume, `OVMF::drive_change`).
pub fn with_enrolled_marker(value: &str) -> String {
    value
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.starts_with("ms-cert="))
        .chain(std::iter::once("ms-cert=2023k"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Windows guests: enrolling changes the measured boot, and BitLocker then asks for its
/// recovery key unless its protectors were suspended first (qemu-server `check_efi_vars`:
/// "For Windows with BitLocker, run the following command inside Powershell: manage-bde
/// -protectors -disable DRIVE"). `ostype` values from qemu-server `windows_version`.
pub fn is_windows(config: &BTreeMap<String, String>) -> bool {
    config.get("ostype").is_some_and(|o| {
        matches!(
            o.as_str(),
            "wxp" | "w2k" | "w2k3" | "w2k8" | "wvista" | "win7" | "win8" | "win10" | "win11"
        )
    })
}

/// The marker as the user reads it: unset means Proxmox's default, 2011.
pub fn marker_text(marker: Option<&str>) -> String {
    match marker {
        Some(m) => format!("ms-cert={m}"),
        None => "no ms-cert marker: 2011 certificates only".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_what_qemu_server_writes() {
        // src/test/parse-config-input/snapshots.conf in qemu-server
        let d = EfiDisk::parse("rbd:vm-111-disk-0,efitype=4m,pre-enrolled-keys=1,size=1M");
        assert_eq!(d.file, "rbd:vm-111-disk-0");
        assert_eq!(d.efitype.as_deref(), Some("4m"));
        assert!(d.pre_enrolled_keys);
        assert_eq!(d.ms_cert, None);
        let d = EfiDisk::parse("file=local:100/vm-100-disk-0.raw,ms-cert=2023k");
        assert_eq!(d.file, "local:100/vm-100-disk-0.raw");
        assert!(!d.pre_enrolled_keys);
        assert_eq!(d.ms_cert.as_deref(), Some("2023k"));
    }

    #[test]
    fn states_follow_should_enroll_ms_2023_cert() {
        let ovmf = |efi: &str| conf(&[("bios", "ovmf"), ("efidisk0", efi)]);
        let keys = "local-lvm:vm-201-disk-1,efitype=4m,pre-enrolled-keys=1,size=4M";
        assert_eq!(cert_state(&ovmf(keys)), CertState::Missing { marker: None });
        for m in ["2011", "2023", "2023w"] {
            assert_eq!(
                cert_state(&ovmf(&format!("{keys},ms-cert={m}"))),
                CertState::Missing {
                    marker: Some(m.into())
                }
            );
        }
        assert_eq!(
            cert_state(&ovmf(&format!("{keys},ms-cert=2023k"))),
            CertState::Enrolled
        );
        assert_eq!(
            cert_state(&ovmf(&format!("{keys},ms-cert=2027"))),
            CertState::UnknownMarker("2027".into())
        );
        assert!(matches!(
            cert_state(&ovmf(
                "local-lvm:vm-201-disk-1,efitype=4m,pre-enrolled-keys=0"
            )),
            CertState::NoKeys { .. }
        ));
        // 2m is the default efitype, and its template has no keys whatever the flag says
        assert!(matches!(
            cert_state(&ovmf("local-lvm:vm-201-disk-1,pre-enrolled-keys=1")),
            CertState::NoKeys { .. }
        ));
        let mut arm = ovmf("local-lvm:vm-201-disk-1,pre-enrolled-keys=1");
        arm.insert("arch".into(), "aarch64".into());
        assert_eq!(cert_state(&arm), CertState::Missing { marker: None });
        assert_eq!(cert_state(&conf(&[("bios", "ovmf")])), CertState::NoEfiDisk);
        assert_eq!(cert_state(&conf(&[("efidisk0", keys)])), CertState::NotOvmf);
    }

    #[test]
    fn the_marker_is_added_or_replaced_and_nothing_else_changes() {
        assert_eq!(
            with_enrolled_marker("local-lvm:vm-201-disk-1,efitype=4m,pre-enrolled-keys=1,size=4M"),
            "local-lvm:vm-201-disk-1,efitype=4m,pre-enrolled-keys=1,size=4M,ms-cert=2023k"
        );
        assert_eq!(
            with_enrolled_marker(
                "local-lvm:vm-201-disk-1,efitype=4m,ms-cert=2011,pre-enrolled-keys=1"
            ),
            "local-lvm:vm-201-disk-1,efitype=4m,pre-enrolled-keys=1,ms-cert=2023k"
        );
    }
}

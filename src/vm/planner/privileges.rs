//! The privileges the planned steps need, checked against what the credentials hold
//! (`GET /access/permissions`, which Proxmox computes for tokens with and without privilege
//! separation alike), so a missing one is named before anything changes instead of
//! failing an apply half-way.
//!
//! What each call checks is qemu-server 9.2.6 `src/PVE/API2/Qemu.pm`:
//! `$check_vm_modify_config_perm` (the option groups, L789-862), `$check_storage_access`
//! (Datastore.AllocateSpace for a new disk; `check_volume_access` for an `import-from`
//! source), `check_vm_create_hostpci_perm` (Mapping.Use, VM.Config.HWType),
//! `check_bridge_access` (SDN.Use on the bridge in zone `localnetwork`), `$check_drive_perms`
//! on an update; pve-manager `API2/Cluster/Mapping/PCI.pm` for mappings.

use super::super::state::{Permissions, property_string};
use super::keys::numbered;
use super::{Draft, VmStep};
use crate::inventory::vm::VmSpec;
use std::collections::BTreeMap;

/// One privilege (or any of several) on a path, and what needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Need {
    path: String,
    any_of: &'static [&'static str],
    why: String,
}

/// The privilege a config key pvegpu writes needs; `None` for drives and hostpci, whose
/// checks depend on the value.
fn key_privileges(key: &str) -> Option<&'static [&'static str]> {
    Some(match key {
        "name" | "onboot" | "agent" | "ostype" | "bios" | "description" => &["VM.Config.Options"],
        "memory" | "balloon" => &["VM.Config.Memory"],
        "cores" | "sockets" | "cpu" => &["VM.Config.CPU"],
        "scsihw" | "machine" | "vga" => &["VM.Config.HWType"],
        "boot" => &["VM.Config.Disk"],
        "ciuser" | "sshkeys" | "nameserver" | "searchdomain" | "cipassword" => {
            &["VM.Config.Cloudinit", "VM.Config.Network"]
        }
        _ if numbered(key, "ipconfig") => &["VM.Config.Cloudinit", "VM.Config.Network"],
        _ if numbered(key, "net") => &["VM.Config.Network"],
        _ => return None,
    })
}

fn is_drive(key: &str) -> bool {
    ["ide", "scsi", "virtio", "sata", "efidisk", "tpmstate"]
        .iter()
        .any(|d| numbered(key, d))
}

/// What writing `key = value` (or deleting it, `value` `None`) needs; `create` says whether
/// it is part of the create call, where drives need only their storage.
fn for_key(vm: &str, key: &str, value: Option<&str>, create: bool, out: &mut Vec<Need>) {
    let need = |path: String, any_of, why: String| Need { path, any_of, why };
    let why = format!("to set {key}");
    if let Some(privs) = key_privileges(key) {
        out.push(need(vm.to_string(), privs, why.clone()));
    }
    let Some(value) = value else { return };
    if key.starts_with("net") {
        let opts = property_string(value, Some("model"));
        if let Some(bridge) = opts.get("bridge") {
            let path = match opts.get("tag") {
                Some(tag) => format!("/sdn/zones/localnetwork/{bridge}/{tag}"),
                None => format!("/sdn/zones/localnetwork/{bridge}"),
            };
            out.push(need(
                path,
                &["SDN.Use"],
                format!("to put {key} on {bridge}"),
            ));
        }
    }
    if key.starts_with("hostpci") {
        if let Some(m) = property_string(value, Some("host")).get("mapping") {
            out.push(need(
                format!("/mapping/pci/{m}"),
                &["Mapping.Use"],
                format!("to give {key} the mapping {m}"),
            ));
        }
        out.push(need(vm.to_string(), &["VM.Config.HWType"], why.clone()));
    }
    if is_drive(key) {
        drive(vm, key, value, create, out);
    }
}

/// A drive: a new volume needs Datastore.AllocateSpace on its storage, an imported image
/// read access to its own; an update needs the drive privilege on the VM too.
fn drive(vm: &str, key: &str, value: &str, create: bool, out: &mut Vec<Need>) {
    let opts = property_string(value, Some("file"));
    let file = opts.get("file").map(String::as_str).unwrap_or("");
    let cloudinit = file.contains("cloudinit");
    if !create {
        let privs: &'static [&'static str] = if cloudinit {
            &["VM.Config.Cloudinit"]
        } else {
            &["VM.Config.Disk"]
        };
        out.push(Need {
            path: vm.to_string(),
            any_of: privs,
            why: format!("to add {key}"),
        });
        if cloudinit {
            out.push(Need {
                path: vm.to_string(),
                any_of: &["VM.Config.CDROM"],
                why: format!("to add the cloud-init drive {key}"),
            });
        }
    }
    if let Some((storage, size)) = file.split_once(':')
        && !cloudinit
        && size.parse::<f64>().is_ok()
    {
        out.push(Need {
            path: format!("/storage/{storage}"),
            any_of: &["Datastore.AllocateSpace"],
            why: format!("to allocate {key}"),
        });
    }
    if let Some(src) = opts.get("import-from") {
        let storage = src.split(':').next().unwrap_or_default();
        out.push(Need {
            path: format!("/storage/{storage}"),
            any_of: &[
                "Datastore.Allocate",
                "Datastore.AllocateSpace",
                "Datastore.Audit",
            ],
            why: format!("to import {src}"),
        });
    }
}

/// Everything the steps need, in step order.
fn needs(steps: &[VmStep], vmid: Option<u32>, spec: &VmSpec) -> Vec<Need> {
    let vm = format!("/vms/{}", vmid.unwrap_or(0));
    let mut out = Vec::new();
    let power = |out: &mut Vec<Need>, why: &str| {
        out.push(Need {
            path: vm.clone(),
            any_of: &["VM.PowerMgmt"],
            why: why.to_string(),
        });
        if spec.cloud_init.as_ref().is_none_or(|c| c.ip == "dhcp") {
            out.push(Need {
                path: vm.clone(),
                any_of: &["VM.GuestAgent.Audit", "VM.GuestAgent.Unrestricted"],
                why: "to ask the guest agent for the VM's address".into(),
            });
        }
    };
    for step in steps {
        match step {
            VmStep::CreateMapping { id, .. } => out.push(Need {
                path: "/mapping/pci".into(),
                any_of: &["Mapping.Modify"],
                why: format!("to create the PCI mapping {id}"),
            }),
            VmStep::UpdateMapping { id, .. } => out.push(Need {
                path: format!("/mapping/pci/{id}"),
                any_of: &["Mapping.Modify"],
                why: format!("to update the PCI mapping {id}"),
            }),
            VmStep::CreateVm { params, .. } => {
                out.push(Need {
                    path: vm.clone(),
                    any_of: &["VM.Allocate"],
                    why: "to create the VM".into(),
                });
                for (k, v) in params {
                    for_key(&vm, k, Some(v), true, &mut out);
                }
            }
            VmStep::SetConfig { changes, .. } => {
                for c in changes {
                    for_key(&vm, &c.key, c.to.as_deref(), false, &mut out);
                }
            }
            VmStep::ResizeDisk { disk, .. } => out.push(Need {
                path: vm.clone(),
                any_of: &["VM.Config.Disk"],
                why: format!("to grow {disk}"),
            }),
            // `$check_drive_perms` for the efidisk0 update; the volume is the VM's own.
            VmStep::EnrollEfiCerts { .. } => out.push(Need {
                path: vm.clone(),
                any_of: &["VM.Config.Disk"],
                why: "to enroll the 2023 Microsoft UEFI CA into efidisk0".into(),
            }),
            VmStep::Restart { .. } => power(&mut out, "to restart the VM"),
            VmStep::Start => power(&mut out, "to start the VM"),
        }
    }
    out
}

/// Refuses the plan when the credentials lack a privilege a step needs, naming each one
/// with the step that needs it.
pub(super) fn check(
    steps: &[VmStep],
    vmid: Option<u32>,
    spec: &VmSpec,
    held: &Permissions,
    out: &mut Draft,
) {
    let mut missing: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for n in needs(steps, vmid, spec) {
        if !n.any_of.iter().any(|p| held.holds(&n.path, p)) {
            missing
                .entry((n.path.clone(), n.any_of.join(" or ")))
                .or_default()
                .push(n.why);
        }
    }
    if missing.is_empty() {
        return;
    }
    let list: Vec<String> = missing
        .iter()
        .map(|((path, privs), why)| {
            let mut why = why.clone();
            why.dedup();
            format!("- {privs} on {path}: {}", why.join(", "))
        })
        .collect();
    out.refuse(
        format!(
            "the API credentials lack privileges the plan needs:\n{}",
            list.join("\n")
        ),
        "grant them to the token and, for a token with privilege separation, to its user as well (a privsep token holds only what both hold): README's \"An API token for pvegpu\" has the `pveum` role recipe; `pveum user token permissions USER@REALM TOKEN` shows what a token holds",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::planner::KeyChange;

    fn held(json: serde_json::Value) -> Permissions {
        Permissions::parse(&json)
    }

    #[test]
    fn inherited_privileges_count_only_where_they_propagate() {
        // As Proxmox lists them: each path compiled with what it inherits.
        let p = held(serde_json::json!({
            "/vms": {"VM.Audit": 1, "VM.PowerMgmt": 0},
            "/vms/201": {"VM.Audit": 1, "VM.Config.Disk": 0}
        }));
        assert!(p.holds("/vms/202", "VM.Audit"), "inherited from /vms");
        assert!(!p.holds("/vms/202", "VM.PowerMgmt"), "not propagated");
        assert!(p.holds("/vms/201", "VM.Config.Disk"), "on the path itself");
        assert!(!p.holds("/vms/202", "VM.Config.Disk"));
        assert!(!p.holds("/storage/local", "Datastore.Audit"));
    }

    #[test]
    fn a_config_change_needs_its_option_group_and_the_bridge() {
        let steps = [VmStep::SetConfig {
            changes: vec![
                KeyChange {
                    key: "memory".into(),
                    from: Some("4096".into()),
                    to: Some("30720".into()),
                    disruptive: true,
                },
                KeyChange {
                    key: "net0".into(),
                    from: None,
                    to: Some("virtio,bridge=vmbr1,tag=20".into()),
                    disruptive: false,
                },
                KeyChange {
                    key: "ide2".into(),
                    from: None,
                    to: Some("nvme-zfs:cloudinit".into()),
                    disruptive: true,
                },
            ],
            digest: "d".into(),
        }];
        let got: Vec<(String, String)> = needs(&steps, Some(201), &small_spec())
            .into_iter()
            .map(|n| (n.path, n.any_of.join("|")))
            .collect();
        let want = [
            ("/vms/201", "VM.Config.Memory"),
            ("/vms/201", "VM.Config.Network"),
            ("/sdn/zones/localnetwork/vmbr1/20", "SDN.Use"),
            ("/vms/201", "VM.Config.Cloudinit"),
            ("/vms/201", "VM.Config.CDROM"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    fn small_spec() -> VmSpec {
        toml::from_str(
            "name = \"x\"\nmemory_mib = 1024\ncores = 1\n[disk]\nstorage = \"s\"\nsize_gb = 8\n",
        )
        .unwrap()
    }

    /// The config update of the disk; the volume is the VM's own, so no storage privilege.
    #[test]
    fn an_efi_enrollment_needs_the_disk_privilege() {
        let steps = [VmStep::EnrollEfiCerts {
            from: Some("s:vm-201-disk-1,efitype=4m,pre-enrolled-keys=1".into()),
            marker: None,
            staged: false,
        }];
        let got = needs(&steps, Some(201), &small_spec());
        let got: Vec<(&str, &[&str])> = got.iter().map(|n| (n.path.as_str(), n.any_of)).collect();
        assert_eq!(got, [("/vms/201", &["VM.Config.Disk"][..])]);
    }
}

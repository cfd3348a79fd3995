//! The fake cluster's state: nodes and their PCI devices, storages, PCI mappings, VMs
//! (config, pending changes, lock, run state), tasks, users, tokens and tickets.

use serde_json::{Value, json};
use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug)]
pub struct PciDevice {
    /// Full address with domain, e.g. `0000:02:00.0`.
    pub id: String,
    pub class: String,
    pub vendor: String,
    pub device: String,
    pub subsystem_vendor: String,
    pub subsystem_device: String,
    pub iommugroup: i64,
    pub mdev: bool,
    pub vendor_name: Option<String>,
    pub device_name: Option<String>,
}

impl PciDevice {
    pub fn to_json(&self, verbose: bool) -> Value {
        let mut v = json!({
            "id": self.id, "class": self.class, "vendor": self.vendor,
            "device": self.device, "iommugroup": self.iommugroup,
        });
        if self.mdev {
            v["mdev"] = json!(1);
        }
        if verbose {
            v["subsystem_vendor"] = json!(self.subsystem_vendor);
            v["subsystem_device"] = json!(self.subsystem_device);
            if let Some(n) = &self.vendor_name {
                v["vendor_name"] = json!(n);
            }
            if let Some(n) = &self.device_name {
                v["device_name"] = json!(n);
            }
        }
        v
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub online: bool,
    pub pci: Vec<PciDevice>,
    pub storages: Vec<String>,
    /// Storage -> content types (`images,rootdir`).
    pub content: BTreeMap<String, String>,
    /// Volumes of content `import` (cloud images), as volume ids.
    pub import_volumes: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct PciMapping {
    pub description: Option<String>,
    pub map: Vec<String>,
    pub mdev: bool,
    pub live_migration: bool,
}

impl PciMapping {
    /// The mapping's section in `/etc/pve/mapping/pci.cfg`, as SectionConfig writes it.
    pub fn render(&self, id: &str) -> String {
        let mut s = format!("pci: {id}\n");
        if let Some(d) = &self.description {
            s.push_str(&format!("\tdescription {d}\n"));
        }
        for m in &self.map {
            s.push_str(&format!("\tmap {m}\n"));
        }
        if self.mdev {
            s.push_str("\tmdev 1\n");
        }
        if self.live_migration {
            s.push_str("\tlive-migration-capable 1\n");
        }
        s
    }
}

#[derive(Clone, Debug, Default)]
pub struct Vm {
    pub node: String,
    pub config: BTreeMap<String, String>,
    pub pending: BTreeMap<String, String>,
    pub pending_delete: BTreeSet<String>,
    pub running: bool,
    pub lock: Option<String>,
    /// The guest agent does not answer its ping (an image without qemu-guest-agent).
    pub agent_down: bool,
    /// What the EFI disk's vars really hold: the 2023 Microsoft certificates, which the
    /// `ms-cert` marker only reports ("Informational marker", qemu-server `Drive.pm`).
    pub efivars_2023: bool,
}

impl Vm {
    /// The config file as PVE writes it; the digest is its SHA1.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if let Some(l) = &self.lock {
            s.push_str(&format!("lock: {l}\n"));
        }
        for (k, v) in &self.config {
            s.push_str(&format!("{k}: {v}\n"));
        }
        if !self.pending.is_empty() || !self.pending_delete.is_empty() {
            s.push_str("\n[PENDING]\n");
            if !self.pending_delete.is_empty() {
                let d: Vec<&str> = self.pending_delete.iter().map(String::as_str).collect();
                s.push_str(&format!("delete: {}\n", d.join(",")));
            }
            for (k, v) in &self.pending {
                s.push_str(&format!("{k}: {v}\n"));
            }
        }
        s
    }

    pub fn digest(&self) -> String {
        sha1_hex(self.render().as_bytes())
    }

    /// The config with pending changes applied (what GET config shows by default).
    pub fn merged(&self) -> BTreeMap<String, String> {
        let mut c = self.config.clone();
        for k in &self.pending_delete {
            c.remove(k);
        }
        c.extend(self.pending.clone());
        c
    }

    /// `vmconfig_apply_pending`: a pending efidisk0 goes through `OVMF::drive_change`
    /// first, which enrolls the 2023 certificates when the marker changed to a 2023 value.
    pub fn apply_pending(&mut self) {
        if let (Some(old), Some(new)) = (
            self.config.get("efidisk0").cloned(),
            self.pending.get("efidisk0").cloned(),
        ) {
            let new = self.efi_drive_change(&old, &new);
            self.pending.insert("efidisk0".into(), new);
        }
        self.config = self.merged();
        self.pending.clear();
        self.pending_delete.clear();
    }

    /// qemu-server 9.2.6 `src/PVE/QemuServer/OVMF.pm` `drive_change` (L361-378): on the
    /// same volume, a marker "newly changed to 2023" is cleared and
    /// `ensure_ms_2023_cert_enrolled` runs, which enrolls (virt-fw-vars) and sets
    /// `ms-cert=2023k` only with `pre-enrolled-keys` (L303-359); without them the marker
    /// stays cleared. "Note that changing away from ms-cert=2023 is allowed too, the marker
    /// is not the source of truth." The new value, as `print_drive` then writes it.
    pub fn efi_drive_change(&mut self, old: &str, new: &str) -> String {
        let (o, n) = (
            parse_property_string(old, "file"),
            parse_property_string(new, "file"),
        );
        let marker = n.get("ms-cert").cloned();
        let newly_2023 = o.get("file") == n.get("file")
            && o.get("ms-cert") != n.get("ms-cert")
            && marker.as_deref().is_some_and(|m| m.starts_with("2023"));
        if !newly_2023 {
            return print_drive(&n);
        }
        let mut n = n;
        n.remove("ms-cert");
        if n.get("pre-enrolled-keys")
            .is_some_and(|v| v == "1" || v == "on")
        {
            self.efivars_2023 = true;
            n.insert("ms-cert".into(), "2023k".into());
        }
        print_drive(&n)
    }
}

/// qemu-server `print_drive` through pve-common `print_property_string` (pve-common
/// `src/PVE/JSONSchema.pm` L2779-2880): the volume first, then every option sorted by key.
pub fn print_drive(opts: &BTreeMap<String, String>) -> String {
    let file = opts.get("file").cloned().unwrap_or_default();
    std::iter::once(file)
        .chain(
            opts.iter()
                .filter(|(k, _)| *k != "file")
                .map(|(k, v)| format!("{k}={v}")),
        )
        .collect::<Vec<_>>()
        .join(",")
}

/// What happens when a task finishes successfully.
#[derive(Clone, Debug)]
pub enum Effect {
    None,
    /// Create worker: drop the `create` lock, optionally start.
    Created {
        vmid: u32,
        start: bool,
    },
    Start {
        vmid: u32,
    },
    Stop {
        vmid: u32,
    },
    /// `qmdestroy`.
    Destroy {
        vmid: u32,
    },
    /// `resize`: the disk's size= rewritten.
    Resize {
        vmid: u32,
        disk: String,
        size: String,
    },
    /// A config update done in a `qmconfig` worker.
    Config {
        vmid: u32,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
        revert: Vec<String>,
    },
}

#[derive(Clone, Debug)]
pub struct Task {
    pub upid: String,
    pub node: String,
    pub pid: u32,
    pub pstart: u32,
    pub starttime: u32,
    pub kind: String,
    pub id: String,
    pub user: String,
    pub polls_left: u32,
    pub log: Vec<String>,
    /// `None` while running; `Some(exitstatus)` when stopped.
    pub exitstatus: Option<String>,
    /// An error decided before the worker "ran" (checks inside the worker).
    pub error: Option<String>,
    pub effect: Effect,
}

#[derive(Clone, Debug)]
pub struct Token {
    pub secret: String,
    /// `None`: privsep=0, the user's privileges (all, for root@pam).
    /// `Some`: only these `(path, privilege)` grants (propagating to sub-paths).
    pub grants: Option<Vec<(String, String)>>,
}

#[derive(Clone, Debug)]
pub struct Ticket {
    pub user: String,
    pub ticket: String,
    pub csrf: String,
    pub expired: bool,
}

/// The authenticated principal of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub token: Option<String>,
    pub by_ticket: bool,
}

impl Principal {
    /// `root@pam` with a ticket: the only one allowed raw `host=` hostpci entries.
    pub fn is_root_ticket(&self) -> bool {
        self.user == "root@pam" && self.token.is_none()
    }

    /// The id in UPIDs and task owners: `user@realm` or `user@realm!token`.
    pub fn id(&self) -> String {
        match &self.token {
            Some(t) => format!("{}!{t}", self.user),
            None => self.user.clone(),
        }
    }
}

pub struct FakeCluster {
    pub cluster_name: String,
    pub version: String,
    pub release: String,
    pub nodes: BTreeMap<String, Node>,
    pub mappings: BTreeMap<String, PciMapping>,
    pub vms: BTreeMap<u32, Vm>,
    pub tasks: BTreeMap<String, Task>,
    /// `user@realm` -> password.
    pub users: BTreeMap<String, String>,
    /// `user@realm!name` -> token.
    pub tokens: BTreeMap<String, Token>,
    /// ACLs of users other than root@pam (who holds everything): `(path, privilege)`.
    pub user_acls: BTreeMap<String, Vec<(String, String)>>,
    pub tickets: Vec<Ticket>,
    /// How many task-status polls a task answers `running` before it stops.
    pub task_polls: u32,
    /// The next task (of any kind) ends with this error instead of its effect.
    pub fail_next_task: Option<String>,
    /// No VM's guest agent answers (images without qemu-guest-agent).
    pub agents_down: bool,
    /// The node's pve-edk2-firmware ships EFI vars templates that already hold the 2023
    /// Microsoft certificates (4.2025.05-1 or later, pve-docs `qm.adoc`): a new EFI disk
    /// with pre-enrolled keys gets them and `ms-cert=2023k` at creation.
    pub efi_template_2023: bool,
    /// Someone else creates this VM just before the next create request is handled.
    pub taken_before_create: Option<(u32, Vm)>,
    pub ssl_fingerprint: String,
    next_pid: u32,
    clock: u32,
}

impl FakeCluster {
    /// One node `pve` with the seed's two GPUs (02:00 and 83:00, each with HDMI audio),
    /// storages `local`, `local-lvm` and `nvme-zfs`, user root@pam (password `secret`),
    /// a privsep=0 token `root@pam!pvegpu` (secret [`ROOT_TOKEN_SECRET`]) and a
    /// privilege-separated token `root@pam!limited` without Mapping.Use.
    pub fn new() -> Self {
        let gpu = |addr: &str, dev: &str, class: &str, group: i64, name: &str| PciDevice {
            id: addr.to_string(),
            class: class.to_string(),
            vendor: "0x10de".into(),
            device: dev.to_string(),
            subsystem_vendor: "0x10de".into(),
            subsystem_device: "0x11d8".into(),
            iommugroup: group,
            mdev: false,
            vendor_name: Some("NVIDIA Corporation".into()),
            device_name: Some(name.to_string()),
        };
        let other = |addr: &str, class: &str, vendor: &str, dev: &str, group: i64| PciDevice {
            id: addr.to_string(),
            class: class.to_string(),
            vendor: vendor.to_string(),
            device: dev.to_string(),
            subsystem_vendor: vendor.to_string(),
            subsystem_device: "0x0000".into(),
            iommugroup: group,
            mdev: false,
            vendor_name: None,
            device_name: None,
        };
        let pci = vec![
            other("0000:00:00.0", "0x060000", "0x8086", "0x2020", 0),
            other("0000:00:1f.2", "0x010601", "0x8086", "0xa182", 5),
            gpu(
                "0000:02:00.0",
                "0x1b80",
                "0x030000",
                14,
                "GP104 [GeForce GTX 1080]",
            ),
            gpu(
                "0000:02:00.1",
                "0x10f0",
                "0x040300",
                14,
                "GP104 High Definition Audio Controller",
            ),
            other("0000:05:00.0", "0x020000", "0x8086", "0x1533", 20),
            gpu(
                "0000:83:00.0",
                "0x1b80",
                "0x030000",
                40,
                "GP104 [GeForce GTX 1080]",
            ),
            gpu(
                "0000:83:00.1",
                "0x10f0",
                "0x040300",
                40,
                "GP104 High Definition Audio Controller",
            ),
        ];
        let node = Node {
            name: "pve".into(),
            online: true,
            pci,
            storages: vec!["local".into(), "local-lvm".into(), "nvme-zfs".into()],
            content: [
                ("local".to_string(), "backup,import,iso,vztmpl".to_string()),
                ("local-lvm".to_string(), "images,rootdir".to_string()),
                ("nvme-zfs".to_string(), "images,rootdir".to_string()),
            ]
            .into(),
            import_volumes: vec!["local:import/debian-12-genericcloud-amd64.qcow2".into()],
        };
        let mut tokens = BTreeMap::new();
        tokens.insert(
            "root@pam!pvegpu".to_string(),
            Token {
                secret: ROOT_TOKEN_SECRET.into(),
                grants: None,
            },
        );
        tokens.insert(
            "root@pam!limited".to_string(),
            Token {
                secret: LIMITED_TOKEN_SECRET.into(),
                grants: Some(vec![
                    ("/vms".into(), "VM.Allocate".into()),
                    ("/vms".into(), "VM.Config.HWType".into()),
                    ("/vms".into(), "VM.Audit".into()),
                    ("/vms".into(), "VM.PowerMgmt".into()),
                    ("/nodes".into(), "Sys.Audit".into()),
                    ("/mapping/pci".into(), "Mapping.Audit".into()),
                ]),
            },
        );
        FakeCluster {
            cluster_name: "lab".into(),
            version: "9.1.9".into(),
            release: "9.1".into(),
            nodes: [("pve".to_string(), node)].into(),
            mappings: BTreeMap::new(),
            vms: BTreeMap::new(),
            tasks: BTreeMap::new(),
            users: [("root@pam".to_string(), "secret".to_string())].into(),
            tokens,
            user_acls: BTreeMap::new(),
            tickets: Vec::new(),
            task_polls: 2,
            fail_next_task: None,
            agents_down: false,
            efi_template_2023: true,
            taken_before_create: None,
            ssl_fingerprint: String::new(),
            next_pid: 0x0012_ABCD,
            clock: 0x66F1_E2D3,
        }
    }

    /// The digest of the whole `mapping/pci.cfg` (SectionConfig: SHA1 of the file): one
    /// value for every mapping, changed by any write to any of them.
    pub fn mappings_digest(&self) -> String {
        let file: Vec<String> = self.mappings.iter().map(|(id, m)| m.render(id)).collect();
        sha1_hex(file.join("\n").as_bytes())
    }

    /// Lowest free VMID from 100.
    pub fn next_vmid(&self) -> u32 {
        (100..).find(|id| !self.vms.contains_key(id)).unwrap()
    }

    /// Start a task: a UPID as PVE writes it, `running` for `task_polls` polls.
    pub fn spawn_task(
        &mut self,
        node: &str,
        kind: &str,
        id: &str,
        user: &str,
        error: Option<String>,
        effect: Effect,
    ) -> String {
        self.next_pid += 1;
        self.clock += 1;
        let (pid, pstart, starttime) = (self.next_pid, 0x0A1B_2C3D, self.clock);
        let upid =
            format!("UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{kind}:{id}:{user}:");
        let error = error.or_else(|| self.fail_next_task.take());
        let task = Task {
            upid: upid.clone(),
            node: node.to_string(),
            pid,
            pstart,
            starttime,
            kind: kind.to_string(),
            id: id.to_string(),
            user: user.to_string(),
            polls_left: self.task_polls,
            log: Vec::new(),
            exitstatus: None,
            error,
            effect,
        };
        self.tasks.insert(upid.clone(), task);
        if self.task_polls == 0 {
            self.finish_task(&upid);
        }
        upid
    }

    /// Count one status poll; stop the task when its polls are used up.
    pub fn poll_task(&mut self, upid: &str) {
        let Some(t) = self.tasks.get_mut(upid) else {
            return;
        };
        if t.exitstatus.is_some() {
            return;
        }
        t.polls_left = t.polls_left.saturating_sub(1);
        if t.polls_left == 0 {
            self.finish_task(upid);
        }
    }

    /// Run the worker: its checks, then its effect; write the log and exit status.
    pub fn finish_task(&mut self, upid: &str) {
        let Some(task) = self.tasks.get(upid).cloned() else {
            return;
        };
        if task.exitstatus.is_some() {
            return;
        }
        let mut log = Vec::new();
        let result = match task.error.clone() {
            Some(e) => Err(e),
            None => self.run_effect(&task.effect, &mut log),
        };
        let exit = match result {
            Ok(()) => {
                log.push("TASK OK".to_string());
                "OK".to_string()
            }
            Err(e) => {
                // A failed create worker unlinks the config it wrote and frees its disks
                // (qemu-server `create_vm`, L1596-1610): no VM is left, locked or not.
                if let Effect::Created { vmid, .. } = task.effect {
                    self.vms.remove(&vmid);
                }
                log.push(format!("TASK ERROR: {e}"));
                e
            }
        };
        let t = self.tasks.get_mut(upid).unwrap();
        t.log.extend(log);
        t.exitstatus = Some(exit);
    }

    fn run_effect(&mut self, effect: &Effect, log: &mut Vec<String>) -> Result<(), String> {
        match effect.clone() {
            Effect::None => Ok(()),
            Effect::Created { vmid, start } => {
                let vm = self.vms.get_mut(&vmid).ok_or("VM vanished")?;
                vm.lock = None;
                if start {
                    return self.start_vm(vmid, log);
                }
                Ok(())
            }
            Effect::Start { vmid } => self.start_vm(vmid, log),
            Effect::Destroy { vmid } => {
                self.vms.remove(&vmid).ok_or("VM vanished")?;
                log.push(format!("destroyed VM {vmid}"));
                Ok(())
            }
            Effect::Resize { vmid, disk, size } => {
                let vm = self.vms.get_mut(&vmid).ok_or("VM vanished")?;
                let v = vm.config.get(&disk).cloned().ok_or("disk vanished")?;
                let kept: Vec<&str> = v.split(',').filter(|p| !p.starts_with("size=")).collect();
                vm.config
                    .insert(disk.clone(), format!("{},size={size}", kept.join(",")));
                log.push(format!("Image resized to {size}"));
                Ok(())
            }
            // `_do_vm_stop` ends in `vm_stop_cleanup(..., $apply_pending_changes = 1, ...)`
            // (qemu-server 9.2.6 `src/PVE/QemuServer.pm` L6298, L6329): pending changes,
            // an EFI certificate enrollment among them, are applied once the VM is down.
            Effect::Stop { vmid } => {
                let vm = self.vms.get_mut(&vmid).ok_or("VM vanished")?;
                vm.running = false;
                vm.apply_pending();
                Ok(())
            }
            Effect::Config {
                vmid,
                set,
                delete,
                revert,
            } => {
                let vm = self.vms.get_mut(&vmid).ok_or("VM vanished")?;
                apply_config(vm, &set, &delete, &revert);
                log.push(format!(
                    "update VM {vmid}: {}",
                    set.keys().cloned().collect::<Vec<_>>().join(",")
                ));
                Ok(())
            }
        }
    }

    /// `qmstart`: pending changes applied, then the hostpci checks PVE runs at start.
    fn start_vm(&mut self, vmid: u32, log: &mut Vec<String>) -> Result<(), String> {
        let vm = self.vms.get(&vmid).ok_or("VM vanished")?;
        if vm.running {
            return Err(format!("VM {vmid} already running"));
        }
        let node = self.nodes.get(&vm.node).ok_or("node vanished")?;
        let conf = vm.merged();
        let q35 = conf.get("machine").is_some_and(|m| m.contains("q35"));
        let mut used: BTreeSet<String> = BTreeSet::new();
        for (k, v) in conf.iter().filter(|(k, _)| k.starts_with("hostpci")) {
            let opts = parse_property_string(v, "host");
            if opts.get("pcie").is_some_and(|p| p == "1" || p == "on") && !q35 {
                // No trailing newline in PVE, so Perl appends the location.
                return Err(
                    "q35 machine model is not enabled at /usr/share/perl5/PVE/QemuServer/PCI.pm line 661."
                        .to_string(),
                );
            }
            let devices: Vec<String> = match (opts.get("host"), opts.get("mapping")) {
                (Some(_), Some(_)) => return Err("Cannot set both 'host' and 'mapping'.".into()),
                (None, None) => return Err("Either 'host' or 'mapping' must be set.".into()),
                (Some(h), None) => h.split(';').map(str::to_string).collect(),
                (None, Some(m)) => {
                    let mapping = self
                        .mappings
                        .get(m)
                        .ok_or(format!("PCI device mapping not found for '{m}'"))?;
                    let entry = mapping
                        .map
                        .iter()
                        .map(|e| parse_property_string(e, ""))
                        .find(|e| e.get("node") == Some(&vm.node))
                        .ok_or(format!("PCI device mapping not found for '{m}'"))?;
                    if let Err(e) = assert_valid(m, &entry, mapping.mdev, &node.pci) {
                        // `die "...: $@\n"` with `$@` ending in a newline; the task status
                        // turns each newline but the last into a space.
                        return Err(format!(
                            "PCI device mapping invalid (hardware probably changed): {} ",
                            e.trim_end()
                        ));
                    }
                    entry
                        .get("path")
                        .cloned()
                        .unwrap_or_default()
                        .split(';')
                        .map(str::to_string)
                        .collect()
                }
            };
            let Some(dev) = devices
                .iter()
                .find(|d| node.pci.iter().any(|p| pci_matches(&p.id, d)))
            else {
                let first = devices.first().cloned().unwrap_or_default();
                return Err(format!("no PCI device found for '{}'", full_pci_id(&first)));
            };
            if !used.insert(full_pci_id(dev)) {
                return Err(format!(
                    "device '{}' assigned more than once",
                    full_pci_id(dev)
                ));
            }
            log.push(format!("{k}: {}", full_pci_id(dev)));
        }
        let vm = self.vms.get_mut(&vmid).unwrap();
        vm.apply_pending();
        vm.running = true;
        Ok(())
    }
}

impl Default for FakeCluster {
    fn default() -> Self {
        Self::new()
    }
}

pub const ROOT_TOKEN_SECRET: &str = "8a3c1f4e-0d6b-4c51-9e2f-6a7b8c9d0e1f";
pub const LIMITED_TOKEN_SECRET: &str = "11111111-2222-4333-8444-555555555555";

/// Apply a config update: set/delete/revert, pending where the VM runs and the option
/// cannot be hot-plugged (hostpci, machine, bios, cpu, memory, ...).
pub fn apply_config(
    vm: &mut Vm,
    set: &BTreeMap<String, String>,
    delete: &[String],
    revert: &[String],
) {
    for k in revert {
        vm.pending.remove(k);
        vm.pending_delete.remove(k);
    }
    for k in delete {
        if vm.running && !hotpluggable(k) {
            vm.pending.remove(k);
            vm.pending_delete.insert(k.clone());
        } else {
            vm.config.remove(k);
            vm.pending.remove(k);
        }
    }
    for (k, v) in set {
        if vm.running && !hotpluggable(k) {
            vm.pending_delete.remove(k);
            if vm.config.get(k) == Some(v) {
                vm.pending.remove(k);
            } else {
                vm.pending.insert(k.clone(), v.clone());
            }
        } else if k == "efidisk0"
            && let Some(old) = vm.config.get(k).cloned()
        {
            // a stopped VM's update is applied at once (`$update_vm_api` calls
            // `vmconfig_apply_pending`), efidisk0 through `drive_change`
            let v = vm.efi_drive_change(&old, v);
            vm.config.insert(k.clone(), v);
        } else {
            vm.config.insert(k.clone(), v.clone());
        }
    }
}

/// Options PVE changes on a running VM at once: `$fast_plug_option` with every cloud-init
/// key added (qemu-server 9.2.6 `src/PVE/QemuServer.pm` L4594-4611), and what the default
/// hotplug features `network,disk,usb` plug: NICs, USB, and disks on a bus that can take
/// them (`vmconfig_update_disk` L5334 skips ide and sata, so a new `ide2` cloud-init drive
/// stays pending).
fn hotpluggable(key: &str) -> bool {
    const FAST: &[&str] = &[
        "description",
        "hookscript",
        "lock",
        "migrate_downtime",
        "migrate_speed",
        "name",
        "onboot",
        "protection",
        "shares",
        "startup",
        "tags",
        "vmstatestorage",
        "citype",
        "ciuser",
        "cipassword",
        "ciupgrade",
        "cicustom",
        "searchdomain",
        "nameserver",
        "sshkeys",
    ];
    const PLUG: &[&str] = &["net", "scsi", "virtio", "usb", "unused", "ipconfig"];
    FAST.contains(&key)
        || PLUG.iter().any(|p| {
            key.strip_prefix(p)
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        })
}

/// `PVE::Mapping::PCI::assert_valid` (pve-guest-common `src/PVE/Mapping/PCI.pm` L144-204):
/// for each path of the entry, the hardware's `id`, `iommugroup` (first path only), `mdev`
/// and `subsystem-id` against the entry's, in that order, as exact strings without `0x`.
/// A property the hardware has and the entry lacks fails, and so does the reverse.
/// `pci_device_info` keeps a subsystem id of `0000:0000`; a device without an IOMMU group
/// (here: group -1) has no `iommugroup`.
pub fn assert_valid(
    name: &str,
    entry: &BTreeMap<String, String>,
    mapping_mdev: bool,
    pci: &[PciDevice],
) -> Result<(), String> {
    let hex = |v: &str| v.trim_start_matches("0x").to_string();
    let paths = entry.get("path").cloned().unwrap_or_default();
    for (idx, path) in paths.split(';').enumerate() {
        let path = if path.contains('.') {
            path.to_string()
        } else {
            format!("{path}.0")
        };
        let full = full_pci_id(&path);
        let info = pci
            .iter()
            .find(|d| d.id == full)
            .ok_or(format!("pci device '{path}' not found"))?;
        let expected: BTreeMap<&str, Option<String>> = [
            (
                "id",
                Some(format!("{}:{}", hex(&info.vendor), hex(&info.device))),
            ),
            (
                "iommugroup",
                (info.iommugroup >= 0).then(|| info.iommugroup.to_string()),
            ),
            ("mdev", Some(if info.mdev { "1" } else { "0" }.to_string())),
            (
                "subsystem-id",
                Some(format!(
                    "{}:{}",
                    hex(&info.subsystem_vendor),
                    hex(&info.subsystem_device)
                )),
            ),
        ]
        .into();
        for (prop, want) in expected {
            if prop == "iommugroup" && idx > 0 {
                continue;
            }
            let have = match prop {
                "mdev" => Some(if mapping_mdev { "1" } else { "0" }.to_string()),
                p => entry.get(p).map(|v| v.replace("0x", "")),
            };
            match (want, have) {
                (None, None) => {}
                (Some(_), None) => {
                    return Err(format!(
                        "missing expected property '{prop}' for device '{path}'\n"
                    ));
                }
                (None, Some(_)) => {
                    return Err(format!(
                        "unexpected property '{prop}' configured for device '{path}'\n"
                    ));
                }
                (Some(w), Some(h)) if w != h => {
                    return Err(format!(
                        "'{prop}' does not match for '{name}' ({w} != {h})\n"
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// `k=v,...` with `default_key` for a bare part (no validation: that is the schema's job).
pub fn parse_property_string(s: &str, default_key: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        match part.split_once('=') {
            Some((k, v)) => m.insert(k.to_string(), v.to_string()),
            None => m.insert(default_key.to_string(), part.to_string()),
        };
    }
    m
}

/// `02:00` -> `0000:02:00`, `02:00.0` -> `0000:02:00.0`.
pub fn full_pci_id(id: &str) -> String {
    if id.matches(':').count() >= 2 {
        id.to_string()
    } else {
        format!("0000:{id}")
    }
}

/// Whether listing id `0000:02:00.0` is named by `02:00`, `0000:02:00` or `0000:02:00.0`.
pub fn pci_matches(listing_id: &str, wanted: &str) -> bool {
    let w = full_pci_id(wanted);
    listing_id == w
        || listing_id
            .strip_suffix(|c: char| c.is_ascii_hexdigit())
            .and_then(|s| s.strip_suffix('.'))
            == Some(&w)
}

pub fn sha1_hex(data: &[u8]) -> String {
    Sha1::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

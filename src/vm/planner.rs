//! The VM plan: a pure function from the inventory's VM, what the host phase verified, and
//! what the API reports, to the steps that make the VM match. Keys pvegpu does not manage
//! are never touched; a key it manages is compared the way PVE normalises it (property
//! strings as sets of key=value, `02:00` as `0000:02:00`, a bare `30720` as `current=30720`).

use super::spec::{ApiSettings, Firmware, VmSpec};
use super::state::{ApiFacts, ClusterVm, overlaps, property_string};
use crate::plan::Refusal;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A card the host phase prepared, as the facts gathered over SSH show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostDevice {
    /// The slot, `0000:02:00`: PVE passes all its functions.
    pub slot: String,
    /// vendor:device of function 0, `10de:1b80`.
    pub id: String,
    pub subsystem: Option<String>,
    pub iommu_group: Option<u32>,
    pub name: String,
    /// Every function of the card is on vfio-pci now.
    pub on_vfio: bool,
}

/// Whether the host phase is done, and the cards it verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostReadiness {
    /// Nothing left to plan on the host and no refusal.
    pub converged: bool,
    /// Why not, in a few words.
    pub pending: Option<String>,
    pub devices: Vec<HostDevice>,
}

/// How devices are written into the VM config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceMethod {
    /// `hostpciN: 0000:02:00`: only root@pam with a ticket may write it.
    Host,
    /// `hostpciN: mapping=ID` through a cluster PCI resource mapping: works with tokens.
    Mapping,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyChange {
    pub key: String,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Takes effect only after a stop and start of a running VM.
    pub disruptive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum VmStep {
    /// `POST /cluster/mapping/pci`.
    CreateMapping {
        id: String,
        map: String,
    },
    /// `PUT /cluster/mapping/pci/{id}`: this node's entry replaced, the others kept.
    UpdateMapping {
        id: String,
        map: Vec<String>,
        from: String,
        digest: Option<String>,
    },
    /// `POST /nodes/{node}/qemu`.
    CreateVm {
        vmid: u32,
        params: Vec<(String, String)>,
    },
    /// `POST .../config` with the digest read at plan time.
    SetConfig {
        changes: Vec<KeyChange>,
        digest: String,
    },
    /// `PUT .../resize` (grow only).
    ResizeDisk {
        disk: String,
        from: Option<String>,
        to: String,
    },
    /// Shut down and start: hostpci and other non-hotpluggable changes apply only then.
    Restart {
        keys: Vec<String>,
    },
    Start,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VmPlan {
    pub node: String,
    pub pve_node: String,
    pub name: String,
    pub vmid: Option<u32>,
    pub exists: bool,
    pub running: bool,
    pub method: DeviceMethod,
    pub method_reason: String,
    /// The hostpci entries once converged.
    pub devices: Vec<String>,
    pub steps: Vec<VmStep>,
    pub refusals: Vec<Refusal>,
    pub notes: Vec<String>,
    /// The host phase is not converged: nothing here runs until it is.
    pub waits_for_host: Option<String>,
}

impl VmPlan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Whether applying stops a running VM.
    pub fn disrupts(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, VmStep::Restart { .. }))
    }
}

/// Keys whose change on a running VM waits for a stop and start (default hotplug covers
/// network, disk and usb only).
fn disruptive(key: &str) -> bool {
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

/// The value PVE stores for `sshkeys`: percent-encoded like the GUI's encodeURIComponent.
pub fn encode_sshkeys(keys: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'!')
        .remove(b'~')
        .remove(b'*')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')');
    let trimmed: Vec<&str> = keys
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    percent_encoding::utf8_percent_encode(&(trimmed.join("\n") + "\n"), SET).to_string()
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .trim()
        .to_string()
}

/// The stable id pvegpu gives the mapping of a card: `gpu-02-00` (domain only when not 0).
pub fn mapping_id(slot: &str) -> String {
    let parts: Vec<&str> = slot.split(':').collect();
    match parts.as_slice() {
        ["0000", bus, dev] => format!("gpu-{bus}-{dev}"),
        [dom, bus, dev] => format!("gpu-{dom}-{bus}-{dev}"),
        _ => format!("gpu-{}", slot.replace([':', '.'], "-")),
    }
    .to_ascii_lowercase()
}

/// The map entry pvegpu wants for a card: the facts PVE uses to detect changed hardware.
pub fn mapping_entry(pve_node: &str, d: &HostDevice) -> String {
    let mut s = format!("node={pve_node},path={},id={}", d.slot, d.id);
    if let Some(g) = d.iommu_group {
        s.push_str(&format!(",iommugroup={g}"));
    }
    if let Some(sub) = &d.subsystem {
        s.push_str(&format!(",subsystem-id={sub}"));
    }
    s
}

fn normalised(key: &str, v: &str) -> BTreeMap<String, String> {
    let default = if key.starts_with("hostpci") {
        Some("host")
    } else if key.starts_with("net") {
        Some("model")
    } else {
        match key {
            "memory" => Some("current"),
            "cpu" => Some("cputype"),
            "agent" => Some("enabled"),
            "machine" => Some("type"),
            _ => None,
        }
    };
    let Some(d) = default else {
        let v = if key == "sshkeys" {
            decode(v)
        } else {
            v.trim().to_string()
        };
        return [(String::new(), v)].into();
    };
    property_string(v, Some(d))
        .into_iter()
        .map(|(k, v)| {
            let v = match (k.as_str(), v.as_str()) {
                ("host", h) => h
                    .split(';')
                    .map(|a| {
                        let a = a.to_ascii_lowercase();
                        if a.matches(':').count() == 1 {
                            format!("0000:{a}")
                        } else {
                            a
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(";"),
                (_, "on" | "yes" | "true") => "1".into(),
                (_, "off" | "no" | "false") => "0".into(),
                _ => v,
            };
            (k, v)
        })
        .collect()
}

/// Whether the VM's current value already is what pvegpu wants.
/// Whether a config value is what the inventory wants, as Proxmox may rewrite it (MAC kept,
/// defaults filled in, ssh keys encoded).
pub fn same(key: &str, want: &str, have: Option<&str>) -> bool {
    let Some(have) = have else { return false };
    if key.starts_with("net") {
        // The MAC PVE generated stays; model, bridge and VLAN are what the inventory says.
        let (w, h) = (normalised(key, want), normalised(key, have));
        let model = |m: &BTreeMap<String, String>| {
            m.keys()
                .find(|k| ["virtio", "e1000", "e1000e", "rtl8139", "vmxnet3"].contains(&k.as_str()))
                .cloned()
                .or_else(|| m.get("model").cloned())
        };
        return model(&w) == model(&h)
            && w.get("bridge") == h.get("bridge")
            && w.get("tag") == h.get("tag");
    }
    if key == "machine" {
        let t = |v: &str| {
            let m = normalised(key, v);
            let ty = m.get("type").cloned().unwrap_or_default();
            if ty.contains("q35") { "q35" } else { "i440fx" }
        };
        return t(want) == t(have);
    }
    normalised(key, want) == normalised(key, have)
}

/// The config pvegpu manages, as PVE would store it (disks aside).
/// The config keys pvegpu manages and their values (`hostpci` from the plan's devices).
pub fn managed_keys(
    spec: &VmSpec,
    hostpci: &[String],
    ssh_key: Option<&str>,
) -> Vec<(String, String)> {
    let mut k: Vec<(String, String)> = Vec::new();
    let mut put = |key: &str, v: String| k.push((key.to_string(), v));
    if !spec.adopt {
        put("name", spec.name.clone());
        put("memory", spec.memory_mib.to_string());
        put("cores", spec.cores.to_string());
        if let Some(cpu) = &spec.cpu {
            put("cpu", cpu.clone());
        }
        put("onboot", if spec.onboot { "1" } else { "0" }.into());
        put("agent", "1".into());
        put("ostype", "l26".into());
        put("scsihw", "virtio-scsi-single".into());
        if spec.firmware == Firmware::Ovmf {
            put("bios", "ovmf".into());
            put("machine", "q35".into());
        }
        let n = &spec.network;
        let mut net = format!("{},bridge={}", n.model, n.bridge);
        if let Some(tag) = n.vlan {
            net.push_str(&format!(",tag={tag}"));
        }
        put("net0", net);
        if let Some(ci) = &spec.cloud_init {
            put("ciuser", ci.user.clone());
            if let Some(key) = ssh_key {
                put("sshkeys", encode_sshkeys(key));
            }
            let mut ip = if ci.ip == "dhcp" {
                "ip=dhcp".to_string()
            } else {
                format!("ip={}", ci.ip)
            };
            if let Some(gw) = &ci.gateway {
                ip.push_str(&format!(",gw={gw}"));
            }
            put("ipconfig0", ip);
            if let Some(dns) = &ci.dns {
                put("nameserver", dns.clone());
            }
        }
    }
    for (i, v) in hostpci.iter().enumerate() {
        put(&format!("hostpci{i}"), v.clone());
    }
    k
}

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

pub struct Inputs<'a> {
    pub node: &'a str,
    pub spec: &'a VmSpec,
    pub api: &'a ApiSettings,
    pub host: &'a HostReadiness,
    /// The public key(s) for cloud-init, read from `ssh_key_file`.
    pub ssh_key: Option<&'a str>,
    pub facts: &'a ApiFacts,
}

pub fn plan(i: &Inputs<'_>) -> VmPlan {
    let (spec, facts) = (i.spec, i.facts);
    let pve_node = facts.node.clone();
    let mut refusals = Vec::new();
    let mut notes = Vec::new();
    let refuse = |reason: String, hint: &str| Refusal {
        reason,
        hint: hint.to_string(),
    };

    let (method, method_reason) = match (&i.api.token, i.api.user.as_deref()) {
        (None, Some("root@pam")) => (
            DeviceMethod::Host,
            "root@pam with a ticket may write raw `host=` hostpci entries, as `qm set --hostpci0 02:00` does",
        ),
        (Some(_), _) => (
            DeviceMethod::Mapping,
            "an API token may not write raw `host=` hostpci entries (PVE allows that to root@pam with a ticket only), so each card goes through a cluster PCI resource mapping",
        ),
        _ => (
            DeviceMethod::Mapping,
            "only root@pam may write raw `host=` entries, so each card goes through a cluster PCI resource mapping",
        ),
    };

    if !facts.nodes.iter().any(|n| n == &pve_node) {
        refusals.push(refuse(
            format!(
                "the cluster has no node `{pve_node}` (it has: {})",
                facts.nodes.join(", ")
            ),
            "set `node` under the node's [api] table to the name Proxmox shows in its tree",
        ));
    }
    match facts.storages.iter().find(|s| s.name == spec.disk.storage) {
        None => refusals.push(refuse(
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
        )),
        Some(s) if !s.content.iter().any(|c| c == "images") => refusals.push(refuse(
            format!(
                "storage `{}` does not hold VM disks (content: {})",
                s.name,
                s.content.join(",")
            ),
            "enable `Disk image` content on it (Datacenter > Storage) or choose another storage",
        )),
        Some(_) => {}
    }

    // Which cards go to this VM, each verified by the host phase.
    let wanted: Vec<&HostDevice> = match &spec.gpus {
        None => i.host.devices.iter().collect(),
        Some(list) => {
            let mut out = Vec::new();
            for a in list {
                let a = a.to_string();
                match i.host.devices.iter().find(|d| overlaps(&d.slot, &a)) {
                    Some(d) => out.push(d),
                    None => refusals.push(refuse(
                        format!("the VM's gpus list names {a}, which the host phase did not verify for passthrough"),
                        "list it under the node's [[gpus]] too (the host phase then binds and verifies it), or remove it from the VM's gpus",
                    )),
                }
            }
            out
        }
    };
    if wanted.is_empty() && refusals.is_empty() {
        refusals.push(refuse(
            "no verified GPU for this VM".into(),
            "list the cards under the node's [[gpus]]",
        ));
    }
    let waits_for_host = if i.host.converged {
        None
    } else {
        Some(
            i.host
                .pending
                .clone()
                .unwrap_or_else(|| "the host phase has changes left".into()),
        )
    };
    if i.host.converged {
        for d in &wanted {
            if !d.on_vfio {
                refusals.push(refuse(
                    format!(
                        "{} is not on vfio-pci although the host phase reports nothing left to do",
                        d.slot
                    ),
                    "run `pvegpu verify` on the node and `pvegpu apply` for the host first",
                ));
            }
        }
    }

    // The VM: by id, else by name on this node, else a new one.
    let by_id = spec
        .vmid
        .and_then(|id| facts.vms.iter().find(|v| v.vmid == id));
    let by_name: Vec<&ClusterVm> = facts
        .vms
        .iter()
        .filter(|v| v.name == spec.name && v.node == pve_node && !v.template)
        .collect();
    let target: Option<&ClusterVm> = match (spec.vmid, by_id) {
        (Some(id), Some(v)) => {
            if v.node != pve_node {
                refusals.push(refuse(
                    format!("VM {id} exists on node {}, not on {pve_node}", v.node),
                    "choose a free vmid in the inventory, or migrate the VM to this node first",
                ));
                None
            } else if v.name != spec.name && !spec.adopt {
                refusals.push(refuse(
                    format!("VM id {id} is taken by another VM, `{}`", v.name),
                    "choose a free vmid in the inventory (or leave it out to take the next free one); set `adopt = true` only if that VM is the one to use",
                ));
                None
            } else {
                Some(v)
            }
        }
        (Some(_), None) => None,
        (None, _) => match by_name.as_slice() {
            [] => None,
            [one] => Some(*one),
            many => {
                refusals.push(refuse(
                    format!(
                        "several VMs on {pve_node} are named `{}`: {}",
                        spec.name,
                        many.iter()
                            .map(|v| v.vmid.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    "set `vmid` in the node's [vm] table",
                ));
                None
            }
        },
    };
    if spec.adopt && target.is_none() && refusals.is_empty() {
        refusals.push(refuse(
            format!(
                "`adopt = true` but no VM {} exists on {pve_node}",
                spec.vmid
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| format!("named `{}`", spec.name))
            ),
            "remove `adopt` to let pvegpu create the VM, or fix vmid/name",
        ));
    }
    let vmid = target.map(|v| v.vmid).or(spec.vmid).or(facts.next_vmid);
    let exists = target.is_some();
    let running = target.is_some_and(|v| v.running);
    let current = facts
        .vm
        .as_ref()
        .filter(|c| Some(c.vmid) == target.map(|t| t.vmid));
    if exists && current.is_none() {
        refusals.push(refuse(
            format!(
                "VM {} exists but its configuration could not be read",
                vmid.unwrap_or(0)
            ),
            "check that the credentials have VM.Audit on /vms",
        ));
    }
    if let Some(l) = current.and_then(|c| c.lock.as_ref()) {
        refusals.push(refuse(
            format!("VM {} is locked ({l})", vmid.unwrap_or(0)),
            "wait for the backup, migration or creation to finish, or clear a stale lock with `qm unlock`",
        ));
    }
    if spec.vmid.is_none() && !exists {
        notes.push(format!(
            "no vmid in the inventory: the VM takes the next free id{} at creation; write it into the [vm] table to pin it",
            vmid.map(|v| format!(" ({v})")).unwrap_or_default()
        ));
    }

    // No card another VM holds (the VM at our id counts when it is not ours).
    let mut others = facts.other_hostpci.clone();
    if let Some(c) = &facts.vm
        && Some(c.vmid) != target.map(|t| t.vmid)
    {
        let name = c.config.get("name").cloned().unwrap_or_default();
        for (k, v) in c.config.iter().filter(|(k, _)| k.starts_with("hostpci")) {
            others.push((c.vmid, name.clone(), k.clone(), v.clone()));
        }
    }
    for d in &wanted {
        for (ovmid, oname, key, value) in &others {
            if Some(*ovmid) == target.map(|t| t.vmid) {
                continue;
            }
            let addrs = super::state::hostpci_addresses(value, &pve_node, &facts.mappings);
            if addrs.iter().any(|a| overlaps(a, &d.slot)) {
                refusals.push(refuse(
                    format!("{} ({}) is already given to VM {ovmid} `{oname}` ({key}: {value})", d.slot, d.name),
                    "remove it from that VM first (`qm set ID --delete hostpciN`), or give this VM other cards",
                ));
            }
        }
    }

    // Mappings for the token path.
    let mut steps = Vec::new();
    let mut entries: Vec<String> = Vec::new();
    for d in &wanted {
        let pcie = if spec.firmware == Firmware::Ovmf {
            ",pcie=1"
        } else {
            ""
        };
        match method {
            DeviceMethod::Host => entries.push(format!("{}{pcie}", d.slot)),
            DeviceMethod::Mapping => {
                let want = mapping_entry(&pve_node, d);
                let found = facts.mappings.iter().find(|m| {
                    m.entry_for(&pve_node)
                        .and_then(|e| e.get("path").cloned())
                        .is_some_and(|p| p.split(';').any(|x| overlaps(x, &d.slot)))
                });
                let own = mapping_id(&d.slot);
                let id = match found {
                    None => {
                        if facts.mappings.iter().any(|m| m.id == own) {
                            // Our id exists but has no entry for this node: add ours.
                            let m = facts.mappings.iter().find(|m| m.id == own).unwrap();
                            let mut map = m.map.clone();
                            map.push(want.clone());
                            steps.push(VmStep::UpdateMapping {
                                id: own.clone(),
                                map,
                                from: String::new(),
                                digest: m.digest.clone(),
                            });
                        } else {
                            steps.push(VmStep::CreateMapping {
                                id: own.clone(),
                                map: want.clone(),
                            });
                        }
                        own
                    }
                    Some(m) => {
                        let have = m.entry_for(&pve_node).unwrap_or_default();
                        let w = property_string(&want, None);
                        let differs: Vec<String> = ["path", "id", "iommugroup", "subsystem-id"]
                            .iter()
                            .filter(|k| {
                                w.get(**k) != have.get(**k)
                                    && (w.contains_key(**k) || **k == "path")
                            })
                            .map(|k| {
                                format!(
                                    "{k} {} -> {}",
                                    have.get(*k).map(String::as_str).unwrap_or("(none)"),
                                    w.get(*k).map(String::as_str).unwrap_or("(none)")
                                )
                            })
                            .collect();
                        if !differs.is_empty() {
                            if m.id == own {
                                let map: Vec<String> = m
                                    .map
                                    .iter()
                                    .map(|e| {
                                        if property_string(e, None).get("node") == Some(&pve_node) {
                                            want.clone()
                                        } else {
                                            e.clone()
                                        }
                                    })
                                    .collect();
                                let from = m
                                    .map
                                    .iter()
                                    .find(|e| {
                                        property_string(e, None).get("node") == Some(&pve_node)
                                    })
                                    .cloned()
                                    .unwrap_or_default();
                                steps.push(VmStep::UpdateMapping {
                                    id: own.clone(),
                                    map,
                                    from,
                                    digest: m.digest.clone(),
                                });
                            } else {
                                refusals.push(refuse(
                                    format!("the PCI mapping `{}` for {} disagrees with the verified host: {}", m.id, d.slot, differs.join(", ")),
                                    "the hardware may have changed: correct the mapping under Datacenter > Resource Mappings, or delete it and let pvegpu create its own",
                                ));
                            }
                        }
                        m.id.clone()
                    }
                };
                entries.push(format!("mapping={id}{pcie}"));
            }
        }
    }

    // hostpci slots: keep an entry already naming a card where it is, fill free slots.
    let mut hostpci_set: BTreeMap<String, String> = BTreeMap::new();
    let mut hostpci_del: Vec<String> = Vec::new();
    let cur_hostpci: BTreeMap<String, String> = current
        .map(|c| {
            c.config
                .iter()
                .filter(|(k, _)| k.starts_with("hostpci"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut used: BTreeSet<String> = cur_hostpci.keys().cloned().collect();
    let mut placed: BTreeMap<String, String> = BTreeMap::new();
    for (d, e) in wanted.iter().zip(&entries) {
        let at = cur_hostpci.iter().find(|(_, v)| {
            super::state::hostpci_addresses(v, &pve_node, &facts.mappings)
                .iter()
                .any(|a| overlaps(a, &d.slot))
                || normalised("hostpci0", v) == normalised("hostpci0", e)
        });
        match at {
            Some((k, _)) if !placed.contains_key(k) => {
                placed.insert(k.clone(), e.clone());
            }
            _ => {
                let k = (0..16)
                    .map(|n| format!("hostpci{n}"))
                    .find(|k| !used.contains(k) && !placed.contains_key(k));
                match k {
                    Some(k) => {
                        used.insert(k.clone());
                        placed.insert(k, e.clone());
                    }
                    None => refusals.push(refuse(
                        "the VM has no free hostpci slot (16 used)".into(),
                        "remove unused hostpci entries",
                    )),
                }
            }
        }
    }
    // A second entry naming one of the cards would fail the start ("assigned more than once").
    for (k, v) in &cur_hostpci {
        if placed.contains_key(k) {
            continue;
        }
        let addrs = super::state::hostpci_addresses(v, &pve_node, &facts.mappings);
        if wanted
            .iter()
            .any(|d| addrs.iter().any(|a| overlaps(a, &d.slot)))
        {
            hostpci_del.push(k.clone());
        }
    }
    for (k, v) in &placed {
        hostpci_set.insert(k.clone(), v.clone());
    }
    let devices: Vec<String> = placed.iter().map(|(k, v)| format!("{k}: {v}")).collect();

    let storage = &spec.disk.storage;
    match (current, vmid) {
        (None, None) if !exists => refusals.push(refuse(
            "no VM id: /cluster/nextid did not answer".into(),
            "set `vmid` in the node's [vm] table",
        )),
        (None, Some(id)) if !exists => {
            if let Some(img) = &spec.disk.image
                && let Some(vols) = &facts.image_volumes
                && !vols.iter().any(|v| v == img)
            {
                refusals.push(refuse(
                    format!("the cloud image {img} is not on the node"),
                    "download it first, e.g. Datacenter > Storage > (storage) > Import > Download from URL with https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2, and name its volume id in `disk.image`",
                ));
            }
            let mut params: Vec<(String, String)> = managed_keys(spec, &[], i.ssh_key);
            params.extend(hostpci_set.iter().map(|(k, v)| (k.clone(), v.clone())));
            params.push((
                "scsi0".into(),
                match &spec.disk.image {
                    Some(img) => format!("{storage}:0,import-from={img},iothread=1,discard=on"),
                    None => format!("{storage}:{},iothread=1,discard=on", spec.disk.size_gb),
                },
            ));
            if spec.firmware == Firmware::Ovmf {
                params.push((
                    "efidisk0".into(),
                    format!(
                        "{storage}:1,efitype=4m,pre-enrolled-keys={}",
                        u8::from(spec.secure_boot)
                    ),
                ));
            }
            if spec.cloud_init.is_some() {
                params.push(("ide2".into(), format!("{storage}:cloudinit")));
            }
            steps.push(VmStep::CreateVm { vmid: id, params });
            if spec.disk.image.is_some() {
                steps.push(VmStep::ResizeDisk {
                    disk: "scsi0".into(),
                    from: None,
                    to: format!("{}G", spec.disk.size_gb),
                });
            }
            steps.push(VmStep::Start);
        }
        (None, _) => {}
        (Some(cur), _) => {
            let mut changes = Vec::new();
            let want = managed_keys(spec, &[], i.ssh_key);
            let mut want_all = want.clone();
            want_all.extend(hostpci_set.iter().map(|(k, v)| (k.clone(), v.clone())));
            for (k, v) in &want_all {
                let have = cur.config.get(k);
                let ok = if k == "bios" || k == "machine" {
                    same(
                        k,
                        v,
                        Some(have.map(String::as_str).unwrap_or(if k == "bios" {
                            "seabios"
                        } else {
                            "pc"
                        })),
                    )
                } else {
                    same(k, v, have.map(String::as_str))
                };
                if ok {
                    continue;
                }
                if k == "bios" {
                    refusals.push(refuse(
                        format!("VM {} boots with {}, the inventory asks for {v}: its installed system would not boot after the switch", cur.vmid, have.map(String::as_str).unwrap_or("seabios")),
                        "set `firmware` in the [vm] table to match the VM, or create a new VM",
                    ));
                    continue;
                }
                let to = if k.starts_with("net") {
                    // Keep the MAC address the guest's network config may depend on.
                    let mac = have.and_then(|h| {
                        normalised(k, h)
                            .into_iter()
                            .find(|(m, _)| {
                                ["virtio", "e1000", "e1000e", "rtl8139", "vmxnet3"]
                                    .contains(&m.as_str())
                            })
                            .map(|(_, mac)| mac)
                    });
                    match mac {
                        Some(mac) => {
                            let mut parts: Vec<String> = v.split(',').map(str::to_string).collect();
                            parts[0] = format!("{}={mac}", parts[0]);
                            parts.join(",")
                        }
                        None => v.clone(),
                    }
                } else {
                    v.clone()
                };
                changes.push(KeyChange {
                    key: k.clone(),
                    from: have.cloned(),
                    to: Some(to),
                    disruptive: disruptive(k),
                });
            }
            // Bios unset in the inventory but ovmf on the VM: the same refusal the other way.
            if spec.firmware == Firmware::Seabios
                && !spec.adopt
                && cur.config.get("bios").is_some_and(|b| b == "ovmf")
            {
                refusals.push(refuse(
                    format!("VM {} boots with ovmf, the inventory asks for seabios: its installed system would not boot after the switch", cur.vmid),
                    "set `firmware = \"ovmf\"` in the [vm] table to match the VM, or create a new VM",
                ));
            }
            for k in &hostpci_del {
                changes.push(KeyChange {
                    key: k.clone(),
                    from: cur.config.get(k).cloned(),
                    to: None,
                    disruptive: true,
                });
            }
            if !spec.adopt {
                if spec.firmware == Firmware::Ovmf && !cur.config.contains_key("efidisk0") {
                    changes.push(KeyChange {
                        key: "efidisk0".into(),
                        from: None,
                        to: Some(format!(
                            "{storage}:1,efitype=4m,pre-enrolled-keys={}",
                            u8::from(spec.secure_boot)
                        )),
                        disruptive: true,
                    });
                }
                if spec.cloud_init.is_some()
                    && !cur.config.values().any(|v| {
                        v.contains(":cloudinit") || v.contains("vm-") && v.contains("-cloudinit")
                    })
                {
                    let free = ["ide2", "ide0", "ide1", "ide3"]
                        .into_iter()
                        .find(|k| !cur.config.contains_key(*k))
                        .unwrap_or("ide2");
                    changes.push(KeyChange {
                        key: free.into(),
                        from: None,
                        to: Some(format!("{storage}:cloudinit")),
                        disruptive: false,
                    });
                }
                match cur.config.get("scsi0") {
                    None => notes.push(format!(
                        "VM {} has no scsi0 disk; pvegpu leaves its disks as they are",
                        cur.vmid
                    )),
                    Some(d) => {
                        let p = property_string(d, Some("file"));
                        let on = p
                            .get("file")
                            .and_then(|f| f.split(':').next())
                            .unwrap_or("");
                        if on != storage {
                            notes.push(format!("VM {}'s scsi0 is on storage `{on}`, the inventory says `{storage}`; pvegpu does not move disks", cur.vmid));
                        }
                        let have = p.get("size").and_then(|s| size_gib(s));
                        if have.is_some_and(|h| h + 0.01 < spec.disk.size_gb as f64) {
                            steps.push(VmStep::ResizeDisk {
                                disk: "scsi0".into(),
                                from: p.get("size").cloned(),
                                to: format!("{}G", spec.disk.size_gb),
                            });
                        } else if have.is_some_and(|h| h > spec.disk.size_gb as f64 + 0.01) {
                            notes.push(format!("VM {}'s scsi0 is larger ({}) than the inventory's {} GB; disks are never shrunk", cur.vmid, p["size"], spec.disk.size_gb));
                        }
                    }
                }
            }
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
                notes.push("cloud-init settings change for the next boot of the guest; a running guest keeps its current ones".into());
            }
            if !changes.is_empty() {
                // After the mapping steps (the config uses them), before any resize.
                let after_maps = steps
                    .iter()
                    .take_while(|s| {
                        matches!(
                            s,
                            VmStep::CreateMapping { .. } | VmStep::UpdateMapping { .. }
                        )
                    })
                    .count();
                steps.insert(
                    after_maps,
                    VmStep::SetConfig {
                        changes,
                        digest: cur.digest.clone(),
                    },
                );
            }
            if !restart_keys.is_empty() {
                steps.push(VmStep::Restart { keys: restart_keys });
            } else if !running {
                steps.push(VmStep::Start);
            }
        }
    }
    VmPlan {
        node: i.node.to_string(),
        pve_node,
        name: spec.name.clone(),
        vmid,
        exists,
        running,
        method,
        method_reason: method_reason.to_string(),
        devices,
        // A refused plan carries no steps.
        steps: if refusals.is_empty() {
            steps
        } else {
            Vec::new()
        },
        refusals,
        notes,
        waits_for_host,
    }
}

//! What the host itself depends on: the controllers behind the root filesystem and the NICs
//! that carry management traffic (the SSH connection and the default route).

use super::sysfs_pci::addresses_in_path;
use crate::pci::PciAddress;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RootDisks {
    pub source: String,
    pub fstype: String,
    /// PCI functions of the controllers that hold the root filesystem's disks.
    pub controllers: Vec<PciAddress>,
}

/// Filesystems on no local disk: a root on one has no controller to find.
const DISKLESS: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "9p",
    "virtiofs",
    "ceph",
    "glusterfs",
    "tmpfs",
    "ramfs",
];

impl RootDisks {
    /// Why no controller is known to hold the root filesystem although one should be: the
    /// walk found none under a root on a disk (`lsblk` or `zpool` failed, or a layout the walk
    /// does not follow). Then no storage controller may be taken for one the host does not
    /// need.
    pub fn unresolved(&self) -> Option<String> {
        if !self.controllers.is_empty() || DISKLESS.contains(&self.fstype.as_str()) {
            return None;
        }
        Some(format!(
            "no controller was found under the root filesystem (source {}, type {})",
            or_unknown(&self.source),
            or_unknown(&self.fstype)
        ))
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "unknown" } else { s }
}

pub fn parse_root_disks(text: &str) -> RootDisks {
    let mut out = RootDisks::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("root ") {
            for w in rest.split_whitespace() {
                match w.split_once('=') {
                    Some(("source", v)) => out.source = v.to_string(),
                    Some(("fstype", v)) => out.fstype = v.to_string(),
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("disk ") {
            let path = rest.split_whitespace().nth(1).unwrap_or("");
            if let Some(ctrl) = addresses_in_path(path).pop()
                && !out.controllers.contains(&ctrl)
            {
                out.controllers.push(ctrl);
            }
        }
    }
    out
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Management {
    /// Interfaces that carry the SSH session's address or the default route.
    pub interfaces: Vec<String>,
    /// PCI functions of the physical NICs under those interfaces (through bridges and bonds).
    pub nics: Vec<PciAddress>,
}

impl Management {
    /// Why no NIC is known to carry the management traffic: none was found under the
    /// interfaces of the SSH session and the default route.
    pub fn unresolved(&self) -> Option<String> {
        self.nics
            .is_empty()
            .then(|| match self.interfaces.as_slice() {
                [] => "neither the SSH session's address nor a default route names an interface"
                    .to_string(),
                names => format!("no PCI NIC was found under {}", names.join(", ")),
            })
    }
}

pub fn parse_net(text: &str) -> Management {
    let mut ssh_local_ip = None;
    let mut addr_iface: Vec<(String, String)> = Vec::new();
    let mut default_dev = BTreeSet::new();
    let mut device: BTreeMap<String, Option<PciAddress>> = BTreeMap::new();
    let mut lower: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("ssh_connection=") {
            // client_ip client_port server_ip server_port
            ssh_local_ip = v.split_whitespace().nth(2).map(str::to_string);
        } else if let Some(rest) = line.strip_prefix("addr ") {
            // "4: vmbr0    inet 10.0.0.45/8 brd ... scope global vmbr0\ ..."
            let words: Vec<&str> = rest.split_whitespace().collect();
            if let (Some(iface), Some(pos)) = (
                words.get(1),
                words.iter().position(|w| *w == "inet" || *w == "inet6"),
            ) && let Some(ip) = words.get(pos + 1)
            {
                let ip = ip.split('/').next().unwrap_or(ip);
                addr_iface.push((ip.to_string(), iface.trim_end_matches(':').to_string()));
            }
        } else if let Some(rest) = line.strip_prefix("route ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            if let Some(pos) = words.iter().position(|w| *w == "dev")
                && let Some(dev) = words.get(pos + 1)
            {
                default_dev.insert(dev.to_string());
            }
        } else if let Some(rest) = line.strip_prefix("iface ") {
            let mut words = rest.split_whitespace();
            let Some(name) = words.next() else { continue };
            for w in words {
                match w.split_once('=') {
                    Some(("device", p)) => {
                        device.insert(name.to_string(), addresses_in_path(p).pop());
                    }
                    Some(("lower", l)) => {
                        lower.insert(
                            name.to_string(),
                            l.split(',')
                                .filter(|x| !x.is_empty())
                                .map(str::to_string)
                                .collect(),
                        );
                    }
                    _ => {}
                }
            }
        }
    }
    let mut interfaces: BTreeSet<String> = default_dev;
    if let Some(ip) = ssh_local_ip {
        // IPv6 SSH_CONNECTION addresses may carry a zone; compare the address only
        let ip = ip.split('%').next().unwrap_or(&ip).to_string();
        interfaces.extend(
            addr_iface
                .iter()
                .filter(|(a, _)| *a == ip)
                .map(|(_, i)| i.clone()),
        );
    }
    let mut nics = Vec::new();
    let mut stack: Vec<String> = interfaces.iter().cloned().collect();
    let mut seen = BTreeSet::new();
    while let Some(i) = stack.pop() {
        if !seen.insert(i.clone()) {
            continue;
        }
        if let Some(Some(addr)) = device.get(&i)
            && !nics.contains(addr)
        {
            nics.push(*addr);
        }
        stack.extend(lower.get(&i).cloned().unwrap_or_default());
    }
    nics.sort();
    Management {
        interfaces: interfaces.into_iter().collect(),
        nics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zfs_and_lvm_root_controllers() {
        let r = parse_root_disks(
            "root source=rpool/ROOT/pve-1 fstype=zfs\ndisk nvme0n1 /sys/devices/pci0000:00/0000:00:01.1/0000:01:00.0/nvme/nvme0\ndisk nvme1n1 /sys/devices/pci0000:00/0000:00:01.2/0000:02:00.0/nvme/nvme1\n",
        );
        assert_eq!(r.fstype, "zfs");
        assert_eq!(
            r.controllers
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>(),
            vec!["0000:01:00.0", "0000:02:00.0"]
        );
        let v = parse_root_disks(
            "root source=/dev/mapper/pve-root fstype=ext4\ndisk sda /sys/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0\n",
        );
        assert_eq!(v.controllers[0].to_string(), "0000:00:1f.2");
    }

    #[test]
    fn a_root_on_a_disk_without_a_controller_is_unresolved_and_one_on_nfs_is_not() {
        let lost = parse_root_disks("root source=/dev/mapper/pve-root fstype=ext4\n");
        assert_eq!(
            lost.unresolved().as_deref(),
            Some(
                "no controller was found under the root filesystem (source /dev/mapper/pve-root, type ext4)"
            )
        );
        let nfs = parse_root_disks("root source=10.0.0.9:/export/pve fstype=nfs4\n");
        assert_eq!(nfs.unresolved(), None);
        let found = parse_root_disks(
            "root source=/dev/sda2 fstype=ext4\ndisk sda /sys/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0\n",
        );
        assert_eq!(found.unresolved(), None);
    }

    #[test]
    fn management_without_a_nic_is_unresolved() {
        let none = parse_net("ssh_connection=\niface lo device= lower=\n");
        assert_eq!(
            none.unresolved().as_deref(),
            Some("neither the SSH session's address nor a default route names an interface")
        );
        let virtual_only =
            parse_net("route default dev wg0 scope link\niface wg0 device= lower=\n");
        assert_eq!(
            virtual_only.unresolved().as_deref(),
            Some("no PCI NIC was found under wg0")
        );
    }

    #[test]
    fn management_nic_through_a_bridge() {
        let text = "ssh_connection=10.0.0.2 51234 10.0.0.45 22\naddr 5: vmbr0    inet 10.0.0.45/8 scope global vmbr0\\       valid_lft forever\nroute default via 10.0.0.1 dev vmbr0 proto kernel onlink\niface eno1 device=/sys/devices/pci0000:00/0000:00:1c.0/0000:04:00.0 lower=\niface eno2 device=/sys/devices/pci0000:00/0000:00:1c.0/0000:04:00.1 lower=\niface vmbr0 device= lower=eno1\niface lo device= lower=\n";
        let m = parse_net(text);
        assert_eq!(m.interfaces, vec!["vmbr0"]);
        assert_eq!(
            m.nics.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            vec!["0000:04:00.0"]
        );
    }
}

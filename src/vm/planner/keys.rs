//! The config keys pvegpu manages, and how a value compares with what PVE stores.

use super::super::state::property_string;
use crate::inventory::vm::{Firmware, VmSpec};
use std::collections::BTreeMap;

/// Whether `key` is `prefix` followed by an index (`net0`, `ide2`, `hostpci1`).
pub fn numbered(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// The NIC models of a `net` key; the value after the model is the MAC address.
pub(super) const NIC_MODELS: [&str; 5] = ["virtio", "e1000", "e1000e", "rtl8139", "vmxnet3"];

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

pub(super) fn normalised(key: &str, v: &str) -> BTreeMap<String, String> {
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

/// Whether a config value is what the inventory wants, as Proxmox may rewrite it (MAC kept,
/// defaults filled in, ssh keys encoded).
pub fn same(key: &str, want: &str, have: Option<&str>) -> bool {
    let Some(have) = have else { return false };
    if key.starts_with("net") {
        // The MAC PVE generated stays; model, bridge and VLAN are what the inventory says.
        let (w, h) = (normalised(key, want), normalised(key, have));
        let model = |m: &BTreeMap<String, String>| {
            m.keys()
                .find(|k| NIC_MODELS.contains(&k.as_str()))
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

//! What the Proxmox VE API says about a node and its VMs, parsed from the replies by pure
//! functions (the gathering is in [`super::gather`]). Values come back as Perl scalars, so
//! numbers may be strings and the other way round: everything is read as text.

use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Storage {
    pub name: String,
    /// `images`, `iso`, `import`, ...
    pub content: Vec<String>,
    pub active: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Mapping {
    pub id: String,
    /// The raw `map` property strings (`node=..,path=..,id=..`).
    pub map: Vec<String>,
    pub digest: Option<String>,
}

impl Mapping {
    /// The entry for one node, as key=value pairs.
    pub fn entry_for(&self, node: &str) -> Option<BTreeMap<String, String>> {
        self.map
            .iter()
            .map(|m| property_string(m, None))
            .find(|e| e.get("node").map(String::as_str) == Some(node))
    }
}

/// A VM anywhere in the cluster (from `/cluster/resources?type=vm`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClusterVm {
    pub vmid: u32,
    pub node: String,
    pub name: String,
    pub running: bool,
    pub template: bool,
}

/// The configuration of one VM, with pending changes applied, and its digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VmConfig {
    pub vmid: u32,
    pub config: BTreeMap<String, String>,
    pub digest: String,
    pub lock: Option<String>,
    /// Keys whose new value waits for a stop and start (from `/pending`).
    pub pending: Vec<String>,
}

/// Everything the VM planner needs from the API.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApiFacts {
    pub version: String,
    /// The Proxmox node the VM lives on, and whether the cluster knows it.
    pub node: String,
    pub nodes: Vec<String>,
    pub storages: Vec<Storage>,
    /// Volume ids on the image's storage (only gathered when a cloud image is asked for).
    pub image_volumes: Option<Vec<String>>,
    pub mappings: Vec<Mapping>,
    pub vms: Vec<ClusterVm>,
    /// The target VM's config, when it exists on this node.
    pub vm: Option<VmConfig>,
    /// hostpci entries of the other VMs on this node: (vmid, name, key, value).
    pub other_hostpci: Vec<(u32, String, String, String)>,
    pub next_vmid: Option<u32>,
    /// What the credentials hold (`GET /access/permissions`); `None` when not read.
    pub permissions: Option<Permissions>,
}

/// The caller's privileges per path, with whether each propagates to the paths below
/// (`GET /access/permissions`: `{path: {privilege: 1|0}}`). Proxmox lists its default
/// paths and every path an ACL names, each compiled with what it inherits.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Permissions(BTreeMap<String, BTreeMap<String, bool>>);

impl Permissions {
    pub fn parse(v: &Value) -> Permissions {
        let paths = v.as_object().into_iter().flatten().map(|(path, privs)| {
            let privs = privs
                .as_object()
                .into_iter()
                .flatten()
                .map(|(p, prop)| (p.clone(), text(prop).is_some_and(|t| t != "0")))
                .collect();
            (path.clone(), privs)
        });
        Permissions(paths.collect())
    }

    /// Whether `privilege` holds on `path`: listed there, or on the nearest listed path above
    /// it with propagation.
    pub fn holds(&self, path: &str, privilege: &str) -> bool {
        if let Some(privs) = self.0.get(path) {
            return privs.contains_key(privilege);
        }
        let mut up = path;
        while let Some((parent, _)) = up.rsplit_once('/') {
            let parent = if parent.is_empty() { "/" } else { parent };
            if let Some(privs) = self.0.get(parent) {
                return privs.get(privilege).copied().unwrap_or(false);
            }
            if parent == "/" {
                break;
            }
            up = parent;
        }
        false
    }
}

pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.into()),
        _ => None,
    }
}

fn field(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(text)
}

fn truthy(v: &Value, k: &str) -> bool {
    field(v, k).is_some_and(|s| s == "1")
}

/// `GET /nodes`.
pub fn parse_nodes(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|n| field(n, "node")).collect())
        .unwrap_or_default()
}

/// `GET /nodes/{node}/storage`.
pub fn parse_storages(v: &Value) -> Vec<Storage> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    Some(Storage {
                        name: field(s, "storage")?,
                        content: field(s, "content")
                            .unwrap_or_default()
                            .split(',')
                            .map(|c| c.trim().to_string())
                            .filter(|c| !c.is_empty())
                            .collect(),
                        active: s.get("active").is_none() || truthy(s, "active"),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /nodes/{node}/storage/{storage}/content`.
pub fn parse_volumes(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|c| field(c, "volid")).collect())
        .unwrap_or_default()
}

/// `GET /cluster/mapping/pci`.
pub fn parse_mappings(v: &Value) -> Vec<Mapping> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| {
                    Some(Mapping {
                        id: field(m, "id")?,
                        map: parse_map(m),
                        digest: field(m, "digest"),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `map` entries of one mapping (`GET /cluster/mapping/pci/{id}`, or one of the list):
/// an array, or one string where Perl gave a scalar.
pub fn parse_map(m: &Value) -> Vec<String> {
    match m.get("map") {
        Some(Value::Array(items)) => items.iter().filter_map(text).collect(),
        Some(other) => text(other).into_iter().collect(),
        None => Vec::new(),
    }
}

/// `GET /cluster/resources?type=vm` (qemu only; containers cannot hold hostpci).
pub fn parse_resources(v: &Value) -> Vec<ClusterVm> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter(|r| field(r, "type").as_deref() == Some("qemu"))
                .filter_map(|r| {
                    Some(ClusterVm {
                        vmid: field(r, "vmid")?.parse().ok()?,
                        node: field(r, "node").unwrap_or_default(),
                        name: field(r, "name").unwrap_or_default(),
                        running: field(r, "status").as_deref() == Some("running"),
                        template: truthy(r, "template"),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `GET .../config` and `GET .../pending`.
pub fn parse_config(vmid: u32, config: &Value, pending: Option<&Value>) -> VmConfig {
    let mut out = VmConfig {
        vmid,
        ..Default::default()
    };
    if let Some(obj) = config.as_object() {
        for (k, v) in obj {
            let Some(t) = text(v) else { continue };
            match k.as_str() {
                "digest" => out.digest = t,
                "lock" => out.lock = Some(t),
                _ => {
                    out.config.insert(k.clone(), t);
                }
            }
        }
    }
    if let Some(items) = pending.and_then(Value::as_array) {
        out.pending = items
            .iter()
            .filter(|i| i.get("pending").is_some() || truthy(i, "delete"))
            .filter_map(|i| field(i, "key"))
            .collect();
    }
    out
}

/// A property string (`virtio=BC:..,bridge=vmbr0`) as key=value pairs; a bare first value
/// goes under `default_key`.
pub fn property_string(s: &str, default_key: Option<&str>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (i, part) in s.split(',').enumerate() {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        match part.split_once('=') {
            Some((k, v)) => {
                out.insert(k.trim().to_string(), v.trim().to_string());
            }
            None if i == 0 && default_key.is_some() => {
                if let Some(d) = default_key {
                    out.insert(d.to_string(), part.to_string());
                }
            }
            // a bare word is kept as a key without a value rather than dropped, so a value
            // that differs only by it never compares equal (Proxmox itself writes `x-vga=1`)
            None => {
                out.insert(part.to_string(), String::new());
            }
        }
    }
    out
}

/// The PCI addresses a hostpci value names, with domain: `02:00` -> `0000:02:00`;
/// `mapping=` entries are resolved through the mappings for `node`.
pub fn hostpci_addresses(value: &str, node: &str, mappings: &[Mapping]) -> Vec<String> {
    let p = property_string(value, Some("host"));
    let paths: Vec<String> = if let Some(h) = p.get("host") {
        h.split(';').map(str::to_string).collect()
    } else if let Some(m) = p.get("mapping") {
        mappings
            .iter()
            .find(|x| &x.id == m)
            .and_then(|x| x.entry_for(node))
            .and_then(|e| e.get("path").cloned())
            .map(|p| p.split(';').map(str::to_string).collect())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    paths
        .into_iter()
        .map(|a| {
            let a = a.trim().to_ascii_lowercase();
            if a.matches(':').count() == 1 {
                format!("0000:{a}")
            } else {
                a
            }
        })
        .collect()
}

/// Whether address `a` (`0000:02:00` or `0000:02:00.1`) and `b` name a common function.
pub fn overlaps(a: &str, b: &str) -> bool {
    let slot = |s: &str| s.split('.').next().unwrap_or(s).to_string();
    let (sa, sb) = (slot(a), slot(b));
    if sa != sb {
        return false;
    }
    !(a.contains('.') && b.contains('.') && a != b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_as_strings_and_strings_as_numbers() {
        let c = parse_config(
            201,
            &json!({"memory": "30720", "cores": 10, "onboot": 1, "digest": "ab", "hostpci0": "02:00"}),
            Some(
                &json!([{"key": "hostpci0", "value": "02:00", "pending": "0000:83:00"}, {"key": "cores", "value": 10}]),
            ),
        );
        assert_eq!(c.config["memory"], "30720");
        assert_eq!(c.config["cores"], "10");
        assert_eq!(c.digest, "ab");
        assert_eq!(c.pending, vec!["hostpci0"]);
    }

    #[test]
    fn hostpci_forms() {
        let maps = vec![Mapping {
            id: "gpu0".into(),
            map: vec!["node=pve,path=0000:83:00,id=10de:1b80".into()],
            digest: None,
        }];
        assert_eq!(
            hostpci_addresses("02:00,pcie=1", "pve", &maps),
            vec!["0000:02:00"]
        );
        assert_eq!(
            hostpci_addresses("host=0000:02:00.0;0000:02:00.1", "pve", &maps),
            vec!["0000:02:00.0", "0000:02:00.1"]
        );
        assert_eq!(
            hostpci_addresses("mapping=gpu0,pcie=1", "pve", &maps),
            vec!["0000:83:00"]
        );
        assert!(hostpci_addresses("mapping=gpu0", "other", &maps).is_empty());
        assert!(overlaps("0000:02:00", "0000:02:00.1"));
        assert!(!overlaps("0000:02:00.0", "0000:02:00.1"));
        assert!(!overlaps("0000:02:00", "0000:83:00"));
    }

    #[test]
    fn resources_keep_qemu_only() {
        let v = json!([
            {"type": "qemu", "vmid": 201, "node": "pve", "name": "triton-gpu", "status": "running"},
            {"type": "lxc", "vmid": 105, "node": "pve", "name": "ct", "status": "running"},
            {"type": "qemu", "vmid": "300", "node": "pve2", "name": "x", "status": "stopped", "template": 1}
        ]);
        let r = parse_resources(&v);
        assert_eq!(r.len(), 2);
        assert!(r[0].running && !r[1].running && r[1].template);
        assert_eq!(r[1].vmid, 300);
    }
}

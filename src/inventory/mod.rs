//! The inventory: which nodes exist, how to reach them, and what each should pass through.
//!
//! TOML, parsed into typed structs that deny unknown fields. TOML rather than YAML because
//! YAML 1.1 reads a PCI address such as `02:00` as the sexagesimal number 120.

pub mod guest;
mod layers;
pub mod select;
pub mod vm;

use crate::pci::{PciAddress, PciId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot read the inventory {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: crate::core::input::InputError,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Semantic { path: PathBuf, message: String },
    #[error("no node or group `{term}` in the inventory {path} (it has: {known})")]
    NoMatch {
        term: String,
        path: PathBuf,
        known: String,
    },
    #[error("`{pattern}` selects no node of the inventory {path}")]
    EmptySelection { pattern: String, path: PathBuf },
    #[error("node `{name}` is not in the inventory {path} (it has: {known})")]
    UnknownNode {
        name: String,
        path: PathBuf,
        known: String,
    },
}

impl crate::core::error::Hint for InventoryError {
    fn hint(&self) -> Option<String> {
        use crate::core::input::InputError;
        match self {
            InventoryError::Read {
                source: InputError::Io { error, .. },
                ..
            } if error.kind() == std::io::ErrorKind::NotFound => Some(
                "name the inventory with `-i FILE` or $PVEGPU_INVENTORY (the default is ./pvegpu.toml); to start one, copy inventories/osm45.toml from pvegpu's sources (README, \"Using it on your nodes\")".into(),
            ),
            InventoryError::NoMatch { .. } | InventoryError::EmptySelection { .. } => Some(
                "`--limit` takes node and group names, globs (`pve-*`), `all`, exclusions (`!osm45`) and intersections (`&gpu_nodes`), separated by commas".into(),
            ),
            _ => None,
        }
    }
}

/// The nodes, each with `[defaults]` and its groups' settings merged in (the node's own
/// value wins), and the groups by name with their members.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub nodes: BTreeMap<String, Node>,
    pub groups: BTreeMap<String, Vec<String>>,
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// SSH destination as for ssh(1): `root@osm45.example.org`, or a Host alias from
    /// ~/.ssh/config, whose settings (port, key, jump host) then apply.
    pub ssh: String,
    /// An ssh_config file to use instead of ~/.ssh/config (relative to the inventory).
    #[serde(default)]
    pub ssh_config: Option<PathBuf>,
    #[serde(default)]
    pub host: HostSettings,
    #[serde(default)]
    pub gpus: Vec<GpuEntry>,
    /// How to reach the node's Proxmox VE API (needed for the VM phase).
    #[serde(default)]
    pub api: Option<vm::ApiSettings>,
    /// The VM that receives the GPUs.
    #[serde(default)]
    pub vm: Option<vm::VmSpec>,
}

impl Node {
    /// A node known only from facts handed to pvegpu (`discover --paste`) with no inventory:
    /// no targets, nothing accepted.
    pub fn offline() -> Node {
        Node {
            ssh: String::new(),
            ssh_config: None,
            host: HostSettings::default(),
            gpus: Vec::new(),
            api: None,
            vm: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostSettings {
    /// Add `iommu=pt` (passthrough mode for host devices; faster DMA for the host).
    #[serde(default = "yes")]
    pub iommu_pt: bool,
    /// Which boot loader to configure; `auto` reads it from the node.
    #[serde(default)]
    pub boot_loader: BootLoaderChoice,
    /// Accept a platform without interrupt remapping (`allow_unsafe_interrupts=1`): a guest
    /// could then inject interrupts into the host. Off unless you know the risk.
    #[serde(default)]
    pub allow_unsafe_interrupts: bool,
    /// Risks that would otherwise refuse a device, taken on knowingly (`accept =
    /// ["only_display"]` for single-GPU passthrough). What is unknown cannot be accepted.
    #[serde(default)]
    pub accept: Vec<Risk>,
}

/// A refusal an admin may accept for a node; the plan names each one it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// Groups split by `pcie_acs_override`, which proves no isolation.
    AcsOverride,
    /// The host's only display device goes to the VM.
    OnlyDisplay,
    /// The device the host boots on goes to the VM.
    BootVga,
}

fn yes() -> bool {
    true
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings {
            iommu_pt: true,
            boot_loader: BootLoaderChoice::Auto,
            allow_unsafe_interrupts: false,
            accept: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootLoaderChoice {
    #[default]
    Auto,
    SystemdBoot,
    Grub,
    ProxmoxGrub,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GpuEntry {
    /// `0000:02:00` (the whole card: GPU and its audio function) or `0000:02:00.0`.
    pub address: PciAddress,
    /// The vendor:device id expected at that address; pvegpu refuses when it finds another,
    /// e.g. after cards were moved between slots.
    #[serde(default)]
    pub id: Option<PciId>,
}

impl Inventory {
    pub fn load(path: &Path) -> Result<Self, InventoryError> {
        let text = crate::core::input::read_text(path).map_err(|source| InventoryError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, InventoryError> {
        let layered = layers::read(path, text)?;
        let mut inv = Inventory {
            nodes: layered.nodes,
            groups: layered.groups,
            path: path.to_path_buf(),
        };
        inv.validate(text)?;
        inv.resolve_paths();
        Ok(inv)
    }

    /// Every path the inventory names, resolved once: `~/` is the user's home, a relative path
    /// is relative to the inventory's folder, and the result is absolute, so no later step
    /// resolves a path again (or differently).
    fn resolve_paths(&mut self) {
        let folder = self.path.parent().unwrap_or(Path::new("."));
        let base = std::path::absolute(folder).unwrap_or_else(|_| folder.to_path_buf());
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(path) = p {
                *path = resolved(&base, home.as_deref(), path);
            }
        };
        for node in self.nodes.values_mut() {
            fix(&mut node.ssh_config);
            if let Some(api) = &mut node.api {
                fix(&mut api.ca_file);
                fix(&mut api.token_secret_file);
                fix(&mut api.password_file);
            }
            if let Some(vm) = &mut node.vm {
                if let Some(ci) = &mut vm.cloud_init {
                    fix(&mut ci.ssh_key_file);
                }
                if let Some(guest) = &mut vm.guest {
                    fix(&mut guest.ssh_config);
                }
            }
        }
    }

    fn validate(&self, text: &str) -> Result<(), InventoryError> {
        if self.nodes.is_empty() {
            return Err(InventoryError::Semantic {
                path: self.path.clone(),
                message: "no nodes; add a `[nodes.NAME]` table with `ssh = \"root@host\"`".into(),
            });
        }
        for (name, node) in &self.nodes {
            if node.ssh.trim().is_empty() || node.ssh.contains(char::is_whitespace) {
                return Err(self.at(text, name, &format!("[nodes.{name}]"), format!("node `{name}`: `ssh` must be one destination such as `root@{name}.example.org`")));
            }
            if let Some(vm) = &node.vm
                && let Err((key, message)) = vm.check()
            {
                return Err(self.at(text, name, key, format!("node `{name}`: [vm] {message}")));
            }
            for (i, a) in node.gpus.iter().enumerate() {
                for b in &node.gpus[i + 1..] {
                    if a.address.covers(&b.address)
                        || b.address.covers(&a.address)
                        || a.address == b.address
                    {
                        return Err(self.at(
                            text,
                            name,
                            &b.address.to_string(),
                            format!(
                                "node `{name}`: {} is listed twice ({} already covers it); keep one entry per card",
                                b.address, a.address
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// An error located at the first line that mentions `needle` in node `node`'s tables (with
    /// several nodes, the same key appears under each), else in its groups' tables, else in
    /// `[defaults]`: where the value the node got was written.
    fn at(&self, text: &str, node: &str, needle: &str, message: String) -> InventoryError {
        let short = needle.trim_start_matches("0000:");
        let mentions = |(_, l): &(usize, &str)| l.contains(needle) || l.contains(short);
        let mut found = node_lines(text, node).into_iter().find(mentions);
        for (group, members) in &self.groups {
            if found.is_none() && members.iter().any(|m| m == node) {
                found = table_lines(text, &["groups", group])
                    .into_iter()
                    .find(mentions);
            }
        }
        match found.or_else(|| table_lines(text, &["defaults"]).into_iter().find(mentions)) {
            Some((i, _)) => InventoryError::Invalid {
                path: self.path.clone(),
                line: i + 1,
                column: 1,
                message,
            },
            None => InventoryError::Semantic {
                path: self.path.clone(),
                message,
            },
        }
    }

    pub fn node(&self, name: &str) -> Result<&Node, InventoryError> {
        self.nodes
            .get(name)
            .ok_or_else(|| InventoryError::UnknownNode {
                name: name.to_string(),
                path: self.path.clone(),
                known: self.nodes.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }
}

/// `path` from the inventory: `~/` expanded, then made relative to `base` unless absolute.
fn resolved(base: &Path, home: Option<&Path>, path: &Path) -> PathBuf {
    let expanded = match (path.strip_prefix("~"), home) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.to_path_buf(),
    };
    base.join(expanded)
}

/// The lines (0-based index, text) of node `name`'s tables: from a `[nodes.NAME]`,
/// `[nodes.NAME.vm]` or `[[nodes.NAME.gpus]]` header to the next header of another table.
/// Where no header names the node (dotted keys, inline tables), every line.
fn node_lines<'t>(text: &'t str, name: &str) -> Vec<(usize, &'t str)> {
    let path = ["nodes", name];
    if text.lines().any(|l| header_under(l, &path) == Some(true)) {
        table_lines(text, &path)
    } else {
        text.lines().enumerate().collect()
    }
}

/// The lines of the tables whose header starts with `path` (`["groups", "gpu"]` takes
/// `[groups.gpu]` and `[groups.gpu.host]`), up to the next header of another table.
fn table_lines<'t>(text: &'t str, path: &[&str]) -> Vec<(usize, &'t str)> {
    let mut inside = false;
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            if let Some(ours) = header_under(l, path) {
                inside = ours;
            }
            inside
        })
        .collect()
}

/// For a table header line, whether its dotted name starts with `path`; None for other lines.
fn header_under(line: &str, path: &[&str]) -> Option<bool> {
    let inner = line.trim().strip_prefix('[')?;
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    let inner = inner.split(']').next()?;
    let mut parts = inner.split('.').map(|p| p.trim().trim_matches('"'));
    Some(path.iter().all(|p| parts.next() == Some(p)))
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map(|i| before.len() - i)
        .unwrap_or(before.len() + 1);
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_resolved_once_at_load() {
        let base = Path::new("/etc/pvegpu");
        let home = Some(Path::new("/home/ops"));
        assert_eq!(
            resolved(base, home, Path::new("ssh/config")),
            Path::new("/etc/pvegpu/ssh/config")
        );
        assert_eq!(
            resolved(base, home, Path::new("~/.ssh/id.pub")),
            Path::new("/home/ops/.ssh/id.pub")
        );
        assert_eq!(
            resolved(base, home, Path::new("/srv/ca.pem")),
            Path::new("/srv/ca.pem")
        );
        // `~name` is not the home folder of `name`: only `~/` and `~` are expanded
        assert_eq!(
            resolved(base, home, Path::new("~ops/x")),
            Path::new("/etc/pvegpu/~ops/x")
        );
        let inv = Inventory::parse(
            Path::new("inventories/lab.toml"),
            "[nodes.a]\nssh = \"root@a\"\nssh_config = \"cfg\"\n",
        )
        .unwrap();
        let cfg = inv.nodes["a"].ssh_config.as_ref().unwrap();
        assert!(
            cfg.is_absolute() && cfg.ends_with("inventories/cfg"),
            "{}",
            cfg.display()
        );
    }

    fn parse(text: &str) -> Result<Inventory, InventoryError> {
        Inventory::parse(Path::new("inv.toml"), text)
    }

    #[test]
    fn minimal_node() {
        let inv = parse("[nodes.osm45]\nssh = \"root@osm45\"\n[[nodes.osm45.gpus]]\naddress = \"02:00\"\nid = \"10de:1b80\"\n").unwrap();
        let n = inv.node("osm45").unwrap();
        assert_eq!(n.gpus[0].address.to_string(), "0000:02:00");
        assert!(n.host.iommu_pt);
        assert!(
            inv.node("other")
                .unwrap_err()
                .to_string()
                .contains("it has: osm45")
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        let err = parse("[nodes.osm45]\nssh = \"root@osm45\"\nsssh = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("inv.toml:3:1: unknown field `sssh`"),
            "{err}"
        );
        let err =
            parse("[nodes.osm45]\nssh = \"root@osm45\"\n[[nodes.osm45.gpus]]\naddress = \"2:0\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("inv.toml:4:11:"), "{err}");
        assert!(err.contains("0000:02:00.0"), "{err}");
    }

    #[test]
    fn vm_values_proxmox_would_reject_are_caught_with_their_line() {
        let base = "[nodes.a]\nssh = \"root@a\"\n[nodes.a.vm]\nname = \"triton-gpu\"\nmemory_mib = 30720\ncores = 10\n[nodes.a.vm.disk]\nstorage = \"nvme-zfs\"\nsize_gb = 100\n";
        assert!(parse(base).is_ok());
        for (from, to, line, says) in [
            (
                "name = \"triton-gpu\"",
                "name = \"triton gpu\"",
                4,
                "DNS name",
            ),
            ("cores = 10", "cores = 0", 6, "cores"),
            ("memory_mib = 30720", "memory_mib = 8", 5, "memory_mib"),
            ("size_gb = 100", "size_gb = 0", 9, "size_gb"),
            ("cores = 10", "cores = 10\nvmid = 99", 7, "vmid"),
            (
                "size_gb = 100",
                "size_gb = 100\n[nodes.a.vm.guest.triton]\nbackend = \"onnx\"\nmodel_repository = \"/srv/a:/etc\"",
                12,
                "model_repository",
            ),
            (
                "size_gb = 100",
                "size_gb = 100\n[nodes.a.vm.guest.triton]\nbackend = \"onnx\"\nmodel_repository = \"srv/models\"",
                12,
                "absolute path",
            ),
        ] {
            let err = parse(&base.replace(from, to)).unwrap_err().to_string();
            assert!(err.starts_with(&format!("inv.toml:{line}:1:")), "{err}");
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn a_card_listed_twice_is_refused() {
        let err = parse("[nodes.a]\nssh = \"root@a\"\n[[nodes.a.gpus]]\naddress = \"02:00\"\n[[nodes.a.gpus]]\naddress = \"0000:02:00.1\"\n").unwrap_err().to_string();
        assert!(err.contains("listed twice"), "{err}");
        assert!(err.starts_with("inv.toml:6:1"), "{err}");
    }
}

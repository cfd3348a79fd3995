//! The inventory's `[nodes.NAME.api]` and `[nodes.NAME.vm]` tables: how to reach a node's
//! Proxmox VE API, and the VM that gets the node's GPUs. Secrets never live here: the token
//! secret and the password come from the environment or from a file only its owner reads.

use crate::pci::PciAddress;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Environment variable holding the API token's secret (the UUID shown once at creation).
pub const TOKEN_SECRET_ENV: &str = "PVEGPU_TOKEN_SECRET";
/// Environment variable holding the password for ticket login (`user = "root@pam"`).
pub const PASSWORD_ENV: &str = "PVEGPU_PASSWORD";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// `https://osm45.example.org:8006`.
    pub url: String,
    /// The node's name inside Proxmox VE (`pvecm nodes`, the GUI's tree); defaults to the
    /// inventory's name for the node.
    #[serde(default)]
    pub node: Option<String>,
    /// Pin the node certificate's SHA-256 fingerprint (`AB:CD:...`, as the GUI shows it under
    /// System > Certificates; `pvegpu fingerprint --node N` reads it over SSH).
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Trust certificates signed by this CA (PEM), e.g. a copy of /etc/pve/pve-root-ca.pem.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// API token id `USER@REALM!TOKENNAME`; the secret comes from PVEGPU_TOKEN_SECRET or
    /// `token_secret_file`.
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_secret_file: Option<PathBuf>,
    /// Log in with a password ticket instead of a token (root@pam may pass raw devices);
    /// the password comes from PVEGPU_PASSWORD or `password_file`.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// SeaBIOS on the i440fx machine, as the seed's VM 201.
    #[default]
    Seabios,
    /// OVMF (UEFI) on q35 with an EFI disk and PCIe devices.
    Ovmf,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// The VM id; left out, pvegpu takes `/cluster/nextid` at creation and asks you to
    /// write the id down.
    #[serde(default)]
    pub vmid: Option<u32>,
    pub name: String,
    #[serde(default)]
    pub firmware: Firmware,
    /// Enrol Microsoft's Secure Boot keys in the EFI disk (OVMF only). Off by default:
    /// the NVIDIA modules a guest builds with DKMS are unsigned.
    #[serde(default)]
    pub secure_boot: bool,
    /// Memory in MiB (the seed's 30 GB: 30720).
    pub memory_mib: u32,
    pub cores: u32,
    /// CPU type and flags as PVE writes them, e.g. `host` or `kvm64,flags=+aes`.
    #[serde(default)]
    pub cpu: Option<String>,
    /// Start the VM when the node boots.
    #[serde(default = "yes")]
    pub onboot: bool,
    pub disk: DiskSpec,
    #[serde(default)]
    pub network: NetSpec,
    #[serde(default)]
    pub cloud_init: Option<CloudInit>,
    /// Which of the node's cards go to this VM (default: all of `[[nodes.NAME.gpus]]`).
    #[serde(default)]
    pub gpus: Option<Vec<PciAddress>>,
    /// Take an existing VM as it is: pvegpu then only manages its hostpci entries.
    #[serde(default)]
    pub adopt: bool,
    /// How long `apply` waits for the started VM to be reachable, in seconds.
    #[serde(default = "reach_timeout")]
    pub reach_timeout: u64,
    /// What runs inside the VM (`[nodes.NAME.vm.guest]`): driver, runtime, Triton.
    #[serde(default)]
    pub guest: Option<crate::inventory::guest::GuestSpec>,
}

impl VmSpec {
    /// Values Proxmox would reject only after pvegpu started changing things; the inventory
    /// key to point at, and the fix.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let dns = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                && !s.starts_with(['-', '.'])
                && !s.ends_with(['-', '.'])
        };
        if !dns(&self.name) {
            return Err((
                "name =",
                format!(
                    "name {:?} must be a DNS name (letters, digits, `-` and `.`), e.g. \"triton-gpu\"",
                    self.name
                ),
            ));
        }
        if let Some(id) = self.vmid
            && !(100..=999_999_999).contains(&id)
        {
            return Err(("vmid =", format!("vmid {id} is outside 100..999999999")));
        }
        if self.cores == 0 {
            return Err(("cores =", "cores must be at least 1".into()));
        }
        if self.memory_mib < 16 {
            return Err((
                "memory_mib =",
                format!(
                    "memory_mib {} is below Proxmox's minimum of 16 (MiB; 30 GB is 30720)",
                    self.memory_mib
                ),
            ));
        }
        if self.disk.size_gb == 0 {
            return Err(("size_gb =", "disk size_gb must be at least 1".into()));
        }
        if let Some(ci) = &self.cloud_init
            && ci.ip != "dhcp"
            && !ci.ip.split_once('/').is_some_and(|(a, p)| {
                a.parse::<std::net::Ipv4Addr>().is_ok() && p.parse::<u8>().is_ok_and(|p| p <= 32)
            })
        {
            return Err((
                "ip =",
                format!(
                    "cloud_init ip {:?} must be an IPv4 address with its prefix (`10.3.0.201/8`) or `dhcp`",
                    ci.ip
                ),
            ));
        }
        if let Some(t) = self.guest.as_ref().and_then(|g| g.triton.as_ref()) {
            t.check().map_err(|m| ("model_repository =", m))?;
        }
        Ok(())
    }
}

fn yes() -> bool {
    true
}

fn reach_timeout() -> u64 {
    300
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// The storage for the disk (and the EFI and cloud-init disks), e.g. `nvme-zfs`.
    pub storage: String,
    pub size_gb: u32,
    /// A cloud image already on the node, as a volume id (`local:import/debian-12-genericcloud-amd64.qcow2`),
    /// imported as the VM's disk at creation; without it the disk is empty and needs an installer.
    #[serde(default)]
    pub image: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetSpec {
    #[serde(default = "bridge")]
    pub bridge: String,
    #[serde(default = "model")]
    pub model: String,
    #[serde(default)]
    pub vlan: Option<u16>,
}

fn bridge() -> String {
    "vmbr0".into()
}
fn model() -> String {
    "virtio".into()
}

impl Default for NetSpec {
    fn default() -> Self {
        NetSpec {
            bridge: bridge(),
            model: model(),
            vlan: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CloudInit {
    pub user: String,
    /// A public key file on this workstation (relative to the inventory), e.g. `~/.ssh/id_ed25519.pub`.
    #[serde(default)]
    pub ssh_key_file: Option<PathBuf>,
    /// `10.3.0.201/8`, or `dhcp`.
    pub ip: String,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub dns: Option<String>,
}

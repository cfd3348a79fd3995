//! Privileges as Proxmox VE computes and checks them, for the VM calls pvegpu makes.
//!
//! Sources (read 2026-12, newest snapshots):
//! - pve-access-control `src/PVE/RPCEnvironment.pm` (`permissions`, `$compile_acl_path`):
//!   a privsep=0 token has exactly its owner's privileges; a privsep=1 token has those of
//!   its own ACLs that its owner also holds on the path. root@pam holds everything.
//! - pve-access-control `src/PVE/API2/AccessControl.pm` (`permissions`): `GET
//!   /access/permissions` answers `{path: {privilege: propagate}}` for the caller (a token
//!   is its own caller), for one `path` or for the default paths plus every ACL path.
//! - qemu-server 9.2.6 `src/PVE/API2/Qemu.pm`: `$check_vm_modify_config_perm` and the
//!   option hashes it reads (L789-862), `$check_storage_access` (L163-280),
//!   `check_vm_create_hostpci_perm`; `src/PVE/QemuServer.pm` `check_bridge_access`;
//!   pve-guest-common `GuestHelpers.pm` `check_vnet_access` (zone `localnetwork` for a
//!   plain bridge); pve-storage `Storage.pm` `check_volume_access` (L619).
//!
//! The fake's ACLs are `(path, privilege)` grants that always propagate; a deeper ACL
//! that takes privileges away (a NoAccess role) is not modelled.

use super::ApiError;
use super::state::{FakeCluster, Principal, parse_property_string};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The privileges of the Administrator role (pve-access-control `AccessControl.pm`
/// `$privgroups` and `$valid_privs`, PVE 9).
pub const ALL_PRIVS: &[&str] = &[
    "Datastore.Allocate",
    "Datastore.AllocateSpace",
    "Datastore.AllocateTemplate",
    "Datastore.Audit",
    "Group.Allocate",
    "Mapping.Audit",
    "Mapping.Modify",
    "Mapping.Use",
    "Permissions.Modify",
    "Pool.Allocate",
    "Pool.Audit",
    "Realm.Allocate",
    "Realm.AllocateUser",
    "SDN.Allocate",
    "SDN.Audit",
    "SDN.Use",
    "Sys.AccessNetwork",
    "Sys.Audit",
    "Sys.Console",
    "Sys.Incoming",
    "Sys.Modify",
    "Sys.PowerMgmt",
    "Sys.Syslog",
    "User.Modify",
    "VM.Allocate",
    "VM.Audit",
    "VM.Backup",
    "VM.Clone",
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Cloudinit",
    "VM.Config.Disk",
    "VM.Config.HWType",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.Console",
    "VM.GuestAgent.Audit",
    "VM.GuestAgent.Unrestricted",
    "VM.Migrate",
    "VM.PowerMgmt",
    "VM.Snapshot",
    "VM.Snapshot.Rollback",
];

/// The paths `get_effective_permissions` always lists (RPCEnvironment.pm L241-289).
const DEFAULT_PATHS: &[&str] = &[
    "/",
    "/access",
    "/access/groups",
    "/nodes",
    "/pool",
    "/sdn",
    "/storage",
    "/vms",
];

/// Privileges that `grants` give on `path`: every grant on the path or above it.
fn compiled(grants: &[(String, String)], path: &str) -> BTreeSet<String> {
    grants
        .iter()
        .filter(|(gp, _)| gp == "/" || path == gp || path.starts_with(&format!("{gp}/")))
        .map(|(_, p)| p.clone())
        .collect()
}

fn all() -> BTreeSet<String> {
    ALL_PRIVS.iter().map(|p| p.to_string()).collect()
}

impl FakeCluster {
    /// A user's own privileges on `path` (root@pam: all).
    fn user_privs(&self, user: &str, path: &str) -> BTreeSet<String> {
        if user == "root@pam" {
            return all();
        }
        self.user_acls
            .get(user)
            .map(|g| compiled(g, path))
            .unwrap_or_default()
    }

    /// What `p` holds on `path`, as `RPCEnvironment::permissions` computes it.
    pub fn privs_at(&self, p: &Principal, path: &str) -> BTreeSet<String> {
        let owner = self.user_privs(&p.user, path);
        if p.token.is_none() {
            return owner;
        }
        match self.tokens.get(&p.id()).and_then(|t| t.grants.as_ref()) {
            None => owner,
            // The owner root@pam is not intersected (`$username ne 'root@pam'`).
            Some(grants) if p.user == "root@pam" => compiled(grants, path),
            Some(grants) => compiled(grants, path)
                .intersection(&owner)
                .cloned()
                .collect(),
        }
    }

    /// Whether `p` holds `privilege` on `path`.
    pub fn has_priv(&self, p: &Principal, path: &str, privilege: &str) -> bool {
        self.privs_at(p, path).contains(privilege)
    }

    /// Every path an ACL names, for the permission listing.
    fn acl_paths(&self, p: &Principal) -> BTreeSet<String> {
        let mut paths: BTreeSet<String> = DEFAULT_PATHS.iter().map(|s| s.to_string()).collect();
        let token = self.tokens.get(&p.id()).and_then(|t| t.grants.clone());
        let user = self.user_acls.get(&p.user).cloned().unwrap_or_default();
        paths.extend(token.unwrap_or_default().into_iter().map(|(path, _)| path));
        paths.extend(user.into_iter().map(|(path, _)| path));
        paths
    }
}

/// `rpcenv->check`: 403 `Permission check failed (PATH, PRIV)`.
pub fn require(
    st: &FakeCluster,
    who: &Principal,
    path: &str,
    privilege: &str,
) -> Result<(), ApiError> {
    if st.has_priv(who, path, privilege) {
        Ok(())
    } else {
        Err(ApiError::forbidden(path, privilege))
    }
}

/// `rpcenv->check_any`: 403 `Permission check failed (PATH, A|B)`.
pub fn require_any(
    st: &FakeCluster,
    who: &Principal,
    path: &str,
    privileges: &[&str],
) -> Result<(), ApiError> {
    if privileges.iter().any(|p| st.has_priv(who, path, p)) {
        Ok(())
    } else {
        Err(ApiError::forbidden(path, &privileges.join("|")))
    }
}

/// `GET /access/permissions`: the caller's privileges (a token's are its own), for `path`
/// or for every listed path that holds any.
pub fn permissions(
    st: &FakeCluster,
    who: &Principal,
    userid: Option<String>,
    path: Option<String>,
) -> Result<Value, ApiError> {
    let me = who.id();
    let target = match userid {
        None => who.clone(),
        Some(u) if u == me => who.clone(),
        Some(u) => {
            let (user, token) = match u.split_once('!') {
                Some((user, t)) => (user.to_string(), Some(t.to_string())),
                None => (u.clone(), None),
            };
            // A user may ask about its own tokens; anything else needs Sys.Audit on /access.
            if !(who.token.is_none() && user == who.user) {
                require(st, who, "/access", "Sys.Audit")?;
            }
            Principal {
                user,
                token,
                by_ticket: false,
            }
        }
    };
    let listing = |path: &str| -> Value {
        let m: Map<String, Value> = st
            .privs_at(&target, path)
            .into_iter()
            .map(|p| (p, json!(1)))
            .collect();
        Value::Object(m)
    };
    let mut out = Map::new();
    match path {
        Some(p) => {
            out.insert(p.clone(), listing(&p));
        }
        None => {
            for p in st.acl_paths(&target) {
                let l = listing(&p);
                if l.as_object().is_some_and(|o| !o.is_empty()) {
                    out.insert(p, l);
                }
            }
        }
    }
    Ok(Value::Object(out))
}

/// Which privilege a config key needs (`$check_vm_modify_config_perm`); `None` for keys
/// checked elsewhere (drives, hostpci, serial, usb, tags).
enum KeyPriv {
    Checked(&'static [&'static str], bool),
    Elsewhere,
    RootOnly,
}

fn key_priv(key: &str) -> KeyPriv {
    const CPU: &[&str] = &[
        "cores",
        "cpu",
        "runningcpu",
        "cpulimit",
        "cpuunits",
        "numa",
        "smp",
        "sockets",
        "vcpus",
    ];
    const MEMORY: &[&str] = &["memory", "balloon", "shares", "allow-ksm"];
    const HWTYPE: &[&str] = &[
        "acpi",
        "hotplug",
        "kvm",
        "machine",
        "runningmachine",
        "scsihw",
        "smbios1",
        "tablet",
        "vga",
        "watchdog",
        "audio0",
        "rng0",
    ];
    const GENERAL: &[&str] = &[
        "agent",
        "autostart",
        "bios",
        "description",
        "keyboard",
        "localtime",
        "migrate_downtime",
        "migrate_speed",
        "name",
        "onboot",
        "ostype",
        "protection",
        "reboot",
        "startdate",
        "startup",
        "tdf",
        "template",
    ];
    const DISK: &[&str] = &["boot", "bootdisk", "vmstatestorage"];
    const CLOUDINIT: &[&str] = &[
        "cicustom",
        "cipassword",
        "citype",
        "ciuser",
        "ciupgrade",
        "nameserver",
        "searchdomain",
        "sshkeys",
    ];
    let numbered = |prefix: &str| {
        key.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    };
    if is_drive(key)
        || key == "cdrom"
        || key == "tags"
        || ["unused", "serial", "usb", "hostpci", "virtiofs"]
            .iter()
            .any(|p| numbered(p))
    {
        return KeyPriv::Elsewhere;
    }
    if CPU.contains(&key) || numbered("numa") {
        KeyPriv::Checked(&["VM.Config.CPU"], false)
    } else if MEMORY.contains(&key) {
        KeyPriv::Checked(&["VM.Config.Memory"], false)
    } else if HWTYPE.contains(&key) {
        KeyPriv::Checked(&["VM.Config.HWType"], false)
    } else if GENERAL.contains(&key) {
        KeyPriv::Checked(&["VM.Config.Options"], false)
    } else if key == "freeze" {
        KeyPriv::Checked(&["VM.PowerMgmt"], false)
    } else if DISK.contains(&key) {
        KeyPriv::Checked(&["VM.Config.Disk"], false)
    } else if numbered("net") {
        KeyPriv::Checked(&["VM.Config.Network"], false)
    } else if CLOUDINIT.contains(&key) || numbered("ipconfig") {
        KeyPriv::Checked(&["VM.Config.Cloudinit", "VM.Config.Network"], true)
    } else {
        KeyPriv::RootOnly
    }
}

/// `ide0`, `scsi1`, `efidisk0`, ... (`is_valid_drivename`).
pub fn is_drive(key: &str) -> bool {
    ["ide", "scsi", "virtio", "sata", "efidisk", "tpmstate"]
        .iter()
        .any(|d| {
            key.strip_prefix(d)
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        })
}

/// `$check_vm_modify_config_perm`: each key by its option group. Only root@pam itself is
/// exempt (a token of root@pam is checked like any principal).
pub fn config_keys(
    st: &FakeCluster,
    who: &Principal,
    vmid: u32,
    keys: &[&str],
) -> Result<(), ApiError> {
    if who.is_root_ticket() {
        return Ok(());
    }
    let path = format!("/vms/{vmid}");
    for key in keys {
        match key_priv(key) {
            KeyPriv::Elsewhere => {}
            KeyPriv::RootOnly => {
                return Err(ApiError::die(format!("only root can set '{key}' config\n")));
            }
            KeyPriv::Checked(privs, true) => require_any(st, who, &path, privs)?,
            KeyPriv::Checked(privs, false) => {
                for p in privs {
                    require(st, who, &path, p)?;
                }
            }
        }
    }
    Ok(())
}

/// `$check_storage_access` for each drive: a new disk needs Datastore.AllocateSpace on its
/// storage, which must allow `images`; an `import-from` source goes through
/// `check_volume_access`; cloud-init and `none` volumes are not checked.
pub fn storage_access(
    st: &FakeCluster,
    who: &Principal,
    node: &str,
    vmid: u32,
    conf: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    for (key, value) in conf.iter().filter(|(k, _)| is_drive(k)) {
        let opts = parse_property_string(value, "file");
        let file = opts.get("file").cloned().unwrap_or_default();
        if file.is_empty() || file == "none" || file.contains("cloudinit") {
            continue;
        }
        let Some((storage, volume)) = file.split_once(':') else {
            continue;
        };
        if volume.parse::<f64>().is_ok() {
            require(
                st,
                who,
                &format!("/storage/{storage}"),
                "Datastore.AllocateSpace",
            )?;
            let images = st.nodes[node]
                .content
                .get(storage)
                .is_some_and(|c| c.split(',').any(|c| c == "images"));
            if st.nodes[node].storages.iter().any(|s| s == storage) && !images {
                return Err(ApiError::param(
                    "storage",
                    format!("storage '{storage}' does not support vm images"),
                ));
            }
            if let Some(src) = opts.get("import-from") {
                volume_access(st, who, src)?;
            }
        } else if !volume.contains(&format!("vm-{vmid}-")) {
            volume_access(st, who, &file)
                .map_err(|_| ApiError::param(key, "content type needs to be 'images' or 'iso'"))?;
        }
    }
    Ok(())
}

/// `PVE::Storage::check_volume_access` for an `import`, `iso` or `vztmpl` volume.
fn volume_access(st: &FakeCluster, who: &Principal, volid: &str) -> Result<(), ApiError> {
    let storage = volid.split(':').next().unwrap_or_default();
    let path = format!("/storage/{storage}");
    if st.has_priv(who, &path, "Datastore.Allocate") {
        return Ok(());
    }
    require_any(
        st,
        who,
        &path,
        &["Datastore.AllocateSpace", "Datastore.Audit"],
    )
}

/// `check_bridge_access`: SDN.Use on the bridge's zone (`localnetwork` for a plain Linux
/// bridge), with the VLAN tag when there is one.
pub fn bridge_access(
    st: &FakeCluster,
    who: &Principal,
    conf: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    if who.is_root_ticket() {
        return Ok(());
    }
    for (_, v) in conf.iter().filter(|(k, _)| {
        k.strip_prefix("net")
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    }) {
        let opts = parse_property_string(v, "model");
        let Some(bridge) = opts.get("bridge") else {
            continue;
        };
        let path = match opts.get("tag") {
            Some(tag) => format!("/sdn/zones/localnetwork/{bridge}/{tag}"),
            None => format!("/sdn/zones/localnetwork/{bridge}"),
        };
        require(st, who, &path, "SDN.Use")?;
    }
    Ok(())
}

/// `$check_drive_perms` on a config update: VM.Config.Disk, or for a cloud-init drive both
/// VM.Config.Cloudinit and VM.Config.CDROM.
pub fn drive_update(
    st: &FakeCluster,
    who: &Principal,
    vmid: u32,
    value: &str,
) -> Result<(), ApiError> {
    if who.is_root_ticket() {
        return Ok(());
    }
    let path = format!("/vms/{vmid}");
    if value.contains("cloudinit") {
        require(st, who, &path, "VM.Config.Cloudinit")?;
        return require(st, who, &path, "VM.Config.CDROM");
    }
    if value.contains("media=cdrom") {
        return require(st, who, &path, "VM.Config.CDROM");
    }
    require(st, who, &path, "VM.Config.Disk")
}

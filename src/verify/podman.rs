//! Rootless Podman with CDI: why a container gets no working GPU, from raw inputs gathered on
//! the guest. The facts are RULES.md 5a: Podman resolves `--device nvidia.com/gpu=...` from
//! specs in /etc/cdi and /var/run/cdi only (a spec under ~/.config/cdi is not read by
//! default, containers/podman#25691); a spec is a snapshot, so one generated before
//! nvidia-uvm was loaded lacks /dev/nvidia-uvm{,-tools} (nvidia-container-toolkit#50) and one
//! generated before a driver upgrade mounts the old driver's libraries; the device nodes
//! must be usable by the rootless user (nvidia-container-toolkit#210); MIG needs the
//! /dev/nvidia-caps nodes.

use crate::core::check::{Check, Layer};
pub use crate::facts::cdi::{CdiError as SpecError, CdiSpec};
use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

/// One CDI spec file as found on the guest: its path and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdiSpecFile {
    pub path: String,
    pub content: String,
}

/// Everything the diagnosis reads. Commands (run as the user that runs rootless Podman):
/// the specs: every file in /etc/cdi, /var/run/cdi and ~/.config/cdi;
/// `driver_version`: `cat /proc/driver/nvidia/version` (or nvidia-smi's `driver_version`);
/// `dev_listing`: `ls -l /dev/nvidia*` (the /dev/nvidia-caps directory is listed with it);
/// `id`: `id`; `mig`: whether MIG is in use (`nvidia-smi --query-gpu=mig.mode.current`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodmanInputs {
    pub specs: Vec<CdiSpecFile>,
    /// CDI device names the containers ask for (`nvidia.com/gpu=all`); empty: not checked.
    pub requested: Vec<String>,
    pub driver_version: Option<String>,
    pub dev_listing: Option<String>,
    pub id: Option<String>,
    pub mig: bool,
}

const NVIDIA_KIND: &str = "nvidia.com/gpu";
/// Container Toolkit 1.18 and later refresh /var/run/cdi/nvidia.yaml themselves.
const GENERATE: &str = "`sudo systemctl start nvidia-cdi-refresh.service` with Container Toolkit 1.18 or later (it writes /var/run/cdi/nvidia.yaml), else `sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`";

/// The directories Podman reads by default.
pub fn read_by_default(path: &str) -> bool {
    ["/etc/cdi/", "/var/run/cdi/", "/run/cdi/"]
        .iter()
        .any(|d| path.starts_with(d))
}

static LOADED_VERSION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)").unwrap());

/// Parses a CDI spec file (see [`crate::facts::cdi::parse`]).
pub fn parse_spec(file: &CdiSpecFile) -> Result<CdiSpec, SpecError> {
    crate::facts::cdi::parse(&file.path, &file.content)
}

/// The loaded driver's version from `/proc/driver/nvidia/version` (both the proprietary and
/// the open module's wording) or a bare version as nvidia-smi prints it.
pub fn parse_driver_version(text: &str) -> Option<String> {
    if let Some(c) = LOADED_VERSION.captures(text) {
        return Some(c[1].to_string());
    }
    text.lines().map(str::trim).find_map(|l| {
        let ok = !l.is_empty()
            && l.split('.').count() >= 2
            && l.split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        ok.then(|| l.to_string())
    })
}

/// One entry of `ls -l`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevNode {
    pub path: String,
    pub mode: String,
    pub owner: String,
    pub group: String,
}

/// Parses `ls -l /dev/nvidia*`: full paths for the named nodes, and `dir/name` for the
/// entries listed under a `dir:` heading (`/dev/nvidia-caps:`).
pub fn parse_ls(text: &str) -> Vec<DevNode> {
    let mut dir: Option<String> = None;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim_end) {
        if line.is_empty() {
            continue;
        }
        if let Some(d) = line.strip_suffix(':').filter(|d| d.starts_with('/')) {
            dir = Some(d.to_string());
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(mode) = words.first().filter(|m| m.len() >= 10) else {
            continue;
        };
        if !matches!(mode.as_bytes()[0], b'c' | b'b' | b'd' | b'-' | b'l') || words.len() < 5 {
            continue;
        }
        let name = words[words.len() - 1];
        if name == "." || name == ".." {
            continue;
        }
        let path = match (&dir, name.starts_with('/')) {
            (_, true) => name.to_string(),
            (Some(d), false) => format!("{d}/{name}"),
            (None, false) => format!("/dev/{name}"),
        };
        out.push(DevNode {
            path,
            mode: mode[..10].to_string(),
            owner: words[2].to_string(),
            group: words[3].to_string(),
        });
    }
    out
}

/// A user as `id` prints it: `uid=1000(alice) gid=1000(alice) groups=1000(alice),44(video)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub user: String,
    pub groups: BTreeMap<u32, String>,
}

pub fn parse_id(text: &str) -> Option<Identity> {
    let pair = |w: &str| -> Option<(u32, String)> {
        let (n, rest) = w.split_once('(').unwrap_or((w, ""));
        Some((n.parse().ok()?, rest.trim_end_matches(')').to_string()))
    };
    let mut id = Identity::default();
    let mut seen_uid = false;
    for word in text.split_whitespace() {
        if let Some(v) = word.strip_prefix("uid=") {
            (id.uid, id.user) = pair(v)?;
            seen_uid = true;
        } else if let Some(v) = word.strip_prefix("gid=") {
            let (g, name) = pair(v)?;
            id.groups.insert(g, name);
        } else if let Some(v) = word.strip_prefix("groups=") {
            for g in v.split(',') {
                let (g, name) = pair(g)?;
                id.groups.insert(g, name);
            }
        }
    }
    seen_uid.then_some(id)
}

/// How the user reaches a node for `rw` (or `r` only): as owner, through a group, as
/// anyone, or not at all. The group route matters because rootless Podman drops
/// supplementary groups inside the container unless `--group-add keep-groups` (crun).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Root,
    Owner,
    Group,
    Other,
    Denied,
}

fn access(node: &DevNode, who: &Identity, write: bool) -> Access {
    let m = node.mode.as_bytes();
    let ok = |r: usize| m[r] == b'r' && (!write || m[r + 1] == b'w');
    if who.uid == 0 {
        Access::Root
    } else if node.owner == who.user || node.owner == who.uid.to_string() {
        if ok(1) { Access::Owner } else { Access::Denied }
    } else if ok(7) {
        Access::Other
    } else if who
        .groups
        .iter()
        .any(|(g, n)| *n == node.group || g.to_string() == node.group)
        && ok(4)
    {
        Access::Group
    } else {
        Access::Denied
    }
}

fn spec_checks(inputs: &PodmanInputs, out: &mut Vec<Check>) {
    let mut nvidia: Vec<CdiSpec> = Vec::new();
    for f in &inputs.specs {
        match parse_spec(f) {
            Ok(s) if s.kind.as_deref() == Some(NVIDIA_KIND) => nvidia.push(s),
            Ok(_) => {}
            Err(e) => out.push(Check::fail(
                Layer::Runtime,
                "CDI spec parses",
                e.to_string(),
                "Podman skips a spec it cannot parse, so its devices do not resolve",
                format!("regenerate it: {GENERATE}"),
            )),
        }
    }
    let (read, unread): (Vec<CdiSpec>, Vec<CdiSpec>) =
        nvidia.into_iter().partition(|s| read_by_default(&s.path));
    out.push(location_check(&read, &unread));
    if read.is_empty() {
        return;
    }
    if read.len() > 1 {
        out.push(Check::warn(
            Layer::Runtime,
            "one nvidia.com/gpu spec",
            paths(&read),
            "several specs define the same kind; one shadows the other, and the shadowed one is usually a stale leftover",
            "keep one (/var/run/cdi/nvidia.yaml with Container Toolkit 1.18 or later, which refreshes it; else /etc/cdi/nvidia.yaml) and remove the others",
        ));
    }
    if !inputs.requested.is_empty() {
        out.push(requested_check(&read, &inputs.requested));
    }
    out.extend(read.iter().map(uvm_check));
    let loaded = inputs
        .driver_version
        .as_deref()
        .and_then(parse_driver_version);
    out.extend(read.iter().map(|s| driver_check(s, loaded.as_deref())));
}

fn paths(specs: &[CdiSpec]) -> String {
    specs
        .iter()
        .map(|s| s.path.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// An nvidia.com/gpu spec lies where Podman reads specs by default.
fn location_check(read: &[CdiSpec], unread: &[CdiSpec]) -> Check {
    let name = "CDI spec where Podman reads it";
    if !read.is_empty() {
        return Check::pass(Layer::Runtime, name, paths(read));
    }
    if unread.is_empty() {
        Check::fail(
            Layer::Runtime,
            name,
            "no spec of kind nvidia.com/gpu in /etc/cdi or /var/run/cdi",
            "without a spec `--device nvidia.com/gpu=...` is an unresolvable CDI device",
            format!("{GENERATE}, then `nvidia-ctk cdi list` shows the device names"),
        )
    } else {
        Check::fail(
            Layer::Runtime,
            name,
            format!("only {}", paths(unread)),
            "Podman reads CDI specs from /etc/cdi and /var/run/cdi only; a spec under ~/.config/cdi is ignored by default (containers/podman#25691)",
            format!("{GENERATE} (a system-wide spec serves rootless users too)"),
        )
    }
}

/// Every device name the containers ask for is one the specs define.
fn requested_check(read: &[CdiSpec], requested: &[String]) -> Check {
    let name = "requested CDI devices defined";
    let names: BTreeSet<String> = read
        .iter()
        .flat_map(|s| {
            let kind = s.kind.as_deref().unwrap_or_default();
            s.devices.iter().map(move |d| format!("{kind}={d}"))
        })
        .collect();
    let missing: Vec<&str> = requested
        .iter()
        .filter(|r| !names.contains(*r))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Check::pass(Layer::Runtime, name, requested.join(", "));
    }
    Check::fail(
        Layer::Runtime,
        name,
        format!(
            "{} not defined; the spec defines {}",
            missing.join(", "),
            names.into_iter().collect::<Vec<_>>().join(", ")
        ),
        "the container asks for a device name the spec does not have (a GPU index that does not exist, or a spec generated with another naming strategy)",
        "use a name from `nvidia-ctk cdi list`, or regenerate the spec after the GPUs changed",
    )
}

/// The spec lists nvidia-uvm's device nodes, which the CUDA runtime needs.
fn uvm_check(s: &CdiSpec) -> Check {
    let name = "CDI spec lists nvidia-uvm";
    let uvm = ["/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"];
    let lacks: Vec<&str> = uvm
        .iter()
        .copied()
        .filter(|n| !s.device_nodes.contains(*n))
        .collect();
    if lacks.is_empty() {
        return Check::pass(
            Layer::Runtime,
            name,
            format!("{} lists {}", s.path, uvm.join(" and ")),
        );
    }
    Check::fail(
        Layer::Runtime,
        name,
        format!("{} lacks {}", s.path, lacks.join(" and ")),
        "the spec was generated while nvidia-uvm was not loaded; containers then get no /dev/nvidia-uvm, so nvidia-smi works but the CUDA runtime fails with cudaErrorInitializationError (3) (nvidia-container-toolkit#50)",
        format!(
            "`sudo modprobe nvidia-uvm` (and load it at boot via /etc/modules-load.d), then {GENERATE}"
        ),
    )
}

/// The spec was made for the loaded driver, by the same rule the guest planner regenerates
/// it by ([`CdiSpec::driver_version`]: one driver, the loaded one).
fn driver_check(s: &CdiSpec, loaded: Option<&str>) -> Check {
    let name = "CDI spec matches the loaded driver";
    match loaded {
        None => Check::skip(
            Layer::Runtime,
            name,
            "the loaded driver's version is unknown",
            "pass the output of `cat /proc/driver/nvidia/version`",
        ),
        Some(_) if s.driver_versions.is_empty() => Check::skip(
            Layer::Runtime,
            name,
            format!(
                "{} names no driver version (no versioned libnvidia-ml/libcuda mount)",
                s.path
            ),
            format!("regenerate it: {GENERATE}"),
        ),
        Some(l) if s.driver_version.as_deref() == Some(l) => Check::pass(
            Layer::Runtime,
            name,
            format!("{} and the loaded driver: {l}", s.path),
        ),
        Some(l) => Check::fail(
            Layer::Runtime,
            name,
            format!(
                "{} mounts driver {}, loaded is {l}",
                s.path,
                s.driver_versions
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "the spec is a snapshot from before a driver change: it mounts libraries that no longer exist or do not match the kernel module",
            format!(
                "{GENERATE} after every driver upgrade (newer toolkits can regenerate it at boot: nvidia-cdi-refresh)"
            ),
        ),
    }
}

fn node_checks(inputs: &PodmanInputs, out: &mut Vec<Check>) {
    let name = "device nodes usable by the user";
    let (Some(listing), Some(id_text)) = (&inputs.dev_listing, &inputs.id) else {
        out.push(Check::skip(
            Layer::Runtime,
            name,
            "no `ls -l /dev/nvidia*` or `id` output",
            "pass both, run as the user that runs Podman",
        ));
        return;
    };
    let Some(who) = parse_id(id_text) else {
        out.push(Check::skip(
            Layer::Runtime,
            name,
            format!("cannot read `id` output: {}", id_text.trim()),
            "pass the output of `id`",
        ));
        return;
    };
    let nodes = parse_ls(listing);
    let mut wanted: Vec<&str> = vec!["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"];
    wanted.extend(nodes.iter().map(|n| n.path.as_str()).filter(|p| {
        p.strip_prefix("/dev/nvidia")
            .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_digit()))
    }));
    let (present, absent): (Vec<&str>, Vec<&str>) = wanted
        .into_iter()
        .partition(|p| nodes.iter().any(|n| n.path == *p));
    out.extend(nodes_exist(&absent));
    let present: Vec<&DevNode> = present
        .iter()
        .filter_map(|p| nodes.iter().find(|n| n.path == *p))
        .collect();
    out.push(nodes_usable(&present, &who));
    if inputs.mig {
        out.push(mig_nodes(&nodes, &who));
    }
}

/// The user's name as `id` printed it, else the uid.
fn user_name(who: &Identity) -> String {
    if who.user.is_empty() {
        who.uid.to_string()
    } else {
        who.user.clone()
    }
}

/// The driver's device nodes exist; nvidia-uvm's are named first, they are what CUDA misses.
fn nodes_exist(absent: &[&str]) -> Option<Check> {
    let (name, cause, fix) = if absent.iter().any(|p| p.starts_with("/dev/nvidia-uvm")) {
        (
            "nvidia-uvm device nodes exist",
            "nvidia-uvm is not loaded, or was loaded without creating its nodes; the CUDA runtime needs them",
            format!(
                "`sudo nvidia-modprobe -u -c=0` (loads nvidia-uvm and creates the nodes), load it at boot, then {GENERATE}"
            ),
        )
    } else if !absent.is_empty() {
        (
            "driver device nodes exist",
            "the nvidia driver is not loaded, or nothing created its device nodes yet",
            "`sudo nvidia-modprobe -c=0` or run `nvidia-smi` once as root; see the guest checks for the driver".to_string(),
        )
    } else {
        return None;
    };
    Some(Check::fail(
        Layer::Runtime,
        name,
        format!("missing {}", absent.join(", ")),
        cause,
        fix,
    ))
}

/// The user can read and write every node that exists, and not only through a group.
fn nodes_usable(present: &[&DevNode], who: &Identity) -> Check {
    let name = "device nodes usable by the user";
    let user = user_name(who);
    let mut denied = Vec::new();
    let mut via_group = Vec::new();
    for n in present {
        match access(n, who, true) {
            Access::Denied => denied.push(format!("{} {} {}:{}", n.path, n.mode, n.owner, n.group)),
            Access::Group => via_group.push(format!("{} ({})", n.path, n.group)),
            _ => {}
        }
    }
    if !denied.is_empty() {
        Check::fail(
            Layer::Runtime,
            name,
            format!("{user} cannot read and write {}", denied.join(", ")),
            "restrictive device-file modes (NVreg_DeviceFileUID/GID/Mode) keep the rootless user out: \"Failed to initialize NVML: Insufficient Permissions\" (nvidia-container-toolkit#210)",
            "let the driver create the nodes 0666: remove the NVreg_DeviceFile* options from /etc/modprobe.d, `update-initramfs -u`, reboot the guest",
        )
    } else if !via_group.is_empty() {
        Check::warn(
            Layer::Runtime,
            name,
            format!(
                "{user} reaches {} only through the group",
                via_group.join(", ")
            ),
            "rootless Podman drops supplementary groups inside the container unless told to keep them",
            "run with `--group-add keep-groups` (crun), or let the driver create the nodes 0666 (remove NVreg_DeviceFileMode)",
        )
    } else if present.is_empty() {
        // nothing to open is no proof of access
        Check::skip(
            Layer::Runtime,
            name,
            "no /dev/nvidia* device node exists to check",
            "load the driver first (see the checks above), then verify again",
        )
    } else {
        let paths: Vec<&str> = present.iter().map(|n| n.path.as_str()).collect();
        Check::pass(
            Layer::Runtime,
            name,
            format!("{user} can read and write {}", paths.join(", ")),
        )
    }
}

/// With MIG in use, the capability nodes containers open exist and are readable.
fn mig_nodes(nodes: &[DevNode], who: &Identity) -> Check {
    let name = "MIG capability nodes readable";
    let user = user_name(who);
    let caps: Vec<&DevNode> = nodes
        .iter()
        .filter(|n| n.path.starts_with("/dev/nvidia-caps/"))
        .collect();
    if caps.is_empty() {
        return Check::fail(
            Layer::Runtime,
            name,
            "no /dev/nvidia-caps entries in the listing",
            "MIG is in use but its capability device nodes do not exist, so no container can open a MIG device",
            "`sudo nvidia-modprobe -f /proc/driver/nvidia/capabilities/mig/config -f /proc/driver/nvidia/capabilities/mig/monitor`, create the MIG instances, then regenerate the spec (it records the per-instance nodes that exist at generation time)",
        );
    }
    // nvidia-cap1 is MIG *config*: root only by design (RULES.md 5a); the others
    // (monitor, per-instance access) are what containers open
    let unreadable: Vec<String> = caps
        .iter()
        .filter(|n| !n.path.ends_with("/nvidia-cap1"))
        .filter(|n| matches!(access(n, who, false), Access::Denied))
        .map(|n| format!("{} {}", n.path, n.mode))
        .collect();
    if unreadable.is_empty() {
        Check::pass(
            Layer::Runtime,
            name,
            format!("{user} can read the MIG nodes other than nvidia-cap1 (config, root only)"),
        )
    } else {
        Check::fail(
            Layer::Runtime,
            name,
            format!("{user} cannot read {}", unreadable.join(", ")),
            "MIG instances are opened through their capability nodes; the rootless user must be able to read them",
            "a udev rule `KERNEL==\"nvidia-cap*\", MODE=\"0444\"` (/etc/udev/rules.d/70-nvidia-cap.rules), `udevadm control --reload-rules && udevadm trigger`, then regenerate the spec",
        )
    }
}

/// The Podman/CDI diagnosis, each finding with its fix.
pub fn checks(inputs: &PodmanInputs) -> Vec<Check> {
    let mut out = Vec::new();
    spec_checks(inputs, &mut out);
    node_checks(inputs, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_version_wordings() {
        assert_eq!(
            parse_driver_version("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  575.57.08  Release Build  (dvs-builder@U16)").as_deref(),
            Some("575.57.08")
        );
        assert_eq!(
            parse_driver_version("535.183.01\n").as_deref(),
            Some("535.183.01")
        );
        assert_eq!(parse_driver_version("NVIDIA-SMI has failed"), None);
    }

    #[test]
    fn id_output() {
        let id = parse_id("uid=1000(alice) gid=1000(alice) groups=1000(alice),27(sudo),44(video)")
            .unwrap();
        assert_eq!((id.uid, id.user.as_str()), (1000, "alice"));
        assert_eq!(id.groups.get(&44).map(String::as_str), Some("video"));
        assert!(parse_id("id: ‘bob’: no such user").is_none());
    }

    #[test]
    fn access_routes() {
        let who = parse_id("uid=1000(alice) gid=1000(alice) groups=1000(alice),44(video)").unwrap();
        let node = |mode: &str, group: &str| DevNode {
            path: "/dev/nvidia0".into(),
            mode: mode.into(),
            owner: "root".into(),
            group: group.into(),
        };
        for (mode, group, write, want) in [
            ("crw-rw-rw-", "root", true, Access::Other),
            ("crw-rw----", "video", true, Access::Group),
            ("crw-rw----", "root", true, Access::Denied),
            ("cr--r--r--", "root", false, Access::Other),
            ("cr--r--r--", "root", true, Access::Denied),
        ] {
            assert_eq!(
                access(&node(mode, group), &who, write),
                want,
                "{mode} {group}"
            );
        }
    }
}

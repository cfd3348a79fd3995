//! Guest layer, from raw command output recorded on the guest (see [`GuestOutputs`] for the
//! commands). A missing output (`None`) makes its checks "not checked", never a pass.

use super::report::{Check, Layer};
use crate::facts::kernels::compare_versions;
use crate::guest::parse::{DkmsEntry, dkms_status, proc_modules, smi_bus_address};
use crate::pci::PciAddress;
use std::cmp::Ordering;
use std::collections::BTreeSet;

/// The guest commands' standard output, as they printed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestOutputs {
    /// `uname -r`
    pub uname_r: Option<String>,
    /// `lsmod` (or `cat /proc/modules`: the first word of each line is what counts)
    pub lsmod: Option<String>,
    /// `nvidia-smi --query-gpu=pci.bus_id,uuid,name,driver_version,compute_cap --format=csv,noheader`
    /// (stdout and stderr together, since its errors are the diagnosis)
    pub nvidia_smi: Option<String>,
    /// `dkms status`
    pub dkms_status: Option<String>,
    /// Installed kernels, one per line: `ls /boot/vmlinuz-*` or bare versions.
    pub kernels: Option<String>,
}

/// What the guest should show: the GPUs' addresses inside the VM (empty: only `count` is
/// checked) and their compute capability (`"6.1"`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestExpect {
    pub addresses: Vec<PciAddress>,
    pub count: usize,
    pub compute_cap: Option<String>,
}

/// One GPU line of the nvidia-smi query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmiGpu {
    pub bus_id: PciAddress,
    pub uuid: String,
    pub name: String,
    pub driver_version: String,
    /// `None` where the driver predates the `compute_cap` field or printed `[N/A]`.
    pub compute_cap: Option<String>,
}

/// The GPU lines of the query; every other line (errors, warnings) comes back separately.
pub fn parse_smi_query(text: &str) -> (Vec<SmiGpu>, Vec<String>) {
    let mut gpus = Vec::new();
    let mut other = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        match (f.len(), smi_bus_address(f[0])) {
            (4 | 5, Some(bus_id)) => gpus.push(SmiGpu {
                bus_id,
                uuid: f[1].to_string(),
                name: f[2].to_string(),
                driver_version: f[3].to_string(),
                compute_cap: f
                    .get(4)
                    .filter(|c| c.chars().next().is_some_and(|c| c.is_ascii_digit()))
                    .map(|c| c.to_string()),
            }),
            _ => other.push(line.to_string()),
        }
    }
    (gpus, other)
}

/// Kernel versions from `ls /boot/vmlinuz-*` (or bare versions), oldest first.
pub fn parse_kernels(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .split_whitespace()
        .map(|w| w.rsplit('/').next().unwrap_or(w))
        .map(|w| w.strip_prefix("vmlinuz-").unwrap_or(w).to_string())
        .filter(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .collect();
    out.sort_by(|a, b| compare_versions(a, b));
    out.dedup();
    out
}

/// The driver's own DKMS module: `nvidia` upstream and on Ubuntu, `nvidia-current` or
/// `nvidia-tesla-NNN` / `nvidia-legacy-NNNxx` on Debian, `nvidia-open`; not add-ons such as
/// nvidia-fs or nvidia-peermem.
fn is_driver_module(m: &str) -> bool {
    m == "nvidia"
        || m == "nvidia-open"
        || ["nvidia-current", "nvidia-tesla", "nvidia-legacy"]
            .iter()
            .any(|p| m.starts_with(p))
}

fn not_checked(name: &str, command: &str) -> Check {
    Check::skip(
        Layer::Guest,
        name,
        format!("no output of `{command}`"),
        format!("run `{command}` on the guest and pass its output"),
    )
}

pub fn checks(out: &GuestOutputs, expect: &GuestExpect) -> Vec<Check> {
    let mut checks = Vec::new();
    let dkms = out.dkms_status.as_deref().map(dkms_status);
    let nvidia_dkms: Vec<&DkmsEntry> = dkms
        .iter()
        .flatten()
        .filter(|e| is_driver_module(&e.module))
        .collect();
    let installed_for = |k: &str| {
        nvidia_dkms
            .iter()
            .any(|e| e.kernel.as_deref() == Some(k) && e.state == "installed")
    };

    // driver loaded for the running kernel
    checks.push(match (&out.lsmod, &out.uname_r) {
        (None, _) => not_checked("nvidia driver loaded", "lsmod"),
        (Some(lsmod), uname) => {
            let mods = proc_modules(lsmod);
            let running = uname.as_deref().map(str::trim).unwrap_or("the running kernel");
            if mods.contains("nvidia") {
                Check::pass(
                    Layer::Guest,
                    "nvidia driver loaded",
                    format!("nvidia is loaded in {running}"),
                )
            } else if mods.contains("nouveau") {
                Check::fail(
                    Layer::Guest,
                    "nvidia driver loaded",
                    format!("nouveau is loaded in {running}, nvidia is not"),
                    "the in-kernel nouveau driver claimed the GPU before nvidia could",
                    "blacklist nouveau (`/etc/modprobe.d/blacklist-nouveau.conf`: `blacklist nouveau` and `options nouveau modeset=0`), `update-initramfs -u`, reboot the guest",
                )
            } else if uname.is_some() && dkms.is_some() && !installed_for(running) {
                Check::fail(
                    Layer::Guest,
                    "nvidia driver loaded",
                    format!("no nvidia module loaded in {running}"),
                    format!("DKMS has no nvidia module built for the running kernel {running}"),
                    format!("`apt install linux-headers-{running}` then `dkms autoinstall -k {running}`, and `modprobe nvidia`"),
                )
            } else {
                Check::fail(
                    Layer::Guest,
                    "nvidia driver loaded",
                    format!("no nvidia module loaded in {running}"),
                    "the module exists but did not load (see `dmesg | grep -i nvrm`; Secure Boot without an enrolled MOK key is a common reason)",
                    "`modprobe nvidia` and read the error; with Secure Boot, enrol the DKMS key (`mokutil --import /var/lib/dkms/mok.pub`) or turn Secure Boot off in the VM's firmware",
                )
            }
        }
    });
    // CUDA containers need nvidia-uvm, which loads only on demand; a CDI spec generated while
    // it is absent lacks its device nodes (RULES.md 5a, nvidia-container-toolkit#50)
    if let Some(lsmod) = &out.lsmod {
        let mods = proc_modules(lsmod);
        if mods.contains("nvidia") {
            checks.push(if mods.contains("nvidia_uvm") {
                Check::pass(Layer::Guest, "nvidia-uvm loaded", "nvidia_uvm is loaded")
            } else {
                Check::warn(
                    Layer::Guest,
                    "nvidia-uvm loaded",
                    "nvidia_uvm is not loaded",
                    "nvidia-smi works without it but the CUDA runtime needs /dev/nvidia-uvm; a CDI spec generated now would leave it out",
                    "`modprobe nvidia-uvm` and `echo nvidia-uvm > /etc/modules-load.d/nvidia-uvm.conf` so it loads at boot",
                )
            });
        }
    }

    // nvidia-smi sees every GPU, by PCI address where known
    let smi = out.nvidia_smi.as_deref().map(parse_smi_query);
    let want_count = expect.addresses.len().max(expect.count);
    checks.push(match &smi {
        None => not_checked("nvidia-smi sees every GPU", "nvidia-smi --query-gpu=..."),
        Some((gpus, other)) => {
            let seen: BTreeSet<PciAddress> = gpus.iter().map(|g| g.bus_id).collect();
            let missing: Vec<String> = expect
                .addresses
                .iter()
                .filter(|a| !seen.iter().any(|s| a.covers(s)))
                .map(|a| a.to_string())
                .collect();
            let listing = if gpus.is_empty() {
                other.join(" / ")
            } else {
                gpus.iter()
                    .map(|g| format!("{} {}", g.bus_id, g.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if missing.is_empty() && gpus.len() >= want_count && !gpus.is_empty() {
                Check::pass(Layer::Guest, "nvidia-smi sees every GPU", listing)
            } else if gpus.is_empty()
                && other.iter().any(|l| l.contains("not found") || l.contains("No such file"))
            {
                Check::fail(
                    Layer::Guest,
                    "nvidia-smi sees every GPU",
                    listing,
                    "the NVIDIA driver's utilities are not installed in the guest",
                    "run `pvegpu apply` for this node (the guest phase installs the driver compat chooses for the GPUs), or see `pvegpu compat`",
                )
            } else {
                let saw = if missing.is_empty() {
                    format!("{} of {want_count} GPUs: {listing}", gpus.len())
                } else {
                    format!("missing {}; sees: {listing}", missing.join(", "))
                };
                Check::fail(
                    Layer::Guest,
                    "nvidia-smi sees every GPU",
                    saw,
                    "a GPU passed to the VM is not initialised by the driver: not in the VM config, the driver does not support it, or it failed at probe (`dmesg | grep -i nvrm`)",
                    "check `lspci -nnk` in the guest shows the card with `Kernel driver in use: nvidia`; check the VM layer above; install a driver branch that supports the card (`pvegpu compat`)",
                )
            }
        }
    });

    // compute capability
    if let (Some((gpus, _)), Some(want)) = (&smi, &expect.compute_cap) {
        if !gpus.is_empty() {
            let wrong: Vec<String> = gpus
                .iter()
                .filter(|g| g.compute_cap.as_deref() != Some(want.as_str()))
                .map(|g| {
                    format!(
                        "{} has {}",
                        g.bus_id,
                        g.compute_cap
                            .as_deref()
                            .unwrap_or("no compute_cap reported")
                    )
                })
                .collect();
            checks.push(if wrong.is_empty() {
                Check::pass(
                    Layer::Guest,
                    "compute capability",
                    format!("{want} on every GPU"),
                )
            } else if gpus.iter().all(|g| g.compute_cap.is_none()) {
                Check::skip(
                    Layer::Guest,
                    "compute capability",
                    "the driver reports no compute_cap (drivers before the 510 branch lack the field)",
                    "compare the cards' ids with `pvegpu compat`",
                )
            } else {
                Check::fail(
                    Layer::Guest,
                    "compute capability",
                    format!("want {want}; {}", wrong.join(", ")),
                    "a different card sits in the slot than the inventory was planned for",
                    "fix the inventory's gpus (ids) and re-run `pvegpu compat` for the driver and CUDA choice",
                )
            });
        }
    }

    // DKMS built for every installed kernel
    checks.push(match (&dkms, &out.kernels) {
        (None, _) => not_checked("DKMS built for every kernel", "dkms status"),
        (_, None) => not_checked("DKMS built for every kernel", "ls /boot/vmlinuz-*"),
        (Some(_), Some(k)) => {
            let kernels = parse_kernels(k);
            if nvidia_dkms.is_empty() {
                Check::warn(
                    Layer::Guest,
                    "DKMS built for every kernel",
                    "dkms status lists no nvidia module",
                    "the driver was not installed through DKMS, so a kernel upgrade will not rebuild it",
                    "install the distribution's DKMS package (Debian: nvidia-kernel-dkms) or the driver with --dkms",
                )
            } else {
                let versions: BTreeSet<&str> =
                    nvidia_dkms.iter().map(|e| e.version.as_str()).collect();
                let lacking: Vec<&String> =
                    kernels.iter().filter(|k| !installed_for(k)).collect();
                let saw = format!(
                    "nvidia {} for {}",
                    versions.iter().copied().collect::<Vec<_>>().join(", "),
                    kernels
                        .iter()
                        .filter(|k| installed_for(k))
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                if lacking.is_empty() {
                    Check::pass(Layer::Guest, "DKMS built for every kernel", saw)
                } else {
                    let list = lacking
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ");
                    let newest_lacks = kernels
                        .last()
                        .is_some_and(|n| lacking.iter().any(|k| compare_versions(k, n) == Ordering::Equal));
                    Check::fail(
                        Layer::Guest,
                        "DKMS built for every kernel",
                        format!("{saw}; not built for {list}"),
                        if newest_lacks {
                            "the newest kernel has no nvidia module: the guest boots without a GPU driver after its next reboot (usually missing linux-headers for it)".to_string()
                        } else {
                            "an installed kernel has no nvidia module; booting it leaves the GPU without a driver".to_string()
                        },
                        format!(
                            "install the headers (`apt install {}`) and run `dkms autoinstall -k KERNEL` for each, or remove the kernels you do not boot",
                            lacking
                                .iter()
                                .map(|k| format!("linux-headers-{k}"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        ),
                    )
                }
            }
        }
    });
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smi_bus_ids_have_eight_digit_domains() {
        assert_eq!(
            smi_bus_address("00000000:01:00.0").unwrap().to_string(),
            "0000:01:00.0"
        );
        assert_eq!(
            smi_bus_address("0000:c1:00.0").unwrap().to_string(),
            "0000:c1:00.0"
        );
        assert!(smi_bus_address("No devices were found").is_none());
    }

    #[test]
    fn dkms_both_layouts_and_added_only() {
        let e = dkms_status(
            "nvidia/535.183.01, 6.1.0-18-amd64, x86_64: installed\nnvidia, 470.256.02, 5.10.0-30-amd64, x86_64: installed (WARNING! Diff between built and installed module!)\nnvidia/550.1: added\n",
        );
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].kernel.as_deref(), Some("6.1.0-18-amd64"));
        assert_eq!(e[1].version, "470.256.02");
        assert_eq!(e[1].state, "installed");
        assert_eq!(e[2].kernel, None);
        assert_eq!(e[2].state, "added");
    }

    #[test]
    fn debian_module_names_count_as_the_driver() {
        for m in [
            "nvidia",
            "nvidia-current",
            "nvidia-tesla-470",
            "nvidia-open",
        ] {
            assert!(is_driver_module(m), "{m}");
        }
        assert!(!is_driver_module("nvidia-fs"));
    }

    #[test]
    fn kernels_from_boot_listing_sorted() {
        assert_eq!(
            parse_kernels("/boot/vmlinuz-6.1.0-21-amd64\n/boot/vmlinuz-6.1.0-18-amd64\n"),
            vec!["6.1.0-18-amd64", "6.1.0-21-amd64"]
        );
    }
}

//! Guest layer, from raw command output recorded on the guest (see [`GuestOutputs`] for the
//! commands). A missing output (`None`) makes its checks "not checked", never a pass.

use crate::core::check::{Check, Layer};
use crate::facts::kernels::compare_versions;
use crate::facts::nvidia_smi::{self, SmiQuery};
use crate::guest::parse::{DkmsEntry, dkms_status, guest_kernels, proc_modules};
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

/// Kernel versions from `ls /boot/vmlinuz-*` (or bare versions), oldest first, read as the
/// guest planner reads its kernels.
pub fn parse_kernels(text: &str) -> Vec<String> {
    guest_kernels(text)
        .into_iter()
        .filter(|k| k.bootable)
        .map(|k| k.version)
        .collect()
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

/// What `dkms status` lists for the driver's own module.
struct DriverDkms(Vec<DkmsEntry>);

impl DriverDkms {
    fn parse(text: &str) -> Self {
        DriverDkms(
            dkms_status(text)
                .into_iter()
                .filter(|e| is_driver_module(&e.module))
                .collect(),
        )
    }

    fn installed_for(&self, kernel: &str) -> bool {
        self.0
            .iter()
            .any(|e| e.kernel.as_deref() == Some(kernel) && e.state == "installed")
    }
}

pub fn checks(out: &GuestOutputs, expect: &GuestExpect) -> Vec<Check> {
    let dkms = out.dkms_status.as_deref().map(DriverDkms::parse);
    let modules = out.lsmod.as_deref().map(proc_modules);
    let smi = out.nvidia_smi.as_deref().map(nvidia_smi::query);
    let mut checks = vec![driver_loaded(
        modules.as_ref(),
        out.uname_r.as_deref(),
        dkms.as_ref(),
    )];
    checks.extend(modules.as_ref().and_then(uvm_loaded));
    checks.push(smi_sees_every_gpu(smi.as_ref(), expect));
    checks.extend(smi.as_ref().and_then(|q| compute_capability(q, expect)));
    checks.push(dkms_every_kernel(dkms.as_ref(), out.kernels.as_deref()));
    checks
}

/// The driver is loaded for the running kernel; if not, nouveau, a missing DKMS build or a
/// module that failed to load is why.
fn driver_loaded(
    modules: Option<&BTreeSet<String>>,
    uname: Option<&str>,
    dkms: Option<&DriverDkms>,
) -> Check {
    let name = "nvidia driver loaded";
    let Some(mods) = modules else {
        return not_checked(name, "lsmod");
    };
    let running = uname.map(str::trim).unwrap_or("the running kernel");
    if mods.contains("nvidia") {
        Check::pass(Layer::Guest, name, format!("nvidia is loaded in {running}"))
    } else if mods.contains("nouveau") {
        Check::fail(
            Layer::Guest,
            name,
            format!("nouveau is loaded in {running}, nvidia is not"),
            "the in-kernel nouveau driver claimed the GPU before nvidia could",
            "blacklist nouveau (`/etc/modprobe.d/blacklist-nouveau.conf`: `blacklist nouveau` and `options nouveau modeset=0`), `update-initramfs -u`, reboot the guest",
        )
    } else if uname.is_some() && dkms.is_some_and(|d| !d.installed_for(running)) {
        Check::fail(
            Layer::Guest,
            name,
            format!("no nvidia module loaded in {running}"),
            format!("DKMS has no nvidia module built for the running kernel {running}"),
            format!(
                "`apt install linux-headers-{running}` then `dkms autoinstall -k {running}`, and `modprobe nvidia`"
            ),
        )
    } else {
        Check::fail(
            Layer::Guest,
            name,
            format!("no nvidia module loaded in {running}"),
            "the module exists but did not load (see `dmesg | grep -i nvrm`; Secure Boot without an enrolled MOK key is a common reason)",
            "`modprobe nvidia` and read the error; with Secure Boot, enrol the DKMS key (`mokutil --import /var/lib/dkms/mok.pub`; on Ubuntu /var/lib/shim-signed/mok/MOK.der) or turn Secure Boot off in the VM's firmware",
        )
    }
}

/// CUDA containers need nvidia-uvm, which loads only on demand; a CDI spec generated while
/// it is absent lacks its device nodes (RULES.md 5a, nvidia-container-toolkit#50). Only
/// checked where nvidia itself is loaded.
fn uvm_loaded(mods: &BTreeSet<String>) -> Option<Check> {
    if !mods.contains("nvidia") {
        return None;
    }
    Some(if mods.contains("nvidia_uvm") {
        Check::pass(Layer::Guest, "nvidia-uvm loaded", "nvidia_uvm is loaded")
    } else {
        Check::warn(
            Layer::Guest,
            "nvidia-uvm loaded",
            "nvidia_uvm is not loaded",
            "nvidia-smi works without it but the CUDA runtime needs /dev/nvidia-uvm; a CDI spec generated now would leave it out",
            "`modprobe nvidia-uvm` and `echo nvidia-uvm > /etc/modules-load.d/nvidia-uvm.conf` so it loads at boot",
        )
    })
}

/// nvidia-smi sees every GPU, by PCI address where known.
fn smi_sees_every_gpu(smi: Option<&SmiQuery>, expect: &GuestExpect) -> Check {
    let name = "nvidia-smi sees every GPU";
    let Some(SmiQuery { gpus, other }) = smi else {
        return not_checked(name, "nvidia-smi --query-gpu=...");
    };
    let want_count = expect.addresses.len().max(expect.count);
    let seen: BTreeSet<PciAddress> = gpus.iter().map(|g| g.address).collect();
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
            .map(|g| format!("{} {}", g.address, g.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if missing.is_empty() && gpus.len() >= want_count && !gpus.is_empty() {
        Check::pass(Layer::Guest, name, listing)
    } else if gpus.is_empty()
        && other
            .iter()
            .any(|l| l.contains("not found") || l.contains("No such file"))
    {
        Check::fail(
            Layer::Guest,
            name,
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
            name,
            saw,
            "a GPU passed to the VM is not initialised by the driver: not in the VM config, the driver does not support it, or it failed at probe (`dmesg | grep -i nvrm`)",
            "check `lspci -nnk` in the guest shows the card with `Kernel driver in use: nvidia`; check the VM layer above; install a driver branch that supports the card (`pvegpu compat`)",
        )
    }
}

/// Every GPU reports the compute capability the inventory was planned for; not checked
/// without an expectation or without a GPU.
fn compute_capability(smi: &SmiQuery, expect: &GuestExpect) -> Option<Check> {
    let want = expect.compute_cap.as_ref()?;
    let gpus = &smi.gpus;
    if gpus.is_empty() {
        return None;
    }
    let name = "compute capability";
    let wrong: Vec<String> = gpus
        .iter()
        .filter(|g| g.compute_cap.as_deref() != Some(want.as_str()))
        .map(|g| {
            format!(
                "{} has {}",
                g.address,
                g.compute_cap
                    .as_deref()
                    .unwrap_or("no compute_cap reported")
            )
        })
        .collect();
    Some(if wrong.is_empty() {
        Check::pass(Layer::Guest, name, format!("{want} on every GPU"))
    } else if gpus.iter().all(|g| g.compute_cap.is_none()) {
        Check::skip(
            Layer::Guest,
            name,
            "the driver reports no compute_cap (drivers before the 510 branch lack the field)",
            "compare the cards' ids with `pvegpu compat`",
        )
    } else {
        Check::fail(
            Layer::Guest,
            name,
            format!("want {want}; {}", wrong.join(", ")),
            "a different card sits in the slot than the inventory was planned for",
            "fix the inventory's gpus (ids) and re-run `pvegpu compat` for the driver and CUDA choice",
        )
    })
}

/// DKMS built the driver for every installed kernel, so none boots without it.
fn dkms_every_kernel(dkms: Option<&DriverDkms>, kernels: Option<&str>) -> Check {
    let name = "DKMS built for every kernel";
    let (dkms, kernels) = match (dkms, kernels) {
        (None, _) => return not_checked(name, "dkms status"),
        (_, None) => return not_checked(name, "ls /boot/vmlinuz-*"),
        (Some(d), Some(k)) => (d, parse_kernels(k)),
    };
    if dkms.0.is_empty() {
        return Check::warn(
            Layer::Guest,
            name,
            "dkms status lists no nvidia module",
            "the driver was not installed through DKMS, so a kernel upgrade will not rebuild it",
            "install the distribution's DKMS package (Debian: nvidia-kernel-dkms) or the driver with --dkms",
        );
    }
    let versions: BTreeSet<&str> = dkms.0.iter().map(|e| e.version.as_str()).collect();
    let (built, lacking): (Vec<&str>, Vec<&str>) = kernels
        .iter()
        .map(String::as_str)
        .partition(|k| dkms.installed_for(k));
    let saw = format!(
        "nvidia {} for {}",
        versions.into_iter().collect::<Vec<_>>().join(", "),
        built.join(", ")
    );
    if lacking.is_empty() {
        return Check::pass(Layer::Guest, name, saw);
    }
    let newest_lacks = kernels.last().is_some_and(|n| {
        lacking
            .iter()
            .any(|k| compare_versions(k, n) == Ordering::Equal)
    });
    Check::fail(
        Layer::Guest,
        name,
        format!("{saw}; not built for {}", lacking.join(", ")),
        if newest_lacks {
            "the newest kernel has no nvidia module: the guest boots without a GPU driver after its next reboot (usually missing linux-headers for it)"
        } else {
            "an installed kernel has no nvidia module; booting it leaves the GPU without a driver"
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

#[cfg(test)]
mod tests {
    use super::*;

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

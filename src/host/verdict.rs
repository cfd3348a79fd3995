//! The passthrough verdict for one device: `passable`, `refused` (known unsafe, with reasons)
//! or `unknown` (a fact its safety depends on is missing; each missing fact comes with the
//! command that supplies it). Pure: facts in, verdict out. `discover`, the planner and the
//! postconditions all judge through here, so they cannot disagree.
//!
//! Nothing is passable while a fact it depends on is unknown: the planner refuses `unknown`
//! exactly as it refuses `refused`.

use crate::core::plan::Refusal;
use crate::facts::modconf::{self, Directive};
use crate::facts::{HostFacts, PciDevice, Sriov};
use crate::inventory::Risk;
use crate::pci::PciAddress;
use serde::Serialize;
use std::collections::BTreeSet;

/// Why a device is not passable. The `*_unknown` codes mean "cannot tell".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    SharedGroup,
    BootVga,
    OnlyDisplay,
    AcsOverride,
    AcsOverrideUnknown,
    NoIommu,
    IommuUnknown,
    GroupsUnknown,
    BootVgaUnknown,
    OnlyDisplayUnknown,
    InterruptRemappingOff,
    InterruptRemappingUnknown,
    RootDiskController,
    ManagementNic,
    SriovPf,
    SriovVf,
    HostInUse,
    HostUseUnknown,
    HostDevicesUnknown,
    DeviceUnknown,
}

impl Code {
    pub fn is_unknown(self) -> bool {
        matches!(
            self,
            Code::IommuUnknown
                | Code::GroupsUnknown
                | Code::BootVgaUnknown
                | Code::OnlyDisplayUnknown
                | Code::InterruptRemappingUnknown
                | Code::AcsOverrideUnknown
                | Code::HostDevicesUnknown
                | Code::HostUseUnknown
                | Code::DeviceUnknown
        )
    }

    /// The inventory's name for a risk an admin may take on (`[host] accept`): the host keeps
    /// working, only its isolation or its console is weaker. Unknowns are never acceptable.
    pub fn acceptable(self) -> Option<Risk> {
        match self {
            Code::AcsOverride => Some(Risk::AcsOverride),
            Code::OnlyDisplay => Some(Risk::OnlyDisplay),
            Code::BootVga => Some(Risk::BootVga),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub code: Code,
    pub message: String,
    /// The way out, for the planner's refusal.
    #[serde(skip)]
    pub hint: String,
}

/// A fact the verdict needs and the command that prints it on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Need {
    pub fact: &'static str,
    pub command: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Passable,
    Refused,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceVerdict {
    pub address: String,
    pub verdict: Verdict,
    pub reasons: Vec<Reason>,
    pub need: Vec<Need>,
    /// Risks the inventory accepted (`[host] accept`), which would otherwise refuse.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accepted: Vec<Reason>,
}

/// On, off, or not known from the facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    On,
    Off,
    Unknown,
}

/// What the inventory accepts for a node.
#[derive(Debug, Clone, Default)]
pub struct Accepted {
    pub unsafe_interrupts: bool,
    pub risks: Vec<Risk>,
}

impl Accepted {
    pub fn of(node: &crate::inventory::Node) -> Accepted {
        Accepted {
            unsafe_interrupts: node.host.allow_unsafe_interrupts,
            risks: node.host.accept.clone(),
        }
    }
}

/// The node-wide facts every device verdict rests on.
pub fn iommu(facts: &HostFacts) -> State {
    // /sys/class/iommu lists the IOMMUs the running kernel registered (intel-iommu's dmarN,
    // amd_iommu's ivhdN)
    let registered = facts.iommu_class.as_ref().map(|c| !c.is_empty());
    if registered == Some(true) || facts.kernel_log.iommu_initialised {
        return State::On;
    }
    // VFIO's no-IOMMU mode makes groups of its own (drivers/vfio/group.c,
    // vfio_noiommu_group_alloc): where it may be on, a group proves nothing by itself
    if facts.iommu_active() && registered.is_none() && !noiommu_mode(facts) {
        return State::On;
    }
    let firmware_has_none = !facts.acpi_tables.is_empty()
        && !facts.acpi_tables.iter().any(|t| t == "DMAR" || t == "IVRS");
    // a sysfs walk that found no group, an empty /sys/class/iommu, or only VFIO's no-IOMMU
    // groups is the kernel saying so
    let kernel_has_none =
        (facts.groups_listed && !facts.devices.is_empty() && !facts.iommu_active())
            || registered == Some(false);
    if firmware_has_none || kernel_has_none {
        State::Off
    } else {
        State::Unknown
    }
}

/// VFIO's unsafe no-IOMMU mode is on or asked for: a group named `vfio-noiommu`, or
/// `vfio.enable_unsafe_noiommu_mode` on the running command line or in a modprobe.d file
/// (Documentation/driver-api/vfio.rst: "this mode ... provides no device isolation").
pub fn noiommu_mode(facts: &HostFacts) -> bool {
    const PARAM: &str = "enable_unsafe_noiommu_mode";
    // the kernel's kstrtobool: y, Y, 1 and on are true
    let on = |v: &str| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "y" | "on");
    let on_cmdline = facts.proc_cmdline.iter().any(|w| {
        w.split_once('=')
            .is_some_and(|(k, v)| k.strip_prefix("vfio.") == Some(PARAM) && on(v))
    });
    let in_modprobe = facts.files_under("/etc/modprobe.d/").any(|(path, f)| {
        modconf::parse_modprobe(path, &f.content)
            .iter()
            .any(|d| match &d.item {
                Directive::Options { module, params } => {
                    module == "vfio" && params.iter().any(|(k, v)| k == PARAM && on(v))
                }
                _ => false,
            })
    });
    !facts.noiommu.is_empty() || on_cmdline || in_modprobe
}

/// Interrupt remapping from the kernel log, or from /proc/interrupts' `IR-` chips (which,
/// unlike the log, do not rotate away on a host that has been up for months).
pub fn interrupt_remapping(facts: &HostFacts) -> State {
    match (facts.kernel_log.irq_remapping, facts.ir_chips) {
        (Some(true), _) | (_, Some(true)) => State::On,
        (Some(false), _) => State::Off,
        _ => State::Unknown,
    }
}

/// `pcie_acs_override` makes the kernel report groups it has split by fiat: they prove no
/// isolation (kernel-parameters.txt: "Override missing PCIe ACS support"; the Proxmox
/// wiki's PCI passthrough page warns it lets devices reach each other's memory). Read from the
/// running and the configured command lines and the kernel's own warning.
pub fn acs_override(facts: &HostFacts) -> Vec<String> {
    let mut seen: Vec<String> = facts
        .proc_cmdline
        .iter()
        .filter(|w| w.starts_with("pcie_acs_override"))
        .map(|w| format!("/proc/cmdline: {w}"))
        .collect();
    for path in ["/etc/kernel/cmdline", "/etc/default/grub"] {
        let configured = facts
            .files
            .iter()
            .filter(|(p, _)| *p == path || p.starts_with("/etc/default/grub.d/"))
            .filter(|(_, f)| f.link.is_none());
        for (p, f) in configured {
            for line in f.content.lines() {
                let active = !line.trim_start().starts_with('#');
                if active && line.contains("pcie_acs_override") {
                    seen.push(format!("{p}: {}", line.trim()));
                }
            }
        }
    }
    seen.extend(
        facts
            .kernel_log
            .acs_override
            .iter()
            .map(|l| format!("kernel log: {l}")),
    );
    seen.dedup();
    seen
}

/// Judge one device as a target together with `targets` (its card's other functions).
pub fn judge(
    facts: &HostFacts,
    dev: &PciDevice,
    targets: &BTreeSet<PciAddress>,
    accepted: &Accepted,
) -> DeviceVerdict {
    let mut reasons = node_reasons(facts, accepted);
    reasons.extend(display_reasons(facts, dev));
    reasons.extend(group_reasons(facts, dev, targets));
    reasons.extend(host_device_reasons(facts, dev));
    reasons.extend(sriov_reasons(dev));
    reasons.extend(in_use_reasons(facts, dev));
    let (accepted_reasons, reasons): (Vec<Reason>, Vec<Reason>) =
        reasons.into_iter().partition(|r| {
            r.code
                .acceptable()
                .is_some_and(|k| accepted.risks.contains(&k))
        });
    let need = reasons.iter().filter_map(|r| need_for(r.code)).collect();
    let verdict = if reasons.iter().any(|r| !r.code.is_unknown()) {
        Verdict::Refused
    } else if reasons.is_empty() {
        Verdict::Passable
    } else {
        Verdict::Unknown
    };
    DeviceVerdict {
        address: dev.address.to_string(),
        verdict,
        reasons,
        need,
        accepted: accepted_reasons,
    }
}

/// A target the facts do not list at all: nothing about it is known.
pub fn not_listed(facts: &HostFacts, address: &PciAddress, accepted: &Accepted) -> DeviceVerdict {
    let mut reasons = node_reasons(facts, accepted);
    reasons.push(reason(
        Code::DeviceUnknown,
        format!("the facts do not list {address}"),
        "add the node's lspci output",
    ));
    // the kernel log can still say it is the boot device
    if facts
        .kernel_log
        .boot_vga
        .is_some_and(|b| address.covers(&b))
    {
        reasons.push(reason(
            Code::BootVga,
            format!("{address} is the boot VGA device (kernel log: vgaarb)"),
            "select another GPU as primary display in the firmware setup",
        ));
    }
    // nvidia-smi can still show it in use by the host's driver
    let users = facts.gpu_users.of(address);
    if facts.gpu_users.gpus.iter().any(|(_, a)| address.covers(a)) && !users.is_empty() {
        reasons.push(reason(
            Code::HostInUse,
            format!("{address} is in use through the host's NVIDIA driver by {}", users.join(", ")),
            "stop those users (or take /dev/nvidia* out of the container configs), or pass another GPU",
        ));
    }
    DeviceVerdict {
        address: address.to_string(),
        verdict: if reasons.iter().any(|r| !r.code.is_unknown()) {
            Verdict::Refused
        } else {
            Verdict::Unknown
        },
        need: reasons.iter().filter_map(|r| need_for(r.code)).collect(),
        reasons,
        accepted: Vec::new(),
    }
}

impl DeviceVerdict {
    /// The planner's refusals: one per reason, unknowns with the command that would tell.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.reasons
            .iter()
            .map(|r| Refusal {
                reason: r.message.clone(),
                hint: match self.need.iter().find(|n| need_code(n.fact) == Some(r.code)) {
                    Some(n) => format!("{}; on the node, `{}` tells", r.hint, n.command),
                    None => r.hint.clone(),
                },
            })
            .collect()
    }
}

fn reason(code: Code, message: String, hint: impl Into<String>) -> Reason {
    Reason {
        code,
        message,
        hint: hint.into(),
    }
}

fn node_reasons(facts: &HostFacts, accepted: &Accepted) -> Vec<Reason> {
    let mut out = Vec::new();
    let tech = match facts.cpu_vendor {
        crate::facts::CpuVendor::Amd => "AMD-Vi (IOMMU)",
        _ => "Intel VT-d",
    };
    match iommu(facts) {
        State::On => {}
        State::Off if !facts.noiommu.is_empty() => out.push(reason(
            Code::NoIommu,
            "the IOMMU is off: the only IOMMU groups are VFIO's no-IOMMU groups (`vfio-noiommu`), which isolate nothing".into(),
            format!("remove `vfio.enable_unsafe_noiommu_mode`, enable {tech} in the firmware setup, reboot, then run pvegpu again"),
        )),
        State::Off => out.push(reason(
            Code::NoIommu,
            "the IOMMU is off: the firmware describes none (no DMAR or IVRS table) or the running kernel has no IOMMU groups".into(),
            format!("enable {tech} in the firmware setup (kernels before 6.8 on Intel also need intel_iommu=on), reboot, then run pvegpu again"),
        )),
        State::Unknown if facts.iommu_active() => out.push(reason(
            Code::IommuUnknown,
            "whether the IOMMU is on is unknown: IOMMU groups are listed, but VFIO's no-IOMMU mode is asked for (`vfio.enable_unsafe_noiommu_mode`), so they may be its own groups, which isolate nothing".into(),
            "add `ls /sys/class/iommu` (empty when no IOMMU is registered), or gather the facts live (`pvegpu discover --node N`)",
        )),
        State::Unknown => out.push(reason(
            Code::IommuUnknown,
            "whether the IOMMU is on is unknown: the facts hold no IOMMU groups, no /sys/class/iommu and no kernel line about it".into(),
            "gather the facts live (`pvegpu discover --node N`) or add the output",
        )),
    }
    match interrupt_remapping(facts) {
        State::On => {}
        _ if accepted.unsafe_interrupts => {}
        State::Off => out.push(reason(
            Code::InterruptRemappingOff,
            "the kernel reports interrupt remapping is not enabled: a guest could inject interrupts into the host".into(),
            "enable interrupt remapping / x2APIC in the firmware; only if the platform cannot, set `allow_unsafe_interrupts = true` under the node's [host] table and accept that a guest could attack the host",
        )),
        State::Unknown => out.push(reason(
            Code::InterruptRemappingUnknown,
            "interrupt remapping is not confirmed: no `Enabled IRQ remapping` / `Interrupt remapping enabled` kernel line and no IR- interrupt chips in the facts".into(),
            "gather the facts live or add the output; if the platform truly lacks it, `allow_unsafe_interrupts = true` under [host] accepts the risk",
        )),
    }
    let acs = acs_override(facts);
    if acs.is_empty() && !facts.cmdline_known {
        out.push(reason(
            Code::AcsOverrideUnknown,
            "whether pcie_acs_override is in use is unknown: the facts hold no kernel command line"
                .into(),
            "add the output",
        ));
    }
    if !acs.is_empty() {
        out.push(reason(
            Code::AcsOverride,
            format!("ACS override is in use ({}): the IOMMU groups are split by the kernel parameter, not by the hardware, so they prove no isolation", acs.join("; ")),
            "remove pcie_acs_override from the kernel command line and move the card to a slot with its own group; to take the risk knowingly, add \"acs_override\" to `accept` under the node's [host] table",
        ));
    }
    out
}

fn display_reasons(facts: &HostFacts, dev: &PciDevice) -> Vec<Reason> {
    // a virtual function never boots the host nor carries its console
    if !dev.is_console_capable() || matches!(dev.sriov, Some(Sriov::VirtualFunction { .. })) {
        return Vec::new();
    }
    let display_slots: BTreeSet<PciAddress> = facts
        .devices
        .iter()
        .filter(|d| {
            d.is_console_capable() && !matches!(d.sriov, Some(Sriov::VirtualFunction { .. }))
        })
        .map(|d| d.address.slot())
        .collect();
    let only = display_slots.len() == 1;
    let mut out = Vec::new();
    if only && !facts.consoles_complete {
        out.push(reason(
            Code::OnlyDisplayUnknown,
            format!("whether {} is the host's only display device is unknown: the facts list only some of its PCI devices", dev.address),
            "add the full lspci output",
        ));
    } else if only {
        out.push(reason(
            Code::OnlyDisplay,
            format!("{} is the host's only display device: the host would lose its console and firmware framebuffer", dev.address),
            "add a display device for the host (an iGPU or a cheap card), or, for single-GPU passthrough, add \"only_display\" to `accept` under the node's [host] table",
        ));
    }
    match dev.boot_vga {
        Some(true) => out.push(reason(
            Code::BootVga,
            format!("{} is the boot VGA device: the host's console and firmware framebuffer use it", dev.address),
            "select another GPU as primary display in the firmware setup (or add a cheap card for the host), then run discover again; for single-GPU passthrough, add \"boot_vga\" to `accept` under the node's [host] table",
        )),
        // the only display device boots the host whatever its boot_vga says
        None if !only => out.push(reason(
            Code::BootVgaUnknown,
            format!("whether the host boots on {} is unknown (no boot_vga in the facts)", dev.address),
            "gather the facts live, or add the boot_vga files' output",
        )),
        _ => {}
    }
    out
}

/// The kernel's viability rule for a vfio group (Documentation/driver-api/vfio.rst, "Groups,
/// Devices, and IOMMUs"): every device in it must be bound to vfio, have no driver, or be a
/// bridge. Anything else is a device the host still uses.
fn group_reasons(
    facts: &HostFacts,
    dev: &PciDevice,
    targets: &BTreeSet<PciAddress>,
) -> Vec<Reason> {
    if iommu(facts) == State::Off {
        return Vec::new();
    }
    if facts.noiommu.contains(&dev.address) {
        return vec![reason(
            Code::NoIommu,
            format!(
                "{} is in a VFIO no-IOMMU group (`vfio-noiommu`): no IOMMU isolates it",
                dev.address
            ),
            "remove `vfio.enable_unsafe_noiommu_mode`, enable the IOMMU in the firmware, reboot, then run pvegpu again",
        )];
    }
    let Some(group) = dev.iommu_group else {
        return vec![reason(
            Code::GroupsUnknown,
            format!("the IOMMU group of {} is unknown", dev.address),
            "gather the facts live, or add the IOMMU group listing",
        )];
    };
    let foreign: Vec<String> = facts
        .group_members(group)
        .into_iter()
        .filter(|m| {
            let own = targets.contains(&m.address) || m.address.slot() == dev.address.slot();
            let harmless = m.is_bridge()
                || m.driver.is_none() && facts.drivers_known
                || m.driver.as_deref() == Some("vfio-pci");
            !(own || harmless)
        })
        .map(|m| format!("{} ({}: {})", m.address, m.class_name, m.short_name()))
        .collect();
    if foreign.is_empty() {
        return Vec::new();
    }
    vec![reason(
        Code::SharedGroup,
        format!(
            "{} shares IOMMU group {group} with {}, which the host would lose too",
            dev.address.slot(),
            foreign.join(", ")
        ),
        "move the card to a slot whose IOMMU group holds only the card (see `pvegpu discover`), or enable ACS in the firmware; pvegpu does not use pcie_acs_override, which only pretends isolation",
    )]
}

/// SR-IOV shares one card among several users (PCI-SIG SR-IOV; the kernel's
/// Documentation/PCI/pci-iov-howto.rst): handing a function to one VM is another workflow
/// (Proxmox's resource mappings of VFs), which pvegpu does not set up.
fn sriov_reasons(dev: &PciDevice) -> Vec<Reason> {
    match dev.sriov {
        Some(Sriov::PhysicalFunction { vfs }) => vec![reason(
            Code::SriovPf,
            format!(
                "{} is an SR-IOV physical function with {vfs} virtual function(s) enabled: passing it through takes them from whoever uses them",
                dev.address
            ),
            "pass a virtual function with Proxmox's own PCI mapping (another workflow, which pvegpu does not set up), or disable the VFs (sriov_numvfs = 0) to pass the whole card",
        )],
        Some(Sriov::VirtualFunction { .. }) => vec![reason(
            Code::SriovVf,
            format!(
                "{} is an SR-IOV virtual function: VF passthrough is another workflow, which pvegpu does not set up",
                dev.address
            ),
            "use Proxmox's PCI resource mapping for VFs, or pass the whole card with its VFs disabled",
        )],
        None => Vec::new(),
    }
}

/// A GPU the host's nvidia driver serves to processes or containers: binding it to vfio-pci
/// takes it from them (Proxmox's LXC GPU sharing uses the host driver).
fn in_use_reasons(facts: &HostFacts, dev: &PciDevice) -> Vec<Reason> {
    let nvidia = dev.id.vendor == 0x10de && dev.base_class() == 0x03;
    let on_host_driver = dev.driver.as_deref().is_none_or(|d| d != "vfio-pci");
    let users = facts.gpu_users.of(&dev.address);
    // on the nvidia driver, who uses it is only known from nvidia-smi
    if nvidia
        && dev.driver.as_deref() == Some("nvidia")
        && !facts.gpu_users.smi_read
        && users.is_empty()
    {
        return vec![reason(
            Code::HostUseUnknown,
            format!(
                "{} is on the host's nvidia driver, and whether processes use it is unknown",
                dev.address
            ),
            "add nvidia-smi's output",
        )];
    }
    if !nvidia || !on_host_driver || users.is_empty() {
        return Vec::new();
    }
    vec![reason(
        Code::HostInUse,
        format!(
            "{} is in use through the host's NVIDIA driver by {}",
            dev.address,
            users.join(", ")
        ),
        "stop those users (or take /dev/nvidia* out of the container configs), or pass another GPU",
    )]
}

/// Devices the host cannot live without: its root disk's controller, its management NIC.
/// A display device in a viable group cannot be either; anything else must be checked.
fn host_device_reasons(facts: &HostFacts, dev: &PciDevice) -> Vec<Reason> {
    // only storage, network and USB controllers can carry the root disk or the management
    // link; a function of a graphics card (its audio, its USB-C) cannot
    let of_a_graphics_card = facts.devices.iter().any(|d| {
        d.address.slot() == dev.address.slot() && d.address.function == Some(0) && d.is_display()
    });
    let could_be_needed = matches!(dev.base_class(), 0x01 | 0x02 | 0x0c) && !of_a_graphics_card;
    if could_be_needed && let Some((why, hint)) = host_devices_unknown(facts) {
        return vec![reason(
            Code::HostDevicesUnknown,
            format!(
                "whether {} is the root disk's controller or the management NIC is unknown: {why}",
                dev.address
            ),
            hint,
        )];
    }
    let group_of = |a: &PciAddress| facts.device(a).and_then(|d| d.iommu_group);
    let same_place = |a: &PciAddress| {
        *a == dev.address || (dev.iommu_group.is_some() && group_of(a) == dev.iommu_group)
    };
    let mut out = Vec::new();
    for ctrl in facts.root.controllers.iter().filter(|c| same_place(c)) {
        out.push(reason(
            Code::RootDiskController,
            format!(
                "{} is or shares an IOMMU group with {ctrl}, the controller of the root filesystem",
                dev.address
            ),
            "the host would not boot; choose another device or move the card",
        ));
    }
    for nic in facts.management.nics.iter().filter(|c| same_place(c)) {
        out.push(reason(
            Code::ManagementNic,
            format!(
                "{} is or shares an IOMMU group with {nic}, the NIC behind {} that carries management traffic",
                dev.address.slot(),
                facts.management.interfaces.join(", ")
            ),
            "the node would drop off the network; choose another device or move the card",
        ));
    }
    out
}

/// Why the devices the host lives on are not known, and what would tell. Facts read live
/// whose walks found no root controller or no management NIC are as unknown as facts that
/// never read them.
fn host_devices_unknown(facts: &HostFacts) -> Option<(String, &'static str)> {
    if !facts.host_devices_known {
        let why = "the facts do not show the root disk or the network interfaces".to_string();
        return Some((why, "gather the facts live (`pvegpu discover --node N`)"));
    }
    if let Some(why) = facts.root.unresolved() {
        return Some((
            why,
            "see which disks hold / with `lsblk -s \"$(findmnt -no SOURCE /)\"` (for ZFS, `zpool status`) on the node; pass a device only once you know it is not one of their controllers",
        ));
    }
    let why = facts.management.unresolved()?;
    Some((
        why,
        "see which NIC carries the node's traffic with `ip route show default` and `ls -l /sys/class/net/` on the node",
    ))
}

const NEEDS: &[(&str, Code)] = &[
    ("kernel_cmdline", Code::AcsOverrideUnknown),
    ("host_devices", Code::HostDevicesUnknown),
    ("gpu_users", Code::HostUseUnknown),
    ("iommu", Code::IommuUnknown),
    ("iommu_groups", Code::GroupsUnknown),
    ("boot_vga", Code::BootVgaUnknown),
    ("pci_devices", Code::OnlyDisplayUnknown),
    ("pci_device", Code::DeviceUnknown),
    ("interrupt_remapping", Code::InterruptRemappingUnknown),
];

fn need_code(fact: &str) -> Option<Code> {
    NEEDS.iter().find(|(f, _)| *f == fact).map(|(_, c)| *c)
}

fn need_for(code: Code) -> Option<Need> {
    let (fact, _) = NEEDS.iter().find(|(_, c)| *c == code)?;
    let command = match code {
        Code::IommuUnknown => "ls /sys/class/iommu; dmesg | grep -e DMAR -e IOMMU -e AMD-Vi".into(),
        Code::GroupsUnknown => "find /sys/kernel/iommu_groups/ -type l".into(),
        Code::BootVgaUnknown => "grep -H . /sys/bus/pci/devices/*/boot_vga".into(),
        Code::OnlyDisplayUnknown | Code::DeviceUnknown => "lspci -nnk -D".into(),
        Code::HostUseUnknown => "nvidia-smi; grep -H nvidia /etc/pve/lxc/*.conf".into(),
        Code::AcsOverrideUnknown => "cat /proc/cmdline".into(),
        Code::HostDevicesUnknown => "findmnt -no SOURCE /; ip route show default".into(),
        _ => "grep -c IR- /proc/interrupts; journalctl -k -b | grep -i -e 'IRQ remapping' -e 'Interrupt remapping'".into(),
    };
    Some(Need { fact, command })
}

//! Host facts: one probe script run in one SSH round trip, and pure parsers over its output.
//!
//! `PROBE` is what runs on the node; [`RawFacts`] splits its output into sections; the parser
//! modules below turn each section into data; [`HostFacts::from_raw`] assembles them. A saved
//! facts file is the probe's output verbatim, so planning from it and planning live are the
//! same code path.

pub mod boot;
pub mod cdi;
pub mod gpu_users;
pub mod initramfs;
pub mod iommu_groups;
pub mod kernel_log;
pub mod kernels;
pub mod lspci;
pub mod modconf;
pub mod nvidia_smi;
pub mod os_release;
pub mod paste;
pub mod pci_tables;
pub mod pve;
pub mod raw;
pub mod sysfs_pci;
pub mod topology;

use crate::pci::{PciAddress, PciId};
use boot::BootLoader;
pub use raw::RawFacts;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A regex written in this code base: one that does not compile is a bug the unit tests of
/// its parser catch, not a runtime condition.
pub(crate) fn fixed_regex(pattern: &str) -> regex::Regex {
    regex::Regex::new(pattern).expect("fixed regex")
}

/// The read-only script that gathers every host fact.
pub const PROBE: &str = concat!(
    include_str!("../probe-prelude.sh"),
    include_str!("probe.sh")
);

#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error(transparent)]
    Raw(#[from] raw::RawError),
    #[error("section `{section}` (line {line}): {source}")]
    Groups {
        section: &'static str,
        line: usize,
        #[source]
        source: iommu_groups::GroupError,
    },
    #[error("the facts have no `{section}` section{}", if .hint.is_empty() { String::new() } else { format!(" ({})", .hint) })]
    Missing {
        section: &'static str,
        hint: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuVendor {
    Intel,
    Amd,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileFact {
    pub content: String,
    pub mode: Option<String>,
    pub owner: Option<String>,
    pub mtime: Option<i64>,
    /// Where a symlink points (e.g. /etc/modules-load.d/modules.conf -> /etc/modules).
    pub link: Option<String>,
}

impl FileFact {
    /// A probe's `file <path> mode=.. owner=.. mtime=.. [link=..]` section.
    pub fn from_section(s: &raw::Section) -> Self {
        let attrs = s.attrs();
        FileFact {
            content: s.body.clone(),
            mode: attrs.get("mode").map(|v| v.to_string()),
            owner: attrs.get("owner").map(|v| v.to_string()),
            mtime: attrs.get("mtime").and_then(|v| v.parse().ok()),
            link: attrs.get("link").map(|v| v.to_string()),
        }
    }
}

/// One PCI function, merged from sysfs (authoritative) and lspci (names, candidate modules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PciDevice {
    pub address: PciAddress,
    pub class: u32,
    pub class_name: String,
    pub description: String,
    pub id: PciId,
    pub subsystem: Option<PciId>,
    pub driver: Option<String>,
    /// Modules that could drive it (lspci's "Kernel modules:").
    pub modules: Vec<String>,
    pub iommu_group: Option<u32>,
    /// None: the facts do not say (lspci alone cannot tell which card the host boots on).
    pub boot_vga: Option<bool>,
    pub reset_methods: Vec<String>,
    pub driver_override: Option<String>,
    pub upstream: Vec<PciAddress>,
    pub sriov: Option<Sriov>,
}

/// A device's part in SR-IOV, where the facts show one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sriov {
    /// A physical function with this many virtual functions enabled.
    PhysicalFunction { vfs: u32 },
    /// A virtual function (of this physical function, where known).
    VirtualFunction { pf: Option<PciAddress> },
}

impl PciDevice {
    pub fn base_class(&self) -> u8 {
        (self.class >> 16) as u8
    }

    pub fn is_display(&self) -> bool {
        self.base_class() == 0x03
    }

    /// A device the host's console can run on: VGA-compatible (0300, 0301) or a display
    /// controller (0380); a 3D controller (0302) drives no screen.
    pub fn is_console_capable(&self) -> bool {
        matches!(self.class >> 8, 0x0300 | 0x0301 | 0x0380)
    }

    /// PCI-to-PCI bridges may share a group with a passthrough device: vfio allows them.
    pub fn is_bridge(&self) -> bool {
        matches!(self.class >> 8, 0x0604 | 0x0609)
    }

    pub fn short_name(&self) -> String {
        if self.description.is_empty() {
            format!("[{}]", self.id)
        } else {
            self.description.clone()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    pub hostname: String,
    /// pve-manager version; None where `pveversion` was not found.
    pub pve_version: Option<String>,
    /// The probe ran `pveversion` and it failed: not a Proxmox VE node.
    pub pveversion_failed: bool,
    pub os: Option<String>,
    pub cpu_vendor: CpuVendor,
    /// Empty where the facts do not say.
    pub running_kernel: String,
    pub proc_cmdline: Vec<String>,
    /// /proc/cmdline was read (an empty list then means an empty command line).
    pub cmdline_known: bool,
    pub boot_id: Option<String>,
    pub uefi: bool,
    /// ACPI tables; DMAR (Intel) or IVRS (AMD) is the firmware's IOMMU description.
    pub acpi_tables: Vec<String>,
    pub boot_loader: BootLoader,
    pub kernels: Vec<kernels::InstalledKernel>,
    pub pinned_kernel: Option<String>,
    pub files: BTreeMap<String, FileFact>,
    pub devices: Vec<PciDevice>,
    /// Devices in a group VFIO made in no-IOMMU mode (named `vfio-noiommu`): vfio holds them
    /// with no IOMMU behind them. Their `iommu_group` is None.
    pub noiommu: Vec<PciAddress>,
    /// The facts list IOMMU groups (a sysfs walk or a group listing): a device without one
    /// has none, rather than one nobody printed.
    pub groups_listed: bool,
    /// Every PCI function is listed (sysfs, or an unfiltered lspci): a display device that
    /// is the only one listed is the host's only one.
    pub devices_complete: bool,
    /// Every console-capable device (VGA, display controller) is listed.
    pub consoles_complete: bool,
    /// Drivers were read (sysfs, or `lspci -k`): a device without one has none.
    pub drivers_known: bool,
    /// `ls /sys/class/iommu`: the IOMMUs the running kernel registered.
    pub iommu_class: Option<Vec<String>>,
    /// /proc/interrupts shows `IR-` chips: interrupt remapping is on. None: not read, or none shown.
    pub ir_chips: Option<bool>,
    pub kernel_log: kernel_log::KernelLog,
    pub loaded_modules: Option<Vec<String>>,
    /// The root disk's controllers and the management NICs were read.
    pub host_devices_known: bool,
    pub root: topology::RootDisks,
    pub management: topology::Management,
    pub guests: Vec<pve::Guest>,
    /// Who uses NVIDIA GPUs through the host's driver (nvidia-smi, LXC configs).
    pub gpu_users: gpu_users::GpuUsers,
    pub ha_resources: Vec<u32>,
    pub quorate: Option<bool>,
    pub initramfs: Vec<initramfs::InitramfsInfo>,
}

impl HostFacts {
    /// The facts a plan needs: the running kernel, its command line and the PCI devices must
    /// be there.
    pub fn from_raw(raw: &RawFacts) -> Result<Self, FactsError> {
        let missing = |section, hint| FactsError::Missing { section, hint };
        raw.ok_line("uname")
            .ok_or(missing("uname", "the output of `uname -r`"))?;
        raw.ok_body("proc-cmdline")
            .ok_or(missing("proc-cmdline", "the output of `cat /proc/cmdline`"))?;
        let facts = HostFacts::from_partial(raw)?;
        if facts.devices.is_empty() {
            return Err(missing("lspci", "the output of `lspci -nnk -D`"));
        }
        Ok(facts)
    }

    /// Whatever the facts hold, for a verdict: what is missing stays unknown (an empty
    /// kernel version, `cmdline_known` false, no devices) and the verdict says so.
    pub fn from_partial(raw: &RawFacts) -> Result<Self, FactsError> {
        let body = |name| raw.ok_body(name).unwrap_or("");
        let running_kernel = raw.ok_line("uname").unwrap_or_default();
        let kernel_log = kernel_log::parse(body("kernel-log"));
        // the kernel prints its command line at boot: a dmesg excerpt can carry it
        let cmdline_text = raw
            .ok_body("proc-cmdline")
            .map(str::to_string)
            .or_else(|| kernel_log.command_line.clone());
        let cmdline_known = cmdline_text.is_some();
        let proc_cmdline = modconf::cmdline_tokens(cmdline_text.as_deref().unwrap_or(""));

        let files: BTreeMap<String, FileFact> = raw
            .all("file")
            .map(|s| (s.first_arg().to_string(), FileFact::from_section(s)))
            .collect();

        let pci = pci_devices(raw, &kernel_log)?;
        let firmware = body("firmware");
        let mut fw_lines = firmware.lines();
        let uefi = fw_lines.next().map(str::trim) == Some("uefi");
        let acpi_tables = fw_lines
            .next()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect();

        let pbt_status = raw.get("proxmox-boot-tool-status").map(|s| s.body.as_str());
        let has_grub_defaults = files.contains_key("/etc/default/grub");
        let boot_loader =
            match boot::detect(pbt_status, raw.ok_body("efibootmgr"), has_grub_defaults) {
                BootLoader::Unknown { reason } => {
                    boot::from_output(body("boot-evidence"), &proc_cmdline)
                        .unwrap_or(BootLoader::Unknown { reason })
                }
                known => known,
            };

        Ok(HostFacts {
            hostname: body("hostname").trim().to_string(),
            pve_version: raw.ok_body("pveversion").and_then(pve::parse_pveversion),
            pveversion_failed: raw.get("pveversion").is_some_and(|s| !s.ok()),
            os: Some(os_release::os_release(body("os-release")).pretty_name)
                .filter(|p| !p.is_empty()),
            cpu_vendor: cpu_vendor(body("cpu")),
            running_kernel,
            proc_cmdline,
            cmdline_known,
            boot_id: raw.ok_body("boot-id").map(|b| b.trim().to_string()),
            uefi,
            acpi_tables,
            boot_loader,
            kernels: kernels::parse(body("kernels")),
            pinned_kernel: raw
                .ok_body("proxmox-boot-tool-kernels")
                .and_then(kernels::pbt_pinned),
            devices: pci.devices,
            noiommu: pci.noiommu,
            groups_listed: pci.groups_listed,
            devices_complete: pci.devices_complete,
            consoles_complete: pci.consoles_complete,
            drivers_known: pci.drivers_known,
            iommu_class: raw
                .ok_body("iommu-class")
                .map(|b| b.split_whitespace().map(str::to_string).collect()),
            ir_chips: raw
                .ok_line("interrupts-ir")
                .and_then(|n| n.parse::<u32>().ok())
                .map(|n| n > 0)
                .filter(|on| *on),
            kernel_log,
            loaded_modules: raw.ok_body("proc-modules").map(modconf::loaded_modules),
            host_devices_known: raw.ok_body("root-disks").is_some()
                && raw.ok_body("net-devices").is_some(),
            root: topology::parse_root_disks(body("root-disks")),
            management: topology::parse_net(body("net-devices")),
            guests: guests(raw),
            gpu_users: gpu_users_of(raw, &files),
            ha_resources: raw
                .ok_body("ha")
                .map(pve::parse_ha_resources)
                .unwrap_or_default(),
            quorate: raw.ok_body("cluster").and_then(pve::parse_quorate),
            initramfs: initramfs_images(raw),
            files,
        })
    }

    pub fn device(&self, address: &PciAddress) -> Option<&PciDevice> {
        self.devices.iter().find(|d| d.address == *address)
    }

    /// IOMMU groups exist (VFIO's no-IOMMU groups are not counted; see `host::verdict::iommu`
    /// for what proves the IOMMU on).
    pub fn iommu_active(&self) -> bool {
        self.devices.iter().any(|d| d.iommu_group.is_some())
    }

    /// The firmware describes an IOMMU (ACPI DMAR or IVRS), or the kernel initialised one.
    pub fn firmware_iommu(&self) -> Option<bool> {
        if self.acpi_tables.iter().any(|t| t == "DMAR" || t == "IVRS")
            || self.kernel_log.iommu_initialised
            || self.iommu_active()
        {
            Some(true)
        } else if self.acpi_tables.is_empty() {
            None
        } else {
            Some(false)
        }
    }

    pub fn group_members(&self, group: u32) -> Vec<&PciDevice> {
        self.devices
            .iter()
            .filter(|d| d.iommu_group == Some(group))
            .collect()
    }

    /// The kernel the next boot will run: a pinned one, else the newest installed.
    pub fn next_boot_kernel(&self) -> Option<&str> {
        self.pinned_kernel
            .as_deref()
            .or_else(|| self.kernels.last().map(|k| k.version.as_str()))
    }

    /// Files the probe dumped under a directory (not following the modules.conf symlink twice).
    pub fn files_under<'a>(
        &'a self,
        dir: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a FileFact)> + 'a {
        self.files
            .iter()
            .filter(move |(p, f)| p.starts_with(dir) && f.link.is_none())
    }

    pub fn guest_ids_running(&self) -> BTreeSet<u32> {
        self.guests
            .iter()
            .filter(|g| g.status == "running")
            .map(|g| g.vmid)
            .collect()
    }
}

/// `grep -H . /sys/bus/pci/devices/*/boot_vga` (or a `for` loop printing path and value).
fn boot_vga_listing(text: &str) -> Vec<(PciAddress, bool)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("/sys/bus/pci/devices/")?;
            let (addr, value) = rest.split_once("/boot_vga")?;
            let value = value.trim_start_matches(':').trim();
            Some((addr.parse().ok()?, value == "1"))
        })
        .collect()
}

/// Where a bad group line sits in the facts file: the marker line, then the body's lines.
fn groups_error(s: &raw::Section, e: iommu_groups::GroupError) -> FactsError {
    FactsError::Groups {
        section: if s.name == "pci-devices" {
            "pci-devices"
        } else {
            "iommu-groups"
        },
        line: s.line + e.line,
        source: e,
    }
}

/// The PCI functions and what the listing says about itself.
struct PciListing {
    devices: Vec<PciDevice>,
    noiommu: Vec<PciAddress>,
    groups_listed: bool,
    devices_complete: bool,
    consoles_complete: bool,
    drivers_known: bool,
}

fn pci_devices(
    raw: &RawFacts,
    kernel_log: &kernel_log::KernelLog,
) -> Result<PciListing, FactsError> {
    let lspci = raw.ok_body("lspci").map(lspci::parse).unwrap_or_default();
    let sysfs = match raw.get("pci-devices").filter(|s| s.ok()) {
        Some(s) => sysfs_pci::parse(&s.body).map_err(|e| groups_error(s, e))?,
        None => Vec::new(),
    };
    let listing = match raw.get("iommu-groups").filter(|s| s.ok()) {
        Some(s) => Some(iommu_groups::parse(&s.body).map_err(|e| groups_error(s, e))?),
        None => None,
    };
    // `lspci partial`: a transcript's filtered listing; `lspci vga`: one that lists every
    // VGA device (`lspci | grep VGA`) but maybe not the rest
    let listing_kind = raw.get("lspci").filter(|s| s.ok()).map(|s| s.first_arg());
    let devices_complete = !sysfs.is_empty() || listing_kind == Some("");
    let consoles_complete = devices_complete || listing_kind == Some("vga");
    let groups_listed =
        !sysfs.is_empty() || listing.is_some() || lspci.iter().any(|d| d.iommu_group.is_some());
    let noiommu = sysfs
        .iter()
        .filter(|s| s.noiommu)
        .map(|s| s.address)
        .collect();
    let drivers_known = !sysfs.is_empty()
        || lspci
            .iter()
            .any(|d| d.driver.is_some() || !d.modules.is_empty());
    let mut devices = merge_devices(lspci, sysfs, listing);
    mark_sriov(&mut devices, &kernel_log.vfs_enabled);
    if let Some(boot) = kernel_log.boot_vga {
        // one device boots the host; the log names it, so every other VGA device does not
        for d in devices.iter_mut().filter(|d| d.class >> 8 == 0x0300) {
            d.boot_vga = d.boot_vga.or(Some(d.address == boot));
        }
    }
    if let Some(s) = raw.get("boot-vga").filter(|s| s.ok()) {
        for (address, on) in boot_vga_listing(&s.body) {
            if let Some(d) = devices.iter_mut().find(|d| d.address == address) {
                d.boot_vga = Some(on);
            }
        }
    }

    Ok(PciListing {
        devices,
        noiommu,
        groups_listed,
        devices_complete,
        consoles_complete,
        drivers_known,
    })
}

fn cpu_vendor(cpu: &str) -> CpuVendor {
    if cpu.contains("GenuineIntel") {
        CpuVendor::Intel
    } else if cpu.contains("AuthenticAMD") || cpu.contains("HygonGenuine") {
        CpuVendor::Amd
    } else {
        CpuVendor::Other
    }
}

fn guests(raw: &RawFacts) -> Vec<pve::Guest> {
    let mut guests = raw
        .ok_body("guests")
        .map(pve::parse_qm_list)
        .unwrap_or_default();
    guests.extend(
        raw.ok_body("containers")
            .map(pve::parse_pct_list)
            .unwrap_or_default(),
    );
    guests
}

fn initramfs_images(raw: &RawFacts) -> Vec<initramfs::InitramfsInfo> {
    raw.all("initramfs")
        .map(|s| {
            initramfs::parse(
                s.first_arg(),
                s.attrs().get("mtime").and_then(|v| v.parse().ok()),
                &s.body,
            )
        })
        .collect()
}

fn gpu_users_of(raw: &RawFacts, files: &BTreeMap<String, FileFact>) -> gpu_users::GpuUsers {
    let mut u = raw
        .ok_body("nvidia-smi")
        .map(gpu_users::parse_smi_table)
        .unwrap_or_default();
    u.containers = raw
        .ok_body("lxc-nvidia")
        .map(gpu_users::parse_lxc_grep)
        .unwrap_or_default();
    for (path, f) in files {
        if let Some(id) = gpu_users::lxc_id(path) {
            let lines = gpu_users::lxc_nvidia_lines(&f.content);
            u.containers
                .extend(lines.into_iter().map(|l| (id.clone(), l)));
        }
    }
    u
}

/// SR-IOV roles a transcript shows without sysfs: the kernel log's "Enabled N VFs" on a
/// physical function makes the other functions of its slot with its ids virtual functions;
/// lspci's "Virtual Function" names make the non-VF function of their slot the physical one.
fn mark_sriov(devices: &mut [PciDevice], enabled: &[(PciAddress, u32)]) {
    for &(pf, vfs) in enabled {
        let Some(id) = devices.iter().find(|d| d.address == pf).map(|d| d.id) else {
            continue;
        };
        for d in devices.iter_mut() {
            if d.address == pf {
                d.sriov = Some(Sriov::PhysicalFunction { vfs });
            } else if d.address.slot() == pf.slot() && d.id == id {
                d.sriov = Some(Sriov::VirtualFunction { pf: Some(pf) });
            }
        }
    }
    // a card has one display function; more functions of the same class and name in its slot
    // are the virtual functions of an iGPU (i915 SR-IOV lists them as 00:02.1-7)
    let repeats: Vec<PciAddress> = devices
        .iter()
        .filter(|d| d.sriov.is_none() && d.is_console_capable() && d.address.function != Some(0))
        .filter(|d| {
            devices.iter().any(|f| {
                f.address
                    == PciAddress {
                        function: Some(0),
                        ..d.address
                    }
                    && f.class == d.class
                    && f.id == d.id
                    && f.description == d.description
            })
        })
        .map(|d| d.address)
        .collect();
    for d in devices.iter_mut().filter(|d| repeats.contains(&d.address)) {
        let pf = PciAddress {
            function: Some(0),
            ..d.address
        };
        d.sriov = Some(Sriov::VirtualFunction { pf: Some(pf) });
    }
    for d in devices.iter_mut().filter(|d| d.sriov.is_none()) {
        let vfs = repeats
            .iter()
            .filter(|r| r.slot() == d.address.slot())
            .count();
        if vfs > 0 && d.address.function == Some(0) {
            d.sriov = Some(Sriov::PhysicalFunction { vfs: vfs as u32 });
        }
    }
    let vf_slots: Vec<(PciAddress, u16)> = devices
        .iter()
        .filter(|d| matches!(d.sriov, Some(Sriov::VirtualFunction { pf: None })))
        .map(|d| (d.address.slot(), d.id.vendor))
        .collect();
    for d in devices.iter_mut().filter(|d| d.sriov.is_none()) {
        let vfs = vf_slots
            .iter()
            .filter(|(slot, vendor)| *slot == d.address.slot() && *vendor == d.id.vendor)
            .count();
        if vfs > 0 {
            d.sriov = Some(Sriov::PhysicalFunction { vfs: vfs as u32 });
        }
    }
}

/// One entry per address where a transcript listed a device twice (`lspci -nn | grep VGA`,
/// then `lspci -nnk`): the first names it, later ones add what it lacked.
fn lspci_once(lspci: &[lspci::LspciDevice]) -> Vec<lspci::LspciDevice> {
    let mut out: Vec<lspci::LspciDevice> = Vec::new();
    for d in lspci {
        match out.iter_mut().find(|o| o.address == d.address) {
            Some(o) => {
                o.driver = o.driver.take().or_else(|| d.driver.clone());
                o.iommu_group = o.iommu_group.or(d.iommu_group);
                o.subsystem = o.subsystem.or(d.subsystem);
                if o.modules.is_empty() {
                    o.modules = d.modules.clone();
                }
                if o.id.vendor == 0 {
                    o.id = d.id;
                }
            }
            None => out.push(d.clone()),
        }
    }
    out
}

fn merge_devices(
    lspci: Vec<lspci::LspciDevice>,
    sysfs: Vec<sysfs_pci::SysfsPci>,
    groups: Option<BTreeMap<PciAddress, u32>>,
) -> Vec<PciDevice> {
    let by_addr: BTreeMap<PciAddress, &lspci::LspciDevice> =
        lspci.iter().map(|d| (d.address, d)).collect();
    let mut out: Vec<PciDevice> = if sysfs.is_empty() {
        lspci_once(&lspci)
            .into_iter()
            .map(|l| PciDevice {
                address: l.address,
                class: (l.class as u32) << 8,
                class_name: l.class_name.clone(),
                description: l.description.clone(),
                id: l.id,
                subsystem: l.subsystem,
                driver: l.driver.clone(),
                modules: l.modules.clone(),
                iommu_group: groups
                    .as_ref()
                    .and_then(|g| g.get(&l.address).copied())
                    .or(l.iommu_group),
                boot_vga: None,
                reset_methods: Vec::new(),
                driver_override: None,
                upstream: Vec::new(),
                // lspci names a VF "... Virtual Function"; its PF is found in mark_sriov
                sriov: l
                    .description
                    .contains("Virtual Function")
                    .then_some(Sriov::VirtualFunction { pf: None }),
            })
            .collect()
    } else {
        sysfs
            .into_iter()
            .map(|s| {
                let l = by_addr.get(&s.address);
                PciDevice {
                    address: s.address,
                    class: s.class,
                    class_name: l.map(|l| l.class_name.clone()).unwrap_or_default(),
                    description: l.map(|l| l.description.clone()).unwrap_or_default(),
                    id: s.id,
                    subsystem: s.subsystem,
                    driver: s.driver,
                    modules: l.map(|l| l.modules.clone()).unwrap_or_default(),
                    iommu_group: s.iommu_group,
                    boot_vga: Some(s.boot_vga),
                    reset_methods: s.reset_methods,
                    driver_override: s.driver_override,
                    upstream: s.upstream,
                    sriov: match (s.physfn, s.numvfs) {
                        (Some(pf), _) => Some(Sriov::VirtualFunction { pf: Some(pf) }),
                        (None, Some(n)) if n > 0 => Some(Sriov::PhysicalFunction { vfs: n }),
                        _ => None,
                    },
                }
            })
            .collect()
    };
    out.sort_by_key(|d| d.address);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_assembled_facts_from_a_forum_paste() {
        let text = "### pvegpu facts 1\n### pvegpu uname\n6.8.12-10-pve\n### pvegpu proc-cmdline\nBOOT_IMAGE=/boot/vmlinuz root=/dev/mapper/pve-root ro quiet\n### pvegpu lspci\n02:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [GeForce GTX 1080] [10de:1b80] (rev a1)\n\tKernel driver in use: nouveau\n\tKernel modules: nvidiafb, nouveau\n### pvegpu iommu-groups\nIOMMU Group 29 02:00.0 VGA compatible controller [0300]: NVIDIA\n";
        let f = HostFacts::from_raw(&RawFacts::parse(text).unwrap()).unwrap();
        assert_eq!(f.devices.len(), 1);
        assert_eq!(f.devices[0].class, 0x030000);
        assert_eq!(f.devices[0].iommu_group, Some(29));
        assert_eq!(f.devices[0].driver.as_deref(), Some("nouveau"));
        assert!(f.iommu_active());
        assert!(!f.pveversion_failed);
        assert!(matches!(f.boot_loader, BootLoader::Unknown { .. }));
    }

    #[test]
    fn missing_essentials_are_named() {
        let err = HostFacts::from_raw(
            &RawFacts::parse("### pvegpu facts 1\n### pvegpu uname\n6.8\n").unwrap(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("proc-cmdline"), "{err}");
    }
}

//! Kernel log lines about the IOMMU (`dmesg | grep -e DMAR -e IOMMU -e AMD-Vi`, or the journal
//! when the ring buffer has rotated).

use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KernelLog {
    /// `DMAR: IOMMU enabled`: the kernel parsed `intel_iommu=on`.
    pub intel_iommu_param: bool,
    /// Intel VT-d (DMAR) or AMD-Vi was initialised.
    pub iommu_initialised: bool,
    /// Some(true): remapping enabled; Some(false): the kernel said it is not; None: no word.
    pub irq_remapping: Option<bool>,
    /// `iommu: Default domain type: ...`, e.g. `Passthrough (set via kernel command line)`.
    pub default_domain: Option<String>,
    /// The command line the kernel booted with, as it prints it at boot.
    pub command_line: Option<String>,
    /// `pci 0000:00:02.0: vgaarb: setting as boot VGA device`: the device the host boots on.
    pub boot_vga: Option<crate::pci::PciAddress>,
    /// `i915 0000:00:02.0: Enabled 7 VFs`: SR-IOV virtual functions a driver turned on.
    pub vfs_enabled: Vec<(crate::pci::PciAddress, u32)>,
    /// The kernel's own warning that `pcie_acs_override` is in effect.
    pub acs_override: Vec<String>,
    /// The lines the verdicts above rest on, to show as evidence.
    pub evidence: Vec<String>,
}

/// Drop a `[    0.368420] ` or `[    0.3] kernel: ` style prefix.
fn message(line: &str) -> &str {
    let line = line.trim();
    let line = match line.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map(|(_, m)| m.trim()).unwrap_or(line),
        None => line,
    };
    // journalctl -o short-monotonic: "host kernel: message"
    line.split_once(" kernel: ").map(|(_, m)| m).unwrap_or(line)
}

const INITIALISED: &[&str] = &[
    "DMAR: Intel(R) Virtualization Technology for Directed I/O",
    "AMD-Vi: Found IOMMU",
    "AMD-Vi: Interrupt remapping enabled",
];
const REMAP_ON: &[&str] = &[
    "DMAR-IR: Enabled IRQ remapping",
    "AMD-Vi: Interrupt remapping enabled",
];
const REMAP_OFF: &[&str] = &[
    "Failed to enable irq remapping",
    "IRQ remapping was disabled",
    "Interrupt remapping disabled",
    "irq remapping not supported",
    "DMAR-IR: Not enabling IRQ remapping",
    "No interrupt remapping support",
];

pub fn parse(text: &str) -> KernelLog {
    let mut log = KernelLog::default();
    for raw in text.lines() {
        let m = message(raw);
        let has = |patterns: &[&str]| patterns.iter().any(|p| m.contains(p));
        let mut matched = false;
        if m.contains("DMAR: IOMMU enabled") {
            log.intel_iommu_param = true;
            matched = true;
        }
        if has(INITIALISED) {
            log.iommu_initialised = true;
            matched = true;
        }
        if has(REMAP_ON) {
            log.irq_remapping = Some(true);
            matched = true;
        } else if has(REMAP_OFF) {
            if log.irq_remapping.is_none() {
                log.irq_remapping = Some(false);
            }
            matched = true;
        }
        if let Some(rest) = m
            .strip_prefix("Kernel command line: ")
            .or_else(|| m.strip_prefix("Command line: "))
        {
            log.command_line = Some(rest.trim().to_string());
        }
        if let Some(addr) = m
            .strip_prefix("pci ")
            .and_then(|r| r.split_once(": vgaarb: setting as boot VGA device"))
            .and_then(|(a, _)| a.parse().ok())
        {
            log.boot_vga = Some(addr);
            matched = true;
        }
        if let Some((head, rest)) = m.split_once(": Enabled ") {
            let addr = head.rsplit(' ').next().and_then(|a| a.parse().ok());
            let count = rest
                .strip_suffix(" VFs")
                .and_then(|n| n.trim().parse().ok());
            if let (Some(a), Some(n)) = (addr, count) {
                log.vfs_enabled.push((a, n));
                matched = true;
            }
        }
        // the ACS override patch's warning: "Warning: PCIe ACS overrides enabled; This may
        // allow non-IOMMU protected peer-to-peer DMA"
        if m.contains("ACS overrides enabled") {
            log.acs_override.push(m.to_string());
            matched = true;
        }
        if let Some(rest) = m.strip_prefix("iommu: Default domain type: ") {
            log.default_domain = Some(rest.trim().to_string());
            matched = true;
        }
        if matched {
            log.evidence.push(m.to_string());
        }
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_osm45_intel_with_remapping() {
        // excerpt of `dmesg | grep -e DMAR -e IOMMU -e AMD-Vi` from the osm45 write-up
        let text = "[    0.009084] ACPI: DMAR 0x000000007BAFE000 000108 (v01 DELL   PE_SC3   00000001 DELL 00000001)\n[    0.368420] DMAR: IOMMU enabled\n[    0.822644] DMAR-IR: x2apic is disabled because BIOS sets x2apic opt out bit.\n[    0.823474] DMAR-IR: Enabled IRQ remapping in xapic mode\n[    1.314541] DMAR: Intel(R) Virtualization Technology for Directed I/O\n";
        let log = parse(text);
        assert!(log.intel_iommu_param);
        assert!(log.iommu_initialised);
        assert_eq!(log.irq_remapping, Some(true));
        assert_eq!(log.evidence.len(), 3);
    }

    #[test]
    fn translated_domain_without_param() {
        let log = parse(
            "[    0.202420] iommu: Default domain type: Translated\n[    0.202425] iommu: DMA domain TLB invalidation policy: lazy mode\n",
        );
        assert!(!log.intel_iommu_param);
        assert_eq!(log.irq_remapping, None);
        assert_eq!(log.default_domain.as_deref(), Some("Translated"));
    }
}

//! The probe's walk over /sys/bus/pci/devices: one line per function with class, ids, driver,
//! IOMMU group, boot_vga, reset methods and the sysfs path (which shows the bridges above it).

use super::iommu_groups::GroupError;
use crate::pci::{PciAddress, PciId};
use serde::Serialize;
use std::collections::HashMap;

/// The name VFIO gives the groups it makes in no-IOMMU mode.
pub const NOIOMMU_GROUP: &str = "vfio-noiommu";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SysfsPci {
    pub address: PciAddress,
    /// The full 24-bit class code, e.g. 0x030000.
    pub class: u32,
    pub id: PciId,
    pub subsystem: Option<PciId>,
    /// sysfs's boot_vga file; a function without one (not VGA class) never boots the host.
    pub boot_vga: bool,
    pub reset_methods: Vec<String>,
    pub driver: Option<String>,
    pub driver_override: Option<String>,
    /// None also for a group VFIO made in no-IOMMU mode: no IOMMU stands behind it.
    pub iommu_group: Option<u32>,
    /// The group is VFIO's own no-IOMMU group (its `name` reads `vfio-noiommu`).
    pub noiommu: bool,
    /// PCI functions between the root complex and this device, nearest the root first.
    pub upstream: Vec<PciAddress>,
    /// `sriov_numvfs`: virtual functions enabled on this physical function.
    pub numvfs: Option<u32>,
    /// `physfn`: the physical function of a virtual function.
    pub physfn: Option<PciAddress>,
}

/// PCI addresses named in a sysfs device path such as
/// `/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/nvme/nvme0`, root side first.
pub fn addresses_in_path(path: &str) -> Vec<PciAddress> {
    path.split('/')
        .filter(|c| c.len() == 12 && c.as_bytes()[4] == b':' && c.as_bytes()[10] == b'.')
        .filter_map(|c| c.parse().ok())
        .collect()
}

/// Each function the walk printed. A group that is there but does not parse is an error: a
/// device with no known group must never look like one that has none.
pub fn parse(text: &str) -> Result<Vec<SysfsPci>, GroupError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let words = fields(line);
        let group = words.get("iommu_group").filter(|g| !g.is_empty());
        if group.is_some_and(|g| g.parse::<u32>().is_err()) {
            return Err(GroupError {
                line: i + 1,
                text: line.trim().to_string(),
            });
        }
        out.extend(parse_line(line, &words));
    }
    Ok(out)
}

fn fields(line: &str) -> HashMap<&str, &str> {
    line.split_whitespace()
        .skip(1)
        .filter_map(|w| w.split_once('='))
        .collect()
}

fn parse_line(line: &str, get: &HashMap<&str, &str>) -> Option<SysfsPci> {
    let address: PciAddress = line.split_whitespace().next()?.parse().ok()?;
    let hex = |k: &str| {
        get.get(k)
            .and_then(|v| u32::from_str_radix(v.trim_start_matches("0x"), 16).ok())
    };
    let text = |k: &str| {
        get.get(k)
            .filter(|v| !v.is_empty() && **v != "(null)")
            .map(|v| v.to_string())
    };
    let id = PciId {
        vendor: hex("vendor")? as u16,
        device: hex("device")? as u16,
    };
    // Kept when it reads 0000:0000: PVE's `pci_device_info` keeps it too, and a mapping
    // entry without it fails the VM's start ("missing expected property 'subsystem-id'").
    let subsystem = match (hex("svendor"), hex("sdevice")) {
        (Some(v), Some(d)) => Some(PciId {
            vendor: v as u16,
            device: d as u16,
        }),
        _ => None,
    };
    let mut upstream = text("path")
        .map(|p| addresses_in_path(&p))
        .unwrap_or_default();
    upstream.retain(|a| *a != address);
    // drivers/vfio/group.c (vfio_noiommu_group_alloc) names the groups it makes for devices
    // no IOMMU covers "vfio-noiommu": such a group isolates nothing
    let noiommu = get.get("group_name") == Some(&NOIOMMU_GROUP);
    Some(SysfsPci {
        address,
        class: hex("class")?,
        id,
        subsystem,
        boot_vga: get.get("boot_vga") == Some(&"1"),
        reset_methods: text("reset_method")
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        driver: text("driver"),
        driver_override: text("override"),
        numvfs: text("numvfs").and_then(|v| v.parse().ok()),
        physfn: text("physfn").and_then(|v| v.parse().ok()),
        iommu_group: get
            .get("iommu_group")
            .and_then(|v| v.parse().ok())
            .filter(|_| !noiommu),
        noiommu,
        upstream,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_probe_line() {
        let line = "0000:01:00.0 class=0x030000 vendor=0x10de device=0x1b80 svendor=0x1043 sdevice=0x8599 boot_vga=0 reset_method=flr,bus driver=vfio-pci override=(null) iommu_group=29 path=/sys/devices/pci0000:00/0000:00:03.0/0000:01:00.0";
        let d = parse(line).unwrap().pop().unwrap();
        assert_eq!(d.class, 0x030000);
        assert_eq!(d.iommu_group, Some(29));
        assert_eq!(d.driver.as_deref(), Some("vfio-pci"));
        assert_eq!(d.driver_override, None);
        assert_eq!(d.reset_methods, vec!["flr", "bus"]);
        assert_eq!(d.upstream, vec!["0000:00:03.0".parse().unwrap()]);
        assert!(!d.boot_vga);
    }

    #[test]
    fn a_vfio_noiommu_group_is_no_iommu_group() {
        let line = "0000:01:00.0 class=0x030000 vendor=0x10de device=0x1b80 svendor=0x1043 sdevice=0x8599 boot_vga=0 reset_method=flr,bus driver=vfio-pci override=(null) iommu_group=0 group_name=vfio-noiommu path=/sys/devices/pci0000:00/0000:00:03.0/0000:01:00.0";
        let d = parse(line).unwrap().pop().unwrap();
        assert!(d.noiommu);
        assert_eq!(d.iommu_group, None);
    }

    #[test]
    fn empty_fields_mean_absent() {
        let line = "0000:00:00.0 class=0x060000 vendor=0x8086 device=0x0d57 svendor=0x0000 sdevice=0x0000 boot_vga= reset_method= driver= override=(null) iommu_group= path=/sys/devices/pci0000:00/0000:00:00.0";
        let d = parse(line).unwrap().pop().unwrap();
        assert_eq!(d.iommu_group, None);
        assert_eq!(d.driver, None);
        assert_eq!(
            d.subsystem.map(|s| s.to_string()).as_deref(),
            Some("0000:0000")
        );
        assert!(d.upstream.is_empty());
    }

    #[test]
    fn a_group_that_does_not_parse_is_an_error() {
        let text = "0000:00:00.0 class=0x060000 vendor=0x8086 device=0x0d57 iommu_group=1\n0000:01:00.0 class=0x030000 vendor=0x10de device=0x1b80 iommu_group=?\n";
        assert_eq!(parse(text).unwrap_err().line, 2);
    }
}

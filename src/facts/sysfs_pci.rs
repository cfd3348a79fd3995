//! The probe's walk over /sys/bus/pci/devices: one line per function with class, ids, driver,
//! IOMMU group, boot_vga, reset methods and the sysfs path (which shows the bridges above it).

use crate::pci::{PciAddress, PciId};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SysfsPci {
    pub address: PciAddress,
    /// The full 24-bit class code, e.g. 0x030000.
    pub class: u32,
    pub id: PciId,
    pub subsystem: Option<PciId>,
    pub boot_vga: bool,
    pub reset_methods: Vec<String>,
    pub driver: Option<String>,
    pub driver_override: Option<String>,
    pub iommu_group: Option<u32>,
    /// PCI functions between the root complex and this device, nearest the root first.
    pub upstream: Vec<PciAddress>,
}

/// PCI addresses named in a sysfs device path such as
/// `/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/nvme/nvme0`, root side first.
pub fn addresses_in_path(path: &str) -> Vec<PciAddress> {
    path.split('/')
        .filter(|c| c.len() == 12 && c.as_bytes()[4] == b':' && c.as_bytes()[10] == b'.')
        .filter_map(|c| c.parse().ok())
        .collect()
}

pub fn parse(text: &str) -> Vec<SysfsPci> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<SysfsPci> {
    let mut words = line.split_whitespace();
    let address: PciAddress = words.next()?.parse().ok()?;
    let mut get = std::collections::HashMap::new();
    for w in words {
        if let Some((k, v)) = w.split_once('=') {
            get.insert(k, v);
        }
    }
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
    let subsystem = match (hex("svendor"), hex("sdevice")) {
        (Some(v), Some(d)) if v != 0 || d != 0 => Some(PciId {
            vendor: v as u16,
            device: d as u16,
        }),
        _ => None,
    };
    let mut upstream = text("path")
        .map(|p| addresses_in_path(&p))
        .unwrap_or_default();
    upstream.retain(|a| *a != address);
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
        iommu_group: get.get("iommu_group").and_then(|v| v.parse().ok()),
        upstream,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_probe_line() {
        let line = "0000:01:00.0 class=0x030000 vendor=0x10de device=0x1b80 svendor=0x1043 sdevice=0x8599 boot_vga=0 reset_method=flr,bus driver=vfio-pci override=(null) iommu_group=29 path=/sys/devices/pci0000:00/0000:00:03.0/0000:01:00.0";
        let d = parse(line).pop().unwrap();
        assert_eq!(d.class, 0x030000);
        assert_eq!(d.iommu_group, Some(29));
        assert_eq!(d.driver.as_deref(), Some("vfio-pci"));
        assert_eq!(d.driver_override, None);
        assert_eq!(d.reset_methods, vec!["flr", "bus"]);
        assert_eq!(d.upstream, vec!["0000:00:03.0".parse().unwrap()]);
        assert!(!d.boot_vga);
    }

    #[test]
    fn empty_fields_mean_absent() {
        let line = "0000:00:00.0 class=0x060000 vendor=0x8086 device=0x0d57 svendor=0x0000 sdevice=0x0000 boot_vga= reset_method= driver= override=(null) iommu_group= path=/sys/devices/pci0000:00/0000:00:00.0";
        let d = parse(line).pop().unwrap();
        assert_eq!(d.iommu_group, None);
        assert_eq!(d.driver, None);
        assert_eq!(d.subsystem, None);
        assert!(d.upstream.is_empty());
    }
}

//! `lspci -nnk -D` (or without `-D`): names, class codes, ids, drivers and the modules that
//! could claim each device.

use crate::pci::{PciAddress, PciId};
use regex::Regex;
use serde::Serialize;
use std::sync::LazyLock;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LspciDevice {
    pub address: PciAddress,
    /// Class and subclass as lspci prints them in brackets, e.g. 0x0300.
    pub class: u16,
    pub class_name: String,
    pub description: String,
    pub id: PciId,
    pub subsystem: Option<PciId>,
    pub driver: Option<String>,
    pub modules: Vec<String>,
    /// `IOMMU group: N`, which `lspci -v` prints.
    pub iommu_group: Option<u32>,
}

static HEAD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?P<addr>(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]) (?P<cname>.*?) \[(?P<class>[0-9a-fA-F]{4})\]: (?P<desc>.*) \[(?P<vid>[0-9a-fA-F]{4}):(?P<did>[0-9a-fA-F]{4})\](?: \(rev [0-9a-fA-F]+\))?(?: \(prog-if .*\))?\s*$").unwrap()
});
/// `lspci` and `lspci -v` without `-nn`: the class by name only, no ids.
static HEAD_NAMES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?P<addr>(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]) (?P<cname>[A-Za-z][A-Za-z0-9 /-]*?): (?P<desc>.*?)(?: \(rev [0-9a-fA-F]+\))?(?: \(prog-if .*\))?\s*$").unwrap()
});
/// `lspci -n`: numbers only.
static HEAD_NUMBERS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?P<addr>(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]) (?P<class>[0-9a-fA-F]{4}): (?P<vid>[0-9a-fA-F]{4}):(?P<did>[0-9a-fA-F]{4})(?: \(rev [0-9a-fA-F]+\))?(?: \(prog-if .*\))?\s*$").unwrap()
});

/// PCI class names as lspci prints them (pci.ids, "C" lines), for output without `-nn`.
const CLASS_NAMES: &[(&str, u16)] = &[
    ("VGA compatible controller", 0x0300),
    ("XGA compatible controller", 0x0301),
    ("3D controller", 0x0302),
    ("Display controller", 0x0380),
    ("Host bridge", 0x0600),
    ("ISA bridge", 0x0601),
    ("PCI bridge", 0x0604),
    ("Audio device", 0x0403),
    ("Multimedia audio controller", 0x0401),
    ("USB controller", 0x0c03),
    ("SATA controller", 0x0106),
    ("RAID bus controller", 0x0104),
    ("Serial Attached SCSI controller", 0x0107),
    ("Non-Volatile memory controller", 0x0108),
    ("Ethernet controller", 0x0200),
    ("Network controller", 0x0280),
    ("SMBus", 0x0c05),
    ("IOMMU", 0x0806),
    ("Serial bus controller", 0x0c80),
    ("Signal processing controller", 0x1180),
    ("Encryption controller", 0x1080),
    ("Non-Essential Instrumentation", 0x1300),
    ("System peripheral", 0x0880),
    ("Communication controller", 0x0780),
    ("Memory controller", 0x0580),
    ("RAM memory", 0x0500),
];

/// The name lspci prints for a class code, where this table knows it.
pub fn class_name(code: u16) -> Option<&'static str> {
    CLASS_NAMES
        .iter()
        .find(|(_, c)| *c == code)
        .map(|(n, _)| *n)
}

/// `IOMMU group: 14` (pciutils 3.8 and later) or `Flags: ..., IOMMU group 14` (earlier).
static DETAIL_GROUP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"IOMMU group:? (\d+)\s*$").unwrap());
static SUBSYS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\[(?P<vid>[0-9a-fA-F]{4}):(?P<did>[0-9a-fA-F]{4})\]\s*$").unwrap()
});

/// A device's head line in any of the three forms (`-nn`, names only, `-n`).
fn head(line: &str) -> Option<LspciDevice> {
    let hex16 = |s: &str| u16::from_str_radix(s, 16).unwrap_or_default();
    let ids = |c: &regex::Captures| PciId {
        vendor: hex16(&c["vid"]),
        device: hex16(&c["did"]),
    };
    let (addr, class, class_name, description, id) = if let Some(c) = HEAD.captures(line) {
        let (cname, desc) = (c["cname"].to_string(), c["desc"].to_string());
        (
            c["addr"].to_string(),
            hex16(&c["class"]),
            cname,
            desc,
            ids(&c),
        )
    } else if let Some(c) = HEAD_NUMBERS.captures(line) {
        let class = hex16(&c["class"]);
        (
            c["addr"].to_string(),
            class,
            String::new(),
            String::new(),
            ids(&c),
        )
    } else {
        let c = HEAD_NAMES.captures(line)?;
        let class = CLASS_NAMES.iter().find(|(n, _)| *n == &c["cname"])?.1;
        // no ids in this form: the device is known by address, class and name only
        let id = PciId {
            vendor: 0,
            device: 0,
        };
        let (cname, desc) = (c["cname"].to_string(), c["desc"].to_string());
        (c["addr"].to_string(), class, cname, desc, id)
    };
    Some(LspciDevice {
        address: addr.parse().ok()?,
        class,
        class_name,
        description,
        id,
        subsystem: None,
        driver: None,
        modules: Vec::new(),
        iommu_group: None,
    })
}

pub fn parse(text: &str) -> Vec<LspciDevice> {
    let mut out: Vec<LspciDevice> = Vec::new();
    for line in text.lines() {
        if let Some(d) = head(line) {
            out.push(d);
            continue;
        }
        let Some(dev) = out.last_mut() else { continue };
        if !line.starts_with(char::is_whitespace) {
            continue;
        }
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Subsystem:") {
            dev.subsystem = SUBSYS.captures(rest).map(|c| PciId {
                vendor: u16::from_str_radix(&c["vid"], 16).unwrap_or_default(),
                device: u16::from_str_radix(&c["did"], 16).unwrap_or_default(),
            });
        } else if let Some(rest) = line.strip_prefix("Kernel driver in use:") {
            dev.driver = Some(rest.trim().to_string());
        } else if let Some(c) = DETAIL_GROUP.captures(line) {
            dev.iommu_group = c[1].parse().ok();
        } else if let Some(rest) = line.strip_prefix("Kernel modules:") {
            dev.modules = rest
                .split(',')
                .map(|m| m.trim().to_string())
                .filter(|m| !m.is_empty())
                .collect();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_osm45_lines_without_domain() {
        // from the osm45 write-up (`lspci -n | grep NVIDIA`, which printed names as well)
        let text = "02:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [GeForce GTX 1080] [10de:1b80] (rev a1)\n02:00.1 Audio device [0403]: NVIDIA Corporation GP104 High Definition Audio Controller [10de:10f0] (rev a1)\n";
        let devs = parse(text);
        assert_eq!(devs.len(), 2);
        assert_eq!(devs[0].address.to_string(), "0000:02:00.0");
        assert_eq!(devs[0].class, 0x0300);
        assert_eq!(
            devs[0].description,
            "NVIDIA Corporation GP104 [GeForce GTX 1080]"
        );
        assert_eq!(devs[0].id.to_string(), "10de:1b80");
        assert_eq!(devs[1].class_name, "Audio device");
    }

    #[test]
    fn driver_modules_and_subsystem() {
        let text = "0000:00:03.0 Ethernet controller [0200]: Red Hat, Inc. Virtio 1.0 network device [1af4:1041] (rev 01)\n\tSubsystem: Red Hat, Inc. Virtio 1.0 network device [1af4:1041]\n\tKernel driver in use: virtio-pci\n\tKernel modules: virtio_pci\nlspci: Unable to load libkmod resources: error -2\n";
        let devs = parse(text);
        assert_eq!(devs.len(), 1);
        assert_eq!(devs[0].driver.as_deref(), Some("virtio-pci"));
        assert_eq!(devs[0].modules, vec!["virtio_pci"]);
        assert_eq!(devs[0].subsystem.unwrap().to_string(), "1af4:1041");
    }

    #[test]
    fn names_only_and_numbers_only() {
        // `lspci -v` as posted in tests/hosts/b-amd-990fx-gtx970-lspci-v
        let v = parse(
            "01:00.0 VGA compatible controller: NVIDIA Corporation GM204 [GeForce GTX 970] (rev a1) (prog-if 00 [VGA controller])\n\tSubsystem: Gigabyte Technology Co., Ltd GM204 [GeForce GTX 970]\n\tIOMMU group: 14\n\tKernel driver in use: vfio-pci\n",
        );
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].class, 0x0300);
        assert_eq!(
            v[0].description,
            "NVIDIA Corporation GM204 [GeForce GTX 970]"
        );
        assert_eq!(v[0].iommu_group, Some(14));
        assert_eq!(v[0].driver.as_deref(), Some("vfio-pci"));
        let flags = parse(
            "01:00.0 VGA compatible controller: NVIDIA Corporation GM204 [GeForce GTX 970] (rev a1) (prog-if 00 [VGA controller])\n        Flags: bus master, fast devsel, latency 0, IRQ 34, NUMA node 0, IOMMU group 14\n",
        );
        assert_eq!(flags[0].iommu_group, Some(14));
        let n = parse("02:00.0 0300: 10de:1b80 (rev a1)\n");
        assert_eq!(
            (n[0].class, n[0].id.to_string()),
            (0x0300, "10de:1b80".to_string())
        );
    }
}

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
}

static HEAD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?P<addr>(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]) (?P<cname>.*?) \[(?P<class>[0-9a-fA-F]{4})\]: (?P<desc>.*) \[(?P<vid>[0-9a-fA-F]{4}):(?P<did>[0-9a-fA-F]{4})\](?: \(rev [0-9a-fA-F]+\))?(?: \(prog-if .*\))?\s*$").unwrap()
});
static SUBSYS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\[(?P<vid>[0-9a-fA-F]{4}):(?P<did>[0-9a-fA-F]{4})\]\s*$").unwrap()
});

pub fn parse(text: &str) -> Vec<LspciDevice> {
    let mut out: Vec<LspciDevice> = Vec::new();
    for line in text.lines() {
        if let Some(c) = HEAD.captures(line) {
            let hex16 = |s: &str| u16::from_str_radix(s, 16).unwrap_or_default();
            let Ok(address) = c["addr"].parse::<PciAddress>() else {
                continue;
            };
            out.push(LspciDevice {
                address,
                class: hex16(&c["class"]),
                class_name: c["cname"].to_string(),
                description: c["desc"].to_string(),
                id: PciId {
                    vendor: hex16(&c["vid"]),
                    device: hex16(&c["did"]),
                },
                subsystem: None,
                driver: None,
                modules: Vec::new(),
            });
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
}

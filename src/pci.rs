//! PCI addresses and vendor:device ids, as users write them and as sysfs prints them.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PciError {
    #[error(
        "`{0}` is not a PCI address; write it as lspci -D prints it, e.g. `0000:02:00.0` (one function) or `0000:02:00` (all functions of the slot)"
    )]
    BadAddress(String),
    #[error(
        "`{0}` is not a PCI vendor:device id; write it as lspci -nn prints it, e.g. `10de:1b80`"
    )]
    BadId(String),
}

/// A PCI slot or function: `domain:bus:device[.function]`. Without a function it names the
/// whole slot, the way Proxmox's `hostpci0: 02:00` passes every function of a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddress {
    pub domain: u16,
    pub bus: u8,
    pub device: u8,
    pub function: Option<u8>,
}

impl PciAddress {
    pub fn function(domain: u16, bus: u8, device: u8, function: u8) -> Self {
        Self {
            domain,
            bus,
            device,
            function: Some(function),
        }
    }

    pub fn slot(&self) -> PciAddress {
        PciAddress {
            function: None,
            ..*self
        }
    }

    /// Does this address (a slot or a function) name the function `other`?
    pub fn covers(&self, other: &PciAddress) -> bool {
        self.slot() == other.slot() && (self.function.is_none() || self.function == other.function)
    }
}

impl FromStr for PciAddress {
    type Err = PciError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PciError::BadAddress(s.to_string());
        let text = s.trim().to_ascii_lowercase();
        let (rest, function) = match text.split_once('.') {
            Some((rest, f)) => {
                let f = u8::from_str_radix(f, 16).map_err(|_| bad())?;
                if f > 7 {
                    return Err(bad());
                }
                (rest.to_string(), Some(f))
            }
            None => (text.clone(), None),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [d, b, dev] => (*d, *b, *dev),
            [b, dev] => ("0000", *b, *dev),
            _ => return Err(bad()),
        };
        let hex = |v: &str, width: usize| {
            if v.len() != width || !v.chars().all(|c| c.is_ascii_hexdigit()) {
                Err(bad())
            } else {
                Ok(u32::from_str_radix(v, 16).map_err(|_| bad())?)
            }
        };
        let device = hex(device, 2)?;
        if device > 0x1f {
            return Err(bad());
        }
        Ok(PciAddress {
            domain: hex(domain, 4)? as u16,
            bus: hex(bus, 2)? as u8,
            device: device as u8,
            function,
        })
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}",
            self.domain, self.bus, self.device
        )?;
        if let Some(func) = self.function {
            write!(f, ".{func:x}")?;
        }
        Ok(())
    }
}

impl Serialize for PciAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PciAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A vendor:device id pair such as `10de:1b80`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciId {
    pub vendor: u16,
    pub device: u16,
}

impl FromStr for PciId {
    type Err = PciError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PciError::BadId(s.to_string());
        let (v, d) = s.trim().split_once(':').ok_or_else(bad)?;
        let parse = |x: &str| {
            let x = x.trim_start_matches("0x");
            if x.len() != 4 {
                return Err(bad());
            }
            u16::from_str_radix(x, 16).map_err(|_| bad())
        };
        Ok(PciId {
            vendor: parse(v)?,
            device: parse(d)?,
        })
    }
}

impl fmt::Display for PciId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vendor, self.device)
    }
}

impl Serialize for PciId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PciId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The stable id pvegpu gives the cluster PCI mapping of a card in slot `slot`
/// (`0000:02:00`): `gpu-02-00`, the domain only when not 0. `discover` offers it, the VM
/// phase creates it.
pub fn mapping_id(slot: &str) -> String {
    let parts: Vec<&str> = slot.split(':').collect();
    match parts.as_slice() {
        ["0000", bus, dev] => format!("gpu-{bus}-{dev}"),
        [dom, bus, dev] => format!("gpu-{dom}-{bus}-{dev}"),
        _ => format!("gpu-{}", slot.replace([':', '.'], "-")),
    }
    .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_normalise_to_lspci_d_form() {
        let a: PciAddress = "02:00".parse().unwrap();
        assert_eq!(a.to_string(), "0000:02:00");
        let b: PciAddress = "0000:83:00.1".parse().unwrap();
        assert_eq!(b.to_string(), "0000:83:00.1");
        let c: PciAddress = "0000:0A:1F.7".parse().unwrap();
        assert_eq!(c.to_string(), "0000:0a:1f.7");
        assert!(a.covers(&"0000:02:00.1".parse().unwrap()));
        assert!(!b.covers(&"0000:83:00.0".parse().unwrap()));
    }

    #[test]
    fn bad_addresses_are_refused() {
        for bad in [
            "",
            "2",
            "02",
            "02:00.8",
            "02:20",
            "zz:00",
            "0000:02:00:00",
            "10000:02:00.0",
            "02:00.",
            "02:000",
        ] {
            assert!(bad.parse::<PciAddress>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn ids_parse_with_or_without_0x() {
        let id: PciId = "10de:1B80".parse().unwrap();
        assert_eq!(id.to_string(), "10de:1b80");
        let id2: PciId = "0x10de:0x10f0".parse().unwrap();
        assert_eq!(id2.to_string(), "10de:10f0");
        assert!("10de1b80".parse::<PciId>().is_err());
        assert!("10de:1b8".parse::<PciId>().is_err());
    }
}

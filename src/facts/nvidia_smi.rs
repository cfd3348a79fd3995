//! `nvidia-smi --query-gpu=pci.bus_id,uuid,name,driver_version,compute_cap --format=csv,noheader`,
//! read one way for the guest planner and for `verify`.

use crate::pci::PciAddress;
use serde::Serialize;

/// One GPU row of the query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SmiGpu {
    pub address: PciAddress,
    /// The bus id as nvidia-smi prints it (`00000000:01:00.0`).
    pub bus_id: String,
    pub uuid: String,
    pub name: String,
    pub driver_version: String,
    /// `None` where the driver printed `[N/A]` instead of a capability.
    pub compute_cap: Option<String>,
}

/// The query's output: its GPU rows, and every other line (errors, warnings), which are the
/// diagnosis when there is no row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmiQuery {
    pub gpus: Vec<SmiGpu>,
    pub other: Vec<String>,
}

/// nvidia-smi's bus id has an 8-digit domain (`00000000:01:00.0`); lspci's has 4.
pub fn smi_bus_address(bus_id: &str) -> Option<PciAddress> {
    let b = bus_id.trim();
    let b = match b.split_once(':') {
        Some((dom, rest)) if dom.len() == 8 => format!("{}:{rest}", &dom[4..]),
        _ => b.to_string(),
    };
    b.to_ascii_lowercase().parse().ok()
}

/// A row is five fields with a PCI address and a `GPU-` UUID; an nvidia-smi that does not
/// know a field refuses the whole query, so a shorter row is not a GPU.
fn gpu_row(line: &str) -> Option<SmiGpu> {
    let f: Vec<&str> = line.split(',').map(str::trim).collect();
    if f.len() != 5 || !f[1].starts_with("GPU-") {
        return None;
    }
    Some(SmiGpu {
        address: smi_bus_address(f[0])?,
        bus_id: f[0].to_string(),
        uuid: f[1].to_string(),
        name: f[2].to_string(),
        driver_version: f[3].to_string(),
        compute_cap: Some(f[4])
            .filter(|c| c.starts_with(|c: char| c.is_ascii_digit()))
            .map(str::to_string),
    })
}

pub fn query(text: &str) -> SmiQuery {
    let mut q = SmiQuery::default();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match gpu_row(line) {
            Some(g) => q.gpus.push(g),
            None => q.other.push(line.to_string()),
        }
    }
    q
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
}

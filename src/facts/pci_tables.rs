//! PCI listings in shapes other than lspci's default, rewritten as lspci lines and group-listing
//! lines so that one parser reads them all: `pvesh get /nodes/N/hardware/pci` as a table or as
//! JSON (fields as in the Proxmox VE API schema: class, vendor, device, id, iommugroup,
//! vendor_name, device_name), and `lspci -vmm` / `-nnvmm` records (Slot:, Class:, Driver:,
//! IOMMUGroup:).

use super::lspci::class_name;
use serde_json::Value;

/// What a listing said, in the shapes the facts parsers read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Converted {
    pub lspci: Vec<String>,
    pub groups: Vec<String>,
}

struct Row<'a> {
    address: &'a str,
    class: &'a str,
    vendor: &'a str,
    device: &'a str,
    group: Option<i64>,
    vendor_name: &'a str,
    device_name: &'a str,
}

fn hex4(v: &str) -> String {
    v.trim().trim_start_matches("0x").to_ascii_lowercase()
}

impl Row<'_> {
    fn convert(&self, out: &mut Converted) {
        let class = hex4(self.class);
        let cc = class.get(..4).unwrap_or(&class);
        let code = u16::from_str_radix(cc, 16).unwrap_or_default();
        let name = class_name(code)
            .map(str::to_string)
            .unwrap_or_else(|| format!("Class {cc}"));
        out.lspci.push(format!(
            "{} {name} [{cc}]: {} {} [{}:{}]",
            self.address,
            self.vendor_name.trim(),
            self.device_name.trim(),
            hex4(self.vendor),
            hex4(self.device)
        ));
        // pvesh prints -1 where the device has no group (no IOMMU)
        if let Some(g) = self.group.filter(|g| *g >= 0) {
            out.groups.push(format!("IOMMU Group {g} {}", self.address));
        }
    }
}

/// The box-drawn table pvesh prints (`│ class │ device │ id │ iommugroup │ ...`).
pub fn pvesh_table(lines: &[&str]) -> Option<Converted> {
    let cells = |l: &str| -> Vec<String> {
        l.trim()
            .trim_matches('│')
            .split('│')
            .map(|c| c.trim().to_string())
            .collect()
    };
    let rows: Vec<Vec<String>> = lines
        .iter()
        .filter(|l| l.trim_start().starts_with('│'))
        .map(|l| cells(l))
        .collect();
    let header = rows.first()?;
    let col = |name: &str| header.iter().position(|h| h == name);
    let (id, class, group) = (col("id")?, col("class")?, col("iommugroup")?);
    let (vendor, device) = (col("vendor")?, col("device")?);
    let text =
        |r: &Vec<String>, c: Option<usize>| c.and_then(|c| r.get(c).cloned()).unwrap_or_default();
    let mut out = Converted::default();
    for r in rows.iter().skip(1) {
        let values: Vec<String> = [
            Some(id),
            Some(class),
            Some(vendor),
            Some(device),
            col("vendor_name"),
            col("device_name"),
        ]
        .into_iter()
        .map(|c| text(r, c))
        .collect();
        if values[0].is_empty() {
            continue;
        }
        Row {
            address: &values[0],
            class: &values[1],
            vendor: &values[2],
            device: &values[3],
            group: text(r, Some(group)).parse().ok(),
            vendor_name: &values[4],
            device_name: &values[5],
        }
        .convert(&mut out);
    }
    Some(out)
}

/// `pvesh get ... --output-format json`: an array of objects.
pub fn pvesh_json(text: &str) -> Option<Converted> {
    let v: Value = serde_json::from_str(text.trim()).ok()?;
    let mut out = Converted::default();
    for d in v.as_array()? {
        let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("");
        Row {
            address: s("id"),
            class: s("class"),
            vendor: s("vendor"),
            device: s("device"),
            group: d.get("iommugroup").and_then(Value::as_i64),
            vendor_name: s("vendor_name"),
            device_name: s("device_name"),
        }
        .convert(&mut out);
    }
    (!out.lspci.is_empty()).then_some(out)
}

/// `lspci -vmm` records; with `-nn` their names carry `[code]`s, which lspci's `-nn` line keeps.
pub fn lspci_vmm(lines: &[&str]) -> Option<Converted> {
    let mut out = Converted::default();
    let mut rec: Vec<(String, String)> = Vec::new();
    let flush = |rec: &mut Vec<(String, String)>, out: &mut Converted| {
        let get = |k: &str| {
            rec.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        if let (Some(slot), Some(class)) = (get("Slot"), get("Class")) {
            let vendor = get("Vendor").unwrap_or("");
            let device = get("Device").unwrap_or("");
            out.lspci.push(lspci_line(slot, class, vendor, device));
            if let Some(d) = get("Driver") {
                out.lspci.push(format!("\tKernel driver in use: {d}"));
            }
            if let Some(g) = get("IOMMUGroup") {
                out.groups.push(format!("IOMMU Group {g} {slot}"));
            }
        }
        rec.clear();
    };
    for l in lines {
        match l.split_once(':') {
            Some((k, v)) if !k.contains(' ') && !l.starts_with(char::is_whitespace) => {
                if k == "Slot" {
                    flush(&mut rec, &mut out);
                }
                rec.push((k.to_string(), v.trim().to_string()));
            }
            _ if l.trim().is_empty() => flush(&mut rec, &mut out),
            _ => {}
        }
    }
    flush(&mut rec, &mut out);
    (!out.lspci.is_empty()).then_some(out)
}

/// `Host bridge [0600]` + `AMD [1022]` + `Renoir Root Complex [1630]` → lspci -nn's line.
fn lspci_line(slot: &str, class: &str, vendor: &str, device: &str) -> String {
    let code = |s: &str| {
        s.trim_end()
            .strip_suffix(']')
            .and_then(|x| x.rsplit_once(" ["))
            .filter(|(_, c)| c.len() == 4 && c.chars().all(|ch| ch.is_ascii_hexdigit()))
            .map(|(name, c)| (name.to_string(), c.to_string()))
    };
    match (code(class), code(vendor), code(device)) {
        (Some((cn, cc)), Some((vn, vid)), Some((dn, did))) => {
            format!("{slot} {cn} [{cc}]: {vn} {dn} [{vid}:{did}]")
        }
        _ => format!("{slot} {class}: {vendor} {device}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmm_records_as_posted() {
        // lspci -nnvmm from an ASRock X300 Proxmox host (mkoreneff/iommu_info_generate#11)
        let text = "Slot:   00:01.0\nClass:  Host bridge [0600]\nVendor: Advanced Micro Devices, Inc. [AMD] [1022]\nDevice: Renoir PCIe Dummy Host Bridge [1632]\nProgIf: 00\nIOMMUGroup:     0\n\nSlot:   00:01.1\nClass:  PCI bridge [0604]\nVendor: Advanced Micro Devices, Inc. [AMD] [1022]\nDevice: Renoir PCIe GPP Bridge [1633]\nSVendor:        Advanced Micro Devices, Inc. [AMD] [1022]\nSDevice:        Renoir PCIe GPP Bridge [1453]\nProgIf: 00\nIOMMUGroup:     1\n";
        let lines: Vec<&str> = text.lines().collect();
        let c = lspci_vmm(&lines).unwrap();
        assert_eq!(
            c.lspci[0],
            "00:01.0 Host bridge [0600]: Advanced Micro Devices, Inc. [AMD] Renoir PCIe Dummy Host Bridge [1022:1632]"
        );
        assert_eq!(
            c.groups,
            vec!["IOMMU Group 0 00:01.0", "IOMMU Group 1 00:01.1"]
        );
    }

    #[test]
    fn pvesh_table_and_json() {
        // assembled in pvesh's table layout with the API schema's field names (no posted
        // table with every column was found)
        let table = "┌──────────┬────────┬──────────────┬────────────┬────────┬──────────────────────────┬──────────────────────┐\n│ class    │ device │ id           │ iommugroup │ vendor │ device_name              │ vendor_name          │\n╞══════════╪════════╪══════════════╪════════════╪════════╪══════════════════════════╪══════════════════════╡\n│ 0x030000 │ 0x2204 │ 0000:0b:00.0 │         28 │ 0x10de │ GA102 [GeForce RTX 3090] │ NVIDIA Corporation   │\n├──────────┼────────┼──────────────┼────────────┼────────┼──────────────────────────┼──────────────────────┤\n│ 0x040300 │ 0x1aef │ 0000:0b:00.1 │         28 │ 0x10de │ GA102 High Definition Audio Controller │ NVIDIA Corporation │\n└──────────┴────────┴──────────────┴────────────┴────────┴──────────────────────────┴──────────────────────┘\n";
        let lines: Vec<&str> = table.lines().collect();
        let c = pvesh_table(&lines).unwrap();
        assert_eq!(
            c.lspci[0],
            "0000:0b:00.0 VGA compatible controller [0300]: NVIDIA Corporation GA102 [GeForce RTX 3090] [10de:2204]"
        );
        assert_eq!(c.groups[1], "IOMMU Group 28 0000:0b:00.1");
        let json = r#"[{"class":"0x030000","device":"0x2204","id":"0000:0b:00.0","iommugroup":-1,"vendor":"0x10de","device_name":"GA102","vendor_name":"NVIDIA Corporation"}]"#;
        let c = pvesh_json(json).unwrap();
        assert_eq!(c.lspci.len(), 1);
        assert!(c.groups.is_empty());
    }
}

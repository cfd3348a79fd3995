//! How the cards are written into the VM config: raw `host=` entries for root@pam with a
//! ticket, else a cluster PCI resource mapping per card, created or corrected from the facts
//! the host phase verified.

use super::super::state::{ApiFacts, Mapping, overlaps, property_string};
use super::{DeviceMethod, Draft, HostDevice, VmStep};
use crate::inventory::vm::{ApiSettings, Firmware, VmSpec};

pub use crate::pci::mapping_id;

/// The map entry pvegpu wants for a card: the facts PVE uses to detect changed hardware.
pub fn mapping_entry(pve_node: &str, d: &HostDevice) -> String {
    let mut s = format!("node={pve_node},path={},id={}", d.slot, d.id);
    if let Some(g) = d.iommu_group {
        s.push_str(&format!(",iommugroup={g}"));
    }
    if let Some(sub) = &d.subsystem {
        s.push_str(&format!(",subsystem-id={sub}"));
    }
    s
}

/// The device method the credentials allow, and why.
pub(super) fn method(api: &ApiSettings) -> (DeviceMethod, &'static str) {
    match (&api.token, api.user.as_deref()) {
        (None, Some("root@pam")) => (
            DeviceMethod::Host,
            "root@pam with a ticket may write raw `host=` hostpci entries, as `qm set --hostpci0 02:00` does",
        ),
        (Some(_), _) => (
            DeviceMethod::Mapping,
            "an API token may not write raw `host=` hostpci entries (PVE allows that to root@pam with a ticket only), so each card goes through a cluster PCI resource mapping",
        ),
        _ => (
            DeviceMethod::Mapping,
            "only root@pam may write raw `host=` entries, so each card goes through a cluster PCI resource mapping",
        ),
    }
}

/// The hostpci value of each wanted card; the mapping steps they need go to `mappings`.
pub(super) fn entries(
    method: DeviceMethod,
    spec: &VmSpec,
    facts: &ApiFacts,
    wanted: &[&HostDevice],
    out: &mut Draft,
) -> Vec<String> {
    let pcie = if spec.firmware == Firmware::Ovmf {
        ",pcie=1"
    } else {
        ""
    };
    wanted
        .iter()
        .map(|d| match method {
            DeviceMethod::Host => format!("{}{pcie}", d.slot),
            DeviceMethod::Mapping => {
                let id = mapping(&facts.node, d, &facts.mappings, out);
                format!("mapping={id}{pcie}")
            }
        })
        .collect()
}

/// The id of the mapping that gives `d` on this node: one naming the card already, else
/// pvegpu's own (created, or given an entry for this node).
fn mapping(pve_node: &str, d: &HostDevice, mappings: &[Mapping], out: &mut Draft) -> String {
    let want = mapping_entry(pve_node, d);
    let own = mapping_id(&d.slot);
    let found = mappings.iter().find(|m| {
        m.entry_for(pve_node)
            .and_then(|e| e.get("path").cloned())
            .is_some_and(|p| p.split(';').any(|x| overlaps(x, &d.slot)))
    });
    let Some(m) = found else {
        match mappings.iter().find(|m| m.id == own) {
            // Our id exists but has no entry for this node: add ours.
            Some(m) => {
                let mut map = m.map.clone();
                map.push(want);
                out.mappings.push(VmStep::UpdateMapping {
                    id: own.clone(),
                    map,
                    from: String::new(),
                    was: m.map.clone(),
                });
            }
            None => out.mappings.push(VmStep::CreateMapping {
                id: own.clone(),
                map: want,
            }),
        }
        return own;
    };
    let differs = differences(&want, &m.entry_for(pve_node).unwrap_or_default());
    if !differs.is_empty() {
        if m.id == own {
            let is_ours = |e: &String| {
                property_string(e, None).get("node").map(String::as_str) == Some(pve_node)
            };
            let map = m
                .map
                .iter()
                .map(|e| if is_ours(e) { want.clone() } else { e.clone() })
                .collect();
            let from = m
                .map
                .iter()
                .find(|e| is_ours(e))
                .cloned()
                .unwrap_or_default();
            out.mappings.push(VmStep::UpdateMapping {
                id: own,
                map,
                from,
                was: m.map.clone(),
            });
        } else {
            out.refuse(
                format!("the PCI mapping `{}` for {} disagrees with the verified host: {}", m.id, d.slot, differs.join(", ")),
                "the hardware may have changed: correct the mapping under Datacenter > Resource Mappings, or delete it and let pvegpu create its own",
            );
        }
    }
    m.id.clone()
}

/// The hardware facts in which a mapping's entry differs from the one pvegpu wants.
fn differences(want: &str, have: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    let w = property_string(want, None);
    ["path", "id", "iommugroup", "subsystem-id"]
        .iter()
        .filter(|k| w.get(**k) != have.get(**k) && (w.contains_key(**k) || **k == "path"))
        .map(|k| {
            format!(
                "{k} {} -> {}",
                have.get(*k).map(String::as_str).unwrap_or("(none)"),
                w.get(*k).map(String::as_str).unwrap_or("(none)")
            )
        })
        .collect()
}

//! hostpci slot placement: an entry already naming a card stays where it is, a new one takes
//! the first free slot, and a second entry naming one of the cards is removed.

use super::super::state::{ApiFacts, VmConfig, hostpci_addresses, overlaps};
use super::keys::normalised;
use super::{Draft, HostDevice};
use std::collections::{BTreeMap, BTreeSet};

pub(super) struct Slots {
    /// `hostpciN` -> the entry it gets.
    pub placed: BTreeMap<String, String>,
    /// Keys that name a wanted card a second time.
    pub delete: Vec<String>,
}

pub(super) fn place(
    wanted: &[&HostDevice],
    entries: &[String],
    current: Option<&VmConfig>,
    facts: &ApiFacts,
    out: &mut Draft,
) -> Slots {
    let pve_node = facts.node.as_str();
    let cur_hostpci: BTreeMap<String, String> = current
        .map(|c| {
            c.config
                .iter()
                .filter(|(k, _)| k.starts_with("hostpci"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut used: BTreeSet<String> = cur_hostpci.keys().cloned().collect();
    let mut placed: BTreeMap<String, String> = BTreeMap::new();
    for (d, e) in wanted.iter().zip(entries) {
        let at = cur_hostpci.iter().find(|(_, v)| {
            hostpci_addresses(v, pve_node, &facts.mappings)
                .iter()
                .any(|a| overlaps(a, &d.slot))
                || normalised("hostpci0", v) == normalised("hostpci0", e)
        });
        match at {
            Some((k, _)) if !placed.contains_key(k) => {
                placed.insert(k.clone(), e.clone());
            }
            _ => {
                let k = (0..16)
                    .map(|n| format!("hostpci{n}"))
                    .find(|k| !used.contains(k) && !placed.contains_key(k));
                match k {
                    Some(k) => {
                        used.insert(k.clone());
                        placed.insert(k, e.clone());
                    }
                    None => out.refuse(
                        "the VM has no free hostpci slot (16 used)".into(),
                        "remove unused hostpci entries",
                    ),
                }
            }
        }
    }
    // A second entry naming one of the cards would fail the start ("assigned more than once").
    let delete = cur_hostpci
        .iter()
        .filter(|(k, _)| !placed.contains_key(*k))
        .filter(|(_, v)| {
            let addrs = hostpci_addresses(v, pve_node, &facts.mappings);
            wanted
                .iter()
                .any(|d| addrs.iter().any(|a| overlaps(a, &d.slot)))
        })
        .map(|(k, _)| k.clone())
        .collect();
    Slots { placed, delete }
}

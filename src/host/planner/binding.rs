//! How the targets get to vfio-pci (by id or per device), honouring or refusing what foreign
//! modprobe configuration already does, and which host drivers to keep off them.

use super::{Desired, is_ours};
use crate::core::plan::Refusal;
use crate::facts::HostFacts;
use crate::facts::modconf::{self, Directive, Located};
use crate::pci::{PciAddress, PciId};
use std::collections::BTreeSet;

fn foreign_modprobe(facts: &HostFacts) -> Vec<Located<Directive>> {
    facts
        .files_under("/etc/modprobe.d/")
        .filter(|(p, _)| !is_ours(p))
        .flat_map(|(p, f)| modconf::parse_modprobe(p, &f.content))
        .collect()
}

fn ids_of(params: &[(String, String)]) -> Vec<PciId> {
    params
        .iter()
        .filter(|(k, _)| k == "ids")
        .flat_map(|(_, v)| {
            v.split(',')
                .filter_map(|i| i.parse().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Choose how the targets get to vfio-pci, honouring (or refusing) what foreign config does.
pub(super) fn binding(facts: &HostFacts, d: &mut Desired) -> Vec<Refusal> {
    let mut refusals = Vec::new();
    let target_devs: Vec<_> = d.targets.iter().filter_map(|a| facts.device(a)).collect();
    let needed: BTreeSet<PciId> = target_devs.iter().map(|t| t.id).collect();
    let twins: Vec<_> = facts
        .devices
        .iter()
        .filter(|x| !d.targets.contains(&x.address) && needed.contains(&x.id))
        .collect();
    d.per_device = !twins.is_empty();

    let foreign = foreign_modprobe(facts);
    let mut externally_bound: BTreeSet<PciAddress> = BTreeSet::new();
    let mut foreign_ids_lines = Vec::new();
    for l in &foreign {
        match &l.item {
            Directive::Options { module, params } if module == "vfio_pci" => {
                let ids = ids_of(params);
                if ids.is_empty() {
                    continue;
                }
                foreign_ids_lines.push(format!("{}:{}", l.file, l.line));
                for dev in facts.devices.iter().filter(|x| ids.contains(&x.id)) {
                    if d.targets.contains(&dev.address) {
                        externally_bound.insert(dev.address);
                    } else {
                        refusals.push(Refusal {
                            reason: format!(
                                "{}:{} binds [{}] to vfio-pci, which takes {} ({}) from the host although it is not a target",
                                l.file, l.line, dev.id, dev.address, dev.short_name()
                            ),
                            hint: "pvegpu does not edit lines it did not write: remove that `options vfio-pci ids=` line (pvegpu then binds exactly the targets), or add the device to the inventory".into(),
                        });
                    }
                }
            }
            Directive::Install { module, .. } if module == "vfio_pci" => refusals.push(Refusal {
                reason: format!(
                    "{}:{} already replaces how vfio-pci loads (`install vfio-pci ...`)",
                    l.file, l.line
                ),
                hint: "remove that line so pvegpu can manage vfio-pci binding".into(),
            }),
            _ => {}
        }
    }
    let all_external = !externally_bound.is_empty() && externally_bound == d.targets;
    if !externally_bound.is_empty() && !all_external && refusals.is_empty() {
        refusals.push(Refusal {
            reason: format!(
                "{} binds some targets with `options vfio-pci ids=`; a second ids= from pvegpu would replace it",
                foreign_ids_lines.join(", ")
            ),
            hint: "remove that line and let pvegpu manage the binding, or make it list every target id".into(),
        });
    }
    if !d.per_device && !all_external {
        d.ids = needed.iter().copied().collect();
    }

    let satisfied_dep = |m: &str| {
        foreign.iter().any(|l| match &l.item {
            Directive::Softdep { module, pre, .. } => {
                module == m && pre.iter().any(|p| p == "vfio_pci")
            }
            Directive::Blacklist { module } => module == m,
            _ => false,
        })
    };
    let mut softdeps: BTreeSet<String> = BTreeSet::new();
    for t in &target_devs {
        for m in t.modules.iter().chain(t.driver.iter()) {
            let m = modconf::module_name(m);
            if m != "vfio_pci" {
                softdeps.insert(m);
            }
        }
    }
    d.softdeps = softdeps.into_iter().collect();
    // when pvegpu's file is needed anyway it carries every softdep, so it stands on its own;
    // otherwise foreign softdeps or blacklists already cover the targets
    let file_needed_anyway = !d.ids.is_empty() || d.per_device || d.allow_unsafe_interrupts;
    if !file_needed_anyway && d.softdeps.iter().all(|m| satisfied_dep(m)) {
        d.softdeps.clear();
    }

    if !d.per_device {
        let host_uses: BTreeSet<String> = facts
            .devices
            .iter()
            .filter(|x| !d.targets.contains(&x.address))
            .flat_map(|x| {
                x.modules
                    .iter()
                    .chain(x.driver.iter())
                    .map(|m| modconf::module_name(m))
            })
            .collect();
        let mut bl: BTreeSet<String> = BTreeSet::new();
        for t in target_devs.iter().filter(|t| t.is_display()) {
            for m in t
                .modules
                .iter()
                .chain(t.driver.iter())
                .map(|m| modconf::module_name(m))
            {
                if m != "vfio_pci" && !host_uses.contains(&m) {
                    bl.insert(m);
                }
            }
        }
        let already = |m: &String| {
            foreign
                .iter()
                .any(|l| matches!(&l.item, Directive::Blacklist { module } if module == m))
        };
        if !bl.iter().all(already) {
            d.blacklist = bl.into_iter().collect();
        }
    }
    refusals
}

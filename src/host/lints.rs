//! Lints on the passthrough configuration a node already has (hand-written guides leave these
//! behind): each names the file and line and what to do. They warn; they refuse nothing, and
//! pvegpu never edits a line it did not write.

use super::verdict::{self, State};
use crate::facts::HostFacts;
use crate::facts::kernels::major_minor;
use crate::facts::modconf::{self, Directive};
use crate::pci::PciId;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lint {
    pub code: &'static str,
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl Lint {
    pub fn render(&self) -> String {
        format!(
            "{}:{}: {} [{}]",
            self.file, self.line, self.message, self.code
        )
    }
}

pub fn lints(facts: &HostFacts) -> Vec<Lint> {
    let mut out = Vec::new();
    let remapping_on = verdict::interrupt_remapping(facts) == State::On;
    for (path, f) in facts.files_under("/etc/modprobe.d/") {
        for d in modconf::parse_modprobe(path, &f.content) {
            let lint = |code, message: String| Lint {
                code,
                file: d.file.clone(),
                line: d.line,
                message,
            };
            match &d.item {
                Directive::Options { module, params } => {
                    let unsafe_irq = module == "vfio_iommu_type1"
                        && params
                            .iter()
                            .any(|(k, v)| k == "allow_unsafe_interrupts" && (v == "1" || v == "Y"));
                    if unsafe_irq && remapping_on {
                        out.push(lint("unneeded_unsafe_interrupts", "allow_unsafe_interrupts=1 while interrupt remapping works: it only lets a guest inject interrupts into the host should remapping fail; delete the line".into()));
                    }
                    if module == "vfio_pci" && facts.devices_complete {
                        let absent = absent_ids(facts, params);
                        if !absent.is_empty() {
                            out.push(lint("ids_not_in_host", format!("vfio-pci ids= names {}, which no device of this host has: a stale line from another card or host", absent.join(", "))));
                        }
                    }
                }
                Directive::Blacklist { module } if module == "snd_hda_intel" => {
                    out.push(lint("blacklist_snd_hda_intel", "blacklist snd_hda_intel takes every HDA audio device of the host, the onboard audio too; bind the card's audio function to vfio-pci instead (pvegpu does, by id or address) and delete the line".into()));
                }
                _ => {}
            }
        }
    }
    // vfio_virqfd was merged into vfio in 6.2 (kernel commit e2d55709398e); loading it fails
    let next = facts.next_boot_kernel().unwrap_or(&facts.running_kernel);
    if major_minor(next).is_some_and(|v| v >= (6, 2)) {
        for (path, f) in facts.files.iter().filter(|(p, f)| {
            (*p == "/etc/modules" || p.starts_with("/etc/modules-load.d/")) && f.link.is_none()
        }) {
            for m in modconf::parse_module_list(path, &f.content) {
                if m.item == "vfio_virqfd" {
                    out.push(Lint {
                        code: "vfio_virqfd_merged",
                        file: m.file,
                        line: m.line,
                        message: format!("vfio_virqfd is part of vfio since kernel 6.2 (this node boots {next}): the module no longer exists and systemd-modules-load reports a failure; delete the line"),
                    });
                }
            }
        }
    }
    out
}

fn absent_ids(facts: &HostFacts, params: &[(String, String)]) -> Vec<String> {
    params
        .iter()
        .filter(|(k, _)| k == "ids")
        .flat_map(|(_, v)| v.split(','))
        .filter_map(|id| {
            let parsed: PciId = id.trim().parse().ok()?;
            (!facts.devices.iter().any(|d| d.id == parsed)).then(|| id.trim().to_string())
        })
        .collect()
}

//! The VM plan as text.

use super::planner::{VmPlan, VmStep};

fn show(v: Option<&str>) -> &str {
    v.unwrap_or("(unset)")
}

fn render_enroll(out: &mut String, from: Option<&str>, marker: Option<&str>, staged: bool) {
    let Some(from) = from else {
        out.push_str("  ~ enroll the 2023 Microsoft UEFI CA into the new efidisk0 before its first start, unless Proxmox's EFI template already has it (pve-edk2-firmware 4.2025.05-1 or later marks it ms-cert=2023k at creation)\n");
        return;
    };
    let when = if staged {
        "when the restart below stops the VM"
    } else {
        "now, while the VM is stopped"
    };
    out.push_str(&format!(
        "  ~ enroll the 2023 Microsoft UEFI CA into efidisk0 ({}): Proxmox enrolls it {when}\n      efidisk0: {from} -> {}\n",
        super::efi::marker_text(marker),
        super::efi::with_enrolled_marker(from)
    ));
}

impl VmPlan {
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let id = self
            .vmid
            .map(|v| v.to_string())
            .unwrap_or_else(|| "?".into());
        out.push_str(&format!(
            "\nVM {id} `{}` on {} (Proxmox node {}): {}\n",
            self.name,
            self.node,
            self.pve_node,
            match (self.exists, self.running) {
                (false, _) => "does not exist yet",
                (true, true) => "running",
                (true, false) => "stopped",
            }
        ));
        out.push_str(&format!(
            "  devices by {}: {}\n",
            match self.method {
                super::DeviceMethod::Host => "`host=`",
                super::DeviceMethod::Mapping => "`mapping=`",
            },
            self.method_reason
        ));
        for d in &self.devices {
            out.push_str(&format!("    {d}\n"));
        }
        if let Some(w) = &self.waits_for_host {
            out.push_str(&format!(
                "  waits for the host: {w}; the VM steps run once the host is converged and verified\n"
            ));
        }
        if crate::core::plan::render_verdict(
            &mut out,
            &self.notes,
            &self.refusals,
            self.steps.is_empty(),
        ) {
            return out;
        }
        out.push_str("\nChanges:\n");
        for s in &self.steps {
            match s {
                VmStep::CreateMapping { id, map } => {
                    out.push_str(&format!("  + create PCI mapping `{id}`: {map}\n"))
                }
                VmStep::UpdateMapping { id, map, from, .. } => {
                    out.push_str(&format!("  ~ update PCI mapping `{id}`\n"));
                    if !from.is_empty() {
                        out.push_str(&format!("      - {from}\n"));
                    }
                    for m in map {
                        out.push_str(&format!("      + {m}\n"));
                    }
                }
                VmStep::CreateVm { vmid, params } => {
                    out.push_str(&format!("  + create VM {vmid}\n"));
                    for (k, v) in params {
                        out.push_str(&format!("      {k}: {v}\n"));
                    }
                }
                VmStep::SetConfig { changes, .. } => {
                    out.push_str("  ~ update the VM config (refused if it changed since this plan)\n");
                    for c in changes {
                        let mark = if c.disruptive { "  [needs stop+start]" } else { "" };
                        match &c.to {
                            Some(to) => out.push_str(&format!(
                                "      {}: {} -> {to}{mark}\n",
                                c.key,
                                show(c.from.as_deref())
                            )),
                            None => out.push_str(&format!(
                                "      {}: {} -> (delete){mark}\n",
                                c.key,
                                show(c.from.as_deref())
                            )),
                        }
                    }
                }
                VmStep::ResizeDisk { disk, from, to } => out.push_str(&format!(
                    "  ~ grow {disk}: {} -> {to}\n",
                    show(from.as_deref())
                )),
                VmStep::EnrollEfiCerts {
                    from,
                    marker,
                    staged,
                } => render_enroll(&mut out, from.as_deref(), marker.as_deref(), *staged),
                VmStep::Restart { keys } => out.push_str(&format!(
                    "  ⟳ shut the running VM down and start it again: {} take effect only then (the guest is down meanwhile)\n",
                    keys.join(", ")
                )),
                VmStep::Start => out.push_str("  ▶ start the VM and wait until it is reachable\n"),
            }
        }
        out
    }
}

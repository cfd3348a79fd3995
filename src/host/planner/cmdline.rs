//! The kernel command line: pvegpu's words in /etc/kernel/cmdline (systemd-boot) or its GRUB
//! drop-in, refused where a word it did not write contradicts them.

use super::{Desired, GRUB_DROPIN, KERNEL_CMDLINE, files, join};
use crate::core::plan::{Change, Refusal};
use crate::facts::boot::BootLoader;
use crate::facts::modconf::{self, Located};
use crate::facts::{FileFact, HostFacts};
use crate::host::playbook::HostStep;
use crate::templates::{self, TemplateError};
use minijinja::context;

/// The kernel parameters the boot loader is configured with, each with where it is set.
fn configured_cmdline(
    facts: &HostFacts,
    loader: &BootLoader,
    include_ours: bool,
) -> Vec<Located<String>> {
    match loader {
        BootLoader::SystemdBoot => facts
            .files
            .get(KERNEL_CMDLINE)
            .map(|f| {
                modconf::cmdline_tokens(&f.content)
                    .into_iter()
                    .map(|t| Located {
                        file: KERNEL_CMDLINE.into(),
                        line: 1,
                        item: t,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => {
            let mut files: Vec<(&String, &FileFact)> = facts
                .files
                .get_key_value("/etc/default/grub")
                .into_iter()
                .collect();
            files.extend(
                facts
                    .files_under("/etc/default/grub.d/")
                    .filter(|(p, _)| p.ends_with(".cfg")),
            );
            files
                .into_iter()
                .filter(|(p, _)| include_ours || p.as_str() != GRUB_DROPIN)
                .flat_map(|(p, f)| modconf::grub_cmdline_tokens(p, &f.content))
                .collect()
        }
    }
}

pub(super) fn kernel_cmdline(
    step: &HostStep,
    facts: &HostFacts,
    d: &Desired,
) -> Result<Option<Change>, Refusal> {
    if let BootLoader::Unknown { reason } = &d.boot_loader {
        return Err(Refusal {
            reason: format!("cannot tell which boot loader this node uses: {reason}"),
            hint: "set `boot_loader = \"systemd-boot\"`, `\"grub\"` or `\"proxmox-grub\"` under the node's [host] table (check with `proxmox-boot-tool status` and `efibootmgr -v`)".into(),
        });
    }
    let configured = configured_cmdline(facts, &d.boot_loader, false);
    for want in &d.cmdline {
        let key = modconf::token_key(want);
        if let Some(clash) = configured
            .iter()
            .find(|t| modconf::token_key(&t.item) == key && t.item != *want)
        {
            return Err(Refusal {
                reason: format!(
                    "{}:{} sets `{}`, which contradicts `{want}`",
                    clash.file, clash.line, clash.item
                ),
                hint: format!(
                    "pvegpu does not edit words it did not write: remove `{}` from that line",
                    clash.item
                ),
            });
        }
    }
    let missing: Vec<&String> = d
        .cmdline
        .iter()
        .filter(|w| !configured.iter().any(|t| &t.item == *w))
        .collect();
    let reason = format!("the boot loader does not pass {}", join(&missing));
    match d.boot_loader {
        BootLoader::SystemdBoot => {
            let Some(file) = facts.files.get(KERNEL_CMDLINE) else {
                return Err(Refusal {
                    reason: format!("the node boots with systemd-boot but has no {KERNEL_CMDLINE}"),
                    hint: "check `proxmox-boot-tool status`; if the node boots GRUB, set `boot_loader = \"grub\"` under [host]".into(),
                });
            };
            if missing.is_empty() {
                return Ok(None);
            }
            let mut tokens = modconf::cmdline_tokens(&file.content);
            tokens.extend(missing.iter().map(|s| s.to_string()));
            let content =
                templates::render("host/kernel-cmdline.j2", context! { tokens => tokens })
                    .map_err(template_refusal)?;
            Ok(files::file_change(
                step,
                facts,
                KERNEL_CMDLINE,
                content,
                reason,
            ))
        }
        _ => {
            let ours = facts.files.contains_key(GRUB_DROPIN);
            if missing.is_empty() && !ours {
                return Ok(None);
            }
            let content = templates::render(
                "host/grub-pvegpu.cfg.j2",
                context! { tokens => d.cmdline.clone() },
            )
            .map_err(template_refusal)?;
            let reason = if ours {
                format!("pvegpu's GRUB drop-in passes {}", d.cmdline.join(" "))
            } else {
                reason
            };
            Ok(files::file_change(
                step,
                facts,
                GRUB_DROPIN,
                content,
                reason,
            ))
        }
    }
}

fn template_refusal(e: TemplateError) -> Refusal {
    Refusal {
        reason: e.to_string(),
        hint: "this is a bug in pvegpu's templates; please report it".into(),
    }
}

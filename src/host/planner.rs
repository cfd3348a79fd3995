//! The host planner: a pure function from the inventory's wishes and the node's facts to a
//! [`HostPlan`]. It walks the host playbook in order; each step either plans nothing (already
//! as desired) or one change with its reason.
//!
//! Ownership rule: pvegpu writes whole files it owns, one marked block in
//! /etc/initramfs-tools/modules, and appends its own words to /etc/kernel/cmdline. It never
//! rewrites or deletes a line it did not write; where such a line contradicts the target
//! state, it refuses and names the file and line.

use super::analysis::{device_problems, iommu_problems, resolve_targets};
use crate::facts::boot::BootLoader;
use crate::facts::kernels::{compare_versions, major_minor};
use crate::facts::modconf::{self, Directive, Located};
use crate::facts::{CpuVendor, FileFact, HostFacts};
use crate::inventory::{BootLoaderChoice, Node};
use crate::pci::{PciAddress, PciId};
use crate::plan::{Action, BoundDevice, Change, HostPlan, Refusal, unified_diff};
use crate::playbook::{HOST, Step, StepKind};
use crate::templates::{self, TemplateError};
use minijinja::context;
use std::collections::{BTreeMap, BTreeSet};

pub const GRUB_DROPIN: &str = "/etc/default/grub.d/pvegpu.cfg";
pub const KERNEL_CMDLINE: &str = "/etc/kernel/cmdline";
const BLOCK_BEGIN: &str = "# BEGIN pvegpu";
const BLOCK_END: &str = "# END pvegpu";
const OWNED_MARK: &str = "Managed by pvegpu";

/// What the planner derived before walking the steps.
struct Desired {
    targets: BTreeSet<PciAddress>,
    per_device: bool,
    modules: Vec<String>,
    cmdline: Vec<String>,
    boot_loader: BootLoader,
    /// vfio-pci ids= pvegpu must set (empty when a foreign line already binds exactly the targets).
    ids: Vec<PciId>,
    softdeps: Vec<String>,
    blacklist: Vec<String>,
    allow_unsafe_interrupts: bool,
}

pub fn plan(node_name: &str, node: &Node, facts: &HostFacts) -> Result<HostPlan, TemplateError> {
    let (targets, mut refusals, mut notes) = resolve_targets(node_name, node, facts);
    let (iommu_refusals, iommu_notes) = iommu_problems(facts, node.host.allow_unsafe_interrupts);
    refusals.extend(iommu_refusals);
    notes.extend(iommu_notes);
    for t in &targets {
        if let Some(dev) = facts.device(t) {
            for r in device_problems(facts, dev, &targets) {
                // every function of a card reports the same group problem once
                if !refusals.contains(&r) {
                    refusals.push(r);
                }
            }
        }
    }
    if targets.is_empty() && node.gpus.is_empty() {
        notes.push(format!(
            "the inventory lists no gpus for {node_name}; nothing to pass through"
        ));
    }

    let boot_loader = match node.host.boot_loader {
        BootLoaderChoice::Auto => facts.boot_loader.clone(),
        BootLoaderChoice::SystemdBoot => BootLoader::SystemdBoot,
        BootLoaderChoice::Grub => BootLoader::Grub,
        BootLoaderChoice::ProxmoxGrub => BootLoader::ProxmoxGrub,
    };
    let mut desired = Desired {
        per_device: false,
        modules: vfio_modules(facts),
        cmdline: cmdline_tokens(facts, node),
        boot_loader,
        ids: Vec::new(),
        softdeps: Vec::new(),
        blacklist: Vec::new(),
        allow_unsafe_interrupts: node.host.allow_unsafe_interrupts
            && facts.kernel_log.irq_remapping != Some(true),
        targets,
    };
    refusals.extend(binding(facts, &mut desired));

    let bind = desired
        .targets
        .iter()
        .filter_map(|a| facts.device(a))
        .map(|d| BoundDevice {
            address: d.address.to_string(),
            id: d.id.to_string(),
            name: d.short_name(),
            iommu_group: d.iommu_group,
            driver_now: d.driver.clone(),
        })
        .collect();
    let mut plan = HostPlan {
        node: node_name.to_string(),
        context: context_line(facts, &desired.boot_loader),
        bind,
        binding: if desired.per_device {
            "per-device"
        } else {
            "ids"
        }
        .into(),
        changes: Vec::new(),
        refusals,
        notes,
    };
    // a refused node gets no changes at all: nothing is half-applied
    if desired.targets.is_empty() || !plan.refusals.is_empty() {
        return Ok(plan);
    }

    let mut reboot_reasons: Vec<String> = Vec::new();
    for step in &HOST.steps {
        let change = match step.kind {
            StepKind::OwnedFile => owned_file(step, facts, &desired)?,
            StepKind::ManagedBlock => managed_block(step, facts, &desired)?,
            StepKind::KernelCmdline => match kernel_cmdline(step, facts, &desired) {
                Ok(c) => c,
                Err(r) => {
                    plan.refusals.push(r);
                    None
                }
            },
            StepKind::Initramfs => initramfs(step, facts, &plan.changes),
            StepKind::BootLoader => boot_loader_refresh(step, facts, &desired, &plan.changes),
            StepKind::Reboot => {
                let pending: Vec<&str> = plan
                    .changes
                    .iter()
                    .filter(|c| c.needs_reboot)
                    .map(|c| c.step.as_str())
                    .collect();
                if !pending.is_empty() {
                    reboot_reasons.push(format!(
                        "boot-time configuration changes ({})",
                        pending.join(", ")
                    ));
                }
                reboot_reasons.extend(runtime_drift(facts, &desired));
                reboot_reasons.dedup();
                (!reboot_reasons.is_empty()).then(|| Change {
                    step: step.id.clone(),
                    summary: step.summary.clone(),
                    reason: reboot_reasons.join("; "),
                    action: Action::Reboot,
                    diff: None,
                    needs_reboot: false,
                })
            }
        };
        plan.changes.extend(change);
    }
    if !plan.refusals.is_empty() {
        plan.changes.clear();
    }
    if plan.needs_reboot() {
        let running: Vec<String> = facts
            .guests
            .iter()
            .filter(|g| g.status == "running")
            .map(|g| format!("{} ({})", g.vmid, g.name))
            .collect();
        if !running.is_empty() {
            plan.notes.push(format!(
                "the reboot needs these running guests stopped first: {}",
                running.join(", ")
            ));
        }
    }
    Ok(plan)
}

fn context_line(facts: &HostFacts, loader: &BootLoader) -> String {
    let vendor = match facts.cpu_vendor {
        CpuVendor::Intel => "Intel",
        CpuVendor::Amd => "AMD",
        CpuVendor::Other => "unknown CPU vendor",
    };
    let next = facts.next_boot_kernel().unwrap_or(&facts.running_kernel);
    let pve = facts
        .pve_version
        .as_deref()
        .map(|v| format!(", Proxmox VE {v}"))
        .unwrap_or_default();
    format!(
        "{vendor}, {}, kernel {} (next boot {next}){pve}",
        loader.describe(),
        facts.running_kernel
    )
}

/// vfio modules for the kernel that boots next; vfio_virqfd merged into vfio in 6.2.
fn vfio_modules(facts: &HostFacts) -> Vec<String> {
    let mut m = vec![
        "vfio".to_string(),
        "vfio_iommu_type1".into(),
        "vfio_pci".into(),
    ];
    let next = facts.next_boot_kernel().unwrap_or(&facts.running_kernel);
    if major_minor(next).is_some_and(|v| v < (6, 2)) {
        m.push("vfio_virqfd".into());
    }
    m
}

pub fn cmdline_tokens(facts: &HostFacts, node: &Node) -> Vec<String> {
    let mut t = Vec::new();
    // AMD's IOMMU is on by default and `amd_iommu=on` is not a valid value; Intel's only
    // became default in 6.8, so it is named explicitly.
    if facts.cpu_vendor == CpuVendor::Intel {
        t.push("intel_iommu=on".to_string());
    }
    if node.host.iommu_pt {
        t.push("iommu=pt".to_string());
    }
    t
}

fn is_ours(path: &str) -> bool {
    HOST.steps
        .iter()
        .any(|s| s.kind == StepKind::OwnedFile && s.path.as_deref() == Some(path))
        || path == GRUB_DROPIN
}

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
fn binding(facts: &HostFacts, d: &mut Desired) -> Vec<Refusal> {
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

fn file_change(
    step: &Step,
    facts: &HostFacts,
    path: &str,
    content: String,
    reason: String,
) -> Option<Change> {
    let before = facts.files.get(path).map(|f| f.content.clone());
    if before.as_deref() == Some(content.as_str()) {
        return None;
    }
    let mode = facts
        .files
        .get(path)
        .and_then(|f| f.mode.clone())
        .or_else(|| step.mode.clone())
        .unwrap_or_else(|| "644".into());
    Some(Change {
        step: step.id.clone(),
        summary: step.summary.clone(),
        reason,
        diff: Some(unified_diff(path, before.as_deref(), &content)),
        action: Action::WriteFile {
            path: path.to_string(),
            content,
            mode,
            before,
        },
        needs_reboot: step.reboot,
    })
}

fn remove_change(step: &Step, facts: &HostFacts, path: &str, reason: &str) -> Option<Change> {
    let f = facts.files.get(path)?;
    if !f.content.contains(OWNED_MARK) {
        return None;
    }
    Some(Change {
        step: step.id.clone(),
        summary: step.summary.clone(),
        reason: reason.to_string(),
        diff: Some(unified_diff(path, Some(&f.content), "")),
        action: Action::RemoveFile {
            path: path.to_string(),
            before: f.content.clone(),
        },
        needs_reboot: step.reboot,
    })
}

fn foreign_module_lists(facts: &HostFacts) -> BTreeSet<String> {
    let mut lists: Vec<(&String, &FileFact)> = facts
        .files_under("/etc/modules-load.d/")
        .filter(|(p, _)| !is_ours(p))
        .collect();
    if let Some(f) = facts.files.get_key_value("/etc/modules") {
        lists.push(f);
    }
    lists
        .iter()
        .flat_map(|(p, f)| modconf::parse_module_list(p, &f.content))
        .map(|l| l.item)
        .collect()
}

fn owned_file(
    step: &Step,
    facts: &HostFacts,
    d: &Desired,
) -> Result<Option<Change>, TemplateError> {
    let path = step.path.as_deref().unwrap_or_default();
    let template = step.template.as_deref().unwrap_or_default();
    let exists = facts.files.contains_key(path);
    let override_script = HOST
        .steps
        .iter()
        .find(|s| s.id == "vfio-override-script")
        .and_then(|s| s.path.clone())
        .unwrap_or_default();
    let devices: Vec<String> = d.targets.iter().map(|a| a.to_string()).collect();
    let (needed, content, reason) = match step.id.as_str() {
        "vfio-modules" => {
            let foreign = foreign_module_lists(facts);
            let missing: Vec<&String> =
                d.modules.iter().filter(|m| !foreign.contains(*m)).collect();
            let reason = if missing.is_empty() {
                "keeps pvegpu's list of vfio modules".to_string()
            } else {
                format!(
                    "{} not loaded at boot by any modules-load list",
                    join(&missing)
                )
            };
            (
                !missing.is_empty() || exists,
                templates::render(template, context! { modules => d.modules.clone() })?,
                reason,
            )
        }
        "vfio-binding" => {
            let needed = !d.ids.is_empty()
                || d.per_device
                || !d.softdeps.is_empty()
                || d.allow_unsafe_interrupts;
            let ids: Vec<String> = d.ids.iter().map(|i| i.to_string()).collect();
            let content = templates::render(
                template,
                context! {
                    devices => devices.clone(),
                    ids => ids,
                    override_script => if d.per_device { override_script.clone() } else { String::new() },
                    softdeps => d.softdeps.clone(),
                    allow_unsafe_interrupts => d.allow_unsafe_interrupts,
                },
            )?;
            let how = if d.per_device {
                "by address, because identical devices stay with the host"
            } else {
                "by vendor:device id"
            };
            (
                needed,
                content,
                format!("binds {} {how}", devices.join(" ")),
            )
        }
        "vfio-override-script" => (
            d.per_device,
            templates::render(template, context! { devices => devices })?,
            "marks the targets with driver_override when vfio-pci loads".to_string(),
        ),
        "vfio-override-hook" => (
            d.per_device,
            templates::render(template, context! { override_script => override_script })?,
            "the initramfs needs the override script as well".to_string(),
        ),
        "driver-blacklist" => (
            !d.blacklist.is_empty(),
            templates::render(template, context! { modules => d.blacklist.clone() })?,
            format!(
                "{} would claim the target GPUs; no host device needs them",
                d.blacklist.join(", ")
            ),
        ),
        other => unreachable!("host playbook step {other} has no owned-file rule"),
    };
    Ok(if needed {
        file_change(step, facts, path, content, reason)
    } else {
        remove_change(step, facts, path, "no longer needed for the targets")
    })
}

fn managed_block(
    step: &Step,
    facts: &HostFacts,
    d: &Desired,
) -> Result<Option<Change>, TemplateError> {
    let path = step.path.as_deref().unwrap_or_default();
    let template = step.template.as_deref().unwrap_or_default();
    let block = templates::render(template, context! { modules => d.modules.clone() })?;
    let current = facts
        .files
        .get(path)
        .map(|f| f.content.as_str())
        .unwrap_or("");
    let (outside, had_block) = strip_block(current);
    let foreign: BTreeSet<String> = modconf::parse_module_list(path, &outside)
        .into_iter()
        .map(|l| l.item)
        .collect();
    let missing: Vec<&String> = d.modules.iter().filter(|m| !foreign.contains(*m)).collect();
    if missing.is_empty() && !had_block {
        return Ok(None);
    }
    let new = replace_block(current, &block);
    Ok(file_change(
        step,
        facts,
        path,
        new,
        format!(
            "{} must be in the initramfs before any GPU driver loads",
            join(&d.modules.iter().collect::<Vec<_>>())
        ),
    ))
}

/// The file without pvegpu's block, and whether it had one.
pub(crate) fn strip_block(text: &str) -> (String, bool) {
    let mut out = String::new();
    let mut inside = false;
    let mut had = false;
    for line in text.lines() {
        if line.starts_with(BLOCK_BEGIN) {
            inside = true;
            had = true;
        } else if inside && line.starts_with(BLOCK_END) {
            inside = false;
        } else if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    (out, had)
}

/// Put `block` where pvegpu's block was, or append it; every other line stays as it was.
fn replace_block(text: &str, block: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    let mut placed = false;
    for line in text.lines() {
        if line.starts_with(BLOCK_BEGIN) {
            inside = true;
            out.push_str(block);
            placed = true;
        } else if inside {
            if line.starts_with(BLOCK_END) {
                inside = false;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !placed {
        out.push_str(block);
    }
    out
}

fn join(items: &[&String]) -> String {
    items
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

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

fn kernel_cmdline(step: &Step, facts: &HostFacts, d: &Desired) -> Result<Option<Change>, Refusal> {
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
            Ok(file_change(step, facts, KERNEL_CMDLINE, content, reason))
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
            Ok(file_change(step, facts, GRUB_DROPIN, content, reason))
        }
    }
}

fn template_refusal(e: TemplateError) -> Refusal {
    Refusal {
        reason: e.to_string(),
        hint: "this is a bug in pvegpu's templates; please report it".into(),
    }
}

/// Kernels whose initramfs lacks vfio-pci, lacks pvegpu's modprobe file, or predates the
/// module configuration it should carry.
fn stale_initramfs(facts: &HostFacts) -> Vec<String> {
    let config_mtime = facts
        .files
        .iter()
        .filter(|(p, f)| {
            f.link.is_none()
                && (p.starts_with("/etc/modprobe.d/")
                    || p.as_str() == "/etc/initramfs-tools/modules"
                    || p.starts_with("/usr/local/lib/pvegpu/"))
        })
        .filter_map(|(_, f)| f.mtime)
        .max();
    let ours = "/etc/modprobe.d/pvegpu-vfio.conf";
    let mut out = Vec::new();
    for k in facts.kernels.iter().filter(|k| k.initrd_mtime.is_some()) {
        let Some(info) = facts.initramfs.iter().find(|i| i.kernel == k.version) else {
            continue;
        };
        let lacks_ours = facts.files.contains_key(ours)
            && !info
                .modprobe_files
                .iter()
                .any(|f| f.ends_with("pvegpu-vfio.conf"));
        let older = matches!((info.mtime, config_mtime), (Some(i), Some(c)) if i < c);
        if !info.has_vfio_pci || lacks_ours || older {
            let why = if !info.has_vfio_pci {
                "no vfio-pci"
            } else if lacks_ours {
                "no pvegpu-vfio.conf"
            } else {
                "older than the module configuration"
            };
            out.push(format!("{} ({why})", k.version));
        }
    }
    out
}

fn initramfs(step: &Step, facts: &HostFacts, earlier: &[Change]) -> Option<Change> {
    let touched: Vec<&str> = earlier
        .iter()
        .filter_map(|c| match &c.action {
            Action::WriteFile { path, .. } | Action::RemoveFile { path, .. } => Some(path.as_str()),
            _ => None,
        })
        .filter(|p| {
            p.starts_with("/etc/modprobe.d/")
                || p.starts_with("/etc/initramfs-tools/")
                || p.starts_with("/usr/local/lib/pvegpu/")
        })
        .collect();
    let reason = if !touched.is_empty() {
        format!(
            "{} change(s) must reach every kernel's initramfs",
            touched.join(", ")
        )
    } else {
        let stale = stale_initramfs(facts);
        if stale.is_empty() {
            return None;
        }
        format!("initramfs out of date for {}", stale.join(", "))
    };
    Some(Change {
        step: step.id.clone(),
        summary: step.summary.clone(),
        reason,
        action: Action::Run {
            command: "update-initramfs -u -k all".into(),
        },
        diff: None,
        needs_reboot: step.reboot,
    })
}

fn missing_from_running<'a>(facts: &HostFacts, d: &'a Desired) -> Vec<&'a String> {
    d.cmdline
        .iter()
        .filter(|w| !facts.proc_cmdline.contains(w))
        .collect()
}

fn boot_loader_refresh(
    step: &Step,
    facts: &HostFacts,
    d: &Desired,
    earlier: &[Change],
) -> Option<Change> {
    let command = d.boot_loader.refresh_command()?;
    let cmdline_changed = earlier.iter().any(|c| c.step == "kernel-cmdline");
    let not_running = missing_from_running(facts, d);
    let reason = if cmdline_changed {
        "the new command line must reach the boot entries".to_string()
    } else if !not_running.is_empty() {
        format!(
            "the command line is configured but the running kernel lacks {}; refresh the boot entries before rebooting",
            join(&not_running)
        )
    } else {
        return None;
    };
    Some(Change {
        step: step.id.clone(),
        summary: step.summary.clone(),
        reason,
        action: Action::Run {
            command: command.into(),
        },
        diff: None,
        needs_reboot: step.reboot,
    })
}

/// Why the running system differs from the converged one, whatever the files say.
fn runtime_drift(facts: &HostFacts, d: &Desired) -> Vec<String> {
    let mut out = Vec::new();
    let missing = missing_from_running(facts, d);
    if !missing.is_empty() {
        out.push(format!(
            "the running kernel was booted without {}",
            join(&missing)
        ));
    }
    let off: Vec<String> = d
        .targets
        .iter()
        .filter_map(|a| facts.device(a))
        .filter(|dev| dev.driver.as_deref() != Some("vfio-pci"))
        .map(|dev| {
            format!(
                "{} ({})",
                dev.address,
                dev.driver.as_deref().unwrap_or("no driver")
            )
        })
        .collect();
    if !off.is_empty() {
        out.push(format!("not on vfio-pci yet: {}", off.join(", ")));
    }
    if let Some(next) = facts.next_boot_kernel() {
        if compare_versions(next, &facts.running_kernel) != std::cmp::Ordering::Equal {
            out.push(format!(
                "kernel {next} is installed and boots next (running {})",
                facts.running_kernel
            ));
        }
    }
    out
}

/// Per-kernel summary used by `discover` and the JSON output.
pub fn kernel_summary(facts: &HostFacts) -> BTreeMap<String, String> {
    facts
        .kernels
        .iter()
        .map(|k| {
            let info = facts.initramfs.iter().find(|i| i.kernel == k.version);
            let state = match (k.initrd_mtime, info) {
                (None, _) => "no initramfs".to_string(),
                (_, None) => "initramfs not inspected".to_string(),
                (_, Some(i)) if i.has_vfio_pci => "initramfs has vfio-pci".to_string(),
                _ => "initramfs lacks vfio-pci".to_string(),
            };
            (k.version.clone(), state)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_block_replaces_only_its_lines() {
        let text = "# user\nloop\n# BEGIN pvegpu (old)\nvfio\n# END pvegpu\ndm_mod\n";
        let new = replace_block(text, "# BEGIN pvegpu x\nvfio\nvfio_pci\n# END pvegpu\n");
        assert_eq!(
            new,
            "# user\nloop\n# BEGIN pvegpu x\nvfio\nvfio_pci\n# END pvegpu\ndm_mod\n"
        );
        assert_eq!(
            strip_block(text),
            ("# user\nloop\ndm_mod\n".to_string(), true)
        );
        assert_eq!(replace_block("loop", "B\n"), "loop\nB\n");
    }
}

//! The kernel side: headers for every kernel DKMS builds against, nouveau kept off the GPUs,
//! and the initramfs that carries the blacklist to boot.

use super::{APT_INSTALL, GuestError, Walk, owned_file};
use crate::core::plan::Change;
use crate::guest::facts::GuestFacts;
use crate::guest::playbook::{GUEST, GuestFile, GuestStep, GuestStepKind};
use crate::templates;
use minijinja::context;
use std::collections::BTreeSet;

/// Header packages: one per bootable kernel without headers, and the headers metapackage of
/// each installed kernel metapackage (`linux-image-amd64` -> `linux-headers-amd64`), so the
/// next kernel upgrade brings its headers and DKMS builds the module for it.
pub(super) fn headers_missing(facts: &GuestFacts) -> Vec<String> {
    let mut out: BTreeSet<String> = facts
        .kernels
        .iter()
        .filter(|k| !k.headers)
        .map(|k| format!("linux-headers-{}", k.version))
        .collect();
    for (name, p) in &facts.packages {
        let Some(flavour) = name.strip_prefix("linux-image-") else {
            continue;
        };
        if !p.installed() || flavour.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let meta = format!("linux-headers-{flavour}");
        if facts.installed(&meta).is_none() {
            out.insert(meta);
        }
    }
    out.into_iter().collect()
}

pub(super) fn headers(step: &GuestStep, w: &Walk) -> Option<Change> {
    let missing = headers_missing(w.facts);
    (!missing.is_empty()).then(|| {
        step.run(
            format!(
                "DKMS builds the NVIDIA module against each kernel's headers; missing: {}",
                missing.join(", ")
            ),
            format!("{APT_INSTALL} {}", missing.join(" ")),
        )
    })
}

pub(super) fn nouveau_blacklist(
    step: &GuestStep,
    f: &GuestFile,
    w: &Walk,
) -> Result<Option<Change>, GuestError> {
    if !w.d.nouveau_has_device && !w.facts.files.contains_key(&f.path) {
        return Ok(None);
    }
    let content = templates::render(&f.template, context! {})?;
    Ok(owned_file(
        step,
        &f.path,
        w.facts,
        content,
        "nouveau is loaded and would keep the GPUs from the NVIDIA driver",
    ))
}

pub(super) fn initramfs(step: &GuestStep, w: &Walk) -> Option<Change> {
    let why = if w.changed(|k| matches!(k, GuestStepKind::NouveauBlacklist(_))) {
        "the nouveau blacklist changed; the initramfs loads modules before the root file system"
            .to_string()
    } else {
        images_without_the_blacklist(w)?
    };
    Some(step.run(why, "update-initramfs -u -k all"))
}

/// The blacklist is in place, nouveau still has the GPUs, and an image is older than the
/// blacklist or of unknown age: an apply cut between the blacklist's write and this step
/// leaves the guest so, and the blacklist alone no longer plans the rebuild.
fn images_without_the_blacklist(w: &Walk) -> Option<String> {
    if !w.d.nouveau_has_device {
        return None;
    }
    let path = GUEST.steps.iter().find_map(|s| match &s.kind {
        GuestStepKind::NouveauBlacklist(f) => Some(f.path.as_str()),
        _ => None,
    })?;
    let written = w.facts.files.get(path)?.mtime;
    let stale: Vec<&str> = w
        .facts
        .kernels
        .iter()
        .filter(|k| k.bootable)
        .filter(|k| match (k.initrd_mtime, written) {
            (Some(None), _) => false,
            (Some(Some(image)), Some(blacklist)) => image < blacklist,
            _ => true,
        })
        .map(|k| k.version.as_str())
        .collect();
    (!stale.is_empty()).then(|| {
        format!(
            "nouveau still has the GPUs and the initramfs of {} is older than {path} (or of unknown age): the images must carry the blacklist to boot",
            stale.join(", ")
        )
    })
}

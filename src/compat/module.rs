//! Which kernel module flavour the driver needs: NVIDIA's open module (Turing and newer, the
//! default from R560, required by some cards) or the proprietary one (Maxwell to Volta).

use super::driver::{DriverChoice, DriverError, DriverSource, OPEN_MODULE_FIRST_BRANCH};
use super::reason::Reason;
use super::tables::{Gpu, Tables};
use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    Proprietary,
    Open,
}

impl fmt::Display for Flavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavour::Proprietary => "proprietary",
            Flavour::Open => "open",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelModule {
    pub flavour: Flavour,
    /// Required by some GPU (false: a recommendation; the other flavour also works).
    pub required: bool,
    pub why: String,
}

enum Need {
    Open(String),
    Proprietary(String),
    Either,
}

/// Which GPUs require which flavour, with the sources that say so.
#[derive(Default)]
struct Needs<'a> {
    /// (GPU label, why) for GPUs that require the open module.
    open: Vec<(String, String)>,
    /// (GPU label, why) for GPUs that require the proprietary one.
    proprietary: Vec<(String, String)>,
    sources: Vec<&'a String>,
    inferred: bool,
}

fn needs<'a>(t: &'a Tables, gpus: &[&'a Gpu]) -> Needs<'a> {
    let mut n = Needs::default();
    for g in gpus {
        let support = t.architectures.get(&g.arch);
        let rule = support.and_then(|a| a.kernel_module.as_deref());
        let need = match rule {
            Some(r) if r.starts_with("proprietary") => {
                Need::Proprietary(format!("{}: {r}", g.arch))
            }
            Some(r) if r.starts_with("open") => {
                n.inferred |= r.contains("secondary source");
                Need::Open(format!("{}: {r}", g.arch))
            }
            _ if g.open_module == Some(true) => Need::Either,
            _ => Need::Proprietary(format!(
                "{} is not listed as supported by the open module",
                g.id
            )),
        };
        match need {
            Need::Open(why) => {
                n.open.push((g.label(), why));
                n.sources
                    .extend(support.map(|a| a.source.iter()).into_iter().flatten());
            }
            Need::Proprietary(why) => {
                n.proprietary.push((g.label(), why));
                match support.filter(|a| a.kernel_module.is_some()) {
                    Some(a) => n.sources.extend(a.source.iter()),
                    None => n.sources.extend(g.source.iter()),
                }
            }
            Need::Either => n.sources.extend(g.source.iter()),
        }
    }
    n
}

/// Proprietary for Maxwell..Volta (and anything without open-module support), open where
/// the architecture requires it, open by preference when every GPU supports it (and, for a
/// Debian package, when Debian's open module package lists every GPU).
pub fn kernel_module(
    t: &Tables,
    gpus: &[&Gpu],
    driver: &DriverChoice,
) -> Result<(KernelModule, Reason), DriverError> {
    let branch = driver.branch;
    let Needs {
        open,
        proprietary,
        mut sources,
        inferred,
    } = needs(t, gpus);
    let labels = |v: &[(String, String)]| {
        v.iter()
            .map(|(l, _)| l.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let whys = |v: &[(String, String)]| {
        let mut w: Vec<String> = v.iter().map(|(_, w)| w.clone()).collect();
        w.dedup();
        w.join("; ")
    };
    if !open.is_empty() && !proprietary.is_empty() {
        return Err(DriverError::ModuleConflict {
            open: labels(&open),
            proprietary: labels(&proprietary),
        });
    }
    let note = t
        .distro_notes
        .iter()
        .find(|n| n.fact.starts_with("Kernel module flavours"));
    let m = if !open.is_empty() {
        KernelModule {
            flavour: Flavour::Open,
            required: true,
            why: whys(&open),
        }
    } else if !proprietary.is_empty() {
        KernelModule {
            flavour: Flavour::Proprietary,
            required: true,
            why: whys(&proprietary),
        }
    } else if branch < OPEN_MODULE_FIRST_BRANCH {
        KernelModule {
            flavour: Flavour::Proprietary,
            required: true,
            why: format!("R{branch} predates the open module (R{OPEN_MODULE_FIRST_BRANCH})"),
        }
    } else if let (DriverSource::Distro { .. }, true) = (
        &driver.source,
        gpus.iter().any(|g| !g.debian_open_listed) && driver.debian,
    ) {
        let missing: Vec<String> = gpus
            .iter()
            .filter(|g| !g.debian_open_listed)
            .map(|g| g.id.to_string())
            .collect();
        KernelModule {
            flavour: Flavour::Proprietary,
            required: false,
            why: format!(
                "Debian's open module package (nvidia-open-kernel-dkms) does not list {}; the proprietary module drives every GPU",
                missing.join(", ")
            ),
        }
    } else {
        if let Some(n) = note {
            sources.extend(n.source.iter());
        }
        KernelModule {
            flavour: Flavour::Open,
            required: false,
            why: "every GPU supports the open module, NVIDIA's default from R560".to_string(),
        }
    };
    let reason = Reason::new(
        format!("kernel module {}: {}", m.flavour, m.why),
        inferred,
        sources,
    );
    Ok((m, reason))
}

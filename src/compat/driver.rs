//! The driver side: the branch window a set of GPUs can share, the kernel module flavour,
//! and the package that installs it (the distribution's where one fits, else NVIDIA's
//! repository).

use super::distro::Distro;
use super::reason::Reason;
use super::support::{self, Verdict};
use super::tables::{Arch, DistroPackage, Gpu, Tables};
use super::version::{CudaVersion, DriverVersion};
use crate::pci::PciId;
use serde::Serialize;
use std::fmt;

pub use super::lifecycle::{Lifecycle, lifecycle, month_text};
pub use super::module::{Flavour, KernelModule, kernel_module};

/// The first branch with open GPU kernel modules (drivers.json, branch 515 `notes`).
pub const OPEN_MODULE_FIRST_BRANCH: u32 = 515;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DriverError {
    #[error(
        "no driver branch supports all of these GPUs: {too_old} and {too_new} have no branch in common; one driver serves a whole VM, so pass them through to separate VMs"
    )]
    EmptyWindow { too_old: String, too_new: String },
    #[error(
        "{gpu} needs the {legacy} legacy driver, older than any branch pvegpu knows (R{oldest} and newer); pvegpu cannot set up this card"
    )]
    LegacyOnly {
        gpu: String,
        legacy: String,
        oldest: u32,
    },
    #[error(
        "no driver branch in pvegpu's table supports {gpu} ({arch}); pvegpu does not guess one, and cannot set up this card yet"
    )]
    NoBranch { gpu: String, arch: Arch },
    #[error(
        "no driver branch both covers the architecture of every GPU and lists each by id: {refused}; pvegpu does not take the architecture's word over a list that leaves a card out; check the ids with `lspci -nn -d 10de:`, and pass cards that no one branch lists through to separate VMs"
    )]
    NotListed { refused: String },
    #[error(
        "no kernel module flavour drives all of these GPUs: the open module is required by {open}, the proprietary one by {proprietary}; a driver loads one flavour, so pass them through to separate VMs"
    )]
    ModuleConflict { open: String, proprietary: String },
    #[error(
        "driver {given} is branch R{branch}, which is not in pvegpu's driver table ({known}); give the version `nvidia-smi` prints, or a branch from the table"
    )]
    UnknownBranch {
        given: String,
        branch: u32,
        known: String,
    },
}

/// The driver branches every GPU of the set supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Window {
    pub first: u32,
    /// None: no last branch is known (the newest architectures are still supported).
    pub last: Option<u32>,
    /// The branches of the table inside the window, oldest first.
    pub branches: Vec<u32>,
    /// Branches between `first` and `last` whose own id list lacks one of the GPUs
    /// (`support::Verdict::NotListed`): outside the window although the architecture fits.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<u32>,
}

impl Window {
    pub fn contains(&self, branch: u32) -> bool {
        branch >= self.first
            && self.last.is_none_or(|l| branch <= l)
            && !self.excluded.contains(&branch)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.last {
            Some(l) if l == self.first => write!(f, "R{l}")?,
            Some(l) => write!(f, "R{}–R{l}", self.first)?,
            None => write!(f, "R{}+", self.first)?,
        }
        if !self.excluded.is_empty() {
            write!(f, " without {}", branch_names(&self.excluded))?;
        }
        Ok(())
    }
}

fn branch_names(branches: &[u32]) -> String {
    branches
        .iter()
        .map(|b| format!("R{b}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// (first, last) branch for one GPU: the first table branch listing its architecture; the
/// architecture's last branch, lowered to the card's legacy branch if it has one.
fn gpu_range(t: &Tables, g: &Gpu) -> Result<(u32, Option<u32>), DriverError> {
    let first = t
        .branches_for(g.arch)
        .map(|b| b.branch)
        .next()
        .ok_or_else(|| DriverError::NoBranch {
            gpu: g.label(),
            arch: g.arch,
        })?;
    let arch_last = t
        .architectures
        .get(&g.arch)
        .and_then(|a| a.last_driver_branch);
    let last = match (arch_last, g.legacy_branch_number()) {
        (Some(a), Some(l)) => Some(a.min(l)),
        (a, l) => a.or(l),
    };
    if let Some(l) = last.filter(|l| *l < first) {
        return Err(DriverError::LegacyOnly {
            gpu: g.label(),
            legacy: g.legacy_branch.clone().unwrap_or(format!("R{l}")),
            oldest: first,
        });
    }
    Ok((first, last))
}

/// Window = [max of the first branches, min of the last branches]; empty is an error that
/// names the GPUs on each side.
pub fn window(t: &Tables, gpus: &[&Gpu]) -> Result<(Window, Vec<Reason>), DriverError> {
    let mut ranges = Vec::new();
    for g in gpus {
        ranges.push((*g, gpu_range(t, g)?));
    }
    let first = ranges.iter().map(|(_, (f, _))| *f).max().unwrap_or(0);
    let last = ranges.iter().filter_map(|(_, (_, l))| *l).min();
    if let Some(l) = last.filter(|l| *l < first) {
        let too_old: Vec<String> = ranges
            .iter()
            .filter(|(_, (_, gl))| gl.is_some_and(|gl| gl < first))
            .map(|(g, (_, gl))| {
                format!(
                    "{} ({}, last driver R{})",
                    g.label(),
                    g.arch,
                    gl.unwrap_or(l)
                )
            })
            .collect();
        let too_new: Vec<String> = ranges
            .iter()
            .filter(|(_, (gf, _))| *gf > l)
            .map(|(g, (gf, _))| format!("{} ({}, first driver R{gf})", g.label(), g.arch))
            .collect();
        return Err(DriverError::EmptyWindow {
            too_old: too_old.join(", "),
            too_new: too_new.join(", "),
        });
    }
    let by_arch: Vec<u32> = t
        .branches
        .iter()
        .map(|b| b.branch)
        .filter(|b| *b >= first && last.is_none_or(|l| *b <= l))
        .collect();
    let (w, per_id) = per_id_window(t, gpus, last, &by_arch)?;

    let mut reasons = Vec::new();
    let mut archs: Vec<Arch> = gpus.iter().map(|g| g.arch).collect();
    archs.sort();
    archs.dedup();
    for arch in archs {
        let (f, l) = ranges
            .iter()
            .find(|(g, _)| g.arch == arch)
            .map(|(_, r)| *r)
            .unwrap_or((first, last));
        let first_branch = t.branch(f);
        let support = t.architectures.get(&arch);
        let last_text = match support.and_then(|a| a.last_driver_branch) {
            Some(b) => format!("R{b} is its last branch"),
            None => "no last branch is announced".to_string(),
        };
        let text = format!(
            "{arch}: R{f} is the first branch in the table that lists it, {last_text}{}",
            match l {
                Some(l) if support.and_then(|a| a.last_driver_branch) != Some(l) =>
                    format!(" (legacy branch R{l} for this card)"),
                _ => String::new(),
            }
        );
        let inferred =
            first_branch.is_some_and(|b| b.inferred.iter().any(|i| i.contains("first-branch")));
        let sources = support
            .map(|a| a.source.iter())
            .into_iter()
            .flatten()
            .chain(first_branch.map(|b| b.source.iter()).into_iter().flatten());
        reasons.push(Reason::new(text, inferred, sources));
    }
    reasons.extend(per_id);
    if gpus.len() > 1 {
        reasons.push(Reason::new(
            format!(
                "the GPUs share the branches from the newest first branch to the oldest last branch: {w}"
            ),
            false,
            [],
        ));
    }
    Ok((w, reasons))
}

/// Narrow the architecture window by the branches' own id lists: a branch whose
/// whole-driver list lacks a GPU leaves the window; a branch without a deciding list stays
/// in it by architecture only, and the reason says which those are.
fn per_id_window(
    t: &Tables,
    gpus: &[&Gpu],
    last: Option<u32>,
    by_arch: &[u32],
) -> Result<(Window, Vec<Reason>), DriverError> {
    let mut excluded: Vec<u32> = Vec::new();
    let mut reasons = Vec::new();
    let mut refusals = Vec::new();
    let mut seen: Vec<PciId> = Vec::new();
    for g in gpus {
        if seen.contains(&g.id) {
            continue;
        }
        seen.push(g.id);
        let mut listed = Vec::new();
        let mut not_listed = Vec::new();
        let mut arch_only = Vec::new();
        let mut open_lacks = Vec::new();
        let mut sources: Vec<&String> = Vec::new();
        for &b in by_arch {
            match support::verdict(t, g, b) {
                Verdict::Listed(l) => {
                    listed.push(b);
                    sources.extend(l.source.iter());
                }
                Verdict::NotListed(lists) => {
                    let names: Vec<String> = lists.iter().map(|l| l.label()).collect();
                    not_listed.push(format!("R{b} ({})", names.join("; ")));
                    sources.extend(lists.iter().flat_map(|l| l.source.iter()));
                    excluded.push(b);
                }
                Verdict::ByArchitecture { open_lacks: open } => {
                    arch_only.push(b);
                    if !open.is_empty() {
                        open_lacks.push(b);
                        sources.extend(open.iter().flat_map(|l| l.source.iter()));
                    }
                }
            }
        }
        let mut parts = Vec::new();
        if !listed.is_empty() {
            parts.push(format!("{} list it by id", branch_names(&listed)));
        }
        if !not_listed.is_empty() {
            parts.push(format!(
                "the lists of {} do not, so those branches do not support it",
                not_listed.join(", ")
            ));
        }
        if !arch_only.is_empty() {
            let open = if open_lacks.is_empty() {
                String::new()
            } else {
                format!(
                    "; the open kernel module's list of {} lacks it, so there only the proprietary module may drive it",
                    branch_names(&open_lacks)
                )
            };
            parts.push(format!(
                "{} support it by architecture only (no list of the whole driver in the data decides for this id){open}",
                branch_names(&arch_only)
            ));
        }
        if listed.is_empty() && arch_only.is_empty() {
            refusals.push(format!("{} ({})", g.label(), not_listed.join(", ")));
        }
        sources.sort();
        sources.dedup();
        reasons.push(Reason::new(
            format!("{} per id: {}", g.label(), parts.join("; ")),
            false,
            sources,
        ));
    }
    excluded.sort();
    excluded.dedup();
    let branches: Vec<u32> = by_arch
        .iter()
        .copied()
        .filter(|b| !excluded.contains(b))
        .collect();
    let Some(&first) = branches.first().filter(|_| refusals.is_empty()) else {
        if refusals.is_empty() {
            // Each GPU has a branch, but no branch has every GPU.
            let texts: Vec<String> = reasons.iter().map(|r| r.text.clone()).collect();
            refusals.push(texts.join("; "));
        }
        return Err(DriverError::NotListed {
            refused: refusals.join("; "),
        });
    };
    // A known last branch moves to the newest one left; the excluded ones inside stay named.
    let last = last.map(|_| *branches.last().unwrap_or(&first));
    let excluded = excluded
        .into_iter()
        .filter(|b| *b > first && last.is_none_or(|l| *b < l))
        .collect();
    Ok((
        Window {
            first,
            last,
            branches,
            excluded,
        },
        reasons,
    ))
}

/// Where the driver comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum DriverSource {
    Distro {
        package: String,
        version: String,
        suite: String,
    },
    NvidiaRepository,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriverChoice {
    #[serde(flatten)]
    pub source: DriverSource,
    /// A Debian package (nvidia-detect lists decide what it supports).
    #[serde(skip)]
    pub debian: bool,
    pub branch: u32,
    /// The driver version it installs (a bare branch for NVIDIA's repository).
    pub version: DriverVersion,
}

/// The distribution's driver package when its branch is inside the window and it supports
/// every GPU (Debian: nvidia-detect lists the id; Ubuntu: the branch is inside the window,
/// which `window` narrows per id where it can); otherwise NVIDIA's CUDA repository at the
/// newest branch of the window.
pub fn choose_driver(
    t: &Tables,
    distro: Distro,
    gpus: &[&Gpu],
    window: &Window,
) -> (DriverChoice, Vec<Reason>) {
    let mut reasons = Vec::new();
    let candidates = candidates(t, distro);
    let (mut fits, misfits) = sort_out(t, distro, gpus, window, &candidates);
    // Newest branch first; on a tie the main package (`nvidia-driver`) before the tesla ones.
    fits.sort_by_key(|p| (std::cmp::Reverse(p.branch), p.apt_name().contains("tesla")));
    let detect_sources = gpus.iter().flat_map(|g| {
        g.source
            .iter()
            .filter(|s| s.contains("nvidia-detect") && s.contains(distro.codename()))
    });
    if let Some(p) = fits.first() {
        let version = p
            .upstream()
            .unwrap_or_else(|| DriverVersion::branch_only(p.branch.unwrap_or(0)));
        let support = if distro.is_debian() {
            "Debian's nvidia-detect lists every GPU for it"
        } else {
            "Ubuntu's packages list no GPU ids, so the window is what decides: per id where a complete id list covers the branch, by architecture otherwise"
        };
        let text = format!(
            "{distro} packages {} {} ({}); R{} is inside {window} and {support}",
            p.apt_name(),
            p.version,
            p.suite,
            p.branch.unwrap_or(0)
        );
        let inferred = !p.inferred.is_empty() || !distro.is_debian();
        reasons.push(Reason::new(
            text,
            inferred,
            p.source.iter().chain(detect_sources),
        ));
        let choice = DriverChoice {
            debian: distro.is_debian(),
            source: DriverSource::Distro {
                package: p.apt_name().to_string(),
                version: p.version.clone(),
                suite: p.suite.clone(),
            },
            branch: p.branch.unwrap_or(0),
            version,
        };
        if distro.is_debian() {
            push_note(t, &mut reasons, "nvidia-container-toolkit is not packaged");
        }
        return (choice, reasons);
    }
    let branch = *window.branches.last().unwrap_or(&window.first);
    let what = if misfits.is_empty() {
        format!("{distro} packages no NVIDIA driver")
    } else {
        format!("no {distro} driver package fits: {}", misfits.join("; "))
    };
    let package_sources = candidates.iter().flat_map(|p| p.source.iter());
    reasons.push(Reason::new(
        format!(
            "{what}; use NVIDIA's CUDA repository at R{branch}, the newest branch of {window} (the data does not list which branches that repository carries for {distro})"
        ),
        true,
        package_sources
            .chain(detect_sources)
            .chain(t.branch(branch).map(|b| b.source.iter()).into_iter().flatten()),
    ));
    if distro.is_debian() && gpus.iter().any(|g| g.arch >= Arch::Blackwell) {
        push_note(
            t,
            &mut reasons,
            "Debian (bookworm, trixie, sid) packages no",
        );
    }
    if distro.is_debian() {
        push_note(t, &mut reasons, "nvidia-container-toolkit is not packaged");
    }
    (
        DriverChoice {
            debian: false,
            source: DriverSource::NvidiaRepository,
            branch,
            version: DriverVersion::branch_only(branch),
        },
        reasons,
    )
}

/// The distribution's driver packages, one entry per package: the newest upstream version
/// across suites.
fn candidates(t: &Tables, distro: Distro) -> Vec<&DistroPackage> {
    let mut candidates: Vec<&DistroPackage> = Vec::new();
    for p in t
        .distro_packages
        .iter()
        .filter(|p| p.distro == distro.family() && p.codename == distro.codename() && p.is_driver())
    {
        match candidates.iter_mut().find(|c| c.apt_name() == p.apt_name()) {
            Some(c) if p.upstream() > c.upstream() => *c = p,
            Some(_) => {}
            None => candidates.push(p),
        }
    }
    candidates
}

/// The candidates that drive every GPU inside the window, and why each other one does not.
fn sort_out<'a>(
    t: &Tables,
    distro: Distro,
    gpus: &[&Gpu],
    window: &Window,
    candidates: &[&'a DistroPackage],
) -> (Vec<&'a DistroPackage>, Vec<String>) {
    let mut misfits = Vec::new();
    let mut fits: Vec<&DistroPackage> = Vec::new();
    for p in candidates {
        let branch = p.branch.unwrap_or(0);
        if !window.contains(branch) {
            misfits.push(format!("{} (R{branch}) is outside {window}", p.apt_name()));
            continue;
        }
        let unsupported: Vec<String> = gpus
            .iter()
            .filter(|g| {
                if distro.is_debian() {
                    !g.debian
                        .get(distro.codename())
                        .is_some_and(|l| l.iter().any(|n| n == p.apt_name()))
                } else {
                    !t.branch(branch).is_some_and(|b| b.archs.contains(&g.arch))
                }
            })
            .map(|g| g.id.to_string())
            .collect();
        if unsupported.is_empty() {
            fits.push(p);
        } else {
            let by = if distro.is_debian() {
                "Debian's nvidia-detect does not list"
            } else {
                "its branch does not list the architecture of"
            };
            misfits.push(format!(
                "{} (R{branch}): {by} {}",
                p.apt_name(),
                unsupported.join(", ")
            ));
        }
    }
    (fits, misfits)
}

fn push_note(t: &Tables, reasons: &mut Vec<Reason>, starts: &str) {
    if let Some(n) = t.distro_notes.iter().find(|n| n.fact.starts_with(starts)) {
        reasons.push(Reason::new(
            n.fact.clone(),
            !n.inferred.is_empty(),
            n.source.iter(),
        ));
    }
}

/// The driver a user says is installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Installed {
    pub version: DriverVersion,
    pub branch: u32,
    /// The newest CUDA this branch runs natively.
    pub max_cuda: CudaVersion,
    pub in_window: bool,
}

pub fn installed(
    t: &Tables,
    version: &DriverVersion,
    window: &Window,
) -> Result<(Installed, Reason), DriverError> {
    let b = t
        .branch(version.branch())
        .ok_or_else(|| DriverError::UnknownBranch {
            given: version.to_string(),
            branch: version.branch(),
            known: t
                .branches
                .iter()
                .map(|b| format!("R{}", b.branch))
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let inside = window.contains(b.branch);
    let verdict = if inside {
        format!("inside {window}")
    } else {
        format!("outside {window}: it does not drive every GPU; replace it")
    };
    let reason = Reason::new(
        format!(
            "installed driver {version} is R{} (runs CUDA {} natively), {verdict}",
            b.branch, b.max_cuda
        ),
        b.inferred.iter().any(|i| i == "max_cuda"),
        b.source.iter(),
    );
    Ok((
        Installed {
            version: version.clone(),
            branch: b.branch,
            max_cuda: b.max_cuda.clone(),
            in_window: inside,
        },
        reason,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compat::tables::tables;

    #[test]
    fn open_modules_start_at_the_branch_the_data_names() {
        let b = tables().branch(OPEN_MODULE_FIRST_BRANCH).unwrap();
        assert!(
            b.notes
                .contains("First branch with open GPU kernel modules")
        );
    }

    /// The window of one card, by its PCI id.
    fn window_of(t: &Tables, id: &str) -> Window {
        let g = t.gpu(id.parse().unwrap()).unwrap();
        window(t, &[g]).unwrap().0
    }

    #[test]
    fn a_branch_past_its_end_of_life_offers_the_newest_supported_one() {
        let t = tables();
        let pascal = window_of(t, "10de:1b80"); // GTX 1080: R470–R580
        assert_eq!((pascal.first, pascal.last), (470, Some(580)));
        let (l, why) = lifecycle(t, "recommended", 535, &pascal, "2026-12-03");
        assert_eq!(l.eol.as_deref(), Some("2026-06"));
        assert!(l.past_eol);
        assert_eq!(l.instead, Some(580));
        assert!(why.text.contains("June 2026"), "{}", why.text);
        assert!(why.text.contains("R580"), "{}", why.text);
        assert!(why.source.iter().any(|s| s.contains("supported-drivers")));
        // Support runs to the end of the month: on the last day of June it is not past yet.
        let (l, _) = lifecycle(t, "installed", 535, &pascal, "2026-06-30");
        assert!(!l.past_eol);
        assert_eq!(l.instead, None);
        // Later than R580's own end, nothing in the Pascal window is supported any more.
        let (l, why) = lifecycle(t, "recommended", 580, &pascal, "2028-07-01");
        assert!(l.past_eol && l.instead.is_none(), "{}", why.text);
    }

    #[test]
    fn a_branch_without_a_date_is_not_called_supported() {
        let t = tables();
        let w = window_of(t, "10de:2684"); // RTX 4090: R520+
        let (l, why) = lifecycle(t, "installed", 550, &w, "2026-12-03");
        assert_eq!(l.eol, None);
        assert!(!l.past_eol);
        assert!(why.text.contains("no end-of-life date"), "{}", why.text);
    }

    #[test]
    fn month_texts() {
        assert_eq!(month_text("2029-09"), "September 2029");
        assert_eq!(month_text("2026-6"), "2026-6");
    }

    #[test]
    fn architecture_last_branches_agree_with_the_branch_lists() {
        let t = tables();
        for (arch, a) in &t.architectures {
            let last_listed = t.branches_for(*arch).map(|b| b.branch).last();
            match a.last_driver_branch {
                Some(l) => assert_eq!(last_listed, Some(l), "{arch}"),
                None => assert_eq!(last_listed, t.branches.last().map(|b| b.branch), "{arch}"),
            }
        }
    }
}

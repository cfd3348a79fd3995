//! Versions known to break what pvegpu sets up: Proxmox VE kernels that broke passthrough or
//! NVIDIA's DKMS build, and NVIDIA Container Toolkit releases with regressions. The table is
//! `data/compat/known_bad.json`, kept by hand (KNOWN_BAD.md says how), every entry with its
//! sources and their verbatim quotes. Pure: parse the table, match a version against it; the
//! host and guest planners decide what a match means for their plan.
//!
//! A range whose first affected build is not known (`from: null`) covers its whole series up
//! to the fix: unknown is never assumed good. A range without a fix (`fixed_in: null`) covers
//! every later version, for the same reason.

use serde::Deserialize;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::OnceLock;

const KNOWN_BAD: &str = include_str!("../../data/compat/known_bad.json");

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KnownBadError {
    #[error("known_bad.json does not parse: {0}")]
    Json(String),
    #[error("known_bad.json, entry {id}: {problem}")]
    Entry { id: String, problem: String },
    #[error(
        "`{0}` is not a version pvegpu can compare (expected digits and dots, e.g. `1.19.1-1`)"
    )]
    Version(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    ProxmoxKernel,
    NvidiaContainerToolkit,
}

/// What breaks; `Passthrough` entries must refuse (fail closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Breaks {
    Passthrough,
    NvidiaDkms,
    CudaInContainers,
    CdiDevices,
    Containers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// The plan refuses when the entry applies to what it sets up.
    Refuse,
    /// The plan says so and goes on.
    Warn,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Affected {
    /// Kernel series (`6.8`) the range lies in; required for kernels.
    pub series: Option<String>,
    /// First affected version; null: not established (the whole series up to the fix).
    pub from: Option<String>,
    /// Last version the sources report affected (information; the fix bounds the range).
    pub to: Option<String>,
}

/// Where an entry applies; every condition given must hold. The planners read the facts for
/// each and treat a fact they do not have as "applies".
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// `amd` or `intel`: the host's CPU vendor.
    pub cpu_vendor: Option<String>,
    /// PCI vendor ids (`1002`) of the devices passed through.
    pub gpu_vendor: Option<Vec<String>>,
    /// A passed-through device is an SR-IOV virtual function.
    pub sriov_vf: Option<bool>,
    /// The host loads NVIDIA's own module (it uses a GPU itself).
    pub host_nvidia_module: Option<bool>,
    /// The guest's container runtime (`docker`, `podman`).
    pub runtime: Option<Vec<String>>,
    /// Runtimes that break below these versions.
    pub runtime_below: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// A URL, or `github:owner/repo[:path]@ref`.
    pub url: String,
    /// Verbatim from the source.
    pub quote: String,
    pub read: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub id: String,
    pub component: Component,
    pub affected: Affected,
    /// The first fixed version; null: no fix known.
    pub fixed_in: Option<String>,
    pub breaks: Breaks,
    pub severity: Severity,
    #[serde(default)]
    pub when: When,
    /// The breakage shows in the facts of a host that runs the kernel (merged IOMMU groups),
    /// so the verdict on those facts already judges it.
    #[serde(default)]
    pub evident_in_facts: bool,
    pub what: String,
    pub remedy: String,
    /// A version to install instead while no fix is known (toolkit entries).
    #[serde(default)]
    pub good_version: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
    pub sources: Vec<Source>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: u32,
    snapshot: String,
    entries: Vec<Entry>,
}

#[derive(Debug)]
pub struct KnownBad {
    /// The day the sources were read.
    pub snapshot: String,
    pub entries: Vec<Entry>,
}

/// One entry a version falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit<'a> {
    pub entry: &'a Entry,
    /// False when the range's first affected build is not established: "possibly affected".
    pub certain: bool,
}

/// The embedded table (tests prove it parses).
pub fn known_bad() -> &'static KnownBad {
    static TABLE: OnceLock<KnownBad> = OnceLock::new();
    TABLE.get_or_init(|| KnownBad::parse(KNOWN_BAD).unwrap_or_else(|e| panic!("{e}")))
}

impl KnownBad {
    pub fn parse(text: &str) -> Result<KnownBad, KnownBadError> {
        let file: File =
            serde_json::from_str(text).map_err(|e| KnownBadError::Json(e.to_string()))?;
        if file.format != 1 {
            return Err(KnownBadError::Json(format!(
                "format {} is not 1",
                file.format
            )));
        }
        let mut ids = BTreeSet::new();
        for e in &file.entries {
            let bad = |problem: &str| KnownBadError::Entry {
                id: e.id.clone(),
                problem: problem.to_string(),
            };
            if !ids.insert(e.id.as_str()) {
                return Err(bad("the id is used twice"));
            }
            if e.breaks == Breaks::Passthrough && e.severity != Severity::Refuse {
                return Err(bad("an entry that breaks passthrough must refuse"));
            }
            if e.sources.is_empty() || e.sources.iter().any(|s| s.quote.trim().is_empty()) {
                return Err(bad("every entry needs sources, each with a verbatim quote"));
            }
            let a = &e.affected;
            if a.from.is_none() && a.series.is_none() {
                return Err(bad("a range without `from` needs a `series`"));
            }
            if e.component == Component::ProxmoxKernel && a.series.is_none() {
                return Err(bad("a kernel entry needs its `series`"));
            }
            for v in [&a.from, &a.to, &e.fixed_in, &e.good_version]
                .into_iter()
                .flatten()
            {
                let parsed = e
                    .component
                    .version(v)
                    .map_err(|_| bad(&format!("`{v}` is not a version")))?;
                if let Some(s) = &a.series
                    && !parsed.in_series(s)
                {
                    return Err(bad(&format!("`{v}` is not in series {s}")));
                }
            }
        }
        Ok(KnownBad {
            snapshot: file.snapshot,
            entries: file.entries,
        })
    }

    /// The entries a running or installed kernel falls in, as `uname -r` prints it
    /// (`6.8.12-4-pve`). A kernel that is not Proxmox's (no `-pve`) matches none.
    pub fn kernel(&self, uname: &str) -> Vec<Hit<'_>> {
        let Some(v) = Version::proxmox_kernel(uname) else {
            return Vec::new();
        };
        self.hits(Component::ProxmoxKernel, &v)
    }

    /// The entries a container toolkit version falls in, as dpkg (`1.19.1-1`) or
    /// `nvidia-ctk --version` (`1.19.1`) spells it.
    pub fn toolkit(&self, version: &str) -> Result<Vec<Hit<'_>>, KnownBadError> {
        let v = Version::package(version)?;
        Ok(self.hits(Component::NvidiaContainerToolkit, &v))
    }

    /// Entries of a component that no release fixes yet (`fixed_in` null): the newest
    /// release a repository offers falls in them.
    pub fn unfixed(&self, component: Component) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(move |e| e.component == component && e.fixed_in.is_none())
    }

    fn hits(&self, component: Component, v: &Version) -> Vec<Hit<'_>> {
        self.entries
            .iter()
            .filter(|e| e.component == component)
            .filter_map(|e| e.contains(v).map(|certain| Hit { entry: e, certain }))
            .collect()
    }
}

impl Component {
    fn version(self, text: &str) -> Result<Version, KnownBadError> {
        match self {
            // the table spells kernels as Proxmox's package versions, which equal `uname -r`
            // without `-pve` since 6.8 (pve-kernel's Makefile: DEB_VERSION and KVNAME both
            // are KERNEL_VER-KREL)
            Component::ProxmoxKernel => Version::numbers(text, text),
            Component::NvidiaContainerToolkit => Version::package(text),
        }
    }
}

impl Entry {
    /// Whether `v` is in the range: Some(certain) when it is.
    fn contains(&self, v: &Version) -> Option<bool> {
        let version = |t: &str| self.component.version(t).ok();
        if let Some(series) = &self.affected.series
            && !v.in_series(series)
        {
            return None;
        }
        let from = self.affected.from.as_deref().and_then(version);
        if from.as_ref().is_some_and(|f| v < f) {
            return None;
        }
        if let Some(fixed) = self.fixed_in.as_deref().and_then(version)
            && *v >= fixed
        {
            return None;
        }
        Some(from.is_some())
    }

    /// The first source, for a one-line reference.
    pub fn source(&self) -> &str {
        self.sources.first().map(|s| s.url.as_str()).unwrap_or("")
    }

    /// "fixed in X" or "no fixed release known as of D".
    pub fn fix_text(&self, snapshot: &str) -> String {
        match &self.fixed_in {
            Some(f) => format!("fixed in {f}"),
            None => format!("no fixed release known as of {snapshot}"),
        }
    }
}

/// A version as numbers (`6.8.12-4` is 6, 8, 12, 4) with an optional pre-release part
/// (`1.18.0~rc.3` sorts before `1.18.0`, as dpkg sorts `~`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    nums: Vec<u64>,
    pre: Option<Vec<u64>>,
}

impl Version {
    /// `uname -r` of a Proxmox kernel (`6.8.12-4-pve`); None for any other kernel.
    pub fn proxmox_kernel(uname: &str) -> Option<Version> {
        let base = uname.trim().strip_suffix("-pve")?;
        Version::numbers(base, uname).ok()
    }

    /// A Debian package version without epoch or revision (`1.19.1-1` is 1.19.1).
    pub fn package(text: &str) -> Result<Version, KnownBadError> {
        let t = text.trim();
        let t = t.split_once(':').map_or(t, |(_, rest)| rest);
        let upstream = t.rsplit_once('-').map_or(t, |(u, _)| u);
        // `4.9.3+ds1`: what follows `+` is a repackaging mark, not part of the release
        let upstream = upstream.split_once('+').map_or(upstream, |(u, _)| u);
        Version::numbers(upstream, text)
    }

    fn numbers(text: &str, original: &str) -> Result<Version, KnownBadError> {
        let bad = || KnownBadError::Version(original.to_string());
        let (main, pre) = match text.split_once('~') {
            Some((m, p)) => (m, Some(p)),
            None => (text, None),
        };
        let nums = |s: &str| -> Result<Vec<u64>, KnownBadError> {
            s.split(['.', '-'])
                // `rc3` and `rc.3` both count as 3: a word before the number is dropped
                .map(|p| (p, p.trim_start_matches(|c: char| c.is_ascii_alphabetic())))
                .filter(|(p, digits)| !digits.is_empty() || p.is_empty())
                .map(|(_, digits)| digits.parse().map_err(|_| bad()))
                .collect()
        };
        let v = Version {
            nums: nums(main)?,
            pre: pre.map(nums).transpose()?,
        };
        if v.nums.is_empty() {
            return Err(bad());
        }
        Ok(v)
    }

    /// `6.8.12-4` is in series `6.8`.
    pub fn in_series(&self, series: &str) -> bool {
        let s: Vec<u64> = series.split('.').filter_map(|p| p.parse().ok()).collect();
        self.nums.starts_with(&s)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let len = self.nums.len().max(other.nums.len());
        let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
        (0..len)
            .map(|i| at(&self.nums, i).cmp(&at(&other.nums, i)))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(a), Some(b)) => a.cmp(b),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n: Vec<String> = self.nums.iter().map(u64::to_string).collect();
        write!(f, "{}", n.join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(hits: &[Hit]) -> Vec<String> {
        hits.iter().map(|h| h.entry.id.clone()).collect()
    }

    #[test]
    fn the_embedded_table_parses_and_every_passthrough_entry_refuses() {
        let t = known_bad();
        assert!(!t.entries.is_empty());
        for e in &t.entries {
            if e.breaks == Breaks::Passthrough {
                assert_eq!(e.severity, Severity::Refuse, "{}", e.id);
            }
        }
    }

    // Kernel strings as `uname -r` prints them, from the sources: the regression of
    // 6.8.12-29, fixed in 6.8.12-30 (pve-kernel's changelog).
    #[test]
    fn kernel_6_8_12_29_has_the_iommu_group_regression_and_30_does_not() {
        let t = known_bad();
        let hits = t.kernel("6.8.12-29-pve");
        assert!(ids(&hits).contains(&"pve-6.8-acs-iommu-groups".to_string()));
        // its first affected build is not established: possibly, not certainly
        assert!(
            !hits
                .iter()
                .find(|h| h.entry.id == "pve-6.8-acs-iommu-groups")
                .unwrap()
                .certain
        );
        assert!(!ids(&t.kernel("6.8.12-30-pve")).contains(&"pve-6.8-acs-iommu-groups".to_string()));
        assert!(ids(&t.kernel("6.8.12-43-pve")).is_empty());
    }

    #[test]
    fn kernel_7_0_14_1_and_2_break_amdgpu_passthrough_and_3_fixes_it() {
        let t = known_bad();
        for k in ["7.0.14-1-pve", "7.0.14-2-pve"] {
            let hits = t.kernel(k);
            assert_eq!(ids(&hits), ["pve-7.0.14-amdgpu-ism"], "{k}");
            assert!(hits[0].certain);
        }
        assert!(t.kernel("7.0.14-3-pve").is_empty());
        assert!(t.kernel("7.0.12-1-pve").is_empty());
    }

    #[test]
    fn series_bound_the_ranges() {
        let t = known_bad();
        // 6.14.8-1 is before the 6.14 fix; 6.8's fix says nothing about 6.14
        assert_eq!(ids(&t.kernel("6.14.8-1-pve")), ["pve-6.14-vf-runtime-pm"]);
        assert!(t.kernel("6.14.8-2-pve").is_empty());
        // the DKMS report names 6.17.13-2-pve; no fix known, so later builds stay in it
        assert_eq!(
            ids(&t.kernel("6.17.13-2-pve")),
            ["pve-6.17.13-2-nvidia-dkms"]
        );
        assert_eq!(
            ids(&t.kernel("6.17.13-21-pve")),
            ["pve-6.17.13-2-nvidia-dkms"]
        );
        assert!(t.kernel("6.17.13-1-pve").is_empty());
    }

    #[test]
    fn a_kernel_that_is_not_proxmox_s_matches_nothing() {
        let t = known_bad();
        assert!(t.kernel("6.8.12-29-generic").is_empty());
        assert!(t.kernel("6.1.0-18-amd64").is_empty());
        assert!(t.kernel("").is_empty());
    }

    // Toolkit versions as dpkg and nvidia-ctk print them, from NVIDIA's issue #1967
    // ("nvidia-container-toolkit 1.19.1-1", "1.19.0-1").
    #[test]
    fn toolkit_1_19_1_breaks_cuda_and_1_19_0_does_not() {
        let t = known_bad();
        for v in ["1.19.1-1", "1.19.1", "1.20.0-1"] {
            let hits = t.toolkit(v).unwrap();
            assert!(ids(&hits).contains(&"ctk-1.19.1-cuinit".to_string()), "{v}");
        }
        let at_1_19_0 = ids(&t.toolkit("1.19.0-1").unwrap());
        assert_eq!(at_1_19_0, ["ctk-1.18-jit-cdi-default"]);
        assert!(t.toolkit("1.17.8-1").unwrap().is_empty());
    }

    #[test]
    fn toolkit_1_17_0_is_fixed_in_1_17_1_for_cdi_and_1_17_2_for_imex() {
        let t = known_bad();
        assert_eq!(
            ids(&t.toolkit("1.17.0-1").unwrap()),
            ["ctk-1.17.0-cdi-podman", "ctk-1.17.0-imex-legacy"]
        );
        assert_eq!(
            ids(&t.toolkit("1.17.1-1").unwrap()),
            ["ctk-1.17.0-imex-legacy"]
        );
        assert!(t.toolkit("1.17.2-1").unwrap().is_empty());
    }

    #[test]
    fn a_release_candidate_sorts_before_its_release() {
        let t = known_bad();
        // 1.18.0~rc.3-1 is before 1.18.0: not in the 1.18 entry
        assert!(t.toolkit("1.18.0~rc.3-1").unwrap().is_empty());
        assert!(Version::package("1.19.1~rc.1-1").unwrap() < Version::package("1.19.1-1").unwrap());
        assert!(Version::package("1:1.19.1-1").unwrap() == Version::package("1.19.1").unwrap());
    }

    #[test]
    fn an_unreadable_toolkit_version_is_an_error_not_a_pass() {
        assert!(matches!(
            known_bad().toolkit("unknown"),
            Err(KnownBadError::Version(_))
        ));
    }

    #[test]
    fn good_versions_are_not_known_bad_themselves() {
        let t = known_bad();
        for e in &t.entries {
            let Some(good) = &e.good_version else {
                continue;
            };
            let refused: Vec<String> = t
                .toolkit(good)
                .unwrap()
                .iter()
                .filter(|h| h.entry.severity == Severity::Refuse)
                .map(|h| h.entry.id.clone())
                .collect();
            assert!(refused.is_empty(), "{}: {good} is in {refused:?}", e.id);
        }
    }

    #[test]
    fn a_table_that_lets_passthrough_breakage_pass_with_a_warning_does_not_load() {
        let text = KNOWN_BAD.replace(
            r#""breaks": "passthrough", "severity": "refuse""#,
            r#""breaks": "passthrough", "severity": "warn""#,
        );
        let err = KnownBad::parse(&text).unwrap_err();
        assert!(err.to_string().contains("must refuse"), "{err}");
    }

    #[test]
    fn every_entry_keeps_a_verbatim_quote_and_a_kernel_entry_its_series() {
        let edited = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut v: serde_json::Value = serde_json::from_str(KNOWN_BAD).unwrap();
            edit(&mut v["entries"][0]);
            KnownBad::parse(&v.to_string())
        };
        assert!(edited(&|_| ()).is_ok());
        let no_quote = edited(&|e| e["sources"][0]["quote"] = " ".into());
        assert!(no_quote.unwrap_err().to_string().contains("verbatim quote"));
        let no_series = edited(&|e| e["affected"]["series"] = serde_json::Value::Null);
        assert!(no_series.is_err());
        let outside = edited(&|e| e["fixed_in"] = "6.14.8-2".into());
        assert!(outside.unwrap_err().to_string().contains("not in series"));
    }
}

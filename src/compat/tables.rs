//! The compatibility tables, embedded from `data/compat/*.json` (built by
//! `data/compat/build.py` from the shared knowledge base) and parsed on first use. Every
//! record keeps its citations (`source`) and what in it was derived (`inferred`).

use super::version::{Cc, CudaVersion, DriverVersion};
use crate::pci::PciId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

const GPUS: &str = include_str!("../../data/compat/gpus.json");
const DRIVERS: &str = include_str!("../../data/compat/drivers.json");
const CUDA: &str = include_str!("../../data/compat/cuda.json");
const TRITON: &str = include_str!("../../data/compat/triton.json");
const ONNX: &str = include_str!("../../data/compat/onnx.json");
const SUPPORT: &str = include_str!("../../data/compat/support.json");

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("data/compat/{file}: {message}; rebuild it with `python3 data/compat/build.py`")]
    Invalid { file: &'static str, message: String },
}

/// GPU architectures, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Arch {
    Kepler,
    Maxwell,
    Pascal,
    Volta,
    Turing,
    Ampere,
    Ada,
    Hopper,
    Blackwell,
    Rubin,
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One PCI device id (gpus.json `devices`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    pub id: PciId,
    pub name: String,
    pub pci_ids_name: Option<String>,
    pub chip: String,
    pub arch: Arch,
    /// None where no compute capability is published: never filled in.
    pub cc: Option<Cc>,
    pub cc_basis: String,
    /// NVIDIA's CUDA-GPUs list value where it contradicts the chip (the chip wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cc_nvidia_list: Option<Cc>,
    /// `470.xx`: needs that legacy branch (the 550 driver's supported-gpus.json).
    pub legacy_branch: Option<String>,
    pub open_module: Option<bool>,
    /// geforce, quadro, workstation, tesla, datacenter, grid, nvs; None when unknown.
    pub brand: Option<String>,
    /// Debian codename -> driver packages whose nvidia-detect list has this id.
    pub debian: BTreeMap<String, Vec<String>>,
    pub debian_open_listed: bool,
    pub inferred: Vec<String>,
    pub source: Vec<String>,
}

impl Gpu {
    /// Data-center class (tesla/datacenter): the forward-compatibility path is open to it.
    pub fn is_datacenter(&self) -> bool {
        matches!(self.brand.as_deref(), Some("tesla" | "datacenter"))
    }

    /// The legacy branch as a number (`470.xx` -> 470).
    pub fn legacy_branch_number(&self) -> Option<u32> {
        self.legacy_branch
            .as_deref()
            .and_then(|b| b.split('.').next())
            .and_then(|b| b.parse().ok())
    }

    pub fn label(&self) -> String {
        format!("{} {}", self.id, self.name)
    }
}

/// drivers.json `architecture_support`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchSupport {
    pub last_driver_branch: Option<u32>,
    pub kernel_module: Option<String>,
    pub source: Vec<String>,
}

/// A driver branch (drivers.json `branches`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Branch {
    pub branch: u32,
    pub max_cuda: CudaVersion,
    pub archs: Vec<Arch>,
    pub lifecycle: Option<String>,
    /// End of life, `YYYY-MM` (the last month of support), from NVIDIA's data-center driver
    /// lifecycle table; None where NVIDIA publishes no date (new feature branches) or the
    /// data has none with a quote behind it.
    pub eol: Option<String>,
    pub notes: String,
    pub inferred: Vec<String>,
    pub source: Vec<String>,
}

impl Branch {
    /// NVIDIA's lifecycle table calls it a New Feature Branch (`NFB, ...` in `lifecycle`).
    pub fn is_new_feature_branch(&self) -> bool {
        self.lifecycle
            .as_deref()
            .is_some_and(|l| l.starts_with("NFB"))
    }
}

/// A distribution's driver (or CUDA) package (drivers.json `distro_packages`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistroPackage {
    pub distro: String,
    pub release: String,
    pub codename: String,
    /// As the source writes it, e.g. `nvidia-driver-470 (linux-modules-nvidia-470-*)`.
    pub package: String,
    pub version: String,
    pub suite: String,
    pub branch: Option<u32>,
    pub inferred: Vec<String>,
    pub source: Vec<String>,
}

impl DistroPackage {
    /// The name apt installs: the first word of `package`.
    pub fn apt_name(&self) -> &str {
        self.package
            .split_whitespace()
            .next()
            .unwrap_or(&self.package)
    }

    /// The upstream driver version of `version` (`535.309.01-0+deb12u1` -> 535.309.01).
    pub fn upstream(&self) -> Option<DriverVersion> {
        self.version.parse().ok()
    }

    /// A driver metapackage (not the toolkit, not a kernel-module package).
    pub fn is_driver(&self) -> bool {
        self.branch.is_some() && self.apt_name().contains("driver")
    }
}

/// drivers.json `distro_notes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Note {
    pub fact: String,
    pub inferred: Vec<String>,
    pub source: Vec<String>,
}

/// A CUDA toolkit release (cuda.json `versions`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toolkit {
    pub version: CudaVersion,
    /// Minimum Linux driver; a bare branch (`R610 branch`) where only that is published.
    pub min_driver: DriverVersion,
    pub branch: u32,
    pub cc_min: Cc,
    /// Numeric maximum; `sm` (when present) is the exact list.
    pub cc_max: Cc,
    pub sm: Option<Vec<String>>,
    pub inferred: Vec<String>,
    pub source: Vec<String>,
}

impl Toolkit {
    /// Can this toolkit compile for `cc`? The exact `sm_` list where known, else the range.
    pub fn builds_for(&self, cc: Cc) -> bool {
        match &self.sm {
            Some(sm) => sm.iter().any(|s| Cc::from_sm(s) == Some(cc)),
            None => self.cc_min <= cc && cc <= self.cc_max,
        }
    }
}

/// A row of NVIDIA's CUDA forward-compatibility support table (cuda.json `forward_compat`):
/// the driver branches a `cuda-compat-<major>-<minor>` package runs on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompatPackage {
    /// As NVIDIA names it: `cuda-compat-13-2` (the highest CUDA it supports).
    pub package: String,
    /// The branches the table marks compatible, each as its bare branch (`535`: the column
    /// header `535+`, any driver of that branch).
    pub drivers: Vec<DriverVersion>,
    pub inferred: Vec<String>,
    pub source: Vec<String>,
}

impl CompatPackage {
    /// The package NVIDIA builds for CUDA `v`'s minor release.
    pub fn name_for(v: &CudaVersion) -> String {
        format!("cuda-compat-{}-{}", v.major, v.minor)
    }
}

/// A Triton NGC `-py3` release (triton.json `releases`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TritonRelease {
    pub release: String,
    pub cuda: CudaVersion,
    /// The release notes' "requires driver X or later"; None where they give no number.
    pub driver_min: Option<DriverVersion>,
    /// The release notes' older drivers for data-center GPUs (forward compatibility). They
    /// only narrow NVIDIA's forward-compatibility table (`triton::forward_compat_floor`):
    /// copied from release to release, they still name branches the table has dropped.
    pub dc_compat_drivers: Option<Vec<DriverVersion>>,
    /// Minor-version compatibility floor.
    pub mvc_floor: DriverVersion,
    /// The documented minimum compute capability.
    pub cc_min: Cc,
    pub ort: Option<String>,
    /// Lowest CC the ONNX Runtime backend was compiled for.
    pub ort_min_cc: Option<Cc>,
    pub ort_max_ir: Option<u32>,
    pub ort_max_opset: Option<u32>,
    pub trt: Option<String>,
    pub trt_series: Option<String>,
    pub trt_min_cc: Option<Cc>,
    pub conflicts: Vec<String>,
    pub inferred: Vec<String>,
    pub source: Vec<String>,
}

impl TritonRelease {
    pub fn image(&self) -> String {
        format!("nvcr.io/nvidia/tritonserver:{}-py3", self.release)
    }

    /// The TensorRT version, or the inferred series where the version was not retrieved.
    pub fn tensorrt(&self) -> Option<String> {
        match (&self.trt, &self.trt_series) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(s)) => Some(format!("{s} (inferred series)")),
            (None, None) => None,
        }
    }
}

/// onnx.json `ort`: what an ONNX Runtime minor version loads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrtLimits {
    pub version: String,
    pub max_ir: u32,
    pub max_opset: u32,
    pub inferred: Vec<String>,
    pub source: Vec<String>,
}

/// onnx.json `onnx`: the IR version an `onnx` Python release writes and its newest opset.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnnxRelease {
    pub version: String,
    pub ir: u32,
    pub max_opset: u32,
    pub inferred: Vec<String>,
    pub source: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Tables {
    /// The day the tables were last checked against their sources (`YYYY-MM-DD`, the data
    /// files' `snapshot` header): every answer says how old its facts are.
    pub snapshot: String,
    pub gpus: Vec<Gpu>,
    pub architectures: BTreeMap<Arch, ArchSupport>,
    pub branches: Vec<Branch>,
    pub distro_packages: Vec<DistroPackage>,
    pub distro_notes: Vec<Note>,
    pub cuda: Vec<Toolkit>,
    /// NVIDIA's forward-compatibility table, one row per cuda-compat package.
    pub forward_compat: Vec<CompatPackage>,
    /// Oldest first.
    pub triton: Vec<TritonRelease>,
    pub ort: Vec<OrtLimits>,
    pub onnx: Vec<OnnxRelease>,
    /// Per driver branch, the PCI ids its own lists name (support.json, `support.rs`).
    pub id_lists: Vec<super::support::IdList>,
    /// Subsystem names of the device ids above (pci.ids and NVIDIA's README tables).
    pub subsystems: Vec<super::support::Subsystem>,
}

/// The embedded tables, parsed once.
pub fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| Tables::embedded().unwrap_or_else(|e| panic!("{e}")))
}

impl Tables {
    pub fn embedded() -> Result<Tables, TableError> {
        let mut gpus = File::parse("gpus.json", GPUS)?;
        let mut drivers = File::parse("drivers.json", DRIVERS)?;
        let mut cuda = File::parse("cuda.json", CUDA)?;
        let mut triton = File::parse("triton.json", TRITON)?;
        let mut onnx = File::parse("onnx.json", ONNX)?;
        let mut support = File::parse("support.json", SUPPORT)?;
        let snapshot = gpus.snapshot()?;
        for f in [&drivers, &cuda, &triton, &onnx] {
            let other = f.snapshot()?;
            if other != snapshot {
                return Err(TableError::Invalid {
                    file: f.name,
                    message: format!(
                        "snapshot {other} differs from gpus.json's {snapshot}: the files come from different builds"
                    ),
                });
            }
        }
        let t = Tables {
            snapshot,
            gpus: gpus.take("devices")?,
            architectures: drivers.take("architectures")?,
            branches: drivers.take("branches")?,
            distro_packages: drivers.take("distro_packages")?,
            distro_notes: drivers.take("distro_notes")?,
            cuda: cuda.take("versions")?,
            forward_compat: cuda.take("forward_compat")?,
            triton: triton.take("releases")?,
            ort: onnx.take("ort")?,
            onnx: onnx.take("onnx")?,
            id_lists: support.take("lists")?,
            subsystems: support.take("subsystems")?,
        };
        Ok(t)
    }

    pub fn gpu(&self, id: PciId) -> Option<&Gpu> {
        self.gpus.iter().find(|g| g.id == id)
    }

    pub fn branch(&self, branch: u32) -> Option<&Branch> {
        self.branches.iter().find(|b| b.branch == branch)
    }

    pub fn triton_release(&self, release: &str) -> Option<&TritonRelease> {
        self.triton.iter().find(|r| r.release == release.trim())
    }

    /// The toolkit a CUDA version names: the exact patch release, else the minor's first.
    pub fn toolkit(&self, v: &CudaVersion) -> Option<&Toolkit> {
        let same_minor = || {
            self.cuda
                .iter()
                .filter(move |t| t.version.minor_key() == v.minor_key())
        };
        same_minor()
            .find(|t| v.patch.is_some() && t.version.patch == v.patch)
            .or_else(|| same_minor().next())
    }

    /// The forward-compatibility row of CUDA `v`'s cuda-compat package; None where NVIDIA's
    /// table has no row for that minor release (no forward compatibility: fail closed).
    pub fn compat_package(&self, v: &CudaVersion) -> Option<&CompatPackage> {
        let name = CompatPackage::name_for(v);
        self.forward_compat.iter().find(|p| p.package == name)
    }

    /// Limits of an ONNX Runtime version (`1.23.0+1d1712fdaf` -> the 1.23 row).
    pub fn ort_limits(&self, version: &str) -> Option<&OrtLimits> {
        let minor: Vec<&str> = version.split(['+', '.']).take(2).collect();
        let minor = minor.join(".");
        self.ort.iter().find(|o| o.version == minor)
    }

    /// Branches (oldest first) whose architecture list has `arch`.
    pub fn branches_for(&self, arch: Arch) -> impl Iterator<Item = &Branch> {
        self.branches
            .iter()
            .filter(move |b| b.archs.contains(&arch))
    }
}

/// One embedded file: its citations, and its tables with citations resolved.
struct File {
    name: &'static str,
    value: Value,
}

impl File {
    fn parse(name: &'static str, text: &str) -> Result<File, TableError> {
        let invalid = |message: String| TableError::Invalid {
            file: name,
            message,
        };
        let mut value: Value = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let sources: Vec<String> = serde_json::from_value(value["sources"].clone())
            .map_err(|e| invalid(format!("sources: {e}")))?;
        resolve_sources(&mut value, &sources).map_err(invalid)?;
        Ok(File { name, value })
    }

    /// The header's `snapshot` date (`YYYY-MM-DD`).
    fn snapshot(&self) -> Result<String, TableError> {
        let s = self.value["snapshot"].as_str().unwrap_or_default();
        let b = s.as_bytes();
        let well_formed = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
        if well_formed {
            Ok(s.to_string())
        } else {
            Err(TableError::Invalid {
                file: self.name,
                message: format!("no `snapshot` date (YYYY-MM-DD) in the header, found {s:?}"),
            })
        }
    }

    fn take<T: serde::de::DeserializeOwned>(&mut self, table: &str) -> Result<T, TableError> {
        let v = self.value.get_mut(table).map(Value::take);
        let v = v.ok_or_else(|| TableError::Invalid {
            file: self.name,
            message: format!("no `{table}` table"),
        })?;
        serde_json::from_value(v).map_err(|e| TableError::Invalid {
            file: self.name,
            message: format!("{table}: {e}"),
        })
    }
}

/// Replace every record's `source: [indices]` with the cited strings.
fn resolve_sources(v: &mut Value, sources: &[String]) -> Result<(), String> {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "source" {
                    let idx = child
                        .as_array()
                        .ok_or("`source` is not a list of indices")?;
                    let mut cites = Vec::with_capacity(idx.len());
                    for i in idx {
                        let i = i.as_u64().ok_or("`source` holds a non-index")? as usize;
                        let s = sources
                            .get(i)
                            .ok_or_else(|| format!("source index {i} out of range"))?;
                        cites.push(Value::String(s.clone()));
                    }
                    *child = Value::Array(cites);
                } else if k != "sources" {
                    resolve_sources(child, sources)?;
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                resolve_sources(item, sources)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_tables_load_and_are_ordered() {
        let t = Tables::embedded().unwrap();
        assert_eq!(t.gpus.len(), 831);
        assert!(t.triton.windows(2).all(|w| w[0].release < w[1].release));
        assert!(t.branches.windows(2).all(|w| w[0].branch < w[1].branch));
        assert!(t.cuda.windows(2).all(|w| w[0].version < w[1].version));
        let g = t.gpu("10de:1b80".parse().unwrap()).unwrap();
        assert_eq!(g.cc, Some(Cc::new(6, 1)));
        assert!(g.source.iter().any(|s| s.contains("cuda-legacy-gpus")));
        assert_eq!(t.snapshot.len(), 10);
    }

    #[test]
    fn triton_onnx_limits_match_the_onnx_runtime_table() {
        let t = tables();
        for r in &t.triton {
            let Some(ort) = &r.ort else { continue };
            // Unknown limits stay unknown (26.08's ONNX Runtime 1.28 is not in onnx.json).
            if r.ort_max_ir.is_none() && r.ort_max_opset.is_none() {
                continue;
            }
            let l = t
                .ort_limits(ort)
                .unwrap_or_else(|| panic!("{ort} not in onnx.json"));
            assert_eq!(Some(l.max_ir), r.ort_max_ir, "{}", r.release);
            assert_eq!(Some(l.max_opset), r.ort_max_opset, "{}", r.release);
        }
    }

    #[test]
    fn every_triton_cuda_version_has_a_toolkit_row() {
        let t = tables();
        for r in &t.triton {
            assert!(t.toolkit(&r.cuda).is_some(), "{} {}", r.release, r.cuda);
        }
    }
}

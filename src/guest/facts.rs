//! Guest facts: the guest probe's sections, parsed and assembled. A saved guest facts file is
//! the probe's output (plus the `onnx` sections the gatherer adds after reading each model),
//! so an offline plan and a live one read the same text.

use super::parse::{self, AptSource, CdiSpec, Container, DkmsEntry, GuestKernel, MokKey};
use super::parse::{ModelFile, OsRelease, Package, SecureBoot, SmiGpu};
use crate::compat::Distro;
use crate::facts::FileFact;
use crate::facts::lspci::{self, LspciDevice};
use crate::facts::raw::{RawError, RawFacts};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The read-only script that gathers every guest fact.
pub const PROBE: &str = concat!(
    include_str!("../probe-prelude.sh"),
    include_str!("probe.sh")
);

/// The probe with the model repository to list (shell-quoted, so any path is safe).
pub fn probe_script(model_repository: Option<&str>) -> String {
    match model_repository {
        Some(repo) => format!(
            "PVEGPU_MODEL_REPOSITORY='{}'\n{PROBE}",
            repo.replace('\'', r"'\''")
        ),
        None => PROBE.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GuestFactsError {
    #[error(transparent)]
    Raw(#[from] RawError),
    #[error("the guest facts have no `{section}` section ({hint})")]
    Missing {
        section: &'static str,
        hint: &'static str,
    },
    #[error(
        "the guest runs {pretty} (ID={id}, VERSION_ID={version}), which pvegpu does not converge; supported guests are Debian 12 and 13 and Ubuntu 22.04 and 24.04"
    )]
    UnsupportedDistro {
        pretty: String,
        id: String,
        version: String,
    },
    #[error("line {line}: `### pvegpu onnx {arg}` needs `ir=<n> opset=<n>` after the model's path")]
    BadOnnxSection { line: usize, arg: String },
}

/// An ONNX model's header as the gatherer read it (see `onnx_check`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OnnxHeader {
    pub path: String,
    pub ir_version: u32,
    /// The ai.onnx opset import (the default domain).
    pub opset: u32,
    pub producer: Option<String>,
}

/// The Triton model repository as listed on the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelRepository {
    pub path: String,
    pub exists: bool,
    pub onnx_files: Vec<ModelFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestFacts {
    pub hostname: String,
    pub os: OsRelease,
    /// None: a distribution pvegpu does not converge (see [`GuestFacts::distro`]).
    pub distro: Option<Distro>,
    pub running_kernel: String,
    pub boot_id: Option<String>,
    /// Bootable kernels, oldest first.
    pub kernels: Vec<GuestKernel>,
    pub secure_boot: SecureBoot,
    pub mok_keys: Vec<MokKey>,
    /// NVIDIA functions from `lspci -nnk -D -d 10de:` (displays and their audio functions).
    pub pci: Vec<LspciDevice>,
    /// None when /proc/modules could not be read.
    pub loaded_modules: Option<BTreeSet<String>>,
    pub dkms: Vec<DkmsEntry>,
    pub smi: Vec<SmiGpu>,
    /// What nvidia-smi said when it failed (no driver, version mismatch), if it ran.
    pub smi_error: Option<String>,
    pub apt_sources: Vec<AptSource>,
    pub keyrings: BTreeSet<String>,
    pub holds: BTreeSet<String>,
    pub packages: BTreeMap<String, Package>,
    /// What an interrupted dpkg run left (its journal, `dpkg --audit`); empty when none, or
    /// when an older probe did not look.
    pub dpkg_audit: Vec<String>,
    pub docker: Option<String>,
    /// The runtimes the running Docker daemon knows (empty: it did not answer); None when an
    /// older probe did not ask.
    pub docker_runtimes: Option<BTreeSet<String>>,
    pub podman: Option<String>,
    pub nvidia_ctk: Option<String>,
    pub cdi_specs: Vec<CdiSpec>,
    pub containers: Vec<Container>,
    pub triton_service: Option<String>,
    /// When the service became active, and whether its unit changed on disk since.
    pub triton_since: parse::ServiceSince,
    /// Each CDI spec's mtime, by path.
    pub cdi_mtimes: BTreeMap<String, i64>,
    pub files: BTreeMap<String, FileFact>,
    pub model_repository: Option<ModelRepository>,
    pub onnx: Vec<OnnxHeader>,
}

impl GuestFacts {
    pub fn from_raw(raw: &RawFacts) -> Result<Self, GuestFactsError> {
        let body = |name| raw.ok_body(name).unwrap_or("");
        let running_kernel = raw.ok_line("uname").ok_or(GuestFactsError::Missing {
            section: "uname",
            hint: "the output of `uname -r`",
        })?;
        let os_text = raw.ok_body("os-release").ok_or(GuestFactsError::Missing {
            section: "os-release",
            hint: "the content of /etc/os-release",
        })?;
        let os = parse::os_release(os_text);
        let distro = distro_of(&os).filter(|d| d.guest_phase());

        let mut files = BTreeMap::new();
        let mut apt_sources = Vec::new();
        for s in raw.all("file") {
            let path = s.first_arg().to_string();
            if path.starts_with("/etc/apt/") {
                if path.ends_with(".sources") {
                    apt_sources.extend(parse::deb822_sources(&path, &s.body));
                } else if path.ends_with(".list") {
                    apt_sources.extend(parse::sources_list(&path, &s.body));
                }
            }
            files.insert(path, FileFact::from_section(s));
        }

        let smi_section = raw.get("nvidia-smi");
        let smi = raw.ok_body("nvidia-smi").map(parse::nvidia_smi);
        let smi_error = smi_section
            .filter(|s| !s.ok() && s.exit != Some(127))
            .map(|s| s.body.lines().next().unwrap_or("").trim().to_string());

        let mut containers = raw
            .ok_body("docker-containers")
            .map(parse::containers)
            .unwrap_or_default();
        containers.extend(
            raw.ok_body("podman-containers")
                .map(parse::containers)
                .unwrap_or_default(),
        );

        let model_repository = raw.get("model-repository").map(|s| {
            let path = s.first_arg().to_string();
            ModelRepository {
                exists: s.ok(),
                onnx_files: if s.ok() {
                    parse::model_files(&path, &s.body)
                } else {
                    Vec::new()
                },
                path,
            }
        });
        let mut onnx = Vec::new();
        for s in raw.all("onnx") {
            let attrs = s.attrs();
            let num = |k| attrs.get(k).and_then(|v| v.parse().ok());
            let (Some(ir_version), Some(opset)) = (num("ir"), num("opset")) else {
                return Err(GuestFactsError::BadOnnxSection {
                    line: s.line,
                    arg: s.arg.clone(),
                });
            };
            onnx.push(OnnxHeader {
                path: s.first_arg().to_string(),
                ir_version,
                opset,
                producer: attrs
                    .get("producer")
                    .filter(|p| !p.is_empty())
                    .map(|p| p.to_string()),
            });
        }

        Ok(GuestFacts {
            hostname: body("hostname").trim().to_string(),
            os,
            distro,
            running_kernel,
            boot_id: raw.ok_body("boot-id").map(|b| b.trim().to_string()),
            kernels: parse::guest_kernels(body("guest-kernels"))
                .into_iter()
                .filter(|k| k.bootable)
                .collect(),
            secure_boot: parse::secure_boot(
                raw.get("secure-boot").map(|s| s.body.as_str()),
                raw.ok_body("secure-boot-efivar"),
            ),
            mok_keys: parse::mok_keys(body("mok-keys")),
            pci: lspci::parse(body("lspci"))
                .into_iter()
                .filter(|d| d.id.vendor == 0x10de)
                .collect(),
            loaded_modules: raw.ok_body("proc-modules").map(parse::proc_modules),
            dkms: parse::dkms_status(body("dkms")),
            smi: smi.unwrap_or_default(),
            smi_error,
            apt_sources,
            keyrings: parse::keyrings(raw.get("keyrings").map_or("", |s| s.body.as_str())),
            holds: parse::holds(body("apt-holds")),
            packages: parse::packages(body("packages")),
            dpkg_audit: parse::dpkg_audit(body("dpkg-audit")),
            docker: raw.ok_body("docker").and_then(parse::tool_version),
            docker_runtimes: raw
                .get("docker-runtimes")
                .map(|s| parse::docker_runtimes(if s.ok() { &s.body } else { "" })),
            podman: raw.ok_body("podman").and_then(parse::tool_version),
            nvidia_ctk: raw.ok_body("nvidia-ctk").and_then(parse::tool_version),
            cdi_specs: raw
                .all("cdi")
                .map(|s| parse::cdi_spec(s.first_arg(), &s.body))
                .collect(),
            containers,
            triton_service: raw
                .get("triton-service")
                .map(|s| s.body.trim().to_string())
                .filter(|s| !s.is_empty()),
            triton_since: parse::service_since(body("triton-service-since")),
            cdi_mtimes: raw
                .all("cdi")
                .filter_map(|s| {
                    let mtime = s.attrs().get("mtime")?.parse().ok()?;
                    Some((s.first_arg().to_string(), mtime))
                })
                .collect(),
            files,
            model_repository,
            onnx,
        })
    }

    /// The distribution, or the error that names what the guest runs.
    pub fn distro(&self) -> Result<Distro, GuestFactsError> {
        distro_of(&self.os)
            .filter(|d| d.guest_phase())
            .ok_or_else(|| self.unsupported())
    }

    /// The distribution as the tables know it, including releases the guest phase does not
    /// converge (what `pvegpu compat --facts` answers for).
    pub fn known_distro(&self) -> Result<Distro, GuestFactsError> {
        distro_of(&self.os).ok_or_else(|| self.unsupported())
    }

    fn unsupported(&self) -> GuestFactsError {
        let os = &self.os;
        GuestFactsError::UnsupportedDistro {
            pretty: if os.pretty_name.is_empty() {
                format!("{}-{}", os.id, os.version_id)
            } else {
                os.pretty_name.clone()
            },
            id: os.id.clone(),
            version: os.version_id.clone(),
        }
    }

    /// NVIDIA display controllers (class 03xx), the GPUs the driver is chosen for.
    pub fn gpus(&self) -> impl Iterator<Item = &LspciDevice> {
        self.pci.iter().filter(|d| d.class >> 8 == 0x03)
    }

    pub fn module_loaded(&self, name: &str) -> bool {
        self.loaded_modules
            .as_ref()
            .is_some_and(|m| m.contains(name))
    }

    pub fn installed(&self, package: &str) -> Option<&Package> {
        self.packages.get(package).filter(|p| p.installed())
    }

    /// What says dpkg's last run did not finish: its journal or audit findings, and the
    /// packages it left unpacked but not configured. Empty when it finished.
    pub fn dpkg_unfinished(&self) -> Vec<String> {
        let mut out = self.dpkg_audit.clone();
        out.extend(
            self.packages
                .iter()
                .filter(|(_, p)| p.unfinished())
                .map(|(name, p)| format!("{name} is {}", p.status)),
        );
        out
    }

    /// The driver version the loaded driver reports (nvidia-smi), if it answered.
    pub fn loaded_driver(&self) -> Option<&str> {
        self.smi.first().map(|g| g.driver_version.as_str())
    }
}

fn distro_of(os: &OsRelease) -> Option<Distro> {
    format!("{}-{}", os.id, os.version_id).parse().ok()
}

/// The section the gatherer appends after reading a model's header, so a saved facts file
/// carries what the planner checks.
pub fn onnx_section(header: &OnnxHeader) -> String {
    let producer = header
        .producer
        .as_deref()
        .map(|p| {
            format!(
                " producer={}",
                p.chars()
                    .filter(|c| !c.is_whitespace() && *c != '=')
                    .collect::<String>()
            )
        })
        .unwrap_or_default();
    format!(
        "### pvegpu onnx {} ir={} opset={}{producer}\n### pvegpu exit 0\n",
        header.path, header.ir_version, header.opset
    )
}

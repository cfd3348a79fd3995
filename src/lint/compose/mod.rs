//! GPU routing lint for Docker Compose files: which GPUs each service's containers get, and
//! whether what the service then does with them (CUDA_VISIBLE_DEVICES, tensor parallelism)
//! fits. Pure: [`lint_compose_str`] takes the text; [`lint_compose`] only reads the file.
//!
//! The command (`commands/lint.rs`):
//!
//! ```text
//! pvegpu lint compose FILE [--json]
//! ```
//!
//! prints [`render`]'s text on stdout (or, with `--json`, the findings as a JSON array of
//! [`Finding`]), and exits 1 when any finding has [`Severity::Error`] (or the file cannot be
//! read or parsed, reported as a [`LintError`] with its
//! [`Hint`](crate::core::error::Hint)), 0 otherwise.
//! `pvegpu verify` runs the same lint on the guest's compose files.
//!
//! The facts behind the rules are in shared/compat/RULES.md section 5b: Compose rejects
//! `count` with `device_ids`; Docker turns `count: N` into host GPUs 0..N-1 and sets
//! `NVIDIA_VISIBLE_DEVICES` itself from the reservation; inside the container the GPUs are
//! numbered from 0, and `CUDA_VISIBLE_DEVICES` is read against that numbering, CUDA stopping
//! at the first entry that names no device; a CUDA process enumerates one MIG device only.

mod model;
mod parallel;
mod rules;
mod values;

use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// The containers will not start, or will not see the GPUs the file means.
    Error,
    /// Works by accident or depends on something outside the file; likely to break.
    Warning,
    /// Works; a safer way exists, or a fact worth knowing.
    Advice,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Advice => "advice",
        })
    }
}

/// Which rule a finding comes from (stable ids, for `--json` and for silencing later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// `count` and `device_ids` in one device reservation.
    CountWithDeviceIds,
    /// A device reservation without `capabilities: [gpu]`.
    GpuCapability,
    /// `CUDA_VISIBLE_DEVICES` names GPUs the container does not have (host numbering).
    CudaVisibleDevices,
    /// `CUDA_VISIBLE_DEVICES` taken from the shell that runs `docker compose`.
    CudaVisibleFromHost,
    /// `NVIDIA_VISIBLE_DEVICES` disagrees with the reservation, which decides.
    NvidiaVisibleDevices,
    /// GPUs selected by index where a UUID stays with the card.
    IndexDeviceIds,
    /// A MIG device.
    MigDevice,
    /// Tensor (× pipeline) parallel size larger than the GPUs the service sees.
    TensorParallel,
    /// `runtime: nvidia` beside a device reservation.
    RuntimeWithReservation,
    /// The service uses GPUs but asks for none.
    NoGpuRequest,
    /// `count: N` in two services: both get host GPUs 0..N-1.
    SharedGpu,
    /// A value no engine or Docker accepts (a parallel size of 0).
    InvalidValue,
    /// `count: -1`, which Docker reads as all GPUs.
    CountMinusOne,
}

impl Rule {
    pub fn id(self) -> &'static str {
        match self {
            Rule::CountWithDeviceIds => "count-with-device-ids",
            Rule::GpuCapability => "gpu-capability",
            Rule::CudaVisibleDevices => "cuda-visible-devices",
            Rule::CudaVisibleFromHost => "cuda-visible-from-host",
            Rule::NvidiaVisibleDevices => "nvidia-visible-devices",
            Rule::IndexDeviceIds => "index-device-ids",
            Rule::MigDevice => "mig-device",
            Rule::TensorParallel => "tensor-parallel",
            Rule::RuntimeWithReservation => "runtime-with-reservation",
            Rule::NoGpuRequest => "no-gpu-request",
            Rule::SharedGpu => "shared-gpu",
            Rule::InvalidValue => "invalid-value",
            Rule::CountMinusOne => "count-minus-one",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// One problem in one service, at the line to edit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub file: String,
    pub service: String,
    /// 1-based line of the value to change. For a value a service takes from an anchor
    /// (`<<: *common`, `*env`), the line inside the anchor.
    pub line: usize,
    /// The `<<: *anchor` or alias line through which the service picks the value up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_at: Option<usize>,
    pub severity: Severity,
    pub rule: Rule,
    /// What is wrong and why.
    pub message: String,
    /// What to write instead.
    pub fix: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LintError {
    #[error("cannot read the compose file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: crate::core::input::InputError,
    },
    /// Not YAML, or YAML that is not shaped like a Compose file (e.g. `environment: 3`).
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
        /// The text of that line, for the hint.
        source_line: String,
    },
    #[error("{path}: no `services:` mapping, so this is not a Compose file")]
    NoServices { path: PathBuf },
}

impl crate::core::error::Hint for LintError {
    /// What to do about it, for the `hint:` line.
    fn hint(&self) -> Option<String> {
        match self {
            LintError::Read { .. } => None,
            LintError::Invalid {
                line, source_line, ..
            } => Some(format!(
                "line {line} reads `{}`; fix its value, indentation or quoting (`docker compose config` parses the file the same way)",
                crate::core::input::clip(source_line.trim())
            )),
            LintError::NoServices { .. } => Some(
                "a Compose file has a top-level `services:` mapping; pass the file that defines the GPU services".into(),
            ),
        }
    }
}

/// Lints the Compose file at `path` (reads it; everything else is [`lint_compose_str`]).
pub fn lint_compose(path: &Path) -> Result<Vec<Finding>, LintError> {
    let text = crate::core::input::read_text(path).map_err(|source| LintError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    lint_compose_str(path, &text)
}

/// Lints Compose text; `path` only names the file in findings and errors. Findings come
/// sorted by line, then service.
pub fn lint_compose_str(path: &Path, text: &str) -> Result<Vec<Finding>, LintError> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
    };
    let file: model::ComposeFile =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| invalid(path, text, &e))?;
    let services = file.services.ok_or_else(|| LintError::NoServices {
        path: path.to_path_buf(),
    })?;
    let mut findings = rules::check(&path.display().to_string(), text, &services);
    findings.sort_by(|a, b| {
        (a.line, &a.service, a.rule, &a.message).cmp(&(b.line, &b.service, b.rule, &b.message))
    });
    findings.dedup();
    Ok(findings)
}

fn invalid(path: &Path, text: &str, e: &serde_saphyr::Error) -> LintError {
    let (line, column) = e
        .location()
        .map(|l| (l.line() as usize, l.column() as usize))
        .filter(|&(l, _)| l > 0)
        .unwrap_or((1, 1));
    let mut message = e.without_snippet().to_string();
    // serde-saphyr appends the place; the error already starts with it.
    if let Some(i) = message.rfind(" at line ")
        && message[i..].contains(", column ")
    {
        message.truncate(i);
    }
    LintError::Invalid {
        path: path.to_path_buf(),
        line,
        column,
        message,
        source_line: text.lines().nth(line - 1).unwrap_or("").to_string(),
    }
}

/// The findings as text, one block per finding and a closing count:
///
/// ```text
/// compose.yml:14: error[cuda-visible-devices] service `vllm`: ...
///   fix: ...
/// ```
pub fn render(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "No GPU routing problems found.\n".into();
    }
    let mut out = String::new();
    for f in findings {
        out.push_str(&format!(
            "{}:{}: {}[{}] service `{}`: {}\n",
            f.file, f.line, f.severity, f.rule, f.service, f.message
        ));
        if let Some(m) = f.merged_at {
            out.push_str(&format!(
                "  (`{}` takes this value through line {m})\n",
                f.service
            ));
        }
        out.push_str(&format!("  fix: {}\n", f.fix));
    }
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let plural = |n: usize, word: &str| {
        if n == 1 {
            format!("{n} {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    out.push_str(&format!(
        "{}, {}, {} advice\n",
        plural(count(Severity::Error), "error"),
        plural(count(Severity::Warning), "warning"),
        count(Severity::Advice)
    ));
    out
}

/// Whether any finding is an error (the CLI's exit status 1).
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

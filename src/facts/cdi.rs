//! CDI specs (`/etc/cdi/*.yaml`, `*.json`): what a spec defines and which driver it was
//! generated for, read one way for the guest planner and for `verify`. A spec is a snapshot
//! of the driver at generation time, so a spec that names another driver, or several, is
//! stale (RULES.md 5a).

use regex::Regex;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::LazyLock;

/// What a spec says, as far as pvegpu cares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CdiSpec {
    pub path: String,
    /// `nvidia.com/gpu` for NVIDIA's; None where the text names no kind.
    pub kind: Option<String>,
    pub devices: Vec<String>,
    pub device_nodes: BTreeSet<String>,
    /// Driver versions the spec pins (library file names, the compat hook's argument).
    pub driver_versions: BTreeSet<String>,
    /// The one driver the spec was made for; None where it names none or several (a spec
    /// that mounts two drivers' libraries matches neither).
    pub driver_version: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CdiError {
    #[error("{path}: not YAML or JSON: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: no `kind` key, so this is not a CDI spec")]
    NoKind { path: String },
}

static LIB_VERSION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"lib(?:nvidia-ml|cuda|nvidia-ptxjitcompiler)\.so\.(\d+\.\d+(?:\.\d+)?)$").unwrap()
});
static COMMENT_VERSION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?mi)^\s*#.*driver[ _-]?version[:= ]+(\d+\.\d+(?:\.\d+)?)").unwrap()
});

/// The driver version in a mounted library's host path (`.../libcuda.so.575.64.03`).
fn library_version(host_path: &str) -> Option<String> {
    LIB_VERSION
        .captures(host_path.trim())
        .map(|c| c[1].to_string())
}

impl CdiSpec {
    fn new(path: &str, kind: Option<String>) -> Self {
        CdiSpec {
            path: path.to_string(),
            kind,
            ..CdiSpec::default()
        }
    }

    fn finish(mut self) -> Self {
        self.driver_version = match self.driver_versions.len() {
            1 => self.driver_versions.first().cloned(),
            _ => None,
        };
        self
    }

    fn edits(&mut self, edits: &Value) {
        let list = |key: &str| {
            edits
                .get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        for n in list("deviceNodes") {
            if let Some(p) = n.get("path").and_then(Value::as_str) {
                self.device_nodes.insert(p.to_string());
            }
        }
        for m in list("mounts") {
            if let Some(v) = m
                .get("hostPath")
                .and_then(Value::as_str)
                .and_then(library_version)
            {
                self.driver_versions.insert(v);
            }
        }
        for h in list("hooks") {
            for a in h
                .get("args")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(v) = a
                    .as_str()
                    .and_then(|a| a.strip_prefix("--host-driver-version="))
                {
                    self.driver_versions.insert(v.to_string());
                }
            }
        }
    }
}

/// A whole spec (YAML, or JSON, which YAML reads too).
pub fn parse(path: &str, text: &str) -> Result<CdiSpec, CdiError> {
    let doc: Value = serde_saphyr::from_str(text).map_err(|e| CdiError::Syntax {
        path: path.to_string(),
        message: e.without_snippet().to_string(),
    })?;
    let kind = doc
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| CdiError::NoKind {
            path: path.to_string(),
        })?;
    let mut spec = CdiSpec::new(path, Some(kind.to_string()));
    if let Some(e) = doc.get("containerEdits") {
        spec.edits(e);
    }
    for d in doc
        .get("devices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match d.get("name") {
            Some(Value::String(s)) => spec.devices.push(s.clone()),
            Some(Value::Number(n)) => spec.devices.push(n.to_string()),
            _ => {}
        }
        if let Some(e) = d.get("containerEdits") {
            spec.edits(e);
        }
    }
    if spec.driver_versions.is_empty()
        && let Some(c) = COMMENT_VERSION.captures(text)
    {
        spec.driver_versions.insert(c[1].to_string());
    }
    Ok(spec.finish())
}

/// The guest probe's excerpt of a spec: the spec is long, so the probe keeps only its
/// `cdiVersion:` and `kind:` lines and the lines naming a versioned libcuda or libnvidia-ml
/// (not a YAML document any more). Read with the same rules as [`parse`]: the top-level
/// `kind`, and versions from the libraries' host paths.
pub fn parse_excerpt(path: &str, text: &str) -> CdiSpec {
    let kind = text
        .lines()
        .find_map(|l| l.strip_prefix("kind:"))
        .map(|k| k.trim().trim_matches(['"', '\'']).to_string());
    let mut spec = CdiSpec::new(path, kind);
    spec.driver_versions = text
        .lines()
        .filter_map(|l| l.trim().trim_start_matches("- ").strip_prefix("hostPath:"))
        .filter_map(library_version)
        .collect();
    spec.finish()
}

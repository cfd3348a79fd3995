//! The order in which a phase converges its resources, as data (playbooks/*.toml), and the one
//! loader every phase reads its playbook with.
//!
//! A playbook is a list of `[[steps]]`. Every step has an `id` (the name its change carries in a
//! plan), a `summary` and, optionally, `reboot = true` when its effect needs one; the rest of the
//! table is the step's `kind` and exactly the fields that kind needs. Each phase declares its
//! kinds as one enum (`#[serde(tag = "kind", deny_unknown_fields)]`), so a renamed or unknown
//! kind, a missing field or a stray one fails here, naming the file and the step, and the
//! planners decide by the typed kind, never by a step id.
//!
//! A phase adds its playbook with its kinds and one static, as src/host/playbook.rs does:
//!
//! ```ignore
//! #[derive(Deserialize)]
//! #[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
//! pub enum VmStepKind { Config {}, Hostpci { slot: u8 }, Start {} }
//! pub static VM: LazyLock<Playbook<VmStepKind>> =
//!     LazyLock::new(|| embedded("playbooks/vm.toml", include_str!("../../playbooks/vm.toml")));
//! ```
//!
//! A kind without fields is written `Name {}`, not `Name`: serde lets a unit variant of a tagged
//! enum ignore stray fields.

use crate::core::plan::{Action, Change, unified_diff};
use serde::Deserialize;
use serde::de::DeserializeOwned;

#[derive(Debug, Clone)]
pub struct Playbook<K> {
    pub steps: Vec<Step<K>>,
}

#[derive(Debug, Clone)]
pub struct Step<K> {
    pub id: String,
    pub summary: String,
    /// The step's effect needs a reboot.
    pub reboot: bool,
    pub kind: K,
}

/// A whole file pvegpu owns, rendered from a template in templates/.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnedFile {
    pub path: String,
    pub template: String,
    /// Octal permissions for a new file; an existing file keeps its own.
    #[serde(default)]
    pub mode: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlaybookError {
    #[error("{file} is not valid TOML: {source}")]
    Toml {
        file: String,
        source: toml::de::Error,
    },
    #[error("{file} has no [[steps]]")]
    NoSteps { file: String },
    #[error("{file}, {step}: {message}")]
    Step {
        file: String,
        /// `step 3 (`cuda-keyring`)`, or `step 3` when it has no id.
        step: String,
        message: String,
    },
}

/// The fields every step has, whatever its kind.
#[derive(Deserialize)]
struct Common {
    id: String,
    summary: String,
    #[serde(default)]
    reboot: bool,
}

const COMMON: [&str; 3] = ["id", "summary", "reboot"];

/// Reads one phase's playbook; `file` names it in errors.
pub fn load<K: DeserializeOwned>(file: &str, text: &str) -> Result<Playbook<K>, PlaybookError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        #[serde(default)]
        steps: Vec<toml::Table>,
    }
    let raw: Raw = toml::from_str(text).map_err(|source| PlaybookError::Toml {
        file: file.to_string(),
        source,
    })?;
    if raw.steps.is_empty() {
        return Err(PlaybookError::NoSteps { file: file.into() });
    }
    let mut steps: Vec<Step<K>> = Vec::with_capacity(raw.steps.len());
    for (i, mut table) in raw.steps.into_iter().enumerate() {
        let name = match table.get("id").and_then(|v| v.as_str()) {
            Some(id) => format!("step {} (`{id}`)", i + 1),
            None => format!("step {}", i + 1),
        };
        let fail = |message: String| PlaybookError::Step {
            file: file.to_string(),
            step: name.clone(),
            message,
        };
        let mut common = toml::Table::new();
        for key in COMMON {
            if let Some(v) = table.remove(key) {
                common.insert(key.to_string(), v);
            }
        }
        let common = Common::deserialize(toml::Value::Table(common))
            .map_err(|e| fail(e.message().to_string()))?;
        let kind =
            K::deserialize(toml::Value::Table(table)).map_err(|e| fail(e.message().to_string()))?;
        // a plan names its changes by step id, so two steps must not share one
        if steps.iter().any(|s| s.id == common.id) {
            return Err(fail("another step has the same id".into()));
        }
        steps.push(Step {
            id: common.id,
            summary: common.summary,
            reboot: common.reboot,
            kind,
        });
    }
    Ok(Playbook { steps })
}

/// A playbook built into the binary. Its tests load it, so a broken one never ships; the
/// panic names the file and the step all the same.
pub fn embedded<K: DeserializeOwned>(file: &str, text: &str) -> Playbook<K> {
    load(file, text).unwrap_or_else(|e| panic!("{e}"))
}

impl<K> Playbook<K> {
    /// The step a change was planned by.
    pub fn step(&self, id: &str) -> Option<&Step<K>> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// Whether a step of a kind `is` accepts planned one of `changes`.
    pub fn changed(&self, changes: &[Change], is: impl Fn(&K) -> bool) -> bool {
        changes
            .iter()
            .any(|c| self.step(&c.step).is_some_and(|s| is(&s.kind)))
    }
}

impl<K> Step<K> {
    /// This step's change: it carries the step's id, summary and reboot mark.
    pub fn change(
        &self,
        reason: impl Into<String>,
        action: Action,
        diff: Option<String>,
    ) -> Change {
        Change {
            step: self.id.clone(),
            summary: self.summary.clone(),
            reason: reason.into(),
            action,
            diff,
            needs_reboot: self.reboot,
        }
    }

    /// This step's change that makes `path` hold `content`; None when it already does.
    pub fn write_file(
        &self,
        path: &str,
        before: Option<String>,
        content: String,
        mode: String,
        reason: impl Into<String>,
    ) -> Option<Change> {
        if before.as_deref() == Some(content.as_str()) {
            return None;
        }
        let diff = unified_diff(path, before.as_deref(), &content);
        let action = Action::WriteFile {
            path: path.to_string(),
            content,
            mode,
            before,
        };
        Some(self.change(reason, action, Some(diff)))
    }

    /// This step's change that runs `command`.
    pub fn run(&self, reason: impl Into<String>, command: impl Into<String>) -> Change {
        let command = command.into();
        self.change(reason, Action::Run { command }, None)
    }
}

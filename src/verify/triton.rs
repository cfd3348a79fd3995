//! Triton layer, from two HTTP answers the caller fetched: the status code of
//! `GET /v2/health/ready` and the body of `POST /v2/repository/index` (Triton's model
//! repository extension: one entry per model version, with `state` READY, UNAVAILABLE,
//! LOADING or UNLOADING and a `reason` when not ready).

use crate::core::check::{Check, Layer};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IndexEntry {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
    /// Absent for a model that was never loaded (explicit model control).
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("the repository index is not the JSON array Triton returns: {0}")]
pub struct IndexError(#[from] serde_json::Error);

pub fn parse_index(body: &str) -> Result<Vec<IndexEntry>, IndexError> {
    Ok(serde_json::from_str(body)?)
}

/// What Triton answered; `None` where the request got no HTTP answer at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TritonAnswers {
    pub ready_status: Option<u16>,
    pub index_body: Option<String>,
}

/// A model counts as loaded when one of its versions is READY: Triton keeps older versions
/// in the index as UNAVAILABLE "unloaded" after a version-policy switch, which is no fault.
/// A model fails when no version is READY and one carries a reason other than "unloaded"
/// (a load error), or when it is expected and not READY.
pub fn checks(answers: &TritonAnswers, expected_models: &[String]) -> Vec<Check> {
    let mut out = Vec::new();
    out.push(match answers.ready_status {
        None => Check::skip(
            Layer::Triton,
            "server ready",
            "no answer from /v2/health/ready",
            "check that the Triton container runs and publishes its HTTP port (8000): `podman ps` / `docker ps`, and its log; by default (--exit-on-error=true) Triton exits when any model fails to load, and the log names the model",
        ),
        Some(200) => Check::pass(Layer::Triton, "server ready", "/v2/health/ready: 200"),
        Some(code) => Check::fail(
            Layer::Triton,
            "server ready",
            format!("/v2/health/ready: {code}"),
            "Triton is up but not ready: it is still loading, or a model failed to load and the server runs with --exit-on-error=false (it serves the rest and reports not ready; with the default, true, it exits instead)",
            "see the model checks below and the container log (`podman logs` / `docker logs`)",
        ),
    });
    let Some(body) = &answers.index_body else {
        out.push(Check::skip(
            Layer::Triton,
            "models loaded",
            "no answer from POST /v2/repository/index",
            "`curl -X POST http://HOST:8000/v2/repository/index`",
        ));
        return out;
    };
    let entries = match parse_index(body) {
        Ok(e) => e,
        Err(e) => {
            out.push(Check::fail(
                Layer::Triton,
                "models loaded",
                e.to_string(),
                "the endpoint answered something other than Triton's index (another server on the port, or an error page)",
                "check what listens on the port and that the Triton version supports the model repository extension",
            ));
            return out;
        }
    };
    let mut by_model: BTreeMap<&str, Vec<&IndexEntry>> = BTreeMap::new();
    for e in &entries {
        by_model.entry(e.name.as_str()).or_default().push(e);
    }
    let is = |e: &IndexEntry, s: &str| e.state.as_deref() == Some(s);
    let describe = |e: &IndexEntry| {
        format!(
            "{}{}: {}{}",
            e.name,
            e.version
                .as_deref()
                .map(|v| format!(" v{v}"))
                .unwrap_or_default(),
            e.state.as_deref().unwrap_or("not loaded"),
            e.reason
                .as_deref()
                .filter(|r| !r.is_empty())
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )
    };
    let mut ready = Vec::new();
    let mut failed = Vec::new();
    let mut pending = Vec::new();
    for (name, versions) in &by_model {
        if versions.iter().any(|e| is(e, "READY")) {
            ready.push(name.to_string());
            continue;
        }
        let errors: Vec<String> = versions
            .iter()
            .filter(|e| is(e, "UNAVAILABLE"))
            .filter(|e| {
                e.reason
                    .as_deref()
                    .is_some_and(|r| !r.is_empty() && r != "unloaded")
            })
            .map(|e| describe(e))
            .collect();
        if !errors.is_empty() {
            failed.extend(errors);
        } else if expected_models.iter().any(|m| m == name) {
            pending.extend(versions.iter().map(|e| describe(e)));
        }
    }
    let absent: Vec<&String> = expected_models
        .iter()
        .filter(|m| !by_model.contains_key(m.as_str()))
        .collect();
    if failed.is_empty() {
        out.push(Check::pass(
            Layer::Triton,
            "no model failed",
            format!("{} model(s) in the repository", by_model.len()),
        ));
    } else {
        out.push(Check::fail(
            Layer::Triton,
            "no model failed",
            failed.join("; "),
            "Triton could not load these models; the reason is Triton's own load error (a CUDA error here usually means the runtime checks above fail too)",
            "fix what the reason names (model files, config.pbtxt, backend, GPU), then `curl -X POST http://HOST:8000/v2/repository/models/NAME/load` or restart Triton",
        ));
    }
    if pending.is_empty() && absent.is_empty() {
        out.push(Check::pass(
            Layer::Triton,
            "every model loaded",
            if ready.is_empty() {
                "no model is READY".to_string()
            } else {
                format!("READY: {}", ready.join(", "))
            },
        ));
    } else {
        let mut saw: Vec<String> = pending;
        saw.extend(absent.iter().map(|m| format!("{m}: not in the repository")));
        out.push(Check::fail(
            Layer::Triton,
            "every model loaded",
            saw.join("; "),
            "an expected model is not READY: not in the repository Triton was started with, not loaded (explicit model control), or still loading",
            "check --model-repository points at the right folder; with --model-control-mode=explicit load it (`POST /v2/repository/models/NAME/load`) or start Triton with --load-model=NAME",
        ));
    }
    if ready.is_empty() && failed.is_empty() && expected_models.is_empty() {
        // an empty or all-unloaded repository serves nothing; say so instead of passing
        if let Some(last) = out.last_mut() {
            *last = Check::fail(
                Layer::Triton,
                "every model loaded",
                "no model is READY",
                "the repository is empty or nothing was loaded",
                "check --model-repository and the model control mode",
            );
        }
    }
    out
}

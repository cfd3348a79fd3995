//! One `pvegpu compat` answer: the recommendation for a set of GPUs (when there are GPUs),
//! the release range per backend, a named release judged, and which releases load each model.

use super::CompatError;
use super::questions::{
    self, Model, ModelAnswer, QuestionError, ReleaseCheck, ReleaseRange, check_release,
};
use super::recommend::{Recommendation, Request, recommend_at};
use super::render;
use super::tables::Tables;
use serde::Serialize;
use std::fmt::Write;

/// What the user asked.
#[derive(Debug, Clone, Default)]
pub struct Ask {
    /// None when no GPUs were named or found (a model-only question).
    pub request: Option<Request>,
    pub models: Vec<Model>,
    pub release: Option<String>,
    /// Where the GPUs came from, when not from the command line (`facts file X`, `node N`).
    pub gpus_from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    /// The day pvegpu's tables were last checked against their sources (`YYYY-MM-DD`):
    /// every answer says how old its facts are.
    pub snapshot: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus_from: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub recommendation: Option<Recommendation>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<ReleaseRange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_check: Option<ReleaseCheck>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelAnswer>,
}

/// The answer, with driver lifecycles judged at the tables' snapshot date.
pub fn answer(t: &Tables, ask: &Ask) -> Result<Answer, CompatError> {
    answer_at(t, ask, None)
}

/// The answer, with driver lifecycles judged at the later of the snapshot date and `today`
/// (`YYYY-MM-DD`, read by the command layer: this function reads no clock).
pub fn answer_at(t: &Tables, ask: &Ask, today: Option<&str>) -> Result<Answer, CompatError> {
    let recommendation = ask
        .request
        .as_ref()
        .map(|r| recommend_at(t, r, today))
        .transpose()?;
    let release_check = match (&ask.release, &recommendation) {
        (Some(r), Some(rec)) => Some(check_release(t, rec, r, &ask.models)?),
        (Some(_), None) => return Err(QuestionError::ReleaseNeedsGpus.into()),
        (None, _) => None,
    };
    Ok(Answer {
        snapshot: t.snapshot.clone(),
        gpus_from: ask.gpus_from.clone(),
        ranges: recommendation
            .as_ref()
            .map(|r| questions::ranges(t, r))
            .unwrap_or_default(),
        models: questions::models(t, recommendation.as_ref(), &ask.models),
        release_check,
        recommendation,
    })
}

pub fn text(a: &Answer) -> String {
    let mut o = String::new();
    let _ = write_text(&mut o, a);
    o
}

fn write_text(o: &mut String, a: &Answer) -> std::fmt::Result {
    writeln!(
        o,
        "Data snapshot {} (the day pvegpu's tables were last checked against their sources)",
        a.snapshot
    )?;
    if let Some(from) = &a.gpus_from {
        writeln!(o, "\nGPUs from {from}")?;
    }
    if let Some(r) = &a.recommendation {
        o.push('\n');
        o.push_str(&render::text(r));
    }
    if !a.ranges.is_empty() {
        ranges(o, &a.ranges)?;
    }
    if let Some(c) = &a.release_check {
        release_check(o, c)?;
    }
    for m in &a.models {
        model(o, m)?;
    }
    Ok(())
}

fn or_none(r: &Option<String>) -> &str {
    r.as_deref().unwrap_or("none")
}

fn ranges(o: &mut String, ranges: &[ReleaseRange]) -> std::fmt::Result {
    writeln!(o, "\nTriton releases per backend (oldest – newest)")?;
    for r in ranges {
        writeln!(
            o,
            "  {:<9} for these GPUs {} – {}; on the assumed driver {} – {}",
            r.backend.to_string(),
            or_none(&r.oldest),
            or_none(&r.newest),
            or_none(&r.oldest_on_driver),
            or_none(&r.newest_on_driver)
        )?;
    }
    Ok(())
}

fn release_check(o: &mut String, c: &ReleaseCheck) -> std::fmt::Result {
    let native = c
        .native_driver
        .as_ref()
        .map(|d| format!(", natively on driver {d} or newer"))
        .unwrap_or_default();
    writeln!(
        o,
        "\nTriton {} ({}): CUDA {}{native}",
        c.release, c.image, c.cuda
    )?;
    for b in &c.backends {
        writeln!(o, "  {:<9} {}", b.backend.to_string(), b.fit.as_str())?;
        for w in &b.why {
            writeln!(o, "            {w}")?;
        }
        if let Some(r) = &b.recommended {
            writeln!(o, "            pvegpu recommends {r} for this backend")?;
        }
    }
    Ok(())
}

fn model(o: &mut String, m: &ModelAnswer) -> std::fmt::Result {
    let producer = m
        .model
        .producer
        .as_deref()
        .map(|p| format!(", from {p}"))
        .unwrap_or_default();
    writeln!(
        o,
        "\nModel {}: IR version {}, opset {}{producer}",
        m.model.path, m.model.ir_version, m.model.opset
    )?;
    match (&m.first_loading, &m.last_loading) {
        (Some(a), Some(b)) => writeln!(
            o,
            "  the ONNX Runtime backend loads it in Triton {a} – {b} (the other backends do not read .onnx files)"
        )?,
        _ => writeln!(
            o,
            "  no Triton release in the tables loads it: re-export it at a lower IR version or opset"
        )?,
    }
    if !m.unknown.is_empty() {
        writeln!(
            o,
            "  unknown for {} (their ONNX Runtime limits are not in the data)",
            m.unknown.join(", ")
        )?;
    }
    if let Some(r) = &m.recommended {
        match &r.why_not {
            None => writeln!(o, "  the recommended {} loads it", r.release)?,
            Some(why) => writeln!(o, "  the recommended {} does not: {why}", r.release)?,
        }
    }
    if m.recommended.is_some() {
        match (&m.oldest_for_gpus, &m.newest_for_gpus) {
            (Some(a), Some(b)) => writeln!(
                o,
                "  releases that serve ONNX on these GPUs and load it: {a} – {b}"
            )?,
            _ => writeln!(
                o,
                "  no release both serves ONNX on these GPUs and loads it"
            )?,
        }
        match (&m.newest_fitting, &m.newest_for_gpus) {
            (Some(n), _) => writeln!(o, "  newest of those the driver runs natively: {n}")?,
            (None, Some(_)) => writeln!(
                o,
                "  none of those runs natively on the assumed driver: install a newer driver (see the Triton lines above)"
            )?,
            (None, None) => {}
        }
    }
    Ok(())
}

//! Tensor and pipeline parallel sizes, read from the command, entrypoint or environment,
//! against the GPUs the service's processes see.

use super::visible::CudaView;
use super::{EnvVar, Grant, Loc, Out, RESERVE_FIX, loc, range};
use crate::lint::compose::model::{CommandLine, Service};
use crate::lint::compose::parallel::{self, Degree, Kind, Segment};
use crate::lint::compose::values::{IdKind, gpus_word, id_kind};
use crate::lint::compose::{Rule, Severity};
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

fn command_segments(line: Option<&Spanned<CommandLine>>) -> (Vec<Segment>, bool) {
    let Some(c) = line else {
        return (Vec::new(), false);
    };
    let at = loc(c);
    match &c.value {
        CommandLine::Shell(s) => (
            vec![Segment {
                text: s.clone(),
                line: at.line,
                merged_at: at.merged_at,
            }],
            true,
        ),
        CommandLine::Exec(items) => (
            items
                .iter()
                .map(|i| {
                    let at = loc(i);
                    Segment {
                        text: i.value.0.clone(),
                        line: at.line,
                        merged_at: at.merged_at,
                    }
                })
                .collect(),
            false,
        ),
    }
}

/// A string value may span lines (`command: >` and a folded block); point at the line
/// that holds the flag itself.
fn refine_line(text: &str, start: usize, value: &str, needle: &str) -> usize {
    let span = value.split_whitespace().count() + 2;
    text.lines()
        .enumerate()
        .skip(start.saturating_sub(1))
        .take(span)
        .find(|(_, l)| l.contains(needle))
        .map_or(start, |(i, _)| i + 1)
}

fn degree_from(
    out: &Out,
    kind: Kind,
    svc: &Service,
    env: &BTreeMap<String, EnvVar>,
) -> Option<Degree> {
    let lookup = |var: &str| env.get(var).and_then(|e| e.raw.clone());
    for c in [&svc.command, &svc.entrypoint] {
        let (segments, shell) = command_segments(c.as_ref());
        if let Some(mut d) = parallel::find(kind, &segments, &lookup) {
            if shell {
                let needle = d.written.split([' ', '=']).next().unwrap_or("").to_string();
                d.line = refine_line(out.text, d.line, &segments[0].text, &needle);
            }
            return Some(d);
        }
    }
    env.values()
        .filter(|e| parallel::env_key_kind(&e.key) == Some(kind))
        .find_map(|e| {
            let raw = e.raw.as_ref()?;
            let (n, note) = parallel::resolve(raw, &lookup)?;
            Some(Degree {
                n,
                written: format!("{}={raw}", e.key),
                note,
                line: e.at.line,
                merged_at: e.at.merged_at,
            })
        })
}

/// A parallel size an engine can take: 1 or more, and not beyond u32 (no machine has more
/// GPUs than that; larger values do not fit the engines' integer arguments).
fn valid_size(n: u64) -> bool {
    (1..=u64::from(u32::MAX)).contains(&n)
}

pub(super) fn parallelism(
    out: &mut Out,
    name: &str,
    svc: &Service,
    env: &BTreeMap<String, EnvVar>,
    grant: &Grant,
    why: &str,
    cuda: Option<&CudaView>,
) {
    let tp = degree_from(out, Kind::Tensor, svc, env);
    let pp = degree_from(out, Kind::Pipeline, svc, env);
    let Some(main) = tp.clone().or_else(|| pp.clone()) else {
        return;
    };
    if let Some(bad) = [&tp, &pp].into_iter().flatten().find(|d| !valid_size(d.n)) {
        out.push(
            name,
            Loc {
                line: bad.line,
                merged_at: bad.merged_at,
            },
            Severity::Error,
            Rule::InvalidValue,
            format!(
                "`{}` is not a parallel size: it must be a whole number of GPUs from 1; the engine refuses it at startup",
                crate::core::input::clip(&bad.written)
            ),
            "write the number of GPUs to split the model over (1 for none)".into(),
        );
        return;
    }
    let need = tp
        .as_ref()
        .map_or(1, |d| d.n)
        .saturating_mul(pp.as_ref().map_or(1, |d| d.n));
    if need <= 1 {
        return;
    }
    let at = Loc {
        line: main.line,
        merged_at: main.merged_at,
    };
    let asked = match (&tp, &pp) {
        (Some(t), Some(p)) => format!(
            "`{}` with `{}` needs {need} GPUs (tensor × pipeline)",
            t.written, p.written
        ),
        _ => format!("`{}` needs {need} GPUs", main.written),
    };
    let notes: Vec<String> = [&tp, &pp]
        .into_iter()
        .flatten()
        .filter_map(|d| d.note.clone())
        .collect();
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    };
    if matches!(grant, Grant::None) {
        out.push(
            name,
            at,
            Severity::Warning,
            Rule::NoGpuRequest,
            format!("{asked}{notes}, but this service reserves no GPU and does not set `runtime: nvidia`: it gets none unless the Docker daemon's default runtime is nvidia"),
            RESERVE_FIX.into(),
        );
        return;
    }
    // What limits the GPUs the processes see: the reservation, MIG, or CUDA_VISIBLE_DEVICES.
    let mut seen: Option<(usize, String, bool)> = match grant {
        Grant::Ids { ids, .. }
            if !ids.is_empty() && ids.iter().all(|i| id_kind(i) == IdKind::Mig) =>
        {
            Some((
                1,
                "its GPUs are MIG devices, and a CUDA process enumerates one MIG device only"
                    .into(),
                false,
            ))
        }
        Grant::Ids { ids, .. } => Some((
            ids.len(),
            format!("it reserves {} {} ({why})", ids.len(), gpus_word(ids.len())),
            false,
        )),
        _ => None,
    };
    if let Some(c) = cuda
        && seen.as_ref().is_none_or(|(n, _, _)| c.visible < *n)
    {
        seen = Some((c.visible, c.because.clone(), true));
    }
    let Some((visible, because, by_cuda)) = seen else {
        return;
    };
    // No GPU at all is the CUDA_VISIBLE_DEVICES error already reported.
    if need as usize <= visible || visible == 0 {
        return;
    }
    let fix = if by_cuda {
        format!(
            "delete CUDA_VISIBLE_DEVICES or list {need} container GPUs in it ({}), or lower the parallel size to {visible}",
            range(need as usize)
        )
    } else {
        format!(
            "reserve {need} GPUs (`device_ids` with {need} UUIDs, or `count: {need}`), or lower the parallel size to {visible}"
        )
    };
    out.push(
        name,
        at,
        Severity::Error,
        Rule::TensorParallel,
        format!(
            "{asked}{notes}, but the service's processes see {visible}: {because}. The engine stops at startup when the parallel size exceeds the GPUs it sees"
        ),
        fix,
    );
}

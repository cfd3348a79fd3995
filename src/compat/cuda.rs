//! The CUDA toolkits that build for every GPU of a set, and the newest the driver runs.

use super::reason::Reason;
use super::tables::{Tables, Toolkit};
use super::version::{Cc, CudaVersion, DriverVersion};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CudaRange {
    /// Oldest and newest toolkit that compile for every GPU; None when none does.
    pub oldest: Option<CudaVersion>,
    pub newest: Option<CudaVersion>,
    /// The newest of those the driver runs natively.
    pub newest_native: Option<CudaVersion>,
}

/// Does `driver` run programs built with this toolkit without compatibility layers?
pub fn runs_natively(t: &Tables, k: &Toolkit, driver: &DriverVersion) -> bool {
    let Some(branch) = t.branch(driver.branch()) else {
        return false;
    };
    k.version.minor_key() <= branch.max_cuda.minor_key() && driver.at_least(&k.min_driver)
}

pub fn cuda_range(t: &Tables, ccs: &[Cc], driver: &DriverVersion) -> (CudaRange, Vec<Reason>) {
    let fits = |k: &&Toolkit| ccs.iter().all(|cc| k.builds_for(*cc));
    let ok: Vec<&Toolkit> = t.cuda.iter().filter(fits).collect();
    let list = ccs
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut reasons = Vec::new();
    let (Some(oldest), Some(newest)) = (ok.first(), ok.last()) else {
        let first = t.cuda.first();
        let last = t.cuda.last();
        reasons.push(Reason::new(
            format!(
                "no CUDA toolkit in the table ({}–{}) builds for CC {list}",
                first.map(|k| k.version.to_string()).unwrap_or_default(),
                last.map(|k| k.version.to_string()).unwrap_or_default(),
            ),
            false,
            first.into_iter().chain(last).flat_map(|k| k.source.iter()),
        ));
        return (
            CudaRange {
                oldest: None,
                newest: None,
                newest_native: None,
            },
            reasons,
        );
    };
    let after = t.cuda.iter().find(|k| k.version > newest.version);
    let before = t.cuda.iter().rev().find(|k| k.version < oldest.version);
    let mut text = format!(
        "CUDA {}–{} build for CC {list}",
        oldest.version, newest.version
    );
    if let Some(a) = after {
        text.push_str(&format!(
            "; {} does not (it builds for CC {}–{})",
            a.version, a.cc_min, a.cc_max
        ));
    }
    if let Some(b) = before {
        text.push_str(&format!(
            "; {} does not (it builds for CC {}–{})",
            b.version, b.cc_min, b.cc_max
        ));
    }
    let edges = [Some(*oldest), Some(*newest), after, before];
    let inferred = edges.iter().flatten().any(|k| {
        k.inferred
            .iter()
            .any(|i| i.contains("cc") || i.contains("sm"))
    });
    reasons.push(Reason::new(
        text,
        inferred,
        edges.iter().flatten().flat_map(|k| k.source.iter()),
    ));
    let native = ok.iter().rev().find(|k| runs_natively(t, k, driver));
    if let Some(n) = native {
        reasons.push(Reason::new(
            format!(
                "driver {driver} runs toolkits up to CUDA {} natively ({} needs {})",
                n.version, n.version, n.min_driver
            ),
            false,
            n.source.iter(),
        ));
    }
    (
        CudaRange {
            oldest: Some(oldest.version.clone()),
            newest: Some(newest.version.clone()),
            newest_native: native.map(|k| k.version.clone()),
        },
        reasons,
    )
}

//! Does an ONNX model load in a Triton release's ONNX Runtime? A model loads when its
//! `ir_version` and its ai.onnx opset import are at most the runtime's maxima (onnx.json).

use super::tables::{Tables, TritonRelease, tables};
use serde::Serialize;
use std::fmt;

/// Which limit a model exceeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    IrVersion,
    Opset,
    IrVersionAndOpset,
    /// The release's ONNX Runtime limits are not in the data.
    Unknown,
}

/// The `onnx` Python release to export with, and the opset to ask for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Export {
    /// The newest `onnx` release whose IR version the runtime loads.
    pub onnx: String,
    pub ir_version: u32,
    pub max_opset: u32,
}

/// A model that does not load, with the limit it exceeds and the ways out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct Misfit {
    pub release: String,
    pub onnxruntime: Option<String>,
    pub ir_version: u32,
    pub opset: u32,
    pub max_ir_version: Option<u32>,
    pub max_opset: Option<u32>,
    pub limit: Limit,
    /// The first release whose ONNX Runtime loads the model (it says nothing about the GPUs:
    /// check the release against `pvegpu compat`).
    pub loads_from: Option<String>,
    /// Re-export within the release's limits.
    pub export: Option<Box<Export>>,
}

impl fmt::Display for Misfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let model = format!("IR version {}, opset {}", self.ir_version, self.opset);
        let (Some(ort), Some(ir), Some(opset)) =
            (&self.onnxruntime, self.max_ir_version, self.max_opset)
        else {
            return write!(
                f,
                "the ONNX Runtime limits of Triton {} are not in pvegpu's tables, so a model ({model}) cannot be checked against it; choose a release with a known ONNX Runtime",
                self.release
            );
        };
        let over = match self.limit {
            Limit::IrVersion => format!("IR version {} > {ir}", self.ir_version),
            Limit::Opset => format!("opset {} > {opset}", self.opset),
            _ => format!(
                "IR version {} > {ir} and opset {} > {opset}",
                self.ir_version, self.opset
            ),
        };
        write!(
            f,
            "the model ({model}) does not load in Triton {} (ONNX Runtime {ort} loads IR version <= {ir}, opset <= {opset}): {over}",
            self.release
        )?;
        let mut fixes = Vec::new();
        if let Some(r) = &self.loads_from {
            fixes.push(format!("use Triton {r} or newer"));
        }
        if let Some(e) = &self.export {
            fixes.push(format!(
                "re-export it with onnx <= {} (writes IR version {}) at opset <= {}",
                e.onnx, e.ir_version, e.max_opset
            ));
        }
        if !fixes.is_empty() {
            write!(f, "; {}", fixes.join(", or "))?;
        }
        Ok(())
    }
}

/// Check a model's IR version and ai.onnx opset against `release`'s ONNX Runtime.
pub fn model_fits(release: &TritonRelease, ir_version: u32, opset: u32) -> Result<(), Misfit> {
    model_fits_in(tables(), release, ir_version, opset)
}

/// As `model_fits`, against explicit tables.
pub fn model_fits_in(
    t: &Tables,
    release: &TritonRelease,
    ir_version: u32,
    opset: u32,
) -> Result<(), Misfit> {
    let (max_ir, max_opset) = (release.ort_max_ir, release.ort_max_opset);
    let limit = match (max_ir, max_opset) {
        (Some(i), Some(o)) => match (ir_version > i, opset > o) {
            (false, false) => return Ok(()),
            (true, false) => Limit::IrVersion,
            (false, true) => Limit::Opset,
            (true, true) => Limit::IrVersionAndOpset,
        },
        _ => Limit::Unknown,
    };
    let loads_from = t
        .triton
        .iter()
        .find(|r| {
            r.ort_max_ir.is_some_and(|i| ir_version <= i)
                && r.ort_max_opset.is_some_and(|o| opset <= o)
        })
        .map(|r| r.release.clone());
    let export = match (max_ir, max_opset) {
        (Some(i), Some(o)) => t.onnx.iter().rev().find(|x| x.ir <= i).map(|x| {
            Box::new(Export {
                onnx: x.version.clone(),
                ir_version: x.ir,
                max_opset: o.min(x.max_opset),
            })
        }),
        _ => None,
    };
    Err(Misfit {
        release: release.release.clone(),
        onnxruntime: release.ort.clone(),
        ir_version,
        opset,
        max_ir_version: max_ir,
        max_opset,
        limit,
        loads_from,
        export,
    })
}

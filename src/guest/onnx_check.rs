//! Does every ONNX model of a Triton model repository load in the chosen release's ONNX
//! Runtime? The header is decoded with prost from hand-declared messages holding only the
//! fields pvegpu reads (ModelProto 1, 2 and 8; OperatorSetIdProto 1 and 2); prost skips every
//! other field, the graph and its weights included.
//!
//! The repository lives on the guest, so the check takes bytes (the gatherer fetches them);
//! [`scan_dir`] does the same for a local directory.

use super::facts::OnnxHeader;
use crate::compat::onnx::{Misfit, model_fits};
use crate::compat::tables::TritonRelease;
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// onnx.proto `ModelProto`, only the fields pvegpu reads.
#[derive(Clone, PartialEq, prost::Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(string, tag = "2")]
    producer_name: String,
    #[prost(message, repeated, tag = "8")]
    opset_import: Vec<OperatorSetIdProto>,
}

/// onnx.proto `OperatorSetIdProto`.
#[derive(Clone, PartialEq, prost::Message)]
struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    domain: String,
    #[prost(int64, tag = "2")]
    version: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum OnnxCheckError {
    #[error("{path} is not an ONNX model: {source}")]
    Decode {
        path: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error(
        "{path} ends inside one of its own fields: the file is cut short (an interrupted copy, a full disk); copy the model again"
    )]
    CutShort { path: String },
    #[error(
        "{path} has no ir_version; it is not an ONNX ModelProto (a file saved with `torch.save` or a graph without its model wrapper?)"
    )]
    NoIrVersion { path: String },
    #[error(
        "{path} imports no ai.onnx opset, so pvegpu cannot check it against ONNX Runtime's opset limit; re-export it with an explicit opset"
    )]
    NoOpset { path: String },
    #[error(
        "the model repository {path} does not exist; create it (`<repo>/<model>/<version>/model.onnx`) or fix `model_repository` in [vm.guest.triton]"
    )]
    MissingRepository { path: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Read a model's IR version, ai.onnx opset and producer from its bytes.
pub fn read_header(path: &str, bytes: &[u8]) -> Result<OnnxHeader, OnnxCheckError> {
    let path = path.to_string();
    let m = <ModelProto as prost::Message>::decode(bytes).map_err(|source| {
        if ends_inside_a_field(bytes) {
            OnnxCheckError::CutShort { path: path.clone() }
        } else {
            OnnxCheckError::Decode {
                path: path.clone(),
                source,
            }
        }
    })?;
    if m.ir_version <= 0 {
        return Err(OnnxCheckError::NoIrVersion {
            path: path.to_string(),
        });
    }
    // The default domain is spelled "" or "ai.onnx"; other domains (ai.onnx.ml, custom ops)
    // have their own version lines and do not bound what ONNX Runtime's opset limit means.
    let opset = m
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max()
        .filter(|v| *v > 0)
        .ok_or_else(|| OnnxCheckError::NoOpset {
            path: path.to_string(),
        })?;
    Ok(OnnxHeader {
        path,
        ir_version: u32::try_from(m.ir_version).unwrap_or(u32::MAX),
        opset: u32::try_from(opset).unwrap_or(u32::MAX),
        producer: Some(m.producer_name).filter(|p| !p.is_empty()),
    })
}

/// A protobuf varint at `pos`, moving `pos` past it; None where the bytes end first.
fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// One top-level protobuf field of a model's bytes, read from its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    /// Field `number` ends at byte `end` (which may lie past the bytes at hand).
    At { number: u64, end: u64 },
    /// The bytes end inside the field's key or length.
    Cut,
    /// A wire type ONNX never writes (groups, or not protobuf at all).
    Foreign,
}

/// The field that starts at `pos`; `pos` is left after its key and length.
pub(crate) fn next_field(bytes: &[u8], pos: &mut usize) -> Field {
    let Some(key) = varint(bytes, pos) else {
        return Field::Cut;
    };
    let end = match key & 7 {
        0 => match varint(bytes, pos) {
            Some(_) => *pos as u64,
            None => return Field::Cut,
        },
        1 => *pos as u64 + 8,
        5 => *pos as u64 + 4,
        2 => match varint(bytes, pos) {
            Some(len) => (*pos as u64).saturating_add(len),
            None => return Field::Cut,
        },
        _ => return Field::Foreign,
    };
    Field::At {
        number: key >> 3,
        end,
    }
}

/// The top-level fields run past the end of `bytes`: a model cut short, not another format.
fn ends_inside_a_field(bytes: &[u8]) -> bool {
    let mut pos = 0usize;
    while pos < bytes.len() {
        match next_field(bytes, &mut pos) {
            Field::Cut => return true,
            Field::Foreign => return false,
            Field::At { end, .. } if end > bytes.len() as u64 => return true,
            Field::At { end, .. } => pos = end as usize,
        }
    }
    false
}

/// A model that will not load, named by its place in the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelMisfit {
    /// `<model>/<version>/<file>` under the repository (the path when it is elsewhere).
    pub model: String,
    pub misfit: Misfit,
}

impl fmt::Display for ModelMisfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "model {}: {}", self.model, self.misfit)
    }
}

/// The model's name relative to the repository: `price_tag_detection/1/model.onnx`.
pub fn model_name(repository: &str, path: &str) -> String {
    path.strip_prefix(repository.trim_end_matches('/'))
        .map(|r| r.trim_start_matches('/').to_string())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| path.to_string())
}

/// Check every model against `release`; all misfits, in the order given.
pub fn check(repository: &str, models: &[OnnxHeader], release: &TritonRelease) -> Vec<ModelMisfit> {
    models
        .iter()
        .filter_map(|h| {
            model_fits(release, h.ir_version, h.opset)
                .err()
                .map(|misfit| ModelMisfit {
                    model: model_name(repository, &h.path),
                    misfit,
                })
        })
        .collect()
}

/// Every `*.onnx` at `<repo>/<model>/<version>/` of a local directory, read and decoded.
pub fn scan_dir(repo: &Path) -> Result<Vec<OnnxHeader>, OnnxCheckError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| OnnxCheckError::Io { path, source }
    };
    if !repo.is_dir() {
        return Err(OnnxCheckError::MissingRepository {
            path: repo.display().to_string(),
        });
    }
    let mut files: Vec<PathBuf> = Vec::new();
    for model in std::fs::read_dir(repo).map_err(io(repo))? {
        let model = model.map_err(io(repo))?.path();
        if !model.is_dir() {
            continue;
        }
        for version in std::fs::read_dir(&model).map_err(io(&model))? {
            let version = version.map_err(io(&model))?.path();
            if !version.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(&version).map_err(io(&version))? {
                let f = f.map_err(io(&version))?.path();
                if f.extension().is_some_and(|e| e == "onnx") && f.is_file() {
                    files.push(f);
                }
            }
        }
    }
    files.sort();
    files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).map_err(io(f))?;
            read_header(&f.display().to_string(), &bytes)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prost_skips_fields_it_was_not_told_about() {
        // ir_version 7, producer "t", a graph (field 7) pvegpu does not declare, then the
        // opsets {"" 13} and {"ai.onnx.ml" 3}.
        let mut b = vec![0x08, 7, 0x12, 1, b't', 0x3a, 2, 0x0a, 0];
        b.extend([0x42, 4, 0x0a, 0, 0x10, 13]);
        b.extend([0x42, 14, 0x0a, 10]);
        b.extend(b"ai.onnx.ml");
        b.extend([0x10, 3]);
        let h = read_header("m.onnx", &b).unwrap();
        assert_eq!((h.ir_version, h.opset), (7, 13));
        assert_eq!(h.producer.as_deref(), Some("t"));
    }

    #[test]
    fn garbage_and_empty_files_are_refused_with_the_path() {
        let e = read_header("x/1/model.onnx", &[0xff, 0xff, 0xff]).unwrap_err();
        assert!(e.to_string().contains("x/1/model.onnx"), "{e}");
        assert!(matches!(
            read_header("e.onnx", &[]),
            Err(OnnxCheckError::NoIrVersion { .. })
        ));
    }
}

//! The compatibility knowledge base and the recommender behind `pvegpu compat`.
//!
//! Facts: `tables` (GPU ids, driver branches, distribution packages, CUDA toolkits, Triton
//! releases, ONNX Runtime limits), embedded from `data/compat/*.json`, which
//! `data/compat/build.py` builds from the shared knowledge base; every record keeps its
//! citations and what in it was inferred. Pure functions: `gpu` (which card a spec names),
//! `driver` (branch window, kernel module flavour, package), `cuda` (toolkit range),
//! `triton` (release per backend and how the driver runs it), `onnx` (does a model load),
//! `questions` (release ranges, one release judged, which releases load a model),
//! `answer` (all of one `pvegpu compat` run),
//! `recommend` (all of it, with reasons), `render` (the text), `support` (which ids each
//! branch's own lists name, and subsystem names), `module` (open or proprietary kernel
//! module), `lifecycle` (each branch's end of life, judged at the later of the tables'
//! snapshot and the day given), `known_bad` (Proxmox kernels and Container Toolkit releases
//! known to break passthrough, DKMS builds or containers, which the host and guest planners
//! refuse or note with the remedy).

pub mod answer;
pub mod cuda;
pub mod distro;
pub mod driver;
pub mod gpu;
pub mod known_bad;
pub mod lifecycle;
pub mod module;
pub mod onnx;
pub mod questions;
pub mod reason;
pub mod recommend;
pub mod render;
pub mod support;
pub mod tables;
pub mod triton;
pub mod version;

pub use answer::{Answer, Ask};
pub use distro::Distro;
pub use onnx::{Misfit, model_fits};
pub use recommend::{Recommendation, Request, recommend, recommend_at};
pub use tables::{Tables, tables};
pub use triton::Backend;

#[derive(Debug, thiserror::Error)]
pub enum CompatError {
    #[error(transparent)]
    Gpu(#[from] gpu::GpuError),
    #[error(transparent)]
    Driver(#[from] driver::DriverError),
    #[error(transparent)]
    Distro(#[from] distro::DistroError),
    #[error(transparent)]
    Backend(#[from] triton::BackendError),
    #[error(transparent)]
    Version(#[from] version::VersionError),
    #[error(transparent)]
    Question(#[from] questions::QuestionError),
    #[error("could not write the recommendation as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl crate::core::error::Hint for CompatError {
    fn hint(&self) -> Option<String> {
        match self {
            CompatError::Question(q) => crate::core::error::Hint::hint(q),
            _ => None,
        }
    }
}

/// The recommendation alone for GPU specs, as `pvegpu compat GPU... [--distro] [--driver]
/// [--backend]` prints it (with the release ranges), as text or pretty JSON; driver
/// lifecycles are judged at the tables' snapshot date, so the answer depends on nothing else.
pub fn compat_command(
    gpus: &[String],
    distro: &str,
    driver: Option<&str>,
    backends: &[String],
    json: bool,
) -> Result<String, CompatError> {
    let request = Request {
        gpus: gpus.to_vec(),
        distro: distro.parse()?,
        driver: driver.map(str::parse).transpose()?,
        backends: backends
            .iter()
            .map(|b| b.parse())
            .collect::<Result<_, _>>()?,
    };
    let ask = Ask {
        request: Some(request),
        ..Ask::default()
    };
    answer_command(&ask, None, json)
}

/// What `pvegpu compat` prints: the answer as text, or as pretty JSON with `json`, driver
/// lifecycles judged at the later of the snapshot date and `today` (`YYYY-MM-DD`).
/// Offline and pure: it reads only the embedded tables and its arguments.
pub fn answer_command(ask: &Ask, today: Option<&str>, json: bool) -> Result<String, CompatError> {
    let a = answer::answer_at(tables(), ask, today)?;
    if json {
        let mut value = serde_json::to_value(&a)?;
        if let Some(map) = value.as_object_mut() {
            map.insert(
                "format_version".into(),
                crate::core::JSON_FORMAT_VERSION.into(),
            );
        }
        Ok(serde_json::to_string_pretty(&value)? + "\n")
    } else {
        Ok(answer::text(&a))
    }
}

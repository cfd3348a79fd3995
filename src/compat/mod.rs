//! The compatibility knowledge base and the recommender behind `pvegpu compat`.
//!
//! Facts: `tables` (GPU ids, driver branches, distribution packages, CUDA toolkits, Triton
//! releases, ONNX Runtime limits), embedded from `data/compat/*.json`, which
//! `data/compat/build.py` builds from the shared knowledge base; every record keeps its
//! citations and what in it was inferred. Pure functions: `gpu` (which card a spec names),
//! `driver` (branch window, kernel module flavour, package), `cuda` (toolkit range),
//! `triton` (release per backend and how the driver runs it), `onnx` (does a model load),
//! `recommend` (all of it, with reasons), `render` (the text).

pub mod cuda;
pub mod distro;
pub mod driver;
pub mod gpu;
pub mod known_bad;
pub mod onnx;
pub mod reason;
pub mod recommend;
pub mod render;
pub mod tables;
pub mod triton;
pub mod version;

pub use distro::Distro;
pub use onnx::{Misfit, model_fits};
pub use recommend::{Recommendation, Request, recommend};
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
    #[error("could not write the recommendation as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// What `pvegpu compat` prints: the recommendation as text, or as pretty JSON with `json`.
/// Offline and pure: it reads only the embedded tables.
///
/// Intended clap arguments (for `cli.rs`):
///
/// ```text
/// /// Choose driver, CUDA and Triton for a set of GPUs, offline, from pvegpu's tables
/// Compat {
///     /// GPUs: PCI ids as `lspci -nn` prints them (`10de:1b80`), names
///     /// (`"GeForce GTX 1080"`), or `id=name`; repeat for each card
///     #[arg(required = true, num_args = 1.., value_name = "GPU")]
///     gpus: Vec<String>,
///     /// The guest distribution
///     #[arg(long, default_value = "debian-12",
///           value_parser = ["debian-12", "debian-13", "ubuntu-22.04", "ubuntu-24.04"])]
///     distro: String,
///     /// The driver installed in the guest, as `nvidia-smi` prints it (`535.261.03`) or a
///     /// branch (`535`)
///     #[arg(long)]
///     driver: Option<String>,
///     /// Backends served (default: all)
///     #[arg(long = "backend", value_delimiter = ',',
///           value_parser = ["onnx", "tensorrt", "python"])]
///     backends: Vec<String>,
///     /// Print JSON
///     #[arg(long)]
///     json: bool,
/// }
/// ```
///
/// and in `commands.rs`: `print!("{}", compat::compat_command(&gpus, &distro,
/// driver.as_deref(), &backends, json)?)`. Errors say what to do; exit status 1.
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
    let rec = recommend(tables(), &request)?;
    if json {
        let mut value = serde_json::to_value(&rec)?;
        if let Some(map) = value.as_object_mut() {
            map.insert(
                "format_version".into(),
                crate::core::JSON_FORMAT_VERSION.into(),
            );
        }
        Ok(serde_json::to_string_pretty(&value)? + "\n")
    } else {
        Ok(render::text(&rec))
    }
}

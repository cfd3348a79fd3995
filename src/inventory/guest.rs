//! What the inventory asks of a guest (`[vm.guest]`): the container runtime, the CUDA toolkit
//! if wanted, and the Triton service. Versions are not chosen here: compat chooses them.

use crate::compat::Backend;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GuestSpec {
    /// SSH destination of the guest as for ssh(1). Left out: `<cloud_init.user>@<address>`,
    /// the address being cloud-init's static one, else what the guest agent reports.
    #[serde(default)]
    pub ssh: Option<String>,
    /// An ssh_config file for the guest (relative to the inventory); left out, the node's.
    #[serde(default)]
    pub ssh_config: Option<PathBuf>,
    #[serde(default)]
    pub runtime: Runtime,
    /// `true` (the newest toolkit the GPUs and driver run), `false`/absent (none), or a
    /// version such as `"12.2"`.
    #[serde(default)]
    pub cuda_toolkit: CudaToolkit,
    #[serde(default)]
    pub triton: Option<TritonSpec>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    #[default]
    Docker,
    Podman,
}

impl Runtime {
    pub fn command(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum CudaToolkit {
    Wanted(bool),
    Version(String),
}

impl Default for CudaToolkit {
    fn default() -> Self {
        CudaToolkit::Wanted(false)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TritonSpec {
    /// The model repository on the guest (`<repo>/<model>/<version>/model.onnx`).
    pub model_repository: String,
    #[serde(deserialize_with = "backend", serialize_with = "backend_name")]
    pub backend: Backend,
    /// A Triton release (`"24.10"`) instead of the one compat recommends.
    #[serde(default)]
    pub release: Option<String>,
    #[serde(default = "http")]
    pub http_port: u16,
    #[serde(default = "grpc")]
    pub grpc_port: u16,
    #[serde(default = "metrics")]
    pub metrics_port: u16,
}

impl TritonSpec {
    /// The repository reaches the container as `-v REPO:/models:ro` in a systemd unit: an
    /// absolute path, and neither `:` nor `,` (the engine would split the mount there) nor a
    /// control character (a unit line cannot hold one).
    pub fn check(&self) -> Result<(), String> {
        let r = &self.model_repository;
        if !r.starts_with('/') || r.contains([':', ',']) || r.chars().any(char::is_control) {
            return Err(format!(
                "[vm.guest.triton] model_repository {r:?} must be an absolute path on the guest without `:`, `,` or control characters, e.g. \"/srv/triton/models\""
            ));
        }
        Ok(())
    }
}

fn http() -> u16 {
    8000
}
fn grpc() -> u16 {
    8001
}
fn metrics() -> u16 {
    8002
}

fn backend_name<S: Serializer>(b: &Backend, s: S) -> Result<S::Ok, S::Error> {
    b.serialize(s)
}

fn backend<'de, D: Deserializer<'de>>(d: D) -> Result<Backend, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_typos() {
        let s: GuestSpec =
            toml::from_str("[triton]\nmodel_repository = \"/srv/models\"\nbackend = \"onnx\"\n")
                .unwrap();
        assert_eq!(s.runtime, Runtime::Docker);
        assert_eq!(s.cuda_toolkit, CudaToolkit::Wanted(false));
        let t = s.triton.unwrap();
        assert_eq!(
            (t.http_port, t.grpc_port, t.metrics_port),
            (8000, 8001, 8002)
        );
        let v: GuestSpec =
            toml::from_str("cuda_toolkit = \"12.2\"\nruntime = \"podman\"\n").unwrap();
        assert_eq!(v.cuda_toolkit, CudaToolkit::Version("12.2".into()));
        assert!(toml::from_str::<GuestSpec>("runtim = \"docker\"\n").is_err());
        let e = toml::from_str::<GuestSpec>(
            "[triton]\nmodel_repository = \"/m\"\nbackend = \"tflite\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("onnx, tensorrt or python"), "{e}");
    }
}

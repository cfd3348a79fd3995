//! The guest phase: the NVIDIA stack inside the VM. Same pipeline as the host phase: one probe
//! run over SSH (`facts::PROBE`), pure parsers (`parse`), a pure planner walking
//! playbooks/guest.toml (`planner`), templates under templates/guest/. Versions are chosen by
//! `compat`; `onnx_check` reads the model repository's ONNX headers with prost and checks
//! them against the chosen Triton release. `gather`, `exec` and `phase` are the only parts
//! doing I/O (over any `transport::Remote`).

pub mod access;
pub mod exec;
pub mod facts;
pub mod gather;
pub mod onnx_check;
pub mod parse;
pub mod phase;
pub mod planner;
pub mod playbook;

pub use facts::{GuestFacts, GuestFactsError, OnnxHeader, onnx_section, probe_script};
pub use planner::{GuestError, GuestPlan, plan};

//! `pvegpu verify`: proves the chain host → VM → guest → container runtime → Triton, layer
//! by layer, as a [`report::Report`] of checks. Everything here is pure: each layer's
//! `checks` function takes what the command layer gathered (host facts, Proxmox API answers,
//! raw command output from the guest, HTTP answers from Triton) and returns
//! [`Check`]s, so every diagnosis is tested on recorded output.

pub mod collect;
pub mod compose;
pub mod export;
pub mod guest;
pub mod host;
pub mod podman;
pub mod report;
pub mod run;
pub mod runtime;
pub mod triton;
pub mod vm;

pub use crate::core::check::{Check, Layer, Status};
pub use report::{Report, Style};

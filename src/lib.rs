//! pvegpu: converge a Proxmox VE node for NVIDIA GPU passthrough. See ARCHITECTURE.md.

pub mod cli;
pub mod commands;
pub mod compat;
pub mod core;
pub mod facts;
pub mod guest;
pub mod host;
pub mod inventory;
pub mod lint;
pub mod pci;
pub mod pipeline;
pub mod pve;
pub mod templates;
pub mod transport;
pub mod verify;
pub mod vm;

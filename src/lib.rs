//! pvegpu: converge a Proxmox VE node for NVIDIA GPU passthrough. See ARCHITECTURE.md.

pub mod facts;
pub mod inventory;
pub mod pci;

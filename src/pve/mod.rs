//! Proxmox VE API client. The pure parts (requests, envelopes, auth, UPIDs, tasks, TLS
//! trust) are separate from [`client`], the only module doing I/O. [`Api`] is what the VM
//! phase needs of a client (one request method, and GET and task waiting built on it), so
//! tests can give it an in-memory cluster. Facts about the API are in
//! `../shared/pve-api/NOTES.md`.

pub mod api;
pub mod auth;
pub mod client;
pub mod envelope;
pub mod error;
pub mod request;
pub mod task;
pub mod tls;
pub mod upid;

pub use api::Api;
pub use auth::{ApiToken, Credentials, Ticket};
pub use client::{ClientOptions, PveClient, WaitOptions};
pub use error::{AuthKind, PveError, Retry};
pub use request::{ApiRequest, Method, Params};
pub use task::TaskState;
pub use tls::{Fingerprint, TlsTrust};
pub use upid::Upid;

//! Errors of the Proxmox VE API client. Every variant documents whether a retry is safe;
//! [`PveError::retry`] says the same in code, and its [`Hint`](crate::core::error::Hint) says
//! what to do.

use std::collections::BTreeMap;
use std::time::Duration;

/// Whether repeating the request that failed is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Nothing reached the server: repeat any request.
    Safe,
    /// The request may have reached the server: repeat only idempotent requests (GET).
    IfIdempotent,
    /// Repeating gives the same answer, or needs a person to fix something first.
    Never,
}

/// How the client authenticated, for the 401 hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// No credentials sent (login).
    None,
    /// `PVEAPIToken=...`.
    Token,
    /// `PVEAuthCookie` ticket from `POST /access/ticket`.
    Ticket,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PveError {
    /// Bad settings (fingerprint syntax, CA file, token id). Never retried: fix the inventory.
    #[error("invalid Proxmox API settings: {0}")]
    Config(String),

    /// A path segment that URL normalisation would collapse (`.`, `..`, empty): the request
    /// would reach another endpoint than the one named, so it is never sent.
    #[error(
        "refusing to send {method} {path}: the segment {segment:?} would be collapsed and reach another endpoint"
    )]
    DotSegment {
        method: String,
        path: String,
        segment: String,
    },

    /// DNS, TCP connect or refused connection: the request was never sent. Safe to retry.
    #[error("cannot connect to the Proxmox API at {url}: {detail}")]
    Connect { url: String, detail: String },

    /// The node's certificate does not have the pinned SHA-256 fingerprint. Never retried:
    /// either the pin is stale (certificate renewed) or someone is in between.
    #[error(
        "the TLS certificate of {host} does not match the pinned fingerprint: expected {expected}, got {actual}"
    )]
    FingerprintMismatch {
        host: String,
        expected: String,
        actual: String,
    },

    /// The certificate does not chain to the trusted roots (system roots or CA file). Never
    /// retried. `fingerprint` is the SHA-256 of the certificate the server presented.
    #[error("the TLS certificate of {host} is not trusted by {trust}: {detail}")]
    UntrustedCertificate {
        host: String,
        trust: String,
        detail: String,
        fingerprint: Option<String>,
    },

    /// The connection failed after the request may have been sent (timeout, reset). Retry
    /// only idempotent requests.
    #[error("{method} {path} failed and may have reached the server: {detail}")]
    Transport {
        method: String,
        path: String,
        detail: String,
    },

    /// 401: wrong or expired credentials, or a missing CSRF token. Never retried.
    #[error("{method} {path}: authentication failed ({message})")]
    Auth {
        method: String,
        path: String,
        message: String,
        kind: AuthKind,
    },

    /// The ticket is past its 2-hour lifetime; detected before sending. Never retried as is.
    #[error("the Proxmox ticket for {user} expired at unix time {expired_at}")]
    TicketExpired { user: String, expired_at: u64 },

    /// 403: a permission check failed. Never retried.
    #[error("{method} {path}: {message}")]
    Permission {
        method: String,
        path: String,
        message: String,
    },

    /// Unknown node name (596 or `no such cluster node`). Never retried.
    #[error("{method} {path}: unknown node '{node}' ({status} {message})")]
    UnknownNode {
        method: String,
        path: String,
        node: String,
        status: u16,
        message: String,
    },

    /// 595/596: the node answering could not proxy to the target node (offline, TLS between
    /// nodes). The request may or may not have run there: retry only idempotent requests.
    #[error("{method} {path}: the cluster could not reach the target node ({status} {message})")]
    NodeUnreachable {
        method: String,
        path: String,
        status: u16,
        message: String,
    },

    /// Any other API error: Proxmox's message and its per-parameter errors. Never retried.
    #[error("{method} {path}: {status} {message}{}", format_params(errors))]
    Api {
        method: String,
        path: String,
        status: u16,
        message: String,
        errors: BTreeMap<String, String>,
    },

    /// The reply is not the JSON envelope expected. Never retried.
    #[error("{method} {path}: unexpected reply: {detail}")]
    Decode {
        method: String,
        path: String,
        detail: String,
    },

    /// A task ended with an error exit status; `log` holds the last lines of its log.
    /// Never retried by the client (the task had effects).
    #[error("task {upid} failed: {exitstatus}{}", format_log(log))]
    TaskFailed {
        upid: String,
        exitstatus: String,
        log: Vec<String>,
    },

    /// The task was still running at the deadline. It keeps running on the node.
    #[error("task {upid} still running after {}s", waited.as_secs())]
    TaskTimeout { upid: String, waited: Duration },
}

fn format_params(errors: &BTreeMap<String, String>) -> String {
    if errors.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = errors
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.trim_end()))
        .collect();
    format!(" ({})", parts.join("; "))
}

fn format_log(log: &[String]) -> String {
    if log.is_empty() {
        return String::new();
    }
    format!("\n  task log:\n    {}", log.join("\n    "))
}

impl PveError {
    /// Whether repeating the failed request is safe; see [`Retry`].
    pub fn retry(&self) -> Retry {
        match self {
            PveError::Connect { .. } => Retry::Safe,
            PveError::Transport { .. } | PveError::NodeUnreachable { .. } => Retry::IfIdempotent,
            _ => Retry::Never,
        }
    }

    /// Whether a request of the given idempotence may be sent again after this error.
    pub fn may_retry(&self, idempotent: bool) -> bool {
        match self.retry() {
            Retry::Safe => true,
            Retry::IfIdempotent => idempotent,
            Retry::Never => false,
        }
    }
}

impl crate::core::error::Hint for PveError {
    /// What the user can do about it, where we know.
    fn hint(&self) -> Option<String> {
        match self {
            PveError::Auth {
                kind: AuthKind::Token,
                ..
            } => Some(
                "check the API token: the id must be USER@REALM!TOKENNAME (e.g. root@pam!pvegpu), the secret the UUID shown once at creation; the token must exist, not be expired, and its user must be enabled (Datacenter > Permissions > API Tokens)"
                    .into(),
            ),
            PveError::Auth {
                kind: AuthKind::Ticket,
                message,
                ..
            } if message.contains("csrf") => Some(
                "the CSRFPreventionToken was refused: log in again to get a fresh ticket and token"
                    .into(),
            ),
            PveError::Auth {
                kind: AuthKind::Ticket,
                ..
            } => Some(
                "the ticket is invalid or expired (tickets live 2 hours): log in again, or use an API token"
                    .into(),
            ),
            PveError::Auth {
                kind: AuthKind::None,
                ..
            } => Some("check the user name (USER@REALM, e.g. root@pam) and password".into()),
            PveError::TicketExpired { .. } => Some(
                "tickets live 2 hours: log in again, or use an API token, which does not expire this way"
                    .into(),
            ),
            PveError::FingerprintMismatch { actual, .. } => Some(format!(
                "if the node's certificate was renewed, check the new one on the node (`openssl x509 -noout -fingerprint -sha256 -in /etc/pve/local/pveproxy-ssl.pem`, or pve-ssl.pem) and, when it reads {actual}, put it in the inventory's [api] table as `fingerprint = \"{actual}\"` (`pvegpu fingerprint --node NAME` reads it over SSH); otherwise something is between you and the node"
            )),
            PveError::UntrustedCertificate {
                fingerprint: Some(fp),
                ..
            } => Some(format!(
                "Proxmox nodes usually have a self-signed certificate: pin it with `fingerprint = \"{fp}\"` in the inventory's [api] table after checking it on the node (`pvegpu fingerprint --node NAME` reads it over SSH), or give the cluster CA file: `ca_file = \"pve-root-ca.pem\"` (a copy of the node's /etc/pve/pve-root-ca.pem)"
            )),
            PveError::UntrustedCertificate { .. } => Some(
                "pin the node certificate's SHA-256 fingerprint (`fingerprint = \"AB:CD:...\"` in the inventory's [api] table; `pvegpu fingerprint --node NAME` reads it) or give the cluster CA file (`ca_file`, a copy of /etc/pve/pve-root-ca.pem)"
                    .into(),
            ),
            PveError::UnknownNode { node, .. } => Some(format!(
                "'{node}' is not a node of this cluster; node names are case-sensitive: `pvesh get /nodes` (or GET /nodes) lists them"
            )),
            PveError::NodeUnreachable { .. } => Some(
                "the node is probably offline or cannot be reached from the node you connected to; check `pvecm status`"
                    .into(),
            ),
            PveError::Connect { .. } => Some(
                "check the API address and port (8006) and that pveproxy runs on the node (`systemctl status pveproxy`)"
                    .into(),
            ),
            _ => None,
        }
    }
}

//! Errors the user can act on carry a hint; the top level prints them uv-style.

use std::fmt;

/// An error with what to do about it.
#[derive(Debug)]
pub struct Hinted {
    pub message: String,
    pub hint: String,
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Hinted {}

pub fn hinted(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hinted {
        message: message.into(),
        hint: hint.into(),
    })
}

/// `error: ...`, one `Caused by:` line per source, then any hints found along the chain.
pub fn render(err: &anyhow::Error) -> String {
    let mut out = format!("error: {err}\n");
    let mut hints = Vec::new();
    for (i, cause) in err.chain().enumerate() {
        if i > 0 {
            out.push_str(&format!("  Caused by: {cause}\n"));
        }
        if let Some(h) = cause.downcast_ref::<Hinted>() {
            hints.push(h.hint.clone());
        } else if let Some(s) = cause.downcast_ref::<crate::transport::ssh::SshError>() {
            hints.extend(s.hint());
        } else if let Some(l) = cause.downcast_ref::<crate::lint::compose::LintError>() {
            hints.extend(l.hint());
        } else if let Some(c) = cause.downcast_ref::<crate::vm::connect::ConnectError>() {
            hints.extend(c.hint());
        } else if let Some(x) = cause.downcast_ref::<crate::vm::exec::ExecError>() {
            hints.extend(x.hint());
        } else if let Some(p) = cause.downcast_ref::<crate::pve::PveError>() {
            hints.extend(p.hint());
        }
    }
    for h in hints {
        out.push_str(&format!("hint: {h}\n"));
    }
    out
}

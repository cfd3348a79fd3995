//! Errors the user can act on carry a hint; the top level prints them uv-style: `error:`,
//! one `Caused by:` line per source, then the hints found along the chain.

use std::error::Error;
use std::fmt;

/// What the user can do about an error, where its type knows.
pub trait Hint {
    fn hint(&self) -> Option<String>;
}

/// Reads the hint of one error in a chain, when it is of a type that has one.
pub type HintOf = fn(&(dyn Error + 'static)) -> Option<String>;

/// The [`HintOf`] for one error type. The command layer, which knows every type, lists them;
/// nothing below it has to.
pub fn hint_of<E: Hint + Error + 'static>(e: &(dyn Error + 'static)) -> Option<String> {
    e.downcast_ref::<E>().and_then(Hint::hint)
}

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

impl Error for Hinted {}

impl Hint for Hinted {
    fn hint(&self) -> Option<String> {
        Some(self.hint.clone())
    }
}

pub fn hinted(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hinted {
        message: message.into(),
        hint: hint.into(),
    })
}

/// `error: ...`, one `Caused by:` line per source, then the hints `hints` find along the chain.
pub fn render(err: &anyhow::Error, hints: &[HintOf]) -> String {
    let parts = Parts::of(err, hints);
    let mut out = format!("error: {}\n", parts.message);
    for cause in &parts.causes {
        out.push_str(&format!("  Caused by: {cause}\n"));
    }
    for h in &parts.hints {
        out.push_str(&format!("hint: {h}\n"));
    }
    out
}

/// An error as data, for `--json` outputs: the same three parts the text shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Parts {
    pub message: String,
    pub causes: Vec<String>,
    pub hints: Vec<String>,
}

impl Parts {
    pub fn of(err: &anyhow::Error, hints: &[HintOf]) -> Parts {
        let mut parts = Parts {
            message: err.to_string(),
            causes: Vec::new(),
            hints: Vec::new(),
        };
        for (i, cause) in err.chain().enumerate() {
            if i > 0 {
                parts.causes.push(cause.to_string());
            }
            parts.hints.extend(hints.iter().find_map(|h| h(cause)));
        }
        parts
    }
}

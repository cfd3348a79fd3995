//! One check type for everything pvegpu proves: apply's postconditions and verify's report.
//! A check names what was looked at and what was seen, and on anything but a pass, why it
//! matters and what to run.

use serde::Serialize;

/// The layers of the chain, in the order a request crosses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    Host,
    Vm,
    Guest,
    Runtime,
    Triton,
}

impl Layer {
    pub const ALL: [Layer; 5] = [
        Layer::Host,
        Layer::Vm,
        Layer::Guest,
        Layer::Runtime,
        Layer::Triton,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Layer::Host => "Host",
            Layer::Vm => "VM",
            Layer::Guest => "Guest",
            Layer::Runtime => "Container runtime",
            Layer::Triton => "Triton",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Fail,
    Warn,
    Skip,
}

/// One verified fact: what was looked at, and on anything but a pass, why and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub layer: Layer,
    pub name: String,
    pub status: Status,
    /// What the check saw, in the system's own words where possible.
    pub saw: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn new(
        layer: Layer,
        name: impl Into<String>,
        status: Status,
        saw: impl Into<String>,
        cause: Option<String>,
        fix: Option<String>,
    ) -> Self {
        Check {
            layer,
            name: name.into(),
            status,
            saw: saw.into(),
            cause,
            fix,
        }
    }

    pub fn pass(layer: Layer, name: impl Into<String>, saw: impl Into<String>) -> Self {
        Check::new(layer, name, Status::Pass, saw, None, None)
    }

    pub fn fail(
        layer: Layer,
        name: impl Into<String>,
        saw: impl Into<String>,
        cause: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        let (cause, fix) = (Some(cause.into()), Some(fix.into()));
        Check::new(layer, name, Status::Fail, saw, cause, fix)
    }

    pub fn warn(
        layer: Layer,
        name: impl Into<String>,
        saw: impl Into<String>,
        cause: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Check {
            status: Status::Warn,
            ..Check::fail(layer, name, saw, cause, fix)
        }
    }

    /// Could not be checked; `why` says what was missing, `fix` how to make it checkable.
    pub fn skip(
        layer: Layer,
        name: impl Into<String>,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Check::new(layer, name, Status::Skip, why, None, Some(fix.into()))
    }

    /// A pass when `ok`, else a failure with its cause and fix.
    pub fn judged(
        layer: Layer,
        name: impl Into<String>,
        ok: bool,
        saw: impl Into<String>,
        cause: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        if ok {
            Check::pass(layer, name, saw)
        } else {
            Check::fail(layer, name, saw, cause, fix)
        }
    }

    /// Pass and warn pass; a failure or a check that could not be made does not.
    pub fn passed(&self) -> bool {
        matches!(self.status, Status::Pass | Status::Warn)
    }
}

//! The verify check list: one [`Check`] per thing verified, grouped by [`Layer`], rendered as
//! text for people or JSON for machines.
//!
//! Exit status rule ([`Report::passed`]): only [`Status::Pass`] and [`Status::Warn`] pass.
//! A [`Status::Skip`] means "could not be checked" (a layer that was unreachable, an output
//! that was missing), and an unchecked chain is not a proven one, so it fails the run like a
//! [`Status::Fail`]. Checks that do not apply (no MIG, no Triton configured) are simply not
//! emitted. A [`Status::Warn`] works today but is fragile (a newer kernel not booted yet, index
//! based GPU selection); it is shown, counted and passes.

use crate::core::check::{Check, Layer, Status};
use crate::core::visible::visible;
use anstyle::{AnsiColor, Style as Ansi};
use serde::Serialize;
use std::fmt::Write as _;

/// How the text is drawn: the marks (unicode or ASCII) and whether ANSI colour is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub unicode: bool,
    pub color: bool,
}

impl Style {
    pub const PLAIN: Style = Style {
        unicode: true,
        color: false,
    };
    pub const ASCII: Style = Style {
        unicode: false,
        color: false,
    };
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub pass: usize,
    pub fail: usize,
    pub warn: usize,
    pub skip: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub checks: Vec<Check>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    passed: bool,
    summary: Summary,
    checks: &'a [Check],
}

impl Report {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn extend(&mut self, checks: impl IntoIterator<Item = Check>) {
        self.checks.extend(checks);
    }

    /// Marks a whole layer as unchecked, e.g. when the guest could not be reached; the run
    /// then fails, because nothing beyond that point was proven.
    pub fn skip_layer(&mut self, layer: Layer, why: impl Into<String>, fix: impl Into<String>) {
        self.checks
            .push(Check::skip(layer, "layer not checked", why, fix));
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.checks {
            match c.status {
                Status::Pass => s.pass += 1,
                Status::Fail => s.fail += 1,
                Status::Warn => s.warn += 1,
                Status::Skip => s.skip += 1,
            }
        }
        s
    }

    /// The exit status rule (see the module docs): no failure and nothing left unchecked.
    /// An empty report proves nothing and does not pass.
    pub fn passed(&self) -> bool {
        let s = self.summary();
        !self.checks.is_empty() && s.fail == 0 && s.skip == 0
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(JsonReport {
            passed: self.passed(),
            summary: self.summary(),
            checks: &self.checks,
        })
        .expect("plain data serialises")
    }

    /// Text grouped by layer in chain order, checks in the order they were added; cause and
    /// fix indented under everything that is not a pass; a closing count line.
    pub fn render_text(&self, style: Style) -> String {
        let paint = |s: Ansi, text: &str| {
            if style.color {
                format!("{}{text}{}", s.render(), s.render_reset())
            } else {
                text.to_string()
            }
        };
        let mark = |status: Status| {
            let (u, a, colour) = match status {
                Status::Pass => ("✓", "ok", AnsiColor::Green),
                Status::Fail => ("✗", "FAIL", AnsiColor::Red),
                Status::Warn => ("!", "warn", AnsiColor::Yellow),
                Status::Skip => ("-", "skip", AnsiColor::Cyan),
            };
            let text = if style.unicode { u } else { a };
            paint(Ansi::new().bold().fg_color(Some(colour.into())), text)
        };
        let mut out = String::new();
        for layer in Layer::ALL {
            let checks: Vec<&Check> = self.checks.iter().filter(|c| c.layer == layer).collect();
            if checks.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&paint(Ansi::new().bold(), layer.title()));
            out.push('\n');
            // what the node and guest said is made visible here, before pvegpu's colours
            for c in checks {
                let (name, saw) = (visible(&c.name), visible(&c.saw));
                let _ = writeln!(out, "  {} {name}: {saw}", mark(c.status));
                if c.status != Status::Pass {
                    if let Some(cause) = &c.cause {
                        let _ = writeln!(out, "      cause: {}", visible(cause));
                    }
                    if let Some(fix) = &c.fix {
                        let _ = writeln!(out, "      fix: {}", visible(fix));
                    }
                }
            }
        }
        let s = self.summary();
        let verdict = if self.passed() {
            paint(
                Ansi::new().bold().fg_color(Some(AnsiColor::Green.into())),
                "PASSED",
            )
        } else {
            paint(
                Ansi::new().bold().fg_color(Some(AnsiColor::Red.into())),
                "FAILED",
            )
        };
        if !out.is_empty() {
            out.push('\n');
        }
        let warnings = if s.warn == 1 { "warning" } else { "warnings" };
        let _ = writeln!(
            out,
            "{verdict}: {} passed, {} failed, {} {warnings}, {} not checked",
            s.pass, s.fail, s.warn, s.skip
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(statuses: &[Status]) -> Report {
        Report {
            checks: statuses
                .iter()
                .map(|&status| Check {
                    status,
                    ..Check::pass(Layer::Guest, "x", "y")
                })
                .collect(),
        }
    }

    #[test]
    fn exit_rule_fails_on_fail_and_skip_but_not_warn() {
        assert!(report(&[Status::Pass, Status::Warn]).passed());
        assert!(!report(&[Status::Pass, Status::Fail]).passed());
        assert!(!report(&[Status::Pass, Status::Skip]).passed());
        assert!(!Report::new().passed(), "an empty report proves nothing");
    }

    #[test]
    fn text_groups_by_layer_in_chain_order_and_indents_fixes() {
        let mut r = Report::new();
        r.extend([
            Check::fail(
                Layer::Triton,
                "ready",
                "503",
                "models failed",
                "look at the log",
            ),
            Check::pass(Layer::Host, "IOMMU", "on"),
        ]);
        r.skip_layer(Layer::Vm, "API unreachable", "check the token");
        let text = r.render_text(Style::PLAIN);
        let host = text.find("Host\n").unwrap();
        let vm = text.find("VM\n").unwrap();
        let triton = text.find("Triton\n").unwrap();
        assert!(host < vm && vm < triton, "{text}");
        assert!(
            text.contains(
                "  ✗ ready: 503\n      cause: models failed\n      fix: look at the log\n"
            )
        );
        assert!(text.ends_with("FAILED: 1 passed, 1 failed, 0 warnings, 1 not checked\n"));
        let ascii = r.render_text(Style::ASCII);
        assert!(ascii.is_ascii(), "{ascii}");
        assert!(ascii.contains("  FAIL ready: 503"));
        let color = r.render_text(Style {
            unicode: true,
            color: true,
        });
        assert!(color.contains("\u{1b}["));
    }

    #[test]
    fn json_carries_verdict_and_omits_empty_advice() {
        let r = report(&[Status::Pass]);
        let j = r.to_json();
        assert_eq!(j["passed"], true);
        assert_eq!(j["checks"][0]["layer"], "guest");
        assert!(j["checks"][0].get("fix").is_none());
    }
}

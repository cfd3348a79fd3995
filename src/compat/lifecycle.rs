//! A driver branch's end of life (NVIDIA's data-center driver lifecycle), judged at a date,
//! with the newest branch of the window still supported offered instead.

use super::driver::Window;
use super::reason::Reason;
use super::tables::{Branch, Tables};
use serde::Serialize;

/// A branch's end of life, judged at a date (NVIDIA's data-center driver lifecycle).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lifecycle {
    /// Which driver this is about: `recommended` or `installed`.
    pub role: &'static str,
    pub branch: u32,
    /// The last month of support (`YYYY-MM`); None where the data has no date.
    pub eol: Option<String>,
    /// The day it is judged at (`YYYY-MM-DD`).
    pub as_of: String,
    pub past_eol: bool,
    /// Where past its end of life: the newest branch of the window still supported at
    /// `as_of`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instead: Option<u32>,
}

/// `2026-06` -> `June 2026`, as NVIDIA's lifecycle table writes it.
pub fn month_text(ym: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let month = ym
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)));
    match (ym.get(..4), month) {
        (Some(y), Some(m)) => format!("{m} {y}"),
        _ => ym.to_string(),
    }
}

/// Is a branch that ends in month `eol` (`YYYY-MM`) past its end of life on day `as_of`
/// (`YYYY-MM-DD`)? Support runs to the end of that month; ISO dates compare as text.
fn past(eol: &str, as_of: &str) -> bool {
    as_of.get(..7).is_some_and(|m| m > eol)
}

/// End of life of `branch` on day `as_of`; where it is past, the newest branch of `window`
/// still supported then is offered. Unknown is said as unknown, never taken as supported.
/// Pure: the day is an argument (the snapshot's, or today's from the command layer).
pub fn lifecycle(
    t: &Tables,
    role: &'static str,
    branch: u32,
    window: &Window,
    as_of: &str,
) -> (Lifecycle, Reason) {
    let b = t.branch(branch);
    let eol = b.and_then(|b| b.eol.clone());
    let past_eol = eol.as_deref().is_some_and(|e| past(e, as_of));
    let supported = |n: &u32| {
        t.branch(*n)
            .and_then(|x| x.eol.as_deref())
            .is_some_and(|e| !past(e, as_of))
    };
    let instead = past_eol
        .then(|| window.branches.iter().rev().copied().find(supported))
        .flatten();
    let text = match (&eol, past_eol, instead) {
        (Some(e), true, Some(i)) => format!(
            "the {role} driver branch R{branch} reached its end of life in {} (before {as_of}): NVIDIA no longer fixes it; R{i} is the newest branch of {window} supported then (until {}), from NVIDIA's repository",
            month_text(e),
            t.branch(i)
                .and_then(|x| x.eol.as_deref())
                .map(month_text)
                .unwrap_or_default()
        ),
        (Some(e), true, None) => format!(
            "the {role} driver branch R{branch} reached its end of life in {} (before {as_of}), and no branch of {window} has a published end of life after {as_of}",
            month_text(e)
        ),
        (Some(e), false, _) => format!(
            "the {role} driver branch R{branch} is supported until {} (as of {as_of})",
            month_text(e)
        ),
        (None, _, _) => format!(
            "the {role} driver branch R{branch} has no end-of-life date in the data (NVIDIA publishes dates for long-term support and production branches only): pvegpu cannot say it is still supported"
        ),
    };
    // NVIDIA's lifecycle pages only, the ones checked for corrections.json first.
    fn lifecycle_sources(b: &Branch) -> Vec<&String> {
        let mut s: Vec<&String> = b
            .source
            .iter()
            .filter(|s| s.contains("supported-drivers"))
            .collect();
        s.sort_by_key(|s| !s.contains("(checked "));
        s
    }
    let sources = b.map(lifecycle_sources).unwrap_or_default();
    let offered = instead
        .and_then(|i| t.branch(i))
        .map(lifecycle_sources)
        .unwrap_or_default();
    let reason = Reason::new(text, false, sources.into_iter().chain(offered));
    (
        Lifecycle {
            role,
            branch,
            eol,
            as_of: as_of.to_string(),
            past_eol,
            instead,
        },
        reason,
    )
}

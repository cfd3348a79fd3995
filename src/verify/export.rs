//! verify's checks for machines that watch: JUnit XML for CI (one test case per check) and
//! the Prometheus text format for node_exporter's textfile collector. Pure: reports in,
//! text out; what a node said is made visible before it is escaped.

use super::Report;
use crate::core::check::{Check, Layer, Status};
use crate::core::visible::visible;
use std::collections::BTreeMap;

/// JUnit XML: a suite per node, a case per check. A failed check is a `<failure>`; one not
/// checked is an `<error>` (the check could not run, and verify does not pass); a warning
/// passes with its text in `<system-out>`.
pub fn junit(nodes: &[(&str, &Report)]) -> String {
    let count = |s: Status| -> usize {
        nodes
            .iter()
            .map(|(_, r)| r.checks.iter().filter(|c| c.status == s).count())
            .sum()
    };
    let total: usize = nodes.iter().map(|(_, r)| r.checks.len()).sum();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"pvegpu verify\" tests=\"{total}\" failures=\"{}\" errors=\"{}\">\n",
        count(Status::Fail),
        count(Status::Skip)
    );
    for (node, report) in nodes {
        let s = report.summary();
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\">\n",
            xml(node),
            report.checks.len(),
            s.fail,
            s.skip
        ));
        for c in &report.checks {
            out.push_str(&junit_case(node, c));
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn junit_case(node: &str, c: &Check) -> String {
    let class = format!("{node}.{}", layer_name(c.layer));
    let mut out = format!(
        "    <testcase classname=\"{}\" name=\"{}\"",
        xml(&class),
        xml(&c.name)
    );
    let detail = [c.cause.as_deref(), c.fix.as_deref().map(|f| f.trim())]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("\nfix: ");
    match c.status {
        Status::Pass => return out + "/>\n",
        Status::Fail => out.push_str(&format!(
            ">\n      <failure message=\"{}\">{}</failure>\n",
            xml(&c.saw),
            xml(&detail)
        )),
        Status::Skip => out.push_str(&format!(
            ">\n      <error message=\"not checked: {}\">{}</error>\n",
            xml(&c.saw),
            xml(&detail)
        )),
        Status::Warn => out.push_str(&format!(
            ">\n      <system-out>warning: {}\n{}</system-out>\n",
            xml(&c.saw),
            xml(&detail)
        )),
    }
    out + "    </testcase>\n"
}

/// Text safe inside XML 1.0 attributes and elements: control characters made visible first
/// (XML 1.0 cannot carry most of them at all), then the five special characters escaped.
fn xml(text: &str) -> String {
    visible(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The textfile collector's format: per check 1 (passed, a warning included) or 0 (failed or
/// not checked), per node whether it passed, its counts by status and when it was checked.
/// `now` is seconds since the epoch.
pub fn prometheus(nodes: &[(&str, &Report)], now: u64) -> String {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, lines: Vec<String>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for l in lines {
            out.push_str(&format!("{name}{l}\n"));
        }
    };
    let mut checks = Vec::new();
    for (node, report) in nodes {
        let mut seen: BTreeMap<(Layer, &str), usize> = BTreeMap::new();
        for c in &report.checks {
            // a series is its labels: a second check of the same name gets a number
            let n = seen.entry((c.layer, c.name.as_str())).or_insert(0);
            *n += 1;
            let name = match *n {
                1 => c.name.clone(),
                n => format!("{} ({n})", c.name),
            };
            let ok = matches!(c.status, Status::Pass | Status::Warn);
            checks.push(format!(
                "{{node=\"{}\",layer=\"{}\",check=\"{}\",status=\"{}\"}} {}",
                label(node),
                layer_name(c.layer),
                label(&name),
                status_name(c.status),
                u8::from(ok)
            ));
        }
    }
    family(
        "pvegpu_verify_check_ok",
        "1 when a verify check passed (a warning passes), 0 when it failed or could not be checked.",
        checks,
    );
    family(
        "pvegpu_verify_passed",
        "1 when every verify check of the node passed and none was left unchecked.",
        nodes
            .iter()
            .map(|(n, r)| format!("{{node=\"{}\"}} {}", label(n), u8::from(r.passed())))
            .collect(),
    );
    let mut counts = Vec::new();
    for (node, report) in nodes {
        let s = report.summary();
        for (status, n) in [
            ("pass", s.pass),
            ("fail", s.fail),
            ("warn", s.warn),
            ("skip", s.skip),
        ] {
            counts.push(format!(
                "{{node=\"{}\",status=\"{status}\"}} {n}",
                label(node)
            ));
        }
    }
    family(
        "pvegpu_verify_checks",
        "Verify checks of the node by status.",
        counts,
    );
    family(
        "pvegpu_verify_timestamp_seconds",
        "When verify last checked the node, in seconds since the epoch.",
        nodes
            .iter()
            .map(|(n, _)| format!("{{node=\"{}\"}} {now}", label(n)))
            .collect(),
    );
    out
}

/// A label value as the text format requires: backslash, double quote and newline escaped;
/// other control characters made visible.
fn label(text: &str) -> String {
    visible(text)
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn layer_name(layer: Layer) -> &'static str {
    match layer {
        Layer::Host => "host",
        Layer::Vm => "vm",
        Layer::Guest => "guest",
        Layer::Runtime => "runtime",
        Layer::Triton => "triton",
    }
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Pass => "pass",
        Status::Fail => "fail",
        Status::Warn => "warn",
        Status::Skip => "skip",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let mut r = Report::new();
        r.extend([
            Check::pass(Layer::Host, "IOMMU on", "DMAR: IOMMU enabled"),
            Check::fail(
                Layer::Guest,
                "driver loaded",
                "nvidia not in /proc/modules",
                "the module did not load <after> the \"upgrade\"",
                "`dkms status` & reinstall",
            ),
            Check::warn(
                Layer::Guest,
                "driver loaded",
                "R535 past end of life",
                "old",
                "upgrade",
            ),
        ]);
        r.skip_layer(
            Layer::Triton,
            "the server did not answer\x1b[2J",
            "start it",
        );
        r
    }

    #[test]
    fn junit_has_a_case_per_check_and_escapes_what_nodes_said() {
        let r = report();
        let xml = junit(&[("osm45", &r)]);
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"pvegpu verify\" tests=\"4\" failures=\"1\" errors=\"1\">"), "{xml}");
        assert_eq!(xml.matches("<testcase ").count(), 4, "{xml}");
        assert!(
            xml.contains("<testcase classname=\"osm45.host\" name=\"IOMMU on\"/>"),
            "{xml}"
        );
        assert!(xml.contains("<failure message=\"nvidia not in /proc/modules\">the module did not load &lt;after&gt; the &quot;upgrade&quot;\nfix: `dkms status` &amp; reinstall</failure>"), "{xml}");
        assert!(
            xml.contains("<error message=\"not checked: the server did not answer\\x1b[2J\">"),
            "{xml}"
        );
        assert!(!xml.contains('\x1b'));
        assert!(
            xml.contains("<system-out>warning: R535 past end of life"),
            "{xml}"
        );
    }

    #[test]
    fn prometheus_series_are_unique_and_escaped() {
        let r = report();
        let text = prometheus(&[("osm\"45", &r)], 1_764_000_000);
        assert!(text.contains("pvegpu_verify_check_ok{node=\"osm\\\"45\",layer=\"host\",check=\"IOMMU on\",status=\"pass\"} 1\n"), "{text}");
        assert!(
            text.contains("check=\"driver loaded\",status=\"fail\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("check=\"driver loaded (2)\",status=\"warn\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("pvegpu_verify_passed{node=\"osm\\\"45\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("pvegpu_verify_checks{node=\"osm\\\"45\",status=\"skip\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("pvegpu_verify_timestamp_seconds{node=\"osm\\\"45\"} 1764000000\n"),
            "{text}"
        );
        assert_eq!(text.matches("# TYPE ").count(), 4);
        let series: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.rsplit_once(' ').map(|(k, _)| k).unwrap_or(l))
            .collect();
        let unique: std::collections::BTreeSet<&&str> = series.iter().collect();
        assert_eq!(unique.len(), series.len(), "{text}");
    }
}

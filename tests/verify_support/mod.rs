//! Helpers shared by the verify tests (tests/verify_*.rs).
#![allow(dead_code)]

use crate::support::{add_section, facts, inventory, read, set_section};
use pvegpu::core::plan::Action;
use pvegpu::host::planner::plan;
use pvegpu::verify::Check;

pub const TESTHOST: &str = "[nodes.testhost]\nssh = \"root@127.0.0.1\"\n[[nodes.testhost.gpus]]\naddress = \"0000:00:03.0\"\nid = \"1234:11e8\"\n[[nodes.testhost.gpus]]\naddress = \"0000:00:04.0\"\nid = \"8086:100e\"\n";

pub fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}: {checks:#?}"))
}

/// The converged test host with pvegpu's own files in place of the hand-written ones (the
/// real probe ran after a hand configuration; the planner only differs on file content).
/// Existing files keep the mtime the probe saw and new ones get an old one, so the initramfs
/// stays newer than the configuration, as after a real apply.
pub fn testhost_converged() -> String {
    let text = read("probe/testhost-bookworm-converged.txt");
    let inv = inventory(TESTHOST);
    let p = plan("testhost", inv.node("testhost").unwrap(), &facts(&text)).unwrap();
    let mut out = text;
    for c in &p.changes {
        if let Action::WriteFile { path, content, .. } = &c.action {
            let head = format!("file {path}");
            out = if out.contains(&format!("### pvegpu {head} ")) {
                set_section(&out, &head, content)
            } else {
                add_section(
                    &out,
                    &format!("{head} mode=644 owner=root:root mtime=1"),
                    content,
                )
            };
        }
    }
    out
}

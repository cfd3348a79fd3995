//! Host layer of verify on real probe output from the QEMU test host and on the osm45 facts.

mod support;
mod verify_support;
use pvegpu::verify::{Layer, Report, Status, Style, host};
use support::*;
use verify_support::{TESTHOST, find, testhost_converged};

const OSM45: &str = "[nodes.osm45]\nssh = \"root@osm45\"\n[[nodes.osm45.gpus]]\naddress = \"0000:02:00\"\nid = \"10de:1b80\"\n[[nodes.osm45.gpus]]\naddress = \"0000:83:00\"\nid = \"10de:1b80\"\n";

#[test]
fn converged_test_host_passes_every_host_check() {
    let inv = inventory(TESTHOST);
    let f = facts(&testhost_converged());
    let checks = host::checks("testhost", inv.node("testhost").unwrap(), &f);
    let failing: Vec<_> = checks.iter().filter(|c| c.status != Status::Pass).collect();
    assert!(failing.is_empty(), "{failing:#?}");
    assert!(checks.iter().all(|c| c.layer == Layer::Host));
    for name in [
        "kernel command line",
        "IOMMU",
        "interrupt remapping",
        "0000:00:03.0 on vfio-pci",
        "0000:00:04.0 on vfio-pci",
        "groups isolated",
        "nothing left to plan",
        "no kernel change pending",
    ] {
        find(&checks, name);
    }
    // the before/after comparison has no meaning without an apply, so it is not shown
    assert!(checks.iter().all(|c| c.name != "no other device taken"));
}

#[test]
fn fresh_test_host_fails_with_causes_and_fixes() {
    let inv = inventory(TESTHOST);
    let f = facts(&read("probe/testhost-bookworm-fresh.txt"));
    let checks = host::checks("testhost", inv.node("testhost").unwrap(), &f);
    let vfio = find(&checks, "0000:00:03.0 on vfio-pci");
    assert_eq!(vfio.status, Status::Fail);
    assert!(
        vfio.fix
            .as_deref()
            .unwrap()
            .contains("pvegpu apply --node testhost")
    );
    let left = find(&checks, "nothing left to plan");
    assert_eq!(left.status, Status::Fail);
    assert!(
        left.saw.contains("change(s) pending") && left.saw.contains("reboot"),
        "{}",
        left.saw
    );
    let mut r = Report::new();
    r.extend(checks);
    assert!(!r.passed());
    insta::assert_snapshot!(r.render_text(Style::PLAIN));
}

#[test]
fn newer_kernel_installed_warns_but_passes() {
    let inv = inventory(TESTHOST);
    let text = testhost_converged();
    let text = set_section(
        &text,
        "kernels",
        "6.1.0-50-amd64 vmlinuz=yes initrd=1795373898\n6.1.0-51-amd64 vmlinuz=yes initrd=1795373899\n",
    );
    let checks = host::checks("testhost", inv.node("testhost").unwrap(), &facts(&text));
    let k = find(&checks, "no kernel change pending");
    assert_eq!(k.status, Status::Warn);
    assert!(k.saw.contains("next boot 6.1.0-51-amd64"), "{}", k.saw);
}

#[test]
fn osm45_before_apply_lists_every_target_not_on_vfio() {
    let inv = inventory(OSM45);
    let f = facts(&read("facts/osm45.facts"));
    let checks = host::checks("osm45", inv.node("osm45").unwrap(), &f);
    let not_vfio: Vec<&str> = checks
        .iter()
        .filter(|c| c.name.ends_with("on vfio-pci") && c.status == Status::Fail)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(not_vfio.len(), 4, "{checks:#?}");
    assert_eq!(find(&checks, "kernel command line").status, Status::Pass);
}

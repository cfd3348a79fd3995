//! Reboot interlocks and postconditions, on facts.

mod support;
use pvegpu::host::checks::{postconditions, reboot_interlocks};
use pvegpu::host::planner::plan;
use support::*;

#[test]
fn running_guests_ha_and_quorum_block_a_reboot() {
    let base = read("facts/osm45.facts");
    let qm = read("recorded/qm-list/single-node-one-running.txt");
    let text = add_section(&base, "guests", &qm);
    let f = facts(&text);
    let (refusals, stop) = reboot_interlocks(&f, false);
    assert_eq!(stop, vec![103]);
    assert_eq!(refusals.len(), 1);
    assert!(
        refusals[0].reason.contains("103 (dad-sandbox)")
            && refusals[0].hint.contains("--stop-guests"),
        "{:?}",
        refusals
    );
    let (refusals, _) = reboot_interlocks(&f, true);
    assert!(
        refusals.is_empty(),
        "--stop-guests lets pvegpu shut them down"
    );

    let text = add_section(&text, "ha", "quorum OK\nservice vm:103 (osm45, started)\n");
    let text = add_section(
        &text,
        "cluster",
        &read("recorded/pvecm-status/not-quorate-1-of-3-membership-rows-missing.txt"),
    );
    let (refusals, _) = reboot_interlocks(&facts(&text), true);
    let reasons: Vec<&str> = refusals.iter().map(|r| r.reason.as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("managed by HA")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("no quorum")),
        "{reasons:?}"
    );
}

#[test]
fn postconditions_catch_a_device_left_on_its_driver() {
    let inv = inventory(
        "[nodes.testhost]\nssh = \"root@127.0.0.1\"\n[[nodes.testhost.gpus]]\naddress = \"0000:00:03.0\"\n[[nodes.testhost.gpus]]\naddress = \"0000:00:04.0\"\n",
    );
    let node = inv.node("testhost").unwrap();
    let fresh = facts(&read("probe/testhost-bookworm-fresh.txt"));
    let p = plan("testhost", node, &fresh).unwrap();
    // "after the reboot" but nothing took effect: the fresh facts again
    let checks = postconditions("testhost", node, &p, &fresh, &fresh);
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.passed())
        .map(|c| c.name.as_str())
        .collect();
    assert!(failed.contains(&"kernel command line"), "{failed:?}");
    assert!(failed.contains(&"0000:00:04.0 on vfio-pci"), "{failed:?}");
    assert!(failed.contains(&"nothing left to plan"), "{failed:?}");
    assert!(!failed.contains(&"groups isolated"));
    // the real converged VM passes the runtime checks
    let converged = facts(&read("probe/testhost-bookworm-converged.txt"));
    let checks = postconditions("testhost", node, &p, &fresh, &converged);
    for name in [
        "kernel command line",
        "IOMMU",
        "interrupt remapping",
        "0000:00:03.0 on vfio-pci",
        "0000:00:04.0 on vfio-pci",
        "no other device taken",
        "groups isolated",
    ] {
        let c = checks.iter().find(|c| c.name == name).unwrap();
        assert!(c.passed(), "{name}: {}", c.saw);
    }
}

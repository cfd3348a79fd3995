//! VM layer of verify: desired keys against the config Proxmox returns.

mod support;
mod verify_support;
use pvegpu::verify::Status;
use pvegpu::verify::vm::{ExpectedDevice, checks};
use std::collections::BTreeMap;
use verify_support::find;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn two_cards() -> Vec<ExpectedDevice> {
    vec![
        ExpectedDevice::Host("0000:02:00".parse().unwrap()),
        ExpectedDevice::Mapping("gtx1080-b".into()),
    ]
}

#[test]
fn matching_config_running_vm_passes() {
    let desired = map(&[
        ("machine", "q35"),
        ("bios", "ovmf"),
        ("hostpci0", "0000:02:00,pcie=1"),
        ("hostpci1", "mapping=gtx1080-b,pcie=1"),
    ]);
    // Proxmox writes the host without `host=` and may reorder nothing else
    let current = map(&[
        ("machine", "q35"),
        ("bios", "ovmf"),
        ("hostpci0", "host=02:00,pcie=1"),
        ("hostpci1", "mapping=gtx1080-b,pcie=1"),
        ("memory", "16384"),
        ("digest", "1f2e"),
    ]);
    let c = checks(101, &desired, &current, "running", &two_cards());
    assert!(c.iter().all(|c| c.status == Status::Pass), "{c:#?}");
}

#[test]
fn drifted_config_missing_device_and_stopped_vm_fail() {
    let desired = map(&[("machine", "q35"), ("hostpci0", "0000:02:00,pcie=1")]);
    let current = map(&[
        ("machine", "pc-i440fx-8.1"),
        ("hostpci0", "0000:02:00.0,pcie=1"),
        ("hostpci3", "0000:05:00"),
        ("lock", "backup"),
    ]);
    let c = checks(101, &desired, &current, "stopped", &two_cards());
    let cfg = find(&c, "config matches the inventory");
    assert_eq!(cfg.status, Status::Fail);
    assert!(
        cfg.saw.contains("machine: want `q35`, is `pc-i440fx-8.1`"),
        "{}",
        cfg.saw
    );
    assert!(
        cfg.saw.contains("hostpci0"),
        "a single function is not the whole card: {}",
        cfg.saw
    );
    let dev = find(&c, "GPUs passed through");
    assert_eq!(dev.status, Status::Fail);
    assert!(
        dev.saw
            .contains("missing host 0000:02:00, mapping gtx1080-b"),
        "{}",
        dev.saw
    );
    assert_eq!(find(&c, "no unlisted devices").status, Status::Warn);
    assert_eq!(find(&c, "not locked").status, Status::Fail);
    let run = find(&c, "running");
    assert_eq!(run.status, Status::Fail);
    assert!(run.fix.as_deref().unwrap().contains("qm start 101"));
}

#[test]
fn slot_entry_covers_a_function_the_inventory_names() {
    let current = map(&[("hostpci0", "0000:02:00")]);
    let c = checks(
        7,
        &BTreeMap::new(),
        &current,
        "running",
        &[ExpectedDevice::Host("0000:02:00.0".parse().unwrap())],
    );
    assert_eq!(find(&c, "GPUs passed through").status, Status::Pass);
}

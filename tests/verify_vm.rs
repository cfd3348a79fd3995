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

/// An OVMF VM's EFI disk, as `qm config` shows it (`current=1`), with `efidisk0`.
fn ovmf(efidisk0: &str) -> BTreeMap<String, String> {
    map(&[("bios", "ovmf"), ("efidisk0", efidisk0)])
}

#[test]
fn efi_certificates_warn_until_the_2023_ca_is_enrolled() {
    let keys = "local-lvm:vm-101-disk-1,efitype=4m,pre-enrolled-keys=1,size=4M";
    let efi = |current: &BTreeMap<String, String>| {
        let c = checks(101, &BTreeMap::new(), current, "running", &[]);
        find(&c, "EFI certificates").clone()
    };

    let old = efi(&ovmf(keys));
    assert_eq!(old.status, Status::Warn);
    assert!(old.saw.contains("2011 certificates only"), "{}", old.saw);
    assert!(
        old.fix
            .as_deref()
            .unwrap()
            .contains("qm enroll-efi-keys 101")
    );
    assert_eq!(
        efi(&ovmf(&format!("{keys},ms-cert=2023w"))).status,
        Status::Warn
    );
    let unknown = efi(&ovmf(&format!("{keys},ms-cert=2031")));
    assert_eq!(unknown.status, Status::Warn, "unknown is never called safe");

    let done = efi(&ovmf(&format!("{keys},ms-cert=2023k")));
    assert_eq!(done.status, Status::Pass);
    assert!(done.saw.contains("Microsoft UEFI CA 2023"), "{}", done.saw);
    for no_keys in [
        "local-lvm:vm-101-disk-1,efitype=4m,pre-enrolled-keys=0",
        "local-lvm:vm-101-disk-1,pre-enrolled-keys=1",
    ] {
        assert_eq!(efi(&ovmf(no_keys)).status, Status::Pass, "{no_keys}");
    }
    // SeaBIOS VMs have no such check
    let c = checks(
        101,
        &BTreeMap::new(),
        &map(&[("efidisk0", keys)]),
        "running",
        &[],
    );
    assert!(c.iter().all(|c| c.name != "EFI certificates"));
}

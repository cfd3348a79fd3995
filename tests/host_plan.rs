//! Planner scenarios as snapshots: the plan text a user sees for each situation.
//! osm45 facts are assembled from the seed write-up; testhost facts are real probe output
//! from the QEMU test host (tests/testhost).

mod support;
use pvegpu::core::plan::Action;
use pvegpu::host::plan::HostPlan;
use pvegpu::host::planner::plan;
use support::*;

const OSM45: &str = "[nodes.osm45]\nssh = \"root@osm45\"\n[[nodes.osm45.gpus]]\naddress = \"0000:02:00\"\nid = \"10de:1b80\"\n[[nodes.osm45.gpus]]\naddress = \"0000:83:00\"\nid = \"10de:1b80\"\n";
const TESTHOST: &str = "[nodes.testhost]\nssh = \"root@127.0.0.1\"\n[[nodes.testhost.gpus]]\naddress = \"0000:00:03.0\"\nid = \"1234:11e8\"\n[[nodes.testhost.gpus]]\naddress = \"0000:00:04.0\"\nid = \"8086:100e\"\n";

fn plan_for(inv: &str, node: &str, facts_text: &str) -> HostPlan {
    let inv = inventory(inv);
    plan(node, inv.node(node).unwrap(), &facts(facts_text)).unwrap()
}

fn written(p: &HostPlan, path: &str) -> Option<String> {
    p.changes.iter().find_map(|c| match &c.action {
        Action::WriteFile {
            path: q, content, ..
        } if q == path => Some(content.clone()),
        _ => None,
    })
}

#[test]
fn osm45_fresh() {
    let p = plan_for(OSM45, "osm45", &read("facts/osm45.facts"));
    assert!(p.refusals.is_empty());
    assert_eq!(p.binding, "ids");
    assert_eq!(p.bind.len(), 4);
    assert!(p.needs_reboot());
    // the command line already carries the parameters: /etc/kernel/cmdline is left alone
    assert!(written(&p, "/etc/kernel/cmdline").is_none());
    insta::assert_snapshot!(p.render_text());
}

#[test]
fn osm45_converged_then_no_changes() {
    let text = read("facts/osm45.facts");
    let first = plan_for(OSM45, "osm45", &text);
    let after = converge(&text, &first);
    let second = plan_for(OSM45, "osm45", &after);
    assert_eq!(second.changes, vec![], "{}", second.render_text());
    insta::assert_snapshot!(second.render_text());
}

#[test]
fn osm45_new_kernel_installed_not_booted() {
    let text = read("facts/osm45.facts");
    let converged = converge(&text, &plan_for(OSM45, "osm45", &text));
    // apt installed 6.8.12-11-pve after pvegpu's run, and its image lacks pvegpu's file
    let kernels = "6.8.12-8-pve vmlinuz=yes initrd=1735000000\n6.8.12-10-pve vmlinuz=yes initrd=1735000000\n6.8.12-11-pve vmlinuz=yes initrd=1800000200\n";
    let upgraded = add_section(
        &set_section(&converged, "kernels", kernels),
        "initramfs 6.8.12-11-pve mtime=1800000200",
        "usr/lib/modules/6.8.12-11-pve/kernel/drivers/vfio/pci/vfio-pci.ko\n",
    );
    let p = plan_for(OSM45, "osm45", &upgraded);
    let text = p.render_text();
    assert!(
        text.contains("6.8.12-11-pve (no pvegpu-vfio.conf)"),
        "{text}"
    );
    assert!(
        text.contains("kernel 6.8.12-11-pve is installed and boots next"),
        "{text}"
    );
    assert!(
        written(&p, "/etc/modprobe.d/pvegpu-vfio.conf").is_none(),
        "only the upgrade's damage is fixed"
    );
    insta::assert_snapshot!(text);
}

#[test]
fn osm45_target_shares_group_with_sata_controller() {
    let text = read("facts/osm45.facts");
    let text = text.replace(
        "/sys/kernel/iommu_groups/7/devices/0000:83:00.1\n",
        "/sys/kernel/iommu_groups/7/devices/0000:83:00.1\n/sys/kernel/iommu_groups/7/devices/0000:00:1f.2\n",
    );
    let text = text.replace(
        "### pvegpu lspci\n",
        "### pvegpu lspci\n00:1f.2 SATA controller [0106]: Intel Corporation C610/X99 series chipset 6-Port SATA Controller [AHCI mode] [8086:8d02] (rev 05)\n\tKernel driver in use: ahci\n\tKernel modules: ahci\n",
    );
    let p = plan_for(OSM45, "osm45", &text);
    assert!(
        p.refusals
            .iter()
            .any(|r| r.reason.contains("0000:00:1f.2") && r.reason.contains("group 7")),
        "{:?}",
        p.refusals
    );
    insta::assert_snapshot!(p.render_text());
}

#[test]
fn osm45_identical_gpu_kept_for_the_host() {
    let inv = "[nodes.osm45]\nssh = \"root@osm45\"\n[[nodes.osm45.gpus]]\naddress = \"02:00\"\n";
    let p = plan_for(inv, "osm45", &read("facts/osm45.facts"));
    assert_eq!(p.binding, "per-device");
    assert_eq!(
        p.bind
            .iter()
            .map(|b| b.address.as_str())
            .collect::<Vec<_>>(),
        vec!["0000:02:00.0", "0000:02:00.1"]
    );
    let conf = written(&p, "/etc/modprobe.d/pvegpu-vfio.conf").unwrap();
    assert!(!conf.contains("ids="), "ids= would also take 83:00: {conf}");
    let script = written(&p, "/usr/local/lib/pvegpu/vfio-pci-override.sh").unwrap();
    assert!(script.contains("0000:02:00.0 0000:02:00.1") && !script.contains("83:00"));
    assert!(
        written(&p, "/etc/modprobe.d/pvegpu-blacklist.conf").is_none(),
        "the host keeps nouveau for 83:00"
    );
    insta::assert_snapshot!(p.render_text());
}

#[test]
fn osm45_hand_configured_as_in_the_write_up() {
    // the write-up's own files: vfio in /etc/modules, ids= in vfio.conf, a blacklist
    let text = read("facts/osm45.facts");
    let text = set_section(
        &text,
        "file /etc/modules ",
        "vfio\nvfio_iommu_type1\nvfio_pci\n",
    );
    let text = add_section(
        &text,
        "file /etc/modprobe.d/vfio.conf mode=644 owner=root:root mtime=1704000000",
        "options vfio-pci ids=10de:1b80,10de:10f0\n",
    );
    let text = add_section(
        &text,
        "file /etc/modprobe.d/blacklist.conf mode=644 owner=root:root mtime=1704000000",
        "blacklist nouveau\nblacklist nvidia\nblacklist nvidia_drm\nblacklist nvidia_modeset\nblacklist nvidia_uvm\n",
    );
    let p = plan_for(OSM45, "osm45", &text);
    assert!(p.refusals.is_empty(), "{:?}", p.refusals);
    let conf = written(&p, "/etc/modprobe.d/pvegpu-vfio.conf").unwrap();
    assert!(
        !conf.contains("ids="),
        "a second ids= would override the admin's line: {conf}"
    );
    assert!(written(&p, "/etc/modules-load.d/pvegpu-vfio.conf").is_none());
    insta::assert_snapshot!(p.render_text());

    // the same line now takes a card the inventory keeps for the host: refuse, name the line
    let inv = "[nodes.osm45]\nssh = \"root@osm45\"\n[[nodes.osm45.gpus]]\naddress = \"02:00\"\n";
    let p = plan_for(inv, "osm45", &text);
    assert!(
        p.refusals.iter().any(|r| r
            .reason
            .starts_with("/etc/modprobe.d/vfio.conf:1 binds [10de:1b80]")),
        "{:?}",
        p.refusals
    );
}

#[test]
fn osm45_wrong_card_or_missing_address() {
    let inv = "[nodes.osm45]\nssh = \"root@osm45\"\n[[nodes.osm45.gpus]]\naddress = \"02:00\"\nid = \"10de:2204\"\n[[nodes.osm45.gpus]]\naddress = \"04:00\"\n";
    let p = plan_for(inv, "osm45", &read("facts/osm45.facts"));
    let reasons: Vec<&str> = p.refusals.iter().map(|r| r.reason.as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("expects 10de:2204")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("no PCI device at 0000:04:00")),
        "{reasons:?}"
    );
    assert!(p.changes.is_empty());
}

#[test]
fn amd_host_on_grub() {
    let inv = read("facts/amd-grub.toml");
    let p = plan_for(&inv, "amdhost", &read("facts/amd-grub.facts"));
    assert!(p.refusals.is_empty(), "{:?}", p.refusals);
    let grub = written(&p, "/etc/default/grub.d/pvegpu.cfg").unwrap();
    assert!(
        grub.contains("iommu=pt") && !grub.contains("amd_iommu"),
        "{grub}"
    );
    assert!(p.changes.iter().any(|c| c.action
        == Action::Run {
            command: "update-grub".into()
        }));
    insta::assert_snapshot!(p.render_text());
}

#[test]
fn amd_host_only_display_is_refused_unless_accepted() {
    let inv = read("facts/amd-grub.toml");
    let facts = read("facts/amd-grub.facts");
    let refused = plan_for(
        &inv.replace("accept = [\"only_display\"]", ""),
        "amdhost",
        &facts,
    );
    assert!(refused.changes.is_empty());
    assert!(
        refused
            .refusals
            .iter()
            .any(|r| r.reason.contains("only display device")),
        "{:?}",
        refused.refusals
    );
    let accepted = plan_for(&inv, "amdhost", &facts);
    assert!(
        accepted
            .notes
            .iter()
            .any(|n| n.starts_with("accepted by the inventory") && n.contains("only display")),
        "{:?}",
        accepted.notes
    );
}

#[test]
fn testhost_fresh_real_kernel() {
    let p = plan_for(
        TESTHOST,
        "testhost",
        &read("probe/testhost-bookworm-fresh.txt"),
    );
    assert!(p.refusals.is_empty(), "{:?}", p.refusals);
    let grub = written(&p, "/etc/default/grub.d/pvegpu.cfg").unwrap();
    assert!(grub.contains("intel_iommu=on iommu=pt"));
    let conf = written(&p, "/etc/modprobe.d/pvegpu-vfio.conf").unwrap();
    assert!(
        conf.contains("ids=1234:11e8,8086:100e") && conf.contains("softdep e1000 pre: vfio-pci"),
        "{conf}"
    );
    insta::assert_snapshot!(p.render_text());
}

#[test]
fn testhost_boot_vga_is_refused() {
    let inv = "[nodes.testhost]\nssh = \"root@127.0.0.1\"\n[[nodes.testhost.gpus]]\naddress = \"00:01.0\"\n";
    let p = plan_for(inv, "testhost", &read("probe/testhost-bookworm-fresh.txt"));
    assert!(
        p.refusals.iter().any(|r| r.reason.contains("boot VGA")),
        "{:?}",
        p.refusals
    );
    assert!(p.render_text().contains("Refused:"));
}

#[test]
fn testhost_root_disk_controller_is_refused() {
    // the virtio disk holding / on the test host
    let inv = "[nodes.testhost]\nssh = \"root@127.0.0.1\"\n[[nodes.testhost.gpus]]\naddress = \"00:05.0\"\n";
    let p = plan_for(inv, "testhost", &read("probe/testhost-bookworm-fresh.txt"));
    assert!(
        p.refusals
            .iter()
            .any(|r| r.reason.contains("root filesystem")),
        "{:?}",
        p.refusals
    );
}

#[test]
fn testhost_after_a_real_reboot_needs_nothing_at_runtime() {
    // real probe output after the configuration was written by hand and the VM rebooted:
    // the kernel parsed intel_iommu=on, both devices are on vfio-pci, the initramfs carries
    // vfio-pci and the modprobe file
    let text = read("probe/testhost-bookworm-converged.txt");
    let f = facts(&text);
    assert!(f.kernel_log.intel_iommu_param);
    assert_eq!(f.kernel_log.irq_remapping, Some(true));
    assert!(
        f.kernel_log
            .default_domain
            .as_deref()
            .unwrap_or("")
            .starts_with("Passthrough")
    );
    for a in ["0000:00:03.0", "0000:00:04.0"] {
        assert_eq!(
            f.device(&a.parse().unwrap()).unwrap().driver.as_deref(),
            Some("vfio-pci"),
            "{a}"
        );
    }
    assert!(f.initramfs.iter().all(|i| {
        i.has_vfio_pci
            && i.modprobe_files
                .iter()
                .any(|m| m.ends_with("pvegpu-vfio.conf"))
    }));
    // the hand-written files differ from pvegpu's templates (comments, vfio_virqfd for 6.1);
    // once they are pvegpu's own, nothing is left: no reboot, no initramfs rebuild
    let first = plan_for(TESTHOST, "testhost", &text);
    assert!(first.changes.iter().all(
        |c| !matches!(&c.action, Action::WriteFile { path, .. } if path == "/etc/kernel/cmdline")
    ));
    let second = plan_for(TESTHOST, "testhost", &converge(&text, &first));
    assert_eq!(second.changes, vec![], "{}", second.render_text());
}

#[test]
fn testhost_shared_group_behind_a_pci_bridge_is_refused() {
    // real: e1000 behind a conventional PCI bridge shares group 3 with an rtl8139 on 8139cp
    let inv = "[nodes.testhost]\nssh = \"root@127.0.0.1\"\n[[nodes.testhost.gpus]]\naddress = \"01:01.0\"\nid = \"8086:100e\"\n";
    let p = plan_for(
        inv,
        "testhost",
        &read("probe/testhost-bookworm-shared-group.txt"),
    );
    assert_eq!(p.refusals.len(), 1, "{:?}", p.refusals);
    assert!(
        p.refusals[0]
            .reason
            .starts_with("0000:01:01 shares IOMMU group 3 with 0000:01:02.0"),
        "{}",
        p.refusals[0].reason
    );
    assert!(
        p.changes.is_empty(),
        "nothing is written for a refused node"
    );
    insta::assert_snapshot!(p.render_text());
}

#[test]
fn testhost_twin_devices_bind_by_address() {
    // real: two edu devices with identical ids; only 00:04.0 is a target
    let inv = "[nodes.testhost]\nssh = \"root@127.0.0.1\"\n[[nodes.testhost.gpus]]\naddress = \"00:04.0\"\nid = \"1234:11e8\"\n";
    let p = plan_for(inv, "testhost", &read("probe/testhost-bookworm-twin.txt"));
    assert!(p.refusals.is_empty(), "{:?}", p.refusals);
    assert_eq!(p.binding, "per-device");
    let script = written(&p, "/usr/local/lib/pvegpu/vfio-pci-override.sh").unwrap();
    assert!(script.contains("for dev in 0000:00:04.0; do"), "{script}");
    assert!(written(&p, "/etc/initramfs-tools/hooks/pvegpu-vfio").is_some());
    assert!(
        !written(&p, "/etc/modprobe.d/pvegpu-vfio.conf")
            .unwrap()
            .contains("ids=")
    );
}

#[test]
fn testhost_new_kernel_installed_not_booted() {
    // real: linux-image-6.1.0-56 installed by apt on the converged VM, not rebooted
    let p = plan_for(
        TESTHOST,
        "testhost",
        &read("probe/testhost-bookworm-new-kernel.txt"),
    );
    let text = p.render_text();
    assert!(
        text.contains("kernel 6.1.0-56-amd64 is installed and boots next (running 6.1.0-50-amd64)"),
        "{text}"
    );
}

#[test]
fn testhost_systemd_boot_edits_kernel_cmdline() {
    // real probe of the systemd-boot variant (proxmox-boot-tool stand-in, tests/testhost)
    let p = plan_for(
        TESTHOST,
        "testhost",
        &read("probe/testhost-bookworm-systemd-boot-fresh.txt"),
    );
    assert!(p.refusals.is_empty(), "{:?}", p.refusals);
    let line = written(&p, "/etc/kernel/cmdline").unwrap();
    assert!(
        line.starts_with("root=UUID=") && line.ends_with(" quiet intel_iommu=on iommu=pt\n"),
        "{line}"
    );
    assert!(written(&p, "/etc/default/grub.d/pvegpu.cfg").is_none());
    assert!(p.changes.iter().any(|c| c.action
        == Action::Run {
            command: "proxmox-boot-tool refresh".into()
        }));
}

#[test]
fn rollback_of_a_converged_node_takes_out_what_pvegpu_wrote() {
    let text = read("facts/osm45.facts");
    let converged = converge(&text, &plan_for(OSM45, "osm45", &text));
    let p = pvegpu::host::rollback::plan("osm45", &facts(&converged), true);
    assert!(
        p.changes
            .iter()
            .all(|c| c.needs_reboot == (c.action != Action::Reboot))
    );
    assert_eq!(p.changes.last().map(|c| &c.action), Some(&Action::Reboot));
    insta::assert_snapshot!(p.render_text());
    // nothing of pvegpu's on the fresh node: nothing to undo
    assert!(pvegpu::host::rollback::plan("osm45", &facts(&text), false).is_empty());
}

/// The AMD host with Proxmox's 6.8.12-29-pve installed and booting next: that build merges
/// IOMMU groups on AMD hosts (pve-kernel's changelog: "fix IOMMU regression" in 6.8.12-30).
#[test]
fn amd_host_whose_next_kernel_is_known_bad_for_passthrough_is_refused_with_a_pin() {
    let inv = read("facts/amd-grub.toml");
    let kernels =
        "6.8.12-8-pve vmlinuz=yes initrd=1735000000\n6.8.12-29-pve vmlinuz=yes initrd=1800000000\n";
    let text = set_section(&read("facts/amd-grub.facts"), "kernels", kernels);
    let p = plan_for(&inv, "amdhost", &text);
    assert!(p.changes.is_empty(), "a refused plan changes nothing");
    let r = p
        .refusals
        .iter()
        .find(|r| r.reason.contains("pve-6.8-acs-iommu-groups"))
        .unwrap_or_else(|| panic!("{:?}", p.refusals));
    // the running 6.8.12-8 is in the range too, but its groups are in the facts the verdict
    // judged: it is the kernel to pin
    for (text, needle) in [
        (&r.reason, "default-boot kernel 6.8.12-29-pve"),
        (&r.hint, "proxmox-boot-tool kernel pin 6.8.12-8-pve"),
        (&r.hint, "install 6.8.12-30-pve or later"),
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    insta::assert_snapshot!(p.render_text());

    // pinned to the running kernel, the plan goes ahead and only notes it
    let pinned = add_section(
        &text,
        "proxmox-boot-tool-kernels",
        "Manually selected kernels:\nNone.\n\nAutomatically selected kernels:\n6.8.12-8-pve\n6.8.12-29-pve\n\nPinned kernel:\n6.8.12-8-pve\n",
    );
    let p = plan_for(&inv, "amdhost", &pinned);
    assert!(p.refusals.is_empty(), "{:?}", p.refusals);
    assert!(
        p.notes
            .iter()
            .any(|n| n.starts_with("known bad: the running kernel 6.8.12-8-pve may have")),
        "{:?}",
        p.notes
    );
}

/// The same regression on the kernel the node runs and boots: the merged groups would be in
/// the facts, so the verdict decides and the plan notes the kernel, in text and JSON.
#[test]
fn a_known_bad_running_kernel_whose_breakage_shows_in_the_facts_is_a_note() {
    let inv = read("facts/amd-grub.toml");
    let text = read("facts/amd-grub.facts").replace("6.8.12-8-pve", "6.8.12-29-pve");
    let p = plan_for(&inv, "amdhost", &text);
    assert!(p.refusals.is_empty(), "{:?}", p.refusals);
    let note = p
        .notes
        .iter()
        .find(|n| n.contains("pve-6.8-acs-iommu-groups"))
        .unwrap_or_else(|| panic!("{:?}", p.notes));
    assert!(note.contains("fixed in 6.8.12-30"), "{note}");
    assert!(p.render_text().contains(&format!("note: {note}")));
    let json = serde_json::to_value(&p).unwrap();
    assert!(
        json["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == note.as_str())
    );
}

/// An Intel host with NVIDIA cards: the AMD-only regressions do not concern it.
#[test]
fn known_bad_entries_for_other_hardware_stay_out_of_the_plan() {
    let text = read("facts/osm45.facts");
    let on_29 = text.replace("6.8.12-10-pve", "6.8.12-29-pve");
    let p = plan_for(OSM45, "osm45", &on_29);
    assert!(p.refusals.is_empty(), "{:?}", p.refusals);
    assert!(
        !p.notes.iter().any(|n| n.starts_with("known bad")),
        "{:?}",
        p.notes
    );
}

/// The test host's real facts with one line of `section` replaced (or dropped with "").
fn testhost_with(section_line: &str, replacement: &str) -> String {
    let text = read("probe/testhost-bookworm-fresh.txt");
    assert!(
        text.contains(section_line),
        "the fixture lacks {section_line:?}"
    );
    text.replace(section_line, replacement)
}

fn refusal_of_the_nic_target(facts_text: &str) -> Option<String> {
    // 00:04.0 is a NIC: it could carry the host's root disk or its management link
    let inv = "[nodes.testhost]\nssh = \"root@127.0.0.1\"\n[[nodes.testhost.gpus]]\naddress = \"00:04.0\"\n";
    let p = plan_for(inv, "testhost", facts_text);
    p.refusals
        .iter()
        .find(|r| r.reason.contains("is unknown"))
        .map(|r| format!("{} / {}", r.reason, r.hint))
}

#[test]
fn a_root_whose_controller_was_not_found_is_not_taken_for_one_the_host_can_spare() {
    // live facts, but the walk found no disk under / (lsblk failed, or a layout it does not
    // follow): no controller may be assumed not to hold it
    let text = testhost_with(
        "disk vda /sys/devices/pci0000:00/0000:00:05.0/virtio1\n",
        "",
    );
    let refusal = refusal_of_the_nic_target(&text).expect("refused");
    assert!(
        refusal.contains(
            "no controller was found under the root filesystem (source /dev/vda2, type ext4)"
        ),
        "{refusal}"
    );
    assert!(refusal.contains("lsblk -s"), "{refusal}");
    // the same facts with the disk: nothing unknown
    assert_eq!(
        refusal_of_the_nic_target(&read("probe/testhost-bookworm-fresh.txt")),
        None
    );
}

#[test]
fn a_management_link_whose_nic_was_not_found_is_not_taken_for_one_the_host_can_spare() {
    let text = testhost_with(
        "iface enp0s2 device=/sys/devices/pci0000:00/0000:00:02.0/virtio0 lower=",
        "iface enp0s2 device= lower=",
    );
    let refusal = refusal_of_the_nic_target(&text).expect("refused");
    assert!(
        refusal.contains("no PCI NIC was found under enp0s2"),
        "{refusal}"
    );
    assert!(refusal.contains("ip route show default"), "{refusal}");
}

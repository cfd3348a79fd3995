//! Parsers on real command output recorded from public reports (tests/fixtures/recorded,
//! sources in SOURCES.md there).

mod support;
use pvegpu::facts::boot::{self, BootLoader};
use pvegpu::facts::{kernel_log, kernels, lspci, pve};
use support::{facts, read};

#[test]
fn proxmox_boot_tool_status_decides_the_boot_loader() {
    for (file, want) in [
        ("uefi-systemd-boot-two-esps.txt", BootLoader::SystemdBoot),
        (
            "uefi-systemd-boot-two-esps-stale-warn-first.txt",
            BootLoader::SystemdBoot,
        ),
        ("uefi-grub-zfs-pve9.txt", BootLoader::ProxmoxGrub),
        ("uefi-grub-lvm-after-init.txt", BootLoader::ProxmoxGrub),
        ("grub-legacy-bios-two-esps.txt", BootLoader::ProxmoxGrub),
        (
            "grub-legacy-bios-esp-mount-failed.txt",
            BootLoader::ProxmoxGrub,
        ),
        (
            "grub-legacy-bios-stale-uuid-warn.txt",
            BootLoader::ProxmoxGrub,
        ),
        (
            "not-configured-uuids-missing-uefi-lvm.txt",
            BootLoader::Grub,
        ),
    ] {
        let status = read(&format!("recorded/proxmox-boot-tool-status/{file}"));
        assert_eq!(boot::detect(Some(&status), None, true), want, "{file}");
    }
    let two = read("recorded/proxmox-boot-tool-status/uefi-systemd-boot-two-esps.txt");
    assert_eq!(boot::pbt_modes(&two), vec!["uefi", "uefi"]);
}

#[test]
fn efibootmgr_current_loader() {
    let pve8 = read("recorded/efibootmgr-v/pve8-grub-lvm-amd-host-bbs-garbage.txt");
    assert_eq!(
        boot::efi_current_loader(&pve8).as_deref(),
        Some("grubx64.efi")
    );
    // booted through the removable-media fallback path: it names no loader
    let pve9 = read("recorded/efibootmgr-v/pve9-grub-shim-efibootmgr18-dp.txt");
    assert_eq!(
        boot::efi_current_loader(&pve9).as_deref(),
        Some("bootx64.efi")
    );
    let s = read("recorded/proxmox-boot-tool-status/uefi-grub-zfs-pve9.txt");
    assert_eq!(
        boot::detect(Some(&s), Some(&pve9), true),
        BootLoader::ProxmoxGrub
    );
}

#[test]
fn pinned_kernels() {
    assert_eq!(
        kernels::pbt_pinned(&read(
            "recorded/proxmox-boot-tool-kernel-list/pinned-single-kernel-grub.txt"
        ))
        .as_deref(),
        Some("6.8.4-2-pve")
    );
    assert_eq!(
        kernels::pbt_pinned(&read("recorded/proxmox-boot-tool-kernel-list/three-kernels-pinned-oldest-pve-efiboot-tool.txt")).as_deref(),
        Some("6.5.13-6-pve")
    );
    assert_eq!(
        kernels::pbt_pinned(&read(
            "recorded/proxmox-boot-tool-kernel-list/three-kernels-unpinned-pve-efiboot-tool.txt"
        )),
        None
    );
}

#[test]
fn kernel_logs_on_intel_and_amd() {
    let amd = kernel_log::parse(&read(
        "recorded/dmesg-iommu/amd-acs-override-unknown-option-rtx4070.txt",
    ));
    assert_eq!(amd.irq_remapping, Some(true));
    assert!(amd.iommu_initialised);
    let intel = kernel_log::parse(&read(
        "recorded/dmesg-iommu/intel-dmar-ir-x2apic-zyyproxmox.txt",
    ));
    assert_eq!(intel.irq_remapping, Some(true));
    assert!(
        !intel.intel_iommu_param,
        "that host had no intel_iommu= on its command line"
    );
    // a grep for DMAR|IOMMU alone cannot see AMD-Vi's remapping line: unknown, not "off"
    let grep_only = kernel_log::parse(&read(
        "recorded/dmesg-iommu/amd-pve-acs-override-no-amdvi-grep.txt",
    ));
    assert_eq!(grep_only.irq_remapping, None);
    let tiger = kernel_log::parse(&read(
        "recorded/dmesg-iommu/intel-tigerlake-no-dmar-ir-lines-excerpt-alpine.txt",
    ));
    assert_eq!(tiger.irq_remapping, None);
    let vfio = kernel_log::parse(&read(
        "recorded/dmesg-iommu/vfio-no-interrupt-remapping-support-error.txt",
    ));
    assert_eq!(vfio.irq_remapping, Some(false));
}

#[test]
fn lspci_identical_cards_and_grep_separators() {
    let t400 = lspci::parse(&read(
        "recorded/lspci-nnk/two-identical-t400-one-vfio-one-nvidia-truenas-grep.txt",
    ));
    assert_eq!(t400.len(), 3);
    assert_eq!(t400[1].id, t400[2].id);
    assert_eq!(t400[1].driver.as_deref(), Some("vfio-pci"));
    assert_eq!(t400[2].driver.as_deref(), Some("nvidia"));
    assert_eq!(
        t400[2].modules,
        vec!["nouveau", "nvidia_current_drm", "nvidia_current"]
    );
    let v100 = lspci::parse(&read(
        "recorded/lspci-nnk/eight-identical-v100-3d-controller-vfio-d-filter.txt",
    ));
    assert!(
        v100.iter()
            .all(|d| d.class == 0x0302 && d.id.to_string() == "10de:1db1")
    );
    let no_driver = lspci::parse(&read(
        "recorded/lspci-nnk/rtx4070-no-driver-bound-audio-snd-hda.txt",
    ));
    assert_eq!(no_driver[0].driver, None);
    assert_eq!(no_driver[1].driver.as_deref(), Some("snd_hda_intel"));
}

#[test]
fn two_gpus_sharing_a_group_are_refused_one_at_a_time() {
    // the classic `IOMMU Group N <lspci line>` loop output serves as both sections
    let listing = read("recorded/iommu-groups/loop-two-nvidia-gpus-share-group1-ubuntu.txt");
    let lspci: String = listing
        .lines()
        .filter_map(|l| {
            l.strip_prefix("IOMMU Group ")
                .and_then(|r| r.split_once(' '))
                .map(|(_, rest)| format!("{rest}\n"))
        })
        .collect();
    let text = format!(
        "### pvegpu facts 1\n### pvegpu uname\n5.4.0\n### pvegpu proc-cmdline\nquiet intel_iommu=on\n### pvegpu cpu\nvendor_id\t: GenuineIntel\n### pvegpu lspci\n{lspci}### pvegpu iommu-groups\n{listing}### pvegpu kernel-log\nDMAR-IR: Enabled IRQ remapping in x2apic mode\n"
    );
    let f = facts(&text);
    let gpus: Vec<_> = f.devices.iter().filter(|d| d.is_display()).collect();
    assert_eq!(gpus.len(), 2);
    assert_eq!(gpus[0].iommu_group, gpus[1].iommu_group);
    let first = gpus[0].address.slot();
    let inv = support::inventory(&format!(
        "[nodes.n]\nssh = \"root@n\"\n[[nodes.n.gpus]]\naddress = \"{first}\"\n"
    ));
    let p = pvegpu::host::planner::plan("n", inv.node("n").unwrap(), &f).unwrap();
    let group: Vec<_> = p
        .refusals
        .iter()
        .filter(|r| r.reason.contains("shares IOMMU group 1"))
        .collect();
    assert_eq!(group.len(), 1, "one refusal per card: {:?}", p.refusals);
    assert!(
        group[0]
            .reason
            .starts_with("0000:01:00 shares IOMMU group 1 with 0000:02:00.0"),
        "{}",
        group[0].reason
    );
    assert!(p.changes.is_empty());
}

#[test]
fn guests_ha_and_quorum() {
    let qm = pve::parse_qm_list(&read("recorded/qm-list/single-node-one-running.txt"));
    assert_eq!(
        qm.iter()
            .filter(|g| g.status == "running")
            .map(|g| g.vmid)
            .collect::<Vec<_>>(),
        vec![103]
    );
    let pct = pve::parse_pct_list(&read("recorded/pct-list/two-stopped.txt"));
    assert_eq!(pct.len(), 2);
    assert!(pct.iter().all(|g| g.status == "stopped"));
    assert_eq!(
        pve::parse_quorate(&read("recorded/pvecm-status/quorate-5-nodes-pve8.txt")),
        Some(true)
    );
    assert_eq!(
        pve::parse_quorate(&read(
            "recorded/pvecm-status/not-quorate-1-of-3-membership-rows-missing.txt"
        )),
        Some(false)
    );
    assert_eq!(
        pve::parse_quorate(&read(
            "recorded/pvecm-status/standalone-no-corosync-conf.txt"
        )),
        None
    );
    assert!(
        !pve::parse_ha_resources(&read(
            "recorded/ha-manager-status/two-nodes-one-vm-started-pve8.txt"
        ))
        .is_empty()
    );
    for f in ["pve-8.0.3-kernel-6.2.txt", "pve-8.3.3.txt"] {
        assert!(
            pve::parse_pveversion(&read(&format!("recorded/pveversion/{f}"))).is_some(),
            "{f}"
        );
    }
}

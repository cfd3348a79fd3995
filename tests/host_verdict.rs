//! The passthrough verdict (src/host/verdict.rs) on facts assembled from real output: the
//! recorded files in tests/fixtures/recorded (sources in SOURCES.md there) and the lines of
//! the host corpus in tests/hosts (source URL in each host.toml).

mod support;
use pvegpu::facts::HostFacts;
use pvegpu::host::verdict::{self, Accepted, Code, DeviceVerdict, State, Verdict};
use pvegpu::inventory::Risk;
use std::collections::BTreeSet;
use support::{facts, read, set_section};

fn judge(f: &HostFacts, address: &str, accepted: &Accepted) -> DeviceVerdict {
    let dev = f.device(&address.parse().unwrap()).unwrap();
    let card: BTreeSet<_> = f
        .devices
        .iter()
        .filter(|d| d.address.slot() == dev.address.slot())
        .map(|d| d.address)
        .collect();
    verdict::judge(f, dev, &card, accepted)
}

fn codes(v: &DeviceVerdict) -> Vec<Code> {
    v.reasons.iter().map(|r| r.code).collect()
}

/// amd-grub.facts is the Ryzen 5600X + RTX 4070 host whose dmesg had the ACS override warning.
fn amd_host(kernel_log: &str) -> HostFacts {
    facts(&set_section(
        &read("facts/amd-grub.facts"),
        "kernel-log",
        kernel_log,
    ))
}

#[test]
fn acs_override_is_refused_from_the_kernel_warning_unless_accepted() {
    let f = amd_host(&read(
        "recorded/dmesg-iommu/amd-acs-override-unknown-option-rtx4070.txt",
    ));
    let v = judge(&f, "0000:08:00.0", &Accepted::default());
    assert_eq!(v.verdict, Verdict::Refused);
    assert!(codes(&v).contains(&Code::AcsOverride), "{v:?}");
    let accepted = Accepted {
        unsafe_interrupts: false,
        risks: vec![Risk::AcsOverride, Risk::OnlyDisplay],
    };
    let v = judge(&f, "0000:08:00.0", &accepted);
    assert_eq!(v.verdict, Verdict::Passable, "{v:?}");
    assert_eq!(v.accepted.len(), 2);
}

#[test]
fn acs_override_on_the_command_line_is_refused() {
    let text = set_section(
        &read("facts/amd-grub.facts"),
        "proc-cmdline",
        "BOOT_IMAGE=/boot/vmlinuz-6.8.12-8-pve root=/dev/mapper/pve-root ro quiet pcie_acs_override=downstream,multifunction\n",
    );
    let f = facts(&text);
    assert_eq!(verdict::acs_override(&f).len(), 1);
    let v = judge(&f, "0000:08:00.0", &Accepted::default());
    assert!(codes(&v).contains(&Code::AcsOverride), "{v:?}");
}

#[test]
fn the_only_display_device_is_refused_although_boot_vga_is_unknown() {
    let f = amd_host(&read(
        "recorded/dmesg-iommu/amd-acs-override-unknown-option-rtx4070.txt",
    ));
    assert_eq!(
        f.device(&"0000:08:00.0".parse().unwrap()).unwrap().boot_vga,
        None
    );
    let v = judge(&f, "0000:08:00.0", &Accepted::default());
    assert!(codes(&v).contains(&Code::OnlyDisplay), "{v:?}");
}

#[test]
fn no_group_listing_is_unknown_with_the_command_that_tells() {
    let text = read("facts/amd-grub.facts");
    let start = text.find("### pvegpu iommu-groups").unwrap();
    let end = start + text[start..].find("### pvegpu kernel-log").unwrap();
    let f = facts(&format!("{}{}", &text[..start], &text[end..]));
    assert!(!f.groups_listed);
    let v = judge(
        &f,
        "0000:08:00.0",
        &Accepted {
            unsafe_interrupts: false,
            risks: vec![Risk::OnlyDisplay],
        },
    );
    assert_eq!(v.verdict, Verdict::Unknown, "{v:?}");
    assert_eq!(codes(&v), vec![Code::GroupsUnknown]);
    assert_eq!(v.need[0].fact, "iommu_groups");
    assert!(v.need[0].command.contains("/sys/kernel/iommu_groups"));
}

/// AMD's "PCIe Dummy Host Bridge" (class 0600, no driver) sits in the root port's group on
/// Matisse, Vermeer and Phoenix boards. The lspci lines are real (tests/hosts/
/// a-amd-phoenix3-8845hs-igpu, an 8845HS host); the group listing is assembled the way those
/// boards group the iGPU's root port, the kernel log is the recorded AMD one.
#[test]
fn the_amd_dummy_host_bridge_does_not_share_the_group() {
    let lspci = "00:01.0 Host bridge [0600]: Advanced Micro Devices, Inc. [AMD] Phoenix Dummy Host Bridge [1022:14ea]
c6:00.0 VGA compatible controller [0300]: Advanced Micro Devices, Inc. [AMD/ATI] Phoenix3 [1002:1900] (rev c5)
\tKernel driver in use: vfio-pci
c6:00.1 Audio device [0403]: Advanced Micro Devices, Inc. [AMD/ATI] Rembrandt Radeon High Definition Audio Controller [1002:1640]
\tKernel driver in use: vfio-pci
";
    let groups = "/sys/kernel/iommu_groups/1/devices/0000:00:01.0
/sys/kernel/iommu_groups/1/devices/0000:c6:00.0
/sys/kernel/iommu_groups/1/devices/0000:c6:00.1
";
    let dmesg = read("recorded/dmesg-iommu/amd-acs-override-unknown-option-rtx4070.txt")
        .lines()
        .filter(|l| !l.contains("ACS"))
        .collect::<Vec<_>>()
        .join("\n");
    let text = format!(
        "### pvegpu facts 1\n### pvegpu uname\n6.8.12-8-pve\n### pvegpu proc-cmdline\nBOOT_IMAGE=/boot/vmlinuz-6.8.12-8-pve root=/dev/mapper/pve-root ro quiet\n### pvegpu lspci\n{lspci}### pvegpu iommu-groups\n{groups}### pvegpu kernel-log\n{dmesg}\n"
    );
    let f = facts(&text);
    assert_eq!(verdict::iommu(&f), State::On);
    assert_eq!(verdict::interrupt_remapping(&f), State::On);
    let v = judge(&f, "0000:c6:00.0", &Accepted::default());
    assert!(!codes(&v).contains(&Code::SharedGroup), "{v:?}");
    // the iGPU is the host's only display device
    assert_eq!(codes(&v), vec![Code::OnlyDisplay]);
    // the same group with a driver on the bridge-class device is shared
    let bound = text.replace(
        "Dummy Host Bridge [1022:14ea]\n",
        "Dummy Host Bridge [1022:14ea]\n\tKernel driver in use: some_host_driver\n",
    );
    let v = judge(&facts(&bound), "0000:c6:00.0", &Accepted::default());
    assert!(codes(&v).contains(&Code::SharedGroup), "{v:?}");
}

#[test]
fn amd_iommuv2_not_available_is_no_evidence_of_an_iommu() {
    let log = pvegpu::facts::kernel_log::parse(
        "[    1.120000] AMD-Vi: AMD IOMMUv2 functionality not available on this system - This is not a bug.\n",
    );
    assert!(!log.iommu_initialised);
}

#[test]
fn interrupt_remapping_from_proc_interrupts_when_the_log_rotated() {
    let text = read("facts/amd-grub.facts");
    let f = amd_host("");
    assert_eq!(verdict::interrupt_remapping(&f), State::Unknown);
    let v = judge(&f, "0000:08:00.0", &Accepted::default());
    assert!(
        codes(&v).contains(&Code::InterruptRemappingUnknown),
        "{v:?}"
    );
    let with_chips =
        set_section(&text, "kernel-log", "") + "### pvegpu interrupts-ir\n14\n### pvegpu exit 0\n";
    assert_eq!(verdict::interrupt_remapping(&facts(&with_chips)), State::On);
}

#[test]
fn the_probe_of_the_test_host_judges_every_verdict_from_known_facts() {
    // the real probe of the QEMU test host: boot_vga, groups and drivers all come from sysfs
    let f = facts(&read("probe/testhost-bookworm-fresh.txt"));
    assert!(f.groups_listed && f.drivers_known);
    let vga = judge(&f, "0000:00:01.0", &Accepted::default());
    assert_eq!(vga.verdict, Verdict::Refused);
    assert!(codes(&vga).contains(&Code::BootVga));
    assert!(vga.need.is_empty());
}

/// /etc/modules and vfio.conf are as posted in tests/hosts/b-kgpe-d16-gtx1060-configs; the
/// kernel version, the blacklist line and the unsafe-interrupts option are assembled around
/// them (that host ran a kernel before 6.2, where vfio_virqfd still existed).
#[test]
fn existing_configuration_lints_name_file_and_line() {
    let modules = "# /etc/modules: kernel modules to load at boot time.\n#\n# This file contains the names of kernel modules that should be loaded\n# at boot time, one per line. Lines beginning with \"#\" are ignored.\nvfio\nvfio_iommu_type1\nvfio_pci\nvfio_virqfd\n";
    let text = read("facts/amd-grub.facts")
        + &format!("### pvegpu file /etc/modules mode=644 owner=root:root mtime=1\n{modules}")
        + "### pvegpu file /etc/modprobe.d/vfio.conf mode=644 owner=root:root mtime=1\noptions vfio-pci ids=10de:1c03,10de:10f1 disable_vga=1\n"
        + "### pvegpu file /etc/modprobe.d/blacklist.conf mode=644 owner=root:root mtime=1\nblacklist nouveau\nblacklist snd_hda_intel\n"
        + "### pvegpu file /etc/modprobe.d/iommu_unsafe_interrupts.conf mode=644 owner=root:root mtime=1\noptions vfio_iommu_type1 allow_unsafe_interrupts=1\n";
    let f = facts(&text);
    let found: Vec<(String, &str, usize)> = pvegpu::host::lints::lints(&f)
        .iter()
        .map(|l| (l.file.clone(), l.code, l.line))
        .collect();
    assert!(
        found.contains(&("/etc/modules".into(), "vfio_virqfd_merged", 8)),
        "{found:?}"
    );
    assert!(
        found.contains(&("/etc/modprobe.d/vfio.conf".into(), "ids_not_in_host", 1)),
        "{found:?}"
    );
    assert!(
        found.contains(&(
            "/etc/modprobe.d/blacklist.conf".into(),
            "blacklist_snd_hda_intel",
            2
        )),
        "{found:?}"
    );
    assert!(
        found.contains(&(
            "/etc/modprobe.d/iommu_unsafe_interrupts.conf".into(),
            "unneeded_unsafe_interrupts",
            1
        )),
        "{found:?}"
    );
    assert_eq!(found.len(), 4, "{found:?}");
}

/// A GPU on the host's nvidia driver: who uses it is known only from nvidia-smi's table.
#[test]
fn a_gpu_on_the_nvidia_driver_without_nvidia_smi_is_unknown() {
    let text = read("facts/amd-grub.facts").replacen(
        "[10de:2786] (rev a1)\n",
        "[10de:2786] (rev a1)\n\tKernel driver in use: nvidia\n",
        1,
    );
    let accept = Accepted {
        unsafe_interrupts: false,
        risks: vec![Risk::OnlyDisplay],
    };
    let v = judge(&facts(&text), "0000:08:00.0", &accept);
    assert_eq!(codes(&v), vec![Code::HostUseUnknown], "{v:?}");
    assert_eq!(v.verdict, Verdict::Unknown);
    let smi = "### pvegpu nvidia-smi\n|   0  NVIDIA GeForce RTX 4070        Off | 00000000:08:00.0 Off |                  N/A |\n| Processes:                                                                            |\n|  No running processes found                                                           |\n";
    let v = judge(&facts(&(text + smi)), "0000:08:00.0", &accept);
    assert_eq!(v.verdict, Verdict::Passable, "{v:?}");
}

/// The QEMU test host's real probe with the sysfs walk a host in VFIO's no-IOMMU mode gives
/// (`vfio.enable_unsafe_noiommu_mode=1`, no IOMMU): only the device vfio-pci holds has a group,
/// the one VFIO made and named `vfio-noiommu` (drivers/vfio/group.c).
fn noiommu_host() -> String {
    let text = read("probe/testhost-bookworm-fresh.txt");
    let walk: String = text
        .lines()
        .skip_while(|l| !l.starts_with("### pvegpu pci-devices"))
        .skip(1)
        .take_while(|l| !l.starts_with("### pvegpu "))
        .map(|l| {
            let l = without_group(l);
            if l.starts_with("0000:00:03.0") {
                l.replace("driver= ", "driver=vfio-pci ")
                    .replace("iommu_group= ", "iommu_group=0 group_name=vfio-noiommu ")
            } else {
                l
            }
        })
        .map(|l| l + "\n")
        .collect();
    // with intel_iommu=off the kernel logs no DMAR initialisation and adds no device to a group
    set_section(&set_section(&text, "pci-devices", &walk), "kernel-log", "")
}

/// Empties a probe line's `iommu_group=N`.
fn without_group(line: &str) -> String {
    line.split(' ')
        .map(|w| {
            if w.starts_with("iommu_group=") {
                "iommu_group="
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn vfio_noiommu_groups_prove_no_iommu_and_isolate_nothing() {
    let f = facts(&noiommu_host());
    assert_eq!(f.noiommu, vec!["0000:00:03.0".parse().unwrap()]);
    assert!(!f.iommu_active(), "a vfio-noiommu group is no IOMMU group");
    assert_eq!(verdict::iommu(&f), State::Off);
    let v = judge(&f, "0000:00:03.0", &Accepted::default());
    assert_eq!(v.verdict, Verdict::Refused, "{v:?}");
    assert!(codes(&v).contains(&Code::NoIommu), "{v:?}");
    assert!(
        v.reasons.iter().any(|r| r.message.contains("vfio-noiommu")),
        "{v:?}"
    );
}

#[test]
fn groups_beside_an_empty_sys_class_iommu_are_not_an_iommu() {
    let text = set_section(&read("probe/testhost-bookworm-fresh.txt"), "kernel-log", "");
    let f = facts(&format!(
        "{text}### pvegpu iommu-class\n### pvegpu exit 0\n"
    ));
    assert!(f.iommu_active());
    assert_eq!(verdict::iommu(&f), State::Off);
}

#[test]
fn groups_with_noiommu_mode_asked_for_are_unknown_without_sys_class_iommu() {
    // a pasted group listing proves nothing once no-IOMMU mode may have made the groups
    let text = set_section(
        &read("facts/amd-grub.facts"),
        "proc-cmdline",
        "BOOT_IMAGE=/boot/vmlinuz-6.8.12-8-pve root=/dev/mapper/pve-root ro quiet vfio.enable_unsafe_noiommu_mode=1\n",
    );
    let text = set_section(&text, "kernel-log", "");
    let f = facts(&text);
    assert!(f.iommu_active() && f.iommu_class.is_none());
    assert_eq!(verdict::iommu(&f), State::Unknown);
    let v = judge(&f, "0000:08:00.0", &Accepted::default());
    assert!(codes(&v).contains(&Code::IommuUnknown), "{v:?}");

    // the same asked for in modprobe.d, as the kernel reads it (a comment does not count)
    let plain = set_section(&read("facts/amd-grub.facts"), "kernel-log", "");
    let with = |conf: &str| {
        facts(&format!(
            "{plain}### pvegpu file /etc/modprobe.d/vfio.conf mode=644 owner=root:root mtime=1\n{conf}### pvegpu exit 0\n"
        ))
    };
    assert_eq!(
        verdict::iommu(&with("options vfio enable_unsafe_noiommu_mode=Y\n")),
        State::Unknown
    );
    assert_eq!(
        verdict::iommu(&with("# options vfio enable_unsafe_noiommu_mode=1\n")),
        State::On
    );
}

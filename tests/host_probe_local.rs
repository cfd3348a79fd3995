//! The real host probe (`facts::PROBE`) run by /bin/sh on a scratch tree standing in for a
//! node: its absolute paths are moved into the tree, sysfs comes from `PVEGPU_SYSFS`, and
//! Proxmox's tools are stand-ins on PATH. What it prints must parse to exactly what the tree
//! holds, whichever way the probe reads it (one process for all files, one for all network
//! interfaces, the slow tools side by side).

use pvegpu::facts::{HostFacts, PROBE, RawFacts, topology};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn tool(root: &Path, name: &str, body: &str) {
    let p = root.join("bin").join(name);
    write(
        root,
        &format!("bin/{name}"),
        &format!("#!/bin/sh\n{body}\n"),
    );
    let mut perm = std::fs::metadata(&p).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&p, perm).unwrap();
}

/// A node with a link, a file without its final newline, an empty file, two kernels of which
/// one has an initramfs, the modules folder of a removed one, and network interfaces: two PCI NICs, a bridge over one, a bond over
/// the other, a tap and lo.
fn node_tree(root: &Path) {
    write(
        root,
        "etc/kernel/cmdline",
        "root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=on",
    );
    write(root, "etc/modules", "vfio\nvfio_pci\n");
    std::fs::create_dir_all(root.join("etc/modules-load.d")).unwrap();
    symlink("../modules", root.join("etc/modules-load.d/modules.conf")).unwrap();
    write(
        root,
        "etc/modprobe.d/pve-blacklist.conf",
        "blacklist nvidiafb\n",
    );
    write(root, "etc/modprobe.d/empty.conf", "");
    write(
        root,
        "lib/modules/6.8.12-10-pve/modules.builtin",
        "kernel/drivers/vfio/vfio.ko\n",
    );
    write(root, "lib/modules/6.8.12-9-pve/modules.builtin", "");
    write(root, "lib/modules/6.5.13-6-pve/modules.builtin", "");
    write(root, "boot/vmlinuz-6.8.12-10-pve", "");
    write(root, "boot/vmlinuz-6.8.12-9-pve", "");
    write(root, "boot/initrd.img-6.8.12-10-pve", "");
    let sys = root.join("sys");
    let devices = [
        (
            "eno1",
            "devices/pci0000:00/0000:00:1c.0/0000:04:00.0/net/eno1",
        ),
        (
            "eno2",
            "devices/pci0000:00/0000:00:1c.1/0000:05:00.0/net/eno2",
        ),
        ("vmbr0", "devices/virtual/net/vmbr0"),
        ("bond0", "devices/virtual/net/bond0"),
        ("tap100i0", "devices/virtual/net/tap100i0"),
        ("lo", "devices/virtual/net/lo"),
    ];
    std::fs::create_dir_all(sys.join("class/net")).unwrap();
    for (name, path) in devices {
        std::fs::create_dir_all(sys.join(path)).unwrap();
        symlink(format!("../../{path}"), sys.join("class/net").join(name)).unwrap();
    }
    std::fs::create_dir_all(sys.join("devices/virtual/net/vmbr0/brif")).unwrap();
    symlink(
        "../../../../pci0000:00/0000:00:1c.0/0000:04:00.0/net/eno1/brport",
        sys.join("devices/virtual/net/vmbr0/brif/eno1"),
    )
    .unwrap();
    symlink(
        "../../../pci0000:00/0000:00:1c.1/0000:05:00.0/net/eno2",
        sys.join("devices/virtual/net/bond0/lower_eno2"),
    )
    .unwrap();
}

/// Stand-ins for what a Proxmox node has. `qm list` (started before `pvecm`) answers only
/// once `pvecm status` has run: the two can only both succeed when they run side by side.
fn node_tools(root: &Path) {
    let r = root.display();
    tool(
        root,
        "pveversion",
        "echo 'pve-manager/9.1.1/0 (running kernel: 6.8.12-10-pve)'",
    );
    tool(
        root,
        "qm",
        &format!(
            "i=0; while [ ! -e {r}/pvecm-ran ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\n\
             [ -e {r}/pvecm-ran ] || {{ echo 'qm ran before pvecm: the probe ran them in turn' >&2; exit 9; }}\n\
             echo '      VMID NAME                 STATUS     MEM(MB)    BOOTDISK(GB) PID'\n\
             echo '       100 gpu1                 running    16384             64.00 4242'"
        ),
    );
    tool(
        root,
        "pvecm",
        &format!("touch {r}/pvecm-ran; echo 'Quorate:          Yes'"),
    );
    tool(
        root,
        "lsinitramfs",
        "echo usr/lib/modules/6.8.12-10-pve/kernel/drivers/vfio/pci/vfio-pci.ko; echo conf/modules; echo etc/modprobe.d/pvegpu-vfio.conf",
    );
}

/// PROBE with the node's paths moved into `root`.
fn moved_probe(root: &Path) -> String {
    let r = root.display().to_string();
    let mut text = PROBE.to_string();
    for dir in [
        "/etc/",
        "/lib/modules",
        "/boot/",
        "/usr/local/lib/pvegpu",
        "/var/lib/pvegpu",
    ] {
        text = text.replace(dir, &format!("{r}{dir}"));
    }
    text.replace("lsinitramfs ", &format!("{r}/bin/lsinitramfs "))
}

fn run_probe(root: &Path, tmpdir: &Path) -> String {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(moved_probe(root))
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", root.join("bin").display()),
        )
        .env("PVEGPU_SYSFS", root.join("sys"))
        .env("TMPDIR", tmpdir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn check_facts(root: &Path, text: &str) {
    let r = root.display().to_string();
    let raw = RawFacts::parse(text).unwrap();
    let facts = HostFacts::from_partial(&raw).unwrap();
    let file = |p: &str| facts.files.get(&format!("{r}{p}"));

    let cmdline = file("/etc/kernel/cmdline").expect("cmdline read");
    assert_eq!(
        cmdline.content.trim_end(),
        "root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=on"
    );
    assert!(cmdline.mode.is_some() && cmdline.owner.is_some() && cmdline.mtime.is_some());
    let link = file("/etc/modules-load.d/modules.conf").expect("the link read");
    assert_eq!(link.content, "vfio\nvfio_pci\n");
    assert_eq!(
        link.link.as_deref(),
        Some(format!("{r}/etc/modules").as_str())
    );
    assert_eq!(file("/etc/modules").unwrap().link, None);
    assert_eq!(file("/etc/modprobe.d/empty.conf").unwrap().content, "");
    assert_eq!(
        file("/etc/modprobe.d/pve-blacklist.conf").unwrap().content,
        "blacklist nvidiafb\n"
    );
    assert!(
        file("/etc/default/grub").is_none(),
        "absent files are not listed"
    );

    let kernels: Vec<_> = facts
        .kernels
        .iter()
        .map(|k| (k.version.as_str(), k.initrd_mtime.is_some()))
        .collect();
    assert!(kernels.contains(&("6.8.12-10-pve", true)), "{kernels:?}");
    assert!(kernels.contains(&("6.8.12-9-pve", false)), "{kernels:?}");
    assert_eq!(
        kernels.len(),
        2,
        "modules left by a removed kernel: {kernels:?}"
    );
    assert_eq!(facts.initramfs.len(), 1, "{:?}", facts.initramfs);
    assert!(facts.initramfs[0].has_vfio_pci);

    assert_eq!(facts.guests.len(), 1, "qm list ran beside pvecm: {text}");
    assert_eq!(facts.quorate, Some(true));

    let net = raw.ok_body("net-devices").unwrap();
    let mut ifaces: Vec<&str> = net.lines().filter(|l| l.starts_with("iface ")).collect();
    ifaces.sort();
    let sys = root.join("sys").display().to_string();
    assert_eq!(
        ifaces,
        [
            "iface bond0 device= lower=eno2".to_string(),
            format!("iface eno1 device={sys}/devices/pci0000:00/0000:00:1c.0/0000:04:00.0 lower="),
            format!("iface eno2 device={sys}/devices/pci0000:00/0000:00:1c.1/0000:05:00.0 lower="),
            "iface lo device= lower=".to_string(),
            "iface tap100i0 device= lower=".to_string(),
            "iface vmbr0 device= lower=eno1".to_string(),
        ]
    );
    // the management NIC is found through the bridge, as on a node that SSH reaches over vmbr0
    let ifaces = ifaces.join("\n");
    let mgmt = topology::parse_net(&format!(
        "ssh_connection=10.0.0.2 51234 10.0.0.45 22\naddr 5: vmbr0    inet 10.0.0.45/24 scope global vmbr0\n{ifaces}\n"
    ));
    assert_eq!(
        mgmt.nics.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        ["0000:04:00.0"]
    );
}

#[test]
fn the_host_probe_reads_a_node_tree_whole_with_the_slow_tools_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("node");
    node_tree(&root);
    node_tools(&root);
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let text = run_probe(&root, &tmp);
    check_facts(&root, &text);
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "the probe removes its temporary folder"
    );
}

#[test]
fn without_a_temporary_folder_the_probe_reads_the_same_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("node");
    node_tree(&root);
    node_tools(&root);
    // pvecm has run once already, so qm can answer though the two now run in turn
    std::fs::write(root.join("pvecm-ran"), "").unwrap();
    let text = run_probe(&root, &dir.path().join("no-such-folder"));
    check_facts(&root, &text);
}

/// Two GPUs in the sysfs layout of a host in VFIO's no-IOMMU mode: the one vfio-pci holds is in
/// the group VFIO made and named `vfio-noiommu` (drivers/vfio/group.c); the other has no group.
fn noiommu_tree(root: &Path) {
    let sys = root.join("sys");
    for (addr, held) in [("0000:01:00.0", true), ("0000:02:00.0", false)] {
        let dev = format!("devices/pci0000:00/0000:00:01.0/{addr}");
        for (attr, value) in [
            ("class", "0x030000"),
            ("vendor", "0x10de"),
            ("device", "0x1b80"),
        ] {
            write(&sys, &format!("{dev}/{attr}"), &format!("{value}\n"));
        }
        std::fs::create_dir_all(sys.join("bus/pci/devices")).unwrap();
        symlink(
            format!("../../../{dev}"),
            sys.join("bus/pci/devices").join(addr),
        )
        .unwrap();
        if held {
            write(&sys, "kernel/iommu_groups/0/name", "vfio-noiommu\n");
            write(&sys, "bus/pci/drivers/vfio-pci/.keep", "");
            symlink(
                "../../../../kernel/iommu_groups/0",
                sys.join(&dev).join("iommu_group"),
            )
            .unwrap();
            symlink(
                "../../../../bus/pci/drivers/vfio-pci",
                sys.join(&dev).join("driver"),
            )
            .unwrap();
        }
    }
}

#[test]
fn the_probe_tells_a_vfio_noiommu_group_from_an_iommu_group() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("node");
    node_tree(&root);
    node_tools(&root);
    noiommu_tree(&root);
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let text = run_probe(&root, &tmp);
    let facts = HostFacts::from_partial(&RawFacts::parse(&text).unwrap()).unwrap();
    let held: pvegpu::pci::PciAddress = "0000:01:00.0".parse().unwrap();
    assert_eq!(facts.noiommu, vec![held], "{text}");
    let dev = facts.device(&held).unwrap();
    assert_eq!(dev.driver.as_deref(), Some("vfio-pci"));
    assert_eq!(dev.iommu_group, None, "a no-IOMMU group is no IOMMU group");
    assert_eq!(
        pvegpu::host::verdict::iommu(&facts),
        pvegpu::host::verdict::State::Off
    );
}

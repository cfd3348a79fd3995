//! Shared test helpers: fixture loading and small edits of facts text.
#![allow(dead_code)]

pub mod gate;
pub mod sshd;

use pvegpu::facts::{HostFacts, RawFacts};
use pvegpu::inventory::Inventory;
use std::path::{Path, PathBuf};

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(fixture(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

pub fn facts(text: &str) -> HostFacts {
    HostFacts::from_raw(&RawFacts::parse(text).expect("facts parse")).expect("facts complete")
}

pub fn inventory(toml: &str) -> Inventory {
    Inventory::parse(Path::new("inventory.toml"), toml).expect("inventory parses")
}

/// Two GTX 1080 as the guest's `lspci -nnk` lists them with no driver bound: the tests put
/// them into probe output from guests that have no GPU (the QEMU test host, the chroot guest).
pub const TWO_GTX1080_LSPCI: &str = "0000:00:10.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [GeForce GTX 1080] [10de:1b80] (rev a1)\n\tSubsystem: NVIDIA Corporation GP104 [GeForce GTX 1080] [10de:119e]\n\tKernel modules: nouveau\n0000:00:11.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [GeForce GTX 1080] [10de:1b80] (rev a1)\n\tSubsystem: NVIDIA Corporation GP104 [GeForce GTX 1080] [10de:119e]\n\tKernel modules: nouveau\n";

/// The guest steps whose packages and files come from Debian's own archive (the rest need
/// NVIDIA's repositories or a loaded driver).
pub const DEBIAN_ARCHIVE_STEPS: [&str; 8] = [
    "debian-components",
    "kernel-headers",
    "nouveau-blacklist",
    "driver",
    "driver-hold",
    "dkms-modules",
    "initramfs",
    "container-runtime",
];

/// Replace the body of the first section whose marker line starts with `### pvegpu {head}`.
pub fn set_section(text: &str, head: &str, body: &str) -> String {
    let marker = format!("### pvegpu {head}");
    let mut out = String::new();
    let mut skipping = false;
    let mut done = false;
    for line in text.lines() {
        if skipping {
            if line.starts_with("### pvegpu ") {
                skipping = false;
                if line.starts_with("### pvegpu exit") {
                    continue;
                }
            } else {
                continue;
            }
        }
        if !done && line.starts_with(&marker) {
            out.push_str(line);
            out.push('\n');
            out.push_str(body);
            if !body.is_empty() && !body.ends_with('\n') {
                out.push('\n');
            }
            skipping = true;
            done = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(done, "no section {head}");
    out
}

/// Drop the first section whose marker line starts with `### pvegpu {head}`, if any.
pub fn remove_section(text: &str, head: &str) -> String {
    let marker = format!("### pvegpu {head}");
    let mut out = String::new();
    let (mut skipping, mut done) = (false, false);
    for line in text.lines() {
        if skipping {
            let next = line.starts_with("### pvegpu ");
            skipping = !next;
            if !next || line.starts_with("### pvegpu exit") {
                continue;
            }
        }
        if !done && line.starts_with(&marker) {
            (skipping, done) = (true, true);
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Append a section at the end.
pub fn add_section(text: &str, head: &str, body: &str) -> String {
    format!("{text}### pvegpu {head}\n{body}")
}

/// The node after pvegpu applied `p` and rebooted: written files in place, fresh initramfs
/// images carrying them, targets on vfio-pci.
pub fn converge(text: &str, p: &pvegpu::host::plan::HostPlan) -> String {
    let mut out = text.to_string();
    for c in &p.changes {
        if let pvegpu::core::plan::Action::WriteFile {
            path,
            content,
            mode,
            ..
        } = &c.action
        {
            let head = format!("file {path}");
            let body = content.clone();
            if out.contains(&format!("### pvegpu {head} ")) {
                out = set_section(&out, &head, &body);
            } else {
                out = add_section(
                    &out,
                    &format!("{head} mode={mode} owner=root:root mtime=1800000000"),
                    &body,
                );
            }
        }
    }
    if p.changes.iter().any(
        |c| matches!(&c.action, pvegpu::core::plan::Action::Run { command } if command.starts_with("update-initramfs")),
    ) {
        let f = facts(&out);
        for k in f.kernels.iter().filter(|k| k.initrd_mtime.is_some()) {
            // the rebuilt image replaces the old one: a facts file holds one per kernel
            out = remove_section(&out, &format!("initramfs {} ", k.version));
            out = add_section(
                &out,
                &format!("initramfs {} mtime=1800000100", k.version),
                &format!(
                    "usr/lib/modules/{0}/kernel/drivers/vfio/pci/vfio-pci.ko\netc/modprobe.d/pvegpu-vfio.conf\n",
                    k.version
                ),
            );
        }
    }
    for b in &p.bind {
        // lspci -nnk form: the driver line follows the device's head line
        let short = b.address.trim_start_matches("0000:");
        let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
        if let Some(i) = lines
            .iter()
            .position(|l| l.starts_with(short) || l.starts_with(&b.address))
        {
            let mut j = i + 1;
            while j < lines.len() && lines[j].starts_with('\t') {
                if lines[j].contains("Kernel driver in use:") {
                    lines.remove(j);
                    continue;
                }
                j += 1;
            }
            lines.insert(i + 1, "\tKernel driver in use: vfio-pci".into());
        }
        out = lines.join("\n") + "\n";
        out = out.replace(
            &format!("{} class=", b.address),
            &format!("{} was=", b.address),
        );
    }
    out
}

/// The real probe of the converged QEMU test host, brought up to this version's files for
/// node `pvetest` of the inventory at `inv` (the probe predates two comment lines and
/// `vfio_virqfd`), written as `pvetest.facts` beside the inventory: its host plan is empty.
pub fn converged_testhost_facts(inv: &Path) -> PathBuf {
    let text = read("probe/testhost-bookworm-converged.txt");
    let inventory = Inventory::load(inv).unwrap();
    let node = inventory.node("pvetest").unwrap();
    let mut p = pvegpu::host::planner::plan("pvetest", node, &facts(&text)).unwrap();
    p.bind.clear(); // the devices are on vfio-pci in the probe already
    let converged = converge(&text, &p);
    let again = pvegpu::host::planner::plan("pvetest", node, &facts(&converged)).unwrap();
    assert!(again.is_empty(), "{}", again.render_text());
    let path = inv.with_file_name("pvetest.facts");
    std::fs::write(&path, converged).unwrap();
    path
}

/// Runs the pvegpu binary offline as a user would (no colour, no inventory from the
/// environment), under `timeout 60` so a read that blocks fails the test instead of hanging
/// it: (exit code, stdout, stderr).
pub fn pvegpu_cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_pvegpu"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("PVEGPU_INVENTORY")
        .env_remove("PVEGPU_TOKEN_SECRET")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

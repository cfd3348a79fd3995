//! An apply interrupted anywhere converges (#20), the host phase on the executor's
//! scratch-folder harness: the real host executor runs osm45's real plan (tests/fixtures/
//! facts/osm45.facts: systemd-boot, two GTX 1080) against a scratch folder that stands in for
//! the node's root. Its scripts run for real under /bin/sh, their paths moved into the
//! folder; `update-initramfs` and `proxmox-boot-tool` are stand-ins that write each kernel's
//! image listing (what `lsinitramfs` would show) and record the refresh; the probe's answer is
//! the fixture with its files, kernels and initramfs sections read back from the folder.
//! The run is cut before each step (the connection dropped) and in the middle of each step
//! (the shell killed just before a write's rename, `update-initramfs` killed after its first
//! kernel); then gather, plan and apply once more must leave the folder exactly as one
//! uninterrupted apply does, with nothing left to do but the reboot. The reboot itself is
//! proven on the QEMU test host (tests/testhost_e2e.rs).

#[path = "support/cut.rs"]
mod cut;
mod support;
use cut::{Cut, cut_write, described, differing, files_under, run_cut};
use pvegpu::core::plan::{Action, Change};
use pvegpu::core::progress::Progress;
use pvegpu::host::exec::{Executor, Options};
use pvegpu::inventory::{Inventory, Node};
use pvegpu::transport::ssh::SshError;
use pvegpu::transport::{Connector, Remote, RemoteOutput};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

const NODE: &str = "osm45";
const FILE_MTIME: u64 = 1_704_000_000;
const INITRD_MTIME: u64 = 1_735_000_000;

fn at(epoch: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(epoch)
}

/// The node's root: the fixture's files, its kernels' images, the stand-in commands.
struct Scratch {
    dir: tempfile::TempDir,
    fixture: String,
    kernels: Vec<String>,
}

/// The fixture's sections: (marker line, body lines), `exit` lines kept with their section.
fn sections(text: &str) -> (Vec<&str>, Vec<(&str, Vec<&str>)>) {
    let mut head = Vec::new();
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        if line.starts_with("### pvegpu ") && !line.starts_with("### pvegpu exit") {
            out.push((line, Vec::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push(line);
        } else {
            head.push(line);
        }
    }
    (head, out)
}

const UPDATE_INITRAMFS: &str = r#"#!/bin/sh
# stand-in for update-initramfs -u -k all: each kernel's image lists what lsinitramfs would
# show (vfio-pci when the module lists ask for it, every modprobe.d file)
set -eu
root=ROOT
for k in $(cat "$root/kernels"); do
  {
    if grep -qs '^vfio.pci' "$root/etc/initramfs-tools/modules"; then
      echo "usr/lib/modules/$k/kernel/drivers/vfio/pci/vfio-pci.ko"
    fi
    for f in "$root"/etc/modprobe.d/*.conf; do [ -e "$f" ] && echo "etc/modprobe.d/${f##*/}"; done
  } > "$root/boot/initrd.img-$k.new"
  mv "$root/boot/initrd.img-$k.new" "$root/boot/initrd.img-$k"
  if [ -n "${PVEGPU_TEST_DIE_MIDWAY:-}" ]; then kill -KILL $$; fi
done
"#;

const BOOT_TOOL: &str = r#"#!/bin/sh
# stand-in for proxmox-boot-tool refresh: the boot entries carry /etc/kernel/cmdline
cp ROOT/etc/kernel/cmdline ROOT/boot/entries.cmdline
"#;

impl Scratch {
    fn new(fixture: &str) -> Scratch {
        let fixture = fixture.to_string();
        let s = Scratch {
            dir: tempfile::tempdir().unwrap(),
            kernels: Vec::new(),
            fixture,
        };
        let mut kernels = Vec::new();
        let (_, secs) = sections(&s.fixture);
        for (marker, body) in &secs {
            let words: Vec<&str> = marker.split_whitespace().collect();
            match words[2] {
                "kernels" => {
                    kernels = body
                        .iter()
                        .filter(|l| !l.starts_with("### pvegpu exit"))
                        .filter_map(|l| l.split_whitespace().next())
                        .map(str::to_string)
                        .collect();
                }
                "file" => {
                    let path = s.at(words[3]);
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    if let Some(target) = words.iter().find_map(|w| w.strip_prefix("link=")) {
                        std::os::unix::fs::symlink(s.at(target), &path).unwrap();
                        continue;
                    }
                    let lines: Vec<&str> = body
                        .iter()
                        .copied()
                        .filter(|l| !l.starts_with("### pvegpu exit"))
                        .collect();
                    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
                    set_mtime(&path, FILE_MTIME);
                }
                _ => {}
            }
        }
        let root = s.root().display().to_string();
        std::fs::create_dir_all(s.at("/boot")).unwrap();
        std::fs::create_dir_all(s.at("/bin")).unwrap();
        std::fs::create_dir_all(s.at("/run")).unwrap();
        std::fs::write(s.at("/kernels"), kernels.join("\n") + "\n").unwrap();
        for k in &kernels {
            let image = s.at(&format!("/boot/initrd.img-{k}"));
            std::fs::write(&image, "").unwrap();
            set_mtime(&image, INITRD_MTIME);
        }
        for (name, text) in [
            ("update-initramfs", UPDATE_INITRAMFS),
            ("proxmox-boot-tool", BOOT_TOOL),
        ] {
            let p = s.at(&format!("/bin/{name}"));
            std::fs::write(&p, text.replace("ROOT", &root)).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Scratch { kernels, ..s }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A node path inside the folder.
    fn at(&self, node_path: &str) -> PathBuf {
        self.root().join(node_path.trim_start_matches('/'))
    }

    /// The probe's answer: the fixture, its files, kernels and initramfs read from the folder.
    fn facts(&self) -> String {
        let (head, secs) = sections(&self.fixture);
        let mut out: Vec<String> = head.iter().map(|l| l.to_string()).collect();
        for (marker, body) in &secs {
            let name = marker.split_whitespace().nth(2).unwrap();
            if ["file", "kernels", "initramfs"].contains(&name) {
                continue;
            }
            out.push(marker.to_string());
            out.extend(body.iter().map(|l| l.to_string()));
        }
        out.push("### pvegpu kernels".into());
        for k in &self.kernels {
            out.push(format!(
                "{k} vmlinuz=yes initrd={}",
                mtime(&self.at(&format!("/boot/initrd.img-{k}")))
            ));
        }
        out.push("### pvegpu exit 0".into());
        for (path, meta) in self.node_files() {
            let real = self.at(&path);
            let link = std::fs::read_link(&real)
                .ok()
                .map(|t| format!(" link=/{}", t.strip_prefix(self.root()).unwrap().display()))
                .unwrap_or_default();
            let text = std::fs::read_to_string(&real).unwrap();
            out.push(format!(
                "### pvegpu file {path} mode={:o} owner=root:root mtime={}{link}",
                meta.permissions().mode() & 0o777,
                mtime(&real)
            ));
            out.push(text.strip_suffix('\n').unwrap_or(&text).to_string());
        }
        for k in &self.kernels {
            let image = self.at(&format!("/boot/initrd.img-{k}"));
            out.push(format!("### pvegpu initramfs {k} mtime={}", mtime(&image)));
            let listing = std::fs::read_to_string(&image).unwrap();
            out.extend(listing.lines().map(str::to_string));
            out.push("### pvegpu exit 0".into());
        }
        out.join("\n") + "\n"
    }

    /// The files the probe dumps, as node paths (what `probe.sh`'s list matches).
    fn node_files(&self) -> Vec<(String, std::fs::Metadata)> {
        let mut found = Vec::new();
        for dir in ["/etc", "/usr/local/lib/pvegpu", "/var/lib/pvegpu"] {
            found.extend(files_under(&self.at(dir)));
        }
        let read = |p: &str| {
            p == "/etc/kernel/cmdline"
                || p == "/etc/default/grub"
                || p == "/etc/modules"
                || p == "/etc/initramfs-tools/modules"
                || p == "/var/lib/pvegpu/cmdline-added"
                || p == "/etc/initramfs-tools/hooks/pvegpu-vfio"
                || p.starts_with("/usr/local/lib/pvegpu/")
                || [
                    "/etc/default/grub.d/",
                    "/etc/modules-load.d/",
                    "/etc/modprobe.d/",
                ]
                .iter()
                .any(|d| {
                    p.starts_with(d)
                        && p.ends_with(if d.contains("grub") { ".cfg" } else { ".conf" })
                })
        };
        found
            .into_iter()
            .map(|p| {
                let node = format!("/{}", p.strip_prefix(self.root()).unwrap().display());
                (node, p)
            })
            .filter(|(node, _)| read(node))
            .map(|(node, p)| (node, std::fs::metadata(p).unwrap()))
            .collect()
    }

    /// Every file of the folder but pvegpu's backups (named by run), with its mode.
    fn tree(&self) -> BTreeMap<String, String> {
        files_under(self.root())
            .into_iter()
            .filter(|p| !p.starts_with(self.at("/var/lib/pvegpu/backups")))
            .map(|p| {
                let rel = p.strip_prefix(self.root()).unwrap().display().to_string();
                let what = described(&p);
                // the folder's own name differs from one run to the next
                (
                    rel,
                    what.replace(&self.root().display().to_string(), "ROOT"),
                )
            })
            .collect()
    }
}

fn mtime(p: &Path) -> u64 {
    std::fs::metadata(p)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn set_mtime(p: &Path, epoch: u64) {
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(at(epoch))
        .unwrap();
}

/// The node: scripts run by /bin/sh in the scratch folder; one step's script is cut.
#[derive(Clone)]
struct ScratchNode {
    scratch: Arc<Scratch>,
    /// (the step's index among the scripts that change something, how)
    cut: Option<(usize, Cut)>,
    steps_seen: Arc<Mutex<usize>>,
}

impl ScratchNode {
    fn moved(&self, script: &str) -> String {
        let root = self.scratch.root().display().to_string();
        script
            .replace("path='/", &format!("path='{root}/"))
            .replace("/run/pvegpu.lock", &format!("{root}/run/pvegpu.lock"))
    }

    fn run(&self, script: &str, cut: Option<Cut>) -> RemoteOutput {
        let script = cut_write(&self.moved(script), cut.unwrap_or(Cut::Before));
        let midway = cut == Some(Cut::Midway);
        let mut shell = std::process::Command::new("sh");
        shell
            .arg("-c")
            .arg(&script)
            .env("PVEGPU_STATE", self.scratch.at("/var/lib/pvegpu"))
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.scratch.at("/bin").display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            );
        run_cut(shell, midway)
    }
}

impl Remote for ScratchNode {
    fn destination(&self) -> &str {
        "root@osm45"
    }

    async fn run_script(&self, script: &str) -> Result<RemoteOutput, SshError> {
        if script.contains("### pvegpu facts 1") {
            return Ok(RemoteOutput {
                status: Some(0),
                stdout: self.scratch.facts(),
                stderr: String::new(),
            });
        }
        let index = {
            let mut n = self.steps_seen.lock().unwrap();
            *n += 1;
            *n - 1
        };
        let dropped = || SshError::Run {
            destination: "root@osm45".into(),
            detail: "Connection reset by peer".into(),
        };
        match self.cut {
            Some((i, Cut::Before)) if i == index => Err(dropped()),
            Some((i, cut)) if i == index => {
                self.run(script, Some(cut));
                Err(dropped())
            }
            _ => Ok(self.run(script, None)),
        }
    }
}

impl Connector for ScratchNode {
    type Remote = ScratchNode;
    async fn connect(&self) -> anyhow::Result<ScratchNode> {
        Ok(self.clone())
    }
    async fn close(&self, _remote: ScratchNode) {}
}

struct Quiet;
impl Progress for Quiet {
    fn say(&self, _: &str) {}
}

fn node() -> (Inventory, String) {
    let inv = Inventory::load(&support::fixture("../../inventories/osm45.toml")).unwrap();
    (inv, NODE.to_string())
}

/// Gather (the probe's answer) and plan, the reboot left out: what an apply would change
/// before rebooting.
fn plan_now(
    scratch: &Scratch,
    node: &Node,
) -> (
    pvegpu::facts::HostFacts,
    Vec<Change>,
    pvegpu::host::plan::HostPlan,
) {
    let facts = pvegpu::host::gather::from_text(NODE, "scratch", scratch.facts())
        .unwrap()
        .facts;
    let mut plan = pvegpu::host::planner::plan(NODE, node, &facts).unwrap();
    assert!(plan.refusals.is_empty(), "{:?}", plan.refusals);
    plan.changes.retain(|c| !matches!(c.action, Action::Reboot));
    (facts, plan.changes.clone(), plan)
}

async fn apply(
    scratch: &Arc<Scratch>,
    node: &Node,
    cut: Option<(usize, Cut)>,
) -> anyhow::Result<usize> {
    let (facts, changes, plan) = plan_now(scratch, node);
    let connector = ScratchNode {
        scratch: scratch.clone(),
        cut,
        steps_seen: Arc::default(),
    };
    let options = Options {
        verify: false,
        ..Options::default()
    };
    let mut exec = Executor::new(NODE, node, options, &Quiet, connector);
    exec.execute(&plan, &facts).await?;
    Ok(changes.len())
}

/// osm45 as the seed found it, and the same node before `intel_iommu=on iommu=pt` were on its
/// command line (so the sweep also cuts the command line's write and the boot entries'
/// refresh).
fn fixtures() -> Vec<(&'static str, String)> {
    let seed = support::read("facts/osm45.facts");
    let bare = seed.replace(" intel_iommu=on iommu=pt", "");
    assert_ne!(seed, bare);
    vec![("osm45", seed), ("osm45 without the IOMMU words", bare)]
}

#[tokio::test]
async fn a_host_apply_cut_anywhere_converges_on_the_next() {
    let (inv, name) = node();
    let node = inv.node(&name).unwrap();
    for (what, fixture) in fixtures() {
        let reference = Arc::new(Scratch::new(&fixture));
        let before = reference.tree();
        let steps = apply(&reference, node, None).await.unwrap();
        let done = reference.tree();
        assert_ne!(before, done);
        assert!(steps >= 4, "{what}: {steps} steps");
        // what is left before the reboot (a boot entries' refresh while the running kernel
        // lacks the words) is what any run leaves
        let (_, reference_left, _) = plan_now(&reference, node);
        assert!(
            reference_left
                .iter()
                .all(|c| matches!(c.action, Action::Run { .. }) && c.needs_reboot),
            "{what}: an uninterrupted apply left {reference_left:#?}"
        );

        let mut tried = 0;
        for index in 0..steps {
            for cut in [Cut::Before, Cut::Midway, Cut::After] {
                let scratch = Arc::new(Scratch::new(&fixture));
                let cut_run = apply(&scratch, node, Some((index, cut))).await;
                assert!(
                    cut_run.is_err(),
                    "{what}: step {index} ({cut:?}) was not cut"
                );
                apply(&scratch, node, None).await.unwrap_or_else(|e| {
                    panic!("{what}: step {index} ({cut:?}): the next apply failed: {e:#}")
                });
                let (_, left, _) = plan_now(&scratch, node);
                assert_eq!(
                    left, reference_left,
                    "{what}: step {index} ({cut:?}): a second apply leaves another plan"
                );
                let after = scratch.tree();
                let differs = differing(&done, &after);
                assert!(
                    differs.is_empty(),
                    "{what}: step {index} ({cut:?}): differs from an uninterrupted apply: {differs:?}\n{after:#?}"
                );
                tried += 1;
            }
        }
        eprintln!(
            "host ({what}): {steps} steps, each cut before, midway and after: {tried} runs, all converged"
        );
    }
}

//! An apply interrupted anywhere converges (#20), the guest phase against a local test guest:
//! the real guest executor runs the seed guest's real plan (tests/fixtures/guest/
//! gtx1080-debian12-fresh.facts: Debian 12, two GTX 1080 on nouveau, Triton with Docker), and
//! its scripts run unmodified, as root, in a scratch guest on this machine: a private mount
//! namespace whose root is an overlay of this machine's root (so every write lands in a
//! scratch folder), with the folders the steps change (/etc/apt, /etc/modprobe.d,
//! /etc/docker, /usr/share/keyrings, /boot, /lib/modules, /var/lib/pvegpu, ...) bound from a
//! scratch copy of the seed guest. The real guest probe gathers the facts there; only what
//! no scratch folder can have (the GPUs, the loaded modules, the running kernel, hostname,
//! os-release, Secure Boot) is the fixture's. The package tools, the toolkit and the GPU
//! commands are stand-ins (tests/guest_interrupted/stand-ins.sh) that keep dpkg's states.
//!
//! Each of the plan's steps before the reboot is cut in the middle (a write's shell killed
//! before its rename; a command's whole process group killed halfway through its work, as a
//! crash or an OOM kill would) and after it (the work done, the answer lost); the first step
//! is also cut before it starts (the connection dropped). After these cuts the workstation
//! never reaches the guest again, so the run stops there. Each command is also run once with
//! its connection dropped while it runs and the guest reachable again: the step goes on,
//! detached, and the run must go on by connecting again and waiting for it. Then gather, plan and apply once more
//! must leave the guest exactly as one uninterrupted apply does, with only the reboot left.
//! The reboot is proven on the QEMU test host (tests/guest_testhost_e2e.rs). Needs root and
//! mount namespaces (.ci/run has both).

#[path = "support/cut.rs"]
mod cut;
mod support;
use cut::{Cut, cut_write, described, differing, files_under, is_write, run_cut};
use pvegpu::core::plan::{Action, Change};
use pvegpu::core::progress::Progress;
use pvegpu::guest::exec::{GuestExecutor, GuestOptions};
use pvegpu::guest::{GuestFacts, GuestPlan};
use pvegpu::inventory::guest::GuestSpec;
use pvegpu::transport::ssh::SshError;
use pvegpu::transport::{Connector, Remote, RemoteOutput};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::gate::{self, Gated, Need};

const FIXTURE: &str = "guest/gtx1080-debian12-fresh.facts";
const SPEC: &str = "runtime = \"docker\"\n[triton]\nmodel_repository = \"/srv/triton/models\"\nbackend = \"onnx\"\n";
const KERNEL: &str = "6.1.0-22-amd64";
/// When the seed guest was installed (its sources.list's mtime in the fixture).
const INSTALLED: u64 = 1_719_669_600;
const MODELS: [&str; 2] = ["nutriscore", "price_tag_detection"];
/// The folders the guest's steps change, bound from the scratch copy over this machine's.
const OWNED: [&str; 11] = [
    "etc/apt",
    "etc/modprobe.d",
    "etc/docker",
    "etc/pvegpu",
    "etc/cdi",
    "usr/share/keyrings",
    "boot",
    "lib/modules",
    "var/lib/pvegpu",
    "var/lib/pvegpu-test",
    "srv",
];
/// What the stand-ins answer for, under /usr/local/sbin (first on the probe's PATH).
const STAND_INS: [&str; 14] = [
    "apt-get",
    "apt-mark",
    "dpkg",
    "dpkg-query",
    "curl",
    "gpg",
    "update-initramfs",
    "nvidia-ctk",
    "systemctl",
    "docker",
    "podman",
    "nvidia-smi",
    "dkms",
    "mokutil",
];
/// Mounts an overlay of / in a throwaway mount namespace (root with CAP_SYS_ADMIN, overlayfs).
const OVERLAY_WORKS: &str = "d=$(mktemp -d) && mkdir $d/u $d/w $d/m && unshare -m --propagation private mount -t overlay o -o lowerdir=/,upperdir=$d/u,workdir=$d/w $d/m; r=$?; rm -rf \"$d\"; exit $r";

/// Sections of the probe's answer no scratch guest can have: the fixture's are used.
const HARDWARE: [&str; 9] = [
    "hostname",
    "os-release",
    "uname",
    "boot-id",
    "secure-boot",
    "secure-boot-efivar",
    "mok-keys",
    "lspci",
    "proc-modules",
];

/// The whole section `name` (marker, body, exit line) of a probe text.
fn whole_section(text: &str, name: &str) -> Option<String> {
    let marker = format!("### pvegpu {name}");
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if !inside && (line == marker || line.starts_with(&format!("{marker} "))) {
            inside = true;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
            if line.starts_with("### pvegpu exit") {
                return Some(out);
            }
        }
    }
    None
}

fn body(section: &str) -> Vec<&str> {
    section
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("### pvegpu exit"))
        .collect()
}

/// The seed guest as a running scratch guest: its mount namespace is held by one process;
/// every script enters it and runs chrooted into the overlay.
struct Guest {
    dir: tempfile::TempDir,
    holder: Child,
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

impl Guest {
    fn start() -> Guest {
        let dir = tempfile::tempdir().unwrap();
        let g = |p: &str| dir.path().join(p);
        for d in ["upper", "work", "merged"] {
            std::fs::create_dir_all(g(d)).unwrap();
        }
        for d in OWNED {
            std::fs::create_dir_all(g(&format!("state/{d}"))).unwrap();
        }
        let fixture = support::read(FIXTURE);
        let state = |p: &str| g(&format!("state/{p}"));
        let sources = whole_section(&fixture, "file /etc/apt/sources.list").unwrap();
        let sources = body(&sources).join("\n") + "\n";
        std::fs::write(state("etc/apt/sources.list"), &sources).unwrap();
        std::fs::create_dir_all(state("etc/apt/sources.list.d")).unwrap();
        std::fs::create_dir_all(state("etc/apt/keyrings")).unwrap();
        let keyrings = whole_section(&fixture, "keyrings").unwrap();
        let mut dir_now = "";
        for line in body(&keyrings) {
            if let Some(d) = line.strip_suffix(':') {
                dir_now = d;
            } else if !line.is_empty() && dir_now == "/usr/share/keyrings" {
                std::fs::write(state(&format!("usr/share/keyrings/{line}")), "debian key\n")
                    .unwrap();
            }
        }
        std::fs::write(state(&format!("boot/vmlinuz-{KERNEL}")), "kernel\n").unwrap();
        // the image the netinst made, long before any step of this apply
        let image = state(&format!("boot/initrd.img-{KERNEL}"));
        std::fs::write(&image, "").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&image)
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(INSTALLED))
            .unwrap();
        std::fs::create_dir_all(state(&format!("lib/modules/{KERNEL}/kernel"))).unwrap();
        let packages = whole_section(&fixture, "packages").unwrap();
        let status: String = body(&packages)
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") + "\n")
            .collect();
        std::fs::write(state("var/lib/pvegpu-test/status"), status).unwrap();
        std::fs::write(state("var/lib/pvegpu-test/holds"), "").unwrap();
        // the lists as the netinst's last update left them
        std::fs::write(state("var/lib/pvegpu-test/lists"), &sources).unwrap();
        let model = std::fs::read(support::fixture("onnx/ir8-opset17.onnx")).unwrap();
        for m in MODELS {
            let d = state(&format!("srv/triton/models/{m}/1"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("model.onnx"), &model).unwrap();
        }
        let sbin = g("upper/usr/local/sbin");
        std::fs::create_dir_all(&sbin).unwrap();
        let tool = sbin.join("pvegpu-test-stand-ins");
        std::fs::copy(
            gate::repo().join("tests/guest_interrupted/stand-ins.sh"),
            &tool,
        )
        .unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        for name in STAND_INS {
            std::os::unix::fs::symlink("pvegpu-test-stand-ins", sbin.join(name)).unwrap();
        }
        let holder = Self::hold(dir.path());
        Guest { dir, holder }
    }

    /// The process that holds the guest's mount namespace: the overlay root, /dev and /proc
    /// from this machine, a fresh /run and /tmp, and the owned folders bound from the copy.
    fn hold(dir: &Path) -> Child {
        let setup = r#"set -eu
S=$1; M=$S/merged
mount -t overlay pvegpu-guest -o "lowerdir=/,upperdir=$S/upper,workdir=$S/work" "$M"
mount --rbind /dev "$M/dev"
mount --rbind /proc "$M/proc"
mount -t tmpfs tmpfs "$M/run"
mount -t tmpfs tmpfs "$M/tmp"
shift
for d in "$@"; do mkdir -p "$M/$d"; mount --bind "$S/state/$d" "$M/$d"; done
echo ready
exec sleep 100000
"#;
        let mut child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", setup, "sh"])
            .arg(dir)
            .args(OWNED)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n", "the scratch guest did not start");
        child
    }

    fn run(&self, script: &str, die_midway: bool) -> RemoteOutput {
        let mut shell = Command::new("nsenter");
        shell
            .arg("-t")
            .arg(self.holder.id().to_string())
            .args(["-m", "chroot"])
            .arg(self.dir.path().join("merged"))
            .args(["sh", "-c", script])
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root");
        run_cut(shell, die_midway)
    }

    /// The probe's answer: the real probe's, with the fixture's hardware sections.
    fn probe(&self, script: &str) -> RemoteOutput {
        let mut out = self.run(script, false);
        let fixture = support::read(FIXTURE);
        for name in HARDWARE {
            let ours = whole_section(&fixture, name).unwrap();
            let theirs = whole_section(&out.stdout, name)
                .unwrap_or_else(|| panic!("the probe printed no {name}:\n{}", out.stdout));
            out.stdout = out.stdout.replacen(&theirs, &ours, 1);
        }
        out
    }

    /// Every file of the guest's owned folders and of the overlay (what anything wrote
    /// elsewhere), with its mode, but pvegpu's backups and step logs (named by run).
    fn tree(&self) -> BTreeMap<String, String> {
        let mut found = files_under(&self.dir.path().join("state"));
        found.extend(files_under(&self.dir.path().join("upper")));
        found
            .into_iter()
            .map(|p| p.strip_prefix(self.dir.path()).unwrap().to_path_buf())
            .filter(|p| {
                !p.starts_with("state/var/lib/pvegpu/backups")
                    && !p.starts_with("state/var/lib/pvegpu/steps")
            })
            .map(|rel| {
                let what = described(&self.dir.path().join(&rel));
                (rel.display().to_string(), what)
            })
            .collect()
    }
}

/// The workstation's view of the guest: one step's script is cut, and from then on the
/// guest cannot be reached (the run stops there, as when the workstation loses it).
#[derive(Clone)]
struct Link {
    guest: Arc<Guest>,
    cut: Option<(usize, Cut)>,
    steps_seen: Arc<AtomicUsize>,
    lost: Arc<AtomicBool>,
    /// How the cut step ended on the guest.
    cut_status: Arc<Mutex<Option<Option<i32>>>>,
}

fn dropped() -> SshError {
    SshError::Run {
        destination: "debian@10.3.0.201".into(),
        detail: "Connection reset by peer".into(),
    }
}

impl Remote for Link {
    fn destination(&self) -> &str {
        "debian@10.3.0.201"
    }

    async fn run_script(&self, script: &str) -> Result<RemoteOutput, SshError> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(dropped());
        }
        if script.contains("### pvegpu facts 1") {
            return Ok(self.guest.probe(script));
        }
        if script.contains("#pvegpu-chunk") {
            return Ok(self.guest.run(script, false));
        }
        let index = self.steps_seen.fetch_add(1, Ordering::SeqCst);
        match self.cut {
            Some((i, Cut::Dropped)) if i == index => {
                // the step starts on the guest and runs on; this connection is gone at once
                let (guest, script) = (self.guest.clone(), script.to_string());
                let status = self.cut_status.clone();
                std::thread::spawn(move || {
                    *status.lock().unwrap() = Some(guest.run(&script, false).status);
                });
                Err(dropped())
            }
            Some((i, cut)) if i == index => {
                self.lost.store(true, Ordering::SeqCst);
                if cut != Cut::Before {
                    let script = if is_write(script) {
                        cut_write(script, cut)
                    } else {
                        script.to_string()
                    };
                    let out = self.guest.run(&script, cut == Cut::Midway);
                    *self.cut_status.lock().unwrap() = Some(out.status);
                }
                Err(dropped())
            }
            _ => Ok(self.guest.run(script, false)),
        }
    }
}

impl Connector for Link {
    type Remote = Link;
    async fn connect(&self) -> anyhow::Result<Link> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(dropped().into());
        }
        Ok(self.clone())
    }
    async fn close(&self, _remote: Link) {}
}

struct Quiet;
impl Progress for Quiet {
    fn say(&self, _: &str) {}
}

fn spec() -> GuestSpec {
    toml::from_str(SPEC).unwrap()
}

fn link(guest: &Arc<Guest>, cut: Option<(usize, Cut)>) -> Link {
    Link {
        guest: guest.clone(),
        cut,
        steps_seen: Arc::default(),
        lost: Arc::default(),
        cut_status: Arc::default(),
    }
}

/// Gather on the guest and plan, the reboot left out: what an apply changes before it.
async fn plan_now(guest: &Arc<Guest>) -> (GuestFacts, Vec<Change>, GuestPlan) {
    let facts =
        pvegpu::guest::gather::probe("triton-gpu", &link(guest, None), Some("/srv/triton/models"))
            .await
            .unwrap()
            .facts;
    let mut plan = pvegpu::guest::plan(&spec(), &facts).unwrap();
    assert!(plan.refusals.is_empty(), "{:?}", plan.refusals);
    plan.changes.retain(|c| c.action != Action::Reboot);
    (facts, plan.changes.clone(), plan)
}

/// One apply of the plan before the reboot; the link it ran over.
async fn apply(guest: &Arc<Guest>, cut: Option<(usize, Cut)>) -> (anyhow::Result<usize>, Link) {
    let (facts, changes, plan) = plan_now(guest).await;
    let spec = spec();
    let link = link(guest, cut);
    let options = GuestOptions {
        poll_interval: Duration::from_millis(10),
        // a guest gone for good fails the step at once
        reconnect_timeout: if matches!(cut, Some((_, Cut::Dropped))) {
            Duration::from_secs(60)
        } else {
            Duration::ZERO
        },
        max_passes: 1,
        ..GuestOptions::default()
    };
    let mut exec = GuestExecutor::new("triton-gpu", &spec, options, &Quiet, link.clone());
    let result = exec.execute(&plan, &facts).await.map(|_| changes.len());
    (result, link)
}

fn steps(changes: &[Change]) -> Vec<String> {
    changes.iter().map(|c| c.step.clone()).collect()
}

async fn a_guest_apply_cut_anywhere_converges_on_the_next() {
    let started = Instant::now();
    let reference = Arc::new(Guest::start());
    let before = reference.tree();
    let (_, planned, _) = plan_now(&reference).await;
    let (done, _) = apply(&reference, None).await;
    let count = done.unwrap();
    let done = reference.tree();
    assert_ne!(before, done);
    assert!(count >= 10, "{count} steps: {:?}", steps(&planned));
    let (_, reference_left, _) = plan_now(&reference).await;
    assert!(
        reference_left.is_empty(),
        "an uninterrupted apply left {:?}",
        steps(&reference_left)
    );
    eprintln!(
        "guest: {count} steps before the reboot: {:?} ({:.0} s)",
        steps(&planned),
        started.elapsed().as_secs_f64()
    );

    let (mut tried, mut reattached) = (0, 0);
    assert_eq!(planned.len(), count);
    for (index, step) in planned.iter().enumerate() {
        // a cut before step i+1 leaves the guest as a cut after step i does, and the
        // executor sees the same lost connection: "before" is tried at the first step only
        let mut cuts = vec![Cut::Midway, Cut::After];
        if index == 0 {
            cuts.insert(0, Cut::Before);
        }
        // a command runs detached: a connection dropped while it runs costs nothing
        if matches!(step.action, Action::Run { .. }) {
            cuts.push(Cut::Dropped);
        }
        for cut in cuts {
            let what = format!("step {index} ({}) cut {cut:?}", step.step);
            let guest = Arc::new(Guest::start());
            let (cut_run, link) = apply(&guest, Some((index, cut))).await;
            if cut == Cut::Dropped {
                // the executor connected again and waited for the same run of the step
                cut_run.unwrap_or_else(|e| panic!("{what}: the run did not survive: {e:#}"));
                reattached += 1;
            } else {
                assert!(cut_run.is_err(), "{what}: the run was not cut");
            }
            if cut == Cut::Midway {
                let status = link.cut_status.lock().unwrap().unwrap();
                assert_ne!(status, Some(0), "{what}: the step did not die");
            }
            let (next, _) = apply(&guest, None).await;
            next.unwrap_or_else(|e| panic!("{what}: the next apply failed: {e:#}"));
            let (_, left, _) = plan_now(&guest).await;
            assert_eq!(
                steps(&left),
                steps(&reference_left),
                "{what}: a second apply leaves another plan"
            );
            let after = guest.tree();
            let differs = differing(&done, &after);
            assert!(
                differs.is_empty(),
                "{what}: differs from an uninterrupted apply: {:#?}",
                differs
                    .iter()
                    .map(|k| (k, done.get(*k), after.get(*k)))
                    .collect::<Vec<_>>()
            );
            tried += 1;
        }
    }
    eprintln!(
        "guest: {count} steps, each cut midway and after, the first also before, each command's connection also dropped while it ran: {tried} runs, all converged, {reattached} of them by reconnecting ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    Gated::new()
        .test(
            "a_guest_apply_cut_anywhere_converges_on_the_next",
            &[
                Need::Root,
                Need::Command("unshare", "util-linux"),
                Need::Command("nsenter", "util-linux"),
                Need::Works(
                    OVERLAY_WORKS,
                    "a private mount namespace with an overlay root",
                ),
            ],
            || gate::block_on(a_guest_apply_cut_anywhere_converges_on_the_next()),
        )
        .run()
}

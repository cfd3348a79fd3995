//! An apply interrupted anywhere converges (#20), on a real kernel: the full sweep of the
//! host executor on the QEMU test host (tests/testhost/), over real SSH.
//!
//! Opt-in (PVEGPU_TESTHOST_SWEEP=1 with PVEGPU_TESTHOST=1 and the image): an hour under TCG
//! on 2 cores (3,596 s on 2026-12-03), which `.ci/run` cannot spend; tests/host_interrupted.rs
//! runs the same cuts on a scratch folder in every CI run. The real executor runs the real plan for the
//! default layout (six steps before the reboot: three files created, one updated,
//! `update-initramfs -u -k all`, `update-grub`), its connection wrapped so that one step is
//! cut: the connection dropped before the first step, the node's shell killed in the middle of
//! each step (a write just before its rename; a command, with everything it started, just
//! after its first line of output), and the answer lost after each step. Between cases the
//! files the steps touch are put back from a copy taken at the start, and the state is
//! checked to be the start's again. Then one more apply must leave every file under /etc,
//! /boot, /usr/local and /var/lib/pvegpu (initramfs images by their listing, pvegpu's
//! backups left out) as one uninterrupted apply does, with only the reboot left to do.
//! Last, the reboot is cut after it was scheduled, and `pvegpu apply` once the node is back
//! must find nothing to do and every postcondition passing.

#[path = "support/cut.rs"]
mod cut;
mod support;
#[path = "support/testhost.rs"]
mod testhost;

use cut::{Cut, cut_write, is_write};
use pvegpu::core::plan::{Action, Change};
use pvegpu::core::progress::Progress;
use pvegpu::host::exec::{Executor, Options};
use pvegpu::host::plan::HostPlan;
use pvegpu::inventory::{Inventory, Node};
use pvegpu::transport::ssh::{SshConnector, SshError, SshRemote};
use pvegpu::transport::{Connector, Remote, RemoteOutput};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::gate::{Gated, Need};
use testhost::{TARGETS, Vm, assert_converged, pvegpu, report, vm};

const NODE: &str = "testhost";

/// The files the steps touch (and what a killed step may leave beside them), saved once and
/// put back before each case.
const SAVE: &str = r#"set -eu
cd /
set --
for p in etc/default/grub etc/default/grub.d etc/modules etc/modules-load.d etc/modprobe.d \
  etc/initramfs-tools etc/kernel boot/grub/grub.cfg boot/initrd.img-*; do
  [ -e "$p" ] && set -- "$@" "$p"
done
tar -cpf /root/sweep-start.tar "$@"
"#;

const RESTORE: &str = r#"set -eu
cd /
rm -rf var/lib/pvegpu usr/local/lib/pvegpu etc/default/grub.d etc/modules-load.d \
  etc/modprobe.d etc/initramfs-tools etc/kernel
find etc boot -xdev -name '.pvegpu.*' -exec rm -f {} +
rm -f boot/*.new boot/grub/grub.cfg.new
tar -xpf /root/sweep-start.tar
sync
"#;

/// Every file and folder under the swept roots: type, path, mode and link target; each
/// file's sha256; each initramfs image's listing (mode, size, path: its build time differs
/// from run to run). pvegpu's backups are named by run, so they are left out.
const STATE: &str = r#"set -eu
cd /
set --
for d in etc boot usr/local var/lib/pvegpu; do [ -e "$d" ] && set -- "$@" "$d"; done
find "$@" -xdev -path var/lib/pvegpu/backups -prune -o -printf 'entry %y %p %m %l\n'
find "$@" -xdev -path var/lib/pvegpu/backups -prune -o -type f ! -name 'initrd.img-*' -print0 \
  | xargs -0 sha256sum | sed 's/^/sha256 /'
for i in boot/initrd.img-*; do
  lsinitramfs -l "$i" | awk -v i="${i##*/}" '{ print "image", i, $1, $5, $NF }'
done
"#;

/// Run a script as root on the test host; it must succeed.
fn as_root(vm: &Vm, script: &str) -> String {
    let out = vm.script(&["ssh", script]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn state(vm: &Vm) -> BTreeSet<String> {
    as_root(vm, STATE).lines().map(str::to_string).collect()
}

/// What differs between two states, for a failure message.
fn differences(want: &BTreeSet<String>, got: &BTreeSet<String>) -> Vec<String> {
    let gone = want.difference(got).map(|l| format!("- {l}"));
    let new = got.difference(want).map(|l| format!("+ {l}"));
    gone.chain(new).collect()
}

/// The node over real SSH, one step cut. Steps reach the node through
/// `run_script_watched`, the probe and the reboot through `run_script`.
#[derive(Clone)]
struct CutNode {
    ssh: SshConnector,
    /// (the step's index among the steps that change something, how)
    cut: Option<(usize, Cut)>,
    /// The reboot's answer is lost once it was scheduled.
    cut_reboot: bool,
    steps_seen: Arc<Mutex<usize>>,
}

struct CutRemote {
    inner: SshRemote,
    node: CutNode,
}

fn dropped() -> SshError {
    SshError::Run {
        destination: NODE.into(),
        detail: "Connection reset by peer (cut by the sweep)".into(),
    }
}

/// A step's script as `cut` leaves it: a write killed around its rename; a command killed,
/// with everything it started (its process group, as sshd made it), once it printed its
/// first line.
fn cut_script(script: &str, cut: Cut) -> String {
    if is_write(script) || cut != Cut::Midway {
        return cut_write(script, cut);
    }
    // a removal (`scripts::remove_file`): killed with its backup taken, the file still there
    let remove = "rm -f \"$path\"\n";
    if script.contains(remove) {
        return script.replace(remove, "kill -KILL $$\n");
    }
    let kill_after_first_line =
        " 2>&1 | { IFS= read -r l; printf '%s\\n' \"$l\"; kill -KILL 0; }; fi";
    let cut = script
        .replace("then exec flock", "then flock")
        .replace(" 2>&1; fi", kill_after_first_line);
    assert_ne!(
        cut, script,
        "a command step's script changed shape:\n{script}"
    );
    cut
}

impl Remote for CutRemote {
    fn destination(&self) -> &str {
        self.inner.destination()
    }

    async fn run_script(&self, script: &str) -> Result<RemoteOutput, SshError> {
        let out = self.inner.run_script(script).await;
        if self.node.cut_reboot && script.contains("systemctl reboot") {
            return Err(dropped());
        }
        out
    }

    async fn run_script_watched(
        &self,
        script: &str,
        watch: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<RemoteOutput, SshError> {
        let index = {
            let mut n = self.node.steps_seen.lock().unwrap();
            *n += 1;
            *n - 1
        };
        match self.node.cut {
            Some((i, Cut::Before)) if i == index => Err(dropped()),
            Some((i, cut)) if i == index => {
                let out = self
                    .inner
                    .run_script_watched(&cut_script(script, cut), watch)
                    .await;
                if cut == Cut::Midway {
                    let status = out.as_ref().ok().and_then(|o| o.status);
                    assert_eq!(status, None, "step {i} was not killed midway: {out:?}");
                }
                Err(dropped())
            }
            _ => self.inner.run_script_watched(script, watch).await,
        }
    }
}

impl Connector for CutNode {
    type Remote = CutRemote;
    async fn connect(&self) -> anyhow::Result<CutRemote> {
        Ok(CutRemote {
            inner: self.ssh.connect().await?,
            node: self.clone(),
        })
    }
    async fn close(&self, remote: CutRemote) {
        self.ssh.close(remote.inner).await;
    }
}

struct Say;
impl Progress for Say {
    fn say(&self, line: &str) {
        eprintln!("  {line}");
    }
}

fn connector(node: &Node) -> SshConnector {
    SshConnector::node(&node.ssh, node.ssh_config.clone())
}

/// Gather over SSH and plan.
async fn plan_now(node: &Node) -> (pvegpu::facts::HostFacts, HostPlan) {
    let ssh = connector(node);
    let remote = ssh.connect().await.unwrap();
    let facts = pvegpu::host::gather::probe(NODE, &remote)
        .await
        .unwrap()
        .facts;
    ssh.close(remote).await;
    let plan = pvegpu::host::planner::plan(NODE, node, &facts).unwrap();
    assert!(plan.refusals.is_empty(), "{:?}", plan.refusals);
    (facts, plan)
}

/// What is left to change but the reboot.
fn before_reboot(plan: &HostPlan) -> Vec<Change> {
    let mut changes = plan.changes.clone();
    changes.retain(|c| !matches!(c.action, Action::Reboot));
    changes
}

/// One apply, the reboot left out unless `cut_reboot` (which cuts it), with `cut` applied.
async fn apply(node: &Node, cut: Option<(usize, Cut)>, cut_reboot: bool) -> anyhow::Result<()> {
    let (facts, mut plan) = plan_now(node).await;
    if !cut_reboot {
        plan.changes = before_reboot(&plan);
    }
    let connector = CutNode {
        ssh: connector(node),
        cut,
        cut_reboot,
        steps_seen: Arc::default(),
    };
    let options = Options {
        verify: false,
        ..Options::default()
    };
    let mut exec = Executor::new(NODE, node, options, &Say, connector);
    exec.execute(&plan, &facts).await.map(|_| ())
}

fn boot_id(vm: &Vm) -> String {
    vm.ssh("cat /proc/sys/kernel/random/boot_id")
        .trim()
        .to_string()
}

fn host_apply_cut_anywhere_on_the_qemu_host_converges() {
    let started = Instant::now();
    let (_one, vm) = vm("base.qcow2", "default", "grub", 2245);
    let inv_path = vm.inventory(TARGETS);
    let inv = Inventory::load(&inv_path).unwrap();
    let node = inv.node(NODE).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    as_root(&vm, SAVE);
    let start = state(&vm);

    let t = Instant::now();
    let (_, plan) = rt.block_on(plan_now(node));
    let steps = before_reboot(&plan).len();
    assert!(
        matches!(plan.changes.last().map(|c| &c.action), Some(Action::Reboot)),
        "{}",
        plan.render_text()
    );
    rt.block_on(apply(node, None, false)).unwrap();
    let done = state(&vm);
    assert_ne!(start, done);
    let (_, left) = rt.block_on(plan_now(node));
    assert!(
        left.changes
            .iter()
            .all(|c| c.needs_reboot || matches!(c.action, Action::Reboot)),
        "an uninterrupted apply left {}",
        left.render_text()
    );
    eprintln!(
        "TIMING uninterrupted apply ({steps} steps, no reboot): {:.0} s",
        t.elapsed().as_secs_f64()
    );

    let mut cases = vec![(0, Cut::Before)];
    for index in 0..steps {
        cases.push((index, Cut::Midway));
        cases.push((index, Cut::After));
    }
    for &(index, cut) in &cases {
        let t = Instant::now();
        let what = format!("step {index} ({}), cut {cut:?}", plan.changes[index].step);
        as_root(&vm, RESTORE);
        let back = state(&vm);
        assert!(
            back == start,
            "{what}: the start was not put back: {:#?}",
            differences(&start, &back)
        );
        let cut_run = rt.block_on(apply(node, Some((index, cut)), false));
        assert!(cut_run.is_err(), "{what}: the apply was not cut");
        rt.block_on(apply(node, None, false))
            .unwrap_or_else(|e| panic!("{what}: the next apply failed: {e:#}"));
        let (_, again) = rt.block_on(plan_now(node));
        assert_eq!(
            again.changes, left.changes,
            "{what}: a second apply leaves another plan"
        );
        let after = state(&vm);
        assert!(
            after == done,
            "{what}: differs from an uninterrupted apply: {:#?}",
            differences(&done, &after)
        );
        eprintln!(
            "TIMING {what}: converged in {:.0} s",
            t.elapsed().as_secs_f64()
        );
    }

    // the reboot: scheduled, then the answer lost; once the node is back, apply finds
    // nothing to do
    let t = Instant::now();
    let old = boot_id(&vm);
    let cut_run = rt.block_on(apply(node, None, true));
    assert!(cut_run.is_err(), "the reboot was not cut");
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let now = boot_id(&vm);
        if !now.is_empty() && now != old {
            break;
        }
        assert!(Instant::now() < deadline, "the node did not come back");
    }
    let (code, out, err) = pvegpu(&inv_path, &["--json", "apply", "--yes"]);
    assert_eq!(code, 0, "{err}");
    let r = report(&out);
    assert_eq!(r["reboots"], 0, "{out}");
    assert_eq!(r["status"], "unchanged", "{out}");
    assert_converged(&r);
    eprintln!(
        "TIMING the reboot cut after it was scheduled: converged in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    eprintln!(
        "host on the QEMU test host: {steps} steps and the reboot, {} cuts, all converged, {:.0} s in all",
        cases.len() + 1,
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    Gated::new()
        .test(
            "host_apply_cut_anywhere_on_the_qemu_host_converges",
            &[
                Need::TestHost("base.qcow2"),
                Need::Env(
                    "PVEGPU_TESTHOST_SWEEP",
                    "the full interruption sweep on the QEMU test host (about an hour)",
                ),
            ],
            host_apply_cut_anywhere_on_the_qemu_host_converges,
        )
        .run()
}

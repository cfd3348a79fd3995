//! The guest phase on a real Debian 12 guest: the QEMU test host (tests/testhost/, no GPU)
//! stands in for the VM. Runs only with PVEGPU_TESTHOST=1 and the image built (`.ci/run`).
//!
//! What is real: SSH, the guest probe and its parsing, the ONNX header reads of a model copied
//! onto the guest, the executor's scripts (atomic write of the Debian components file, `apt-get
//! update` against the Debian mirror under pvegpu's lock, `apt-mark hold`), the detached reboot
//! waited for by a new boot_id over fresh connections, the re-gather and the re-plan. What is
//! injected: the guest's `lspci` section (two GTX 1080 without a driver), since QEMU cannot
//! emulate an NVIDIA card; without it the planner refuses the GPU-less guest, which the
//! recorded probe test checks. Not run here: the driver install (a DKMS build of the NVIDIA
//! module under TCG emulation takes far longer than this scenario's few minutes), NVIDIA's
//! repositories (keys and sources from the network), Docker, Triton.

use pvegpu::apply::Progress;
use pvegpu::guest::exec::{Connector, GuestExecutor, GuestOptions, SshConnector};
use pvegpu::guest::{GuestSpec, gather, plan};
use pvegpu::plan::Action;
use pvegpu::transport::ssh::SshError;
use pvegpu::transport::{Remote, RemoteOutput};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const PORT: u16 = 2251;
const MODELS: &str = "/srv/triton/models";
const SPEC: &str = "runtime = \"docker\"\n[triton]\nmodel_repository = \"/srv/triton/models\"\nbackend = \"onnx\"\n";
const GPUS: &str = "0000:00:10.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [GeForce GTX 1080] [10de:1b80] (rev a1)\n\tSubsystem: NVIDIA Corporation GP104 [GeForce GTX 1080] [10de:119e]\n\tKernel modules: nouveau\n0000:00:11.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [GeForce GTX 1080] [10de:1b80] (rev a1)\n\tSubsystem: NVIDIA Corporation GP104 [GeForce GTX 1080] [10de:119e]\n\tKernel modules: nouveau\n";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Vm {
    env: Vec<(&'static str, String)>,
    dir: tempfile::TempDir,
}

impl Vm {
    fn vm_sh(&self, args: &[&str]) -> std::process::Output {
        Command::new("bash")
            .arg(repo().join("tests/testhost/vm.sh"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (*k, v)))
            .output()
            .unwrap()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.vm_sh(&["stop"]);
    }
}

fn start() -> Option<Vm> {
    if std::env::var("PVEGPU_TESTHOST").as_deref() != Ok("1") {
        eprintln!("SKIP: set PVEGPU_TESTHOST=1 to run the QEMU test host scenarios (.ci/run does)");
        return None;
    }
    let image = repo().join(".cache/testhost/base.qcow2");
    assert!(
        image.exists(),
        "PVEGPU_TESTHOST=1 but {} is missing: run tests/testhost/build-image.sh",
        image.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let vm = Vm {
        env: vec![
            ("LAYOUT", "default".into()),
            ("BOOT", "grub".into()),
            ("PORT", PORT.to_string()),
            ("RUN", dir.path().join("run").display().to_string()),
        ],
        dir,
    };
    let t = Instant::now();
    assert!(vm.vm_sh(&["start"]).status.success());
    let w = vm.vm_sh(&["wait", "900"]);
    assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));
    eprintln!("TIMING boot to SSH: {:.0} s", t.elapsed().as_secs_f64());
    // no known_hosts entry: the guest's key is recorded on first use, as for a new VM
    std::fs::write(
        vm.dir.path().join("ssh_config"),
        format!(
            "Host testguest\n  HostName 127.0.0.1\n  Port {PORT}\n  User root\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  ServerAliveInterval 2\n  ServerAliveCountMax 3\n  BatchMode yes\n",
            repo().join(".cache/testhost/id_ed25519").display(),
            vm.dir.path().join("known_hosts").display()
        ),
    )
    .unwrap();
    Some(vm)
}

/// The guest as the planner would see it with two GTX 1080 passed through: the probe's
/// `lspci` section replaced, everything else as the guest printed it.
struct WithGpus<R>(R);

impl<R: Remote + Sync> Remote for WithGpus<R> {
    fn destination(&self) -> &str {
        self.0.destination()
    }
    async fn run_script(&self, script: &str) -> Result<RemoteOutput, SshError> {
        let mut out = self.0.run_script(script).await?;
        if out.stdout.contains("### pvegpu facts 1") {
            let mut text = String::new();
            let mut skip = false;
            for line in out.stdout.lines() {
                if skip && line.starts_with("### pvegpu ") {
                    skip = false;
                }
                if !skip {
                    text.push_str(line);
                    text.push('\n');
                }
                if line == "### pvegpu lspci" {
                    text.push_str(GPUS);
                    skip = true;
                }
            }
            out.stdout = text;
        }
        Ok(out)
    }
}

struct GpuConnector(SshConnector);

impl Connector for GpuConnector {
    type Remote = WithGpus<pvegpu::transport::ssh::SshRemote>;
    async fn connect(&self) -> anyhow::Result<Self::Remote> {
        Ok(WithGpus(self.0.connect().await?))
    }
    async fn close(&self, remote: Self::Remote) {
        self.0.close(remote.0).await;
    }
}

struct Stderr;
impl Progress for Stderr {
    fn say(&self, line: &str) {
        eprintln!("{line}");
    }
}

/// printf's octal escapes for a binary file.
fn printf_octal(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:03o}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian12_guest_components_update_hold_reboot_then_replan() {
    let Some(vm) = start() else { return };
    let model = std::fs::read(repo().join("tests/fixtures/onnx/ir8-opset17.onnx")).unwrap();
    let put = vm.vm_sh(&[
        "ssh",
        &format!(
            "mkdir -p {MODELS}/price_tag_detection/1 && printf '{}' > {MODELS}/price_tag_detection/1/model.onnx",
            printf_octal(&model)
        ),
    ]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );

    let ssh = SshConnector {
        destination: "testguest".into(),
        ssh_config: Some(vm.dir.path().join("ssh_config")),
    };
    // the real probe, recorded as it came (tests/fixtures/guest/recorded/testhost-debian12.facts
    // is such a run; PVEGPU_RECORD_GUEST=1 writes it again)
    let t = Instant::now();
    let remote = ssh.connect().await.unwrap();
    let raw = gather::probe("testguest", &remote, Some(MODELS))
        .await
        .unwrap();
    ssh.close(remote).await;
    eprintln!("TIMING guest probe: {:.0} s", t.elapsed().as_secs_f64());
    if std::env::var("PVEGPU_RECORD_GUEST").as_deref() == Ok("1") {
        std::fs::write(
            repo().join("tests/fixtures/guest/recorded/testhost-debian12.facts"),
            format!(
                "# Recorded by tests/guest_testhost_e2e.rs: the guest probe (with the model header read) on the QEMU test host\n# (Debian 12, no GPU), one ir8-opset17.onnx copied to {MODELS}/price_tag_detection/1/.\n{}",
                raw.raw_text
            ),
        )
        .unwrap();
    }
    assert!(raw.facts.gpus().next().is_none());
    assert_eq!(raw.facts.onnx.len(), 1);
    assert_eq!(
        (raw.facts.onnx[0].ir_version, raw.facts.onnx[0].opset),
        (8, 17)
    );
    let spec: GuestSpec = toml::from_str(SPEC).unwrap();
    let refused = plan(&spec, &raw.facts).unwrap();
    assert!(
        refused.refusals[0].reason.contains("sees no NVIDIA GPU"),
        "{}",
        refused.render_text()
    );

    // with the GPUs injected: the steps this guest can take without the NVIDIA driver
    let connector = GpuConnector(ssh);
    let remote = connector.connect().await.unwrap();
    let g = gather::probe("testguest", &remote, Some(MODELS))
        .await
        .unwrap();
    connector.close(remote).await;
    let before = g.facts;
    let full = plan(&spec, &before).unwrap();
    assert!(full.refusals.is_empty(), "{}", full.render_text());
    eprintln!("{}", full.render_text());
    let wanted = ["debian-components", "apt-update", "driver-hold"];
    for w in wanted {
        assert!(
            full.changes.iter().any(|c| c.step == w),
            "{w} not planned:\n{}",
            full.render_text()
        );
    }
    let mut partial = full.clone();
    partial
        .changes
        .retain(|c| wanted.contains(&c.step.as_str()));
    partial.changes.push(pvegpu::plan::Change {
        step: "reboot".into(),
        summary: "reboot the guest".into(),
        reason: "prove the executor's reboot on a real guest".into(),
        action: Action::Reboot,
        diff: None,
        needs_reboot: false,
    });
    let options = GuestOptions {
        reboot_timeout: Duration::from_secs(600),
        poll_interval: Duration::from_secs(5),
        // one pass: the plan after the reboot would install the driver (DKMS under TCG)
        max_passes: 1,
    };
    let t = Instant::now();
    let mut exec = GuestExecutor::new("testguest", &spec, options, &Stderr, connector);
    let after = exec.execute(&partial, &before).await.unwrap();
    eprintln!(
        "TIMING guest apply (3 steps, reboot): {:.0} s",
        t.elapsed().as_secs_f64()
    );
    let report = exec.report;
    assert!(report.steps.iter().all(|s| s.ok), "{:?}", report.steps);
    assert_eq!(report.steps.len(), 4);
    assert_eq!(report.reboots, 1);
    assert_ne!(after.boot_id, before.boot_id);
    assert!(after.boot_id.is_some());
    // the re-gathered guest: the components file is there and read back as written, holds
    // are in dpkg, and the new plan no longer has those steps (the driver still to install)
    let components = full
        .changes
        .iter()
        .find_map(|c| match &c.action {
            Action::WriteFile { path, content, .. } if c.step == "debian-components" => {
                Some((path.clone(), content.clone()))
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(
        after.files.get(&components.0).map(|f| f.content.as_str()),
        Some(components.1.as_str())
    );
    assert!(after.holds.contains("nvidia-driver"), "{:?}", after.holds);
    let again = plan(&spec, &after).unwrap();
    let steps: Vec<&str> = again.changes.iter().map(|c| c.step.as_str()).collect();
    assert!(!steps.contains(&"debian-components"), "{steps:?}");
    assert!(!steps.contains(&"driver-hold"), "{steps:?}");
    assert!(steps.contains(&"driver"), "{steps:?}");
    assert!(!report.ok, "the postcondition must see the steps left");
    // the host key was recorded on first use
    assert!(vm.dir.path().join("known_hosts").exists());
}

//! The VM lab shared by the VM phase's end-to-end tests: the fake Proxmox VE over HTTPS
//! with the QEMU test host's two cards, an inventory for it, and the pvegpu binary run as a
//! user would. Include with `#[path = "support/vm_lab.rs"] mod vm_lab;` beside `fake_pve`
//! and `support`.
#![allow(dead_code)]

use crate::fake_pve::{self, FakePve, LIMITED_TOKEN_SECRET, ROOT_TOKEN_SECRET};
use crate::support;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Lab {
    pub fake: FakePve,
    pub dir: tempfile::TempDir,
}

impl Lab {
    pub async fn start() -> Lab {
        Lab {
            fake: FakePve::start_with(fake_pve::testhost_cluster()).await,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// An inventory for the test host with an [api] table (`auth` lines) and the seed's VM.
    pub fn inventory(&self, auth: &str, vm_extra: &str) -> PathBuf {
        self.write_inventory(&self.inventory_text(auth, vm_extra))
    }

    /// The text [`Lab::inventory`] writes, for a test to edit first.
    pub fn inventory_text(&self, auth: &str, vm_extra: &str) -> String {
        let key = self.dir.path().join("id.pub");
        std::fs::write(
            &key,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests raphael@workstation\n",
        )
        .unwrap();
        format!(
            r#"[nodes.pvetest]
ssh = "root@127.0.0.1"
[[nodes.pvetest.gpus]]
address = "0000:00:03.0"
id = "1234:11e8"
[[nodes.pvetest.gpus]]
address = "0000:00:04.0"
id = "8086:100e"
[nodes.pvetest.api]
url = "{url}"
fingerprint = "{fp}"
{auth}
[nodes.pvetest.vm]
vmid = 201
name = "triton-gpu"
memory_mib = 30720
cores = 10
cpu = "kvm64,flags=+aes"
reach_timeout = 20
{vm_extra}
[nodes.pvetest.vm.disk]
storage = "nvme-zfs"
size_gb = 100
image = "local:import/debian-12-genericcloud-amd64.qcow2"
[nodes.pvetest.vm.cloud_init]
user = "raphael"
ssh_key_file = "id.pub"
ip = "10.3.0.201/8"
gateway = "10.0.0.45"
dns = "9.9.9.9"
"#,
            url = self.fake.https_base,
            fp = self.fake.fingerprint
        )
    }

    /// Writes an inventory and the converged test host's facts beside it.
    pub fn write_inventory(&self, text: &str) -> PathBuf {
        let p = self.dir.path().join("pvegpu.toml");
        std::fs::write(&p, text).unwrap();
        support::converged_testhost_facts(&p);
        p
    }

    pub fn requests(&self) -> usize {
        self.fake.requests.lock().unwrap().len()
    }
}

pub const TOKEN: &str = "token = \"root@pam!pvegpu\"";

/// The binary as [`pvegpu`] runs it, for a test that spawns it.
pub fn command(inv: &Path, args: &[&str], secret: &str) -> Command {
    let facts = inv.with_file_name("pvetest.facts");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pvegpu"));
    cmd.arg("-i").arg(inv).args(args).arg("--facts").arg(facts);
    cmd.env("PVEGPU_STATE_DIR", inv.with_file_name("state"))
        .env("PVEGPU_TOKEN_SECRET", secret)
        .env("PVEGPU_PASSWORD", "secret")
        .env("NO_COLOR", "1");
    cmd
}

/// Runs the binary on a blocking thread (the fake serves on the runtime's workers).
pub async fn pvegpu(inv: &Path, args: &[&str], secret: &str) -> (i32, String, String) {
    let mut cmd = command(inv, args, secret);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        !o.contains(ROOT_TOKEN_SECRET) && !e.contains(ROOT_TOKEN_SECRET),
        "a secret leaked"
    );
    assert!(
        !o.contains(LIMITED_TOKEN_SECRET) && !e.contains(LIMITED_TOKEN_SECRET),
        "a secret leaked"
    );
    (out.status.code().unwrap_or(-1), o, e)
}

/// A VM plan made with the library, as `apply` makes it before it runs, so a test can change
/// the cluster between the plan and its execution.
pub struct LibraryPlan {
    pub inventory: pvegpu::inventory::Inventory,
    pub phase: pvegpu::vm::phase::Phase,
    pub plan: pvegpu::vm::VmPlan,
}

struct Quiet;
impl pvegpu::core::progress::Progress for Quiet {
    fn say(&self, _: &str) {}
}

impl LibraryPlan {
    /// Plans node `pvetest` of the inventory at `inv` with the root token.
    pub async fn make(inv: &Path) -> LibraryPlan {
        let inventory = pvegpu::inventory::Inventory::load(inv).unwrap();
        let node = inventory.node("pvetest").unwrap();
        let raw = std::fs::read_to_string(inv.with_file_name("pvetest.facts")).unwrap();
        let facts = pvegpu::host::gather::from_text("pvetest", "fixture", raw)
            .unwrap()
            .facts;
        let host = pvegpu::host::planner::plan("pvetest", node, &facts).unwrap();
        let ready = pvegpu::vm::phase::host_readiness("pvetest", node, &facts, &host);
        // SAFETY of env: set before any thread reads it in this test process
        unsafe { std::env::set_var("PVEGPU_TOKEN_SECRET", ROOT_TOKEN_SECRET) };
        let phase = pvegpu::vm::phase::Phase::connect(&inventory, "pvetest", node, Some(&facts))
            .await
            .unwrap()
            .unwrap();
        let plan = phase.plan("pvetest", node, &ready).await.unwrap();
        LibraryPlan {
            inventory,
            phase,
            plan,
        }
    }

    /// Runs the plan as `apply` would, quietly.
    pub async fn execute(&self) -> Result<Option<String>, pvegpu::vm::exec::ExecError> {
        let node = self.inventory.node("pvetest").unwrap();
        pvegpu::vm::exec::VmExecutor::new(&self.phase.client, &Quiet)
            .execute(&self.plan, node.vm.as_ref().unwrap(), Ok(()))
            .await
    }
}

//! `pvegpu verify` end to end: the host layer on the converged QEMU test host's real probe
//! (given with `--facts`), the VM layer against the fake Proxmox VE over HTTPS, and the
//! guest layer over a real OpenSSH connection to this machine standing in as the guest (no
//! NVIDIA driver here, so the guest checks must fail with their diagnosis).

#[path = "support/fake_pve/mod.rs"]
mod fake_pve;
mod support;
use fake_pve::{FakePve, ROOT_TOKEN_SECRET};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::gate::{self, Gated, Need};
use support::sshd::{Sshd, start_sshd};

/// The inventory: the test host with one target, the fake's API, a VM, and its guest reached
/// through the local sshd's `testnode` alias.
fn inventory(dir: &Path, fake: &FakePve, sshd: &Sshd, guest_extra: &str) -> PathBuf {
    std::fs::write(
        dir.join("id.pub"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests t@w\n",
    )
    .unwrap();
    let text = format!(
        r#"[nodes.pvetest]
ssh = "root@127.0.0.1"
[[nodes.pvetest.gpus]]
address = "0000:00:03.0"
id = "1234:11e8"
[nodes.pvetest.api]
url = "{url}"
fingerprint = "{fp}"
token = "root@pam!pvegpu"
[nodes.pvetest.vm]
vmid = 201
name = "triton-gpu"
memory_mib = 8192
cores = 4
reach_timeout = 20
[nodes.pvetest.vm.disk]
storage = "nvme-zfs"
size_gb = 20
[nodes.pvetest.vm.cloud_init]
user = "raphael"
ssh_key_file = "id.pub"
ip = "10.3.0.201/8"
[nodes.pvetest.vm.guest]
ssh = "testnode"
ssh_config = "{ssh_config}"
{guest_extra}
"#,
        url = fake.https_base,
        fp = fake.fingerprint,
        ssh_config = sshd.path("ssh_config").display(),
    );
    let p = dir.join("pvegpu.toml");
    std::fs::write(&p, &text).unwrap();
    // the same without [vm.guest]: `apply` then stops after the VM phase (this machine, the
    // stand-in guest, has no GPU, so the guest phase would rightly refuse)
    let vm_only = &text[..text.find("[nodes.pvetest.vm.guest]").unwrap()];
    std::fs::write(dir.join("vm-only.toml"), vm_only).unwrap();
    support::converged_testhost_facts(&p);
    p
}

async fn pvegpu(inv: &Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pvegpu"));
    cmd.arg("-i")
        .arg(inv)
        .args(args)
        .arg("--facts")
        .arg(inv.with_file_name("pvetest.facts"))
        // the guests' host keys go to a state folder of this test's own
        .env("PVEGPU_STATE_DIR", inv.with_file_name("state"))
        .env("PVEGPU_TOKEN_SECRET", ROOT_TOKEN_SECRET)
        .env("NO_COLOR", "1");
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
    (out.status.code().unwrap_or(-1), o, e)
}

fn checks<'a>(report: &'a Value, layer: &str) -> Vec<&'a Value> {
    report["nodes"]["pvetest"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["layer"] == layer)
        .collect()
}

fn find<'a>(cs: &[&'a Value], name: &str) -> &'a Value {
    cs.iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check `{name}` in {cs:#?}"))
}

async fn verify_reads_every_layer_and_names_what_broke() {
    let sshd = start_sshd(false);
    let fake = FakePve::start_with(fake_pve::testhost_cluster()).await;
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path(), &fake, &sshd, "runtime = \"podman\"");

    // before the VM exists: the host passes, the VM layer says what to run
    let (code, out, err) = pvegpu(&inv, &["--json", "verify", "-n", "pvetest"]).await;
    assert_eq!(code, 1, "{err}\n{out}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["passed"], false);
    let host = checks(&r, "host");
    assert!(
        !host.is_empty() && host.iter().all(|c| c["status"] == "pass"),
        "{host:#?}"
    );
    let vm = checks(&r, "vm");
    assert_eq!(find(&vm, "VM exists")["status"], "fail");
    assert!(
        find(&vm, "VM exists")["fix"]
            .as_str()
            .unwrap()
            .contains("pvegpu apply --node pvetest")
    );

    let (code, out, err) = pvegpu(
        &inv.with_file_name("vm-only.toml"),
        &["apply", "--yes", "-n", "pvetest"],
    )
    .await;
    assert_eq!(code, 0, "{err}\n{out}");
    let writes = fake
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.method != "GET")
        .count();

    let (code, out, err) = pvegpu(&inv, &["--json", "verify", "-n", "pvetest"]).await;
    assert_eq!(code, 1, "{err}\n{out}");
    let r: Value = serde_json::from_str(&out).unwrap();
    let vm = checks(&r, "vm");
    assert!(
        !vm.is_empty() && vm.iter().all(|c| c["status"] == "pass"),
        "{vm:#?}"
    );
    // the guest layer ran for real on this machine, which has no NVIDIA driver
    let guest = checks(&r, "guest");
    let loaded = find(&guest, "nvidia driver loaded");
    assert_eq!(loaded["status"], "fail", "{loaded}");
    assert!(
        loaded["saw"].as_str().unwrap().contains(&uname_r()),
        "{loaded}"
    );
    assert!(!checks(&r, "runtime").is_empty(), "{out}");
    assert_eq!(
        fake.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.method != "GET")
            .count(),
        writes,
        "verify changed something on the cluster"
    );

    // drift made outside pvegpu: the VM layer names the key and what to run
    fake.state
        .lock()
        .unwrap()
        .vms
        .get_mut(&201)
        .unwrap()
        .config
        .insert("memory".into(), "4096".into());
    let (code, out, _) = pvegpu(&inv, &["verify", "-n", "pvetest", "--ascii"]).await;
    assert_eq!(code, 1);
    assert!(out.contains("memory: want `8192`, is `4096`"), "{out}");
    assert!(out.starts_with("Node pvetest\n"), "{out}");

    // --vm selects by id; an id no node has is an error with the fix
    let (code, _, err) = pvegpu(&inv, &["verify", "-n", "pvetest", "--vm", "999"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("no `pvetest` node has a [vm] with vmid = 999"),
        "{err}"
    );
}

async fn an_unreachable_guest_leaves_its_layers_unchecked_and_fails() {
    let sshd = start_sshd(false);
    let fake = FakePve::start_with(fake_pve::testhost_cluster()).await;
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(
        dir.path(),
        &fake,
        &sshd,
        "runtime = \"docker\"\n[nodes.pvetest.vm.guest.triton]\nmodel_repository = \"/srv/models\"\nbackend = \"onnx\"",
    );
    // a facts file that is not there is an input error naming it, not an unreachable host
    let out = Command::new(env!("CARGO_BIN_EXE_pvegpu"))
        .arg("-i")
        .arg(&inv)
        .args(["verify", "-n", "pvetest", "--facts", "no-such.facts"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot read the facts file no-such.facts"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no report for bad input");

    drop(sshd); // the guest's sshd is gone
    let (code, _, err) = pvegpu(
        &inv.with_file_name("vm-only.toml"),
        &["apply", "--yes", "-n", "pvetest"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = pvegpu(&inv, &["--json", "verify", "-n", "pvetest"]).await;
    assert_eq!(code, 1);
    let r: Value = serde_json::from_str(&out).unwrap();
    for layer in ["guest", "runtime", "triton"] {
        let cs = checks(&r, layer);
        assert_eq!(cs.len(), 1, "{layer}: {cs:#?}");
        assert_eq!(cs[0]["status"], "skip", "{layer}");
    }
    assert!(
        checks(&r, "guest")[0]["saw"]
            .as_str()
            .unwrap()
            .contains("testnode"),
        "{out}"
    );
}

fn uname_r() -> String {
    String::from_utf8(Command::new("uname").arg("-r").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string()
}

fn main() {
    Gated::new()
        .test(
            "verify_reads_every_layer_and_names_what_broke",
            &[Need::Sshd],
            || gate::block_on(verify_reads_every_layer_and_names_what_broke()),
        )
        .test(
            "an_unreachable_guest_leaves_its_layers_unchecked_and_fails",
            &[Need::Sshd],
            || gate::block_on(an_unreachable_guest_leaves_its_layers_unchecked_and_fails()),
        )
        .run()
}

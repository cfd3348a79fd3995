//! The guest phase through the binary: the fake Proxmox VE for the VM phase (as in
//! tests/vm_phase.rs) and, as the guest, this machine reached over a real sshd on 127.0.0.1
//! started by the test (throwaway keys). This machine has no model repository at the path the
//! inventory names, so the guest plan is refused: the test proves the wiring (waits for the VM
//! phase, then plans the real probe's facts after it, refuses, changes nothing), not an
//! installation.

#[path = "support/fake_pve/mod.rs"]
mod fake_pve;
mod support;
use fake_pve::{FakePve, ROOT_TOKEN_SECRET};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::gate::{self, Gated, Need};
use support::sshd::{Sshd, start_sshd};

/// The converged test host's facts (as tests/vm_phase.rs makes them) and the inventory with a
/// [vm.guest] reached at `guestbox`.
fn lab_files(fake: &FakePve, sshd: &Sshd) -> PathBuf {
    let d = sshd.dir.path();
    std::fs::write(
        d.join("key.pub"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests raphael@workstation\n",
    )
    .unwrap();
    let text = format!(
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
token = "root@pam!pvegpu"
[nodes.pvetest.vm]
vmid = 201
name = "triton-gpu"
memory_mib = 30720
cores = 10
reach_timeout = 20
[nodes.pvetest.vm.disk]
storage = "nvme-zfs"
size_gb = 100
image = "local:import/debian-12-genericcloud-amd64.qcow2"
[nodes.pvetest.vm.cloud_init]
user = "raphael"
ssh_key_file = "key.pub"
ip = "10.3.0.201/8"
[nodes.pvetest.vm.guest]
ssh = "guestbox"
ssh_config = "guest_ssh_config"
runtime = "docker"
[nodes.pvetest.vm.guest.triton]
model_repository = "{repo}"
backend = "onnx"
"#,
        url = fake.https_base,
        fp = fake.fingerprint,
        repo = d.join("no-models-here").display(),
    );
    let inv = d.join("pvegpu.toml");
    std::fs::write(&inv, text).unwrap();
    support::converged_testhost_facts(&inv);
    inv
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
    assert!(!o.contains(ROOT_TOKEN_SECRET) && !e.contains(ROOT_TOKEN_SECRET));
    (out.status.code().unwrap_or(-1), o, e)
}

async fn guest_waits_for_the_vm_then_is_planned_from_the_real_probe_and_refused() {
    let sshd = start_sshd(false);
    sshd.guest_config("guestbox");
    let fake = FakePve::start_with(fake_pve::testhost_cluster()).await;
    let inv = lab_files(&fake, &sshd);

    // no VM yet: the guest waits for the VM phase, and nothing connects to it
    let (code, json, err) = pvegpu(&inv, &["--json", "plan"]).await;
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let guest = &v["nodes"][0]["guest"];
    assert_eq!(guest["destination"], "guestbox");
    assert!(
        guest["waits_for"]
            .as_str()
            .is_some_and(|w| w.contains("the VM phase has")),
        "{guest}"
    );
    assert!(guest.get("changes").is_none(), "{guest}");
    assert!(!v["nodes"][0]["vm"]["steps"].as_array().unwrap().is_empty());
    assert!(
        !sshd.path("state/guest_known_hosts").exists(),
        "the guest was contacted before its VM existed"
    );
    let (code, text, _) = pvegpu(&inv, &["plan", "--detailed-exitcode"]).await;
    assert_eq!(code, 2);
    assert!(
        text.contains("Guest guestbox: waits for the VM phase"),
        "{text}"
    );

    // apply: the VM phase creates and starts the VM, then the guest is gathered over SSH
    // (its host key recorded on first use) and its plan refused before any change
    let (code, out, err) = pvegpu(&inv, &["apply", "--yes", "-n", "pvetest"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(fake.state.lock().unwrap().vms[&201].running);
    assert!(out.contains("Refused:"), "{out}");
    assert!(
        out.contains("does not exist on the guest") || out.contains("sees no NVIDIA GPU"),
        "{out}"
    );
    assert!(
        err.contains("pvegpu refuses to change the guest of pvetest"),
        "{err}"
    );
    // in pvegpu's own known-hosts file; the operator's (the config's) is never written
    let known = std::fs::read_to_string(sshd.path("state/guest_known_hosts")).unwrap();
    assert!(!sshd.path("guest_known_hosts").exists());
    let hostkey = std::fs::read_to_string(sshd.dir.path().join("hostkey.pub")).unwrap();
    let key_body = hostkey.split_whitespace().nth(1).unwrap();
    assert!(known.contains(key_body), "host key recorded: {known}");

    // plan now: the VM has nothing left, so the guest is planned, from this machine's facts
    let (code, json, err) = pvegpu(&inv, &["--json", "plan"]).await;
    assert_eq!(code, 1, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let guest = &v["nodes"][0]["guest"];
    assert!(guest["waits_for"].is_null(), "{guest}");
    assert!(guest["changes"].as_array().unwrap().is_empty());
    assert!(!guest["refusals"].as_array().unwrap().is_empty(), "{guest}");
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(guest["guest"], hostname.trim());
    assert!(err.contains("refuses to converge pvetest"), "{err}");
}

fn main() {
    Gated::new()
        .test(
            "guest_waits_for_the_vm_then_is_planned_from_the_real_probe_and_refused",
            &[Need::Sshd],
            || {
                gate::block_on(
                    guest_waits_for_the_vm_then_is_planned_from_the_real_probe_and_refused(),
                )
            },
        )
        .run()
}

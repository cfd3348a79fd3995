//! The QEMU test host (tests/testhost/vm.sh) as the scenarios drive it: a fresh VM, its ssh
//! config and inventory, pvegpu's binary run against it. Shared by tests/testhost_e2e.rs and
//! tests/testhost_interrupted.rs.
#![allow(dead_code)]

use crate::support::gate::Need;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Instant;

static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct Vm {
    pub env: Vec<(String, String)>,
    pub dir: tempfile::TempDir,
}

impl Vm {
    pub fn start(layout: &str, boot: &str, port: u16) -> Vm {
        let dir = tempfile::tempdir().unwrap();
        let env = vec![
            ("LAYOUT".to_string(), layout.to_string()),
            ("BOOT".to_string(), boot.to_string()),
            ("PORT".to_string(), port.to_string()),
            (
                "RUN".to_string(),
                dir.path().join("run").to_string_lossy().into_owned(),
            ),
        ];
        let vm = Vm { env, dir };
        let t = Instant::now();
        vm.script(&["start"]);
        vm.script(&["wait", "900"]);
        eprintln!(
            "TIMING boot to SSH ({layout}, {boot}): {:.0} s",
            t.elapsed().as_secs_f64()
        );
        // under TCG a key exchange can outlast ssh-keyscan's 5 s default, which then prints
        // nothing (or not every key type): ask for the ed25519 key, with time, until it comes
        let mut keys = Vec::new();
        for _ in 0..5 {
            keys = Command::new("ssh-keyscan")
                .args([
                    "-T",
                    "30",
                    "-t",
                    "ed25519",
                    "-p",
                    &port.to_string(),
                    "127.0.0.1",
                ])
                .stderr(Stdio::null())
                .output()
                .unwrap()
                .stdout;
            if String::from_utf8_lossy(&keys).contains("ssh-ed25519") {
                break;
            }
        }
        assert!(
            String::from_utf8_lossy(&keys).contains("ssh-ed25519"),
            "ssh-keyscan got no ed25519 host key from the test host"
        );
        std::fs::write(vm.dir.path().join("known_hosts"), &keys).unwrap();
        std::fs::write(
            vm.dir.path().join("ssh_config"),
            format!(
                "Host testhost\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  ServerAliveInterval 2\n  ServerAliveCountMax 3\n  BatchMode yes\n",
                repo().join(".cache/testhost/id_ed25519").display(),
                vm.dir.path().join("known_hosts").display()
            ),
        )
        .unwrap();
        vm
    }

    pub fn script(&self, args: &[&str]) -> Output {
        let out = Command::new("bash")
            .arg(repo().join("tests/testhost/vm.sh"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(
            out.status.success() || args[0] == "ssh",
            "vm.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn ssh(&self, cmd: &str) -> String {
        String::from_utf8_lossy(&self.script(&["ssh", cmd]).stdout).into_owned()
    }

    pub fn inventory(&self, gpus: &str) -> PathBuf {
        let p = self.dir.path().join("inventory.toml");
        std::fs::write(
            &p,
            format!("[nodes.testhost]\nssh = \"testhost\"\nssh_config = \"ssh_config\"\n{gpus}"),
        )
        .unwrap();
        p
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("tests/testhost/vm.sh"))
            .arg("stop")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output();
    }
}

pub fn pvegpu(inv: &Path, args: &[&str]) -> (i32, String, String) {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_pvegpu"))
        .arg("-i")
        .arg(inv)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!(
        "TIMING pvegpu {}: {:.0} s\n{stderr}",
        args.join(" "),
        t.elapsed().as_secs_f64()
    );
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

pub fn report(json: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(v["format_version"], 1, "{json}");
    v["nodes"][0].clone()
}

/// A fresh VM of `layout` booted with `boot` (the tests are gated on `Need::TestHost`).
/// The guard keeps one VM at a time: under TCG one VM uses both cores.
pub fn vm(
    image: &'static str,
    layout: &str,
    boot: &str,
    port: u16,
) -> (std::sync::MutexGuard<'static, ()>, Vm) {
    if let Some(why) = Need::TestHost(image).missing() {
        panic!("{why}");
    }
    let guard = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    (guard, Vm::start(layout, boot, port))
}

pub const TARGETS: &str = "[[nodes.testhost.gpus]]\naddress = \"0000:00:03.0\"\nid = \"1234:11e8\"\n[[nodes.testhost.gpus]]\naddress = \"0000:00:04.0\"\nid = \"8086:100e\"\n";

pub fn assert_converged(r: &serde_json::Value) {
    assert!(
        r["status"] == "changed" || r["status"] == "unchanged",
        "{r}"
    );
    let checks = r["postconditions"].as_array().unwrap();
    assert!(!checks.is_empty());
    for c in checks {
        assert_eq!(c["status"], "pass", "postcondition failed: {c}");
    }
}

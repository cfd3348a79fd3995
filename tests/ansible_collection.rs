//! The Ansible collection in ansible/ansible_collections/pvegpu/proxmox under real ansible-core
//! from PyPI (`bash scripts/install-ansible.sh DIR`, then `PVEGPU_ANSIBLE=DIR`; `.ci/run` does
//! both). First `ansible-test sanity` on the module. Then ansible-playbook reaches this machine
//! through a real sshd on 127.0.0.1 (throwaway keys), as it would reach the host where pvegpu
//! and its inventory live: the plays target the Proxmox node and `delegate_to` that host, and
//! the module runs there, running the pvegpu binary of this build: against the fake Proxmox VE
//! of tests/vm_phase.rs with the converged test host's facts (so only the VM phase talks to a
//! server), and offline on saved facts for verify and the host's file diffs. No address but
//! 127.0.0.1 is contacted: verify is never pointed at the lab's VM, whose cloud-init address
//! is no machine here. The assertions read what Ansible registered (written out as JSON by a
//! `copy` task), and its human output only to see that `--diff` shows the file diffs.

#[path = "support/fake_pve/mod.rs"]
mod fake_pve;
mod support;
#[path = "support/vm_lab.rs"]
mod vm_lab;

use fake_pve::{LIMITED_TOKEN_SECRET, ROOT_TOKEN_SECRET};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::gate::{self, Gated, Need};
use support::sshd::{Sshd, start_sshd};
use vm_lab::{Lab, TOKEN};

const ANSIBLE: Need = Need::Dir(
    "PVEGPU_ANSIBLE",
    "run `bash scripts/install-ansible.sh DIR` and set it to DIR (.ci/run does)",
);

/// The folder scripts/install-ansible.sh filled.
fn ansible_dir() -> PathBuf {
    let dir = PathBuf::from(std::env::var("PVEGPU_ANSIBLE").unwrap());
    if dir.is_absolute() {
        dir
    } else {
        gate::repo().join(dir)
    }
}

fn venv_bin(tool: &str) -> PathBuf {
    ansible_dir().join("venv/bin").join(tool)
}

fn collection() -> PathBuf {
    gate::repo().join("ansible/ansible_collections/pvegpu/proxmox")
}

/// `program` under `timeout`, with no environment but what the caller gives it.
fn timed(program: &Path, seconds: u32) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.arg(seconds.to_string()).arg(program).env_clear();
    cmd
}

/// (exit code, stdout, stderr)
fn run(mut cmd: Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `ansible-test sanity` in a scratch copy of the collection (it must sit in a folder named
/// ansible_collections/NAMESPACE/NAME, and it writes tests/output there), from the environments
/// install-ansible.sh made: its HOME lets pip read nothing but the hash-checked wheels.
fn sanity(copy: &Path, tests: &[&str]) -> (i32, String) {
    let mut cmd = timed(&venv_bin("ansible-test"), 300);
    cmd.args(["sanity", "--python", "3.11", "--color", "no"]);
    for t in tests {
        cmd.args(["--test", t]);
    }
    cmd.current_dir(copy)
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", ansible_dir().join("venv/bin").display()),
        )
        .env("HOME", ansible_dir().join("home"));
    let (code, out, err) = run(cmd);
    (code, format!("{out}{err}"))
}

fn copy_collection(to: &Path) -> PathBuf {
    let dest = to.join("ansible_collections/pvegpu");
    std::fs::create_dir_all(&dest).unwrap();
    let ok = Command::new("cp")
        .arg("-r")
        .arg(collection())
        .arg(&dest)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let copy = dest.join("proxmox");
    let _ = std::fs::remove_dir_all(copy.join("tests/output"));
    copy
}

/// Every default sanity test of ansible-test 2.19 passes on the module; the ones that read it
/// (validate-modules against its argument spec, pylint, pep8, compile, import, ansible-doc,
/// yamllint on its documentation) ran, and validate-modules does fail a module whose
/// documentation disagrees with its argument spec.
fn sanity_passes_and_validate_modules_reads_the_module() {
    let scratch = tempfile::tempdir().unwrap();
    let copy = copy_collection(scratch.path());
    let (code, out) = sanity(&copy, &[]);
    assert_eq!(code, 0, "{out}");
    for test in [
        "validate-modules",
        "pylint",
        "pep8",
        "compile",
        "import",
        "ansible-doc",
        "yamllint",
        "runtime-metadata",
    ] {
        assert!(
            out.contains(&format!("Running sanity test \"{test}\"")),
            "{test} did not run: {out}"
        );
    }
    assert!(!out.contains("Skipping sanity test"), "{out}");

    let module = copy.join("plugins/modules/pvegpu.py");
    let text = std::fs::read_to_string(&module).unwrap();
    let required = "    type: str\n    required: true\n";
    assert!(text.contains(required));
    std::fs::write(&module, text.replacen(required, "    type: str\n", 1)).unwrap();
    let (code, out) = sanity(&copy, &["validate-modules"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("doc-required-mismatch: Argument 'node' in argument_spec is required"),
        "{out}"
    );
}

/// This machine as the host that runs pvegpu, reached over SSH: a real sshd, an Ansible
/// configuration and inventory of its own (nothing read from or written to ~/.ansible).
struct Controller {
    /// Serves while the controller lives.
    _sshd: Sshd,
    work: tempfile::TempDir,
    /// The Proxmox node of the plays, as named in the pvegpu inventory.
    node: &'static str,
}

/// What one ansible-playbook run registered, and how it ended.
struct Played {
    code: i32,
    output: String,
    results: Vec<Value>,
}

impl Controller {
    fn start(node: &'static str) -> Controller {
        let sshd = start_sshd(false);
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        for d in ["home", "local", "remote", "cp"] {
            std::fs::create_dir_all(w.join(d)).unwrap();
        }
        let python = venv_bin("python");
        std::fs::write(
            w.join("ansible.cfg"),
            format!(
                "[defaults]\ncollections_path = {collections}\ncollections_scan_sys_path = false\nhome = {w}/home\nlocal_tmp = {w}/local\nremote_tmp = {w}/remote\nnocolor = true\nretry_files_enabled = false\ninterpreter_python = {python}\n\n[ssh_connection]\nssh_args = -F {config} -o ControlMaster=no\ncontrol_path_dir = {w}/cp\npipelining = true\n",
                collections = gate::repo().join("ansible").display(),
                w = w.display(),
                python = python.display(),
                config = sshd.path("ssh_config").display(),
            ),
        )
        .unwrap();
        // the Proxmox node is never contacted (every task is delegated): it has no address
        let hosts = json!({"all": {"hosts": {
            node: {},
            "controller": {
                "ansible_connection": "ssh",
                "ansible_host": "testnode",
                "ansible_python_interpreter": python,
            },
        }}});
        std::fs::write(w.join("hosts.yml"), hosts.to_string()).unwrap();
        Controller {
            _sshd: sshd,
            work,
            node,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.work.path().join(rel)
    }

    /// A play on the node: one module task per entry of `tasks` (its arguments, and task
    /// keywords such as `check_mode`), each delegated to the controller, registered and never
    /// stopping the play; a last task writes what they registered to a file.
    fn play(&self, name: &str, tasks: &[(Value, Value)]) -> PathBuf {
        let out = self.path(&format!("{name}.json"));
        let mut list = vec![json!({
            "name": "the tasks reach the controller over SSH",
            "ansible.builtin.command": "printenv SSH_CONNECTION",
            "delegate_to": "controller",
            "register": "over_ssh",
            "changed_when": false,
            "check_mode": false,
        })];
        let mut names = Vec::new();
        for (i, (args, keywords)) in tasks.iter().enumerate() {
            let mut task = json!({
                "name": format!("pvegpu {i}"),
                "pvegpu.proxmox.pvegpu": args,
                "delegate_to": "controller",
                "environment": {"PVEGPU_STATE_DIR": self.path("state")},
                "register": format!("r{i}"),
                "ignore_errors": true,
            });
            if let Value::Object(k) = keywords {
                task.as_object_mut().unwrap().extend(k.clone());
            }
            list.push(task);
            names.push(format!("r{i}"));
        }
        list.push(json!({
            "name": "keep what was registered",
            "ansible.builtin.copy": {
                "content": format!("{{{{ {{'over_ssh': over_ssh.stdout, 'results': [{}]}} | to_json }}}}", names.join(", ")),
                "dest": out,
            },
            "delegate_to": "localhost",
            "check_mode": false,
            "diff": false,
        }));
        let play =
            json!([{"name": name, "hosts": self.node, "gather_facts": false, "tasks": list}]);
        let path = self.path(&format!("{name}.yml"));
        std::fs::write(&path, serde_json::to_string_pretty(&play).unwrap()).unwrap();
        path
    }

    /// ansible-playbook from the venv with `flags` (`--check`, `--diff`), the token secrets in
    /// its environment only (the plays read them with the `env` lookup).
    fn ansible_playbook(&self, play: &Path, flags: &[&str]) -> Command {
        let mut cmd = timed(&venv_bin("ansible-playbook"), 300);
        cmd.arg("-i")
            .arg(self.path("hosts.yml"))
            .args(flags)
            .arg(play)
            .current_dir(self.work.path())
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.path("home"))
            .env("LC_ALL", "C.UTF-8")
            .env("ANSIBLE_CONFIG", self.path("ansible.cfg"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("LAB_TOKEN_SECRET", ROOT_TOKEN_SECRET)
            .env("LAB_LIMITED_SECRET", LIMITED_TOKEN_SECRET);
        cmd
    }

    fn playbook(&self, play: &Path, flags: &[&str]) -> Played {
        let (code, out, err) = run(self.ansible_playbook(play, flags));
        self.played(play, code, format!("{out}{err}"))
    }

    /// The same on a blocking thread: the fake serves on this runtime's workers.
    async fn playbook_beside_the_fake(&self, play: &Path, flags: &[&str]) -> Played {
        let cmd = self.ansible_playbook(play, flags);
        let (code, out, err) = tokio::task::spawn_blocking(move || run(cmd)).await.unwrap();
        self.played(play, code, format!("{out}{err}"))
    }

    /// What the play's last task wrote: the delegated tasks ran over SSH (`SSH_CONNECTION`
    /// names 127.0.0.1), and no secret is in it or in Ansible's output.
    fn played(&self, play: &Path, code: i32, output: String) -> Played {
        let saved = play.with_extension("json");
        let registered: Value = match std::fs::read_to_string(&saved) {
            Ok(text) => serde_json::from_str(&text).unwrap(),
            Err(e) => panic!("{}: {e}; ansible-playbook said:\n{output}", saved.display()),
        };
        std::fs::remove_file(&saved).unwrap();
        let over_ssh = registered["over_ssh"].as_str().unwrap_or("").to_string();
        assert!(
            over_ssh.starts_with("127.0.0.1 "),
            "the delegated tasks did not run over SSH: SSH_CONNECTION={over_ssh:?}"
        );
        for secret in [ROOT_TOKEN_SECRET, LIMITED_TOKEN_SECRET] {
            assert!(
                !output.contains(secret) && !registered.to_string().contains(secret),
                "a secret leaked: {output}\n{registered}"
            );
        }
        Played {
            code,
            output,
            results: registered["results"].as_array().unwrap().clone(),
        }
    }
}

/// The module's arguments for the lab's node, with the converged test host's facts.
fn lab_args(inv: &Path, extra: Value) -> Value {
    let mut args = json!({
        "node": "{{ inventory_hostname }}",
        "inventory": inv,
        "facts": inv.with_file_name("pvetest.facts"),
        "binary": pvegpu_binary(),
        "token_secret": "{{ lookup('ansible.builtin.env', 'LAB_TOKEN_SECRET') }}",
    });
    if let (Value::Object(a), Value::Object(e)) = (&mut args, extra) {
        a.extend(e);
    }
    args
}

/// The binary of this build, which the module runs on the controller.
fn pvegpu_binary() -> &'static str {
    env!("CARGO_BIN_EXE_pvegpu")
}

fn no_keywords() -> Value {
    Value::Object(Map::new())
}

/// Requests that change something (anything but a read).
fn writes(lab: &Lab) -> Vec<String> {
    lab.fake
        .all_requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// One result as the test expects it, with the whole run in the message when it is not.
fn ok(played: &Played, i: usize) -> &Value {
    let r = &played.results[i];
    assert_eq!(r["failed"], json!(false), "{r:#}\n{}", played.output);
    r
}

/// One converge playbook: in check mode a plan (changed, and the fake saw only reads), applied
/// with `--diff` (the plan's changes, then the mappings and the VM created: changed), applied
/// again (unchanged, no write) and checked again (nothing to do).
async fn check_then_apply_converges_then_nothing_to_do() {
    let lab = Lab::start().await;
    let inv = lab.inventory(TOKEN, "");
    let c = Controller::start("pvetest");
    let converge = c.play("converge", &[(lab_args(&inv, json!({})), no_keywords())]);

    // check mode: a plan, changed, and the fake saw reads only
    let check = c
        .playbook_beside_the_fake(&converge, &["--check", "--diff"])
        .await;
    assert_eq!(check.code, 0, "{}", check.output);
    let r = ok(&check, 0);
    assert_eq!(r["changed"], json!(true), "{r:#}");
    assert_eq!(r["command"], "plan", "{r:#}");
    assert_eq!(r["status"], "ready", "{r:#}");
    assert_eq!(r["pvegpu"]["format_version"], json!(1), "{r:#}");
    let cmd: Vec<&str> = r["cmd"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(cmd[0], pvegpu_binary());
    assert!(
        cmd.windows(2).any(|w| w == ["--limit", "pvetest"]) && cmd.contains(&"plan"),
        "{cmd:?}"
    );
    let vm_changes: Vec<&str> = r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["phase"] == "vm")
        .map(|c| c["summary"].as_str().unwrap())
        .collect();
    for what in ["gpu-00-03", "gpu-00-04", "201"] {
        assert!(
            vm_changes.iter().any(|c| c.contains(what)),
            "no VM change names {what}: {r:#}"
        );
    }
    // the VM phase writes no file on the node: no file diff
    assert_eq!(r["diff"], json!([]), "{r:#}");
    assert_eq!(writes(&lab), Vec::<String>::new());
    assert!(lab.fake.state.lock().unwrap().vms.is_empty());

    // apply: the VM is created, changed; with --diff the plan came first
    let apply = c.playbook_beside_the_fake(&converge, &["--diff"]).await;
    assert_eq!(apply.code, 0, "{}", apply.output);
    let r = ok(&apply, 0);
    assert_eq!(r["changed"], json!(true), "{r:#}");
    assert_eq!(r["command"], "apply", "{r:#}");
    assert_eq!(r["status"], "changed", "{r:#}");
    assert_eq!(r["changes"].as_array().unwrap().len(), vm_changes.len());
    assert_eq!(r["pvegpu"]["nodes"][0]["ok"], json!(true), "{r:#}");
    {
        let st = lab.fake.state.lock().unwrap();
        let vm = &st.vms[&201];
        assert!(vm.running);
        assert_eq!(vm.config["hostpci0"], "mapping=gpu-00-03");
        assert_eq!(vm.config["hostpci1"], "mapping=gpu-00-04");
        assert_eq!(st.mappings.len(), 2);
    }

    // the same playbook again: nothing changes, in pvegpu or in the fake
    let before = writes(&lab).len();
    let again = c.playbook_beside_the_fake(&converge, &[]).await;
    assert_eq!(again.code, 0, "{}", again.output);
    let r = ok(&again, 0);
    assert_eq!(r["changed"], json!(false), "{r:#}");
    assert_eq!(r["status"], "unchanged", "{r:#}");
    assert_eq!(writes(&lab).len(), before, "{:?}", writes(&lab));

    // and a check of the converged node has nothing to do
    let check = c.playbook_beside_the_fake(&converge, &["--check"]).await;
    let r = ok(&check, 0);
    assert_eq!(r["changed"], json!(false), "{r:#}");
    assert_eq!(r["status"], "nothing_to_do", "{r:#}");
}

/// Failures carry pvegpu's own words: a check without the token's secret (the plan is
/// incomplete: the VM phase left out with pvegpu's error and hints), a privilege-separated
/// token lacking privileges (apply refused: the refusal and its hint from the plan in its
/// JSON), and a phase asked of apply (failed by the module before pvegpu runs).
async fn failures_carry_pvegpus_message_and_hint() {
    let lab = Lab::start().await;
    let inv = lab.inventory("token = \"root@pam!limited\"", "");
    let c = Controller::start("pvetest");
    let no_secret = lab_args(&inv, json!({"token_secret": null}));
    let limited = lab_args(
        &inv,
        json!({"token_secret": "{{ lookup('ansible.builtin.env', 'LAB_LIMITED_SECRET') }}"}),
    );
    let play = c.play(
        "failures",
        &[
            (no_secret, json!({"check_mode": true})),
            (limited, no_keywords()),
            (lab_args(&inv, json!({"phase": "host"})), no_keywords()),
        ],
    );
    let p = c.playbook_beside_the_fake(&play, &[]).await;
    assert_eq!(
        p.code, 0,
        "ignore_errors keeps the play going: {}",
        p.output
    );

    let r = &p.results[0];
    assert_eq!(r["failed"], json!(true), "{r:#}");
    assert_eq!(r["status"], "incomplete", "{r:#}");
    let msg = r["msg"].as_str().unwrap();
    assert!(
        msg.contains("no secret for API token root@pam!limited: set $PVEGPU_TOKEN_SECRET"),
        "{msg}"
    );
    assert!(
        msg.contains("hint: an [api] table needs `url`"),
        "the hint is not in the message: {msg}"
    );
    assert!(
        r["hint"]
            .as_str()
            .is_some_and(|h| h.starts_with("an [api] table needs")),
        "{r:#}"
    );

    let r = &p.results[1];
    assert_eq!(r["failed"], json!(true), "{r:#}");
    let msg = r["msg"].as_str().unwrap();
    assert!(
        msg.contains("the API credentials lack privileges the plan needs"),
        "{msg}"
    );
    assert!(
        msg.contains("- VM.Config.Memory on /vms/201: to set memory"),
        "{msg}"
    );
    assert!(msg.contains("; hint: grant them to the token"), "{msg}");
    assert_eq!(r["status"], "refused", "{r:#}");
    assert_eq!(r["pvegpu"]["format_version"], json!(1), "{r:#}");
    assert!(lab.fake.state.lock().unwrap().vms.is_empty());
    assert_eq!(writes(&lab), Vec::<String>::new());

    let r = &p.results[2];
    assert_eq!(r["failed"], json!(true), "{r:#}");
    assert!(
        r["msg"]
            .as_str()
            .unwrap()
            .starts_with("phase is for check mode only"),
        "{r:#}"
    );
    assert!(r.get("cmd").is_none(), "pvegpu ran: {r:#}");
}

/// `state: verified` runs verify, read-only: it passes on the converged test host's facts and
/// fails on the fresh one's, naming each failed check with pvegpu's fix. The inventory has no
/// [vm]: the VM and guest layers would be reached at the cloud-init address, which is no
/// machine here.
fn verified_passes_on_a_converged_host_and_fails_with_each_fix() {
    let c = Controller::start("pvetest");
    let inv = c.path("pvegpu.toml");
    std::fs::write(
        &inv,
        "[nodes.pvetest]\nssh = \"root@127.0.0.1\"\n[[nodes.pvetest.gpus]]\naddress = \"0000:00:03.0\"\nid = \"1234:11e8\"\n[[nodes.pvetest.gpus]]\naddress = \"0000:00:04.0\"\nid = \"8086:100e\"\n",
    )
    .unwrap();
    let converged = support::converged_testhost_facts(&inv);
    let verified = |facts: &Path| {
        json!({
            "node": "{{ inventory_hostname }}",
            "state": "verified",
            "inventory": inv,
            "facts": facts,
            "binary": pvegpu_binary(),
        })
    };
    let fresh = support::fixture("probe/testhost-bookworm-fresh.txt");
    let play = c.play(
        "verified",
        &[
            (verified(&converged), no_keywords()),
            (verified(&fresh), no_keywords()),
        ],
    );
    let p = c.playbook(&play, &[]);
    assert_eq!(p.code, 0, "{}", p.output);
    let r = ok(&p, 0);
    assert_eq!(r["changed"], json!(false), "{r:#}");
    assert_eq!(r["command"], "verify", "{r:#}");
    assert_eq!(r["status"], "passed", "{r:#}");
    assert_eq!(r["pvegpu"]["passed"], json!(true), "{r:#}");

    let r = &p.results[1];
    assert_eq!(r["failed"], json!(true), "{r:#}");
    assert_eq!(r["changed"], json!(false), "{r:#}");
    assert_eq!(r["status"], "failed", "{r:#}");
    assert_eq!(r["pvegpu"]["passed"], json!(false), "{r:#}");
    let msg = r["msg"].as_str().unwrap();
    // each failed check by layer and name, with what it saw, and pvegpu's fixes as hints
    assert!(
        msg.contains("pvetest host/0000:00:04.0 on vfio-pci fail: driver: e1000"),
        "{msg}"
    );
    assert!(msg.contains("; hint: "), "{msg}");
    let hint = r["hint"].as_str().unwrap();
    assert!(hint.contains("pvegpu apply"), "{hint}");
}

/// Diff mode shows each file the host plan writes, headed by its path, with the file as the
/// node has it before and as pvegpu writes it (osm45 of the seed write-up, planned offline
/// from its facts).
fn check_mode_diff_shows_each_host_file() {
    let c = Controller::start("osm45");
    let args = json!({
        "node": "{{ inventory_hostname }}",
        "inventory": gate::repo().join("inventories/osm45.toml"),
        "facts": gate::repo().join("tests/fixtures/facts/osm45.facts"),
        "phase": "host",
        "binary": pvegpu_binary(),
    });
    let play = c.play("diff", &[(args, no_keywords())]);
    let p = c.playbook(&play, &["--check", "--diff"]);
    assert_eq!(p.code, 0, "{}", p.output);
    let r = ok(&p, 0);
    assert_eq!(r["changed"], json!(true), "{r:#}");
    assert_eq!(r["status"], "ready", "{r:#}");
    let diffs = r["diff"].as_array().unwrap();
    let headers: Vec<&str> = diffs
        .iter()
        .map(|d| d["after_header"].as_str().unwrap())
        .collect();
    assert_eq!(
        headers,
        [
            "/etc/modules-load.d/pvegpu-vfio.conf",
            "/etc/initramfs-tools/modules",
            "/etc/modprobe.d/pvegpu-vfio.conf",
            "/etc/modprobe.d/pvegpu-blacklist.conf",
        ],
        "{r:#}"
    );
    for d in diffs {
        assert_eq!(d["before_header"], d["after_header"]);
    }
    // a new file has nothing before; an edited one keeps its lines and gains the vfio modules
    assert_eq!(diffs[0]["before"], "");
    assert!(
        diffs[2]["after"]
            .as_str()
            .unwrap()
            .contains("options vfio-pci ids=")
    );
    let modules = (
        diffs[1]["before"].as_str().unwrap(),
        diffs[1]["after"].as_str().unwrap(),
    );
    assert!(modules.0.starts_with("# List of modules") && !modules.0.contains("vfio_pci"));
    assert!(modules.1.starts_with("# List of modules") && modules.1.contains("vfio_pci"));
    // the commands and the reboot are changes without a file
    let steps: Vec<&str> = r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["step"].as_str().unwrap())
        .collect();
    assert!(
        steps.contains(&"initramfs") && steps.contains(&"reboot"),
        "{steps:?}"
    );
    // Ansible shows them as it shows any file diff
    assert!(
        p.output
            .contains("--- before: /etc/modprobe.d/pvegpu-vfio.conf")
            && p.output
                .contains("+++ after: /etc/modprobe.d/pvegpu-vfio.conf"),
        "{}",
        p.output
    );
}

fn main() {
    let play = [ANSIBLE, Need::Sshd];
    Gated::new()
        .test(
            "sanity_passes_and_validate_modules_reads_the_module",
            &[ANSIBLE],
            sanity_passes_and_validate_modules_reads_the_module,
        )
        .test(
            "check_then_apply_converges_then_nothing_to_do",
            &play,
            || gate::block_on(check_then_apply_converges_then_nothing_to_do()),
        )
        .test("failures_carry_pvegpus_message_and_hint", &play, || {
            gate::block_on(failures_carry_pvegpus_message_and_hint())
        })
        .test(
            "verified_passes_on_a_converged_host_and_fails_with_each_fix",
            &play,
            verified_passes_on_a_converged_host_and_fails_with_each_fix,
        )
        .test(
            "check_mode_diff_shows_each_host_file",
            &play,
            check_mode_diff_shows_each_host_file,
        )
        .run()
}

//! Facts over a real OpenSSH connection: the test starts its own sshd on 127.0.0.1 with
//! throwaway keys and strict host key checking, and runs the pvegpu binary against it.
//! This machine is not Proxmox VE; where a test needs it to pass as one, sshd puts a
//! stand-in `pveversion` on the PATH (the only stand-in: every other fact is this machine's).

mod support;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use support::gate::{self, Gated, Need};
use support::sshd::{keygen, start_sshd};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn refuses_a_node_that_is_not_proxmox() {
    let sshd = start_sshd(false);
    let inv = sshd.inventory("");
    let out = sshd.pvegpu(&inv, &["discover", "--node", "testnode"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: testnode") && err.contains("is not a Proxmox VE node"),
        "{err}"
    );
    assert!(err.contains("hint: point the node's `ssh`"), "{err}");
    assert!(out.stdout.is_empty());
}

fn gathers_real_facts_and_plans_the_same_offline() {
    let sshd = start_sshd(true);
    let inv = sshd.inventory("");
    let saved = sshd.path("testnode.facts");
    let out = sshd.pvegpu(
        &inv,
        &[
            "-v",
            "--json",
            "discover",
            "--node",
            "testnode",
            "--save",
            saved.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // -v logs each remote script: its name, size, exit status and time
    let log = text(&out.stderr);
    assert!(
        log.lines()
            .any(|l| l.contains("script `pvegpu host probe: read-only")
                && l.contains(" bytes): exit 0 in ")),
        "{log}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let local_kernel = text(&Command::new("uname").arg("-r").output().unwrap().stdout)
        .trim()
        .to_string();
    assert_eq!(report["format_version"], 1);
    let host = &report["nodes"][0]["host"];
    assert_eq!(host["running_kernel"], local_kernel);
    assert_eq!(host["pve_version"], "9.1.1");
    for state in ["iommu", "interrupt_remapping"] {
        let s = host[state].as_str().unwrap();
        assert!(["on", "off", "unknown"].contains(&s), "{state}: {s}");
    }
    let local_cmdline = std::fs::read_to_string("/proc/cmdline").unwrap();
    let remote_cmdline: Vec<String> = serde_json::from_value(host["cmdline"].clone()).unwrap();
    assert_eq!(
        remote_cmdline.join(" "),
        local_cmdline
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    );

    // the saved file is the probe's raw output, and planning from it matches planning live
    let facts = std::fs::read_to_string(&saved).unwrap();
    let parsed = support::facts(&facts);
    assert_eq!(parsed.running_kernel, local_kernel);
    let local_devices = std::fs::read_dir("/sys/bus/pci/devices")
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(parsed.devices.len(), local_devices);

    let target = parsed
        .devices
        .first()
        .map(|d| d.address.to_string())
        .unwrap_or_else(|| "0000:00:03.0".into());
    let inv = sshd.inventory(&format!(
        "[[nodes.testnode.gpus]]\naddress = \"{target}\"\n"
    ));
    let live = sshd.pvegpu(&inv, &["plan", "--node", "testnode"]);
    let offline = sshd.pvegpu(&inv, &["plan", "--facts", saved.to_str().unwrap()]);
    assert_eq!(text(&live.stdout), text(&offline.stdout));
    assert_eq!(live.status.code(), offline.status.code());
    assert!(!text(&live.stdout).is_empty());
}

fn host_key_mismatch_is_refused_with_a_hint() {
    let sshd = start_sshd(true);
    let other = sshd.path("otherkey");
    keygen(&other);
    let wrong = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    std::fs::write(
        sshd.path("known_hosts"),
        format!("[127.0.0.1]:{} {wrong}", sshd.port),
    )
    .unwrap();
    let inv = sshd.inventory("");
    let out = sshd.pvegpu(&inv, &["plan", "--node", "testnode"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot connect to testnode over SSH"), "{err}");
    assert!(
        err.contains("hint: the host key of testnode is unknown or has changed"),
        "{err}"
    );
}

fn unreachable_node_is_a_clear_error() {
    let sshd = start_sshd(true);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = std::fs::read_to_string(sshd.path("ssh_config"))
        .unwrap()
        .replace(&format!("Port {}", sshd.port), &format!("Port {port}"));
    std::fs::write(sshd.path("ssh_config"), cfg).unwrap();
    let inv = sshd.inventory("");
    let out = sshd.pvegpu(&inv, &["discover", "--node", "testnode"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot connect to testnode over SSH"), "{err}");
    assert!(err.contains("hint: check the address and port"), "{err}");
}

fn apply_on_a_refused_node_changes_nothing() {
    // this machine has no IOMMU: the plan is refused before any write
    let sshd = start_sshd(true);
    let inv = sshd.inventory("[[nodes.testnode.gpus]]\naddress = \"0000:00:03.0\"\n");
    let state_before = Path::new("/var/lib/pvegpu").exists();
    let out = sshd.pvegpu(&inv, &["apply", "--node", "testnode", "--yes"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("pvegpu refuses to change testnode"), "{err}");
    assert!(text(&out.stdout).contains("Refused:"));
    assert_eq!(
        Path::new("/var/lib/pvegpu").exists(),
        state_before,
        "no state or backup was written"
    );
}

/// Several nodes (#15), all this machine under three names: a node that is refused stops the
/// nodes after it unless `--keep-going`; every node gets a status, the recap is on stderr
/// and in the JSON, and the run fails naming the nodes that did not converge.
fn apply_rolls_through_nodes_and_recaps() {
    let sshd = start_sshd(true);
    let node = |name: &str, gpus: &str| {
        format!("[nodes.{name}]\nssh = \"testnode\"\nssh_config = \"ssh_config\"\n{gpus}")
    };
    let inv = sshd.path("fleet.toml");
    std::fs::write(
        &inv,
        [
            node("a1", ""),
            node("b2", "[[nodes.b2.gpus]]\naddress = \"0000:00:03.0\"\n"),
            node("c3", ""),
        ]
        .join("\n"),
    )
    .unwrap();
    let statuses = |out: &std::process::Output| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stderr)));
        assert_eq!(v["format_version"], 1);
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                format!(
                    "{}={}",
                    n["node"].as_str().unwrap(),
                    n["status"].as_str().unwrap()
                )
            })
            .collect()
    };
    let out = sshd.pvegpu(&inv, &["--json", "apply", "--yes"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let got = statuses(&out);
    // this machine has no IOMMU: a1 has no target, so only its postconditions can fail it
    let first = got[0].clone();
    assert!(first == "a1=unchanged" || first == "a1=failed", "{got:?}");
    let stopped_at_a1 = first == "a1=failed";
    let b2 = if stopped_at_a1 {
        "b2=skipped"
    } else {
        "b2=refused"
    };
    assert_eq!(got, [first.as_str(), b2, "c3=skipped"], "{err}");
    assert!(err.contains("Recap:") && err.contains("skipped"), "{err}");
    assert!(err.contains("did not converge (recap above)"), "{err}");

    let out = sshd.pvegpu(
        &inv,
        &["--json", "apply", "--yes", "--keep-going", "--limit", "all"],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let a1 = first.clone();
    let c3 = a1.replace("a1", "c3");
    assert_eq!(
        statuses(&out),
        [a1.as_str(), "b2=refused", c3.as_str()],
        "{err}"
    );
    let recap = &err[err.find("Recap:").unwrap_or_else(|| panic!("{err}"))..];
    assert!(recap.contains("b2    refused"), "{recap}");
    assert!(recap.contains("0 skipped"), "{recap}");

    // one node left out by the pattern is not in the run at all
    let out = sshd.pvegpu(
        &inv,
        &[
            "--json",
            "apply",
            "--yes",
            "--limit",
            "all,!b2",
            "--keep-going",
        ],
    );
    let got = statuses(&out);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(!got.iter().any(|s| s.starts_with("b2")));
}

/// A watched script tells each line as it comes (`\n` or a progress bar's `\r`), before the
/// script ends, and still returns its whole output and exit status.
fn watched_script_tells_each_line_as_it_comes() {
    use pvegpu::transport::ssh::SshConnector;
    use pvegpu::transport::{Connector, Remote};
    use std::sync::{Arc, Mutex};
    let sshd = start_sshd(false);
    gate::block_on(async move {
        let connector = SshConnector::node("testnode", Some(sshd.path("ssh_config")));
        let remote = connector.connect().await.unwrap();
        let seen: Arc<Mutex<Vec<(String, std::time::Instant)>>> = Arc::default();
        let watch = {
            let seen = seen.clone();
            move |l: &str| {
                seen.lock()
                    .unwrap()
                    .push((l.to_string(), std::time::Instant::now()))
            }
        };
        let started = std::time::Instant::now();
        let out = remote
            .run_script_watched(
                "echo 'update-initramfs: Generating /boot/initrd.img-6.8.12-4-pve'; sleep 1; printf 'Progress: 50%%\\rProgress: 100%%\\n'; echo oops >&2; exit 3",
                &watch,
            )
            .await
            .unwrap();
        let ended = std::time::Instant::now();
        connector.close(remote).await;
        assert_eq!(out.status, Some(3));
        assert!(
            out.stdout.starts_with("update-initramfs: Generating"),
            "{out:?}"
        );
        assert_eq!(out.stderr, "oops\n");
        let seen = seen.lock().unwrap();
        let lines: Vec<&str> = seen.iter().map(|(l, _)| l.as_str()).collect();
        assert!(
            lines.contains(&"update-initramfs: Generating /boot/initrd.img-6.8.12-4-pve")
                && lines.contains(&"Progress: 50%")
                && lines.contains(&"Progress: 100%")
                && lines.contains(&"oops"),
            "{lines:?}"
        );
        // the first line came while the script still slept, not at its end
        let first = seen[0].1;
        assert!(
            ended.duration_since(first).as_millis() >= 800,
            "{:?} after the start",
            first - started
        );
    });
}

/// `compat --node` reads the node's GPUs live with the host probe; this machine has no NVIDIA
/// GPU, so the answer is that error, naming the node.
fn compat_reads_a_nodes_gpus_live() {
    let sshd = start_sshd(true);
    let inv = sshd.inventory("");
    let out = sshd.pvegpu(&inv, &["compat", "--node", "testnode"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: node testnode has no NVIDIA GPU"),
        "{err}"
    );
    assert!(err.contains("hint: name the GPUs"), "{err}");
    // named GPUs are answered beside the node's (none here)
    let out = sshd.pvegpu(
        &inv,
        &["--json", "compat", "--node", "testnode", "10de:1b80"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["gpus_from"], "node testnode");
    assert_eq!(v["gpus"][0]["id"], "10de:1b80");
}

fn main() {
    Gated::new()
        .test(
            "compat_reads_a_nodes_gpus_live",
            &[Need::Sshd],
            compat_reads_a_nodes_gpus_live,
        )
        .test(
            "refuses_a_node_that_is_not_proxmox",
            &[Need::Sshd],
            refuses_a_node_that_is_not_proxmox,
        )
        .test(
            "gathers_real_facts_and_plans_the_same_offline",
            &[Need::Sshd],
            gathers_real_facts_and_plans_the_same_offline,
        )
        .test(
            "host_key_mismatch_is_refused_with_a_hint",
            &[Need::Sshd],
            host_key_mismatch_is_refused_with_a_hint,
        )
        .test(
            "unreachable_node_is_a_clear_error",
            &[Need::Sshd],
            unreachable_node_is_a_clear_error,
        )
        .test(
            "apply_on_a_refused_node_changes_nothing",
            &[Need::Sshd],
            apply_on_a_refused_node_changes_nothing,
        )
        .test(
            "apply_rolls_through_nodes_and_recaps",
            &[Need::Sshd, Need::Root],
            apply_rolls_through_nodes_and_recaps,
        )
        .test(
            "watched_script_tells_each_line_as_it_comes",
            &[Need::Sshd],
            watched_script_tells_each_line_as_it_comes,
        )
        .run()
}

//! The host corpus (tests/hosts): `pvegpu discover --paste` on each real transcript, its
//! verdicts against those written from the post. The score goes to stderr (README quotes it);
//! what must hold everywhere is the safety direction: no device the post shows to be unsafe
//! or unknowable may come out passable.
//!
//! The second test runs the same on hosts found in files of public repositories (a user's
//! `iommu.txt`, a `tested_hardware.md`), which are kept outside this repository under
//! `../shared/corpus/hosts-from-repositories/` (tests/hosts/README.md says why); it shows as
//! ignored where that folder is absent.

mod support;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Expected {
    address: String,
    verdict: String,
    reasons: BTreeSet<String>,
}

const FROM_REPOSITORIES: &str = "corpus/hosts-from-repositories";

fn hosts(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("transcript.txt").exists())
        .collect();
    out.sort();
    out
}

fn host_toml(dir: &Path) -> toml::Value {
    let text = std::fs::read_to_string(dir.join("host.toml")).unwrap();
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// Host-wide facts the post settles (`[host]` in host.toml: `iommu`, `interrupt_remapping`),
/// for hosts whose post lists no device to judge, such as IOMMU off in firmware.
fn expected_host(dir: &Path) -> Vec<(String, String)> {
    host_toml(dir)
        .get("host")
        .and_then(|h| h.as_table())
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

fn expected(dir: &Path) -> Vec<Expected> {
    let v = host_toml(dir);
    v.get("device")
        .and_then(|d| d.as_array())
        .into_iter()
        .flatten()
        .map(|d| Expected {
            address: d["address"].as_str().unwrap().to_string(),
            verdict: d["verdict"].as_str().unwrap().to_string(),
            // an unknown is compared by its verdict; the facts it needs are the tool's to name
            reasons: d
                .get("reasons")
                .and_then(|r| r.as_array())
                .into_iter()
                .flatten()
                .map(|r| r.as_str().unwrap().to_string())
                .filter(|c| !c.ends_with("_unknown"))
                .collect(),
        })
        .collect()
}

/// The devices the post is about are the node's targets, as the poster's inventory would
/// name them; display devices are judged without being named.
fn discover(dir: &Path, expected: &[Expected]) -> serde_json::Value {
    let scratch = std::env::temp_dir().join(format!(
        "pvegpu-corpus-{}-{}",
        std::process::id(),
        dir.file_name().unwrap().to_string_lossy()
    ));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut inventory = String::from("[nodes.pasted]\nssh = \"root@pasted.invalid\"\n");
    for e in expected {
        inventory.push_str(&format!(
            "[[nodes.pasted.gpus]]\naddress = \"{}\"\n",
            e.address
        ));
    }
    let inv = scratch.join("pvegpu.toml");
    std::fs::write(&inv, inventory).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pvegpu"))
        .arg("-i")
        .arg(&inv)
        .args(["--json", "discover", "--paste"])
        .arg(dir.join("transcript.txt"))
        .output()
        .unwrap();
    std::fs::remove_dir_all(&scratch).ok();
    assert!(
        out.status.success(),
        "{}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn discover_paste_on_every_host_of_the_corpus() {
    let all = hosts(&support::gate::repo().join("tests/hosts"));
    assert!(all.len() >= 30, "the corpus has {} hosts", all.len());
    score(&all);
}

fn discover_paste_on_the_hosts_from_repository_files() {
    let all = hosts(&support::gate::shared().join(FROM_REPOSITORIES));
    assert!(
        !all.is_empty(),
        "no host under ../shared/{FROM_REPOSITORIES}"
    );
    score(&all);
}

/// Judge every host, print the score, and fail on any unsafe pass.
fn score(all: &[PathBuf]) {
    let (mut hosts_right, mut devices_right, mut devices) = (0, 0, 0);
    let mut unsafe_passes = Vec::new();
    for dir in all {
        let want = expected(dir);
        let report = discover(dir, &want);
        let judged = report["nodes"][0]["devices"].as_array().unwrap();
        let mut host_right = true;
        for (fact, want) in expected_host(dir) {
            let got = report["nodes"][0]["host"][&fact]
                .as_str()
                .unwrap_or("absent");
            if got == "on" && want != "on" {
                unsafe_passes.push(format!("{} host {fact}", dir.display()));
            }
            if got != want {
                host_right = false;
                eprintln!(
                    "MISS {} host {fact}: expected {want}, got {got}",
                    dir.file_name().unwrap().to_string_lossy()
                );
            }
        }
        for e in want {
            devices += 1;
            let got = judged.iter().find(|d| {
                d["address"]
                    .as_str()
                    .unwrap()
                    .eq_ignore_ascii_case(&e.address)
            });
            let (verdict, reasons) = match got {
                Some(d) => (
                    d["verdict"].as_str().unwrap().to_string(),
                    d["reasons"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r["code"].as_str().unwrap().to_string())
                        // the corpus names what the post shows; unknowns are compared as the verdict
                        .filter(|c| !c.ends_with("_unknown"))
                        .collect::<BTreeSet<_>>(),
                ),
                None => ("not found".to_string(), BTreeSet::new()),
            };
            let right = verdict == e.verdict && reasons == e.reasons;
            if verdict == "passable" && e.verdict != "passable" {
                unsafe_passes.push(format!("{} {}", dir.display(), e.address));
            }
            if right {
                devices_right += 1;
            } else {
                host_right = false;
                eprintln!(
                    "MISS {} {}: expected {} {:?}, got {verdict} {reasons:?}",
                    dir.file_name().unwrap().to_string_lossy(),
                    e.address,
                    e.verdict,
                    e.reasons
                );
            }
        }
        hosts_right += usize::from(host_right);
    }
    eprintln!(
        "SCORE hosts {hosts_right}/{} right, devices {devices_right}/{devices} right",
        all.len()
    );
    assert!(
        unsafe_passes.is_empty(),
        "passable (or IOMMU on) where the post shows otherwise: {unsafe_passes:?}"
    );
}

fn main() {
    use support::gate::{Gated, Need};
    Gated::new()
        .test(
            "discover_paste_on_every_host_of_the_corpus",
            &[],
            discover_paste_on_every_host_of_the_corpus,
        )
        .test(
            "discover_paste_on_the_hosts_from_repository_files",
            &[Need::Shared(FROM_REPOSITORIES)],
            discover_paste_on_the_hosts_from_repository_files,
        )
        .run()
}

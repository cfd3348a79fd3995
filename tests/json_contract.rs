//! The machine contract (#15): every `--json` output is an object with `format_version`, and
//! each command's real output validates against its JSON Schema in `schemas/`. The outputs
//! come from the binary run as a user would: offline on the repository's facts, transcripts
//! and Compose files, and against the fake Proxmox VE (tests/support/fake_pve) for the VM
//! phase's plan, apply and verify. `rollback` and `fingerprint` need a real node over SSH;
//! their schemas are checked here as schemas, and their outputs in the QEMU scenarios.

#[path = "support/fake_pve/mod.rs"]
mod fake_pve;
mod support;
#[path = "support/vm_lab.rs"]
mod vm_lab;
use fake_pve::ROOT_TOKEN_SECRET;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use vm_lab::{Lab, TOKEN, pvegpu};

const SCHEMA_BASE: &str = "https://pvegpu.invalid/schemas/";

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

/// The schemas refer to each other by `$id`; this reads them from the repository.
struct FromRepository;

impl jsonschema::Retrieve for FromRepository {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri
            .as_str()
            .strip_prefix(SCHEMA_BASE)
            .ok_or_else(|| format!("{} is not one of pvegpu's schemas", uri.as_str()))?;
        let text = std::fs::read_to_string(schema_dir().join(name))?;
        Ok(serde_json::from_str(&text)?)
    }
}

fn validator(name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(schema_dir().join(name)).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::options()
        .with_retriever(FromRepository)
        .build(&schema)
        .unwrap_or_else(|e| panic!("schemas/{name}: {e}"))
}

/// `output` parsed and valid against `schemas/{name}`; every violation listed on failure.
fn valid(name: &str, output: &str) -> Value {
    let value: Value =
        serde_json::from_str(output).unwrap_or_else(|e| panic!("not JSON ({e}):\n{output}"));
    let errors: Vec<String> = validator(name)
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "schemas/{name}:\n{}\n{output}",
        errors.join("\n")
    );
    assert_eq!(value["format_version"], 1, "{output}");
    value
}

fn fixture(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

fn repo(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

fn offline(args: &[&str]) -> (i32, String, String) {
    let (code, out, err) = support::pvegpu_cli(args);
    (code.unwrap_or(-1), out, err)
}

#[test]
fn every_schema_compiles_and_names_its_own_file() {
    let mut names: Vec<String> = std::fs::read_dir(schema_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "apply.json",
            "compat.json",
            "defs.json",
            "discover.json",
            "fingerprint.json",
            "lint-compose.json",
            "plan.json",
            "rollback.json",
            "verify.json"
        ]
    );
    for name in &names {
        let text = std::fs::read_to_string(schema_dir().join(name)).unwrap();
        let schema: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(schema["$id"], format!("{SCHEMA_BASE}{name}"));
        validator(name);
    }
}

#[test]
fn offline_outputs_match_their_schemas() {
    let inv = repo("inventories/osm45.toml");
    let facts = fixture("facts/osm45.facts");

    let (code, out, err) = offline(&[
        "-i", &inv, "--json", "plan", "--facts", &facts, "--phase", "host",
    ]);
    assert_eq!(code, 0, "{err}");
    let v = valid("plan.json", &out);
    assert_eq!(v["nodes"][0]["state"], "ready");

    // the VM phase cannot be planned offline: still an object, the plan marked so
    let (code, out, _) = offline(&["-i", &inv, "--json", "plan", "--facts", &facts]);
    assert_eq!(code, 1);
    let v = valid("plan.json", &out);
    assert_eq!(v["nodes"][0]["phases"]["left_out"][0]["phase"], "VM");

    let (code, out, err) = offline(&["-i", &inv, "--json", "discover", "--facts", &facts]);
    assert_eq!(code, 0, "{err}");
    let v = valid("discover.json", &out);
    let mapping = &v["nodes"][0]["devices"][0]["pci_mapping"];
    assert_eq!(mapping["name"], "gpu-02-00", "{mapping}");
    assert_eq!(mapping["path"], "0000:02:00");
    assert_eq!(mapping["iommu_group"], 29);

    let paste = repo("tests/hosts/a-amd-phoenix1-7840hs-systemd-boot/transcript.txt");
    let (code, out, err) = offline(&["--json", "discover", "--paste", &paste]);
    assert_eq!(code, 0, "{err}");
    valid("discover.json", &out);

    let (code, out, err) = offline(&[
        "--json",
        "compat",
        "10de:1b80",
        "10de:2204",
        "--backend",
        "onnx",
    ]);
    assert_eq!(code, 0, "{err}");
    valid("compat.json", &out);
    let model = repo("tests/fixtures/onnx/ir10-opset21.onnx");
    let (code, out, err) = offline(&[
        "--json",
        "compat",
        "10de:1b80",
        "--release",
        "23.05",
        "--model",
        &model,
    ]);
    assert_eq!(code, 0, "{err}");
    valid("compat.json", &out);
    let (code, out, err) = offline(&["--json", "compat", "--model", &model]);
    assert_eq!(code, 0, "{err}");
    valid("compat.json", &out);

    for (file, want) in [
        ("compose/bad_cuda_host_index.yml", 1),
        ("compose/good_triton.yml", 0),
    ] {
        let (code, out, err) = offline(&["--json", "lint", "compose", &fixture(file)]);
        assert_eq!(code, want, "{err}");
        valid("lint-compose.json", &out);
    }
}

/// A node that cannot be planned is in the JSON with its error, beside the others' plans.
#[test]
fn a_node_that_fails_is_listed_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let osm = support::read("../../inventories/osm45.toml");
    let inv = dir.path().join("one.toml");
    std::fs::write(&inv, &osm[..osm.find("[nodes.osm45.api]").unwrap()]).unwrap();
    let inv = inv.to_string_lossy().into_owned();
    let (code, out, err) = offline(&[
        "-i",
        &inv,
        "--json",
        "plan",
        "--phase",
        "host",
        "--facts",
        &fixture("facts/osm45.facts"),
        "--facts",
        &fixture("facts/amd-grub.facts"),
    ]);
    assert_eq!(code, 1, "{err}");
    let v = valid("plan.json", &out);
    assert_eq!(v["nodes"][0]["state"], "ready");
    assert_eq!(v["nodes"][1]["node"], "amdhost");
    assert_eq!(v["nodes"][1]["state"], "failed");
    let message = v["nodes"][1]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`amdhost` is not in the inventory"),
        "{message}"
    );
    assert!(
        err.contains("error: amdhost could not be planned (above)"),
        "{err}"
    );
}

#[test]
fn apply_json_without_yes_refuses_before_anything() {
    let inv = repo("inventories/osm45.toml");
    let (code, out, err) = offline(&["-i", &inv, "--json", "apply", "--limit", "osm45"]);
    assert_eq!(code, 1);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("error: apply --json does not ask before changing a node, so it needs --yes")
            && err.contains("hint: read `pvegpu -i "),
        "{err}"
    );
}

/// The VM phase against the fake Proxmox VE: plan, apply (changed, then unchanged) and verify,
/// each valid; verify's JUnit and Prometheus files carry one entry per check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_phase_outputs_match_their_schemas() {
    let lab = Lab::start().await;
    let inv = lab.inventory(TOKEN, "");
    let (code, out, err) = pvegpu(&inv, &["--json", "plan"], ROOT_TOKEN_SECRET).await;
    assert_eq!(code, 0, "{err}");
    let v = valid("plan.json", &out);
    assert_eq!(v["nodes"][0]["state"], "ready");
    assert!(!v["nodes"][0]["vm"]["steps"].as_array().unwrap().is_empty());

    // the first apply creates the mappings and the VM, the second finds nothing to do
    for (status, planned) in [("changed", "ready"), ("unchanged", "nothing_to_do")] {
        let args = ["--json", "apply", "--yes", "-n", "pvetest"];
        let (code, out, err) = pvegpu(&inv, &args, ROOT_TOKEN_SECRET).await;
        assert_eq!(code, 0, "{err}\n{out}");
        let v = valid("apply.json", &out);
        assert_eq!(v["nodes"][0]["status"], status);
        assert_eq!(v["nodes"][0]["plan"]["state"], planned);
        assert_eq!(v["recap"][status], 1);
    }

    let junit = lab.dir.path().join("verify.xml");
    let prom = lab.dir.path().join("pvegpu.prom");
    let (junit_arg, prom_arg) = (junit.to_string_lossy(), prom.to_string_lossy());
    let args = [
        "--json",
        "verify",
        "-n",
        "pvetest",
        "--junit",
        &junit_arg,
        "--prometheus",
        &prom_arg,
    ];
    let (_, out, err) = pvegpu(&inv, &args, ROOT_TOKEN_SECRET).await;
    let v = valid("verify.json", &out);
    let checks = v["nodes"]["pvetest"]["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("{err}"));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), checks.len(), "{xml}");
    let failing = checks.iter().filter(|c| c["status"] == "fail").count();
    assert!(xml.contains(&format!("failures=\"{failing}\"")), "{xml}");
    let text = std::fs::read_to_string(&prom).unwrap();
    let series = text
        .lines()
        .filter(|l| l.starts_with("pvegpu_verify_check_ok{"))
        .count();
    assert_eq!(series, checks.len(), "{text}");
    let passed = if v["passed"] == true { 1 } else { 0 };
    assert!(
        text.contains(&format!(
            "pvegpu_verify_passed{{node=\"pvetest\"}} {passed}\n"
        )),
        "{text}"
    );
    let mode = std::fs::metadata(&prom).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o644
    );
}

/// `--limit` through the binary: exclusions and groups pick among several facts files, and a
/// term that names nothing stops the run.
#[test]
fn limit_selects_by_name_glob_group_and_exclusion() {
    let dir = tempfile::tempdir().unwrap();
    let osm = support::read("../../inventories/osm45.toml");
    let osm = &osm[..osm.find("[nodes.osm45.api]").unwrap()];
    let inv = dir.path().join("two.toml");
    std::fs::write(
        &inv,
        format!(
            "[groups.amd]\nmembers = [\"amdhost\"]\n\n{osm}\n{}",
            support::read("facts/amd-grub.toml")
        ),
    )
    .unwrap();
    let inv = inv.to_string_lossy().into_owned();
    let (osm_facts, amd_facts) = (
        fixture("facts/osm45.facts"),
        fixture("facts/amd-grub.facts"),
    );
    let plan = |limit: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pvegpu"));
        cmd.args(["-i", &inv, "--json", "plan", "--phase", "host"])
            .args(["--facts", &osm_facts, "--facts", &amd_facts])
            .env("NO_COLOR", "1");
        if !limit.is_empty() {
            cmd.args(["--limit", limit]);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stdout, stderr)
    };
    let names = |out: &str| -> Vec<String> {
        valid("plan.json", out)["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["node"].as_str().unwrap().to_string())
            .collect()
    };
    for (limit, want) in [
        ("", vec!["osm45", "amdhost"]),
        ("!amdhost", vec!["osm45"]),
        ("amd", vec!["amdhost"]),
        ("osm*,amd", vec!["osm45", "amdhost"]),
        ("all,&amd", vec!["amdhost"]),
    ] {
        let (code, out, err) = plan(limit);
        assert_eq!(code, Some(0), "{limit}: {err}");
        assert_eq!(names(&out), want, "{limit}");
    }
    let (code, out, err) = plan("all,!osm54");
    assert_eq!(code, Some(1));
    assert!(out.is_empty());
    assert!(
        err.contains("error: no node or group `osm54` in the inventory")
            && err.contains("(it has: amdhost, osm45; groups: amd)")
            && err.contains("hint: `--limit` takes node and group names"),
        "{err}"
    );
}

/// The schemas are not vacuous: what the contract rules out fails them (a missing or other
/// version, an unknown state, a field the outputs do not have, a broken `$ref` target).
#[test]
fn the_schemas_reject_what_the_contract_rules_out() {
    let error = serde_json::json!({"message": "m", "causes": [], "hints": []});
    let failed = |state: &str| serde_json::json!({"format_version": 1, "nodes": [{"node": "a", "state": state, "error": error}]});
    assert!(validator("plan.json").is_valid(&failed("failed")));
    for (schema, bad) in [
        ("plan.json", serde_json::json!({"nodes": []})),
        (
            "plan.json",
            serde_json::json!({"format_version": 2, "nodes": []}),
        ),
        ("plan.json", failed("maybe")),
        (
            "plan.json",
            serde_json::json!({"format_version": 1, "nodes": [], "extra": 1}),
        ),
        (
            "apply.json",
            serde_json::json!({"format_version": 1, "nodes": []}),
        ),
        (
            "verify.json",
            serde_json::json!({"format_version": 1, "passed": true, "nodes": {}}),
        ),
        (
            "lint-compose.json",
            serde_json::json!({"format_version": 1, "findings": [{"file": "f"}]}),
        ),
    ] {
        assert!(
            !validator(schema).is_valid(&bad),
            "{schema} let through {bad}"
        );
    }
}

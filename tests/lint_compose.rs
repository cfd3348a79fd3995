//! `pvegpu lint compose`: the GPU routing lint on a corpus of Compose files, good and bad
//! (tests/fixtures/compose/; the `bad_seed_*` files hold the mix-ups of
//! shared/seeds/001). Each bad file is checked for exactly its findings: rule, service, line.

use pvegpu::core::error::Hint;
use pvegpu::lint::{
    Finding, LintError, Severity, has_errors, lint_compose, lint_compose_str, render,
};
use std::path::{Path, PathBuf};

const DIR: &str = "tests/fixtures/compose";

fn fixture(name: &str) -> PathBuf {
    Path::new(DIR).join(name)
}

fn lint(name: &str) -> Vec<Finding> {
    lint_compose(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// (rule, service, line, severity) of each finding, in the lint's order (by line).
fn summary(name: &str) -> Vec<(&'static str, String, usize, Severity)> {
    lint(name)
        .into_iter()
        .map(|f| (f.rule.id(), f.service, f.line, f.severity))
        .collect()
}

fn expect(name: &str, want: &[(&'static str, &str, usize, Severity)]) {
    let want: Vec<_> = want
        .iter()
        .map(|(r, s, l, sev)| (*r, s.to_string(), *l, *sev))
        .collect();
    assert_eq!(summary(name), want, "{name}:\n{}", render(&lint(name)));
}

use Severity::{Advice, Error, Warning};

#[test]
fn good_files_have_no_findings() {
    let mut good: Vec<PathBuf> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("good_")
        })
        .collect();
    good.sort();
    assert_eq!(good.len(), 5, "{good:?}");
    for path in good {
        let findings = lint_compose(&path).unwrap();
        assert!(
            findings.is_empty(),
            "{}:\n{}",
            path.display(),
            render(&findings)
        );
        assert_eq!(render(&findings), "No GPU routing problems found.\n");
    }
}

#[test]
fn seed_x_common_block_with_tensor_parallel_two() {
    // The seed's anchor: capabilities without gpu, the host's CUDA_VISIBLE_DEVICES with
    // default 0, and tensor parallel 2 in both services that merge it. Anchor findings sit
    // on the anchor's lines and name the `<<: *common` line of each service.
    expect(
        "bad_seed_x_common.yml",
        &[
            ("gpu-capability", "tensorrt", 12, Warning),
            ("gpu-capability", "vllm", 12, Warning),
            ("cuda-visible-from-host", "tensorrt", 15, Warning),
            ("cuda-visible-from-host", "vllm", 15, Warning),
            ("tensor-parallel", "vllm", 24, Error),
            ("tensor-parallel", "tensorrt", 28, Error),
        ],
    );
    let f = lint("bad_seed_x_common.yml");
    let merged: Vec<_> = f
        .iter()
        .map(|f| (f.service.as_str(), f.merged_at))
        .collect();
    assert_eq!(
        merged,
        [
            ("tensorrt", Some(26)),
            ("vllm", Some(19)),
            ("tensorrt", Some(26)),
            ("vllm", Some(19)),
            ("vllm", None),
            ("tensorrt", None),
        ]
    );
    // NVIDIA_VISIBLE_DEVICES=all agrees with count: all: redundant, not wrong.
    assert!(f.iter().all(|f| f.rule.id() != "nvidia-visible-devices"));
}

#[test]
fn seed_host_indices_after_remapping_and_count_with_device_ids() {
    expect(
        "bad_seed_remap.yml",
        &[
            ("index-device-ids", "legacy", 9, Advice),
            ("cuda-visible-devices", "legacy", 10, Error),
            ("cuda-visible-devices", "reserved", 15, Error),
            ("count-with-device-ids", "reserved", 22, Error),
            ("index-device-ids", "reserved", 23, Advice),
        ],
    );
}

#[test]
fn cuda_visible_devices_in_container_numbering() {
    expect(
        "bad_cuda_host_index.yml",
        &[
            // device_ids ["1"] + CUDA_VISIBLE_DEVICES=1: hides the only GPU.
            ("cuda-visible-devices", "worker", 8, Error),
            ("index-device-ids", "worker", 14, Advice),
            // device_ids ["1", "2"] + CUDA_VISIBLE_DEVICES=1: runs, on host GPU 2.
            ("cuda-visible-devices", "renumbered", 20, Warning),
            ("index-device-ids", "renumbered", 26, Advice),
            ("cuda-visible-devices", "empty", 31, Error),
            ("cuda-visible-devices", "typo", 42, Error),
            ("cuda-visible-from-host", "passthrough", 53, Warning),
        ],
    );
    let worker = &lint("bad_cuda_host_index.yml")[0];
    assert!(
        worker.message.contains("host GPU 1 as GPU 0")
            && worker.message.contains("CUDA sees no GPU"),
        "{}",
        worker.message
    );
    assert!(worker.fix.contains("set it to `0`"), "{}", worker.fix);
}

#[test]
fn count_with_device_ids() {
    expect(
        "bad_count_with_device_ids.yml",
        &[("count-with-device-ids", "triton", 10, Error)],
    );
}

#[test]
fn capabilities() {
    // `tpu` is not a GPU reservation and is left alone.
    expect(
        "bad_capabilities.yml",
        &[
            ("gpu-capability", "none", 8, Error),
            ("gpu-capability", "driver-only", 18, Warning),
            ("gpu-capability", "prefixed", 25, Error),
        ],
    );
}

#[test]
fn nvidia_visible_devices_against_the_reservation() {
    // `matching` (count: 2 and NVIDIA_VISIBLE_DEVICES=0,1) agrees: Docker gives 0 and 1.
    expect(
        "bad_nvidia_visible_mismatch.yml",
        &[
            ("nvidia-visible-devices", "pinned", 5, Error),
            ("nvidia-visible-devices", "all-but-one", 16, Error),
            ("nvidia-visible-devices", "from-shell", 27, Warning),
        ],
    );
}

#[test]
fn index_based_selection_is_advice() {
    expect(
        "bad_index_device_ids.yml",
        &[
            ("index-device-ids", "vllm", 11, Advice),
            ("index-device-ids", "smi", 16, Advice),
        ],
    );
    assert!(!has_errors(&lint("bad_index_device_ids.yml")));
}

#[test]
fn mig_devices() {
    expect(
        "bad_mig.yml",
        &[
            ("mig-device", "small", 10, Advice),
            ("tensor-parallel", "split", 14, Error),
            ("mig-device", "split", 21, Warning),
        ],
    );
}

#[test]
fn tensor_parallel_from_command_entrypoint_and_environment() {
    // A folded string (flag on its own line), an exec-form entrypoint with -tp × -pp, and
    // an environment variable used as `$${TP_SIZE}` in the command.
    expect(
        "bad_tensor_parallel.yml",
        &[
            ("tensor-parallel", "vllm", 7, Error),
            ("tensor-parallel", "pipeline", 17, Error),
            ("tensor-parallel", "trtllm", 25, Error),
        ],
    );
    let f = lint("bad_tensor_parallel.yml");
    assert!(
        f[1].message.contains("needs 4 GPUs (tensor × pipeline)"),
        "{}",
        f[1].message
    );
}

#[test]
fn runtime_nvidia_beside_a_reservation() {
    expect(
        "bad_runtime_with_reservation.yml",
        &[("runtime-with-reservation", "triton", 4, Advice)],
    );
}

#[test]
fn count_one_in_two_services_shares_gpu_zero() {
    expect(
        "bad_shared_gpu.yml",
        &[("shared-gpu", "embed", 21, Warning)],
    );
}

#[test]
fn gpu_use_without_a_gpu_request() {
    // `cpu-only` sets NVIDIA_VISIBLE_DEVICES=void on purpose and is left alone.
    expect(
        "bad_no_gpu_request.yml",
        &[
            ("no-gpu-request", "vllm", 4, Warning),
            ("no-gpu-request", "smi", 8, Warning),
        ],
    );
}

#[test]
fn rendered_seed_x_common() {
    insta::assert_snapshot!(render(&lint("bad_seed_x_common.yml")));
}

#[test]
fn rendered_seed_remap() {
    insta::assert_snapshot!(render(&lint("bad_seed_remap.yml")));
}

#[test]
fn findings_serialize_for_json() {
    let f = lint("bad_cuda_host_index.yml");
    let v = serde_json::to_value(&f[0]).unwrap();
    assert_eq!(v["file"], "tests/fixtures/compose/bad_cuda_host_index.yml");
    assert_eq!(v["service"], "worker");
    assert_eq!(v["line"], 8);
    assert_eq!(v["severity"], "error");
    assert_eq!(v["rule"], "cuda-visible-devices");
    assert!(v.get("merged_at").is_none());
    assert!(
        v["fix"]
            .as_str()
            .unwrap()
            .starts_with("delete CUDA_VISIBLE_DEVICES")
    );
    let seed = serde_json::to_value(lint("bad_seed_x_common.yml")).unwrap();
    assert_eq!(seed[0]["merged_at"], 26);
    assert!(has_errors(&f));
}

#[test]
fn malformed_yaml_names_file_line_and_fix() {
    let e = lint_compose(&fixture("malformed.yml")).unwrap_err();
    assert!(
        matches!(
            e,
            LintError::Invalid {
                line: 4,
                column: 4,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "tests/fixtures/compose/malformed.yml:4:4: while parsing a block mapping, did not find expected key"
    );
    assert_eq!(
        e.hint().unwrap(),
        "line 4 reads `command: --model Qwen/Qwen2.5-1.5B-Instruct`; fix its value, indentation or quoting (`docker compose config` parses the file the same way)"
    );
}

#[test]
fn wrong_shapes_and_other_files_are_errors_with_a_place() {
    let p = Path::new("compose.yml");
    let e = lint_compose_str(p, "services:\n  a:\n    environment: 3\n").unwrap_err();
    assert!(matches!(e, LintError::Invalid { line: 3, .. }), "{e}");
    let e = lint_compose_str(
        p,
        "services:\n  a:\n    deploy:\n      resources:\n        reservations:\n          devices:\n            - count: some\n",
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("compose.yml:7:"), "{e}");
    assert!(
        e.to_string().contains("write `all` or a number of GPUs"),
        "{e}"
    );
    let e = lint_compose_str(p, "services:\n  a:\n    image: x\n    image: y\n").unwrap_err();
    assert!(e.to_string().starts_with("compose.yml:4:"), "{e}");
    let e = lint_compose_str(p, "name: demo\nvolumes: {}\n").unwrap_err();
    assert!(matches!(e, LintError::NoServices { .. }), "{e}");
    assert!(e.hint().is_some());
    let e = lint_compose(&fixture("does_not_exist.yml")).unwrap_err();
    assert!(matches!(e, LintError::Read { .. }), "{e}");
}

#[test]
fn environment_and_command_forms_are_equivalent() {
    let list = "services:\n  a:\n    command: [\"--tensor-parallel-size\", \"2\"]\n    environment:\n      - CUDA_VISIBLE_DEVICES=1\n    deploy: {resources: {reservations: {devices: [{device_ids: [\"GPU-5d5e1b5c\"], capabilities: [gpu]}]}}}\n";
    let map = "services:\n  a:\n    command: --tensor-parallel-size 2\n    environment:\n      CUDA_VISIBLE_DEVICES: 1\n    deploy: {resources: {reservations: {devices: [{device_ids: [\"GPU-5d5e1b5c\"], capabilities: [gpu]}]}}}\n";
    let rules = |text: &str| -> Vec<(&'static str, usize)> {
        lint_compose_str(Path::new("c.yml"), text)
            .unwrap()
            .iter()
            .map(|f| (f.rule.id(), f.line))
            .collect()
    };
    // One GPU, and CUDA_VISIBLE_DEVICES=1 names none: the CUDA error covers the TP too.
    assert_eq!(rules(list), [("cuda-visible-devices", 5)]);
    assert_eq!(rules(map), [("cuda-visible-devices", 5)]);
}

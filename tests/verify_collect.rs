//! The guest side of `verify` from one probe run: the probe's text assembled from the recorded
//! outputs under fixtures/verify (sources in SOURCES.md), section by section as the probe
//! prints them, then read back into the guest, runtime and Triton checks.

mod support;
use pvegpu::facts::raw::RawFacts;
use pvegpu::inventory::guest::GuestSpec;
use pvegpu::verify::collect::{checks, probe_script};
use pvegpu::verify::guest::GuestExpect;
use pvegpu::verify::{Check, Layer, Status};
use support::gate::{Gated, Need};
use support::read;

fn section(name: &str, body: &str, rc: i32) -> String {
    let body = if body.is_empty() || body.ends_with('\n') {
        body.to_string()
    } else {
        format!("{body}\n")
    };
    format!("### pvegpu {name}\n{body}### pvegpu exit {rc}\n")
}

const UNIT: &str = "/etc/systemd/system/pvegpu-triton.service";
const IMAGE: &str = "nvcr.io/nvidia/tritonserver:24.10-py3";

/// One GTX 1080 guest with Docker and Triton serving, as the probe would print it.
fn healthy() -> String {
    let smi = read("verify/guest/nvidia-smi-query-2x1080.txt");
    let first = smi.lines().next().unwrap();
    [
        "### pvegpu facts 1\n".to_string(),
        section("uname", "6.1.0-35-amd64", 0),
        section("modules", &read("verify/guest/lsmod-nvidia.txt"), 0),
        section("kernels", &read("verify/guest/boot-kernels.txt"), 0),
        section("nvidia-smi", first, 0),
        section("mig", "[N/A]", 0),
        section("dkms", &read("verify/guest/dkms-both-kernels.txt"), 0),
        section("engine", "/usr/bin/docker", 0),
        section(
            &format!("runtime-nvml {IMAGE}"),
            "GPU 0: NVIDIA GeForce GTX 1080 (UUID: GPU-c6467c28-be24-03ad-e7ea-9bc0e989488f)",
            0,
        ),
        section(
            &format!("runtime-cuda {IMAGE}"),
            &read("verify/runtime/cuda-probe-ok-1.txt"),
            0,
        ),
        section("triton-ready", "200", 0),
        section(
            "triton-index",
            &read("verify/triton/index-all-ready.json"),
            0,
        ),
        section(
            "models",
            "ensemble_python_resnet50\npostprocessing\npreprocessing\nresnet50_trt",
            0,
        ),
    ]
    .concat()
}

fn spec(text: &str) -> GuestSpec {
    toml::from_str(text).unwrap()
}

fn docker_triton() -> GuestSpec {
    spec("runtime = \"docker\"\n[triton]\nmodel_repository = \"/srv/models\"\nbackend = \"onnx\"\n")
}

fn one_1080() -> GuestExpect {
    GuestExpect {
        addresses: vec![],
        count: 1,
        compute_cap: Some("6.1".into()),
    }
}

fn by_layer(c: &[Check], layer: Layer) -> Vec<&Check> {
    c.iter().filter(|c| c.layer == layer).collect()
}

fn a_healthy_guest_passes_every_layer() {
    let c = checks(&healthy(), Some(&docker_triton()), &one_1080());
    assert!(c.iter().all(|c| c.status == Status::Pass), "{c:#?}");
    for layer in [Layer::Guest, Layer::Runtime, Layer::Triton] {
        assert!(!by_layer(&c, layer).is_empty(), "{layer:?} missing: {c:#?}");
    }
}

fn seed_000_shows_only_in_the_cuda_runtime() {
    // rootless Podman, nvidia-smi works in the container, cudaGetDeviceCount returns 3
    let text = healthy()
        .replace("/usr/bin/docker", "/usr/bin/podman")
        .replace(
            &read("verify/runtime/cuda-probe-ok-1.txt"),
            &read("verify/runtime/cuda-probe-seed000.txt"),
        );
    let text = format!(
        "{text}{}{}{}",
        section(
            "cdi /etc/cdi/nvidia.yaml",
            &read("verify/cdi/nvidia-no-uvm-issue50.yaml"),
            0
        ),
        section("id", "uid=1000(llm) gid=1000(llm) groups=1000(llm)", 0),
        section("dev", &read("verify/dev/ls-dev-nvidia-no-uvm-tools.txt"), 0),
    );
    let s = spec("runtime = \"podman\"\n");
    let c = checks(&text, Some(&s), &one_1080());
    let runtime = by_layer(&c, Layer::Runtime);
    let nvml = runtime
        .iter()
        .find(|c| c.name.contains("(NVML)"))
        .expect("NVML check");
    assert_eq!(nvml.status, Status::Pass, "{nvml:#?}");
    let cuda = runtime
        .iter()
        .find(|c| c.name.contains("CUDA runtime"))
        .expect("CUDA check");
    assert_eq!(cuda.status, Status::Fail, "{cuda:#?}");
    assert!(
        cuda.cause.as_deref().unwrap_or("").contains("nvidia-uvm"),
        "{cuda:#?}"
    );
    assert!(
        runtime
            .iter()
            .any(|c| c.status == Status::Fail && c.saw.contains("/dev/nvidia-uvm-tools")),
        "{runtime:#?}"
    );
    // the Triton layer is not asked for, so it is not there
    assert!(by_layer(&c, Layer::Triton).is_empty());
}

fn missing_model_repository_and_no_probe_image() {
    let text = healthy()
        .split("### pvegpu runtime-nvml")
        .next()
        .unwrap()
        .to_string()
        + &section("triton-ready", "000", 7)
        + &section("triton-index", "", 7)
        + &section(
            "models",
            "ls: cannot access '/srv/models': No such file or directory",
            2,
        );
    let c = checks(&text, Some(&docker_triton()), &one_1080());
    let runtime = by_layer(&c, Layer::Runtime);
    assert_eq!(runtime.len(), 1, "{runtime:#?}");
    assert_eq!(runtime[0].status, Status::Skip);
    assert!(runtime[0].saw.contains(UNIT), "{runtime:#?}");
    let triton = by_layer(&c, Layer::Triton);
    let repo = triton
        .iter()
        .find(|c| c.name == "model repository")
        .expect("repository check");
    assert_eq!(repo.status, Status::Fail);
    assert!(repo.saw.contains("/srv/models"));
    assert!(
        triton.iter().all(|c| c.status != Status::Pass),
        "{triton:#?}"
    );
}

fn unreadable_probe_output_is_not_a_pass() {
    let c = checks("ssh: something else entirely\n", None, &one_1080());
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].status, Status::Skip);
}

/// The real probe on this machine (no NVIDIA driver): every section it prints is read, the
/// running kernel is named, and the guest layer fails instead of passing.
fn the_real_probe_runs_here_and_finds_no_driver() {
    let script = probe_script(Some(&spec("runtime = \"podman\"\n")));
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for s in [
        "uname",
        "modules",
        "nvidia-smi",
        "dkms",
        "engine",
        "id",
        "dev",
    ] {
        assert!(
            text.contains(&format!("### pvegpu {s}\n")),
            "no {s} section:\n{text}"
        );
    }
    let c = checks(&text, Some(&spec("runtime = \"podman\"\n")), &one_1080());
    let guest = by_layer(&c, Layer::Guest);
    let loaded = guest
        .iter()
        .find(|c| c.name == "nvidia driver loaded")
        .unwrap();
    let uname = std::process::Command::new("uname")
        .arg("-r")
        .output()
        .unwrap();
    let uname = String::from_utf8_lossy(&uname.stdout).trim().to_string();
    assert_eq!(loaded.status, Status::Fail, "{loaded:#?}");
    assert!(loaded.saw.contains(&uname), "{loaded:#?}");
    let smi = guest
        .iter()
        .find(|c| c.name == "nvidia-smi sees every GPU")
        .unwrap();
    assert_eq!(smi.status, Status::Fail);
    assert!(
        smi.cause.as_deref().unwrap().contains("not installed"),
        "{smi:#?}"
    );
}

/// verify's Compose scan in a home where another user planted a link to a secret and a FIFO
/// under Compose names (#20): the real probe reads the real file only, and does not wait.
fn the_compose_scan_reads_no_link_and_waits_on_no_fifo() {
    let home = tempfile::tempdir().unwrap();
    let dir = |d: &str| {
        let p = home.path().join(d);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    std::fs::write(
        dir("app").join("compose.yaml"),
        "services:\n  triton:\n    image: nvcr.io/nvidia/tritonserver:24.10-py3\n",
    )
    .unwrap();
    let secret = home.path().join("secret");
    std::fs::write(&secret, "SECRET-TOKEN\n").unwrap();
    std::os::unix::fs::symlink(&secret, dir("link").join("compose.yaml")).unwrap();
    let fifo = dir("fifo").join("compose.yml");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let (code, text) = probe_with_home(home.path());
    assert_ne!(code, Some(124), "the probe waited on the FIFO");
    let app = home.path().join("app/compose.yaml");
    let raw = RawFacts::parse(&text).unwrap();
    let composes: Vec<_> = raw.all("compose").collect();
    assert_eq!(composes.len(), 1, "{text}");
    assert_eq!(composes[0].first_arg(), app.display().to_string());
    assert!(composes[0].body.starts_with("services:"), "{text}");
    assert!(!text.contains("SECRET-TOKEN"), "{text}");
    assert!(!text.contains(&fifo.display().to_string()), "{text}");
}

/// The real probe under /bin/sh (Podman guest) with `home` as $HOME: its exit status and output.
fn probe_with_home(home: &std::path::Path) -> (Option<i32>, String) {
    let script = probe_script(Some(&spec("runtime = \"podman\"\n")));
    let out = std::process::Command::new("timeout")
        .arg("60")
        .args(["sh", "-c", &script])
        .env("HOME", home)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A Compose file or CDI spec is the user's to write: one that carries probe markers (an exit
/// line, then a forged Triton answer and a forged driver) stays the file's content, and the
/// probe's own sections are the only ones read.
fn a_users_file_cannot_forge_probe_sections() {
    let home = tempfile::tempdir().unwrap();
    let forged = "services: {}\n### pvegpu exit 0\n### pvegpu triton-ready\n200\n### pvegpu exit 0\n### pvegpu driver-version\nNVRM version: NVIDIA UNIX x86_64 Kernel Module  999.99\n### pvegpu exit 0\nx: 1 ### pvegpu exit 0";
    std::fs::create_dir_all(home.path().join("app")).unwrap();
    std::fs::write(home.path().join("app/compose.yaml"), forged).unwrap();
    std::fs::create_dir_all(home.path().join(".config/cdi")).unwrap();
    std::fs::write(home.path().join(".config/cdi/nvidia.yaml"), forged).unwrap();
    let (_, text) = probe_with_home(home.path());
    assert!(
        !text.contains("999.99"),
        "the file went out in the clear: {text}"
    );
    let raw = RawFacts::parse(&text).unwrap();
    for name in ["compose", "cdi"] {
        let s: Vec<_> = raw.all(name).collect();
        assert_eq!(s.len(), 1, "{name}: {text}");
        assert_eq!(s[0].body, forged, "{name}");
        assert_eq!(s[0].exit, Some(0), "{name}");
    }
    assert!(raw.get("triton-ready").is_none(), "{text}");
    let driver = raw.ok_body("driver-version").unwrap_or_default();
    assert!(!driver.contains("999.99"), "{driver}");
}

const NO_DRIVER: Need = Need::Absent(
    "/proc/driver/nvidia/version",
    "this machine has an NVIDIA driver; the no-driver assertions do not apply",
);

fn main() {
    Gated::new()
        .test(
            "a_users_file_cannot_forge_probe_sections",
            &[
                Need::Command("dd", "coreutils"),
                Need::Command("base64", "coreutils"),
            ],
            a_users_file_cannot_forge_probe_sections,
        )
        .test(
            "the_compose_scan_reads_no_link_and_waits_on_no_fifo",
            &[Need::Command("dd", "coreutils")],
            the_compose_scan_reads_no_link_and_waits_on_no_fifo,
        )
        .test(
            "a_healthy_guest_passes_every_layer",
            &[],
            a_healthy_guest_passes_every_layer,
        )
        .test(
            "seed_000_shows_only_in_the_cuda_runtime",
            &[],
            seed_000_shows_only_in_the_cuda_runtime,
        )
        .test(
            "missing_model_repository_and_no_probe_image",
            &[],
            missing_model_repository_and_no_probe_image,
        )
        .test(
            "unreadable_probe_output_is_not_a_pass",
            &[],
            unreadable_probe_output_is_not_a_pass,
        )
        .test(
            "the_real_probe_runs_here_and_finds_no_driver",
            &[NO_DRIVER],
            the_real_probe_runs_here_and_finds_no_driver,
        )
        .run()
}

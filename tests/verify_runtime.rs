//! Container runtime layer: the CUDA probe built and run for real (gcc, a stand-in
//! libcudart), and the NVML + CUDA diagnosis on the seed's symptoms.

mod support;
use support::gate::{Gated, Need};
mod verify_support;
use pvegpu::verify::Status;
use pvegpu::verify::runtime::{
    CUDA_PROBE_C, CUDA_PROBE_PY, RuntimeOutputs, checks, parse_cuda_probe,
};
use std::path::Path;
use std::process::Command;
use support::read;
use verify_support::find;

/// A libcudart stand-in whose cudaGetDeviceCount fails the way the seed's did.
const FAKE_CUDART: &str = r#"
int cudaGetDeviceCount(int *n) { *n = 0; return 3; }
const char *cudaGetErrorName(int e) { return e == 3 ? "cudaErrorInitializationError" : "cudaErrorUnknown"; }
const char *cudaGetErrorString(int e) { return "initialization error"; }
"#;

fn gcc(dir: &Path, args: &[&str]) {
    let st = Command::new("gcc")
        .current_dir(dir)
        .args(args)
        .status()
        .unwrap();
    assert!(st.success(), "gcc {args:?}");
}

fn c_probe_reports_missing_libcudart_and_a_failing_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cuda-probe.c"), CUDA_PROBE_C).unwrap();
    gcc(
        dir.path(),
        &[
            "-O2",
            "-Wall",
            "-Werror",
            "-o",
            "cuda-probe",
            "cuda-probe.c",
            "-ldl",
        ],
    );
    let probe = dir.path().join("cuda-probe");

    // this machine has no GPU and no CUDA: the probe says so on its line, exit 2
    let out = Command::new(&probe)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    let p = parse_cuda_probe(&text).unwrap();
    assert_eq!(
        (p.error, p.name.as_str(), p.lib),
        (-1, "libcudartNotFound", None)
    );

    // a libcudart that fails like the seed's: the line carries code and name, exit 1
    std::fs::write(dir.path().join("fake.c"), FAKE_CUDART).unwrap();
    gcc(
        dir.path(),
        &["-shared", "-fPIC", "-o", "libcudart.so", "fake.c"],
    );
    let out = Command::new(&probe)
        .env("LD_LIBRARY_PATH", dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(
        text.trim(),
        "pvegpu-cuda-probe count=0 error=3 name=cudaErrorInitializationError lib=libcudart.so"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("initialization error"));
    // an explicit path argument is tried first
    let out = Command::new(&probe)
        .arg(dir.path().join("libcudart.so"))
        .output()
        .unwrap();
    assert_eq!(
        parse_cuda_probe(&String::from_utf8_lossy(&out.stdout))
            .unwrap()
            .error,
        3
    );
}

fn python_probe_prints_the_same_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("python3")
        .args(["-c", CUDA_PROBE_PY])
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        parse_cuda_probe(&String::from_utf8_lossy(&out.stdout))
            .unwrap()
            .error,
        -1
    );
    std::fs::write(dir.path().join("fake.c"), FAKE_CUDART).unwrap();
    gcc(
        dir.path(),
        &["-shared", "-fPIC", "-o", "libcudart.so", "fake.c"],
    );
    let out = Command::new("python3")
        .args(["-c", CUDA_PROBE_PY])
        .env("LD_LIBRARY_PATH", dir.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "pvegpu-cuda-probe count=0 error=3 name=cudaErrorInitializationError lib=libcudart.so"
    );
}

fn seed_000_nvml_works_cuda_runtime_fails_with_3() {
    let out = RuntimeOutputs {
        engine: "podman".into(),
        nvml: Some(read("verify/runtime/nvidia-smi-L-p100.txt")),
        cuda: Some(read("verify/runtime/cuda-probe-seed000.txt")),
    };
    let c = checks(&out, 1);
    assert_eq!(
        find(&c, "container sees the GPUs (NVML)").status,
        Status::Pass
    );
    let cuda = find(&c, "container sees the GPUs (CUDA runtime)");
    assert_eq!(cuda.status, Status::Fail);
    assert!(
        cuda.saw.contains("error=3 (cudaErrorInitializationError)"),
        "{}",
        cuda.saw
    );
    let cause = cuda.cause.as_deref().unwrap();
    assert!(
        cause.contains("/dev/nvidia-uvm") && cause.contains("CDI"),
        "{cause}"
    );
    let fix = cuda.fix.as_deref().unwrap();
    let modprobe = fix.find("modprobe nvidia-uvm").expect("names modprobe");
    let generate = fix
        .find("nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml")
        .expect("names the generate command");
    assert!(
        modprobe < generate,
        "load uvm first, then regenerate: {fix}"
    );
}

fn both_views_pass_when_healthy() {
    let out = RuntimeOutputs {
        engine: "docker".into(),
        nvml: Some(read("verify/runtime/nvidia-smi-L-p100.txt")),
        cuda: Some(read("verify/runtime/cuda-probe-ok-1.txt")),
    };
    let c = checks(&out, 1);
    assert!(c.iter().all(|c| c.status == Status::Pass), "{c:#?}");
    // two GPUs expected, one seen: both views say so
    let c = checks(&out, 2);
    assert!(c.iter().all(|c| c.status == Status::Fail), "{c:#?}");
}

fn nvml_errors_point_at_their_causes() {
    let run = |file: &str| {
        let out = RuntimeOutputs {
            engine: "podman".into(),
            nvml: Some(read(&format!("verify/runtime/{file}"))),
            cuda: None,
        };
        checks(&out, 1)
    };
    let c = run("podman-unresolvable-cdi.txt");
    let nvml = find(&c, "container sees the GPUs (NVML)");
    assert_eq!(nvml.status, Status::Fail);
    assert!(
        nvml.cause
            .as_deref()
            .unwrap()
            .contains("/etc/cdi and /var/run/cdi")
    );
    assert_eq!(
        find(&c, "container sees the GPUs (CUDA runtime)").status,
        Status::Skip
    );
    let c = run("nvml-insufficient-permissions.txt");
    assert!(
        find(&c, "container sees the GPUs (NVML)")
            .cause
            .as_deref()
            .unwrap()
            .contains("readable and writable")
    );
}

fn image_without_cudart_is_not_checked() {
    let out = RuntimeOutputs {
        engine: "podman".into(),
        nvml: Some(read("verify/runtime/nvidia-smi-L-p100.txt")),
        cuda: Some("pvegpu-cuda-probe count=0 error=-1 name=libcudartNotFound lib=none\n".into()),
    };
    let c = checks(&out, 1);
    assert_eq!(
        find(&c, "container sees the GPUs (CUDA runtime)").status,
        Status::Skip
    );
}

const GCC: Need = Need::Command("gcc", "gcc libc6-dev");
const PYTHON3: Need = Need::Command("python3", "python3");

fn main() {
    Gated::new()
        .test(
            "c_probe_reports_missing_libcudart_and_a_failing_one",
            &[GCC],
            c_probe_reports_missing_libcudart_and_a_failing_one,
        )
        .test(
            "python_probe_prints_the_same_line",
            &[GCC, PYTHON3],
            python_probe_prints_the_same_line,
        )
        .test(
            "seed_000_nvml_works_cuda_runtime_fails_with_3",
            &[],
            seed_000_nvml_works_cuda_runtime_fails_with_3,
        )
        .test(
            "both_views_pass_when_healthy",
            &[],
            both_views_pass_when_healthy,
        )
        .test(
            "nvml_errors_point_at_their_causes",
            &[],
            nvml_errors_point_at_their_causes,
        )
        .test(
            "image_without_cudart_is_not_checked",
            &[],
            image_without_cudart_is_not_checked,
        )
        .run()
}

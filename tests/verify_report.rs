//! Whole verify reports as a user reads them: a healthy chain, the seed-000 rootless Podman
//! failure, and the seed-001 Compose GPU mix-up. Inputs are the recorded fixtures the
//! per-layer tests use.

mod support;
mod verify_support;
use pvegpu::verify::guest::{GuestExpect, GuestOutputs};
use pvegpu::verify::podman::{CdiSpecFile, PodmanInputs};
use pvegpu::verify::runtime::RuntimeOutputs;
use pvegpu::verify::triton::TritonAnswers;
use pvegpu::verify::vm::ExpectedDevice;
use pvegpu::verify::{
    Layer, Report, Status, Style, compose, guest, host, podman, runtime, triton, vm,
};
use std::collections::BTreeMap;
use std::path::Path;
use support::{facts, inventory, read};
use verify_support::{TESTHOST, testhost_converged};

fn guest_outputs(lsmod: &str) -> GuestOutputs {
    GuestOutputs {
        uname_r: Some("6.1.0-35-amd64\n".into()),
        lsmod: Some(read(&format!("verify/guest/{lsmod}"))),
        nvidia_smi: Some(read("verify/guest/nvidia-smi-query-2x1080.txt")),
        dkms_status: Some(read("verify/guest/dkms-both-kernels.txt")),
        kernels: Some(read("verify/guest/boot-kernels.txt")),
    }
}

fn expect() -> GuestExpect {
    GuestExpect {
        addresses: vec!["0000:01:00".parse().unwrap(), "0000:02:00".parse().unwrap()],
        count: 2,
        compute_cap: Some("6.1".into()),
    }
}

fn podman_inputs(spec: &str, driver: &str) -> PodmanInputs {
    PodmanInputs {
        specs: vec![CdiSpecFile {
            path: "/etc/cdi/nvidia.yaml".into(),
            content: read(&format!("verify/cdi/{spec}")),
        }],
        requested: vec!["nvidia.com/gpu=all".into()],
        driver_version: Some(driver.into()),
        dev_listing: Some(read("verify/dev/ls-dev-nvidia-0666.txt")),
        id: Some("uid=1000(alice) gid=1000(alice) groups=1000(alice)\n".into()),
        mig: false,
    }
}

#[test]
fn healthy_chain() {
    let inv = inventory(TESTHOST);
    let mut r = Report::new();
    r.extend(host::checks(
        "testhost",
        inv.node("testhost").unwrap(),
        &facts(&testhost_converged()),
    ));
    let desired: BTreeMap<String, String> =
        [("machine", "q35"), ("hostpci0", "0000:00:03.0,pcie=1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    r.extend(vm::checks(
        120,
        &desired,
        &desired,
        "running",
        &[ExpectedDevice::Host("0000:00:03.0".parse().unwrap())],
    ));
    r.extend(guest::checks(&guest_outputs("lsmod-nvidia.txt"), &expect()));
    r.extend(runtime::checks(
        &RuntimeOutputs {
            engine: "podman".into(),
            nvml: Some(read("verify/runtime/nvidia-smi-L-p100.txt")),
            cuda: Some(read("verify/runtime/cuda-probe-ok-1.txt")),
        },
        1,
    ));
    r.extend(podman::checks(&podman_inputs(
        "nvidia-575.64.03.yaml",
        "575.64.03",
    )));
    r.extend(compose::checks(
        Path::new("compose.yml"),
        &read("compose/good_triton.yml"),
    ));
    r.extend(triton::checks(
        &TritonAnswers {
            ready_status: Some(200),
            index_body: Some(read("verify/triton/index-all-ready.json")),
        },
        &[],
    ));
    assert!(r.passed(), "{}", r.render_text(Style::ASCII));
    assert_eq!(r.summary().fail + r.summary().skip + r.summary().warn, 0);
    insta::assert_snapshot!(r.render_text(Style::PLAIN));
}

#[test]
fn seed_000_rootless_podman_cuda_init_failure() {
    let mut r = Report::new();
    r.extend(guest::checks(
        &guest_outputs("lsmod-nvidia-no-uvm.txt"),
        &expect(),
    ));
    r.extend(runtime::checks(
        &RuntimeOutputs {
            engine: "podman".into(),
            nvml: Some(read("verify/runtime/nvidia-smi-L-p100.txt")),
            cuda: Some(read("verify/runtime/cuda-probe-seed000.txt")),
        },
        1,
    ));
    r.extend(podman::checks(&podman_inputs(
        "nvidia-no-uvm-issue50.yaml",
        "535.247.01",
    )));
    r.skip_layer(
        Layer::Triton,
        "the CUDA runtime fails in containers, so Triton cannot load GPU models",
        "fix the runtime layer, then run `pvegpu verify` again",
    );
    assert!(!r.passed());
    let failed: Vec<&str> = r
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        failed,
        vec![
            "container sees the GPUs (CUDA runtime)",
            "CDI spec lists nvidia-uvm"
        ]
    );
    insta::assert_snapshot!(r.render_text(Style::PLAIN));
    insta::assert_json_snapshot!(r.to_json()["summary"], @r#"
    {
      "fail": 2,
      "pass": 8,
      "skip": 2,
      "warn": 1
    }
    "#);
}

#[test]
fn seed_001_compose_gpu_mix_up() {
    let mut r = Report::new();
    for f in [
        "bad_seed_x_common.yml",
        "bad_seed_remap.yml",
        "bad_count_with_device_ids.yml",
        "bad_tensor_parallel.yml",
    ] {
        r.extend(compose::checks(
            Path::new(f),
            &read(&format!("compose/{f}")),
        ));
    }
    r.extend(compose::checks(
        Path::new("malformed.yml"),
        &read("compose/malformed.yml"),
    ));
    assert!(!r.passed());
    assert!(r.checks.iter().all(|c| c.layer == Layer::Runtime));
    insta::assert_snapshot!(r.render_text(Style::PLAIN));
}

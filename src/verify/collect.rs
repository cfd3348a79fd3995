//! The guest side of `verify`, pure: the probe script with its parameters, and the checks of
//! the guest, runtime and Triton layers from the text it printed.

use super::guest::{GuestExpect, GuestOutputs};
use super::podman::{CdiSpecFile, PodmanInputs};
use super::runtime::{CUDA_PROBE_PY, RuntimeOutputs};
use super::triton::TritonAnswers;
use crate::core::check::{Check, Layer};
use crate::core::scripts::quote;
use crate::facts::raw::RawFacts;
use crate::inventory::guest::{GuestSpec, Runtime};
use std::path::Path;

const PROBE: &str = concat!(
    include_str!("../probe-prelude.sh"),
    include_str!("probe.sh")
);
/// The unit the guest phase writes; its image is the one the runtime probes run in.
const TRITON_UNIT: &str = "/etc/systemd/system/pvegpu-triton.service";

/// The probe with its parameters: what the guest spec asks to check.
pub fn probe_script(spec: Option<&GuestSpec>) -> String {
    let (engine, flags) = match spec.map(|s| s.runtime) {
        Some(Runtime::Docker) => ("docker", "--gpus all"),
        Some(Runtime::Podman) => ("podman", "--device nvidia.com/gpu=all"),
        None => ("", ""),
    };
    let triton = spec.and_then(|s| s.triton.as_ref());
    let mut s = String::new();
    for (k, v) in [
        ("ENGINE", engine.to_string()),
        ("GPU_FLAGS", flags.to_string()),
        ("IMAGE_HINT", TRITON_UNIT.to_string()),
        (
            "TRITON_PORT",
            triton.map(|t| t.http_port.to_string()).unwrap_or_default(),
        ),
        (
            "MODEL_REPO",
            triton
                .map(|t| t.model_repository.clone())
                .unwrap_or_default(),
        ),
        ("PROBE_PY", CUDA_PROBE_PY.to_string()),
    ] {
        s.push_str(&format!("{k}={}\n", quote(&v)));
    }
    s.push_str(PROBE);
    s
}

/// The guest, runtime and Triton checks from the probe's output.
pub fn checks(text: &str, spec: Option<&GuestSpec>, expect: &GuestExpect) -> Vec<Check> {
    let raw = match RawFacts::parse(text) {
        Ok(r) => r,
        Err(e) => {
            return vec![Check::skip(
                Layer::Guest,
                "layer not checked",
                format!("the guest probe's output is not readable: {e}"),
                "log in to the guest with the same SSH destination and check that nothing (a banner, a shell profile) prints before a command's output",
            )];
        }
    };
    let body = |name: &str| raw.get(name).map(|s| s.body.clone());
    let guest = GuestOutputs {
        uname_r: body("uname"),
        lsmod: body("modules"),
        nvidia_smi: body("nvidia-smi"),
        dkms_status: body("dkms"),
        kernels: body("kernels"),
    };
    let mut out = super::guest::checks(&guest, expect);

    if let Some(spec) = spec {
        let engine = spec.runtime.command();
        let installed = raw.get("engine").is_some_and(|s| s.ok());
        if !installed {
            out.push(Check::fail(
                Layer::Runtime,
                format!("{engine} installed"),
                format!("`command -v {engine}` found nothing"),
                "the container runtime the inventory names is not installed on the guest",
                "run `pvegpu apply` for this node: the guest phase installs it",
            ));
        } else {
            match (raw.get("runtime-nvml"), raw.get("runtime-cuda")) {
                (Some(nvml), cuda) => out.extend(super::runtime::checks(
                    &RuntimeOutputs {
                        engine: engine.to_string(),
                        nvml: Some(nvml.body.clone()),
                        cuda: cuda.map(|c| c.body.clone()),
                    },
                    expect.count,
                )),
                (None, _) => out.push(Check::skip(
                    Layer::Runtime,
                    "container sees the GPUs",
                    format!("no image to probe with: {TRITON_UNIT} is missing or names none"),
                    "configure [vm.guest.triton] and run `pvegpu apply` (the Triton image carries the CUDA runtime the probe needs)",
                )),
            }
        }
        if spec.runtime == Runtime::Podman {
            let mig = body("mig").is_some_and(|m| m.lines().any(|l| l.trim() == "Enabled"));
            out.extend(super::podman::checks(&PodmanInputs {
                specs: raw
                    .all("cdi")
                    .map(|s| CdiSpecFile {
                        path: s.first_arg().to_string(),
                        content: s.body.clone(),
                    })
                    .collect(),
                requested: vec!["nvidia.com/gpu=all".to_string()],
                driver_version: raw.ok_body("driver-version").map(str::to_string),
                dev_listing: body("dev"),
                id: raw.ok_body("id").map(str::to_string),
                mig,
            }));
        }
        if let Some(t) = &spec.triton {
            let ready_status = raw
                .ok_body("triton-ready")
                .and_then(|b| b.trim().parse::<u16>().ok())
                .filter(|c| *c != 0);
            let answers = TritonAnswers {
                ready_status,
                index_body: raw
                    .ok_body("triton-index")
                    .filter(|b| !b.trim().is_empty())
                    .map(str::to_string),
            };
            let models: Vec<String> = match raw.get("models") {
                Some(s) if s.ok() => s.body.lines().map(|l| l.trim().to_string()).collect(),
                _ => {
                    out.push(Check::fail(
                        Layer::Triton,
                        "model repository",
                        format!("{} cannot be listed on the guest", t.model_repository),
                        "the directory the inventory names as model_repository does not exist or is not readable",
                        "create it with the models (`<repo>/<model>/<version>/model.onnx`) or fix model_repository under [vm.guest.triton]",
                    ));
                    Vec::new()
                }
            };
            out.extend(super::triton::checks(&answers, &models));
        }
    }
    for s in raw.all("compose") {
        out.extend(super::compose::checks(Path::new(s.first_arg()), &s.body));
    }
    out
}

//! Container runtime layer: does a container see the GPUs, through NVML (`nvidia-smi -L`) and
//! through the CUDA runtime API ([`CUDA_PROBE_C`])? Both, because the failure of seed 000
//! (rootless Podman, CDI) shows only in the runtime API: nvidia-smi lists the GPU while
//! `cudaGetDeviceCount` returns 3 (cudaErrorInitializationError). RULES.md 5a: NVML does not
//! need /dev/nvidia-uvm, the CUDA runtime does, and a CDI spec generated while nvidia-uvm was
//! not loaded leaves it out (nvidia-container-toolkit#50).

use crate::core::check::{Check, Layer};

/// The probe's C source: build with `cc -O2 -o cuda-probe cuda-probe.c -ldl` (no CUDA headers
/// needed), run inside the container; it prints one `pvegpu-cuda-probe ...` line.
pub const CUDA_PROBE_C: &str = include_str!("../../templates/guest/cuda-probe.c");

/// The same probe for images that have python3 but where a binary built on the guest would
/// not run (an older glibc): `python3 -c "$CUDA_PROBE_PY"`, same output line.
pub const CUDA_PROBE_PY: &str = r#"import ctypes, sys
lib = None
for n in ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so.11"):
    try:
        lib = ctypes.CDLL(n)
        break
    except OSError:
        pass
if lib is None:
    print("pvegpu-cuda-probe count=0 error=-1 name=libcudartNotFound lib=none")
    sys.exit(2)
c = ctypes.c_int(0)
e = lib.cudaGetDeviceCount(ctypes.byref(c))
lib.cudaGetErrorName.restype = ctypes.c_char_p
name = (lib.cudaGetErrorName(e) or b"unknown").decode().replace(" ", "_")
print("pvegpu-cuda-probe count=%d error=%d name=%s lib=%s" % (c.value if e == 0 else 0, e, name, n))
sys.exit(0 if e == 0 else 1)
"#;

/// What the probe printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CudaProbe {
    pub count: u32,
    /// cudaError_t; -1 no libcudart, -2 libcudart without cudaGetDeviceCount.
    pub error: i32,
    pub name: String,
    pub lib: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeParseError {
    #[error("no `pvegpu-cuda-probe` line in the probe's output")]
    NoLine,
    #[error("the probe line lacks `{0}=` or its value is not a number: {1}")]
    Field(&'static str, String),
}

pub fn parse_cuda_probe(text: &str) -> Result<CudaProbe, ProbeParseError> {
    let line = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("pvegpu-cuda-probe "))
        .ok_or(ProbeParseError::NoLine)?;
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
    };
    let number = |k: &'static str| {
        field(k)
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| ProbeParseError::Field(k, line.to_string()))
    };
    Ok(CudaProbe {
        count: number("count")?.max(0) as u32,
        error: number("error")? as i32,
        name: field("name").unwrap_or("unknown").to_string(),
        lib: field("lib").filter(|l| *l != "none").map(str::to_string),
    })
}

/// `nvidia-smi -L` GPU lines (`GPU 0: NVIDIA GeForce GTX 1080 (UUID: GPU-...)`, MIG devices
/// indented under them are not GPUs) and every other line (errors).
pub fn parse_nvidia_smi_l(text: &str) -> (Vec<String>, Vec<String>) {
    let mut gpus = Vec::new();
    let mut other = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if line.starts_with("GPU ") && line.contains(':') {
            gpus.push(line.trim().to_string());
        } else if !line.trim_start().starts_with("MIG ") {
            other.push(line.trim().to_string());
        }
    }
    (gpus, other)
}

/// What ran in the container: `engine` names it in messages (`podman`, `docker`), the
/// outputs are stdout and stderr together of `nvidia-smi -L` and of the CUDA probe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeOutputs {
    pub engine: String,
    pub nvml: Option<String>,
    pub cuda: Option<String>,
}

const SPEC_FIX: &str = "on the guest: `sudo modprobe nvidia-uvm` (or `sudo nvidia-modprobe -u -c=0`) and make it load at boot (`echo nvidia-uvm | sudo tee /etc/modules-load.d/nvidia-uvm.conf`), then regenerate the spec with `sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml` and recreate the container";

fn nvml_check(engine: &str, text: &str, expected: usize) -> Check {
    let name = "container sees the GPUs (NVML)";
    let (gpus, other) = parse_nvidia_smi_l(text);
    let said = other.join(" / ");
    if !gpus.is_empty() && gpus.len() >= expected {
        return Check::pass(Layer::Runtime, name, gpus.join("; "));
    }
    if !gpus.is_empty() {
        return Check::fail(
            Layer::Runtime,
            name,
            format!("{} of {expected} GPUs: {}", gpus.len(), gpus.join("; ")),
            "the container was given fewer GPUs than the guest has (device request, NVIDIA_VISIBLE_DEVICES or the CDI device name)",
            format!(
                "request all GPUs (`{engine} run --device nvidia.com/gpu=all` with CDI, `docker run --gpus all`) or check the compose findings below"
            ),
        );
    }
    let (cause, fix) = if said.contains("unresolvable CDI devices") {
        (
            "the runtime found no CDI spec defining that device: Podman reads only /etc/cdi and /var/run/cdi (a spec under ~/.config/cdi is not read by default)".to_string(),
            "`sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`; `nvidia-ctk cdi list` shows the names it defines".to_string(),
        )
    } else if said.contains("Insufficient Permissions") {
        (
            "the device nodes /dev/nvidia* are not readable and writable by the container's user (restrictive NVreg_DeviceFileUID/GID/Mode, nvidia-container-toolkit#210)".to_string(),
            "let the driver create them 0666 (remove `NVreg_DeviceFileMode`/`DeviceFileGID` options from /etc/modprobe.d, then reload the module or reboot); the Podman checks list each node".to_string(),
        )
    } else if said.contains("Unknown Error") {
        (
            "NVML lost access to the devices after the container started (the device cgroup was reset, e.g. by `systemctl daemon-reload` with the legacy hook)".to_string(),
            "restart the container; inject devices with CDI (`--device nvidia.com/gpu=all`) so they do not depend on the hook".to_string(),
        )
    } else if said.contains("not found") || said.contains("No such file") {
        (
            "nvidia-smi was not injected into the container: no CDI spec or runtime hook mounted the driver's utilities".to_string(),
            format!("run with the GPU requested (`{engine} run --device nvidia.com/gpu=all ...` or `--gpus all`); for the legacy hook set NVIDIA_DRIVER_CAPABILITIES=compute,utility"),
        )
    } else {
        (
            "the container has no GPU: none was requested, or the runtime could not inject it"
                .to_string(),
            format!(
                "request it (`{engine} run --device nvidia.com/gpu=all` with CDI, `docker run --gpus all` with the NVIDIA runtime)"
            ),
        )
    };
    let saw = if said.is_empty() {
        "no output".to_string()
    } else {
        said
    };
    Check::fail(Layer::Runtime, name, saw, cause, fix)
}

fn cuda_check(engine: &str, text: &str, expected: usize, nvml_ok: bool) -> Check {
    let name = "container sees the GPUs (CUDA runtime)";
    let probe = match parse_cuda_probe(text) {
        Ok(p) => p,
        Err(e) => {
            return Check::skip(
                Layer::Runtime,
                name,
                format!("{e}: {}", text.trim()),
                "run the probe (templates/guest/cuda-probe.c, or its python3 form) inside a CUDA image",
            );
        }
    };
    let saw = format!(
        "cudaGetDeviceCount: count={} error={} ({})",
        probe.count, probe.error, probe.name
    );
    match probe.error {
        0 if probe.count as usize >= expected && probe.count > 0 => {
            Check::pass(Layer::Runtime, name, saw)
        }
        0 => Check::fail(
            Layer::Runtime,
            name,
            format!("{saw}, want {expected}"),
            "CUDA enumerates fewer GPUs than the container should have: CUDA_VISIBLE_DEVICES hides some (it counts from 0 inside the container)",
            "remove CUDA_VISIBLE_DEVICES from the service, or set it to 0..n-1; `pvegpu lint compose` finds such settings",
        ),
        -1 | -2 => Check::skip(
            Layer::Runtime,
            name,
            format!("{saw}: the image has no usable libcudart"),
            "run the probe in an image that carries the CUDA runtime (an nvidia/cuda *-runtime-* image, or the Triton image itself), or pass the library path as its argument",
        ),
        3 | 999 if nvml_ok => Check::fail(
            Layer::Runtime,
            name,
            format!("{saw} while nvidia-smi lists the GPUs"),
            format!(
                "the CUDA runtime cannot initialise although NVML works: the container lacks /dev/nvidia-uvm (and /dev/nvidia-uvm-tools), which CUDA needs and nvidia-smi does not; with {engine} and CDI this happens when the spec was generated before nvidia-uvm was loaded, so it lists no uvm device nodes (nvidia-container-toolkit#50)"
            ),
            SPEC_FIX,
        ),
        100 if nvml_ok => Check::fail(
            Layer::Runtime,
            name,
            format!("{saw} while nvidia-smi lists the GPUs"),
            "CUDA sees no device although NVML does: CUDA_VISIBLE_DEVICES in the container names devices it does not have (host indices; inside a container GPUs count from 0)",
            "remove CUDA_VISIBLE_DEVICES or set it to 0..n-1; `pvegpu lint compose` shows where it is set",
        ),
        35 | 803 | 804 => Check::fail(
            Layer::Runtime,
            name,
            saw,
            "the image's CUDA runtime is newer than the guest's driver supports",
            "use an image built for the driver's CUDA version (`pvegpu compat` names it) or install a newer driver branch",
        ),
        _ => Check::fail(
            Layer::Runtime,
            name,
            saw,
            if nvml_ok {
                "the CUDA runtime fails although NVML works; see the device-node and CDI checks"
            } else {
                "the container has no working GPU (see the NVML check)"
            },
            SPEC_FIX,
        ),
    }
}

/// Runtime checks for one container run, against the number of GPUs it should see.
pub fn checks(out: &RuntimeOutputs, expected_gpus: usize) -> Vec<Check> {
    let engine = if out.engine.is_empty() {
        "podman"
    } else {
        out.engine.as_str()
    };
    let mut checks = Vec::new();
    let nvml_ok = match &out.nvml {
        Some(text) => {
            let c = nvml_check(engine, text, expected_gpus);
            let ok = !parse_nvidia_smi_l(text).0.is_empty();
            checks.push(c);
            ok
        }
        None => {
            checks.push(Check::skip(
                Layer::Runtime,
                "container sees the GPUs (NVML)",
                "no output of `nvidia-smi -L` in a container",
                format!("run `{engine} run --rm --device nvidia.com/gpu=all IMAGE nvidia-smi -L`"),
            ));
            false
        }
    };
    checks.push(match &out.cuda {
        Some(text) => cuda_check(engine, text, expected_gpus, nvml_ok),
        None => Check::skip(
            Layer::Runtime,
            "container sees the GPUs (CUDA runtime)",
            "no output of the CUDA probe",
            "run the CUDA probe inside a CUDA container",
        ),
    });
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_lines() {
        let p = parse_cuda_probe(
            "pvegpu-cuda-probe count=2 error=0 name=cudaSuccess lib=libcudart.so.12\n",
        )
        .unwrap();
        assert_eq!((p.count, p.error, p.name.as_str()), (2, 0, "cudaSuccess"));
        assert_eq!(p.lib.as_deref(), Some("libcudart.so.12"));
        let p = parse_cuda_probe(
            "cudaGetDeviceCount: initialization error\npvegpu-cuda-probe count=0 error=3 name=cudaErrorInitializationError lib=libcudart.so\n",
        )
        .unwrap();
        assert_eq!(p.error, 3);
        let p =
            parse_cuda_probe("pvegpu-cuda-probe count=0 error=-1 name=libcudartNotFound lib=none")
                .unwrap();
        assert_eq!((p.error, p.lib), (-1, None));
        assert_eq!(
            parse_cuda_probe("bash: cuda-probe: not found"),
            Err(ProbeParseError::NoLine)
        );
        assert!(matches!(
            parse_cuda_probe("pvegpu-cuda-probe count=x error=0"),
            Err(ProbeParseError::Field("count", _))
        ));
    }

    #[test]
    fn smi_l_skips_mig_lines() {
        let (g, o) = parse_nvidia_smi_l(
            "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)\n  MIG 1g.5gb      Device  0: (UUID: MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f)\n",
        );
        assert_eq!(g.len(), 1);
        assert!(o.is_empty());
    }
}

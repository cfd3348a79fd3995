//! verify's Triton layer against a real Triton Inference Server: Triton 2.51.0 (the server of
//! NGC's 24.10 containers) with its Python backend, from the nvidia-pytriton wheel, on this
//! machine's CPU (`bash scripts/install-triton.sh DIR`, then `PVEGPU_TRITON=DIR`; `.ci/run`
//! does both). The real verify probe asks it what it asks a guest's server, and the checks
//! must read the server's own answers: ready or not, the model index, a model that loads and
//! models that fail with the error text the server gives.

mod support;
use pvegpu::inventory::guest::GuestSpec;
use pvegpu::verify::collect::{checks, probe_script};
use pvegpu::verify::guest::GuestExpect;
use pvegpu::verify::{Check, Layer, Status};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::gate::{Gated, Need};

fn server_dir() -> PathBuf {
    let dir = PathBuf::from(std::env::var("PVEGPU_TRITON").unwrap());
    let dir = if dir.is_absolute() {
        dir
    } else {
        support::gate::repo().join(dir)
    };
    dir.join("server/pytriton/tritonserver")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const IDENTITY_PY: &str = "import triton_python_backend_utils as pb_utils\n\n\
class TritonPythonModel:\n    def execute(self, requests):\n        return [\n            \
pb_utils.InferenceResponse([pb_utils.Tensor(\"y\", pb_utils.get_input_tensor_by_name(r, \"x\").as_numpy())])\n            \
for r in requests\n        ]\n";

const RAISES_PY: &str = "class TritonPythonModel:\n    def initialize(self, args):\n        \
raise FileNotFoundError(\"weights.bin is missing from the model folder\")\n\n    \
def execute(self, requests):\n        return []\n";

/// A model folder as the Triton docs lay it out: config.pbtxt and version 1.
fn model(repo: &Path, name: &str, backend: &str, file: (&str, &[u8])) {
    let v = repo.join(name).join("1");
    std::fs::create_dir_all(&v).unwrap();
    std::fs::write(
        repo.join(name).join("config.pbtxt"),
        format!(
            "name: \"{name}\"\nbackend: \"{backend}\"\nmax_batch_size: 0\n\
             input [ {{ name: \"x\" data_type: TYPE_FP32 dims: [ 4 ] }} ]\n\
             output [ {{ name: \"y\" data_type: TYPE_FP32 dims: [ 4 ] }} ]\n\
             instance_group [ {{ kind: KIND_CPU count: 1 }} ]\n"
        ),
    )
    .unwrap();
    std::fs::write(v.join(file.0), file.1).unwrap();
}

/// `<dir>/models` holding a Python model that loads (it echoes its input).
fn repository_with_identity(dir: &Path) -> PathBuf {
    let repo = dir.join("models");
    model(
        &repo,
        "identity",
        "python",
        ("model.py", IDENTITY_PY.as_bytes()),
    );
    repo
}

struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_code(port: u16, path: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "2",
        ])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Start the server on `repo` (every model loaded at start) and wait until it answers. It
/// serves on when a model fails (`--exit-on-error=false`): with Triton's default it would exit,
/// as its first start here showed, and the failed model's text would be in its log only.
fn start(repo: &Path, scratch: &Path) -> Server {
    let t = server_dir();
    let (port, grpc, metrics) = (free_port(), free_port(), free_port());
    let log = scratch.join("tritonserver.log");
    let child = Command::new(t.join("bin/tritonserver"))
        .arg(format!("--model-repository={}", repo.display()))
        .arg(format!(
            "--backend-directory={}",
            t.join("backends").display()
        ))
        .arg(format!("--cache-directory={}", t.join("caches").display()))
        .args(["--exit-on-error=false", "--allow-grpc=true"])
        .arg(format!("--http-port={port}"))
        .arg(format!("--grpc-port={grpc}"))
        .arg(format!("--metrics-port={metrics}"))
        // the Python backend's stub embeds the system's python3 and finds its modules from
        // the python3 on PATH: the system's, not a developer's pyenv
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(scratch.join("tritonserver.err")).unwrap())
        .spawn()
        .unwrap();
    let mut server = Server { child, port, log };
    let started = Instant::now();
    while http_code(port, "/v2/health/live") != "200" {
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!(
                "tritonserver exited ({status}):\n{}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "tritonserver did not answer in 120 s:\n{}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    server
}

/// The real verify probe, as it runs on a guest whose inventory names this port and folder;
/// the Triton layer's checks from what it printed.
fn triton_checks(port: u16, repo: &Path) -> Vec<Check> {
    let spec: GuestSpec = toml::from_str(&format!(
        "runtime = \"podman\"\n[triton]\nmodel_repository = \"{}\"\nbackend = \"python\"\nhttp_port = {port}\n",
        repo.display()
    ))
    .unwrap();
    let out = Command::new("sh")
        .args(["-c", &probe_script(Some(&spec))])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    checks(&text, Some(&spec), &GuestExpect::default())
        .into_iter()
        .filter(|c| c.layer == Layer::Triton)
        .collect()
}

fn named<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}: {checks:#?}"))
}

fn a_repository_that_loads_passes_the_triton_layer() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository_with_identity(dir.path());
    let server = start(&repo, dir.path());
    let checks = triton_checks(server.port, &repo);
    assert!(
        checks.iter().all(|c| c.status == Status::Pass),
        "{checks:#?}\n{}",
        std::fs::read_to_string(&server.log).unwrap()
    );
    assert_eq!(named(&checks, "server ready").saw, "/v2/health/ready: 200");
    assert_eq!(named(&checks, "every model loaded").saw, "READY: identity");
}

fn models_that_fail_show_the_servers_own_reason() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository_with_identity(dir.path());
    // an ONNX model on a server without the ONNX Runtime backend (this build has only Python)
    let onnx = std::fs::read(support::fixture("onnx/ir8-opset17.onnx")).unwrap();
    model(&repo, "no_backend", "onnxruntime", ("model.onnx", &onnx));
    model(
        &repo,
        "raises",
        "python",
        ("model.py", RAISES_PY.as_bytes()),
    );
    let server = start(&repo, dir.path());
    let checks = triton_checks(server.port, &repo);

    // strict readiness: one model down and the server says not ready
    let ready = named(&checks, "server ready");
    assert_eq!(
        (ready.status, ready.saw.as_str()),
        (Status::Fail, "/v2/health/ready: 400"),
        "{checks:#?}"
    );
    let failed = named(&checks, "no model failed");
    assert_eq!(failed.status, Status::Fail, "{checks:#?}");
    assert!(
        failed.saw.contains(
            "no_backend v1: UNAVAILABLE (Invalid argument: unable to find backend library for backend 'onnxruntime'"
        ),
        "{}",
        failed.saw
    );
    assert!(
        failed.saw.contains("raises v1: UNAVAILABLE (")
            && failed
                .saw
                .contains("FileNotFoundError: weights.bin is missing from the model folder"),
        "{}",
        failed.saw
    );
    assert!(!failed.saw.contains("identity"), "{}", failed.saw);
    // the model that loaded is still served
    assert_eq!(named(&checks, "every model loaded").saw, "READY: identity");
}

fn a_server_that_is_not_up_is_not_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository_with_identity(dir.path());
    let server = start(&repo, dir.path());
    let port = server.port;
    drop(server);
    let checks = triton_checks(port, &repo);
    assert!(
        checks.iter().all(|c| c.status != Status::Pass),
        "{checks:#?}"
    );
    let ready = named(&checks, "server ready");
    assert_eq!(ready.status, Status::Skip, "{checks:#?}");
    assert!(ready.saw.contains("no answer"), "{}", ready.saw);
}

fn main() {
    let needs = [
        Need::Dir(
            "PVEGPU_TRITON",
            "bash scripts/install-triton.sh DIR makes one",
        ),
        Need::Command("curl", "curl"),
    ];
    Gated::new()
        .test(
            "a_repository_that_loads_passes_the_triton_layer",
            &needs,
            a_repository_that_loads_passes_the_triton_layer,
        )
        .test(
            "models_that_fail_show_the_servers_own_reason",
            &needs,
            models_that_fail_show_the_servers_own_reason,
        )
        .test(
            "a_server_that_is_not_up_is_not_a_pass",
            &needs,
            a_server_that_is_not_up_is_not_a_pass,
        )
        .run();
}

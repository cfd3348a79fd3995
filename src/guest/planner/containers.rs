//! The container side: the runtime asked for, NVIDIA's container toolkit, the nvidia runtime
//! in Docker, and the CDI spec Podman resolves the GPUs from.

use super::{APT_INSTALL, Walk};
use crate::core::plan::Change;
use crate::guest::facts::GuestFacts;
use crate::guest::playbook::GuestStep;
use crate::inventory::guest::Runtime;

pub(super) fn runtime_missing(facts: &GuestFacts, runtime: Runtime) -> bool {
    match runtime {
        Runtime::Docker => facts.docker.is_none(),
        Runtime::Podman => facts.podman.is_none(),
    }
}

fn docker_has_nvidia_runtime(facts: &GuestFacts) -> bool {
    facts
        .files
        .get("/etc/docker/daemon.json")
        .and_then(|f| serde_json::from_str::<serde_json::Value>(&f.content).ok())
        .is_some_and(|v| v.pointer("/runtimes/nvidia").is_some())
}

pub(super) fn runtime(step: &GuestStep, w: &Walk) -> Option<Change> {
    let rt = w.d.spec.runtime;
    let package = match rt {
        Runtime::Docker => "docker.io",
        Runtime::Podman => "podman",
    };
    runtime_missing(w.facts, rt).then(|| {
        step.run(
            format!("{} is not installed", rt.command()),
            format!("{APT_INSTALL} {package}"),
        )
    })
}

pub(super) fn toolkit(step: &GuestStep, w: &Walk) -> Option<Change> {
    w.facts
        .installed("nvidia-container-toolkit")
        .is_none()
        .then(|| {
            step.run(
                "nvidia-container-toolkit not installed",
                format!("{APT_INSTALL} nvidia-container-toolkit"),
            )
        })
}

pub(super) fn docker_runtime(step: &GuestStep, w: &Walk) -> Option<Change> {
    if w.d.spec.runtime != Runtime::Docker || docker_has_nvidia_runtime(w.facts) {
        return None;
    }
    Some(step.run(
        "/etc/docker/daemon.json has no nvidia runtime",
        "nvidia-ctk runtime configure --runtime=docker && systemctl restart docker",
    ))
}

/// The CDI spec at `path`, generated again when it is missing or made for another driver.
pub(super) fn cdi_spec(
    step: &GuestStep,
    path: &str,
    w: &Walk,
    notes: &mut Vec<String>,
) -> Option<Change> {
    let (facts, d) = (w.facts, w.d);
    if d.spec.runtime != Runtime::Podman || !d.driver_ready {
        return None;
    }
    let loaded = facts.loaded_driver().unwrap_or_default();
    let spec = facts.cdi_specs.iter().find(|s| s.path == path);
    for s in facts
        .cdi_specs
        .iter()
        .filter(|s| s.path != path && s.kind.as_deref() == Some("nvidia.com/gpu"))
    {
        if s.driver_version.as_deref() != Some(loaded) {
            notes.push(format!(
                "{} is another nvidia.com/gpu CDI spec, made for driver {}; remove it if Podman resolves its devices instead of {path}'s",
                s.path,
                s.driver_version.as_deref().unwrap_or("unknown")
            ));
        }
    }
    let reason = match spec.map(|s| s.driver_version.as_deref()) {
        None => format!("{path} does not exist"),
        Some(v) if v == Some(loaded) => return None,
        Some(v) => format!(
            "{path} was made for driver {}, the loaded driver is {loaded}: its library paths are stale",
            v.unwrap_or("unknown")
        ),
    };
    // without nvidia-uvm loaded the spec lacks /dev/nvidia-uvm and CUDA fails in the
    // container while nvidia-smi works (RULES.md 5a). The unit names GPUs by UUID,
    // which toolkits before 1.15 do not generate by default (their flag takes one
    // value, the last given; later ones generate each strategy named).
    Some(step.run(
        reason,
        format!("modprobe nvidia-uvm && nvidia-ctk cdi generate --device-name-strategy=index --device-name-strategy=uuid --output={path}"),
    ))
}

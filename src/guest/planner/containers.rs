//! The container side: the runtime asked for, NVIDIA's container toolkit, the nvidia runtime
//! in Docker, and the CDI spec Podman resolves the GPUs from.

use super::known_bad::{TOOLKIT_PACKAGES, hold_command, pinned};
use super::{APT_INSTALL, Walk};
use crate::core::plan::Change;
use crate::guest::facts::GuestFacts;
use crate::guest::playbook::{GuestStep, GuestStepKind};
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
    let installed = w.facts.installed(TOOLKIT_PACKAGES[0]);
    match (installed, &w.d.toolkit_pin) {
        (None, None) => Some(step.run(
            "nvidia-container-toolkit not installed",
            format!("{APT_INSTALL} nvidia-container-toolkit"),
        )),
        (None, Some(pin)) => Some(step.run(
            format!("nvidia-container-toolkit not installed; {pin} is pinned and held, newer releases are known bad"),
            format!("{APT_INSTALL} {} && {}", pinned(pin), hold_command()),
        )),
        // the pinned release stays held, so an upgrade cannot bring a known-bad one in
        (Some(p), Some(pin))
            if p.version == *pin
                && !TOOLKIT_PACKAGES.iter().all(|n| w.facts.holds.contains(*n)) =>
        {
            Some(step.run(
                format!("nvidia-container-toolkit {pin} is not held; newer releases are known bad"),
                hold_command(),
            ))
        }
        _ => None,
    }
}

pub(super) fn docker_runtime(step: &GuestStep, w: &Walk) -> Option<Change> {
    if w.d.spec.runtime != Runtime::Docker {
        return None;
    }
    if !docker_has_nvidia_runtime(w.facts) {
        return Some(step.run(
            "/etc/docker/daemon.json has no nvidia runtime",
            "nvidia-ctk runtime configure --runtime=docker && systemctl restart docker",
        ));
    }
    // Docker reads daemon.json only when it starts: an apply cut between the write and the
    // restart leaves a daemon without the runtime ("Unknown runtime specified nvidia"), and
    // the file alone no longer plans the restart. A Docker installed by this plan starts
    // with the file.
    let running = w.facts.docker_runtimes.as_ref()?;
    let installing = w.changed(|k| matches!(k, GuestStepKind::ContainerRuntime {}));
    (!running.contains("nvidia") && !installing).then(|| {
        step.run(
            "/etc/docker/daemon.json has the nvidia runtime, but the running Docker daemon does not (it started before the file changed, or is not running)",
            "systemctl restart docker",
        )
    })
}

/// From Container Toolkit 1.18 on, the toolkit's `nvidia-cdi-refresh` service writes this
/// spec and refreshes it when the driver or the toolkit changes (NVIDIA's CDI support page,
/// "Automatic CDI Specification Generation"; the package's postinst starts the service).
const REFRESHED_SPEC: &str = "/var/run/cdi/nvidia.yaml";
const REFRESH: &str = "systemctl start nvidia-cdi-refresh.service";

/// Whether the installed toolkit maintains [`REFRESHED_SPEC`] itself (1.18 or later).
fn toolkit_refreshes_spec(facts: &GuestFacts) -> bool {
    facts
        .nvidia_ctk
        .as_deref()
        .and_then(crate::guest::parse::major_minor)
        .is_some_and(|v| v >= (1, 18))
}

/// The one CDI spec of the GPUs, made again when it is missing or made for another driver:
/// pvegpu's own at `path` (the playbook's) with toolkits before 1.18, else the one the
/// toolkit refreshes, with pvegpu's earlier one set aside so there are not two specs of the
/// same devices.
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
    let refreshed = toolkit_refreshes_spec(facts);
    let own = path;
    let path = if refreshed { REFRESHED_SPEC } else { own };
    let loaded = facts.loaded_driver().unwrap_or_default();
    let spec = facts.cdi_specs.iter().find(|s| s.path == path);
    let set_aside = refreshed && facts.cdi_specs.iter().any(|s| s.path == own);
    for s in facts
        .cdi_specs
        .iter()
        .filter(|s| s.path != path && s.path != own && s.kind.as_deref() == Some("nvidia.com/gpu"))
    {
        if s.driver_version.as_deref() != Some(loaded) {
            notes.push(format!(
                "{} is another nvidia.com/gpu CDI spec, made for driver {}; remove it if Podman resolves its devices instead of {path}'s",
                s.path,
                s.driver_version.as_deref().unwrap_or("unknown")
            ));
        }
    }
    let stale = match spec.map(|s| s.driver_version.as_deref()) {
        None => Some(format!("{path} does not exist")),
        Some(v) if v == Some(loaded) => None,
        Some(v) => Some(format!(
            "{path} was made for driver {}, the loaded driver is {loaded}: its library paths are stale",
            v.unwrap_or("unknown")
        )),
    };
    let mut reasons = Vec::new();
    let mut commands = Vec::new();
    if set_aside {
        reasons.push(format!(
            "the container toolkit {} maintains {REFRESHED_SPEC}, so pvegpu's {own} would be a second spec of the same devices",
            facts.nvidia_ctk.as_deref().unwrap_or_default()
        ));
        // CDI reads *.yaml and *.json only: the renamed file stays as a backup
        commands.push(format!("mv -f {own} {own}.pvegpu-replaced"));
    }
    if let Some(r) = stale {
        reasons.push(r);
        // without nvidia-uvm loaded the spec lacks /dev/nvidia-uvm and CUDA fails in the
        // container while nvidia-smi works (RULES.md 5a). The unit names GPUs by UUID,
        // which toolkits before 1.15 do not generate by default (their flag takes one
        // value, the last given; later ones generate each strategy named).
        commands.push("modprobe nvidia-uvm".into());
        commands.push(if refreshed {
            REFRESH.to_string()
        } else {
            format!("nvidia-ctk cdi generate --device-name-strategy=index --device-name-strategy=uuid --output={path}")
        });
    }
    (!commands.is_empty()).then(|| step.run(reasons.join("; "), commands.join(" && ")))
}

//! What narrows the GPUs a container sees: NVIDIA_VISIBLE_DEVICES beside a reservation or
//! without one, CUDA_VISIBLE_DEVICES in container numbering, and MIG devices.

use super::{EnvVar, Grant, Out, RESERVE_FIX, Selection, Source, range};
use crate::lint::compose::values::{IdKind, Value, gpus_word, id_kind, same_device, split_ids};
use crate::lint::compose::{Rule, Severity};

pub(super) fn nvidia_visible_devices(
    out: &mut Out,
    name: &str,
    nv: &EnvVar,
    grant: &Grant,
    why: &str,
) {
    match nv.value() {
        Value::Literal(v) => {
            let v = v.trim();
            let agrees = match grant {
                Grant::All => v == "all",
                Grant::Ids { ids, .. } => {
                    let mine = split_ids(v);
                    mine.len() == ids.len()
                        && mine.iter().all(|m| ids.iter().any(|i| same_device(m, i)))
                }
                Grant::None | Grant::Unknown => true,
            };
            if !agrees {
                out.push(
                    name,
                    nv.at,
                    Severity::Error,
                    Rule::NvidiaVisibleDevices,
                    format!(
                        "{} disagrees with the reservation ({why}). The reservation decides which GPUs Docker injects, and Docker sets NVIDIA_VISIBLE_DEVICES for it itself, so this value selects nothing and misleads whoever reads the file",
                        nv.shown()
                    ),
                    "delete NVIDIA_VISIBLE_DEVICES and choose the GPUs in the reservation only (`device_ids` with UUIDs from `nvidia-smi -L`)".into(),
                );
            }
        }
        Value::HostOr { .. } | Value::Host { .. } => out.push(
            name,
            nv.at,
            Severity::Warning,
            Rule::NvidiaVisibleDevices,
            format!(
                "{} comes from the shell that runs `docker compose`, but with a device reservation ({why}) Docker injects the reserved GPUs and sets NVIDIA_VISIBLE_DEVICES itself, so a value passed at `docker compose up` or `run -e` does not choose other GPUs",
                nv.shown()
            ),
            "select the GPUs in the reservation (`device_ids`, one service per GPU set) and delete NVIDIA_VISIBLE_DEVICES".into(),
        ),
    }
}

/// NVIDIA_VISIBLE_DEVICES in a service that asks for no GPU at all.
pub(super) fn no_gpu_request(out: &mut Out, name: &str, nv: &EnvVar) {
    let off = matches!(nv.value(), Value::Literal(v) if matches!(v.trim(), "" | "none" | "void"));
    if !off {
        out.push(
            name,
            nv.at,
            Severity::Warning,
            Rule::NoGpuRequest,
            format!("{} is read by the NVIDIA container runtime only, and this service neither reserves GPUs nor sets `runtime: nvidia`: it gets no GPU unless the Docker daemon's default runtime is nvidia", nv.shown()),
            RESERVE_FIX.into(),
        );
    }
}

pub(super) fn mig(out: &mut Out, name: &str, sources: &[Source], grant: &Grant) {
    let Grant::Ids { ids, .. } = grant else {
        return;
    };
    let migs: Vec<&String> = ids.iter().filter(|i| id_kind(i) == IdKind::Mig).collect();
    let Some(at) = sources
        .iter()
        .find(|s| matches!(&s.selection, Selection::Ids(v) if v.iter().any(|i| id_kind(i) == IdKind::Mig)))
        .map(|s| s.at)
    else {
        return;
    };
    if migs.len() == 1 {
        out.push(
            name,
            at,
            Severity::Advice,
            Rule::MigDevice,
            format!("`{}` is a MIG device, a slice of a GPU in MIG mode, not a whole GPU: the container's CUDA sees that one slice, and the id names it only while that MIG instance exists (MIG instances are recreated after a reboot or reconfiguration)", migs[0]),
            "check the id with `nvidia-smi -L` after every MIG reconfiguration or reboot, and keep this service at one GPU (no tensor parallelism)".into(),
        );
    } else if migs.len() > 1 {
        out.push(
            name,
            at,
            Severity::Warning,
            Rule::MigDevice,
            format!("this service gets {} MIG devices, but a CUDA process enumerates one MIG device only, however many the container receives (NVIDIA MIG user guide, \"CUDA Device Enumeration\")", migs.len()),
            "give each process its own MIG device (one service per MIG id), or use whole GPUs for work that spans GPUs".into(),
        );
    }
}

/// What CUDA inside the container sees after CUDA_VISIBLE_DEVICES.
pub(super) struct CudaView {
    /// How many GPUs CUDA enumerates.
    pub(super) visible: usize,
    pub(super) because: String,
}

pub(super) fn cuda_visible_devices(
    out: &mut Out,
    name: &str,
    cv: &EnvVar,
    grant: &Grant,
    why: &str,
) -> Option<CudaView> {
    let (value, unset_note) = match cv.value() {
        Value::Literal(v) => (Some(v), None),
        Value::HostOr { var, default } => (
            Some(default.clone()),
            Some(format!("with {var} unset on the host it is `{default}`")),
        ),
        Value::Host { .. } => (None, None),
    };
    if value.is_none() || unset_note.is_some() {
        from_host(out, name, cv, grant, why, unset_note.as_deref());
    }
    let value = value?;
    let shown = match &unset_note {
        Some(_) => format!("`CUDA_VISIBLE_DEVICES={}` (its default)", value),
        None => cv.shown(),
    };
    let n = grant.count();
    let reserved: Vec<String> = match grant {
        Grant::Ids { ids, .. } => ids.clone(),
        _ => Vec::new(),
    };
    let host_numbered = matches!(
        grant,
        Grant::Ids {
            from_count: false,
            ..
        }
    );
    let fix = match n {
        Some(1) => "delete CUDA_VISIBLE_DEVICES: the container holds only its own GPU already (or set it to `0`)".to_string(),
        Some(n) => format!("delete CUDA_VISIBLE_DEVICES: the container holds only its own GPUs already; to use only some, number them from 0 (here {})", range(n)),
        None => "delete CUDA_VISIBLE_DEVICES, or list container GPU indices (0, 1, …) or UUIDs".to_string(),
    };

    let entries = split_ids(&value);
    if entries.is_empty() {
        out.push(
            name,
            cv.at,
            Severity::Error,
            Rule::CudaVisibleDevices,
            format!("{shown} is empty, which hides every GPU from CUDA ('no CUDA-capable device is detected')"),
            fix,
        );
        return Some(CudaView {
            visible: 0,
            because: format!("{shown} hides every GPU"),
        });
    }
    let mut visible = 0;
    let mut invalid: Option<String> = None;
    let mut renamed: Vec<String> = Vec::new();
    for e in &entries {
        let problem = match id_kind(e) {
            IdKind::Index(k) => {
                index_problem(e, k as usize, n, &reserved, host_numbered, &mut renamed)
            }
            IdKind::GpuUuid | IdKind::Mig => uuid_problem(e, &reserved, why),
            IdKind::Other => Some(format!(
                "`{e}` is neither a GPU index nor a UUID{}",
                if e == "all" {
                    " (`all` is a value of NVIDIA_VISIBLE_DEVICES, not of CUDA_VISIBLE_DEVICES)"
                } else {
                    ""
                }
            )),
        };
        if let Some(p) = problem {
            invalid = Some(p);
            break;
        }
        visible += 1;
    }
    let sees = match visible {
        0 => "CUDA sees no GPU ('no CUDA-capable device is detected')".to_string(),
        v => format!("CUDA sees only the {v} before it"),
    };
    let unset = unset_note.map(|n| format!("{n}, and ")).unwrap_or_default();
    if let Some(problem) = invalid {
        out.push(
            name,
            cv.at,
            Severity::Error,
            Rule::CudaVisibleDevices,
            format!("{unset}{shown}: {problem}. CUDA stops at the first entry that names no GPU, so {sees}"),
            fix,
        );
    } else if !renamed.is_empty() {
        out.push(
            name,
            cv.at,
            Severity::Warning,
            Rule::CudaVisibleDevices,
            format!(
                "{unset}{shown} is read in container numbering: {}; if host GPU numbers were meant, this picks the wrong GPU",
                renamed.join("; ")
            ),
            fix,
        );
    }
    let visible = n.map_or(visible, |n| visible.min(n));
    Some(CudaView {
        visible,
        because: format!("{shown} leaves CUDA {visible} {}", gpus_word(visible)),
    })
}

/// CUDA_VISIBLE_DEVICES taken, wholly or by default, from the shell that starts Compose.
fn from_host(
    out: &mut Out,
    name: &str,
    cv: &EnvVar,
    grant: &Grant,
    why: &str,
    unset_note: Option<&str>,
) {
    let subset = matches!(
        grant,
        Grant::Ids {
            from_count: false,
            ..
        }
    );
    let detail = if subset {
        format!(
            "there it is in host numbering, while this container holds only the reserved GPUs ({why}), numbered from 0, so a host value names other GPUs or none"
        )
    } else {
        "which GPUs the service uses then depends on whoever starts it".to_string()
    };
    let unset = unset_note.map(|n| format!("; {n}")).unwrap_or_default();
    out.push(
        name,
        cv.at,
        Severity::Warning,
        Rule::CudaVisibleFromHost,
        format!(
            "{} comes from the shell that runs `docker compose`: {detail}{unset}",
            cv.shown()
        ),
        "choose the GPUs in the file (`device_ids` with UUIDs) and delete CUDA_VISIBLE_DEVICES, or set it to fixed container indices (0, 1, …)".into(),
    );
}

/// Why the index entry `e` (= `k`) names no GPU among the container's `n`, if it does not.
/// An index that names a GPU but, read in host numbering, another one goes to `renamed`.
fn index_problem(
    e: &str,
    k: usize,
    n: Option<usize>,
    reserved: &[String],
    host_numbered: bool,
    renamed: &mut Vec<String>,
) -> Option<String> {
    match n {
        Some(n) if k >= n => {
            let host = host_numbered && reserved.iter().any(|r| r == e);
            Some(if host {
                let pos: Vec<String> = reserved
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| id_kind(r) != IdKind::Other)
                    .map(|(i, r)| format!("host GPU {r} as GPU {i}"))
                    .collect();
                format!(
                    "it uses host numbering: the container holds {} (containers number their GPUs from 0), so `{e}` names no GPU there",
                    pos.join(" and ")
                )
            } else {
                format!(
                    "`{e}` names no GPU: the container has {n} {}, numbered {}",
                    gpus_word(n),
                    range(n)
                )
            })
        }
        _ => {
            if host_numbered
                && let Some(r) = reserved.get(k)
                && let Some(p) = reserved.iter().position(|x| x == e)
                && p != k
            {
                renamed.push(format!("`{e}` is container GPU {k}, which is host GPU {r}, while host GPU {e} is container GPU {p}"));
            }
            None
        }
    }
}

/// Why the UUID entry `e` is not in the container, when every reserved GPU is a UUID.
fn uuid_problem(e: &str, reserved: &[String], why: &str) -> Option<String> {
    let uuids: Vec<&String> = reserved
        .iter()
        .filter(|r| matches!(id_kind(r), IdKind::GpuUuid | IdKind::Mig))
        .collect();
    let all_uuids = !reserved.is_empty() && uuids.len() == reserved.len();
    (all_uuids && !uuids.iter().any(|r| same_device(e, r))).then(|| {
        format!("`{e}` is not one of the GPUs reserved for this service ({why}), so the container does not have it")
    })
}

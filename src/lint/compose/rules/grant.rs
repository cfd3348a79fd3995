//! What a service asks for: device reservations, `gpus:`, CDI devices and `runtime: nvidia`
//! with NVIDIA_VISIBLE_DEVICES, each read into the host GPUs it selects, and the rules on how
//! it is written (capabilities, count with device_ids, index selection, a redundant runtime).

use super::{EnvVar, Grant, INDEX_WHY, Loc, Out, Selection, Source, loc, range};
use crate::lint::compose::model::{Count, DeviceRequest, Gpus, Name, Service};
use crate::lint::compose::values::{
    IdKind, Value, gpus_word, id_kind, list, same_device, split_ids,
};
use crate::lint::compose::{Rule, Severity};
use serde_saphyr::Spanned;

/// Capabilities Docker's NVIDIA device driver offers (moby daemon/nvidia_linux.go).
const NVIDIA_CAPS: &[&str] = &[
    "gpu", "nvidia", "compute", "compat32", "graphics", "utility", "video", "display",
];

/// The requests written in the service: reservations, `gpus:` and CDI devices.
pub(super) fn requests(out: &mut Out, name: &str, svc: &Service) -> Vec<Source> {
    let mut sources = Vec::new();
    let reservations = svc
        .deploy
        .as_ref()
        .and_then(|d| d.resources.as_ref())
        .and_then(|r| r.reservations.as_ref())
        .and_then(|r| r.devices.as_ref());
    for d in reservations.into_iter().flatten() {
        sources.extend(check_request(out, name, &d.value, loc(d), false));
    }
    if let Some(g) = &svc.gpus {
        match &g.value {
            Gpus::All => sources.push(Source {
                selection: Selection::All,
                why: "`gpus: all`".into(),
                at: loc(g),
                from_count: false,
            }),
            Gpus::Requests(reqs) => {
                for d in reqs {
                    sources.extend(check_request(out, name, &d.value, loc(d), true));
                }
            }
        }
    }
    for d in svc.devices.iter().flatten() {
        let Some(dev) = &d.value.0 else { continue };
        sources.extend(cdi_device(out, name, dev, loc(d)));
    }
    sources
}

/// A `devices:` entry naming a CDI GPU (`nvidia.com/gpu=…`); `None` for other devices.
fn cdi_device(out: &mut Out, name: &str, dev: &str, at: Loc) -> Option<Source> {
    let id = dev.trim().strip_prefix("nvidia.com/gpu=")?;
    let why = format!("`{}`", dev.trim());
    if id == "all" {
        return Some(Source {
            selection: Selection::All,
            why,
            at,
            from_count: false,
        });
    }
    if matches!(id_kind(id), IdKind::Index(_)) {
        out.push(
            name,
            at,
            Severity::Advice,
            Rule::IndexDeviceIds,
            format!("{why} selects a GPU by index. {INDEX_WHY}"),
            "name the GPU by UUID: `nvidia.com/gpu=GPU-…` (the names `nvidia-ctk cdi list` prints)"
                .into(),
        );
    }
    Some(Source {
        selection: Selection::Ids(vec![id.to_string()]),
        why,
        at,
        from_count: false,
    })
}

pub(super) fn runtime_beside_reservation(out: &mut Out, name: &str, rt: &Spanned<Name>) {
    out.push(
        name,
        loc(rt),
        Severity::Advice,
        Rule::RuntimeWithReservation,
        "`runtime: nvidia` beside a device reservation: the reservation alone gives the container its GPUs, and the extra runtime only adds a second way to select them (through NVIDIA_VISIBLE_DEVICES) and fails on daemons where no `nvidia` runtime is registered".into(),
        "delete `runtime: nvidia` and keep the reservation".into(),
    );
}

/// With `runtime: nvidia` and no reservation, NVIDIA_VISIBLE_DEVICES selects the GPUs;
/// `None` when it selects none or its value is not in the file.
pub(super) fn runtime_selection(out: &mut Out, name: &str, nv: &EnvVar) -> Option<Source> {
    let Value::Literal(v) = nv.value() else {
        return None;
    };
    let v = v.trim().to_string();
    let selection = match v.as_str() {
        "all" => Selection::All,
        "" | "none" | "void" => return None,
        _ => Selection::Ids(split_ids(&v)),
    };
    if let Selection::Ids(ids) = &selection
        && ids.iter().any(|i| matches!(id_kind(i), IdKind::Index(_)))
    {
        out.push(
            name,
            nv.at,
            Severity::Advice,
            Rule::IndexDeviceIds,
            format!("{} selects GPUs by index. {INDEX_WHY}", nv.shown()),
            "write the UUIDs that `nvidia-smi -L` prints: `NVIDIA_VISIBLE_DEVICES=GPU-…,GPU-…`"
                .into(),
        );
    }
    Some(Source {
        selection,
        why: nv.shown(),
        at: nv.at,
        from_count: false,
    })
}

/// All sources together; `runtime_nvidia` without any source leaves the choice to the image.
pub(super) fn grant(sources: &[Source], runtime_nvidia: bool) -> Grant {
    if sources
        .iter()
        .any(|s| matches!(s.selection, Selection::All))
    {
        Grant::All
    } else if !sources.is_empty() {
        let mut ids: Vec<String> = Vec::new();
        for s in sources {
            if let Selection::Ids(more) = &s.selection {
                for id in more {
                    if !ids.iter().any(|i| same_device(i, id)) {
                        ids.push(id.clone());
                    }
                }
            }
        }
        Grant::Ids {
            ids,
            from_count: sources.iter().all(|s| s.from_count),
        }
    } else if runtime_nvidia {
        Grant::Unknown
    } else {
        Grant::None
    }
}

/// Checks one device request and returns what it selects (`None` when it is not for an
/// NVIDIA GPU). `implicit_gpu`: from `gpus:`, which needs no capabilities.
fn check_request(
    out: &mut Out,
    name: &str,
    r: &DeviceRequest,
    at: Loc,
    implicit_gpu: bool,
) -> Option<Source> {
    if let Some(d) = &r.driver
        && !d.value.trim().eq_ignore_ascii_case("nvidia")
    {
        return None; // another vendor's device
    }
    if !implicit_gpu && !capabilities(out, name, r, at) {
        return None; // e.g. `capabilities: [tpu]`
    }
    if let Some(c) = r.count.as_ref().filter(|c| c.value == Count::MinusOne) {
        out.push(
            name,
            loc(c),
            Severity::Warning,
            Rule::CountMinusOne,
            "`count: -1` gives the service every GPU of the host (Docker reads -1 as all), which a reader of the file is unlikely to guess".into(),
            "write `count: all`, or the number of GPUs the service needs".into(),
        );
    }

    let ids: Vec<String> = r
        .device_ids
        .as_ref()
        .map(|d| {
            d.value
                .iter()
                .map(|i| i.value.0.trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    if let (Some(c), false) = (&r.count, ids.is_empty()) {
        let count = match c.value {
            Count::All => "all".to_string(),
            Count::MinusOne => "-1".to_string(),
            Count::N(n) => n.to_string(),
        };
        out.push(
            name,
            loc(c),
            Severity::Error,
            Rule::CountWithDeviceIds,
            format!(
                "`count: {count}` and `device_ids: {}` are both set; Compose rejects the file (\"count and device_ids fields are exclusive\") and Docker refuses such a request (\"cannot set both Count and DeviceIDs on device request\")",
                list(&ids)
            ),
            format!(
                "delete `count: {count}`: `device_ids` alone reserves exactly {}",
                if ids.len() == 1 { "that GPU" } else { "those GPUs" }
            ),
        );
    }
    if let Some(d) = &r.device_ids {
        let at = loc(d);
        if !ids.is_empty() {
            if ids.iter().any(|i| matches!(id_kind(i), IdKind::Index(_))) {
                out.push(
                    name,
                    at,
                    Severity::Advice,
                    Rule::IndexDeviceIds,
                    format!(
                        "`device_ids: {}` selects GPUs by index. {INDEX_WHY}",
                        list(&ids)
                    ),
                    "write the UUIDs that `nvidia-smi -L` prints: `device_ids: [\"GPU-…\"]`".into(),
                );
            }
            return Some(Source {
                why: format!("`device_ids: {}`", list(&ids)),
                selection: Selection::Ids(ids),
                at,
                from_count: false,
            });
        }
    }
    Some(by_count(r, at))
}

/// Checks a reservation's `capabilities`; false when they ask for another vendor's device.
fn capabilities(out: &mut Out, name: &str, r: &DeviceRequest, at: Loc) -> bool {
    match &r.capabilities {
        Some(c) if !c.value.is_empty() => {
            let caps: Vec<&str> = c.value.iter().map(|s| s.0.trim()).collect();
            let known = |cap: &&str| NVIDIA_CAPS.contains(cap);
            if r.driver.is_none() && !caps.iter().any(known) {
                return false;
            }
            let written = format!("`capabilities: [{}]`", caps.join(", "));
            let unknown: Vec<&str> = caps.iter().copied().filter(|c| !known(c)).collect();
            if !unknown.is_empty() {
                out.push(
                    name,
                    loc(c),
                    Severity::Error,
                    Rule::GpuCapability,
                    format!(
                        "{written} asks for `{}`, which Docker's NVIDIA driver does not offer (it offers {}); a device must satisfy every capability asked for, so no driver matches and the container does not start (\"could not select device driver\")",
                        unknown.join("`, `"),
                        NVIDIA_CAPS.join(", ")
                    ),
                    "`capabilities: [gpu]` (NVIDIA driver capabilities such as compute or utility may stand beside it)".into(),
                );
            } else if !caps.contains(&"gpu") {
                out.push(
                    name,
                    loc(c),
                    Severity::Warning,
                    Rule::GpuCapability,
                    format!(
                        "{written} does not ask for `gpu`, the capability Compose defines for GPUs; it works only because Docker's NVIDIA driver also lists {}",
                        caps.join(" and ")
                    ),
                    format!(
                        "`capabilities: [gpu{}]`: `gpu` selects the GPUs, and the others still set NVIDIA_DRIVER_CAPABILITIES",
                        caps.iter()
                            .filter(|c| **c != "nvidia")
                            .map(|c| format!(", {c}"))
                            .collect::<String>()
                    ),
                );
            }
        }
        _ => out.push(
            name,
            at,
            Severity::Error,
            Rule::GpuCapability,
            "this device reservation has no `capabilities`; Compose requires the field and returns an error when the service is deployed".into(),
            "add `capabilities: [gpu]`".into(),
        ),
    }
    true
}

/// What a request without `device_ids` selects: `count: N`, `count: all`, or neither (all).
fn by_count(r: &DeviceRequest, at: Loc) -> Source {
    match &r.count {
        Some(c) => match c.value {
            Count::N(n) => Source {
                selection: Selection::Ids((0..n).map(|i| i.to_string()).collect()),
                why: format!(
                    "`count: {n}` (Docker gives host {} {})",
                    gpus_word(n as usize),
                    range(n as usize)
                ),
                at: loc(c),
                from_count: true,
            },
            Count::All | Count::MinusOne => Source {
                selection: Selection::All,
                why: format!(
                    "`count: {}`",
                    if c.value == Count::All { "all" } else { "-1" }
                ),
                at: loc(c),
                from_count: false,
            },
        },
        None => Source {
            selection: Selection::All,
            why: "a reservation without count or device_ids (all GPUs)".into(),
            at,
            from_count: false,
        },
    }
}

//! The checks. Each service is read into what Docker will do with it (which host GPUs the
//! container gets, and how CUDA inside will number them), then every rule compares what the
//! file says with that.

use super::model::{CommandLine, Count, DeviceRequest, Environment, Gpus, Service};
use super::parallel::{self, Degree, Kind, Segment};
use super::values::{IdKind, Value, gpus_word, id_kind, interpolate, list, same_device, split_ids};
use super::{Finding, Rule, Severity};
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

/// Capabilities Docker's NVIDIA device driver offers (moby daemon/nvidia_linux.go).
const NVIDIA_CAPS: &[&str] = &[
    "gpu", "nvidia", "compute", "compat32", "graphics", "utility", "video", "display",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loc {
    line: usize,
    merged_at: Option<usize>,
}

/// Where a value is written, and where the service picks it up when that differs.
fn loc<T>(s: &Spanned<T>) -> Loc {
    let defined = s.defined.line() as usize;
    let referenced = s.referenced.line() as usize;
    let line = if defined > 0 {
        defined
    } else {
        referenced.max(1)
    };
    Loc {
        line,
        merged_at: (referenced > 0 && referenced != line).then_some(referenced),
    }
}

struct Out<'a> {
    file: &'a str,
    text: &'a str,
    findings: Vec<Finding>,
}

impl Out<'_> {
    fn push(
        &mut self,
        service: &str,
        at: Loc,
        severity: Severity,
        rule: Rule,
        message: String,
        fix: String,
    ) {
        self.findings.push(Finding {
            file: self.file.to_string(),
            service: service.to_string(),
            line: at.line,
            merged_at: at.merged_at,
            severity,
            rule,
            message,
            fix,
        });
    }
}

/// One environment variable after list/map forms and overrides are resolved.
struct EnvVar {
    key: String,
    /// `None`: written without a value, so Compose takes it from the host's shell.
    raw: Option<String>,
    at: Loc,
}

impl EnvVar {
    fn value(&self) -> Value {
        match &self.raw {
            Some(r) => interpolate(r),
            None => Value::Host {
                var: self.key.clone(),
            },
        }
    }
    fn shown(&self) -> String {
        match &self.raw {
            Some(r) => format!("`{}={r}`", self.key),
            None => format!("`{}` (no value, so the host's)", self.key),
        }
    }
}

fn environment(svc: &Service) -> BTreeMap<String, EnvVar> {
    let mut env = BTreeMap::new();
    let Some(e) = &svc.environment else {
        return env;
    };
    match &e.value {
        Environment::List(items) => {
            for item in items {
                let (key, raw) = match item.value.0.split_once('=') {
                    Some((k, v)) => (k.trim().to_string(), Some(v.to_string())),
                    None => (item.value.0.trim().to_string(), None),
                };
                env.insert(
                    key.clone(),
                    EnvVar {
                        key,
                        raw,
                        at: loc(item),
                    },
                );
            }
        }
        Environment::Map(items) => {
            for (key, v) in items {
                let raw = v.value.as_ref().map(|s| s.0.clone());
                env.insert(
                    key.clone(),
                    EnvVar {
                        key: key.clone(),
                        raw,
                        at: loc(v),
                    },
                );
            }
        }
    }
    env
}

/// Which GPUs one request (a reservation entry, `gpus:`, a CDI device, or the runtime's
/// NVIDIA_VISIBLE_DEVICES) gives the container, in host terms.
#[derive(Debug, Clone)]
enum Selection {
    All,
    Ids(Vec<String>),
}

#[derive(Debug, Clone)]
struct Source {
    selection: Selection,
    /// As written, for messages: `device_ids: ["1"]`, `count: 2`.
    why: String,
    at: Loc,
    /// The ids come from `count: N` (Docker: host GPUs 0..N-1).
    from_count: bool,
}

/// What the container gets, all sources together.
#[derive(Debug, Clone)]
enum Grant {
    /// No GPU is asked for.
    None,
    /// `runtime: nvidia` without NVIDIA_VISIBLE_DEVICES (the image decides), or a value
    /// from the host.
    Unknown,
    All,
    Ids {
        ids: Vec<String>,
        from_count: bool,
    },
}

impl Grant {
    fn count(&self) -> Option<usize> {
        match self {
            Grant::Ids { ids, .. } => Some(ids.len()),
            _ => None,
        }
    }
}

struct Summary {
    name: String,
    ids: Vec<String>,
    from_count: bool,
    at: Loc,
}

pub fn check(file: &str, text: &str, services: &BTreeMap<String, Service>) -> Vec<Finding> {
    let mut out = Out {
        file,
        text,
        findings: Vec::new(),
    };
    let mut summaries = Vec::new();
    for (name, svc) in services {
        if let Some(s) = check_service(&mut out, name, svc) {
            summaries.push(s);
        }
    }
    shared_gpus(&mut out, &summaries);
    out.findings
}

fn check_service(out: &mut Out, name: &str, svc: &Service) -> Option<Summary> {
    let env = environment(svc);
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
        let Some(id) = dev.trim().strip_prefix("nvidia.com/gpu=") else {
            continue;
        };
        let at = loc(d);
        let why = format!("`{}`", dev.trim());
        if id == "all" {
            sources.push(Source {
                selection: Selection::All,
                why,
                at,
                from_count: false,
            });
            continue;
        }
        if matches!(id_kind(id), IdKind::Index(_)) {
            out.push(
                name,
                at,
                Severity::Advice,
                Rule::IndexDeviceIds,
                format!("{why} selects a GPU by index. {INDEX_WHY}"),
                "name the GPU by UUID: `nvidia.com/gpu=GPU-…` (the names `nvidia-ctk cdi list` prints)".into(),
            );
        }
        sources.push(Source {
            selection: Selection::Ids(vec![id.to_string()]),
            why,
            at,
            from_count: false,
        });
    }

    let runtime_nvidia = svc.runtime.as_ref().filter(|r| r.value.trim() == "nvidia");
    let requested = !sources.is_empty();
    if let (Some(rt), true) = (runtime_nvidia, requested) {
        out.push(
            name,
            loc(rt),
            Severity::Advice,
            Rule::RuntimeWithReservation,
            "`runtime: nvidia` beside a device reservation: the reservation alone gives the container its GPUs, and the extra runtime only adds a second way to select them (through NVIDIA_VISIBLE_DEVICES) and fails on daemons where no `nvidia` runtime is registered".into(),
            "delete `runtime: nvidia` and keep the reservation".into(),
        );
    }
    let nvidia_visible = env.get("NVIDIA_VISIBLE_DEVICES");
    if !requested && runtime_nvidia.is_some() {
        if let Some(nv) = nvidia_visible {
            if let Value::Literal(v) = nv.value() {
                let v = v.trim().to_string();
                let selection = match v.as_str() {
                    "all" => Some(Selection::All),
                    "" | "none" | "void" => None,
                    _ => Some(Selection::Ids(split_ids(&v))),
                };
                if let Some(Selection::Ids(ids)) = &selection {
                    if ids.iter().any(|i| matches!(id_kind(i), IdKind::Index(_))) {
                        out.push(
                            name,
                            nv.at,
                            Severity::Advice,
                            Rule::IndexDeviceIds,
                            format!("{} selects GPUs by index. {INDEX_WHY}", nv.shown()),
                            "write the UUIDs that `nvidia-smi -L` prints: `NVIDIA_VISIBLE_DEVICES=GPU-…,GPU-…`".into(),
                        );
                    }
                }
                if let Some(selection) = selection {
                    sources.push(Source {
                        selection,
                        why: nv.shown(),
                        at: nv.at,
                        from_count: false,
                    });
                }
            }
        }
    }

    let grant = if sources
        .iter()
        .any(|s| matches!(s.selection, Selection::All))
    {
        Grant::All
    } else if !sources.is_empty() {
        let mut ids: Vec<String> = Vec::new();
        for s in &sources {
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
    } else if runtime_nvidia.is_some() {
        Grant::Unknown
    } else {
        Grant::None
    };
    let why = sources
        .iter()
        .map(|s| s.why.clone())
        .collect::<Vec<_>>()
        .join(" and ");

    if requested {
        if let Some(nv) = nvidia_visible {
            nvidia_visible_devices(out, name, nv, &grant, &why);
        }
    }
    mig(out, name, &sources, &grant);
    let cuda = env
        .get("CUDA_VISIBLE_DEVICES")
        .filter(|_| !matches!(grant, Grant::None))
        .and_then(|cv| cuda_visible_devices(out, name, cv, &grant, &why));
    parallelism(out, name, svc, &env, &grant, &why, cuda.as_ref());
    if matches!(grant, Grant::None) {
        if let Some(nv) = nvidia_visible {
            let off =
                matches!(nv.value(), Value::Literal(v) if matches!(v.trim(), "" | "none" | "void"));
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
    }

    match (&grant, sources.first()) {
        (Grant::Ids { ids, from_count }, Some(first)) if requested => Some(Summary {
            name: name.to_string(),
            ids: ids.clone(),
            from_count: *from_count,
            at: first.at,
        }),
        _ => None,
    }
}

const INDEX_WHY: &str = "Indices follow the host's enumeration order, which shifts when a card is added, removed or fails to come up, and an index-based selection has misbehaved where the UUID worked (NVIDIA/nvidia-container-runtime#117); a UUID stays with its card";

const RESERVE_FIX: &str = "reserve the GPUs: `deploy.resources.reservations.devices: [{driver: nvidia, device_ids: [\"GPU-…\"], capabilities: [gpu]}]` (UUIDs from `nvidia-smi -L`), or `count: all`";

/// Checks one device request and returns what it selects (`None` when it is not for an
/// NVIDIA GPU). `implicit_gpu`: from `gpus:`, which needs no capabilities.
fn check_request(
    out: &mut Out,
    name: &str,
    r: &DeviceRequest,
    at: Loc,
    implicit_gpu: bool,
) -> Option<Source> {
    if let Some(d) = &r.driver {
        if !d.value.trim().eq_ignore_ascii_case("nvidia") {
            return None; // another vendor's device
        }
    }
    if !implicit_gpu {
        match &r.capabilities {
            Some(c) if !c.value.is_empty() => {
                let caps: Vec<&str> = c.value.iter().map(|s| s.0.trim()).collect();
                let known = |cap: &&str| NVIDIA_CAPS.contains(cap);
                if r.driver.is_none() && !caps.iter().any(known) {
                    return None; // e.g. `capabilities: [tpu]`
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
    Some(match &r.count {
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
            Count::All => Source {
                selection: Selection::All,
                why: "`count: all`".into(),
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
    })
}

/// `0`, `0 and 1`, `0 to 3`.
fn range(n: usize) -> String {
    match n {
        0 => "none".into(),
        1 => "0".into(),
        2 => "0 and 1".into(),
        n => format!("0 to {}", n - 1),
    }
}

fn nvidia_visible_devices(out: &mut Out, name: &str, nv: &EnvVar, grant: &Grant, why: &str) {
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

fn mig(out: &mut Out, name: &str, sources: &[Source], grant: &Grant) {
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
struct CudaView {
    /// How many GPUs CUDA enumerates.
    visible: usize,
    because: String,
}

fn cuda_visible_devices(
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
        let unset = unset_note
            .as_ref()
            .map(|n| format!("; {n}"))
            .unwrap_or_default();
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
                let k = k as usize;
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
                        if host_numbered {
                            if let Some(r) = reserved.get(k) {
                                if let Some(p) = reserved.iter().position(|x| x == e) {
                                    if p != k {
                                        renamed.push(format!("`{e}` is container GPU {k}, which is host GPU {r}, while host GPU {e} is container GPU {p}"));
                                    }
                                }
                            }
                        }
                        None
                    }
                }
            }
            IdKind::GpuUuid | IdKind::Mig => {
                let uuids: Vec<&String> = reserved
                    .iter()
                    .filter(|r| matches!(id_kind(r), IdKind::GpuUuid | IdKind::Mig))
                    .collect();
                let all_uuids = !reserved.is_empty() && uuids.len() == reserved.len();
                (all_uuids && !uuids.iter().any(|r| same_device(e, r))).then(|| {
                    format!("`{e}` is not one of the GPUs reserved for this service ({why}), so the container does not have it")
                })
            }
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

fn command_segments(line: Option<&Spanned<CommandLine>>) -> (Vec<Segment>, bool) {
    let Some(c) = line else {
        return (Vec::new(), false);
    };
    let at = loc(c);
    match &c.value {
        CommandLine::Shell(s) => (
            vec![Segment {
                text: s.clone(),
                line: at.line,
                merged_at: at.merged_at,
            }],
            true,
        ),
        CommandLine::Exec(items) => (
            items
                .iter()
                .map(|i| {
                    let at = loc(i);
                    Segment {
                        text: i.value.0.clone(),
                        line: at.line,
                        merged_at: at.merged_at,
                    }
                })
                .collect(),
            false,
        ),
    }
}

/// A string value may span lines (`command: >` and a folded block); point at the line
/// that holds the flag itself.
fn refine_line(text: &str, start: usize, value: &str, needle: &str) -> usize {
    let span = value.split_whitespace().count() + 2;
    text.lines()
        .enumerate()
        .skip(start.saturating_sub(1))
        .take(span)
        .find(|(_, l)| l.contains(needle))
        .map_or(start, |(i, _)| i + 1)
}

fn degree_from(
    out: &Out,
    kind: Kind,
    svc: &Service,
    env: &BTreeMap<String, EnvVar>,
) -> Option<Degree> {
    let lookup = |var: &str| env.get(var).and_then(|e| e.raw.clone());
    for c in [&svc.command, &svc.entrypoint] {
        let (segments, shell) = command_segments(c.as_ref());
        if let Some(mut d) = parallel::find(kind, &segments, &lookup) {
            if shell {
                let needle = d.written.split([' ', '=']).next().unwrap_or("").to_string();
                d.line = refine_line(out.text, d.line, &segments[0].text, &needle);
            }
            return Some(d);
        }
    }
    env.values()
        .filter(|e| parallel::env_key_kind(&e.key) == Some(kind))
        .find_map(|e| {
            let raw = e.raw.as_ref()?;
            let (n, note) = parallel::resolve(raw, &lookup)?;
            Some(Degree {
                n,
                written: format!("{}={raw}", e.key),
                note,
                line: e.at.line,
                merged_at: e.at.merged_at,
            })
        })
}

fn parallelism(
    out: &mut Out,
    name: &str,
    svc: &Service,
    env: &BTreeMap<String, EnvVar>,
    grant: &Grant,
    why: &str,
    cuda: Option<&CudaView>,
) {
    let tp = degree_from(out, Kind::Tensor, svc, env);
    let pp = degree_from(out, Kind::Pipeline, svc, env);
    let Some(main) = tp.clone().or_else(|| pp.clone()) else {
        return;
    };
    let need = tp.as_ref().map_or(1, |d| d.n) * pp.as_ref().map_or(1, |d| d.n);
    if need <= 1 {
        return;
    }
    let at = Loc {
        line: main.line,
        merged_at: main.merged_at,
    };
    let asked = match (&tp, &pp) {
        (Some(t), Some(p)) => format!(
            "`{}` with `{}` needs {need} GPUs (tensor × pipeline)",
            t.written, p.written
        ),
        _ => format!("`{}` needs {need} GPUs", main.written),
    };
    let notes: Vec<String> = [&tp, &pp]
        .into_iter()
        .flatten()
        .filter_map(|d| d.note.clone())
        .collect();
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    };
    if matches!(grant, Grant::None) {
        out.push(
            name,
            at,
            Severity::Warning,
            Rule::NoGpuRequest,
            format!("{asked}{notes}, but this service reserves no GPU and does not set `runtime: nvidia`: it gets none unless the Docker daemon's default runtime is nvidia"),
            RESERVE_FIX.into(),
        );
        return;
    }
    // What limits the GPUs the processes see: the reservation, MIG, or CUDA_VISIBLE_DEVICES.
    let mut seen: Option<(usize, String, bool)> = match grant {
        Grant::Ids { ids, .. }
            if !ids.is_empty() && ids.iter().all(|i| id_kind(i) == IdKind::Mig) =>
        {
            Some((
                1,
                "its GPUs are MIG devices, and a CUDA process enumerates one MIG device only"
                    .into(),
                false,
            ))
        }
        Grant::Ids { ids, .. } => Some((
            ids.len(),
            format!("it reserves {} {} ({why})", ids.len(), gpus_word(ids.len())),
            false,
        )),
        _ => None,
    };
    if let Some(c) = cuda {
        if seen.as_ref().is_none_or(|(n, _, _)| c.visible < *n) {
            seen = Some((c.visible, c.because.clone(), true));
        }
    }
    let Some((visible, because, by_cuda)) = seen else {
        return;
    };
    // No GPU at all is the CUDA_VISIBLE_DEVICES error already reported.
    if need as usize <= visible || visible == 0 {
        return;
    }
    let fix = if by_cuda {
        format!(
            "delete CUDA_VISIBLE_DEVICES or list {need} container GPUs in it ({}), or lower the parallel size to {visible}",
            range(need as usize)
        )
    } else {
        format!(
            "reserve {need} GPUs (`device_ids` with {need} UUIDs, or `count: {need}`), or lower the parallel size to {visible}"
        )
    };
    out.push(
        name,
        at,
        Severity::Error,
        Rule::TensorParallel,
        format!(
            "{asked}{notes}, but the service's processes see {visible}: {because}. The engine stops at startup when the parallel size exceeds the GPUs it sees"
        ),
        fix,
    );
}

/// `count: N` gives host GPUs 0..N-1 whatever else runs: two services with counts (or a
/// count and device_ids naming those indices) share GPUs while others stay idle.
fn shared_gpus(out: &mut Out, summaries: &[Summary]) {
    for (i, b) in summaries.iter().enumerate() {
        for a in &summaries[..i] {
            if !(a.from_count || b.from_count) {
                continue;
            }
            let shared: Vec<String> = b
                .ids
                .iter()
                .filter(|id| a.ids.iter().any(|x| same_device(x, id)))
                .cloned()
                .collect();
            if shared.is_empty() {
                continue;
            }
            let (at, counted) = if b.from_count { (b, a) } else { (a, b) };
            let n = shared.len();
            out.push(
                &at.name,
                at.at,
                Severity::Warning,
                Rule::SharedGpu,
                format!(
                    "this service and `{}` both get host {} {}: Docker turns `count: N` into host GPUs 0 to N-1 for every service, so counts never spread services over different GPUs",
                    counted.name,
                    gpus_word(n),
                    shared.join(", ")
                ),
                "give each service its own GPUs with `device_ids` (UUIDs from `nvidia-smi -L`)".into(),
            );
        }
    }
}

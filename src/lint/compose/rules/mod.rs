//! The checks. Each service is read into what Docker will do with it (which host GPUs the
//! container gets, and how CUDA inside will number them), then every rule compares what the
//! file says with that.
//!
//! - [`grant`]: what the service asks for (reservations, `gpus:`, CDI devices, the runtime)
//!   and the rules on how it asks;
//! - [`visible`]: the variables that narrow what the container sees (NVIDIA_VISIBLE_DEVICES,
//!   CUDA_VISIBLE_DEVICES) and MIG devices;
//! - [`parallelism`]: tensor and pipeline parallel sizes against the GPUs seen;
//! - here: the service walk and GPUs shared between services.

mod grant;
mod parallelism;
mod visible;

use super::model::{Environment, Service};
use super::values::{Value, gpus_word, interpolate, same_device};
use super::{Finding, Rule, Severity};
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

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
    let mut sources = grant::requests(out, name, svc);
    let runtime_nvidia = svc
        .runtime
        .as_ref()
        .filter(|r| r.value.0.trim() == "nvidia");
    let requested = !sources.is_empty();
    let nvidia_visible = env.get("NVIDIA_VISIBLE_DEVICES");
    match runtime_nvidia {
        Some(rt) if requested => grant::runtime_beside_reservation(out, name, rt),
        Some(_) => {
            sources.extend(nvidia_visible.and_then(|nv| grant::runtime_selection(out, name, nv)))
        }
        None => {}
    }

    let grant = grant::grant(&sources, runtime_nvidia.is_some());
    let why = sources
        .iter()
        .map(|s| s.why.clone())
        .collect::<Vec<_>>()
        .join(" and ");

    if requested && let Some(nv) = nvidia_visible {
        visible::nvidia_visible_devices(out, name, nv, &grant, &why);
    }
    visible::mig(out, name, &sources, &grant);
    let cuda = env
        .get("CUDA_VISIBLE_DEVICES")
        .filter(|_| !matches!(grant, Grant::None))
        .and_then(|cv| visible::cuda_visible_devices(out, name, cv, &grant, &why));
    parallelism::parallelism(out, name, svc, &env, &grant, &why, cuda.as_ref());
    if matches!(grant, Grant::None)
        && let Some(nv) = nvidia_visible
    {
        visible::no_gpu_request(out, name, nv);
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

/// `0`, `0 and 1`, `0 to 3`.
fn range(n: usize) -> String {
    match n {
        0 => "none".into(),
        1 => "0".into(),
        2 => "0 and 1".into(),
        n => format!("0 to {}", n - 1),
    }
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

//! Tensor and pipeline parallel degrees a service asks for, read from its command, entrypoint
//! or environment: vLLM's `--tensor-parallel-size` / `-tp` and `--pipeline-parallel-size` /
//! `-pp`, TensorRT-LLM's `--tp_size` / `--pp_size`, and the `tensor_parallel_size=` /
//! `tp_size=` keyword forms of their Python APIs.

use super::values::{Value, interpolate};
use regex::Regex;
use std::sync::LazyLock;

/// A piece of command text and the line it came from.
#[derive(Debug, Clone)]
pub struct Segment {
    pub text: String,
    pub line: usize,
    pub merged_at: Option<usize>,
}

/// One parallel degree found, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Degree {
    pub n: u64,
    /// The flag or key and its value as written, e.g. `--tensor-parallel-size 2`.
    pub written: String,
    /// Where the value comes from when it is not a plain number.
    pub note: Option<String>,
    pub line: usize,
    pub merged_at: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tensor,
    Pipeline,
}

/// `head` (a flag or key and what joins it to its value), then the value, bare or quoted.
fn with_value(head: &str) -> Regex {
    Regex::new(&format!(r#"{head}["']?([^\s"',)\]]+)"#)).unwrap()
}

static TP_FLAG: LazyLock<Regex> = LazyLock::new(|| {
    with_value(
        r#"(?:^|[\s"'\[,])(--tensor[-_]parallel[-_]size|--tp[-_]size|--tp|-tp)(?:\s*=\s*|\s+)"#,
    )
});
static TP_KWARG: LazyLock<Regex> =
    LazyLock::new(|| with_value(r#"(?:^|[^-\w])(tensor_parallel_size|tp_size)\s*[=:]\s*"#));
static PP_FLAG: LazyLock<Regex> = LazyLock::new(|| {
    with_value(
        r#"(?:^|[\s"'\[,])(--pipeline[-_]parallel[-_]size|--pp[-_]size|--pp|-pp)(?:\s*=\s*|\s+)"#,
    )
});
static PP_KWARG: LazyLock<Regex> =
    LazyLock::new(|| with_value(r#"(?:^|[^-\w])(pipeline_parallel_size|pp_size)\s*[=:]\s*"#));

/// The last degree of `kind` set in `segments` (argument parsers keep the last one).
/// `segments` are joined with spaces, so a flag and its value may be separate list items.
/// `lookup` resolves `$$VAR` (expanded in the container) from the service's environment.
pub fn find(
    kind: Kind,
    segments: &[Segment],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<Degree> {
    let (flag, kwarg) = match kind {
        Kind::Tensor => (&*TP_FLAG, &*TP_KWARG),
        Kind::Pipeline => (&*PP_FLAG, &*PP_KWARG),
    };
    let mut joined = String::new();
    let mut starts = Vec::new();
    for s in segments {
        if !joined.is_empty() {
            joined.push(' ');
        }
        starts.push(joined.len());
        joined.push_str(&s.text);
    }
    let mut hits: Vec<(usize, usize, String, String)> = Vec::new(); // (name start, value start, name, value)
    for re in [flag, kwarg] {
        for c in re.captures_iter(&joined) {
            let (name, value) = (c.get(1).unwrap(), c.get(2).unwrap());
            if hits.iter().all(|h| h.1 != value.start()) {
                hits.push((
                    name.start(),
                    value.start(),
                    name.as_str().into(),
                    value.as_str().into(),
                ));
            }
        }
    }
    hits.sort();
    let (at, _, name, value) = hits.pop()?;
    let seg = starts.iter().rposition(|&s| s <= at).unwrap_or(0);
    let (n, note) = resolve(&value, lookup)?;
    let sep = if joined[at + name.len()..].starts_with('=') {
        "="
    } else {
        " "
    };
    Some(Degree {
        n,
        written: format!("{name}{sep}{value}"),
        note,
        line: segments[seg].line,
        merged_at: segments[seg].merged_at,
    })
}

/// A degree set through an environment variable such as `TENSOR_PARALLEL_SIZE=2`.
pub fn env_key_kind(key: &str) -> Option<Kind> {
    let k = key.to_ascii_uppercase();
    let is = |name: &str| k == name || k.ends_with(&format!("_{name}"));
    if is("TENSOR_PARALLEL_SIZE") || is("TP_SIZE") {
        Some(Kind::Tensor)
    } else if is("PIPELINE_PARALLEL_SIZE") || is("PP_SIZE") {
        Some(Kind::Pipeline)
    } else {
        None
    }
}

/// A degree's value: a number, `${VAR:-N}` (N unless the host sets VAR), or `$$VAR` /
/// `$${VAR}` (expanded in the container from the service's environment).
pub fn resolve(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<(u64, Option<String>)> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // too many digits for u64 is still a number the user wrote: report it, do not skip it
        return Some((v.parse().unwrap_or(u64::MAX), None));
    }
    if let Some(rest) = v.strip_prefix("$$") {
        let var = rest.trim_start_matches('{').trim_end_matches('}');
        let n = lookup(var)?.trim().parse().ok()?;
        return Some((n, Some(format!("`{var}={n}` in the service's environment"))));
    }
    match interpolate(v) {
        Value::HostOr { var, default } => {
            let n = default.trim().parse().ok()?;
            Some((
                n,
                Some(format!("`{v}` is {n} while {var} is unset on the host")),
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(text: &str, line: usize) -> Segment {
        Segment {
            text: text.into(),
            line,
            merged_at: None,
        }
    }

    fn tp(segments: &[Segment]) -> Option<(u64, String, usize)> {
        find(Kind::Tensor, segments, &|v| {
            (v == "TP").then(|| "4".to_string())
        })
        .map(|d| (d.n, d.written, d.line))
    }

    #[test]
    fn flags_in_strings_and_lists() {
        assert_eq!(
            tp(&[seg("--model m --tensor-parallel-size 2", 3)]),
            Some((2, "--tensor-parallel-size 2".into(), 3))
        );
        assert_eq!(tp(&[seg("serve m -tp=4", 3)]), Some((4, "-tp=4".into(), 3)));
        assert_eq!(
            tp(&[
                seg("--model", 3),
                seg("m", 4),
                seg("--tensor-parallel-size", 5),
                seg("2", 6)
            ]),
            Some((2, "--tensor-parallel-size 2".into(), 5))
        );
        assert_eq!(
            tp(&[seg("trtllm-serve m --tp_size 8", 7)]),
            Some((8, "--tp_size 8".into(), 7))
        );
        assert_eq!(
            tp(&[seg("python -c \"LLM('m', tensor_parallel_size=2)\"", 2)]),
            Some((2, "tensor_parallel_size=2".into(), 2))
        );
        assert_eq!(
            tp(&[seg("--tensor-parallel-size ${TP:-2}", 1)]).map(|t| t.0),
            Some(2)
        );
        assert_eq!(
            tp(&[seg("--tensor-parallel-size $${TP}", 1)]).map(|t| t.0),
            Some(4)
        );
        assert_eq!(tp(&[seg("--tensor-parallel-size ${TP}", 1)]), None);
        assert_eq!(
            tp(&[seg("--tensor-parallel-size 1 --tensor-parallel-size 2", 1)]).map(|t| t.0),
            Some(2)
        );
        assert_eq!(tp(&[seg("--tp-size 2", 1)]).map(|t| t.0), Some(2));
        assert_eq!(tp(&[seg("--max-model-len 4096 --dtype half", 1)]), None);
        assert_eq!(tp(&[seg("--http-port=8000", 1)]), None);
    }

    #[test]
    fn pipeline() {
        let d = find(Kind::Pipeline, &[seg("-tp 2 -pp 2", 1)], &|_| None).unwrap();
        assert_eq!((d.n, d.written.as_str()), (2, "-pp 2"));
    }

    #[test]
    fn env_keys() {
        assert_eq!(env_key_kind("TENSOR_PARALLEL_SIZE"), Some(Kind::Tensor));
        assert_eq!(
            env_key_kind("VLLM_TENSOR_PARALLEL_SIZE"),
            Some(Kind::Tensor)
        );
        assert_eq!(env_key_kind("tp_size"), Some(Kind::Tensor));
        assert_eq!(env_key_kind("PP_SIZE"), Some(Kind::Pipeline));
        assert_eq!(env_key_kind("STEP_SIZE"), None);
    }
}

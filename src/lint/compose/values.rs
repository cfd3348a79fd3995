//! Pure helpers for the values GPU routing is written in: device ids, id lists and Compose's
//! `${VAR:-default}` interpolation.

use regex::Regex;
use std::sync::LazyLock;

/// What a GPU identifier names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// `0`, `1`: a position in the enumeration order.
    Index(u32),
    /// `GPU-8932f937-…` (or an unambiguous prefix of one).
    GpuUuid,
    /// `MIG-…`, `MIG-GPU-…/1/2`, or `0:1` (GPU 0, MIG device 1).
    Mig,
    /// Anything else (`all`, `none`, a typo).
    Other,
}

pub fn id_kind(id: &str) -> IdKind {
    let id = id.trim();
    if let Ok(n) = id.parse::<u32>()
        && !id.starts_with('+')
    {
        return IdKind::Index(n);
    }
    if id.starts_with("MIG-") {
        return IdKind::Mig;
    }
    if let Some((a, b)) = id.split_once(':')
        && a.parse::<u32>().is_ok()
        && b.parse::<u32>().is_ok()
    {
        return IdKind::Mig;
    }
    if let Some(rest) = id.strip_prefix("GPU-")
        && !rest.is_empty()
        && rest.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
    {
        return IdKind::GpuUuid;
    }
    IdKind::Other
}

/// Splits `0,1` / `GPU-a, GPU-b` into trimmed ids (an empty value gives no ids).
pub fn split_ids(value: &str) -> Vec<String> {
    if value.trim().is_empty() {
        return Vec::new();
    }
    value.split(',').map(|s| s.trim().to_string()).collect()
}

/// Whether `wanted` (possibly an abbreviated UUID, as CUDA allows) names `granted`.
pub fn same_device(wanted: &str, granted: &str) -> bool {
    let (w, g) = (wanted.trim(), granted.trim());
    if w == g {
        return true;
    }
    match (id_kind(w), id_kind(g)) {
        (IdKind::GpuUuid, IdKind::GpuUuid) | (IdKind::Mig, IdKind::Mig) => {
            let (w, g) = (w.to_ascii_lowercase(), g.to_ascii_lowercase());
            g.starts_with(&w) || w.starts_with(&g)
        }
        _ => false,
    }
}

/// A value as Compose will see it after interpolation, as far as it can be known offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Fixed text (with `$$` already unescaped).
    Literal(String),
    /// `${VAR:-default}` or `${VAR-default}`: the host's VAR when set, else `default`.
    HostOr { var: String, default: String },
    /// `${VAR}`, `$VAR`, a value built around one, or an environment entry with no value:
    /// whatever the shell that runs `docker compose` has.
    Host { var: String },
}

static WHOLE_BRACED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*)|:?[?+][^}]*)?\}$").unwrap()
});
static WHOLE_BARE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\$([A-Za-z_][A-Za-z0-9_]*)$").unwrap());
static ANY_VAR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)").unwrap());

/// Compose interpolation of one value (`$$` is a literal `$`).
pub fn interpolate(raw: &str) -> Value {
    if !raw.contains('$') {
        return Value::Literal(raw.to_string());
    }
    let t = raw.trim();
    if let Some(c) = WHOLE_BRACED.captures(t) {
        let var = c[1].to_string();
        return match (c.get(2), c.get(3)) {
            (Some(_), Some(d)) => Value::HostOr {
                var,
                default: d.as_str().to_string(),
            },
            _ => Value::Host { var },
        };
    }
    if let Some(c) = WHOLE_BARE.captures(t) {
        return Value::Host {
            var: c[1].to_string(),
        };
    }
    let unescaped = raw.replace("$$", "");
    match ANY_VAR.captures(&unescaped) {
        Some(c) => Value::Host {
            var: c[1].to_string(),
        },
        None => Value::Literal(raw.replace("$$", "$")),
    }
}

/// `["0", "1"]` as written in a message.
pub fn list(ids: &[String]) -> String {
    let quoted: Vec<String> = ids.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// `GPU 0`, `GPUs 0,1`.
pub fn gpus_word(n: usize) -> &'static str {
    if n == 1 { "GPU" } else { "GPUs" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(id_kind("0"), IdKind::Index(0));
        assert_eq!(id_kind(" 12 "), IdKind::Index(12));
        assert_eq!(
            id_kind("GPU-8932f937-d72c-4106-c12f-20bd9faed9f6"),
            IdKind::GpuUuid
        );
        assert_eq!(id_kind("GPU-8932f937"), IdKind::GpuUuid);
        assert_eq!(
            id_kind("MIG-4e5c1c6b-0c2a-5c6e-9a45-1e8b1f2a3b4c"),
            IdKind::Mig
        );
        assert_eq!(
            id_kind("MIG-GPU-8932f937-d72c-4106-c12f-20bd9faed9f6/1/2"),
            IdKind::Mig
        );
        assert_eq!(id_kind("0:1"), IdKind::Mig);
        assert_eq!(id_kind("all"), IdKind::Other);
        assert_eq!(id_kind("-1"), IdKind::Other);
        assert_eq!(id_kind("GPU-xyz"), IdKind::Other);
    }

    #[test]
    fn interpolation() {
        assert_eq!(interpolate("0,1"), Value::Literal("0,1".into()));
        assert_eq!(
            interpolate("${CUDA_VISIBLE_DEVICES:-0}"),
            Value::HostOr {
                var: "CUDA_VISIBLE_DEVICES".into(),
                default: "0".into()
            }
        );
        assert_eq!(
            interpolate("${TP-2}"),
            Value::HostOr {
                var: "TP".into(),
                default: "2".into()
            }
        );
        assert_eq!(interpolate("${GPUS}"), Value::Host { var: "GPUS".into() });
        assert_eq!(
            interpolate("${GPUS:?set GPUS}"),
            Value::Host { var: "GPUS".into() }
        );
        assert_eq!(interpolate("$GPUS"), Value::Host { var: "GPUS".into() });
        assert_eq!(interpolate("0,${MORE}"), Value::Host { var: "MORE".into() });
        assert_eq!(interpolate("a$$b"), Value::Literal("a$b".into()));
    }

    #[test]
    fn abbreviated_uuids_match() {
        assert!(same_device(
            "GPU-8932f937",
            "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6"
        ));
        assert!(!same_device(
            "GPU-1111",
            "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6"
        ));
        assert!(!same_device("0", "GPU-8932f937"));
    }
}

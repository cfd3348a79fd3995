//! Which GPU a user means: a PCI id (`10de:1b80`, `[10de:1b80]`), a name
//! (`GeForce GTX 1080`, lspci's `GP104 [GeForce GTX 1080]`), or both (`10de:1b80=GeForce GTX
//! 1080`, checked against each other). Unknown ids and names are errors, never guesses.

use super::tables::{Gpu, Tables};
use crate::pci::PciId;

const NVIDIA: u16 = 0x10de;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GpuError {
    #[error(
        "no GPU given; name each GPU by PCI id as `lspci -nn -d 10de:` prints it (`10de:1b80`) or by name (`GeForce GTX 1080`)"
    )]
    NoGpus,
    #[error("`{0}` is not an NVIDIA id (vendor 10de); pvegpu only chooses drivers for NVIDIA GPUs")]
    NotNvidia(String),
    #[error(
        "{id} is not in pvegpu's GPU table ({known} NVIDIA ids, Kepler to Blackwell), and pvegpu does not guess an architecture or compute capability; check the id with `lspci -nn -d 10de:`, or add the card to the tables (data/compat/build.py)"
    )]
    UnknownId { id: String, known: usize },
    #[error(
        "no GPU in pvegpu's table is named `{name}`{suggestions}; give its PCI id from `lspci -nn -d 10de:` instead"
    )]
    UnknownName { name: String, suggestions: String },
    #[error(
        "`{name}` names GPUs that differ in architecture, compute capability or driver support ({candidates}); give the PCI id from `lspci -nn -d 10de:` instead"
    )]
    AmbiguousName { name: String, candidates: String },
    #[error(
        "{id} is `{actual}`, not `{given}`; check both against `lspci -nn -d 10de:` (give only the id to skip the check)"
    )]
    NameMismatch {
        id: String,
        actual: String,
        given: String,
    },
    #[error(
        "the compute capability of {gpu} ({chip}, {arch}) is not published, and pvegpu does not guess it; CUDA and Triton cannot be chosen for this card until NVIDIA publishes it"
    )]
    UnknownCc {
        gpu: String,
        chip: String,
        arch: String,
    },
}

/// A GPU as the user named it, found in the table.
#[derive(Debug, Clone)]
pub struct Resolved<'t> {
    pub input: String,
    pub gpu: &'t Gpu,
    /// Other ids with the same name and the same facts (a name can cover several ids).
    pub same_name: Vec<PciId>,
}

/// Find the GPU a spec names.
pub fn resolve<'t>(t: &'t Tables, spec: &str) -> Result<Resolved<'t>, GpuError> {
    let spec = spec.trim();
    let (id, name) = split_spec(spec);
    match (id, name) {
        (Some(id), name) => {
            let pci: PciId = id
                .parse()
                .map_err(|_| GpuError::NotNvidia(id.to_string()))?;
            if pci.vendor != NVIDIA {
                return Err(GpuError::NotNvidia(id.to_string()));
            }
            let gpu = t.gpu(pci).ok_or_else(|| GpuError::UnknownId {
                id: pci.to_string(),
                known: t.gpus.len(),
            })?;
            if let Some(given) = name
                && !names_of(gpu).any(|n| n == normalise(given))
            {
                return Err(GpuError::NameMismatch {
                    id: pci.to_string(),
                    actual: gpu.name.clone(),
                    given: given.to_string(),
                });
            }
            Ok(Resolved {
                input: spec.to_string(),
                gpu,
                same_name: vec![],
            })
        }
        (None, Some(name)) => by_name(t, spec, name),
        (None, None) => Err(GpuError::NoGpus),
    }
}

/// `10de:1b80`, `[10de:1b80]`, `10de:1b80=Name` -> (id, name); anything else is a name.
fn split_spec(spec: &str) -> (Option<&str>, Option<&str>) {
    if spec.is_empty() {
        return (None, None);
    }
    let (head, rest) = match spec.split_once('=') {
        Some((h, r)) => (h.trim(), Some(r.trim()).filter(|r| !r.is_empty())),
        None => (spec, None),
    };
    let bare = head.trim_start_matches('[').trim_end_matches(']');
    if looks_like_id(bare) {
        (Some(bare), rest)
    } else {
        (None, Some(spec))
    }
}

fn looks_like_id(s: &str) -> bool {
    match s.split_once(':') {
        Some((v, d)) => {
            v.len() == 4
                && d.len() == 4
                && v.chars().chain(d.chars()).all(|c| c.is_ascii_hexdigit())
        }
        None => false,
    }
}

/// Lower case, single spaces, no `NVIDIA ` prefix; lspci's `GP104 [GeForce GTX 1080]` is the
/// bracketed name.
fn normalise(name: &str) -> String {
    let mut n = name.trim();
    if let (Some(open), true) = (n.find('['), n.ends_with(']')) {
        n = &n[open + 1..n.len() - 1];
    }
    let n = n.split_whitespace().collect::<Vec<_>>().join(" ");
    let n = n.to_lowercase();
    let n = n.strip_prefix("nvidia corporation ").unwrap_or(&n);
    n.strip_prefix("nvidia ").unwrap_or(n).to_string()
}

fn names_of(g: &Gpu) -> impl Iterator<Item = String> + '_ {
    std::iter::once(normalise(&g.name)).chain(g.pci_ids_name.iter().map(|n| normalise(n)))
}

/// The facts a recommendation reads: ids that agree on all of them are interchangeable.
type FactsKey<'a> = (
    super::tables::Arch,
    Option<super::version::Cc>,
    Option<&'a str>,
    Option<bool>,
    Option<&'a str>,
    &'a std::collections::BTreeMap<String, Vec<String>>,
);

fn facts_key(g: &Gpu) -> FactsKey<'_> {
    (
        g.arch,
        g.cc,
        g.brand.as_deref(),
        g.open_module,
        g.legacy_branch.as_deref(),
        &g.debian,
    )
}

fn by_name<'t>(t: &'t Tables, spec: &str, name: &str) -> Result<Resolved<'t>, GpuError> {
    let wanted = normalise(name);
    let hits: Vec<&Gpu> = t
        .gpus
        .iter()
        .filter(|g| names_of(g).any(|n| n == wanted))
        .collect();
    let Some(first) = hits.first() else {
        let mut close: Vec<String> = t
            .gpus
            .iter()
            .filter(|g| !wanted.is_empty() && names_of(g).any(|n| n.contains(&wanted)))
            .map(|g| format!("{} ({})", g.name, g.id))
            .collect();
        close.dedup();
        let suggestions = if close.is_empty() {
            String::new()
        } else {
            let more = close.len().saturating_sub(5);
            close.truncate(5);
            let more = if more > 0 {
                format!(", and {more} more")
            } else {
                String::new()
            };
            format!(" (did you mean: {}{more}?)", close.join(", "))
        };
        return Err(GpuError::UnknownName {
            name: name.to_string(),
            suggestions,
        });
    };
    if hits.iter().any(|g| facts_key(g) != facts_key(first)) {
        let candidates = hits
            .iter()
            .map(|g| {
                let cc = g.cc.map(|c| c.to_string()).unwrap_or("unknown".into());
                format!("{} {} CC {cc}", g.id, g.arch)
            })
            .collect::<Vec<_>>()
            .join(", ");
        return Err(GpuError::AmbiguousName {
            name: name.to_string(),
            candidates,
        });
    }
    Ok(Resolved {
        input: spec.to_string(),
        gpu: first,
        same_name: hits[1..].iter().map(|g| g.id).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compat::tables::tables;

    #[test]
    fn ids_in_every_accepted_spelling() {
        let t = tables();
        for spec in ["10de:1b80", "[10de:1B80]", "10de:1b80=GeForce GTX 1080"] {
            assert_eq!(
                resolve(t, spec).unwrap().gpu.name,
                "NVIDIA GeForce GTX 1080"
            );
        }
    }

    #[test]
    fn names_match_exactly_after_normalising() {
        let t = tables();
        let r = resolve(t, "GP104 [GeForce GTX 1080]").unwrap();
        assert_eq!(r.gpu.id.to_string(), "10de:1b80");
        // The desktop and mobile 1080 share the name and every fact pvegpu reads.
        assert!(!r.same_name.is_empty());
        let r = resolve(t, "nvidia  h100 pcie").unwrap();
        assert_eq!(r.gpu.id.to_string(), "10de:2331");
    }

    #[test]
    fn unknown_and_contradictory_specs_are_refused() {
        let t = tables();
        assert!(matches!(
            resolve(t, "10de:ffff"),
            Err(GpuError::UnknownId { .. })
        ));
        assert!(matches!(
            resolve(t, "8086:1b80"),
            Err(GpuError::NotNvidia(_))
        ));
        let e = resolve(t, "GTX 1080").unwrap_err();
        assert!(e.to_string().contains("did you mean"), "{e}");
        assert!(matches!(
            resolve(t, "10de:1b80=GeForce RTX 4090"),
            Err(GpuError::NameMismatch { .. })
        ));
    }
}

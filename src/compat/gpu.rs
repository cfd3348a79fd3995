//! Which GPU a user means: a PCI id (`10de:1b80`, `[10de:1b80]`), a device id with its
//! subsystem id as `lspci -nnv` prints the two (`10de:1e30/10de:129e`: one device id can be
//! sold as several products, told apart by the subsystem), a name (`GeForce GTX 1080`,
//! lspci's `GP104 [GeForce GTX 1080]`, or a product name pci.ids or NVIDIA give a subsystem,
//! `Quadro RTX 8000`), or an id and a name (`10de:1b80=GeForce GTX 1080`, checked against
//! each other). Unknown ids and names are errors, never guesses; a name that covers cards
//! which differ is an error listing them.

use super::support::{self, Subsystem};
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
        "`{name}` names GPUs that differ in architecture, compute capability or driver support: {candidates}; give the PCI id from `lspci -nn -d 10de:` instead, with the subsystem id from `lspci -nnv -d 10de:` (`10de:1e30/10de:129e`) where a product shares its device id"
    )]
    AmbiguousName { name: String, candidates: String },
    #[error(
        "`{0}` is not a PCI id; give the subsystem as `lspci -nnv` prints it after `Subsystem:`, e.g. `10de:1e30/10de:129e`"
    )]
    BadSubsystem(String),
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
    /// The subsystem id, where the user gave it or named a product by its subsystem entry.
    pub subsystem_id: Option<PciId>,
    /// The subsystem entry that names the exact product; None where the data has none (then
    /// the device's name applies, as lspci prints it).
    pub subsystem: Option<&'t Subsystem>,
    /// Other ids with the same name and the same facts (a name can cover several ids).
    pub same_name: Vec<PciId>,
}

impl Resolved<'_> {
    /// The product's name: the subsystem entry's where there is one, else the device's.
    pub fn name(&self) -> &str {
        self.subsystem.map_or(&self.gpu.name, |s| &s.name)
    }
}

/// Find the GPU a spec names.
pub fn resolve<'t>(t: &'t Tables, spec: &str) -> Result<Resolved<'t>, GpuError> {
    let spec = spec.trim();
    let Spec {
        id,
        subsystem,
        name,
    } = split_spec(spec);
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
            let subsystem_id: Option<PciId> = subsystem
                .map(|s| s.parse().map_err(|_| GpuError::BadSubsystem(s.to_string())))
                .transpose()?;
            let entry = subsystem_id.and_then(|s| support::subsystem(t, pci, s));
            if let Some(given) = name {
                let given_n = normalise(given);
                let by_entry = subsystem_id.is_some_and(|s| {
                    t.subsystems
                        .iter()
                        .any(|e| e.id == pci && e.subsystem == s && normalise(&e.name) == given_n)
                });
                if !by_entry && !names_of(gpu).any(|n| n == given_n) {
                    return Err(GpuError::NameMismatch {
                        id: match subsystem_id {
                            Some(s) => format!("{pci}/{s}"),
                            None => pci.to_string(),
                        },
                        actual: entry.map_or(gpu.name.clone(), |e| e.name.clone()),
                        given: given.to_string(),
                    });
                }
            }
            Ok(Resolved {
                input: spec.to_string(),
                gpu,
                subsystem_id,
                subsystem: entry,
                same_name: vec![],
            })
        }
        (None, Some(name)) => by_name(t, spec, name),
        (None, None) => Err(GpuError::NoGpus),
    }
}

struct Spec<'a> {
    id: Option<&'a str>,
    subsystem: Option<&'a str>,
    name: Option<&'a str>,
}

/// `10de:1b80`, `[10de:1b80]`, `10de:1e30/10de:129e`, any of them with `=Name`; anything
/// else is a name.
fn split_spec(spec: &str) -> Spec<'_> {
    let none = Spec {
        id: None,
        subsystem: None,
        name: None,
    };
    if spec.is_empty() {
        return none;
    }
    let (head, rest) = match spec.split_once('=') {
        Some((h, r)) => (h.trim(), Some(r.trim()).filter(|r| !r.is_empty())),
        None => (spec, None),
    };
    let (device, subsystem) = match head.split_once('/') {
        Some((d, s)) => (d.trim(), Some(bare(s))),
        None => (head, None),
    };
    let device = bare(device);
    if looks_like_id(device) {
        Spec {
            id: Some(device),
            subsystem,
            name: rest,
        }
    } else {
        Spec {
            name: Some(spec),
            ..none
        }
    }
}

fn bare(s: &str) -> &str {
    s.trim().trim_start_matches('[').trim_end_matches(']')
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
    Vec<bool>,
);

fn facts_key<'a>(t: &Tables, g: &'a Gpu) -> FactsKey<'a> {
    (
        g.arch,
        g.cc,
        g.brand.as_deref(),
        g.open_module,
        g.legacy_branch.as_deref(),
        &g.debian,
        support::listed_in(t, g),
    )
}

/// A card a name matched: by the device's own name (subsystem None) or a subsystem entry.
type Hit<'t> = (&'t Gpu, Option<&'t Subsystem>);

fn by_name<'t>(t: &'t Tables, spec: &str, name: &str) -> Result<Resolved<'t>, GpuError> {
    let wanted = normalise(name);
    let mut hits: Vec<Hit<'t>> = t
        .gpus
        .iter()
        .filter(|g| names_of(g).any(|n| n == wanted))
        .map(|g| (g, None))
        .collect();
    for s in t.subsystems.iter().filter(|s| normalise(&s.name) == wanted) {
        let known = hits
            .iter()
            .any(|(g, e)| g.id == s.id && e.is_some_and(|e| e.subsystem == s.subsystem));
        if let (Some(g), false) = (t.gpu(s.id), known) {
            hits.push((g, Some(s)));
        }
    }
    let Some(&(first, first_entry)) = hits.first() else {
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
    let key = facts_key(t, first);
    if hits.iter().any(|(g, _)| facts_key(t, g) != key) {
        let candidates = hits
            .iter()
            .map(|(g, e)| {
                let cc = g.cc.map(|c| c.to_string()).unwrap_or("unknown".into());
                let (spec, name) = match e {
                    Some(e) => (format!("{}/{}", g.id, e.subsystem), &e.name),
                    None => (g.id.to_string(), &g.name),
                };
                format!("{spec} ({name}, {}, CC {cc})", g.arch)
            })
            .collect::<Vec<_>>()
            .join(", ");
        return Err(GpuError::AmbiguousName {
            name: name.to_string(),
            candidates,
        });
    }
    let mut same_name: Vec<PciId> = hits
        .iter()
        .map(|(g, _)| g.id)
        .filter(|id| *id != first.id)
        .collect();
    same_name.dedup();
    // A subsystem entry names the product when the name matched only such entries of one
    // device (`Tesla T10 16GB` is two subsystems of 10de:1e37); the subsystem id is known
    // when it matched exactly one.
    let entries_of_one = hits.iter().all(|(g, e)| e.is_some() && g.id == first.id);
    let entry = first_entry.filter(|_| entries_of_one);
    Ok(Resolved {
        input: spec.to_string(),
        gpu: first,
        subsystem_id: entry.filter(|_| hits.len() == 1).map(|e| e.subsystem),
        subsystem: entry,
        same_name,
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

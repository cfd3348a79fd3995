//! Per-device facts: which PCI device ids each driver branch's own lists name, and the
//! subsystem names that tell apart products sharing one device id. Embedded from
//! `data/compat/support.json`, which `data/compat/build_support.py` builds from NVIDIA's
//! open-gpu-kernel-modules README tables, Debian's nvidia-detect lists and pci.ids.
//!
//! A list decides only what it speaks for: an open-module list says nothing about the
//! proprietary module, and a list that covers Turing and later says nothing about a Pascal
//! card. Where no list decides, support is by architecture only, and the answer says so.

use super::tables::{Arch, Gpu, Tables};
use crate::pci::PciId;
use serde::{Deserialize, Serialize};

/// What a list is the whole list of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every card the driver release supports: a card it lacks is not supported.
    Driver,
    /// The cards the open kernel module drives: a card it lacks may still run on the
    /// proprietary module (Tesla T4 is missing from the 535 and 550 open-module lists).
    OpenModule,
    /// The products NVIDIA's supported-gpus.json names: not every product the driver
    /// supports (it lacks Tesla T4), so a card it lacks is not thereby refused.
    Products,
}

/// One branch's id list (support.json `lists`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdList {
    pub branch: u32,
    /// The driver release the list was read from; None where the source does not say.
    pub release: Option<String>,
    /// Which list, as a person would name it.
    pub list: String,
    /// The oldest architecture the list speaks for; None: every architecture.
    pub covers_from: Option<Arch>,
    pub scope: Scope,
    pub ids: Vec<PciId>,
    pub source: Vec<String>,
}

impl IdList {
    pub fn covers(&self, arch: Arch) -> bool {
        self.covers_from.is_none_or(|from| arch >= from)
    }

    pub fn has(&self, id: PciId) -> bool {
        self.ids.contains(&id)
    }

    /// `Debian bookworm nvidia-detect, package nvidia-driver (535.309.01)`.
    pub fn label(&self) -> String {
        match &self.release {
            Some(r) => format!("{} ({r})", self.list),
            None => self.list.clone(),
        }
    }
}

/// A subsystem entry (support.json `subsystems`): device `id` with subsystem `subsystem`
/// is sold as `name`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subsystem {
    pub id: PciId,
    pub subsystem: PciId,
    pub name: String,
    pub source: Vec<String>,
}

/// What a branch's lists say about one card.
#[derive(Debug, Clone)]
pub enum Verdict<'t> {
    /// A list of the branch names the card.
    Listed(&'t IdList),
    /// The branch's whole-driver lists cover the card's architecture and none names it.
    NotListed(Vec<&'t IdList>),
    /// No list of the branch decides: support is by architecture only. `open_lacks`: the
    /// branch's open-module lists that cover the card and lack it (the open module does not
    /// drive it in that release; the proprietary one may).
    ByArchitecture { open_lacks: Vec<&'t IdList> },
}

/// What the lists of `branch` say about `g`.
pub fn verdict<'t>(t: &'t Tables, g: &Gpu, branch: u32) -> Verdict<'t> {
    let lists: Vec<&IdList> = t
        .id_lists
        .iter()
        .filter(|l| l.branch == branch && l.covers(g.arch))
        .collect();
    // A whole-driver list is the better citation where several name the card.
    let listed = lists
        .iter()
        .filter(|l| l.has(g.id))
        .min_by_key(|l| l.scope != Scope::Driver);
    if let Some(l) = listed {
        return Verdict::Listed(l);
    }
    let driver: Vec<&IdList> = lists
        .iter()
        .copied()
        .filter(|l| l.scope == Scope::Driver)
        .collect();
    if driver.is_empty() {
        let open_lacks = lists
            .into_iter()
            .filter(|l| l.scope == Scope::OpenModule)
            .collect();
        Verdict::ByArchitecture { open_lacks }
    } else {
        Verdict::NotListed(driver)
    }
}

/// Which lists name the card, for telling apart ids that share a name: two ids whose lists
/// differ are not interchangeable.
pub fn listed_in(t: &Tables, g: &Gpu) -> Vec<bool> {
    t.id_lists
        .iter()
        .map(|l| l.covers(g.arch) && l.has(g.id))
        .collect()
}

/// The subsystem entries of device `id` with subsystem `sub`; NVIDIA's own name first.
pub fn subsystem(t: &Tables, id: PciId, sub: PciId) -> Option<&Subsystem> {
    let mut hits: Vec<&Subsystem> = t
        .subsystems
        .iter()
        .filter(|s| s.id == id && s.subsystem == sub)
        .collect();
    hits.sort_by_key(|s| {
        !s.source
            .iter()
            .any(|c| c.contains("open-gpu-kernel-modules"))
    });
    hits.first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compat::tables::tables;

    fn gpu(id: &str) -> &'static Gpu {
        tables().gpu(id.parse().unwrap()).unwrap()
    }

    #[test]
    fn lists_are_sorted_by_branch_and_cite_their_source() {
        let t = tables();
        assert!(t.id_lists.windows(2).all(|w| w[0].branch <= w[1].branch));
        for l in &t.id_lists {
            assert!(!l.ids.is_empty(), "{}", l.label());
            assert!(!l.source.is_empty(), "{}", l.label());
        }
        assert!(t.subsystems.iter().all(|s| !s.source.is_empty()));
    }

    #[test]
    fn an_open_module_list_never_refuses_on_its_own() {
        // Tesla T4: Debian's 535 and 550 lists have it, the open module's do not.
        let t4 = gpu("10de:1eb8");
        assert!(
            matches!(verdict(tables(), t4, 535), Verdict::Listed(l) if l.scope == Scope::Driver)
        );
        // R525 has only the open-module list, which lacks it: by architecture only.
        match verdict(tables(), t4, 525) {
            Verdict::ByArchitecture { open_lacks } => assert_eq!(open_lacks.len(), 1),
            v => panic!("{v:?}"),
        }
        // R610 has no list at all.
        assert!(matches!(
            verdict(tables(), t4, 610),
            Verdict::ByArchitecture { open_lacks } if open_lacks.is_empty()
        ));
    }

    #[test]
    fn nvidias_product_list_only_ever_says_yes() {
        // NVIDIA's 525 supported-gpus.json names the GTX 1080 and lacks Tesla T4.
        let t = tables();
        assert!(
            matches!(verdict(t, gpu("10de:1b80"), 525), Verdict::Listed(l) if l.scope == Scope::Products)
        );
        assert!(
            matches!(verdict(t, gpu("10de:1eb8"), 510), Verdict::ByArchitecture { open_lacks } if open_lacks.is_empty())
        );
    }

    #[test]
    fn a_whole_driver_list_that_lacks_the_card_refuses_it() {
        // H200: not in Debian bookworm's 535 lists; in trixie's 550 list.
        let h200 = gpu("10de:2335");
        assert!(matches!(verdict(tables(), h200, 535), Verdict::NotListed(l) if l.len() == 3));
        assert!(matches!(verdict(tables(), h200, 550), Verdict::Listed(_)));
    }
}

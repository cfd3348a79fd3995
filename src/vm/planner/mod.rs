//! The VM plan: a pure function from the inventory's VM, what the host phase verified, and
//! what the API reports, to the steps that make the VM match. Keys pvegpu does not manage
//! are never touched; a key it manages is compared the way PVE normalises it (property
//! strings as sets of key=value, `02:00` as `0000:02:00`, a bare `30720` as `current=30720`).
//!
//! One file per decision. [`plan`] first decides what every step rests on: `refusals` (where
//! the VM goes, which cards, which VM), `devices` (raw `host=` or PCI mappings), `slots`
//! (hostpci placement). Then it walks playbooks/vm.toml, each step's kind planned by its own
//! function: `config` (create, or reconcile key by key, with `keys` saying what pvegpu
//! manages and how PVE stores it), `disk`, `efi` (Microsoft's 2023 UEFI certificates in
//! the EFI disk) and `restart` (what a running VM needs).

mod config;
mod devices;
mod disk;
mod efi;
mod keys;
mod privileges;
mod refusals;
mod restart;
mod slots;

pub use devices::{mapping_entry, mapping_id};
pub use keys::{encode_sshkeys, managed_keys, numbered, same};

use super::playbook::{VM, VmStepKind};
use super::state::{ApiFacts, VmConfig};
use crate::core::plan::Refusal;
use crate::core::playbook::Playbook;
use crate::inventory::vm::ApiSettings;
use crate::inventory::vm::VmSpec;
use serde::Serialize;

/// A card the host phase prepared, as the facts gathered over SSH show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostDevice {
    /// The slot, `0000:02:00`: PVE passes all its functions.
    pub slot: String,
    /// vendor:device of function 0, `10de:1b80`.
    pub id: String,
    pub subsystem: Option<String>,
    pub iommu_group: Option<u32>,
    pub name: String,
    /// Every function of the card is on vfio-pci now.
    pub on_vfio: bool,
}

/// Whether the host phase is done, and the cards it verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostReadiness {
    /// Nothing left to plan on the host and no refusal.
    pub converged: bool,
    /// Why not, in a few words.
    pub pending: Option<String>,
    pub devices: Vec<HostDevice>,
}

/// How devices are written into the VM config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceMethod {
    /// `hostpciN: 0000:02:00`: only root@pam with a ticket may write it.
    Host,
    /// `hostpciN: mapping=ID` through a cluster PCI resource mapping: works with tokens.
    Mapping,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyChange {
    pub key: String,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Takes effect only after a stop and start of a running VM.
    pub disruptive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum VmStep {
    /// `POST /cluster/mapping/pci`.
    CreateMapping {
        id: String,
        map: String,
    },
    /// `PUT /cluster/mapping/pci/{id}`: this node's entry replaced, the others kept. The
    /// digest covers the whole `pci.cfg`, so the executor reads it again just before the
    /// write, and refuses when the mapping is no longer `was`.
    UpdateMapping {
        id: String,
        map: Vec<String>,
        from: String,
        /// The mapping's entries as the plan read them.
        was: Vec<String>,
    },
    /// `POST /nodes/{node}/qemu`.
    CreateVm {
        vmid: u32,
        params: Vec<(String, String)>,
    },
    /// `POST .../config` with the digest read at plan time.
    SetConfig {
        changes: Vec<KeyChange>,
        digest: String,
    },
    /// `PUT .../resize` (grow only).
    ResizeDisk {
        disk: String,
        from: Option<String>,
        to: String,
    },
    /// Microsoft's 2023 UEFI certificates enrolled into efidisk0: `POST .../config` with
    /// the disk's value plus `ms-cert=2023k`, as the Proxmox UI's "Enroll Updated
    /// Certificates" does. The executor reads the config again first and refuses when
    /// efidisk0 is no longer `from`.
    EnrollEfiCerts {
        /// efidisk0 as the plan read it; `None` for the disk this plan's create makes, which
        /// is enrolled only when Proxmox did not mark it 2023k at creation.
        from: Option<String>,
        /// Its `ms-cert` marker (`None`: unset, the 2011 certificates).
        marker: Option<String>,
        /// The VM runs: Proxmox keeps the change pending and enrolls when the restart after
        /// this step stops the VM.
        staged: bool,
    },
    /// Shut down and start: hostpci and other non-hotpluggable changes apply only then.
    Restart {
        keys: Vec<String>,
    },
    Start,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VmPlan {
    pub node: String,
    pub pve_node: String,
    pub name: String,
    pub vmid: Option<u32>,
    pub exists: bool,
    pub running: bool,
    pub method: DeviceMethod,
    pub method_reason: String,
    /// The hostpci entries once converged.
    pub devices: Vec<String>,
    pub steps: Vec<VmStep>,
    pub refusals: Vec<Refusal>,
    pub notes: Vec<String>,
    /// The host phase is not converged: nothing here runs until it is.
    pub waits_for_host: Option<String>,
}

impl VmPlan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Whether applying stops a running VM.
    pub fn disrupts(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, VmStep::Restart { .. }))
    }
}

pub struct Inputs<'a> {
    pub node: &'a str,
    pub spec: &'a VmSpec,
    pub api: &'a ApiSettings,
    pub host: &'a HostReadiness,
    /// The public key(s) for cloud-init, read from `ssh_key_file`.
    pub ssh_key: Option<&'a str>,
    pub facts: &'a ApiFacts,
}

/// The plan under way: refusals and notes in the order the decisions add them, and the
/// mapping steps the cards' entries need, until the playbook's mapping step takes them.
#[derive(Default)]
struct Draft {
    mappings: Vec<VmStep>,
    refusals: Vec<Refusal>,
    notes: Vec<String>,
}

impl Draft {
    fn refuse(&mut self, reason: String, hint: &str) {
        self.refusals.push(Refusal {
            reason,
            hint: hint.to_string(),
        });
    }
    fn note(&mut self, note: String) {
        self.notes.push(note);
    }
}

/// The VM the steps act on.
#[derive(Clone, Copy)]
enum Vm<'a> {
    /// A new VM, to get this id.
    New(u32),
    Existing(&'a VmConfig),
    /// None: the plan is refused (no free id, or a VM whose config could not be read).
    Unplanned,
}

/// What every step is planned from besides the steps before it.
struct Walk<'a> {
    spec: &'a VmSpec,
    facts: &'a ApiFacts,
    ssh_key: Option<&'a str>,
    vm: Vm<'a>,
    running: bool,
    slots: &'a slots::Slots,
}

pub fn plan(i: &Inputs<'_>) -> VmPlan {
    plan_by(&VM, i)
}

/// [`plan`] with the steps in `playbook`'s order.
pub fn plan_by(playbook: &Playbook<VmStepKind>, i: &Inputs<'_>) -> VmPlan {
    let (spec, facts) = (i.spec, i.facts);
    let mut out = Draft::default();
    let (method, method_reason) = devices::method(i.api);
    refusals::node_and_storage(spec, facts, &mut out);
    let wanted = refusals::wanted_cards(spec, i.host, &mut out);
    let waits_for_host = (!i.host.converged).then(|| {
        i.host
            .pending
            .clone()
            .unwrap_or_else(|| "the host phase has changes left".into())
    });
    refusals::off_vfio(i.host, &wanted, &mut out);
    let target = refusals::target(spec, facts, &mut out);
    refusals::held_elsewhere(&wanted, facts, target.ours, &mut out);

    let entries = devices::entries(method, spec, facts, &wanted, &mut out);
    let slots = slots::place(&wanted, &entries, target.current, facts, &mut out);
    let devices = slots
        .placed
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let exists = target.ours.is_some();
    let vm = match (target.current, target.vmid) {
        (None, None) if !exists => {
            out.refuse(
                "no VM id: /cluster/nextid did not answer".into(),
                "set `vmid` in the node's [vm] table",
            );
            Vm::Unplanned
        }
        (None, Some(id)) if !exists => Vm::New(id),
        (None, _) => Vm::Unplanned,
        (Some(cur), _) => Vm::Existing(cur),
    };
    let w = Walk {
        spec,
        facts,
        ssh_key: i.ssh_key,
        vm,
        running: target.running,
        slots: &slots,
    };
    let mut steps = Vec::new();
    for step in &playbook.steps {
        let planned = walk(&step.kind, &w, &steps, &mut out);
        steps.extend(planned);
    }
    if let Some(held) = &facts.permissions {
        privileges::check(&steps, target.vmid, spec, held, &mut out);
    }
    VmPlan {
        node: i.node.to_string(),
        pve_node: facts.node.clone(),
        name: spec.name.clone(),
        vmid: target.vmid,
        exists,
        running: target.running,
        method,
        method_reason: method_reason.to_string(),
        devices,
        // A refused plan carries no steps.
        steps: if out.refusals.is_empty() {
            steps
        } else {
            Vec::new()
        },
        refusals: out.refusals,
        notes: out.notes,
        waits_for_host,
    }
}

/// One step, by its kind.
fn walk(kind: &VmStepKind, w: &Walk, earlier: &[VmStep], out: &mut Draft) -> Vec<VmStep> {
    use VmStepKind as K;
    let step = match kind {
        K::PciMappings {} => return std::mem::take(&mut out.mappings),
        K::CreateVm {} => config::create(w, out),
        K::SetConfig {} => config::reconcile(w, out),
        K::ResizeDisk {} => disk::resize(w, out),
        K::EnrollEfiCerts {} => efi::enroll(w, earlier, out),
        K::Restart {} => restart::restart(w, earlier, out),
        K::Start {} => restart::start(w),
    };
    step.into_iter().collect()
}

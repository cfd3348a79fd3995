//! `verify`'s I/O: gathers each layer over SSH and the Proxmox API, read-only, and hands the
//! answers to the pure checks. A layer that cannot be reached is reported as not checked,
//! and the layers after it too, since nothing beyond it was proven.

use super::collect;
use super::guest::GuestExpect;
use super::report::Report;
use super::vm::ExpectedDevice;
use crate::core::check::{Check, Layer};
use crate::core::error::Hint;
use crate::guest::access::access;
use crate::inventory::{Inventory, Node};
use crate::pci::PciAddress;
use crate::pipeline::{HostSource, Pipeline};
use crate::pve::Api as _;
use crate::pve::Params;
use crate::pve::request::api_path;
use crate::transport::Remote;
use crate::transport::ssh::{GuestKeys, SshRemote};
use crate::vm::VmPlan;
use crate::vm::phase::Phase;
use crate::vm::planner;
use serde_json::Value;
use std::collections::BTreeMap;

/// Every layer the inventory configures for one node. `saved`: the host's facts read from a
/// file (`--facts`) instead of over SSH.
pub async fn verify_node(
    inv: &Inventory,
    name: &str,
    node: &Node,
    saved: Option<crate::host::gather::Gathered>,
) -> Report {
    let mut report = Report::new();
    let pipeline = Pipeline::new(inv, name, node);
    let source = match saved {
        Some(g) => HostSource::Saved(Box::new(g)),
        None => HostSource::Live,
    };
    let gathered = match pipeline.gather_host(source).await {
        Ok(g) => {
            report.extend(super::host::checks(name, node, &g.facts));
            Some(g)
        }
        Err(e) => {
            report.skip_layer(
                Layer::Host,
                format!("cannot read the node: {}", one_line(&e)),
                format!("check that `ssh {}` works from this machine", node.ssh),
            );
            None
        }
    };
    if node.vm.is_none() {
        return report;
    }
    let agent_address = match gathered {
        Some(g) => vm_layer(&pipeline, g, &mut report).await,
        None => {
            report.skip_layer(
                Layer::Vm,
                "the host's facts are needed to know which devices the VM should hold",
                "fix the host layer's connection first",
            );
            None
        }
    };
    guest_layers(inv, name, node, agent_address.as_deref(), &mut report).await;
    report
}

/// The VM layer; returns the address the guest agent reports, for reaching a DHCP guest.
async fn vm_layer(
    pipeline: &Pipeline<'_>,
    gathered: crate::host::gather::Gathered,
    report: &mut Report,
) -> Option<String> {
    let result: anyhow::Result<(Vec<Check>, Option<String>)> = async {
        let host = pipeline.plan_host(gathered)?;
        let phase = pipeline
            .connect_vm(&host)
            .await?
            .ok_or_else(|| anyhow::anyhow!("node {} has no [vm] table", pipeline.name))?;
        let plan = pipeline.plan_vm(&phase, &host).await?;
        vm_checks(pipeline, &phase, &plan).await
    }
    .await;
    match result {
        Ok((checks, address)) => {
            report.extend(checks);
            address
        }
        Err(e) => {
            report.skip_layer(
                Layer::Vm,
                format!("cannot read the VM from the Proxmox API: {}", one_line(&e)),
                "check the node's [api] settings (`pvegpu plan` shows the same error with its fix)",
            );
            None
        }
    }
}

/// The VM as it runs against what its plan wants: two API reads (the running config and the
/// status), then the guest agent's address when it runs.
async fn vm_checks(
    pipeline: &Pipeline<'_>,
    phase: &Phase,
    plan: &VmPlan,
) -> anyhow::Result<(Vec<Check>, Option<String>)> {
    let (name, spec) = (pipeline.name, pipeline.node.vm.as_ref());
    let spec = spec.ok_or_else(|| anyhow::anyhow!("node {name} has no [vm] table"))?;
    let Some(vmid) = plan.vmid.filter(|_| plan.exists) else {
        return Ok((
            vec![Check::fail(
                Layer::Vm,
                "VM exists",
                format!("no VM `{}` on {}", spec.name, plan.pve_node),
                "the VM phase has not run, or the VM was removed",
                format!("`pvegpu apply --node {name}` creates it"),
            )],
            None,
        ));
    };
    let id = vmid.to_string();
    let base = ["nodes", plan.pve_node.as_str(), "qemu", id.as_str()];
    let current: Value = phase
        .client
        .get(
            &api_path(&[&base[..], &["config"]].concat()),
            &Params::new().bool("current", true),
        )
        .await?;
    let status: Value = phase
        .client
        .get(
            &api_path(&[&base[..], &["status", "current"]].concat()),
            &Params::new(),
        )
        .await?;
    let current: BTreeMap<String, String> = current
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| crate::vm::state::text(v).map(|t| (k.clone(), t)))
        .collect();
    // the plan's devices are `hostpciN: value`, slots placed around foreign entries
    let devices: Vec<(String, String)> = plan
        .devices
        .iter()
        .filter_map(|d| d.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let desired: BTreeMap<String, String> = planner::managed_keys(spec, &[], phase.ssh_key())
        .into_iter()
        .chain(devices.iter().cloned())
        .collect();
    let expected = expected_devices(devices.iter().map(|(_, v)| v.as_str()));
    let state = status
        .get("status")
        .and_then(crate::vm::state::text)
        .unwrap_or_default();
    let mut checks = super::vm::checks(vmid, &desired, &current, &state, &expected);
    for r in &plan.refusals {
        checks.push(Check::fail(
            Layer::Vm,
            "VM phase would proceed",
            r.reason.clone(),
            "the VM phase refuses this node as it is now",
            r.hint.clone(),
        ));
    }
    let address = if state == "running" {
        phase
            .client
            .get::<Value>(
                &api_path(&[&base[..], &["agent", "network-get-interfaces"]].concat()),
                &Params::new(),
            )
            .await
            .ok()
            .and_then(|v| crate::vm::exec::agent_ipv4(&v))
    } else {
        None
    };
    Ok((checks, address))
}

/// `hostpciN` values the plan wants, as the devices the VM layer looks for.
fn expected_devices<'a>(entries: impl Iterator<Item = &'a str>) -> Vec<ExpectedDevice> {
    entries
        .filter_map(|e| {
            let first = e.split(',').next().unwrap_or("");
            match first.strip_prefix("mapping=") {
                Some(m) => Some(ExpectedDevice::Mapping(m.to_string())),
                None => first
                    .strip_prefix("host=")
                    .unwrap_or(first)
                    .split(';')
                    .next()
                    .and_then(|a| a.parse::<PciAddress>().ok())
                    .map(ExpectedDevice::Host),
            }
        })
        .collect()
}

async fn guest_layers(
    inv: &Inventory,
    name: &str,
    node: &Node,
    agent_address: Option<&str>,
    report: &mut Report,
) {
    let spec = node.vm.as_ref().and_then(|v| v.guest.as_ref());
    let skip_rest = |report: &mut Report, why: String, fix: String| {
        report.skip_layer(Layer::Guest, why, fix);
        if spec.is_some() {
            report.skip_layer(
                Layer::Runtime,
                "the guest was not reached",
                "fix the guest layer first",
            );
        }
        if spec.is_some_and(|s| s.triton.is_some()) {
            report.skip_layer(
                Layer::Triton,
                "the guest was not reached",
                "fix the guest layer first",
            );
        }
    };
    let target = match access(inv, name, node, agent_address) {
        Ok(t) => t,
        Err(e) => return skip_rest(report, e.to_string(), e.hint().unwrap_or_default()),
    };
    let remote = match SshRemote::connect_guest(
        &target.destination,
        target.ssh_config,
        &GuestKeys::InStateDir,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            let fix = e
                .hint()
                .unwrap_or_else(|| format!("check that `ssh {}` works", target.destination));
            return skip_rest(report, e.to_string(), fix);
        }
    };
    let out = remote.run_script(&collect::probe_script(spec)).await;
    remote.close().await;
    match out {
        Ok(o) => report.extend(collect::checks(&o.stdout, spec, &expect(node))),
        Err(e) => skip_rest(
            report,
            e.to_string(),
            "run `pvegpu verify` again; the connection broke while the probe ran".into(),
        ),
    }
}

/// What the guest should show: one GPU per card the VM receives, with the compute capability
/// the tables give for their ids (when they all agree).
pub fn expect(node: &Node) -> GuestExpect {
    let cards: Vec<&crate::inventory::GpuEntry> =
        match node.vm.as_ref().and_then(|v| v.gpus.as_ref()) {
            Some(list) => node
                .gpus
                .iter()
                .filter(|g| {
                    list.iter()
                        .any(|a| a.covers(&g.address) || g.address.covers(a))
                })
                .collect(),
            None => node.gpus.iter().collect(),
        };
    let t = crate::compat::tables::tables();
    let ccs: std::collections::BTreeSet<String> = cards
        .iter()
        .filter_map(|g| g.id.and_then(|id| t.gpu(id)).and_then(|gpu| gpu.cc))
        .map(|cc| cc.to_string())
        .collect();
    GuestExpect {
        addresses: Vec::new(),
        count: cards.len(),
        compute_cap: if ccs.len() == 1 && cards.iter().all(|g| g.id.is_some()) {
            ccs.into_iter().next()
        } else {
            None
        },
    }
}

fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

//! Reads what the VM planner needs from the API: a fixed handful of calls, plus one config
//! read per other VM on the node (to see which cards they hold).

use super::state::{self, ApiFacts};
use crate::inventory::vm::VmSpec;
use crate::pve::request::api_path;
use crate::pve::{Api, Params, PveError};
use serde_json::Value;

pub async fn gather<A: Api>(
    client: &A,
    pve_node: &str,
    spec: &VmSpec,
) -> Result<ApiFacts, PveError> {
    let none = Params::new();
    let version: Value = client.get("/version", &none).await?;
    let nodes = state::parse_nodes(&client.get("/nodes", &none).await?);
    let mut facts = ApiFacts {
        version: state::text(version.get("version").unwrap_or(&Value::Null)).unwrap_or_default(),
        node: pve_node.to_string(),
        nodes,
        ..Default::default()
    };
    if !facts.nodes.iter().any(|n| n == pve_node) {
        return Ok(facts);
    }
    facts.storages = state::parse_storages(
        &client
            .get(&api_path(&["nodes", pve_node, "storage"]), &none)
            .await?,
    );
    facts.vms = state::parse_resources(
        &client
            .get("/cluster/resources", &Params::new().str("type", "vm"))
            .await?,
    );
    facts.mappings = state::parse_mappings(&client.get("/cluster/mapping/pci", &none).await?);
    // The caller's own privileges: any user or token may read them.
    facts.permissions = Some(state::Permissions::parse(
        &client.get("/access/permissions", &none).await?,
    ));

    let target = target(&facts, pve_node, spec);
    read_configs(client, pve_node, target, &mut facts).await?;
    if target.is_none() {
        if spec.vmid.is_none() {
            let id: Value = client.get("/cluster/nextid", &none).await?;
            facts.next_vmid = state::text(&id).and_then(|s| s.parse().ok());
        }
        if let Some((storage, _)) = spec.disk.image.as_deref().and_then(|i| i.split_once(':')) {
            facts.image_volumes = Some(state::parse_volumes(
                &client
                    .get(
                        &api_path(&["nodes", pve_node, "storage", storage, "content"]),
                        &Params::new().str("content", "import"),
                    )
                    .await?,
            ));
        }
    }
    Ok(facts)
}

/// The VM on this node whose config the planner compares: by id, else the one by its name.
fn target(facts: &ApiFacts, pve_node: &str, spec: &VmSpec) -> Option<u32> {
    let on_node = facts.vms.iter().filter(|v| v.node == pve_node);
    match spec.vmid {
        Some(id) => on_node.clone().find(|v| v.vmid == id).map(|v| v.vmid),
        None => {
            let named: Vec<_> = on_node
                .filter(|v| v.name == spec.name && !v.template)
                .collect();
            match named.as_slice() {
                [one] => Some(one.vmid),
                _ => None,
            }
        }
    }
}

/// The target's config (and its pending changes when it runs); the hostpci entries of the
/// other VMs on the node.
async fn read_configs<A: Api>(
    client: &A,
    pve_node: &str,
    target: Option<u32>,
    facts: &mut ApiFacts,
) -> Result<(), PveError> {
    let none = Params::new();
    for vm in facts.vms.clone().iter().filter(|v| v.node == pve_node) {
        let vmid = vm.vmid.to_string();
        let path = |tail: &str| api_path(&["nodes", pve_node, "qemu", &vmid, tail]);
        let config: Value = client.get(&path("config"), &none).await?;
        if target == Some(vm.vmid) {
            let pending: Option<Value> = if vm.running {
                Some(client.get(&path("pending"), &none).await?)
            } else {
                None
            };
            facts.vm = Some(state::parse_config(vm.vmid, &config, pending.as_ref()));
        } else {
            let c = state::parse_config(vm.vmid, &config, None);
            for (k, v) in c.config.iter().filter(|(k, _)| k.starts_with("hostpci")) {
                facts
                    .other_hostpci
                    .push((vm.vmid, vm.name.clone(), k.clone(), v.clone()));
            }
        }
    }
    Ok(())
}

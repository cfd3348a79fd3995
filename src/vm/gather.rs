//! Reads what the VM planner needs from the API: a fixed handful of calls, plus one config
//! read per other VM on the node (to see which cards they hold).

use super::spec::VmSpec;
use super::state::{self, ApiFacts};
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

    let target = match spec.vmid {
        Some(id) => facts
            .vms
            .iter()
            .find(|v| v.vmid == id && v.node == pve_node),
        None => {
            let named: Vec<_> = facts
                .vms
                .iter()
                .filter(|v| v.name == spec.name && v.node == pve_node && !v.template)
                .collect();
            if named.len() == 1 {
                Some(named[0])
            } else {
                None
            }
        }
    }
    .cloned();
    for vm in facts.vms.clone().iter().filter(|v| v.node == pve_node) {
        let vmid = vm.vmid.to_string();
        let config: Value = client
            .get(
                &api_path(&["nodes", pve_node, "qemu", &vmid, "config"]),
                &none,
            )
            .await?;
        if target.as_ref().is_some_and(|t| t.vmid == vm.vmid) {
            let pending: Option<Value> = if vm.running {
                Some(
                    client
                        .get(
                            &api_path(&["nodes", pve_node, "qemu", &vmid, "pending"]),
                            &none,
                        )
                        .await?,
                )
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

//! How pvegpu reaches a guest's shell: the SSH destination the inventory names, or the one
//! its VM's cloud-init settings imply.

use crate::inventory::{Inventory, Node};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestAccess {
    pub destination: String,
    pub ssh_config: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("{inventory}: node `{node}`: {message}")]
pub struct AccessError {
    pub inventory: PathBuf,
    pub node: String,
    pub message: String,
}

impl crate::core::error::Hint for AccessError {
    fn hint(&self) -> Option<String> {
        Some("set `ssh = \"USER@ADDRESS\"` under [nodes.NAME.vm.guest], or give [nodes.NAME.vm.cloud_init] a `user` and a static `ip`".into())
    }
}

/// `agent_address` is what the guest agent reported (used when cloud-init asks for DHCP).
pub fn access(
    inv: &Inventory,
    name: &str,
    node: &Node,
    agent_address: Option<&str>,
) -> Result<GuestAccess, AccessError> {
    let err = |message: String| AccessError {
        inventory: inv.path.clone(),
        node: name.to_string(),
        message,
    };
    let vm = node
        .vm
        .as_ref()
        .ok_or_else(|| err("has no [vm] table, so there is no guest to reach".into()))?;
    let guest = vm.guest.as_ref();
    let ssh_config = guest
        .and_then(|g| g.ssh_config.as_ref())
        .or(node.ssh_config.as_ref())
        .cloned();
    if let Some(d) = guest.and_then(|g| g.ssh.clone()) {
        return Ok(GuestAccess {
            destination: d,
            ssh_config,
        });
    }
    let ci = vm.cloud_init.as_ref().ok_or_else(|| {
        err(
            "the guest's SSH destination is unknown: no [vm.guest] ssh and no [vm.cloud_init]"
                .into(),
        )
    })?;
    let address = match ci.ip.split('/').next().unwrap_or("") {
        "" | "dhcp" => agent_address.map(str::to_string).ok_or_else(|| {
            err("the guest takes its address by DHCP and the guest agent reported none".into())
        })?,
        a => a.to_string(),
    };
    Ok(GuestAccess {
        destination: format!("{}@{}", ci.user, address),
        ssh_config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(text: &str) -> Inventory {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("inv.toml");
        std::fs::write(&p, text).unwrap();
        let inv = Inventory::load(&p).unwrap();
        std::mem::forget(dir);
        inv
    }

    const BASE: &str = "[nodes.a]\nssh = \"root@a\"\nssh_config = \"cfg\"\n[[nodes.a.gpus]]\naddress = \"0000:02:00\"\n[nodes.a.api]\nurl = \"https://a:8006\"\ntoken = \"root@pam!t\"\n[nodes.a.vm]\nvmid = 201\nname = \"t\"\nmemory_mib = 1024\ncores = 1\n[nodes.a.vm.disk]\nstorage = \"local\"\nsize_gb = 10\n";

    #[test]
    fn from_cloud_init_then_explicit() {
        let i = inv(&format!(
            "{BASE}[nodes.a.vm.cloud_init]\nuser = \"raphael\"\nip = \"10.3.0.201/8\"\n"
        ));
        let a = access(&i, "a", &i.nodes["a"], None).unwrap();
        assert_eq!(a.destination, "raphael@10.3.0.201");
        // the node's ssh_config, as the inventory resolved it at load
        assert_eq!(a.ssh_config, i.nodes["a"].ssh_config);
        assert!(
            a.ssh_config
                .as_ref()
                .is_some_and(|p| p.is_absolute() && p.ends_with("cfg"))
        );

        let i = inv(&format!(
            "{BASE}[nodes.a.vm.cloud_init]\nuser = \"u\"\nip = \"dhcp\"\n[nodes.a.vm.guest]\nssh = \"gpu-vm\"\n"
        ));
        assert_eq!(
            access(&i, "a", &i.nodes["a"], None).unwrap().destination,
            "gpu-vm"
        );
    }

    #[test]
    fn dhcp_needs_the_agent() {
        let i = inv(&format!(
            "{BASE}[nodes.a.vm.cloud_init]\nuser = \"u\"\nip = \"dhcp\"\n"
        ));
        let e = access(&i, "a", &i.nodes["a"], None).unwrap_err();
        assert!(e.message.contains("DHCP"), "{e}");
        let a = access(&i, "a", &i.nodes["a"], Some("192.0.2.7")).unwrap();
        assert_eq!(a.destination, "u@192.0.2.7");
        let i = inv(BASE);
        assert!(access(&i, "a", &i.nodes["a"], None).is_err());
    }
}

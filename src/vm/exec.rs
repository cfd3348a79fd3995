//! Runs a VM plan through the API, one step at a time, waiting for each task. A create that
//! fails is cleaned up (the half-made VM destroyed) or reported with the state it left.

use super::planner::{VmPlan, VmStep};
use crate::core::progress::Progress;
use crate::inventory::vm::VmSpec;
use crate::pve::request::api_path;
use crate::pve::{Api, ApiRequest, Params, PveError, Upid, WaitOptions};
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{step}; {state}")]
    Step {
        step: String,
        #[source]
        source: PveError,
        /// What the VM looks like now, for the user to act on.
        state: String,
        hint: Option<String>,
    },
    #[error("VM {vmid} started but was not reachable within {waited} s ({last})")]
    Unreachable {
        vmid: u32,
        waited: u64,
        last: String,
        hint: String,
    },
    #[error("refusing to start VM {vmid}: {why}")]
    HostNotReady { vmid: u32, why: String },
    #[error("PCI mapping {id} changed since the plan read it; nothing was written")]
    MappingChanged { id: String },
    #[error(
        "efidisk0 of VM {vmid} changed since the plan read it (now: {now}); its certificates were not touched"
    )]
    EfiDiskChanged { vmid: u32, now: String },
}

impl crate::core::error::Hint for ExecError {
    fn hint(&self) -> Option<String> {
        match self {
            ExecError::Step { hint, source, .. } => hint.clone().or_else(|| crate::core::error::Hint::hint(source)),
            ExecError::Unreachable { hint, .. } => Some(hint.clone()),
            ExecError::HostNotReady { .. } => Some("run `pvegpu apply` for the host and `pvegpu verify` until the host layer passes".into()),
            ExecError::MappingChanged { .. } => Some("someone edited the mapping during the apply: run `pvegpu plan` to see it as it is now, then apply again".into()),
            ExecError::EfiDiskChanged { .. } => Some("someone changed the EFI disk during the apply: run `pvegpu plan` to see it as it is now, then apply again".into()),
        }
    }
}

pub struct VmExecutor<'a, A: Api, P: Progress> {
    pub client: &'a A,
    pub progress: &'a P,
    pub wait: WaitOptions,
}

fn step_error(step: &str, source: PveError, state: String) -> ExecError {
    let hint = match &source {
        PveError::Permission { message, .. } if message.contains("Mapping") => Some(
            "the API token lacks a PCI mapping privilege: grant it Mapping.Modify on /mapping/pci (to create) and Mapping.Use on /mapping/pci/ID (Datacenter > Permissions > Add > API Token Permission), or create the mapping yourself, or use `user = \"root@pam\"` to pass raw devices".to_string(),
        ),
        e if e.to_string().contains("already exists") => Some(
            "the VM id was taken after the plan read the cluster: run `pvegpu plan` again, or set another `vmid` in the [vm] table".to_string(),
        ),
        // A POST answers it before any task starts (`$load_and_check_config`).
        e if e.to_string().contains("checksum mismatch") => Some(
            "someone changed the VM config since pvegpu read it; nothing was overwritten: run `pvegpu plan` to see the new state and apply again".to_string(),
        ),
        _ => None,
    };
    ExecError::Step {
        step: step.to_string(),
        source,
        state,
        hint,
    }
}

impl<'a, A: Api, P: Progress> VmExecutor<'a, A, P> {
    pub fn new(client: &'a A, progress: &'a P) -> Self {
        Self {
            client,
            progress,
            wait: WaitOptions::default(),
        }
    }

    /// Waits for the UPID an async call returned (`null` means it finished already), telling
    /// `watch` the newest line of its log.
    async fn finish(
        &self,
        reply: Value,
        watch: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<(), PveError> {
        if let Value::String(s) = reply
            && let Ok(upid) = s.parse::<Upid>()
        {
            self.client.wait_task(&upid, &self.wait, watch).await?;
        }
        Ok(())
    }

    async fn call(
        &self,
        req: ApiRequest,
        watch: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<(), PveError> {
        let reply: Value = self.client.call(&req).await?;
        self.finish(reply, watch).await
    }

    /// Says `doing` (with `detail`), sends `req` and waits for its task; a failure is
    /// "`doing` failed" with the state it leaves.
    async fn send(
        &self,
        doing: &str,
        detail: &str,
        req: ApiRequest,
        state: impl FnOnce() -> String,
    ) -> Result<(), ExecError> {
        let task = self.progress.begin(&format!("  {doing}{detail}"));
        let watch = task.watcher();
        let result = self.call(req, &watch).await;
        task.done(result.is_ok());
        result.map_err(|e| step_error(&format!("{doing} failed"), e, state()))
    }

    /// Runs the steps; the address the VM answered on when it was started.
    pub async fn execute(
        &self,
        plan: &VmPlan,
        spec: &VmSpec,
        host_ready: Result<(), String>,
    ) -> Result<Option<String>, ExecError> {
        let mut vmid = plan.vmid.unwrap_or(0);
        for step in &plan.steps {
            if let VmStep::CreateVm { vmid: id, .. } = step {
                vmid = *id;
            }
            if matches!(step, VmStep::Start | VmStep::Restart { .. }) {
                host_ready
                    .clone()
                    .map_err(|why| ExecError::HostNotReady { vmid, why })?;
            }
            self.run(plan, vmid, step).await?;
        }
        if plan
            .steps
            .iter()
            .any(|s| matches!(s, VmStep::Start | VmStep::Restart { .. }))
        {
            return Ok(Some(self.wait_reachable(&plan.pve_node, vmid, spec).await?));
        }
        Ok(None)
    }

    async fn run(&self, plan: &VmPlan, vmid: u32, step: &VmStep) -> Result<(), ExecError> {
        let node = plan.pve_node.as_str();
        let vm = vmid.to_string();
        let vm_path = |tail: &[&str]| api_path(&[&["nodes", node, "qemu", &vm][..], tail].concat());
        let unchanged = || "no VM was created or changed".to_string();
        match step {
            VmStep::CreateMapping { id, map } => {
                let path = map
                    .split(',')
                    .find(|p| p.starts_with("path="))
                    .unwrap_or("");
                let params = Params::new().str("id", id).list("map", [map.clone()]).str(
                    "description",
                    format!("pvegpu: {path} for VM {}", plan.name),
                );
                let req = ApiRequest::post("/cluster/mapping/pci", &params);
                self.send(&format!("creating PCI mapping {id}"), "", req, unchanged)
                    .await
            }
            VmStep::UpdateMapping { id, map, was, .. } => {
                let digest = self.mapping_digest(id, was).await?;
                let params = Params::new()
                    .list("map", map.clone())
                    .opt_str("digest", digest);
                let req = ApiRequest::put(api_path(&["cluster", "mapping", "pci", id]), &params);
                self.send(&format!("updating PCI mapping {id}"), "", req, unchanged)
                    .await
            }
            VmStep::CreateVm { params, .. } => {
                let task = self
                    .progress
                    .begin(&format!("  creating VM {vmid} `{}`", plan.name));
                let mut p = Params::new().int("vmid", i64::from(vmid));
                for (k, v) in params {
                    p = p.str(k, v);
                }
                let req = ApiRequest::post(api_path(&["nodes", node, "qemu"]), &p);
                // Refused before its task started (the id taken meanwhile, a privilege):
                // nothing of this run exists, and whatever has the id is not touched.
                let reply: Value = self.client.call(&req).await.map_err(|e| {
                    step_error(
                        &format!("creating VM {vmid} failed"),
                        e,
                        "Proxmox refused before creating anything; no VM was created or changed by pvegpu".into(),
                    )
                })?;
                let watch = task.watcher();
                let waited = self.finish(reply, &watch).await;
                task.done(waited.is_ok());
                if let Err(e) = waited {
                    let state = self.clean_up_create(node, vmid, &plan.name).await;
                    return Err(step_error(&format!("creating VM {vmid} failed"), e, state));
                }
                Ok(())
            }
            VmStep::SetConfig { changes, digest } => {
                let mut p = Params::new().str("digest", digest);
                let mut delete = Vec::new();
                for c in changes {
                    match &c.to {
                        Some(v) => p = p.str(&c.key, v),
                        None => delete.push(c.key.clone()),
                    }
                }
                if !delete.is_empty() {
                    p = p.str("delete", delete.join(","));
                }
                let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
                let req = ApiRequest::post(vm_path(&["config"]), &p);
                self.send(
                    &format!("updating the config of VM {vmid}"),
                    &format!(": {}", keys.join(", ")),
                    req,
                    || format!("VM {vmid} keeps its previous config"),
                )
                .await
            }
            VmStep::ResizeDisk { disk, to, .. } => {
                let params = Params::new().str("disk", disk).str("size", to);
                let req = ApiRequest::put(vm_path(&["resize"]), &params);
                self.send(
                    &format!("growing {disk} of VM {vmid}"),
                    &format!(" to {to}"),
                    req,
                    || format!("VM {vmid} exists with its disk at the previous size; `pvegpu apply` retries the resize"),
                )
                .await
            }
            VmStep::Restart { keys } => {
                let params = Params::new().int("timeout", 180).bool("forceStop", true);
                let req = ApiRequest::post(vm_path(&["status", "shutdown"]), &params);
                self.send(
                    &format!("shutting VM {vmid} down"),
                    &format!(" to apply {}", keys.join(", ")),
                    req,
                    || format!("VM {vmid} may still be running with its pending changes"),
                )
                .await?;
                self.start(node, vmid).await
            }
            VmStep::Start => self.start(node, vmid).await,
            VmStep::EnrollEfiCerts { from, .. } => {
                self.enroll_efi(node, vmid, from.as_deref()).await
            }
        }
    }

    /// efidisk0 written again with `ms-cert=2023k`, as the Proxmox UI's "Enroll Updated
    /// Certificates" does: qemu-server enrolls the certificates when it applies the change
    /// (at once on a stopped VM, when a running one stops). The config is read again first:
    /// the disk must still be what the plan saw (for a disk this run created, one Proxmox
    /// did not mark already), and the update carries that read's digest.
    async fn enroll_efi(&self, node: &str, vmid: u32, from: Option<&str>) -> Result<(), ExecError> {
        use super::efi::{CertState, cert_state, with_enrolled_marker};
        let path = api_path(&["nodes", node, "qemu", &vmid.to_string(), "config"]);
        let now: Value = self.client.get(&path, &Params::new()).await.map_err(|e| {
            step_error(
                &format!("reading the config of VM {vmid} failed"),
                e,
                format!("VM {vmid}'s EFI disk was not changed"),
            )
        })?;
        let cur = super::state::parse_config(vmid, &now, None);
        let disk = cur.config.get("efidisk0");
        let changed = || ExecError::EfiDiskChanged {
            vmid,
            now: disk.cloned().unwrap_or_else(|| "none".into()),
        };
        let Some(disk) = disk else {
            return Err(changed());
        };
        match (from, cert_state(&cur.config)) {
            (Some(from), CertState::Missing { .. }) if from == disk.as_str() => {}
            (None, CertState::Missing { .. }) => {}
            (None, CertState::Enrolled) => {
                self.progress.say(&format!(
                    "  VM {vmid}: efidisk0 was created with the 2023 Microsoft UEFI CA (ms-cert=2023k); nothing to enroll"
                ));
                return Ok(());
            }
            _ => return Err(changed()),
        }
        let params = Params::new()
            .str("efidisk0", with_enrolled_marker(disk))
            .str("digest", &cur.digest);
        let req = ApiRequest::post(path, &params);
        self.send(
            &format!("enrolling the 2023 Microsoft UEFI CA into efidisk0 of VM {vmid}"),
            "",
            req,
            || format!("VM {vmid}'s EFI disk keeps its previous certificates"),
        )
        .await
    }

    async fn start(&self, node: &str, vmid: u32) -> Result<(), ExecError> {
        let req = ApiRequest::post(
            api_path(&["nodes", node, "qemu", &vmid.to_string(), "status", "start"]),
            &Params::new(),
        );
        self.send(&format!("starting VM {vmid}"), "", req, || {
            format!("VM {vmid} is configured but stopped")
        })
        .await
    }

    /// The digest of `pci.cfg` as it is now, when mapping `id` still has the entries the plan
    /// read (any write to any mapping changes the digest, pvegpu's own earlier ones too).
    async fn mapping_digest(&self, id: &str, was: &[String]) -> Result<Option<String>, ExecError> {
        let path = api_path(&["cluster", "mapping", "pci", id]);
        let now: Value = self.client.get(&path, &Params::new()).await.map_err(|e| {
            step_error(
                &format!("reading PCI mapping {id} failed"),
                e,
                "no VM was created or changed".into(),
            )
        })?;
        if super::state::parse_map(&now) != was {
            return Err(ExecError::MappingChanged { id: id.to_string() });
        }
        Ok(now.get("digest").and_then(super::state::text))
    }

    /// After the create task failed: Proxmox removes the config a failed create wrote
    /// (qemu-server `create_vm`), so normally nothing is left. A VM still there is removed
    /// only while it carries the `create` lock and this run's name: the id was this run's.
    async fn clean_up_create(&self, node: &str, vmid: u32, name: &str) -> String {
        let cfg: Result<Value, _> = self
            .client
            .get(
                &api_path(&["nodes", node, "qemu", &vmid.to_string(), "config"]),
                &Params::new(),
            )
            .await;
        let Ok(cfg) = cfg else {
            return format!(
                "Proxmox removed what the failed create had made; no VM {vmid} is left"
            );
        };
        let field = |k: &str| cfg.get(k).and_then(super::state::text);
        if field("lock").as_deref() != Some("create") || field("name").as_deref() != Some(name) {
            return format!(
                "a VM {vmid} exists that pvegpu does not recognise as the one it tried to create; it was left alone"
            );
        }
        self.progress
            .say(&format!("  removing the half-created VM {vmid}"));
        // Only root@pam may skip the `create` lock.
        let root = matches!(self.client.credentials(), Some(crate::pve::Credentials::Ticket(t)) if t.username == "root@pam");
        let mut p = Params::new()
            .bool("purge", true)
            .bool("destroy-unreferenced-disks", true);
        if root {
            p = p.bool("skiplock", true);
        }
        let req = ApiRequest::delete(api_path(&["nodes", node, "qemu", &vmid.to_string()]), &p);
        match self.call(req, &|_| {}).await {
            Ok(()) => format!("the half-created VM {vmid} was removed"),
            Err(e) => format!(
                "VM {vmid} was left half-created and could not be removed ({e}); remove it with `qm destroy {vmid} --purge --skiplock` on the node"
            ),
        }
    }

    /// Until the guest agent reports an address or the SSH port answers.
    async fn wait_reachable(
        &self,
        node: &str,
        vmid: u32,
        spec: &VmSpec,
    ) -> Result<String, ExecError> {
        let started = tokio::time::Instant::now();
        let deadline = started + Duration::from_secs(spec.reach_timeout);
        let fallback = ssh_fallback(spec);
        let mut last;
        let mut agent_down = false;
        let mut said = tokio::time::Instant::now();
        // dropped on a timeout, which closes it as not done
        let task = self.progress.begin(&format!(
            "  VM {vmid}: waiting for its guest agent{} (up to {} s)",
            if fallback.is_some() { " or SSH" } else { "" },
            spec.reach_timeout
        ));
        let agent_path = api_path(&[
            "nodes",
            node,
            "qemu",
            &vmid.to_string(),
            "agent",
            "network-get-interfaces",
        ]);
        loop {
            let agent: Result<Value, PveError> = self.client.get(&agent_path, &Params::new()).await;
            match agent {
                Ok(v) => {
                    if let Some(ip) = agent_ipv4(&v) {
                        task.done(true);
                        self.progress
                            .say(&format!("  VM {vmid} is up: the guest agent reports {ip}"));
                        return Ok(ip);
                    }
                    last = "the guest agent answers without an IPv4 address".into();
                }
                Err(e) => {
                    // `QEMU guest agent is not running`: no agent in the image, or not yet up.
                    agent_down = e.to_string().contains("guest agent");
                    last = format!("guest agent: {e}");
                }
            }
            if let Some(host) = &fallback {
                let conn = tokio::time::timeout(
                    Duration::from_secs(3),
                    tokio::net::TcpStream::connect((host.as_str(), 22)),
                )
                .await;
                if let Ok(Ok(_)) = conn {
                    task.done(true);
                    self.progress
                        .say(&format!("  VM {vmid} is up: SSH answers on {host}"));
                    return Ok(host.clone());
                }
                last = format!("{last}; SSH on {host}:22 does not answer");
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(ExecError::Unreachable {
                    vmid,
                    waited: spec.reach_timeout,
                    last,
                    hint: unreachable_hint(agent_down, fallback.is_some()),
                });
            }
            if now - said >= Duration::from_secs(15) {
                self.progress.say(&format!(
                    "  waiting for VM {vmid} ({} s): {last}",
                    (now - started).as_secs()
                ));
                said = now;
            }
            tokio::time::sleep(Duration::from_secs(2).min(deadline - now)).await;
        }
    }
}

/// Where SSH can be tried besides the agent: cloud-init's static address, else the host
/// of `[vm.guest] ssh` (`user@host`).
fn ssh_fallback(spec: &VmSpec) -> Option<String> {
    let static_ip = spec
        .cloud_init
        .as_ref()
        .filter(|c| c.ip != "dhcp")
        .map(|c| c.ip.split('/').next().unwrap_or("").to_string());
    static_ip.or_else(|| {
        let dest = spec.guest.as_ref()?.ssh.as_deref()?;
        let host = dest.rsplit_once('@').map_or(dest, |(_, h)| h);
        (!host.is_empty()).then(|| host.to_string())
    })
}

/// What to do when the VM never answered: with DHCP and no agent, nothing can tell pvegpu
/// the address.
fn unreachable_hint(agent_down: bool, has_fallback: bool) -> String {
    match (agent_down, has_fallback) {
        (true, false) => "the guest agent did not answer, and with `ip = \"dhcp\"` it is the only way pvegpu learns the VM's address: use an image with qemu-guest-agent installed and enabled (`virt-customize -a IMAGE --install qemu-guest-agent`), or set a static `ip` in [vm.cloud_init], or set `ssh` in [vm.guest]".into(),
        (true, true) => "neither the guest agent nor SSH answered: check the VM console in the Proxmox GUI (cloud-init network settings), and that the address is reachable from this workstation".into(),
        _ => "check the VM console in the Proxmox GUI: cloud-init network settings, or the guest agent (install qemu-guest-agent in the guest)".into(),
    }
}

/// The first non-loopback IPv4 in a `network-get-interfaces` reply (`{"result": [...]}`).
pub fn agent_ipv4(v: &Value) -> Option<String> {
    let list = v.get("result").unwrap_or(v).as_array()?;
    list.iter()
        .flat_map(|i| {
            i.get("ip-addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter(|a| a.get("ip-address-type").and_then(Value::as_str) == Some("ipv4"))
        .filter_map(|a| a.get("ip-address").and_then(Value::as_str))
        // The guest reports this: only an IPv4 address is taken, never a name.
        .filter_map(|ip| ip.parse::<std::net::Ipv4Addr>().ok())
        .find(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .map(|ip| ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn agent_reply_gives_the_first_real_ipv4() {
        let v = json!({"result": [
            {"name": "lo", "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]},
            {"name": "eth0", "hardware-address": "bc:24:11:00:00:01", "ip-addresses": [
                {"ip-address": "fe80::1", "ip-address-type": "ipv6", "prefix": 64},
                {"ip-address": "10.3.0.201", "ip-address-type": "ipv4", "prefix": 8}]}
        ]});
        assert_eq!(agent_ipv4(&v).as_deref(), Some("10.3.0.201"));
        assert_eq!(agent_ipv4(&json!({"result": []})), None);
        let named = json!({"result": [{"name": "eth0", "ip-addresses": [
            {"ip-address": "pve-node.example", "ip-address-type": "ipv4", "prefix": 8}]}]});
        assert_eq!(
            agent_ipv4(&named),
            None,
            "a name from the guest is not an address"
        );
    }
}

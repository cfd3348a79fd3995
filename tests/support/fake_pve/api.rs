//! Handlers: what each route does to the [`FakeCluster`], with PVE's messages.

use super::perms::{self, require, require_any};
use super::schema::{Params, scalar_text, split_list};
use super::state::{
    Effect, FakeCluster, PciMapping, Principal, Ticket, Vm, apply_config, parse_property_string,
    print_drive, sha1_hex,
};
use super::{ApiError, ApiResult, parse_upid};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Parameters that steer a handler and are never VM options.
const CONFIG_CONTROL: &[&str] = &[
    "node",
    "vmid",
    "digest",
    "delete",
    "revert",
    "skiplock",
    "background_delay",
    "force",
];
const CREATE_CONTROL: &[&str] = &[
    "node",
    "vmid",
    "start",
    "archive",
    "storage",
    "force",
    "unique",
    "pool",
    "live-restore",
    "bwlimit",
];

fn s(params: &Params, k: &str) -> Option<String> {
    params.get(k).map(scalar_text)
}

fn flag(params: &Params, k: &str) -> bool {
    s(params, k).is_some_and(|v| v == "1")
}

pub fn dispatch(
    st: &mut FakeCluster,
    method: &str,
    route: &str,
    who: Option<&Principal>,
    p: &Params,
) -> ApiResult {
    if route == "/access/ticket" {
        return if method == "GET" {
            Ok(Value::Null)
        } else {
            ticket(st, p)
        };
    }
    let who = who.expect("authenticated");
    if let Some(node) = s(p, "node")
        && !st.nodes.contains_key(&node)
    {
        return Err(ApiError::new(
            596,
            format!("no such cluster node '{node}'\n"),
        ));
    }
    match (method, route) {
        ("GET", "/version") => Ok(json!({
            "version": st.version, "release": st.release, "repoid": "0123abcd4567ef89",
        })),
        ("GET", "/nodes") => Ok(st
            .nodes
            .values()
            .map(|n| {
                json!({
                    "node": n.name, "status": if n.online { "online" } else { "offline" },
                    "cpu": 0.01, "maxcpu": 32, "mem": 8_589_934_592u64,
                    "maxmem": 137_438_953_472u64, "uptime": 86400, "level": "",
                    "ssl_fingerprint": st.ssl_fingerprint, "id": format!("node/{}", n.name),
                    "type": "node",
                })
            })
            .collect()),
        ("GET", "/nodes/{node}/hardware/pci") => pci_list(st, who, p),
        ("GET", "/cluster/mapping/pci") => Ok(mapping_list(st, who)),
        ("POST", "/cluster/mapping/pci") => mapping_create(st, who, p),
        ("GET", "/cluster/mapping/pci/{id}") => {
            let id = s(p, "id").unwrap_or_default();
            require_any(
                st,
                who,
                &format!("/mapping/pci/{id}"),
                &["Mapping.Use", "Mapping.Modify", "Mapping.Audit"],
            )?;
            let m = st
                .mappings
                .get(&id)
                .ok_or_else(|| ApiError::die(format!("mapping '{id}' not found\n")))?;
            // `get` answers the entry and the file's digest, without an `id` key.
            let mut v = mapping_json(&id, m);
            v.as_object_mut().unwrap().remove("id");
            v["type"] = json!("pci");
            v["digest"] = json!(st.mappings_digest());
            Ok(v)
        }
        ("PUT", "/cluster/mapping/pci/{id}") => mapping_update(st, who, p),
        ("GET", "/access/permissions") => perms::permissions(st, who, s(p, "userid"), s(p, "path")),
        ("DELETE", "/cluster/mapping/pci/{id}") => {
            require(st, who, "/mapping/pci", "Mapping.Modify")?;
            let id = s(p, "id").unwrap_or_default();
            st.mappings.remove(&id);
            Ok(Value::Null)
        }
        ("GET", "/cluster/nextid") => match s(p, "vmid") {
            Some(v) => {
                let id: u32 = v.trim_start_matches('+').parse().unwrap_or(0);
                if st.vms.contains_key(&id) {
                    Err(ApiError::param("vmid", format!("VM {id} already exists\n")))
                } else {
                    Ok(json!(id.to_string()))
                }
            }
            None => Ok(json!(st.next_vmid().to_string())),
        },
        ("POST", "/nodes/{node}/qemu") => create_vm(st, who, p),
        ("GET", "/cluster/resources") => {
            let want = s(p, "type");
            let mut out = Vec::new();
            if want.is_none() || want.as_deref() == Some("vm") {
                for (vmid, vm) in &st.vms {
                    if !st.has_priv(who, &format!("/vms/{vmid}"), "VM.Audit") {
                        continue;
                    }
                    let c = vm.merged();
                    out.push(json!({
                        "id": format!("qemu/{vmid}"), "type": "qemu", "vmid": vmid,
                        "node": vm.node, "name": c.get("name").cloned().unwrap_or_else(|| format!("VM {vmid}")),
                        "status": if vm.running { "running" } else { "stopped" },
                        "template": 0, "maxmem": 0, "maxcpu": 1, "uptime": 0,
                    }));
                }
            }
            Ok(Value::Array(out))
        }
        ("GET", "/nodes/{node}/storage") => {
            let node = &st.nodes[&s(p, "node").unwrap()];
            Ok(node
                .storages
                .iter()
                .map(|name| {
                    json!({
                        "storage": name, "type": if name == "nvme-zfs" { "zfspool" } else if name == "local" { "dir" } else { "lvmthin" },
                        "content": node.content.get(name).cloned().unwrap_or_else(|| "images".into()),
                        "active": 1, "enabled": 1, "shared": 0,
                        "total": 1_000_000_000_000u64, "used": 1_000_000_000u64, "avail": 999_000_000_000u64,
                    })
                })
                .collect())
        }
        ("GET", "/nodes/{node}/storage/{storage}/content") => {
            let node = &st.nodes[&s(p, "node").unwrap()];
            let storage = s(p, "storage").unwrap();
            if !node.storages.contains(&storage) {
                return Err(ApiError::die(format!(
                    "storage '{storage}' does not exist\n"
                )));
            }
            let content = s(p, "content");
            let mut out: Vec<Value> = node
                .import_volumes
                .iter()
                .filter(|v| v.starts_with(&format!("{storage}:")))
                .filter(|_| content.is_none() || content.as_deref() == Some("import"))
                .map(|v| json!({"volid": v, "content": "import", "format": "qcow2", "size": 3_221_225_472u64}))
                .collect();
            if content.is_none() || content.as_deref() == Some("images") {
                for (vmid, vm) in &st.vms {
                    for v in vm.config.values() {
                        if let Some(vol) = v
                            .split(',')
                            .next()
                            .filter(|f| f.starts_with(&format!("{storage}:vm-{vmid}-")))
                        {
                            out.push(json!({"volid": vol, "content": "images", "vmid": vmid, "format": "raw", "size": 0}));
                        }
                    }
                }
            }
            Ok(Value::Array(out))
        }
        ("DELETE", "/nodes/{node}/qemu/{vmid}") => {
            let node = s(p, "node").unwrap();
            let vmid = vmid_of(p);
            require(st, who, &format!("/vms/{vmid}"), "VM.Allocate")?;
            if p.contains_key("skiplock") && !who.is_root_ticket() {
                return Err(ApiError::param(
                    "skiplock",
                    "Only root may use this option.",
                ));
            }
            let vm = vm_of(st, p)?;
            if vm.running {
                return Err(ApiError::die(format!(
                    "VM {vmid} is running - destroy failed\n"
                )));
            }
            if let Some(l) = &vm.lock
                && !flag(p, "skiplock")
            {
                return Err(ApiError::die(format!("VM is locked ({l})\n")));
            }
            Ok(json!(st.spawn_task(
                &node,
                "qmdestroy",
                &vmid.to_string(),
                &who.id(),
                None,
                Effect::Destroy { vmid }
            )))
        }
        ("PUT", "/nodes/{node}/qemu/{vmid}/resize") => {
            let node = s(p, "node").unwrap();
            let vmid = vmid_of(p);
            require(st, who, &format!("/vms/{vmid}"), "VM.Config.Disk")?;
            let vm = vm_of(st, p)?;
            if let Some(l) = &vm.lock {
                return Err(ApiError::die(format!("VM is locked ({l})\n")));
            }
            let disk = s(p, "disk").unwrap();
            let size = s(p, "size").unwrap();
            let Some(cur) = vm.config.get(&disk) else {
                return Err(ApiError::die(format!("disk '{disk}' does not exist\n")));
            };
            let gib = |v: &str| -> f64 {
                let v = v.trim_start_matches('+');
                let (n, u) =
                    v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
                let n: f64 = n.parse().unwrap_or(0.0);
                match u {
                    "T" => n * 1024.0,
                    "G" => n,
                    "M" => n / 1024.0,
                    "K" => n / 1048576.0,
                    _ => n / 1073741824.0,
                }
            };
            let now = cur
                .split(',')
                .find_map(|p| p.strip_prefix("size="))
                .map(gib)
                .unwrap_or(0.0);
            let new = if size.starts_with('+') {
                now + gib(&size)
            } else {
                gib(&size)
            };
            if new < now {
                return Err(ApiError::die("shrinking disks is not supported\n"));
            }
            let size = format!("{}G", new.round() as u64);
            Ok(json!(st.spawn_task(
                &node,
                "resize",
                &vmid.to_string(),
                &who.id(),
                None,
                Effect::Resize { vmid, disk, size }
            )))
        }
        ("GET", "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces") => {
            let vmid = vmid_of(p);
            require(st, who, &format!("/vms/{vmid}"), "VM.GuestAgent.Audit")?;
            let vm = vm_of(st, p)?;
            let conf = vm.merged();
            // `assert_agent_available` (qemu-server `src/PVE/QemuServer/Agent.pm` L109-113):
            // configured at all, the VM running, then a `guest-ping` that answers in 3 s.
            if !conf.contains_key("agent") {
                return Err(ApiError::die("No QEMU guest agent configured\n"));
            }
            if !vm.running {
                return Err(ApiError::die(format!("VM {vmid} is not running\n")));
            }
            let enabled = conf
                .get("agent")
                .is_some_and(|a| a.starts_with('1') || a.contains("enabled=1"));
            if !enabled || vm.agent_down || st.agents_down {
                return Err(ApiError::die("QEMU guest agent is not running\n"));
            }
            let ip = conf
                .get("ipconfig0")
                .and_then(|c| parse_property_string(c, "ip").get("ip").cloned())
                .filter(|ip| ip != "dhcp")
                .unwrap_or_else(|| "192.168.1.50/24".into());
            let (addr, prefix) = ip.split_once('/').unwrap_or((&ip, "24"));
            Ok(json!({"result": [
                {"name": "lo", "hardware-address": "00:00:00:00:00:00", "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]},
                {"name": "eth0", "hardware-address": "bc:24:11:00:00:01", "ip-addresses": [{"ip-address": addr, "ip-address-type": "ipv4", "prefix": prefix.parse::<u32>().unwrap_or(24)}]}
            ]}))
        }
        ("GET", "/nodes/{node}/qemu/{vmid}/config") => {
            require(st, who, &format!("/vms/{}", vmid_of(p)), "VM.Audit")?;
            let vm = vm_of(st, p)?;
            let conf = if flag(p, "current") {
                vm.config.clone()
            } else {
                vm.merged()
            };
            let mut out = serde_json::Map::new();
            for (k, v) in conf {
                out.insert(k.clone(), typed(&k, &v));
            }
            if let Some(l) = &vm.lock {
                out.insert("lock".into(), json!(l));
            }
            out.insert("digest".into(), json!(vm.digest()));
            Ok(Value::Object(out))
        }
        ("PUT", "/nodes/{node}/qemu/{vmid}/config") => update_config(st, who, p, false),
        ("POST", "/nodes/{node}/qemu/{vmid}/config") => update_config(st, who, p, true),
        ("GET", "/nodes/{node}/qemu/{vmid}/pending") => {
            let vm = vm_of(st, p)?;
            let mut keys: Vec<String> = vm.config.keys().cloned().collect();
            keys.extend(vm.pending.keys().cloned());
            keys.extend(vm.pending_delete.iter().cloned());
            keys.sort();
            keys.dedup();
            Ok(keys
                .iter()
                .map(|k| {
                    let mut e = json!({ "key": k });
                    if let Some(v) = vm.config.get(k) {
                        e["value"] = typed(k, v);
                    }
                    if let Some(v) = vm.pending.get(k) {
                        e["pending"] = typed(k, v);
                    }
                    if vm.pending_delete.contains(k) {
                        e["delete"] = json!(1);
                    }
                    e
                })
                .collect())
        }
        ("POST", "/nodes/{node}/qemu/{vmid}/status/start") => power(st, who, p, "qmstart"),
        ("POST", "/nodes/{node}/qemu/{vmid}/status/stop") => power(st, who, p, "qmstop"),
        ("POST", "/nodes/{node}/qemu/{vmid}/status/shutdown") => power(st, who, p, "qmshutdown"),
        ("GET", "/nodes/{node}/qemu/{vmid}/status/current") => {
            let vmid = vmid_of(p);
            let vm = vm_of(st, p)?;
            let conf = vm.config.clone();
            let mem: u64 = conf
                .get("memory")
                .and_then(|m| parse_property_string(m, "current").get("current").cloned())
                .and_then(|m| m.parse().ok())
                .unwrap_or(2048);
            let mut v = json!({
                "vmid": vmid, "status": if vm.running { "running" } else { "stopped" },
                "qmpstatus": if vm.running { "running" } else { "stopped" },
                "name": conf.get("name").cloned().unwrap_or_else(|| format!("VM {vmid}")),
                "cpus": conf.get("cores").and_then(|c| c.parse::<u64>().ok()).unwrap_or(1),
                "maxmem": mem * 1024 * 1024, "mem": 0, "maxdisk": 0,
                "uptime": if vm.running { 42 } else { 0 },
                "ha": { "managed": 0 },
            });
            if vm.running {
                v["pid"] = json!(4242);
                let q35 = conf.get("machine").is_some_and(|m| m.contains("q35"));
                v["running-machine"] = json!(if q35 {
                    "pc-q35-9.2+pve1"
                } else {
                    "pc-i440fx-9.2+pve1"
                });
                v["running-qemu"] = json!("9.2.0");
            }
            if conf
                .get("agent")
                .is_some_and(|a| a.starts_with('1') || a.contains("enabled=1"))
            {
                v["agent"] = json!(1);
            }
            if let Some(l) = &vm.lock {
                v["lock"] = json!(l);
            }
            Ok(v)
        }
        ("GET", "/nodes/{node}/tasks/{upid}/status") => {
            let upid = task_of(st, p)?;
            st.poll_task(&upid);
            let t = &st.tasks[&upid];
            let (user, tokenid) = match t.user.split_once('!') {
                Some((u, tok)) => (u.to_string(), Some(tok.to_string())),
                None => (t.user.clone(), None),
            };
            let mut v = json!({
                "upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart,
                "starttime": t.starttime, "type": t.kind, "id": t.id, "user": user,
                "status": if t.exitstatus.is_some() { "stopped" } else { "running" },
            });
            if let Some(tok) = tokenid {
                v["tokenid"] = json!(tok);
            }
            if let Some(e) = &t.exitstatus {
                v["exitstatus"] = json!(e);
            }
            Ok(v)
        }
        ("GET", "/nodes/{node}/tasks/{upid}/log") => {
            let upid = task_of(st, p)?;
            let t = &st.tasks[&upid];
            let start: usize = s(p, "start").and_then(|v| v.parse().ok()).unwrap_or(0);
            let limit: usize = s(p, "limit").and_then(|v| v.parse().ok()).unwrap_or(50);
            let lines: Vec<Value> = if t.log.is_empty() {
                vec![json!({"n": 1, "t": "no content"})]
            } else {
                t.log
                    .iter()
                    .enumerate()
                    .skip(start)
                    .take(limit)
                    .map(|(i, l)| json!({"n": i + 1, "t": l}))
                    .collect()
            };
            // `total` rides in the envelope; handlers return data only, so inline it here.
            Ok(Value::Array(lines))
        }
        _ => Err(ApiError::new(
            501,
            format!("Method '{method} {route}' not implemented"),
        )),
    }
}

fn ticket(st: &mut FakeCluster, p: &Params) -> ApiResult {
    let fail = || ApiError::new(401, "authentication failure\n");
    let mut user = s(p, "username").unwrap_or_default();
    if !user.contains('@')
        && let Some(realm) = s(p, "realm")
    {
        user = format!("{user}@{realm}");
    }
    let password = s(p, "password").unwrap_or_default();
    let by_password = st.users.get(&user).is_some_and(|pw| *pw == password);
    let by_ticket = st
        .tickets
        .iter()
        .any(|t| t.user == user && t.ticket == password && !t.expired);
    if !by_password && !by_ticket {
        return Err(fail());
    }
    // Issued now: clients check the 2-hour lifetime against their clock.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    let time = format!("{:08X}", now + st.tickets.len() as u32);
    let sig = sha1_hex(format!("{user}{time}{}", st.tickets.len()).as_bytes());
    let ticket = format!("PVE:{}:{time}::{sig}", user.replace(':', "%3A"));
    let csrf = format!("{time}:{}", &sha1_hex(sig.as_bytes())[..27]);
    st.tickets.push(Ticket {
        user: user.clone(),
        ticket: ticket.clone(),
        csrf: csrf.clone(),
        expired: false,
    });
    Ok(json!({
        "username": user, "ticket": ticket, "CSRFPreventionToken": csrf,
        "clustername": st.cluster_name, "cap": {},
    }))
}

fn pci_list(st: &FakeCluster, who: &Principal, p: &Params) -> ApiResult {
    if !st.has_priv(who, "/", "Sys.Audit") && !st.has_priv(who, "/", "Sys.Modify") {
        return Err(ApiError::new(
            403,
            "Permission check failed (/, Sys.Audit|Sys.Modify)\n",
        ));
    }
    let node = &st.nodes[&s(p, "node").unwrap()];
    let blacklist = split_list(&s(p, "pci-class-blacklist").unwrap_or_else(|| "05;06;0b".into()));
    let verbose = s(p, "verbose").is_none_or(|v| v == "1");
    let mut devs: Vec<_> = node
        .pci
        .iter()
        .filter(|d| {
            let class = d.class.trim_start_matches("0x");
            !blacklist.iter().any(|b| class.starts_with(b.as_str()))
        })
        .collect();
    devs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(devs.iter().map(|d| d.to_json(verbose)).collect())
}

fn mapping_json(id: &str, m: &PciMapping) -> Value {
    let mut v = json!({ "id": id, "map": m.map });
    if let Some(d) = &m.description {
        v["description"] = json!(d);
    }
    if m.mdev {
        v["mdev"] = json!(1);
    }
    if m.live_migration {
        v["live-migration-capable"] = json!(1);
    }
    v
}

fn map_list(p: &Params) -> Vec<String> {
    match p.get("map") {
        Some(Value::Array(a)) => a.iter().map(scalar_text).collect(),
        Some(v) => vec![scalar_text(v)],
        None => Vec::new(),
    }
}

/// `index` (pve-manager `PVE/API2/Cluster/Mapping/PCI.pm` L14-142): the mappings the caller
/// may see, each with the digest of the whole file.
fn mapping_list(st: &FakeCluster, who: &Principal) -> Value {
    let digest = st.mappings_digest();
    st.mappings
        .iter()
        .filter(|(id, _)| {
            ["Mapping.Modify", "Mapping.Use", "Mapping.Audit"]
                .iter()
                .any(|p| st.has_priv(who, &format!("/mapping/pci/{id}"), p))
        })
        .map(|(id, m)| {
            let mut v = mapping_json(id, m);
            v["type"] = json!("pci");
            v["digest"] = json!(digest);
            v
        })
        .collect()
}

/// `create`: Mapping.Modify on /mapping/pci; no digest parameter.
fn mapping_create(st: &mut FakeCluster, who: &Principal, p: &Params) -> ApiResult {
    require(st, who, "/mapping/pci", "Mapping.Modify")?;
    let id = s(p, "id").unwrap_or_default();
    if st.mappings.contains_key(&id) {
        return Err(ApiError::die(format!(
            "create hardware mapping failed: pci ID '{id}' already defined\n"
        )));
    }
    let m = PciMapping {
        description: s(p, "description"),
        map: map_list(p),
        mdev: flag(p, "mdev"),
        live_migration: flag(p, "live-migration-capable"),
    };
    st.mappings.insert(id, m);
    Ok(Value::Null)
}

/// `update`: Mapping.Modify on /mapping/pci/{id}; under the file lock, the digest against
/// the whole file's (`PVE::Tools::assert_if_modified`), so a digest read before any other
/// write to any mapping is stale.
fn mapping_update(st: &mut FakeCluster, who: &Principal, p: &Params) -> ApiResult {
    let id = s(p, "id").unwrap_or_default();
    require(st, who, &format!("/mapping/pci/{id}"), "Mapping.Modify")?;
    if let Some(d) = s(p, "digest")
        && d != st.mappings_digest()
    {
        return Err(ApiError::die(
            "update hardware mapping failed: detected modified configuration - file changed by other user? Try again.\n",
        ));
    }
    let m = st.mappings.get_mut(&id).ok_or_else(|| {
        ApiError::die(format!(
            "update hardware mapping failed: pci ID '{id}' does not exist\n"
        ))
    })?;
    for k in split_list(&s(p, "delete").unwrap_or_default()) {
        match k.as_str() {
            "description" => m.description = None,
            "mdev" => m.mdev = false,
            "live-migration-capable" => m.live_migration = false,
            _ => {}
        }
    }
    if let Some(d) = s(p, "description") {
        m.description = Some(d);
    }
    if p.contains_key("map") {
        m.map = map_list(p);
    }
    if p.contains_key("mdev") {
        m.mdev = flag(p, "mdev");
    }
    if p.contains_key("live-migration-capable") {
        m.live_migration = flag(p, "live-migration-capable");
    }
    Ok(Value::Null)
}

fn vmid_of(p: &Params) -> u32 {
    s(p, "vmid")
        .and_then(|v| v.trim_start_matches('+').parse().ok())
        .unwrap_or(0)
}

fn vm_of<'a>(st: &'a FakeCluster, p: &Params) -> Result<&'a Vm, ApiError> {
    let node = s(p, "node").unwrap_or_default();
    let vmid = vmid_of(p);
    st.vms
        .get(&vmid)
        .filter(|vm| vm.node == node)
        .ok_or_else(|| {
            ApiError::die(format!(
                "Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist\n"
            ))
        })
}

fn task_of(st: &FakeCluster, p: &Params) -> Result<String, ApiError> {
    let upid = s(p, "upid").unwrap_or_default();
    if parse_upid(&upid).is_none() {
        return Err(ApiError::param("upid", "unable to parse worker upid\n"));
    }
    if !st.tasks.contains_key(&upid) {
        return Err(ApiError::param("upid", "no such task\n"));
    }
    Ok(upid)
}

/// Integer and boolean options come back as JSON numbers, the rest as strings.
fn typed(key: &str, v: &str) -> Value {
    const NUMERIC: &[&str] = &[
        "cores",
        "sockets",
        "vcpus",
        "onboot",
        "acpi",
        "kvm",
        "numa",
        "protection",
        "template",
        "balloon",
        "shares",
        "tablet",
        "localtime",
        "reboot",
        "freeze",
        "autostart",
        "vmgenid_",
    ];
    if NUMERIC.contains(&key)
        && let Ok(n) = v.parse::<i64>()
    {
        return json!(n);
    }
    json!(v)
}

/// `check_hostpci_perm`: raw `host=` needs root@pam itself; `mapping=` needs Mapping.Use on
/// the mapping, then VM.Config.HWType on the VM.
fn hostpci_perm(
    st: &FakeCluster,
    who: &Principal,
    vmid: u32,
    key: &str,
    value: &str,
) -> Result<(), ApiError> {
    if who.is_root_ticket() {
        return Ok(());
    }
    let opts = parse_property_string(value, "host");
    if opts.contains_key("host") {
        return Err(ApiError::die(format!(
            "only root can set '{key}' config for non-mapped devices\n"
        )));
    }
    match opts.get("mapping") {
        Some(m) => {
            require(st, who, &format!("/mapping/pci/{m}"), "Mapping.Use")?;
            require(st, who, &format!("/vms/{vmid}"), "VM.Config.HWType")
        }
        None => Err(ApiError::die("either 'host' or 'mapping' must be set.\n")),
    }
}

/// `create_vm` (qemu-server 9.2.6 `src/PVE/API2/Qemu.pm` L1259-1375): every check runs
/// before the worker forks, so a refusal is the HTTP answer and no task exists; an id in
/// use is found last, when the config is written (`create_and_lock_config`).
fn create_vm(st: &mut FakeCluster, who: &Principal, p: &Params) -> ApiResult {
    let node = s(p, "node").unwrap();
    let vmid = vmid_of(p);
    if let Some((id, vm)) = st.taken_before_create.take() {
        st.vms.insert(id, vm);
    }
    if flag(p, "start") {
        require(st, who, &format!("/vms/{vmid}"), "VM.PowerMgmt")?;
    }
    if !st.has_priv(who, &format!("/vms/{vmid}"), "VM.Allocate") {
        // `raise_perm_exc()` without a path.
        return Err(ApiError::new(403, "Permission check failed\n"));
    }
    let mut conf: BTreeMap<String, String> = p
        .iter()
        .filter(|(k, _)| !CREATE_CONTROL.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), scalar_text(v)))
        .collect();
    perms::storage_access(st, who, &node, vmid, &conf)?;
    let keys: Vec<&str> = conf.keys().map(String::as_str).collect();
    perms::config_keys(st, who, vmid, &keys)?;
    for (k, v) in &conf {
        if k.starts_with("hostpci") {
            hostpci_perm(st, who, vmid, k, v)?;
        }
    }
    perms::bridge_access(st, who, &conf)?;
    if let Some(vm) = st.vms.get(&vmid) {
        return Err(ApiError::die(format!(
            "unable to create VM {vmid} - VM {vmid} already exists on node '{}'\n",
            vm.node
        )));
    }
    let storages = st.nodes[&node].storages.clone();
    let mut disk_n = 0;
    let mut efivars_2023 = false;
    let mut boot = Vec::new();
    for (k, v) in conf.iter_mut() {
        let is_disk = ["scsi", "virtio", "sata", "ide", "efidisk", "tpmstate"]
            .iter()
            .any(|d| k.starts_with(d) && k[d.len()..].chars().all(|c| c.is_ascii_digit()));
        if is_disk {
            let (file, rest) = v.split_once(',').map_or((v.as_str(), ""), |(a, b)| (a, b));
            if let Some((storage, size)) = file.split_once(':') {
                if !storages.iter().any(|s| s == storage) && file != "none" {
                    return Err(ApiError::die(format!(
                        "storage '{storage}' does not exist\n"
                    )));
                }
                let import = property_string_get(rest, "import-from");
                if let Some(src) = &import
                    && !st.nodes[&node].import_volumes.contains(src)
                {
                    return Err(ApiError::die(format!(
                        "unable to parse volume ID '{src}' - volume does not exist\n"
                    )));
                }
                if size.parse::<f64>().is_ok() {
                    // An imported disk takes the image's size (a Debian cloud image: 3G).
                    let rest_owned: String = rest
                        .split(',')
                        .filter(|p| !p.starts_with("import-from="))
                        .collect::<Vec<_>>()
                        .join(",");
                    let rest = rest_owned.as_str();
                    let size = if import.is_some() {
                        "3G".to_string()
                    } else if k.starts_with("efidisk") {
                        "528K".to_string()
                    } else {
                        format!("{size}G")
                    };
                    let mut nv = format!("{storage}:vm-{vmid}-disk-{disk_n},size={size}");
                    if !rest.is_empty() {
                        nv = format!("{storage}:vm-{vmid}-disk-{disk_n},{rest},size={size}");
                    }
                    *v = nv;
                    disk_n += 1;
                    if k == "efidisk0" {
                        efivars_2023 = efi_created(v, st.efi_template_2023);
                    }
                }
            }
            if !k.starts_with("efidisk") && !k.starts_with("tpmstate") {
                boot.push(k.clone());
            }
        }
        if k.starts_with("net") && k[3..].chars().all(|c| c.is_ascii_digit()) {
            let opts = parse_property_string(v, "model");
            if let Some(model) = opts.get("model").cloned()
                && !opts.contains_key(&model)
                && !opts.contains_key("macaddr")
            {
                let mac = format!(
                    "BC:24:11:{:02X}:{:02X}:{:02X}",
                    vmid % 256,
                    (vmid / 256) % 256,
                    k.len()
                );
                let rest: Vec<String> = opts
                    .iter()
                    .filter(|(k, _)| *k != "model")
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                *v = std::iter::once(format!("{model}={mac}"))
                    .chain(rest)
                    .collect::<Vec<_>>()
                    .join(",");
            }
            boot.push(k.clone());
        }
    }
    conf.entry("boot".into())
        .or_insert_with(|| format!("order={}", boot.join(";")));
    conf.entry("smbios1".into())
        .or_insert_with(|| format!("uuid=5f3c{vmid:04x}-0000-4000-8000-00000000{vmid:04x}"));
    conf.entry("vmgenid".into())
        .or_insert_with(|| format!("6a1b{vmid:04x}-0000-4000-8000-00000000{vmid:04x}"));
    conf.insert("meta".into(), "creation-qemu=9.2.0,ctime=1760000000".into());
    st.vms.insert(
        vmid,
        Vm {
            node: node.clone(),
            config: conf,
            lock: Some("create".into()),
            efivars_2023,
            ..Vm::default()
        },
    );
    let start = flag(p, "start");
    let upid = st.spawn_task(
        &node,
        "qmcreate",
        &vmid.to_string(),
        &who.id(),
        None,
        Effect::Created { vmid, start },
    );
    // An import logs while it runs, as `qemu-img convert` reports its progress
    // (qemu-server `PVE/QemuServer/ImportDisk.pm`).
    let imports: Vec<String> = p
        .values()
        .map(scalar_text)
        .filter_map(|v| property_string_get(&v, "import-from"))
        .collect();
    if let Some(t) = st.tasks.get_mut(&upid).filter(|t| t.exitstatus.is_none()) {
        for src in imports {
            t.log
                .push(format!("importing disk '{src}' to VM {vmid} ..."));
            t.log.push("transferred 0.0 B of 3.0 GiB (0.00%)".into());
            t.log.push("transferred 1.5 GiB of 3.0 GiB (50.00%)".into());
        }
    }
    Ok(json!(upid))
}

/// qemu-server 9.2.6 `src/PVE/QemuServer/OVMF.pm` `create_efidisk` (L190-208): the vars come
/// from the `-ms` template only for `efitype=4m` with `pre-enrolled-keys` (`get_ovmf_files`),
/// and "if ($efidisk->{'pre-enrolled-keys'} && is_ms_2023_cert_enrolled($ovmf_vars)) {
/// $efidisk->{'ms-cert'} = '2023k'; }"; a marker the caller passed is kept otherwise,
/// whatever the vars hold. Whether the new disk holds the 2023 certificates.
fn efi_created(value: &mut String, template_2023: bool) -> bool {
    let o = parse_property_string(value, "file");
    let holds = template_2023
        && o.get("efitype").is_some_and(|t| t == "4m")
        && o.get("pre-enrolled-keys").is_some_and(|p| p == "1");
    if holds {
        let mut o = o;
        o.insert("ms-cert".into(), "2023k".into());
        *value = print_drive(&o);
    }
    holds
}

fn update_config(
    st: &mut FakeCluster,
    who: &Principal,
    p: &Params,
    asynchronous: bool,
) -> ApiResult {
    let node = s(p, "node").unwrap();
    let vmid = vmid_of(p);
    if p.contains_key("skiplock") && !who.is_root_ticket() {
        return Err(ApiError::param(
            "skiplock",
            "Only root may use this option.",
        ));
    }
    let vm = vm_of(st, p)?.clone();
    let set: BTreeMap<String, String> = p
        .iter()
        .filter(|(k, _)| !CONFIG_CONTROL.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), scalar_text(v)))
        .collect();
    let delete = split_list(&s(p, "delete").unwrap_or_default());
    let revert = split_list(&s(p, "revert").unwrap_or_default());
    if set.is_empty() && delete.is_empty() && revert.is_empty() {
        return Err(ApiError::die("no options specified\n"));
    }
    let merged = vm.merged();
    for k in &delete {
        if set.contains_key(k) {
            return Err(ApiError::param(
                "delete",
                format!("you can't use '-{k}' and -delete {k}' at the same time"),
            ));
        }
        if !merged.contains_key(k) && !vm.config.contains_key(k) {
            return Err(ApiError::param("delete", format!("unknown option '{k}'")));
        }
    }
    // Before forking (`$update_vm_api` L2067-2635): privileges per key and per drive,
    // storage access, bridges.
    let keys: Vec<&str> = set.keys().chain(&delete).map(String::as_str).collect();
    perms::config_keys(st, who, vmid, &keys)?;
    for k in set.keys().chain(&delete).filter(|k| perms::is_drive(k)) {
        let value = set
            .get(k)
            .or_else(|| merged.get(k))
            .cloned()
            .unwrap_or_default();
        perms::drive_update(st, who, vmid, &value)?;
    }
    perms::storage_access(st, who, &node, vmid, &set)?;
    perms::bridge_access(st, who, &set)?;
    for k in set
        .keys()
        .chain(&delete)
        .filter(|k| k.starts_with("hostpci"))
    {
        if let Some(old) = merged.get(k) {
            hostpci_perm(st, who, vmid, k, old)?;
        }
        if let Some(new) = set.get(k) {
            hostpci_perm(st, who, vmid, k, new)?;
        }
    }
    // `$load_and_check_config`: the digest and the lock, once before forking (a POST's
    // mismatch is an HTTP 500 and no task) and again under the lock in the worker.
    let checks = || -> Result<(), ApiError> {
        if let Some(d) = s(p, "digest")
            && d != vm.digest()
        {
            return Err(ApiError::die(
                "checksum mismatch (file change by other user?)\n",
            ));
        }
        if let Some(l) = &vm.lock
            && !flag(p, "skiplock")
        {
            return Err(ApiError::die(format!("VM is locked ({l})\n")));
        }
        Ok(())
    };
    checks()?;
    if !asynchronous {
        let vm = st.vms.get_mut(&vmid).unwrap();
        apply_config(vm, &set, &delete, &revert);
        return Ok(Value::Null);
    }
    let upid = st.spawn_task(
        &node,
        "qmconfig",
        &vmid.to_string(),
        &who.id(),
        None,
        Effect::Config {
            vmid,
            set,
            delete,
            revert,
        },
    );
    if p.contains_key("background_delay") {
        st.finish_task(&upid);
        return match st.tasks[&upid].exitstatus.as_deref() {
            Some("OK") => Ok(Value::Null),
            Some(e) => Err(ApiError::die(format!("failed to update VM {vmid}: {e}\n"))),
            None => Ok(json!(upid)),
        };
    }
    Ok(json!(upid))
}

fn power(st: &mut FakeCluster, who: &Principal, p: &Params, kind: &str) -> ApiResult {
    let node = s(p, "node").unwrap();
    let vmid = vmid_of(p);
    require(st, who, &format!("/vms/{vmid}"), "VM.PowerMgmt")?;
    if p.contains_key("skiplock") && !who.is_root_ticket() {
        return Err(ApiError::param(
            "skiplock",
            "Only root may use this option.",
        ));
    }
    let vm = vm_of(st, p)?;
    if let Some(l) = &vm.lock
        && !flag(p, "skiplock")
    {
        return Err(ApiError::die(format!("VM is locked ({l})\n")));
    }
    let effect = match kind {
        "qmstart" => Effect::Start { vmid },
        _ => Effect::Stop { vmid },
    };
    Ok(json!(st.spawn_task(
        &node,
        kind,
        &vmid.to_string(),
        &who.id(),
        None,
        effect
    )))
}

fn property_string_get(s: &str, key: &str) -> Option<String> {
    s.split(',')
        .find_map(|p| p.strip_prefix(&format!("{key}=")).map(str::to_string))
}

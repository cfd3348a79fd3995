//! The VM phase called directly (gather, plan, executor, `Phase`) over an in-memory Proxmox
//! API: no server, no binary. [`MemoryPve`] implements `pve::Api` by handing each request to
//! the fake cluster of tests/support/fake_pve in this process (its router, the official
//! schema check where ../shared/pve-api is present, its handlers), and its answer to the
//! client's own reply parser, so a refused request fails here as it does over HTTPS.

#[path = "support/fake_pve/mod.rs"]
mod fake_pve;

use fake_pve::{FakeCluster, Principal, Schema, Vm};
use pvegpu::core::progress::{Progress, Task};
use pvegpu::inventory::Node;
use pvegpu::pve::envelope::{RawReply, parse_reply};
use pvegpu::pve::{Api, ApiRequest, AuthKind, PveError, WaitOptions};
use pvegpu::vm::exec::VmExecutor;
use pvegpu::vm::gather::gather;
use pvegpu::vm::phase::Phase;
use pvegpu::vm::planner::{self, Inputs};
use pvegpu::vm::state::ApiFacts;
use pvegpu::vm::{HostDevice, HostReadiness, VmPlan, VmStep};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `pve::Api` over a [`FakeCluster`] held in memory, acting as `who`.
struct MemoryPve {
    cluster: Mutex<FakeCluster>,
    schema: Option<Schema>,
    who: Principal,
    /// `METHOD path` of each request, in order.
    requests: Mutex<Vec<String>>,
}

impl MemoryPve {
    fn new(cluster: FakeCluster, who: Principal) -> Self {
        let schema = Schema::load(&fake_pve::schema::shared_dir());
        if schema.is_none() {
            eprintln!(
                "MemoryPve: no ../shared/pve-api: requests are not checked against the PVE schema"
            );
        }
        MemoryPve {
            cluster: Mutex::new(cluster),
            schema,
            who,
            requests: Mutex::new(Vec::new()),
        }
    }

    /// The fake's answer: `data`, or an error with PVE's status and message.
    fn answer(&self, req: &ApiRequest) -> fake_pve::ApiResult {
        let method = req.method.as_str();
        let path = fake_pve::percent_decode(&req.path);
        self.requests
            .lock()
            .unwrap()
            .push(format!("{method} {path}"));
        let Some((route, in_path)) = fake_pve::match_route(method, &path) else {
            return Err(fake_pve::ApiError::new(
                501,
                format!("Method '{method} {path}' not implemented"),
            ));
        };
        // Form pairs as pve-http-server reads them: a repeated key is a list, `k=` is unset.
        let mut params = fake_pve::Params::new();
        let form = req.body.as_deref().or(req.query.as_deref()).unwrap_or("");
        for (k, v) in form_urlencoded::parse(form.as_bytes()).filter(|(_, v)| !v.is_empty()) {
            let v = Value::String(v.into_owned());
            match params.get_mut(k.as_ref()) {
                Some(Value::Array(list)) => list.push(v),
                Some(one) => *one = json!([one.clone(), v]),
                None => {
                    params.insert(k.into_owned(), v);
                }
            }
        }
        for (k, v) in in_path {
            params.entry(k).or_insert(Value::String(v));
        }
        if let Some(schema) = &self.schema {
            schema
                .validate(route, method, &mut params)
                .map_err(fake_pve::ApiError::params)?;
        }
        let mut cluster = self.cluster.lock().unwrap();
        fake_pve::api::dispatch(&mut cluster, method, route, Some(&self.who), &params)
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

impl Api for MemoryPve {
    async fn call<T: DeserializeOwned>(&self, req: &ApiRequest) -> Result<T, PveError> {
        let (status, message, body) = match self.answer(req) {
            Ok(data) => (200, None, json!({ "data": data })),
            Err(e) => {
                let mut body = json!({ "data": null, "message": e.message });
                if let Some(errors) = &e.errors {
                    body["errors"] = json!(errors);
                }
                (e.status, Some(e.message), body)
            }
        };
        let reason = message
            .as_deref()
            .and_then(|m| m.lines().next())
            .map(str::trim);
        let body = body.to_string();
        parse_reply(
            req.method,
            &req.path,
            RawReply {
                status,
                reason,
                body: body.as_bytes(),
            },
            AuthKind::Token,
        )
    }
}

/// The root@pam token (privsep=0) the inventories of these tests name.
fn root_token() -> Principal {
    Principal {
        user: "root@pam".into(),
        token: Some("pvegpu".into()),
        by_ticket: false,
    }
}

/// root@pam with a ticket: the only principal PVE lets write raw `host=` entries.
fn root_ticket() -> Principal {
    Principal {
        user: "root@pam".into(),
        token: None,
        by_ticket: true,
    }
}

/// The test host's node with its [api] (`auth`: the credentials line) and a small VM.
fn node(auth: &str) -> Node {
    toml::from_str(&format!(
        r#"ssh = "root@127.0.0.1"
[api]
url = "https://127.0.0.1:8006"
{auth}
[vm]
vmid = 201
name = "triton-gpu"
memory_mib = 4096
cores = 2
[vm.disk]
storage = "nvme-zfs"
size_gb = 32
"#
    ))
    .unwrap()
}

const TOKEN: &str = r#"token = "root@pam!pvegpu""#;
const ROOT: &str = r#"user = "root@pam""#;

/// The host phase converged, with the test host's edu card on vfio-pci.
fn host() -> HostReadiness {
    HostReadiness {
        converged: true,
        pending: None,
        devices: vec![HostDevice {
            slot: "0000:00:03".into(),
            id: "1234:11e8".into(),
            subsystem: Some("1af4:1100".into()),
            iommu_group: Some(3),
            name: "edu".into(),
            on_vfio: true,
        }],
    }
}

async fn facts(api: &MemoryPve, node: &Node) -> ApiFacts {
    gather(api, "pvetest", node.vm.as_ref().unwrap())
        .await
        .unwrap()
}

fn plan(node: &Node, facts: &ApiFacts) -> VmPlan {
    planner::plan(&Inputs {
        node: "pvetest",
        spec: node.vm.as_ref().unwrap(),
        api: node.api.as_ref().unwrap(),
        host: &host(),
        ssh_key: None,
        facts,
    })
}

/// VM 201 as PVE stores it once pvegpu created it with the raw device and started it.
fn converged_vm() -> Vm {
    let config = [
        ("name", "triton-gpu"),
        ("memory", "4096"),
        ("cores", "2"),
        ("onboot", "1"),
        ("agent", "1"),
        ("ostype", "l26"),
        ("scsihw", "virtio-scsi-single"),
        ("net0", "virtio=BC:24:11:00:00:01,bridge=vmbr0"),
        ("hostpci0", "0000:00:03"),
        (
            "scsi0",
            "nvme-zfs:vm-201-disk-0,iothread=1,discard=on,size=32G",
        ),
    ];
    Vm {
        node: "pvetest".into(),
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        running: true,
        ..Default::default()
    }
}

/// The lines said, and each task's last line as its work told it.
#[derive(Default)]
struct Said(Mutex<Vec<String>>, Mutex<Vec<Arc<Mutex<String>>>>);

impl Progress for Said {
    fn say(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_string());
    }
    fn begin(&self, what: &str) -> Task {
        self.say(what);
        let last = Arc::new(Mutex::new(String::new()));
        self.1.lock().unwrap().push(last.clone());
        Task::new(|_| {}, last)
    }
}

impl Said {
    fn last_lines(&self) -> Vec<String> {
        self.1
            .lock()
            .unwrap()
            .iter()
            .map(|l| l.lock().unwrap().clone())
            .collect()
    }
}

/// Task polls without the real client's pauses.
fn quick() -> WaitOptions {
    WaitOptions {
        first_poll: Duration::from_millis(1),
        max_poll: Duration::from_millis(1),
        ..WaitOptions::default()
    }
}

#[tokio::test]
async fn a_converged_running_vm_plans_nothing_in_eight_reads() {
    let mut cluster = fake_pve::testhost_cluster();
    cluster.vms.insert(201, converged_vm());
    let api = MemoryPve::new(cluster, root_ticket());
    let node = node(ROOT);

    let facts = facts(&api, &node).await;
    let p = plan(&node, &facts);

    assert!(p.refusals.is_empty(), "{:?}", p.refusals);
    assert!(p.is_empty(), "{:?}", p.steps);
    assert!(p.exists && p.running);
    assert_eq!(p.vmid, Some(201));
    assert_eq!(p.devices, ["hostpci0: 0000:00:03"]);
    // version, nodes, storage, resources, mappings, the caller's permissions, config and
    // pending of the running VM
    assert_eq!(api.count(), 8, "{:#?}", api.requests.lock().unwrap());
}

#[tokio::test]
async fn a_new_vm_is_created_with_its_card_then_started() {
    let api = MemoryPve::new(fake_pve::testhost_cluster(), root_ticket());
    let node = node(ROOT);

    let p = plan(&node, &facts(&api, &node).await);

    assert!(p.refusals.is_empty(), "{:?}", p.refusals);
    assert!(!p.exists);
    let [VmStep::CreateVm { vmid, params }, VmStep::Start] = p.steps.as_slice() else {
        panic!("{:#?}", p.steps);
    };
    assert_eq!(*vmid, 201);
    let param = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(param("hostpci0"), Some("0000:00:03"));
    assert_eq!(param("memory"), Some("4096"));
    assert_eq!(param("scsi0"), Some("nvme-zfs:32,iothread=1,discard=on"));
    assert!(
        api.cluster.lock().unwrap().vms.is_empty(),
        "planning changed something"
    );
}

#[tokio::test]
async fn a_token_gets_a_pci_mapping_for_its_card() {
    let api = MemoryPve::new(fake_pve::testhost_cluster(), root_token());
    let node = node(TOKEN);

    let p = plan(&node, &facts(&api, &node).await);

    assert!(p.refusals.is_empty(), "{:?}", p.refusals);
    assert_eq!(p.method, pvegpu::vm::DeviceMethod::Mapping);
    assert_eq!(
        p.steps[0],
        VmStep::CreateMapping {
            id: "gpu-00-03".into(),
            map: "node=pvetest,path=0000:00:03,id=1234:11e8,iommugroup=3,subsystem-id=1af4:1100"
                .into(),
        }
    );
    assert_eq!(p.devices, ["hostpci0: mapping=gpu-00-03"]);
    assert!(matches!(p.steps[1], VmStep::CreateVm { vmid: 201, .. }));
}

#[tokio::test]
async fn the_playbook_alone_orders_the_steps() {
    let api = MemoryPve::new(fake_pve::testhost_cluster(), root_token());
    let node = node(TOKEN);
    let facts = facts(&api, &node).await;
    let reordered = pvegpu::core::playbook::load(
        "reordered.toml",
        r#"
[[steps]]
id = "start"
kind = "start"
summary = "start"

[[steps]]
id = "pci-mappings"
kind = "pci-mappings"
summary = "mappings"

[[steps]]
id = "create-vm"
kind = "create-vm"
summary = "create"
"#,
    )
    .unwrap();

    let p = planner::plan_by(
        &reordered,
        &Inputs {
            node: "pvetest",
            spec: node.vm.as_ref().unwrap(),
            api: node.api.as_ref().unwrap(),
            host: &host(),
            ssh_key: None,
            facts: &facts,
        },
    );

    assert!(
        matches!(
            p.steps.as_slice(),
            [
                VmStep::Start,
                VmStep::CreateMapping { .. },
                VmStep::CreateVm { vmid: 201, .. }
            ]
        ),
        "{:#?}",
        p.steps
    );
    let usual = plan(&node, &facts);
    assert_eq!((&p.devices, &p.notes), (&usual.devices, &usual.notes));
}

#[tokio::test]
async fn the_executor_creates_the_vm_then_a_fresh_plan_is_empty() {
    let api = MemoryPve::new(fake_pve::testhost_cluster(), root_token());
    let node = node(TOKEN);
    let spec = node.vm.as_ref().unwrap();
    let before = plan(&node, &facts(&api, &node).await);
    let said = Said::default();

    let mut exec = VmExecutor::new(&api, &said);
    exec.wait = quick();
    let address = exec.execute(&before, spec, Ok(())).await.unwrap();

    // The fake's guest agent reports this address for a VM without a static one.
    assert_eq!(address.as_deref(), Some("192.168.1.50"));
    let after = plan(&node, &facts(&api, &node).await);
    assert!(after.is_empty() && after.refusals.is_empty(), "{after:#?}");
    assert!(after.exists && after.running);
    let cluster = api.cluster.lock().unwrap();
    assert_eq!(cluster.vms[&201].config["hostpci0"], "mapping=gpu-00-03");
    assert!(cluster.mappings.contains_key("gpu-00-03"));
    let said = said.0.lock().unwrap();
    assert!(
        said.iter().any(|l| l.contains("creating VM 201")),
        "{said:?}"
    );
}

#[tokio::test]
async fn a_running_proxmox_task_shows_its_newest_log_line() {
    let api = MemoryPve::new(fake_pve::testhost_cluster(), root_token());
    let mut node = node(TOKEN);
    node.vm.as_mut().unwrap().disk.image =
        Some("local:import/debian-12-genericcloud-amd64.qcow2".into());
    let before = plan(&node, &facts(&api, &node).await);
    let said = Said::default();
    let mut exec = VmExecutor::new(&api, &said);
    exec.wait = quick();
    exec.execute(&before, node.vm.as_ref().unwrap(), Ok(()))
        .await
        .unwrap();
    // the import's progress, read from the task log while the task ran
    assert!(
        said.last_lines()
            .contains(&"transferred 1.5 GiB of 3.0 GiB (50.00%)".to_string()),
        "{:?}",
        said.last_lines()
    );
}

#[tokio::test]
async fn the_phase_puts_a_drifted_key_back_and_its_postconditions_hold() {
    let mut cluster = fake_pve::testhost_cluster();
    let mut vm = converged_vm();
    vm.config.insert("memory".into(), "2048".into());
    vm.running = false;
    cluster.vms.insert(201, vm);
    let node = node(ROOT);
    let phase = Phase::new(
        MemoryPve::new(cluster, root_ticket()),
        "pvetest".into(),
        None,
    );

    let p = phase.plan("pvetest", &node, &host()).await.unwrap();
    let [VmStep::SetConfig { changes, .. }, VmStep::Start] = p.steps.as_slice() else {
        panic!("{:#?}", p.steps);
    };
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].key, "memory");
    assert_eq!(changes[0].to.as_deref(), Some("4096"));

    let mut failed = phase
        .apply("pvetest", &node, &p, &host(), &Said::default())
        .await
        .unwrap();
    failed.retain(|c| !c.passed());
    assert!(failed.is_empty(), "{failed:#?}");
    let cluster = phase.client.cluster.lock().unwrap();
    assert_eq!(cluster.vms[&201].config["memory"], "4096");
    assert!(cluster.vms[&201].running);
}

// --- Microsoft's 2023 UEFI certificates in the EFI disk (#16) ---

/// An EFI disk made before pve-edk2-firmware 4.2025.05-1: Microsoft's keys of 2011, no
/// marker (qemu-server's own test config `src/test/cfg2cmd/efi-secboot-and-tpm-q35.conf`
/// has this form).
const EFI_2011: &str = "nvme-zfs:vm-201-disk-1,efitype=4m,pre-enrolled-keys=1,size=528K";

/// [`node`] booting OVMF, `secure_boot` as given.
fn ovmf_node(secure_boot: bool) -> Node {
    let mut n = node(ROOT);
    let vm = n.vm.as_mut().unwrap();
    vm.firmware = pvegpu::inventory::vm::Firmware::Ovmf;
    vm.secure_boot = secure_boot;
    n
}

/// [`converged_vm`] as an OVMF VM with `efidisk0`.
fn ovmf_vm(efidisk0: &str, running: bool) -> Vm {
    let mut vm = converged_vm();
    for (k, v) in [
        ("bios", "ovmf"),
        ("machine", "q35"),
        ("hostpci0", "0000:00:03,pcie=1"),
        ("efidisk0", efidisk0),
    ] {
        vm.config.insert(k.into(), v.into());
    }
    vm.running = running;
    vm
}

fn ovmf_phase(vm: Vm) -> Phase<MemoryPve> {
    let mut cluster = fake_pve::testhost_cluster();
    cluster.vms.insert(201, vm);
    Phase::new(
        MemoryPve::new(cluster, root_ticket()),
        "pvetest".into(),
        None,
    )
}

/// VM 201 runs with the 2023 certificates really enrolled, marked, nothing pending, and a
/// fresh plan is empty.
async fn enrolled_then_nothing(phase: &Phase<MemoryPve>, node: &Node) {
    {
        let cluster = phase.client.cluster.lock().unwrap();
        let vm = &cluster.vms[&201];
        assert!(
            vm.config["efidisk0"].contains(",ms-cert=2023k,"),
            "{}",
            vm.config["efidisk0"]
        );
        assert!(
            vm.efivars_2023,
            "the marker was written without an enrollment"
        );
        assert!(vm.running && vm.pending.is_empty(), "{:?}", vm.pending);
    }
    let again = phase.plan("pvetest", node, &host()).await.unwrap();
    assert!(again.is_empty() && again.refusals.is_empty(), "{again:#?}");
}

fn failed(mut checks: Vec<pvegpu::core::check::Check>) -> Vec<pvegpu::core::check::Check> {
    checks.retain(|c| !c.passed());
    checks
}

#[tokio::test]
async fn a_stopped_ovmf_vm_with_2011_keys_is_enrolled_before_its_start() {
    let node = ovmf_node(false);
    let phase = ovmf_phase(ovmf_vm(EFI_2011, false));

    let p = phase.plan("pvetest", &node, &host()).await.unwrap();
    assert!(
        matches!(
            p.steps.as_slice(),
            [
                VmStep::EnrollEfiCerts {
                    from: Some(_),
                    marker: None,
                    staged: false
                },
                VmStep::Start
            ]
        ),
        "{:#?}",
        p.steps
    );
    insta::assert_snapshot!(p.render_text());

    let checks = phase
        .apply("pvetest", &node, &p, &host(), &Said::default())
        .await
        .unwrap();
    assert!(failed(checks).is_empty());
    {
        let cluster = phase.client.cluster.lock().unwrap();
        let vm = &cluster.vms[&201];
        // as qemu-server's `print_drive` writes it: the volume, then the options by name
        assert_eq!(
            vm.config["efidisk0"],
            "nvme-zfs:vm-201-disk-1,efitype=4m,ms-cert=2023k,pre-enrolled-keys=1,size=528K"
        );
        assert!(
            vm.efivars_2023,
            "the marker was written without an enrollment"
        );
        assert!(vm.running && vm.pending.is_empty());
    }
    let again = phase.plan("pvetest", &node, &host()).await.unwrap();
    assert!(again.is_empty() && again.notes.is_empty(), "{again:#?}");
}

#[tokio::test]
async fn a_running_vm_is_not_stopped_for_its_certificates_alone() {
    let node = ovmf_node(false);
    let phase = ovmf_phase(ovmf_vm(&format!("{EFI_2011},ms-cert=2023w"), true));

    let p = phase.plan("pvetest", &node, &host()).await.unwrap();

    assert!(p.is_empty() && p.refusals.is_empty(), "{p:#?}");
    let note = p.notes.join("\n");
    assert!(
        note.contains("without the 2023 Microsoft UEFI CA (ms-cert=2023w)")
            && note.contains("qm shutdown 201"),
        "{note}"
    );
    let cluster = phase.client.cluster.lock().unwrap();
    let vm = &cluster.vms[&201];
    assert!(vm.running && !vm.efivars_2023 && vm.pending.is_empty());
}

#[tokio::test]
async fn a_running_vm_restarted_anyway_is_enrolled_while_it_is_down() {
    let node = ovmf_node(false);
    let mut vm = ovmf_vm(&format!("{EFI_2011},ms-cert=2011"), true);
    vm.config.insert("memory".into(), "2048".into());
    let phase = ovmf_phase(vm);

    let p = phase.plan("pvetest", &node, &host()).await.unwrap();
    let [
        VmStep::SetConfig { .. },
        VmStep::EnrollEfiCerts { staged: true, .. },
        VmStep::Restart { keys },
    ] = p.steps.as_slice()
    else {
        panic!("{:#?}", p.steps);
    };
    assert_eq!(keys, &["memory", "efidisk0"]);

    let checks = phase
        .apply("pvetest", &node, &p, &host(), &Said::default())
        .await
        .unwrap();
    assert!(failed(checks).is_empty());
    enrolled_then_nothing(&phase, &node).await;
}

#[tokio::test]
async fn a_2m_disk_or_one_without_keys_is_left_alone() {
    for efi in [
        "nvme-zfs:vm-201-disk-1,pre-enrolled-keys=1,size=128K",
        "nvme-zfs:vm-201-disk-1,efitype=4m,pre-enrolled-keys=0,size=528K",
    ] {
        let node = ovmf_node(false);
        let phase = ovmf_phase(ovmf_vm(efi, false));

        let p = phase.plan("pvetest", &node, &host()).await.unwrap();
        assert_eq!(p.steps, [VmStep::Start], "{efi}");
        assert!(p.notes.is_empty(), "{efi}: {:?}", p.notes);
        phase
            .apply("pvetest", &node, &p, &host(), &Said::default())
            .await
            .unwrap();
        let cluster = phase.client.cluster.lock().unwrap();
        assert_eq!(cluster.vms[&201].config["efidisk0"], efi);
    }
}

#[tokio::test]
async fn a_new_secure_boot_vm_is_enrolled_only_when_its_template_lacks_them() {
    for template_2023 in [true, false] {
        let node = ovmf_node(true);
        let mut cluster = fake_pve::testhost_cluster();
        cluster.efi_template_2023 = template_2023;
        let phase = Phase::new(
            MemoryPve::new(cluster, root_ticket()),
            "pvetest".into(),
            None,
        );

        let p = phase.plan("pvetest", &node, &host()).await.unwrap();
        let [
            VmStep::CreateVm { params, .. },
            VmStep::EnrollEfiCerts { from: None, .. },
            VmStep::Start,
        ] = p.steps.as_slice()
        else {
            panic!("{:#?}", p.steps);
        };
        // the marker is Proxmox's to set at creation: passed, it would be believed even
        // where the firmware's template lacks the certificates
        let efi = params.iter().find(|(k, _)| k == "efidisk0").unwrap();
        assert_eq!(efi.1, "nvme-zfs:1,efitype=4m,pre-enrolled-keys=1");

        let said = Said::default();
        let checks = phase
            .apply("pvetest", &node, &p, &host(), &said)
            .await
            .unwrap();
        assert!(failed(checks).is_empty());
        let enrolled =
            said.0.lock().unwrap().iter().any(|l| {
                l.contains("enrolling the 2023 Microsoft UEFI CA into efidisk0 of VM 201")
            });
        assert_eq!(enrolled, !template_2023, "template_2023={template_2023}");
        enrolled_then_nothing(&phase, &node).await;
    }
}

#[tokio::test]
async fn an_efi_disk_changed_after_the_plan_is_not_touched() {
    let node = ovmf_node(false);
    let phase = ovmf_phase(ovmf_vm(EFI_2011, false));
    let p = phase.plan("pvetest", &node, &host()).await.unwrap();
    let other = "nvme-zfs:vm-201-disk-2,efitype=4m,pre-enrolled-keys=1,size=528K";
    if let Some(vm) = phase.client.cluster.lock().unwrap().vms.get_mut(&201) {
        vm.config.insert("efidisk0".into(), other.into());
    }

    let err = phase
        .apply("pvetest", &node, &p, &host(), &Said::default())
        .await
        .unwrap_err();

    assert!(
        format!("{err:#}").contains("efidisk0 of VM 201 changed since the plan read it"),
        "{err:#}"
    );
    let cluster = phase.client.cluster.lock().unwrap();
    assert_eq!(cluster.vms[&201].config["efidisk0"], other);
    assert!(!cluster.vms[&201].running);
}

#[tokio::test]
async fn a_windows_or_adopted_vm_is_told_how_never_enrolled() {
    // Windows: BitLocker asks for its recovery key after an enrollment it was not told of
    let mut win = ovmf_vm(EFI_2011, false);
    win.config.insert("ostype".into(), "win11".into());
    let phase = ovmf_phase(win);
    let p = phase
        .plan("pvetest", &ovmf_node(false), &host())
        .await
        .unwrap();
    assert!(
        !p.steps
            .iter()
            .any(|s| matches!(s, VmStep::EnrollEfiCerts { .. })),
        "{:#?}",
        p.steps
    );
    assert!(
        p.notes
            .join("\n")
            .contains("manage-bde -protectors -disable")
    );

    // adopted: pvegpu manages its hostpci entries only
    let mut node = ovmf_node(false);
    node.vm.as_mut().unwrap().adopt = true;
    let phase = ovmf_phase(ovmf_vm(EFI_2011, false));
    let p = phase.plan("pvetest", &node, &host()).await.unwrap();
    assert_eq!(p.steps, [VmStep::Start]);
    assert!(
        p.notes.join("\n").contains("qm enroll-efi-keys 201"),
        "{:?}",
        p.notes
    );
}

//! The VM phase end to end: the pvegpu binary against the fake Proxmox VE over real HTTPS
//! (a self-signed certificate pinned by fingerprint). The host side comes from a real probe
//! of the converged QEMU test host (tests/fixtures/probe), given with `--facts`, so only the
//! VM phase talks to a server. Where ../shared/pve-api is present the fake validates every
//! request against the official schema and answers 400 on any violation.

#[path = "support/fake_pve/mod.rs"]
mod fake_pve;
mod support;
#[path = "support/vm_lab.rs"]
mod vm_lab;
use fake_pve::{FakePve, LIMITED_TOKEN_SECRET, ROOT_TOKEN_SECRET};
use pvegpu::core::error::Hint;
use std::process::Command;
use vm_lab::{Lab, LibraryPlan, TOKEN, pvegpu};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_creates_mappings_and_the_vm_then_nothing_then_puts_drift_back() {
    let lab = Lab::start().await;
    let inv = lab.inventory(TOKEN, "");

    let (code, plan, err) = pvegpu(&inv, &["plan", "--detailed-exitcode"], ROOT_TOKEN_SECRET).await;
    assert_eq!(code, 2, "{err}\n{plan}");
    assert!(plan.contains("create PCI mapping `gpu-00-03`: node=pvetest,path=0000:00:03,id=1234:11e8,iommugroup=3,subsystem-id=1af4:1100"), "{plan}");
    assert!(
        plan.contains("devices by `mapping=`: an API token may not write raw `host=`"),
        "{plan}"
    );
    assert!(plan.contains("+ create VM 201"), "{plan}");
    assert!(
        plan.contains("hostpci0: mapping=gpu-00-03")
            && plan.contains("hostpci1: mapping=gpu-00-04"),
        "{plan}"
    );
    assert!(
        lab.fake.state.lock().unwrap().vms.is_empty(),
        "plan changed something"
    );

    let (code, out, err) = pvegpu(
        &inv,
        &["--json", "apply", "--yes", "-n", "pvetest"],
        ROOT_TOKEN_SECRET,
    )
    .await;
    assert_eq!(code, 0, "{err}\n{out}");
    // stderr is not a terminal here: each task is a line, then how it ended and after how long
    let lines: Vec<&str> = err.lines().collect();
    let create = lines
        .iter()
        .position(|l| l.starts_with("  creating VM 201"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        lines[create + 1..]
            .iter()
            .any(|l| l.starts_with("  done after ")),
        "{err}"
    );
    assert!(
        err.contains("  VM 201: waiting for its guest agent"),
        "{err}"
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["nodes"][0]["status"], "changed");
    assert_eq!(report["recap"]["changed"], 1);
    for c in report["nodes"][0]["postconditions"].as_array().unwrap() {
        assert_eq!(c["status"], "pass", "{c}");
    }
    assert!(
        err.contains("is up: the guest agent reports 10.3.0.201"),
        "{err}"
    );
    {
        let st = lab.fake.state.lock().unwrap();
        let vm = &st.vms[&201];
        assert!(vm.running);
        assert_eq!(vm.config["memory"], "30720");
        assert_eq!(vm.config["hostpci0"], "mapping=gpu-00-03");
        assert_eq!(vm.config["ipconfig0"], "ip=10.3.0.201/8,gw=10.0.0.45");
        assert!(
            vm.config["scsi0"].ends_with("size=100G"),
            "{}",
            vm.config["scsi0"]
        );
        assert!(!vm.config["scsi0"].contains("import-from"));
        assert!(
            vm.config["sshkeys"].starts_with("ssh-ed25519%20AAAA"),
            "{}",
            vm.config["sshkeys"]
        );
        assert_eq!(st.mappings.len(), 2);
    }

    // converged: nothing to do, in a bounded number of calls
    let before = lab.requests();
    let (code, plan, err) = pvegpu(&inv, &["plan", "--detailed-exitcode"], ROOT_TOKEN_SECRET).await;
    assert_eq!(code, 0, "{err}\n{plan}");
    assert!(plan.ends_with("No changes.\n"), "{plan}");
    // version, nodes, storage, resources, mappings, the caller's permissions, config and
    // pending of the running VM
    assert_eq!(lab.requests() - before, 8, "API calls for one converged VM");
    let (code, out, err) = pvegpu(
        &inv,
        &["--json", "apply", "--yes", "-n", "pvetest"],
        ROOT_TOKEN_SECRET,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains("creating") && !err.contains("updating"),
        "{err}"
    );
    let _: serde_json::Value = serde_json::from_str(&out).unwrap();

    // another VM on the node costs one more call (its config is read for its devices)
    lab.fake.state.lock().unwrap().vms.insert(
        300,
        fake_pve::Vm {
            node: "pvetest".into(),
            config: [
                ("name".to_string(), "other".to_string()),
                ("memory".to_string(), "2048".to_string()),
            ]
            .into(),
            ..Default::default()
        },
    );
    let before = lab.requests();
    let (code, _, _) = pvegpu(&inv, &["plan"], ROOT_TOKEN_SECRET).await;
    assert_eq!(code, 0);
    assert_eq!(lab.requests() - before, 9);

    // drift: someone lowered the memory and removed a card
    {
        let mut st = lab.fake.state.lock().unwrap();
        let vm = st.vms.get_mut(&201).unwrap();
        vm.config.insert("memory".into(), "4096".into());
        vm.config.remove("hostpci1");
    }
    let (code, plan, _) = pvegpu(&inv, &["plan", "--detailed-exitcode"], ROOT_TOKEN_SECRET).await;
    assert_eq!(code, 2, "{plan}");
    assert!(
        plan.contains("memory: 4096 -> 30720  [needs stop+start]"),
        "{plan}"
    );
    assert!(
        plan.contains("hostpci1: (unset) -> mapping=gpu-00-04  [needs stop+start]"),
        "{plan}"
    );
    assert!(
        plan.contains("shut the running VM down and start it again: hostpci1, memory"),
        "{plan}"
    );
    assert!(
        !plan.contains("name:"),
        "unchanged keys are not shown: {plan}"
    );
    let (code, _, err) = pvegpu(
        &inv,
        &["apply", "--yes", "-n", "pvetest"],
        ROOT_TOKEN_SECRET,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("applying stops the running VM"), "{err}");
    {
        let st = lab.fake.state.lock().unwrap();
        let vm = &st.vms[&201];
        assert!(vm.running && vm.pending.is_empty());
        assert_eq!(vm.config["memory"], "30720");
        assert_eq!(vm.config["hostpci1"], "mapping=gpu-00-04");
        assert_eq!(vm.config["name"], "triton-gpu");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_privsep_token_lacking_privileges_is_refused_at_plan_naming_each() {
    let lab = Lab::start().await;
    let inv = lab.inventory("token = \"root@pam!limited\"", "");
    let (code, out, err) = pvegpu(
        &inv,
        &["apply", "--yes", "-n", "pvetest"],
        LIMITED_TOKEN_SECRET,
    )
    .await;
    assert_eq!(code, 1, "{out}\n{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("the API credentials lack privileges the plan needs"),
        "{all}"
    );
    for missing in [
        "- Mapping.Modify on /mapping/pci: to create the PCI mapping gpu-00-03, to create the PCI mapping gpu-00-04",
        "- VM.Config.Memory on /vms/201: to set memory",
        "- VM.Config.Cloudinit or VM.Config.Network on /vms/201: to set ciuser, to set sshkeys, to set ipconfig0, to set nameserver",
        // the cloud-init drive is not checked against its storage (`$check_storage_access`)
        "- Datastore.AllocateSpace on /storage/nvme-zfs: to allocate scsi0\n",
        "- Datastore.Allocate or Datastore.AllocateSpace or Datastore.Audit on /storage/local: to import local:import/debian-12-genericcloud-amd64.qcow2",
        "- SDN.Use on /sdn/zones/localnetwork/vmbr0: to put net0 on vmbr0",
        "- Mapping.Use on /mapping/pci/gpu-00-03: to give hostpci0 the mapping gpu-00-03",
    ] {
        assert!(all.contains(missing), "{missing} not named in: {all}");
    }
    assert!(
        !all.contains("VM.Allocate on"),
        "held privileges are not listed: {all}"
    );
    assert!(all.contains("pveum"), "{all}");
    let writes: Vec<_> = lab
        .fake
        .all_requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert!(writes.is_empty(), "nothing was written: {writes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_ticket_passes_raw_devices_and_a_failed_create_leaves_nothing_and_shows_its_log() {
    let lab = Lab::start().await;
    let inv = lab.inventory("user = \"root@pam\"", "");
    let (code, plan, err) = pvegpu(&inv, &["plan"], "").await;
    assert_eq!(code, 0, "{err}");
    assert!(
        plan.contains("devices by `host=`: root@pam with a ticket may write raw `host=`"),
        "{plan}"
    );
    assert!(
        plan.contains("hostpci0: 0000:00:03") && !plan.contains("mapping"),
        "{plan}"
    );

    lab.fake.state.lock().unwrap().fail_next_task =
        Some("unable to create VM 201 - zfs error: out of space".into());
    let (code, _, err) = pvegpu(&inv, &["apply", "--yes", "-n", "pvetest"], "").await;
    assert_eq!(code, 1);
    // The real create worker unlinks its config on failure: nothing to remove.
    assert!(
        err.contains("creating VM 201 failed; Proxmox removed what the failed create had made; no VM 201 is left"),
        "{err}"
    );
    assert!(!err.contains("removing the half-created"), "{err}");
    assert!(
        err.contains("TASK ERROR: unable to create VM 201 - zfs error: out of space"),
        "task log shown: {err}"
    );
    assert!(lab.fake.state.lock().unwrap().vms.is_empty());

    // and it converges on the next run
    let (code, _, err) = pvegpu(&inv, &["apply", "--yes", "-n", "pvetest"], "").await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        lab.fake.state.lock().unwrap().vms[&201].config["hostpci1"],
        "0000:00:04"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_edit_is_detected_not_overwritten() {
    let lab = Lab::start().await;
    let inv_path = lab.inventory(TOKEN, "");
    let (code, _, err) = pvegpu(
        &inv_path,
        &["apply", "--yes", "-n", "pvetest"],
        ROOT_TOKEN_SECRET,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    lab.fake
        .state
        .lock()
        .unwrap()
        .vms
        .get_mut(&201)
        .unwrap()
        .config
        .insert("cores".into(), "2".into());

    // plan with the library, then someone edits the VM before the plan runs
    let made = LibraryPlan::make(&inv_path).await;
    let plan = &made.plan;
    assert!(
        matches!(
            plan.steps.first(),
            Some(pvegpu::vm::VmStep::SetConfig { .. })
        ),
        "{plan:?}"
    );
    lab.fake
        .state
        .lock()
        .unwrap()
        .vms
        .get_mut(&201)
        .unwrap()
        .config
        .insert("description".into(), "edited by hand".into());

    let e = made.execute().await.unwrap_err();
    let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
    assert!(text.contains("checksum mismatch"), "{text}");
    assert!(
        e.hint()
            .unwrap()
            .contains("someone changed the VM config since pvegpu read it")
    );
    let st = lab.fake.state.lock().unwrap();
    assert_eq!(st.vms[&201].config["cores"], "2", "nothing was overwritten");
    assert_eq!(st.vms[&201].config["description"], "edited by hand");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_anything_changes() {
    let lab = Lab::start().await;
    // a storage that does not exist
    let inv = lab.inventory(TOKEN, "");
    let text = std::fs::read_to_string(&inv)
        .unwrap()
        .replace("storage = \"nvme-zfs\"", "storage = \"nvme\"");
    std::fs::write(&inv, text).unwrap();
    let (code, plan, err) = pvegpu(&inv, &["plan"], ROOT_TOKEN_SECRET).await;
    assert_eq!(code, 1);
    assert!(
        plan.contains(
            "storage `nvme` does not exist on node pvetest (it has: local, local-lvm, nvme-zfs)"
        ),
        "{plan}"
    );
    assert!(err.contains("refuses to converge pvetest"), "{err}");

    // a VM id taken by another VM; a card another VM holds
    lab.fake.state.lock().unwrap().vms.insert(
        201,
        fake_pve::Vm {
            node: "pvetest".into(),
            config: [
                ("name".to_string(), "db".to_string()),
                ("hostpci0".to_string(), "0000:00:04.0".to_string()),
            ]
            .into(),
            ..Default::default()
        },
    );
    let inv = lab.inventory(TOKEN, "");
    let (code, plan, _) = pvegpu(&inv, &["plan"], ROOT_TOKEN_SECRET).await;
    assert_eq!(code, 1);
    assert!(
        plan.contains("VM id 201 is taken by another VM, `db`"),
        "{plan}"
    );
    assert!(
        plan.contains("0000:00:04 (")
            && plan.contains("is already given to VM 201 `db` (hostpci0: 0000:00:04.0)"),
        "{plan}"
    );
    assert_eq!(lab.fake.state.lock().unwrap().vms.len(), 1);
    assert!(lab.fake.state.lock().unwrap().mappings.is_empty());

    // wrong token secret; wrong fingerprint; a card the host did not verify
    let (code, _, err) = pvegpu(&inv, &["plan"], "00000000-0000-4000-8000-000000000000").await;
    assert_eq!(
        code, 1,
        "an offline (--facts) plan that could not reach the VM phase is incomplete, not converged"
    );
    assert!(
        err.contains("the VM phase of pvetest could not be planned offline")
            && err.contains("error: the plan is incomplete")
            && err.contains("`--phase host`"),
        "{err}"
    );
    assert!(
        err.contains("authentication failed") && err.contains("hint: check the API token"),
        "{err}"
    );
    let text = std::fs::read_to_string(&inv).unwrap().replace(
        &lab.fake.fingerprint,
        &"AB:"
            .repeat(31)
            .to_string()
            .chars()
            .chain("CD".chars())
            .collect::<String>(),
    );
    std::fs::write(&inv, text).unwrap();
    let (code, _, err) = pvegpu(&inv, &["plan"], ROOT_TOKEN_SECRET).await;
    assert_eq!(
        code, 1,
        "an offline (--facts) plan that could not reach the VM phase is incomplete, not converged"
    );
    assert!(
        err.contains("the VM phase of pvetest could not be planned offline")
            && err.contains("error: the plan is incomplete")
            && err.contains("`--phase host`"),
        "{err}"
    );
    assert!(
        err.contains("does not match the pinned fingerprint")
            && err.contains(&lab.fake.fingerprint),
        "{err}"
    );
    lab.fake.state.lock().unwrap().vms.clear();
    let inv = lab.inventory(TOKEN, "gpus = [\"0000:00:05.0\"]");
    let (code, plan, _) = pvegpu(&inv, &["plan"], ROOT_TOKEN_SECRET).await;
    assert_eq!(code, 1);
    assert!(
        plan.contains("the VM's gpus list names 0000:00:05.0, which the host phase did not verify"),
        "{plan}"
    );
}

/// `firmware = "ovmf"`: the VM is created for UEFI passthrough (OVMF, q35, an EFI vars disk,
/// PCIe devices), with Microsoft's Secure Boot keys only when `secure_boot = true`; the fake
/// refuses to start `pcie=1` devices without q35, as PVE does. A second plan has nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ovmf_creates_a_q35_vm_with_an_efi_disk_and_pcie_devices_then_nothing() {
    for (extra, keys) in [
        ("firmware = \"ovmf\"", "pre-enrolled-keys=0"),
        (
            "firmware = \"ovmf\"\nsecure_boot = true",
            "pre-enrolled-keys=1",
        ),
    ] {
        let lab = Lab::start().await;
        let inv = lab.inventory(TOKEN, extra);
        let (code, plan, err) =
            pvegpu(&inv, &["plan", "--detailed-exitcode"], ROOT_TOKEN_SECRET).await;
        assert_eq!(code, 2, "{err}\n{plan}");
        for line in [
            "      bios: ovmf\n",
            "      machine: q35\n",
            &format!("      efidisk0: nvme-zfs:1,efitype=4m,{keys}\n"),
            "      hostpci0: mapping=gpu-00-03,pcie=1\n",
            "      hostpci1: mapping=gpu-00-04,pcie=1\n",
        ] {
            assert!(plan.contains(line), "{line:?} missing:\n{plan}");
        }

        let (code, out, err) = pvegpu(
            &inv,
            &["apply", "--yes", "-n", "pvetest"],
            ROOT_TOKEN_SECRET,
        )
        .await;
        assert_eq!(code, 0, "{err}\n{out}");
        {
            let st = lab.fake.state.lock().unwrap();
            let vm = &st.vms[&201];
            assert!(vm.running && vm.pending.is_empty() && vm.lock.is_none());
            assert_eq!(vm.config["bios"], "ovmf");
            assert_eq!(vm.config["machine"], "q35");
            let efi = &vm.config["efidisk0"];
            assert!(efi.starts_with("nvme-zfs:vm-201-disk-"), "{efi}");
            assert!(
                efi.contains(",efitype=4m,") && efi.contains(keys) && efi.ends_with(",size=528K"),
                "{efi}"
            );
            assert_eq!(vm.config["hostpci0"], "mapping=gpu-00-03,pcie=1");
            assert_eq!(vm.config["hostpci1"], "mapping=gpu-00-04,pcie=1");
            // Proxmox marks a disk made from a template with the 2023 certificates itself
            // (#16); the plan's enrollment then has nothing to do
            let keys = keys == "pre-enrolled-keys=1";
            assert_eq!(efi.contains(",ms-cert=2023k,"), keys, "{efi}");
            assert_eq!(vm.efivars_2023, keys);
        }
        assert_eq!(
            plan.contains("enroll the 2023 Microsoft UEFI CA into the new efidisk0"),
            keys == "pre-enrolled-keys=1",
            "{plan}"
        );

        let (code, plan, err) =
            pvegpu(&inv, &["plan", "--detailed-exitcode"], ROOT_TOKEN_SECRET).await;
        assert_eq!(code, 0, "{err}\n{plan}");
        assert!(plan.ends_with("No changes.\n"), "{plan}");
    }
}

/// `plan` with several nodes plans them concurrently: the fake holds every request until two
/// are in flight together, which only happens when the second node's API calls start while
/// the first node's are still waiting. (Sequential planning would get its first answer only
/// after the fake's hold limit, and `hold_met` would stay false.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_for_several_nodes_run_concurrently() {
    let mut cluster = fake_pve::testhost_cluster();
    let mut second = cluster.nodes["pvetest"].clone();
    second.name = "pvetest2".into();
    cluster.nodes.insert("pvetest2".into(), second);
    let lab = Lab {
        fake: FakePve::start_with(cluster).await,
        dir: tempfile::tempdir().unwrap(),
    };
    let one = lab.inventory(TOKEN, "");
    let text = std::fs::read_to_string(&one).unwrap();
    // the same node again as pvetest2, which its [api] table names, with its own VM id
    let twin = text
        .replace("[nodes.pvetest", "[nodes.pvetest2")
        .replace("vmid = 201", "vmid = 202")
        .replace(
            "token = \"root@pam!pvegpu\"",
            "token = \"root@pam!pvegpu\"\nnode = \"pvetest2\"",
        );
    let inv = lab.dir.path().join("two.toml");
    std::fs::write(&inv, format!("{text}\n{twin}")).unwrap();
    let converged = std::fs::read_to_string(lab.dir.path().join("pvetest.facts")).unwrap();
    let mut files = Vec::new();
    for name in ["pvetest", "pvetest2"] {
        let path = lab.dir.path().join(format!("{name}.saved.facts"));
        std::fs::write(&path, pvegpu::host::gather::saved_text(name, &converged)).unwrap();
        files.push(path);
    }

    lab.fake.hold_until_in_flight(2);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pvegpu"));
    cmd.arg("-i")
        .arg(&inv)
        .args(["plan", "--detailed-exitcode"]);
    for f in &files {
        cmd.arg("--facts").arg(f);
    }
    cmd.env("PVEGPU_TOKEN_SECRET", ROOT_TOKEN_SECRET)
        .env("NO_COLOR", "1");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let (plan, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(2), "{err}\n{plan}");
    assert!(
        plan.contains("+ create VM 201") && plan.contains("+ create VM 202"),
        "both nodes are planned: {plan}"
    );
    assert!(
        plan.find("create VM 201") < plan.find("create VM 202"),
        "plans are shown in the order of the files: {plan}"
    );
    assert!(
        lab.fake.hold_met(),
        "the second node's requests did not start while the first node's were held (at most {} in flight)",
        lab.fake.max_in_flight()
    );
    assert!(lab.fake.max_in_flight() >= 2);
    let nodes: std::collections::BTreeSet<String> = lab
        .fake
        .accepted()
        .iter()
        .filter_map(|r| r.path.strip_prefix("/nodes/"))
        .filter_map(|p| p.split('/').next())
        .map(str::to_string)
        .collect();
    assert_eq!(
        nodes.into_iter().collect::<Vec<_>>(),
        ["pvetest", "pvetest2"],
        "each node's VM phase asked about its own Proxmox node"
    );
}

/// `-v` logs each API request (method, path, status, time), `-vv` adds bodies and replies; no
/// token secret, password, ticket or CSRF token reaches the log (pvegpu() checks the tokens).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_logs_requests_and_replies_without_secrets() {
    const PASSWORD: &str = "Corr3ct-H0rse-Battery";
    let lab = Lab::start().await;
    let inv = lab.inventory(TOKEN, "");
    let (code, _, err) = pvegpu(&inv, &["-v", "plan"], ROOT_TOKEN_SECRET).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("api GET /") && l.contains("-> 200 in ")),
        "{err}"
    );
    assert!(!err.contains(" reply: "), "-v logs no bodies: {err}");
    let (_, _, err) = pvegpu(&inv, &["-vv", "plan"], ROOT_TOKEN_SECRET).await;
    assert!(err.contains("reply: {\"data\":"), "{err}");

    lab.fake
        .state
        .lock()
        .unwrap()
        .users
        .insert("root@pam".into(), PASSWORD.into());
    let inv = lab.inventory("user = \"root@pam\"", "");
    let facts = inv.with_file_name("pvetest.facts");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pvegpu"));
    cmd.arg("-i")
        .arg(&inv)
        .args(["-vv", "plan", "--facts"])
        .arg(facts)
        .env("PVEGPU_PASSWORD", PASSWORD)
        .env("NO_COLOR", "1");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("api POST /access/ticket body: ") && err.contains("password=<redacted>"),
        "{err}"
    );
    let tickets = lab.fake.state.lock().unwrap().tickets.clone();
    assert!(!tickets.is_empty());
    assert!(!err.contains(PASSWORD), "the password leaked");
    for t in &tickets {
        assert!(!err.contains(&t.ticket), "a ticket leaked");
        assert!(!err.contains(&t.csrf), "a CSRF token leaked");
    }
}

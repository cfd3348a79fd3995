//! Where a real Proxmox VE is stricter than a lenient fake would be (issue #19), end to end:
//! the pvegpu binary against the fake over HTTPS, the fake holding each rule as the real
//! server's source has it (tests/support/fake_pve names the file for each). One test per
//! rule: the mapping file's digest, privileges of a privilege-separated token, a mapping
//! checked against the hardware at start, a guest agent that does not answer, a VM id taken
//! between plan and apply, and a cloud-init drive added to a running VM.

#[path = "support/fake_pve/mod.rs"]
mod fake_pve;
mod support;
#[path = "support/vm_lab.rs"]
mod vm_lab;
use fake_pve::{PciMapping, ROOT_TOKEN_SECRET, Token, Vm};
use vm_lab::{Lab, LibraryPlan, TOKEN, pvegpu};

const APPLY: &[&str] = &["apply", "--yes", "-n", "pvetest"];

/// The facts of the test host with the network card's subsystem id reading 0000:0000, as
/// many cards' do.
fn zero_subsystem(inv: &std::path::Path) {
    let facts = inv.with_file_name("pvetest.facts");
    let text = std::fs::read_to_string(&facts).unwrap();
    let edited = text.replace(
        "0000:00:04.0 class=0x020000 vendor=0x8086 device=0x100e svendor=0x1af4 sdevice=0x1100",
        "0000:00:04.0 class=0x020000 vendor=0x8086 device=0x100e svendor=0x0000 sdevice=0x0000",
    );
    assert_ne!(text, edited, "the fixture has the card's line");
    std::fs::write(facts, edited).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_mapping_updates_in_one_apply_each_send_the_file_digest_of_that_moment() {
    let lab = Lab::start().await;
    let inv = lab.inventory(TOKEN, "");
    {
        // Mappings as an older pvegpu wrote them: no subsystem-id, which the start now needs.
        let mut st = lab.fake.state.lock().unwrap();
        for (id, entry) in [
            (
                "gpu-00-03",
                "node=pvetest,path=0000:00:03,id=1234:11e8,iommugroup=3",
            ),
            (
                "gpu-00-04",
                "node=pvetest,path=0000:00:04,id=8086:100e,iommugroup=4",
            ),
        ] {
            st.mappings.insert(
                id.into(),
                PciMapping {
                    map: vec![entry.into()],
                    ..Default::default()
                },
            );
        }
    }
    let (code, plan, err) = pvegpu(&inv, &["plan"], ROOT_TOKEN_SECRET).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(plan.matches("update PCI mapping").count(), 2, "{plan}");

    let (code, _, err) = pvegpu(&inv, APPLY, ROOT_TOKEN_SECRET).await;
    assert_eq!(code, 0, "{err}");
    let puts: Vec<_> = lab
        .fake
        .accepted()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path.starts_with("/cluster/mapping/pci/"))
        .collect();
    assert_eq!(puts.len(), 2, "both mapping writes accepted: {puts:?}");
    let digests: Vec<_> = puts.iter().map(|r| r.params["digest"].clone()).collect();
    assert_ne!(
        digests[0], digests[1],
        "the second write carries the new digest"
    );
    let st = lab.fake.state.lock().unwrap();
    assert!(
        st.vms[&201].running,
        "the VM started with both mappings valid"
    );
    assert!(
        st.mappings["gpu-00-04"].map[0].ends_with(",subsystem-id=1af4:1100"),
        "{:?}",
        st.mappings["gpu-00-04"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_edited_during_the_apply_is_not_overwritten() {
    let lab = Lab::start().await;
    let inv = lab.inventory(TOKEN, "");
    lab.fake.state.lock().unwrap().mappings.insert(
        "gpu-00-03".into(),
        PciMapping {
            map: vec!["node=pvetest,path=0000:00:03,id=1234:11e8,iommugroup=3".into()],
            ..Default::default()
        },
    );
    // A plan made by the library, then someone adds another node's entry to the mapping
    // before the apply writes it.
    let made = LibraryPlan::make(&inv).await;
    lab.fake
        .state
        .lock()
        .unwrap()
        .mappings
        .get_mut("gpu-00-03")
        .unwrap()
        .map
        .push("node=other,path=0000:41:00,id=10de:2204".into());
    let e = made.execute().await.unwrap_err();
    assert!(
        e.to_string()
            .contains("PCI mapping gpu-00-03 changed since the plan read it"),
        "{e}"
    );
    let st = lab.fake.state.lock().unwrap();
    assert_eq!(
        st.mappings["gpu-00-03"].map.len(),
        2,
        "the other entry kept"
    );
    assert!(st.vms.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_subsystem_id_is_sent_as_proxmox_defines_it_and_the_vm_starts() {
    let lab = Lab::start().await;
    let inv = lab.inventory(TOKEN, "");
    zero_subsystem(&inv);
    {
        let mut st = lab.fake.state.lock().unwrap();
        let nic = st
            .nodes
            .get_mut("pvetest")
            .unwrap()
            .pci
            .iter_mut()
            .find(|d| d.id == "0000:00:04.0")
            .unwrap();
        nic.subsystem_vendor = "0x0000".into();
        nic.subsystem_device = "0x0000".into();
    }
    let (code, plan, err) = pvegpu(&inv, &["plan"], ROOT_TOKEN_SECRET).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        plan.contains("path=0000:00:04,id=8086:100e,iommugroup=4,subsystem-id=0000:0000"),
        "{plan}"
    );
    let (code, _, err) = pvegpu(&inv, APPLY, ROOT_TOKEN_SECRET).await;
    assert_eq!(code, 0, "{err}");
    assert!(lab.fake.state.lock().unwrap().vms[&201].running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_without_the_subsystem_id_fails_the_start_as_on_a_real_node() {
    // The fake's rule itself, seen through pvegpu: a hand-made mapping (not pvegpu's id)
    // that lacks subsystem-id is refused at plan, since the start would fail.
    let lab = Lab::start().await;
    let inv = lab.inventory(TOKEN, "");
    lab.fake.state.lock().unwrap().mappings.insert(
        "lab-nic".into(),
        PciMapping {
            map: vec!["node=pvetest,path=0000:00:04,id=8086:100e,iommugroup=4".into()],
            ..Default::default()
        },
    );
    let (code, plan, _) = pvegpu(&inv, &["plan"], ROOT_TOKEN_SECRET).await;
    assert_eq!(code, 1, "refused: {plan}");
    assert!(
        plan.contains("the PCI mapping `lab-nic` for 0000:00:04 disagrees with the verified host: subsystem-id (none) -> 1af4:1100"),
        "{plan}"
    );
    // What the real start says when such a mapping is used anyway.
    let mut st = lab.fake.state.lock().unwrap();
    st.vms.insert(
        300,
        Vm {
            node: "pvetest".into(),
            config: [("hostpci0".to_string(), "mapping=lab-nic".to_string())].into(),
            ..Default::default()
        },
    );
    let upid = st.spawn_task(
        "pvetest",
        "qmstart",
        "300",
        "root@pam",
        None,
        fake_pve::Effect::Start { vmid: 300 },
    );
    st.finish_task(&upid);
    assert_eq!(
        st.tasks[&upid].exitstatus.as_deref(),
        Some(
            "PCI device mapping invalid (hardware probably changed): missing expected property 'subsystem-id' for device '0000:00:04.0' "
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dhcp_without_a_guest_agent_says_why_the_address_cannot_be_known() {
    let lab = Lab::start().await;
    let text = lab
        .inventory_text(TOKEN, "")
        .replace("ip = \"10.3.0.201/8\"", "ip = \"dhcp\"")
        .replace("gateway = \"10.0.0.45\"\n", "")
        .replace("reach_timeout = 20", "reach_timeout = 3");
    let inv = lab.write_inventory(&text);
    lab.fake.state.lock().unwrap().agents_down = true;
    let (code, _, err) = pvegpu(&inv, APPLY, ROOT_TOKEN_SECRET).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("VM 201 started but was not reachable within 3 s (guest agent:")
            && err.contains("QEMU guest agent is not running"),
        "{err}"
    );
    assert!(
        err.contains("with `ip = \"dhcp\"` it is the only way pvegpu learns the VM's address")
            && err.contains("qemu-guest-agent"),
        "{err}"
    );
    assert!(lab.fake.state.lock().unwrap().vms[&201].running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_id_taken_after_the_plan_is_left_alone() {
    let lab = Lab::start().await;
    let inv = lab.inventory(TOKEN, "");
    let theirs = Vm {
        node: "pvetest".into(),
        config: [("name".to_string(), "someone-elses".to_string())].into(),
        lock: Some("create".into()),
        ..Default::default()
    };
    lab.fake.state.lock().unwrap().taken_before_create = Some((201, theirs));
    let (code, _, err) = pvegpu(&inv, APPLY, ROOT_TOKEN_SECRET).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("creating VM 201 failed; Proxmox refused before creating anything"),
        "{err}"
    );
    assert!(
        err.contains("unable to create VM 201 - VM 201 already exists on node 'pvetest'"),
        "{err}"
    );
    assert!(
        err.contains("hint: the VM id was taken after the plan"),
        "{err}"
    );
    let deletes = lab
        .fake
        .all_requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .count();
    assert_eq!(deletes, 0, "nothing deleted");
    let st = lab.fake.state.lock().unwrap();
    assert_eq!(st.vms[&201].config["name"], "someone-elses");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_init_drive_added_to_a_running_vm_is_planned_with_its_restart() {
    let lab = Lab::start().await;
    let inv = lab.inventory(TOKEN, "");
    let (code, _, err) = pvegpu(&inv, APPLY, ROOT_TOKEN_SECRET).await;
    assert_eq!(code, 0, "{err}");
    let drive = {
        let mut st = lab.fake.state.lock().unwrap();
        let vm = st.vms.get_mut(&201).unwrap();
        assert!(vm.running);
        let drive = vm
            .config
            .remove("ide2")
            .expect("created with a cloud-init drive");
        vm.config.insert("ciuser".into(), "someone".into());
        drive
    };
    let (code, plan, err) = pvegpu(&inv, &["plan"], ROOT_TOKEN_SECRET).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        plan.contains("ide2: (unset) -> nvme-zfs:cloudinit  [needs stop+start]"),
        "{plan}"
    );
    assert!(
        plan.contains("shut the running VM down and start it again: ide2"),
        "{plan}"
    );
    let (code, _, err) = pvegpu(&inv, APPLY, ROOT_TOKEN_SECRET).await;
    assert_eq!(code, 0, "{err}");
    let st = lab.fake.state.lock().unwrap();
    let vm = &st.vms[&201];
    assert!(vm.running && vm.pending.is_empty(), "{:?}", vm.pending);
    assert_eq!(vm.config["ide2"], drive);
    assert_eq!(vm.config["ciuser"], "raphael");
}

/// The privileges of README's role recipe (`pveum role add PVEGPU --privs "..."`).
fn readme_role_privileges() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("pveum role add PVEGPU --privs "))
        .expect("README has the role recipe");
    let privs = line.split('"').nth(1).expect("quoted privileges");
    privs.split_whitespace().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readmes_role_recipe_is_enough_for_a_privsep_token_end_to_end() {
    let lab = Lab::start().await;
    let privs = readme_role_privileges();
    assert!(privs.len() > 10, "{privs:?}");
    const SECRET: &str = "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6";
    {
        let mut st = lab.fake.state.lock().unwrap();
        let on_root: Vec<(String, String)> =
            privs.iter().map(|p| ("/".to_string(), p.clone())).collect();
        st.users.insert("pvegpu@pve".into(), "unused".into());
        st.user_acls.insert("pvegpu@pve".into(), on_root.clone());
        st.tokens.insert(
            "pvegpu@pve!automation".into(),
            Token {
                secret: SECRET.into(),
                grants: Some(on_root),
            },
        );
    }
    let inv = lab.inventory("token = \"pvegpu@pve!automation\"", "");
    let (code, _, err) = pvegpu(&inv, APPLY, SECRET).await;
    assert_eq!(code, 0, "{err}");
    assert!(lab.fake.state.lock().unwrap().vms[&201].running);
    let (code, plan, err) = pvegpu(&inv, &["plan", "--detailed-exitcode"], SECRET).await;
    assert_eq!(code, 0, "{err}\n{plan}");

    // The same token whose user lost one privilege: a privsep token holds only what both
    // hold, and the plan names it.
    {
        let mut st = lab.fake.state.lock().unwrap();
        st.user_acls
            .get_mut("pvegpu@pve")
            .unwrap()
            .retain(|(_, p)| p != "VM.Config.Memory");
        st.vms
            .get_mut(&201)
            .unwrap()
            .config
            .insert("memory".into(), "4096".into());
    }
    let (code, plan, _) = pvegpu(&inv, &["plan", "--detailed-exitcode"], SECRET).await;
    assert_eq!(code, 1, "{plan}");
    assert!(
        plan.contains("- VM.Config.Memory on /vms/201: to set memory"),
        "{plan}"
    );
}

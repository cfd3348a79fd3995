//! Rootless Podman CDI diagnosis on real specs, device listings and driver versions
//! (fixtures/verify/SOURCES.md).

mod support;
mod verify_support;
use pvegpu::verify::Status;
use pvegpu::verify::podman::{CdiSpecFile, PodmanInputs, checks, parse_spec};
use support::read;
use verify_support::find;

fn spec(path: &str, fixture: &str) -> CdiSpecFile {
    CdiSpecFile {
        path: path.into(),
        content: read(&format!("verify/cdi/{fixture}")),
    }
}

const ALICE: &str = "uid=1000(alice) gid=1000(alice) groups=1000(alice),27(sudo),44(video)\n";

fn healthy() -> PodmanInputs {
    PodmanInputs {
        specs: vec![spec("/etc/cdi/nvidia.yaml", "nvidia-575.64.03.yaml")],
        requested: vec!["nvidia.com/gpu=all".into(), "nvidia.com/gpu=0".into()],
        driver_version: Some("575.64.03\n".into()),
        dev_listing: Some(read("verify/dev/ls-dev-nvidia-0666.txt")),
        id: Some(ALICE.into()),
        mig: false,
    }
}

#[test]
fn real_generated_spec_parses() {
    let s = parse_spec(&spec("/etc/cdi/nvidia.yaml", "nvidia-575.64.03.yaml")).unwrap();
    assert_eq!(s.kind.as_deref(), Some("nvidia.com/gpu"));
    assert_eq!(
        s.devices,
        vec!["0", "GPU-520e01f2-cf30-6396-abef-e8e9a5233b0e", "all"]
    );
    assert!(s.device_nodes.contains("/dev/nvidia-uvm-tools"));
    assert!(s.device_nodes.contains("/dev/nvidia0"));
    assert_eq!(
        s.driver_versions.iter().collect::<Vec<_>>(),
        vec!["575.64.03"]
    );
}

#[test]
fn healthy_rootless_setup_passes() {
    let c = checks(&healthy());
    assert!(c.iter().all(|c| c.status == Status::Pass), "{c:#?}");
}

#[test]
fn seed_000_spec_without_uvm() {
    let mut i = healthy();
    i.specs = vec![spec("/etc/cdi/nvidia.yaml", "nvidia-no-uvm-issue50.yaml")];
    i.requested = vec!["nvidia.com/gpu=0".into()];
    let c = checks(&i);
    let uvm = find(&c, "CDI spec lists nvidia-uvm");
    assert_eq!(uvm.status, Status::Fail);
    assert!(
        uvm.saw
            .contains("lacks /dev/nvidia-uvm and /dev/nvidia-uvm-tools"),
        "{}",
        uvm.saw
    );
    assert!(
        uvm.fix
            .as_deref()
            .unwrap()
            .contains("nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml")
    );
    // the #50 spec pins no versioned library: the freshness check cannot tell
    assert_eq!(
        find(&c, "CDI spec matches the loaded driver").status,
        Status::Skip
    );
}

#[test]
fn spec_only_in_the_users_config_dir_is_not_read() {
    let mut i = healthy();
    i.specs = vec![spec(
        "/home/alice/.config/cdi/nvidia.yaml",
        "nvidia-575.64.03.yaml",
    )];
    let c = checks(&i);
    let place = find(&c, "CDI spec where Podman reads it");
    assert_eq!(place.status, Status::Fail);
    assert!(
        place
            .cause
            .as_deref()
            .unwrap()
            .contains("~/.config/cdi is ignored")
    );
    assert!(
        place
            .fix
            .as_deref()
            .unwrap()
            .contains("--output=/etc/cdi/nvidia.yaml")
    );
}

#[test]
fn stale_spec_after_a_driver_upgrade() {
    let mut i = healthy();
    i.driver_version = Some(read(
        "verify/dev/proc-driver-nvidia-version-575.57.08-open.txt",
    ));
    let c = checks(&i);
    let fresh = find(&c, "CDI spec matches the loaded driver");
    assert_eq!(fresh.status, Status::Fail);
    assert_eq!(
        fresh.saw,
        "/etc/cdi/nvidia.yaml mounts driver 575.64.03, loaded is 575.57.08"
    );
    let mut i = healthy();
    i.driver_version = Some(read("verify/dev/proc-driver-nvidia-version-515.76.txt"));
    assert_eq!(
        find(&checks(&i), "CDI spec matches the loaded driver").status,
        Status::Fail
    );
}

#[test]
fn requested_device_the_spec_lacks() {
    let mut i = healthy();
    i.requested = vec!["nvidia.com/gpu=1".into()];
    let c = checks(&i);
    let r = find(&c, "requested CDI devices defined");
    assert_eq!(r.status, Status::Fail);
    assert!(
        r.saw.starts_with("nvidia.com/gpu=1 not defined"),
        "{}",
        r.saw
    );
}

#[test]
fn device_node_permissions() {
    let mut i = healthy();
    i.dev_listing = Some(read("verify/dev/ls-dev-nvidia-video-group.txt"));
    let c = checks(&i);
    let n = find(&c, "device nodes usable by the user");
    assert_eq!(
        n.status,
        Status::Warn,
        "alice is in video, but rootless Podman drops the group"
    );
    assert!(
        n.fix
            .as_deref()
            .unwrap()
            .contains("--group-add keep-groups")
    );

    i.id = Some("uid=1001(bob) gid=1001(bob) groups=1001(bob)\n".into());
    let c = checks(&i);
    assert_eq!(
        find(&c, "device nodes usable by the user").status,
        Status::Fail
    );

    i.dev_listing = Some(read("verify/dev/ls-dev-nvidia-gentoo-restrictive.txt"));
    i.id = Some(ALICE.into());
    let c = checks(&i);
    let n = find(&c, "device nodes usable by the user");
    assert_eq!(n.status, Status::Fail);
    assert!(
        n.saw.contains("/dev/nvidiactl c-w--wx-wT root:video"),
        "{}",
        n.saw
    );
}

#[test]
fn missing_uvm_tools_node() {
    let mut i = healthy();
    i.dev_listing = Some(read("verify/dev/ls-dev-nvidia-no-uvm-tools.txt"));
    let c = checks(&i);
    let n = find(&c, "nvidia-uvm device nodes exist");
    assert_eq!(n.status, Status::Fail);
    assert_eq!(n.saw, "missing /dev/nvidia-uvm-tools");
    assert!(
        n.fix
            .as_deref()
            .unwrap()
            .contains("nvidia-modprobe -u -c=0")
    );
}

#[test]
fn mig_capability_nodes() {
    let mut i = healthy();
    i.mig = true;
    // 0666 listing has no /dev/nvidia-caps at all
    assert_eq!(
        find(&checks(&i), "MIG capability nodes readable").status,
        Status::Fail
    );
    // gentoo listing: cap1 root-only (by design), cap2 world-readable
    i.dev_listing = Some(read("verify/dev/ls-dev-nvidia-gentoo-restrictive.txt"));
    assert_eq!(
        find(&checks(&i), "MIG capability nodes readable").status,
        Status::Pass
    );
    let listing = read("verify/dev/ls-dev-nvidia-gentoo-restrictive.txt").replace(
        "cr--r--r--  1 root root 237, 2",
        "cr--------  1 root root 237, 2",
    );
    i.dev_listing = Some(listing);
    let c = checks(&i);
    let m = find(&c, "MIG capability nodes readable");
    assert_eq!(m.status, Status::Fail);
    assert!(m.saw.contains("/dev/nvidia-caps/nvidia-cap2"), "{}", m.saw);
}

#[test]
fn broken_spec_and_no_spec() {
    let mut i = healthy();
    i.specs.push(CdiSpecFile {
        path: "/var/run/cdi/broken.yaml".into(),
        content: "cdiVersion: 0.5.0\nkind: [unclosed\n".into(),
    });
    let c = checks(&i);
    assert_eq!(find(&c, "CDI spec parses").status, Status::Fail);
    i.specs.clear();
    let c = checks(&i);
    assert_eq!(
        find(&c, "CDI spec where Podman reads it").status,
        Status::Fail
    );
}

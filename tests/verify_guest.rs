//! Guest layer of verify on recorded command output (sources in fixtures/verify/SOURCES.md).

mod support;
mod verify_support;
use pvegpu::verify::Status;
use pvegpu::verify::guest::{GuestExpect, GuestOutputs, checks};
use support::read;
use verify_support::find;

pub fn healthy() -> GuestOutputs {
    GuestOutputs {
        uname_r: Some("6.1.0-35-amd64\n".into()),
        lsmod: Some(read("verify/guest/lsmod-nvidia.txt")),
        nvidia_smi: Some(read("verify/guest/nvidia-smi-query-2x1080.txt")),
        dkms_status: Some(read("verify/guest/dkms-both-kernels.txt")),
        kernels: Some(read("verify/guest/boot-kernels.txt")),
    }
}

fn two_1080() -> GuestExpect {
    GuestExpect {
        addresses: vec!["0000:01:00".parse().unwrap(), "0000:02:00".parse().unwrap()],
        count: 2,
        compute_cap: Some("6.1".into()),
    }
}

#[test]
fn healthy_guest_passes() {
    let c = checks(&healthy(), &two_1080());
    assert!(c.iter().all(|c| c.status == Status::Pass), "{c:#?}");
    assert_eq!(c.len(), 5, "{c:#?}");
}

#[test]
fn gpu_missing_and_wrong_compute_capability() {
    let mut expect = two_1080();
    expect.addresses.push("0000:03:00".parse().unwrap());
    expect.compute_cap = Some("7.5".into());
    let c = checks(&healthy(), &expect);
    let seen = find(&c, "nvidia-smi sees every GPU");
    assert_eq!(seen.status, Status::Fail);
    assert!(seen.saw.starts_with("missing 0000:03:00"), "{}", seen.saw);
    let cc = find(&c, "compute capability");
    assert_eq!(cc.status, Status::Fail);
    assert!(cc.saw.contains("0000:01:00.0 has 6.1"), "{}", cc.saw);
}

#[test]
fn new_kernel_without_dkms_module() {
    let mut out = healthy();
    out.dkms_status = Some(read("verify/guest/dkms-old-kernel-only.txt"));
    let c = checks(&out, &two_1080());
    let dkms = find(&c, "DKMS built for every kernel");
    assert_eq!(dkms.status, Status::Fail);
    assert!(
        dkms.saw.ends_with("not built for 6.1.0-35-amd64"),
        "{}",
        dkms.saw
    );
    assert!(dkms.cause.as_deref().unwrap().contains("newest kernel"));
    assert!(
        dkms.fix
            .as_deref()
            .unwrap()
            .contains("linux-headers-6.1.0-35-amd64")
    );
    // running 6.1.0-35 with the module loaded anyway (built by hand): loaded passes
    assert_eq!(find(&c, "nvidia driver loaded").status, Status::Pass);
}

#[test]
fn no_driver_for_the_running_kernel() {
    let mut out = healthy();
    out.lsmod =
        Some("Module                  Size  Used by\nvideo                  73728  0\n".into());
    out.nvidia_smi = Some(read("verify/guest/nvidia-smi-no-driver.txt"));
    out.dkms_status = Some(read("verify/guest/dkms-old-kernel-only.txt"));
    let c = checks(&out, &two_1080());
    let loaded = find(&c, "nvidia driver loaded");
    assert_eq!(loaded.status, Status::Fail);
    assert!(
        loaded
            .cause
            .as_deref()
            .unwrap()
            .contains("running kernel 6.1.0-35-amd64")
    );
    let seen = find(&c, "nvidia-smi sees every GPU");
    assert_eq!(seen.status, Status::Fail);
    assert!(
        seen.saw
            .contains("couldn't communicate with the NVIDIA driver"),
        "{}",
        seen.saw
    );
}

#[test]
fn nouveau_and_missing_uvm() {
    let mut out = healthy();
    out.lsmod = Some(read("verify/guest/lsmod-nouveau.txt"));
    let c = checks(&out, &two_1080());
    assert!(
        find(&c, "nvidia driver loaded")
            .fix
            .as_deref()
            .unwrap()
            .contains("blacklist nouveau")
    );
    out.lsmod = Some(read("verify/guest/lsmod-nvidia-no-uvm.txt"));
    let c = checks(&out, &two_1080());
    assert_eq!(find(&c, "nvidia-uvm loaded").status, Status::Warn);
}

#[test]
fn missing_outputs_are_not_checked_rather_than_passed() {
    let c = checks(&GuestOutputs::default(), &two_1080());
    assert!(c.iter().all(|c| c.status == Status::Skip), "{c:#?}");
}

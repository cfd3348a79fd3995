//! The planner and `verify` read each fact through one parser, so they reach the same verdict
//! on the same text. Each test feeds one input to both callers, on an input where their former
//! parsers disagreed.

mod support;
mod verify_support;
use pvegpu::facts::{RawFacts, cdi};
use pvegpu::guest::GuestFacts;
use pvegpu::verify::Status;
use pvegpu::verify::guest::{GuestExpect, GuestOutputs, checks};
use verify_support::find;

/// Guest facts with the given sections after the two the parser requires.
fn guest_facts(sections: &str) -> GuestFacts {
    let text = format!(
        "### pvegpu facts 1\n### pvegpu uname\n6.1.0-35-amd64\n### pvegpu os-release\nID=debian\nVERSION_ID=\"12\"\n{sections}"
    );
    GuestFacts::from_raw(&RawFacts::parse(&text).unwrap()).unwrap()
}

/// lsmod's header was a loaded module `Module` to the planner; verify skipped it. Both skip it
/// now (verify's stricter reading), and both see nouveau rather than nvidia.
#[test]
fn lsmod_header_is_no_module_to_either() {
    let lsmod = "Module                  Size  Used by\nnouveau              2875392  1\n";
    let f = guest_facts(&format!(
        "### pvegpu proc-modules\n{lsmod}### pvegpu exit 0\n"
    ));
    assert!(!f.module_loaded("Module"));
    assert!(f.module_loaded("nouveau") && !f.module_loaded("nvidia"));
    let out = GuestOutputs {
        uname_r: Some("6.1.0-35-amd64\n".into()),
        lsmod: Some(lsmod.into()),
        ..GuestOutputs::default()
    };
    let c = checks(&out, &GuestExpect::default());
    let loaded = find(&c, "nvidia driver loaded");
    assert_eq!(loaded.status, Status::Fail);
    assert!(
        loaded.saw.starts_with("nouveau is loaded"),
        "{}",
        loaded.saw
    );
}

/// The host read PRETTY_NAME on its own and kept single quotes; the guest's reading drops
/// them, and the host uses it now.
#[test]
fn os_release_reads_alike_on_host_and_guest() {
    let os = "PRETTY_NAME='Debian GNU/Linux 12 (bookworm)'\nID=debian\nVERSION_ID=\"12\"\n";
    let host = support::facts(&format!(
        "### pvegpu facts 1\n### pvegpu uname\n6.8.12-10-pve\n### pvegpu proc-cmdline\nro quiet\n### pvegpu lspci\n02:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [GeForce GTX 1080] [10de:1b80] (rev a1)\n### pvegpu os-release\n{os}"
    ));
    let guest = pvegpu::guest::parse::os_release(os);
    assert_eq!(host.os.as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
    assert_eq!(host.os.as_deref(), Some(guest.pretty_name.as_str()));
}

/// A four-field row was a GPU to verify (with no compute capability) and not to the planner;
/// `[N/A]` was a compute capability to the planner and none to verify. The stricter reading
/// of each is kept: a row is five fields with a PCI address and a `GPU-` UUID, and `[N/A]` is
/// no capability.
#[test]
fn nvidia_smi_rows_read_alike() {
    let short = "00000000:01:00.0, GPU-c6467c28-be24-03ad-e7ea-9bc0e989488f, NVIDIA GeForce GTX 1080, 470.256.02\n";
    let f = guest_facts(&format!(
        "### pvegpu nvidia-smi\n{short}### pvegpu exit 0\n"
    ));
    assert!(f.smi.is_empty());
    let out = GuestOutputs {
        nvidia_smi: Some(short.into()),
        ..GuestOutputs::default()
    };
    let expect = GuestExpect {
        count: 1,
        ..GuestExpect::default()
    };
    assert_eq!(
        find(&checks(&out, &expect), "nvidia-smi sees every GPU").status,
        Status::Fail
    );

    let na = "00000000:01:00.0, GPU-c6467c28-be24-03ad-e7ea-9bc0e989488f, NVIDIA GeForce GTX 1080, 535.247.01, [N/A]\n";
    let f = guest_facts(&format!("### pvegpu nvidia-smi\n{na}### pvegpu exit 0\n"));
    assert_eq!(f.smi.len(), 1);
    assert_eq!(f.smi[0].compute_cap, None);
    let out = GuestOutputs {
        nvidia_smi: Some(na.into()),
        ..GuestOutputs::default()
    };
    let expect = GuestExpect {
        count: 1,
        compute_cap: Some("6.1".into()),
        ..GuestExpect::default()
    };
    let c = checks(&out, &expect);
    assert_eq!(find(&c, "nvidia-smi sees every GPU").status, Status::Pass);
    assert_eq!(find(&c, "compute capability").status, Status::Skip);
}

/// A spec that mounts two drivers' libraries: the planner's line scan took the first version
/// and found the spec made for the loaded driver, verify found it stale. Both read it with one
/// parser now and keep verify's stricter verdict: a spec made for several drivers is made for
/// none, so the planner regenerates it and verify fails it.
#[test]
fn a_cdi_spec_for_two_drivers_is_stale_to_both() {
    let loaded = "575.64.03";
    let excerpt = "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n  - hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.575.64.03\n  - hostPath: /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.570.133.20\n";
    let f = guest_facts(&format!(
        "### pvegpu cdi /etc/cdi/nvidia.yaml mtime=1790000000\n{excerpt}### pvegpu exit 0\n"
    ));
    let planned = &f.cdi_specs[0];
    assert_eq!(planned.kind.as_deref(), Some("nvidia.com/gpu"));
    // the planner regenerates a spec whose driver_version is not the loaded driver
    assert_eq!(planned.driver_version, None);
    assert_eq!(planned.driver_versions.len(), 2);

    let full = support::read("verify/cdi/nvidia-575.64.03.yaml")
        .replace("libnvidia-ml.so.575.64.03", "libnvidia-ml.so.570.133.20");
    let c = pvegpu::verify::podman::checks(&pvegpu::verify::podman::PodmanInputs {
        specs: vec![pvegpu::verify::podman::CdiSpecFile {
            path: "/etc/cdi/nvidia.yaml".into(),
            content: full,
        }],
        driver_version: Some(format!("{loaded}\n")),
        ..Default::default()
    });
    let m = find(&c, "CDI spec matches the loaded driver");
    assert_eq!(m.status, Status::Fail);
    assert!(m.saw.contains("570.133.20, 575.64.03"), "{}", m.saw);
}

/// The planner reads the guest probe's excerpt of a spec, verify the whole spec; both
/// readings give the same kind and driver.
#[test]
fn a_cdi_excerpt_reads_like_its_spec() {
    let full = "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: all\n  containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia0\ncontainerEdits:\n  mounts:\n  - hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.535.216.03\n    containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.535.216.03\n";
    let excerpt = "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n  - hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.535.216.03\n    containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.535.216.03\n";
    let a = cdi::parse("/etc/cdi/nvidia.yaml", full).unwrap();
    let b = cdi::parse_excerpt("/etc/cdi/nvidia.yaml", excerpt);
    assert_eq!((&a.kind, &a.driver_version), (&b.kind, &b.driver_version));
    assert_eq!(a.driver_version.as_deref(), Some("535.216.03"));
    assert_eq!(a.devices, ["all"]);
}

/// nvidia-smi's recorded failures: no GPU to the planner, and the failure itself is what
/// verify shows.
#[test]
fn recorded_nvidia_smi_failures_are_no_gpu_to_either() {
    for line in support::read("guest/recorded/nvidia-smi-errors.txt").lines() {
        let f = guest_facts(&format!(
            "### pvegpu nvidia-smi\n{line}\n### pvegpu exit 9\n"
        ));
        assert!(f.smi.is_empty(), "{line}");
        let out = GuestOutputs {
            nvidia_smi: Some(format!("{line}\n")),
            ..GuestOutputs::default()
        };
        let seen = find(
            &checks(&out, &GuestExpect::default()),
            "nvidia-smi sees every GPU",
        )
        .clone();
        assert_eq!(seen.status, Status::Fail, "{line}");
        assert!(seen.saw.contains(line.trim()), "{}", seen.saw);
    }
}

/// An error line in a kernel listing was a bootable kernel `ls:` to the planner (which would
/// have planned a DKMS build for it) and nothing to verify. One reading now, verify's stricter
/// one: a line names a kernel only when it starts with a version.
#[test]
fn kernel_listings_read_alike() {
    let listing = "6.1.0-35-amd64 vmlinuz=yes headers=yes nvidia=none signed=none\nls: cannot access '/boot/vmlinuz-*': No such file or directory\n/boot/vmlinuz-6.1.0-32-amd64\n";
    let f = guest_facts(&format!(
        "### pvegpu guest-kernels\n{listing}### pvegpu exit 0\n"
    ));
    let planned: Vec<&str> = f.kernels.iter().map(|k| k.version.as_str()).collect();
    assert_eq!(planned, ["6.1.0-32-amd64", "6.1.0-35-amd64"]);
    assert_eq!(pvegpu::verify::guest::parse_kernels(listing), planned);
}

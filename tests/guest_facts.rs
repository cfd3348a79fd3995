//! Guest probe parsers on recorded output (tests/fixtures/guest/recorded, sources in
//! tests/fixtures/guest/SOURCES.md) and on the assembled scenario files.

mod support;
use pvegpu::facts::RawFacts;
use pvegpu::guest::parse::{self, SecureBoot};
use pvegpu::guest::{GuestFacts, GuestFactsError, probe_script};
use support::{read, set_section};

fn guest(text: &str) -> GuestFacts {
    GuestFacts::from_raw(&RawFacts::parse(text).unwrap()).unwrap()
}

#[test]
fn a_real_probe_run_on_debian_12() {
    let f = guest(&read("guest/recorded/debian12-container.facts"));
    assert_eq!(f.distro().unwrap().id(), "debian-12");
    assert_eq!(f.running_kernel, "6.18.44-fc-v782");
    // a container: no kernels under /lib/modules, no lspci, no mokutil, no systemd
    assert!(f.kernels.is_empty());
    assert!(f.pci.is_empty());
    assert_eq!(f.secure_boot, SecureBoot::NotUefi);
    assert_eq!(f.loaded_modules, None);
    assert!(f.smi.is_empty());
    assert_eq!(
        f.smi_error, None,
        "a missing nvidia-smi is not an nvidia-smi failure"
    );
    assert_eq!(f.docker.as_deref(), Some("28.2.2"));
    assert_eq!(f.podman, None);
    assert_eq!(f.nvidia_ctk, None);
    let debian: Vec<_> = f
        .apt_sources
        .iter()
        .filter(|s| s.file.ends_with("debian.sources"))
        .collect();
    assert_eq!(debian.len(), 2, "two deb822 stanzas");
    assert_eq!(debian[0].suites, ["bookworm", "bookworm-updates"]);
    assert_eq!(debian[0].components, ["main"]);
    assert_eq!(
        debian[1].signed_by.as_deref(),
        Some("/usr/share/keyrings/debian-archive-keyring.gpg")
    );
    assert!(
        f.keyrings
            .contains("/usr/share/keyrings/debian-archive-keyring.gpg")
    );
    assert!(f.installed("curl").is_some());
    let repo = f.model_repository.as_ref().unwrap();
    assert!(!repo.exists);
    assert_eq!(repo.path, "/nonexistent/models");
}

#[test]
fn dkms_status_in_both_formats() {
    let e = parse::dkms_status(&read("guest/recorded/dkms-status.txt"));
    assert_eq!(e.len(), 3);
    assert_eq!(
        (e[0].module.as_str(), e[0].version.as_str()),
        ("nvidia", "460.91.03")
    );
    assert_eq!(e[0].kernel.as_deref(), Some("5.11.0-36-generic"));
    assert_eq!(e[2].module, "nvidia");
    assert_eq!(e[2].version, "510.47.03");
    assert_eq!(e[2].kernel.as_deref(), Some("5.15.0-27-generic"));
    assert!(e.iter().all(|x| x.state == "installed"));
    // dkms 3's warning suffix and an `added` module with no kernel
    let w = parse::dkms_status(
        "nvidia-current/535.261.03, 6.1.0-22-amd64, x86_64: installed (WARNING! Diff between built and installed module!)\nnvidia-current/535.261.03: added\n",
    );
    assert_eq!(w[0].state, "installed");
    assert_eq!(w[1].kernel, None);
    assert_eq!(w[1].state, "added");
}

#[test]
fn nvidia_smi_rows_and_failures() {
    let f = guest(&read("guest/gtx1080-debian12-converged.facts"));
    assert_eq!(f.smi.len(), 2);
    assert_eq!(
        Some(f.smi[0].address.to_string()).as_deref(),
        Some("0000:00:10.0")
    );
    assert_eq!(f.smi[1].compute_cap.as_deref(), Some("6.1"));
    assert_eq!(f.loaded_driver(), Some("535.261.03"));
    for line in read("guest/recorded/nvidia-smi-errors.txt").lines() {
        assert!(parse::nvidia_smi(line).is_empty(), "{line}");
        let text = format!(
            "### pvegpu facts 1\n### pvegpu uname\n6.1.0-22-amd64\n### pvegpu os-release\nID=debian\nVERSION_ID=\"12\"\n### pvegpu nvidia-smi\n{line}\n### pvegpu exit 9\n"
        );
        assert_eq!(guest(&text).smi_error.as_deref(), Some(line));
    }
}

#[test]
fn seed_guest_lspci_dkms_and_models() {
    let f = guest(&read("guest/gtx1080-debian12-fresh.facts"));
    let gpus: Vec<_> = f.gpus().collect();
    assert_eq!(gpus.len(), 2, "the audio functions are not GPUs");
    assert!(gpus.iter().all(|g| g.driver.as_deref() == Some("nouveau")));
    assert!(f.module_loaded("nouveau"));
    assert_eq!(f.kernels.len(), 1);
    assert!(!f.kernels[0].headers);
    // the one-line sources.list: deb-src lines and the cdrom comment are not sources
    assert_eq!(f.apt_sources.len(), 3);
    assert!(
        f.apt_sources
            .iter()
            .all(|s| s.components == ["main", "non-free-firmware"])
    );
    let repo = f.model_repository.as_ref().unwrap();
    let names: Vec<&str> = repo.onnx_files.iter().map(|m| m.model.as_str()).collect();
    assert_eq!(names, ["nutriscore", "price_tag_detection"]);
    assert_eq!(f.onnx.len(), 2);
    assert_eq!((f.onnx[1].ir_version, f.onnx[1].opset), (8, 17));

    let c = guest(&read("guest/gtx1080-debian12-converged.facts"));
    assert_eq!(c.dkms[0].module, "nvidia-current");
    assert!(c.holds.contains("nvidia-driver"));
    assert!(c.kernels[0].nvidia_module.is_some());
}

#[test]
fn ubuntu_h100_is_a_3d_controller_and_secure_boot_reads_off() {
    let f = guest(&read("guest/h100-ubuntu2404-fresh.facts"));
    assert_eq!(f.distro().unwrap().id(), "ubuntu-24.04");
    assert_eq!(f.gpus().count(), 1);
    assert_eq!(f.secure_boot, SecureBoot::Disabled);
    assert_eq!(f.apt_sources.len(), 2);
    assert_eq!(f.apt_sources[0].suites.len(), 3);
}

#[test]
fn cdi_specs_name_the_driver_they_were_made_for() {
    let s = parse::cdi_spec(
        "/etc/cdi/nvidia.yaml",
        "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n    hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.535.216.03\n",
    );
    assert_eq!(s.kind.as_deref(), Some("nvidia.com/gpu"));
    assert_eq!(s.driver_version.as_deref(), Some("535.216.03"));
}

#[test]
fn unsupported_distribution_is_a_clear_error() {
    let text = read("guest/gtx1080-debian12-fresh.facts")
        .replace("VERSION_ID=\"12\"", "VERSION_ID=\"11\"")
        .replace(
            "Debian GNU/Linux 12 (bookworm)",
            "Debian GNU/Linux 11 (bullseye)",
        );
    let f = guest(&text);
    assert_eq!(f.distro, None);
    let e = f.distro().unwrap_err();
    assert!(matches!(e, GuestFactsError::UnsupportedDistro { .. }));
    let msg = e.to_string();
    assert!(msg.contains("Debian GNU/Linux 11 (bullseye)"), "{msg}");
    assert!(msg.contains("Ubuntu 22.04 and 24.04"), "{msg}");
}

#[test]
fn facts_without_uname_or_os_release_are_refused() {
    let e = GuestFacts::from_raw(
        &RawFacts::parse("### pvegpu facts 1\n### pvegpu uname\n6.1.0-22-amd64\n").unwrap(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("os-release"), "{e}");
}

#[test]
fn the_probe_quotes_the_model_repository() {
    let s = probe_script(Some("/srv/it's models"));
    assert!(s.starts_with("PVEGPU_MODEL_REPOSITORY='/srv/it'\\''s models'\n"));
    assert!(s.contains("### pvegpu facts 1"));
    assert!(!probe_script(None).contains("PVEGPU_MODEL_REPOSITORY='"));
}

/// The guest probe as the gatherer ran it on the QEMU test host (a Debian 12 VM without a GPU,
/// tests/guest_testhost_e2e.rs), with the header of the model it found.
#[test]
fn a_real_probe_run_on_the_debian_12_test_guest_plans_a_refusal() {
    let f = guest(&read("guest/recorded/testhost-debian12.facts"));
    assert_eq!(f.distro().unwrap().id(), "debian-12");
    assert!(f.kernels.iter().any(|k| k.version == f.running_kernel));
    assert!(
        f.kernels
            .iter()
            .all(|k| !k.headers && k.nvidia_module.is_none())
    );
    assert!(f.pci.is_empty());
    assert!(f.loaded_modules.is_some());
    assert!(f.boot_id.is_some());
    let debian: Vec<_> = f
        .apt_sources
        .iter()
        .filter(|s| s.file.ends_with("debian.sources"))
        .collect();
    assert_eq!(debian.len(), 2, "two deb822 stanzas");
    assert!(debian.iter().all(|s| s.components == ["main"]));
    let repo = f.model_repository.as_ref().unwrap();
    assert!(repo.exists);
    assert_eq!(repo.onnx_files.len(), 1);
    assert_eq!(
        (f.onnx[0].ir_version, f.onnx[0].opset),
        (8, 17),
        "the header read over SSH"
    );
    let spec: pvegpu::inventory::guest::GuestSpec =
        toml::from_str("[triton]\nmodel_repository = \"/srv/triton/models\"\nbackend = \"onnx\"\n")
            .unwrap();
    let p = pvegpu::guest::plan(&spec, &f).unwrap();
    assert!(p.changes.is_empty());
    assert!(
        p.refusals[0].reason.contains("sees no NVIDIA GPU"),
        "{:?}",
        p.refusals
    );
}

/// A recorded probe's empty `lspci` section with two GTX 1080 in it: the chroot guest has no
/// GPU, and its scenario injected the same lines.
fn with_two_gtx1080(text: &str) -> String {
    set_section(
        text,
        "lspci",
        &format!("{}### pvegpu exit 0\n", support::TWO_GTX1080_LSPCI),
    )
}

fn docker_spec() -> pvegpu::inventory::guest::GuestSpec {
    toml::from_str("runtime = \"docker\"\n").unwrap()
}

/// The probe on the chroot guest right after pvegpu installed Debian's driver (recorded by
/// tests/guest_testhost_e2e.rs with PVEGPU_CHROOT_GUEST=1; SOURCES.md): real dpkg, DKMS and
/// module files for both kernels, and nvidia-smi failing because no module is loaded. Nothing
/// Debian serves is planned again: what is left is NVIDIA's repositories (not reachable where
/// it was recorded) and the reboot that loads the driver.
#[test]
fn recorded_driver_install_leaves_nvidia_repositories_and_the_reboot() {
    let f = guest(&with_two_gtx1080(&read(
        "guest/recorded/chroot-debian12-driver.facts",
    )));
    assert_eq!(f.running_kernel, "6.1.0-50-amd64");
    let versions: Vec<&str> = f.kernels.iter().map(|k| k.version.as_str()).collect();
    assert_eq!(versions, ["6.1.0-50-amd64", "6.1.0-56-amd64"]);
    for k in &f.kernels {
        assert!(k.headers, "{k:?}");
        assert_eq!(
            k.nvidia_module.as_deref(),
            Some(format!("/lib/modules/{}/updates/dkms/nvidia-current.ko", k.version).as_str())
        );
        assert_eq!(k.module_signed, Some(true), "DKMS 3 signs with its own key");
        assert!(f.dkms.iter().any(|d| d.module == "nvidia-current"
            && d.version == "535.309.01"
            && d.kernel.as_deref() == Some(k.version.as_str())
            && d.state == "installed"));
    }
    assert!(
        f.installed("nvidia-driver")
            .unwrap()
            .version
            .starts_with("535.309.01")
    );
    assert!(f.installed("firmware-misc-nonfree").is_some());
    for held in [
        "nvidia-driver",
        "nvidia-smi",
        "nvidia-kernel-dkms",
        "libcuda1",
    ] {
        assert!(f.holds.contains(held), "{held} not held: {:?}", f.holds);
    }
    assert!(f.smi.is_empty());
    assert!(
        f.smi_error
            .as_deref()
            .unwrap()
            .contains("couldn't communicate")
    );
    assert_eq!(
        f.loaded_modules, None,
        "this machine's kernel has no /proc/modules"
    );
    assert!(f.docker.is_some());

    let p = pvegpu::guest::plan(&docker_spec(), &f).unwrap();
    assert!(p.refusals.is_empty(), "{:?}", p.refusals);
    let steps: Vec<&str> = p.changes.iter().map(|c| c.step.as_str()).collect();
    for debian in support::DEBIAN_ARCHIVE_STEPS {
        assert!(
            !steps.contains(&debian),
            "{debian} again:\n{}",
            p.render_text()
        );
    }
    assert!(steps.contains(&"container-toolkit"), "{steps:?}");
    let reboot = p.changes.last().unwrap();
    assert_eq!(reboot.step, "reboot");
    assert!(
        reboot
            .reason
            .starts_with(pvegpu::guest::planner::NOT_LOADED)
            && reboot.reason.contains("couldn't communicate"),
        "{}",
        reboot.reason
    );
}

/// The same guest after a kernel was installed without its headers (recorded right after
/// `apt-get install linux-image-6.1.0-50-cloud-amd64`): the plan installs that kernel's headers
/// and builds the module for it alone, and leaves the driver and the other kernels be.
#[test]
fn recorded_kernel_without_headers_gets_them_and_its_module() {
    let f = guest(&with_two_gtx1080(&read(
        "guest/recorded/chroot-debian12-driver-kernel-added.facts",
    )));
    let added = f
        .kernels
        .iter()
        .find(|k| k.version == "6.1.0-50-cloud-amd64")
        .expect("the new kernel");
    assert!(!added.headers && added.nvidia_module.is_none());
    assert_eq!(
        f.kernels
            .iter()
            .filter(|k| k.nvidia_module.is_some())
            .count(),
        2
    );
    let p = pvegpu::guest::plan(&docker_spec(), &f).unwrap();
    let cmds: Vec<&str> = p
        .changes
        .iter()
        .filter(|c| c.step == "kernel-headers" || c.step == "dkms-modules" || c.step == "driver")
        .filter_map(|c| match &c.action {
            pvegpu::core::plan::Action::Run { command } => Some(command.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        cmds,
        [
            "DEBIAN_FRONTEND=noninteractive apt-get install -y linux-headers-6.1.0-50-cloud-amd64",
            "dkms autoinstall -k 6.1.0-50-cloud-amd64",
        ],
        "{}",
        p.render_text()
    );
}

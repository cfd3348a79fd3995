//! Guest planner scenarios as snapshots: the plan text a user sees. Base facts are in
//! tests/fixtures/guest (provenance in SOURCES.md); each scenario below names its edit.

mod support;
use pvegpu::core::plan::Action;
use pvegpu::facts::RawFacts;
use pvegpu::guest::{GuestFacts, GuestPlan, plan};
use pvegpu::inventory::guest::GuestSpec;
use support::{add_section, read, set_section};

const SEED_SPEC: &str = "runtime = \"docker\"\n[triton]\nmodel_repository = \"/srv/triton/models\"\nbackend = \"onnx\"\n";

fn spec(toml_text: &str) -> GuestSpec {
    toml::from_str(toml_text).expect("guest spec parses")
}

fn facts(text: &str) -> GuestFacts {
    GuestFacts::from_raw(&RawFacts::parse(text).unwrap()).unwrap()
}

fn plan_for(spec_text: &str, facts_text: &str) -> GuestPlan {
    plan(&spec(spec_text), &facts(facts_text)).unwrap()
}

/// Write every file a plan writes into the facts text, as the executor would.
fn write_files(text: &str, p: &GuestPlan) -> String {
    let mut out = text.to_string();
    for c in &p.changes {
        if let Action::WriteFile { path, content, .. } = &c.action {
            let head = format!("file {path}");
            if out.contains(&format!("### pvegpu {head} ")) {
                out = set_section(&out, &head, content);
            } else {
                out = add_section(
                    &out,
                    &format!("{head} mode=644 owner=root:root mtime=1800000000"),
                    content,
                );
            }
        }
    }
    out
}

fn commands(p: &GuestPlan) -> Vec<&str> {
    p.changes
        .iter()
        .filter_map(|c| match &c.action {
            Action::Run { command } => Some(command.as_str()),
            _ => None,
        })
        .collect()
}

fn fresh() -> String {
    read("guest/gtx1080-debian12-fresh.facts")
}

/// The converged seed guest, with the files the fresh plan writes in place.
fn converged() -> String {
    let first = plan_for(SEED_SPEC, &fresh());
    write_files(&read("guest/gtx1080-debian12-converged.facts"), &first)
}

/// The converged guest with pvegpu's Triton unit written and running.
fn serving() -> String {
    let text = converged();
    let p = plan_for(SEED_SPEC, &text);
    set_section(&write_files(&text, &p), "triton-service", "active\n")
}

#[test]
fn seed_gtx1080_debian12_fresh_guest() {
    let p = plan_for(SEED_SPEC, &fresh());
    assert!(p.refusals.is_empty(), "{:?}", p.refusals);
    let cmds = commands(&p);
    assert!(
        cmds.iter()
            .any(|c| c.contains("install -y nvidia-driver nvidia-smi firmware-misc-nonfree"))
    );
    assert!(
        !cmds.iter().any(|c| c.contains("nvidia-open")),
        "Pascal needs the proprietary module"
    );
    assert!(p.needs_reboot());
    // no UUIDs before the driver answers: no unit yet
    assert!(!p.changes.iter().any(|c| c.step == "triton-unit"));
    insta::assert_snapshot!(p.render_text());
}

#[test]
fn seed_guest_converged_plans_the_triton_unit_then_nothing() {
    let text = converged();
    let p = plan_for(SEED_SPEC, &text);
    assert!(p.refusals.is_empty(), "{:?}", p.refusals);
    let steps: Vec<&str> = p.changes.iter().map(|c| c.step.as_str()).collect();
    assert_eq!(steps, ["triton-unit", "triton-start"]);
    let unit = match &p.changes[0].action {
        Action::WriteFile { content, .. } => content.clone(),
        _ => unreachable!(),
    };
    insta::assert_snapshot!("seed_triton_unit", unit);
    let after = set_section(&write_files(&text, &p), "triton-service", "active\n");
    let again = plan_for(SEED_SPEC, &after);
    assert!(again.is_empty(), "{}", again.render_text());
    insta::assert_snapshot!(again.render_text());
}

#[test]
fn kernel_upgrade_without_the_module_for_the_new_kernel() {
    // unattended-upgrades installed 6.1.0-28 (no headers yet); the guest still runs 6.1.0-22
    let text = set_section(
        &serving(),
        "guest-kernels",
        "6.1.0-22-amd64 vmlinuz=yes headers=yes nvidia=/lib/modules/6.1.0-22-amd64/updates/dkms/nvidia-current.ko signed=no\n6.1.0-28-amd64 vmlinuz=yes headers=no nvidia=none signed=none\n",
    );
    let p = plan_for(SEED_SPEC, &text);
    let cmds = commands(&p);
    assert_eq!(
        cmds,
        [
            "apt-get update",
            "DEBIAN_FRONTEND=noninteractive apt-get install -y linux-headers-6.1.0-28-amd64",
            "dkms autoinstall -k 6.1.0-28-amd64",
        ]
    );
    assert!(!p.needs_reboot(), "the running kernel keeps its module");
    insta::assert_snapshot!(p.render_text());
}

#[test]
fn nouveau_still_has_the_gpus_after_the_driver_install() {
    // the driver packages are in, but the guest was not rebooted: nouveau drives the cards
    let mut text = read("guest/gtx1080-debian12-converged.facts");
    text = set_section(&text, "lspci", &fresh_section("lspci"));
    text = set_section(&text, "proc-modules", &fresh_section("proc-modules"));
    text = set_section(
        &text,
        "nvidia-smi",
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n",
    );
    text = text.replace(
        "### pvegpu nvidia-smi\nNVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n",
        "### pvegpu nvidia-smi\nNVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n### pvegpu exit 9\n",
    );
    let text = write_files(&text, &plan_for(SEED_SPEC, &fresh()));
    // pvegpu's blacklist is not there yet
    let text = remove_file_section(&text, "/etc/modprobe.d/pvegpu-nouveau.conf");
    let p = plan_for(SEED_SPEC, &text);
    let steps: Vec<&str> = p.changes.iter().map(|c| c.step.as_str()).collect();
    assert_eq!(steps, ["nouveau-blacklist", "initramfs", "reboot"]);
    insta::assert_snapshot!(p.render_text());
}

#[test]
fn secure_boot_on_without_an_enrolled_key_is_refused() {
    let fresh_sb = set_section(&fresh(), "secure-boot", "SecureBoot enabled\n");
    let fresh_sb = set_section(&fresh_sb, "secure-boot-efivar", "   6   0   0   0   1\n");
    // A fresh guest has no DKMS key yet (DKMS makes it on its first build): the plan goes
    // ahead and says what the console must do.
    let p = plan_for(SEED_SPEC, &fresh_sb);
    assert!(p.refusals.is_empty(), "{:?}", p.refusals);
    assert!(
        p.notes.iter().any(|n| n
            .contains("DKMS makes its signing key /var/lib/dkms/mok.pub on its first build")
            && n.contains("mokutil --import /var/lib/dkms/mok.pub")),
        "{:?}",
        p.notes
    );
    // A key that exists but is not enrolled is refused: DKMS would sign with it.
    let text = set_section(
        &fresh_sb,
        "mok-keys",
        "key /var/lib/dkms/mok.pub: /var/lib/dkms/mok.pub is not enrolled\n",
    );
    let p = plan_for(SEED_SPEC, &text);
    assert!(p.changes.is_empty());
    assert_eq!(p.refusals.len(), 1);
    insta::assert_snapshot!(p.render_text());

    // an enrolled DKMS key lifts the refusal
    let ok = set_section(
        &text,
        "mok-keys",
        "key /var/lib/dkms/mok.pub: /var/lib/dkms/mok.pub is already enrolled\n",
    );
    assert!(plan_for(SEED_SPEC, &ok).refusals.is_empty());

    // an unsigned module already built is refused even with a key
    let unsigned = set_section(
        &ok,
        "guest-kernels",
        "6.1.0-22-amd64 vmlinuz=yes headers=yes nvidia=/lib/modules/6.1.0-22-amd64/updates/dkms/nvidia-current.ko signed=no\n",
    );
    let r = plan_for(SEED_SPEC, &unsigned).refusals;
    assert!(r[0].reason.contains("6.1.0-22-amd64 is unsigned"), "{r:?}");
}

#[test]
fn ubuntu_2404_h100_gets_the_open_module() {
    let text = read("guest/h100-ubuntu2404-fresh.facts");
    let p = plan_for(
        "runtime = \"docker\"\ncuda_toolkit = true\n[triton]\nmodel_repository = \"/srv/triton/models\"\nbackend = \"onnx\"\n",
        &text,
    );
    assert!(p.refusals.is_empty(), "{:?}", p.refusals);
    let cmds = commands(&p);
    assert!(
        cmds.iter()
            .any(|c| c.ends_with("apt-get install -y nvidia-driver-595-open"))
    );
    assert!(
        cmds.iter()
            .any(|c| c.contains("linux-headers-6.8.0-45-generic linux-headers-virtual"))
    );
    assert!(!p.changes.iter().any(|c| c.step == "debian-components"));
    insta::assert_snapshot!(p.render_text());
}

#[test]
fn podman_with_a_stale_cdi_spec_regenerates_it() {
    let mut text = converged();
    text = set_section(&text, "podman", "podman version 4.3.1\n");
    text = set_section(&text, "triton-service", "active\n");
    text = text.replace(
        "ii  docker.io 20.10.24+dfsg1-1+deb12u1\n",
        "ii  podman 4.3.1+ds1-8+deb12u1\n",
    );
    text = add_section(
        &text,
        "cdi /etc/cdi/nvidia.yaml mtime=1790000000",
        "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n    hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.535.216.03\n    hostPath: /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.535.216.03\n### pvegpu exit 0\n",
    );
    let podman_spec = SEED_SPEC.replace("runtime = \"docker\"", "runtime = \"podman\"");
    // the unit pvegpu wrote for Podman is in place
    let first = plan_for(&podman_spec, &text);
    let unit = first
        .changes
        .iter()
        .find_map(|c| match &c.action {
            Action::WriteFile { path, content, .. } if path.ends_with("pvegpu-triton.service") => {
                Some(content.clone())
            }
            _ => None,
        })
        .expect("the Podman unit is planned");
    assert!(unit.contains("--device nvidia.com/gpu=GPU-3f1c2a9e-8d0b-4c55-a1e2-7b9d0c4e6f21"));
    insta::assert_snapshot!("podman_triton_unit", unit);
    let text = write_files(&text, &first);
    let p = plan_for(&podman_spec, &text);
    let steps: Vec<&str> = p.changes.iter().map(|c| c.step.as_str()).collect();
    assert_eq!(steps, ["cdi-spec", "triton-start"]);
    assert!(p.changes[0].reason.contains("535.216.03"));
    insta::assert_snapshot!(p.render_text());

    // regenerated for the loaded driver: nothing left
    let fresh_spec = text.replace("535.216.03", "535.261.03");
    assert!(plan_for(&podman_spec, &fresh_spec).is_empty());
}

#[test]
fn toolkit_1_18_keeps_one_cdi_spec_the_one_it_refreshes() {
    // The Podman guest of the test above, its unit written, with Container Toolkit 1.18,
    // whose nvidia-cdi-refresh service maintains /var/run/cdi/nvidia.yaml.
    let mut text = converged();
    text = set_section(&text, "podman", "podman version 4.3.1\n");
    text = set_section(&text, "triton-service", "active\n");
    text = set_section(
        &text,
        "nvidia-ctk",
        "NVIDIA Container Toolkit CLI version 1.18.1\ncommit: 0000000\n",
    );
    let podman_spec = SEED_SPEC.replace("runtime = \"docker\"", "runtime = \"podman\"");
    let text = write_files(&text, &plan_for(&podman_spec, &text));
    let spec = |path: &str, driver: &str| {
        (
            format!("cdi {path} mtime=1790000000"),
            format!(
                "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n    hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.{driver}\n### pvegpu exit 0\n"
            ),
        )
    };

    // pvegpu's spec from before the upgrade, and none refreshed yet
    let (head, body) = spec("/etc/cdi/nvidia.yaml", "535.261.03");
    let old_own = add_section(&text, &head, &body);
    let (command, reason) = cdi_step(&plan_for(&podman_spec, &old_own));
    assert_eq!(
        command,
        "mv -f /etc/cdi/nvidia.yaml /etc/cdi/nvidia.yaml.pvegpu-replaced && modprobe nvidia-uvm && systemctl start nvidia-cdi-refresh.service"
    );
    assert!(
        reason.contains("would be a second spec of the same devices"),
        "{reason}"
    );

    // the refreshed spec for the loaded driver, and pvegpu's set aside: nothing to do
    let (head, body) = spec("/var/run/cdi/nvidia.yaml", "535.261.03");
    let refreshed = add_section(&text, &head, &body);
    let p = plan_for(&podman_spec, &refreshed);
    assert!(
        !p.changes.iter().any(|c| c.step == "cdi-spec"),
        "{}",
        p.render_text()
    );

    // a refreshed spec of the previous driver: the service runs again
    let stale = refreshed.replace("libcuda.so.535.261.03", "libcuda.so.535.216.03");
    let (command, _) = cdi_step(&plan_for(&podman_spec, &stale));
    assert_eq!(
        command,
        "modprobe nvidia-uvm && systemctl start nvidia-cdi-refresh.service"
    );
}

/// The command and reason of a plan's CDI spec step.
fn cdi_step(p: &GuestPlan) -> (String, String) {
    let c = p
        .changes
        .iter()
        .find(|c| c.step == "cdi-spec")
        .expect("a cdi-spec step");
    match &c.action {
        Action::Run { command } => (command.clone(), c.reason.clone()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn blackwell_on_debian_12_is_refused() {
    let text = fresh()
        .replace("[10de:1b80]", "[10de:2b85]")
        .replace("GP104 [GeForce GTX 1080]", "GB202 [GeForce RTX 5090]");
    let p = plan_for(SEED_SPEC, &text);
    assert!(p.changes.is_empty());
    insta::assert_snapshot!(p.render_text());
}

#[test]
fn bad_input_is_refused_and_nothing_is_planned() {
    let debian11 = fresh()
        .replace("VERSION_ID=\"12\"", "VERSION_ID=\"11\"")
        .replace(
            "Debian GNU/Linux 12 (bookworm)",
            "Debian GNU/Linux 11 (bullseye)",
        );
    let unknown = fresh().replace("[10de:1b80]", "[10de:ffff]");
    let no_repo = set_section(&fresh(), "model-repository", "no such directory\n").replace(
        "### pvegpu model-repository /srv/triton/models\nno such directory\n",
        "### pvegpu model-repository /srv/triton/models\nno such directory\n### pvegpu exit 2\n",
    );
    let mut out = String::new();
    for (name, text) in [
        ("debian 11", debian11),
        ("unknown GPU id", unknown),
        ("missing model repository", no_repo),
    ] {
        let p = plan_for(SEED_SPEC, &text);
        assert!(p.changes.is_empty(), "{name}");
        assert!(!p.refusals.is_empty(), "{name}");
        out.push_str(&format!("== {name}\n{}\n", p.render_text()));
    }
    insta::assert_snapshot!(out);
}

#[test]
fn seed_release_override_with_an_ir10_model_stops_the_plan() {
    // the seed's fallback: Triton 23.05 and price_tag_detection exported with IR 10
    let text = fresh().replace(
        "### pvegpu onnx /srv/triton/models/price_tag_detection/1/model.onnx ir=8 opset=17",
        "### pvegpu onnx /srv/triton/models/price_tag_detection/1/model.onnx ir=10 opset=21",
    );
    let spec_2305 = format!("{SEED_SPEC}release = \"23.05\"\n");
    let p = plan_for(&spec_2305, &text);
    assert!(p.changes.is_empty());
    assert_eq!(p.refusals.len(), 1, "{:?}", p.refusals);
    assert!(
        p.refusals[0]
            .reason
            .contains("price_tag_detection/1/model.onnx")
    );
    insta::assert_snapshot!(p.render_text());

    // the seed's first try: the newest Triton has no ONNX Runtime kernels for CC 6.1
    let newest = format!("{SEED_SPEC}release = \"25.01\"\n");
    let r = plan_for(&newest, &fresh()).refusals;
    assert!(
        r[0].reason.contains("cudaErrorNoKernelImageForDevice"),
        "{r:?}"
    );
}

#[test]
fn cuda_toolkit_is_chosen_within_the_range() {
    let text = converged();
    let p = plan_for(&format!("cuda_toolkit = true\n{SEED_SPEC}"), &text);
    let cmds = commands(&p);
    // R535 runs CUDA up to 12.2 natively and NVIDIA's debian12 repository starts at 12.3:
    // Debian's own toolkit (11.8), and no CUDA repository at all.
    assert!(
        cmds.iter()
            .any(|c| c.ends_with("install -y nvidia-cuda-toolkit")),
        "{cmds:?}"
    );
    assert!(!p.changes.iter().any(|c| c.step == "cuda-pin"));
    assert!(!cmds.iter().any(|c| c.contains("cuda-keyring")), "{cmds:?}");
    let not_there = plan_for(&format!("cuda_toolkit = \"12.2\"\n{SEED_SPEC}"), &text);
    assert!(
        not_there.refusals[0]
            .reason
            .contains("no CUDA 12.2 toolkit exists for Debian 12 (bookworm): NVIDIA's debian12 repository starts at CUDA 12.3"),
        "{:?}",
        not_there.refusals
    );
    let too_new = plan_for(&format!("cuda_toolkit = \"12.9\"\n{SEED_SPEC}"), &text);
    assert!(
        too_new.refusals[0].reason.contains("cannot run CUDA 12.9"),
        "{:?}",
        too_new.refusals
    );
    let too_old_gpu = plan_for(&format!("cuda_toolkit = \"13.0\"\n{SEED_SPEC}"), &text);
    assert!(
        too_old_gpu.refusals[0]
            .reason
            .contains("does not build for CC 6.1")
    );
}

fn fresh_section(name: &str) -> String {
    let f = fresh();
    let start = f.find(&format!("### pvegpu {name}\n")).unwrap();
    let body = &f[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("### pvegpu ").unwrap()].to_string()
}

fn remove_file_section(text: &str, path: &str) -> String {
    let marker = format!("### pvegpu file {path} ");
    let start = text.find(&marker).unwrap();
    let after_head = start + text[start..].find('\n').unwrap() + 1;
    let mut end = after_head
        + text[after_head..]
            .find("### pvegpu ")
            .unwrap_or(text.len() - after_head);
    // the section's exit line, when it has one, goes with it
    if text[end..].starts_with("### pvegpu exit") {
        end += text[end..].find('\n').unwrap() + 1;
    }
    format!("{}{}", &text[..start], &text[end..])
}

/// Serves `files` (path -> body) over HTTP on loopback; any other path is a 404.
fn serve(files: Vec<(&'static str, Vec<u8>)>) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut stream = &stream;
            match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(body);
                }
                None => {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        }
    });
    port
}

fn sh(command: &str) -> std::process::Output {
    std::process::Command::new("sh")
        .args(["-c", command])
        .output()
        .unwrap()
}

/// The keyring commands as planned, pointed at a local server and a scratch keyring folder:
/// the CUDA key comes out of a `cuda-keyring` package laid out as NVIDIA's, the container
/// toolkit's armored key is dearmored, and a failed download fails the step without leaving
/// a key behind (no pipe hides curl's exit status).
#[test]
fn keyring_commands_install_the_keys_and_fail_on_a_failed_download() {
    for tool in ["curl", "gpg", "dpkg-deb"] {
        if sh(&format!("command -v {tool}")).stdout.is_empty() {
            panic!("{tool} is needed for this test (.ci/run installs it)");
        }
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path().display().to_string();
    // a keyring package with NVIDIA's layout, and an armored key, made with a throwaway key
    let made = sh(&format!(
        "set -e; export GNUPGHOME={w}/gnupg; mkdir -m 700 $GNUPGHOME
         gpg --batch --quiet --passphrase '' --quick-gen-key 'pvegpu test <t@example.invalid>' ed25519 sign never
         mkdir -p {w}/pkg/DEBIAN {w}/pkg/usr/share/keyrings {w}/pkg/etc/apt/sources.list.d
         gpg --batch --export > {w}/pkg/usr/share/keyrings/cuda-archive-keyring.gpg
         echo 'deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] https://example.invalid/ /' > {w}/pkg/etc/apt/sources.list.d/cuda-ubuntu2404-x86_64.list
         printf 'Package: cuda-keyring\\nVersion: 1.1-1\\nArchitecture: all\\nMaintainer: t <t@example.invalid>\\nDescription: test\\n' > {w}/pkg/DEBIAN/control
         dpkg-deb --build --root-owner-group {w}/pkg {w}/cuda-keyring.deb >/dev/null
         gpg --batch --armor --export > {w}/gpgkey"
    ));
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let deb = std::fs::read(work.path().join("cuda-keyring.deb")).unwrap();
    let armored = std::fs::read(work.path().join("gpgkey")).unwrap();
    let binary = std::fs::read(
        work.path()
            .join("pkg/usr/share/keyrings/cuda-archive-keyring.gpg"),
    )
    .unwrap();
    let port = serve(vec![
        ("/cuda/cuda-keyring_1.1-1_all.deb", deb),
        ("/libnvidia-container/gpgkey", armored),
    ]);

    let p = plan_for(
        "runtime = \"docker\"\ncuda_toolkit = true\n[triton]\nmodel_repository = \"/srv/triton/models\"\nbackend = \"onnx\"\n",
        &read("guest/h100-ubuntu2404-fresh.facts"),
    );
    let keyring = |step: &str| {
        let c = p.changes.iter().find(|c| c.step == step).unwrap();
        let Action::Run { command } = &c.action else {
            panic!("{step} runs a command")
        };
        command
            .replace(
                "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64/",
                &format!("http://127.0.0.1:{port}/cuda/"),
            )
            .replace(
                "https://nvidia.github.io/",
                &format!("http://127.0.0.1:{port}/"),
            )
            // the key's place inside the package stays; where it is installed moves
            .replace("$d/x/usr/share/", "$d/x/@PKG@/")
            .replace("/usr/share/keyrings/", &format!("{w}/keyrings/"))
            .replace("$d/x/@PKG@/", "$d/x/usr/share/")
    };
    std::fs::create_dir(work.path().join("keyrings")).unwrap();
    let cuda = keyring("cuda-keyring");
    let toolkit = keyring("container-toolkit-keyring");
    assert!(
        !cuda.contains("https://") && !toolkit.contains("https://"),
        "{cuda}\n{toolkit}"
    );

    let out = sh(&cuda);
    assert!(
        out.status.success(),
        "{cuda}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(work.path().join("keyrings/cuda-archive-keyring.gpg")).unwrap(),
        binary
    );
    let out = sh(&toolkit);
    assert!(
        out.status.success(),
        "{toolkit}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // dearmored: the same binary key the package carries
    assert_eq!(
        std::fs::read(
            work.path()
                .join("keyrings/nvidia-container-toolkit-keyring.gpg")
        )
        .unwrap(),
        binary
    );
    let names: Vec<String> = std::fs::read_dir(work.path().join("keyrings"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "nothing but the two keys is left: {names:?}"
    );

    // a download that fails (404) fails the step and writes no key
    std::fs::remove_dir_all(work.path().join("keyrings")).unwrap();
    std::fs::create_dir(work.path().join("keyrings")).unwrap();
    for (cmd, from) in [(&cuda, "/cuda/"), (&toolkit, "/libnvidia-container/")] {
        let broken = cmd.replace(from, "/gone/");
        let out = sh(&broken);
        assert!(!out.status.success(), "{broken} succeeded");
    }
    let left: Vec<_> = std::fs::read_dir(work.path().join("keyrings"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "nothing is left behind: {left:?}");
}

/// dpkg-query's patterns in the probe's `packages` section.
fn probed_package_patterns() -> Vec<String> {
    let probe = pvegpu::guest::probe_script(None);
    let body = probe
        .split("packages() {")
        .nth(1)
        .and_then(|b| b.split("return 0").next())
        .expect("the probe has a packages() function");
    let after_format = &body[body.find("\\n'").expect("the -f format") + 3..];
    after_format
        .split_whitespace()
        .filter(|t| *t != "\\" && !t.starts_with("2>"))
        .map(|t| t.trim_matches('\'').to_string())
        .collect()
}

/// dpkg-query's glob, for the `*` the probe uses.
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && (0..=name.len() - head.len()).any(|i| glob(tail, &name[head.len() + i..]))
        }
    }
}

/// Every package a plan installs must be one the probe reads back from dpkg: otherwise the next
/// plan installs it again and the guest never converges. The chroot guest's driver scenario
/// (tests/guest_testhost_e2e.rs) caught `firmware-misc-nonfree` missing from the probe.
#[test]
fn every_package_a_plan_installs_is_one_the_probe_reads_back() {
    let patterns = probed_package_patterns();
    assert!(patterns.iter().any(|p| p == "nvidia-*"), "{patterns:?}");
    assert!(glob("nvidia-*", "nvidia-driver") && !glob("nvidia-*", "libnvidia-ml1"));
    let with_cuda = format!("cuda_toolkit = true\n{SEED_SPEC}");
    let podman = with_cuda.replace("runtime = \"docker\"", "runtime = \"podman\"");
    let h100 = read("guest/h100-ubuntu2404-fresh.facts");
    let mut installed = std::collections::BTreeSet::new();
    for (spec_text, facts_text) in [
        (with_cuda.as_str(), fresh()),
        (with_cuda.as_str(), converged()),
        (podman.as_str(), fresh()),
        (podman.as_str(), converged()),
        (with_cuda.as_str(), h100.clone()),
        (podman.as_str(), h100),
    ] {
        let p = plan_for(spec_text, &facts_text);
        for c in commands(&p) {
            for part in c.split("&&") {
                let Some((_, args)) = part.split_once("apt-get install") else {
                    continue;
                };
                installed.extend(
                    args.split_whitespace()
                        .filter(|a| !a.starts_with('-'))
                        // `package=version`: a pinned release is still that package
                        .map(|a| a.split('=').next().unwrap_or(a).to_string()),
                );
            }
        }
    }
    for must in [
        "nvidia-driver",
        "firmware-misc-nonfree",
        "nvidia-driver-595-open",
        "docker.io",
        "podman",
        "nvidia-container-toolkit",
    ] {
        assert!(installed.contains(must), "{must} not in {installed:?}");
    }
    let unread: Vec<_> = installed
        .iter()
        .filter(|p| !patterns.iter().any(|g| glob(g, p)))
        .collect();
    assert!(
        unread.is_empty(),
        "installed by a plan but never read back by the probe: {unread:?} (patterns {patterns:?})"
    );
}

/// The toolkit step of a plan: its command and reason.
fn toolkit_step(p: &GuestPlan) -> Option<(String, String)> {
    p.changes
        .iter()
        .find(|c| c.step == "container-toolkit")
        .map(|c| match &c.action {
            Action::Run { command } => (command.clone(), c.reason.clone()),
            other => panic!("{other:?}"),
        })
}

/// NVIDIA's issue #1967: CUDA fails to initialise in containers from toolkit 1.19.1 on
/// ("works on 1.19.0"), and no fixed release is known, so the repository's newest release is
/// not installed: 1.19.0-1, all four packages, held.
#[test]
fn a_fresh_guest_gets_the_toolkit_pinned_below_the_unfixed_regression() {
    let p = plan_for(SEED_SPEC, &fresh());
    let (command, reason) = toolkit_step(&p).expect("the toolkit is installed");
    assert_eq!(
        command,
        "DEBIAN_FRONTEND=noninteractive apt-get install -y nvidia-container-toolkit=1.19.0-1 nvidia-container-toolkit-base=1.19.0-1 libnvidia-container-tools=1.19.0-1 libnvidia-container1=1.19.0-1 && apt-mark hold nvidia-container-toolkit nvidia-container-toolkit-base libnvidia-container-tools libnvidia-container1"
    );
    assert!(reason.contains("1.19.0-1 is pinned and held"), "{reason}");
    let text = p.render_text();
    assert!(
        text.contains("pvegpu installs NVIDIA Container Toolkit 1.19.0-1 and holds it: the repository's newest release falls in ctk-1.19.1-cuinit"),
        "{text}"
    );
    // 1.19.0 itself has the 1.18 change of default, a warning for Docker
    assert!(
        p.notes.iter().any(|n| n.starts_with(
            "known issue: the pinned NVIDIA Container Toolkit 1.19.0-1 has a known issue"
        ) && n.contains("ctk-1.18-jit-cdi-default")),
        "{:?}",
        p.notes
    );
    assert!(p.refusals.is_empty(), "{:?}", p.refusals);
}

#[test]
fn an_installed_toolkit_1_19_1_is_refused_with_the_pin_as_remedy() {
    let text = converged().replace(
        "ii  nvidia-container-toolkit 1.17.8-1\nii  nvidia-container-toolkit-base 1.17.8-1\n",
        "ii  nvidia-container-toolkit 1.19.1-1\nii  nvidia-container-toolkit-base 1.19.1-1\n",
    );
    let p = plan_for(SEED_SPEC, &text);
    assert!(p.changes.is_empty(), "a refused plan changes nothing");
    let r = p
        .refusals
        .iter()
        .find(|r| r.reason.contains("ctk-1.19.1-cuinit"))
        .unwrap_or_else(|| panic!("{:?}", p.refusals));
    assert!(
        r.reason
            .starts_with("the installed NVIDIA Container Toolkit 1.19.1-1 is known bad"),
        "{}",
        r.reason
    );
    for (text, needle) in [
        (&r.reason, "CUDA_ERROR_UNKNOWN"),
        (
            &r.hint,
            "apt-get install -y --allow-downgrades nvidia-container-toolkit=1.19.0-1",
        ),
        (&r.hint, "apt-mark hold nvidia-container-toolkit"),
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    insta::assert_snapshot!(p.render_text());
}

/// The release the plan pinned, installed: held, nothing more; unheld, it is held again.
#[test]
fn the_pinned_toolkit_stays_held() {
    let at_pin = converged().replace("1.17.8-1", "1.19.0-1");
    let unheld = plan_for(SEED_SPEC, &at_pin);
    let (command, _) = toolkit_step(&unheld).expect("the hold is planned");
    assert_eq!(
        command,
        "apt-mark hold nvidia-container-toolkit nvidia-container-toolkit-base libnvidia-container-tools libnvidia-container1"
    );
    let holds = "libcuda1\nlibnvidia-ml1\nnvidia-driver\nnvidia-kernel-dkms\nnvidia-container-toolkit\nnvidia-container-toolkit-base\nlibnvidia-container-tools\nlibnvidia-container1\n";
    let held = set_section(&at_pin, "apt-holds", holds);
    assert!(toolkit_step(&plan_for(SEED_SPEC, &held)).is_none());
    // an older release that is not known bad is left as it is
    assert!(toolkit_step(&plan_for(SEED_SPEC, &converged())).is_none());
}

/// Toolkit 1.17.0 broke CDI devices for Podman (fixed in 1.17.1, NVIDIA's maintainer in
/// cncf-tags/container-device-interface#239); with Docker that entry does not apply, but
/// 1.17.0's IMEX regression of the nvidia runtime does.
#[test]
fn toolkit_1_17_0_is_refused_for_the_runtime_it_breaks() {
    let text = converged().replace("1.17.8-1", "1.17.0-1");
    let docker = plan_for(SEED_SPEC, &text);
    let ids: Vec<&str> = ["ctk-1.17.0-cdi-podman", "ctk-1.17.0-imex-legacy"]
        .into_iter()
        .filter(|id| docker.refusals.iter().any(|r| r.reason.contains(id)))
        .collect();
    assert_eq!(ids, ["ctk-1.17.0-imex-legacy"]);
    let podman_spec = SEED_SPEC.replace("runtime = \"docker\"", "runtime = \"podman\"");
    let podman = set_section(&text, "podman", "podman version 4.3.1\n");
    let p = plan_for(&podman_spec, &podman);
    assert!(
        p.refusals
            .iter()
            .any(|r| r.reason.contains("ctk-1.17.0-cdi-podman")),
        "{:?}",
        p.refusals
    );
    assert!(!p.refusals.iter().any(|r| r.reason.contains("imex")));
}

/// #20: an apply cut after the nouveau blacklist's write and before `update-initramfs` (steps
/// later) left the images without the blacklist; the blacklist alone no longer plans the
/// rebuild, so the images' age must.
#[test]
fn an_apply_cut_after_the_blacklist_still_rebuilds_the_initramfs() {
    let mut blacklist_only = plan_for(SEED_SPEC, &fresh());
    blacklist_only
        .changes
        .retain(|c| c.step == "nouveau-blacklist");
    assert_eq!(blacklist_only.changes.len(), 1);
    // the blacklist is written at mtime 1800000000
    let cut = write_files(&fresh(), &blacklist_only);
    let kernel = |initrd: &str| {
        format!("6.1.0-22-amd64 vmlinuz=yes headers=no nvidia=none signed=none{initrd}\n")
    };
    let steps_with = |initrd: &str| {
        let text = set_section(&cut, "guest-kernels", &kernel(initrd));
        let p = plan_for(SEED_SPEC, &text);
        let reason = p
            .changes
            .iter()
            .find(|c| c.step == "initramfs")
            .map(|c| c.reason.clone());
        (
            p.changes.iter().any(|c| c.step == "nouveau-blacklist"),
            reason,
        )
    };
    // the image from before the blacklist
    let (blacklist_again, reason) = steps_with(" initrd=1719669600");
    assert!(!blacklist_again);
    let reason = reason.expect("the stale image is rebuilt");
    assert!(
        reason.contains(
            "initramfs of 6.1.0-22-amd64 is older than /etc/modprobe.d/pvegpu-nouveau.conf"
        ),
        "{reason}"
    );
    // an image of unknown age (a probe that does not say): rebuilt, as unknown is not safe
    assert!(steps_with("").1.is_some());
    // built after the blacklist, or no image at all: nothing to rebuild
    assert_eq!(steps_with(" initrd=1800000100").1, None);
    assert_eq!(steps_with(" initrd=none").1, None);
}

/// #20: an apply cut after the Triton unit's write and before `triton-start` left the old
/// service running; the write alone no longer plans the restart, so the service's start
/// time and systemd's reload flag must.
#[test]
fn an_apply_cut_after_the_triton_unit_still_restarts_the_service() {
    let text = converged();
    let mut unit_only = plan_for(SEED_SPEC, &text);
    unit_only.changes.retain(|c| c.step == "triton-unit");
    assert_eq!(unit_only.changes.len(), 1);
    // the unit is written at mtime 1800000000; the service that ran before goes on
    let cut = set_section(
        &write_files(&text, &unit_only),
        "triton-service",
        "active\n",
    );
    let plan_since = |since: &str| {
        let body = format!("{since}### pvegpu exit 0\n");
        plan_for(SEED_SPEC, &add_section(&cut, "triton-service-since", &body))
    };
    let start_reason = |p: &GuestPlan| {
        let steps: Vec<&str> = p.changes.iter().map(|c| c.step.as_str()).collect();
        assert!(steps.iter().all(|s| *s == "triton-start"), "{steps:?}");
        p.changes.first().map(|c| c.reason.clone())
    };
    let started_before = plan_since("NeedDaemonReload=no\nActiveEnterTimestamp=@1799990000\n");
    let reason = start_reason(&started_before).expect("the service is restarted");
    assert!(
        reason.contains(
            "/etc/systemd/system/pvegpu-triton.service changed after the service started"
        ),
        "{reason}"
    );
    // systemd without --timestamp=unix (before 248) still tells that the unit changed
    let reason = start_reason(&plan_since("NeedDaemonReload=yes\n")).expect("restarted");
    assert!(
        reason.contains("changed on disk since systemd read it"),
        "{reason}"
    );
    // started after the write (the restart happened): nothing to do
    let started_after = plan_since("NeedDaemonReload=no\nActiveEnterTimestamp=@1800000100\n");
    assert_eq!(start_reason(&started_after), None);
}

#[test]
fn an_install_killed_halfway_is_finished_by_dpkg_before_apt_runs() {
    // the headers' install died between unpacking and configuring (a guest that crashed, an
    // OOM kill): dpkg's journal is left, the packages are unpacked (iU), and apt refuses every
    // install ("E: dpkg was interrupted, you must manually run 'dpkg --configure -a'")
    let text = fresh().replace(
        "ii  linux-image-amd64 6.1.94-1\n",
        "ii  linux-image-amd64 6.1.94-1\niU  linux-headers-6.1.0-22-amd64 6.1.94-1\niU  linux-headers-amd64 6.1.94-1\n",
    );
    let audit = "journal /var/lib/dpkg/updates/0000\nThe following packages have been unpacked but not yet configured.\nThey must be configured using dpkg --configure or the configure\nmenu option in dselect for them to work:\n linux-headers-6.1.0-22-amd64   Header files for Linux 6.1.0-22-amd64\n linux-headers-amd64            Header files for Linux amd64 configuration (meta-package)\n### pvegpu exit 0\n";
    let p = plan_for(SEED_SPEC, &add_section(&text, "dpkg-audit", audit));
    let first = &p.changes[0];
    assert_eq!(first.step, "dpkg-configure");
    assert_eq!(
        first.action,
        Action::Run {
            command: "dpkg --force-confdef --force-confold --configure -a".into()
        }
    );
    assert!(
        first.reason.contains("journal /var/lib/dpkg/updates/0000"),
        "{}",
        first.reason
    );
    // the unpacked packages alone (an older probe without the audit) say so too
    let p = plan_for(SEED_SPEC, &text);
    assert_eq!(p.changes[0].step, "dpkg-configure");
    assert!(
        p.changes[0]
            .reason
            .contains("linux-headers-6.1.0-22-amd64 is iU"),
        "{}",
        p.changes[0].reason
    );
    // a dpkg that finished its last run: nothing to do
    let clean = add_section(&fresh(), "dpkg-audit", "### pvegpu exit 0\n");
    assert!(
        plan_for(SEED_SPEC, &clean)
            .changes
            .iter()
            .all(|c| c.step != "dpkg-configure")
    );
}

#[test]
fn an_apply_cut_after_the_docker_runtime_write_still_restarts_docker() {
    // daemon.json has the nvidia runtime (nvidia-ctk wrote it), but the apply was cut before
    // `systemctl restart docker`: the running daemon does not know the runtime
    let text = serving();
    let plan_with = |section: Option<&str>| {
        let t = match section {
            Some(body) => add_section(&text, "docker-runtimes", body),
            None => text.clone(),
        };
        plan_for(SEED_SPEC, &t)
    };
    let restart = |p: &GuestPlan| {
        let steps: Vec<&str> = p.changes.iter().map(|c| c.step.as_str()).collect();
        assert!(steps.iter().all(|s| *s == "docker-runtime"), "{steps:?}");
        p.changes
            .first()
            .map(|c| (c.reason.clone(), commands(p)[0].to_string()))
    };
    let stale = plan_with(Some(
        "{\"io.containerd.runc.v2\":{\"path\":\"runc\"},\"runc\":{\"path\":\"runc\"}}\n### pvegpu exit 0\n",
    ));
    let (reason, command) = restart(&stale).expect("docker is restarted");
    assert_eq!(command, "systemctl restart docker");
    assert!(
        reason.contains("the running Docker daemon does not"),
        "{reason}"
    );
    // a daemon that does not answer is restarted too (what Docker's client 28.2.2 printed
    // here, without a daemon: `null`, then the error, exit 1)
    let down = plan_with(Some(
        "null\nCannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n### pvegpu exit 1\n",
    ));
    assert!(restart(&down).is_some(), "a stopped daemon is started");
    // the daemon has the runtime: nothing to do
    let fine = plan_with(Some(
        "{\"io.containerd.runc.v2\":{\"path\":\"runc\"},\"nvidia\":{\"path\":\"nvidia-container-runtime\"},\"runc\":{\"path\":\"runc\"}}\n### pvegpu exit 0\n",
    ));
    assert_eq!(restart(&fine), None);
    // an older probe that did not ask: as before, nothing
    assert_eq!(restart(&plan_with(None)), None);
}

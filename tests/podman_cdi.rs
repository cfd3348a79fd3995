//! verify's CDI diagnosis against what Debian's Podman really does. A harmless spec for
//! `nvidia.com/gpu` (a test device node, an environment variable and a mount) is placed in
//! /etc/cdi, /var/run/cdi and ~/.config/cdi in turn; for each placement, rootful and rootless,
//! the real verify probe gathers the specs as on a guest, the diagnosis says whether
//! `--device nvidia.com/gpu=all` will resolve, and a container from a small image built here
//! (busybox, no registry) shows whether it did. They must agree every time.
//!
//! Opt-in (`PVEGPU_PODMAN=1`, as root; `.ci/run` sets it): the test makes a user
//! `pvegpu-rootless` with subordinate ids, the device node /dev/pvegpu-test-gpu0 (the numbers of
//! /dev/zero) and its spec files, and removes the spec files again. This machine's root lacks
//! CAP_SYS_RESOURCE and mounts cgroups in hybrid mode, so Podman runs here with no default
//! ulimits and with runc (crun refuses hybrid cgroups); neither touches how CDI is resolved.

mod support;
use pvegpu::inventory::guest::GuestSpec;
use pvegpu::verify::collect::{checks, probe_script};
use pvegpu::verify::guest::GuestExpect;
use pvegpu::verify::{Check, Status};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::gate::{Gated, Need};

const USER: &str = "pvegpu-rootless";
const DEVICE: &str = "/dev/pvegpu-test-gpu0";
const IMAGE: &str = "localhost/pvegpu-cdi-probe";
const IN_CONTAINER: &str = "echo env=$PVEGPU_CDI; [ -c /dev/pvegpu-test-gpu0 ] && echo dev=yes; read l < /pvegpu-cdi-mount; echo mount=$l";
const INJECTED: &str = "env=injected\ndev=yes\nmount=mounted-from-host\n";

/// A spec as nvidia-ctk lays one out (device path = host path), with `all` defined or not.
fn spec(host_file: &Path, with_all: bool) -> String {
    let device = |name: &str| {
        format!(
            "- name: \"{name}\"\n  containerEdits:\n    deviceNodes:\n    - path: {DEVICE}\n      hostPath: {DEVICE}\n"
        )
    };
    format!(
        "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n{}{}containerEdits:\n  env:\n  - PVEGPU_CDI=injected\n  mounts:\n  - hostPath: {}\n    containerPath: /pvegpu-cdi-mount\n    options: [ro, nosuid, nodev, bind]\n",
        device("0"),
        if with_all {
            device("all")
        } else {
            String::new()
        },
        host_file.display()
    )
}

fn ok(out: Output, what: &str) -> Output {
    assert!(out.status.success(), "{what}: {out:?}");
    out
}

fn sh(cmd: &str) -> Output {
    Command::new("sh").args(["-c", cmd]).output().unwrap()
}

/// Who runs Podman and the probe: root, or the rootless user through runuser.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Rootful,
    Rootless,
}

struct Lab {
    dir: tempfile::TempDir,
    root_home: PathBuf,
    user_home: PathBuf,
    conf: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        if !sh(&format!("id {USER}")).status.success() {
            ok(sh(&format!("useradd -m -s /bin/sh {USER}")), "useradd");
        }
        if !Path::new(DEVICE).exists() {
            ok(sh(&format!("mknod -m 0666 {DEVICE} c 1 5")), "mknod");
        }
        let user_home = PathBuf::from(format!("/home/{USER}"));
        let conf = dir.path().join("containers.conf");
        std::fs::write(
            &conf,
            "[containers]\ndefault_ulimits = []\n[engine]\nruntime = \"runc\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("host-file"), "mounted-from-host\n").unwrap();
        let ctx = dir.path().join("image");
        std::fs::create_dir(&ctx).unwrap();
        let busybox = String::from_utf8(ok(sh("command -v busybox"), "busybox").stdout).unwrap();
        std::fs::copy(busybox.trim(), ctx.join("busybox")).unwrap();
        std::fs::write(
            ctx.join("Containerfile"),
            "FROM scratch\nCOPY busybox /bin/sh\n",
        )
        .unwrap();
        let root_home = dir.path().join("root-home");
        std::fs::create_dir(&root_home).unwrap();
        let lab = Lab {
            dir,
            root_home,
            user_home,
            conf,
        };
        for mode in [Mode::Rootful, Mode::Rootless] {
            let build = format!("podman build -q -t {IMAGE} {}", ctx.display());
            ok(lab.as_(mode, &build), "podman build");
        }
        lab
    }

    fn home(&self, mode: Mode) -> &Path {
        match mode {
            Mode::Rootful => &self.root_home,
            Mode::Rootless => &self.user_home,
        }
    }

    fn as_(&self, mode: Mode, cmd: &str) -> Output {
        // runuser resets HOME, so the environment is set on the far side
        let mut c = Command::new("runuser");
        if let Mode::Rootless = mode {
            c.args(["-u", USER]);
        } else {
            c.args(["-u", "root"]);
        }
        c.arg("--")
            .arg("env")
            .arg(format!("HOME={}", self.home(mode).display()))
            .arg(format!("CONTAINERS_CONF={}", self.conf.display()))
            .args(["sh", "-c", cmd])
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    /// What Podman really does with `--device nvidia.com/gpu=all`: true when the spec's
    /// edits reached the container, false when the name did not resolve.
    fn podman_resolves(&self, mode: Mode) -> bool {
        let out = self.as_(
            mode,
            &format!(
                "podman run --rm --network=none --device nvidia.com/gpu=all {IMAGE} /bin/sh -c '{IN_CONTAINER}'"
            ),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() && stdout == INJECTED {
            return true;
        }
        assert!(
            stderr.contains("unresolvable CDI devices nvidia.com/gpu=all"),
            "{mode:?}: neither injected nor unresolvable:\nstdout {stdout}\nstderr {stderr}"
        );
        false
    }

    /// What the diagnosis says, from the real probe run as that user: both of its CDI checks
    /// that decide whether the name resolves.
    fn diagnosis(&self, mode: Mode) -> (bool, Vec<Check>) {
        let guest: GuestSpec = toml::from_str("runtime = \"podman\"\n").unwrap();
        let out = self.as_(mode, &probe_script(Some(&guest)));
        let text = String::from_utf8_lossy(&out.stdout);
        let decisive: Vec<Check> = checks(&text, Some(&guest), &GuestExpect::default())
            .into_iter()
            .filter(|c| {
                c.name == "CDI spec where Podman reads it"
                    || c.name == "requested CDI devices defined"
            })
            .collect();
        let resolves = !decisive.is_empty() && decisive.iter().all(|c| c.status == Status::Pass);
        (resolves, decisive)
    }
}

/// A spec file placed for one case and removed after it, whatever happens.
struct Placed(PathBuf);

impl Placed {
    fn new(dir: &Path, text: &str, owner: Option<&str>) -> Placed {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(format!("pvegpu-test-{}.yaml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        if let Some(user) = owner {
            ok(
                sh(&format!(
                    "chown -R {user} {}",
                    dir.parent().unwrap().display()
                )),
                "chown",
            );
        }
        Placed(path)
    }
}

impl Drop for Placed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn the_diagnosis_agrees_with_podman_for_every_placement() {
    let lab = Lab::new();
    let host_file = lab.dir.path().join("host-file");
    let mut table = Vec::new();
    for mode in [Mode::Rootful, Mode::Rootless] {
        let home_cdi = lab.home(mode).join(".config/cdi");
        let owner = matches!(mode, Mode::Rootless).then_some(USER);
        let cases: [(&str, PathBuf, bool, Option<&str>); 4] = [
            ("/etc/cdi", PathBuf::from("/etc/cdi"), true, None),
            ("/var/run/cdi", PathBuf::from("/var/run/cdi"), true, None),
            ("~/.config/cdi", home_cdi, true, owner),
            (
                "/etc/cdi without `all`",
                PathBuf::from("/etc/cdi"),
                false,
                None,
            ),
        ];
        for (label, dir, with_all, owner) in cases {
            let _placed = Placed::new(&dir, &spec(&host_file, with_all), owner);
            let real = lab.podman_resolves(mode);
            let (said, decisive) = lab.diagnosis(mode);
            assert_eq!(
                said, real,
                "{mode:?}, spec in {label}: podman resolved it: {real}, the diagnosis said {said}: {decisive:#?}"
            );
            table.push(format!("{mode:?} {label}: {real}"));
        }
    }
    eprintln!(
        "podman resolved nvidia.com/gpu=all:\n  {}",
        table.join("\n  ")
    );
    // what Podman did, as the README reports it
    assert_eq!(
        table,
        [
            "Rootful /etc/cdi: true",
            "Rootful /var/run/cdi: true",
            "Rootful ~/.config/cdi: false",
            "Rootful /etc/cdi without `all`: false",
            "Rootless /etc/cdi: true",
            "Rootless /var/run/cdi: true",
            "Rootless ~/.config/cdi: false",
            "Rootless /etc/cdi without `all`: false",
        ]
    );
}

fn main() {
    Gated::new()
        .test(
            "the_diagnosis_agrees_with_podman_for_every_placement",
            &[
                Need::Env(
                    "PVEGPU_PODMAN",
                    "the real Podman CDI test (it adds a user and a device node)",
                ),
                Need::Root,
                Need::Command("podman", "podman"),
                Need::Command("runc", "runc"),
                Need::Command("runuser", "util-linux"),
                Need::Command("busybox", "busybox-static"),
                Need::Command("newuidmap", "uidmap"),
            ],
            the_diagnosis_agrees_with_podman_for_every_placement,
        )
        .run();
}

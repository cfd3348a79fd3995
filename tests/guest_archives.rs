//! Every package set the guest phase can plan, resolved against the real archives (#18).
//!
//! For each supported release (Debian 12 and 13, Ubuntu 22.04 and 24.04), each GPU
//! generation (Kepler, Pascal, Turing, Ada, Hopper: the proprietary and the open kernel
//! module), with and without the CUDA toolkit, with Docker and with Podman, the guest planner
//! plans a fresh guest of that release running the archive's current kernel. The
//! distribution's packages of every plan's `apt-get install` lines are then resolved with
//! `apt-get install --simulate` in an apt root of that release (`scripts/apt-roots.sh`: the
//! release's real package lists, nothing installed), and the packages apt would install must
//! carry one NVIDIA driver version. Packages of NVIDIA's own repositories, which cannot be
//! fetched here, are checked against `data/guest/nvidia-repos.json` and its sources.
//!
//! Needs `PVEGPU_APT_ROOTS` (a folder made by scripts/apt-roots.sh; .ci/run makes one).

mod support;
use pvegpu::core::plan::Action;
use pvegpu::facts::RawFacts;
use pvegpu::guest::{GuestFacts, GuestPlan, plan};
use pvegpu::inventory::guest::GuestSpec;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::gate::{Gated, Need};
use support::{read, set_section};

struct Release {
    name: &'static str,
    fixture: &'static str,
    /// Edits of the fixture's text into this release (the fixture's own release first).
    rename: &'static [(&'static str, &'static str)],
    /// The kernel metapackage a cloud image of the release has.
    kernel_meta: &'static str,
}

const RELEASES: &[Release] = &[
    Release {
        name: "bookworm",
        fixture: "guest/gtx1080-debian12-fresh.facts",
        rename: &[],
        kernel_meta: "linux-image-amd64",
    },
    Release {
        name: "trixie",
        fixture: "guest/gtx1080-debian12-fresh.facts",
        rename: &[
            (
                "Debian GNU/Linux 12 (bookworm)",
                "Debian GNU/Linux 13 (trixie)",
            ),
            ("VERSION_ID=\"12\"", "VERSION_ID=\"13\""),
            ("12 (bookworm)", "13 (trixie)"),
            ("bookworm", "trixie"),
        ],
        kernel_meta: "linux-image-amd64",
    },
    Release {
        name: "jammy",
        fixture: "guest/h100-ubuntu2404-fresh.facts",
        rename: &[
            (
                "24.04.1 LTS (Noble Numbat)",
                "22.04.5 LTS (Jammy Jellyfish)",
            ),
            ("Ubuntu 24.04.1 LTS", "Ubuntu 22.04.5 LTS"),
            ("VERSION_ID=\"24.04\"", "VERSION_ID=\"22.04\""),
            ("noble", "jammy"),
        ],
        kernel_meta: "linux-image-virtual",
    },
    Release {
        name: "noble",
        fixture: "guest/h100-ubuntu2404-fresh.facts",
        rename: &[],
        kernel_meta: "linux-image-virtual",
    },
];

/// One card of each generation that changes the packages: (id, name).
const GPUS: &[(&str, &str)] = &[
    ("102d", "GK210GL [Tesla K80]"),
    ("1b80", "GP104 [GeForce GTX 1080]"),
    ("1eb8", "TU104GL [Tesla T4]"),
    ("27b8", "AD104GL [L4]"),
    ("2331", "GH100 [H100 PCIe]"),
];

const SPECS: &[&str] = &[
    "runtime = \"docker\"\n",
    "runtime = \"podman\"\n",
    "runtime = \"docker\"\ncuda_toolkit = true\n",
];

fn roots() -> PathBuf {
    PathBuf::from(std::env::var("PVEGPU_APT_ROOTS").expect("PVEGPU_APT_ROOTS"))
}

/// apt in the release's root, as scripts/apt-roots.sh configured it.
fn apt(release: &str, tool: &str, args: &[&str]) -> std::process::Output {
    Command::new(tool)
        .env("APT_CONFIG", roots().join(release).join("apt.conf"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

/// The kernel the release's kernel metapackage installs now (`6.1.0-57-amd64`).
fn current_kernel(r: &Release) -> String {
    let out = apt(r.name, "apt-cache", &["depends", r.kernel_meta]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| {
            w.strip_prefix("linux-image-")
                .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        })
        .unwrap_or_else(|| panic!("{}: no kernel behind {}: {text}", r.name, r.kernel_meta))
        .to_string()
}

/// A fresh guest of the release with one card and the archive's kernel.
fn guest(r: &Release, gpu: (&str, &str), kernel: &str) -> GuestFacts {
    let mut text = read(r.fixture);
    for (from, to) in r.rename {
        text = text.replace(from, to);
    }
    let lspci = format!(
        "0000:01:00.0 3D controller [0302]: NVIDIA Corporation {} [10de:{}] (rev a1)\n\tSubsystem: NVIDIA Corporation Device [10de:1234]\n\tKernel modules: nouveau\n",
        gpu.1, gpu.0
    );
    text = set_section(&text, "lspci", &lspci);
    text = set_section(&text, "uname", &format!("{kernel}\n"));
    text = set_section(
        &text,
        "guest-kernels",
        &format!("{kernel} vmlinuz=yes headers=no nvidia=none signed=none\n"),
    );
    let packages = format!(
        "ii  ca-certificates 1\nii  curl 1\nii  gpg 1\nii  linux-image-{kernel} 1\nii  {} 1\n",
        r.kernel_meta
    );
    text = set_section(&text, "packages", &packages);
    GuestFacts::from_raw(&RawFacts::parse(&text).unwrap()).unwrap()
}

/// The packages of every `apt-get install` line of a plan.
fn installs(p: &GuestPlan) -> Vec<String> {
    p.changes
        .iter()
        .filter_map(|c| match &c.action {
            Action::Run { command } => command.split_once("apt-get install -y "),
            _ => None,
        })
        // the install ends at the next command (`&& apt-mark hold ...`)
        .map(|(_, rest)| rest.split("&&").next().unwrap_or(rest))
        .flat_map(|pkgs| pkgs.split_whitespace().map(str::to_string))
        .collect()
}

/// Packages that come from NVIDIA's repositories, not the distribution's.
fn from_nvidia(package: &str) -> bool {
    // a pinned toolkit release is `package=version`, all four packages NVIDIA's
    package.starts_with("cuda-toolkit-")
        || package.starts_with("nvidia-container-toolkit")
        || package.starts_with("libnvidia-container")
}

/// `Inst NAME (VERSION ...)` lines of a simulated install.
fn simulated(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("Inst "))
        .filter_map(|l| {
            let (name, rest) = l.split_once(" (")?;
            Some((
                name.to_string(),
                rest.split_whitespace().next()?.to_string(),
            ))
        })
        .collect()
}

/// The NVIDIA driver versions among the packages apt would install (`535.309.01`): the
/// driver's libraries, tools and modules must be one version.
fn driver_versions(inst: &BTreeMap<String, String>) -> BTreeMap<String, Vec<String>> {
    let re = regex::Regex::new(r"^(?:\d+:)?(\d{3}\.\d+(?:\.\d+)?)").unwrap();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Built from sources of their own and released apart from the driver, for any driver;
    // and the ICD configuration files Debian's driver variants share (the tesla-470 stack
    // depends on the current driver's nvidia-egl-common and nvidia-vulkan-common).
    let separate = |n: &str| {
        n.starts_with("nvidia-settings")
            || ["nvidia-persistenced", "nvidia-modprobe"].contains(&n)
            || ["nvidia-egl-common", "nvidia-vulkan-common"].contains(&n)
    };
    for (name, version) in inst {
        if !(name.contains("nvidia") || name.contains("cuda") || name.contains("libnv"))
            || separate(name)
        {
            continue;
        }
        if let Some(c) = re.captures(version) {
            out.entry(c[1].to_string()).or_default().push(name.clone());
        }
    }
    out
}

/// data/guest/nvidia-repos.json.
fn cuda_sources() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/guest/nvidia-repos.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn minor(v: &str) -> (u32, u32) {
    let mut p = v.split('.').map(|n| n.parse::<u32>().unwrap());
    (p.next().unwrap(), p.next().unwrap())
}

/// The candidate version of a package in the release's archive, if it has one.
fn candidate(release: &str, package: &str) -> Option<String> {
    let out = apt(release, "apt-cache", &["policy", package]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate: "))
        .filter(|v| *v != "(none)")
        .map(str::to_string)
}

fn repo_id(release: &str) -> &'static str {
    match release {
        "bookworm" => "debian12",
        "trixie" => "debian13",
        "jammy" => "ubuntu2204",
        _ => "ubuntu2404",
    }
}

fn every_planned_package_set_resolves_in_the_real_archives() {
    let sources = cuda_sources();
    let mut table = Vec::new();
    let mut failures = Vec::new();
    for r in RELEASES {
        let kernel = current_kernel(r);
        let id = repo_id(r.name);
        // The distribution's own toolkit, as the data says and as the archive has it.
        let own = &sources["distribution_toolkits"][id];
        let archive = candidate(r.name, own["package"].as_str().unwrap()).unwrap_or_default();
        let without_epoch = archive.rsplit(':').next().unwrap_or_default().to_string();
        if !without_epoch.starts_with(&format!("{}.", own["version"].as_str().unwrap())) {
            failures.push(format!(
                "{}: data/guest/nvidia-repos.json says {} {}, the archive has {archive}",
                r.name, own["package"], own["version"]
            ));
        }
        let podman = candidate(r.name, "podman").unwrap_or_default();
        let podman_cdi = pvegpu::guest::parse::major_minor(&podman).is_some_and(|v| v >= (4, 1));
        for gpu in GPUS {
            let facts = guest(r, *gpu, &kernel);
            let mut union: BTreeSet<String> = BTreeSet::new();
            for spec_text in SPECS {
                let spec: GuestSpec = toml::from_str(spec_text).unwrap();
                let case = format!("{} 10de:{} {}", r.name, gpu.0, spec_text.replace('\n', " "));
                let p = plan(&spec, &facts).unwrap();
                if spec_text.contains("podman") && !podman_cdi && p.refusals.is_empty() {
                    failures.push(format!(
                        "{case}: planned with the archive's Podman {podman}, which has no CDI device names"
                    ));
                }
                if let Some(refusal) = p.refusals.first() {
                    table.push(format!("{case}-> refused: {}", refusal.reason));
                    continue;
                }
                let pkgs = installs(&p);
                let first = sources["repositories"][id]["first_toolkit"]
                    .as_str()
                    .unwrap();
                for t in pkgs.iter().filter(|p| p.starts_with("cuda-toolkit-")) {
                    let version = t.trim_start_matches("cuda-toolkit-").replace('-', ".");
                    if minor(&version) < minor(first) {
                        failures.push(format!(
                            "{case}: {t} is not in NVIDIA's {id} repository (it starts at {first})"
                        ));
                    }
                }
                table.push(format!("{case}-> {}", pkgs.join(" ")));
                union.extend(pkgs.into_iter().filter(|p| !from_nvidia(p)));
            }
            if union.is_empty() {
                continue;
            }
            let mut args = vec!["install", "--simulate", "-q", "-y"];
            args.extend(union.iter().map(String::as_str));
            let out = apt(r.name, "apt-get", &args);
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            let what = format!(
                "{} 10de:{}: apt-get install {}",
                r.name,
                gpu.0,
                union.iter().cloned().collect::<Vec<_>>().join(" ")
            );
            if !out.status.success() {
                let why: Vec<&str> = text
                    .lines()
                    .filter(|l| {
                        l.starts_with("E:") || l.contains("Depends:") || l.contains("Conflicts:")
                    })
                    .collect();
                failures.push(format!(
                    "{what}\n    does not resolve:\n    {}",
                    why.join("\n    ")
                ));
                continue;
            }
            let versions = driver_versions(&simulated(&text));
            if versions.len() > 1 {
                failures.push(format!(
                    "{what}\n    mixes NVIDIA driver versions: {versions:?}"
                ));
            }
        }
    }
    println!("{}", table.join("\n"));
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn main() {
    Gated::new()
        .test(
            "every_planned_package_set_resolves_in_the_real_archives",
            &[
                Need::Command("apt-get", "apt"),
                Need::Dir(
                    "PVEGPU_APT_ROOTS",
                    "apt roots of each release: scripts/apt-roots.sh DIR, then set PVEGPU_APT_ROOTS=DIR (.ci/run does)",
                ),
            ],
            every_planned_package_set_resolves_in_the_real_archives,
        )
        .run()
}

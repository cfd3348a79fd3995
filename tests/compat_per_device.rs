//! Per-device answers of `pvegpu compat` (#16): driver support per PCI id per branch, and
//! products told apart by their subsystem id, on real data kept verbatim with its source.

use pvegpu::compat::driver::{DriverError, DriverSource};
use pvegpu::compat::gpu::{GpuError, resolve};
use pvegpu::compat::support::{Scope, Verdict, verdict};
use pvegpu::compat::{CompatError, Distro, Recommendation, Request, recommend, tables};
use pvegpu::pci::PciId;

/// github:NVIDIA/open-gpu-kernel-modules:README.md@ef65a1309711a38041ece7ac3467d30a6e256d85
/// (tag 535.288.01, the newest R535 release there), table "Compatible GPUs", its GH100 rows:
/// no H200 (2335).
const README_535_288_01_GH100: &str = "\
| NVIDIA H100 80GB HBM3                           | 2330 10DE 16C0 |
| NVIDIA H100 80GB HBM3                           | 2330 10DE 16C1 |
| NVIDIA H100 PCIe                                | 2331 10DE 1626 |
| NVIDIA H100                                     | 2339 10DE 17FC |
| NVIDIA H800 NVL                                 | 233A 10DE 183A |
";

/// The same table at tag 550.163.01 (23e9e7621487fe632040a370249f690a456967dd): H200 is
/// there, by subsystem.
const README_550_163_01_GH100: &str = "\
| NVIDIA H100 80GB HBM3                           | 2330 10DE 16C0 |
| NVIDIA H100 80GB HBM3                           | 2330 10DE 16C1 |
| NVIDIA H100 PCIe                                | 2331 10DE 1626 |
| NVIDIA H200                                     | 2335 10DE 18BE |
| NVIDIA H200                                     | 2335 10DE 18BF |
| NVIDIA H100                                     | 2339 10DE 17FC |
| NVIDIA H800 NVL                                 | 233A 10DE 183A |
";

/// github:alex-tu-cc/get-nvidia-supported-gpus-json:focal-nvidia-driver-525-supported-gpus.json
/// @b9c1aa1a24f3af5d864da50e588b4a7be85bfd22 (NVIDIA's supported-gpus.json out of Ubuntu's
/// nvidia-driver-525 package), lines 11219-11228. The file has no `"0x1EB8"` (Tesla T4).
const SUPPORTED_GPUS_525_GTX_1080: &str = r#"    {
      "devid": "0x1B80",
      "name": "NVIDIA GeForce GTX 1080",
      "features": [
        "dpycbcr420",
        "dpgsynccompatible",
        "hdmi4k60rgb444",
        "vdpaufeaturesetH2"
      ]
    },"#;

/// github:pciutils/pciids:pci.ids@c1c12547d626ebf05fd0223144ad87fab5e95d06 (2026-08-22), the
/// snapshot gpus.json was built from: two device ids sold as several products.
const PCI_IDS: &str = "\
\t1dba  GV100GL [Quadro GV100]
\t\t10de 12eb  TITAN V CEO Edition
\t1e30  TU102GL [Quadro RTX 6000/8000]
\t\t10de 129e  Quadro RTX 8000
\t\t10de 12ba  Quadro RTX 6000
";

/// A real `lspci -nnk -d 10de:` block from a guide to GPU passthrough in OpenShift
/// Virtualization ("Validate proper node configuration"; find_string id 19085366000).
const LSPCI_QUADRO_RTX_8000: &str = "\
1a:00.0 VGA compatible controller [0300]: NVIDIA Corporation TU102GL [Quadro RTX 6000/8000] [10de:1e30] (rev a1)
\tSubsystem: NVIDIA Corporation Quadro RTX 8000 [10de:129e]
\tKernel driver in use: vfio-pci
";

fn id(s: &str) -> PciId {
    s.parse().unwrap()
}

/// The device ids of README table rows (`| name | 2335 10DE 18BE |` -> 10de:2335).
fn readme_ids(rows: &str) -> Vec<PciId> {
    rows.lines()
        .filter_map(|l| l.split('|').nth(2))
        .filter_map(|c| c.split_whitespace().next())
        .map(|d| id(&format!("10de:{}", d.to_lowercase())))
        .collect()
}

fn rec(gpus: &[&str], distro: Distro, driver: Option<&str>) -> Result<Recommendation, CompatError> {
    recommend(
        tables(),
        &Request {
            gpus: gpus.iter().map(|g| g.to_string()).collect(),
            distro,
            driver: driver.map(|d| d.parse().unwrap()),
            backends: vec![],
        },
    )
}

fn open_list(branch: u32) -> &'static pvegpu::compat::support::IdList {
    tables()
        .id_lists
        .iter()
        .find(|l| l.branch == branch && l.scope == Scope::OpenModule)
        .unwrap()
}

#[test]
fn the_readme_tables_are_stored_as_read() {
    let h200 = id("10de:2335");
    assert!(!readme_ids(README_535_288_01_GH100).contains(&h200));
    assert!(readme_ids(README_550_163_01_GH100).contains(&h200));
    for (branch, rows, release) in [
        (535, README_535_288_01_GH100, "535.288.01"),
        (550, README_550_163_01_GH100, "550.163.01"),
    ] {
        let list = open_list(branch);
        assert_eq!(list.release.as_deref(), Some(release));
        for i in readme_ids(rows) {
            assert!(list.has(i), "{i} not in the stored {release} list");
        }
        assert!(list.source[0].contains(release), "{:?}", list.source);
    }
    assert!(!open_list(535).has(h200));
    // Nor does the newest R525 release's table (525.147.05, 207a166f) have a `| 2335` row.
    assert_eq!(open_list(525).release.as_deref(), Some("525.147.05"));
    assert!(!open_list(525).has(h200));
}

#[test]
fn a_card_missing_from_a_branchs_own_list_is_refused_for_that_branch() {
    // H200 is Hopper, which R535 supports by architecture; Debian bookworm's nvidia-detect
    // lists for the 535 packages, and NVIDIA's 535.288.01 table above, lack it.
    let r = rec(&["10de:2335"], Distro::Debian12, Some("535.309.01")).unwrap();
    assert!(!r.window.contains(535), "{}", r.window);
    assert_eq!(r.window.excluded, vec![535]);
    assert_eq!(r.window.to_string(), "R520+ without R535");
    assert!(!r.installed.as_ref().unwrap().in_window);
    assert_eq!(r.driver.source, DriverSource::NvidiaRepository);
    let why = r
        .reasons
        .iter()
        .find(|x| x.text.starts_with("10de:2335 NVIDIA H200 per id"))
        .unwrap();
    assert!(
        why.text.contains(
            "the lists of R535 (Debian bookworm nvidia-detect, package nvidia-driver (535.309.01)"
        ),
        "{}",
        why.text
    );
    assert!(
        why.source
            .iter()
            .any(|s| s.contains("nvidia-detect=535.309.01"))
    );
    // Debian 13's 550 package lists it: the distribution's driver fits there.
    let r = rec(&["10de:2335"], Distro::Debian13, None).unwrap();
    assert!(
        matches!(&r.driver.source, DriverSource::Distro { package, .. } if package == "nvidia-driver")
    );
    assert_eq!(r.driver.branch, 550);
    // A card that no branch of its architecture lists is refused outright.
    let e = rec(&["10de:0fc4"], Distro::Debian12, None).unwrap_err();
    assert!(
        matches!(e, CompatError::Driver(DriverError::NotListed { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("nvidia-tesla-470-driver"), "{e}");
}

#[test]
fn where_no_list_of_the_whole_driver_decides_support_is_by_architecture_only() {
    // H200 is missing from R525's open-module table (525.147.05), but that table is not the
    // driver's whole list (Tesla T4 is missing from the 535 one, which Debian's 535 list
    // has), and no whole-driver list of R525 is in the data: R525 stays in the window, said
    // to be by architecture only.
    let h200 = tables().gpu(id("10de:2335")).unwrap();
    assert!(
        matches!(verdict(tables(), h200, 525), Verdict::ByArchitecture { open_lacks } if open_lacks.len() == 1)
    );
    let t4 = tables().gpu(id("10de:1eb8")).unwrap();
    assert!(!open_list(535).has(t4.id));
    assert!(matches!(verdict(tables(), t4, 535), Verdict::Listed(l) if l.scope == Scope::Driver));
    let r = rec(&["10de:2335"], Distro::Debian12, None).unwrap();
    assert!(r.window.contains(525));
    let why = r
        .reasons
        .iter()
        .find(|x| x.text.contains("per id"))
        .unwrap();
    assert!(
        why.text
            .contains("R520, R525, R530, R545, R610, R615, R620 support it by architecture only"),
        "{}",
        why.text
    );
    assert!(
        why.text
            .contains("the open kernel module's list of R520, R525, R530, R545 lacks it"),
        "{}",
        why.text
    );
}

#[test]
fn nvidias_product_list_says_yes_and_never_no() {
    let chip: serde_json::Value =
        serde_json::from_str(SUPPORTED_GPUS_525_GTX_1080.trim_end_matches(',')).unwrap();
    let devid = chip["devid"].as_str().unwrap().trim_start_matches("0x");
    let gtx_1080 = tables()
        .gpu(id(&format!("10de:{}", devid.to_lowercase())))
        .unwrap();
    assert_eq!(gtx_1080.name, chip["name"]);
    assert!(
        matches!(verdict(tables(), gtx_1080, 525), Verdict::Listed(l) if l.scope == Scope::Products)
    );
    // Tesla T4 is not in NVIDIA's 525 file, yet the driver supports it (Debian's 535 list has
    // it; R525 has no whole-driver list): R525 stays in its window by architecture only.
    let r = rec(&["10de:1eb8"], Distro::Debian12, None).unwrap();
    assert!(r.window.contains(525));
}

#[test]
fn lspcis_subsystem_id_picks_the_exact_product() {
    // `lspci -nnk` as printed: the device id ends the first line, the subsystem id the second.
    let bracketed = |line: &str| {
        line.rsplit('[')
            .next()
            .unwrap()
            .trim_end_matches(']')
            .to_string()
    };
    let mut lines = LSPCI_QUADRO_RTX_8000.lines();
    let device = bracketed(lines.next().unwrap().trim_end_matches(" (rev a1)"));
    let sub_line = lines.next().unwrap();
    let subsystem = bracketed(sub_line);
    let spec = format!("{device}/{subsystem}");
    assert_eq!(spec, "10de:1e30/10de:129e");
    let r = resolve(tables(), &spec).unwrap();
    assert_eq!(r.gpu.id, id("10de:1e30"));
    assert_eq!(r.name(), "Quadro RTX 8000");
    assert!(sub_line.contains(r.name()));
    assert!(PCI_IDS.contains(&format!("10de 129e  {}", r.name())));
    // The other subsystem of the same device is the other product.
    let r = resolve(tables(), "10de:1e30/10de:12ba").unwrap();
    assert_eq!(r.name(), "Quadro RTX 6000");
    // A subsystem the data has no entry for: the device's name applies, as lspci prints it.
    let r = resolve(tables(), "10de:1db6/10de:124a").unwrap();
    assert_eq!(r.gpu.id, id("10de:1db6"));
    assert_eq!(r.subsystem_id, Some(id("10de:124a")));
    assert_eq!(r.name(), "Tesla V100-PCIE-32GB");
    let r = rec(&["10de:1e30/10de:129e"], Distro::Debian12, None).unwrap();
    assert_eq!(r.gpus[0].name, "Quadro RTX 8000");
    assert!(
        r.reasons[0]
            .text
            .contains("sold as Quadro RTX 8000 (subsystem 10de:129e)")
    );
    assert!(
        r.reasons[0]
            .source
            .iter()
            .any(|s| s.contains("open-gpu-kernel-modules"))
    );
}

#[test]
fn a_product_named_only_by_its_subsystem_resolves() {
    assert!(PCI_IDS.contains("10de 12eb  TITAN V CEO Edition"));
    let r = resolve(tables(), "TITAN V CEO Edition").unwrap();
    assert_eq!(r.gpu.id, id("10de:1dba"));
    assert_eq!(r.subsystem_id, Some(id("10de:12eb")));
    assert_eq!(r.name(), "TITAN V CEO Edition");
    let r = resolve(tables(), "Tesla V100 PCIe 32GB").unwrap();
    assert_eq!(r.gpu.id, id("10de:1db6"));
    // Checked against each other, through the subsystem.
    assert!(resolve(tables(), "10de:1dba/10de:12eb=TITAN V CEO Edition").is_ok());
    assert!(matches!(
        resolve(tables(), "10de:1e30/10de:12ba=Quadro RTX 8000"),
        Err(GpuError::NameMismatch { .. })
    ));
    assert!(matches!(
        resolve(tables(), "10de:1e30/zz"),
        Err(GpuError::BadSubsystem(_))
    ));
}

#[test]
fn a_name_that_covers_cards_which_differ_is_an_error_listing_them() {
    // "Quadro RTX 8000" is device 10de:1e78 and subsystem 129e of 10de:1e30 (pci.ids above,
    // and NVIDIA's table), and the branches' lists do not list the two ids alike.
    let e = resolve(tables(), "Quadro RTX 8000").unwrap_err();
    let GpuError::AmbiguousName { candidates, .. } = &e else {
        panic!("{e}")
    };
    for c in [
        "10de:1e78 (Quadro RTX 8000",
        "10de:1e30/10de:129e (Quadro RTX 8000",
    ] {
        assert!(candidates.contains(c), "{candidates}");
    }
    assert!(e.to_string().contains("lspci -nnv"), "{e}");
}

#[test]
fn debians_lists_in_support_json_are_the_per_id_lists_of_gpus_json() {
    let t = tables();
    for l in t.id_lists.iter().filter(|l| l.scope == Scope::Driver) {
        let (codename, package) = l
            .list
            .strip_prefix("Debian ")
            .and_then(|r| r.split_once(" nvidia-detect, package "))
            .unwrap();
        for g in &t.gpus {
            let in_gpus = g
                .debian
                .get(codename)
                .is_some_and(|p| p.iter().any(|p| p == package));
            assert_eq!(l.has(g.id), in_gpus, "{} {}", l.label(), g.id);
        }
    }
}

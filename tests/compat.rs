//! The compatibility knowledge base: the known answers of RULES.md and issue 5 as table
//! tests, two text outputs as snapshots, and (where ../shared/compat exists) a check that the
//! embedded tables agree with the shared sources field by field.

mod support;
use support::gate::{Gated, Need};

use pvegpu::compat::driver::{DriverError, DriverSource, Flavour};
use pvegpu::compat::gpu::GpuError;
use pvegpu::compat::onnx::Limit;
use pvegpu::compat::triton::{BackendChoice, DriverFit, driver_fit};
use pvegpu::compat::{
    Backend, CompatError, Distro, Recommendation, Request, compat_command, model_fits, recommend,
    recommend_at, tables,
};
use serde_json::Value;
use std::path::PathBuf;

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

fn backend(r: &Recommendation, b: Backend) -> &BackendChoice {
    r.triton.iter().find(|c| c.backend == b).unwrap()
}

/// (recommended release, how it meets the driver, newest release for the CCs if newer).
fn triton(r: &Recommendation, b: Backend) -> (Option<&str>, Option<&DriverFit>, Option<&str>) {
    let c = backend(r, b);
    (
        c.recommended.as_ref().map(|x| x.release.as_str()),
        c.recommended.as_ref().map(|x| &x.driver_fit),
        c.newest.as_ref().map(|x| x.release.as_str()),
    )
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn gtx_1080_on_debian_12_with_its_535_driver() {
    let r = rec(&["10de:1b80"], Distro::Debian12, Some("535.261.03")).unwrap();
    assert_eq!(r.gpus[0].name, "NVIDIA GeForce GTX 1080");
    assert_eq!(r.min_cc.to_string(), "6.1");
    assert_eq!((r.window.first, r.window.last), (470, Some(580)));
    assert!(
        matches!(&r.driver.source, DriverSource::Distro { package, .. } if package == "nvidia-driver")
    );
    assert_eq!(r.driver.branch, 535);
    assert_eq!(r.kernel_module.flavour, Flavour::Proprietary);
    assert!(r.kernel_module.required);
    assert_eq!(r.cuda.oldest.as_ref().unwrap().to_string(), "11.0.2");
    assert_eq!(r.cuda.newest.as_ref().unwrap().to_string(), "12.9.1");
    assert_eq!(r.cuda.newest_native.as_ref().unwrap().to_string(), "12.2.2");

    // ONNX: 23.10 is the newest within 535's native CUDA 12.2; 24.10 (the last ORT with
    // sm_61) only through minor-version compatibility, or natively from R560.
    assert_eq!(
        triton(&r, Backend::Onnx),
        (Some("23.10"), Some(&DriverFit::Native), Some("24.10"))
    );
    let newest = backend(&r, Backend::Onnx).newest.as_ref().unwrap();
    assert_eq!(newest.driver_fit, DriverFit::Mvc);
    assert_eq!(newest.native_branches, vec![560, 565, 570, 575, 580]);
    assert_eq!(newest.max_ir_version, Some(10));
    // TensorRT plans: the last release for Pascal is 24.04 (TensorRT 8.6).
    assert_eq!(
        triton(&r, Backend::Tensorrt),
        (Some("23.10"), Some(&DriverFit::Native), Some("24.04"))
    );
    // Python: the notes' CC 6.0 floor lasts until 24.12.
    assert_eq!(triton(&r, Backend::Python).2, Some("24.12"));
    assert!(r.reasons.iter().all(|x| !x.text.is_empty()));
    assert!(
        r.reasons
            .iter()
            .any(|x| x.text.contains("24.11") && x.source.iter().any(|s| s.contains("r24.11")))
    );

    let text = compat_command(
        &strings(&["10de:1b80"]),
        "debian-12",
        Some("535.261.03"),
        &[],
        false,
    )
    .unwrap();
    insta::assert_snapshot!("gtx_1080_debian_12_driver_535", text);
}

fn onnx_on_pascal_never_goes_past_24_10_whatever_the_driver() {
    for driver in ["470.256.02", "535", "560.35.03", "580.173.02"] {
        let r = rec(&["10de:1b80"], Distro::Ubuntu2404, Some(driver)).unwrap();
        let (recommended, _, newest) = triton(&r, Backend::Onnx);
        let last = newest.or(recommended).unwrap();
        assert_eq!(last, "24.10", "driver {driver}");
        assert!(recommended.unwrap() <= "24.10");
        let (_, _, trt_newest) = triton(&r, Backend::Tensorrt);
        assert!(trt_newest.or(triton(&r, Backend::Tensorrt).0).unwrap() <= "24.04");
    }
    // With a driver of R560-R580, 24.10 runs natively.
    let r = rec(&["10de:1b80"], Distro::Ubuntu2404, Some("580.173.02")).unwrap();
    assert_eq!(
        triton(&r, Backend::Onnx),
        (Some("24.10"), Some(&DriverFit::Native), None)
    );
    assert_eq!(triton(&r, Backend::Tensorrt).0, Some("24.04"));
}

fn the_seeds_23_05_with_an_ir_10_model_is_a_misfit_naming_the_fix() {
    let t = tables();
    let r2305 = t.triton_release("23.05").unwrap();
    let m = model_fits(r2305, 10, 17).unwrap_err();
    assert_eq!(m.limit, Limit::IrVersion);
    assert_eq!(m.max_ir_version, Some(9));
    assert_eq!(m.loads_from.as_deref(), Some("24.05"));
    let e = m.export.as_ref().unwrap();
    assert_eq!(
        (e.onnx.as_str(), e.ir_version, e.max_opset),
        ("1.15", 9, 19)
    );
    let text = m.to_string();
    for part in [
        "23.05",
        "1.15.0",
        "IR version 10 > 9",
        "Triton 24.05 or newer",
        "onnx <= 1.15",
        "opset <= 19",
    ] {
        assert!(text.contains(part), "{part} missing from: {text}");
    }
    // The write-up's re-export (onnx 1.12: IR 8, opset 17) loads.
    assert_eq!(model_fits(r2305, 8, 17), Ok(()));
    // 24.10 loads IR 10 / opset 21, not opset 22 (first loaded by 25.03, ORT 1.21).
    let r2410 = t.triton_release("24.10").unwrap();
    assert_eq!(model_fits(r2410, 10, 21), Ok(()));
    let m = model_fits(r2410, 10, 22).unwrap_err();
    assert_eq!(m.limit, Limit::Opset);
    assert_eq!(m.loads_from.as_deref(), Some("25.03"));
    // A release whose ONNX Runtime is not in the data is not guessed at.
    let r2609 = t.triton_release("26.09").unwrap();
    assert_eq!(model_fits(r2609, 8, 17).unwrap_err().limit, Limit::Unknown);
}

fn h100() {
    let r = rec(&["10de:2331"], Distro::Ubuntu2404, None).unwrap();
    assert_eq!(
        (r.gpus[0].arch.to_string(), r.min_cc.to_string()),
        ("Hopper".into(), "9.0".into())
    );
    assert_eq!((r.window.first, r.window.last), (520, None));
    assert!(
        matches!(&r.driver.source, DriverSource::Distro { package, .. } if package == "nvidia-driver-595")
    );
    assert_eq!(r.kernel_module.flavour, Flavour::Open);
    assert!(!r.kernel_module.required);
    assert_eq!(r.cuda.oldest.as_ref().unwrap().to_string(), "11.8.0");
    // noble-updates' R595 runs CUDA 13.2 natively (26.05, 13.2.1); an H100 is a data-center
    // card, and NVIDIA's forward-compatibility table lists R595 for cuda-compat-13-3, so the
    // newest ONNX release, 26.07 (13.3.1, whose notes give no driver list), runs through it.
    let fc = DriverFit::ForwardCompat {
        package: "cuda-compat-13-3".into(),
        via: "595".parse().unwrap(),
    };
    assert_eq!(triton(&r, Backend::Onnx), (Some("26.07"), Some(&fc), None));
    // R595 is a production branch, supported until March 2027.
    assert_eq!(r.lifecycle[0].eol.as_deref(), Some("2027-03"));
    assert!(!r.lifecycle[0].past_eol);
    // On Debian 12's 535, a data-center card may use forward compatibility.
    let r = rec(&["NVIDIA H100 PCIe"], Distro::Debian12, None).unwrap();
    assert_eq!(r.driver.branch, 535);
    let (release, fit, _) = triton(&r, Backend::Onnx);
    assert!(
        matches!(fit, Some(DriverFit::ForwardCompat { .. })),
        "{fit:?}"
    );
    assert!(release.unwrap() > "23.10");
}

/// Forward compatibility is judged from NVIDIA's forward-compatibility table (cuda.json
/// `forward_compat`): a data-center GPU, a branch the table marks compatible with the
/// release's cuda-compat package, not a New Feature Branch, and the release notes' list, where
/// there is one, only narrowing it.
fn forward_compatibility_follows_nvidias_table() {
    let t = tables();
    let fit = |release: &str, driver: &str, dc: bool| {
        let r = t.triton_release(release).unwrap();
        driver_fit(t, r, &driver.parse().unwrap(), dc)
    };
    let fc = |package: &str, via: &str| DriverFit::ForwardCompat {
        package: package.into(),
        via: via.parse().unwrap(),
    };
    // 26.04 (CUDA 13.2.1): its notes list 535.86; the table lists R535 for cuda-compat-13-2.
    assert_eq!(
        fit("26.04", "535.261.03", true),
        fc("cuda-compat-13-2", "535.86")
    );
    // Below the notes' minimum of the branch (the stricter of the two): no CUDA 13 at all.
    assert_eq!(fit("26.04", "535.54.03", true), DriverFit::Unmet);
    // The table lists R580 for cuda-compat-13-2, the notes' list does not: the notes narrow.
    assert_eq!(fit("26.04", "580.95.05", true), DriverFit::Mvc);
    // 26.05's notes give no list (they refer to CUDA Compatibility): the table decides.
    assert_eq!(
        fit("26.05", "580.95.05", true),
        fc("cuda-compat-13-2", "580")
    );
    // Only data-center GPUs.
    assert_eq!(fit("26.05", "580.95.05", false), DriverFit::Mvc);
    // The notes of 26.02 still name R470, R525 and R545; the table has none of them.
    assert_eq!(fit("26.02", "470.256.02", true), DriverFit::Unmet);
    assert_eq!(fit("26.02", "545.29.06", true), DriverFit::Unmet);
    // R610 is in the table's columns, but a New Feature Branch: not a target.
    assert_eq!(fit("26.08", "610.43.01", true), DriverFit::Mvc);
    assert_eq!(
        fit("26.08", "595.99.02", true),
        fc("cuda-compat-13-4", "595")
    );
    // CUDA 12.1 has no row in the table: its notes' 470.57 opens nothing (fail closed).
    let r = t.triton_release("23.07").unwrap();
    assert_eq!(r.dc_compat_drivers.as_ref().unwrap()[1].raw, "470.57");
    assert_eq!(fit("23.07", "470.256.02", true), DriverFit::Unmet);
    // A CUDA minor release the table does not have (13.5) gets none either.
    let mut r = t.triton_release("26.10").unwrap().clone();
    r.cuda = "13.5.0".parse().unwrap();
    assert!(t.compat_package(&r.cuda).is_none());
    assert_eq!(
        driver_fit(t, &r, &"580.95.05".parse().unwrap(), true),
        DriverFit::Mvc
    );
    // The text says which table it trusts.
    let d = fc("cuda-compat-13-2", "580").describe();
    assert!(d.contains("cuda-compat-13-2 on R580"), "{d}");
    assert!(d.contains("forward-compatibility table"), "{d}");
}

fn pascal_with_ada_takes_the_lowest_cc_and_a_shared_window() {
    let r = rec(&["10de:1b80", "10de:2684"], Distro::Debian12, None).unwrap();
    assert_eq!(r.min_cc.to_string(), "6.1");
    assert_eq!((r.window.first, r.window.last), (520, Some(580)));
    assert_eq!(r.driver.branch, 535);
    assert_eq!(r.kernel_module.flavour, Flavour::Proprietary);
    // CUDA must build for both: from 11.8 (first with 8.9) to 12.9 (last with 6.1).
    assert_eq!(r.cuda.oldest.as_ref().unwrap().to_string(), "11.8.0");
    assert_eq!(r.cuda.newest.as_ref().unwrap().to_string(), "12.9.1");
    assert_eq!(
        triton(&r, Backend::Onnx),
        (Some("23.10"), Some(&DriverFit::Native), Some("24.10"))
    );
    assert_eq!(triton(&r, Backend::Tensorrt).2, Some("24.04"));
}

fn kepler_gets_r470_only_and_no_triton() {
    let r = rec(&["10de:102d"], Distro::Debian12, None).unwrap();
    assert_eq!(r.gpus[0].arch.to_string(), "Kepler");
    assert_eq!((r.window.first, r.window.last), (470, Some(470)));
    assert!(
        matches!(&r.driver.source, DriverSource::Distro { package, .. } if package == "nvidia-tesla-470-driver")
    );
    assert_eq!(r.kernel_module.flavour, Flavour::Proprietary);
    assert_eq!(r.cuda.newest.as_ref().unwrap().to_string(), "11.8.0");
    assert_eq!(r.cuda.newest_native.as_ref().unwrap().to_string(), "11.4.4");
    for b in &r.triton {
        assert!(b.recommended.is_none() && b.newest.is_none(), "{b:?}");
        assert!(b.none_because.as_ref().unwrap().contains("CC 6.0"), "{b:?}");
    }
}

fn blackwell_on_debian_12_needs_nvidias_repository() {
    let r = rec(&["10de:2b85"], Distro::Debian12, None).unwrap();
    assert_eq!(r.gpus[0].arch.to_string(), "Blackwell");
    assert_eq!((r.window.first, r.window.last), (570, None));
    assert_eq!(r.driver.source, DriverSource::NvidiaRepository);
    assert!(r.driver.branch >= 570);
    assert_eq!(r.kernel_module.flavour, Flavour::Open);
    assert!(r.kernel_module.required);
    assert_eq!(r.cuda.oldest.as_ref().unwrap().to_string(), "12.8.0");
    // Triton releases before 25.01 (CUDA < 12.8) have no code for CC 12.0.
    for b in &r.triton {
        assert!(b.recommended.as_ref().unwrap().release.as_str() >= "25.01");
    }
    assert!(r.reasons.iter().any(|x| {
        x.text
            .contains("No Debian-packaged driver supports Blackwell")
    }));
    let text = compat_command(&strings(&["10de:2b85"]), "debian-12", None, &[], false).unwrap();
    insta::assert_snapshot!("blackwell_debian_12", text);
}

fn kepler_with_blackwell_is_an_empty_window_naming_both() {
    let e = rec(&["10de:102d", "10de:2b85"], Distro::Debian12, None).unwrap_err();
    assert!(
        matches!(e, CompatError::Driver(DriverError::EmptyWindow { .. })),
        "{e:?}"
    );
    let msg = e.to_string();
    for part in [
        "10de:102d",
        "Tesla K80",
        "R470",
        "10de:2b85",
        "RTX 5090",
        "R570",
        "separate VMs",
    ] {
        assert!(msg.contains(part), "{part} missing from: {msg}");
    }
}

fn pascal_with_blackwell_shares_a_window_but_no_kernel_module() {
    let e = rec(&["10de:1b80", "10de:2b85"], Distro::Ubuntu2404, None).unwrap_err();
    assert!(
        matches!(e, CompatError::Driver(DriverError::ModuleConflict { .. })),
        "{e:?}"
    );
}

fn unknown_ids_unpublished_ccs_and_bad_input_are_errors_that_say_what_to_do() {
    let cmd = |gpus: &[&str], distro: &str, driver: Option<&str>, backends: &[&str]| {
        compat_command(&strings(gpus), distro, driver, &strings(backends), false).unwrap_err()
    };
    let e = cmd(&["10de:ffff"], "debian-12", None, &[]);
    assert!(matches!(e, CompatError::Gpu(GpuError::UnknownId { .. })));
    assert!(e.to_string().contains("does not guess"), "{e}");
    // GB112: architecture known, compute capability unpublished: not guessed.
    let e = cmd(&["10de:3200"], "debian-12", None, &[]);
    assert!(
        matches!(e, CompatError::Gpu(GpuError::UnknownCc { .. })),
        "{e:?}"
    );
    let e = cmd(&["10de:1b80"], "debian-11", None, &[]);
    assert!(
        e.to_string()
            .contains("debian-12, debian-13, ubuntu-22.04, ubuntu-24.04"),
        "{e}"
    );
    let e = cmd(&["10de:1b80"], "debian-12", Some("450.80.02"), &[]);
    assert!(
        matches!(e, CompatError::Driver(DriverError::UnknownBranch { .. })),
        "{e:?}"
    );
    let e = cmd(&["10de:1b80"], "debian-12", Some("latest"), &[]);
    assert!(e.to_string().contains("nvidia-smi"), "{e}");
    let e = cmd(&["10de:1b80"], "debian-12", None, &["pytorch"]);
    assert!(e.to_string().contains("onnx, tensorrt or python"), "{e}");
    let e = cmd(&[], "debian-12", None, &[]);
    assert!(matches!(e, CompatError::Gpu(GpuError::NoGpus)));
    // A GRID K1 needs the R367 legacy driver, older than anything in the tables.
    let e = cmd(&["10de:0ff2"], "debian-12", None, &[]);
    assert!(
        matches!(e, CompatError::Driver(DriverError::LegacyOnly { .. })),
        "{e:?}"
    );
}

fn an_installed_driver_outside_the_window_is_reported_and_not_assumed() {
    let r = rec(&["10de:2684"], Distro::Debian12, Some("470.256.02")).unwrap();
    let i = r.installed.as_ref().unwrap();
    assert!(!i.in_window);
    assert_eq!(r.assumed_driver.branch(), 535);
}

fn json_output_carries_the_choices_and_the_cited_reasons() {
    let out = compat_command(
        &strings(&["10de:1b80"]),
        "debian-12",
        Some("535.261.03"),
        &strings(&["onnx"]),
        true,
    )
    .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["distro"], "debian-12");
    assert_eq!(v["window"]["first"], 470);
    assert_eq!(v["driver"]["from"], "distro");
    assert_eq!(v["kernel_module"]["flavour"], "proprietary");
    assert_eq!(v["triton"].as_array().unwrap().len(), 1);
    assert_eq!(v["triton"][0]["recommended"]["release"], "23.10");
    assert_eq!(v["triton"][0]["recommended"]["driver_fit"]["how"], "native");
    assert_eq!(v["triton"][0]["newest"]["release"], "24.10");
    assert_eq!(v["triton"][0]["newest"]["driver_fit"]["how"], "mvc");
    for reason in v["reasons"].as_array().unwrap() {
        assert!(reason["inferred"].is_boolean());
        assert!(reason["source"].is_array());
    }
    // Every answer says how old its facts are, and Debian 12's 535 is past its end of life
    // (June 2026) whatever today is: the snapshot is later.
    assert_eq!(v["snapshot"], tables().snapshot.as_str());
    assert_eq!(v["lifecycle"][0]["branch"], 535);
    assert_eq!(v["lifecycle"][0]["eol"], "2026-06");
    assert_eq!(v["lifecycle"][0]["past_eol"], true);
    assert_eq!(v["lifecycle"][0]["instead"], 580);
    let text = compat_command(&strings(&["10de:1b80"]), "debian-12", None, &[], false).unwrap();
    assert!(
        text.starts_with(&format!("Data snapshot {}", tables().snapshot)),
        "{text}"
    );
}

fn lifecycle_is_judged_at_the_later_of_the_snapshot_and_today() {
    let req = Request {
        gpus: strings(&["10de:1b80"]),
        distro: Distro::Ubuntu2204,
        driver: Some("535.309.01".parse().unwrap()),
        backends: vec![],
    };
    // Ubuntu 22.04 packages R580 for a GTX 1080; the installed 535 is past its end of life.
    let r = recommend(tables(), &req).unwrap();
    assert_eq!(r.driver.branch, 580);
    let l: Vec<(&str, u32, bool, Option<u32>)> = r
        .lifecycle
        .iter()
        .map(|l| (l.role, l.branch, l.past_eol, l.instead))
        .collect();
    assert_eq!(
        l,
        [
            ("recommended", 580, false, None),
            ("installed", 535, true, Some(580))
        ]
    );
    assert_eq!(r.lifecycle[0].as_of, tables().snapshot);
    // A clock behind the snapshot does not move the day back.
    let r = recommend_at(tables(), &req, Some("2020-01-01")).unwrap();
    assert_eq!(r.lifecycle[0].as_of, tables().snapshot);
    // After R580's end (June 2028) nothing in Pascal's window is supported: said, not hidden.
    let r = recommend_at(tables(), &req, Some("2028-07-01")).unwrap();
    assert!(r.lifecycle[0].past_eol && r.lifecycle[0].instead.is_none());
    assert!(
        r.reasons.iter().any(|x| x
            .text
            .contains("no branch of R470–R580 has a published end of life")),
        "{:#?}",
        r.reasons
    );
}

// ---------------------------------------------------------------------------------------
// The embedded tables against ../shared/compat.

fn shared() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/compat");
    dir.join("gpus.json").is_file().then_some(dir)
}

fn load(dir: &std::path::Path, file: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap()
}

/// A JSON string or null, as an Option.
fn opt(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn num(v: &Value) -> Option<u32> {
    match v {
        Value::String(s) => Some(s.parse().unwrap()),
        Value::Number(n) => Some(n.as_u64().unwrap() as u32),
        _ => None,
    }
}

/// The records data/compat/corrections.json changes or adds, per file and table: their key
/// values (`match`, or the key of `add`). Those records differ from the shared sources on
/// purpose; tests/compat_sources.rs checks them against their quotes instead.
fn corrected(file: &str, table: &str, key: &str) -> Vec<Value> {
    entries_on(file, table, key, true)
}

/// The records any corrections.json entry names, spot checks included: they cite it too.
fn cited(file: &str, table: &str, key: &str) -> Vec<Value> {
    entries_on(file, table, key, false)
}

fn entries_on(file: &str, table: &str, key: &str, changes_only: bool) -> Vec<Value> {
    let c: Value = serde_json::from_str(include_str!("../data/compat/corrections.json")).unwrap();
    c["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["file"] == file && e["table"] == table)
        .filter(|e| !changes_only || e.get("set").is_some() || e.get("add").is_some())
        .filter_map(|e| {
            e.get("match")
                .map(|m| m[key].clone())
                .or_else(|| e.get("add").map(|a| a[key].clone()))
        })
        .collect()
}

/// A corrected record keeps every shared citation, in order, before its own.
fn keeps_sources(mine: &[String], shared: &Value, what: &str) {
    let s = list(shared);
    assert_eq!(&mine[..s.len().min(mine.len())], &s[..], "{what}");
}

fn tables_agree_with_the_shared_sources() {
    let dir = shared().expect("../shared/compat/gpus.json (the test is gated on it)");
    let t = tables();

    let g = load(&dir, "gpus.json");
    let devices = g["devices"].as_array().unwrap();
    assert_eq!(t.gpus.len(), devices.len());
    for (s, m) in devices.iter().zip(&t.gpus) {
        let id = s["pci_id"].as_str().unwrap();
        assert_eq!(m.id.to_string(), id);
        assert_eq!(m.name, s["name"].as_str().unwrap(), "{id}");
        assert_eq!(m.pci_ids_name, opt(&s["pci_ids_name"]), "{id}");
        assert_eq!(m.chip, s["chip"].as_str().unwrap(), "{id}");
        assert_eq!(
            m.arch.to_string(),
            s["architecture"].as_str().unwrap(),
            "{id}"
        );
        // rules.json: a codename-inferred CC no chip-cc rule covers is unknown, not a guess.
        let nulled = m.cc.is_none()
            && !s["compute_capability"].is_null()
            && list(&s["inferred"])
                .iter()
                .any(|i| i == "compute_capability");
        if nulled {
            assert!(m.cc_basis.starts_with("unknown"), "{id}");
            assert!(
                !m.inferred.iter().any(|i| i == "compute_capability"),
                "{id}"
            );
        } else {
            assert_eq!(
                m.cc.map(|c| c.to_string()),
                opt(&s["compute_capability"]),
                "{id}"
            );
            assert_eq!(m.cc_basis, s["cc_basis"].as_str().unwrap(), "{id}");
            assert_eq!(m.inferred, list(&s["inferred"]), "{id}");
        }
        assert_eq!(
            m.cc_nvidia_list.map(|c| c.to_string()),
            opt(&s["compute_capability_nvidia_list"]),
            "{id}"
        );
        assert_eq!(m.legacy_branch, opt(&s["nvidia_legacy_branch"]), "{id}");
        assert_eq!(
            m.open_module,
            s["open_kernel_module_supported"].as_bool(),
            "{id}"
        );
        assert_eq!(m.brand, opt(&s["brand_class"]), "{id}");
        let deb = s["debian"].as_object().unwrap();
        assert_eq!(m.debian.len() + 1, deb.len(), "{id}");
        for (codename, pkgs) in &m.debian {
            assert_eq!(pkgs, &list(&deb[codename]), "{id} {codename}");
        }
        assert_eq!(
            m.debian_open_listed,
            deb["open_kernel_module_listed"].as_bool().unwrap()
        );
        if cited("gpus", "devices", "id").contains(&Value::from(id)) {
            keeps_sources(&m.source, &s["source"], id);
        } else {
            assert_eq!(m.source, list(&s["source"]), "{id}");
        }
    }

    let d = load(&dir, "drivers.json");
    let archs = d["architecture_support"].as_object().unwrap();
    assert_eq!(t.architectures.len(), archs.len());
    for (name, s) in archs {
        let m = t
            .architectures
            .iter()
            .find(|(a, _)| a.to_string() == *name)
            .map(|(_, m)| m)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(
            m.last_driver_branch,
            num(&s["last_driver_branch"]),
            "{name}"
        );
        assert_eq!(m.kernel_module, opt(&s["kernel_module"]), "{name}");
        assert_eq!(m.source, list(&s["source"]), "{name}");
    }
    let branches = d["branches"].as_array().unwrap();
    let fixed = corrected("drivers", "branches", "branch");
    assert_eq!(
        t.branches.len(),
        branches.len() + 1,
        "corrections.json adds R620"
    );
    for (s, m) in branches.iter().zip(&t.branches) {
        let b = s["branch"].as_str().unwrap();
        assert_eq!(m.branch.to_string(), b);
        if fixed.contains(&Value::from(m.branch)) {
            keeps_sources(&m.source, &s["source"], b);
            continue;
        }
        assert_eq!(
            m.eol, None,
            "R{b}: an end of life comes from corrections.json only"
        );
        assert_eq!(m.max_cuda.raw, s["max_cuda"].as_str().unwrap(), "R{b}");
        let a: Vec<String> = m.archs.iter().map(|a| a.to_string()).collect();
        assert_eq!(a, list(&s["architectures"]), "R{b}");
        assert_eq!(m.lifecycle, opt(&s["lifecycle"]), "R{b}");
        assert_eq!(m.notes, s["notes"].as_str().unwrap(), "R{b}");
        assert_eq!(m.inferred, list(&s["inferred"]), "R{b}");
        assert_eq!(m.source, list(&s["source"]), "R{b}");
    }
    let pkgs = d["distro_packages"].as_array().unwrap();
    // Added packages follow the shared ones; corrected ones keep their place.
    let c: Value = serde_json::from_str(include_str!("../data/compat/corrections.json")).unwrap();
    let entries = c["entries"].as_array().unwrap();
    let on_packages = |e: &&Value| e["file"] == "drivers" && e["table"] == "distro_packages";
    let added = entries
        .iter()
        .filter(on_packages)
        .filter(|e| e.get("add").is_some())
        .count();
    assert_eq!(t.distro_packages.len(), pkgs.len() + added);
    let named = |changes_only: bool| -> Vec<&Value> {
        entries
            .iter()
            .filter(on_packages)
            .filter(|e| !changes_only || e.get("set").is_some())
            .filter_map(|e| e.get("match"))
            .collect()
    };
    let (fixed, checked) = (named(true), named(false));
    let names = |list: &[&Value], s: &Value| {
        list.iter().any(|f| {
            f.as_object()
                .unwrap()
                .iter()
                .all(|(k, v)| &s[k.as_str()] == v)
        })
    };
    for (s, m) in pkgs.iter().zip(&t.distro_packages) {
        if names(&fixed, s) {
            keeps_sources(&m.source, &s["source"], &m.package);
            continue;
        }
        for (mine, key) in [
            (&m.distro, "distro"),
            (&m.release, "release"),
            (&m.codename, "codename"),
            (&m.package, "package"),
            (&m.version, "version"),
            (&m.suite, "suite"),
        ] {
            assert_eq!(mine, s[key].as_str().unwrap(), "{} {key}", m.package);
        }
        assert_eq!(m.branch, num(&s["branch"]), "{}", m.package);
        assert_eq!(m.inferred, list(&s["inferred"]), "{}", m.package);
        if names(&checked, s) {
            keeps_sources(&m.source, &s["source"], &m.package);
        } else {
            assert_eq!(m.source, list(&s["source"]), "{}", m.package);
        }
    }
    let notes = d["distro_notes"].as_array().unwrap();
    assert_eq!(t.distro_notes.len(), notes.len());
    for (s, m) in notes.iter().zip(&t.distro_notes) {
        assert_eq!(m.fact, s["fact"].as_str().unwrap());
        assert_eq!(m.inferred, list(&s["inferred"]));
        assert_eq!(m.source, list(&s["source"]));
    }

    let c = load(&dir, "cuda.json");
    let versions = c["versions"].as_array().unwrap();
    assert_eq!(
        t.cuda.len(),
        versions.len() + 1,
        "corrections.json adds CUDA 13.5"
    );
    for (s, m) in versions.iter().zip(&t.cuda) {
        let v = s["version"].as_str().unwrap();
        assert_eq!(m.version.raw, v);
        assert_eq!(
            m.min_driver.raw,
            s["min_driver_linux"].as_str().unwrap(),
            "{v}"
        );
        assert_eq!(Some(m.branch), num(&s["driver_branch"]), "{v}");
        assert_eq!(m.cc_min.to_string(), s["cc_min"].as_str().unwrap(), "{v}");
        assert_eq!(m.cc_max.to_string(), s["cc_max"].as_str().unwrap(), "{v}");
        assert_eq!(
            m.sm,
            s.get("sm_targets").filter(|x| !x.is_null()).map(list),
            "{v}"
        );
        assert_eq!(m.inferred, list(&s["inferred"]), "{v}");
        assert_eq!(m.source, list(&s["source"]), "{v}");
    }

    let tr = load(&dir, "triton.json");
    let releases = tr["releases"].as_array().unwrap();
    let mut fixed = corrected("triton", "releases", "release");
    fixed.sort_by_key(Value::to_string);
    fixed.dedup();
    let added = fixed
        .iter()
        .filter(|r| !releases.iter().any(|s| &s["release"] == *r))
        .count();
    assert_eq!(t.triton.len(), releases.len() + added);
    for s in releases {
        let r = s["release"].as_str().unwrap();
        let m = t.triton_release(r).unwrap_or_else(|| panic!("{r} missing"));
        if fixed.contains(&Value::from(r)) {
            keeps_sources(&m.source, &s["source"], r);
            continue;
        }
        assert_eq!(m.cuda.raw, s["cuda_version"].as_str().unwrap(), "{r}");
        assert_eq!(
            m.driver_min.as_ref().map(|d| d.raw.clone()),
            opt(&s["driver_min"]),
            "{r}"
        );
        let dc = s["datacenter_compat_drivers"]
            .as_array()
            .map(|_| list(&s["datacenter_compat_drivers"]));
        assert_eq!(
            m.dc_compat_drivers
                .as_ref()
                .map(|l| l.iter().map(|d| d.raw.clone()).collect::<Vec<_>>()),
            dc,
            "{r}"
        );
        assert_eq!(
            m.mvc_floor.raw,
            s["minor_version_compat_floor"].as_str().unwrap(),
            "{r}"
        );
        assert_eq!(
            m.cc_min.to_string(),
            s["cc_min_documented"].as_str().unwrap(),
            "{r}"
        );
        assert_eq!(m.ort, opt(&s["onnxruntime_version"]), "{r}");
        assert_eq!(
            m.ort_min_cc.map(|c| c.to_string()),
            opt(&s["onnxruntime_min_cc"]),
            "{r}"
        );
        assert_eq!(m.ort_max_ir, num(&s["onnxruntime_max_ir_version"]), "{r}");
        assert_eq!(m.ort_max_opset, num(&s["onnxruntime_max_opset"]), "{r}");
        assert_eq!(m.trt, opt(&s["tensorrt_version"]), "{r}");
        assert_eq!(m.trt_series, opt(&s["tensorrt_series"]), "{r}");
        assert_eq!(
            m.trt_min_cc.map(|c| c.to_string()),
            opt(&s["tensorrt_min_cc"]),
            "{r}"
        );
        assert_eq!(m.conflicts, list(&s["conflicts"]), "{r}");
        assert_eq!(m.inferred, list(&s["inferred"]), "{r}");
        if cited("triton", "releases", "release").contains(&Value::from(r)) {
            keeps_sources(&m.source, &s["source"], r);
        } else {
            assert_eq!(m.source, list(&s["source"]), "{r}");
        }
    }

    let o = load(&dir, "onnx.json");
    let ort = o["onnxruntime"].as_array().unwrap();
    assert_eq!(t.ort.len(), ort.len());
    for (s, m) in ort.iter().zip(&t.ort) {
        let v = s["onnxruntime"].as_str().unwrap();
        assert_eq!(m.version, v);
        assert_eq!(Some(m.max_ir), num(&s["max_ir_version"]), "{v}");
        assert_eq!(Some(m.max_opset), num(&s["max_opset"]), "{v}");
        assert_eq!(m.inferred, list(&s["inferred"]), "{v}");
        assert_eq!(m.source, list(&s["source"]), "{v}");
    }
    let py = o["onnx_python_releases"].as_array().unwrap();
    assert_eq!(t.onnx.len(), py.len());
    for (s, m) in py.iter().zip(&t.onnx) {
        let v = s["onnx"].as_str().unwrap();
        assert_eq!(m.version, v);
        assert_eq!(Some(m.ir), num(&s["ir_version"]), "{v}");
        assert_eq!(Some(m.max_opset), num(&s["max_opset"]), "{v}");
        assert_eq!(m.inferred, list(&s["inferred"]), "{v}");
        assert_eq!(m.source, list(&s["source"]), "{v}");
    }
}

fn main() {
    Gated::new()
        .test(
            "gtx_1080_on_debian_12_with_its_535_driver",
            &[],
            gtx_1080_on_debian_12_with_its_535_driver,
        )
        .test(
            "onnx_on_pascal_never_goes_past_24_10_whatever_the_driver",
            &[],
            onnx_on_pascal_never_goes_past_24_10_whatever_the_driver,
        )
        .test(
            "the_seeds_23_05_with_an_ir_10_model_is_a_misfit_naming_the_fix",
            &[],
            the_seeds_23_05_with_an_ir_10_model_is_a_misfit_naming_the_fix,
        )
        .test("h100", &[], h100)
        .test(
            "forward_compatibility_follows_nvidias_table",
            &[],
            forward_compatibility_follows_nvidias_table,
        )
        .test(
            "pascal_with_ada_takes_the_lowest_cc_and_a_shared_window",
            &[],
            pascal_with_ada_takes_the_lowest_cc_and_a_shared_window,
        )
        .test(
            "kepler_gets_r470_only_and_no_triton",
            &[],
            kepler_gets_r470_only_and_no_triton,
        )
        .test(
            "blackwell_on_debian_12_needs_nvidias_repository",
            &[],
            blackwell_on_debian_12_needs_nvidias_repository,
        )
        .test(
            "kepler_with_blackwell_is_an_empty_window_naming_both",
            &[],
            kepler_with_blackwell_is_an_empty_window_naming_both,
        )
        .test(
            "pascal_with_blackwell_shares_a_window_but_no_kernel_module",
            &[],
            pascal_with_blackwell_shares_a_window_but_no_kernel_module,
        )
        .test(
            "unknown_ids_unpublished_ccs_and_bad_input_are_errors_that_say_what_to_do",
            &[],
            unknown_ids_unpublished_ccs_and_bad_input_are_errors_that_say_what_to_do,
        )
        .test(
            "an_installed_driver_outside_the_window_is_reported_and_not_assumed",
            &[],
            an_installed_driver_outside_the_window_is_reported_and_not_assumed,
        )
        .test(
            "json_output_carries_the_choices_and_the_cited_reasons",
            &[],
            json_output_carries_the_choices_and_the_cited_reasons,
        )
        .test(
            "lifecycle_is_judged_at_the_later_of_the_snapshot_and_today",
            &[],
            lifecycle_is_judged_at_the_later_of_the_snapshot_and_today,
        )
        .test(
            "tables_agree_with_the_shared_sources",
            &[Need::Shared("compat")],
            tables_agree_with_the_shared_sources,
        )
        .run()
}

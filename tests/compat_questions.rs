//! `pvegpu compat`'s questions through the binary, as a user asks them: one release judged
//! (`--release`), which releases load a model (`--model`, real ONNX files written by the onnx
//! package), the GPUs of a node's or a guest's facts (`--facts`), every distribution the
//! tables carry, and the release range per backend.

mod support;
use support::fixture;
use support::pvegpu_cli as pvegpu;

fn json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json", "compat"];
    all.extend_from_slice(args);
    let (code, out, err) = pvegpu(&all);
    assert_eq!(code, Some(0), "{err}");
    serde_json::from_str(&out).unwrap()
}

fn path(rel: &str) -> String {
    fixture(rel).to_str().unwrap().to_string()
}

fn backend<'a>(v: &'a serde_json::Value, key: &str, b: &str) -> &'a serde_json::Value {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["backend"] == b)
        .unwrap_or_else(|| panic!("no {b} in {key}: {v}"))
}

#[test]
fn the_seeds_23_05_on_a_gtx_1080_fits_but_23_10_is_recommended() {
    let v = json(&["10de:1b80", "--driver", "535.309.01", "--release", "23.05"]);
    let c = &v["release_check"];
    assert_eq!(c["release"], "23.05");
    assert_eq!(c["cuda"], "12.1.1");
    let onnx = backend(c, "backends", "onnx");
    assert_eq!(onnx["fit"], "fits", "{onnx}");
    assert_eq!(onnx["recommended"], "23.10", "{onnx}");
    assert!(
        onnx["why"][0].as_str().unwrap().contains("native"),
        "{onnx}"
    );
}

#[test]
fn a_release_past_the_gpus_compute_capability_does_not_fit_and_says_why() {
    let v = json(&["10de:1b80", "--release", "25.01"]);
    for b in ["onnx", "tensorrt", "python"] {
        let verdict = backend(&v["release_check"], "backends", b);
        assert_eq!(verdict["fit"], "does_not_fit", "{verdict}");
        assert!(
            verdict["why"][0]
                .as_str()
                .unwrap()
                .contains("require CC 7.5 and newer, above 6.1"),
            "{verdict}"
        );
    }
    // ONNX on Pascal ends at 24.10 (the ONNX Runtime backend dropped sm_61 in 24.11), whatever
    // the driver; the python backend goes on to 24.12
    let onnx = backend(&v, "ranges", "onnx");
    assert_eq!(onnx["oldest"], "22.01");
    assert_eq!(onnx["newest"], "24.10");
    assert_eq!(backend(&v, "ranges", "python")["newest"], "24.12");
}

#[test]
fn a_model_alone_gets_the_releases_whose_onnx_runtime_loads_it() {
    let v = json(&["--model", &path("onnx/ir10-opset21.onnx")]);
    let m = &v["models"][0];
    assert_eq!(m["ir_version"], 10);
    assert_eq!(m["opset"], 21);
    // ONNX Runtime 1.18 (Triton 24.05) is the first to load IR 10 / opset 21
    assert_eq!(m["first_loading"], "24.05", "{m}");
    assert!(v.get("gpus").is_none(), "no GPUs, no recommendation: {v}");

    let v = json(&["--model", &path("onnx/ir8-opset17.onnx")]);
    let first = v["models"][0]["first_loading"].as_str().unwrap();
    assert!(first < "24.05", "{v}");
}

#[test]
fn a_model_with_gpus_names_the_releases_that_both_serve_them_and_load_it() {
    let v = json(&[
        "10de:1b80",
        "--driver",
        "535.309.01",
        "--model",
        &path("onnx/ir10-opset21.onnx"),
    ]);
    let m = &v["models"][0];
    assert_eq!(m["recommended"]["release"], "23.10");
    assert_eq!(m["recommended"]["loads"], false);
    assert!(
        m["recommended"]["why_not"]
            .as_str()
            .unwrap()
            .contains("use Triton 24.05 or newer"),
        "{m}"
    );
    assert_eq!(m["oldest_for_gpus"], "24.05");
    assert_eq!(m["newest_for_gpus"], "24.10");
    // R535 runs CUDA 12.2 natively; 24.05 to 24.10 need 12.4 and newer
    assert!(m.get("newest_fitting").is_none(), "{m}");

    // --release with the model: the model decides the ONNX verdict
    let v = json(&[
        "10de:1b80",
        "--release",
        "23.05",
        "--model",
        &path("onnx/ir10-opset21.onnx"),
    ]);
    let onnx = backend(&v["release_check"], "backends", "onnx");
    assert_eq!(onnx["fit"], "does_not_fit", "{onnx}");
}

#[test]
fn a_guests_facts_give_its_gpus_distribution_and_driver() {
    let v = json(&["--facts", &path("guest/gtx1080-debian12-converged.facts")]);
    assert_eq!(v["distro"], "debian-12");
    assert_eq!(v["gpus"][0]["id"], "10de:1b80");
    assert!(
        v["gpus_from"].as_str().unwrap().starts_with("guest "),
        "{v}"
    );
    assert!(v["installed"].is_object(), "the loaded driver: {v}");

    // an explicit --distro wins over the guest's
    let v = json(&[
        "--facts",
        &path("guest/h100-ubuntu2404-fresh.facts"),
        "--distro",
        "ubuntu-26.04",
    ]);
    assert_eq!(v["distro"], "ubuntu-26.04");
    assert_eq!(v["gpus"][0]["arch"], "Hopper");
}

#[test]
fn a_nodes_facts_give_its_nvidia_gpus() {
    let v = json(&["--facts", &path("facts/osm45.facts")]);
    let ids: Vec<&str> = v["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["10de:1b80", "10de:1b80"]);
    assert!(
        v["gpus_from"].as_str().unwrap().contains("0000:02:00.0"),
        "{v}"
    );
}

#[test]
fn every_distribution_of_the_tables_is_answered() {
    for d in [
        "debian-12",
        "debian-13",
        "ubuntu-22.04",
        "ubuntu-24.04",
        "ubuntu-26.04",
    ] {
        let v = json(&["10de:2330", "--distro", d]);
        assert_eq!(v["distro"], d);
    }
}

#[test]
fn questions_without_what_they_need_are_errors_with_a_hint() {
    let (code, _, err) = pvegpu(&["compat", "10de:1b80", "--release", "21.01"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("Triton 21.01 is not in pvegpu's tables"),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");

    let (code, _, err) = pvegpu(&[
        "compat",
        "--model",
        &path("onnx/ir10-opset21.onnx"),
        "--release",
        "23.05",
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("judges a release for GPUs"), "{err}");

    let (code, _, err) = pvegpu(&["compat", "--model", &path("onnx/truncated.onnx")]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cut short"), "{err}");

    let (code, _, err) = pvegpu(&["compat", "--model", &path("onnx")]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not a regular file"), "{err}");

    let (code, _, _) = pvegpu(&["compat"]);
    assert_eq!(code, Some(64), "no GPU and nothing to take them from");
}

//! The ONNX check on real ONNX files (tests/fixtures/onnx, written by the `onnx` package:
//! see its README) against compat's Triton releases.

mod support;
use pvegpu::compat::tables;
use pvegpu::facts::RawFacts;
use pvegpu::guest::onnx_check::{OnnxCheckError, check, read_header, scan_dir};
use pvegpu::guest::{GuestFacts, onnx_section};
use support::{fixture, read};

fn model(name: &str) -> Vec<u8> {
    std::fs::read(fixture(&format!("onnx/{name}"))).unwrap()
}

#[test]
fn headers_of_real_models() {
    let h = read_header("ir10-opset21.onnx", &model("ir10-opset21.onnx")).unwrap();
    assert_eq!((h.ir_version, h.opset), (10, 21));
    assert_eq!(h.producer.as_deref(), Some("pvegpu-fixture"));
    let h = read_header("ir8-opset17.onnx", &model("ir8-opset17.onnx")).unwrap();
    assert_eq!((h.ir_version, h.opset), (8, 17));
}

#[test]
fn seed_case_triton_2305_refuses_ir10_and_2410_loads_it() {
    let t = tables();
    let repo = "/srv/triton/models";
    let ir10 = read_header(
        "/srv/triton/models/price_tag_detection/1/model.onnx",
        &model("ir10-opset21.onnx"),
    )
    .unwrap();
    let ir8 = read_header(
        "/srv/triton/models/nutriscore/1/model.onnx",
        &model("ir8-opset17.onnx"),
    )
    .unwrap();
    let models = [ir8, ir10];

    let r2305 = t.triton_release("23.05").unwrap();
    let misfits = check(repo, &models, r2305);
    assert_eq!(misfits.len(), 1, "the IR 8 re-export loads in 23.05");
    let text = misfits[0].to_string();
    assert!(
        text.starts_with("model price_tag_detection/1/model.onnx:"),
        "{text}"
    );
    assert!(text.contains("IR version 10 > 9"), "{text}");
    // the fixes: a release that loads it, or the seed's re-export (onnx <= the IR the runtime reads)
    let loads_from = misfits[0].misfit.loads_from.clone().unwrap();
    assert!(loads_from.as_str() <= "24.10", "{loads_from}");
    assert!(
        text.contains(&format!("use Triton {loads_from} or newer")),
        "{text}"
    );
    assert!(text.contains("re-export it with onnx <="), "{text}");

    let r2410 = t.triton_release("24.10").unwrap();
    assert!(check(repo, &models, r2410).is_empty());
}

#[test]
fn a_local_repository_is_scanned_in_the_triton_layout() {
    let dir = tempfile::tempdir().unwrap();
    for (m, file) in [
        ("clip", "ir8-opset17.onnx"),
        ("price_tag_detection", "ir10-opset21.onnx"),
    ] {
        let v = dir.path().join(m).join("1");
        std::fs::create_dir_all(&v).unwrap();
        std::fs::write(v.join("model.onnx"), model(file)).unwrap();
    }
    // not a model: a config and a file at the wrong depth
    std::fs::write(dir.path().join("clip/config.pbtxt"), "name: \"clip\"\n").unwrap();
    std::fs::write(dir.path().join("stray.onnx"), model("ir8-opset17.onnx")).unwrap();
    let h = scan_dir(dir.path()).unwrap();
    assert_eq!(h.len(), 2);
    assert!(h[0].path.ends_with("clip/1/model.onnx"));
    assert_eq!(h[1].ir_version, 10);

    let gone = scan_dir(&dir.path().join("missing")).unwrap_err();
    assert!(matches!(gone, OnnxCheckError::MissingRepository { .. }));
    assert!(gone.to_string().contains("does not exist"), "{gone}");

    std::fs::write(dir.path().join("clip/1/model.onnx"), b"not a model").unwrap();
    assert!(scan_dir(dir.path()).is_err());
}

#[test]
fn facts_sections_round_trip_and_match_the_seed_fixture() {
    let h = read_header(
        "/srv/triton/models/nutriscore/1/model.onnx",
        &model("ir8-opset17.onnx"),
    )
    .unwrap();
    let section = onnx_section(&h);
    // the fresh seed fixture carries exactly what the gatherer writes for the real file
    assert!(
        read("guest/gtx1080-debian12-fresh.facts").contains(&section),
        "{section}"
    );
    let text = format!(
        "### pvegpu facts 1\n### pvegpu uname\n6.1.0-22-amd64\n### pvegpu os-release\nID=debian\nVERSION_ID=12\n{section}"
    );
    let f = GuestFacts::from_raw(&RawFacts::parse(&text).unwrap()).unwrap();
    assert_eq!(f.onnx, [h]);
}

/// What each `onnx` release writes by default (its IR version and newest opset), read back.
#[test]
fn each_onnx_release_default_header_is_read() {
    let read = |n: &str| {
        let h = read_header(n, &model(n)).unwrap();
        (h.ir_version, h.opset, h.producer.unwrap_or_default())
    };
    for (file, ir, opset) in [
        ("onnx-1.13.1.onnx", 8, 18),
        ("onnx-1.14.1.onnx", 9, 19),
        ("onnx-1.16.2.onnx", 10, 21),
        ("onnx-1.23.2.onnx", 14, 28),
    ] {
        let producer = file.trim_end_matches(".onnx").to_string();
        assert_eq!(read(file), (ir, opset, producer), "{file}");
    }
    // weights inline (a graph over 64 KiB) or in an external-data file: the header is the same
    assert_eq!(read("weights.onnx"), read("external/model.onnx"));
}

#[test]
fn a_model_cut_short_is_refused_naming_the_file() {
    let e = read_header("truncated.onnx", &model("truncated.onnx")).unwrap_err();
    assert!(matches!(e, OnnxCheckError::CutShort { .. }), "{e:?}");
    assert!(e.to_string().contains("truncated.onnx"), "{e}");
    // a file that is no model at all is still said to be none
    let e = read_header("notes.onnx", b"\xff\xff\xff\xff not a model").unwrap_err();
    assert!(matches!(e, OnnxCheckError::Decode { .. }), "{e:?}");
}

//! Triton layer of verify on real repository-index answers (fixtures/verify/SOURCES.md).

mod support;
mod verify_support;
use pvegpu::verify::Status;
use pvegpu::verify::triton::{TritonAnswers, checks};
use support::read;
use verify_support::find;

fn answers(code: u16, index: &str) -> TritonAnswers {
    TritonAnswers {
        ready_status: Some(code),
        index_body: Some(read(&format!("verify/triton/{index}"))),
    }
}

#[test]
fn all_ready_passes() {
    let c = checks(
        &answers(200, "index-all-ready.json"),
        &["resnet50_trt".into()],
    );
    assert!(c.iter().all(|c| c.status == Status::Pass), "{c:#?}");
}

#[test]
fn old_versions_unloaded_after_a_version_switch_are_no_fault() {
    let c = checks(&answers(200, "index-version-switch.json"), &[]);
    assert!(c.iter().all(|c| c.status == Status::Pass), "{c:#?}");
}

#[test]
fn an_expected_model_unloaded_fails_but_an_unexpected_one_does_not() {
    let c = checks(&answers(200, "index-one-unloaded.json"), &[]);
    assert!(c.iter().all(|c| c.status == Status::Pass), "{c:#?}");
    let c = checks(
        &answers(200, "index-one-unloaded.json"),
        &["ensemble_python_resnet50".into(), "bert".into()],
    );
    let every = find(&c, "every model loaded");
    assert_eq!(every.status, Status::Fail);
    assert!(
        every
            .saw
            .contains("ensemble_python_resnet50 v1: UNAVAILABLE (unloaded)"),
        "{}",
        every.saw
    );
    assert!(
        every.saw.contains("bert: not in the repository"),
        "{}",
        every.saw
    );
}

#[test]
fn failed_load_names_model_and_reason() {
    let c = checks(&answers(400, "index-load-failed.json"), &[]);
    assert_eq!(find(&c, "server ready").status, Status::Fail);
    let failed = find(&c, "no model failed");
    assert_eq!(failed.status, Status::Fail);
    assert!(
        failed.saw.starts_with("ensemble_python_resnet50 v1: UNAVAILABLE (failed to load 'ensemble_python_resnet50': at least one version"),
        "{}",
        failed.saw
    );
}

#[test]
fn unreachable_or_not_triton() {
    let c = checks(&TritonAnswers::default(), &[]);
    assert!(c.iter().all(|c| c.status == Status::Skip), "{c:#?}");
    let c = checks(
        &TritonAnswers {
            ready_status: Some(200),
            index_body: Some("<html>502 Bad Gateway</html>".into()),
        },
        &[],
    );
    assert_eq!(find(&c, "models loaded").status, Status::Fail);
    let c = checks(
        &TritonAnswers {
            ready_status: Some(200),
            index_body: Some("[]".into()),
        },
        &[],
    );
    assert_eq!(
        find(&c, "every model loaded").status,
        Status::Fail,
        "an empty repository serves nothing"
    );
}

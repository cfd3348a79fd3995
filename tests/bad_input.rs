//! Bad input found by fuzzing (issue #14), each as a user would meet it: a clear error that
//! names the file, line and fix, a prompt exit, and nothing echoed without bound.

mod support;
use std::process::Command;
use std::time::Duration;
use support::fixture;
use support::pvegpu_cli as pvegpu;

#[test]
fn an_inventory_error_points_at_the_offending_nodes_line() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("two.toml");
    // both nodes list 02:00; only the second lists it twice
    let text = "[nodes.a]\nssh = \"root@a\"\n[[nodes.a.gpus]]\naddress = \"0000:02:00\"\n\n[nodes.b]\nssh = \"root@b\"\n[[nodes.b.gpus]]\naddress = \"0000:02:00\"\n[[nodes.b.gpus]]\naddress = \"0000:02:00.0\"\n";
    std::fs::write(&inv, text).unwrap();
    let (code, _, err) = pvegpu(&["-i", inv.to_str().unwrap(), "plan"]);
    assert_eq!(code, Some(1), "{err}");
    let line = text
        .lines()
        .position(|l| l.contains("0000:02:00.0"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!(
            "two.toml:{line}:1: node `b`: 0000:02:00.0 is listed twice"
        )),
        "{err}"
    );
}

#[test]
fn a_secret_file_that_is_a_fifo_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("token");
    assert!(
        Command::new("mkfifo")
            .arg("-m600")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let osm = support::read("../../inventories/osm45.toml");
    let osm = osm.replace(
        "[nodes.osm45.api]",
        &format!(
            "[nodes.osm45.api]\ntoken_secret_file = \"{}\"",
            fifo.display()
        ),
    );
    let key = dir.path().join("id.pub");
    std::fs::write(&key, "ssh-ed25519 AAAA test\n").unwrap();
    let osm = osm.replace("~/.ssh/id_ed25519.pub", key.to_str().unwrap());
    let inv = dir.path().join("pvegpu.toml");
    std::fs::write(&inv, osm).unwrap();
    let facts = fixture("facts/osm45.facts");
    let started = std::time::Instant::now();
    let (code, _, err) = pvegpu(&[
        "-i",
        inv.to_str().unwrap(),
        "plan",
        "--facts",
        facts.to_str().unwrap(),
    ]);
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "it blocked on the FIFO"
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is not a regular file but a FIFO"), "{err}");
}

#[test]
fn invalid_utf8_is_named_by_line_and_byte() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("latin1.toml");
    std::fs::write(&inv, b"[nodes.a]\n# caf\xe9\nssh = \"root@a\"\n").unwrap();
    let (code, _, err) = pvegpu(&["-i", inv.to_str().unwrap(), "plan"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("latin1.toml: line 2, byte 15 (column 6 of that line) is not valid UTF-8"),
        "{err}"
    );
    assert!(err.contains("hint: save it as UTF-8"), "{err}");
}

#[test]
fn a_huge_bad_line_is_clipped_in_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let facts = dir.path().join("big.facts");
    std::fs::write(&facts, "x".repeat(10_000_000)).unwrap();
    let (code, _, err) = pvegpu(&["discover", "--facts", facts.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.len() < 2_000, "{} bytes of error", err.len());
    assert!(err.contains("… (9999880 more bytes)"), "{err}");
}

#[test]
fn a_missing_inventory_says_how_to_name_or_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pvegpu"))
        .arg("plan")
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env_remove("PVEGPU_INVENTORY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("error: cannot read the inventory pvegpu.toml")
            && err.contains("hint: name the inventory with `-i FILE` or $PVEGPU_INVENTORY")
            && err.contains("inventories/osm45.toml"),
        "{err}"
    );
}

fn compose(dir: &std::path::Path, device: &str, command: &str) -> std::path::PathBuf {
    let path = dir.join("compose.yml");
    std::fs::write(
        &path,
        format!(
            "services:\n  llm:\n    image: vllm/vllm-openai\n    command: --model m{command}\n    deploy:\n      resources:\n        reservations:\n          devices:\n            - driver: nvidia\n              {device}\n              capabilities: [gpu]\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn compose_values_that_are_not_valid_are_rejected_with_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for (device, col) in [("count: null", 15), ("count:", 15), ("count: -2", 22)] {
        let file = compose(dir.path(), device, "");
        let (code, out, err) = pvegpu(&["lint", "compose", file.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{device}: {out}{err}");
        assert!(
            err.contains(&format!("compose.yml:10:{col}:")),
            "{device}: {err}"
        );
        assert!(!out.contains("No GPU routing problems"), "{out}");
    }
    let runtime = dir.path().join("runtime.yml");
    std::fs::write(&runtime, "services:\n  a:\n    image: x\n    runtime: 5\n").unwrap();
    let (code, _, err) = pvegpu(&["lint", "compose", runtime.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("runtime.yml:4:5: invalid type: integer `5`"),
        "{err}"
    );
    let (code, _, err) = pvegpu(&["lint", "compose", "/no/such/compose.yml"]);
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn compose_parallel_sizes_no_engine_takes_are_findings() {
    let dir = tempfile::tempdir().unwrap();
    for tp in ["0", "99999999999999999999"] {
        let file = compose(
            dir.path(),
            "count: 1",
            &format!(" --tensor-parallel-size {tp}"),
        );
        let (code, out, _) = pvegpu(&["lint", "compose", file.to_str().unwrap()]);
        assert_eq!(code, Some(1), "{out}");
        assert!(
            out.contains(&format!("compose.yml:4: error[invalid-value] service `llm`: `--tensor-parallel-size {tp}` is not a parallel size")),
            "{out}"
        );
    }
    let file = compose(dir.path(), "count: -1", "");
    let (code, out, _) = pvegpu(&["lint", "compose", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "a warning is not an error: {out}");
    assert!(
        out.contains("compose.yml:10: warning[count-minus-one]"),
        "{out}"
    );
}

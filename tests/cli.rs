//! Whole CLI runs (offline: facts files, bad inventories), as a user sees them.

mod support;
use support::fixture;
use support::pvegpu_cli as pvegpu;

#[test]
fn plan_from_facts_file_with_detailed_exitcode() {
    let inv = fixture("../../inventories/osm45.toml");
    let facts = fixture("facts/osm45.facts");
    let (code, stdout, stderr) = pvegpu(&[
        "-i",
        inv.to_str().unwrap(),
        "plan",
        "--facts",
        facts.to_str().unwrap(),
        "--phase",
        "host",
        "--detailed-exitcode",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("error:"), "{stderr}");
    assert!(
        stdout.contains("Plan: 4 file(s) to write, 1 command(s) to run, 1 reboot(s)."),
        "{stdout}"
    );
    let (code, json, _) = pvegpu(&[
        "-i",
        inv.to_str().unwrap(),
        "--json",
        "plan",
        "--facts",
        facts.to_str().unwrap(),
        "--phase",
        "host",
    ]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["format_version"], 1);
    let v = &v["nodes"];
    assert_eq!(v[0]["node"], "osm45");
    assert_eq!(v[0]["state"], "ready");
    assert_eq!(
        v[0]["changes"].as_array().unwrap().last().unwrap()["action"]["kind"],
        "reboot"
    );
    assert_eq!(v[0]["phases"]["through"], "host");
    assert_eq!(v[0]["phases"]["left_out"], serde_json::json!([]));
}

/// README's offline example, as written: the plan is shown, and a phase these facts cannot
/// reach (osm45's VM phase needs the API and a cloud-init key) fails the run instead of
/// passing as "no changes"; `--phase host` is how to ask for less.
#[test]
fn a_phase_left_out_is_an_error_not_nothing_to_do() {
    let inv = fixture("../../inventories/osm45.toml");
    let facts = fixture("facts/osm45.facts");
    let args = [
        "-i",
        inv.to_str().unwrap(),
        "--json",
        "plan",
        "--facts",
        facts.to_str().unwrap(),
        "--detailed-exitcode",
    ];
    let (code, json, stderr) = pvegpu(&args);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("the VM phase of osm45 could not be planned offline")
            && stderr.contains(
                "error: the plan is incomplete: the VM phase of osm45 could not be planned"
            )
            && stderr.contains(
                "hint: to plan only what these facts can tell, ask for it: `--phase host`"
            ),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let v = &v["nodes"];
    assert_eq!(v[0]["state"], "ready");
    assert_eq!(v[0]["phases"]["through"], "guest");
    assert_eq!(v[0]["phases"]["left_out"][0]["phase"], "VM");
    assert_eq!(v[0]["vm"], serde_json::Value::Null);
}

/// clap's usage errors exit 2, which `--detailed-exitcode` means "changes": pvegpu uses 64.
#[test]
fn usage_errors_exit_64_and_help_exits_0() {
    let (code, _, stderr) = pvegpu(&["plan", "--no-such-flag"]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("unexpected argument '--no-such-flag'"),
        "{stderr}"
    );
    let (code, _, _) = pvegpu(&["plan", "--phase", "everything"]);
    assert_eq!(code, Some(64));
    let (code, stdout, _) = pvegpu(&["plan", "--help"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("--phase"), "{stdout}");
}

#[test]
fn malformed_inventory_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("bad.toml");
    std::fs::write(
        &inv,
        "[nodes.osm45]\nssh = \"root@osm45\"\n\n[[nodes.osm45.gpus]]\naddress = \"2:00\"\n",
    )
    .unwrap();
    let (code, stdout, stderr) = pvegpu(&["-i", inv.to_str().unwrap(), "plan"]);
    assert_eq!(code, Some(1));
    assert!(stdout.is_empty());
    insta::assert_snapshot!(stderr.replace(dir.path().to_str().unwrap(), "[TMP]"));
}

#[test]
fn missing_inventory_and_unknown_node() {
    let (code, _, stderr) = pvegpu(&["-i", "/nonexistent/pvegpu.toml", "plan"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with(
            "error: cannot read the inventory /nonexistent/pvegpu.toml\n  Caused by: No such file"
        ),
        "{stderr}"
    );
    let inv = fixture("../../inventories/osm45.toml");
    let (code, _, stderr) = pvegpu(&["-i", inv.to_str().unwrap(), "plan", "--node", "osm46"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("no node or group `osm46` in the inventory")
            && stderr.contains("(it has: osm45)"),
        "{stderr}"
    );
}

#[test]
fn facts_file_that_is_not_facts() {
    let inv = fixture("../../inventories/osm45.toml");
    let (code, _, stderr) = pvegpu(&[
        "-i",
        inv.to_str().unwrap(),
        "plan",
        "--facts",
        inv.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("is not a pvegpu facts file")
            && stderr.contains("line 6: `[nodes.osm45]` is not a pvegpu facts header"),
        "{stderr}"
    );
}

#[test]
fn completions_work() {
    let (code, out, _) = pvegpu(&["completions", "bash"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("pvegpu") && out.contains("discover") && out.contains("rollback"));
}

#[test]
fn compat_and_lint_through_the_binary() {
    let (code, out, err) = pvegpu(&[
        "compat",
        "10de:1b80",
        "--driver",
        "535.261.03",
        "--backend",
        "onnx",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("onnx      23.10   native"), "{out}");
    let (code, _, err) = pvegpu(&["compat", "10de:ffff"]);
    assert_eq!(code, Some(1));
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("10de:ffff"), "{err}");
    let bad = fixture("compose/bad_seed_remap.yml");
    let (code, out, _) = pvegpu(&["lint", "compose", bad.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("error[count-with-device-ids] service `reserved`"),
        "{out}"
    );
    let good = fixture("compose/good_triton.yml");
    let (code, out, _) = pvegpu(&["--json", "lint", "compose", good.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v, serde_json::json!({"format_version": 1, "findings": []}));
}

#[test]
fn plan_from_several_facts_files_plans_each_node_and_node_picks_one() {
    let dir = tempfile::tempdir().unwrap();
    let osm = support::read("../../inventories/osm45.toml");
    let osm = &osm[..osm.find("[nodes.osm45.api]").unwrap()];
    let inv = dir.path().join("two.toml");
    std::fs::write(
        &inv,
        format!("{osm}\n{}", support::read("facts/amd-grub.toml")),
    )
    .unwrap();
    let (osm_facts, amd_facts) = (
        fixture("facts/osm45.facts"),
        fixture("facts/amd-grub.facts"),
    );
    let args = |node: Option<&str>| {
        let mut a = vec![
            "-i".to_string(),
            inv.to_str().unwrap().to_string(),
            "--json".into(),
            "plan".into(),
            "--facts".into(),
            osm_facts.to_str().unwrap().into(),
            "--facts".into(),
            amd_facts.to_str().unwrap().into(),
        ];
        if let Some(n) = node {
            a.extend(["--node".to_string(), n.to_string()]);
        }
        a
    };
    let nodes = |json: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["node"].as_str().unwrap().to_string())
            .collect()
    };
    let run = |a: Vec<String>| pvegpu(&a.iter().map(String::as_str).collect::<Vec<_>>());

    let (code, json, err) = run(args(None));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(nodes(&json), ["osm45", "amdhost"]);
    let (code, json, err) = run(args(Some("amdhost")));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(nodes(&json), ["amdhost"]);
    let (code, _, err) = run(args(Some("pve9")));
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no node or group `pve9` in the inventory"),
        "{err}"
    );
}

/// A transcript as a poster would give it: the real AMD host's pieces (tests/fixtures/recorded)
/// behind prompts, plus an excerpt with a line pvegpu cannot read.
fn amd_transcript() -> String {
    let lspci = support::read("recorded/lspci-nnk/rtx4070-no-driver-bound-audio-snd-hda.txt");
    let dmesg = support::read("recorded/dmesg-iommu/amd-acs-override-unknown-option-rtx4070.txt");
    let groups = support::read("recorded/iommu-groups/find-type-l-grep-rtx4070-acs-split.txt");
    format!(
        "My setup, any idea?\n```\nroot@pve:~# uname -r\n6.8.12-8-pve\nroot@pve:~# cat /proc/cmdline\nBOOT_IMAGE=/boot/vmlinuz-6.8.12-8-pve root=/dev/mapper/pve-root ro quiet pcie_acs_override=downstream,multifunction\nroot@pve:~# lspci -nnk\n{lspci}root@pve:~# dmesg | grep -e DMAR -e IOMMU -e AMD-Vi\n{dmesg}root@pve:~# find /sys/kernel/iommu_groups/ -type l | grep 08:00\n{groups}```\n"
    )
}

#[test]
fn discover_paste_judges_a_transcript_without_an_inventory() {
    let dir = std::env::temp_dir().join(format!("pvegpu-cli-paste-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let paste = dir.join("thread.txt");
    std::fs::write(&paste, amd_transcript()).unwrap();
    let missing = dir.join("none.toml");
    let (code, out, err) = pvegpu(&[
        "-i",
        missing.to_str().unwrap(),
        "--json",
        "discover",
        "--paste",
        paste.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("transcript line 1 (1 line(s)) not read: My setup, any idea?"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["format_version"], 1);
    let node = &v["nodes"][0];
    assert_eq!(node["host"]["acs_override"], true);
    assert_eq!(node["host"]["iommu"], "on");
    let gpu = node["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["address"] == "0000:08:00.0")
        .unwrap();
    assert_eq!(gpu["verdict"], "refused", "{gpu}");
    let codes: Vec<&str> = gpu["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"acs_override"), "{codes:?}");

    // plan needs the running kernel: a transcript without `uname -r` is refused by name
    let without_uname = amd_transcript().replace("root@pve:~# uname -r\n6.8.12-8-pve\n", "");
    std::fs::write(&paste, without_uname).unwrap();
    let inv = fixture("facts/amd-grub.toml");
    let (code, _, err) = pvegpu(&[
        "-i",
        inv.to_str().unwrap(),
        "plan",
        "--paste",
        paste.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no `uname` section"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Every flag and argument of every subcommand says what it does, and the main subcommands
/// show examples (`--help`, and the man pages built from the same definitions).
#[test]
fn every_flag_has_help_and_main_commands_have_examples() {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let cli = pvegpu::cli::Cli::command();
    let mut missing = Vec::new();
    walk(&cli, "pvegpu", &mut missing);
    assert!(missing.is_empty(), "no help text: {missing:?}");
    for name in ["plan", "apply", "verify", "discover", "compat"] {
        let sub = cli.find_subcommand(name).unwrap();
        let after = sub
            .get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        assert!(
            after.starts_with("Examples:") && after.matches("pvegpu ").count() >= 2,
            "{name}: {after}"
        );
    }
}

/// A hint that suggests a command carries the `-i` the user gave, so it can be pasted as is;
/// JSON stays data.
#[test]
fn suggested_commands_keep_the_inventory_the_user_gave() {
    let inv = fixture("../../inventories/osm45.toml");
    let facts = fixture("facts/osm45.facts");
    let args = [
        "-i",
        inv.to_str().unwrap(),
        "verify",
        "--node",
        "osm45",
        "--facts",
        facts.to_str().unwrap(),
    ];
    let (code, out, _) = pvegpu(&args);
    assert_eq!(code, Some(1));
    let with_i = format!("`pvegpu -i {} apply --node osm45`", inv.display());
    assert!(out.contains(&with_i), "{out}");
    assert!(!out.contains("`pvegpu apply"), "{out}");
}

/// The plan's diffs show a file exactly as it will be written: the `-i` rewrite of hints
/// never reaches them.
#[test]
fn diffs_are_not_rewritten_with_the_inventory() {
    let inv = fixture("../../inventories/osm45.toml");
    let facts = fixture("facts/osm45.facts");
    let (code, out, err) = pvegpu(&[
        "-i",
        inv.to_str().unwrap(),
        "plan",
        "--facts",
        facts.to_str().unwrap(),
        "--phase",
        "host",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("+# `pvegpu rollback` removes this file"),
        "{out}"
    );
    assert!(!out.contains("+# `pvegpu -i"), "{out}");
}

/// `discover --save` into a name someone planted as a link: refused, the link's target
/// untouched; a plain file is replaced whole, with mode 0600 whatever the umask (#20).
#[test]
fn discover_save_never_writes_through_a_link() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let paste = dir.path().join("thread.txt");
    std::fs::write(&paste, amd_transcript()).unwrap();
    let missing = dir.path().join("none.toml");
    let victim = dir.path().join("authorized_keys");
    std::fs::write(&victim, "ssh-ed25519 AAAA keep\n").unwrap();
    let saved = dir.path().join("pve.facts");
    std::os::unix::fs::symlink(&victim, &saved).unwrap();
    let save = |to: &std::path::Path| {
        pvegpu(&[
            "-i",
            missing.to_str().unwrap(),
            "discover",
            "--paste",
            paste.to_str().unwrap(),
            "--save",
            to.to_str().unwrap(),
        ])
    };
    let (code, _, err) = save(&saved);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is a symbolic link"), "{err}");
    assert!(err.contains("hint: name the real file"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "ssh-ed25519 AAAA keep\n"
    );

    std::fs::remove_file(&saved).unwrap();
    std::fs::write(&saved, "old").unwrap();
    std::fs::set_permissions(&saved, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, _, err) = save(&saved);
    assert_eq!(code, Some(0), "{err}");
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(text.contains("6.8.12-8-pve") && !text.starts_with("old"));
    let mode = std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// What a node says reaches the terminal as text, never as control (#20): a window title, a
/// screen clear and a `\r` that would overwrite a line with a fake verdict, planted in a
/// file's content and a device's name, show as escapes in text and JSON, on stdout and
/// stderr alike.
#[test]
fn terminal_controls_from_a_node_are_shown_not_obeyed() {
    const PAYLOAD: &str = "\x1b]0;owned\x07\x1b[2J\r\u{9b}1A✓ all checks passed";
    let dir = tempfile::tempdir().unwrap();
    let facts = support::read("facts/osm45.facts")
        .replace(
            "# Parameters can be specified after the module name.\n",
            &format!("# Parameters can be specified after the module name.\n# {PAYLOAD}\n"),
        )
        .replace(
            "02:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [GeForce GTX 1080]",
            &format!("02:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [GeForce GTX 1080{PAYLOAD}]"),
        );
    assert!(facts.contains(PAYLOAD));
    let path = dir.path().join("osm45.facts");
    std::fs::write(&path, facts).unwrap();
    let inv = fixture("../../inventories/osm45.toml");
    let (inv, path) = (inv.to_str().unwrap(), path.to_str().unwrap());
    let runs = [
        vec!["-i", inv, "plan", "--facts", path, "--phase", "host"],
        vec![
            "-i", inv, "--json", "plan", "--facts", path, "--phase", "host",
        ],
        vec!["-i", inv, "discover", "--facts", path],
        vec!["-i", inv, "--json", "discover", "--facts", path],
    ];
    for args in runs {
        let (code, out, err) = pvegpu(&args);
        assert!(code.is_some(), "{args:?}");
        for (stream, text) in [("stdout", &out), ("stderr", &err)] {
            let bad: Vec<char> = text
                .chars()
                .filter(|c| c.is_control() && !matches!(c, '\n' | '\t'))
                .collect();
            assert!(bad.is_empty(), "{args:?} {stream} carries {bad:?}:\n{text}");
        }
        // JSON writes the escape's backslash as `\\`
        let shown = if args.contains(&"--json") {
            out.replace(r"\\", r"\")
        } else {
            out.clone()
        };
        assert!(
            shown.contains(r"\x1b]0;owned\x07\x1b[2J\r\u{9b}1A✓ all checks passed"),
            "{args:?}:\n{out}"
        );
    }
}

//! The playbook loader (src/core/playbook.rs) and the phases' playbooks: every step loads as its
//! typed kind, and a renamed, unknown or malformed step fails at load naming the file and step.

use pvegpu::core::playbook::{OwnedFile, Playbook, load};
use pvegpu::guest::playbook::{GUEST, GuestStepKind};
use pvegpu::host::playbook::{HOST, HostStepKind};
use pvegpu::vm::playbook::{VM, VmStepKind};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// `text` with `from` replaced by `to` must fail to load, with an error that starts `want`.
fn assert_load_fails<K: DeserializeOwned + std::fmt::Debug>(
    file: &str,
    text: &str,
    (from, to): (&str, &str),
    want: &str,
) {
    assert!(text.contains(from), "{file} has no `{from}`");
    let e = load::<K>(file, &text.replacen(from, to, 1))
        .expect_err("the playbook is broken")
        .to_string();
    assert!(e.starts_with(want), "{e}");
}

/// Each `(step id, path, template)` names a template pvegpu has and an absolute path.
fn assert_files<'a>(files: impl Iterator<Item = (&'a str, &'a str, &'a str)>) {
    for (id, path, t) in files {
        assert!(
            pvegpu::templates::names().any(|n| n == t),
            "{id} names unknown template {t}"
        );
        assert!(path.starts_with('/'), "{id} needs an absolute path");
    }
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum Kind {
    File(OwnedFile),
    Note { text: String },
    Reboot {},
}

const GOOD: &str = r#"
[[steps]]
id = "a"
kind = "file"
path = "/etc/a"
template = "a.j2"
summary = "a file"
reboot = true

[[steps]]
id = "b"
kind = "note"
text = "hello"
summary = "a note"

[[steps]]
id = "c"
kind = "reboot"
summary = "reboot"
"#;

fn error(text: &str) -> String {
    load::<Kind>("playbooks/x.toml", text)
        .expect_err("the playbook is broken")
        .to_string()
}

#[test]
fn steps_carry_their_common_fields_and_typed_kind() {
    let p: Playbook<Kind> = load("playbooks/x.toml", GOOD).unwrap();
    assert_eq!(p.steps.len(), 3);
    assert!(p.steps[0].reboot && !p.steps[1].reboot);
    assert_eq!(
        p.steps[0].kind,
        Kind::File(OwnedFile {
            path: "/etc/a".into(),
            template: "a.j2".into(),
            mode: None
        })
    );
    assert_eq!(p.steps[2].kind, Kind::Reboot {});
}

#[test]
fn a_renamed_kind_fails_naming_file_and_step() {
    let e = error(&GOOD.replace("kind = \"note\"", "kind = \"remark\""));
    assert!(e.starts_with("playbooks/x.toml, step 2 (`b`): "), "{e}");
    assert!(e.contains("unknown variant `remark`"), "{e}");
}

#[test]
fn a_stray_or_missing_field_fails_naming_file_and_step() {
    let e = error(&GOOD.replace("text = \"hello\"", "text = \"hello\"\ncolour = \"red\""));
    assert!(e.starts_with("playbooks/x.toml, step 2 (`b`): "), "{e}");
    assert!(e.contains("unknown field `colour`"), "{e}");
    // a kind without fields takes none either
    let e = error(&GOOD.replace("kind = \"reboot\"", "kind = \"reboot\"\npath = \"/x\""));
    assert!(e.starts_with("playbooks/x.toml, step 3 (`c`): "), "{e}");
    assert!(e.contains("unknown field `path`"), "{e}");
    let e = error(&GOOD.replace("template = \"a.j2\"\n", ""));
    assert!(e.starts_with("playbooks/x.toml, step 1 (`a`): "), "{e}");
    assert!(e.contains("missing field `template`"), "{e}");
}

#[test]
fn malformed_steps_fail_naming_file_and_step() {
    let e = error(&GOOD.replace("id = \"b\"\n", ""));
    assert!(e.starts_with("playbooks/x.toml, step 2: "), "{e}");
    assert!(e.contains("missing field `id`"), "{e}");
    let e = error(&GOOD.replace("reboot = true", "reboot = \"yes\""));
    assert!(e.starts_with("playbooks/x.toml, step 1 (`a`): "), "{e}");
    let e = error(&GOOD.replace("id = \"c\"", "id = \"a\""));
    assert!(
        e.contains("step 3 (`a`): another step has the same id"),
        "{e}"
    );
    let e = error("[[steps]\n");
    assert!(e.starts_with("playbooks/x.toml is not valid TOML"), "{e}");
    assert_eq!(error(""), "playbooks/x.toml has no [[steps]]");
}

#[test]
fn host_playbook_parses_and_files_have_templates() {
    assert!(!HOST.steps.is_empty());
    assert_files(HOST.steps.iter().filter_map(|s| {
        let file = match s.kind.managed_block() {
            Some(b) => (&b.path, &b.template),
            None => s.kind.owned_file().map(|f| (&f.path, &f.template))?,
        };
        Some((s.id.as_str(), file.0.as_str(), file.1.as_str()))
    }));
    assert_eq!(HOST.steps.last().unwrap().kind, HostStepKind::Reboot {});
}

#[test]
fn a_renamed_or_malformed_host_step_fails_at_load() {
    let fails = |edit, want| {
        let text = include_str!("../playbooks/host.toml");
        assert_load_fails::<HostStepKind>("playbooks/host.toml", text, edit, want)
    };
    fails(
        ("kind = \"kernel-cmdline\"", "kind = \"cmdline\""),
        "playbooks/host.toml, step 7 (`kernel-cmdline`): unknown variant `cmdline`",
    );
    fails(
        ("mode = \"755\"", "mode = 755"),
        "playbooks/host.toml, step 4 (`vfio-override-script`): ",
    );
}

#[test]
fn guest_playbook_parses_and_names_known_templates() {
    assert!(!GUEST.steps.is_empty());
    assert_files(GUEST.steps.iter().filter_map(|s| {
        let (path, template) = match &s.kind {
            GuestStepKind::AptComponents(f)
            | GuestStepKind::NouveauBlacklist(f)
            | GuestStepKind::TritonUnit(f) => (&f.path, &f.template),
            GuestStepKind::AptSource(r) | GuestStepKind::AptPin(r) => (&r.path, &r.template),
            _ => return None,
        };
        Some((s.id.as_str(), path.as_str(), template.as_str()))
    }));
    assert_eq!(GUEST.steps.last().unwrap().kind, GuestStepKind::Reboot {});
    // step ids name the changes of a plan, so they must be unique
    let mut ids: Vec<&str> = GUEST.steps.iter().map(|s| s.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), GUEST.steps.len());
}

#[test]
fn a_renamed_unknown_or_malformed_guest_step_fails_at_load() {
    let fails = |edit, want| {
        let text = include_str!("../playbooks/guest.toml");
        assert_load_fails::<GuestStepKind>("playbooks/guest.toml", text, edit, want)
    };
    fails(
        ("kind = \"keyring\"", "kind = \"key-ring\""),
        "playbooks/guest.toml, step 4 (`cuda-keyring`): unknown variant `key-ring`",
    );
    fails(
        ("repository = \"cuda\"", "repository = \"nvidia\""),
        "playbooks/guest.toml, step 4 (`cuda-keyring`): unknown variant `nvidia`",
    );
    fails(
        (
            "kind = \"apt-pin\"\nrepository = \"cuda\"\n",
            "kind = \"apt-pin\"\n",
        ),
        "playbooks/guest.toml, step 6 (`cuda-pin`): missing field `repository`",
    );
    fails(
        ("kind = \"driver\"", "kind = \"driver\"\npath = \"/x\""),
        "playbooks/guest.toml, step 12 (`driver`): unknown field `path`",
    );
}

#[test]
fn vm_playbook_parses_in_the_order_of_the_api_calls() {
    use VmStepKind as K;
    let kinds: Vec<&VmStepKind> = VM.steps.iter().map(|s| &s.kind).collect();
    assert_eq!(
        kinds,
        [
            &K::PciMappings {},
            &K::CreateVm {},
            &K::SetConfig {},
            &K::ResizeDisk {},
            &K::EnrollEfiCerts {},
            &K::Restart {},
            &K::Start {},
        ]
    );
    assert!(VM.steps.iter().all(|s| !s.reboot));
}

#[test]
fn a_renamed_unknown_or_malformed_vm_step_fails_at_load() {
    let fails = |edit, want| {
        let text = include_str!("../playbooks/vm.toml");
        assert_load_fails::<VmStepKind>("playbooks/vm.toml", text, edit, want)
    };
    fails(
        ("kind = \"set-config\"", "kind = \"config\""),
        "playbooks/vm.toml, step 3 (`set-config`): unknown variant `config`",
    );
    fails(
        ("kind = \"start\"", "kind = \"start\"\ntimeout = 60"),
        "playbooks/vm.toml, step 7 (`start`): unknown field `timeout`",
    );
    fails(
        ("id = \"restart\"", "id = \"resize-disk\""),
        "playbooks/vm.toml, step 6 (`resize-disk`): another step has the same id",
    );
}

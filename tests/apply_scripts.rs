//! The executor's write scripts, run for real by /bin/sh against a scratch folder.

use pvegpu::core::scripts;
use std::path::Path;
use std::process::Command;

fn sh(script: &str, state: &Path) -> (i32, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("PVEGPU_STATE", state)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn create_update_refuse_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let target = dir.path().join("etc/modprobe.d/pvegpu-vfio.conf");
    let path = target.to_str().unwrap();

    // create: mode from the plan, recorded as created, read back
    let (rc, err) = sh(
        &scripts::write_file(
            "r1",
            path,
            "# Managed by pvegpu\noptions vfio-pci ids=10de:1b80\n",
            "644",
            None,
            &[],
        ),
        &state,
    );
    assert_eq!(rc, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "# Managed by pvegpu\noptions vfio-pci ids=10de:1b80\n"
    );
    assert_eq!(
        std::fs::read_to_string(state.join("created.list"))
            .unwrap()
            .trim(),
        path
    );
    let mode = std::fs::metadata(&target).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o644
    );

    // running the same create again is refused: the file exists now, the plan is stale
    let (rc, err) = sh(
        &scripts::write_file("r2", path, "x\n", "644", None, &[]),
        &state,
    );
    assert_eq!(rc, 3);
    assert!(err.contains("appeared since the plan"), "{err}");

    // update: the expected content matches, a backup is kept, no temp file is left behind
    let (rc, err) = sh(
        &scripts::write_file(
            "r3",
            path,
            "# Managed by pvegpu\nnew\n",
            "644",
            Some("# Managed by pvegpu\noptions vfio-pci ids=10de:1b80\n"),
            &[],
        ),
        &state,
    );
    assert_eq!(rc, 0, "{err}");
    let backup = state.join(format!("backups/r3{path}"));
    assert_eq!(
        std::fs::read_to_string(backup).unwrap(),
        "# Managed by pvegpu\noptions vfio-pci ids=10de:1b80\n"
    );
    let leftovers: Vec<_> = std::fs::read_dir(target.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".pvegpu"))
        .collect();
    assert!(leftovers.is_empty());

    // someone edited it meanwhile: refused, untouched
    std::fs::write(&target, "edited by hand\n").unwrap();
    let (rc, err) = sh(
        &scripts::write_file(
            "r4",
            path,
            "mine\n",
            "644",
            Some("# Managed by pvegpu\nnew\n"),
            &[],
        ),
        &state,
    );
    assert_eq!(rc, 3);
    assert!(err.contains("changed since the plan"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "edited by hand\n"
    );

    // remove refuses a file without pvegpu's mark, removes one with it (keeping a backup)
    let (rc, err) = sh(&scripts::remove_file("r5", path), &state);
    assert_eq!(rc, 3, "{err}");
    assert!(target.exists());
    std::fs::write(&target, "# Managed by pvegpu\n").unwrap();
    let (rc, _) = sh(&scripts::remove_file("r6", path), &state);
    assert_eq!(rc, 0);
    assert!(!target.exists());
    assert!(state.join(format!("backups/r6{path}")).exists());
}

#[test]
fn cmdline_words_are_recorded_once_and_owner_mode_kept() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let target = dir.path().join("cmdline");
    std::fs::write(&target, "root=ZFS=rpool/ROOT/pve-1 boot=zfs\n").unwrap();
    std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let words = vec!["intel_iommu=on".to_string(), "iommu=pt".to_string()];
    let new = "root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=on iommu=pt\n";
    let (rc, err) = sh(
        &scripts::write_file(
            "a",
            target.to_str().unwrap(),
            new,
            "644",
            Some("root=ZFS=rpool/ROOT/pve-1 boot=zfs\n"),
            &words,
        ),
        &state,
    );
    assert_eq!(rc, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), new);
    let mode = std::fs::metadata(&target).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600,
        "mode of the original is kept"
    );
    let (rc, _) = sh(
        &scripts::write_file("b", target.to_str().unwrap(), new, "644", Some(new), &words),
        &state,
    );
    assert_eq!(rc, 0);
    assert_eq!(
        std::fs::read_to_string(state.join("cmdline-added")).unwrap(),
        "intel_iommu=on\niommu=pt\n"
    );
}

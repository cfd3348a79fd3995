//! Where the interruption sweeps (#20) cut an executor's step, the step's script as the cut
//! leaves it, and how a sweep compares the end state with an uninterrupted run's. Shared by
//! tests/host_interrupted.rs (the scratch-folder node), tests/guest_interrupted.rs (the
//! scratch guest) and tests/testhost_interrupted.rs (the QEMU test host).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// The connection drops before the step's script reaches the node.
    Before,
    /// The node's shell dies in the middle of the step.
    Midway,
    /// The step's work is done (a write renamed into place, a command ended), then the
    /// shell dies or the answer is lost.
    After,
    /// The connection drops while a detached guest command runs on; the guest stays
    /// reachable, so the executor connects again and waits for the same run.
    Dropped,
}

/// The line of a write script (`scripts::write_file`) that puts the file into place.
const RENAME: &str = "mv -f \"$tmp\" \"$path\"\n";

/// A write's script with the shell killed just before its rename (Midway: the temporary file
/// written, the target untouched) or just after it (After: the answer is lost); any other
/// script, and another cut, unchanged.
pub fn cut_write(script: &str, cut: Cut) -> String {
    match cut {
        Cut::Midway => script.replace(RENAME, "kill -KILL $$\n"),
        Cut::After => script.replace(RENAME, &format!("{RENAME}kill -KILL $$\n")),
        Cut::Before | Cut::Dropped => script.to_string(),
    }
}

/// True for a write's script, which [`cut_write`] cuts.
pub fn is_write(script: &str) -> bool {
    script.contains(RENAME)
}

/// Every file under `dir` (links as they are, folders descended).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A file as the sweeps compare it with an uninterrupted run's: a link's target, else its
/// mode and content.
pub fn described(p: &Path) -> String {
    match std::fs::read_link(p) {
        Ok(t) => format!("-> {}", t.display()),
        Err(_) => format!(
            "{:o}\n{}",
            std::fs::metadata(p).unwrap().permissions().mode() & 0o7777,
            String::from_utf8_lossy(&std::fs::read(p).unwrap())
        ),
    }
}

/// The files whose [`described`] state differs between two trees (or that only one has).
pub fn differing<'a>(
    done: &'a BTreeMap<String, String>,
    after: &'a BTreeMap<String, String>,
) -> Vec<&'a String> {
    let keys: std::collections::BTreeSet<&String> = done
        .keys()
        .chain(after.keys())
        .filter(|k| done.get(*k) != after.get(*k))
        .collect();
    keys.into_iter().collect()
}

/// Run a stand-in node's or guest's shell, its stand-ins told to die halfway through their
/// work when the cut is midway.
pub fn run_cut(mut shell: std::process::Command, midway: bool) -> pvegpu::transport::RemoteOutput {
    let out = shell
        .env("PVEGPU_TEST_DIE_MIDWAY", if midway { "1" } else { "" })
        .output()
        .unwrap();
    pvegpu::transport::RemoteOutput {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

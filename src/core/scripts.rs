//! Shell scripts the executor runs on a node, built by pure functions so they can be read,
//! tested locally against a scratch folder, and sent in one SSH exec each.
//!
//! Every write is: refuse if the file is not what the plan saw, back it up, write a temporary
//! file in the same folder with the same owner and mode, rename it over the target (atomic),
//! and read it back.

use std::fmt::Write as _;

/// Where pvegpu keeps backups and what it needs for rollback on the node.
pub const STATE_DIR: &str = "/var/lib/pvegpu";
/// Words pvegpu appended to /etc/kernel/cmdline (one per line), so rollback removes only those.
pub const CMDLINE_ADDED: &str = "/var/lib/pvegpu/cmdline-added";

pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn prelude(run_id: &str) -> String {
    format!(
        "set -eu\nexport LC_ALL=C\nstate=${{PVEGPU_STATE:-{STATE_DIR}}}\nrun=\"$state/backups/{run_id}\"\nmkdir -p \"$run\"\nchmod 700 \"$state\"\n"
    )
}

/// Replace a file atomically. `before` is what the plan saw (None: the file must not exist).
/// `added_words`: kernel command line words this write adds, recorded for rollback.
pub fn write_file(
    run_id: &str,
    path: &str,
    content: &str,
    mode: &str,
    before: Option<&str>,
    added_words: &[String],
) -> String {
    let mut s = prelude(run_id);
    let p = quote(path);
    let _ = writeln!(s, "path={p}");
    match before {
        None => {
            let _ = writeln!(
                s,
                "if [ -e \"$path\" ]; then echo \"pvegpu: $path appeared since the plan; plan again\" >&2; exit 3; fi"
            );
        }
        Some(b) => {
            let _ = writeln!(
                s,
                "printf '%s' {} | base64 -d > \"$run/.expected\"\nif ! cmp -s \"$run/.expected\" \"$path\"; then echo \"pvegpu: $path changed since the plan; plan again\" >&2; exit 3; fi\nrm -f \"$run/.expected\"",
                quote(&b64(b))
            );
            let _ = writeln!(
                s,
                "mkdir -p \"$run$(dirname \"$path\")\"\ncp -p \"$path\" \"$run$path\""
            );
        }
    }
    let _ = writeln!(
        s,
        "dir=$(dirname \"$path\")\nmkdir -p \"$dir\"\n\
         # what a write killed before its rename left (one apply per node holds the lock)\n\
         for t in \"$dir\"/.pvegpu.??????; do [ -f \"$t\" ] && rm -f \"$t\"; done\n\
         tmp=$(mktemp \"$dir/.pvegpu.XXXXXX\")\ntrap 'rm -f \"$tmp\"' EXIT\nprintf '%s' {} | base64 -d > \"$tmp\"",
        quote(&b64(content))
    );
    if before.is_some() {
        s.push_str("chown --reference=\"$path\" \"$tmp\"\nchmod --reference=\"$path\" \"$tmp\"\n");
    } else {
        let _ = writeln!(s, "chmod {} \"$tmp\"", quote(mode));
        s.push_str("grep -qxF \"$path\" \"$state/created.list\" 2>/dev/null || echo \"$path\" >> \"$state/created.list\"\n");
    }
    // the words are recorded before the file has them: a run killed in between leaves a
    // word rollback will not find (harmless), never one it does not know it added
    for w in added_words {
        let _ = writeln!(
            s,
            "grep -qxF {0} \"$state/cmdline-added\" 2>/dev/null || echo {0} >> \"$state/cmdline-added\"",
            quote(w)
        );
    }
    s.push_str("sync \"$tmp\" 2>/dev/null || sync\nmv -f \"$tmp\" \"$path\"\ntrap - EXIT\n");
    let _ = writeln!(
        s,
        "printf '%s' {} | base64 -d | cmp -s - \"$path\" || {{ echo \"pvegpu: $path does not read back as written\" >&2; exit 4; }}",
        quote(&b64(content))
    );
    s
}

/// Remove a file pvegpu owns (it must still carry pvegpu's mark), keeping a backup.
pub fn remove_file(run_id: &str, path: &str) -> String {
    let mut s = prelude(run_id);
    let _ = writeln!(s, "path={}", quote(path));
    s.push_str(
        "[ -e \"$path\" ] || exit 0\n\
         grep -q 'Managed by pvegpu' \"$path\" || { echo \"pvegpu: $path is not pvegpu's (no 'Managed by pvegpu' mark); left alone\" >&2; exit 3; }\n\
         mkdir -p \"$run$(dirname \"$path\")\"\ncp -p \"$path\" \"$run$path\"\nrm -f \"$path\"\n",
    );
    s
}

/// Run a command under the node-wide pvegpu lock: an earlier, interrupted apply may still be
/// running `update-initramfs` there (a lost SSH session does not stop it), and two must not
/// run at once.
pub fn run_command(command: &str) -> String {
    format!(
        "set -eu\nexport LC_ALL=C\nif command -v flock >/dev/null; then exec flock -w 1800 /run/pvegpu.lock sh -c {} 2>&1; fi\nexec {command} 2>&1\n",
        quote(command)
    )
}

/// Reboot detached, so the SSH session ends cleanly before the machine goes down.
pub fn reboot() -> String {
    "set -eu\nif command -v systemd-run >/dev/null; then systemd-run --quiet --on-active=2 --timer-property=AccuracySec=100ms systemctl reboot; else (sleep 2; reboot) >/dev/null 2>&1 & fi\necho scheduled\n".to_string()
}

pub const BOOT_ID: &str = "cat /proc/sys/kernel/random/boot_id";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(b64(""), "");
        assert_eq!(b64("f"), "Zg==");
        assert_eq!(b64("fo"), "Zm8=");
        assert_eq!(b64("foo"), "Zm9v");
        assert_eq!(b64("vfio\nvfio_pci\n"), "dmZpbwp2ZmlvX3BjaQo=");
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quote("a'b"), r"'a'\''b'");
    }
}

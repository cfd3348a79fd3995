//! pvegpu's own known-hosts file for guests. A guest's key is recorded at first use, so it
//! must never land in the operator's `~/.ssh/known_hosts`, where it would vouch for that
//! address in every later `ssh` the operator types. A key that changes is read from ssh's own
//! message and shown beside the one recorded.

use crate::core::localfs::{LocalFsError, private_dir, state_dir};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// Where guests' host keys are kept: pvegpu's state folder (`guest_known_hosts`), or a file
/// named by the caller (tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestKeys {
    InStateDir,
    File(PathBuf),
}

/// A guest that answered with another key than the one recorded for its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedKey {
    /// As ssh names it in known_hosts (`10.0.0.5`, `[127.0.0.1]:2222`).
    pub host: String,
    pub offered: String,
    pub known: String,
    pub file: PathBuf,
    pub line: usize,
}

impl GuestKeys {
    pub const FILE_NAME: &str = "guest_known_hosts";

    /// The file, its folder made 0700 first.
    pub fn prepare(&self) -> Result<PathBuf, LocalFsError> {
        let file = match self {
            GuestKeys::File(f) => f.clone(),
            GuestKeys::InStateDir => state_dir()
                .ok_or_else(|| LocalFsError::Io {
                    path: PathBuf::from("~/.local/state/pvegpu"),
                    source: std::io::Error::other(
                        "no HOME, XDG_STATE_HOME or PVEGPU_STATE_DIR to keep guests' host keys in",
                    ),
                })?
                .join(Self::FILE_NAME),
        };
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            private_dir(dir)?;
        }
        Ok(file)
    }

    /// What ssh said when the key it was offered is not the one this file holds.
    pub fn changed_key(&self, ssh_said: &str) -> Option<ChangedKey> {
        let said = parse_changed(ssh_said)?;
        let recorded = std::fs::read_to_string(&said.file).ok()?;
        let known = recorded
            .lines()
            .nth(said.line.checked_sub(1)?)
            .and_then(line_fingerprint)?;
        Some(ChangedKey {
            host: said.host,
            offered: said.offered,
            known,
            file: said.file,
            line: said.line,
        })
    }
}

struct Said {
    host: String,
    offered: String,
    file: PathBuf,
    line: usize,
}

/// OpenSSH's "REMOTE HOST IDENTIFICATION HAS CHANGED" message (sshconnect.c): the fingerprint
/// of the key sent, the `Offending KEY key in FILE:LINE` line, and `Host key for HOST has
/// changed`.
fn parse_changed(ssh_said: &str) -> Option<Said> {
    if !ssh_said.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        return None;
    }
    let after = |marker: &str| {
        ssh_said
            .find(marker)
            .map(|i| ssh_said[i + marker.len()..].trim_start())
    };
    let offered = after("key sent by the remote host is")?
        .split_whitespace()
        .next()?
        .trim_end_matches('.')
        .to_string();
    let offending = ssh_said
        .lines()
        .find_map(|l| l.trim().strip_prefix("Offending "))?;
    let (file, line) = offending.split_once(" key in ")?.1.rsplit_once(':')?;
    let host = after("Host key for ")?
        .split_whitespace()
        .next()?
        .to_string();
    Some(Said {
        host,
        offered,
        file: PathBuf::from(file),
        line: line.trim().parse().ok()?,
    })
}

/// `SHA256:...` of one known_hosts line (`[@marker] hosts type base64 [comment]`), as
/// `ssh-keygen -l` prints it.
fn line_fingerprint(line: &str) -> Option<String> {
    use base64::Engine;
    let mut words = line.split_whitespace().skip_while(|w| w.starts_with('@'));
    let blob = words.nth(2)?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .ok()?;
    let digest = Sha256::digest(&key);
    Some(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenSSH's message (sshconnect.c, as 9.2 prints it), FILE standing for the file's path.
    const CHANGED: &str = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be eavesdropping on you right now (man-in-the-middle attack)!
It is also possible that a host key has just been changed.
The fingerprint for the ED25519 key sent by the remote host is
SHA256:vWm3QhZ5rWMaF0t9nqmb4hLRP0Q5qbXQpQ2n3RjvLxM.
Please contact your system administrator.
Add correct host key in FILE to get rid of this message.
Offending ED25519 key in FILE:2
  remove with:
  ssh-keygen -f 'FILE' -R '[127.0.0.1]:40123'
Host key for [127.0.0.1]:40123 has changed and you have requested strict checking.
Host key verification failed.";

    #[test]
    fn reads_both_fingerprints() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("k");
        // `ssh-keygen -lf` on this key (made by ssh-keygen 9.2) prints the fingerprint below
        std::fs::write(
            &file,
            "# comment\n[127.0.0.1]:40123 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDdN24E2txkmEm1xSgtSomGQOhNLnUC1R7ATbxT6fAv0\n",
        )
        .unwrap();
        let said = CHANGED.replace("FILE", file.to_str().unwrap());
        let c = GuestKeys::File(file.clone()).changed_key(&said).unwrap();
        assert_eq!(c.host, "[127.0.0.1]:40123");
        assert_eq!(
            c.offered,
            "SHA256:vWm3QhZ5rWMaF0t9nqmb4hLRP0Q5qbXQpQ2n3RjvLxM"
        );
        assert_eq!(c.line, 2);
        assert_eq!(c.file, file);
        assert_eq!(
            c.known,
            "SHA256:ye3uMQAbEpilTTKVQVvRJWXADjjtF9ZeM3Fn4NhE85w"
        );
        assert!(
            GuestKeys::File(file)
                .changed_key("Host key verification failed.")
                .is_none()
        );
    }
}

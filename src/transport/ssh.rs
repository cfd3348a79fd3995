//! OpenSSH through the `openssh` crate: the user's ~/.ssh/config, agent and known_hosts apply,
//! host keys are checked strictly, and the control master goes away with the session.

pub use super::guest_keys::GuestKeys;
use super::{Remote, RemoteOutput};
use crate::core::input::clip;
use crate::core::redact::for_log;
use openssh::{KnownHosts, Session, SessionBuilder};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// Nothing reached the node; safe to retry.
    #[error("cannot connect to {destination} over SSH: {detail}")]
    Connect {
        destination: String,
        detail: String,
        kind: ConnectFailure,
    },
    /// The connection broke while a command ran; the command may have run.
    #[error("SSH to {destination} failed while running a command: {detail}")]
    Run { destination: String, detail: String },
    /// The guest answered with another host key than the one recorded at first use.
    #[error(
        "the guest at {destination} offers host key {}, but pvegpu recorded {} for it ({}:{})",
        .changed.offered, .changed.known, .changed.file.display(), .changed.line
    )]
    GuestKeyChanged {
        destination: String,
        changed: super::guest_keys::ChangedKey,
    },
    #[error(transparent)]
    State(#[from] crate::core::localfs::LocalFsError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    HostKey,
    Auth,
    Unreachable,
    Other,
}

impl crate::core::error::Hint for SshError {
    fn hint(&self) -> Option<String> {
        match self {
            SshError::Connect {
                kind: ConnectFailure::HostKey,
                destination,
                ..
            } => Some(format!(
                "the host key of {destination} is unknown or has changed. If the node was reinstalled, verify its key out of band, then remove the old one with `ssh-keygen -R <host>` and connect once with `ssh {destination}` to record the new one"
            )),
            SshError::Connect {
                kind: ConnectFailure::Auth,
                destination,
                ..
            } => Some(format!(
                "check that your key is loaded (`ssh-add -l`) and that `ssh {destination}` logs in without a password"
            )),
            SshError::Connect {
                kind: ConnectFailure::Unreachable,
                destination,
                ..
            } => Some(format!(
                "check the address and port in the inventory and that `ssh {destination} true` works from this machine"
            )),
            SshError::GuestKeyChanged { changed, .. } => Some(format!(
                "a guest's key changes when its VM is re-created, and when something else answers at its address. If the VM was re-created, remove the old key with `ssh-keygen -f {} -R '{}'` and run again",
                changed.file.display(),
                changed.host
            )),
            SshError::State(e) => e.hint(),
            _ => None,
        }
    }
}

fn classify(detail: &str) -> ConnectFailure {
    let d = detail.to_ascii_lowercase();
    if d.contains("host key verification failed")
        || d.contains("remote host identification has changed")
        || d.contains("no matching host key")
    {
        ConnectFailure::HostKey
    } else if d.contains("permission denied") || d.contains("too many authentication failures") {
        ConnectFailure::Auth
    } else if d.contains("connection refused")
        || d.contains("timed out")
        || d.contains("could not resolve")
        || d.contains("no route to host")
        || d.contains("network is unreachable")
        || d.contains("connection closed")
    {
        ConnectFailure::Unreachable
    } else {
        ConnectFailure::Other
    }
}

/// The full text of an openssh error, including its sources (they carry ssh's own stderr).
fn error_text(e: &openssh::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    parts.dedup();
    parts.join(": ").trim().to_string()
}

pub struct SshRemote {
    destination: String,
    session: Session,
}

impl SshRemote {
    /// A Proxmox node: its host key must already be known.
    pub async fn connect(
        destination: &str,
        config_file: Option<PathBuf>,
    ) -> Result<Self, SshError> {
        Self::connect_with(destination, config_file, None).await
    }

    /// A VM pvegpu created: cloud-init made its host key at first boot, so the first
    /// connection records it (ssh's `accept-new`), in pvegpu's own known-hosts file (`keys`),
    /// never the operator's; a key that changes later stops the run with both fingerprints.
    pub async fn connect_guest(
        destination: &str,
        config_file: Option<PathBuf>,
        keys: &GuestKeys,
    ) -> Result<Self, SshError> {
        Self::connect_with(destination, config_file, Some(keys)).await
    }

    async fn connect_with(
        destination: &str,
        config_file: Option<PathBuf>,
        guest_keys: Option<&GuestKeys>,
    ) -> Result<Self, SshError> {
        let mut b = SessionBuilder::default();
        match guest_keys {
            None => b.known_hosts_check(KnownHosts::Strict),
            Some(keys) => b
                .known_hosts_check(KnownHosts::Add)
                .user_known_hosts_file(keys.prepare()?),
        };
        b.connect_timeout(Duration::from_secs(15))
            .server_alive_interval(Duration::from_secs(5))
            // the control socket lives in a private temporary folder removed on close
            .control_directory(std::env::temp_dir());
        if let Some(cfg) = config_file {
            b.config_file(cfg);
        }
        let session = b.connect_mux(destination).await.map_err(|e| {
            let detail = error_text(&e);
            if let Some(keys) = guest_keys
                && let Some(changed) = keys.changed_key(&detail)
            {
                return SshError::GuestKeyChanged {
                    destination: destination.to_string(),
                    changed,
                };
            }
            SshError::Connect {
                destination: destination.to_string(),
                kind: classify(&detail),
                detail,
            }
        })?;
        Ok(SshRemote {
            destination: destination.to_string(),
            session,
        })
    }

    pub async fn close(self) {
        let _ = self.session.close().await;
    }

    /// The multiplexing master's socket (`ssh -S <it> -O exit` drops the connection, as a
    /// network failure would).
    pub fn control_socket(&self) -> &std::path::Path {
        self.session.control_socket()
    }
}

impl SshRemote {
    /// `-vv`: the script itself, redacted.
    fn log_sending(&self, script: &str) {
        tracing::debug!(
            "ssh {}: script `{}`:\n{}",
            self.destination,
            script_name(script),
            for_log(script)
        );
    }

    /// `-v`: the script's name, size, exit status and time; `-vv`: its output, redacted.
    fn log_ran(&self, script: &str, output: &RemoteOutput, started: std::time::Instant) {
        let name = script_name(script);
        tracing::info!(
            "ssh {}: script `{name}` ({} bytes): exit {} in {} ms",
            self.destination,
            script.len(),
            output
                .status
                .map_or_else(|| "by signal".to_string(), |s| s.to_string()),
            started.elapsed().as_millis()
        );
        tracing::debug!(
            "ssh {}: script `{name}` stdout:\n{}\nstderr:\n{}",
            self.destination,
            for_log(&output.stdout),
            for_log(&output.stderr)
        );
    }
}

impl Remote for SshRemote {
    fn destination(&self) -> &str {
        &self.destination
    }

    async fn run_script_watched(
        &self,
        script: &str,
        watch: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<RemoteOutput, SshError> {
        self.log_sending(script);
        let started = std::time::Instant::now();
        let failed = |e: openssh::Error| SshError::Run {
            destination: self.destination.clone(),
            detail: error_text(&e),
        };
        let mut child = self
            .session
            .command("sh")
            .arg("-c")
            .arg(script)
            .stdin(openssh::Stdio::null())
            .stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped())
            .spawn()
            .await
            .map_err(failed)?;
        let (stdout, stderr) = (child.stdout().take(), child.stderr().take());
        let (stdout, stderr) = tokio::join!(read_lines(stdout, watch), read_lines(stderr, watch));
        let status = child.wait().await.map_err(failed)?;
        let output = RemoteOutput {
            status: status.code(),
            stdout,
            stderr,
        };
        self.log_ran(script, &output, started);
        Ok(output)
    }

    async fn run_script(&self, script: &str) -> Result<RemoteOutput, SshError> {
        let name = script_name(script);
        self.log_sending(script);
        let started = std::time::Instant::now();
        let out = self
            .session
            .command("sh")
            .arg("-c")
            .arg(script)
            .output()
            .await
            .map_err(|e| SshError::Run {
                destination: self.destination.clone(),
                detail: error_text(&e),
            });
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                tracing::info!(
                    "ssh {}: script `{name}` ({} bytes): {e}",
                    self.destination,
                    script.len()
                );
                return Err(e);
            }
        };
        let output = RemoteOutput {
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        self.log_ran(script, &output, started);
        Ok(output)
    }
}

/// Everything `stream` says, each line told to `watch` as it comes (a line ends at `\n` or, for
/// progress bars such as apt's, `\r`).
async fn read_lines<R: tokio::io::AsyncRead + Unpin>(
    stream: Option<R>,
    watch: &(dyn Fn(&str) + Send + Sync),
) -> String {
    use tokio::io::AsyncReadExt;
    let Some(mut stream) = stream else {
        return String::new();
    };
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    let mut line_start = 0;
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
        while let Some(end) = all[line_start..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
        {
            watch(&String::from_utf8_lossy(&all[line_start..line_start + end]));
            line_start += end + 1;
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// A script's name for the log: its `# pvegpu ...` comment, else its first command line.
fn script_name(script: &str) -> String {
    let lines = script.lines().map(str::trim).filter(|l| !l.is_empty());
    let named = lines
        .clone()
        .find(|l| l.starts_with("# pvegpu"))
        .map(|l| l.trim_start_matches('#').trim());
    let first = || lines.clone().find(|l| !l.starts_with('#')).unwrap_or("");
    clip(named.unwrap_or_else(first)).into_owned()
}

/// Whose host key is trusted how: a Proxmox node's must be known already; a VM pvegpu created
/// made its key at first boot, so the first connection records it in pvegpu's own file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyTrust {
    Known,
    FirstUse(GuestKeys),
}

/// OpenSSH connections to one destination, for the executors.
#[derive(Debug, Clone)]
pub struct SshConnector {
    pub destination: String,
    pub ssh_config: Option<PathBuf>,
    pub trust: HostKeyTrust,
}

impl SshConnector {
    pub fn node(destination: impl Into<String>, ssh_config: Option<PathBuf>) -> Self {
        SshConnector {
            destination: destination.into(),
            ssh_config,
            trust: HostKeyTrust::Known,
        }
    }

    pub fn guest(
        destination: impl Into<String>,
        ssh_config: Option<PathBuf>,
        keys: GuestKeys,
    ) -> Self {
        SshConnector {
            destination: destination.into(),
            ssh_config,
            trust: HostKeyTrust::FirstUse(keys),
        }
    }
}

impl super::Connector for SshConnector {
    type Remote = SshRemote;

    async fn connect(&self) -> anyhow::Result<SshRemote> {
        use anyhow::Context;
        let config = self.ssh_config.clone();
        match &self.trust {
            HostKeyTrust::Known => SshRemote::connect(&self.destination, config)
                .await
                .with_context(|| format!("cannot reach {}", self.destination)),
            HostKeyTrust::FirstUse(keys) => {
                SshRemote::connect_guest(&self.destination, config, keys)
                    .await
                    .with_context(|| format!("cannot reach the guest at {}", self.destination))
            }
        }
    }

    async fn close(&self, remote: SshRemote) {
        remote.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_messages_map_to_hints() {
        assert_eq!(
            classify("Host key verification failed."),
            ConnectFailure::HostKey
        );
        assert_eq!(
            classify("ssh: connect to host 127.0.0.1 port 1: Connection refused"),
            ConnectFailure::Unreachable
        );
        assert_eq!(
            classify("root@x: Permission denied (publickey)."),
            ConnectFailure::Auth
        );
    }
}

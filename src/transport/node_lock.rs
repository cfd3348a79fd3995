//! One `apply` per node at a time, for the whole run. The lock lives on the node, so two
//! workstations see it: a root-only `flock` on `/run/pvegpu/apply.lock`, held by a shell that
//! its own `ssh` process keeps open, with the holder's details beside it. That shell lets go
//! when the workstation's end goes away: pvegpu closes the pipe when it is done, the kernel
//! closes it when pvegpu is killed, and a workstation that vanished without closing (a crash,
//! a cable) stops the heartbeat, which the shell notices after [`SILENCE_S`] seconds. A reboot
//! of the node drops the lock with everything else; it is taken again as soon as the node
//! answers, and if someone else took it in between, [`NodeLock::confirm`] says so and the run
//! stops.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// The heartbeat's period, and how long the node waits without one before it lets go.
const HEARTBEAT: Duration = Duration::from_secs(20);
pub const SILENCE_S: u32 = 90;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another pvegpu apply holds {node}: {holder}")]
    Held { node: String, holder: String },
    #[error("{node} changed hands while this apply was waiting for it: {holder}")]
    Lost { node: String, holder: String },
    #[error("cannot lock {node} for this apply: {detail}")]
    Failed { node: String, detail: String },
}

impl crate::core::error::Hint for LockError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            LockError::Held { .. } => format!(
                "wait for that apply to finish, then run again; a run that was killed or whose workstation is gone lets go within {SILENCE_S} s"
            ),
            LockError::Lost { .. } => {
                "nothing more was changed; when that apply is done, run `pvegpu apply` again: it continues from what the node is now".into()
            }
            LockError::Failed { .. } => {
                "the lock needs `flock` and `timeout` on the node (util-linux and coreutils, on every Proxmox VE) and a root shell over SSH".into()
            }
        })
    }
}

/// The shell that holds the lock: `locked` once it has it, else `held` and the holder's
/// details. It then reads the heartbeat until it stops or ends.
fn holder_script(holder: &str) -> String {
    format!(
        "set -u\numask 077\nmkdir -p /run/pvegpu\nexec 9>>/run/pvegpu/apply.lock\n\
         if ! flock -n 9; then echo held; cat /run/pvegpu/apply.holder 2>/dev/null; exit 75; fi\n\
         printf '%s, since %s\\n' {} \"$(date -u '+%Y-%m-%d %H:%M:%S UTC')\" > /run/pvegpu/apply.holder\necho locked\n\
         while b=$(timeout {SILENCE_S} head -c 1) && [ -n \"$b\" ]; do :; done\n\
         rm -f /run/pvegpu/apply.holder\n",
        crate::core::scripts::quote(holder)
    )
}

/// Where the lock stands while the run goes on.
#[derive(Debug, Clone)]
enum Standing {
    Held,
    /// The shell that held it is gone (the node rebooted); taking it again.
    Retaking,
    Lost(String),
}

pub struct NodeLock {
    node: String,
    standing: Arc<Mutex<Standing>>,
    keeper: tokio::task::JoinHandle<()>,
}

struct Holding {
    child: Child,
}

/// The node's SSH, as [`super::ssh::SshRemote`] reaches it, in a process of its own: its
/// stdin is the pipe whose end lets the lock go.
fn ssh_command(destination: &str, ssh_config: Option<&PathBuf>, script: &str) -> Command {
    let mut c = Command::new("ssh");
    if let Some(cfg) = ssh_config {
        c.arg("-F").arg(cfg);
    }
    c.args([
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "ControlMaster=no",
        "-o",
        "ControlPath=none",
        "-o",
        "ConnectTimeout=15",
        "-o",
        "ServerAliveInterval=5",
        "-T",
        destination,
        "--",
    ])
    .arg(format!("sh -c {}", crate::core::scripts::quote(script)))
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    c
}

/// One attempt: the lock held (and the shell holding it), or who holds it.
async fn attempt(
    node: &str,
    destination: &str,
    ssh_config: Option<&PathBuf>,
    holder: &str,
) -> Result<Holding, LockError> {
    let failed = |detail: String| LockError::Failed {
        node: node.to_string(),
        detail,
    };
    let mut child = ssh_command(destination, ssh_config, &holder_script(holder))
        .spawn()
        .map_err(|e| failed(format!("cannot run ssh: {e}")))?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    match lines.next_line().await {
        Ok(Some(l)) if l == "locked" => Ok(Holding { child }),
        Ok(Some(l)) if l == "held" => {
            let mut text = Vec::new();
            while let Ok(Some(l)) = lines.next_line().await {
                text.push(l);
            }
            let holder = match text.join(" ") {
                t if t.trim().is_empty() => "(its details are not written yet)".to_string(),
                t => t,
            };
            Err(LockError::Held {
                node: node.to_string(),
                holder,
            })
        }
        _ => {
            let out = child.wait_with_output().await;
            let stderr = out
                .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
                .unwrap_or_default();
            Err(failed(if stderr.is_empty() {
                "the node did not answer the lock".into()
            } else {
                stderr
            }))
        }
    }
}

impl NodeLock {
    /// Take the lock of `node` or say who holds it. `holder` is what a refused run is shown.
    pub async fn acquire(
        node: &str,
        destination: &str,
        ssh_config: Option<PathBuf>,
        holder: String,
    ) -> Result<NodeLock, LockError> {
        let first = attempt(node, destination, ssh_config.as_ref(), &holder).await?;
        let standing = Arc::new(Mutex::new(Standing::Held));
        let keeper = tokio::spawn(keep(
            first,
            node.to_string(),
            destination.to_string(),
            ssh_config,
            holder,
            standing.clone(),
        ));
        Ok(NodeLock {
            node: node.to_string(),
            standing,
            keeper,
        })
    }

    /// Whether this run still holds the node: after a reboot, once the lock is taken again
    /// (two minutes at most), or an error naming who took it meanwhile.
    pub async fn confirm(&self) -> Result<(), LockError> {
        for _ in 0..120 {
            let now = self
                .standing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            match now {
                Standing::Held => return Ok(()),
                Standing::Lost(holder) => {
                    return Err(LockError::Lost {
                        node: self.node.clone(),
                        holder,
                    });
                }
                Standing::Retaking => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
        Err(LockError::Failed {
            node: self.node.clone(),
            detail: "the node has not answered the lock since its connection ended".into(),
        })
    }

    /// Let go now: the pipe closes and the node's shell ends.
    pub fn release(self) {
        self.keeper.abort();
    }
}

impl Drop for NodeLock {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// Beat while the shell holds the lock; when it is gone (the node rebooted, the network
/// broke), take the lock again as soon as the node answers.
async fn keep(
    mut holding: Holding,
    node: String,
    destination: String,
    ssh_config: Option<PathBuf>,
    holder: String,
    standing: Arc<Mutex<Standing>>,
) {
    loop {
        let mut stdin = holding.child.stdin.take();
        loop {
            let beat = match stdin.as_mut() {
                Some(s) => s.write_all(b".").await.and(s.flush().await).is_ok(),
                None => false,
            };
            if !beat || holding.child.try_wait().ok().flatten().is_some() {
                break;
            }
            tokio::time::sleep(HEARTBEAT).await;
        }
        tracing::info!("{node}: the apply lock's connection ended; taking the lock again");
        *standing.lock().unwrap_or_else(|e| e.into_inner()) = Standing::Retaking;
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            match attempt(&node, &destination, ssh_config.as_ref(), &holder).await {
                Ok(h) => {
                    holding = h;
                    *standing.lock().unwrap_or_else(|e| e.into_inner()) = Standing::Held;
                    break;
                }
                Err(LockError::Held { holder, .. }) => {
                    *standing.lock().unwrap_or_else(|e| e.into_inner()) = Standing::Lost(holder);
                    return;
                }
                Err(_) => continue,
            }
        }
    }
}

/// What a refused run is told about this one: who, from where, doing what (the node adds
/// since when, by its clock).
pub fn holder_details(command: &str) -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "someone".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "a workstation".into());
    format!("`{command}` by {user}@{host} (pid {})", std::process::id())
}

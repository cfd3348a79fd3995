//! How pvegpu reaches a node's shell. The planner never sees this: it gets facts.
//!
//! [`Remote`] runs a script (`run_script_watched` also tells each output line as it comes,
//! which executors show as the step's last line); [`Connector`] connects, and again after a
//! reboot. Executors send scripts through [`run_counted`] and [`run_watched_counted`], which
//! count each as a round trip in their report ([`RemoteCost`]); [`RemoteOutput::succeeded`]
//! turns a non-zero exit into the step's error.

pub mod guest_keys;
pub mod node_lock;
pub mod reboot;
pub mod ssh;

use std::future::Future;

#[derive(Debug, Clone)]
pub struct RemoteOutput {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl RemoteOutput {
    /// The output (stdout, then stderr) of a script that exited 0. Otherwise an error naming
    /// the exit status, with `shown` of the output.
    pub fn succeeded(self, shown: impl FnOnce(&str) -> String) -> anyhow::Result<String> {
        let text = format!("{}{}", self.stdout, self.stderr);
        match self.status {
            Some(0) => Ok(text),
            Some(n) => anyhow::bail!("exit status {n}: {}", shown(&text)),
            None => anyhow::bail!("exit status none (killed): {}", shown(&text)),
        }
    }
}

/// A node's shell, reached somehow. Implementations: [`ssh::SshRemote`] (OpenSSH) and, in
/// tests, anything that answers a script with recorded output.
pub trait Remote {
    fn destination(&self) -> &str;
    /// Run a POSIX shell script on the node and collect its output.
    fn run_script(
        &self,
        script: &str,
    ) -> impl Future<Output = Result<RemoteOutput, ssh::SshError>> + Send;

    /// [`Remote::run_script`], telling `watch` each line of output as it comes, so progress
    /// can show the last one (update-initramfs, apt, DKMS). By default the lines are told
    /// once the script has ended.
    fn run_script_watched(
        &self,
        script: &str,
        watch: &(dyn Fn(&str) + Send + Sync),
    ) -> impl Future<Output = Result<RemoteOutput, ssh::SshError>> + Send
    where
        Self: Sync,
    {
        async move {
            let out = self.run_script(script).await?;
            out.stdout.lines().chain(out.stderr.lines()).for_each(watch);
            Ok(out)
        }
    }
}

/// Where an executor counts what it cost: its report. Every script sent is one SSH round trip.
pub trait RemoteCost {
    fn ssh_round_trip(&mut self);
    /// A reboot scheduled, counted whether or not the machine came back.
    fn reboot(&mut self);
}

impl RemoteCost for crate::core::outcome::ApplyReport {
    fn ssh_round_trip(&mut self) {
        self.ssh_round_trips += 1;
    }
    fn reboot(&mut self) {
        self.reboots += 1;
    }
}

/// [`Remote::run_script`], counted as one round trip.
pub async fn run_counted<R: Remote>(
    cost: &mut impl RemoteCost,
    remote: &R,
    script: &str,
) -> Result<RemoteOutput, ssh::SshError> {
    cost.ssh_round_trip();
    remote.run_script(script).await
}

/// [`Remote::run_script_watched`], counted as one round trip.
pub async fn run_watched_counted<R: Remote + Sync>(
    cost: &mut impl RemoteCost,
    remote: &R,
    script: &str,
    watch: &(dyn Fn(&str) + Send + Sync),
) -> Result<RemoteOutput, ssh::SshError> {
    cost.ssh_round_trip();
    remote.run_script_watched(script, watch).await
}

/// Opens a connection to a machine (again after each reboot) and closes one. Executors hold a
/// connector rather than a connection, so tests hand them a fake.
pub trait Connector {
    type Remote: Remote;
    fn connect(&self) -> impl Future<Output = anyhow::Result<Self::Remote>>;
    fn close(&self, remote: Self::Remote) -> impl Future<Output = ()>;
}

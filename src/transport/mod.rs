//! How pvegpu reaches a node's shell. The planner never sees this: it gets facts.

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

/// Opens a connection to a machine (again after each reboot) and closes one. Executors hold a
/// connector rather than a connection, so tests hand them a fake.
pub trait Connector {
    type Remote: Remote;
    fn connect(&self) -> impl Future<Output = anyhow::Result<Self::Remote>>;
    fn close(&self, remote: Self::Remote) -> impl Future<Output = ()>;
}

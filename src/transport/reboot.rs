//! One reboot-and-wait for every machine pvegpu reboots (a Proxmox node, a guest): schedule
//! the reboot detached and check that it was scheduled, drop the connection, then poll with
//! fresh connections until `/proc/sys/kernel/random/boot_id` changes. A new boot_id, not a
//! connection that answers, is the proof: a node whose reboot failed to start answers too.

use crate::core::error::hinted;
use crate::core::progress::Progress;
use crate::core::scripts;
use crate::transport::{Connector, Remote, RemoteCost, run_counted};
use anyhow::Result;
use std::time::{Duration, Instant};

/// How a reboot is waited for, and how it is told.
pub struct RebootWait<'a> {
    /// The name progress lines start with (`osm45`, `osm45/guest`).
    pub name: &'a str,
    /// The machine as an error message names it (`osm45`, `guest osm45/guest`).
    pub subject: &'a str,
    pub timeout: Duration,
    /// Before the first poll and between polls.
    pub poll_interval: Duration,
    /// What to do when the machine does not come back in time.
    pub timeout_hint: &'a str,
    /// Wraps a script that must run as root (a guest is reached as a sudo user).
    pub as_root: fn(&str) -> String,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const BOOT_ID_TIMEOUT: Duration = Duration::from_secs(20);

/// Reboot the machine behind `remote` and return a connection to its new boot. `old_boot_id`
/// is the boot_id the facts showed; when unknown it is read first.
pub async fn reboot_and_wait<C: Connector, P: Progress>(
    connector: &C,
    remote: C::Remote,
    old_boot_id: Option<&str>,
    wait: &RebootWait<'_>,
    progress: &P,
    cost: &mut impl RemoteCost,
) -> Result<C::Remote> {
    let old = match old_boot_id {
        Some(id) => id.to_string(),
        None => {
            let out = run_counted(cost, &remote, scripts::BOOT_ID).await;
            match out {
                Ok(o) => o.stdout.trim().to_string(),
                Err(e) => {
                    connector.close(remote).await;
                    return Err(e.into());
                }
            }
        }
    };
    let scheduled = run_counted(cost, &remote, &(wait.as_root)(&scripts::reboot())).await;
    connector.close(remote).await;
    let out = scheduled?;
    // a reboot that was not scheduled would be waited for until the timeout, then blamed on
    // the machine not coming back
    if out.status != Some(0) {
        anyhow::bail!(
            "scheduling the reboot of {} failed (exit {}): {}",
            wait.subject,
            out.status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "none (killed)".into()),
            format!("{}{}", out.stdout, out.stderr).trim()
        );
    }
    cost.reboot();
    wait_for_new_boot(connector, &old, wait, progress, cost).await
}

async fn wait_for_new_boot<C: Connector, P: Progress>(
    connector: &C,
    old: &str,
    wait: &RebootWait<'_>,
    progress: &P,
    cost: &mut impl RemoteCost,
) -> Result<C::Remote> {
    let started = Instant::now();
    let deadline = started + wait.timeout;
    // dropped on a timeout, which closes it as not done
    let task = progress.begin(&format!(
        "{}: waiting for the reboot (up to {} s)",
        wait.name,
        wait.timeout.as_secs()
    ));
    tokio::time::sleep(wait.poll_interval).await;
    loop {
        let waited = started.elapsed().as_secs();
        if Instant::now() > deadline {
            return Err(hinted(
                format!(
                    "{} did not come back within {} s after the reboot",
                    wait.subject,
                    wait.timeout.as_secs()
                ),
                wait.timeout_hint,
            ));
        }
        if let Ok(Ok(r)) = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect()).await {
            cost.ssh_round_trip();
            if let Ok(Ok(out)) =
                tokio::time::timeout(BOOT_ID_TIMEOUT, r.run_script(scripts::BOOT_ID)).await
            {
                let id = out.stdout.trim();
                if !id.is_empty() && id != old {
                    task.done(true);
                    progress.say(&format!("{}: back after {waited} s (new boot)", wait.name));
                    return Ok(r);
                }
            }
            connector.close(r).await;
        }
        tokio::time::sleep(wait.poll_interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::RemoteOutput;
    use crate::transport::ssh::SshError;
    use std::sync::Mutex;

    /// A machine whose boot_id changes when a reboot is scheduled, after `down_polls`
    /// connections refused; `schedule_status` is what scheduling the reboot exits with.
    #[derive(Debug)]
    struct Machine {
        boot_id: Mutex<String>,
        down_polls: Mutex<u32>,
        schedule_status: i32,
        rebooting: Mutex<bool>,
        scripts: Mutex<Vec<String>>,
    }

    #[derive(Debug)]
    struct Conn<'a>(&'a Machine);

    impl Remote for Conn<'_> {
        fn destination(&self) -> &str {
            "node"
        }
        async fn run_script(&self, script: &str) -> Result<RemoteOutput, SshError> {
            let m = self.0;
            m.scripts.lock().unwrap().push(script.to_string());
            let stdout = if script == scripts::BOOT_ID {
                format!("{}\n", m.boot_id.lock().unwrap())
            } else {
                *m.rebooting.lock().unwrap() = m.schedule_status == 0;
                String::new()
            };
            Ok(RemoteOutput {
                status: Some(if script == scripts::BOOT_ID {
                    0
                } else {
                    m.schedule_status
                }),
                stdout,
                stderr: "Failed to start transient timer unit".into(),
            })
        }
    }

    impl<'a> Connector for &'a Machine {
        type Remote = Conn<'a>;
        async fn connect(&self) -> anyhow::Result<Conn<'a>> {
            let m: &'a Machine = self;
            if *m.rebooting.lock().unwrap() {
                let mut down = m.down_polls.lock().unwrap();
                if *down > 0 {
                    *down -= 1;
                    anyhow::bail!("connection refused");
                }
                *m.boot_id.lock().unwrap() = "new-boot".into();
                *m.rebooting.lock().unwrap() = false;
            }
            Ok(Conn(m))
        }
        async fn close(&self, _: Conn<'a>) {}
    }

    fn machine(schedule_status: i32, down_polls: u32) -> Machine {
        Machine {
            boot_id: Mutex::new("old-boot".into()),
            down_polls: Mutex::new(down_polls),
            schedule_status,
            rebooting: Mutex::new(false),
            scripts: Mutex::new(Vec::new()),
        }
    }

    struct Said(Mutex<Vec<String>>);
    impl Progress for Said {
        fn say(&self, line: &str) {
            self.0.lock().unwrap().push(line.to_string());
        }
    }

    fn wait(timeout_ms: u64) -> RebootWait<'static> {
        RebootWait {
            name: "node",
            subject: "node",
            timeout: Duration::from_millis(timeout_ms),
            poll_interval: Duration::from_millis(1),
            timeout_hint: "check the console",
            as_root: |s| format!("sudo -n sh -c '{s}'"),
        }
    }

    #[tokio::test]
    async fn waits_through_refused_connections_for_a_new_boot_id() {
        let m = machine(0, 3);
        let said = Said(Mutex::new(Vec::new()));
        let mut cost = crate::core::outcome::ApplyReport::default();
        let first = (&m).connect().await.unwrap();
        let back = reboot_and_wait(&&m, first, None, &wait(60_000), &said, &mut cost)
            .await
            .unwrap();
        assert_eq!(
            back.run_script(scripts::BOOT_ID).await.unwrap().stdout,
            "new-boot\n"
        );
        assert_eq!(cost.reboots, 1);
        // the old boot_id read, the reboot scheduled, then the poll that found the new boot
        assert_eq!(cost.ssh_round_trips, 3);
        let sent = m.scripts.lock().unwrap();
        assert!(sent[1].starts_with("sudo -n sh -c"), "{sent:?}");
        assert!(
            said.0
                .lock()
                .unwrap()
                .last()
                .unwrap()
                .contains("back after")
        );
    }

    #[tokio::test]
    async fn a_reboot_that_was_not_scheduled_fails_at_once() {
        let m = machine(1, 0);
        let said = Said(Mutex::new(Vec::new()));
        let mut cost = crate::core::outcome::ApplyReport::default();
        let first = (&m).connect().await.unwrap();
        let err = reboot_and_wait(
            &&m,
            first,
            Some("old-boot"),
            &wait(60_000),
            &said,
            &mut cost,
        )
        .await
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("scheduling the reboot of node failed (exit 1)"),
            "{text}"
        );
        assert!(text.contains("transient timer"), "{text}");
        assert_eq!(cost.reboots, 0);
        assert!(said.0.lock().unwrap().is_empty(), "nothing was waited for");
    }

    #[tokio::test]
    async fn a_machine_that_does_not_come_back_is_an_error_with_the_hint() {
        let m = machine(0, u32::MAX);
        let said = Said(Mutex::new(Vec::new()));
        let mut cost = crate::core::outcome::ApplyReport::default();
        let first = (&m).connect().await.unwrap();
        let err = reboot_and_wait(&&m, first, Some("old-boot"), &wait(30), &said, &mut cost)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("did not come back within 0 s"),
            "{err}"
        );
        let rendered = crate::core::error::render(
            &err,
            &[crate::core::error::hint_of::<crate::core::error::Hinted>],
        );
        assert!(rendered.contains("hint: check the console"), "{rendered}");
        assert_eq!(cost.reboots, 1);
    }
}

//! The guest executor: runs a [`GuestPlan`] inside the VM over any
//! [`Remote`](crate::transport::Remote), one script per change, in order, stopping at the
//! first failure with that step's output. Writes are the host executor's (`core::scripts`:
//! expected content checked, backup, temporary file and rename, read back); commands run as root under pvegpu's lock, with apt non-interactive and
//! waiting for dpkg's lock; the reboot is scheduled detached and waited for by a new boot_id
//! over fresh connections. After a reboot the guest is gathered and planned again (what needs
//! the loaded driver, the Triton unit and the CDI spec, is planned only then), and the last
//! plan must be empty.

use super::facts::GuestFacts;
use super::gather::{self, as_root};
use super::planner::{self, GuestPlan};
use crate::core::check::{Check, Layer};
use crate::core::error::hinted;
use crate::core::outcome::{StepOutcome, tail};
use crate::core::plan::{Action, Change};
use crate::core::progress::{Progress, Task, begin_step};
use crate::core::scripts;
use crate::inventory::guest::GuestSpec;
use crate::transport::reboot::{RebootWait, reboot_and_wait};
use crate::transport::{Connector, RemoteCost, RemoteOutput, run_counted, run_watched_counted};
use anyhow::Result;
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct GuestOptions {
    pub reboot_timeout: Duration,
    /// Between polls for the new boot_id (and before the first).
    pub poll_interval: Duration,
    /// Plans applied at most: the first, and one more after each reboot.
    pub max_passes: usize,
    /// How long a step whose connection dropped is waited for over new connections.
    pub reconnect_timeout: Duration,
}

impl Default for GuestOptions {
    fn default() -> Self {
        GuestOptions {
            reboot_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(5),
            max_passes: 3,
            reconnect_timeout: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Serialize, Default)]
pub struct GuestReport {
    pub guest: String,
    pub steps: Vec<StepOutcome>,
    pub reboots: u32,
    /// Plans applied (a fresh guest: the first, then the one after the reboot).
    pub passes: u32,
    pub ssh_round_trips: u32,
    pub postconditions: Vec<Check>,
    pub seconds: f64,
    pub ok: bool,
}

impl RemoteCost for GuestReport {
    fn ssh_round_trip(&mut self) {
        self.ssh_round_trips += 1;
    }
    fn reboot(&mut self) {
        self.reboots += 1;
    }
}

/// apt and dpkg never ask: no debconf prompts, no needrestart menu, the admin's changed
/// config files kept, and a dpkg lock held by unattended-upgrades (usual on a first boot)
/// waited for instead of failing.
const APT_ENV: &str = "export DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a APT_LISTCHANGES_FRONTEND=none\n\
mkdir -p /run/pvegpu\n\
printf '%s\\n' 'DPkg::Lock::Timeout \"600\";' 'Dpkg::Options { \"--force-confdef\"; \"--force-confold\"; };' > /run/pvegpu/apt.conf\n\
export APT_CONFIG=/run/pvegpu/apt.conf\n";

/// A reason of the reboot just done that the plan made after it gives again, or a driver
/// still not loaded, whatever the reboot was for.
fn still_after_reboot(done: &str, plan: &GuestPlan) -> Option<String> {
    let again = plan.changes.iter().find(|c| c.action == Action::Reboot)?;
    let before: Vec<&str> = done.split("; ").collect();
    let left: Vec<&str> = again
        .reason
        .split("; ")
        .filter(|r| before.contains(r) || r.starts_with(planner::NOT_LOADED))
        .collect();
    (!left.is_empty()).then(|| left.join("; "))
}

/// `text` without the wait's [`LOG_LINE`]s.
fn without_log_lines(text: &str) -> String {
    text.split_inclusive('\n')
        .filter(|l| !l.starts_with(LOG_LINE))
        .collect()
}

/// The script for one change (a reboot is not a change script).
pub fn change_script(run_id: &str, change: &Change) -> Option<String> {
    Some(match &change.action {
        Action::WriteFile {
            path,
            content,
            mode,
            before,
        } => as_root(&scripts::write_file(
            run_id,
            path,
            content,
            mode,
            before.as_deref(),
            &[],
        )),
        Action::RemoveFile { path, .. } => as_root(&scripts::remove_file(run_id, path)),
        Action::Run { command } => as_root(&detached(
            &step_id(run_id, &change.step),
            &format!("{APT_ENV}{}", scripts::run_command(command)),
        )),
        Action::Reboot => return None,
    })
}

/// Where a detached step keeps its script, pid, log and exit status on the guest.
pub const STEPS_DIR: &str = "/var/lib/pvegpu/steps";

/// One step's name on the guest: the run and the plan's step id (a step runs once a pass;
/// a later pass, after a reboot, may run it again under the same name, which restarts it).
pub fn step_id(run_id: &str, step: &str) -> String {
    let clean: String = step
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{run_id}-{clean}")
}

/// Start `script` detached from the SSH session (a systemd unit, else its own session), then
/// wait for it. A command that runs for minutes (apt, a DKMS build) must neither die with a
/// dropped connection, which would leave dpkg half-configured, nor lose its result: the exit
/// status lands in a file, which [`wait_script`] reads over a new connection.
pub fn detached(id: &str, script: &str) -> String {
    let d = STEPS_DIR;
    // the runner names its files literally: systemd expands `$` in a unit's command line
    let runner = format!(
        "umask 077\necho $$ > {d}/{id}.pid\nsh {d}/{id}.sh > {d}/{id}.log 2>&1\necho $? > {d}/{id}.rc.new\nmv {d}/{id}.rc.new {d}/{id}.rc\n"
    );
    // both files travel as base64, like file contents: no text in them can end a heredoc
    // early and run outside the unit; the folder is the owner's before anything is in it
    format!(
        "set -eu\numask 077\nd={d}; id={id}\nmkdir -p \"$d\"\nchmod 0700 \"$d\" \"$(dirname \"$d\")\"\n\
         find \"$d\" -type f -mtime +30 -delete 2>/dev/null || true\n\
         rm -f \"$d/$id.rc\" \"$d/$id.pid\"\n\
         printf '%s' {} | base64 -d > \"$d/$id.sh\"\n\
         printf '%s' {} | base64 -d > \"$d/$id.run\"\n\
         if command -v systemd-run >/dev/null 2>&1 && [ -d /run/systemd/system ]; then\n\
         \x20 systemd-run --quiet --collect --unit=\"pvegpu-step-$id-$$\" sh \"$d/$id.run\"\n\
         else\n\
         \x20 setsid sh \"$d/$id.run\" </dev/null >/dev/null 2>&1 &\n\
         fi\n{WAIT_BODY}",
        scripts::quote(&scripts::b64(script)),
        scripts::quote(&scripts::b64(&runner)),
    )
}

/// Wait for a detached step and answer with its log's tail and its exit status.
pub fn wait_script(id: &str) -> String {
    format!("set -eu\nd={STEPS_DIR}; id={id}\n{WAIT_BODY}")
}

/// Marks the step log's newest line, which the wait prints on stderr as it changes, for the
/// progress display; the executor takes these lines out of the step's output.
pub const LOG_LINE: &str = "pvegpu-step-log: ";

/// The pid file appears once the runner starts; a runner gone without a status (killed, a
/// reboot) fails the step instead of waiting forever. Meanwhile the log's newest line goes to
/// stderr behind [`LOG_LINE`] whenever it changes. Most steps (a write, `apt-mark hold`) end
/// within a fraction of a second, so the first 20 polls are a tenth of a second apart (where
/// `sleep` takes fractions, as coreutils' and busybox's do), the rest a second.
const WAIT_BODY: &str = "n=0; p=0; seen=\n\
     while [ ! -e \"$d/$id.rc\" ]; do\n\
     \x20 now=$(tail -n 1 \"$d/$id.log\" 2>/dev/null | tr '\\r' '\\n' | tail -n 1 | cut -c 1-200) || now=\n\
     \x20 [ \"$now\" = \"$seen\" ] || { seen=$now; echo \"pvegpu-step-log: $now\" >&2; }\n\
     \x20 if [ -e \"$d/$id.pid\" ]; then\n\
     \x20   if ! kill -0 \"$(cat \"$d/$id.pid\")\" 2>/dev/null && [ ! -e \"$d/$id.rc\" ]; then\n\
     \x20     sleep 1; [ -e \"$d/$id.rc\" ] && break\n\
     \x20     tail -n 40 \"$d/$id.log\" 2>/dev/null || true\n\
     \x20     echo \"pvegpu: step $id ended without an exit status (killed, or the guest restarted); its log is $d/$id.log\"\n\
     \x20     exit 125\n\
     \x20   fi\n\
     \x20 else\n\
     \x20   n=$((n+1)); [ $n -gt 80 ] && { echo \"pvegpu: step $id did not start\"; exit 125; }\n\
     \x20 fi\n\
     \x20 p=$((p+1)); if [ $p -le 20 ]; then sleep 0.1 2>/dev/null || sleep 1; else sleep 1; fi\n\
     done\n\
     tail -n 200 \"$d/$id.log\"\n\
     exit \"$(cat \"$d/$id.rc\")\"\n";

pub struct GuestExecutor<'a, P: Progress, C: Connector> {
    pub guest: &'a str,
    pub spec: &'a GuestSpec,
    pub options: GuestOptions,
    pub progress: &'a P,
    pub connector: C,
    pub run_id: String,
    pub report: GuestReport,
}

impl<'a, P: Progress, C: Connector> GuestExecutor<'a, P, C>
where
    C::Remote: Sync,
{
    pub fn new(
        guest: &'a str,
        spec: &'a GuestSpec,
        options: GuestOptions,
        progress: &'a P,
        connector: C,
    ) -> Self {
        GuestExecutor {
            guest,
            spec,
            options,
            progress,
            connector,
            run_id: crate::core::outcome::run_id(),
            report: GuestReport {
                guest: guest.to_string(),
                ..GuestReport::default()
            },
        }
    }

    fn model_repository(&self) -> Option<&str> {
        self.spec
            .triton
            .as_ref()
            .map(|t| t.model_repository.as_str())
    }

    /// A step's script: the log lines its wait reports become the task's last line, and
    /// leave the output.
    async fn watched(
        &mut self,
        remote: &C::Remote,
        script: &str,
        task: &Task,
    ) -> Result<RemoteOutput> {
        let show = task.watcher();
        let watch = move |line: &str| {
            if let Some(log) = line.strip_prefix(LOG_LINE) {
                show(log);
            }
        };
        let mut out = run_watched_counted(&mut self.report, remote, script, &watch).await?;
        out.stderr = without_log_lines(&out.stderr);
        Ok(out)
    }

    pub async fn gather(&mut self, remote: &C::Remote) -> Result<GuestFacts> {
        self.report.ssh_round_trips += 1;
        Ok(gather::probe(self.guest, remote, self.model_repository())
            .await?
            .facts)
    }

    /// Apply `plan` (made from `facts`), re-plan after each reboot and apply that too, then
    /// check that a fresh plan is empty. The facts of the guest at the end.
    pub async fn execute(&mut self, plan: &GuestPlan, facts: &GuestFacts) -> Result<GuestFacts> {
        let started = Instant::now();
        let result = self.passes(plan, facts).await;
        self.report.seconds = started.elapsed().as_secs_f64();
        let (after, last) = result?;
        self.report.postconditions = postconditions(&last);
        self.report.ok = self.report.postconditions.iter().all(Check::passed);
        Ok(after)
    }

    async fn passes(
        &mut self,
        plan: &GuestPlan,
        facts: &GuestFacts,
    ) -> Result<(GuestFacts, GuestPlan)> {
        if !plan.refusals.is_empty() {
            return Err(refused(self.guest, plan, "nothing was changed"));
        }
        let mut remote = self.connector.connect().await?;
        let mut plan = plan.clone();
        let mut facts = facts.clone();
        for pass in 1..=self.options.max_passes.max(1) {
            if plan.is_empty() {
                break;
            }
            self.report.passes = pass as u32;
            if pass > 1 {
                self.progress.say(&format!(
                    "{}: planned again after the reboot: {} more change(s)",
                    self.guest,
                    plan.changes.len()
                ));
            }
            let mut rebooted = None;
            let total = plan.changes.len();
            for (i, change) in plan.changes.iter().enumerate() {
                let what = change.action.describe();
                let task = begin_step(self.progress, self.guest, i, total, change);
                let t = Instant::now();
                let result = match &change.action {
                    Action::Reboot => match self.reboot(remote, &facts).await {
                        Ok(r) => {
                            remote = r;
                            rebooted = Some(change.reason.clone());
                            let outcome =
                                StepOutcome::new(&change.step, &what, t, true, String::new());
                            self.report.steps.push(outcome);
                            // what follows the reboot is planned again from the new facts
                            break;
                        }
                        Err(e) => {
                            let outcome =
                                StepOutcome::new(&change.step, &what, t, false, format!("{e:#}"));
                            self.report.steps.push(outcome);
                            return Err(e.context(format!(
                                "{} failed on guest {}: {what}",
                                change.step, self.guest
                            )));
                        }
                    },
                    _ => self.run_change(&mut remote, change, &task).await,
                };
                task.done(result.is_ok());
                let outcome = StepOutcome::of_script(&change.step, &what, t, &result);
                self.report.steps.push(outcome);
                if let Err(e) = result {
                    self.connector.close(remote).await;
                    return Err(e.context(format!(
                        "{} failed on guest {}: {what}",
                        change.step, self.guest
                    )));
                }
            }
            facts = match self.gather(&remote).await {
                Ok(f) => f,
                Err(e) => {
                    self.connector.close(remote).await;
                    return Err(e);
                }
            };
            plan = planner::plan(self.spec, &facts)?;
            if !plan.refusals.is_empty() {
                self.connector.close(remote).await;
                return Err(refused(
                    self.guest,
                    &plan,
                    "the steps before it were applied; fix what it names and apply again",
                ));
            }
            let Some(why) = rebooted else {
                break;
            };
            if let Some(left) = still_after_reboot(&why, &plan) {
                self.connector.close(remote).await;
                anyhow::bail!(
                    "guest {} rebooted, and the reason for it remains: {left}; another reboot would not change that (look at `dmesg | grep -i -e nvidia -e nouveau` and `nvidia-smi` on the guest), then apply again",
                    self.guest
                );
            }
        }
        self.connector.close(remote).await;
        Ok((facts, plan))
    }

    async fn run_change(
        &mut self,
        remote: &mut C::Remote,
        change: &Change,
        task: &Task,
    ) -> Result<String> {
        let script = change_script(&self.run_id, change).expect("reboots are handled apart");
        let out = match self.watched(remote, &script, task).await {
            Ok(out) => out,
            Err(e) if matches!(change.action, Action::Run { .. }) => {
                let id = step_id(&self.run_id, &change.step);
                self.reattach(remote, &id, e).await?
            }
            Err(e) => return Err(e),
        };
        out.succeeded(|text| tail(text.trim(), 20))
    }

    /// The connection dropped while a detached step ran: connect again and wait for the
    /// step's exit status (it kept running on the guest).
    async fn reattach(
        &mut self,
        remote: &mut C::Remote,
        id: &str,
        cause: anyhow::Error,
    ) -> Result<RemoteOutput> {
        let started = Instant::now();
        let mut last = format!("{cause:#}");
        loop {
            if started.elapsed() > self.options.reconnect_timeout {
                return Err(hinted(
                    format!(
                        "lost the connection to guest {} while step {id} ran, and could not reach it again within {} s (last: {last})",
                        self.guest,
                        self.options.reconnect_timeout.as_secs()
                    ),
                    format!(
                        "the step may still be running; its log is {STEPS_DIR}/{id}.log on the guest. Run `pvegpu apply` again once the guest answers"
                    ),
                ));
            }
            self.progress.say(&format!(
                "{}: connection lost during step {id} ({last}); reconnecting",
                self.guest
            ));
            tokio::time::sleep(self.options.poll_interval).await;
            let fresh =
                match tokio::time::timeout(Duration::from_secs(30), self.connector.connect()).await
                {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => {
                        last = format!("{e:#}");
                        continue;
                    }
                    Err(_) => {
                        last = "connecting timed out".into();
                        continue;
                    }
                };
            let old = std::mem::replace(remote, fresh);
            self.connector.close(old).await;
            match run_counted(&mut self.report, remote, &as_root(&wait_script(id))).await {
                Ok(mut out) => {
                    out.stderr = without_log_lines(&out.stderr);
                    return Ok(out);
                }
                Err(e) => last = format!("{e:#}"),
            }
        }
    }

    /// Reboot detached and wait for the new boot ([`reboot_and_wait`]).
    async fn reboot(&mut self, remote: C::Remote, facts: &GuestFacts) -> Result<C::Remote> {
        let subject = format!("guest {}", self.guest);
        let wait = RebootWait {
            name: self.guest,
            subject: &subject,
            timeout: self.options.reboot_timeout,
            poll_interval: self.options.poll_interval,
            timeout_hint: "check the VM's console in Proxmox; when it is up, run `pvegpu apply` again (it re-reads the guest and continues)",
            as_root,
        };
        reboot_and_wait(
            &self.connector,
            remote,
            facts.boot_id.as_deref(),
            &wait,
            self.progress,
            &mut self.report,
        )
        .await
    }
}

fn refused(guest: &str, plan: &GuestPlan, done: &str) -> anyhow::Error {
    let r = &plan.refusals[0];
    hinted(
        format!(
            "pvegpu refuses to converge guest {guest}: {} ({done})",
            r.reason
        ),
        r.hint.clone(),
    )
}

/// What must hold once the guest phase is done, read from a fresh plan.
pub fn postconditions(after: &GuestPlan) -> Vec<Check> {
    vec![Check::judged(
        Layer::Guest,
        format!("guest {} matches the inventory", after.guest),
        after.is_empty() && after.refusals.is_empty(),
        if after.is_empty() {
            format!("a fresh plan has nothing left ({})", after.context)
        } else {
            format!(
                "a fresh plan still has {} step(s): {}",
                after.changes.len(),
                after
                    .changes
                    .iter()
                    .map(|c| c.step.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        "the guest differs from what the inventory asks for",
        "`pvegpu plan` shows what is left; `pvegpu apply` converges it",
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The step script a [`detached`] text stores on the guest, decoded: its first long
    /// base64 word (the runner's comes second), however the text was quoted around it.
    fn stored_step(sent: &str) -> String {
        use base64::Engine;
        let b64 = sent
            .split(|c: char| !(c.is_ascii_alphanumeric() || "+/=".contains(c)))
            .find(|w| w.len() >= 24)
            .expect("a base64 payload");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("valid base64");
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_step_script_travels_as_base64_whatever_it_holds() {
        let script = "echo a\nPVEGPU_STEP_EOF\necho b\n";
        let sent = detached("r-x", script);
        assert!(!sent.contains("PVEGPU_STEP_EOF"), "{sent}");
        assert_eq!(stored_step(&sent), script);
    }

    #[test]
    fn commands_run_as_root_under_the_lock_without_prompts() {
        let c = Change {
            step: "driver".into(),
            summary: String::new(),
            reason: String::new(),
            action: Action::Run {
                command: "apt-get install -y nvidia-driver".into(),
            },
            diff: None,
            needs_reboot: false,
        };
        let sent = change_script("r", &c).unwrap();
        assert!(sent.contains("sudo -n sh -c"), "{sent}");
        // the step's own script travels as base64 inside what is sent
        let s = stored_step(&sent);
        for needle in [
            "DEBIAN_FRONTEND=noninteractive",
            "DPkg::Lock::Timeout",
            "--force-confold",
            "flock -w 1800 /run/pvegpu.lock",
            "apt-get install -y nvidia-driver",
        ] {
            assert!(s.contains(needle), "{needle} missing from {s}");
        }
        let reboot = Change {
            action: Action::Reboot,
            ..c
        };
        assert!(change_script("r", &reboot).is_none());
    }
}

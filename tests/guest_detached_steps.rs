//! A guest step outlives its SSH connection: the executor runs each command detached on the
//! guest, and when the connection drops mid-step it connects again and waits for the same
//! run's exit status instead of failing (or running the command twice). Real OpenSSH on
//! 127.0.0.1 stands in for the VM; the connection is dropped by telling the multiplexing
//! master to exit, as a network failure ends it. Needs root there (the executor writes its
//! step files under /var/lib/pvegpu), as .ci/run has.

mod support;
use pvegpu::core::plan::{Action, Change};
use pvegpu::core::progress::{Progress, Task};
use pvegpu::facts::RawFacts;
use pvegpu::guest::exec::{GuestExecutor, GuestOptions, STEPS_DIR};
use pvegpu::guest::{GuestFacts, GuestPlan, plan};
use pvegpu::inventory::guest::GuestSpec;
use pvegpu::transport::Connector;
use pvegpu::transport::ssh::SshConnector;
use pvegpu::transport::ssh::SshRemote;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::gate::{self, Gated, Need};

/// Connects like the real executor and remembers each connection's control socket.
struct Recording {
    inner: SshConnector,
    sockets: Arc<Mutex<Vec<PathBuf>>>,
}

impl Connector for Recording {
    type Remote = SshRemote;
    async fn connect(&self) -> anyhow::Result<SshRemote> {
        let r = self.inner.connect().await?;
        self.sockets
            .lock()
            .unwrap()
            .push(r.control_socket().to_path_buf());
        Ok(r)
    }
    async fn close(&self, remote: SshRemote) {
        self.inner.close(remote).await;
    }
}

#[derive(Default)]
struct Said(Mutex<Vec<String>>);
impl Progress for Said {
    fn say(&self, line: &str) {
        eprintln!("{line}");
        self.0.lock().unwrap().push(line.to_string());
    }
}

/// The spec, facts and a plan of one step that runs `command` (the plan's other steps are
/// dropped: this machine is the "guest").
/// (Each test names its own step: both run in one process, so they share the run id.)
fn one_step(step: &str, command: String) -> (GuestSpec, GuestFacts, GuestPlan) {
    let spec: GuestSpec = toml::from_str("runtime = \"docker\"\n").unwrap();
    let facts = GuestFacts::from_raw(
        &RawFacts::parse(&support::read("guest/gtx1080-debian12-fresh.facts")).unwrap(),
    )
    .unwrap();
    let mut p = plan(&spec, &facts).unwrap();
    p.changes = vec![Change {
        step: step.into(),
        summary: "a command that takes a while".into(),
        reason: "test".into(),
        action: Action::Run { command },
        diff: None,
        needs_reboot: false,
    }];
    (spec, facts, p)
}

async fn a_step_survives_a_dropped_connection_and_runs_once() {
    let sshd = support::sshd::start_sshd(false);
    let work = tempfile::tempdir().unwrap();
    let mark = work.path().join("runs");
    let command = format!(
        "sh -c 'echo started >> {m}; sleep 6; echo finished'",
        m = mark.display()
    );
    let (spec, facts, p) = one_step("slow-step", command);
    let sockets = Arc::new(Mutex::new(Vec::new()));
    let connector = Recording {
        inner: SshConnector::guest("guest", Some(sshd.guest_config("guest")), sshd.guest_keys()),
        sockets: sockets.clone(),
    };
    // drop the first connection once the step has started on the "guest"
    let (m, s) = (mark.clone(), sockets.clone());
    let killer = tokio::spawn(async move {
        for _ in 0..200 {
            if m.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let socket = s.lock().unwrap()[0].clone();
        let out = tokio::process::Command::new("ssh")
            .arg("-S")
            .arg(&socket)
            .args(["-O", "exit", "guest"])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let said = Said::default();
    let options = GuestOptions {
        poll_interval: Duration::from_millis(500),
        reconnect_timeout: Duration::from_secs(60),
        ..GuestOptions::default()
    };
    let mut exec = GuestExecutor::new("guest", &spec, options, &said, connector);
    // this machine has no NVIDIA GPU, so the plan after the step is refused: the step's own
    // outcome is what this test reads
    let _ = exec.execute(&p, &facts).await;
    killer.await.unwrap();
    let step = &exec.report.steps[0];
    assert!(step.ok, "{step:?}");
    assert!(step.output.contains("finished"), "{step:?}");
    assert_eq!(
        std::fs::read_to_string(&mark).unwrap(),
        "started\n",
        "the command ran once"
    );
    assert!(sockets.lock().unwrap().len() >= 2, "connected again");
    assert!(
        said.0
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("connection lost during step")),
        "{:?}",
        said.0.lock().unwrap()
    );
}

/// The runner dies without writing an exit status (killed, or the guest restarted under it):
/// the step fails at once, naming its log, instead of waiting forever.
async fn a_runner_gone_without_a_status_fails_the_step() {
    let sshd = support::sshd::start_sshd(false);
    let (spec, facts, p) = one_step("killed-step", "sleep 30".into());
    let connector =
        SshConnector::guest("guest", Some(sshd.guest_config("guest")), sshd.guest_keys());
    let said = Said::default();
    let mut exec = GuestExecutor::new("guest", &spec, GuestOptions::default(), &said, connector);
    let pid_file = PathBuf::from(format!("{STEPS_DIR}/{}-killed-step.pid", exec.run_id));
    let killer = tokio::spawn(async move {
        for _ in 0..200 {
            if let Ok(pid) = std::fs::read_to_string(&pid_file)
                && !pid.trim().is_empty()
            {
                let out = std::process::Command::new("kill")
                    .args(["-9", pid.trim()])
                    .output()
                    .unwrap();
                assert!(out.status.success());
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the step never started");
    });
    let started = std::time::Instant::now();
    let err = exec.execute(&p, &facts).await.unwrap_err();
    killer.await.unwrap();
    let text = format!("{err:#}");
    assert!(text.contains("ended without an exit status"), "{text}");
    assert!(text.contains("-killed-step.log"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "it did not wait for the sleep"
    );
    assert!(!exec.report.steps[0].ok);
}

/// Progress that keeps every value its tasks' last line took (sampled every 100 ms).
#[derive(Default)]
struct Watching {
    seen: Arc<Mutex<Vec<String>>>,
}
impl Progress for Watching {
    fn say(&self, line: &str) {
        eprintln!("{line}");
    }
    fn begin(&self, what: &str) -> Task {
        eprintln!("{what}");
        let last = Arc::new(Mutex::new(String::new()));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (l, d, seen) = (last.clone(), done.clone(), self.seen.clone());
        std::thread::spawn(move || {
            while !d.load(std::sync::atomic::Ordering::Relaxed) {
                let now = l.lock().unwrap().clone();
                let mut seen = seen.lock().unwrap();
                if !now.is_empty() && seen.last() != Some(&now) {
                    seen.push(now);
                }
                drop(seen);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Task::new(
            move |_| done.store(true, std::sync::atomic::Ordering::Relaxed),
            last,
        )
    }
}

/// A detached step's log reaches the progress display line by line while it runs (apt, a
/// DKMS build), and the wait's marker lines stay out of the step's output.
fn a_steps_log_shows_as_its_last_line_while_it_runs() {
    let sshd = support::sshd::start_sshd(false);
    gate::block_on(async move {
        let command = "sh -c 'echo Building module nvidia.ko; sleep 3; echo DKMS: install completed; sleep 2'".to_string();
        let (spec, facts, p) = one_step("logged-step", command);
        let connector =
            SshConnector::guest("guest", Some(sshd.guest_config("guest")), sshd.guest_keys());
        let watching = Watching::default();
        let mut exec = GuestExecutor::new(
            "guest",
            &spec,
            GuestOptions::default(),
            &watching,
            connector,
        );
        let _ = exec.execute(&p, &facts).await;
        let step = &exec.report.steps[0];
        assert!(step.ok, "{step:?}");
        assert!(step.output.contains("DKMS: install completed"), "{step:?}");
        assert!(!step.output.contains("pvegpu-step-log"), "{step:?}");
        let seen = watching.seen.lock().unwrap().clone();
        assert!(
            seen.contains(&"Building module nvidia.ko".to_string())
                && seen.contains(&"DKMS: install completed".to_string()),
            "{seen:?}"
        );
    });
}

/// A step's script is stored as sent, whatever it holds (#20): a line that ended the heredoc
/// the script once travelled in cannot cut it short and run the rest outside the unit; the
/// steps folder and the step's log are the owner's only.
async fn a_step_script_reaches_the_guest_whole() {
    use std::os::unix::fs::PermissionsExt;
    let sshd = support::sshd::start_sshd(false);
    let work = tempfile::tempdir().unwrap();
    let outside = work.path().join("outside");
    let command = format!(
        "echo inside\nPVEGPU_STEP_EOF\necho ran >> {o}\nPVEGPU_RUN_EOF\necho ran >> {o}",
        o = outside.display()
    );
    let (spec, facts, p) = one_step("whole-step", command.clone());
    let connector =
        SshConnector::guest("guest", Some(sshd.guest_config("guest")), sshd.guest_keys());
    let said = Said::default();
    let mut exec = GuestExecutor::new("guest", &spec, GuestOptions::default(), &said, connector);
    let id = format!("{}-whole-step", exec.run_id);
    let _ = exec.execute(&p, &facts).await;
    let stored = std::fs::read_to_string(format!("{STEPS_DIR}/{id}.sh")).unwrap();
    assert!(stored.contains(&command), "{stored}");
    // both `echo ran` lines ran once each, inside the step
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "ran\nran\n");
    let mode = |p: &str| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(STEPS_DIR), 0o700);
    assert_eq!(mode(&format!("{STEPS_DIR}/{id}.log")), 0o600);
}

fn main() {
    Gated::new()
        .test(
            "a_step_survives_a_dropped_connection_and_runs_once",
            &[Need::Sshd, Need::Root],
            || gate::block_on(a_step_survives_a_dropped_connection_and_runs_once()),
        )
        .test(
            "a_step_script_reaches_the_guest_whole",
            &[Need::Sshd, Need::Root],
            || gate::block_on(a_step_script_reaches_the_guest_whole()),
        )
        .test(
            "a_runner_gone_without_a_status_fails_the_step",
            &[Need::Sshd, Need::Root],
            || gate::block_on(a_runner_gone_without_a_status_fails_the_step()),
        )
        .test(
            "a_steps_log_shows_as_its_last_line_while_it_runs",
            &[Need::Sshd, Need::Root],
            a_steps_log_shows_as_its_last_line_while_it_runs,
        )
        .run()
}

//! The guest executor and gatherer against a scripted fake guest (a `Remote` that answers each
//! script from state: probe output, boot_id, reboots, step failures) and, for the ONNX header
//! reads, a real local shell.

mod support;
use pvegpu::core::plan::Action;
use pvegpu::core::progress::Progress;
use pvegpu::core::scripts;
use pvegpu::facts::RawFacts;
use pvegpu::guest::exec::{GuestExecutor, GuestOptions, GuestReport, change_script};
use pvegpu::guest::gather;
use pvegpu::guest::{GuestFacts, GuestPlan, plan};
use pvegpu::inventory::guest::GuestSpec;
use pvegpu::transport::Connector;
use pvegpu::transport::ssh::SshError;
use pvegpu::transport::{Remote, RemoteOutput};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{add_section, read, set_section};

const SEED_SPEC: &str = "runtime = \"docker\"\n[triton]\nmodel_repository = \"/srv/triton/models\"\nbackend = \"onnx\"\n";
const OLD_BOOT: &str = "0c5e2f4a-55a0-4d8e-9a31-0c7f3b1d2e11";
const NEW_BOOT: &str = "5d1b7a2e-0f3c-4e6a-8b9d-2a4c6e8f0a13";

fn spec() -> GuestSpec {
    toml::from_str(SEED_SPEC).unwrap()
}

fn parse(text: &str) -> GuestFacts {
    GuestFacts::from_raw(&RawFacts::parse(text).unwrap()).unwrap()
}

/// The probe text without its `onnx` sections: the gatherer must read the headers itself.
fn without_onnx(text: &str) -> String {
    let mut out = String::new();
    let mut skip = false;
    for line in text.lines() {
        if line.starts_with("### pvegpu onnx ") {
            skip = true;
            continue;
        }
        if skip && line.starts_with("### pvegpu exit") {
            skip = false;
            continue;
        }
        if !skip {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn write_files(text: &str, p: &GuestPlan) -> String {
    let mut out = text.to_string();
    for c in &p.changes {
        if let Action::WriteFile { path, content, .. } = &c.action {
            let head = format!("file {path}");
            out = if out.contains(&format!("### pvegpu {head} ")) {
                set_section(&out, &head, content)
            } else {
                add_section(
                    &out,
                    &format!("{head} mode=644 owner=root:root mtime=1800000000"),
                    &format!("{content}### pvegpu exit 0\n"),
                )
            };
        }
    }
    out
}

/// The guest before, after the first pass and reboot, and once Triton runs.
const NO_DRIVER: &str = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.";

struct Stages {
    fresh: String,
    rebooted: String,
    serving: String,
}

fn stages() -> Stages {
    let fresh = read("guest/gtx1080-debian12-fresh.facts");
    let first = plan(&spec(), &parse(&fresh)).unwrap();
    let rebooted = set_section(
        &write_files(&read("guest/gtx1080-debian12-converged.facts"), &first),
        "boot-id",
        &format!("{NEW_BOOT}\n"),
    );
    let second = plan(&spec(), &parse(&rebooted)).unwrap();
    let serving = set_section(
        &write_files(&rebooted, &second),
        "triton-service",
        "active\n",
    );
    Stages {
        fresh: without_onnx(&fresh),
        rebooted: without_onnx(&rebooted),
        serving: without_onnx(&serving),
    }
}

#[derive(Default)]
struct State {
    /// Every script the guest received, in order, with the connection it came on.
    scripts: Vec<(usize, String)>,
    connects: usize,
    closes: usize,
    booted: bool,
    /// Connections after the reboot that still see the old boot (the guest is going down).
    stale_connects: usize,
    triton_started: bool,
    /// A change script containing this fails with `fail_output`.
    fail_on: Option<String>,
    fail_output: String,
    /// The guest never comes back from a reboot.
    never_back: bool,
}

struct FakeGuest {
    state: Arc<Mutex<State>>,
    stages: Arc<Stages>,
    conn: usize,
}

fn ok(stdout: impl Into<String>) -> RemoteOutput {
    RemoteOutput {
        status: Some(0),
        stdout: stdout.into(),
        stderr: String::new(),
    }
}

/// `od -An -tx1` of the ONNX fixture for a chunk script's `tail -c +N ... | head -c C`.
/// `sent` followed by every base64 payload in it decoded (a detached step's script travels
/// so), for the fake to recognise what a step runs.
fn with_payloads(sent: &str) -> String {
    use base64::Engine;
    let mut text = sent.to_string();
    for word in sent
        .split(|c: char| !(c.is_ascii_alphanumeric() || "+/=".contains(c)))
        .filter(|w| w.len() >= 24)
    {
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(word)
            && let Ok(decoded) = String::from_utf8(bytes)
        {
            text.push('\n');
            text.push_str(&decoded);
        }
    }
    text
}

fn answer_chunks(script: &str) -> String {
    let model = std::fs::read(support::fixture("onnx/ir8-opset17.onnx")).unwrap();
    let re =
        regex::Regex::new(r"#pvegpu-chunk (\d+)\S*\nif dd if=.*? skip=(\d+) count=(\d+)").unwrap();
    let mut out = String::new();
    for c in re.captures_iter(script) {
        let from: usize = c[2].parse().unwrap();
        let n: usize = c[3].parse().unwrap();
        out.push_str(&format!("#pvegpu-chunk {}\n", &c[1]));
        for b in model.iter().skip(from).take(n) {
            out.push_str(&format!(" {b:02x}"));
        }
        out.push('\n');
    }
    out
}

impl Remote for FakeGuest {
    fn destination(&self) -> &str {
        "raphael@10.3.0.201"
    }

    async fn run_script(&self, sent: &str) -> Result<RemoteOutput, SshError> {
        let mut s = self.state.lock().unwrap();
        s.scripts.push((self.conn, sent.to_string()));
        let readable = with_payloads(sent);
        let script = readable.as_str();
        if script == scripts::BOOT_ID {
            let id = if s.booted && s.stale_connects == 0 {
                NEW_BOOT
            } else {
                OLD_BOOT
            };
            s.stale_connects = s.stale_connects.saturating_sub(1);
            return Ok(ok(format!("{id}\n")));
        }
        if script.contains("### pvegpu facts 1") {
            let text = if !s.booted {
                &self.stages.fresh
            } else if s.triton_started {
                &self.stages.serving
            } else {
                &self.stages.rebooted
            };
            return Ok(ok(text.clone()));
        }
        if script.contains("#pvegpu-chunk") {
            return Ok(ok(answer_chunks(script)));
        }
        if script.contains("systemctl reboot") {
            if !s.never_back {
                s.booted = true;
            }
            return Ok(ok("scheduled\n"));
        }
        if let Some(needle) = &s.fail_on
            && script.contains(needle.as_str())
        {
            return Ok(RemoteOutput {
                status: Some(100),
                stdout: s.fail_output.clone(),
                stderr: String::new(),
            });
        }
        if script.contains("systemctl restart pvegpu-triton.service") {
            s.triton_started = true;
        }
        Ok(ok(""))
    }
}

struct FakeConnector {
    state: Arc<Mutex<State>>,
    stages: Arc<Stages>,
}

impl Connector for FakeConnector {
    type Remote = FakeGuest;

    async fn connect(&self) -> anyhow::Result<FakeGuest> {
        let mut s = self.state.lock().unwrap();
        s.connects += 1;
        Ok(FakeGuest {
            state: self.state.clone(),
            stages: self.stages.clone(),
            conn: s.connects,
        })
    }

    async fn close(&self, _remote: FakeGuest) {
        self.state.lock().unwrap().closes += 1;
    }
}

struct Quiet;
impl Progress for Quiet {
    fn say(&self, _line: &str) {}
}

fn options() -> GuestOptions {
    GuestOptions {
        reboot_timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(1),
        max_passes: 3,
        reconnect_timeout: Duration::from_secs(5),
    }
}

/// The plan and facts `apply` starts from, gathered through the fake like the real command.
async fn start(state: &Arc<Mutex<State>>, stages: &Arc<Stages>) -> (GuestFacts, GuestPlan) {
    let c = FakeConnector {
        state: state.clone(),
        stages: stages.clone(),
    };
    let r = c.connect().await.unwrap();
    let g = gather::probe("triton-gpu", &r, Some("/srv/triton/models"))
        .await
        .unwrap();
    let p = plan(&spec(), &g.facts).unwrap();
    state.lock().unwrap().scripts.clear();
    (g.facts, p)
}

/// Plan as `apply` does and run the executor, which must fail: the plan, its error and report.
async fn apply_failing(
    state: &Arc<Mutex<State>>,
    stages: &Arc<Stages>,
) -> (GuestPlan, String, GuestReport) {
    let (facts, first) = start(state, stages).await;
    let spec = spec();
    let connector = FakeConnector {
        state: state.clone(),
        stages: stages.clone(),
    };
    let mut exec = GuestExecutor::new("triton-gpu", &spec, options(), &Quiet, connector);
    let err = format!("{:#}", exec.execute(&first, &facts).await.unwrap_err());
    (first, err, exec.report)
}

fn change_scripts(run_id: &str, p: &GuestPlan) -> Vec<String> {
    p.changes
        .iter()
        .filter_map(|c| change_script(run_id, c))
        .collect()
}

#[tokio::test]
async fn fresh_guest_two_passes_with_one_reboot_then_an_empty_plan() {
    let stages = Arc::new(stages());
    let state = Arc::new(Mutex::new(State {
        stale_connects: 1,
        ..State::default()
    }));
    let (facts, first) = start(&state, &stages).await;
    // the gatherer read both models' headers itself (the fake has no onnx sections)
    assert_eq!(facts.onnx.len(), 2);
    assert!(
        facts
            .onnx
            .iter()
            .all(|h| (h.ir_version, h.opset) == (8, 17))
    );
    assert!(first.needs_reboot());
    let spec = spec();
    let connector = FakeConnector {
        state: state.clone(),
        stages: stages.clone(),
    };
    let mut exec = GuestExecutor::new("triton-gpu", &spec, options(), &Quiet, connector);
    let after = exec.execute(&first, &facts).await.unwrap();
    let report = exec.report;
    let run_id = exec.run_id.clone();

    assert!(report.ok, "{:?}", report.postconditions);
    assert_eq!(report.reboots, 1);
    assert_eq!(report.passes, 2);
    assert_eq!(after.boot_id.as_deref(), Some(NEW_BOOT));

    let sent = state.lock().unwrap().scripts.clone();
    let texts: Vec<&str> = sent.iter().map(|(_, s)| s.as_str()).collect();
    // pass 1: every change script in plan order, then the reboot
    let pass1 = change_scripts(&run_id, &first);
    assert_eq!(&texts[..pass1.len()], pass1.as_slice());
    let reboot_at = pass1.len();
    assert!(
        texts[reboot_at].contains("systemctl reboot"),
        "{}",
        texts[reboot_at]
    );
    // then boot_id polls over fresh connections until the id changes: the first still sees
    // the old boot
    let polls: Vec<&(usize, String)> = sent[reboot_at + 1..]
        .iter()
        .take_while(|(_, s)| s == scripts::BOOT_ID)
        .collect();
    assert_eq!(polls.len(), 2);
    let reboot_conn = sent[reboot_at].0;
    assert!(polls[0].0 > reboot_conn && polls[1].0 > polls[0].0);
    // re-gathered on the new connection, then pass 2 is the plan of the rebooted guest
    let regather = reboot_at + 1 + polls.len();
    assert!(texts[regather].contains("### pvegpu facts 1"));
    assert_eq!(sent[regather].0, polls[1].0);
    let second = plan(&spec, &parse(&stages.rebooted_with_onnx())).unwrap();
    assert!(!second.is_empty() && !second.needs_reboot());
    assert!(second.changes.iter().any(|c| c.step == "triton-unit"));
    let pass2 = change_scripts(&run_id, &second);
    // model header reads follow each probe; skip them
    let rest: Vec<&str> = texts[regather + 1..]
        .iter()
        .copied()
        .filter(|s| !s.contains("#pvegpu-chunk"))
        .collect();
    assert_eq!(&rest[..pass2.len()], pass2.as_slice());
    assert!(rest[pass2.len()].contains("### pvegpu facts 1"));
    assert_eq!(rest.len(), pass2.len() + 1, "nothing after the last gather");
    // every connection opened was closed
    let s = state.lock().unwrap();
    assert_eq!(
        s.closes,
        s.connects - 1,
        "all but the test's own probe connection"
    );
}

impl Stages {
    fn rebooted_with_onnx(&self) -> String {
        let mut t = self.rebooted.clone();
        for m in ["nutriscore", "price_tag_detection"] {
            t.push_str(&format!(
                "### pvegpu onnx /srv/triton/models/{m}/1/model.onnx ir=8 opset=17\n### pvegpu exit 0\n"
            ));
        }
        t
    }
}

#[tokio::test]
async fn a_failing_step_stops_the_run_with_its_output() {
    let stages = Arc::new(stages());
    let state = Arc::new(Mutex::new(State {
        fail_on: Some("install -y nvidia-driver".into()),
        fail_output: "E: Package 'nvidia-driver' has no installation candidate\n".into(),
        ..State::default()
    }));
    let (first, text, report) = apply_failing(&state, &stages).await;
    assert!(text.contains("driver failed on guest triton-gpu"), "{text}");
    assert!(text.contains("has no installation candidate"), "{text}");
    assert!(text.contains("exit status 100"), "{text}");
    let last = report.steps.last().unwrap();
    assert_eq!(last.step, "driver");
    assert!(!last.ok);
    assert!(report.steps[..report.steps.len() - 1].iter().all(|s| s.ok));
    assert_eq!(report.reboots, 0);
    // nothing after the failing script was sent
    let s = state.lock().unwrap();
    let (_, last_script) = s.scripts.last().unwrap();
    assert!(with_payloads(last_script).contains("install -y nvidia-driver"));
    let driver_index = first
        .changes
        .iter()
        .position(|c| c.step == "driver")
        .unwrap();
    assert_eq!(s.scripts.len(), driver_index + 1);
    assert_eq!(s.closes, s.connects - 1);
}

#[tokio::test]
async fn a_guest_that_never_comes_back_is_an_error_after_the_timeout() {
    let stages = Arc::new(stages());
    let state = Arc::new(Mutex::new(State {
        never_back: true,
        ..State::default()
    }));
    let (facts, first) = start(&state, &stages).await;
    let spec = spec();
    let connector = FakeConnector {
        state: state.clone(),
        stages: stages.clone(),
    };
    let mut opts = options();
    opts.reboot_timeout = Duration::from_millis(50);
    let mut exec = GuestExecutor::new("triton-gpu", &spec, opts, &Quiet, connector);
    let err = exec.execute(&first, &facts).await.unwrap_err();
    assert!(format!("{err:#}").contains("did not come back"), "{err:#}");
    assert_eq!(exec.report.reboots, 1);
    let s = state.lock().unwrap();
    // it kept asking for the boot_id and never gathered or ran anything after the reboot
    let after_reboot: Vec<&String> = s
        .scripts
        .iter()
        .map(|(_, t)| t)
        .skip_while(|t| !t.contains("systemctl reboot"))
        .skip(1)
        .collect();
    assert!(!after_reboot.is_empty());
    assert!(after_reboot.iter().all(|t| *t == scripts::BOOT_ID));
}

/// The driver does not load after the reboot (a guest without its GPU, or a module the kernel
/// rejects): the run stops after that one reboot and says why, instead of rebooting again.
#[tokio::test]
async fn a_driver_still_not_loaded_after_the_reboot_stops_the_run() {
    let mut st = stages();
    let unbound = st.rebooted.replace("\tKernel driver in use: nvidia\n", "");
    assert_ne!(unbound, st.rebooted);
    st.rebooted = set_section(
        &set_section(
            &unbound,
            "proc-modules",
            "snd_hda_intel 57344 0 - Live 0x0000000000000000\n### pvegpu exit 0\n",
        ),
        "nvidia-smi",
        &format!("{}\n### pvegpu exit 9\n", NO_DRIVER),
    );
    let stages = Arc::new(st);
    let state = Arc::new(Mutex::new(State::default()));
    let (_, err, report) = apply_failing(&state, &stages).await;
    assert!(
        err.contains("rebooted, and the reason for it remains")
            && err.contains(pvegpu::guest::planner::NOT_LOADED)
            && err.contains(NO_DRIVER),
        "{err}"
    );
    assert_eq!(report.reboots, 1, "no second reboot");
    assert_eq!(report.passes, 1);
    assert!(report.steps.iter().all(|s| s.ok));
    let s = state.lock().unwrap();
    let reboots = s
        .scripts
        .iter()
        .filter(|(_, t)| t.contains("systemctl reboot"))
        .count();
    assert_eq!(reboots, 1);
    assert_eq!(
        s.closes,
        s.connects - 1,
        "every connection closed but start's"
    );
}

/// Bad input: each refused plan is an error naming the cause, and the guest receives nothing.
#[tokio::test]
async fn refused_plans_send_nothing() {
    let fresh = stages().fresh;
    let centos = set_section(
        &fresh,
        "os-release",
        "PRETTY_NAME=\"CentOS Stream 9\"\nID=centos\nVERSION_ID=9\n",
    );
    let sb = set_section(&fresh, "secure-boot", "SecureBoot enabled\n");
    let sb = set_section(&sb, "secure-boot-efivar", "   6   0   0   0   1\n");
    let sb = set_section(
        &sb,
        "guest-kernels",
        "6.1.0-22-amd64 vmlinuz=yes headers=yes nvidia=/lib/modules/6.1.0-22-amd64/updates/dkms/nvidia-current.ko signed=no\n",
    );
    let no_repo = fresh.replace(
        "### pvegpu model-repository /srv/triton/models\n16534 /srv/triton/models/nutriscore/1/model.onnx\n98304 /srv/triton/models/price_tag_detection/1/model.onnx\n### pvegpu exit 0",
        "### pvegpu model-repository /srv/triton/models\nno such directory\n### pvegpu exit 2",
    );
    assert_ne!(no_repo, fresh);
    for (text, cause) in [
        (centos, "CentOS Stream 9"),
        (
            sb,
            "Secure Boot is on and the NVIDIA module of kernel 6.1.0-22-amd64 is unsigned",
        ),
        (
            no_repo,
            "the model repository /srv/triton/models does not exist",
        ),
    ] {
        let stages = Arc::new(Stages {
            fresh: text,
            rebooted: String::new(),
            serving: String::new(),
        });
        let state = Arc::new(Mutex::new(State::default()));
        let (facts, first) = start(&state, &stages).await;
        assert!(first.changes.is_empty(), "{}", first.render_text());
        let spec = spec();
        let connector = FakeConnector {
            state: state.clone(),
            stages: stages.clone(),
        };
        let before = state.lock().unwrap().connects;
        let mut exec = GuestExecutor::new("triton-gpu", &spec, options(), &Quiet, connector);
        let err = exec.execute(&first, &facts).await.unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains(cause), "{cause}: {text}");
        assert!(text.contains("nothing was changed"), "{text}");
        let s = state.lock().unwrap();
        assert!(s.scripts.is_empty());
        assert_eq!(s.connects, before, "no connection was even opened");
    }
}

/// Runs scripts with the local /bin/sh: the header reads' real tail, head and od.
struct LocalShell;

impl Remote for LocalShell {
    fn destination(&self) -> &str {
        "localhost"
    }
    async fn run_script(&self, script: &str) -> Result<RemoteOutput, SshError> {
        let out = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .await
            .unwrap();
        Ok(RemoteOutput {
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

#[tokio::test]
async fn onnx_headers_are_read_in_chunks_without_the_graph() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (name, file) in [("a b", "ir10-opset21.onnx"), ("it's", "ir8-opset17.onnx")] {
        let p = dir.path().join(name);
        std::fs::copy(support::fixture(&format!("onnx/{file}")), &p).unwrap();
        paths.push(p.display().to_string());
    }
    for chunk in [16, 32, gather::ONNX_CHUNK] {
        let got = gather::read_onnx_headers(&LocalShell, &paths, chunk)
            .await
            .unwrap();
        let want: Vec<(u32, u32)> = paths
            .iter()
            .map(|p| {
                let h =
                    pvegpu::guest::onnx_check::read_header(p, &std::fs::read(p).unwrap()).unwrap();
                (h.ir_version, h.opset)
            })
            .collect();
        let got_v: Vec<(u32, u32)> = got.iter().map(|h| (h.ir_version, h.opset)).collect();
        assert_eq!(got_v, want, "chunk {chunk}");
        assert_eq!(want, vec![(10, 21), (8, 17)]);
    }
    // a file that is not a model is an error naming it, not a guess
    let bad = dir.path().join("bad.onnx");
    std::fs::write(&bad, b"\xff\xff\xff\xff").unwrap();
    let e = gather::read_onnx_headers(&LocalShell, &[bad.display().to_string()], 16)
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("bad.onnx"), "{e:#}");
}

/// A model swapped for a link or a FIFO after it was listed (#20): the read fails or comes
/// back empty, naming the file; it never reads the link's target nor waits on the FIFO.
#[tokio::test]
async fn onnx_reads_follow_no_link_and_wait_on_no_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.onnx");
    std::fs::copy(support::fixture("onnx/ir10-opset21.onnx"), &real).unwrap();
    let link = dir.path().join("link.onnx");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let e = gather::read_onnx_headers(&LocalShell, &[link.display().to_string()], 64)
        .await
        .unwrap_err();
    let text = format!("{e:#}");
    assert!(
        text.contains("link.onnx") && text.contains("symbolic links"),
        "{text}"
    );

    let fifo = dir.path().join("fifo.onnx");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        gather::read_onnx_headers(&LocalShell, &[fifo.display().to_string()], 64),
    )
    .await
    .expect("the read waited on a FIFO");
    let text = format!("{:#}", read.unwrap_err());
    assert!(text.contains("fifo.onnx"), "{text}");
}

/// Models as the `onnx` package writes them (tests/fixtures/onnx): every release's default
/// header, a graph larger than one read, weights in an external-data file and a copy cut short
/// are read on the "guest" as on the workstation, or refused naming the file.
#[tokio::test]
async fn real_models_are_read_on_the_guest_as_whole_files_are() {
    let names = [
        "onnx-1.13.1.onnx",
        "onnx-1.14.1.onnx",
        "onnx-1.16.2.onnx",
        "onnx-1.23.2.onnx",
        "weights.onnx",
        "external/model.onnx",
    ];
    let paths: Vec<String> = names
        .iter()
        .map(|n| support::fixture(&format!("onnx/{n}")).display().to_string())
        .collect();
    let got = gather::read_onnx_headers(&LocalShell, &paths, gather::ONNX_CHUNK)
        .await
        .unwrap();
    for (p, h) in paths.iter().zip(&got) {
        let whole = pvegpu::guest::onnx_check::read_header(p, &std::fs::read(p).unwrap()).unwrap();
        assert_eq!(h, &whole, "{p}");
    }
    let cut = support::fixture("onnx/truncated.onnx")
        .display()
        .to_string();
    let e = gather::read_onnx_headers(&LocalShell, std::slice::from_ref(&cut), gather::ONNX_CHUNK)
        .await
        .unwrap_err();
    let text = format!("{e:#}");
    assert!(
        text.contains("truncated.onnx") && text.contains("the file is cut short"),
        "{text}"
    );
}

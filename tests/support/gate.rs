//! A test harness for tests that need something this machine may not have: the QEMU test
//! host, an OpenSSH server, root, a compiler, `../shared`. Where it is missing, the test shows
//! as `ignored` and the reason is printed, instead of passing without running; `--ignored`
//! (or `--include-ignored`) runs it anyway, and it then fails on what is missing.
//! Files that use it are `harness = false` in Cargo.toml.

use libtest_mimic::{Arguments, Trial};
use std::path::{Path, PathBuf};

/// Something a test needs. `missing()` says why it is not here, with what would provide it.
#[derive(Clone, Copy)]
pub enum Need {
    /// `PVEGPU_TESTHOST=1` and this image under .cache/testhost (`.ci/run` builds both).
    TestHost(&'static str),
    /// An environment variable set to 1, with what it switches on.
    Env(&'static str, &'static str),
    /// OpenSSH's server at /usr/sbin/sshd.
    Sshd,
    /// Running as root.
    Root,
    /// A command on PATH, with the Debian package that has it.
    Command(&'static str, &'static str),
    /// A folder under ../shared (the workspace's shared data; absent in a bare clone).
    Shared(&'static str),
    /// A path that must not exist here, with why the test does not apply where it does.
    Absent(&'static str, &'static str),
    /// An environment variable naming a folder that exists, with what makes one.
    Dir(&'static str, &'static str),
    /// A shell command that must succeed here, with what it shows.
    Works(&'static str, &'static str),
}

impl Need {
    pub fn missing(self) -> Option<String> {
        match self {
            Need::TestHost(image) => {
                if std::env::var("PVEGPU_TESTHOST").as_deref() != Ok("1") {
                    return Some(
                        "the QEMU test host scenarios: set PVEGPU_TESTHOST=1 (.ci/run does)".into(),
                    );
                }
                let path = repo().join(".cache/testhost").join(image);
                (!path.exists()).then(|| {
                    format!(
                        "{} is missing: run tests/testhost/build-image.sh",
                        path.display()
                    )
                })
            }
            Need::Env(var, what) => {
                (std::env::var(var).as_deref() != Ok("1")).then(|| format!("{what}: set {var}=1"))
            }
            Need::Sshd => (!Path::new("/usr/sbin/sshd").exists()).then(|| {
                "/usr/sbin/sshd is not installed: apt-get install openssh-server (.ci/run does)"
                    .into()
            }),
            Need::Root => (!is_root()).then(|| "needs root (.ci/run runs as root)".into()),
            Need::Command(cmd, package) => (!on_path(cmd))
                .then(|| format!("no `{cmd}` on PATH: apt-get install {package} (.ci/run does)")),
            Need::Shared(rel) => {
                let dir = shared().join(rel);
                (!dir.is_dir()).then(|| format!("{} is absent", dir.display()))
            }
            Need::Absent(path, why) => Path::new(path).exists().then(|| format!("{path}: {why}")),
            Need::Dir(var, what) => match std::env::var(var) {
                Ok(dir) if Path::new(&dir).is_dir() => None,
                Ok(dir) => Some(format!("{var}={dir} is not a folder; {what}")),
                Err(_) => Some(format!("{var} is not set; {what}")),
            },
            Need::Works(cmd, what) => {
                (!succeeds(cmd)).then(|| format!("{what}: `{cmd}` fails here"))
            }
        }
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn shared() -> PathBuf {
    repo().join("../shared")
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn succeeds(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false)
}

/// The trials of one test file.
#[derive(Default)]
pub struct Gated {
    trials: Vec<Trial>,
    reasons: Vec<(String, String)>,
}

impl Gated {
    pub fn new() -> Self {
        Self::default()
    }

    /// A test that runs where everything in `needs` is here, and is ignored (reason printed)
    /// where something is missing.
    pub fn test(mut self, name: &str, needs: &[Need], body: fn()) -> Self {
        let missing: Vec<String> = needs.iter().filter_map(|n| n.missing()).collect();
        let trial = Trial::test(name, move || {
            body();
            Ok(())
        });
        if !missing.is_empty() {
            self.reasons.push((name.to_string(), missing.join("; ")));
        }
        self.trials
            .push(trial.with_ignored_flag(!missing.is_empty()));
        self
    }

    /// Runs the trials as `cargo test` would (filters, --ignored, --test-threads) and exits.
    pub fn run(self) -> ! {
        let args = Arguments::from_args();
        if !args.list && !args.ignored && !args.include_ignored {
            for (name, why) in &self.reasons {
                eprintln!("ignored here: {name}: {why}");
            }
        }
        libtest_mimic::run(&args, self.trials).exit()
    }
}

/// Runs an async test body on a runtime like `#[tokio::test(flavor = "multi_thread")]`.
pub fn block_on<F: std::future::Future<Output = ()>>(body: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(body)
}

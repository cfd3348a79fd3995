//! One apply per node for the whole run (#20): the lock lives on the node, held by a shell
//! behind its own SSH connection. Real OpenSSH on 127.0.0.1 stands in for the node; the lock
//! folder is /run/pvegpu, so the tests need root there, as .ci/run has.

mod support;
use pvegpu::transport::node_lock::{LockError, NodeLock, holder_details};
use std::io::BufRead;
use std::time::{Duration, Instant};
use support::gate::{self, Gated, Need};
use support::sshd::{Sshd, start_sshd};

async fn take(sshd: &Sshd, who: &str) -> Result<NodeLock, LockError> {
    NodeLock::acquire(
        "testnode",
        "testnode",
        Some(sshd.path("ssh_config")),
        holder_details(who),
    )
    .await
}

/// Taken again within a few seconds of `held` letting go (the node's shell notices the
/// pipe's end at once).
async fn taken_soon_after(sshd: &Sshd, who: &str) -> NodeLock {
    let started = Instant::now();
    loop {
        match take(sshd, who).await {
            Ok(l) => return l,
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(15),
                    "still not free: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn a_second_apply_is_refused_with_the_holders_details() {
    let sshd = start_sshd(true);
    let first = take(&sshd, "pvegpu apply --node testnode").await.unwrap();
    let Err(e) = take(&sshd, "second").await else {
        panic!("two applies held the node")
    };
    let text = e.to_string();
    assert!(matches!(e, LockError::Held { .. }), "{text}");
    let pid = std::process::id().to_string();
    assert!(
        text.contains("`pvegpu apply --node testnode` by ")
            && text.contains(&format!("(pid {pid}), since "))
            && text.contains(" UTC"),
        "{text}"
    );

    // the binary: refused before anything is gathered, the holder named, with the hint
    let inv = sshd.inventory("");
    let out = sshd.pvegpu(&inv, &["apply", "--yes", "-n", "testnode"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: another pvegpu apply holds testnode: `pvegpu apply --node testnode`"),
        "{err}"
    );
    assert!(err.contains("hint: wait for that apply to finish"), "{err}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // let go: the next apply gets it
    first.release();
    let second = taken_soon_after(&sshd, "second").await;
    second.confirm().await.unwrap();
}

/// The holder is killed (SIGKILL, no chance to clean up): the kernel closes its end of the
/// pipe, and the node lets go.
async fn a_killed_holder_lets_go() {
    let sshd = start_sshd(true);
    let mut holder = std::process::Command::new(std::env::current_exe().unwrap())
        .env("PVEGPU_TEST_HOLD_LOCK", sshd.path("ssh_config"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "held");
    assert!(matches!(
        take(&sshd, "meanwhile").await,
        Err(LockError::Held { .. })
    ));
    holder.kill().unwrap();
    holder.wait().unwrap();
    taken_soon_after(&sshd, "after the kill").await;
}

/// The helper process of [`a_killed_holder_lets_go`]: hold the lock until killed.
fn hold_until_killed(ssh_config: std::ffi::OsString) {
    gate::block_on(async move {
        let _lock = NodeLock::acquire(
            "testnode",
            "testnode",
            Some(ssh_config.into()),
            holder_details("holder"),
        )
        .await
        .unwrap();
        println!("held");
        tokio::time::sleep(Duration::from_secs(600)).await;
    });
}

fn main() {
    if let Some(cfg) = std::env::var_os("PVEGPU_TEST_HOLD_LOCK") {
        return hold_until_killed(cfg);
    }
    let needs = [
        Need::Sshd,
        Need::Root,
        Need::Command("flock", "util-linux"),
        Need::Command("timeout", "coreutils"),
    ];
    // one test: both parts lock the same /run/pvegpu on this machine
    Gated::new()
        .test(
            "a_second_apply_is_refused_and_a_killed_holder_lets_go",
            &needs,
            || {
                gate::block_on(a_second_apply_is_refused_with_the_holders_details());
                gate::block_on(a_killed_holder_lets_go());
            },
        )
        .run()
}

//! A real OpenSSH server on 127.0.0.1 for tests: throwaway host and user keys, strict host
//! key checking, and an ssh_config with a `testnode` alias that reaches it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ssh-keygen failed");
}

/// Tests that call it are gated on `gate::Need::Sshd`, so a missing sshd shows them as ignored.
pub fn start_sshd(stand_in_pveversion: bool) -> Sshd {
    assert!(
        Path::new(SSHD).exists(),
        "{SSHD} is not installed: apt-get install openssh-server (.ci/run does)"
    );
    let _ = std::fs::create_dir_all("/run/sshd");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(&d.join("hostkey"));
    keygen(&d.join("id"));
    std::fs::copy(d.join("id.pub"), d.join("authorized_keys")).unwrap();
    std::fs::create_dir_all(d.join("bin")).unwrap();
    let stand_in = d.join("bin/pveversion");
    std::fs::write(&stand_in, "#!/bin/sh\n# test stand-in: the real pveversion is a Proxmox VE package\necho \"pve-manager/9.1.1/0000000000000000 (running kernel: $(uname -r))\"\n").unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&stand_in)
        .status()
        .unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {0}/hostkey\nPidFile {0}/sshd.pid\nAuthorizedKeysFile {0}/authorized_keys\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n",
        d.display()
    );
    if stand_in_pveversion {
        cfg.push_str(&format!(
            "SetEnv PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:{}/bin\n",
            d.display()
        ));
    }
    std::fs::write(d.join("sshd_config"), cfg).unwrap();
    let child = Command::new(SSHD)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(d.join("sshd_config"))
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let hostkey = std::fs::read_to_string(d.join("hostkey.pub")).unwrap();
    std::fs::write(
        d.join("known_hosts"),
        format!("[127.0.0.1]:{port} {hostkey}"),
    )
    .unwrap();
    std::fs::write(
        d.join("ssh_config"),
        format!(
            "Host testnode\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {0}/id\n  IdentitiesOnly yes\n  UserKnownHostsFile {0}/known_hosts\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
            d.display()
        ),
    )
    .unwrap();
    Sshd { dir, port, child }
}

impl Sshd {
    /// An ssh_config (`guest_ssh_config`) naming this server `alias`, as for a VM pvegpu just
    /// created: its key is recorded on first use in [`Sshd::guest_keys`] (pvegpu's own file
    /// overrides the `UserKnownHostsFile` here, which stays empty).
    pub fn guest_config(&self, alias: &str) -> PathBuf {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let p = self.path("guest_ssh_config");
        std::fs::write(
            &p,
            format!(
                "Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {d}/id\n  IdentitiesOnly yes\n  UserKnownHostsFile {d}/guest_known_hosts\n  BatchMode yes\n",
                port = self.port,
                d = self.dir.path().display()
            ),
        )
        .unwrap();
        p
    }

    /// pvegpu's known-hosts file for guests, in this server's folder (no key recorded yet).
    pub fn guest_keys(&self) -> pvegpu::transport::ssh::GuestKeys {
        pvegpu::transport::ssh::GuestKeys::File(self.path("state/guest_known_hosts"))
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// An inventory whose node targets this machine's NIC (0000:00:03.0 where it exists).
    pub fn inventory(&self, gpus: &str) -> PathBuf {
        let p = self.path("inventory.toml");
        std::fs::write(
            &p,
            format!("[nodes.testnode]\nssh = \"testnode\"\nssh_config = \"ssh_config\"\n{gpus}"),
        )
        .unwrap();
        p
    }

    pub fn pvegpu(&self, inv: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_pvegpu"))
            .arg("--inventory")
            .arg(inv)
            .args(args)
            .env("PVEGPU_STATE_DIR", self.path("state"))
            .output()
            .unwrap()
    }
}

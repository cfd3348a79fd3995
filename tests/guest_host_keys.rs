//! A guest's host key is pvegpu's business, never the operator's: it is recorded on first
//! use in pvegpu's own known-hosts file (the operator's `UserKnownHostsFile` stays as it
//! was), and a guest that later offers another key stops the run with both fingerprints and
//! the command that forgets the old one. Real OpenSSH on 127.0.0.1 stands in for the guest.

mod support;
use pvegpu::transport::Connector;
use pvegpu::transport::ssh::{GuestKeys, SshConnector, SshError};
use support::gate::{self, Gated, Need};

fn fingerprint(pubkey: &std::path::Path) -> String {
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pubkey)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

async fn first_use_records_in_pvegpus_file_and_a_changed_key_stops() {
    let sshd = support::sshd::start_sshd(false);
    let config = sshd.guest_config("guest");
    let operators = sshd.path("guest_known_hosts");
    let keys = sshd.guest_keys();
    let GuestKeys::File(ours) = &keys else {
        unreachable!()
    };
    let connector = SshConnector::guest("guest", Some(config.clone()), keys.clone());
    let remote = connector.connect().await.unwrap();
    connector.close(remote).await;
    let recorded = std::fs::read_to_string(ours).unwrap();
    assert_eq!(recorded.lines().count(), 1, "{recorded}");
    assert!(
        !operators.exists(),
        "the operator's known_hosts was written"
    );
    // the state folder is the owner's only
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ours.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);

    // the guest now offers another key: the line recorded for it holds a different one
    let other = sshd.path("other");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(made.success());
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let host = recorded.split_whitespace().next().unwrap();
    let mut words = other_pub.split_whitespace();
    let (kind, blob) = (words.next().unwrap(), words.next().unwrap());
    std::fs::write(ours, format!("{host} {kind} {blob}\n")).unwrap();

    let Err(err) = connector.connect().await else {
        panic!("connected to a guest whose key changed")
    };
    let ssh = err
        .chain()
        .find_map(|c| c.downcast_ref::<SshError>())
        .unwrap();
    let SshError::GuestKeyChanged { changed, .. } = ssh else {
        panic!("{err:#}")
    };
    assert_eq!(changed.offered, fingerprint(&sshd.path("hostkey.pub")));
    assert_eq!(changed.known, fingerprint(&other.with_extension("pub")));
    assert_eq!(changed.host, host);
    assert_eq!((changed.file.as_path(), changed.line), (ours.as_path(), 1));
    let hint = pvegpu::core::error::Hint::hint(ssh).unwrap();
    assert!(
        hint.contains(&format!("ssh-keygen -f {} -R '{host}'", ours.display())),
        "{hint}"
    );
    // nothing was replaced: ssh's accept-new never overwrites a recorded key
    assert!(std::fs::read_to_string(ours).unwrap().contains(blob));
}

fn main() {
    Gated::new()
        .test(
            "first_use_records_in_pvegpus_file_and_a_changed_key_stops",
            &[Need::Sshd],
            || gate::block_on(first_use_records_in_pvegpus_file_and_a_changed_key_stops()),
        )
        .run()
}

//! The fake Proxmox VE of the tests (`tests/support/fake_pve`) as a process of its own, so the
//! lab (`scripts/lab.sh`) can run the VM phase against it.
//!
//! ```sh
//! cargo run --example fake_pve -- --facts lab.facts --out .cache/lab/fake-pve
//! ```
//!
//! It serves the Proxmox VE 9.1 API over HTTPS on 127.0.0.1 (a free port, a throw-away
//! certificate), with one node named like the host of the facts file (`discover --save`),
//! listing that host's PCI devices with their ids, subsystems and IOMMU groups, the storages
//! `local` (with a Debian cloud image to import), `local-lvm` and `nvme-zfs`, and an API token
//! `root@pam!pvegpu` with a secret made up at start. Once it listens it writes, under `--out`:
//! `token-secret` (mode 0600) and then `fake-pve.env` (`FAKE_PVE_URL`,
//! `FAKE_PVE_FINGERPRINT`, `FAKE_PVE_NODE`, `FAKE_PVE_TOKEN`, `FAKE_PVE_TOKEN_SECRET_FILE`,
//! `FAKE_PVE_IMAGE`, shell syntax). Every request is logged on stdout (method, path, status;
//! never parameters). Where `../shared/pve-api` exists, requests are checked against the
//! official schema as in the tests. It runs until it is killed.

#[allow(unused_imports)]
#[path = "../tests/support/fake_pve/mod.rs"]
mod fake_pve;

use anyhow::{Context, Result, bail};
use fake_pve::{FakeCluster, FakePve, PciDevice};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The cloud image volume the seeded `local` storage holds.
const IMAGE: &str = "local:import/debian-12-genericcloud-amd64.qcow2";
const TOKEN: &str = "root@pam!pvegpu";

struct Args {
    facts: PathBuf,
    out: PathBuf,
    node: Option<String>,
}

fn args() -> Result<Args> {
    let mut facts = None;
    let mut out = None;
    let mut node = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--facts" => facts = Some(PathBuf::from(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--node" => node = Some(value()?),
            _ => bail!(
                "usage: fake_pve --facts FILE --out DIR [--node NAME]\n  (unknown argument {a})"
            ),
        }
    }
    Ok(Args {
        facts: facts
            .context("--facts FILE is required (a facts file of the node to stand in for)")?,
        out: out.context("--out DIR is required")?,
        node,
    })
}

/// The cluster: the default fake's node `pve`, renamed and given the host's PCI devices.
fn cluster(facts_path: &Path, node_name: Option<String>) -> Result<(FakeCluster, String)> {
    let (_, got) = pvegpu::host::gather::from_file(None, facts_path)?;
    let facts = got.facts;
    let name = node_name
        .or_else(|| facts.hostname.split('.').next().map(str::to_string))
        .filter(|n| !n.is_empty())
        .with_context(|| format!("{} names no host; pass --node", facts_path.display()))?;
    let mut c = FakeCluster::new();
    let mut node = c
        .nodes
        .remove("pve")
        .expect("the default fake has node pve");
    node.name = name.clone();
    node.pci = facts
        .devices
        .iter()
        .map(|d| PciDevice {
            id: d.address.to_string(),
            class: format!("0x{:06x}", d.class),
            vendor: format!("0x{:04x}", d.id.vendor),
            device: format!("0x{:04x}", d.id.device),
            subsystem_vendor: format!("0x{:04x}", d.subsystem.map_or(0, |s| s.vendor)),
            subsystem_device: format!("0x{:04x}", d.subsystem.map_or(0, |s| s.device)),
            iommugroup: d.iommu_group.map_or(-1, i64::from),
            mdev: false,
            vendor_name: None,
            device_name: (!d.description.is_empty()).then(|| d.description.clone()),
        })
        .collect();
    node.import_volumes = vec![IMAGE.into()];
    c.nodes.insert(name.clone(), node);
    c.tokens.retain(|id, _| id == TOKEN);
    Ok((c, name))
}

/// A random UUID-shaped secret, as Proxmox VE makes for tokens.
fn secret() -> Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let a = args()?;
    let (mut cluster, node) = cluster(&a.facts, a.node)?;
    let secret = secret()?;
    cluster
        .tokens
        .get_mut(TOKEN)
        .expect("the default fake has the root token")
        .secret = secret.clone();
    let fake = FakePve::start_with(cluster).await;

    let (version, devices) = {
        let st = fake.state.lock().unwrap();
        (st.version.clone(), st.nodes[&node].pci.len())
    };
    println!(
        "fake Proxmox VE {version} at {} for node {node} ({devices} PCI devices; requests {} against the PVE schema)",
        fake.https_base,
        if fake.validating {
            "validated"
        } else {
            "NOT validated"
        },
    );

    std::fs::create_dir_all(&a.out)?;
    let out = std::fs::canonicalize(&a.out)?;
    let secret_file = out.join("token-secret");
    write_private(&secret_file, &format!("{secret}\n"))?;
    let env = format!(
        "FAKE_PVE_URL='{}'\nFAKE_PVE_FINGERPRINT='{}'\nFAKE_PVE_NODE='{node}'\nFAKE_PVE_TOKEN='{TOKEN}'\nFAKE_PVE_TOKEN_SECRET_FILE='{}'\nFAKE_PVE_IMAGE='{IMAGE}'\n",
        fake.https_base,
        fake.fingerprint,
        secret_file.display()
    );
    // Written last and renamed into place: its presence says the server listens.
    let tmp = out.join("fake-pve.env.tmp");
    std::fs::write(&tmp, env)?;
    std::fs::rename(&tmp, out.join("fake-pve.env"))?;

    let mut seen = 0;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let new: Vec<_> = {
            let all = fake.requests.lock().unwrap();
            let new = all[seen..].to_vec();
            seen = all.len();
            new
        };
        for r in new {
            println!("{} {} -> {}", r.method, r.path, r.status);
        }
    }
}

//! `pvegpu fingerprint`: the API certificate's pin, read over SSH. The user already trusts
//! the node's SSH host key, so the API's self-signed certificate can be pinned from it
//! without turning verification off.

use super::print_stdout;
use crate::cli::GlobalArgs;
use crate::inventory::Inventory;
use crate::transport::Remote;
use crate::transport::ssh::SshRemote;
use crate::vm::connect::{FINGERPRINT_COMMAND, parse_fingerprint_output};
use anyhow::{Context, Result};
use std::process::ExitCode;

pub async fn run(g: &GlobalArgs, name: String) -> Result<ExitCode> {
    let inv = Inventory::load(&g.inventory)?;
    let n = inv.node(&name)?;
    let config = n.ssh_config.clone();
    let remote = SshRemote::connect(&n.ssh, config).await?;
    let out = remote.run_script(FINGERPRINT_COMMAND).await;
    remote.close().await;
    let out = out?;
    let fp = parse_fingerprint_output(&out.stdout).with_context(|| {
        format!(
            "cannot read the API certificate of {name}: {}",
            out.stderr.trim()
        )
    })?;
    if g.json {
        print_stdout(
            &(serde_json::json!({"format_version": crate::core::JSON_FORMAT_VERSION, "node": name, "fingerprint": fp.to_string()}).to_string() + "\n"),
        )?;
    } else {
        print_stdout(&format!(
            "# the certificate pveproxy serves on {name}, read over SSH ({})\n[nodes.{name}.api]\nfingerprint = \"{fp}\"\n",
            n.ssh
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

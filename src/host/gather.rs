//! Gathering host facts: the probe over SSH in one round trip, or a saved facts file.

use crate::core::error::hinted;
use crate::facts::paste::{self, Paste};
use crate::facts::raw::RawFacts;
use crate::facts::{HostFacts, PROBE};
use crate::inventory::Node;
use crate::transport::Remote;
use crate::transport::ssh::SshRemote;
use anyhow::{Context, Result};
use std::path::Path;

pub struct Gathered {
    pub raw_text: String,
    pub facts: HostFacts,
}

/// Parse probe output and refuse nodes that are not Proxmox VE.
pub fn from_text(node_name: &str, origin: &str, text: String) -> Result<Gathered> {
    let raw = RawFacts::parse(&text)
        .with_context(|| format!("cannot read the facts of {node_name} from {origin}"))?;
    let facts = HostFacts::from_raw(&raw)
        .with_context(|| format!("incomplete facts for {node_name} from {origin}"))?;
    if facts.pveversion_failed {
        let said = raw
            .get("pveversion")
            .map(|s| s.body.trim().to_string())
            .unwrap_or_default();
        return Err(hinted(
            format!(
                "{node_name} ({origin}) is not a Proxmox VE node: `pveversion` failed ({said})"
            ),
            "point the node's `ssh` in the inventory at a Proxmox VE host; pvegpu changes nothing elsewhere",
        ));
    }
    Ok(Gathered {
        raw_text: text,
        facts,
    })
}

pub async fn probe<R: Remote>(node_name: &str, remote: &R) -> Result<Gathered> {
    let out = remote
        .run_script(PROBE)
        .await
        .with_context(|| format!("cannot gather facts from {node_name}"))?;
    if out.stdout.trim().is_empty() {
        anyhow::bail!(
            "the probe printed nothing on {node_name} (exit {:?}): {}",
            out.status,
            out.stderr.trim()
        );
    }
    from_text(node_name, remote.destination(), out.stdout)
}

pub async fn live(node_name: &str, node: &Node) -> Result<Gathered> {
    let config = node.ssh_config.clone();
    tracing::info!(
        node = node_name,
        destination = node.ssh,
        "gathering facts over SSH"
    );
    let remote = SshRemote::connect(&node.ssh, config).await?;
    let result = probe(node_name, &remote).await;
    remote.close().await;
    result
}

/// A facts file for a plan: the sections a plan needs must be there.
pub fn from_file(node_hint: Option<&str>, path: &Path) -> Result<(String, Gathered)> {
    read_file(node_hint, path, from_text)
}

/// A facts file for a verdict ([`partial`]).
pub fn from_file_partial(node_hint: Option<&str>, path: &Path) -> Result<(String, Gathered)> {
    read_file(node_hint, path, partial)
}

fn read_file(
    node_hint: Option<&str>,
    path: &Path,
    read: fn(&str, &str, String) -> Result<Gathered>,
) -> Result<(String, Gathered)> {
    let text = crate::core::input::read_text(path)
        .with_context(|| format!("cannot read the facts file {}", path.display()))?;
    let raw = RawFacts::parse(&text)
        .with_context(|| format!("{} is not a pvegpu facts file", path.display()))?;
    named(node_hint, path, &raw, text, read)
}

/// A facts file already read and split ([`partial`]), for a caller that looked at its
/// sections first.
pub fn partial_of_file_text(
    node_hint: Option<&str>,
    path: &Path,
    raw: &RawFacts,
    text: String,
) -> Result<(String, Gathered)> {
    named(node_hint, path, raw, text, partial)
}

/// The node a facts file describes (the hint, else its `node` section, else its hostname),
/// and its facts.
fn named(
    node_hint: Option<&str>,
    path: &Path,
    raw: &RawFacts,
    text: String,
    read: fn(&str, &str, String) -> Result<Gathered>,
) -> Result<(String, Gathered)> {
    let saved_node = raw.get("node").map(|s| s.first_arg().to_string());
    let host = raw.ok_body("hostname").map(|h| h.trim().to_string());
    let name = node_hint
        .map(str::to_string)
        .or(saved_node)
        .or(host)
        .ok_or_else(|| {
            hinted(
                format!("{} does not say which node it describes", path.display()),
                "pass --node NAME",
            )
        })?;
    let g = read(&name, &path.display().to_string(), text)?;
    Ok((name, g))
}

/// A transcript as users post it (`-`: standard input), read into facts.
pub fn read_paste(path: &Path) -> Result<Paste> {
    let text = if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .context("cannot read the transcript from stdin")?;
        crate::core::input::text_of(path, bytes).context("cannot read the transcript from stdin")?
    } else {
        crate::core::input::read_text(path)
            .with_context(|| format!("cannot read the transcript {}", path.display()))?
    };
    Ok(paste::read(&text))
}

/// What a transcript holds, for a verdict: nothing is required, what is missing stays unknown.
pub fn partial(node_name: &str, origin: &str, text: String) -> Result<Gathered> {
    let raw = RawFacts::parse(&text)
        .with_context(|| format!("cannot read the facts of {node_name} from {origin}"))?;
    let facts = HostFacts::from_partial(&raw)
        .with_context(|| format!("cannot read the facts of {node_name} from {origin}"))?;
    Ok(Gathered {
        raw_text: text,
        facts,
    })
}

/// The saved form of a node's facts: the probe's output with the node's name added.
pub fn saved_text(node_name: &str, raw_text: &str) -> String {
    let mut out = format!(
        "# pvegpu facts of node {node_name}: the probe's raw output (see ARCHITECTURE.md, \"Facts files\").\n# Plan from it anywhere with `pvegpu plan --facts FILE`.\n"
    );
    let mut lines = raw_text.lines();
    if let Some(first) = lines.next() {
        out.push_str(first);
        out.push('\n');
        out.push_str(&format!("### pvegpu node {node_name}\n"));
    }
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    out
}

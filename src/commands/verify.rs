//! `pvegpu verify`: the read-only proof of each node's chain, one report per node.

use super::{join_all, print_stdout_painted, print_versioned, selected};
use crate::cli::GlobalArgs;
use crate::core::error::hinted;
use crate::host::gather;
use crate::inventory::Inventory;
use crate::verify::{Report, Style};
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

/// Files the checks are also written to, for machines that watch.
pub struct Outputs {
    pub junit: Option<PathBuf>,
    pub prometheus: Option<PathBuf>,
}

pub async fn run(
    g: &GlobalArgs,
    nodes: crate::cli::Nodes,
    vm: Option<u32>,
    facts: Option<PathBuf>,
    ascii: bool,
    outputs: Outputs,
) -> Result<ExitCode> {
    let (node, parallelism) = (nodes.limit.pattern, nodes.parallelism);
    let inv = Inventory::load(&g.inventory)?;
    let mut nodes = selected(&inv, &node)?;
    if let Some(id) = vm {
        nodes.retain(|(_, n)| n.vm.as_ref().and_then(|v| v.vmid) == Some(id));
        if nodes.is_empty() {
            return Err(hinted(
                format!(
                    "{}: no {}node has a [vm] with vmid = {id}",
                    inv.path.display(),
                    node.as_ref().map(|n| format!("`{n}` ")).unwrap_or_default()
                ),
                "leave --vm out to verify every node, or set `vmid` in the node's [vm] table",
            ));
        }
    }
    // a facts file that cannot be read is an input error, not an unreachable host (`--facts`
    // requires `--node`, so there is one node to give it to)
    let mut saved = match &facts {
        Some(path) => Some(gather::from_file(node.as_deref(), path)?.1),
        None => None,
    };
    let reports = join_all(
        nodes.iter().map(|(name, n)| {
            let inv = &inv;
            let saved = saved.take();
            async move { crate::verify::run::verify_node(inv, name, n, saved).await }
        }),
        parallelism,
    )
    .await;
    let passed = reports.iter().all(Report::passed);
    let named: Vec<(&str, &Report)> = nodes
        .iter()
        .zip(&reports)
        .map(|((name, _), r)| (name.as_str(), r))
        .collect();
    write_outputs(&outputs, &named)?;
    if g.json {
        let by_node: serde_json::Map<String, serde_json::Value> = named
            .iter()
            .map(|(name, r)| (name.to_string(), r.to_json()))
            .collect();
        print_versioned(serde_json::json!({ "passed": passed, "nodes": by_node }))?;
    } else {
        let style = Style {
            unicode: !ascii,
            color: super::colour(&std::io::stdout()),
        };
        let text: Vec<String> = nodes
            .iter()
            .zip(&reports)
            .map(|((name, _), r)| {
                let name = crate::core::visible::visible(name);
                format!("Node {name}\n\n{}", r.render_text(style))
            })
            .collect();
        print_stdout_painted(&text.join("\n"))?;
    }
    if passed {
        return Ok(ExitCode::SUCCESS);
    }
    let failed: Vec<&str> = nodes
        .iter()
        .zip(&reports)
        .filter(|(_, r)| !r.passed())
        .map(|((name, _), _)| name.as_str())
        .collect();
    super::say(&format!(
        "error: verify did not pass for {}: see the checks marked failed or not checked above",
        failed.join(", ")
    ));
    Ok(ExitCode::FAILURE)
}

/// The JUnit and Prometheus files, each written whole and renamed into place, so a collector
/// never reads half of one.
fn write_outputs(outputs: &Outputs, nodes: &[(&str, &Report)]) -> Result<()> {
    use crate::core::localfs::write_atomic;
    use crate::verify::export;
    use anyhow::Context;
    if let Some(path) = &outputs.junit {
        write_atomic(path, export::junit(nodes).as_bytes(), 0o644)
            .with_context(|| format!("cannot write the JUnit report {}", path.display()))?;
    }
    if let Some(path) = &outputs.prometheus {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // node_exporter reads every *.prom of its folder; the temporary name does not end so
        write_atomic(path, export::prometheus(nodes, now).as_bytes(), 0o644)
            .with_context(|| format!("cannot write the metrics file {}", path.display()))?;
    }
    Ok(())
}

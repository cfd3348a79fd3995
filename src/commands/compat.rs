//! `pvegpu compat`: offline answers from the knowledge base. The GPUs come from the command
//! line, a facts file (a node's or a guest's) or a node read live; models are read here and
//! only their headers go on.

use super::{one_node, print_stdout};
use crate::cli::{CompatArgs, GlobalArgs};
use crate::compat::questions::Model;
use crate::compat::{Ask, Distro, Request};
use crate::facts::raw::RawFacts;
use crate::inventory::Inventory;
use crate::pci::{PciAddress, PciId};
use anyhow::{Context, Result};
use std::path::Path;
use std::process::ExitCode;

/// NVIDIA's PCI vendor id.
const NVIDIA: u16 = 0x10de;

pub async fn run(g: &GlobalArgs, args: CompatArgs) -> Result<ExitCode> {
    let mut found = match (&args.facts, &args.node) {
        (Some(path), _) => from_facts(path)?,
        (None, Some(node)) => from_node(g, node).await?,
        (None, None) => Found::default(),
    };
    let mut gpus = args.gpus.clone();
    gpus.append(&mut found.gpus);
    let distro = match (&args.distro, found.distro) {
        (Some(d), _) => d.parse()?,
        (None, Some(d)) => d,
        (None, None) => Distro::Debian12,
    };
    let driver = args.driver.clone().or(found.driver);
    let request = match gpus.is_empty() {
        true if found.from.is_some() => {
            return Err(crate::core::error::hinted(
                format!("{} has no NVIDIA GPU", found.from.unwrap_or_default()),
                "name the GPUs on the command line, or point --facts/--node at the node that holds them",
            ));
        }
        true => None,
        false => Some(Request {
            gpus,
            distro,
            driver: driver.as_deref().map(str::parse).transpose()?,
            backends: args
                .backends
                .iter()
                .map(|b| b.parse())
                .collect::<Result<_, _>>()?,
        }),
    };
    let ask = Ask {
        request,
        models: args
            .models
            .iter()
            .map(|p| model(p))
            .collect::<Result<_>>()?,
        release: args.release.clone(),
        gpus_from: found.from,
    };
    print_stdout(&crate::compat::answer_command(
        &ask,
        Some(&today_utc()),
        g.json,
    )?)?;
    Ok(ExitCode::SUCCESS)
}

/// Today's date in UTC, `YYYY-MM-DD`: the day driver lifecycles are judged at.
fn today_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    crate::core::civil::utc_day(secs)
}

/// What a facts file or a node says about the GPUs to answer for.
#[derive(Debug, Default)]
struct Found {
    gpus: Vec<String>,
    distro: Option<Distro>,
    driver: Option<String>,
    from: Option<String>,
}

/// A display function: where it sits, its id and its subsystem id (which tells apart the
/// products sold under one device id).
type Display = (PciAddress, PciId, Option<PciId>);

/// The specs `compat` takes: `10de:1e30/10de:129e` where the subsystem is known.
fn nvidia_gpus(devices: &[Display]) -> Vec<String> {
    devices
        .iter()
        .filter(|(_, id, _)| id.vendor == NVIDIA)
        .map(|(_, id, sub)| match sub {
            Some(sub) => format!("{id}/{sub}"),
            None => id.to_string(),
        })
        .collect()
}

/// A node's display-class functions (VGA, 3D, other display controllers).
fn displays(facts: &crate::facts::HostFacts) -> Vec<Display> {
    facts
        .devices
        .iter()
        .filter(|d| d.is_display())
        .map(|d| (d.address, d.id, d.subsystem))
        .collect()
}

/// ` (0000:01:00.0, ...)`: where the NVIDIA GPUs sit, or nothing.
fn addresses(devices: &[Display]) -> String {
    let a: Vec<String> = devices
        .iter()
        .filter(|(_, id, _)| id.vendor == NVIDIA)
        .map(|(a, _, _)| a.to_string())
        .collect();
    match a.is_empty() {
        true => String::new(),
        false => format!(" ({})", a.join(", ")),
    }
}

/// A node's facts (`discover --save`, `plan --facts`) or a guest's probe output: a guest's
/// carries its package list, which a node's never does.
fn from_facts(path: &Path) -> Result<Found> {
    let text = crate::core::input::read_text(path)
        .with_context(|| format!("cannot read the facts file {}", path.display()))?;
    let raw = RawFacts::parse(&text)
        .with_context(|| format!("cannot read the facts in {}", path.display()))?;
    if raw.get("guest-kernels").is_some() || raw.get("packages").is_some() {
        return from_guest_facts(path, text);
    }
    let (name, got) = crate::host::gather::partial_of_file_text(None, path, &raw, text)?;
    let devices = displays(&got.facts);
    Ok(Found {
        gpus: nvidia_gpus(&devices),
        distro: None,
        driver: None,
        from: Some(format!(
            "node {name}'s facts {}{}",
            path.display(),
            addresses(&devices)
        )),
    })
}

fn from_guest_facts(path: &Path, text: String) -> Result<Found> {
    let got = crate::guest::gather::from_text("guest", &path.display().to_string(), text)?;
    let f = &got.facts;
    let devices: Vec<Display> = f.gpus().map(|d| (d.address, d.id, d.subsystem)).collect();
    let distro = f.known_distro()?;
    let driver = f.loaded_driver().map(str::to_string);
    Ok(Found {
        gpus: nvidia_gpus(&devices),
        distro: Some(distro),
        from: Some(format!(
            "guest {}'s facts {}{}: {distro}{}",
            f.hostname,
            path.display(),
            addresses(&devices),
            driver
                .as_deref()
                .map(|d| format!(", driver {d}"))
                .unwrap_or_else(|| ", no driver loaded".into())
        )),
        driver,
    })
}

/// The node's GPUs, read live over SSH by the host probe (read-only).
async fn from_node(g: &GlobalArgs, pattern: &str) -> Result<Found> {
    let inv = Inventory::load(&g.inventory)?;
    let name = one_node(&inv, pattern)?;
    let node = &inv.nodes[&name];
    let got = crate::host::gather::live(&name, node).await?;
    let devices = displays(&got.facts);
    Ok(Found {
        gpus: nvidia_gpus(&devices),
        distro: None,
        driver: None,
        from: Some(format!("node {name}{}", addresses(&devices))),
    })
}

/// A model file's header. The file is read whole: protobuf writes `opset_import` (field 8)
/// after the graph and its weights (field 7). What is not a regular file is refused.
fn model(path: &Path) -> Result<Model> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read the model {shown}"))?;
    if !meta.is_file() {
        return Err(crate::core::error::hinted(
            format!("{shown} is not a regular file"),
            "point --model at an .onnx file",
        ));
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read the model {shown}"))?;
    let h = crate::guest::onnx_check::read_header(&shown, &bytes)?;
    Ok(Model {
        path: h.path,
        ir_version: h.ir_version,
        opset: h.opset,
        producer: h.producer,
    })
}

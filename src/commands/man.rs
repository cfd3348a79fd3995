//! `pvegpu man --out DIR`: the man pages, from the same clap definitions as `--help`, so they
//! cannot drift: `pvegpu.1`, and `pvegpu-plan.1` and so on for each subcommand (nested ones as
//! `pvegpu-lint-compose.1`). The .deb installs them (scripts/build-deb.sh).

use crate::cli::Cli;
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::path::Path;
use std::process::ExitCode;

pub fn run(out: &Path) -> Result<ExitCode> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let cli = Cli::command();
    let written = write_page(out, cli, "pvegpu")?;
    super::say(&format!("wrote {written} man pages to {}", out.display()));
    Ok(ExitCode::SUCCESS)
}

/// Writes `name.1` for `cmd` and, under it, one page per visible subcommand; returns the count.
fn write_page(out: &Path, cmd: clap::Command, name: &str) -> Result<usize> {
    let mut written = 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub_name = format!("{name}-{}", sub.get_name());
        let page = sub
            .clone()
            .name(sub_name.clone())
            .display_name(sub_name.clone());
        written += write_page(out, page, &sub_name)?;
    }
    let mut text = Vec::new();
    clap_mangen::Man::new(cmd.name(name.to_string()))
        .render(&mut text)
        .context("cannot render a man page")?;
    let path = out.join(format!("{name}.1"));
    crate::core::localfs::write_atomic(&path, &text, 0o644)?;
    Ok(written)
}

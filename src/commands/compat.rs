//! `pvegpu compat`: offline answers from the knowledge base.

use super::print_stdout;
use crate::cli::GlobalArgs;
use anyhow::Result;
use std::process::ExitCode;

pub fn run(
    g: &GlobalArgs,
    gpus: &[String],
    distro: &str,
    driver: Option<&str>,
    backends: &[String],
) -> Result<ExitCode> {
    print_stdout(&crate::compat::compat_command(
        gpus, distro, driver, backends, g.json,
    )?)?;
    Ok(ExitCode::SUCCESS)
}

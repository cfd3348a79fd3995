//! `pvegpu lint compose`: GPU routing in a Compose file.

use super::{print_json, print_stdout};
use crate::cli::GlobalArgs;
use crate::lint::compose;
use anyhow::Result;
use std::path::Path;
use std::process::ExitCode;

pub fn run(g: &GlobalArgs, file: &Path) -> Result<ExitCode> {
    let findings = compose::lint_compose(file)?;
    if g.json {
        print_json(&findings)?;
    } else {
        print_stdout(&compose::render(&findings))?;
    }
    Ok(if compose::has_errors(&findings) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

//! `pvegpu lint compose`: GPU routing in a Compose file.

use super::{print_stdout, print_versioned};
use crate::cli::GlobalArgs;
use crate::lint::compose;
use anyhow::Result;
use std::path::Path;
use std::process::ExitCode;

/// Exit 1 for findings; 2 when the file cannot be read or is not a valid Compose file, so a
/// script can tell "fix your services" from "fix your path or YAML".
const EXIT_BAD_INPUT: u8 = 2;

pub fn run(g: &GlobalArgs, file: &Path) -> Result<ExitCode> {
    let findings = match compose::lint_compose(file) {
        Ok(f) => f,
        Err(e) => {
            super::eprint_error(&anyhow::Error::new(e));
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    if g.json {
        print_versioned(serde_json::json!({ "findings": findings }))?;
    } else {
        print_stdout(&compose::render(&findings))?;
    }
    Ok(if compose::has_errors(&findings) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

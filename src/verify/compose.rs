//! The Compose GPU routing lint (`lint::compose`) as Runtime-layer checks, for the compose
//! files found on the guest. Errors fail; warnings and advice are shown as warnings, since
//! the containers start and see GPUs, only perhaps not the intended ones.

use crate::core::check::{Check, Layer};
use crate::core::error::Hint;
use crate::lint::compose::{Severity, lint_compose_str};
use std::path::Path;

pub fn checks(path: &Path, text: &str) -> Vec<Check> {
    let file = path.display().to_string();
    match lint_compose_str(path, text) {
        Err(e) => vec![Check::fail(
            Layer::Runtime,
            format!("{file} parses"),
            e.to_string(),
            "Compose cannot read this file either, so its services do not start as written",
            e.hint()
                .unwrap_or_else(|| "check the file with `docker compose config`".into()),
        )],
        Ok(findings) if findings.is_empty() => vec![Check::pass(
            Layer::Runtime,
            format!("{file} GPU routing"),
            "no GPU routing problems",
        )],
        Ok(findings) => findings
            .into_iter()
            .map(|f| {
                let name = format!("{}:{} service `{}` [{}]", f.file, f.line, f.service, f.rule);
                match f.severity {
                    Severity::Error => Check::fail(
                        Layer::Runtime,
                        name,
                        f.message,
                        "the containers will not start, or will not see the GPUs the file means",
                        f.fix,
                    ),
                    Severity::Warning | Severity::Advice => Check::warn(
                        Layer::Runtime,
                        name,
                        f.message,
                        match f.severity {
                            Severity::Warning => {
                                "works by accident or depends on something outside the file"
                            }
                            _ => "works; a safer way exists",
                        },
                        f.fix,
                    ),
                }
            })
            .collect(),
    }
}

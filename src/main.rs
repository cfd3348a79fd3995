//! The binary: parse the command line, set up logging (`PVEGPU_LOG`, else `RUST_LOG`, else
//! `-v`/`-q`; ANSI only where `commands::colour` allows it), run the subcommand, and print an
//! error uv-style. A usage error exits 64, never clap's 2.

use clap::Parser;
use pvegpu::cli::{Cli, ColorChoice};
use std::process::ExitCode;

/// sysexits.h's EX_USAGE: clap's own 2 would read as "changes" under `--detailed-exitcode`.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS // --help, --version
            };
        }
    };
    match cli.global.color {
        ColorChoice::Always => anstream::ColorChoice::Always.write_global(),
        ColorChoice::Never => anstream::ColorChoice::Never.write_global(),
        ColorChoice::Auto => {}
    }
    let level = if cli.global.quiet {
        "error"
    } else {
        match cli.global.verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    };
    // PVEGPU_LOG, else RUST_LOG, else -v/-q
    let filter = tracing_subscriber::EnvFilter::try_from_env("PVEGPU_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(pvegpu::commands::colour(&std::io::stderr()))
        .with_target(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(pvegpu::commands::run(cli)) {
        Ok(code) => code,
        Err(err) => {
            pvegpu::commands::eprint_error(&err);
            ExitCode::FAILURE
        }
    }
}

//! The subcommands: each parses nothing itself (clap did), walks the nodes through the
//! pipeline or asks its module, and prints. Data goes to stdout, progress to stderr.
//!
//! Nodes are worked on `--parallelism` at a time; `apply` rolls `--serial` at a time to a
//! recap. Shared here: `HINTS` (the error types that carry a hint), `colour` (the one rule for
//! colour on any stream: `--color`, `NO_COLOR`, a terminal), and `with_inventory` (suggested
//! `pvegpu ...` commands carry the `-i` the user gave).

mod apply;
mod compat;
mod discover;
mod fingerprint;
mod lint;
mod man;
mod plan;
mod progress;
mod rollback;
mod verify;

use crate::cli::{Cli, Command};
use crate::core::error::{HintOf, hint_of, hinted};
use crate::core::visible::{visible, visible_json};
use crate::inventory::{Inventory, Node};
use anyhow::Result;
use clap::CommandFactory;
use progress::Stderr;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

/// What a transcript held that no reader took, and where a later block replaced an earlier
/// one, on stderr: the verdicts rest only on what was read.
pub fn say_unread(paste: &crate::facts::paste::Paste) {
    for n in &paste.notes {
        say(&format!("note: {n}"));
    }
    for u in &paste.unread {
        say(&format!(
            "note: transcript line {} ({} line(s)) not read: {}",
            u.first_line,
            u.lines,
            crate::core::outcome::tail(&u.text, 1)
        ));
    }
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let g = &cli.global;
    note_inventory_arg(g);
    match cli.command {
        Command::Discover {
            nodes,
            save,
            facts,
            paste,
        } => discover::run(g, nodes, save, facts, paste).await,
        Command::Plan {
            nodes,
            facts,
            paste,
            phase,
            detailed_exitcode,
        } => plan::run(g, nodes, facts, paste, phase, detailed_exitcode).await,
        Command::Apply {
            limit,
            serial,
            keep_going,
            yes,
            stop_guests,
            reboot_timeout,
            facts,
        } => {
            let options = crate::host::exec::Options::new(
                stop_guests,
                Duration::from_secs(reboot_timeout),
                true,
            );
            let rolling = apply::Rolling { serial, keep_going };
            apply::run(g, limit.pattern, yes, facts, options, rolling).await
        }
        Command::Rollback {
            node,
            yes,
            reboot,
            stop_guests,
            reboot_timeout,
        } => {
            let options = crate::host::exec::Options::new(
                stop_guests,
                Duration::from_secs(reboot_timeout),
                false,
            );
            rollback::run(g, node, yes, reboot, options).await
        }
        Command::Compat(args) => compat::run(g, args).await,
        Command::Lint {
            what: crate::cli::LintWhat::Compose { file },
        } => lint::run(g, &file),
        Command::Fingerprint { node } => fingerprint::run(g, node).await,
        Command::Verify {
            nodes,
            vm,
            facts,
            ascii,
            junit,
            prometheus,
        } => {
            let outputs = verify::Outputs { junit, prometheus };
            verify::run(g, nodes, vm, facts, ascii, outputs).await
        }
        Command::Man { out } => man::run(&out),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "pvegpu", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Every error type that knows what the user can do about it: the command layer knows them
/// all, so the error renderer below it needs none.
const HINTS: &[HintOf] = &[
    hint_of::<crate::core::error::Hinted>,
    hint_of::<crate::core::input::InputError>,
    hint_of::<crate::core::localfs::LocalFsError>,
    hint_of::<crate::inventory::InventoryError>,
    hint_of::<crate::transport::ssh::SshError>,
    hint_of::<crate::transport::node_lock::LockError>,
    hint_of::<crate::pve::PveError>,
    hint_of::<crate::vm::connect::ConnectError>,
    hint_of::<crate::vm::exec::ExecError>,
    hint_of::<crate::guest::access::AccessError>,
    hint_of::<crate::lint::compose::LintError>,
    hint_of::<crate::compat::CompatError>,
];

/// Whether to colour what goes to `stream`: `--color`, then NO_COLOR and CLICOLOR_FORCE, then
/// whether it is a terminal. The one rule for errors, logs and reports alike (anstream's).
pub fn colour<S: anstream::stream::RawStream>(stream: &S) -> bool {
    anstream::AutoStream::choice(stream) != anstream::ColorChoice::Never
}

/// An error on stderr, `error` and `hint` coloured where colour is on.
pub fn eprint_error(err: &anyhow::Error) {
    let red = anstyle::Style::new()
        .bold()
        .fg_color(Some(anstyle::AnsiColor::Red.into()));
    let cyan = anstyle::Style::new()
        .bold()
        .fg_color(Some(anstyle::AnsiColor::Cyan.into()));
    // made visible before it is coloured: the only escapes left are pvegpu's own
    let text = visible(&with_inventory(&render_error(err)))
        .replacen("error:", &format!("{red}error{red:#}:"), 1)
        .replace("\nhint:", &format!("\n{cyan}hint{cyan:#}:"));
    let _ = anstream::stderr().write_all(text.as_bytes());
}

/// An error as the user sees it: `error:`, `Caused by:` lines, `hint:` lines.
pub fn render_error(err: &anyhow::Error) -> String {
    crate::core::error::render(err, HINTS)
}

/// An error as `--json` outputs carry it (its hints with the user's `-i`, like the text's).
pub fn error_json(err: &anyhow::Error) -> crate::core::error::Parts {
    let mut parts = crate::core::error::Parts::of(err, HINTS);
    for h in &mut parts.hints {
        *h = with_inventory(&format!("hint: {h}"))
            .trim_start_matches("hint: ")
            .to_string();
    }
    parts
}

/// Every `--json` output: an object with `format_version` beside the command's own fields.
#[derive(serde::Serialize)]
struct Versioned<T: serde::Serialize> {
    format_version: u32,
    #[serde(flatten)]
    body: T,
}

fn print_versioned(body: impl serde::Serialize) -> Result<()> {
    print_json(&Versioned {
        format_version: crate::core::JSON_FORMAT_VERSION,
        body,
    })
}

/// The nodes `--limit` selects (every node without it), in the inventory's order.
fn selected<'a>(inv: &'a Inventory, limit: &Option<String>) -> Result<Vec<(&'a String, &'a Node)>> {
    let names = crate::inventory::select::select(inv, limit.as_deref())?;
    Ok(inv
        .nodes
        .iter()
        .filter(|(k, _)| names.contains(&k.as_str()))
        .collect())
}

/// The one node a `--limit` names where a command takes one (a facts file, a transcript, a
/// saved file): the pattern must select exactly one.
fn one_node(inv: &Inventory, limit: &str) -> Result<String> {
    let names = crate::inventory::select::select(inv, Some(limit))?;
    match names.as_slice() {
        [one] => Ok(one.to_string()),
        many => Err(hinted(
            format!(
                "`{limit}` selects {} nodes ({}); this takes one",
                many.len(),
                many.join(", ")
            ),
            "name one node with --limit NAME",
        )),
    }
}

/// `-i PATH` when the inventory was named on the command line: the default file and
/// $PVEGPU_INVENTORY reach the next command by themselves, a flag does not.
static INVENTORY_ARG: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn note_inventory_arg(g: &crate::cli::GlobalArgs) {
    let given = g.inventory.to_string_lossy();
    let from_env = std::env::var_os("PVEGPU_INVENTORY").is_some_and(|v| v == *g.inventory);
    if given != crate::cli::DEFAULT_INVENTORY && !from_env {
        let plain = given
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./~+-".contains(c));
        let shown = if plain {
            given.to_string()
        } else {
            crate::core::scripts::quote(&given)
        };
        let _ = INVENTORY_ARG.set(format!("-i {shown} "));
    }
}

/// `text` with the `` `pvegpu ...` `` commands that its `hint:` and `fix:` lines suggest
/// carrying the `-i` the user gave, so they can be pasted as they are. Only those lines: a
/// plan's diffs show file contents exactly as they will be written.
pub fn with_inventory(text: &str) -> std::borrow::Cow<'_, str> {
    let Some(arg) = INVENTORY_ARG.get().filter(|_| text.contains("`pvegpu ")) else {
        return std::borrow::Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        let advice = ["hint:", "fix:"]
            .iter()
            .any(|m| line.trim_start().starts_with(m));
        if advice {
            out.push_str(&line.replace("`pvegpu ", &format!("`pvegpu {arg}")));
        } else {
            out.push_str(line);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A line for people on stderr (what a node said made visible).
pub fn say(text: &str) {
    eprintln!("{}", visible(text));
}

/// Text for people on stdout (hints in it carry the user's `-i`; what a node said made
/// visible).
fn print_stdout(text: &str) -> Result<()> {
    write_stdout(&visible(&with_inventory(text)))
}

/// Text painted by its renderer, which made each part from a node visible before adding
/// pvegpu's own colours ([`crate::verify::report::Report::render_text`]).
fn print_stdout_painted(text: &str) -> Result<()> {
    write_stdout(&with_inventory(text))
}

fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// JSON is data: every string in it made visible, so a consumer that prints a field is as
/// safe as pvegpu's own text.
fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let value = visible_json(serde_json::to_value(value)?);
    write_stdout(&(serde_json::to_string_pretty(&value)? + "\n"))
}

/// Run the futures at most `limit` at a time, keeping their order in the results: one node's
/// work does not wait for another's, and a fleet of 200 holds 20 connections, not 200.
async fn join_all<F, T>(futs: impl Iterator<Item = F>, limit: u16) -> Vec<T>
where
    F: std::future::Future<Output = T>,
{
    let limit = usize::from(limit.max(1));
    let mut pinned: Vec<_> = futs.map(Box::pin).collect();
    let mut results: Vec<Option<T>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        // the first `limit` unfinished futures run; a slot frees when one finishes
        let mut running = 0;
        for (i, f) in pinned.iter_mut().enumerate() {
            if results[i].is_some() {
                continue;
            }
            if running == limit {
                break;
            }
            match f.as_mut().poll(cx) {
                std::task::Poll::Ready(v) => results[i] = Some(v),
                std::task::Poll::Pending => running += 1,
            }
        }
        if results.iter().all(Option::is_some) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    // poll_fn returned Ready only once every slot was filled
    results.into_iter().flatten().collect()
}

/// Ask before changing a node; without a terminal only --yes may answer.
fn confirm(node: &str, what: &str, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(hinted(
            format!("refusing to {what} {node} without confirmation: stdin is not a terminal"),
            "read the plan above, then run again with --yes",
        ));
    }
    eprint!(
        "{} {}? [y/N] ",
        what[..1].to_uppercase() + &what[1..],
        visible(node)
    );
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(hinted(
            format!("{node} was not changed"),
            "nothing was done",
        ))
    }
}

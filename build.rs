//! The version line's build information, `pvegpu 0.1.0 (1a2b3c4d5 2026-11-30, built
//! 2026-12-02)`: the commit and its date as git reports them, and the day of the build. The
//! build day is `SOURCE_DATE_EPOCH`'s when it is set (reproducible builds: Debian's tooling
//! sets it, and the same commit then gives the same binary), else the clock's (UTC). Outside
//! a git checkout (a source archive, `cargo install` from a registry) the commit reads
//! `no git commit`.

use std::path::Path;
use std::process::Command;

#[path = "src/core/civil.rs"]
mod civil;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn build_day() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    civil::utc_day(secs)
}

fn main() {
    let commit = match (
        git(&["rev-parse", "--short=9", "HEAD"]),
        git(&["log", "-1", "--format=%cs"]),
    ) {
        (Some(commit), Some(date)) => format!("{commit} {date}"),
        _ => "no git commit".to_string(),
    };
    let info = format!("{commit}, built {}", build_day());
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!(
        "cargo:rustc-env=PVEGPU_VERSION={} ({info})",
        env!("CARGO_PKG_VERSION")
    );
    println!("cargo:rerun-if-changed=build.rs");
    // Rebuild when HEAD moves: HEAD itself (a checkout), the branch it names (a commit), and
    // packed-refs (after `git gc`). Only paths that exist: a missing one would rerun every build.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        let dir = Path::new(&dir);
        let branch = git(&["symbolic-ref", "-q", "HEAD"]);
        let watched = [
            Some(dir.join("HEAD")),
            branch.map(|b| dir.join(b)),
            Some(dir.join("packed-refs")),
        ];
        for path in watched.into_iter().flatten().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

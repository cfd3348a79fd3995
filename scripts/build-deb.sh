#!/usr/bin/env bash
# Builds the Debian package: the release binary (fat LTO, stripped), one man page per
# subcommand and the bash, zsh and fish completions, packaged by cargo-deb (installed first if
# missing). Prints the package's path on stdout and each part's time on stderr.
# Usage: bash scripts/build-deb.sh   then   sudo dpkg -i target/debian/pvegpu_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_DEB_VERSION=3.8.0
part() { echo "[deb] $1: $(( $(date +%s) - $2 )) s" >&2; }

t=$(date +%s)
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  cargo install --locked --quiet "cargo-deb@$CARGO_DEB_VERSION"
fi
part "cargo-deb $CARGO_DEB_VERSION" "$t"

t=$(date +%s)
cargo build --release --locked --quiet --bin pvegpu
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/pvegpu
part "release build ($(du -h "$BIN" | cut -f1) binary)" "$t"

t=$(date +%s)
rm -rf dist
mkdir -p dist/man dist/completions
"$BIN" man --out dist/man 2>/dev/null
"$BIN" completions bash > dist/completions/pvegpu.bash
"$BIN" completions zsh > dist/completions/_pvegpu
"$BIN" completions fish > dist/completions/pvegpu.fish
cargo deb --no-build --locked --quiet >&2
part "man pages, completions and package" "$t"
ls -t "${CARGO_TARGET_DIR:-$PWD/target}"/debian/pvegpu_*.deb | head -1
